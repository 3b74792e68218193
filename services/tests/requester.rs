//! mythical-requester against a real server: one trace from requester to
//! database, and span evidence that tells `missing-name` (the requester sent
//! no name) from `null-name` (the server dropped it).

mod common;

use std::time::Duration;

use common::{TOKEN, otlp_env, set_fault, start_requester, start_server};
use lab_testkit::{OtlpReceiver, ReceivedSpan, TestPostgres};
use serde_json::{Value, json};

fn fast_traffic(endpoint: &str) -> Vec<(&'static str, String)> {
    let mut env = otlp_env(endpoint, "grpc");
    env.push(("MYTHICAL_REQUESTER_RATE", "40".into()));
    env
}

/// The spans of the first trace whose INSERT failed with 23502.
async fn first_not_null_trace(otlp: &OtlpReceiver) -> Vec<ReceivedSpan> {
    otlp.wait_for(
        "a trace with a 23502 INSERT",
        Duration::from_secs(30),
        |r| {
            let spans = r.spans();
            let failed = spans.iter().find(|s| {
                s.span.name.starts_with("INSERT ")
                    && s.attr("db.response.status_code").as_deref() == Some("23502")
            })?;
            let trace: Vec<ReceivedSpan> = spans
                .iter()
                .filter(|s| s.trace_id() == failed.trace_id())
                .cloned()
                .collect();
            // Wait for the requester's spans of that trace too.
            trace
                .iter()
                .any(|s| s.service() == "mythical-requester" && s.span.name == "requester")
                .then_some(trace)
        },
    )
    .await
}

