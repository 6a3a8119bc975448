//! A graph fetch result as nested Python objects, built straight from the entity and edge
//! blocks: one dict per root row, each include under its name (a list for to-many relations, a
//! dict or None for to-one), relation counts under `_count`. Fields keep the entity's column
//! order. A row reached several times gets its own dict each time (a copy of one base dict), so
//! changing one occurrence never changes another.

use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use ormdb::catalog::{RelationKind, Schema};
use ormdb::GraphResult;

use crate::values::to_py;

/// An include under a parent path: its path, its key in the parent's dict, its entity, and
/// whether it is to-one.
struct Child<'a, 'py> {
    path: &'a str,
    key: Bound<'py, PyString>,
    entity: &'a str,
    to_one: bool,
}

struct Ctx<'a, 'py> {
    py: Python<'py>,
    /// (entity, id) -> the row's fields.
    rows: HashMap<(&'a str, i64), Bound<'py, PyDict>>,
    /// (path, parent id) -> child ids, in order.
    kids: HashMap<(&'a str, i64), Vec<i64>>,
    /// parent path -> its includes.
    children: HashMap<&'a str, Vec<Child<'a, 'py>>>,
    /// (path, parent id) -> (relation, count).
    counts: HashMap<(&'a str, i64), Vec<(&'a str, u64)>>,
}

fn build<'a, 'py>(
    ctx: &Ctx<'a, 'py>,
    entity: &'a str,
    path: &'a str,
    id: i64,
) -> PyResult<Bound<'py, PyAny>> {
    let d = match ctx.rows.get(&(entity, id)) {
        Some(base) => base.copy()?,
        None => PyDict::new(ctx.py),
    };
    if let Some(cs) = ctx.counts.get(&(path, id)) {
        let c = PyDict::new(ctx.py);
        for (rel, n) in cs {
            c.set_item(*rel, *n)?;
        }
        d.set_item("_count", c)?;
    }
    for ch in ctx.children.get(path).into_iter().flatten() {
        let ids = ctx.kids.get(&(ch.path, id));
        if ch.to_one {
            match ids.and_then(|v| v.first()) {
                Some(c) => d.set_item(&ch.key, build(ctx, ch.entity, ch.path, *c)?)?,
                None => d.set_item(&ch.key, ctx.py.None())?,
            }
        } else {
            let list = PyList::empty(ctx.py);
            for c in ids.into_iter().flatten() {
                list.append(build(ctx, ch.entity, ch.path, *c)?)?;
            }
            d.set_item(&ch.key, list)?;
        }
    }
    Ok(d.into_any())
}

/// The nested form of `r` for a fetch rooted at `root`.
pub fn nested<'py>(
    py: Python<'py>,
    r: &GraphResult,
    schema: &Schema,
    root: &str,
) -> PyResult<Bound<'py, PyList>> {
    let mut rows = HashMap::new();
    for b in &r.entities {
        let names: Vec<Bound<'py, PyString>> =
            b.fields.iter().map(|f| PyString::new(py, f)).collect();
        for (i, id) in b.ids.iter().enumerate() {
            let d = PyDict::new(py);
            for (f, name) in names.iter().enumerate() {
                d.set_item(name, to_py(py, &b.columns[f][i])?)?;
            }
            rows.insert((b.entity.as_str(), *id), d);
        }
    }
    let mut kids: HashMap<(&str, i64), Vec<i64>> = HashMap::new();
    let mut children: HashMap<&str, Vec<_>> = HashMap::new();
    for e in &r.edges {
        for (p, c) in e.parents.iter().zip(&e.children) {
            kids.entry((e.path.as_str(), *p)).or_default().push(*c);
        }
        let parent_path = e.path.rsplit_once('.').map_or("", |(p, _)| p);
        let key = e.path.rsplit('.').next().unwrap_or(&e.path);
        let to_one = schema
            .relations_of(&e.parent_entity)
            .find(|rel| rel.name.eq_ignore_ascii_case(&e.relation))
            .is_some_and(|rel| {
                matches!(rel.kind, RelationKind::ManyToOne | RelationKind::OneToOne)
            });
        children.entry(parent_path).or_default().push(Child {
            path: e.path.as_str(),
            key: PyString::new(py, key),
            entity: e.child_entity.as_str(),
            to_one,
        });
    }
    let mut counts: HashMap<(&str, i64), Vec<(&str, u64)>> = HashMap::new();
    for c in &r.counts {
        for (p, n) in c.parents.iter().zip(&c.counts) {
            counts
                .entry((c.path.as_str(), *p))
                .or_default()
                .push((c.relation.as_str(), *n));
        }
    }
    let ctx = Ctx {
        py,
        rows,
        kids,
        children,
        counts,
    };
    let root_entity = r
        .entities
        .first()
        .map(|b| b.entity.as_str())
        .unwrap_or(root);
    let out = PyList::empty(py);
    for id in &r.roots {
        out.append(build(&ctx, root_entity, "", *id)?)?;
    }
    Ok(out)
}
