//! Evaluating LogQL: log queries pick and parse lines; metric queries count
//! them over sliding windows at each step, then aggregate by label.

use std::collections::{BTreeMap, HashMap};

use lab_signals::{Labels, LogEntry, LogSource, LogStream, UnixNanos};
use serde_json::Value;

use crate::parse::{
    AggOp, Grouping, LabelFilter, LineOp, LogQuery, MetricExpr, NumOp, RangeFn, Stage,
};

/// Which way log lines come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

/// One series of a metric result.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSeries {
    pub labels: Labels,
    /// (Unix nanoseconds, value) at each step that has a value.
    pub points: Vec<(i64, f64)>,
}

fn line_passes(stage: &Stage, line: &str) -> bool {
    match stage {
        Stage::Line { op, value, regex } => match op {
            LineOp::Contains => line.contains(value.as_str()),
            LineOp::NotContains => !line.contains(value.as_str()),
            LineOp::Re => regex.as_ref().is_some_and(|r| r.is_match(line)),
            LineOp::NotRe => !regex.as_ref().is_some_and(|r| r.is_match(line)),
        },
        _ => true,
    }
}

/// Splits a logfmt line into pairs; false when it is not logfmt.
fn logfmt(line: &str, out: &mut Vec<(String, String)>) -> bool {
    let mut chars = line.char_indices().peekable();
    let mut ok = true;
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut end = start;
        while let Some(&(i, c)) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            end = i + c.len_utf8();
            chars.next();
        }
        let key = &line[start..end];
        if chars.peek().map(|&(_, c)| c) != Some('=') {
            // A bare word: a key with no value.
            if !key.is_empty() {
                out.push((key.to_owned(), String::new()));
            }
            continue;
        }
        chars.next();
        let mut value = String::new();
        if chars.peek().map(|&(_, c)| c) == Some('"') {
            chars.next();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, 't')) => value.push('\t'),
                        Some((_, other)) => value.push(other),
                        None => break,
                    },
                    c => value.push(c),
                }
            }
            ok &= closed;
        } else {
            while let Some(&(_, c)) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        if key.is_empty() {
            ok = false;
        } else {
            out.push((key.to_owned(), value));
        }
    }
    ok
}

fn json_flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}_{k}")
                };
                json_flatten(&key, v, out);
            }
        }
        Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        Value::Null => out.push((prefix.to_owned(), String::new())),
        Value::Array(_) => {}
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A line on its way through the pipeline: the labels it has gained.
struct Line<'a> {
    stream: &'a Labels,
    metadata: &'a Labels,
    extracted: Vec<(String, String)>,
}

impl Line<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.extracted
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .or_else(|| self.stream.get(name))
            .or_else(|| self.metadata.get(name))
    }

    fn add(&mut self, key: &str, value: String) {
        let mut key = sanitize(key);
        if self.stream.get(&key).is_some() {
            key.push_str("_extracted");
        }
        self.extracted.push((key, value));
    }
}

