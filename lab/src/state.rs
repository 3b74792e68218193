//! The lab's state folder: what runs (pids, ports, endpoints), its logs,
//! Postgres' data, the backend's log, and the per-lab admin token (mode
//! 0600). Two labs with two folders never touch each other.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rand::RngExt;
use serde::{Deserialize, Serialize};

use crate::plan::{Backends, Kind};

#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

/// 32 random bytes in hex: a token or password.
pub fn random_secret() -> String {
    let mut rng = rand::rng();
    (0..32)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

/// One started component as the state file records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Running {
    pub name: String,
    pub pid: u32,
    /// Something in the process' command line that only this lab's process
    /// has, checked before signalling a recorded pid.
    pub marker: String,
    pub endpoints: BTreeMap<String, String>,
    pub log: PathBuf,
    /// Unix seconds.
    pub started_at: u64,
    /// The signal that stops it cleanly (Postgres: SIGINT, its fast
    /// shutdown; a smart shutdown can wait on connections for ever).
    #[serde(default = "default_stop_signal")]
    pub stop_signal: i32,
    /// The container running it, in the docker runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Its memory limit, in the docker runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
}

fn default_stop_signal() -> i32 {
    libc::SIGTERM
}

impl Running {
    /// What it is, from its recorded name; `None` for a name no kind has
    /// (a record written by another version).
    pub fn kind(&self) -> Option<Kind> {
        Kind::named(&self.name)
    }

    /// Its endpoint called `name` (`http`, `query`, `postgres`, …).
    pub fn endpoint(&self, name: &str) -> Option<&str> {
        self.endpoints.get(name).map(String::as_str)
    }

    /// The port of its endpoint `name`: the last `:port` of the URL,
    /// before any path.
    pub fn port(&self, name: &str) -> Option<u16> {
        let url = self.endpoint(name)?;
        let after_host = url.rsplit(':').next()?;
        after_host.split('/').next()?.parse().ok()
    }
}

/// Where a lab's components run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// Processes on this machine, started and watched by the lab.
    Native,
    /// Containers on the Docker engine, made through its API.
    Docker,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Native => "native",
            Runtime::Docker => "docker",
        }
    }

    pub fn named(name: &str) -> Option<Runtime> {
        [Runtime::Native, Runtime::Docker]
            .into_iter()
            .find(|runtime| runtime.as_str() == name)
    }
}

impl std::fmt::Display for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `lab up` left running.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LabState {
    pub runtime: Runtime,
    pub backends: Backends,
    pub components: Vec<Running>,
}

impl LabState {
    /// Its component of `kind`, when it runs one.
    pub fn component(&self, kind: Kind) -> Option<&Running> {
        self.components.iter().find(|c| c.kind() == Some(kind))
    }

    /// The endpoint `name` of its component of `kind`.
    pub fn endpoint(&self, kind: Kind, name: &str) -> Option<&str> {
        self.component(kind)?.endpoint(name)
    }

    /// The port Postgres answers on, on this machine.
    pub fn postgres_port(&self) -> Option<u16> {
        self.component(Kind::Postgres)?.port("postgres")
    }

    /// Grafana's base URL, when the lab runs it.
    pub fn grafana_url(&self) -> Option<&str> {
        self.endpoint(Kind::Grafana, "http")
    }
}

