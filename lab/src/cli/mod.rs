//! The commands: each parses into typed arguments and calls the library.

pub mod backend;
pub mod control;
pub mod diagnose;
pub mod inspect;
pub mod query;
pub mod stack;

use std::time::Duration;

/// Which backend a read command asks.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// Base URL of the query APIs (Tempo, Loki and Prometheus paths).
    #[arg(long, env = "LAB_QUERY_URL", default_value_t = format!("http://127.0.0.1:{}", lab_backend::DEFAULT_QUERY_PORT))]
    pub url: String,
}

impl Target {
    pub fn url(&self) -> String {
        self.url.clone()
    }
}

/// `15m`, `1h30m`, `90s` or a number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    lab_backend::params::duration("duration", text)
        .map(|nanos| Duration::from_nanos(nanos as u64))
        .map_err(|e| e.to_string())
}
