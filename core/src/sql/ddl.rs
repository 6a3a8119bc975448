//! DDL: CREATE/DROP TABLE, CREATE/DROP INDEX, ALTER TABLE, turned into catalog changes
//! (schema bundle changes inside the transaction). The CREATE text is kept in the catalog
//! (`EntityDef::sql`, `IndexDef::sql`) in the form SQLite keeps it, for `sqlite_master`.

use sqlparser::ast::{
    self as ast, AlterTableOperation, ColumnOption, Expr as AExpr, ObjectType, ReferentialAction,
    Spanned, Statement, TableConstraint,
};
use sqlparser::dialect::SQLiteDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::compile::Collation;
use super::parse::{table_name, LineIndex};
use super::temp::{self, Qualifier, TempNames};
use crate::api::Transaction;
use crate::catalog::{
    DefaultValue, EntitySpec, FieldDef, FkAction, ForeignKeySpec, Generated, IndexSpec,
};
use crate::error::{Error, Result, SqlState};
use crate::ir::{BinaryOp, Expr};
use crate::value::{DataType, Value};

fn syntax(msg: impl Into<String>) -> Error {
    Error::new(SqlState::SyntaxError, msg)
}

/// Source text of an expression (a parenthesized default loses its parentheses, as in SQLite).
pub fn expr_source(li: &LineIndex, e: &AExpr) -> String {
    let e = match e {
        AExpr::Nested(inner) => inner.as_ref(),
        other => other,
    };
    li.slice(e.span())
        .map(str::to_string)
        .unwrap_or_else(|| e.to_string())
}

/// One column definition found by scanning CREATE TABLE text.
#[derive(Debug)]
pub struct ColumnText {
    pub name: String,
    pub decl: String,
    /// The DEFAULT expression as written (outer parentheses removed, as SQLite reports it).
    pub default: Option<String>,
    /// Byte offset just after the definition (before the `,` or `)`).
    end: usize,
}

const CONSTRAINT_WORDS: &[&str] = &[
    "CONSTRAINT",
    "PRIMARY",
    "NOT",
    "NULL",
    "UNIQUE",
    "CHECK",
    "DEFAULT",
    "COLLATE",
    "REFERENCES",
    "GENERATED",
    "AS",
];
const TABLE_CONSTRAINT_WORDS: &[&str] = &["CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"];

/// Scans the column definitions of a CREATE TABLE text: names, declared types as written, and
/// where each definition ends (ALTER TABLE ADD COLUMN inserts after the last one, as SQLite).
pub fn scan_columns(sql: &str) -> Result<Vec<ColumnText>> {
    let dialect = SQLiteDialect {};
    let toks = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| syntax(format!("{e}")))?;
    let li = LineIndex::new(sql);
    let toks: Vec<_> = toks
        .into_iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let Some(open) = toks.iter().position(|t| t.token == Token::LParen) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut i = open + 1;
    while i < toks.len() {
        // a column or table-constraint definition runs until `,` or `)` at depth 0
        let start = i;
        let mut depth = 0;
        let mut j = i;
        while j < toks.len() {
            match toks[j].token {
                Token::LParen => depth += 1,
                Token::RParen if depth == 0 => break,
                Token::RParen => depth -= 1,
                Token::Comma if depth == 0 => break,
                _ => {}
            }
            j += 1;
        }
        let first = &toks[start].token;
        let is_constraint = matches!(first, Token::Word(w) if w.quote_style.is_none()
            && TABLE_CONSTRAINT_WORDS.iter().any(|k| w.value.eq_ignore_ascii_case(k)));
        if is_constraint {
            break;
        }
        if let Token::Word(w) = first {
            let name = w.value.clone();
            let mut k = start + 1;
            let type_start = k;
            let mut depth = 0;
            while k < j {
                match &toks[k].token {
                    Token::Word(w2)
                        if depth == 0
                            && w2.quote_style.is_none()
                            && CONSTRAINT_WORDS
                                .iter()
                                .any(|c| w2.value.eq_ignore_ascii_case(c)) =>
                    {
                        break
                    }
                    Token::LParen => depth += 1,
                    Token::RParen => depth -= 1,
                    _ => {}
                }
                k += 1;
            }
            let decl = if k > type_start {
                let a = li.offset(toks[type_start].span.start).unwrap_or(0);
                let b = li.offset(toks[k - 1].span.end).unwrap_or(a);
                sql.get(a..b).unwrap_or("").to_string()
            } else {
                String::new()
            };
            let end = li.offset(toks[j - 1].span.end).unwrap_or(sql.len());
            // DEFAULT <expr>: up to the next constraint keyword at depth 0.
            let mut default = None;
            let mut d = 0i32;
            let mut m = k;
            while m < j {
                match &toks[m].token {
                    Token::LParen => d += 1,
                    Token::RParen => d -= 1,
                    Token::Word(w)
                        if d == 0
                            && w.quote_style.is_none()
                            && w.value.eq_ignore_ascii_case("DEFAULT") =>
                    {
                        let a = m + 1;
                        let mut b = a;
                        let mut dd = 0i32;
                        while b < j {
                            match &toks[b].token {
                                Token::LParen => dd += 1,
                                Token::RParen => dd -= 1,
                                Token::Word(w2)
                                    if dd == 0
                                        && b > a
                                        && w2.quote_style.is_none()
                                        && CONSTRAINT_WORDS
                                            .iter()
                                            .any(|c| w2.value.eq_ignore_ascii_case(c)) =>
                                {
                                    break
                                }
                                _ => {}
                            }
                            b += 1;
                        }
                        let (mut a2, mut b2) = (a, b);
                        if b2 > a2 + 1
                            && toks[a2].token == Token::LParen
                            && toks[b2 - 1].token == Token::RParen
                        {
                            a2 += 1;
                            b2 -= 1;
                        }
                        if b2 > a2 {
                            let x = li.offset(toks[a2].span.start).unwrap_or(0);
                            let y = li.offset(toks[b2 - 1].span.end).unwrap_or(x);
                            default = sql.get(x..y).map(str::to_string);
                        }
                        m = b;
                        continue;
                    }
                    _ => {}
                }
                m += 1;
            }
            out.push(ColumnText {
                name,
                decl,
                end,
                default,
            });
        }
        if j >= toks.len() || toks[j].token == Token::RParen {
            break;
        }
        i = j + 1;
    }
    Ok(out)
}

/// SQLite stores the six standard type names in upper case and others as written.
fn normalize_decl(decl: &str) -> String {
    let d = decl.trim();
    for std in ["INT", "INTEGER", "REAL", "TEXT", "BLOB", "ANY"] {
        if d.eq_ignore_ascii_case(std) {
            return std.to_string();
        }
    }
    d.to_string()
}

/// The CREATE text as SQLite keeps it: `CREATE TABLE ` + the text from the name on (IF NOT
/// EXISTS and extra spacing dropped).
fn normalized_create(sql: &str, keyword: &str, name_offset: usize) -> String {
    format!("{keyword} {}", sql[name_offset..].trim_end())
}

fn name_offset(li: &LineIndex, name: &ast::ObjectName) -> Option<usize> {
    li.offset(name.span().start)
}

fn fk_action(a: &Option<ReferentialAction>) -> FkAction {
    match a {
        None | Some(ReferentialAction::NoAction) => FkAction::NoAction,
        Some(ReferentialAction::Restrict) => FkAction::Restrict,
        Some(ReferentialAction::Cascade) => FkAction::Cascade,
        Some(ReferentialAction::SetNull) => FkAction::SetNull,
        Some(ReferentialAction::SetDefault) => FkAction::SetDefault,
    }
}

