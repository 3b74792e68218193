//! The failing-request chain as an evidence snapshot and a detector over
//! it: [`gather`] asks the backend and Postgres everything the chain needs
//! (the failing traces, the newest one's spans, what its error calls for:
//! the traced DROPs, the failures by version, the pool's sessions, the
//! column in the catalogue, the trace's log lines) and [`judge`], a pure
//! function, turns that snapshot into the verdict and its evidence.

use anyhow::Result;
use mythical_storage::catalogue::ColumnInfo;
use serde::{Deserialize, Serialize};

use super::rules::EMPTY_BODY;
use super::{Diagnosis, Evidence, Failure, IDLE_IN_TRANSACTION_SQL, rules};
use crate::plan::Kind;
use crate::query::answer::TraceSpan;
use crate::query::{QueryClient, Window};

/// The failing database spans the chain starts from.
pub const FAILING_QUERY: &str = "{ status = error && span.db.response.status_code != nil }";
/// The 5xx rates by beast.
pub const RATE_QUERY: &str =
    r#"sum by (beast) (rate(mythical_request_times_count{status=~"5.."}[2m]))"#;
/// The failing requester traces of one version (`<version>` in the text).
const VERSION_QUERY: &str = r#"{ resource.service.name = "mythical-requester" && status = error && resource.service.version = "<version>" }"#;

/// A traced statement that drops tables, by any service.
const DROP_QUERY: &str = r#"{ span.db.operation.name = "DROP" }"#;

/// How far back a missing table's `DROP` is looked for: the statement
/// may be much older than the failures it causes.
const DROP_LOOKBACK_NANOS: i64 = 15 * 60 * 1_000_000_000;

/// How many failing traces are read for one that is whole: the newest
/// have often not been exported in full.
const CANDIDATES: usize = 5;

/// A trace younger than this is read only when no older one is left: each
/// service exports its spans every half second, on its own clock, so the
/// requester's half of a trace may come a batch after the server's.
const EXPORT_NANOS: i64 = 1_000_000_000;

/// How long after its last span ended a trace is as whole as it will get:
/// the services export every half second, and a span whose parent has not
/// come by then lost it (an exporter down, a process killed).
const SETTLE_NANOS: i64 = 3_000_000_000;

/// Whether every span's parent is in the trace, and one span is its root:
/// a trace judged before its last batch arrived lacks the server span
/// between the database span and the requester, and reads as a different
/// fault.
pub fn whole(spans: &[TraceSpan]) -> bool {
    let has = |id: &str| spans.iter().any(|s| s.id == id);
    spans.iter().any(|s| s.parent.is_empty())
        && spans.iter().all(|s| s.parent.is_empty() || has(&s.parent))
}

/// Whether no more of the trace is coming, at `now`.
fn settled(spans: &[TraceSpan], now: i64) -> bool {
    spans.iter().map(|s| s.end).max().unwrap_or(0) + SETTLE_NANOS <= now
}

/// Everything the chain read, in one value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The window's length, as the findings say it.
    pub lookback_secs: u64,
    /// 5xx per second by beast over 2 minutes, highest first.
    pub failing_beasts: Vec<(String, f64)>,
    /// Traces with a failing database span: (id, start in Unix
    /// nanoseconds), newest first.
    pub failing_traces: Vec<(String, i64)>,
    /// The failing trace judged: the newest whole one (see [`whole`]), or
    /// the newest settled one when none is whole. `None` in a snapshot
    /// taken before this was kept: the newest.
    #[serde(default)]
    pub trace_id: Option<String>,
    /// When the snapshot was taken, in Unix nanoseconds (0: not kept).
    #[serde(default)]
    pub taken_at: i64,
    /// Every span of the trace judged.
    pub spans: Vec<TraceSpan>,
    /// For a missing table: the traced DROPs of the last 15 minutes.
    pub drops: Option<Drops>,
    /// For a missing name: failing requester traces by version (1.9.2,
    /// 2.0.0).
    pub by_version: Option<(usize, usize)>,
    /// For no connection: what Postgres says when the lab asks it.
    pub pool: Option<Pool>,
    /// The newest trace's `FAILURE` log lines.
    pub log_lines: Vec<LogLine>,
    /// The failing column as the catalogue describes it now.
    pub schema: Option<ColumnInfo>,
    /// For a repeated name: how full the table is and how often its POSTs
    /// fail, to tell a requester repeating names from chance.
    #[serde(default)]
    pub collisions: Option<Collisions>,
}

