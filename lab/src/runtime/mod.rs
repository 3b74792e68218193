//! Runtimes execute the stack plan: `native` as processes on this
//! machine, `docker` as containers through the engine's API.

pub mod docker;
pub mod native;
pub mod process;

use crate::state::{LabState, Running, Runtime};

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The lab's own session to its Postgres on loopback (not through the
/// db-proxy): one connection, the original's password, waiting at most
/// `wait` for it. For health checks, diagnosis, guide steps and the lock
/// holder alike.
pub fn postgres_session(port: u16, wait: std::time::Duration) -> mythical_storage::Store {
    mythical_storage::Store::connect_lazy(&mythical_storage::DbConfig {
        host: "127.0.0.1".into(),
        port,
        max_connections: 1,
        acquire_timeout: wait,
        ..mythical_storage::DbConfig::default()
    })
}

/// How a recorded component is doing now, as its runtime sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    /// It runs and its own check answers.
    Healthy,
    /// It runs, but its check does not answer (yet, or any more).
    Unhealthy,
    /// Its container is made but not started.
    Created,
    /// Its container is being restarted by the engine.
    Restarting,
    /// Its process or container is frozen.
    Paused,
    /// It exited, or the recorded process is not this lab's any more.
    Stopped,
    /// Its container is gone.
    Missing,
    /// Its container is dead (the engine could not stop or remove it).
    Dead,
    /// The runtime says something the lab does not know.
    Unknown,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Healthy => "healthy",
            Condition::Unhealthy => "unhealthy",
            Condition::Created => "created",
            Condition::Restarting => "restarting",
            Condition::Paused => "paused",
            Condition::Stopped => "stopped",
            Condition::Missing => "missing",
            Condition::Dead => "dead",
            Condition::Unknown => "unknown",
        }
    }

    /// Its process or container no longer runs at all.
    pub fn is_gone(self) -> bool {
        matches!(
            self,
            Condition::Stopped | Condition::Missing | Condition::Dead
        )
    }

    /// It cannot answer anyone whatever its check says: gone, frozen, or
    /// being restarted.
    pub fn is_out(self) -> bool {
        self.is_gone() || matches!(self, Condition::Paused | Condition::Restarting)
    }

    /// A container's state as the engine names it, when that is not
    /// `running` (which the component's own check then refines).
    pub fn of_container(state: &str) -> Option<Condition> {
        Some(match state {
            "running" => return None,
            "created" => Condition::Created,
            "restarting" => Condition::Restarting,
            "paused" => Condition::Paused,
            "exited" | "removing" => Condition::Stopped,
            "missing" => Condition::Missing,
            "dead" => Condition::Dead,
            _ => Condition::Unknown,
        })
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One component's condition now, by the runtime that runs it (`engine`
/// when that is docker).
pub async fn condition_of(engine: Option<&docker::Engine>, running: &Running) -> Condition {
    match engine {
        Some(engine) => docker::health_of(engine, running).await,
        None => native::health_of(running).await,
    }
}

/// Each component's condition now, in the record's order.
pub async fn conditions(lab: &LabState) -> anyhow::Result<Vec<Condition>> {
    let engine = match lab.runtime {
        Runtime::Docker => Some(docker::Engine::connect().await?),
        Runtime::Native => None,
    };
    let mut out = Vec::with_capacity(lab.components.len());
    for running in &lab.components {
        out.push(condition_of(engine.as_ref(), running).await);
    }
    Ok(out)
}
