//! Tempo's metrics-generator registry: cumulative counters and classic
//! histograms keyed by their labels, rendered every collection interval as
//! samples stamped with the collection time, bounded by an active-series cap.

use std::collections::HashMap;

use lab_signals::{Exemplar, Labels, MetricMetadata, MetricType, Sample, TraceId, UnixMillis};

use super::GeneratedSamples;

/// What a series past the cap is counted under, as Tempo's limiter does: the
/// data is kept in aggregate, its identity is lost.
const OVERFLOW: (&str, &str) = ("metric_overflow", "true");

/// Tempo's label name rule (Prometheus' `strutil.SanitizeLabelName`):
/// anything outside `[a-zA-Z0-9_]`, and a leading digit, becomes `_`.
pub fn sanitize_label_name(name: &str) -> String {
    name.char_indices()
        .map(|(i, c)| {
            if c.is_ascii_alphabetic() || c == '_' || (c.is_ascii_digit() && i > 0) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `count` bounds from `start`, each `factor` times the one before
/// (Prometheus' `ExponentialBuckets`, which Tempo's defaults are made with).
pub fn exponential_buckets(start: f64, factor: f64, count: usize) -> Vec<f64> {
    std::iter::successors(Some(start), |b| Some(b * factor))
        .take(count)
        .collect()
}

#[derive(Debug, Clone, Copy)]
pub struct CounterId(usize);

#[derive(Debug, Clone, Copy)]
pub struct HistogramId(usize);

struct CounterSeries {
    labels: Labels,
    value: f64,
    updated_ms: UnixMillis,
    /// Not collected yet: its first collection writes a 0 before the value,
    /// so `rate()` sees the first increment instead of a series from nowhere.
    fresh: bool,
}

struct Counter {
    name: &'static str,
    help: &'static str,
    series: HashMap<Labels, CounterSeries>,
}

struct HistogramSeries {
    count_labels: Labels,
    sum_labels: Labels,
    bucket_labels: Vec<Labels>,
    count: f64,
    sum: f64,
    /// Cumulative, one per bound, `+Inf` last.
    buckets: Vec<f64>,
    /// The last trace seen in each bucket since the last collection.
    exemplars: Vec<Option<(TraceId, f64)>>,
    updated_ms: UnixMillis,
    fresh: bool,
}

impl HistogramSeries {
    fn record(&mut self, bounds: &[f64], value: f64, trace_id: TraceId, now_ms: UnixMillis) {
        self.count += 1.0;
        self.sum += value;
        for (bucket, bound) in self.buckets.iter_mut().zip(bounds) {
            if value <= *bound {
                *bucket += 1.0;
            }
        }
        let at = bounds.partition_point(|b| *b < value);
        self.exemplars[at] = Some((trace_id, value));
        self.updated_ms = now_ms;
    }
}

struct Histogram {
    name: &'static str,
    help: &'static str,
    /// Upper bounds, `+Inf` last.
    bounds: Vec<f64>,
    le: Vec<String>,
    series: HashMap<Labels, HistogramSeries>,
}

impl Histogram {
    /// Prometheus series per label set: `_sum`, `_count` and each bucket.
    fn cost(&self) -> usize {
        2 + self.bounds.len()
    }
}

/// Counts for `GeneratorStats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistryStats {
    pub active_series: usize,
    /// Series that arrived past the cap and went into the overflow series.
    pub series_limited: u64,
}

pub struct Registry {
    external_labels: Vec<(String, String)>,
    max_active_series: usize,
    active_series: usize,
    series_limited: u64,
    counters: Vec<Counter>,
    histograms: Vec<Histogram>,
    /// No initial 0 goes before this: samples before a restart belong to
    /// the previous run's counters.
    started_ms: UnixMillis,
}

impl Registry {
    /// `max_active_series` counts Prometheus series, as Tempo does; 0 is
    /// unlimited.
    pub fn new(
        external_labels: Vec<(String, String)>,
        max_active_series: usize,
        started_ms: UnixMillis,
    ) -> Registry {
        Registry {
            external_labels,
            max_active_series,
            active_series: 0,
            series_limited: 0,
            counters: Vec::new(),
            histograms: Vec::new(),
            started_ms,
        }
    }

    pub fn counter(&mut self, name: &'static str, help: &'static str) -> CounterId {
        self.counters.push(Counter {
            name,
            help,
            series: HashMap::new(),
        });
        CounterId(self.counters.len() - 1)
    }

    /// `bounds` without `+Inf`, which is added.
    pub fn histogram(
        &mut self,
        name: &'static str,
        help: &'static str,
        bounds: &[f64],
    ) -> HistogramId {
        let mut bounds = bounds.to_vec();
        bounds.push(f64::INFINITY);
        let le = bounds.iter().map(|b| format_bound(*b)).collect();
        self.histograms.push(Histogram {
            name,
            help,
            bounds,
            le,
            series: HashMap::new(),
        });
        HistogramId(self.histograms.len() - 1)
    }

    pub fn stats(&self) -> RegistryStats {
        RegistryStats {
            active_series: self.active_series,
            series_limited: self.series_limited,
        }
    }

    /// The labels a new series is kept under: its own while the cap allows,
    /// else the overflow series'.
    fn admit(&mut self, labels: Labels, cost: usize) -> Labels {
        let overflow = Labels::from_pairs([OVERFLOW]);
        if labels == overflow {
            return labels;
        }
        if self.max_active_series != 0 && self.active_series + cost > self.max_active_series {
            self.series_limited += cost as u64;
            return overflow;
        }
        self.active_series += cost;
        labels
    }

    /// `labels` with the metric's name and the external labels.
    fn series_labels(&self, name: &str, labels: &Labels) -> Labels {
        Labels::new(
            labels
                .iter()
                .chain(
                    self.external_labels
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str())),
                )
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .chain([("__name__".to_owned(), name.to_owned())]),
        )
    }

    pub fn inc(&mut self, id: CounterId, labels: &Labels, by: f64, now_ms: UnixMillis) {
        if let Some(series) = self.counters[id.0].series.get_mut(labels) {
            series.value += by;
            series.updated_ms = now_ms;
            return;
        }
        let labels = self.admit(labels.clone(), 1);
        let series_labels = self.series_labels(self.counters[id.0].name, &labels);
        let series = self.counters[id.0]
            .series
            .entry(labels)
            .or_insert_with(|| CounterSeries {
                labels: series_labels,
                value: 0.0,
                updated_ms: now_ms,
                fresh: true,
            });
        series.value += by;
        series.updated_ms = now_ms;
    }

    pub fn observe(
        &mut self,
        id: HistogramId,
        labels: &Labels,
        value: f64,
        trace_id: TraceId,
        now_ms: UnixMillis,
    ) {
        let histogram = &mut self.histograms[id.0];
        if let Some(series) = histogram.series.get_mut(labels) {
            series.record(&histogram.bounds, value, trace_id, now_ms);
            return;
        }
        let cost = histogram.cost();
        let labels = self.admit(labels.clone(), cost);
        let histogram = &self.histograms[id.0];
        let base = self.series_labels(histogram.name, &labels);
        let named = |suffix: &str| base.with("__name__", &format!("{}{suffix}", histogram.name));
        let bucket = named("_bucket");
        let new = HistogramSeries {
            count_labels: named("_count"),
            sum_labels: named("_sum"),
            bucket_labels: histogram
                .le
                .iter()
                .map(|le| bucket.with("le", le))
                .collect(),
            count: 0.0,
            sum: 0.0,
            buckets: vec![0.0; histogram.bounds.len()],
            exemplars: vec![None; histogram.bounds.len()],
            updated_ms: now_ms,
            fresh: true,
        };
        let histogram = &mut self.histograms[id.0];
        // The overflow series may exist already.
        let series = histogram.series.entry(labels).or_insert(new);
        series.record(&histogram.bounds, value, trace_id, now_ms);
    }

    /// Forgets series not updated since `cutoff_ms` (Tempo's stale series).
    pub fn remove_stale(&mut self, cutoff_ms: UnixMillis) {
        let overflow = Labels::from_pairs([OVERFLOW]);
        let mut freed = 0;
        for counter in &mut self.counters {
            counter.series.retain(|labels, s| {
                let keep = s.updated_ms >= cutoff_ms;
                if !keep && *labels != overflow {
                    freed += 1;
                }
                keep
            });
        }
        for histogram in &mut self.histograms {
            let cost = histogram.cost();
            histogram.series.retain(|labels, s| {
                let keep = s.updated_ms >= cutoff_ms;
                if !keep && *labels != overflow {
                    freed += cost;
                }
                keep
            });
        }
        self.active_series -= freed;
    }

    /// Every series' current value at `now_ms`, with a 0 before the first
    /// value of a new series and each bucket's exemplar since the last
    /// collection.
    pub fn collect(&mut self, now_ms: UnixMillis) -> GeneratedSamples {
        // Tempo writes the 0 one second before the minute the collection
        // falls in, so no downsampling merges it with the first value.
        let initial_ms = (now_ms - now_ms.rem_euclid(60_000) - 1000)
            .max(self.started_ms)
            .min(now_ms - 1);
        let zero = Sample {
            t: initial_ms,
            v: 0.0,
        };
        let at = |v: f64| Sample { t: now_ms, v };
        let mut out = GeneratedSamples::default();
        for counter in &mut self.counters {
            if !counter.series.is_empty() {
                out.metadata
                    .push(metadata(counter.name, MetricType::Counter, counter.help));
            }
            for series in counter.series.values_mut() {
                if std::mem::take(&mut series.fresh) {
                    out.samples.push((series.labels.clone(), zero));
                }
                out.samples.push((series.labels.clone(), at(series.value)));
            }
        }
        for histogram in &mut self.histograms {
            if !histogram.series.is_empty() {
                out.metadata.push(metadata(
                    histogram.name,
                    MetricType::Histogram,
                    histogram.help,
                ));
            }
            for series in histogram.series.values_mut() {
                let fresh = std::mem::take(&mut series.fresh);
                if fresh {
                    out.samples.push((series.count_labels.clone(), zero));
                }
                out.samples
                    .push((series.sum_labels.clone(), at(series.sum)));
                out.samples
                    .push((series.count_labels.clone(), at(series.count)));
                for (i, labels) in series.bucket_labels.iter().enumerate() {
                    if fresh {
                        out.samples.push((labels.clone(), zero));
                    }
                    out.samples.push((labels.clone(), at(series.buckets[i])));
                    if let Some((trace_id, value)) = series.exemplars[i].take() {
                        out.exemplars.push((
                            labels.clone(),
                            Exemplar {
                                labels: Labels::from_pairs([(
                                    "traceID",
                                    trace_id.to_string().as_str(),
                                )]),
                                value,
                                t: now_ms,
                            },
                        ));
                    }
                }
            }
        }
        out
    }
}

