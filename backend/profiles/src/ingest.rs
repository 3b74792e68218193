//! Pyroscope's older ingest API, `POST /ingest?name=app{k=v}&from=&until=
//! &sampleRate=&spyName=&units=&aggregationType=&format=`: `folded` text
//! (`a;b;c 12` per line), `lines` (one stack per line, each counting one)
//! and `pprof` (raw or as the `profile` part of a multipart form).
//!
//! Text bodies count samples; they are stored as CPU nanoseconds
//! (`samples × 10⁹ / sampleRate`) so they merge with what pprof clients
//! send under `process_cpu:cpu:nanoseconds:cpu:nanoseconds`.

use lab_signals::{Labels, UnixNanos};

use crate::{DecodeError, Profile, ProfileType, StackBuilder, maybe_gunzip, pprof};

/// Body formats `/ingest` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Folded,
    Lines,
    Pprof,
}

/// The query parameters of one `/ingest` call, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestRequest {
    /// The application name, without a profile suffix like `.cpu`.
    pub app: String,
    /// That suffix, which names the profile type (`cpu` when there is
    /// none), as Pyroscope's ingest adapter reads it.
    pub suffix: String,
    /// `service_name` (the application) and the tags of `name`.
    pub labels: Labels,
    pub start: UnixNanos,
    pub end: UnixNanos,
    pub sample_rate: u32,
    pub units: String,
    pub aggregation: String,
    pub format: Format,
}

/// Suffixes Pyroscope's older clients add to the application name.
const SUFFIXES: [&str; 8] = [
    ".cpu",
    ".itimer",
    ".wall",
    ".alloc_objects",
    ".alloc_space",
    ".inuse_objects",
    ".inuse_space",
    ".goroutines",
];

/// How long a profile without `from` is taken to cover.
pub const DEFAULT_SPAN_SECONDS: i64 = 10;

impl IngestRequest {
    /// Reads the query's pairs (a later repeat wins); `now` stands in for a
    /// missing `until`.
    pub fn from_pairs(pairs: &[(String, String)], now: UnixNanos) -> Result<Self, DecodeError> {
        let get = |name: &str| {
            pairs
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim())
        };
        let name = get("name").ok_or(DecodeError::Param {
            name: "name",
            reason: "missing: name the application, like name=my-app{env=lab}".into(),
        })?;
        let (app, suffix, mut tags) = parse_name(name)?;
        if !tags.iter().any(|(k, _)| k == "service_name") {
            tags.push(("service_name".into(), app.clone()));
        }
        let end = match get("until") {
            Some(t) => time("until", t)?,
            None => now,
        };
        let start = match get("from") {
            Some(t) => time("from", t)?,
            None => end - DEFAULT_SPAN_SECONDS * 1_000_000_000,
        };
        if end < start {
            return Err(DecodeError::Param {
                name: "until",
                reason: "is before from".into(),
            });
        }
        let sample_rate = match get("sampleRate") {
            None | Some("") => 100,
            Some(rate) => match rate.parse::<u32>() {
                Ok(rate) if rate > 0 => rate,
                _ => {
                    return Err(DecodeError::Param {
                        name: "sampleRate",
                        reason: format!("{rate:?} is not a positive whole number of Hz"),
                    });
                }
            },
        };
        let format = match get("format").unwrap_or("folded") {
            "" | "folded" => Format::Folded,
            "lines" => Format::Lines,
            "pprof" => Format::Pprof,
            other => {
                return Err(DecodeError::Param {
                    name: "format",
                    reason: format!("{other:?} is not supported: use folded, lines or pprof"),
                });
            }
        };
        Ok(IngestRequest {
            app,
            suffix,
            labels: Labels::new(tags),
            start,
            end,
            sample_rate,
            units: get("units").unwrap_or("samples").to_owned(),
            aggregation: get("aggregationType").unwrap_or("sum").to_owned(),
            format,
        })
    }

    /// The profile type a text body's values are stored as, and the factor
    /// that turns one of its values into that type's unit. As Pyroscope's
    /// ingest adapter decides it: by the name's suffix alone (`units` and
    /// `aggregationType` change nothing), with a CPU or wall period only
    /// for those types, so memory types have empty period fields
    /// (`memory:inuse_space:bytes::`).
    fn text_type(&self) -> Result<(ProfileType, i64), DecodeError> {
        let typed = |name: &str, sample_type: &str, unit: &str| ProfileType {
            name: name.into(),
            sample_type: sample_type.into(),
            sample_unit: unit.into(),
            period_type: String::new(),
            period_unit: String::new(),
        };
        let per_sample = 1_000_000_000 / i64::from(self.sample_rate).max(1);
        Ok(match self.suffix.as_str() {
            "cpu" | "itimer" => (ProfileType::cpu(), per_sample),
            "wall" => (
                ProfileType {
                    name: "wall".into(),
                    sample_type: "wall".into(),
                    ..ProfileType::cpu()
                },
                per_sample,
            ),
            kind @ ("inuse_objects" | "alloc_objects") => (typed("memory", kind, "count"), 1),
            kind @ ("inuse_space" | "alloc_space") => (typed("memory", kind, "bytes"), 1),
            "goroutines" => (typed("goroutine", "goroutines", "count"), 1),
            other => {
                return Err(DecodeError::Param {
                    name: "name",
                    reason: format!(
                        "the profile suffix {other:?} is not supported: use .cpu, .wall, .inuse_space, .inuse_objects, .alloc_space, .alloc_objects or .goroutines"
                    ),
                });
            }
        })
    }
}

