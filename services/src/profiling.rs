//! Continuous profiling, started when `PYROSCOPE_SERVER_ADDRESS` is set
//! (the variable Pyroscope's SDKs read): CPU samples ([`crate::cpu`]) and,
//! in a binary whose allocator is [`crate::heap::Sampled`], memory in use
//! and memory allocated, pushed every ten seconds to Pyroscope (itself, or
//! the lab's backend) with stacks named from the symbol table
//! ([`crate::symbols`]): CPU as pprof through the push API, as Pyroscope's
//! agents send it; the heap as folded stacks to `/ingest`.
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
        let cpu = std::mem::take(&mut samples);
        if !cpu.is_empty() {
            let profile = cpu_pprof(&cpu, &mut cpu_names, from, until);
            send_cpu(&runtime, client, config, profile);
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
                    send_heap(&runtime, client, config, profile, body, from, until);
                }
            }
        }
        from = until;
        if last {
            return;
        }
    }
}

/// The CPU samples as a pprof profile of `cpu` in `nanoseconds`, one
/// sample per stack, as Pyroscope's agents send it.
fn cpu_pprof(
    samples: &crate::cpu::Counts,
    names: &mut HashMap<usize, String>,
    from: u64,
    until: u64,
) -> lab_profiles::pprof::PprofProfile {
    use lab_profiles::pprof::{Function, Line, Location, PprofProfile, Sample, ValueType};
    let mut strings: Vec<String> = vec![String::new()];
    let mut string_ids: HashMap<String, i64> = HashMap::new();
    let mut string = |s: &str| -> i64 {
        if let Some(id) = string_ids.get(s) {
            return *id;
        }
        strings.push(s.to_owned());
        string_ids.insert(s.to_owned(), strings.len() as i64 - 1);
        strings.len() as i64 - 1
    };
    let cpu_type = ValueType {
        r#type: string("cpu"),
        unit: string("nanoseconds"),
    };
    let period = 1_000_000_000 / i64::from(SAMPLE_RATE);
    let mut functions: Vec<Function> = Vec::new();
    let mut locations: Vec<Location> = Vec::new();
    let mut location_of: HashMap<String, u64> = HashMap::new();
    let mut out = Vec::new();
    for (stack, count) in samples {
        // Root first from stack_names; pprof wants the leaf first.
        let frames = crate::cpu::stack_names(stack, names);
        let ids = frames
            .iter()
            .rev()
            .map(|name| {
                *location_of.entry(name.clone()).or_insert_with(|| {
                    let id = locations.len() as u64 + 1;
                    let name_id = string(name);
                    functions.push(Function {
                        id,
                        name: name_id,
                        system_name: name_id,
                        filename: 0,
                    });
                    locations.push(Location {
                        id,
                        address: 0,
                        line: vec![Line {
                            function_id: id,
                            line: 0,
                        }],
                    });
                    id
                })
            })
            .collect();
        out.push(Sample {
            location_id: ids,
            value: vec![*count as i64 * period],
        });
    }
    PprofProfile {
        sample_type: vec![cpu_type],
        sample: out,
        location: locations,
        function: functions,
        string_table: strings,
        time_nanos: from as i64 * 1_000_000_000,
        duration_nanos: until.saturating_sub(from) as i64 * 1_000_000_000,
        period_type: Some(cpu_type),
        period,
    }
}

/// The pprof gzipped, as Pyroscope's agents send it.
fn gzipped(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// Pushes a CPU profile to Pyroscope's push API (Connect, protobuf), as
/// Pyroscope's own agents do: `process_cpu:cpu:nanoseconds:cpu:nanoseconds`.
fn send_cpu(
    runtime: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    config: &ProfilingConfig,
    profile: lab_profiles::pprof::PprofProfile,
) {
    use lab_profiles::push::{LabelPair, PushRequest, RawProfileSeries, RawSample};
    use prost::Message;
    // Pyroscope keeps a sample's id to tell retries apart: one per push.
    let id = format!(
        "{}-{}-{}",
        config.service_name,
        std::process::id(),
        profile.time_nanos
    );
    let label = |name: &str, value: &str| LabelPair {
        name: name.into(),
        value: value.into(),
    };
    let request = PushRequest {
        series: vec![RawProfileSeries {
            labels: vec![
                label("__name__", "process_cpu"),
                label("service_name", &config.service_name),
                label("service_namespace", &config.namespace),
            ],
            samples: vec![RawSample {
                raw_profile: gzipped(&profile.encode_to_vec()),
                id,
            }],
        }],
    };
    let body = request.encode_to_vec();
    let push = async {
        client
            .post(format!("{}/push.v1.PusherService/Push", config.server))
            .header("content-type", "application/proto")
            .body(body)
            .send()
            .await
    };
    report("cpu", &config.server, runtime.block_on(push));
}

/// Pushes one heap profile's folded stacks to `/ingest`.
fn send_heap(
    runtime: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    config: &ProfilingConfig,
    profile: &HeapProfile,
    body: String,
    from: u64,
    until: u64,
) {
    let name = format!(
        "{}.{}{{service_name={},service_namespace={}}}",
        config.service_name, profile.suffix, config.service_name, config.namespace
    );
    let params = [
        ("name", name),
        ("from", from.to_string()),
        ("until", until.to_string()),
        ("units", profile.units.to_owned()),
        ("aggregationType", profile.aggregation.to_owned()),
        // The body is folded text, /ingest's default format (Pyroscope
        // knows no `format=folded`).
        ("spyName", "rustspy".to_owned()),
    ];
    // The request's timer belongs to the runtime: built inside it.
    let request = async {
        client
            .post(format!("{}/ingest", config.server))
            .query(&params)
            .body(body)
            .send()
            .await
    };
    report(profile.suffix, &config.server, runtime.block_on(request));
}

/// Logs a push that failed or was refused; a profile lost is not worth
/// more than a warning.
fn report(profile: &str, server: &str, answer: reqwest::Result<reqwest::Response>) {
    match answer {
        Ok(answer) if answer.status().is_success() => {}
        Ok(answer) => tracing::warn!(
            "the {profile} profile push to {server} was refused: {}",
            answer.status()
        ),
        Err(err) => tracing::warn!("the {profile} profile push to {server} failed: {err}"),
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
            crate::cpu::tests::spin_the_wheel(Instant::now() + Duration::from_millis(1500));
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
            .find(|f| f["name"].as_str().unwrap_or("").ends_with("spin_the_wheel"))
            .unwrap_or_else(|| panic!("spin_the_wheel is not among the hottest: {top}"));
        assert!(
            busy["total"].as_f64().unwrap() > 0.5 * top["total"].as_f64().unwrap(),
            "{top}"
        );
        backend.shutdown().await;
    }
}
