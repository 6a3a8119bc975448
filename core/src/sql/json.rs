//! The JSON functions ORMs use (`json`, `json_valid`, `json_extract`, `json_type`,
//! `json_array_length`, `->`, `->>`), over RFC 8259 text. Numbers and strings keep their text
//! as written, so `json()` minifies without rewriting them, as SQLite does.

use crate::error::{Error, Result, SqlState};
use crate::ir::expr::text_of;
use crate::value::{parse_numeric, Value};

#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    True,
    False,
    /// Number text as written.
    Number(String),
    /// String body as written (escapes kept).
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Option<Json> {
        if depth > 1000 {
            return None;
        }
        self.ws();
        let c = *self.b.get(self.i)?;
        match c {
            b'{' => {
                self.i += 1;
                let mut members = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Some(Json::Object(members));
                }
                loop {
                    self.ws();
                    let Json::Str(k) = self.string()? else {
                        return None;
                    };
                    self.ws();
                    if self.b.get(self.i) != Some(&b':') {
                        return None;
                    }
                    self.i += 1;
                    let v = self.value(depth + 1)?;
                    members.push((k, v));
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Some(Json::Object(members));
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Some(Json::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Some(Json::Array(items));
                        }
                        _ => return None,
                    }
                }
            }
            b'"' => self.string(),
            b't' => self.word("true", Json::True),
            b'f' => self.word("false", Json::False),
            b'n' => self.word("null", Json::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn word(&mut self, w: &str, v: Json) -> Option<Json> {
        if self.b[self.i..].starts_with(w.as_bytes()) {
            self.i += w.len();
            Some(v)
        } else {
            None
        }
    }

    fn string(&mut self) -> Option<Json> {
        if self.b.get(self.i) != Some(&b'"') {
            return None;
        }
        let start = self.i + 1;
        let mut j = start;
        while j < self.b.len() {
            match self.b[j] {
                b'"' => {
                    let s = std::str::from_utf8(&self.b[start..j]).ok()?.to_string();
                    self.i = j + 1;
                    return Some(Json::Str(s));
                }
                b'\\' => {
                    let e = *self.b.get(j + 1)?;
                    match e {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => j += 2,
                        b'u' => {
                            let hex = self.b.get(j + 2..j + 6)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            j += 6;
                        }
                        _ => return None,
                    }
                }
                c if c < 0x20 => return None,
                _ => j += 1,
            }
        }
        None
    }

    fn number(&mut self) -> Option<Json> {
        let start = self.i;
        let b = self.b;
        let mut j = self.i;
        if b.get(j) == Some(&b'-') {
            j += 1;
        }
        match b.get(j) {
            Some(b'0') => j += 1,
            Some(c) if c.is_ascii_digit() => {
                while b.get(j).is_some_and(u8::is_ascii_digit) {
                    j += 1;
                }
            }
            _ => return None,
        }
        if b.get(j) == Some(&b'.') {
            j += 1;
            if !b.get(j).is_some_and(u8::is_ascii_digit) {
                return None;
            }
            while b.get(j).is_some_and(u8::is_ascii_digit) {
                j += 1;
            }
        }
        if matches!(b.get(j), Some(b'e' | b'E')) {
            j += 1;
            if matches!(b.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            if !b.get(j).is_some_and(u8::is_ascii_digit) {
                return None;
            }
            while b.get(j).is_some_and(u8::is_ascii_digit) {
                j += 1;
            }
        }
        self.i = j;
        Some(Json::Number(
            std::str::from_utf8(&b[start..j]).ok()?.to_string(),
        ))
    }
}

fn parse(text: &str) -> Option<Json> {
    let mut p = Parser {
        b: text.as_bytes(),
        i: 0,
    };
    let v = p.value(0)?;
    p.ws();
    (p.i == p.b.len()).then_some(v)
}

fn malformed() -> Error {
    Error::new(SqlState::InvalidParameter, "malformed JSON")
}

fn parse_arg(v: &Value) -> Result<Option<Json>> {
    match v {
        Value::Null => Ok(None),
        Value::Integer(_) | Value::Real(_) => Ok(Some(Json::Number(text_of(v)))),
        Value::Blob(_) => Err(Error::unsupported("JSONB (binary JSON) arguments")),
        Value::Text(t) => parse(t).map(Some).ok_or_else(malformed),
    }
}

fn render(j: &Json, out: &mut String) {
    match j {
        Json::Null => out.push_str("null"),
        Json::True => out.push_str("true"),
        Json::False => out.push_str("false"),
        Json::Number(n) => out.push_str(n),
        Json::Str(s) => {
            out.push('"');
            out.push_str(s);
            out.push('"');
        }
        Json::Array(items) => {
            out.push('[');
            for (k, it) in items.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                render(it, out);
            }
            out.push(']');
        }
        Json::Object(m) => {
            out.push('{');
            for (k, (key, v)) in m.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                out.push('"');
                out.push_str(key);
                out.push_str("\":");
                render(v, out);
            }
            out.push('}');
        }
    }
}

