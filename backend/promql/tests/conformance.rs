//! PromQL over a fixed, hand-made set of series, with expected results
//! worked out by hand (in the comments) from Prometheus' documentation.

use lab_promql::{QueryError, QueryValue};
use lab_signals::{Exemplar, Labels, Sample, Series};

const S: i64 = 1000;

fn series(labels: &[(&str, &str)], points: &[(i64, f64)]) -> Series {
    Series {
        labels: Labels::from_pairs(labels.iter().copied()),
        samples: points
            .iter()
            .map(|&(t, v)| Sample { t: t * S, v })
            .collect(),
        exemplars: Vec::<Exemplar>::new(),
    }
}

/// Counters every 15 s (instance b resets at 45 s), a gauge every 30 s, a
/// classic histogram at 0 s and 60 s, and an info metric.
fn data() -> Vec<Series> {
    let mut all = vec![
        series(
            &[
                ("__name__", "http_requests_total"),
                ("job", "api"),
                ("instance", "a"),
            ],
            &[(0, 0.0), (15, 10.0), (30, 20.0), (45, 30.0), (60, 40.0)],
        ),
        series(
            &[
                ("__name__", "http_requests_total"),
                ("job", "api"),
                ("instance", "b"),
            ],
            &[(0, 0.0), (15, 10.0), (30, 20.0), (45, 5.0), (60, 15.0)],
        ),
        series(
            &[("__name__", "temperature"), ("room", "x")],
            &[(0, 20.0), (30, 22.0), (60, 21.0)],
        ),
        series(
            &[
                ("__name__", "instance_info"),
                ("instance", "a"),
                ("team", "blue"),
            ],
            &[(0, 1.0), (60, 1.0)],
        ),
    ];
    let buckets = [
        ("10", 1.0),
        ("20", 3.0),
        ("50", 6.0),
        ("100", 8.0),
        ("200", 10.0),
        ("500", 10.0),
        ("1000", 10.0),
        ("2000", 10.0),
        ("4000", 10.0),
        ("8000", 10.0),
        ("16000", 10.0),
        ("+Inf", 10.0),
    ];
    for (le, count) in buckets {
        all.push(series(
            &[
                ("__name__", "mythical_request_times_bucket"),
                ("le", le),
                ("method", "GET"),
                ("status", "200"),
                ("beast", "unicorn"),
            ],
            &[(0, 0.0), (60, count)],
        ));
    }
    all
}

/// The instant vector of `query` at `t` seconds, as (labels, value).
fn at(query: &str, t: i64) -> Vec<(String, f64)> {
    match lab_promql::instant_query(&data()[..], query, t * S)
        .unwrap_or_else(|e| panic!("{query}: {e}"))
    {
        QueryValue::Vector(_, samples) => {
            let mut out: Vec<(String, f64)> = samples
                .into_iter()
                .map(|(l, v)| (l.to_string(), v))
                .collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out
        }
        QueryValue::Scalar(_, v) => vec![("scalar".into(), v)],
        other => panic!("{query}: {other:?}"),
    }
}

