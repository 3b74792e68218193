//! `lab backend`: the embedded backend on its own, in the foreground.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use lab_backend::{BackendConfig, Limits, ScrapeTarget};

use super::parse_duration;

#[derive(Debug, clap::Args)]
pub struct BackendArgs {
    /// Folder for the write-ahead log (kept across restarts); without it,
    /// everything stays in memory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Tempo, Loki and Prometheus query APIs (and Loki push).
    #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], lab_backend::DEFAULT_QUERY_PORT)))]
    pub query: SocketAddr,
    #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], lab_backend::DEFAULT_OTLP_GRPC_PORT)))]
    pub otlp_grpc: SocketAddr,
    #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], lab_backend::DEFAULT_OTLP_HTTP_PORT)))]
    pub otlp_http: SocketAddr,
    /// How long data is kept, e.g. 24h.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub retention: Duration,
    /// How much stored data to keep in memory, in MiB.
    #[arg(long, default_value_t = 512)]
    pub max_memory_mib: usize,
    /// A Prometheus target to scrape, as `job=url` (repeatable).
    #[arg(long = "scrape", value_name = "JOB=URL")]
    pub scrape: Vec<String>,
    /// How often to scrape.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub scrape_interval: Duration,
}

impl BackendArgs {
    pub fn config(&self) -> Result<BackendConfig> {
        let scrape = self
            .scrape
            .iter()
            .map(|spec| {
                let Some((job, url)) = spec.split_once('=') else {
                    bail!("--scrape {spec}: write it as job=url, e.g. mythical-server=http://127.0.0.1:4000/metrics");
                };
                Ok(ScrapeTarget {
                    job: job.to_owned(),
                    url: url.to_owned(),
                    interval: self.scrape_interval,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(BackendConfig {
            data_dir: self.data_dir.clone(),
            query: self.query,
            otlp_grpc: self.otlp_grpc,
            otlp_http: self.otlp_http,
            limits: Limits {
                retention: self.retention,
                max_bytes: self.max_memory_mib * 1024 * 1024,
            },
            scrape,
        })
    }
}

pub async fn run(args: BackendArgs) -> Result<()> {
    let running = lab_backend::start(args.config()?)
        .await
        .context("starting the embedded backend")?;
    println!("embedded backend ready");
    println!(
        "  query APIs (Tempo, Loki, Prometheus): {}",
        running.query_url()
    );
    println!("  OTLP/gRPC: http://{}", running.otlp_grpc);
    println!("  OTLP/HTTP: http://{}", running.otlp_http);
    crate::shutdown_signal().await;
    running.shutdown().await;
    Ok(())
}
