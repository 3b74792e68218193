//! Load on mythical-server: req/s and latency for GET and POST at
//! concurrency 1, 16 and 64 with `wrk`, telemetry export on and off, the
//! server's RSS, and `pgbench` running the same single-row INSERT as the
//! ceiling for POST. Prints a Markdown table for BENCHMARKS.md.
//!
//! cargo bench -p mythical-services --bench server_load
//! (needs `wrk` and `pgbench`; `BENCH_SECONDS` sets each run's length)

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lab_testkit::{OtlpReceiver, TestPostgres, find_bindir, free_port};

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

fn main() {
    let seconds: u64 = env_number("BENCH_SECONDS", 10);
    let rounds: usize = env_number("BENCH_ROUNDS", 3);
    require("wrk", "install it with `apt-get install wrk`");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // A default Postgres (fsync on), as the lab runs it; BENCH_FSYNC=off
    // measures the CPU-bound case instead.
    let durable = std::env::var("BENCH_FSYNC").as_deref() != Ok("off");
    let pg = if durable {
        TestPostgres::start_durable()
    } else {
        TestPostgres::start()
    }
    .expect("a test Postgres (PostgreSQL binaries needed)");
    let otlp = runtime.block_on(OtlpReceiver::start_counting()).unwrap();
    let script = std::env::temp_dir().join("lab-bench-post.lua");
    std::fs::write(&script, POST_SCRIPT).unwrap();

    // Both servers run side by side and the runs alternate off/on, so
    // neither gets the machine's better moments (or Postgres' checkpoints).
    let mut off = start_server(&pg, "off", &otlp.endpoint());
    let mut on = start_server(&pg, "on", &otlp.endpoint());
    // GETs read a ten-row table, as a live lab's tables are small.
    pg.psql("TRUNCATE unicorn").unwrap();
    pg.psql("INSERT INTO unicorn (name) SELECT 'seed_' || g FROM generate_series(1, 10) g")
        .unwrap();

    println!(
        "Postgres fsync {}; median of {rounds} alternating rounds of {seconds} s each.",
        if durable { "on" } else { "off" }
    );
    println!();
    println!(
        "| telemetry | method | concurrency | req/s | p50 ms | p99 ms | non-2xx | server RSS MB (peak) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut summary = Vec::new();
    for concurrency in [1u32, 16, 64] {
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
            let (off_run, on_run) = (median(off_runs), median(on_runs));
            report("off", method, concurrency, &off_run, &off.0);
            report("on", method, concurrency, &on_run, &on.0);
            summary.push((method, concurrency, off_run.rps, on_run.rps));
        }
    }
    // A collector that is not there: export fails every time; requests must
    // not slow down and memory must stay bounded.
    let dead_endpoint = format!("http://127.0.0.1:{}", free_port());
    let mut dead = start_server(&pg, "on", &dead_endpoint);
    let dead_run = wrk(
        &format!("http://127.0.0.1:{}/unicorn", dead.1),
        64,
        seconds * 2,
        None,
    );
    println!();
    println!(
        "| collector | method | concurrency | req/s | p50 ms | p99 ms | server RSS MB (peak) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let (rss, peak) = rss_mb(dead.0.id());
    println!(
        "| absent (every export fails) | GET | 64 | {:.0} | {:.2} | {:.2} | {rss:.1} ({peak:.1}) |",
        dead_run.rps, dead_run.p50_ms, dead_run.p99_ms
    );
    let _ = dead.0.kill();
    let _ = dead.0.wait();

    for server in [&mut off, &mut on] {
        let _ = server.0.kill();
        let _ = server.0.wait();
    }

    println!();
    println!("| pgbench INSERT concurrency | tps | avg latency ms |");
    println!("|---|---|---|");
    let mut ceilings = Vec::new();
    for concurrency in [1u32, 16, 64] {
        pg.psql("TRUNCATE owlbear").unwrap();
        let (tps, latency) = pgbench(&pg, concurrency, seconds);
        println!("| {concurrency} | {tps:.0} | {latency:.2} |");
        ceilings.push((concurrency, tps));
    }

    println!();
    println!(
        "| concurrency | POST / pgbench (telemetry on) | telemetry on / off, GET | telemetry on / off, POST |"
    );
    println!("|---|---|---|---|");
    for (concurrency, ceiling) in ceilings {
        let get = summary
            .iter()
            .find(|s| s.0 == "GET" && s.1 == concurrency)
            .unwrap();
        let post = summary
            .iter()
            .find(|s| s.0 == "POST" && s.1 == concurrency)
            .unwrap();
        println!(
            "| {concurrency} | {:.0}% | {:.0}% | {:.0}% |",
            post.3 / ceiling * 100.0,
            get.3 / get.2 * 100.0,
            post.3 / post.2 * 100.0
        );
    }
    let counts = otlp.receiver.counts();
    println!();
    println!(
        "received over OTLP from the telemetry-on server: {} spans, {} log records",
        counts.spans.load(std::sync::atomic::Ordering::Relaxed),
        counts.logs.load(std::sync::atomic::Ordering::Relaxed)
    );
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
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

fn start_server(pg: &TestPostgres, telemetry: &str, endpoint: &str) -> (Child, u16) {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_mythical-server"));
    command
        .envs(pg.env())
        .env("MYTHICAL_SERVER_LISTEN", format!("127.0.0.1:{port}"))
        .env("MYTHICAL_DATABASE_POOL_SIZE", "32")
        .stdout(Stdio::null());
    if telemetry == "off" {
        command.env("OTEL_SDK_DISABLED", "true");
    } else {
        command
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc");
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

fn report(telemetry: &str, method: &str, concurrency: u32, run: &Run, server: &Child) {
    let (rss, peak) = rss_mb(server.id());
    println!(
        "| {telemetry} | {method} | {concurrency} | {:.0} | {:.2} | {:.2} | {} | {rss:.1} ({peak:.1}) |",
        run.rps, run.p50_ms, run.p99_ms, run.non_2xx
    );
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
