//! Continuous CPU profiling: the `pyroscope` agent, started when
//! `PYROSCOPE_SERVER_ADDRESS` is set (the variable Pyroscope's SDKs read),
//! pushing a profile every ten seconds to Pyroscope or the lab's backend.
//!
//! Sampling happens in a signal handler and uploads run on the agent's own
//! threads, so an unreachable server costs failed uploads on those threads,
//! never request latency. Unset, nothing is started and nothing is paid.

use anyhow::{Context, Result};
use pyroscope::PyroscopeAgent;
use pyroscope::backend::{BackendConfig, PprofConfig, pprof_backend};
use pyroscope::pyroscope::{PyroscopeAgentBuilder, PyroscopeAgentRunning};

use crate::config::env_var;

/// Samples per second: Pyroscope's default, about 1% of one core's time at
/// worst.
pub const SAMPLE_RATE: u32 = 100;

/// Where and as what a service is profiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfilingConfig {
    /// The server's base URL, e.g. `http://127.0.0.1:14318`.
    pub server: String,
    /// The application name and `service_name` tag.
    pub service_name: String,
    /// The `service_namespace` tag.
    pub namespace: String,
}

impl ProfilingConfig {
    /// Reads `PYROSCOPE_SERVER_ADDRESS` and `NAMESPACE` (default
    /// `mythical`); `None` when no server is named.
    pub fn from_env(service_name: &str) -> Option<ProfilingConfig> {
        ProfilingConfig::from_vars(service_name, env_var)
    }

    /// As [`ProfilingConfig::from_env`], reading variables through `var`.
    pub fn from_vars(
        service_name: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> Option<ProfilingConfig> {
        let server = var("PYROSCOPE_SERVER_ADDRESS")?;
        Some(ProfilingConfig {
            server: server.trim().trim_end_matches('/').to_owned(),
            service_name: service_name.to_owned(),
            namespace: var("NAMESPACE").unwrap_or_else(|| "mythical".to_owned()),
        })
    }
}

/// A running agent; [`Profiler::stop`] sends the last profile and joins its
/// threads.
pub struct Profiler {
    agent: PyroscopeAgent<PyroscopeAgentRunning>,
}

impl Profiler {
    /// Starts profiling this process as `config` says.
    pub fn start(config: &ProfilingConfig) -> Result<Profiler> {
        let backend = pprof_backend(
            PprofConfig {
                sample_rate: SAMPLE_RATE,
            },
            BackendConfig::default(),
        );
        let agent = PyroscopeAgentBuilder::new(
            &config.server,
            &config.service_name,
            SAMPLE_RATE,
            "pyroscope-rs",
            env!("CARGO_PKG_VERSION"),
            backend,
        )
        .tags(vec![
            ("service_name", config.service_name.as_str()),
            ("service_namespace", config.namespace.as_str()),
        ])
        .build()
        .and_then(|agent| agent.start())
        .with_context(|| {
            format!(
                "could not start the CPU profiler for {}: check PYROSCOPE_SERVER_ADDRESS={}",
                config.service_name, config.server
            )
        })?;
        Ok(Profiler { agent })
    }

    /// Starts the agent when `PYROSCOPE_SERVER_ADDRESS` is set.
    pub fn from_env(service_name: &str) -> Result<Option<Profiler>> {
        ProfilingConfig::from_env(service_name)
            .map(|config| Profiler::start(&config))
            .transpose()
    }

    /// Sends what was sampled since the last upload and stops the agent.
    /// Blocks until the agent's threads end or [`STOP_WAIT`] passes: its
    /// timer thread sleeps until the next ten-second tick, and a service's
    /// shutdown should not wait for that (the last upload is under way on
    /// its own thread by then). Async callers go through `spawn_blocking`.
    pub fn stop(self) {
        let (done, finished) = std::sync::mpsc::channel();
        let agent = self.agent;
        std::thread::spawn(move || {
            match agent.stop() {
                Ok(ready) => ready.shutdown(),
                Err(err) => tracing::warn!("stopping the CPU profiler failed: {err}"),
            }
            let _ = done.send(());
        });
        let _ = finished.recv_timeout(STOP_WAIT);
    }
}

/// The longest [`Profiler::stop`] waits for the agent.
pub const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn no_server_address_means_no_agent() {
        assert_eq!(
            ProfilingConfig::from_vars("mythical-server", |_| None),
            None
        );
        let config = ProfilingConfig::from_vars("mythical-requester", |name| {
            (name == "PYROSCOPE_SERVER_ADDRESS").then(|| "http://127.0.0.1:4040/".to_owned())
        })
        .unwrap();
        assert_eq!(config.server, "http://127.0.0.1:4040");
        assert_eq!(config.namespace, "mythical");
    }

    #[inline(never)]
    fn feed_the_owlbear(until: Instant) -> u64 {
        let mut x = 1u64;
        while Instant::now() < until {
            for i in 0..100_000u64 {
                x = (x ^ i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            }
            x = std::hint::black_box(x);
        }
        x
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_profiler_has_pushed_its_profile_with_the_service_tags() {
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let backend = lab_backend::start(lab_backend::BackendConfig {
            query: loopback,
            otlp_grpc: loopback,
            otlp_http: loopback,
            ..lab_backend::BackendConfig::default()
        })
        .await
        .unwrap();
        let config = ProfilingConfig {
            server: format!("http://{}", backend.otlp_http),
            service_name: "mythical-server".into(),
            namespace: "lab-test".into(),
        };
        tokio::task::spawn_blocking(move || {
            let profiler = Profiler::start(&config).unwrap();
            feed_the_owlbear(Instant::now() + Duration::from_millis(1500));
            profiler.stop();
        })
        .await
        .unwrap();
        // The agent's last push came before stop() returned.
        let store = backend.backend.store();
        let values = |label: &str| store.profiles().label_values(label, None, 0, i64::MAX);
        assert_eq!(values("service_namespace"), ["lab-test"]);
        assert_eq!(values("service_name"), ["mythical-server"]);
        backend.shutdown().await;
    }
}
