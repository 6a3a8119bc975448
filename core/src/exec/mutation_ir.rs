//! Runs the mutation IR inside a transaction: each operation is atomic on its own (statement
//! savepoint) and the caller commits the batch as one transaction.

use crate::catalog::Schema;
use crate::error::{Error, Result, SqlState};
use crate::exec::graph_fetch::Executor;
use crate::exec::mutate::{self, DeleteMode, WriteLimits};
use crate::ir::graph::Budget;
use crate::ir::mutation::{CreateNode, Mutation, MutationOp, OpResult, Record};
use crate::plan::relation::resolve;
use crate::txn::Txn;
use crate::value::Value;

fn pairs(r: &Record) -> Vec<(&str, Value)> {
    r.iter().map(|(k, v)| (k.as_str(), v.clone())).collect()
}

pub fn run(txn: &mut Txn, m: &Mutation, limits: &WriteLimits) -> Result<Vec<OpResult>> {
    let mut out = Vec::with_capacity(m.ops.len());
    for op in &m.ops {
        let r = mutate::atomically(txn, |txn| run_op(txn, op, limits))?;
        out.push(r);
    }
    Ok(out)
}

fn entity_pos(schema: &Schema, name: &str) -> Result<usize> {
    schema
        .entity_pos(name)
        .ok_or_else(|| Error::unknown_entity(name))
}

fn run_op(txn: &mut Txn, op: &MutationOp, limits: &WriteLimits) -> Result<OpResult> {
    let schema = txn.schema().clone();
    let mut res = OpResult::default();
    match op {
        MutationOp::Insert { entity, rows } => {
            for r in rows {
                let w = mutate::insert(txn, entity, &pairs(r), limits)?;
                res.ids.push(w.row_id);
                res.affected += 1;
            }
        }
        MutationOp::Update {
            entity,
            filter,
            set,
        } => {
            let pos = entity_pos(&schema, entity)?;
            let rows = Executor::new(txn, Budget::default()).matching_rows(pos, filter.as_ref())?;
            let changes = pairs(set);
            for (id, _) in rows {
                mutate::update(txn, entity, id, &changes, None, limits)?;
                res.ids.push(id);
                res.affected += 1;
            }
        }
        MutationOp::Delete { entity, filter } => {
            let pos = entity_pos(&schema, entity)?;
            let rows = Executor::new(txn, Budget::default()).matching_rows(pos, filter.as_ref())?;
            for (id, _) in rows {
                if mutate::delete(txn, entity, id, None, DeleteMode::Default, limits)?.is_some() {
                    res.ids.push(id);
                    res.affected += 1;
                }
            }
        }
        MutationOp::Upsert {
            entity,
            on,
            rows,
            update,
        } => {
            let pos = entity_pos(&schema, entity)?;
            let e = schema.entity_at(pos);
            let fields: Vec<u32> = on
                .iter()
                .map(|n| e.field_index_or_err(n))
                .collect::<Result<_>>()?;
            let by_rowid = fields.len() == 1 && e.rowid_alias == Some(fields[0]);
            let ix = e.index_on(&fields, true).cloned();
            if !by_rowid && ix.is_none() {
                return Err(Error::new(
                    SqlState::InvalidParameter,
                    format!(
                        "upsert on {}({}) needs a primary key or unique constraint on those fields",
                        e.name,
                        on.join(", ")
                    ),
                ));
            }
            for r in rows {
                let mut key = Vec::with_capacity(fields.len());
                for (n, f) in on.iter().zip(&fields) {
                    let v = r.get(n).ok_or_else(|| {
                        Error::new(
                            SqlState::InvalidParameter,
                            format!("upsert row lacks its key field {n}"),
                        )
                    })?;
                    key.push(e.fields[*f as usize].ty.apply_affinity(v.clone()));
                }
                let existing = if by_rowid {
                    match key[0].as_i64() {
                        Some(id) => txn
                            .read_row(e.id, id)?
                            .filter(|x| !x.is_tombstone() && !x.is_soft_deleted())
                            .map(|_| id),
                        None => None,
                    }
                } else {
                    let ix = ix.as_ref().expect("checked above");
                    txn.index_lookup(e, ix, &key)?
                        .into_iter()
                        .find(|(_, x)| !x.is_soft_deleted())
                        .map(|(id, _)| id)
                };
                match existing {
                    Some(id) => {
                        let changes: Vec<(&str, Value)> = match update {
                            Some(names) => names
                                .iter()
                                .filter_map(|n| r.get(n).map(|v| (n.as_str(), v.clone())))
                                .collect(),
                            None => pairs(r),
                        };
                        if !changes.is_empty() {
                            mutate::update(txn, entity, id, &changes, None, limits)?;
                        }
                        res.ids.push(id);
                    }
                    None => {
                        let w = mutate::insert(txn, entity, &pairs(r), limits)?;
                        res.ids.push(w.row_id);
                    }
                }
                res.affected += 1;
            }
        }
        MutationOp::Create(node) => {
            create(txn, node, limits, &mut res)?;
        }
    }
    Ok(res)
}

