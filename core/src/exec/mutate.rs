//! Inserts, updates and deletes on a transaction, with every constraint enforced at write time:
//! field types, NOT NULL, CHECK, unique indexes, foreign keys on both sides (with CASCADE,
//! RESTRICT, SET NULL, SET DEFAULT and NO ACTION, immediate or deferred), soft delete and
//! optimistic version checks. Each call is atomic: on error nothing it did remains.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::catalog::{EntityDef, FkAction, Schema};
use crate::constraint::{self, defaults::default_for, fk_error};
use crate::error::{Error, Result, SqlState};
use crate::storage::keys;
use crate::storage::row_codec::StoredRow;
use crate::txn::transaction::{is_live, tombstone, with_soft_delete, DeferredCheck};
use crate::txn::Txn;
use crate::value::Value;

/// What a write returns: the row's identity and its new version token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteResult {
    pub row_id: i64,
    pub version: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteMode {
    /// Soft-delete entities mark the row; others remove it.
    Default,
    /// Remove the row even on a soft-delete entity.
    Hard,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteResult {
    pub row_id: i64,
    /// Version token of the deleted (or marked) row after the delete.
    pub version: u64,
    /// Rows deleted or changed by foreign key actions.
    pub cascaded: u64,
}

/// Limits applied to writes.
#[derive(Debug, Clone, Copy)]
pub struct WriteLimits {
    pub max_row_bytes: usize,
    /// Maximum nesting of cascaded key updates.
    pub max_cascade_depth: usize,
}

impl Default for WriteLimits {
    fn default() -> Self {
        WriteLimits {
            max_row_bytes: 64 << 20,
            max_cascade_depth: 1000,
        }
    }
}

#[derive(Default)]
struct OpCtx {
    /// Immediate NO ACTION checks to run when the whole operation is done.
    no_action: Vec<(usize, usize, Vec<Value>)>,
    cascaded: u64,
    depth: usize,
}

/// Runs `f` atomically inside the transaction: on error, its writes are undone.
pub fn atomically<T>(txn: &mut Txn, f: impl FnOnce(&mut Txn) -> Result<T>) -> Result<T> {
    let mark = txn.mark();
    match f(txn) {
        Ok(v) => {
            txn.release_mark(mark);
            Ok(v)
        }
        Err(e) => {
            txn.rollback_to_mark(mark);
            Err(e)
        }
    }
}

fn entity_pos(schema: &Schema, name: &str) -> Result<usize> {
    schema
        .entity_pos(name)
        .ok_or_else(|| Error::unknown_entity(name))
}

/// A generated column's value is computed from the row, never written (SQLite's message).
fn refuse_generated(e: &EntityDef, i: usize, what: &str) -> Result<()> {
    if e.fields[i].generated.is_some() {
        return Err(Error::new(
            SqlState::SyntaxError,
            format!("cannot {what} generated column \"{}\"", e.fields[i].name),
        ));
    }
    Ok(())
}

/// Inserts a row given by field name. Fields not given take their defaults; an identity field
/// (`INTEGER PRIMARY KEY`) not given is assigned.
pub fn insert(
    txn: &mut Txn,
    entity: &str,
    values: &[(&str, Value)],
    limits: &WriteLimits,
) -> Result<WriteResult> {
    let schema = txn.schema().clone();
    let pos = entity_pos(&schema, entity)?;
    let e = schema.entity_at(pos);
    let mut row: Vec<Option<Value>> = vec![None; e.fields.len()];
    for (name, v) in values {
        let i = e.field_index_or_err(name)? as usize;
        refuse_generated(e, i, "INSERT into")?;
        if row[i].is_some() {
            return Err(Error::invalid(format!(
                "field {}.{} given twice",
                e.name, e.fields[i].name
            )));
        }
        row[i] = Some(v.clone());
    }
    atomically(txn, |txn| insert_at(txn, &schema, pos, row, limits))
}

/// Inserts a row given positionally (`None` = not given: take the default).
pub fn insert_positional(
    txn: &mut Txn,
    entity: &str,
    row: Vec<Option<Value>>,
    limits: &WriteLimits,
) -> Result<WriteResult> {
    let schema = txn.schema().clone();
    let pos = entity_pos(&schema, entity)?;
    let e = schema.entity_at(pos);
    let n = e.fields.len();
    if row.len() != n {
        return Err(Error::invalid(format!(
            "table {entity} has {n} columns but {} values were supplied",
            row.len()
        )));
    }
    for (i, v) in row.iter().enumerate() {
        if v.is_some() {
            refuse_generated(e, i, "INSERT into")?;
        }
    }
    atomically(txn, |txn| insert_at(txn, &schema, pos, row, limits))
}

fn insert_at(
    txn: &mut Txn,
    schema: &Arc<Schema>,
    pos: usize,
    given: Vec<Option<Value>>,
    limits: &WriteLimits,
) -> Result<WriteResult> {
    let e = schema.entity_at(pos);
    let mut values = Vec::with_capacity(given.len());
    for (i, v) in given.into_iter().enumerate() {
        values.push(match v {
            Some(v) => v,
            None => {
                if Some(i as u32) == e.rowid_alias {
                    Value::Null
                } else {
                    default_for(&e.fields[i])?
                }
            }
        });
    }
    let explicit_id = e.rowid_alias.is_some_and(|a| !values[a as usize].is_null());
    // Whether the id may have a stored version (a tombstone, or a live row under a race): only
    // explicit ids and ids handed out again after an AUTOINCREMENT reset.
    let mut reused_id = false;
    let row_id = match e.rowid_alias {
        Some(a) if !values[a as usize].is_null() => {
            let v = e.fields[a as usize]
                .ty
                .apply_affinity(std::mem::replace(&mut values[a as usize], Value::Null));
            let Value::Integer(id) = v else {
                return Err(Error::new(
                    SqlState::DatatypeMismatch,
                    format!(
                        "datatype mismatch: {}.{} is an INTEGER PRIMARY KEY and got {}",
                        e.name,
                        e.fields[a as usize].name,
                        v.type_name()
                    ),
                ));
            };
            txn.core().note_row_id(e.id, id)?;
            values[a as usize] = Value::Integer(id);
            id
        }
        Some(a) => {
            let (id, fresh) = txn.alloc_row_id(e.id, e.autoincrement)?;
            reused_id = !fresh;
            values[a as usize] = Value::Integer(id);
            id
        }
        None => {
            let (id, fresh) = txn.alloc_row_id(e.id, e.autoincrement)?;
            reused_id = !fresh;
            id
        }
    };
    constraint::prepare_row(e, &mut values, limits.max_row_bytes)?;
    // A freshly allocated id is above every stored id: no version can exist to look up.
    let existing = if explicit_id || reused_id {
        txn.read_row(e.id, row_id)?
    } else {
        None
    };
    if reused_id && existing.as_ref().is_some_and(is_live) {
        // The snapshot still shows a row the reset's transaction had removed (or a concurrent
        // explicit insert took the id): retrying on a newer snapshot resolves it.
        return Err(Error::conflict(format!(
            "row id {row_id} of {} was reused after an AUTOINCREMENT reset",
            e.name
        )));
    }
    if existing.as_ref().is_some_and(is_live) {
        let pk = e
            .rowid_alias
            .map_or_else(|| format!("{}.rowid", e.name), |a| e.field_names(&[a]));
        return Err(Error::unique("PRIMARY KEY", &e.name, pk));
    }
    constraint::check_unique(txn, e, row_id, &values, None)?;
    let mut ctx = OpCtx::default();
    let version = existing.map_or(1, |r| r.version + 1);
    for ix in &e.indexes {
        if let Some(vals) = ix.entry_values(e, &values)? {
            txn.add_index_entry(keys::index_entry_key(ix.id, &vals, row_id));
        }
    }
    if e.autoincrement {
        txn.note_sequence(e.id, row_id);
    }
    // The child side of foreign keys is checked after the row is written, so that a row may
    // reference itself (`INSERT INTO t(id, parent_id) VALUES (7, 7)`, as SQLite allows). The
    // write is undone by the statement savepoint if the check fails.
    let fk_values = (!e.foreign_keys.is_empty()).then(|| values.clone());
    let row = StoredRow {
        flags: 0,
        version,
        values,
    };
    if explicit_id || reused_id {
        txn.write_row(e.id, row_id, row)?;
    } else {
        txn.write_new_row(e.id, row_id, row);
    }
    if let Some(v) = fk_values {
        check_child_fks(txn, schema, e, row_id, &v, None)?;
    }
    finish(txn, schema, &mut ctx)?;
    Ok(WriteResult { row_id, version })
}

/// Checks the child side of foreign keys whose fields changed (all when `changed` is None).
fn check_child_fks(
    txn: &mut Txn,
    schema: &Schema,
    e: &EntityDef,
    row_id: i64,
    values: &[Value],
    changed: Option<&[bool]>,
) -> Result<()> {
    if !txn.opts.foreign_keys {
        return Ok(());
    }
    for fk in &e.foreign_keys {
        if let Some(ch) = changed {
            if !fk.fields.iter().any(|f| ch[*f as usize]) {
                continue;
            }
        }
        if fk.deferred {
            txn.deferred.push(DeferredCheck::Child {
                entity_id: e.id,
                row_id,
                fk: fk.name.clone(),
            });
            continue;
        }
        if !constraint::parent_exists(txn, schema, e, fk, values)? {
            return Err(fk_error(e, fk, "no parent row has that key"));
        }
    }
    Ok(())
}

/// Updates fields of a row. Returns None when the row does not exist (or is soft-deleted).
/// With `expected_version`, fails with 40002 unless the row's version token matches.
pub fn update(
    txn: &mut Txn,
    entity: &str,
    row_id: i64,
    changes: &[(&str, Value)],
    expected_version: Option<u64>,
    limits: &WriteLimits,
) -> Result<Option<WriteResult>> {
    update_known(txn, entity, row_id, None, changes, expected_version, limits)
}

/// [`update`] of a row the caller read in this transaction (`known`, see
/// `Txn::row_for_write`): the row is not read again unless the transaction wrote it since.
pub fn update_known(
    txn: &mut Txn,
    entity: &str,
    row_id: i64,
    known: Option<StoredRow>,
    changes: &[(&str, Value)],
    expected_version: Option<u64>,
    limits: &WriteLimits,
) -> Result<Option<WriteResult>> {
    let schema = txn.schema().clone();
    let pos = entity_pos(&schema, entity)?;
    let e = schema.entity_at(pos);
    let mut idx = Vec::with_capacity(changes.len());
    for (name, _) in changes {
        let i = e.field_index_or_err(name)? as usize;
        refuse_generated(e, i, "UPDATE")?;
        idx.push(i);
    }
    atomically(txn, |txn| {
        let Some(old) = txn
            .row_for_write(e.id, row_id, known)?
            .filter(|r| is_live(r) && !r.is_soft_deleted())
        else {
            return Ok(None);
        };
        check_version(e, row_id, &old, expected_version)?;
        let mut values: Vec<Value> = (0..e.fields.len() as u32)
            .map(|f| e.stored_value(&old.values, f))
            .collect();
        for (i, (_, v)) in idx.iter().zip(changes) {
            values[*i] = v.clone();
        }
        let mut ctx = OpCtx::default();
        let r = update_at(txn, &schema, pos, row_id, old, values, limits, &mut ctx)?;
        finish(txn, &schema, &mut ctx)?;
        Ok(Some(r))
    })
}

fn check_version(e: &EntityDef, row_id: i64, row: &StoredRow, expected: Option<u64>) -> Result<()> {
    match expected {
        Some(v) if v != row.version => Err(Error::new(
            SqlState::VersionMismatch,
            format!(
                "version mismatch on {} row {row_id}: expected version {v}, found {}",
                e.name, row.version
            ),
        )),
        _ => Ok(()),
    }
}

#[allow(clippy::too_many_arguments)]
fn update_at(
    txn: &mut Txn,
    schema: &Arc<Schema>,
    pos: usize,
    row_id: i64,
    old: StoredRow,
    mut values: Vec<Value>,
    limits: &WriteLimits,
    ctx: &mut OpCtx,
) -> Result<WriteResult> {
    let e = schema.entity_at(pos);
    constraint::prepare_row(e, &mut values, limits.max_row_bytes)?;
    let new_id = match e.rowid_alias {
        Some(a) => match &values[a as usize] {
            Value::Integer(i) => *i,
            other => {
                return Err(Error::new(
                    SqlState::DatatypeMismatch,
                    format!(
                        "datatype mismatch: {}.{} is an INTEGER PRIMARY KEY and got {}",
                        e.name,
                        e.fields[a as usize].name,
                        other.type_name()
                    ),
                ))
            }
        },
        None => row_id,
    };
    let moved = new_id != row_id;
    let changed: Vec<bool> = (0..e.fields.len() as u32)
        .zip(&values)
        .map(|(f, b)| {
            moved || {
                let a = stored_ref(e, &old.values, f);
                a.total_cmp(b).is_ne() || a.type_name() != b.type_name()
            }
        })
        .collect();
    // The old values outlive the write only for the foreign key actions on referencing rows.
    let old_values: Option<Vec<Value>> =
        (txn.opts.foreign_keys && !schema.incoming(pos).is_empty()).then(|| {
            (0..e.fields.len() as u32)
                .map(|f| e.stored_value(&old.values, f))
                .collect()
        });
    let mut version = old.version + 1;
    let flags = old.flags;
    // What `write_row_read` takes as the read of the row written at `new_id`.
    let mut read_at_new = Some(old);
    if moved {
        let target = txn.read_row(e.id, new_id)?;
        if target.as_ref().is_some_and(is_live) {
            return Err(Error::unique(
                "PRIMARY KEY",
                &e.name,
                e.field_names(&[e.rowid_alias.unwrap_or(0)]),
            ));
        }
        txn.core().note_row_id(e.id, new_id)?;
        version = version.max(target.as_ref().map_or(1, |t| t.version + 1));
        // Remove the row from its old id before the unique checks: otherwise the row itself,
        // still live under the old id, conflicts with its own values in every unique index
        // (changing the id of a row with a UNIQUE field failed with 23505). The statement
        // savepoint undoes this if a later check fails.
        let old = std::mem::replace(&mut read_at_new, target);
        let old_version = old.as_ref().map_or(0, |o| o.version);
        txn.write_row_read(e.id, row_id, tombstone(old_version), old)?;
    }
    constraint::check_unique(txn, e, new_id, &values, Some(&changed))?;
    for ix in &e.indexes {
        // A moved row (new id) needs entries in every index.
        let touched =
            moved || (0..changed.len() as u32).any(|f| changed[f as usize] && ix.references(f));
        if touched {
            if let Some(vals) = ix.entry_values(e, &values)? {
                txn.add_index_entry(keys::index_entry_key(ix.id, &vals, new_id));
            }
        }
    }
    if moved && e.autoincrement {
        txn.note_sequence(e.id, new_id);
    }
    let child_fks = txn.opts.foreign_keys && !e.foreign_keys.is_empty();
    let kept = (child_fks || old_values.is_some()).then(|| values.clone());
    txn.write_row_read(
        e.id,
        new_id,
        StoredRow {
            flags,
            version,
            values,
        },
        read_at_new,
    )?;
    if let Some(values) = &kept {
        // Checked after the write, like inserts, so a row may come to reference itself (also
        // under a new row id).
        check_child_fks(txn, schema, e, new_id, values, Some(&changed))?;
        if let Some(old_values) = &old_values {
            parent_actions(txn, schema, pos, old_values, Some(values), limits, ctx)?;
        }
    }
    Ok(WriteResult {
        row_id: new_id,
        version,
    })
}

/// Field `f` of a stored row, by reference when the row has it (see
/// `EntityDef::stored_value`).
fn stored_ref<'a>(e: &EntityDef, row: &'a [Value], f: u32) -> std::borrow::Cow<'a, Value> {
    match row.get(f as usize) {
        Some(v) => std::borrow::Cow::Borrowed(v),
        None => std::borrow::Cow::Owned(e.stored_value(row, f)),
    }
}

