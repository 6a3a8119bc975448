//! Statement text handling: splitting a script into statements, parsing one statement with
//! sqlparser's SQLite dialect, mapping source locations back to text (result column names and
//! the CREATE text kept for `sqlite_master`), and object names with their `main.` prefix.

use std::any::TypeId;

use sqlparser::ast::{DataType, Expr, Ident, ObjectName, ObjectNamePart, Statement};
use sqlparser::dialect::{BindPlaceholderStyle, Dialect, Precedence, SQLiteDialect};
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Span, Token, TokenWithSpan, Tokenizer};

use crate::error::{Error, Result, SqlState};

/// Splits a script at top-level semicolons, skipping quotes and comments. Empty pieces (only
/// whitespace or comments) are dropped.
pub fn split_statements(sql: &str) -> Vec<&str> {
    let b = sql.as_bytes();
    if !b.contains(&b';') {
        // One statement (the common case of a driver's execute): no quote or comment can
        // hide a separator that is not there.
        return if is_blank(sql) { Vec::new() } else { vec![sql] };
    }
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

/// SQLite's dialect with one shortcut: an expression that starts with a plain name (a quoted
/// identifier, or a word that is no keyword) followed by a token that cannot make it a function
/// call, a typed string or a lambda becomes that identifier at once. sqlparser would get there
/// too, but only after trying to read the name as a data type followed by a string literal
/// (`DATE '2020-01-01'`) and building, then dropping, an error for every column reference;
/// that attempt was a fifth of the cost of parsing an ORM's SELECT. Literals and parameters
/// skip the same attempt. Every other decision is
/// SQLite's: each method SQLiteDialect defines is forwarded to it, and the dialect reports
/// SQLiteDialect's type id, so the parser's dialect checks see SQLite.
#[derive(Debug, Default, Clone, Copy)]
pub struct OrmdbDialect {
    sqlite: SQLiteDialect,
}

impl OrmdbDialect {
    /// Whether the token after a plain name leaves that name an identifier. Conservative: any
    /// other token (`(`, a string literal, `::`, `->`, `[`, ...) takes sqlparser's full path.
    fn ends_name(t: &Token) -> bool {
        matches!(
            t,
            Token::EOF
                | Token::Period
                | Token::Comma
                | Token::RParen
                | Token::SemiColon
                | Token::Eq
                | Token::DoubleEq
                | Token::Neq
                | Token::Lt
                | Token::Gt
                | Token::LtEq
                | Token::GtEq
                | Token::Plus
                | Token::Minus
                | Token::Mul
                | Token::Div
                | Token::Mod
                | Token::StringConcat
                | Token::Word(_)
        )
    }
}

impl Dialect for OrmdbDialect {
    fn dialect(&self) -> TypeId {
        TypeId::of::<SQLiteDialect>()
    }

    fn parse_prefix(&self, parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
        let first = parser.peek_nth_token_ref(0);
        let w = match &first.token {
            Token::Word(w) => w,
            // A literal or a parameter: sqlparser's own arm for these tokens, without first
            // trying (and failing) to read a data type name.
            Token::Placeholder(_) | Token::Number(..) | Token::SingleQuotedString(_) => {
                return Some(parser.parse_value().map(Expr::Value));
            }
            _ => return None,
        };
        if w.keyword != Keyword::NoKeyword || !Self::ends_name(&parser.peek_nth_token_ref(1).token)
        {
            return None;
        }
        let ident = w.to_ident(first.span);
        parser.advance_token();
        Some(Ok(Expr::Identifier(ident)))
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        self.sqlite.is_delimited_identifier_start(ch)
    }
    fn identifier_quote_style(&self, identifier: &str) -> Option<char> {
        self.sqlite.identifier_quote_style(identifier)
    }
    fn ordered_bind_placeholder_style(&self) -> Option<BindPlaceholderStyle> {
        self.sqlite.ordered_bind_placeholder_style()
    }
    fn is_identifier_start(&self, ch: char) -> bool {
        self.sqlite.is_identifier_start(ch)
    }
    fn supports_filter_during_aggregation(&self) -> bool {
        self.sqlite.supports_filter_during_aggregation()
    }
    fn supports_start_transaction_modifier(&self) -> bool {
        self.sqlite.supports_start_transaction_modifier()
    }
    fn is_identifier_part(&self, ch: char) -> bool {
        self.sqlite.is_identifier_part(ch)
    }
    fn parse_statement(&self, parser: &mut Parser) -> Option<Result<Statement, ParserError>> {
        self.sqlite.parse_statement(parser)
    }
    fn parse_data_type(&self, parser: &mut Parser) -> Option<Result<DataType, ParserError>> {
        self.sqlite.parse_data_type(parser)
    }
    fn parse_infix(
        &self,
        parser: &mut Parser,
        expr: &Expr,
        precedence: u8,
    ) -> Option<Result<Expr, ParserError>> {
        self.sqlite.parse_infix(parser, expr, precedence)
    }
    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        self.sqlite.get_next_precedence(parser)
    }
    fn prec_value(&self, prec: Precedence) -> u8 {
        self.sqlite.prec_value(prec)
    }
    fn supports_in_empty_list(&self) -> bool {
        self.sqlite.supports_in_empty_list()
    }
    fn supports_limit_comma(&self) -> bool {
        self.sqlite.supports_limit_comma()
    }
    fn supports_asc_desc_in_column_definition(&self) -> bool {
        self.sqlite.supports_asc_desc_in_column_definition()
    }
    fn supports_dollar_placeholder(&self) -> bool {
        self.sqlite.supports_dollar_placeholder()
    }
    fn supports_notnull_operator(&self) -> bool {
        self.sqlite.supports_notnull_operator()
    }
    fn supports_is_operator(&self) -> bool {
        self.sqlite.supports_is_operator()
    }
    fn supports_comma_separated_trim(&self) -> bool {
        self.sqlite.supports_comma_separated_trim()
    }
    fn supports_numeric_literal_underscores(&self) -> bool {
        self.sqlite.supports_numeric_literal_underscores()
    }
    fn supports_double_eq_assignment(&self) -> bool {
        self.sqlite.supports_double_eq_assignment()
    }
    fn supports_string_literal_column_names(&self) -> bool {
        self.sqlite.supports_string_literal_column_names()
    }
    fn supports_cast_empty_data_type_to_unspecified(&self) -> bool {
        self.sqlite.supports_cast_empty_data_type_to_unspecified()
    }
    fn supports_national_string_literal(&self) -> bool {
        self.sqlite.supports_national_string_literal()
    }
    fn supports_parens_around_table_factor(&self) -> bool {
        self.sqlite.supports_parens_around_table_factor()
    }
    fn supports_unterminated_block_comments(&self) -> bool {
        self.sqlite.supports_unterminated_block_comments()
    }
    fn is_column_alias(&self, kw: &Keyword, parser: &mut Parser) -> bool {
        self.sqlite.is_column_alias(kw, parser)
    }
    fn supports_over_keyword_as_column_alias(&self) -> bool {
        self.sqlite.supports_over_keyword_as_column_alias()
    }
    fn supports_indexed_by(&self) -> bool {
        self.sqlite.supports_indexed_by()
    }
    fn is_table_alias(&self, kw: &Keyword, parser: &mut Parser) -> bool {
        self.sqlite.is_table_alias(kw, parser)
    }
    fn supports_comma_join_constraint(&self) -> bool {
        self.sqlite.supports_comma_join_constraint()
    }
    fn supports_aggregate_order_by_with_empty_args(&self) -> bool {
        self.sqlite.supports_aggregate_order_by_with_empty_args()
    }
    fn supports_bitwise_shift_operators(&self) -> bool {
        self.sqlite.supports_bitwise_shift_operators()
    }
    fn supports_in_table_expression(&self) -> bool {
        self.sqlite.supports_in_table_expression()
    }
    fn is_table_factor(&self, kw: &Keyword, parser: &mut Parser) -> bool {
        self.sqlite.is_table_factor(kw, parser)
    }
    fn between_low_bound_precedence(&self) -> u8 {
        self.sqlite.between_low_bound_precedence()
    }
}

