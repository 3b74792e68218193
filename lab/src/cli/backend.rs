//! `lab backend`: the embedded backend on its own, in the foreground.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use lab_backend::{BackendConfig, Limits, ScrapeTarget};

use lab::parse_duration;

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
    /// A Prometheus target to scrape, as `job=url`, optionally followed by
    /// labels for its series: `mythical=http://127.0.0.1:4000/metrics,service=mythical-server`
    /// (repeatable).
    #[arg(long = "scrape", value_name = "JOB=URL[,LABEL=VALUE...]")]
    pub scrape: Vec<String>,
    /// How often to scrape: every 2 s, as the original's Alloy scrapes the
    /// mythical services, so a leak or a slow table shows within seconds.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub scrape_interval: Duration,
}

impl BackendArgs {
    pub fn config(&self) -> Result<BackendConfig> {
        let scrape = self
            .scrape
            .iter()
            .map(|spec| parse_scrape(spec, self.scrape_interval))
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
            ..BackendConfig::default()
        })
    }
}

/// One `--scrape` value: `job=url[,label=value...]`.
fn parse_scrape(spec: &str, interval: Duration) -> Result<ScrapeTarget> {
    let mut parts = spec.split(',');
    let first = parts.next().unwrap_or_default();
    let Some((job, url)) = first
        .split_once('=')
        .filter(|(job, url)| !job.is_empty() && url.contains("://"))
    else {
        bail!(
            "--scrape {spec}: write it as job=url[,label=value...], e.g. mythical=http://127.0.0.1:4000/metrics,service=mythical-server"
        );
    };
    let labels = parts
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
            _ => bail!("--scrape {spec}: `{pair}` is not label=value"),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ScrapeTarget {
        job: job.to_owned(),
        url: url.to_owned(),
        interval,
        labels,
    })
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
    mythical_services::shutdown_signal().await;
    running.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::parse_scrape;

    #[test]
    fn a_scrape_target_takes_its_job_url_and_the_labels_after_it() {
        let target = parse_scrape(
            "mythical=http://127.0.0.1:4000/metrics,service=mythical-server,group=mythical",
            Duration::from_secs(2),
        )
        .unwrap();
        assert_eq!(target.job, "mythical");
        assert_eq!(target.url, "http://127.0.0.1:4000/metrics");
        assert_eq!(
            target.labels,
            [
                ("service".to_owned(), "mythical-server".to_owned()),
                ("group".to_owned(), "mythical".to_owned())
            ]
        );
        let plain = parse_scrape("m=http://h:1/metrics", Duration::from_secs(2)).unwrap();
        assert!(plain.labels.is_empty());
        for bad in [
            "http://h:1/metrics",
            "=http://h",
            "m=http://h,group",
            "m=h:1",
        ] {
            let err = parse_scrape(bad, Duration::from_secs(2)).unwrap_err();
            assert!(err.to_string().contains("--scrape"), "{bad}: {err}");
        }
    }
}
