//! Readable terminal output for query results: aligned tables, and a trace
//! as a waterfall. Colour only on a terminal and never with `NO_COLOR`.

use std::collections::HashMap;
use std::io::IsTerminal;

use serde_json::Value;

/// Whether to colour standard output.
pub fn colour() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
}

fn paint(text: &str, code: &str) -> String {
    if colour() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

pub fn red(text: &str) -> String {
    paint(text, "31")
}

pub fn dim(text: &str) -> String {
    paint(text, "2")
}

pub fn bold(text: &str) -> String {
    paint(text, "1")
}

/// Columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = widths[i].saturating_sub(c.chars().count());
                if i + 1 == cells.len() {
                    c.clone()
                } else {
                    format!("{c}{}", " ".repeat(pad))
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = bold(&line(headers.iter().map(|h| h.to_string()).collect()));
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.clone()));
        out.push('\n');
    }
    out
}

/// `HH:MM:SS.mmm` (UTC) of a Unix time in nanoseconds.
pub fn clock(nanos: i64) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    let millis = nanos.rem_euclid(1_000_000_000) / 1_000_000;
    let day = secs.rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}.{millis:03}",
        day / 3600,
        day % 3600 / 60,
        day % 60
    )
}

/// A duration in the unit that reads best.
pub fn duration(nanos: i64) -> String {
    match nanos {
        n if n < 1_000 => format!("{n}ns"),
        n if n < 1_000_000 => format!("{:.1}µs", n as f64 / 1e3),
        n if n < 1_000_000_000 => format!("{:.1}ms", n as f64 / 1e6),
        n => format!("{:.2}s", n as f64 / 1e9),
    }
}

/// A JSON number or numeric string as a whole number (0 when neither).
pub fn number(value: &Value) -> i64 {
    match value {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n
            .as_i64()
            .unwrap_or_else(|| n.as_f64().unwrap_or(0.0) as i64),
        _ => 0,
    }
}

fn labels(metric: &Value) -> String {
    let Some(map) = metric.as_object() else {
        return "{}".to_owned();
    };
    let pairs: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or_default()))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