/// Parses exactly one statement.
pub fn parse_one(sql: &str) -> Result<Statement> {
    Ok(parse_with_placeholders(sql)?.0)
}

/// Parses exactly one statement and lists its placeholders, tokenizing the text once.
pub fn parse_with_placeholders(sql: &str) -> Result<(Statement, Vec<(Location, String)>)> {
    let dialect = SQLiteDialect {};
    let syntax = |e: ParserError| {
        Error::new(
            SqlState::SyntaxError,
            format!("syntax error: {e} in \"{}\"", sql.trim()),
        )
    };
    let tokens = match fast_tokens(sql) {
        Some(t) => t,
        None => {
            let t = Tokenizer::new(&dialect, sql)
                .tokenize_with_location()
                .map_err(|e| syntax(ParserError::from(e)))?;
            without_whitespace(t)
        }
    };
    let placeholders = placeholders_in(&tokens);
    let mut stmts = Parser::new(&OrmdbDialect::default())
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(syntax)?;
    match stmts.len() {
        1 => Ok((stmts.remove(0), placeholders)),
        0 => Err(Error::new(SqlState::SyntaxError, "empty statement")),
        _ => Err(Error::new(
            SqlState::SyntaxError,
            "more than one statement where one was expected",
        )),
    }
}

/// The tokens of the plain statements ORMs send, without whitespace, or None when the text
/// holds anything this scanner leaves to sqlparser's tokenizer: non-ASCII text, comments,
/// escaped quotes, named or `$` parameters, numbers other than plain digits, prefixed
/// literals (`X'..'`), operators other than the common comparison, arithmetic and `||` ones,
/// and any operator followed by another operator character. On what it accepts it produces
/// what sqlparser's tokenizer (SQLite dialect) produces minus the whitespace, with the same
/// locations (a unit test compares both on every corpus statement); sqlparser's takes some
/// 100 instructions a character, a fifth of a cold SELECT's cost.
pub fn fast_tokens(sql: &str) -> Option<Vec<TokenWithSpan>> {
    let b = sql.as_bytes();
    if !sql.is_ascii() {
        return None;
    }
    let ident_part = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$';
    const OP_CHARS: &[u8] = b"<>=!|&^~#@-+*/%:?";
    let mut out = Vec::with_capacity(b.len() / 3);
    let (mut line, mut line_start) = (1u64, 0usize);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' => {
                i += 1;
                continue;
            }
            b'\n' => {
                i += 1;
                line += 1;
                line_start = i;
                continue;
            }
            _ => {}
        }
        let start = i;
        let token = match c {
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                while i < b.len() && ident_part(b[i]) {
                    i += 1;
                }
                // `X'..'`, `N'..'` and the like are literals with a prefix.
                if matches!(b.get(i), Some(b'\'' | b'"' | b'`' | b'&' | b'[')) {
                    return None;
                }
                Token::make_word(&sql[start..i], None)
            }
            b'0'..=b'9' => {
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                if b.get(i).is_some_and(|&d| ident_part(d) || d == b'.') {
                    return None;
                }
                Token::Number(sql[start..i].to_string(), false)
            }
            b'`' | b'"' | b'[' | b'\'' => {
                let close = if c == b'[' { b']' } else { c };
                let body = i + 1;
                let end = body + b[body..].iter().position(|&d| d == close)?;
                // A doubled quote is an escaped one; a newline would move the location.
                if b.get(end + 1) == Some(&close) || b[body..end].contains(&b'\n') {
                    return None;
                }
                i = end + 1;
                if b.get(i).is_some_and(|&d| matches!(d, b'\'' | b'"' | b'`')) {
                    return None;
                }
                let text = &sql[body..end];
                if c == b'\'' {
                    Token::SingleQuotedString(text.to_string())
                } else {
                    Token::make_word(text, Some(c as char))
                }
            }
            b'?' => {
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                if b.get(i).is_some_and(|&d| ident_part(d)) {
                    return None;
                }
                Token::Placeholder(sql[start..i].to_string())
            }
            b'(' | b')' | b',' | b';' => {
                i += 1;
                match c {
                    b'(' => Token::LParen,
                    b')' => Token::RParen,
                    b',' => Token::Comma,
                    _ => Token::SemiColon,
                }
            }
            b'.' => {
                i += 1;
                // `.5` and `._1` are read as numbers.
                if b.get(i).is_some_and(|&d| d.is_ascii_digit() || d == b'_') {
                    return None;
                }
                Token::Period
            }
            _ => {
                let next = b.get(i + 1).copied();
                let (t, len) = match (c, next) {
                    (b'<', Some(b'=')) => (Token::LtEq, 2),
                    (b'<', Some(b'>')) => (Token::Neq, 2),
                    (b'>', Some(b'=')) => (Token::GtEq, 2),
                    (b'!', Some(b'=')) => (Token::Neq, 2),
                    (b'|', Some(b'|')) => (Token::StringConcat, 2),
                    (b'<', _) => (Token::Lt, 1),
                    (b'>', _) => (Token::Gt, 1),
                    (b'=', _) => (Token::Eq, 1),
                    (b'+', _) => (Token::Plus, 1),
                    (b'-', _) => (Token::Minus, 1),
                    (b'*', _) => (Token::Mul, 1),
                    (b'/', _) => (Token::Div, 1),
                    (b'%', _) => (Token::Mod, 1),
                    _ => return None,
                };
                i += len;
                if b.get(i).is_some_and(|d| OP_CHARS.contains(d)) {
                    return None;
                }
                t
            }
        };
        let col = |at: usize| (at - line_start) as u64 + 1;
        out.push(TokenWithSpan::new(
            token,
            Span::new(Location::new(line, col(start)), Location::new(line, col(i))),
        ));
    }
    Some(out)
}