fn to_text(j: &Json) -> String {
    let mut s = String::new();
    render(j, &mut s);
    s
}

/// Decodes the escapes of a JSON string body.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = (0..4).filter_map(|_| it.next()).collect();
                let mut cp = u32::from_str_radix(&hex, 16).unwrap_or(0xFFFD);
                if (0xD800..0xDC00).contains(&cp) {
                    // a surrogate pair: \uD83D\uDE00
                    let mut look = it.clone();
                    if look.next() == Some('\\') && look.next() == Some('u') {
                        let lo: String = (0..4).filter_map(|_| look.next()).collect();
                        if let Ok(l) = u32::from_str_radix(&lo, 16) {
                            if (0xDC00..0xE000).contains(&l) {
                                cp = 0x10000 + ((cp - 0xD800) << 10) + (l - 0xDC00);
                                it = look;
                            }
                        }
                    }
                }
                out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// The SQL value of a JSON node (json_extract / ->>).
fn to_sql(j: &Json) -> Value {
    match j {
        Json::Null => Value::Null,
        Json::True => Value::Integer(1),
        Json::False => Value::Integer(0),
        Json::Number(n) => parse_numeric(n).unwrap_or_else(|| Value::Text(n.clone())),
        Json::Str(s) => Value::Text(unescape(s)),
        other => Value::Text(to_text(other)),
    }
}

/// Follows a path (`$`, `.key`, `."key"`, `[n]`, `[#-n]`); None when it leads nowhere.
fn lookup<'a>(mut j: &'a Json, path: &str) -> Result<Option<&'a Json>> {
    let bad = || Error::new(SqlState::InvalidParameter, format!("bad JSON path: {path}"));
    let rest = path.strip_prefix('$').ok_or_else(bad)?;
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'.' => {
                i += 1;
                let key = if b.get(i) == Some(&b'"') {
                    // A quoted label takes JSON escapes (`\"`, `\\`, `\uXXXX`), as in
                    // SQLite 3.47+: it ends at the first unescaped quote.
                    let mut end = i + 1;
                    while end < b.len() && b[end] != b'"' {
                        end += if b[end] == b'\\' { 2 } else { 1 };
                    }
                    let k = rest.get(i + 1..end).ok_or_else(bad)?;
                    if end >= b.len() {
                        return Err(bad());
                    }
                    i = end + 1;
                    unescape(k)
                } else {
                    let start = i;
                    while i < b.len() && b[i] != b'.' && b[i] != b'[' {
                        i += 1;
                    }
                    if start == i {
                        return Err(bad());
                    }
                    rest[start..i].to_string()
                };
                let Json::Object(m) = j else { return Ok(None) };
                match m.iter().rev().find(|(k, _)| unescape(k) == key) {
                    Some((_, v)) => j = v,
                    None => return Ok(None),
                }
            }
            b'[' => {
                let end = rest[i..].find(']').ok_or_else(bad)? + i;
                let idx = rest[i + 1..end].trim();
                i = end + 1;
                let Json::Array(items) = j else {
                    return Ok(None);
                };
                let pos = if let Some(back) = idx.strip_prefix('#') {
                    let back = back.trim();
                    let n: usize = if back.is_empty() {
                        0
                    } else {
                        back.strip_prefix('-')
                            .ok_or_else(bad)?
                            .trim()
                            .parse()
                            .map_err(|_| bad())?
                    };
                    match items.len().checked_sub(n) {
                        Some(p) => p,
                        None => return Ok(None),
                    }
                } else {
                    idx.parse::<usize>().map_err(|_| bad())?
                };
                match items.get(pos) {
                    Some(v) => j = v,
                    None => return Ok(None),
                }
            }
            _ => return Err(bad()),
        }
    }
    Ok(Some(j))
}

/// The right operand of `->`/`->>`: a path, a label, or an array index.
fn arrow_path(p: &Value) -> String {
    match p {
        Value::Integer(i) if *i < 0 => format!("$[#{i}]"),
        Value::Integer(i) => format!("$[{i}]"),
        other => {
            let t = text_of(other);
            if t.starts_with('$') {
                t
            } else {
                format!("$.\"{t}\"")
            }
        }
    }
}

pub const FUNCTIONS: &[&str] = &[
    "json",
    "json_valid",
    "json_extract",
    "json_type",
    "json_array_length",
    "json_quote",
    "$json_arrow",
    "$json_long_arrow",
];

