//! Filters compiled for execution: scalar leaves become [`Expr`]s over field positions (literals
//! take the field's affinity, as SQLite does for column-vs-constant comparisons); relation
//! predicates become membership tests of the row's key in a set computed by one batched lookup.

use rustc_hash::FxHashSet as HashSet;

use crate::catalog::EntityDef;
use crate::error::Result;
use crate::ir::expr::truthy;
use crate::ir::graph::{CmpOp, Filter};
use crate::ir::{BinaryOp, Expr};
use crate::value::{encode_key_value, DataType, Value};

#[derive(Debug, Clone)]
pub enum Pred {
    Expr(Expr),
    And(Vec<Pred>),
    Or(Vec<Pred>),
    Not(Box<Pred>),
    /// The row's `fields` (all non-NULL, with the affinity of `types`) encode to a key in
    /// `set`; false when any is NULL.
    KeyIn {
        fields: Vec<u32>,
        types: Vec<DataType>,
        set: HashSet<Vec<u8>>,
    },
}

impl Pred {
    /// Three-valued evaluation: `None` is unknown (NULL).
    pub fn eval(&self, row: &[Value]) -> Result<Option<bool>> {
        Ok(match self {
            Pred::Expr(e) => truthy(&e.eval(row)?),
            Pred::And(ps) => {
                let mut unknown = false;
                for p in ps {
                    match p.eval(row)? {
                        Some(false) => return Ok(Some(false)),
                        None => unknown = true,
                        Some(true) => {}
                    }
                }
                if unknown {
                    None
                } else {
                    Some(true)
                }
            }
            Pred::Or(ps) => {
                let mut unknown = false;
                for p in ps {
                    match p.eval(row)? {
                        Some(true) => return Ok(Some(true)),
                        None => unknown = true,
                        Some(false) => {}
                    }
                }
                if unknown {
                    None
                } else {
                    Some(false)
                }
            }
            Pred::Not(p) => p.eval(row)?.map(|b| !b),
            Pred::KeyIn { fields, types, set } => {
                Some(source_key(row, fields, types).is_some_and(|k| set.contains(&k)))
            }
        })
    }

    /// Whether the row passes (unknown does not pass).
    pub fn passes(&self, row: &[Value]) -> Result<bool> {
        Ok(self.eval(row)? == Some(true))
    }
}

/// The equality key of `fields` of a row; `None` when any of them is NULL (NULL keys match
/// nothing, as in foreign keys). Equal values (SQLite `=`, so 1 and 1.0 too) give equal keys;
/// unlike index keys the encoding need not preserve order, so integers take a short form.
pub fn key_of(row: &[Value], fields: &[u32]) -> Option<Vec<u8>> {
    let mut k = Vec::with_capacity(9 * fields.len());
    key_into(row, fields, &mut k).then_some(k)
}

/// The key of a source row's `fields` as the target side compares them: each value first takes
/// the affinity of the target field (`types`), as SQLite does for foreign keys.
pub fn source_key(row: &[Value], fields: &[u32], types: &[DataType]) -> Option<Vec<u8>> {
    let mut k = Vec::with_capacity(9 * fields.len());
    for (f, t) in fields.iter().zip(types) {
        let v = row.get(*f as usize).unwrap_or(&Value::Null);
        let ok = match v {
            Value::Integer(_) if !matches!(t, DataType::Text | DataType::Real) => {
                push_key(v, &mut k)
            }
            Value::Null => false,
            v => push_key(&t.apply_affinity(v.clone()), &mut k),
        };
        if !ok {
            return None;
        }
    }
    Some(k)
}

/// A hop's equality key. A single field holding an integer (or an integral real, which SQLite
/// compares equal to it) -- the usual foreign key -- is the integer itself, so joins hash eight
/// bytes without building a buffer; anything else is the encoded key of [`key_of`]. The two
/// forms never collide for the same field list: a single integral value always takes `Int`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JoinKey {
    Int(i64),
    Bytes(Box<[u8]>),
}

impl JoinKey {
    /// The encoded form ([`key_of`]'s bytes), for image indexes keyed by bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            JoinKey::Int(i) => {
                let mut k = Vec::with_capacity(9);
                push_key(&Value::Integer(*i), &mut k);
                k
            }
            JoinKey::Bytes(b) => b.to_vec(),
        }
    }
}

