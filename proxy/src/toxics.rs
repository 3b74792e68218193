//! The faults the proxy injects: one serde struct that a PUT replaces whole,
//! its validation (an error names the field and what it wants), and the
//! random draws (jitter, resets) that a seed makes repeatable.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which way the delay and rate toxics act. `upstream` is client → upstream
/// (the requests), `downstream` is upstream → client (the answers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Upstream,
    Downstream,
    #[default]
    Both,
}

/// One way bytes travel through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Client → upstream.
    Up,
    /// Upstream → client.
    Down,
}

impl Direction {
    pub(crate) fn includes(self, flow: Flow) -> bool {
        matches!(
            (self, flow),
            (Direction::Both, _)
                | (Direction::Upstream, Flow::Up)
                | (Direction::Downstream, Flow::Down)
        )
    }
}

/// The toxics in force. Every field defaults to off, so `{}` is a clean
/// proxy and a PUT says everything it wants at once.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Toxics {
    /// Milliseconds added to every chunk travelling in `direction`.
    pub latency: u64,
    /// ± milliseconds, uniformly drawn per chunk, on top of `latency`
    /// (a delay never goes below zero).
    pub jitter: u64,
    /// Seeds the jitter and reset draws so that a run repeats; without it
    /// the draws come from the operating system.
    pub seed: Option<u64>,
    /// Which way `latency`, `jitter` and `bandwidth` act.
    pub direction: Direction,
    /// Probability (0 to 1) that a new connection is reset with a TCP RST.
    pub reset: f64,
    /// How many bytes (both ways together) a connection chosen for reset
    /// carries before the RST.
    pub reset_after_bytes: u64,
    /// With `reset`: connections already open are drawn for reset too.
    pub existing: bool,
    /// KiB/s cap for each way of each connection in `direction`; `null`
    /// for no cap.
    pub bandwidth: Option<u64>,
    /// Refuse: accept each new connection and close it at once, and close
    /// the ones already open.
    pub down: bool,
}

/// Delays above this are surely a unit mistake (seconds for milliseconds).
const MAX_DELAY_MS: u64 = 3_600_000;
/// 16 GiB/s: far above what loopback carries, low enough to never overflow.
const MAX_BANDWIDTH_KIB: u64 = 16 * 1024 * 1024;

/// Why a toxics body was refused: the field and what it expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {message}")]
pub struct ToxicsError {
    pub field: String,
    pub message: String,
}

