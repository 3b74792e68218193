//! What the accept loop, every connection and the admin API share: the
//! toxics in force (a watch channel, so open connections see a change at
//! once), the run's random draws, and the counters.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::toxics::{Draws, Flow, Toxics};

/// What the proxy has carried since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Connections accepted, whatever became of them.
    pub connections_total: u64,
    /// Connections accepted and not yet closed.
    pub connections_open: u64,
    /// Bytes delivered client → upstream.
    pub bytes_up: u64,
    /// Bytes delivered upstream → client.
    pub bytes_down: u64,
    /// Connections ended with an RST by the `reset` toxic.
    pub resets_total: u64,
    /// Connections closed at once by the `down` toxic.
    pub refused_total: u64,
    /// Connections closed because the upstream could not be reached.
    pub upstream_errors_total: u64,
}

/// The admin API's answer: the toxics in force and the counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub toxics: Toxics,
    pub counters: Counters,
}

#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub connections_total: AtomicU64,
    pub connections_open: AtomicU64,
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
    pub resets_total: AtomicU64,
    pub refused_total: AtomicU64,
    pub upstream_errors_total: AtomicU64,
}

impl Tally {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        // Counters order nothing else, so relaxed is enough.
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Counters {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counters {
            connections_total: read(&self.connections_total),
            connections_open: read(&self.connections_open),
            bytes_up: read(&self.bytes_up),
            bytes_down: read(&self.bytes_down),
            resets_total: read(&self.resets_total),
            refused_total: read(&self.refused_total),
            upstream_errors_total: read(&self.upstream_errors_total),
        }
    }
}

pub(crate) struct Control {
    toxics: watch::Sender<Toxics>,
    draws: Mutex<Draws>,
    pub(crate) tally: Tally,
}

impl Control {
    pub(crate) fn new() -> Control {
        Control {
            toxics: watch::Sender::new(Toxics::default()),
            draws: Mutex::new(Draws::new(None)),
            tally: Tally::default(),
        }
    }

    /// Replaces the toxics and restarts the draws from their seed, so a
    /// PUT with a seed begins the same sequence every time.
    pub(crate) fn set(&self, toxics: Toxics) {
        let mut draws = self.draws.lock().unwrap_or_else(|e| e.into_inner());
        *draws = Draws::new(toxics.seed);
        tracing::info!(?toxics, "toxics replaced");
        self.toxics.send_replace(toxics);
    }

    pub(crate) fn toxics(&self) -> Toxics {
        self.toxics.borrow().clone()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Toxics> {
        self.toxics.subscribe()
    }

    pub(crate) fn status(&self) -> Status {
        Status {
            toxics: self.toxics(),
            counters: self.tally.snapshot(),
        }
    }

    pub(crate) fn counters(&self) -> Counters {
        self.tally.snapshot()
    }

    /// How long a chunk read now in `flow` waits before it is written.
    pub(crate) fn delay(&self, toxics: &Toxics, flow: Flow) -> Duration {
        if !toxics.delays(flow) {
            return Duration::ZERO;
        }
        self.draws
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .delay(toxics)
    }

    pub(crate) fn draw_reset(&self, probability: f64) -> bool {
        probability > 0.0
            && self
                .draws
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .reset(probability)
    }
}
