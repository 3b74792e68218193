//! Runtimes execute the stack plan: `native` as processes on this
//! machine, `docker` as containers through the engine's API.

pub mod docker;
pub mod native;
pub mod process;

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
