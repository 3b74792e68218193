//! The signal views, read through the lab's one query client so they work
//! on whichever backend runs: TraceQL search and a trace's waterfall, LogQL
//! with trace ids linked, PromQL charts (RED per service and beast), and a
//! profile's flame graph. Every view shows the query it ran, and Explore's
//! link to the same query when Grafana runs.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::html::{self, escape};
use super::pages::Params;
use super::svg::{self, Bar, Series};
use super::{Console, Page, PageError};
use crate::query::{self, DataAnswer, Window};

/// The windows a view offers.
const WINDOWS: &[&str] = &["5m", "15m", "1h", "3h"];

/// The window `since` names (default 15 minutes back), ending now or, with
/// `ahead`, that far past now (for records stamped in the future).
fn window(params: &HashMap<String, String>) -> Result<(String, Window), String> {
    let since = params
        .get("since")
        .filter(|s| !s.trim().is_empty())
        .cloned()
        .unwrap_or_else(|| "15m".to_owned());
    let back = crate::parse_duration(since.trim()).map_err(|e| format!("since={since}: {e}"))?;
    let ahead = match params.get("ahead").filter(|s| !s.trim().is_empty()) {
        Some(ahead) => {
            crate::parse_duration(ahead.trim()).map_err(|e| format!("ahead={ahead}: {e}"))?
        }
        None => std::time::Duration::ZERO,
    };
    let now = lab_backend::params::now_nanos();
    Ok((
        since,
        Window {
            start: now - back.as_nanos() as i64,
            end: now + ahead.as_nanos() as i64 + 1_000_000_000,
        },
    ))
}

/// A search form: the query, the window (`since`, and `ahead` kept when the
/// page was asked for one), a button.
fn search_form(
    path: &str,
    label: &str,
    query: &str,
    params: &HashMap<String, String>,
    extra: &str,
) -> String {
    let since = params.get("since").map_or("15m", String::as_str);
    let ahead = params.get("ahead").map_or(String::new(), |a| {
        format!(
            r#"<input type="hidden" name="ahead" value="{a}"><span class="small">and {a} ahead of now</span>"#,
            a = escape(a)
        )
    });
    let mut options = String::new();
    for w in WINDOWS {
        let selected = if *w == since { " selected" } else { "" };
        let _ = write!(
            options,
            r#"<option value="{w}"{selected}>last {w}</option>"#
        );
    }
    if !WINDOWS.contains(&since) {
        let _ = write!(
            options,
            r#"<option value="{s}" selected>last {s}</option>"#,
            s = escape(since)
        );
    }
    format!(
        r#"<form class="search" method="get" action="{path}"><label for="q">{label}<input type="text" id="q" name="q" value="{}" spellcheck="false" autocomplete="off"></label>{extra}{ahead}<label class="small" for="since">Window<select id="since" name="since">{options}</select></label><button type="submit">Run</button></form>"#,
        escape(query)
    )
}

/// A view's page, or the same page with the error said under the form
/// (and a status that says whose fault it was).
fn view(path: &str, title: &str, head: String, result: Result<String, PageError>) -> Response {
    match result {
        Ok(body) => Html(html::page(path, title, &(head + &body))).into_response(),
        Err(e) => (
            e.status,
            Html(html::page(
                path,
                title,
                &format!("{head}{}", html::error_box(&e.message)),
            )),
        )
            .into_response(),
    }
}

fn bad_window(message: String) -> PageError {
    PageError::new(StatusCode::BAD_REQUEST, "Bad window", message)
}

fn explore(lab: &crate::state::LabState, datasource: (&str, &str), query: &str) -> Option<String> {
    Console::grafana(lab).map(|g| crate::grafana::explore(&g, datasource, query))
}

