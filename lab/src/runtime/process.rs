//! Child processes the lab leaves running: started in their own session
//! (so a Ctrl-C in the terminal does not reach them), logged to files, and
//! signalled later only after checking the pid is still the lab's own.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Starts `command` detached, its output appended to `log`; returns its pid.
pub fn spawn(mut command: Command, log: &Path) -> Result<u32> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    command
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    // SAFETY: setsid is async-signal-safe and touches no memory of ours.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {:?}", command.get_program()))?;
    Ok(child.id())
}

/// Whether `pid` runs and its command line holds `marker`: a pid recorded
/// long ago may belong to something else by now.
pub fn is_ours(pid: u32, marker: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    cmdline.contains(marker) && !is_zombie(pid)
}

/// `pid` and every process descended from it (Postgres' backends are the
/// postmaster's children: pausing Postgres means pausing them all).
pub fn tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        if let Some(parent) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
        {
            parents.push((child, parent));
        }
    }
    let mut found = vec![pid];
    let mut at = 0;
    while at < found.len() {
        let parent = found[at];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        at += 1;
    }
    found
}

/// Whether `pid` is stopped by a signal (SIGSTOP: a paused component).
pub fn is_paused(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('T'))
        })
        .unwrap_or(false)
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// `signal`, then SIGKILL if it has not gone within `grace`.
pub fn stop(pid: u32, marker: &str, signal: i32, grace: Duration) {
    stop_together(
        &[Stop {
            pid,
            marker,
            signal,
        }],
        grace,
    );
}

/// One process to stop: its pid, the marker its command line must still
/// hold, and the signal that asks it to end.
#[derive(Debug, Clone, Copy)]
pub struct Stop<'a> {
    pub pid: u32,
    pub marker: &'a str,
    pub signal: i32,
}

/// Asks every process in `stops` to end at once, then waits for them
/// together: each gets `grace` to finish, then SIGKILL. A paused process
/// (SIGSTOP) is continued after its signal, so it can act on it.
pub fn stop_together(stops: &[Stop], grace: Duration) {
    let mut left: Vec<Stop> = stops
        .iter()
        .copied()
        .filter(|s| is_ours(s.pid, s.marker))
        .collect();
    for stop in &left {
        // SAFETY: plain syscalls on a pid verified above to be the lab's.
        unsafe {
            libc::kill(stop.pid as i32, stop.signal);
            libc::kill(stop.pid as i32, libc::SIGCONT);
        }
    }
    let gone_within = |left: &mut Vec<Stop>, limit: Duration| {
        let deadline = Instant::now() + limit;
        loop {
            left.retain(|s| is_ours(s.pid, s.marker));
            if left.is_empty() || Instant::now() >= deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    gone_within(&mut left, grace);
    for stop in &left {
        // SAFETY: as above; the pid was the lab's a moment ago.
        unsafe {
            libc::kill(stop.pid as i32, libc::SIGKILL);
        }
    }
    gone_within(&mut left, Duration::from_secs(5));
}

/// A loopback port: `preferred` when free, else one the kernel picks.
pub fn port(preferred: u16, taken: &[u16]) -> u16 {
    let free =
        |p: u16| !taken.contains(&p) && std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    if free(preferred) {
        return preferred;
    }
    loop {
        let p = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0);
        if p != 0 && free(p) {
            return p;
        }
    }
}

/// The uid and gid Postgres runs as when the lab runs as root (Postgres
/// refuses root): the `postgres` user, else `nobody`.
pub fn postgres_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    for name in ["postgres", "nobody"] {
        let id = |flag: &str| -> Option<u32> {
            let out = Command::new("id").args([flag, name]).output().ok()?;
            String::from_utf8_lossy(&out.stdout).trim().parse().ok()
        };
        if let (Some(uid), Some(gid)) = (id("-u"), id("-g")) {
            return Some((uid, gid));
        }
    }
    None
}

/// Every process (but this one) whose command line holds `marker`: how
/// `lab down` finds a component a killed `lab up` started but never
/// recorded.
pub fn find_by_marker(marker: &str) -> Vec<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me && is_ours(*pid, marker))
        .collect()
}
