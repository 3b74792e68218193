//! The JSON Tempo answers with: `GET /api/search` (hex ids, Tempo's own
//! search shape) and `GET /api/traces/<id>`, `GET /api/v2/traces/<id>`
//! (OTLP JSON as Tempo's protobuf JSON marshaller writes it).

use lab_signals::{AttrValue, Attributes, Resource, Span, StatusCode, Trace};
use serde_json::{Map, Value, json};

use crate::eval::{MatchedSpan, MatchedSpanset, TraceMatch};

/// An OTLP `AnyValue`: 64-bit ints are strings, as protobuf's JSON mapping
/// writes them (Grafana parses both).
pub(crate) fn otlp_value(value: &AttrValue) -> Value {
    match value {
        AttrValue::Str(s) => json!({ "stringValue": s }),
        AttrValue::Int(i) => json!({ "intValue": i.to_string() }),
        AttrValue::Float(f) => json!({ "doubleValue": f }),
        AttrValue::Bool(b) => json!({ "boolValue": b }),
    }
}

fn key_values<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a AttrValue)>) -> Value {
    pairs
        .into_iter()
        .map(|(k, v)| json!({ "key": k, "value": otlp_value(v) }))
        .collect()
}

fn span_json(span: &MatchedSpan) -> Value {
    json!({
        "spanID": span.span_id.to_string(),
        "name": span.name,
        "startTimeUnixNano": span.start.to_string(),
        "durationNanos": span.duration_nanos.to_string(),
        "attributes": key_values(span.attributes.iter().map(|(k, v)| (k.as_str(), v))),
    })
}

fn spanset_json(spanset: &MatchedSpanset) -> Value {
    let mut out = json!({
        "spans": spanset.spans.iter().map(span_json).collect::<Vec<_>>(),
        "matched": spanset.matched,
    });
    if !spanset.attributes.is_empty() {
        out["attributes"] = key_values(spanset.attributes.iter().map(|(k, v)| (k.as_str(), v)));
    }
    out
}

/// Tempo's `GET /api/search` answer. `inspected_traces` is what
/// [`SearchResult::inspected_traces`](crate::SearchResult) counted.
pub fn search_response(matches: &[TraceMatch], inspected_traces: u64) -> Value {
    let traces: Vec<Value> = matches
        .iter()
        .map(|m| {
            let spansets: Vec<Value> = m.spansets.iter().map(spanset_json).collect();
            let mut trace = json!({
                "traceID": m.trace_id.to_string(),
                "rootServiceName": m.root_service_name,
                "rootTraceName": m.root_trace_name,
                "startTimeUnixNano": m.start.to_string(),
                "durationMs": m.duration_ms,
            });
            // `spanSet` is deprecated in Tempo but older Grafana reads only it.
            if let Some(first) = spansets.first() {
                trace["spanSet"] = first.clone();
            }
            trace["spanSets"] = Value::Array(spansets);
            trace
        })
        .collect();
    json!({
        "traces": traces,
        "metrics": {
            "inspectedTraces": inspected_traces,
            "inspectedBytes": "0",
            "completedJobs": 1,
            "totalJobs": 1,
        },
    })
}

/// Standard base64 with padding: Tempo's JSON carries OTLP's byte ids so
/// (see grafana/tempo#5437), unlike the OTLP/JSON spec's hex.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn attributes_json(attributes: &Attributes) -> Value {
    key_values(attributes.iter())
}

fn otlp_span(span: &Span) -> Value {
    let mut out = Map::new();
    out.insert("traceId".into(), base64(&span.trace_id.0).into());
    out.insert("spanId".into(), base64(&span.span_id.0).into());
    if let Some(parent) = span.parent_span_id {
        out.insert("parentSpanId".into(), base64(&parent.0).into());
    }
    out.insert("name".into(), span.name.clone().into());
    out.insert("kind".into(), span.kind.otlp_name().into());
    out.insert("startTimeUnixNano".into(), span.start.to_string().into());
    out.insert("endTimeUnixNano".into(), span.end.to_string().into());
    out.insert("attributes".into(), attributes_json(&span.attributes));
    if !span.events.is_empty() {
        let events: Vec<Value> = span
            .events
            .iter()
            .map(|e| {
                json!({
                    "timeUnixNano": e.time.to_string(),
                    "name": e.name,
                    "attributes": attributes_json(&e.attributes),
                })
            })
            .collect();
        out.insert("events".into(), events.into());
    }
    if !span.links.is_empty() {
        let links: Vec<Value> = span
            .links
            .iter()
            .map(|l| {
                json!({
                    "traceId": base64(&l.trace_id.0),
                    "spanId": base64(&l.span_id.0),
                    "attributes": attributes_json(&l.attributes),
                })
            })
            .collect();
        out.insert("links".into(), links.into());
    }
    // Protobuf's JSON leaves zero values out: an unset status is `{}`.
    let mut status = Map::new();
    if !span.status_message.is_empty() {
        status.insert("message".into(), span.status_message.clone().into());
    }
    match span.status {
        StatusCode::Unset => {}
        StatusCode::Ok => {
            status.insert("code".into(), "STATUS_CODE_OK".into());
        }
        StatusCode::Error => {
            status.insert("code".into(), "STATUS_CODE_ERROR".into());
        }
    }
    out.insert("status".into(), status.into());
    Value::Object(out)
}

/// OTLP `ResourceSpans`: the trace's spans grouped by resource, then by
/// instrumentation scope, each group in the order it first appears.
fn resource_spans(trace: &Trace) -> Vec<Value> {
    type ScopeGroup<'a> = (&'a str, &'a str, Vec<&'a Span>);
    let mut groups: Vec<(&Resource, Vec<ScopeGroup>)> = Vec::new();
    for span in &trace.spans {
        let resource: &Resource = &span.resource;
        let at = match groups
            .iter()
            .position(|(r, _)| r.attributes == resource.attributes)
        {
            Some(at) => at,
            None => {
                groups.push((resource, Vec::new()));
                groups.len() - 1
            }
        };
        let scopes = &mut groups[at].1;
        let (name, version) = (
            resource.scope_name.as_str(),
            resource.scope_version.as_str(),
        );
        match scopes
            .iter_mut()
            .find(|(n, v, _)| *n == name && *v == version)
        {
            Some((_, _, spans)) => spans.push(span),
            None => scopes.push((name, version, vec![span])),
        }
    }
    groups
        .into_iter()
        .map(|(resource, scopes)| {
            let scope_spans: Vec<Value> = scopes
                .into_iter()
                .map(|(name, version, spans)| {
                    json!({
                        "scope": { "name": name, "version": version },
                        "spans": spans.into_iter().map(otlp_span).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({
                "resource": { "attributes": attributes_json(&resource.attributes) },
                "scopeSpans": scope_spans,
            })
        })
        .collect()
}

/// `GET /api/traces/<id>`: `{"batches": [ResourceSpans…]}`.
pub fn trace_json_v1(trace: &Trace) -> Value {
    json!({ "batches": resource_spans(trace) })
}

/// `GET /api/v2/traces/<id>`: `{"trace": {"resourceSpans": […]}}`.
pub fn trace_json_v2(trace: &Trace) -> Value {
    json!({ "trace": { "resourceSpans": resource_spans(trace) } })
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0xff; 8]), "//////////8=");
    }
}
