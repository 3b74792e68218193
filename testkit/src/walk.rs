//! One scenario walked on a fresh live lab through the `lab` binary, as a
//! teacher and a learner would: the lab reads healthy → start → `lab
//! diagnose`, with the window a learner gets, until its first verdict that
//! names a cause, which must be the scenario's (timed from the start) →
//! every guide step checked → the right answer accepted, a wrong one
//! refused → stop → the lab healthy again. The scenario test asserts on
//! the outcome; the scenario benchmark prints it as a table.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Runs the lab binary against one state folder.
pub struct LabCli {
    pub binary: PathBuf,
    pub state: PathBuf,
    /// Extra environment, e.g. image overrides for the docker runtime.
    pub env: Vec<(String, String)>,
}

impl LabCli {
    pub fn new(binary: impl Into<PathBuf>, state: impl Into<PathBuf>) -> LabCli {
        LabCli {
            binary: binary.into(),
            state: state.into(),
            env: Vec::new(),
        }
    }

    pub fn with_env(mut self, key: &str, value: &str) -> LabCli {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.binary)
            .arg("--state-dir")
            .arg(&self.state)
            .args(args)
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("the lab binary runs")
    }

    /// Runs and requires success; answers stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "lab {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A component of `lab status --json` by name.
    pub fn component(&self, name: &str) -> Value {
        let status: Value =
            serde_json::from_str(&self.ok(&["status", "--json"])).expect("status --json is JSON");
        status["components"]
            .as_array()
            .and_then(|list| list.iter().find(|c| c["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("the lab has no {name}: {status:#}"))
    }

    /// Runs `sql` with psql on the lab's Postgres as its owner, from
    /// outside every service; answers its unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        let url = self.component("postgres")["endpoints"]["postgres"]
            .as_str()
            .expect("postgres has an endpoint")
            .to_owned();
        let bindir = mythical_storage::binaries::find_bindir().expect("Postgres' binaries");
        let out = Command::new(bindir.join("psql"))
            .args(["-At", "-v", "ON_ERROR_STOP=1", "-d", &url, "-c", sql])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Polls `lab diagnose --json --since <since>` until `done` holds;
    /// the last report either way.
    pub fn diagnose_until(
        &self,
        since: impl Fn() -> String,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Result<Value, Value> {
        let deadline = Instant::now() + within;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            let since = since();
            let out = self.run(&["diagnose", "--json", "--since", &since]);
            if let Ok(report) = serde_json::from_slice::<Value>(&out.stdout) {
                if done(&report) {
                    return Ok(report);
                }
                last = report;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        Err(last)
    }

    /// Polls `lab diagnose --json` with its default window until a report
    /// names a root cause: the first verdict a learner would read. A
    /// report of a fault whose cause is not named yet is still looking,
    /// not a verdict. `Err` carries the last report when none named one
    /// within `within`.
    pub fn first_verdict(&self, within: Duration) -> Result<Value, Value> {
        self.first_verdict_of(&[], within)
    }

    /// [`first_verdict`](Self::first_verdict) over only what happened
    /// since `began`, in whole seconds that never reach before it: a fault
    /// injected after another is judged without the first one's traces.
    pub fn first_verdict_since(&self, began: Instant, within: Duration) -> Result<Value, Value> {
        let deadline = Instant::now() + within;
        let mut last = Value::Null;
        loop {
            let secs = began.elapsed().as_secs();
            if secs > 0 {
                let since = format!("{secs}s");
                match self.first_verdict_of(&["--since", &since], Duration::ZERO) {
                    Ok(report) => return Ok(report),
                    Err(report) => last = report,
                }
            }
            if Instant::now() >= deadline {
                return Err(last);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// One `lab diagnose --json <extra>` at least, then more until one
    /// names a cause or `within` has passed.
    fn first_verdict_of(&self, extra: &[&str], within: Duration) -> Result<Value, Value> {
        let deadline = Instant::now() + within;
        let args = [&["diagnose", "--json"][..], extra].concat();
        loop {
            let out = self.run(&args);
            let report = serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null);
            if report["root_cause"].is_object() {
                return Ok(report);
            }
            if Instant::now() >= deadline {
                return Err(report);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The scenarios of the catalogue that run on `runtime`.
    pub fn scenarios_for(&self, runtime: &str) -> Vec<Value> {
        let list: Value = serde_json::from_str(&self.ok(&["scenario", "list", "--json"]))
            .expect("scenario list --json is JSON");
        list.as_array()
            .expect("a list")
            .iter()
            .filter(|s| {
                s["runtimes"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r == runtime))
            })
            .cloned()
            .collect()
    }
}

/// What one scenario's walk found.
#[derive(Debug)]
pub struct Walk {
    pub id: String,
    pub root_cause: String,
    pub culprit: String,
    /// `lab diagnose`'s first verdict named the root cause, within the
    /// patience.
    pub diagnosed: bool,
    /// …and blamed the scenario's culprit.
    pub culprit_right: bool,
    /// Seconds from `lab scenario start` to the correct diagnosis.
    pub seconds: Option<f64>,
    /// Everything that went wrong, in words.
    pub failures: Vec<String>,
}

/// Takes the lab down with its data, brings it up again with `up` (the
/// arguments after `lab up`) and walks `scenario` on it: each scenario
/// starts from a lab with no history, so the first verdict is judged with
/// the learner's default window and nothing of the scenario before.
pub fn walk_fresh(
    lab: &LabCli,
    up: &[&str],
    scenario: &Value,
    guide: bool,
    patience: Duration,
) -> Walk {
    lab.ok(&["down", "--volumes"]);
    let mut args = vec!["up"];
    args.extend_from_slice(up);
    lab.ok(&args);
    walk(lab, scenario, guide, patience)
}

/// Walks `scenario` (an entry of `lab scenario list --json`) on a lab that
/// is up and has no failures in the last minute; `guide` false skips the
/// guide's checks and answers (the benchmark times the diagnosis only).
pub fn walk(lab: &LabCli, scenario: &Value, guide: bool, patience: Duration) -> Walk {
    let text = |key: &str| scenario[key].as_str().unwrap_or_default().to_owned();
    let (id, root_cause, culprit) = (text("id"), text("root_cause"), text("culprit"));
    let mut failures = Vec::new();

    // Before anything is broken, the learner's diagnosis reads healthy.
    if let Err(last) = lab.diagnose_until(
        || "60s".to_owned(),
        Duration::from_secs(30),
        |r| r["status"] == "healthy",
    ) {
        failures.push(format!(
            "{id}: the lab did not read healthy before the scenario; last: {last:#}"
        ));
    }
    let started = Instant::now();
    lab.ok(&["scenario", "start", &id]);

    // Strict: the first verdict that names a cause is the one judged; a
    // wrong cause on the way to the right one fails the walk.
    let (diagnosed, culprit_right, seconds) = match lab.first_verdict(patience) {
        Ok(report) => {
            let seconds = started.elapsed().as_secs_f64();
            let named = &report["root_cause"];
            let diagnosed = named["id"] == root_cause.as_str();
            let culprit_right = diagnosed && named["service"] == culprit.as_str();
            if !diagnosed {
                failures.push(format!(
                    "{id}: the first verdict, after {seconds:.1} s, was {} (culprit {}) instead of {root_cause}: {report:#}",
                    named["id"], named["service"]
                ));
            } else if !culprit_right {
                failures.push(format!(
                    "{id}: diagnosed culprit {} instead of {culprit}",
                    named["service"]
                ));
            }
            (diagnosed, culprit_right, diagnosed.then_some(seconds))
        }
        Err(last) => {
            failures.push(format!(
                "{id}: no verdict within {} s; last: {last:#}",
                patience.as_secs()
            ));
            (false, false, None)
        }
    };

    if guide {
        let check = lab.run(&["guide", &id, "--check", "--patience", "60s"]);
        if !check.status.success() {
            failures.push(format!(
                "{id}: guide --check failed:\n{}{}",
                String::from_utf8_lossy(&check.stdout),
                String::from_utf8_lossy(&check.stderr)
            ));
        }
        let show = lab.ok(&["scenario", "show", &id, "--solution"]);
        if !show.contains(&root_cause) {
            failures.push(format!("{id}: show --solution omits {root_cause}"));
        }
        let full: Value =
            serde_json::from_str(&lab.ok(&["scenario", "show", &id, "--solution", "--json"]))
                .expect("scenario show --json is JSON");
        let right = full["question"]["accepted"][0]
            .as_str()
            .unwrap_or(&culprit)
            .to_owned();
        let wrong = if culprit == "postgres" {
            "mythical-requester"
        } else {
            "postgres"
        };
        if lab.run(&["guide", &id, "--answer", wrong]).status.success() {
            failures.push(format!("{id}: the wrong answer {wrong} was accepted"));
        }
        if !lab
            .run(&["guide", &id, "--answer", &right])
            .status
            .success()
        {
            failures.push(format!("{id}: the right answer {right} was refused"));
        }
    }

    lab.ok(&["scenario", "stop"]);
    let stopped = Instant::now();
    // Every component healthy again within 30 s (a pool gives back its
    // leaked connections on the next request, a thawed Postgres takes
    // its connections back).
    loop {
        let status: Value =
            serde_json::from_str(&lab.ok(&["status", "--json"])).expect("status --json is JSON");
        let unhealthy: Vec<Value> = status["components"]
            .as_array()
            .map(|c| {
                c.iter()
                    .filter(|c| c["health"] != "healthy")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if unhealthy.is_empty() {
            break;
        }
        if stopped.elapsed() > Duration::from_secs(30) {
            failures.push(format!("{id}: unhealthy 30 s after stop: {unhealthy:?}"));
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // Healthy again: judged on what happened since the stop.
    let since_stop = || format!("{}s", stopped.elapsed().as_secs().clamp(5, 10));
    if let Err(last) = lab.diagnose_until(since_stop, Duration::from_secs(45), |r| {
        r["status"] == "healthy" && stopped.elapsed() >= Duration::from_secs(5)
    }) {
        failures.push(format!("{id}: not healthy after stop; last: {last:#}"));
    }
    Walk {
        id,
        root_cause,
        culprit,
        diagnosed,
        culprit_right,
        seconds,
        failures,
    }
}

/// Takes the lab down when dropped, even when a test fails.
pub struct Down<'a>(pub &'a LabCli);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["down", "--volumes"]);
    }
}
