//! What the proxy costs with no toxics: echo throughput for a large
//! transfer, and the latency it adds to small ping-pong round trips, each
//! measured through the proxy and on a direct connection to the same echo
//! server. Prints its section of BENCHMARKS.md (and writes it under
//! `BENCH_RESULTS` when set, for `scripts/bench`).
//!
//! cargo bench -p lab-proxy --bench throughput
//! (`BENCH_MIB` sets the transfer, 256 by default; `BENCH_ROUND_TRIPS` the
//! round trips, 10000 by default)

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lab_testkit::{Section, thousands};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BLOCK: usize = 64 * 1024;
const PING: usize = 64;

fn main() {
    let mut section = Section::new("proxy");
    let mib: usize = section.setting("BENCH_MIB", 256);
    let round_trips: usize = section.setting("BENCH_ROUND_TRIPS", 10_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let echo = echo_server().await;
        let proxy = lab_proxy::start(lab_proxy::ProxyConfig::new(echo.to_string()))
            .await
            .unwrap();

        // Direct first, then proxied, twice, keeping the better of each:
        // the first run also warms the page cache and the allocator.
        let mut direct_mib_s: f64 = 0.0;
        let mut proxied_mib_s: f64 = 0.0;
        for _ in 0..2 {
            direct_mib_s = direct_mib_s.max(throughput(echo, mib).await);
            proxied_mib_s = proxied_mib_s.max(throughput(proxy.listen, mib).await);
        }
        let direct = ping_pong(echo, round_trips).await;
        let proxied = ping_pong(proxy.listen, round_trips).await;

        section.paragraph(format!(
            "An echo server on loopback, no toxics: {mib} MiB sent and read back at once (the better of two runs), then {} round trips of {PING} bytes on one connection.",
            thousands(round_trips as u64)
        ));
        let heading = format!("echo {mib} MiB, MiB/s");
        section.table(&[
            "path",
            &heading,
            &format!("{PING}-byte round trip p50 µs"),
            "p99 µs",
        ]);
        for (path, mib_s, times) in [
            ("direct", direct_mib_s, &direct),
            ("through lab-proxy", proxied_mib_s, &proxied),
        ] {
            section.row([
                path.to_owned(),
                format!("{mib_s:.0}"),
                format!("{:.1}", micros(times.p50)),
                format!("{:.1}", micros(times.p99)),
            ]);
        }
        section.paragraph(format!(
            "Added by the proxy per round trip: p50 {:+.1} µs, p99 {:+.1} µs; its throughput is {:.0}% of direct.",
            micros(proxied.p50) - micros(direct.p50),
            micros(proxied.p99) - micros(direct.p99),
            100.0 * proxied_mib_s / direct_mib_s
        ));
        let counters = proxy.counters();
        println!(
            "proxy counters: {} connections, {} MiB up, {} MiB down",
            counters.connections_total,
            counters.bytes_up >> 20,
            counters.bytes_down >> 20
        );
        proxy.shutdown().await;
    });
    section.finish();
}

/// Sends `mib` MiB through an echo and reads it all back, both at once;
/// MiB/s of the one-way size over the whole time.
async fn throughput(addr: SocketAddr, mib: usize) -> f64 {
    let total = mib * 1024 * 1024;
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut read, mut write) = stream.into_split();
    let start = Instant::now();
    let sender = tokio::spawn(async move {
        let block = vec![0x5au8; BLOCK];
        let mut sent = 0;
        while sent < total {
            let n = BLOCK.min(total - sent);
            write.write_all(&block[..n]).await.unwrap();
            sent += n;
        }
        write.shutdown().await.unwrap();
    });
    let mut buf = vec![0u8; BLOCK];
    let mut received = 0;
    loop {
        let n = read.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        received += n;
    }
    sender.await.unwrap();
    assert_eq!(received, total, "the echo came back whole");
    mib as f64 / start.elapsed().as_secs_f64()
}

struct Percentiles {
    p50: Duration,
    p99: Duration,
}

/// `count` round trips of a small message on one connection, after a
/// warm-up of a tenth as many.
async fn ping_pong(addr: SocketAddr, count: usize) -> Percentiles {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let ping = [0x42u8; PING];
    let mut pong = [0u8; PING];
    let mut times = Vec::with_capacity(count);
    for i in 0..count + count / 10 {
        let start = Instant::now();
        stream.write_all(&ping).await.unwrap();
        stream.read_exact(&mut pong).await.unwrap();
        if i >= count / 10 {
            times.push(start.elapsed());
        }
    }
    times.sort();
    Percentiles {
        p50: times[times.len() / 2],
        p99: times[times.len() * 99 / 100],
    }
}

/// An echo server with large buffers, so it is not what limits throughput.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let mut buf = vec![0u8; BLOCK];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
