//! The services' fault switches over their admin APIs, with the lab's
//! token: what `lab fault` and scenarios use for the kinds a service
//! honours itself.

use anyhow::{Context, Result, bail};
use mythical_services::admin::{FaultRequest, SeedRequest};
use mythical_services::faults::{FaultList, FaultStatus};
use mythical_services::requester::TrafficSetting;
use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};

use crate::plan::Kind;
use crate::state::{LabState, StateDir};

/// A service's admin URL and the lab's token for it.
pub fn admin(state: &StateDir, lab: &LabState, service: Kind) -> Result<(String, String)> {
    let component = lab
        .components
        .iter()
        .find(|c| c.name == service.name())
        .with_context(|| format!("{} is not part of this lab", service.name()))?;
    let url = component
        .endpoint("http")
        .context("the service has no HTTP endpoint")?
        .to_owned();
    Ok((url, state.admin_token()?))
}

/// Why an admin API (a service's, or the db-proxy's) did not do what the
/// lab asked.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no answer from {url}: is the lab up?")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The API's own words (`{"error": …}`), or its body.
    #[error("{message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url} answered what its admin API does not: {reason}")]
    Unreadable { url: String, reason: String },
}

async fn send<T: DeserializeOwned>(
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Vec<u8>>,
) -> Result<T, AdminError> {
    let mut request = reqwest::Client::new()
        .request(method, &url)
        .bearer_auth(token);
    if let Some(body) = body {
        request = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(source) => return Err(AdminError::Unreachable { url, source }),
    };
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        #[derive(serde::Deserialize)]
        struct ErrorAnswer {
            error: String,
        }
        let message = serde_json::from_str::<ErrorAnswer>(&text).map_or(text, |e| e.error);
        return Err(AdminError::Refused {
            url,
            status: status.as_u16(),
            message,
        });
    }
    // No content (a DELETE's 204) reads as JSON's null.
    let text = if text.trim().is_empty() {
        "null"
    } else {
        &text
    };
    serde_json::from_str(text).map_err(|e| AdminError::Unreadable {
        url,
        reason: e.to_string(),
    })
}

/// `GET url`, its answer as `T`.
pub async fn get<T: DeserializeOwned>(url: String, token: &str) -> Result<T, AdminError> {
    send(reqwest::Method::GET, url, token, None).await
}

/// `PUT url` with `body` as JSON, its answer as `T`.
pub async fn put<T: DeserializeOwned>(
    url: String,
    token: &str,
    body: &impl Serialize,
) -> Result<T, AdminError> {
    let body = serde_json::to_vec(body).expect("the lab's request bodies serialise");
    send(reqwest::Method::PUT, url, token, Some(body)).await
}

/// `DELETE url`, whatever it answers.
pub async fn delete(url: String, token: &str) -> Result<(), AdminError> {
    send::<IgnoredAny>(reqwest::Method::DELETE, url, token, None)
        .await
        .map(|_| ())
}

/// Every fault kind `service` knows, with its state.
pub async fn faults_of(state: &StateDir, lab: &LabState, service: Kind) -> Result<FaultList> {
    let (url, token) = admin(state, lab, service)?;
    Ok(get(format!("{url}/admin/faults"), &token).await?)
}

/// How the requester paces its traffic now.
pub async fn traffic(state: &StateDir, lab: &LabState) -> Result<TrafficSetting> {
    let (url, token) = admin(state, lab, Kind::Requester)?;
    Ok(get(format!("{url}/admin/traffic"), &token).await?)
}

/// Paces the requester's traffic; answers the setting it took.
pub async fn set_traffic(
    state: &StateDir,
    lab: &LabState,
    setting: &TrafficSetting,
) -> Result<TrafficSetting> {
    let (url, token) = admin(state, lab, Kind::Requester)?;
    Ok(put(format!("{url}/admin/traffic"), &token, setting).await?)
}

/// The service whose switch a fault kind is.
pub fn service_of(kind: &str) -> Result<Kind> {
    if super::find(kind).is_some() {
        bail!("{kind} acts through the runtime, not a service's switch");
    }
    match mythical_services::faults::named(kind).and_then(|k| Kind::named(k.service)) {
        Some(service) => Ok(service),
        None => bail!(
            "unknown fault kind `{kind}`: the kinds are {}",
            super::kinds().join(", ")
        ),
    }
}

/// Turns a service's switch on; answers the switch's new state.
pub async fn switch_on(
    state: &StateDir,
    lab: &LabState,
    kind: &str,
    rate: Option<f64>,
    duration: Option<std::time::Duration>,
) -> Result<FaultStatus> {
    let service = service_of(kind)?;
    let (url, token) = admin(state, lab, service)?;
    let request = FaultRequest {
        rate,
        duration_seconds: duration.map(|d| d.as_secs()),
    };
    Ok(put(format!("{url}/admin/faults/{kind}"), &token, &request).await?)
}

/// Turns one service's switch off.
pub async fn switch_off(state: &StateDir, lab: &LabState, kind: &str) -> Result<()> {
    let (url, token) = admin(state, lab, service_of(kind)?)?;
    Ok(delete(format!("{url}/admin/faults/{kind}"), &token).await?)
}

/// Turns every switch of both services off; a service that is down has
/// none on (its switches live in its memory).
pub async fn switch_off_all(state: &StateDir, lab: &LabState) -> Result<()> {
    for service in Kind::SERVICES {
        let (url, token) = admin(state, lab, service)?;
        match delete(format!("{url}/admin/faults"), &token).await {
            Ok(()) | Err(AdminError::Unreachable { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Seeds both services' random draws (`None`: back to fresh entropy).
pub async fn set_seed(state: &StateDir, lab: &LabState, seed: Option<u64>) -> Result<()> {
    for service in Kind::SERVICES {
        let (url, token) = admin(state, lab, service)?;
        let url = format!("{url}/admin/seed");
        match seed {
            Some(seed) => {
                put::<IgnoredAny>(url, &token, &SeedRequest { seed }).await?;
            }
            None => delete(url, &token).await?,
        }
    }
    Ok(())
}
