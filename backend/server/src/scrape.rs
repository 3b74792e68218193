//! Scraping Prometheus `/metrics` targets, as Alloy does in the original:
//! each target on its interval, the text kept in the write-ahead log and
//! parsed with exemplars, plus an `up` sample per scrape.

use std::sync::Arc;
use std::time::Duration;

use lab_signals::{Labels, Sample};
use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::ingest::{Payload, Scrape};
use crate::params::now_nanos;

/// One target: its `job` label, URL and interval, and the labels its
/// target entry adds to every series (the original's `service` and
/// `group`, as Alloy's `targets` list gives them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrapeTarget {
    pub job: String,
    pub url: String,
    #[serde(with = "seconds")]
    pub interval: Duration,
    #[serde(default)]
    pub labels: Vec<(String, String)>,
}

mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        f64::deserialize(d).map(Duration::from_secs_f64)
    }
}

impl ScrapeTarget {
    /// `host:port` of the URL, Prometheus' `instance` label.
    pub fn instance(&self) -> String {
        let rest = self.url.split("://").nth(1).unwrap_or(&self.url);
        rest.split('/').next().unwrap_or(rest).to_owned()
    }
}

/// Scrapes `target` forever.
pub async fn run(backend: Arc<Backend>, target: ScrapeTarget) {
    let client = reqwest::Client::builder()
        .timeout(target.interval.min(Duration::from_secs(10)))
        .build()
        .expect("a plain HTTP client builds");
    let mut labels = vec![
        ("instance".to_owned(), target.instance()),
        ("job".to_owned(), target.job.clone()),
    ];
    labels.extend(
        target
            .labels
            .iter()
            .filter(|(name, _)| name != "instance" && name != "job")
            .cloned(),
    );
    let mut ticker = tokio::time::interval(target.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticker.tick().await;
        let time_ms = now_nanos() / 1_000_000;
        let text = fetch(&client, &target.url).await;
        let up = match text {
            Ok(text) => {
                let payload = Payload::Scrape(Scrape {
                    target: labels.clone(),
                    time_ms,
                    text,
                });
                let backend = backend.clone();
                match tokio::task::spawn_blocking(move || backend.ingest(payload)).await {
                    Ok(Ok(_)) => 1.0,
                    Ok(Err(err)) => {
                        tracing::warn!("scrape of {} did not parse: {err}", target.url);
                        0.0
                    }
                    Err(_) => 0.0,
                }
            }
            Err(err) => {
                tracing::debug!("scrape of {} failed: {err}", target.url);
                0.0
            }
        };
        let mut up_labels = labels.clone();
        up_labels.push(("__name__".to_owned(), "up".to_owned()));
        backend.store().add_metrics(
            [(Labels::new(up_labels), Sample { t: time_ms, v: up })],
            [],
            [],
        );
    }
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<String, reqwest::Error> {
    client
        .get(url)
        // OpenMetrics first: it is the format that carries exemplars.
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0;q=0.9,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await?
        .error_for_status()?
        .text()
        .await
}
