//! Continuous profiling, started when `PYROSCOPE_SERVER_ADDRESS` is set
//! (the variable Pyroscope's SDKs read): CPU samples ([`crate::cpu`]) and,
//! in a binary whose allocator is [`crate::heap::Sampled`], memory in use
//! and memory allocated, pushed every ten seconds to Pyroscope's `/ingest`
//! (Pyroscope itself, or the lab's backend) as folded stacks named from
//! the symbol table ([`crate::symbols`]).
//!
//! CPU sampling happens in a signal handler, heap sampling in the
//! allocator, and naming and uploads on the profiler's own thread, so an
//! unreachable server costs failed uploads on that thread, never request
//! latency. Unset, nothing is started and nothing is paid.

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::config::env_var;

pub use crate::cpu::SAMPLE_RATE;

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

/// The running profiler; [`Profiler::stop`] sends the last profiles and
/// ends its thread.
pub struct Profiler {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// How often the profiles are pushed, as Pyroscope's agents do.
pub const PUSH_INTERVAL: Duration = Duration::from_secs(10);

/// How often the CPU samples are moved out of the signal handler's ring.
const DRAIN_INTERVAL: Duration = Duration::from_millis(500);

/// The longest [`Profiler::stop`] waits for the last push: over loopback
/// it takes milliseconds; a service going down does not wait longer for a
/// profile server that does not answer.
pub const STOP_WAIT: Duration = Duration::from_millis(700);

impl Profiler {
    /// Starts sampling CPU (and the heap, when this binary's allocator is
    /// the sampled one) and the thread that pushes every
    /// [`PUSH_INTERVAL`]. A thread of its own, with a small runtime for
    /// its HTTP client, not a task on the service's runtime: "inside the
    /// profiler" is a per-thread flag, and a task moves between worker
    /// threads.
    pub fn start(config: &ProfilingConfig) -> Result<Profiler> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .context("could not build the profiler's HTTP client")?;
        crate::cpu::start().with_context(|| {
            format!(
                "could not start the CPU profiler for {}: the process could not install its SIGPROF timer",
                config.service_name
            )
        })?;
        let heap = crate::heap::installed();
        crate::heap::enable(heap);
        let (stop, stopped) = mpsc::channel();
        let config = config.clone();
        let thread = std::thread::Builder::new()
            .name("profiler".into())
            .spawn(move || crate::heap::unsampled(|| push(&config, &client, &stopped, heap)))
            .context("could not start the profiler's thread")?;
        Ok(Profiler { stop, thread })
    }

    /// Starts the profiler when `PYROSCOPE_SERVER_ADDRESS` is set.
    pub fn from_env(service_name: &str) -> Result<Option<Profiler>> {
        ProfilingConfig::from_env(service_name)
            .map(|config| Profiler::start(&config))
            .transpose()
    }

    /// Stops sampling, pushes what was sampled since the last push and ends
    /// the thread, waiting at most [`STOP_WAIT`] for it. Async callers go
    /// through `spawn_blocking`.
    pub fn stop(self) {
        crate::cpu::stop();
        crate::heap::enable(false);
        let _ = self.stop.send(());
        let deadline = std::time::Instant::now() + STOP_WAIT;
        while !self.thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if self.thread.is_finished() {
            let _ = self.thread.join();
        }
    }
}

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

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One push to `/ingest`: the profile's suffix and query parameters, and
/// its folded body.
struct Push<'a> {
    suffix: &'a str,
    params: Vec<(&'static str, String)>,
    body: String,
}

