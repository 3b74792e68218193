//! The backend's write-ahead log: every payload received (OTLP as
//! protobuf, Loki push as JSON, scrapes as text, profile uploads as their
//! body with the API and query they came with), and each collection of
//! the span metrics generator, appended to segment files in the state
//! folder, and replayed through the same ingest path at start.
//!
//! Record: `len u32 | crc32 u32 | kind u8 | received_ms i64 | payload`, all
//! little-endian, the CRC over kind, time and payload. A torn or corrupt
//! record ends the replay of its segment: what came before it is kept, and
//! nothing after a crash is read as data.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// What a record holds, so replay knows which decoder to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    OtlpTraces = 1,
    OtlpLogs = 2,
    OtlpMetrics = 3,
    LokiPush = 4,
    Scrape = 5,
    /// A profile upload: [`crate::ingest::ProfileUpload`] as protobuf.
    Profiles = 6,
    /// One collection of the span metrics and service graphs:
    /// [`crate::generate::GeneratedSamples`] as JSON.
    Generated = 7,
}

impl RecordKind {
    fn from_byte(byte: u8) -> Option<RecordKind> {
        Some(match byte {
            1 => RecordKind::OtlpTraces,
            2 => RecordKind::OtlpLogs,
            3 => RecordKind::OtlpMetrics,
            4 => RecordKind::LokiPush,
            5 => RecordKind::Scrape,
            6 => RecordKind::Profiles,
            7 => RecordKind::Generated,
            _ => return None,
        })
    }
}

const HEADER: usize = 4 + 4 + 1 + 8;
/// A record larger than this is corruption, not data (OTLP exports are
/// a few MB at most).
const MAX_RECORD: usize = 256 * 1024 * 1024;

/// How much a segment may hold before the next one starts.
#[derive(Debug, Clone, Copy)]
pub struct SegmentLimits {
    pub max_bytes: u64,
    pub max_age_ms: i64,
}

impl Default for SegmentLimits {
    fn default() -> Self {
        SegmentLimits {
            max_bytes: 64 * 1024 * 1024,
            max_age_ms: 10 * 60 * 1000,
        }
    }
}

/// The appending side.
pub struct Wal {
    dir: PathBuf,
    limits: SegmentLimits,
    writer: Option<BufWriter<File>>,
    segment_start_ms: i64,
    segment_bytes: u64,
}

/// What a replay found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    pub segments: usize,
    pub records: usize,
    /// Segments whose tail was torn or corrupt (replay stopped there).
    pub damaged_segments: Vec<PathBuf>,
}

fn segment_name(start_ms: i64) -> String {
    format!("{start_ms:020}.wal")
}

/// Segment files in time order, with their start times.
fn segments(dir: &Path) -> io::Result<Vec<(i64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let start = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<i64>().ok());
        if let Some(start) = start {
            found.push((start, path));
        }
    }
    found.sort();
    Ok(found)
}

