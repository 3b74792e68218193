//! The docker runtime: the stack plan as containers on one lab network,
//! through the engine's API. Every container, the network and the volumes
//! carry the lab's labels (derived from its state folder), so `lab down`
//! removes exactly this lab's things, even after a crash.

pub mod engine;
pub mod images;
pub mod spec;

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

pub use engine::Engine;
use images::Images;
use spec::{ContainerSpec, LabIdentity};

use super::Condition;
use crate::plan::{self, Backends, Component, Kind};
use crate::state::{LabState, Running, StateDir};

mod files {
    include!(concat!(env!("OUT_DIR"), "/docker_files.rs"));
}

/// The role Grafana's Postgres datasource connects as.
pub const READER_ROLE: &str = "lab_reader";

/// What `lab up --runtime docker` was asked for.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub backends: Backends,
    pub like_original: bool,
    /// Where published ports listen on the host (loopback by default).
    pub publish_address: IpAddr,
}

/// Images absent from the engine that could be neither pulled nor built:
/// the offline case, reported before anything starts.
#[derive(Debug, thiserror::Error)]
#[error("{}", offline_message(.missing))]
pub struct MissingImages {
    /// (image, why it could not be had).
    pub missing: Vec<(String, String)>,
}

fn offline_message(missing: &[(String, String)]) -> String {
    let mut text = String::from("images missing and not obtainable (offline?):");
    for (image, why) in missing {
        text.push_str(&format!(
            "\n  {image}: {}",
            why.lines().next().unwrap_or("")
        ));
    }
    text.push_str(
        "\nnothing was started. Load them from an archive made on a connected machine \
         (`lab images save lab-images.tar` there, `lab images load lab-images.tar` here), \
         point the lab at a registry you can reach (MYTHICAL_LAB_REGISTRY or \
         MYTHICAL_LAB_IMAGE_<NAME>), or run `lab up --runtime native`",
    );
    text
}

/// Every config file of `docker/`, as built into this binary.
pub fn config_files() -> &'static [(&'static str, &'static [u8])] {
    files::FILES
}

/// Writes the backends' configs into the state folder, where containers
/// mount them read-only; stale files of an older lab go first.
pub fn write_configs(state: &StateDir) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let root = state.docker_configs();
    if root.exists() {
        std::fs::remove_dir_all(&root)
            .with_context(|| format!("cannot replace {}", root.display()))?;
    }
    for (relative, bytes) in config_files() {
        let path = root.join(relative);
        let parent = path.parent().expect("a file has a folder");
        std::fs::create_dir_all(parent)?;
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        // Readable by the containers' own users.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    }
    for dir in walk_dirs(&root) {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(root)
}

fn walk_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_owned()];
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path().is_dir() {
            out.extend(walk_dirs(&entry.path()));
        }
    }
    out
}

/// The stack plan for these backends, with free host ports.
pub fn plan(backends: Backends) -> Vec<Component> {
    let mut taken = Vec::new();
    plan::in_dependency_order(plan::docker(backends, |preferred| {
        let port = super::process::port(preferred, &taken);
        taken.push(port);
        port
    }))
}

/// Renders every component's container.
pub fn specs(
    state: &StateDir,
    plan: &[Component],
    images: &Images,
    options: &UpOptions,
) -> Result<Vec<ContainerSpec>> {
    let lab = LabIdentity::of(state.root());
    let admin_token = state.admin_token()?;
    let reader_password = state.reader_password()?;
    let grafana_password = state.grafana_password()?;
    let configs = state.docker_configs();
    let ctx = spec::Context {
        lab: &lab,
        images,
        backends: options.backends,
        admin_token: &admin_token,
        reader_password: &reader_password,
        grafana_password: &grafana_password,
        configs: &configs,
        publish_address: options.publish_address,
        like_original: options.like_original,
    };
    Ok(plan.iter().map(|c| spec::render(c, &ctx)).collect())
}

/// The image keys a plan needs, each once.
pub fn image_keys(plan: &[Component]) -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = Vec::new();
    for component in plan {
        let key = images::key_of(component.kind);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

/// Makes sure every image is in the engine: present, pulled, or (the lab's
/// own image) built from `docker/Dockerfile`. Fails with
/// [`MissingImages`] before anything is started.
pub async fn ensure_images(
    engine: &Engine,
    images: &Images,
    keys: &[&str],
    bars: &MultiProgress,
) -> Result<()> {
    let mut missing = Vec::new();
    for &key in keys {
        let image = images.get(key);
        if engine.has_image(image).await {
            continue;
        }
        let outcome = if images.is_buildable(key) {
            match source_tree() {
                Some(root) => build_from_source(engine, image, &root, bars).await,
                None => Err(anyhow::anyhow!(
                    "the lab's own image is built from its source tree, which is not here"
                )),
            }
        } else {
            engine.pull(image, bars).await
        };
        if let Err(e) = outcome {
            missing.push((image.to_owned(), format!("{e:#}")));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(MissingImages { missing }.into())
    }
}

/// The repository this binary was built from, when it is still there.
pub fn source_tree() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?.to_owned();
    (root.join("docker/Dockerfile").is_file() && root.join("Cargo.toml").is_file()).then_some(root)
}

/// Builds the lab's image from the repository with `docker/Dockerfile`.
async fn build_from_source(
    engine: &Engine,
    image: &str,
    root: &Path,
    bars: &MultiProgress,
) -> Result<()> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let name = entry.file_name();
        let skip = [".git", "target", ".mythical-lab"];
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        if entry.path().is_dir() {
            tar.append_dir_all(&name, entry.path())?;
        } else {
            tar.append_path_with_name(entry.path(), &name)?;
        }
    }
    let context = tar.into_inner()?;
    engine
        .build(image, "docker/Dockerfile", context, bars)
        .await
        .context("building the lab's image from docker/Dockerfile")
}

