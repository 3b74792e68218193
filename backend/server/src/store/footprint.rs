//! Heap bytes of stored items: what the size bound counts. Each count is
//! what glibc's malloc hands out for it (a chunk per allocation, its header
//! and alignment included) and what the store's own containers add (a
//! vector's unused capacity, an index entry), so the bound is close to the
//! memory the backend really holds; a test checks it against the
//! allocator's own figure.

use std::mem::size_of;

use lab_signals::{
    AttrValue, Attributes, Exemplar, Labels, LogEntry, Name, Span, TraceId, UnixNanos,
};

/// The chunk glibc's malloc takes for a request of `n` bytes: an 8-byte
/// header, 16-byte alignment, 32 bytes at least; no chunk for nothing.
pub fn heap(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        ((n + 8 + 15) & !15).max(32)
    }
}

/// A vector's buffer of `capacity` items of `T`.
pub fn buffer<T>(capacity: usize) -> usize {
    heap(capacity * size_of::<T>())
}

/// A hash map's share per entry of `K` and `V`: the slot, its control
/// byte, and the slack of a table kept at most 7/8 full (halfway between
/// growths on average).
pub fn map_entry<K, V>() -> usize {
    (size_of::<(K, V)>() + 1) * 8 / 6
}

/// A B-tree set's share per key: leaves hold 11 keys and are about
/// two-thirds full.
pub fn tree_entry<K>() -> usize {
    size_of::<K>() * 3 / 2 + 8
}

fn value(v: &AttrValue) -> usize {
    match v {
        AttrValue::Str(s) => heap(s.capacity()),
        _ => 0,
    }
}

fn attributes(attrs: &Attributes) -> usize {
    buffer::<(Name, AttrValue)>(attrs.0.capacity())
        + attrs
            .0
            .iter()
            .map(|(k, v)| heap(k.own_bytes()) + value(v))
            .sum::<usize>()
}

/// A label set's heap: its pairs' buffer, each value, and each name that
/// is not shared.
pub fn labels(labels: &Labels) -> usize {
    buffer::<(Name, String)>(labels.len())
        + labels
            .names()
            .map(|(k, v)| heap(k.own_bytes()) + heap(v.len()))
            .sum::<usize>()
}

/// A span's own heap, outside the trace's vector that holds it.
pub fn span(span: &Span) -> usize {
    heap(span.name.capacity())
        + heap(span.status_message.capacity())
        + attributes(&span.attributes)
        + buffer::<lab_signals::SpanEvent>(span.events.capacity())
        + span
            .events
            .iter()
            .map(|e| heap(e.name.capacity()) + attributes(&e.attributes))
            .sum::<usize>()
        + buffer::<lab_signals::SpanLink>(span.links.capacity())
        + span
            .links
            .iter()
            .map(|l| attributes(&l.attributes))
            .sum::<usize>()
}

/// What a trace costs beyond its spans: its entry in the id index and in
/// the time index.
pub fn trace_entry<Stored>() -> usize {
    map_entry::<TraceId, Stored>() + tree_entry::<(UnixNanos, TraceId)>()
}

/// A log line's own heap, outside the stream's vector that holds it.
pub fn log_entry(entry: &LogEntry) -> usize {
    heap(entry.line.capacity()) + labels(&entry.metadata)
}

/// An exemplar, inline and its labels (a series keeps few).
pub fn exemplar(exemplar: &Exemplar) -> usize {
    size_of::<Exemplar>() + labels(&exemplar.labels)
}

/// A stream's or series' label set, held twice (by the entry and as the
/// index's key), and its index entry.
pub fn keyed_labels<Slot>(set: &Labels) -> usize {
    2 * labels(set) + map_entry::<Labels, usize>() + size_of::<Slot>()
}
