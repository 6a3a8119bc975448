//! A graph fetch result as nested Python objects, built straight from the entity and edge
//! blocks: one dict per root row, each include under its name (a list for to-many relations, a
//! dict or None for to-one), relation counts under `_count`. Fields keep the entity's column
//! order. A row reached several times gets its own dict each time, so changing one occurrence
//! never changes another.
//!
//! This is the hot path of `Connection.fetch` (thousands of dicts per call), so each dict is
//! filled once from the columns (no base dict copied per occurrence), field names are interned
//! strings made once per block, and lookups go through integer-keyed Fx maps, not strings.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use rustc_hash::FxHashMap;

use ormdb::catalog::{RelationKind, Schema};
use ormdb::ir::result::EntityBlock;
use ormdb::GraphResult;

use crate::values::to_py;

/// The rows of one entity block: interned field names and each id's position.
pub(crate) struct Block<'a, 'py> {
    pub(crate) data: &'a EntityBlock,
    names: Vec<Bound<'py, PyString>>,
    pub(crate) pos: FxHashMap<i64, usize>,
}

/// One node of the include tree (index 0 is the root).
pub(crate) struct Node<'a, 'py> {
    /// Key of this include in its parent's dict (None for the root).
    pub(crate) key: Option<Bound<'py, PyString>>,
    /// The entity block holding this node's rows.
    pub(crate) block: Option<usize>,
    to_one: bool,
    /// Parent id -> child ids in include order (empty for the root).
    pub(crate) kids: FxHashMap<i64, Vec<i64>>,
    /// Includes under this node, in result order.
    pub(crate) children: Vec<usize>,
    /// Row id -> (relation, count) for `_count`.
    counts: FxHashMap<i64, Vec<(&'a str, u64)>>,
}

impl<'py> Node<'_, 'py> {
    fn new(key: Option<Bound<'py, PyString>>, block: Option<usize>, to_one: bool) -> Self {
        Node {
            key,
            block,
            to_one,
            kids: FxHashMap::default(),
            children: Vec::new(),
            counts: FxHashMap::default(),
        }
    }
}

pub(crate) struct Tree<'a, 'py> {
    py: Python<'py>,
    pub(crate) blocks: Vec<Block<'a, 'py>>,
    pub(crate) nodes: Vec<Node<'a, 'py>>,
}

impl<'py> Tree<'_, 'py> {
    fn build(&self, node: usize, id: i64) -> PyResult<Bound<'py, PyDict>> {
        let py = self.py;
        let n = &self.nodes[node];
        let d = PyDict::new(py);
        if let Some(b) = n.block.map(|b| &self.blocks[b]) {
            if let Some(&i) = b.pos.get(&id) {
                for (name, col) in b.names.iter().zip(&b.data.columns) {
                    d.set_item(name, to_py(py, &col[i])?)?;
                }
            }
        }
        if let Some(cs) = n.counts.get(&id) {
            let c = PyDict::new(py);
            for (rel, k) in cs {
                c.set_item(*rel, *k)?;
            }
            d.set_item("_count", c)?;
        }
        for &ch in &n.children {
            let child = &self.nodes[ch];
            let Some(key) = &child.key else { continue };
            let ids = child.kids.get(&id);
            if child.to_one {
                match ids.and_then(|v| v.first()) {
                    Some(c) => d.set_item(key, self.build(ch, *c)?)?,
                    None => d.set_item(key, py.None())?,
                }
            } else {
                let items = ids
                    .into_iter()
                    .flatten()
                    .map(|c| self.build(ch, *c))
                    .collect::<PyResult<Vec<_>>>()?;
                d.set_item(key, PyList::new(py, items)?)?;
            }
        }
        Ok(d)
    }
}

impl<'a, 'py> Tree<'a, 'py> {
    /// The blocks and include nodes of `r` for a fetch rooted at `root`.
    pub(crate) fn new(py: Python<'py>, r: &'a GraphResult, schema: &Schema, root: &str) -> Self {
        let blocks: Vec<Block> = r
            .entities
            .iter()
            .map(|b| Block {
                data: b,
                names: b.fields.iter().map(|f| PyString::intern(py, f)).collect(),
                pos: b.ids.iter().enumerate().map(|(i, id)| (*id, i)).collect(),
            })
            .collect();
        let block_of = |entity: &str| r.entities.iter().position(|b| b.entity == entity);
        let root_entity = r
            .entities
            .first()
            .map(|b| b.entity.as_str())
            .unwrap_or(root);
        let mut nodes = vec![Node::new(None, block_of(root_entity), false)];
        let mut by_path: FxHashMap<&str, usize> = FxHashMap::default();
        by_path.insert("", 0);
        for e in &r.edges {
            let key = e.path.rsplit('.').next().unwrap_or(&e.path);
            let to_one = schema
                .relations_of(&e.parent_entity)
                .find(|rel| rel.name.eq_ignore_ascii_case(&e.relation))
                .is_some_and(|rel| {
                    matches!(rel.kind, RelationKind::ManyToOne | RelationKind::OneToOne)
                });
            let mut node = Node::new(
                Some(PyString::intern(py, key)),
                block_of(&e.child_entity),
                to_one,
            );
            for (p, c) in e.parents.iter().zip(&e.children) {
                node.kids.entry(*p).or_default().push(*c);
            }
            by_path.insert(e.path.as_str(), nodes.len());
            nodes.push(node);
        }
        for (i, e) in r.edges.iter().enumerate() {
            let parent_path = e.path.rsplit_once('.').map_or("", |(p, _)| p);
            if let Some(&parent) = by_path.get(parent_path) {
                nodes[parent].children.push(i + 1);
            }
        }
        for c in &r.counts {
            let Some(&node) = by_path.get(c.path.as_str()) else {
                continue;
            };
            let counts = &mut nodes[node].counts;
            for (p, n) in c.parents.iter().zip(&c.counts) {
                counts
                    .entry(*p)
                    .or_default()
                    .push((c.relation.as_str(), *n));
            }
        }
        Tree { py, blocks, nodes }
    }
}

/// The nested form of `r` for a fetch rooted at `root`.
pub fn nested<'py>(
    py: Python<'py>,
    r: &GraphResult,
    schema: &Schema,
    root: &str,
) -> PyResult<Bound<'py, PyList>> {
    let tree = Tree::new(py, r, schema, root);
    let items = r
        .roots
        .iter()
        .map(|id| tree.build(0, *id))
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}
