//! Fault kinds the lab applies to the infrastructure rather than through a
//! service's switch: through the engine (docker), process control
//! (native) or the db-proxy's admin API (the network). Each kind is one
//! file with its parameters, apply, clear and the symptoms it causes
//! (`pub const KIND: InfraKind`), listed in [`INFRA_FAULTS`] by the build
//! script; what is applied is recorded in the state folder so `lab fault
//! clear` can undo it.

pub mod switches;

include!(concat!(env!("OUT_DIR"), "/infra_kinds.rs"));

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use lab_proxy::Toxics;
use serde::{Deserialize, Serialize};

use crate::runtime::{Condition, docker, process};
use crate::state::{LabState, Running, Runtime, StateDir};

/// What an infrastructure fault kind is.
pub struct InfraKind {
    pub name: &'static str,
    pub summary: &'static str,
    /// What a learner sees while it is on.
    pub symptoms: &'static str,
    /// The component it acts on, from `--target` (or its default).
    pub component: fn(Option<&str>) -> Result<String>,
    /// The action from `--mode` (or its default for the runtime).
    pub action: fn(Option<&str>, Runtime) -> Result<Action>,
    /// A network kind: the db-proxy's toxics from `--param key=value`.
    /// `None` for a kind that takes no parameters.
    pub toxics: Option<fn(&Params) -> Result<Toxics>>,
}

/// The component of every kind the db-proxy plays: the db-proxy itself.
pub fn proxy_component(target: Option<&str>) -> Result<String> {
    match target {
        None | Some("db-proxy") => Ok("db-proxy".into()),
        Some(other) => bail!("a network fault acts on the db-proxy only, not {other}"),
    }
}

/// The one action of every kind the db-proxy plays: a toxic.
pub fn toxic_action(mode: Option<&str>, _runtime: Runtime) -> Result<Action> {
    match mode {
        None | Some("toxic") => Ok(Action::Toxic),
        Some(other) => bail!("a network fault has one mode, toxic, not {other}"),
    }
}

/// `--param key=value` pairs (a scenario's `params:`), as given.
pub type Params = BTreeMap<String, String>;

/// Every fault kind the lab knows, the services' and the
/// infrastructure's, by name.
pub fn kinds() -> Vec<&'static str> {
    let mut all: Vec<&str> = mythical_services::faults::ALL
        .iter()
        .map(|k| k.name)
        .chain(INFRA_FAULTS.iter().map(|k| k.name))
        .collect();
    all.sort_unstable();
    all
}

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
    /// Toxics set on the db-proxy through its admin API.
    Toxic,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Pause => "paused",
            Action::Stop => "stopped",
            Action::Kill => "killed",
            Action::Lock => "locked",
            Action::Toxic => "degraded",
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
            "toxic" => Ok(Action::Toxic),
            other => bail!("unknown mode `{other}`: the modes are pause, stop, kill, lock, toxic"),
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
    /// The toxics a network kind set on the db-proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toxics: Option<Toxics>,
}

/// Reads one parameter, or its default when absent.
fn param<T: std::str::FromStr>(params: &Params, key: &str, default: T, wants: &str) -> Result<T> {
    match params.get(key) {
        None => Ok(default),
        Some(text) => text
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("--param {key}={text}: expected {wants}")),
    }
}

/// Refuses a parameter the kind does not know (a typo never passes
/// silently).
fn known_params(kind: &str, params: &Params, known: &[&str]) -> Result<()> {
    if let Some(unknown) = params.keys().find(|k| !known.contains(&k.as_str())) {
        bail!(
            "{kind} has no parameter `{unknown}`: its parameters are {}",
            known.join(", ")
        );
    }
    Ok(())
}

/// The toxics of every network fault on at once: each sets its own
/// fields, so latency and resets add up on the one proxy.
fn combined<'a>(all: impl IntoIterator<Item = &'a Toxics>) -> Toxics {
    let mut out = Toxics::default();
    for t in all {
        if t.latency > 0 || t.jitter > 0 || t.bandwidth.is_some() {
            out.direction = t.direction;
        }
        out.latency = out.latency.max(t.latency);
        out.jitter = out.jitter.max(t.jitter);
        out.seed = out.seed.or(t.seed);
        out.reset = out.reset.max(t.reset);
        out.reset_after_bytes = out.reset_after_bytes.max(t.reset_after_bytes);
        out.existing |= t.existing;
        out.bandwidth = out.bandwidth.or(t.bandwidth);
        out.down |= t.down;
    }
    out
}

