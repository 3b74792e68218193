//! The backend as one value: the store, the write-ahead log, the limits,
//! the span metrics generator, and the one `ingest` every receiver calls.

use std::path::Path;
use std::sync::Mutex;

use lab_ingest::otlp::LabelPolicy;

use crate::generate::{Generator, GeneratorConfig, GeneratorStats};
use crate::ingest::{Added, IngestError, Payload, Prepared};
use crate::params::now_nanos;
use crate::store::{Limits, Store};
use crate::wal::{self, ReplayReport, SegmentLimits, Wal};

pub struct Backend {
    store: Store,
    wal: Option<Mutex<Wal>>,
    policy: LabelPolicy,
    limits: Limits,
    /// `None`: no span metrics, service graphs or autologs.
    generator: Option<Mutex<Generator>>,
}

/// Maps a payload, with the autologs of its spans when generating.
fn prepare(
    payload: &Payload,
    policy: &LabelPolicy,
    generating: bool,
) -> Result<Prepared, IngestError> {
    let prepared = payload.prepare(policy)?;
    Ok(if generating {
        prepared.with_autologs()
    } else {
        prepared
    })
}

impl Backend {
    /// Opens the backend; with a data folder, replays its write-ahead log
    /// first (a record that no longer decodes is skipped and counted).
    /// Replayed spans do not feed the generator: what it wrote before the
    /// restart comes back as stored samples, and its counters start again
    /// from 0, which `rate()` reads as a counter reset.
    pub fn open(
        data_dir: Option<&Path>,
        limits: Limits,
        policy: LabelPolicy,
        generator: Option<GeneratorConfig>,
    ) -> std::io::Result<(Backend, Option<ReplayReport>)> {
        let store = Store::default();
        let generating = generator.is_some();
        let mut report = None;
        let wal = match data_dir {
            Some(dir) => {
                let wal_dir = dir.join("wal");
                let cutoff_ms = (now_nanos() - limits.retention.as_nanos() as i64) / 1_000_000;
                let replayed = wal::replay(&wal_dir, |kind, received_ms, bytes| {
                    if received_ms < cutoff_ms {
                        return;
                    }
                    let prepared = Payload::from_record(kind, bytes)
                        .and_then(|p| prepare(&p, &policy, generating));
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
            generator: generator
                .map(|config| Mutex::new(Generator::new(config, now_nanos() / 1_000_000))),
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
    /// decode is refused whole, before anything is written. Spans feed the
    /// generator once they are in the log.
    pub fn ingest(&self, payload: Payload) -> Result<Added, IngestError> {
        let prepared = prepare(&payload, &self.policy, self.generator.is_some())?;
        if let Some(wal) = &self.wal {
            let (kind, bytes) = payload.to_record();
            wal.lock()
                .unwrap()
                .append(kind, now_nanos() / 1_000_000, &bytes)?;
        }
        if let Some(generator) = &self.generator
            && !prepared.spans().is_empty()
        {
            generator
                .lock()
                .unwrap()
                .observe(prepared.spans(), now_nanos() / 1_000_000);
        }
        Ok(prepared.store(&self.store))
    }

    /// How often [`Backend::collect_generated`] should run; `None` when
    /// nothing is generated.
    pub fn collection_interval(&self) -> Option<std::time::Duration> {
        self.generator
            .as_ref()
            .map(|g| g.lock().unwrap().config().collection_interval)
    }

    /// Writes the generator's series as they are now into the log and the
    /// store, as one payload stamped with the collection time.
    pub fn collect_generated(&self) -> Result<Added, IngestError> {
        let Some(generator) = &self.generator else {
            return Ok(Added::default());
        };
        let samples = generator.lock().unwrap().collect(now_nanos() / 1_000_000);
        if samples.samples.is_empty() {
            return Ok(Added::default());
        }
        self.ingest(Payload::Generated(samples))
    }

    pub fn generator_stats(&self) -> Option<GeneratorStats> {
        self.generator.as_ref().map(|g| g.lock().unwrap().stats())
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
