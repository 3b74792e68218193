//! Faults that fail no request: the requests still succeed, but traces
//! come apart, logs land at the wrong time, requests slow down or memory
//! climbs. Each detector reads the same APIs as the rest of diagnosis and
//! names its root cause with the evidence it used; the first that finds
//! something wins.

use anyhow::Result;
use mythical_storage::{DbConfig, Store};
use serde_json::Value;

use super::{Diagnosis, Evidence, RootCause, attr, spans};
use crate::query::{QueryClient, Window};

/// A server request slower than this is slow for the lab's tiny tables.
const SLOW_MS: u64 = 20;

fn fault(id: &str, culprit: &str, summary: String, message: String, evidence: Vec<Evidence>) -> Diagnosis {
    Diagnosis {
        status: "fault",
        root_cause: Some(RootCause {
            id: id.into(),
            service: culprit.into(),
            summary,
            message,
        }),
        evidence,
    }
}

pub async fn find(
    client: &QueryClient,
    postgres_port: Option<u16>,
    window: Window,
) -> Result<Option<Diagnosis>> {
    if let Some(d) = broken_propagation(client, window).await? {
        return Ok(Some(d));
    }
    if let Some(d) = slow_requests(client, postgres_port, window).await? {
        return Ok(Some(d));
    }
    if let Some(d) = memory_leak(client).await? {
        return Ok(Some(d));
    }
    clock_skew(client, window).await
}

/// Server spans that start traces of their own: the caller's context did
/// not arrive.
async fn broken_propagation(client: &QueryClient, window: Window) -> Result<Option<Diagnosis>> {
    let query = r#"{ resource.service.name = "mythical-server" && kind = server }"#;
    let found = client.traceql(query, window, 100).await?;
    let traces = found["traces"].as_array().cloned().unwrap_or_default();
    let orphans: Vec<&Value> = traces
        .iter()
        .filter(|t| t["rootServiceName"] == "mythical-server")
        .collect();
    if traces.len() < 5 || orphans.len() * 10 < traces.len() * 8 {
        return Ok(None);
    }
    let example = orphans[0]["traceID"].as_str().unwrap_or_default().to_owned();
    Ok(Some(fault(
        "broken-propagation",
        "mythical-requester",
        format!(
            "{} of {} server traces start at the server: mythical-requester's calls arrive without traceparent, so its traces and the server's never join",
            orphans.len(),
            traces.len()
        ),
        "server spans have no parent".into(),
        vec![Evidence {
            signal: "traces",
            query: query.into(),
            finding: format!(
                "{} of the last {} traces with a server span have mythical-server as their root service; e.g. {example}",
                orphans.len(),
                traces.len()
            ),
            trace_id: Some(example),
        }],
    )))
}

/// Slow server requests: waiting on the database (a lock) or busy in the
/// server's own code (CPU).
async fn slow_requests(
    client: &QueryClient,
    postgres_port: Option<u16>,
    window: Window,
) -> Result<Option<Diagnosis>> {
    let query = format!(
        r#"{{ resource.service.name = "mythical-server" && kind = server && duration > {SLOW_MS}ms }}"#
    );
    let found = client.traceql(&query, window, 100).await?;
    let traces = found["traces"].as_array().cloned().unwrap_or_default();
    if traces.len() < 5 {
        return Ok(None);
    }
    let trace_id = traces[0]["traceID"].as_str().unwrap_or_default().to_owned();
    let trace = client.trace(&trace_id).await?;
    let all = spans(&trace);
    let duration_ms = |s: &Value| -> f64 {
        let start: f64 = s["startTimeUnixNano"].as_str().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let end: f64 = s["endTimeUnixNano"].as_str().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        (end - start) / 1e6
    };
    let server_ms: f64 = all
        .iter()
        .filter(|(service, s)| service == "mythical-server" && s["kind"] == "SPAN_KIND_SERVER")
        .map(|(_, s)| duration_ms(s))
        .fold(0.0, f64::max);
    let (db_name, db_ms) = all
        .iter()
        .filter(|(_, s)| attr(s, "db.operation.name").is_some())
        .map(|(_, s)| (s["name"].as_str().unwrap_or("?").to_owned(), duration_ms(s)))
        .fold((String::new(), 0.0), |best, next| if next.1 > best.1 { next } else { best });
    let mut evidence = vec![Evidence {
        signal: "traces",
        query: query.clone(),
        finding: format!(
            "{} slow server requests; in {trace_id} the server took {server_ms:.0} ms, its slowest database call {db_name} {db_ms:.0} ms",
            traces.len()
        ),
        trace_id: Some(trace_id.clone()),
    }];
    if db_ms >= server_ms * 0.6 {
        // Waiting on Postgres: who holds the lock?
        let mut blocker = None;
        if let Some(port) = postgres_port {
            let store = Store::connect_lazy(&DbConfig {
                host: "127.0.0.1".into(),
                port,
                max_connections: 1,
                acquire_timeout: std::time::Duration::from_secs(2),
                ..DbConfig::default()
            });
            if let Ok(rows) =
                mythical_storage::catalogue::read_only_query(store.pool(), LOCKS_SQL).await
            {
                blocker = rows.rows.first().cloned();
                evidence.push(Evidence {
                    signal: "database",
                    query: LOCKS_SQL.into(),
                    finding: match &blocker {
                        Some(row) => format!(
                            "{} sessions wait on a lock; the blocker (pid {}) runs `{}`",
                            row.get(2).map_or("?", String::as_str),
                            row.first().map_or("?", String::as_str),
                            row.get(1).map_or("?", String::as_str)
                        ),
                        None => "no session waits on a lock right now".into(),
                    },
                    trace_id: None,
                });
            }
            store.pool().close().await;
        }
        return Ok(Some(fault(
            "slow-query",
            "postgres",
            format!(
                "requests wait on Postgres: {db_name} took {db_ms:.0} ms{}",
                blocker
                    .as_ref()
                    .and_then(|r| r.get(1))
                    .map_or(String::new(), |q| format!(", blocked by a session running `{q}`"))
            ),
            format!("{db_name} took {db_ms:.0} ms"),
            evidence,
        )));
    }
    // Busy in the server's own code: what does the CPU profile say?
    let top = client
        .profile_top(
            r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="mythical-server"}"#,
            window,
            5,
        )
        .await
        .ok();
    let hot = top
        .as_ref()
        .and_then(|t| t["functions"].as_array().cloned())
        .unwrap_or_default();
    let hottest = hot
        .iter()
        .filter_map(|f| f["name"].as_str())
        .find(|n| !n.is_empty())
        .map(str::to_owned);
    evidence.push(Evidence {
        signal: "profiles",
        query: r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="mythical-server"}"#.into(),
        finding: match &hottest {
            Some(name) => format!("the server's hottest functions: {}", hot
                .iter()
                .filter_map(|f| f["name"].as_str())
                .take(3)
                .collect::<Vec<_>>()
                .join(", ")) + &format!(" (top: {name})"),
            None => "no CPU profile of the server to read".into(),
        },
        trace_id: None,
    });
    Ok(Some(fault(
        "cpu-hog",
        "mythical-server",
        format!(
            "mythical-server spends {:.0} ms of a {server_ms:.0} ms request outside the database: busy on CPU{}",
            server_ms - db_ms,
            hottest.map_or(String::new(), |h| format!(" in {h}"))
        ),
        format!("server span {server_ms:.0} ms, database {db_ms:.0} ms"),
        evidence,
    )))
}