fn fk_spec(fk: &ast::ForeignKeyConstraint, columns: Vec<String>) -> Result<ForeignKeySpec> {
    let parent = table_name(&fk.foreign_table)?;
    let deferred = match &fk.characteristics {
        Some(c) => {
            c.deferrable == Some(true)
                && matches!(c.initially, Some(ast::DeferrableInitial::Deferred))
        }
        None => false,
    };
    Ok(ForeignKeySpec {
        name: fk.name.as_ref().map(|n| n.value.clone()),
        fields: columns,
        parent,
        parent_fields: fk
            .referred_columns
            .iter()
            .map(|c| c.value.clone())
            .collect(),
        on_delete: fk_action(&fk.on_delete),
        on_update: fk_action(&fk.on_update),
        deferred,
    })
}

fn index_column_names(cols: &[ast::IndexColumn]) -> Result<Vec<String>> {
    cols.iter()
        .map(|c| {
            if c.operator_class.is_some() {
                return Err(Error::unsupported("index operator classes"));
            }
            if matches!(c.column.options.sort, Some(ast::OrderBySort::Desc)) {
                return Err(Error::unsupported("DESC index columns"));
            }
            match &c.column.expr {
                AExpr::Identifier(i) => Ok(i.value.clone()),
                AExpr::Collate { expr, collation }
                    if collation.to_string().eq_ignore_ascii_case("binary") =>
                {
                    match expr.as_ref() {
                        AExpr::Identifier(i) => Ok(i.value.clone()),
                        other => Err(Error::unsupported(format!("expression index on {other}"))),
                    }
                }
                other => Err(Error::unsupported(format!("expression index on {other}"))),
            }
        })
        .collect()
}

/// One CREATE INDEX column: a plain column name, or an expression for a keyed index.
enum IndexKeyCol {
    /// A column, with its explicit COLLATE (upper case) if any.
    Column(String, Option<String>),
    Expr(Expr),
}

/// The key columns of CREATE INDEX. DESC only changes the order SQLite keeps the entries in
/// (ORMDB keeps every index ascending and reads it backwards for a descending ORDER BY); a
/// NOCASE/RTRIM collation changes what a UNIQUE index treats as equal (see `create_index`):
/// a plain index keeps raw values, so it serves only BINARY ordering.
fn index_key_columns(cols: &[ast::IndexColumn]) -> Result<Vec<IndexKeyCol>> {
    cols.iter()
        .map(|c| {
            if c.operator_class.is_some() {
                return Err(Error::unsupported("index operator classes"));
            }
            if c.column.options.nulls_first.is_some() {
                return Err(syntax("NULLS FIRST/LAST is not allowed in an index"));
            }
            let mut e = &c.column.expr;
            let mut explicit = None;
            if let AExpr::Collate { expr, collation } = e {
                let coll = collation.to_string().trim_matches('"').to_ascii_uppercase();
                if !["BINARY", "NOCASE", "RTRIM"].contains(&coll.as_str()) {
                    return Err(syntax(format!("no such collation sequence: {coll}")));
                }
                explicit = Some(coll);
                e = expr;
            }
            Ok(match e {
                AExpr::Identifier(i) => IndexKeyCol::Column(i.value.clone(), explicit),
                AExpr::Nested(x) if matches!(x.as_ref(), AExpr::Identifier(_)) => {
                    if explicit.is_some() {
                        return Err(Error::unsupported("COLLATE on an index expression"));
                    }
                    IndexKeyCol::Expr(to_ir(x)?)
                }
                _ if explicit.is_some() => {
                    return Err(Error::unsupported("COLLATE on an index expression"))
                }
                other => IndexKeyCol::Expr(to_ir(other)?),
            })
        })
        .collect()
}

/// Converts a CHECK or DEFAULT expression into a stored engine expression.
pub fn to_ir(e: &AExpr) -> Result<Expr> {
    use sqlparser::ast::BinaryOperator as B;
    Ok(match e {
        AExpr::Identifier(i) => Expr::Named(i.value.clone()),
        AExpr::CompoundIdentifier(p) if p.len() == 2 => Expr::Named(p[1].value.clone()),
        AExpr::Nested(x) => to_ir(x)?,
        AExpr::Value(v) => Expr::Literal(literal_value(&v.value)?),
        AExpr::UnaryOp { op, expr } => match op {
            ast::UnaryOperator::Not => Expr::negate(to_ir(expr)?),
            ast::UnaryOperator::Minus => match to_ir(expr)? {
                Expr::Literal(Value::Integer(i)) => Expr::Literal(Value::Integer(-i)),
                Expr::Literal(Value::Real(r)) => Expr::Literal(Value::Real(-r)),
                x => Expr::Unary(crate::ir::UnaryOp::Neg, Box::new(x)),
            },
            ast::UnaryOperator::Plus => to_ir(expr)?,
            other => {
                return Err(Error::unsupported(format!(
                    "operator {other} in a stored expression"
                )))
            }
        },
        AExpr::BinaryOp { left, op, right } => {
            let o = match op {
                B::Eq => BinaryOp::Eq,
                B::NotEq => BinaryOp::Ne,
                B::Lt => BinaryOp::Lt,
                B::LtEq => BinaryOp::Le,
                B::Gt => BinaryOp::Gt,
                B::GtEq => BinaryOp::Ge,
                B::And => BinaryOp::And,
                B::Or => BinaryOp::Or,
                B::Plus => BinaryOp::Add,
                B::Minus => BinaryOp::Sub,
                B::Multiply => BinaryOp::Mul,
                B::Divide => BinaryOp::Div,
                B::Modulo => BinaryOp::Rem,
                B::StringConcat => BinaryOp::Concat,
                other => {
                    return Err(Error::unsupported(format!(
                        "operator {other} in a stored expression"
                    )))
                }
            };
            if matches!(
                o,
                BinaryOp::Eq
                    | BinaryOp::Ne
                    | BinaryOp::Lt
                    | BinaryOp::Le
                    | BinaryOp::Gt
                    | BinaryOp::Ge
            ) && (is_cast(left) || is_cast(right))
            {
                // SQLite gives a CAST the affinity of its type for comparisons; stored
                // expressions compare without affinities, so the answer could differ.
                return Err(Error::unsupported(
                    "CAST as an operand of a comparison in a stored expression",
                ));
            }
            Expr::bin(o, to_ir(left)?, to_ir(right)?)
        }
        AExpr::IsNull(x) => Expr::IsNull {
            expr: Box::new(to_ir(x)?),
            negated: false,
        },
        AExpr::IsNotNull(x) => Expr::IsNull {
            expr: Box::new(to_ir(x)?),
            negated: true,
        },
        AExpr::In {
            expr,
            target: ast::InTarget::List(list),
            negated,
            global: false,
        } if !is_cast(expr) && !list.iter().any(is_cast) => Expr::InList {
            expr: Box::new(to_ir(expr)?),
            list: list.iter().map(to_ir).collect::<Result<_>>()?,
            negated: *negated,
        },
        AExpr::Between {
            expr,
            negated,
            low,
            high,
        } if !is_cast(expr) && !is_cast(low) && !is_cast(high) => Expr::Between {
            expr: Box::new(to_ir(expr)?),
            low: Box::new(to_ir(low)?),
            high: Box::new(to_ir(high)?),
            negated: *negated,
        },
        AExpr::Like {
            negated,
            any: false,
            expr,
            pattern,
            escape_char,
        } => {
            let escape = match escape_char.as_deref() {
                None => None,
                Some(AExpr::Value(v)) => match &v.value {
                    ast::Value::SingleQuotedString(s) if s.chars().count() == 1 => s.chars().next(),
                    _ => return Err(Error::unsupported("LIKE ESCAPE in a stored expression")),
                },
                Some(_) => return Err(Error::unsupported("LIKE ESCAPE in a stored expression")),
            };
            Expr::Like {
                expr: Box::new(to_ir(expr)?),
                pattern: Box::new(to_ir(pattern)?),
                escape,
                negated: *negated,
            }
        }
        AExpr::Function(f) => {
            let name = f.name.to_string().to_ascii_lowercase();
            let args = match &f.args {
                ast::FunctionArguments::None => Vec::new(),
                ast::FunctionArguments::List(l)
                    if l.duplicate_treatment.is_none() && l.clauses.is_empty() =>
                {
                    l.args
                        .iter()
                        .map(|a| match a {
                            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(x)) => to_ir(x),
                            other => Err(Error::unsupported(format!(
                                "argument {other} in a stored expression"
                            ))),
                        })
                        .collect::<Result<_>>()?
                }
                _ => return Err(Error::unsupported(format!("{e} in a stored expression"))),
            };
            if name.starts_with('$') || !crate::ir::expr::is_stored_function(&name) {
                return Err(Error::unsupported(format!(
                    "function {name}() in a stored expression"
                )));
            }
            Expr::Function { name, args }
        }
        // SUBSTR / TRIM have syntax of their own in sqlparser; as calls they are ordinary.
        AExpr::Substring {
            expr,
            substring_from,
            substring_for,
            ..
        } => {
            let mut args = vec![to_ir(expr)?];
            for a in [substring_from, substring_for].into_iter().flatten() {
                args.push(to_ir(a)?);
            }
            if args.len() < 2 {
                return Err(syntax("wrong number of arguments to function substr()"));
            }
            Expr::Function {
                name: "substr".into(),
                args,
            }
        }
        AExpr::Trim {
            trim_where: None,
            trim_what: None,
            expr,
            trim_characters,
        } => {
            let mut args = vec![to_ir(expr)?];
            for c in trim_characters.iter().flatten() {
                args.push(to_ir(c)?);
            }
            Expr::Function {
                name: "trim".into(),
                args,
            }
        }
        AExpr::Cast {
            kind: ast::CastKind::Cast,
            expr,
            data_type,
            format: None,
        } => {
            let name = match DataType::from_declared(&data_type.to_string()) {
                DataType::Integer => crate::ir::expr::CAST_INTEGER_FN,
                DataType::Real => crate::ir::expr::CAST_REAL_FN,
                DataType::Text => crate::ir::expr::CAST_TEXT_FN,
                DataType::Blob => crate::ir::expr::CAST_BLOB_FN,
                DataType::Numeric | DataType::Any => crate::ir::expr::CAST_NUMERIC_FN,
            };
            Expr::Function {
                name: name.into(),
                args: vec![to_ir(expr)?],
            }
        }
        AExpr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            let mut args = Vec::with_capacity(conditions.len() * 2 + 2);
            if let Some(o) = operand {
                args.push(to_ir(o)?);
            }
            for w in conditions {
                args.push(to_ir(&w.condition)?);
                args.push(to_ir(&w.result)?);
            }
            args.push(match else_result {
                Some(e) => to_ir(e)?,
                None => Expr::Literal(Value::Null),
            });
            let name = if operand.is_some() {
                crate::ir::expr::CASE_OF_FN
            } else {
                crate::ir::expr::CASE_FN
            };
            Expr::Function {
                name: name.into(),
                args,
            }
        }
        other => {
            return Err(Error::unsupported(format!(
                "{other} in a stored expression"
            )))
        }
    })
}

