//! Runtime fault switches. Each kind is one file holding its definition
//! (`pub const KIND: FaultKind`) and the one place where it changes the
//! service's behaviour; the build script lists the files that define a
//! `KIND` in [`ALL`], and the [`Switchboard`] knows kinds only by their
//! definition, so a new kind is a new file here and its call site.

include!(concat!(env!("OUT_DIR"), "/fault_kinds.rs"));

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::RngExt;
use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// What a fault kind is, for the admin API and the lab's catalogue.
#[derive(Debug)]
pub struct FaultKind {
    /// The kind's id, e.g. `null-name`.
    pub name: &'static str,
    /// The service that honours the switch.
    pub service: &'static str,
    /// One sentence on what goes wrong.
    pub summary: &'static str,
    /// The fraction of requests affected when no rate is given.
    pub default_rate: f64,
}

/// The kinds `service` honours.
pub fn honoured_by(service: &str) -> Vec<&'static FaultKind> {
    ALL.iter()
        .copied()
        .filter(|k| k.service == service)
        .collect()
}

/// The kind named `name`, whichever service honours it.
pub fn named(name: &str) -> Option<&'static FaultKind> {
    ALL.iter().copied().find(|k| k.name == name)
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultError {
    #[error("unknown fault kind `{kind}` for this service; it knows: {known}")]
    UnknownKind { kind: String, known: String },
    #[error("rate {0} is out of range: give a fraction of requests from 0 to 1")]
    BadRate(f64),
    #[error(
        "bad fault list `{0}`: write kind or kind=rate, separated by commas (e.g. null-name=0.1)"
    )]
    BadSpec(String),
}

#[derive(Debug, Clone, Copy)]
struct Setting {
    rate: f64,
    until: Option<Instant>,
    since: SystemTime,
}

/// One kind as the admin API reports it, and as the lab reads it back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FaultStatus {
    pub kind: Cow<'static, str>,
    pub service: Cow<'static, str>,
    pub summary: Cow<'static, str>,
    pub active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Unix seconds when the switch was turned on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_seconds: Option<u64>,
}

/// `GET /admin/faults`: every kind one service knows, with its state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FaultList {
    pub service: Cow<'static, str>,
    pub faults: Vec<FaultStatus>,
}

/// The fault switches of one service.
#[derive(Debug)]
pub struct Switchboard {
    known: Vec<&'static FaultKind>,
    settings: RwLock<HashMap<&'static str, Setting>>,
    /// Lets the request path skip the lock while nothing is switched on.
    any_on: AtomicBool,
}

impl Switchboard {
    pub fn new(known: Vec<&'static FaultKind>) -> Switchboard {
        Switchboard {
            known,
            settings: RwLock::new(HashMap::new()),
            any_on: AtomicBool::new(false),
        }
    }

    pub fn known(&self) -> &[&'static FaultKind] {
        &self.known
    }

