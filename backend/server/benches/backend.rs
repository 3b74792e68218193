//! The embedded backend's figures: spans ingested per second on one core,
//! with the span metrics generator on and off, trace by id with 1M spans
//! stored, a LogQL line filter over 1M lines, the p95 PromQL over an hour
//! of histogram data, and memory per span and line. Prints its section of
//! BENCHMARKS.md (and writes it under `BENCH_RESULTS` when set, for
//! `scripts/bench`).
//!
//! cargo bench -p lab-backend --bench backend

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lab_backend::ingest::Payload;
use lab_backend::{BackendConfig, Limits};
use lab_logql::Direction;
use lab_signals::{Labels, LogEntry, Sample};
use lab_testkit::{Goal, Section, thousands};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

const SPANS_PER_BATCH: usize = 500;
/// Random trace-by-id lookups over HTTP.
const LOOKUPS: u64 = 5000;
/// Exports of the one-thread ingest: a million spans.
const INGEST_BATCHES: u64 = 2000;

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn text(s: &str) -> any_value::Value {
    any_value::Value::StringValue(s.into())
}

/// A batch of lab-shaped spans: traces of five spans (requester → client →
/// server → database), ids unique per batch.
fn batch(index: u64, now_nanos: u64) -> ExportTraceServiceRequest {
    let spans = (0..SPANS_PER_BATCH as u64)
        .map(|i| {
            let trace = index * 1000 + i / 5;
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&trace.to_be_bytes());
            trace_id[8] = 1;
            let span_id = (index * 1000 + i + 1).to_be_bytes().to_vec();
            let parent = if i % 5 == 0 { Vec::new() } else { (index * 1000 + i).to_be_bytes().to_vec() };
            let start = now_nanos + i * 1_000_000;
            Span {
                trace_id: trace_id.to_vec(),
                span_id,
                parent_span_id: parent,
                name: ["requester", "POST /:beast", "POST /:beast", "INSERT owlbear", "SELECT owlbear"][(i % 5) as usize].into(),
                kind: 3,
                start_time_unix_nano: start,
                end_time_unix_nano: start + 2_000_000,
                attributes: vec![
                    kv("http.request.method", text("POST")),
                    kv("http.route", text("/:beast")),
                    kv("url.path", text("/owlbear")),
                    kv("beast", text("owlbear")),
                    kv("http.response.status_code", any_value::Value::IntValue(500)),
                    kv("db.system", text("postgresql")),
                    kv("db.query.text", text("INSERT INTO owlbear (name) VALUES ($1)")),
                    kv("client.address", text("127.0.0.1")),
                ],
                status: Some(Status { code: 2, message: "null value in column \"name\" of relation \"owlbear\" violates not-null constraint".into() }),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", text("mythical-server")),
                    kv("service.namespace", text("mythical")),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The figures in the order the table shows them (not the order they are
/// measured in, which keeps one data set in memory at a time).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Row {
    Ingest,
    InMemoryOff,
    InMemoryOn,
    Replay,
    TraceById,
    RareFilter,
    LimitedFilter,
    MetricQuery,
    PromQl,
    SpanMemory,
    LineMemory,
}

fn main() {
    let mut section = Section::new("backend");
    let mut rows: Vec<(Row, [String; 3])> = Vec::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let now = lab_backend::params::now_nanos() as u64 - 600_000_000_000;
    let data = tempfile::tempdir().unwrap();
    let limits = Limits {
        retention: Duration::from_secs(24 * 3600),
        max_bytes: 8 * 1024 * 1024 * 1024,
    };

    // 3. LogQL line filters over 1M lines in 20 streams.
    let (logs, _) = lab_backend::Backend::open(None, limits, Default::default(), None).unwrap();
    let rss_before = rss_bytes();
    let mut line_bytes = 0;
    for chunk in 0..100i64 {
        let entries: Vec<(Labels, LogEntry)> = (0..10_000i64)
            .map(|i| {
                let n = chunk * 10_000 + i;
                let beast = ["unicorn", "manticore", "illithid", "owlbear", "beholder"][(n % 5) as usize];
                let level = if n % 4 == 0 { "error" } else { "info" };
                let status = if level == "error" { "FAILURE" } else { "SUCCESS" };
                let needle = if n % 100_000 == 7 { " needle" } else { "" };
                (
                    Labels::from_pairs([("service_name", "mythical-server"), ("level", level), ("beast", beast), ("job", "mythical-server")]),
                    LogEntry {
                        ts: now as i64 + n * 1_000_000,
                        line: format!("traceID={n:032x} http.method=POST endpoint={beast} status={status} code=500{needle}"),
                        metadata: Labels::default(),
                    },
                )
            })
            .collect();
        line_bytes += entries.iter().map(|(_, e)| e.line.len()).sum::<usize>();
        logs.store().add_logs(entries);
    }
    let lines = logs.store().stats().log_lines;
    let rss_lines = rss_bytes().saturating_sub(rss_before);
    rows.push((
        Row::LineMemory,
        [
            format!(
                "memory per stored log line (RSS growth over the lines, {:.0} bytes each on average)",
                line_bytes as f64 / lines as f64
            ),
            format!(
                "{} lines, {:.0} MB",
                thousands(lines as u64),
                rss_lines as f64 / 1e6
            ),
            format!("{:.0} bytes", rss_lines as f64 / lines as f64),
        ],
    ));
    let store = logs.store().logs();
    let mut rare_filter_ms = f64::NAN;
    for (row, what, how, query, limit) in [
        (
            Row::RareFilter,
            "LogQL rare line filter",
            " (full scan)",
            r#"{service_name="mythical-server"} |= "needle""#,
            100,
        ),
        (
            Row::LimitedFilter,
            "LogQL line filter",
            ", limit 100",
            r#"{service_name="mythical-server"} |= "FAILURE""#,
            100,
        ),
        (
            Row::MetricQuery,
            "LogQL metric query",
            ", step 1 m",
            r#"sum by (beast) (count_over_time({service_name="mythical-server"} |= "FAILURE" [1m]))"#,
            100,
        ),
    ] {
        let expr = lab_logql::parse(query).unwrap();
        let mut times = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            let result = lab_logql::query_range(
                &*store,
                &expr,
                now as i64,
                now as i64 + 1_000_000_000_000,
                60_000_000_000,
                limit,
                Direction::Backward,
            )
            .unwrap();
            times.push(started.elapsed());
            std::hint::black_box(result);
        }
        times.sort();
        let median_ms = percentile(&times, 0.5).as_secs_f64() * 1e3;
        if row == Row::RareFilter {
            rare_filter_ms = median_ms;
        }
        rows.push((
            row,
            [
                format!("{what} over {} lines{how}", thousands(lines as u64)),
                format!("`{query}`"),
                format!("median {median_ms:.0} ms"),
            ],
        ));
    }
    drop(store);

    // 1. Ingest on one core: decode-free mapping + WAL + store, one thread.
    // Each batch is built just before it is ingested, so the RSS growth
    // is the store's, and only the ingest is timed.
    let (backend, _) =
        lab_backend::Backend::open(Some(data.path()), limits, Default::default(), None).unwrap();
    let rss_before = rss_bytes();
    let mut elapsed = Duration::ZERO;
    for i in 0..INGEST_BATCHES {
        let request = batch(i, now);
        let started = Instant::now();
        backend.ingest(Payload::Traces(request)).unwrap();
        elapsed += started.elapsed();
    }
    let started = Instant::now();
    backend.sync().unwrap();
    elapsed += started.elapsed();
    let spans = backend.store().stats().spans;
    let rss_spans = rss_bytes().saturating_sub(rss_before);
    let ingest_rate = spans as f64 / elapsed.as_secs_f64();
    rows.push((
        Row::Ingest,
        [
            "ingest on one thread: OTLP request → spans, write-ahead log, store (generator off)"
                .into(),
            format!(
                "{} lab-shaped spans (8 attributes each) in {} exports",
                thousands(spans as u64),
                thousands(INGEST_BATCHES)
            ),
            format!(
                "{} spans/s ({:.2} s)",
                thousands(ingest_rate.round() as u64),
                elapsed.as_secs_f64()
            ),
        ],
    ));
    rows.push((
        Row::SpanMemory,
        [
            "memory per stored span (RSS growth over the spans)".into(),
            format!(
                "{} spans, {:.0} MB",
                thousands(spans as u64),
                rss_spans as f64 / 1e6
            ),
            format!("{:.0} bytes", rss_spans as f64 / spans as f64),
        ],
    ));
    drop(backend);

    // 1b. The same spans with and without the generator (span metrics,
    // service graphs, autologs), in memory, one thread: its cost per span.
    let mut in_memory = [f64::NAN; 2];
    for generator in [None, Some(lab_backend::GeneratorConfig::default())] {
        let on = generator.is_some();
        let (backend, _) =
            lab_backend::Backend::open(None, limits, Default::default(), generator).unwrap();
        let mut elapsed = Duration::ZERO;
        for i in 0..400 {
            let request = batch(10_000 + i, now);
            let started = Instant::now();
            backend.ingest(Payload::Traces(request)).unwrap();
            elapsed += started.elapsed();
        }
        let started = Instant::now();
        let collected = backend.collect_generated().unwrap();
        let collect = started.elapsed();
        let spans = backend.store().stats().spans;
        let rate = spans as f64 / elapsed.as_secs_f64();
        in_memory[usize::from(on)] = rate;
        let mut result = format!("{} spans/s", thousands(rate.round() as u64));
        if on {
            result.push_str(&format!(
                "; one collection writes {} samples in {:.2} ms",
                collected.samples,
                collect.as_secs_f64() * 1e3
            ));
        }
        rows.push((
            if on {
                Row::InMemoryOn
            } else {
                Row::InMemoryOff
            },
            [
                format!(
                    "ingest in memory, generator {} (span metrics, service graph, autologs)",
                    if on { "on" } else { "off" }
                ),
                format!("{} spans", thousands(spans as u64)),
                result,
            ],
        ));
    }

    // 2. Trace by id over HTTP with the 1M spans replayed from the log.
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let started = Instant::now();
    let running = runtime
        .block_on(lab_backend::start(BackendConfig {
            data_dir: Some(data.path().to_owned()),
            query: loopback,
            otlp_grpc: loopback,
            otlp_http: loopback,
            limits,
            scrape: Vec::new(),
            generator: None,
        }))
        .unwrap();
    let replayed = running.backend.store().stats().spans;
    rows.push((
        Row::Replay,
        [
            "restart: replay of the write-ahead log".into(),
            format!("{} spans", thousands(replayed as u64)),
            format!("{:.2} s", started.elapsed().as_secs_f64()),
        ],
    ));
    let url = running.query_url();
    let mut latencies = runtime.block_on(async {
        let http = reqwest::Client::new();
        let mut latencies = Vec::new();
        for i in 0..LOOKUPS {
            let trace = (i * 7919) % 2000 * 1000 + (i % 100);
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&trace.to_be_bytes());
            id[8] = 1;
            let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
            let started = Instant::now();
            let response = http
                .get(format!("{url}/api/v2/traces/{hex}"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let _ = response.bytes().await.unwrap();
            latencies.push(started.elapsed());
        }
        latencies
    });
    latencies.sort();
    let trace_p99_ms = percentile(&latencies, 0.99).as_secs_f64() * 1e3;
    rows.push((
        Row::TraceById,
        [
            format!(
                "trace by id over HTTP, {} spans stored, {} random lookups",
                thousands(replayed as u64),
                thousands(LOOKUPS)
            ),
            "`GET /api/v2/traces/<id>`".into(),
            format!(
                "p50 {:.2} ms, p99 {trace_p99_ms:.2} ms",
                percentile(&latencies, 0.5).as_secs_f64() * 1e3
            ),
        ],
    ));
    runtime.block_on(running.shutdown());

    // 4. PromQL p95 over an hour of scraped histogram data.
    let (metrics, _) = lab_backend::Backend::open(None, limits, Default::default(), None).unwrap();
    let hour_start = now as i64 / 1_000_000 - 3_600_000;
    let bounds = [
        "10.0", "20.0", "50.0", "100.0", "200.0", "500.0", "1000.0", "2000.0", "4000.0", "8000.0",
        "16000.0", "+Inf",
    ];
    let mut points = Vec::new();
    let mut combos = 0;
    for beast in ["unicorn", "manticore", "illithid", "owlbear", "beholder"] {
        for method in ["GET", "POST", "DELETE"] {
            for status in ["200", "201", "204", "404", "500"] {
                combos += 1;
                for scrape in 0..240i64 {
                    let t = hour_start + scrape * 15_000;
                    let total = (scrape * 3) as f64;
                    for (b, le) in bounds.iter().enumerate() {
                        let share = ((b + 1) as f64 / bounds.len() as f64).min(1.0);
                        points.push((
                            Labels::from_pairs([
                                ("__name__", "mythical_request_times_bucket"),
                                ("le", le),
                                ("beast", beast),
                                ("method", method),
                                ("status", status),
                                ("job", "mythical-server"),
                                ("instance", "127.0.0.1:4000"),
                            ]),
                            Sample {
                                t,
                                v: (total * share).floor(),
                            },
                        ));
                    }
                }
            }
        }
    }
    let samples = points.len();
    metrics.store().add_metrics(points, [], []);
    let query =
        "histogram_quantile(0.95, sum by (le, beast) (rate(mythical_request_times_bucket[1m])))";
    let store = metrics.store().metrics();
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let result =
            lab_promql::range_query(&*store, query, hour_start, hour_start + 3_600_000, 15_000)
                .unwrap();
        times.push(started.elapsed());
        std::hint::black_box(result);
    }
    times.sort();
    let promql_ms = percentile(&times, 0.5).as_secs_f64() * 1e3;
    rows.push((
        Row::PromQl,
        [
            format!(
                "PromQL p95 over an hour: {combos} label sets × {} buckets, {} samples, step 15 s",
                bounds.len(),
                thousands(samples as u64)
            ),
            format!("`{query}`"),
            format!("median {promql_ms:.0} ms"),
        ],
    ));

    rows.sort_by(|a, b| a.0.cmp(&b.0));
    section.paragraph("One process, in-process calls except where HTTP is named.");
    section.table(&["what", "measured on", "result"]);
    for (_, row) in rows {
        section.row(row);
    }
    let [off, on] = in_memory;
    section.paragraph(format!(
        "The generator costs {:.1} µs a span in memory ({} spans/s with it, {} without).",
        (1.0 / on - 1.0 / off) * 1e6,
        thousands(on.round() as u64),
        thousands(off.round() as u64)
    ));
    section.goals(&[
        Goal::new(
            "ingest ≥ 100k spans/s on one thread",
            ingest_rate >= 100_000.0,
            format!(
                "{:.0}k spans/s, write-ahead log on, generator off",
                ingest_rate / 1e3
            ),
        ),
        Goal::new(
            "trace by id ≤ 10 ms p99",
            trace_p99_ms <= 10.0,
            format!("{trace_p99_ms:.2} ms"),
        ),
        Goal::new(
            format!(
                "LogQL line filter over {} lines ≤ 300 ms",
                thousands(lines as u64)
            ),
            rare_filter_ms <= 300.0,
            format!("{rare_filter_ms:.0} ms for the full scan"),
        ),
        Goal::new(
            "PromQL p95 over an hour ≤ 100 ms",
            promql_ms <= 100.0,
            format!("{promql_ms:.0} ms"),
        ),
    ]);
    section.finish();
}
