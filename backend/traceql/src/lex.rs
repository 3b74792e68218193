//! TraceQL's tokens, each with the byte offset where it starts.

use crate::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    LBrace,
    RBrace,
    LParen,
    RParen,
    Comma,
    Pipe,
    AndAnd,
    OrOr,
    Not,
    Eq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    Re,
    NotRe,
    Descendant,
    Ancestor,
    Tilde,
    /// An identifier or attribute path: `name`, `span.http.method`, `.x`,
    /// `span:duration`, `resource."service name"`.
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    /// Nanoseconds.
    Duration(i64),
    End,
}

#[derive(Debug, Clone)]
pub struct Token {
    pub tok: Tok,
    pub at: usize,
}

pub fn lex(text: &str) -> Result<Vec<Token>, ParseError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let at = i;
        let two = text.get(i..i + 2).unwrap_or("");
        let (tok, len) = match two {
            "&&" => (Tok::AndAnd, 2),
            "||" => (Tok::OrOr, 2),
            "!=" => (Tok::NotEq, 2),
            "!~" => (Tok::NotRe, 2),
            "=~" => (Tok::Re, 2),
            "<=" => (Tok::Le, 2),
            ">=" => (Tok::Ge, 2),
            ">>" => (Tok::Descendant, 2),
            "<<" => (Tok::Ancestor, 2),
            _ => match c {
                b'{' => (Tok::LBrace, 1),
                b'}' => (Tok::RBrace, 1),
                b'(' => (Tok::LParen, 1),
                b')' => (Tok::RParen, 1),
                b',' => (Tok::Comma, 1),
                b'|' => (Tok::Pipe, 1),
                b'!' => (Tok::Not, 1),
                b'=' => (Tok::Eq, 1),
                b'<' => (Tok::Lt, 1),
                b'>' => (Tok::Gt, 1),
                b'~' => (Tok::Tilde, 1),
                b'"' | b'`' => {
                    let (s, len) = string(text, i)?;
                    (Tok::Str(s), len)
                }
                b'0'..=b'9' => number(text, i)?,
                b'-' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                    let (tok, len) = number(text, i + 1)?;
                    let tok = match tok {
                        Tok::Int(n) => Tok::Int(-n),
                        Tok::Float(f) => Tok::Float(-f),
                        Tok::Duration(d) => Tok::Duration(-d),
                        other => other,
                    };
                    (tok, len + 1)
                }
                _ if c == b'.' || c.is_ascii_alphabetic() || c == b'_' => ident(text, i)?,
                _ => {
                    return Err(ParseError::at(
                        text,
                        i,
                        format!(
                            "unexpected character `{}`",
                            text[i..].chars().next().unwrap_or(' ')
                        ),
                    ));
                }
            },
        };
        out.push(Token { tok, at });
        i += len;
    }
    out.push(Token {
        tok: Tok::End,
        at: text.len(),
    });
    Ok(out)
}

fn string(text: &str, start: usize) -> Result<(String, usize), ParseError> {
    let quote = text.as_bytes()[start];
    let mut out = String::new();
    let mut chars = text[start + 1..].char_indices();
    while let Some((offset, c)) = chars.next() {
        match c {
            c if c as u32 == quote as u32 => return Ok((out, offset + 2)),
            '\\' if quote == b'"' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, other)) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    Err(ParseError::at(text, start, "unterminated string".into()))
}

fn number(text: &str, start: usize) -> Result<(Tok, usize), ParseError> {
    let rest = &text[start..];
    let digits = rest
        .char_indices()
        .take_while(|(_, c)| c.is_ascii_digit() || *c == '.')
        .map(|(i, c)| i + c.len_utf8())
        .last()
        .unwrap_or(0);
    let number = &rest[..digits];
    let unit_len = rest[digits..]
        .char_indices()
        .take_while(|(_, c)| c.is_alphabetic())
        .map(|(i, c)| i + c.len_utf8())
        .last()
        .unwrap_or(0);
    let unit = &rest[digits..digits + unit_len];
    let bad = || {
        ParseError::at(
            text,
            start,
            format!("invalid number `{}`", &rest[..digits + unit_len]),
        )
    };
    if unit.is_empty() {
        if number.contains('.') {
            return Ok((Tok::Float(number.parse().map_err(|_| bad())?), digits));
        }
        return Ok((Tok::Int(number.parse().map_err(|_| bad())?), digits));
    }
    let per: f64 = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => {
            return Err(ParseError::at(
                text,
                start,
                format!(
                    "invalid duration `{}`: units are ns, us, ms, s, m, h",
                    &rest[..digits + unit_len]
                ),
            ));
        }
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    Ok((
        Tok::Duration((value * per).round() as i64),
        digits + unit_len,
    ))
}

fn ident(text: &str, start: usize) -> Result<(Tok, usize), ParseError> {
    let bytes = text.as_bytes();
    let mut i = start;
    let mut out = String::new();
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'"' && out.ends_with('.') {
            let (quoted, len) = string(text, i)?;
            out.push_str(&quoted);
            i += len;
            continue;
        }
        if c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':' | b'-' | b'/') {
            out.push(c as char);
            i += 1;
        } else {
            break;
        }
    }
    Ok((Tok::Ident(out), i - start))
}
