//! Every scenario of the catalogue on a live native lab, as a teacher and
//! a learner would run it: start → every step's check passes → the right
//! answer is accepted and a wrong one refused → `lab diagnose` names the
//! scenario's root cause and culprit → stop → the lab is healthy again.
//! (Docker-only scenarios run in the docker tests.)

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

fn lab(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lab"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("the lab binary runs")
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = lab(&self.0, &["down", "--volumes"]);
    }
}

/// Polls `lab diagnose --json` (over `since`) until `done` holds.
fn diagnose_until(
    state: &Path,
    since: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Result<Value, Value> {
    let deadline = Instant::now() + within;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        let out = lab(state, &["diagnose", "--json", "--since", since]);
        if let Ok(report) = serde_json::from_slice::<Value>(&out.stdout) {
            if done(&report) {
                return Ok(report);
            }
            last = report;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Err(last)
}

#[test]
fn every_native_scenario_is_guided_answered_diagnosed_and_undone() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("lab");
    let _cleanup = Cleanup(state.clone());
    ok(&lab(&state, &["up", "--runtime", "native"]), "lab up");

    let list: Value =
        serde_json::from_str(&ok(&lab(&state, &["scenario", "list", "--json"]), "list")).unwrap();
    let scenarios: Vec<Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            s["runtimes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r == "native")
        })
        .cloned()
        .collect();
    assert!(scenarios.len() >= 3, "{list:#}");

    let mut failures = Vec::new();
    for scenario in &scenarios {
        let id = scenario["id"].as_str().unwrap();
        let root_cause = scenario["root_cause"].as_str().unwrap();
        let culprit = scenario["culprit"].as_str().unwrap();
        let started = Instant::now();
        ok(
            &lab(&state, &["scenario", "start", id]),
            &format!("start {id}"),
        );

        let check = lab(&state, &["guide", id, "--check", "--patience", "60s"]);
        if !check.status.success() {
            failures.push(format!(
                "{id}: guide --check failed:\n{}",
                String::from_utf8_lossy(&check.stdout)
            ));
        }

        let show = ok(
            &lab(&state, &["scenario", "show", id, "--solution"]),
            "show",
        );
        assert!(show.contains(root_cause), "{show}");
        let wrong = if culprit == "postgres" {
            "mythical-requester"
        } else {
            "postgres"
        };
        let refused = lab(&state, &["guide", id, "--answer", wrong]);
        if refused.status.success() {
            failures.push(format!("{id}: the wrong answer {wrong} was accepted"));
        }
        let accepted = lab(&state, &["guide", id, "--answer", culprit]);
        if !accepted.status.success() {
            failures.push(format!("{id}: the right answer {culprit} was refused"));
        }

        match diagnose_until(&state, "60s", Duration::from_secs(60), |r| {
            r["root_cause"]["id"] == root_cause
        }) {
            Ok(report) => {
                if report["root_cause"]["service"] != culprit {
                    failures.push(format!(
                        "{id}: diagnosed culprit {} instead of {culprit}",
                        report["root_cause"]["service"]
                    ));
                }
                eprintln!(
                    "{id}: diagnosed {root_cause} {:.1} s after start",
                    started.elapsed().as_secs_f64()
                );
            }
            Err(last) => failures.push(format!(
                "{id}: no {root_cause} diagnosis within 60 s; last: {last:#}"
            )),
        }

        ok(&lab(&state, &["scenario", "stop"]), &format!("stop {id}"));
        let status: Value =
            serde_json::from_str(&ok(&lab(&state, &["status", "--json"]), "status")).unwrap();
        let unhealthy: Vec<&Value> = status["components"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["health"] != "healthy")
            .collect();
        if !unhealthy.is_empty() {
            failures.push(format!("{id}: unhealthy after stop: {unhealthy:?}"));
        }
        if let Err(last) = diagnose_until(&state, "10s", Duration::from_secs(45), |r| {
            r["status"] == "healthy"
        }) {
            failures.push(format!("{id}: not healthy after stop; last: {last:#}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
