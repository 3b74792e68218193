//! `lab query traceql|logql|promql '<query>'` and `lab trace <id>`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use lab::parse_duration;
use lab::query::{Language, Window};
use lab::render;

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    pub language: Language,
    /// The query, e.g. '{ status = error }', '{job="mythical-server"} |= "FAILURE"'
    /// or 'sum by (beast) (rate(mythical_request_times_count[1m]))'.
    pub query: String,
    /// How far back to look.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub since: Duration,
    /// Where the window ends, as a time before now (default: now).
    #[arg(long, value_parser = parse_duration, conflicts_with = "ahead")]
    pub until: Option<Duration>,
    /// Let the window reach this far past now, for records stamped in the
    /// future (a skewed clock); --since still counts back from now.
    #[arg(long, value_parser = parse_duration)]
    pub ahead: Option<Duration>,
    /// At most this many traces or log lines.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Resolution of metric queries (default: about 120 points).
    #[arg(long, value_parser = parse_duration)]
    pub step: Option<Duration>,
    /// Print the API's JSON answer as it is.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: super::Target,
}

#[derive(Debug, clap::Args)]
pub struct TraceArgs {
    /// The trace id (32 hex digits).
    pub trace_id: String,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: super::Target,
}

pub async fn run(state_dir: Option<PathBuf>, args: QueryArgs) -> Result<()> {
    let client = args.target.client(state_dir)?;
    let now = lab_backend::params::now_nanos();
    let end = now - args.until.map_or(0, |d| d.as_nanos() as i64);
    let window = Window {
        start: end - args.since.as_nanos() as i64,
        end: end + args.ahead.map_or(0, |d| d.as_nanos() as i64),
    };
    let step = args
        .step
        .map_or_else(|| window.default_step_secs(), |d| d.as_secs().max(1) as i64);
    let answer = match args.language {
        Language::Traceql => client.traceql(&args.query, window, args.limit).await?,
        Language::Logql => client.logql(&args.query, window, args.limit, step).await?,
        Language::Promql => client.promql_range(&args.query, window, step).await?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else if args.language == Language::Traceql {
        print!("{}", render::traceql(&answer));
    } else {
        print!("{}", render::data(&answer));
    }
    Ok(())
}

pub async fn trace(state_dir: Option<PathBuf>, args: TraceArgs) -> Result<()> {
    let client = args.target.client(state_dir)?;
    let answer = client.trace(&args.trace_id).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{}", render::waterfall(&answer));
    }
    Ok(())
}
