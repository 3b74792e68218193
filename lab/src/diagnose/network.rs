//! Faults on the path between mythical-server and Postgres: the server's
//! database calls are slow, or cut, while Postgres — asked directly by the
//! lab, not through that path — answers at once. What is lost is lost on
//! the network (in the lab, the db-proxy's hop), so the culprit is
//! `network`, not the database and not the server's code.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::{BACKGROUND_TRACES, Detector, Diagnosis, Evidence, IDLE_IN_TRANSACTION_SQL, Rejected};
use crate::query::{QueryClient, TraceAnswer, Window};

/// A database call of the lab's tiny tables slower than this (the median
/// of the newest ones) is slow.
const SLOW_DB_MS: f64 = 100.0;
/// Postgres' own round trip under this (or a tenth of the server's) is
/// fast.
const FAST_DIRECT_MS: f64 = 20.0;
/// How many traces a search lists.
const LISTED: usize = 100;
/// How many of the newest database spans the median is taken over.
const NEWEST_SPANS: usize = 40;
/// What a connection cut under the driver looks like in its error text
/// (sqlx's I/O errors as the OS words them; "refused" is left out: that
/// is a Postgres that is not there, db-down's sign).
const CONNECTION_ERRORS: &[&str] = &[
    "connection reset",
    "broken pipe",
    "unexpected eof",
    "unexpected end of file",
    "connection closed",
    "connection aborted",
];

/// Sessions waiting on a lock: the slow-query fault's sign, not the
/// network's.
const LOCK_WAITERS_SQL: &str =
    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'";

/// The server's failing calls that Postgres never answered.
const UNAVAILABLE_QUERY: &str = r#"{ resource.service.name = "mythical-server" && status = error && span.db.response.status_code = "unavailable" }"#;
/// The server's database calls that did not fail.
const DB_SPANS_QUERY: &str = r#"{ resource.service.name = "mythical-server" && span.db.operation.name != nil && status != error }"#;

fn is_connection_error(message: &str) -> bool {
    let lower = message.to_lowercase();
    CONNECTION_ERRORS.iter().any(|e| lower.contains(e))
}

/// What the network detectors read, in one value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Traces whose database span got no answer from Postgres (no
    /// SQLSTATE), up to [`LISTED`].
    pub unavailable: usize,
    /// The newest few of them: (trace id, its database span's message).
    pub examined: Vec<(String, String)>,
    /// The log line of the newest one whose connection was cut.
    pub cut_log: Option<String>,
    /// The newest database calls that did not fail: (start, ms, trace id),
    /// newest first.
    pub db_spans: Vec<(i64, f64, String)>,
    /// Postgres asked directly, when the telemetry calls for it; `None`:
    /// not asked, or no answer.
    pub direct: Option<Direct>,
}

/// What the lab sees of Postgres over its own connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Direct {
    pub port: u16,
    pub round_trip_ms: f64,
    pub lock_waiters: usize,
    pub idle_in_transaction: usize,
}

impl Direct {
    fn evidence(&self) -> Evidence {
        Evidence {
            signal: "database",
            query: "SELECT 1".into(),
            finding: format!(
                "Postgres at 127.0.0.1:{}, asked directly by the lab, answers in {:.1} ms; \
                 {} sessions wait on a lock, {} sit idle in transaction",
                self.port, self.round_trip_ms, self.lock_waiters, self.idle_in_transaction
            ),
            trace_id: None,
        }
    }
}

/// Reads the server's unanswered and its answered database calls, and,
/// when they are cut or slow, asks Postgres directly.
pub async fn gather(
    client: &QueryClient,
    postgres_port: Option<u16>,
    window: Window,
) -> Result<Snapshot> {
    let mut snapshot = Snapshot::default();
    let Some(port) = postgres_port else {
        return Ok(snapshot);
    };
    let unavailable = client
        .traceql(UNAVAILABLE_QUERY, window, LISTED)
        .await?
        .traces;
    snapshot.unavailable = unavailable.len();
    if unavailable.len() >= BACKGROUND_TRACES {
        // The newest few say what is failing now.
        for trace in unavailable.iter().take(3) {
            if let Some(message) = db_failure(&client.trace(&trace.trace_id).await?) {
                snapshot.examined.push((trace.trace_id.clone(), message));
            }
        }
    }
    if let Some((trace_id, _)) = snapshot
        .examined
        .iter()
        .find(|(_, m)| is_connection_error(m))
    {
        let log_query = log_query(trace_id);
        let logs = client.logql(&log_query, window, 5, 60).await?;
        snapshot.cut_log = logs.lines().next().map(|(_, line)| line.text.clone());
    }
    let found = client.traceql(DB_SPANS_QUERY, window, LISTED).await?;
    for trace in &found.traces {
        for span in trace
            .matched_spans()
            .filter(|s| s.start_time_unix_nano != 0)
        {
            snapshot.db_spans.push((
                span.start_time_unix_nano,
                span.duration_ms(),
                trace.trace_id.clone(),
            ));
        }
    }
    snapshot.db_spans.sort_by_key(|l| std::cmp::Reverse(l.0));
    snapshot.db_spans.dedup_by(|a, b| a.0 == b.0 && a.2 == b.2);
    snapshot.db_spans.truncate(NEWEST_SPANS);
    let slow = quantiles(&snapshot.db_spans).is_some_and(|(p50, _)| p50 >= SLOW_DB_MS);
    if cut(&snapshot).next().is_some() || slow {
        snapshot.direct = direct(port).await;
    }
    Ok(snapshot)
}

