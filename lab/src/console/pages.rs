//! The console's own pages: the lab (components, traffic, faults), the
//! scenario catalogue, the guide (the same progress file as `lab guide`)
//! and `lab diagnose`'s report with its evidence linked to the views.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};

use super::html::{self, escape};
use super::{Console, Page, PageError};
use crate::faults::{self, switches};
use crate::guide::{self, Progress};
use crate::plan::Kind;
use crate::runtime::Condition;
use crate::scenario::catalogue::Catalogue;
use crate::scenario::{Scenario, check, run};

pub type Params = Query<HashMap<String, String>>;

/// The result of the last run of a guide step, kept for the page after
/// the form's redirect.
#[derive(Debug, Clone)]
pub struct StepRun {
    pub outcome: Result<check::Outcome, String>,
}

fn note(params: &HashMap<String, String>) -> String {
    params
        .get("note")
        .map(|n| html::note_box(n))
        .unwrap_or_default()
}

/// A link for an endpoint that a browser can open.
fn endpoint_cell(endpoints: &std::collections::BTreeMap<String, String>) -> String {
    endpoints
        .iter()
        .map(|(name, url)| {
            if url.starts_with("http://") {
                format!(
                    r#"{} <a href="{}">{}</a>"#,
                    escape(name),
                    escape(url),
                    escape(url)
                )
            } else {
                format!(
                    "{} <span class=\"mono\">{}</span>",
                    escape(name),
                    escape(url)
                )
            }
        })
        .collect::<Vec<_>>()
        .join("<br>")
}

