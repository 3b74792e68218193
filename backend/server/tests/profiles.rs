//! Profiles end to end: the real pyroscope agent, in this process, samples
//! a function that burns CPU and pushes to the backend; the render and top
//! APIs name that function, and so does the backend after a restart.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lab_backend::BackendConfig;
use pyroscope::backend::{BackendConfig as AgentBackend, PprofConfig, pprof_backend};
use pyroscope::pyroscope::PyroscopeAgentBuilder;
use serde_json::Value;

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

fn config(data_dir: &std::path::Path) -> BackendConfig {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    BackendConfig {
        data_dir: Some(data_dir.to_owned()),
        query: loopback,
        otlp_grpc: loopback,
        otlp_http: loopback,
        ..BackendConfig::default()
    }
}

/// The distinctively named hot spot the profile must find: plain
/// arithmetic, all of it under this one frame.
#[inline(never)]
fn hash_the_hoard(seed: u64, until: Instant) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    while Instant::now() < until {
        let mut coin = 0u64;
        while coin < 100_000 {
            hash = (hash ^ coin).wrapping_mul(0x0100_0000_01b3);
            coin += 1;
        }
        hash = std::hint::black_box(hash);
    }
    hash
}

async fn get(url: &str) -> (u16, Value) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn top_names(answer: &Value) -> Vec<String> {
    answer["functions"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|f| f["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn selector(service: &str) -> String {
    format!("{CPU}{{service_name=\"{service}\"}}")
        .replace('{', "%7B")
        .replace('}', "%7D")
        .replace('"', "%22")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pyroscope_agent_finds_hash_the_hoard_on_top_and_it_survives_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let backend = lab_backend::start(config(data.path())).await.unwrap();
    let server = format!("http://{}", backend.otlp_http);

    tokio::task::spawn_blocking(move || {
        let agent = PyroscopeAgentBuilder::new(
            &server,
            "mythical-server",
            100,
            "pyroscope-rs",
            "test",
            pprof_backend(PprofConfig { sample_rate: 100 }, AgentBackend::default()),
        )
        .tags(vec![("service_namespace", "mythical")])
        .upload_interval(Duration::from_secs(1))
        .build()
        .unwrap()
        .start()
        .unwrap();
        std::hint::black_box(hash_the_hoard(
            7,
            Instant::now() + Duration::from_millis(2500),
        ));
        agent.stop().unwrap().shutdown();
    })
    .await
    .unwrap();

    let base = backend.query_url();
    let window = "from=now-5m&until=now";
    let stats = backend.backend.store().stats();
    assert!(stats.profiles > 0, "no profile arrived: {stats:?}");

    let (status, top) = get(&format!(
        "{base}/api/profiles/top?query={}&{window}&limit=50",
        selector("mythical-server")
    ))
    .await;
    assert_eq!(status, 200, "{top}");
    let names = top_names(&top);
    assert!(
        names.iter().any(|n| n.contains("hash_the_hoard")),
        "hash_the_hoard is not among the top functions: {names:?}"
    );
    // Self time depends on what the compiler inlined (a debug build keeps
    // `wrapping_mul` as its own frame), so the measure that holds in every
    // build is the function's total: the burn is by the clock, and whatever
    // CPU this process got, most of it went through hash_the_hoard.
    let hoard = top["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"].as_str().unwrap().contains("hash_the_hoard"))
        .unwrap();
    let hoard_ns = hoard["total"].as_i64().unwrap();
    let total = top["total"].as_i64().unwrap();
    assert!(hoard_ns > 0 && hoard_ns * 2 > total, "{top}");

    let (status, render) = get(&format!(
        "{base}/pyroscope/render?query={}&{window}&format=json",
        selector("mythical-server")
    ))
    .await;
    assert_eq!(status, 200, "{render}");
    assert_eq!(render["metadata"]["format"], "single");
    assert_eq!(render["metadata"]["units"], "samples");
    let flame = &render["flamebearer"];
    assert_eq!(flame["names"][0], "total");
    assert!(flame["numTicks"].as_i64().unwrap() >= hoard_ns);
    assert!(
        flame["names"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("hash_the_hoard")),
        "{flame}"
    );
    for level in flame["levels"].as_array().unwrap() {
        assert_eq!(level.as_array().unwrap().len() % 4, 0);
    }

    let (_, values) = get(&format!("{base}/pyroscope/label-values?label=service_name")).await;
    assert_eq!(values, serde_json::json!(["mythical-server"]));

    // Another service's selector selects nothing.
    let (_, other) = get(&format!(
        "{base}/api/profiles/top?query={}&{window}",
        selector("mythical-requester")
    ))
    .await;
    assert_eq!(other["functions"], serde_json::json!([]));

    backend.shutdown().await;
    let again = lab_backend::start(config(data.path())).await.unwrap();
    let (_, top) = get(&format!(
        "{}/api/profiles/top?query={}&{window}&limit=50",
        again.query_url(),
        selector("mythical-server")
    ))
    .await;
    assert!(
        top_names(&top).iter().any(|n| n.contains("hash_the_hoard")),
        "the write-ahead log did not bring the profiles back: {top}"
    );
    again.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_takes_folded_text_and_bad_requests_get_a_clear_400() {
    let data = tempfile::tempdir().unwrap();
    let backend = lab_backend::start(config(data.path())).await.unwrap();
    let http = reqwest::Client::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Both ports take /ingest.
    for (port, service) in [
        (backend.otlp_http, "mythical-requester"),
        (backend.query, "mythical-server"),
    ] {
        let response = http
            .post(format!(
                "http://{port}/ingest?name={service}.cpu%7Benv%3Dlab%7D&from={}&until={now}&sampleRate=100&spyName=test&units=samples&aggregationType=sum&format=folded",
                now - 10
            ))
            .body("main;send_owlbear 40\nmain;idle 2\n")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }
    let base = backend.query_url();
    let (status, top) = get(&format!(
        "{base}/api/profiles/top?query={}&from=now-1m&until=now",
        selector("mythical-requester")
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        top["functions"][0],
        serde_json::json!({"name": "send_owlbear", "self": 400_000_000, "total": 400_000_000})
    );
    let (_, values) = get(&format!("{base}/pyroscope/label-values?label=service_name")).await;
    assert_eq!(
        values,
        serde_json::json!(["mythical-requester", "mythical-server"])
    );

    let response = http
        .post(format!("{base}/ingest?name=app&format=folded"))
        .body("main;work twelve\n")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.text().await.unwrap(),
        "bad ingest request: folded body, line 1: count \"twelve\" is not a whole number"
    );
    let response = http
        .post(format!("{base}/push.v1.PusherService/Push"))
        .header("content-type", "application/proto")
        .body(vec![0xff, 0xff, 0xff])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["code"], "invalid_argument");

    for (query, expected) in [
        ("/pyroscope/render?from=now-1h", "missing query parameter"),
        (
            &format!("/pyroscope/render?query={}&from=soon", selector("x")),
            "\"from\"",
        ),
        ("/pyroscope/render?query=cpu%7B%7D", "profile type \"cpu\""),
        (
            &format!("/api/profiles/top?query={}&limit=many", selector("x")),
            "invalid limit",
        ),
        ("/pyroscope/label-values", "missing label parameter"),
    ] {
        let (status, body) = get(&format!("{base}{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert!(body.as_str().unwrap().contains(expected), "{query}: {body}");
    }
    backend.shutdown().await;
}
