//! The backend's profile figures: push requests (gzip-compressed pprof, as
//! pyroscope-rs sends them) ingested per second, with and without the
//! write-ahead log, and the render and top queries over an hour of
//! 10-second CPU profiles from two services. Prints its section of
//! BENCHMARKS.md (and writes it under `BENCH_RESULTS` when set, for
//! `scripts/bench`).
//!
//! cargo bench -p lab-backend --bench profiles

use std::io::Write;
use std::time::{Duration, Instant};

use lab_backend::Backend;
use lab_backend::ingest::{Payload, ProfileUpload};
use lab_profiles::push::{LabelPair, PushRequest, RawProfileSeries, RawSample};
use lab_profiles::{Selector, pprof, query};
use lab_testkit::{Section, thousands};
use prost::Message;

const PROFILES_PER_SERVICE: i64 = 360;
const STACKS_PER_PROFILE: usize = 400;
const FUNCTIONS: usize = 600;
const CALL_PATHS: usize = 1500;
const SERVICES: [&str; 2] = ["mythical-server", "mythical-requester"];

/// A small deterministic generator, so every run measures the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A service's call paths: a runtime prefix, then 10–40 frames drawn from
/// a pool of function names, most sharing one of eight prefixes.
fn call_paths(rng: &mut Rng, names: &[String]) -> Vec<String> {
    (0..CALL_PATHS)
        .map(|_| {
            let depth = 10 + rng.below(30);
            let mut frames = vec!["std::rt::lang_start", "tokio::runtime::worker::run"];
            let prefix = rng.below(8);
            for d in 0..depth {
                let name = if d < 6 {
                    &names[prefix * 6 + d]
                } else {
                    &names[rng.below(names.len())]
                };
                frames.push(name);
            }
            frames.join(";")
        })
        .collect()
}

/// One 10-second profile: some of the service's call paths, each with a
/// value in 10 ms samples.
fn stacks(rng: &mut Rng, paths: &[String]) -> Vec<(String, i64)> {
    (0..STACKS_PER_PROFILE)
        .map(|_| {
            (
                paths[rng.below(paths.len())].clone(),
                (1 + rng.below(20)) as i64 * 10_000_000,
            )
        })
        .collect()
}

fn push_body(service: &str, start_ns: i64, stacks: &[(String, i64)]) -> Vec<u8> {
    let borrowed: Vec<(&str, i64)> = stacks.iter().map(|(s, v)| (s.as_str(), *v)).collect();
    let profile = pprof::from_folded(
        &borrowed,
        ("cpu", "nanoseconds"),
        10_000_000,
        start_ns,
        10_000_000_000,
    );
    let request = PushRequest {
        series: vec![RawProfileSeries {
            labels: [
                ("__name__", "process_cpu"),
                ("service_name", service),
                ("service_namespace", "mythical"),
            ]
            .map(|(name, value)| LabelPair {
                name: name.into(),
                value: value.into(),
            })
            .to_vec(),
            samples: vec![RawSample {
                raw_profile: profile.encode_to_vec(),
                id: String::new(),
            }],
        }],
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&request.encode_to_vec()).unwrap();
    gz.finish().unwrap()
}

fn upload(body: &[u8]) -> Payload {
    Payload::Profiles(ProfileUpload {
        ingest_query: None,
        content_type: "application/proto".into(),
        body: body.to_vec(),
    })
}

fn percentile(mut times: Vec<Duration>, p: f64) -> Duration {
    times.sort();
    times[((times.len() - 1) as f64 * p).round() as usize]
}

/// The lab's own load: two services, one profile every 10 s each.
const LAB_PROFILES_PER_SECOND: f64 = 0.2;

/// One ingest of the hour's pushes.
struct Ingest {
    per_second: f64,
    mb_per_second: f64,
}