fn named<'a>(trace: &'a [ReceivedSpan], service: &str, name: &str) -> &'a ReceivedSpan {
    trace
        .iter()
        .find(|s| s.service() == service && s.span.name == name)
        .unwrap_or_else(|| {
            panic!(
                "no {service} span {name} in {:?}",
                trace.iter().map(|s| &s.span.name).collect::<Vec<_>>()
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_name_is_the_requesters_doing_and_the_trace_shows_it() {
    let pg = TestPostgres::start().expect("a test Postgres");
    let otlp = OtlpReceiver::start().await.unwrap();
    let server = start_server(&pg, otlp_env(&otlp.endpoint(), "grpc")).await;
    let requester = start_requester(server.port, fast_traffic(&otlp.endpoint())).await;
    set_fault(&requester, "missing-name", 1.0).await;

    let trace = first_not_null_trace(&otlp.receiver).await;
    let root = named(&trace, "mythical-requester", "requester");
    let post = named(&trace, "mythical-requester", "POST /:beast");
    let server_span = named(&trace, "mythical-server", "POST /:beast");
    let insert = trace
        .iter()
        .find(|s| s.span.name.starts_with("INSERT "))
        .unwrap();

    assert_eq!(post.parent_span_id(), root.span_id());
    assert_eq!(
        server_span.parent_span_id(),
        post.span_id(),
        "traceparent carried the client span"
    );
    assert_eq!(insert.parent_span_id(), server_span.span_id());
    // A body of two bytes, `{}`, on both sides: no name was sent.
    assert_eq!(post.attr("http.request.body.size").as_deref(), Some("2"));
    assert_eq!(
        server_span.attr("http.request.body.size").as_deref(),
        Some("2")
    );
    assert_eq!(server_span.attr("mythical.name"), None);
    assert_eq!(insert.attr("db.query.parameter.0").as_deref(), Some("NULL"));
    assert_eq!(post.attr("http.status_code").as_deref(), Some("500"));
    let beast = insert.attr("db.collection.name").unwrap();
    assert_eq!(
        post.span.status.as_ref().unwrap().message,
        format!(
            r#"null value in column "name" of relation "{beast}" violates not-null constraint"#
        ),
        "the requester's span quotes the server's error"
    );
    // The deploy that sent it says its version in its resource, the span
    // none; its calls come from the same deploy.
    let version = root
        .resource
        .get("service.version")
        .expect("a deploy's version");
    assert!(["1.9.2", "2.0.0"].contains(&version.as_str()), "{version}");
    assert_eq!(root.attr("service.version"), None);
    assert_eq!(post.resource.get("service.version"), Some(version));

    // The requester logged the failure with the server's error, in its trace.
    let log = otlp
        .receiver
        .wait_for(
            "the requester's failure log",
            Duration::from_secs(10),
            |r| {
                r.logs().into_iter().find(|l| {
                    l.service() == "mythical-requester"
                        && l.trace_id() == root.trace_id()
                        && l.body().contains("status=FAILURE")
                })
            },
        )
        .await;
    assert!(
        log.body().contains("violates not-null constraint"),
        "{}",
        log.body()
    );
    assert!(
        !log.body().contains(" name="),
        "no name was sent: {}",
        log.body()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_name_is_the_servers_doing_and_the_trace_shows_it() {
    let pg = TestPostgres::start().expect("a test Postgres");
    let otlp = OtlpReceiver::start().await.unwrap();
    let server = start_server(&pg, otlp_env(&otlp.endpoint(), "grpc")).await;
    set_fault(&server, "null-name", 1.0).await;
    let _requester = start_requester(server.port, fast_traffic(&otlp.endpoint())).await;

    let trace = first_not_null_trace(&otlp.receiver).await;
    let post = named(&trace, "mythical-requester", "POST /:beast");
    let server_span = named(&trace, "mythical-server", "POST /:beast");
    let insert = trace
        .iter()
        .find(|s| s.span.name.starts_with("INSERT "))
        .unwrap();
    // The body the requester sent is the body the server received, and it
    // holds a name: `{"name":"…"}` is more than the two bytes of `{}`.
    let sent: usize = post
        .attr("http.request.body.size")
        .unwrap()
        .parse()
        .unwrap();
    assert!(sent > 2, "{sent}");
    assert_eq!(
        server_span.attr("http.request.body.size"),
        Some(sent.to_string())
    );
    let name = server_span.attr("mythical.name").unwrap();
    assert_eq!(sent, format!(r#"{{"name":"{name}"}}"#).len());
    assert_eq!(insert.attr("db.query.parameter.0").as_deref(), Some("NULL"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requester_links_requests_serves_danger_and_obeys_traffic_control() {
    let pg = TestPostgres::start().expect("a test Postgres");
    let otlp = OtlpReceiver::start().await.unwrap();
    let server = start_server(&pg, otlp_env(&otlp.endpoint(), "http/protobuf")).await;
    let requester = start_requester(server.port, fast_traffic(&otlp.endpoint())).await;
    let http = reqwest::Client::new();

    let linked = otlp
        .receiver
        .wait_for(
            "a requester span linked to a previous one",
            Duration::from_secs(20),
            |r| {
                r.spans()
                    .into_iter()
                    .find(|s| s.span.name == "requester" && !s.span.links.is_empty())
            },
        )
        .await;
    let previous = lab_testkit::hex(&linked.span.links[0].span_id);
    assert_ne!(previous, linked.span_id());

    let metrics = http
        .get(requester.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("# TYPE mythical_danger_level_30s gauge"),
        "{metrics}"
    );

    // Pause: the beasts' tables stop changing.
    let paused: Value = http
        .put(requester.url("/admin/traffic"))
        .bearer_auth(TOKEN)
        .json(&json!({ "paused": true }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(paused["paused"], true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let requests_so_far = || {
        otlp.receiver
            .spans()
            .iter()
            .filter(|s| s.span.name == "requester")
            .count()
    };
    let before = requests_so_far();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(requests_so_far(), before, "no request while paused");

    let resumed: Value = http
        .put(requester.url("/admin/traffic"))
        .bearer_auth(TOKEN)
        .json(&json!({ "rate": 20 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resumed, json!({ "rate": 20.0, "paused": false }));
    otlp.receiver
        .wait_for("requests after resuming", Duration::from_secs(10), |_| {
            (requests_so_far() > before).then_some(())
        })
        .await;

    let refused = http
        .put(requester.url("/admin/traffic"))
        .json(&json!({ "rate": 5 }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
}
