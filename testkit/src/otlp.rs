//! An OTLP receiver for tests: gRPC and HTTP (protobuf and JSON) on one
//! loopback port, keeping every export so a test can assert on the spans,
//! log records and metrics a real exporter sent.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
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
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// A span with the resource it came from.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub resource: Arc<BTreeMap<String, String>>,
    pub span: Span,
}

/// A log record with the resource it came from.
#[derive(Debug, Clone)]
pub struct ReceivedLog {
    pub resource: Arc<BTreeMap<String, String>>,
    pub record: LogRecord,
}

/// A metric with the resource it came from.
#[derive(Debug, Clone)]
pub struct ReceivedMetric {
    pub resource: Arc<BTreeMap<String, String>>,
    pub metric: Metric,
}

impl ReceivedSpan {
    pub fn service(&self) -> &str {
        self.resource.get("service.name").map_or("", String::as_str)
    }
    pub fn attr(&self, key: &str) -> Option<String> {
        find_attr(&self.span.attributes, key)
    }
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }
    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }
    pub fn parent_span_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }
}

impl ReceivedLog {
    pub fn service(&self) -> &str {
        self.resource.get("service.name").map_or("", String::as_str)
    }
    pub fn attr(&self, key: &str) -> Option<String> {
        find_attr(&self.record.attributes, key)
    }
    pub fn body(&self) -> String {
        self.record.body.as_ref().map(render).unwrap_or_default()
    }
    pub fn trace_id(&self) -> String {
        hex(&self.record.trace_id)
    }
    pub fn span_id(&self) -> String {
        hex(&self.record.span_id)
    }
}

impl ReceivedMetric {
    pub fn service(&self) -> &str {
        self.resource.get("service.name").map_or("", String::as_str)
    }
}

#[derive(Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    logs: Vec<ReceivedLog>,
    metrics: Vec<ReceivedMetric>,
}

/// The receiver; clones share what was received.
#[derive(Clone, Default)]
pub struct OtlpReceiver {
    received: Arc<Mutex<Received>>,
    /// Decode and count only, as a collector that forwards would: for
    /// benchmarks, where keeping every span would cost the machine more than
    /// the service under test.
    count_only: bool,
    counts: Arc<Counts>,
}

/// How many items arrived, kept in both modes.
#[derive(Default, Debug)]
pub struct Counts {
    pub spans: std::sync::atomic::AtomicU64,
    pub logs: std::sync::atomic::AtomicU64,
    pub metrics: std::sync::atomic::AtomicU64,
}

