//! `memory-leak`: every request of mythical-server keeps 64 KiB it never
//! frees, as a cache without eviction would (up to 96 MiB, so a lab on a
//! laptop is hurt, not killed). Nothing fails at first; the
//! server's resident memory climbs steadily (`process_resident_memory_bytes`
//! on its /metrics) until something gives. Clearing frees it.

use std::sync::Mutex;

use super::{FaultKind, Switchboard};

pub const KIND: FaultKind = FaultKind {
    name: "memory-leak",
    service: "mythical-server",
    summary: "mythical-server keeps 64 KiB per request that it never frees",
    default_rate: 1.0,
};

const PER_REQUEST: usize = 64 * 1024;
const AT_MOST: usize = 96 * 1024 * 1024 / PER_REQUEST;

/// What the leak holds.
#[derive(Debug, Default)]
pub struct Hoard {
    kept: Mutex<Vec<Vec<u8>>>,
}

impl Hoard {
    /// Keeps another block when the fault fires; lets everything go once
    /// it is off.
    pub fn on_request(&self, faults: &Switchboard) {
        if faults.fires(&KIND) {
            let mut kept = self.kept.lock().unwrap();
            if kept.len() < AT_MOST {
                // Written to, so the pages are really resident.
                kept.push(vec![0xbe; PER_REQUEST]);
            }
        } else if !faults.is_on(&KIND) {
            let mut kept = self.kept.lock().unwrap();
            if !kept.is_empty() {
                *kept = Vec::new();
            }
        }
    }
}
