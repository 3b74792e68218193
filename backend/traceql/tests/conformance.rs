//! TraceQL over a fixed, hand-made set of traces shaped like the lab's,
//! with expected results worked out by hand from Tempo's documentation.

use std::sync::Arc;

use lab_signals::{
    AttrValue, Attributes, Resource, Span, SpanId, SpanKind, StatusCode, Trace, TraceId,
};

const MS: i64 = 1_000_000;

fn resource(service: &str) -> Arc<Resource> {
    Arc::new(Resource {
        attributes: Attributes(vec![(
            "service.name".into(),
            AttrValue::Str(service.into()),
        )]),
        ..Default::default()
    })
}

#[allow(clippy::too_many_arguments)]
fn span(
    trace: u8,
    id: u8,
    parent: Option<u8>,
    service: &str,
    name: &str,
    kind: SpanKind,
    status: StatusCode,
    start_ms: i64,
    duration_ms: i64,
    attrs: &[(&str, AttrValue)],
) -> Span {
    Span {
        trace_id: TraceId([trace; 16]),
        span_id: SpanId([id; 8]),
        parent_span_id: parent.map(|p| SpanId([p; 8])),
        name: name.into(),
        kind,
        status,
        status_message: if status == StatusCode::Error {
            "boom".into()
        } else {
            String::new()
        },
        start: 1_700_000_000_000 * MS + start_ms * MS,
        end: 1_700_000_000_000 * MS + (start_ms + duration_ms) * MS,
        attributes: Attributes(
            attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        ),
        events: Vec::new(),
        links: Vec::new(),
        resource: resource(service),
    }
}

/// Trace 1: a failing POST (requester → server → INSERT error).
/// Trace 2: a healthy GET. Trace 3: a slow GET with two sibling queries.
fn traces() -> Vec<Trace> {
    use AttrValue::*;
    use SpanKind::*;
    use StatusCode::*;
    let failing = vec![
        span(
            1,
            1,
            None,
            "mythical-requester",
            "requester",
            Client,
            Error,
            0,
            40,
            &[("beast", Str("owlbear".into()))],
        ),
        span(
            1,
            2,
            Some(1),
            "mythical-requester",
            "POST /:beast",
            Client,
            Error,
            1,
            30,
            &[("http.status_code", Int(500))],
        ),
        span(
            1,
            3,
            Some(2),
            "mythical-server",
            "POST /:beast",
            Server,
            Error,
            5,
            20,
            &[("http.response.status_code", Int(500))],
        ),
        span(
            1,
            4,
            Some(3),
            "mythical-server",
            "INSERT owlbear",
            Client,
            Error,
            8,
            10,
            &[("db.response.status_code", Str("23502".into()))],
        ),
    ];
    let healthy = vec![
        span(
            2,
            1,
            None,
            "mythical-requester",
            "requester",
            Client,
            Ok,
            100,
            12,
            &[("beast", Str("unicorn".into()))],
        ),
        span(
            2,
            2,
            Some(1),
            "mythical-requester",
            "GET /:beast",
            Client,
            Unset,
            101,
            10,
            &[("http.status_code", Int(200))],
        ),
        span(
            2,
            3,
            Some(2),
            "mythical-server",
            "GET /:beast",
            Server,
            Unset,
            102,
            8,
            &[
                ("http.response.status_code", Int(200)),
                ("cache.hit", Bool(true)),
            ],
        ),
    ];
    let slow = vec![
        span(
            3,
            1,
            None,
            "mythical-server",
            "GET /:beast",
            Server,
            Unset,
            200,
            1500,
            &[("beast", Str("beholder".into()))],
        ),
        span(
            3,
            2,
            Some(1),
            "mythical-server",
            "SELECT beholder",
            Client,
            Unset,
            210,
            900,
            &[("db.rows", Float(2.5))],
        ),
        span(
            3,
            3,
            Some(1),
            "mythical-server",
            "SELECT unicorn",
            Client,
            Unset,
            1200,
            100,
            &[],
        ),
    ];
    vec![
        Trace {
            trace_id: TraceId([1; 16]),
            spans: failing,
        },
        Trace {
            trace_id: TraceId([2; 16]),
            spans: healthy,
        },
        Trace {
            trace_id: TraceId([3; 16]),
            spans: slow,
        },
    ]
}

