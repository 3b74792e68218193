//! `lab scenario list|show|start|stop|status|validate` and `lab guide`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;

use lab::guide::{self, Progress};
use lab::query::QueryClient;
use lab::render;
use lab::scenario::{catalogue::Catalogue, run};
use lab::state::{LabState, StateDir};

#[derive(Debug, clap::Subcommand)]
pub enum ScenarioCommand {
    /// The catalogue: built-in scenarios and those in your folders.
    List {
        #[arg(long)]
        json: bool,
    },
    /// A scenario in full: the story, the teacher's summary, the steps.
    Show {
        id: String,
        /// Include the solution (for teachers).
        #[arg(long)]
        solution: bool,
        /// The scenario as JSON (the question's answers only with
        /// --solution).
        #[arg(long)]
        json: bool,
    },
    /// Break the lab as the scenario says.
    Start {
        id: String,
        /// Seed the services' random draws (requests, names, fault hits)
        /// so the run can be repeated; overrides the scenario's own seed.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Undo the running scenario's faults and restore traffic.
    Stop,
    /// Which scenario runs, since when, and the guide's progress.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Check scenario files: the catalogue, or the files given.
    Validate { files: Vec<PathBuf> },
    /// Applies a running scenario's delayed faults (started by `start`).
    #[command(hide = true)]
    Schedule { id: String },
}

#[derive(Debug, clap::Args)]
pub struct GuideArgs {
    /// The scenario (default: the running one).
    pub scenario: Option<String>,
    /// Run every step's check unattended; exit 0 only if all pass.
    #[arg(long)]
    pub check: bool,
    /// Answer the question without the interactive guide; exit 0 if right.
    #[arg(long, conflicts_with = "check")]
    pub answer: Option<String>,
    /// With --check: how long each step may take to show its symptom.
    #[arg(long, default_value = "90s", value_parser = lab::parse_duration)]
    pub patience: Duration,
    /// Start over from the first step.
    #[arg(long)]
    pub restart: bool,
}

fn running_lab(state: &StateDir) -> Result<LabState> {
    state
        .load()?
        .context("the lab is not up: run `lab up` first")
}

pub async fn run(state_dir: Option<PathBuf>, command: ScenarioCommand) -> Result<()> {
    let state = StateDir::resolve(state_dir)?;
    let catalogue = Catalogue::load(state.root());
    match command {
        ScenarioCommand::List { json } => {
            for error in &catalogue.errors {
                eprintln!("skipped {error}");
            }
            if json {
                let list: Vec<_> = catalogue
                    .scenarios
                    .iter()
                    .map(|(s, origin)| {
                        json!({
                            "id": s.id,
                            "title": s.title,
                            "level": s.level,
                            "root_cause": s.question.root_cause,
                            "culprit": s.question.culprit,
                            "runtimes": if s.runtimes.is_empty() { vec!["native".to_owned(), "docker".to_owned()] } else { s.runtimes.clone() },
                            "origin": origin.to_string(),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let rows: Vec<Vec<String>> = catalogue
                    .scenarios
                    .iter()
                    .map(|(s, _)| {
                        vec![
                            s.id.clone(),
                            format!("{:?}", s.level).to_lowercase(),
                            s.title.clone(),
                        ]
                    })
                    .collect();
                print!("{}", render::table(&["SCENARIO", "LEVEL", "TITLE"], &rows));
            }
        }
        ScenarioCommand::Show { id, solution, json } => {
            let s = catalogue.get(&id)?;
            if json {
                let mut shown = serde_json::to_value(s)?;
                if !solution {
                    for key in ["accepted", "root_cause", "culprit"] {
                        shown["question"].as_object_mut().map(|q| q.remove(key));
                    }
                    shown.as_object_mut().map(|o| o.remove("solution"));
                }
                println!("{}", serde_json::to_string_pretty(&shown)?);
                return Ok(());
            }
            println!("{} — {} ({:?})", render::bold(&s.title), s.id, s.level);
            println!("\nFor the teacher: {}", s.summary.trim());
            println!("\nThe story: {}", s.story.trim());
            println!("\nFaults:");
            for f in &s.faults {
                let mut parts = vec![f.kind.clone()];
                if let Some(rate) = f.rate {
                    parts.push(format!("rate {rate}"));
                }
                for (name, value) in [
                    ("target", &f.target),
                    ("mode", &f.mode),
                    ("after", &f.after),
                    ("for", &f.duration),
                ] {
                    if let Some(value) = value {
                        parts.push(format!("{name} {value}"));
                    }
                }
                println!("  - {}", parts.join(", "));
            }
            println!("\nSteps:");
            for (i, step) in s.steps.iter().enumerate() {
                println!(
                    "  {}. {} — [{}] {}",
                    i + 1,
                    step.title,
                    step.query.language.as_str(),
                    step.query.text
                );
            }
            println!("\nQuestion: {}", s.question.text);
            if solution {
                println!(
                    "\nRoot cause: {} (culprit {})\n{}",
                    s.question.root_cause,
                    s.question.culprit,
                    s.solution.trim()
                );
            }
        }
        ScenarioCommand::Start { id, seed } => {
            let scenario = catalogue.get(&id)?;
            let lab = running_lab(&state)?;
            let running = run::start(&state, &lab, scenario, seed).await?;
            Progress::reset(&state, &scenario.id)?;
            println!("{} started: {}", scenario.id, scenario.title);
            if let Some(seed) = running.seed {
                println!(
                    "seed {seed}: `lab scenario start {} --seed {seed}` repeats this run",
                    scenario.id
                );
            }
            println!("{}", scenario.story.trim());
            println!("\nnext: `lab guide` walks you through it");
        }
        ScenarioCommand::Stop => {
            let lab = running_lab(&state)?;
            let running = run::active(&state)?;
            let scenario = running.as_ref().and_then(|r| catalogue.find(&r.id));
            match run::stop(&state, &lab, scenario).await? {
                Some(stopped) => println!("{} stopped; every fault is off", stopped.id),
                None => println!("no scenario is running"),
            }
        }
        ScenarioCommand::Status { json } => {
            let running = run::active(&state)?;
            let progress = match running.as_ref().and_then(|r| catalogue.find(&r.id)) {
                Some(s) => Some(Progress::load(&state, s)?),
                None => None,
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({ "scenario": running, "progress": progress })
                    )?
                );
            } else {
                match (&running, &progress) {
                    (Some(r), Some(p)) => println!(
                        "{} running since {} UTC; guide at step {}, {} steps passed{}",
                        r.id,
                        render::clock(r.started_at as i64 * 1_000_000_000),
                        p.step + 1,
                        p.passed.iter().filter(|x| **x).count(),
                        match p.answered_right {
                            Some(true) => ", answered right",
                            Some(false) => ", answered wrong so far",
                            None => "",
                        }
                    ),
                    _ => println!(
                        "no scenario is running: `lab scenario list`, then `lab scenario start <id>`"
                    ),
                }
            }
        }
        ScenarioCommand::Validate { files } => {
            let mut bad = 0;
            if files.is_empty() {
                for error in &catalogue.errors {
                    println!("{} {error}", render::red("bad"));
                    bad += 1;
                }
                for (s, origin) in &catalogue.scenarios {
                    println!("ok  {} ({origin})", s.id);
                }
            } else {
                for file in &files {
                    let text = std::fs::read_to_string(file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    match lab::scenario::parse(file, &text) {
                        Ok(s) => println!("ok  {} ({})", s.id, file.display()),
                        Err(e) => {
                            println!("{} {e}", render::red("bad"));
                            bad += 1;
                        }
                    }
                }
            }
            if bad > 0 {
                bail!("{bad} scenario file(s) need fixing");
            }
        }
        ScenarioCommand::Schedule { id } => {
            let scenario = catalogue.get(&id)?;
            let lab = running_lab(&state)?;
            run::schedule(&state, &lab, scenario).await?;
        }
    }
    Ok(())
}

pub async fn guide(state_dir: Option<PathBuf>, args: GuideArgs) -> Result<()> {
    let state = StateDir::resolve(state_dir)?;
    let catalogue = Catalogue::load(state.root());
    let id = match args.scenario {
        Some(id) => id,
        None => run::active(&state)?.map(|r| r.id).context(
            "no scenario is running: name one (`lab guide <id>`), or `lab scenario start <id>`",
        )?,
    };
    let scenario = catalogue.get(&id)?;
    if args.restart {
        Progress::reset(&state, &scenario.id)?;
    }
    if let Some(given) = args.answer {
        if guide::answer(&state, scenario, &given)? {
            println!("right: {}", scenario.solution.trim());
            return Ok(());
        }
        println!("not right");
        std::process::exit(1);
    }
    let lab = running_lab(&state)?;
    let client = QueryClient::for_lab(&lab)?;
    if args.check {
        let passed = guide::check_all(
            &state,
            scenario,
            &client,
            lab.postgres_port(),
            args.patience,
        )
        .await?;
        if !passed {
            std::process::exit(1);
        }
        println!("every step of {} passes", scenario.id);
        return Ok(());
    }
    guide::interactive(
        &state,
        scenario,
        &client,
        lab.postgres_port(),
        lab.grafana_url(),
    )
    .await
}