/// Tempo's search answer as one row per trace.
pub fn traceql(answer: &Value) -> String {
    let traces = answer["traces"].as_array().cloned().unwrap_or_default();
    if traces.is_empty() {
        return "no traces matched\n".to_owned();
    }
    let rows: Vec<Vec<String>> = traces
        .iter()
        .map(|t| {
            let matched: i64 = t["spanSets"]
                .as_array()
                .map(|sets| sets.iter().map(|s| number(&s["matched"])).sum())
                .unwrap_or_else(|| number(&t["spanSet"]["matched"]));
            vec![
                t["traceID"].as_str().unwrap_or_default().to_owned(),
                clock(number(&t["startTimeUnixNano"])),
                t["rootServiceName"].as_str().unwrap_or_default().to_owned(),
                t["rootTraceName"].as_str().unwrap_or_default().to_owned(),
                format!("{}ms", number(&t["durationMs"])),
                matched.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "TRACE ID",
            "START",
            "ROOT SERVICE",
            "ROOT SPAN",
            "DURATION",
            "MATCHED",
        ],
        &rows,
    )
}

/// A Loki or Prometheus answer: log lines, or series with their values.
pub fn data(answer: &Value) -> String {
    let data = &answer["data"];
    let result = data["result"].as_array().cloned().unwrap_or_default();
    match data["resultType"].as_str() {
        Some("streams") => {
            let mut lines: Vec<(i64, String, String)> = result
                .iter()
                .flat_map(|stream| {
                    let labels = labels(&stream["stream"]);
                    stream["values"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .map(move |v| {
                            (
                                number(&v[0]),
                                labels.clone(),
                                v[1].as_str().unwrap_or_default().to_owned(),
                            )
                        })
                })
                .collect();
            if lines.is_empty() {
                return "no log lines matched\n".to_owned();
            }
            lines.sort_by_key(|line| std::cmp::Reverse(line.0));
            let rows: Vec<Vec<String>> = lines
                .into_iter()
                .map(|(ts, labels, line)| vec![clock(ts), dim(&labels), line])
                .collect();
            table(&["TIME", "STREAM", "LINE"], &rows)
        }
        Some("matrix") => {
            if result.is_empty() {
                return "no series matched\n".to_owned();
            }
            let rows: Vec<Vec<String>> = result
                .iter()
                .map(|series| {
                    let values = series["values"].as_array().cloned().unwrap_or_default();
                    let last = values
                        .last()
                        .and_then(|v| v[1].as_str())
                        .unwrap_or_default()
                        .to_owned();
                    vec![labels(&series["metric"]), values.len().to_string(), last]
                })
                .collect();
            table(&["SERIES", "POINTS", "LAST"], &rows)
        }
        Some("vector") => {
            if result.is_empty() {
                return "no series matched\n".to_owned();
            }
            let rows: Vec<Vec<String>> = result
                .iter()
                .map(|sample| {
                    vec![
                        labels(&sample["metric"]),
                        sample["value"][1].as_str().unwrap_or_default().to_owned(),
                    ]
                })
                .collect();
            table(&["SERIES", "VALUE"], &rows)
        }
        Some("scalar") | Some("string") => {
            format!("{}\n", data["result"][1].as_str().unwrap_or_default())
        }
        _ => format!("{answer}\n"),
    }
}

/// Ids in OTLP JSON come as hex (OTLP's JSON encoding) or base64 (protobuf
/// JSON): both are shown as hex.
pub fn id_hex(value: &Value) -> String {
    let text = value.as_str().unwrap_or_default();
    if text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return text.to_ascii_lowercase();
    }
    base64_decode(text)
        .map(|bytes| bytes.iter().map(|b| format!("{b:02x}")).collect())
        .unwrap_or_else(|| text.to_owned())
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for byte in text.bytes().filter(|b| *b != b'=') {
        let value = ALPHABET.iter().position(|a| *a == byte)? as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    Some(out)
}

/// A trace (Tempo's v2 answer, OTLP JSON) as a waterfall: one line per
/// span, indented under its parent, with a bar where it ran.
pub fn waterfall(answer: &Value) -> String {
    let spans = trace_spans(answer);
    if spans.is_empty() {
        return "the trace has no spans\n".to_owned();
    }
    let start = spans.iter().map(|(_, s)| s.start).min().unwrap_or(0);
    let end = spans.iter().map(|(_, s)| s.end).max().unwrap_or(start);
    let total = (end - start).max(1);
    const BAR: usize = 40;
    let mut rows = Vec::new();
    for (depth, span) in &spans {
        let from = ((span.start - start) as f64 / total as f64 * BAR as f64) as usize;
        let width =
            (((span.end - span.start) as f64 / total as f64 * BAR as f64).ceil() as usize).max(1);
        let bar = format!(
            "{}{}{}",
            " ".repeat(from.min(BAR)),
            "█".repeat(width.min(BAR - from.min(BAR - 1))),
            " ".repeat(BAR.saturating_sub(from + width))
        );
        let label = format!("{}{} {}", "  ".repeat(*depth), span.service, span.name);
        rows.push(vec![
            label,
            duration(span.end - span.start),
            if span.error.is_some() { red(&bar) } else { bar },
            span.error.clone().map(|e| red(&e)).unwrap_or_default(),
        ]);
    }
    table(&["SPAN", "DURATION", "TIMELINE", "ERROR"], &rows)
}

/// The text of an OTLP JSON attribute value.
pub fn value_text(value: &Value) -> String {
    for key in ["stringValue", "intValue", "doubleValue", "boolValue"] {
        match &value[key] {
            Value::Null => continue,
            Value::String(s) => return s.clone(),
            other => return other.to_string(),
        }
    }
    if let Some(values) = value["arrayValue"]["values"].as_array() {
        return format!(
            "[{}]",
            values.iter().map(value_text).collect::<Vec<_>>().join(", ")
        );
    }
    value.to_string()
}

/// Attributes as (key, value text), in the order the span has them.
pub type Attributes = Vec<(String, String)>;

/// One span event: its name, when (Unix nanoseconds), its attributes.
pub type Event = (String, i64, Attributes);

/// One span of a trace, as the terminal and the console draw it.
#[derive(Debug, Clone)]
pub struct TraceSpan {
    pub id: String,
    pub parent: String,
    pub service: String,
    pub name: String,
    pub start: i64,
    pub end: i64,
    pub error: Option<String>,
    pub attributes: Attributes,
    pub events: Vec<Event>,
}

pub fn attributes(list: &Value) -> Attributes {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["key"].as_str().unwrap_or_default().to_owned(),
                value_text(&a["value"]),
            )
        })
        .collect()
}

