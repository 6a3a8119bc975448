//! Statement text handling: splitting a script into statements, parsing one statement with
//! sqlparser's SQLite dialect, mapping source locations back to text (result column names and
//! the CREATE text kept for `sqlite_master`), and object names with their `main.` prefix.

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart, Statement};
use sqlparser::dialect::SQLiteDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Span, Token, Tokenizer};

use crate::error::{Error, Result, SqlState};

/// Splits a script at top-level semicolons, skipping quotes and comments. Empty pieces (only
/// whitespace or comments) are dropped.
pub fn split_statements(sql: &str) -> Vec<&str> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < b.len() {
                    if b[i] == q {
                        if i + 1 < b.len() && b[i + 1] == q {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
            }
            b'[' => {
                while i < b.len() && b[i] != b']' {
                    i += 1;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b';' => {
                out.push(&sql[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < sql.len() {
        out.push(&sql[start..]);
    }
    out.into_iter().filter(|s| !is_blank(s)).collect()
}

/// Whether the text holds nothing but whitespace and comments.
pub fn is_blank(s: &str) -> bool {
    let mut rest = s.trim_start();
    loop {
        if rest.is_empty() {
            return true;
        }
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.split_once('\n').map_or("", |(_, x)| x).trim_start();
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map_or("", |(_, x)| x).trim_start();
        } else {
            return false;
        }
    }
}

/// Parses exactly one statement.
pub fn parse_one(sql: &str) -> Result<Statement> {
    let dialect = SQLiteDialect {};
    let mut stmts = Parser::parse_sql(&dialect, sql).map_err(|e| {
        Error::new(
            SqlState::SyntaxError,
            format!("syntax error: {e} in \"{}\"", sql.trim()),
        )
    })?;
    match stmts.len() {
        1 => Ok(stmts.remove(0)),
        0 => Err(Error::new(SqlState::SyntaxError, "empty statement")),
        _ => Err(Error::new(
            SqlState::SyntaxError,
            "more than one statement where one was expected",
        )),
    }
}

/// The placeholders of a statement in text order: (location, placeholder text).
pub fn placeholders(sql: &str) -> Result<Vec<(Location, String)>> {
    let dialect = SQLiteDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| Error::new(SqlState::SyntaxError, format!("syntax error: {e}")))?;
    // `:name` and `@name` arrive as a sign token followed by a word; the parser joins them
    // into one placeholder located at the sign.
    let mut out = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        match &t.token {
            Token::Placeholder(p) => out.push((t.span.start, p.clone())),
            Token::Colon | Token::AtSign => {
                if let Some(next) = tokens.get(i + 1) {
                    if let Token::Word(w) = &next.token {
                        if next.span.start == t.span.end {
                            let sign = if t.token == Token::Colon { ':' } else { '@' };
                            out.push((t.span.start, format!("{sign}{}", w.value)));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Byte offsets of each line start, to turn sqlparser locations (1-based line and character
/// column) into text slices.
pub struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        for (i, c) in text.char_indices() {
            if c == '\n' {
                starts.push(i + 1);
            }
        }
        LineIndex { text, starts }
    }

    pub fn text(&self) -> &'a str {
        self.text
    }

    pub fn offset(&self, loc: Location) -> Option<usize> {
        if loc.line == 0 || loc.column == 0 {
            return None;
        }
        let start = *self.starts.get(loc.line as usize - 1)?;
        let line = &self.text[start..];
        let col = loc.column as usize - 1;
        match line.char_indices().nth(col) {
            Some((i, _)) => Some(start + i),
            None => Some(self.text.len()),
        }
    }

    /// The text a span covers (end inclusive in sqlparser's spans is the position after the
    /// last character).
    pub fn slice(&self, span: Span) -> Option<&'a str> {
        let a = self.offset(span.start)?;
        let b = self.offset(span.end)?;
        if a <= b && b <= self.text.len() {
            Some(&self.text[a..b])
        } else {
            None
        }
    }
}

/// Texts of the result column expressions of the SELECT whose keyword starts at `select_kw`,
/// as written (SQLite names unaliased result columns after them). Items are split at commas
/// outside parentheses; the list ends at FROM/WHERE/GROUP/... or a closing parenthesis.
pub fn select_item_texts(sql: &str, select_kw: Location) -> Vec<String> {
    let dialect = SQLiteDialect {};
    let Ok(toks) = Tokenizer::new(&dialect, sql).tokenize_with_location() else {
        return Vec::new();
    };
    let li = LineIndex::new(sql);
    let toks: Vec<_> = toks
        .into_iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let Some(mut i) = toks.iter().position(|t| t.span.start == select_kw) else {
        return Vec::new();
    };
    i += 1;
    const STOP: &[&str] = &[
        "FROM",
        "WHERE",
        "GROUP",
        "HAVING",
        "ORDER",
        "LIMIT",
        "UNION",
        "EXCEPT",
        "INTERSECT",
        "WINDOW",
    ];
    while let Some(Token::Word(w)) = toks.get(i).map(|t| &t.token) {
        if w.quote_style.is_none()
            && (w.value.eq_ignore_ascii_case("DISTINCT") || w.value.eq_ignore_ascii_case("ALL"))
        {
            i += 1;
        } else {
            break;
        }
    }
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = i;
    let push = |a: usize, b: usize, out: &mut Vec<String>| {
        if a < b {
            let x = li.offset(toks[a].span.start);
            let y = li.offset(toks[b - 1].span.end);
            if let (Some(x), Some(y)) = (x, y) {
                out.push(sql.get(x..y).unwrap_or("").to_string());
                return;
            }
        }
        out.push(String::new());
    };
    while i < toks.len() {
        match &toks[i].token {
            Token::LParen => depth += 1,
            Token::RParen if depth == 0 => break,
            Token::RParen => depth -= 1,
            Token::Comma if depth == 0 => {
                push(start, i, &mut out);
                start = i + 1;
            }
            Token::SemiColon | Token::EOF if depth == 0 => break,
            Token::Word(w)
                if depth == 0
                    && w.quote_style.is_none()
                    && STOP.iter().any(|k| w.value.eq_ignore_ascii_case(k)) =>
            {
                break
            }
            _ => {}
        }
        i += 1;
    }
    push(start, i, &mut out);
    out
}

/// Texts of the RETURNING items of a statement (see [`select_item_texts`]).
pub fn returning_item_texts(sql: &str) -> Vec<String> {
    let dialect = SQLiteDialect {};
    let Ok(toks) = Tokenizer::new(&dialect, sql).tokenize_with_location() else {
        return Vec::new();
    };
    let mut depth = 0i32;
    let mut at = None;
    for t in &toks {
        match &t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Word(w)
                if depth == 0
                    && w.quote_style.is_none()
                    && w.value.eq_ignore_ascii_case("RETURNING") =>
            {
                at = Some(t.span.start)
            }
            _ => {}
        }
    }
    match at {
        Some(loc) => select_item_texts(sql, loc),
        None => Vec::new(),
    }
}

/// The table name of an object name, accepting a `main.` schema prefix; `temp.` and attached
/// schemas are not supported.
pub fn table_name(name: &ObjectName) -> Result<String> {
    let parts: Vec<&Ident> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => Ok(i),
            ObjectNamePart::Function(_) => Err(Error::unsupported(format!("object name {name}"))),
        })
        .collect::<Result<_>>()?;
    match parts.as_slice() {
        [t] => refuse_sequence_table(&t.value).map(|_| t.value.clone()),
        [s, t] if s.value.eq_ignore_ascii_case("main") => {
            refuse_sequence_table(&t.value).map(|_| t.value.clone())
        }
        [s, _] if s.value.eq_ignore_ascii_case("temp") => {
            Err(Error::unsupported(format!("the temp schema ({name})")))
        }
        _ => Err(Error::unsupported(format!("schema-qualified name {name}"))),
    }
}

/// Refuses `sqlite_sequence` where it is named as anything but the source or target of a
/// SELECT / INSERT / UPDATE / DELETE (those go to `sequence`): it is no catalog table.
pub fn refuse_sequence_table(name: &str) -> Result<()> {
    if name.eq_ignore_ascii_case("sqlite_sequence") {
        return Err(Error::unsupported(
            "sqlite_sequence here (only SELECT, INSERT, UPDATE and DELETE reach it)",
        ));
    }
    Ok(())
}

/// Whether `name` is one of the schema tables SQLite exposes.
pub fn is_schema_table(name: &str) -> bool {
    ["sqlite_master", "sqlite_schema"]
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name))
}

pub fn is_temp_schema_table(name: &str) -> bool {
    ["sqlite_temp_master", "sqlite_temp_schema"]
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_outside_quotes_and_comments() {
        let s = split_statements("select ';'; -- a;b\n select \"x;\" ; /* ; */ ;");
        assert_eq!(s.len(), 2);
        assert!(s[0].contains("';'"));
        assert!(s[1].contains("\"x;\""));
    }

    #[test]
    fn placeholders_in_order() {
        let p = placeholders("select ?, ?3, :a, @b, $c").unwrap();
        let names: Vec<&str> = p.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(names, vec!["?", "?3", ":a", "@b", "$c"]);
    }
}
