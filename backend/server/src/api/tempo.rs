//! Tempo's HTTP API: trace by id (v1 and v2), echo, buildinfo.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lab_signals::{AttrValue, Attributes, SpanKind, StatusCode as SpanStatus, Trace, TraceId};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span as ProtoSpan, Status as ProtoStatus, span,
};
use prost::Message;
use serde_json::Value;

use super::{Params, blocking, buildinfo};
use crate::backend::Backend;
use crate::params::{self, now_nanos};

pub fn routes() -> Router<Arc<Backend>> {
    Router::new()
        .route("/api/traces/{id}", get(trace_v1))
        .route("/api/v2/traces/{id}", get(trace_v2))
        .route("/api/search", get(search))
        .route("/api/search/tags", get(tags_v1))
        .route("/api/v2/search/tags", get(tags_v2))
        .route("/api/search/tag/{tag}/values", get(tag_values_v1))
        .route("/api/v2/search/tag/{tag}/values", get(tag_values_v2))
        .route("/api/echo", get(|| async { "echo" }))
        .route(
            "/api/status/buildinfo",
            get(|| async { axum::Json(buildinfo()) }),
        )
}

/// Grafana's Tempo datasource asks for trace by id in protobuf (Tempo's
/// `Trace` message, wire-identical to an OTLP export request); other
/// clients get OTLP JSON.
fn wants_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/protobuf"))
}

async fn find_proto(
    backend: Arc<Backend>,
    id: String,
) -> Result<ExportTraceServiceRequest, Response> {
    let Some(trace_id) = TraceId::from_hex(&id) else {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("invalid trace id {id:?}: expected up to 32 hex digits"),
        )
            .into_response());
    };
    let found = blocking(move || backend.store().traces().get(&trace_id).map(proto_trace)).await?;
    found.ok_or_else(|| {
        (
            StatusCode::NOT_FOUND,
            format!("trace not found: {trace_id}"),
        )
            .into_response()
    })
}

fn protobuf(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/protobuf")], bytes).into_response()
}

async fn find(
    backend: Arc<Backend>,
    id: String,
    render: fn(&Trace) -> Value,
) -> Result<Value, Response> {
    let Some(trace_id) = TraceId::from_hex(&id) else {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("invalid trace id {id:?}: expected up to 32 hex digits"),
        )
            .into_response());
    };
    let found = blocking(move || backend.store().traces().get(&trace_id).map(render)).await?;
    found.ok_or_else(|| {
        (
            StatusCode::NOT_FOUND,
            format!("trace not found: {trace_id}"),
        )
            .into_response()
    })
}

async fn trace_v1(
    State(backend): State<Arc<Backend>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if wants_protobuf(&headers) {
        return match find_proto(backend, id).await {
            Ok(trace) => protobuf(trace.encode_to_vec()),
            Err(response) => response,
        };
    }
    match find(backend, id, lab_traceql::trace_json_v1).await {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(response) => response,
    }
}

async fn trace_v2(
    State(backend): State<Arc<Backend>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if wants_protobuf(&headers) {
        return match find_proto(backend, id).await {
            Ok(trace) => {
                // TraceByIDResponse: the trace is its field 1.
                let mut bytes = Vec::new();
                prost::encoding::message::encode(1, &trace, &mut bytes);
                protobuf(bytes)
            }
            Err(response) => response,
        };
    }
    match find(backend, id, lab_traceql::trace_json_v2).await {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(response) => response,
    }
}

/// Tempo takes `start`/`end` in Unix seconds; without them, everything.
fn window(params: &Params) -> Result<(i64, i64), Response> {
    let bad = |e: params::ParamError| (StatusCode::BAD_REQUEST, e.to_string()).into_response();
    let start = params
        .get("start")
        .map(|t| params::time("start", t))
        .transpose()
        .map_err(bad)?
        .unwrap_or(0);
    let end = params
        .get("end")
        .map(|t| params::time("end", t))
        .transpose()
        .map_err(bad)?
        .unwrap_or_else(|| now_nanos() + 60_000_000_000);
    Ok((start, end))
}

fn number(params: &Params, name: &str, default: usize) -> Result<usize, Response> {
    match params.get(name) {
        None | Some("") => Ok(default),
        Some(text) => text.parse().map_err(|_| {
            (
                StatusCode::BAD_REQUEST,
                format!("invalid {name}: {text:?} is not a whole number"),
            )
                .into_response()
        }),
    }
}

async fn search(State(backend): State<Arc<Backend>>, params: Params) -> Response {
    let query = params
        .get("q")
        .filter(|q| !q.trim().is_empty())
        .unwrap_or("{}")
        .to_owned();
    let parsed = match lab_traceql::parse(&query) {
        Ok(parsed) => parsed,
        Err(err) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("invalid TraceQL query: {err}"),
            )
                .into_response();
        }
    };
    let ((start, end), limit, spss) = match (
        window(&params),
        number(&params, "limit", 20),
        number(&params, "spss", 3),
    ) {
        (Ok(w), Ok(l), Ok(s)) => (w, l, s),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
    };
    let answer = blocking(move || {
        let traces = backend.store().traces();
        let found = parsed.search(&*traces, start, end, limit, spss);
        lab_traceql::search_response(&found.traces, found.inspected_traces)
    })
    .await;
    match answer {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(response) => response,
    }
}

