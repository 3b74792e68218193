//! How fast the console's pages answer with an hour of data in the
//! embedded backend: a native lab brought up by the real binary, an hour
//! of the services' telemetry sent to its backend over OTLP/HTTP (JSON)
//! with timestamps spread over the last hour, the reference scenario
//! running, then every page asked `BENCH_REQUESTS` times (default 200),
//! one request at a time. Prints p50/p99 per page against the goal of
//! p99 ≤ 100 ms: its section of BENCHMARKS.md (and writes it under
//! `BENCH_RESULTS` when set, for `scripts/bench`).
//!
//!     cargo bench -p lab --bench console

use std::time::{Duration, Instant};

use lab_testkit::{Down, Goal, LabCli, Section, thousands};
use serde_json::{Value, json};

const HOUR_SECS: i64 = 3600;
/// The goal for every page.
const GOAL: Duration = Duration::from_millis(100);
const BEASTS: [&str; 5] = ["unicorn", "manticore", "illithid", "owlbear", "beholder"];
/// `mythical_request_times`' bucket bounds (ms).
const BOUNDS: [f64; 11] = [
    10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0, 16000.0,
];

/// A cumulative histogram: count, per-bucket counts (the last is +Inf),
/// sum in ms.
type Histogram = (u64, [u64; 12], f64);

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// A small deterministic sequence, so two runs load the same history.
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn hex(&mut self, bytes: usize) -> String {
        (0..bytes)
            .map(|_| format!("{:02x}", self.next() as u8))
            .collect()
    }
}

fn attr(key: &str, value: Value) -> Value {
    let value = match value {
        Value::String(s) => json!({ "stringValue": s }),
        Value::Bool(b) => json!({ "boolValue": b }),
        Value::Number(n) => json!({ "intValue": n.to_string() }),
        other => other,
    };
    json!({ "key": key, "value": value })
}

fn resource(service: &str) -> Value {
    json!({ "attributes": [
        attr("service.name", json!(service)),
        attr("service.namespace", json!("history")),
    ]})
}

/// One request's three spans and the server's log line, at `at`.
fn request(draw: &mut Draw, at: i64) -> (Value, Value, Value) {
    let beast = BEASTS[(draw.next() % 5) as usize];
    let post = draw.next().is_multiple_of(2);
    let failed = post && draw.next().is_multiple_of(10);
    let trace = draw.hex(16);
    let (root, server, db) = (draw.hex(8), draw.hex(8), draw.hex(8));
    let ms = 5 + (draw.next() % 80) as i64;
    let end = at + ms * 1_000_000;
    let status = |failed: bool| {
        if failed {
            json!({ "code": 2, "message": format!("null value in column \"name\" of relation \"{beast}\" violates not-null constraint") })
        } else {
            json!({})
        }
    };
    let method = if post { "POST" } else { "GET" };
    let code = match (post, failed) {
        (_, true) => 500,
        (true, false) => 201,
        (false, false) => 200,
    };
    let requester = json!({
        "traceId": trace, "spanId": root, "name": "requester", "kind": 3,
        "startTimeUnixNano": at.to_string(), "endTimeUnixNano": end.to_string(),
        "attributes": [attr("beast", json!(beast)), attr("http.status_code", json!(code))],
        "status": status(failed),
    });
    let server_spans = json!([
        {
            "traceId": trace, "spanId": server, "parentSpanId": root, "name": format!("{method} /:beast"), "kind": 2,
            "startTimeUnixNano": (at + 1_000_000).to_string(), "endTimeUnixNano": (end - 1_000_000).to_string(),
            "attributes": [attr("beast", json!(beast)), attr("http.status_code", json!(code)),
                           attr("http.request.body.size", json!(27)), attr("mythical.name", json!("copper_Dolly_sheep"))],
            "status": status(failed),
        },
        {
            "traceId": trace, "spanId": db, "parentSpanId": server,
            "name": format!("{} {beast}", if post { "INSERT" } else { "SELECT" }), "kind": 3,
            "startTimeUnixNano": (at + 2_000_000).to_string(), "endTimeUnixNano": (end - 2_000_000).to_string(),
            "attributes": [attr("db.system", json!("postgresql")),
                           attr("db.response.status_code", json!(if failed { "23502" } else { "00000" }))],
            "status": status(failed),
        }
    ]);
    let line = if failed {
        format!(
            r#"traceID={trace} http.method={method} endpoint={beast} status=FAILURE code=500 error="null value in column \"name\" of relation \"{beast}\" violates not-null constraint""#
        )
    } else {
        format!("traceID={trace} http.method={method} endpoint={beast} status=SUCCESS code={code}")
    };
    let log = json!({
        "timeUnixNano": at.to_string(),
        "severityText": if failed { "ERROR" } else { "INFO" },
        "body": { "stringValue": line },
        "traceId": trace, "spanId": server,
        "attributes": [attr("level", json!(if failed { "error" } else { "info" })), attr("beast", json!(beast))],
    });
    (requester, server_spans, log)
}

