//! Entity specifications as users (and the SQL front end) write them, by field name, and their
//! resolution into stored [`EntityDef`]s with positions, ids and the indexes that back primary
//! keys, unique constraints and foreign keys.

use super::schema::*;
use crate::error::{Error, Result, SqlState};
use crate::ir::Expr;
use crate::value::{DataType, Value};

#[derive(Debug, Clone, Default)]
pub struct EntitySpec {
    pub name: String,
    pub fields: Vec<FieldDef>,
    pub primary_key: Vec<String>,
    pub autoincrement: bool,
    pub strict: bool,
    pub soft_delete: bool,
    pub uniques: Vec<(Option<String>, Vec<String>)>,
    pub checks: Vec<(Option<String>, Expr, Option<String>)>,
    pub foreign_keys: Vec<ForeignKeySpec>,
    pub indexes: Vec<IndexSpec>,
    pub sql: Option<String>,
    /// Fields declared with a NOCASE / RTRIM collation and the fold function of it
    /// (`crate::ir::expr::collation_fold_fn`): their UNIQUE / PRIMARY KEY indexes fold keys.
    pub collations: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct ForeignKeySpec {
    pub name: Option<String>,
    pub fields: Vec<String>,
    pub parent: String,
    pub parent_fields: Vec<String>,
    pub on_delete: FkAction,
    pub on_update: FkAction,
    pub deferred: bool,
}

#[derive(Debug, Clone)]
pub struct IndexSpec {
    pub name: String,
    pub fields: Vec<String>,
    pub unique: bool,
    pub sql: Option<String>,
    /// A keyed index (expressions or a partial index): the key expressions, field names
    /// unresolved; `fields` is then empty.
    pub key_exprs: Vec<Expr>,
    /// A partial index's condition (field names unresolved).
    pub predicate: Option<Expr>,
}

impl FieldDef {
    /// A nullable field without default; the declared type is the type's name.
    pub fn new(name: &str, ty: DataType) -> FieldDef {
        FieldDef {
            name: name.to_string(),
            ty,
            decl_type: ty.name().to_string(),
            nullable: true,
            default: None,
            generated: None,
        }
    }
    pub fn not_null(mut self) -> Self {
        self.nullable = false;
        self
    }
    pub fn default_value(mut self, v: impl Into<Value>) -> Self {
        self.default = Some(DefaultValue::Literal(v.into()));
        self
    }
    pub fn default_with(mut self, d: DefaultValue) -> Self {
        self.default = Some(d);
        self
    }
    pub fn declared(mut self, decl: &str) -> Self {
        self.decl_type = decl.to_string();
        self
    }
}

impl EntitySpec {
    /// A strict entity (values must fit field types), as the native API defaults to.
    pub fn new(name: &str) -> EntitySpec {
        EntitySpec {
            name: name.to_string(),
            strict: true,
            ..Default::default()
        }
    }
    pub fn field(mut self, f: FieldDef) -> Self {
        self.fields.push(f);
        self
    }
    /// Shorthand for an `INTEGER PRIMARY KEY` identity field aliasing the row id.
    pub fn id(self, name: &str) -> Self {
        self.field(FieldDef::new(name, DataType::Integer))
            .primary_key(&[name])
    }
    pub fn primary_key(mut self, fields: &[&str]) -> Self {
        self.primary_key = fields.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn autoincrement(mut self) -> Self {
        self.autoincrement = true;
        self
    }
    pub fn lenient(mut self) -> Self {
        self.strict = false;
        self
    }
    pub fn soft_delete(mut self) -> Self {
        self.soft_delete = true;
        self
    }
    pub fn unique(mut self, fields: &[&str]) -> Self {
        self.uniques
            .push((None, fields.iter().map(|s| s.to_string()).collect()));
        self
    }
    pub fn unique_named(mut self, name: &str, fields: &[&str]) -> Self {
        self.uniques.push((
            Some(name.to_string()),
            fields.iter().map(|s| s.to_string()).collect(),
        ));
        self
    }
    /// A CHECK constraint; field references in `expr` may be [`Expr::Named`].
    pub fn check(mut self, name: &str, expr: Expr) -> Self {
        self.checks.push((Some(name.to_string()), expr, None));
        self
    }
    pub fn foreign_key(mut self, fk: ForeignKeySpec) -> Self {
        self.foreign_keys.push(fk);
        self
    }
    pub fn index(mut self, name: &str, fields: &[&str]) -> Self {
        self.indexes.push(IndexSpec::new(name, fields, false));
        self
    }
}

impl ForeignKeySpec {
    /// `fields` of the child reference `parent_fields` of `parent` (empty: its primary key).
    pub fn new(fields: &[&str], parent: &str, parent_fields: &[&str]) -> Self {
        ForeignKeySpec {
            name: None,
            fields: fields.iter().map(|s| s.to_string()).collect(),
            parent: parent.to_string(),
            parent_fields: parent_fields.iter().map(|s| s.to_string()).collect(),
            on_delete: FkAction::NoAction,
            on_update: FkAction::NoAction,
            deferred: false,
        }
    }
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }
    pub fn on_delete(mut self, a: FkAction) -> Self {
        self.on_delete = a;
        self
    }
    pub fn on_update(mut self, a: FkAction) -> Self {
        self.on_update = a;
        self
    }
    pub fn deferred(mut self) -> Self {
        self.deferred = true;
        self
    }
}

impl IndexSpec {
    pub fn new(name: &str, fields: &[&str], unique: bool) -> Self {
        IndexSpec {
            name: name.to_string(),
            fields: fields.iter().map(|s| s.to_string()).collect(),
            unique,
            sql: None,
            key_exprs: Vec::new(),
            predicate: None,
        }
    }
}

fn resolve_fields(e: &EntityDef, names: &[String], what: &str) -> Result<Vec<u32>> {
    if names.is_empty() {
        return Err(Error::invalid(format!(
            "{what} on {} names no fields",
            e.name
        )));
    }
    let out = names
        .iter()
        .map(|n| e.field_index_or_err(n))
        .collect::<Result<Vec<_>>>()?;
    let mut seen = out.clone();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != out.len() {
        return Err(Error::invalid(format!(
            "{what} on {} names a field twice",
            e.name
        )));
    }
    Ok(out)
}

/// Checks that an object name is usable.
pub fn check_name(kind: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 1024 || name.contains('\0') {
        return Err(Error::invalid(format!("invalid {kind} name {name:?}")));
    }
    Ok(())
}

/// Whether any index of any entity already has this name.
pub fn index_name_taken(bundle: &SchemaBundle, name: &str) -> bool {
    bundle
        .entities
        .iter()
        .any(|e| e.indexes.iter().any(|i| i.name.eq_ignore_ascii_case(name)))
}

/// Adds an index to `e`, allocating its id from `bundle`.
pub fn add_index(
    bundle: &mut SchemaBundle,
    e: &mut EntityDef,
    name: String,
    fields: Vec<u32>,
    unique: bool,
    origin: IndexOrigin,
    sql: Option<String>,
) -> Result<u32> {
    check_name("index", &name)?;
    if index_name_taken(bundle, &name)
        || e.indexes.iter().any(|i| i.name.eq_ignore_ascii_case(&name))
    {
        return Err(Error::new(
            SqlState::DuplicateObject,
            format!("index {name} already exists"),
        ));
    }
    let id = bundle.next_index_id;
    bundle.next_index_id += 1;
    e.indexes.push(IndexDef {
        id,
        name,
        fields,
        unique,
        origin,
        sql,
        key_exprs: Vec::new(),
        predicate: None,
    });
    Ok(id)
}

/// Makes sure a foreign key's fields are the leading fields of some index on the child, so
/// parent deletes and updates find children with one range lookup.
/// Returns the id of the index it created, if any.
pub fn ensure_fk_index(
    bundle: &mut SchemaBundle,
    e: &mut EntityDef,
    fk_pos: usize,
) -> Result<Option<u32>> {
    let fields = e.foreign_keys[fk_pos].fields.clone();
    if e.index_on(&fields, false).is_some()
        || (fields.len() == 1 && e.rowid_alias == Some(fields[0]))
    {
        return Ok(None);
    }
    let cols: Vec<&str> = fields
        .iter()
        .map(|i| e.fields[*i as usize].name.as_str())
        .collect();
    let mut name = format!("ormdb_fk_{}_{}", e.name, cols.join("_"));
    let mut n = 2;
    while index_name_taken(bundle, &name) || e.index_by_name(&name).is_some() {
        name = format!("ormdb_fk_{}_{}_{n}", e.name, cols.join("_"));
        n += 1;
    }
    add_index(
        bundle,
        e,
        name,
        fields,
        false,
        IndexOrigin::ForeignKey,
        None,
    )
    .map(Some)
}

pub fn resolve_fk(e: &EntityDef, spec: &ForeignKeySpec, n: usize) -> Result<ForeignKeyDef> {
    let fields = resolve_fields(e, &spec.fields, "foreign key")?;
    if !spec.parent_fields.is_empty() && spec.parent_fields.len() != fields.len() {
        return Err(Error::invalid(format!(
            "foreign key on {} has {} fields but references {}",
            e.name,
            fields.len(),
            spec.parent_fields.len()
        )));
    }
    check_name("table", &spec.parent)?;
    Ok(ForeignKeyDef {
        name: spec
            .name
            .clone()
            .unwrap_or_else(|| format!("fk_{}_{}", e.name, n)),
        fields,
        parent: spec.parent.clone(),
        parent_fields: spec.parent_fields.clone(),
        on_delete: spec.on_delete,
        on_update: spec.on_update,
        deferred: spec.deferred,
    })
}

/// Resolves the column names in generated-column expressions to positions and checks
/// SQLite's rules: no DEFAULT, at least one ordinary column, no loop between them.
fn resolve_generated(e: &mut EntityDef) -> Result<()> {
    if !e.has_generated() {
        return Ok(());
    }
    if e.fields.iter().all(|f| f.generated.is_some()) {
        return Err(Error::new(
            SqlState::SyntaxError,
            format!(
                "table {} must have at least one non-generated column",
                e.name
            ),
        ));
    }
    let names: Vec<String> = e.fields.iter().map(|f| f.name.clone()).collect();
    let count = names.len();
    let lookup = |n: &str| {
        names
            .iter()
            .position(|f| f.eq_ignore_ascii_case(n))
            .map(|i| i as u32)
    };
    for f in &mut e.fields {
        let Some(g) = &mut f.generated else {
            continue;
        };
        if f.default.is_some() {
            return Err(Error::new(
                SqlState::SyntaxError,
                "cannot use DEFAULT on a generated column",
            ));
        }
        g.expr.resolve(&lookup)?;
        g.expr.validate(count)?;
    }
    e.generated_order()?;
    Ok(())
}

/// Validates a spec and turns it into a stored entity, allocating ids from `bundle`.
pub fn resolve_entity(bundle: &mut SchemaBundle, spec: &EntitySpec) -> Result<EntityDef> {
    check_name("table", &spec.name)?;
    if bundle
        .entities
        .iter()
        .any(|e| e.name.eq_ignore_ascii_case(&spec.name))
        || bundle
            .views
            .iter()
            .any(|v| v.name.eq_ignore_ascii_case(&spec.name))
    {
        return Err(Error::new(
            SqlState::DuplicateObject,
            format!("table {} already exists", spec.name),
        ));
    }
    if spec.fields.is_empty() {
        return Err(Error::invalid(format!(
            "table {} must have at least one column",
            spec.name
        )));
    }
    if spec.fields.len() > 32_000 {
        return Err(Error::new(
            SqlState::LimitExceeded,
            format!("table {} has too many columns", spec.name),
        ));
    }
    for (i, f) in spec.fields.iter().enumerate() {
        check_name("column", &f.name)?;
        if spec.fields[..i]
            .iter()
            .any(|g| g.name.eq_ignore_ascii_case(&f.name))
        {
            return Err(Error::new(
                SqlState::DuplicateObject,
                format!("duplicate column name: {}", f.name),
            ));
        }
    }
    let mut e = EntityDef {
        id: bundle.next_table_id,
        name: spec.name.clone(),
        fields: spec.fields.clone(),
        primary_key: Vec::new(),
        rowid_alias: None,
        autoincrement: false,
        strict: spec.strict,
        soft_delete: spec.soft_delete,
        indexes: Vec::new(),
        checks: Vec::new(),
        foreign_keys: Vec::new(),
        sql: spec.sql.clone(),
    };
    for f in &e.fields {
        if let (true, Some(DefaultValue::Literal(v))) = (e.strict, &f.default) {
            if f.ty.coerce_strict(v.clone()).is_err() {
                return Err(Error::new(
                    SqlState::DatatypeMismatch,
                    format!(
                        "default value {v} does not fit column {}.{} of type {}",
                        e.name,
                        f.name,
                        f.ty.name()
                    ),
                ));
            }
        }
        if let Some(DefaultValue::Expr(x)) = &f.default {
            x.validate(0)?;
        }
    }
    resolve_generated(&mut e)?;
    if !spec.primary_key.is_empty() {
        e.primary_key = resolve_fields(&e, &spec.primary_key, "primary key")?;
        if e.primary_key
            .iter()
            .any(|&f| e.fields[f as usize].generated.is_some())
        {
            return Err(Error::new(
                SqlState::SyntaxError,
                "generated columns cannot be part of the PRIMARY KEY",
            ));
        }
        let single = e.primary_key.len() == 1;
        let f0 = &e.fields[e.primary_key[0] as usize];
        if single && f0.ty == DataType::Integer && f0.decl_type.eq_ignore_ascii_case("INTEGER") {
            e.rowid_alias = Some(e.primary_key[0]);
        }
        if spec.strict || e.rowid_alias.is_some() {
            for &i in &e.primary_key.clone() {
                if e.rowid_alias != Some(i) {
                    e.fields[i as usize].nullable = false;
                }
            }
        }
    }
    if spec.autoincrement {
        if e.rowid_alias.is_none() {
            return Err(Error::invalid(format!(
                "AUTOINCREMENT is only allowed on an INTEGER PRIMARY KEY (table {})",
                e.name
            )));
        }
        e.autoincrement = true;
    }
    bundle.next_table_id += 1;
    let mut auto_n = 1;
    let mut autoindex_name = |bundle: &SchemaBundle, e: &EntityDef| loop {
        let n = format!("sqlite_autoindex_{}_{auto_n}", e.name);
        auto_n += 1;
        if !index_name_taken(bundle, &n) && e.index_by_name(&n).is_none() {
            return n;
        }
    };
    if !e.primary_key.is_empty() && e.rowid_alias.is_none() {
        let name = autoindex_name(bundle, &e);
        let pk = e.primary_key.clone();
        add_index(
            bundle,
            &mut e,
            name,
            pk,
            true,
            IndexOrigin::PrimaryKey,
            None,
        )?;
    }
    for (name, fields) in &spec.uniques {
        let fields = resolve_fields(&e, fields, "unique constraint")?;
        let pk_same = fields.len() == 1 && e.rowid_alias == Some(fields[0]);
        if pk_same || e.indexes.iter().any(|i| i.unique && i.fields == fields) {
            continue; // already enforced by the identity or an equal constraint
        }
        let name = match name {
            Some(n) => n.clone(),
            None => autoindex_name(bundle, &e),
        };
        add_index(
            bundle,
            &mut e,
            name,
            fields,
            true,
            IndexOrigin::Unique,
            None,
        )?;
    }
    let field_count = e.fields.len();
    for (i, (name, expr, sql)) in spec.checks.iter().enumerate() {
        let mut expr = expr.clone();
        expr.resolve(&|n| e.field_index(n))?;
        expr.validate(field_count)?;
        e.checks.push(CheckDef {
            name: name
                .clone()
                .unwrap_or_else(|| format!("check_{}_{}", e.name, i + 1)),
            expr,
            sql: sql.clone(),
        });
    }
    for (i, fk) in spec.foreign_keys.iter().enumerate() {
        let def = resolve_fk(&e, fk, i + 1)?;
        e.foreign_keys.push(def);
    }
    for ix in &spec.indexes {
        let fields = resolve_fields(&e, &ix.fields, "index")?;
        add_index(
            bundle,
            &mut e,
            ix.name.clone(),
            fields,
            ix.unique,
            IndexOrigin::Explicit,
            ix.sql.clone(),
        )?;
    }
    fold_collated_keys(&mut e, &spec.collations)?;
    for i in 0..e.foreign_keys.len() {
        ensure_fk_index(bundle, &mut e, i)?;
    }
    Ok(e)
}

/// Turns every plain index over a collated field into a keyed one whose key folds that field
/// (`$collate_nocase(name)`), so uniqueness follows the collation. Keyed indexes are not used
/// for lookups (a folded key is no binary key), which keeps every plain lookup binary.
pub fn fold_collated_keys(e: &mut EntityDef, collations: &[(String, String)]) -> Result<()> {
    if collations.is_empty() {
        return Ok(());
    }
    let mut folds: Vec<Option<String>> = vec![None; e.fields.len()];
    for (name, func) in collations {
        let f = e.field_index_or_err(name)?;
        folds[f as usize] = Some(func.clone());
    }
    for ix in &mut e.indexes {
        if ix.is_keyed() || !ix.fields.iter().any(|f| folds[*f as usize].is_some()) {
            continue;
        }
        ix.key_exprs = ix
            .fields
            .iter()
            .map(|f| match &folds[*f as usize] {
                Some(func) => Expr::Function {
                    name: func.clone(),
                    args: vec![Expr::Field(*f)],
                },
                None => Expr::Field(*f),
            })
            .collect();
        ix.fields.clear();
    }
    Ok(())
}
