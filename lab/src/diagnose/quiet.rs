//! Faults that fail no request: the requests still succeed, but traces
//! come apart, logs land at the wrong time, requests slow down or memory
//! climbs. [`gather`] reads what the detectors need into a [`Snapshot`]
//! and [`judge`] runs them over it in rank order, the first that finds
//! something winning; each one that finds nothing says why not. The
//! cheap, unambiguous signs (a missing parent, a log clock minutes away)
//! rank before latency, which a busy machine also moves.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::{Detector, Diagnosis, Evidence, Rejected};
use crate::plan::Kind;
use crate::query::answer::FoundTrace;
use crate::query::{CPU_PROFILE, IN_USE_PROFILE, QueryClient, Window, profile_selector};

/// The server's requests, newest first: what every detector starts from.
const SERVER_REQUESTS: &str = r#"{ resource.service.name = "mythical-server" && kind = server }"#;

/// How many of the newest server requests the detectors read.
const SAMPLE: usize = 200;

/// A database call is slow when it takes this long and [`SLOW_MULTIPLE`]
/// times the median request: natural commits on a busy laptop reach a few
/// hundred milliseconds now and then, a held lock makes them wait seconds.
const SLOW_FLOOR_MS: f64 = 500.0;
const SLOW_MULTIPLE: f64 = 10.0;

/// Slow calls make a pattern, not a hiccup, when there are this many, or
/// [`SLOW_WITH_BLOCKER`] when Postgres shows a session holding a
/// write-blocking lock on their table right then…
const SLOW_AT_LEAST: usize = 5;
const SLOW_WITH_BLOCKER: usize = 2;
/// …and most of them are on one table: a stalled disk slows every table,
/// a lock one.
const ONE_TABLE_SHARE: f64 = 0.6;

/// A typical request of the lab's tiny tables takes a few milliseconds;
/// when the median of the newest [`BUSY_SAMPLE`] takes this long, every
/// request is slowed.
const BUSY_MEDIAN_MS: f64 = 20.0;
const BUSY_SAMPLE: usize = 60;
/// …and when the median time spent outside the database is this long, and
/// most of the request ([`BUSY_SHARE`]), the server's own code is what
/// takes it. A machine short of CPU for other reasons slows the database
/// calls as much as the rest.
const BUSY_OUTSIDE_MS: f64 = 15.0;
const BUSY_SHARE: f64 = 0.6;
/// How many traces are opened to split a request's time.
const BREAKDOWN_TRACES: usize = 10;

/// A log line further than this from its trace is on another clock.
const SKEW_S: f64 = 60.0;
/// Log records are exported in batches: a trace younger than this may not
/// have its line stored yet.
const LOG_DELAY_NS: i64 = 5_000_000_000;
/// How recent the traces are that clock skew is judged on.
const SKEW_RECENT_NS: i64 = 20_000_000_000;

/// Everything the quiet detectors read, in one value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The newest server requests, newest first.
    pub requests: Vec<Request>,
    /// For clock skew: the newest traces old enough to have their log line
    /// stored, newest first, up to the first whose line was found.
    pub logged: Vec<Logged>,
    /// The database calls far slower than the median request, when there
    /// is a median.
    pub slow: Option<Slow>,
    /// Where the newest requests' time went, when the median one is busy.
    pub breakdown: Option<Breakdown>,
    /// The server's resident memory over the last
    /// [`CLIMB_WINDOW_SECONDS`]: (Unix seconds, bytes), oldest first.
    pub scrapes: Vec<(f64, f64)>,
    /// What its heap profile says holds memory, when the scrapes climb.
    pub holders: Option<Profiled>,
}

/// One server request of a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub trace_id: String,
    /// The trace's root service: the server's own name when the caller's
    /// context did not arrive.
    pub root_service: String,
    /// The server span's duration.
    pub ms: Option<f64>,
}

/// A trace's start and where its log line is stamped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logged {
    pub trace_id: String,
    pub span_start: i64,
    /// `None`: no line of the trace was found.
    pub logged: Option<i64>,
}

/// Database calls slower than [`Slow::threshold_ms`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slow {
    pub threshold_ms: f64,
    pub median_ms: f64,
    pub query: String,
    /// (trace id, table, ms) of each call.
    pub calls: Vec<(String, String, f64)>,
    /// The write-blocking table locks Postgres showed, as [`LOCKS_SQL`]'s
    /// rows, when there were enough calls to ask; `None`: not asked, or no
    /// answer.
    pub locks: Option<Vec<Vec<String>>>,
}

