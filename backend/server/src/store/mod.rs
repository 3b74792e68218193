//! What the backend keeps in memory: traces, log streams, metric series
//! and profiles, each behind its own lock so a long query on one signal never
//! holds up ingest of another, and bounded by age and by total size.

mod footprint;
mod logs;
mod metrics;
mod traces;

use std::sync::{RwLock, RwLockReadGuard};
use std::time::Duration;

use lab_profiles::{Profile, ProfileStore};
use lab_signals::{Exemplar, Labels, LogEntry, MetricMetadata, Sample, Span, UnixNanos};
use serde::Serialize;

pub use logs::LogStore;
pub use metrics::MetricStore;
pub use traces::TraceStore;

/// How much the backend keeps.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Data older than this is dropped.
    pub retention: Duration,
    /// Heap bytes of stored data across the four signals, counted as
    /// malloc hands them out; the oldest data goes first when it is
    /// exceeded.
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            retention: Duration::from_secs(24 * 3600),
            max_bytes: 512 * 1024 * 1024,
        }
    }
}

#[derive(Default)]
pub struct Store {
    traces: RwLock<TraceStore>,
    logs: RwLock<LogStore>,
    metrics: RwLock<MetricStore>,
    profiles: RwLock<ProfileStore>,
}

/// Counts for `lab status` and the benchmarks.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StoreStats {
    pub traces: usize,
    pub spans: usize,
    pub log_streams: usize,
    pub log_lines: usize,
    pub series: usize,
    pub samples: usize,
    pub profile_series: usize,
    pub profiles: usize,
    pub bytes: usize,
}

impl Store {
    pub fn add_spans(&self, spans: impl IntoIterator<Item = Span>) {
        let mut traces = self.traces.write().unwrap();
        for span in spans {
            traces.insert(span);
        }
    }

    pub fn add_logs(&self, entries: impl IntoIterator<Item = (Labels, LogEntry)>) {
        let mut logs = self.logs.write().unwrap();
        for (labels, entry) in entries {
            logs.insert(labels, entry);
        }
    }

    pub fn add_metrics(
        &self,
        samples: impl IntoIterator<Item = (Labels, Sample)>,
        exemplars: impl IntoIterator<Item = (Labels, Exemplar)>,
        metadata: impl IntoIterator<Item = (String, MetricMetadata)>,
    ) {
        let mut metrics = self.metrics.write().unwrap();
        for (labels, sample) in samples {
            metrics.insert_sample(labels, sample);
        }
        for (labels, exemplar) in exemplars {
            metrics.insert_exemplar(labels, exemplar);
        }
        for (name, meta) in metadata {
            metrics.set_metadata(name, meta);
        }
    }

    pub fn add_profiles(&self, profiles: impl IntoIterator<Item = Profile>) {
        let mut store = self.profiles.write().unwrap();
        for profile in profiles {
            store.insert(profile);
        }
    }

    pub fn traces(&self) -> RwLockReadGuard<'_, TraceStore> {
        self.traces.read().unwrap()
    }

    pub fn logs(&self) -> RwLockReadGuard<'_, LogStore> {
        self.logs.read().unwrap()
    }

    pub fn metrics(&self) -> RwLockReadGuard<'_, MetricStore> {
        self.metrics.read().unwrap()
    }

    pub fn profiles(&self) -> RwLockReadGuard<'_, ProfileStore> {
        self.profiles.read().unwrap()
    }

    pub fn stats(&self) -> StoreStats {
        let traces = self.traces();
        let logs = self.logs();
        let metrics = self.metrics();
        let profiles = self.profiles();
        StoreStats {
            traces: traces.trace_count(),
            spans: traces.span_count(),
            log_streams: logs.stream_count(),
            log_lines: logs.line_count(),
            series: metrics.series_count(),
            samples: metrics.sample_count(),
            profile_series: profiles.series_count(),
            profiles: profiles.profile_count(),
            bytes: traces.bytes() + logs.bytes() + metrics.bytes() + profiles.bytes(),
        }
    }

    /// Drops what is older than the retention, then the oldest data while
    /// the total exceeds the size bound.
    pub fn enforce(&self, limits: &Limits, now: UnixNanos) {
        let cutoff = now - limits.retention.as_nanos() as i64;
        self.traces.write().unwrap().evict_before(cutoff);
        self.logs.write().unwrap().evict_before(cutoff);
        self.metrics
            .write()
            .unwrap()
            .evict_before(cutoff / 1_000_000);
        self.profiles.write().unwrap().evict_before(cutoff);
        // Over the size bound: cut the oldest minute of whichever signal
        // holds the oldest data, until under.
        const STEP: i64 = 60 * 1_000_000_000;
        loop {
            let stats = self.stats();
            if stats.bytes <= limits.max_bytes {
                return;
            }
            let oldest = [
                self.traces().oldest(),
                self.logs().oldest(),
                self.metrics().oldest().map(|ms| ms * 1_000_000),
                self.profiles().oldest(),
            ];
            let Some((signal, at)) = oldest
                .iter()
                .enumerate()
                .filter_map(|(i, t)| t.map(|t| (i, t)))
                .min_by_key(|(_, t)| *t)
            else {
                return;
            };
            match signal {
                0 => self.traces.write().unwrap().evict_before(at + STEP),
                1 => self.logs.write().unwrap().evict_before(at + STEP),
                2 => self
                    .metrics
                    .write()
                    .unwrap()
                    .evict_before((at + STEP) / 1_000_000),
                _ => self.profiles.write().unwrap().evict_before(at + STEP),
            };
        }
    }
}
