//! A component the services need is down: its state from the runtime is
//! the cause, and the telemetry shows what it does to the rest. [`gather`]
//! reads that for the first component down, [`judge`] names it.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::{ComponentHealth, Diagnosis, Evidence, Rejected};
use crate::plan::Kind;
use crate::query::answer::TraceSpan;
use crate::query::{QueryClient, Window};
use crate::runtime::Condition;

/// The requests per second the requester sends now.
const RATE_QUERY: &str = "sum(rate(mythical_request_times_count[1m]))";

/// What the telemetry and Postgres show while a component is down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The first component down, in dependency order.
    pub down: ComponentHealth,
    /// The failing traces of those who call it, when it has callers.
    pub failing: Option<Failing>,
    /// For the requester: requests per second now.
    pub rate: Option<f64>,
    /// For Postgres: what the lab's own `SELECT 1` says (`Err` with the
    /// driver's words), when the lab knows its port.
    pub probe: Option<Result<(), String>>,
    pub postgres_port: Option<u16>,
}

/// The failing traces of a down component's callers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failing {
    pub query: String,
    pub count: usize,
    /// The newest one, the message of its deepest failing span and its
    /// first log line; `None` while there is none.
    pub newest: Option<(String, String, Option<String>)>,
}

/// The component whose being down is a cause: a Postgres that does not
/// answer whatever its process does, or a service that is out. A service
/// that runs but fails its check is a symptom (of its database, its
/// pool…), not the cause.
pub fn first_down(components: &[ComponentHealth]) -> Option<&ComponentHealth> {
    components.iter().find(|c| match c.kind {
        Kind::Postgres => c.health != Condition::Healthy,
        kind if kind.is_service() => c.health.is_out(),
        _ => false,
    })
}

/// The traces a down component's callers fail with.
fn callers_failing(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Postgres => Some("{ status = error && span.db.operation.name != nil }"),
        Kind::Server => {
            Some(r#"{ status = error && resource.service.name = "mythical-requester" }"#)
        }
        _ => None,
    }
}

/// Reads what the first component down does to the rest; `None` when
/// every component is up.
pub async fn gather(
    client: &QueryClient,
    postgres_port: Option<u16>,
    components: &[ComponentHealth],
    window: Window,
) -> Result<Option<Snapshot>> {
    let Some(down) = first_down(components) else {
        return Ok(None);
    };
    let failing = match callers_failing(down.kind) {
        Some(query) => Some(failing(client, query, window).await?),
        None => None,
    };
    let rate = match down.kind {
        Kind::Requester => client
            .promql_instant(RATE_QUERY, window.end)
            .await?
            .first_value(),
        _ => None,
    };
    let probe = match (down.kind, postgres_port) {
        (Kind::Postgres, Some(port)) => {
            let store = crate::runtime::postgres_session(port, std::time::Duration::from_secs(2));
            let probe = store.ping().await.map_err(|e| e.to_string());
            store.pool().close().await;
            Some(probe)
        }
        _ => None,
    };
    Ok(Some(Snapshot {
        down: down.clone(),
        failing,
        rate,
        probe,
        postgres_port,
    }))
}

/// The newest trace matching `query`, the message of its failing span
/// (the deepest one that has a message) and its first log line.
async fn failing(client: &QueryClient, query: &str, window: Window) -> Result<Failing> {
    let found = client.traceql(query, window, 100).await?;
    let count = found.traces.len();
    let newest = match found.traces.first() {
        Some(trace) => {
            let trace_id = trace.trace_id.clone();
            let spans = client.trace(&trace_id).await?.spans();
            let logs = client.logql(&log_query(&trace_id), window, 10, 60).await?;
            let line = logs.lines().next().map(|(_, line)| line.text.clone());
            Some((trace_id, deepest_message(&spans), line))
        }
        None => None,
    };
    Ok(Failing {
        query: query.into(),
        count,
        newest,
    })
}

