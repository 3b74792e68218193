//! The admin HTTP API: read, replace and clear the toxics (behind the bearer
//! token when one is configured) and a health check that never needs one.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::control::{Control, Status};
use crate::toxics::Toxics;

pub(crate) fn router(control: Arc<Control>, token: Option<Arc<str>>) -> Router {
    let toxics = Router::new()
        .route("/toxics", get(show).put(replace).delete(clear))
        .with_state(control)
        .route_layer(middleware::from_fn_with_state(token, require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(toxics)
}

async fn show(State(control): State<Arc<Control>>) -> Json<Status> {
    Json(control.status())
}

/// A full replace: a body that does not parse or validate changes nothing.
async fn replace(State(control): State<Arc<Control>>, body: Bytes) -> Response {
    match Toxics::from_json(&body) {
        Ok(toxics) => {
            control.set(toxics);
            Json(control.status()).into_response()
        }
        Err(err) => error(StatusCode::BAD_REQUEST, &err.to_string()),
    }
}

async fn clear(State(control): State<Arc<Control>>) -> Json<Status> {
    control.set(Toxics::default());
    Json(control.status())
}

async fn require_token(
    State(token): State<Option<Arc<str>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = token else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(given) if same_secret(given.as_bytes(), token.as_bytes()) => next.run(request).await,
        Some(_) => unauthorized("wrong token for the proxy's admin API"),
        None => unauthorized("missing token: send `Authorization: Bearer <token>`"),
    }
}

/// Compares without stopping at the first difference, so the time taken
/// does not tell how much of a guess was right.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

fn unauthorized(message: &str) -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}