/// The tokens without the spaces and comments between them, which the parser would otherwise
/// step over on every look-ahead. Whitespace after `:` or `@` stays: a named parameter is the
/// sign immediately followed by its name, and the parser checks that adjacency.
fn without_whitespace(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    for t in tokens {
        let keep = !matches!(t.token, Token::Whitespace(_))
            || matches!(
                out.last().map(|p| &p.token),
                Some(Token::Colon | Token::AtSign)
            );
        if keep {
            out.push(t);
        }
    }
    out
}

/// The placeholders of a statement in text order: (location, placeholder text).
pub fn placeholders(sql: &str) -> Result<Vec<(Location, String)>> {
    let dialect = SQLiteDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| Error::new(SqlState::SyntaxError, format!("syntax error: {e}")))?;
    Ok(placeholders_in(&tokens))
}

fn placeholders_in(tokens: &[TokenWithSpan]) -> Vec<(Location, String)> {
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
    out
}

/// Byte offsets of each line start, to turn sqlparser locations (1-based line and character
/// column) into text slices. Built on first use: a statement run from its cached plan never
/// needs it.
pub struct LineIndex<'a> {
    text: &'a str,
    starts: std::cell::OnceCell<Vec<usize>>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        LineIndex {
            text,
            starts: std::cell::OnceCell::new(),
        }
    }

    fn starts(&self) -> &[usize] {
        self.starts.get_or_init(|| {
            let mut starts = vec![0];
            // Bytes, not chars: a newline byte never occurs inside a multi-byte character.
            starts.extend(
                self.text
                    .bytes()
                    .enumerate()
                    .filter(|(_, c)| *c == b'\n')
                    .map(|(i, _)| i + 1),
            );
            starts
        })
    }

    pub fn text(&self) -> &'a str {
        self.text
    }

    pub fn offset(&self, loc: Location) -> Option<usize> {
        if loc.line == 0 || loc.column == 0 {
            return None;
        }
        let start = *self.starts().get(loc.line as usize - 1)?;
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

    /// sqlparser's tokens without whitespace, the reference for [`fast_tokens`].
    fn reference(sql: &str) -> Option<Vec<TokenWithSpan>> {
        let t = Tokenizer::new(&SQLiteDialect {}, sql)
            .tokenize_with_location()
            .ok()?;
        Some(without_whitespace(t))
    }

    fn check(sql: &str) -> bool {
        match fast_tokens(sql) {
            Some(fast) => {
                assert_eq!(Some(fast), reference(sql), "tokens of {sql:?}");
                true
            }
            None => false,
        }
    }

    #[test]
    fn fast_tokens_match_sqlparser_on_the_corpora() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/corpus");
        let mut taken = 0;
        let mut lines = 0;
        for entry in std::fs::read_dir(dir).expect("corpus dir") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("corpus file");
            // Every line and every statement of the scripts: both texts with and without
            // the log prefixes exercise the scanner.
            for piece in text.lines().chain(split_statements(&text)) {
                lines += 1;
                taken += check(piece) as usize;
            }
        }
        assert!(lines > 1000 && taken > 500, "{taken} of {lines} taken");
    }

    #[test]
    fn fast_tokens_match_sqlparser_on_edge_cases() {
        let taken = [
            "SELECT `main`.`User`.`id` FROM `main`.`User` WHERE (`a` = ? AND 1=1) LIMIT ? OFFSET ?",
            "select \"t\".\"x\", [b c] from t where a <= 1 and b >= 2 and c <> 3 and d != 4",
            "select a||'x y', a*2, a/3, a%4, a-1, a+1, ?12 from t\nwhere\n\tb < 1 or b > 2",
            "SELECT 1;",
            "",
        ];
        for sql in taken {
            assert!(check(sql), "{sql:?} not taken");
        }
        let left = [
            "select x'00'",
            "select 'it''s'",
            "select \"a\"\"b\"",
            "select 1.5",
            "select .5",
            "select 1e3",
            "select 0x10",
            "select :a",
            "select @a",
            "select $a",
            "select a -- c",
            "select /* c */ a",
            "select a->'$.x'",
            "select a->>'$.x'",
            "select a<<2",
            "select a >> 2",
            "select a | b",
            "select a & b",
            "select ~a",
            "select a == b",
            "select a<=>b",
            "select -- x\n1",
            "select 'a\nb'",
            "select \u{e9}",
            "select 'x'\r\n",
            "select 1a",
            "select ?a",
            "select 'a'",
        ];
        for sql in left {
            check(sql);
        }
        // A random walk over the scanner's alphabet: whatever it takes must match.
        let alphabet: Vec<&str> = vec![
            " ", "\n", "\t", "a", "Z", "_", "$", "1", "0", "?", ".", ",", "(", ")", ";", "'", "\"",
            "`", "[", "]", "<", ">", "=", "!", "|", "+", "-", "*", "/", "%", "x", "select", "from",
            "?1", "'ab'", "`q`", "\"q\"", "[q]", ":", "@", "&", "#", "~", "^", "e",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut taken = 0;
        for _ in 0..100_000 {
            let mut sql = String::new();
            for _ in 0..(seed % 20 + 1) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                sql.push_str(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            taken += check(&sql) as usize;
        }
        assert!(taken > 1000, "{taken}");
    }

    #[test]
    fn placeholders_in_order() {
        let p = placeholders("select ?, ?3, :a, @b, $c").unwrap();
        let names: Vec<&str> = p.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(names, vec!["?", "?3", ":a", "@b", "$c"]);
    }
}
