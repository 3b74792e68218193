//! Everything that comes in, one way: a received payload is written to the
//! write-ahead log as it came, then decoded into the store. Replay at start
//! sends the log's records through the same decoding, so what is queried
//! after a restart is what was queried before it.

use lab_ingest::otlp::{self, LabelPolicy};
use lab_signals::Labels;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::generate::{self, GeneratedSamples};
use crate::params::now_nanos;
use crate::store::Store;
use crate::wal::RecordKind;

/// A payload as received, before mapping.
pub enum Payload {
    Traces(ExportTraceServiceRequest),
    Logs(ExportLogsServiceRequest),
    Metrics(ExportMetricsServiceRequest),
    /// Loki's push API, its JSON body as sent.
    LokiPush(Vec<u8>),
    /// One scrape of a Prometheus target.
    Scrape(Scrape),
    /// A profile upload to Pyroscope's push or ingest API.
    Profiles(ProfileUpload),
    /// One collection of the span metrics and service graphs.
    Generated(GeneratedSamples),
}

/// A profile upload as the log keeps it: the body as received, and for
/// `/ingest` its query string with `from` and `until` made explicit, so a
/// replay reads the same times.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProfileUpload {
    /// `None`: `/push.v1.PusherService/Push`; `Some`: `/ingest?<query>`.
    #[prost(string, optional, tag = "1")]
    pub ingest_query: Option<String>,
    #[prost(string, tag = "2")]
    pub content_type: String,
    #[prost(bytes = "vec", tag = "3")]
    pub body: Vec<u8>,
}

impl ProfileUpload {
    fn decode_profiles(&self) -> Result<Vec<lab_profiles::Profile>, IngestError> {
        let decode = |e: lab_profiles::DecodeError| IngestError::Decode(e.to_string());
        match &self.ingest_query {
            None => lab_profiles::push::decode(&self.body).map_err(decode),
            Some(query) => {
                let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
                    .map_err(|e| IngestError::Decode(format!("bad query string: {e}")))?;
                let request = lab_profiles::ingest::IngestRequest::from_pairs(&pairs, now_nanos())
                    .map_err(decode)?;
                let content_type = Some(self.content_type.as_str()).filter(|c| !c.is_empty());
                lab_profiles::ingest::decode(&request, content_type, &self.body).map_err(decode)
            }
        }
    }
}

/// A scrape as the log keeps it: the target's labels, when, and the text.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scrape {
    pub target: Vec<(String, String)>,
    pub time_ms: i64,
    pub text: String,
}

/// A payload that cannot be taken in, with why.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Decode(String),
    #[error("write-ahead log: {0}")]
    Wal(#[from] std::io::Error),
}

/// How many items a payload added.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Added {
    pub spans: usize,
    pub log_lines: usize,
    pub samples: usize,
    pub profiles: usize,
}

impl Payload {
    /// The record the write-ahead log keeps for this payload.
    pub fn to_record(&self) -> (RecordKind, Vec<u8>) {
        match self {
            Payload::Traces(request) => (RecordKind::OtlpTraces, request.encode_to_vec()),
            Payload::Logs(request) => (RecordKind::OtlpLogs, request.encode_to_vec()),
            Payload::Metrics(request) => (RecordKind::OtlpMetrics, request.encode_to_vec()),
            Payload::LokiPush(body) => (RecordKind::LokiPush, body.clone()),
            Payload::Scrape(scrape) => (
                RecordKind::Scrape,
                serde_json::to_vec(scrape).expect("a scrape serialises"),
            ),
            Payload::Profiles(upload) => (RecordKind::Profiles, upload.encode_to_vec()),
            Payload::Generated(samples) => (
                RecordKind::Generated,
                serde_json::to_vec(samples).expect("generated samples serialise"),
            ),
        }
    }

    /// Rebuilds a payload from a write-ahead log record.
    pub fn from_record(kind: RecordKind, bytes: &[u8]) -> Result<Payload, IngestError> {
        let decode = |e: prost::DecodeError| IngestError::Decode(e.to_string());
        Ok(match kind {
            RecordKind::OtlpTraces => Payload::Traces(Message::decode(bytes).map_err(decode)?),
            RecordKind::OtlpLogs => Payload::Logs(Message::decode(bytes).map_err(decode)?),
            RecordKind::OtlpMetrics => Payload::Metrics(Message::decode(bytes).map_err(decode)?),
            RecordKind::LokiPush => Payload::LokiPush(bytes.to_vec()),
            RecordKind::Scrape => Payload::Scrape(
                serde_json::from_slice(bytes).map_err(|e| IngestError::Decode(e.to_string()))?,
            ),
            RecordKind::Profiles => Payload::Profiles(Message::decode(bytes).map_err(decode)?),
            RecordKind::Generated => Payload::Generated(
                serde_json::from_slice(bytes).map_err(|e| IngestError::Decode(e.to_string()))?,
            ),
        })
    }

    /// Decodes and maps the payload, without storing it yet: a payload that
    /// fails here is refused before anything is written.
    pub fn prepare(&self, policy: &LabelPolicy) -> Result<Prepared, IngestError> {
        let decode = |e: &dyn std::fmt::Display| IngestError::Decode(e.to_string());
        let mut prepared = Prepared::default();
        match self {
            Payload::Traces(request) => prepared.spans = otlp::spans(request),
            Payload::Logs(request) => prepared.logs = otlp::log_entries(request, policy),
            Payload::Metrics(request) => prepared.metrics = Some(otlp::metric_points(request)),
            Payload::LokiPush(body) => {
                prepared.logs = lab_ingest::loki_push::decode(body, "application/json")
                    .map_err(|e| decode(&e))?;
            }
            Payload::Scrape(scrape) => {
                let target = Labels::new(scrape.target.iter().cloned());
                let batch =
                    lab_ingest::prometheus_text::parse(&scrape.text, scrape.time_ms, &target)
                        .map_err(|e| decode(&e))?;
                prepared.metrics = Some(batch);
            }
            Payload::Profiles(upload) => prepared.profiles = upload.decode_profiles()?,
            Payload::Generated(samples) => prepared.metrics = Some(samples.clone().into_batch()),
        }
        Ok(prepared)
    }
}

/// A payload mapped into the data model, ready to store.
#[derive(Default)]
pub struct Prepared {
    spans: Vec<lab_signals::Span>,
    logs: Vec<(Labels, lab_signals::LogEntry)>,
    metrics: Option<lab_ingest::MetricBatch>,
    profiles: Vec<lab_profiles::Profile>,
}

impl Prepared {
    pub fn spans(&self) -> &[lab_signals::Span] {
        &self.spans
    }

    /// Adds the autologging lines of the spans (Alloy's `spanlogs`): they
    /// follow from the spans alone, so replay derives them again.
    pub fn with_autologs(mut self) -> Prepared {
        self.logs.extend(generate::autologs::lines(&self.spans));
        self
    }

    pub fn store(self, store: &Store) -> Added {
        let added = Added {
            spans: self.spans.len(),
            log_lines: self.logs.len(),
            samples: self.metrics.as_ref().map_or(0, |m| m.points.len()),
            profiles: self.profiles.len(),
        };
        if !self.spans.is_empty() {
            store.add_spans(self.spans);
        }
        if !self.logs.is_empty() {
            store.add_logs(self.logs);
        }
        if let Some(batch) = self.metrics {
            store.add_metrics(batch.points, batch.exemplars, batch.metadata);
        }
        if !self.profiles.is_empty() {
            store.add_profiles(self.profiles);
        }
        added
    }
}
