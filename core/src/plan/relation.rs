//! Relations resolved for execution: each relation becomes one or two equality hops (source
//! fields -> target fields), the second hop going through the join entity of a many-to-many.

use crate::catalog::{EntityDef, RelationKind, Schema};
use crate::error::{Error, Result, SqlState};

/// From rows of one entity to the rows of another whose `target_fields` equal the source row's
/// `source_fields`.
#[derive(Debug, Clone)]
pub struct Hop {
    pub source_fields: Vec<u32>,
    pub target_pos: usize,
    pub target_fields: Vec<u32>,
    /// `target_fields` is the row id alias: targets are read by identity.
    pub target_rowid: bool,
    /// An index whose leading fields are `target_fields`.
    pub target_index: Option<u32>,
    pub target_unique: bool,
    /// Types of `target_fields`: source values take their affinity before they are compared,
    /// as SQLite does with a foreign key's parent columns.
    pub target_types: Vec<crate::value::DataType>,
}

#[derive(Debug, Clone)]
pub struct RelPlan {
    pub name: String,
    pub kind: RelationKind,
    /// At most one related row per parent.
    pub to_one: bool,
    pub target_pos: usize,
    pub hops: Vec<Hop>,
    /// `from.fk` description for EXPLAIN.
    pub via: String,
}

fn hop_to(target: &EntityDef, target_pos: usize, source_fields: Vec<u32>, fields: Vec<u32>) -> Hop {
    let rowid = fields.len() == 1 && target.rowid_alias == Some(fields[0]);
    let unique_ix = target.index_on(&fields, true);
    let ix = unique_ix.or_else(|| target.index_on(&fields, false));
    Hop {
        source_fields,
        target_pos,
        target_rowid: rowid,
        target_index: ix.map(|i| i.id),
        target_unique: rowid || unique_ix.is_some(),
        target_types: fields
            .iter()
            .map(|f| target.fields[*f as usize].ty)
            .collect(),
        target_fields: fields,
    }
}

/// Resolves relation `name` of the entity at `from_pos`.
pub fn resolve(schema: &Schema, from_pos: usize, name: &str) -> Result<RelPlan> {
    let from = schema.entity_at(from_pos);
    let rel = schema
        .relations_of(&from.name)
        .find(|r| r.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            let known: Vec<&str> = schema
                .relations_of(&from.name)
                .map(|r| r.name.as_str())
                .collect();
            Error::new(
                SqlState::UndefinedColumn,
                format!(
                    "no relation {name} on {} (relations: {})",
                    from.name,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            )
        })?
        .clone();
    let fk_pos = schema
        .entity_pos(&rel.fk_entity)
        .ok_or_else(|| Error::unknown_entity(&rel.fk_entity))?;
    let fk_entity = schema.entity_at(fk_pos);
    let find_fk = |n: &str| {
        fk_entity
            .foreign_keys
            .iter()
            .find(|f| f.name == n)
            .ok_or_else(|| Error::internal(format!("foreign key {n} of relation missing")))
    };
    let fk = find_fk(&rel.fk_name)?;
    let (ppos, pfields, _) = schema.fk_parent_key(fk_entity, fk)?;
    let to_pos = schema
        .entity_pos(&rel.to)
        .ok_or_else(|| Error::unknown_entity(&rel.to))?;
    let via = format!("{}({})", fk_entity.name, names(fk_entity, &fk.fields));
    let hops = match rel.kind {
        RelationKind::ManyToMany => {
            let far = find_fk(rel.far_fk_name.as_deref().unwrap_or(""))?;
            let (tpos, tfields, _) = schema.fk_parent_key(fk_entity, far)?;
            vec![
                hop_to(fk_entity, fk_pos, pfields, fk.fields.clone()),
                hop_to(schema.entity_at(tpos), tpos, far.fields.clone(), tfields),
            ]
        }
        _ if rel.forward => vec![hop_to(
            schema.entity_at(ppos),
            ppos,
            fk.fields.clone(),
            pfields,
        )],
        _ => vec![hop_to(fk_entity, fk_pos, pfields, fk.fields.clone())],
    };
    Ok(RelPlan {
        name: rel.name.clone(),
        kind: rel.kind,
        to_one: matches!(rel.kind, RelationKind::ManyToOne | RelationKind::OneToOne),
        target_pos: to_pos,
        hops,
        via,
    })
}

/// Field names joined with ", ".
pub fn names(e: &EntityDef, fields: &[u32]) -> String {
    fields
        .iter()
        .map(|f| e.fields[*f as usize].name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn kind_name(k: RelationKind) -> &'static str {
    match k {
        RelationKind::ManyToOne => "many-to-one",
        RelationKind::OneToOne => "one-to-one",
        RelationKind::OneToMany => "one-to-many",
        RelationKind::ManyToMany => "many-to-many",
    }
}
