//! Load on mythical-server: req/s and latency for GET and POST at
//! concurrency 1, 16 and 64 with `wrk`, telemetry export on (traces, logs
//! and metrics over OTLP, CPU and heap profiles pushed to the lab's
//! backend every 10 s, as in a lab) and off, the
//! server's RSS, and `pgbench` running the same single-row INSERT as the
//! ceiling for POST; the ratios and the goals judged from those figures.
//! Prints its section of BENCHMARKS.md (and writes it under
//! `BENCH_RESULTS` when set, for `scripts/bench`).
//!
//! cargo bench -p mythical-services --bench server_load
//! (needs `wrk`, `pgbench` and `curl`; `BENCH_SECONDS` sets each run's
//! length, `BENCH_ROUNDS` the rounds, `BENCH_FSYNC=off` a Postgres without
//! disk flushes)

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lab_testkit::{Goal, OtlpReceiver, Section, TestPostgres, find_bindir, free_port, thousands};

const POST_SCRIPT: &str = r#"
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  counter = 0
  prefix = args[1] or "w"
end
function request()
  counter = counter + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"},
    '{"name":"' .. prefix .. tid .. "_" .. counter .. '"}')
end
"#;

struct Run {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
}

/// One server's median run at one method and concurrency.
struct Measured {
    telemetry: &'static str,
    method: &'static str,
    concurrency: u32,
    run: Run,
    rss_mb: f64,
    peak_mb: f64,
}

const CONCURRENCIES: [u32; 3] = [1, 16, 64];

