//! `lab proxy` (hidden): the db-proxy component in the foreground — the TCP
//! fault proxy between mythical-server and Postgres, its toxics switched
//! over an admin API behind the lab's token. `lab up` starts it.

use std::net::SocketAddr;

use anyhow::{Context, Result};

#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// Where clients (mythical-server) connect.
    #[arg(long)]
    pub listen: SocketAddr,
    /// `host:port` the connections are forwarded to (Postgres).
    #[arg(long)]
    pub upstream: String,
    /// Where the admin API (`/toxics`, `/healthz`) listens.
    #[arg(long)]
    pub admin: SocketAddr,
    /// The bearer token `/toxics` requires (the lab's admin token).
    #[arg(long, env = "MYTHICAL_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

pub async fn run(args: ProxyArgs) -> Result<()> {
    let upstream = args.upstream.clone();
    let proxy = lab_proxy::start(lab_proxy::ProxyConfig {
        listen: args.listen,
        upstream: args.upstream,
        admin: args.admin,
        token: args.token.filter(|t| !t.is_empty()),
    })
    .await
    .context("cannot start the db-proxy")?;
    eprintln!(
        "db-proxy: {} → {upstream}, admin API on {}",
        proxy.listen, proxy.admin
    );
    mythical_services::shutdown_signal().await;
    proxy.shutdown().await;
    Ok(())
}