/// The parts of `/ingest`'s `name`: application, profile suffix, tags.
type NameParts = (String, String, Vec<(String, String)>);

/// `app.cpu{k=v,k2="v 2"}` → (`app`, `cpu`, tags).
fn parse_name(name: &str) -> Result<NameParts, DecodeError> {
    let bad = |reason: String| DecodeError::Param {
        name: "name",
        reason,
    };
    let (app, tags) = match name.find('{') {
        Some(at) => {
            let rest = name[at + 1..]
                .strip_suffix('}')
                .ok_or_else(|| bad(format!("{name:?} opens {{ but does not end with }}")))?;
            (&name[..at], rest)
        }
        None => (name, ""),
    };
    let (app, suffix) = SUFFIXES
        .iter()
        .find_map(|s| app.strip_suffix(s).map(|app| (app, &s[1..])))
        .unwrap_or((app, "cpu"));
    if app.is_empty() {
        return Err(bad(format!("{name:?} has no application name")));
    }
    let mut pairs = Vec::new();
    for tag in tags.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (key, value) = tag
            .split_once('=')
            .ok_or_else(|| bad(format!("tag {tag:?} is not key=value")))?;
        let key = key.trim();
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            return Err(bad(format!("tag name {key:?} is not a label name")));
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        pairs.push((key.to_owned(), value.to_owned()));
    }
    Ok((app.to_owned(), suffix.to_owned(), pairs))
}

/// Unix seconds, as Pyroscope's clients send; larger numbers are read as
/// milliseconds, microseconds or nanoseconds by their size.
fn time(name: &'static str, text: &str) -> Result<UnixNanos, DecodeError> {
    let value: i64 = text.parse().map_err(|_| DecodeError::Param {
        name,
        reason: format!("{text:?} is not a Unix time in seconds"),
    })?;
    Ok(match value.unsigned_abs() {
        v if v >= 100_000_000_000_000_000 => value,
        v if v >= 100_000_000_000_000 => value.saturating_mul(1_000),
        v if v >= 100_000_000_000 => value.saturating_mul(1_000_000),
        _ => value.saturating_mul(1_000_000_000),
    })
}

