//! `sqlite_master` and the introspection PRAGMAs, answered from the catalog. Indexes the engine
//! creates on its own for foreign keys (`ormdb_fk_*`) are not shown: SQLite has none, and
//! migration tools diffing the schema would try to drop them.

use super::temp::{is_temp_entity, TempNames};
use crate::api::Transaction;
use crate::catalog::{DefaultValue, EntityDef, IndexDef, IndexOrigin, Schema};
use crate::error::Result;
use crate::ir::Expr;
use crate::value::Value;

pub const SCHEMA_COLUMNS: [(&str, &str); 5] = [
    ("type", "TEXT"),
    ("name", "TEXT"),
    ("tbl_name", "TEXT"),
    ("rootpage", "INT"),
    ("sql", "TEXT"),
];

pub fn visible_index(ix: &IndexDef) -> bool {
    ix.origin != IndexOrigin::ForeignKey
}

/// The CREATE text SQLite would show for an entity (the original text when it came from SQL).
pub fn create_text(e: &EntityDef) -> String {
    if let Some(s) = &e.sql {
        return s.clone();
    }
    let cols: Vec<String> = e
        .fields
        .iter()
        .map(|f| {
            let mut s = format!("\"{}\" {}", f.name, f.decl_type);
            if !f.nullable {
                s.push_str(" NOT NULL");
            }
            s
        })
        .collect();
    let mut parts = cols;
    if !e.primary_key.is_empty() {
        let pk: Vec<String> = e
            .primary_key
            .iter()
            .map(|i| format!("\"{}\"", e.fields[*i as usize].name))
            .collect();
        parts.push(format!("PRIMARY KEY ({})", pk.join(", ")));
    }
    format!("CREATE TABLE \"{}\" ({})", e.name, parts.join(", "))
}

/// Rows of `sqlite_master` (`temp` None: the main schema, without any session's temporary
/// tables) or of `sqlite_temp_master` (that session's temporary tables): tables, then their
/// visible indexes, in creation order of tables.
pub fn schema_rows(schema: &Schema, temp: Option<&TempNames>) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    let mut page = 2i64;
    let mut any_autoinc = false;
    for e in schema.entities() {
        let name = match temp {
            None if is_temp_entity(&e.name) => continue,
            None => e.name.as_str(),
            Some(t) => match t.shown(&e.name) {
                Some(n) => n,
                None => continue,
            },
        };
        let shown = |s: &str| temp.map_or_else(|| s.to_string(), |t| t.unmangle(s));
        any_autoinc |= e.autoincrement;
        out.push(vec![
            Value::from("table"),
            Value::from(name),
            Value::from(name),
            Value::Integer(page),
            Value::Text(create_text(e)),
        ]);
        page += 1;
        for ix in e.indexes.iter().filter(|i| visible_index(i)) {
            out.push(vec![
                Value::from("index"),
                Value::Text(shown(&ix.name)),
                Value::from(name),
                Value::Integer(page),
                ix.sql.clone().map_or(Value::Null, Value::Text),
            ]);
            page += 1;
        }
    }
    if let Some(t) = temp {
        for v in schema.views() {
            if let Some(name) = t.shown(&v.name) {
                out.push(vec![
                    Value::from("view"),
                    Value::from(name),
                    Value::from(name),
                    Value::Integer(0),
                    Value::from(v.sql.as_str()),
                ]);
            }
        }
        return out;
    }
    for v in schema.views().iter().filter(|v| !is_temp_entity(&v.name)) {
        // SQLite gives views root page 0: they have no storage.
        out.push(vec![
            Value::from("view"),
            Value::from(v.name.as_str()),
            Value::from(v.name.as_str()),
            Value::Integer(0),
            Value::from(v.sql.as_str()),
        ]);
    }
    if any_autoinc {
        out.push(vec![
            Value::from("table"),
            Value::from("sqlite_sequence"),
            Value::from("sqlite_sequence"),
            Value::Integer(page),
            Value::from("CREATE TABLE sqlite_sequence(name,seq)"),
        ]);
    }
    out
}

/// Default value texts per column, recovered from the CREATE text (as SQLite reports them).
fn default_texts(e: &EntityDef) -> Vec<Option<String>> {
    let mut out = vec![None; e.fields.len()];
    if let Some(sql) = &e.sql {
        if let Ok(cols) = super::ddl::scan_columns(sql) {
            for c in cols {
                if let Some(pos) = e.field_index(&c.name) {
                    out[pos as usize] = c.default;
                }
            }
            return out;
        }
    }
    for (i, f) in e.fields.iter().enumerate() {
        out[i] = f.default.as_ref().map(|d| match d {
            DefaultValue::Literal(v) => v.to_string(),
            DefaultValue::CurrentTimestamp => "CURRENT_TIMESTAMP".into(),
            DefaultValue::CurrentDate => "CURRENT_DATE".into(),
            DefaultValue::CurrentTime => "CURRENT_TIME".into(),
            DefaultValue::Expr(_) => "(expression)".into(),
        });
    }
    out
}

