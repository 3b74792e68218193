//! The embedded backend's data model, shared by ingest, storage and the three
//! query languages: spans grouped into traces (Tempo's view), log lines in
//! labelled streams (Loki's view), and samples in labelled series
//! (Prometheus' view).
//!
//! Plain data: no I/O, no parsing, no knowledge of OTLP or HTTP.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

mod name;
pub use name::Name;

/// Nanoseconds since the Unix epoch (spans and log lines).
pub type UnixNanos = i64;
/// Milliseconds since the Unix epoch (metric samples, as Prometheus keeps them).
pub type UnixMillis = i64;

/// An attribute value as OTLP carries it. Arrays and maps are kept as their
/// JSON text, which is how Tempo shows them too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl AttrValue {
    /// The value as text: what a Loki label or a log line would show.
    pub fn to_text(&self) -> String {
        match self {
            AttrValue::Str(s) => s.clone(),
            AttrValue::Int(i) => i.to_string(),
            AttrValue::Float(f) => f.to_string(),
            AttrValue::Bool(b) => b.to_string(),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Numeric view for comparisons (`>`, `<`, …): ints and floats.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            AttrValue::Int(i) => Some(*i as f64),
            AttrValue::Float(f) => Some(*f),
            _ => None,
        }
    }
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// Key/value attributes in the order they arrived.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Attributes(pub Vec<(Name, AttrValue)>);

impl Attributes {
    pub fn get(&self, key: &str) -> Option<&AttrValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &AttrValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// OTLP span kinds, with TraceQL's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanKind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

/// OTLP status codes, with TraceQL's names (`unset`, `ok`, `error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusCode {
    Unset,
    Ok,
    Error,
}

impl SpanKind {
    /// The kind as OTLP's JSON and Tempo's span metrics spell it.
    pub fn otlp_name(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "SPAN_KIND_UNSPECIFIED",
            SpanKind::Internal => "SPAN_KIND_INTERNAL",
            SpanKind::Server => "SPAN_KIND_SERVER",
            SpanKind::Client => "SPAN_KIND_CLIENT",
            SpanKind::Producer => "SPAN_KIND_PRODUCER",
            SpanKind::Consumer => "SPAN_KIND_CONSUMER",
        }
    }
}

impl StatusCode {
    /// The code as OTLP's JSON and Tempo's span metrics spell it.
    pub fn otlp_name(self) -> &'static str {
        match self {
            StatusCode::Unset => "STATUS_CODE_UNSET",
            StatusCode::Ok => "STATUS_CODE_OK",
            StatusCode::Error => "STATUS_CODE_ERROR",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanEvent {
    pub time: UnixNanos,
    pub name: String,
    pub attributes: Attributes,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanLink {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub attributes: Attributes,
}

/// What produced a span: the resource (service) and instrumentation scope.
/// Shared by every span of one export.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub attributes: Attributes,
    pub scope_name: String,
    pub scope_version: String,
}

impl Resource {
    /// `service.name`, or `unknown_service` as OTel says when it is missing.
    pub fn service_name(&self) -> &str {
        self.attributes
            .get("service.name")
            .and_then(AttrValue::as_str)
            .unwrap_or("unknown_service")
    }
}

/// A 16-byte trace id, shown as 32 lower-case hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id, shown as 16 lower-case hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SpanId(pub [u8; 8]);

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.trim();
    // Tempo accepts ids with their leading zeros left out.
    if text.is_empty() || text.len() > N * 2 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let padded = format!("{text:0>width$}", width = N * 2);
    let mut out = [0u8; N];
    for (i, chunk) in padded.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
    }
    Some(out)
}

impl TraceId {
    /// From hex, with or without leading zeros.
    pub fn from_hex(text: &str) -> Option<TraceId> {
        parse_hex::<16>(text).map(TraceId)
    }
    pub fn from_slice(bytes: &[u8]) -> Option<TraceId> {
        bytes.try_into().ok().map(TraceId)
    }
}

impl SpanId {
    pub fn from_hex(text: &str) -> Option<SpanId> {
        parse_hex::<8>(text).map(SpanId)
    }
    pub fn from_slice(bytes: &[u8]) -> Option<SpanId> {
        bytes.try_into().ok().map(SpanId)
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

/// One span, with its resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// `None` for a root span.
    pub parent_span_id: Option<SpanId>,
    pub name: String,
    pub kind: SpanKind,
    pub status: StatusCode,
    pub status_message: String,
    pub start: UnixNanos,
    pub end: UnixNanos,
    pub attributes: Attributes,
    pub events: Vec<SpanEvent>,
    pub links: Vec<SpanLink>,
    pub resource: Arc<Resource>,
}

impl Span {
    pub fn duration_nanos(&self) -> i64 {
        (self.end - self.start).max(0)
    }