/// A running receiver and its address.
pub struct RunningReceiver {
    pub receiver: OtlpReceiver,
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl RunningReceiver {
    /// `http://127.0.0.1:<port>`, for `OTEL_EXPORTER_OTLP_ENDPOINT` with
    /// either protocol.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RunningReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OtlpReceiver {
    /// Serves gRPC and HTTP OTLP on a free loopback port.
    pub async fn start() -> anyhow::Result<RunningReceiver> {
        OtlpReceiver::serve(OtlpReceiver::default()).await
    }

    /// A receiver that decodes every export and counts its items without
    /// keeping them.
    pub async fn start_counting() -> anyhow::Result<RunningReceiver> {
        OtlpReceiver::serve(OtlpReceiver {
            count_only: true,
            ..OtlpReceiver::default()
        })
        .await
    }

    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    async fn serve(receiver: OtlpReceiver) -> anyhow::Result<RunningReceiver> {
        let grpc = tonic::service::Routes::new(TraceServiceServer::new(receiver.clone()))
            .add_service(LogsServiceServer::new(receiver.clone()))
            .add_service(MetricsServiceServer::new(receiver.clone()))
            .into_axum_router();
        let http = axum::Router::new()
            .route("/v1/traces", post(http_traces))
            .route("/v1/logs", post(http_logs))
            .route("/v1/metrics", post(http_metrics))
            .with_state(receiver.clone());
        let app = grpc.merge(http);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(RunningReceiver {
            receiver,
            addr,
            task,
        })
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.lock().unwrap().spans.clone()
    }

    pub fn logs(&self) -> Vec<ReceivedLog> {
        self.received.lock().unwrap().logs.clone()
    }

    pub fn metrics(&self) -> Vec<ReceivedMetric> {
        self.received.lock().unwrap().metrics.clone()
    }

    /// Polls until `found` returns something, or fails after `timeout` with
    /// what was received, so a failing test shows what did arrive.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut found: impl FnMut(&OtlpReceiver) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(value) = found(self) {
                return value;
            }
            if tokio::time::Instant::now() > deadline {
                let received = self.received.lock().unwrap();
                panic!(
                    "timed out after {timeout:?} waiting for {what}; received {} spans {:?}, {} log records {:?}, {} metrics",
                    received.spans.len(),
                    received
                        .spans
                        .iter()
                        .map(|s| format!("{}:{}", s.service(), s.span.name))
                        .collect::<Vec<_>>(),
                    received.logs.len(),
                    received
                        .logs
                        .iter()
                        .map(ReceivedLog::body)
                        .collect::<Vec<_>>(),
                    received.metrics.len(),
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn add_traces(&self, request: ExportTraceServiceRequest) {
        let items: u64 = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len() as u64)
            .sum();
        self.counts
            .spans
            .fetch_add(items, std::sync::atomic::Ordering::Relaxed);
        if self.count_only {
            return;
        }
        let mut received = self.received.lock().unwrap();
        for rs in request.resource_spans {
            let resource = resource_map(rs.resource.as_ref());
            for ss in rs.scope_spans {
                for span in ss.spans {
                    received.spans.push(ReceivedSpan {
                        resource: resource.clone(),
                        span,
                    });
                }
            }
        }
    }

    fn add_logs(&self, request: ExportLogsServiceRequest) {
        let items: u64 = request
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len() as u64)
            .sum();
        self.counts
            .logs
            .fetch_add(items, std::sync::atomic::Ordering::Relaxed);
        if self.count_only {
            return;
        }
        let mut received = self.received.lock().unwrap();
        for rl in request.resource_logs {
            let resource = resource_map(rl.resource.as_ref());
            for sl in rl.scope_logs {
                for record in sl.log_records {
                    received.logs.push(ReceivedLog {
                        resource: resource.clone(),
                        record,
                    });
                }
            }
        }
    }

    fn add_metrics(&self, request: ExportMetricsServiceRequest) {
        let items: u64 = request
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .map(|s| s.metrics.len() as u64)
            .sum();
        self.counts
            .metrics
            .fetch_add(items, std::sync::atomic::Ordering::Relaxed);
        if self.count_only {
            return;
        }
        let mut received = self.received.lock().unwrap();
        for rm in request.resource_metrics {
            let resource = resource_map(rm.resource.as_ref());
            for sm in rm.scope_metrics {
                for metric in sm.metrics {
                    received.metrics.push(ReceivedMetric {
                        resource: resource.clone(),
                        metric,
                    });
                }
            }
        }
    }
}

#[tonic::async_trait]
impl TraceService for OtlpReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.add_traces(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for OtlpReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.add_logs(request.into_inner());
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for OtlpReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.add_metrics(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// Decodes an OTLP/HTTP body by its content type.
fn decode<T: Message + Default + serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, (StatusCode, String)> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("application/json") {
        serde_json::from_slice(body).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))
    } else {
        T::decode(body.as_ref()).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))
    }
}

async fn http_traces(
    axum::extract::State(receiver): axum::extract::State<OtlpReceiver>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, (StatusCode, String)> {
    receiver.add_traces(decode(&headers, &body)?);
    Ok(StatusCode::OK)
}

async fn http_logs(
    axum::extract::State(receiver): axum::extract::State<OtlpReceiver>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, (StatusCode, String)> {
    receiver.add_logs(decode(&headers, &body)?);
    Ok(StatusCode::OK)
}

async fn http_metrics(
    axum::extract::State(receiver): axum::extract::State<OtlpReceiver>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, (StatusCode, String)> {
    receiver.add_metrics(decode(&headers, &body)?);
    Ok(StatusCode::OK)
}

fn resource_map(resource: Option<&Resource>) -> Arc<BTreeMap<String, String>> {
    let map = resource
        .map(|r| {
            r.attributes
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value.as_ref().map(render).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Arc::new(map)
}

fn find_attr(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| kv.value.as_ref().map(render).unwrap_or_default())
}

/// An attribute value as text: strings as they are, the rest as Rust
/// prints them.
pub fn render(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// Lower-case hex, as trace and span ids are written everywhere else.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
