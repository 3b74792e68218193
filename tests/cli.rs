//! The `lab` binary against a running embedded backend.

use std::net::SocketAddr;
use std::process::Command;

use lab_backend::BackendConfig;

const TRACE: &str = r#"{"resourceSpans":[
 {"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"mythical-requester"}}]},
  "scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"aaaaaaaaaaaaaaaa","name":"requester",
   "kind":3,"startTimeUnixNano":"T0","endTimeUnixNano":"T40"}]}]},
 {"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"mythical-server"}}]},
  "scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"bbbbbbbbbbbbbbbb","parentSpanId":"aaaaaaaaaaaaaaaa",
   "name":"INSERT owlbear","kind":3,"startTimeUnixNano":"T10","endTimeUnixNano":"T30",
   "status":{"code":2,"message":"null value in column \"name\" of relation \"owlbear\" violates not-null constraint"}}]}]}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_query_and_lab_trace_read_the_embedded_backend() {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let backend = lab_backend::start(BackendConfig {
        query: loopback,
        otlp_grpc: loopback,
        otlp_http: loopback,
        ..BackendConfig::default()
    })
    .await
    .unwrap();
    let sent = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", backend.otlp_http))
        .header("content-type", "application/json")
        // Recent times: the backend's retention drops anything older.
        .body({
            let now = lab_backend::params::now_nanos();
            TRACE
                .replace("T0", &now.to_string())
                .replace("T40", &(now + 40_000_000).to_string())
                .replace("T10", &(now + 10_000_000).to_string())
                .replace("T30", &(now + 30_000_000).to_string())
        })
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);

    let url = backend.query_url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_lab"))
            .args(["trace", "5b8efff798038103d269b633813fc60c", "--url", &url])
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[1].starts_with("mythical-requester requester"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("  mythical-server INSERT owlbear"),
        "{text}"
    );
    assert!(
        lines[2].contains("20.0ms") && lines[2].ends_with("violates not-null constraint"),
        "{text}"
    );

    // `lab query` in each language, and a bad query's position.
    let push = reqwest::Client::new()
        .post(format!("{}/loki/api/v1/push", backend.query_url()))
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"streams":[{{"stream":{{"service_name":"mythical-server","level":"error"}},"values":[["{}","traceID=5b8efff798038103d269b633813fc60c status=FAILURE"]]}}]}}"#,
            lab_backend::params::now_nanos()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(push.status(), 204);
    let lab = |args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_lab"))
                .args(&args)
                .env("NO_COLOR", "1")
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    let url = backend.query_url();
    let traces = lab(vec![
        "query".into(),
        "traceql".into(),
        "{ status = error }".into(),
        "--since".into(),
        "10000d".into(),
        "--url".into(),
        url.clone(),
    ])
    .await;
    let text = String::from_utf8_lossy(&traces.stdout);
    assert!(
        traces.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&traces.stderr)
    );
    assert!(
        text.contains("5b8efff798038103d269b633813fc60c") && text.contains("mythical-requester"),
        "{text}"
    );
    // `--json` prints the backend's own answer, every field of it.
    let raw = lab(vec![
        "query".into(),
        "traceql".into(),
        "{ status = error }".into(),
        "--since".into(),
        "10000d".into(),
        "--json".into(),
        "--url".into(),
        url.clone(),
    ])
    .await;
    let text = String::from_utf8_lossy(&raw.stdout);
    let answer: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(
        answer["traces"][0]["traceID"], "5b8efff798038103d269b633813fc60c",
        "{text}"
    );
    assert!(answer["metrics"]["inspectedTraces"].is_number(), "{text}");
    let logs = lab(vec![
        "query".into(),
        "logql".into(),
        r#"{level="error"} |= "FAILURE""#.into(),
        "--url".into(),
        url.clone(),
    ])
    .await;
    let text = String::from_utf8_lossy(&logs.stdout);
    assert!(
        text.contains("status=FAILURE"),
        "{text}{}",
        String::from_utf8_lossy(&logs.stderr)
    );
    let metric = lab(vec![
        "query".into(),
        "promql".into(),
        "vector(42)".into(),
        "--url".into(),
        url.clone(),
    ])
    .await;
    let text = String::from_utf8_lossy(&metric.stdout);
    assert!(
        text.contains("42"),
        "{text}{}",
        String::from_utf8_lossy(&metric.stderr)
    );
    let bad = lab(vec![
        "query".into(),
        "traceql".into(),
        "{ status = }".into(),
        "--url".into(),
        url.clone(),
    ])
    .await;
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("parse error at line 1, col 12"), "{err}");

    let missing = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_lab"))
            .args(["trace", "00000000000000000000000000000001", "--url", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("trace not found"));
    backend.shutdown().await;
}

#[test]
fn export_compose_writes_a_project_with_its_configs_and_secrets_apart() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("compose");
    let out = Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(["export", "compose"])
        .arg(&folder)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(folder.join("compose.yaml")).unwrap();
    let doc: serde_json::Value = yaml_serde::from_str(&text).unwrap();
    for service in [
        "postgres",
        "alloy",
        "tempo",
        "loki",
        "mimir",
        "pyroscope",
        "grafana",
    ] {
        assert!(doc["services"][service].is_object(), "{service} missing");
    }
    for mount in doc["services"]["grafana"]["volumes"].as_array().unwrap() {
        let source = mount.as_str().unwrap().split(':').next().unwrap();
        if let Some(relative) = source.strip_prefix("./") {
            assert!(folder.join(relative).exists(), "{relative} not written");
        }
    }
    let env = std::fs::read_to_string(folder.join(".env")).unwrap();
    assert!(env.contains("MYTHICAL_ADMIN_TOKEN="));
    let token = env.lines().next().unwrap().split('=').nth(1).unwrap();
    assert!(!text.contains(token), "a secret leaked into compose.yaml");
    let mode = std::fs::metadata(folder.join(".env"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let again = Command::new(env!("CARGO_BIN_EXE_lab"))
        .args(["export", "compose"])
        .arg(&folder)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
}