/// A table's rows against the names the requester can draw, and its POSTs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Collisions {
    pub table: String,
    pub rows: i64,
    /// POSTs per second to its beast over the last minute, and how many
    /// of them failed; `None` before the scrapes show them.
    pub posts: Option<(f64, f64)>,
}

impl Collisions {
    /// The share of new names that are already in the table by chance.
    pub fn chance(&self) -> f64 {
        self.rows as f64 / mythical_services::requester::NAME_SPACE as f64
    }

    /// `unicorn holds 30000 of the 308700 names the requester draws from`.
    pub fn fill(&self) -> String {
        format!(
            "{} holds {} of the {} names the requester draws from",
            self.table,
            self.rows,
            mythical_services::requester::NAME_SPACE
        )
    }

    /// The share of POSTs that failed, when known.
    pub fn failing(&self) -> Option<f64> {
        let (all, failed) = self.posts?;
        (all > 0.0).then(|| failed / all)
    }

    /// What chance makes of the failures: a minute's POSTs fail by chance
    /// about `chance × POSTs` times, give or take that count's Poisson
    /// spread; only more than [`SPREADS`] spreads (and [`SLACK`] failures)
    /// above it is someone repeating names.
    pub fn odds(&self) -> Odds {
        let chance = self.chance();
        let Some((all, failed)) = self.posts.filter(|(all, _)| *all > 0.0) else {
            return if chance < NEGLIGIBLE_CHANCE {
                Odds::Exceeded
            } else {
                Odds::Unknown
            };
        };
        let expected = chance * all * 60.0;
        if failed * 60.0 > expected + SPREADS * expected.sqrt() + SLACK {
            Odds::Exceeded
        } else if chance >= CROWDED {
            Odds::Crowded
        } else {
            Odds::Chance
        }
    }
}

/// What a table's fill makes of its POSTs' unique violations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Odds {
    /// More than chance explains: someone repeats names.
    Exceeded,
    /// As often as chance, and the table full enough that users notice.
    Crowded,
    /// As often as chance, now and then: the system working.
    Chance,
    /// The scrapes do not show the POSTs yet, and chance is not negligible.
    Unknown,
}

/// How far above what chance predicts a minute's failures may be, in
/// Poisson spreads (its square root) and in failures: a table of a few
/// thousand names refuses a handful a minute, and twice as many now and
/// then.
const SPREADS: f64 = 3.0;
const SLACK: f64 = 3.0;
/// Below this chance, a repeat is the requester's, even before the
/// scrapes show how often POSTs fail.
const NEGLIGIBLE_CHANCE: f64 = 0.01;
/// From this chance on, a table refuses so many new names that the
/// failures are a fault of its data.
const CROWDED: f64 = 0.2;

/// POSTs to one beast by status over the last minute (`<beast>`).
const POSTS_QUERY: &str =
    r#"sum by (status) (rate(mythical_request_times_count{beast="<beast>", method="POST"}[1m]))"#;

impl Snapshot {
    /// Nothing read yet.
    pub fn empty(lookback_secs: u64, taken_at: i64) -> Snapshot {
        Snapshot {
            lookback_secs,
            failing_beasts: Vec::new(),
            failing_traces: Vec::new(),
            trace_id: None,
            taken_at,
            spans: Vec::new(),
            drops: None,
            by_version: None,
            pool: None,
            log_lines: Vec::new(),
            schema: None,
            collisions: None,
        }
    }
}

/// One log line and the service that wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub service: String,
    pub line: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drops {
    pub traces: usize,
    pub newest: Option<String>,
    /// The service whose span ran the newest DROP.
    pub by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    /// Postgres answered the lab's own `SELECT 1`.
    pub answers: bool,
    /// Sessions idle in transaction, when Postgres answered.
    pub idle_in_transaction: Option<usize>,
}

