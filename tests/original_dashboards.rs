//! The original's own dashboards and Grafana's walkthrough of this fault,
//! on a native lab's telemetry, unchanged: every query of every panel of
//! intro-to-mltp's three dashboards (fixtures/intro-to-mltp-dashboards.yaml;
//! template variables filled in as Grafana fills them, from the backend's
//! own tag and label values) answers with data while the reference fault
//! runs, and the three TraceQL queries of Tempo's "Diagnose errors with
//! traces", typed verbatim, give what that page says they give.
//!
//! The fault runs for a fixed time before anything is asked, and each
//! query is asked once: no query is retried until it happens to answer.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lab_testkit::{Down, LabCli};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
struct Dashboard {
    panels: Vec<Panel>,
    variables: Vec<Variable>,
}

#[derive(Debug, Deserialize)]
struct Panel {
    panel: String,
    datasource: String,
    query: String,
}

#[derive(Debug, Deserialize)]
struct Variable {
    name: String,
    datasource: String,
    /// A Tempo variable: the values of this attribute.
    tag: Option<String>,
    /// A Prometheus variable: `label_values(<selector>, <label>)`.
    query: Option<String>,
}

fn dashboards() -> BTreeMap<String, Dashboard> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/intro-to-mltp-dashboards.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The lab's query API (Tempo's, Loki's and Prometheus' paths in one).
fn query_url(lab: &LabCli) -> String {
    let status: Value = serde_json::from_str(&lab.ok(&["status", "--json"])).unwrap();
    status["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "backend")
        .and_then(|c| c["endpoints"]["query"].as_str())
        .expect("the native lab's backend query endpoint")
        .to_owned()
}

async fn get(base: &str, path: &str, params: &[(&str, String)]) -> Value {
    let response = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .query(params)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(
        status.is_success(),
        "{path} {params:?} answered {status}: {text}"
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"))
}

/// A multi-value variable set to "All", as Grafana writes it into a
/// regex matcher: every value, regex-escaped, as one alternation. The
/// Prometheus and Loki datasources escape with a doubled backslash, since
/// the regex sits inside a quoted string of the query.
fn all_of(values: &[String], datasource: &str) -> String {
    let escape = if datasource == "tempo" { "\\" } else { "\\\\" };
    let escaped: Vec<String> = values
        .iter()
        .map(|v| {
            v.chars()
                .map(|c| {
                    if r"\.+*?()|[]{}^$".contains(c) {
                        format!("{escape}{c}")
                    } else {
                        c.to_string()
                    }
                })
                .collect()
        })
        .collect();
    format!("({})", escaped.join("|"))
}

async fn variable_values(
    base: &str,
    variable: &Variable,
    window: &[(&str, String)],
) -> Vec<String> {
    match variable.datasource.as_str() {
        "tempo" => {
            // As Grafana's Tempo datasource asks: the tag's scope from the
            // v2 tag list first, then the values of `<scope>.<tag>`.
            let tag = variable.tag.as_deref().unwrap();
            let tags = get(base, "/api/v2/search/tags", window).await;
            let scope = tags["scopes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|s| {
                    s["tags"]
                        .as_array()
                        .is_some_and(|t| t.iter().any(|t| t == tag))
                })
                .and_then(|s| s["name"].as_str())
                .unwrap_or_else(|| panic!("{tag} is in no scope of {tags}"));
            let scoped = if scope == "intrinsic" {
                tag.to_owned()
            } else {
                format!("{scope}.{tag}")
            };
            let answer = get(base, &format!("/api/v2/search/tag/{scoped}/values"), window).await;
            answer["tagValues"]
                .as_array()
                .unwrap_or_else(|| panic!("{tag}: no tagValues in {answer}"))
                .iter()
                .filter_map(|v| v["value"].as_str().map(str::to_owned))
                .collect()
        }
        "prometheus" => {
            // label_values(<selector>, <label>): what Grafana asks as
            // /api/v1/label/<label>/values?match[]=<selector>.
            let query = variable.query.as_deref().unwrap();
            let inner = query
                .trim()
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .unwrap_or_else(|| panic!("{query}: not label_values(…)"));
            let (selector, label) = inner.rsplit_once(',').unwrap();
            let mut params = vec![("match[]", selector.trim().to_owned())];
            params.extend(window.iter().cloned());
            let answer = get(
                base,
                &format!("/api/v1/label/{}/values", label.trim()),
                &params,
            )
            .await;
            answer["data"]
                .as_array()
                .unwrap_or_else(|| panic!("{query}: {answer}"))
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        }
        _ => Vec::new(),
    }
}

fn fill(query: &str, values: &BTreeMap<String, Vec<String>>, datasource: &str) -> String {
    let mut filled = query.replace("$__rate_interval", "1m");
    for (name, values) in values {
        let value = &all_of(values, datasource);
        filled = filled
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    filled
}

fn has_data(answer: &Value) -> bool {
    if let Some(result) = answer["data"]["result"].as_array() {
        return !result.is_empty();
    }
    answer["traces"].as_array().is_some_and(|t| !t.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_originals_dashboards_and_tempos_walkthrough_work_on_a_native_lab() {
    let dir = tempfile::tempdir().unwrap();
    let lab = LabCli::new(env!("CARGO_BIN_EXE_lab"), dir.path().join("lab"));
    let _down = Down(&lab);
    lab.ok(&["up", "--runtime", "native"]);
    lab.ok(&["traffic", "--rate", "20"]);
    lab.ok(&["fault", "inject", "null-name", "--rate", "0.5"]);
    // Long enough for several of the generator's collections and scrapes,
    // so the rate() and increase() panels have two points to compare.
    tokio::time::sleep(Duration::from_secs(30)).await;

    let base = query_url(&lab);
    let window = vec![
        ("start", (now_secs() - 600).to_string()),
        ("end", (now_secs() + 5).to_string()),
    ];
    let mut empty = Vec::new();
    for (name, dashboard) in dashboards() {
        let mut values = BTreeMap::new();
        for variable in &dashboard.variables {
            if variable.datasource == "textbox" {
                continue;
            }
            let found = variable_values(&base, variable, &window).await;
            if found.is_empty() {
                empty.push(format!("{name}: variable {} has no values", variable.name));
            }
            values.insert(variable.name.clone(), found);
        }
        let mut trace_id = None;
        // A trace-id panel shows the trace a click on a search panel picks,
        // so the search panels run first.
        let mut panels: Vec<&Panel> = dashboard.panels.iter().collect();
        panels.sort_by_key(|p| p.datasource == "tempo" && !p.query.starts_with('{'));
        for panel in panels {
            let query = fill(&panel.query, &values, &panel.datasource);
            let answer = match panel.datasource.as_str() {
                "prometheus" => {
                    let mut params = vec![("query", query.clone()), ("step", "15".to_owned())];
                    params.extend(window.iter().cloned());
                    get(&base, "/api/v1/query_range", &params).await
                }
                "loki" => {
                    let params = vec![
                        ("query", query.clone()),
                        ("start", format!("{}000000000", now_secs() - 600)),
                        ("end", format!("{}000000000", now_secs() + 5)),
                        ("limit", "100".to_owned()),
                    ];
                    get(&base, "/loki/api/v1/query_range", &params).await
                }
                "tempo" if query.starts_with('{') => {
                    let mut params = vec![("q", query.clone()), ("limit", "20".to_owned())];
                    params.extend(window.iter().cloned());
                    let answer = get(&base, "/api/search", &params).await;
                    trace_id = trace_id
                        .or_else(|| answer["traces"][0]["traceID"].as_str().map(str::to_owned));
                    answer
                }
                // The "Selected Trace" panel: the trace a click on the
                // search panel put into the variable.
                "tempo" => {
                    let id = trace_id
                        .clone()
                        .expect("a trace from the search panel before the selected-trace panel");
                    let answer = get(&base, &format!("/api/traces/{id}"), &[]).await;
                    let spans = answer.to_string().matches("spanId").count();
                    assert!(
                        spans > 0,
                        "{name} / {}: trace {id} has no spans",
                        panel.panel
                    );
                    continue;
                }
                other => panic!(
                    "{name} / {}: a datasource the lab does not run: {other}",
                    panel.panel
                ),
            };
            if !has_data(&answer) {
                empty.push(format!(
                    "{name} / {}: {query} answered no data: {answer}",
                    panel.panel
                ));
            }
        }
    }
    assert!(
        empty.is_empty(),
        "panels without data:\n{}",
        empty.join("\n")
    );

    // Grafana's "Diagnose errors with traces", its three queries verbatim.
    let search = |q: &str| {
        let mut params = vec![("q", q.to_owned()), ("limit", "50".to_owned())];
        params.extend(window.iter().cloned());
        let base = base.clone();
        async move { get(&base, "/api/search", &params).await }
    };
    let step1 = search(r#"{ resource.service.name = "mythical-requester" && span.http.status_code >= 400 } | select(span.http.target)"#).await;
    let spans = step1["traces"][0]["spanSets"][0]["spans"]
        .as_array()
        .or_else(|| step1["traces"][0]["spanSet"]["spans"].as_array())
        .unwrap_or_else(|| panic!("step 1 found no failing requester span: {step1}"));
    let selected = spans[0]["attributes"].to_string();
    assert!(
        selected.contains("http.target") && selected.contains("/"),
        "step 1 selects http.target: {step1}"
    );
    assert!(
        selected.contains("http.status_code"),
        "step 1 shows the status: {step1}"
    );

    let step2 = search(r#"{ resource.service.name = "mythical-requester" && span.http.status_code = 500 } >> { status = error }"#).await;
    let first = step2["traces"][0]["traceID"]
        .as_str()
        .unwrap_or_else(|| panic!("step 2 found no error below a 500: {step2}"))
        .to_owned();
    let trace = get(&base, &format!("/api/v2/traces/{first}"), &[])
        .await
        .to_string();
    assert!(
        trace.contains("INSERT INTO") && trace.contains("violates not-null constraint"),
        "step 2 leads to the failing INSERT: {trace}"
    );

    let step3 = search(r#"{ resource.service.name = "mythical-requester" && span.http.status_code = 500 } >> { status = error && span.db.statement !~ "INSERT.*" }"#).await;
    assert_eq!(
        step3["traces"].as_array().map(Vec::len),
        Some(0),
        "step 3: every error span below a 500 is the INSERT, so nothing else: {step3}"
    );
}