/// Server requests split into their database calls and the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breakdown {
    /// (trace id, server span ms, ms of it in its database calls).
    pub requests: Vec<(String, f64, f64)>,
    pub hot: Profiled,
}

/// What a profile of the server says of its own code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profiled {
    pub query: String,
    /// The profile had samples to read.
    pub read: bool,
    /// The server's own functions among the costliest 50, with their self
    /// cost, highest first.
    pub own: Vec<(String, i64)>,
}

/// Reads the server's requests, the log lines of the newest settled ones,
/// the slow database calls and the locks behind them, where a busy
/// request's time went and the CPU profile, the memory scrapes and, when
/// they climb, the heap profile. `now` is when the snapshot is taken.
pub async fn gather(
    client: &QueryClient,
    postgres_port: Option<u16>,
    window: Window,
    now: i64,
) -> Result<Snapshot> {
    let found = client.traceql(SERVER_REQUESTS, window, SAMPLE).await?;
    let requests: Vec<Request> = found
        .traces
        .iter()
        .map(|t| Request {
            trace_id: t.trace_id.clone(),
            root_service: t.root_service_name.clone(),
            ms: matched_ms(t),
        })
        .collect();
    let logged = logged(client, window, now).await?;
    let slow = match median(requests.iter().filter_map(|r| r.ms).collect()) {
        Some(median_ms) => Some(slow_calls(client, postgres_port, window, median_ms).await?),
        None => None,
    };
    let breakdown = match busy_median(&requests) {
        Some(median_ms) if median_ms >= BUSY_MEDIAN_MS => {
            Some(breakdown(client, window, &requests).await?)
        }
        _ => None,
    };
    let memory = client.promql_instant(&memory_query(), window.end).await?;
    let scrapes: Vec<(f64, f64)> = memory
        .series()
        .first()
        .into_iter()
        .flat_map(|s| &s.values)
        .filter_map(|p| Some((p.nanos as f64 / 1e9, p.number()?)))
        .collect();
    let holders = match Climb::of(&scrapes) {
        Some(climb) if climb.may_leak() => {
            let recent_heap = Window {
                start: window.end - HELD_WINDOW_SECONDS * 1_000_000_000,
                end: window.end,
            };
            let heap = profile_selector(IN_USE_PROFILE, Kind::Server.name());
            Some(own_top(client, &heap, recent_heap).await)
        }
        _ => None,
    };
    Ok(Snapshot {
        requests,
        logged,
        slow,
        breakdown,
        scrapes,
        holders,
    })
}

/// The quiet detectors, in rank order.
pub(super) const DETECTORS: [(&str, Detector<Snapshot>); 5] = [
    ("broken-propagation", broken_propagation),
    ("clock-skew", clock_skew),
    ("slow-query", slow_query),
    ("cpu-hog", cpu_hog),
    ("memory-leak", memory_leak),
];

