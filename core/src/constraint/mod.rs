//! Write-time constraints: field types (strict entities) and affinity, NOT NULL, CHECK, unique
//! indexes and the child side of foreign keys. The parent side (actions on delete and update of a
//! referenced key) lives with the mutation executor, which owns cascades.

pub mod defaults;

use crate::catalog::{EntityDef, ForeignKeyDef, Schema};
use crate::error::{Error, Result, SqlState};
use crate::storage::keys;
use crate::txn::Txn;
use crate::value::Value;

/// Applies field types to a full row, computes its generated columns and checks NOT NULL and
/// CHECK constraints.
pub fn prepare_row(e: &EntityDef, values: &mut [Value], max_row_bytes: usize) -> Result<()> {
    let mut size = 0usize;
    for (i, f) in e.fields.iter().enumerate() {
        if f.generated.is_some() {
            continue;
        }
        size += fit_field(e, i, values)?;
    }
    if e.has_generated() {
        // SQLite computes generated columns from the row after the affinity of the other
        // columns is applied, then applies the generated column's own affinity.
        for i in e.generated_order()? {
            if let Some(g) = &e.fields[i].generated {
                values[i] = g.expr.eval(values)?;
            }
            size += fit_field(e, i, values)?;
        }
    }
    if size > max_row_bytes {
        return Err(Error::new(
            SqlState::LimitExceeded,
            format!(
                "row of {} is {size} bytes, over the limit of {max_row_bytes} bytes",
                e.name
            ),
        ));
    }
    for c in &e.checks {
        if !c.expr.check_passes(values)? {
            return Err(Error::new(
                SqlState::CheckViolation,
                format!("CHECK constraint failed: {} on {}", c.name, e.name),
            ));
        }
    }
    Ok(())
}

/// Applies field `i`'s type to its value and checks NOT NULL; returns the value's size.
fn fit_field(e: &EntityDef, i: usize, values: &mut [Value]) -> Result<usize> {
    let f = &e.fields[i];
    let v = std::mem::replace(&mut values[i], Value::Null);
    let v = if e.strict {
        f.ty.coerce_strict(v).map_err(|v| {
            Error::new(
                SqlState::DatatypeMismatch,
                format!(
                    "cannot store {} value {} in {}.{} ({})",
                    v.type_name().to_uppercase(),
                    truncate_display(&v),
                    e.name,
                    f.name,
                    f.ty.name()
                ),
            )
        })?
    } else {
        f.ty.apply_affinity(v)
    };
    if v.is_null() && !f.nullable {
        return Err(Error::not_null(&e.name, &f.name));
    }
    let size = v.size() + 2;
    values[i] = v;
    Ok(size)
}

fn truncate_display(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        let mut end = 40;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s
    }
}

/// Checks every unique index of `e` for another live row with the same values. NULLs never
/// conflict (SQLite semantics). Soft-deleted rows still hold their unique values.
pub fn check_unique(
    txn: &mut Txn,
    e: &EntityDef,
    row_id: i64,
    values: &[Value],
    changed_only: Option<&[bool]>,
) -> Result<()> {
    for ix in e.indexes.iter().filter(|i| i.unique) {
        if let Some(changed) = changed_only {
            if !(0..changed.len()).any(|f| changed[f] && ix.references(f as u32)) {
                continue;
            }
        }
        // A partial index leaves some rows out: they are not unique among themselves.
        let Some(key) = ix.entry_values(e, values)? else {
            continue;
        };
        if key.iter().any(Value::is_null) {
            continue;
        }
        let hits = txn.index_lookup(e, ix, &key)?;
        if hits.iter().any(|(id, _)| *id != row_id) {
            return Err(Error::unique(&ix.name, &e.name, ix.describe(e)));
        }
    }
    Ok(())
}

pub fn fk_error(child: &EntityDef, fk: &ForeignKeyDef, what: &str) -> Error {
    Error::new(
        SqlState::ForeignKeyViolation,
        format!(
            "FOREIGN KEY constraint failed: {} ({}) references {}: {what}",
            fk.name,
            child.field_names(&fk.fields),
            fk.parent
        ),
    )
}

