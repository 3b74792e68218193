//! `/metrics` in the format the scraper asks for, as Prometheus' own client
//! libraries negotiate it: OpenMetrics (with the trace-id exemplars) when
//! the `Accept` header prefers it, the classic text format (version 0.0.4)
//! otherwise, so `curl …/metrics | promtool check metrics` passes and a
//! Prometheus or Alloy scrape still gets its exemplars.

use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The two text formats a scrape can get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Classic,
}

/// Picks the format from an `Accept` header: OpenMetrics when it is named
/// with a quality at least that of the classic text (or of `*/*` when the
/// classic text is not named); the classic text for anything else,
/// including no header at all.
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Classic;
    };
    let mut openmetrics: Option<f32> = None;
    let mut classic: Option<f32> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut quality = 1.0_f32;
        for parameter in parts {
            if let Some(q) = parameter
                .strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
            {
                quality = q.clamp(0.0, 1.0);
            }
        }
        let slot = match media.as_str() {
            "application/openmetrics-text" => &mut openmetrics,
            "text/plain" | "text/*" | "*/*" => &mut classic,
            _ => continue,
        };
        *slot = Some(slot.map_or(quality, |q| q.max(quality)));
    }
    match (openmetrics, classic) {
        (Some(om), Some(text)) if om > 0.0 && om >= text => Format::OpenMetrics,
        (Some(om), None) if om > 0.0 => Format::OpenMetrics,
        _ => Format::Classic,
    }
}

/// The response for a scrape: `openmetrics` is the registry's OpenMetrics
/// text, rewritten when the classic format was asked for.
pub fn respond(headers: &HeaderMap, openmetrics: String) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    match negotiate(accept) {
        Format::OpenMetrics => ([(header::CONTENT_TYPE, OPENMETRICS)], openmetrics).into_response(),
        Format::Classic => {
            ([(header::CONTENT_TYPE, CLASSIC)], to_classic(&openmetrics)).into_response()
        }
    }
}

/// OpenMetrics text as the classic format writes it: no `# EOF`, `# UNIT`
/// or exemplars; a counter's `TYPE` and `HELP` name its `_total` sample, as
/// the classic format has no family suffixes; families of a type the
/// classic format lacks (info, stateset) keep their samples, untyped.
pub fn to_classic(openmetrics: &str) -> String {
    let mut counters: Vec<&str> = Vec::new();
    let mut others: Vec<&str> = Vec::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            match (words.next(), words.next()) {
                (Some(name), Some("counter")) => counters.push(name),
                (Some(_), Some("gauge" | "histogram" | "summary")) => {}
                (Some(name), _) => others.push(name),
                _ => {}
            }
        }
    }
    let family_name = |name: &str| -> String {
        if counters.contains(&name) && !name.ends_with("_total") {
            format!("{name}_total")
        } else {
            name.to_owned()
        }
    };
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            if !others.contains(&name) {
                out.push_str(&format!("# TYPE {} {}\n", family_name(name), kind.trim()));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            if !others.contains(&name) {
                out.push_str(&format!("# HELP {} {help}\n", family_name(name)));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        // An exemplar follows ` # ` after the sample; label values are
        // quoted, so the marker is searched for outside quotes only.
        out.push_str(strip_exemplar(line).trim_end());
        out.push('\n');
    }
    out
}

fn strip_exemplar(line: &str) -> &str {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_and_alloy_get_openmetrics_and_curl_gets_the_classic_text() {
        let prometheus = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(
            negotiate(Some("application/openmetrics-text; version=1.0.0")),
            Format::OpenMetrics
        );
        assert_eq!(negotiate(Some("*/*")), Format::Classic);
        assert_eq!(negotiate(None), Format::Classic);
        assert_eq!(
            negotiate(Some(
                "text/plain;version=0.0.4;q=1,application/openmetrics-text;q=0.5"
            )),
            Format::Classic
        );
        assert_eq!(
            negotiate(Some("application/openmetrics-text;q=0")),
            Format::Classic
        );
    }

    #[test]
    fn the_classic_text_has_no_exemplars_units_or_eof_and_names_counters_by_their_samples() {
        let openmetrics = "# HELP requests Requests.\n# TYPE requests counter\nrequests_total{path=\"/a # b\"} 3 # {traceID=\"ab\"} 1.0 1.5\n# HELP t Times.\n# TYPE t histogram\n# UNIT t seconds\nt_bucket{le=\"+Inf\"} 1 # {traceID=\"cd\"} 0.2\nt_sum 0.2\nt_count 1\n# TYPE i info\ni_info{v=\"1\"} 1\n# EOF\n";
        let classic = to_classic(openmetrics);
        assert_eq!(
            classic,
            "# HELP requests_total Requests.\n# TYPE requests_total counter\nrequests_total{path=\"/a # b\"} 3\n# HELP t Times.\n# TYPE t histogram\nt_bucket{le=\"+Inf\"} 1\nt_sum 0.2\nt_count 1\ni_info{v=\"1\"} 1\n"
        );
    }
}