fn number(text: &str) -> Option<f64> {
    let text = text.trim();
    if let Ok(n) = text.parse::<f64>() {
        return Some(n);
    }
    // Durations (`12ms`) as seconds, for label filters like `duration > 10ms`.
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let value: f64 = text[..split].parse().ok()?;
    let per = match &text[split..] {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    Some(value * per)
}

fn label_holds(filter: &LabelFilter, line: &Line<'_>) -> bool {
    match filter {
        LabelFilter::Str(m) => m.matches(line.get(&m.name)),
        LabelFilter::Num { name, op, value } => {
            let Some(actual) = line.get(name).and_then(number) else {
                return false;
            };
            match op {
                NumOp::Gt => actual > *value,
                NumOp::Ge => actual >= *value,
                NumOp::Lt => actual < *value,
                NumOp::Le => actual <= *value,
                NumOp::Eq => actual == *value,
                NumOp::NotEq => actual != *value,
            }
        }
        LabelFilter::And(a, b) => label_holds(a, line) && label_holds(b, line),
        LabelFilter::Or(a, b) => label_holds(a, line) || label_holds(b, line),
    }
}

/// Runs a line through the pipeline: `None` if dropped, else the labels
/// it ends with (`None` inside when they are just the stream's).
fn process(query: &LogQuery, stream: &Labels, entry: &LogEntry) -> Option<Option<Labels>> {
    let mut line: Option<Line<'_>> = None;
    let mut keep: Option<&Vec<String>> = None;
    let mut drop: Vec<&String> = Vec::new();
    for stage in &query.pipeline {
        match stage {
            Stage::Line { .. } => {
                if !line_passes(stage, &entry.line) {
                    return None;
                }
            }
            Stage::Logfmt => {
                let state = line.get_or_insert_with(|| Line {
                    stream,
                    metadata: &entry.metadata,
                    extracted: Vec::new(),
                });
                let mut pairs = Vec::new();
                let ok = logfmt(&entry.line, &mut pairs);
                for (k, v) in pairs {
                    state.add(&k, v);
                }
                if !ok {
                    state
                        .extracted
                        .push(("__error__".into(), "LogfmtParserErr".into()));
                }
            }
            Stage::Json => {
                let state = line.get_or_insert_with(|| Line {
                    stream,
                    metadata: &entry.metadata,
                    extracted: Vec::new(),
                });
                match serde_json::from_str::<Value>(&entry.line) {
                    Ok(value @ Value::Object(_)) => {
                        let mut pairs = Vec::new();
                        json_flatten("", &value, &mut pairs);
                        for (k, v) in pairs {
                            state.add(&k, v);
                        }
                    }
                    _ => state
                        .extracted
                        .push(("__error__".into(), "JSONParserErr".into())),
                }
            }
            Stage::Labels(filter) => {
                let state = line.get_or_insert_with(|| Line {
                    stream,
                    metadata: &entry.metadata,
                    extracted: Vec::new(),
                });
                if !label_holds(filter, state) {
                    return None;
                }
            }
            Stage::Drop(names) => drop.extend(names),
            Stage::Keep(names) => keep = Some(names),
        }
    }
    let extracted = line.map(|l| l.extracted).unwrap_or_default();
    if extracted.is_empty() && keep.is_none() && drop.is_empty() {
        return Some(None);
    }
    let mut pairs: Vec<(String, String)> = stream
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    pairs.extend(extracted);
    let labels = Labels::new(pairs);
    let labels = Labels::new(
        labels
            .into_pairs()
            .into_iter()
            .filter(|(k, _)| !drop.contains(&k) && keep.is_none_or(|names| names.contains(k))),
    );
    Some(Some(labels))
}

fn selector_accepts(query: &LogQuery) -> impl Fn(&Labels) -> bool + '_ {
    move |labels: &Labels| {
        query
            .selector
            .iter()
            .all(|m| m.matches(labels.get(&m.name)))
    }
}

/// The lines of a log query, grouped into result streams, at most `limit`
/// in `direction` order.
pub fn select_logs(
    source: &(impl LogSource + ?Sized),
    query: &LogQuery,
    start: UnixNanos,
    end: UnixNanos,
    limit: usize,
    direction: Direction,
) -> Vec<LogStream> {
    let mut picked: Vec<(Labels, LogEntry)> = Vec::new();
    let select = selector_accepts(query);
    source.for_each_stream(&select, start, end, &mut |view| {
        // No stream can contribute more than `limit` lines, so stop early
        // from the end the direction starts at.
        let mut taken = 0;
        let mut take = |entry: &LogEntry| {
            if let Some(labels) = process(query, view.labels, entry) {
                picked.push((labels.unwrap_or_else(|| view.labels.clone()), entry.clone()));
                taken += 1;
            }
            taken < limit
        };
        match direction {
            Direction::Backward => {
                for entry in view.entries.iter().rev() {
                    if !take(entry) {
                        break;
                    }
                }
            }
            Direction::Forward => {
                for entry in view.entries {
                    if !take(entry) {
                        break;
                    }
                }
            }
        }
    });
    match direction {
        Direction::Backward => picked.sort_by_key(|p| std::cmp::Reverse(p.1.ts)),
        Direction::Forward => picked.sort_by_key(|p| p.1.ts),
    }
    picked.truncate(limit);
    let mut streams: BTreeMap<Labels, Vec<LogEntry>> = BTreeMap::new();
    for (labels, entry) in picked {
        streams.entry(labels).or_default().push(entry);
    }
    streams
        .into_iter()
        .map(|(labels, entries)| LogStream { labels, entries })
        .collect()
}

