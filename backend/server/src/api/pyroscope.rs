//! Pyroscope's HTTP query API as its 1.x server answers it (`render` with
//! the flamebearer JSON, `label-names`, `label-values`), and the lab's own
//! `/api/profiles/top` and `/api/profiles/tree` over the same merge.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lab_profiles::{Selector, query};
use serde_json::json;

use super::{Params, blocking};
use crate::backend::Backend;
use crate::params::{self, now_nanos};

pub fn routes() -> Router<Arc<Backend>> {
    Router::new()
        .route("/pyroscope/render", get(render))
        .route("/pyroscope/label-names", get(label_names))
        .route("/pyroscope/label-values", get(label_values))
        .route("/api/profiles/top", get(top))
        .route("/api/profiles/tree", get(tree))
}

fn bad(message: impl ToString) -> Response {
    (StatusCode::BAD_REQUEST, message.to_string()).into_response()
}

const SECOND: i64 = 1_000_000_000;

/// Pyroscope's time forms: `now`, `now-1h`, Unix seconds (or, by their
/// size, milliseconds, microseconds, nanoseconds), or RFC 3339.
fn time(name: &str, value: &str) -> Result<i64, Response> {
    let value = value.trim();
    if let Some(rest) = value.strip_prefix("now") {
        let now = now_nanos();
        return match rest.strip_prefix('-') {
            None if rest.is_empty() => Ok(now),
            Some(ago) => params::duration(name, ago).map(|d| now - d).map_err(bad),
            None => Err(bad(format!(
                "invalid parameter \"{name}\": cannot parse \"{value}\": use now, now-1h, or Unix seconds"
            ))),
        };
    }
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let number: i64 = value.parse().map_err(|_| {
            bad(format!(
                "invalid parameter \"{name}\": \"{value}\" is too large"
            ))
        })?;
        return Ok(match number {
            n if n >= 100_000_000_000_000_000 => n,
            n if n >= 100_000_000_000_000 => n * 1_000,
            n if n >= 100_000_000_000 => n * 1_000_000,
            n => n * SECOND,
        });
    }
    params::time(name, value).map_err(bad)
}

/// `from`/`until` (defaults: the last hour).
fn window(params: &Params) -> Result<(i64, i64), Response> {
    let until = match params.get("until") {
        Some(t) => time("until", t)?,
        None => now_nanos(),
    };
    let from = match params.get("from") {
        Some(t) => time("from", t)?,
        None => until - 3600 * SECOND,
    };
    if until < from {
        return Err(bad("invalid parameters: until is before from"));
    }
    Ok((from, until))
}

fn selector(params: &Params) -> Result<Selector, Response> {
    let query = params.get("query").ok_or_else(|| {
        bad("missing query parameter: give a profile type and selector, like process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name=\"mythical-server\"}")
    })?;
    Selector::parse(query).map_err(bad)
}

/// Pyroscope's timeline step: ten seconds, wider for long windows so the
/// timeline stays near a thousand points.
fn step(from: i64, until: i64) -> i64 {
    ((until - from) / 1000).max(10 * SECOND) / SECOND * SECOND
}

async fn render(State(backend): State<Arc<Backend>>, params: Params) -> Response {
    let (selector, (from, until)) = match (selector(&params), window(&params)) {
        (Ok(s), Ok(w)) => (s, w),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    if let Some(format) = params.get("format").filter(|f| *f != "json") {
        return bad(format!("unsupported format {format:?}: use format=json"));
    }
    let max_nodes = match params.get("maxNodes").map(str::parse::<usize>).transpose() {
        Ok(n) => n,
        Err(_) => return bad("invalid maxNodes: not a whole number"),
    };
    let profile_type = selector.profile_type.clone();
    let merged = match blocking(move || {
        query::merge(
            &backend.store().profiles(),
            &selector,
            from,
            until,
            step(from, until),
        )
    })
    .await
    {
        Ok(merged) => merged,
        Err(response) => return response,
    };
    let flamebearer = merged.flamebearer_limited(max_nodes);
    // As Pyroscope's ExportToFlamebearer: CPU time is shown as "samples"
    // at a rate of 10⁹ per second, so nanoseconds read as seconds.
    let (units, sample_rate) = match profile_type.sample_type.as_str() {
        "cpu" => ("samples".to_owned(), 1_000_000_000u32),
        "inuse_objects" | "alloc_objects" | "goroutine" | "samples" => ("objects".to_owned(), 100),
        _ => (profile_type.sample_unit.clone(), 100),
    };
    axum::Json(json!({
        "version": 1,
        "flamebearer": flamebearer,
        "metadata": {
            "format": "single",
            "spyName": "",
            "sampleRate": sample_rate,
            "units": units,
            "name": profile_type.sample_type,
        },
        "timeline": {
            "startTime": merged.timeline.start_seconds,
            "samples": merged.timeline.samples,
            "durationDelta": merged.timeline.step_seconds,
            "watermarks": {},
        },
        "groups": null,
        "heatmap": null,
    }))
    .into_response()
}

async fn top(State(backend): State<Arc<Backend>>, params: Params) -> Response {
    let (selector, (from, until)) = match (selector(&params), window(&params)) {
        (Ok(s), Ok(w)) => (s, w),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let limit = match params.get("limit").map(str::parse::<usize>).transpose() {
        Ok(limit) => limit.unwrap_or(20),
        Err(_) => return bad("invalid limit: not a whole number"),
    };
    match blocking(move || {
        let merged = query::merge(
            &backend.store().profiles(),
            &selector,
            from,
            until,
            until - from,
        );
        json!({"total": merged.total(), "functions": merged.top(limit)})
    })
    .await
    {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(response) => response,
    }
}

async fn tree(State(backend): State<Arc<Backend>>, params: Params) -> Response {
    let (selector, (from, until)) = match (selector(&params), window(&params)) {
        (Ok(s), Ok(w)) => (s, w),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    match blocking(move || {
        query::merge(
            &backend.store().profiles(),
            &selector,
            from,
            until,
            until - from,
        )
        .root()
    })
    .await
    {
        Ok(root) => axum::Json(root).into_response(),
        Err(response) => response,
    }
}

async fn label_names(State(backend): State<Arc<Backend>>, params: Params) -> Response {
    let (from, until) = match window(&params) {
        Ok(w) => w,
        Err(r) => return r,
    };
    match blocking(move || backend.store().profiles().label_names(from, until)).await {
        Ok(names) => axum::Json(names).into_response(),
        Err(response) => response,
    }
}

async fn label_values(State(backend): State<Arc<Backend>>, params: Params) -> Response {
    let (from, until) = match window(&params) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Some(label) = params.get("label").map(str::to_owned) else {
        return bad("missing label parameter: name the label, like label=service_name");
    };
    let selector = match params.get("query").map(Selector::parse).transpose() {
        Ok(s) => s,
        Err(e) => return bad(e),
    };
    match blocking(move || {
        backend
            .store()
            .profiles()
            .label_values(&label, selector.as_ref(), from, until)
    })
    .await
    {
        Ok(values) => axum::Json(values).into_response(),
        Err(response) => response,
    }
}
