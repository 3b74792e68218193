//! `broken-propagation`: mythical-requester stops sending `traceparent`.
//! Every call still succeeds, but the server starts a new trace for each
//! request: the requester's traces end at its client span and the server's
//! begin with a root span of their own — orphans a trace view cannot join.

use super::{FaultKind, Switchboard};

pub const KIND: FaultKind = FaultKind {
    name: "broken-propagation",
    service: "mythical-requester",
    summary: "mythical-requester drops the traceparent header, so the server's spans start traces of their own",
    default_rate: 1.0,
};

/// Whether this call carries the trace context.
pub fn propagates(faults: &Switchboard) -> bool {
    !faults.fires(&KIND)
}
