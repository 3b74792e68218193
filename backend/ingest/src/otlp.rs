//! OTLP in: decoding (protobuf or JSON) and mapping to spans, Loki-style
//! labelled log lines, and Prometheus-named samples.

use std::sync::Arc;

use lab_signals::{
    AttrValue, Attributes, Exemplar, Labels, LogEntry, MetricMetadata, MetricType, Name, Resource,
    Sample, Span, SpanEvent, SpanId, SpanKind, SpanLink, StatusCode, TraceId,
};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, metric::Data, number_data_point,
};
use prost::Message;

use crate::{MetricBatch, sanitize_name};

/// OTLP/HTTP's two encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// `application/json` is JSON; anything else is read as protobuf, the
    /// OTLP/HTTP default.
    pub fn from_content_type(content_type: &str) -> Encoding {
        if content_type.trim_start().starts_with("application/json") {
            Encoding::Json
        } else {
            Encoding::Protobuf
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the body is not an OTLP protobuf message: {0}")]
    Protobuf(String),
    #[error("the body is not OTLP JSON: {0}")]
    Json(String),
}

fn decode<T: Message + Default + serde::de::DeserializeOwned>(
    body: &[u8],
    encoding: Encoding,
) -> Result<T, DecodeError> {
    match encoding {
        Encoding::Protobuf => T::decode(body).map_err(|e| DecodeError::Protobuf(e.to_string())),
        Encoding::Json => {
            serde_json::from_slice(body).map_err(|e| DecodeError::Json(e.to_string()))
        }
    }
}

pub fn decode_traces(
    body: &[u8],
    encoding: Encoding,
) -> Result<ExportTraceServiceRequest, DecodeError> {
    decode(body, encoding)
}

pub fn decode_logs(
    body: &[u8],
    encoding: Encoding,
) -> Result<ExportLogsServiceRequest, DecodeError> {
    decode(body, encoding)
}

pub fn decode_metrics(
    body: &[u8],
    encoding: Encoding,
) -> Result<ExportMetricsServiceRequest, DecodeError> {
    decode(body, encoding)
}

/// An attribute value as the data model keeps it; arrays, maps and bytes
/// as JSON text.
fn attr_value(value: Option<&AnyValue>) -> AttrValue {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => AttrValue::Str(s.clone()),
        Some(any_value::Value::BoolValue(b)) => AttrValue::Bool(*b),
        Some(any_value::Value::IntValue(i)) => AttrValue::Int(*i),
        Some(any_value::Value::DoubleValue(d)) => AttrValue::Float(*d),
        Some(other) => AttrValue::Str(json_text(other)),
        None => AttrValue::Str(String::new()),
    }
}

fn json_value(value: &any_value::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        any_value::Value::StringValue(s) => J::String(s.clone()),
        any_value::Value::BoolValue(b) => J::Bool(*b),
        any_value::Value::IntValue(i) => J::from(*i),
        any_value::Value::DoubleValue(d) => J::from(*d),
        any_value::Value::ArrayValue(a) => J::Array(
            a.values
                .iter()
                .map(|v| v.value.as_ref().map_or(J::Null, json_value))
                .collect(),
        ),
        any_value::Value::KvlistValue(kv) => J::Object(
            kv.values
                .iter()
                .map(|kv| {
                    let v = kv
                        .value
                        .as_ref()
                        .and_then(|v| v.value.as_ref())
                        .map_or(J::Null, json_value);
                    (kv.key.clone(), v)
                })
                .collect(),
        ),
        any_value::Value::BytesValue(b) => {
            J::String(b.iter().map(|x| format!("{x:02x}")).collect())
        }
        _ => J::Null,
    }
}

fn json_text(value: &any_value::Value) -> String {
    json_value(value).to_string()
}

fn attributes(kvs: &[KeyValue]) -> Attributes {
    Attributes(
        kvs.iter()
            .map(|kv| (Name::new(&kv.key), attr_value(kv.value.as_ref())))
            .collect(),
    )
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(other) => json_value(other).to_string(),
        None => String::new(),
    }
}

