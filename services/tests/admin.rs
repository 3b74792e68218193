//! The fault switches' admin API: the token is required, switches change a
//! running server at once, and bad input is refused with the way out.

mod common;

use common::{TOKEN, no_telemetry, start_server};
use lab_testkit::{TestPostgres, free_port};
use serde_json::{Value, json};

const NOT_NULL: &str =
    r#"null value in column "name" of relation "unicorn" violates not-null constraint"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_refuses_a_missing_or_wrong_token() {
    let pg = TestPostgres::start().expect("a test Postgres");
    let server = start_server(&pg, no_telemetry()).await;
    let http = reqwest::Client::new();
    let url = server.admin_url("/admin/faults/null-name");

    let missing = http
        .put(&url)
        .json(&json!({ "rate": 1.0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    let wrong = http
        .put(&url)
        .bearer_auth("not-the-token")
        .json(&json!({ "rate": 1.0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    // Nothing was switched on by the refused calls.
    let created = http
        .post(server.url("/unicorn"))
        .json(&json!({ "name": "jade_Otto_seal" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_is_shut_without_a_configured_token() {
    let pg = TestPostgres::start().expect("a test Postgres");
    let server = start_server(
        &pg,
        vec![
            ("MYTHICAL_ADMIN_TOKEN", String::new()),
            ("OTEL_SDK_DISABLED", "true".into()),
        ],
    )
    .await;
    let response = reqwest::Client::new()
        .get(server.admin_url("/admin/faults"))
        .bearer_auth("")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("MYTHICAL_ADMIN_TOKEN")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_name_switch_turns_inserts_into_postgres_refusals_and_back() {
    let pg = TestPostgres::start().expect("a test Postgres");
    let admin_port = free_port();
    let mut env = no_telemetry();
    env.push(("MYTHICAL_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}")));
    let server = start_server(&pg, env).await;
    let http = reqwest::Client::new();

    // The admin API lives only on its own port when given one.
    let on_public = http
        .get(server.url("/admin/faults"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(on_public.status(), 404);

    let listed: Value = http
        .get(server.admin_url("/admin/faults"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["service"], "mythical-server");
    let null = listed["faults"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "null-name")
        .unwrap_or_else(|| panic!("null-name is listed: {listed:#}"));
    assert_eq!(null["active"], false);

    let on: Value = http
        .put(server.admin_url("/admin/faults/null-name"))
        .bearer_auth(TOKEN)
        .json(&json!({ "rate": 1.0, "duration_seconds": 600 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(on["active"], true);
    assert_eq!(on["rate"], 1.0);
    assert!(on["expires_in_seconds"].as_u64().unwrap() > 590);

    for i in 0..5 {
        let refused = http
            .post(server.url("/unicorn"))
            .json(&json!({ "name": format!("name_{i}") }))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 500);
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"], NOT_NULL);
        assert_eq!(body["sqlstate"], "23502");
    }

    let cleared = http
        .delete(server.admin_url("/admin/faults/null-name"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 204);
    let created = http
        .post(server.url("/unicorn"))
        .json(&json!({ "name": "back_to_normal" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kinds_and_bad_rates_are_refused() {
    let pg = TestPostgres::start().expect("a test Postgres");
    let server = start_server(&pg, no_telemetry()).await;
    let http = reqwest::Client::new();

    let unknown = http
        .put(server.admin_url("/admin/faults/missing-name"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(
        body["error"],
        "unknown fault kind `missing-name` for this service; it knows: clock-skew, cpu-hog, memory-leak, null-name, pool-exhaustion, table-wipe"
    );

    let bad_rate = http
        .put(server.admin_url("/admin/faults/null-name"))
        .bearer_auth(TOKEN)
        .json(&json!({ "rate": 2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_rate.status(), 400);

    let bad_body = http
        .put(server.admin_url("/admin/faults/null-name"))
        .bearer_auth(TOKEN)
        .body("rate=1")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_body.status(), 400);

    // An empty body: on at the kind's default rate (the original's 10%).
    let default: Value = http
        .put(server.admin_url("/admin/faults/null-name"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(default["rate"], 0.1);
}
