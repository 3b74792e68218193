//! OTLP mapping with hand-written expectations, and the decoders under
//! random, truncated and mutated input.

use lab_ingest::otlp::{self, Encoding, LabelPolicy};
use lab_signals::{SpanKind, StatusCode};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, exemplar, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use proptest::prelude::*;
use prost::Message;

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv("service.name", service),
            kv("service.namespace", "mythical"),
            kv("host.name", "laptop"),
        ],
        ..Default::default()
    })
}

const TRACE_JSON: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"mythical-server"}}]},
 "scopeSpans":[{"scope":{"name":"mythical"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
 "parentSpanId":"eee19b7ec3c1b173","name":"INSERT owlbear","kind":3,"startTimeUnixNano":"1544712660000000000",
 "endTimeUnixNano":"1544712661000000000","attributes":[{"key":"db.response.status_code","value":{"stringValue":"23502"}},
 {"key":"retries","value":{"intValue":"2"}}],"status":{"code":2,"message":"null value"}}]}]}]}"#;

#[test]
fn otlp_json_spans_map_with_ids_kinds_status_and_typed_attributes() {
    let request = otlp::decode_traces(TRACE_JSON.as_bytes(), Encoding::Json).unwrap();
    let spans = otlp::spans(&request);
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(
        span.trace_id.to_string(),
        "5b8efff798038103d269b633813fc60c"
    );
    assert_eq!(span.parent_span_id.unwrap().to_string(), "eee19b7ec3c1b173");
    assert_eq!(span.kind, SpanKind::Client);
    assert_eq!(span.status, StatusCode::Error);
    assert_eq!(span.status_message, "null value");
    assert_eq!(span.duration_nanos(), 1_000_000_000);
    assert_eq!(span.service_name(), "mythical-server");
    assert_eq!(span.resource.scope_name, "mythical");
    assert_eq!(span.attributes.get("retries").unwrap().as_f64(), Some(2.0));

    // The same request as protobuf maps the same.
    let bytes = request.encode_to_vec();
    let again = otlp::spans(&otlp::decode_traces(&bytes, Encoding::Protobuf).unwrap());
    assert_eq!(again, spans);
}

#[test]
fn log_records_get_lokis_labels_and_structured_metadata() {
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("mythical-server"),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: 1_700_000_000_000_000_000,
                    severity_text: "error".into(),
                    severity_number: 17,
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(
                            "traceID=abc status=FAILURE".into(),
                        )),
                    }),
                    attributes: vec![
                        kv("level", "error"),
                        kv("job", "mythical-server"),
                        kv("namespace", "mythical"),
                        kv("beast", "owlbear"),
                        kv("http.method", "POST"),
                    ],
                    trace_id: vec![0xab; 16],
                    span_id: vec![0xcd; 8],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let entries = otlp::log_entries(&request, &LabelPolicy::default());
    assert_eq!(entries.len(), 1);
    let (labels, entry) = &entries[0];
    assert_eq!(
        labels.to_string(),
        r#"{beast="owlbear", job="mythical-server", level="error", namespace="mythical", service_name="mythical-server", service_namespace="mythical"}"#
    );
    assert_eq!(entry.line, "traceID=abc status=FAILURE");
    assert_eq!(entry.ts, 1_700_000_000_000_000_000);
    assert_eq!(
        entry.metadata.get("trace_id"),
        Some("abababababababababababababababab")
    );
    assert_eq!(entry.metadata.get("span_id"), Some("cdcdcdcdcdcdcdcd"));
    assert_eq!(entry.metadata.get("http_method"), Some("POST"));
    assert_eq!(entry.metadata.get("host_name"), Some("laptop"));
    assert_eq!(entry.metadata.get("detected_level"), Some("error"));
}