/// `GET /traces?q=…&since=…`: TraceQL search.
pub async fn traces(State(console): State<Arc<Console>>, Query(params): Params) -> Page {
    let lab = console.lab()?;
    let query = params
        .get("q")
        .filter(|q| !q.trim().is_empty())
        .cloned()
        .unwrap_or_else(|| "{ status = error }".to_owned());
    let head = search_form("/traces", "TraceQL", &query, &params, "")
        + &html::query_box(
            "TraceQL",
            &query,
            explore(&lab, crate::grafana::TEMPO, &query).as_deref(),
        );
    let result = async {
        let (_, window) = window(&params).map_err(bad_window)?;
        let client = console.client(&lab)?;
        let answer = client
            .traceql(&query, window, 50)
            .await
            .map_err(|e| PageError::from_backend("Bad query", &e))?;
        if answer.traces.is_empty() {
            return Ok(r#"<p id="no-results">No trace matched in this window.</p>"#.to_owned());
        }
        let rows: Vec<Vec<String>> = answer
            .traces
            .iter()
            .map(|t| {
                vec![
                    format!(
                        r#"<a class="trace-id mono" href="/trace/{}">{}</a>"#,
                        escape(&t.trace_id),
                        escape(&t.trace_id)
                    ),
                    crate::render::clock(t.start_time_unix_nano),
                    escape(&t.root_service_name),
                    escape(&t.root_trace_name),
                    format!("{} ms", t.duration_ms),
                    t.matched().to_string(),
                ]
            })
            .collect();
        Ok(format!(
            "<p>{} traces (newest first, at most 50).</p>{}",
            rows.len(),
            html::table(
                &[
                    "Trace",
                    "Start (UTC)",
                    "Root service",
                    "Root span",
                    "Duration",
                    "Matched spans"
                ],
                &rows
            )
        ))
    }
    .await;
    Ok(view("/traces", "Traces", head, result))
}

/// `GET /trace/{id}`: the waterfall, then each span's attributes, events
/// and error.
pub async fn trace(State(console): State<Arc<Console>>, Path(id): Path<String>) -> Page {
    let lab = console.lab()?;
    let id = id.trim().to_ascii_lowercase();
    if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            "Not a trace id",
            format!("`{id}` is not a trace id: a trace id is up to 32 hex digits"),
        ));
    }
    let client = console.client(&lab)?;
    let answer = client.trace(&id).await.map_err(|e| {
        let mut error = PageError::from_backend("Trace not found", &e);
        if error.status == StatusCode::NOT_FOUND {
            error.message = format!(
                "no trace {id} in the backend: it may not have arrived yet (spans come in batches every few seconds) or be older than the backend keeps"
            );
        }
        error
    })?;
    let spans = answer.tree();
    if spans.is_empty() {
        return Err(PageError::new(
            StatusCode::NOT_FOUND,
            "Trace not found",
            format!("the backend has trace {id} but no spans in it"),
        ));
    }
    let failed = spans.iter().filter(|(_, s)| s.error.is_some()).count();
    let services: std::collections::BTreeSet<&str> =
        spans.iter().map(|(_, s)| s.service.as_str()).collect();
    let mut body = format!(
        r#"<p><span class="mono">{id}</span>: {} spans in {}; {}.</p>"#,
        spans.len(),
        services.into_iter().collect::<Vec<_>>().join(", "),
        if failed == 0 {
            "no span failed".to_owned()
        } else {
            format!(r#"<span class="bad">{failed} failed</span>"#)
        }
    );
    body.push_str(&html::query_box(
        "Trace id",
        &id,
        explore(&lab, crate::grafana::TEMPO, &id).as_deref(),
    ));
    let logs = format!(r#"{{service_name=~"mythical-.*"}} |= "{id}""#);
    let _ = write!(
        body,
        r#"<p><a href="/logs?q={}&amp;since=3h">The log lines of this trace</a></p>"#,
        html::encode(&logs)
    );
    let bars: Vec<Bar> = spans
        .iter()
        .map(|(depth, s)| Bar {
            depth: *depth,
            label: format!("{} {}", s.service, s.name),
            start: s.start,
            end: s.end,
            error: s.error.is_some(),
            anchor: format!("span-{}", s.id),
        })
        .collect();
    body.push_str(r#"<h2>Waterfall</h2><div class="scroll">"#);
    body.push_str(&svg::waterfall(&bars));
    body.push_str("</div><h2>Spans</h2>");
    let trace_start = spans.iter().map(|(_, s)| s.start).min().unwrap_or(0);
    for (depth, s) in &spans {
        let _ = write!(
            body,
            r#"<details id="span-{}"{}><summary>{}{} <strong>{}</strong> — {}{}</summary>"#,
            escape(&s.id),
            if s.error.is_some() { " open" } else { "" },
            "· ".repeat(*depth),
            escape(&s.service),
            escape(&s.name),
            crate::render::duration(s.end - s.start),
            match &s.error {
                Some(e) => format!(r#" <span class="bad">failed: {}</span>"#, escape(e)),
                None => String::new(),
            }
        );
        let mut rows: Vec<Vec<String>> = vec![
            vec![
                "span id".into(),
                format!(r#"<span class="mono">{}</span>"#, escape(&s.id)),
            ],
            vec![
                "starts at".into(),
                format!("+{}", crate::render::duration(s.start - trace_start)),
            ],
        ];
        rows.extend(s.attributes.iter().map(|(k, v)| {
            vec![
                format!(r#"<span class="mono">{}</span>"#, escape(k)),
                html::link_trace_ids(v),
            ]
        }));
        body.push_str(&html::table(&["Attribute", "Value"], &rows));
        for (name, at, attrs) in &s.events {
            let _ = write!(
                body,
                "<p>Event <strong>{}</strong> at +{}</p>",
                escape(name),
                crate::render::duration(at - trace_start)
            );
            let rows: Vec<Vec<String>> = attrs
                .iter()
                .map(|(k, v)| {
                    vec![
                        format!(r#"<span class="mono">{}</span>"#, escape(k)),
                        escape(v),
                    ]
                })
                .collect();
            body.push_str(&html::table(&["Attribute", "Value"], &rows));
        }
        body.push_str("</details>");
    }
    Ok(Html(html::page(
        "/traces",
        &format!("Trace {}", &id[..id.len().min(12)]),
        &body,
    ))
    .into_response())
}

/// The series of a Prometheus-shaped matrix, named by their labels.
fn matrix(answer: &DataAnswer) -> Vec<Series> {
    answer
        .series()
        .iter()
        .map(|s| {
            let labels = s
                .labels
                .iter()
                .filter(|(k, _)| *k != "__name__")
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ");
            Series {
                name: if labels.is_empty() {
                    "value".into()
                } else {
                    labels
                },
                points: s
                    .values
                    .iter()
                    .filter_map(|p| Some((p.nanos as f64 / 1e9, p.number()?)))
                    .collect(),
            }
        })
        .collect()
}

/// `GET /logs?q=…&since=…`: LogQL, each trace id a link.
pub async fn logs(State(console): State<Arc<Console>>, Query(params): Params) -> Page {
    let lab = console.lab()?;
    let query = params
        .get("q")
        .filter(|q| !q.trim().is_empty())
        .cloned()
        .unwrap_or_else(|| r#"{service_name=~"mythical-.*"} |= "FAILURE""#.to_owned());
    let head = search_form("/logs", "LogQL", &query, &params, "")
        + &html::query_box(
            "LogQL",
            &query,
            explore(&lab, crate::grafana::LOKI, &query).as_deref(),
        );
    let result = async {
        let (_, window) = window(&params).map_err(bad_window)?;
        let client = console.client(&lab)?;
        let answer = client
            .logql(&query, window, 100, window.default_step_secs())
            .await
            .map_err(|e| PageError::from_backend("Bad query", &e))?;
        if answer.data.result_type == "matrix" {
            return Ok(svg::line_chart("logql", &query, "", &matrix(&answer)));
        }
        let mut lines: Vec<(i64, String, &str)> = answer
            .lines()
            .map(|(labels, line)| {
                let shown = ["service_name", "level", "beast"]
                    .iter()
                    .filter_map(|k| Some(format!("{k}={}", labels.get(*k)?)))
                    .collect::<Vec<_>>()
                    .join(" ");
                (line.nanos, shown, line.text.as_str())
            })
            .collect();
        if lines.is_empty() {
            return Ok(r#"<p id="no-results">No log line matched in this window.</p>"#.to_owned());
        }
        lines.sort_by_key(|l| std::cmp::Reverse(l.0));
        let rows: Vec<Vec<String>> = lines
            .iter()
            .map(|(ts, labels, line)| {
                vec![
                    crate::render::clock(*ts),
                    format!(r#"<span class="muted">{}</span>"#, escape(labels)),
                    format!(
                        r#"<span class="mono log-line">{}</span>"#,
                        html::link_trace_ids(line)
                    ),
                ]
            })
            .collect();
        Ok(format!(
            "<p>{} lines (newest first, at most 100). Trace ids link to their trace.</p>{}",
            rows.len(),
            html::table(&["Time (UTC)", "Stream", "Line"], &rows)
        ))
    }
    .await;
    Ok(view("/logs", "Logs", head, result))
}

/// The RED charts' label matchers in braces (nothing when no filter).
fn selector(service: &str, beast: &str, extra: &str) -> String {
    let mut parts = Vec::new();
    if !service.is_empty() {
        parts.push(format!(r#"service="{}""#, service.replace(['"', '\\'], "")));
    }
    if !beast.is_empty() {
        parts.push(format!(r#"beast="{}""#, beast.replace(['"', '\\'], "")));
    }
    if !extra.is_empty() {
        parts.push(extra.to_owned());
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(", "))
    }
}

/// The RED charts: (id, caption, unit, PromQL).
fn red_queries(service: &str, beast: &str) -> Vec<(&'static str, String, &'static str, String)> {
    let all = selector(service, beast, "");
    let errors = selector(service, beast, r#"status=~"5..""#);
    vec![
        (
            "rate",
            "Requests per second by status".to_owned(),
            "req/s",
            format!("sum by (status) (rate(mythical_request_times_count{all}[1m]))"),
        ),
        (
            "errors",
            "Errors (5xx) per second by beast".to_owned(),
            "err/s",
            format!("sum by (beast) (rate(mythical_request_times_count{errors}[1m]))"),
        ),
        (
            "p95",
            "p95 request time by beast".to_owned(),
            "ms",
            format!(
                "histogram_quantile(0.95, sum by (le, beast) (rate(mythical_request_times_bucket{all}[1m])))"
            ),
        ),
    ]
}

fn select(id: &str, label: &str, options: &[&str], chosen: &str, all: &str) -> String {
    let mut out = format!(
        r#"<label class="small" for="{id}">{label}<select id="{id}" name="{id}"><option value="">{all}</option>"#
    );
    for o in options {
        let selected = if *o == chosen { " selected" } else { "" };
        let _ = write!(out, r#"<option value="{o}"{selected}>{o}</option>"#);
    }
    out.push_str("</select></label>");
    out
}

/// `GET /metrics?service=…&beast=…&q=…&since=…`: the RED charts, and a
/// chart of any PromQL.
pub async fn metrics(State(console): State<Arc<Console>>, Query(params): Params) -> Page {
    let lab = console.lab()?;
    let service = params.get("service").cloned().unwrap_or_default();
    let beast = params.get("beast").cloned().unwrap_or_default();
    let query = params.get("q").cloned().unwrap_or_default();
    let beasts: Vec<&str> = mythical_storage::Beast::ALL
        .iter()
        .map(|b| b.as_str())
        .collect();
    let filters = select(
        "service",
        "Service",
        &["mythical-server", "mythical-requester"],
        &service,
        "all services",
    ) + &select("beast", "Beast", &beasts, &beast, "all beasts");
    let head = search_form("/metrics", "PromQL (optional)", &query, &params, &filters);
    let result = async {
        let (_, window) = window(&params).map_err(bad_window)?;
        let client = console.client(&lab)?;
        let step = window.default_step_secs();
        let mut charts: Vec<(&str, String, &str, String)> = Vec::new();
        if !query.trim().is_empty() {
            charts.push(("query", "Your query".to_owned(), "", query.clone()));
        }
        charts.extend(red_queries(&service, &beast));
        let answers = futures_util::future::join_all(
            charts
                .iter()
                .map(|(_, _, _, q)| client.promql_range(q, window, step)),
        )
        .await;
        let mut body = String::from(r#"<div class="charts">"#);
        for ((id, caption, unit, q), answer) in charts.iter().zip(answers) {
            let answer = answer.map_err(|e| PageError::from_backend("Bad query", &e))?;
            let chart = svg::line_chart(id, caption, unit, &matrix(&answer));
            // The query goes inside the figure, under its chart.
            let chart = chart.replacen(
                "</figure>",
                &format!(
                    "{}</figure>",
                    html::query_box(
                        "PromQL",
                        q,
                        explore(&lab, crate::grafana::MIMIR, q).as_deref()
                    )
                ),
                1,
            );
            body.push_str(&chart);
        }
        body.push_str("</div>");
        Ok(body)
    }
    .await;
    Ok(view("/metrics", "Metrics", head, result))
}

/// The profiles the services push, as Pyroscope names their types.
const PROFILE_TYPES: [(&str, &str); 3] = [
    ("CPU", query::CPU_PROFILE),
    ("memory in use", query::IN_USE_PROFILE),
    ("memory allocated", query::ALLOCATED_PROFILE),
];

/// Links to each profile type of each service over the same window; the
/// one shown is not a link.
fn profile_choices(query: &str, params: &HashMap<String, String>) -> String {
    let since = params.get("since").map_or("15m", String::as_str);
    let mut out = String::from(r#"<p class="small" id="profile-choices">"#);
    for service in ["mythical-server", "mythical-requester"] {
        let _ = write!(out, "{service}: ");
        for (i, (label, profile_type)) in PROFILE_TYPES.iter().enumerate() {
            let selector = query::profile_selector(profile_type, service);
            let sep = if i == 0 { "" } else { " · " };
            if selector == query {
                let _ = write!(out, "{sep}<strong>{label}</strong>");
            } else {
                let _ = write!(
                    out,
                    r#"{sep}<a href="/profiles?q={}&amp;since={}">{label}</a>"#,
                    html::encode(&selector),
                    html::encode(since)
                );
            }
        }
        out.push_str("<br>");
    }
    out.push_str("</p>");
    out
}

/// `GET /profiles?q=…&since=…`: a profile's flame graph.
pub async fn profiles(State(console): State<Arc<Console>>, Query(params): Params) -> Page {
    let lab = console.lab()?;
    let query = params
        .get("q")
        .filter(|q| !q.trim().is_empty())
        .cloned()
        .unwrap_or_else(|| query::profile_selector(query::CPU_PROFILE, "mythical-server"));
    let head = search_form("/profiles", "Profile selector", &query, &params, "")
        + &profile_choices(&query, &params)
        + &html::query_box(
            "Profile",
            &query,
            explore(&lab, crate::grafana::PYROSCOPE, &query).as_deref(),
        );
    let result = async {
        let (_, window) = window(&params).map_err(bad_window)?;
        let client = console.client(&lab)?;
        let answer = client
            .profile_render(&query, window, 512)
            .await
            .map_err(|e| PageError::from_backend("Bad selector", &e))?;
        let flame = &answer.flamebearer;
        let unit = match answer.metadata.units.as_str() {
            "" => "samples",
            units => units,
        };
        let mut body = String::from(
            r#"<p>Each bar is a function; its width is its share of the whole (CPU time, or bytes of memory), its children are what it called. Hover (or focus) a bar for its numbers.</p><div class="scroll">"#,
        );
        body.push_str(&svg::flame_graph(&flame.names, &flame.levels, unit));
        body.push_str("</div>");
        Ok(body)
    }
    .await;
    Ok(view("/profiles", "Profiles", head, result))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spans_come_parents_first_with_their_events_and_error() {
        let answer: query::TraceAnswer = serde_json::from_value(json!({"trace": {"resourceSpans": [
            {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "mythical-server"}}]},
             "scopeSpans": [{"spans": [
                {"spanId": "bbbbbbbbbbbbbbbb", "parentSpanId": "aaaaaaaaaaaaaaaa", "name": "INSERT owlbear",
                 "startTimeUnixNano": "1010", "endTimeUnixNano": "1030",
                 "attributes": [{"key": "db.response.status_code", "value": {"stringValue": "23502"}}],
                 "events": [{"name": "exception", "timeUnixNano": "1020",
                             "attributes": [{"key": "exception.message", "value": {"stringValue": "null value"}}]}],
                 "status": {"code": "STATUS_CODE_ERROR", "message": "null value"}},
                {"spanId": "aaaaaaaaaaaaaaaa", "name": "POST /:beast", "startTimeUnixNano": "1000", "endTimeUnixNano": "1040", "status": {}},
             ]}]}
        ]}}))
        .unwrap();
        let spans = answer.tree();
        assert_eq!(spans.len(), 2);
        assert_eq!((spans[0].0, spans[0].1.name.as_str()), (0, "POST /:beast"));
        assert_eq!(
            (spans[1].0, spans[1].1.name.as_str()),
            (1, "INSERT owlbear")
        );
        assert_eq!(spans[1].1.error.as_deref(), Some("null value"));
        assert_eq!(spans[1].1.events[0].2[0].1, "null value");
        assert_eq!(
            spans[1].1.attributes[0],
            ("db.response.status_code".into(), "23502".into())
        );
    }

    #[test]
    fn every_profile_type_of_each_service_is_one_click_away() {
        let shown = r#"memory:inuse_space:bytes::{service_name="mythical-server"}"#;
        let params = HashMap::from([("since".to_owned(), "1h".to_owned())]);
        let links = profile_choices(shown, &params);
        assert!(links.contains("<strong>memory in use</strong>"), "{links}");
        assert_eq!(links.matches("<a href=").count(), 5, "{links}");
        assert!(
            links.contains(&format!(
                "/profiles?q={}&amp;since=1h",
                html::encode(r#"memory:alloc_space:bytes::{service_name="mythical-requester"}"#)
            )),
            "{links}"
        );
    }

    #[test]
    fn a_window_may_reach_ahead_of_now_and_the_form_keeps_it() {
        let params = HashMap::from([
            ("since".to_owned(), "0s".to_owned()),
            ("ahead".to_owned(), "15m".to_owned()),
        ]);
        let (_, w) = window(&params).unwrap();
        let now = lab_backend::params::now_nanos();
        assert!(w.start <= now && w.end >= now + 899_000_000_000, "{w:?}");
        let form = search_form("/logs", "LogQL", "{}", &params, "");
        assert!(form.contains(r#"name="ahead" value="15m""#), "{form}");
        let bad = HashMap::from([("ahead".to_owned(), "soon".to_owned())]);
        assert!(window(&bad).unwrap_err().contains("ahead=soon"));
    }

    #[test]
    fn a_matrix_reads_as_named_series() {
        let answer: DataAnswer = serde_json::from_value(json!({"data": {"resultType": "matrix", "result": [
            {"metric": {"__name__": "x", "status": "500"}, "values": [[1700000000, "0.5"], [1700000015, "NaN"]]},
        ]}}))
        .unwrap();
        let series = matrix(&answer);
        assert_eq!(series[0].name, "status=500");
        assert_eq!(series[0].points[0], (1700000000.0, 0.5));
        assert!(series[0].points[1].1.is_nan());
    }

    #[test]
    fn the_red_queries_filter_by_service_and_beast() {
        let queries = red_queries("mythical-server", "owlbear");
        assert_eq!(
            queries[1].3,
            r#"sum by (beast) (rate(mythical_request_times_count{service="mythical-server", beast="owlbear", status=~"5.."}[1m]))"#
        );
        assert_eq!(
            red_queries("", "")[0].3,
            "sum by (status) (rate(mythical_request_times_count[1m]))"
        );
    }
}
