//! The docker runtime against the real engine. No registry is reachable
//! here, so the tests first build their images through the engine: the
//! `lab` binary this build produced, and a Postgres from the machine's own
//! binaries (with the official image's interface), each `FROM scratch`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptions, ListNetworksOptions, ListVolumesOptions};
use serde_json::Value;
use tokio::sync::OnceCell;

/// Built once per test binary.
static IMAGES: OnceCell<(String, String)> = OnceCell::const_new();

async fn images() -> &'static (String, String) {
    IMAGES
        .get_or_init(|| async {
            let lab = lab_testkit::build_lab_image(Path::new(env!("CARGO_BIN_EXE_lab")))
                .await
                .expect("building the lab's test image (needs a running Docker engine)");
            let bindir = lab_testkit::find_bindir().expect("PostgreSQL binaries");
            let postgres = lab_testkit::build_postgres_image(&bindir)
                .await
                .expect("building the Postgres test image from the machine's binaries");
            (lab.to_owned(), postgres.to_owned())
        })
        .await
}

fn cli(state: &Path) -> lab_testkit::LabCli {
    let (mythical, postgres) = IMAGES.get().expect("images built first");
    lab_testkit::LabCli::new(env!("CARGO_BIN_EXE_lab"), state)
        .with_env("MYTHICAL_LAB_IMAGE_MYTHICAL", mythical)
        .with_env("MYTHICAL_LAB_IMAGE_POSTGRES", postgres)
}

fn lab(state: &Path, args: &[&str]) -> Output {
    cli(state).run(args)
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Takes a lab down when the test ends, passed or failed.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if IMAGES.get().is_some() {
            let _ = lab(&self.0, &["down", "--volumes"]);
        }
    }
}

async fn engine() -> Docker {
    Docker::connect_with_local_defaults()
        .expect("a Docker engine")
        .negotiate_version()
        .await
        .expect("the Docker engine answers")
}

/// The containers, networks and volumes labelled for the lab whose state
/// folder is `state`.
async fn labelled(docker: &Docker, state: &Path) -> (Vec<String>, usize, usize) {
    let filter = HashMap::from([(
        "label".to_owned(),
        vec![format!("io.mythical-lab.state-dir={}", state.display())],
    )]);
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filter.clone()),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_iter()
        .map(|c| {
            format!(
                "{} {}",
                c.names.unwrap_or_default().join(","),
                c.state.map(|s| s.to_string()).unwrap_or_default()
            )
        })
        .collect();
    let networks = docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(filter.clone()),
        }))
        .await
        .unwrap()
        .len();
    let volumes = docker
        .list_volumes(Some(ListVolumesOptions {
            filters: Some(filter),
        }))
        .await
        .unwrap()
        .volumes
        .unwrap_or_default()
        .len();
    (containers, networks, volumes)
}

