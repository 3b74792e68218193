//! Profiles, the backend's fourth signal: what Pyroscope's clients send
//! (its push API's protobuf with pprof inside, and the older `/ingest`
//! API's pprof, `folded` and `lines` bodies) decoded into one model, a
//! store bounded by age and bytes, and the queries a flame graph needs:
//! stacks merged over a window for a label selector, as a tree, as
//! Pyroscope's flamebearer, and as top functions by self and total value.
//!
//! Pure: no I/O and no HTTP. Bad input is a [`DecodeError`] that says what
//! was wrong, never a panic.

pub mod ingest;
pub mod pprof;
pub mod push;
pub mod query;
pub mod store;

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::str::FromStr;

use lab_signals::{Labels, UnixNanos};

pub use query::{FlameNode, FlameTree, Flamebearer, FunctionCost, Selector};
pub use store::ProfileStore;

/// What a profile measures, in Pyroscope's five-part form
/// `name:sample type:sample unit:period type:period unit`, e.g.
/// `process_cpu:cpu:nanoseconds:cpu:nanoseconds`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProfileType {
    pub name: String,
    pub sample_type: String,
    pub sample_unit: String,
    pub period_type: String,
    pub period_unit: String,
}

impl ProfileType {
    /// CPU time in nanoseconds, what pyroscope-rs sends.
    pub fn cpu() -> ProfileType {
        ProfileType {
            name: "process_cpu".into(),
            sample_type: "cpu".into(),
            sample_unit: "nanoseconds".into(),
            period_type: "cpu".into(),
            period_unit: "nanoseconds".into(),
        }
    }
}

impl fmt::Display for ProfileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}:{}",
            self.name, self.sample_type, self.sample_unit, self.period_type, self.period_unit
        )
    }
}

impl FromStr for ProfileType {
    type Err = String;

    fn from_str(text: &str) -> Result<ProfileType, String> {
        let parts: Vec<&str> = text.split(':').collect();
        match parts.as_slice() {
            [name, sample_type, sample_unit, period_type, period_unit] if !name.is_empty() => {
                Ok(ProfileType {
                    name: (*name).to_owned(),
                    sample_type: (*sample_type).to_owned(),
                    sample_unit: (*sample_unit).to_owned(),
                    period_type: (*period_type).to_owned(),
                    period_unit: (*period_unit).to_owned(),
                })
            }
            _ => Err(format!(
                "profile type {text:?} is not name:sample type:sample unit:period type:period unit \
                 (like process_cpu:cpu:nanoseconds:cpu:nanoseconds)"
            )),
        }
    }
}

/// One stack and its value; frames are indexes into the profile's names,
/// the root (outermost caller) first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stack {
    pub frames: Vec<u32>,
    pub value: i64,
}

/// One profile of one series over one time range, function names interned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The series' labels (`service_name` among them); the profile name
    /// (`__name__`) is in [`Profile::profile_type`], not here.
    pub labels: Labels,
    pub profile_type: ProfileType,
    pub start: UnixNanos,
    pub end: UnixNanos,
    pub names: Vec<String>,
    pub stacks: Vec<Stack>,
}

impl Profile {
    /// The sum of all stacks' values.
    pub fn total(&self) -> i64 {
        self.stacks.iter().map(|s| s.value).sum()
    }

    /// The stacks as `root;…;leaf` strings with their values, for tests and
    /// debugging.
    pub fn folded(&self) -> Vec<(String, i64)> {
        self.stacks
            .iter()
            .map(|stack| {
                let names: Vec<&str> = stack
                    .frames
                    .iter()
                    .map(|&f| self.names[f as usize].as_str())
                    .collect();
                (names.join(";"), stack.value)
            })
            .collect()
    }
}

/// Builds a profile's name table and stacks.
#[derive(Debug, Default)]
pub(crate) struct StackBuilder {
    names: Vec<String>,
    index: HashMap<String, u32>,
    stacks: Vec<Stack>,
}

impl StackBuilder {
    pub(crate) fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.index.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.index.insert(name.to_owned(), id);
        id
    }

    pub(crate) fn push(&mut self, frames: Vec<u32>, value: i64) {
        if value != 0 && !frames.is_empty() {
            self.stacks.push(Stack { frames, value });
        }
    }

    pub(crate) fn finish(
        self,
        labels: Labels,
        profile_type: ProfileType,
        start: UnixNanos,
        end: UnixNanos,
    ) -> Profile {
        Profile {
            labels,
            profile_type,
            start,
            end,
            names: self.names,
            stacks: self.stacks,
        }
    }
}

/// A body that cannot be read as a profile, with what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the body looks gzip-compressed but does not inflate: {0}")]
    Gzip(String),
    #[error("the body inflates to more than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("not a pprof profile (protobuf): {0}")]
    PprofProtobuf(String),
    #[error("not a Pyroscope push request (push.v1.PushRequest protobuf): {0}")]
    PushProtobuf(String),
    #[error("invalid pprof profile: {0}")]
    Pprof(String),
    #[error("invalid push request: {0}")]
    Push(String),
    #[error("{format} body, line {line}: {reason}")]
    Text {
        format: &'static str,
        line: usize,
        reason: String,
    },
    #[error("invalid parameter {name:?}: {reason}")]
    Param { name: &'static str, reason: String },
    #[error("multipart body: {0}")]
    Multipart(String),
}

/// The most a compressed body may inflate to: pprof profiles of a busy
/// process are a few MB, so anything past this is a mistake or a bomb.
pub const MAX_INFLATED: usize = 64 * 1024 * 1024;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The body itself, or inflated when it starts with gzip's magic bytes (a
/// protobuf message or a text body never does: 0x1f is no valid field key).
pub fn maybe_gunzip(body: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, DecodeError> {
    if !body.starts_with(&GZIP_MAGIC) {
        return Ok(std::borrow::Cow::Borrowed(body));
    }
    let mut inflated = Vec::new();
    flate2::read::MultiGzDecoder::new(body)
        .take(MAX_INFLATED as u64 + 1)
        .read_to_end(&mut inflated)
        .map_err(|e| DecodeError::Gzip(e.to_string()))?;
    if inflated.len() > MAX_INFLATED {
        return Err(DecodeError::TooLarge {
            limit: MAX_INFLATED,
        });
    }
    Ok(std::borrow::Cow::Owned(inflated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_types_round_trip_and_bad_ones_say_the_form() {
        let cpu: ProfileType = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
            .parse()
            .unwrap();
        assert_eq!(cpu, ProfileType::cpu());
        assert_eq!(
            cpu.to_string(),
            "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
        );
        let err = "process_cpu".parse::<ProfileType>().unwrap_err();
        assert!(err.contains("name:sample type"), "{err}");
    }

    #[test]
    fn a_truncated_gzip_body_is_an_error_not_a_panic() {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(b"main;work 3\n").unwrap();
        let gz = encoder.finish().unwrap();
        assert_eq!(&*maybe_gunzip(&gz).unwrap(), b"main;work 3\n");
        let err = maybe_gunzip(&gz[..gz.len() - 6]).unwrap_err();
        assert!(matches!(err, DecodeError::Gzip(_)), "{err}");
    }
}
