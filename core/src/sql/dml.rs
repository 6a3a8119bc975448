//! INSERT / UPDATE / DELETE with RETURNING, OR IGNORE / OR REPLACE and upserts (ON CONFLICT DO
//! NOTHING / DO UPDATE), counting changes and the last insert row id the way SQLite does.

use sqlparser::ast::{
    self as ast, AssignmentTarget, ConflictTarget, FromTable, OnConflictAction, OnInsert,
    SelectItem, SqliteOnConflict, TableObject,
};

use super::compile::{ColInfo, Compiler, Frame, SExpr};
use super::eval::{eval, is_true, Ctx, Env};
use super::query::{self, compile_query, joined_rows, run_query, JoinKind, Source, SourceKind};
use crate::api::Row;
use crate::catalog::{DefaultValue, EntityDef};
use crate::error::{Error, Result, SqlState};
use crate::value::{DataType, Value};

/// What a write statement produced.
#[derive(Debug, Default)]
pub struct WriteOutcome {
    pub columns: Vec<String>,
    pub decls: Vec<Option<String>>,
    pub rows: Vec<Vec<Value>>,
    pub changes: i64,
    /// Rows changed by foreign key actions (counted by `total_changes()` only).
    pub cascaded: i64,
    pub last_insert_rowid: Option<i64>,
}

fn syntax(msg: impl Into<String>) -> Error {
    Error::new(SqlState::SyntaxError, msg)
}

/// A frame holding one table's columns (fields, then the hidden row id).
pub fn table_frame(e: &EntityDef, shown: &str) -> Frame {
    let mut f = Frame::default();
    push_table_cols(&mut f, e, shown);
    f
}

fn push_table_cols(f: &mut Frame, e: &EntityDef, shown: &str) {
    let colls = super::ddl::declared_collations(e);
    for (fi, fd) in e.fields.iter().enumerate() {
        let aff = match fd.ty {
            DataType::Any => DataType::Blob,
            t => t,
        };
        f.cols.push(ColInfo {
            table: Some(shown.to_string()),
            name: fd.name.clone(),
            affinity: Some(aff),
            decl: Some(fd.decl_type.clone()),
            hidden: false,
            alias_of: None,
            collation: colls.get(fi).copied().flatten(),
        });
    }
    f.cols.push(ColInfo {
        table: Some(shown.to_string()),
        name: "rowid".into(),
        affinity: Some(DataType::Integer),
        decl: Some("INTEGER".into()),
        hidden: true,
        alias_of: e.rowid_alias.map(|a| e.fields[a as usize].name.clone()),
        collation: None,
    });
}

/// SET assignments: (field name, value expression).
type Sets = Vec<(String, SExpr)>;

type Returning = (Vec<SExpr>, Vec<String>, Vec<Option<String>>);

/// Compiles RETURNING items in the current frame, whose first `table_cols` columns are the
/// written table's (`*` stands for those only, not for the columns of UPDATE ... FROM).
fn compile_returning(
    c: &mut Compiler,
    items: &[SelectItem],
    table_cols: usize,
) -> Result<Returning> {
    let mut exprs = Vec::new();
    let mut names = Vec::new();
    let mut decls = Vec::new();
    let texts = super::parse::returning_item_texts(c.text.text());
    for (k, it) in items.iter().enumerate() {
        match it {
            SelectItem::UnnamedExpr(e) => {
                let x = c.expr(e)?;
                names.push(match e {
                    ast::Expr::Identifier(i) => i.value.clone(),
                    ast::Expr::CompoundIdentifier(p) => {
                        p.last().map(|i| i.value.clone()).unwrap_or_default()
                    }
                    other => match texts.get(k) {
                        Some(t) if !t.is_empty() && texts.len() == items.len() => t.clone(),
                        _ => c.text_of(other),
                    },
                });
                decls.push(col_decl(c, &x));
                exprs.push(x);
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                let x = c.expr(expr)?;
                names.push(alias.value.clone());
                decls.push(col_decl(c, &x));
                exprs.push(x);
            }
            SelectItem::Wildcard(_) => {
                let cols = c.frame().cols.clone();
                for (i, col) in cols.iter().enumerate().take(table_cols) {
                    if col.hidden || col.table.as_deref() == Some("excluded") {
                        continue;
                    }
                    names.push(col.name.clone());
                    decls.push(col.decl.clone());
                    exprs.push(SExpr::Col { up: 0, idx: i });
                }
            }
            other => return Err(Error::unsupported(format!("RETURNING item {other}"))),
        }
    }
    Ok((exprs, names, decls))
}

fn col_decl(c: &Compiler, x: &SExpr) -> Option<String> {
    match x {
        SExpr::Col { up: 0, idx } => c.frames.last()?.cols.get(*idx)?.decl.clone(),
        _ => None,
    }
}

fn full_row(ctx: &mut Ctx, entity: &str, row_id: i64) -> Result<Option<Vec<Value>>> {
    Ok(ctx.tx.get(entity, row_id)?.map(|r| {
        let mut v = r.values;
        v.push(Value::Integer(r.row_id));
        v
    }))
}

