//! The native runtime: the stack plan as processes on this machine —
//! Postgres from its own binaries (initdb into the state folder on first
//! up), the db-proxy, the embedded backend and the two services run by the
//! `lab` binary itself, each logged to the state folder.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::future::LocalBoxFuture;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::{Condition, now_secs, process};
use crate::plan::{self, Component, Health, Kind, Ports};
use crate::state::{LabState, Running, StateDir};

/// The embedded backend's share of the lab's memory: MiB of heap for the
/// telemetry it stores, counted as malloc hands it out.
const BACKEND_MEMORY_MIB: usize = 32;

/// What `lab up` was asked for.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// The original's 10% null-name fault from the start.
    pub like_original: bool,
}

fn choose_ports() -> Ports {
    let mut taken = Vec::new();
    let mut pick = |preferred| {
        let p = process::port(preferred, &taken);
        taken.push(p);
        p
    };
    Ports {
        postgres: pick(15432),
        proxy: pick(15433),
        proxy_admin: pick(plan::PROXY_ADMIN_PORT),
        query: pick(lab_backend::DEFAULT_QUERY_PORT),
        otlp_grpc: pick(lab_backend::DEFAULT_OTLP_GRPC_PORT),
        otlp_http: pick(lab_backend::DEFAULT_OTLP_HTTP_PORT),
        server: pick(4000),
        requester: pick(4001),
    }
}

/// Brings the stack up, each component once what it depends on is healthy;
/// on failure or Ctrl-C, stops what it started.
pub async fn up(state: &StateDir, options: &UpOptions) -> Result<LabState> {
    if let Some(existing) = state.load()? {
        let alive = existing
            .components
            .iter()
            .filter(|c| process::is_ours(c.pid, &c.marker))
            .count();
        if alive > 0 {
            bail!(
                "the lab in {} is already up ({alive} of {} components running): see `lab status`, or `lab down` first",
                state.root().display(),
                existing.components.len()
            );
        }
        state.clear()?;
    }
    state.ensure()?;
    let token = state.admin_token()?;
    let bindir = mythical_storage::binaries::find_bindir()?;
    let ports = choose_ports();
    let plan = plan::in_dependency_order(plan::native(ports));
    let mut lab = LabState {
        runtime: crate::state::Runtime::Native,
        backends: crate::plan::Backends::Embedded,
        components: Vec::new(),
    };
    let bars = MultiProgress::new();
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bars.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let result = async {
        // Each component starts as soon as everything it depends on is
        // healthy, so Postgres (with its initdb) and the backend come up
        // side by side rather than one after the other.
        let bindir = bindir.as_path();
        let mut waiting: Vec<&Component> = plan.iter().collect();
        let mut ready: Vec<Kind> = Vec::new();
        let mut steps =
            futures_util::stream::FuturesUnordered::<LocalBoxFuture<Result<Step>>>::new();
        loop {
            let (now, later): (Vec<&Component>, Vec<&Component>) = waiting
                .into_iter()
                .partition(|c| c.depends_on.iter().all(|d| ready.contains(d)));
            waiting = later;
            for component in now {
                let bar = bars.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {prefix:<20} {msg}")
                        .expect("a valid template"),
                );
                bar.set_prefix(component.name());
                bar.set_message("starting");
                bar.enable_steady_tick(Duration::from_millis(100));
                let started = Instant::now();
                steps.push(Box::pin(async move {
                    if component.kind == Kind::Postgres {
                        bar.set_message("initdb");
                        initdb_if_new(state, bindir).await?;
                    }
                    Ok(Step::Prepared(component, bar, started))
                }));
            }
            match futures_util::StreamExt::next(&mut steps).await {
                Some(step) => match step? {
                    Step::Prepared(component, bar, started) => {
                        let running = start(state, component, &ports, bindir, &token, options)?;
                        lab.components.push(running.clone());
                        // Recorded in the plan's order, whichever came up first.
                        lab.components
                            .sort_by_key(|c| plan.iter().position(|p| Some(p.kind) == c.kind()));
                        state.save(&lab)?;
                        steps.push(Box::pin(async move {
                            wait_healthy(component, &running).await?;
                            bar.finish_with_message(format!(
                                "healthy ({:.1}s)",
                                started.elapsed().as_secs_f64()
                            ));
                            Ok(Step::Healthy(component.kind))
                        }));
                    }
                    Step::Healthy(kind) => ready.push(kind),
                },
                None if waiting.is_empty() => break,
                None => bail!(
                    "nothing can start {:?}: they depend on components the plan does not have",
                    waiting.iter().map(|c| c.name()).collect::<Vec<_>>()
                ),
            }
        }
        anyhow::Ok(())
    };
    let outcome = tokio::select! {
        outcome = result => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Err(err) = outcome {
        stop_all(&lab);
        stop_strays(state);
        state.clear()?;
        return Err(err.context("`lab up` stopped what it had started"));
    }
    Ok(lab)
}