#[test]
fn histograms_and_counters_get_prometheus_otlp_names() {
    let attrs = vec![
        kv("method", "POST"),
        kv("status", "500"),
        kv("beast", "owlbear"),
    ];
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource("mythical-server"),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    Metric {
                        name: "mythical_request_times".into(),
                        unit: "ms".into(),
                        data: Some(Data::Histogram(Histogram {
                            aggregation_temporality: AggregationTemporality::Cumulative as i32,
                            data_points: vec![HistogramDataPoint {
                                attributes: attrs.clone(),
                                time_unix_nano: 1_700_000_000_000_000_000,
                                count: 5,
                                sum: Some(60.0),
                                bucket_counts: vec![1, 3, 1],
                                explicit_bounds: vec![10.0, 20.0],
                                exemplars: vec![Exemplar {
                                    time_unix_nano: 1_700_000_000_000_000_000,
                                    trace_id: vec![1; 16],
                                    span_id: vec![2; 8],
                                    value: Some(exemplar::Value::AsDouble(15.0)),
                                    ..Default::default()
                                }],
                                ..Default::default()
                            }],
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "requests".into(),
                        unit: "1".into(),
                        data: Some(Data::Sum(Sum {
                            aggregation_temporality: AggregationTemporality::Cumulative as i32,
                            is_monotonic: true,
                            data_points: vec![NumberDataPoint {
                                time_unix_nano: 1_700_000_000_000_000_000,
                                value: Some(number_data_point::Value::AsInt(7)),
                                ..Default::default()
                            }],
                        })),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let batch = otlp::metric_points(&request);
    let find = |name: &str, le: Option<&str>| {
        batch
            .points
            .iter()
            .find(|(l, _)| l.get("__name__") == Some(name) && l.get("le") == le)
            .unwrap_or_else(|| panic!("no {name} le={le:?} in {:?}", batch.points))
    };
    let (labels, sample) = find("mythical_request_times_milliseconds_bucket", Some("20"));
    assert_eq!(sample.v, 4.0, "buckets are cumulative");
    assert_eq!(sample.t, 1_700_000_000_000);
    assert_eq!(labels.get("job"), Some("mythical/mythical-server"));
    assert_eq!(labels.get("beast"), Some("owlbear"));
    assert_eq!(
        find("mythical_request_times_milliseconds_bucket", Some("+Inf"))
            .1
            .v,
        5.0
    );
    assert_eq!(
        find("mythical_request_times_milliseconds_sum", None).1.v,
        60.0
    );
    assert_eq!(
        find("mythical_request_times_milliseconds_count", None).1.v,
        5.0
    );
    assert_eq!(find("requests_total", None).1.v, 7.0);
    let info = find("target_info", None);
    assert_eq!(info.0.get("host_name"), Some("laptop"));
    // The exemplar (15 ms) sits on the le="20" bucket with its trace id.
    assert_eq!(batch.exemplars.len(), 1);
    assert_eq!(batch.exemplars[0].0.get("le"), Some("20"));
    assert_eq!(
        batch.exemplars[0].1.labels.get("trace_id"),
        Some("01010101010101010101010101010101")
    );
}

proptest! {
    #[test]
    fn random_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for encoding in [Encoding::Protobuf, Encoding::Json] {
            let _ = otlp::decode_traces(&bytes, encoding).map(|r| otlp::spans(&r));
            let _ = otlp::decode_logs(&bytes, encoding).map(|r| otlp::log_entries(&r, &LabelPolicy::default()));
            let _ = otlp::decode_metrics(&bytes, encoding).map(|r| otlp::metric_points(&r));
        }
        let _ = lab_ingest::loki_push::decode(&bytes, "application/json");
        let _ = lab_ingest::prometheus_text::parse(&String::from_utf8_lossy(&bytes), 0, &Default::default());
    }

    #[test]
    fn truncated_and_mutated_payloads_are_errors_or_values(cut in 0usize..1000, flip in 0usize..1000, bit in 0u8..8) {
        let request = otlp::decode_traces(TRACE_JSON.as_bytes(), Encoding::Json).unwrap();
        let mut bytes = request.encode_to_vec();
        let at = flip % bytes.len();
        bytes[at] ^= 1 << bit;
        bytes.truncate(cut % (bytes.len() + 1));
        let _ = otlp::decode_traces(&bytes, Encoding::Protobuf).map(|r| otlp::spans(&r));
        let json = &TRACE_JSON.as_bytes()[..cut % (TRACE_JSON.len() + 1)];
        let _ = otlp::decode_traces(json, Encoding::Json).map(|r| otlp::spans(&r));
    }
}