/// Converts a generated column's expression, refusing first what SQLite refuses in one
/// (with its messages): subqueries, parameters, qualified names, aggregate and window calls
/// and non-deterministic functions. What SQLite accepts but stored expressions cannot
/// evaluate is then refused by [`to_ir`] with 0A000.
pub fn generated_to_ir(e: &AExpr) -> Result<Expr> {
    refuse_in_generated(e)?;
    to_ir(e)
}

/// Functions SQLite refuses in generated columns because their value is not a function of
/// the row.
const NON_DETERMINISTIC: &[&str] = &[
    "random",
    "randomblob",
    "changes",
    "total_changes",
    "last_insert_rowid",
    "sqlite_offset",
];

fn refuse_in_generated(e: &AExpr) -> Result<()> {
    let prohibited = |what: &str| syntax(format!("{what} prohibited in generated columns"));
    match e {
        AExpr::Subquery(_)
        | AExpr::Exists { .. }
        | AExpr::In {
            target: ast::InTarget::Subquery(_) | ast::InTarget::Table { .. },
            ..
        } => Err(prohibited("subqueries")),
        AExpr::Value(v) if matches!(v.value, ast::Value::Placeholder(_)) => {
            Err(prohibited("parameters"))
        }
        AExpr::CompoundIdentifier(_) => Err(prohibited("the \".\" operator")),
        AExpr::Nested(x) | AExpr::IsNull(x) | AExpr::IsNotNull(x) => refuse_in_generated(x),
        AExpr::UnaryOp { expr, .. } | AExpr::Cast { expr, .. } | AExpr::Collate { expr, .. } => {
            refuse_in_generated(expr)
        }
        AExpr::BinaryOp { left, right, .. } => {
            refuse_in_generated(left)?;
            refuse_in_generated(right)
        }
        AExpr::Substring {
            expr,
            substring_from,
            substring_for,
            ..
        } => {
            refuse_in_generated(expr)?;
            [substring_from, substring_for]
                .into_iter()
                .flatten()
                .try_for_each(|x| refuse_in_generated(x))
        }
        AExpr::Trim {
            expr,
            trim_characters,
            ..
        } => {
            refuse_in_generated(expr)?;
            trim_characters
                .iter()
                .flatten()
                .try_for_each(refuse_in_generated)
        }
        AExpr::Like { expr, pattern, .. } | AExpr::ILike { expr, pattern, .. } => {
            refuse_in_generated(expr)?;
            refuse_in_generated(pattern)
        }
        AExpr::Between {
            expr, low, high, ..
        } => {
            refuse_in_generated(expr)?;
            refuse_in_generated(low)?;
            refuse_in_generated(high)
        }
        AExpr::In {
            expr,
            target: ast::InTarget::List(list),
            ..
        } => {
            refuse_in_generated(expr)?;
            list.iter().try_for_each(refuse_in_generated)
        }
        AExpr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            if let Some(o) = operand {
                refuse_in_generated(o)?;
            }
            for w in conditions {
                refuse_in_generated(&w.condition)?;
                refuse_in_generated(&w.result)?;
            }
            else_result.as_deref().map_or(Ok(()), refuse_in_generated)
        }
        AExpr::Function(f) => {
            let name = f.name.to_string().to_ascii_lowercase();
            let args: Vec<&AExpr> = match &f.args {
                ast::FunctionArguments::List(l) => l
                    .args
                    .iter()
                    .filter_map(|a| match a {
                        ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(x)) => Some(x),
                        _ => None,
                    })
                    .collect(),
                ast::FunctionArguments::Subquery(_) => return Err(prohibited("subqueries")),
                ast::FunctionArguments::None => Vec::new(),
            };
            let star = matches!(&f.args, ast::FunctionArguments::List(l)
                if l.args.iter().any(|a| matches!(a, ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard))));
            if f.over.is_some() {
                return Err(syntax(format!("misuse of window function {name}()")));
            }
            if super::compile::agg_func(&name, args.len() + star as usize, star).is_some()
                && !(matches!(name.as_str(), "min" | "max") && args.len() > 1)
            {
                return Err(syntax(format!("misuse of aggregate function {name}()")));
            }
            if NON_DETERMINISTIC.contains(&name.as_str()) {
                return Err(prohibited("non-deterministic functions"));
            }
            args.into_iter().try_for_each(refuse_in_generated)
        }
        _ => Ok(()),
    }
}

