//! Mythical Lab as a library: bring up an instrumented system (`plan`,
//! `runtime`, `state`), break it on purpose (`faults`, `scenario`), and
//! find out why (`query`, `diagnose`, `guide`). The `lab` binary's
//! commands and the web console are two adapters over these calls; neither
//! is imported from here.

pub mod console;
pub mod diagnose;
pub mod faults;
pub mod grafana;
pub mod guide;
pub mod plan;
pub mod query;
pub mod render;
pub mod runtime;
pub mod scenario;
pub mod state;

use std::time::Duration;

/// `15m`, `1h30m`, `90s` or a number of seconds, as every command, scenario
/// file and console form writes a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    lab_backend::params::duration("duration", text)
        .map(|nanos| Duration::from_nanos(nanos as u64))
        .map_err(|e| e.to_string())
}