/// PRAGMA table_info / table_xinfo of a table. Generated columns are hidden columns in SQLite:
/// table_info leaves them out (numbering the others without them), table_xinfo shows them
/// with `hidden` 2 (VIRTUAL) or 3 (STORED).
pub fn table_info(e: &EntityDef, extended: bool) -> Vec<Vec<Value>> {
    let defaults = default_texts(e);
    e.fields
        .iter()
        .enumerate()
        .filter(|(_, f)| extended || f.generated.is_none())
        .enumerate()
        .map(|(cid, (i, f))| {
            let pk = e
                .primary_key
                .iter()
                .position(|p| *p as usize == i)
                .map_or(0, |p| p as i64 + 1);
            let mut row = vec![
                Value::Integer(cid as i64),
                Value::from(f.name.as_str()),
                Value::from(f.decl_type.as_str()),
                Value::Integer(!f.nullable as i64),
                defaults[i].clone().map_or(Value::Null, Value::Text),
                Value::Integer(pk),
            ];
            if extended {
                row.push(Value::Integer(match &f.generated {
                    None => 0,
                    Some(g) if g.stored => 3,
                    Some(_) => 2,
                }));
            }
            row
        })
        .collect()
}

/// PRAGMA table_info / table_xinfo of a view: its result columns, with the declared type of
/// the column each one reads (empty for expressions), as SQLite reports them.
pub fn view_info(columns: &[String], decls: &[Option<String>], extended: bool) -> Vec<Vec<Value>> {
    columns
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut row = vec![
                Value::Integer(i as i64),
                Value::from(n.as_str()),
                Value::Text(decls.get(i).cloned().flatten().unwrap_or_default()),
                Value::Integer(0),
                Value::Null,
                Value::Integer(0),
            ];
            if extended {
                row.push(Value::Integer(0));
            }
            row
        })
        .collect()
}

pub fn index_list(e: &EntityDef) -> Vec<Vec<Value>> {
    e.indexes
        .iter()
        .filter(|i| visible_index(i))
        .rev()
        .enumerate()
        .map(|(seq, ix)| {
            let origin = match ix.origin {
                IndexOrigin::Explicit => "c",
                IndexOrigin::Unique => "u",
                IndexOrigin::PrimaryKey => "pk",
                IndexOrigin::ForeignKey => "c",
            };
            vec![
                Value::Integer(seq as i64),
                Value::from(ix.name.as_str()),
                Value::Integer(ix.unique as i64),
                Value::from(origin),
                Value::Integer(ix.predicate.is_some() as i64),
            ]
        })
        .collect()
}

/// Per key column of an index's CREATE text: (descending, explicit collation name).
fn column_orders(ix: &IndexDef) -> Vec<(bool, Option<String>)> {
    let Some(sql) = &ix.sql else {
        return Vec::new();
    };
    let Ok(sqlparser::ast::Statement::CreateIndex(ci)) = super::parse::parse_one(sql) else {
        return Vec::new();
    };
    ci.columns
        .iter()
        .map(|c| {
            let desc = matches!(
                c.column.options.sort,
                Some(sqlparser::ast::OrderBySort::Desc)
            );
            let coll = match &c.column.expr {
                sqlparser::ast::Expr::Collate { collation, .. } => {
                    Some(collation.to_string().trim_matches('"').to_ascii_uppercase())
                }
                _ => None,
            };
            (desc, coll)
        })
        .collect()
}

