//! `lab diagnose`: from the telemetry and the database alone, as an
//! engineer would — error rate (PromQL) → failing traces (TraceQL) → the
//! deepest failing span → its log lines (LogQL) → what Postgres' catalogue
//! says → a root cause from [`rules`].

mod failure;
mod network;
mod quiet;
mod rules;

use anyhow::Result;
use serde::Serialize;

use crate::plan::Kind;
use crate::query::answer::TraceSpan;
use crate::query::{QueryClient, Window};
use crate::runtime::Condition;
use crate::state::LabState;
pub use rules::RootCause;

/// One step of the chain, in the stable shape of `lab diagnose --json`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Evidence {
    pub signal: &'static str,
    pub query: String,
    pub finding: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// The report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Diagnosis {
    /// `healthy` or `fault`.
    pub status: &'static str,
    pub root_cause: Option<RootCause>,
    pub evidence: Vec<Evidence>,
}

/// What the deepest failing span, its parents and the database showed.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub trace_id: String,
    pub service: String,
    pub span_name: String,
    pub message: String,
    pub sqlstate: Option<String>,
    pub table: Option<String>,
    pub column: Option<String>,
    /// The statement bound NULL (`db.query.parameter.0`).
    pub bound_null: bool,
    /// What the statement bound, as its span shows it.
    pub bound: Option<String>,
    /// The failing table's `name` column (or the column Postgres named) as
    /// the catalogue describes it now.
    pub schema: Option<mythical_storage::catalogue::ColumnInfo>,
    /// The name the server span records it read from the body
    /// (`mythical.name`, the service's own attribute for the beast it
    /// handles).
    pub received_name: Option<String>,
    /// The request body the server span received, in bytes
    /// (`http.request.body.size`, OpenTelemetry's HTTP convention).
    pub received_bytes: Option<u64>,
    /// The request body the requester's client span sent, in bytes.
    pub sent_bytes: Option<u64>,
    /// Whether the requester's log line for the request names the name it
    /// sent (`name=…`); `None` when its line has not arrived.
    pub logged_name: Option<bool>,
    /// Failing requester traces by its `service.version`: (1.9.2, 2.0.0).
    pub failing_by_version: Option<(usize, usize)>,
    /// Whether Postgres answered the lab's own `SELECT 1` just now.
    pub postgres_answers: Option<bool>,
    /// Sessions `idle in transaction` in Postgres now.
    pub idle_in_transaction: Option<usize>,
    /// The service whose traced `DROP` statement removed the tables, when
    /// a table is missing and one did (`None` when none was traced).
    pub dropped_by: Option<String>,
}

/// Sessions holding a transaction open and doing nothing: what a leaked
/// connection looks like from Postgres' side.
pub const IDLE_IN_TRANSACTION_SQL: &str =
    "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'";

/// Below this share of failing requests, and with fewer failing traces
/// than [`BACKGROUND_TRACES`] in the lookback, errors are background.
const BACKGROUND_SHARE: f64 = 0.02;
const BACKGROUND_TRACES: usize = 5;

/// How far back diagnosis looks by default: short, so a cleared fault
/// reads as healthy within a minute.
pub const LOOKBACK: std::time::Duration = std::time::Duration::from_secs(60);

/// One component's health as the runtime reports it, in the plan's
/// dependency order.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentHealth {
    pub kind: Kind,
    pub health: Condition,
}

/// The newest trace matching `query`, and the message of its failing span
/// (the deepest one that has a message).
async fn newest_failure(
    client: &QueryClient,
    query: &str,
    window: Window,
) -> Result<Option<(String, String, usize)>> {
    let found = client.traceql(query, window, 100).await?;
    let count = found.traces.len();
    let Some(trace_id) = found.traces.first().map(|t| t.trace_id.clone()) else {
        return Ok(None);
    };
    let spans = client.trace(&trace_id).await?.spans();
    let failing: Vec<&TraceSpan> = spans
        .iter()
        .filter(|s| s.error_message().is_some())
        .collect();
    // The deepest failure tells most: a database span's, then the server's,
    // then whatever failed.
    let message = failing
        .iter()
        .find(|s| s.attribute("db.response.status_code").is_some())
        .or_else(|| failing.iter().find(|s| s.service == Kind::Server.name()))
        .or_else(|| failing.first())
        .and_then(|s| s.error_message())
        .unwrap_or_default()
        .to_owned();
    Ok(Some((trace_id, message, count)))
}