/// The first detector that names a fault; those ranked above it, or all
/// of them when none does, say in `rejected` why not.
pub fn judge(snapshot: &Snapshot, rejected: &mut Vec<Rejected>) -> Option<Diagnosis> {
    super::first_found(&DETECTORS, snapshot, rejected)
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

/// The median of the newest [`BUSY_SAMPLE`] requests.
fn busy_median(requests: &[Request]) -> Option<f64> {
    let newest = &requests[..requests.len().min(BUSY_SAMPLE)];
    median(newest.iter().filter_map(|r| r.ms).collect())
}

/// Whether a profile frame is the mythical services' own code rather than
/// the standard library, a dependency or libc: its path starts in one of
/// the `mythical_*` crates, also when it is a trait method
/// (`<mythical_services::X as Trait>::f`). A debug build keeps
/// `<u64>::wrapping_mul` as a frame with more self time than its caller;
/// the learner wants the caller.
fn own_code(frame: &str) -> bool {
    let path = frame.trim_start_matches(['<', '&']);
    let path = path.strip_prefix("mut ").unwrap_or(path);
    let path = path.strip_prefix("dyn ").unwrap_or(path);
    path.starts_with("mythical_")
}

/// The duration of a search result's first matched span.
fn matched_ms(trace: &FoundTrace) -> Option<f64> {
    trace.matched_spans().next().map(|s| s.duration_ms())
}

/// Server spans that start traces of their own: the caller's context did
/// not arrive.
fn broken_propagation(snapshot: &Snapshot) -> Result<Diagnosis, String> {
    let traces = &snapshot.requests[..snapshot.requests.len().min(100)];
    let orphans: Vec<&Request> = traces
        .iter()
        .filter(|t| t.root_service == Kind::Server.name())
        .collect();
    if traces.len() < 5 {
        return Err(format!(
            "{} server traces, too few to tell joined from apart",
            traces.len()
        ));
    }
    if orphans.len() * 10 < traces.len() * 8 {
        return Err(format!(
            "{} of the last {} server traces start at the server (8 in 10 do when the caller's context is lost)",
            orphans.len(),
            traces.len()
        ));
    }
    let example = orphans[0].trace_id.clone();
    Ok(Diagnosis::fault(
        "broken-propagation",
        Kind::Requester.name(),
        format!(
            "{} of {} server traces start at the server: mythical-requester's calls arrive without traceparent, so its traces and the server's never join",
            orphans.len(),
            traces.len()
        ),
        "server spans have no parent".into(),
        vec![Evidence {
            signal: "traces",
            query: SERVER_REQUESTS.into(),
            finding: format!(
                "{} of the last {} traces with a server span have mythical-server as their root service; e.g. {example}",
                orphans.len(),
                traces.len()
            ),
            trace_id: Some(example),
        }],
    ))
}

/// The newest few server traces old enough to have their line stored,
/// each with where its line is, up to the first that has one. They are
/// searched for in the last [`SKEW_RECENT_NS`] only: a search of the whole
/// window answers a sample of it, which may hold none of the seconds since
/// a skew began.
async fn logged(client: &QueryClient, window: Window, now: i64) -> Result<Vec<Logged>> {
    // Only traces old enough to have their line stored are searched: a busy
    // lab makes more than a sample's worth in the last seconds alone, and
    // a search up to now would answer those and nothing settled.
    let settled_before = now - LOG_DELAY_NS;
    let recent = Window {
        start: window.start.max(window.end - SKEW_RECENT_NS),
        end: window.end.min(settled_before),
    };
    if recent.start >= recent.end {
        return Ok(Vec::new());
    }
    let found = client.traceql(SERVER_REQUESTS, recent, SAMPLE).await?;
    let mut settled: Vec<(String, i64)> = found
        .traces
        .into_iter()
        .filter(|t| t.start_time_unix_nano < settled_before)
        .map(|t| (t.trace_id, t.start_time_unix_nano))
        .collect();
    // The newest decide, whatever order the search answered in: a skew
    // that began seconds ago shows only in them.
    settled.sort_by_key(|(_, start)| std::cmp::Reverse(*start));
    settled.truncate(3);
    let mut logged = Vec::new();
    for (trace_id, span_start) in settled {
        // Far wider than the trace: a skewed line can be minutes away.
        let wide = Window {
            start: span_start - 3_600 * 1_000_000_000,
            end: span_start + 3_600 * 1_000_000_000,
        };
        let logs = client
            .logql(&skew_log_query(&trace_id), wide, 5, 60)
            .await?;
        let line = logs.lines().next().map(|(_, line)| line.nanos);
        logged.push(Logged {
            trace_id,
            span_start,
            logged: line,
        });
        if line.is_some() {
            break;
        }
    }
    Ok(logged)
}

fn skew_log_query(trace_id: &str) -> String {
    format!(r#"{{service_name="mythical-server"}} |= "{trace_id}""#)
}

/// Log records whose time is far from their trace's: the newest trace
/// whose line was found decides.
fn clock_skew(snapshot: &Snapshot) -> Result<Diagnosis, String> {
    let Some((found, logged)) = snapshot.logged.iter().find_map(|l| Some((l, l.logged?))) else {
        return Err(format!(
            "none of the {} newest settled server traces has its log line to compare clocks with",
            snapshot.logged.len()
        ));
    };
    let (trace_id, span_start) = (&found.trace_id, found.span_start);
    let skew_s = (logged - span_start) as f64 / 1e9;
    if skew_s.abs() < SKEW_S {
        return Err(format!(
            "the log line of {trace_id} is stamped {skew_s:+.1} s from its trace (a skewed clock is {SKEW_S:.0} s or more away)"
        ));
    }
    Ok(Diagnosis::fault(
        "clock-skew",
        Kind::Server.name(),
        format!(
            "mythical-server's log lines are stamped {skew_s:+.0} s from the traces they belong to: its log clock is off"
        ),
        format!("log time {skew_s:+.0} s from span time"),
        vec![
            Evidence {
                signal: "traces",
                query: SERVER_REQUESTS.into(),
                finding: format!(
                    "trace {trace_id} started at {} UTC",
                    crate::render::clock(span_start)
                ),
                trace_id: Some(trace_id.clone()),
            },
            Evidence {
                signal: "logs",
                query: skew_log_query(trace_id),
                finding: format!(
                    "its log line is stamped {} UTC, {skew_s:+.0} s away",
                    crate::render::clock(logged)
                ),
                trace_id: Some(trace_id.clone()),
            },
        ],
    ))
}

/// The server's database calls slower than [`SLOW_MULTIPLE`] times the
/// median request (and [`SLOW_FLOOR_MS`]), and, when there are enough to
/// matter, who holds a write-blocking lock.
async fn slow_calls(
    client: &QueryClient,
    postgres_port: Option<u16>,
    window: Window,
    median_ms: f64,
) -> Result<Slow> {
    let threshold_ms = SLOW_FLOOR_MS.max(SLOW_MULTIPLE * median_ms).round();
    let query = format!(
        r#"{{ resource.service.name = "mythical-server" && span.db.collection.name != nil && duration > {threshold_ms}ms }}"#
    );
    let found = client.traceql(&query, window, SAMPLE).await?;
    let calls: Vec<(String, String, f64)> = found
        .traces
        .iter()
        .flat_map(|t| {
            t.matched_spans().filter_map(|s| {
                let table = s.attribute("db.collection.name")?;
                Some((t.trace_id.clone(), table, s.duration_ms()))
            })
        })
        .collect();
    let mut locks = None;
    if calls.len() >= SLOW_WITH_BLOCKER
        && let Some(port) = postgres_port
    {
        let store = crate::runtime::postgres_session(port, std::time::Duration::from_secs(2));
        locks = mythical_storage::catalogue::read_only_query(store.pool(), LOCKS_SQL)
            .await
            .ok()
            .map(|rows| rows.rows);
        store.pool().close().await;
    }
    Ok(Slow {
        threshold_ms,
        median_ms,
        query,
        calls,
        locks,
    })
}

/// Database calls that wait far longer than a request takes, piled on one
/// table: a lock. Postgres names who holds it.
fn slow_query(snapshot: &Snapshot) -> Result<Diagnosis, String> {
    let Some(slow) = &snapshot.slow else {
        return Err("no server request to take a median of".into());
    };
    let threshold = slow.threshold_ms;
    if slow.calls.len() < SLOW_WITH_BLOCKER {
        return Err(format!(
            "{} database calls slower than {threshold} ms (10 times the median request, {:.0} ms)",
            slow.calls.len(),
            slow.median_ms
        ));
    }
    let mut by_table: Vec<(&str, usize)> = Vec::new();
    for (_, table, _) in &slow.calls {
        match by_table.iter_mut().find(|(t, _)| t == table) {
            Some((_, n)) => *n += 1,
            None => by_table.push((table, 1)),
        }
    }
    by_table.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    let (table, on_table) = by_table[0];
    if (on_table as f64) < ONE_TABLE_SHARE * slow.calls.len() as f64 {
        return Err(format!(
            "{} slow database calls, spread over {} tables ({on_table} on {table}): every table slowed is not a lock",
            slow.calls.len(),
            by_table.len()
        ));
    }
    let (trace_id, _, slowest) = slow
        .calls
        .iter()
        .filter(|(_, t, _)| t == table)
        .max_by(|a, b| a.2.total_cmp(&b.2))
        .cloned()
        .expect("the table has slow calls");
    let median_ms = slow.median_ms;
    let mut evidence = vec![Evidence {
        signal: "traces",
        query: slow.query.clone(),
        finding: format!(
            "{} database calls slower than {threshold} ms (the median request takes {median_ms:.0} ms), {on_table} of them on {table}; the slowest {slowest:.0} ms in {trace_id}",
            slow.calls.len()
        ),
        trace_id: Some(trace_id),
    }];
    // Who holds the lock they wait on?
    let blocker = slow.locks.as_ref().and_then(|rows| rows.first());
    if slow.locks.is_some() {
        evidence.push(Evidence {
            signal: "database",
            query: LOCKS_SQL.into(),
            finding: match blocker {
                Some(row) => {
                    let cell = |i: usize| row.get(i).map_or("?", String::as_str);
                    format!(
                        "session {} holds {} on {} ({}, last ran `{}`); {} sessions wait for it",
                        cell(0),
                        cell(2),
                        cell(1),
                        cell(3),
                        cell(4),
                        cell(5)
                    )
                }
                None => "no session holds a write-blocking table lock at this instant".into(),
            },
            trace_id: None,
        });
    }
    // A few slow calls are a hiccup unless a lock on their table says why.
    let locks_the_table = blocker.is_some_and(|row| {
        row.get(1)
            .is_some_and(|locked| locked.trim_matches('"').rsplit('.').next() == Some(table))
    });
    if slow.calls.len() < SLOW_AT_LEAST && !locks_the_table {
        return Err(format!(
            "{} slow database calls on {table}, under the {SLOW_AT_LEAST} a pattern takes, and no lock held on it",
            slow.calls.len()
        ));
    }
    Ok(Diagnosis::fault(
        "slow-query",
        Kind::Postgres.name(),
        format!(
            "requests wait on Postgres: statements on {table} take up to {slowest:.0} ms{}",
            blocker
                .and_then(|r| r.get(4))
                .map_or(String::new(), |q| format!(
                    ", behind a session holding a table lock (`{q}`)"
                ))
        ),
        format!("statements on {table} took up to {slowest:.0} ms"),
        evidence,
    ))
}

/// The newest requests' server spans, each with the time of its own
/// database calls, and the server's CPU profile.
async fn breakdown(
    client: &QueryClient,
    window: Window,
    requests: &[Request],
) -> Result<Breakdown> {
    let mut split = Vec::new();
    for request in requests.iter().take(BREAKDOWN_TRACES) {
        let all = client.trace(&request.trace_id).await?.spans();
        for server in all
            .iter()
            .filter(|s| s.service == Kind::Server.name() && s.server)
        {
            let in_db: i64 = all
                .iter()
                .filter(|s| s.parent == server.id)
                .filter(|s| s.attribute("db.operation.name").is_some())
                .map(|s| s.end - s.start)
                .sum();
            split.push((
                request.trace_id.clone(),
                (server.end - server.start) as f64 / 1e6,
                in_db as f64 / 1e6,
            ));
        }
    }
    let cpu = profile_selector(CPU_PROFILE, Kind::Server.name());
    Ok(Breakdown {
        requests: split,
        hot: own_top(client, &cpu, window).await,
    })
}

/// Every request slow, and the time spent in the server's own code rather
/// than in the database: CPU. The profile names the function.
fn cpu_hog(snapshot: &Snapshot) -> Result<Diagnosis, String> {
    let Some(breakdown) = &snapshot.breakdown else {
        return Err(match busy_median(&snapshot.requests) {
            Some(m) => {
                format!(
                    "the median server request takes {m:.1} ms (a busy server's, {BUSY_MEDIAN_MS} ms or more)"
                )
            }
            None => "no server request to time".into(),
        });
    };
    let median_ms = median(breakdown.requests.iter().map(|r| r.1).collect()).unwrap_or_default();
    let Some(outside_ms) = median(breakdown.requests.iter().map(|r| r.1 - r.2).collect()) else {
        return Err("none of the newest requests' traces had its server span".into());
    };
    if outside_ms < BUSY_OUTSIDE_MS || outside_ms < BUSY_SHARE * median_ms {
        return Err(format!(
            "the median request takes {median_ms:.0} ms, only {outside_ms:.0} ms of it outside the database: what slows it is not the server's code"
        ));
    }
    let (trace_id, total, in_db) = breakdown.requests[0].clone();
    let hot = &breakdown.hot;
    Ok(Diagnosis::fault(
        "cpu-hog",
        Kind::Server.name(),
        format!(
            "mythical-server spends {outside_ms:.0} ms of a {median_ms:.0} ms request outside the database: busy on CPU{}",
            hot.own
                .first()
                .map_or(String::new(), |(h, _)| format!(" in {h}"))
        ),
        format!("median request {median_ms:.0} ms, {outside_ms:.0} ms of it outside the database"),
        vec![
            Evidence {
                signal: "traces",
                query: SERVER_REQUESTS.into(),
                finding: format!(
                    "the median server request takes {median_ms:.0} ms, of which {outside_ms:.0} ms outside the database; e.g. {trace_id}: {total:.0} ms, {in_db:.0} ms in the database"
                ),
                trace_id: Some(trace_id),
            },
            hot.evidence("hottest functions"),
        ],
    ))
}

/// The server's own functions that cost the most in a profile, with their
/// self cost (highest first).
async fn own_top(client: &QueryClient, profile: &str, window: Window) -> Profiled {
    let top = client.profile_top(profile, window, 50).await.ok();
    Profiled {
        query: profile.into(),
        read: top.as_ref().is_some_and(|t| t.total != 0),
        own: top
            .iter()
            .flat_map(|t| &t.functions)
            .filter(|f| own_code(&f.name))
            .map(|f| (f.name.clone(), f.self_value))
            .collect(),
    }
}

impl Profiled {
    /// As evidence; `what` names the functions in the finding.
    fn evidence(&self, what: &str) -> Evidence {
        let finding = if !self.read {
            "no profile of the server to read".to_owned()
        } else if self.own.is_empty() {
            "the server's profile has none of its own functions among its 50 costliest".to_owned()
        } else {
            format!(
                "the server's {what} of its own: {}",
                self.own
                    .iter()
                    .take(3)
                    .map(|(name, _)| name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        Evidence {
            signal: "profiles",
            query: self.query.clone(),
            finding,
            trace_id: None,
        }
    }
}

/// Who holds a lock that stops writes on a table, what it runs and how
/// many sessions wait for it: (pid, table, mode, state, query, waiting).
pub const LOCKS_SQL: &str = "SELECT holder.pid, held.relation::regclass::text AS locked, held.mode, \
holder.state, holder.query, \
(SELECT count(*) FROM pg_stat_activity waiter WHERE holder.pid = ANY(pg_blocking_pids(waiter.pid))) AS waiting \
FROM pg_locks held JOIN pg_stat_activity holder ON holder.pid = held.pid \
WHERE held.locktype = 'relation' AND held.granted AND holder.pid <> pg_backend_pid() \
AND held.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock') \
ORDER BY waiting DESC";

/// A leak grows the resident memory between every two of the last
/// [`CLIMB_SCRAPES`] scrapes by at least [`CLIMB_MIB_PER_SECOND`] a second,
/// [`CLIMB_MIB`] in all. On the scrapes alone it must be fast
/// ([`FAST_MIB_PER_SECOND`] at every step) and steady (the slowest step at
/// least [`STEADY`] of the fastest, and not every step smaller than the
/// last with the last under half the first). A program's natural growth is
/// a jump now and then (code pages, a buffer that grows once) and flat
/// between, or a warm-up of small steps, as a fresh server's are. Any of
/// them is a leak when the heap profile names a holder of [`HELD_MIB`].
/// The rule reads the raw scrapes of the last [`CLIMB_WINDOW_SECONDS`] (a
/// range vector at one instant), so it judges what was scraped, when,
/// whatever the scrape interval: at the original's 2 s, a leak shows
/// within seconds of its start.
const CLIMB_MIB_PER_SECOND: f64 = 0.1;
/// A climb this fast at every step is a leak on the scrapes alone: a fresh
/// server's warm-up grows up to about a third of a MiB a second for a few
/// scrapes (a live lab showed +0.7, +0.2, +0.3 MiB in 2 s steps), the
/// lab's leak at its usual traffic about 7 MiB a second. Slower, only a
/// holder in the heap profile makes it one.
const FAST_MIB_PER_SECOND: f64 = 1.0;
const CLIMB_MIB: f64 = 1.0;
const CLIMB_SCRAPES: usize = 4;
const CLIMB_WINDOW_SECONDS: i64 = 12;
const STEADY: f64 = 0.2;

/// Memory a function of the server's own code holds, in the heap profile of
/// the last [`HELD_WINDOW_SECONDS`], that makes a climb a leak even when a
/// jump (a profiler loading symbols) makes its steps uneven: the server's
/// own code holds next to nothing when it is well.
const HELD_MIB: f64 = 2.0;
const HELD_WINDOW_SECONDS: i64 = 15;

fn memory_query() -> String {
    format!(
        r#"process_resident_memory_bytes{{service="mythical-server"}}[{CLIMB_WINDOW_SECONDS}s]"#
    )
}

/// The server's resident memory climbing, scrape after scrape.
fn memory_leak(snapshot: &Snapshot) -> Result<Diagnosis, String> {
    let Some(climb) = Climb::of(&snapshot.scrapes) else {
        return Err(format!(
            "{} scrapes of the server's memory in the last {CLIMB_WINDOW_SECONDS} s, fewer than the {CLIMB_SCRAPES} a climb takes",
            snapshot.scrapes.len()
        ));
    };
    let held_mib = snapshot
        .holders
        .as_ref()
        .and_then(|h| h.own.first())
        .map_or(0.0, |(_, bytes)| mib(*bytes as f64));
    let steps_text = climb
        .steps_mib
        .iter()
        .map(|s| format!("{s:+.1}"))
        .collect::<Vec<_>>()
        .join(", ");
    if !climb.leaks(held_mib) {
        return Err(format!(
            "the server's memory moved {steps_text} MiB over its last {CLIMB_SCRAPES} scrapes: not a steady climb{}",
            if held_mib > 0.0 {
                format!(", and its own code holds {held_mib:.1} MiB")
            } else {
                String::new()
            }
        ));
    }
    let holders = snapshot.holders.as_ref();
    let mut evidence = vec![Evidence {
        signal: "metrics",
        query: memory_query(),
        finding: format!(
            "{:.1} MiB → {:.1} MiB over the last {} scrapes ({:.0} s): steps of {steps_text} MiB",
            climb.last_mib - climb.growth_mib,
            climb.last_mib,
            CLIMB_SCRAPES,
            climb.seconds
        ),
        trace_id: None,
    }];
    evidence.extend(holders.map(|h| h.evidence("functions holding the most memory")));
    Ok(Diagnosis::fault(
        "memory-leak",
        Kind::Server.name(),
        format!(
            "mythical-server's resident memory climbs scrape after scrape ({steps_text} MiB, {:.1} MiB/s), now {:.0} MiB: it holds memory it never frees{}",
            climb.growth_mib / climb.seconds,
            climb.last_mib,
            holders
                .and_then(|h| h.own.first())
                .map_or(String::new(), |(h, _)| format!(", kept by {h}"))
        ),
        format!("+{:.1} MiB in {:.0} s", climb.growth_mib, climb.seconds),
        evidence,
    ))
}

fn mib(bytes: f64) -> f64 {
    bytes / 1024.0 / 1024.0
}

/// The last [`CLIMB_SCRAPES`] scrapes of resident memory, as steps.
#[derive(Debug, PartialEq)]
struct Climb {
    /// Each step's growth, oldest first.
    steps_mib: Vec<f64>,
    /// The slowest and fastest step, in MiB a second.
    slowest: f64,
    fastest: f64,
    growth_mib: f64,
    last_mib: f64,
    seconds: f64,
}

impl Climb {
    /// From (Unix seconds, bytes) scrapes, oldest first; `None` with fewer
    /// than [`CLIMB_SCRAPES`].
    fn of(scrapes: &[(f64, f64)]) -> Option<Climb> {
        if scrapes.len() < CLIMB_SCRAPES {
            return None;
        }
        let recent = &scrapes[scrapes.len() - CLIMB_SCRAPES..];
        let mut steps_mib = Vec::new();
        let (mut slowest, mut fastest) = (f64::INFINITY, f64::NEG_INFINITY);
        for pair in recent.windows(2) {
            let ((t0, v0), (t1, v1)) = (pair[0], pair[1]);
            let step = mib(v1 - v0);
            let pace = step / (t1 - t0).max(0.001);
            steps_mib.push(step);
            slowest = slowest.min(pace);
            fastest = fastest.max(pace);
        }
        let (first, last) = (recent[0], recent[recent.len() - 1]);
        Some(Climb {
            steps_mib,
            slowest,
            fastest,
            growth_mib: mib(last.1 - first.1),
            last_mib: mib(last.1),
            seconds: last.0 - first.0,
        })
    }

    /// Whether the scrapes climb enough to be worth a heap profile's look.
    fn may_leak(&self) -> bool {
        self.slowest >= CLIMB_MIB_PER_SECOND && self.growth_mib >= CLIMB_MIB
    }

    /// The verdict, with the most memory one function of the server's own
    /// code holds in the heap profile: a holder of [`HELD_MIB`] makes any
    /// climb a leak; without one, only a fast and steady climb that does
    /// not level off is.
    fn leaks(&self, held_mib: f64) -> bool {
        if !self.may_leak() {
            return false;
        }
        held_mib >= HELD_MIB
            || (self.slowest >= FAST_MIB_PER_SECOND
                && self.slowest >= STEADY * self.fastest
                && !self.levels_off())
    }

    /// Each step smaller than the one before, the last under half the
    /// first: a warm-up settling (a fresh process filling its caches and
    /// arenas), which a leak at steady traffic never looks like.
    fn levels_off(&self) -> bool {
        let steps = &self.steps_mib;
        let shrinking = steps.windows(2).all(|pair| pair[1] < pair[0]);
        match (steps.first(), steps.last()) {
            (Some(first), Some(last)) => shrinking && *last < 0.5 * first,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Climb, HELD_MIB, own_code};

    const MIB: f64 = 1024.0 * 1024.0;

    fn scrapes(mib: &[f64]) -> Vec<(f64, f64)> {
        mib.iter()
            .enumerate()
            .map(|(i, m)| (1000.0 + 2.0 * i as f64, m * MIB))
            .collect()
    }

    /// The verdict on 2 s scrapes, with no holder in the heap profile.
    fn leaks(mib: &[f64]) -> bool {
        Climb::of(&scrapes(mib)).unwrap().leaks(0.0)
    }

    /// The verdict when the heap profile names a holder of the server's own.
    fn leaks_held(mib: &[f64]) -> bool {
        Climb::of(&scrapes(mib)).unwrap().leaks(HELD_MIB)
    }

    #[test]
    fn a_steady_climb_is_a_leak_a_jump_or_a_warm_up_is_not() {
        // 48 KiB a request at the lab's usual traffic: ~15 MiB a scrape.
        assert!(leaks(&[40.0, 55.3, 70.0, 85.5]));
        // Only the last scrapes count: a flat start does not hide it.
        assert!(leaks(&[30.0, 30.0, 30.0, 33.5, 37.1, 40.7]));
        // At the original's slow pace (~0.6 MiB a scrape) the scrapes look
        // like a warm-up; the heap profile's holder decides.
        assert!(!leaks(&[30.0, 30.6, 31.1, 31.8]));
        assert!(leaks_held(&[30.0, 30.6, 31.1, 31.8]));
        // One jump, flat around it.
        assert!(!leaks(&[30.0, 30.0, 34.0, 34.0]));
        // A warm-up that levels off.
        assert!(!leaks(&[20.0, 26.0, 27.0, 27.1]));
        // Fresh servers settling, as live labs showed a few seconds after
        // their start: shrinking steps, or uneven small ones.
        assert!(!leaks(&[38.8, 39.7, 40.1, 40.3]));
        assert!(!leaks(&[36.2, 36.9, 37.1, 37.4]));
        // Growth too slow to matter within the hour, even with a holder.
        assert!(!leaks_held(&[30.0, 30.1, 30.2, 30.3]));
        // Falling memory.
        assert!(!leaks_held(&[32.0, 31.0, 30.0, 29.0]));
        assert_eq!(Climb::of(&scrapes(&[30.0, 31.0, 32.0])), None);
    }

    #[test]
    fn own_code_is_the_mythical_crates_not_std_libc_or_dependencies() {
        for own in [
            "mythical_services::server::fingerprint::stretch",
            "<mythical_services::server::Beasts as core::clone::Clone>::clone",
            "&mythical_storage::Store::insert",
            "mythical_server::main",
        ] {
            assert!(own_code(own), "{own}");
        }
        for other in [
            "<u64>::wrapping_mul",
            "<core::str::iter::Bytes as core::iter::traits::iterator::Iterator>::next",
            "tokio::runtime::task::raw::poll",
            "__GI_fdatasync",
            "",
        ] {
            assert!(!own_code(other), "{other}");
        }
    }
}
