//! Runs a step's query against the live lab — the query the guide shows,
//! through the same client — and says whether its result shows what the
//! step expects.

use anyhow::Result;

use super::{Expect, Language, Step};
use crate::query::answer::Texts;
use crate::query::{DataAnswer, QueryClient, Window};
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

/// The newest value of each series of a Prometheus-shaped answer.
fn newest_values(answer: &DataAnswer) -> Vec<f64> {
    answer
        .series()
        .iter()
        .filter_map(|s| s.newest()?.number())
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
            let shown = render::traceql(&answer);
            (answer.traces.len(), answer.texts(), Vec::new(), shown)
        }
        Language::Logql => {
            let answer = client
                .logql(query, window, 100, window.default_step_secs())
                .await?;
            let shown = render::data(&answer);
            (
                answer.count(),
                answer.texts(),
                newest_values(&answer),
                shown,
            )
        }
        Language::Promql => {
            let answer = client.promql_instant(query, now).await?;
            let shown = render::data(&answer);
            (
                answer.count(),
                answer.texts(),
                newest_values(&answer),
                shown,
            )
        }
        Language::Profile => {
            let answer = client.profile_top(query, window, 20).await?;
            let total = answer.total.max(1) as f64;
            let share = |value: i64| format!("{:.1}%", value as f64 * 100.0 / total);
            let rows: Vec<Vec<String>> = answer
                .functions
                .iter()
                .map(|f| vec![f.name.clone(), share(f.self_value), share(f.total)])
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
        let answer: DataAnswer = serde_json::from_value(serde_json::json!({"data": {"result": [
            {"metric": {}, "value": [1, "0.25"]},
            {"metric": {}, "values": [[1, "1"], [2, "3.5"]]}
        ]}}))
        .unwrap();
        assert_eq!(newest_values(&answer), [0.25, 3.5]);
    }
}