/// Whether `e` is a CAST, possibly parenthesized.
fn is_cast(e: &AExpr) -> bool {
    match e {
        AExpr::Nested(x) => is_cast(x),
        AExpr::Cast { .. } => true,
        _ => false,
    }
}

fn literal_value(v: &ast::Value) -> Result<Value> {
    Ok(match v {
        ast::Value::Number(n, _) => super::compile::parse_number_literal(n)?,
        ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => {
            Value::Text(s.clone())
        }
        ast::Value::HexStringLiteral(h) => Value::Blob(super::compile::decode_hex(h)?),
        ast::Value::Boolean(b) => Value::Integer(*b as i64),
        ast::Value::Null => Value::Null,
        ast::Value::Placeholder(p) => {
            return Err(Error::new(
                SqlState::SyntaxError,
                format!("parameters are not allowed in DDL ({p})"),
            ))
        }
        other => return Err(Error::unsupported(format!("literal {other}"))),
    })
}

fn default_value(e: &AExpr) -> Result<DefaultValue> {
    let special = |n: &str| -> Option<DefaultValue> {
        match n.to_ascii_uppercase().as_str() {
            "CURRENT_TIMESTAMP" => Some(DefaultValue::CurrentTimestamp),
            "CURRENT_DATE" => Some(DefaultValue::CurrentDate),
            "CURRENT_TIME" => Some(DefaultValue::CurrentTime),
            _ => None,
        }
    };
    match e {
        AExpr::Identifier(i) if i.quote_style.is_none() => {
            if let Some(d) = special(&i.value) {
                return Ok(d);
            }
            // SQLite accepts a bare word as a string default (DEFAULT abc).
            Ok(DefaultValue::Literal(Value::Text(i.value.clone())))
        }
        AExpr::Identifier(i) => Ok(DefaultValue::Literal(Value::Text(i.value.clone()))),
        AExpr::Function(f) if matches!(f.args, ast::FunctionArguments::None) => {
            special(&f.name.to_string()).ok_or_else(|| Error::unsupported(format!("DEFAULT {e}")))
        }
        AExpr::Nested(x) => default_value(x),
        _ => match to_ir(e)? {
            Expr::Literal(v) => Ok(DefaultValue::Literal(v)),
            x => {
                if x.references_named() {
                    return Err(syntax(format!(
                        "default value of column is not constant: {e}"
                    )));
                }
                // Constant expressions fold now (SQLite evaluates them per insert; they are
                // constant, so the value is the same).
                match x.eval(&[]) {
                    Ok(v) => Ok(DefaultValue::Literal(v)),
                    Err(_) => Ok(DefaultValue::Expr(x)),
                }
            }
        },
    }
}

trait NamedRefs {
    fn references_named(&self) -> bool;
}

impl NamedRefs for Expr {
    fn references_named(&self) -> bool {
        let mut hit = false;
        self.visit(&mut |e| hit |= matches!(e, Expr::Named(_)));
        hit
    }
}

/// Builds a field (and its column-level constraints into `spec`) from a column definition.
fn column_field(
    spec: &mut EntitySpec,
    col: &ast::ColumnDef,
    decl: &str,
    li: &LineIndex,
) -> Result<FieldDef> {
    let decl = normalize_decl(decl);
    let mut f = FieldDef::new(&col.name.value, DataType::from_declared(&decl)).declared(&decl);
    if decl.is_empty() {
        f.ty = DataType::Blob;
    }
    let mut collated = false;
    for o in &col.options {
        match &o.option {
            ColumnOption::Null => {}
            ColumnOption::NotNull => f.nullable = false,
            ColumnOption::Default(x) => f.default = Some(default_value(x)?),
            ColumnOption::PrimaryKey(pk) => {
                if !spec.primary_key.is_empty() {
                    return Err(syntax(format!(
                        "table \"{}\" has more than one primary key",
                        spec.name
                    )));
                }
                if pk.characteristics.is_some() {
                    return Err(Error::unsupported("PRIMARY KEY constraint characteristics"));
                }
                spec.primary_key = vec![col.name.value.clone()];
            }
            // SQLite names the index of a UNIQUE constraint sqlite_autoindex_T_N even when the
            // constraint has a name (kept only in the CREATE text); reflection (SQLAlchemy's
            // get_unique_constraints) matches constraints to indexes by that prefix.
            ColumnOption::Unique(_) => spec.uniques.push((None, vec![col.name.value.clone()])),
            ColumnOption::ForeignKey(fk) => {
                let s = fk_spec(fk, vec![col.name.value.clone()])?;
                spec.foreign_keys.push(s);
            }
            ColumnOption::Check(c) => {
                let text = li.slice(c.expr.span()).map(str::to_string);
                spec.checks.push((
                    o.name
                        .as_ref()
                        .map(|n| n.value.clone())
                        .or_else(|| c.name.as_ref().map(|n| n.value.clone())),
                    to_ir(&c.expr)?,
                    text,
                ));
            }
            ColumnOption::Generated {
                generated_as: ast::GeneratedAs::Always | ast::GeneratedAs::ExpStored,
                sequence_options: None,
                generation_expr: Some(x),
                generation_expr_mode,
                ..
            } => {
                if f.generated.is_some() {
                    return Err(syntax(format!(
                        "error in generated column \"{}\"",
                        col.name.value
                    )));
                }
                f.generated = Some(Generated {
                    expr: generated_to_ir(x)?,
                    stored: matches!(
                        generation_expr_mode,
                        Some(ast::GeneratedExpressionMode::Stored)
                    ),
                });
            }
            // Kept in the CREATE text only (see declared_collations).
            ColumnOption::Collation(c) => {
                let coll = super::compile::collation_of(c)?;
                if coll != Collation::Binary {
                    collated = true;
                    if let Some(func) = crate::ir::expr::collation_fold_fn(coll.name()) {
                        spec.collations
                            .push((col.name.value.clone(), func.to_string()));
                    }
                }
            }
            ColumnOption::DialectSpecific(toks) => {
                let words: Vec<String> = toks
                    .iter()
                    .map(|t| t.to_string().to_ascii_uppercase())
                    .collect();
                if words == ["AUTOINCREMENT"] {
                    spec.autoincrement = true;
                } else {
                    return Err(Error::unsupported(format!(
                        "column option {}",
                        words.join(" ")
                    )));
                }
            }
            other => return Err(Error::unsupported(format!("column option {other}"))),
        }
    }
    if collated {
        refuse_collated_constraints(col, &col.options)?;
    }
    if f.generated.is_some() && f.default.is_some() {
        // SQLite's message depends on the order of the two clauses.
        let default_first = col
            .options
            .iter()
            .position(|o| matches!(o.option, ColumnOption::Default(_)))
            < col
                .options
                .iter()
                .position(|o| matches!(o.option, ColumnOption::Generated { .. }));
        return Err(syntax(if default_first {
            format!("error in generated column \"{}\"", col.name.value)
        } else {
            "cannot use DEFAULT on a generated column".to_string()
        }));
    }
    Ok(f)
}

