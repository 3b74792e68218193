//! What the lab's tests run against: a real PostgreSQL started from the
//! machine's binaries, an OTLP receiver that keeps what exporters send, and
//! the scenario walk over the `lab` binary; and the benchmarks' sections
//! of BENCHMARKS.md (`Section`, `splice`).
//! Nothing here imitates a component the lab ships.

mod images;
mod otlp;
mod postgres;
mod section;
mod walk;

pub use images::{LAB_IMAGE, POSTGRES_IMAGE, build_lab_image, build_postgres_image};
pub use otlp::{
    OtlpReceiver, ReceivedLog, ReceivedMetric, ReceivedSpan, RunningReceiver, hex, render,
};
pub use postgres::{TestPostgres, find_bindir, free_port};
pub use section::{Goal, Section, SpliceError, splice, thousands};
pub use walk::{Down, LabCli, Walk, walk, walk_fresh};
