//! The docker runtime with its images present: `lab up` to healthy, first
//! trace queryable, injection to a correct diagnosis, `lab down`, and the
//! memory the containers are limited to and actually use.
//!
//! cargo bench -p lab --bench docker   (ROUNDS sets the number of up/down rounds, default 3)
//!
//! No registry is reachable here, so the images are the tests' own: the
//! `lab` binary and the machine's Postgres, built through the engine first.
//! With the Grafana images loaded (`lab images load`), BACKENDS=lgtm times
//! the full stack.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

fn lab(state: &Path, args: &[&str], images: &(String, String)) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lab"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env("MYTHICAL_LAB_IMAGE_MYTHICAL", &images.0)
        .env("MYTHICAL_LAB_IMAGE_POSTGRES", &images.1)
        .output()
        .unwrap()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The containers' memory use now, from the engine's stats, MiB.
async fn used_mib(docker: &bollard::Docker, containers: &[String]) -> f64 {
    use futures_util::StreamExt;
    let mut total = 0.0;
    for name in containers {
        let mut stats = docker.stats(
            name,
            Some(bollard::query_parameters::StatsOptions {
                stream: false,
                one_shot: true,
            }),
        );
        if let Some(Ok(s)) = stats.next().await {
            let usage = s.memory_stats.and_then(|m| m.usage).unwrap_or(0);
            total += usage as f64 / 1024.0 / 1024.0;
        }
    }
    total
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let backends = std::env::var("BACKENDS").unwrap_or_else(|_| "embedded".into());
    let built = Instant::now();
    let mythical = lab_testkit::build_lab_image(Path::new(env!("CARGO_BIN_EXE_lab")))
        .await
        .expect("a Docker engine to build the lab's image");
    let postgres = lab_testkit::build_postgres_image(&lab_testkit::find_bindir().unwrap())
        .await
        .unwrap();
    let images = (mythical.to_owned(), postgres.to_owned());
    println!(
        "test images built in {:.1} s",
        built.elapsed().as_secs_f64()
    );
    let docker = bollard::Docker::connect_with_local_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();

    let (mut ups, mut firsts, mut diagnoses, mut downs) = (vec![], vec![], vec![], vec![]);
    let (mut limit, mut used) = (0u64, 0.0);
    for round in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("lab");
        let started = Instant::now();
        let out = lab(
            &state,
            &["up", "--runtime", "docker", "--backends", &backends],
            &images,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ups.push(started.elapsed().as_secs_f64());
        loop {
            let found = lab(
                &state,
                &["query", "traceql", "{ }", "--since", "5m", "--json"],
                &images,
            );
            let answer: Value = serde_json::from_slice(&found.stdout).unwrap_or(Value::Null);
            if answer["traces"].as_array().is_some_and(|t| !t.is_empty()) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "no trace");
            std::thread::sleep(Duration::from_millis(100));
        }
        firsts.push(started.elapsed().as_secs_f64());

        let status: Value =
            serde_json::from_slice(&lab(&state, &["status", "--json"], &images).stdout).unwrap();
        limit = status["memory_limit_mib"].as_u64().unwrap();
        let containers: Vec<String> = status["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["container"].as_str().unwrap().to_owned())
            .collect();
        if round == rounds - 1 {
            // After a minute of the original's traffic.
            tokio::time::sleep(Duration::from_secs(60)).await;
            used = used_mib(&docker, &containers).await;
        }

        let injected = Instant::now();
        lab(
            &state,
            &["fault", "inject", "null-name", "--rate", "1"],
            &images,
        );
        loop {
            let out = lab(&state, &["diagnose", "--json"], &images);
            let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            if report["root_cause"]["id"] == "null-name" {
                break;
            }
            assert!(injected.elapsed() < Duration::from_secs(60), "no diagnosis");
            std::thread::sleep(Duration::from_millis(200));
        }
        diagnoses.push(injected.elapsed().as_secs_f64());

        let stopping = Instant::now();
        let out = lab(&state, &["down", "--volumes"], &images);
        assert!(out.status.success());
        downs.push(stopping.elapsed().as_secs_f64());
    }
    println!("docker runtime, {backends} backends, {rounds} rounds (medians):");
    println!("  lab up to healthy           {:.2} s", median(ups));
    println!(
        "  first trace queryable       {:.2} s after up began",
        median(firsts)
    );
    println!("  inject -> right diagnosis   {:.2} s", median(diagnoses));
    println!("  lab down --volumes          {:.2} s", median(downs));
    println!("  memory limits, all containers  {limit} MiB");
    println!("  memory used after 1 min        {used:.1} MiB");
}
