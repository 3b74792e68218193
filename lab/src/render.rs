//! Readable terminal output for query results: aligned tables, and a trace
//! as a waterfall. Colour only on a terminal and never with `NO_COLOR`.

use std::io::IsTerminal;

use crate::query::answer::Results;
use crate::query::{DataAnswer, TraceAnswer, TraceSearch};

/// Whether to colour standard output.
pub fn colour() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
}

fn paint(text: &str, code: &str) -> String {
    if colour() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

pub fn red(text: &str) -> String {
    paint(text, "31")
}

pub fn dim(text: &str) -> String {
    paint(text, "2")
}

pub fn bold(text: &str) -> String {
    paint(text, "1")
}

/// Columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = widths[i].saturating_sub(c.chars().count());
                if i + 1 == cells.len() {
                    c.clone()
                } else {
                    format!("{c}{}", " ".repeat(pad))
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = bold(&line(headers.iter().map(|h| h.to_string()).collect()));
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.clone()));
        out.push('\n');
    }
    out
}

/// `HH:MM:SS.mmm` (UTC) of a Unix time in nanoseconds.
pub fn clock(nanos: i64) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    let millis = nanos.rem_euclid(1_000_000_000) / 1_000_000;
    let day = secs.rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}.{millis:03}",
        day / 3600,
        day % 3600 / 60,
        day % 60
    )
}

/// A duration in the unit that reads best.
pub fn duration(nanos: i64) -> String {
    match nanos {
        n if n < 1_000 => format!("{n}ns"),
        n if n < 1_000_000 => format!("{:.1}µs", n as f64 / 1e3),
        n if n < 1_000_000_000 => format!("{:.1}ms", n as f64 / 1e6),
        n => format!("{:.2}s", n as f64 / 1e9),
    }
}

/// Tempo's search answer as one row per trace.
pub fn traceql(answer: &TraceSearch) -> String {
    if answer.traces.is_empty() {
        return "no traces matched\n".to_owned();
    }
    let rows: Vec<Vec<String>> = answer
        .traces
        .iter()
        .map(|t| {
            vec![
                t.trace_id.clone(),
                clock(t.start_time_unix_nano),
                t.root_service_name.clone(),
                t.root_trace_name.clone(),
                format!("{}ms", t.duration_ms),
                t.matched().to_string(),
            ]
        })
        .collect();
    table(
        &[
            "TRACE ID",
            "START",
            "ROOT SERVICE",
            "ROOT SPAN",
            "DURATION",
            "MATCHED",
        ],
        &rows,
    )
}

/// A Loki or Prometheus answer: log lines, or series with their values.
pub fn data(answer: &DataAnswer) -> String {
    let series = answer.series();
    match answer.data.result_type.as_str() {
        "streams" => {
            let mut lines: Vec<(i64, String, &str)> = series
                .iter()
                .flat_map(|s| {
                    let labels = s.label_text();
                    s.values
                        .iter()
                        .map(move |p| (p.nanos, labels.clone(), p.text.as_str()))
                })
                .collect();
            if lines.is_empty() {
                return "no log lines matched\n".to_owned();
            }
            lines.sort_by_key(|line| std::cmp::Reverse(line.0));
            let rows: Vec<Vec<String>> = lines
                .into_iter()
                .map(|(ts, labels, line)| vec![clock(ts), dim(&labels), line.to_owned()])
                .collect();
            table(&["TIME", "STREAM", "LINE"], &rows)
        }
        "matrix" | "vector" if series.is_empty() => "no series matched\n".to_owned(),
        "matrix" => {
            let rows: Vec<Vec<String>> = series
                .iter()
                .map(|s| {
                    let last = s.values.last().map_or("", |p| p.text.as_str());
                    vec![s.label_text(), s.values.len().to_string(), last.to_owned()]
                })
                .collect();
            table(&["SERIES", "POINTS", "LAST"], &rows)
        }
        "vector" => {
            let rows: Vec<Vec<String>> = series
                .iter()
                .map(|s| {
                    let value = s.value.as_ref().map_or("", |p| p.text.as_str());
                    vec![s.label_text(), value.to_owned()]
                })
                .collect();
            table(&["SERIES", "VALUE"], &rows)
        }
        _ => match &answer.data.result {
            Results::Point(point) => format!("{}\n", point.text),
            Results::Series(_) => format!("an answer of type `{}`\n", answer.data.result_type),
        },
    }
}

/// A trace as a waterfall: one line per span, indented under its parent,
/// with a bar where it ran.
pub fn waterfall(answer: &TraceAnswer) -> String {
    let spans = answer.tree();
    if spans.is_empty() {
        return "the trace has no spans\n".to_owned();
    }
    let start = spans.iter().map(|(_, s)| s.start).min().unwrap_or(0);
    let end = spans.iter().map(|(_, s)| s.end).max().unwrap_or(start);
    let total = (end - start).max(1);
    const BAR: usize = 40;
    let mut rows = Vec::new();
    for (depth, span) in &spans {
        let from = ((span.start - start) as f64 / total as f64 * BAR as f64) as usize;
        let width =
            (((span.end - span.start) as f64 / total as f64 * BAR as f64).ceil() as usize).max(1);
        let bar = format!(
            "{}{}{}",
            " ".repeat(from.min(BAR)),
            "█".repeat(width.min(BAR - from.min(BAR - 1))),
            " ".repeat(BAR.saturating_sub(from + width))
        );
        let label = format!("{}{} {}", "  ".repeat(*depth), span.service, span.name);
        rows.push(vec![
            label,
            duration(span.end - span.start),
            if span.error.is_some() { red(&bar) } else { bar },
            span.error.clone().map(|e| red(&e)).unwrap_or_default(),
        ]);
    }
    table(&["SPAN", "DURATION", "TIMELINE", "ERROR"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_trace_draws_as_an_indented_waterfall_with_its_error() {
        let answer: TraceAnswer = serde_json::from_value(json!({"trace": {"resourceSpans": [
            {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "mythical-requester"}}]},
             "scopeSpans": [{"spans": [
                {"spanId": "aaaaaaaaaaaaaaaa", "name": "requester", "startTimeUnixNano": "1000000000", "endTimeUnixNano": "1040000000", "status": {}},
             ]}]},
            {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "mythical-server"}}]},
             "scopeSpans": [{"spans": [
                {"spanId": "bbbbbbbbbbbbbbbb", "parentSpanId": "aaaaaaaaaaaaaaaa", "name": "POST /:beast", "startTimeUnixNano": "1010000000", "endTimeUnixNano": "1030000000",
                 "status": {"code": "STATUS_CODE_ERROR", "message": "null value"}},
             ]}]}
        ]}}))
        .unwrap();
        let text = waterfall(&answer);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[1].starts_with("mythical-requester requester"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("  mythical-server POST /:beast"),
            "{text}"
        );
        assert!(
            lines[2].contains("20.0ms") && lines[2].ends_with("null value"),
            "{text}"
        );
    }
}