fn kind(kind: i32) -> SpanKind {
    match kind {
        1 => SpanKind::Internal,
        2 => SpanKind::Server,
        3 => SpanKind::Client,
        4 => SpanKind::Producer,
        5 => SpanKind::Consumer,
        _ => SpanKind::Unspecified,
    }
}

/// The spans of an export. A span whose trace or span id has the wrong
/// length is left out (it could never be found again).
pub fn spans(request: &ExportTraceServiceRequest) -> Vec<Span> {
    let mut out = Vec::new();
    for rs in &request.resource_spans {
        let resource_attributes = rs
            .resource
            .as_ref()
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        for ss in &rs.scope_spans {
            let resource = Arc::new(Resource {
                attributes: resource_attributes.clone(),
                scope_name: ss
                    .scope
                    .as_ref()
                    .map(|s| s.name.clone())
                    .unwrap_or_default(),
                scope_version: ss
                    .scope
                    .as_ref()
                    .map(|s| s.version.clone())
                    .unwrap_or_default(),
            });
            for span in &ss.spans {
                let (Some(trace_id), Some(span_id)) = (
                    TraceId::from_slice(&span.trace_id),
                    SpanId::from_slice(&span.span_id),
                ) else {
                    continue;
                };
                let status = span.status.as_ref();
                out.push(Span {
                    trace_id,
                    span_id,
                    parent_span_id: SpanId::from_slice(&span.parent_span_id)
                        .filter(|p| p.0 != [0; 8]),
                    name: span.name.clone(),
                    kind: kind(span.kind),
                    status: match status.map(|s| s.code) {
                        Some(1) => StatusCode::Ok,
                        Some(2) => StatusCode::Error,
                        _ => StatusCode::Unset,
                    },
                    status_message: status.map(|s| s.message.clone()).unwrap_or_default(),
                    start: span.start_time_unix_nano as i64,
                    end: span.end_time_unix_nano as i64,
                    attributes: attributes(&span.attributes),
                    events: span
                        .events
                        .iter()
                        .map(|e| SpanEvent {
                            time: e.time_unix_nano as i64,
                            name: e.name.clone(),
                            attributes: attributes(&e.attributes),
                        })
                        .collect(),
                    links: span
                        .links
                        .iter()
                        .filter_map(|l| {
                            Some(SpanLink {
                                trace_id: TraceId::from_slice(&l.trace_id)?,
                                span_id: SpanId::from_slice(&l.span_id)?,
                                attributes: attributes(&l.attributes),
                            })
                        })
                        .collect(),
                    resource: resource.clone(),
                });
            }
        }
    }
    out
}

/// Which OTLP attributes become Loki stream labels; the rest become
/// structured metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelPolicy {
    pub resource_attributes: Vec<String>,
    pub log_attributes: Vec<String>,
}

