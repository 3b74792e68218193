//! The commands: each parses into typed arguments and calls the library.

pub mod backend;
pub mod console;
pub mod control;
pub mod diagnose;
pub mod export;
pub mod images;
pub mod inspect;
pub mod proxy;
pub mod query;
pub mod scenario;
pub mod stack;

use lab::query::QueryClient;

/// Which backend a read command asks.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// Base URL of the query APIs (Tempo, Loki and Prometheus paths under
    /// one URL). Default: the running lab's backends (Tempo, Loki and Mimir
    /// in the Grafana stack), else the embedded backend's usual port.
    #[arg(long, env = "LAB_QUERY_URL")]
    pub url: Option<String>,
}

impl Target {
    pub fn client(&self, state_dir: Option<std::path::PathBuf>) -> anyhow::Result<QueryClient> {
        if let Some(url) = &self.url {
            return Ok(QueryClient::new(url));
        }
        match lab::state::StateDir::resolve(state_dir)?.load()? {
            Some(lab) => QueryClient::for_lab(&lab),
            None => Ok(QueryClient::new(&format!(
                "http://127.0.0.1:{}",
                lab_backend::DEFAULT_QUERY_PORT
            ))),
        }
    }
}
