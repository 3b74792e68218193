//! `clock-skew`: mythical-server's log records carry a clock that runs ten
//! minutes ahead, as the original's TIMESHIFT setting shifted them. Nothing
//! fails; the log lines of a request land far from its trace, and a
//! time-bound search for a trace's logs finds nothing.

use std::time::Duration;

use super::{FaultKind, Switchboard};

pub const KIND: FaultKind = FaultKind {
    name: "clock-skew",
    service: "mythical-server",
    summary: "mythical-server's log timestamps run ten minutes ahead of its traces",
    default_rate: 1.0,
};

/// How far ahead the skewed clock runs.
pub const AHEAD: Duration = Duration::from_secs(600);

/// What to add to a log record's timestamp now.
pub fn shift(faults: &Switchboard) -> Duration {
    if faults.is_on(&KIND) {
        AHEAD
    } else {
        Duration::ZERO
    }
}