/// Deletes a row. Returns None when it does not exist (or is already soft-deleted).
pub fn delete(
    txn: &mut Txn,
    entity: &str,
    row_id: i64,
    expected_version: Option<u64>,
    mode: DeleteMode,
    limits: &WriteLimits,
) -> Result<Option<DeleteResult>> {
    let schema = txn.schema().clone();
    let pos = entity_pos(&schema, entity)?;
    atomically(txn, |txn| {
        let mut ctx = OpCtx::default();
        let r = delete_one(
            txn,
            &schema,
            pos,
            row_id,
            None,
            expected_version,
            mode,
            limits,
            &mut ctx,
        )?;
        finish(txn, &schema, &mut ctx)?;
        Ok(r)
    })
}

/// Deletes rows as one statement: the immediate NO ACTION foreign key checks run once, after
/// the last row, as SQLite checks them at the end of a statement. So one statement may delete
/// rows that reference each other (a self-referencing table emptied by `DELETE FROM t`) in
/// any order. One result per id, None for rows already gone (say, removed by a cascade from an
/// earlier row of the statement).
pub fn delete_many(
    txn: &mut Txn,
    entity: &str,
    row_ids: &[i64],
    limits: &WriteLimits,
) -> Result<Vec<Option<DeleteResult>>> {
    delete_many_known(
        txn,
        entity,
        row_ids.iter().map(|&id| (id, None)).collect(),
        limits,
    )
}

