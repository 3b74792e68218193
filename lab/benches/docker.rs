//! The docker runtime with its images present: `lab up` to healthy, first
//! trace queryable, injection to a correct diagnosis, `lab down`, and the
//! memory each container is limited to and actually uses. Prints its
//! section of BENCHMARKS.md (and writes it under `BENCH_RESULTS` when set,
//! for `scripts/bench`).
//!
//! cargo bench -p lab --bench docker   (ROUNDS sets the number of up/down rounds, default 3)
//!
//! No registry is reachable here, so the images are the tests' own: the
//! `lab` binary and the machine's Postgres, built through the engine first.
//! With the Grafana images loaded (`lab images load`), BACKENDS=lgtm times
//! the full stack.

use std::path::Path;
use std::time::{Duration, Instant};

use lab_testkit::{Down, LabCli, Section};
use serde_json::Value;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A container's memory use now, from the engine's stats, MiB.
async fn used_mib(docker: &bollard::Docker, container: &str) -> f64 {
    use futures_util::StreamExt;
    let mut stats = docker.stats(
        container,
        Some(bollard::query_parameters::StatsOptions {
            stream: false,
            one_shot: true,
        }),
    );
    match stats.next().await {
        Some(Ok(s)) => s.memory_stats.and_then(|m| m.usage).unwrap_or(0) as f64 / 1024.0 / 1024.0,
        _ => 0.0,
    }
}

/// A container of the lab: its component, its name and its limit.
struct Container {
    component: String,
    name: String,
    limit_mib: u64,
}

#[tokio::main]
async fn main() {
    let mut section = Section::new("docker");
    let rounds: usize = section.setting("ROUNDS", 3);
    let backends: String = section.setting("BACKENDS", "embedded".to_owned());
    let built = Instant::now();
    let mythical = lab_testkit::build_lab_image(Path::new(env!("CARGO_BIN_EXE_lab")))
        .await
        .expect("a Docker engine to build the lab's image");
    let postgres = lab_testkit::build_postgres_image(&lab_testkit::find_bindir().unwrap())
        .await
        .unwrap();
    let image_seconds = built.elapsed().as_secs_f64();
    eprintln!("test images built in {image_seconds:.1} s");
    let docker = bollard::Docker::connect_with_local_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();

    let (mut ups, mut firsts, mut diagnoses, mut downs) = (vec![], vec![], vec![], vec![]);
    let mut containers: Vec<Container> = Vec::new();
    let mut used: Vec<f64> = Vec::new();
    for round in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        let lab = LabCli::new(env!("CARGO_BIN_EXE_lab"), dir.path().join("lab"))
            .with_env("MYTHICAL_LAB_IMAGE_MYTHICAL", mythical)
            .with_env("MYTHICAL_LAB_IMAGE_POSTGRES", postgres);
        // Down even when a round fails, so no container outlives the bench.
        let down = Down(&lab);
        let started = Instant::now();
        lab.ok(&["up", "--runtime", "docker", "--backends", &backends]);
        ups.push(started.elapsed().as_secs_f64());
        loop {
            let found = lab.run(&["query", "traceql", "{ }", "--since", "5m", "--json"]);
            let answer: Value = serde_json::from_slice(&found.stdout).unwrap_or(Value::Null);
            if answer["traces"].as_array().is_some_and(|t| !t.is_empty()) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "no trace");
            std::thread::sleep(Duration::from_millis(100));
        }
        firsts.push(started.elapsed().as_secs_f64());

        let status: Value = serde_json::from_str(&lab.ok(&["status", "--json"])).unwrap();
        containers = status["components"]
            .as_array()
            .expect("components in `lab status --json`")
            .iter()
            .map(|c| Container {
                component: c["name"].as_str().unwrap().to_owned(),
                name: c["container"].as_str().expect("a container").to_owned(),
                limit_mib: c["memory_mib"].as_u64().expect("a memory limit"),
            })
            .collect();
        if round == rounds - 1 {
            // After a minute of the original's traffic.
            tokio::time::sleep(Duration::from_secs(60)).await;
            used.clear();
            for container in &containers {
                used.push(used_mib(&docker, &container.name).await);
            }
        }

        let injected = Instant::now();
        lab.ok(&["fault", "inject", "null-name", "--rate", "1"]);
        loop {
            let out = lab.run(&["diagnose", "--json"]);
            let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            if report["root_cause"]["id"] == "null-name" {
                break;
            }
            assert!(injected.elapsed() < Duration::from_secs(60), "no diagnosis");
            std::thread::sleep(Duration::from_millis(200));
        }
        diagnoses.push(injected.elapsed().as_secs_f64());

        let stopping = Instant::now();
        lab.ok(&["down", "--volumes"]);
        downs.push(stopping.elapsed().as_secs_f64());
        drop(down);
    }

    let count = containers.len();
    section.paragraph(format!(
        "The release `lab` binary against the machine's Docker engine, {backends} backends, {count} containers, a fresh state folder per round, medians of {rounds} rounds; the tests' images built through the engine first ({image_seconds:.1} s)."
    ));
    section.table(&["what", "result"]);
    section.row([
        format!("`lab up --runtime docker --backends {backends}` to every container healthy"),
        format!("{:.2} s", median(ups)),
    ]);
    section.row([
        "`lab up` to the first trace queryable".to_owned(),
        format!("{:.2} s", median(firsts)),
    ]);
    section.row([
        "`lab fault inject null-name` to `lab diagnose` naming it".to_owned(),
        format!("{:.2} s", median(diagnoses)),
    ]);
    section.row([
        "`lab down --volumes` (containers, network, volumes gone)".to_owned(),
        format!("{:.2} s", median(downs)),
    ]);
    section.table(&[
        "container",
        "memory limit MiB",
        "used after a minute of traffic MiB (engine stats, page cache included)",
    ]);
    for (container, used) in containers.iter().zip(&used) {
        section.row([
            container.component.clone(),
            container.limit_mib.to_string(),
            format!("{used:.1}"),
        ]);
    }
    section.row([
        format!("all {count}"),
        containers
            .iter()
            .map(|c| c.limit_mib)
            .sum::<u64>()
            .to_string(),
        format!("{:.1}", used.iter().sum::<f64>()),
    ]);
    section.finish();
}
