//! The backends' answers as types, decoded once by the client: Tempo's
//! search and trace, the `{status, data}` answer Prometheus and Loki share,
//! Pyroscope's flame graph and the embedded backend's top functions. The
//! readers of the lab (diagnosis, the guide's checks, the terminal and the
//! console) read these, never the JSON.
//!
//! Decoding is lenient where the backends differ (numbers as strings or
//! numbers, ids as hex or base64, Tempo's older field names) and strict on
//! shape: an answer that is not what the API documents is an error that
//! names the URL, not a silent empty result.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// A number as OTLP JSON and Tempo write it: a JSON number, or a string of
/// one (64-bit integers do not fit a JSON number everywhere). Fractions
/// are cut off; what does not read as a number is 0.
fn lenient_i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Int(i64),
        Float(f64),
        Text(String),
        Nothing(()),
    }
    Ok(match Number::deserialize(deserializer)? {
        Number::Int(n) => n,
        Number::Float(f) => f as i64,
        Number::Text(s) => s
            .parse::<i64>()
            .or_else(|_| s.parse::<f64>().map(|f| f as i64))
            .unwrap_or(0),
        Number::Nothing(()) => 0,
    })
}

/// A list Go may write as `null`: read as empty.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    deserializer: D,
) -> Result<T, D::Error> {
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}

/// An id as hex: OTLP's JSON encoding writes hex, protobuf's JSON (Tempo's
/// older answers) base64.
fn hex_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
    Ok(id_hex(&text))
}

/// `text` as a hex id: hex stays (lower case), base64 is decoded, anything
/// else is kept as it came.
pub fn id_hex(text: &str) -> String {
    if text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return text.to_ascii_lowercase();
    }
    base64_decode(text)
        .map(|bytes| bytes.iter().map(|b| format!("{b:02x}")).collect())
        .unwrap_or_else(|| text.to_owned())
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for byte in text.bytes().filter(|b| *b != b'=') {
        let value = ALPHABET.iter().position(|a| *a == byte)? as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    Some(out)
}

/// An OTLP attribute value (`{"stringValue": …}`, `{"intValue": …}`, …).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnyValue {
    #[serde(default)]
    pub string_value: Option<String>,
    #[serde(default, deserialize_with = "some_lenient_i64")]
    pub int_value: Option<i64>,
    #[serde(default)]
    pub double_value: Option<f64>,
    #[serde(default)]
    pub bool_value: Option<bool>,
    #[serde(default)]
    pub array_value: Option<ArrayValue>,
}

fn some_lenient_i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    lenient_i64(deserializer).map(Some)
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ArrayValue {
    #[serde(default, deserialize_with = "nullable")]
    pub values: Vec<AnyValue>,
}

impl AnyValue {
    /// The value as text, as a trace view shows it.
    pub fn text(&self) -> String {
        if let Some(s) = &self.string_value {
            return s.clone();
        }
        if let Some(n) = self.int_value {
            return n.to_string();
        }
        if let Some(f) = self.double_value {
            return f.to_string();
        }
        if let Some(b) = self.bool_value {
            return b.to_string();
        }
        if let Some(array) = &self.array_value {
            let items: Vec<String> = array.values.iter().map(AnyValue::text).collect();
            return format!("[{}]", items.join(", "));
        }
        String::new()
    }
}

/// One attribute: a key and its value.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct KeyValue {
    pub key: String,
    #[serde(default)]
    pub value: AnyValue,
}

/// The value of `key` among `attributes`, as text.
pub fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|a| a.key == key)
        .map(|a| a.value.text())
}

/// Tempo's search answer (`GET /api/search`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TraceSearch {
    #[serde(default, deserialize_with = "nullable")]
    pub traces: Vec<FoundTrace>,
}

/// One trace of a search: its root and the spans that matched.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FoundTrace {
    #[serde(rename = "traceID", default)]
    pub trace_id: String,
    /// Tempo says `<root span not yet received>` until the root arrives.
    #[serde(default)]
    pub root_service_name: String,
    #[serde(default)]
    pub root_trace_name: String,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub start_time_unix_nano: i64,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub duration_ms: i64,
    /// The matched spans, one set per `by()` group (Tempo 2.2 on).
    #[serde(default, deserialize_with = "nullable")]
    pub span_sets: Vec<SpanSet>,
    /// The first of `span_sets`, as Tempo keeps writing it.
    #[serde(default)]
    pub span_set: Option<SpanSet>,
}

