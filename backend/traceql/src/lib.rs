//! TraceQL for the embedded backend: a parser, an evaluator over any
//! [`TraceSource`](lab_signals::TraceSource), and the JSON of Tempo's
//! search and tag endpoints, so Grafana's Tempo datasource and the lab's
//! own client read the answers as they read Tempo's.

mod eval;
mod lex;
mod parse;

use std::collections::{BTreeMap, BTreeSet};

use lab_signals::{AttrValue, TraceSource, UnixNanos};
use serde_json::{Value, json};

pub use eval::{MatchedSpan, TraceMatch};
pub use parse::{Field, Query, Scope};

/// A query that does not parse, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parse error at line {line}, col {column}: {message}")]
pub struct ParseError {
    pub offset: usize,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl ParseError {
    pub(crate) fn at(text: &str, offset: usize, message: String) -> ParseError {
        let before = &text[..offset.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ParseError {
            offset,
            line,
            column,
            message,
        }
    }
}

/// Parses a TraceQL query.
pub fn parse(query: &str) -> Result<Query, ParseError> {
    parse::parse(query)
}

fn otlp_value(value: &AttrValue) -> Value {
    match value {
        AttrValue::Str(s) => json!({ "stringValue": s }),
        AttrValue::Int(i) => json!({ "intValue": i.to_string() }),
        AttrValue::Float(f) => json!({ "doubleValue": f }),
        AttrValue::Bool(b) => json!({ "boolValue": b }),
    }
}

/// Tempo's `GET /api/search` answer.
pub fn search_response(matches: &[TraceMatch], inspected_traces: u64) -> Value {
    let traces: Vec<Value> = matches
        .iter()
        .map(|m| {
            let spans: Vec<Value> = m
                .spans
                .iter()
                .map(|s| {
                    let mut attributes: Vec<Value> = s
                        .attributes
                        .iter()
                        .map(|(k, v)| json!({ "key": k, "value": otlp_value(v) }))
                        .collect();
                    attributes.push(json!({ "key": "service.name", "value": { "stringValue": s.service_name } }));
                    json!({
                        "spanID": s.span_id,
                        "name": s.name,
                        "startTimeUnixNano": s.start.to_string(),
                        "durationNanos": s.duration_nanos.to_string(),
                        "attributes": attributes,
                    })
                })
                .collect();
            let spanset = json!({ "spans": spans, "matched": m.matched });
            json!({
                "traceID": m.trace_id,
                "rootServiceName": m.root_service_name,
                "rootTraceName": m.root_trace_name,
                "startTimeUnixNano": m.start.to_string(),
                "durationMs": m.duration_ms,
                "spanSet": spanset,
                "spanSets": [spanset],
            })
        })
        .collect();
    json!({
        "traces": traces,
        "metrics": { "inspectedTraces": inspected_traces, "inspectedBytes": "0", "completedJobs": 1, "totalJobs": 1 },
    })
}

/// Attribute names by scope over the traces in the window.
fn tag_names(
    source: &(impl TraceSource + ?Sized),
    start: UnixNanos,
    end: UnixNanos,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut span, mut resource) = (BTreeSet::new(), BTreeSet::new());
    source.for_each_trace(start, end, &mut |trace| {
        for s in &trace.spans {
            span.extend(s.attributes.iter().map(|(k, _)| k.to_owned()));
            resource.extend(s.resource.attributes.iter().map(|(k, _)| k.to_owned()));
        }
    });
    (span, resource)
}

const INTRINSICS: [&str; 8] = [
    "duration",
    "kind",
    "name",
    "rootName",
    "rootServiceName",
    "status",
    "statusMessage",
    "traceDuration",
];

/// `GET /api/search/tags`: every attribute name.
pub fn tags_v1(source: &(impl TraceSource + ?Sized), start: UnixNanos, end: UnixNanos) -> Value {
    let (span, resource) = tag_names(source, start, end);
    let all: BTreeSet<String> = span.into_iter().chain(resource).collect();
    json!({ "tagNames": all })
}

/// `GET /api/v2/search/tags`: names by scope (`span`, `resource`,
/// `intrinsic`), optionally only one scope.
pub fn tags_v2(
    source: &(impl TraceSource + ?Sized),
    start: UnixNanos,
    end: UnixNanos,
    scope: Option<&str>,
) -> Value {
    let (span, resource) = tag_names(source, start, end);
    let mut scopes = Vec::new();
    if scope.is_none_or(|s| s == "span") {
        scopes.push(json!({ "name": "span", "tags": span }));
    }
    if scope.is_none_or(|s| s == "resource") {
        scopes.push(json!({ "name": "resource", "tags": resource }));
    }
    if scope.is_none_or(|s| s == "intrinsic") {
        scopes.push(json!({ "name": "intrinsic", "tags": INTRINSICS }));
    }
    json!({ "scopes": scopes })
}

/// The values a tag takes, typed: `tag` is scoped (`resource.service.name`,
/// `span.http.method`, `.x`), bare (`service.name`, looked up on spans and
/// resources) or an intrinsic (`name`, `status`, `kind`).
fn tag_values(
    source: &(impl TraceSource + ?Sized),
    tag: &str,
    start: UnixNanos,
    end: UnixNanos,
) -> BTreeMap<String, &'static str> {
    let (scope, name) = match tag.split_once('.') {
        Some(("span", rest)) => (Some(Scope::Span), rest),
        Some(("resource", rest)) => (Some(Scope::Resource), rest),
        Some(("", rest)) => (None, rest),
        _ => (None, tag),
    };
    let mut values = BTreeMap::new();
    source.for_each_trace(start, end, &mut |trace| {
        for span in &trace.spans {
            match tag {
                "name" => {
                    values.insert(span.name.clone(), "string");
                    continue;
                }
                "status" => {
                    values.insert(format!("{:?}", span.status).to_lowercase(), "keyword");
                    continue;
                }
                "kind" => {
                    values.insert(format!("{:?}", span.kind).to_lowercase(), "keyword");
                    continue;
                }
                _ => {}
            }
            let found = match scope {
                Some(Scope::Span) => span.attributes.get(name),
                Some(Scope::Resource) => span.resource.attributes.get(name),
                _ => span
                    .attributes
                    .get(name)
                    .or_else(|| span.resource.attributes.get(name)),
            };
            if let Some(value) = found {
                let kind = match value {
                    AttrValue::Str(_) => "string",
                    AttrValue::Int(_) => "int",
                    AttrValue::Float(_) => "float",
                    AttrValue::Bool(_) => "bool",
                };
                values.insert(value.to_text(), kind);
            }
        }
    });
    values
}

/// `GET /api/search/tag/<tag>/values`.
pub fn tag_values_v1(
    source: &(impl TraceSource + ?Sized),
    tag: &str,
    start: UnixNanos,
    end: UnixNanos,
) -> Value {
    let values: Vec<String> = tag_values(source, tag, start, end).into_keys().collect();
    json!({ "tagValues": values })
}

/// `GET /api/v2/search/tag/<tag>/values`: `{"type", "value"}` pairs.
pub fn tag_values_v2(
    source: &(impl TraceSource + ?Sized),
    tag: &str,
    start: UnixNanos,
    end: UnixNanos,
) -> Value {
    let values: Vec<Value> = tag_values(source, tag, start, end)
        .into_iter()
        .map(|(value, kind)| json!({ "type": kind, "value": value }))
        .collect();
    json!({ "tagValues": values })
}