/// Answers a tag request: `answer` over the stored traces in the
/// request's window, on the blocking pool.
async fn over_traces(
    backend: Arc<Backend>,
    params: Params,
    answer: impl FnOnce(&crate::store::TraceStore, i64, i64) -> Result<Value, String> + Send + 'static,
) -> Response {
    let (start, end) = match window(&params) {
        Ok(w) => w,
        Err(r) => return r,
    };
    match blocking(move || answer(&backend.store().traces(), start, end)).await {
        Ok(Ok(answer)) => axum::Json(answer).into_response(),
        Ok(Err(message)) => (StatusCode::BAD_REQUEST, message).into_response(),
        Err(response) => response,
    }
}

async fn tags_v1(State(backend): State<Arc<Backend>>, params: Params) -> Response {
    over_traces(backend, params, |traces, start, end| {
        Ok(lab_traceql::tags_v1(traces, start, end))
    })
    .await
}

async fn tags_v2(State(backend): State<Arc<Backend>>, params: Params) -> Response {
    let scope = params.get("scope").map(str::to_owned);
    over_traces(backend, params, move |traces, start, end| {
        lab_traceql::tags_v2(traces, start, end, scope.as_deref()).map_err(|e| e.to_string())
    })
    .await
}

async fn tag_values_v1(
    State(backend): State<Arc<Backend>>,
    Path(tag): Path<String>,
    params: Params,
) -> Response {
    over_traces(backend, params, move |traces, start, end| {
        Ok(lab_traceql::tag_values_v1(traces, &tag, start, end))
    })
    .await
}

async fn tag_values_v2(
    State(backend): State<Arc<Backend>>,
    Path(tag): Path<String>,
    params: Params,
) -> Response {
    // v2 narrows the values to the spans a TraceQL query (`q`) selects.
    let query = match params
        .get("q")
        .filter(|q| !q.trim().is_empty())
        .map(lab_traceql::parse)
        .transpose()
    {
        Ok(query) => query,
        Err(err) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("invalid TraceQL query: {err}"),
            )
                .into_response();
        }
    };
    over_traces(backend, params, move |traces, start, end| {
        lab_traceql::tag_values_v2(traces, &tag, start, end, query.as_ref())
            .map_err(|e| e.to_string())
    })
    .await
}

fn proto_attributes(attrs: &Attributes) -> Vec<KeyValue> {
    attrs
        .iter()
        .map(|(key, value)| KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(match value {
                    AttrValue::Str(s) => any_value::Value::StringValue(s.clone()),
                    AttrValue::Int(i) => any_value::Value::IntValue(*i),
                    AttrValue::Float(f) => any_value::Value::DoubleValue(*f),
                    AttrValue::Bool(b) => any_value::Value::BoolValue(*b),
                }),
            }),
            ..Default::default()
        })
        .collect()
}

/// A trace as OTLP protobuf, spans grouped by resource and scope.
fn proto_trace(trace: &Trace) -> ExportTraceServiceRequest {
    let mut groups: Vec<(&Arc<lab_signals::Resource>, Vec<ProtoSpan>)> = Vec::new();
    for s in &trace.spans {
        let proto = ProtoSpan {
            trace_id: s.trace_id.0.to_vec(),
            span_id: s.span_id.0.to_vec(),
            parent_span_id: s.parent_span_id.map(|p| p.0.to_vec()).unwrap_or_default(),
            name: s.name.clone(),
            kind: match s.kind {
                SpanKind::Unspecified => 0,
                SpanKind::Internal => 1,
                SpanKind::Server => 2,
                SpanKind::Client => 3,
                SpanKind::Producer => 4,
                SpanKind::Consumer => 5,
            },
            start_time_unix_nano: s.start as u64,
            end_time_unix_nano: s.end as u64,
            attributes: proto_attributes(&s.attributes),
            events: s
                .events
                .iter()
                .map(|e| span::Event {
                    time_unix_nano: e.time as u64,
                    name: e.name.clone(),
                    attributes: proto_attributes(&e.attributes),
                    ..Default::default()
                })
                .collect(),
            links: s
                .links
                .iter()
                .map(|l| span::Link {
                    trace_id: l.trace_id.0.to_vec(),
                    span_id: l.span_id.0.to_vec(),
                    attributes: proto_attributes(&l.attributes),
                    ..Default::default()
                })
                .collect(),
            status: Some(ProtoStatus {
                code: match s.status {
                    SpanStatus::Unset => 0,
                    SpanStatus::Ok => 1,
                    SpanStatus::Error => 2,
                },
                message: s.status_message.clone(),
            }),
            ..Default::default()
        };
        match groups
            .iter_mut()
            .find(|(r, _)| Arc::ptr_eq(r, &s.resource) || ***r == *s.resource)
        {
            Some((_, spans)) => spans.push(proto),
            None => groups.push((&s.resource, vec![proto])),
        }
    }
    ExportTraceServiceRequest {
        resource_spans: groups
            .into_iter()
            .map(|(resource, spans)| ResourceSpans {
                resource: Some(ProtoResource {
                    attributes: proto_attributes(&resource.attributes),
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: resource.scope_name.clone(),
                        version: resource.scope_version.clone(),
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}
