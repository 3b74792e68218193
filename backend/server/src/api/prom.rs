//! Prometheus' HTTP API: the metadata endpoints (`labels`, label values,
//! `series`, `metadata`) with `match[]` selectors, and buildinfo.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lab_signals::{Labels, SeriesSource};
use promql_parser::label::Matcher;
use promql_parser::parser::{self, Expr};
use serde_json::{Value, json};

use super::{Params, blocking, buildinfo};
use crate::backend::Backend;
use crate::params::{self, now_nanos};

pub fn routes() -> Router<Arc<Backend>> {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/metadata", get(metadata))
        .route(
            "/api/v1/query_exemplars",
            get(query_exemplars).post(query_exemplars),
        )
        .route(
            "/api/v1/status/buildinfo",
            get(|| async { axum::Json(json!({ "status": "success", "data": buildinfo() })) }),
        )
}

/// Prometheus' error shape.
pub fn error(status: StatusCode, error_type: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "status": "error", "errorType": error_type, "error": message })),
    )
        .into_response()
}

fn success(data: Value) -> Response {
    axum::Json(json!({ "status": "success", "data": data })).into_response()
}

/// A `match[]` selector's matchers (each alternative of an `or` kept).
fn selector(text: &str) -> Result<Vec<Vec<Matcher>>, String> {
    match parser::parse(text) {
        Ok(Expr::VectorSelector(vs)) => {
            let mut base = vs.matchers.matchers.clone();
            if let Some(name) = vs.name {
                base.push(Matcher::new(
                    promql_parser::label::MatchOp::Equal,
                    "__name__",
                    &name,
                ));
            }
            if vs.matchers.or_matchers.is_empty() {
                Ok(vec![base])
            } else {
                Ok(vs
                    .matchers
                    .or_matchers
                    .iter()
                    .map(|alt| base.iter().chain(alt).cloned().collect())
                    .collect())
            }
        }
        Ok(_) => Err(format!(
            "invalid parameter \"match[]\": {text} is not a series selector"
        )),
        Err(e) => Err(format!("invalid parameter \"match[]\": {e}")),
    }
}

fn matches(alternatives: &[Vec<Matcher>], labels: &Labels) -> bool {
    alternatives.iter().any(|all| {
        all.iter()
            .all(|m| m.is_match(labels.get(&m.name).unwrap_or("")))
    })
}

/// The window and selectors of a metadata request.
struct Request {
    start_ms: i64,
    end_ms: i64,
    selectors: Vec<Vec<Vec<Matcher>>>,
}

/// The request's window and selectors, or what is wrong with them.
fn request(params: &Params) -> Result<Request, String> {
    let bad = |m: String| m;
    let start = match params.get("start") {
        Some(t) => params::time("start", t).map_err(|e| bad(e.to_string()))?,
        None => 0,
    };
    let end = match params.get("end") {
        Some(t) => params::time("end", t).map_err(|e| bad(e.to_string()))?,
        None => now_nanos() + 60_000_000_000,
    };
    let selectors = params
        .all("match[]")
        .into_iter()
        .map(selector)
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    Ok(Request {
        start_ms: start / 1_000_000,
        end_ms: end / 1_000_000,
        selectors,
    })
}

/// Visits the label sets with data in the window that any selector (or,
/// without selectors, everything) accepts.
fn each_series(source: &dyn SeriesSource, request: &Request, visit: &mut dyn FnMut(&Labels)) {
    let select = |labels: &Labels| {
        request.selectors.is_empty() || request.selectors.iter().any(|s| matches(s, labels))
    };
    source.for_each_series(&select, request.start_ms, request.end_ms, &mut |view| {
        if !view.samples.is_empty() {
            visit(view.labels);
        }
    });
}

async fn labels(State(backend): State<Arc<Backend>>, params: Params) -> Response {
    let request = match request(&params) {
        Ok(r) => r,
        Err(message) => return error(StatusCode::BAD_REQUEST, "bad_data", &message),
    };
    let names = blocking(move || {
        let mut names = BTreeSet::new();
        each_series(&*backend.store().metrics(), &request, &mut |labels| {
            names.extend(labels.iter().map(|(k, _)| k.to_owned()));
        });
        names
    })
    .await;
    match names {
        Ok(names) => success(json!(names)),
        Err(response) => response,
    }
}

async fn label_values(
    State(backend): State<Arc<Backend>>,
    Path(name): Path<String>,
    params: Params,
) -> Response {
    let request = match request(&params) {
        Ok(r) => r,
        Err(message) => return error(StatusCode::BAD_REQUEST, "bad_data", &message),
    };
    let values = blocking(move || {
        let mut values = BTreeSet::new();
        each_series(&*backend.store().metrics(), &request, &mut |labels| {
            if let Some(value) = labels.get(&name) {
                values.insert(value.to_owned());
            }
        });
        values
    })
    .await;
    match values {
        Ok(values) => success(json!(values)),
        Err(response) => response,
    }
}

async fn series(State(backend): State<Arc<Backend>>, params: Params) -> Response {
    let request = match request(&params) {
        Ok(r) if r.selectors.is_empty() => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_data",
                "no match[] parameter provided",
            );
        }
        Ok(r) => r,
        Err(message) => return error(StatusCode::BAD_REQUEST, "bad_data", &message),
    };
    let found = blocking(move || {
        let mut found = Vec::new();
        each_series(&*backend.store().metrics(), &request, &mut |labels| {
            found.push(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
                    .collect::<serde_json::Map<_, _>>(),
            );
        });
        found
    })
    .await;
    match found {
        Ok(found) => success(json!(found)),
        Err(response) => response,
    }
}