/// Every span of a Tempo v2 answer, parents before children (depth
/// first, siblings by start).
pub fn trace_spans(answer: &Value) -> Vec<(usize, TraceSpan)> {
    let trace = if answer.get("trace").is_some() {
        &answer["trace"]
    } else {
        answer
    };
    let mut spans = Vec::new();
    for batch in trace["resourceSpans"]
        .as_array()
        .or_else(|| trace["batches"].as_array())
        .into_iter()
        .flatten()
    {
        let service = attributes(&batch["resource"]["attributes"])
            .into_iter()
            .find(|(k, _)| k == "service.name")
            .map_or("unknown_service".to_owned(), |(_, v)| v);
        for scope in batch["scopeSpans"]
            .as_array()
            .or_else(|| batch["instrumentationLibrarySpans"].as_array())
            .into_iter()
            .flatten()
        {
            for span in scope["spans"].as_array().into_iter().flatten() {
                let code = &span["status"]["code"];
                let failed = code == "STATUS_CODE_ERROR" || code == 2;
                spans.push(TraceSpan {
                    id: id_hex(&span["spanId"]),
                    parent: id_hex(&span["parentSpanId"]),
                    service: service.clone(),
                    name: span["name"].as_str().unwrap_or_default().to_owned(),
                    start: number(&span["startTimeUnixNano"]),
                    end: number(&span["endTimeUnixNano"]),
                    error: failed.then(|| {
                        span["status"]["message"]
                            .as_str()
                            .filter(|m| !m.is_empty())
                            .unwrap_or("error")
                            .to_owned()
                    }),
                    attributes: attributes(&span["attributes"]),
                    events: span["events"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|e| {
                            (
                                e["name"].as_str().unwrap_or_default().to_owned(),
                                number(&e["timeUnixNano"]),
                                attributes(&e["attributes"]),
                            )
                        })
                        .collect(),
                });
            }
        }
    }
    let ids: std::collections::HashSet<String> = spans.iter().map(|s| s.id.clone()).collect();
    let mut children: HashMap<String, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        if s.parent.is_empty() || !ids.contains(&s.parent) {
            roots.push(i);
        } else {
            children.entry(s.parent.clone()).or_default().push(i);
        }
    }
    roots.sort_by_key(|&i| spans[i].start);
    for list in children.values_mut() {
        list.sort_by_key(|&i| spans[i].start);
    }
    let mut ordered = Vec::with_capacity(spans.len());
    let mut stack: Vec<(usize, usize)> = roots.into_iter().rev().map(|i| (i, 0)).collect();
    while let Some((i, depth)) = stack.pop() {
        if let Some(kids) = children.get(&spans[i].id) {
            stack.extend(kids.iter().rev().map(|&k| (k, depth + 1)));
        }
        ordered.push((depth, spans[i].clone()));
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_trace_draws_as_an_indented_waterfall_with_its_error() {
        let answer = json!({"trace": {"resourceSpans": [
            {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "mythical-requester"}}]},
             "scopeSpans": [{"spans": [
                {"spanId": "aaaaaaaaaaaaaaaa", "name": "requester", "startTimeUnixNano": "1000000000", "endTimeUnixNano": "1040000000", "status": {}},
             ]}]},
            {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "mythical-server"}}]},
             "scopeSpans": [{"spans": [
                {"spanId": "bbbbbbbbbbbbbbbb", "parentSpanId": "aaaaaaaaaaaaaaaa", "name": "POST /:beast", "startTimeUnixNano": "1010000000", "endTimeUnixNano": "1030000000",
                 "status": {"code": "STATUS_CODE_ERROR", "message": "null value"}},
             ]}]}
        ]}});
        let text = waterfall(&answer);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[1].starts_with("mythical-requester requester"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("  mythical-server POST /:beast"),
            "{text}"
        );
        assert!(
            lines[2].contains("20.0ms") && lines[2].ends_with("null value"),
            "{text}"
        );
    }

    #[test]
    fn base64_ids_read_as_hex() {
        assert_eq!(id_hex(&json!("AAECAwQFBgc=")), "0001020304050607");
        assert_eq!(id_hex(&json!("00f067aa0ba902b7")), "00f067aa0ba902b7");
    }
}
