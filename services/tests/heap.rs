//! The heap profile end to end: this test binary allocates through the
//! sampled allocator, the pusher sends to the lab's backend over loopback,
//! and the profile APIs name the function that still holds its memory (in
//! use) apart from the one that only churned through memory (allocated).

use std::time::Duration;

use mythical_services::heap::Sampled;
use mythical_services::profiling::{Profiler, ProfilingConfig};
use serde_json::Value;

#[global_allocator]
static HEAP: Sampled = Sampled;

/// Keeps 32 MiB in 16 KiB blocks until the profile is read.
#[inline(never)]
fn keep_the_gold() -> Vec<Vec<u8>> {
    (0..2048)
        .map(|i| std::hint::black_box(vec![i as u8; 16 * 1024]))
        .collect()
}

/// Allocates 64 MiB in 64 KiB blocks and frees each at once.
#[inline(never)]
fn spend_the_gold() -> u64 {
    let mut sum = 0u64;
    for i in 0..1024u32 {
        let block = std::hint::black_box(vec![i as u8; 64 * 1024]);
        sum += u64::from(block[block.len() - 1]);
    }
    sum
}

fn top(base: &str, profile: &str) -> Value {
    let url = format!(
        "{base}/api/profiles/top?query={profile}%7Bservice_name%3D%22mythical-server%22%7D&from=now-5m&until=now&limit=50"
    );
    let body = fetch(&url);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"))
}

/// The shares of a profile's total under a function (its total) and in it
/// (self, its closures included).
fn share(answer: &Value, function: &str) -> (f64, f64) {
    let total = answer["total"].as_f64().unwrap_or(0.0).max(1.0);
    let mut under = 0.0f64;
    let mut itself = 0.0;
    for f in answer["functions"].as_array().into_iter().flatten() {
        if f["name"].as_str().unwrap_or("").contains(function) {
            under = under.max(f["total"].as_f64().unwrap());
            itself += f["self"].as_f64().unwrap();
        }
    }
    (under / total, itself / total)
}

/// A GET on a throwaway runtime, so the test's own thread stays plain.
fn fetch(url: &str) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() })
}

#[test]
fn the_heap_profile_names_who_holds_memory_and_who_only_allocated() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let backend = runtime
        .block_on(lab_backend::start(lab_backend::BackendConfig {
            query: loopback,
            otlp_grpc: loopback,
            otlp_http: loopback,
            ..lab_backend::BackendConfig::default()
        }))
        .unwrap();
    assert!(
        mythical_services::heap::installed(),
        "the test binary allocates through the sampled allocator"
    );
    let pusher = Profiler::start(&ProfilingConfig {
        server: format!("http://{}", backend.otlp_http),
        service_name: "mythical-server".into(),
        namespace: "lab-test".into(),
    })
    .unwrap();
    let gold = keep_the_gold();
    std::hint::black_box(spend_the_gold());
    std::thread::sleep(Duration::from_millis(200));
    // Stopping pushes what was sampled and ends the profiler's thread.
    pusher.stop();

    let base = backend.query_url();
    let in_use = top(&base, "memory:inuse_space:bytes::");
    let (kept, kept_self) = share(&in_use, "keep_the_gold");
    assert!(
        kept > 0.5 && kept_self > 0.5,
        "keep_the_gold holds most memory in use, itself: {in_use}"
    );
    assert_eq!(
        share(&in_use, "spend_the_gold").0,
        0.0,
        "spend_the_gold freed all it took: {in_use}"
    );

    // Counted as objects too: 2048 blocks kept, within sampling error (a
    // 16 KiB block is sampled about once in 32).
    let objects = top(&base, "memory:inuse_objects:count::");
    let kept_objects = objects["functions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["name"].as_str().unwrap_or("").contains("keep_the_gold"))
        .map(|f| f["self"].as_f64().unwrap())
        .sum::<f64>();
    assert!(
        (1200.0..3200.0).contains(&kept_objects),
        "{kept_objects} objects kept by keep_the_gold: {objects}"
    );

    let allocated = top(&base, "memory:alloc_space:bytes::");
    let (spent, _) = share(&allocated, "spend_the_gold");
    let (kept_alloc, _) = share(&allocated, "keep_the_gold");
    assert!(
        spent > kept_alloc && kept_alloc > 0.2,
        "spend_the_gold allocated about twice what keep_the_gold did: {allocated}"
    );
    // Sampling scales back to the real sizes, within sampling error: 32 MiB
    // kept, out of 96 MiB allocated.
    let mib = |v: &Value| v["total"].as_f64().unwrap() / 1024.0 / 1024.0;
    assert!(
        (20.0..64.0).contains(&mib(&in_use)),
        "{} MiB in use",
        mib(&in_use)
    );
    assert!(
        (64.0..160.0).contains(&mib(&allocated)),
        "{} MiB allocated",
        mib(&allocated)
    );
    drop(gold);
    runtime.block_on(backend.shutdown());
}