async fn metadata(State(backend): State<Arc<Backend>>, params: Params) -> Response {
    let only = params.get("metric").map(str::to_owned);
    let all = blocking(move || backend.store().metrics().metadata()).await;
    match all {
        Ok(all) => {
            let mut data = serde_json::Map::new();
            for (name, meta) in all
                .into_iter()
                .filter(|(n, _)| only.as_ref().is_none_or(|o| o == n))
            {
                data.insert(
                    name,
                    json!([{ "type": meta.metric_type, "help": meta.help, "unit": meta.unit }]),
                );
            }
            success(Value::Object(data))
        }
        Err(response) => response,
    }
}

/// Every series selector in a query, as `match[]` alternatives.
fn selectors_in(expr: &Expr, out: &mut Vec<Vec<Vec<Matcher>>>) {
    match expr {
        Expr::VectorSelector(_) => {
            if let Ok(alternatives) = selector(&expr.to_string()) {
                out.push(alternatives);
            }
        }
        Expr::MatrixSelector(m) => selectors_in(&Expr::VectorSelector(m.vs.clone()), out),
        Expr::Aggregate(a) => selectors_in(&a.expr, out),
        Expr::Unary(u) => selectors_in(&u.expr, out),
        Expr::Binary(b) => {
            selectors_in(&b.lhs, out);
            selectors_in(&b.rhs, out);
        }
        Expr::Paren(p) => selectors_in(&p.expr, out),
        Expr::Subquery(s) => selectors_in(&s.expr, out),
        Expr::Call(c) => c.args.args.iter().for_each(|a| selectors_in(a, out)),
        _ => {}
    }
}

/// `/api/v1/query_exemplars`: the exemplars of every series the query's
/// selectors reach, in the window.
async fn query_exemplars(State(backend): State<Arc<Backend>>, params: Params) -> Response {
    let Some(query) = params.get("query") else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_data",
            "invalid parameter \"query\": missing",
        );
    };
    let expr = match parser::parse(query) {
        Ok(expr) => expr,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_data",
                &format!("invalid parameter \"query\": {e}"),
            );
        }
    };
    let mut request = match request(&params) {
        Ok(r) => r,
        Err(message) => return error(StatusCode::BAD_REQUEST, "bad_data", &message),
    };
    selectors_in(&expr, &mut request.selectors);
    let found = blocking(move || {
        let mut found = Vec::new();
        let select = |labels: &Labels| request.selectors.iter().any(|s| matches(s, labels));
        backend
            .store()
            .metrics()
            .for_each_series(&select, request.start_ms, request.end_ms, &mut |view| {
                if view.exemplars.is_empty() {
                    return;
                }
                let series: serde_json::Map<String, Value> =
                    view.labels.iter().map(|(k, v)| (k.to_owned(), Value::String(v.to_owned()))).collect();
                let exemplars: Vec<Value> = view
                    .exemplars
                    .iter()
                    .map(|e| {
                        let labels: serde_json::Map<String, Value> =
                            e.labels.iter().map(|(k, v)| (k.to_owned(), Value::String(v.to_owned()))).collect();
                        json!({ "labels": labels, "value": e.value.to_string(), "timestamp": e.t as f64 / 1000.0 })
                    })
                    .collect();
                found.push(json!({ "seriesLabels": series, "exemplars": exemplars }));
            });
        found
    })
    .await;
    match found {
        Ok(found) => success(json!(found)),
        Err(response) => response,
    }
}

fn query_answer(
    result: Result<Result<lab_promql::QueryValue, lab_promql::QueryError>, Response>,
) -> Response {
    match result {
        Ok(Ok(value)) => axum::Json(lab_promql::response_json(&value)).into_response(),
        Ok(Err(err)) => {
            let (status, body) = lab_promql::error_response(&err);
            (
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                axum::Json(body),
            )
                .into_response()
        }
        Err(response) => response,
    }
}

fn time_param(params: &Params, name: &str, default: i64) -> Result<i64, Response> {
    match params.get(name) {
        Some(t) => params::time(name, t)
            .map(|nanos| nanos / 1_000_000)
            .map_err(|e| error(StatusCode::BAD_REQUEST, "bad_data", &e.to_string())),
        None => Ok(default),
    }
}

async fn query(State(backend): State<Arc<Backend>>, params: Params) -> Response {
    let Some(query) = params.get("query").map(str::to_owned) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_data",
            "invalid parameter \"query\": missing",
        );
    };
    let time = match time_param(&params, "time", now_nanos() / 1_000_000) {
        Ok(t) => t,
        Err(r) => return r,
    };
    query_answer(
        blocking(move || lab_promql::instant_query(&*backend.store().metrics(), &query, time))
            .await,
    )
}

async fn query_range(State(backend): State<Arc<Backend>>, params: Params) -> Response {
    let Some(query) = params.get("query").map(str::to_owned) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_data",
            "invalid parameter \"query\": missing",
        );
    };
    let (start, end) = match (
        time_param(&params, "start", i64::MIN),
        time_param(&params, "end", i64::MIN),
    ) {
        (Ok(s), Ok(e)) if s != i64::MIN && e != i64::MIN => (s, e),
        (Err(r), _) | (_, Err(r)) => return r,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_data",
                "invalid parameter \"start\" or \"end\": missing",
            );
        }
    };
    let step = match params.get("step").map(|s| params::duration("step", s)) {
        Some(Ok(step)) => step / 1_000_000,
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, "bad_data", &e.to_string()),
        None => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_data",
                "invalid parameter \"step\": missing",
            );
        }
    };
    query_answer(
        blocking(move || {
            lab_promql::range_query(&*backend.store().metrics(), &query, start, end, step)
        })
        .await,
    )
}
