//! Approximate heap bytes of stored items: what the size bound counts.
//! Close enough to steer eviction; the benchmark measures the real RSS.

use lab_signals::{AttrValue, Attributes, Exemplar, Labels, LogEntry, Span};

const STRING: usize = std::mem::size_of::<String>();

fn value(v: &AttrValue) -> usize {
    match v {
        AttrValue::Str(s) => s.capacity(),
        _ => 0,
    }
}

fn attributes(attrs: &Attributes) -> usize {
    attrs
        .iter()
        .map(|(k, v)| k.len() + value(v) + STRING + std::mem::size_of::<AttrValue>())
        .sum()
}

pub fn labels(labels: &Labels) -> usize {
    labels
        .iter()
        .map(|(k, v)| k.len() + v.len() + 2 * STRING)
        .sum()
}

pub fn span(span: &Span) -> usize {
    std::mem::size_of::<Span>()
        + span.name.capacity()
        + span.status_message.capacity()
        + attributes(&span.attributes)
        + span
            .events
            .iter()
            .map(|e| e.name.capacity() + attributes(&e.attributes) + 48)
            .sum::<usize>()
        + span
            .links
            .iter()
            .map(|l| attributes(&l.attributes) + 48)
            .sum::<usize>()
}

pub fn log_entry(entry: &LogEntry) -> usize {
    std::mem::size_of::<LogEntry>() + entry.line.capacity() + labels(&entry.metadata)
}

pub fn exemplar(exemplar: &Exemplar) -> usize {
    std::mem::size_of::<Exemplar>() + labels(&exemplar.labels)
}
