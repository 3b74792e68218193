//! Faults on the path between mythical-server and Postgres: the server's
//! database calls are slow, or cut, while Postgres — asked directly by the
//! lab, not through that path — answers at once. What is lost is lost on
//! the network (in the lab, the db-proxy's hop), so the culprit is
//! `network`, not the database and not the server's code.

use std::time::{Duration, Instant};

use super::{BACKGROUND_TRACES, Diagnosis, Evidence, IDLE_IN_TRANSACTION_SQL, RootCause};
use crate::query::{QueryClient, TraceAnswer, Window};
use anyhow::Result;

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

fn is_connection_error(message: &str) -> bool {
    let lower = message.to_lowercase();
    CONNECTION_ERRORS.iter().any(|e| lower.contains(e))
}

/// A network fault when the telemetry shows one and Postgres, asked
/// directly, is fine.
pub async fn find(
    client: &QueryClient,
    postgres_port: Option<u16>,
    window: Window,
) -> Result<Option<Diagnosis>> {
    let Some(port) = postgres_port else {
        return Ok(None);
    };
    if let Some(d) = connection_reset(client, port, window).await? {
        return Ok(Some(d));
    }
    latency(client, port, window).await
}

/// What the lab sees of Postgres over its own connection.
struct Direct {
    round_trip_ms: f64,
    lock_waiters: usize,
    idle_in_transaction: usize,
}

impl Direct {
    fn evidence(&self, port: u16) -> Evidence {
        Evidence {
            signal: "database",
            query: "SELECT 1".into(),
            finding: format!(
                "Postgres at 127.0.0.1:{port}, asked directly by the lab, answers in {:.1} ms; \
                 {} sessions wait on a lock, {} sit idle in transaction",
                self.round_trip_ms, self.lock_waiters, self.idle_in_transaction
            ),
            trace_id: None,
        }
    }
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

fn root_cause(id: &str, summary: String, message: String) -> Option<RootCause> {
    Some(RootCause {
        id: id.into(),
        service: "network".into(),
        summary,
        message,
    })
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
async fn connection_reset(
    client: &QueryClient,
    port: u16,
    window: Window,
) -> Result<Option<Diagnosis>> {
    let query = r#"{ resource.service.name = "mythical-server" && status = error && span.db.response.status_code = "unavailable" }"#;
    let found = client.traceql(query, window, LISTED).await?;
    let traces = found.traces;
    if traces.len() < BACKGROUND_TRACES {
        return Ok(None);
    }
    // The newest few say what is failing now.
    let mut examined = Vec::new();
    for trace in traces.iter().take(3) {
        if let Some(message) = db_failure(&client.trace(&trace.trace_id).await?) {
            examined.push((trace.trace_id.clone(), message));
        }
    }
    let cut: Vec<&(String, String)> = examined
        .iter()
        .filter(|(_, m)| is_connection_error(m))
        .collect();
    let Some((trace_id, message)) = cut.first().map(|c| (c.0.clone(), c.1.clone())) else {
        return Ok(None);
    };
    let Some(postgres) = direct(port).await else {
        return Ok(None);
    };
    let log_query = format!(r#"{{service_name="mythical-server"}} |= "{trace_id}""#);
    let logs = client.logql(&log_query, window, 5, 60).await?;
    let line = logs.lines().next().map(|(_, line)| line.text.clone());
    let evidence = vec![
        Evidence {
            signal: "traces",
            query: query.into(),
            finding: format!(
                "{}{} failing traces whose database span got no answer from Postgres (no SQLSTATE); \
                 {} of the newest {} were cut connections; newest {trace_id}: {message}",
                traces.len(),
                if traces.len() >= LISTED {
                    " or more"
                } else {
                    ""
                },
                cut.len(),
                examined.len()
            ),
            trace_id: Some(trace_id.clone()),
        },
        Evidence {
            signal: "logs",
            query: log_query,
            finding: line.unwrap_or_else(|| "no log line for the trace yet".into()),
            trace_id: Some(trace_id),
        },
        postgres.evidence(port),
    ];
    Ok(Some(Diagnosis {
        status: "fault",
        root_cause: root_cause(
            "connection-reset",
            format!(
                "mythical-server's connections to Postgres are cut mid-conversation while Postgres answers \
                 the lab directly in {:.1} ms: something on the network between them resets them",
                postgres.round_trip_ms
            ),
            message,
        ),
        evidence,
    }))
}

/// The median of the newest database spans is slow while Postgres, asked
/// directly, is fast and nobody waits on a lock or holds a transaction.
async fn latency(client: &QueryClient, port: u16, window: Window) -> Result<Option<Diagnosis>> {
    let query = r#"{ resource.service.name = "mythical-server" && span.db.operation.name != nil && status != error }"#;
    let found = client.traceql(query, window, LISTED).await?;
    // (start, duration ms, trace) of each database span listed.
    let mut listed: Vec<(i64, f64, String)> = Vec::new();
    for trace in &found.traces {
        for span in trace
            .matched_spans()
            .filter(|s| s.start_time_unix_nano != 0)
        {
            listed.push((
                span.start_time_unix_nano,
                span.duration_ms(),
                trace.trace_id.clone(),
            ));
        }
    }
    listed.sort_by_key(|l| std::cmp::Reverse(l.0));
    listed.dedup_by(|a, b| a.0 == b.0 && a.2 == b.2);
    listed.truncate(NEWEST_SPANS);
    if listed.len() < BACKGROUND_TRACES {
        return Ok(None);
    }
    let mut durations: Vec<f64> = listed.iter().map(|l| l.1).collect();
    durations.sort_by(f64::total_cmp);
    let quantile = |q: f64| durations[((durations.len() - 1) as f64 * q).round() as usize];
    let (p50, p90) = (quantile(0.5), quantile(0.9));
    if p50 < SLOW_DB_MS {
        return Ok(None);
    }
    let Some(postgres) = direct(port).await else {
        return Ok(None);
    };
    // Postgres itself must be far faster than what the server sees: on a
    // busy laptop its own round trip can take a few milliseconds.
    if postgres.round_trip_ms > FAST_DIRECT_MS.max(p50 / 10.0)
        || postgres.lock_waiters > 0
        || postgres.idle_in_transaction > 0
    {
        return Ok(None);
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
            query: query.into(),
            finding: format!(
                "the newest {} database spans of mythical-server, every beast and statement: p50 {p50:.0} ms, \
                 p90 {p90:.0} ms (newest: {} ms); e.g. {example}",
                listed.len(),
                shown.join(", ")
            ),
            trace_id: Some(example),
        },
        postgres.evidence(port),
    ];
    Ok(Some(Diagnosis {
        status: "fault",
        root_cause: root_cause(
            "network-latency",
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
        ),
        evidence,
    }))
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