    fn kind(&self, name: &str) -> Result<&'static FaultKind, FaultError> {
        self.known
            .iter()
            .copied()
            .find(|k| k.name == name)
            .ok_or_else(|| FaultError::UnknownKind {
                kind: name.to_owned(),
                known: self
                    .known
                    .iter()
                    .map(|k| k.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Turns a kind on at `rate` (its default when `None`) for `duration`
    /// (until cleared when `None`).
    pub fn set(
        &self,
        name: &str,
        rate: Option<f64>,
        duration: Option<Duration>,
    ) -> Result<FaultStatus, FaultError> {
        let kind = self.kind(name)?;
        let rate = rate.unwrap_or(kind.default_rate);
        if !(0.0..=1.0).contains(&rate) || rate.is_nan() {
            return Err(FaultError::BadRate(rate));
        }
        let setting = Setting {
            rate,
            until: duration.map(|d| Instant::now() + d),
            since: SystemTime::now(),
        };
        let mut settings = self.settings.write().unwrap();
        settings.insert(kind.name, setting);
        self.any_on.store(true, Ordering::Release);
        Ok(status(kind, Some(&setting)))
    }

    /// Turns a kind off; false when it was not on.
    pub fn clear(&self, name: &str) -> Result<bool, FaultError> {
        let kind = self.kind(name)?;
        let mut settings = self.settings.write().unwrap();
        let was_on = settings.remove(kind.name).is_some();
        self.any_on.store(!settings.is_empty(), Ordering::Release);
        Ok(was_on)
    }

    pub fn clear_all(&self) {
        self.settings.write().unwrap().clear();
        self.any_on.store(false, Ordering::Release);
    }

    /// Applies a list like `null-name=0.1,missing-name` (the
    /// `MYTHICAL_FAULTS` variable): kinds this service does not know are
    /// skipped, so one list can be given to both services.
    pub fn apply_spec(&self, spec: &str) -> Result<(), FaultError> {
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, rate) = match item.split_once('=') {
                Some((name, rate)) => {
                    let rate = rate
                        .trim()
                        .parse::<f64>()
                        .map_err(|_| FaultError::BadSpec(spec.to_owned()))?;
                    (name.trim(), Some(rate))
                }
                None => (item, None),
            };
            match self.set(name, rate, None) {
                Ok(_) | Err(FaultError::UnknownKind { .. }) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }

    /// Whether this request is one the fault hits: a draw against the
    /// kind's rate while it is on and not expired.
    /// Whether the kind is switched on (and not expired), whatever its
    /// rate: for faults that hold a state rather than hit single requests.
    pub fn is_on(&self, kind: &FaultKind) -> bool {
        if !self.any_on.load(Ordering::Acquire) {
            return false;
        }
        let settings = self.settings.read().unwrap();
        settings
            .get(kind.name)
            .is_some_and(|s| s.until.is_none_or(|until| Instant::now() < until))
    }

    pub fn fires(&self, kind: &FaultKind) -> bool {
        if !self.any_on.load(Ordering::Acquire) {
            return false;
        }
        let rate = {
            let settings = self.settings.read().unwrap();
            match settings.get(kind.name) {
                Some(s) if s.until.is_none_or(|until| Instant::now() < until) => s.rate,
                Some(_) => {
                    drop(settings);
                    let _ = self.clear(kind.name);
                    return false;
                }
                None => return false,
            }
        };
        rate > 0.0 && crate::random::with(|rng| rng.random_range(0.0..1.0)) < rate
    }

    /// Every known kind with its state.
    pub fn statuses(&self) -> Vec<FaultStatus> {
        let now = Instant::now();
        let settings = self.settings.read().unwrap();
        self.known
            .iter()
            .map(|kind| {
                let setting = settings
                    .get(kind.name)
                    .filter(|s| s.until.is_none_or(|until| now < until));
                status(kind, setting)
            })
            .collect()
    }
}

fn status(kind: &'static FaultKind, setting: Option<&Setting>) -> FaultStatus {
    FaultStatus {
        kind: Cow::Borrowed(kind.name),
        service: Cow::Borrowed(kind.service),
        summary: Cow::Borrowed(kind.summary),
        active: setting.is_some(),
        rate: setting.map(|s| s.rate),
        since: setting.and_then(|s| s.since.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())),
        expires_in_seconds: setting
            .and_then(|s| s.until)
            .map(|until| until.saturating_duration_since(Instant::now()).as_secs()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_switch_fires_at_its_rate_and_stops_when_cleared() {
        let board = Switchboard::new(honoured_by("mythical-server"));
        assert!(!board.fires(&null_name::KIND));
        board.set("null-name", Some(1.0), None).unwrap();
        assert!((0..100).all(|_| board.fires(&null_name::KIND)));
        board.set("null-name", Some(0.0), None).unwrap();
        assert!((0..100).all(|_| !board.fires(&null_name::KIND)));
        board.set("null-name", Some(0.5), None).unwrap();
        let hits = (0..10_000)
            .filter(|_| board.fires(&null_name::KIND))
            .count();
        assert!(
            (4_000..6_000).contains(&hits),
            "{hits} of 10000 at rate 0.5"
        );
        assert!(board.clear("null-name").unwrap());
        assert!(!board.fires(&null_name::KIND));
    }

    #[test]
    fn an_expired_switch_turns_itself_off() {
        let board = Switchboard::new(honoured_by("mythical-server"));
        board
            .set("null-name", Some(1.0), Some(Duration::from_millis(1)))
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(!board.fires(&null_name::KIND));
        let null = board.statuses().into_iter().find(|s| s.kind == "null-name");
        assert!(!null.unwrap().active);
    }

    #[test]
    fn bad_kinds_rates_and_lists_are_refused_with_the_way_out() {
        let board = Switchboard::new(honoured_by("mythical-server"));
        let err = board.set("missing-name", None, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown fault kind `missing-name` for this service; it knows: clock-skew, cpu-hog, memory-leak, null-name, pool-exhaustion, table-wipe"
        );
        assert_eq!(
            board.set("null-name", Some(1.5), None).unwrap_err(),
            FaultError::BadRate(1.5)
        );
        assert!(matches!(
            board.apply_spec("null-name=lots"),
            Err(FaultError::BadSpec(_))
        ));
        board.apply_spec("null-name, missing-name=0.3").unwrap();
        let null = board.statuses().into_iter().find(|s| s.kind == "null-name");
        assert_eq!(null.unwrap().rate, Some(0.1));
    }
}