fn spinner(bars: &MultiProgress, name: &str) -> ProgressBar {
    let bar = bars.add(ProgressBar::new_spinner());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix:<20} {msg}").expect("a valid template"),
    );
    bar.set_prefix(name.to_owned());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

pub fn progress() -> MultiProgress {
    let bars = MultiProgress::new();
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bars.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bars
}

/// Brings the stack up as containers; on failure or Ctrl-C, removes what
/// it created (volumes stay: they hold the lab's data).
pub async fn up(
    state: &StateDir,
    engine: &Engine,
    options: &UpOptions,
    bars: &MultiProgress,
) -> Result<LabState> {
    let lab = LabIdentity::of(state.root());
    if let Some(existing) = state.load()? {
        let mut running = 0;
        for c in &existing.components {
            if let Some(container) = &c.container
                && engine.state_of(container).await == "running"
            {
                running += 1;
            }
        }
        if running > 0 {
            bail!(
                "the lab in {} is already up ({running} of {} components running): see `lab status`, or `lab down` first",
                state.root().display(),
                existing.components.len()
            );
        }
        state.clear()?;
    }
    state.ensure()?;
    let images = Images::resolve(state.root())?;
    let plan = plan(options.backends);
    ensure_images(engine, &images, &image_keys(&plan), bars).await?;
    if options.backends == Backends::Lgtm {
        write_configs(state)?;
    }
    let specs = specs(state, &plan, &images, options)?;
    let mut record = LabState {
        runtime: crate::state::Runtime::Docker,
        backends: options.backends,
        components: Vec::new(),
    };
    let work = async {
        engine.ensure_network(&lab).await?;
        for spec in &specs {
            for mount in &spec.mounts {
                if let spec::Source::Volume(name) = &mount.source {
                    engine.ensure_volume(&lab, name).await?;
                }
            }
        }
        for (component, spec) in plan.iter().zip(&specs) {
            let bar = spinner(bars, component.name());
            bar.set_message(format!("starting {}", spec.image));
            let started = Instant::now();
            engine.run(&lab, spec).await?;
            record.components.push(Running {
                name: component.name().to_owned(),
                pid: 0,
                marker: spec.name.clone(),
                endpoints: component.endpoints(),
                log: PathBuf::new(),
                started_at: super::now_secs(),
                stop_signal: libc::SIGTERM,
                container: Some(spec.name.clone()),
                memory_mib: Some(spec.memory_mib),
            });
            state.save(&record)?;
            bar.set_message("waiting until healthy");
            wait_healthy(engine, component, spec).await?;
            if component.kind == Kind::Postgres {
                reader_role(state, component).await?;
            }
            bar.finish_with_message(format!("healthy ({:.1}s)", started.elapsed().as_secs_f64()));
        }
        anyhow::Ok(())
    };
    let outcome = tokio::select! {
        outcome = work => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Err(err) = outcome {
        let _ = engine.remove_lab(&lab, false).await;
        state.clear()?;
        return Err(err.context("`lab up` removed the containers it had started"));
    }
    Ok(record)
}

/// The read-only role Grafana's Postgres datasource uses.
async fn reader_role(state: &StateDir, postgres: &Component) -> Result<()> {
    let port = postgres.ports["postgres"];
    let store = crate::runtime::postgres_session(port, std::time::Duration::from_millis(1500));
    let result = store
        .ensure_reader_role(READER_ROLE, &state.reader_password()?)
        .await
        .context("cannot create Postgres' read-only role for Grafana");
    store.pool().close().await;
    result
}

async fn wait_healthy(engine: &Engine, component: &Component, spec: &ContainerSpec) -> Result<()> {
    // The Grafana stack's first start (Mimir, Tempo) can take a minute on
    // a laptop.
    let limit = Duration::from_secs(180);
    let deadline = Instant::now() + limit;
    loop {
        if super::native::healthy(&component.health()).await {
            return Ok(());
        }
        let container_state = engine.state_of(&spec.name).await;
        if Condition::of_container(&container_state).is_some_and(Condition::is_gone) {
            bail!(
                "{} exited during start-up ({}); its last lines:\n{}",
                component.name(),
                spec.image,
                engine.tail(&spec.name, 20).await
            );
        }
        if Instant::now() > deadline {
            bail!(
                "{} was not healthy within {} s; `lab logs {}` shows why",
                component.name(),
                limit.as_secs(),
                component.name()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A component's health now: the container's state, then its own check.
pub async fn health_of(engine: &Engine, running: &Running) -> Condition {
    let Some(container) = &running.container else {
        return Condition::Unknown;
    };
    match Condition::of_container(&engine.state_of(container).await) {
        Some(condition) => condition,
        None => super::native::health_of_endpoints(running).await,
    }
}

/// `lab down`: removes the lab's containers and network (and volumes).
pub async fn down(state: &StateDir, engine: &Engine, volumes: bool) -> Result<engine::Removed> {
    engine
        .remove_lab(&LabIdentity::of(state.root()), volumes)
        .await
}

/// Follows or prints a component's engine log.
pub async fn logs(engine: &Engine, container: &str, follow: bool, lines: usize) -> Result<()> {
    use futures_util::StreamExt;
    let mut stream = engine.docker.logs(
        container,
        Some(bollard::query_parameters::LogsOptions {
            stdout: true,
            stderr: true,
            follow,
            tail: lines.to_string(),
            ..Default::default()
        }),
    );
    let mut out = std::io::stdout();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.with_context(|| format!("cannot read {container}'s log"))?;
        out.write_all(&chunk.into_bytes())?;
        out.flush()?;
    }
    Ok(())
}
