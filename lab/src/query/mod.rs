//! The lab's one query client: TraceQL, LogQL and PromQL over the Tempo,
//! Loki and Prometheus HTTP APIs, the same for the embedded backend and the
//! real ones, so the query a guide shows is the query it runs.

pub mod answer;

use anyhow::{Result, bail};
use serde::de::DeserializeOwned;

pub use answer::{DataAnswer, ProfileTop, Render, TraceAnswer, TraceSearch};

/// A query language and the API that answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    Traceql,
    Logql,
    Promql,
}

/// The profile types the services push, as Pyroscope names them.
pub const CPU_PROFILE: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
pub const IN_USE_PROFILE: &str = "memory:inuse_space:bytes::";
pub const ALLOCATED_PROFILE: &str = "memory:alloc_space:bytes::";

/// One service's profile of a type: `<type>{service_name="<service>"}`.
pub fn profile_selector(profile_type: &str, service: &str) -> String {
    format!(r#"{profile_type}{{service_name="{service}"}}"#)
}

/// A time window in Unix nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

impl Window {
    fn start_secs(&self) -> String {
        format!("{}", self.start / 1_000_000_000)
    }
    fn end_secs(&self) -> String {
        format!("{}", (self.end + 999_999_999) / 1_000_000_000)
    }
    /// A step that gives about 120 points, at least a second.
    pub fn default_step_secs(&self) -> i64 {
        ((self.end - self.start) / 1_000_000_000 / 120).max(1)
    }
}

/// Which API a request goes to.
#[derive(Debug, Clone, Copy)]
enum Api {
    Traces,
    Logs,
    Metrics,
    Profiles,
}

pub struct QueryClient {
    traces: String,
    logs: String,
    metrics: String,
    profiles: String,
    http: reqwest::Client,
}

impl QueryClient {
    /// `base` is the backend's query URL, e.g. `http://127.0.0.1:13200`
    /// (Tempo's, Loki's and Prometheus' paths all live under it).
    pub fn new(base: &str) -> QueryClient {
        QueryClient::split(base, base, base)
    }

    /// Three backends: Tempo's, Loki's and a Prometheus API's base URLs
    /// (Mimir's is `<mimir>/prometheus`).
    pub fn split(traces: &str, logs: &str, metrics: &str) -> QueryClient {
        let clean = |url: &str| url.trim_end_matches('/').to_owned();
        QueryClient {
            traces: clean(traces),
            logs: clean(logs),
            metrics: clean(metrics),
            profiles: clean(traces),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .expect("a plain HTTP client builds"),
        }
    }

    /// The client for a running lab: its embedded backend, or Tempo, Loki
    /// and Mimir.
    pub fn for_lab(lab: &crate::state::LabState) -> Result<QueryClient> {
        use crate::plan::Kind;
        if let Some(query) = lab.endpoint(Kind::Backend, "query") {
            return Ok(QueryClient::new(query));
        }
        let http = |kind| lab.endpoint(kind, "http");
        match (http(Kind::Tempo), http(Kind::Loki), http(Kind::Mimir)) {
            (Some(tempo), Some(loki), Some(mimir)) => {
                let mut client = QueryClient::split(tempo, loki, &format!("{mimir}/prometheus"));
                if let Some(pyroscope) = http(Kind::Pyroscope) {
                    client.profiles = pyroscope.trim_end_matches('/').to_owned();
                }
                Ok(client)
            }
            _ => bail!("the lab has no backend to ask: see `lab status`"),
        }
    }

    async fn get(
        &self,
        api: Api,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<Fetched, QueryError> {
        let base = match api {
            Api::Traces => &self.traces,
            Api::Logs => &self.logs,
            Api::Metrics => &self.metrics,
            Api::Profiles => &self.profiles,
        };
        let url = format!("{base}{path}");
        let response = self
            .http
            .get(&url)
            .query(params)
            .send()
            .await
            .map_err(|source| QueryError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            // Prometheus answers errors in JSON; Tempo and Loki in text.
            #[derive(serde::Deserialize)]
            struct ErrorAnswer {
                error: String,
            }
            let message = serde_json::from_str::<ErrorAnswer>(&body)
                .map_or(body, |answer| answer.error)
                .trim()
                .to_owned();
            return Err(QueryError::Refused {
                url,
                status: status.as_u16(),
                message,
            });
        }
        Ok(Fetched { url, body })
    }

    async fn fetch(&self, request: &Request<'_>) -> Result<Fetched, QueryError> {
        let (api, path, params) = request.target();
        let answer = self.get(api, &path, &params).await;
        match (request, answer) {
            // Tempo before 2.6 has no v2 route: its router answers 404.
            (Request::Trace { trace_id }, Err(e)) if e.is_unknown_route() => {
                self.get(Api::Traces, &format!("/api/traces/{trace_id}"), &[])
                    .await
            }
            (_, answer) => answer,
        }
    }

    /// The answer's body as the backend wrote it (what `--json` prints).
    pub async fn raw(&self, request: &Request<'_>) -> Result<String, QueryError> {
        Ok(self.fetch(request).await?.body)
    }

    async fn ask<T: DeserializeOwned>(&self, request: &Request<'_>) -> Result<T, QueryError> {
        self.fetch(request).await?.decode()
    }

    /// TraceQL search: `GET /api/search`.
    pub async fn traceql(
        &self,
        query: &str,
        window: Window,
        limit: usize,
    ) -> Result<TraceSearch, QueryError> {
        self.ask(&Request::Search {
            query,
            window,
            limit,
        })
        .await
    }

    /// LogQL over a window: `GET /loki/api/v1/query_range` (log lines or,
    /// for a metric query, a matrix).
    pub async fn logql(
        &self,
        query: &str,
        window: Window,
        limit: usize,
        step_secs: i64,
    ) -> Result<DataAnswer, QueryError> {
        self.ask(&Request::Logs {
            query,
            window,
            limit,
            step_secs,
        })
        .await
    }

    /// PromQL over a window: `GET /api/v1/query_range`.
    pub async fn promql_range(
        &self,
        query: &str,
        window: Window,
        step_secs: i64,
    ) -> Result<DataAnswer, QueryError> {
        self.ask(&Request::Range {
            query,
            window,
            step_secs,
        })
        .await
    }

    /// PromQL at one instant: `GET /api/v1/query`.
    pub async fn promql_instant(
        &self,
        query: &str,
        time_nanos: i64,
    ) -> Result<DataAnswer, QueryError> {
        self.ask(&Request::Instant { query, time_nanos }).await
    }

    /// One trace: `GET /api/v2/traces/<id>` (Tempo 2.6 on); a Tempo that
    /// answers that route with its router's 404 is older, and is asked on
    /// `GET /api/traces/<id>`, whose `batches` read the same.
    pub async fn trace(&self, trace_id: &str) -> Result<TraceAnswer, QueryError> {
        self.ask(&Request::Trace { trace_id }).await
    }

    /// The hottest functions of a profile selector over a window: `GET
    /// /api/profiles/top` (the embedded backend's summary of what
    /// `/pyroscope/render` draws); from a Pyroscope without it, the same
    /// summary computed from its flame graph.
    pub async fn profile_top(
        &self,
        query: &str,
        window: Window,
        limit: usize,
    ) -> Result<ProfileTop, QueryError> {
        let top = self
            .ask(&Request::ProfileTop {
                query,
                window,
                limit,
            })
            .await;
        match top {
            Err(e) if e.status() == Some(404) => {
                let render = self.profile_render(query, window, 8192).await?;
                Ok(render.top(limit))
            }
            other => other,
        }
    }

    /// A profile merged over a window as a flame graph, in Pyroscope's
    /// flamebearer layout: `GET /pyroscope/render` (Pyroscope's API, which
    /// the embedded backend answers too).
    pub async fn profile_render(
        &self,
        query: &str,
        window: Window,
        max_nodes: usize,
    ) -> Result<Render, QueryError> {
        self.ask(&Request::ProfileRender {
            query,
            window,
            max_nodes,
        })
        .await
    }
}

/// One question the client asks a backend.
#[derive(Debug, Clone, Copy)]
pub enum Request<'a> {
    /// TraceQL search.
    Search {
        query: &'a str,
        window: Window,
        limit: usize,
    },
    /// LogQL over a window.
    Logs {
        query: &'a str,
        window: Window,
        limit: usize,
        step_secs: i64,
    },
    /// PromQL over a window.
    Range {
        query: &'a str,
        window: Window,
        step_secs: i64,
    },
    /// PromQL at one instant.
    Instant { query: &'a str, time_nanos: i64 },
    /// One trace by id.
    Trace { trace_id: &'a str },
    /// A profile's costliest functions over a window (the embedded
    /// backend's summary).
    ProfileTop {
        query: &'a str,
        window: Window,
        limit: usize,
    },
    /// A profile merged over a window, as a flame graph.
    ProfileRender {
        query: &'a str,
        window: Window,
        max_nodes: usize,
    },
}

impl Request<'_> {
    fn target(&self) -> (Api, String, Vec<(&'static str, String)>) {
        match *self {
            Request::Search {
                query,
                window,
                limit,
            } => (
                Api::Traces,
                "/api/search".to_owned(),
                vec![
                    ("q", query.to_owned()),
                    ("start", window.start_secs()),
                    ("end", window.end_secs()),
                    ("limit", limit.to_string()),
                ],
            ),
            Request::Logs {
                query,
                window,
                limit,
                step_secs,
            } => (
                Api::Logs,
                "/loki/api/v1/query_range".to_owned(),
                vec![
                    ("query", query.to_owned()),
                    ("start", window.start.to_string()),
                    ("end", window.end.to_string()),
                    ("limit", limit.to_string()),
                    ("step", format!("{step_secs}s")),
                    ("direction", "backward".to_owned()),
                ],
            ),
            Request::Range {
                query,
                window,
                step_secs,
            } => (
                Api::Metrics,
                "/api/v1/query_range".to_owned(),
                vec![
                    ("query", query.to_owned()),
                    ("start", window.start_secs()),
                    ("end", window.end_secs()),
                    ("step", step_secs.to_string()),
                ],
            ),
            Request::Instant { query, time_nanos } => (
                Api::Metrics,
                "/api/v1/query".to_owned(),
                vec![
                    ("query", query.to_owned()),
                    ("time", format!("{}", time_nanos as f64 / 1e9)),
                ],
            ),
            Request::Trace { trace_id } => (
                Api::Traces,
                format!("/api/v2/traces/{trace_id}"),
                Vec::new(),
            ),
            Request::ProfileTop {
                query,
                window,
                limit,
            } => (
                Api::Profiles,
                "/api/profiles/top".to_owned(),
                vec![
                    ("query", query.to_owned()),
                    ("from", window.start_secs()),
                    ("until", window.end_secs()),
                    ("limit", limit.to_string()),
                ],
            ),
            Request::ProfileRender {
                query,
                window,
                max_nodes,
            } => (
                Api::Profiles,
                "/pyroscope/render".to_owned(),
                vec![
                    ("query", query.to_owned()),
                    ("from", window.start_secs()),
                    ("until", window.end_secs()),
                    ("format", "json".to_owned()),
                    ("maxNodes", max_nodes.to_string()),
                ],
            ),
        }
    }
}

/// A backend's successful answer, not yet decoded.
struct Fetched {
    url: String,
    body: String,
}

impl Fetched {
    fn decode<T: DeserializeOwned>(self) -> Result<T, QueryError> {
        serde_json::from_str(&self.body).map_err(|e| QueryError::Unreadable {
            url: self.url,
            reason: e.to_string(),
        })
    }
}

/// Why a backend gave no answer the lab can read.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("no answer from {url}: is the lab up (`lab status`)?")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}: {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url} did not answer as its API documents: {reason}")]
    Unreadable { url: String, reason: String },
}

impl QueryError {
    /// The HTTP status the backend answered, when it answered one.
    pub fn status(&self) -> Option<u16> {
        match self {
            QueryError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A 404 from a server's router rather than from the handler: Go's
    /// `404 page not found`, which is how a release without a route
    /// answers (a missing trace is `trace not found`).
    fn is_unknown_route(&self) -> bool {
        matches!(self, QueryError::Refused { status: 404, message, .. } if message.contains("page not found"))
    }
}