/// Whether the parent row referenced by `values` through `fk` exists (true when any key field is
/// NULL, as SQLite's MATCH SIMPLE).
pub fn parent_exists(
    txn: &mut Txn,
    schema: &Schema,
    child: &EntityDef,
    fk: &ForeignKeyDef,
    values: &[Value],
) -> Result<bool> {
    let key: Vec<Value> = fk
        .fields
        .iter()
        .map(|f| child.stored_value(values, *f))
        .collect();
    if key.iter().any(Value::is_null) {
        return Ok(true);
    }
    let (ppos, pfields, is_rowid) = schema.fk_parent_key(child, fk)?;
    let parent = schema.entity_at(ppos);
    // Compare with the parent column's affinity applied, as SQLite does.
    let key: Vec<Value> = key
        .into_iter()
        .zip(&pfields)
        .map(|(v, f)| parent.fields[*f as usize].ty.apply_affinity(v))
        .collect();
    if is_rowid {
        let Value::Integer(id) = key[0] else {
            return Ok(false);
        };
        return Ok(txn
            .read_row(parent.id, id)?
            .is_some_and(|r| !r.is_tombstone()));
    }
    if let Some(ix) = parent.index_on(&pfields, true) {
        let ix = ix.clone();
        return Ok(!txn.index_lookup(parent, &ix, &key)?.is_empty());
    }
    // A collated parent key: the child's value matches under the parent column's collation,
    // as in SQLite, so it is looked up folded like the index's own keys.
    let ix = parent
        .collated_unique_on(&pfields)
        .ok_or_else(|| Error::internal("parent key index vanished"))?
        .clone();
    let mut row = vec![Value::Null; parent.fields.len()];
    for (v, f) in key.into_iter().zip(&pfields) {
        row[*f as usize] = v;
    }
    let Some(folded) = ix.entry_values(parent, &row)? else {
        return Ok(false);
    };
    Ok(!txn.index_lookup(parent, &ix, &folded)?.is_empty())
}

/// Child rows of `child` whose `fk` fields equal `key`.
/// The fold function of each parent key column when the foreign key's parent key is a collated
/// unique index (None: a binary key).
fn parent_key_folds(
    txn: &Txn,
    child: &EntityDef,
    fk: &ForeignKeyDef,
) -> Option<Vec<Option<String>>> {
    let schema = txn.schema().clone();
    let (ppos, pfields, is_rowid) = schema.fk_parent_key(child, fk).ok()?;
    if is_rowid {
        return None;
    }
    let parent = schema.entity_at(ppos);
    if parent.index_on(&pfields, true).is_some() {
        return None;
    }
    let ix = parent.collated_unique_on(&pfields)?;
    Some(
        ix.collated_columns()?
            .into_iter()
            .map(|(_, f)| f.map(str::to_string))
            .collect(),
    )
}

pub fn find_children(
    txn: &mut Txn,
    child: &EntityDef,
    fk: &ForeignKeyDef,
    key: &[Value],
) -> Result<Vec<(i64, crate::storage::row_codec::StoredRow)>> {
    if fk.fields.len() == 1 && child.rowid_alias == Some(fk.fields[0]) {
        let Value::Integer(id) = key[0] else {
            return Ok(Vec::new());
        };
        return Ok(txn
            .read_row(child.id, id)?
            .filter(|r| !r.is_tombstone())
            .map(|r| vec![(id, r)])
            .unwrap_or_default());
    }
    let folds = parent_key_folds(txn, child, fk);
    if folds.is_none() {
        if let Some(ix) = child.index_on(&fk.fields, false).cloned() {
            return txn.index_lookup(child, &ix, key);
        }
    }
    // No index (only possible for entities created before the index existed), or a parent key
    // compared under its NOCASE / RTRIM collation, which the child's binary index cannot
    // answer: scan.
    let fold = |vals: Vec<Value>| -> Result<Vec<Value>> {
        match &folds {
            None => Ok(vals),
            Some(fs) => vals
                .into_iter()
                .zip(fs)
                .map(|(v, f)| match f {
                    Some(name) => crate::ir::Expr::Function {
                        name: name.clone(),
                        args: vec![crate::ir::Expr::Literal(v)],
                    }
                    .eval(&[]),
                    None => Ok(v),
                })
                .collect(),
        }
    };
    let want = keys::index_values_prefix(0, &fold(key.to_vec())?);
    let mut out = Vec::new();
    for item in txn.scan(child.id) {
        let (id, row) = item?;
        let vals: Vec<Value> = fk
            .fields
            .iter()
            .map(|f| child.stored_value(&row.values, *f))
            .collect();
        if keys::index_values_prefix(0, &fold(vals)?) == want {
            out.push((id, row));
        }
    }
    Ok(out)
}