/// Decodes an `/ingest` body as its request says.
pub fn decode(
    request: &IngestRequest,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Vec<Profile>, DecodeError> {
    match request.format {
        Format::Pprof => {
            let body = match content_type.and_then(multipart_boundary) {
                Some(boundary) => multipart_part(body, &boundary, "profile")?,
                None => body,
            };
            let body = maybe_gunzip(body)?;
            let parsed = <pprof::PprofProfile as prost::Message>::decode(&*body)
                .map_err(|e| DecodeError::PprofProtobuf(e.to_string()))?;
            let name = match request.units.as_str() {
                "samples" => pprof::default_name(&parsed),
                "objects" | "bytes" => "memory",
                _ => pprof::default_name(&parsed),
            };
            pprof::to_profiles(
                &parsed,
                name,
                &request.labels,
                Some((request.start, request.end)),
            )
        }
        Format::Folded | Format::Lines => {
            let body = maybe_gunzip(body)?;
            let (profile_type, factor) = request.text_type()?;
            let format = if request.format == Format::Folded {
                "folded"
            } else {
                "lines"
            };
            let text = std::str::from_utf8(&body).map_err(|e| DecodeError::Text {
                format,
                line: body[..e.valid_up_to()]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1,
                reason: "not UTF-8 text".into(),
            })?;
            let mut builder = StackBuilder::default();
            for (n, line) in text.lines().enumerate() {
                let line = line.trim_end_matches('\r');
                if line.trim().is_empty() {
                    continue;
                }
                let bad = |reason: String| DecodeError::Text {
                    format,
                    line: n + 1,
                    reason,
                };
                let (stack, count) = match request.format {
                    Format::Lines => (line, 1),
                    _ => {
                        let (stack, count) = line.rsplit_once(' ').ok_or_else(|| {
                            bad("expected a stack, a space and a count, like `main;work 12`".into())
                        })?;
                        let count: i64 =
                            count.parse().ok().filter(|c| *c >= 0).ok_or_else(|| {
                                bad(format!("count {count:?} is not a whole number"))
                            })?;
                        (stack, count)
                    }
                };
                if stack.is_empty() {
                    return Err(bad("the stack is empty".into()));
                }
                let frames = stack.split(';').map(|f| builder.intern(f)).collect();
                let value = count
                    .checked_mul(factor)
                    .ok_or_else(|| bad(format!("count {count} is too large")))?;
                builder.push(frames, value);
            }
            Ok(vec![builder.finish(
                request.labels.clone(),
                profile_type,
                request.start,
                request.end,
            )])
        }
    }
}

/// The boundary of a `multipart/form-data` content type.
fn multipart_boundary(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// The content of the part named `wanted`.
fn multipart_part<'a>(
    body: &'a [u8],
    boundary: &str,
    wanted: &str,
) -> Result<&'a [u8], DecodeError> {
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut rest = body;
    let mut at = find(rest, delimiter)
        .ok_or_else(|| DecodeError::Multipart(format!("no boundary {boundary:?} in the body")))?;
    loop {
        rest = &rest[at + delimiter.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let headers_end = find(rest, b"\r\n\r\n")
            .ok_or_else(|| DecodeError::Multipart("a part's headers do not end".into()))?;
        let headers = String::from_utf8_lossy(&rest[..headers_end]);
        let content = &rest[headers_end + 4..];
        let next = find(content, delimiter).ok_or_else(|| {
            DecodeError::Multipart("a part does not end with the boundary".into())
        })?;
        let part = content[..next]
            .strip_suffix(b"\r\n")
            .unwrap_or(&content[..next]);
        let named = headers.lines().any(|h| {
            h.to_ascii_lowercase().starts_with("content-disposition")
                && (h.contains(&format!("name=\"{wanted}\""))
                    || h.contains(&format!("name={wanted};")))
        });
        if named {
            return Ok(part);
        }
        rest = content;
        at = next;
    }
    Err(DecodeError::Multipart(format!("no part named {wanted:?}")))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(query: &[(&str, &str)]) -> Result<IngestRequest, DecodeError> {
        let pairs: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        IngestRequest::from_pairs(&pairs, 2_000_000_000_000_000_000)
    }

    #[test]
    fn a_folded_body_becomes_cpu_nanoseconds_for_the_named_service() {
        let req = request(&[
            ("name", "mythical-server.cpu{env=lab,region=\"eu 1\"}"),
            ("from", "1700000000"),
            ("until", "1700000010"),
            ("sampleRate", "100"),
            ("spyName", "pyroscope-rs"),
            ("format", "folded"),
        ])
        .unwrap();
        assert_eq!(req.app, "mythical-server");
        assert_eq!(req.labels.get("service_name"), Some("mythical-server"));
        assert_eq!(req.labels.get("region"), Some("eu 1"));
        let body = b"main;serve;hash_the_hoard 12\nmain;serve 3\n\nmain;idle 1\r\n";
        let profiles = decode(&req, Some("text/plain"), body).unwrap();
        let profile = &profiles[0];
        assert_eq!(profile.profile_type, ProfileType::cpu());
        assert_eq!(profile.start, 1_700_000_000_000_000_000);
        assert_eq!(profile.end, 1_700_000_010_000_000_000);
        assert_eq!(
            profile.folded(),
            [
                ("main;serve;hash_the_hoard".to_owned(), 120_000_000),
                ("main;serve".to_owned(), 30_000_000),
                ("main;idle".to_owned(), 10_000_000),
            ]
        );
    }

    #[test]
    fn a_lines_body_counts_each_line_once() {
        let req = request(&[("name", "app"), ("format", "lines"), ("sampleRate", "1")]).unwrap();
        let profiles = decode(&req, None, b"a;b\na;b\na;c\n").unwrap();
        assert_eq!(profiles[0].total(), 3_000_000_000);
        assert_eq!(profiles[0].end - profiles[0].start, 10_000_000_000);
    }

    #[test]
    fn bad_lines_and_parameters_say_where_and_what() {
        let req = request(&[("name", "app")]).unwrap();
        let err = decode(&req, None, b"a;b 1\na;b x\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "folded body, line 2: count \"x\" is not a whole number"
        );
        let err = decode(&req, None, b"a;b 1\nnospace\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("folded body, line 2: expected a stack"),
            "{err}"
        );
        let err = request(&[("name", "app"), ("format", "trie")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid parameter \"format\": \"trie\" is not supported: use folded, lines or pprof"
        );
        assert!(request(&[("from", "1")]).is_err());
        assert!(request(&[("name", "app{env}")]).is_err());
        assert!(request(&[("name", "app"), ("from", "yesterday")]).is_err());
    }

    #[test]
    fn a_pprof_in_a_multipart_form_is_found_by_its_part_name() {
        use prost::Message;
        let pprof = pprof::from_folded(&[("main;work", 7)], ("cpu", "nanoseconds"), 1, 0, 1);
        let mut body = Vec::new();
        body.extend_from_slice(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"sample_type_config\"\r\n\r\n{}\r\n",
        );
        body.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"profile.pprof\"\r\nContent-Type: application/octet-stream\r\n\r\n");
        body.extend_from_slice(&pprof.encode_to_vec());
        body.extend_from_slice(b"\r\n--XyZ--\r\n");
        let req = request(&[
            ("name", "app"),
            ("format", "pprof"),
            ("from", "10"),
            ("until", "20"),
        ])
        .unwrap();
        let profiles = decode(&req, Some("multipart/form-data; boundary=XyZ"), &body).unwrap();
        assert_eq!(profiles[0].folded(), [("main;work".to_owned(), 7)]);
        assert_eq!(profiles[0].start, 10_000_000_000);
        let err = decode(&req, Some("multipart/form-data; boundary=Other"), &body).unwrap_err();
        assert!(matches!(err, DecodeError::Multipart(_)), "{err}");
    }
}
