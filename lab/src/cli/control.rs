//! `lab fault` and `lab traffic`: the services' admin APIs, with the lab's
//! token, so a person never handles the token by hand.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mythical_services::faults::{REQUESTER_FAULTS, SERVER_FAULTS};
use serde_json::{Value, json};

use crate::render;
use crate::state::{LabState, StateDir};

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
        #[arg(long = "for", value_parser = super::parse_duration)]
        duration: Option<Duration>,
    },
    /// Switch one fault off, or all.
    Clear { kind: Option<String> },
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
fn admin(state: &StateDir, lab: &LabState, service: &str) -> Result<(String, String)> {
    let component = lab
        .components
        .iter()
        .find(|c| c.name == service)
        .with_context(|| format!("{service} is not part of this lab"))?;
    let url = component
        .endpoints
        .get("http")
        .cloned()
        .context("the service has no HTTP endpoint")?;
    Ok((url, state.admin_token()?))
}

fn running(state_dir: Option<PathBuf>) -> Result<(StateDir, LabState)> {
    let state = StateDir::resolve(state_dir)?;
    let lab = state
        .load()?
        .context("the lab is not up: run `lab up` first")?;
    Ok((state, lab))
}

async fn call(
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> Result<Value> {
    let mut request = reqwest::Client::new()
        .request(method, &url)
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("no answer from {url}: is the lab up?"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(text);
        bail!("{message}");
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn service_of(kind: &str) -> Result<&'static str> {
    if SERVER_FAULTS.iter().any(|k| k.name == kind) {
        Ok("mythical-server")
    } else if REQUESTER_FAULTS.iter().any(|k| k.name == kind) {
        Ok("mythical-requester")
    } else {
        let known: Vec<&str> = SERVER_FAULTS
            .iter()
            .chain(REQUESTER_FAULTS)
            .map(|k| k.name)
            .collect();
        bail!(
            "unknown fault kind `{kind}`: the kinds are {}",
            known.join(", ")
        )
    }
}

pub async fn fault(state_dir: Option<PathBuf>, command: FaultCommand) -> Result<()> {
    let (state, lab) = running(state_dir)?;
    match command {
        FaultCommand::List { json } => {
            let mut all = Vec::new();
            for service in ["mythical-server", "mythical-requester"] {
                let (url, token) = admin(&state, &lab, service)?;
                let answer = call(
                    reqwest::Method::GET,
                    format!("{url}/admin/faults"),
                    &token,
                    None,
                )
                .await?;
                all.extend(answer["faults"].as_array().cloned().unwrap_or_default());
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|f| {
                        vec![
                            f["kind"].as_str().unwrap_or_default().to_owned(),
                            f["service"].as_str().unwrap_or_default().to_owned(),
                            if f["active"] == true {
                                render::red(&format!("on ({})", f["rate"]))
                            } else {
                                "off".into()
                            },
                            f["summary"].as_str().unwrap_or_default().to_owned(),
                        ]
                    })
                    .collect();
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
        } => {
            let service = service_of(&kind)?;
            let (url, token) = admin(&state, &lab, service)?;
            let mut body = json!({});
            if let Some(rate) = rate {
                body["rate"] = json!(rate);
            }
            if let Some(duration) = duration {
                body["duration_seconds"] = json!(duration.as_secs());
            }
            let answer = call(
                reqwest::Method::PUT,
                format!("{url}/admin/faults/{kind}"),
                &token,
                Some(body),
            )
            .await?;
            println!("{kind} is on in {service} at rate {}", answer["rate"]);
        }
        FaultCommand::Clear { kind } => match kind {
            Some(kind) => {
                let service = service_of(&kind)?;
                let (url, token) = admin(&state, &lab, service)?;
                call(
                    reqwest::Method::DELETE,
                    format!("{url}/admin/faults/{kind}"),
                    &token,
                    None,
                )
                .await?;
                println!("{kind} is off");
            }
            None => {
                for service in ["mythical-server", "mythical-requester"] {
                    let (url, token) = admin(&state, &lab, service)?;
                    call(
                        reqwest::Method::DELETE,
                        format!("{url}/admin/faults"),
                        &token,
                        None,
                    )
                    .await?;
                }
                println!("every fault is off");
            }
        },
    }
    Ok(())
}

pub async fn traffic(state_dir: Option<PathBuf>, args: TrafficArgs) -> Result<()> {
    let (state, lab) = running(state_dir)?;
    let (url, token) = admin(&state, &lab, "mythical-requester")?;
    let body = if args.pause {
        json!({ "paused": true })
    } else if let Some(rate) = args.rate {
        json!({ "rate": rate })
    } else if args.resume {
        json!({})
    } else {
        let answer = call(
            reqwest::Method::GET,
            format!("{url}/admin/traffic"),
            &token,
            None,
        )
        .await?;
        println!("{answer}");
        return Ok(());
    };
    let answer = call(
        reqwest::Method::PUT,
        format!("{url}/admin/traffic"),
        &token,
        Some(body),
    )
    .await?;
    println!("traffic: {answer}");
    Ok(())
}
