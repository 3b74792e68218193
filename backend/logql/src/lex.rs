//! LogQL's tokens, each with its byte offset.

use crate::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    LBrace,
    RBrace,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Eq,
    EqEq,
    NotEq,
    Re,
    NotRe,
    PipeExact,
    PipeRe,
    Pipe,
    Gt,
    Ge,
    Lt,
    Le,
    Ident(String),
    Str(String),
    Number(f64),
    /// A duration (nanoseconds) or a byte size, with its text.
    Duration(i64),
    Bytes(f64),
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
            "|=" => (Tok::PipeExact, 2),
            "|~" => (Tok::PipeRe, 2),
            "!=" => (Tok::NotEq, 2),
            "!~" => (Tok::NotRe, 2),
            "=~" => (Tok::Re, 2),
            "==" => (Tok::EqEq, 2),
            ">=" => (Tok::Ge, 2),
            "<=" => (Tok::Le, 2),
            _ => match c {
                b'{' => (Tok::LBrace, 1),
                b'}' => (Tok::RBrace, 1),
                b'(' => (Tok::LParen, 1),
                b')' => (Tok::RParen, 1),
                b'[' => (Tok::LBracket, 1),
                b']' => (Tok::RBracket, 1),
                b',' => (Tok::Comma, 1),
                b'=' => (Tok::Eq, 1),
                b'|' => (Tok::Pipe, 1),
                b'>' => (Tok::Gt, 1),
                b'<' => (Tok::Lt, 1),
                b'"' | b'`' => string(text, i)?,
                b'0'..=b'9' | b'.' => number(text, i)?,
                b'-' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                    let (tok, len) = number(text, i + 1)?;
                    let tok = match tok {
                        Tok::Number(n) => Tok::Number(-n),
                        other => other,
                    };
                    (tok, len + 1)
                }
                _ if c.is_ascii_alphabetic() || c == b'_' => {
                    let len = text[i..]
                        .bytes()
                        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                        .count();
                    (Tok::Ident(text[i..i + len].to_owned()), len)
                }
                _ => {
                    return Err(ParseError::at(
                        text,
                        i,
                        format!(
                            "syntax error: unexpected character `{}`",
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

fn string(text: &str, start: usize) -> Result<(Tok, usize), ParseError> {
    let quote = text.as_bytes()[start] as char;
    let mut out = String::new();
    let mut chars = text[start + 1..].char_indices();
    while let Some((offset, c)) = chars.next() {
        match c {
            c if c == quote => return Ok((Tok::Str(out), offset + 2)),
            '\\' if quote == '"' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, other)) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    Err(ParseError::at(
        text,
        start,
        "syntax error: unterminated string".into(),
    ))
}

fn number(text: &str, start: usize) -> Result<(Tok, usize), ParseError> {
    let rest = &text[start..];
    let mut len = rest
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let value: f64 = rest[..len].parse().map_err(|_| {
        ParseError::at(
            text,
            start,
            format!("syntax error: invalid number `{}`", &rest[..len]),
        )
    })?;
    // A duration may chain units (1h30m); a byte size has one (20KB).
    let unit_len = rest[len..]
        .bytes()
        .take_while(|b| b.is_ascii_alphabetic())
        .count();
    if unit_len == 0 {
        return Ok((Tok::Number(value), len));
    }
    let unit = &rest[len..len + unit_len];
    let bytes_per = match unit.to_ascii_uppercase().as_str() {
        "B" => Some(1.0),
        "KB" | "KIB" => Some(1024.0),
        "MB" | "MIB" => Some(1024.0 * 1024.0),
        "GB" | "GIB" => Some(1024.0 * 1024.0 * 1024.0),
        _ => None,
    };
    if let Some(per) = bytes_per
        && unit != "m"
    {
        return Ok((Tok::Bytes(value * per), len + unit_len));
    }
    let mut nanos = 0f64;
    let mut number = value;
    loop {
        let unit_len: usize = rest[len..]
            .chars()
            .take_while(|c| c.is_ascii_alphabetic() || *c == 'µ')
            .map(char::len_utf8)
            .sum();
        let unit = &rest[len..len + unit_len];
        let per = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "d" => 86400e9,
            "w" => 7.0 * 86400e9,
            "y" => 365.0 * 86400e9,
            _ => {
                return Err(ParseError::at(
                    text,
                    start,
                    format!(
                        "syntax error: invalid duration `{}`",
                        &rest[..len + unit_len]
                    ),
                ));
            }
        };
        nanos += number * per;
        len += unit_len;
        let digits = rest[len..]
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        if digits == 0 {
            break;
        }
        number = rest[len..len + digits].parse().unwrap_or(0.0);
        len += digits;
    }
    Ok((Tok::Duration(nanos.round() as i64), len))
}