/// The network detectors, in rank order.
pub(super) const DETECTORS: [(&str, Detector<Snapshot>); 2] = [
    ("connection-reset", connection_reset),
    ("network-latency", latency),
];

/// A network fault when the telemetry shows one and Postgres, asked
/// directly, is fine; each detector that finds none says in `rejected`
/// why not.
pub fn judge(snapshot: &Snapshot, rejected: &mut Vec<Rejected>) -> Option<Diagnosis> {
    super::first_found(&DETECTORS, snapshot, rejected)
}

fn log_query(trace_id: &str) -> String {
    format!(r#"{{service_name="mythical-server"}} |= "{trace_id}""#)
}

/// The examined calls whose connection was cut.
fn cut(snapshot: &Snapshot) -> impl Iterator<Item = &(String, String)> {
    snapshot
        .examined
        .iter()
        .filter(|(_, m)| is_connection_error(m))
}

/// (p50, p90) of the calls' durations.
fn quantiles(spans: &[(i64, f64, String)]) -> Option<(f64, f64)> {
    if spans.is_empty() {
        return None;
    }
    let mut durations: Vec<f64> = spans.iter().map(|l| l.1).collect();
    durations.sort_by(f64::total_cmp);
    let quantile = |q: f64| durations[((durations.len() - 1) as f64 * q).round() as usize];
    Some((quantile(0.5), quantile(0.9)))
}

/// Connects straight to Postgres (not through the db-proxy) and times a
/// `SELECT 1` on the open connection; `None` when it does not answer.
async fn direct(port: u16) -> Option<Direct> {
    let store = crate::runtime::postgres_session(port, Duration::from_secs(2));
    let probe = async {
        store.ping().await.ok()?;
        let started = Instant::now();
        store.ping().await.ok()?;
        let round_trip_ms = started.elapsed().as_secs_f64() * 1000.0;
        let count = |sql: &'static str| async {
            mythical_storage::catalogue::read_only_query(store.pool(), sql)
                .await
                .ok()
                .and_then(|rows| rows.rows.first()?.first()?.parse::<usize>().ok())
                .unwrap_or(0)
        };
        Some(Direct {
            port,
            round_trip_ms,
            lock_waiters: count(LOCK_WAITERS_SQL).await,
            idle_in_transaction: count(IDLE_IN_TRANSACTION_SQL).await,
        })
    };
    let found = tokio::time::timeout(Duration::from_secs(5), probe)
        .await
        .ok()
        .flatten();
    store.pool().close().await;
    found
}

/// The message of a trace's failing database span.
fn db_failure(trace: &TraceAnswer) -> Option<String> {
    trace
        .spans()
        .into_iter()
        .find(|s| s.error.is_some() && s.attribute("db.response.status_code").is_some())
        .map(|s| s.status_message)
}

