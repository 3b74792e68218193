//! Settings from the environment, with the original's variable names where
//! it had them, so each binary runs alone as the original's containers do.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result};
use mythical_storage::DbConfig;

/// A variable's value, `None` when unset or empty.
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Parses a variable, naming it and the expected form when it is wrong.
pub fn env_parse<T: FromStr>(name: &str, expected: &str) -> Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    env_var(name)
        .map(|raw| {
            raw.trim()
                .parse::<T>()
                .map_err(|e| anyhow::anyhow!("{name}={raw} is not {expected}: {e}"))
        })
        .transpose()
}

pub fn env_flag(name: &str) -> bool {
    env_var(name)
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

/// `MYTHICAL_DATABASE_HOST`, `_HOST_PORT`, `_USER`, `_PASSWORD` as the
/// original reads them, plus `MYTHICAL_DATABASE_NAME` and
/// `MYTHICAL_DATABASE_POOL_SIZE`.
pub fn db_config_from_env() -> Result<DbConfig> {
    let defaults = DbConfig::default();
    Ok(DbConfig {
        host: env_var("MYTHICAL_DATABASE_HOST").unwrap_or(defaults.host),
        port: env_parse("MYTHICAL_DATABASE_HOST_PORT", "a port number")?.unwrap_or(defaults.port),
        user: env_var("MYTHICAL_DATABASE_USER").unwrap_or(defaults.user),
        password: env_var("MYTHICAL_DATABASE_PASSWORD").unwrap_or(defaults.password),
        database: env_var("MYTHICAL_DATABASE_NAME").unwrap_or(defaults.database),
        max_connections: env_parse("MYTHICAL_DATABASE_POOL_SIZE", "a number of connections")?
            .unwrap_or(defaults.max_connections),
        acquire_timeout: env_parse::<u64>("MYTHICAL_DATABASE_ACQUIRE_TIMEOUT_MS", "milliseconds")?
            .map(Duration::from_millis)
            .unwrap_or(defaults.acquire_timeout),
        query_timeout: env_parse::<u64>("MYTHICAL_DATABASE_QUERY_TIMEOUT_MS", "milliseconds")?
            .map(Duration::from_millis)
            .unwrap_or(defaults.query_timeout),
    })
}

/// A listen address from a variable holding either `host:port` or a bare
/// port (bound on 127.0.0.1, so nothing is open to the network unless the
/// user says so).
pub fn listen_addr(name: &str, default_port: u16) -> Result<SocketAddr> {
    match env_var(name) {
        None => Ok(SocketAddr::from(([127, 0, 0, 1], default_port))),
        Some(raw) => {
            if let Ok(port) = raw.parse::<u16>() {
                return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
            }
            raw.parse()
                .with_context(|| format!("{name}={raw} is not host:port or a port number"))
        }
    }
}
