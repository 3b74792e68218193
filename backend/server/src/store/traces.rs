//! Spans grouped by trace, indexed by trace id and by time, for Tempo's
//! trace-by-id and TraceQL search.

use std::collections::{BTreeSet, HashMap};

use lab_signals::{Span, Trace, TraceId, TraceSource, UnixNanos};

use super::footprint;

/// A trace as stored: its spans and the bounds the time index uses.
struct StoredTrace {
    trace: Trace,
    /// Earliest span start: the trace's key in the time index.
    start: UnixNanos,
    bytes: usize,
}

#[derive(Default)]
pub struct TraceStore {
    traces: HashMap<TraceId, StoredTrace>,
    /// (start, id) in time order, for windows and for evicting the oldest.
    by_start: BTreeSet<(UnixNanos, TraceId)>,
    span_count: usize,
    bytes: usize,
}

impl TraceStore {
    pub fn insert(&mut self, span: Span) {
        let own = footprint::span(&span);
        self.span_count += 1;
        let id = span.trace_id;
        let bytes = match self.traces.get_mut(&id) {
            Some(stored) => {
                if span.start < stored.start {
                    self.by_start.remove(&(stored.start, id));
                    stored.start = span.start;
                    self.by_start.insert((stored.start, id));
                }
                let spans = &mut stored.trace.spans;
                let before = footprint::buffer::<Span>(spans.capacity());
                spans.push(span);
                let grown = footprint::buffer::<Span>(spans.capacity()) - before;
                stored.bytes += own + grown;
                own + grown
            }
            None => {
                self.by_start.insert((span.start, id));
                let bytes =
                    own + footprint::buffer::<Span>(1) + footprint::trace_entry::<StoredTrace>();
                self.traces.insert(
                    id,
                    StoredTrace {
                        start: span.start,
                        bytes,
                        trace: Trace {
                            trace_id: id,
                            spans: vec![span],
                        },
                    },
                );
                bytes
            }
        };
        self.bytes += bytes;
    }

    pub fn get(&self, id: &TraceId) -> Option<&Trace> {
        self.traces.get(id).map(|s| &s.trace)
    }

    pub fn span_count(&self) -> usize {
        self.span_count
    }

    pub fn trace_count(&self) -> usize {
        self.traces.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The earliest trace start, if any.
    pub fn oldest(&self) -> Option<UnixNanos> {
        self.by_start.first().map(|(start, _)| *start)
    }

    /// Drops every trace that started before `cutoff`; returns bytes freed.
    pub fn evict_before(&mut self, cutoff: UnixNanos) -> usize {
        let mut freed = 0;
        while let Some(&(start, id)) = self.by_start.first() {
            if start >= cutoff {
                break;
            }
            self.by_start.pop_first();
            if let Some(stored) = self.traces.remove(&id) {
                freed += stored.bytes;
                self.span_count -= stored.trace.spans.len();
            }
        }
        self.bytes -= freed;
        freed
    }
}

impl TraceSource for TraceStore {
    /// Most recent first, so a search with a limit keeps the newest traces,
    /// as Tempo's results do.
    fn for_each_trace(&self, start: UnixNanos, end: UnixNanos, visit: &mut dyn FnMut(&Trace)) {
        // A trace that started before `start` may still have spans inside
        // the window; traces are short, so look back a little.
        const LOOKBACK: UnixNanos = 5 * 60 * 1_000_000_000;
        let from = (start.saturating_sub(LOOKBACK), TraceId([0; 16]));
        let to = (end, TraceId([0xff; 16]));
        for (_, id) in self.by_start.range(from..=to).rev() {
            let trace = &self.traces[id].trace;
            if trace
                .spans
                .iter()
                .any(|s| s.start >= start && s.start <= end)
            {
                visit(trace);
            }
        }
    }
}
