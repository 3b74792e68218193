//! Fault kinds the lab applies to the infrastructure rather than through a
//! service's switch: through the engine (docker) or process control
//! (native). Each kind is one file with its parameters, apply, clear and
//! the symptoms it causes; what is applied is recorded in the state folder
//! so `lab fault clear` can undo it.

mod db_down;
mod service_crash;
mod slow_query;
pub mod switches;

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::runtime::{docker, process};
use crate::state::{LabState, Running, StateDir};

/// What an infrastructure fault kind is.
pub struct InfraKind {
    pub name: &'static str,
    pub summary: &'static str,
    /// What a learner sees while it is on.
    pub symptoms: &'static str,
    /// The component it acts on, from `--target` (or its default).
    pub component: fn(Option<&str>) -> Result<String>,
    /// The action from `--mode` (or its default for the runtime).
    pub action: fn(Option<&str>, &str) -> Result<Action>,
}

pub const INFRA_FAULTS: &[&InfraKind] = &[&db_down::KIND, &service_crash::KIND, &slow_query::KIND];

/// Every fault kind the lab knows, in the order a catalogue lists them:
/// the database's own errors first, then infrastructure, network,
/// releases and resources, and the telemetry's own faults last.
pub const KINDS: &[&str] = &[
    "null-name",
    "missing-name",
    "duplicate-name",
    "slow-query",
    "db-down",
    "pool-exhaustion",
    "table-wipe",
    "bad-deploy",
    "cpu-hog",
    "memory-leak",
    "service-crash",
    "broken-propagation",
    "clock-skew",
];

pub fn find(name: &str) -> Option<&'static InfraKind> {
    INFRA_FAULTS.iter().copied().find(|k| k.name == name)
}

/// What is done to the component, and undone on clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Frozen: connections hang (SIGSTOP natively, the cgroup freezer in
    /// docker).
    Pause,
    /// A clean stop: connections are refused.
    Stop,
    /// SIGKILL: a crash.
    Kill,
    /// A detached session holding a lock on a table (the component is the
    /// beast).
    Lock,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Pause => "paused",
            Action::Stop => "stopped",
            Action::Kill => "killed",
            Action::Lock => "locked",
        })
    }
}

impl Action {
    pub fn parse(text: &str) -> Result<Action> {
        match text {
            "pause" => Ok(Action::Pause),
            "stop" => Ok(Action::Stop),
            "kill" => Ok(Action::Kill),
            "lock" => Ok(Action::Lock),
            other => bail!("unknown mode `{other}`: the modes are pause, stop, kill, lock"),
        }
    }
}

/// One applied fault, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    pub kind: String,
    pub component: String,
    pub action: Action,
    /// Unix seconds.
    pub since: u64,
    /// The process holding a lock (`slow-query`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_pid: Option<u32>,
}

fn load(state: &StateDir) -> Result<BTreeMap<String, Applied>> {
    match std::fs::read_to_string(state.infra_faults()) {
        Ok(text) => serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is damaged: remove it (and check the lab with `lab status`)",
                state.infra_faults().display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e.into()),
    }
}

fn save(state: &StateDir, applied: &BTreeMap<String, Applied>) -> Result<()> {
    if applied.is_empty() {
        match std::fs::remove_file(state.infra_faults()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => return Ok(()),
        }
    }
    std::fs::write(state.infra_faults(), serde_json::to_vec_pretty(applied)?)?;
    Ok(())
}

/// The infrastructure faults on now.
pub fn active(state: &StateDir) -> Result<Vec<Applied>> {
    Ok(load(state)?.into_values().collect())
}

fn component<'a>(lab: &'a LabState, name: &str) -> Result<&'a Running> {
    lab.components
        .iter()
        .find(|c| c.name == name)
        .with_context(|| format!("{name} is not part of this lab"))
}

/// Applies `kind` to the running lab.
pub async fn inject(
    state: &StateDir,
    lab: &LabState,
    kind: &InfraKind,
    target: Option<&str>,
    mode: Option<&str>,
) -> Result<Applied> {
    let mut applied = load(state)?;
    if applied.contains_key(kind.name) {
        bail!(
            "{} is already on: `lab fault clear {}` first",
            kind.name,
            kind.name
        );
    }
    let name = (kind.component)(target)?;
    let action = (kind.action)(mode, &lab.runtime)?;
    let holder_pid = if action == Action::Lock {
        Some(lock_holder(state, lab, &name)?)
    } else {
        act(lab, component(lab, &name)?, action, false).await?;
        None
    };
    let record = Applied {
        kind: kind.name.to_owned(),
        component: name,
        action,
        since: crate::runtime::now_secs(),
        holder_pid,
    };
    applied.insert(kind.name.to_owned(), record.clone());
    save(state, &applied)?;
    Ok(record)
}

