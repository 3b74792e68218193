//! The Postgres side of the lab: the owlbear schema (one table per beast,
//! `name VARCHAR(50) UNIQUE NOT NULL`), its migrations, the data access
//! mythical-server uses, and the catalogue queries diagnosis uses.
//!
//! Nothing here knows about HTTP or telemetry; errors keep Postgres' own
//! message, SQLSTATE, table, column and constraint.

mod beast;
pub mod binaries;
pub mod catalogue;
mod error;
mod store;

pub use beast::{Beast, Operation, UnknownBeast};
pub use error::{DbError, StorageError};
pub use store::{DbConfig, Store};
