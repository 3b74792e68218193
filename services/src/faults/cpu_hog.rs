//! `cpu-hog`: the server's request fingerprint is stretched for 30 ms
//! instead of one round (`server::fingerprint::stretch`), as a work factor
//! set far too high would. Requests slow down while the database stays
//! fast; a CPU profile names the function that does the work.

use std::time::Duration;

use super::{FaultKind, Switchboard};

pub const KIND: FaultKind = FaultKind {
    name: "cpu-hog",
    service: "mythical-server",
    summary: "mythical-server stretches each request's fingerprint for ~30 ms of CPU",
    default_rate: 1.0,
};

/// How long this request's fingerprint is stretched: no time at all
/// (one round), or 30 ms when the fault fires.
pub fn stretch_for(faults: &Switchboard) -> Duration {
    if faults.fires(&KIND) {
        Duration::from_millis(30)
    } else {
        Duration::ZERO
    }
}