fn type_name(j: &Json) -> &'static str {
    match j {
        Json::Null => "null",
        Json::True => "true",
        Json::False => "false",
        Json::Number(n) => {
            if matches!(parse_numeric(n), Some(Value::Integer(_))) {
                "integer"
            } else {
                "real"
            }
        }
        Json::Str(_) => "text",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

pub fn call(name: &str, args: &[Value]) -> Result<Value> {
    let arg = |i: usize| args.get(i).cloned().unwrap_or(Value::Null);
    Ok(match name {
        "json" => match parse_arg(&arg(0))? {
            None => Value::Null,
            Some(j) => Value::Text(to_text(&j)),
        },
        "json_valid" => match arg(0) {
            Value::Null => Value::Null,
            Value::Text(t) => Value::Integer(parse(&t).is_some() as i64),
            Value::Integer(_) | Value::Real(_) => Value::Integer(1),
            Value::Blob(_) => Value::Integer(0),
        },
        "json_quote" => match arg(0) {
            Value::Null => Value::Text("null".into()),
            v @ (Value::Integer(_) | Value::Real(_)) => Value::Text(text_of(&v)),
            v => {
                let s = text_of(&v);
                let mut out = String::from("\"");
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        '\r' => out.push_str("\\r"),
                        '\t' => out.push_str("\\t"),
                        c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                        c => out.push(c),
                    }
                }
                out.push('"');
                Value::Text(out)
            }
        },
        "json_extract" => {
            let Some(j) = parse_arg(&arg(0))? else {
                return Ok(Value::Null);
            };
            if args.len() == 2 {
                let p = arg(1);
                if p.is_null() {
                    return Ok(Value::Null);
                }
                return Ok(match lookup(&j, &text_of(&p))? {
                    Some(x) => to_sql(x),
                    None => Value::Null,
                });
            }
            let mut items = Vec::new();
            for p in &args[1..] {
                if p.is_null() {
                    return Ok(Value::Null);
                }
                items.push(lookup(&j, &text_of(p))?.cloned().unwrap_or(Json::Null));
            }
            Value::Text(to_text(&Json::Array(items)))
        }
        "$json_arrow" | "$json_long_arrow" => {
            let Some(j) = parse_arg(&arg(0))? else {
                return Ok(Value::Null);
            };
            let p = arg(1);
            if p.is_null() {
                return Ok(Value::Null);
            }
            match lookup(&j, &arrow_path(&p))? {
                None => Value::Null,
                Some(x) if name == "$json_arrow" => Value::Text(to_text(x)),
                Some(x) => to_sql(x),
            }
        }
        "json_type" => {
            let Some(j) = parse_arg(&arg(0))? else {
                return Ok(Value::Null);
            };
            let node = match args.get(1) {
                Some(p) if p.is_null() => return Ok(Value::Null),
                Some(p) => lookup(&j, &text_of(p))?,
                None => Some(&j),
            };
            node.map_or(Value::Null, |x| Value::Text(type_name(x).into()))
        }
        "json_array_length" => {
            let Some(j) = parse_arg(&arg(0))? else {
                return Ok(Value::Null);
            };
            let node = match args.get(1) {
                Some(p) => lookup(&j, &text_of(p))?,
                None => Some(&j),
            };
            match node {
                None => Value::Null,
                Some(Json::Array(items)) => Value::Integer(items.len() as i64),
                Some(_) => Value::Integer(0),
            }
        }
        other => return Err(Error::unsupported(format!("function {other}()"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_like_sqlite() {
        let doc = Value::from(r#"{"a": {"b": [1, 2.50, "x\"y"]}, "t": true, "n": null}"#);
        assert_eq!(
            call("json", std::slice::from_ref(&doc)).unwrap(),
            Value::from(r#"{"a":{"b":[1,2.50,"x\"y"]},"t":true,"n":null}"#)
        );
        assert_eq!(
            call("json_extract", &[doc.clone(), "$.a.b[1]".into()]).unwrap(),
            Value::Real(2.5)
        );
        assert_eq!(
            call("json_extract", &[doc.clone(), "$.a.b[#-1]".into()]).unwrap(),
            Value::from("x\"y")
        );
        assert_eq!(
            call("json_extract", &[doc.clone(), "$.t".into()]).unwrap(),
            Value::Integer(1)
        );
        assert_eq!(
            call("$json_arrow", &[doc.clone(), "a".into()]).unwrap(),
            Value::from(r#"{"b":[1,2.50,"x\"y"]}"#)
        );
        assert_eq!(
            call("json_valid", &["{".into()]).unwrap(),
            Value::Integer(0)
        );
        assert!(call("json", &["{".into()]).is_err());
    }
}
