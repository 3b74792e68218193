//! Loki's HTTP API: `query_range`, `query`, `labels`, label values,
//! `series`, buildinfo (push is in `receive`).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lab_logql::Direction;

use super::{Params, blocking, buildinfo};
use crate::backend::Backend;
use crate::params::{self, now_nanos};

pub fn routes() -> Router<Arc<Backend>> {
    Router::new()
        .route(
            "/loki/api/v1/query_range",
            get(query_range).post(query_range),
        )
        .route("/loki/api/v1/query", get(query).post(query))
        .route("/loki/api/v1/labels", get(labels))
        .route("/loki/api/v1/label/{name}/values", get(label_values))
        .route("/loki/api/v1/series", get(series).post(series))
        .route(
            "/loki/api/v1/status/buildinfo",
            get(|| async { axum::Json(buildinfo()) }),
        )
}

/// Loki answers bad requests with 400 and the reason as text.
fn bad(message: impl ToString) -> Response {
    (StatusCode::BAD_REQUEST, message.to_string()).into_response()
}

/// `start`/`end` (defaults: the last hour) in Unix nanoseconds.
fn window(params: &Params) -> Result<(i64, i64), Response> {
    let end = match params.get("end") {
        Some(t) => params::time("end", t).map_err(bad)?,
        None => now_nanos(),
    };
    let start = match params.get("start") {
        Some(t) => params::time("start", t).map_err(bad)?,
        None => end - 3_600_000_000_000,
    };
    if end < start {
        return Err(bad(
            "end timestamp must not be before or equal to start time",
        ));
    }
    Ok((start, end))
}

fn parse(params: &Params) -> Result<lab_logql::Expr, Response> {
    let query = params
        .get("query")
        .ok_or_else(|| bad("missing query parameter"))?;
    lab_logql::parse(query).map_err(bad)
}

fn answer(
    result: Result<Result<lab_logql::QueryResult, lab_logql::EvalError>, Response>,
) -> Response {
    match result {
        Ok(Ok(result)) => axum::Json(lab_logql::response_json(&result)).into_response(),
        Ok(Err(err)) => bad(err),
        Err(response) => response,
    }
}

async fn query_range(State(backend): State<Arc<Backend>>, params: Params) -> Response {
    let expr = match parse(&params) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let (start, end) = match window(&params) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let limit = match params.get("limit").map(str::parse::<usize>).transpose() {
        Ok(limit) => limit.unwrap_or(100),
        Err(_) => return bad("invalid limit: not a whole number"),
    };
    let direction = match params.get("direction") {
        None | Some("backward") | Some("BACKWARD") => Direction::Backward,
        Some("forward") | Some("FORWARD") => Direction::Forward,
        Some(other) => {
            return bad(format!(
                "invalid direction {other:?}: use forward or backward"
            ));
        }
    };
    // Loki's default step: the range in 250 points, at least a second.
    let step = match params.get("step") {
        Some(s) => match params::duration("step", s) {
            Ok(step) => step,
            Err(e) => return bad(e),
        },
        None => ((end - start) / 250).max(1_000_000_000),
    };
    answer(
        blocking(move || {
            lab_logql::query_range(
                &*backend.store().logs(),
                &expr,
                start,
                end,
                step,
                limit,
                direction,
            )
        })
        .await,
    )
}

async fn query(State(backend): State<Arc<Backend>>, params: Params) -> Response {
    let expr = match parse(&params) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let time = match params.get("time") {
        Some(t) => match params::time("time", t) {
            Ok(t) => t,
            Err(e) => return bad(e),
        },
        None => now_nanos(),
    };
    answer(blocking(move || lab_logql::query_instant(&*backend.store().logs(), &expr, time)).await)
}

async fn labels(State(backend): State<Arc<Backend>>, params: Params) -> Response {
    let (start, end) = match window(&params) {
        Ok(w) => w,
        Err(r) => return r,
    };
    match blocking(move || lab_logql::labels(&*backend.store().logs(), start, end)).await {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(response) => response,
    }
}

async fn label_values(
    State(backend): State<Arc<Backend>>,
    Path(name): Path<String>,
    params: Params,
) -> Response {
    let (start, end) = match window(&params) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let selector = match params.get("query").map(lab_logql::parse).transpose() {
        Ok(selector) => selector,
        Err(e) => return bad(e),
    };
    match blocking(move || {
        lab_logql::label_values(
            &*backend.store().logs(),
            &name,
            selector.as_ref(),
            start,
            end,
        )
    })
    .await
    {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(response) => response,
    }
}

async fn series(State(backend): State<Arc<Backend>>, params: Params) -> Response {
    let (start, end) = match window(&params) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let selectors = match params
        .all("match[]")
        .into_iter()
        .chain(params.all("match"))
        .map(lab_logql::parse)
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(s) if s.is_empty() => return bad("at least one match[] argument is required"),
        Ok(s) => s,
        Err(e) => return bad(e),
    };
    match blocking(move || lab_logql::series(&*backend.store().logs(), &selectors, start, end))
        .await
    {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(response) => response,
    }
}
