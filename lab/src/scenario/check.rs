//! Runs a step's query against the live lab — the query the guide shows,
//! through the same client — and says whether its result shows what the
//! step expects.

use anyhow::Result;
use serde_json::Value;

use super::{Expect, Language, Step};
use crate::query::{QueryClient, Window};
use crate::render;

/// What a step's query gave and whether the step passes.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub passed: bool,
    /// Traces, log lines, series or rows.
    pub results: usize,
    /// The result drawn for a terminal.
    pub shown: String,
    /// Why the step did not pass (empty when it did).
    pub unmet: Vec<String>,
}

/// Every string and number in an answer, one per line: what `contains`
/// searches, so a message matches however the API nests or escapes it.
fn texts(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Number(n) => {
            out.push_str(&n.to_string());
            out.push('\n');
        }
        Value::Array(items) => items.iter().for_each(|v| texts(v, out)),
        Value::Object(map) => {
            for (k, v) in map {
                out.push_str(k);
                out.push('\n');
                texts(v, out);
            }
        }
        _ => {}
    }
}

/// The newest value of each series of a Prometheus-shaped answer.
fn newest_values(answer: &Value) -> Vec<f64> {
    answer["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|series| {
            let value = if series["value"].is_array() {
                &series["value"][1]
            } else {
                series["values"].as_array()?.last()?.get(1)?
            };
            value.as_str()?.parse::<f64>().ok()
        })
        .collect()
}

fn judge(expect: &Expect, results: usize, text: &str, values: &[f64]) -> Vec<String> {
    let mut unmet = Vec::new();
    if results < expect.min_results {
        unmet.push(format!(
            "expected at least {} results, got {results}",
            expect.min_results
        ));
    }
    if let Some(needle) = &expect.contains
        && !text.contains(needle.as_str())
    {
        unmet.push(format!("no result shows `{needle}`"));
    }
    if let Some(above) = expect.value_above
        && !values.iter().any(|v| *v > above)
    {
        unmet.push(format!(
            "expected a value above {above}, the values are {values:?}"
        ));
    }
    unmet
}

/// Runs the step's query now.
pub async fn run(step: &Step, client: &QueryClient, postgres_port: Option<u16>) -> Result<Outcome> {
    let (back, ahead) = step.query.reach().map_err(|e| anyhow::anyhow!(e))?;
    let now = lab_backend::params::now_nanos();
    let window = Window {
        start: now - back.as_nanos() as i64,
        end: now + ahead.as_nanos() as i64 + 1_000_000_000,
    };
    let query = &step.query.text;
    let (results, text, values, shown) = match step.query.language {
        Language::Traceql => {
            let answer = client.traceql(query, window, 50).await?;
            let mut text = String::new();
            texts(&answer, &mut text);
            let count = answer["traces"].as_array().map_or(0, Vec::len);
            (count, text, Vec::new(), render::traceql(&answer))
        }
        Language::Logql => {
            let answer = client
                .logql(query, window, 100, window.default_step_secs())
                .await?;
            let mut text = String::new();
            texts(&answer, &mut text);
            let result = answer["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let count = if answer["data"]["resultType"] == "streams" {
                result
                    .iter()
                    .map(|s| s["values"].as_array().map_or(0, Vec::len))
                    .sum()
            } else {
                result.len()
            };
            (count, text, newest_values(&answer), render::data(&answer))
        }
        Language::Promql => {
            let answer = client.promql_instant(query, now).await?;
            let mut text = String::new();
            texts(&answer, &mut text);
            let count = answer["data"]["result"].as_array().map_or(0, Vec::len);
            (count, text, newest_values(&answer), render::data(&answer))
        }
        Language::Profile => {
            let answer = client.profile_top(query, window, 20).await?;
            let functions = answer["functions"].as_array().cloned().unwrap_or_default();
            let total = answer["total"].as_f64().unwrap_or(0.0).max(1.0);
            let rows: Vec<Vec<String>> = functions
                .iter()
                .map(|f| {
                    let share = |key: &str| {
                        format!("{:.1}%", f[key].as_f64().unwrap_or(0.0) * 100.0 / total)
                    };
                    vec![
                        f["name"].as_str().unwrap_or_default().to_owned(),
                        share("self"),
                        share("total"),
                    ]
                })
                .collect();
            let text = rows
                .iter()
                .map(|r| r[0].as_str())
                .collect::<Vec<_>>()
                .join("\n");
            let shown = render::table(&["function", "self", "total"], &rows);
            (rows.len(), text, Vec::new(), shown)
        }
        Language::Sql => {
            let port =
                postgres_port.ok_or_else(|| anyhow::anyhow!("the lab has no Postgres to ask"))?;
            let store =
                crate::runtime::postgres_session(port, std::time::Duration::from_millis(1500));
            let rows = mythical_storage::catalogue::read_only_query(store.pool(), query).await;
            store.pool().close().await;
            let rows = rows?;
            let text = rows
                .rows
                .iter()
                .flatten()
                .cloned()
                .collect::<Vec<_>>()
                .join("\n");
            let values = rows
                .rows
                .iter()
                .flatten()
                .filter_map(|v| v.parse().ok())
                .collect();
            let headers: Vec<&str> = rows.columns.iter().map(String::as_str).collect();
            (
                rows.rows.len(),
                text,
                values,
                render::table(&headers, &rows.rows),
            )
        }
    };
    let unmet = judge(&step.expect, results, &text, &values);
    Ok(Outcome {
        passed: unmet.is_empty(),
        results,
        shown,
        unmet,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_name_what_is_missing() {
        let expect = Expect {
            min_results: 2,
            contains: Some("not-null".into()),
            value_above: Some(0.5),
        };
        let unmet = judge(&expect, 1, "duplicate key", &[0.1]);
        assert_eq!(unmet.len(), 3, "{unmet:?}");
        assert!(judge(&expect, 2, "violates not-null constraint", &[0.7]).is_empty());
        let answer: Value = serde_json::json!({"data": {"result": [
            {"metric": {}, "value": [1, "0.25"]},
            {"metric": {}, "values": [[1, "1"], [2, "3.5"]]}
        ]}});
        assert_eq!(newest_values(&answer), [0.25, 3.5]);
    }
}