fn one(query: &str, t: i64) -> f64 {
    let found = at(query, t);
    assert_eq!(found.len(), 1, "{query}: {found:?}");
    found[0].1
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn selectors_lookback_and_offset() {
    assert_eq!(one("temperature", 60), 21.0);
    // The latest sample at or before 50 s is the one at 30 s.
    assert_eq!(one("temperature", 50), 22.0);
    assert_eq!(one("temperature offset 30s", 60), 22.0);
    // Nothing in the five minutes before: no result.
    assert!(at("temperature", 400).is_empty());
    assert_eq!(at(r#"http_requests_total{instance=~"a|b"}"#, 60).len(), 2);
    assert_eq!(at(r#"http_requests_total{instance!="a"}"#, 60)[0].1, 15.0);
    assert_eq!(at(r#"{__name__=~"http.*", instance!~"b"}"#, 60)[0].1, 40.0);
}

#[test]
fn counter_functions_extrapolate_and_handle_resets() {
    // a: 10, 20, 30, 40 at 15..60 s in (0, 60]: +30 over 45 s, extrapolated
    // to the 60 s window (the gap to the start, 15 s, is under 1.1 × the
    // 15 s average) → 40; rate = 40 / 60.
    assert!(close(
        one(r#"increase(http_requests_total{instance="a"}[1m])"#, 60),
        40.0
    ));
    assert!(close(
        one(r#"rate(http_requests_total{instance="a"}[1m])"#, 60),
        40.0 / 60.0
    ));
    // b: 10, 20, 5, 15: 15 − 10 + 20 (the reset) = 25, × 60/45.
    assert!(close(
        one(r#"increase(http_requests_total{instance="b"}[1m])"#, 60),
        25.0 * 60.0 / 45.0
    ));
    // irate: the last two samples; across a reset, the new value.
    assert!(close(
        one(r#"irate(http_requests_total{instance="b"}[1m])"#, 60),
        10.0 / 15.0
    ));
    assert!(close(
        one(r#"irate(http_requests_total{instance="b"}[1m])"#, 45),
        5.0 / 15.0
    ));
    assert!(close(
        one(r#"idelta(http_requests_total{instance="b"}[1m])"#, 60),
        10.0
    ));
    // delta of the gauge: 22 → 21 over 30 s, extrapolated to 60 s → −2.
    assert!(close(one("delta(temperature[1m])", 60), -2.0));
    // Range functions drop the metric name.
    assert_eq!(
        at(r#"rate(http_requests_total{instance="a"}[1m])"#, 60)[0].0,
        r#"{instance="a", job="api"}"#
    );
}

#[test]
fn over_time_functions() {
    // (0, 60] holds 22 and 21.
    assert_eq!(one("avg_over_time(temperature[1m])", 60), 21.5);
    assert_eq!(one("max_over_time(temperature[1m])", 60), 22.0);
    assert_eq!(one("min_over_time(temperature[1m])", 60), 21.0);
    assert_eq!(one("sum_over_time(temperature[1m])", 60), 43.0);
    assert_eq!(one("count_over_time(temperature[1m])", 60), 2.0);
    assert_eq!(one("quantile_over_time(0.5, temperature[1m])", 60), 21.5);
    assert_eq!(one("stddev_over_time(temperature[1m])", 60), 0.5);
    assert_eq!(
        at("last_over_time(temperature[1m])", 60),
        [(r#"{__name__="temperature", room="x"}"#.into(), 21.0)]
    );
}

#[test]
fn aggregations_by_and_without() {
    assert!(close(
        one("sum by (job) (rate(http_requests_total[1m]))", 60),
        40.0 / 60.0 + 25.0 * 60.0 / 45.0 / 60.0
    ));
    assert_eq!(at("sum(http_requests_total)", 60), [("{}".into(), 55.0)]);
    assert_eq!(
        at("max without (instance) (http_requests_total)", 60),
        [(r#"{job="api"}"#.into(), 40.0)]
    );
    assert_eq!(one("count(http_requests_total)", 60), 2.0);
    assert_eq!(one("avg(http_requests_total)", 60), 27.5);
    assert_eq!(one("min(http_requests_total)", 60), 15.0);
    assert_eq!(one("group(http_requests_total)", 60), 1.0);
    assert_eq!(one("stddev(http_requests_total)", 60), 12.5);
    assert_eq!(one("quantile(0.5, http_requests_total)", 60), 27.5);
    assert_eq!(
        at("topk(1, http_requests_total)", 60),
        [(
            r#"{__name__="http_requests_total", instance="a", job="api"}"#.into(),
            40.0
        )]
    );
    assert_eq!(at("bottomk(1, http_requests_total)", 60)[0].1, 15.0);
    assert_eq!(at("sum by (instance) (http_requests_total)", 60).len(), 2);
}

#[test]
fn histogram_quantile_interpolates_in_the_bucket() {
    // 10 observations; the median's rank 5 falls in (20, 50] holding 3 →
    // 20 + 30 × (5 − 3) / 3 = 40.
    assert!(close(
        one(
            "histogram_quantile(0.5, sum by (le) (mythical_request_times_bucket))",
            60
        ),
        40.0
    ));
    // Rank 9.9 falls in (100, 200] holding 2 → 100 + 100 × 1.9 / 2 = 195.
    assert!(close(
        one(
            "histogram_quantile(0.99, sum by (le) (mythical_request_times_bucket))",
            60
        ),
        195.0
    ));
    let grouped = at(
        "histogram_quantile(0.5, sum by (le, beast) (mythical_request_times_bucket))",
        60,
    );
    assert_eq!(grouped[0].0, r#"{beast="unicorn"}"#);
    // No observations: NaN, as Prometheus answers.
    assert!(one("histogram_quantile(0.5, mythical_request_times_bucket)", 0).is_nan());
    // The benchmark's query shape evaluates.
    let q =
        "histogram_quantile(0.95, sum by (le, beast) (rate(mythical_request_times_bucket[2m])))";
    assert!(one(q, 60) > 100.0);
}

#[test]
fn binary_operators_with_scalars_and_matching() {
    assert_eq!(
        at(r#"http_requests_total{instance="a"} * 2"#, 60),
        [(r#"{instance="a", job="api"}"#.into(), 80.0)]
    );
    assert_eq!(
        at(r#"100 - http_requests_total{instance="a"}"#, 60)[0].1,
        60.0
    );
    assert_eq!(
        at("http_requests_total > 35", 60),
        [(
            r#"{__name__="http_requests_total", instance="a", job="api"}"#.into(),
            40.0
        )]
    );
    assert_eq!(
        at("http_requests_total > bool 35", 60),
        [
            (r#"{instance="a", job="api"}"#.into(), 1.0),
            (r#"{instance="b", job="api"}"#.into(), 0.0)
        ]
    );
    assert_eq!(one("2 ^ 3 + 1", 60), 9.0);
    assert_eq!(one("7 % 4", 60), 3.0);
    let ratio = at("http_requests_total / on(instance) http_requests_total", 60);
    assert_eq!(
        ratio,
        [
            (r#"{instance="a"}"#.into(), 1.0),
            (r#"{instance="b"}"#.into(), 1.0)
        ]
    );
    let ignoring = at(
        "http_requests_total - ignoring(job) http_requests_total",
        60,
    );
    assert_eq!(ignoring.len(), 2);
    let joined = at(
        "http_requests_total * on(instance) group_left(team) instance_info",
        60,
    );
    assert_eq!(
        joined,
        [(r#"{instance="a", job="api", team="blue"}"#.into(), 40.0)]
    );
    assert_eq!(
        at("http_requests_total and on(instance) instance_info", 60).len(),
        1
    );
    assert_eq!(
        at("http_requests_total unless on(instance) instance_info", 60)[0].1,
        15.0
    );
    assert_eq!(at("http_requests_total or temperature", 60).len(), 3);
}

#[test]
fn other_functions() {
    assert_eq!(one("abs(-temperature)", 60), 21.0);
    assert_eq!(one("clamp_max(temperature, 10)", 60), 10.0);
    assert_eq!(one("clamp(temperature, 0, 5)", 60), 5.0);
    assert_eq!(one("ceil(temperature / 2)", 60), 11.0);
    assert_eq!(one("floor(temperature / 2)", 60), 10.0);
    assert_eq!(one("round(temperature / 4)", 60), 5.0);
    assert_eq!(one("sqrt(vector(16))", 60), 4.0);
    assert_eq!(one("time()", 60), 60.0);
    assert_eq!(one("scalar(temperature)", 60), 21.0);
    assert_eq!(one("timestamp(temperature)", 60), 60.0);
    let replaced = at(
        r#"label_replace(temperature, "where", "room-$1", "room", "(.*)")"#,
        60,
    );
    assert_eq!(
        replaced[0].0,
        r#"{__name__="temperature", room="x", where="room-x"}"#
    );
    let joined = at(
        r#"label_join(instance_info, "both", "/", "instance", "team")"#,
        60,
    );
    assert!(joined[0].0.contains(r#"both="a/blue""#));
    assert_eq!(at("absent(nonexistent_metric)", 60), [("{}".into(), 1.0)]);
    assert!(at("absent(temperature)", 60).is_empty());
    assert_eq!(at("sort_desc(http_requests_total)", 60)[0].1, 40.0);
}

#[test]
fn range_queries_step_through_the_window() {
    let QueryValue::Matrix(series) = lab_promql::range_query(
        &data()[..],
        r#"http_requests_total{instance="a"}"#,
        0,
        60 * S,
        30 * S,
    )
    .unwrap() else {
        panic!("not a matrix");
    };
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].1, [(0, 0.0), (30 * S, 20.0), (60 * S, 40.0)]);
    let json = lab_promql::response_json(&QueryValue::Matrix(series));
    assert_eq!(json["status"], "success");
    assert_eq!(json["data"]["resultType"], "matrix");
    assert_eq!(
        json["data"]["result"][0]["values"][1],
        serde_json::json!([30.0, "20"])
    );
    assert_eq!(json["data"]["result"][0]["metric"]["instance"], "a");

    let scalar = lab_promql::range_query(&data()[..], "1 + 1", 0, 30 * S, 15 * S).unwrap();
    assert!(matches!(&scalar, QueryValue::Matrix(m) if m[0].1.len() == 3));
    let too_many = lab_promql::range_query(&data()[..], "up", 0, 100_000 * S, S).unwrap_err();
    assert!(matches!(too_many, QueryError::BadRange(_)));
    let vector = lab_promql::instant_query(&data()[..], "temperature", 60 * S).unwrap();
    let json = lab_promql::response_json(&vector);
    assert_eq!(
        json["data"]["result"][0]["value"],
        serde_json::json!([60.0, "21"])
    );
}

#[test]
fn an_instant_range_vector_is_the_raw_samples_of_its_window() {
    // At 60 s, [30s] holds the samples after 30 s up to 60 s: 45 and 60,
    // at their own times, with their names (Prometheus keeps __name__ for
    // a bare selector).
    let QueryValue::Matrix(series) = lab_promql::instant_query(
        &data()[..],
        r#"http_requests_total{instance="b"}[30s]"#,
        60 * S,
    )
    .unwrap() else {
        panic!("not a matrix");
    };
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].0.get("__name__"), Some("http_requests_total"));
    assert_eq!(series[0].1, [(45 * S, 5.0), (60 * S, 15.0)]);
    // offset moves the window; a window with no samples has no series.
    let QueryValue::Matrix(earlier) =
        lab_promql::instant_query(&data()[..], "temperature[20s] offset 30s", 60 * S).unwrap()
    else {
        panic!("not a matrix");
    };
    assert_eq!(earlier[0].1, [(30 * S, 22.0)]);
    let QueryValue::Matrix(none) =
        lab_promql::instant_query(&data()[..], "temperature[10s]", 50 * S).unwrap()
    else {
        panic!("not a matrix");
    };
    assert!(none.is_empty());
    // Inside an expression it stays a type error, and a range query of
    // one is refused.
    assert!(lab_promql::instant_query(&data()[..], "temperature[1m] + 1", 60 * S).is_err());
    assert!(lab_promql::range_query(&data()[..], "temperature[1m]", 0, 60 * S, 15 * S).is_err());
}

#[test]
fn errors_answer_as_prometheus_does() {
    let parse = lab_promql::instant_query(&data()[..], "sum(rate(x[1m])", 0).unwrap_err();
    let (status, body) = lab_promql::error_response(&parse);
    assert_eq!(status, 400);
    assert_eq!(body["status"], "error");
    assert_eq!(body["errorType"], "bad_data");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid parameter \"query\": "),
        "{body}"
    );
    let wrong_type =
        lab_promql::instant_query(&data()[..], "rate(http_requests_total)", 0).unwrap_err();
    assert_eq!(lab_promql::error_response(&wrong_type).0, 400);
    let unsupported =
        lab_promql::instant_query(&data()[..], "max_over_time(temperature[5m:1m])", 0).unwrap_err();
    assert_eq!(lab_promql::error_response(&unsupported).0, 422);
    let duplicate = lab_promql::instant_query(
        &data()[..],
        "http_requests_total + on(job) http_requests_total",
        60 * S,
    )
    .unwrap_err();
    assert!(
        duplicate
            .to_string()
            .contains("many-to-many matching not allowed"),
        "{duplicate}"
    );
}