fn eval_returning(
    ret: &Option<Returning>,
    ctx: &mut Ctx,
    row: &[Value],
    out: &mut Vec<Vec<Value>>,
) -> Result<()> {
    if let Some((exprs, _, _)) = ret {
        let env = Env::root(row);
        let mut vals = Vec::with_capacity(exprs.len());
        for x in exprs {
            vals.push(eval(x, ctx, &env)?);
        }
        out.push(vals);
    }
    Ok(())
}

#[derive(Debug)]
enum Conflict {
    Abort,
    Ignore,
    Replace,
    /// ON CONFLICT [(target)] DO NOTHING
    Nothing(Option<Vec<u32>>),
    /// ON CONFLICT (target) DO UPDATE SET ... [WHERE ...]
    Update {
        target: Option<Vec<u32>>,
        sets: Vec<(String, SExpr)>,
        filter: Option<SExpr>,
    },
}

/// The name a session knows a table by (a temporary table's without its tag).
fn written_name(c: &Compiler, stored: &str) -> String {
    c.temp
        .and_then(|t| t.shown(stored))
        .unwrap_or(stored)
        .to_string()
}

/// The table a write goes to; views are read-only (SQLite has INSTEAD OF triggers for
/// writable views, which ORMDB does not have).
fn write_target<'s>(
    schema: &'s crate::catalog::Schema,
    name: &str,
) -> Result<&'s crate::catalog::EntityDef> {
    if schema.view(name).is_some() && schema.entity_pos(name).is_none() {
        return Err(Error::new(
            SqlState::UndefinedTable,
            format!("cannot modify {name} because it is a view"),
        ));
    }
    schema.entity(name)
}

/// An INSERT / UPDATE / DELETE compiled against one schema: the resolved table, column
/// positions, conflict handling, compiled expressions (placeholders as parameter slots when
/// the compiler has `param_slots` set) and the RETURNING projection. Nothing in it depends on
/// a parameter value or on the data, so a session may run it again with other parameters for
/// as long as the schema it was compiled against is current.
#[derive(Debug)]
pub enum WritePlan {
    Insert(Box<InsertPlan>),
    Update(UpdatePlan),
    Delete(DeletePlan),
}

#[derive(Debug)]
pub struct InsertPlan {
    e: EntityDef,
    /// Field positions the source's columns go to, in order.
    targets: Vec<u32>,
    /// Whether the statement named its columns (changes the wording of a count mismatch).
    named_columns: bool,
    conflict: Conflict,
    returning: Option<Returning>,
    /// VALUES or SELECT; `None` for DEFAULT VALUES.
    source: Option<query::Query>,
    /// Whether a generated column reads the row id (an engine-assigned id is then peeked
    /// before the row is written).
    generated_reads_id: bool,
}

/// The rows an UPDATE / DELETE reads: the target table (source 0) joined with the FROM items.
#[derive(Debug)]
struct Target {
    sources: Vec<Source>,
    width: usize,
    filter: SExpr,
    /// UPDATE ... FROM: keep one joined row per target row (the first, as SQLite).
    dedup: bool,
}

#[derive(Debug)]
pub struct UpdatePlan {
    e: EntityDef,
    target: Target,
    sets: Sets,
    returning: Option<Returning>,
}

#[derive(Debug)]
pub struct DeletePlan {
    e: EntityDef,
    target: Target,
    returning: Option<Returning>,
}

/// Compiles a write statement into a plan; `None` for writes that are compiled and run in one
/// step (those to `sqlite_sequence`, which read and write the engine's counters directly).
pub fn compile_write(c: &mut Compiler, stmt: &ast::Statement) -> Result<Option<WritePlan>> {
    Ok(Some(match stmt {
        ast::Statement::Insert(ins) => {
            if super::sequence::insert_targets_sequence(ins) {
                return Ok(None);
            }
            WritePlan::Insert(Box::new(compile_insert(c, ins)?))
        }
        ast::Statement::Update(u) => {
            if matches!(&u.table.relation, ast::TableFactor::Table { name, .. } if super::sequence::is_sequence_table(name))
            {
                return Ok(None);
            }
            WritePlan::Update(compile_update(c, u)?)
        }
        ast::Statement::Delete(d) => {
            if delete_targets_sequence(d) {
                return Ok(None);
            }
            WritePlan::Delete(compile_delete(c, d)?)
        }
        _ => return Ok(None),
    }))
}

/// Runs a compiled write with the parameters in `ctx.params`.
pub fn run_write(p: &WritePlan, ctx: &mut Ctx) -> Result<WriteOutcome> {
    match p {
        WritePlan::Insert(p) => run_insert(p, ctx),
        WritePlan::Update(p) => run_update(p, ctx),
        WritePlan::Delete(p) => run_delete(p, ctx),
    }
}

pub fn insert(c: &mut Compiler, ins: &ast::Insert, ctx: &mut Ctx) -> Result<WriteOutcome> {
    if super::sequence::insert_targets_sequence(ins) {
        return super::sequence::insert(c, ins, ctx);
    }
    let p = compile_insert(c, ins)?;
    run_insert(&p, ctx)
}

