//! What the lab's tests run against: a real PostgreSQL started from the
//! machine's binaries, and an OTLP receiver that keeps what exporters send.
//! Nothing here imitates a component the lab ships.

mod images;
mod otlp;
mod postgres;

pub use images::{LAB_IMAGE, POSTGRES_IMAGE, build_lab_image, build_postgres_image};
pub use otlp::{
    OtlpReceiver, ReceivedLog, ReceivedMetric, ReceivedSpan, RunningReceiver, hex, render,
};
pub use postgres::{TestPostgres, find_bindir, free_port};
