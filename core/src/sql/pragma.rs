//! PRAGMA statements, intercepted before sqlparser (which rejects `PRAGMA foreign_keys = ON`).
//! Introspection PRAGMAs are answered from the catalog; settings are per connection.

use crate::error::{Error, Result, SqlState};
use crate::value::Value;

/// A parsed PRAGMA: `PRAGMA [schema.]name [= value | (value)]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pragma {
    pub schema: Option<String>,
    pub name: String,
    pub arg: Option<String>,
    /// `= value` (a setting) rather than `(value)` (an argument).
    pub assign: bool,
}

fn syntax(msg: impl Into<String>) -> Error {
    Error::new(SqlState::SyntaxError, msg)
}

/// Whether a statement text is a PRAGMA.
pub fn is_pragma(sql: &str) -> bool {
    let t = strip_leading_comments(sql);
    t.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("pragma"))
        && t[6..].starts_with(|c: char| c.is_whitespace())
}

fn strip_leading_comments(s: &str) -> &str {
    let mut rest = s.trim_start();
    loop {
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.split_once('\n').map_or("", |(_, x)| x).trim_start();
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map_or("", |(_, x)| x).trim_start();
        } else {
            return rest;
        }
    }
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() >= 2 {
        let (f, l) = (b[0], b[b.len() - 1]);
        if (f == b'"' && l == b'"') || (f == b'\'' && l == b'\'') || (f == b'`' && l == b'`') {
            let q = f as char;
            return s[1..s.len() - 1].replace(&format!("{q}{q}"), &q.to_string());
        }
        if f == b'[' && l == b']' {
            return s[1..s.len() - 1].to_string();
        }
    }
    s.to_string()
}

/// Splits `a.b` at a dot outside quotes.
fn split_name(s: &str) -> (Option<String>, String) {
    let mut in_q: Option<char> = None;
    for (i, c) in s.char_indices() {
        match (in_q, c) {
            (None, '"' | '`' | '\'') => in_q = Some(c),
            (None, '[') => in_q = Some(']'),
            (Some(q), x) if x == q => in_q = None,
            (None, '.') => return (Some(unquote(&s[..i])), unquote(&s[i + 1..])),
            _ => {}
        }
    }
    (None, unquote(s))
}

pub fn parse(sql: &str) -> Result<Pragma> {
    let t = strip_leading_comments(sql).trim();
    let body = t[6..].trim();
    let (head, arg, assign) = if let Some(p) = body.find('=') {
        (&body[..p], Some(body[p + 1..].trim()), true)
    } else if let Some(p) = body.find('(') {
        let close = body
            .rfind(')')
            .ok_or_else(|| syntax(format!("near \"{body}\": syntax error")))?;
        if close < p || !body[close + 1..].trim().is_empty() {
            return Err(syntax(format!("near \"{body}\": syntax error")));
        }
        (&body[..p], Some(body[p + 1..close].trim()), false)
    } else {
        (body, None, false)
    };
    let head = head.trim();
    if head.is_empty() || head.contains(char::is_whitespace) {
        return Err(syntax(format!("near \"{body}\": syntax error")));
    }
    let (schema, name) = split_name(head);
    let arg = match arg {
        Some("") => return Err(syntax("PRAGMA value missing")),
        Some(a) => Some(unquote(a)),
        None => None,
    };
    Ok(Pragma {
        schema,
        name: name.to_ascii_lowercase(),
        arg,
        assign,
    })
}

/// A boolean PRAGMA value (`ON`, `1`, `true`, `yes`...).
pub fn bool_arg(a: &str) -> Result<bool> {
    match a.trim().to_ascii_lowercase().as_str() {
        "1" | "on" | "true" | "yes" => Ok(true),
        "0" | "off" | "false" | "no" => Ok(false),
        other => Err(Error::invalid(format!(
            "invalid boolean PRAGMA value {other}"
        ))),
    }
}

/// Column names of the PRAGMAs that return rows.
pub fn columns(name: &str) -> &'static [&'static str] {
    match name {
        "table_info" => &["cid", "name", "type", "notnull", "dflt_value", "pk"],
        "table_xinfo" => &[
            "cid",
            "name",
            "type",
            "notnull",
            "dflt_value",
            "pk",
            "hidden",
        ],
        "index_list" => &["seq", "name", "unique", "origin", "partial"],
        "index_info" => &["seqno", "cid", "name"],
        "index_xinfo" => &["seqno", "cid", "name", "desc", "coll", "key"],
        "foreign_key_list" => &[
            "id",
            "seq",
            "table",
            "from",
            "to",
            "on_update",
            "on_delete",
            "match",
        ],
        "foreign_key_check" => &["table", "rowid", "parent", "fkid"],
        "database_list" => &["seq", "name", "file"],
        "table_list" => &["schema", "name", "type", "ncol", "wr", "strict"],
        _ => &[],
    }
}

pub fn int(v: i64) -> Value {
    Value::Integer(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forms() {
        let p = parse("PRAGMA foreign_keys = ON").unwrap();
        assert_eq!(
            (p.name.as_str(), p.arg.as_deref(), p.assign),
            ("foreign_keys", Some("ON"), true)
        );
        let p = parse("pragma main.table_info(\"post_tag\")").unwrap();
        assert_eq!(p.schema.as_deref(), Some("main"));
        assert_eq!(p.arg.as_deref(), Some("post_tag"));
        assert!(is_pragma("  PRAGMA x"));
        assert!(!is_pragma("pragmatic"));
        assert!(parse("PRAGMA").is_err());
    }
}