/// The server's statements fail without a SQLSTATE, their error a cut
/// connection, while Postgres answers the lab.
fn connection_reset(snapshot: &Snapshot) -> Result<Diagnosis, String> {
    let count = snapshot.unavailable;
    if count < BACKGROUND_TRACES {
        return Err(format!(
            "{count} traces whose database call Postgres never answered (a fault makes {BACKGROUND_TRACES} or more)"
        ));
    }
    let cut: Vec<&(String, String)> = cut(snapshot).collect();
    let Some((trace_id, message)) = cut.first().map(|c| (c.0.clone(), c.1.clone())) else {
        return Err(format!(
            "none of the newest {} unanswered calls was a cut connection",
            snapshot.examined.len()
        ));
    };
    let Some(postgres) = &snapshot.direct else {
        return Err("Postgres does not answer the lab either: not the network".into());
    };
    let evidence = vec![
        Evidence {
            signal: "traces",
            query: UNAVAILABLE_QUERY.into(),
            finding: format!(
                "{count}{} failing traces whose database span got no answer from Postgres (no SQLSTATE); \
                 {} of the newest {} were cut connections; newest {trace_id}: {message}",
                if count >= LISTED { " or more" } else { "" },
                cut.len(),
                snapshot.examined.len()
            ),
            trace_id: Some(trace_id.clone()),
        },
        Evidence {
            signal: "logs",
            query: log_query(&trace_id),
            finding: snapshot
                .cut_log
                .clone()
                .unwrap_or_else(|| "no log line for the trace yet".into()),
            trace_id: Some(trace_id),
        },
        postgres.evidence(),
    ];
    Ok(Diagnosis::fault(
        "connection-reset",
        "network",
        format!(
            "mythical-server's connections to Postgres are cut mid-conversation while Postgres answers \
             the lab directly in {:.1} ms: something on the network between them resets them",
            postgres.round_trip_ms
        ),
        message,
        evidence,
    ))
}

/// The median of the newest database spans is slow while Postgres, asked
/// directly, is fast and nobody waits on a lock or holds a transaction.
fn latency(snapshot: &Snapshot) -> Result<Diagnosis, String> {
    let listed = &snapshot.db_spans;
    if listed.len() < BACKGROUND_TRACES {
        return Err(format!(
            "{} answered database calls, too few to time",
            listed.len()
        ));
    }
    let (p50, p90) = quantiles(listed).expect("calls listed");
    if p50 < SLOW_DB_MS {
        return Err(format!(
            "the newest {} database calls take {p50:.1} ms (p50; slow is {SLOW_DB_MS} ms)",
            listed.len()
        ));
    }
    let Some(postgres) = &snapshot.direct else {
        return Err("Postgres does not answer the lab either: not the network".into());
    };
    // Postgres itself must be far faster than what the server sees: on a
    // busy laptop its own round trip can take a few milliseconds.
    if postgres.round_trip_ms > FAST_DIRECT_MS.max(p50 / 10.0) {
        return Err(format!(
            "Postgres is slow to the lab too ({:.1} ms): not the network",
            postgres.round_trip_ms
        ));
    }
    if postgres.lock_waiters > 0 || postgres.idle_in_transaction > 0 {
        return Err(format!(
            "{} sessions wait on a lock and {} sit idle in transaction: Postgres' sessions explain the wait",
            postgres.lock_waiters, postgres.idle_in_transaction
        ));
    }
    let example = listed
        .iter()
        .min_by(|a, b| (a.1 - p50).abs().total_cmp(&(b.1 - p50).abs()))
        .map(|l| l.2.clone())
        .unwrap_or_default();
    let shown: Vec<String> = listed
        .iter()
        .take(8)
        .map(|l| format!("{:.0}", l.1))
        .collect();
    let evidence = vec![
        Evidence {
            signal: "traces",
            query: DB_SPANS_QUERY.into(),
            finding: format!(
                "the newest {} database spans of mythical-server, every beast and statement: p50 {p50:.0} ms, \
                 p90 {p90:.0} ms (newest: {} ms); e.g. {example}",
                listed.len(),
                shown.join(", ")
            ),
            trace_id: Some(example),
        },
        postgres.evidence(),
    ];
    Ok(Diagnosis::fault(
        "network-latency",
        "network",
        format!(
            "mythical-server's database calls take {p50:.0} ms (p50) while Postgres answers the lab \
             directly in {:.1} ms and no session waits on a lock: the time is lost on the network \
             between mythical-server and Postgres",
            postgres.round_trip_ms
        ),
        format!(
            "database spans p50 {p50:.0} ms, p90 {p90:.0} ms; direct SELECT 1 {:.1} ms",
            postgres.round_trip_ms
        ),
        evidence,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_connections_are_told_from_a_missing_postgres() {
        assert!(is_connection_error(
            "database unavailable: error communicating with database: Connection reset by peer (os error 104)"
        ));
        assert!(is_connection_error(
            "database unavailable: error communicating with database: Broken pipe (os error 32)"
        ));
        assert!(!is_connection_error(
            "database unavailable: error communicating with database: Connection refused (os error 111)"
        ));
        assert!(!is_connection_error(
            "database unavailable: pool timed out while waiting for an open connection"
        ));
    }
}