fn main() {
    let mut section = Section::new("profiles");
    let now = lab_backend::params::now_nanos();
    let hour_ago = now - 3_600_000_000_000;
    let names: Vec<String> = (0..FUNCTIONS)
        .map(|i| format!("mythical_services::module_{}::function_number_{i}", i % 17))
        .collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let paths = [call_paths(&mut rng, &names), call_paths(&mut rng, &names)];
    let bodies: Vec<Vec<u8>> = (0..PROFILES_PER_SERVICE)
        .flat_map(|i| [0, 1].map(|s| (s, i)))
        .map(|(s, i)| {
            push_body(
                SERVICES[s],
                hour_ago + i * 10_000_000_000,
                &stacks(&mut rng, &paths[s]),
            )
        })
        .collect();
    let wire: usize = bodies.iter().map(Vec::len).sum();

    let limits = lab_backend::Limits::default();
    let policy = lab_backend::LabelPolicy::default();
    let mut ingests = Vec::new();
    let mut stored = None;
    let mut timings = None;
    for wal in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (backend, _) =
            Backend::open(wal.then_some(dir.path()), limits, policy.clone(), None).unwrap();
        let started = Instant::now();
        for body in &bodies {
            backend.ingest(upload(body)).unwrap();
        }
        backend.sync().unwrap();
        let took = started.elapsed();
        ingests.push(Ingest {
            per_second: bodies.len() as f64 / took.as_secs_f64(),
            mb_per_second: wire as f64 / took.as_secs_f64() / 1e6,
        });
        if !wal {
            stored = Some(backend.store().stats());
            timings = Some(queries(&backend, hour_ago, now));
        }
    }
    let (stored, timings) = (stored.unwrap(), timings.unwrap());

    section.paragraph(format!(
        "An hour of 10-second CPU profiles from {} services, as pyroscope-rs pushes them (gzipped pprof, {STACKS_PER_PROFILE} stacks over {} call paths, {:.1} KB a push); in-process calls.",
        SERVICES.len(),
        thousands(CALL_PATHS as u64),
        wire as f64 / bodies.len() as f64 / 1024.0
    ));
    let [memory, logged] = [&ingests[0], &ingests[1]];
    section.table(&["what", "result"]);
    section.row([
        "ingest in memory".to_owned(),
        format!(
            "{:.0} profiles/s ({:.1} MB/s of gzipped pushes)",
            memory.per_second, memory.mb_per_second
        ),
    ]);
    section.row([
        "ingest with the write-ahead log".to_owned(),
        format!(
            "{:.0} profiles/s ({:.1} MB/s)",
            logged.per_second, logged.mb_per_second
        ),
    ]);
    section.row([
        "stored size".to_owned(),
        format!(
            "{:.1} KB per profile ({} profiles, {:.1} MB)",
            stored.bytes as f64 / stored.profiles as f64 / 1024.0,
            stored.profiles,
            stored.bytes as f64 / 1e6
        ),
    ]);
    section.row([
        format!(
            "flame graph over the hour (merge {PROFILES_PER_SERVICE} profiles, Pyroscope's flamebearer JSON, {:.0} KB)",
            timings.json_bytes as f64 / 1024.0
        ),
        format!(
            "p50 {:.1} ms, p95 {:.1} ms",
            ms(percentile(timings.render.clone(), 0.5)),
            ms(percentile(timings.render, 0.95))
        ),
    ]);
    section.row([
        "top 20 functions over the hour".to_owned(),
        format!(
            "p50 {:.1} ms, p95 {:.1} ms",
            ms(percentile(timings.top.clone(), 0.5)),
            ms(percentile(timings.top, 0.95))
        ),
    ]);
    // The lab's backend keeps a write-ahead log, so that is its rate.
    section.paragraph(format!(
        "The lab's {} services push one profile every 10 s each: {LAB_PROFILES_PER_SECOND} profiles/s against the {:.0} the backend takes with its write-ahead log ({:.0}×).",
        SERVICES.len(),
        logged.per_second,
        logged.per_second / LAB_PROFILES_PER_SECOND
    ));
    section.finish();
}

/// The render and top queries' times over the hour.
struct Timings {
    render: Vec<Duration>,
    top: Vec<Duration>,
    json_bytes: usize,
}

fn queries(backend: &Backend, from: i64, until: i64) -> Timings {
    let selector = Selector::parse(
        r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="mythical-server"}"#,
    )
    .unwrap();
    let runs = 20;
    let mut render = Vec::with_capacity(runs);
    let mut top = Vec::with_capacity(runs);
    let mut json_bytes = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let merged = query::merge(
            &backend.store().profiles(),
            &selector,
            from,
            until,
            10_000_000_000,
        );
        let json = serde_json::to_vec(&merged.flamebearer()).unwrap();
        render.push(started.elapsed());
        json_bytes = json.len();

        let started = Instant::now();
        let merged = query::merge(
            &backend.store().profiles(),
            &selector,
            from,
            until,
            until - from,
        );
        std::hint::black_box(merged.top(20));
        top.push(started.elapsed());
    }
    Timings {
        render,
        top,
        json_bytes,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
