//! The services export to the lab's embedded backend over OTLP, it scrapes
//! the server's /metrics, and everything reads back through the Tempo, Loki
//! and Prometheus APIs with TraceQL, LogQL and PromQL.

mod common;

use std::time::{Duration, Instant};

use common::{set_fault, start_requester, start_server};
use lab_backend::{BackendConfig, ScrapeTarget};
use lab_testkit::TestPostgres;
use serde_json::Value;

fn loopback() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
}

/// GETs `url` until `found` accepts the JSON answer.
async fn poll<T>(
    what: &str,
    url: &str,
    params: &[(&str, String)],
    found: impl Fn(&Value) -> Option<T>,
) -> T {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Ok(response) = http.get(url).query(params).send().await {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            assert!(status.is_success(), "{url} answered {status}: {text}");
            last = serde_json::from_str(&text).unwrap_or(Value::Null);
            if let Some(value) = found(&last) {
                return value;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("timed out waiting for {what} from {url}; last answer: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signal_of_the_services_reads_back_through_the_query_apis() {
    let pg = TestPostgres::start().expect("a test Postgres");
    let data = tempfile::tempdir().unwrap();
    let server_port = lab_testkit::free_port();
    let backend = lab_backend::start(BackendConfig {
        data_dir: Some(data.path().to_owned()),
        query: loopback(),
        otlp_grpc: loopback(),
        otlp_http: loopback(),
        scrape: vec![ScrapeTarget {
            job: "mythical".into(),
            url: format!("http://127.0.0.1:{server_port}/metrics"),
            interval: Duration::from_millis(500),
            labels: vec![
                ("service".into(), "mythical-server".into()),
                ("group".into(), "mythical".into()),
            ],
        }],
        ..BackendConfig::default()
    })
    .await
    .expect("the embedded backend starts");
    let otlp = format!("http://{}", backend.otlp_grpc);
    let mut env = common::otlp_env(&otlp, "grpc");
    env.push(("MYTHICAL_SERVER_LISTEN", format!("127.0.0.1:{server_port}")));
    let server = start_server(&pg, env).await;
    set_fault(&server, "null-name", 1.0).await;
    let mut requester_env =
        common::otlp_env(&format!("http://{}", backend.otlp_http), "http/protobuf");
    requester_env.push(("MYTHICAL_REQUESTER_RATE", "40".into()));
    let _requester = start_requester(server.port, requester_env).await;
    let base = backend.query_url();
    let now = lab_backend::params::now_nanos;
    let window = || {
        [
            ("start", format!("{}", now() / 1_000_000_000 - 600)),
            ("end", format!("{}", now() / 1_000_000_000 + 60)),
        ]
    };

    // Tempo: TraceQL finds a failing requester trace that reaches the
    // database, and the trace reads back by id.
    let query = r#"{ resource.service.name = "mythical-requester" && span.http.status_code = 500 } >> { status = error }"#;
    let mut params = vec![("q", query.to_owned())];
    params.extend(window());
    let trace_id = poll(
        "an error trace",
        &format!("{base}/api/search"),
        &params,
        |answer| answer["traces"][0]["traceID"].as_str().map(str::to_owned),
    )
    .await;
    let trace: Value = reqwest::get(format!("{base}/api/v2/traces/{trace_id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = trace.to_string();
    for expected in [
        "mythical-requester",
        "mythical-server",
        "INSERT ",
        "violates not-null constraint",
    ] {
        assert!(
            text.contains(expected),
            "trace {trace_id} lacks {expected}: {text}"
        );
    }

    // Loki: LogQL finds the server's error line in that trace.
    let logql = format!(
        r#"{{service_name="mythical-server", level="error"}} |= "not-null" | logfmt | traceID="{trace_id}""#
    );
    let loki_params = vec![
        ("query", logql),
        ("start", format!("{}", now() - 600_000_000_000)),
        ("end", format!("{}", now() + 60_000_000_000)),
        ("limit", "10".to_owned()),
    ];
    let line = poll(
        "the error log line",
        &format!("{base}/loki/api/v1/query_range"),
        &loki_params,
        |answer| {
            answer["data"]["result"][0]["values"][0][1]
                .as_str()
                .map(str::to_owned)
        },
    )
    .await;
    assert!(
        line.contains("status=FAILURE") && line.contains(&trace_id),
        "{line}"
    );

    // Prometheus: the scraped histogram (the original's names) and its
    // exemplars, and the same histogram over OTLP.
    let scraped = vec![
        ("query", "sum by (beast) (mythical_request_times_count{status=\"500\", job=\"mythical\", service=\"mythical-server\", group=\"mythical\"})".to_owned()),
        // A minute ahead: the poll keeps these parameters while scrapes go on.
        ("time", format!("{}", now() / 1_000_000_000 + 60)),
    ];
    poll(
        "scraped request counts",
        &format!("{base}/api/v1/query"),
        &scraped,
        |answer| {
            answer["data"]["result"]
                .as_array()
                .filter(|r| !r.is_empty())
                .cloned()
        },
    )
    .await;
    let mut exemplar_params = vec![("query", "mythical_request_times_bucket".to_owned())];
    exemplar_params.extend(window());
    let exemplar_trace = poll(
        "an exemplar",
        &format!("{base}/api/v1/query_exemplars"),
        &exemplar_params,
        |answer| {
            answer["data"][0]["exemplars"][0]["labels"]["traceID"]
                .as_str()
                .map(str::to_owned)
        },
    )
    .await;
    assert_eq!(exemplar_trace.len(), 32);
    let series = vec![(
        "match[]",
        "{__name__=~\"mythical_request_times.*\", job=\"mythical/mythical-server\"}".to_owned(),
    )];
    poll(
        "OTLP metric series",
        &format!("{base}/api/v1/series"),
        &series,
        |answer| answer["data"].as_array().filter(|r| !r.is_empty()).cloned(),
    )
    .await;

    // Restart: what was received is back.
    drop(server);
    backend.shutdown().await;
    let again = lab_backend::start(BackendConfig {
        data_dir: Some(data.path().to_owned()),
        query: loopback(),
        otlp_grpc: loopback(),
        otlp_http: loopback(),
        ..BackendConfig::default()
    })
    .await
    .unwrap();
    let trace = reqwest::get(format!("{}/api/v2/traces/{trace_id}", again.query_url()))
        .await
        .unwrap();
    assert_eq!(trace.status(), 200, "the trace survives a restart");
    again.shutdown().await;
}
