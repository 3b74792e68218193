//! What Tempo's metrics-generator and Alloy's `spanlogs` connector derive
//! from spans, so the original's dashboards read the embedded backend as
//! they read the docker stack: span metrics and service graphs (series
//! kept in memory, fed by spans as they arrive, written into the store
//! every collection interval through the write-ahead log), and autologs
//! (a log line per root span, derived again on replay).

pub mod autologs;
mod registry;
mod service_graph;
mod span_metrics;

use std::time::Duration;

use lab_signals::{Exemplar, Labels, MetricMetadata, Sample, Span, UnixMillis};
use serde::{Deserialize, Serialize};

use registry::Registry;
use service_graph::ServiceGraph;
use span_metrics::SpanMetrics;

/// How the generator runs: Tempo's defaults, with the dimensions and
/// external labels the lab's `tempo.yaml` gives the real one.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    /// How often the series are written into the store (Tempo's
    /// `collection_interval`): 5 s, as the original's `tempo.yaml` and the
    /// lab's own set it, so a dashboard shows a fault within seconds.
    pub collection_interval: Duration,
    /// A series not updated for this long is forgotten (`stale_duration`).
    pub stale_after: Duration,
    /// Prometheus series the generator keeps (`max_active_series`; a
    /// histogram's label set counts its buckets, sum and count); new label
    /// sets past it go into the `metric_overflow="true"` series.
    pub max_active_series: usize,
    /// How long half an edge waits for the other span (`wait`).
    pub edge_wait: Duration,
    /// Half edges kept waiting at once (`max_items`).
    pub max_pending_edges: usize,
    /// Span or resource attributes that become labels of both processors.
    pub dimensions: Vec<String>,
    /// Labels on every generated series.
    pub external_labels: Vec<(String, String)>,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            collection_interval: Duration::from_secs(5),
            stale_after: Duration::from_secs(15 * 60),
            max_active_series: 50_000,
            edge_wait: Duration::from_secs(10),
            max_pending_edges: 10_000,
            // The original's four, and `beast`, as docker/tempo/tempo.yaml
            // configures the real generator.
            dimensions: [
                "http.method",
                "http.target",
                "http.status_code",
                "service.version",
                "beast",
            ]
            .map(String::from)
            .to_vec(),
            external_labels: vec![
                ("source".into(), "tempo".into()),
                ("group".into(), "mythical".into()),
            ],
        }
    }
}

/// One collection as the write-ahead log keeps it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GeneratedSamples {
    pub samples: Vec<(Labels, Sample)>,
    pub exemplars: Vec<(Labels, Exemplar)>,
    pub metadata: Vec<(String, MetricMetadata)>,
}

impl GeneratedSamples {
    pub fn into_batch(self) -> lab_ingest::MetricBatch {
        lab_ingest::MetricBatch {
            points: self.samples,
            exemplars: self.exemplars,
            metadata: self.metadata,
        }
    }
}

/// What the generator holds and what it turned away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GeneratorStats {
    pub active_series: usize,
    /// Prometheus series that came past the cap and went into the overflow
    /// series instead.
    pub series_limited: u64,
    pub pending_edges: usize,
    /// Half edges that waited in vain and named no peer.
    pub expired_edges: u64,
    /// Spans refused because the pending edges were full.
    pub dropped_edge_spans: u64,
}

pub struct Generator {
    config: GeneratorConfig,
    registry: Registry,
    span_metrics: SpanMetrics,
    service_graph: ServiceGraph,
}

impl Generator {
    pub fn new(config: GeneratorConfig, now_ms: UnixMillis) -> Generator {
        let mut registry = Registry::new(
            config.external_labels.clone(),
            config.max_active_series,
            now_ms,
        );
        let span_metrics = SpanMetrics::new(&mut registry, &config.dimensions);
        let service_graph = ServiceGraph::new(
            &mut registry,
            &config.dimensions,
            config.edge_wait,
            config.max_pending_edges,
        );
        Generator {
            config,
            registry,
            span_metrics,
            service_graph,
        }
    }

    pub fn config(&self) -> &GeneratorConfig {
        &self.config
    }

    pub fn observe(&mut self, spans: &[Span], now_ms: UnixMillis) {
        for span in spans {
            self.span_metrics.observe(&mut self.registry, span, now_ms);
            self.service_graph.observe(&mut self.registry, span, now_ms);
        }
    }

    /// Settles the edges whose wait is over, forgets stale series, and
    /// renders every series at `now_ms`.
    pub fn collect(&mut self, now_ms: UnixMillis) -> GeneratedSamples {
        self.service_graph.expire(&mut self.registry, now_ms);
        self.registry
            .remove_stale(now_ms - self.config.stale_after.as_millis() as i64);
        self.registry.collect(now_ms)
    }

    pub fn stats(&self) -> GeneratorStats {
        let registry = self.registry.stats();
        let graph = self.service_graph.stats();
        GeneratorStats {
            active_series: registry.active_series,
            series_limited: registry.series_limited,
            pending_edges: graph.pending_edges,
            expired_edges: graph.expired_edges,
            dropped_edge_spans: graph.dropped_spans,
        }
    }
}
