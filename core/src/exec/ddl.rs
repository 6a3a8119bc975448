//! Schema changes inside a transaction. Each one derives a new bundle from the transaction's
//! current schema and does the data work the change needs (building an index for existing rows,
//! validating a new constraint against them, rewriting rows when a field is dropped), so DDL is
//! transactional and atomic with the rest of the transaction.

use crate::catalog::builder::{
    self, add_index, check_name, ensure_fk_index, resolve_entity, resolve_fk,
};
use crate::catalog::{
    DefaultValue, EntitySpec, FieldDef, ForeignKeySpec, IndexOrigin, IndexSpec, SchemaBundle,
    ViewDef,
};
use crate::constraint;
use crate::error::{Error, Result, SqlState};
use crate::exec::mutate::{atomically, delete, DeleteMode, WriteLimits};
use crate::ir::Expr;
use crate::storage::keys;
use crate::storage::row_codec::StoredRow;
use crate::txn::Txn;
use crate::value::Value;

fn bundle_and_pos(txn: &Txn, entity: &str) -> Result<(SchemaBundle, usize)> {
    let schema = txn.schema();
    let pos = schema
        .entity_pos(entity)
        .ok_or_else(|| Error::unknown_entity(entity))?;
    Ok((schema.bundle.clone(), pos))
}

/// Creates an entity. Returns false (and changes nothing) when it exists and `if_not_exists`.
pub fn create_entity(txn: &mut Txn, spec: &EntitySpec, if_not_exists: bool) -> Result<bool> {
    if if_not_exists && txn.schema().entity_pos(&spec.name).is_some() {
        return Ok(false);
    }
    let mut bundle = txn.schema().bundle.clone();
    let e = resolve_entity(&mut bundle, spec)?;
    bundle.entities.push(e);
    txn.set_schema(bundle);
    Ok(true)
}

/// Creates a view. Returns false (and changes nothing) when a view of that name exists and
/// `if_not_exists`. The caller has checked the query against the schema.
pub fn create_view(txn: &mut Txn, view: ViewDef, if_not_exists: bool) -> Result<bool> {
    check_name("view", &view.name)?;
    let schema = txn.schema();
    if schema.view(&view.name).is_some() || schema.entity_pos(&view.name).is_some() {
        if if_not_exists {
            return Ok(false);
        }
        let kind = if schema.view(&view.name).is_some() {
            "view"
        } else {
            "table"
        };
        return Err(Error::new(
            SqlState::DuplicateObject,
            format!("{kind} {} already exists", view.name),
        ));
    }
    if builder::index_name_taken(&schema.bundle, &view.name) {
        return Err(Error::new(
            SqlState::DuplicateObject,
            format!("there is already an index named {}", view.name),
        ));
    }
    let mut bundle = schema.bundle.clone();
    bundle.views.push(view);
    txn.set_schema(bundle);
    Ok(true)
}

/// Drops a view. Returns false when it does not exist and `if_exists`.
pub fn drop_view(txn: &mut Txn, name: &str, if_exists: bool) -> Result<bool> {
    let mut bundle = txn.schema().bundle.clone();
    let Some(pos) = bundle
        .views
        .iter()
        .position(|v| v.name.eq_ignore_ascii_case(name))
    else {
        return if if_exists {
            Ok(false)
        } else {
            Err(Error::new(
                SqlState::UndefinedTable,
                format!("no such view: {name}"),
            ))
        };
    };
    bundle.views.remove(pos);
    txn.set_schema(bundle);
    Ok(true)
}

/// Sets `PRAGMA user_version` (kept in the bundle: transactional and durable).
pub fn set_user_version(txn: &mut Txn, v: i64) {
    let mut bundle = txn.schema().bundle.clone();
    bundle.user_version = v;
    txn.set_schema(bundle);
}

/// Drops an entity. With foreign keys on, its rows are deleted first so that references to it
/// get their ON DELETE actions (as SQLite's DROP TABLE does).
pub fn drop_entity(
    txn: &mut Txn,
    entity: &str,
    if_exists: bool,
    limits: &WriteLimits,
) -> Result<bool> {
    let Some(pos) = txn.schema().entity_pos(entity) else {
        return if if_exists {
            Ok(false)
        } else {
            Err(Error::unknown_entity(entity))
        };
    };
    atomically(txn, |txn| {
        let schema = txn.schema().clone();
        let e = schema.entity_at(pos);
        let referenced = schema.incoming(pos).iter().any(|(c, _)| *c != pos);
        if txn.opts.foreign_keys && referenced {
            let ids: Vec<i64> = txn
                .scan(e.id)
                .map(|r| r.map(|(id, _)| id))
                .collect::<Result<_>>()?;
            for id in ids {
                delete(txn, &e.name, id, None, DeleteMode::Hard, limits)?;
            }
        }
        let mut bundle = txn.schema().bundle.clone();
        bundle.entities.remove(pos);
        txn.set_schema(bundle);
        Ok(true)
    })
}

