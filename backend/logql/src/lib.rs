//! LogQL for the embedded backend: a parser, an evaluator over any
//! [`LogSource`], and the JSON of Loki's query and label endpoints, so
//! Grafana's Loki datasource and the lab's own client read the answers as
//! they read Loki's.

mod eval;
mod lex;
mod parse;

use std::collections::BTreeSet;

use lab_signals::{Labels, LogSource, LogStream, UnixNanos};
use serde_json::{Value, json};

pub use eval::{Direction, MetricSeries};
pub use parse::Expr;

/// A query that does not parse, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parse error at line {line}, col {column}: {message}")]
pub struct ParseError {
    pub offset: usize,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl ParseError {
    pub(crate) fn at(text: &str, offset: usize, message: String) -> ParseError {
        let before = &text[..offset.min(text.len())];
        ParseError {
            offset,
            line: before.matches('\n').count() + 1,
            column: before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1,
            message,
        }
    }
}

/// A query that parses but cannot run as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error(
        "log queries are not supported as an instant query type, please change your query to a range query type"
    )]
    LogQueryAsInstant,
    #[error("step must be positive")]
    BadStep,
    #[error("maximum of series (500) reached for a single query")]
    TooManySeries,
}

pub fn parse(query: &str) -> Result<Expr, ParseError> {
    parse::parse(query)
}

/// What a query returns.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryResult {
    Streams(Vec<LogStream>),
    Matrix(Vec<MetricSeries>),
    /// One value per series at the query's time (Unix nanoseconds).
    Vector(Vec<(Labels, i64, f64)>),
}

/// Loki caps a query at this many series.
const MAX_SERIES: usize = 500;

/// `/loki/api/v1/query_range`: log lines in the window, or a metric query
/// evaluated every `step`.
pub fn query_range(
    source: &(impl LogSource + ?Sized),
    expr: &Expr,
    start: UnixNanos,
    end: UnixNanos,
    step: i64,
    limit: usize,
    direction: Direction,
) -> Result<QueryResult, EvalError> {
    match expr {
        Expr::Log(query) => Ok(QueryResult::Streams(eval::select_logs(
            source, query, start, end, limit, direction,
        ))),
        Expr::Metric(metric) => {
            if step <= 0 {
                return Err(EvalError::BadStep);
            }
            let series = eval::evaluate_metric(source, metric, start, end, step);
            if series.len() > MAX_SERIES {
                return Err(EvalError::TooManySeries);
            }
            Ok(QueryResult::Matrix(series))
        }
    }
}

/// `/loki/api/v1/query`: a metric query at one instant.
pub fn query_instant(
    source: &(impl LogSource + ?Sized),
    expr: &Expr,
    time: UnixNanos,
) -> Result<QueryResult, EvalError> {
    match expr {
        Expr::Log(_) => Err(EvalError::LogQueryAsInstant),
        Expr::Metric(metric) => {
            let series = eval::evaluate_metric(source, metric, time, time, 1);
            if series.len() > MAX_SERIES {
                return Err(EvalError::TooManySeries);
            }
            Ok(QueryResult::Vector(
                series
                    .into_iter()
                    .filter_map(|s| s.points.last().map(|&(t, v)| (s.labels, t, v)))
                    .collect(),
            ))
        }
    }
}

fn label_map(labels: &Labels) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
            .collect(),
    )
}

/// A value as Loki and Prometheus print samples: shortest exact form.
fn sample_text(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{value}")
    }
}

/// Loki's answer for a query result.
pub fn response_json(result: &QueryResult) -> Value {
    let (kind, data, entries) = match result {
        QueryResult::Streams(streams) => {
            let total: usize = streams.iter().map(|s| s.entries.len()).sum();
            let result: Vec<Value> = streams
                .iter()
                .map(|s| {
                    let values: Vec<Value> = s
                        .entries
                        .iter()
                        .map(|e| json!([e.ts.to_string(), e.line]))
                        .collect();
                    json!({ "stream": label_map(&s.labels), "values": values })
                })
                .collect();
            ("streams", result, total)
        }
        QueryResult::Matrix(series) => {
            let result = series
                .iter()
                .map(|s| {
                    let values: Vec<Value> = s
                        .points
                        .iter()
                        .map(|&(t, v)| json!([t as f64 / 1e9, sample_text(v)]))
                        .collect();
                    json!({ "metric": label_map(&s.labels), "values": values })
                })
                .collect();
            ("matrix", result, 0)
        }
        QueryResult::Vector(samples) => {
            let result = samples
                .iter()
                .map(|(labels, t, v)| json!({ "metric": label_map(labels), "value": [*t as f64 / 1e9, sample_text(*v)] }))
                .collect();
            ("vector", result, 0)
        }
    };
    json!({
        "status": "success",
        "data": {
            "resultType": kind,
            "result": data,
            "stats": { "summary": { "totalEntriesReturned": entries } },
        },
    })
}

/// The label sets of the streams in the window, optionally only those a
/// selector (a log query's first part) accepts.
fn stream_labels(
    source: &(impl LogSource + ?Sized),
    selector: Option<&Expr>,
    start: UnixNanos,
    end: UnixNanos,
) -> Vec<Labels> {
    let mut found = Vec::new();
    let accept = |labels: &Labels| match selector {
        Some(Expr::Log(q)) => q.selector.iter().all(|m| m.matches(labels.get(&m.name))),
        _ => true,
    };
    source.for_each_stream(&accept, start, end, &mut |view| {
        found.push(view.labels.clone())
    });
    found
}

/// `/loki/api/v1/labels`.
pub fn labels(source: &(impl LogSource + ?Sized), start: UnixNanos, end: UnixNanos) -> Value {
    let names: BTreeSet<String> = stream_labels(source, None, start, end)
        .iter()
        .flat_map(|l| l.iter().map(|(k, _)| k.to_owned()).collect::<Vec<_>>())
        .collect();
    json!({ "status": "success", "data": names })
}

/// `/loki/api/v1/label/<name>/values`, optionally under a selector.
pub fn label_values(
    source: &(impl LogSource + ?Sized),
    name: &str,
    selector: Option<&Expr>,
    start: UnixNanos,
    end: UnixNanos,
) -> Value {
    let values: BTreeSet<String> = stream_labels(source, selector, start, end)
        .iter()
        .filter_map(|l| l.get(name).map(str::to_owned))
        .collect();
    json!({ "status": "success", "data": values })
}

/// `/loki/api/v1/series`: the label sets under any of the selectors.
pub fn series(
    source: &(impl LogSource + ?Sized),
    selectors: &[Expr],
    start: UnixNanos,
    end: UnixNanos,
) -> Value {
    let mut all: BTreeSet<Labels> = BTreeSet::new();
    for selector in selectors {
        all.extend(stream_labels(source, Some(selector), start, end));
    }
    let data: Vec<Value> = all.iter().map(label_map).collect();
    json!({ "status": "success", "data": data })
}