/// When a component the services need is down, that is the cause: its
/// state from the runtime, and what the telemetry shows of it.
async fn infrastructure(
    client: &QueryClient,
    postgres_port: Option<u16>,
    components: &[ComponentHealth],
    window: Window,
) -> Result<Option<Diagnosis>> {
    // A service that runs but fails its health check is a symptom (of its
    // database, its pool…), not the cause; a Postgres that does not answer
    // is the cause whatever its process does.
    let Some(down) = components.iter().find(|c| match c.kind {
        Kind::Postgres => c.health != Condition::Healthy,
        kind if kind.is_service() => c.health.is_out(),
        _ => false,
    }) else {
        return Ok(None);
    };
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
    let (trace_query, culprit, id) = match down.kind {
        Kind::Postgres => (
            "{ status = error && span.db.operation.name != nil }".to_owned(),
            Kind::Postgres,
            "db-down",
        ),
        Kind::Server => (
            r#"{ status = error && resource.service.name = "mythical-requester" }"#.to_owned(),
            Kind::Server,
            "service-crash",
        ),
        _ => (String::new(), Kind::Requester, "service-crash"),
    };
    let mut message = String::new();
    if !trace_query.is_empty() {
        match newest_failure(client, &trace_query, window).await? {
            Some((trace_id, failure, count)) => {
                evidence.push(Evidence {
                    signal: "traces",
                    query: trace_query,
                    finding: format!(
                        "{count} failing traces in the last minute; newest {trace_id}: {failure}"
                    ),
                    trace_id: Some(trace_id.clone()),
                });
                let log_query = format!(r#"{{service_name=~"mythical-.*"}} |= "{trace_id}""#);
                let logs = client.logql(&log_query, window, 10, 60).await?;
                let line = logs.lines().next().map(|(_, line)| line.text.clone());
                evidence.push(Evidence {
                    signal: "logs",
                    query: log_query,
                    finding: line.unwrap_or_else(|| "no log line for the trace yet".into()),
                    trace_id: Some(trace_id),
                });
                message = failure;
            }
            None => evidence.push(Evidence {
                signal: "traces",
                query: trace_query,
                finding: "no failing trace yet in the last minute".into(),
                trace_id: None,
            }),
        }
    } else {
        let rate_query = "sum(rate(mythical_request_times_count[1m]))";
        let rate = client
            .promql_instant(rate_query, lab_backend::params::now_nanos())
            .await?;
        evidence.push(Evidence {
            signal: "metrics",
            query: rate_query.into(),
            finding: format!(
                "requests per second now: {}",
                rate.first_value()
                    .map_or_else(|| "none".to_owned(), |r| r.to_string())
            ),
            trace_id: None,
        });
    }
    if down.kind == Kind::Postgres
        && let Some(port) = postgres_port
    {
        let store = crate::runtime::postgres_session(port, std::time::Duration::from_secs(2));
        let probe = store.ping().await;
        store.pool().close().await;
        evidence.push(Evidence {
            signal: "database",
            query: "SELECT 1".into(),
            finding: match &probe {
                Ok(()) => format!("Postgres at 127.0.0.1:{port} answers again"),
                Err(e) => format!("Postgres at 127.0.0.1:{port} does not answer: {e}"),
            },
            trace_id: None,
        });
        if message.is_empty()
            && let Err(e) = probe
        {
            message = e.to_string();
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
    Ok(Some(Diagnosis {
        status: "fault",
        root_cause: Some(RootCause {
            id: id.into(),
            service: culprit.name().into(),
            summary,
            message: if message.is_empty() {
                format!("{} is {}", down.kind.name(), down.health)
            } else {
                message
            },
        }),
        evidence,
    }))
}

/// Runs the whole chain on a running lab: its components' conditions now,
/// its backend through `client`, its Postgres.
pub async fn diagnose_lab(
    lab: &LabState,
    client: &QueryClient,
    lookback: std::time::Duration,
) -> Result<Diagnosis> {
    let conditions = crate::runtime::conditions(lab).await?;
    let components: Vec<ComponentHealth> = lab
        .components
        .iter()
        .zip(conditions)
        .filter_map(|(c, health)| {
            Some(ComponentHealth {
                kind: Kind::named(&c.name)?,
                health,
            })
        })
        .collect();
    diagnose(client, lab.postgres_port(), &components, lookback).await
}

/// Runs the whole chain against the lab's backend and Postgres.
pub async fn diagnose(
    client: &QueryClient,
    postgres_port: Option<u16>,
    components: &[ComponentHealth],
    lookback: std::time::Duration,
) -> Result<Diagnosis> {
    let now = lab_backend::params::now_nanos();
    let window = Window {
        start: now - lookback.as_nanos() as i64,
        end: now + 1_000_000_000,
    };
    if let Some(diagnosis) = infrastructure(client, postgres_port, components, window).await? {
        return Ok(diagnosis);
    }
    if let Some(diagnosis) = network::find(client, postgres_port, window).await? {
        return Ok(diagnosis);
    }
    let mut evidence = Vec::new();

    // 1. Metrics: where do the 5xx come from?
    let rate_query = failure::RATE_QUERY;
    let rates = client.promql_instant(rate_query, now).await?;
    let mut failing_beasts: Vec<(String, f64)> = rates
        .series()
        .iter()
        .filter_map(|s| {
            let value = s.newest()?.number()?;
            (value > 0.0).then(|| {
                let beast = s.labels.get("beast").map_or("?", String::as_str);
                (beast.to_owned(), value)
            })
        })
        .collect();
    failing_beasts.sort_by(|a, b| b.1.total_cmp(&a.1));

    // 2. Traces: the newest failing database span.
    let trace_query = failure::FAILING_QUERY;
    let found = client.traceql(trace_query, window, 500).await?;
    let trace_id = found.traces.first().map(|t| t.trace_id.clone());
    let failing_traces = found.traces.len();

    // The original's names repeat now and then, and the unique constraint
    // refuses a repeat: a trickle of errors is the system's background, not
    // a fault.
    let share_query = r#"sum(rate(mythical_request_times_count{status=~"5.."}[1m])) / sum(rate(mythical_request_times_count[1m]))"#;
    let share = client
        .promql_instant(share_query, now)
        .await?
        .first_value()
        .filter(|v| v.is_finite())
        .unwrap_or(0.0);
    if trace_id.is_some() && share < BACKGROUND_SHARE && failing_traces < BACKGROUND_TRACES {
        // A fault that fails nothing still shows under the background.
        if let Some(diagnosis) = quiet::find(client, postgres_port, window).await? {
            return Ok(diagnosis);
        }
        evidence.push(Evidence {
            signal: "metrics",
            query: share_query.into(),
            finding: format!(
                "{:.1}% of requests failed in the last minute ({failing_traces} failing traces): below the {:.0}% a fault shows, the background of repeated names",
                share * 100.0,
                BACKGROUND_SHARE * 100.0
            ),
            trace_id: None,
        });
        return Ok(Diagnosis {
            status: "healthy",
            root_cause: None,
            evidence,
        });
    }

    // No failing trace in the window: whatever the 2-minute rates still
    // show has stopped; what is left are faults that fail nothing.
    if trace_id.is_none()
        && let Some(diagnosis) = quiet::find(client, postgres_port, window).await?
    {
        return Ok(diagnosis);
    }
    if trace_id.is_none() {
        evidence.push(Evidence {
            signal: "metrics",
            query: rate_query.into(),
            finding: if failing_beasts.is_empty() {
                "no 5xx responses in the last 2 minutes".into()
            } else {
                "5xx responses earlier in the last 2 minutes, none since the window began".into()
            },
            trace_id: None,
        });
        evidence.push(Evidence {
            signal: "traces",
            query: trace_query.into(),
            finding: format!(
                "no failing database span in the last {} s",
                lookback.as_secs()
            ),
            trace_id: None,
        });
        return Ok(Diagnosis {
            status: "healthy",
            root_cause: None,
            evidence,
        });
    }
    // 3. The newest failing trace and what its error calls for, judged.
    let failing = found
        .traces
        .iter()
        .map(|t| (t.trace_id.clone(), t.start_time_unix_nano))
        .collect();
    let snapshot = failure::gather(
        client,
        postgres_port,
        window,
        lookback.as_secs(),
        failing_beasts,
        failing,
    )
    .await?;
    let verdict = failure::judge(&snapshot);
    failure::keep(&snapshot, &verdict);
    Ok(verdict)
}
