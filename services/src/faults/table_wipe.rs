//! `table-wipe`: mythical-server runs the original's teardown and drops
//! the beasts' tables — and, unlike the original, does not create them
//! again until the fault is cleared. Every statement then fails with
//! `relation "<beast>" does not exist` (42P01); the server's own
//! `DROP TABLE` spans show who did it.

use std::sync::atomic::{AtomicBool, Ordering};

use super::{FaultKind, Switchboard};

pub const KIND: FaultKind = FaultKind {
    name: "table-wipe",
    service: "mythical-server",
    summary: "mythical-server drops the beasts' tables (the original's teardown) and leaves them dropped",
    default_rate: 1.0,
};

/// Whether the tables are dropped now.
#[derive(Debug, Default)]
pub struct Wiped(AtomicBool);

/// What the request path must do about the tables first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// The fault was switched on: drop them.
    Drop,
    /// The fault was cleared: create them again.
    Restore,
}

impl Wiped {
    /// Claims the transition the switch asks for, once.
    pub fn action(&self, faults: &Switchboard) -> Action {
        let on = faults.is_on(&KIND);
        match (on, self.0.load(Ordering::Acquire)) {
            (true, false)
                if self
                    .0
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok() =>
            {
                Action::Drop
            }
            (false, true)
                if self
                    .0
                    .compare_exchange(true, false, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok() =>
            {
                Action::Restore
            }
            _ => Action::Nothing,
        }
    }
}