    pub fn service_name(&self) -> &str {
        self.resource.service_name()
    }
}

/// The spans of one trace, in no particular order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub trace_id: TraceId,
    pub spans: Vec<Span>,
}

impl Trace {
    /// The span without a parent; none while a trace's root has not
    /// arrived, as in Tempo (whose search then answers `<root span not yet
    /// received>`): the earliest span that did arrive is a child whose
    /// caller is still exporting, not the trace's start.
    pub fn root(&self) -> Option<&Span> {
        self.spans.iter().find(|s| s.parent_span_id.is_none())
    }

    pub fn start(&self) -> UnixNanos {
        self.spans.iter().map(|s| s.start).min().unwrap_or(0)
    }

    pub fn end(&self) -> UnixNanos {
        self.spans.iter().map(|s| s.end).max().unwrap_or(0)
    }

    pub fn duration_nanos(&self) -> i64 {
        (self.end() - self.start()).max(0)
    }
}

/// A label set, sorted by name, names unique: a Loki stream's identity or a
/// Prometheus series' identity (with `__name__`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Labels(Vec<(Name, String)>);

impl Labels {
    /// Sorts by name; a later duplicate name wins.
    pub fn new<N: Into<Name>>(pairs: impl IntoIterator<Item = (N, String)>) -> Labels {
        let mut pairs: Vec<(Name, String)> =
            pairs.into_iter().map(|(k, v)| (k.into(), v)).collect();
        pairs.reverse();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs.dedup_by(|a, b| a.0 == b.0);
        Labels(pairs)
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Labels {
        Labels::new(pairs.into_iter().map(|(k, v)| (Name::new(k), v.to_owned())))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The names, shared (see `Name`), with their values.
    pub fn names(&self) -> impl Iterator<Item = (&Name, &str)> {
        self.0.iter().map(|(k, v)| (k, v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A copy with `name` set to `value` (or added).
    pub fn with(&self, name: &str, value: &str) -> Labels {
        let mut pairs = self.0.clone();
        pairs.push((Name::new(name), value.to_owned()));
        Labels::new(pairs)
    }

    /// A copy without `name`.
    pub fn without(&self, name: &str) -> Labels {
        Labels(self.0.iter().filter(|(k, _)| k != name).cloned().collect())
    }

    pub fn into_pairs(self) -> Vec<(String, String)> {
        self.0.into_iter().map(|(k, v)| (k.into(), v)).collect()
    }
}

impl fmt::Display for Labels {
    /// `{a="1", b="2"}`, as Loki and Prometheus print label sets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(
                f,
                "{k}=\"{}\"",
                v.replace('\\', "\\\\").replace('"', "\\\"")
            )?;
        }
        f.write_str("}")
    }
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub ts: UnixNanos,
    pub line: String,
    /// Loki's structured metadata: attributes that are not stream labels
    /// (trace_id, span_id, severity_text, the rest of the OTLP attributes).
    pub metadata: Labels,
}

/// A log stream: a label set and its lines in time order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogStream {
    pub labels: Labels,
    pub entries: Vec<LogEntry>,
}

/// One metric sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub t: UnixMillis,
    pub v: f64,
}

/// An exemplar: a sample's value with the labels (usually `traceID`) that
/// lead to a trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exemplar {
    pub labels: Labels,
    pub value: f64,
    pub t: UnixMillis,
}

/// A Prometheus series: labels including `__name__`, samples in time order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub labels: Labels,
    pub samples: Vec<Sample>,
    pub exemplars: Vec<Exemplar>,
}

/// Prometheus metric types, for `/api/v1/metadata`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Unknown,
}

/// What is known about a metric family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricMetadata {
    pub metric_type: MetricType,
    pub help: String,
    pub unit: String,
}

/// A stream's labels and the entries of a time window, borrowed from
/// wherever the backend keeps them.
#[derive(Debug, Clone, Copy)]
pub struct StreamView<'a> {
    pub labels: &'a Labels,
    /// In time order.
    pub entries: &'a [LogEntry],
}

/// A series' labels, and its samples and exemplars in a time window.
#[derive(Debug, Clone, Copy)]
pub struct SeriesView<'a> {
    pub labels: &'a Labels,
    /// In time order.
    pub samples: &'a [Sample],
    pub exemplars: &'a [Exemplar],
}

