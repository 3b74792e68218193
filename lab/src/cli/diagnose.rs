//! `lab diagnose [--json]`: exit 0 when healthy, 2 when a fault was found.

use std::path::PathBuf;

use anyhow::{Context, Result};

use lab::diagnose;
use lab::query::QueryClient;
use lab::render;
use lab::state::StateDir;

#[derive(Debug, clap::Args)]
pub struct DiagnoseArgs {
    #[arg(long)]
    pub json: bool,
    /// How far back to look for failures (default 60s): after clearing a
    /// fault, a short window reads healthy sooner.
    #[arg(long, value_parser = lab::parse_duration)]
    pub since: Option<std::time::Duration>,
}

pub async fn run(state_dir: Option<PathBuf>, args: DiagnoseArgs) -> Result<()> {
    let state = StateDir::resolve(state_dir)?;
    let lab = state
        .load()?
        .context("the lab is not up: run `lab up` first")?;
    let report = diagnose::diagnose_lab(
        &lab,
        &QueryClient::for_lab(&lab)?,
        args.since.unwrap_or(diagnose::LOOKBACK),
    )
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        match &report.root_cause {
            Some(cause) => {
                println!(
                    "{} {} — {}",
                    render::red("FAULT"),
                    render::bold(&cause.id),
                    cause.summary
                );
                // The database rules quote Postgres' own error; the
                // others state what the evidence measured.
                let from_postgres = matches!(
                    cause.id.as_str(),
                    "null-name" | "missing-name" | "duplicate-name" | "table-wipe"
                ) || cause.id.starts_with("database-error");
                let label = if from_postgres {
                    "Postgres says"
                } else {
                    "measured"
                };
                println!("  {label}: {}", cause.message);
                println!("  fix: {}", cause.service);
            }
            None if report.status == "fault" => println!(
                "{} errors found, root cause not identified",
                render::red("FAULT")
            ),
            None => println!("healthy: no fault found"),
        }
        println!();
        println!("evidence:");
        for (i, e) in report.evidence.iter().enumerate() {
            println!("  {}. [{}] {}", i + 1, e.signal, e.finding);
            println!("     {}", render::dim(&e.query));
        }
        if !report.rejected.is_empty() {
            println!();
            println!("ruled out:");
            for r in &report.rejected {
                println!("  {}: {}", render::bold(&r.id), r.why);
            }
        }
    }
    if report.status == "fault" {
        std::process::exit(2);
    }
    Ok(())
}
