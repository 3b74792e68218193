//! A real PostgreSQL server for tests, from the machine's own binaries:
//! initdb into a temporary folder, started on a free loopback port.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};

/// Where PostgreSQL's server binaries are (see
/// [`mythical_storage::binaries::find_bindir`]).
pub fn find_bindir() -> Result<PathBuf> {
    Ok(mythical_storage::binaries::find_bindir()?)
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("the kernel hands out a free loopback port")
}

/// The uid and gid Postgres runs as: Postgres refuses to run as root, so a
/// root test process hands the server to the `postgres` user (or `nobody`).
fn server_user() -> Option<(u32, u32)> {
    let euid = effective_uid();
    if euid != 0 {
        return None;
    }
    for name in ["postgres", "nobody"] {
        let out = Command::new("id").args(["-u", name]).output().ok()?;
        let gid = Command::new("id").args(["-g", name]).output().ok()?;
        if out.status.success() && gid.status.success() {
            let uid = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
            let gid = String::from_utf8_lossy(&gid.stdout).trim().parse().ok()?;
            return Some((uid, gid));
        }
    }
    None
}

/// The effective uid, read from /proc so the kit needs no libc binding.
fn effective_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2))
                .and_then(|uid| uid.parse().ok())
        })
        .unwrap_or(0)
}

/// A running PostgreSQL, stopped and deleted when dropped.
pub struct TestPostgres {
    bindir: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    user: Option<(u32, u32)>,
    /// Postgres' own durability defaults (fsync on); tests turn fsync off
    /// for speed, benchmarks keep it to measure what a real lab does.
    durable: bool,
}

impl TestPostgres {
    /// initdb and start. The superuser is `postgres` with password
    /// `mythical` (the original's credentials), trust auth on loopback.
    pub fn start() -> Result<TestPostgres> {
        TestPostgres::start_with(false)
    }

    /// As [`TestPostgres::start`], with fsync on as a default Postgres has
    /// it: for benchmarks that compare with a real installation.
    pub fn start_durable() -> Result<TestPostgres> {
        TestPostgres::start_with(true)
    }

    fn start_with(durable: bool) -> Result<TestPostgres> {
        let bindir = find_bindir()?;
        let dir = tempfile::Builder::new().prefix("lab-pg-").tempdir()?;
        let user = server_user();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data)?;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
            std::os::unix::fs::chown(&data, Some(uid), Some(gid))?;
        }
        let pg = TestPostgres {
            bindir,
            dir,
            port: free_port(),
            user,
            durable,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
        )?;
        pg.start_server()?;
        Ok(pg)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// `postgres://postgres:mythical@127.0.0.1:<port>/postgres`
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres:mythical@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// Environment that points a mythical service at this server, with the
    /// original's variable names.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("MYTHICAL_DATABASE_HOST", self.host().to_owned()),
            ("MYTHICAL_DATABASE_HOST_PORT", self.port.to_string()),
            ("MYTHICAL_DATABASE_USER", "postgres".to_owned()),
            ("MYTHICAL_DATABASE_PASSWORD", "mythical".to_owned()),
        ]
    }

    /// Starts the server (again) on the same port and data.
    pub fn start_server(&self) -> Result<()> {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("postgres.log");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync={} \
             -c max_connections=200",
            self.port,
            if self.durable { "on" } else { "off" }
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data),
                "-l",
                path_str(&log),
                "-o",
                &options,
                "-w",
                "-t",
                "30",
                "start",
            ],
        )
        .with_context(|| {
            format!(
                "postgres did not start; its log says:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })?;
        Ok(())
    }

    /// Stops the server at once (`-m immediate`, as a crash would).
    pub fn stop_server(&self) -> Result<()> {
        let data = self.dir.path().join("data");
        self.run(
            "pg_ctl",
            &["-D", path_str(&data), "-m", "immediate", "-w", "stop"],
        )?;
        Ok(())
    }

    /// Runs `psql -c sql` as the superuser and returns its unaligned output.
    pub fn psql(&self, sql: &str) -> Result<String> {
        let out = self.run(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<Output> {
        let mut command = Command::new(self.bindir.join(program));
        command.args(args).current_dir(self.dir.path());
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        let out = command
            .output()
            .with_context(|| format!("could not run {}", self.bindir.join(program).display()))?;
        if !out.status.success() {
            bail!(
                "{program} {} failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out)
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let _ = self.stop_server();
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}
