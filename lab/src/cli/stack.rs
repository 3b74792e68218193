//! `lab up`, `lab down`, `lab status` and the hidden `lab service`.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Result, bail};
use serde_json::json;

use lab::grafana;
use lab::plan::Backends;
use lab::render;
use lab::runtime::native::{self, UpOptions};
use lab::runtime::{self, Condition, docker};
use lab::state::{LabState, Runtime, StateDir};

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Where the stack runs (default: docker when an engine answers and
    /// the images can be had, native otherwise).
    #[arg(long, value_enum)]
    pub runtime: Option<Runtime>,
    /// The telemetry backends (default: lgtm in docker, embedded natively).
    #[arg(long, value_enum)]
    pub backends: Option<Backends>,
    /// Turn on the original's 10% null-name fault from the start.
    #[arg(long)]
    pub like_original: bool,
    /// The host address docker publishes ports on. Anything but loopback
    /// lets other machines in, and turns Grafana's anonymous access off.
    #[arg(long, default_value = "127.0.0.1")]
    pub publish_address: IpAddr,
}

#[derive(Debug, clap::Args)]
pub struct DownArgs {
    /// Also delete the lab's data: Postgres' rows, the backend's telemetry,
    /// Grafana's database.
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
    let state = StateDir::resolve(state_dir)?;
    // Whichever runtime a recorded lab used, it must be gone first.
    if let Some(existing) = state.load()? {
        let alive = runtime::conditions(&existing)
            .await?
            .iter()
            .filter(|h| !h.is_gone())
            .count();
        if alive > 0 {
            bail!(
                "the lab in {} is already up ({alive} of {} {} components running): see `lab status`, or `lab down` first",
                state.root().display(),
                existing.components.len(),
                existing.runtime
            );
        }
    }
    let runtime = match args.runtime {
        Some(choice) => choice,
        None if docker::Engine::answers().await => Runtime::Docker,
        None => Runtime::Native,
    };
    let lab = match runtime {
        Runtime::Native => {
            if args.backends == Some(Backends::Lgtm) {
                bail!(
                    "the Grafana stack (--backends lgtm) runs only in docker: use `--runtime docker`, or the embedded backend natively"
                );
            }
            native_up(&state, &args).await?
        }
        Runtime::Docker => {
            let engine = docker::Engine::connect().await?;
            let options = docker::UpOptions {
                backends: args.backends.unwrap_or(Backends::Lgtm),
                like_original: args.like_original,
                publish_address: args.publish_address,
            };
            let bars = docker::progress();
            match docker::up(&state, &engine, &options, &bars).await {
                Ok(lab) => lab,
                // Chosen by default, not asked for: a machine with Docker
                // but without the images still gets a lab.
                Err(e) if args.runtime.is_none() && e.is::<docker::MissingImages>() => {
                    eprintln!("{e}");
                    eprintln!("docker cannot run the lab here: running it natively instead");
                    native_up(&state, &args).await?
                }
                Err(e) => return Err(e),
            }
        }
    };
    // The console is the lab's window, not a part of the stack: a lab
    // whose console cannot start is still up.
    let console = lab::console::start(&state).await;
    println!(
        "{} (runtime {}, backends {})",
        render::bold("the lab is up"),
        lab.runtime,
        lab.backends
    );
    for component in &lab.components {
        let endpoints: Vec<String> = component
            .endpoints
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let id = match &component.container {
            Some(_) => format!("{} MiB", component.memory_mib.unwrap_or(0)),
            None => format!("pid {}", component.pid),
        };
        println!(
            "  {:<20} {:<10} {}",
            component.name,
            id,
            endpoints.join("  ")
        );
    }
    if let Some(grafana) = lab.grafana_url() {
        println!();
        for (what, link) in grafana::links(grafana) {
            println!("  {what:<28} {link}");
        }
    }
    match &console {
        Ok(console) => println!(
            "  {:<20} {:<10} http {}",
            "console",
            format!("pid {}", console.pid),
            console.url
        ),
        Err(e) => eprintln!("the console did not start: {e:#}"),
    }
    println!();
    println!("next: `lab status`, `lab query traceql '{{ status = error }}'`, `lab down`");
    println!("state and the admin token: {}", state.root().display());
    Ok(())
}

