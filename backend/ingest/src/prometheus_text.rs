//! The Prometheus text exposition format (0.0.4) and OpenMetrics 1.0, as a
//! scrape returns them: samples, `# TYPE`/`# HELP`/`# UNIT` metadata, and
//! OpenMetrics exemplars (`… # {traceID="…"} 4.2 1700000000.123`).

use std::collections::HashMap;

use lab_signals::{Exemplar, Labels, MetricMetadata, MetricType, Sample};

use crate::MetricBatch;

/// Where a scrape stopped making sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// Parses a scrape taken at `scrape_time_ms`; `target` labels (`job`,
/// `instance`) are added to every series.
pub fn parse(text: &str, scrape_time_ms: i64, target: &Labels) -> Result<MetricBatch, ParseError> {
    let openmetrics = text.lines().any(|l| l.trim() == "# EOF");
    let mut batch = MetricBatch::default();
    let mut metadata: HashMap<String, MetricMetadata> = HashMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let error = |message: String| ParseError {
            line: line_no,
            message,
        };
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            let keyword = words.next().unwrap_or_default();
            let name = words.next().unwrap_or_default();
            let rest = words.next().unwrap_or_default().trim();
            let entry = || MetricMetadata {
                metric_type: MetricType::Unknown,
                help: String::new(),
                unit: String::new(),
            };
            match keyword {
                "TYPE" => {
                    let metric_type = match rest {
                        "counter" => MetricType::Counter,
                        "gauge" => MetricType::Gauge,
                        "histogram" | "gaugehistogram" => MetricType::Histogram,
                        "summary" => MetricType::Summary,
                        "untyped" | "unknown" | "info" | "stateset" => MetricType::Unknown,
                        other => return Err(error(format!("unknown metric type `{other}`"))),
                    };
                    metadata
                        .entry(name.to_owned())
                        .or_insert_with(entry)
                        .metric_type = metric_type;
                }
                "HELP" => {
                    metadata.entry(name.to_owned()).or_insert_with(entry).help = unescape_help(rest)
                }
                "UNIT" => {
                    metadata.entry(name.to_owned()).or_insert_with(entry).unit = rest.to_owned()
                }
                _ => {}
            }
            continue;
        }
        let mut cursor = Cursor::new(line);
        let name = cursor
            .name()
            .ok_or_else(|| error(format!("expected a metric name at `{line}`")))?;
        let mut pairs: Vec<(String, String)> = target
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        if cursor.peek() == Some('{') {
            pairs.extend(cursor.labels().map_err(error)?);
        }
        pairs.push(("__name__".to_owned(), name.to_owned()));
        let value = cursor
            .number()
            .ok_or_else(|| error(format!("expected a sample value after `{name}`")))?;
        let mut t = scrape_time_ms;
        cursor.skip_spaces();
        if cursor.peek().is_some_and(|c| c != '#') {
            let stamp = cursor
                .number()
                .ok_or_else(|| error("expected a timestamp or an exemplar".into()))?;
            t = if openmetrics {
                (stamp * 1000.0) as i64
            } else {
                stamp as i64
            };
        }
        let labels = Labels::new(pairs);
        cursor.skip_spaces();
        if cursor.peek() == Some('#') {
            cursor.advance();
            cursor.skip_spaces();
            let exemplar_labels = cursor
                .labels()
                .map_err(|m| error(format!("exemplar: {m}")))?;
            let exemplar_value = cursor
                .number()
                .ok_or_else(|| error("expected the exemplar's value".into()))?;
            cursor.skip_spaces();
            let exemplar_t = match cursor.peek() {
                Some(_) => {
                    let stamp = cursor
                        .number()
                        .ok_or_else(|| error("expected the exemplar's timestamp".into()))?;
                    (stamp * 1000.0) as i64
                }
                None => t,
            };
            batch.exemplars.push((
                labels.clone(),
                Exemplar {
                    labels: Labels::new(exemplar_labels),
                    value: exemplar_value,
                    t: exemplar_t,
                },
            ));
        }
        cursor.skip_spaces();
        if cursor.peek().is_some() {
            return Err(error(format!(
                "unexpected `{}` after the sample",
                cursor.rest()
            )));
        }
        batch.points.push((labels, Sample { t, v: value }));
    }
    batch.metadata = metadata.into_iter().collect();
    batch.metadata.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(batch)
}

fn unescape_help(text: &str) -> String {
    text.replace("\\n", "\n").replace("\\\\", "\\")
}

