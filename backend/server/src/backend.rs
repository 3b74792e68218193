//! The backend as one value: the store, the write-ahead log, the limits,
//! and the one `ingest` every receiver calls.

use std::path::Path;
use std::sync::Mutex;

use lab_ingest::otlp::LabelPolicy;

use crate::ingest::{Added, IngestError, Payload};
use crate::params::now_nanos;
use crate::store::{Limits, Store};
use crate::wal::{self, ReplayReport, SegmentLimits, Wal};

pub struct Backend {
    store: Store,
    wal: Option<Mutex<Wal>>,
    policy: LabelPolicy,
    limits: Limits,
}

impl Backend {
    /// Opens the backend; with a data folder, replays its write-ahead log
    /// first (a record that no longer decodes is skipped and counted).
    pub fn open(
        data_dir: Option<&Path>,
        limits: Limits,
        policy: LabelPolicy,
    ) -> std::io::Result<(Backend, Option<ReplayReport>)> {
        let store = Store::default();
        let mut report = None;
        let wal = match data_dir {
            Some(dir) => {
                let wal_dir = dir.join("wal");
                let cutoff_ms = (now_nanos() - limits.retention.as_nanos() as i64) / 1_000_000;
                let replayed = wal::replay(&wal_dir, |kind, received_ms, bytes| {
                    if received_ms < cutoff_ms {
                        return;
                    }
                    let prepared =
                        Payload::from_record(kind, bytes).and_then(|p| p.prepare(&policy));
                    match prepared {
                        Ok(prepared) => {
                            prepared.store(&store);
                        }
                        Err(err) => tracing::warn!("skipping a write-ahead log record: {err}"),
                    }
                })?;
                report = Some(replayed);
                Some(Mutex::new(Wal::open(&wal_dir, SegmentLimits::default())?))
            }
            None => None,
        };
        let backend = Backend {
            store,
            wal,
            policy,
            limits,
        };
        backend.store.enforce(&backend.limits, now_nanos());
        Ok((backend, report))
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Decodes, logs and stores one payload. A payload that does not
    /// decode is refused whole, before anything is written.
    pub fn ingest(&self, payload: Payload) -> Result<Added, IngestError> {
        let prepared = payload.prepare(&self.policy)?;
        if let Some(wal) = &self.wal {
            let (kind, bytes) = payload.to_record();
            wal.lock()
                .unwrap()
                .append(kind, now_nanos() / 1_000_000, &bytes)?;
        }
        Ok(prepared.store(&self.store))
    }

    /// Flushes the log to disk (every second) and applies the limits.
    pub fn maintain(&self) -> std::io::Result<()> {
        let now = now_nanos();
        if let Some(wal) = &self.wal {
            let mut wal = wal.lock().unwrap();
            wal.sync()?;
            let cutoff_ms = (now - self.limits.retention.as_nanos() as i64) / 1_000_000;
            // The log keeps what memory keeps, with room for its framing.
            wal.enforce(cutoff_ms, (self.limits.max_bytes as u64).saturating_mul(2))?;
        }
        self.store.enforce(&self.limits, now);
        Ok(())
    }

    /// Writes out the log (at shutdown).
    pub fn sync(&self) -> std::io::Result<()> {
        match &self.wal {
            Some(wal) => wal.lock().unwrap().sync(),
            None => Ok(()),
        }
    }

    pub fn disk_bytes(&self) -> u64 {
        self.wal
            .as_ref()
            .map_or(0, |wal| wal.lock().unwrap().disk_bytes())
    }
}
