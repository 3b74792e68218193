//! LogQL over a fixed, hand-made set of streams shaped like the lab's, with
//! expected results worked out by hand from Loki's documentation.

use lab_logql::{Direction, QueryResult};
use lab_signals::{Labels, LogEntry, LogStream};

const T0: i64 = 1_700_000_000_000_000_000;
const S: i64 = 1_000_000_000;

fn stream(labels: &[(&str, &str)], lines: &[(i64, &str)]) -> LogStream {
    LogStream {
        labels: Labels::from_pairs(labels.iter().copied()),
        entries: lines
            .iter()
            .map(|(secs, line)| LogEntry {
                ts: T0 + secs * S,
                line: line.to_string(),
                metadata: Labels::from_pairs([("trace_id", "aaaa")]),
            })
            .collect(),
    }
}

/// Server info lines every 10 s (unicorn), server errors at 15 s and 35 s
/// (owlbear), a JSON app with one broken line.
fn streams() -> Vec<LogStream> {
    vec![
        stream(
            &[
                ("service_name", "mythical-server"),
                ("level", "info"),
                ("beast", "unicorn"),
            ],
            &[
                (
                    0,
                    "traceID=t0 http.method=GET endpoint=unicorn status=SUCCESS code=200 duration=12ms",
                ),
                (
                    10,
                    "traceID=t1 http.method=GET endpoint=unicorn status=SUCCESS code=200 duration=250ms",
                ),
                (
                    20,
                    "traceID=t2 http.method=POST endpoint=unicorn status=SUCCESS code=201 duration=3ms",
                ),
                (
                    30,
                    "traceID=t3 http.method=GET endpoint=unicorn status=SUCCESS code=200 duration=40ms",
                ),
            ],
        ),
        stream(
            &[
                ("service_name", "mythical-server"),
                ("level", "error"),
                ("beast", "owlbear"),
            ],
            &[
                (
                    15,
                    r#"traceID=e1 http.method=POST endpoint=owlbear status=FAILURE code=500 error="null value in column \"name\" of relation \"owlbear\" violates not-null constraint""#,
                ),
                (
                    35,
                    r#"traceID=e2 http.method=POST endpoint=owlbear status=FAILURE code=500 error="duplicate key""#,
                ),
            ],
        ),
        stream(
            &[("job", "json-app")],
            &[
                (5, r#"{"status":"ok","latency_ms":12,"req":{"path":"/a"}}"#),
                (6, "not json at all"),
            ],
        ),
    ]
}

fn logs(query: &str, limit: usize, direction: Direction) -> Vec<(i64, String, String)> {
    let expr = lab_logql::parse(query).unwrap_or_else(|e| panic!("{query}: {e}"));
    match lab_logql::query_range(&streams()[..], &expr, T0, T0 + 100 * S, S, limit, direction)
        .unwrap()
    {
        QueryResult::Streams(streams) => {
            let mut out: Vec<(i64, String, String)> = streams
                .iter()
                .flat_map(|s| {
                    s.entries
                        .iter()
                        .map(|e| ((e.ts - T0) / S, s.labels.to_string(), e.line.clone()))
                })
                .collect();
            match direction {
                Direction::Backward => out.sort_by_key(|e| std::cmp::Reverse(e.0)),
                Direction::Forward => out.sort_by_key(|e| e.0),
            }
            out
        }
        other => panic!("{query} gave {other:?}"),
    }
}

fn secs(query: &str) -> Vec<i64> {
    logs(query, 100, Direction::Forward)
        .into_iter()
        .map(|l| l.0)
        .collect()
}

#[test]
fn selectors_use_all_four_matchers() {
    assert_eq!(
        secs(r#"{service_name="mythical-server"}"#),
        [0, 10, 15, 20, 30, 35]
    );
    assert_eq!(
        secs(r#"{service_name="mythical-server", level!="info"}"#),
        [15, 35]
    );
    assert_eq!(secs(r#"{beast=~"uni.*|owl.*"}"#), [0, 10, 15, 20, 30, 35]);
    assert_eq!(
        secs(r#"{beast=~"uni"}"#),
        Vec::<i64>::new(),
        "regex matchers are anchored"
    );
    assert_eq!(secs(r#"{service_name=~".+", beast!~"uni.*"}"#), [15, 35]);
}

#[test]
fn line_filters_chain() {
    assert_eq!(
        secs(r#"{service_name="mythical-server"} |= "FAILURE""#),
        [15, 35]
    );
    assert_eq!(
        secs(r#"{service_name="mythical-server"} != "GET""#),
        [15, 20, 35]
    );
    assert_eq!(
        secs(r#"{service_name="mythical-server"} |~ "code=20[01]" != "POST""#),
        [0, 10, 30]
    );
    assert_eq!(
        secs(r#"{service_name="mythical-server"} !~ "status=(SUCCESS|FAILURE)""#),
        Vec::<i64>::new()
    );
}

#[test]
fn parsers_extract_labels_and_filters_use_them() {
    let found = logs(
        r#"{level="error"} | logfmt | traceID="e1""#,
        10,
        Direction::Forward,
    );
    assert_eq!(found.len(), 1);
    assert!(found[0].1.contains(r#"error="null value in column \"name\" of relation \"owlbear\" violates not-null constraint""#), "{}", found[0].1);
    assert!(
        found[0].1.contains(r#"http_method="POST""#),
        "dots become underscores: {}",
        found[0].1
    );
    assert_eq!(
        secs(r#"{beast="unicorn"} | logfmt | code >= 200 and code < 201"#),
        [0, 10, 30]
    );
    assert_eq!(
        secs(r#"{beast="unicorn"} | logfmt | code == 201 or http_method="GET", duration > 20ms"#),
        [10, 20, 30]
    );
    assert_eq!(
        secs(r#"{beast="unicorn"} | logfmt | duration > 100ms"#),
        [10]
    );
    assert_eq!(
        secs(r#"{beast="unicorn"} | logfmt | (code == 201 or duration < 20ms)"#),
        [0, 20]
    );
    assert_eq!(
        secs(r#"{service_name="mythical-server"} | trace_id="aaaa" | level="error""#),
        [15, 35],
        "metadata and stream labels filter too"
    );
    assert_eq!(
        secs(r#"{job="json-app"} | json | req_path="/a" and latency_ms > 10"#),
        [5]
    );
    assert_eq!(
        secs(r#"{job="json-app"} | json | __error__="JSONParserErr""#),
        [6]
    );
    assert_eq!(secs(r#"{job="json-app"} | json | __error__="""#), [5]);
    let kept = logs(
        r#"{job="json-app"} | json | __error__="" | keep status"#,
        10,
        Direction::Forward,
    );
    assert_eq!(kept[0].1, r#"{status="ok"}"#);
    let dropped = logs(
        r#"{beast="unicorn"} | logfmt | drop traceID, code, duration, http_method, endpoint, status"#,
        1,
        Direction::Forward,
    );
    assert_eq!(
        dropped[0].1,
        r#"{beast="unicorn", level="info", service_name="mythical-server"}"#
    );
}

#[test]
fn limit_and_direction_pick_the_newest_or_oldest() {
    let newest: Vec<i64> = logs(
        r#"{service_name="mythical-server"}"#,
        3,
        Direction::Backward,
    )
    .iter()
    .map(|l| l.0)
    .collect();
    assert_eq!(newest, [35, 30, 20]);
    let oldest: Vec<i64> = logs(r#"{service_name="mythical-server"}"#, 2, Direction::Forward)
        .iter()
        .map(|l| l.0)
        .collect();
    assert_eq!(oldest, [0, 10]);
}

fn matrix(query: &str, start: i64, end: i64, step: i64) -> Vec<(String, Vec<(i64, f64)>)> {
    let expr = lab_logql::parse(query).unwrap_or_else(|e| panic!("{query}: {e}"));
    match lab_logql::query_range(
        &streams()[..],
        &expr,
        T0 + start * S,
        T0 + end * S,
        step * S,
        100,
        Direction::Backward,
    )
    .unwrap()
    {
        QueryResult::Matrix(series) => series
            .into_iter()
            .map(|s| {
                (
                    s.labels.to_string(),
                    s.points
                        .into_iter()
                        .map(|(t, v)| ((t - T0) / S, v))
                        .collect(),
                )
            })
            .collect(),
        other => panic!("{query} gave {other:?}"),
    }
}

#[test]
fn range_functions_count_over_sliding_windows() {
    // Windows (t-20s, t] at t = 20, 40: unicorn lines at 0,10,20,30.
    let counts = matrix(r#"count_over_time({beast="unicorn"}[20s])"#, 20, 40, 20);
    assert_eq!(
        counts,
        [(
            r#"{beast="unicorn", level="info", service_name="mythical-server"}"#.into(),
            vec![(20, 2.0), (40, 1.0)]
        )]
    );
    let rate = matrix(r#"rate({level="error"}[20s])"#, 20, 40, 20);
    assert_eq!(rate[0].1, [(20, 0.05), (40, 0.05)]);
    let bytes = matrix(r#"bytes_over_time({job="json-app"}[10s])"#, 10, 10, 10);
    let both =
        r#"{"status":"ok","latency_ms":12,"req":{"path":"/a"}}"#.len() + "not json at all".len();
    assert_eq!(bytes[0].1, [(10, both as f64)]);
    let bytes_rate = matrix(r#"bytes_rate({job="json-app"}[10s])"#, 10, 10, 10);
    assert_eq!(bytes_rate[0].1, [(10, both as f64 / 10.0)]);
}

#[test]
fn aggregations_group_by_and_without_and_topk() {
    let by_level = matrix(
        r#"sum by (level) (count_over_time({service_name="mythical-server"}[40s]))"#,
        40,
        40,
        10,
    );
    assert_eq!(
        by_level,
        [
            (r#"{level="error"}"#.into(), vec![(40, 2.0)]),
            (r#"{level="info"}"#.into(), vec![(40, 3.0)])
        ]
    );
    let total = matrix(
        r#"sum(count_over_time({service_name="mythical-server"}[40s]))"#,
        40,
        40,
        10,
    );
    assert_eq!(total, [("{}".into(), vec![(40, 5.0)])]);
    let after = matrix(
        r#"sum(count_over_time({service_name="mythical-server"}[40s])) by (beast)"#,
        40,
        40,
        10,
    );
    assert_eq!(after.len(), 2);
    let without = matrix(
        r#"max without (level, service_name) (count_over_time({service_name="mythical-server"}[40s]))"#,
        40,
        40,
        10,
    );
    assert_eq!(
        without,
        [
            (r#"{beast="owlbear"}"#.into(), vec![(40, 2.0)]),
            (r#"{beast="unicorn"}"#.into(), vec![(40, 3.0)])
        ]
    );
    let parsed = matrix(
        r#"sum by (endpoint, status) (count_over_time({service_name="mythical-server"} | logfmt [40s]))"#,
        40,
        40,
        10,
    );
    assert_eq!(parsed.len(), 2);
    assert_eq!(
        parsed[0],
        (
            r#"{endpoint="owlbear", status="FAILURE"}"#.into(),
            vec![(40, 2.0)]
        )
    );
    for (op, expected) in [("avg", 2.5), ("min", 2.0), ("count", 2.0)] {
        let got = matrix(
            &format!(r#"{op}(count_over_time({{service_name="mythical-server"}}[40s]))"#),
            40,
            40,
            10,
        );
        assert_eq!(got[0].1, [(40, expected)], "{op}");
    }
    let top = matrix(
        r#"topk(1, count_over_time({service_name="mythical-server"}[40s]))"#,
        40,
        40,
        10,
    );
    assert_eq!(
        top,
        [(
            r#"{beast="unicorn", level="info", service_name="mythical-server"}"#.into(),
            vec![(40, 3.0)]
        )]
    );
    let bottom = matrix(
        r#"bottomk(1, count_over_time({service_name="mythical-server"}[40s]))"#,
        40,
        40,
        10,
    );
    assert_eq!(bottom[0].1, [(40, 2.0)]);
}

#[test]
fn instant_queries_give_vectors_and_refuse_log_queries() {
    let expr = lab_logql::parse(r#"count_over_time({level="error"}[1m])"#).unwrap();
    let QueryResult::Vector(samples) =
        lab_logql::query_instant(&streams()[..], &expr, T0 + 40 * S).unwrap()
    else {
        panic!("not a vector")
    };
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0].2, 2.0);
    let json = lab_logql::response_json(&QueryResult::Vector(samples));
    assert_eq!(json["data"]["resultType"], "vector");
    assert_eq!(json["data"]["result"][0]["value"][1], "2");
    assert_eq!(json["data"]["result"][0]["metric"]["level"], "error");
    let log = lab_logql::parse(r#"{level="error"}"#).unwrap();
    assert_eq!(
        lab_logql::query_instant(&streams()[..], &log, T0)
            .unwrap_err()
            .to_string(),
        "log queries are not supported as an instant query type, please change your query to a range query type"
    );
}

#[test]
fn the_answers_have_lokis_shapes() {
    let expr = lab_logql::parse(r#"{level="error"}"#).unwrap();
    let result = lab_logql::query_range(
        &streams()[..],
        &expr,
        T0,
        T0 + 100 * S,
        S,
        10,
        Direction::Backward,
    )
    .unwrap();
    let json = lab_logql::response_json(&result);
    assert_eq!(json["status"], "success");
    assert_eq!(json["data"]["resultType"], "streams");
    let values = &json["data"]["result"][0]["values"];
    assert_eq!(
        values[0][0],
        (T0 + 35 * S).to_string(),
        "newest first, nanoseconds as a string"
    );
    assert_eq!(json["data"]["result"][0]["stream"]["beast"], "owlbear");
    let m = lab_logql::parse(r#"rate({level="error"}[20s])"#).unwrap();
    let result = lab_logql::query_range(
        &streams()[..],
        &m,
        T0 + 20 * S,
        T0 + 20 * S,
        S,
        10,
        Direction::Backward,
    )
    .unwrap();
    let json = lab_logql::response_json(&result);
    assert_eq!(json["data"]["resultType"], "matrix");
    assert_eq!(json["data"]["result"][0]["values"][0][0], 1_700_000_020.0);
    assert_eq!(json["data"]["result"][0]["values"][0][1], "0.05");

    let labels = lab_logql::labels(&streams()[..], T0, T0 + 100 * S);
    assert_eq!(
        labels["data"],
        serde_json::json!(["beast", "job", "level", "service_name"])
    );
    let values = lab_logql::label_values(&streams()[..], "level", None, T0, T0 + 100 * S);
    assert_eq!(values["data"], serde_json::json!(["error", "info"]));
    let selector = lab_logql::parse(r#"{beast="owlbear"}"#).unwrap();
    let series = lab_logql::series(&streams()[..], &[selector], T0, T0 + 100 * S);
    assert_eq!(series["data"][0]["level"], "error");
}

#[test]
fn errors_say_where_and_what() {
    let cases = [
        ("{level=}", 7, "expecting STRING"),
        (r#"{level="x""#, 10, "expecting , or }"),
        (r#"{level="x"} | frobnicate"#, 14, "expecting a comparison"),
        (r#"{level="x"} | 5"#, 14, "a parser"),
        (r#"rate({level="x"})"#, 16, "expecting [range]"),
        (
            r#"count_over_time({level="x"}[5parsecs])"#,
            28,
            "invalid duration",
        ),
        (r#"{level=~"("}"#, 8, "invalid regex"),
        (r#"foo({level="x"}[1m])"#, 0, "unknown function `foo`"),
        (r#"topk(x, rate({a="b"}[1m]))"#, 5, "positive whole number"),
        (r#"{a=""}"#, 0, "at least one"),
    ];
    for (query, offset, message) in cases {
        let err = lab_logql::parse(query).expect_err(query);
        assert_eq!(err.offset, offset, "{query}: {err}");
        assert!(err.to_string().contains(message), "{query}: {err}");
    }
}