impl FoundTrace {
    /// The matched spans, from `spanSets` or, from an older Tempo, its
    /// single `spanSet`.
    pub fn matched_spans(&self) -> impl Iterator<Item = &FoundSpan> {
        let sets: Vec<&SpanSet> = if self.span_sets.is_empty() {
            self.span_set.iter().collect()
        } else {
            self.span_sets.iter().collect()
        };
        sets.into_iter().flat_map(|set| set.spans.iter())
    }

    /// How many spans matched in all.
    pub fn matched(&self) -> i64 {
        if self.span_sets.is_empty() {
            self.span_set.as_ref().map_or(0, |s| s.matched)
        } else {
            self.span_sets.iter().map(|s| s.matched).sum()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SpanSet {
    #[serde(default, deserialize_with = "nullable")]
    pub spans: Vec<FoundSpan>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub matched: i64,
    /// The values a `by()` grouped the set on.
    #[serde(default, deserialize_with = "nullable")]
    pub attributes: Vec<KeyValue>,
}

/// A span as a search shows it: its id, timing and the attributes the
/// query selected.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FoundSpan {
    #[serde(rename = "spanID", default, deserialize_with = "hex_id")]
    pub span_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub start_time_unix_nano: i64,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub duration_nanos: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub attributes: Vec<KeyValue>,
}

impl FoundSpan {
    pub fn attribute(&self, key: &str) -> Option<String> {
        attribute(&self.attributes, key)
    }

    pub fn duration_ms(&self) -> f64 {
        self.duration_nanos as f64 / 1e6
    }
}

/// One trace by id: OTLP JSON, under `trace` (Tempo's v2 API) or as
/// `batches` (its v1 API).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceAnswer {
    #[serde(default)]
    pub trace: Option<OtlpTrace>,
    #[serde(default, deserialize_with = "nullable")]
    pub batches: Vec<ResourceSpans>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OtlpTrace {
    #[serde(default, alias = "batches", deserialize_with = "nullable")]
    pub resource_spans: Vec<ResourceSpans>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSpans {
    #[serde(default)]
    pub resource: Resource,
    #[serde(
        default,
        alias = "instrumentationLibrarySpans",
        deserialize_with = "nullable"
    )]
    pub scope_spans: Vec<ScopeSpans>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Resource {
    #[serde(default, deserialize_with = "nullable")]
    pub attributes: Vec<KeyValue>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ScopeSpans {
    #[serde(default, deserialize_with = "nullable")]
    pub spans: Vec<OtlpSpan>,
}

/// A span as OTLP JSON writes it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OtlpSpan {
    #[serde(default, deserialize_with = "hex_id")]
    pub span_id: String,
    #[serde(default, deserialize_with = "hex_id")]
    pub parent_span_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub kind: Code,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub start_time_unix_nano: i64,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub end_time_unix_nano: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub attributes: Vec<KeyValue>,
    #[serde(default, deserialize_with = "nullable")]
    pub events: Vec<OtlpEvent>,
    #[serde(default)]
    pub status: Status,
}

/// An enum of OTLP JSON: its name (`STATUS_CODE_ERROR`) or its number (2).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Code {
    Number(i64),
    Name(String),
}

impl Default for Code {
    fn default() -> Code {
        Code::Number(0)
    }
}

impl Code {
    fn is(&self, number: i64, name: &str) -> bool {
        match self {
            Code::Number(n) => *n == number,
            Code::Name(s) => s == name,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Status {
    #[serde(default)]
    pub code: Code,
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OtlpEvent {
    #[serde(default)]
    pub name: String,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub time_unix_nano: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub attributes: Vec<KeyValue>,
}

/// Attributes as (key, value text), in the order the span has them.
pub type Attributes = Vec<(String, String)>;

/// One span event: its name, when (Unix nanoseconds), its attributes.
pub type Event = (String, i64, Attributes);

/// One span of a trace with its service, as the lab reads it: ids in hex,
/// times in Unix nanoseconds, the error message when it failed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct TraceSpan {
    pub id: String,
    pub parent: String,
    pub service: String,
    pub name: String,
    /// OpenTelemetry's span kind: server, client, internal…
    pub server: bool,
    pub start: i64,
    pub end: i64,
    /// The status message when the span failed (`error` when it has none).
    pub error: Option<String>,
    /// The status message as the span has it (empty when none).
    pub status_message: String,
    pub attributes: Attributes,
    pub events: Vec<Event>,
}

impl TraceSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The message of a failed span that says why (not the `error`
    /// placeholder of one that failed without a message).
    pub fn error_message(&self) -> Option<&str> {
        self.error
            .as_ref()
            .map(|_| self.status_message.as_str())
            .filter(|m| !m.is_empty())
    }
}

fn texts(attributes: &[KeyValue]) -> Attributes {
    attributes
        .iter()
        .map(|a| (a.key.clone(), a.value.text()))
        .collect()
}

impl TraceAnswer {
    fn batches(&self) -> &[ResourceSpans] {
        match &self.trace {
            Some(trace) => &trace.resource_spans,
            None => &self.batches,
        }
    }

    /// Every span, with its service, in the answer's order.
    pub fn spans(&self) -> Vec<TraceSpan> {
        let mut out = Vec::new();
        for batch in self.batches() {
            let service = attribute(&batch.resource.attributes, "service.name")
                .unwrap_or_else(|| "unknown_service".to_owned());
            for span in batch.scope_spans.iter().flat_map(|s| s.spans.iter()) {
                let failed = span.status.code.is(2, "STATUS_CODE_ERROR");
                out.push(TraceSpan {
                    id: span.span_id.clone(),
                    parent: span.parent_span_id.clone(),
                    service: service.clone(),
                    name: span.name.clone(),
                    server: span.kind.is(2, "SPAN_KIND_SERVER"),
                    start: span.start_time_unix_nano,
                    end: span.end_time_unix_nano,
                    error: failed.then(|| {
                        if span.status.message.is_empty() {
                            "error".to_owned()
                        } else {
                            span.status.message.clone()
                        }
                    }),
                    status_message: span.status.message.clone(),
                    attributes: texts(&span.attributes),
                    events: span
                        .events
                        .iter()
                        .map(|e| (e.name.clone(), e.time_unix_nano, texts(&e.attributes)))
                        .collect(),
                });
            }
        }
        out
    }

    /// Every span, parents before children (depth first, siblings by
    /// start), with its depth; a span whose parent is not in the trace is
    /// a root.
    pub fn tree(&self) -> Vec<(usize, TraceSpan)> {
        let spans = self.spans();
        let ids: HashSet<&str> = spans.iter().map(|s| s.id.as_str()).collect();
        let mut children: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut roots = Vec::new();
        for (i, s) in spans.iter().enumerate() {
            if s.parent.is_empty() || !ids.contains(s.parent.as_str()) {
                roots.push(i);
            } else {
                children.entry(s.parent.as_str()).or_default().push(i);
            }
        }
        roots.sort_by_key(|&i| spans[i].start);
        for list in children.values_mut() {
            list.sort_by_key(|&i| spans[i].start);
        }
        let mut order = Vec::with_capacity(spans.len());
        let mut stack: Vec<(usize, usize)> = roots.into_iter().rev().map(|i| (i, 0)).collect();
        while let Some((i, depth)) = stack.pop() {
            if let Some(kids) = children.get(spans[i].id.as_str()) {
                stack.extend(kids.iter().rev().map(|&k| (k, depth + 1)));
            }
            order.push((depth, i));
        }
        order
            .into_iter()
            .map(|(depth, i)| (depth, spans[i].clone()))
            .collect()
    }
}

/// The answer Prometheus and Loki share: `{"status", "data": {"resultType",
/// "result"}}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct DataAnswer {
    #[serde(default)]
    pub data: Data,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Data {
    /// `streams`, `matrix`, `vector`, `scalar` or `string`.
    #[serde(rename = "resultType", default)]
    pub result_type: String,
    #[serde(default)]
    pub result: Results,
}

/// A list of series or streams, or one scalar (or string) point.
#[derive(Debug, Clone, PartialEq)]
pub enum Results {
    Series(Vec<Series>),
    Point(Point),
}

impl Default for Results {
    fn default() -> Results {
        Results::Series(Vec::new())
    }
}

impl<'de> Deserialize<'de> for Results {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Results, D::Error> {
        // Element by element, so only one series at a time is buffered.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Item {
            Series(Series),
            Seconds(f64),
            Text(String),
        }
        let items = Vec::<Item>::deserialize(deserializer)?;
        if let [Item::Seconds(seconds), Item::Text(text)] = items.as_slice() {
            return Ok(Results::Point(Point {
                nanos: seconds_or_nanos(*seconds),
                text: text.clone(),
            }));
        }
        items
            .into_iter()
            .map(|item| match item {
                Item::Series(series) => Ok(series),
                _ => Err(de::Error::custom(
                    "a result is a list of series or streams, or one [time, \"value\"] point",
                )),
            })
            .collect::<Result<Vec<Series>, D::Error>>()
            .map(Results::Series)
    }
}

/// One series (Prometheus, Loki's metric queries) or stream (Loki's log
/// queries): its labels and its points.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Series {
    /// `metric` for a series, `stream` for a log stream.
    #[serde(
        rename = "metric",
        alias = "stream",
        default,
        deserialize_with = "nullable"
    )]
    pub labels: BTreeMap<String, String>,
    /// A range's points, or a stream's lines.
    #[serde(default, deserialize_with = "nullable")]
    pub values: Vec<Point>,
    /// An instant vector's one point.
    #[serde(default)]
    pub value: Option<Point>,
}

