//! The receivers: OTLP over gRPC and over HTTP (protobuf and JSON), Loki's
//! push API, and Pyroscope's push (Connect) and ingest APIs. Each decodes, hands the payload to
//! [`Backend::ingest`], and answers a bad body with 400 (gRPC:
//! INVALID_ARGUMENT) saying what was wrong.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use lab_ingest::otlp::{self, Encoding};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

use crate::backend::Backend;
use crate::ingest::{IngestError, Payload, ProfileUpload};
use crate::params::now_nanos;

/// The largest body taken: OTLP batches are far smaller, but a collector
/// may send several thousand spans at once.
pub const MAX_BODY: usize = 32 * 1024 * 1024;

/// OTLP/gRPC: the three collector services on one router.
pub fn otlp_grpc(backend: Arc<Backend>) -> Router {
    let receiver = Receiver(backend);
    tonic::service::Routes::new(
        TraceServiceServer::new(receiver.clone()).max_decoding_message_size(MAX_BODY),
    )
    .add_service(LogsServiceServer::new(receiver.clone()).max_decoding_message_size(MAX_BODY))
    .add_service(MetricsServiceServer::new(receiver).max_decoding_message_size(MAX_BODY))
    .into_axum_router()
}

/// OTLP/HTTP: `/v1/traces`, `/v1/logs`, `/v1/metrics`.
pub fn otlp_http(backend: Arc<Backend>) -> Router {
    Router::new()
        .route("/v1/traces", post(http_traces))
        .route("/v1/logs", post(http_logs))
        .route("/v1/metrics", post(http_metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(backend)
}

/// Loki's push API (JSON).
pub fn loki_push(backend: Arc<Backend>) -> Router {
    Router::new()
        .route("/loki/api/v1/push", post(push))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(backend)
}

/// Pyroscope's push API (what pyroscope-rs 2.x and Alloy send) and its
/// older `/ingest` API (folded, lines, pprof).
pub fn profiles(backend: Arc<Backend>) -> Router {
    Router::new()
        .route("/push.v1.PusherService/Push", post(profile_push))
        .route("/ingest", post(profile_ingest))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(backend)
}

#[derive(Clone)]
struct Receiver(Arc<Backend>);

impl Receiver {
    /// Ingest runs on the blocking pool: it takes locks and may write the
    /// log, which must not stall the async workers.
    async fn ingest(&self, payload: Payload) -> Result<(), tonic::Status> {
        let backend = self.0.clone();
        match tokio::task::spawn_blocking(move || backend.ingest(payload)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(IngestError::Decode(message))) => Err(tonic::Status::invalid_argument(message)),
            Ok(Err(err)) => Err(tonic::Status::unavailable(err.to_string())),
            Err(join) => Err(tonic::Status::internal(join.to_string())),
        }
    }
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.ingest(Payload::Traces(request.into_inner())).await?;
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.ingest(Payload::Logs(request.into_inner())).await?;
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.ingest(Payload::Metrics(request.into_inner())).await?;
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

fn encoding(headers: &HeaderMap) -> Encoding {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-protobuf");
    Encoding::from_content_type(content_type)
}

/// Answers an OTLP/HTTP export: an empty response message in the request's
/// encoding, or 400 with the reason.
async fn answer(
    backend: Arc<Backend>,
    encoding: Encoding,
    payload: Result<Payload, String>,
) -> Response {
    let payload = match payload {
        Ok(payload) => payload,
        Err(message) => return bad_request(message),
    };
    match tokio::task::spawn_blocking(move || backend.ingest(payload)).await {
        Ok(Ok(_)) => match encoding {
            Encoding::Json => ([(header::CONTENT_TYPE, "application/json")], "{}").into_response(),
            Encoding::Protobuf => (
                [(header::CONTENT_TYPE, "application/x-protobuf")],
                Vec::<u8>::new(),
            )
                .into_response(),
        },
        Ok(Err(IngestError::Decode(message))) => bad_request(message),
        Ok(Err(err)) => (StatusCode::SERVICE_UNAVAILABLE, err.to_string()).into_response(),
        Err(join) => (StatusCode::INTERNAL_SERVER_ERROR, join.to_string()).into_response(),
    }
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        format!("bad OTLP request: {message}"),
    )
        .into_response()
}

async fn http_traces(
    State(backend): State<Arc<Backend>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let encoding = encoding(&headers);
    let payload = otlp::decode_traces(&body, encoding)
        .map(Payload::Traces)
        .map_err(|e| e.to_string());
    answer(backend, encoding, payload).await
}

async fn http_logs(
    State(backend): State<Arc<Backend>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let encoding = encoding(&headers);
    let payload = otlp::decode_logs(&body, encoding)
        .map(Payload::Logs)
        .map_err(|e| e.to_string());
    answer(backend, encoding, payload).await
}

async fn http_metrics(
    State(backend): State<Arc<Backend>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let encoding = encoding(&headers);
    let payload = otlp::decode_metrics(&body, encoding)
        .map(Payload::Metrics)
        .map_err(|e| e.to_string());
    answer(backend, encoding, payload).await
}

/// Loki answers a push with 204 and no body.
async fn push(State(backend): State<Arc<Backend>>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if !content_type.starts_with("application/json") {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported content type {content_type}: push logs as application/json"),
        )
            .into_response();
    }
    let payload = Payload::LokiPush(body.to_vec());
    match tokio::task::spawn_blocking(move || backend.ingest(payload)).await {
        Ok(Ok(_)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(IngestError::Decode(message))) => (StatusCode::BAD_REQUEST, message).into_response(),
        Ok(Err(err)) => (StatusCode::SERVICE_UNAVAILABLE, err.to_string()).into_response(),
        Err(join) => (StatusCode::INTERNAL_SERVER_ERROR, join.to_string()).into_response(),
    }
}

