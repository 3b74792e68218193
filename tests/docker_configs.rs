//! The docker runtime's configs, read as their programs read them: every
//! YAML and JSON file under `docker/` parses, Alloy's file parses as Alloy
//! syntax and wires only components it declares, each signal reaches the
//! backend meant for it, and every correlation Grafana is given points at a
//! datasource that is provisioned.
//!
//! A missing file fails the test that needs it; nothing here is skipped.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use yaml_serde::Value as Yaml;

fn docker_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every file under `dir`, sorted, so failures come in a stable order.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("a readable folder entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// A file under `docker/`; a missing one fails the test with its path.
fn read(relative: &str) -> String {
    let path = docker_dir().join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("docker/{relative} ({}): {e}", path.display()))
}

fn yaml(relative: &str) -> Yaml {
    yaml_serde::from_str::<Yaml>(&read(relative))
        .unwrap_or_else(|e| panic!("docker/{relative} is not valid YAML: {e}"))
}

fn json(relative: &str) -> Json {
    serde_json::from_str::<Json>(&read(relative))
        .unwrap_or_else(|e| panic!("docker/{relative} is not valid JSON: {e}"))
}

fn alloy() -> Vec<Block> {
    parse_alloy(&read("alloy/config.alloy"))
        .unwrap_or_else(|e| panic!("docker/alloy/config.alloy:{e}"))
}

const DATASOURCES: &str = "grafana/provisioning/datasources/datasources.yaml";
const DASHBOARDS: [&str; 3] = [
    "grafana/dashboards/mythical-red.json",
    "grafana/dashboards/mythical-errors.json",
    "grafana/dashboards/mythical-latency.json",
];

// ---------------------------------------------------------------------------
// A small reader of Alloy's configuration syntax.
// ---------------------------------------------------------------------------

/// A syntax error at a 1-based line and column.
#[derive(Debug, Clone, PartialEq)]
struct SyntaxError {
    line: usize,
    col: usize,
    message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.col, self.message)
    }
}

type Parsed<T> = Result<T, SyntaxError>;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Number(String),
    Punct(&'static str),
    Eof,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(name) => write!(f, "`{name}`"),
            Tok::Str(_) => write!(f, "a string"),
            Tok::Number(n) => write!(f, "the number {n}"),
            Tok::Punct(p) => write!(f, "`{p}`"),
            Tok::Eof => write!(f, "the end of the file"),
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
    col: usize,
}

/// Operators and delimiters, longest first so `==` wins over `=`.
const PUNCTUATION: [&str; 24] = [
    "==", "!=", "<=", ">=", "&&", "||", "{", "}", "[", "]", "(", ")", "=", ",", ".", "+", "-", "*",
    "/", "%", "^", "!", "<", ">",
];

struct Lexer {
    chars: Vec<char>,
    at: usize,
    line: usize,
    col: usize,
}

impl Lexer {
    fn new(text: &str) -> Self {
        Lexer {
            chars: text.chars().collect(),
            at: 0,
            line: 1,
            col: 1,
        }
    }

    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.at + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.at += 1;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn error<T>(&self, line: usize, col: usize, message: impl Into<String>) -> Parsed<T> {
        Err(SyntaxError {
            line,
            col,
            message: message.into(),
        })
    }

    fn tokens(mut self) -> Parsed<Vec<Token>> {
        let mut out = Vec::new();
        loop {
            let (line, col) = (self.line, self.col);
            let Some(c) = self.peek(0) else {
                out.push(Token {
                    tok: Tok::Eof,
                    line,
                    col,
                });
                return Ok(out);
            };
            let tok = if c.is_whitespace() {
                self.bump();
                continue;
            } else if c == '/' && self.peek(1) == Some('/') {
                while self.peek(0).is_some_and(|c| c != '\n') {
                    self.bump();
                }
                continue;
            } else if c == '/' && self.peek(1) == Some('*') {
                self.bump();
                self.bump();
                loop {
                    match (self.peek(0), self.peek(1)) {
                        (Some('*'), Some('/')) => {
                            self.bump();
                            self.bump();
                            break;
                        }
                        (Some(_), _) => {
                            self.bump();
                        }
                        (None, _) => return self.error(line, col, "unterminated /* comment"),
                    }
                }
                continue;
            } else if c == '"' {
                Tok::Str(self.quoted(line, col)?)
            } else if c == '`' {
                self.bump();
                let mut text = String::new();
                loop {
                    match self.bump() {
                        Some('`') => break,
                        Some(c) => text.push(c),
                        None => return self.error(line, col, "unterminated raw string"),
                    }
                }
                Tok::Str(text)
            } else if c.is_ascii_digit() {
                Tok::Number(self.number(line, col)?)
            } else if c.is_alphabetic() || c == '_' {
                let mut word = String::new();
                while let Some(c) = self.peek(0).filter(|c| c.is_alphanumeric() || *c == '_') {
                    word.push(c);
                    self.bump();
                }
                Tok::Ident(word)
            } else if let Some(p) = PUNCTUATION.iter().copied().find(|p| {
                p.chars()
                    .enumerate()
                    .all(|(i, pc)| self.peek(i) == Some(pc))
            }) {
                for _ in 0..p.len() {
                    self.bump();
                }
                Tok::Punct(p)
            } else {
                return self.error(line, col, format!("unexpected character {c:?}"));
            };
            out.push(Token { tok, line, col });
        }
    }