/// `[time, "text"]`: the time a number of seconds (series) or a string of
/// nanoseconds (log lines); the text a sample's value or a log line. Loki
/// may add a third element (structured metadata), which is left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Point {
    /// Unix nanoseconds.
    pub nanos: i64,
    pub text: String,
}

impl<'de> Deserialize<'de> for Point {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Point, D::Error> {
        deserializer.deserialize_seq(PointVisitor)
    }
}

struct PointVisitor;

impl<'de> Visitor<'de> for PointVisitor {
    type Value = Point;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("[time, \"value\"], as Prometheus and Loki write a point")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Point, A::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Time {
            Seconds(f64),
            Nanos(String),
        }
        let time: Time = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let text: String = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        // Seconds as Prometheus writes them, nanoseconds as Loki writes a
        // line's time; a time past 10^12 can only be nanoseconds.
        let nanos = match time {
            Time::Seconds(s) => seconds_or_nanos(s),
            Time::Nanos(n) => match n.parse::<i64>() {
                Ok(n) if n.unsigned_abs() >= 1_000_000_000_000 => n,
                _ => seconds_or_nanos(n.parse().unwrap_or(0.0)),
            },
        };
        Ok(Point { nanos, text })
    }
}

fn seconds_or_nanos(time: f64) -> i64 {
    if time.abs() >= 1e12 {
        time as i64
    } else {
        (time * 1e9) as i64
    }
}