/// A Connect unary call: protobuf in, an empty `PushResponse` out; errors
/// as Connect's JSON error with its code.
async fn profile_push(
    State(backend): State<Arc<Backend>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/proto");
    let connect_error = |status: StatusCode, code: &str, message: String| {
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({"code": code, "message": message}).to_string(),
        )
            .into_response()
    };
    if !matches!(
        content_type,
        "application/proto" | "application/protobuf" | "application/x-protobuf"
    ) {
        return connect_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unimplemented",
            format!("content type {content_type} is not supported: push as application/proto"),
        );
    }
    let upload = ProfileUpload {
        ingest_query: None,
        content_type: content_type.to_owned(),
        body: body.to_vec(),
    };
    match tokio::task::spawn_blocking(move || backend.ingest(Payload::Profiles(upload))).await {
        Ok(Ok(_)) => (
            [(header::CONTENT_TYPE, "application/proto")],
            Vec::<u8>::new(),
        )
            .into_response(),
        Ok(Err(IngestError::Decode(message))) => connect_error(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            format!("bad profile push: {message}"),
        ),
        Ok(Err(err)) => connect_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            err.to_string(),
        ),
        Err(join) => connect_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            join.to_string(),
        ),
    }
}

/// `/ingest?name=…`: 200 with no body, or 400 saying what was wrong.
async fn profile_ingest(
    State(backend): State<Arc<Backend>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let bad = |message: String| {
        (
            StatusCode::BAD_REQUEST,
            format!("bad ingest request: {message}"),
        )
            .into_response()
    };
    let query = uri.query().unwrap_or_default();
    let pairs: Vec<(String, String)> = match serde_urlencoded::from_str(query) {
        Ok(pairs) => pairs,
        Err(e) => return bad(format!("bad query string: {e}")),
    };
    // Checked before logging, and the times made explicit so a replay
    // reads the same ones.
    let request = match lab_profiles::ingest::IngestRequest::from_pairs(&pairs, now_nanos()) {
        Ok(request) => request,
        Err(e) => return bad(e.to_string()),
    };
    let has = |name: &str| pairs.iter().any(|(k, _)| k == name);
    let mut query = query.to_owned();
    for (name, nanos) in [("from", request.start), ("until", request.end)] {
        if !has(name) {
            query.push_str(&format!("&{name}={}", nanos.div_euclid(1_000_000_000)));
        }
    }
    let upload = ProfileUpload {
        ingest_query: Some(query),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body: body.to_vec(),
    };
    match tokio::task::spawn_blocking(move || backend.ingest(Payload::Profiles(upload))).await {
        Ok(Ok(_)) => StatusCode::OK.into_response(),
        Ok(Err(IngestError::Decode(message))) => bad(message),
        Ok(Err(err)) => (StatusCode::SERVICE_UNAVAILABLE, err.to_string()).into_response(),
        Err(join) => (StatusCode::INTERNAL_SERVER_ERROR, join.to_string()).into_response(),
    }
}
