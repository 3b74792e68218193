//! `memory-leak`: the server's answer cache (`server::cache`) stops
//! evicting, so every request of mythical-server leaves 48 KiB behind.
//! Nothing fails at first; the server's resident memory
//! (`process_resident_memory_bytes` on its /metrics) climbs by several MiB
//! between two scrapes, steadily and in step with the traffic — which a
//! program's natural growth (a warm-up, a jump now and then) never does —
//! until the cache's own bound (256 MiB, or three quarters of the room a
//! memory limit leaves), so a lab is hurt, not killed. Clearing the fault
//! lets the cache evict again, and the memory goes.

use super::{FaultKind, Switchboard};

pub const KIND: FaultKind = FaultKind {
    name: "memory-leak",
    service: "mythical-server",
    summary: "mythical-server's answer cache keeps 48 KiB per request and never evicts",
    default_rate: 1.0,
};

/// What the answer cache does with this request: keep its answer (the
/// fault fires), evict everything (the fault is off), or nothing (on, but
/// this request is spared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caching {
    Keep,
    EvictAll,
    Nothing,
}

pub fn caching(faults: &Switchboard) -> Caching {
    if faults.fires(&KIND) {
        Caching::Keep
    } else if !faults.is_on(&KIND) {
        Caching::EvictAll
    } else {
        Caching::Nothing
    }
}