/// Where TraceQL finds traces. `start`/`end` bound the traces' time (a
/// trace is visited when any of its spans starts within `[start, end]`).
pub trait TraceSource {
    fn for_each_trace(&self, start: UnixNanos, end: UnixNanos, visit: &mut dyn FnMut(&Trace));
}

/// Where LogQL finds log lines: every stream whose labels `select` accepts,
/// with its entries in `[start, end]`.
pub trait LogSource {
    fn for_each_stream(
        &self,
        select: &dyn Fn(&Labels) -> bool,
        start: UnixNanos,
        end: UnixNanos,
        visit: &mut dyn FnMut(StreamView<'_>),
    );
}

/// Where PromQL finds samples: every series whose labels `select` accepts,
/// with its samples and exemplars in `[start, end]`.
pub trait SeriesSource {
    fn for_each_series(
        &self,
        select: &dyn Fn(&Labels) -> bool,
        start: UnixMillis,
        end: UnixMillis,
        visit: &mut dyn FnMut(SeriesView<'_>),
    );

    /// Type, help and unit per metric family name.
    fn metadata(&self) -> Vec<(String, MetricMetadata)> {
        Vec::new()
    }
}

/// The part of a time-sorted slice inside `[start, end]`.
pub fn window<T>(items: &[T], start: i64, end: i64, time: impl Fn(&T) -> i64) -> &[T] {
    let from = items.partition_point(|item| time(item) < start);
    let to = items.partition_point(|item| time(item) <= end);
    &items[from..to.max(from)]
}

impl TraceSource for [Trace] {
    fn for_each_trace(&self, start: UnixNanos, end: UnixNanos, visit: &mut dyn FnMut(&Trace)) {
        for trace in self {
            if trace
                .spans
                .iter()
                .any(|s| s.start >= start && s.start <= end)
            {
                visit(trace);
            }
        }
    }
}

impl LogSource for [LogStream] {
    fn for_each_stream(
        &self,
        select: &dyn Fn(&Labels) -> bool,
        start: UnixNanos,
        end: UnixNanos,
        visit: &mut dyn FnMut(StreamView<'_>),
    ) {
        for stream in self.iter().filter(|s| select(&s.labels)) {
            let entries = window(&stream.entries, start, end, |e| e.ts);
            if !entries.is_empty() {
                visit(StreamView {
                    labels: &stream.labels,
                    entries,
                });
            }
        }
    }
}

impl SeriesSource for [Series] {
    fn for_each_series(
        &self,
        select: &dyn Fn(&Labels) -> bool,
        start: UnixMillis,
        end: UnixMillis,
        visit: &mut dyn FnMut(SeriesView<'_>),
    ) {
        for series in self.iter().filter(|s| select(&s.labels)) {
            visit(SeriesView {
                labels: &series.labels,
                samples: window(&series.samples, start, end, |s| s.t),
                exemplars: window(&series.exemplars, start, end, |e| e.t),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_as_hex_and_parse_without_leading_zeros() {
        let id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let short = TraceId::from_hex("abc").unwrap();
        assert_eq!(short.to_string(), "00000000000000000000000000000abc");
        assert!(TraceId::from_hex("xyz").is_none());
        assert!(SpanId::from_hex("00f067aa0ba902b7").is_some());
        assert!(SpanId::from_hex("00f067aa0ba902b7ff").is_none());
    }

    #[test]
    fn window_keeps_the_inclusive_range() {
        let samples: Vec<Sample> = (0..10).map(|t| Sample { t, v: t as f64 }).collect();
        let inside = window(&samples, 3, 6, |s| s.t);
        assert_eq!(inside.iter().map(|s| s.t).collect::<Vec<_>>(), [3, 4, 5, 6]);
        assert!(window(&samples, 20, 30, |s| s.t).is_empty());
        assert!(window(&samples, 6, 3, |s| s.t).is_empty());
    }

    #[test]
    fn labels_sort_dedup_and_print_like_prometheus() {
        let labels = Labels::from_pairs([("b", "2"), ("a", "1"), ("b", "3")]);
        assert_eq!(labels.to_string(), r#"{a="1", b="3"}"#);
        assert_eq!(labels.get("a"), Some("1"));
        assert_eq!(
            labels.with("c", "x\"y").to_string(),
            r#"{a="1", b="3", c="x\"y"}"#
        );
        assert_eq!(labels.without("a").to_string(), r#"{b="3"}"#);
    }
}
