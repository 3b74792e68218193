//! `missing-name`: mythical-requester POSTs a body with no `name`. The
//! server passes the missing name on to the INSERT, as the original does,
//! and Postgres refuses it with the same 23502 as `null-name`; here the
//! requester's span shows no name was sent: the requester is at fault.

use serde_json::{Value, json};

use super::{FaultKind, Switchboard};

pub const KIND: FaultKind = FaultKind {
    name: "missing-name",
    service: "mythical-requester",
    summary: "mythical-requester sends POST bodies without a name",
    default_rate: 0.1,
};

/// The JSON body of a POST meant to create `name`.
pub fn post_body(faults: &Switchboard, name: &str) -> Value {
    if faults.fires(&KIND) {
        json!({})
    } else {
        json!({ "name": name })
    }
}
