//! Stored schema types (rkyv) and the in-memory [`Schema`] view over one bundle.

use std::collections::HashMap;

use rkyv::{Archive, Deserialize, Serialize};

use super::relations::{derive_relations, Relation};
use crate::error::{Error, Result, SqlState};
use crate::ir::Expr;
use crate::value::{DataType, Value};

/// Stored names of temporary tables start with this (a name reserved for the engine: user
/// tables cannot start with `sqlite_`); the SQL front end appends the owning session's tag.
pub const TEMP_ENTITY_PREFIX: &str = "sqlite_temp_";

/// Whether a stored entity name is a (any session's) temporary table.
pub fn is_temp_entity_name(name: &str) -> bool {
    name.len() > TEMP_ENTITY_PREFIX.len()
        && name[..TEMP_ENTITY_PREFIX.len()].eq_ignore_ascii_case(TEMP_ENTITY_PREFIX)
        && !name.eq_ignore_ascii_case("sqlite_temp_master")
        && !name.eq_ignore_ascii_case("sqlite_temp_schema")
}

/// Bumped when the stored layout of bundles changes (3: generated columns on fields).
pub const BUNDLE_FORMAT: u32 = 3;

#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub struct SchemaBundle {
    pub format: u32,
    /// 0 for the empty schema, then +1 per committed change.
    pub version: u64,
    pub entities: Vec<EntityDef>,
    pub next_table_id: u32,
    pub next_index_id: u32,
    /// Views (CREATE VIEW), in creation order.
    pub views: Vec<ViewDef>,
    /// `PRAGMA user_version`: kept in the bundle so it is transactional and survives restart.
    pub user_version: i64,
}

/// A view: a named query, expanded as a derived table wherever it is read.
#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub struct ViewDef {
    pub name: String,
    /// The CREATE VIEW text as SQLite keeps it (`CREATE VIEW ` + the text from the name on).
    pub sql: String,
}

/// The bundle layout before views, user_version and keyed indexes (format 1), still
/// readable.
#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
struct SchemaBundleV1 {
    format: u32,
    version: u64,
    entities: Vec<EntityDefV1>,
    next_table_id: u32,
    next_index_id: u32,
}