impl ToxicsError {
    fn new(field: &str, message: impl Into<String>) -> ToxicsError {
        ToxicsError {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

impl Toxics {
    /// Parses a PUT body. Each field is decoded on its own first so that a
    /// wrong type is reported with its field's name (serde's own message
    /// only says "invalid type" and a column).
    pub fn from_json(body: &[u8]) -> Result<Toxics, ToxicsError> {
        let value: Value = serde_json::from_slice(body).map_err(|err| {
            ToxicsError::new("body", format!("expected a JSON object of toxics: {err}"))
        })?;
        let Value::Object(fields) = value else {
            return Err(ToxicsError::new(
                "body",
                r#"expected a JSON object of toxics, e.g. {"latency": 200}"#,
            ));
        };
        for (name, field) in &fields {
            let alone = Value::Object([(name.clone(), field.clone())].into_iter().collect());
            serde_json::from_value::<Toxics>(alone)
                .map_err(|err| ToxicsError::new(name, err.to_string()))?;
        }
        let toxics: Toxics = serde_json::from_value(Value::Object(fields))
            .map_err(|err| ToxicsError::new("body", err.to_string()))?;
        toxics.validate()?;
        Ok(toxics)
    }

    /// Checks the ranges serde's types cannot say.
    pub fn validate(&self) -> Result<(), ToxicsError> {
        if self.latency > MAX_DELAY_MS {
            return Err(ToxicsError::new(
                "latency",
                format!(
                    "expected milliseconds up to {MAX_DELAY_MS}, got {}",
                    self.latency
                ),
            ));
        }
        if self.jitter > MAX_DELAY_MS {
            return Err(ToxicsError::new(
                "jitter",
                format!(
                    "expected milliseconds up to {MAX_DELAY_MS}, got {}",
                    self.jitter
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.reset) {
            return Err(ToxicsError::new(
                "reset",
                format!("expected a probability from 0 to 1, got {}", self.reset),
            ));
        }
        if let Some(kib) = self.bandwidth
            && !(1..=MAX_BANDWIDTH_KIB).contains(&kib)
        {
            return Err(ToxicsError::new(
                "bandwidth",
                format!(
                    "expected KiB/s from 1 to {MAX_BANDWIDTH_KIB}, or null for no cap, got {kib}"
                ),
            ));
        }
        Ok(())
    }

    /// The cap in bytes per second for `flow`, if any.
    pub(crate) fn bytes_per_second(&self, flow: Flow) -> Option<u64> {
        self.bandwidth
            .filter(|_| self.direction.includes(flow))
            .map(|kib| kib * 1024)
    }

    /// Whether chunks in `flow` are delayed at all.
    pub(crate) fn delays(&self, flow: Flow) -> bool {
        (self.latency > 0 || self.jitter > 0) && self.direction.includes(flow)
    }
}

/// The random draws of a run: each chunk's delay and each connection's
/// reset. Seeded, the same traffic sees the same draws again.
#[derive(Debug)]
pub struct Draws {
    rng: StdRng,
}

impl Draws {
    /// Draws from `seed`, or from the operating system without one.
    pub fn new(seed: Option<u64>) -> Draws {
        let rng = match seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_rng(&mut rand::rng()),
        };
        Draws { rng }
    }

    /// `latency` ± a uniform draw within `jitter`, in microsecond steps.
    pub fn delay(&mut self, toxics: &Toxics) -> Duration {
        let latency_us = toxics.latency * 1000;
        if toxics.jitter == 0 {
            return Duration::from_micros(latency_us);
        }
        let spread = (toxics.jitter * 1000) as i64;
        let offset = self.rng.random_range(-spread..=spread);
        Duration::from_micros((latency_us as i64 + offset).max(0) as u64)
    }

    /// Whether a connection is picked for reset. The certain cases draw
    /// nothing, so they do not shift a seeded sequence.
    pub fn reset(&mut self, probability: f64) -> bool {
        if probability <= 0.0 {
            false
        } else if probability >= 1.0 {
            true
        } else {
            self.rng.random_bool(probability)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_body_is_all_off() {
        assert_eq!(Toxics::from_json(b"{}").unwrap(), Toxics::default());
    }

    #[test]
    fn wrong_type_names_its_field() {
        let err = Toxics::from_json(br#"{"latency": 10, "bandwidth": "fast"}"#).unwrap_err();
        assert_eq!(err.field, "bandwidth");
        assert!(err.message.contains("u64"), "{err}");
    }

    #[test]
    fn unknown_field_lists_the_known_ones() {
        let err = Toxics::from_json(br#"{"latncy": 10}"#).unwrap_err();
        assert_eq!(err.field, "latncy");
        assert!(err.message.contains("`latency`"), "{err}");
    }

    #[test]
    fn reset_above_one_is_refused() {
        let err = Toxics::from_json(br#"{"reset": 1.5}"#).unwrap_err();
        assert_eq!(err.field, "reset");
    }

    #[test]
    fn direction_limits_delay_and_cap() {
        let toxics = Toxics {
            latency: 5,
            bandwidth: Some(2),
            direction: Direction::Downstream,
            ..Toxics::default()
        };
        assert!(!toxics.delays(Flow::Up));
        assert!(toxics.delays(Flow::Down));
        assert_eq!(toxics.bytes_per_second(Flow::Up), None);
        assert_eq!(toxics.bytes_per_second(Flow::Down), Some(2048));
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        let toxics = Toxics {
            latency: 10,
            jitter: 4,
            ..Toxics::default()
        };
        let mut draws = Draws::new(Some(1));
        for _ in 0..1000 {
            let delay = draws.delay(&toxics);
            assert!((6..=14).contains(&delay.as_millis()), "{delay:?}");
        }
    }
}