impl Point {
    /// The text as a number (Prometheus writes values as strings).
    pub fn number(&self) -> Option<f64> {
        self.text.parse().ok()
    }
}

impl DataAnswer {
    pub fn series(&self) -> &[Series] {
        match &self.data.result {
            Results::Series(list) => list,
            Results::Point(_) => &[],
        }
    }

    pub fn is_streams(&self) -> bool {
        self.data.result_type == "streams"
    }

    /// The first series' value at the instant asked (a vector), or its
    /// newest point (a matrix).
    pub fn first_value(&self) -> Option<f64> {
        match &self.data.result {
            Results::Point(point) => point.number(),
            Results::Series(list) => list.first()?.newest()?.number(),
        }
    }

    /// Every log line of a streams answer, with its stream's labels,
    /// in the answer's order.
    pub fn lines(&self) -> impl Iterator<Item = (&BTreeMap<String, String>, &Point)> {
        self.series()
            .iter()
            .filter(|_| self.is_streams())
            .flat_map(|s| s.values.iter().map(move |p| (&s.labels, p)))
    }

    /// The results a reader counts: log lines for streams, else series.
    pub fn count(&self) -> usize {
        match &self.data.result {
            Results::Point(_) => 1,
            Results::Series(_) if self.is_streams() => self.lines().count(),
            Results::Series(list) => list.len(),
        }
    }
}

