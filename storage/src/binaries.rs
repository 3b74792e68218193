//! Where the machine's PostgreSQL server binaries are, for the native
//! runtime and the tests that start their own Postgres.

use std::path::{Path, PathBuf};
use std::process::Command;

/// No PostgreSQL server binaries on this machine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "PostgreSQL server binaries not found (looked at $PG_BINDIR, `pg_config --bindir`, PATH and \
     /usr/lib/postgresql/*/bin): install PostgreSQL (Debian: `apt-get install postgresql`) or run the lab with Docker"
)]
pub struct BinariesNotFound;

fn has_server(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file()
}

/// `$PG_BINDIR`, `pg_config --bindir`, a folder on PATH holding `initdb`,
/// then the newest `/usr/lib/postgresql/*/bin`.
pub fn find_bindir() -> Result<PathBuf, BinariesNotFound> {
    if let Some(dir) = std::env::var_os("PG_BINDIR").map(PathBuf::from)
        && has_server(&dir)
    {
        return Ok(dir);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server(&dir) {
            return Ok(dir);
        }
    }
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|d| has_server(d))
    {
        return Ok(dir);
    }
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_server(dir))
        .collect();
    candidates.sort();
    candidates.pop().map(|(_, dir)| dir).ok_or(BinariesNotFound)
}
