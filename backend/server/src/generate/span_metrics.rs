//! Tempo's span metrics: every span counted and timed under its service,
//! name, kind and status, and the configured dimensions looked up in the
//! resource, then the span's attributes.

use lab_signals::{AttrValue, Attributes, Labels, Span, UnixMillis};

use super::registry::{CounterId, HistogramId, Registry, exponential_buckets, sanitize_label_name};

/// The intrinsic dimensions' label names, which a configured dimension
/// may not take over.
const INTRINSIC: [&str; 5] = [
    "service",
    "span_name",
    "span_kind",
    "status_code",
    "status_message",
];

pub struct SpanMetrics {
    calls: CounterId,
    latency: HistogramId,
    /// Attribute name, and the label it becomes.
    dimensions: Vec<(String, String)>,
}

/// A dimension's label: sanitised, and prefixed with `__` when it would
/// collide with an intrinsic one (`service` → `__service`), as Tempo does.
pub fn dimension_label(attribute: &str) -> String {
    let label = sanitize_label_name(attribute);
    if INTRINSIC.contains(&label.as_str()) {
        format!("__{label}")
    } else {
        label
    }
}

/// A configured dimension's value, resource first, as Tempo's
/// `FindAttributeValue(key, resource, span)` looks it up.
pub fn find_attribute<'a>(key: &str, sources: [&'a Attributes; 2]) -> Option<&'a AttrValue> {
    sources
        .into_iter()
        .find_map(|attributes| attributes.get(key))
}

impl SpanMetrics {
    pub fn new(registry: &mut Registry, dimensions: &[String]) -> SpanMetrics {
        SpanMetrics {
            calls: registry.counter(
                "traces_spanmetrics_calls_total",
                "Spans by service, name, kind and status (Tempo's span metrics)",
            ),
            latency: registry.histogram(
                "traces_spanmetrics_latency",
                "Span durations in seconds (Tempo's span metrics)",
                &exponential_buckets(0.002, 2.0, 14),
            ),
            dimensions: dimensions
                .iter()
                .map(|d| (d.clone(), dimension_label(d)))
                .collect(),
        }
    }

    /// The label set a span is counted under. An empty value is no label,
    /// as Prometheus stores it.
    pub fn labels(&self, span: &Span) -> Labels {
        let resource = &span.resource.attributes;
        let mut pairs = Vec::with_capacity(4 + self.dimensions.len());
        if let Some(service) = resource.get("service.name") {
            pairs.push(("service".to_owned(), service.to_text()));
        }
        pairs.push(("span_name".to_owned(), span.name.clone()));
        pairs.push(("span_kind".to_owned(), span.kind.otlp_name().to_owned()));
        pairs.push(("status_code".to_owned(), span.status.otlp_name().to_owned()));
        for (attribute, label) in &self.dimensions {
            if let Some(value) = find_attribute(attribute, [resource, &span.attributes]) {
                pairs.push((label.clone(), value.to_text()));
            }
        }
        pairs.retain(|(_, v)| !v.is_empty());
        Labels::new(pairs)
    }

    pub fn observe(&self, registry: &mut Registry, span: &Span, now_ms: UnixMillis) {
        let labels = self.labels(span);
        let seconds = span.duration_nanos() as f64 / 1e9;
        registry.inc(self.calls, &labels, 1.0, now_ms);
        registry.observe(self.latency, &labels, seconds, span.trace_id, now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dimension_named_like_an_intrinsic_gets_underscores() {
        assert_eq!(dimension_label("http.target"), "http_target");
        assert_eq!(dimension_label("service"), "__service");
        assert_eq!(dimension_label("status.code"), "__status_code");
    }
}