impl Series {
    /// The instant's point, or the newest of a range.
    pub fn newest(&self) -> Option<&Point> {
        self.value.as_ref().or_else(|| self.values.last())
    }

    /// `{k="v", …}`.
    pub fn label_text(&self) -> String {
        let pairs: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        format!("{{{}}}", pairs.join(", "))
    }
}

pub use lab_profiles::{Flamebearer, FunctionCost};

/// The hottest functions of a profile (`GET /api/profiles/top`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ProfileTop {
    #[serde(default, deserialize_with = "lenient_i64")]
    pub total: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub functions: Vec<FunctionCost>,
}

/// A flame graph (`GET /pyroscope/render?format=json`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Render {
    pub flamebearer: Flamebearer,
    #[serde(default)]
    pub metadata: RenderMetadata,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RenderMetadata {
    #[serde(default)]
    pub units: String,
}

impl Render {
    /// The graph's top functions, as `/api/profiles/top` would answer.
    pub fn top(&self, limit: usize) -> ProfileTop {
        ProfileTop {
            total: self.flamebearer.num_ticks,
            functions: self.flamebearer.top(limit),
        }
    }
}

/// Every text an answer shows a reader, one per line: what a guide step's
/// `contains` searches, so a message matches however the API nests it.
pub trait Texts {
    fn texts(&self) -> String;
}

fn push(out: &mut String, text: &str) {
    out.push_str(text);
    out.push('\n');
}

impl Texts for TraceSearch {
    fn texts(&self) -> String {
        let mut out = String::new();
        for t in &self.traces {
            for text in [&t.trace_id, &t.root_service_name, &t.root_trace_name] {
                push(&mut out, text);
            }
            let grouped = t
                .span_sets
                .iter()
                .chain(&t.span_set)
                .flat_map(|set| &set.attributes);
            let mut attributes: Vec<&KeyValue> = grouped.collect();
            for span in t.matched_spans() {
                push(&mut out, &span.name);
                attributes.extend(&span.attributes);
            }
            for a in attributes {
                push(&mut out, &a.key);
                push(&mut out, &a.value.text());
            }
        }
        out
    }
}

