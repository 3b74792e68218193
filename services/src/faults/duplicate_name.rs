//! `duplicate-name`: mythical-requester sends the same name with every
//! POST, as a client that retries with a fixed payload would. The first
//! INSERT of each beast succeeds; every later one is refused by the UNIQUE
//! constraint (23505, `duplicate key value violates unique constraint
//! "<beast>_name_key"`): the requester is at fault, not the schema.

use super::{FaultKind, Switchboard};

pub const KIND: FaultKind = FaultKind {
    name: "duplicate-name",
    service: "mythical-requester",
    summary: "mythical-requester sends the same name with every POST",
    default_rate: 1.0,
};

/// The name every faulty POST repeats.
pub const REPEATED: &str = "copper_Dolly_sheep";

/// The name a POST sends.
pub fn name_to_send(faults: &Switchboard, fresh: String) -> String {
    if faults.fires(&KIND) {
        REPEATED.to_owned()
    } else {
        fresh
    }
}