fn start(
    state: &StateDir,
    component: &Component,
    ports: &Ports,
    bindir: &std::path::Path,
    token: &str,
    options: &UpOptions,
) -> Result<Running> {
    let log = state.logs().join(format!("{}.log", component.name()));
    let marker = state.root().display().to_string();
    let lab = std::env::current_exe().context("cannot find the lab binary")?;
    let (command, marker) = match component.kind {
        Kind::Postgres => (
            postgres_command(state, bindir, ports.postgres)?,
            state.postgres_data().display().to_string(),
        ),
        Kind::Proxy => {
            let mut command = Command::new(&lab);
            command
                .args(["--state-dir", &marker, "proxy"])
                .args(["--listen", &format!("127.0.0.1:{}", ports.proxy)])
                .args(["--upstream", &format!("127.0.0.1:{}", ports.postgres)])
                .args(["--admin", &format!("127.0.0.1:{}", ports.proxy_admin)])
                .env("MYTHICAL_ADMIN_TOKEN", token);
            (command, marker)
        }
        Kind::Backend => {
            let mut command = Command::new(&lab);
            command
                .args(["--state-dir", &marker, "backend", "--data-dir"])
                .arg(state.backend_data())
                .args([
                    "--query",
                    &format!("127.0.0.1:{}", ports.query),
                    "--otlp-grpc",
                    &format!("127.0.0.1:{}", ports.otlp_grpc),
                    "--otlp-http",
                    &format!("127.0.0.1:{}", ports.otlp_http),
                    // The original's scrape labels: job="mythical", and
                    // each service by name in its group.
                    "--scrape",
                    &format!(
                        "mythical=http://127.0.0.1:{}/metrics,service=mythical-server,group=mythical",
                        ports.server
                    ),
                    "--scrape",
                    &format!(
                        "mythical=http://127.0.0.1:{}/metrics,service=mythical-requester,group=mythical",
                        ports.requester
                    ),
                    // The whole lab stays within ~150 MB: the backend keeps
                    // the newest telemetry up to this bound, dropping the
                    // oldest.
                    "--max-memory-mib",
                    &BACKEND_MEMORY_MIB.to_string(),
                ]);
            (command, marker)
        }
        Kind::Server | Kind::Requester => {
            let mut command = Command::new(&lab);
            let which = if component.kind == Kind::Server {
                "server"
            } else {
                "requester"
            };
            command.args(["--state-dir", &marker, "service", which]);
            command
                .env("MYTHICAL_ADMIN_TOKEN", token)
                .env(
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    format!("http://127.0.0.1:{}", ports.otlp_grpc),
                )
                .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
                // Half-second batches: a new lab's first trace, and a
                // fault's first failing span, are queryable within about
                // two seconds of `lab up` or the fault (two exports a
                // second per signal are nothing to the backend).
                .env("OTEL_BSP_SCHEDULE_DELAY", "500")
                .env("OTEL_BLRP_SCHEDULE_DELAY", "500")
                .env("OTEL_METRIC_EXPORT_INTERVAL", "15000")
                .env("MYTHICAL_LOG_STDOUT", "true")
                // The backend's query port takes Pyroscope's push API.
                .env(
                    "PYROSCOPE_SERVER_ADDRESS",
                    format!("http://127.0.0.1:{}", ports.query),
                );
            if component.kind == Kind::Server {
                // Through the db-proxy, where the network faults act.
                command
                    .env("MYTHICAL_DATABASE_HOST", "127.0.0.1")
                    .env("MYTHICAL_DATABASE_HOST_PORT", ports.proxy.to_string())
                    .env("MYTHICAL_DATABASE_USER", "postgres")
                    .env("MYTHICAL_DATABASE_PASSWORD", "mythical")
                    .env(
                        "MYTHICAL_SERVER_LISTEN",
                        format!("127.0.0.1:{}", ports.server),
                    );
                if options.like_original {
                    command.env("MYTHICAL_FAULTS", "null-name=0.1");
                }
            } else {
                command
                    .env(
                        "MYTHICAL_SERVER_HOST_PORT",
                        format!("127.0.0.1:{}", ports.server),
                    )
                    .env(
                        "MYTHICAL_REQUESTER_LISTEN",
                        format!("127.0.0.1:{}", ports.requester),
                    );
            }
            (command, marker)
        }
        other => bail!("{other:?} runs only in the docker runtime"),
    };
    let pid = process::spawn(command, &log)?;
    Ok(Running {
        name: component.name().to_owned(),
        pid,
        marker,
        endpoints: component.endpoints(),
        log,
        started_at: now_secs(),
        stop_signal: if component.kind == Kind::Postgres {
            libc::SIGINT
        } else {
            libc::SIGTERM
        },
        container: None,
        memory_mib: None,
    })
}

/// Where a component is on its way up.
enum Step<'a> {
    /// Ready to be spawned (Postgres once its data folder exists).
    Prepared(&'a Component, ProgressBar, Instant),
    /// Spawned and answering its health check.
    Healthy(Kind),
}

