//! Faults that fail no request: the requests still succeed, but traces
//! come apart, logs land at the wrong time, requests slow down or memory
//! climbs. Each detector reads the same APIs as the rest of diagnosis and
//! names its root cause with the evidence it used; the first that finds
//! something wins. The cheap, unambiguous signs (a missing parent, a log
//! clock minutes away) are read before latency, which a busy machine
//! also moves.

use super::{Diagnosis, Evidence, RootCause};
use crate::query::answer::{FoundTrace, TraceSpan};
use crate::query::{CPU_PROFILE, IN_USE_PROFILE, QueryClient, Window, profile_selector};
use anyhow::Result;

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

fn fault(
    id: &str,
    culprit: &str,
    summary: String,
    message: String,
    evidence: Vec<Evidence>,
) -> Diagnosis {
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
    let requests = client
        .traceql(SERVER_REQUESTS, window, SAMPLE)
        .await?
        .traces;
    if let Some(d) = broken_propagation(&requests) {
        return Ok(Some(d));
    }
    if let Some(d) = clock_skew(client, window).await? {
        return Ok(Some(d));
    }
    let typical = median(requests.iter().filter_map(matched_ms).collect());
    if let Some(d) = slow_query(client, postgres_port, window, typical).await? {
        return Ok(Some(d));
    }
    if let Some(d) = cpu_hog(client, window, &requests).await? {
        return Ok(Some(d));
    }
    memory_leak(client, window).await
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
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

fn span_ms(span: &TraceSpan) -> f64 {
    (span.end - span.start) as f64 / 1e6
}

/// Server spans that start traces of their own: the caller's context did
/// not arrive.
fn broken_propagation(requests: &[FoundTrace]) -> Option<Diagnosis> {
    let traces = &requests[..requests.len().min(100)];
    let orphans: Vec<&FoundTrace> = traces
        .iter()
        .filter(|t| t.root_service_name == "mythical-server")
        .collect();
    if traces.len() < 5 || orphans.len() * 10 < traces.len() * 8 {
        return None;
    }
    let example = orphans[0].trace_id.clone();
    Some(fault(
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

/// Log records whose time is far from their trace's: the newest few
/// traces old enough to have their line stored decide. They are searched
/// for in the last [`SKEW_RECENT_NS`] only: a search of the whole window
/// answers a sample of it, which may hold none of the seconds since the
/// skew began.
async fn clock_skew(client: &QueryClient, window: Window) -> Result<Option<Diagnosis>> {
    // Only traces old enough to have their line stored are searched: a busy
    // lab makes more than a sample's worth in the last seconds alone, and
    // a search up to now would answer those and nothing settled.
    let settled_before = lab_backend::params::now_nanos() - LOG_DELAY_NS;
    let recent = Window {
        start: window.start.max(window.end - SKEW_RECENT_NS),
        end: window.end.min(settled_before),
    };
    if recent.start >= recent.end {
        return Ok(None);
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
    for (trace_id, span_start) in settled {
        // Far wider than the trace: a skewed line can be minutes away.
        let wide = Window {
            start: span_start - 3_600 * 1_000_000_000,
            end: span_start + 3_600 * 1_000_000_000,
        };
        let log_query = format!(r#"{{service_name="mythical-server"}} |= "{trace_id}""#);
        let logs = client.logql(&log_query, wide, 5, 60).await?;
        let Some(logged) = logs.lines().next().map(|(_, line)| line.nanos) else {
            continue;
        };
        let skew_s = (logged - span_start) as f64 / 1e9;
        if skew_s.abs() < SKEW_S {
            return Ok(None);
        }
        return Ok(Some(fault(
            "clock-skew",
            "mythical-server",
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
                    query: log_query,
                    finding: format!(
                        "its log line is stamped {} UTC, {skew_s:+.0} s away",
                        crate::render::clock(logged)
                    ),
                    trace_id: Some(trace_id),
                },
            ],
        )));
    }
    Ok(None)
}

/// Database calls that wait far longer than a request takes, piled on one
/// table: a lock. Postgres names who holds it.
async fn slow_query(
    client: &QueryClient,
    postgres_port: Option<u16>,
    window: Window,
    median_ms: Option<f64>,
) -> Result<Option<Diagnosis>> {
    let Some(median_ms) = median_ms else {
        return Ok(None);
    };
    let threshold = SLOW_FLOOR_MS.max(SLOW_MULTIPLE * median_ms).round();
    let query = format!(
        r#"{{ resource.service.name = "mythical-server" && span.db.collection.name != nil && duration > {threshold}ms }}"#
    );
    let found = client.traceql(&query, window, SAMPLE).await?;
    let slow: Vec<(String, String, f64)> = found
        .traces
        .iter()
        .flat_map(|t| {
            t.matched_spans().filter_map(|s| {
                let table = s.attribute("db.collection.name")?;
                Some((t.trace_id.clone(), table, s.duration_ms()))
            })
        })
        .collect();
    if slow.len() < SLOW_WITH_BLOCKER {
        return Ok(None);
    }
    let mut by_table: Vec<(String, usize)> = Vec::new();
    for (_, table, _) in &slow {
        match by_table.iter_mut().find(|(t, _)| t == table) {
            Some((_, n)) => *n += 1,
            None => by_table.push((table.clone(), 1)),
        }
    }
    by_table.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    let (table, on_table) = by_table[0].clone();
    if (on_table as f64) < ONE_TABLE_SHARE * slow.len() as f64 {
        return Ok(None);
    }
    let (trace_id, _, slowest) = slow
        .iter()
        .filter(|(_, t, _)| *t == table)
        .max_by(|a, b| a.2.total_cmp(&b.2))
        .cloned()
        .expect("the table has slow calls");
    let mut evidence = vec![Evidence {
        signal: "traces",
        query: query.clone(),
        finding: format!(
            "{} database calls slower than {threshold} ms (the median request takes {median_ms:.0} ms), {on_table} of them on {table}; the slowest {slowest:.0} ms in {trace_id}",
            slow.len()
        ),
        trace_id: Some(trace_id),
    }];
    // Who holds the lock they wait on?
    let mut blocker: Option<Vec<String>> = None;
    if let Some(port) = postgres_port {
        let store = crate::runtime::postgres_session(port, std::time::Duration::from_secs(2));
        if let Ok(rows) =
            mythical_storage::catalogue::read_only_query(store.pool(), LOCKS_SQL).await
        {
            blocker = rows.rows.first().cloned();
            evidence.push(Evidence {
                signal: "database",
                query: LOCKS_SQL.into(),
                finding: match &blocker {
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
        store.pool().close().await;
    }
    // A few slow calls are a hiccup unless a lock on their table says why.
    let locks_the_table = blocker.as_ref().is_some_and(|row| {
        row.get(1).is_some_and(|locked| {
            locked.trim_matches('"').rsplit('.').next() == Some(table.as_str())
        })
    });
    if slow.len() < SLOW_AT_LEAST && !locks_the_table {
        return Ok(None);
    }
    Ok(Some(fault(
        "slow-query",
        "postgres",
        format!(
            "requests wait on Postgres: statements on {table} take up to {slowest:.0} ms{}",
            blocker
                .as_ref()
                .and_then(|r| r.get(4))
                .map_or(String::new(), |q| format!(
                    ", behind a session holding a table lock (`{q}`)"
                ))
        ),
        format!("statements on {table} took up to {slowest:.0} ms"),
        evidence,
    )))
}

/// Every request slow, and the time spent in the server's own code rather
/// than in the database: CPU. The profile names the function.
async fn cpu_hog(
    client: &QueryClient,
    window: Window,
    requests: &[FoundTrace],
) -> Result<Option<Diagnosis>> {
    let newest = &requests[..requests.len().min(BUSY_SAMPLE)];
    if median(newest.iter().filter_map(matched_ms).collect()).is_none_or(|m| m < BUSY_MEDIAN_MS) {
        return Ok(None);
    }
    // Each server span's time minus its own database calls.
    let mut totals = Vec::new();
    let mut outside = Vec::new();
    let mut example = None;
    for trace in requests.iter().take(BREAKDOWN_TRACES) {
        let all = client.trace(&trace.trace_id).await?.spans();
        for server in all
            .iter()
            .filter(|s| s.service == "mythical-server" && s.server)
        {
            let in_db: f64 = all
                .iter()
                .filter(|s| s.parent == server.id)
                .filter(|s| s.attribute("db.operation.name").is_some())
                .map(span_ms)
                .sum();
            let total = span_ms(server);
            totals.push(total);
            outside.push(total - in_db);
            example.get_or_insert((trace.trace_id.clone(), total, in_db));
        }
    }
    let median_ms = median(totals).unwrap_or_default();
    let Some(outside_ms) =
        median(outside).filter(|m| *m >= BUSY_OUTSIDE_MS && *m >= BUSY_SHARE * median_ms)
    else {
        return Ok(None);
    };
    let (trace_id, total, in_db) = example.expect("a median needs a span");
    let mut evidence = vec![Evidence {
        signal: "traces",
        query: SERVER_REQUESTS.into(),
        finding: format!(
            "the median server request takes {median_ms:.0} ms, of which {outside_ms:.0} ms outside the database; e.g. {trace_id}: {total:.0} ms, {in_db:.0} ms in the database"
        ),
        trace_id: Some(trace_id),
    }];
    let (hot, profiled) = own_top(
        client,
        &profile_selector(CPU_PROFILE, "mythical-server"),
        window,
        "hottest functions",
    )
    .await;
    evidence.push(profiled);
    Ok(Some(fault(
        "cpu-hog",
        "mythical-server",
        format!(
            "mythical-server spends {outside_ms:.0} ms of a {median_ms:.0} ms request outside the database: busy on CPU{}",
            hot.first()
                .map_or(String::new(), |(h, _)| format!(" in {h}"))
        ),
        format!("median request {median_ms:.0} ms, {outside_ms:.0} ms of it outside the database"),
        evidence,
    )))
}

/// The server's own functions that cost the most in a profile, with their
/// self cost (highest first), and that as evidence; `what` names them in
/// the finding.
async fn own_top(
    client: &QueryClient,
    profile: &str,
    window: Window,
    what: &str,
) -> (Vec<(String, i64)>, Evidence) {
    let top = client.profile_top(profile, window, 50).await.ok();
    let hot: Vec<(String, i64)> = top
        .iter()
        .flat_map(|t| &t.functions)
        .filter(|f| own_code(&f.name))
        .map(|f| (f.name.clone(), f.self_value))
        .collect();
    let finding = if top.as_ref().is_none_or(|t| t.total == 0) {
        "no profile of the server to read".to_owned()
    } else if hot.is_empty() {
        "the server's profile has none of its own functions among its 50 costliest".to_owned()
    } else {
        format!(
            "the server's {what} of its own: {}",
            hot.iter()
                .take(3)
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    (
        hot,
        Evidence {
            signal: "profiles",
            query: profile.into(),
            finding,
            trace_id: None,
        },
    )
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

/// The server's resident memory climbing, scrape after scrape.
async fn memory_leak(client: &QueryClient, window: Window) -> Result<Option<Diagnosis>> {
    let query = format!(
        r#"process_resident_memory_bytes{{service="mythical-server"}}[{CLIMB_WINDOW_SECONDS}s]"#
    );
    let answer = client.promql_instant(&query, window.end).await?;
    let scrapes: Vec<(f64, f64)> = answer
        .series()
        .first()
        .into_iter()
        .flat_map(|s| &s.values)
        .filter_map(|p| Some((p.nanos as f64 / 1e9, p.number()?)))
        .collect();
    let Some(climb) = Climb::of(&scrapes) else {
        return Ok(None);
    };
    if !climb.may_leak() {
        return Ok(None);
    }
    let recent_heap = Window {
        start: window.end - HELD_WINDOW_SECONDS * 1_000_000_000,
        end: window.end,
    };
    let (holders, profiled) = own_top(
        client,
        &profile_selector(IN_USE_PROFILE, "mythical-server"),
        recent_heap,
        "functions holding the most memory",
    )
    .await;
    let held_mib = holders.first().map_or(0.0, |(_, bytes)| mib(*bytes as f64));
    if !climb.leaks(held_mib) {
        return Ok(None);
    }
    let steps_text = climb
        .steps_mib
        .iter()
        .map(|s| format!("+{s:.1}"))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(Some(fault(
        "memory-leak",
        "mythical-server",
        format!(
            "mythical-server's resident memory climbs scrape after scrape ({steps_text} MiB, {:.1} MiB/s), now {:.0} MiB: it holds memory it never frees{}",
            climb.growth_mib / climb.seconds,
            climb.last_mib,
            holders
                .first()
                .map_or(String::new(), |(h, _)| format!(", kept by {h}"))
        ),
        format!("+{:.1} MiB in {:.0} s", climb.growth_mib, climb.seconds),
        vec![
            Evidence {
                signal: "metrics",
                query,
                finding: format!(
                    "{:.1} MiB → {:.1} MiB over the last {} scrapes ({:.0} s): steps of {steps_text} MiB",
                    climb.last_mib - climb.growth_mib,
                    climb.last_mib,
                    CLIMB_SCRAPES,
                    climb.seconds
                ),
                trace_id: None,
            },
            profiled,
        ],
    )))
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
