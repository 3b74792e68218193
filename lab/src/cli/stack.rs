//! `lab up`, `lab down`, `lab status` and the hidden `lab service`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use serde_json::json;

use crate::render;
use crate::runtime::native::{self, UpOptions};
use crate::state::StateDir;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeChoice {
    Native,
    Docker,
}

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Where the stack runs (default: native; docker arrives with the docker runtime).
    #[arg(long, value_enum)]
    pub runtime: Option<RuntimeChoice>,
    /// Turn on the original's 10% null-name fault from the start.
    #[arg(long)]
    pub like_original: bool,
}

#[derive(Debug, clap::Args)]
pub struct DownArgs {
    /// Also delete the lab's data: Postgres' rows and the backend's telemetry.
    #[arg(long)]
    pub volumes: bool,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceName {
    Server,
    Requester,
}

pub async fn up(state_dir: Option<PathBuf>, args: UpArgs) -> Result<()> {
    if args.runtime == Some(RuntimeChoice::Docker) {
        bail!(
            "the docker runtime is not built yet (it is the next issue): run `lab up` for the native runtime"
        );
    }
    let state = StateDir::resolve(state_dir)?;
    let lab = native::up(
        &state,
        &UpOptions {
            like_original: args.like_original,
        },
    )
    .await?;
    println!("{}", render::bold("the lab is up"));
    for component in &lab.components {
        let endpoints: Vec<String> = component
            .endpoints
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!(
            "  {:<20} pid {:<8} {}",
            component.name,
            component.pid,
            endpoints.join("  ")
        );
    }
    println!();
    println!("next: `lab status`, `lab query traceql '{{ status = error }}'`, `lab down`");
    println!(
        "state, logs and the admin token: {}",
        state.root().display()
    );
    Ok(())
}

pub async fn down(state_dir: Option<PathBuf>, args: DownArgs) -> Result<()> {
    let state = StateDir::resolve(state_dir)?;
    match state.load()? {
        Some(lab) => {
            native::stop_all(&lab);
            state.clear()?;
            println!("stopped {} components", lab.components.len());
        }
        None => println!(
            "nothing of this lab was running ({})",
            state.root().display()
        ),
    }
    if args.volumes {
        for dir in [state.postgres_data(), state.backend_data()] {
            if dir.exists() {
                std::fs::remove_dir_all(&dir)?;
            }
        }
        println!("removed Postgres' data and the backend's telemetry");
    }
    Ok(())
}

pub async fn status(state_dir: Option<PathBuf>, args: StatusArgs) -> Result<()> {
    let state = StateDir::resolve(state_dir)?;
    let Some(lab) = state.load()? else {
        if args.json {
            println!(
                "{}",
                json!({ "runtime": null, "backends": null, "components": [] })
            );
        } else {
            println!(
                "the lab is not up ({}): run `lab up`",
                state.root().display()
            );
        }
        return Ok(());
    };
    let mut components = Vec::new();
    for c in &lab.components {
        components.push((c, native::health_of(c).await));
    }
    if args.json {
        let list: Vec<_> = components
            .iter()
            .map(|(c, health)| json!({ "name": c.name, "health": health, "pid": c.pid, "endpoints": c.endpoints, "started_at": c.started_at, "log": c.log }))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({ "runtime": lab.runtime, "backends": lab.backends, "components": list })
            )?
        );
        return Ok(());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let rows: Vec<Vec<String>> = components
        .iter()
        .map(|(c, health)| {
            let endpoints: Vec<String> = c
                .endpoints
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let uptime = now.saturating_sub(c.started_at);
            vec![
                c.name.clone(),
                if *health == "healthy" {
                    health.to_string()
                } else {
                    render::red(health)
                },
                c.pid.to_string(),
                format!("{}m{:02}s", uptime / 60, uptime % 60),
                endpoints.join(" "),
            ]
        })
        .collect();
    println!("runtime {}, backends {}", lab.runtime, lab.backends);
    print!(
        "{}",
        render::table(
            &["COMPONENT", "HEALTH", "PID", "UPTIME", "ENDPOINTS"],
            &rows
        )
    );
    if components.iter().any(|(_, h)| *h != "healthy") {
        std::process::exit(3);
    }
    Ok(())
}

/// Runs one of the mythical services in this process, configured by its
/// environment (how the native runtime starts them).
pub async fn service(name: ServiceName) -> Result<()> {
    use mythical_services::telemetry::Telemetry;
    match name {
        ServiceName::Server => {
            let config = mythical_services::server::ServerConfig::from_env()?;
            let telemetry = Telemetry::init("mythical-server", &config.version)?;
            let result = mythical_services::server::run(
                config,
                &telemetry,
                mythical_services::shutdown_signal(),
            )
            .await;
            tokio::task::spawn_blocking(move || telemetry.shutdown()).await?;
            result
        }
        ServiceName::Requester => {
            let config = mythical_services::requester::RequesterConfig::from_env()?;
            let telemetry = Telemetry::init("mythical-requester", env!("CARGO_PKG_VERSION"))?;
            let result = mythical_services::requester::run(
                config,
                &telemetry,
                mythical_services::shutdown_signal(),
            )
            .await;
            tokio::task::spawn_blocking(move || telemetry.shutdown()).await?;
            result
        }
    }
}