/// (trace number, matched span ids) for every matching trace, by trace.
fn run(query: &str) -> Vec<(u8, Vec<u8>)> {
    let parsed = lab_traceql::parse(query).unwrap_or_else(|e| panic!("{query}: {e}"));
    let (matches, inspected) = parsed.search(&traces()[..], 0, i64::MAX, 100, 100);
    assert_eq!(inspected, 3);
    let mut out: Vec<(u8, Vec<u8>)> = matches
        .iter()
        .map(|m| {
            let trace = u8::from_str_radix(&m.trace_id[..2], 16).unwrap();
            let mut spans: Vec<u8> = m
                .spans
                .iter()
                .map(|s| u8::from_str_radix(&s.span_id[..2], 16).unwrap())
                .collect();
            spans.sort();
            (trace, spans)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn intrinsics_select_by_name_status_kind_and_duration() {
    assert_eq!(run("{ }").len(), 3);
    assert_eq!(run(r#"{ name = "INSERT owlbear" }"#), [(1, vec![4])]);
    assert_eq!(run("{ status = error }"), [(1, vec![1, 2, 3, 4])]);
    assert_eq!(
        run("{ status != error && kind = server }"),
        [(2, vec![3]), (3, vec![1])]
    );
    assert_eq!(
        run("{ span:kind = client && duration > 500ms }"),
        [(3, vec![2])]
    );
    assert_eq!(run("{ duration >= 1.5s }"), [(3, vec![1])]);
    assert_eq!(
        run(r#"{ rootServiceName = "mythical-server" && name =~ "SELECT.*" }"#),
        [(3, vec![2, 3])]
    );
    assert_eq!(
        run(r#"{ rootName = "requester" && traceDuration < 20ms && kind = server }"#),
        [(2, vec![3])]
    );
    assert_eq!(
        run(r#"{ statusMessage = "boom" && name = "requester" }"#),
        [(1, vec![1])]
    );
}

#[test]
fn attributes_by_scope_type_and_operator() {
    assert_eq!(run("{ span.http.status_code = 500 }"), [(1, vec![2])]);
    assert_eq!(
        run("{ span.http.status_code >= 200 && span.http.status_code < 300 }"),
        [(2, vec![2])]
    );
    assert_eq!(
        run(r#"{ resource.service.name = "mythical-requester" && span.http.status_code != nil }"#),
        [(1, vec![2]), (2, vec![2])]
    );
    assert_eq!(
        run(r#"{ .service.name = "mythical-server" && .db.response.status_code = "23502" }"#),
        [(1, vec![4])]
    );
    assert_eq!(
        run(r#"{ .beast =~ "owl.*|uni.*" }"#),
        [(1, vec![1]), (2, vec![1])]
    );
    assert_eq!(
        run(r#"{ .beast !~ "owl.*" }"#),
        [(2, vec![1]), (3, vec![1])]
    );
    assert_eq!(
        run(r#"{ .beast = "owl" }"#),
        [],
        "regexes are anchored, equality exact"
    );
    assert_eq!(
        run("{ span.db.rows > 2 }"),
        [(3, vec![2])],
        "a float attribute compares with an int"
    );
    assert_eq!(run("{ span.cache.hit }"), [(2, vec![3])]);
    assert_eq!(run("{ span.cache.hit = true }"), [(2, vec![3])]);
    assert_eq!(
        run("{ span.missing = 1 || !(span.missing = 1) && name = \"SELECT unicorn\" }"),
        [(3, vec![3])]
    );
    assert_eq!(
        run("{ .nothing = nil && name = \"SELECT unicorn\" }"),
        [(3, vec![3])]
    );
}

#[test]
fn spanset_operators_combine_spans_within_a_trace() {
    // The issue's example: the requester's 500 above a failing span.
    let example = r#"{ resource.service.name = "mythical-requester" && span.http.status_code = 500 } >> { status = error }"#;
    assert_eq!(run(example), [(1, vec![3, 4])]);
    assert_eq!(
        run(r#"{ name = "requester" } > { kind = client }"#),
        [(1, vec![2]), (2, vec![2])]
    );
    assert_eq!(
        run(r#"{ name = "SELECT beholder" } ~ { kind = client }"#),
        [(3, vec![3])]
    );
    assert_eq!(
        run(r#"{ name =~ "INSERT.*" } << { kind = client }"#),
        [(1, vec![1, 2])]
    );
    assert_eq!(run(r#"{ name =~ "INSERT.*" } < { }"#), [(1, vec![3])]);
    assert_eq!(
        run(r#"{ name = "requester" } && { span.cache.hit }"#),
        [(2, vec![1, 3])]
    );
    assert_eq!(
        run(r#"{ span.cache.hit } || { status = error && kind = server }"#),
        [(1, vec![3]), (2, vec![3])]
    );
    assert_eq!(
        run(r#"({ name = "requester" } && { status = error }) >> { kind = server }"#),
        [(1, vec![3])]
    );
}

#[test]
fn pipelines_filter_count_aggregate_and_select() {
    assert_eq!(
        run("{ kind = client } | count() > 1"),
        [(1, vec![1, 2, 4]), (2, vec![1, 2]), (3, vec![2, 3])]
    );
    assert_eq!(
        run("{ kind = client } | count() = 2"),
        [(2, vec![1, 2]), (3, vec![2, 3])]
    );
    assert_eq!(
        run("{ kind = client } | avg(duration) > 400ms"),
        [(3, vec![2, 3])]
    );
    assert_eq!(run("{ } | max(duration) < 15ms"), [(2, vec![1, 2, 3])]);
    assert_eq!(
        run("{ kind = client } | { status = error }"),
        [(1, vec![1, 2, 4])]
    );
    let parsed = lab_traceql::parse(r#"{ name = "INSERT owlbear" } | select(span.db.response.status_code, resource.service.name)"#).unwrap();
    let (matches, _) = parsed.search(&traces()[..], 0, i64::MAX, 10, 10);
    let attrs = &matches[0].spans[0].attributes;
    assert!(
        attrs.contains(&(
            "span.db.response.status_code".into(),
            AttrValue::Str("23502".into())
        )),
        "{attrs:?}"
    );
    assert!(
        attrs.contains(&(
            "resource.service.name".into(),
            AttrValue::Str("mythical-server".into())
        )),
        "{attrs:?}"
    );
}

#[test]
fn limits_windows_and_the_search_answer() {
    let parsed = lab_traceql::parse("{ }").unwrap();
    let (matches, _) = parsed.search(&traces()[..], 0, i64::MAX, 2, 1);
    assert_eq!(matches.len(), 2);
    assert_eq!(matches[0].trace_id, "03".repeat(16), "newest first");
    assert_eq!(matches[0].spans.len(), 1);
    assert_eq!(matches[0].matched, 3);
    let window_start = 1_700_000_000_000 * MS + 150 * MS;
    let (late, _) = parsed.search(&traces()[..], window_start, i64::MAX, 10, 10);
    assert_eq!(late.len(), 1);

    let json = lab_traceql::search_response(&matches, 3);
    let trace = &json["traces"][0];
    assert_eq!(trace["traceID"], "03".repeat(16));
    assert_eq!(trace["rootServiceName"], "mythical-server");
    assert_eq!(trace["rootTraceName"], "GET /:beast");
    assert_eq!(trace["durationMs"], 1500);
    assert!(trace["startTimeUnixNano"].is_string());
    assert_eq!(trace["spanSets"][0]["matched"], 3);
    assert!(trace["spanSet"]["spans"][0]["durationNanos"].is_string());
    assert_eq!(json["metrics"]["inspectedTraces"], 3);

    let tags = lab_traceql::tags_v2(&traces()[..], 0, i64::MAX, None);
    assert_eq!(tags["scopes"][1]["tags"][0], "service.name");
    let values = lab_traceql::tag_values_v2(&traces()[..], "resource.service.name", 0, i64::MAX);
    assert_eq!(
        values["tagValues"][0],
        serde_json::json!({"type": "string", "value": "mythical-requester"})
    );
    let statuses = lab_traceql::tag_values_v1(&traces()[..], "status", 0, i64::MAX);
    assert_eq!(
        statuses["tagValues"],
        serde_json::json!(["error", "ok", "unset"])
    );
}

#[test]
fn errors_say_where_and_what() {
    let cases = [
        ("{ status = error", 16, "expecting `}`"),
        ("{ status == error }", 10, "unexpected Eq"),
        ("{ foo = 1 }", 2, "unknown field `foo`"),
        (r#"{ .x =~ "(" }"#, 8, "invalid regex"),
        ("{ duration > 5parsecs }", 13, "invalid duration"),
        ("{ } | frobnicate()", 6, "unknown pipeline function"),
        ("{ } >>", 6, "expecting `{` or `(`"),
        (r#"{ name = "open }"#, 9, "unterminated string"),
    ];
    for (query, offset, message) in cases {
        let err = lab_traceql::parse(query).expect_err(query);
        assert_eq!(err.offset, offset, "{query}: {err}");
        assert!(err.to_string().contains(message), "{query}: {err}");
        assert_eq!(err.line, 1);
        assert_eq!(err.column, offset + 1);
    }
}
