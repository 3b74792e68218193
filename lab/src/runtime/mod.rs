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

/// The lab's own session to its Postgres on loopback (not through the
/// db-proxy): one connection, the original's password, waiting at most
/// `wait` for it. For health checks, diagnosis, guide steps and the lock
/// holder alike.
pub fn postgres_session(port: u16, wait: std::time::Duration) -> mythical_storage::Store {
    mythical_storage::Store::connect_lazy(&mythical_storage::DbConfig {
        host: "127.0.0.1".into(),
        port,
        max_connections: 1,
        acquire_timeout: wait,
        ..mythical_storage::DbConfig::default()
    })
}
