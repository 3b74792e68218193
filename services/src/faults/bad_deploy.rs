//! `bad-deploy`: the requester's version 2.0.0 ships a bug — its POST body
//! spells the field `Name` — while 1.9.2 keeps working. The server reads no
//! name and Postgres refuses the NULL (23502), but only for requests made
//! by 2.0.0: comparing errors by `service.version` finds the deploy.

use serde_json::{Value, json};

use super::{FaultKind, Switchboard};

pub const KIND: FaultKind = FaultKind {
    name: "bad-deploy",
    service: "mythical-requester",
    summary: "mythical-requester 2.0.0 sends its POST bodies with the field misspelt; 1.9.2 is fine",
    default_rate: 1.0,
};

/// The version 2.0.0 builds the body wrongly when the fault is on.
pub fn post_body(faults: &Switchboard, version: &str, body: Value) -> Value {
    if version != "2.0.0" || !faults.fires(&KIND) {
        return body;
    }
    match body.get("name") {
        Some(name) => json!({ "Name": name }),
        None => body,
    }
}
