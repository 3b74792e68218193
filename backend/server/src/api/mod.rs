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
        .merge(tempo::routes())
        .merge(loki::routes())
        .merge(prom::routes())
        .merge(pyroscope::routes())
        .with_state(backend)
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
