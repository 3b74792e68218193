//! `null-name`: mythical-server swaps the name of a POST for NULL before the
//! INSERT, as the original does on 10% of POSTs. Postgres refuses it with
//! `null value in column "name" of relation "<beast>" violates not-null
//! constraint` (23502); the server span shows a name was received, the
//! database span shows NULL was bound: the server is at fault.

use super::{FaultKind, Switchboard};

pub const KIND: FaultKind = FaultKind {
    name: "null-name",
    service: "mythical-server",
    summary: "mythical-server replaces the name of a POST with NULL before the INSERT",
    default_rate: 0.1,
};

/// The name the server binds to the INSERT.
pub fn name_to_insert(faults: &Switchboard, received: Option<String>) -> Option<String> {
    if faults.fires(&KIND) { None } else { received }
}
