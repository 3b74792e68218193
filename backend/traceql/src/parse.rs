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
    /// How Tempo's search answer names the field on a span: the bare
    /// attribute name (`http.status_code`), or the intrinsic's name.
    pub fn key(&self) -> String {
        match self {
            Field::Attribute { name, .. } => name.clone(),
            Field::Intrinsic(_) => self.label(),
        }
    }

    /// How the field is written in a query.
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

/// A parsed TraceQL query: a spanset expression, then pipeline stages.
/// Run it with [`Query::search`].
#[derive(Debug, Clone)]
pub struct Query {
    pub(crate) spanset: Spanset,
    pub(crate) pipeline: Vec<Stage>,
}

/// A token as a person would point at it in an error message.
fn describe(tok: &Tok) -> String {
    let text = match tok {
        Tok::End => return "end of query".into(),
        Tok::Ident(s) => return format!("`{s}`"),
        Tok::Str(s) => return format!("string \"{s}\""),
        Tok::Int(i) => return format!("number {i}"),
        Tok::Float(f) => return format!("number {f}"),
        Tok::Duration(d) => return format!("duration {d}ns"),
        Tok::LBrace => "{",
        Tok::RBrace => "}",
        Tok::LParen => "(",
        Tok::RParen => ")",
        Tok::Comma => ",",
        Tok::Pipe => "|",
        Tok::AndAnd => "&&",
        Tok::OrOr => "||",
        Tok::Not => "!",
        Tok::Eq => "=",
        Tok::NotEq => "!=",
        Tok::Lt => "<",
        Tok::Le => "<=",
        Tok::Gt => ">",
        Tok::Ge => ">=",
        Tok::Re => "=~",
        Tok::NotRe => "!~",
        Tok::Descendant => ">>",
        Tok::Ancestor => "<<",
        Tok::Tilde => "~",
    };
    format!("`{text}`")
}

/// The type an intrinsic always has, to reject comparisons that can never
/// hold (`status = 200`) when the query is parsed rather than silently
/// matching nothing.
fn intrinsic_type(intrinsic: Intrinsic) -> &'static str {
    match intrinsic {
        Intrinsic::Name
        | Intrinsic::StatusMessage
        | Intrinsic::RootName
        | Intrinsic::RootServiceName => "string",
        Intrinsic::Status => "status",
        Intrinsic::Kind => "kind",
        Intrinsic::Duration | Intrinsic::TraceDuration => "duration",
    }
}

fn static_type(value: &Static) -> &'static str {
    match value {
        Static::Str(_) => "string",
        Static::Int(_) | Static::Float(_) => "number",
        Static::Duration(_) => "duration",
        Static::Bool(_) => "boolean",
        Static::Nil => "nil",
        Static::Status(_) => "status",
        Static::Kind(_) => "kind",
    }
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    at: usize,
}

/// A single field (`resource.service.name`, `.x`, `status`), as the tag
/// endpoints name tags.
pub fn parse_field(text: &str) -> Result<Field, ParseError> {
    let mut parser = Parser {
        text,
        tokens: lex(text)?,
        at: 0,
    };
    let field = parser.field()?;
    if parser.peek() != &Tok::End {
        return Err(parser.unexpected("end of the tag name"));
    }
    Ok(field)
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
    /// The token at the cursor; past the end, the final `End` (the cursor
    /// may step past it so that stepping back after `next` is always right).
    fn current(&self) -> &Token {
        &self.tokens[self.at.min(self.tokens.len() - 1)]
    }

    fn peek(&self) -> &Tok {
        &self.current().tok
    }

    fn next(&mut self) -> Token {
        let token = self.current().clone();
        self.at += 1;
        token
    }

    fn unexpected(&self, expected: &str) -> ParseError {
        let token = self.current();
        ParseError::at(
            self.text,
            token.at,
            format!(
                "syntax error: unexpected {}, expecting {expected}",
                describe(&token.tok)
            ),
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
        let at = self.current().at;
        let value = self.value()?;
        if let Static::Nil = value
            && !matches!(op, CmpOp::Eq | CmpOp::NotEq)
        {
            return Err(ParseError::at(
                self.text,
                at,
                "nil compares only with = or !=".into(),
            ));
        }
        if let Field::Intrinsic(intrinsic) = &field {
            let (want, got) = (intrinsic_type(*intrinsic), static_type(&value));
            if got != "nil" && want != got {
                return Err(ParseError::at(
                    self.text,
                    at,
                    format!("cannot compare `{}` ({want}) with a {got}", field.label()),
                ));
            }
            if matches!(want, "status" | "kind") && !matches!(op, CmpOp::Eq | CmpOp::NotEq) {
                return Err(ParseError::at(
                    self.text,
                    at,
                    format!("`{}` compares only with = or !=", field.label()),
                ));
            }
        }
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
        if name.starts_with("span:") || name.starts_with("trace:") {
            return Err(ParseError::at(
                self.text,
                token.at,
                format!(
                    "unknown intrinsic `{name}`: span:name, span:status, span:statusMessage, span:kind, span:duration, trace:rootName, trace:rootService, trace:duration"
                ),
            ));
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