/// The failing database span of `spans` and what it and the spans above
/// it show; `None` when none of them is a database span.
fn failure_of(trace_id: &str, spans: &[TraceSpan], log_lines: &[LogLine]) -> Option<Failure> {
    let by_id = |id: &str| spans.iter().find(|s| s.id == id);
    let db_span = spans
        .iter()
        .find(|s| s.attribute("db.response.status_code").is_some())?;
    let server = by_id(&db_span.parent);
    let client_span = server.and_then(|s| by_id(&s.parent));
    let message = db_span.status_message.clone();
    let sqlstate = db_span
        .attribute("db.response.status_code")
        .map(str::to_owned);
    let (mut column, table) = not_null_target(&message);
    let table = table.or_else(|| db_span.attribute("db.collection.name").map(str::to_owned));
    // What a schema refuses of an INSERT is in the one column the services
    // write.
    if rules::SCHEMA_REFUSALS.contains(&sqlstate.as_deref().unwrap_or_default()) && table.is_some()
    {
        column.get_or_insert_with(|| "name".to_owned());
    }
    let bound = db_span.attribute("db.query.parameter.0").map(str::to_owned);
    Some(Failure {
        trace_id: trace_id.to_owned(),
        service: db_span.service.clone(),
        span_name: db_span.name.clone(),
        message,
        sqlstate,
        table,
        column,
        bound_null: bound.as_deref() == Some("NULL"),
        bound,
        schema: None,
        received_name: server
            .and_then(|s| s.attribute("mythical.name"))
            .map(str::to_owned),
        received_bytes: server.and_then(body_size),
        sent_bytes: client_span.and_then(body_size),
        logged_name: log_lines
            .iter()
            .find(|l| l.service == Kind::Requester.name())
            .map(|l| l.line.split(' ').any(|field| field.starts_with("name="))),
        failing_by_version: None,
        postgres_answers: None,
        idle_in_transaction: None,
        dropped_by: None,
        collisions: None,
    })
}

