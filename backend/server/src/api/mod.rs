//! The query side: Tempo's, Loki's, Prometheus' and Pyroscope's HTTP APIs
//! on one router. Their paths do not collide, so one base URL serves as
//! each datasource. Queries run on the blocking pool, holding only a read lock
//! of the signal they read.

// Request helpers return the ready `Response` as their error, axum's idiom
// for an early answer; its size is irrelevant on this path.
#![allow(clippy::result_large_err)]

mod loki;
mod prom;
mod pyroscope;
mod tempo;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::backend::Backend;

pub fn router(backend: Arc<Backend>) -> Router {
    Router::new()
        .route("/ready", get(|| async { "ready" }))
        .route("/metrics", get(own_metrics))
        .merge(tempo::routes())
        .merge(loki::routes())
        .merge(prom::routes())
        .merge(pyroscope::routes())
        .with_state(backend)
}

/// The backend's own figures in Prometheus' text format, as Tempo, Loki
/// and Mimir each answer on `/metrics`: what the store holds against its
/// bound, so a lab's memory can be read beside the process' own.
async fn own_metrics(
    axum::extract::State(backend): axum::extract::State<Arc<Backend>>,
) -> Response {
    let store = backend.store();
    let stats = store.stats();
    let by_signal = [
        ("{signal=\"traces\"}", store.traces().bytes()),
        ("{signal=\"logs\"}", store.logs().bytes()),
        ("{signal=\"metrics\"}", store.metrics().bytes()),
        ("{signal=\"profiles\"}", store.profiles().bytes()),
    ];
    let now = crate::params::now_nanos();
    let age =
        |oldest: Option<i64>| oldest.map_or(0, |t| ((now - t).max(0) / 1_000_000_000) as usize);
    let ages = [
        ("{signal=\"traces\"}", age(store.traces().oldest())),
        ("{signal=\"logs\"}", age(store.logs().oldest())),
        (
            "{signal=\"metrics\"}",
            age(store.metrics().oldest().map(|ms| ms * 1_000_000)),
        ),
        ("{signal=\"profiles\"}", age(store.profiles().oldest())),
    ];
    let mut text = String::new();
    let mut family = |name: &str, help: &str, samples: &[(&str, usize)]| {
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for (labels, value) in samples {
            text.push_str(&format!("{name}{labels} {value}\n"));
        }
    };
    family(
        "lab_backend_stored_bytes",
        "Estimated heap bytes of the stored telemetry by signal; their sum is what the size bound counts.",
        &by_signal,
    );
    family(
        "lab_backend_max_stored_bytes",
        "The size bound: past it the oldest telemetry is dropped.",
        &[("", backend.limits().max_bytes)],
    );
    family(
        "lab_backend_oldest_age_seconds",
        "How far back the stored telemetry reaches, by signal (0 when none is stored).",
        &ages,
    );
    family(
        "lab_backend_stored_items",
        "Stored items by kind.",
        &[
            ("{kind=\"traces\"}", stats.traces),
            ("{kind=\"spans\"}", stats.spans),
            ("{kind=\"log_streams\"}", stats.log_streams),
            ("{kind=\"log_lines\"}", stats.log_lines),
            ("{kind=\"series\"}", stats.series),
            ("{kind=\"samples\"}", stats.samples),
            ("{kind=\"profile_series\"}", stats.profile_series),
            ("{kind=\"profiles\"}", stats.profiles),
        ],
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
        .into_response()
}

/// What the three backends' buildinfo endpoints answer, filled with the
/// lab's own version.
fn buildinfo() -> serde_json::Value {
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": "mythical-lab",
        "branch": "main",
        "buildUser": "mythical-lab",
        "buildDate": "",
        "goVersion": "none (Rust)",
    })
}

/// Runs a query on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("query failed: {e}"),
        )
            .into_response()
    })
}

/// Query parameters, repeated ones (`match[]`) kept, from the URL and, for
/// POST, the form body.
#[derive(Debug, Default)]
struct Params(Vec<(String, String)>);

impl Params {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Params {
    type Rejection = Response;

    async fn from_request(
        request: axum::extract::Request,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let query = request.uri().query().unwrap_or_default().to_owned();
        let form_body = request
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        let mut pairs: Vec<(String, String)> = serde_urlencoded::from_str(&query).map_err(|e| {
            (StatusCode::BAD_REQUEST, format!("bad query string: {e}")).into_response()
        })?;
        if form_body {
            let body = axum::body::Bytes::from_request(request, state)
                .await
                .map_err(IntoResponse::into_response)?;
            let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).map_err(|e| {
                (StatusCode::BAD_REQUEST, format!("bad form body: {e}")).into_response()
            })?;
            pairs.extend(form);
        }
        Ok(Params(pairs))
    }
}
