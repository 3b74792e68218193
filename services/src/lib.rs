//! The lab's sample system, reimplementing intro-to-mltp's services:
//! [`server`] (the beasts' HTTP API over Postgres) and [`requester`] (the
//! traffic), each exporting traces, logs and metrics over OTLP and each with
//! runtime fault switches ([`faults`]) behind a token-guarded admin API.

pub mod admin;
pub mod config;
pub mod cpu;
pub mod events;
pub mod exposition;
pub mod faults;
pub mod heap;
pub mod http_json;
pub mod loki_push;
pub mod profiling;
pub mod propagation;
pub mod random;
pub mod requester;
pub mod server;
pub mod symbols;
pub mod telemetry;

/// The services' own diagnostics (start-up, exporter trouble) on stderr,
/// filtered by `RUST_LOG` (default `warn`); the domain events go through
/// [`events`].
pub fn init_console_log() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Resolves on SIGTERM or Ctrl-C, so the services flush telemetry and stop
/// cleanly when the lab (or Docker) stops them.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