/// A database span's message, then the server's, then whatever failed.
fn deepest_message(spans: &[TraceSpan]) -> String {
    let failing: Vec<&TraceSpan> = spans
        .iter()
        .filter(|s| s.error_message().is_some())
        .collect();
    failing
        .iter()
        .find(|s| s.attribute("db.response.status_code").is_some())
        .or_else(|| failing.iter().find(|s| s.service == Kind::Server.name()))
        .or_else(|| failing.first())
        .and_then(|s| s.error_message())
        .unwrap_or_default()
        .to_owned()
}

fn log_query(trace_id: &str) -> String {
    format!(r#"{{service_name=~"mythical-.*"}} |= "{trace_id}""#)
}

/// Why no component is the cause, for the report of one that found
/// another.
pub fn rejected(components: &[ComponentHealth]) -> Rejected {
    Rejected {
        id: "component-down".into(),
        why: format!(
            "every component the services need is up: {}",
            components
                .iter()
                .map(|c| format!("{} {}", c.kind.name(), c.health))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The down component as the cause, with what the runtime, the traces, the
/// logs and Postgres show of it.
pub fn judge(snapshot: &Snapshot, components: &[ComponentHealth]) -> Diagnosis {
    let down = &snapshot.down;
    let mut evidence = vec![Evidence {
        signal: "runtime",
        query: "lab status".into(),
        finding: format!(
            "{} is {}; {}",
            down.kind.name(),
            down.health,
            components
                .iter()
                .map(|c| format!("{} {}", c.kind.name(), c.health))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        trace_id: None,
    }];
    let (culprit, id) = match down.kind {
        Kind::Postgres => (Kind::Postgres, "db-down"),
        Kind::Server => (Kind::Server, "service-crash"),
        _ => (Kind::Requester, "service-crash"),
    };
    let mut message = String::new();
    if let Some(failing) = &snapshot.failing {
        match &failing.newest {
            Some((trace_id, failure, line)) => {
                evidence.push(Evidence {
                    signal: "traces",
                    query: failing.query.clone(),
                    finding: format!(
                        "{} failing traces in the last minute; newest {trace_id}: {failure}",
                        failing.count
                    ),
                    trace_id: Some(trace_id.clone()),
                });
                evidence.push(Evidence {
                    signal: "logs",
                    query: log_query(trace_id),
                    finding: line
                        .clone()
                        .unwrap_or_else(|| "no log line for the trace yet".into()),
                    trace_id: Some(trace_id.clone()),
                });
                message = failure.clone();
            }
            None => evidence.push(Evidence {
                signal: "traces",
                query: failing.query.clone(),
                finding: "no failing trace yet in the last minute".into(),
                trace_id: None,
            }),
        }
    }
    if down.kind == Kind::Requester {
        evidence.push(Evidence {
            signal: "metrics",
            query: RATE_QUERY.into(),
            finding: format!(
                "requests per second now: {}",
                snapshot
                    .rate
                    .map_or_else(|| "none".to_owned(), |r| r.to_string())
            ),
            trace_id: None,
        });
    }
    if let (Some(probe), Some(port)) = (&snapshot.probe, snapshot.postgres_port) {
        evidence.push(Evidence {
            signal: "database",
            query: "SELECT 1".into(),
            finding: match probe {
                Ok(()) => format!("Postgres at 127.0.0.1:{port} answers again"),
                Err(e) => format!("Postgres at 127.0.0.1:{port} does not answer: {e}"),
            },
            trace_id: None,
        });
        if message.is_empty()
            && let Err(e) = probe
        {
            message = e.clone();
        }
    }
    let summary = match id {
        "db-down" => format!(
            "Postgres is {}: every query of mythical-server fails before reaching a table",
            down.health
        ),
        _ => format!(
            "{} is {}: {}",
            culprit.name(),
            down.health,
            if culprit == Kind::Server && down.health == Condition::Paused {
                "it takes the requester's calls and answers none"
            } else if culprit == Kind::Server {
                "the requester's calls are refused"
            } else {
                "no traffic is sent"
            }
        ),
    };
    if message.is_empty() {
        message = format!("{} is {}", down.kind.name(), down.health);
    }
    Diagnosis::fault(id, culprit.name(), summary, message, evidence)
}
