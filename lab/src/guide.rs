//! The guide: a scenario's steps one at a time — the text, the query to
//! try, the query run on request with its result and the check's verdict,
//! hints one at a time — then the question, with the answer checked.
//! Progress is kept in the state folder, so a learner resumes where they
//! left and the console shows the same place.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::query::QueryClient;
use crate::render;
use crate::scenario::{Scenario, check};
use crate::state::StateDir;

/// Where a learner is in one scenario.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The step shown next (== steps.len() at the question).
    pub step: usize,
    /// Per step: whether its check passed.
    pub passed: Vec<bool>,
    /// Per step: how many hints were shown.
    pub hints: Vec<usize>,
    /// The last answer given and whether it was right.
    pub answer: Option<String>,
    pub answered_right: Option<bool>,
}

impl Progress {
    fn path(state: &StateDir, id: &str) -> std::path::PathBuf {
        state.root().join("guide").join(format!("{id}.json"))
    }

    pub fn load(state: &StateDir, scenario: &Scenario) -> Result<Progress> {
        let mut progress: Progress = match std::fs::read_to_string(Self::path(state, &scenario.id))
        {
            Ok(text) => serde_json::from_str(&text).unwrap_or_default(),
            Err(_) => Progress::default(),
        };
        progress.passed.resize(scenario.steps.len(), false);
        progress.hints.resize(scenario.steps.len(), 0);
        progress.step = progress.step.min(scenario.steps.len());
        Ok(progress)
    }

