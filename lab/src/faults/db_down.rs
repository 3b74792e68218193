//! `db-down`: Postgres goes away under the server. Stopped, connections are
//! refused; paused, they hang until the pool's acquire timeout; killed, it
//! crashes as a lost machine would.

use anyhow::{Result, bail};

use super::{Action, InfraKind};
use crate::state::Runtime;

pub const KIND: InfraKind = InfraKind {
    name: "db-down",
    summary: "Postgres stops (or --mode pause / kill): every query of mythical-server fails",
    symptoms: "HTTP 500 on every beast from mythical-server; database spans fail without a SQLSTATE \
               (connection refused or pool timed out); `lab status` shows postgres stopped",
    component,
    action,
    toxics: None,
};

fn component(target: Option<&str>) -> Result<String> {
    match target {
        None | Some("postgres") => Ok("postgres".into()),
        Some(other) => bail!("db-down acts on postgres only, not {other}"),
    }
}

fn action(mode: Option<&str>, runtime: Runtime) -> Result<Action> {
    match mode {
        Some(mode) => Action::parse(mode),
        None if runtime == Runtime::Docker => Ok(Action::Stop),
        None => Ok(Action::Pause),
    }
}