/// The integer a single-field key takes when `v` is integral (as [`push_key`] decides).
fn int_key(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        Value::Real(r) if r.fract() == 0.0 && *r >= -9.2e18 && *r <= 9.2e18 => Some(*r as i64),
        _ => None,
    }
}

/// [`key_of`] as a [`JoinKey`]; `None` when a field is NULL.
pub fn join_key(row: &[Value], fields: &[u32]) -> Option<JoinKey> {
    if let [f] = fields {
        let v = row.get(*f as usize).unwrap_or(&Value::Null);
        if let Some(i) = int_key(v) {
            return Some(JoinKey::Int(i));
        }
    }
    key_of(row, fields).map(|k| JoinKey::Bytes(k.into_boxed_slice()))
}

/// [`source_key`] as a [`JoinKey`]: the source values take the target fields' affinity first.
pub fn source_join_key(row: &[Value], fields: &[u32], types: &[DataType]) -> Option<JoinKey> {
    if let ([f], [t]) = (fields, types) {
        let v = row.get(*f as usize).unwrap_or(&Value::Null);
        let i = match v {
            Value::Null => return None,
            Value::Integer(i) if !matches!(t, DataType::Text | DataType::Real) => Some(*i),
            v => int_key(&t.apply_affinity(v.clone())),
        };
        if let Some(i) = i {
            return Some(JoinKey::Int(i));
        }
    }
    source_key(row, fields, types).map(|k| JoinKey::Bytes(k.into_boxed_slice()))
}

/// [`key_of`] into a reusable buffer (cleared first); false when a field is NULL.
pub fn key_into(row: &[Value], fields: &[u32], k: &mut Vec<u8>) -> bool {
    k.clear();
    fields
        .iter()
        .all(|f| push_key(row.get(*f as usize).unwrap_or(&Value::Null), k))
}

/// Appends one value's equality key; false for NULL.
fn push_key(v: &Value, k: &mut Vec<u8>) -> bool {
    match v {
        Value::Null => return false,
        Value::Integer(i) => {
            k.push(0x01);
            k.extend_from_slice(&i.to_be_bytes());
        }
        Value::Real(r) if r.fract() == 0.0 && *r >= -9.2e18 && *r <= 9.2e18 => {
            k.push(0x01);
            k.extend_from_slice(&(*r as i64).to_be_bytes());
        }
        v => encode_key_value(v, k),
    }
    true
}

fn field_pos(e: &EntityDef, name: &str) -> Result<u32> {
    e.field_index(name)
        .ok_or_else(|| crate::error::Error::unknown_field(&e.name, name))
}

/// A literal with the field's affinity applied.
pub fn literal_for(e: &EntityDef, field: u32, v: &Value) -> Value {
    e.fields[field as usize].ty.apply_affinity(v.clone())
}

/// Compiles a scalar leaf (anything but and/or/not and relation predicates).
pub fn compile_leaf(e: &EntityDef, f: &Filter) -> Result<Option<Expr>> {
    Ok(Some(match f {
        Filter::Cmp { field, op, value } => {
            let i = field_pos(e, field)?;
            let op = match op {
                CmpOp::Eq => BinaryOp::Eq,
                CmpOp::Ne => BinaryOp::Ne,
                CmpOp::Lt => BinaryOp::Lt,
                CmpOp::Le => BinaryOp::Le,
                CmpOp::Gt => BinaryOp::Gt,
                CmpOp::Ge => BinaryOp::Ge,
            };
            Expr::bin(op, Expr::Field(i), Expr::Literal(literal_for(e, i, value)))
        }
        Filter::In {
            field,
            values,
            negated,
        } => {
            let i = field_pos(e, field)?;
            Expr::InList {
                expr: Box::new(Expr::Field(i)),
                list: values
                    .iter()
                    .map(|v| Expr::Literal(literal_for(e, i, v)))
                    .collect(),
                negated: *negated,
            }
        }
        Filter::Like {
            field,
            pattern,
            escape,
            negated,
        } => Expr::Like {
            expr: Box::new(Expr::Field(field_pos(e, field)?)),
            pattern: Box::new(Expr::Literal(Value::Text(pattern.clone()))),
            escape: *escape,
            negated: *negated,
        },
        Filter::IsNull { field, negated } => Expr::IsNull {
            expr: Box::new(Expr::Field(field_pos(e, field)?)),
            negated: *negated,
        },
        _ => return Ok(None),
    }))
}
