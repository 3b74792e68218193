//! TraceQL for the embedded backend: a parser, an evaluator over any
//! [`TraceSource`](lab_signals::TraceSource), and the JSON of Tempo's
//! search, trace-by-id and tag endpoints, so Grafana's Tempo datasource and
//! the lab's own client read the answers as they read Tempo's.

mod eval;
mod json;
mod lex;
mod parse;
mod tags;

pub use eval::{MatchedSpan, MatchedSpanset, SearchResult, TraceMatch};
pub use json::{search_response, trace_json_v1, trace_json_v2};
pub use parse::{Field, Intrinsic, Query, Scope};
pub use tags::{TagError, tag_values_v1, tag_values_v2, tags_v1, tags_v2};

/// Tempo's default for `limit` when a search does not give one.
pub const DEFAULT_LIMIT: usize = 20;
/// Tempo's default for `spss` (spans listed per spanset).
pub const DEFAULT_SPANS_PER_SPANSET: usize = 3;

/// A query that does not parse: where (byte offset, and the 1-based line and
/// column a person counts) and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parse error at line {line}, col {column}: {message}")]
pub struct ParseError {
    pub offset: usize,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl ParseError {
    pub(crate) fn at(text: &str, offset: usize, message: String) -> ParseError {
        let before = text.get(..offset).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ParseError {
            offset,
            line,
            column,
            message,
        }
    }
}

/// Parses a TraceQL query.
pub fn parse(query: &str) -> Result<Query, ParseError> {
    parse::parse(query)
}
