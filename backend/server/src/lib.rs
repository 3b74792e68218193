//! The lab's embedded telemetry backend: it takes in OTLP (gRPC and HTTP),
//! Prometheus scrapes, Loki pushes and Pyroscope profile uploads, keeps
//! them bounded in memory with a write-ahead log on disk, derives from the
//! spans what Tempo's metrics-generator and Alloy's autologging would
//! (span metrics, service graphs, a log line per root span), and answers the
//! Tempo, Loki and Prometheus HTTP query APIs (TraceQL, LogQL, PromQL) and
//! Pyroscope's render API on one port, so the lab's query client and a
//! real Grafana can use it as those datasources.
//!
//! Use it in-process with [`start`], or as `lab backend`.

mod api;
pub mod backend;
pub mod generate;
pub mod ingest;
pub mod params;
mod receive;
pub mod scrape;
pub mod store;
pub mod wal;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
pub use backend::Backend;
pub use generate::GeneratorConfig;
pub use lab_ingest::otlp::LabelPolicy;
pub use scrape::ScrapeTarget;
pub use store::Limits;

/// Where the backend listens and what it keeps.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// Where the write-ahead log lives; `None` keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    /// Tempo, Loki, Prometheus and Pyroscope query APIs, and Loki's and
    /// Pyroscope's push APIs.
    pub query: SocketAddr,
    pub otlp_grpc: SocketAddr,
    /// OTLP/HTTP, and Pyroscope's push and ingest APIs.
    pub otlp_http: SocketAddr,
    pub limits: Limits,
    pub scrape: Vec<ScrapeTarget>,
    /// Span metrics, service graphs and autologs from the spans received;
    /// `None` derives nothing.
    pub generator: Option<GeneratorConfig>,
}

/// Default ports, clear of a real Tempo (3200, 4317, 4318), Loki (3100),
/// Prometheus (9090) and Mimir (9009) running beside the lab.
pub const DEFAULT_QUERY_PORT: u16 = 13200;
pub const DEFAULT_OTLP_GRPC_PORT: u16 = 14317;
pub const DEFAULT_OTLP_HTTP_PORT: u16 = 14318;

impl Default for BackendConfig {
    fn default() -> Self {
        BackendConfig {
            data_dir: None,
            query: SocketAddr::from(([127, 0, 0, 1], DEFAULT_QUERY_PORT)),
            otlp_grpc: SocketAddr::from(([127, 0, 0, 1], DEFAULT_OTLP_GRPC_PORT)),
            otlp_http: SocketAddr::from(([127, 0, 0, 1], DEFAULT_OTLP_HTTP_PORT)),
            limits: Limits::default(),
            scrape: Vec::new(),
            generator: Some(GeneratorConfig::default()),
        }
    }
}

/// A started backend: its addresses (the real ones when port 0 was asked
/// for) and the handle that stops it.
pub struct RunningBackend {
    pub backend: Arc<Backend>,
    pub query: SocketAddr,
    pub otlp_grpc: SocketAddr,
    pub otlp_http: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
}

impl RunningBackend {
    /// `http://<query address>`: the base URL of all three query APIs.
    pub fn query_url(&self) -> String {
        format!("http://{}", self.query)
    }

    /// Stops serving and writes out the log.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        let backend = self.backend.clone();
        let _ = tokio::task::spawn_blocking(move || backend.sync()).await;
    }
}

async fn bind(addr: SocketAddr, what: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} for {what}: the port is in use or not allowed; stop what uses it or choose another port")
    })
}

/// Opens the store (replaying the log), binds every port, and serves.
pub async fn start(config: BackendConfig) -> Result<RunningBackend> {
    // Bind first: a port in use fails before anything is replayed.
    let query = bind(config.query, "the query APIs").await?;
    let otlp_grpc = bind(config.otlp_grpc, "OTLP/gRPC").await?;
    let otlp_http = bind(config.otlp_http, "OTLP/HTTP").await?;
    let data_dir = config.data_dir.clone();
    let limits = config.limits;
    let generator = config.generator.clone();
    let (backend, report) = tokio::task::spawn_blocking(move || {
        Backend::open(
            data_dir.as_deref(),
            limits,
            LabelPolicy::default(),
            generator,
        )
    })
    .await?
    .context("opening the backend's data folder")?;
    if let Some(report) = report
        && !report.damaged_segments.is_empty()
    {
        tracing::warn!(
            "the write-ahead log had a torn or corrupt tail in {:?}; everything before it was kept",
            report.damaged_segments
        );
    }
    let backend = Arc::new(backend);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let addresses = (
        query.local_addr()?,
        otlp_grpc.local_addr()?,
        otlp_http.local_addr()?,
    );
    let mut tasks = tokio::task::JoinSet::new();

    let query_app = api::router(backend.clone())
        .merge(receive::loki_push(backend.clone()))
        .merge(receive::profiles(backend.clone()));
    tasks.spawn(serve(query, query_app, stop_rx.clone()));
    tasks.spawn(serve(
        otlp_grpc,
        receive::otlp_grpc(backend.clone()),
        stop_rx.clone(),
    ));
    tasks.spawn(serve(
        otlp_http,
        receive::otlp_http(backend.clone()).merge(receive::profiles(backend.clone())),
        stop_rx,
    ));
    for target in config.scrape {
        tasks.spawn(scrape::run(backend.clone(), target));
    }
    if let Some(interval) = backend.collection_interval() {
        let generating = backend.clone();
        every(
            &mut tasks,
            interval,
            "collecting the generated series",
            move || {
                generating
                    .collect_generated()
                    .map(drop)
                    .map_err(|e| e.to_string())
            },
        );
    }
    let maintained = backend.clone();
    every(
        &mut tasks,
        Duration::from_secs(1),
        "writing the backend's log",
        move || maintained.maintain().map_err(|e| e.to_string()),
    );

    Ok(RunningBackend {
        backend,
        query: addresses.0,
        otlp_grpc: addresses.1,
        otlp_http: addresses.2,
        stop,
        tasks,
    })
}

async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
        .await;
}

/// Runs `job` on the blocking pool every `interval` (the first time one
/// interval from now), logging a failure or a panic as `what` failing.
fn every(
    tasks: &mut tokio::task::JoinSet<()>,
    interval: Duration,
    what: &'static str,
    job: impl Fn() -> Result<(), String> + Send + Sync + 'static,
) {
    let job = Arc::new(job);
    tasks.spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        // The first tick is now: there is nothing to do yet.
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let job = job.clone();
            match tokio::task::spawn_blocking(move || job()).await {
                Ok(Err(err)) => tracing::error!("{what} failed: {err}"),
                Err(err) => tracing::error!("{what} panicked: {err}"),
                Ok(Ok(())) => {}
            }
        }
    });
}
