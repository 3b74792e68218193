//! Scenarios: an incident a teacher starts with one command — its faults
//! and their timing, the steps that lead a learner from symptom to cause
//! (each with a query and what its result must show), the final question
//! tied to a root cause. One YAML file each; the format is documented in
//! `scenarios/README.md`. Parsing and checking here do no I/O beyond
//! reading the files.

pub mod catalogue;
pub mod check;
pub mod run;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How hard a scenario is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Beginner,
    Intermediate,
    Advanced,
}

/// A query language a step's query is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Traceql,
    Logql,
    Promql,
    Sql,
    /// A profile selector (`process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="…"}`):
    /// the result is its top functions over the window.
    Profile,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Traceql => "TraceQL",
            Language::Logql => "LogQL",
            Language::Promql => "PromQL",
            Language::Sql => "SQL",
            Language::Profile => "profile",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub id: String,
    pub title: String,
    pub level: Level,
    /// For the teacher: what breaks and what the learner should find.
    pub summary: String,
    /// For the learner: the incident as they meet it.
    pub story: String,
    /// Makes the run repeatable (fault rates, jitter).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Where it can run: `native`, `docker` (empty: both).
    #[serde(default)]
    pub runtimes: Vec<String>,
    pub faults: Vec<FaultSpec>,
    pub steps: Vec<Step>,
    pub question: Question,
    pub solution: String,
    #[serde(default)]
    pub cleanup: Cleanup,
}

/// One fault the scenario applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub kind: String,
    /// Fraction of requests hit, for a service's switch.
    #[serde(default)]
    pub rate: Option<f64>,
    /// The component an infrastructure fault acts on.
    #[serde(default)]
    pub target: Option<String>,
    /// How an infrastructure fault acts (pause, stop, kill).
    #[serde(default)]
    pub mode: Option<String>,
    /// Applied this long after the start (`30s`, `2m`).
    #[serde(default)]
    pub after: Option<String>,
    /// Cleared this long after it was applied.
    #[serde(default, rename = "for")]
    pub duration: Option<String>,
    /// A network fault's parameters (`latency_ms: 500`), as `--param`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, ParamValue>,
}

/// One parameter's value: whatever scalar the YAML holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::Bool(b) => write!(f, "{b}"),
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(x) => write!(f, "{x}"),
            ParamValue::Text(t) => f.write_str(t),
        }
    }
}

impl FaultSpec {
    /// The parameters as the fault kinds read them, with the scenario's
    /// seed unless the fault gives its own.
    pub fn params(&self, seed: Option<u64>) -> crate::faults::Params {
        let mut params: crate::faults::Params = self
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        let takes_seed = crate::faults::find(&self.kind).is_some_and(|k| k.toxics.is_some());
        if let Some(seed) = seed
            && takes_seed
        {
            params
                .entry("seed".into())
                .or_insert_with(|| seed.to_string());
        }
        params
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub title: String,
    pub text: String,
    pub query: Query,
    /// What the result must show for the step to pass.
    #[serde(default)]
    pub expect: Expect,
    #[serde(default)]
    pub hints: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    pub language: Language,
    pub text: String,
    /// How far back the query looks (default 5m).
    #[serde(default)]
    pub since: Option<String>,
    /// How far past now the window reaches (default 0), for records
    /// stamped in the future.
    #[serde(default)]
    pub ahead: Option<String>,
}

impl Query {
    /// How far back and how far ahead of now the query looks; the durations
    /// were checked when the scenario was loaded.
    pub fn reach(&self) -> Result<(Duration, Duration), String> {
        let back = match &self.since {
            Some(since) => crate::parse_duration(since)?,
            None => Duration::from_secs(300),
        };
        let ahead = match &self.ahead {
            Some(ahead) => crate::parse_duration(ahead)?,
            None => Duration::ZERO,
        };
        Ok((back, ahead))
    }
}

/// A step passes when every given condition holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// At least this many results: traces, log lines, series or rows.
    #[serde(default = "one")]
    pub min_results: usize,
    /// Some result shows this text (a message, a value, a name).
    #[serde(default)]
    pub contains: Option<String>,
    /// Some series' newest value is above this.
    #[serde(default)]
    pub value_above: Option<f64>,
}

fn one() -> usize {
    1
}

