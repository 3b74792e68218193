//! pprof's `profile.proto` (the fields a flame graph needs; mappings and
//! the rest are skipped as unknown fields) and its mapping into
//! [`Profile`]s: one per sample type, stacks turned root first, inlined
//! frames expanded.

use std::collections::HashMap;

use lab_signals::{Labels, UnixNanos};
use prost::Message;

use crate::{DecodeError, Profile, ProfileType, StackBuilder, maybe_gunzip};

#[derive(Clone, PartialEq, prost::Message)]
pub struct PprofProfile {
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    pub period: i64,
}

#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct ValueType {
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// Leaf first, as pprof orders them.
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Location {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "3")]
    pub address: u64,
    /// Innermost (inlined) function first.
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
}

#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Line {
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    #[prost(int64, tag = "2")]
    pub line: i64,
}

#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Function {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(int64, tag = "2")]
    pub name: i64,
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    #[prost(int64, tag = "4")]
    pub filename: i64,
}

/// Decodes a pprof body (gzip-compressed or not) into one profile per
/// sample type, named `name` (the `__name__`, e.g. `process_cpu`).
/// The profile's own `time_nanos`/`duration_nanos` give its range unless
/// `range` overrides them.
pub fn decode(
    body: &[u8],
    name: &str,
    labels: &Labels,
    range: Option<(UnixNanos, UnixNanos)>,
) -> Result<Vec<Profile>, DecodeError> {
    let body = maybe_gunzip(body)?;
    let pprof =
        PprofProfile::decode(&*body).map_err(|e| DecodeError::PprofProtobuf(e.to_string()))?;
    to_profiles(&pprof, name, labels, range)
}

fn string<'a>(pprof: &'a PprofProfile, index: i64, what: &str) -> Result<&'a str, DecodeError> {
    usize::try_from(index)
        .ok()
        .and_then(|i| pprof.string_table.get(i))
        .map(String::as_str)
        .ok_or_else(|| {
            DecodeError::Pprof(format!(
                "{what} names string {index}, but the string table has {} entries",
                pprof.string_table.len()
            ))
        })
}

