//! The services' log events: one OTLP log record per event, with the trace
//! and span ids of the request, a severity, the original's labels as
//! attributes, and a logfmt body like the original's lines. Optionally
//! echoed on stdout.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::SystemTime;

use mythical_storage::Beast;
use opentelemetry::StringValue;
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, Severity};
use opentelemetry::trace::SpanContext;
use opentelemetry_sdk::logs::SdkLogger;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn severity(self) -> Severity {
        match self {
            Level::Info => Severity::Info,
            Level::Warn => Severity::Warn,
            Level::Error => Severity::Error,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// A logfmt line built field by field. Values are quoted when they must be,
/// and quotes inside are escaped (the original wrapped Postgres' message,
/// which holds quotes, in quotes as it was, so its lines did not parse).
#[derive(Debug, Default, Clone)]
pub struct Logfmt(String);

impl Logfmt {
    pub fn new() -> Logfmt {
        Logfmt::default()
    }

    pub fn field(mut self, key: &str, value: impl std::fmt::Display) -> Logfmt {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        let value = value.to_string();
        let needs_quotes = value.is_empty()
            || value
                .chars()
                .any(|c| c.is_whitespace() || c == '"' || c == '=' || c == '\\');
        self.0.push_str(key);
        self.0.push('=');
        if needs_quotes {
            self.0.push('"');
            for c in value.chars() {
                match c {
                    '"' => self.0.push_str("\\\""),
                    '\\' => self.0.push_str("\\\\"),
                    '\n' => self.0.push_str("\\n"),
                    c => self.0.push(c),
                }
            }
            self.0.push('"');
        } else {
            let _ = write!(self.0, "{value}");
        }
        self
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Where a service's events go.
pub struct EventLog {
    logger: SdkLogger,
    /// The original's `job` label, e.g. `mythical-server`.
    job: StringValue,
    /// The original's `namespace` label (`NAMESPACE`).
    namespace: StringValue,
    stdout: bool,
    /// The switches that may skew this log's clock (`clock-skew`).
    clock: Option<std::sync::Arc<crate::faults::Switchboard>>,
}

impl EventLog {
    pub fn new(logger: SdkLogger, job: &str, namespace: &str, stdout: bool) -> EventLog {
        EventLog {
            logger,
            job: StringValue::from(job.to_owned()),
            namespace: StringValue::from(namespace.to_owned()),
            stdout,
            clock: None,
        }
    }

    /// Lets the `clock-skew` fault shift this log's timestamps.
    pub fn with_clock(mut self, faults: std::sync::Arc<crate::faults::Switchboard>) -> EventLog {
        self.clock = Some(faults);
        self
    }

    /// Records one event. `span` ties the record to its trace, so a log line
    /// leads to the trace and back.
    pub fn emit(
        &self,
        level: Level,
        beast: Option<Beast>,
        span: Option<&SpanContext>,
        body: Logfmt,
    ) {
        let body = body.into_string();
        if self.stdout {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "level={} {body}", level.as_str());
        }
        let mut record = self.logger.create_log_record();
        let skew = self.clock.as_ref().map_or(std::time::Duration::ZERO, |f| {
            crate::faults::clock_skew::shift(f)
        });
        let now = SystemTime::now() + skew;
        record.set_timestamp(now);
        record.set_observed_timestamp(now);
        record.set_severity_number(level.severity());
        record.set_severity_text(level.as_str());
        record.add_attribute("level", level.as_str());
        record.add_attribute("job", AnyValue::String(self.job.clone()));
        record.add_attribute("namespace", AnyValue::String(self.namespace.clone()));
        if let Some(beast) = beast {
            record.add_attribute("beast", beast.as_str());
        }
        if let Some(span) = span.filter(|s| s.is_valid()) {
            record.set_trace_context(span.trace_id(), span.span_id(), Some(span.trace_flags()));
        }
        record.set_body(AnyValue::from(body));
        self.logger.emit(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_quotes_and_escapes_postgres_messages() {
        let line = Logfmt::new()
            .field("traceID", "0af7651916cd43dd8448eb211c80319c")
            .field("http.method", "POST")
            .field("endpoint", "owlbear")
            .field("status", "FAILURE")
            .field(
                "error",
                r#"null value in column "name" of relation "owlbear" violates not-null constraint"#,
            )
            .into_string();
        assert_eq!(
            line,
            r#"traceID=0af7651916cd43dd8448eb211c80319c http.method=POST endpoint=owlbear status=FAILURE error="null value in column \"name\" of relation \"owlbear\" violates not-null constraint""#
        );
        assert_eq!(Logfmt::new().field("a", "").into_string(), r#"a="""#);
    }
}
