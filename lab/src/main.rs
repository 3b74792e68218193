//! `lab`: parses the command line and hands each command to its adapter in
//! `cli`, which calls the `lab` library. Nothing in the library knows this
//! binary exists; the console is the library's other adapter.

mod cli;

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
    /// Bring the lab up: Postgres, the mythical services, the telemetry
    /// backends (Grafana's stack in docker, the embedded one natively).
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
    /// Hold a lock on a beast's table in bursts (the slow-query fault).
    #[command(hide = true)]
    HoldLock {
        beast: String,
        #[arg(long)]
        port: u16,
    },
    /// Run the db-proxy, the TCP fault proxy before Postgres (how `lab up`
    /// starts it).
    #[command(hide = true)]
    Proxy(cli::proxy::ProxyArgs),
    /// The lab console's URL: a web cockpit of the lab, its scenarios and
    /// its signals (`lab up` starts it).
    Console(cli::console::ConsoleArgs),
    /// Run the embedded telemetry backend in the foreground.
    Backend(cli::backend::BackendArgs),
    /// Run a TraceQL, LogQL or PromQL query against the lab's backend.
    Query(cli::query::QueryArgs),
    /// Show one trace as a waterfall.
    Trace(cli::query::TraceArgs),
    /// The scenario catalogue: incidents to start, stop and follow.
    #[command(subcommand)]
    Scenario(cli::scenario::ScenarioCommand),
    /// Walk a scenario from symptom to cause, each step checked.
    Guide(cli::scenario::GuideArgs),
    /// The docker runtime's images: list, pull, and carry them offline.
    #[command(subcommand)]
    Images(cli::images::ImagesCommand),
    /// Write the lab in another tool's format.
    #[command(subcommand)]
    Export(cli::export::ExportCommand),
}

/// Sampled, so `lab service server|requester` push heap profiles; the
/// lab's other roles never start sampling and pay one relaxed load per
/// allocation.
#[global_allocator]
static HEAP: mythical_services::heap::Sampled = mythical_services::heap::Sampled;

fn main() {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Backend(_) | Command::Service { .. }) {
        // Before the runtime's threads exist, so none of them has an
        // arena of its own already.
        mythical_services::heap::limit_arenas();
    }
    tokio::runtime::Runtime::new()
        .expect("starting the async runtime")
        .block_on(run(cli));
}

async fn run(cli: Cli) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let state_dir = cli.state_dir.clone();
    let result = match cli.command {
        Command::Up(args) => cli::stack::up(state_dir, args).await,
        Command::Down(args) => cli::stack::down(state_dir, args).await,
        Command::Status(args) => cli::stack::status(state_dir, args).await,
        Command::Service { name } => cli::stack::service(name).await,
        Command::HoldLock { beast, port } => cli::control::hold_lock(&beast, port).await,
        Command::Proxy(args) => cli::proxy::run(args).await,
        Command::Logs(args) => cli::inspect::logs(state_dir, args).await,
        Command::Doctor(args) => cli::inspect::doctor(state_dir, args).await,
        Command::Diagnose(args) => cli::diagnose::run(state_dir, args).await,
        Command::Fault(command) => cli::control::fault(state_dir, command).await,
        Command::Traffic(args) => cli::control::traffic(state_dir, args).await,
        Command::Console(args) => cli::console::run(state_dir, args).await,
        Command::Backend(args) => cli::backend::run(args).await,
        Command::Query(args) => cli::query::run(state_dir, args).await,
        Command::Trace(args) => cli::query::trace(state_dir, args).await,
        Command::Scenario(command) => cli::scenario::run(state_dir, command).await,
        Command::Guide(args) => cli::scenario::guide(state_dir, args).await,
        Command::Images(command) => cli::images::run(state_dir, command).await,
        Command::Export(command) => cli::export::run(command).await,
    };
    if let Err(err) = result {
        eprintln!("lab: {err:#}");
        std::process::exit(1);
    }
}