/// Reads every intact record of every segment in `dir`, oldest first.
pub fn replay(
    dir: &Path,
    mut visit: impl FnMut(RecordKind, i64, &[u8]),
) -> io::Result<ReplayReport> {
    let mut report = ReplayReport::default();
    if !dir.exists() {
        return Ok(report);
    }
    for (_, path) in segments(dir)? {
        report.segments += 1;
        let mut reader = BufReader::new(File::open(&path)?);
        let mut payload = Vec::new();
        loop {
            let mut header = [0u8; HEADER];
            match read_full(&mut reader, &mut header)? {
                0 => break,
                n if n < HEADER => {
                    report.damaged_segments.push(path.clone());
                    break;
                }
                _ => {}
            }
            let len = u32::from_le_bytes(header[0..4].try_into().unwrap()) as usize;
            let crc = u32::from_le_bytes(header[4..8].try_into().unwrap());
            let kind = RecordKind::from_byte(header[8]);
            let received_ms = i64::from_le_bytes(header[9..17].try_into().unwrap());
            if len > MAX_RECORD || kind.is_none() {
                report.damaged_segments.push(path.clone());
                break;
            }
            payload.resize(len, 0);
            if read_full(&mut reader, &mut payload)? < len {
                report.damaged_segments.push(path.clone());
                break;
            }
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&header[8..]);
            hasher.update(&payload);
            if hasher.finalize() != crc {
                report.damaged_segments.push(path.clone());
                break;
            }
            report.records += 1;
            visit(kind.expect("checked above"), received_ms, &payload);
        }
    }
    Ok(report)
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl Wal {
    /// Appends go to a new segment; earlier segments stay as they are (a
    /// damaged tail is never appended after).
    pub fn open(dir: &Path, limits: SegmentLimits) -> io::Result<Wal> {
        fs::create_dir_all(dir)?;
        Ok(Wal {
            dir: dir.to_owned(),
            limits,
            writer: None,
            segment_start_ms: 0,
            segment_bytes: 0,
        })
    }

    pub fn append(&mut self, kind: RecordKind, received_ms: i64, payload: &[u8]) -> io::Result<()> {
        let rotate = self.writer.is_none()
            || self.segment_bytes >= self.limits.max_bytes
            || received_ms - self.segment_start_ms >= self.limits.max_age_ms;
        if rotate {
            self.start_segment(received_ms)?;
        }
        let mut header = [0u8; HEADER];
        header[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        header[8] = kind as u8;
        header[9..17].copy_from_slice(&received_ms.to_le_bytes());
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&header[8..]);
        hasher.update(payload);
        header[4..8].copy_from_slice(&hasher.finalize().to_le_bytes());
        let writer = self.writer.as_mut().expect("a segment is open");
        writer.write_all(&header)?;
        writer.write_all(payload)?;
        self.segment_bytes += (HEADER + payload.len()) as u64;
        Ok(())
    }

    fn start_segment(&mut self, start_ms: i64) -> io::Result<()> {
        self.sync()?;
        // Never reuse a name: a segment started in the same millisecond as
        // the last one gets the next free one.
        let mut start = start_ms.max(self.segment_start_ms + 1);
        while self.dir.join(segment_name(start)).exists() {
            start += 1;
        }
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(self.dir.join(segment_name(start)))?;
        self.writer = Some(BufWriter::with_capacity(256 * 1024, file));
        self.segment_start_ms = start;
        self.segment_bytes = 0;
        Ok(())
    }

    /// Writes out what is buffered and asks the disk to keep it: called
    /// every second, so a crash loses at most the last second.
    pub fn sync(&mut self) -> io::Result<()> {
        if let Some(writer) = self.writer.as_mut() {
            writer.flush()?;
            writer.get_ref().sync_data()?;
        }
        Ok(())
    }

    /// Deletes segments wholly older than `cutoff_ms`, then the oldest
    /// while all of them together exceed `max_bytes`. The open segment is
    /// never deleted.
    pub fn enforce(&mut self, cutoff_ms: i64, max_bytes: u64) -> io::Result<()> {
        let all = segments(&self.dir)?;
        let current = self.dir.join(segment_name(self.segment_start_ms));
        let mut sizes: Vec<(i64, PathBuf, u64)> = all
            .into_iter()
            .map(|(start, path)| {
                let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                (start, path, size)
            })
            .collect();
        let mut total: u64 = sizes.iter().map(|s| s.2).sum();
        let mut i = 0;
        while i + 1 < sizes.len() {
            // A segment ends where the next one starts.
            let ends = sizes[i + 1].0;
            let (_, path, size) = &sizes[i];
            if *path != current && (ends < cutoff_ms || total > max_bytes) {
                fs::remove_file(path)?;
                total -= size;
                sizes.remove(i);
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    pub fn disk_bytes(&self) -> u64 {
        segments(&self.dir)
            .map(|all| {
                all.iter()
                    .map(|(_, p)| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(dir: &Path) -> (Vec<(RecordKind, i64, Vec<u8>)>, ReplayReport) {
        let mut seen = Vec::new();
        let report = replay(dir, |k, t, p| seen.push((k, t, p.to_vec()))).unwrap();
        (seen, report)
    }

    #[test]
    fn records_come_back_in_order_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(
            dir.path(),
            SegmentLimits {
                max_bytes: 64,
                max_age_ms: 1000,
            },
        )
        .unwrap();
        for i in 0..10i64 {
            wal.append(RecordKind::OtlpTraces, 1000 + i * 10, &[i as u8; 40])
                .unwrap();
        }
        wal.sync().unwrap();
        let (seen, report) = collect(dir.path());
        assert_eq!(seen.len(), 10);
        assert!(report.segments > 1, "{report:?}");
        assert!(report.damaged_segments.is_empty());
        assert_eq!(seen[3], (RecordKind::OtlpTraces, 1030, vec![3; 40]));
    }

    #[test]
    fn a_torn_or_corrupt_tail_keeps_everything_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), SegmentLimits::default()).unwrap();
        for i in 0..5u8 {
            wal.append(RecordKind::LokiPush, 5, &[i; 100]).unwrap();
        }
        wal.sync().unwrap();
        let (_, path) = segments(dir.path()).unwrap().remove(0);
        let full = fs::read(&path).unwrap();

        // Torn: the last record half written.
        fs::write(&path, &full[..full.len() - 50]).unwrap();
        let (seen, report) = collect(dir.path());
        assert_eq!(seen.len(), 4);
        assert_eq!(report.damaged_segments, vec![path.clone()]);

        // Corrupt: a flipped byte inside the third record's payload.
        let mut flipped = full.clone();
        let third = 2 * (HEADER + 100) + HEADER + 10;
        flipped[third] ^= 0xff;
        fs::write(&path, &flipped).unwrap();
        let (seen, _) = collect(dir.path());
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn old_and_excess_segments_are_deleted_but_never_the_open_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(
            dir.path(),
            SegmentLimits {
                max_bytes: 1,
                max_age_ms: i64::MAX,
            },
        )
        .unwrap();
        for t in [1000, 2000, 3000, 4000] {
            wal.append(RecordKind::OtlpLogs, t, &[0; 100]).unwrap();
        }
        wal.sync().unwrap();
        assert_eq!(segments(dir.path()).unwrap().len(), 4);
        wal.enforce(2500, u64::MAX).unwrap();
        let left: Vec<i64> = segments(dir.path()).unwrap().iter().map(|s| s.0).collect();
        assert_eq!(left, [2000, 3000, 4000]);
        wal.enforce(0, 150).unwrap();
        let left: Vec<i64> = segments(dir.path()).unwrap().iter().map(|s| s.0).collect();
        assert_eq!(
            left,
            [4000],
            "the open segment stays even over the size bound"
        );
    }
}