/// CHECK expressions are evaluated outside the SQL compiler, without a declared NOCASE/RTRIM
/// collation. (UNIQUE / PRIMARY KEY fold their index keys, and foreign keys compare under the
/// parent key's collation, see `catalog::builder::fold_collated_keys`.)
fn refuse_collated_constraints(col: &ast::ColumnDef, opts: &[ast::ColumnOptionDef]) -> Result<()> {
    for o in opts {
        let what = match &o.option {
            ColumnOption::Check(_) => "CHECK",
            _ => continue,
        };
        return Err(Error::unsupported(format!(
            "{what} on column {} declared with COLLATE NOCASE/RTRIM",
            col.name.value
        )));
    }
    Ok(())
}

/// Each field's declared collation (None: BINARY), read from the table's CREATE text: the
/// text is what SQLite keeps and what ALTER TABLE rewrites, so no catalog field is needed.
pub fn declared_collations(e: &crate::catalog::EntityDef) -> Vec<Option<Collation>> {
    let none = || vec![None; e.fields.len()];
    let Some(sql) = e.sql.as_deref() else {
        return none();
    };
    // Most tables declare no collation: skip parsing their text.
    let b = sql.as_bytes();
    let mentions_collate = (0..b.len().saturating_sub(6))
        .any(|i| b[i] | 0x20 == b'c' && b[i..i + 7].eq_ignore_ascii_case(b"collate"));
    if !mentions_collate {
        return none();
    }
    let Ok(ast::Statement::CreateTable(ct)) = super::parse::parse_one(sql) else {
        return none();
    };
    e.fields
        .iter()
        .map(|f| {
            let col = ct
                .columns
                .iter()
                .find(|c| c.name.value.eq_ignore_ascii_case(&f.name))?;
            col.options.iter().find_map(|o| match &o.option {
                ColumnOption::Collation(c) => match super::compile::collation_of(c) {
                    Ok(Collation::Binary) | Err(_) => None,
                    Ok(k) => Some(k),
                },
                _ => None,
            })
        })
        .collect()
}

/// Whether `text` mentions a column name (as a word; over-matching only refuses more).
fn mentions(text: &str, name: &str) -> bool {
    let t = text.to_ascii_lowercase();
    let n = name.to_ascii_lowercase();
    t.match_indices(&n).any(|(i, _)| {
        let before = t[..i].chars().next_back();
        let after = t[i + n.len()..].chars().next();
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !word(before) && !word(after)
    })
}

pub fn create_table(
    tx: &mut Transaction,
    ct: &ast::CreateTable,
    sql: &str,
    temp_names: &TempNames,
) -> Result<()> {
    if ct.query.is_some() {
        return Err(Error::unsupported("CREATE TABLE ... AS SELECT"));
    }
    if ct.or_replace || ct.like.is_some() || ct.clone.is_some() {
        return Err(Error::unsupported("CREATE TABLE form"));
    }
    let (qual, name) = temp::split(&ct.name)?;
    if qual == Qualifier::Main && ct.temporary {
        return Err(syntax(format!(
            "temporary table name must be unqualified: {}",
            ct.name
        )));
    }
    let is_temp = ct.temporary || qual == Qualifier::Temp;
    if name.to_ascii_lowercase().starts_with("sqlite_") {
        return Err(Error::new(
            SqlState::InsufficientPrivilege,
            format!("object name reserved for internal use: {name}"),
        ));
    }
    let mut strict = false;
    for o in &ct.sqlite_table_options.options {
        match o {
            ast::SqliteTableOption::Strict => strict = true,
            ast::SqliteTableOption::WithoutRowid => {
                return Err(Error::unsupported("WITHOUT ROWID tables"))
            }
        }
    }
    let li = LineIndex::new(sql);
    let scanned = scan_columns(sql)?;
    let mut spec = EntitySpec {
        name: name.clone(),
        strict,
        ..Default::default()
    };
    for col in &ct.columns {
        let decl = scanned
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(&col.name.value))
            .map(|c| c.decl.clone())
            .unwrap_or_else(|| col.data_type.to_string());
        let decl = if matches!(col.data_type, ast::DataType::Unspecified) {
            String::new()
        } else {
            decl
        };
        let f = column_field(&mut spec, col, &decl, &li)?;
        spec.fields.push(f);
    }
    for c in &ct.constraints {
        match c {
            TableConstraint::PrimaryKey(pk) => {
                if !spec.primary_key.is_empty() {
                    return Err(syntax(format!(
                        "table \"{name}\" has more than one primary key"
                    )));
                }
                spec.primary_key = index_column_names(&pk.columns)?;
            }
            TableConstraint::Unique(u) => {
                // Unnamed index, as for a column UNIQUE above.
                spec.uniques.push((None, index_column_names(&u.columns)?));
            }
            TableConstraint::ForeignKey(fk) => {
                let cols = fk.columns.iter().map(|c| c.value.clone()).collect();
                spec.foreign_keys.push(fk_spec(fk, cols)?);
            }
            TableConstraint::Check(ck) => {
                let text = li.slice(ck.expr.span()).map(str::to_string);
                spec.checks.push((
                    ck.name.as_ref().map(|n| n.value.clone()),
                    to_ir(&ck.expr)?,
                    text,
                ));
            }
            other => return Err(Error::unsupported(format!("table constraint {other}"))),
        }
    }
    let collated: Vec<&str> = ct
        .columns
        .iter()
        .filter(|c| {
            c.options.iter().any(|o| {
                matches!(&o.option, ColumnOption::Collation(k)
                    if !k.to_string().trim_matches('"').eq_ignore_ascii_case("binary"))
            })
        })
        .map(|c| c.name.value.as_str())
        .collect();
    for c in &ct.constraints {
        let (what, text) = match c {
            TableConstraint::Check(_) => ("CHECK", c.to_string()),
            _ => continue,
        };
        if let Some(n) = collated.iter().find(|n| mentions(&text, n)) {
            return Err(Error::unsupported(format!(
                "{what} on column {n} declared with COLLATE NOCASE/RTRIM"
            )));
        }
    }
    if strict {
        for f in &spec.fields {
            let d = f.decl_type.to_ascii_uppercase();
            if !["INT", "INTEGER", "REAL", "TEXT", "BLOB", "ANY"].contains(&d.as_str()) {
                return Err(syntax(format!(
                    "unknown datatype for {}.{}: \"{}\"",
                    name, f.name, f.decl_type
                )));
            }
        }
    }
    let off = name_offset(&li, &ct.name).ok_or_else(|| Error::internal("table name location"))?;
    spec.sql = Some(normalized_create(sql, "CREATE TABLE", off));
    if is_temp {
        if !spec.foreign_keys.is_empty() {
            return Err(Error::unsupported("foreign keys on temporary tables"));
        }
        spec.name = temp_names.stored(&name);
        if tx.schema().entity_pos(&spec.name).is_some() {
            if ct.if_not_exists {
                return Ok(());
            }
            return Err(Error::new(
                SqlState::DuplicateObject,
                format!("table {name} already exists"),
            ));
        }
        return tx.create_entity(&spec);
    }
    if ct.if_not_exists {
        tx.create_entity_if_not_exists(&spec).map(|_| ())
    } else {
        if tx.schema().entity_pos(&name).is_some() {
            return Err(Error::new(
                SqlState::DuplicateObject,
                format!("table {name} already exists"),
            ));
        }
        if crate::catalog::builder::index_name_taken(&tx.schema().bundle, &name) {
            return Err(Error::new(
                SqlState::DuplicateObject,
                format!("there is already an index named {name}"),
            ));
        }
        tx.create_entity(&spec)
    }
}

