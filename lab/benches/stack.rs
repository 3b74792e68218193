//! The native lab as a newcomer meets it: `lab up` to the first trace
//! queryable, injection to a correct diagnosis, and the memory of every
//! process after a stretch of the original's traffic.
//!
//! cargo bench -p lab --bench stack   (BENCH_MINUTES sets the stretch, default 10)

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

fn lab(state: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lab"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .output()
        .unwrap()
}

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
    let minutes: u64 = std::env::var("BENCH_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("bench");

    let started = Instant::now();
    let up = lab(&state, &["up"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let up_time = started.elapsed();
    let status: Value = serde_json::from_slice(&lab(&state, &["status", "--json"]).stdout).unwrap();
    let query = status["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "backend")
        .and_then(|c| c["endpoints"]["query"].as_str())
        .expect("the native lab's backend")
        .to_owned();
    let first_trace = loop {
        let out = Command::new("curl")
            .args(["-fsS", &format!("{query}/api/search?q=%7B%7D&limit=1")])
            .output()
            .unwrap();
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
    println!(
        "| `lab up` (fresh state folder, initdb included) | {:.2} s |",
        up_time.as_secs_f64()
    );
    println!(
        "| `lab up` to the first trace queryable | {:.2} s |",
        first_trace.as_secs_f64()
    );

    std::thread::sleep(Duration::from_secs(minutes * 60));
    let mut total = 0;
    for component in status["components"].as_array().unwrap() {
        let pid = component["pid"].as_u64().unwrap() as u32;
        let name = component["name"].as_str().unwrap();
        let kb = pss_kb(pid, name == "postgres");
        total += kb;
        println!(
            "| memory (PSS) after {minutes} min of traffic: {name}{} | {:.1} MB |",
            if name == "postgres" {
                " (with its backends)"
            } else {
                ""
            },
            kb as f64 / 1024.0
        );
    }
    println!(
        "| memory (PSS) after {minutes} min of traffic: total | {:.1} MB |",
        total as f64 / 1024.0
    );

    let injected = Instant::now();
    assert!(
        lab(&state, &["fault", "inject", "null-name", "--rate", "1"])
            .status
            .success()
    );
    loop {
        let report: Value = serde_json::from_slice(&lab(&state, &["diagnose", "--json"]).stdout)
            .unwrap_or(Value::Null);
        if report["root_cause"]["id"] == "null-name" {
            break;
        }
        assert!(
            injected.elapsed() < Duration::from_secs(60),
            "no diagnosis within a minute: {report}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "| `lab fault inject null-name` to `lab diagnose` naming it | {:.2} s |",
        injected.elapsed().as_secs_f64()
    );
    let _ = lab(&state, &["down", "--volumes"]);
}
