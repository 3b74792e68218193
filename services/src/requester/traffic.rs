//! How fast the requester sends: the original's spiky pacing by default, a
//! fixed total rate when asked, or paused; changed at runtime through the
//! admin API (`/admin/traffic`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rand::RngExt;
use serde::{Deserialize, Serialize};

use crate::http_json::JsonBody;
use crate::random;

/// The original's request counter wraps at 3000: the first 2000 requests of
/// each cycle come fast (0–50 ms apart per loop), the next 1000 slowly
/// (100–1100 ms), which draws spikes on every rate graph.
const CYCLE: u64 = 3000;
const FAST_PART: u64 = 2000;

#[derive(Debug)]
pub struct Traffic {
    loops: u32,
    /// Requests per second across all loops, stored as millirequests; 0
    /// means the original's pacing.
    rate_milli: AtomicU64,
    paused: AtomicBool,
    counter: AtomicU64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrafficSetting {
    /// Requests per second in total; absent or 0 for the original's pacing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    #[serde(default)]
    pub paused: bool,
}

impl Traffic {
    pub fn new(loops: u32, rate: Option<f64>) -> Traffic {
        let traffic = Traffic {
            loops: loops.max(1),
            rate_milli: AtomicU64::new(0),
            paused: AtomicBool::new(false),
            counter: AtomicU64::new(0),
        };
        traffic.set_rate(rate);
        traffic
    }

    pub fn loops(&self) -> u32 {
        self.loops
    }

    fn set_rate(&self, rate: Option<f64>) {
        let milli = rate
            .filter(|r| r.is_finite() && *r > 0.0)
            .map_or(0, |r| (r * 1000.0) as u64);
        self.rate_milli.store(milli, Ordering::Relaxed);
    }

    pub fn setting(&self) -> TrafficSetting {
        let milli = self.rate_milli.load(Ordering::Relaxed);
        TrafficSetting {
            rate: (milli > 0).then(|| milli as f64 / 1000.0),
            paused: self.paused.load(Ordering::Relaxed),
        }
    }

    pub fn apply(&self, setting: &TrafficSetting) {
        self.set_rate(setting.rate);
        self.paused.store(setting.paused, Ordering::Relaxed);
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    /// How long one loop waits before its next request.
    pub fn next_gap(&self) -> Duration {
        let milli = self.rate_milli.load(Ordering::Relaxed);
        if milli > 0 {
            // Each loop carries 1/loops of the rate; ±20% jitter keeps the
            // loops from marching in step.
            let per_loop = self.loops as f64 * 1000.0 / milli as f64;
            let jitter = random::with(|rng| rng.random_range(0.8..1.2));
            return Duration::from_secs_f64(per_loop * jitter);
        }
        let count = self.counter.fetch_add(1, Ordering::Relaxed) % CYCLE;
        if count < FAST_PART {
            Duration::from_millis(random::with(|rng| rng.random_range(0..50)))
        } else {
            Duration::from_millis(random::with(|rng| rng.random_range(100..1100)))
        }
    }
}

/// `GET|PUT /admin/traffic`, for the admin API.
pub fn admin_routes(traffic: Arc<Traffic>) -> Router {
    Router::new()
        .route("/admin/traffic", get(show).put(change))
        .with_state(traffic)
}

async fn show(State(traffic): State<Arc<Traffic>>) -> Response {
    axum::Json(traffic.setting()).into_response()
}

async fn change(
    State(traffic): State<Arc<Traffic>>,
    JsonBody(setting): JsonBody<TrafficSetting>,
) -> Response {
    if setting.rate.is_some_and(|r| !r.is_finite() || r < 0.0) {
        return crate::http_json::error_response(
            axum::http::StatusCode::BAD_REQUEST,
            "rate must be a number of requests per second, 0 or more",
        );
    }
    traffic.apply(&setting);
    axum::Json(traffic.setting()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_pacing_is_fast_then_slow() {
        let traffic = Traffic::new(4, None);
        let fast = (0..FAST_PART).map(|_| traffic.next_gap()).max().unwrap();
        let slow = (0..CYCLE - FAST_PART)
            .map(|_| traffic.next_gap())
            .min()
            .unwrap();
        assert!(fast < Duration::from_millis(50));
        assert!(slow >= Duration::from_millis(100));
    }

    #[test]
    fn a_fixed_rate_spreads_over_the_loops() {
        let traffic = Traffic::new(4, Some(40.0));
        let gap = traffic.next_gap();
        assert!(
            gap >= Duration::from_millis(80) && gap <= Duration::from_millis(120),
            "{gap:?}"
        );
        traffic.apply(&TrafficSetting {
            rate: None,
            paused: true,
        });
        assert!(traffic.is_paused());
        assert_eq!(traffic.setting().rate, None);
    }
}
