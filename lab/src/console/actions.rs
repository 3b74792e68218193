//! The forms that change something: the requester's traffic, a scenario's
//! start and stop, and the guide's run, hint, next, back and answer. Each
//! does what the matching command does, through the same functions, then
//! redirects to the page that shows the result (so a reload never repeats
//! it).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use mythical_services::requester::TrafficSetting;

use super::html::encode;
use super::pages::StepRun;
use super::{Console, Page, PageError};
use crate::faults::switches;
use crate::guide::{self, Progress};
use crate::scenario::catalogue::Catalogue;
use crate::scenario::{check, run};

type Fields = Form<HashMap<String, String>>;

fn bad(title: &str, message: String) -> PageError {
    PageError::new(StatusCode::BAD_REQUEST, title, message)
}

fn field<'a>(fields: &'a HashMap<String, String>, name: &str) -> Result<&'a str, PageError> {
    fields
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| bad("Incomplete form", format!("the form has no `{name}`")))
}

/// `POST /actions/traffic`: `action` = rate (with `rate`), pause or resume.
pub async fn traffic(State(console): State<Arc<Console>>, Form(fields): Fields) -> Page {
    let lab = console.lab()?;
    let (body, said) = match fields.get("action").map(String::as_str) {
        Some("pause") => (
            TrafficSetting {
                rate: None,
                paused: true,
            },
            "traffic paused".to_owned(),
        ),
        Some("resume") => (
            TrafficSetting::default(),
            "traffic back to the original's pacing".to_owned(),
        ),
        Some("rate") | None => {
            let text = field(&fields, "rate")?.trim();
            let rate: f64 = text
                .parse()
                .ok()
                .filter(|r: &f64| r.is_finite() && *r >= 0.0)
                .ok_or_else(|| {
                    bad(
                        "Bad rate",
                        format!("`{text}` is not a number of requests per second, 0 or more"),
                    )
                })?;
            (
                TrafficSetting {
                    rate: Some(rate),
                    paused: false,
                },
                format!("traffic set to {rate} requests per second"),
            )
        }
        Some(other) => {
            return Err(bad(
                "Unknown action",
                format!("`{other}`: the traffic actions are rate, pause and resume"),
            ));
        }
    };
    switches::set_traffic(&console.state, &lab, &body)
        .await
        .map_err(|e| PageError::from_query("Traffic unchanged", &e))?;
    Ok(Redirect::to(&format!("/?note={}#traffic", encode(&said))).into_response())
}

/// `POST /actions/scenario/start` with `id`: as `lab scenario start`.
pub async fn scenario_start(State(console): State<Arc<Console>>, Form(fields): Fields) -> Page {
    let lab = console.lab()?;
    let catalogue = Catalogue::load(console.state.root());
    let scenario = catalogue
        .get(field(&fields, "id")?)
        .map_err(|e| bad("No such scenario", format!("{e:#}")))?;
    run::start(&console.state, &lab, scenario, None)
        .await
        .map_err(|e| {
            PageError::new(
                StatusCode::CONFLICT,
                "The scenario did not start",
                format!("{e:#}"),
            )
        })?;
    Progress::reset(&console.state, &scenario.id)
        .map_err(|e| PageError::from_query("Progress not reset", &e))?;
    console
        .runs
        .lock()
        .expect("the runs are never poisoned")
        .retain(|(id, _), _| *id != scenario.id);
    let said = format!("{} started: {}", scenario.id, scenario.title);
    Ok(Redirect::to(&format!(
        "/guide?id={}&note={}",
        encode(&scenario.id),
        encode(&said)
    ))
    .into_response())
}

