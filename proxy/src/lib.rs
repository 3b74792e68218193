//! A TCP fault proxy the lab puts between two components (mythical-server →
//! Postgres, say), in the manner of Toxiproxy: it forwards bytes both ways
//! and, when told over its admin API, adds latency and jitter, caps
//! bandwidth, resets connections or refuses them — on new connections and
//! on those already open.
//!
//! ```no_run
//! # async fn run() -> Result<(), lab_proxy::ProxyError> {
//! let proxy = lab_proxy::start(lab_proxy::ProxyConfig::new("127.0.0.1:5432")).await?;
//! // point the client at proxy.listen, PUT toxics to http://{proxy.admin}/toxics
//! proxy.shutdown().await;
//! # Ok(()) }
//! ```

mod admin;
mod connection;
mod control;
mod toxics;

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

pub use control::{Counters, Status};
pub use toxics::{Direction, Draws, Toxics, ToxicsError};

use control::Control;

/// Where the proxy listens, where it forwards, and its admin API.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Clients connect here.
    pub listen: SocketAddr,
    /// `host:port`, resolved for every connection, so an upstream that
    /// moves (a restarted container) is followed.
    pub upstream: String,
    /// The admin HTTP API.
    pub admin: SocketAddr,
    /// When set, every `/toxics` call needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

impl ProxyConfig {
    /// Forwards to `upstream`, listening and serving the admin API on free
    /// loopback ports, without a token.
    pub fn new(upstream: impl Into<String>) -> ProxyConfig {
        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        ProxyConfig {
            listen: any,
            upstream: upstream.into(),
            admin: any,
            token: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("could not bind {addr}: {source}; pick another port (0 takes any free one)")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("could not read the bound address: {0}")]
    LocalAddr(io::Error),
}

/// A proxy at work. Dropping it stops it as [`RunningProxy::shutdown`] does,
/// without waiting.
pub struct RunningProxy {
    /// Where clients connect (the bound port when port 0 was asked for).
    pub listen: SocketAddr,
    /// Where the admin API answers.
    pub admin: SocketAddr,
    control: Arc<Control>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningProxy {
    /// The toxics in force.
    pub fn toxics(&self) -> Toxics {
        self.control.toxics()
    }

    /// Replaces the toxics, as `PUT /toxics` does.
    pub fn set_toxics(&self, toxics: Toxics) -> Result<(), ToxicsError> {
        toxics.validate()?;
        self.control.set(toxics);
        Ok(())
    }

    pub fn counters(&self) -> Counters {
        self.control.counters()
    }

    /// Stops accepting, closes every open connection and the admin API, and
    /// waits until they are gone.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Binds both addresses and starts forwarding with no toxics.
pub async fn start(config: ProxyConfig) -> Result<RunningProxy, ProxyError> {
    let listener = bind(config.listen).await?;
    let admin_listener = bind(config.admin).await?;
    let listen = listener.local_addr().map_err(ProxyError::LocalAddr)?;
    let admin = admin_listener.local_addr().map_err(ProxyError::LocalAddr)?;
    let control = Arc::new(Control::new());
    let (stop, stopped) = watch::channel(false);

    let upstream: Arc<str> = config.upstream.into();
    let accepting = tokio::spawn(accept(listener, upstream, control.clone(), stopped.clone()));
    let router = admin::router(control.clone(), config.token.map(Arc::from));
    let mut admin_stopped = stopped;
    let serving = tokio::spawn(async move {
        let served = axum::serve(admin_listener, router)
            .with_graceful_shutdown(async move {
                // A dropped sender stops the API as a `true` does.
                let _ = admin_stopped.wait_for(|stop| *stop).await;
            })
            .await;
        if let Err(err) = served {
            tracing::error!(error = %err, "the proxy's admin API stopped");
        }
    });
    tracing::info!(%listen, %admin, "proxy started");
    Ok(RunningProxy {
        listen,
        admin,
        control,
        stop,
        tasks: vec![accepting, serving],
    })
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ProxyError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ProxyError::Bind { addr, source })
}

/// Accepts until stopped; the connections live in a set that aborts them
/// all when this loop ends.
async fn accept(
    listener: TcpListener,
    upstream: Arc<str>,
    control: Arc<Control>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = async {
                // The guard wait_for returns must not live across an await.
                let _ = stopped.wait_for(|stop| *stop).await;
            } => break,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    connections.spawn(connection::serve(client, upstream.clone(), control.clone()));
                }
                Err(err) => {
                    // Out of file descriptors, mostly: back off rather than spin.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}