/// [`delete_many`] of rows the caller read in this transaction: each id with the row as read
/// (see `Txn::row_for_write`; None: read it here).
pub fn delete_many_known(
    txn: &mut Txn,
    entity: &str,
    rows: Vec<(i64, Option<StoredRow>)>,
    limits: &WriteLimits,
) -> Result<Vec<Option<DeleteResult>>> {
    let schema = txn.schema().clone();
    let pos = entity_pos(&schema, entity)?;
    atomically(txn, |txn| {
        let mut ctx = OpCtx::default();
        let mut out = Vec::with_capacity(rows.len());
        for (row_id, known) in rows {
            out.push(delete_one(
                txn,
                &schema,
                pos,
                row_id,
                known,
                None,
                DeleteMode::Default,
                limits,
                &mut ctx,
            )?);
        }
        finish(txn, &schema, &mut ctx)?;
        Ok(out)
    })
}

/// One row of [`delete`] / [`delete_many`]; NO ACTION checks are left queued in `ctx`.
#[allow(clippy::too_many_arguments)]
fn delete_one(
    txn: &mut Txn,
    schema: &Arc<Schema>,
    pos: usize,
    row_id: i64,
    known: Option<StoredRow>,
    expected_version: Option<u64>,
    mode: DeleteMode,
    limits: &WriteLimits,
    ctx: &mut OpCtx,
) -> Result<Option<DeleteResult>> {
    let e = schema.entity_at(pos);
    let Some(old) = txn.row_for_write(e.id, row_id, known)?.filter(is_live) else {
        return Ok(None);
    };
    if old.is_soft_deleted() && mode == DeleteMode::Default {
        return Ok(None);
    }
    check_version(e, row_id, &old, expected_version)?;
    if e.soft_delete && mode == DeleteMode::Default {
        let marked = with_soft_delete(old.clone(), true);
        let version = marked.version;
        txn.write_row_read(e.id, row_id, marked, Some(old))?;
        return Ok(Some(DeleteResult {
            row_id,
            version,
            cascaded: 0,
        }));
    }
    let before = ctx.cascaded;
    let version = delete_cascading(txn, schema, pos, row_id, old, limits, ctx)?;
    Ok(Some(DeleteResult {
        row_id,
        version,
        cascaded: ctx.cascaded - before,
    }))
}

