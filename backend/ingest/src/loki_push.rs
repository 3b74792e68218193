//! Loki's push API in its JSON form:
//! `{"streams":[{"stream":{…},"values":[["<ns>","<line>",{metadata}]]}]}`.

use lab_signals::{Labels, LogEntry};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "unsupported content type {0}: push logs as application/json (protobuf with snappy is not supported)"
    )]
    ContentType(String),
    #[error("invalid push body: {0}")]
    Json(String),
    #[error("stream {stream}, value {value}: {message}")]
    Value {
        stream: usize,
        value: usize,
        message: String,
    },
}

#[derive(Deserialize)]
struct Push {
    streams: Vec<PushStream>,
}

#[derive(Deserialize)]
struct PushStream {
    stream: std::collections::BTreeMap<String, String>,
    values: Vec<Vec<Value>>,
}

/// Decodes a push body into labelled entries.
pub fn decode(body: &[u8], content_type: &str) -> Result<Vec<(Labels, LogEntry)>, DecodeError> {
    if !content_type.trim().is_empty() && !content_type.starts_with("application/json") {
        return Err(DecodeError::ContentType(content_type.to_owned()));
    }
    let push: Push = serde_json::from_slice(body).map_err(|e| DecodeError::Json(e.to_string()))?;
    let mut out = Vec::new();
    for (s, stream) in push.streams.into_iter().enumerate() {
        if stream.stream.is_empty() {
            return Err(DecodeError::Value {
                stream: s,
                value: 0,
                message: "a stream needs at least one label".into(),
            });
        }
        let labels = Labels::new(stream.stream);
        for (v, value) in stream.values.into_iter().enumerate() {
            let error = |message: &str| DecodeError::Value {
                stream: s,
                value: v,
                message: message.to_owned(),
            };
            let ts = value
                .first()
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<i64>().ok())
                .ok_or_else(|| error("the timestamp must be a string of Unix nanoseconds"))?;
            let line = value
                .get(1)
                .and_then(Value::as_str)
                .ok_or_else(|| error("the line must be a string"))?
                .to_owned();
            let metadata = match value.get(2) {
                None => Labels::default(),
                Some(Value::Object(map)) => Labels::new(map.iter().map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                    )
                })),
                Some(_) => return Err(error("structured metadata must be an object")),
            };
            if value.len() > 3 {
                return Err(error("a value has at most three elements"));
            }
            out.push((labels.clone(), LogEntry { ts, line, metadata }));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_lines_and_metadata_decode() {
        let body = br#"{"streams":[{"stream":{"job":"mythical-server","level":"error"},
            "values":[["1700000000000000000","boom"],["1700000000000000001","again",{"trace_id":"abc"}]]}]}"#;
        let entries = decode(body, "application/json").unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[0].0.to_string(),
            r#"{job="mythical-server", level="error"}"#
        );
        assert_eq!(entries[1].1.ts, 1_700_000_000_000_000_001);
        assert_eq!(entries[1].1.metadata.get("trace_id"), Some("abc"));
    }

    #[test]
    fn bad_bodies_say_where() {
        assert!(matches!(
            decode(b"{", "application/json"),
            Err(DecodeError::Json(_))
        ));
        let bad_ts = br#"{"streams":[{"stream":{"a":"b"},"values":[[1,"x"]]}]}"#;
        assert_eq!(
            decode(bad_ts, "application/json").unwrap_err().to_string(),
            "stream 0, value 0: the timestamp must be a string of Unix nanoseconds"
        );
        assert!(matches!(
            decode(b"\x00", "application/x-protobuf"),
            Err(DecodeError::ContentType(_))
        ));
    }
}