pub fn create_index(
    tx: &mut Transaction,
    ci: &ast::CreateIndex,
    sql: &str,
    temp_names: &TempNames,
) -> Result<()> {
    if ci.using.is_some() || ci.concurrently || !ci.include.is_empty() || !ci.with.is_empty() {
        return Err(Error::unsupported("CREATE INDEX options"));
    }
    let Some(iname) = &ci.name else {
        return Err(syntax("CREATE INDEX needs a name"));
    };
    let name = table_name(iname)?;
    let table = temp_names.resolve(tx.schema(), &ci.table_name)?;
    let cols = index_key_columns(&ci.columns)?;
    let predicate = ci.predicate.as_ref().map(to_ir).transpose()?;
    let exists = tx
        .schema()
        .entities()
        .iter()
        .any(|e| e.index_by_name(&name).is_some());
    if exists {
        if ci.if_not_exists {
            return Ok(());
        }
        return Err(Error::new(
            SqlState::DuplicateObject,
            format!("index {name} already exists"),
        ));
    }
    if tx.schema().view(&table).is_some() && tx.schema().entity_pos(&table).is_none() {
        return Err(syntax(format!("views may not be indexed: {table}")));
    }
    if tx.schema().view(&name).is_some() || tx.schema().entity_pos(&name).is_some() {
        return Err(Error::new(
            SqlState::DuplicateObject,
            format!("there is already a table named {name}"),
        ));
    }
    let target = tx.schema().entity(&table)?;
    let colls = declared_collations(target);
    // Expressions and partial-index conditions are evaluated outside the SQL compiler, without
    // a column's declared collation: refused when they read such a column.
    let expr_keys: Vec<String> = ci
        .columns
        .iter()
        .zip(&cols)
        .filter(|(_, k)| matches!(k, IndexKeyCol::Expr(_)))
        .map(|(c, _)| c.to_string())
        .collect();
    let pred = ci
        .predicate
        .as_ref()
        .map(|p| p.to_string())
        .unwrap_or_default();
    for (f, coll) in target.fields.iter().zip(&colls) {
        let Some(coll) = coll else { continue };
        if mentions(&expr_keys.join(","), &f.name) || mentions(&pred, &f.name) {
            return Err(Error::unsupported(format!(
                "index expression or WHERE reading column {} declared COLLATE {}",
                f.name,
                coll.name()
            )));
        }
    }
    // A UNIQUE index treats values equal under each key column's collation (explicit, else the
    // column's declared one) as duplicates: its key folds them.
    let mut folds = Vec::with_capacity(cols.len());
    for c in &cols {
        folds.push(match c {
            IndexKeyCol::Column(n, explicit) => {
                let declared = target
                    .field_index(n)
                    .and_then(|f| colls.get(f as usize).copied().flatten())
                    .map(|k| k.name().to_string());
                explicit
                    .clone()
                    .or(declared)
                    .and_then(|k| crate::ir::expr::collation_fold_fn(&k))
            }
            IndexKeyCol::Expr(_) => None,
        });
    }
    let folded = ci.unique && folds.iter().any(Option::is_some);
    let li = LineIndex::new(sql);
    let off = name_offset(&li, iname).ok_or_else(|| Error::internal("index name location"))?;
    let kw = if ci.unique {
        "CREATE UNIQUE INDEX"
    } else {
        "CREATE INDEX"
    };
    let keyed =
        folded || predicate.is_some() || cols.iter().any(|c| matches!(c, IndexKeyCol::Expr(_)));
    let mut spec = if keyed {
        let mut spec = IndexSpec::new(&name, &[], ci.unique);
        spec.key_exprs = cols
            .into_iter()
            .zip(folds)
            .map(|(c, fold)| match (c, fold) {
                (IndexKeyCol::Column(n, _), Some(func)) if folded => Expr::Function {
                    name: func.to_string(),
                    args: vec![Expr::Named(n)],
                },
                (IndexKeyCol::Column(n, _), _) => Expr::Named(n),
                (IndexKeyCol::Expr(x), _) => x,
            })
            .collect();
        spec.predicate = predicate;
        spec
    } else {
        let names: Vec<&str> = cols
            .iter()
            .filter_map(|c| match c {
                IndexKeyCol::Column(n, _) => Some(n.as_str()),
                IndexKeyCol::Expr(_) => None,
            })
            .collect();
        IndexSpec::new(&name, &names, ci.unique)
    };
    spec.sql = Some(normalized_create(sql, kw, off));
    tx.create_index(&table, &spec)
}

/// DROP TABLE / DROP INDEX / DROP VIEW.
pub fn drop(
    tx: &mut Transaction,
    object_type: &ObjectType,
    if_exists: bool,
    names: &[ast::ObjectName],
    temp_names: &TempNames,
) -> Result<()> {
    for n in names {
        let name = match object_type {
            ObjectType::Table => temp_names.resolve(tx.schema(), n)?,
            ObjectType::View => {
                let (q, v) = temp::split(n)?;
                let stored = temp_names.stored(&v);
                let temp_view = tx.schema().view(&stored).is_some();
                if q == Qualifier::Temp || (q == Qualifier::None && temp_view) {
                    stored
                } else {
                    v
                }
            }
            _ => table_name(n)?,
        };
        match object_type {
            ObjectType::Table => {
                if tx.schema().view(&name).is_some() {
                    return Err(Error::new(
                        SqlState::UndefinedTable,
                        format!("use DROP VIEW to delete view {name}"),
                    ));
                }
                if if_exists {
                    tx.drop_entity_if_exists(&name)?;
                } else {
                    tx.drop_entity(&name)?;
                }
            }
            ObjectType::Index => {
                let found = tx
                    .schema()
                    .entities()
                    .iter()
                    .find_map(|e| e.index_by_name(&name).map(|ix| ix.origin));
                match found {
                    None if if_exists => {}
                    None => return Err(Error::new(SqlState::UndefinedTable, format!("no such index: {name}"))),
                    Some(crate::catalog::IndexOrigin::Explicit) => tx.drop_index(&name)?,
                    Some(_) => {
                        return Err(Error::new(
                            SqlState::InsufficientPrivilege,
                            format!("index associated with UNIQUE or PRIMARY KEY constraint cannot be dropped: {name}"),
                        ))
                    }
                }
            }
            ObjectType::View => {
                if tx.schema().view(&name).is_none() && tx.schema().entity_pos(&name).is_some() {
                    return Err(Error::new(
                        SqlState::UndefinedTable,
                        format!("use DROP TABLE to delete table {name}"),
                    ));
                }
                tx.drop_view(&name, if_exists)?;
            }
            other => return Err(Error::unsupported(format!("DROP {other}"))),
        }
    }
    Ok(())
}

/// Rewrites identifiers `old` to `new` in a CREATE text (RENAME TABLE / RENAME COLUMN).
/// Whether `name` can be written without quotes (no keyword, identifier characters only).
fn is_bare_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return false;
    }
    let dialect = SQLiteDialect {};
    matches!(
        Tokenizer::new(&dialect, name).tokenize().as_deref(),
        Ok([Token::Word(w)]) if w.keyword == sqlparser::keywords::Keyword::NoKeyword
    )
}

/// The tokens of `sql` without whitespace, with the index that maps their positions to byte
/// offsets; `None` when it does not tokenize.
fn significant_tokens(
    sql: &str,
) -> Option<(Vec<sqlparser::tokenizer::TokenWithSpan>, LineIndex<'_>)> {
    let toks = Tokenizer::new(&SQLiteDialect {}, sql)
        .tokenize_with_location()
        .ok()?
        .into_iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    Some((toks, LineIndex::new(sql)))
}

