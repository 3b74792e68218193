//! The services' fault switches over their admin APIs, with the lab's
//! token: what `lab fault` and scenarios use for the kinds a service
//! honours itself.

use anyhow::{Context, Result, bail};
use mythical_services::faults::{REQUESTER_FAULTS, SERVER_FAULTS};
use serde_json::{Value, json};

use crate::state::{LabState, StateDir};

pub fn admin(state: &StateDir, lab: &LabState, service: &str) -> Result<(String, String)> {
    let component = lab
        .components
        .iter()
        .find(|c| c.name == service)
        .with_context(|| format!("{service} is not part of this lab"))?;
    let url = component
        .endpoint("http")
        .context("the service has no HTTP endpoint")?
        .to_owned();
    Ok((url, state.admin_token()?))
}

pub async fn call(
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

pub fn service_of(kind: &str) -> Result<&'static str> {
    if super::find(kind).is_some() {
        bail!("{kind} acts through the runtime, not a service's switch");
    }
    if SERVER_FAULTS.iter().any(|k| k.name == kind) {
        Ok("mythical-server")
    } else if REQUESTER_FAULTS.iter().any(|k| k.name == kind) {
        Ok("mythical-requester")
    } else {
        bail!(
            "unknown fault kind `{kind}`: the kinds are {}",
            super::KINDS.join(", ")
        )
    }
}

/// Turns a service's switch on; answers the switch's new state.
pub async fn switch_on(
    state: &StateDir,
    lab: &LabState,
    kind: &str,
    rate: Option<f64>,
    duration: Option<std::time::Duration>,
) -> Result<Value> {
    let service = service_of(kind)?;
    let (url, token) = admin(state, lab, service)?;
    let mut body = json!({});
    if let Some(rate) = rate {
        body["rate"] = json!(rate);
    }
    if let Some(duration) = duration {
        body["duration_seconds"] = json!(duration.as_secs());
    }
    call(
        reqwest::Method::PUT,
        format!("{url}/admin/faults/{kind}"),
        &token,
        Some(body),
    )
    .await
}

/// Turns every switch of both services off; a service that is down has
/// none on (its switches live in its memory).
pub async fn switch_off_all(state: &StateDir, lab: &LabState) -> Result<()> {
    for service in ["mythical-server", "mythical-requester"] {
        let (url, token) = admin(state, lab, service)?;
        match call(
            reqwest::Method::DELETE,
            format!("{url}/admin/faults"),
            &token,
            None,
        )
        .await
        {
            Ok(_) => {}
            Err(e) if format!("{e:#}").contains("no answer from") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Seeds both services' random draws (`None`: back to fresh entropy).
pub async fn set_seed(state: &StateDir, lab: &LabState, seed: Option<u64>) -> Result<()> {
    for service in ["mythical-server", "mythical-requester"] {
        let (url, token) = admin(state, lab, service)?;
        let (method, body) = match seed {
            Some(seed) => (reqwest::Method::PUT, Some(json!({ "seed": seed }))),
            None => (reqwest::Method::DELETE, None),
        };
        call(method, format!("{url}/admin/seed"), &token, body).await?;
    }
    Ok(())
}