pub fn rename_entity(txn: &mut Txn, entity: &str, new_name: &str) -> Result<()> {
    check_name("table", new_name)?;
    let (mut bundle, pos) = bundle_and_pos(txn, entity)?;
    if bundle
        .entities
        .iter()
        .enumerate()
        .any(|(i, e)| i != pos && e.name.eq_ignore_ascii_case(new_name))
        || bundle
            .views
            .iter()
            .any(|v| v.name.eq_ignore_ascii_case(new_name))
    {
        return Err(Error::new(
            SqlState::DuplicateObject,
            format!("there is already another table or index with this name: {new_name}"),
        ));
    }
    let old = bundle.entities[pos].name.clone();
    bundle.entities[pos].name = new_name.to_string();
    for e in &mut bundle.entities {
        for fk in &mut e.foreign_keys {
            if fk.parent.eq_ignore_ascii_case(&old) {
                fk.parent = new_name.to_string();
            }
        }
    }
    txn.set_schema(bundle);
    Ok(())
}

pub fn rename_field(txn: &mut Txn, entity: &str, field: &str, new_name: &str) -> Result<()> {
    check_name("column", new_name)?;
    let (mut bundle, pos) = bundle_and_pos(txn, entity)?;
    let e = &mut bundle.entities[pos];
    let i = e.field_index_or_err(field)? as usize;
    if e.fields
        .iter()
        .enumerate()
        .any(|(j, f)| j != i && f.name.eq_ignore_ascii_case(new_name))
    {
        return Err(Error::new(
            SqlState::DuplicateObject,
            format!("duplicate column name: {new_name}"),
        ));
    }
    let ename = e.name.clone();
    let old = std::mem::replace(&mut e.fields[i].name, new_name.to_string());
    for other in &mut bundle.entities {
        for fk in &mut other.foreign_keys {
            if fk.parent.eq_ignore_ascii_case(&ename) {
                for pf in &mut fk.parent_fields {
                    if pf.eq_ignore_ascii_case(&old) {
                        *pf = new_name.to_string();
                    }
                }
            }
        }
    }
    txn.set_schema(bundle);
    Ok(())
}

/// Adds a field (SQLite's ADD COLUMN rules: not part of a key, a constant default, and a
/// non-null default when NOT NULL). Existing rows read the default without being rewritten.
pub fn add_field(txn: &mut Txn, entity: &str, field: FieldDef) -> Result<()> {
    check_name("column", &field.name)?;
    let (mut bundle, pos) = bundle_and_pos(txn, entity)?;
    let e = &mut bundle.entities[pos];
    if e.field_index(&field.name).is_some() {
        return Err(Error::new(
            SqlState::DuplicateObject,
            format!("duplicate column name: {}", field.name),
        ));
    }
    if field.generated.is_some() {
        return add_generated_field(txn, bundle, pos, field);
    }
    let default_null = !matches!(&field.default, Some(DefaultValue::Literal(v)) if !v.is_null());
    if !field.nullable && default_null {
        return Err(Error::new(
            SqlState::NotNullViolation,
            format!(
                "cannot add a NOT NULL column with default value NULL: {}.{}",
                e.name, field.name
            ),
        ));
    }
    if matches!(
        field.default,
        Some(
            DefaultValue::CurrentTimestamp
                | DefaultValue::CurrentDate
                | DefaultValue::CurrentTime
                | DefaultValue::Expr(_)
        )
    ) {
        return Err(Error::unsupported(format!(
            "adding column {}.{} with a non-constant default",
            e.name, field.name
        )));
    }
    if let (true, Some(DefaultValue::Literal(v))) = (e.strict, &field.default) {
        field.ty.coerce_strict(v.clone()).map_err(|v| {
            Error::new(
                SqlState::DatatypeMismatch,
                format!("default value {v} does not fit {}.{}", e.name, field.name),
            )
        })?;
    }
    e.fields.push(field);
    txn.set_schema(bundle);
    Ok(())
}

