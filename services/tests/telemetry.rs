//! What mythical-server sends over OTLP, checked by receiving it: spans with
//! their parentage, attributes, status and exception event; log records
//! tied to their trace; the request-time histogram. Both OTLP protocols.

mod common;

use std::time::Duration;

use common::{otlp_env, set_fault, start_server};
use lab_testkit::{OtlpReceiver, TestPostgres};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use serde_json::json;

const NOT_NULL: &str =
    r#"null value in column "name" of relation "owlbear" violates not-null constraint"#;
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

async fn null_name_failure_is_exported_over(protocol: &str) {
    let pg = TestPostgres::start().expect("a test Postgres");
    let otlp = OtlpReceiver::start().await.unwrap();
    let server = start_server(&pg, otlp_env(&otlp.endpoint(), protocol)).await;
    set_fault(&server, "null-name", 1.0).await;

    let response = reqwest::Client::new()
        .post(server.url("/owlbear"))
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .json(&json!({ "name": "red_John_lion" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);

    let receiver = &otlp.receiver;
    let (server_span, db_span) = receiver
        .wait_for(
            "the server and database spans",
            Duration::from_secs(10),
            |r| {
                let spans = r.spans();
                let server = spans
                    .iter()
                    .find(|s| s.trace_id() == TRACE_ID && s.span.name == "POST /:beast")?;
                let db = spans
                    .iter()
                    .find(|s| s.trace_id() == TRACE_ID && s.span.name == "INSERT owlbear")?;
                Some((server.clone(), db.clone()))
            },
        )
        .await;

    // The caller's trace is continued; the statement is a child of the request.
    assert_eq!(server_span.service(), "mythical-server");
    assert_eq!(
        server_span
            .resource
            .get("service.namespace")
            .map(String::as_str),
        Some("mythical")
    );
    assert_eq!(server_span.parent_span_id(), CALLER_SPAN);
    assert_eq!(server_span.span.kind, SpanKind::Server as i32);
    assert_eq!(
        server_span.attr("http.request.method").as_deref(),
        Some("POST")
    );
    assert_eq!(server_span.attr("http.route").as_deref(), Some("/:beast"));
    assert_eq!(
        server_span.attr("http.response.status_code").as_deref(),
        Some("500")
    );
    assert_eq!(server_span.attr("beast").as_deref(), Some("owlbear"));
    // What tells null-name from missing-name: the server did receive a name...
    assert!(
        server_span
            .attr("http.request.body.size")
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| n > 2),
        "{:?}",
        server_span.attr("http.request.body.size")
    );
    assert_eq!(
        server_span.attr("mythical.name").as_deref(),
        Some("red_John_lion")
    );
    let status = server_span.span.status.as_ref().unwrap();
    assert_eq!(status.code, StatusCode::Error as i32);
    assert_eq!(status.message, NOT_NULL);

    assert_eq!(db_span.parent_span_id(), server_span.span_id());
    assert_eq!(db_span.span.kind, SpanKind::Client as i32);
    assert_eq!(db_span.attr("db.system").as_deref(), Some("postgresql"));
    assert_eq!(
        db_span.attr("db.system.name").as_deref(),
        Some("postgresql")
    );
    assert_eq!(db_span.attr("db.operation.name").as_deref(), Some("INSERT"));
    assert_eq!(
        db_span.attr("db.collection.name").as_deref(),
        Some("owlbear")
    );
    assert_eq!(
        db_span.attr("db.query.text").as_deref(),
        Some("INSERT INTO owlbear (name) VALUES ($1)")
    );
    // ...and bound NULL in its place.
    assert_eq!(
        db_span.attr("db.query.parameter.0").as_deref(),
        Some("NULL")
    );
    assert_eq!(
        db_span.attr("db.response.status_code").as_deref(),
        Some("23502")
    );
    let db_status = db_span.span.status.as_ref().unwrap();
    assert_eq!(db_status.code, StatusCode::Error as i32);
    assert_eq!(db_status.message, NOT_NULL);
    let exception = db_span
        .span
        .events
        .iter()
        .find(|e| e.name == "exception")
        .expect("an exception event on the database span");
    let message = exception
        .attributes
        .iter()
        .find(|kv| kv.key == "exception.message")
        .map(|kv| lab_testkit::render(kv.value.as_ref().unwrap()));
    assert_eq!(message.as_deref(), Some(NOT_NULL));

    let log = receiver
        .wait_for("the failure's log record", Duration::from_secs(10), |r| {
            r.logs().into_iter().find(|l| l.trace_id() == TRACE_ID)
        })
        .await;
    assert_eq!(log.service(), "mythical-server");
    assert_eq!(log.span_id(), server_span.span_id());
    assert_eq!(log.record.severity_text, "error");
    assert_eq!(log.attr("level").as_deref(), Some("error"));
    assert_eq!(log.attr("job").as_deref(), Some("mythical-server"));
    assert_eq!(log.attr("namespace").as_deref(), Some("mythical"));
    assert_eq!(log.attr("beast").as_deref(), Some("owlbear"));
    assert_eq!(
        log.body(),
        format!(
            r#"traceID={TRACE_ID} http.method=POST endpoint=owlbear status=FAILURE code=500 error="null value in column \"name\" of relation \"owlbear\" violates not-null constraint""#
        )
    );

    let histogram = receiver
        .wait_for(
            "mythical_request_times over OTLP",
            Duration::from_secs(10),
            |r| {
                r.metrics()
                    .into_iter()
                    .find(|m| m.metric.name == "mythical_request_times")
            },
        )
        .await;
    assert_eq!(histogram.metric.unit, "ms");
    let Some(Data::Histogram(data)) = histogram.metric.data else {
        panic!(
            "mythical_request_times is not a histogram: {:?}",
            histogram.metric
        );
    };
    let point = &data.data_points[0];
    assert_eq!(
        point.explicit_bounds,
        [
            10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0, 16000.0
        ]
    );
    let labels: Vec<(String, String)> = point
        .attributes
        .iter()
        .map(|kv| {
            (
                kv.key.clone(),
                lab_testkit::render(kv.value.as_ref().unwrap()),
            )
        })
        .collect();
    for expected in [("method", "POST"), ("status", "500"), ("beast", "owlbear")] {
        assert!(
            labels.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{labels:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_name_failure_is_exported_over_grpc() {
    null_name_failure_is_exported_over("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_name_failure_is_exported_over_http_protobuf() {
    null_name_failure_is_exported_over("http/protobuf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_request_is_one_ok_trace_with_an_info_log() {
    let pg = TestPostgres::start().expect("a test Postgres");
    let otlp = OtlpReceiver::start().await.unwrap();
    let server = start_server(&pg, otlp_env(&otlp.endpoint(), "http/json")).await;
    let response = reqwest::Client::new()
        .get(server.url("/manticore"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let receiver = &otlp.receiver;
    let request = receiver
        .wait_for("a GET span", Duration::from_secs(10), |r| {
            r.spans().into_iter().find(|s| s.span.name == "GET /:beast")
        })
        .await;
    assert!(
        request.parent_span_id().is_empty(),
        "no traceparent: a new root"
    );
    assert_ne!(
        request.span.status.as_ref().map(|s| s.code),
        Some(StatusCode::Error as i32)
    );
    let select = receiver
        .wait_for("the SELECT span", Duration::from_secs(10), |r| {
            r.spans()
                .into_iter()
                .find(|s| s.span.name == "SELECT manticore" && s.trace_id() == request.trace_id())
        })
        .await;
    assert_eq!(select.parent_span_id(), request.span_id());
    assert_eq!(
        select.attr("db.query.text").as_deref(),
        Some("SELECT name FROM manticore")
    );
    let log = receiver
        .wait_for("the success log", Duration::from_secs(10), |r| {
            r.logs()
                .into_iter()
                .find(|l| l.trace_id() == request.trace_id())
        })
        .await;
    assert_eq!(log.record.severity_text, "info");
    assert_eq!(
        log.body(),
        format!(
            "traceID={} http.method=GET endpoint=manticore status=SUCCESS code=200",
            request.trace_id()
        )
    );
}
