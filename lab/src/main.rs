//! `lab`: parses the command line and dispatches; the work is in the
//! command modules and the libraries.

mod cli;
mod diagnose;
mod plan;
mod query;
mod render;
mod runtime;
mod state;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "lab",
    version,
    about = "Mythical Lab: an instrumented system to break on purpose and diagnose"
)]
struct Cli {
    /// The lab's state folder (default: .mythical-lab here, or $MYTHICAL_LAB_HOME).
    #[arg(long, global = true)]
    state_dir: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Bring the lab up: Postgres, the embedded backend, the mythical services.
    Up(cli::stack::UpArgs),
    /// Stop everything this lab started.
    Down(cli::stack::DownArgs),
    /// What runs, where, and whether it is healthy.
    Status(cli::stack::StatusArgs),
    /// Show a component's log (`-f` to follow it).
    Logs(cli::inspect::LogsArgs),
    /// What this machine has and lacks for the lab, and what to do about it.
    Doctor(cli::inspect::DoctorArgs),
    /// Find the root cause of what is failing, from the telemetry and the database.
    Diagnose(cli::diagnose::DiagnoseArgs),
    /// Switch fault kinds on and off in the running services.
    #[command(subcommand)]
    Fault(cli::control::FaultCommand),
    /// Change the requester's traffic: a rate, pause, or resume.
    Traffic(cli::control::TrafficArgs),
    /// Run a mythical service in this process (how `lab up` starts them).
    #[command(hide = true)]
    Service { name: cli::stack::ServiceName },
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
    let state_dir = cli.state_dir.clone();
    let result = match cli.command {
        Command::Up(args) => cli::stack::up(state_dir, args).await,
        Command::Down(args) => cli::stack::down(state_dir, args).await,
        Command::Status(args) => cli::stack::status(state_dir, args).await,
        Command::Service { name } => cli::stack::service(name).await,
        Command::Logs(args) => cli::inspect::logs(state_dir, args).await,
        Command::Doctor(args) => cli::inspect::doctor(state_dir, args).await,
        Command::Diagnose(args) => cli::diagnose::run(state_dir, args).await,
        Command::Fault(command) => cli::control::fault(state_dir, command).await,
        Command::Traffic(args) => cli::control::traffic(state_dir, args).await,
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
