//! The request handlers: each request gets a server span (continuing the
//! caller's trace), a database client span per statement, one log event, and
//! one observation of `mythical_request_times`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mythical_storage::{Beast, Operation, StorageError};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt as _, Tracer as _,
};
use opentelemetry::{Context, KeyValue, Value};
use serde_json::json;

type Json = serde_json::Value;

use super::AppState;
use super::fingerprint;
use crate::events::{Level, Logfmt};
use crate::faults::memory_leak::Caching;
use crate::faults::{cpu_hog, memory_leak, null_name, table_wipe};
use crate::http_json::error_response;

type Shared = State<Arc<AppState>>;
type Peer = ConnectInfo<SocketAddr>;

pub(super) async fn healthz(State(state): Shared) -> Response {
    if !state.migrated.load(Ordering::Acquire) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "status": "starting", "error": "database schema not applied yet" })),
        )
            .into_response();
    }
    match state.store.ping().await {
        Ok(()) => axum::Json(json!({ "status": "ok" })).into_response(),
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "status": "unavailable", "error": err.to_string() })),
        )
            .into_response(),
    }
}

pub(super) async fn metrics(State(state): Shared, headers: HeaderMap) -> Response {
    crate::exposition::respond(&headers, state.metrics.encode())
}

pub(super) async fn list(
    State(state): Shared,
    Path(endpoint): Path<String>,
    headers: HeaderMap,
    peer: Peer,
) -> Response {
    let call = Call::start(&state, "GET", &endpoint, &headers, peer.0);
    let Some(beast) = call.beast else {
        return call.unknown_beast();
    };
    if let Some(unavailable) = call.teardown_check() {
        return unavailable;
    }
    call.every_request(beast).await;
    let result = call
        .db(
            beast,
            Operation::Select,
            None,
            state.store.list_names(beast),
        )
        .await;
    match result {
        Ok(names) => {
            let body: Vec<Json> = names
                .into_iter()
                .map(|name| json!({ "name": name }))
                .collect();
            call.finish(StatusCode::OK, axum::Json(body).into_response(), None)
        }
        Err(err) => call.database_error(&err),
    }
}

pub(super) async fn create(
    State(state): Shared,
    Path(endpoint): Path<String>,
    headers: HeaderMap,
    peer: Peer,
    body: Bytes,
) -> Response {
    let call = Call::start(&state, "POST", &endpoint, &headers, peer.0);
    let Some(beast) = call.beast else {
        return call.unknown_beast();
    };
    let received = match call.name_from_body(&body) {
        Ok(name) => name,
        Err(message) => return call.bad_request(message),
    };
    if let Some(unavailable) = call.teardown_check() {
        return unavailable;
    }
    call.every_request(beast).await;
    let name = null_name::name_to_insert(&state.faults, received);
    let result = call
        .db(
            beast,
            Operation::Insert,
            Some(name.as_deref()),
            state.store.insert(beast, name.as_deref()),
        )
        .await;
    match result {
        Ok(()) => call.finish(
            StatusCode::CREATED,
            (StatusCode::CREATED, axum::Json(json!({ "name": name }))).into_response(),
            None,
        ),
        Err(err) => call.database_error(&err),
    }
}

pub(super) async fn remove(
    State(state): Shared,
    Path(endpoint): Path<String>,
    headers: HeaderMap,
    peer: Peer,
    body: Bytes,
) -> Response {
    let call = Call::start(&state, "DELETE", &endpoint, &headers, peer.0);
    let Some(beast) = call.beast else {
        return call.unknown_beast();
    };
    let name = match call.name_from_body(&body) {
        Ok(name) => name,
        Err(message) => return call.bad_request(message),
    };
    if let Some(unavailable) = call.teardown_check() {
        return unavailable;
    }
    call.every_request(beast).await;
    let result = call
        .db(
            beast,
            Operation::Delete,
            Some(name.as_deref()),
            state.store.delete(beast, name.as_deref()),
        )
        .await;
    match result {
        Ok(_) => call.finish(
            StatusCode::NO_CONTENT,
            StatusCode::NO_CONTENT.into_response(),
            None,
        ),
        Err(err) => call.database_error(&err),
    }
}

/// One request in flight: its server span, and what it needs to answer,
/// log and measure itself the same way on every path.
struct Call<'a> {
    state: &'a AppState,
    cx: Context,
    method: &'static str,
    endpoint: String,
    beast: Option<Beast>,
    started: Instant,
}

