//! A request's fingerprint: its beast's name hashed with FNV-1a, stretched
//! over and over for at least a given time, as a key-derivation function
//! calibrated by time is. Normally the time is zero and one round is done;
//! a stretch that is set too long costs every request that much CPU, and a
//! CPU profile names this function, as it would in any service.

use std::time::{Duration, Instant};

/// The fingerprint of `seed`, stretched for at least `for_at_least` (one
/// round when that is zero).
#[inline(never)]
pub fn stretch(seed: &[u8], for_at_least: Duration) -> u64 {
    let mut hash = round(seed, 0xcbf2_9ce4_8422_2325);
    if for_at_least.is_zero() {
        // Every request comes here: no clock read for the usual one round.
        return hash;
    }
    let started = Instant::now();
    while started.elapsed() < for_at_least {
        for _ in 0..10_000 {
            hash = round(seed, hash);
        }
        hash = std::hint::black_box(hash);
    }
    hash
}

/// One round of FNV-1a over `seed`, from `hash`.
#[inline(always)]
fn round(seed: &[u8], mut hash: u64) -> u64 {
    for byte in seed {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_round_is_fnv_1a_and_stretching_changes_it() {
        // FNV-1a of "a", the published test vector.
        assert_eq!(stretch(b"a", Duration::ZERO), 0xaf63_dc4c_8601_ec8c);
        let started = Instant::now();
        let stretched = stretch(b"owlbear", Duration::from_millis(5));
        assert!(started.elapsed() >= Duration::from_millis(5));
        assert_ne!(stretched, stretch(b"owlbear", Duration::ZERO));
    }
}
