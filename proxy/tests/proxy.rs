//! The proxy on real loopback TCP: an echo server started here, and a real
//! Postgres reached through mythical-storage's own client.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lab_proxy::{Counters, Draws, ProxyConfig, ProxyError, RunningProxy, Status, Toxics};
use lab_testkit::TestPostgres;
use mythical_storage::{DbConfig, StorageError, Store};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An echo server: every connection gets back what it sends, and is
/// half-closed when the client half-closes.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
                let _ = write.shutdown().await;
            });
        }
    });
    addr
}

async fn proxy_to(upstream: SocketAddr) -> RunningProxy {
    lab_proxy::start(ProxyConfig::new(upstream.to_string()))
        .await
        .unwrap()
}

fn toxics_url(proxy: &RunningProxy) -> String {
    format!("http://{}/toxics", proxy.admin)
}

async fn put_toxics(proxy: &RunningProxy, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .put(toxics_url(proxy))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn get_status(proxy: &RunningProxy) -> Status {
    reqwest::get(toxics_url(proxy))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits (up to 5 s) until the counters satisfy `done`; the counters change
/// after the sockets do, so a test reads them only once they have settled.
async fn counters_when(proxy: &RunningProxy, done: impl Fn(&Counters) -> bool) -> Counters {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let counters = proxy.counters();
        if done(&counters) || Instant::now() > deadline {
            return counters;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends `data` through `stream` and reads as much back, both at once.
async fn echo_through(stream: TcpStream, data: Vec<u8>) -> Vec<u8> {
    let (mut read, mut write) = stream.into_split();
    let sender = tokio::spawn(async move {
        write.write_all(&data).await.unwrap();
        write.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    read.read_to_end(&mut back).await.unwrap();
    sender.await.unwrap();
    back
}

async fn postgres() -> TestPostgres {
    tokio::task::spawn_blocking(TestPostgres::start)
        .await
        .unwrap()
        .expect("a test Postgres (PostgreSQL binaries needed)")
}

fn store_through(proxy: &RunningProxy) -> Store {
    Store::connect_lazy(&DbConfig {
        host: "127.0.0.1".into(),
        port: proxy.listen.port(),
        // One connection, so every statement reuses the one already open.
        max_connections: 1,
        acquire_timeout: Duration::from_secs(3),
        ..DbConfig::default()
    })
}

/// Times one `SELECT 1` on the pool's one connection. sqlx pings a
/// connection as it goes back to the pool, so the previous statement's
/// release is awaited first: under latency it takes a round trip of its own.
async fn timed_ping(store: &Store) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.pool().size() > 0 && store.pool().num_idle() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let start = Instant::now();
    store.ping().await.unwrap();
    start.elapsed()
}

#[tokio::test]
async fn passthrough_echoes_bytes_unchanged_and_counts_them() {
    let proxy = proxy_to(echo_server().await).await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();

    let stream = TcpStream::connect(proxy.listen).await.unwrap();
    let back = echo_through(stream, data.clone()).await;

    assert_eq!(back, data);
    let counters = counters_when(&proxy, |c| c.connections_open == 0).await;
    assert_eq!(counters.connections_total, 1);
    assert_eq!(counters.connections_open, 0);
    assert_eq!(counters.bytes_up, data.len() as u64);
    assert_eq!(counters.bytes_down, data.len() as u64);
    let status = get_status(&proxy).await;
    assert_eq!(status.counters, counters);
    assert_eq!(status.toxics, Toxics::default());
    proxy.shutdown().await;
}

#[tokio::test]
async fn latency_200ms_slows_postgres_select_1_and_clearing_makes_it_fast_again() {
    let pg = postgres().await;
    let proxy = proxy_to(format!("127.0.0.1:{}", pg.port()).parse().unwrap()).await;
    let store = store_through(&proxy);
    let connecting = timed_ping(&store).await;
    let direct = timed_ping(&store).await;

    let (status, _) = put_toxics(&proxy, json!({"latency": 200})).await;
    assert_eq!(status, 200);
    // The pool's connection was opened before the toxic: it applies to it.
    let slowed = timed_ping(&store).await;
    assert_eq!(store.pool().size(), 1);

    let cleared = reqwest::Client::new()
        .delete(toxics_url(&proxy))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status().as_u16(), 200);
    let again = timed_ping(&store).await;

    println!(
        "SELECT 1 through the proxy: connect+query {connecting:?}, plain {direct:?}, \
         latency 200 ms {slowed:?}, cleared {again:?}"
    );
    assert!(slowed >= Duration::from_millis(200), "{slowed:?}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn reset_1_makes_the_postgres_client_fail_with_a_connection_error() {
    let pg = postgres().await;
    let proxy = proxy_to(format!("127.0.0.1:{}", pg.port()).parse().unwrap()).await;
    let (status, _) = put_toxics(&proxy, json!({"reset": 1.0})).await;
    assert_eq!(status, 200);

    let err = store_through(&proxy).ping().await.unwrap_err();

    assert!(matches!(err, StorageError::Unavailable(_)), "{err:?}");
    println!("the client's error: {err}");
    assert!(proxy.counters().resets_total >= 1);
    assert_eq!(proxy.counters().upstream_errors_total, 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn reset_with_existing_sends_an_rst_to_open_connections() {
    let proxy = proxy_to(echo_server().await).await;
    let mut stream = TcpStream::connect(proxy.listen).await.unwrap();
    stream.write_all(b"hello").await.unwrap();
    let mut hello = [0u8; 5];
    stream.read_exact(&mut hello).await.unwrap();

    let (status, _) = put_toxics(&proxy, json!({"reset": 1.0, "existing": true})).await;
    assert_eq!(status, 200);
    let mut buf = [0u8; 16];
    let read = stream.read(&mut buf).await;

    let err = read.expect_err("an RST, not an orderly close");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    assert_eq!(proxy.counters().resets_total, 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn reset_after_bytes_lets_that_many_bytes_through_first() {
    let proxy = proxy_to(echo_server().await).await;
    proxy
        .set_toxics(Toxics {
            reset: 1.0,
            reset_after_bytes: 10,
            ..Toxics::default()
        })
        .unwrap();
    let mut stream = TcpStream::connect(proxy.listen).await.unwrap();
    stream.write_all(b"0123").await.unwrap();
    let mut four = [0u8; 4];
    stream.read_exact(&mut four).await.unwrap();
    assert_eq!(&four, b"0123");

    // 8 bytes so far; two more reach the echo server, then the RST.
    stream.write_all(b"456789").await.unwrap();
    let mut rest = Vec::new();
    let err = stream.read_to_end(&mut rest).await.unwrap_err();

    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    let counters = proxy.counters();
    assert_eq!(counters.bytes_up + counters.bytes_down, 10);
    proxy.shutdown().await;
}

#[tokio::test]
async fn bandwidth_cap_makes_a_1_mib_echo_take_at_least_size_over_rate() {
    let proxy = proxy_to(echo_server().await).await;
    let kib_per_second = 512;
    let (status, _) = put_toxics(&proxy, json!({"bandwidth": kib_per_second})).await;
    assert_eq!(status, 200);
    let data = vec![7u8; 1024 * 1024];

    let start = Instant::now();
    let stream = TcpStream::connect(proxy.listen).await.unwrap();
    let back = echo_through(stream, data.clone()).await;
    let took = start.elapsed();

    assert_eq!(back.len(), data.len());
    let minimum = Duration::from_secs_f64(1024.0 / kib_per_second as f64);
    println!("1 MiB echoed at a {kib_per_second} KiB/s cap in {took:?} (minimum {minimum:?})");
    assert!(took >= minimum, "{took:?} < {minimum:?}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn down_refuses_new_connections_and_closes_open_ones() {
    let proxy = proxy_to(echo_server().await).await;
    let mut open = TcpStream::connect(proxy.listen).await.unwrap();
    open.write_all(b"x").await.unwrap();
    let mut x = [0u8; 1];
    open.read_exact(&mut x).await.unwrap();

    let (status, _) = put_toxics(&proxy, json!({"down": true})).await;
    assert_eq!(status, 200);
    let mut refused = TcpStream::connect(proxy.listen).await.unwrap();
    let mut buf = [0u8; 1];

    assert_eq!(refused.read(&mut buf).await.unwrap(), 0);
    assert_eq!(open.read(&mut buf).await.unwrap(), 0);
    let counters = counters_when(&proxy, |c| c.connections_open == 0).await;
    assert_eq!(counters.refused_total, 1);
    assert_eq!(counters.connections_open, 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn bad_put_body_is_400_naming_the_field_and_changes_nothing() {
    let proxy = proxy_to(echo_server().await).await;
    let (status, _) = put_toxics(&proxy, json!({"latency": 5})).await;
    assert_eq!(status, 200);

    for (body, field) in [
        (json!({"latency": "slow"}), "latency"),
        (json!({"latency": 1, "reset": 2}), "reset"),
        (json!({"latnecy": 1}), "latnecy"),
        (json!({"direction": "sideways"}), "direction"),
        (json!({"bandwidth": 0}), "bandwidth"),
        (json!([1, 2]), "body"),
    ] {
        let (status, answer) = put_toxics(&proxy, body.clone()).await;
        assert_eq!(status, 400, "{body}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.starts_with(&format!("`{field}`")), "{body}: {error}");
    }
    let not_json = reqwest::Client::new()
        .put(toxics_url(&proxy))
        .body("latency=5")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status().as_u16(), 400);

    let status = get_status(&proxy).await;
    assert_eq!(
        status.toxics,
        Toxics {
            latency: 5,
            ..Toxics::default()
        }
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn listen_port_in_use_gives_a_bind_error_that_says_pick_another_port() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let config = ProxyConfig {
        listen: addr,
        ..ProxyConfig::new("127.0.0.1:1")
    };

    let err = lab_proxy::start(config).await.err().expect("a bind error");

    match &err {
        ProxyError::Bind {
            addr: failed,
            source,
        } => {
            assert_eq!(*failed, addr);
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
        }
        other => panic!("expected Bind, got {other:?}"),
    }
    assert!(err.to_string().contains("pick another port"), "{err}");
}

#[tokio::test]
async fn seeded_jitter_draws_the_same_delays_and_each_round_trip_waits_its_draw() {
    let toxics = Toxics {
        latency: 20,
        jitter: 15,
        seed: Some(7),
        direction: lab_proxy::Direction::Upstream,
        ..Toxics::default()
    };
    let draws = |n| {
        let mut draws = Draws::new(toxics.seed);
        (0..n).map(|_| draws.delay(&toxics)).collect::<Vec<_>>()
    };
    let expected = draws(20);
    assert_eq!(expected, draws(20));
    assert!(expected.windows(2).any(|w| w[0] != w[1]), "jitter varies");

    let proxy = proxy_to(echo_server().await).await;
    let mut stream = TcpStream::connect(proxy.listen).await.unwrap();
    stream.set_nodelay(true).unwrap();
    for run in 0..2 {
        // A PUT with a seed restarts the draws from it.
        proxy.set_toxics(toxics.clone()).unwrap();
        let mut measured = Vec::new();
        for delay in &expected {
            // One byte is one chunk, so one draw per round trip.
            let start = Instant::now();
            stream.write_all(b"p").await.unwrap();
            let mut pong = [0u8; 1];
            stream.read_exact(&mut pong).await.unwrap();
            let took = start.elapsed();
            measured.push(took.as_millis());
            assert!(took >= *delay, "run {run}: {took:?} < drawn {delay:?}");
        }
        println!("run {run}: round trips (ms) {measured:?}");
    }
    println!(
        "drawn (ms) {:?}",
        expected.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn unreachable_upstream_closes_the_client_and_is_counted() {
    let nobody = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = proxy_to(nobody).await;

    let mut stream = TcpStream::connect(proxy.listen).await.unwrap();
    let mut buf = [0u8; 1];

    assert_eq!(stream.read(&mut buf).await.unwrap(), 0);
    let counters = counters_when(&proxy, |c| c.upstream_errors_total == 1).await;
    assert_eq!(counters.upstream_errors_total, 1);
    assert_eq!(counters.connections_total, 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn token_guards_toxics_but_not_healthz() {
    let upstream = echo_server().await;
    let proxy = lab_proxy::start(ProxyConfig {
        token: Some("s3cret".into()),
        ..ProxyConfig::new(upstream.to_string())
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let url = toxics_url(&proxy);

    let missing = client.get(&url).send().await.unwrap();
    let wrong = client
        .put(&url)
        .bearer_auth("guess")
        .body("{\"down\":true}")
        .send()
        .await
        .unwrap();
    let right = client.get(&url).bearer_auth("s3cret").send().await.unwrap();
    let health = client
        .get(format!("http://{}/healthz", proxy.admin))
        .send()
        .await
        .unwrap();

    assert_eq!(missing.status().as_u16(), 401);
    assert_eq!(wrong.status().as_u16(), 401);
    assert_eq!(right.status().as_u16(), 200);
    assert_eq!(health.status().as_u16(), 200);
    assert!(!proxy.toxics().down, "a refused PUT changes nothing");
    proxy.shutdown().await;
}
