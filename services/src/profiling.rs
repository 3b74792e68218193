//! Continuous profiling: the `pyroscope` agent for CPU, started when
//! `PYROSCOPE_SERVER_ADDRESS` is set (the variable Pyroscope's SDKs read),
//! pushing a profile every ten seconds to Pyroscope or the lab's backend;
//! and, in a binary whose allocator is [`crate::heap::Sampled`], the heap
//! pusher for memory in use and memory allocated.
//!
//! CPU sampling happens in a signal handler, heap sampling in the
//! allocator, and uploads run on the profilers' own threads, so an
//! unreachable server costs failed uploads on those threads, never request
//! latency. Unset, nothing is started and nothing is paid.

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Duration;

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
    /// Reads `PYROSCOPE_SERVER_ADDRESS` (or the original's
    /// `PROFILE_COLLECTOR_HOST` and `_PORT`) and `NAMESPACE` (default
    /// `mythical`); `None` when no server is named.
    pub fn from_env(service_name: &str) -> Option<ProfilingConfig> {
        ProfilingConfig::from_vars(service_name, env_var)
    }

    /// As [`ProfilingConfig::from_env`], reading variables through `var`.
    pub fn from_vars(
        service_name: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> Option<ProfilingConfig> {
        let server = var("PYROSCOPE_SERVER_ADDRESS").or_else(|| {
            // The original's pair, e.g. alloy and 4040.
            let host = var("PROFILE_COLLECTOR_HOST")?;
            let port = var("PROFILE_COLLECTOR_PORT").unwrap_or_else(|| "4040".to_owned());
            Some(format!("http://{host}:{port}"))
        })?;
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
    heap: Option<HeapPusher>,
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
        let heap = crate::heap::installed()
            .then(|| HeapPusher::start(config.clone()))
            .transpose()?;
        Ok(Profiler { agent, heap })
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
        let heap = self.heap;
        std::thread::spawn(move || {
            if let Some(heap) = heap {
                heap.stop();
            }
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

/// How often the heap pusher sends, as the CPU agent does.
pub const HEAP_INTERVAL: Duration = Duration::from_secs(10);

/// The heap profiles, as Pyroscope's legacy ingest names them: the suffix of
/// the application name, and the aggregation that tells a snapshot
/// (`average`: memory in use) from a sum over the interval (memory
/// allocated); `units` tells bytes from objects. Go's four heap sample
/// types.
const HEAP_PROFILES: [HeapProfile; 4] = [
    HeapProfile {
        suffix: "inuse_space",
        units: "bytes",
        aggregation: "average",
        in_use: true,
    },
    HeapProfile {
        suffix: "inuse_objects",
        units: "objects",
        aggregation: "average",
        in_use: true,
    },
    HeapProfile {
        suffix: "alloc_space",
        units: "bytes",
        aggregation: "sum",
        in_use: false,
    },
    HeapProfile {
        suffix: "alloc_objects",
        units: "objects",
        aggregation: "sum",
        in_use: false,
    },
];

struct HeapProfile {
    suffix: &'static str,
    units: &'static str,
    aggregation: &'static str,
    /// The heap now, or what was allocated over the interval.
    in_use: bool,
}

/// The thread that turns heap samples into pushes.
pub struct HeapPusher {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl HeapPusher {
    /// Starts sampling and a thread that pushes every [`HEAP_INTERVAL`].
    /// A thread of its own, with a small runtime for its HTTP client, not a
    /// task on the service's runtime: "inside the profiler" is a per-thread
    /// flag, and a task moves between worker threads.
    pub fn start(config: ProfilingConfig) -> Result<HeapPusher> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .context("could not build the heap profiler's HTTP client")?;
        let (stop, stopped) = mpsc::channel();
        crate::heap::enable(true);
        let thread = std::thread::Builder::new()
            .name("heap-profiler".into())
            .spawn(move || crate::heap::unsampled(|| push_heap(&config, &client, &stopped)))
            .context("could not start the heap profiler's thread")?;
        Ok(HeapPusher { stop, thread })
    }

    /// Stops sampling, pushes what is left and ends the thread.
    pub fn stop(self) {
        crate::heap::enable(false);
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn push_heap(config: &ProfilingConfig, client: &reqwest::Client, stopped: &mpsc::Receiver<()>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::warn!("the heap profiler has no runtime, so it pushes nothing: {err}");
            return;
        }
    };
    let mut names = HashMap::new();
    let mut from = unix_seconds();
    loop {
        let last = !matches!(
            stopped.recv_timeout(HEAP_INTERVAL),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        let until = unix_seconds().max(from + 1);
        let snapshot = crate::heap::snapshot(&mut names);
        for profile in &HEAP_PROFILES {
            let costs = if profile.in_use {
                &snapshot.in_use
            } else {
                &snapshot.allocated
            };
            let body = if profile.units == "bytes" {
                crate::heap::folded(costs, |c| c.bytes)
            } else {
                crate::heap::folded(costs, |c| c.objects)
            };
            if body.is_empty() {
                continue;
            }
            let name = format!(
                "{}.{}{{service_name={},service_namespace={}}}",
                config.service_name, profile.suffix, config.service_name, config.namespace
            );
            let from = from.to_string();
            let until = until.to_string();
            let push = async {
                client
                    .post(format!("{}/ingest", config.server))
                    .query(&[
                        ("name", name.as_str()),
                        ("from", &from),
                        ("until", &until),
                        ("units", profile.units),
                        ("aggregationType", profile.aggregation),
                        // The body is folded text, /ingest's default format
                        // (Pyroscope knows no `format=folded`).
                        ("spyName", "rustspy"),
                    ])
                    .body(body)
                    .send()
                    .await
            };
            match runtime.block_on(push) {
                Ok(answer) if answer.status().is_success() => {}
                Ok(answer) => tracing::warn!(
                    "the heap profile push to {} was refused: {}",
                    config.server,
                    answer.status()
                ),
                Err(err) => {
                    tracing::warn!("the heap profile push to {} failed: {err}", config.server)
                }
            }
        }
        from = until;
        if last {
            return;
        }
    }
}

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
