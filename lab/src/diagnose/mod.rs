//! `lab diagnose`: from the telemetry, the runtime and the database
//! alone, as an engineer would. [`gather`] reads one evidence
//! [`Snapshot`] (the components' conditions, the failing and the slow
//! calls, the error rates, the failing trace's spans and log lines, the
//! profiles, Postgres' catalogue and sessions); [`judge`], a pure
//! function, runs the detectors over it in rank order: a component down,
//! the network, the failing-request chain and its [`rules`], then the
//! faults that fail nothing. Each detector ranked above the verdict says
//! why it was not the cause. `LAB_EVIDENCE_DIR` keeps each snapshot
//! judged, so a live lab's can be committed and judged again offline.

mod failure;
mod infrastructure;
mod network;
mod quiet;
mod rules;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::plan::Kind;
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
    /// The causes ranked above the verdict (all of them, when none is
    /// named), each with why the evidence rules it out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<Rejected>,
}

impl Diagnosis {
    /// A fault with its cause named, and the evidence it rests on.
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
            rejected: Vec::new(),
        }
    }
}

/// A detector: the fault it names on a snapshot, or why the snapshot rules
/// it out.
type Detector<S> = fn(&S) -> Result<Diagnosis, String>;

/// The first of `detectors`, in rank order, that names a fault on
/// `snapshot`; those ranked above it (all of them, when none does) say in
/// `rejected` why not.
fn first_found<S>(
    detectors: &[(&'static str, Detector<S>)],
    snapshot: &S,
    rejected: &mut Vec<Rejected>,
) -> Option<Diagnosis> {
    for (id, detect) in detectors {
        match detect(snapshot) {
            Ok(found) => return Some(found),
            Err(why) => rejected.push(Rejected {
                id: (*id).into(),
                why,
            }),
        }
    }
    None
}

/// Every one of `detectors` that names a fault on `snapshot`, whatever its
/// rank: what the fixture tests hold to exactly one, or none on a healthy
/// lab.
#[cfg(test)]
fn firing<S>(detectors: &[(&'static str, Detector<S>)], snapshot: &S) -> Vec<&'static str> {
    detectors
        .iter()
        .filter(|(_, detect)| detect(snapshot).is_ok())
        .map(|(id, _)| *id)
        .collect()
}

/// A cause the evidence rules out, and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Rejected {
    pub id: String,
    pub why: String,
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
    /// For a repeated name: the table's fill and its POSTs' failures.
    pub collisions: Option<failure::Collisions>,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentHealth {
    pub kind: Kind,
    pub health: Condition,
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

/// Everything one diagnosis read, in one value: what [`judge`] decides on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When it was taken, in Unix nanoseconds.
    pub taken_at: i64,
    pub lookback_secs: u64,
    /// The runtime's view of each component.
    pub components: Vec<ComponentHealth>,
    /// What a component down does to the rest; `None` when all are up
    /// (and then nothing else is read).
    pub infrastructure: Option<infrastructure::Snapshot>,
    #[serde(default)]
    pub network: network::Snapshot,
    /// The share of requests that failed in the last minute.
    #[serde(default)]
    pub failing_share: f64,
    /// The 5xx rates and failing traces, and, when they are more than the
    /// background, the newest whole one and what its error calls for.
    pub failure: failure::Snapshot,
    /// What the faults that fail nothing show, when requests do not fail
    /// (or hardly).
    pub quiet: Option<quiet::Snapshot>,
}

/// The share of failing requests over the last minute.
const SHARE_QUERY: &str = r#"sum(rate(mythical_request_times_count{status=~"5.."}[1m])) / sum(rate(mythical_request_times_count[1m]))"#;

/// The original's names repeat now and then, and the unique constraint
/// refuses a repeat: a trickle of errors is the system's background, not
/// a fault.
fn background(failing_traces: usize, share: f64) -> bool {
    failing_traces < BACKGROUND_TRACES && share < BACKGROUND_SHARE
}

/// Reads the snapshot: what the components' conditions call for, the
/// network's signs, the rates and the failing traces, then the failing
/// chain or the quiet faults' signs, whichever the failures call for.
pub async fn gather(
    client: &QueryClient,
    postgres_port: Option<u16>,
    components: &[ComponentHealth],
    lookback: std::time::Duration,
) -> Result<Snapshot> {
    let now = lab_backend::params::now_nanos();
    let window = Window {
        start: now - lookback.as_nanos() as i64,
        end: now + 1_000_000_000,
    };
    let mut snapshot = Snapshot {
        taken_at: now,
        lookback_secs: lookback.as_secs(),
        components: components.to_vec(),
        infrastructure: infrastructure::gather(client, postgres_port, components, window).await?,
        network: network::Snapshot::default(),
        failing_share: 0.0,
        failure: failure::Snapshot::empty(lookback.as_secs(), now),
        quiet: None,
    };
    if snapshot.infrastructure.is_some() {
        return Ok(snapshot);
    }
    snapshot.network = network::gather(client, postgres_port, window).await?;
    let rates = client.promql_instant(failure::RATE_QUERY, now).await?;
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
    let found = client.traceql(failure::FAILING_QUERY, window, 500).await?;
    let failing_traces: Vec<(String, i64)> = found
        .traces
        .iter()
        .map(|t| (t.trace_id.clone(), t.start_time_unix_nano))
        .collect();
    snapshot.failing_share = client
        .promql_instant(SHARE_QUERY, now)
        .await?
        .first_value()
        .filter(|v| v.is_finite())
        .unwrap_or(0.0);
    // Hardly any request fails (or none of late): the faults that fail
    // nothing may be what is wrong, whatever the few failures turn out
    // to be.
    let failures_are_few =
        failing_traces.is_empty() || background(failing_traces.len(), snapshot.failing_share);
    if failures_are_few || snapshot.failing_share < BACKGROUND_SHARE {
        snapshot.quiet = Some(quiet::gather(client, postgres_port, window, now).await?);
    }
    if failures_are_few {
        snapshot.failure.failing_beasts = failing_beasts;
        snapshot.failure.failing_traces = failing_traces;
    } else {
        snapshot.failure = failure::gather(
            client,
            postgres_port,
            window,
            lookback.as_secs(),
            failing_beasts,
            failing_traces,
        )
        .await?;
    }
    Ok(snapshot)
}

/// The verdict on a snapshot: the first detector, in rank order, that
/// names a cause, with the evidence it rests on and why each one ranked
/// above it does not apply.
pub fn judge(snapshot: &Snapshot) -> Diagnosis {
    let mut rejected = Vec::new();
    if let Some(down) = &snapshot.infrastructure {
        return infrastructure::judge(down, &snapshot.components);
    }
    rejected.push(infrastructure::rejected(&snapshot.components));
    let with_rejected = |mut diagnosis: Diagnosis, mut rejected: Vec<Rejected>| {
        rejected.append(&mut diagnosis.rejected);
        diagnosis.rejected = rejected;
        diagnosis
    };
    if let Some(found) = network::judge(&snapshot.network, &mut rejected) {
        return with_rejected(found, rejected);
    }
    let failing = &snapshot.failure.failing_traces;
    let share = snapshot.failing_share;
    // What the failing chain finds chance (names taken by chance) leaves
    // the quiet faults to judge.
    let mut chance = None;
    if !failing.is_empty() && !background(failing.len(), share) {
        let verdict = failure::judge(&snapshot.failure);
        if verdict.status != "healthy" {
            return with_rejected(verdict, rejected);
        }
        rejected.extend(verdict.rejected);
        chance = Some(verdict.evidence);
    }
    // Requests do not fail, or hardly: what is left are the faults that
    // fail nothing.
    if let Some(found) = snapshot
        .quiet
        .as_ref()
        .and_then(|quiet| quiet::judge(quiet, &mut rejected))
    {
        return with_rejected(found, rejected);
    }
    let evidence = if let Some(evidence) = chance {
        evidence
    } else if failing.is_empty() {
        vec![
            Evidence {
                signal: "metrics",
                query: failure::RATE_QUERY.into(),
                finding: if snapshot.failure.failing_beasts.is_empty() {
                    "no 5xx responses in the last 2 minutes".into()
                } else {
                    "5xx responses earlier in the last 2 minutes, none since the window began"
                        .into()
                },
                trace_id: None,
            },
            Evidence {
                signal: "traces",
                query: failure::FAILING_QUERY.into(),
                finding: format!(
                    "no failing database span in the last {} s",
                    snapshot.lookback_secs
                ),
                trace_id: None,
            },
        ]
    } else {
        vec![Evidence {
            signal: "metrics",
            query: SHARE_QUERY.into(),
            finding: format!(
                "{:.1}% of requests failed in the last minute ({} failing traces): below the {:.0}% a fault shows, the background of repeated names",
                share * 100.0,
                failing.len(),
                BACKGROUND_SHARE * 100.0
            ),
            trace_id: None,
        }]
    };
    Diagnosis {
        status: "healthy",
        root_cause: None,
        evidence,
        rejected,
    }
}

/// Runs the whole chain against the lab's backend and Postgres: gathers,
/// judges, and keeps the snapshot when asked to.
pub async fn diagnose(
    client: &QueryClient,
    postgres_port: Option<u16>,
    components: &[ComponentHealth],
    lookback: std::time::Duration,
) -> Result<Diagnosis> {
    let snapshot = gather(client, postgres_port, components, lookback).await?;
    let verdict = judge(&snapshot);
    keep(&snapshot, &verdict);
    Ok(verdict)
}

/// Keeps the snapshot in `LAB_EVIDENCE_DIR`, when set, as
/// `<verdict>-<unix nanos>.json`: how fixtures are captured from a live
/// lab. A folder that cannot be written is said on stderr and skipped.
fn keep(snapshot: &Snapshot, verdict: &Diagnosis) {
    let Some(dir) = std::env::var_os("LAB_EVIDENCE_DIR") else {
        return;
    };
    let name = verdict
        .root_cause
        .as_ref()
        .map_or(verdict.status, |c| c.id.as_str());
    let path = std::path::Path::new(&dir).join(format!("{name}-{}.json", snapshot.taken_at));
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        let text = serde_json::to_string_pretty(snapshot).map_err(std::io::Error::other)?;
        std::fs::write(&path, text)
    });
    if let Err(e) = written {
        eprintln!("LAB_EVIDENCE_DIR: cannot write {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot captured from a live native lab (`LAB_EVIDENCE_DIR`,
    /// `scripts/capture-evidence`), with the verdict it must get.
    #[derive(Deserialize)]
    struct Fixture {
        /// The verdict's cause and culprit; `None`: healthy.
        expected: Option<Expected>,
        /// Detectors ranked below the verdict that rightly fire too.
        #[serde(default)]
        also_firing: Vec<String>,
        snapshot: Snapshot,
    }

    #[derive(Deserialize)]
    struct Expected {
        id: String,
        culprit: String,
    }

    /// Every capture of `tests/fixtures/diagnosis/`, by name: one per
    /// scenario, healthy labs, faults from outside the lab's switches.
    fn fixtures() -> Vec<(String, Fixture)> {
        let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/diagnosis");
        let mut all: Vec<(String, Fixture)> = std::fs::read_dir(folder)
            .unwrap_or_else(|e| panic!("{folder}: {e}"))
            .map(|entry| {
                let path = entry.unwrap().path();
                let name = path.file_stem().unwrap().to_string_lossy().into_owned();
                let text = std::fs::read_to_string(&path).unwrap();
                let fixture = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                (name, fixture)
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        assert!(all.len() >= 17, "{} captures", all.len());
        all
    }

    #[test]
    fn every_captured_lab_gets_exactly_its_verdict() {
        for (name, fixture) in fixtures() {
            let verdict = judge(&fixture.snapshot);
            let got = verdict
                .root_cause
                .as_ref()
                .map(|c| (c.id.as_str(), c.service.as_str()));
            let expected = fixture
                .expected
                .as_ref()
                .map(|e| (e.id.as_str(), e.culprit.as_str()));
            assert_eq!(got, expected, "{name}: {verdict:#?}");
            let status = if expected.is_some() {
                "fault"
            } else {
                "healthy"
            };
            assert_eq!(verdict.status, status, "{name}");
        }
    }

    #[test]
    fn no_other_quiet_or_network_detector_fires_on_any_capture() {
        for (name, fixture) in fixtures() {
            let snapshot = &fixture.snapshot;
            let mut fired = firing(&network::DETECTORS, &snapshot.network);
            if let Some(quiet) = &snapshot.quiet {
                fired.extend(firing(&quiet::DETECTORS, quiet));
            }
            fired.retain(|id| !fixture.also_firing.iter().any(|also| also == id));
            let own: Vec<&str> = fixture
                .expected
                .iter()
                .map(|e| e.id.as_str())
                .filter(|id| fired.contains(id))
                .collect();
            assert_eq!(fired, own, "{name}: detectors beside its own fired");
        }
    }

    #[test]
    fn a_healthy_verdict_says_why_each_cause_is_ruled_out() {
        for (name, fixture) in fixtures() {
            if fixture.expected.is_some() {
                continue;
            }
            let verdict = judge(&fixture.snapshot);
            let ids: Vec<&str> = verdict.rejected.iter().map(|r| r.id.as_str()).collect();
            for id in [
                "component-down",
                "connection-reset",
                "network-latency",
                "slow-query",
                "cpu-hog",
                "memory-leak",
            ] {
                assert!(ids.contains(&id), "{name}: {id} not ruled out: {ids:?}");
            }
            assert!(verdict.rejected.iter().all(|r| !r.why.is_empty()), "{name}");
        }
    }

    #[test]
    fn the_failure_captures_judged_whole_get_the_same_verdict() {
        // A snapshot of the failing chain alone, inside a lab whose
        // components are up and whose network is well.
        let whole = |failure: failure::Snapshot| Snapshot {
            taken_at: failure.taken_at,
            lookback_secs: failure.lookback_secs,
            components: Kind::ALL[..5]
                .iter()
                .map(|&kind| ComponentHealth {
                    kind,
                    health: Condition::Healthy,
                })
                .collect(),
            infrastructure: None,
            network: network::Snapshot::default(),
            failing_share: 0.5,
            failure,
            quiet: None,
        };
        for (name, text, _) in failure::tests::FIXTURES {
            let part: failure::Snapshot = serde_json::from_str(text).unwrap();
            let alone = failure::judge(&part);
            let judged = judge(&whole(part));
            assert_eq!(judged.root_cause, alone.root_cause, "{name}");
            assert_eq!(judged.evidence, alone.evidence, "{name}");
        }
    }
}