fn health_cell(health: Condition) -> String {
    let class = if health == Condition::Healthy {
        "good"
    } else {
        "bad"
    };
    format!(r#"<span class="{class}">{health}</span>"#)
}

/// `GET /`: the lab at a glance.
pub async fn lab(State(console): State<Arc<Console>>, Query(params): Params) -> Page {
    let lab = console.lab()?;
    let state = &console.state;
    let (healths, traffic, server_faults, requester_faults) = tokio::join!(
        crate::runtime::conditions(&lab),
        switches::traffic(state, &lab),
        switches::faults_of(state, &lab, Kind::Server),
        switches::faults_of(state, &lab, Kind::Requester),
    );
    let healths = healths.map_err(|e| PageError::from_query("Health unknown", &e))?;

    let mut body = note(&params);
    let _ = write!(
        body,
        "<p>Runtime <strong>{}</strong>, backends <strong>{}</strong>. {} of {} components healthy.</p>",
        escape(lab.runtime.as_str()),
        escape(lab.backends.as_str()),
        healths.iter().filter(|h| **h == Condition::Healthy).count(),
        healths.len()
    );
    body.push_str(r#"<h2 id="components">Components</h2>"#);
    let rows: Vec<Vec<String>> = lab
        .components
        .iter()
        .zip(&healths)
        .map(|(c, health)| {
            vec![
                escape(&c.name),
                health_cell(*health),
                match c.memory_mib {
                    Some(mib) => format!("{mib} MiB"),
                    None => format!("pid {}", c.pid),
                },
                endpoint_cell(&c.endpoints),
            ]
        })
        .collect();
    body.push_str(&html::table(
        &["Component", "Health", "Process", "Endpoints"],
        &rows,
    ));

    body.push_str(r#"<h2 id="traffic">Traffic</h2>"#);
    match &traffic {
        Ok(setting) => {
            let now = if setting.paused {
                "paused".to_owned()
            } else if let Some(rate) = setting.rate {
                format!("{rate} requests per second")
            } else {
                "the original's spiky pacing".to_owned()
            };
            let _ = write!(
                body,
                r#"<p>The requester sends: <strong id="traffic-now">{}</strong>.</p>"#,
                escape(&now)
            );
        }
        Err(e) => body.push_str(&html::error_box(&format!(
            "the requester's traffic is unknown: {e:#}"
        ))),
    }
    body.push_str(
        r#"<form class="search" method="post" action="/actions/traffic">
<label class="small" for="rate">Requests per second<input type="number" id="rate" name="rate" min="0" step="any" required></label>
<button type="submit" name="action" value="rate">Set the rate</button></form>"#,
    );
    body.push_str(&html::post_button(
        "/actions/traffic",
        &[("action", "pause")],
        "Pause traffic",
        "secondary",
    ));
    body.push(' ');
    body.push_str(&html::post_button(
        "/actions/traffic",
        &[("action", "resume")],
        "Resume the original pacing",
        "secondary",
    ));

    body.push_str(r#"<h2 id="faults">Active faults</h2>"#);
    let mut rows = Vec::new();
    for (service, answer) in [
        (Kind::Server.name(), &server_faults),
        (Kind::Requester.name(), &requester_faults),
    ] {
        match answer {
            Ok(answer) => {
                for f in answer.faults.iter().filter(|f| f.active) {
                    rows.push(vec![
                        format!(r#"<span class="bad">{}</span>"#, escape(&f.kind)),
                        escape(service),
                        f.rate.map_or_else(String::new, |r| format!("rate {r}")),
                        escape(&f.summary),
                    ]);
                }
            }
            Err(e) => rows.push(vec![
                "?".into(),
                escape(service),
                String::new(),
                format!(
                    r#"<span class="bad">cannot ask: {}</span>"#,
                    escape(&format!("{e:#}"))
                ),
            ]),
        }
    }
    match faults::active(state) {
        Ok(active) => {
            for a in active {
                let summary = faults::find(&a.kind).map_or("", |k| k.summary);
                rows.push(vec![
                    format!(r#"<span class="bad">{}</span>"#, escape(&a.kind)),
                    escape(&a.component),
                    escape(&format!("{:?}", a.action).to_lowercase()),
                    escape(summary),
                ]);
            }
        }
        Err(e) => body.push_str(&html::error_box(&format!("{e:#}"))),
    }
    if rows.is_empty() {
        body.push_str(r#"<p id="no-faults">No fault is on.</p>"#);
    } else {
        body.push_str(&html::table(
            &["Fault", "Where", "How", "What it does"],
            &rows,
        ));
    }

    body.push_str(r#"<h2 id="scenario">Scenario</h2>"#);
    match run::active(state) {
        Ok(Some(active)) => {
            let _ = write!(
                body,
                r#"<p><strong>{}</strong> runs since {} UTC: <a href="/guide">follow the guide</a>.</p>"#,
                escape(&active.id),
                crate::render::clock(active.started_at as i64 * 1_000_000_000)
            );
        }
        Ok(None) => body.push_str(r#"<p>No scenario runs: <a href="/scenarios">pick one</a>.</p>"#),
        Err(e) => body.push_str(&html::error_box(&format!("{e:#}"))),
    }
    if let Some(grafana) = Console::grafana(&lab) {
        body.push_str(r#"<h2 id="grafana">Grafana</h2><ul>"#);
        for (what, link) in crate::grafana::links(&grafana) {
            let _ = write!(
                body,
                r#"<li><a href="{}">{}</a></li>"#,
                escape(&link),
                escape(what)
            );
        }
        body.push_str("</ul>");
    }
    Ok(Html(html::page("/", "The lab", &body)).into_response())
}

/// `GET /scenarios`: the catalogue, with start and stop.
pub async fn scenarios(State(console): State<Arc<Console>>, Query(params): Params) -> Page {
    let lab = console.lab()?;
    let catalogue = Catalogue::load(console.state.root());
    let active = run::active(&console.state).map_err(|e| {
        PageError::new(
            StatusCode::CONFLICT,
            "Scenario record damaged",
            format!("{e:#}"),
        )
    })?;
    let mut body = note(&params);
    match &active {
        Some(a) => {
            let _ = write!(
                body,
                r#"<p>Running: <strong>{}</strong> — <a href="/guide">the guide</a>. </p>{}"#,
                escape(&a.id),
                html::post_button("/actions/scenario/stop", &[], "Stop the scenario", "")
            );
        }
        None => body.push_str("<p>No scenario runs. Start one: its faults go on at once.</p>"),
    }
    let rows: Vec<Vec<String>> = catalogue
        .scenarios
        .iter()
        .map(|(s, origin)| {
            let action = if active.as_ref().is_some_and(|a| a.id == s.id) {
                r#"<a href="/guide">running — guide</a>"#.to_owned()
            } else if !s.runs_on(lab.runtime) {
                format!(
                    r#"<span class="muted">needs {}</span>"#,
                    escape(&s.runtimes.join(" or "))
                )
            } else if active.is_some() {
                r#"<span class="muted">stop the running one first</span>"#.to_owned()
            } else {
                html::post_button(
                    "/actions/scenario/start",
                    &[("id", &s.id)],
                    &format!("Start {}", s.id),
                    "",
                )
            };
            vec![
                format!(r#"<span class="mono">{}</span>"#, escape(&s.id)),
                escape(&format!("{:?}", s.level).to_lowercase()),
                format!(
                    "{}<br><span class=\"muted\">{}</span>",
                    escape(&s.title),
                    escape(origin.to_string().as_str())
                ),
                action,
            ]
        })
        .collect();
    body.push_str(&html::table(&["Scenario", "Level", "Title", ""], &rows));
    if !catalogue.errors.is_empty() {
        body.push_str("<h2>Files that did not load</h2><ul>");
        for e in &catalogue.errors {
            let _ = write!(body, "<li>{}</li>", escape(&e.to_string()));
        }
        body.push_str("</ul>");
    }
    Ok(Html(html::page("/scenarios", "Scenarios", &body)).into_response())
}

/// The link of the view that shows a query of `language`.
fn view_link(step_query: &crate::scenario::Query) -> Option<String> {
    use crate::scenario::Language;
    let path = match step_query.language {
        Language::Traceql => "/traces",
        Language::Logql => "/logs",
        Language::Promql => "/metrics",
        Language::Profile => "/profiles",
        Language::Sql => return None,
    };
    let mut link = format!("{path}?q={}", html::encode(&step_query.text));
    for (name, value) in [("since", &step_query.since), ("ahead", &step_query.ahead)] {
        if let Some(value) = value {
            link.push_str(&format!("&{name}={}", html::encode(value)));
        }
    }
    Some(link)
}

fn guide_form(action: &str, scenario: &Scenario, step: usize, label: &str, class: &str) -> String {
    html::post_button(
        &format!("/actions/guide/{action}"),
        &[("id", &scenario.id), ("step", &step.to_string())],
        label,
        class,
    )
}

/// `GET /guide[?id=…]`: the running scenario's guide (or the one named).
pub async fn guide(State(console): State<Arc<Console>>, Query(params): Params) -> Page {
    let lab = console.lab()?;
    let catalogue = Catalogue::load(console.state.root());
    let id = match params.get("id") {
        Some(id) => id.clone(),
        None => match run::active(&console.state) {
            Ok(Some(active)) => active.id,
            _ => {
                let body = r#"<p>No scenario runs: <a href="/scenarios">start one</a>, and its guide shows here.</p>"#;
                return Ok(Html(html::page("/guide", "Guide", body)).into_response());
            }
        },
    };
    let scenario = catalogue
        .get(&id)
        .map_err(|e| PageError::new(StatusCode::NOT_FOUND, "No such scenario", format!("{e:#}")))?;
    let progress = Progress::load(&console.state, scenario).map_err(|e| {
        PageError::new(
            StatusCode::CONFLICT,
            "Progress unreadable",
            format!("{e:#}"),
        )
    })?;
    let mut body = note(&params);
    let _ = write!(
        body,
        r#"<p class="muted">Scenario <span class="mono">{}</span> · the same progress as <code>lab guide {}</code></p><p>{}</p>"#,
        escape(&scenario.id),
        escape(&scenario.id),
        escape(scenario.story.trim())
    );
    body.push_str(&steps_list(scenario, &progress));
    if let Some(step) = scenario.steps.get(progress.step) {
        let run = console
            .runs
            .lock()
            .expect("the runs are never poisoned")
            .get(&(scenario.id.clone(), progress.step))
            .cloned();
        let grafana = Console::grafana(&lab);
        body.push_str(&step_section(
            scenario,
            step,
            &progress,
            run,
            grafana.as_deref(),
        ));
    } else {
        body.push_str(&question_section(scenario, &progress));
    }
    body.push_str("<p>");
    body.push_str(&guide_form(
        "restart",
        scenario,
        0,
        "Start over",
        "secondary",
    ));
    body.push_str("</p>");
    Ok(Html(html::page(
        "/guide",
        &format!("Guide: {}", scenario.title),
        &body,
    ))
    .into_response())
}

/// The steps and the question, each passed one ticked, the current one
/// marked.
fn steps_list(scenario: &Scenario, progress: &Progress) -> String {
    let mut body = String::from(r#"<ol class="steps" aria-label="Steps">"#);
    let current = |i: usize| {
        if i == progress.step {
            r#" class="current" aria-current="step""#
        } else {
            ""
        }
    };
    for (i, step) in scenario.steps.iter().enumerate() {
        let mark = if progress.passed[i] { "✓ " } else { "" };
        let _ = write!(
            body,
            "<li{}>{mark}{}. {}</li>",
            current(i),
            i + 1,
            escape(&step.title)
        );
    }
    let _ = write!(
        body,
        "<li{}>Question</li></ol>",
        current(scenario.steps.len())
    );
    body
}

/// The current step: its text and query, the last run's verdict, the
/// hints shown so far, and the way on.
fn step_section(
    scenario: &Scenario,
    step: &crate::scenario::Step,
    progress: &Progress,
    run: Option<StepRun>,
    grafana: Option<&str>,
) -> String {
    let i = progress.step;
    let mut body = format!(
        r#"<section id="step" data-step="{i}"><h2>Step {} of {}: {}</h2><p>{}</p>"#,
        i + 1,
        scenario.steps.len(),
        escape(&step.title),
        escape(step.text.trim())
    );
    let explore = grafana.and_then(|g| guide::explore_link(g, step));
    body.push_str(&html::query_box(
        step.query.language.as_str(),
        &step.query.text,
        explore.as_deref(),
    ));
    body.push_str(&guide_form("run", scenario, i, "Run the query", ""));
    if let Some(link) = view_link(&step.query) {
        let _ = write!(
            body,
            r#" <a href="{}">Open in the console's view</a>"#,
            escape(&link)
        );
    }
    match run.map(|r| r.outcome) {
        Some(Ok(outcome)) => {
            if outcome.passed {
                let _ = write!(
                    body,
                    r#"<p id="verdict" class="good" role="status">✓ The result shows what this step looks for ({} results).</p>"#,
                    outcome.results
                );
            } else {
                let _ = write!(
                    body,
                    r#"<p id="verdict" class="bad" role="status">✗ Not yet: {} ({} results).</p>"#,
                    escape(&outcome.unmet.join("; ")),
                    outcome.results
                );
            }
            let _ = write!(
                body,
                r#"<pre id="result">{}</pre>"#,
                html::link_trace_ids(&outcome.shown)
            );
        }
        Some(Err(e)) => {
            let _ = write!(
                body,
                r#"<p id="verdict" class="bad" role="alert">✗ The query failed: {}</p>"#,
                escape(&e)
            );
        }
        None if progress.passed[i] => {
            body.push_str(r#"<p id="verdict" class="good">✓ This step passed before.</p>"#)
        }
        None => {}
    }
    let shown = progress.hints[i].min(step.hints.len());
    if shown > 0 {
        body.push_str(r#"<h3>Hints</h3><ol id="hints">"#);
        for hint in &step.hints[..shown] {
            let _ = write!(body, "<li>{}</li>", escape(hint));
        }
        body.push_str("</ol>");
    }
    body.push_str("<p>");
    if shown < step.hints.len() {
        body.push_str(&guide_form(
            "hint",
            scenario,
            i,
            &format!("Show a hint ({} left)", step.hints.len() - shown),
            "secondary",
        ));
        body.push(' ');
    }
    if i > 0 {
        body.push_str(&guide_form("back", scenario, i, "Back", "secondary"));
        body.push(' ');
    }
    body.push_str(&guide_form(
        "next",
        scenario,
        i,
        if progress.passed[i] {
            "Next step"
        } else {
            "Next step (without a passing check)"
        },
        "",
    ));
    body.push_str("</p></section>");
    body
}

/// The final question, its choices, and the verdict on the answer given.
fn question_section(scenario: &Scenario, progress: &Progress) -> String {
    let q = &scenario.question;
    let mut body = format!(
        r#"<section id="question"><h2>Question</h2><form method="post" action="/actions/guide/answer"><fieldset><legend>{}</legend><input type="hidden" name="id" value="{}">"#,
        escape(&q.text),
        escape(&scenario.id)
    );
    if q.choices.is_empty() {
        body.push_str(r#"<label for="answer">Your answer <input type="text" id="answer" name="answer" required></label>"#);
    } else {
        for (n, choice) in q.choices.iter().enumerate() {
            let checked = if progress.answer.as_deref() == Some(choice.as_str()) {
                " checked"
            } else {
                ""
            };
            let _ = write!(
                body,
                r#"<div><input type="radio" id="choice-{n}" name="answer" value="{}" required{checked}> <label for="choice-{n}">{}</label></div>"#,
                escape(choice),
                escape(choice)
            );
        }
    }
    body.push_str(r#"</fieldset><p><button type="submit">Answer</button></p></form>"#);
    match progress.answered_right {
        Some(true) => {
            let _ = write!(
                body,
                r#"<p id="answer-verdict" class="good" role="status">✓ Right: {}.</p><p>{}</p><p><code>lab scenario stop</code> or the Scenarios page clears the faults; <a href="/diagnose">Diagnose</a> shows the whole chain.</p>"#,
                escape(progress.answer.as_deref().unwrap_or_default()),
                escape(scenario.solution.trim())
            );
        }
        Some(false) => {
            let _ = write!(
                body,
                r#"<p id="answer-verdict" class="bad" role="status">✗ Not {}: look again at the evidence, or go back for a hint.</p>"#,
                escape(progress.answer.as_deref().unwrap_or_default())
            );
        }
        None => {}
    }
    body.push_str("<p>");
    if !scenario.steps.is_empty() {
        body.push_str(&guide_form(
            "back",
            scenario,
            scenario.steps.len(),
            "Back to the steps",
            "secondary",
        ));
    }
    body.push_str("</p></section>");
    body
}

/// A diagnosis and when and over what window it ran.
#[derive(Debug, Clone)]
pub struct Diagnosed {
    at: std::time::Instant,
    since: std::time::Duration,
    /// Unix seconds, for the page.
    at_unix: u64,
    report: crate::diagnose::Diagnosis,
}

/// The view that shows an evidence's query.
fn evidence_link(signal: &str, query: &str) -> Option<String> {
    let path = match signal {
        "traces" => "/traces",
        "logs" => "/logs",
        "metrics" => "/metrics",
        "profiles" => "/profiles",
        _ => return None,
    };
    Some(format!("{path}?q={}", html::encode(query)))
}

/// `lab diagnose`'s chain, as the command runs it.
async fn run_diagnosis(
    lab: &crate::state::LabState,
    client: &crate::query::QueryClient,
    since: std::time::Duration,
) -> Result<crate::diagnose::Diagnosis, PageError> {
    crate::diagnose::diagnose_lab(lab, client, since)
        .await
        .map_err(|e| PageError::from_query("Diagnosis failed", &e))
}

/// `GET /diagnose[?since=…][&fresh]`: `lab diagnose`'s report, each
/// evidence linked.
pub async fn diagnose(State(console): State<Arc<Console>>, Query(params): Params) -> Page {
    let lab = console.lab()?;
    let client = console.client(&lab)?;
    let since = match params.get("since").filter(|s| !s.is_empty()) {
        Some(text) => crate::parse_duration(text).map_err(|e| {
            PageError::new(
                StatusCode::BAD_REQUEST,
                "Bad window",
                format!("since={text}: {e}"),
            )
        })?,
        None => crate::diagnose::LOOKBACK,
    };
    // One diagnosis at a time: a second request waits and reuses it.
    let mut last = console.diagnosis.lock().await;
    let fresh = params.contains_key("fresh");
    let reusable = last
        .as_ref()
        .filter(|d| !fresh && d.since == since && d.at.elapsed() < super::DIAGNOSIS_REUSE);
    let diagnosed = match reusable {
        Some(d) => d.clone(),
        None => {
            let d = Diagnosed {
                at: std::time::Instant::now(),
                since,
                at_unix: crate::runtime::now_secs(),
                report: run_diagnosis(&lab, &client, since).await?,
            };
            *last = Some(d.clone());
            d
        }
    };
    drop(last);
    let report = &diagnosed.report;
    let grafana = Console::grafana(&lab);
    let mut body = format!(
        r#"<form class="search" method="get" action="/diagnose"><input type="hidden" name="fresh" value="1"><label class="small" for="since">Look back<input type="text" id="since" name="since" value="{}s"></label><button type="submit">Diagnose again</button></form><p class="muted" id="diagnosed-at">Diagnosed at {} UTC over the last {}s.</p>"#,
        since.as_secs(),
        crate::render::clock(diagnosed.at_unix as i64 * 1_000_000_000),
        since.as_secs()
    );
    match &report.root_cause {
        Some(cause) => {
            let _ = write!(
                body,
                r#"<section id="root-cause" class="error"><h2>Fault: <span class="mono">{}</span></h2><p>{}</p><p>The system says: <q>{}</q></p><p>Fix: <strong>{}</strong></p></section>"#,
                escape(&cause.id),
                escape(&cause.summary),
                escape(&cause.message),
                escape(&cause.service)
            );
        }
        None if report.status == "fault" => body.push_str(
            r#"<section id="root-cause" class="error"><h2>Errors found, root cause not identified</h2></section>"#,
        ),
        None => body.push_str(
            r#"<section id="root-cause"><h2 class="good">Healthy: no fault found</h2></section>"#,
        ),
    }
    body.push_str(r#"<h2>Evidence</h2><ol id="evidence">"#);
    for e in &report.evidence {
        let _ = write!(
            body,
            r#"<li><p><strong>[{}]</strong> {}</p>"#,
            escape(e.signal),
            html::link_trace_ids(&e.finding)
        );
        let explore = grafana.as_deref().and_then(|g| {
            let ds = match e.signal {
                "traces" => crate::grafana::TEMPO,
                "logs" => crate::grafana::LOKI,
                "metrics" => crate::grafana::MIMIR,
                "profiles" => crate::grafana::PYROSCOPE,
                _ => return None,
            };
            Some(crate::grafana::explore(g, ds, &e.query))
        });
        body.push_str(&html::query_box(e.signal, &e.query, explore.as_deref()));
        let mut links = Vec::new();
        if let Some(link) = evidence_link(e.signal, &e.query) {
            links.push(format!(
                r#"<a href="{}">Open the {} view</a>"#,
                escape(&link),
                escape(e.signal)
            ));
        }
        if let Some(id) = &e.trace_id {
            links.push(format!(
                r#"<a href="/trace/{}">Trace {}</a>"#,
                escape(id),
                escape(id)
            ));
        }
        if !links.is_empty() {
            let _ = write!(body, "<p>{}</p>", links.join(" · "));
        }
        body.push_str("</li>");
    }
    body.push_str("</ol>");
    if !report.rejected.is_empty() {
        body.push_str(r#"<h2>Ruled out</h2><ul id="rejected">"#);
        for r in &report.rejected {
            let _ = write!(
                body,
                r#"<li><span class="mono">{}</span>: {}</li>"#,
                escape(&r.id),
                escape(&r.why)
            );
        }
        body.push_str("</ul>");
    }
    let json = serde_json::to_string_pretty(&report).unwrap_or_default();
    let _ = write!(
        body,
        r#"<details><summary>As <code>lab diagnose --json</code></summary><pre>{}</pre></details>"#,
        escape(&json)
    );
    let status = if report.status == "fault" {
        "Diagnosis: fault"
    } else {
        "Diagnosis: healthy"
    };
    Ok(Html(html::page("/diagnose", status, &body)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_links_to_the_view_of_its_signal() {
        assert_eq!(
            evidence_link("logs", r#"{a="b"} |= "x""#).unwrap(),
            "/logs?q=%7Ba%3D%22b%22%7D%20%7C%3D%20%22x%22"
        );
        assert!(evidence_link("database", "SELECT 1").is_none());
    }
}
