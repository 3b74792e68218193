//! `lab up` / `status` / `down` on the native runtime, end to end: the
//! real binary, a real Postgres from the machine's binaries, real ports.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

fn lab(state: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lab"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("the lab binary runs")
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
    let components = running["components"].as_array().unwrap();
    let names: Vec<&str> = components
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "postgres",
            "backend",
            "mythical-server",
            "mythical-requester"
        ]
    );
    for component in components {
        assert_eq!(component["health"], "healthy", "{component}");
        assert!(component["pid"].as_u64().unwrap() > 0);
    }
    let backend = &components[1]["endpoints"];
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

    // A row written now survives down and up.
    let server = components[2]["endpoints"]["http"]
        .as_str()
        .unwrap()
        .to_owned();
    let created = Command::new("curl")
        .args([
            "-fsS",
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"name":"survivor_Ada_owl"}"#,
        ])
        .arg(format!("{server}/owlbear"))
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
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
    let server = status(&state)["components"][2]["endpoints"]["http"]
        .as_str()
        .unwrap()
        .to_owned();
    let names = Command::new("curl")
        .args(["-fsS"])
        .arg(format!("{server}/owlbear"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&names.stdout).contains("survivor_Ada_owl"),
        "{}",
        String::from_utf8_lossy(&names.stdout)
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