async fn native_up(state: &StateDir, args: &UpArgs) -> Result<LabState> {
    native::up(
        state,
        &UpOptions {
            like_original: args.like_original,
        },
    )
    .await
}

pub async fn down(state_dir: Option<PathBuf>, args: DownArgs) -> Result<()> {
    let state = StateDir::resolve(state_dir)?;
    let recorded = state.load()?;
    lab::console::stop(&state);
    if let Some(lab) = &recorded
        && lab.runtime == Runtime::Native
    {
        native::stop_all(lab);
        println!("stopped {} components", lab.components.len());
    }
    native::stop_strays(&state);
    // Containers carry the lab's labels: remove them whether or not a
    // crashed `up` recorded them.
    if recorded
        .as_ref()
        .is_some_and(|l| l.runtime == Runtime::Docker)
        || docker::Engine::answers().await
    {
        let engine = docker::Engine::connect().await?;
        let removed = docker::down(&state, &engine, args.volumes).await?;
        if removed.containers + removed.networks + removed.volumes > 0 {
            println!(
                "removed {} containers, {} networks, {} volumes",
                removed.containers, removed.networks, removed.volumes
            );
        }
    }
    state.clear()?;
    if recorded.is_none() {
        println!("no lab was recorded in {}", state.root().display());
    }
    if args.volumes {
        for dir in [state.postgres_data(), state.backend_data()] {
            if dir.exists() {
                std::fs::remove_dir_all(&dir)?;
            }
        }
        println!("removed the lab's data");
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
    let healths = runtime::conditions(&lab).await?;
    let components: Vec<_> = lab.components.iter().zip(&healths).collect();
    let memory_total: u64 = lab.components.iter().filter_map(|c| c.memory_mib).sum();
    let console = lab::console::running(&state);
    if args.json {
        let list: Vec<_> = components
            .iter()
            .map(|(c, health)| {
                let mut entry = json!({ "name": c.name, "health": health, "pid": c.pid, "endpoints": c.endpoints, "started_at": c.started_at, "log": c.log });
                if let Some(container) = &c.container {
                    entry["container"] = json!(container);
                    entry["memory_mib"] = json!(c.memory_mib);
                }
                entry
            })
            .collect();
        let mut answer =
            json!({ "runtime": lab.runtime, "backends": lab.backends, "components": list });
        if let Some(console) = &console {
            answer["endpoints"] = json!({ "console": console.url });
        }
        if lab.runtime == Runtime::Docker {
            answer["memory_limit_mib"] = json!(memory_total);
        }
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    let now = lab::runtime::now_secs();
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
                if **health == Condition::Healthy {
                    health.to_string()
                } else {
                    render::red(health.as_str())
                },
                match c.memory_mib {
                    Some(mib) => format!("{mib} MiB"),
                    None => format!("pid {}", c.pid),
                },
                format!("{}m{:02}s", uptime / 60, uptime % 60),
                endpoints.join(" "),
            ]
        })
        .collect();
    println!("runtime {}, backends {}", lab.runtime, lab.backends);
    print!(
        "{}",
        render::table(
            &["COMPONENT", "HEALTH", "PROCESS", "UPTIME", "ENDPOINTS"],
            &rows
        )
    );
    if lab.runtime == Runtime::Docker {
        println!("memory limits: {memory_total} MiB in all");
    }
    match &console {
        Some(console) => println!("console: {}", console.url),
        None => println!("console: not running (`lab console` starts it)"),
    }
    if components.iter().any(|(_, h)| **h != Condition::Healthy) {
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
            let telemetry = Telemetry::init("mythical-server", Some(&config.version))?;
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
            let telemetry = Telemetry::init("mythical-requester", None)?;
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