/// Restores a soft-deleted row. Returns None when there is no soft-deleted row with that id.
pub fn restore(txn: &mut Txn, entity: &str, row_id: i64) -> Result<Option<WriteResult>> {
    let schema = txn.schema().clone();
    let e = schema.entity(entity)?;
    atomically(txn, |txn| {
        let Some(old) = txn
            .read_row(e.id, row_id)?
            .filter(|r| is_live(r) && r.is_soft_deleted())
        else {
            return Ok(None);
        };
        let restored = with_soft_delete(old, false);
        let version = restored.version;
        txn.write_row(e.id, row_id, restored)?;
        Ok(Some(WriteResult { row_id, version }))
    })
}

/// Deletes a row and everything its foreign key actions reach, breadth first (no recursion, so
/// long cascade chains cannot overflow the stack).
fn delete_cascading(
    txn: &mut Txn,
    schema: &Arc<Schema>,
    pos: usize,
    row_id: i64,
    old: StoredRow,
    limits: &WriteLimits,
    ctx: &mut OpCtx,
) -> Result<u64> {
    let version = old.version + 1;
    let mut queue: VecDeque<(usize, i64, StoredRow)> = VecDeque::new();
    queue.push_back((pos, row_id, old));
    let mut first = true;
    while let Some((p, id, row)) = queue.pop_front() {
        let ent = schema.entity_at(p);
        // A row reached twice (two paths of cascades) is deleted once.
        let row = if first {
            row
        } else {
            match txn.read_row(ent.id, id)?.filter(is_live) {
                Some(r) => r,
                None => continue,
            }
        };
        // The deleted values matter only to the rows that reference this table.
        let old_values: Option<Vec<Value>> =
            (txn.opts.foreign_keys && !schema.incoming(p).is_empty()).then(|| {
                (0..ent.fields.len() as u32)
                    .map(|f| ent.stored_value(&row.values, f))
                    .collect()
            });
        txn.write_row_read(ent.id, id, tombstone(row.version), Some(row))?;
        if !first {
            ctx.cascaded += 1;
        }
        first = false;
        let Some(old_values) = old_values else {
            continue;
        };
        for (cpos, fk_pos, key) in referencing_keys(schema, p, &old_values, None)? {
            let child = schema.entity_at(cpos);
            let fk = &child.foreign_keys[fk_pos];
            match fk.on_delete {
                FkAction::Cascade => {
                    for (cid, crow) in constraint::find_children(txn, child, fk, &key)? {
                        queue.push_back((cpos, cid, crow));
                    }
                }
                action => apply_non_cascade(txn, schema, cpos, fk_pos, key, action, limits, ctx)?,
            }
        }
    }
    Ok(version)
}

