//! `lab fault` and `lab traffic`: the services' admin APIs, with the lab's
//! token, so a person never handles the token by hand.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mythical_services::requester::TrafficSetting;

use lab::faults::switches::service_of;
use lab::faults::{self, switches};
use lab::plan::Kind;
use lab::render;
use lab::state::{LabState, StateDir};

#[derive(Debug, clap::Subcommand)]
pub enum FaultCommand {
    /// Every fault kind, where it acts and whether it is on.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Switch a fault on.
    Inject {
        kind: String,
        /// Fraction of requests hit, 0 to 1 (default: the kind's own).
        #[arg(long)]
        rate: Option<f64>,
        /// Switch it off again after this long, e.g. 5m.
        #[arg(long = "for", value_parser = lab::parse_duration)]
        duration: Option<Duration>,
        /// The component an infrastructure fault acts on (service-crash:
        /// mythical-server or mythical-requester).
        #[arg(long)]
        target: Option<String>,
        /// How an infrastructure fault acts: pause, stop or kill.
        #[arg(long)]
        mode: Option<String>,
        /// A network fault's parameter, repeatable: `--param latency_ms=500`
        /// (`lab fault list` shows each kind's).
        #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
        params: Vec<(String, String)>,
        /// Switch it on this long from now, e.g. 30s (a detached
        /// scheduler waits; `lab fault clear` does not stop it).
        #[arg(long, value_parser = lab::parse_duration)]
        after: Option<Duration>,
        /// Seed the services' random draws (and the proxy's jitter), so
        /// the run can be repeated.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Switch one fault off, or all.
    Clear { kind: Option<String> },
    /// Applies (and clears) one fault at its time: the detached
    /// scheduler `inject --after` starts.
    #[command(hide = true)]
    Play { spec: String },
}

#[derive(Debug, clap::Args)]
pub struct TrafficArgs {
    /// Requests per second in total.
    #[arg(long, conflicts_with_all = ["pause", "resume"])]
    pub rate: Option<f64>,
    #[arg(long)]
    pub pause: bool,
    /// Back to the original's spiky pacing.
    #[arg(long)]
    pub resume: bool,
}

/// The admin base URL and token of a running service.
fn running(state_dir: Option<PathBuf>) -> Result<(StateDir, LabState)> {
    let state = StateDir::resolve(state_dir)?;
    let lab = state
        .load()?
        .context("the lab is not up: run `lab up` first")?;
    Ok((state, lab))
}

pub async fn fault(state_dir: Option<PathBuf>, command: FaultCommand) -> Result<()> {
    let (state, lab) = running(state_dir)?;
    match command {
        FaultCommand::List { json } => {
            let mut all: Vec<FaultRow> = Vec::new();
            for service in Kind::SERVICES {
                let list = switches::faults_of(&state, &lab, service).await?;
                all.extend(list.faults.into_iter().map(|f| FaultRow {
                    kind: f.kind.into_owned(),
                    service: f.service.into_owned(),
                    active: f.active,
                    rate: f.rate,
                    mode: None,
                    since: f.since,
                    expires_in_seconds: f.expires_in_seconds,
                    summary: f.summary.into_owned(),
                    symptoms: None,
                }));
            }
            let active = faults::active(&state)?;
            for kind in faults::INFRA_FAULTS {
                let on = active.iter().find(|a| a.kind == kind.name);
                all.push(FaultRow {
                    kind: kind.name.to_owned(),
                    service: on.map_or("runtime".to_owned(), |a| a.component.clone()),
                    active: on.is_some(),
                    rate: None,
                    mode: on.map(|a| a.action),
                    since: on.map(|a| a.since),
                    expires_in_seconds: None,
                    summary: kind.summary.to_owned(),
                    symptoms: Some(kind.symptoms.to_owned()),
                });
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|f| {
                        let state = match (f.active, f.mode, f.rate) {
                            (false, _, _) => "off".into(),
                            (true, Some(mode), _) => {
                                let mode = serde_json::to_string(&mode)?;
                                render::red(&format!("on ({})", mode.trim_matches('"')))
                            }
                            (true, None, Some(rate)) => render::red(&format!("on ({rate})")),
                            (true, None, None) => render::red("on"),
                        };
                        Ok(vec![
                            f.kind.clone(),
                            f.service.clone(),
                            state,
                            f.summary.clone(),
                        ])
                    })
                    .collect::<Result<_>>()?;
                print!(
                    "{}",
                    render::table(&["FAULT", "SERVICE", "STATE", "WHAT IT DOES"], &rows)
                );
            }
        }
        FaultCommand::Inject {
            kind,
            rate,
            duration,
            target,
            mode,
            params,
            after,
            seed,
        } => {
            let infra = faults::find(&kind);
            if infra.is_some() && rate.is_some() {
                bail!(
                    "{kind} takes --target, --mode and --param, not --rate; clear it with `lab fault clear {kind}`"
                );
            }
            if infra.is_none() && (target.is_some() || mode.is_some() || !params.is_empty()) {
                bail!(
                    "{kind} is a service's switch: it takes --rate and --for, not --target, --mode or --param"
                );
            }
            if infra.is_none() {
                service_of(&kind)?;
            }
            if let Some(seed) = seed {
                switches::set_seed(&state, &lab, Some(seed)).await?;
            }
            // Later, or an infrastructure fault that must be undone later:
            // a detached scheduler does it.
            if after.is_some() || (infra.is_some() && duration.is_some()) {
                let secs = |d: Duration| format!("{}s", d.as_secs());
                let spec = lab::scenario::FaultSpec {
                    kind: kind.clone(),
                    rate,
                    target,
                    mode,
                    after: Some(secs(after.unwrap_or_default())),
                    duration: duration.map(secs),
                    params: params
                        .into_iter()
                        .map(|(k, v)| (k, lab::scenario::ParamValue::Text(v)))
                        .collect(),
                };
                let pid = lab::scenario::run::spawn_player(&state, &spec)?;
                println!(
                    "{kind} scheduled: on in {}{} (scheduler pid {pid}, log {})",
                    spec.after.as_deref().unwrap_or("0s"),
                    spec.duration
                        .as_deref()
                        .map(|d| format!(", off {d} later"))
                        .unwrap_or_default(),
                    state.logs().join(format!("fault-{kind}.log")).display()
                );
                return Ok(());
            }
            if let Some(infra) = infra {
                let params: faults::Params = params.into_iter().collect();
                let applied = faults::inject(
                    &state,
                    &lab,
                    infra,
                    target.as_deref(),
                    mode.as_deref(),
                    &params,
                )
                .await?;
                println!("{kind} is on: {} {:?}", applied.component, applied.action);
                if let Some(toxics) = &applied.toxics {
                    println!("toxics: {}", serde_json::to_string(toxics)?);
                }
                println!("symptoms: {}", infra.symptoms);
                return Ok(());
            }
            let service = service_of(&kind)?.name();
            let status = switches::switch_on(&state, &lab, &kind, rate, duration).await?;
            match status.rate {
                Some(rate) => println!("{kind} is on in {service} at rate {rate}"),
                None => println!("{kind} is on in {service}"),
            }
        }
        FaultCommand::Play { spec } => {
            let spec: lab::scenario::FaultSpec = serde_json::from_str(&spec).context(
                "the scheduled fault is not a fault spec (this command is for the lab itself)",
            )?;
            lab::scenario::run::play(&state, &lab, &[spec], None).await?;
        }
        FaultCommand::Clear { kind } => match kind {
            Some(kind) if faults::find(&kind).is_some() => {
                let undone = faults::clear(&state, &lab, Some(&kind)).await?;
                if undone.is_empty() {
                    println!("{kind} was not on");
                } else {
                    println!("{kind} is off");
                }
            }
            Some(kind) => {
                switches::switch_off(&state, &lab, &kind).await?;
                println!("{kind} is off");
            }
            None => {
                faults::clear(&state, &lab, None).await?;
                switches::switch_off_all(&state, &lab).await?;
                println!("every fault is off");
            }
        },
    }
    Ok(())
}

