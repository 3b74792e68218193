//! Every scenario of the catalogue, each on a fresh native lab: is the
//! first verdict of `lab diagnose` (its default window) right, is the
//! culprit right, and how many seconds from `lab scenario start` to it. Prints its section of BENCHMARKS.md
//! (and writes it under `BENCH_RESULTS` when set, for `scripts/bench`).
//!
//! cargo bench -p lab --bench scenarios

use std::time::Duration;

use lab_testkit::{Down, Goal, LabCli, Section, walk_fresh};

/// How long a scenario may take to be diagnosed at most.
const PATIENCE: Duration = Duration::from_secs(60);
/// The goal for a diagnosis, from the scenario's start.
const GOAL_SECONDS: f64 = 10.0;

fn main() {
    let mut section = Section::new("scenarios");
    let dir = tempfile::tempdir().unwrap();
    let lab = LabCli::new(env!("CARGO_BIN_EXE_lab"), dir.path().join("lab"));
    let _down = Down(&lab);

    section.table(&[
        "scenario",
        "root cause",
        "diagnosed right",
        "culprit right",
        "seconds from start",
    ]);
    let yes = |b: bool| if b { "yes" } else { "**no**" };
    let mut walks = Vec::new();
    for scenario in lab.scenarios_for("native") {
        let walked = walk_fresh(&lab, &["--runtime", "native"], &scenario, false, PATIENCE);
        section.row([
            walked.id.as_str(),
            walked.root_cause.as_str(),
            yes(walked.diagnosed),
            yes(walked.culprit_right),
            &walked.seconds.map_or("—".to_owned(), |s| format!("{s:.1}")),
        ]);
        for failure in &walked.failures {
            eprintln!("{failure}");
        }
        walks.push(walked);
    }

    let all = walks.len();
    let right = walks
        .iter()
        .filter(|w| w.diagnosed && w.culprit_right)
        .count();
    let slow: Vec<String> = walks
        .iter()
        .filter(|w| w.seconds.is_none_or(|s| s > GOAL_SECONDS))
        .map(|w| match w.seconds {
            Some(s) => format!("{} {s:.1} s", w.id),
            None => format!("{} not within {} s", w.id, PATIENCE.as_secs()),
        })
        .collect();
    let tally = |count: usize, label: &str, misses: &[String]| {
        if misses.is_empty() {
            format!("{count} of {all}")
        } else {
            format!("{count} of {all}; {label}: {}", misses.join(", "))
        }
    };
    let wrong: Vec<String> = walks
        .iter()
        .filter(|w| !(w.diagnosed && w.culprit_right))
        .map(|w| w.id.clone())
        .collect();
    section.goals(&[
        Goal::new(
            "every scenario diagnosed right, with the right culprit",
            right == all,
            tally(right, "wrong", &wrong),
        ),
        Goal::new(
            format!("diagnosed within {GOAL_SECONDS:.0} s of the start"),
            slow.is_empty(),
            tally(all - slow.len(), "slower", &slow),
        ),
    ]);
    section.finish();
}