/// Adds a generated column (VIRTUAL only, as SQLite: a STORED one would need every row
/// rewritten, which SQLite refuses) and computes it for the existing rows, which must satisfy
/// its NOT NULL constraint.
fn add_generated_field(
    txn: &mut Txn,
    mut bundle: crate::catalog::SchemaBundle,
    pos: usize,
    mut field: FieldDef,
) -> Result<()> {
    let e = &mut bundle.entities[pos];
    let Some(g) = &mut field.generated else {
        return Err(Error::internal(
            "add_generated_field without a generated field",
        ));
    };
    if g.stored {
        return Err(Error::new(
            SqlState::SyntaxError,
            "cannot add a STORED column",
        ));
    }
    if field.default.is_some() {
        return Err(Error::new(
            SqlState::SyntaxError,
            "cannot use DEFAULT on a generated column",
        ));
    }
    let count = e.fields.len() + 1;
    let new_name = field.name.clone();
    let mut affinities: Vec<_> = e
        .fields
        .iter()
        .map(|f| crate::catalog::builder::cmp_affinity(f.ty))
        .collect();
    affinities.push(crate::catalog::builder::cmp_affinity(field.ty));
    crate::catalog::builder::prepare_generated_expr(
        &mut g.expr,
        &|n: &str| {
            e.field_index(n).or_else(|| {
                n.eq_ignore_ascii_case(&new_name)
                    .then_some(e.fields.len() as u32)
            })
        },
        count,
        &affinities,
    )?;
    let old_entity = e.clone();
    e.fields.push(field);
    e.generated_order()?;
    let new_entity = e.clone();
    let table_id = e.id;
    txn.set_schema(bundle);
    let i = new_entity.fields.len() - 1;
    rewrite_rows(txn, table_id, &old_entity, |values| {
        values.push(Value::Null);
        let f = &new_entity.fields[i];
        if let Some(g) = &f.generated {
            values[i] = f.ty.apply_affinity(g.expr.eval(values)?);
        }
        if values[i].is_null() && !f.nullable {
            return Err(Error::not_null(&new_entity.name, &f.name));
        }
        Ok(())
    })
}

/// Rewrites every row of `table_id` (stored under `old`'s layout) after `change` edits its
/// values, as a new version of each row.
fn rewrite_rows(
    txn: &mut Txn,
    table_id: u32,
    old: &crate::catalog::EntityDef,
    mut change: impl FnMut(&mut Vec<Value>) -> Result<()>,
) -> Result<()> {
    let rows: Vec<(i64, StoredRow)> = txn.scan(table_id).collect::<Result<_>>()?;
    for (id, row) in rows {
        let mut values: Vec<Value> = (0..old.fields.len() as u32)
            .map(|f| old.stored_value(&row.values, f))
            .collect();
        change(&mut values)?;
        txn.write_row(
            table_id,
            id,
            StoredRow {
                flags: row.flags,
                version: row.version + 1,
                values,
            },
        )?;
    }
    Ok(())
}

/// Drops a field and rewrites the entity's rows without it. Fields used by a key, an index, a
/// foreign key or a check cannot be dropped (as in SQLite).
pub fn drop_field(txn: &mut Txn, entity: &str, field: &str) -> Result<()> {
    let (mut bundle, pos) = bundle_and_pos(txn, entity)?;
    let e = &mut bundle.entities[pos];
    let i = e.field_index_or_err(field)?;
    let fname = e.fields[i as usize].name.clone();
    let blocked = if e.primary_key.contains(&i) {
        Some("PRIMARY KEY")
    } else if e
        .indexes
        .iter()
        .any(|x| x.references(i) && x.origin != IndexOrigin::ForeignKey)
    {
        Some("UNIQUE or indexed")
    } else if e.foreign_keys.iter().any(|f| f.fields.contains(&i)) {
        Some("used in a foreign key")
    } else if e.checks.iter().any(|c| c.expr.references(i)) {
        Some("used in a CHECK constraint")
    } else {
        None
    };
    if let Some(g) = e
        .fields
        .iter()
        .find(|f| f.generated.as_ref().is_some_and(|g| g.expr.references(i)))
    {
        // SQLite re-reads the schema after the drop and fails on the dangling reference.
        return Err(Error::new(
            SqlState::SyntaxError,
            format!(
                "error in table {} after drop column: no such column: {fname} (used by generated column {})",
                e.name, g.name
            ),
        ));
    }
    if let Some(why) = blocked {
        return Err(Error::new(
            SqlState::FeatureNotSupported,
            format!("cannot drop column {}.{fname}: {why}", e.name),
        ));
    }
    if e.fields.len() == 1 {
        return Err(Error::invalid(format!(
            "cannot drop column {}.{fname}: no other columns exist",
            e.name
        )));
    }
    let map = |j: u32| -> Option<u32> {
        match j.cmp(&i) {
            std::cmp::Ordering::Less => Some(j),
            std::cmp::Ordering::Equal => None,
            std::cmp::Ordering::Greater => Some(j - 1),
        }
    };
    let old_entity = e.clone();
    e.fields.remove(i as usize);
    for p in &mut e.primary_key {
        *p = map(*p).expect("not the dropped field");
    }
    e.rowid_alias = e.rowid_alias.and_then(map);
    for ix in &mut e.indexes {
        for f in &mut ix.fields {
            *f = map(*f).expect("checked");
        }
        for x in ix.key_exprs.iter_mut().chain(ix.predicate.as_mut()) {
            x.remap_fields(&map)?;
        }
    }
    for fk in &mut e.foreign_keys {
        for f in &mut fk.fields {
            *f = map(*f).expect("checked");
        }
    }
    for c in &mut e.checks {
        c.expr.remap_fields(&map)?;
    }
    for g in e.fields.iter_mut().filter_map(|f| f.generated.as_mut()) {
        g.expr.remap_fields(&map)?;
    }
    let table_id = e.id;
    txn.set_schema(bundle);
    // Lets commit read rows from before the transaction in the new layout (change records).
    txn.note_field_dropped(table_id, old_entity.fields.len(), i);
    rewrite_rows(txn, table_id, &old_entity, |values| {
        values.remove(i as usize);
        Ok(())
    })
}

