//! The original's way of shipping logs: with `LOGS_TARGET` set to a Loki
//! push URL (`http://alloy:3100/loki/api/v1/push` in its compose file),
//! each log event is pushed as Loki's JSON with the original's stream
//! labels (`service_name`, `level`, `job`, `namespace`, `beast`) instead of
//! going out over OTLP. It plugs into the SDK's batch processor as an
//! exporter, so a slow or dead Loki costs dropped lines, never a request.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::logs::AnyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::logs::{LogBatch, LogExporter};
use serde::Serialize;

/// The record attributes that become stream labels, as the original's
/// logger sends them; everything else is in the line already.
const LABELS: [&str; 4] = ["level", "job", "namespace", "beast"];

pub struct LokiPushExporter {
    url: String,
    service_name: String,
    http: reqwest::blocking::Client,
}

impl fmt::Debug for LokiPushExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LokiPushExporter")
            .field("url", &self.url)
            .finish()
    }
}

#[derive(Serialize)]
struct Push<'a> {
    streams: Vec<Stream<'a>>,
}

#[derive(Serialize)]
struct Stream<'a> {
    stream: BTreeMap<&'a str, String>,
    values: Vec<[String; 2]>,
}

impl LokiPushExporter {
    /// `url` is Loki's push endpoint; `timeout` bounds each push.
    pub fn new(url: &str, service_name: &str, timeout: Duration) -> anyhow::Result<Self> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            anyhow::bail!(
                "LOGS_TARGET={url} is not a URL: give Loki's push endpoint, e.g. http://alloy:3100/loki/api/v1/push"
            );
        }
        Ok(LokiPushExporter {
            url: url.to_owned(),
            service_name: service_name.to_owned(),
            http: reqwest::blocking::Client::builder()
                .timeout(timeout)
                .build()?,
        })
    }

    /// The push body for a batch: one stream per label set, lines in order.
    fn body(&self, batch: &LogBatch<'_>) -> String {
        let mut streams: BTreeMap<BTreeMap<&str, String>, Vec<[String; 2]>> = BTreeMap::new();
        for (record, _) in batch.iter() {
            let mut labels = BTreeMap::from([("service_name", self.service_name.clone())]);
            for (key, value) in record.attributes_iter() {
                if let Some(label) = LABELS.iter().find(|l| **l == key.as_str()) {
                    labels.insert(label, text(value));
                }
            }
            let nanos = record
                .timestamp()
                .or(record.observed_timestamp())
                .unwrap_or_else(SystemTime::now)
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let line = record.body().map(text).unwrap_or_default();
            streams
                .entry(labels)
                .or_default()
                .push([nanos.to_string(), line]);
        }
        let push = Push {
            streams: streams
                .into_iter()
                .map(|(stream, values)| Stream { stream, values })
                .collect(),
        };
        serde_json::to_string(&push).expect("a push body serialises")
    }
}

fn text(value: &AnyValue) -> String {
    match value {
        AnyValue::String(s) => s.as_str().to_owned(),
        AnyValue::Int(i) => i.to_string(),
        AnyValue::Double(d) => d.to_string(),
        AnyValue::Boolean(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

impl LogExporter for LokiPushExporter {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let body = self.body(&batch);
        let response = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .map_err(|e| OTelSdkError::InternalFailure(format!("{}: {e}", self.url)))?;
        if !response.status().is_success() {
            return Err(OTelSdkError::InternalFailure(format!(
                "{} answered {}",
                self.url,
                response.status()
            )));
        }
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Some(name) = resource.get(&opentelemetry::Key::from_static_str("service.name")) {
            self.service_name = name.as_str().into_owned();
        }
    }
}