/// For every foreign key that references entity `pos`: (child position, fk position, the old
/// referenced key) whose key is non-null and, for updates, changed.
fn referencing_keys(
    schema: &Schema,
    pos: usize,
    old: &[Value],
    new: Option<&[Value]>,
) -> Result<Vec<(usize, usize, Vec<Value>)>> {
    let mut out = Vec::new();
    for &(cpos, fk_pos) in schema.incoming(pos) {
        let child = schema.entity_at(cpos);
        let fk = &child.foreign_keys[fk_pos];
        let (_, pfields, _) = schema.fk_parent_key(child, fk)?;
        let key: Vec<Value> = pfields.iter().map(|f| old[*f as usize].clone()).collect();
        if key.iter().any(Value::is_null) {
            continue;
        }
        if let Some(new) = new {
            let same = pfields.iter().all(|f| {
                let (a, b) = (&old[*f as usize], &new[*f as usize]);
                a.total_cmp(b).is_eq() && a.type_name() == b.type_name()
            });
            if same {
                continue;
            }
        }
        out.push((cpos, fk_pos, key));
    }
    Ok(out)
}

/// Runs the update-side actions (or delete-side non-cascade actions) for a changed parent row.
fn parent_actions(
    txn: &mut Txn,
    schema: &Arc<Schema>,
    pos: usize,
    old: &[Value],
    new: Option<&[Value]>,
    limits: &WriteLimits,
    ctx: &mut OpCtx,
) -> Result<()> {
    for (cpos, fk_pos, key) in referencing_keys(schema, pos, old, new)? {
        let child = schema.entity_at(cpos);
        let fk = &child.foreign_keys[fk_pos];
        let action = if new.is_some() {
            fk.on_update
        } else {
            fk.on_delete
        };
        if action == FkAction::Cascade {
            let (_, pfields, _) = schema.fk_parent_key(child, fk)?;
            let new_key: Vec<Value> = match new {
                Some(n) => pfields.iter().map(|f| n[*f as usize].clone()).collect(),
                None => return Err(Error::internal("cascade delete routed to the update path")),
            };
            set_child_keys(txn, schema, cpos, fk_pos, &key, Some(new_key), limits, ctx)?;
        } else {
            apply_non_cascade(txn, schema, cpos, fk_pos, key, action, limits, ctx)?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn apply_non_cascade(
    txn: &mut Txn,
    schema: &Arc<Schema>,
    cpos: usize,
    fk_pos: usize,
    key: Vec<Value>,
    action: FkAction,
    limits: &WriteLimits,
    ctx: &mut OpCtx,
) -> Result<()> {
    let child = schema.entity_at(cpos);
    let fk = &child.foreign_keys[fk_pos];
    match action {
        FkAction::Restrict => {
            if !constraint::find_children(txn, child, fk, &key)?.is_empty() {
                return Err(fk_error(
                    child,
                    fk,
                    "rows still reference the key (ON DELETE/UPDATE RESTRICT)",
                ));
            }
        }
        FkAction::NoAction => queue_no_action(txn, schema, cpos, fk_pos, key, ctx)?,
        FkAction::SetNull => set_child_keys(txn, schema, cpos, fk_pos, &key, None, limits, ctx)?,
        FkAction::SetDefault => {
            let defaults: Vec<Value> = fk
                .fields
                .iter()
                .map(|f| default_for(&child.fields[*f as usize]))
                .collect::<Result<_>>()?;
            set_child_keys(txn, schema, cpos, fk_pos, &key, Some(defaults), limits, ctx)?;
            // When the default equals the old key (e.g. the parent holding the default key is
            // the one deleted), set_child_keys changes nothing, so the children's own FK check
            // is skipped and they would be left pointing at a missing parent. Check the old key
            // like NO ACTION: still referenced without a parent is a violation (as in SQLite).
            queue_no_action(txn, schema, cpos, fk_pos, key, ctx)?;
        }
        FkAction::Cascade => return Err(Error::internal("cascade handled by the caller")),
    }
    Ok(())
}

/// Queues the "no child may still reference `key`" check of a NO ACTION key: at the end of the
/// operation when immediate, at commit when deferred.
fn queue_no_action(
    txn: &mut Txn,
    schema: &Schema,
    cpos: usize,
    fk_pos: usize,
    key: Vec<Value>,
    ctx: &mut OpCtx,
) -> Result<()> {
    let child = schema.entity_at(cpos);
    let fk = &child.foreign_keys[fk_pos];
    if fk.deferred {
        let parent_id = schema
            .fk_parent_key(child, fk)
            .map(|(p, _, _)| schema.entity_at(p).id)?;
        txn.deferred.push(DeferredCheck::Parent {
            parent_id,
            key,
            child_id: child.id,
            fk: fk.name.clone(),
        });
    } else {
        ctx.no_action.push((cpos, fk_pos, key));
    }
    Ok(())
}

/// Sets the foreign key fields of every child referencing `key` to `new_key` (NULLs when None).
#[allow(clippy::too_many_arguments)]
fn set_child_keys(
    txn: &mut Txn,
    schema: &Arc<Schema>,
    cpos: usize,
    fk_pos: usize,
    key: &[Value],
    new_key: Option<Vec<Value>>,
    limits: &WriteLimits,
    ctx: &mut OpCtx,
) -> Result<()> {
    ctx.depth += 1;
    if ctx.depth > limits.max_cascade_depth {
        return Err(Error::new(
            SqlState::LimitExceeded,
            format!(
                "foreign key actions nested deeper than {}",
                limits.max_cascade_depth
            ),
        ));
    }
    // Nested key actions recurse (update_at -> parent_actions -> set_child_keys) with several
    // KiB of stack per level in debug builds: a chain a few hundred levels deep overflowed an
    // ordinary 2 MiB thread stack and aborted the process. Every STACK_HOP levels, continue on
    // a scoped thread with a fresh stack, so the depth limit, not the caller's stack, bounds
    // the nesting.
    const STACK_HOP: usize = 64;
    const HOP_STACK_BYTES: usize = 4 << 20;
    if ctx.depth.is_multiple_of(STACK_HOP) {
        let res = std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("ormdb-fk-actions".into())
                .stack_size(HOP_STACK_BYTES)
                .spawn_scoped(s, || {
                    update_children(txn, schema, cpos, fk_pos, key, new_key, limits, ctx)
                })
                .map(|h| h.join())
        });
        match res {
            Ok(Ok(r)) => r?,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(e) => {
                return Err(Error::io(
                    "starting a thread for nested foreign key actions",
                    e,
                ))
            }
        }
    } else {
        update_children(txn, schema, cpos, fk_pos, key, new_key, limits, ctx)?;
    }
    ctx.depth -= 1;
    Ok(())
}

/// The work of [`set_child_keys`] at one nesting level.
#[allow(clippy::too_many_arguments)]
fn update_children(
    txn: &mut Txn,
    schema: &Arc<Schema>,
    cpos: usize,
    fk_pos: usize,
    key: &[Value],
    new_key: Option<Vec<Value>>,
    limits: &WriteLimits,
    ctx: &mut OpCtx,
) -> Result<()> {
    let child = schema.entity_at(cpos);
    let fk = child.foreign_keys[fk_pos].clone();
    for (cid, _) in constraint::find_children(txn, child, &fk, key)? {
        // The row may have been changed by an earlier action of this operation.
        let Some(cur) = txn.read_row(child.id, cid)?.filter(is_live) else {
            continue;
        };
        let mut values: Vec<Value> = (0..child.fields.len() as u32)
            .map(|f| child.stored_value(&cur.values, f))
            .collect();
        for (i, f) in fk.fields.iter().enumerate() {
            values[*f as usize] = new_key.as_ref().map_or(Value::Null, |k| k[i].clone());
        }
        update_at(txn, schema, cpos, cid, cur, values, limits, ctx)?;
        ctx.cascaded += 1;
    }
    Ok(())
}

/// Runs the immediate NO ACTION checks once the whole operation is done.
fn finish(txn: &mut Txn, schema: &Arc<Schema>, ctx: &mut OpCtx) -> Result<()> {
    for (cpos, fk_pos, key) in std::mem::take(&mut ctx.no_action) {
        let child = schema.entity_at(cpos);
        let fk = &child.foreign_keys[fk_pos];
        if still_referenced(txn, schema, child, fk, &key)? {
            return Err(fk_error(
                child,
                fk,
                "rows still reference the deleted or changed key",
            ));
        }
    }
    Ok(())
}

/// Whether children reference `key` while no parent row has it.
fn still_referenced(
    txn: &mut Txn,
    schema: &Schema,
    child: &EntityDef,
    fk: &crate::catalog::ForeignKeyDef,
    key: &[Value],
) -> Result<bool> {
    if constraint::find_children(txn, child, fk, key)?.is_empty() {
        return Ok(false);
    }
    // A parent with the same key may exist again (deleted and re-inserted).
    let mut probe = vec![Value::Null; child.fields.len()];
    for (i, f) in fk.fields.iter().enumerate() {
        probe[*f as usize] = key[i].clone();
    }
    Ok(!constraint::parent_exists(txn, schema, child, fk, &probe)?)
}

/// Runs the deferred foreign key checks (at commit).
pub fn check_deferred(txn: &mut Txn) -> Result<()> {
    if !txn.opts.foreign_keys {
        return Ok(());
    }
    let schema = txn.schema().clone();
    for check in std::mem::take(&mut txn.deferred) {
        match check {
            DeferredCheck::Child {
                entity_id,
                row_id,
                fk,
            } => {
                let Some(e) = schema.entity_by_id(entity_id) else {
                    continue;
                };
                let Some(fkd) = e.foreign_keys.iter().find(|f| f.name == fk) else {
                    continue;
                };
                let Some(row) = txn.read_row(entity_id, row_id)?.filter(is_live) else {
                    continue;
                };
                if !constraint::parent_exists(txn, &schema, e, fkd, &row.values)? {
                    return Err(fk_error(
                        e,
                        fkd,
                        &format!("row {row_id} references a missing parent at commit (deferred)"),
                    ));
                }
            }
            DeferredCheck::Parent {
                key, child_id, fk, ..
            } => {
                let Some(child) = schema.entity_by_id(child_id) else {
                    continue;
                };
                let Some(fkd) = child.foreign_keys.iter().find(|f| f.name == fk) else {
                    continue;
                };
                if still_referenced(txn, &schema, child, fkd, &key)? {
                    return Err(fk_error(
                        child,
                        fkd,
                        "rows still reference a deleted parent key at commit (deferred)",
                    ));
                }
            }
        }
    }
    Ok(())
}