fn create(
    txn: &mut Txn,
    node: &CreateNode,
    limits: &WriteLimits,
    res: &mut OpResult,
) -> Result<i64> {
    create_with(txn, node, &[], limits, res)
}

fn create_with(
    txn: &mut Txn,
    node: &CreateNode,
    extra: &[(String, Value)],
    limits: &WriteLimits,
    res: &mut OpResult,
) -> Result<i64> {
    let schema = txn.schema().clone();
    let pos = entity_pos(&schema, &node.entity)?;
    let e = schema.entity_at(pos).clone();
    let mut vals = pairs(&node.values);
    for (k, v) in extra {
        vals.retain(|(n, _)| !n.eq_ignore_ascii_case(k));
        vals.push((k.as_str(), v.clone()));
    }
    let w = mutate::insert(txn, &node.entity, &vals, limits)?;
    res.ids.push(w.row_id);
    res.affected += 1;
    if node.nested.is_empty() {
        return Ok(w.row_id);
    }
    let row = txn
        .read_row(e.id, w.row_id)?
        .ok_or_else(|| Error::internal("created row not visible"))?;
    let full = crate::exec::graph_fetch::full_values(&e, row);
    for nested in &node.nested {
        let rel = resolve(&schema, pos, &nested.relation)?;
        let h1 = &rel.hops[0];
        let near_entity = schema.entity_at(h1.target_pos).clone();
        let forward_to_one = rel.hops.len() == 1
            && schema
                .relations_of(&e.name)
                .any(|r| r.name == rel.name && r.forward);
        if forward_to_one {
            return Err(Error::unsupported(format!(
                "nested create through {}.{} (a many-to-one relation: create the parent first)",
                e.name, rel.name
            )));
        }
        let near_vals: Vec<(String, Value)> = h1
            .source_fields
            .iter()
            .zip(&h1.target_fields)
            .map(|(s, t)| {
                (
                    near_entity.fields[*t as usize].name.clone(),
                    full[*s as usize].clone(),
                )
            })
            .collect();
        for child in &nested.rows {
            if rel.hops.len() == 1 {
                if !child.entity.eq_ignore_ascii_case(&near_entity.name) {
                    return Err(Error::invalid(format!(
                        "relation {} leads to {}, not {}",
                        rel.name, near_entity.name, child.entity
                    )));
                }
                create_with(txn, child, &near_vals, limits, res)?;
            } else {
                // Many-to-many: the target row, then the join row.
                let h2 = &rel.hops[1];
                let target = schema.entity_at(h2.target_pos).clone();
                let tid = create_with(txn, child, &[], limits, res)?;
                let trow = txn
                    .read_row(target.id, tid)?
                    .ok_or_else(|| Error::internal("created row not visible"))?;
                let tfull = crate::exec::graph_fetch::full_values(&target, trow);
                let mut join_vals: Vec<(&str, Value)> = near_vals
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.clone()))
                    .collect();
                for (s, t) in h2.source_fields.iter().zip(&h2.target_fields) {
                    join_vals.push((
                        near_entity.fields[*s as usize].name.as_str(),
                        tfull[*t as usize].clone(),
                    ));
                }
                let w = mutate::insert(txn, &near_entity.name, &join_vals, limits)?;
                res.ids.push(w.row_id);
                res.affected += 1;
            }
        }
    }
    Ok(w.row_id)
}
