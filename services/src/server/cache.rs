//! The server's answer cache: a copy of each request's answer (48 KiB),
//! kept for requests that would ask the same again. It is bounded by the
//! memory the process may use: at most 256 MiB, or three quarters of the
//! room a memory limit (a container's cgroup) leaves. A cache that stops
//! evicting grows with the traffic until that bound, and a heap profile
//! names [`AnswerCache::remember`] as the holder.

use std::sync::{Mutex, OnceLock};

const PER_ANSWER: usize = 48 * 1024;
const AT_MOST_BYTES: u64 = 256 * 1024 * 1024;

/// The answers kept.
#[derive(Debug, Default)]
pub struct AnswerCache {
    kept: Mutex<Vec<Vec<u8>>>,
    /// How many answers it may keep, decided at the first one.
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

/// Answers the cache may keep: [`AT_MOST_BYTES`], or less under a limit.
fn answers_allowed(limit: Option<u64>, resident: u64) -> usize {
    let bytes = match limit {
        Some(limit) => AT_MOST_BYTES.min(limit.saturating_sub(resident) / 4 * 3),
        None => AT_MOST_BYTES,
    };
    usize::try_from(bytes).unwrap_or(usize::MAX) / PER_ANSWER
}

impl AnswerCache {
    /// Keeps a copy of this request's answer, while there is room. The
    /// copy is written to, so its pages are really resident.
    #[inline(never)]
    pub fn remember(&self) {
        let room = *self
            .room
            .get_or_init(|| answers_allowed(memory_limit(), super::resident_bytes()));
        let mut kept = self.kept.lock().unwrap();
        if kept.len() < room {
            kept.push(vec![0xbe; PER_ANSWER]);
        }
    }

    /// Lets every kept answer go.
    pub fn evict_all(&self) {
        let mut kept = self.kept.lock().unwrap();
        if !kept.is_empty() {
            *kept = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_stays_inside_a_memory_limit() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(
            answers_allowed(None, 400 * MIB),
            (256 * MIB) as usize / PER_ANSWER
        );
        // A 128 MiB container with 30 MiB in use: 73.5 MiB of room.
        let room = answers_allowed(Some(128 * MIB), 30 * MIB) * PER_ANSWER;
        assert!(room <= (98 * MIB * 3 / 4) as usize, "{room}");
        assert!(room > (70 * MIB) as usize, "{room}");
        assert_eq!(answers_allowed(Some(100 * MIB), 120 * MIB), 0);
    }
}
