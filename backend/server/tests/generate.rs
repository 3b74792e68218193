//! The original's dashboards against the embedded backend: the lab's
//! reference fault (a NULL-name INSERT failing in mythical-server) sent as
//! real OTLP, then the dashboards' own PromQL and LogQL over HTTP, before
//! and after a restart, and the generator's series cap.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lab_backend::{BackendConfig, GeneratorConfig, RunningBackend};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;
use serde_json::Value;

/// Requests per round; two rounds are sent.
const TRACES: usize = 3;
const SENT: usize = 2 * TRACES;

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn config(data_dir: &std::path::Path, generator: GeneratorConfig) -> BackendConfig {
    BackendConfig {
        data_dir: Some(data_dir.to_owned()),
        query: loopback(),
        otlp_grpc: loopback(),
        otlp_http: loopback(),
        generator: Some(generator),
        ..BackendConfig::default()
    }
}

fn fast() -> GeneratorConfig {
    GeneratorConfig {
        collection_interval: Duration::from_millis(300),
        ..GeneratorConfig::default()
    }
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn text(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

fn resource_spans(service: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![
                text("service.name", service),
                text("service.version", "1.2.3"),
            ],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn failed() -> Option<Status> {
    Some(Status {
        code: 2,
        message:
            r#"null value in column "name" of relation "owlbear" violates not-null constraint"#
                .into(),
    })
}

/// One request of the reference fault: the requester's client span, the
/// server's span, and its failing INSERT.
fn owlbear_post(trace: u8, now: u64) -> Vec<ResourceSpans> {
    let trace_id = vec![trace; 16];
    let id = |n: u8| vec![trace, n, 0, 0, 0, 0, 0, 1];
    let http = || {
        vec![
            text("http.method", "POST"),
            text("http.target", "/owlbear"),
            kv("http.status_code", any_value::Value::IntValue(500)),
        ]
    };
    let requester = Span {
        trace_id: trace_id.clone(),
        span_id: id(1),
        name: "requester POST /owlbear".into(),
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: now,
        end_time_unix_nano: now + 40_000_000,
        attributes: http(),
        status: failed(),
        ..Default::default()
    };
    let server = Span {
        trace_id: trace_id.clone(),
        span_id: id(2),
        parent_span_id: id(1),
        name: "POST /:beast".into(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: now + 5_000_000,
        end_time_unix_nano: now + 35_000_000,
        attributes: http(),
        status: failed(),
        ..Default::default()
    };
    let insert = Span {
        trace_id,
        span_id: id(3),
        parent_span_id: id(2),
        name: "INSERT owlbear".into(),
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: now + 10_000_000,
        end_time_unix_nano: now + 12_000_000,
        attributes: vec![
            text("db.system", "postgresql"),
            text("db.name", "postgres"),
            text("db.statement", "INSERT INTO owlbear (name) VALUES ($1)"),
        ],
        status: failed(),
        ..Default::default()
    };
    vec![
        resource_spans("mythical-requester", vec![requester]),
        resource_spans("mythical-server", vec![server, insert]),
    ]
}

async fn send(backend: &RunningBackend, resource_spans: Vec<ResourceSpans>) {
    let body = ExportTraceServiceRequest { resource_spans }.encode_to_vec();
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", backend.otlp_http))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn get(base: &str, path: &str, params: &[(&str, &str)]) -> Value {
    let url = reqwest::Url::parse_with_params(&format!("{base}{path}"), params).unwrap();
    let response = reqwest::get(url).await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(status.is_success(), "{path} {params:?}: {body}");
    body
}

/// An instant PromQL query's series, each as (labels, value).
async fn promql(base: &str, query: &str) -> Vec<(Value, f64)> {
    let body = get(base, "/api/v1/query", &[("query", query)]).await;
    body["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{query}: {body}"))
        .iter()
        .map(|s| {
            let value = s["value"][1].as_str().unwrap().parse::<f64>().unwrap();
            (s["metric"].clone(), value)
        })
        .collect()
}

/// Polls `query` until it answers (the collection interval is short).
async fn promql_eventually(base: &str, query: &str) -> Vec<(Value, f64)> {
    let started = Instant::now();
    loop {
        let found = promql(base, query).await;
        if !found.is_empty() || started.elapsed() > Duration::from_secs(10) {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn one(found: &[(Value, f64)], query: &str) -> (Value, f64) {
    assert_eq!(found.len(), 1, "{query}: {found:?}");
    found[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_originals_dashboard_queries_answer_from_the_reference_fault_and_survive_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let backend = lab_backend::start(config(data.path(), fast()))
        .await
        .unwrap();
    let base = backend.query_url();
    let now = lab_backend::params::now_nanos() as u64;
    // Two rounds, a collection apart: `rate()` needs two different values
    // of a series, and Tempo writes no initial 0 for a histogram's sum.
    let query = r#"traces_spanmetrics_calls_total{service="mythical-server",span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_ERROR"}"#;
    for round in 0..2 {
        for trace in 0..TRACES as u8 {
            send(
                &backend,
                owlbear_post(round * TRACES as u8 + trace + 1, now),
            )
            .await;
        }
        let sent = (usize::from(round) + 1) * TRACES;
        let started = Instant::now();
        while promql(&base, query).await.first().map(|(_, v)| *v) != Some(sent as f64) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{sent} calls never showed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The rate of the sum needs one more collection after the last round.
    tokio::time::sleep(Duration::from_millis(400)).await;

    // The raw counter: the server span, failing, with every dimension and
    // the original's external labels.
    let (labels, value) = one(&promql(&base, query).await, query);
    assert_eq!(value, SENT as f64);
    for (name, expected) in [
        ("span_name", "POST /:beast"),
        ("http_method", "POST"),
        ("http_target", "/owlbear"),
        ("http_status_code", "500"),
        ("service_version", "1.2.3"),
        ("source", "tempo"),
        ("group", "mythical"),
    ] {
        assert_eq!(labels[name], expected, "{name} in {labels}");
    }

    // mlt.json, with its template variables at `.*` / `.+`.
    let error_rate = r#"(sum(increase(traces_spanmetrics_calls_total{status_code="STATUS_CODE_ERROR",http_target=~".*",service_version=~".*"}[5m]))/sum(increase(traces_spanmetrics_calls_total{status_code!="",http_target=~".*",service_version=~".*"}[5m]))) * 100"#;
    assert_eq!(one(&promql(&base, error_rate).await, error_rate).1, 100.0);
    let by_target = r#"(sum by (http_target)(increase(traces_spanmetrics_calls_total{status_code="STATUS_CODE_ERROR",http_target=~".*",service_version=~".*"}[5m])))/(sum by (http_target)(increase(traces_spanmetrics_calls_total{status_code!="",http_target=~".*",service_version=~".*"}[5m]))) * 100"#;
    // The INSERT span has no target: it is the `{}` row, as in Prometheus.
    let rows = promql(&base, by_target).await;
    let owlbear = rows.iter().find(|(l, _)| l["http_target"] == "/owlbear");
    assert_eq!(owlbear.map(|(_, v)| *v), Some(100.0), "{rows:?}");
    // Every server span took 30 ms.
    let mean_latency = r#"(sum by (http_target)(traces_spanmetrics_latency_sum{http_target=~".*",service_version=~".*",span_kind="SPAN_KIND_SERVER"})) / (sum by (http_target)(traces_spanmetrics_latency_count{http_target=~".*",service_version=~".*",span_kind="SPAN_KIND_SERVER"}))"#;
    let (_, seconds) = one(&promql(&base, mean_latency).await, mean_latency);
    assert!((seconds - 0.030).abs() < 1e-9, "{seconds}");
    for query in [
        r#"(sum by (http_target)(rate(traces_spanmetrics_latency_sum{http_target=~".*",service_version=~".*"}[1m]))) / (sum by (http_target)(rate(traces_spanmetrics_latency_count{http_target=~".*",service_version=~".*"}[1m])))"#,
        r#"sum by (http_method,http_target)(increase(traces_spanmetrics_latency_sum{http_method=~".+", http_target=~".*",service_version=~".*"}[10m]) / increase(traces_spanmetrics_latency_count{http_method=~".+", http_target=~".*",service_version=~".*"}[10m]))"#,
        r#"topk(10, sum by (http_method,http_target,service_version)(increase(traces_spanmetrics_latency_sum{http_method=~".+", http_target=~".*",service_version=~".*"}[1m]) / increase(traces_spanmetrics_latency_count{http_method=~".+", http_target=~".*",service_version=~".*"}[1m])))"#,
        r#"sum by (http_status_code,http_target,service_version)(increase(traces_spanmetrics_calls_total{http_status_code=~".*",http_target=~".*"}[10m]))"#,
        // mlt-erroring-endpoints.json
        r#"sum(rate(traces_spanmetrics_calls_total{span_kind="SPAN_KIND_SERVER",http_target!~"/debug/pprof.*",status_code="STATUS_CODE_ERROR",http_target=~".*"}[1m])) by (http_target)"#,
        r#"histogram_quantile(.99, sum(rate(traces_spanmetrics_latency_bucket{span_kind="SPAN_KIND_SERVER",http_target!~"/debug/pprof.*",status_code="STATUS_CODE_ERROR",http_target=~".*"}[1m])) by (http_target, le))"#,
        // traces-in-dashboards.json
        r#"sum by (http_method)(rate(traces_spanmetrics_calls_total{service="mythical-server",http_method=~".*"}[1m]))"#,
    ] {
        let found = promql(&base, query).await;
        assert!(!found.is_empty(), "no data for {query}");
        assert!(
            found.iter().all(|(_, v)| v.is_finite() && *v > 0.0),
            "{query}: {found:?}"
        );
        assert!(
            found
                .iter()
                .all(|(l, _)| l.get("http_target").is_none_or(|t| t == "/owlbear")),
            "{query}: {found:?}"
        );
    }
    // The 30 ms server span sits in Tempo's (0.016, 0.032] bucket.
    let bucket = r#"traces_spanmetrics_latency_bucket{span_kind="SPAN_KIND_SERVER",le="0.032"}"#;
    assert_eq!(one(&promql(&base, bucket).await, bucket).1, SENT as f64);
    let (start, end) = (
        (now / 1_000_000_000 - 60).to_string(),
        (lab_backend::params::now_nanos() / 1_000_000_000 + 60).to_string(),
    );
    let exemplars = get(
        &base,
        "/api/v1/query_exemplars",
        &[
            ("query", "traces_spanmetrics_latency_bucket"),
            ("start", &start),
            ("end", &end),
        ],
    )
    .await;
    assert!(
        exemplars.to_string().contains(&"06".repeat(16)),
        "the last trace is an exemplar: {exemplars}"
    );

    // The service graph: requester → server, server → its database.
    let graph = r#"traces_service_graph_request_total{client="mythical-requester",server="mythical-server"}"#;
    let (labels, value) = one(&promql_eventually(&base, graph).await, graph);
    assert_eq!(value, SENT as f64);
    assert_eq!(labels["http_target"], "/owlbear");
    assert!(labels.get("connection_type").is_none(), "{labels}");
    for query in [
        r#"traces_service_graph_request_failed_total{client="mythical-requester",server="mythical-server"}"#,
        r#"traces_service_graph_request_total{client="mythical-server",server="postgres",connection_type="database"}"#,
        r#"traces_service_graph_request_failed_total{client="mythical-server",server="postgres",connection_type="database"}"#,
        r#"traces_service_graph_request_server_seconds_count{client="mythical-requester",server="mythical-server"}"#,
        r#"traces_service_graph_request_client_seconds_bucket{client="mythical-requester",server="mythical-server",le="0.1"}"#,
    ] {
        let (labels, value) = one(&promql(&base, query).await, query);
        assert_eq!(value, SENT as f64, "{query}");
        assert_eq!(
            (labels["source"].as_str(), labels["group"].as_str()),
            (Some("tempo"), Some("mythical"))
        );
    }
    let server_side = r#"traces_service_graph_request_server_seconds_sum{client="mythical-requester",server="mythical-server"}"#;
    let (_, sum) = one(&promql(&base, server_side).await, server_side);
    assert!((sum - 0.030 * SENT as f64).abs() < 1e-9, "{sum}");

    // Autologging: one line per failing root span.
    let logs = |base: String| async move {
        let end = (lab_backend::params::now_nanos() + 1_000_000_000).to_string();
        let start = (now - 60_000_000_000).to_string();
        let body = get(
            &base,
            "/loki/api/v1/query_range",
            &[
                ("query", r#"{job="alloy"} | logfmt | status="Error""#),
                ("start", &start),
                ("end", &end),
                ("limit", "100"),
            ],
        )
        .await;
        body["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| {
                s["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v[1].as_str().unwrap().to_owned())
            })
            .collect::<Vec<String>>()
    };
    let mut lines = logs(base.clone()).await;
    lines.sort();
    assert_eq!(lines.len(), SENT, "{lines:?}");
    assert_eq!(
        lines[0],
        format!(
            r#"span="requester POST /owlbear" dur=40000000ns status=Error http.method=POST http.target=/owlbear http.status_code=500 svc=mythical-requester traceId={}"#,
            "01".repeat(16)
        )
    );

    // Restart on the same folder: the collected samples and the lines are
    // read back from the write-ahead log.
    let stats = backend.backend.generator_stats().unwrap();
    assert_eq!(stats.series_limited, 0, "{stats:?}");
    backend.shutdown().await;
    let again = lab_backend::start(config(data.path(), fast()))
        .await
        .unwrap();
    let base = again.query_url();
    let (_, value) = one(&promql(&base, query).await, query);
    assert_eq!(value, SENT as f64, "the calls counter after the restart");
    assert_eq!(one(&promql(&base, error_rate).await, error_rate).1, 100.0);
    let (_, value) = one(&promql(&base, graph).await, graph);
    assert_eq!(value, SENT as f64, "the service graph after the restart");
    assert_eq!(logs(base.clone()).await.len(), SENT);
    // Replayed spans feed no new counters: nothing is counted twice.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(again.backend.generator_stats().unwrap().active_series, 0);
    let (_, value) = one(&promql(&base, query).await, query);
    assert_eq!(value, SENT as f64);
    again.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_sets_past_the_series_cap_are_counted_in_the_overflow_series() {
    let data = tempfile::tempdir().unwrap();
    // A span-metrics label set is 18 series: the calls counter (1), and
    // the latency histogram's 15 buckets, sum and count (17).
    let generator = GeneratorConfig {
        max_active_series: 40,
        ..fast()
    };
    let backend = lab_backend::start(config(data.path(), generator))
        .await
        .unwrap();
    let now = lab_backend::params::now_nanos() as u64;
    let spans = (0..10u8)
        .map(|i| Span {
            trace_id: vec![9; 16],
            span_id: vec![i + 1; 8],
            parent_span_id: vec![0xff; 8],
            name: format!("step {i}"),
            kind: span::SpanKind::Internal as i32,
            start_time_unix_nano: now,
            end_time_unix_nano: now + 1_000_000,
            ..Default::default()
        })
        .collect();
    send(&backend, vec![resource_spans("mythical-server", spans)]).await;
    let base = backend.query_url();
    let overflow = r#"traces_spanmetrics_calls_total{metric_overflow="true"}"#;
    let (labels, overflowed) = one(&promql_eventually(&base, overflow).await, overflow);
    assert_eq!(labels["source"], "tempo");
    // Tempo admits series one metric at a time: a counter (1 series)
    // still fits where a histogram (17) no longer does.
    let kept = promql(
        &base,
        r#"traces_spanmetrics_calls_total{span_name=~"step .*"}"#,
    )
    .await;
    assert_eq!(kept.len(), 6, "{kept:?}");
    assert_eq!(overflowed, 4.0);
    let timed = promql(
        &base,
        r#"traces_spanmetrics_latency_count{span_name=~"step .*"}"#,
    )
    .await;
    assert_eq!(timed.len(), 2, "{timed:?}");
    let total = r#"sum(traces_spanmetrics_calls_total)"#;
    assert_eq!(
        one(&promql(&base, total).await, total).1,
        10.0,
        "no span is lost"
    );
    let stats = backend.backend.generator_stats().unwrap();
    assert!(stats.active_series <= 40, "{stats:?}");
    assert!(stats.series_limited > 0, "{stats:?}");
    backend.shutdown().await;
}
