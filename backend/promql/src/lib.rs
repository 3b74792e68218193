//! PromQL for the embedded backend: evaluation of `promql-parser`'s AST over
//! any [`SeriesSource`], and the JSON of Prometheus' query endpoints, so
//! Grafana's Prometheus datasource and the lab's own client read the
//! answers as they read Prometheus'.

mod eval;

use lab_signals::{Labels, SeriesSource};
use serde_json::{Value, json};

use eval::{Eval, Val};

/// Why a query failed, in Prometheus' categories.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The query does not parse (400, `bad_data`).
    #[error("{0}")]
    Parse(String),
    /// Well-formed but of the wrong type (400, `bad_data`).
    #[error("{0}")]
    Type(String),
    /// Parses, but the lab's engine does not evaluate it (422).
    #[error("not supported by the lab's PromQL engine: {0}")]
    Unsupported(String),
    /// Fails while evaluating (422, `execution`).
    #[error("{0}")]
    Execution(String),
    #[error("bad step or range: {0}")]
    BadRange(String),
}

/// A query's result.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryValue {
    /// Unix milliseconds and value.
    Scalar(i64, f64),
    /// Series with one sample each, at the query's time.
    Vector(i64, Vec<(Labels, f64)>),
    /// Series with their (Unix milliseconds, value) points.
    Matrix(Vec<(Labels, Vec<(i64, f64)>)>),
    String(i64, String),
}

fn parse(query: &str) -> Result<promql_parser::parser::Expr, QueryError> {
    promql_parser::parser::parse(query)
        .map_err(|e| QueryError::Parse(format!("invalid parameter \"query\": {e}")))
}

/// Evaluates `query` at `time_ms`.
pub fn instant_query(
    source: &(impl SeriesSource + ?Sized),
    query: &str,
    time_ms: i64,
) -> Result<QueryValue, QueryError> {
    let expr = parse(query)?;
    let eval = Eval {
        source,
        steps: vec![time_ms],
    };
    if let promql_parser::parser::Expr::MatrixSelector(range) = &expr {
        // Prometheus answers an instant query of a range vector with the
        // raw samples of its window: what was scraped, when.
        return Ok(QueryValue::Matrix(eval.raw_samples(range)?));
    }
    Ok(match eval.eval(&expr)? {
        Val::Scalar(v) => QueryValue::Scalar(time_ms, v[0]),
        Val::Str(s) => QueryValue::String(time_ms, s),
        Val::Vector(series) => QueryValue::Vector(
            time_ms,
            series
                .into_iter()
                .filter_map(|s| s.values[0].map(|v| (s.labels, v)))
                .collect(),
        ),
    })
}

/// Evaluates `query` at every step from `start_ms` to `end_ms`.
pub fn range_query(
    source: &(impl SeriesSource + ?Sized),
    query: &str,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
) -> Result<QueryValue, QueryError> {
    if step_ms <= 0 {
        return Err(QueryError::BadRange(
            "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
        ));
    }
    if end_ms < start_ms {
        return Err(QueryError::BadRange(
            "end timestamp must not be before start time".into(),
        ));
    }
    if (end_ms - start_ms) / step_ms > 11_000 {
        return Err(QueryError::BadRange(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
        ));
    }
    let expr = parse(query)?;
    let steps: Vec<i64> = (0..=(end_ms - start_ms) / step_ms)
        .map(|i| start_ms + i * step_ms)
        .collect();
    let eval = Eval {
        source,
        steps: steps.clone(),
    };
    let series = match eval.eval(&expr)? {
        Val::Scalar(values) => vec![(
            Labels::default(),
            values.into_iter().map(Some).collect::<Vec<_>>(),
        )],
        Val::Vector(series) => series.into_iter().map(|s| (s.labels, s.values)).collect(),
        Val::Str(_) => {
            return Err(QueryError::Type(
                "a range query must return a number or a vector, not a string".into(),
            ));
        }
    };
    let mut matrix: Vec<(Labels, Vec<(i64, f64)>)> = series
        .into_iter()
        .map(|(labels, values)| {
            let points = steps
                .iter()
                .zip(values)
                .filter_map(|(t, v)| v.map(|v| (*t, v)))
                .collect();
            (labels, points)
        })
        .filter(|(_, points): &(Labels, Vec<(i64, f64)>)| !points.is_empty())
        .collect();
    matrix.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(QueryValue::Matrix(matrix))
}

/// A value as Prometheus writes samples.
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

fn label_map(labels: &Labels) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
            .collect(),
    )
}

fn point(t: i64, v: impl Into<Value>) -> Value {
    json!([t as f64 / 1000.0, v.into()])
}

/// Prometheus' answer for a query result.
pub fn response_json(value: &QueryValue) -> Value {
    let (kind, result) = match value {
        QueryValue::Scalar(t, v) => ("scalar", point(*t, sample_text(*v))),
        QueryValue::String(t, s) => ("string", point(*t, s.clone())),
        QueryValue::Vector(t, samples) => (
            "vector",
            samples
                .iter()
                .map(|(labels, v)| json!({ "metric": label_map(labels), "value": point(*t, sample_text(*v)) }))
                .collect(),
        ),
        QueryValue::Matrix(series) => (
            "matrix",
            series
                .iter()
                .map(|(labels, points)| {
                    let values: Vec<Value> = points.iter().map(|(t, v)| point(*t, sample_text(*v))).collect();
                    json!({ "metric": label_map(labels), "values": values })
                })
                .collect(),
        ),
    };
    json!({ "status": "success", "data": { "resultType": kind, "result": result } })
}

/// Prometheus' error answer: the HTTP status and the body.
pub fn error_response(err: &QueryError) -> (u16, Value) {
    let (status, kind) = match err {
        QueryError::Parse(_) | QueryError::Type(_) | QueryError::BadRange(_) => (400, "bad_data"),
        QueryError::Unsupported(_) | QueryError::Execution(_) => (422, "execution"),
    };
    (
        status,
        json!({ "status": "error", "errorType": kind, "error": err.to_string() }),
    )
}
