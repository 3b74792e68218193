//! Pyroscope's push API, `POST /push.v1.PusherService/Push` (Connect,
//! protobuf): what pyroscope-rs 2.x and Grafana Alloy send. A request holds
//! series of labels (`__name__` is the profile name, `service_name` the
//! application), each with raw pprof profiles, usually gzip-compressed.

use lab_signals::Labels;
use prost::Message;

use crate::{DecodeError, Profile, maybe_gunzip, pprof};

#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub series: Vec<RawProfileSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RawProfileSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<LabelPair>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<RawSample>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LabelPair {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RawSample {
    #[prost(bytes = "vec", tag = "1")]
    pub raw_profile: Vec<u8>,
    #[prost(string, tag = "2")]
    pub id: String,
}

/// The label that names the profile in a series.
pub const NAME_LABEL: &str = "__name__";

/// Decodes a push request body (gzip-compressed or not; the HTTP layer may
/// have removed a `Content-Encoding` already) into profiles.
pub fn decode(body: &[u8]) -> Result<Vec<Profile>, DecodeError> {
    let body = maybe_gunzip(body)?;
    let request =
        PushRequest::decode(&*body).map_err(|e| DecodeError::PushProtobuf(e.to_string()))?;
    let mut profiles = Vec::new();
    for (n, series) in request.series.iter().enumerate() {
        let name = series
            .labels
            .iter()
            .find(|l| l.name == NAME_LABEL)
            .map(|l| l.value.as_str());
        let labels = Labels::new(
            series
                .labels
                .iter()
                .filter(|l| l.name != NAME_LABEL)
                .map(|l| (l.name.clone(), l.value.clone())),
        );
        if labels.get("service_name").is_none() {
            return Err(DecodeError::Push(format!(
                "series {n} has no service_name label"
            )));
        }
        for sample in &series.samples {
            let raw = maybe_gunzip(&sample.raw_profile)?;
            let parsed = pprof::PprofProfile::decode(&*raw)
                .map_err(|e| DecodeError::PprofProtobuf(format!("series {n}: {e}")))?;
            let name = name.unwrap_or_else(|| pprof::default_name(&parsed));
            profiles.extend(pprof::to_profiles(&parsed, name, &labels, None)?);
        }
    }
    Ok(profiles)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProfileType;

    #[test]
    fn a_push_like_pyroscope_rs_sends_decodes_with_its_labels() {
        let pprof = pprof::from_folded(
            &[("main;hash_the_hoard", 20_000_000)],
            ("cpu", "nanoseconds"),
            10_000_000,
            5_000_000_000,
            10_000_000_000,
        );
        let request = PushRequest {
            series: vec![RawProfileSeries {
                labels: [
                    ("__name__", "process_cpu"),
                    ("service_name", "mythical-server"),
                    ("service_namespace", "mythical"),
                ]
                .map(|(name, value)| LabelPair {
                    name: name.into(),
                    value: value.into(),
                })
                .to_vec(),
                samples: vec![RawSample {
                    raw_profile: pprof.encode_to_vec(),
                    id: "x".into(),
                }],
            }],
        };
        let profiles = decode(&request.encode_to_vec()).unwrap();
        assert_eq!(profiles.len(), 1);
        assert_eq!(profiles[0].profile_type, ProfileType::cpu());
        assert_eq!(
            profiles[0].labels.get("service_name"),
            Some("mythical-server")
        );
        assert_eq!(profiles[0].labels.get("__name__"), None);
        assert_eq!(
            profiles[0].folded(),
            [("main;hash_the_hoard".to_owned(), 20_000_000)]
        );
    }

    #[test]
    fn a_series_without_a_service_name_is_refused() {
        let request = PushRequest {
            series: vec![RawProfileSeries {
                labels: vec![],
                samples: vec![],
            }],
        };
        let err = decode(&request.encode_to_vec()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid push request: series 0 has no service_name label"
        );
    }
}
