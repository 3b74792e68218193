//! mythical-server's HTTP contract against a real Postgres: the original's
//! routes and codes, Postgres' own errors in the 500 body, and /metrics.

mod common;

use common::{no_telemetry, start_server};
use lab_testkit::TestPostgres;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beasts_are_listed_created_and_deleted_like_the_original() {
    let pg = TestPostgres::start().expect("a test Postgres");
    let server = start_server(&pg, no_telemetry()).await;
    let http = reqwest::Client::new();

    let empty = http.get(server.url("/owlbear")).send().await.unwrap();
    assert_eq!(empty.status(), 200);
    assert_eq!(empty.json::<Value>().await.unwrap(), json!([]));

    let created = http
        .post(server.url("/owlbear"))
        .json(&json!({ "name": "red_John_lion" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    let listed = http.get(server.url("/owlbear")).send().await.unwrap();
    assert_eq!(
        listed.json::<Value>().await.unwrap(),
        json!([{ "name": "red_John_lion" }])
    );
    assert_eq!(
        pg.psql("SELECT name FROM owlbear").unwrap(),
        "red_John_lion"
    );

    let deleted = http
        .delete(server.url("/owlbear"))
        .json(&json!({ "name": "red_John_lion" }))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(pg.psql("SELECT count(*) FROM owlbear").unwrap(), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_answers() {
    let pg = TestPostgres::start().expect("a test Postgres");
    let server = start_server(&pg, no_telemetry()).await;
    let http = reqwest::Client::new();

    let unknown = http.get(server.url("/kraken")).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        unknown.json::<Value>().await.unwrap()["error"],
        "kraken is not a valid endpoint"
    );

    let not_json = http
        .post(server.url("/unicorn"))
        .header("content-type", "application/json")
        .body("{name: oops")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    let body: Value = not_json.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("request body is not JSON: "),
        "{body}"
    );

    let not_object = http
        .post(server.url("/unicorn"))
        .json(&json!(["red_John_lion"]))
        .send()
        .await
        .unwrap();
    assert_eq!(not_object.status(), 400);

    let numeric_name = http
        .post(server.url("/unicorn"))
        .json(&json!({ "name": 7 }))
        .send()
        .await
        .unwrap();
    assert_eq!(numeric_name.status(), 400);
    assert_eq!(pg.psql("SELECT count(*) FROM unicorn").unwrap(), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_without_name_reaches_postgres_and_its_refusal_reaches_the_caller() {
    let pg = TestPostgres::start().expect("a test Postgres");
    let server = start_server(&pg, no_telemetry()).await;
    let http = reqwest::Client::new();

    let refused = http
        .post(server.url("/owlbear"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 500);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(
        body["error"],
        r#"null value in column "name" of relation "owlbear" violates not-null constraint"#
    );
    assert_eq!(body["sqlstate"], "23502");
    assert_eq!(body["table"], "owlbear");
    assert_eq!(body["column"], "name");

    for expected in [201, 500] {
        let response = http
            .post(server.url("/beholder"))
            .json(&json!({ "name": "teal_Ada_otter" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected);
        if expected == 500 {
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["sqlstate"], "23505");
            assert_eq!(body["constraint"], "beholder_name_key");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_carry_request_times_with_trace_exemplars() {
    let pg = TestPostgres::start().expect("a test Postgres");
    let server = start_server(&pg, no_telemetry()).await;
    let http = reqwest::Client::new();
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    http.get(server.url("/unicorn"))
        .header("traceparent", traceparent)
        .send()
        .await
        .unwrap();
    http.get(server.url("/kraken")).send().await.unwrap();

    // What a Prometheus or Alloy scrape asks for; without it the classic
    // text, which has no exemplars, comes back.
    let response = http
        .get(server.url("/metrics"))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0;q=0.9,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = response.text().await.unwrap();
    assert!(
        text.contains("# TYPE mythical_request_times histogram"),
        "{text}"
    );
    for bucket in [
        "10.0", "20.0", "50.0", "100.0", "200.0", "500.0", "1000.0", "2000.0", "4000.0", "8000.0",
        "16000.0", "+Inf",
    ] {
        assert!(
            text.contains(&format!(
                r#"mythical_request_times_bucket{{le="{bucket}",method="GET",status="200",beast="unicorn"}}"#
            )),
            "bucket {bucket} missing in\n{text}"
        );
    }
    assert!(
        text.contains(r#"traceID="0af7651916cd43dd8448eb211c80319c""#),
        "no exemplar with the caller's trace id in\n{text}"
    );
    assert!(
        text.contains(
            r#"mythical_request_times_count{method="GET",status="404",beast="unknown"} 1"#
        ),
        "{text}"
    );
}
