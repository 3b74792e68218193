//! TraceQL's grammar: spanset filters combined with `&&`, `||` and the
//! structural operators, then pipeline stages.

use lab_signals::{SpanKind, StatusCode};
use regex::Regex;

use crate::ParseError;
use crate::lex::{Tok, Token, lex};

/// Where an attribute is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Span,
    Resource,
    /// `.name`: the span's attribute, else the resource's.
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intrinsic {
    Name,
    Status,
    StatusMessage,
    Kind,
    Duration,
    RootName,
    RootServiceName,
    TraceDuration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Intrinsic(Intrinsic),
    Attribute { scope: Scope, name: String },
}

impl Field {
    /// How the field is written in a query (and named in results).
    pub fn label(&self) -> String {
        match self {
            Field::Intrinsic(i) => match i {
                Intrinsic::Name => "name",
                Intrinsic::Status => "status",
                Intrinsic::StatusMessage => "statusMessage",
                Intrinsic::Kind => "kind",
                Intrinsic::Duration => "duration",
                Intrinsic::RootName => "rootName",
                Intrinsic::RootServiceName => "rootServiceName",
                Intrinsic::TraceDuration => "traceDuration",
            }
            .to_owned(),
            Field::Attribute { scope, name } => match scope {
                Scope::Span => format!("span.{name}"),
                Scope::Resource => format!("resource.{name}"),
                Scope::Any => format!(".{name}"),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Static {
    Str(String),
    Int(i64),
    Float(f64),
    Duration(i64),
    Bool(bool),
    Nil,
    Status(StatusCode),
    Kind(SpanKind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    Re,
    NotRe,
}

/// A condition inside `{ }`.
#[derive(Debug, Clone)]
pub enum Cond {
    Cmp {
        field: Field,
        op: CmpOp,
        value: Static,
        regex: Option<Regex>,
    },
    /// A bare boolean field: `{ span.cache.hit }`.
    Truthy(Field),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
    All,
}

#[derive(Debug, Clone)]
pub enum Spanset {
    Filter(Cond),
    And(Box<Spanset>, Box<Spanset>),
    Or(Box<Spanset>, Box<Spanset>),
    /// `a >> b`: spans of `b` below a span of `a`.
    Descendant(Box<Spanset>, Box<Spanset>),
    /// `a > b`: spans of `b` whose parent is in `a`.
    Child(Box<Spanset>, Box<Spanset>),
    /// `a ~ b`: spans of `b` sharing a parent with a span of `a`.
    Sibling(Box<Spanset>, Box<Spanset>),
    /// `a << b`: spans of `b` above a span of `a`.
    Ancestor(Box<Spanset>, Box<Spanset>),
    /// `a < b`: spans of `b` that are the parent of a span of `a`.
    Parent(Box<Spanset>, Box<Spanset>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Count,
    Avg,
    Min,
    Max,
    Sum,
}

#[derive(Debug, Clone)]
pub enum Stage {
    Select(Vec<Field>),
    /// `count() > 2`, `avg(duration) > 20ms`.
    Compare {
        aggregate: Aggregate,
        field: Option<Field>,
        op: CmpOp,
        value: Static,
    },
    /// A further spanset filter on the spans kept so far.
    Filter(Cond),
}

/// A parsed TraceQL query.
#[derive(Debug, Clone)]
pub struct Query {
    pub spanset: Spanset,
    pub pipeline: Vec<Stage>,
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    at: usize,
}

pub fn parse(text: &str) -> Result<Query, ParseError> {
    let mut parser = Parser {
        text,
        tokens: lex(text)?,
        at: 0,
    };
    let spanset = parser.spanset_or()?;
    let mut pipeline = Vec::new();
    while parser.peek() == &Tok::Pipe {
        parser.next();
        pipeline.push(parser.stage()?);
    }
    if parser.peek() != &Tok::End {
        return Err(parser.unexpected("end of query"));
    }
    Ok(Query { spanset, pipeline })
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

    fn unexpected(&self, expected: &str) -> ParseError {
        let token = &self.tokens[self.at];
        let found = match &token.tok {
            Tok::End => "end of query".to_owned(),
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Str(s) => format!("string \"{s}\""),
            other => format!("{other:?}"),
        };
        ParseError::at(
            self.text,
            token.at,
            format!("syntax error: unexpected {found}, expecting {expected}"),
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

    fn spanset_or(&mut self) -> Result<Spanset, ParseError> {
        let mut left = self.spanset_and()?;
        while self.peek() == &Tok::OrOr {
            self.next();
            left = Spanset::Or(Box::new(left), Box::new(self.spanset_and()?));
        }
        Ok(left)
    }

    fn spanset_and(&mut self) -> Result<Spanset, ParseError> {
        let mut left = self.spanset_structural()?;
        while self.peek() == &Tok::AndAnd {
            self.next();
            left = Spanset::And(Box::new(left), Box::new(self.spanset_structural()?));
        }
        Ok(left)
    }

    fn spanset_structural(&mut self) -> Result<Spanset, ParseError> {
        let mut left = self.spanset_primary()?;
        loop {
            let make: fn(Box<Spanset>, Box<Spanset>) -> Spanset = match self.peek() {
                Tok::Descendant => Spanset::Descendant,
                Tok::Gt => Spanset::Child,
                Tok::Tilde => Spanset::Sibling,
                Tok::Ancestor => Spanset::Ancestor,
                Tok::Lt => Spanset::Parent,
                _ => return Ok(left),
            };
            self.next();
            left = make(Box::new(left), Box::new(self.spanset_primary()?));
        }
    }

    fn spanset_primary(&mut self) -> Result<Spanset, ParseError> {
        match self.peek() {
            Tok::LBrace => Ok(Spanset::Filter(self.filter()?)),
            Tok::LParen => {
                self.next();
                let inner = self.spanset_or()?;
                self.expect(Tok::RParen, "`)`")?;
                Ok(inner)
            }
            _ => Err(self.unexpected("`{` or `(`")),
        }
    }

    fn filter(&mut self) -> Result<Cond, ParseError> {
        self.expect(Tok::LBrace, "`{`")?;
        if self.peek() == &Tok::RBrace {
            self.next();
            return Ok(Cond::All);
        }
        let cond = self.cond_or()?;
        self.expect(Tok::RBrace, "`}` or an operator")?;
        Ok(cond)
    }

    fn cond_or(&mut self) -> Result<Cond, ParseError> {
        let mut left = self.cond_and()?;
        while self.peek() == &Tok::OrOr {
            self.next();
            left = Cond::Or(Box::new(left), Box::new(self.cond_and()?));
        }
        Ok(left)
    }

    fn cond_and(&mut self) -> Result<Cond, ParseError> {
        let mut left = self.cond_unary()?;
        while self.peek() == &Tok::AndAnd {
            self.next();
            left = Cond::And(Box::new(left), Box::new(self.cond_unary()?));
        }
        Ok(left)
    }

    fn cond_unary(&mut self) -> Result<Cond, ParseError> {
        match self.peek() {
            Tok::Not => {
                self.next();
                Ok(Cond::Not(Box::new(self.cond_unary()?)))
            }
            Tok::LParen => {
                self.next();
                let inner = self.cond_or()?;
                self.expect(Tok::RParen, "`)`")?;
                Ok(inner)
            }
            _ => self.comparison(),
        }
    }

    fn comparison(&mut self) -> Result<Cond, ParseError> {
        let field = self.field()?;
        let op = match self.peek() {
            Tok::Eq => CmpOp::Eq,
            Tok::NotEq => CmpOp::NotEq,
            Tok::Lt => CmpOp::Lt,
            Tok::Le => CmpOp::Le,
            Tok::Gt => CmpOp::Gt,
            Tok::Ge => CmpOp::Ge,
            Tok::Re => CmpOp::Re,
            Tok::NotRe => CmpOp::NotRe,
            _ => return Ok(Cond::Truthy(field)),
        };
        self.next();
        let at = self.tokens[self.at].at;
        let value = self.value()?;
        let regex = match (op, &value) {
            (CmpOp::Re | CmpOp::NotRe, Static::Str(pattern)) => Some(
                Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| ParseError::at(self.text, at, format!("invalid regex: {e}")))?,
            ),
            (CmpOp::Re | CmpOp::NotRe, _) => {
                return Err(ParseError::at(
                    self.text,
                    at,
                    "a regex match needs a string".into(),
                ));
            }
            _ => None,
        };
        Ok(Cond::Cmp {
            field,
            op,
            value,
            regex,
        })
    }

    fn field(&mut self) -> Result<Field, ParseError> {
        let token = self.next();
        let Tok::Ident(name) = token.tok else {
            self.at -= 1;
            return Err(self.unexpected("a field (an intrinsic such as `status`, or an attribute such as `span.http.method`)"));
        };
        let intrinsic = match name.as_str() {
            "name" | "span:name" => Some(Intrinsic::Name),
            "status" | "span:status" => Some(Intrinsic::Status),
            "statusMessage" | "span:statusMessage" => Some(Intrinsic::StatusMessage),
            "kind" | "span:kind" => Some(Intrinsic::Kind),
            "duration" | "span:duration" => Some(Intrinsic::Duration),
            "rootName" | "trace:rootName" => Some(Intrinsic::RootName),
            "rootServiceName" | "trace:rootService" => Some(Intrinsic::RootServiceName),
            "traceDuration" | "trace:duration" => Some(Intrinsic::TraceDuration),
            _ => None,
        };
        if let Some(intrinsic) = intrinsic {
            return Ok(Field::Intrinsic(intrinsic));
        }
        let attribute = |scope, rest: &str| {
            if rest.is_empty() {
                Err(ParseError::at(
                    self.text,
                    token.at,
                    format!("`{name}` names no attribute"),
                ))
            } else {
                Ok(Field::Attribute {
                    scope,
                    name: rest.to_owned(),
                })
            }
        };
        if let Some(rest) = name.strip_prefix("span.") {
            return attribute(Scope::Span, rest);
        }
        if let Some(rest) = name.strip_prefix("resource.") {
            return attribute(Scope::Resource, rest);
        }
        if let Some(rest) = name.strip_prefix('.') {
            return attribute(Scope::Any, rest);
        }
        Err(ParseError::at(
            self.text,
            token.at,
            format!(
                "unknown field `{name}`: use an intrinsic (name, status, kind, duration, …) or a scoped attribute (span.x, resource.x, .x)"
            ),
        ))
    }

    fn value(&mut self) -> Result<Static, ParseError> {
        let token = self.next();
        Ok(match token.tok {
            Tok::Str(s) => Static::Str(s),
            Tok::Int(i) => Static::Int(i),
            Tok::Float(f) => Static::Float(f),
            Tok::Duration(d) => Static::Duration(d),
            Tok::Ident(word) => {
                match word.as_str() {
                    "true" => Static::Bool(true),
                    "false" => Static::Bool(false),
                    "nil" => Static::Nil,
                    "error" => Static::Status(StatusCode::Error),
                    "ok" => Static::Status(StatusCode::Ok),
                    "unset" => Static::Status(StatusCode::Unset),
                    "server" => Static::Kind(SpanKind::Server),
                    "client" => Static::Kind(SpanKind::Client),
                    "internal" => Static::Kind(SpanKind::Internal),
                    "producer" => Static::Kind(SpanKind::Producer),
                    "consumer" => Static::Kind(SpanKind::Consumer),
                    "unspecified" => Static::Kind(SpanKind::Unspecified),
                    _ => {
                        self.at -= 1;
                        return Err(self.unexpected("a value (string, number, duration, true, false, nil, a status or a kind)"));
                    }
                }
            }
            _ => {
                self.at -= 1;
                return Err(self.unexpected("a value"));
            }
        })
    }

    fn stage(&mut self) -> Result<Stage, ParseError> {
        if self.peek() == &Tok::LBrace {
            return Ok(Stage::Filter(self.filter()?));
        }
        let token = self.next();
        let Tok::Ident(word) = token.tok else {
            self.at -= 1;
            return Err(
                self.unexpected("select(…), count(), avg(…), min(…), max(…), sum(…) or a filter")
            );
        };
        self.expect(Tok::LParen, "`(`")?;
        if word == "select" {
            let mut fields = vec![self.field()?];
            while self.peek() == &Tok::Comma {
                self.next();
                fields.push(self.field()?);
            }
            self.expect(Tok::RParen, "`)`")?;
            return Ok(Stage::Select(fields));
        }
        let aggregate = match word.as_str() {
            "count" => Aggregate::Count,
            "avg" => Aggregate::Avg,
            "min" => Aggregate::Min,
            "max" => Aggregate::Max,
            "sum" => Aggregate::Sum,
            _ => {
                return Err(ParseError::at(
                    self.text,
                    token.at,
                    format!("unknown pipeline function `{word}`"),
                ));
            }
        };
        let field = if aggregate == Aggregate::Count {
            None
        } else {
            Some(self.field()?)
        };
        self.expect(Tok::RParen, "`)`")?;
        let op = match self.next().tok {
            Tok::Eq => CmpOp::Eq,
            Tok::NotEq => CmpOp::NotEq,
            Tok::Lt => CmpOp::Lt,
            Tok::Le => CmpOp::Le,
            Tok::Gt => CmpOp::Gt,
            Tok::Ge => CmpOp::Ge,
            _ => {
                self.at -= 1;
                return Err(self.unexpected("a comparison (= != < <= > >=)"));
            }
        };
        let value = self.value()?;
        Ok(Stage::Compare {
            aggregate,
            field,
            op,
            value,
        })
    }
}
