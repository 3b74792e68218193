//! Links into the lab's Grafana: the provisioned dashboards, and Explore
//! opened on a query, so what the lab prints can be clicked.

use serde_json::json;

/// The datasource uids `docker/grafana/provisioning` gives.
pub const TEMPO: (&str, &str) = ("tempo", "tempo");
pub const LOKI: (&str, &str) = ("loki", "loki");
pub const MIMIR: (&str, &str) = ("mimir", "prometheus");
pub const PYROSCOPE: (&str, &str) = ("pyroscope", "grafana-pyroscope-datasource");

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Explore with one query on one datasource over the last 15 minutes.
/// `datasource` is (uid, type).
pub fn explore(base: &str, datasource: (&str, &str), query: &str) -> String {
    explore_over(base, datasource, query, ("now-15m", "now"))
}

/// Explore over a range in Grafana's own terms (`now-5m`, `now+10m`); the
/// query goes under the key its datasource's model reads (`query` for
/// Tempo, `expr` for Loki and Prometheus, a profile type and selector for
/// Pyroscope).
pub fn explore_over(
    base: &str,
    datasource: (&str, &str),
    query: &str,
    (from, to): (&str, &str),
) -> String {
    let (uid, kind) = datasource;
    let mut target = json!({
        "refId": "A",
        "datasource": { "uid": uid, "type": kind },
    });
    if kind == "tempo" {
        target["queryType"] = json!("traceql");
        target["query"] = json!(query);
    } else if kind == PYROSCOPE.1 {
        // `<profile type>{<labels>}`, as Pyroscope's selector reads.
        let (profile_type, labels) = query.split_at(query.find('{').unwrap_or(query.len()));
        target["queryType"] = json!("profile");
        target["profileTypeId"] = json!(profile_type);
        target["labelSelector"] = json!(if labels.is_empty() { "{}" } else { labels });
    } else {
        target["expr"] = json!(query);
    }
    let panes = json!({
        "lab": {
            "datasource": uid,
            "queries": [target],
            "range": { "from": from, "to": to }
        }
    });
    format!(
        "{}/explore?schemaVersion=1&orgId=1&panes={}",
        base.trim_end_matches('/'),
        encode(&panes.to_string())
    )
}

/// What `lab up` prints for a lab with Grafana.
pub fn links(base: &str) -> Vec<(&'static str, String)> {
    let base = base.trim_end_matches('/');
    vec![
        ("Grafana", base.to_owned()),
        (
            "RED per service and beast",
            format!("{base}/d/mythical-red"),
        ),
        (
            "errors and their root cause",
            format!("{base}/d/mythical-errors"),
        ),
        ("p95 with exemplars", format!("{base}/d/mythical-latency")),
        (
            "Explore: failing traces",
            explore(base, TEMPO, "{ status = error }"),
        ),
        (
            "Explore: 5xx rate per beast",
            explore(
                base,
                MIMIR,
                r#"sum by (beast) (rate(mythical_request_times_count{status=~"5.."}[1m]))"#,
            ),
        ),
        (
            "Explore: failure log lines",
            explore(base, LOKI, r#"{service_name=~"mythical-.*"} |= "FAILURE""#),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explore_links_carry_the_query_encoded() {
        let link = explore("http://127.0.0.1:3000/", TEMPO, "{ status = error }");
        assert!(link.starts_with("http://127.0.0.1:3000/explore?schemaVersion=1&orgId=1&panes="));
        let encoded = link.split("panes=").nth(1).unwrap();
        assert!(!encoded.contains(' ') && !encoded.contains('{'));
        assert!(encoded.contains("status%20%3D%20error"));
        assert!(explore("http://g", LOKI, "{a=\"b\"}").contains("expr"));
        let profile = explore(
            "http://g",
            PYROSCOPE,
            r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="x"}"#,
        );
        assert!(
            profile.contains("profileTypeId%22%3A%22process_cpu%3Acpu"),
            "{profile}"
        );
        assert!(
            profile.contains("labelSelector%22%3A%22%7Bservice_name"),
            "{profile}"
        );
    }
}
