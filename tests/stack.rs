//! `lab up` / `status` / `down` on the native runtime, end to end: the
//! real binary, a real Postgres from the machine's binaries, real ports.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

fn lab(state: &std::path::Path, args: &[&str]) -> Output {
    lab_testkit::LabCli::new(env!("CARGO_BIN_EXE_lab"), state).run(args)
}

/// Takes a lab down when the test ends, passed or failed, so a failing
/// test never leaves processes behind.
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = lab(&self.0, &["down", "--volumes"]);
    }
}

fn status(state: &std::path::Path) -> Value {
    let out = lab(state, &["status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Processes whose command line names this state folder.
fn lab_processes(state: &std::path::Path) -> usize {
    let marker = state.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| {
            String::from_utf8_lossy(c)
                .replace('\0', " ")
                .contains(&marker)
        })
        .count()
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
        .is_ok()
}

#[test]
fn up_status_down_and_the_beasts_rows_survive() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("lab state");
    let _cleanup = Cleanup(state.clone());

    let up = lab(&state, &["up"]);
    assert!(
        up.status.success(),
        "lab up failed:\n{}{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );

    let running = status(&state);
    assert_eq!(running["runtime"], "native");
    assert_eq!(running["backends"], "embedded");
    let components = running["components"].as_array().unwrap().clone();
    let names: Vec<&str> = components
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "postgres",
            "db-proxy",
            "backend",
            "mythical-server",
            "mythical-requester"
        ]
    );
    for component in &components {
        assert_eq!(component["health"], "healthy", "{component}");
        assert!(component["pid"].as_u64().unwrap() > 0);
    }
    let backend = &components[2]["endpoints"];
    for endpoint in ["otlp_grpc", "otlp_http", "query"] {
        assert!(
            backend[endpoint]
                .as_str()
                .unwrap()
                .starts_with("http://127.0.0.1:"),
            "{backend}"
        );
    }
    let token = std::fs::metadata(state.join("admin-token")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&token.permissions()) & 0o777,
        0o600
    );

    // A second `up` says so and changes nothing.
    let again = lab(&state, &["up"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already up"));
    assert_eq!(status(&state)["components"][0]["pid"], components[0]["pid"]);

    // Data written now survives down and up. (A beast's row could be
    // deleted by the requester's own traffic, so the check uses a table of
    // its own in the same database.)
    let psql = |sql: &str| lab_testkit::LabCli::new(env!("CARGO_BIN_EXE_lab"), &state).psql(sql);
    psql("CREATE TABLE survival (note text); INSERT INTO survival VALUES ('still here')");
    let ports: Vec<u16> = components
        .iter()
        .flat_map(|c| {
            c["endpoints"]
                .as_object()
                .unwrap()
                .values()
                .map(|u| {
                    u.as_str()
                        .unwrap()
                        .rsplit(':')
                        .next()
                        .unwrap()
                        .split('/')
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap()
                })
                .collect::<Vec<u16>>()
        })
        .collect();

    // A scenario running when the lab comes down ends with it.
    let started = lab(&state, &["scenario", "start", "null-name"]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );

    let down = lab(&state, &["down"]);
    assert!(down.status.success());
    assert_eq!(lab_processes(&state), 0, "no process of the lab is left");
    for port in &ports {
        assert!(!listening(*port), "port {port} still listens after down");
    }
    assert_eq!(status(&state)["components"], serde_json::json!([]));

    let up = lab(&state, &["up"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert_eq!(psql("SELECT note FROM survival"), "still here");
    let fresh = lab(&state, &["scenario", "status"]);
    let fresh_text = String::from_utf8_lossy(&fresh.stdout).to_string();
    assert!(
        !fresh_text.contains("null-name"),
        "the scenario outlived the lab it ran on: {fresh_text}"
    );
    let again = lab(&state, &["scenario", "start", "null-name"]);
    assert!(
        again.status.success(),
        "a fresh lab refused a scenario: {}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(lab(&state, &["scenario", "stop"]).status.success());
    assert_eq!(
        psql("SELECT count(*) FROM information_schema.tables WHERE table_name = 'owlbear'"),
        "1"
    );

    let down = lab(&state, &["down", "--volumes"]);
    assert!(down.status.success());
    assert!(!state.join("postgres").join("data").exists());
    assert_eq!(lab_processes(&state), 0);
}

#[test]
fn down_after_a_killed_up_cleans_up_and_touches_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("killed");
    let _cleanup = Cleanup(state.clone());
    let mut up = Command::new(env!("CARGO_BIN_EXE_lab"))
        .arg("--state-dir")
        .arg(&state)
        .arg("up")
        .spawn()
        .unwrap();
    // Let it start some components, then kill it mid-way.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !state.join("state.json").exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(150));
    let _ = up.kill();
    let _ = up.wait();
    // Something else that merely looks similar must survive `down`.
    let mut bystander = Command::new("sleep").arg("30").spawn().unwrap();

    let down = lab(&state, &["down"]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert_eq!(
        lab_processes(&state),
        0,
        "a process of the killed lab was left"
    );
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "down touched a process that is not the lab's"
    );
    let _ = bystander.kill();
    let _ = bystander.wait();
    let _ = lab(&state, &["down", "--volumes"]);
}

fn diagnose(state: &std::path::Path) -> Value {
    let out = lab(state, &["diagnose", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "diagnose --json: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The first verdict that names a cause over what happened since `began`
/// (the fault's injection), which must be `id`.
fn diagnosed_as(state: &std::path::Path, began: std::time::Instant, id: &str) -> Value {
    let report = lab_testkit::LabCli::new(env!("CARGO_BIN_EXE_lab"), state)
        .first_verdict_since(began, Duration::from_secs(40))
        .unwrap_or_else(|last| panic!("no verdict within 40 s; last report: {last:#}"));
    assert_eq!(
        report["root_cause"]["id"], id,
        "the first verdict names another cause: {report:#}"
    );
    report
}

fn assert_not_null(report: &Value) {
    let message = report["root_cause"]["message"].as_str().unwrap();
    let beast = message
        .strip_prefix(r#"null value in column "name" of relation ""#)
        .and_then(|rest| rest.strip_suffix(r#"" violates not-null constraint"#))
        .unwrap_or_else(|| panic!("not Postgres' message verbatim: {message}"));
    assert!(
        ["unicorn", "manticore", "illithid", "owlbear", "beholder"].contains(&beast),
        "{message}"
    );
    let evidence = report["evidence"].as_array().unwrap();
    let signals: Vec<&str> = evidence
        .iter()
        .map(|e| e["signal"].as_str().unwrap())
        .collect();
    for signal in ["metrics", "traces", "logs", "database"] {
        assert!(
            signals.contains(&signal),
            "no {signal} evidence: {report:#}"
        );
    }
    let database = evidence.iter().find(|e| e["signal"] == "database").unwrap();
    assert!(
        database["finding"]
            .as_str()
            .unwrap()
            .contains(&format!("{beast}.name is character varying NOT NULL")),
        "{database}"
    );
    assert!(
        database["finding"]
            .as_str()
            .unwrap()
            .contains("is_nullable = NO"),
        "{database}"
    );
    assert!(
        database["query"]
            .as_str()
            .unwrap()
            .contains("information_schema.columns")
    );
    let trace = evidence
        .iter()
        .find_map(|e| e["trace_id"].as_str())
        .unwrap();
    assert_eq!(trace.len(), 32);
}

#[test]
fn the_reference_fault_and_its_twin_are_diagnosed_to_the_right_service() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("diagnose");
    let _cleanup = Cleanup(state.clone());
    let up = lab(&state, &["up"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );

    let healthy = diagnose(&state);
    assert_eq!(healthy["status"], "healthy", "{healthy:#}");
    assert!(healthy["root_cause"].is_null());

    let began = std::time::Instant::now();
    let inject = lab(&state, &["fault", "inject", "null-name", "--rate", "1"]);
    assert!(
        inject.status.success(),
        "{}",
        String::from_utf8_lossy(&inject.stderr)
    );
    let report = diagnosed_as(&state, began, "null-name");
    assert_eq!(report["status"], "fault");
    assert_eq!(report["root_cause"]["service"], "mythical-server");
    assert_not_null(&report);

    assert!(lab(&state, &["fault", "clear"]).status.success());
    let began = std::time::Instant::now();
    assert!(
        lab(
            &state,
            &[
                "fault",
                "inject",
                "missing-name",
                "--rate",
                "1",
                "--for",
                "5m"
            ]
        )
        .status
        .success()
    );
    let report = diagnosed_as(&state, began, "missing-name");
    assert_eq!(report["root_cause"]["service"], "mythical-requester");
    assert_not_null(&report);

    let logs = lab(&state, &["logs", "mythical-server", "--tail", "500"]);
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("status=FAILURE"),
        "{}",
        String::from_utf8_lossy(&logs.stdout)
    );
    let no_such = lab(&state, &["logs", "kraken"]);
    assert_eq!(no_such.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_such.stderr).contains("the components with logs are"));
    let doctor = lab(&state, &["doctor", "--json"]);
    let doctor: Value = serde_json::from_slice(&doctor.stdout).unwrap();
    assert_eq!(doctor["ok"], true, "{doctor:#}");
    assert_eq!(doctor["checks"][0]["check"], "postgresql");

    // Scheduled: off now, on after two seconds, and a paused Postgres
    // thawed by the scheduler after its --for.
    assert!(lab(&state, &["fault", "clear"]).status.success());
    let later = lab(
        &state,
        &[
            "fault",
            "inject",
            "duplicate-name",
            "--after",
            "2s",
            "--seed",
            "7",
        ],
    );
    assert!(
        later.status.success(),
        "{}",
        String::from_utf8_lossy(&later.stderr)
    );
    assert!(String::from_utf8_lossy(&later.stdout).contains("duplicate-name scheduled: on in 2s"));
    let on = |kind: &str| -> bool {
        let list = lab(&state, &["fault", "list", "--json"]);
        let list: Value = serde_json::from_slice(&list.stdout).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == kind && f["active"] == true)
    };
    assert!(!on("duplicate-name"));
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert!(on("duplicate-name"), "not switched on by the scheduler");
    assert!(lab(&state, &["fault", "clear"]).status.success());
    let paused = lab(&state, &["fault", "inject", "db-down", "--for", "2s"]);
    assert!(
        paused.status.success(),
        "{}",
        String::from_utf8_lossy(&paused.stderr)
    );
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert!(on("db-down"), "db-down not applied at once");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while on("db-down") {
        assert!(
            std::time::Instant::now() < deadline,
            "db-down not cleared after --for 2s"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }

    let unknown = lab(&state, &["fault", "inject", "gremlins"]);
    assert_eq!(unknown.status.code(), Some(1));
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        said.contains(
            "unknown fault kind `gremlins`: the kinds are bad-deploy, broken-propagation,"
        ) && said.contains(" null-name,"),
        "{said}"
    );

    assert!(lab(&state, &["down", "--volumes"]).status.success());
    assert_eq!(lab_processes(&state), 0);
}
