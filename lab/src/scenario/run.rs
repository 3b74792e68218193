//! A scenario on the live lab: start applies its faults (now, or later by
//! a detached scheduler for `after:`), stop undoes them and restores
//! traffic. The running scenario is recorded in the state folder, so any
//! later command (and the console) knows what is on.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::{FaultSpec, Scenario};
use crate::faults::{self, switches};
use crate::runtime::process;
use crate::state::{LabState, StateDir};

/// The running scenario, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Active {
    pub id: String,
    /// Unix seconds.
    pub started_at: u64,
    pub seed: Option<u64>,
    /// The detached process applying faults with `after:`.
    pub scheduler_pid: Option<u32>,
}

fn record(state: &StateDir) -> PathBuf {
    state.scenario_record()
}

pub fn active(state: &StateDir) -> Result<Option<Active>> {
    match std::fs::read_to_string(record(state)) {
        Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is damaged: `lab scenario stop` after removing it",
                record(state).display()
            )
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn duration(text: &Option<String>) -> Result<Option<Duration>> {
    text.as_deref()
        .map(crate::parse_duration)
        .transpose()
        .map_err(|e| anyhow::anyhow!(e))
}

/// Applies one fault now: a service's switch or an infrastructure fault
/// (a network one with its params, and the scenario's seed for its draws).
pub async fn apply(
    state: &StateDir,
    lab: &LabState,
    fault: &FaultSpec,
    seed: Option<u64>,
) -> Result<()> {
    if let Some(kind) = faults::find(&fault.kind) {
        faults::inject(
            state,
            lab,
            kind,
            fault.target.as_deref(),
            fault.mode.as_deref(),
            &fault.params(seed),
        )
        .await?;
    } else {
        switches::switch_on(
            state,
            lab,
            &fault.kind,
            fault.rate,
            duration(&fault.duration)?,
        )
        .await?;
    }
    Ok(())
}

/// Every fault off, switches and infrastructure alike.
pub async fn clear_all(state: &StateDir, lab: &LabState) -> Result<()> {
    faults::clear(state, lab, None).await?;
    switches::switch_off_all(state, lab).await
}

/// Starts `scenario` on a clean lab: no fault on before its own. A seed
/// (given, or the scenario's own) restarts both services' random draws
/// from it, so the run repeats.
pub async fn start(
    state: &StateDir,
    lab: &LabState,
    scenario: &Scenario,
    seed: Option<u64>,
) -> Result<Active> {
    if let Some(running) = active(state)? {
        bail!(
            "scenario `{}` is running: `lab scenario stop` first",
            running.id
        );
    }
    if !scenario.runs_on(lab.runtime) {
        bail!(
            "scenario `{}` needs the {} runtime; this lab runs {}",
            scenario.id,
            scenario.runtimes.join(" or "),
            lab.runtime
        );
    }
    clear_all(state, lab).await?;
    let seed = seed.or(scenario.seed);
    switches::set_seed(state, lab, seed).await?;
    let (now, later): (Vec<&FaultSpec>, Vec<&FaultSpec>) =
        scenario.faults.iter().partition(|f| f.after.is_none());
    for fault in now {
        apply(state, lab, fault, scenario.seed)
            .await
            .with_context(|| format!("applying {}", fault.kind))?;
    }
    // Infrastructure faults cannot expire by themselves: the scheduler
    // clears those with `for:` too.
    let scheduled = !later.is_empty()
        || scenario
            .faults
            .iter()
            .any(|f| f.duration.is_some() && faults::find(&f.kind).is_some());
    let scheduler_pid = if scheduled {
        let lab_binary = std::env::current_exe().context("cannot find the lab binary")?;
        let mut command = std::process::Command::new(lab_binary);
        command
            .arg("--state-dir")
            .arg(state.root())
            .args(["scenario", "schedule", &scenario.id]);
        Some(process::spawn(
            command,
            &state.logs().join("scenario-schedule.log"),
        )?)
    } else {
        None
    };
    let running = Active {
        id: scenario.id.clone(),
        started_at: crate::runtime::now_secs(),
        seed,
        scheduler_pid,
    };
    std::fs::write(record(state), serde_json::to_vec_pretty(&running)?)?;
    Ok(running)
}

/// The scheduler's work for a running scenario, with the run's seed.
pub async fn schedule(state: &StateDir, lab: &LabState, scenario: &Scenario) -> Result<()> {
    let seed = active(state)?.and_then(|a| a.seed).or(scenario.seed);
    play(state, lab, &scenario.faults, seed).await
}

/// Faults with `after:` applied at their time, and infrastructure faults
/// with `for:` cleared at theirs (a service's switch expires by itself).
/// What a detached scheduler runs, for a scenario or `lab fault inject
/// --after`.
pub async fn play(
    state: &StateDir,
    lab: &LabState,
    specs: &[FaultSpec],
    seed: Option<u64>,
) -> Result<()> {
    let started = tokio::time::Instant::now();
    let mut events: Vec<(Duration, &FaultSpec, bool)> = Vec::new();
    for fault in specs {
        let after = duration(&fault.after)?.unwrap_or_default();
        if fault.after.is_some() {
            events.push((after, fault, true));
        }
        if let Some(lasting) = duration(&fault.duration)?
            && faults::find(&fault.kind).is_some()
        {
            events.push((after + lasting, fault, false));
        }
    }
    events.sort_by_key(|e| e.0);
    for (at, fault, on) in events {
        tokio::time::sleep_until(started + at).await;
        let outcome = if on {
            apply(state, lab, fault, seed).await
        } else {
            faults::clear(state, lab, Some(&fault.kind))
                .await
                .map(|_| ())
        };
        match outcome {
            Ok(()) => println!(
                "{} {} at +{}s",
                fault.kind,
                if on { "on" } else { "off" },
                at.as_secs()
            ),
            Err(e) => eprintln!("{}: {e:#}", fault.kind),
        }
    }
    Ok(())
}

/// Starts a detached scheduler for faults given by hand (`lab fault
/// inject --after`, or `--for` on an infrastructure kind).
pub fn spawn_player(state: &StateDir, spec: &FaultSpec) -> Result<u32> {
    let lab_binary = std::env::current_exe().context("cannot find the lab binary")?;
    let mut command = std::process::Command::new(lab_binary);
    command.arg("--state-dir").arg(state.root()).args([
        "fault",
        "play",
        &serde_json::to_string(spec)?,
    ]);
    process::spawn(
        command,
        &state.logs().join(format!("fault-{}.log", spec.kind)),
    )
}

/// Stops the running scenario: its scheduler, its faults (unless the
/// scenario keeps them), the traffic back to the original's pacing.
pub async fn stop(
    state: &StateDir,
    lab: &LabState,
    scenario: Option<&Scenario>,
) -> Result<Option<Active>> {
    let Some(running) = active(state)? else {
        return Ok(None);
    };
    if let Some(pid) = running.scheduler_pid {
        process::stop(
            pid,
            &state.root().display().to_string(),
            libc::SIGTERM,
            Duration::from_secs(5),
        );
    }
    if running.seed.is_some() {
        switches::set_seed(state, lab, None).await?;
    }
    let cleanup = scenario.map(|s| s.cleanup.clone()).unwrap_or_default();
    if cleanup.clear_faults {
        clear_all(state, lab).await?;
    }
    if cleanup.resume_traffic {
        switches::set_traffic(state, lab, &Default::default()).await?;
    }
    std::fs::remove_file(record(state))?;
    Ok(Some(running))
}