#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
struct EntityDefV1 {
    id: u32,
    name: String,
    fields: Vec<FieldDefV2>,
    primary_key: Vec<u32>,
    rowid_alias: Option<u32>,
    autoincrement: bool,
    strict: bool,
    soft_delete: bool,
    indexes: Vec<IndexDefV1>,
    checks: Vec<CheckDef>,
    foreign_keys: Vec<ForeignKeyDef>,
    sql: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
struct IndexDefV1 {
    id: u32,
    name: String,
    fields: Vec<u32>,
    unique: bool,
    origin: IndexOrigin,
    sql: Option<String>,
}

/// The bundle layout of format 2: fields without generated columns.
#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
struct SchemaBundleV2 {
    format: u32,
    version: u64,
    entities: Vec<EntityDefV2>,
    next_table_id: u32,
    next_index_id: u32,
    views: Vec<ViewDef>,
    user_version: i64,
}

#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
struct EntityDefV2 {
    id: u32,
    name: String,
    fields: Vec<FieldDefV2>,
    primary_key: Vec<u32>,
    rowid_alias: Option<u32>,
    autoincrement: bool,
    strict: bool,
    soft_delete: bool,
    indexes: Vec<IndexDef>,
    checks: Vec<CheckDef>,
    foreign_keys: Vec<ForeignKeyDef>,
    sql: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
struct FieldDefV2 {
    name: String,
    ty: DataType,
    decl_type: String,
    nullable: bool,
    default: Option<DefaultValue>,
}

impl From<FieldDefV2> for FieldDef {
    fn from(f: FieldDefV2) -> FieldDef {
        FieldDef {
            name: f.name,
            ty: f.ty,
            decl_type: f.decl_type,
            nullable: f.nullable,
            default: f.default,
            generated: None,
        }
    }
}

impl From<EntityDefV2> for EntityDef {
    fn from(e: EntityDefV2) -> EntityDef {
        EntityDef {
            id: e.id,
            name: e.name,
            fields: e.fields.into_iter().map(FieldDef::from).collect(),
            primary_key: e.primary_key,
            rowid_alias: e.rowid_alias,
            autoincrement: e.autoincrement,
            strict: e.strict,
            soft_delete: e.soft_delete,
            indexes: e.indexes,
            checks: e.checks,
            foreign_keys: e.foreign_keys,
            sql: e.sql,
        }
    }
}

impl From<EntityDefV1> for EntityDef {
    fn from(e: EntityDefV1) -> EntityDef {
        EntityDef {
            id: e.id,
            name: e.name,
            fields: e.fields.into_iter().map(FieldDef::from).collect(),
            primary_key: e.primary_key,
            rowid_alias: e.rowid_alias,
            autoincrement: e.autoincrement,
            strict: e.strict,
            soft_delete: e.soft_delete,
            indexes: e
                .indexes
                .into_iter()
                .map(|i| IndexDef {
                    id: i.id,
                    name: i.name,
                    fields: i.fields,
                    unique: i.unique,
                    origin: i.origin,
                    sql: i.sql,
                    key_exprs: Vec::new(),
                    predicate: None,
                })
                .collect(),
            checks: e.checks,
            foreign_keys: e.foreign_keys,
            sql: e.sql,
        }
    }
}

impl Default for SchemaBundle {
    fn default() -> Self {
        SchemaBundle {
            format: BUNDLE_FORMAT,
            version: 0,
            entities: Vec::new(),
            next_table_id: 1,
            next_index_id: 1,
            views: Vec::new(),
            user_version: 0,
        }
    }
}

impl SchemaBundle {
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        rkyv::to_bytes::<rkyv::rancor::Error>(self)
            .map(|b| b.to_vec())
            .map_err(|e| Error::internal(format!("serializing the schema bundle: {e}")))
    }

    /// Validates and decodes a stored bundle.
    pub fn from_bytes(bytes: &[u8]) -> Result<SchemaBundle> {
        let b = match rkyv::from_bytes::<SchemaBundle, rkyv::rancor::Error>(bytes) {
            Ok(b) => b,
            Err(e) => match rkyv::from_bytes::<SchemaBundleV2, rkyv::rancor::Error>(bytes) {
                // Databases written before generated columns: the same bundle without any.
                Ok(old) if old.format == 2 => SchemaBundle {
                    format: BUNDLE_FORMAT,
                    version: old.version,
                    entities: old.entities.into_iter().map(EntityDef::from).collect(),
                    next_table_id: old.next_table_id,
                    next_index_id: old.next_index_id,
                    views: old.views,
                    user_version: old.user_version,
                },
                _ => Self::from_v1_bytes(bytes, e)?,
            },
        };
        if b.format != BUNDLE_FORMAT {
            return Err(Error::corrupted(format!(
                "schema bundle format {} is not supported by this build (expects {BUNDLE_FORMAT})",
                b.format
            )));
        }
        Ok(b)
    }