/// Who holds a lock others wait on: (pid, query, waiting sessions).
pub const LOCKS_SQL: &str = "SELECT blocker.pid, blocker.query, count(*) AS waiting \
FROM pg_stat_activity waiter \
JOIN LATERAL unnest(pg_blocking_pids(waiter.pid)) AS b(pid) ON true \
JOIN pg_stat_activity blocker ON blocker.pid = b.pid \
GROUP BY blocker.pid, blocker.query ORDER BY waiting DESC";

/// The server's resident memory climbing.
async fn memory_leak(client: &QueryClient) -> Result<Option<Diagnosis>> {
    let query = r#"delta(process_resident_memory_bytes{job="mythical-server"}[1m])"#;
    let answer = client
        .promql_instant(query, lab_backend::params::now_nanos())
        .await?;
    let growth = answer["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    if growth < 5.0 * 1024.0 * 1024.0 {
        return Ok(None);
    }
    Ok(Some(fault(
        "memory-leak",
        "mythical-server",
        format!(
            "mythical-server's resident memory grew {:.1} MiB in the last minute and keeps growing: it holds memory it never frees",
            growth / 1024.0 / 1024.0
        ),
        format!("+{:.1} MiB per minute", growth / 1024.0 / 1024.0),
        vec![Evidence {
            signal: "metrics",
            query: query.into(),
            finding: format!("+{:.1} MiB in one minute", growth / 1024.0 / 1024.0),
            trace_id: None,
        }],
    )))
}

/// Log records whose time is far from their trace's.
async fn clock_skew(client: &QueryClient, window: Window) -> Result<Option<Diagnosis>> {
    let query = r#"{ resource.service.name = "mythical-server" && kind = server }"#;
    let found = client.traceql(query, window, 20).await?;
    let Some(trace) = found["traces"].as_array().and_then(|t| t.first()).cloned() else {
        return Ok(None);
    };
    let trace_id = trace["traceID"].as_str().unwrap_or_default().to_owned();
    let span_start: i64 = trace["startTimeUnixNano"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // Far wider than the trace: a skewed line can be minutes away.
    let wide = Window {
        start: span_start - 3_600 * 1_000_000_000,
        end: span_start + 3_600 * 1_000_000_000,
    };
    let log_query = format!(r#"{{service_name="mythical-server"}} |= "{trace_id}""#);
    let logs = client.logql(&log_query, wide, 5, 60).await?;
    let Some(logged) = logs["data"]["result"][0]["values"][0][0]
        .as_str()
        .and_then(|v| v.parse::<i64>().ok())
    else {
        return Ok(None);
    };
    let skew_s = (logged - span_start) as f64 / 1e9;
    if skew_s.abs() < 60.0 {
        return Ok(None);
    }
    Ok(Some(fault(
        "clock-skew",
        "mythical-server",
        format!(
            "mythical-server's log lines are stamped {skew_s:+.0} s from the traces they belong to: its log clock is off"
        ),
        format!("log time {skew_s:+.0} s from span time"),
        vec![
            Evidence {
                signal: "traces",
                query: query.into(),
                finding: format!("trace {trace_id} started at {}", crate::render::clock(span_start)),
                trace_id: Some(trace_id.clone()),
            },
            Evidence {
                signal: "logs",
                query: log_query,
                finding: format!(
                    "its log line is stamped {} UTC, {skew_s:+.0} s away",
                    crate::render::clock(logged)
                ),
                trace_id: Some(trace_id),
            },
        ],
    )))
}