/// A console page's HTML, which must answer 200.
async fn page(url: &str) -> String {
    let answer = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = answer.status();
    let body = answer.text().await.unwrap();
    assert!(status.is_success(), "{url}: {status}: {body}");
    body
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The first verdict of `lab diagnose --json` that names a cause, as a
/// learner reads it: it must be `id` (a report still looking is no verdict).
fn diagnosed(state: &Path, id: &str, within: Duration) -> Value {
    let report = cli(state)
        .first_verdict(within)
        .unwrap_or_else(|last| panic!("no verdict within {within:?}; last report: {last:#}"));
    assert_eq!(
        report["root_cause"]["id"], id,
        "the first verdict names another cause: {report:#}"
    );
    report
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_lab_in_containers_diagnoses_faults_and_down_removes_only_its_own() {
    images().await;
    let docker = engine().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("lab-a");
    let bystander = dir.path().join("lab-b");
    let _a = Cleanup(state.clone());
    let _b = Cleanup(bystander.clone());

    let args = ["up", "--runtime", "docker", "--backends", "embedded"];
    ok(&lab(&state, &args), "lab up (a)");
    ok(&lab(&bystander, &args), "lab up (b)");

    let status = json(&lab(&state, &["status", "--json"]));
    assert_eq!(status["runtime"], "docker");
    assert_eq!(status["backends"], "embedded");
    let names: Vec<&str> = status["components"]
        .as_array()
        .unwrap()
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
    for component in status["components"].as_array().unwrap() {
        assert_eq!(component["health"], "healthy", "{component}");
        assert!(component["memory_mib"].as_u64().unwrap() > 0);
        for url in component["endpoints"].as_object().unwrap().values() {
            assert!(url.as_str().unwrap().contains("127.0.0.1:"), "{url}");
        }
    }
    assert_eq!(status["memory_limit_mib"], 256 + 32 + 192 + 128 + 128);
    let (containers, networks, volumes) = labelled(&docker, &state).await;
    assert_eq!(containers.len(), 5, "{containers:?}");
    assert_eq!((networks, volumes), (1, 2));

    // The reference fault, found through the containers' telemetry.
    ok(
        &lab(&state, &["fault", "inject", "null-name", "--rate", "1"]),
        "inject null-name",
    );
    let report = diagnosed(&state, "null-name", Duration::from_secs(60));
    assert_eq!(report["root_cause"]["service"], "mythical-server");
    // Postgres' own words, for whichever beast failed last.
    let message = report["root_cause"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(r#"null value in column "name" of relation ""#)
            && message.ends_with(r#"" violates not-null constraint"#),
        "{message}"
    );
    let signals: Vec<&str> = report["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["signal"].as_str().unwrap())
        .collect();
    for signal in ["metrics", "traces", "logs", "database"] {
        assert!(signals.contains(&signal), "{signal} missing: {report:#}");
    }
    // The console shows the containers' lab as it shows a native one.
    let console = status["endpoints"]["console"]
        .as_str()
        .unwrap_or_else(|| panic!("lab up starts the console: {status:#}"))
        .to_owned();
    let home = page(&format!("{console}/")).await;
    assert!(
        home.contains("Runtime <strong>docker</strong>")
            && home.contains("5 of 5 components healthy"),
        "{home}"
    );
    let diagnosis = page(&format!("{console}/diagnose")).await;
    assert!(diagnosis.contains("null-name"), "{diagnosis}");
    let traces = page(&format!("{console}/traces")).await;
    assert!(traces.contains("href=\"/trace/"), "{traces}");

    // The server in its container pushes heap profiles too (every 10 s),
    // and what it allocated goes through its own functions (what it holds
    // when well is mostly its libraries' buffers).
    let backend = status["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "backend")
        .and_then(|c| c["endpoints"]["query"].as_str())
        .expect("the backend has a query endpoint")
        .to_owned();
    let selector = "memory:alloc_space:bytes::%7Bservice_name%3D%22mythical-server%22%7D";
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let top: Value = serde_json::from_str(
            &page(&format!(
                "{backend}/api/profiles/top?query={selector}&from=now-5m&until=now&limit=200"
            ))
            .await,
        )
        .unwrap();
        let named = top["functions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|f| f["name"].as_str().unwrap_or("").starts_with("mythical_"));
        if named {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no heap profile naming the server's code: {top}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    ok(
        &lab(&state, &["fault", "clear", "null-name"]),
        "clear null-name",
    );

    // Postgres stopped through the engine.
    let out = ok(
        &lab(&state, &["fault", "inject", "db-down"]),
        "inject db-down",
    );
    assert!(out.contains("postgres"), "{out}");
    let report = diagnosed(&state, "db-down", Duration::from_secs(60));
    assert_eq!(report["root_cause"]["service"], "postgres");
    let runtime = &report["evidence"][0];
    assert_eq!(runtime["signal"], "runtime");
    assert!(
        runtime["finding"]
            .as_str()
            .unwrap()
            .starts_with("postgres is stopped"),
        "{report:#}"
    );
    ok(
        &lab(&state, &["fault", "clear", "db-down"]),
        "clear db-down",
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = json(&lab(&state, &["status", "--json"]));
        if status["components"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["health"] == "healthy")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not healthy after clearing db-down: {status:#}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // The server killed: the requester's calls are refused.
    ok(
        &lab(&state, &["fault", "inject", "service-crash"]),
        "inject service-crash",
    );
    let report = diagnosed(&state, "service-crash", Duration::from_secs(30));
    assert_eq!(report["root_cause"]["service"], "mythical-server");
    ok(&lab(&state, &["fault", "clear"]), "clear every fault");

    let logs = ok(
        &lab(&state, &["logs", "mythical-server", "--tail", "5"]),
        "lab logs",
    );
    assert!(!logs.trim().is_empty());

    ok(&lab(&state, &["down", "--volumes"]), "lab down (a)");
    let (containers, networks, volumes) = labelled(&docker, &state).await;
    assert!(containers.is_empty(), "left behind: {containers:?}");
    assert_eq!((networks, volumes), (0, 0));

    // The other lab did not notice.
    let (containers, networks, volumes) = labelled(&docker, &bystander).await;
    assert_eq!(containers.len(), 5, "{containers:?}");
    assert!(
        containers.iter().all(|c| c.ends_with("running")),
        "{containers:?}"
    );
    assert_eq!((networks, volumes), (1, 2));
    let status = json(&lab(&bystander, &["status", "--json"]));
    assert!(
        status["components"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["health"] == "healthy"),
        "{status:#}"
    );
    ok(&lab(&bystander, &["down", "--volumes"]), "lab down (b)");
    let (containers, networks, volumes) = labelled(&docker, &bystander).await;
    assert!(containers.is_empty() && networks == 0 && volumes == 0);
}

/// The scenarios only the engine can play (a crashed container), walked
/// as the native ones are: diagnosed, guided, answered, undone.
#[tokio::test(flavor = "multi_thread")]
async fn docker_only_scenarios_are_guided_answered_diagnosed_and_undone() {
    let (mythical, postgres) = images().await;
    let dir = tempfile::tempdir().unwrap();
    let cli = lab_testkit::LabCli::new(env!("CARGO_BIN_EXE_lab"), dir.path().join("lab"))
        .with_env("MYTHICAL_LAB_IMAGE_MYTHICAL", mythical)
        .with_env("MYTHICAL_LAB_IMAGE_POSTGRES", postgres);
    let _down = lab_testkit::Down(&cli);
    cli.ok(&["up", "--runtime", "docker", "--backends", "embedded"]);
    let docker_only: Vec<Value> = cli
        .scenarios_for("docker")
        .into_iter()
        .filter(|s| {
            !s["runtimes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r == "native")
        })
        .collect();
    assert!(!docker_only.is_empty());
    let mut failures = Vec::new();
    for scenario in &docker_only {
        let walked = lab_testkit::walk_fresh(
            &cli,
            &["--runtime", "docker", "--backends", "embedded"],
            scenario,
            true,
            Duration::from_secs(60),
        );
        eprintln!(
            "{}: diagnosed {} after {:?} s",
            walked.id, walked.diagnosed, walked.seconds
        );
        failures.extend(walked.failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lab_published_on_every_address_or_on_one_comes_up_healthy_and_answers_there() {
    images().await;
    let docker = engine().await;
    let dir = tempfile::tempdir().unwrap();
    // 127.0.0.2 is an address of this machine other than the loopback one
    // the lab dials: ports published only there would fail every check.
    for (address, dial) in [("0.0.0.0", "127.0.0.1"), ("127.0.0.2", "127.0.0.2")] {
        let state = dir.path().join(format!("published-{address}"));
        let _cleanup = Cleanup(state.clone());
        let up = [
            "up",
            "--runtime",
            "docker",
            "--backends",
            "embedded",
            "--publish-address",
            address,
        ];
        ok(
            &lab(&state, &up),
            &format!("lab up --publish-address {address}"),
        );
        let status = json(&lab(&state, &["status", "--json"]));
        for component in status["components"].as_array().unwrap() {
            assert_eq!(component["health"], "healthy", "{address}: {component}");
        }
        let server = status["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "mythical-server")
            .unwrap();
        let local = server["endpoints"]["http"].as_str().unwrap();
        let port = local.rsplit(':').next().unwrap();
        let health = reqwest::get(format!("http://{dial}:{port}/healthz"))
            .await
            .unwrap_or_else(|e| {
                panic!("{address}: the server is not reachable on {dial}:{port}: {e}")
            });
        assert!(
            health.status().is_success(),
            "{address}: {}",
            health.status()
        );

        let (containers, _, _) = labelled(&docker, &state).await;
        // Each entry is "<names> <state>".
        let name = containers
            .iter()
            .filter_map(|c| c.split_whitespace().next())
            .map(|n| n.trim_start_matches('/'))
            .find(|n| n.ends_with("-mythical-server"))
            .unwrap_or_else(|| panic!("no server container among {containers:?}"));
        let inspected = docker
            .inspect_container(
                name,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .unwrap();
        let bindings = inspected
            .host_config
            .and_then(|h| h.port_bindings)
            .unwrap_or_default();
        let addresses: Vec<String> = bindings
            .values()
            .flatten()
            .flatten()
            .filter_map(|b| b.host_ip.clone())
            .collect();
        assert!(
            addresses.iter().any(|a| a == address),
            "{address}: the server's ports are bound on {addresses:?}"
        );
        ok(&lab(&state, &["down", "--volumes"]), "lab down");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn lgtm_without_its_images_fails_before_starting_anything() {
    images().await;
    let docker = engine().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("offline");
    let _cleanup = Cleanup(state.clone());
    let out = lab(&state, &["up", "--runtime", "docker", "--backends", "lgtm"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("grafana/tempo:3.0.3"), "{stderr}");
    assert!(stderr.contains("grafana/grafana:12.3.1"), "{stderr}");
    assert!(stderr.contains("lab images load"), "{stderr}");
    assert!(stderr.contains("nothing was started"), "{stderr}");
    let (containers, networks, volumes) = labelled(&docker, &state).await;
    assert!(containers.is_empty() && networks == 0 && volumes == 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn images_saved_to_an_archive_load_back_into_an_engine_without_them() {
    let (mythical, postgres) = images().await;
    let docker = engine().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("carry");
    let archive = dir.path().join("lab-images.tar");

    let out = ok(
        &lab(
            &state,
            &[
                "images",
                "save",
                archive.to_str().unwrap(),
                "--backends",
                "embedded",
            ],
        ),
        "lab images save",
    );
    assert!(out.contains("saved 2 images"), "{out}");
    assert!(std::fs::metadata(&archive).unwrap().len() > 1_000_000);

    for image in [mythical, postgres] {
        docker
            .remove_image(
                image,
                Some(bollard::query_parameters::RemoveImageOptions {
                    force: true,
                    ..Default::default()
                }),
                None,
            )
            .await
            .unwrap();
    }
    let list = json(&lab(&state, &["images", "list", "--json"]));
    let present = |list: &Value, key: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|i| i["key"] == key)
            .unwrap()["present"]
            .clone()
    };
    assert_eq!(present(&list, "postgres"), false);
    assert_eq!(
        list.as_array().unwrap()[0]["origin"],
        "MYTHICAL_LAB_IMAGE_POSTGRES"
    );

    ok(
        &lab(&state, &["images", "load", archive.to_str().unwrap()]),
        "lab images load",
    );
    let list = json(&lab(&state, &["images", "list", "--json"]));
    assert_eq!(present(&list, "postgres"), true);
    assert_eq!(present(&list, "mythical"), true);

    let out = lab(
        &state,
        &[
            "images",
            "load",
            dir.path().join("absent.tar").to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}