fn compile_insert(c: &mut Compiler, ins: &ast::Insert) -> Result<InsertPlan> {
    if ins.ignore
        || ins.overwrite
        || ins.partitioned.is_some()
        || !ins.after_columns.is_empty()
        || !ins.assignments.is_empty()
        || ins.replace_into
        || ins.priority.is_some()
        || ins.insert_alias.is_some()
        || ins.has_table_keyword
        || ins.settings.is_some()
        || ins.format_clause.is_some()
        || ins.output.is_some()
    {
        return Err(Error::unsupported("INSERT form"));
    }
    let TableObject::TableName(tname) = &ins.table else {
        return Err(Error::unsupported("INSERT INTO a table function"));
    };
    let schema = c.schema;
    let name = super::temp::resolve(c.temp, schema, tname)?;
    let e = write_target(schema, &name)?.clone();
    let shown = ins
        .table_alias
        .as_ref()
        .map(|a| a.alias.value.clone())
        .unwrap_or_else(|| written_name(c, &e.name));
    // Target columns.
    // Without a column list the values go to the columns that are not generated, as SQLite.
    let targets: Vec<u32> = if ins.columns.is_empty() {
        (0..e.fields.len() as u32)
            .filter(|&i| e.fields[i as usize].generated.is_none())
            .collect()
    } else {
        let mut t = Vec::new();
        for col in &ins.columns {
            let n = col
                .0
                .last()
                .map(|p| match p {
                    ast::ObjectNamePart::Identifier(i) => i.value.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_default();
            let pos = match e.field_index(&n) {
                Some(p) => p,
                None if super::compile::is_rowid_name(&n) => match e.rowid_alias {
                    Some(a) => a,
                    None => return Err(Error::unsupported("INSERT into the hidden rowid column")),
                },
                None => {
                    return Err(Error::new(
                        SqlState::UndefinedColumn,
                        format!("table {} has no column named {n}", e.name),
                    ))
                }
            };
            refuse_generated(&e, pos, "INSERT into")?;
            if t.contains(&pos) {
                return Err(syntax(format!("column {n} given twice")));
            }
            t.push(pos);
        }
        t
    };
    // Conflict resolution.
    let mut conflict = match ins.or {
        None | Some(SqliteOnConflict::Abort) => Conflict::Abort,
        Some(SqliteOnConflict::Ignore) => Conflict::Ignore,
        Some(SqliteOnConflict::Replace) => Conflict::Replace,
        Some(other) => return Err(Error::unsupported(format!("INSERT OR {other}"))),
    };
    if let Some(on) = &ins.on {
        let OnInsert::OnConflict(oc) = on else {
            return Err(Error::unsupported("ON DUPLICATE KEY UPDATE"));
        };
        let target = match &oc.conflict_target {
            None => None,
            Some(ConflictTarget::Columns { columns, predicate }) => {
                if predicate.is_some() {
                    return Err(Error::unsupported("ON CONFLICT target with WHERE"));
                }
                let mut t: Vec<u32> = columns
                    .iter()
                    .map(|i| e.field_index_or_err(&i.value))
                    .collect::<Result<_>>()?;
                t.sort_unstable();
                let matches_pk = t.len() == 1 && e.rowid_alias == Some(t[0]);
                let matches_ix = e.indexes.iter().any(|ix| {
                    ix.unique
                        && ix.column_fields().is_some_and(|mut f| {
                            f.sort_unstable();
                            f == t
                        })
                });
                if !matches_pk && !matches_ix {
                    return Err(syntax(
                        "ON CONFLICT clause does not match any PRIMARY KEY or UNIQUE constraint",
                    ));
                }
                Some(t)
            }
            Some(ConflictTarget::OnConstraint(_)) => {
                return Err(Error::unsupported("ON CONFLICT ON CONSTRAINT"))
            }
        };
        conflict = match &oc.action {
            OnConflictAction::DoNothing => Conflict::Nothing(target),
            OnConflictAction::DoUpdate(du) => {
                if target.is_none() {
                    return Err(syntax("ON CONFLICT DO UPDATE needs a conflict target"));
                }
                let mut f = table_frame(&e, &shown);
                push_table_cols(&mut f, &e, "excluded");
                c.frames.push(f);
                let res = (|| -> Result<(Sets, Option<SExpr>)> {
                    let mut sets = Vec::new();
                    for a in &du.assignments {
                        for col in assignment_columns(a)? {
                            refuse_generated(&e, e.field_index_or_err(&col)?, "UPDATE")?;
                            sets.push((col, c.expr(&a.value)?));
                        }
                    }
                    let filter = match &du.selection {
                        Some(w) => Some(c.expr(w)?),
                        None => None,
                    };
                    Ok((sets, filter))
                })();
                c.frames.pop();
                let (sets, filter) = res?;
                Conflict::Update {
                    target,
                    sets,
                    filter,
                }
            }
        };
    }
    // RETURNING over the table's columns.
    let returning = match &ins.returning {
        Some(items) => {
            c.frames.push(table_frame(&e, &shown));
            let r = compile_returning(c, items, e.fields.len() + 1);
            c.frames.pop();
            Some(r?)
        }
        None => None,
    };
    let source = match &ins.source {
        None => None,
        Some(q) => {
            let qc = compile_query(c, q)?;
            // SQLite refuses a count mismatch when it prepares the statement (so `changes()`
            // keeps its value), not when a row arrives.
            if qc.columns.len() != targets.len() {
                return Err(count_mismatch(
                    &e,
                    ins.columns.is_empty(),
                    targets.len(),
                    qc.columns.len(),
                ));
            }
            Some(qc)
        }
    };
    let generated_reads_id = e
        .rowid_alias
        .is_some_and(|a| (0..e.fields.len()).any(|g| e.generated_depends_on(g, a)));
    Ok(InsertPlan {
        e,
        targets,
        named_columns: !ins.columns.is_empty(),
        conflict,
        returning,
        source,
        generated_reads_id,
    })
}

fn run_insert(p: &InsertPlan, ctx: &mut Ctx) -> Result<WriteOutcome> {
    let InsertPlan {
        e,
        targets,
        named_columns,
        conflict,
        returning,
        source,
        generated_reads_id,
    } = p;
    let rows: Vec<Vec<Option<Value>>> = match source {
        None => vec![vec![None; e.fields.len()]],
        Some(qc) => {
            let data = run_query(qc, ctx, None)?.rows;
            let mut out = Vec::with_capacity(data.len());
            for r in data {
                if r.len() != targets.len() {
                    return Err(count_mismatch(e, !named_columns, targets.len(), r.len()));
                }
                let mut row = vec![None; e.fields.len()];
                for (p, v) in targets.iter().zip(r) {
                    row[*p as usize] = Some(v);
                }
                out.push(row);
            }
            out
        }
    };
    let mut outcome = WriteOutcome::default();
    if let Some((_, names, decls)) = returning {
        outcome.columns = names.clone();
        outcome.decls = decls.clone();
    }
    for row in rows {
        insert_one(
            ctx,
            e,
            row,
            *generated_reads_id,
            conflict,
            returning,
            &mut outcome,
        )?;
    }
    Ok(outcome)
}

fn count_mismatch(e: &EntityDef, all_columns: bool, columns: usize, values: usize) -> Error {
    syntax(if all_columns {
        format!(
            "table {} has {columns} columns but {values} values were supplied",
            e.name
        )
    } else {
        format!("{values} values for {columns} columns")
    })
}

/// SQLite refuses a write naming a generated column when the statement is prepared.
fn refuse_generated(e: &EntityDef, pos: u32, what: &str) -> Result<()> {
    match e.fields.get(pos as usize) {
        Some(f) if f.generated.is_some() => Err(syntax(format!(
            "cannot {what} generated column \"{}\"",
            f.name
        ))),
        _ => Ok(()),
    }
}

fn assignment_columns(a: &ast::Assignment) -> Result<Vec<String>> {
    let one = |n: &ast::ObjectName| -> String {
        n.0.last()
            .map(|p| match p {
                ast::ObjectNamePart::Identifier(i) => i.value.clone(),
                other => other.to_string(),
            })
            .unwrap_or_default()
    };
    match &a.target {
        AssignmentTarget::ColumnName(n) => Ok(vec![one(n)]),
        AssignmentTarget::Tuple(_) => {
            Err(Error::unsupported("row-value assignment (a, b) = (...)"))
        }
    }
}

/// The values a row will have once written (defaults filled, affinity applied, NOT NULL and
/// CHECK verified), computed before the engine allocates a row id: SQLite consumes no row id
/// on a failed insert, so constraint failures are found here first.
fn prepared_values(e: &EntityDef, row: &[Option<Value>], next_id: i64) -> Result<Vec<Value>> {
    let mut values = Vec::with_capacity(row.len());
    let mut auto_id = false;
    for (i, v) in row.iter().enumerate() {
        values.push(match v {
            Some(v) => v.clone(),
            None if Some(i as u32) == e.rowid_alias => Value::Null,
            None => match &e.fields[i].default {
                Some(DefaultValue::Literal(_)) | None => {
                    crate::constraint::defaults::default_for(&e.fields[i])?
                }
                // Time defaults are taken by the engine at write time; any value stands in.
                Some(_) => Value::Text(String::new()),
            },
        });
    }
    if let Some(a) = e.rowid_alias {
        let a = a as usize;
        if !values[a].is_null() {
            values[a] = e.fields[a].ty.apply_affinity(values[a].clone());
            if !matches!(values[a], Value::Integer(_)) {
                return Err(Error::new(
                    SqlState::DatatypeMismatch,
                    format!(
                        "datatype mismatch: {}.{} is an INTEGER PRIMARY KEY",
                        e.name, e.fields[a].name
                    ),
                ));
            }
        } else {
            // stands in for the id the engine will allocate (generated columns may read it)
            values[a] = Value::Integer(next_id);
            auto_id = true;
        }
    }
    crate::constraint::prepare_row(e, &mut values, usize::MAX)?;
    if let (Some(a), true) = (e.rowid_alias, auto_id) {
        values[a as usize] = Value::Null;
    }
    Ok(values)
}

/// Immediate foreign keys of a new row, checked before the engine allocates its id.
fn check_parents(ctx: &mut Ctx, e: &EntityDef, vals: &[Value]) -> Result<()> {
    let txn = ctx.tx.engine_txn();
    if !txn.opts.foreign_keys {
        return Ok(());
    }
    let schema = txn.schema().clone();
    for fk in &e.foreign_keys {
        // Deferred keys are checked at commit; a self-reference may be satisfied by the row.
        if fk.deferred || fk.parent.eq_ignore_ascii_case(&e.name) {
            continue;
        }
        if schema.entity_pos(&fk.parent).is_none() {
            continue; // the engine reports the missing parent table
        }
        if !crate::constraint::parent_exists(txn, &schema, e, fk, vals)? {
            return Err(crate::constraint::fk_error(
                e,
                fk,
                "no parent row has that key",
            ));
        }
    }
    Ok(())
}

/// Row ids of existing rows that conflict with `vals` on the row id or a unique index
/// (restricted to `target` fields when given).
fn conflicting_rows(
    ctx: &mut Ctx,
    e: &EntityDef,
    vals: &[Value],
    target: Option<&[u32]>,
) -> Result<Vec<i64>> {
    let mut out = Vec::new();
    let target_is = |fields: &[u32]| -> bool {
        match target {
            None => true,
            Some(t) => {
                let mut f = fields.to_vec();
                f.sort_unstable();
                f == t
            }
        }
    };
    if let Some(a) = e.rowid_alias {
        if target_is(&[a]) {
            if let Value::Integer(id) = vals[a as usize] {
                if ctx.tx.get(&e.name, id)?.is_some() {
                    out.push(id);
                }
            }
        }
    }
    for ix in e.indexes.iter().filter(|ix| ix.unique) {
        if ix.is_keyed() {
            // Expression and partial indexes are never a conflict target (SQLite would need
            // the target's WHERE), but OR IGNORE / OR REPLACE / a bare DO NOTHING see them.
            // A collated UNIQUE / PRIMARY KEY is one when the target names its columns.
            if target.is_some() && !ix.column_fields().is_some_and(|f| target_is(&f)) {
                continue;
            }
            let Some(key) = ix.entry_values(e, vals)? else {
                continue;
            };
            if key.iter().any(Value::is_null) {
                continue;
            }
            for (id, r) in ctx.tx.engine_txn().index_lookup(e, ix, &key)? {
                if !r.is_soft_deleted() && !out.contains(&id) {
                    out.push(id);
                }
            }
            continue;
        }
        if !target_is(&ix.fields) {
            continue;
        }
        let key: Vec<Value> = ix
            .fields
            .iter()
            .map(|f| vals[*f as usize].clone())
            .collect();
        if key.iter().any(Value::is_null) {
            continue;
        }
        for r in ctx.tx.find_by_index(&e.name, &ix.name, &key)? {
            if !out.contains(&r.row_id) {
                out.push(r.row_id);
            }
        }
    }
    Ok(out)
}

/// The error SQLite reports for a uniqueness conflict of `vals`.
fn unique_error(ctx: &mut Ctx, e: &EntityDef, vals: &[Value]) -> Result<Error> {
    if let Some(a) = e.rowid_alias {
        if let Value::Integer(id) = vals[a as usize] {
            if ctx.tx.get(&e.name, id)?.is_some() {
                return Ok(Error::unique("PRIMARY KEY", &e.name, e.field_names(&[a])));
            }
        }
    }
    let id = e
        .rowid_alias
        .and_then(|a| vals[a as usize].as_i64())
        .unwrap_or(i64::MIN);
    match crate::constraint::check_unique(ctx.tx.engine_txn(), e, id, vals, None) {
        Err(err) => Ok(err),
        Ok(()) => Ok(Error::unique("UNIQUE", &e.name, "conflicting row")),
    }
}

fn insert_one(
    ctx: &mut Ctx,
    e: &EntityDef,
    row: Vec<Option<Value>>,
    generated_reads_id: bool,
    conflict: &Conflict,
    returning: &Option<Returning>,
    out: &mut WriteOutcome,
) -> Result<()> {
    // The id an engine-assigned row id will likely get, for generated columns that read it.
    let next_id = match e.rowid_alias {
        Some(a) if generated_reads_id && row[a as usize].as_ref().is_none_or(Value::is_null) => {
            let txn = ctx.tx.engine_txn();
            txn.core().clone().peek_row_id(e.id)?
        }
        _ => i64::MIN,
    };
    let vals = match prepared_values(e, &row, next_id) {
        Ok(v) => v,
        Err(err) => {
            let ignorable = matches!(
                err.state,
                SqlState::NotNullViolation | SqlState::CheckViolation
            );
            return if ignorable && matches!(conflict, Conflict::Ignore) {
                Ok(())
            } else {
                Err(err)
            };
        }
    };
    check_parents(ctx, e, &vals)?;
    let conflicts = conflicting_rows(ctx, e, &vals, None)?;
    if !conflicts.is_empty() {
        // SQLite's AUTOINCREMENT takes the next id before resolving the conflict, so a row
        // skipped or turned into an update still uses one up.
        let auto_id = e
            .rowid_alias
            .is_some_and(|a| row[a as usize].as_ref().is_none_or(Value::is_null));
        if e.autoincrement && auto_id && !matches!(conflict, Conflict::Abort | Conflict::Replace) {
            let txn = ctx.tx.engine_txn();
            let (id, _) = txn.alloc_row_id(e.id, true)?;
            txn.note_sequence(e.id, id);
        }
        match conflict {
            Conflict::Abort => return Err(unique_error(ctx, e, &vals)?),
            Conflict::Ignore => return Ok(()),
            Conflict::Nothing(target) => {
                if target.is_none()
                    || !conflicting_rows(ctx, e, &vals, target.as_deref())?.is_empty()
                {
                    return Ok(());
                }
                return Err(unique_error(ctx, e, &vals)?);
            }
            Conflict::Update {
                target,
                sets,
                filter,
            } => {
                let hits = conflicting_rows(ctx, e, &vals, target.as_deref())?;
                let Some(&id) = hits.first() else {
                    return Err(unique_error(ctx, e, &vals)?);
                };
                let Some(existing) = full_row(ctx, &e.name, id)? else {
                    return Ok(());
                };
                let mut combined = existing;
                combined.extend(vals.iter().cloned());
                combined.push(Value::Null);
                let env = Env::root(&combined);
                if let Some(f) = filter {
                    if !is_true(&eval(f, ctx, &env)?) {
                        return Ok(());
                    }
                }
                let mut changes = Vec::with_capacity(sets.len());
                for (col, x) in sets {
                    changes.push((col.clone(), eval(x, ctx, &env)?));
                }
                let refs: Vec<(&str, Value)> = changes
                    .iter()
                    .map(|(c, v)| (c.as_str(), v.clone()))
                    .collect();
                let w = ctx.tx.update(&e.name, id, &refs)?;
                ctx.invalidate();
                out.changes += 1;
                if let Some(w) = w {
                    if let Some(r) = full_row(ctx, &e.name, w.row_id)? {
                        eval_returning(returning, ctx, &r, &mut out.rows)?;
                    }
                }
                return Ok(());
            }
            Conflict::Replace => {
                let same_id = e
                    .rowid_alias
                    .and_then(|a| vals[a as usize].as_i64())
                    .filter(|id| conflicts == [*id]);
                let literal_defaults = row.iter().zip(&e.fields).all(|(v, f)| {
                    v.is_some()
                        || !matches!(
                            f.default,
                            Some(
                                DefaultValue::CurrentTimestamp
                                    | DefaultValue::CurrentDate
                                    | DefaultValue::CurrentTime
                                    | DefaultValue::Expr(_)
                            )
                        )
                });
                if let (Some(id), true) = (same_id, literal_defaults) {
                    // The row keeps its id: rewrite it in place, so references to it (checked
                    // per operation here, at statement end in SQLite) stay valid.
                    let changes: Vec<(&str, Value)> = e
                        .fields
                        .iter()
                        .zip(&vals)
                        .filter(|(f, _)| f.generated.is_none())
                        .map(|(f, v)| (f.name.as_str(), v.clone()))
                        .collect();
                    ctx.tx.update(&e.name, id, &changes)?;
                    ctx.invalidate();
                    out.changes += 1;
                    out.last_insert_rowid = Some(id);
                    if let Some(r) = full_row(ctx, &e.name, id)? {
                        eval_returning(returning, ctx, &r, &mut out.rows)?;
                    }
                    return Ok(());
                }
                for id in conflicts {
                    if let Some(d) = ctx.tx.delete(&e.name, id)? {
                        out.cascaded += d.cascaded as i64;
                    }
                }
                ctx.invalidate();
            }
        }
    }
    let w = ctx.tx.insert_positional(&e.name, row)?;
    ctx.invalidate();
    out.changes += 1;
    out.last_insert_rowid = Some(w.row_id);
    if returning.is_some() {
        if let Some(r) = full_row(ctx, &e.name, w.row_id)? {
            eval_returning(returning, ctx, &r, &mut out.rows)?;
        }
    }
    Ok(())
}

/// Compiles the rows an UPDATE/DELETE changes: the target table's columns (row id last), then
/// the columns of UPDATE ... FROM items; returns them with the frame naming those columns.
fn compile_target(
    c: &mut Compiler,
    e: &EntityDef,
    shown: &str,
    from: &[ast::TableWithJoins],
    selection: Option<&ast::Expr>,
) -> Result<(Target, Frame)> {
    c.frames.push(table_frame(e, shown));
    let target_width = e.fields.len() + 1;
    let compiled = (|| -> Result<(Vec<Source>, SExpr)> {
        let extra = query::compile_from(c, from)?;
        let w = match selection {
            Some(x) => c.expr(x)?,
            None => SExpr::Lit(Value::Integer(1)),
        };
        Ok((extra, w))
    })();
    let frame = c.frames.pop().unwrap_or_default();
    let (mut extra, w) = compiled?;
    let width = frame.cols.len();
    let mut preds = Vec::new();
    super::compile::conjuncts(&w, &mut preds);
    for src in &mut extra {
        if let SourceKind::Table { name } = &src.kind {
            if src.join == JoinKind::Inner {
                let mut p = preds.clone();
                if let Some(on) = &src.on {
                    super::compile::conjuncts(on, &mut p);
                }
                src.access = query::choose_access(c.schema.entity(name)?, src.offset, &p);
            }
        }
    }
    let mut sources = vec![Source {
        kind: SourceKind::Table {
            name: e.name.clone(),
        },
        offset: 0,
        width: target_width,
        join: JoinKind::Inner,
        on: None,
        access: query::choose_access(e, 0, &preds),
    }];
    sources.extend(extra);
    let target = Target {
        sources,
        width,
        filter: w,
        dedup: !from.is_empty(),
    };
    Ok((target, frame))
}

/// A target row of an UPDATE/DELETE: the joined row (the table's fields, its row id, then
/// the columns of UPDATE ... FROM items) and, when the statement read the table's row by its
/// row id, the row's version token: the engine then takes the fields as the row it read
/// (see `Transaction::update_known`) instead of reading it again.
type TargetRow = (Vec<Value>, Option<u64>);

/// The target rows of an UPDATE/DELETE, one per target row.
fn target_rows(t: &Target, target_width: usize, ctx: &mut Ctx) -> Result<Vec<TargetRow>> {
    if let ([src], false, true) = (t.sources.as_slice(), t.dedup, t.width == target_width) {
        if let (SourceKind::Table { name }, query::Access::RowId(keys), None) =
            (&src.kind, &src.access, &src.on)
        {
            // `WHERE id = ?` (or `id IN (...)`): the rows by id, as the join would read them
            // (keys evaluated over a row of NULLs, each row then filtered by WHERE), keeping
            // each row's version.
            let blank = vec![Value::Null; t.width];
            let mut found = Vec::new();
            query::rows_by_id(name, keys, ctx, &Env::root(&blank), |r| found.push(r))?;
            let mut out = Vec::with_capacity(found.len());
            for r in found {
                let mut row = r.values;
                row.push(Value::Integer(r.row_id));
                if is_true(&eval(&t.filter, ctx, &Env::root(&row))?) {
                    out.push((row, Some(r.version)));
                }
            }
            return Ok(out);
        }
    }
    let mut rows = joined_rows(&t.sources, t.width, Some(&t.filter), ctx, None)?;
    if t.dedup {
        let mut seen = std::collections::HashSet::new();
        rows.retain(|r| seen.insert(r[target_width - 1].as_i64()));
    }
    Ok(rows.into_iter().map(|r| (r, None)).collect())
}

/// The engine's row for a target row read by id: its fields (the joined row without the row
/// id) and version. Only for rows of the target table alone (no FROM columns).
fn known_row(mut row: Vec<Value>, row_id: i64, version: Option<u64>) -> Option<Row> {
    let version = version?;
    row.pop();
    Some(Row {
        row_id,
        version,
        soft_deleted: false,
        values: row,
    })
}

pub fn update(c: &mut Compiler, u: &ast::Update, ctx: &mut Ctx) -> Result<WriteOutcome> {
    if matches!(&u.table.relation, ast::TableFactor::Table { name, .. } if super::sequence::is_sequence_table(name))
    {
        update_form(u)?;
        return super::sequence::update(c, u, ctx);
    }
    let p = compile_update(c, u)?;
    run_update(&p, ctx)
}

/// Refuses the UPDATE forms ORMDB does not run; the FROM items otherwise.
fn update_form(u: &ast::Update) -> Result<&[ast::TableWithJoins]> {
    let from: &[ast::TableWithJoins] = match &u.from {
        None => &[],
        Some(ast::UpdateTableFromKind::AfterSet(f)) => f,
        Some(ast::UpdateTableFromKind::BeforeSet(_)) => {
            return Err(Error::unsupported(
                "UPDATE t FROM ... SET (FROM before SET)",
            ))
        }
    };
    if !u.order_by.is_empty() || u.limit.is_some() {
        return Err(Error::unsupported("UPDATE ... ORDER BY/LIMIT"));
    }
    if u.output.is_some() || u.settings.is_some() || !u.table.joins.is_empty() {
        return Err(Error::unsupported("UPDATE form"));
    }
    match u.or {
        None | Some(SqliteOnConflict::Abort) => {}
        Some(other) => return Err(Error::unsupported(format!("UPDATE OR {other}"))),
    }
    Ok(from)
}

fn compile_update(c: &mut Compiler, u: &ast::Update) -> Result<UpdatePlan> {
    let from = update_form(u)?;
    let schema = c.schema;
    let (name, alias) = match &u.table.relation {
        ast::TableFactor::Table { name, alias, .. } => (
            super::temp::resolve(c.temp, schema, name)?,
            alias.as_ref().map(|a| a.name.value.clone()),
        ),
        other => return Err(Error::unsupported(format!("UPDATE of {other}"))),
    };
    let e = write_target(schema, &name)?.clone();
    let shown = alias.unwrap_or_else(|| written_name(c, &e.name));
    let (target, frame) = compile_target(c, &e, &shown, from, u.selection.as_ref())?;
    c.frames.push(frame);
    let compiled = (|| -> Result<(Sets, Option<Returning>)> {
        let mut sets = Vec::new();
        for a in &u.assignments {
            for col in assignment_columns(a)? {
                let pos = match e.field_index(&col) {
                    Some(p) => p,
                    None if super::compile::is_rowid_name(&col) => match e.rowid_alias {
                        Some(p) => p,
                        None => return Err(Error::unsupported("UPDATE of the hidden rowid")),
                    },
                    None => {
                        return Err(Error::new(
                            SqlState::UndefinedColumn,
                            format!("no such column: {col}"),
                        ))
                    }
                };
                refuse_generated(&e, pos, "UPDATE")?;
                sets.push((e.fields[pos as usize].name.clone(), c.expr(&a.value)?));
            }
        }
        let ret = match &u.returning {
            Some(items) => Some(compile_returning(c, items, e.fields.len() + 1)?),
            None => None,
        };
        Ok((sets, ret))
    })();
    c.frames.pop();
    let (sets, returning) = compiled?;
    Ok(UpdatePlan {
        e,
        target,
        sets,
        returning,
    })
}

fn run_update(p: &UpdatePlan, ctx: &mut Ctx) -> Result<WriteOutcome> {
    let UpdatePlan {
        e,
        target,
        sets,
        returning,
    } = p;
    let rowid_pos = e.fields.len();
    let rows = target_rows(target, rowid_pos + 1, ctx)?;
    let mut out = WriteOutcome::default();
    if let Some((_, names, decls)) = returning {
        out.columns = names.clone();
        out.decls = decls.clone();
    }
    for (row, version) in rows {
        let Value::Integer(id) = row[rowid_pos] else {
            continue;
        };
        let env = Env::root(&row);
        let mut changes = Vec::with_capacity(sets.len());
        for (col, x) in sets {
            changes.push((col.as_str(), eval(x, ctx, &env)?));
        }
        let w = ctx
            .tx
            .update_known(&e.name, id, known_row(row, id, version), &changes)?;
        ctx.invalidate();
        if let Some(w) = w {
            out.changes += 1;
            if returning.is_some() {
                if let Some(r) = full_row(ctx, &e.name, w.row_id)? {
                    eval_returning(returning, ctx, &r, &mut out.rows)?;
                }
            }
        }
    }
    Ok(out)
}

/// The one table a DELETE names (the forms ORMDB does not run are refused).
fn delete_table(d: &ast::Delete) -> Result<&ast::TableWithJoins> {
    if !d.tables.is_empty()
        || d.using.is_some()
        || !d.order_by.is_empty()
        || d.limit.is_some()
        || d.output.is_some()
        || d.settings.is_some()
    {
        return Err(Error::unsupported("DELETE form"));
    }
    match &d.from {
        FromTable::WithFromKeyword(v) | FromTable::WithoutKeyword(v) => match v.as_slice() {
            [one] if one.joins.is_empty() => Ok(one),
            _ => Err(Error::unsupported("DELETE from several tables")),
        },
    }
}

fn delete_targets_sequence(d: &ast::Delete) -> bool {
    delete_table(d).is_ok_and(|twj| matches!(&twj.relation, ast::TableFactor::Table { name, .. } if super::sequence::is_sequence_table(name)))
}

pub fn delete(c: &mut Compiler, d: &ast::Delete, ctx: &mut Ctx) -> Result<WriteOutcome> {
    if delete_targets_sequence(d) {
        return super::sequence::delete(c, d, ctx);
    }
    let p = compile_delete(c, d)?;
    run_delete(&p, ctx)
}

fn compile_delete(c: &mut Compiler, d: &ast::Delete) -> Result<DeletePlan> {
    let twj = delete_table(d)?;
    let schema = c.schema;
    let (name, alias) = match &twj.relation {
        ast::TableFactor::Table { name, alias, .. } => (
            super::temp::resolve(c.temp, schema, name)?,
            alias.as_ref().map(|a| a.name.value.clone()),
        ),
        other => return Err(Error::unsupported(format!("DELETE from {other}"))),
    };
    let e = write_target(schema, &name)?.clone();
    let shown = alias.unwrap_or_else(|| written_name(c, &e.name));
    let (target, frame) = compile_target(c, &e, &shown, &[], d.selection.as_ref())?;
    let returning = match &d.returning {
        Some(items) => {
            c.frames.push(frame);
            let r = compile_returning(c, items, e.fields.len() + 1);
            c.frames.pop();
            Some(r?)
        }
        None => None,
    };
    Ok(DeletePlan {
        e,
        target,
        returning,
    })
}

fn run_delete(p: &DeletePlan, ctx: &mut Ctx) -> Result<WriteOutcome> {
    let DeletePlan {
        e,
        target,
        returning,
    } = p;
    let rowid_pos = e.fields.len();
    let rows = target_rows(target, rowid_pos + 1, ctx)?;
    let mut out = WriteOutcome::default();
    if let Some((_, names, decls)) = returning {
        out.columns = names.clone();
        out.decls = decls.clone();
    }
    // RETURNING shows each row as it was before the statement (the target rows are exactly
    // that: the table's fields and row id); rows a cascade from an earlier row removed are
    // not deleted by this statement and are not returned.
    let mut before: Vec<Vec<Value>> = Vec::new();
    let mut targets = Vec::with_capacity(rows.len());
    for (row, version) in rows {
        let Value::Integer(id) = row[rowid_pos] else {
            continue;
        };
        if returning.is_some() {
            before.push(row.clone());
        }
        targets.push((id, known_row(row, id, version)));
    }
    // One engine call for the statement, so foreign keys are checked at its end (as SQLite).
    let results = ctx.tx.delete_many_known(&e.name, targets)?;
    ctx.invalidate();
    for (i, d) in results.iter().enumerate() {
        if let Some(d) = d {
            out.changes += 1;
            out.cascaded += d.cascaded as i64;
            if let Some(r) = before.get(i) {
                eval_returning(returning, ctx, r, &mut out.rows)?;
            }
        }
    }
    Ok(out)
}
