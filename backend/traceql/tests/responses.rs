//! The JSON the HTTP server sends, checked for the keys and value types
//! Grafana's Tempo datasource parses.

mod common;

use common::{BASE, MS, traces};
use lab_signals::{AttrValue, Attributes, SpanEvent};
use serde_json::{Value, json};

fn search_json(query: &str) -> Value {
    let result = lab_traceql::parse(query)
        .unwrap()
        .search(&traces()[..], 0, i64::MAX, 20, 3);
    lab_traceql::search_response(&result.traces, result.inspected_traces)
}

#[test]
fn search_answer_has_tempos_keys_and_types() {
    let json = search_json(
        r#"{ resource.service.name = "mythical-requester" && span.http.status_code = 500 } >> { status = error } | count() > 1"#,
    );
    assert_eq!(json["traces"].as_array().unwrap().len(), 1);
    let trace = &json["traces"][0];
    assert_eq!(trace["traceID"], "01".repeat(16));
    assert_eq!(trace["rootServiceName"], "mythical-requester");
    assert_eq!(trace["rootTraceName"], "requester");
    assert_eq!(trace["startTimeUnixNano"], BASE.to_string());
    assert_eq!(trace["durationMs"], 40);
    assert_eq!(
        trace["spanSet"], trace["spanSets"][0],
        "the deprecated copy"
    );
    let spanset = &trace["spanSets"][0];
    assert_eq!(spanset["matched"], 2);
    assert_eq!(
        spanset["attributes"],
        json!([{ "key": "count()", "value": { "intValue": "2" } }])
    );
    let span = &spanset["spans"][0];
    assert_eq!(span["spanID"], "03".repeat(8));
    assert_eq!(span["name"], "POST /:beast");
    assert_eq!(span["startTimeUnixNano"], (BASE + 5 * MS).to_string());
    assert_eq!(span["durationNanos"], (20 * MS).to_string());
    assert_eq!(
        span["attributes"],
        json!([
            { "key": "service.name", "value": { "stringValue": "mythical-server" } },
            { "key": "status", "value": { "stringValue": "error" } },
        ])
    );
    assert_eq!(json["metrics"]["inspectedTraces"], 3);
    assert!(json["metrics"]["inspectedBytes"].is_string());
}

#[test]
fn search_answer_writes_attribute_values_as_otlp_json() {
    let json =
        search_json("{ .db.rows != nil || span.cache.hit = true || span.http.status_code = 500 }");
    let values: Vec<&Value> = json["traces"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["spanSets"][0]["spans"].as_array().unwrap())
        .flat_map(|s| s["attributes"].as_array().unwrap())
        .filter(|a| a["key"] != "service.name")
        .map(|a| &a["value"])
        .collect();
    assert!(
        values.contains(&&json!({ "doubleValue": 2.5 })),
        "{values:?}"
    );
    assert!(
        values.contains(&&json!({ "boolValue": true })),
        "{values:?}"
    );
    assert!(
        values.contains(&&json!({ "intValue": "500" })),
        "{values:?}"
    );
}

