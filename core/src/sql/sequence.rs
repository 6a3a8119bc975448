//! `sqlite_sequence`: one row (name, seq) per AUTOINCREMENT table that has had a row, read from
//! and written to the engine's AUTOINCREMENT marks. Writes are transactional and take effect on
//! the id allocator at commit, where SQLite's rule applies: the next id is
//! `max(seq, largest live row id) + 1` (see `DbCore::apply_sequence_resets` for how that stays
//! safe against concurrent inserters).

use sqlparser::ast::{self as ast, FromTable, ObjectName, ObjectNamePart, TableObject};

use super::compile::{ColInfo, Compiler, Frame, SExpr};
use super::dml::WriteOutcome;
use super::eval::{eval, is_true, Ctx, Env};
use super::query::{compile_query, run_query};
use crate::catalog::EntityDef;
use crate::error::{Error, Result, SqlState};
use crate::value::{DataType, Value};

pub const COLUMNS: [&str; 2] = ["name", "seq"];

/// Whether `name` (optionally `main.`-qualified) is `sqlite_sequence`.
pub fn is_sequence_table(name: &ObjectName) -> bool {
    let parts: Vec<&str> = name
        .0
        .iter()
        .filter_map(|p| match p {
            ObjectNamePart::Identifier(i) => Some(i.value.as_str()),
            ObjectNamePart::Function(_) => None,
        })
        .collect();
    match parts.as_slice() {
        [t] => t.eq_ignore_ascii_case("sqlite_sequence"),
        [s, t] => s.eq_ignore_ascii_case("main") && t.eq_ignore_ascii_case("sqlite_sequence"),
        _ => false,
    }
}

