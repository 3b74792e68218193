//! `service-crash`: a mythical service dies (SIGKILL, as the OOM killer
//! would). The server gone, the requester's calls are refused; the
//! requester gone, traffic stops.

use anyhow::{Result, bail};

use super::{Action, InfraKind};
use crate::state::Runtime;

pub const KIND: InfraKind = InfraKind {
    name: "service-crash",
    summary: "mythical-server (or --target mythical-requester) is killed",
    symptoms: "the requester's calls fail with connection refused and no server span; \
               `lab status` shows the service stopped",
    component,
    action,
    toxics: None,
};

fn component(target: Option<&str>) -> Result<String> {
    match target {
        None | Some("mythical-server") => Ok("mythical-server".into()),
        Some("mythical-requester") => Ok("mythical-requester".into()),
        Some(other) => {
            bail!("service-crash acts on mythical-server or mythical-requester, not {other}")
        }
    }
}

fn action(mode: Option<&str>, _runtime: Runtime) -> Result<Action> {
    match mode {
        None | Some("kill") => Ok(Action::Kill),
        Some(other) => Action::parse(other),
    }
}