async fn post(http: &reqwest::Client, url: &str, body: &Value) {
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = response.status();
    assert!(
        status.is_success(),
        "POST {url}: {status}: {}",
        response.text().await.unwrap_or_default()
    );
}

/// Sends the last hour's traces, logs and request histograms, oldest
/// first, a minute per batch, at `pace` traces a second.
async fn load_history(otlp: &str, pace: i64) -> (usize, usize) {
    let http = reqwest::Client::new();
    let mut draw = Draw(0x5eed_cafe_f00d_1234);
    let start = now_nanos() - HOUR_SECS * 1_000_000_000;
    let (mut traces, mut lines) = (0, 0);
    // Cumulative counts per (beast, method, status): count and buckets.
    let mut counts: std::collections::BTreeMap<(String, &str, i64), Histogram> = Default::default();
    for minute in 0..60 {
        let (mut requester, mut server, mut logs) = (Vec::new(), Vec::new(), Vec::new());
        // Four scrapes a minute, as the lab's scraper does.
        let mut points = Vec::new();
        for i in 0..60 * pace {
            let at = start + (minute * 60) * 1_000_000_000 + i * 1_000_000_000 / pace;
            let (r, s, l) = request(&mut draw, at);
            let beast = r["attributes"][0]["value"]["stringValue"]
                .as_str()
                .unwrap()
                .to_owned();
            let code: i64 = r["attributes"][1]["value"]["intValue"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let method = if code == 200 { "GET" } else { "POST" };
            let ms = (number(&r["endTimeUnixNano"]) - number(&r["startTimeUnixNano"])) as f64 / 1e6;
            let entry = counts.entry((beast, method, code)).or_default();
            entry.0 += 1;
            entry.2 += ms;
            let bucket = BOUNDS.iter().position(|b| ms <= *b).unwrap_or(BOUNDS.len());
            entry.1[bucket] += 1;
            requester.push(r);
            server.extend(s.as_array().unwrap().iter().cloned());
            logs.push(l);
            // Every 15 s of requests, a scrape of the counts so far.
            if (i + 1) % (15 * pace) == 0 {
                let at = start + (minute * 60 + (i + 1) / pace) * 1_000_000_000;
                for ((beast, method, code), (count, buckets, sum)) in &counts {
                    points.push(json!({
                        "startTimeUnixNano": start.to_string(),
                        "timeUnixNano": at.to_string(),
                        "count": count.to_string(),
                        "sum": sum,
                        "bucketCounts": buckets.iter().map(|b| b.to_string()).collect::<Vec<_>>(),
                        "explicitBounds": BOUNDS,
                        "attributes": [attr("beast", json!(beast)), attr("method", json!(method)),
                                       attr("status", json!(code.to_string()))],
                    }));
                }
            }
        }
        traces += requester.len();
        lines += logs.len();
        post(
            &http,
            &format!("{otlp}/v1/traces"),
            &json!({ "resourceSpans": [
                { "resource": resource("mythical-requester"), "scopeSpans": [{ "spans": requester }] },
                { "resource": resource("mythical-server"), "scopeSpans": [{ "spans": server }] },
            ]}),
        )
        .await;
        post(
            &http,
            &format!("{otlp}/v1/logs"),
            &json!({ "resourceLogs": [
                { "resource": resource("mythical-server"), "scopeLogs": [{ "logRecords": logs }] },
            ]}),
        )
        .await;
        post(
            &http,
            &format!("{otlp}/v1/metrics"),
            &json!({ "resourceMetrics": [{ "resource": resource("mythical-server"), "scopeMetrics": [{ "metrics": [{
                "name": "mythical_request_times",
                "histogram": { "aggregationTemporality": 2, "dataPoints": points },
            }]}]}]}),
        )
        .await;
    }
    (traces, lines)
}

/// The history is queryable where it lies: traces and log lines from
/// 50 to 60 minutes ago (before the lab started), request rates half an
/// hour ago.
async fn check_history(query: &str) {
    let http = reqwest::Client::new();
    let get = |path: &str, params: Vec<(&str, String)>| {
        let request = http.get(format!("{query}{path}")).query(&params);
        async move {
            let response = request.send().await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            response.json::<Value>().await.unwrap()
        }
    };
    let now = now_nanos() / 1_000_000_000;
    let (from, to) = (now - HOUR_SECS, now - 50 * 60);
    let traces = get(
        "/api/search",
        vec![
            ("q", "{ status = error }".into()),
            ("start", from.to_string()),
            ("end", to.to_string()),
            ("limit", "20".into()),
        ],
    )
    .await;
    let logs = get(
        "/loki/api/v1/query_range",
        vec![
            (
                "query",
                r#"{service_name="mythical-server"} |= "FAILURE""#.into(),
            ),
            ("start", (from * 1_000_000_000).to_string()),
            ("end", (to * 1_000_000_000).to_string()),
            ("limit", "20".into()),
        ],
    )
    .await;
    let rate = get(
        "/api/v1/query",
        vec![
            (
                "query",
                "sum(rate(mythical_request_times_count[1m]))".into(),
            ),
            ("time", (now - 30 * 60).to_string()),
        ],
    )
    .await;
    let traces = traces["traces"].as_array().map_or(0, Vec::len);
    let lines: usize = logs["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s["values"].as_array().map_or(0, Vec::len))
        .sum();
    let rate: f64 = rate["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(
        traces > 0 && lines > 0 && rate > 0.0,
        "the history is not queryable: {traces} failing traces and {lines} failure lines an hour ago, {rate} req/s half an hour ago"
    );
    eprintln!(
        "history queryable: failing traces and failure lines an hour ago, {rate:.1} req/s half an hour ago"
    );
}

fn number(value: &Value) -> i64 {
    value.as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

#[tokio::main]
async fn main() {
    let mut section = Section::new("console");
    let requests: usize = section.setting("BENCH_REQUESTS", 200);
    // The history's pace: the native lab's backend keeps 32 MiB, and an
    // hour at this pace (with its logs and metrics) is what fits; the
    // oldest data is evicted past that.
    let pace: i64 = section.setting("BENCH_TRACES_PER_SECOND", 3);
    let dir = tempfile::tempdir().unwrap();
    let lab = LabCli::new(env!("CARGO_BIN_EXE_lab"), dir.path().join("state"));
    let _down = Down(&lab);
    lab.ok(&["up", "--runtime", "native"]);
    let status: Value = serde_json::from_str(&lab.ok(&["status", "--json"])).unwrap();
    let console = status["endpoints"]["console"]
        .as_str()
        .expect("the console's URL in `lab status --json`")
        .to_owned();
    let backend = |endpoint: &str| {
        status["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "backend")
            .and_then(|c| c["endpoints"][endpoint].as_str())
            .unwrap_or_else(|| panic!("the backend's {endpoint} endpoint"))
            .to_owned()
    };
    let (otlp, query) = (backend("otlp_http"), backend("query"));

    let loading = Instant::now();
    let (traces, lines) = load_history(&otlp, pace).await;
    let load_seconds = loading.elapsed().as_secs_f64();
    eprintln!(
        "loaded an hour: {traces} traces ({} spans), {lines} log lines, request histograms every 15 s, in {load_seconds:.1} s",
        traces * 3,
    );
    check_history(&query).await;
    lab.ok(&["scenario", "start", "null-name"]);
    tokio::time::sleep(Duration::from_secs(20)).await;

    let http = reqwest::Client::new();
    let trace_id = {
        let page = http
            .get(format!("{console}/traces?since=5m"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        page.split("/trace/")
            .nth(1)
            .and_then(|rest| rest.get(..32))
            .expect("a failing trace on the traces page")
            .to_owned()
    };
    let pages = [
        ("/".to_owned(), " (lab: health, traffic, faults)"),
        ("/scenarios".to_owned(), ""),
        ("/guide".to_owned(), ""),
        ("/traces".to_owned(), " (15 min)"),
        ("/traces?since=1h".to_owned(), ""),
        (format!("/trace/{trace_id}"), ""),
        ("/logs".to_owned(), " (15 min)"),
        ("/logs?since=1h".to_owned(), ""),
        ("/metrics".to_owned(), " (RED charts, 15 min)"),
        ("/metrics?since=1h".to_owned(), ""),
        ("/profiles".to_owned(), " (flame graph)"),
        ("/diagnose".to_owned(), " (reused for 5 s)"),
        ("/diagnose?fresh=1".to_owned(), ""),
    ];
    section.paragraph(format!(
        "A native lab (release build), its embedded backend loaded with the last hour over OTLP/HTTP: {} traces ({} spans), {} log lines and the request histograms every 15 s, in {load_seconds:.1} s; then the reference scenario (null-name) on for 20 s with live traffic. Each page asked {requests} times, one at a time.",
        thousands(traces as u64),
        thousands(traces as u64 * 3),
        thousands(lines as u64)
    ));
    section.table(&["page", "p50 ms", "p99 ms", "max ms", "KiB"]);
    let mut over = Vec::new();
    for (page, note) in &pages {
        let mut times = Vec::with_capacity(requests);
        let mut size = 0;
        for _ in 0..requests {
            let started = Instant::now();
            let response = http.get(format!("{console}{page}")).send().await.unwrap();
            let status = response.status();
            let body = response.bytes().await.unwrap();
            times.push(started.elapsed());
            assert!(status.is_success(), "{page}: {status}");
            size = body.len();
        }
        times.sort();
        let p99 = percentile(&times, 0.99);
        // The trace's id changes from run to run; the page's shape does not.
        let shown = if page.starts_with("/trace/") {
            "/trace/<id>"
        } else {
            page.as_str()
        };
        section.row([
            format!("`{shown}`{note}"),
            ms(percentile(&times, 0.50)),
            ms(p99),
            ms(*times.last().unwrap()),
            (size / 1024).to_string(),
        ]);
        if p99 > GOAL {
            over.push(format!("`{shown}` {} ms", ms(p99)));
        }
    }
    lab.ok(&["scenario", "stop"]);
    let met = pages.len() - over.len();
    section.goals(&[Goal::new(
        format!("p99 ≤ {} ms on every page", GOAL.as_millis()),
        over.is_empty(),
        if over.is_empty() {
            format!("all {met}")
        } else {
            format!("{met} of {}; over: {}", pages.len(), over.join(", "))
        },
    )]);
    section.finish();
}