/// Writes index entries for every existing row; for a unique index, fails on duplicates.
fn build_index(txn: &mut Txn, entity_pos: usize, index_id: u32) -> Result<()> {
    let schema = txn.schema().clone();
    let e = schema.entity_at(entity_pos);
    let ix = e
        .indexes
        .iter()
        .find(|i| i.id == index_id)
        .ok_or_else(|| Error::internal("index to build is missing"))?;
    let mut seen = std::collections::HashSet::new();
    let rows: Vec<(i64, StoredRow)> = txn.scan(e.id).collect::<Result<_>>()?;
    for (id, row) in rows {
        let Some(vals) = ix.entry_values(e, &row.values)? else {
            continue;
        };
        if ix.unique
            && !vals.iter().any(Value::is_null)
            && !seen.insert(keys::index_values_prefix(ix.id, &vals))
        {
            return Err(Error::unique(&ix.name, &e.name, ix.describe(e)));
        }
        txn.add_index_entry(keys::index_entry_key(ix.id, &vals, id));
    }
    Ok(())
}

/// Creates an index and builds it for existing rows. Returns false when it exists and
/// `if_not_exists`.
pub fn create_index(
    txn: &mut Txn,
    entity: &str,
    spec: &IndexSpec,
    if_not_exists: bool,
) -> Result<bool> {
    let (mut bundle, pos) = bundle_and_pos(txn, entity)?;
    if builder::index_name_taken(&bundle, &spec.name) {
        if if_not_exists {
            return Ok(false);
        }
        return Err(Error::new(
            SqlState::DuplicateObject,
            format!("index {} already exists", spec.name),
        ));
    }
    let mut e = bundle.entities[pos].clone();
    let fields = spec
        .fields
        .iter()
        .map(|n| e.field_index_or_err(n))
        .collect::<Result<Vec<_>>>()?;
    let resolve = |x: &Expr| -> Result<Expr> {
        let mut x = x.clone();
        x.resolve(&|n| e.field_index(n))?;
        x.validate(e.fields.len())?;
        Ok(x)
    };
    let key_exprs = spec
        .key_exprs
        .iter()
        .map(resolve)
        .collect::<Result<Vec<_>>>()?;
    let predicate = spec.predicate.as_ref().map(resolve).transpose()?;
    if fields.is_empty() == key_exprs.is_empty() {
        return Err(Error::invalid(format!(
            "index {} needs either fields or key expressions",
            spec.name
        )));
    }
    if predicate.is_some() && key_exprs.is_empty() {
        return Err(Error::invalid(format!(
            "partial index {} needs key expressions",
            spec.name
        )));
    }
    let id = add_index(
        &mut bundle,
        &mut e,
        spec.name.clone(),
        fields,
        spec.unique,
        IndexOrigin::Explicit,
        spec.sql.clone(),
    )?;
    if let Some(ix) = e.indexes.iter_mut().find(|i| i.id == id) {
        ix.key_exprs = key_exprs;
        ix.predicate = predicate;
    }
    bundle.entities[pos] = e;
    txn.set_schema(bundle);
    build_index(txn, pos, id)?;
    Ok(true)
}