fn metadata(name: &str, metric_type: MetricType, help: &str) -> (String, MetricMetadata) {
    (
        name.to_owned(),
        MetricMetadata {
            metric_type,
            help: help.to_owned(),
            unit: String::new(),
        },
    )
}

/// `le` as Tempo writes it (Go's shortest decimal form, `+Inf`).
fn format_bound(bound: f64) -> String {
    if bound == f64::INFINITY {
        "+Inf".to_owned()
    } else {
        bound.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names_are_sanitised_as_tempo_does() {
        assert_eq!(sanitize_label_name("http.method"), "http_method");
        assert_eq!(sanitize_label_name("service.version"), "service_version");
        assert_eq!(sanitize_label_name("http.status-code"), "http_status_code");
        assert_eq!(sanitize_label_name("2xx"), "_xx");
        assert_eq!(sanitize_label_name("db_name9"), "db_name9");
    }

    #[test]
    fn default_buckets_print_like_tempo() {
        let le: Vec<String> = exponential_buckets(0.002, 2.0, 14)
            .into_iter()
            .map(format_bound)
            .collect();
        assert_eq!(le.first().unwrap(), "0.002");
        assert_eq!(le.last().unwrap(), "16.384");
        let graph: Vec<String> = exponential_buckets(0.1, 2.0, 8)
            .into_iter()
            .map(format_bound)
            .collect();
        assert_eq!(
            graph,
            ["0.1", "0.2", "0.4", "0.8", "1.6", "3.2", "6.4", "12.8"]
        );
    }

    #[test]
    fn a_new_counter_starts_at_zero_and_the_cap_overflows() {
        let mut registry = Registry::new(vec![("source".into(), "tempo".into())], 2, 0);
        let calls = registry.counter("calls_total", "");
        let now = 10 * 60_000 + 30_000;
        for beast in ["owlbear", "unicorn", "manticore"] {
            registry.inc(calls, &Labels::from_pairs([("beast", beast)]), 1.0, now);
        }
        registry.inc(calls, &Labels::from_pairs([("beast", "owlbear")]), 1.0, now);
        assert_eq!(registry.stats().series_limited, 1);
        let out = registry.collect(now);
        let owlbear: Vec<Sample> = out
            .samples
            .iter()
            .filter(|(l, _)| l.get("beast") == Some("owlbear"))
            .map(|(l, s)| {
                assert_eq!(l.get("source"), Some("tempo"));
                assert_eq!(l.get("__name__"), Some("calls_total"));
                *s
            })
            .collect();
        assert_eq!(
            owlbear,
            [
                Sample {
                    t: 10 * 60_000 - 1000,
                    v: 0.0
                },
                Sample { t: now, v: 2.0 }
            ]
        );
        assert!(
            out.samples
                .iter()
                .any(|(l, s)| l.get("metric_overflow") == Some("true") && s.v == 1.0)
        );
        // Collected once: no second 0.
        assert_eq!(registry.collect(now + 15_000).samples.len(), 3);
    }

    #[test]
    fn a_histogram_keeps_one_exemplar_per_bucket_until_collected() {
        let mut registry = Registry::new(Vec::new(), 0, 0);
        let latency = registry.histogram("latency", "", &[0.1, 1.0]);
        let trace = TraceId([7; 16]);
        registry.observe(latency, &Labels::default(), 0.5, trace, 1000);
        registry.observe(latency, &Labels::default(), 2.0, trace, 1000);
        let out = registry.collect(70_000);
        let value = |le: &str| {
            out.samples
                .iter()
                .rev()
                .find(|(l, _)| l.get("le") == Some(le))
                .unwrap()
                .1
                .v
        };
        assert_eq!((value("0.1"), value("1"), value("+Inf")), (0.0, 1.0, 2.0));
        assert_eq!(out.exemplars.len(), 2);
        assert_eq!(
            out.exemplars[0].1.labels.get("traceID"),
            Some(trace.to_string().as_str())
        );
        assert!(registry.collect(85_000).exemplars.is_empty());
        assert_eq!(registry.stats().active_series, 5);
        registry.remove_stale(2000);
        assert_eq!(registry.stats().active_series, 0);
    }
}