fn main() {
    let mut section = Section::new("server_load");
    let seconds: u64 = section.setting("BENCH_SECONDS", 10);
    let rounds: usize = section.setting("BENCH_ROUNDS", 3);
    // A default Postgres (fsync on), as the lab runs it; BENCH_FSYNC=off
    // measures the CPU-bound case instead.
    let fsync: String = section.setting("BENCH_FSYNC", "on".to_owned());
    assert!(
        fsync == "on" || fsync == "off",
        "BENCH_FSYNC is on or off, not {fsync:?}"
    );
    let durable = fsync == "on";
    // The server's database pool (16 by default; 32 lets every wrk
    // connection of concurrency 16 and half of 64 hold one at once).
    let pool: u32 = section.setting("BENCH_POOL", 32);
    require("wrk", "install it with `apt-get install wrk`");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let pg = if durable {
        TestPostgres::start_durable()
    } else {
        TestPostgres::start()
    }
    .expect("a test Postgres (PostgreSQL binaries needed)");
    let otlp = runtime.block_on(OtlpReceiver::start_counting()).unwrap();
    // The lab's own backend takes the profiles, as in a native lab.
    let profiles = runtime
        .block_on(lab_backend::start(lab_backend::BackendConfig {
            query: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            otlp_grpc: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            otlp_http: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            generator: None,
            ..lab_backend::BackendConfig::default()
        }))
        .expect("the embedded backend starts");
    let profiles_url = profiles.query_url();
    let script = std::env::temp_dir().join("lab-bench-post.lua");
    std::fs::write(&script, POST_SCRIPT).unwrap();

    // Both servers run side by side and the runs alternate off/on, so
    // neither gets the machine's better moments (or Postgres' checkpoints).
    let mut off = start_server(&pg, pool, "off", &otlp.endpoint(), &profiles_url);
    let mut on = start_server(&pg, pool, "on", &otlp.endpoint(), &profiles_url);
    // GETs read a ten-row table, as a live lab's tables are small.
    pg.psql("TRUNCATE unicorn").unwrap();
    pg.psql("INSERT INTO unicorn (name) SELECT 'seed_' || g FROM generate_series(1, 10) g")
        .unwrap();

    section.paragraph(format!(
        "Postgres fsync {fsync}; each figure is the median of {rounds} alternating rounds of {seconds} s."
    ));
    section.table(&[
        "telemetry",
        "method",
        "concurrency",
        "req/s",
        "p50 ms",
        "p99 ms",
        "non-2xx",
        "server RSS MB (peak)",
    ]);
    let mut measured: Vec<Measured> = Vec::new();
    for concurrency in CONCURRENCIES {
        for method in ["GET", "POST"] {
            let mut runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
            for round in 0..rounds {
                for (i, (label, server)) in [("off", &off), ("on", &on)].into_iter().enumerate() {
                    let base = format!("http://127.0.0.1:{}", server.1);
                    let run = if method == "GET" {
                        wrk(&format!("{base}/unicorn"), concurrency, seconds, None)
                    } else {
                        pg.psql("TRUNCATE owlbear").unwrap();
                        let prefix = format!("{label}{round}c{concurrency}_");
                        wrk(
                            &format!("{base}/owlbear"),
                            concurrency,
                            seconds,
                            Some((&script, &prefix)),
                        )
                    };
                    runs[i].push(run);
                }
            }
            let [off_runs, on_runs] = runs;
            for (telemetry, runs, server) in [("off", off_runs, &off), ("on", on_runs, &on)] {
                let (rss_mb, peak_mb) = rss_mb(server.0.id());
                let m = Measured {
                    telemetry,
                    method,
                    concurrency,
                    run: median(runs),
                    rss_mb,
                    peak_mb,
                };
                section.row([
                    m.telemetry.to_owned(),
                    m.method.to_owned(),
                    m.concurrency.to_string(),
                    format!("{:.0}", m.run.rps),
                    format!("{:.2}", m.run.p50_ms),
                    format!("{:.2}", m.run.p99_ms),
                    m.run.non_2xx.to_string(),
                    format!("{:.1} ({:.1})", m.rss_mb, m.peak_mb),
                ]);
                measured.push(m);
            }
        }
    }
    let find = |telemetry: &str, method: &str, concurrency: u32| {
        measured
            .iter()
            .find(|m| {
                m.telemetry == telemetry && m.method == method && m.concurrency == concurrency
            })
            .expect("every combination measured")
    };

    // A collector that is not there: export fails every time; requests must
    // not slow down and memory must stay bounded.
    let dead_endpoint = format!("http://127.0.0.1:{}", free_port());
    let mut dead = start_server(&pg, pool, "on", &dead_endpoint, &dead_endpoint);
    let dead_run = wrk(
        &format!("http://127.0.0.1:{}/unicorn", dead.1),
        64,
        seconds * 2,
        None,
    );
    let (dead_rss, dead_peak) = rss_mb(dead.0.id());
    let _ = dead.0.kill();
    let _ = dead.0.wait();
    let with_collector = find("on", "GET", 64);
    section.paragraph(format!(
        "With no collector at all (every export fails), GET at concurrency 64 for {} s: {:.0} req/s ({:.0}% of the same with a collector), p50 {:.2} ms, p99 {:.2} ms, RSS {dead_rss:.1} MB (peak {dead_peak:.1}; {:.1} with a collector).",
        seconds * 2,
        dead_run.rps,
        dead_run.rps / with_collector.run.rps * 100.0,
        dead_run.p50_ms,
        dead_run.p99_ms,
        with_collector.peak_mb
    ));

    for server in [&mut off, &mut on] {
        let _ = server.0.kill();
        let _ = server.0.wait();
    }

    section.paragraph(
        "The ceiling for POST, `pgbench -M prepared` running the same single-row INSERT on the same Postgres:",
    );
    section.table(&["pgbench INSERT concurrency", "tps", "avg latency ms"]);
    let mut ceilings = Vec::new();
    for concurrency in CONCURRENCIES {
        pg.psql("TRUNCATE owlbear").unwrap();
        let (tps, latency) = pgbench(&pg, concurrency, seconds);
        section.row([
            concurrency.to_string(),
            format!("{tps:.0}"),
            format!("{latency:.2}"),
        ]);
        ceilings.push((concurrency, tps));
    }

    // Each ratio from the medians in the tables above.
    section.table(&[
        "concurrency",
        "POST / pgbench (telemetry on)",
        "telemetry on / off, GET",
        "telemetry on / off, POST",
    ]);
    let mut to_ceiling = Vec::new();
    let mut on_off = Vec::new();
    for &(concurrency, ceiling) in &ceilings {
        let post = find("on", "POST", concurrency).run.rps / ceiling;
        let get_on_off =
            find("on", "GET", concurrency).run.rps / find("off", "GET", concurrency).run.rps;
        let post_on_off =
            find("on", "POST", concurrency).run.rps / find("off", "POST", concurrency).run.rps;
        section.row([
            concurrency.to_string(),
            percent(post),
            percent(get_on_off),
            percent(post_on_off),
        ]);
        to_ceiling.push(post);
        on_off.push((concurrency, get_on_off, post_on_off));
    }

    let gets_on: Vec<f64> = CONCURRENCIES
        .iter()
        .map(|&c| find("on", "GET", c).run.rps)
        .collect();
    let peak_on = measured
        .iter()
        .filter(|m| m.telemetry == "on")
        .map(|m| m.peak_mb)
        .fold(0.0, f64::max);
    let ratios: Vec<f64> = on_off.iter().flat_map(|&(_, g, p)| [g, p]).collect();
    let at_goal: Vec<String> = on_off
        .iter()
        .filter(|&&(_, g, p)| g >= 0.9 && p >= 0.9)
        .map(|(c, _, _)| c.to_string())
        .collect();
    section.goals(&[
        Goal::new(
            "GET ≥ 5,000 req/s with telemetry on, at every concurrency",
            gets_on.iter().all(|&r| r >= 5000.0),
            format!("{} req/s", span(&gets_on, |r| format!("{:.1}k", r / 1e3))),
        ),
        Goal::new(
            "server RSS under load ≤ 30 MB",
            peak_on <= 30.0,
            format!("peak {peak_on:.1} MB with telemetry on"),
        ),
        Goal::new(
            "POST ≥ 70% of the pgbench ceiling, at every concurrency",
            to_ceiling.iter().all(|&r| r >= 0.7),
            span(&to_ceiling, percent),
        ),
        Goal::new(
            "telemetry on ≥ 90% of off, GET and POST at every concurrency",
            ratios.iter().all(|&r| r >= 0.9),
            format!(
                "{}; both ≥ 90% at concurrency {}",
                span(&ratios, percent),
                if at_goal.is_empty() {
                    "none".to_owned()
                } else {
                    at_goal.join(", ")
                }
            ),
        ),
    ]);
    let counts = otlp.receiver.counts();
    let pushed = profiles.backend.store().stats().profiles;
    section.paragraph(format!(
        "The telemetry-on server exported {} spans and {} log records to the receiver, and {pushed} profiles (CPU and heap) to the backend.",
        thousands(counts.spans.load(std::sync::atomic::Ordering::Relaxed)),
        thousands(counts.logs.load(std::sync::atomic::Ordering::Relaxed))
    ));
    assert!(pushed > 0, "the telemetry-on server pushed no profile");
    section.finish();
}

