//! The admin API each service offers for its fault switches and its random
//! seed (and, on the requester, its traffic). It changes a running system,
//! so every route wants the per-lab bearer token from
//! `MYTHICAL_ADMIN_TOKEN`; without a configured token the API stays shut.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::faults::{FaultError, Switchboard};
use crate::http_json::{JsonBody, error_response};

/// What a PUT of a fault switch may say; an empty body means "on, at the
/// kind's default rate, until cleared".
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<u64>,
}

/// The `/admin/faults` routes over `faults`, plus any `extra` admin routes,
/// all behind the bearer token.
pub fn router(
    service: &'static str,
    faults: Arc<Switchboard>,
    token: Option<String>,
    extra: Router,
) -> Router {
    let fault_routes = Router::new()
        .route("/admin/faults", get(list).delete(clear_all))
        .route("/admin/faults/{kind}", get(show).put(set).delete(clear))
        .route(
            "/admin/seed",
            get(show_seed).put(set_seed).delete(clear_seed),
        )
        .with_state((service, faults));
    fault_routes
        .merge(extra)
        .layer(middleware::from_fn_with_state(
            token.map(Arc::<str>::from),
            require_token,
        ))
}

async fn require_token(
    State(token): State<Option<Arc<str>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = token else {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "the admin API is off: start the service with MYTHICAL_ADMIN_TOKEN set",
        );
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => {
            next.run(request).await
        }
        Some(_) => unauthorized("wrong admin token: use the token in the lab's state folder"),
        None => unauthorized("missing admin token: send `Authorization: Bearer <token>`"),
    }
}

fn unauthorized(message: &str) -> Response {
    let mut response = error_response(StatusCode::UNAUTHORIZED, message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

/// Compares without stopping at the first differing byte, so timing does
/// not reveal how much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

type FaultState = (&'static str, Arc<Switchboard>);

async fn list(State((service, faults)): State<FaultState>) -> Response {
    axum::Json(crate::faults::FaultList {
        service: service.into(),
        faults: faults.statuses(),
    })
    .into_response()
}

async fn show(State((_, faults)): State<FaultState>, Path(kind): Path<String>) -> Response {
    match faults.statuses().into_iter().find(|s| s.kind == kind) {
        Some(status) => axum::Json(status).into_response(),
        None => fault_error(faults.clear(&kind).unwrap_err()),
    }
}

async fn set(
    State((_, faults)): State<FaultState>,
    Path(kind): Path<String>,
    JsonBody(request): JsonBody<Option<FaultRequest>>,
) -> Response {
    let request = request.unwrap_or_default();
    let duration = request.duration_seconds.map(Duration::from_secs);
    match faults.set(&kind, request.rate, duration) {
        Ok(status) => axum::Json(status).into_response(),
        Err(err) => fault_error(err),
    }
}

async fn clear(State((_, faults)): State<FaultState>, Path(kind): Path<String>) -> Response {
    match faults.clear(&kind) {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => fault_error(err),
    }
}

async fn clear_all(State((_, faults)): State<FaultState>) -> StatusCode {
    faults.clear_all();
    StatusCode::NO_CONTENT
}

/// What a PUT of the seed says.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedRequest {
    pub seed: u64,
}

async fn show_seed() -> Response {
    axum::Json(json!({ "seed": crate::random::seed() })).into_response()
}

/// Restarts the service's random sequence from a seed: the same requests,
/// names and fault hits on every run with it.
async fn set_seed(JsonBody(request): JsonBody<SeedRequest>) -> Response {
    crate::random::reseed(request.seed);
    axum::Json(json!({ "seed": request.seed })).into_response()
}

async fn clear_seed() -> StatusCode {
    crate::random::unseed();
    StatusCode::NO_CONTENT
}

fn fault_error(err: FaultError) -> Response {
    let status = match err {
        FaultError::UnknownKind { .. } => StatusCode::NOT_FOUND,
        FaultError::BadRate(_) | FaultError::BadSpec(_) => StatusCode::BAD_REQUEST,
    };
    error_response(status, &err.to_string())
}