impl StateDir {
    /// `--state-dir`, else `MYTHICAL_LAB_HOME`, else `.mythical-lab` in the
    /// current folder; made absolute so recorded markers stay valid.
    pub fn resolve(flag: Option<PathBuf>) -> Result<StateDir> {
        let root = flag
            .or_else(|| std::env::var_os("MYTHICAL_LAB_HOME").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(".mythical-lab"));
        let root = if root.is_absolute() {
            root
        } else {
            std::env::current_dir()?.join(root)
        };
        Ok(StateDir { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    pub fn postgres_data(&self) -> PathBuf {
        self.root.join("postgres").join("data")
    }

    pub fn backend_data(&self) -> PathBuf {
        self.root.join("backend")
    }

    /// The backends' config files as the docker runtime mounts them.
    pub fn docker_configs(&self) -> PathBuf {
        self.root.join("docker")
    }

    /// Faults the lab applied through the engine or process control, so
    /// `lab fault clear` can undo them.
    pub fn infra_faults(&self) -> PathBuf {
        self.root.join("infra-faults.json")
    }

    fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }

    /// Creates the folder and its parts; world-readable so a Postgres run
    /// as another user can reach its data folder inside.
    pub fn ensure(&self) -> Result<()> {
        for dir in [
            self.root.clone(),
            self.logs(),
            self.root.join("postgres"),
            self.backend_data(),
        ] {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        }
        Ok(())
    }

    /// The lab's admin token, made on first use, readable by its owner only.
    pub fn admin_token(&self) -> Result<String> {
        self.secret("admin-token")
    }

    /// The password of Postgres' read-only role (Grafana's datasource).
    pub fn reader_password(&self) -> Result<String> {
        self.secret("reader-password")
    }

    /// Grafana's admin password: never the well-known default.
    pub fn grafana_password(&self) -> Result<String> {
        self.secret("grafana-admin-password")
    }

    fn secret(&self, name: &str) -> Result<String> {
        let path = self.root.join(name);
        if let Ok(token) = std::fs::read_to_string(&path) {
            return Ok(token.trim().to_owned());
        }
        let token = random_secret();
        let mut file = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        writeln!(file, "{token}")?;
        Ok(token)
    }

    pub fn load(&self) -> Result<Option<LabState>> {
        match std::fs::read_to_string(self.state_file()) {
            Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is damaged: remove it after checking nothing of the lab still runs",
                    self.state_file().display()
                )
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Written after every started component, so a killed `lab up` leaves a
    /// record `lab down` can clean up from.
    pub fn save(&self, state: &LabState) -> Result<()> {
        let tmp = self.root.join("state.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(state)?)?;
        std::fs::rename(&tmp, self.state_file())?;
        Ok(())
    }

    /// Forgets the lab's run: its record, and the scenario and faults
    /// that acted on it, which went with its processes or containers (a
    /// fresh `lab up` does not start with a scenario "running").
    pub fn clear(&self) -> Result<()> {
        for file in [
            self.state_file(),
            self.scenario_record(),
            self.infra_faults(),
        ] {
            match std::fs::remove_file(&file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("could not remove {}", file.display())));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The running scenario, as `lab scenario start` records it.
    pub fn scenario_record(&self) -> PathBuf {
        self.root.join("scenario.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state file as `lab up` writes it: typed on the way in, the same
    /// words on the way out, so a lab recorded by an older `lab` still
    /// comes down.
    #[test]
    fn the_record_reads_typed_and_writes_the_same_words() {
        let text = r#"{
          "runtime": "docker",
          "backends": "lgtm",
          "components": [
            {"name": "postgres", "pid": 0, "marker": "lab-x-postgres",
             "endpoints": {"postgres": "postgres://postgres@127.0.0.1:15433/postgres"},
             "log": "/tmp/x/postgres.log", "started_at": 1, "container": "lab-x-postgres"},
            {"name": "grafana", "pid": 0, "marker": "lab-x-grafana",
             "endpoints": {"http": "http://127.0.0.1:3001"},
             "log": "/tmp/x/grafana.log", "started_at": 1},
            {"name": "from-a-newer-lab", "pid": 0, "marker": "m",
             "endpoints": {}, "log": "/tmp/x/n.log", "started_at": 1}
          ]
        }"#;
        let lab: LabState = serde_json::from_str(text).unwrap();
        assert_eq!(lab.runtime, Runtime::Docker);
        assert_eq!(lab.backends, Backends::Lgtm);
        assert_eq!(lab.postgres_port(), Some(15433));
        assert_eq!(lab.grafana_url(), Some("http://127.0.0.1:3001"));
        assert_eq!(lab.components[0].stop_signal, libc::SIGTERM);
        assert_eq!(lab.components[2].kind(), None);
        assert_eq!(lab.component(Kind::Server), None);
        let written = serde_json::to_value(&lab).unwrap();
        assert_eq!(written["runtime"], "docker");
        assert_eq!(written["backends"], "lgtm");
        let back: LabState = serde_json::from_value(written).unwrap();
        assert_eq!(back, lab);
        assert!(serde_json::from_str::<LabState>(&text.replace("docker", "podman")).is_err());
    }

    #[test]
    fn a_port_is_read_from_any_endpoint_url() {
        let running = |url: &str| Running {
            name: "postgres".into(),
            pid: 1,
            marker: String::new(),
            endpoints: BTreeMap::from([("postgres".to_owned(), url.to_owned())]),
            log: PathBuf::new(),
            started_at: 0,
            stop_signal: libc::SIGINT,
            container: None,
            memory_mib: None,
        };
        assert_eq!(
            running("postgres://postgres@127.0.0.1:5432/postgres").port("postgres"),
            Some(5432)
        );
        assert_eq!(
            running("http://127.0.0.1:4000").port("postgres"),
            Some(4000)
        );
        assert_eq!(running("http://127.0.0.1").port("postgres"), None);
        assert_eq!(running("http://127.0.0.1:99999").port("postgres"), None);
        assert_eq!(running("http://127.0.0.1:4000").port("http"), None);
    }
}