    pub fn save(&self, state: &StateDir, id: &str) -> Result<()> {
        let path = Self::path(state, id);
        std::fs::create_dir_all(path.parent().expect("a file has a folder"))?;
        std::fs::write(path, serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }

    pub fn reset(state: &StateDir, id: &str) -> Result<()> {
        match std::fs::remove_file(Self::path(state, id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

/// The answer, checked and recorded.
pub fn answer(state: &StateDir, scenario: &Scenario, given: &str) -> Result<bool> {
    let mut progress = Progress::load(state, scenario)?;
    let right = scenario.accepts(given);
    progress.answer = Some(given.trim().to_owned());
    progress.answered_right = Some(right);
    progress.save(state, &scenario.id)?;
    Ok(right)
}

/// Every step's check, unattended: each is retried until it passes or
/// `patience` runs out (symptoms take a scrape or a batch to show).
/// Returns whether all passed.
pub async fn check_all(
    state: &StateDir,
    scenario: &Scenario,
    client: &QueryClient,
    postgres_port: Option<u16>,
    patience: Duration,
) -> Result<bool> {
    let mut progress = Progress::load(state, scenario)?;
    let mut all = true;
    for (i, step) in scenario.steps.iter().enumerate() {
        let deadline = Instant::now() + patience;
        let outcome = loop {
            let outcome = match check::run(step, client, postgres_port).await {
                Ok(outcome) => outcome,
                Err(e) => check::Outcome {
                    passed: false,
                    results: 0,
                    shown: String::new(),
                    unmet: vec![format!("the query failed: {e:#}")],
                },
            };
            if outcome.passed || Instant::now() > deadline {
                break outcome;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        progress.passed[i] = outcome.passed;
        let verdict = if outcome.passed {
            render::bold("pass")
        } else {
            render::red("FAIL")
        };
        println!(
            "{verdict} step {}: {} ({} results) — [{}] {}",
            i + 1,
            step.title,
            outcome.results,
            step.query.language.as_str(),
            step.query.text
        );
        for unmet in &outcome.unmet {
            println!("       {unmet}");
        }
        all &= outcome.passed;
    }
    progress.step = scenario.steps.len();
    progress.save(state, &scenario.id)?;
    Ok(all)
}

fn prompt(text: &str) -> Option<String> {
    print!("{text}");
    std::io::stdout().flush().ok()?;
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim().to_owned()),
    }
}

/// The guide in the terminal.
pub async fn interactive(
    state: &StateDir,
    scenario: &Scenario,
    client: &QueryClient,
    postgres_port: Option<u16>,
    grafana: Option<&str>,
) -> Result<()> {
    let mut progress = Progress::load(state, scenario)?;
    println!("{} — {}", render::bold(&scenario.title), scenario.id);
    println!("{}", scenario.story.trim());
    while progress.step < scenario.steps.len() {
        let i = progress.step;
        let step = &scenario.steps[i];
        println!();
        println!(
            "{} {}",
            render::bold(&format!("Step {} of {}:", i + 1, scenario.steps.len())),
            step.title
        );
        println!("{}", step.text.trim());
        println!(
            "  try this {} query:\n    {}",
            step.query.language.as_str(),
            step.query.text
        );
        if let Some(link) = grafana.and_then(|g| explore_link(g, step)) {
            println!("  in Grafana: {link}");
        }
        loop {
            let Some(choice) = prompt("[r]un it  [h]int  [n]ext  [b]ack  [q]uit > ") else {
                return Ok(());
            };
            match choice.as_str() {
                "r" | "run" => match check::run(step, client, postgres_port).await {
                    Ok(outcome) => {
                        print!("{}", outcome.shown);
                        progress.passed[i] |= outcome.passed;
                        if outcome.passed {
                            println!(
                                "{} the result shows what this step looks for",
                                render::bold("✓")
                            );
                        } else {
                            println!("{} not yet: {}", render::red("✗"), outcome.unmet.join("; "));
                        }
                        progress.save(state, &scenario.id)?;
                    }
                    Err(e) => println!("{} the query failed: {e:#}", render::red("✗")),
                },
                "h" | "hint" => {
                    let shown = progress.hints[i];
                    match step.hints.get(shown) {
                        Some(hint) => {
                            println!("hint {}: {hint}", shown + 1);
                            progress.hints[i] += 1;
                            progress.save(state, &scenario.id)?;
                        }
                        None => println!("no more hints for this step"),
                    }
                }
                "n" | "next" => {
                    if !progress.passed[i] {
                        println!("(moving on without a passing check)");
                    }
                    progress.step += 1;
                    progress.save(state, &scenario.id)?;
                    break;
                }
                "b" | "back" => {
                    progress.step = i.saturating_sub(1);
                    progress.save(state, &scenario.id)?;
                    break;
                }
                "q" | "quit" => {
                    println!("progress saved: `lab guide {}` resumes here", scenario.id);
                    return Ok(());
                }
                _ => println!("r, h, n, b or q"),
            }
        }
    }
    let q = &scenario.question;
    println!();
    println!("{} {}", render::bold("Question:"), q.text);
    for (n, choice) in q.choices.iter().enumerate() {
        println!("  {}. {choice}", n + 1);
    }
    loop {
        let Some(given) = prompt("your answer > ") else {
            return Ok(());
        };
        if given.is_empty() {
            continue;
        }
        if answer(state, scenario, &given)? {
            println!("{} right.", render::bold("✓"));
            println!("{}", scenario.solution.trim());
            println!(
                "`lab scenario stop` clears the faults; `lab diagnose` shows the whole chain."
            );
            return Ok(());
        }
        println!(
            "{} not that — look again at the evidence, or ask for a hint by going [b]ack.",
            render::red("✗")
        );
    }
}

/// The step's query opened in Grafana's Explore, when its language has a
/// datasource there.
pub fn explore_link(grafana: &str, step: &crate::scenario::Step) -> Option<String> {
    use crate::scenario::Language;
    let datasource = match step.query.language {
        Language::Traceql => crate::grafana::TEMPO,
        Language::Logql => crate::grafana::LOKI,
        Language::Promql => crate::grafana::MIMIR,
        Language::Profile => crate::grafana::PYROSCOPE,
        Language::Sql => return None,
    };
    let (back, ahead) = step.query.reach().ok()?;
    let to = if ahead.is_zero() {
        "now".to_owned()
    } else {
        format!("now+{}s", ahead.as_secs())
    };
    Some(crate::grafana::explore_over(
        grafana,
        datasource,
        &step.query.text,
        (&format!("now-{}s", back.as_secs()), &to),
    ))
}