/// A span's `http.request.body.size`, OpenTelemetry's HTTP convention.
fn body_size(span: &TraceSpan) -> Option<u64> {
    span.attribute("http.request.body.size")?.parse().ok()
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

/// Asks for everything the chain needs, given the failing traces found.
pub async fn gather(
    client: &QueryClient,
    postgres_port: Option<u16>,
    window: Window,
    lookback_secs: u64,
    failing_beasts: Vec<(String, f64)>,
    failing_traces: Vec<(String, i64)>,
) -> Result<Snapshot> {
    let mut snapshot = Snapshot {
        failing_beasts,
        failing_traces,
        ..Snapshot::empty(lookback_secs, lab_backend::params::now_nanos())
    };
    // The newest whole trace, those a batch old first; else the newest
    // that will not grow; else the newest, which the judge will call too
    // early to tell.
    let now = snapshot.taken_at;
    let mut chosen: Option<(String, Vec<TraceSpan>)> = None;
    let (older, younger): (Vec<_>, Vec<_>) = snapshot
        .failing_traces
        .iter()
        .partition(|(_, start)| *start + EXPORT_NANOS <= now);
    for (id, _) in older.into_iter().chain(younger).take(CANDIDATES) {
        let spans = client.trace(id).await?.spans();
        let is_whole = whole(&spans);
        let better = match &chosen {
            None => true,
            Some((_, kept)) => !settled(kept, now) && settled(&spans, now),
        };
        if is_whole || better {
            chosen = Some((id.clone(), spans));
        }
        if is_whole {
            break;
        }
    }
    let Some((trace_id, spans)) = chosen else {
        return Ok(snapshot);
    };
    snapshot.trace_id = Some(trace_id.clone());
    snapshot.spans = spans;
    let Some(failure) = failure_of(&trace_id, &snapshot.spans, &[]) else {
        return Ok(snapshot);
    };
    // One session for every question to Postgres below, opened at the
    // first of them.
    let store = postgres_port
        .map(|port| crate::runtime::postgres_session(port, std::time::Duration::from_secs(2)));
    match failure.sqlstate.as_deref() {
        Some("42P01") => {
            let since = Window {
                start: window.end - DROP_LOOKBACK_NANOS,
                end: window.end,
            };
            let found = client.traceql(DROP_QUERY, since, 20).await?;
            let newest = found.traces.first().map(|t| t.trace_id.clone());
            // The statement's own service, from its span: the trace's root
            // is whoever called it.
            let by = match &newest {
                Some(id) => client
                    .trace(id)
                    .await?
                    .spans()
                    .into_iter()
                    .find(|s| s.attribute("db.operation.name") == Some("DROP"))
                    .map(|s| s.service),
                None => None,
            };
            snapshot.drops = Some(Drops {
                traces: found.traces.len(),
                newest,
                by,
            });
        }
        Some("23502") => {
            let mut counts = [0usize; 2];
            for (i, version) in ["1.9.2", "2.0.0"].iter().enumerate() {
                let query = VERSION_QUERY.replace("<version>", version);
                counts[i] = client.traceql(&query, window, 500).await?.traces.len();
            }
            snapshot.by_version = Some((counts[0], counts[1]));
        }
        Some("23505") => {
            // Only a beast's own table is counted: its name is then safe
            // to write into the statement.
            let beast = failure
                .table
                .as_deref()
                .and_then(|t| t.parse::<mythical_storage::Beast>().ok());
            if let (Some(store), Some(beast)) = (&store, beast) {
                let table = beast.to_string();
                let rows = mythical_storage::catalogue::read_only_query(
                    store.pool(),
                    &format!("SELECT count(*) FROM {table}"),
                )
                .await
                .ok()
                .and_then(|rows| rows.rows.first()?.first()?.parse::<i64>().ok());
                let query = POSTS_QUERY.replace("<beast>", &table);
                let by_status = client.promql_instant(&query, window.end).await?;
                let rate = |failed: bool| {
                    by_status
                        .series()
                        .iter()
                        .filter(|s| {
                            s.labels.get("status").is_some_and(|c| c.starts_with('5')) == failed
                        })
                        .filter_map(|s| s.newest()?.number())
                        .sum::<f64>()
                };
                let (ok, failed) = (rate(false), rate(true));
                snapshot.collisions = rows.map(|rows| Collisions {
                    table,
                    rows,
                    posts: (ok + failed > 0.0).then_some((ok + failed, failed)),
                });
            }
        }
        Some("unavailable") => {
            if let Some(store) = &store {
                let answers = store.ping().await.is_ok();
                let idle = if answers {
                    mythical_storage::catalogue::read_only_query(
                        store.pool(),
                        IDLE_IN_TRANSACTION_SQL,
                    )
                    .await
                    .ok()
                    .and_then(|rows| rows.rows.first()?.first()?.parse::<usize>().ok())
                } else {
                    None
                };
                snapshot.pool = Some(Pool {
                    answers,
                    idle_in_transaction: idle,
                });
            }
        }
        _ => {}
    }
    let logs = client.logql(&log_query(&trace_id), window, 10, 60).await?;
    snapshot.log_lines = logs
        .lines()
        .map(|(labels, line)| LogLine {
            service: labels.get("service_name").cloned().unwrap_or_default(),
            line: line.text.clone(),
        })
        .collect();
    if let (Some(store), Some(table), Some(column)) = (&store, &failure.table, &failure.column) {
        snapshot.schema = mythical_storage::catalogue::column_info(store.pool(), table, column)
            .await
            .ok()
            .flatten();
    }
    if let Some(store) = store {
        store.pool().close().await;
    }
    Ok(snapshot)
}

fn log_query(trace_id: &str) -> String {
    format!(r#"{{service_name=~"mythical-.*"}} |= "{trace_id}" | logfmt | status="FAILURE""#)
}

/// The verdict on a snapshot, with every piece of evidence it rests on.
pub fn judge(snapshot: &Snapshot) -> Diagnosis {
    let unexplained = |evidence| Diagnosis {
        status: "fault",
        root_cause: None,
        evidence,
        rejected: Vec::new(),
    };
    let mut evidence = vec![rates_evidence(&snapshot.failing_beasts)];
    let Some((newest, _)) = snapshot.failing_traces.first() else {
        return unexplained(evidence);
    };
    let trace_id = snapshot.trace_id.as_ref().unwrap_or(newest);
    evidence.push(traces_evidence(snapshot, newest, trace_id));
    // Half a trace reads as another fault (no server span: no name
    // received); it is judged once whole, or once no more of it can come.
    if snapshot.taken_at != 0
        && !whole(&snapshot.spans)
        && !settled(&snapshot.spans, snapshot.taken_at)
    {
        evidence.push(Evidence {
            signal: "traces",
            query: format!("trace {trace_id}"),
            finding: format!(
                "{} spans of the trace so far, not all their parents yet: too early to tell",
                snapshot.spans.len()
            ),
            trace_id: Some(trace_id.clone()),
        });
        return unexplained(evidence);
    }
    let Some(mut failure) = failure_of(trace_id, &snapshot.spans, &snapshot.log_lines) else {
        return unexplained(evidence);
    };
    if let Some(drops) = &snapshot.drops {
        failure.dropped_by = drops.by.clone();
        evidence.push(drops.evidence());
    }
    if let Some((old, new)) = snapshot.by_version {
        failure.failing_by_version = Some((old, new));
        evidence.push(Evidence {
            signal: "traces",
            query: VERSION_QUERY.into(),
            finding: format!(
                "failing requester traces by service.version: 1.9.2 {old}, 2.0.0 {new}"
            ),
            trace_id: None,
        });
    }
    if let Some(pool) = &snapshot.pool {
        failure.postgres_answers = Some(pool.answers);
        failure.idle_in_transaction = pool.idle_in_transaction;
        evidence.push(pool.evidence());
    }
    evidence.push(deepest_evidence(&failure));
    evidence.push(Evidence {
        signal: "logs",
        query: log_query(trace_id),
        finding: match snapshot.log_lines.first() {
            Some(line) => format!("{} log lines; {}", snapshot.log_lines.len(), line.line),
            None => "no log line for the trace yet".into(),
        },
        trace_id: Some(trace_id.clone()),
    });
    if let Some(info) = &snapshot.schema {
        failure.schema = Some(info.clone());
        evidence.push(schema_evidence(info));
    }
    // A table that holds many of the names the requester can draw refuses
    // some new ones by chance: that is the system working, not a fault.
    if let Some(c) = &snapshot.collisions
        && failure.sqlstate.as_deref() == Some("23505")
    {
        evidence.push(c.evidence());
        match c.odds() {
            Odds::Chance => {
                return Diagnosis {
                    status: "healthy",
                    root_cause: None,
                    evidence,
                    rejected: vec![c.rejected()],
                };
            }
            Odds::Unknown => return unexplained(evidence),
            Odds::Exceeded | Odds::Crowded => failure.collisions = Some(c.clone()),
        }
    }
    // A cause the evidence cannot tell apart from another yet is not
    // named: the learner reads "still looking", never a guess.
    if let Some(why) = rules::undecided(&failure) {
        evidence.push(Evidence {
            signal: "traces",
            query: "failing requester traces by service.version".into(),
            finding: why,
            trace_id: None,
        });
        return unexplained(evidence);
    }
    Diagnosis {
        status: "fault",
        root_cause: rules::explain(&failure),
        evidence,
        rejected: rules::rejected(&failure),
    }
}

/// The 5xx rates by beast.
fn rates_evidence(failing_beasts: &[(String, f64)]) -> Evidence {
    Evidence {
        signal: "metrics",
        query: RATE_QUERY.into(),
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
    }
}

/// How many traces fail, since when, and which one is judged.
fn traces_evidence(snapshot: &Snapshot, newest: &str, judged: &str) -> Evidence {
    let since = snapshot
        .failing_traces
        .iter()
        .map(|t| t.1)
        .min()
        .map_or_else(|| "?".into(), crate::render::clock);
    Evidence {
        signal: "traces",
        query: FAILING_QUERY.into(),
        finding: format!(
            "{} traces with a failing database span in the last minute, the first at {since} UTC; newest {newest}{}",
            snapshot.failing_traces.len(),
            if judged == newest {
                String::new()
            } else {
                format!(", the newest whole one {judged}")
            }
        ),
        trace_id: Some(judged.to_owned()),
    }
}

/// The failing span and what the spans above it received and sent.
fn deepest_evidence(failure: &Failure) -> Evidence {
    Evidence {
        signal: "traces",
        query: format!("trace {}", failure.trace_id),
        finding: format!(
            "deepest failing span: {} in {} — {} (SQLSTATE {}); bound {}; the server read the name {} from a body of {} bytes, the requester sent {} bytes (`{{}}` is {EMPTY_BODY})",
            failure.span_name,
            failure.service,
            failure.message,
            failure.sqlstate.as_deref().unwrap_or("?"),
            failure.bound.as_deref().unwrap_or("?"),
            failure
                .received_name
                .as_deref()
                .map_or("(none)".to_owned(), |n| format!("`{n}`")),
            failure.received_bytes.map_or("?".into(), |b| b.to_string()),
            failure.sent_bytes.map_or("?".into(), |b| b.to_string()),
        ),
        trace_id: Some(failure.trace_id.clone()),
    }
}

/// The failing column as the catalogue describes it.
fn schema_evidence(info: &ColumnInfo) -> Evidence {
    let constraints: Vec<String> = info
        .constraints
        .iter()
        .map(|c| format!("{} {}", c.name, c.definition))
        .collect();
    Evidence {
        signal: "database",
        query: mythical_storage::catalogue::COLUMN_SQL
            .replace("$1", &format!("'{}'", info.table))
            .replace("$2", &format!("'{}'", info.column)),
        finding: format!(
            "{}.{} is {} {}({}) — is_nullable = {}; constraints: {}",
            info.table,
            info.column,
            info.data_type,
            if info.is_nullable { "" } else { "NOT NULL " },
            info.max_length.map_or(String::new(), |l| l.to_string()),
            if info.is_nullable { "YES" } else { "NO" },
            constraints.join(", ")
        ),
        trace_id: None,
    }
}

impl Drops {
    fn evidence(&self) -> Evidence {
        Evidence {
            signal: "traces",
            query: DROP_QUERY.into(),
            finding: match (&self.newest, &self.by) {
                (Some(newest), Some(service)) => format!(
                    "{} traced DROP statements in the last 15 minutes, by {service}; newest {newest}",
                    self.traces
                ),
                _ => "no service traced a DROP in the last 15 minutes".into(),
            },
            trace_id: self.newest.clone(),
        }
    }
}

impl Pool {
    fn evidence(&self) -> Evidence {
        Evidence {
            signal: "database",
            query: IDLE_IN_TRANSACTION_SQL.into(),
            finding: if self.answers {
                format!(
                    "Postgres answers the lab at once; {} sessions sit idle in transaction",
                    self.idle_in_transaction
                        .map_or("?".into(), |n| n.to_string())
                )
            } else {
                "Postgres does not answer the lab either".into()
            },
            trace_id: None,
        }
    }
}

impl Collisions {
    fn evidence(&self) -> Evidence {
        Evidence {
            signal: "database",
            query: format!("SELECT count(*) FROM {}", self.table),
            finding: format!(
                "{}: {:.1}% of new names are taken by chance; {}",
                self.fill(),
                self.chance() * 100.0,
                self.failing().map_or(
                    "its POSTs' outcomes are not scraped yet".into(),
                    |f| format!("{:.1}% of its POSTs failed in the last minute", f * 100.0)
                )
            ),
            trace_id: None,
        }
    }

    /// Why the repeats are not the requester's.
    fn rejected(&self) -> super::Rejected {
        super::Rejected {
            id: "duplicate-name".into(),
            why: format!(
                "{:.1}% of the POSTs to {} failed, as chance predicts with {:.1}% of names taken",
                self.failing().unwrap_or_default() * 100.0,
                self.table,
                self.chance() * 100.0
            ),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Snapshots captured from live native labs (`LAB_EVIDENCE_DIR`), one
    /// per fault that fails requests, with the verdict each must get.
    /// The verdict's (id, culprit), `None` for "still looking".
    type Expected = Option<(&'static str, &'static str)>;

    pub const FIXTURES: &[(&str, &str, Expected)] = &[
        (
            "null-name",
            include_str!("../../../tests/fixtures/evidence/null-name.json"),
            Some(("null-name", "mythical-server")),
        ),
        (
            "missing-name",
            include_str!("../../../tests/fixtures/evidence/missing-name.json"),
            Some(("missing-name", "mythical-requester")),
        ),
        (
            "bad-deploy",
            include_str!("../../../tests/fixtures/evidence/bad-deploy.json"),
            Some(("bad-deploy", "mythical-requester")),
        ),
        (
            // Only 2.0.0 fails so far, too few to rule out both versions.
            "bad-deploy-too-few",
            include_str!("../../../tests/fixtures/evidence/bad-deploy-too-few.json"),
            None,
        ),
        (
            "duplicate-name",
            include_str!("../../../tests/fixtures/evidence/duplicate-name.json"),
            Some(("duplicate-name", "mythical-requester")),
        ),
        (
            "table-wipe",
            include_str!("../../../tests/fixtures/evidence/table-wipe.json"),
            Some(("table-wipe", "mythical-server")),
        ),
        (
            "pool-exhaustion",
            include_str!("../../../tests/fixtures/evidence/pool-exhaustion.json"),
            Some(("pool-exhaustion", "mythical-server")),
        ),
        (
            // ALTER TABLE owlbear ADD CONSTRAINT short_names CHECK (length(name) < 3)
            "schema-check",
            include_str!("../../../tests/fixtures/evidence/schema-check.json"),
            Some(("schema-change", "postgres")),
        ),
        (
            // TRUNCATE unicorn; ALTER TABLE unicorn ALTER COLUMN name TYPE varchar(4)
            "schema-shrink",
            include_str!("../../../tests/fixtures/evidence/schema-shrink.json"),
            Some(("schema-change", "postgres")),
        ),
    ];

    fn snapshot(name: &str, text: &str) -> Snapshot {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn every_captured_failure_gets_exactly_its_verdict() {
        for (name, text, expected) in FIXTURES {
            let verdict = judge(&snapshot(name, text));
            assert_eq!(verdict.status, "fault", "{name}");
            let got = verdict
                .root_cause
                .as_ref()
                .map(|c| (c.id.as_str(), c.service.as_str()));
            assert_eq!(got, *expected, "{name}: {verdict:#?}");
        }
    }

    #[test]
    fn a_verdict_rests_on_the_newest_failing_trace_and_its_error() {
        for (name, text, expected) in FIXTURES {
            let snapshot = snapshot(name, text);
            let verdict = judge(&snapshot);
            let newest = &snapshot.failing_traces[0].0;
            assert!(
                verdict
                    .evidence
                    .iter()
                    .any(|e| e.signal == "traces" && e.trace_id.as_ref() == Some(newest)),
                "{name}: no evidence from {newest}"
            );
            if expected.is_some() {
                let cause = verdict.root_cause.as_ref().unwrap();
                let deepest = verdict
                    .evidence
                    .iter()
                    .find(|e| e.query == format!("trace {newest}"))
                    .unwrap();
                // The message named is the one the trace's span carries.
                assert!(deepest.finding.contains(&cause.message), "{name}");
            }
            assert_eq!(judge(&snapshot), verdict, "{name}: judging twice differs");
        }
    }

    #[test]
    fn a_named_cause_says_why_each_rule_ranked_above_it_does_not_fit() {
        let ids = |d: &Diagnosis| d.rejected.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        let null = judge(&snapshot("null-name", FIXTURES[0].1));
        assert_eq!(ids(&null), ["bad-deploy"]);
        assert!(
            null.rejected[0].why.contains("the server read a name"),
            "{null:#?}"
        );
        let wipe = judge(&snapshot("table-wipe", FIXTURES[5].1));
        assert_eq!(
            ids(&wipe),
            [
                "bad-deploy",
                "null-name",
                "missing-name",
                "table-crowded",
                "duplicate-name"
            ]
        );
        assert!(
            wipe.rejected
                .iter()
                .all(|r| r.why.contains("SQLSTATE 42P01"))
        );
    }

    #[test]
    fn repeated_names_are_weighed_against_what_the_tables_fill_predicts() {
        let odds = |rows: i64, posts: Option<(f64, f64)>| {
            Collisions {
                table: "unicorn".into(),
                rows,
                posts,
            }
            .odds()
        };
        // A day's names: a tenth taken, a tenth of POSTs failing.
        assert_eq!(odds(30_000, Some((2.0, 0.2))), Odds::Chance);
        // A few thousand names: 7 failures a minute where 3 are expected
        // is a Poisson count's spread, as a live lab showed.
        assert_eq!(odds(8_056, Some((2.0, 7.0 / 60.0))), Odds::Chance);
        // The duplicate-name fault on a fresh table (captured).
        assert_eq!(odds(42, Some((1.69, 0.83))), Odds::Exceeded);
        // And on a table a day old: far more than its fill explains.
        assert_eq!(odds(30_000, Some((2.0, 1.0))), Odds::Exceeded);
        // Four names in five taken: the data, not the requester.
        assert_eq!(odds(250_000, Some((2.0, 1.6))), Odds::Crowded);
        // Before the scrapes show the POSTs: a fresh table cannot explain
        // repeats, a full one might.
        assert_eq!(odds(42, None), Odds::Exceeded);
        assert_eq!(odds(30_000, None), Odds::Unknown);
    }

    #[test]
    fn half_a_trace_is_too_early_to_tell_until_no_more_of_it_can_come() {
        let full = snapshot("null-name", FIXTURES[0].1);
        assert!(whole(&full.spans), "the captured trace is whole");
        // The batch with the server span has not arrived: the database
        // span's parent is missing, and with it the name the server read.
        let mut half = full.clone();
        let db = half
            .spans
            .iter()
            .find(|s| s.attribute("db.response.status_code").is_some())
            .unwrap()
            .parent
            .clone();
        half.spans.retain(|s| s.id != db);
        assert!(!whole(&half.spans));
        let last_end = half.spans.iter().map(|s| s.end).max().unwrap();
        half.taken_at = last_end + 1_000_000_000;
        let verdict = judge(&half);
        assert_eq!(verdict.status, "fault");
        assert_eq!(verdict.root_cause, None, "{verdict:#?}");
        assert!(
            verdict
                .evidence
                .iter()
                .any(|e| e.finding.contains("too early to tell")),
            "{verdict:#?}"
        );
        // Long after, the server span is lost, not late: judged as it is.
        half.taken_at = last_end + SETTLE_NANOS;
        assert!(judge(&half).root_cause.is_some());
        // The whole trace, judged at once, is named.
        let mut fresh = full;
        fresh.taken_at = last_end + 1;
        let cause = judge(&fresh).root_cause.unwrap();
        assert_eq!(cause.id, "null-name");
    }

    #[test]
    fn the_same_refusal_under_the_labs_own_schema_is_not_a_schema_change() {
        // The CHECK gone from the catalogue: nothing in the schema explains
        // the refusal, so the server that issued the statement is named.
        let mut check = snapshot("schema-check", FIXTURES[7].1);
        let schema = check.schema.as_mut().unwrap();
        assert!(!schema.name_differences().is_empty());
        schema
            .constraints
            .retain(|c| c.kind != mythical_storage::catalogue::ConstraintKind::Check);
        let verdict = judge(&check);
        let cause = verdict.root_cause.unwrap();
        assert_ne!(cause.id, "schema-change", "{cause:?}");
        assert_eq!(cause.service, "mythical-server", "{cause:?}");
    }

    #[test]
    fn a_missing_table_nobody_traced_dropping_is_postgres_to_restore() {
        let mut wipe = snapshot("table-wipe", FIXTURES[5].1);
        wipe.drops = Some(Drops {
            traces: 0,
            newest: None,
            by: None,
        });
        let cause = judge(&wipe).root_cause.unwrap();
        assert_eq!(
            (cause.id.as_str(), cause.service.as_str()),
            ("table-wipe", "postgres")
        );
    }
}