/// Rewrites the table an index's CREATE text is ON (RENAME TO), quoted as SQLite does.
fn rename_index_table(sql: &str, old: &str, new: &str) -> String {
    let Some((toks, li)) = significant_tokens(sql) else {
        return sql.to_string();
    };
    for w in toks.windows(2) {
        if let (Token::Word(a), Token::Word(b)) = (&w[0].token, &w[1].token) {
            if a.keyword == sqlparser::keywords::Keyword::ON && b.value.eq_ignore_ascii_case(old) {
                if let (Some(s), Some(e)) = (li.offset(w[1].span.start), li.offset(w[1].span.end)) {
                    return format!("{}\"{}\"{}", &sql[..s], new.replace('"', "\"\""), &sql[e..]);
                }
            }
        }
    }
    sql.to_string()
}

/// Rewrites the CREATE texts of `entity`'s indexes.
fn rewrite_index_sql(tx: &mut Transaction, entity: &str, f: impl Fn(&str) -> String) -> Result<()> {
    let txn = tx.engine_txn();
    let mut bundle = txn.schema().bundle.clone();
    let pos = txn
        .schema()
        .entity_pos(entity)
        .ok_or_else(|| Error::unknown_entity(entity))?;
    let mut changed = false;
    for ix in &mut bundle.entities[pos].indexes {
        if let Some(s) = &ix.sql {
            let n = f(s);
            if n != *s {
                ix.sql = Some(n);
                changed = true;
            }
        }
    }
    if changed {
        txn.set_schema(bundle);
    }
    Ok(())
}

fn rename_in_text(sql: &str, old: &str, new: &str) -> String {
    let dialect = SQLiteDialect {};
    let Ok(toks) = Tokenizer::new(&dialect, sql).tokenize_with_location() else {
        return sql.to_string();
    };
    let li = LineIndex::new(sql);
    let mut out = String::with_capacity(sql.len());
    let mut last = 0;
    for t in toks {
        if let Token::Word(w) = &t.token {
            if w.value.eq_ignore_ascii_case(old)
                && (w.quote_style.is_some() || w.keyword == sqlparser::keywords::Keyword::NoKeyword)
            {
                if let (Some(a), Some(b)) = (li.offset(t.span.start), li.offset(t.span.end)) {
                    out.push_str(&sql[last..a]);
                    // As SQLite: a bare name stays bare when the new one can be.
                    if w.quote_style.is_none() && is_bare_identifier(new) {
                        out.push_str(new);
                    } else {
                        out.push('"');
                        out.push_str(&new.replace('"', "\"\""));
                        out.push('"');
                    }
                    last = b;
                }
            }
        }
    }
    out.push_str(&sql[last..]);
    out
}

pub fn alter_table(
    tx: &mut Transaction,
    at: &ast::AlterTable,
    sql: &str,
    temp_names: &TempNames,
) -> Result<()> {
    let table = temp_names.resolve(tx.schema(), &at.name)?;
    let temp_table = temp_names.shown(&table).is_some();
    if at.if_exists && tx.schema().entity_pos(&table).is_none() {
        return Ok(());
    }
    let li = LineIndex::new(sql);
    for op in &at.operations {
        let entity = tx.schema().entity(&table)?.clone();
        match op {
            AlterTableOperation::RenameTable { table_name: t } => {
                let shown_new = match t {
                    ast::RenameTableNameKind::To(n) | ast::RenameTableNameKind::As(n) => {
                        table_name(n)?
                    }
                };
                // A temporary table stays in the session's namespace.
                let new = if temp_table {
                    temp_names.stored(&shown_new)
                } else {
                    shown_new.clone()
                };
                if tx.schema().entity_pos(&new).is_some() && !new.eq_ignore_ascii_case(&entity.name)
                {
                    return Err(Error::new(
                        SqlState::DuplicateObject,
                        format!("there is already another table or index with this name: {new}"),
                    ));
                }
                tx.rename_entity(&entity.name, &new)?;
                if let Some(s) = &entity.sql {
                    set_sql(tx, &new, rename_first_name(s, &shown_new))?;
                }
                let old_shown = temp_names.shown(&entity.name).unwrap_or(&entity.name);
                rewrite_index_sql(tx, &new, |s| rename_index_table(s, old_shown, &shown_new))?;
                if temp_table {
                    continue;
                }
                // References to the old name in other tables' CREATE text follow (SQLite 3.26+).
                let others: Vec<(String, String)> = tx
                    .schema()
                    .entities()
                    .iter()
                    .filter(|e| !e.name.eq_ignore_ascii_case(&new))
                    .filter_map(|e| e.sql.clone().map(|s| (e.name.clone(), s)))
                    .filter(|(_, s)| {
                        s.to_ascii_lowercase()
                            .contains(&entity.name.to_ascii_lowercase())
                    })
                    .collect();
                for (n, s) in others {
                    let rewritten = rename_references(&s, &entity.name, &new);
                    if rewritten != s {
                        set_sql(tx, &n, rewritten)?;
                    }
                }
            }
            AlterTableOperation::RenameColumn {
                old_column_name,
                new_column_name,
            } => {
                let fi = entity.field_index_or_err(&old_column_name.value)? as usize;
                // The declared collation lives in the CREATE text: a rename the text rewrite
                // misses (a column named like a keyword) would silently drop it.
                if let (Some(Some(coll)), Some(s)) =
                    (declared_collations(&entity).get(fi), &entity.sql)
                {
                    let renamed = rename_in_text(s, &old_column_name.value, &new_column_name.value);
                    let after = crate::catalog::EntityDef {
                        sql: Some(renamed),
                        fields: entity
                            .fields
                            .iter()
                            .enumerate()
                            .map(|(i, f)| {
                                let mut f = f.clone();
                                if i == fi {
                                    f.name = new_column_name.value.clone();
                                }
                                f
                            })
                            .collect(),
                        ..entity.clone()
                    };
                    if declared_collations(&after).get(fi) != Some(&Some(*coll)) {
                        return Err(Error::unsupported(format!(
                            "RENAME COLUMN of {} declared COLLATE {}",
                            old_column_name.value,
                            coll.name()
                        )));
                    }
                }
                tx.rename_field(&entity.name, &old_column_name.value, &new_column_name.value)?;
                if let Some(s) = &entity.sql {
                    set_sql(
                        tx,
                        &entity.name,
                        rename_in_text(s, &old_column_name.value, &new_column_name.value),
                    )?;
                }
                rewrite_index_sql(tx, &entity.name, |s| {
                    rename_in_text(s, &old_column_name.value, &new_column_name.value)
                })?;
            }
            AlterTableOperation::AddColumn {
                if_not_exists,
                column_def,
                column_position,
                ..
            } => {
                if column_position.is_some() {
                    return Err(Error::unsupported("ADD COLUMN position"));
                }
                if entity.field_index(&column_def.name.value).is_some() {
                    if *if_not_exists {
                        continue;
                    }
                    return Err(Error::new(
                        SqlState::DuplicateObject,
                        format!("duplicate column name: {}", column_def.name.value),
                    ));
                }
                // The column definition's span covers only its name, so take the text from
                // there to the end of the statement (SQLite's ALTER TABLE has one operation):
                // the type and constraints as written, for table_info and sqlite_master.
                let col_text = li
                    .offset(column_def.span().start)
                    .and_then(|a| li.text().get(a..))
                    .map(|t| t.trim_end().trim_end_matches(';').trim_end().to_string())
                    .filter(|t| !t.is_empty())
                    .unwrap_or_else(|| column_def.to_string());
                let decl = scan_columns(&format!("x ({col_text})"))?
                    .into_iter()
                    .next()
                    .map(|c| c.decl)
                    .unwrap_or_default();
                let mut tmp = EntitySpec {
                    name: entity.name.clone(),
                    ..Default::default()
                };
                let f = column_field(&mut tmp, column_def, &decl, &li)?;
                if !tmp.primary_key.is_empty() {
                    return Err(syntax("Cannot add a PRIMARY KEY column"));
                }
                if !tmp.uniques.is_empty() {
                    return Err(syntax("Cannot add a UNIQUE column"));
                }
                if !f.nullable
                    && matches!(f.default, None | Some(DefaultValue::Literal(Value::Null)))
                {
                    return Err(syntax(
                        "Cannot add a NOT NULL column with default value NULL",
                    ));
                }
                if matches!(
                    f.default,
                    Some(
                        DefaultValue::CurrentTimestamp
                            | DefaultValue::CurrentDate
                            | DefaultValue::CurrentTime
                    )
                ) {
                    return Err(syntax("Cannot add a column with non-constant default"));
                }
                let fname = f.name.clone();
                tx.add_field(&entity.name, f)?;
                for (i, ck) in tmp.checks.iter().enumerate() {
                    let name = ck
                        .0
                        .clone()
                        .unwrap_or_else(|| format!("check_{}_{}_{}", entity.name, fname, i + 1));
                    tx.add_check(&entity.name, &name, ck.1.clone())?;
                }
                for fk in &tmp.foreign_keys {
                    tx.add_foreign_key(&entity.name, fk)?;
                }
                if let Some(s) = &entity.sql {
                    let cols = scan_columns(s)?;
                    if let Some(last) = cols.last() {
                        let mut t = s.clone();
                        t.insert_str(last.end, &format!(", {col_text}"));
                        set_sql(tx, &entity.name, t)?;
                    }
                }
            }
            AlterTableOperation::DropColumn {
                column_names,
                if_exists,
                ..
            } => {
                for c in column_names {
                    if entity.field_index(&c.value).is_none() {
                        if *if_exists {
                            continue;
                        }
                        return Err(Error::new(
                            SqlState::UndefinedColumn,
                            format!("no such column: \"{}\"", c.value),
                        ));
                    }
                    let pos = entity.field_index(&c.value).unwrap_or(0);
                    if entity.primary_key.contains(&pos) {
                        return Err(syntax(format!(
                            "cannot drop PRIMARY KEY column: \"{}\"",
                            c.value
                        )));
                    }
                    if entity.indexes.iter().any(|ix| {
                        ix.origin == crate::catalog::IndexOrigin::Unique && ix.fields.contains(&pos)
                    }) {
                        return Err(syntax(format!(
                            "cannot drop UNIQUE column: \"{}\"",
                            c.value
                        )));
                    }
                    tx.drop_field(&entity.name, &c.value)?;
                    if let Some(s) = &entity.sql {
                        set_sql(tx, &entity.name, remove_column_text(s, &c.value)?)?;
                    }
                }
            }
            AlterTableOperation::AddConstraint { constraint, .. } => match constraint {
                TableConstraint::ForeignKey(fk) => {
                    let cols = fk.columns.iter().map(|c| c.value.clone()).collect();
                    tx.add_foreign_key(&entity.name, &fk_spec(fk, cols)?)?;
                }
                other => return Err(Error::unsupported(format!("ALTER TABLE ADD {other}"))),
            },
            other => return Err(Error::unsupported(format!("ALTER TABLE {other}"))),
        }
    }
    Ok(())
}

