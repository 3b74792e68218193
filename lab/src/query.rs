//! The lab's one query client: TraceQL, LogQL and PromQL over the Tempo,
//! Loki and Prometheus HTTP APIs, the same for the embedded backend and the
//! real ones, so the query a guide shows is the query it runs.

use anyhow::{Context, Result, bail};
use serde_json::Value;

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

    async fn get(&self, api: Api, path: &str, params: &[(&str, String)]) -> Result<Value> {
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
            .with_context(|| format!("no answer from {url}: is the lab up (`lab status`)?"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            // Prometheus answers errors in JSON; Tempo and Loki in text.
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or(text);
            bail!("{} answered {status}: {}", url, message.trim());
        }
        serde_json::from_str(&text).with_context(|| format!("{url} did not answer JSON"))
    }

    /// TraceQL search: `GET /api/search`.
    pub async fn traceql(&self, query: &str, window: Window, limit: usize) -> Result<Value> {
        self.get(
            Api::Traces,
            "/api/search",
            &[
                ("q", query.to_owned()),
                ("start", window.start_secs()),
                ("end", window.end_secs()),
                ("limit", limit.to_string()),
            ],
        )
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
    ) -> Result<Value> {
        self.get(
            Api::Logs,
            "/loki/api/v1/query_range",
            &[
                ("query", query.to_owned()),
                ("start", window.start.to_string()),
                ("end", window.end.to_string()),
                ("limit", limit.to_string()),
                ("step", format!("{step_secs}s")),
                ("direction", "backward".to_owned()),
            ],
        )
        .await
    }

    /// PromQL over a window: `GET /api/v1/query_range`.
    pub async fn promql_range(&self, query: &str, window: Window, step_secs: i64) -> Result<Value> {
        self.get(
            Api::Metrics,
            "/api/v1/query_range",
            &[
                ("query", query.to_owned()),
                ("start", window.start_secs()),
                ("end", window.end_secs()),
                ("step", step_secs.to_string()),
            ],
        )
        .await
    }

    /// PromQL at one instant: `GET /api/v1/query`.
    pub async fn promql_instant(&self, query: &str, time_nanos: i64) -> Result<Value> {
        self.get(
            Api::Metrics,
            "/api/v1/query",
            &[
                ("query", query.to_owned()),
                ("time", format!("{}", time_nanos as f64 / 1e9)),
            ],
        )
        .await
    }

    /// The hottest functions of a profile selector over a window: `GET
    /// /api/profiles/top` (the embedded backend's summary of what
    /// `/pyroscope/render` draws); from a Pyroscope without it, the same
    /// summary computed from its flame graph.
    pub async fn profile_top(&self, query: &str, window: Window, limit: usize) -> Result<Value> {
        let top = self
            .get(
                Api::Profiles,
                "/api/profiles/top",
                &[
                    ("query", query.to_owned()),
                    ("from", window.start_secs()),
                    ("until", window.end_secs()),
                    ("limit", limit.to_string()),
                ],
            )
            .await;
        match top {
            Err(e) if format!("{e:#}").contains("404") => {
                let render = self.profile_render(query, window, 8192).await?;
                Ok(top_of_flamebearer(&render, limit))
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
    ) -> Result<Value> {
        self.get(
            Api::Profiles,
            "/pyroscope/render",
            &[
                ("query", query.to_owned()),
                ("from", window.start_secs()),
                ("until", window.end_secs()),
                ("format", "json".to_owned()),
                ("maxNodes", max_nodes.to_string()),
            ],
        )
        .await
    }

    /// One trace: `GET /api/v2/traces/<id>` (Tempo 2.6 on); a Tempo that
    /// answers that route with its router's 404 is older, and is asked on
    /// `GET /api/traces/<id>`, whose `batches` the trace readers take too.
    pub async fn trace(&self, trace_id: &str) -> Result<Value> {
        let v2 = self
            .get(Api::Traces, &format!("/api/v2/traces/{trace_id}"), &[])
            .await;
        match v2 {
            Err(e) if is_unknown_route(&format!("{e:#}")) => {
                self.get(Api::Traces, &format!("/api/traces/{trace_id}"), &[])
                    .await
            }
            other => other,
        }
    }
}

/// A 404 from a server's router rather than from the handler: Go's
/// `404 page not found`, which is how a release without a route answers
/// (a missing trace is `trace not found`).
fn is_unknown_route(error: &str) -> bool {
    error.contains("404") && error.contains("page not found")
}

/// Top functions (`{"total", "functions": [{"name", "self", "total"}]}`)
/// from a flamebearer: every node is `[offset, total, self, name]`; a
/// function's self time sums over its nodes, its total counts each node
/// once (recursion counts twice, as a flame graph shows it).
pub fn top_of_flamebearer(render: &Value, limit: usize) -> Value {
    let graph = &render["flamebearer"];
    let names: Vec<&str> = graph["names"]
        .as_array()
        .map(|n| n.iter().map(|v| v.as_str().unwrap_or("")).collect())
        .unwrap_or_default();
    let mut costs: std::collections::HashMap<&str, (i64, i64)> = Default::default();
    for level in graph["levels"].as_array().into_iter().flatten() {
        let nodes: Vec<i64> = level
            .as_array()
            .map(|l| l.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default();
        for node in nodes.chunks_exact(4) {
            let name = names.get(node[3] as usize).copied().unwrap_or("");
            let entry = costs.entry(name).or_default();
            entry.0 += node[2];
            entry.1 += node[1];
        }
    }
    costs.remove("total");
    let mut functions: Vec<(&str, (i64, i64))> = costs.into_iter().collect();
    functions.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(b.1.1.cmp(&a.1.1)).then(a.0.cmp(b.0)));
    functions.truncate(limit);
    serde_json::json!({
        "total": graph["numTicks"].as_i64().unwrap_or(0),
        "functions": functions
            .into_iter()
            .map(|(name, (own, total))| serde_json::json!({"name": name, "self": own, "total": total}))
            .collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod flamebearer_tests {
    #[test]
    fn top_functions_sum_self_time_across_a_flame_graph() {
        // total(10) → main(10) → {hash(7, self 7), query(3, self 1) → read(2)}
        let render = serde_json::json!({"flamebearer": {
            "names": ["total", "main", "hash", "query", "read"],
            "numTicks": 10,
            "levels": [[0, 10, 0, 0], [0, 10, 0, 1], [0, 7, 7, 2, 0, 3, 1, 3], [7, 2, 2, 4]],
        }});
        let top = super::top_of_flamebearer(&render, 2);
        assert_eq!(top["total"], 10);
        assert_eq!(top["functions"][0]["name"], "hash");
        assert_eq!(top["functions"][0]["self"], 7);
        assert_eq!(top["functions"][1]["name"], "read");
        assert_eq!(top["functions"].as_array().unwrap().len(), 2);
    }
}