/// initdb into the state folder on the first up, as the postgres user when
/// the lab runs as root; run as a child the lab awaits, so the other
/// components start meanwhile.
async fn initdb_if_new(state: &StateDir, bindir: &std::path::Path) -> Result<()> {
    let data = state.postgres_data();
    if data.join("PG_VERSION").exists() {
        return Ok(());
    }
    let user = process::postgres_user();
    std::fs::create_dir_all(&data)?;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))?;
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&data, Some(uid), Some(gid))?;
    }
    let mut initdb = tokio::process::Command::new(bindir.join("initdb"));
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "--encoding=UTF8"])
        .kill_on_drop(true);
    if let Some((uid, gid)) = user {
        initdb.uid(uid).gid(gid);
    }
    let out = initdb.output().await.context("cannot run initdb")?;
    if !out.status.success() {
        bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// `postgres -D <data>` on a loopback port, as the postgres user when the
/// lab runs as root.
fn postgres_command(state: &StateDir, bindir: &std::path::Path, port: u16) -> Result<Command> {
    let data = state.postgres_data();
    let user = process::postgres_user();
    let mut postgres = Command::new(bindir.join("postgres"));
    postgres.arg("-D").arg(&data).args([
        "-p",
        &port.to_string(),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "unix_socket_directories=",
        // A lab's tables are small: a small buffer pool keeps the
        // whole lab light on a laptop.
        "-c",
        "shared_buffers=16MB",
    ]);
    if let Some((uid, gid)) = user {
        postgres.uid(uid).gid(gid);
    }
    Ok(postgres)
}

/// Whether a component answers its health check now.
pub async fn healthy(health: &Health) -> bool {
    match health {
        Health::Postgres { port } => {
            let store = crate::runtime::postgres_session(*port, Duration::from_millis(500));
            let ok = store.ping().await.is_ok();
            store.pool().close().await;
            ok
        }
        Health::Http { url } => reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success()),
    }
}

async fn wait_healthy(component: &Component, running: &Running) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if healthy(&component.health()).await {
            return Ok(());
        }
        if !process::is_ours(running.pid, &running.marker) {
            bail!(
                "{} exited during start-up; its log is {}:\n{}",
                component.name(),
                running.log.display(),
                tail(&running.log, 15)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "{} was not healthy within 60 s; its log is {}",
                component.name(),
                running.log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Stops every recorded component that is still the lab's, in two waves:
/// first the services, together, so their last telemetry still reaches
/// the backend as they flush it; then everything they used (the backend,
/// the db-proxy, Postgres), together.
pub fn stop_all(lab: &LabState) {
    let stops = |services: bool| -> Vec<process::Stop> {
        lab.components
            .iter()
            .filter(|c| c.kind().is_some_and(Kind::is_service) == services)
            .map(|c| process::Stop {
                pid: c.pid,
                marker: &c.marker,
                signal: c.stop_signal,
            })
            .collect()
    };
    process::stop_together(&stops(true), Duration::from_secs(10));
    process::stop_together(&stops(false), Duration::from_secs(10));
}

/// A component's health now, for `lab status`.
pub async fn health_of(running: &Running) -> Condition {
    if !process::is_ours(running.pid, &running.marker) {
        return Condition::Stopped;
    }
    if process::is_paused(running.pid) {
        return Condition::Paused;
    }
    health_of_endpoints(running).await
}

/// A running component's health from its recorded endpoints.
pub async fn health_of_endpoints(running: &Running) -> Condition {
    let http = |endpoint: &str, path: &str| {
        running.endpoint(endpoint).map(|u| Health::Http {
            url: format!("{u}{path}"),
        })
    };
    // The plan's check for its kind, on the endpoints it recorded.
    let health = match running.kind().map(Kind::health_check) {
        Some(None) => running
            .port("postgres")
            .map(|port| Health::Postgres { port }),
        Some(Some((endpoint, path))) => http(endpoint, path),
        None => http("http", "/healthz"),
    };
    match health {
        Some(health) if healthy(&health).await => Condition::Healthy,
        Some(_) | None => Condition::Unhealthy,
    }
}

/// Stops whatever still carries this lab's state folder in its command
/// line: what a killed `lab up` had started without recording it. Every
/// process of a lab has the folder there (`--state-dir`, or Postgres'
/// `-D <folder>/postgres/data`), so nothing else is touched.
pub fn stop_strays(state: &StateDir) -> usize {
    let marker = state.root().display().to_string();
    let strays = process::find_by_marker(&marker);
    let postgres = state.postgres_data().display().to_string();
    let stops: Vec<process::Stop> = strays
        .iter()
        .map(|&pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let signal = if String::from_utf8_lossy(&cmdline).contains(&postgres) {
                libc::SIGINT
            } else {
                libc::SIGTERM
            };
            process::Stop {
                pid,
                marker: &marker,
                signal,
            }
        })
        .collect();
    process::stop_together(&stops, Duration::from_secs(10));
    strays.len()
}