    /// A "…" string with Go-style escapes, as Alloy has them.
    fn quoted(&mut self, line: usize, col: usize) -> Parsed<String> {
        self.bump();
        let mut text = String::new();
        loop {
            let (at_line, at_col) = (self.line, self.col);
            match self.bump() {
                None => return self.error(line, col, "unterminated string"),
                Some('\n') => return self.error(line, col, "a newline inside a string"),
                Some('"') => return Ok(text),
                Some('\\') => {
                    let escaped = match self.bump() {
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some('r') => '\r',
                        Some('a') => '\x07',
                        Some('b') => '\x08',
                        Some('f') => '\x0c',
                        Some('v') => '\x0b',
                        Some('\\') => '\\',
                        Some('"') => '"',
                        Some(kind @ ('x' | 'u' | 'U')) => {
                            let digits = match kind {
                                'x' => 2,
                                'u' => 4,
                                _ => 8,
                            };
                            let hex: String = (0..digits).filter_map(|_| self.bump()).collect();
                            match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                                Some(c) if hex.len() == digits => c,
                                _ => {
                                    return self.error(
                                        at_line,
                                        at_col,
                                        format!("bad \\{kind} escape {hex:?}"),
                                    );
                                }
                            }
                        }
                        Some(other) => {
                            return self.error(
                                at_line,
                                at_col,
                                format!("unknown escape sequence \\{other}"),
                            );
                        }
                        None => return self.error(line, col, "unterminated string"),
                    };
                    text.push(escaped);
                }
                Some(c) => text.push(c),
            }
        }
    }

    /// `12`, `0.5`, `1e3`, `2.5E-3`.
    fn number(&mut self, line: usize, col: usize) -> Parsed<String> {
        let mut text = String::new();
        let digits = |lexer: &mut Self, text: &mut String| {
            while let Some(c) = lexer.peek(0).filter(char::is_ascii_digit) {
                text.push(c);
                lexer.bump();
            }
        };
        digits(self, &mut text);
        if self.peek(0) == Some('.') && self.peek(1).is_some_and(|c| c.is_ascii_digit()) {
            text.push('.');
            self.bump();
            digits(self, &mut text);
        }
        if matches!(self.peek(0), Some('e' | 'E')) {
            text.push('e');
            self.bump();
            if let Some(sign) = self.peek(0).filter(|c| *c == '+' || *c == '-') {
                text.push(sign);
                self.bump();
            }
            if !self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
                return self.error(line, col, "a number's exponent has no digits");
            }
            digits(self, &mut text);
        }
        if self
            .peek(0)
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            return self.error(line, col, "a number runs into a name");
        }
        Ok(text)
    }
}