/// Evaluates a metric expression at each step in `[start, end]`.
pub fn evaluate_metric(
    source: &(impl LogSource + ?Sized),
    expr: &MetricExpr,
    start: UnixNanos,
    end: UnixNanos,
    step: i64,
) -> Vec<MetricSeries> {
    match expr {
        MetricExpr::Range { func, query, range } => {
            // Every kept line's time and size, per result series.
            let mut series: HashMap<Labels, Vec<(i64, usize)>> = HashMap::new();
            let select = selector_accepts(query);
            source.for_each_stream(&select, start - range, end, &mut |view| {
                for entry in view.entries {
                    if let Some(labels) = process(query, view.labels, entry) {
                        series
                            .entry(labels.unwrap_or_else(|| view.labels.clone()))
                            .or_default()
                            .push((entry.ts, entry.line.len()));
                    }
                }
            });
            let range_secs = *range as f64 / 1e9;
            let mut out: Vec<MetricSeries> = series
                .into_iter()
                .map(|(labels, mut points)| {
                    points.sort_unstable();
                    let mut prefix = Vec::with_capacity(points.len() + 1);
                    prefix.push(0usize);
                    for (_, bytes) in &points {
                        prefix.push(prefix.last().unwrap() + bytes);
                    }
                    let mut values = Vec::new();
                    let mut t = start;
                    while t <= end {
                        // The window (t - range, t], as Loki counts it.
                        let from = points.partition_point(|p| p.0 <= t - range);
                        let to = points.partition_point(|p| p.0 <= t);
                        if to > from {
                            let count = (to - from) as f64;
                            let bytes = (prefix[to] - prefix[from]) as f64;
                            let value = match func {
                                RangeFn::CountOverTime => count,
                                RangeFn::Rate => count / range_secs,
                                RangeFn::BytesOverTime => bytes,
                                RangeFn::BytesRate => bytes / range_secs,
                            };
                            values.push((t, value));
                        }
                        t += step.max(1);
                    }
                    MetricSeries {
                        labels,
                        points: values,
                    }
                })
                .filter(|s| !s.points.is_empty())
                .collect();
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
            out
        }
        MetricExpr::Aggregate {
            op,
            grouping,
            inner,
        } => aggregate(
            *op,
            grouping.as_ref(),
            evaluate_metric(source, inner, start, end, step),
        ),
    }
}

fn group_key(labels: &Labels, grouping: Option<&Grouping>) -> Labels {
    match grouping {
        None => Labels::default(),
        Some(Grouping::By(names)) => Labels::new(
            labels
                .iter()
                .filter(|(k, _)| names.iter().any(|n| n == k))
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
        ),
        Some(Grouping::Without(names)) => Labels::new(
            labels
                .iter()
                .filter(|(k, _)| !names.iter().any(|n| n == k))
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
        ),
    }
}

fn aggregate(
    op: AggOp,
    grouping: Option<&Grouping>,
    input: Vec<MetricSeries>,
) -> Vec<MetricSeries> {
    if let AggOp::Topk(k) | AggOp::Bottomk(k) = op {
        // Per step and group, keep the k largest (smallest) series.
        let mut by_step: BTreeMap<i64, HashMap<Labels, Vec<(usize, f64)>>> = BTreeMap::new();
        for (i, series) in input.iter().enumerate() {
            let key = group_key(&series.labels, grouping);
            for &(t, v) in &series.points {
                by_step
                    .entry(t)
                    .or_default()
                    .entry(key.clone())
                    .or_default()
                    .push((i, v));
            }
        }
        let mut kept: Vec<Vec<(i64, f64)>> = vec![Vec::new(); input.len()];
        for (t, groups) in by_step {
            for (_, mut members) in groups {
                members.sort_by(|a, b| {
                    let order = a.1.total_cmp(&b.1);
                    if matches!(op, AggOp::Topk(_)) {
                        order.reverse()
                    } else {
                        order
                    }
                });
                for (i, v) in members.into_iter().take(k) {
                    kept[i].push((t, v));
                }
            }
        }
        return input
            .into_iter()
            .zip(kept)
            .filter(|(_, points)| !points.is_empty())
            .map(|(series, points)| MetricSeries {
                labels: series.labels,
                points,
            })
            .collect();
    }
    let mut groups: BTreeMap<Labels, BTreeMap<i64, Vec<f64>>> = BTreeMap::new();
    for series in &input {
        let key = group_key(&series.labels, grouping);
        let steps = groups.entry(key).or_default();
        for &(t, v) in &series.points {
            steps.entry(t).or_default().push(v);
        }
    }
    groups
        .into_iter()
        .map(|(labels, steps)| MetricSeries {
            labels,
            points: steps
                .into_iter()
                .map(|(t, values)| {
                    let value = match op {
                        AggOp::Sum => values.iter().sum(),
                        AggOp::Avg => values.iter().sum::<f64>() / values.len() as f64,
                        AggOp::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
                        AggOp::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                        AggOp::Count => values.len() as f64,
                        AggOp::Topk(_) | AggOp::Bottomk(_) => unreachable!("handled above"),
                    };
                    (t, value)
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_reads_quoted_values_with_escapes() {
        let mut pairs = Vec::new();
        let ok = logfmt(
            r#"traceID=abc http.method=POST error="null value in \"name\"" bare"#,
            &mut pairs,
        );
        assert!(ok);
        assert_eq!(
            pairs,
            [
                ("traceID".into(), "abc".into()),
                ("http.method".into(), "POST".into()),
                ("error".into(), r#"null value in "name""#.into()),
                ("bare".into(), String::new()),
            ]
        );
        assert!(!logfmt(r#"a="unterminated"#, &mut Vec::new()));
    }
}