/// `POST /actions/scenario/stop`: as `lab scenario stop`.
pub async fn scenario_stop(State(console): State<Arc<Console>>) -> Page {
    let lab = console.lab()?;
    let catalogue = Catalogue::load(console.state.root());
    let active = run::active(&console.state).map_err(|e| PageError::from_query("No record", &e))?;
    let scenario = active.as_ref().and_then(|a| catalogue.find(&a.id));
    let said = match run::stop(&console.state, &lab, scenario)
        .await
        .map_err(|e| PageError::from_query("The scenario did not stop", &e))?
    {
        Some(stopped) => format!("{} stopped; every fault is off", stopped.id),
        None => "no scenario was running".to_owned(),
    };
    Ok(Redirect::to(&format!("/scenarios?note={}", encode(&said))).into_response())
}

/// `POST /actions/guide/{run|hint|next|back|restart|answer}` with `id`
/// and `step` (or `answer`): the terminal guide's keys. Each names the
/// step it was shown for, so a stale page never skips a step.
pub async fn guide(
    State(console): State<Arc<Console>>,
    Path(action): Path<String>,
    Form(fields): Fields,
) -> Page {
    let catalogue = Catalogue::load(console.state.root());
    let scenario = catalogue
        .get(field(&fields, "id")?)
        .map_err(|e| bad("No such scenario", format!("{e:#}")))?;
    let state = &console.state;
    let saved = |e: anyhow::Error| PageError::from_query("Progress not saved", &e);
    let mut progress = Progress::load(state, scenario).map_err(saved)?;
    let step = || -> Result<usize, PageError> {
        let text = field(&fields, "step")?;
        text.parse::<usize>()
            .ok()
            .filter(|s| *s <= scenario.steps.len())
            .ok_or_else(|| {
                bad(
                    "Bad step",
                    format!(
                        "step `{text}`: {} has steps 0 to {}",
                        scenario.id,
                        scenario.steps.len()
                    ),
                )
            })
    };
    let mut anchor = "#step";
    match action.as_str() {
        "run" => {
            let i = step()?;
            let Some(definition) = scenario.steps.get(i) else {
                return Err(bad(
                    "Bad step",
                    format!("{} has no step {}", scenario.id, i + 1),
                ));
            };
            let lab = console.lab()?;
            let client = console.client(&lab)?;
            let outcome = check::run(definition, &client, lab.postgres_port())
                .await
                .map_err(|e| format!("{e:#}"));
            if let Ok(outcome) = &outcome {
                // Reload: the terminal guide may have moved meanwhile.
                progress = Progress::load(state, scenario).map_err(saved)?;
                progress.passed[i] |= outcome.passed;
                progress.save(state, &scenario.id).map_err(saved)?;
            }
            console
                .runs
                .lock()
                .expect("the runs are never poisoned")
                .insert((scenario.id.clone(), i), StepRun { outcome });
        }
        "hint" => {
            let i = step()?;
            if let Some(definition) = scenario.steps.get(i)
                && progress.hints[i] < definition.hints.len()
            {
                progress.hints[i] += 1;
                progress.save(state, &scenario.id).map_err(saved)?;
            }
        }
        "next" => {
            progress.step = (step()? + 1).min(scenario.steps.len());
            progress.save(state, &scenario.id).map_err(saved)?;
            if progress.step == scenario.steps.len() {
                anchor = "#question";
            }
        }
        "back" => {
            progress.step = step()?.saturating_sub(1);
            progress.save(state, &scenario.id).map_err(saved)?;
        }
        "restart" => {
            Progress::reset(state, &scenario.id).map_err(saved)?;
            console
                .runs
                .lock()
                .expect("the runs are never poisoned")
                .retain(|(id, _), _| *id != scenario.id);
        }
        "answer" => {
            let given = field(&fields, "answer")?.trim();
            if given.is_empty() {
                return Err(bad("No answer", "choose or type an answer first".into()));
            }
            guide::answer(state, scenario, given).map_err(saved)?;
            anchor = "#question";
        }
        other => {
            return Err(bad(
                "Unknown action",
                format!(
                    "`{other}`: the guide's actions are run, hint, next, back, restart and answer"
                ),
            ));
        }
    }
    Ok(Redirect::to(&format!("/guide?id={}{anchor}", encode(&scenario.id))).into_response())
}
