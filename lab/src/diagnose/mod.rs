//! `lab diagnose`: from the telemetry and the database alone, as an
//! engineer would — error rate (PromQL) → failing traces (TraceQL) → the
//! deepest failing span → its log lines (LogQL) → what Postgres' catalogue
//! says → a root cause from [`rules`].

mod rules;

use anyhow::Result;
use mythical_storage::{DbConfig, Store};
use serde::Serialize;
use serde_json::Value;

use crate::query::{QueryClient, Window};
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
    /// The server span's `mythical.name.received`.
    pub name_received: Option<bool>,
    /// The requester's `mythical.name.sent`.
    pub name_sent: Option<bool>,
}

/// How far back diagnosis looks: short, so a cleared fault reads as healthy
/// within a minute.
const LOOKBACK_NANOS: i64 = 60 * 1_000_000_000;

fn attr(span: &Value, key: &str) -> Option<String> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| {
            let v = &a["value"];
            v["stringValue"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| v["intValue"].as_str().map(str::to_owned))
                .or_else(|| v["boolValue"].as_bool().map(|b| b.to_string()))
                .unwrap_or_else(|| v.to_string())
        })
}

/// Every span of a Tempo v2 trace answer, with its service.
fn spans(trace: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for batch in trace["trace"]["resourceSpans"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let service = batch["resource"]["attributes"]
            .as_array()
            .and_then(|a| a.iter().find(|kv| kv["key"] == "service.name"))
            .and_then(|kv| kv["value"]["stringValue"].as_str())
            .unwrap_or("unknown_service")
            .to_owned();
        for scope in batch["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                out.push((service.clone(), span.clone()));
            }
        }
    }
    out
}