/// Replaces the table name right after `CREATE TABLE`.
fn rename_first_name(sql: &str, new: &str) -> String {
    let prefix = "CREATE TABLE ";
    let Some(rest) = sql.strip_prefix(prefix) else {
        return sql.to_string();
    };
    let dialect = SQLiteDialect {};
    let Ok(toks) = Tokenizer::new(&dialect, rest).tokenize_with_location() else {
        return sql.to_string();
    };
    let li = LineIndex::new(rest);
    match toks.first() {
        Some(t) if matches!(t.token, Token::Word(_)) => match li.offset(t.span.end) {
            Some(end) => format!("{prefix}\"{}\"{}", new.replace('"', "\"\""), &rest[end..]),
            None => sql.to_string(),
        },
        _ => sql.to_string(),
    }
}

/// Rewrites `REFERENCES old` to the new table name.
fn rename_references(sql: &str, old: &str, new: &str) -> String {
    let Some((toks, li)) = significant_tokens(sql) else {
        return sql.to_string();
    };
    let mut out = String::new();
    let mut last = 0;
    for w in toks.windows(2) {
        if let (Token::Word(a), Token::Word(b)) = (&w[0].token, &w[1].token) {
            if a.value.eq_ignore_ascii_case("references") && b.value.eq_ignore_ascii_case(old) {
                if let (Some(s), Some(e)) = (li.offset(w[1].span.start), li.offset(w[1].span.end)) {
                    out.push_str(&sql[last..s]);
                    out.push('"');
                    out.push_str(&new.replace('"', "\"\""));
                    out.push('"');
                    last = e;
                }
            }
        }
    }
    out.push_str(&sql[last..]);
    out
}

fn remove_column_text(sql: &str, col: &str) -> Result<String> {
    let cols = scan_columns(sql)?;
    let Some(i) = cols.iter().position(|c| c.name.eq_ignore_ascii_case(col)) else {
        return Ok(sql.to_string());
    };
    // The definition starts after the previous one's end (its comma) or after `(`.
    let start = if i == 0 {
        sql.find('(').map_or(0, |p| p + 1)
    } else {
        cols[i - 1].end
    };
    let end = cols[i].end;
    let mut t = String::new();
    if i == 0 {
        // drop "col ...," including the following comma
        let after = &sql[end..];
        let after = after.trim_start().strip_prefix(',').unwrap_or(after);
        t.push_str(&sql[..start]);
        t.push_str(after.trim_start());
        return Ok(t);
    }
    t.push_str(&sql[..start]);
    t.push_str(&sql[end..]);
    Ok(t)
}

fn set_sql(tx: &mut Transaction, entity: &str, sql: String) -> Result<()> {
    let txn = tx.engine_txn();
    let mut bundle = txn.schema().bundle.clone();
    let pos = txn
        .schema()
        .entity_pos(entity)
        .ok_or_else(|| Error::unknown_entity(entity))?;
    bundle.entities[pos].sql = Some(sql);
    txn.set_schema(bundle);
    Ok(())
}

/// Whether a statement changes the schema.
pub fn is_ddl(s: &Statement) -> bool {
    matches!(
        s,
        Statement::CreateTable(_)
            | Statement::CreateIndex(_)
            | Statement::Drop { .. }
            | Statement::AlterTable(_)
            | Statement::CreateView(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_declared_types() {
        let cols = scan_columns(
            "CREATE TABLE t (id integer primary key, a varchar(10) default 'x', b, c DOUBLE PRECISION NOT NULL, UNIQUE(a))",
        )
        .unwrap();
        let decls: Vec<&str> = cols.iter().map(|c| c.decl.as_str()).collect();
        assert_eq!(
            decls,
            vec!["integer", "varchar(10)", "", "DOUBLE PRECISION"]
        );
    }

    #[test]
    fn renames_identifiers() {
        assert_eq!(
            rename_in_text("CREATE TABLE t (a INT, b INT CHECK (a > b))", "a", "z"),
            "CREATE TABLE t (z INT, b INT CHECK (z > b))"
        );
        assert_eq!(
            rename_in_text("CREATE TABLE t (\"a\" INT, a2 INT)", "a", "select"),
            "CREATE TABLE t (\"select\" INT, a2 INT)"
        );
    }
}