impl<'a> Call<'a> {
    fn start(
        state: &'a AppState,
        method: &'static str,
        endpoint: &str,
        headers: &HeaderMap,
        peer: SocketAddr,
    ) -> Call<'a> {
        let parent = crate::propagation::extract(headers);
        let beast: Option<Beast> = endpoint.parse().ok();
        let beast_attr = match beast {
            Some(beast) => Value::from(beast.as_str()),
            None => Value::from(endpoint.to_owned()),
        };
        let mut attributes = Vec::with_capacity(14);
        attributes.extend([
            KeyValue::new("http.request.method", method),
            KeyValue::new("http.route", "/:beast"),
            KeyValue::new("url.path", format!("/{endpoint}")),
            KeyValue::new("url.scheme", "http"),
            KeyValue::new("client.address", peer.ip().to_string()),
            KeyValue::new("client.port", i64::from(peer.port())),
            KeyValue::new("beast", beast_attr),
        ]);
        if state.conventions.old_http {
            attributes.extend([
                KeyValue::new("http.method", method),
                KeyValue::new("http.target", format!("/{endpoint}")),
                KeyValue::new("http.scheme", "http"),
                KeyValue::new("net.sock.peer.addr", peer.ip().to_string()),
            ]);
        }
        if let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
            let (address, port) = host.rsplit_once(':').unwrap_or((host, ""));
            attributes.push(KeyValue::new("server.address", address.to_owned()));
            if let Ok(port) = port.parse::<i64>() {
                attributes.push(KeyValue::new("server.port", port));
            }
        }
        if let Some(agent) = headers
            .get(header::USER_AGENT)
            .and_then(|h| h.to_str().ok())
        {
            attributes.push(KeyValue::new("user_agent.original", agent.to_owned()));
            if state.conventions.old_http {
                attributes.push(KeyValue::new("http.user_agent", agent.to_owned()));
            }
        }
        let name = match method {
            "GET" => "GET /:beast",
            "POST" => "POST /:beast",
            _ => "DELETE /:beast",
        };
        let span = state
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(&state.tracer, &parent);
        Call {
            state,
            cx: parent.with_span(span),
            method,
            endpoint: endpoint.to_owned(),
            beast,
            started: Instant::now(),
        }
    }

    fn span_context(&self) -> SpanContext {
        self.cx.span().span_context().clone()
    }

    /// The `name` of a POST or DELETE body. A JSON object without `name`
    /// (or with `"name": null`) goes on as NULL, as in the original, so
    /// Postgres decides; anything that is not such an object is a 400.
    fn name_from_body(&self, body: &Bytes) -> Result<Option<String>, String> {
        // OpenTelemetry's HTTP convention: what arrived, however it parses.
        self.cx.span().set_attribute(KeyValue::new(
            "http.request.body.size",
            i64::try_from(body.len()).unwrap_or(i64::MAX),
        ));
        let parsed: Result<Json, String> = serde_json::from_slice(body).map_err(|e| e.to_string());
        let name = match parsed {
            Ok(Json::Object(mut fields)) => match fields.remove("name") {
                None | Some(Json::Null) => Ok(None),
                Some(Json::String(name)) => Ok(Some(name)),
                Some(other) => Err(format!("`name` must be a string, not {other}")),
            },
            Ok(other) => Err(format!(
                "expected a JSON object like {{\"name\": \"…\"}}, got {other}"
            )),
            Err(err) => Err(format!("request body is not JSON: {err}")),
        };
        if let Ok(Some(name)) = &name {
            self.cx
                .span()
                .set_attribute(KeyValue::new("mythical.name", name.clone()));
        }
        name
    }

    fn bad_request(self, message: String) -> Response {
        let response = error_response(StatusCode::BAD_REQUEST, &message);
        self.finish_with(
            StatusCode::BAD_REQUEST,
            response,
            Some(message),
            Level::Warn,
        )
    }

    /// What every request does besides its statement: its fingerprint, the
    /// answer cache, and the faults that act on every request rather than
    /// on one statement (connections leaked, tables dropped).
    async fn every_request(&self, beast: Beast) {
        let state = self.state;
        std::hint::black_box(fingerprint::stretch(
            beast.as_str().as_bytes(),
            cpu_hog::stretch_for(&state.faults),
        ));
        match memory_leak::caching(&state.faults) {
            Caching::Keep => state.answers.remember(),
            Caching::EvictAll => state.answers.evict_all(),
            Caching::Nothing => {}
        }
        state.leaked.on_request(&state.faults, &state.store).await;
        let action = state.wiped.action(&state.faults);
        if action == table_wipe::Action::Nothing {
            return;
        }
        let (name, statement) = match action {
            table_wipe::Action::Drop => (
                "DROP TABLE",
                "DROP TABLE IF EXISTS unicorn, manticore, illithid, owlbear, beholder",
            ),
            _ => (
                "CREATE TABLE",
                "CREATE TABLE IF NOT EXISTS <each beast> (id serial PRIMARY KEY, name VARCHAR(50) UNIQUE NOT NULL)",
            ),
        };
        let tracer = &state.tracer;
        let mut attributes = state.db_attributes.clone();
        let operation = name.split(' ').next().unwrap_or(name);
        attributes.extend([
            KeyValue::new("db.operation.name", operation),
            KeyValue::new("db.query.text", statement),
        ]);
        if state.conventions.old_database {
            attributes.extend([
                KeyValue::new("db.operation", operation),
                KeyValue::new("db.statement", statement),
            ]);
        }
        let mut span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(tracer, &self.cx);
        let result = match action {
            table_wipe::Action::Drop => state.store.drop_tables().await,
            _ => state.store.create_tables().await,
        };
        if let Err(err) = result {
            span.set_status(Status::error(err.to_string()));
        }
        span.end();
    }

    /// The original's answer while its tables are being wiped.
    fn teardown_check(&self) -> Option<Response> {
        self.state.teardown.load(Ordering::Acquire).then(|| {
            let message = "Table is not available".to_owned();
            let response = error_response(StatusCode::INTERNAL_SERVER_ERROR, &message);
            self.finish(StatusCode::INTERNAL_SERVER_ERROR, response, Some(message))
        })
    }

    /// Runs one statement under a database client span (OTel database
    /// conventions); a failure marks the span ERROR with an `exception`
    /// event carrying Postgres' message and the SQLSTATE.
    async fn db<T>(
        &self,
        beast: Beast,
        op: Operation,
        parameter: Option<Option<&str>>,
        statement: impl Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        let tracer = &self.state.tracer;
        let mut attributes = Vec::with_capacity(self.state.db_attributes.len() + 7);
        attributes.extend_from_slice(&self.state.db_attributes);
        attributes.extend([
            KeyValue::new("db.collection.name", beast.as_str()),
            KeyValue::new("db.operation.name", op.as_str()),
            KeyValue::new("db.query.text", beast.statement(op)),
        ]);
        if self.state.conventions.old_database {
            attributes.extend([
                KeyValue::new("db.sql.table", beast.as_str()),
                KeyValue::new("db.operation", op.as_str()),
                KeyValue::new("db.statement", beast.statement(op)),
            ]);
        }
        if let Some(value) = parameter {
            // What was bound, so the span shows whether NULL reached Postgres.
            attributes.push(KeyValue::new(
                "db.query.parameter.0",
                value.unwrap_or("NULL").to_owned(),
            ));
        }
        let mut span = tracer
            .span_builder(beast.span_name(op))
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(tracer, &self.cx);
        let result = match tokio::time::timeout(self.state.query_timeout, statement).await {
            Ok(result) => result,
            Err(_) => Err(StorageError::Unavailable(format!(
                "no answer from Postgres within {} ms",
                self.state.query_timeout.as_millis()
            ))),
        };
        if let Err(err) = &result {
            let (kind, code) = match err.db_error() {
                Some(db) => ("PgDatabaseError", db.sqlstate.clone()),
                None => ("DatabaseUnavailable", "unavailable".to_owned()),
            };
            span.set_attribute(KeyValue::new("db.response.status_code", code.clone()));
            span.set_attribute(KeyValue::new("error.type", code));
            span.add_event(
                "exception",
                vec![
                    KeyValue::new("exception.type", kind),
                    KeyValue::new("exception.message", err.to_string()),
                ],
            );
            span.set_status(Status::error(err.to_string()));
        }
        span.end();
        result
    }

    fn unknown_beast(self) -> Response {
        let message = format!("{} is not a valid endpoint", self.endpoint);
        let response = error_response(StatusCode::NOT_FOUND, &message);
        self.finish_with(StatusCode::NOT_FOUND, response, Some(message), Level::Warn)
    }

    fn database_error(self, err: &StorageError) -> Response {
        let mut body = json!({ "error": err.to_string() });
        if let Some(db) = err.db_error() {
            let fields = serde_json::to_value(db).expect("DbError serialises");
            if let (Json::Object(body), Json::Object(fields)) = (&mut body, fields) {
                body.extend(fields.into_iter().filter(|(k, _)| k != "message"));
            }
        }
        let response = (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response();
        self.finish(
            StatusCode::INTERNAL_SERVER_ERROR,
            response,
            Some(err.to_string()),
        )
    }

    fn finish(&self, status: StatusCode, response: Response, error: Option<String>) -> Response {
        let level = if error.is_some() {
            Level::Error
        } else {
            Level::Info
        };
        self.finish_with(status, response, error, level)
    }

    /// Ends the request: status on the span, one log event, one histogram
    /// observation with the trace as exemplar.
    fn finish_with(
        &self,
        status: StatusCode,
        response: Response,
        error: Option<String>,
        level: Level,
    ) -> Response {
        let span = self.cx.span();
        let span_cx = span.span_context().clone();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status.as_u16()),
        ));
        if self.state.conventions.old_http {
            span.set_attribute(KeyValue::new(
                "http.status_code",
                i64::from(status.as_u16()),
            ));
        }
        if status.is_server_error() {
            span.set_attribute(KeyValue::new("error.type", status.as_u16().to_string()));
            span.set_status(Status::error(error.clone().unwrap_or_default()));
        }
        let beast = self.beast;
        let mut line = Logfmt::new()
            .field("traceID", span_cx.trace_id())
            .field("http.method", self.method)
            .field("endpoint", &self.endpoint)
            .field(
                "status",
                if error.is_some() {
                    "FAILURE"
                } else {
                    "SUCCESS"
                },
            )
            .field("code", status.as_u16());
        if let Some(error) = &error {
            line = line.field("error", error);
        }
        self.state.events.emit(level, beast, Some(&span_cx), line);
        let elapsed_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        self.state.metrics.observe(
            self.method,
            status.as_u16(),
            beast.map_or("unknown", Beast::as_str),
            elapsed_ms,
            &self.span_context(),
        );
        span.end();
        response
    }
}
