//! The lab console: a web cockpit served on loopback by a detached `lab
//! console serve` that `lab up` starts and `lab down` stops. Server-side
//! HTML with inline SVG charts and a few lines of plain JavaScript; every
//! view reads through the lab's own libraries (the runtime's health, the
//! query client, the scenario runner, the guide's progress, diagnose), so
//! the console and the terminal always say the same thing.
//!
//! `pages` draws the lab, the scenarios, the guide and the diagnosis;
//! `signals` the trace, log, metric and profile views; `actions` takes the
//! forms that change something; `html` and `svg` are pure rendering.

mod actions;
mod html;
mod pages;
mod signals;
mod svg;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::query::{QueryClient, QueryError};
use crate::runtime::process;
use crate::state::{LabState, StateDir};

/// The port the console prefers; the next free one near it otherwise.
pub const PREFERRED_PORT: u16 = 3333;

/// The running console, as `<state>/console.json` records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub pid: u32,
    pub url: String,
    /// In the process' command line (the state folder): checked before
    /// the pid is signalled.
    pub marker: String,
}

fn record_path(state: &StateDir) -> std::path::PathBuf {
    state.root().join("console.json")
}

/// The console of this lab, if one is recorded and still runs.
pub fn running(state: &StateDir) -> Option<Record> {
    let text = std::fs::read_to_string(record_path(state)).ok()?;
    let record: Record = serde_json::from_str(&text).ok()?;
    process::is_ours(record.pid, &record.marker).then_some(record)
}

/// Starts the console as a detached process of the lab binary and waits
/// until it answers; any console recorded before is stopped first.
pub async fn start(state: &StateDir) -> Result<Record> {
    stop(state);
    let port = (PREFERRED_PORT..PREFERRED_PORT + 10)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .unwrap_or_else(|| process::port(PREFERRED_PORT, &[]));
    let lab_binary = std::env::current_exe().context("cannot find the lab binary")?;
    let mut command = std::process::Command::new(lab_binary);
    command.arg("--state-dir").arg(state.root()).args([
        "console",
        "serve",
        "--port",
        &port.to_string(),
    ]);
    let log = state.logs().join("console.log");
    let pid = process::spawn(command, &log)?;
    let record = Record {
        pid,
        url: format!("http://127.0.0.1:{port}"),
        marker: state.root().display().to_string(),
    };
    std::fs::write(record_path(state), serde_json::to_vec_pretty(&record)?)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(record);
        }
        if !process::is_ours(pid, &record.marker) || tokio::time::Instant::now() > deadline {
            anyhow::bail!(
                "the console did not start on port {port}: see {}",
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops the recorded console (only if the pid is still this lab's).
pub fn stop(state: &StateDir) {
    if let Ok(text) = std::fs::read_to_string(record_path(state)) {
        if let Ok(record) = serde_json::from_str::<Record>(&text) {
            process::stop(
                record.pid,
                &record.marker,
                libc::SIGTERM,
                Duration::from_secs(5),
            );
        }
        let _ = std::fs::remove_file(record_path(state));
    }
}

/// What every handler shares.
pub struct Console {
    state: StateDir,
    /// The query client of the lab as last read, rebuilt when the lab's
    /// record changes.
    client: Mutex<Option<(LabState, Arc<QueryClient>)>>,
    /// The last run of each guide step, (scenario, step) → its result, so
    /// the page shows it after the form's redirect.
    runs: Mutex<HashMap<(String, usize), pages::StepRun>>,
    /// The last diagnosis: a whole chain of queries and a Postgres session
    /// (a few hundred ms), so a page reloaded on a projector reuses it for
    /// [`DIAGNOSIS_REUSE`]; "Diagnose again" always runs a new one.
    diagnosis: tokio::sync::Mutex<Option<pages::Diagnosed>>,
}

/// How long a diagnosis is shown again before the page runs a new one.
pub const DIAGNOSIS_REUSE: Duration = Duration::from_secs(5);

impl Console {
    pub fn new(state: StateDir) -> Console {
        Console {
            state,
            client: Mutex::new(None),
            runs: Mutex::new(HashMap::new()),
            diagnosis: tokio::sync::Mutex::new(None),
        }
    }

    /// The running lab, or a page saying there is none.
    fn lab(&self) -> Result<LabState, PageError> {
        match self.state.load() {
            Ok(Some(lab)) => Ok(lab),
            Ok(None) => Err(PageError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The lab is not up",
                format!(
                    "no lab is recorded in {}: run `lab up`",
                    self.state.root().display()
                ),
            )),
            Err(e) => Err(PageError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The lab's record cannot be read",
                format!("{e:#}"),
            )),
        }
    }

    /// The query client for `lab`'s backends.
    fn client(&self, lab: &LabState) -> Result<Arc<QueryClient>, PageError> {
        let mut cached = self
            .client
            .lock()
            .expect("the client cache is never poisoned");
        if let Some((seen, client)) = cached.as_ref()
            && seen == lab
        {
            return Ok(client.clone());
        }
        let client = Arc::new(
            QueryClient::for_lab(lab).map_err(|e| PageError::from_query("No backend", &e))?,
        );
        *cached = Some((lab.clone(), client.clone()));
        Ok(client)
    }

    /// Grafana's base URL when the lab runs it.
    fn grafana(lab: &LabState) -> Option<String> {
        lab.grafana_url().map(str::to_owned)
    }
}

/// A page that could not be drawn, said plainly and with a status that
/// tells whose fault it was: 400 a bad query or id, 404 nothing found,
/// 502 a backend that did not answer, 503 no lab.
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    title: String,
    message: String,
}