/// An Alloy expression, as far as these tests need one.
#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Str(String),
    Number(String),
    Bool(bool),
    Null,
    /// `a.b.c`: a name and the fields accessed on it.
    Path {
        parts: Vec<String>,
        line: usize,
        col: usize,
    },
    Call(Box<Expr>, Vec<Expr>),
    Index(Box<Expr>, Box<Expr>),
    Array(Vec<Expr>),
    Object(Vec<(String, Expr)>),
    Unary(&'static str, Box<Expr>),
    Binary(Box<Expr>, &'static str, Box<Expr>),
}

impl Expr {
    fn as_str(&self) -> Option<&str> {
        match self {
            Expr::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Every `a.b.c` path read as a value (not called as a function).
    fn paths(&self, out: &mut Vec<(String, usize, usize)>) {
        match self {
            Expr::Path { parts, line, col } => out.push((parts.join("."), *line, *col)),
            Expr::Call(callee, args) => {
                // The callee names a function, not a component.
                if !matches!(**callee, Expr::Path { .. }) {
                    callee.paths(out);
                }
                args.iter().for_each(|a| a.paths(out));
            }
            Expr::Index(a, b) | Expr::Binary(a, _, b) => {
                a.paths(out);
                b.paths(out);
            }
            Expr::Unary(_, a) => a.paths(out),
            Expr::Array(items) => items.iter().for_each(|a| a.paths(out)),
            Expr::Object(fields) => fields.iter().for_each(|(_, a)| a.paths(out)),
            Expr::Str(_) | Expr::Number(_) | Expr::Bool(_) | Expr::Null => {}
        }
    }
}

#[derive(Debug, Clone)]
struct Attribute {
    name: String,
    value: Expr,
}

/// `name.parts "label" { body }`.
#[derive(Debug, Clone)]
struct Block {
    name: String,
    label: Option<String>,
    attributes: Vec<Attribute>,
    blocks: Vec<Block>,
    line: usize,
    col: usize,
}

impl Block {
    /// `kind.label`, the name other components refer to it by.
    fn id(&self) -> String {
        match &self.label {
            Some(label) => format!("{}.{label}", self.name),
            None => self.name.clone(),
        }
    }

    fn attr(&self, name: &str) -> Option<&Expr> {
        self.attributes
            .iter()
            .find(|a| a.name == name)
            .map(|a| &a.value)
    }

    fn block(&self, name: &str) -> Option<&Block> {
        self.blocks.iter().find(|b| b.name == name)
    }

    /// The string at a path of nested blocks ending in an attribute:
    /// `["client", "endpoint"]`.
    fn string_at(&self, path: &[&str]) -> Option<&str> {
        let (last, blocks) = path.split_last()?;
        let mut block = self;
        for name in blocks {
            block = block.block(name)?;
        }
        block.attr(last)?.as_str()
    }

    /// Every path read anywhere in this block, nested blocks included.
    fn paths(&self) -> Vec<(String, usize, usize)> {
        let mut out = Vec::new();
        for attribute in &self.attributes {
            attribute.value.paths(&mut out);
        }
        for block in &self.blocks {
            out.extend(block.paths());
        }
        out
    }
}

/// What a component exports for others to send to.
const EXPORTS: [&str; 2] = ["receiver", "input"];

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.tokens[self.at].tok
    }

    fn next(&mut self) -> Token {
        let token = self.tokens[self.at].clone();
        if token.tok != Tok::Eof {
            self.at += 1;
        }
        token
    }

    fn error<T>(&self, message: impl Into<String>) -> Parsed<T> {
        let token = &self.tokens[self.at];
        Err(SyntaxError {
            line: token.line,
            col: token.col,
            message: message.into(),
        })
    }

    fn eat(&mut self, punct: &str) -> bool {
        if *self.peek() == Tok::Punct(punct_static(punct)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, punct: &str) -> Parsed<()> {
        if self.eat(punct) {
            Ok(())
        } else {
            self.error(format!("expected `{punct}`, found {}", self.peek()))
        }
    }

    fn ident(&mut self, what: &str) -> Parsed<String> {
        match self.peek().clone() {
            Tok::Ident(name) => {
                self.at += 1;
                Ok(name)
            }
            other => self.error(format!("expected {what}, found {other}")),
        }
    }

    /// Statements up to `}` (nested) or the end of the file (top level).
    fn body(&mut self, top: bool) -> Parsed<(Vec<Attribute>, Vec<Block>)> {
        let (mut attributes, mut blocks) = (Vec::new(), Vec::new());
        loop {
            match self.peek() {
                Tok::Eof if top => return Ok((attributes, blocks)),
                Tok::Eof => return self.error("a block is not closed: expected `}`"),
                Tok::Punct("}") if !top => return Ok((attributes, blocks)),
                _ => {}
            }
            let start = self.tokens[self.at].clone();
            let mut name = vec![self.ident("an attribute or block name")?];
            while self.eat(".") {
                name.push(self.ident("a name after `.`")?);
            }
            if self.eat("=") {
                if name.len() > 1 {
                    return Err(SyntaxError {
                        line: start.line,
                        col: start.col,
                        message: format!("attribute name {} cannot be dotted", name.join(".")),
                    });
                }
                let value = self.expression()?;
                attributes.push(Attribute {
                    name: name.remove(0),
                    value,
                });
                continue;
            }
            let label = match self.peek().clone() {
                Tok::Str(label) => {
                    self.at += 1;
                    Some(label)
                }
                _ => None,
            };
            if *self.peek() != Tok::Punct("{") {
                return self.error(format!(
                    "expected `=` or a block body after {}, found {}",
                    name.join("."),
                    self.peek()
                ));
            }
            self.at += 1;
            let (inner_attributes, inner_blocks) = self.body(false)?;
            self.expect("}")?;
            let name = name.join(".");
            if top && name.contains('.') && label.is_none() {
                return Err(SyntaxError {
                    line: start.line,
                    col: start.col,
                    message: format!("component {name} needs a label: {name} \"LABEL\" {{ … }}"),
                });
            }
            blocks.push(Block {
                name,
                label,
                attributes: inner_attributes,
                blocks: inner_blocks,
                line: start.line,
                col: start.col,
            });
        }
    }

    fn expression(&mut self) -> Parsed<Expr> {
        self.binary(0)
    }

    /// Precedence climbing, loosest first.
    fn binary(&mut self, level: usize) -> Parsed<Expr> {
        const LEVELS: [&[&str]; 6] = [
            &["||"],
            &["&&"],
            &["==", "!=", "<", "<=", ">", ">="],
            &["+", "-"],
            &["*", "/", "%"],
            &["^"],
        ];
        if level == LEVELS.len() {
            return self.unary();
        }
        let mut left = self.binary(level + 1)?;
        while let Tok::Punct(op) = *self.peek() {
            if !LEVELS[level].contains(&op) {
                break;
            }
            self.at += 1;
            let right = self.binary(level + 1)?;
            left = Expr::Binary(Box::new(left), op, Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Parsed<Expr> {
        if let Tok::Punct(op @ ("!" | "-")) = *self.peek() {
            self.at += 1;
            return Ok(Expr::Unary(op, Box::new(self.unary()?)));
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Parsed<Expr> {
        let mut expr = self.primary()?;
        loop {
            if self.eat(".") {
                let field = self.ident("a field name after `.`")?;
                match &mut expr {
                    Expr::Path { parts, .. } => parts.push(field),
                    _ => {
                        // `f(x).field`: keep it as an index by name.
                        expr = Expr::Index(Box::new(expr), Box::new(Expr::Str(field)));
                    }
                }
            } else if self.eat("[") {
                let index = self.expression()?;
                self.expect("]")?;
                expr = Expr::Index(Box::new(expr), Box::new(index));
            } else if self.eat("(") {
                let args = self.list(")")?;
                expr = Expr::Call(Box::new(expr), args);
            } else {
                return Ok(expr);
            }
        }
    }

    /// Comma-separated expressions up to `close`; a trailing comma is fine.
    fn list(&mut self, close: &str) -> Parsed<Vec<Expr>> {
        let mut items = Vec::new();
        while !self.eat(close) {
            items.push(self.expression()?);
            if !self.eat(",") {
                self.expect(close)?;
                break;
            }
        }
        Ok(items)
    }

    fn primary(&mut self) -> Parsed<Expr> {
        let token = self.next();
        Ok(match token.tok {
            Tok::Str(s) => Expr::Str(s),
            Tok::Number(n) => Expr::Number(n),
            Tok::Ident(word) => match word.as_str() {
                "true" => Expr::Bool(true),
                "false" => Expr::Bool(false),
                "null" => Expr::Null,
                _ => Expr::Path {
                    parts: vec![word],
                    line: token.line,
                    col: token.col,
                },
            },
            Tok::Punct("(") => {
                let inner = self.expression()?;
                self.expect(")")?;
                inner
            }
            Tok::Punct("[") => Expr::Array(self.list("]")?),
            Tok::Punct("{") => {
                let mut fields = Vec::new();
                while !self.eat("}") {
                    let key = match self.peek().clone() {
                        Tok::Ident(key) | Tok::Str(key) => key,
                        other => {
                            return self.error(format!("expected an object key, found {other}"));
                        }
                    };
                    self.at += 1;
                    self.expect("=")?;
                    fields.push((key, self.expression()?));
                    if !self.eat(",") {
                        self.expect("}")?;
                        break;
                    }
                }
                Expr::Object(fields)
            }
            other => {
                if other != Tok::Eof {
                    self.at -= 1;
                }
                return self.error(format!("expected a value, found {other}"));
            }
        })
    }
}

fn punct_static(p: &str) -> &'static str {
    PUNCTUATION
        .iter()
        .find(|q| **q == p)
        .copied()
        .unwrap_or_else(|| panic!("{p} is not Alloy punctuation"))
}

/// Parses a whole Alloy file and checks that every component reference
/// (`kind.name.label.receiver|input`) names a block the file declares.
fn parse_alloy(text: &str) -> Parsed<Vec<Block>> {
    let tokens = Lexer::new(text).tokens()?;
    let mut parser = Parser { tokens, at: 0 };
    let (attributes, blocks) = parser.body(true)?;
    if let Some(attribute) = attributes.first() {
        return Err(SyntaxError {
            line: 1,
            col: 1,
            message: format!("top-level attribute {} outside any block", attribute.name),
        });
    }
    let mut declared = BTreeSet::new();
    for block in &blocks {
        if !declared.insert(block.id()) {
            return Err(SyntaxError {
                line: block.line,
                col: block.col,
                message: format!("{} is declared twice", block.id()),
            });
        }
    }
    for block in &blocks {
        for (path, line, col) in block.paths() {
            let Some(component) = component_of(&path) else {
                continue;
            };
            if !declared.contains(component) {
                return Err(SyntaxError {
                    line,
                    col,
                    message: format!(
                        "{path} refers to {component}, which this file does not declare"
                    ),
                });
            }
        }
    }
    Ok(blocks)
}

/// `otelcol.exporter.otlp.tempo.input` → `otelcol.exporter.otlp.tempo`;
/// `None` for a path that is not a reference to a component's export.
fn component_of(path: &str) -> Option<&str> {
    let (component, export) = path.rsplit_once('.')?;
    (EXPORTS.contains(&export) && component.matches('.').count() >= 1).then_some(component)
}

/// The components a component sends `signal` to: the entries of
/// `output { <signal> = [...] }` when it has an output block, otherwise
/// every component it references (`forward_to` and the like).
fn next_hops(block: &Block, signal: &str) -> Vec<String> {
    let paths: Vec<(String, usize, usize)> = match block.block("output") {
        Some(output) => {
            let mut out = Vec::new();
            if let Some(value) = output.attr(signal) {
                value.paths(&mut out);
            }
            out
        }
        None => block.paths(),
    };
    paths
        .iter()
        .filter_map(|(path, _, _)| component_of(path).map(str::to_owned))
        .collect()
}

/// Every component `signal` can reach from `start`, `start` included.
fn reachable(blocks: &[Block], start: &str, signal: &str) -> BTreeSet<String> {
    let by_id: BTreeMap<String, &Block> = blocks.iter().map(|b| (b.id(), b)).collect();
    let mut seen = BTreeSet::from([start.to_owned()]);
    let mut queue = VecDeque::from([start.to_owned()]);
    while let Some(id) = queue.pop_front() {
        let Some(block) = by_id.get(&id) else {
            continue;
        };
        for hop in next_hops(block, signal) {
            if seen.insert(hop.clone()) {
                queue.push_back(hop);
            }
        }
    }
    seen
}

fn component<'a>(blocks: &'a [Block], kind: &str) -> Vec<&'a Block> {
    blocks.iter().filter(|b| b.name == kind).collect()
}

fn only<'a>(blocks: &'a [Block], kind: &str) -> &'a Block {
    let found = component(blocks, kind);
    assert_eq!(
        found.len(),
        1,
        "docker/alloy/config.alloy should declare exactly one {kind}, found {}",
        found.len()
    );
    found[0]
}

// ---------------------------------------------------------------------------
// Helpers for YAML and JSON.
// ---------------------------------------------------------------------------

/// Every value under `key` anywhere inside a JSON document.
fn json_values_named<'a>(value: &'a Json, key: &str, out: &mut Vec<&'a Json>) {
    match value {
        Json::Object(map) => {
            for (k, v) in map {
                if k == key {
                    out.push(v);
                }
                json_values_named(v, key, out);
            }
        }
        Json::Array(items) => items.iter().for_each(|v| json_values_named(v, key, out)),
        _ => {}
    }
}

/// Every string under `key` anywhere inside a YAML document.
fn yaml_strings_named<'a>(value: &'a Yaml, key: &str, out: &mut Vec<&'a str>) {
    match value {
        Yaml::Mapping(map) => {
            for (k, v) in map {
                if k.as_str() == Some(key)
                    && let Some(s) = v.as_str()
                {
                    out.push(s);
                }
                yaml_strings_named(v, key, out);
            }
        }
        Yaml::Sequence(items) => items.iter().for_each(|v| yaml_strings_named(v, key, out)),
        _ => {}
    }
}