/// The `__name__` Pyroscope would give a pprof without one: CPU for CPU
/// time or samples, memory for allocations and heap.
pub fn default_name(pprof: &PprofProfile) -> &'static str {
    let first = pprof
        .sample_type
        .first()
        .and_then(|t| string(pprof, t.r#type, "sample type").ok())
        .unwrap_or("");
    match first {
        "cpu" | "samples" | "" => "process_cpu",
        t if t.starts_with("alloc_") || t.starts_with("inuse_") => "memory",
        "goroutine" | "goroutines" => "goroutine",
        "contentions" | "delay" => "mutex",
        _ => "process_cpu",
    }
}

/// Maps a decoded pprof message into profiles, checking every reference.
pub fn to_profiles(
    pprof: &PprofProfile,
    name: &str,
    labels: &Labels,
    range: Option<(UnixNanos, UnixNanos)>,
) -> Result<Vec<Profile>, DecodeError> {
    if pprof.sample_type.is_empty() {
        return Err(DecodeError::Pprof("no sample types".into()));
    }
    let (period_type, period_unit) = match &pprof.period_type {
        Some(p) => (
            string(pprof, p.r#type, "the period type")?,
            string(pprof, p.unit, "the period unit")?,
        ),
        None => ("", ""),
    };
    let mut types = Vec::with_capacity(pprof.sample_type.len());
    for t in &pprof.sample_type {
        types.push(ProfileType {
            name: name.to_owned(),
            sample_type: string(pprof, t.r#type, "a sample type")?.to_owned(),
            sample_unit: string(pprof, t.unit, "a sample unit")?.to_owned(),
            period_type: period_type.to_owned(),
            period_unit: period_unit.to_owned(),
        });
    }

    let mut function_names: HashMap<u64, &str> = HashMap::with_capacity(pprof.function.len());
    for f in &pprof.function {
        let mut fname = string(pprof, f.name, "a function's name")?;
        if fname.is_empty() {
            fname = string(pprof, f.system_name, "a function's system name")?;
        }
        function_names.insert(f.id, fname);
    }

    // Each location's frames (outermost first) as names, resolved once.
    let mut builder = StackBuilder::default();
    let mut locations: HashMap<u64, Vec<u32>> = HashMap::with_capacity(pprof.location.len());
    for location in &pprof.location {
        let mut frames = Vec::with_capacity(location.line.len().max(1));
        for line in location.line.iter().rev() {
            let fname = function_names.get(&line.function_id).ok_or_else(|| {
                DecodeError::Pprof(format!(
                    "location {} refers to function {}, which the profile does not define",
                    location.id, line.function_id
                ))
            })?;
            let fname = if fname.is_empty() { "unknown" } else { fname };
            frames.push(builder.intern(fname));
        }
        if frames.is_empty() {
            // Not symbolised: the address is all there is.
            frames.push(builder.intern(&format!("0x{:x}", location.address)));
        }
        locations.insert(location.id, frames);
    }

    let (start, end) = range.unwrap_or((
        pprof.time_nanos,
        pprof.time_nanos.saturating_add(pprof.duration_nanos.max(0)),
    ));
    let mut per_type: Vec<Vec<(Vec<u32>, i64)>> = vec![Vec::new(); types.len()];
    for (n, sample) in pprof.sample.iter().enumerate() {
        if sample.value.len() != types.len() {
            return Err(DecodeError::Pprof(format!(
                "sample {n} has {} values for {} sample types",
                sample.value.len(),
                types.len()
            )));
        }
        let mut frames = Vec::with_capacity(sample.location_id.len());
        for id in sample.location_id.iter().rev() {
            let location = locations.get(id).ok_or_else(|| {
                DecodeError::Pprof(format!(
                    "sample {n} refers to location {id}, which the profile does not define"
                ))
            })?;
            frames.extend_from_slice(location);
        }
        for (t, &value) in sample.value.iter().enumerate() {
            if value != 0 {
                per_type[t].push((frames.clone(), value));
            }
        }
    }

    let names = builder.names;
    Ok(types
        .into_iter()
        .zip(per_type)
        .map(|(profile_type, stacks)| {
            let mut one = StackBuilder {
                names: names.clone(),
                ..StackBuilder::default()
            };
            for (frames, value) in stacks {
                one.push(frames, value);
            }
            one.finish(labels.clone(), profile_type, start, end)
        })
        .collect())
}

/// Builds a pprof message from `root;…;leaf` stacks: the test fixtures' and
/// the benchmark's way to make what pyroscope-rs sends.
pub fn from_folded(
    stacks: &[(&str, i64)],
    sample_type: (&str, &str),
    period: i64,
    time_nanos: i64,
    duration_nanos: i64,
) -> PprofProfile {
    let mut strings: Vec<String> = vec![String::new()];
    let intern = |s: &str, strings: &mut Vec<String>| -> i64 {
        match strings.iter().position(|x| x == s) {
            Some(i) => i as i64,
            None => {
                strings.push(s.to_owned());
                strings.len() as i64 - 1
            }
        }
    };
    let kind = ValueType {
        r#type: intern(sample_type.0, &mut strings),
        unit: intern(sample_type.1, &mut strings),
    };
    let mut functions: Vec<Function> = Vec::new();
    let mut samples = Vec::new();
    for (stack, value) in stacks {
        let mut ids = Vec::new();
        for frame in stack.split(';').rev() {
            let name = intern(frame, &mut strings);
            let id = match functions.iter().position(|f| f.name == name) {
                Some(i) => i as u64 + 1,
                None => {
                    functions.push(Function {
                        id: functions.len() as u64 + 1,
                        name,
                        ..Function::default()
                    });
                    functions.len() as u64
                }
            };
            ids.push(id);
        }
        samples.push(Sample {
            location_id: ids,
            value: vec![*value],
        });
    }
    // One location per function, with the same id.
    let location = functions
        .iter()
        .map(|f| Location {
            id: f.id,
            address: 0,
            line: vec![Line {
                function_id: f.id,
                line: 0,
            }],
        })
        .collect();
    PprofProfile {
        sample_type: vec![kind],
        sample: samples,
        location,
        function: functions,
        string_table: strings,
        time_nanos,
        duration_nanos,
        period_type: Some(kind),
        period,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Labels {
        Labels::from_pairs([("service_name", "mythical-server")])
    }

    #[test]
    fn a_hand_built_pprof_decodes_to_root_first_stacks_with_its_range() {
        let pprof = from_folded(
            &[
                ("main;serve;hash_the_hoard", 30_000_000),
                ("main;serve", 10_000_000),
            ],
            ("cpu", "nanoseconds"),
            10_000_000,
            1_000_000_000_000,
            10_000_000_000,
        );
        let profiles = decode(&pprof.encode_to_vec(), "process_cpu", &labels(), None).unwrap();
        assert_eq!(profiles.len(), 1);
        let profile = &profiles[0];
        assert_eq!(profile.profile_type, ProfileType::cpu());
        assert_eq!(
            (profile.start, profile.end),
            (1_000_000_000_000, 1_010_000_000_000)
        );
        assert_eq!(
            profile.folded(),
            [
                ("main;serve;hash_the_hoard".to_owned(), 30_000_000),
                ("main;serve".to_owned(), 10_000_000)
            ]
        );
    }

    #[test]
    fn inlined_frames_expand_outermost_first() {
        let pprof = PprofProfile {
            sample_type: vec![ValueType { r#type: 1, unit: 2 }],
            sample: vec![Sample {
                location_id: vec![7],
                value: vec![5],
            }],
            location: vec![Location {
                id: 7,
                address: 0x1000,
                line: vec![
                    Line {
                        function_id: 1,
                        line: 3,
                    },
                    Line {
                        function_id: 2,
                        line: 9,
                    },
                ],
            }],
            function: vec![
                Function {
                    id: 1,
                    name: 3,
                    ..Default::default()
                },
                Function {
                    id: 2,
                    name: 4,
                    ..Default::default()
                },
            ],
            string_table: ["", "samples", "count", "inlined", "caller"]
                .map(String::from)
                .to_vec(),
            ..Default::default()
        };
        let profiles = to_profiles(&pprof, "process_cpu", &labels(), Some((0, 1))).unwrap();
        assert_eq!(profiles[0].folded(), [("caller;inlined".to_owned(), 5)]);
    }

    #[test]
    fn dangling_references_are_named_in_the_error() {
        let mut pprof = from_folded(&[("a;b", 1)], ("cpu", "nanoseconds"), 1, 0, 1);
        pprof.sample[0].location_id.push(99);
        let err = to_profiles(&pprof, "process_cpu", &labels(), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid pprof profile: sample 0 refers to location 99, which the profile does not define"
        );
        let mut pprof = from_folded(&[("a;b", 1)], ("cpu", "nanoseconds"), 1, 0, 1);
        pprof.function[0].name = 1000;
        let err = to_profiles(&pprof, "process_cpu", &labels(), None).unwrap_err();
        assert!(err.to_string().contains("string 1000"), "{err}");
    }

    #[test]
    fn garbage_is_not_a_pprof() {
        let err = decode(b"\xff\xff\xff\xff", "process_cpu", &labels(), None).unwrap_err();
        assert!(matches!(err, DecodeError::PprofProtobuf(_)), "{err}");
    }
}
