//! Errors of the data access, keeping what Postgres itself said.

use serde::Serialize;

/// What Postgres reported about a failed statement, field for field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DbError {
    /// Postgres' primary message, verbatim (no `at line N` suffix).
    pub message: String,
    /// The five-character SQLSTATE, e.g. `23502` for a NOT NULL violation.
    pub sqlstate: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constraint: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Postgres ran the statement and refused it.
    #[error("{}", .0.message)]
    Database(DbError),
    /// Postgres could not be reached, or no connection was free in time.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The schema migrations could not be applied.
    #[error("schema migration failed: {0}")]
    Migration(String),
    /// Anything else the driver reported (a decoding error, a protocol error).
    #[error("database client error: {0}")]
    Client(String),
}

impl StorageError {
    /// Postgres' own report, when the failure came from Postgres.
    pub fn db_error(&self) -> Option<&DbError> {
        match self {
            StorageError::Database(db) => Some(db),
            _ => None,
        }
    }

    /// The SQLSTATE when Postgres reported one.
    pub fn sqlstate(&self) -> Option<&str> {
        self.db_error().map(|db| db.sqlstate.as_str())
    }
}

impl From<sqlx::Error> for StorageError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::Database(db) => {
                let pg = db.downcast_ref::<sqlx::postgres::PgDatabaseError>();
                StorageError::Database(DbError {
                    message: pg.message().to_owned(),
                    sqlstate: pg.code().to_owned(),
                    detail: pg.detail().map(str::to_owned),
                    table: pg.table().map(str::to_owned),
                    column: pg.column().map(str::to_owned),
                    constraint: pg.constraint().map(str::to_owned),
                })
            }
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => StorageError::Unavailable(err.to_string()),
            sqlx::Error::Migrate(m) => StorageError::Migration(m.to_string()),
            other => StorageError::Client(other.to_string()),
        }
    }
}