/// Drops an index created with [`create_index`]. Indexes behind constraints cannot be dropped.
pub fn drop_index(txn: &mut Txn, name: &str, if_exists: bool) -> Result<bool> {
    let mut bundle = txn.schema().bundle.clone();
    let found = bundle.entities.iter().enumerate().find_map(|(p, e)| {
        e.indexes
            .iter()
            .position(|x| x.name.eq_ignore_ascii_case(name))
            .map(|i| (p, i))
    });
    let Some((pos, i)) = found else {
        return if if_exists {
            Ok(false)
        } else {
            Err(Error::new(
                SqlState::UndefinedTable,
                format!("no such index: {name}"),
            ))
        };
    };
    let mut e = bundle.entities[pos].clone();
    if e.indexes[i].origin != IndexOrigin::Explicit {
        return Err(Error::new(
            SqlState::FeatureNotSupported,
            format!("index {name} backs a PRIMARY KEY, UNIQUE or FOREIGN KEY constraint and cannot be dropped"),
        ));
    }
    e.indexes.remove(i);
    // A foreign key may have relied on this index for child lookups: give it its own.
    let mut created = Vec::new();
    for k in 0..e.foreign_keys.len() {
        if let Some(id) = ensure_fk_index(&mut bundle, &mut e, k)? {
            created.push(id);
        }
    }
    bundle.entities[pos] = e;
    txn.set_schema(bundle);
    for id in created {
        build_index(txn, pos, id)?;
    }
    Ok(true)
}

/// Adds a foreign key to an existing entity (`ALTER TABLE ... ADD CONSTRAINT ... FOREIGN KEY`),
/// checking existing rows when foreign keys are enforced.
pub fn add_foreign_key(txn: &mut Txn, entity: &str, spec: &ForeignKeySpec) -> Result<()> {
    let (mut bundle, pos) = bundle_and_pos(txn, entity)?;
    let mut e = bundle.entities[pos].clone();
    let fk = resolve_fk(&e, spec, e.foreign_keys.len() + 1)?;
    if e.foreign_keys
        .iter()
        .any(|f| f.name.eq_ignore_ascii_case(&fk.name))
    {
        return Err(Error::new(
            SqlState::DuplicateObject,
            format!("constraint {} already exists on {}", fk.name, e.name),
        ));
    }
    e.foreign_keys.push(fk);
    let k = e.foreign_keys.len() - 1;
    let created = ensure_fk_index(&mut bundle, &mut e, k)?;
    bundle.entities[pos] = e;
    txn.set_schema(bundle);
    if let Some(id) = created {
        build_index(txn, pos, id)?;
    }
    if txn.opts.foreign_keys {
        let schema = txn.schema().clone();
        let e = schema.entity_at(pos);
        let fk = &e.foreign_keys[k];
        schema.fk_parent_key(e, fk)?;
        let rows: Vec<(i64, StoredRow)> = txn.scan(e.id).collect::<Result<_>>()?;
        for (id, row) in rows {
            if !constraint::parent_exists(txn, &schema, e, fk, &row.values)? {
                return Err(constraint::fk_error(
                    e,
                    fk,
                    &format!("existing row {id} has no parent"),
                ));
            }
        }
    }
    Ok(())
}

/// Adds a CHECK constraint after validating existing rows.
pub fn add_check(txn: &mut Txn, entity: &str, name: &str, expr: Expr) -> Result<()> {
    let (mut bundle, pos) = bundle_and_pos(txn, entity)?;
    let e = &mut bundle.entities[pos];
    let mut expr = expr;
    expr.resolve(&|n| e.field_index(n))?;
    expr.validate(e.fields.len())?;
    let table_id = e.id;
    let ename = e.name.clone();
    let ent = e.clone();
    e.checks.push(crate::catalog::CheckDef {
        name: name.to_string(),
        expr: expr.clone(),
        sql: None,
    });
    txn.set_schema(bundle);
    let rows: Vec<(i64, StoredRow)> = txn.scan(table_id).collect::<Result<_>>()?;
    for (id, row) in rows {
        let vals: Vec<Value> = (0..ent.fields.len() as u32)
            .map(|f| ent.stored_value(&row.values, f))
            .collect();
        if !expr.check_passes(&vals)? {
            return Err(Error::new(
                SqlState::CheckViolation,
                format!("CHECK constraint failed: {name} on {ename} (existing row {id})"),
            ));
        }
    }
    Ok(())
}

/// Turns soft delete on or off for an entity.
pub fn set_soft_delete(txn: &mut Txn, entity: &str, on: bool) -> Result<()> {
    let (mut bundle, pos) = bundle_and_pos(txn, entity)?;
    bundle.entities[pos].soft_delete = on;
    txn.set_schema(bundle);
    Ok(())
}
