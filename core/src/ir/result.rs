//! Graph fetch results: entity blocks (column vectors per entity type, one row per identity),
//! edge blocks (ordered parent/child identity pairs per include), relation counts, the next
//! root cursor and execution stats.

use rkyv::{Archive, Deserialize, Serialize};
use serde::Serialize as SerdeSerialize;

use super::graph::Cursor;
use crate::value::Value;

#[derive(Debug, Clone, Default, PartialEq, Archive, Serialize, Deserialize, SerdeSerialize)]
pub struct GraphResult {
    /// Identities of the root rows, in result order.
    pub roots: Vec<i64>,
    pub entities: Vec<EntityBlock>,
    pub edges: Vec<EdgeBlock>,
    pub counts: Vec<CountBlock>,
    /// Cursor for the next root page; `None` when this page reached the end.
    pub next_cursor: Option<Cursor>,
    pub stats: FetchStats,
}

/// The rows of one entity type, deduplicated by identity. `columns[f][i]` is field
/// `fields[f]` of row `ids[i]`.
#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize, SerdeSerialize)]
pub struct EntityBlock {
    pub entity: String,
    pub fields: Vec<String>,
    pub ids: Vec<i64>,
    pub columns: Vec<Vec<Value>>,
}

/// The edges of one include node: for each parent (in parent order) its related rows in the
/// include's order.
#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize, SerdeSerialize)]
pub struct EdgeBlock {
    /// Dotted path of relation names from the root (`posts.comments`).
    pub path: String,
    pub relation: String,
    pub parent_entity: String,
    pub child_entity: String,
    pub parents: Vec<i64>,
    pub children: Vec<i64>,
    /// Parents whose related rows were cut by the include's limit, with the cursor that
    /// continues them.
    pub more_parents: Vec<i64>,
    pub more_cursors: Vec<Cursor>,
}

/// Related-row counts per parent for one relation at one node.
#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize, SerdeSerialize)]
pub struct CountBlock {
    /// Path of the node whose rows are counted for (empty for the root).
    pub path: String,
    pub relation: String,
    pub parents: Vec<i64>,
    pub counts: Vec<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Archive, Serialize, Deserialize, SerdeSerialize)]
pub struct FetchStats {
    /// Batched internal lookups: one per node (root, each include, each relation predicate
    /// and relation count), independent of row counts.
    pub lookups: u64,
    /// Rows returned (per occurrence, before deduplication into entity blocks).
    pub rows: u64,
    pub edges: u64,
    /// Rows read from storage, including ones filtered out.
    pub rows_examined: u64,
    /// Largest number of related rows returned for one parent.
    pub max_fanout: u64,
    pub time_us: u64,
    pub plan_cached: bool,
}

impl GraphResult {
    pub fn block(&self, entity: &str) -> Option<&EntityBlock> {
        self.entities
            .iter()
            .find(|b| b.entity.eq_ignore_ascii_case(entity))
    }

    pub fn edges_at(&self, path: &str) -> Option<&EdgeBlock> {
        self.edges.iter().find(|b| b.path == path)
    }

    /// The nested form bindings hand to users: one JSON object per root row, with each
    /// include under its relation name (an array for to-many, an object or null for to-one),
    /// and relation counts under `_count`.
    pub fn to_nested_json(&self, to_one: &dyn Fn(&str) -> bool) -> serde_json::Value {
        use std::collections::HashMap;
        let mut rows: HashMap<(&str, i64), serde_json::Map<String, serde_json::Value>> =
            HashMap::new();
        for b in &self.entities {
            for (i, id) in b.ids.iter().enumerate() {
                let mut m = serde_json::Map::new();
                for (f, name) in b.fields.iter().enumerate() {
                    m.insert(name.clone(), super::json::value_to_json(&b.columns[f][i]));
                }
                rows.insert((b.entity.as_str(), *id), m);
            }
        }
        // Children by (path, parent id), in order.
        let mut kids: HashMap<(&str, i64), Vec<i64>> = HashMap::new();
        let mut child_entity: HashMap<&str, &str> = HashMap::new();
        for e in &self.edges {
            child_entity.insert(e.path.as_str(), e.child_entity.as_str());
            for (p, c) in e.parents.iter().zip(&e.children) {
                kids.entry((e.path.as_str(), *p)).or_default().push(*c);
            }
        }
        let mut counts: HashMap<(&str, i64), Vec<(&str, u64)>> = HashMap::new();
        for c in &self.counts {
            for (p, n) in c.parents.iter().zip(&c.counts) {
                counts
                    .entry((c.path.as_str(), *p))
                    .or_default()
                    .push((c.relation.as_str(), *n));
            }
        }
        let mut paths_by_parent: HashMap<&str, Vec<&str>> = HashMap::new();
        for e in &self.edges {
            let parent_path = e.path.rsplit_once('.').map_or("", |(p, _)| p);
            paths_by_parent
                .entry(parent_path)
                .or_default()
                .push(e.path.as_str());
        }
        struct Ctx<'a> {
            rows: &'a HashMap<(&'a str, i64), serde_json::Map<String, serde_json::Value>>,
            kids: &'a HashMap<(&'a str, i64), Vec<i64>>,
            child_entity: &'a HashMap<&'a str, &'a str>,
            counts: &'a HashMap<(&'a str, i64), Vec<(&'a str, u64)>>,
            paths: &'a HashMap<&'a str, Vec<&'a str>>,
            to_one: &'a dyn Fn(&str) -> bool,
        }
        fn build(ctx: &Ctx, entity: &str, path: &str, id: i64) -> serde_json::Value {
            let mut m = ctx.rows.get(&(entity, id)).cloned().unwrap_or_default();
            if let Some(cs) = ctx.counts.get(&(path, id)) {
                let mut cm = serde_json::Map::new();
                for (rel, n) in cs {
                    cm.insert(rel.to_string(), serde_json::Value::from(*n));
                }
                m.insert("_count".into(), serde_json::Value::Object(cm));
            }
            for child_path in ctx.paths.get(path).map(|v| v.as_slice()).unwrap_or(&[]) {
                let rel = child_path.rsplit('.').next().unwrap_or(child_path);
                let ce = ctx.child_entity.get(child_path).copied().unwrap_or("");
                let ids = ctx.kids.get(&(*child_path, id));
                let items: Vec<serde_json::Value> = ids
                    .map(|v| v.iter().map(|c| build(ctx, ce, child_path, *c)).collect())
                    .unwrap_or_default();
                let v = if (ctx.to_one)(child_path) {
                    items.into_iter().next().unwrap_or(serde_json::Value::Null)
                } else {
                    serde_json::Value::Array(items)
                };
                m.insert(rel.to_string(), v);
            }
            serde_json::Value::Object(m)
        }
        let root_entity = self
            .entities
            .first()
            .map(|b| b.entity.as_str())
            .unwrap_or("");
        let ctx = Ctx {
            rows: &rows,
            kids: &kids,
            child_entity: &child_entity,
            counts: &counts,
            paths: &paths_by_parent,
            to_one,
        };
        serde_json::Value::Array(
            self.roots
                .iter()
                .map(|id| build(&ctx, root_entity, "", *id))
                .collect(),
        )
    }
}