impl Texts for DataAnswer {
    fn texts(&self) -> String {
        let mut out = String::new();
        for series in self.series() {
            for (k, v) in &series.labels {
                push(&mut out, k);
                push(&mut out, v);
            }
            for point in series.values.iter().chain(&series.value) {
                push(&mut out, &point.text);
            }
        }
        if let Results::Point(point) = &self.data.result {
            push(&mut out, &point.text);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_reads_the_same_from_tempos_v1_and_v2_answers() {
        let batch = r#"{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "mythical-server"}}]},
            "scopeSpans": [{"spans": [{"spanId": "AAECAwQFBgc=", "parentSpanId": "", "name": "GET", "kind": "SPAN_KIND_SERVER",
               "startTimeUnixNano": "1000", "endTimeUnixNano": 3000,
               "attributes": [{"key": "http.status_code", "value": {"intValue": "500"}}],
               "status": {"code": 2, "message": "boom"}}]}]}"#;
        let v2: TraceAnswer =
            serde_json::from_str(&format!(r#"{{"trace": {{"resourceSpans": [{batch}]}}}}"#))
                .unwrap();
        let v1: TraceAnswer =
            serde_json::from_str(&format!(r#"{{"batches": [{batch}]}}"#)).unwrap();
        assert_eq!(v1.spans(), v2.spans());
        let span = &v2.spans()[0];
        assert_eq!(span.id, "0001020304050607");
        assert_eq!(span.service, "mythical-server");
        assert!(span.server);
        assert_eq!((span.start, span.end), (1000, 3000));
        assert_eq!(span.error.as_deref(), Some("boom"));
        assert_eq!(span.attribute("http.status_code"), Some("500"));
    }

    #[test]
    fn prometheus_and_loki_answers_read_into_one_shape() {
        let vector: DataAnswer = serde_json::from_str(
            r#"{"status": "success", "data": {"resultType": "vector",
                "result": [{"metric": {"beast": "owlbear"}, "value": [1700000000.5, "0.25"]}]}}"#,
        )
        .unwrap();
        assert_eq!(vector.first_value(), Some(0.25));
        assert_eq!(vector.series()[0].labels["beast"], "owlbear");
        assert_eq!(
            vector.series()[0].newest().unwrap().nanos,
            1_700_000_000_500_000_000
        );
        let streams: DataAnswer = serde_json::from_str(
            r#"{"status": "success", "data": {"resultType": "streams", "stats": {},
                "result": [{"stream": {"service_name": "mythical-server"},
                            "values": [["1700000000000000001", "a line", {"trace_id": "x"}]]}]}}"#,
        )
        .unwrap();
        let lines: Vec<_> = streams.lines().collect();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].0["service_name"], "mythical-server");
        assert_eq!(lines[0].1.nanos, 1_700_000_000_000_000_001);
        assert_eq!(lines[0].1.text, "a line");
        let scalar: DataAnswer = serde_json::from_str(
            r#"{"status": "success", "data": {"resultType": "scalar", "result": [1.0, "7"]}}"#,
        )
        .unwrap();
        assert_eq!(scalar.first_value(), Some(7.0));
    }

    #[test]
    fn an_answer_of_the_wrong_shape_is_an_error_not_an_empty_result() {
        assert!(serde_json::from_str::<DataAnswer>(r#"{"data": {"result": "nope"}}"#).is_err());
        assert!(serde_json::from_str::<TraceSearch>(r#"{"traces": {"a": 1}}"#).is_err());
        let deep = "[".repeat(10_000);
        assert!(serde_json::from_str::<TraceSearch>(&deep).is_err());
    }

    #[test]
    fn tempo_search_numbers_come_as_strings_or_numbers() {
        let found: TraceSearch = serde_json::from_str(
            r#"{"traces": [{"traceID": "ab", "rootServiceName": "mythical-requester",
                "startTimeUnixNano": "1700000000000000000", "durationMs": 12,
                "spanSet": {"matched": 1, "spans": [{"spanID": "cd", "durationNanos": "2500000",
                    "attributes": [{"key": "db.sql.table", "value": {"stringValue": "owlbear"}}]}]}}]}"#,
        )
        .unwrap();
        let trace = &found.traces[0];
        assert_eq!(trace.start_time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(trace.matched(), 1);
        let span = trace.matched_spans().next().unwrap();
        assert_eq!(span.duration_ms(), 2.5);
        assert_eq!(span.attribute("db.sql.table").as_deref(), Some("owlbear"));
        assert!(found.texts().contains("owlbear"));
    }

    #[test]
    fn base64_ids_read_as_hex() {
        assert_eq!(id_hex("AAECAwQFBgc="), "0001020304050607");
        assert_eq!(id_hex("00F067AA0BA902B7"), "00f067aa0ba902b7");
        assert_eq!(id_hex("not an id!"), "not an id!");
    }

    #[test]
    fn attribute_values_read_as_text() {
        let value: AnyValue = serde_json::from_str(
            r#"{"arrayValue": {"values": [{"intValue": 1}, {"stringValue": "a"}]}}"#,
        )
        .unwrap();
        assert_eq!(value.text(), "[1, a]");
        for (json, text) in [
            (r#"{"boolValue": true}"#, "true"),
            (r#"{"intValue": "500"}"#, "500"),
            (r#"{"stringValue": "owlbear"}"#, "owlbear"),
            (r#"{"doubleValue": 0.5}"#, "0.5"),
        ] {
            assert_eq!(serde_json::from_str::<AnyValue>(json).unwrap().text(), text);
        }
    }
}