impl PageError {
    fn new(status: StatusCode, title: &str, message: String) -> PageError {
        PageError {
            status,
            title: title.to_owned(),
            message,
        }
    }

    /// An error from a backend or a service: a backend's own answer
    /// decides the status, anything else is a gateway's failure.
    fn from_query(title: &str, error: &anyhow::Error) -> PageError {
        match error.downcast_ref::<QueryError>() {
            Some(query) => PageError::from_backend(title, query),
            None => PageError::new(StatusCode::BAD_GATEWAY, title, format!("{error:#}")),
        }
    }

    /// A backend's refusal or silence: 400 for a query it refused, 404 for
    /// what it does not have, 502 for no answer or one it should not give.
    fn from_backend(title: &str, error: &QueryError) -> PageError {
        let status = match error.status() {
            Some(400 | 422) => StatusCode::BAD_REQUEST,
            Some(404) => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_GATEWAY,
        };
        let mut message = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        PageError::new(status, title, message)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let body = format!(
            r#"{}<p><a href="/">Back to the lab</a></p>"#,
            html::error_box(&self.message)
        );
        (self.status, Html(html::page("", &self.title, &body))).into_response()
    }
}

type Page = Result<Response, PageError>;

/// The console's routes over the shared state.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(pages::lab))
        .route("/scenarios", get(pages::scenarios))
        .route("/guide", get(pages::guide))
        .route("/diagnose", get(pages::diagnose))
        .route("/traces", get(signals::traces))
        .route("/trace/{id}", get(signals::trace))
        .route("/logs", get(signals::logs))
        .route("/metrics", get(signals::metrics))
        .route("/profiles", get(signals::profiles))
        .route("/actions/traffic", post(actions::traffic))
        .route("/actions/scenario/start", post(actions::scenario_start))
        .route("/actions/scenario/stop", post(actions::scenario_stop))
        .route("/actions/guide/{action}", post(actions::guide))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async {
            PageError::new(
                StatusCode::NOT_FOUND,
                "Not found",
                "there is no such page: the navigation above lists them".into(),
            )
        })
        .with_state(console)
}

/// Serves the console on 127.0.0.1:`port` until SIGTERM or Ctrl-C.
pub async fn serve(state: StateDir, port: u16) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    eprintln!("the console listens on http://127.0.0.1:{port}");
    axum::serve(listener, router(Arc::new(Console::new(state))))
        .with_graceful_shutdown(mythical_services::shutdown_signal())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_errors_answer_with_the_status_they_deserve() {
        let refused = |status| QueryError::Refused {
            url: "http://x/api/search".into(),
            status,
            message: "parse error at 1:3".into(),
        };
        let status = |e: QueryError| PageError::from_query("t", &anyhow::Error::from(e)).status;
        assert_eq!(status(refused(400)), StatusCode::BAD_REQUEST);
        assert_eq!(status(refused(422)), StatusCode::BAD_REQUEST);
        assert_eq!(status(refused(404)), StatusCode::NOT_FOUND);
        assert_eq!(status(refused(500)), StatusCode::BAD_GATEWAY);
        let unreadable = QueryError::Unreadable {
            url: "http://x".into(),
            reason: "expected value".into(),
        };
        assert_eq!(status(unreadable), StatusCode::BAD_GATEWAY);
        // An error that merely says "answered 400" is not a backend's.
        let text = anyhow::anyhow!("http://x answered 400: no");
        assert_eq!(
            PageError::from_query("t", &text).status,
            StatusCode::BAD_GATEWAY
        );
    }

    #[test]
    fn a_page_error_is_a_page_with_its_message() {
        let response = PageError::new(
            StatusCode::BAD_REQUEST,
            "Bad query",
            "unexpected `<` at 1:1".into(),
        )
        .into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
}
