//! `memory-leak`: every request of mythical-server keeps 48 KiB it never
//! frees, as a cache without eviction would. Nothing fails at first; the
//! server's resident memory (`process_resident_memory_bytes` on its
//! /metrics) climbs by several MiB between two scrapes, steadily and in
//! step with the traffic — which a program's natural growth (a warm-up, a
//! jump now and then) never does — until something gives. The hoard stops
//! at 256 MiB, or at three quarters of the room its memory limit (a
//! container's cgroup) leaves, so a lab is hurt, not killed. Clearing
//! frees it.

use std::sync::{Mutex, OnceLock};

use super::{FaultKind, Switchboard};

pub const KIND: FaultKind = FaultKind {
    name: "memory-leak",
    service: "mythical-server",
    summary: "mythical-server keeps 48 KiB per request that it never frees",
    default_rate: 1.0,
};

const PER_REQUEST: usize = 48 * 1024;
const AT_MOST_BYTES: u64 = 256 * 1024 * 1024;

/// What the leak holds.
#[derive(Debug, Default)]
pub struct Hoard {
    kept: Mutex<Vec<Vec<u8>>>,
    /// How many blocks it may keep, decided at the first one.
    room: OnceLock<usize>,
}

/// The cgroup's memory limit, when the process has one (cgroup v2, then
/// v1; "max" or a v1 limit near `u64::MAX` is none).
fn memory_limit() -> Option<u64> {
    [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|path| {
        std::fs::read_to_string(path)
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()
    })
    .filter(|limit| *limit < 1 << 40)
}

/// Blocks the hoard may keep: [`AT_MOST_BYTES`], or less under a limit.
fn blocks_allowed(limit: Option<u64>, resident: u64) -> usize {
    let bytes = match limit {
        Some(limit) => AT_MOST_BYTES.min(limit.saturating_sub(resident) / 4 * 3),
        None => AT_MOST_BYTES,
    };
    usize::try_from(bytes).unwrap_or(usize::MAX) / PER_REQUEST
}

/// The block a request leaves behind: its own frame, so the heap profile
/// names it. Written to, so the pages are really resident.
#[inline(never)]
fn keep_forever() -> Vec<u8> {
    vec![0xbe; PER_REQUEST]
}

impl Hoard {
    /// Keeps another block when the fault fires; lets everything go once
    /// it is off.
    pub fn on_request(&self, faults: &Switchboard) {
        if faults.fires(&KIND) {
            let room = *self
                .room
                .get_or_init(|| blocks_allowed(memory_limit(), crate::server::resident_bytes()));
            let mut kept = self.kept.lock().unwrap();
            if kept.len() < room {
                kept.push(keep_forever());
            }
        } else if !faults.is_on(&KIND) {
            let mut kept = self.kept.lock().unwrap();
            if !kept.is_empty() {
                *kept = Vec::new();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hoard_stays_inside_a_memory_limit() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(
            blocks_allowed(None, 400 * MIB),
            (256 * MIB) as usize / PER_REQUEST
        );
        // A 128 MiB container with 30 MiB in use: 73.5 MiB of room.
        let room = blocks_allowed(Some(128 * MIB), 30 * MIB) * PER_REQUEST;
        assert!(room <= (98 * MIB * 3 / 4) as usize, "{room}");
        assert!(room > (70 * MIB) as usize, "{room}");
        assert_eq!(blocks_allowed(Some(100 * MIB), 120 * MIB), 0);
    }
}