/// Undoes `kind` (or every infrastructure fault); returns what it undid.
pub async fn clear(state: &StateDir, lab: &LabState, kind: Option<&str>) -> Result<Vec<Applied>> {
    let mut applied = load(state)?;
    let names: Vec<String> = match kind {
        Some(kind) => applied.keys().filter(|k| *k == kind).cloned().collect(),
        None => applied.keys().cloned().collect(),
    };
    let mut undone = Vec::new();
    for name in names {
        let record = applied.remove(&name).expect("listed above");
        if let Some(pid) = record.holder_pid {
            process::stop(
                pid,
                &state.root().display().to_string(),
                libc::SIGTERM,
                std::time::Duration::from_secs(5),
            );
            save(state, &applied)?;
            undone.push(record);
            continue;
        }
        let running = component(lab, &record.component)?;
        act(lab, running, record.action, true).await?;
        save(state, &applied)?;
        wait_healthy(lab, running).await?;
        undone.push(record);
    }
    Ok(undone)
}

/// Starts the detached session that holds the lock (`lab hold-lock`).
fn lock_holder(state: &StateDir, lab: &LabState, beast: &str) -> Result<u32> {
    let port = component(lab, "postgres")?
        .endpoints
        .get("postgres")
        .and_then(|url| url.rsplit(':').next())
        .and_then(|rest| rest.split('/').next())
        .and_then(|port| port.parse::<u16>().ok())
        .context("the lab's record has no Postgres port")?;
    let lab_binary = std::env::current_exe().context("cannot find the lab binary")?;
    let mut command = std::process::Command::new(lab_binary);
    command
        .arg("--state-dir")
        .arg(state.root())
        .args(["hold-lock", beast, "--port", &port.to_string()]);
    process::spawn(command, &state.logs().join("slow-query.log"))
}

/// Waits until a component restored by a clear answers again, so the
/// command returns with the lab whole.
async fn wait_healthy(lab: &LabState, running: &Running) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let engine = if lab.runtime == "docker" {
        Some(docker::Engine::connect().await?)
    } else {
        None
    };
    loop {
        let health = match &engine {
            Some(engine) => docker::health_of(engine, running).await,
            None => crate::runtime::native::health_of(running).await.to_owned(),
        };
        if health == "healthy" {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "{} is {health} 60 s after the fault was cleared: see `lab logs {}`",
                running.name,
                running.name
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use mythical_services::faults::{REQUESTER_FAULTS, SERVER_FAULTS};

    #[test]
    fn the_catalogue_order_names_every_kind_once() {
        let mut listed: Vec<&str> = super::KINDS.to_vec();
        let mut known: Vec<&str> = SERVER_FAULTS
            .iter()
            .chain(REQUESTER_FAULTS)
            .map(|k| k.name)
            .chain(super::INFRA_FAULTS.iter().map(|k| k.name))
            .collect();
        listed.sort_unstable();
        known.sort_unstable();
        assert_eq!(listed, known);
    }
}

/// Does (or with `undo`, undoes) one action on one component.
async fn act(lab: &LabState, running: &Running, action: Action, undo: bool) -> Result<()> {
    if lab.runtime == "docker" {
        let container = running
            .container
            .as_deref()
            .context("the lab's record has no container for this component")?;
        let engine = docker::Engine::connect().await?;
        let docker = &engine.docker;
        let result = match (action, undo) {
            (Action::Pause, false) => docker.pause_container(container).await,
            (Action::Pause, true) => docker.unpause_container(container).await,
            (Action::Stop, false) => {
                docker
                    .stop_container(
                        container,
                        Some(bollard::query_parameters::StopContainerOptions {
                            t: Some(10),
                            ..Default::default()
                        }),
                    )
                    .await
            }
            (Action::Kill, false) => {
                docker
                    .kill_container(
                        container,
                        Some(bollard::query_parameters::KillContainerOptions {
                            signal: "SIGKILL".into(),
                        }),
                    )
                    .await
            }
            (Action::Stop | Action::Kill, true) => docker.start_container(container, None).await,
            (Action::Lock, _) => bail!("a lock is held by its own process, not by the engine"),
        };
        return result.with_context(|| format!("the engine refused to act on {container}"));
    }
    // Natively only a pause can be undone: a stopped process would need
    // the whole start-up again.
    if action == Action::Lock {
        bail!("a lock is held by its own process, not applied to a component");
    }
    if action != Action::Pause {
        bail!(
            "natively a fault can only pause a component (--mode pause); stop and kill need the docker runtime"
        );
    }
    if !process::is_ours(running.pid, &running.marker) {
        bail!("{} is not running (pid {})", running.name, running.pid);
    }
    let signal = if undo { libc::SIGCONT } else { libc::SIGSTOP };
    // The whole tree: a postmaster's backends serve the open connections.
    for pid in process::tree(running.pid) {
        // SAFETY: kill(2) on the lab's own process and its children.
        if unsafe { libc::kill(pid as i32, signal) } != 0 {
            bail!(
                "cannot signal {} (pid {pid}): {}",
                running.name,
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}