fn percent(ratio: f64) -> String {
    format!("{:.0}%", ratio * 100.0)
}

/// The lowest and highest of `values` as "low–high", one figure when
/// both print the same.
fn span(values: &[f64], show: impl Fn(f64) -> String) -> String {
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (low, high) = (show(low), show(high));
    if low == high {
        low
    } else {
        format!("{low}–{high}")
    }
}

/// The run with the median throughput.
fn median(mut runs: Vec<Run>) -> Run {
    runs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    runs.swap_remove(runs.len() / 2)
}

fn require(program: &str, how: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(found, "`{program}` is not installed: {how}");
}

fn start_server(
    pg: &TestPostgres,
    pool: u32,
    telemetry: &str,
    endpoint: &str,
    profiles: &str,
) -> (Child, u16) {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_mythical-server"));
    command
        .envs(pg.env())
        .env("MYTHICAL_SERVER_LISTEN", format!("127.0.0.1:{port}"))
        .env("MYTHICAL_DATABASE_POOL_SIZE", pool.to_string())
        .stdout(Stdio::null());
    if telemetry == "off" {
        command.env("OTEL_SDK_DISABLED", "true");
    } else {
        command
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
            .env("PYROSCOPE_SERVER_ADDRESS", profiles);
    }
    let mut child = command.spawn().expect("starting mythical-server");
    let url = format!("http://127.0.0.1:{port}/healthz");
    for _ in 0..300 {
        let ok = Command::new("curl")
            .args(["-fs", "-o", "/dev/null", &url])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return (child, port);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("mythical-server did not become healthy");
}

fn wrk(url: &str, concurrency: u32, seconds: u64, post: Option<(&std::path::Path, &str)>) -> Run {
    let threads = concurrency.min(2);
    let mut command = Command::new("wrk");
    command.args([
        "-t",
        &threads.to_string(),
        "-c",
        &concurrency.to_string(),
        "-d",
        &format!("{seconds}s"),
        "--latency",
    ]);
    if let Some((script, prefix)) = post {
        command.arg("-s").arg(script);
        command
            .arg(url)
            .arg("--")
            .arg(format!("{prefix}{concurrency}_"));
    } else {
        command.arg(url);
    }
    let out = command.output().expect("running wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |prefix: &str| -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
    };
    Run {
        rps: field("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
        p50_ms: field("50%").map(to_ms).unwrap_or(f64::NAN),
        p99_ms: field("99%").map(to_ms).unwrap_or(f64::NAN),
        non_2xx: text
            .lines()
            .find(|l| l.contains("Non-2xx or 3xx responses:"))
            .and_then(|l| l.rsplit(':').next())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0),
    }
}

/// wrk prints latencies as `812.00us`, `1.20ms` or `1.01s`.
fn to_ms(value: &str) -> f64 {
    let split = value
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        "m" => number * 60_000.0,
        _ => f64::NAN,
    }
}

fn rss_mb(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
}

/// The same single-row INSERT through pgbench (prepared statements, as sqlx
/// uses): the most this Postgres does on this machine.
fn pgbench(pg: &TestPostgres, concurrency: u32, seconds: u64) -> (f64, f64) {
    let script = std::env::temp_dir().join("lab-bench-insert.sql");
    std::fs::write(
        &script,
        "INSERT INTO owlbear (name) VALUES (md5(random()::text));\n",
    )
    .unwrap();
    let out = Command::new(find_bindir().unwrap().join("pgbench"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port().to_string(),
            "-U",
            "postgres",
            "-n",
            "-M",
            "prepared",
            "-c",
            &concurrency.to_string(),
            "-j",
            &concurrency.min(2).to_string(),
            "-T",
            &seconds.to_string(),
            "-f",
        ])
        .arg(&script)
        .arg("postgres")
        .output()
        .expect("running pgbench");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pgbench failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let number_after = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split('=').nth(1))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    (number_after("tps"), number_after("latency average"))
}