    fn from_v1_bytes(bytes: &[u8], e: rkyv::rancor::Error) -> Result<SchemaBundle> {
        match rkyv::from_bytes::<SchemaBundleV1, rkyv::rancor::Error>(bytes) {
            // Databases written before views existed: the same bundle with none.
            Ok(old) if old.format == 1 => Ok(SchemaBundle {
                format: BUNDLE_FORMAT,
                version: old.version,
                entities: old.entities.into_iter().map(EntityDef::from).collect(),
                next_table_id: old.next_table_id,
                next_index_id: old.next_index_id,
                views: Vec::new(),
                user_version: 0,
            }),
            _ => Err(Error::corrupted(format!(
                "stored schema bundle is invalid: {e}"
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub struct EntityDef {
    /// Table id: stable for the life of the entity, never reused.
    pub id: u32,
    pub name: String,
    pub fields: Vec<FieldDef>,
    /// Positions of the primary key fields; empty when the identity is the row id alone.
    pub primary_key: Vec<u32>,
    /// The field that aliases the 64-bit row id (`INTEGER PRIMARY KEY`).
    pub rowid_alias: Option<u32>,
    pub autoincrement: bool,
    /// Values must fit their field type (else 42804); when false, SQLite's lenient affinity.
    pub strict: bool,
    /// Deletes mark rows instead of removing them; reads skip marked rows unless asked.
    pub soft_delete: bool,
    pub indexes: Vec<IndexDef>,
    pub checks: Vec<CheckDef>,
    pub foreign_keys: Vec<ForeignKeyDef>,
    /// Original CREATE statement text, when the entity came from SQL.
    pub sql: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub struct FieldDef {
    pub name: String,
    pub ty: DataType,
    /// Declared type name as written (`VARCHAR(20)`), for introspection.
    pub decl_type: String,
    pub nullable: bool,
    pub default: Option<DefaultValue>,
    /// A generated column (`GENERATED ALWAYS AS (expr)`): its value is computed from the
    /// row on every write, never given.
    pub generated: Option<Generated>,
}

/// How a generated column's value is computed. VIRTUAL columns are stored like STORED ones
/// (reads cannot tell the difference); the kind is kept for introspection.
#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub struct Generated {
    /// Over the row's fields by position (other generated fields included).
    pub expr: Expr,
    pub stored: bool,
}

#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub enum DefaultValue {
    Literal(Value),
    CurrentTimestamp,
    CurrentDate,
    CurrentTime,
    /// A constant expression evaluated at insert time.
    Expr(Expr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub enum IndexOrigin {
    /// CREATE INDEX / the native API.
    Explicit,
    /// A primary key that is not the row id.
    PrimaryKey,
    /// A UNIQUE constraint.
    Unique,
    /// Created automatically for the fields of a foreign key.
    ForeignKey,
}

#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub struct IndexDef {
    pub id: u32,
    pub name: String,
    /// Key fields of a plain index. Empty for a keyed index (see `key_exprs`), so every
    /// planner that matches predicates to `fields` passes it by.
    pub fields: Vec<u32>,
    pub unique: bool,
    pub origin: IndexOrigin,
    pub sql: Option<String>,
    /// A keyed index's key: one expression per key column (expression indexes, and the
    /// columns of a partial index).
    pub key_exprs: Vec<Expr>,
    /// A partial index: only rows for which this is true have entries (and are unique).
    pub predicate: Option<Expr>,
}

impl IndexDef {
    /// Whether the key is computed (`key_exprs`) rather than read from `fields`.
    pub fn is_keyed(&self) -> bool {
        !self.key_exprs.is_empty()
    }

    /// The index key of a stored row, or None when a partial index leaves the row out.
    pub fn entry_values(&self, e: &EntityDef, row: &[Value]) -> Result<Option<Vec<Value>>> {
        if !self.is_keyed() {
            return Ok(Some(
                self.fields
                    .iter()
                    .map(|f| e.stored_value(row, *f))
                    .collect(),
            ));
        }
        // Rows written before a field was added are shorter: read them at full width.
        let full: Vec<Value> = (0..e.fields.len() as u32)
            .map(|f| e.stored_value(row, f))
            .collect();
        if let Some(p) = &self.predicate {
            if crate::ir::expr::truthy(&p.eval(&full)?) != Some(true) {
                return Ok(None);
            }
        }
        self.key_exprs
            .iter()
            .map(|x| x.eval(&full))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// For an index over plain columns some of which fold under their collation (see
    /// [`crate::ir::expr::COLLATE_NOCASE_FN`]): each key column's field and fold function.
    pub fn collated_columns(&self) -> Option<Vec<(u32, Option<&str>)>> {
        if !self.is_keyed() || self.predicate.is_some() {
            return None;
        }
        let cols = self
            .key_exprs
            .iter()
            .map(|x| match x {
                Expr::Field(f) => Some((*f, None)),
                Expr::Function { name, args } if name.starts_with("$collate_") => match args[..] {
                    [Expr::Field(f)] => Some((f, Some(name.as_str()))),
                    _ => None,
                },
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        cols.iter().any(|(_, c)| c.is_some()).then_some(cols)
    }

    /// The columns of an index over plain columns (folded under a collation or not): what an
    /// ON CONFLICT target names. None for expression and partial indexes.
    pub fn column_fields(&self) -> Option<Vec<u32>> {
        if !self.is_keyed() {
            return Some(self.fields.clone());
        }
        self.collated_columns()
            .map(|c| c.iter().map(|(f, _)| *f).collect())
    }

    /// Fields the key or predicate reads.
    pub fn references(&self, field: u32) -> bool {
        self.fields.contains(&field)
            || self.key_exprs.iter().any(|x| x.references(field))
            || self.predicate.as_ref().is_some_and(|p| p.references(field))
    }

    /// What a uniqueness error names: the fields, or the index of an expression key.
    pub fn describe(&self, e: &EntityDef) -> String {
        if let Some(cols) = self.collated_columns() {
            let fields: Vec<u32> = cols.iter().map(|(f, _)| *f).collect();
            return e.field_names(&fields);
        }
        if self.key_exprs.iter().all(|x| matches!(x, Expr::Field(_))) {
            let fields: Vec<u32> = if self.is_keyed() {
                self.key_exprs
                    .iter()
                    .filter_map(|x| match x {
                        Expr::Field(f) => Some(*f),
                        _ => None,
                    })
                    .collect()
            } else {
                self.fields.clone()
            };
            e.field_names(&fields)
        } else {
            format!("index '{}'", self.name)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub struct CheckDef {
    pub name: String,
    pub expr: Expr,
    pub sql: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub enum FkAction {
    NoAction,
    Restrict,
    Cascade,
    SetNull,
    SetDefault,
}

impl FkAction {
    pub fn sql_name(self) -> &'static str {
        match self {
            FkAction::NoAction => "NO ACTION",
            FkAction::Restrict => "RESTRICT",
            FkAction::Cascade => "CASCADE",
            FkAction::SetNull => "SET NULL",
            FkAction::SetDefault => "SET DEFAULT",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub struct ForeignKeyDef {
    pub name: String,
    pub fields: Vec<u32>,
    /// Parent entity by name: SQLite allows a reference to a table created later.
    pub parent: String,
    /// Parent key fields by name; empty means the parent's primary key.
    pub parent_fields: Vec<String>,
    pub on_delete: FkAction,
    pub on_update: FkAction,
    /// DEFERRABLE INITIALLY DEFERRED: checked at commit instead of after each operation.
    pub deferred: bool,
}

impl EntityDef {
    /// Whether any field is a generated column.
    pub fn has_generated(&self) -> bool {
        self.fields.iter().any(|f| f.generated.is_some())
    }

    /// Positions of the generated fields in an order where each comes after the generated
    /// fields its expression reads (a generated column may read one declared after it).
    /// A cycle is an error naming a column on it.
    pub fn generated_order(&self) -> Result<Vec<usize>> {
        let n = self.fields.len();
        // 0 = not visited, 1 = on the current path, 2 = done
        let mut state = vec![0u8; n];
        let mut order = Vec::new();
        fn visit(e: &EntityDef, i: usize, state: &mut [u8], order: &mut Vec<usize>) -> Result<()> {
            match state[i] {
                2 => return Ok(()),
                1 => {
                    return Err(Error::new(
                        SqlState::SyntaxError,
                        format!("generated column loop on \"{}\"", e.fields[i].name),
                    ))
                }
                _ => {}
            }
            let Some(g) = &e.fields[i].generated else {
                state[i] = 2;
                return Ok(());
            };
            state[i] = 1;
            let mut deps = Vec::new();
            g.expr.visit(&mut |x| {
                if let Expr::Field(f) = x {
                    deps.push(*f as usize);
                }
            });
            for d in deps {
                if d < e.fields.len() {
                    visit(e, d, state, order)?;
                }
            }
            state[i] = 2;
            order.push(i);
            Ok(())
        }
        for i in 0..n {
            if self.fields[i].generated.is_some() {
                visit(self, i, &mut state, &mut order)?;
            }
        }
        Ok(order)
    }

    /// Whether generated field `g` reads field `f`, directly or through other generated fields.
    pub fn generated_depends_on(&self, g: usize, f: u32) -> bool {
        let mut seen = vec![false; self.fields.len()];
        let mut stack = vec![g];
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            let Some(gen) = &self.fields[i].generated else {
                continue;
            };
            let mut hit = false;
            gen.expr.visit(&mut |x| {
                if let Expr::Field(d) = x {
                    hit |= *d == f;
                    if (*d as usize) < seen.len() {
                        stack.push(*d as usize);
                    }
                }
            });
            if hit {
                return true;
            }
        }
        false
    }

    pub fn field_index(&self, name: &str) -> Option<u32> {
        self.fields
            .iter()
            .position(|f| f.name.eq_ignore_ascii_case(name))
            .map(|i| i as u32)
    }

    pub fn field_index_or_err(&self, name: &str) -> Result<u32> {
        self.field_index(name)
            .ok_or_else(|| Error::unknown_field(&self.name, name))
    }

    pub fn index_by_name(&self, name: &str) -> Option<&IndexDef> {
        self.indexes
            .iter()
            .find(|i| i.name.eq_ignore_ascii_case(name))
    }

    /// The value of `field` in a stored row. Rows written before a field was added are shorter:
    /// the missing fields read as the field's constant default (as in SQLite).
    pub fn stored_value(&self, row: &[Value], field: u32) -> Value {
        match row.get(field as usize) {
            Some(v) => v.clone(),
            None => match self
                .fields
                .get(field as usize)
                .and_then(|f| f.default.as_ref())
            {
                Some(DefaultValue::Literal(v)) => v.clone(),
                _ => Value::Null,
            },
        }
    }

    /// Field names of an index or key, for messages.
    pub fn field_names(&self, fields: &[u32]) -> String {
        fields
            .iter()
            .map(|i| format!("{}.{}", self.name, self.fields[*i as usize].name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The index that enforces the primary key, when it is not the row id.
    pub fn primary_key_index(&self) -> Option<&IndexDef> {
        self.indexes
            .iter()
            .find(|i| i.origin == IndexOrigin::PrimaryKey)
    }

    /// An index whose leading fields are exactly `fields` (in any order for uniqueness purposes
    /// when `unique_only`), used for foreign key lookups.
    pub fn index_on(&self, fields: &[u32], unique_only: bool) -> Option<&IndexDef> {
        self.indexes.iter().find(|ix| {
            (!unique_only || (ix.unique && ix.fields.len() == fields.len()))
                && ix.fields.len() >= fields.len()
                && ix.fields[..fields.len()] == *fields
        })
    }

    /// The unique index on exactly `fields` whose key folds collated columns (a PRIMARY KEY or
    /// UNIQUE on a `COLLATE NOCASE` column): a parent key SQLite compares under that collation.
    pub fn collated_unique_on(&self, fields: &[u32]) -> Option<&IndexDef> {
        self.indexes.iter().find(|ix| {
            ix.unique
                && ix
                    .collated_columns()
                    .is_some_and(|c| c.iter().map(|(f, _)| *f).eq(fields.iter().copied()))
        })
    }
}

/// A bundle plus lookup tables. Shared as `Arc<Schema>` by transactions reading that version.
#[derive(Debug)]
pub struct Schema {
    pub bundle: SchemaBundle,
    by_name: HashMap<String, usize>,
    by_id: HashMap<u32, usize>,
    /// For each parent entity position: (child entity position, fk position) pointing at it.
    incoming: HashMap<usize, Vec<(usize, usize)>>,
    relations: Vec<Relation>,
}

impl Schema {
    pub fn new(bundle: SchemaBundle) -> Schema {
        let mut by_name = HashMap::new();
        let mut by_id = HashMap::new();
        let mut incoming: HashMap<usize, Vec<(usize, usize)>> = HashMap::new();
        for (i, e) in bundle.entities.iter().enumerate() {
            by_name.insert(e.name.to_ascii_lowercase(), i);
            by_id.insert(e.id, i);
        }
        for (ci, e) in bundle.entities.iter().enumerate() {
            for (fi, fk) in e.foreign_keys.iter().enumerate() {
                if let Some(&pi) = by_name.get(&fk.parent.to_ascii_lowercase()) {
                    incoming.entry(pi).or_default().push((ci, fi));
                }
            }
        }
        let relations = derive_relations(&bundle);
        Schema {
            bundle,
            by_name,
            by_id,
            incoming,
            relations,
        }
    }

    pub fn version(&self) -> u64 {
        self.bundle.version
    }

    pub fn entities(&self) -> &[EntityDef] {
        &self.bundle.entities
    }

    pub fn entity_pos(&self, name: &str) -> Option<usize> {
        if let Some(&i) = self.by_name.get(name) {
            return Some(i);
        }
        self.by_name.get(&name.to_ascii_lowercase()).copied()
    }

    pub fn entity(&self, name: &str) -> Result<&EntityDef> {
        self.entity_pos(name)
            .map(|i| &self.bundle.entities[i])
            .ok_or_else(|| Error::unknown_entity(name))
    }

    pub fn view(&self, name: &str) -> Option<&ViewDef> {
        self.bundle
            .views
            .iter()
            .find(|v| v.name.eq_ignore_ascii_case(name))
    }

    pub fn views(&self) -> &[ViewDef] {
        &self.bundle.views
    }

    pub fn entity_by_id(&self, id: u32) -> Option<&EntityDef> {
        self.by_id.get(&id).map(|&i| &self.bundle.entities[i])
    }

    pub fn entity_at(&self, pos: usize) -> &EntityDef {
        &self.bundle.entities[pos]
    }

    /// Foreign keys of other entities (or this one) that reference entity `pos`.
    pub fn incoming(&self, pos: usize) -> &[(usize, usize)] {
        self.incoming.get(&pos).map_or(&[], |v| v.as_slice())
    }

    /// Relations derived from foreign keys, named per entity.
    pub fn relations(&self) -> &[Relation] {
        &self.relations
    }

    pub fn relations_of(&self, entity: &str) -> impl Iterator<Item = &Relation> {
        let e = entity.to_string();
        self.relations
            .iter()
            .filter(move |r| r.from.eq_ignore_ascii_case(&e))
    }

    /// Resolves the parent key of a foreign key: (parent position, parent key fields, whether the
    /// key is the parent's row id). Errors like SQLite's "foreign key mismatch" when the parent
    /// key is not a primary key or unique.
    pub fn fk_parent_key(
        &self,
        child: &EntityDef,
        fk: &ForeignKeyDef,
    ) -> Result<(usize, Vec<u32>, bool)> {
        let ppos = self.entity_pos(&fk.parent).ok_or_else(|| {
            Error::new(
                SqlState::ForeignKeyViolation,
                format!(
                    "foreign key {} on {} references missing table {}",
                    fk.name, child.name, fk.parent
                ),
            )
        })?;
        let parent = &self.bundle.entities[ppos];
        let fields: Vec<u32> = if fk.parent_fields.is_empty() {
            if parent.primary_key.is_empty() {
                return Err(Error::new(
                    SqlState::ForeignKeyViolation,
                    format!(
                        "foreign key mismatch: {} references {} which has no primary key",
                        child.name, parent.name
                    ),
                ));
            }
            parent.primary_key.clone()
        } else {
            fk.parent_fields
                .iter()
                .map(|n| parent.field_index_or_err(n))
                .collect::<Result<_>>()?
        };
        if fields.len() != fk.fields.len() {
            return Err(Error::new(
                SqlState::ForeignKeyViolation,
                format!(
                    "foreign key mismatch: {} has {} fields but the key of {} has {}",
                    fk.name,
                    fk.fields.len(),
                    parent.name,
                    fields.len()
                ),
            ));
        }
        let is_rowid = fields.len() == 1 && parent.rowid_alias == Some(fields[0]);
        if !is_rowid
            && parent.index_on(&fields, true).is_none()
            && parent.collated_unique_on(&fields).is_none()
        {
            return Err(Error::new(
                SqlState::ForeignKeyViolation,
                format!(
                    "foreign key mismatch: {} on {} references {}({}), which is neither a primary key nor unique",
                    fk.name,
                    child.name,
                    parent.name,
                    parent.field_names(&fields)
                ),
            ));
        }
        Ok((ppos, fields, is_rowid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_format_1_bundles_as_bundles_without_views() {
        let old = SchemaBundleV1 {
            format: 1,
            version: 7,
            entities: vec![EntityDefV1 {
                id: 1,
                name: "t".into(),
                fields: vec![FieldDefV2 {
                    name: "a".into(),
                    ty: DataType::Integer,
                    decl_type: "INT".into(),
                    nullable: true,
                    default: None,
                }],
                primary_key: Vec::new(),
                rowid_alias: None,
                autoincrement: false,
                strict: false,
                soft_delete: false,
                indexes: vec![IndexDefV1 {
                    id: 2,
                    name: "ix".into(),
                    fields: vec![0],
                    unique: true,
                    origin: IndexOrigin::Explicit,
                    sql: None,
                }],
                checks: Vec::new(),
                foreign_keys: Vec::new(),
                sql: None,
            }],
            next_table_id: 3,
            next_index_id: 5,
        };
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&old).expect("serialize");
        let b = SchemaBundle::from_bytes(&bytes).expect("format 1 decodes");
        assert_eq!(
            (b.format, b.version, b.next_table_id, b.next_index_id),
            (BUNDLE_FORMAT, 7, 3, 5)
        );
        assert!(b.views.is_empty());
        assert_eq!(b.user_version, 0);
        assert_eq!(b.entities[0].indexes[0].fields, vec![0]);
        assert!(!b.entities[0].indexes[0].is_keyed());
        let mut new = SchemaBundle::default();
        new.views.push(ViewDef {
            name: "v".into(),
            sql: "CREATE VIEW v AS SELECT 1".into(),
        });
        new.user_version = 9;
        let back = SchemaBundle::from_bytes(&new.to_bytes().expect("bytes")).expect("decode");
        assert_eq!(back, new);
    }

    #[test]
    fn reads_format_2_bundles_as_bundles_without_generated_columns() {
        let old = SchemaBundleV2 {
            format: 2,
            version: 4,
            entities: vec![EntityDefV2 {
                id: 1,
                name: "t".into(),
                fields: vec![FieldDefV2 {
                    name: "a".into(),
                    ty: DataType::Text,
                    decl_type: "TEXT".into(),
                    nullable: false,
                    default: Some(DefaultValue::Literal(Value::Text("x".into()))),
                }],
                primary_key: Vec::new(),
                rowid_alias: None,
                autoincrement: false,
                strict: false,
                soft_delete: false,
                indexes: Vec::new(),
                checks: Vec::new(),
                foreign_keys: Vec::new(),
                sql: Some("CREATE TABLE t(a TEXT NOT NULL DEFAULT 'x')".into()),
            }],
            next_table_id: 2,
            next_index_id: 1,
            views: vec![ViewDef {
                name: "v".into(),
                sql: "CREATE VIEW v AS SELECT a FROM t".into(),
            }],
            user_version: 3,
        };
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&old).expect("serialize");
        let b = SchemaBundle::from_bytes(&bytes).expect("format 2 decodes");
        assert_eq!((b.format, b.version, b.user_version), (BUNDLE_FORMAT, 4, 3));
        assert_eq!(b.views.len(), 1);
        let f = &b.entities[0].fields[0];
        assert_eq!(
            (f.name.as_str(), f.nullable, f.generated.is_none()),
            ("a", false, true)
        );
        assert_eq!(
            f.default,
            Some(DefaultValue::Literal(Value::Text("x".into())))
        );
    }
}
