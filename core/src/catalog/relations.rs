//! Relations derived from foreign keys: each foreign key gives a many-to-one (or one-to-one when
//! its fields are unique) relation on the child and the inverse on the parent; an entity that only
//! joins two others (two foreign keys, no other fields besides its key) also gives a many-to-many
//! relation between them. Names are unique per entity.

use std::collections::HashSet;

use super::schema::{EntityDef, FkAction, SchemaBundle};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationKind {
    ManyToOne,
    OneToOne,
    OneToMany,
    ManyToMany,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// Unique among the relations of `from`.
    pub name: String,
    pub kind: RelationKind,
    pub from: String,
    pub to: String,
    /// The entity holding the foreign key (the join entity for many-to-many).
    pub fk_entity: String,
    /// The foreign key, on `fk_entity`, that points from that entity towards `from`'s side for
    /// inverse relations or towards `to` for forward ones; for many-to-many the key towards `from`.
    pub fk_name: String,
    /// For many-to-many: the join entity's foreign key towards `to`.
    pub far_fk_name: Option<String>,
    pub on_delete: FkAction,
    pub on_update: FkAction,
    /// True when `from` holds the foreign key (many-to-one, and the owning side of one-to-one).
    pub forward: bool,
}

fn strip_id(name: &str) -> Option<&str> {
    let s = name
        .strip_suffix("_id")
        .or_else(|| name.strip_suffix("Id"))
        .or_else(|| name.strip_suffix("_ID"))?;
    (!s.is_empty()).then_some(s)
}

fn is_join_entity(e: &EntityDef) -> bool {
    if e.foreign_keys.len() != 2 {
        return false;
    }
    let fk_fields: HashSet<u32> = e
        .foreign_keys
        .iter()
        .flat_map(|f| f.fields.iter().copied())
        .collect();
    (0..e.fields.len() as u32)
        .all(|i| fk_fields.contains(&i) || e.rowid_alias == Some(i) || e.primary_key.contains(&i))
}

struct Namer {
    taken: HashSet<(String, String)>,
}

impl Namer {
    fn unique(
        &mut self,
        entity: &EntityDef,
        wanted: String,
        fallback: impl Fn() -> String,
    ) -> String {
        let key = |n: &str| (entity.name.to_ascii_lowercase(), n.to_ascii_lowercase());
        let clash = |n: &str, taken: &HashSet<(String, String)>| {
            taken.contains(&key(n)) || entity.field_index(n).is_some()
        };
        let mut name = wanted;
        if clash(&name, &self.taken) {
            name = fallback();
        }
        let base = name.clone();
        let mut i = 2;
        while clash(&name, &self.taken) {
            name = format!("{base}_{i}");
            i += 1;
        }
        self.taken.insert(key(&name));
        name
    }
}

pub fn derive_relations(bundle: &SchemaBundle) -> Vec<Relation> {
    let mut out = Vec::new();
    let mut namer = Namer {
        taken: HashSet::new(),
    };
    let find = |n: &str| {
        bundle
            .entities
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case(n))
    };
    for child in &bundle.entities {
        for fk in &child.foreign_keys {
            let Some(parent) = find(&fk.parent) else {
                continue;
            };
            let one_to_one = child
                .indexes
                .iter()
                .any(|ix| ix.unique && ix.fields == fk.fields)
                || (fk.fields.len() == 1 && child.rowid_alias == Some(fk.fields[0]));
            let field_names: Vec<&str> = fk
                .fields
                .iter()
                .map(|i| child.fields[*i as usize].name.as_str())
                .collect();
            let forward = if field_names.len() == 1 {
                strip_id(field_names[0])
                    .map(str::to_string)
                    .unwrap_or_else(|| parent.name.clone())
            } else {
                parent.name.clone()
            };
            let joined = field_names.join("_");
            let name = namer.unique(child, forward, || format!("{}_by_{joined}", parent.name));
            out.push(Relation {
                name,
                kind: if one_to_one {
                    RelationKind::OneToOne
                } else {
                    RelationKind::ManyToOne
                },
                from: child.name.clone(),
                to: parent.name.clone(),
                fk_entity: child.name.clone(),
                fk_name: fk.name.clone(),
                far_fk_name: None,
                on_delete: fk.on_delete,
                on_update: fk.on_update,
                forward: true,
            });
            let inverse = namer.unique(parent, child.name.clone(), || {
                format!("{}_by_{joined}", child.name)
            });
            out.push(Relation {
                name: inverse,
                kind: if one_to_one {
                    RelationKind::OneToOne
                } else {
                    RelationKind::OneToMany
                },
                from: parent.name.clone(),
                to: child.name.clone(),
                fk_entity: child.name.clone(),
                fk_name: fk.name.clone(),
                far_fk_name: None,
                on_delete: fk.on_delete,
                on_update: fk.on_update,
                forward: false,
            });
        }
    }
    for join in bundle.entities.iter().filter(|e| is_join_entity(e)) {
        let (a_fk, b_fk) = (&join.foreign_keys[0], &join.foreign_keys[1]);
        for (near, far) in [(a_fk, b_fk), (b_fk, a_fk)] {
            let (Some(from), Some(to)) = (find(&near.parent), find(&far.parent)) else {
                continue;
            };
            let far_field = far
                .fields
                .first()
                .map(|i| join.fields[*i as usize].name.clone())
                .unwrap_or_default();
            let name = namer.unique(from, to.name.clone(), || {
                format!("{}_via_{}_{far_field}", to.name, join.name)
            });
            out.push(Relation {
                name,
                kind: RelationKind::ManyToMany,
                from: from.name.clone(),
                to: to.name.clone(),
                fk_entity: join.name.clone(),
                fk_name: near.name.clone(),
                far_fk_name: Some(far.name.clone()),
                on_delete: near.on_delete,
                on_update: near.on_update,
                forward: false,
            });
        }
    }
    out
}
