//! `lab query traceql|logql|promql '<query>'` and `lab trace <id>`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use lab::parse_duration;
use lab::query::{Language, Request, Window};
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
    let request = match args.language {
        Language::Traceql => Request::Search {
            query: &args.query,
            window,
            limit: args.limit,
        },
        Language::Logql => Request::Logs {
            query: &args.query,
            window,
            limit: args.limit,
            step_secs: step,
        },
        Language::Promql => Request::Range {
            query: &args.query,
            window,
            step_secs: step,
        },
    };
    if args.json {
        println!("{}", client.raw(&request).await?);
    } else if args.language == Language::Traceql {
        let answer = client.traceql(&args.query, window, args.limit).await?;
        print!("{}", render::traceql(&answer));
    } else if args.language == Language::Logql {
        let answer = client.logql(&args.query, window, args.limit, step).await?;
        print!("{}", render::data(&answer));
    } else {
        let answer = client.promql_range(&args.query, window, step).await?;
        print!("{}", render::data(&answer));
    }
    Ok(())
}

pub async fn trace(state_dir: Option<PathBuf>, args: TraceArgs) -> Result<()> {
    let client = args.target.client(state_dir)?;
    if args.json {
        let request = Request::Trace {
            trace_id: &args.trace_id,
        };
        println!("{}", client.raw(&request).await?);
    } else {
        print!(
            "{}",
            render::waterfall(&client.trace(&args.trace_id).await?)
        );
    }
    Ok(())
}
