//! What the embedded backend takes in, decoded and mapped into the lab's
//! data model the way the real backends map it: OTLP traces as Tempo keeps
//! them, OTLP logs with Loki's label promotion, OTLP metrics with the names
//! Prometheus' OTLP receiver gives them, Prometheus text scrapes (with
//! exemplars), and Loki's JSON push.
//!
//! Pure functions: no I/O. A malformed body is an error, never a panic.

pub mod loki_push;
pub mod otlp;
pub mod prometheus_text;

use lab_signals::{Exemplar, Labels, MetricMetadata, Sample};

/// Samples, exemplars and metadata from one payload.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MetricBatch {
    pub points: Vec<(Labels, Sample)>,
    pub exemplars: Vec<(Labels, Exemplar)>,
    pub metadata: Vec<(String, MetricMetadata)>,
}

/// A label or metric name made valid for Prometheus and Loki: every
/// character outside `[a-zA-Z0-9_]` becomes `_`, and a leading digit gets
/// a `_` in front.
pub fn sanitize_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_valid_label_names() {
        assert_eq!(sanitize_name("service.name"), "service_name");
        assert_eq!(sanitize_name("http.status-code"), "http_status_code");
        assert_eq!(sanitize_name("2xx"), "_2xx");
    }
}