pub fn index_info(e: &EntityDef, ix: &IndexDef, extended: bool) -> Vec<Vec<Value>> {
    // Key columns as SQLite reports them: a table column (cid, name) or an expression (-2).
    let keys: Vec<(i64, Value)> = if ix.is_keyed() {
        ix.key_exprs
            .iter()
            .map(|x| match x {
                Expr::Field(f) => (*f as i64, Value::from(e.fields[*f as usize].name.as_str())),
                // A column of a collated UNIQUE / PRIMARY KEY (its key is folded).
                Expr::Function { name, args } if name.starts_with("$collate_") => match args[..] {
                    [Expr::Field(f)] => (f as i64, Value::from(e.fields[f as usize].name.as_str())),
                    _ => (-2, Value::Null),
                },
                _ => (-2, Value::Null),
            })
            .collect()
    } else {
        ix.fields
            .iter()
            .map(|f| (*f as i64, Value::from(e.fields[*f as usize].name.as_str())))
            .collect()
    };
    let orders = column_orders(ix);
    // Without an explicit COLLATE, a key column takes its column's declared collation.
    let declared = if extended {
        super::ddl::declared_collations(e)
    } else {
        Vec::new()
    };
    let mut rows: Vec<Vec<Value>> = keys
        .iter()
        .enumerate()
        .map(|(seq, (cid, name))| {
            let mut r = vec![
                Value::Integer(seq as i64),
                Value::Integer(*cid),
                name.clone(),
            ];
            if extended {
                let (desc, explicit) = orders.get(seq).cloned().unwrap_or((false, None));
                let coll = explicit.unwrap_or_else(|| {
                    usize::try_from(*cid)
                        .ok()
                        .and_then(|c| declared.get(c).copied().flatten())
                        .map_or("BINARY", |c| c.name())
                        .to_string()
                });
                r.extend([
                    Value::Integer(desc as i64),
                    Value::Text(coll),
                    Value::Integer(1),
                ]);
            }
            r
        })
        .collect();
    if extended {
        rows.push(vec![
            Value::Integer(keys.len() as i64),
            Value::Integer(-1),
            Value::Null,
            Value::Integer(0),
            Value::from("BINARY"),
            Value::Integer(0),
        ]);
    }
    rows
}

pub fn foreign_key_list(e: &EntityDef) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    for (id, fk) in e.foreign_keys.iter().rev().enumerate() {
        for (seq, f) in fk.fields.iter().enumerate() {
            out.push(vec![
                Value::Integer(id as i64),
                Value::Integer(seq as i64),
                Value::from(fk.parent.as_str()),
                Value::from(e.fields[*f as usize].name.as_str()),
                fk.parent_fields
                    .get(seq)
                    .map_or(Value::Null, |s| Value::from(s.as_str())),
                Value::from(fk.on_update.sql_name()),
                Value::from(fk.on_delete.sql_name()),
                Value::from("NONE"),
            ]);
        }
    }
    out
}

/// Rows violating a foreign key: (table, rowid, parent, fkid).
pub fn foreign_key_check(tx: &mut Transaction, only: Option<&str>) -> Result<Vec<Vec<Value>>> {
    let schema = tx.schema().clone();
    let mut out = Vec::new();
    for e in schema.entities() {
        if only.is_some_and(|t| !t.eq_ignore_ascii_case(&e.name)) {
            continue;
        }
        let n = e.foreign_keys.len();
        for (k, fk) in e.foreign_keys.iter().enumerate() {
            let fkid = (n - 1 - k) as i64;
            let parent = schema.entity(&fk.parent).ok().cloned();
            let rows: Vec<crate::api::Row> = tx.scan(&e.name)?.collect::<Result<_>>()?;
            for r in rows {
                let vals: Vec<Value> = fk
                    .fields
                    .iter()
                    .map(|f| r.values[*f as usize].clone())
                    .collect();
                if vals.iter().any(Value::is_null) {
                    continue;
                }
                let ok = match &parent {
                    None => false,
                    Some(p) => parent_has(tx, &schema, e, fk, p, &vals)?,
                };
                if !ok {
                    out.push(vec![
                        Value::from(e.name.as_str()),
                        Value::Integer(r.row_id),
                        Value::from(fk.parent.as_str()),
                        Value::Integer(fkid),
                    ]);
                }
            }
        }
    }
    Ok(out)
}

fn parent_has(
    tx: &mut Transaction,
    schema: &Schema,
    child: &EntityDef,
    fk: &crate::catalog::ForeignKeyDef,
    parent: &EntityDef,
    vals: &[Value],
) -> Result<bool> {
    let Ok((_, fields, is_rowid)) = schema.fk_parent_key(child, fk) else {
        return Ok(false);
    };
    if is_rowid {
        let v = crate::value::DataType::Integer.apply_affinity(vals[0].clone());
        return Ok(match v {
            Value::Integer(i) => tx.get(&parent.name, i)?.is_some(),
            _ => false,
        });
    }
    let Some(ix) = parent.index_on(&fields, true) else {
        return Ok(false);
    };
    let key: Vec<Value> = fields
        .iter()
        .zip(vals)
        .map(|(f, v)| parent.fields[*f as usize].ty.apply_affinity(v.clone()))
        .collect();
    Ok(!tx.find_by_index(&parent.name, &ix.name, &key)?.is_empty())
}