pub async fn traffic(state_dir: Option<PathBuf>, args: TrafficArgs) -> Result<()> {
    let (state, lab) = running(state_dir)?;
    let setting = if args.pause {
        TrafficSetting {
            rate: None,
            paused: true,
        }
    } else if let Some(rate) = args.rate {
        TrafficSetting {
            rate: Some(rate),
            paused: false,
        }
    } else if args.resume {
        TrafficSetting::default()
    } else {
        let now = switches::traffic(&state, &lab).await?;
        println!("{}", serde_json::to_string(&now)?);
        return Ok(());
    };
    let now = switches::set_traffic(&state, &lab, &setting).await?;
    println!("traffic: {}", serde_json::to_string(&now)?);
    Ok(())
}

/// One row of `lab fault list`: a service's switch or an infrastructure
/// fault, as `--json` prints it.
#[derive(Debug, serde::Serialize)]
struct FaultRow {
    kind: String,
    service: String,
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate: Option<f64>,
    /// What an infrastructure fault does to its component.
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<faults::Action>,
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_in_seconds: Option<u64>,
    summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    symptoms: Option<String>,
}

/// `key=value`, as `--param` takes it.
fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(format!("`{text}` is not key=value, e.g. latency_ms=500")),
    }
}

/// The slow-query fault's session: the lock held two seconds in every two
/// and a half, until the process is stopped.
pub async fn hold_lock(beast: &str, port: u16) -> Result<()> {
    let beast: mythical_storage::Beast = beast.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = lab::runtime::postgres_session(port, std::time::Duration::from_millis(1500));
    loop {
        tokio::select! {
            held = store.hold_lock(beast, Duration::from_secs(2)) => {
                if let Err(e) = held {
                    eprintln!("lock on {beast}: {e}");
                }
            }
            _ = mythical_services::shutdown_signal() => return Ok(()),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
