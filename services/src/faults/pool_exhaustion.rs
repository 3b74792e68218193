//! `pool-exhaustion`: each request of mythical-server takes a connection
//! from its pool, opens a transaction on it and never gives it back — a
//! forgotten transaction in a code path. Once the pool's connections are
//! all held, every request waits for one and fails with "pool timed out",
//! while Postgres itself answers fine and shows the server's sessions
//! `idle in transaction`.

use std::sync::Mutex;

use mythical_storage::Store;
use sqlx::pool::PoolConnection;

use super::{FaultKind, Switchboard};

pub const KIND: FaultKind = FaultKind {
    name: "pool-exhaustion",
    service: "mythical-server",
    summary: "mythical-server leaks a pooled connection, in an open transaction, per request",
    default_rate: 1.0,
};

/// The connections the leak holds.
#[derive(Debug, Default)]
pub struct Leaked {
    held: Mutex<Vec<PoolConnection<sqlx::Postgres>>>,
}

impl Leaked {
    /// Leaks one more connection when the fault fires; returns them all to
    /// Postgres (closed) once it is off.
    pub async fn on_request(&self, faults: &Switchboard, store: &Store) {
        if faults.fires(&KIND) {
            let Ok(Ok(mut conn)) = tokio::time::timeout(
                std::time::Duration::from_millis(200),
                store.pool().acquire(),
            )
            .await
            else {
                return;
            };
            if sqlx::query("BEGIN").execute(&mut *conn).await.is_ok() {
                self.held.lock().unwrap().push(conn);
            }
        } else if !faults.is_on(&KIND) {
            let held: Vec<_> = std::mem::take(&mut *self.held.lock().unwrap());
            for conn in held {
                // Closed, not returned: a connection inside a transaction
                // must not serve another request.
                let _ = conn.detach();
            }
        }
    }
}
