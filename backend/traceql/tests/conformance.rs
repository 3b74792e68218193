//! TraceQL over a fixed, hand-made set of traces shaped like the lab's,
//! with expected results worked out by hand from Tempo's documentation.

mod common;

use common::{BASE, MS, traces};
use lab_signals::AttrValue;
use lab_traceql::SearchResult;

fn search(query: &str, start: i64, end: i64, limit: usize, spss: usize) -> SearchResult {
    let parsed = lab_traceql::parse(query).unwrap_or_else(|e| panic!("{query}: {e}"));
    parsed.search(&traces()[..], start, end, limit, spss)
}

/// (trace number, matched span ids) for every matching trace, by trace.
fn run(query: &str) -> Vec<(u8, Vec<u8>)> {
    let result = search(query, 0, i64::MAX, 100, 100);
    assert_eq!(result.inspected_traces, 3);
    let mut out: Vec<(u8, Vec<u8>)> = result
        .traces
        .iter()
        .map(|m| {
            assert_eq!(m.spansets.len(), 1);
            let mut spans: Vec<u8> = m.spansets[0].spans.iter().map(|s| s.span_id.0[0]).collect();
            spans.sort();
            (m.trace_id.0[0], spans)
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
    let result = search(
        r#"{ name = "INSERT owlbear" } | select(span.db.response.status_code, resource.service.name)"#,
        0,
        i64::MAX,
        10,
        10,
    );
    let attrs = &result.traces[0].spansets[0].spans[0].attributes;
    assert_eq!(
        attrs,
        &[
            (
                "db.response.status_code".into(),
                AttrValue::Str("23502".into())
            ),
            (
                "service.name".into(),
                AttrValue::Str("mythical-server".into())
            ),
        ],
        "selected attributes are keyed by bare name, as Tempo does"
    );
}

#[test]
fn limit_keeps_the_newest_traces_and_spss_caps_listed_spans() {
    let result = search("{ }", 0, i64::MAX, 2, 1);
    assert_eq!(result.inspected_traces, 3);
    let ids: Vec<u8> = result.traces.iter().map(|t| t.trace_id.0[0]).collect();
    assert_eq!(ids, [3, 2], "newest first, then cut to the limit");
    let spanset = &result.traces[0].spansets[0];
    assert_eq!(spanset.spans.len(), 1);
    assert_eq!(spanset.matched, 3);
    assert_eq!(spanset.spans[0].span_id.0[0], 1, "the earliest span first");
    assert!(search("{ }", 0, i64::MAX, 0, 3).traces.is_empty());
}

#[test]
fn time_window_selects_traces_by_span_start() {
    let base = BASE;
    // Trace 1 starts at +0ms, trace 2 at +100ms, trace 3 at +200ms.
    let late = search("{ }", base + 150 * MS, i64::MAX, 10, 10);
    assert_eq!(late.inspected_traces, 1);
    assert_eq!(late.traces[0].trace_id.0[0], 3);
    let middle = search("{ }", base + 100 * MS, base + 105 * MS, 10, 10);
    assert_eq!(middle.traces.len(), 1);
    assert_eq!(middle.traces[0].trace_id.0[0], 2);
    assert!(search("{ }", 0, base - 1, 10, 10).traces.is_empty());
}

#[test]
fn trace_summary_names_the_root_and_its_duration() {
    let result = search("{ status = error }", 0, i64::MAX, 10, 10);
    let trace = &result.traces[0];
    assert_eq!(trace.root_service_name, "mythical-requester");
    assert_eq!(trace.root_trace_name, "requester");
    assert_eq!(trace.start, BASE);
    assert_eq!(trace.duration_ms, 40);
}

#[test]
fn literals_in_every_spelling() {
    assert_eq!(
        run("{ duration > 1499999us && duration < 1500001µs }"),
        [(3, vec![1])]
    );
    assert_eq!(run("{ duration = 900000000ns }"), [(3, vec![2])]);
    assert_eq!(
        run("{ traceDuration > 0.02m && kind = server }"),
        [(3, vec![1])]
    );
    assert_eq!(
        run("{ trace:duration < 1h && span:duration = 1500ms }"),
        [(3, vec![1])]
    );
    assert_eq!(run("{ name = `INSERT owlbear` }"), [(1, vec![4])]);
    assert_eq!(run(r#"{ name =~ `INSERT \w+` }"#), [(1, vec![4])]);
    assert_eq!(
        run("{ span.db.rows > -1 && span.db.rows < 2.6 }"),
        [(3, vec![2])]
    );
    assert_eq!(
        run("{ span.http.status_code > 499.5 }"),
        [(1, vec![2])],
        "an int attribute compares with a float literal"
    );
    assert_eq!(run("{ span.cache.hit = false }"), []);
    assert_eq!(run("{ span.cache.hit != false }"), [(2, vec![3])]);
    assert_eq!(
        run(r#"{ span.http.status_code = "500" }"#),
        [],
        "an int attribute is not equal to a string"
    );
}

#[test]
fn scoped_intrinsics_and_every_kind_and_status() {
    assert_eq!(
        run(r#"{ span:name = "requester" && span:status = ok }"#),
        [(2, vec![1])]
    );
    assert_eq!(
        run(r#"{ span:statusMessage = "boom" && span:kind = server }"#),
        [(1, vec![3])]
    );
    assert_eq!(
        run(
            r#"{ trace:rootName = "GET /:beast" && trace:rootService = "mythical-server" && name = "SELECT unicorn" }"#
        ),
        [(3, vec![3])]
    );
    assert_eq!(
        run("{ status = unset && kind = client }"),
        [(2, vec![2]), (3, vec![2, 3])]
    );
    assert_eq!(
        run("{ kind = internal || kind = producer || kind = consumer || kind = unspecified }"),
        []
    );
    assert_eq!(run("{ statusMessage != \"\" }"), [(1, vec![1, 2, 3, 4])]);
}

#[test]
fn quoted_attribute_names_and_unscoped_lookup() {
    let mut data = traces();
    data[1].spans[0]
        .attributes
        .0
        .push(("beast name".into(), AttrValue::Str("unicorn".into())));
    let hits = |q: &str| {
        lab_traceql::parse(q)
            .unwrap()
            .search(&data[..], 0, i64::MAX, 10, 10)
            .traces
            .len()
    };
    assert_eq!(hits(r#"{ span."beast name" = "unicorn" }"#), 1);
    assert_eq!(hits(r#"{ ."beast name" = "unicorn" }"#), 1);
    assert_eq!(hits(r#"{ resource."beast name" = "unicorn" }"#), 0);
    assert_eq!(hits(r#"{ resource.service.name = "mythical-server" }"#), 3);
    assert_eq!(
        hits(r#"{ span.service.name = "mythical-server" }"#),
        0,
        "service.name lives on the resource"
    );
}

#[test]
fn chained_pipelines_and_computed_values() {
    assert_eq!(
        run("{ } | { kind = client } | count() >= 2 | sum(duration) >= 1s"),
        [(3, vec![2, 3])]
    );
    assert_eq!(
        run("{ kind = client } | min(duration) <= 10ms"),
        [(1, vec![1, 2, 4]), (2, vec![1, 2])]
    );
    assert_eq!(
        run("{ kind = client } | count() != 3"),
        [(2, vec![1, 2]), (3, vec![2, 3])]
    );
    assert_eq!(
        run("{ kind = client } | count() < 3"),
        [(2, vec![1, 2]), (3, vec![2, 3])]
    );
    assert_eq!(
        run("{ span.db.rows != nil } | avg(span.db.rows) = 2.5"),
        [(3, vec![2])]
    );
    assert_eq!(
        run("{ } | avg(span.nothing) > 0"),
        [],
        "no values, no average"
    );
    let result = search(
        "{ kind = client } | count() > 2 | select(span.http.status_code)",
        0,
        i64::MAX,
        10,
        10,
    );
    let spanset = &result.traces[0].spansets[0];
    assert_eq!(
        spanset.attributes,
        [("count()".to_string(), AttrValue::Int(3))]
    );
    assert_eq!(spanset.matched, 3);
    let client_post = spanset.spans.iter().find(|s| s.span_id.0[0] == 2).unwrap();
    assert!(
        client_post
            .attributes
            .contains(&("http.status_code".into(), AttrValue::Int(500)))
    );
    let avg = search(
        "{ kind = client } | avg(duration) > 400ms",
        0,
        i64::MAX,
        10,
        10,
    );
    assert_eq!(
        avg.traces[0].spansets[0].attributes,
        [(
            "avg(duration)".to_string(),
            AttrValue::Float(500.0 * MS as f64)
        )]
    );
}

#[test]
fn filters_report_the_attributes_they_tested() {
    let result = search(
        "{ status = error && span.http.status_code = 500 }",
        0,
        i64::MAX,
        10,
        10,
    );
    let span = &result.traces[0].spansets[0].spans[0];
    assert_eq!(
        span.attributes,
        [
            ("status".to_string(), AttrValue::Str("error".into())),
            ("http.status_code".to_string(), AttrValue::Int(500)),
            (
                "service.name".to_string(),
                AttrValue::Str("mythical-requester".into())
            ),
        ]
    );
}

#[test]
fn errors_say_where_and_what() {
    let cases = [
        ("{ status = error", 16, "expecting `}`"),
        ("{ status == error }", 10, "unexpected `=`"),
        ("{ status <> error }", 10, "unexpected `>`"),
        ("{ foo = 1 }", 2, "unknown field `foo`"),
        ("{ span:foo = 1 }", 2, "unknown intrinsic `span:foo`"),
        ("{ trace:name = \"x\" }", 2, "unknown intrinsic"),
        (r#"{ .x =~ "(" }"#, 8, "invalid regex"),
        ("{ .x =~ 5 }", 8, "regex match needs a string"),
        ("{ duration > 5parsecs }", 13, "invalid duration"),
        ("{ duration > 1.2.3s }", 13, "invalid number"),
        (
            "{ status = 200 }",
            11,
            "cannot compare `status` (status) with a number",
        ),
        (
            "{ duration > \"1s\" }",
            13,
            "cannot compare `duration` (duration) with a string",
        ),
        ("{ kind > server }", 9, "compares only with = or !="),
        ("{ .x > nil }", 7, "nil compares only with = or !="),
        ("{ } | frobnicate()", 6, "unknown pipeline function"),
        ("{ } | count() > ", 16, "expecting a value"),
        ("{ } | count > 1", 12, "expecting `(`"),
        ("{ } >>", 6, "expecting `{` or `(`"),
        ("{ } { }", 4, "expecting end of query"),
        ("{ span. = 1 }", 2, "names no attribute"),
        (r#"{ name = "open }"#, 9, "unterminated string"),
        (
            "{ name = \"a\" & name = \"b\" }",
            13,
            "unexpected character `&`",
        ),
        ("", 0, "unexpected end of query"),
    ];
    for (query, offset, message) in cases {
        let err = lab_traceql::parse(query).expect_err(query);
        assert_eq!(err.offset, offset, "{query}: {err}");
        assert!(err.to_string().contains(message), "{query}: {err}");
        assert_eq!(err.line, 1);
        assert_eq!(err.column, offset + 1);
    }
}

#[test]
fn error_positions_count_lines_and_characters() {
    let err = lab_traceql::parse("{ name = \"µ\" &&\n  bogus = 1 }").unwrap_err();
    assert_eq!((err.line, err.column), (2, 3));
    assert_eq!(
        err.to_string(),
        "parse error at line 2, col 3: unknown field `bogus`: use an intrinsic (name, status, kind, duration, …) or a scoped attribute (span.x, resource.x, .x)"
    );
    let err = lab_traceql::parse("{ name = \"µµ\" } >> ").unwrap_err();
    assert_eq!(err.column, 20, "columns count characters, not bytes");
    assert_eq!(err.offset, 21);
}
