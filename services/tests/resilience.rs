//! mythical-server when the things it depends on go away: Postgres
//! restarts, the collector is missing. It answers 500s meanwhile, never
//! panics, and recovers on its own.

mod common;

use std::time::{Duration, Instant};

use common::{no_telemetry, otlp_env, start_server};
use lab_testkit::{TestPostgres, free_port};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_survives_a_postgres_restart_and_reconnects() {
    let pg = TestPostgres::start().expect("a test Postgres");
    let mut server = start_server(&pg, no_telemetry()).await;
    let http = reqwest::Client::new();
    let ok = http
        .post(server.url("/illithid"))
        .json(&json!({ "name": "before" }))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 201);

    pg.stop_server().unwrap();
    let down = http.get(server.url("/illithid")).send().await.unwrap();
    assert_eq!(down.status(), 500);
    let body: Value = down.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("database unavailable"),
        "{body}"
    );
    assert_eq!(
        http.get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    assert!(server.is_running(), "no crash while Postgres is away");

    pg.start_server().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let response = http.get(server.url("/illithid")).send().await.unwrap();
        if response.status() == 200 {
            assert_eq!(
                response.json::<Value>().await.unwrap(),
                json!([{ "name": "before" }])
            );
            break;
        }
        assert!(Instant::now() < deadline, "the server did not reconnect");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        http.get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_waits_for_a_late_postgres() {
    let pg = TestPostgres::start().expect("a test Postgres");
    pg.stop_server().unwrap();
    let port = free_port();
    let mut env = no_telemetry();
    env.extend(pg.env());
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mythical-server"));
    command
        .envs(env)
        .env("MYTHICAL_SERVER_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null());
    let mut child = command.spawn().unwrap();
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/healthz");
    let deadline = Instant::now() + Duration::from_secs(10);
    let not_ready = loop {
        if let Ok(response) = http.get(&url).send().await {
            break response;
        }
        assert!(
            Instant::now() < deadline,
            "the API did not come up without Postgres"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(not_ready.status(), 503);
    pg.start_server().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while http.get(&url).send().await.unwrap().status() != 200 {
        assert!(
            Instant::now() < deadline,
            "not ready after Postgres came up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_collector_costs_no_request() {
    let pg = TestPostgres::start().expect("a test Postgres");
    // Nothing listens there: every export fails.
    let dead = format!("http://127.0.0.1:{}", free_port());
    for protocol in ["grpc", "http/protobuf"] {
        let mut server = start_server(&pg, otlp_env(&dead, protocol)).await;
        let http = reqwest::Client::new();
        for i in 0..300 {
            let response = http
                .post(server.url("/owlbear"))
                .json(&json!({ "name": format!("{protocol}-{i}") }))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
        }
        assert!(server.is_running());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_originals_periodic_table_wipe_empties_every_table_when_asked() {
    let pg = TestPostgres::start().expect("a test Postgres");
    let mut env = no_telemetry();
    env.push(("MYTHICAL_SERVER_DATABASE_TEARDOWN_TIMEOUT", "700".into()));
    let server = start_server(&pg, env).await;
    let http = reqwest::Client::new();
    let created = http
        .post(server.url("/manticore"))
        .json(&json!({ "name": "wiped_soon" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = http.get(server.url("/manticore")).send().await.unwrap();
        // During the wipe the original's "Table is not available" 500 may
        // show; afterwards the table is back, empty.
        if response.status() == 200 && response.json::<Value>().await.unwrap() == json!([]) {
            break;
        }
        assert!(Instant::now() < deadline, "the table was never wiped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
