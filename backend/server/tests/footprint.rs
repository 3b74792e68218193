//! The size bound counts what the store really holds: for spans, log lines
//! and samples shaped like the mythical services', the store's own count
//! is checked against the bytes glibc's malloc reports in use, on the way
//! in and after the oldest half is evicted. One test in its own binary, so
//! no other test allocates beside it.

#![cfg(target_env = "gnu")]

use std::sync::Arc;

use lab_backend::store::{LogStore, MetricStore, TraceStore};
use lab_signals::{
    AttrValue, Attributes, Labels, LogEntry, Resource, Sample, Span, SpanId, SpanKind, StatusCode,
    TraceId,
};

/// Bytes in use by the allocator, in every arena.
fn in_use() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    let info = unsafe { libc::mallinfo2() };
    info.uordblks + info.hblkhd
}

/// The store's count against the allocator's, as a ratio.
fn check(what: &str, counted: usize, real: usize) {
    let ratio = counted as f64 / real as f64;
    println!("{what}: counted {counted} B, malloc {real} B, ratio {ratio:.3}");
    assert!(
        (0.85..=1.15).contains(&ratio),
        "{what}: the store counts {counted} bytes but holds {real} (ratio {ratio:.2})"
    );
}

fn text(s: &str) -> AttrValue {
    AttrValue::Str(s.to_owned())
}

/// A database span of mythical-server, with both conventions' names.
fn span(trace: u64, index: u64, resource: &Arc<Resource>) -> Span {
    let name = format!("name_{trace}_{index}");
    let statement = format!("INSERT INTO owlbear (name) VALUES ('{name}')");
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&trace.to_be_bytes());
    Span {
        trace_id: TraceId(id),
        span_id: SpanId((trace * 8 + index).to_be_bytes()),
        parent_span_id: (index > 0).then(|| SpanId((trace * 8).to_be_bytes())),
        name: "INSERT owlbear".to_owned(),
        kind: SpanKind::Client,
        status: StatusCode::Unset,
        status_message: String::new(),
        start: (trace * 1_000_000 + index) as i64,
        end: (trace * 1_000_000 + index + 500) as i64,
        attributes: Attributes(vec![
            ("db.system.name".into(), text("postgresql")),
            ("db.system".into(), text("postgresql")),
            ("db.namespace".into(), text("postgres")),
            ("server.address".into(), text("127.0.0.1")),
            ("server.port".into(), AttrValue::Int(15433)),
            ("db.name".into(), text("postgres")),
            ("db.user".into(), text("postgres")),
            ("net.peer.name".into(), text("127.0.0.1")),
            ("net.peer.port".into(), AttrValue::Int(15433)),
            ("db.collection.name".into(), text("owlbear")),
            ("db.operation.name".into(), text("INSERT")),
            ("db.query.text".into(), AttrValue::Str(statement.clone())),
            ("db.sql.table".into(), text("owlbear")),
            ("db.operation".into(), text("INSERT")),
            ("db.statement".into(), AttrValue::Str(statement)),
            ("db.query.parameter.0".into(), AttrValue::Str(name)),
        ]),
        events: Vec::new(),
        links: Vec::new(),
        resource: Arc::clone(resource),
    }
}

fn log_line(i: u64) -> (Labels, LogEntry) {
    let stream = Labels::from_pairs([
        ("service_name", "mythical-server"),
        ("level", ["info", "error"][(i % 2) as usize]),
    ]);
    let trace_id = format!("{:032x}", i * 7919);
    let span_id = format!("{:016x}", i * 104_729);
    let entry = LogEntry {
        ts: i as i64 * 1_000_000,
        line: format!(
            "level=info msg=\"inserted a beast\" beast=owlbear name=name_{i} duration_ms=0.{i}"
        ),
        metadata: Labels::from_pairs([
            ("trace_id", trace_id.as_str()),
            ("span_id", span_id.as_str()),
            ("severity_text", "INFO"),
            ("severity_number", "9"),
            ("detected_level", "info"),
            ("scope_name", "mythical-server"),
        ]),
    };
    (stream, entry)
}

fn series(i: u64) -> Labels {
    let le = format!("{}", (i % 12) as f64 * 0.25);
    let beast = ["owlbear", "unicorn", "manticore", "illithid", "beholder"][(i % 5) as usize];
    let instance = format!("127.0.0.1:{}", 4000 + i / 60);
    Labels::from_pairs([
        ("__name__", "mythical_request_times_bucket"),
        ("job", "mythical"),
        ("instance", instance.as_str()),
        ("service", "mythical-server"),
        ("group", "mythical"),
        ("beast", beast),
        ("method", "POST"),
        ("status", "OK"),
        ("le", le.as_str()),
    ])
}

#[test]
fn the_size_bound_counts_what_malloc_holds() {
    let resource = Arc::new(Resource::default());

    // Traces: five spans each, arriving trace by trace.
    let base = in_use();
    let mut traces = TraceStore::default();
    for trace in 0..4_000u64 {
        for index in 0..5 {
            traces.insert(span(trace, index, &resource));
        }
    }
    check("4,000 traces", traces.bytes(), in_use() - base);
    traces.evict_before(2_000 * 1_000_000);
    check(
        "2,000 traces after eviction",
        traces.bytes(),
        in_use() - base,
    );
    drop(traces);

    // Logs: six streams, lines with trace context as structured metadata.
    let base = in_use();
    let mut logs = LogStore::default();
    for i in 0..20_000u64 {
        let (labels, entry) = log_line(i);
        logs.insert(labels, entry);
    }
    check("20,000 log lines", logs.bytes(), in_use() - base);
    logs.evict_before(15_000 * 1_000_000);
    check(
        "5,000 log lines after eviction",
        logs.bytes(),
        in_use() - base,
    );
    drop(logs);

    // Metrics: a histogram's buckets over many scrapes.
    let base = in_use();
    let mut metrics = MetricStore::default();
    for scrape in 0..200i64 {
        for i in 0..600u64 {
            metrics.insert_sample(
                series(i),
                Sample {
                    t: scrape * 2_000,
                    v: scrape as f64,
                },
            );
        }
    }
    check("600 series × 200 samples", metrics.bytes(), in_use() - base);
    metrics.evict_before(180 * 2_000);
    check(
        "600 series × 20 samples after eviction",
        metrics.bytes(),
        in_use() - base,
    );
}
