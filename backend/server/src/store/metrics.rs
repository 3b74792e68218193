//! Samples and exemplars in series keyed by their label set (with
//! `__name__`), each in time order, for PromQL.

use std::collections::HashMap;

use lab_signals::{
    Exemplar, Labels, MetricMetadata, Sample, SeriesSource, SeriesView, UnixMillis, window,
};

use super::footprint;

struct StoredSeries {
    labels: Labels,
    samples: Vec<Sample>,
    exemplars: Vec<Exemplar>,
}

#[derive(Default)]
pub struct MetricStore {
    series: Vec<StoredSeries>,
    index: HashMap<Labels, usize>,
    metadata: HashMap<String, MetricMetadata>,
    sample_count: usize,
    bytes: usize,
}

/// Exemplars kept per series: enough to find a trace for any recent bucket.
const MAX_EXEMPLARS_PER_SERIES: usize = 256;

impl MetricStore {
    fn slot(&mut self, labels: Labels) -> usize {
        if let Some(&slot) = self.index.get(&labels) {
            return slot;
        }
        let slot = self.series.len();
        self.bytes += footprint::keyed_labels::<StoredSeries>(&labels);
        self.index.insert(labels.clone(), slot);
        self.series.push(StoredSeries {
            labels,
            samples: Vec::new(),
            exemplars: Vec::new(),
        });
        slot
    }

    pub fn insert_sample(&mut self, labels: Labels, sample: Sample) {
        let slot = self.slot(labels);
        let samples = &mut self.series[slot].samples;
        let before = footprint::buffer::<Sample>(samples.capacity());
        match samples.last() {
            // A repeated timestamp (the same scrape stored twice) replaces.
            Some(last) if last.t == sample.t => {
                let at = samples.len() - 1;
                samples[at] = sample;
                return;
            }
            Some(last) if last.t > sample.t => {
                let at = samples.partition_point(|s| s.t < sample.t);
                if samples.get(at).is_some_and(|s| s.t == sample.t) {
                    samples[at] = sample;
                    return;
                }
                samples.insert(at, sample);
            }
            _ => samples.push(sample),
        }
        self.sample_count += 1;
        self.bytes += footprint::buffer::<Sample>(samples.capacity()) - before;
    }

    pub fn insert_exemplar(&mut self, labels: Labels, exemplar: Exemplar) {
        let slot = self.slot(labels);
        let exemplars = &mut self.series[slot].exemplars;
        if exemplars.last().is_some_and(|last| last == &exemplar) {
            return;
        }
        self.bytes += footprint::exemplar(&exemplar);
        let at = exemplars.partition_point(|e| e.t <= exemplar.t);
        exemplars.insert(at, exemplar);
        if exemplars.len() > MAX_EXEMPLARS_PER_SERIES {
            let gone = exemplars.remove(0);
            self.bytes -= footprint::exemplar(&gone);
        }
    }

    pub fn set_metadata(&mut self, name: String, metadata: MetricMetadata) {
        self.metadata.insert(name, metadata);
    }

    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    pub fn sample_count(&self) -> usize {
        self.sample_count
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn oldest(&self) -> Option<UnixMillis> {
        self.series
            .iter()
            .filter_map(|s| s.samples.first())
            .map(|s| s.t)
            .min()
    }

    /// Drops samples and exemplars older than `cutoff`, and series left
    /// empty.
    pub fn evict_before(&mut self, cutoff: UnixMillis) -> usize {
        let mut freed = 0;
        for series in &mut self.series {
            let old = series.samples.partition_point(|s| s.t < cutoff);
            if old > 0 {
                let before = footprint::buffer::<Sample>(series.samples.capacity());
                series.samples.drain(..old);
                // A series that shed most of its samples gives the room back.
                if series.samples.len() < series.samples.capacity() / 4 {
                    series.samples.shrink_to_fit();
                }
                self.sample_count -= old;
                freed += before - footprint::buffer::<Sample>(series.samples.capacity());
            }
            let old = series.exemplars.partition_point(|e| e.t < cutoff);
            freed += series.exemplars[..old]
                .iter()
                .map(footprint::exemplar)
                .sum::<usize>();
            series.exemplars.drain(..old);
        }
        if self
            .series
            .iter()
            .any(|s| s.samples.is_empty() && s.exemplars.is_empty())
        {
            for series in self
                .series
                .iter()
                .filter(|s| s.samples.is_empty() && s.exemplars.is_empty())
            {
                freed += footprint::buffer::<Sample>(series.samples.capacity())
                    + footprint::keyed_labels::<StoredSeries>(&series.labels);
            }
            self.series
                .retain(|s| !(s.samples.is_empty() && s.exemplars.is_empty()));
            self.index = self
                .series
                .iter()
                .enumerate()
                .map(|(slot, s)| (s.labels.clone(), slot))
                .collect();
        }
        self.bytes -= freed;
        freed
    }
}

impl SeriesSource for MetricStore {
    fn for_each_series(
        &self,
        select: &dyn Fn(&Labels) -> bool,
        start: UnixMillis,
        end: UnixMillis,
        visit: &mut dyn FnMut(SeriesView<'_>),
    ) {
        for series in self.series.iter().filter(|s| select(&s.labels)) {
            visit(SeriesView {
                labels: &series.labels,
                samples: window(&series.samples, start, end, |s| s.t),
                exemplars: window(&series.exemplars, start, end, |e| e.t),
            });
        }
    }

    fn metadata(&self) -> Vec<(String, MetricMetadata)> {
        let mut all: Vec<_> = self
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}