fn provisioned_datasources() -> Vec<Yaml> {
    let file = yaml(DATASOURCES);
    file["datasources"]
        .as_sequence()
        .unwrap_or_else(|| panic!("docker/{DATASOURCES} has no `datasources:` list"))
        .clone()
}

fn datasource<'a>(list: &'a [Yaml], uid: &str) -> &'a Yaml {
    list.iter()
        .find(|d| d["uid"] == uid)
        .unwrap_or_else(|| panic!("docker/{DATASOURCES} provisions no datasource with uid {uid}"))
}

// ---------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------

#[test]
fn every_docker_config_parses_in_its_own_format() {
    for expected in [
        "alloy/config.alloy",
        "tempo/tempo.yaml",
        "loki/loki.yaml",
        "mimir/mimir.yaml",
        "pyroscope/pyroscope.yaml",
        DATASOURCES,
        "grafana/provisioning/dashboards/dashboards.yaml",
        DASHBOARDS[0],
        DASHBOARDS[1],
        DASHBOARDS[2],
        "Dockerfile",
    ] {
        let path = docker_dir().join(expected);
        assert!(
            path.is_file(),
            "docker/{expected} is missing ({})",
            path.display()
        );
    }

    let mut failures = Vec::new();
    let mut checked = 0;
    for path in files_under(&docker_dir()) {
        let name = path
            .strip_prefix(docker_dir())
            .unwrap_or(&path)
            .display()
            .to_string();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                failures.push(format!("docker/{name}: {e}"));
                continue;
            }
        };
        let result = match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => match yaml_serde::from_str::<Yaml>(&text) {
                Ok(Yaml::Mapping(_)) => Ok(()),
                Ok(_) => Err("the top level is not a map".to_owned()),
                Err(e) => Err(e.to_string()),
            },
            Some("json") => match serde_json::from_str::<Json>(&text) {
                Ok(Json::Object(_)) => Ok(()),
                Ok(_) => Err("the top level is not an object".to_owned()),
                Err(e) => Err(e.to_string()),
            },
            Some("alloy") => parse_alloy(&text).map(|_| ()).map_err(|e| e.to_string()),
            _ => continue,
        };
        checked += 1;
        if let Err(e) = result {
            failures.push(format!("docker/{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        checked >= 10,
        "only {checked} config files found under docker/"
    );
}

#[test]
fn the_alloy_checker_reports_line_and_column_of_a_mistake() {
    let cases: [(&str, &str, &str); 8] = [
        ("a.b \"x\" {\n  c = [1, 2\n}\n", "3:1", "expected `]`"),
        (
            "a.b \"x\" {\n  c = \"open\n}\n",
            "2:7",
            "newline inside a string",
        ),
        ("a.b \"x\" {\n  c = \"\\q\"\n}\n", "2:8", "unknown escape"),
        ("a.b \"x\" {\n  c = 1\n", "3:1", "not closed"),
        ("a.b {\n}\n", "1:1", "needs a label"),
        (
            "/* never closed\na.b \"x\" {}\n",
            "1:1",
            "unterminated /* comment",
        ),
        (
            "a.b \"x\" {\n  c = 1 ; 2\n}\n",
            "2:9",
            "unexpected character ';'",
        ),
        (
            "a.b \"x\" {\n  out = [d.e.f.input]\n}\n",
            "2:10",
            "d.e.f.input refers to d.e.f",
        ),
    ];
    for (text, at, message) in cases {
        let err = parse_alloy(text)
            .map(|_| ())
            .expect_err(&format!("{text:?} should not parse"))
            .to_string();
        assert!(
            err.starts_with(&format!("{at}: ")) && err.contains(message),
            "{text:?}: expected `{at}: …{message}…`, got `{err}`"
        );
    }

    // What does parse: escapes, raw strings, comments, objects, calls,
    // operators and references to declared components.
    let blocks = parse_alloy(concat!(
        "// a comment\n",
        "a.b \"x\" { /* inline */\n",
        "  s = \"tab\\there \\\"q\\\" \\u00e9\"\n",
        "  r = `raw \\n`\n",
        "  n = -1.5e3 + 2 * (3 - 1)\n",
        "  o = {\"k\" = true, j = null,}\n",
        "  f = env(\"HOME\") == \"/\" && !false\n",
        "  inner { out = [a.b.x.input, c.d.y.receiver] }\n",
        "}\n",
        "c.d \"y\" {}\n",
        "logging { level = \"warn\" }\n",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<String> = blocks.iter().map(Block::id).collect();
    assert_eq!(ids, ["a.b.x", "c.d.y", "logging"]);
    assert_eq!(blocks[0].string_at(&["s"]), Some("tab\there \"q\" é"));
    assert_eq!(blocks[0].string_at(&["r"]), Some("raw \\n"));
    assert_eq!(
        next_hops(&blocks[0], "logs"),
        ["a.b.x".to_owned(), "c.d.y".to_owned()]
    );
}

#[test]
fn alloy_declares_every_component_it_wires_and_leaves_none_dangling() {
    let blocks = alloy();
    let mut used = BTreeSet::new();
    for block in &blocks {
        for (path, _, _) in block.paths() {
            if let Some(component) = component_of(&path) {
                used.insert(component.to_owned());
            }
        }
    }
    // A processor, exporter or writer nothing sends to is dead config: a
    // signal meant for it goes nowhere.
    let sinks = [
        "otelcol.processor.",
        "otelcol.exporter.",
        "loki.process",
        "loki.write",
        "prometheus.remote_write",
        "pyroscope.write",
    ];
    for block in &blocks {
        if sinks.iter().any(|s| block.name.starts_with(s)) {
            assert!(
                used.contains(&block.id()),
                "docker/alloy/config.alloy:{}:{}: {} is declared but nothing sends to it",
                block.line,
                block.col,
                block.id()
            );
        }
    }
}

#[test]
fn alloy_sends_each_signal_to_its_backend() {
    let blocks = alloy();

    let receiver = only(&blocks, "otelcol.receiver.otlp");
    assert_eq!(
        receiver.string_at(&["grpc", "endpoint"]),
        Some("0.0.0.0:4317"),
        "the services send OTLP over gRPC to alloy:4317"
    );
    assert_eq!(
        receiver.string_at(&["http", "endpoint"]),
        Some("0.0.0.0:4318"),
        "alloy:4318 takes OTLP over HTTP"
    );

    let tempo = only(&blocks, "otelcol.exporter.otlp");
    assert_eq!(tempo.string_at(&["client", "endpoint"]), Some("tempo:4317"));
    assert_eq!(
        tempo
            .block("client")
            .and_then(|c| c.block("tls"))
            .and_then(|t| t.attr("insecure")),
        Some(&Expr::Bool(true)),
        "Tempo speaks plain gRPC on the lab network: the exporter needs tls {{ insecure = true }}"
    );
    let loki = only(&blocks, "loki.write");
    assert_eq!(
        loki.string_at(&["endpoint", "url"]),
        Some("http://loki:3100/loki/api/v1/push")
    );
    let mimir = only(&blocks, "prometheus.remote_write");
    assert_eq!(
        mimir.string_at(&["endpoint", "url"]),
        Some("http://mimir:9009/api/v1/push")
    );
    assert_eq!(
        mimir
            .block("endpoint")
            .and_then(|e| e.attr("send_exemplars")),
        Some(&Expr::Bool(true)),
        "without send_exemplars Mimir never sees the trace ids Grafana links to"
    );
    let pyroscope = only(&blocks, "pyroscope.write");
    assert_eq!(
        pyroscope.string_at(&["endpoint", "url"]),
        Some("http://pyroscope:4040")
    );

    // Follow each OTLP signal from the receiver through the pipeline.
    for (signal, sink) in [
        ("traces", tempo.id()),
        ("logs", loki.id()),
        ("metrics", mimir.id()),
    ] {
        let reached = reachable(&blocks, &receiver.id(), signal);
        assert!(
            reached.contains(&sink),
            "OTLP {signal} from {} never reach {sink}; they reach {reached:?}",
            receiver.id()
        );
    }
    let logs = reachable(&blocks, &receiver.id(), "logs");
    assert!(
        logs.iter().any(|c| c.starts_with("loki.process.")),
        "OTLP logs skip loki.process, so nothing limits their labels: {logs:?}"
    );
    let process = only(&blocks, "loki.process");
    let kept = process
        .block("stage.label_keep")
        .and_then(|s| s.attr("values"))
        .unwrap_or_else(|| panic!("loki.process has no stage.label_keep {{ values = [...] }}"));
    let Expr::Array(kept) = kept else {
        panic!("stage.label_keep values is not a list: {kept:?}")
    };
    let kept: BTreeSet<&str> = kept.iter().filter_map(Expr::as_str).collect();
    assert_eq!(
        kept,
        BTreeSet::from(["service_name", "level", "job", "namespace", "beast"]),
        "the Loki labels the dashboards and workshop queries select on"
    );

    // The scraped /metrics carry the exemplars; the profiles are relayed.
    let scrape = only(&blocks, "prometheus.scrape");
    assert_eq!(
        scrape.string_at(&["job_name"]),
        Some("mythical"),
        "the original's scrape job: job=\"mythical\" for both services"
    );
    assert_eq!(scrape.string_at(&["scrape_interval"]), Some("2s"));
    assert_eq!(scrape.string_at(&["scrape_timeout"]), Some("2s"));
    let Some(Expr::Array(protocols)) = scrape.attr("scrape_protocols") else {
        panic!("prometheus.scrape lists no scrape_protocols");
    };
    let protocols: Vec<&str> = protocols.iter().filter_map(Expr::as_str).collect();
    assert!(
        protocols
            .first()
            .is_some_and(|p| p.starts_with("OpenMetricsText"))
            && !protocols.contains(&"PrometheusProto"),
        "exemplars come only from OpenMetrics text, never protobuf: {protocols:?}"
    );
    let Some(Expr::Array(targets)) = scrape.attr("targets") else {
        panic!("prometheus.scrape has no targets list");
    };
    let addresses: BTreeSet<&str> = targets
        .iter()
        .filter_map(|t| match t {
            Expr::Object(fields) => fields
                .iter()
                .find(|(k, _)| k == "__address__")
                .and_then(|(_, v)| v.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        addresses,
        BTreeSet::from(["mythical-server:4000", "mythical-requester:4001"])
    );
    for target in targets {
        let Expr::Object(fields) = target else {
            panic!("a scrape target is not an object: {target:?}")
        };
        let label = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.as_str())
        };
        let address = label("__address__").unwrap_or("?");
        assert_eq!(label("group"), Some("mythical"), "{address}: group label");
        assert_eq!(
            label("service"),
            address.split(':').next(),
            "{address}: service label names the service"
        );
    }

    // Autologging: one logfmt line per root span, job="alloy", in Loki.
    let spanlogs = only(&blocks, "otelcol.connector.spanlogs");
    assert_eq!(spanlogs.attr("roots"), Some(&Expr::Bool(true)));
    assert_eq!(
        spanlogs.string_at(&["overrides", "trace_id_key"]),
        Some("traceId")
    );
    assert!(
        reachable(&blocks, &receiver.id(), "traces").contains(&spanlogs.id()),
        "the spans never reach {}",
        spanlogs.id()
    );
    assert!(
        reachable(&blocks, &spanlogs.id(), "logs").contains(&loki.id()),
        "autologging lines never reach {}",
        loki.id()
    );
    assert!(
        reachable(&blocks, &scrape.id(), "metrics").contains(&mimir.id()),
        "the scraped metrics never reach {}",
        mimir.id()
    );
    let profiles = only(&blocks, "pyroscope.receive_http");
    assert_eq!(
        profiles.block("http").and_then(|h| h.attr("listen_port")),
        Some(&Expr::Number("9999".into()))
    );
    assert!(
        reachable(&blocks, &profiles.id(), "profiles").contains(&pyroscope.id()),
        "profiles received on :9999 never reach {}",
        pyroscope.id()
    );
}

#[test]
fn tempo_writes_span_metrics_and_the_service_graph_to_mimir_with_exemplars() {
    let tempo = yaml("tempo/tempo.yaml");
    assert_eq!(tempo["server"]["http_listen_port"], 3200);
    let protocols = &tempo["distributor"]["receivers"]["otlp"]["protocols"];
    assert_eq!(protocols["grpc"]["endpoint"], "0.0.0.0:4317");
    assert_eq!(protocols["http"]["endpoint"], "0.0.0.0:4318");
    assert_eq!(tempo["storage"]["trace"]["backend"], "local");
    assert!(
        tempo["storage"]["trace"]["wal"]["path"].is_string(),
        "Tempo's local storage needs a WAL path"
    );

    let writes = tempo["metrics_generator"]["storage"]["remote_write"]
        .as_sequence()
        .expect("metrics_generator.storage.remote_write is a list");
    assert!(
        writes
            .iter()
            .any(|w| w["url"] == "http://mimir:9009/api/v1/push" && w["send_exemplars"] == true),
        "Tempo's generator must remote-write to Mimir with send_exemplars: true, got {writes:?}"
    );
    let processors: BTreeSet<&str> =
        tempo["overrides"]["defaults"]["metrics_generator"]["processors"]
            .as_sequence()
            .expect("overrides.defaults.metrics_generator.processors is a list")
            .iter()
            .filter_map(Yaml::as_str)
            .collect();
    for processor in ["service-graphs", "span-metrics"] {
        assert!(
            processors.contains(processor),
            "the {processor} processor is not enabled in Tempo's overrides"
        );
    }
    // Tempo 3 answers TraceQL metrics from its live-store and blocks: it has
    // no local-blocks processor and refuses the 2.x sections it needed.
    assert!(
        !processors.contains("local-blocks"),
        "Tempo 3 has no local-blocks processor"
    );
    for removed in ["ingester", "compactor"] {
        assert!(
            tempo.get(removed).is_none(),
            "Tempo 3 refuses the 2.x `{removed}` section"
        );
    }
    assert!(
        tempo["metrics_generator"].get("traces_storage").is_none(),
        "Tempo 3 refuses metrics_generator.traces_storage"
    );
    // The dashboards read the classic buckets (traces_spanmetrics_latency_bucket).
    assert_eq!(
        tempo["overrides"]["defaults"]["metrics_generator"]["generate_native_histograms"],
        "both"
    );
    let registry = &tempo["metrics_generator"]["registry"];
    assert_eq!(registry["external_labels"]["source"], "tempo");
    assert_eq!(registry["external_labels"]["group"], "mythical");
    for processor in ["span_metrics", "service_graphs"] {
        let dimensions: BTreeSet<&str> =
            tempo["metrics_generator"]["processor"][processor]["dimensions"]
                .as_sequence()
                .unwrap_or_else(|| {
                    panic!("metrics_generator.processor.{processor}.dimensions is a list")
                })
                .iter()
                .filter_map(Yaml::as_str)
                .collect();
        for dimension in [
            "http.method",
            "http.target",
            "http.status_code",
            "service.version",
            "beast",
        ] {
            assert!(
                dimensions.contains(dimension),
                "{processor} lacks the {dimension} dimension"
            );
        }
    }
}

#[test]
fn backends_run_as_one_process_on_local_disk_and_keep_exemplars() {
    let loki = yaml("loki/loki.yaml");
    assert_eq!(loki["auth_enabled"], false);
    assert_eq!(loki["server"]["http_listen_port"], 3100);
    let schemas = loki["schema_config"]["configs"]
        .as_sequence()
        .expect("loki schema_config.configs is a list");
    let newest = schemas.last().expect("Loki has a schema");
    assert_eq!(newest["store"], "tsdb");
    assert_eq!(newest["schema"], "v13");
    assert_eq!(newest["object_store"], "filesystem");
    assert_eq!(loki["limits_config"]["allow_structured_metadata"], true);
    assert!(loki["limits_config"]["retention_period"].is_string());
    let grace = loki["limits_config"]["creation_grace_period"]
        .as_str()
        .expect("loki limits_config.creation_grace_period is set");
    let grace = lab_backend::params::duration("creation_grace_period", grace).unwrap();
    assert!(
        grace > mythical_services::faults::clock_skew::AHEAD.as_nanos() as i64 * 2,
        "Loki must keep the clock-skew scenario's lines from the future"
    );
    if loki["compactor"]["retention_enabled"] == true {
        assert!(
            loki["compactor"]["delete_request_store"].is_string(),
            "Loki 3 refuses retention without compactor.delete_request_store"
        );
    }

    let mimir = yaml("mimir/mimir.yaml");
    assert_eq!(mimir["multitenancy_enabled"], false);
    assert_eq!(mimir["server"]["http_listen_port"], 9009);
    assert_eq!(mimir["blocks_storage"]["backend"], "filesystem");
    assert!(
        mimir["limits"]["max_global_exemplars_per_user"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "Mimir drops exemplars unless limits.max_global_exemplars_per_user > 0"
    );
    assert_eq!(mimir["limits"]["native_histograms_ingestion_enabled"], true);
    assert_eq!(mimir["ingester"]["ring"]["replication_factor"], 1);
    let mut stores = Vec::new();
    yaml_strings_named(&mimir, "store", &mut stores);
    assert!(!stores.is_empty(), "Mimir's rings name no kvstore");
    assert!(
        stores.iter().all(|s| *s == "inmemory"),
        "every Mimir ring of a single process can live in memory, got {stores:?}"
    );

    let pyroscope = yaml("pyroscope/pyroscope.yaml");
    assert_eq!(pyroscope["server"]["http_listen_port"], 4040);
    assert_eq!(pyroscope["storage"]["backend"], "filesystem");
    // The image's user owns only /data.
    let mut dirs = Vec::new();
    yaml_strings_named(&pyroscope, "dir", &mut dirs);
    yaml_strings_named(&pyroscope, "data_dir", &mut dirs);
    assert!(!dirs.is_empty(), "Pyroscope names no data directory");
    assert!(
        dirs.iter().all(|d| d.starts_with("/data/")),
        "every Pyroscope directory must be under /data, got {dirs:?}"
    );
}

#[test]
fn grafana_correlations_point_at_provisioned_datasources() {
    let list = provisioned_datasources();
    let mut uids = BTreeSet::new();
    let mut names = BTreeSet::new();
    for d in &list {
        let uid = d["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("a datasource without a fixed uid: {d:?}"));
        assert!(
            uids.insert(uid.to_owned()),
            "two datasources have uid {uid}"
        );
        let name = d["name"].as_str().expect("every datasource has a name");
        assert!(
            names.insert(name.to_owned()),
            "two datasources are named {name}"
        );
    }
    for uid in ["mimir", "tempo", "loki", "pyroscope", "postgres"] {
        assert!(
            uids.contains(uid),
            "docker/{DATASOURCES} provisions no `{uid}`"
        );
    }
    let defaults: Vec<&Yaml> = list.iter().filter(|d| d["isDefault"] == true).collect();
    assert_eq!(defaults.len(), 1, "exactly one default datasource");
    assert_eq!(defaults[0]["uid"], "mimir");

    // Every link from one datasource to another, wherever it sits.
    for d in &list {
        let mut links = Vec::new();
        yaml_strings_named(d, "datasourceUid", &mut links);
        for uid in links {
            assert!(
                uids.contains(uid),
                "datasource {} links to uid {uid}, which is not provisioned",
                d["uid"].as_str().unwrap_or("?")
            );
        }
    }

    let mimir = datasource(&list, "mimir");
    assert_eq!(mimir["type"], "prometheus");
    assert_eq!(mimir["url"], "http://mimir:9009/prometheus");
    let exemplars = &mimir["jsonData"]["exemplarTraceIdDestinations"][0];
    assert_eq!(exemplars["name"], "traceID", "the services' exemplar label");
    assert_eq!(exemplars["datasourceUid"], "tempo");

    let tempo = datasource(&list, "tempo");
    assert_eq!(tempo["url"], "http://tempo:3200");
    let json_data = &tempo["jsonData"];
    assert_eq!(json_data["tracesToLogsV2"]["datasourceUid"], "loki");
    assert_eq!(json_data["tracesToLogsV2"]["filterByTraceID"], true);
    assert_eq!(
        json_data["tracesToLogsV2"]["tags"][0]["key"],
        "service.name"
    );
    assert_eq!(
        json_data["tracesToLogsV2"]["tags"][0]["value"],
        "service_name"
    );
    assert_eq!(json_data["tracesToMetrics"]["datasourceUid"], "mimir");
    let queries: Vec<&str> = json_data["tracesToMetrics"]["queries"]
        .as_sequence()
        .expect("tracesToMetrics has queries")
        .iter()
        .filter_map(|q| q["query"].as_str())
        .collect();
    for metric in [
        "mythical_request_times",
        "traces_spanmetrics_calls_total",
        "traces_spanmetrics_latency_bucket",
    ] {
        assert!(
            queries.iter().any(|q| q.contains(metric)),
            "no trace-to-metrics query uses {metric}: {queries:?}"
        );
    }
    assert_eq!(json_data["tracesToProfiles"]["datasourceUid"], "pyroscope");
    assert_eq!(
        json_data["tracesToProfiles"]["profileTypeId"],
        "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
    );
    assert_eq!(json_data["serviceMap"]["datasourceUid"], "mimir");
    assert_eq!(json_data["nodeGraph"]["enabled"], true);
    assert_eq!(json_data["lokiSearch"]["datasourceUid"], "loki");

    let loki = datasource(&list, "loki");
    assert_eq!(loki["url"], "http://loki:3100");
    let derived = &loki["jsonData"]["derivedFields"][0];
    assert_eq!(
        derived["datasourceUid"], "tempo",
        "Loki's TraceID derived field must open traces in the tempo datasource"
    );
    // The services' traceID= and Alloy's autologging traceId= both link.
    assert_eq!(derived["matcherRegex"], r"trace[Ii][Dd]=(\w+)");
    // `$$` is Grafana's escape for a literal `$` in provisioning files.
    assert_eq!(derived["url"], "$${__value.raw}");

    let pyroscope = datasource(&list, "pyroscope");
    assert_eq!(pyroscope["type"], "grafana-pyroscope-datasource");
    assert_eq!(pyroscope["url"], "http://pyroscope:4040");

    let postgres = datasource(&list, "postgres");
    assert_eq!(postgres["type"], "grafana-postgresql-datasource");
    assert_eq!(postgres["url"], "postgres:5432");
    assert_eq!(
        postgres["user"], "lab_reader",
        "dashboards read through the read-only role"
    );
    assert_eq!(postgres["jsonData"]["database"], "postgres");
    assert_eq!(postgres["jsonData"]["sslmode"], "disable");
    assert_eq!(
        postgres["secureJsonData"]["password"], "$LAB_POSTGRES_READER_PASSWORD",
        "the password comes from Grafana's environment, never from the file"
    );
}

#[test]
fn dashboards_have_unique_uids_and_use_only_provisioned_datasources() {
    let uids: BTreeSet<String> = provisioned_datasources()
        .iter()
        .filter_map(|d| d["uid"].as_str().map(str::to_owned))
        .collect();

    let mut seen = BTreeMap::new();
    for path in files_under(&docker_dir().join("grafana/dashboards")) {
        let name = format!(
            "grafana/dashboards/{}",
            path.file_name().unwrap().to_string_lossy()
        );
        if !name.ends_with(".json") {
            continue;
        }
        let dashboard = json(&name);
        let uid = dashboard["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("docker/{name} has no fixed uid"))
            .to_owned();
        if let Some(other) = seen.insert(uid.clone(), name.clone()) {
            panic!("docker/{name} and docker/{other} both have uid {uid}");
        }
        assert_eq!(dashboard["schemaVersion"], 39, "docker/{name}");

        let mut references = Vec::new();
        json_values_named(&dashboard, "datasource", &mut references);
        assert!(!references.is_empty(), "docker/{name} queries nothing");
        for reference in references {
            let ds = reference["uid"].as_str().unwrap_or_else(|| {
                panic!("docker/{name}: datasource {reference} is not referenced by uid")
            });
            assert!(
                uids.contains(ds),
                "docker/{name}: datasource uid {ds} is not provisioned in docker/{DATASOURCES}"
            );
        }

        // Every $variable a query uses is a template variable (or one of
        // Grafana's own $__ macros).
        let variables: BTreeSet<&str> = dashboard["templating"]["list"]
            .as_array()
            .map(|list| list.iter().filter_map(|v| v["name"].as_str()).collect())
            .unwrap_or_default();
        let mut queries = Vec::new();
        for key in ["expr", "query", "rawSql"] {
            json_values_named(&dashboard, key, &mut queries);
        }
        for query in queries.iter().filter_map(|q| q.as_str()) {
            for (i, _) in query.match_indices('$') {
                let used: String = query[i + 1..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    used.starts_with("__") || variables.contains(used.as_str()),
                    "docker/{name}: `${used}` in {query:?} is not a template variable"
                );
            }
        }
    }
    for uid in ["mythical-red", "mythical-errors", "mythical-latency"] {
        assert!(seen.contains_key(uid), "no dashboard has uid {uid}");
    }

    let provider = yaml("grafana/provisioning/dashboards/dashboards.yaml");
    let provider = &provider["providers"][0];
    assert_eq!(provider["type"], "file");
    assert_eq!(provider["folder"], "Mythical Lab");
    assert_eq!(provider["options"]["path"], "/var/lib/grafana/dashboards");
}

/// Every target of every panel of a dashboard.
fn targets(dashboard: &Json) -> Vec<&Json> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        out.extend(panel["targets"].as_array().into_iter().flatten());
    }
    out
}

#[test]
fn dashboards_answer_the_workshop_questions() {
    let red = json(DASHBOARDS[0]);
    let red_queries: Vec<&str> = targets(&red)
        .iter()
        .filter_map(|t| t["expr"].as_str())
        .collect();
    for metric in [
        "mythical_request_times_count",
        "mythical_request_times_bucket",
        "traces_spanmetrics_calls_total",
        "traces_spanmetrics_latency_bucket",
    ] {
        assert!(
            red_queries.iter().any(|q| q.contains(metric)),
            "the RED dashboard does not use {metric}"
        );
    }

    let errors = json(DASHBOARDS[1]);
    let by_uid = |uid: &str| -> Vec<&Json> {
        targets(&errors)
            .into_iter()
            .filter(|t| t["datasource"]["uid"] == uid)
            .collect()
    };
    assert!(
        by_uid("tempo")
            .iter()
            .any(|t| t["query"] == "{ status = error }"),
        "the errors dashboard lists failing traces with {{ status = error }}"
    );
    let loki: Vec<&str> = by_uid("loki")
        .iter()
        .filter_map(|t| t["expr"].as_str())
        .collect();
    assert!(
        loki.iter()
            .any(|q| q.contains("service_name=~\"mythical-.*\"") && q.contains("FAILURE")),
        "no Loki panel shows the services' FAILURE lines: {loki:?}"
    );
    assert!(
        loki.iter()
            .any(|q| q.starts_with("sum by (error)") && q.contains("| logfmt")),
        "no Loki table groups the error lines by their error message: {loki:?}"
    );
    let sql: Vec<&str> = by_uid("postgres")
        .iter()
        .filter_map(|t| t["rawSql"].as_str())
        .collect();
    assert!(
        sql.iter().any(|q| {
            q.contains("information_schema.columns")
                && ["unicorn", "manticore", "illithid", "owlbear", "beholder"]
                    .iter()
                    .all(|beast| q.contains(beast))
        }),
        "the root-cause panel reads the five beast tables' columns from information_schema: {sql:?}"
    );

    let latency = json(DASHBOARDS[2]);
    assert!(
        targets(&latency).iter().any(|t| {
            t["exemplar"] == true
                && t["expr"].as_str().is_some_and(|q| {
                    q.starts_with("histogram_quantile(0.95")
                        && q.contains("mythical_request_times_bucket")
                        && q.contains("beast")
                })
        }),
        "the latency dashboard shows p95 per beast with exemplars on"
    );
}

#[test]
fn the_image_builds_lab_from_the_workspace_and_runs_unprivileged() {
    let dockerfile = read("Dockerfile");
    let lines: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let froms: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(
        froms.first().copied(),
        Some("FROM rust:1.95-bookworm AS build"),
        "the build stage"
    );
    assert!(froms.len() >= 2, "a multi-stage build: {froms:?}");
    assert!(
        dockerfile.contains("cargo build --release --locked -p lab"),
        "the image builds exactly the locked workspace's lab binary"
    );
    let final_stage = &lines[lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap()..];
    let user = final_stage
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the final stage sets a USER");
    assert!(
        !matches!(user.trim(), "root" | "0" | "0:0"),
        "the final stage runs as root"
    );
    assert!(final_stage.contains(&r#"ENTRYPOINT ["/usr/local/bin/lab"]"#));
    assert!(final_stage.contains(&r#"CMD ["service", "server"]"#));
    let exposed: BTreeSet<&str> = final_stage
        .iter()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(str::split_whitespace)
        .collect();
    assert_eq!(
        exposed,
        BTreeSet::from(["4000", "4001", "3200", "4317", "4318"])
    );

    // The context is the repository root: its .dockerignore keeps the
    // build output and git history out of what is sent to the engine.
    let ignore_path = repo_root().join(".dockerignore");
    let ignore = std::fs::read_to_string(&ignore_path)
        .unwrap_or_else(|e| panic!("{}: {e}", ignore_path.display()));
    let ignored: BTreeSet<&str> = ignore
        .lines()
        .map(|l| l.trim().trim_start_matches('/').trim_end_matches('/'))
        .collect();
    for entry in ["target", ".git", ".mythical-lab"] {
        assert!(
            ignored.contains(entry),
            ".dockerignore does not exclude {entry}/"
        );
    }
}
