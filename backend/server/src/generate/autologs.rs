//! The original's autologging: Alloy's `spanlogs` connector as
//! intro-to-mltp configures it (`roots = true`, span attributes
//! `http.method`, `http.target`, `http.status_code`, trace id key
//! `traceId`), through `otelcol.exporter.loki` and `loki.write` with
//! `job = "alloy"`: one logfmt line per root span.

use lab_signals::{AttrValue, Labels, LogEntry, Span, StatusCode};

const SPAN_ATTRIBUTES: [&str; 3] = ["http.method", "http.target", "http.status_code"];

/// The stream every line goes to: `exporter` from Loki's OTLP translation
/// (the connector's logs carry no resource), `job` from `loki.write`, and
/// `service_name` as Loki 3 discovers it from `job`.
pub fn stream_labels() -> Labels {
    Labels::from_pairs([
        ("exporter", "OTLP"),
        ("job", "alloy"),
        ("service_name", "alloy"),
    ])
}

/// One line per root span, stamped with the span's end: Alloy leaves the
/// time unset, so Loki takes the time it arrived, which is about then.
pub fn lines(spans: &[Span]) -> Vec<(Labels, LogEntry)> {
    let roots: Vec<&Span> = spans
        .iter()
        .filter(|s| s.parent_span_id.is_none())
        .collect();
    if roots.is_empty() {
        return Vec::new();
    }
    let labels = stream_labels();
    roots
        .into_iter()
        .map(|span| {
            (
                labels.clone(),
                LogEntry {
                    ts: span.end,
                    line: line(span),
                    metadata: Labels::default(),
                },
            )
        })
        .collect()
}

/// The connector's body: `span`, `dur`, `status` (left out when unset),
/// the span attributes it was told to copy, `svc`, and the trace id.
pub fn line(span: &Span) -> String {
    let mut out = String::with_capacity(160);
    let mut pair = |key: &str, value: &str| {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(key);
        out.push('=');
        write_value(&mut out, value);
    };
    pair("span", &span.name);
    pair("dur", &format!("{}ns", span.end - span.start));
    match span.status {
        StatusCode::Unset => {}
        StatusCode::Ok => pair("status", "Ok"),
        StatusCode::Error => pair("status", "Error"),
    }
    for key in SPAN_ATTRIBUTES {
        if let Some(value) = span.attributes.get(key) {
            pair(key, &value.to_text());
        }
    }
    let service = span
        .resource
        .attributes
        .get("service.name")
        .and_then(AttrValue::as_str)
        .unwrap_or_default();
    pair("svc", service);
    pair("traceId", &span.trace_id.to_string());
    out
}

/// A value as go-logfmt writes it: bare unless it holds a space, `=`, `"`
/// or a control character (or reads `null`), then quoted and escaped.
fn write_value(out: &mut String, value: &str) {
    let quoted = value == "null"
        || value
            .chars()
            .any(|c| c <= ' ' || c == '=' || c == '"' || c == char::REPLACEMENT_CHARACTER);
    if !quoted {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' | '"' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < ' ' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use lab_signals::{Attributes, Resource, SpanId, SpanKind, TraceId};

    use super::*;

    #[test]
    fn a_failing_root_span_becomes_the_connectors_logfmt_line() {
        let span = Span {
            trace_id: TraceId([0xab; 16]),
            span_id: SpanId([1; 8]),
            parent_span_id: None,
            name: "POST /:beast".into(),
            kind: SpanKind::Server,
            status: StatusCode::Error,
            status_message: "null value".into(),
            start: 1_000,
            end: 2_501_000,
            attributes: Attributes(vec![
                ("http.status_code".into(), AttrValue::Int(500)),
                ("http.method".into(), AttrValue::Str("POST".into())),
                ("http.target".into(), AttrValue::Str("/owlbear".into())),
                ("beast".into(), AttrValue::Str("owlbear".into())),
            ]),
            events: Vec::new(),
            links: Vec::new(),
            resource: Arc::new(Resource {
                attributes: Attributes(vec![(
                    "service.name".into(),
                    AttrValue::Str("mythical-server".into()),
                )]),
                ..Resource::default()
            }),
        };
        assert_eq!(
            line(&span),
            format!(
                r#"span="POST /:beast" dur=2500000ns status=Error http.method=POST http.target=/owlbear http.status_code=500 svc=mythical-server traceId={}"#,
                "ab".repeat(16)
            )
        );
        let child = Span {
            parent_span_id: Some(SpanId([2; 8])),
            ..span.clone()
        };
        let logged = lines(&[span, child]);
        assert_eq!(logged.len(), 1);
        assert_eq!(
            logged[0].0.to_string(),
            r#"{exporter="OTLP", job="alloy", service_name="alloy"}"#
        );
        assert_eq!(logged[0].1.ts, 2_501_000);
    }

    #[test]
    fn values_are_quoted_as_go_logfmt_quotes_them() {
        let mut out = String::new();
        write_value(&mut out, "a \"b\"\n");
        assert_eq!(out, r#""a \"b\"\n""#);
        out.clear();
        write_value(&mut out, "null");
        assert_eq!(out, r#""null""#);
        out.clear();
        write_value(&mut out, "");
        assert_eq!(out, "");
    }
}
