//! Log lines in streams keyed by their label set, each stream in time
//! order, for LogQL.

use std::collections::HashMap;

use lab_signals::{Labels, LogEntry, LogSource, StreamView, UnixNanos, window};

use super::footprint;

struct StoredStream {
    labels: Labels,
    entries: Vec<LogEntry>,
    bytes: usize,
}

#[derive(Default)]
pub struct LogStore {
    /// Streams in creation order; `index` finds one by its labels.
    streams: Vec<StoredStream>,
    index: HashMap<Labels, usize>,
    line_count: usize,
    bytes: usize,
}

impl LogStore {
    pub fn insert(&mut self, labels: Labels, entry: LogEntry) {
        let own = footprint::log_entry(&entry);
        self.line_count += 1;
        let slot = match self.index.get(&labels) {
            Some(&slot) => slot,
            None => {
                let slot = self.streams.len();
                self.bytes += footprint::keyed_labels::<StoredStream>(&labels);
                self.index.insert(labels.clone(), slot);
                self.streams.push(StoredStream {
                    labels,
                    entries: Vec::new(),
                    bytes: 0,
                });
                slot
            }
        };
        let stream = &mut self.streams[slot];
        let before = footprint::buffer::<LogEntry>(stream.entries.capacity());
        // Lines nearly always arrive in order; the rare late one is placed
        // where it belongs so every stream stays sorted.
        if stream.entries.last().is_none_or(|last| last.ts <= entry.ts) {
            stream.entries.push(entry);
        } else {
            let at = stream.entries.partition_point(|e| e.ts <= entry.ts);
            stream.entries.insert(at, entry);
        }
        let bytes = own + footprint::buffer::<LogEntry>(stream.entries.capacity()) - before;
        stream.bytes += bytes;
        self.bytes += bytes;
    }

    pub fn line_count(&self) -> usize {
        self.line_count
    }

    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn oldest(&self) -> Option<UnixNanos> {
        self.streams
            .iter()
            .filter_map(|s| s.entries.first())
            .map(|e| e.ts)
            .min()
    }

    /// Drops every line older than `cutoff`, and streams left empty.
    pub fn evict_before(&mut self, cutoff: UnixNanos) -> usize {
        let mut freed = 0;
        for stream in &mut self.streams {
            let old = stream.entries.partition_point(|e| e.ts < cutoff);
            if old > 0 {
                let before = footprint::buffer::<LogEntry>(stream.entries.capacity());
                let mut gone: usize = stream.entries[..old].iter().map(footprint::log_entry).sum();
                stream.entries.drain(..old);
                // A stream that shed most of its lines gives the room back.
                if stream.entries.len() < stream.entries.capacity() / 4 {
                    stream.entries.shrink_to_fit();
                }
                gone += before - footprint::buffer::<LogEntry>(stream.entries.capacity());
                stream.bytes -= gone;
                freed += gone;
                self.line_count -= old;
            }
        }
        if self.streams.iter().any(|s| s.entries.is_empty()) {
            for stream in self.streams.iter().filter(|s| s.entries.is_empty()) {
                freed += stream.bytes + footprint::keyed_labels::<StoredStream>(&stream.labels);
            }
            self.streams.retain(|s| !s.entries.is_empty());
            self.index = self
                .streams
                .iter()
                .enumerate()
                .map(|(slot, s)| (s.labels.clone(), slot))
                .collect();
        }
        self.bytes -= freed;
        freed
    }
}

impl LogSource for LogStore {
    fn for_each_stream(
        &self,
        select: &dyn Fn(&Labels) -> bool,
        start: UnixNanos,
        end: UnixNanos,
        visit: &mut dyn FnMut(StreamView<'_>),
    ) {
        for stream in self.streams.iter().filter(|s| select(&s.labels)) {
            let entries = window(&stream.entries, start, end, |e| e.ts);
            if !entries.is_empty() {
                visit(StreamView {
                    labels: &stream.labels,
                    entries,
                });
            }
        }
    }
}