fn push(
    config: &ProfilingConfig,
    client: &reqwest::Client,
    stopped: &mpsc::Receiver<()>,
    heap: bool,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::warn!("the profiler has no runtime, so it pushes nothing: {err}");
            return;
        }
    };
    let mut heap_names = HashMap::new();
    let mut cpu_names = HashMap::new();
    let mut samples = crate::cpu::Counts::new();
    let mut from = unix_seconds();
    let mut next_push = std::time::Instant::now() + PUSH_INTERVAL;
    loop {
        let last = !matches!(
            stopped.recv_timeout(DRAIN_INTERVAL),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        crate::cpu::drain(&mut samples);
        if !last && std::time::Instant::now() < next_push {
            continue;
        }
        next_push += PUSH_INTERVAL;
        let until = unix_seconds().max(from + 1);
        let mut pushes = Vec::new();
        let cpu = cpu_folded(&std::mem::take(&mut samples), &mut cpu_names);
        if !cpu.is_empty() {
            pushes.push(Push {
                suffix: "cpu",
                params: vec![
                    ("units", "samples".into()),
                    ("aggregationType", "sum".into()),
                    ("sampleRate", SAMPLE_RATE.to_string()),
                ],
                body: cpu,
            });
        }
        if heap {
            let snapshot = crate::heap::snapshot(&mut heap_names);
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
                if !body.is_empty() {
                    pushes.push(Push {
                        suffix: profile.suffix,
                        params: vec![
                            ("units", profile.units.into()),
                            ("aggregationType", profile.aggregation.into()),
                        ],
                        body,
                    });
                }
            }
        }
        for one in pushes {
            send(&runtime, client, config, one, from, until);
        }
        from = until;
        if last {
            return;
        }
    }
}

/// The CPU samples as folded stacks, root first, one line each.
fn cpu_folded(samples: &crate::cpu::Counts, names: &mut HashMap<usize, String>) -> String {
    let mut lines: Vec<(String, u64)> = samples
        .iter()
        .map(|(stack, count)| {
            let frames: Vec<String> = crate::cpu::stack_names(stack, names)
                .into_iter()
                .map(|f| f.replace(';', ":"))
                .collect();
            (frames.join(";"), *count)
        })
        .collect();
    lines.sort();
    let mut body = String::new();
    for (stack, count) in lines {
        body.push_str(&stack);
        body.push(' ');
        body.push_str(&count.to_string());
        body.push('\n');
    }
    body
}

fn send(
    runtime: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    config: &ProfilingConfig,
    push: Push,
    from: u64,
    until: u64,
) {
    let name = format!(
        "{}.{}{{service_name={},service_namespace={}}}",
        config.service_name, push.suffix, config.service_name, config.namespace
    );
    let mut params = vec![
        ("name", name),
        ("from", from.to_string()),
        ("until", until.to_string()),
        // The body is folded text, /ingest's default format (Pyroscope
        // knows no `format=folded`).
        ("spyName", "rustspy".to_owned()),
    ];
    params.extend(push.params);
    // The request's timer belongs to the runtime: built inside it.
    let request = async {
        client
            .post(format!("{}/ingest", config.server))
            .query(&params)
            .body(push.body)
            .send()
            .await
    };
    match runtime.block_on(request) {
        Ok(answer) if answer.status().is_success() => {}
        Ok(answer) => tracing::warn!(
            "the {} profile push to {} was refused: {}",
            push.suffix,
            config.server,
            answer.status()
        ),
        Err(err) => tracing::warn!(
            "the {} profile push to {} failed: {err}",
            push.suffix,
            config.server
        ),
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
        // The last push came before stop() returned.
        let store = backend.backend.store();
        let values = |label: &str| store.profiles().label_values(label, None, 0, i64::MAX);
        assert_eq!(values("service_namespace"), ["lab-test"]);
        assert_eq!(values("service_name"), ["mythical-server"]);
        // The CPU profile names the busy function, from the symbol table.
        let top: serde_json::Value = reqwest::get(format!(
            "{}/api/profiles/top?query=process_cpu:cpu:nanoseconds:cpu:nanoseconds%7Bservice_name%3D%22mythical-server%22%7D&from=now-5m&until=now&limit=20",
            backend.query_url()
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let busy = top["functions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| {
                f["name"]
                    .as_str()
                    .unwrap_or("")
                    .ends_with("feed_the_owlbear")
            })
            .unwrap_or_else(|| panic!("feed_the_owlbear is not among the hottest: {top}"));
        assert!(
            busy["total"].as_f64().unwrap() > 0.5 * top["total"].as_f64().unwrap(),
            "{top}"
        );
        backend.shutdown().await;
    }
}
