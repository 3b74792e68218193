//! LogQL's grammar: a stream selector and a pipeline (a log query), or a
//! range aggregation over one, aggregated by label (a metric query).

use regex::Regex;

use crate::ParseError;
use crate::lex::{Tok, Token, lex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    NotEq,
    Re,
    NotRe,
}

/// `name op "value"` in a selector or a string label filter.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<Regex>,
}

impl Matcher {
    pub fn matches(&self, value: Option<&str>) -> bool {
        let value = value.unwrap_or("");
        match self.op {
            MatchOp::Eq => value == self.value,
            MatchOp::NotEq => value != self.value,
            MatchOp::Re => self.regex.as_ref().is_some_and(|r| r.is_match(value)),
            MatchOp::NotRe => !self.regex.as_ref().is_some_and(|r| r.is_match(value)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineOp {
    Contains,
    NotContains,
    Re,
    NotRe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumOp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    NotEq,
}

#[derive(Debug, Clone)]
pub enum LabelFilter {
    Str(Matcher),
    /// Compared as numbers; durations in seconds, sizes in bytes.
    Num {
        name: String,
        op: NumOp,
        value: f64,
    },
    And(Box<LabelFilter>, Box<LabelFilter>),
    Or(Box<LabelFilter>, Box<LabelFilter>),
}

#[derive(Debug, Clone)]
pub enum Stage {
    Line {
        op: LineOp,
        value: String,
        regex: Option<Regex>,
    },
    Logfmt,
    Json,
    Labels(LabelFilter),
    Drop(Vec<String>),
    Keep(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct LogQuery {
    pub selector: Vec<Matcher>,
    pub pipeline: Vec<Stage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeFn {
    CountOverTime,
    Rate,
    BytesOverTime,
    BytesRate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Topk(usize),
    Bottomk(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grouping {
    By(Vec<String>),
    Without(Vec<String>),
}

#[derive(Debug, Clone)]
pub enum MetricExpr {
    Range {
        func: RangeFn,
        query: LogQuery,
        range: i64,
    },
    Aggregate {
        op: AggOp,
        grouping: Option<Grouping>,
        inner: Box<MetricExpr>,
    },
}

#[derive(Debug, Clone)]
pub enum Expr {
    Log(LogQuery),
    Metric(MetricExpr),
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    at: usize,
}

pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let mut p = Parser {
        text,
        tokens: lex(text)?,
        at: 0,
    };
    let expr = match p.peek() {
        Tok::LBrace => Expr::Log(p.log_query()?),
        _ => Expr::Metric(p.metric()?),
    };
    if p.peek() != &Tok::End {
        return Err(p.unexpected("end of query"));
    }
    Ok(expr)
}

fn regex(text: &str, at: usize, pattern: &str, anchored: bool) -> Result<Regex, ParseError> {
    let source = if anchored {
        format!("^(?:{pattern})$")
    } else {
        pattern.to_owned()
    };
    Regex::new(&source).map_err(|e| ParseError::at(text, at, format!("invalid regex: {e}")))
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.tokens[self.at].tok
    }

    fn next(&mut self) -> Token {
        let token = self.tokens[self.at].clone();
        if self.at + 1 < self.tokens.len() {
            self.at += 1;
        }
        token
    }

    fn unexpected(&self, expecting: &str) -> ParseError {
        let token = &self.tokens[self.at];
        let found = match &token.tok {
            Tok::End => "end of input".to_owned(),
            Tok::Ident(s) => format!("IDENTIFIER {s}"),
            Tok::Str(s) => format!("STRING \"{s}\""),
            Tok::Number(n) => format!("NUMBER {n}"),
            other => format!("{other:?}"),
        };
        ParseError::at(
            self.text,
            token.at,
            format!("syntax error: unexpected {found}, expecting {expecting}"),
        )
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<(), ParseError> {
        if self.peek() == &tok {
            self.next();
            Ok(())
        } else {
            Err(self.unexpected(what))
        }
    }

    fn ident(&mut self, what: &str) -> Result<String, ParseError> {
        match self.peek().clone() {
            Tok::Ident(name) => {
                self.next();
                Ok(name)
            }
            _ => Err(self.unexpected(what)),
        }
    }

    fn string(&mut self) -> Result<(String, usize), ParseError> {
        let at = self.tokens[self.at].at;
        match self.peek().clone() {
            Tok::Str(s) => {
                self.next();
                Ok((s, at))
            }
            _ => Err(self.unexpected("STRING")),
        }
    }

    fn matcher(&mut self) -> Result<Matcher, ParseError> {
        let name = self.ident("a label name")?;
        let op = match self.next().tok {
            Tok::Eq => MatchOp::Eq,
            Tok::NotEq => MatchOp::NotEq,
            Tok::Re => MatchOp::Re,
            Tok::NotRe => MatchOp::NotRe,
            _ => {
                self.at -= 1;
                return Err(self.unexpected("=, !=, =~ or !~"));
            }
        };
        let (value, at) = self.string()?;
        let regex = match op {
            MatchOp::Re | MatchOp::NotRe => Some(regex(self.text, at, &value, true)?),
            _ => None,
        };
        Ok(Matcher {
            name,
            op,
            value,
            regex,
        })
    }

    fn log_query(&mut self) -> Result<LogQuery, ParseError> {
        self.expect(Tok::LBrace, "{")?;
        let mut selector = vec![self.matcher()?];
        while self.peek() == &Tok::Comma {
            self.next();
            selector.push(self.matcher()?);
        }
        self.expect(Tok::RBrace, ", or }")?;
        if selector.iter().all(|m| m.matches(Some(""))) {
            return Err(ParseError::at(
                self.text,
                0,
                "queries require at least one regexp or equality matcher that does not have an empty-compatible value".into(),
            ));
        }
        let mut pipeline = Vec::new();
        loop {
            let stage = match self.peek() {
                Tok::PipeExact | Tok::PipeRe | Tok::NotEq | Tok::NotRe => {
                    let op = match self.next().tok {
                        Tok::PipeExact => LineOp::Contains,
                        Tok::PipeRe => LineOp::Re,
                        Tok::NotEq => LineOp::NotContains,
                        _ => LineOp::NotRe,
                    };
                    let (value, at) = self.string()?;
                    let regex = match op {
                        LineOp::Re | LineOp::NotRe => Some(regex(self.text, at, &value, false)?),
                        _ => None,
                    };
                    Stage::Line { op, value, regex }
                }
                Tok::Pipe => {
                    self.next();
                    match self.peek().clone() {
                        Tok::Ident(word) if word == "logfmt" => {
                            self.next();
                            Stage::Logfmt
                        }
                        Tok::Ident(word) if word == "json" => {
                            self.next();
                            Stage::Json
                        }
                        Tok::Ident(word) if word == "drop" || word == "keep" => {
                            self.next();
                            let mut names = vec![self.ident("a label name")?];
                            while self.peek() == &Tok::Comma {
                                self.next();
                                names.push(self.ident("a label name")?);
                            }
                            if word == "drop" {
                                Stage::Drop(names)
                            } else {
                                Stage::Keep(names)
                            }
                        }
                        Tok::Ident(_) | Tok::LParen => Stage::Labels(self.label_or()?),
                        _ => {
                            return Err(self.unexpected(
                                "a parser (logfmt, json), a label filter, drop or keep",
                            ));
                        }
                    }
                }
                _ => break,
            };
            pipeline.push(stage);
        }
        Ok(LogQuery { selector, pipeline })
    }

    fn label_or(&mut self) -> Result<LabelFilter, ParseError> {
        let mut left = self.label_and()?;
        while matches!(self.peek(), Tok::Ident(w) if w == "or") {
            self.next();
            left = LabelFilter::Or(Box::new(left), Box::new(self.label_and()?));
        }
        Ok(left)
    }

    fn label_and(&mut self) -> Result<LabelFilter, ParseError> {
        let mut left = self.label_primary()?;
        loop {
            match self.peek() {
                Tok::Ident(w) if w == "and" => {
                    self.next();
                }
                Tok::Comma => {
                    self.next();
                }
                Tok::Ident(w) if w != "or" => {}
                _ => return Ok(left),
            }
            left = LabelFilter::And(Box::new(left), Box::new(self.label_primary()?));
        }
    }

    fn label_primary(&mut self) -> Result<LabelFilter, ParseError> {
        if self.peek() == &Tok::LParen {
            self.next();
            let inner = self.label_or()?;
            self.expect(Tok::RParen, ")")?;
            return Ok(inner);
        }
        let name = self.ident("a label name")?;
        let op_token = self.next().tok;
        let num_op = match op_token {
            Tok::Gt => Some(NumOp::Gt),
            Tok::Ge => Some(NumOp::Ge),
            Tok::Lt => Some(NumOp::Lt),
            Tok::Le => Some(NumOp::Le),
            Tok::EqEq => Some(NumOp::Eq),
            _ => None,
        };
        let number = |tok: &Tok| match tok {
            Tok::Number(n) => Some(*n),
            Tok::Duration(d) => Some(*d as f64 / 1e9),
            Tok::Bytes(b) => Some(*b),
            _ => None,
        };
        if let Some(op) = num_op {
            let value =
                number(self.peek()).ok_or_else(|| self.unexpected("a number, duration or size"))?;
            self.next();
            return Ok(LabelFilter::Num { name, op, value });
        }
        let op = match op_token {
            Tok::Eq => MatchOp::Eq,
            Tok::NotEq => MatchOp::NotEq,
            Tok::Re => MatchOp::Re,
            Tok::NotRe => MatchOp::NotRe,
            _ => {
                self.at -= 1;
                return Err(self.unexpected("a comparison"));
            }
        };
        // `status != 500` compares numbers; `status != "500"` strings.
        if let Some(value) = number(self.peek()) {
            let op = match op {
                MatchOp::Eq => NumOp::Eq,
                MatchOp::NotEq => NumOp::NotEq,
                _ => return Err(self.unexpected("STRING")),
            };
            self.next();
            return Ok(LabelFilter::Num { name, op, value });
        }
        let (value, at) = self.string()?;
        let regex = match op {
            MatchOp::Re | MatchOp::NotRe => Some(regex(self.text, at, &value, true)?),
            _ => None,
        };
        Ok(LabelFilter::Str(Matcher {
            name,
            op,
            value,
            regex,
        }))
    }

    fn grouping(&mut self) -> Result<Option<Grouping>, ParseError> {
        let by = match self.peek() {
            Tok::Ident(w) if w == "by" => true,
            Tok::Ident(w) if w == "without" => false,
            _ => return Ok(None),
        };
        self.next();
        self.expect(Tok::LParen, "(")?;
        let mut names = Vec::new();
        while self.peek() != &Tok::RParen {
            names.push(self.ident("a label name")?);
            if self.peek() == &Tok::Comma {
                self.next();
            }
        }
        self.next();
        Ok(Some(if by {
            Grouping::By(names)
        } else {
            Grouping::Without(names)
        }))
    }

    fn metric(&mut self) -> Result<MetricExpr, ParseError> {
        let at = self.tokens[self.at].at;
        let word =
            self.ident("a metric function (count_over_time, rate, sum, …) or a stream selector")?;
        let range_fn = match word.as_str() {
            "count_over_time" => Some(RangeFn::CountOverTime),
            "rate" => Some(RangeFn::Rate),
            "bytes_over_time" => Some(RangeFn::BytesOverTime),
            "bytes_rate" => Some(RangeFn::BytesRate),
            _ => None,
        };
        if let Some(func) = range_fn {
            self.expect(Tok::LParen, "(")?;
            let query = self.log_query()?;
            self.expect(Tok::LBracket, "[range]")?;
            let range = match self.next().tok {
                Tok::Duration(d) if d > 0 => d,
                _ => {
                    self.at -= 1;
                    return Err(self.unexpected("a duration"));
                }
            };
            self.expect(Tok::RBracket, "]")?;
            self.expect(Tok::RParen, ")")?;
            return Ok(MetricExpr::Range { func, query, range });
        }
        let op = match word.as_str() {
            "sum" => AggOp::Sum,
            "avg" => AggOp::Avg,
            "min" => AggOp::Min,
            "max" => AggOp::Max,
            "count" => AggOp::Count,
            "topk" => AggOp::Topk(0),
            "bottomk" => AggOp::Bottomk(0),
            other => {
                return Err(ParseError::at(
                    self.text,
                    at,
                    format!("syntax error: unknown function `{other}`"),
                ));
            }
        };
        let mut grouping = self.grouping()?;
        self.expect(Tok::LParen, "(")?;
        let op = match op {
            AggOp::Topk(_) | AggOp::Bottomk(_) => {
                let k = match self.next().tok {
                    Tok::Number(k) if k >= 1.0 && k.fract() == 0.0 => k as usize,
                    _ => {
                        self.at -= 1;
                        return Err(self.unexpected("a positive whole number"));
                    }
                };
                self.expect(Tok::Comma, ",")?;
                if op == AggOp::Topk(0) {
                    AggOp::Topk(k)
                } else {
                    AggOp::Bottomk(k)
                }
            }
            other => other,
        };
        let inner = self.metric()?;
        self.expect(Tok::RParen, ")")?;
        if grouping.is_none() {
            grouping = self.grouping()?;
        }
        Ok(MetricExpr::Aggregate {
            op,
            grouping,
            inner: Box::new(inner),
        })
    }
}
