//! `cpu-hog`: every request of mythical-server spends about 30 ms of CPU in
//! `hash_the_hoard`, a function that hashes the beast's name over and over.
//! Requests slow down while the database stays fast; a CPU profile names
//! the function.

use super::{FaultKind, Switchboard};

pub const KIND: FaultKind = FaultKind {
    name: "cpu-hog",
    service: "mythical-server",
    summary: "mythical-server burns ~30 ms of CPU per request in hash_the_hoard",
    default_rate: 1.0,
};

/// Burns CPU when the fault fires; returns the hash so the work is not
/// optimised away.
pub fn maybe_burn(faults: &Switchboard, seed: &str) -> u64 {
    if faults.fires(&KIND) {
        hash_the_hoard(seed, std::time::Duration::from_millis(30))
    } else {
        0
    }
}

/// The hot function a profile shows.
#[inline(never)]
pub fn hash_the_hoard(seed: &str, for_at_least: std::time::Duration) -> u64 {
    let started = std::time::Instant::now();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    while started.elapsed() < for_at_least {
        for _ in 0..10_000 {
            for byte in seed.bytes() {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        hash = std::hint::black_box(hash);
    }
    hash
}
