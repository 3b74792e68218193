//! What the lab's tests run against: a real PostgreSQL started from the
//! machine's binaries, and an OTLP receiver that keeps what exporters send.
//! Nothing here imitates a component the lab ships.

mod otlp;
mod postgres;

pub use otlp::{
    OtlpReceiver, ReceivedLog, ReceivedMetric, ReceivedSpan, RunningReceiver, hex, render,
};
pub use postgres::{TestPostgres, find_bindir, free_port};
