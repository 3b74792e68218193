//! `lab console`: the console's URL (started again if it is not running),
//! and the hidden `lab console serve` that `lab up` runs detached.

use std::path::PathBuf;

use anyhow::{Context, Result};

use lab::console;
use lab::state::StateDir;

#[derive(Debug, clap::Args)]
pub struct ConsoleArgs {
    #[command(subcommand)]
    pub command: Option<ConsoleCommand>,
}

#[derive(Debug, clap::Subcommand)]
pub enum ConsoleCommand {
    /// Serve the console in the foreground (how `lab up` starts it).
    #[command(hide = true)]
    Serve {
        #[arg(long, default_value_t = console::PREFERRED_PORT)]
        port: u16,
    },
}

pub async fn run(state_dir: Option<PathBuf>, args: ConsoleArgs) -> Result<()> {
    let state = StateDir::resolve(state_dir)?;
    match args.command {
        Some(ConsoleCommand::Serve { port }) => console::serve(state, port).await,
        None => {
            state
                .load()?
                .context("the lab is not up: `lab up` starts it and its console")?;
            let record = match console::running(&state) {
                Some(record) => record,
                None => console::start(&state).await?,
            };
            println!("{}", record.url);
            Ok(())
        }
    }
}
