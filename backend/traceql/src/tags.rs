//! Tag discovery: the attribute names and values Grafana offers in its
//! query builder, as Tempo's `/api/search/tags`, `/api/v2/search/tags`,
//! `/api/search/tag/<tag>/values` and `/api/v2/search/tag/<tag>/values`
//! answer.

use std::collections::BTreeSet;

use lab_signals::{TraceSource, UnixNanos};
use serde_json::{Value, json};

use crate::eval::typed_values;
use crate::parse::{Field, Scope, parse_field};
use crate::{ParseError, Query};

/// A tag request that cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("unknown tag scope `{0}`: use span, resource, intrinsic or all")]
    UnknownScope(String),
    #[error("bad tag name: {0}")]
    BadTag(#[from] ParseError),
}

/// What `/api/v2/search/tags` lists under `intrinsic`: the intrinsics this
/// crate evaluates.
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

/// Span and resource attribute names over the traces in the window.
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

/// `GET /api/search/tags`: `{"tagNames": [...]}`, span and resource
/// attribute names together, sorted.
pub fn tags_v1(source: &(impl TraceSource + ?Sized), start: UnixNanos, end: UnixNanos) -> Value {
    let (span, resource) = tag_names(source, start, end);
    let all: BTreeSet<String> = span.into_iter().chain(resource).collect();
    json!({ "tagNames": all })
}

/// `GET /api/v2/search/tags?scope=…`: names by scope (`span`, `resource`,
/// `intrinsic`). `scope` is the request's parameter: absent, empty or `all`
/// lists every scope.
pub fn tags_v2(
    source: &(impl TraceSource + ?Sized),
    start: UnixNanos,
    end: UnixNanos,
    scope: Option<&str>,
) -> Result<Value, TagError> {
    let scope = scope.filter(|s| !s.is_empty() && *s != "all");
    if let Some(other) = scope.filter(|s| !matches!(*s, "span" | "resource" | "intrinsic")) {
        return Err(TagError::UnknownScope(other.to_owned()));
    }
    let wanted = |name: &str| scope.is_none_or(|s| s == name);
    let (span, resource) = tag_names(source, start, end);
    let mut scopes = Vec::new();
    if wanted("span") {
        scopes.push(json!({ "name": "span", "tags": span }));
    }
    if wanted("resource") {
        scopes.push(json!({ "name": "resource", "tags": resource }));
    }
    if wanted("intrinsic") {
        scopes.push(json!({ "name": "intrinsic", "tags": INTRINSICS }));
    }
    Ok(json!({ "scopes": scopes }))
}

/// Distinct (type, value) pairs of `field` over the spans `query` keeps
/// (every span without a query), sorted by value.
fn values(
    source: &(impl TraceSource + ?Sized),
    field: &Field,
    start: UnixNanos,
    end: UnixNanos,
    query: Option<&Query>,
) -> BTreeSet<(String, &'static str)> {
    let mut out = BTreeSet::new();
    source.for_each_trace(start, end, &mut |trace| {
        let keep = match query {
            Some(query) => query.matched_spans(trace),
            None => vec![true; trace.spans.len()],
        };
        typed_values(trace, field, &keep, &mut |kind, value| {
            out.insert((value, kind));
        });
    });
    out
}

/// `GET /api/search/tag/<tag>/values`: `{"tagValues": ["…"]}`. The tag is a
/// bare attribute name (looked up on spans, then resources) or an
/// intrinsic (`status`, `kind`, `name`).
pub fn tag_values_v1(
    source: &(impl TraceSource + ?Sized),
    tag: &str,
    start: UnixNanos,
    end: UnixNanos,
) -> Value {
    // Tempo's v1 names tags without a scope; `service.name` is not a TraceQL
    // field, so anything that does not parse as one is an attribute name.
    let field = match parse_field(tag) {
        Ok(field @ Field::Intrinsic(_)) => field,
        _ => Field::Attribute {
            scope: Scope::Any,
            name: tag.to_owned(),
        },
    };
    let values: BTreeSet<String> = values(source, &field, start, end, None)
        .into_iter()
        .map(|(value, _)| value)
        .collect();
    json!({ "tagValues": values })
}

/// `GET /api/v2/search/tag/<tag>/values?q=…`: `{"tagValues": [{"type",
/// "value"}]}`. The tag is a TraceQL field (`resource.service.name`,
/// `span.http.method`, `.x`, `status`); with `query`, only spans it keeps
/// count, as Tempo's `q` parameter narrows values.
pub fn tag_values_v2(
    source: &(impl TraceSource + ?Sized),
    tag: &str,
    start: UnixNanos,
    end: UnixNanos,
    query: Option<&Query>,
) -> Result<Value, TagError> {
    let field = parse_field(tag)?;
    let values: Vec<Value> = values(source, &field, start, end, query)
        .into_iter()
        .map(|(value, kind)| json!({ "type": kind, "value": value }))
        .collect();
    Ok(json!({ "tagValues": values }))
}
