//! `lab`: parses the command line and dispatches; the work is in the
//! command modules and the libraries.

mod cli;
mod query;
mod render;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "lab",
    version,
    about = "Mythical Lab: an instrumented system to break on purpose and diagnose"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the embedded telemetry backend in the foreground.
    Backend(cli::backend::BackendArgs),
    /// Run a TraceQL, LogQL or PromQL query against the lab's backend.
    Query(cli::query::QueryArgs),
    /// Show one trace as a waterfall.
    Trace(cli::query::TraceArgs),
}

#[tokio::main]
async fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Backend(args) => cli::backend::run(args).await,
        Command::Query(args) => cli::query::run(args).await,
        Command::Trace(args) => cli::query::trace(args).await,
    };
    if let Err(err) = result {
        eprintln!("lab: {err:#}");
        std::process::exit(1);
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
