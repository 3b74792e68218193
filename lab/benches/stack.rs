//! The native lab as a newcomer meets it: `lab up` to the first trace
//! queryable, injection to a correct diagnosis, and the memory of every
//! process the lab runs (each component of `lab status`, and the console)
//! after a stretch of the original's traffic. Prints its section of
//! BENCHMARKS.md (and writes it under `BENCH_RESULTS` when set, for
//! `scripts/bench`).
//!
//! cargo bench -p lab --bench stack   (BENCH_MINUTES sets the stretch, default 10; needs curl)

use std::process::Command;
use std::time::{Duration, Instant};

use lab_testkit::{Down, Goal, LabCli, Section};
use serde_json::Value;

/// Proportional set size in kB of `pid` and, for Postgres, its children:
/// shared memory counted once across them, not once per process as RSS
/// would.
fn pss_kb(pid: u32, with_children: bool) -> u64 {
    let own = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Pss:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    };
    let mut total = own(pid);
    if with_children {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            let parent = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            if parent == Some(pid) {
                total += own(child);
            }
        }
    }
    total
}

fn main() {
    let mut section = Section::new("stack");
    let minutes: u64 = section.setting("BENCH_MINUTES", 10);
    // The build that comes before a bench leaves the disk busy writing
    // back, which would land on initdb's flushes: flushed first, and the
    // up timed on three fresh state folders (the median counts); the last
    // lab stays up for the rest.
    let _ = Command::new("sync").status();
    let dir = tempfile::tempdir().unwrap();
    let mut ups = Vec::new();
    let mut traces = Vec::new();
    for round in 0..UP_ROUNDS {
        let lab = LabCli::new(
            env!("CARGO_BIN_EXE_lab"),
            dir.path().join(format!("bench-{round}")),
        );
        let _down = Down(&lab);
        let (up, trace, _) = bring_up(&lab);
        eprintln!(
            "round {round}: up in {:.2} s, first trace at {:.2} s",
            up.as_secs_f64(),
            trace.as_secs_f64()
        );
        ups.push(up);
        traces.push(trace);
        lab.ok(&["down"]);
    }
    let lab = LabCli::new(env!("CARGO_BIN_EXE_lab"), dir.path().join("bench"));
    let _down = Down(&lab);
    let (up, trace, status) = bring_up(&lab);
    ups.push(up);
    traces.push(trace);
    ups.sort();
    traces.sort();
    let up_time = ups[ups.len() / 2];
    let first_trace = traces[traces.len() / 2];
    let components = status["components"]
        .as_array()
        .expect("components in `lab status --json`");
    let query = backend_query(&status);

    eprintln!(
        "up in {:.2} s, first trace at {:.2} s; {minutes} min of traffic before the memory is read",
        up_time.as_secs_f64(),
        first_trace.as_secs_f64()
    );

    // Every process `lab up` started: the stack's components, each by its
    // pid in `lab status`, and the console beside them.
    let mut processes: Vec<(String, u32)> = components
        .iter()
        .map(|c| {
            let name = c["name"].as_str().expect("a component's name");
            let pid = c["pid"].as_u64().expect("a native component's pid") as u32;
            (name.to_owned(), pid)
        })
        .collect();
    if let Some(pid) = console_pid(&lab.state) {
        processes.push(("console".to_owned(), pid));
    }

    std::thread::sleep(Duration::from_secs(minutes * 60));
    let memory: Vec<(String, u64)> = processes
        .iter()
        .map(|(name, pid)| (name.clone(), pss_kb(*pid, name == "postgres")))
        .collect();
    let total_kb: u64 = memory.iter().map(|(_, kb)| kb).sum();
    let held = backend_figures(&query);

    let injected = Instant::now();
    lab.ok(&["fault", "inject", "null-name", "--rate", "1"]);
    loop {
        let report: Value =
            serde_json::from_slice(&lab.run(&["diagnose", "--json"]).stdout).unwrap_or(Value::Null);
        if report["root_cause"]["id"] == "null-name" {
            break;
        }
        assert!(
            injected.elapsed() < Duration::from_secs(60),
            "no diagnosis within a minute: {report}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let diagnosis = injected.elapsed();
    let stopping = Instant::now();
    lab.ok(&["down"]);
    let down_time = stopping.elapsed();

    section.paragraph(format!(
        "The release `lab` binary, a fresh state folder, the original's traffic; memory as PSS after {minutes} min of it, for the {} components of `lab status` and the console.",
        components.len()
    ));
    section.table(&["what", "result"]);
    section.row([
        "`lab up --runtime native` (fresh state folder, initdb included; median of 3)".to_owned(),
        format!("{:.2} s", up_time.as_secs_f64()),
    ]);
    section.row([
        "`lab up` to the first trace queryable (median of 3)".to_owned(),
        format!("{:.2} s", first_trace.as_secs_f64()),
    ]);
    section.row([
        "`lab fault inject null-name` to `lab diagnose` naming it".to_owned(),
        format!("{:.2} s", diagnosis.as_secs_f64()),
    ]);
    section.row([
        "`lab down`".to_owned(),
        format!("{:.2} s", down_time.as_secs_f64()),
    ]);
    section.table(&[&format!("PSS after {minutes} min of traffic"), "MB"]);
    for (name, kb) in &memory {
        let label = match name.as_str() {
            "postgres" => "postgres (with its backends)".to_owned(),
            "console" => "console (`lab console serve`)".to_owned(),
            other => other.to_owned(),
        };
        section.row([label, mb(*kb)]);
    }
    section.row([format!("total, {} processes", memory.len()), mb(total_kb)]);
    let stored: f64 = held
        .iter()
        .filter(|(name, _)| name.starts_with("lab_backend_stored_bytes"))
        .map(|(_, v)| v)
        .sum();
    let reach = |signal: &str| {
        held.iter()
            .find(|(name, _)| {
                name.starts_with("lab_backend_oldest_age_seconds")
                    && name.contains(&format!("\"{signal}\""))
            })
            .map_or(0.0, |(_, v)| v / 60.0)
    };
    section.paragraph(format!(
        "Then the backend held {:.1} MiB of telemetry (its bound: {:.0} MiB, counted as malloc hands it out), reaching back {:.1} min for traces, {:.1} for logs, {:.1} for metrics and {:.1} for profiles.",
        stored / 1048576.0,
        held.iter()
            .find(|(name, _)| name == "lab_backend_max_stored_bytes")
            .map_or(0.0, |(_, v)| v / 1048576.0),
        reach("traces"),
        reach("logs"),
        reach("metrics"),
        reach("profiles"),
    ));

    let total_mb = total_kb as f64 / 1024.0;
    let largest_service = memory
        .iter()
        .filter(|(name, _)| name.starts_with("mythical-"))
        .max_by_key(|(_, kb)| *kb)
        .expect("the two services");
    let largest_service_mb = largest_service.1 as f64 / 1024.0;
    section.goals(&[
        Goal::new(
            "up to the first trace ≤ 2 s",
            first_trace <= Duration::from_secs(2),
            format!("{:.2} s", first_trace.as_secs_f64()),
        ),
        Goal::new(
            "`lab down` ≤ 2 s",
            down_time <= Duration::from_secs(2),
            format!("{:.2} s", down_time.as_secs_f64()),
        ),
        Goal::new(
            "inject → correct diagnosis ≤ 10 s",
            diagnosis <= Duration::from_secs(10),
            format!("{:.2} s", diagnosis.as_secs_f64()),
        ),
        Goal::new(
            "the whole lab ≤ 150 MB",
            total_mb <= 150.0,
            format!("{total_mb:.1} MB"),
        ),
        Goal::new(
            "each service ≤ 30 MB",
            largest_service_mb <= 30.0,
            format!("{largest_service_mb:.1} MB, {}", largest_service.0),
        ),
    ]);
    section.finish();
}

/// The backend's own `/metrics`: each sample's name with its labels, and
/// its value.
fn backend_figures(query: &str) -> Vec<(String, f64)> {
    let out = Command::new("curl")
        .args(["-fsS", &format!("{query}/metrics")])
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "the backend's /metrics did not answer"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// Fresh ups timed before the one that stays up (so the median is of
/// `UP_ROUNDS + 1`).
const UP_ROUNDS: usize = 2;

/// The backend's query URL in `lab status --json`.
fn backend_query(status: &Value) -> String {
    status["components"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "backend"))
        .and_then(|c| c["endpoints"]["query"].as_str())
        .expect("the native lab's backend")
        .to_owned()
}

/// `lab up` on a fresh state folder: how long it took, how long until the
/// first trace was queryable, and `lab status --json` then.
fn bring_up(lab: &LabCli) -> (Duration, Duration, Value) {
    let started = Instant::now();
    lab.ok(&["up", "--runtime", "native"]);
    let up_time = started.elapsed();
    let status: Value = serde_json::from_str(&lab.ok(&["status", "--json"])).unwrap();
    let query = backend_query(&status);
    let first_trace = loop {
        let out = Command::new("curl")
            .args(["-fsS", &format!("{query}/api/search?q=%7B%7D&limit=1")])
            .output()
            .expect("curl runs");
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if answer["traces"].as_array().is_some_and(|t| !t.is_empty()) {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no trace within a minute"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    (up_time, first_trace, status)
}

fn mb(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

/// The console's pid, as `lab up` records it in the state folder
/// (`console.json`), when it started.
fn console_pid(state: &std::path::Path) -> Option<u32> {
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("console.json")).ok()?).ok()?;
    record["pid"].as_u64().map(|p| p as u32)
}