fn last_part(n: &ObjectName) -> String {
    match n.0.last() {
        Some(ObjectNamePart::Identifier(i)) => i.value.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// The columns of `sqlite_sequence` (declared without types: no affinity).
pub fn column_infos(shown: &str) -> Vec<ColInfo> {
    COLUMNS
        .iter()
        .map(|n| ColInfo {
            table: Some(shown.to_string()),
            name: n.to_string(),
            affinity: Some(DataType::Blob),
            decl: None,
            hidden: false,
            alias_of: None,
            collation: None,
        })
        .collect()
}

fn autoincrement_tables(ctx: &Ctx) -> Vec<EntityDef> {
    ctx.tx
        .schema()
        .entities()
        .iter()
        .filter(|e| e.autoincrement && !super::temp::is_temp_entity(&e.name))
        .cloned()
        .collect()
}

/// The rows as the statement's transaction sees them: (table id, [name, seq]).
fn current(ctx: &mut Ctx) -> Result<Vec<(u32, Vec<Value>)>> {
    let mut out = Vec::new();
    for e in autoincrement_tables(ctx) {
        if let Some(seq) = ctx.tx.engine_txn().sequence_value(e.id)? {
            out.push((e.id, vec![Value::Text(e.name.clone()), Value::Integer(seq)]));
        }
    }
    Ok(out)
}

pub fn rows(ctx: &mut Ctx) -> Result<Vec<Vec<Value>>> {
    Ok(current(ctx)?.into_iter().map(|(_, r)| r).collect())
}

/// ORMDB keeps one integer mark per table, so a seq SQLite would store as text, real or NULL
/// is refused rather than silently changed.
fn seq_value(v: Value) -> Result<i64> {
    match v {
        Value::Integer(i) => Ok(i),
        Value::Real(r) if r.fract() == 0.0 && r.abs() < 9.2e18 => Ok(r as i64),
        other => Err(Error::unsupported(format!(
            "a non-integer sqlite_sequence.seq ({})",
            other.type_name()
        ))),
    }
}

fn refuse_returning(returning: &Option<Vec<ast::SelectItem>>) -> Result<()> {
    if returning.is_some() {
        return Err(Error::unsupported("RETURNING on sqlite_sequence"));
    }
    Ok(())
}

/// Compiles `exprs` in a scope holding the two columns under `shown`.
fn compile_in_frame(
    c: &mut Compiler,
    shown: &str,
    exprs: &[Option<&ast::Expr>],
) -> Result<Vec<Option<SExpr>>> {
    c.frames.push(Frame {
        cols: column_infos(shown),
        ..Frame::default()
    });
    let r = exprs
        .iter()
        .map(|x| x.map(|x| c.expr(x)).transpose())
        .collect::<Result<Vec<_>>>();
    c.frames.pop();
    r
}

fn matching(ctx: &mut Ctx, filter: &Option<SExpr>) -> Result<Vec<(u32, Vec<Value>)>> {
    let mut out = Vec::new();
    for (id, row) in current(ctx)? {
        let keep = match filter {
            Some(w) => is_true(&eval(w, ctx, &Env::root(&row))?),
            None => true,
        };
        if keep {
            out.push((id, row));
        }
    }
    Ok(out)
}

pub fn update(c: &mut Compiler, u: &ast::Update, ctx: &mut Ctx) -> Result<WriteOutcome> {
    if u.from.is_some() || !u.order_by.is_empty() || u.limit.is_some() || u.or.is_some() {
        return Err(Error::unsupported(
            "UPDATE sqlite_sequence with FROM, OR, ORDER BY or LIMIT",
        ));
    }
    refuse_returning(&u.returning)?;
    let shown = match &u.table.relation {
        ast::TableFactor::Table { alias, .. } => alias
            .as_ref()
            .map_or("sqlite_sequence".to_string(), |a| a.name.value.clone()),
        _ => "sqlite_sequence".to_string(),
    };
    let mut targets = Vec::new();
    let mut exprs = vec![u.selection.as_ref()];
    for a in &u.assignments {
        let ast::AssignmentTarget::ColumnName(n) = &a.target else {
            return Err(Error::unsupported(
                "UPDATE sqlite_sequence SET (a, b) = ...",
            ));
        };
        let col = last_part(n);
        let col = col.as_str();
        match COLUMNS.iter().position(|k| k.eq_ignore_ascii_case(col)) {
            Some(p) => targets.push(p),
            None => {
                return Err(Error::new(
                    SqlState::UndefinedColumn,
                    format!("no such column: {col}"),
                ))
            }
        }
        exprs.push(Some(&a.value));
    }
    let mut compiled = compile_in_frame(c, &shown, &exprs)?.into_iter();
    let filter = compiled.next().flatten();
    let sets: Vec<(usize, SExpr)> = targets
        .into_iter()
        .zip(compiled.map(|x| x.unwrap_or(SExpr::Lit(Value::Null))))
        .collect();
    let mut out = WriteOutcome::default();
    for (id, row) in matching(ctx, &filter)? {
        let env = Env::root(&row);
        let mut new_seq = row[1].clone();
        for (col, x) in &sets {
            let v = eval(x, ctx, &env)?;
            if *col == 0 {
                if v != row[0] {
                    return Err(Error::unsupported(
                        "renaming a sqlite_sequence row (UPDATE ... SET name)",
                    ));
                }
            } else {
                new_seq = v;
            }
        }
        let seq = seq_value(new_seq)?;
        ctx.tx.engine_txn().set_sequence(id, Some(seq));
        out.changes += 1;
    }
    ctx.invalidate();
    Ok(out)
}

pub fn delete(c: &mut Compiler, d: &ast::Delete, ctx: &mut Ctx) -> Result<WriteOutcome> {
    if !d.order_by.is_empty() || d.limit.is_some() || d.using.is_some() {
        return Err(Error::unsupported(
            "DELETE FROM sqlite_sequence with USING, ORDER BY or LIMIT",
        ));
    }
    refuse_returning(&d.returning)?;
    let shown = match &d.from {
        FromTable::WithFromKeyword(v) | FromTable::WithoutKeyword(v) => match v.first() {
            Some(ast::TableWithJoins {
                relation: ast::TableFactor::Table { alias: Some(a), .. },
                ..
            }) => a.name.value.clone(),
            _ => "sqlite_sequence".to_string(),
        },
    };
    let filter = compile_in_frame(c, &shown, &[d.selection.as_ref()])?
        .pop()
        .flatten();
    let mut out = WriteOutcome::default();
    for (id, _) in matching(ctx, &filter)? {
        ctx.tx.engine_txn().set_sequence(id, None);
        out.changes += 1;
    }
    ctx.invalidate();
    Ok(out)
}

pub fn insert(c: &mut Compiler, ins: &ast::Insert, ctx: &mut Ctx) -> Result<WriteOutcome> {
    refuse_returning(&ins.returning)?;
    if ins.on.is_some() || ins.or.is_some() || ins.replace_into {
        return Err(Error::unsupported(
            "INSERT OR ... / ON CONFLICT into sqlite_sequence",
        ));
    }
    let positions: Vec<usize> = if ins.columns.is_empty() {
        vec![0, 1]
    } else {
        ins.columns
            .iter()
            .map(|col| {
                let n = last_part(col);
                COLUMNS
                    .iter()
                    .position(|k| k.eq_ignore_ascii_case(&n))
                    .ok_or_else(|| {
                        Error::new(
                            SqlState::UndefinedColumn,
                            format!("table sqlite_sequence has no column named {n}"),
                        )
                    })
            })
            .collect::<Result<_>>()?
    };
    let Some(source) = &ins.source else {
        return Err(Error::unsupported(
            "INSERT INTO sqlite_sequence DEFAULT VALUES",
        ));
    };
    let q = compile_query(c, source)?;
    if q.columns.len() != positions.len() {
        return Err(Error::new(
            SqlState::SyntaxError,
            format!("{} values for {} columns", q.columns.len(), positions.len()),
        ));
    }
    let source_rows = run_query(&q, ctx, None)?.rows;
    let tables = autoincrement_tables(ctx);
    let mut out = WriteOutcome::default();
    for r in source_rows {
        let mut row = [Value::Null, Value::Null];
        for (p, v) in positions.iter().zip(r) {
            row[*p] = v;
        }
        let name = match &row[0] {
            Value::Text(s) => s.clone(),
            other => other.to_string(),
        };
        // SQLite would keep a row for any name, even a second one for the same table; ORMDB
        // has one mark per AUTOINCREMENT table.
        let Some(e) = tables.iter().find(|e| e.name.eq_ignore_ascii_case(&name)) else {
            return Err(Error::unsupported(format!(
                "a sqlite_sequence row for {name}, which is not an AUTOINCREMENT table"
            )));
        };
        if ctx.tx.engine_txn().sequence_value(e.id)?.is_some() {
            return Err(Error::unsupported(format!(
                "a second sqlite_sequence row for {name} (UPDATE the existing one)"
            )));
        }
        let seq = seq_value(std::mem::replace(&mut row[1], Value::Null))?;
        ctx.tx.engine_txn().set_sequence(e.id, Some(seq));
        out.changes += 1;
    }
    ctx.invalidate();
    Ok(out)
}

/// The sqlite_sequence target of an INSERT, if it is one.
pub fn insert_targets_sequence(ins: &ast::Insert) -> bool {
    matches!(&ins.table, TableObject::TableName(n) if is_sequence_table(n))
}