impl Default for LabelPolicy {
    /// Loki's default resource attributes for index labels, and the lab's
    /// `job`, `namespace`, `beast` and `level` log attributes (which the
    /// lab's Alloy configuration promotes too, as intro-to-mltp labels its
    /// log streams with them).
    fn default() -> Self {
        let resource = [
            "cloud.availability_zone",
            "cloud.region",
            "container.name",
            "deployment.environment",
            "deployment.environment.name",
            "k8s.cluster.name",
            "k8s.container.name",
            "k8s.cronjob.name",
            "k8s.daemonset.name",
            "k8s.deployment.name",
            "k8s.job.name",
            "k8s.namespace.name",
            "k8s.pod.name",
            "k8s.replicaset.name",
            "k8s.statefulset.name",
            "service.instance.id",
            "service.name",
            "service.namespace",
        ];
        LabelPolicy {
            resource_attributes: resource.iter().map(|s| s.to_string()).collect(),
            log_attributes: ["job", "namespace", "beast", "level"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Log records as Loki stores OTLP logs: promoted attributes as stream
/// labels (dots become underscores), the rest, the trace and span ids and
/// the severity as structured metadata, the body as the line.
pub fn log_entries(
    request: &ExportLogsServiceRequest,
    policy: &LabelPolicy,
) -> Vec<(Labels, LogEntry)> {
    let mut out = Vec::new();
    for rl in &request.resource_logs {
        let mut resource_labels = Vec::new();
        let mut resource_metadata = Vec::new();
        for kv in rl.resource.iter().flat_map(|r| &r.attributes) {
            let pair = (
                sanitize_name(&kv.key),
                attr_value(kv.value.as_ref()).to_text(),
            );
            if policy.resource_attributes.iter().any(|k| k == &kv.key) {
                resource_labels.push(pair);
            } else {
                resource_metadata.push(pair);
            }
        }
        if !resource_labels.iter().any(|(k, _)| k == "service_name") {
            resource_labels.push(("service_name".into(), "unknown_service".into()));
        }
        for sl in &rl.scope_logs {
            let scope = sl
                .scope
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default();
            for record in &sl.log_records {
                let mut labels = resource_labels.clone();
                let mut metadata = resource_metadata.clone();
                for kv in &record.attributes {
                    let pair = (
                        sanitize_name(&kv.key),
                        attr_value(kv.value.as_ref()).to_text(),
                    );
                    if policy.log_attributes.iter().any(|k| k == &kv.key) {
                        labels.push(pair);
                    } else {
                        metadata.push(pair);
                    }
                }
                if !record.trace_id.is_empty() {
                    metadata.push(("trace_id".into(), hex(&record.trace_id)));
                }
                if !record.span_id.is_empty() {
                    metadata.push(("span_id".into(), hex(&record.span_id)));
                }
                if !record.severity_text.is_empty() {
                    metadata.push(("severity_text".into(), record.severity_text.clone()));
                    metadata.push((
                        "detected_level".into(),
                        record.severity_text.to_ascii_lowercase(),
                    ));
                }
                if record.severity_number != 0 {
                    metadata.push(("severity_number".into(), record.severity_number.to_string()));
                }
                if !scope.is_empty() {
                    metadata.push(("scope_name".into(), scope.clone()));
                }
                let ts = if record.time_unix_nano != 0 {
                    record.time_unix_nano
                } else {
                    record.observed_time_unix_nano
                };
                out.push((
                    Labels::new(labels),
                    LogEntry {
                        ts: ts as i64,
                        line: text(record.body.as_ref()),
                        metadata: Labels::new(metadata),
                    },
                ));
            }
        }
    }
    out
}

/// The UCUM unit as Prometheus' OTLP translation names it; `None` when the
/// unit adds no suffix (`1`, annotations in braces, none).
fn unit_suffix(unit: &str) -> Option<String> {
    let unit = unit.trim();
    if unit.is_empty() || unit == "1" || (unit.starts_with('{') && unit.ends_with('}')) {
        return None;
    }
    let word = |u: &str| -> String {
        match u {
            "d" => "days",
            "h" => "hours",
            "min" => "minutes",
            "s" => "seconds",
            "ms" => "milliseconds",
            "us" => "microseconds",
            "ns" => "nanoseconds",
            "By" => "bytes",
            "KiBy" => "kibibytes",
            "MiBy" => "mebibytes",
            "GiBy" => "gibibytes",
            "KBy" => "kilobytes",
            "MBy" => "megabytes",
            "GBy" => "gigabytes",
            "m" => "meters",
            "V" => "volts",
            "A" => "amperes",
            "J" => "joules",
            "W" => "watts",
            "g" => "grams",
            "Cel" => "celsius",
            "Hz" => "hertz",
            "%" => "percent",
            other => return sanitize_name(other),
        }
        .to_owned()
    };
    Some(match unit.split_once('/') {
        Some((per, of)) => format!("{}_per_{}", word(per), word(of).trim_end_matches('s')),
        None => word(unit),
    })
}

fn metric_name(name: &str, unit: &str, counter: bool) -> String {
    let mut out = sanitize_name(name);
    if let Some(suffix) = unit_suffix(unit)
        && !out.ends_with(&suffix)
    {
        out = format!("{out}_{suffix}");
    }
    if counter && !out.ends_with("_total") {
        out.push_str("_total");
    }
    out
}

/// OTLP metrics with the names and labels Prometheus' OTLP receiver gives
/// them. Only cumulative data is kept: delta points cannot be added to a
/// Prometheus series without state, and the lab's services export
/// cumulative.
pub fn metric_points(request: &ExportMetricsServiceRequest) -> MetricBatch {
    let mut batch = MetricBatch::default();
    let cumulative = AggregationTemporality::Cumulative as i32;
    for rm in &request.resource_metrics {
        let resource = rm
            .resource
            .as_ref()
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        let service = resource.get("service.name").map(AttrValue::to_text);
        let namespace = resource.get("service.namespace").map(AttrValue::to_text);
        let mut target = Vec::new();
        if let Some(service) = &service {
            let job = match &namespace {
                Some(ns) => format!("{ns}/{service}"),
                None => service.clone(),
            };
            target.push(("job".to_owned(), job));
        }
        if let Some(instance) = resource.get("service.instance.id") {
            target.push(("instance".to_owned(), instance.to_text()));
        }
        let mut info = target.clone();
        info.push(("__name__".into(), "target_info".into()));
        for (k, v) in resource.iter() {
            if !matches!(
                k,
                "service.name" | "service.namespace" | "service.instance.id"
            ) {
                info.push((sanitize_name(k), v.to_text()));
            }
        }
        let mut info_time = 0i64;
        for sm in &rm.scope_metrics {
            for metric in &sm.metrics {
                let labels_for = |attrs: &[KeyValue], name: &str, extra: Option<(&str, String)>| {
                    let mut pairs = target.clone();
                    pairs.extend(attrs.iter().map(|kv| {
                        (
                            sanitize_name(&kv.key),
                            attr_value(kv.value.as_ref()).to_text(),
                        )
                    }));
                    if let Some((k, v)) = extra {
                        pairs.push((k.to_owned(), v));
                    }
                    pairs.push(("__name__".to_owned(), name.to_owned()));
                    Labels::new(pairs)
                };
                let meta = |metric_type| MetricMetadata {
                    metric_type,
                    help: metric.description.clone(),
                    unit: metric.unit.clone(),
                };
                match &metric.data {
                    Some(Data::Gauge(gauge)) => {
                        let name = metric_name(&metric.name, &metric.unit, false);
                        batch.metadata.push((name.clone(), meta(MetricType::Gauge)));
                        for point in &gauge.data_points {
                            let t = (point.time_unix_nano / 1_000_000) as i64;
                            info_time = info_time.max(t);
                            batch.points.push((
                                labels_for(&point.attributes, &name, None),
                                Sample {
                                    t,
                                    v: number(&point.value),
                                },
                            ));
                        }
                    }
                    Some(Data::Sum(sum)) if sum.aggregation_temporality == cumulative => {
                        let name = metric_name(&metric.name, &metric.unit, sum.is_monotonic);
                        let metric_type = if sum.is_monotonic {
                            MetricType::Counter
                        } else {
                            MetricType::Gauge
                        };
                        batch.metadata.push((name.clone(), meta(metric_type)));
                        for point in &sum.data_points {
                            let t = (point.time_unix_nano / 1_000_000) as i64;
                            info_time = info_time.max(t);
                            let labels = labels_for(&point.attributes, &name, None);
                            for exemplar in &point.exemplars {
                                batch
                                    .exemplars
                                    .push((labels.clone(), to_exemplar(exemplar)));
                            }
                            batch.points.push((
                                labels,
                                Sample {
                                    t,
                                    v: number(&point.value),
                                },
                            ));
                        }
                    }
                    Some(Data::Histogram(histogram))
                        if histogram.aggregation_temporality == cumulative =>
                    {
                        let base = metric_name(&metric.name, &metric.unit, false);
                        batch
                            .metadata
                            .push((base.clone(), meta(MetricType::Histogram)));
                        for point in &histogram.data_points {
                            let t = (point.time_unix_nano / 1_000_000) as i64;
                            info_time = info_time.max(t);
                            let mut cumulative_count = 0u64;
                            let bucket_name = format!("{base}_bucket");
                            for (i, count) in point.bucket_counts.iter().enumerate() {
                                cumulative_count += count;
                                let le = point
                                    .explicit_bounds
                                    .get(i)
                                    .map_or_else(|| "+Inf".to_owned(), |b| format_float(*b));
                                let labels =
                                    labels_for(&point.attributes, &bucket_name, Some(("le", le)));
                                // An exemplar belongs to the bucket its value falls in.
                                let upper = point
                                    .explicit_bounds
                                    .get(i)
                                    .copied()
                                    .unwrap_or(f64::INFINITY);
                                let lower = if i == 0 {
                                    f64::NEG_INFINITY
                                } else {
                                    point.explicit_bounds[i - 1]
                                };
                                for exemplar in &point.exemplars {
                                    let value = exemplar_value(exemplar);
                                    if value > lower && value <= upper {
                                        batch
                                            .exemplars
                                            .push((labels.clone(), to_exemplar(exemplar)));
                                    }
                                }
                                batch.points.push((
                                    labels,
                                    Sample {
                                        t,
                                        v: cumulative_count as f64,
                                    },
                                ));
                            }
                            if let Some(sum) = point.sum {
                                batch.points.push((
                                    labels_for(&point.attributes, &format!("{base}_sum"), None),
                                    Sample { t, v: sum },
                                ));
                            }
                            batch.points.push((
                                labels_for(&point.attributes, &format!("{base}_count"), None),
                                Sample {
                                    t,
                                    v: point.count as f64,
                                },
                            ));
                        }
                    }
                    Some(Data::Summary(summary)) => {
                        let base = metric_name(&metric.name, &metric.unit, false);
                        batch
                            .metadata
                            .push((base.clone(), meta(MetricType::Summary)));
                        for point in &summary.data_points {
                            let t = (point.time_unix_nano / 1_000_000) as i64;
                            info_time = info_time.max(t);
                            for q in &point.quantile_values {
                                batch.points.push((
                                    labels_for(
                                        &point.attributes,
                                        &base,
                                        Some(("quantile", format_float(q.quantile))),
                                    ),
                                    Sample { t, v: q.value },
                                ));
                            }
                            batch.points.push((
                                labels_for(&point.attributes, &format!("{base}_sum"), None),
                                Sample { t, v: point.sum },
                            ));
                            batch.points.push((
                                labels_for(&point.attributes, &format!("{base}_count"), None),
                                Sample {
                                    t,
                                    v: point.count as f64,
                                },
                            ));
                        }
                    }
                    _ => {}
                }
            }
        }
        if info_time > 0 && info.len() > target.len() + 1 {
            batch.points.push((
                Labels::new(info),
                Sample {
                    t: info_time,
                    v: 1.0,
                },
            ));
        }
    }
    batch
}

fn number(value: &Option<number_data_point::Value>) -> f64 {
    match value {
        Some(number_data_point::Value::AsDouble(d)) => *d,
        Some(number_data_point::Value::AsInt(i)) => *i as f64,
        None => f64::NAN,
    }
}

fn exemplar_value(exemplar: &opentelemetry_proto::tonic::metrics::v1::Exemplar) -> f64 {
    use opentelemetry_proto::tonic::metrics::v1::exemplar::Value;
    match exemplar.value {
        Some(Value::AsDouble(d)) => d,
        Some(Value::AsInt(i)) => i as f64,
        None => f64::NAN,
    }
}

fn to_exemplar(exemplar: &opentelemetry_proto::tonic::metrics::v1::Exemplar) -> Exemplar {
    let mut labels: Vec<(String, String)> = exemplar
        .filtered_attributes
        .iter()
        .map(|kv| {
            (
                sanitize_name(&kv.key),
                attr_value(kv.value.as_ref()).to_text(),
            )
        })
        .collect();
    if !exemplar.trace_id.is_empty() {
        labels.push(("trace_id".into(), hex(&exemplar.trace_id)));
    }
    if !exemplar.span_id.is_empty() {
        labels.push(("span_id".into(), hex(&exemplar.span_id)));
    }
    Exemplar {
        labels: Labels::new(labels),
        value: exemplar_value(exemplar),
        t: (exemplar.time_unix_nano / 1_000_000) as i64,
    }
}

/// A bucket bound as Prometheus writes `le`: `10`, `0.5`, `+Inf`.
fn format_float(value: f64) -> String {
    if value.is_infinite() {
        return if value > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    format!("{value}")
}
