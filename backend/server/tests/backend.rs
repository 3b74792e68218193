//! The embedded backend as its clients see it: a second, independent OTLP
//! client (the OpenTelemetry Python SDK), bad bodies, restarts, ports in
//! use, and the size bound.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use lab_backend::{BackendConfig, Limits};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::Value;

/// Tempo's TraceByIDResponse, as far as a client needs it.
#[derive(Clone, PartialEq, prost::Message)]
struct TraceByIdResponse {
    #[prost(message, optional, tag = "1")]
    trace: Option<ExportTraceServiceRequest>,
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn config(data_dir: Option<&std::path::Path>) -> BackendConfig {
    BackendConfig {
        data_dir: data_dir.map(ToOwned::to_owned),
        query: loopback(),
        otlp_grpc: loopback(),
        otlp_http: loopback(),
        ..BackendConfig::default()
    }
}

/// Runs the Python SDK probe against `endpoint`; returns its trace id.
fn python_probe(endpoint: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python_exporter.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(endpoint)
        .output()
        .expect("python3 runs (install it, with `pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http`)");
    assert!(
        out.status.success(),
        "the Python OTLP probe failed; install its packages with `pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http`:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

async fn get_json(url: &str) -> (u16, Value) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_sdk_exports_and_everything_survives_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let backend = lab_backend::start(config(Some(data.path()))).await.unwrap();
    let endpoint = format!("http://{}", backend.otlp_http);
    let trace_id = tokio::task::spawn_blocking(move || python_probe(&endpoint))
        .await
        .unwrap();
    assert_eq!(trace_id.len(), 32);

    let (status, trace) =
        get_json(&format!("{}/api/v2/traces/{trace_id}", backend.query_url())).await;
    assert_eq!(status, 200, "{trace}");
    let spans = &trace["trace"]["resourceSpans"][0]["scopeSpans"][0]["spans"];
    let names: Vec<&str> = spans
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"probe parent") && names.contains(&"probe child"),
        "{names:?}"
    );
    let child = spans
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "probe child")
        .unwrap();
    assert_eq!(child["status"]["code"], "STATUS_CODE_ERROR");
    assert_eq!(child["status"]["message"], "probe failure");

    // Grafana's Tempo datasource asks for protobuf: the same trace comes
    // back as Tempo's Trace message (v1) and TraceByIDResponse (v2).
    let http = reqwest::Client::new();
    for (path, wrapped) in [("api/traces", false), ("api/v2/traces", true)] {
        let response = http
            .get(format!("{}/{path}/{trace_id}", backend.query_url()))
            .header("accept", "application/protobuf")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/protobuf");
        let bytes = response.bytes().await.unwrap();
        let trace = if wrapped {
            TraceByIdResponse::decode(bytes.as_ref())
                .unwrap()
                .trace
                .unwrap()
        } else {
            ExportTraceServiceRequest::decode(bytes.as_ref()).unwrap()
        };
        let spans = lab_ingest::otlp::spans(&trace);
        assert_eq!(spans.len(), 2, "{path}");
        assert!(
            spans
                .iter()
                .any(|s| s.name == "probe child" && s.status_message == "probe failure")
        );
    }

    // Tempo's search and tag endpoints see it too.
    let (status, found) = get_json(&format!(
        "{}/api/search?q=%7B%20status%20%3D%20error%20%7D&limit=5",
        backend.query_url()
    ))
    .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["traces"][0]["traceID"], trace_id.as_str());
    assert_eq!(found["traces"][0]["rootServiceName"], "python-probe");
    let (_, tags) = get_json(&format!(
        "{}/api/v2/search/tags?scope=span",
        backend.query_url()
    ))
    .await;
    assert_eq!(tags["scopes"][0]["tags"], serde_json::json!(["probe.kind"]));
    let (_, values) = get_json(&format!(
        "{}/api/v2/search/tag/resource.service.name/values",
        backend.query_url()
    ))
    .await;
    assert_eq!(values["tagValues"][0]["value"], "python-probe");
    let (status, bad) = get_json(&format!(
        "{}/api/search?q=%7B%20status%20%3D",
        backend.query_url()
    ))
    .await;
    assert_eq!(status, 400);
    assert!(
        bad.as_str().unwrap().contains("parse error at line 1"),
        "{bad}"
    );

    // Loki's and Prometheus' label endpoints.
    let (_, labels) = get_json(&format!("{}/loki/api/v1/labels", backend.query_url())).await;
    assert!(
        labels["data"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("service_name")),
        "{labels}"
    );
    let (_, values) = get_json(&format!(
        "{}/loki/api/v1/label/service_name/values",
        backend.query_url()
    ))
    .await;
    // The probe's own lines, and the autologging line of its root span.
    assert_eq!(values["data"], serde_json::json!(["alloy", "python-probe"]));
    let (_, names) = get_json(&format!(
        "{}/api/v1/label/__name__/values",
        backend.query_url()
    ))
    .await;
    assert!(
        names["data"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("probe_requests_total")),
        "{names}"
    );
    let (status, prom_error) =
        get_json(&format!("{}/api/v1/query?query=sum(", backend.query_url())).await;
    assert_eq!(status, 400);
    assert_eq!(prom_error["errorType"], "bad_data");

    let stats = backend.backend.store().stats();
    assert!(stats.log_lines >= 1, "{stats:?}");
    let (status, series) = get_json(&format!(
        "{}/api/v1/series?match[]=probe_requests_total",
        backend.query_url()
    ))
    .await;
    assert_eq!(status, 200, "{series}");
    assert_eq!(series["data"][0]["job"], "mythical/python-probe");
    assert_eq!(series["data"][0]["route"], "/probe");

    // Restart on the same folder: the trace, the log line and the series
    // are back from the write-ahead log.
    backend.shutdown().await;
    let again = lab_backend::start(config(Some(data.path()))).await.unwrap();
    let (status, _) = get_json(&format!("{}/api/traces/{trace_id}", again.query_url())).await;
    assert_eq!(status, 200);
    assert_eq!(again.backend.store().stats(), stats);
    again.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_and_truncated_bodies_are_refused_and_nothing_is_lost() {
    let backend = lab_backend::start(config(None)).await.unwrap();
    let http = reqwest::Client::new();
    let otlp = format!("http://{}", backend.otlp_http);
    for (path, content_type, body) in [
        (
            "/v1/traces",
            "application/x-protobuf",
            vec![0x0a, 0xff, 0xff, 0x01],
        ),
        ("/v1/logs", "application/x-protobuf", vec![0x12; 7]),
        (
            "/v1/metrics",
            "application/json",
            b"{\"resourceMetrics\": [".to_vec(),
        ),
        ("/v1/traces", "application/json", b"not json".to_vec()),
    ] {
        let response = http
            .post(format!("{otlp}{path}"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{path} {content_type}");
        let text = response.text().await.unwrap();
        assert!(text.starts_with("bad OTLP request: "), "{text}");
    }
    let push = http
        .post(format!("{}/loki/api/v1/push", backend.query_url()))
        .header("content-type", "application/json")
        .body(r#"{"streams":[{"stream":{"job":"x"},"values":[[1,"no"]]}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(push.status(), 400);
    assert!(push.text().await.unwrap().contains("Unix nanoseconds"));
    let good = http
        .post(format!("{}/loki/api/v1/push", backend.query_url()))
        .header("content-type", "application/json")
        // A recent time: the backend's retention would drop an old line.
        .body(format!(
            r#"{{"streams":[{{"stream":{{"job":"x"}},"values":[["{}","yes"]]}}]}}"#,
            lab_backend::params::now_nanos()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 204);
    assert_eq!(
        backend.backend.store().stats().log_lines,
        1,
        "only the good push was kept"
    );
    let bad_id = http
        .get(format!("{}/api/traces/nothex", backend.query_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_id.status(), 400);
    let missing = http
        .get(format!(
            "{}/api/traces/{}",
            backend.query_url(),
            "ab".repeat(16)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    backend.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = config(None);
    config.otlp_grpc = taken.local_addr().unwrap();
    let err = lab_backend::start(config)
        .await
        .err()
        .expect("the port is taken");
    let message = format!("{err:#}");
    assert!(
        message.contains("for OTLP/gRPC") && message.contains("choose another port"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_within_the_size_bound_under_a_steady_stream() {
    let data = tempfile::tempdir().unwrap();
    let limits = Limits {
        retention: Duration::from_secs(3600),
        max_bytes: 2 * 1024 * 1024,
    };
    let (backend, _) =
        lab_backend::Backend::open(Some(data.path()), limits, Default::default(), None).unwrap();
    let started = Instant::now();
    let mut peak = 0;
    for batch in 0..200u64 {
        let body = format!(
            r#"{{"streams":[{{"stream":{{"job":"steady"}},"values":[{}]}}]}}"#,
            (0..100u64)
                .map(|i| format!(
                    r#"["{}","line {batch}-{i} {}"]"#,
                    lab_backend::params::now_nanos() + i as i64,
                    "x".repeat(200)
                ))
                .collect::<Vec<_>>()
                .join(",")
        );
        backend
            .ingest(lab_backend::ingest::Payload::LokiPush(body.into_bytes()))
            .unwrap();
        backend.maintain().unwrap();
        peak = peak.max(backend.store().stats().bytes);
    }
    let stats = backend.store().stats();
    assert!(stats.bytes <= limits.max_bytes, "{stats:?}");
    assert!(
        peak <= limits.max_bytes + 200 * 1024,
        "peak {peak} over the bound by more than one batch"
    );
    assert!(
        stats.log_lines > 1000 && stats.log_lines < 20_000,
        "{stats:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn its_own_metrics_show_what_it_holds_against_its_bound() {
    let mut settings = config(None);
    settings.limits.max_bytes = 8 * 1024 * 1024;
    let backend = lab_backend::start(settings).await.unwrap();
    let written = lab_backend::params::now_nanos() - 90 * 1_000_000_000;
    let body = format!(
        r#"{{"streams":[{{"stream":{{"job":"own"}},"values":[["{written}","an old line"],["{}","a new line"]]}}]}}"#,
        written + 80 * 1_000_000_000
    );
    let pushed = reqwest::Client::new()
        .post(format!("http://{}/loki/api/v1/push", backend.query))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(pushed.status().is_success(), "{}", pushed.status());

    let response = reqwest::get(format!("{}/metrics", backend.query_url()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let value = |sample: &str| -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {sample} in:\n{text}"))
    };
    assert_eq!(
        value("lab_backend_max_stored_bytes "),
        8.0 * 1024.0 * 1024.0
    );
    assert_eq!(value("lab_backend_stored_items{kind=\"log_lines\"} "), 2.0);
    assert_eq!(value("lab_backend_stored_items{kind=\"spans\"} "), 0.0);
    let logs = value("lab_backend_stored_bytes{signal=\"logs\"} ");
    assert!(
        logs > 0.0 && logs < 8192.0,
        "two short lines held as {logs} bytes"
    );
    assert_eq!(value("lab_backend_stored_bytes{signal=\"traces\"} "), 0.0);
    let reach = value("lab_backend_oldest_age_seconds{signal=\"logs\"} ");
    assert!((89.0..120.0).contains(&reach), "logs reach back {reach} s");
    assert_eq!(
        value("lab_backend_oldest_age_seconds{signal=\"traces\"} "),
        0.0
    );
    assert!(text.contains("# TYPE lab_backend_stored_bytes gauge"));
}
