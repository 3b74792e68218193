//! A real Prometheus (Debian's `prometheus` package) scrapes the running
//! services beside the embedded backend, configured as the original's
//! Alloy scrapes them (job `mythical`, `service` and `group` labels, every
//! 2 s): both targets are up, it negotiates OpenMetrics and keeps the
//! trace-id exemplars, and the same PromQL answers the same series from
//! Prometheus and from the embedded backend.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lab_testkit::{Down, LabCli, free_port};
use serde_json::Value;

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn endpoint(status: &Value, component: &str, name: &str) -> String {
    status["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == component)
        .and_then(|c| c["endpoints"][name].as_str())
        .unwrap_or_else(|| panic!("no {name} endpoint for {component} in {status}"))
        .to_owned()
}

async fn get(base: &str, path: &str, params: &[(&str, String)]) -> Value {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .query(params)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{base}{path}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{base}{path}: not JSON: {e}"))
}

async fn instant(base: &str, query: &str) -> Vec<Value> {
    let answer = get(base, "/api/v1/query", &[("query", query.to_owned())]).await;
    assert_eq!(answer["status"], "success", "{base}: {query}: {answer}");
    answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn label_sets(result: &[Value]) -> BTreeSet<String> {
    result.iter().map(|s| s["metric"].to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_services_and_agrees_with_the_embedded_backend() {
    let binary = which("prometheus").expect(
        "Debian's prometheus is not installed: `apt-get install prometheus` (the README's set-up does it)",
    );
    let dir = tempfile::tempdir().unwrap();
    let lab = LabCli::new(env!("CARGO_BIN_EXE_lab"), dir.path().join("lab"));
    let _down = Down(&lab);
    lab.ok(&["up", "--runtime", "native"]);
    lab.ok(&["traffic", "--rate", "20"]);
    let status: Value = serde_json::from_str(&lab.ok(&["status", "--json"])).unwrap();
    let address = |component: &str| {
        endpoint(&status, component, "http")
            .trim_start_matches("http://")
            .to_owned()
    };
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\nscrape_configs:\n  - job_name: mythical\n    static_configs:\n      - targets: ['{server}']\n        labels: {{service: mythical-server, group: mythical}}\n      - targets: ['{requester}']\n        labels: {{service: mythical-requester, group: mythical}}\n",
            server = address("mythical-server"),
            requester = address("mythical-requester"),
        ),
    )
    .unwrap();
    let port = free_port();
    let prometheus_url = format!("http://127.0.0.1:{port}");
    let _prometheus = Prometheus(
        Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--enable-feature=exemplar-storage")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    );
    // Several scrapes of both, by Prometheus and by the backend alike.
    tokio::time::sleep(Duration::from_secs(12)).await;

    let up = instant(&prometheus_url, r#"up{job="mythical"}"#).await;
    let services: BTreeSet<&str> = up
        .iter()
        .filter(|s| s["value"][1] == "1")
        .filter_map(|s| s["metric"]["service"].as_str())
        .collect();
    assert_eq!(
        services,
        BTreeSet::from(["mythical-requester", "mythical-server"]),
        "both targets up in Prometheus: {up:?}"
    );

    let backend = endpoint(&status, "backend", "query");
    for query in [
        r#"up{job="mythical"}"#,
        r#"count by (job, service, group, method, status, beast) (mythical_request_times_count{job="mythical"})"#,
        r#"mythical_danger_level_30s{job="mythical"}"#,
        r#"sum by (le) (mythical_request_times_bucket{service="mythical-server"})"#,
    ] {
        let from_prometheus = label_sets(&instant(&prometheus_url, query).await);
        let from_backend = label_sets(&instant(&backend, query).await);
        assert!(
            !from_prometheus.is_empty(),
            "Prometheus has nothing for {query}"
        );
        assert_eq!(from_prometheus, from_backend, "{query}");
    }

    // OpenMetrics was negotiated: Prometheus kept the trace-id exemplars.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let exemplars = get(
        &prometheus_url,
        "/api/v1/query_exemplars",
        &[
            ("query", "mythical_request_times_bucket".to_owned()),
            ("start", (now - 60).to_string()),
            ("end", (now + 1).to_string()),
        ],
    )
    .await;
    let trace_id = exemplars["data"][0]["exemplars"][0]["labels"]["traceID"]
        .as_str()
        .unwrap_or_else(|| panic!("no exemplar in Prometheus: {exemplars}"));
    assert_eq!(trace_id.len(), 32, "{trace_id}");

    // Without an Accept header (curl's `*/*`), the classic text, which
    // promtool accepts.
    for component in ["mythical-server", "mythical-requester"] {
        let url = format!("http://{}/metrics", address(component));
        let response = reqwest::get(&url).await.unwrap();
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{url}: {content_type}"
        );
        let text = response.text().await.unwrap();
        assert!(
            !text.contains("# EOF") && !text.contains("traceID"),
            "{url}: {text}"
        );
        let mut promtool =
            Command::new(which("promtool").expect("promtool comes with Debian's prometheus"))
                .args(["check", "metrics"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
        use std::io::Write as _;
        promtool
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let checked = promtool.wait_with_output().unwrap();
        assert!(
            checked.status.success(),
            "promtool check metrics refused {url}:\n{}{}",
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        );
    }
}

fn which(binary: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| std::path::Path::new(dir).join(binary))
        .find(|path| path.is_file())
}
