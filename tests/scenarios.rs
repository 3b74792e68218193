//! Every scenario of the catalogue on a live native lab, as a teacher and
//! a learner would run it, each on a fresh lab: healthy → start → the
//! first verdict of `lab diagnose` (its default window) names the
//! scenario's root cause and culprit → every step's check passes → the
//! right answer is accepted and a wrong one refused → stop → the lab is
//! healthy again. (Docker-only scenarios run in the docker tests.)

use std::time::Duration;

use lab_testkit::{Down, LabCli, walk_fresh};

#[test]
fn every_native_scenario_is_guided_answered_diagnosed_and_undone() {
    let dir = tempfile::tempdir().unwrap();
    let lab = LabCli::new(env!("CARGO_BIN_EXE_lab"), dir.path().join("lab"));
    let _down = Down(&lab);

    let scenarios = lab.scenarios_for("native");
    assert!(scenarios.len() >= 12, "{scenarios:#?}");
    let mut failures = Vec::new();
    for scenario in &scenarios {
        let walked = walk_fresh(
            &lab,
            &["--runtime", "native"],
            scenario,
            true,
            Duration::from_secs(60),
        );
        eprintln!(
            "{}: diagnosed {} after {:?} s",
            walked.id, walked.diagnosed, walked.seconds
        );
        failures.extend(walked.failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