/// Runs the whole chain against the lab's backend and Postgres.
pub async fn diagnose(client: &QueryClient, postgres_port: Option<u16>) -> Result<Diagnosis> {
    let now = lab_backend::params::now_nanos();
    let window = Window {
        start: now - LOOKBACK_NANOS,
        end: now + 1_000_000_000,
    };
    let mut evidence = Vec::new();

    // 1. Metrics: where do the 5xx come from?
    let rate_query = r#"sum by (beast) (rate(mythical_request_times_count{status=~"5.."}[2m]))"#;
    let rates = client.promql_instant(rate_query, now).await?;
    let mut failing_beasts: Vec<(String, f64)> = rates["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let value: f64 = s["value"][1].as_str()?.parse().ok()?;
            (value > 0.0).then(|| {
                (
                    s["metric"]["beast"].as_str().unwrap_or("?").to_owned(),
                    value,
                )
            })
        })
        .collect();
    failing_beasts.sort_by(|a, b| b.1.total_cmp(&a.1));

    // 2. Traces: the newest failing database span.
    let trace_query = "{ status = error && span.db.response.status_code != nil }";
    let found = client.traceql(trace_query, window, 500).await?;
    let trace_id = found["traces"][0]["traceID"].as_str().map(str::to_owned);

    if failing_beasts.is_empty() && trace_id.is_none() {
        evidence.push(Evidence {
            signal: "metrics",
            query: rate_query.into(),
            finding: "no 5xx responses in the last 2 minutes".into(),
            trace_id: None,
        });
        evidence.push(Evidence {
            signal: "traces",
            query: trace_query.into(),
            finding: "no failing database span in the last minute".into(),
            trace_id: None,
        });
        return Ok(Diagnosis {
            status: "healthy",
            root_cause: None,
            evidence,
        });
    }
    evidence.push(Evidence {
        signal: "metrics",
        query: rate_query.into(),
        finding: if failing_beasts.is_empty() {
            "no 5xx in the scraped request times yet".into()
        } else {
            failing_beasts
                .iter()
                .map(|(b, r)| format!("{b}: {r:.2} errors/s"))
                .collect::<Vec<_>>()
                .join(", ")
        },
        trace_id: None,
    });
    let Some(trace_id) = trace_id else {
        return Ok(Diagnosis {
            status: "fault",
            root_cause: None,
            evidence,
        });
    };
    evidence.push(Evidence {
        signal: "traces",
        query: trace_query.into(),
        finding: {
            let traces = found["traces"].as_array().cloned().unwrap_or_default();
            let since = traces
                .iter()
                .filter_map(|t| t["startTimeUnixNano"].as_str()?.parse::<i64>().ok())
                .min()
                .map_or_else(|| "?".into(), crate::render::clock);
            format!(
                "{} traces with a failing database span in the last minute, the first at {since} UTC; newest {trace_id}",
                traces.len()
            )
        },
        trace_id: Some(trace_id.clone()),
    });

    // 3. The trace: the failing database span and the spans above it.
    let trace = client.trace(&trace_id).await?;
    let all = spans(&trace);
    let by_id = |id: &str| all.iter().find(|(_, s)| s["spanId"] == id);
    let Some((db_service, db_span)) = all
        .iter()
        .find(|(_, s)| attr(s, "db.response.status_code").is_some())
    else {
        return Ok(Diagnosis {
            status: "fault",
            root_cause: None,
            evidence,
        });
    };
    let server = db_span["parentSpanId"].as_str().and_then(by_id);
    let client_span = server
        .and_then(|(_, s)| s["parentSpanId"].as_str())
        .and_then(by_id);
    let message = db_span["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let sqlstate = attr(db_span, "db.response.status_code");
    let (column, table) = not_null_target(&message);
    let failure = Failure {
        trace_id: trace_id.clone(),
        service: db_service.clone(),
        span_name: db_span["name"].as_str().unwrap_or_default().to_owned(),
        message: message.clone(),
        sqlstate: sqlstate.clone(),
        table: table.or_else(|| attr(db_span, "db.collection.name")),
        column,
        bound_null: attr(db_span, "db.query.parameter.0").as_deref() == Some("NULL"),
        name_received: server
            .and_then(|(_, s)| attr(s, "mythical.name.received"))
            .map(|v| v == "true"),
        name_sent: client_span
            .and_then(|(_, s)| attr(s, "mythical.name.sent"))
            .map(|v| v == "true"),
    };
    evidence.push(Evidence {
        signal: "traces",
        query: format!("trace {trace_id}"),
        finding: format!(
            "deepest failing span: {} in {} — {} (SQLSTATE {}); bound {}; server received a name: {}; requester sent a name: {}",
            failure.span_name,
            failure.service,
            message,
            sqlstate.as_deref().unwrap_or("?"),
            attr(db_span, "db.query.parameter.0").unwrap_or_else(|| "?".into()),
            failure.name_received.map_or("?".into(), |b| b.to_string()),
            failure.name_sent.map_or("?".into(), |b| b.to_string()),
        ),
        trace_id: Some(trace_id.clone()),
    });

    // 4. Logs: the failure's own lines.
    let log_query =
        format!(r#"{{service_name=~"mythical-.*"}} |= "{trace_id}" | logfmt | status="FAILURE""#);
    let logs = client.logql(&log_query, window, 10, 60).await?;
    let lines: Vec<String> = logs["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v[1].as_str().map(str::to_owned))
        .collect();
    evidence.push(Evidence {
        signal: "logs",
        query: log_query,
        finding: match lines.first() {
            Some(line) => format!("{} log lines; {line}", lines.len()),
            None => "no log line for the trace yet".into(),
        },
        trace_id: Some(trace_id.clone()),
    });

    // 5. Database: what the catalogue says about the column.
    if let (Some(port), Some(table), Some(column)) =
        (postgres_port, &failure.table, &failure.column)
    {
        let store = Store::connect_lazy(&DbConfig {
            host: "127.0.0.1".into(),
            port,
            max_connections: 1,
            ..DbConfig::default()
        });
        if let Ok(Some(info)) =
            mythical_storage::catalogue::column_info(store.pool(), table, column).await
        {
            let constraints: Vec<String> = info
                .constraints
                .iter()
                .map(|c| format!("{} {}", c.name, c.definition))
                .collect();
            evidence.push(Evidence {
                signal: "database",
                query: mythical_storage::catalogue::COLUMN_SQL
                    .replace("$1", &format!("'{table}'"))
                    .replace("$2", &format!("'{column}'")),
                finding: format!(
                    "{table}.{column} is {} {}({}) — is_nullable = {}; constraints: {}",
                    info.data_type,
                    if info.is_nullable { "" } else { "NOT NULL " },
                    info.max_length.map_or(String::new(), |l| l.to_string()),
                    if info.is_nullable { "YES" } else { "NO" },
                    constraints.join(", ")
                ),
                trace_id: None,
            });
        }
        store.pool().close().await;
    }

    Ok(Diagnosis {
        status: "fault",
        root_cause: rules::explain(&failure),
        evidence,
    })
}

/// `null value in column "name" of relation "owlbear" …` → (name, owlbear).
fn not_null_target(message: &str) -> (Option<String>, Option<String>) {
    let quoted: Vec<&str> = message.split('"').collect();
    if message.starts_with("null value in column") && quoted.len() >= 4 {
        (Some(quoted[1].to_owned()), Some(quoted[3].to_owned()))
    } else {
        (None, None)
    }
}