/// Replaces the db-proxy's toxics (none left: clears them).
async fn set_toxics(state: &StateDir, proxy: &Running, toxics: &Toxics) -> Result<()> {
    let admin = proxy
        .endpoints
        .get("admin")
        .with_context(|| format!("the lab's record has no admin API for {}", proxy.name))?;
    let url = format!("{admin}/toxics");
    let token = state.admin_token()?;
    if *toxics == Toxics::default() {
        switches::delete(url, &token).await?;
    } else {
        switches::put::<serde::de::IgnoredAny>(url, &token, toxics)
            .await
            .with_context(|| format!("{} refused the toxics", proxy.name))?;
    }
    Ok(())
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
    params: &Params,
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
    let action = (kind.action)(mode, lab.runtime)?;
    let toxics = match kind.toxics {
        Some(toxics) => Some(toxics(params)?),
        None if params.is_empty() => None,
        None => bail!("{} takes no --param", kind.name),
    };
    let mut holder_pid = None;
    match (action, &toxics) {
        (Action::Lock, _) => holder_pid = Some(lock_holder(state, lab, &name)?),
        (Action::Toxic, Some(toxics)) => {
            let on = applied
                .values()
                .filter(|a| a.component == name)
                .filter_map(|a| a.toxics.as_ref());
            set_toxics(state, component(lab, &name)?, &combined(on.chain([toxics]))).await?;
        }
        (Action::Toxic, None) => bail!("{} sets no toxics", kind.name),
        _ => act(lab, component(lab, &name)?, action, false).await?,
    }
    let record = Applied {
        kind: kind.name.to_owned(),
        component: name,
        action,
        since: crate::runtime::now_secs(),
        holder_pid,
        toxics,
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
        if record.action == Action::Toxic {
            let left = applied
                .values()
                .filter(|a| a.component == record.component)
                .filter_map(|a| a.toxics.as_ref());
            set_toxics(state, running, &combined(left)).await?;
            save(state, &applied)?;
            undone.push(record);
            continue;
        }
        act(lab, running, record.action, true).await?;
        save(state, &applied)?;
        wait_healthy(lab, running).await?;
        undone.push(record);
    }
    Ok(undone)
}

/// Starts the detached session that holds the lock (`lab hold-lock`).
fn lock_holder(state: &StateDir, lab: &LabState, beast: &str) -> Result<u32> {
    let port = lab
        .postgres_port()
        .context("the lab's record has no Postgres port")?;
    let lab_binary = std::env::current_exe().context("cannot find the lab binary")?;
    let mut command = std::process::Command::new(lab_binary);
    command.arg("--state-dir").arg(state.root()).args([
        "hold-lock",
        beast,
        "--port",
        &port.to_string(),
    ]);
    process::spawn(command, &state.logs().join("slow-query.log"))
}

/// Waits until a component restored by a clear answers again, so the
/// command returns with the lab whole.
async fn wait_healthy(lab: &LabState, running: &Running) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let engine = match lab.runtime {
        Runtime::Docker => Some(docker::Engine::connect().await?),
        Runtime::Native => None,
    };
    loop {
        let health = crate::runtime::condition_of(engine.as_ref(), running).await;
        if health == Condition::Healthy {
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

/// Does (or with `undo`, undoes) one action on one component.
async fn act(lab: &LabState, running: &Running, action: Action, undo: bool) -> Result<()> {
    if lab.runtime == Runtime::Docker {
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
            (Action::Toxic, _) => bail!("toxics are set through the db-proxy's admin API"),
        };
        return result.with_context(|| format!("the engine refused to act on {container}"));
    }
    // Natively only a pause can be undone: a stopped process would need
    // the whole start-up again.
    if matches!(action, Action::Lock | Action::Toxic) {
        bail!("a lock or a toxic is applied by its own means, not to a process");
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

#[cfg(test)]
mod tests {
    #[test]
    fn every_kind_is_named_once_across_the_services_and_the_infrastructure() {
        let all = super::kinds();
        let mut unique = all.clone();
        unique.dedup();
        assert_eq!(all, unique);
        assert_eq!(all.len(), 15, "{all:?}");
    }

    #[test]
    fn network_faults_on_together_add_up_on_the_one_proxy() {
        let latency = super::Toxics {
            latency: 300,
            jitter: 100,
            seed: Some(3),
            direction: lab_proxy::Direction::Upstream,
            ..Default::default()
        };
        let reset = super::Toxics {
            reset: 1.0,
            reset_after_bytes: 64,
            existing: true,
            ..Default::default()
        };
        let both = super::combined([&latency, &reset]);
        assert_eq!((both.latency, both.jitter, both.seed), (300, 100, Some(3)));
        assert_eq!(both.direction, lab_proxy::Direction::Upstream);
        assert_eq!(
            (both.reset, both.reset_after_bytes, both.existing),
            (1.0, 64, true)
        );
        assert_eq!(super::combined([&reset]).latency, 0);
        assert_eq!(super::combined([]), super::Toxics::default());
    }
}
