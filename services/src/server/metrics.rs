//! `mythical_request_times` as the original has it: a histogram in
//! milliseconds, buckets 10…16000, labels `method, status, beast`, each
//! observation carrying the trace id as an exemplar. Served on `/metrics`
//! (OpenMetrics, so the exemplars are kept) and exported over OTLP.

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter};
use opentelemetry::trace::SpanContext;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// The original's buckets, in milliseconds.
pub const BUCKETS_MS: [f64; 11] = [
    10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0, 16000.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    status: u16,
    beast: &'static str,
}

type Exemplar = Vec<(&'static str, String)>;
type RequestTimes = Family<
    RequestLabels,
    HistogramWithExemplars<Exemplar>,
    fn() -> HistogramWithExemplars<Exemplar>,
>;

pub struct RequestMetrics {
    registry: Registry,
    times: RequestTimes,
    otlp_times: Histogram<f64>,
    /// The process' resident memory, read at each scrape (what a leak
    /// shows in).
    resident: prometheus_client::metrics::gauge::Gauge,
}

/// Resident set size in bytes, from /proc (0 where there is none).
pub fn resident_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

fn new_histogram() -> HistogramWithExemplars<Exemplar> {
    HistogramWithExemplars::new(BUCKETS_MS.into_iter())
}

impl RequestMetrics {
    pub fn new(meter: &Meter) -> RequestMetrics {
        let mut registry = Registry::default();
        let times: RequestTimes = Family::new_with_constructor(new_histogram);
        registry.register(
            "mythical_request_times",
            "Response times for the endpoints",
            times.clone(),
        );
        let otlp_times = meter
            .f64_histogram("mythical_request_times")
            .with_description("Response times for the endpoints")
            .with_unit("ms")
            .with_boundaries(BUCKETS_MS.to_vec())
            .build();
        let resident = prometheus_client::metrics::gauge::Gauge::default();
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            resident.clone(),
        );
        RequestMetrics {
            registry,
            times,
            otlp_times,
            resident,
        }
    }

    /// Records one response. `beast` is the endpoint, or `unknown` for a
    /// name that is not a beast: the original labelled 404s with whatever
    /// the caller typed, which lets anyone grow the series without bound.
    pub fn observe(
        &self,
        method: &'static str,
        status: u16,
        beast: &'static str,
        ms: f64,
        span: &SpanContext,
    ) {
        let labels = RequestLabels {
            method,
            status,
            beast,
        };
        let exemplar = span.is_valid().then(|| {
            vec![
                ("traceID", span.trace_id().to_string()),
                ("spanID", span.span_id().to_string()),
            ]
        });
        self.times
            .get_or_create(&labels)
            .observe(ms, exemplar, None);
        self.otlp_times.record(
            ms,
            &[
                KeyValue::new("method", method),
                KeyValue::new("status", status_text(status)),
                KeyValue::new("beast", beast),
            ],
        );
    }

    /// The OpenMetrics text of `/metrics`.
    pub fn encode(&self) -> String {
        self.resident
            .set(i64::try_from(resident_bytes()).unwrap_or(i64::MAX));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The status as label text, without an allocation for the codes the
/// server answers with.
fn status_text(status: u16) -> opentelemetry::Value {
    match status {
        200 => "200".into(),
        201 => "201".into(),
        204 => "204".into(),
        400 => "400".into(),
        404 => "404".into(),
        500 => "500".into(),
        other => other.to_string().into(),
    }
}
