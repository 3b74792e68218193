//! `slow-query`: a session holds an EXCLUSIVE lock on one beast's table
//! for two seconds out of every two and a half, as a long migration or a
//! forgotten batch job would. Reads go on; every INSERT and DELETE on that
//! table waits behind the lock. Postgres' `pg_stat_activity` shows the
//! blocker and its waiters.

use anyhow::{Result, bail};

use super::{Action, InfraKind};
use crate::state::Runtime;

pub const KIND: InfraKind = InfraKind {
    name: "slow-query",
    summary: "a session holds a lock on owlbear (or --target <beast>): its INSERTs and DELETEs wait",
    symptoms: "POST and DELETE on one beast take seconds; its database spans are slow while GETs stay fast; \
               pg_stat_activity shows sessions waiting on a lock",
    component,
    action,
    toxics: None,
};

fn component(target: Option<&str>) -> Result<String> {
    let beast = target.unwrap_or("owlbear");
    if beast.parse::<mythical_storage::Beast>().is_err() {
        bail!(
            "slow-query locks a beast's table: unicorn, manticore, illithid, owlbear or beholder, not {beast}"
        );
    }
    Ok(beast.to_owned())
}

fn action(mode: Option<&str>, _runtime: Runtime) -> Result<Action> {
    match mode {
        None | Some("lock") => Ok(Action::Lock),
        Some(other) => bail!("slow-query has one mode, lock, not {other}"),
    }
}