impl Default for Expect {
    fn default() -> Self {
        Expect {
            min_results: 1,
            contains: None,
            value_above: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    pub text: String,
    /// Offered answers; empty for a free answer.
    #[serde(default)]
    pub choices: Vec<String>,
    /// Answers taken as right (compared without case or surrounding space).
    pub accepted: Vec<String>,
    /// The fault kind `lab diagnose` must name.
    pub root_cause: String,
    /// The component at fault.
    pub culprit: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cleanup {
    /// Clear the scenario's faults at stop (default true).
    #[serde(default = "yes")]
    pub clear_faults: bool,
    /// Restore traffic to the original's pacing at stop.
    #[serde(default = "yes")]
    pub resume_traffic: bool,
}

fn yes() -> bool {
    true
}

impl Default for Cleanup {
    fn default() -> Self {
        Cleanup {
            clear_faults: true,
            resume_traffic: true,
        }
    }
}

/// A scenario file that could not be used: where, and what is expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}:{line}:{column}: {message}", path.display())]
pub struct ScenarioError {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// The components a culprit may be.
pub const COMPONENTS: &[&str] = &[
    "postgres",
    "mythical-server",
    "mythical-requester",
    "network",
];

/// Where `needle` first appears in `text` (1-based line and column), to
/// point at a value the YAML parser accepted but the lab cannot use.
fn locate(text: &str, needle: &str) -> (usize, usize) {
    match text.find(needle) {
        Some(at) => {
            let before = &text[..at];
            let line = before.matches('\n').count() + 1;
            let column = at - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            (line, column)
        }
        None => (1, 1),
    }
}

/// Parses and checks one scenario file's text.
pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
    let scenario: Scenario = yaml_serde::from_str(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        ScenarioError {
            path: path.to_owned(),
            line,
            column,
            // The parser's own text ends with its position, given above.
            message: format!(
                "{}; see scenarios/README.md for the format",
                e.to_string().split(" at line ").next().unwrap_or_default()
            ),
        }
    })?;
    let fail = |needle: &str, message: String| {
        let (line, column) = locate(text, needle);
        ScenarioError {
            path: path.to_owned(),
            line,
            column,
            message,
        }
    };
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if scenario.id.is_empty()
        || !scenario
            .id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(fail(
            "id:",
            format!(
                "id `{}` must be lowercase letters, digits and dashes",
                scenario.id
            ),
        ));
    }
    if !stem.is_empty() && stem != scenario.id {
        return Err(fail(
            "id:",
            format!(
                "id `{}` differs from the file's name `{stem}`: name the file {}.yaml",
                scenario.id, scenario.id
            ),
        ));
    }
    for runtime in &scenario.runtimes {
        if crate::state::Runtime::named(runtime).is_none() {
            return Err(fail(
                runtime,
                format!("runtime `{runtime}` is not native or docker"),
            ));
        }
    }
    let kinds = crate::faults::kinds();
    if scenario.faults.is_empty() {
        return Err(fail(
            "faults:",
            "a scenario needs at least one fault".into(),
        ));
    }
    for fault in &scenario.faults {
        if !kinds.contains(&fault.kind.as_str()) {
            return Err(fail(
                &fault.kind,
                format!(
                    "unknown fault kind `{}`; the kinds are {}",
                    fault.kind,
                    kinds.join(", ")
                ),
            ));
        }
        if !fault.params.is_empty() {
            let checked = match crate::faults::find(&fault.kind).and_then(|k| k.toxics) {
                Some(toxics) => toxics(&fault.params(None)).map(|_| ()),
                None => Err(anyhow::anyhow!(
                    "{} takes no params: only the network faults do",
                    fault.kind
                )),
            };
            if let Err(e) = checked {
                return Err(fail("params:", format!("params of {}: {e:#}", fault.kind)));
            }
        }
        if let Some(rate) = fault.rate
            && !(0.0..=1.0).contains(&rate)
        {
            return Err(fail(
                "rate:",
                format!("rate {rate} is out of range: a fraction from 0 to 1"),
            ));
        }
        for (field, value) in [("after", &fault.after), ("for", &fault.duration)] {
            if let Some(value) = value
                && crate::parse_duration(value).is_err()
            {
                return Err(fail(
                    value,
                    format!("{field}: `{value}` is not a duration such as 30s, 2m or 1h"),
                ));
            }
        }
    }
    if scenario.steps.is_empty() {
        return Err(fail("steps:", "a scenario needs at least one step".into()));
    }
    for step in &scenario.steps {
        for (field, value) in [("since", &step.query.since), ("ahead", &step.query.ahead)] {
            if let Some(value) = value
                && crate::parse_duration(value).is_err()
            {
                return Err(fail(
                    value,
                    format!("{field}: `{value}` is not a duration such as 5m"),
                ));
            }
        }
        if step.query.text.trim().is_empty() {
            return Err(fail(
                &step.title,
                format!("step `{}` has an empty query", step.title),
            ));
        }
    }
    let q = &scenario.question;
    if !kinds.contains(&q.root_cause.as_str()) {
        return Err(fail(
            &q.root_cause,
            format!(
                "root_cause `{}` is not a fault kind; the kinds are {}",
                q.root_cause,
                kinds.join(", ")
            ),
        ));
    }
    if !COMPONENTS.contains(&q.culprit.as_str()) {
        return Err(fail(
            &q.culprit,
            format!(
                "culprit `{}` is not a component; say one of {}",
                q.culprit,
                COMPONENTS.join(", ")
            ),
        ));
    }
    if q.accepted.is_empty() {
        return Err(fail(
            "accepted:",
            "the question needs at least one accepted answer".into(),
        ));
    }
    if !q.choices.is_empty() {
        for answer in &q.accepted {
            if !q.choices.iter().any(|c| same_answer(c, answer)) {
                return Err(fail(
                    answer,
                    format!("accepted answer `{answer}` is not among the choices"),
                ));
            }
        }
    }
    Ok(scenario)
}

/// Answers compare without case and surrounding space.
pub fn same_answer(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

impl Scenario {
    /// Whether it can run on this runtime.
    pub fn runs_on(&self, runtime: crate::state::Runtime) -> bool {
        self.runtimes.is_empty() || self.runtimes.iter().any(|r| r == runtime.as_str())
    }

    /// Whether `answer` (a choice's text or its number from 1) is right.
    pub fn accepts(&self, answer: &str) -> bool {
        let q = &self.question;
        let chosen = answer
            .trim()
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| q.choices.get(i))
            .map_or(answer, String::as_str);
        q.accepted.iter().any(|a| same_answer(a, chosen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
id: sample
title: A sample
level: beginner
summary: teacher's words
story: learner's words
faults:
  - kind: null-name
    rate: 1
steps:
  - title: Errors
    text: Look at the errors.
    query:
      language: promql
      text: sum(rate(mythical_request_times_count{status="500"}[1m]))
    expect:
      value_above: 0
question:
  text: Who?
  choices: [mythical-server, mythical-requester]
  accepted: [mythical-server]
  root_cause: null-name
  culprit: mythical-server
solution: The server drops the name.
"#;

    #[test]
    fn a_good_file_parses_and_checks_answers() {
        let s = parse(Path::new("scenarios/sample.yaml"), GOOD).unwrap();
        assert_eq!(s.steps[0].expect.min_results, 1);
        assert!(s.accepts("Mythical-Server "));
        assert!(s.accepts("1"));
        assert!(!s.accepts("2"));
        assert!(!s.accepts("postgres"));
    }

    #[test]
    fn a_bad_file_says_where_and_what_is_expected() {
        let path = Path::new("scenarios/sample.yaml");
        let err = parse(path, &GOOD.replace("kind: null-name", "kind: nul-name")).unwrap_err();
        assert_eq!((err.line, err.column), (8, 11), "{err}");
        assert!(err.to_string().contains("unknown fault kind `nul-name`"));

        let err = parse(path, &GOOD.replace("level: beginner", "level: expert")).unwrap_err();
        assert_eq!(err.line, 4, "{err}");
        assert!(err.message.contains("beginner"), "{err}");

        let err = parse(
            path,
            &GOOD.replace("  culprit: mythical-server", "  culprit: the-server"),
        )
        .unwrap_err();
        assert!(err.message.contains("not a component"), "{err}");

        let err = parse(path, &GOOD.replace("steps:", "stepz:")).unwrap_err();
        assert!(err.message.contains("stepz"), "{err}");

        let err = parse(Path::new("scenarios/other.yaml"), GOOD).unwrap_err();
        assert!(err.message.contains("name the file sample.yaml"), "{err}");

        let late = "[1m]))\n      ahead: soon";
        let err = parse(path, &GOOD.replace("[1m]))", late)).unwrap_err();
        assert_eq!(err.line, 16, "{err}");
        assert!(err.message.contains("ahead: `soon`"), "{err}");
    }

    #[test]
    fn a_step_reaches_back_and_ahead_of_now() {
        let path = Path::new("scenarios/sample.yaml");
        let s = parse(path, GOOD).unwrap();
        assert_eq!(
            s.steps[0].query.reach().unwrap(),
            (Duration::from_secs(300), Duration::ZERO)
        );
        let future = GOOD.replace("[1m]))", "[1m]))\n      since: 0s\n      ahead: 15m");
        let s = parse(path, &future).unwrap();
        assert_eq!(
            s.steps[0].query.reach().unwrap(),
            (Duration::ZERO, Duration::from_secs(900))
        );
    }

    #[test]
    fn network_params_are_checked_and_carry_the_seed() {
        let path = Path::new("scenarios/sample.yaml");
        let network = GOOD.replace(
            "  - kind: null-name\n    rate: 1",
            "  - kind: network-latency\n    params:\n      latency_ms: 500\n      direction: upstream",
        );
        let scenario = parse(path, &network).unwrap();
        let params = scenario.faults[0].params(Some(9));
        assert_eq!(params["latency_ms"], "500");
        assert_eq!(params["direction"], "upstream");
        assert_eq!(params["seed"], "9");

        let typo = network.replace("latency_ms: 500", "latency: 500");
        let err = parse(path, &typo).unwrap_err();
        assert!(err.message.contains("no parameter `latency`"), "{err}");

        let switch = GOOD.replace("    rate: 1", "    params:\n      latency_ms: 5");
        let err = parse(path, &switch).unwrap_err();
        assert!(err.message.contains("null-name takes no params"), "{err}");
    }
}
