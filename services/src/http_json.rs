//! JSON bodies in and errors out, the same way on every route: a body that
//! is not the expected JSON is a 400 that says where it went wrong.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

/// A JSON error body: `{"error": message}`.
pub fn error_response(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// Parses the body as JSON whatever its content type says (the original's
/// clients do not all send one). An empty body reads as JSON `null`, so
/// `JsonBody<Option<T>>` accepts it.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"null"
        } else {
            &bytes
        };
        serde_json::from_slice(text).map(JsonBody).map_err(|err| {
            error_response(
                StatusCode::BAD_REQUEST,
                &format!("request body is not the expected JSON: {err}"),
            )
        })
    }
}