#[test]
fn empty_search_still_has_traces_and_metrics() {
    let json = search_json(r#"{ name = "no such span" }"#);
    assert_eq!(json["traces"], json!([]));
    assert_eq!(json["metrics"]["inspectedTraces"], 3);
}

#[test]
fn trace_by_id_groups_spans_by_resource_in_otlp_json() {
    let mut trace = traces().remove(0);
    trace.spans[3].events.push(SpanEvent {
        time: BASE + 9 * MS,
        name: "exception".into(),
        attributes: Attributes(vec![(
            "exception.message".into(),
            AttrValue::Str("null value in column \"name\"".into()),
        )]),
    });
    let v1 = lab_traceql::trace_json_v1(&trace);
    let batches = v1["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 2, "one batch per service");
    assert_eq!(
        batches[0]["resource"]["attributes"],
        json!([{ "key": "service.name", "value": { "stringValue": "mythical-requester" } }])
    );
    let spans = batches[0]["scopeSpans"][0]["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2);
    let root = &spans[0];
    // Tempo marshals OTLP's byte ids as base64 (grafana/tempo#5437).
    assert_eq!(root["traceId"], "AQEBAQEBAQEBAQEBAQEBAQ==");
    assert_eq!(root["spanId"], "AQEBAQEBAQE=");
    assert!(root.get("parentSpanId").is_none());
    assert_eq!(root["kind"], "SPAN_KIND_CLIENT");
    assert_eq!(root["startTimeUnixNano"], BASE.to_string());
    assert_eq!(root["endTimeUnixNano"], (BASE + 40 * MS).to_string());
    assert_eq!(
        root["status"],
        json!({ "code": "STATUS_CODE_ERROR", "message": "boom" })
    );
    assert_eq!(spans[1]["parentSpanId"], "AQEBAQEBAQE=");
    assert_eq!(
        spans[1]["attributes"][0]["value"],
        json!({ "intValue": "500" })
    );

    let server = &batches[1]["scopeSpans"][0];
    assert!(server["scope"]["name"].is_string());
    let insert = &server["spans"][1];
    assert_eq!(insert["name"], "INSERT owlbear");
    assert_eq!(insert["events"][0]["name"], "exception");
    assert_eq!(
        insert["events"][0]["timeUnixNano"],
        (BASE + 9 * MS).to_string()
    );

    let v2 = lab_traceql::trace_json_v2(&trace);
    assert_eq!(v2["trace"]["resourceSpans"], v1["batches"]);

    let healthy = lab_traceql::trace_json_v1(&traces()[1]);
    let unset = &healthy["batches"][0]["scopeSpans"][0]["spans"][1];
    assert_eq!(
        unset["status"],
        json!({}),
        "protobuf JSON leaves zero values out"
    );
    let ok = &healthy["batches"][0]["scopeSpans"][0]["spans"][0];
    assert_eq!(ok["status"], json!({ "code": "STATUS_CODE_OK" }));
}

#[test]
fn tag_names_by_scope() {
    let data = traces();
    let v1 = lab_traceql::tags_v1(&data[..], 0, i64::MAX);
    assert_eq!(
        v1["tagNames"],
        json!([
            "beast",
            "cache.hit",
            "db.response.status_code",
            "db.rows",
            "http.response.status_code",
            "http.status_code",
            "service.name"
        ])
    );
    let v2 = lab_traceql::tags_v2(&data[..], 0, i64::MAX, None).unwrap();
    let scopes: Vec<&Value> = v2["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["name"])
        .collect();
    assert_eq!(scopes, ["span", "resource", "intrinsic"]);
    assert_eq!(v2["scopes"][1]["tags"], json!(["service.name"]));
    assert!(
        v2["scopes"][2]["tags"]
            .as_array()
            .unwrap()
            .contains(&json!("rootServiceName"))
    );
    let only = lab_traceql::tags_v2(&data[..], 0, i64::MAX, Some("resource")).unwrap();
    assert_eq!(
        only,
        json!({ "scopes": [{ "name": "resource", "tags": ["service.name"] }] })
    );
    assert_eq!(
        lab_traceql::tags_v2(&data[..], 0, i64::MAX, Some("event")),
        Err(lab_traceql::TagError::UnknownScope("event".into()))
    );
    let late = lab_traceql::tags_v1(&data[..], BASE + 150 * MS, i64::MAX);
    assert_eq!(
        late["tagNames"],
        json!(["beast", "db.rows", "service.name"]),
        "the window bounds the traces"
    );
}

#[test]
fn tag_values_typed_and_narrowed_by_a_query() {
    let data = traces();
    let v1 = lab_traceql::tag_values_v1(&data[..], "service.name", 0, i64::MAX);
    assert_eq!(
        v1["tagValues"],
        json!(["mythical-requester", "mythical-server"])
    );
    let statuses = lab_traceql::tag_values_v1(&data[..], "status", 0, i64::MAX);
    assert_eq!(statuses["tagValues"], json!(["error", "ok", "unset"]));

    let v2 =
        lab_traceql::tag_values_v2(&data[..], "span.http.status_code", 0, i64::MAX, None).unwrap();
    assert_eq!(
        v2["tagValues"],
        json!([{ "type": "int", "value": "200" }, { "type": "int", "value": "500" }])
    );
    let kinds = lab_traceql::tag_values_v2(&data[..], "kind", 0, i64::MAX, None).unwrap();
    assert_eq!(
        kinds["tagValues"],
        json!([{ "type": "keyword", "value": "client" }, { "type": "keyword", "value": "server" }])
    );
    let errors_only = lab_traceql::parse("{ status = error }").unwrap();
    let names =
        lab_traceql::tag_values_v2(&data[..], "name", 0, i64::MAX, Some(&errors_only)).unwrap();
    assert_eq!(
        names["tagValues"],
        json!([
            { "type": "string", "value": "INSERT owlbear" },
            { "type": "string", "value": "POST /:beast" },
            { "type": "string", "value": "requester" },
        ])
    );
    let bad = lab_traceql::tag_values_v2(&data[..], "service.name", 0, i64::MAX, None).unwrap_err();
    assert!(
        bad.to_string().contains("unknown field `service.name`"),
        "{bad}"
    );
}

/// A trace whose caller is still exporting has no root yet: Tempo names
/// none, and a filter on the root service does not take the earliest
/// child that did arrive for the trace's start.
#[test]
fn a_trace_without_its_root_yet_has_no_root_service() {
    let mut rootless = traces();
    for trace in &mut rootless {
        trace.spans.retain(|s| s.parent_span_id.is_some());
    }
    let search = |query: &str| {
        let result = lab_traceql::parse(query)
            .unwrap()
            .search(&rootless[..], 0, i64::MAX, 20, 3);
        lab_traceql::search_response(&result.traces, result.inspected_traces)
    };
    let all = search(r#"{ resource.service.name = "mythical-server" }"#);
    let traces = all["traces"].as_array().unwrap();
    assert!(!traces.is_empty());
    for trace in traces {
        assert_eq!(trace["rootServiceName"], "<root span not yet received>");
        assert_eq!(trace["rootTraceName"], "");
    }
    let by_root = search(r#"{ rootServiceName = "mythical-server" }"#);
    assert_eq!(by_root["traces"], json!([]), "{by_root:#}");
}