/// A reader over one sample line.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Cursor<'a> {
        Cursor { text, at: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn advance(&mut self) {
        if let Some(c) = self.peek() {
            self.at += c.len_utf8();
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(|c| c == ' ' || c == '\t') {
            self.advance();
        }
    }

    fn name(&mut self) -> Option<&'a str> {
        self.skip_spaces();
        let start = self.at;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            self.advance();
        }
        (self.at > start).then(|| &self.text[start..self.at])
    }

    /// `{a="1",b="2"}` with escapes, a trailing comma allowed.
    fn labels(&mut self) -> Result<Vec<(String, String)>, String> {
        if self.peek() != Some('{') {
            return Err(format!("expected `{{` at `{}`", self.rest()));
        }
        self.advance();
        let mut pairs = Vec::new();
        loop {
            self.skip_spaces();
            if self.peek() == Some('}') {
                self.advance();
                return Ok(pairs);
            }
            let name = self
                .name()
                .ok_or_else(|| format!("expected a label name at `{}`", self.rest()))?;
            self.skip_spaces();
            if self.peek() != Some('=') {
                return Err(format!("expected `=` after label `{name}`"));
            }
            self.advance();
            self.skip_spaces();
            if self.peek() != Some('"') {
                return Err(format!("expected a quoted value for label `{name}`"));
            }
            self.advance();
            let mut value = String::new();
            loop {
                match self.peek() {
                    None => return Err(format!("unterminated value of label `{name}`")),
                    Some('"') => {
                        self.advance();
                        break;
                    }
                    Some('\\') => {
                        self.advance();
                        match self.peek() {
                            Some('n') => value.push('\n'),
                            Some(c) => value.push(c),
                            None => return Err(format!("unterminated value of label `{name}`")),
                        }
                        self.advance();
                    }
                    Some(c) => {
                        value.push(c);
                        self.advance();
                    }
                }
            }
            pairs.push((name.to_owned(), value));
            self.skip_spaces();
            match self.peek() {
                Some(',') => self.advance(),
                Some('}') => {}
                _ => return Err(format!("expected `,` or `}}` after label `{name}`")),
            }
        }
    }

    fn number(&mut self) -> Option<f64> {
        self.skip_spaces();
        let start = self.at;
        while self.peek().is_some_and(|c| !c.is_whitespace()) {
            self.advance();
        }
        let word = &self.text[start..self.at];
        match word {
            "+Inf" | "Inf" => Some(f64::INFINITY),
            "-Inf" => Some(f64::NEG_INFINITY),
            "NaN" => Some(f64::NAN),
            _ => word.parse().ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = r#"# HELP mythical_request_times Response times for the endpoints.
# TYPE mythical_request_times histogram
mythical_request_times_sum{method="GET",status="200",beast="unicorn"} 12.5
mythical_request_times_count{method="GET",status="200",beast="unicorn"} 3
mythical_request_times_bucket{le="10.0",method="GET",status="200",beast="unicorn"} 2 # {traceID="0af7651916cd43dd8448eb211c80319c",spanID="b7ad6b7169203331"} 4.2 1700000000.123
mythical_request_times_bucket{le="+Inf",method="GET",status="200",beast="unicorn"} 3
# EOF
"#;

    #[test]
    fn an_openmetrics_histogram_with_exemplars_parses() {
        let target =
            Labels::from_pairs([("job", "mythical-server"), ("instance", "127.0.0.1:4000")]);
        let batch = parse(SCRAPE, 1_700_000_001_000, &target).unwrap();
        assert_eq!(batch.points.len(), 4);
        let (labels, sample) = &batch.points[2];
        assert_eq!(
            labels.to_string(),
            r#"{__name__="mythical_request_times_bucket", beast="unicorn", instance="127.0.0.1:4000", job="mythical-server", le="10.0", method="GET", status="200"}"#
        );
        assert_eq!(
            *sample,
            Sample {
                t: 1_700_000_001_000,
                v: 2.0
            }
        );
        assert_eq!(batch.points[3].0.get("le"), Some("+Inf"));
        let (series, exemplar) = &batch.exemplars[0];
        assert_eq!(series, labels);
        assert_eq!(
            exemplar.labels.get("traceID"),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        assert_eq!(exemplar.value, 4.2);
        assert_eq!(exemplar.t, 1_700_000_000_123);
        assert_eq!(batch.metadata[0].0, "mythical_request_times");
        assert_eq!(batch.metadata[0].1.metric_type, MetricType::Histogram);
    }

    #[test]
    fn prometheus_text_with_escapes_timestamps_and_specials() {
        let text =
            "# TYPE up gauge\nup 1\nweird{path=\"a\\\"b\\\\c\\nd\"} NaN 1700000000000\nneg -Inf\n";
        let batch = parse(text, 5, &Labels::default()).unwrap();
        assert_eq!(batch.points[0].1, Sample { t: 5, v: 1.0 });
        assert_eq!(batch.points[1].0.get("path"), Some("a\"b\\c\nd"));
        assert!(batch.points[1].1.v.is_nan());
        assert_eq!(batch.points[1].1.t, 1_700_000_000_000);
        assert_eq!(batch.points[2].1.v, f64::NEG_INFINITY);
    }

    #[test]
    fn broken_lines_say_which_and_why() {
        let err = parse("ok 1\nbad{a=\"1\" 2\n", 0, &Labels::default()).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("after label `a`"), "{err}");
        assert_eq!(parse("name\n", 0, &Labels::default()).unwrap_err().line, 1);
        assert!(parse("x 1 2 3\n", 0, &Labels::default()).is_err());
        assert!(parse("# TYPE x bogus\n", 0, &Labels::default()).is_err());
    }
}
