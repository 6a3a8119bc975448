//! The graph fetch planner: resolves names against the catalog, picks the root access path by
//! cost (identity, unique index, index equality, index range, scan) and a join strategy per
//! include hop (index nested loop vs hash) from table statistics, and checks the depth budget.
//! Plans hold decisions and resolved positions, not literal values, so one plan serves every
//! fetch with the same shape (see [`signature`]).

use std::fmt::Write;

use super::relation::{resolve, RelPlan};
use super::stats::StatsStore;
use crate::catalog::{EntityDef, Schema};
use crate::error::{Error, Result, SqlState};
use crate::ir::graph::{Budget, CmpOp, Filter, GraphFetch, Include, Nulls, OrderBy};
use crate::txn::Txn;

/// Cost units are roughly microseconds on the reference machine.
pub mod cost {
    /// One point lookup (a seek in the store).
    pub const SEEK: f64 = 2.0;
    /// One row read by a sequential scan.
    pub const SCAN_ROW: f64 = 0.5;
    /// Evaluating a filter or hashing one row.
    pub const CPU_ROW: f64 = 0.1;
    /// One row of a decoded table image (scan step or identity read).
    pub const IMAGE_ROW: f64 = 0.05;
    /// Selectivity guessed for one range bound.
    pub const RANGE_SELECTIVITY: f64 = 0.3;
    /// Selectivity guessed for a conjunct no index serves.
    pub const FILTER_SELECTIVITY: f64 = 0.5;
}

#[derive(Debug, Clone, PartialEq)]
pub enum Access {
    /// `id = v` / `id IN (...)` on the row id alias: conjunct position.
    Identity {
        conjunct: usize,
    },
    /// Range bounds on the row id alias: a scan of that identity range.
    IdentityRange {
        conjuncts: Vec<usize>,
    },
    /// Equality (or IN) on the leading fields of an index.
    IndexEq {
        index: u32,
        name: String,
        unique: bool,
        conjuncts: Vec<usize>,
    },
    /// Equality on a prefix, then range bounds on the next field.
    IndexRange {
        index: u32,
        name: String,
        eq_conjuncts: Vec<usize>,
        range_conjuncts: Vec<usize>,
    },
    Scan,
}

impl Access {
    pub fn describe(&self, e: &EntityDef) -> String {
        match self {
            Access::Identity { .. } => format!("identity lookup on {}", e.name),
            Access::IdentityRange { .. } => format!("identity range scan of {}", e.name),
            Access::IndexEq { name, unique, .. } => format!(
                "{} index lookup {name}",
                if *unique { "unique" } else { "index" }
            ),
            Access::IndexRange { name, .. } => format!("index range scan {name}"),
            Access::Scan => format!("full scan of {}", e.name),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinStrategy {
    /// One identity / index lookup per distinct parent key.
    IndexNestedLoop,
    /// One scan of the target, probing a hash set of parent keys.
    Hash,
}

impl JoinStrategy {
    pub fn name(self) -> &'static str {
        match self {
            JoinStrategy::IndexNestedLoop => "index nested loop",
            JoinStrategy::Hash => "hash join",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey {
    pub field: u32,
    pub desc: bool,
    pub nulls_first: bool,
}

#[derive(Debug, Clone)]
pub struct NodePlan {
    /// Dotted relation path from the root ("" for the root).
    pub path: String,
    pub entity_pos: usize,
    pub entity: String,
    pub depth: u32,
    pub rel: Option<RelPlan>,
    /// Root only.
    pub access: Access,
    /// Per hop of `rel`: the strategy chosen from estimates (re-checked with the actual parent
    /// key count at run time).
    pub strategies: Vec<JoinStrategy>,
    /// Field positions returned.
    pub projection: Vec<u32>,
    pub order: Vec<SortKey>,
    /// The order is the identity alone, ascending: a scan delivers it and can stop early.
    pub id_order: bool,
    /// Relation predicates in this node's filter (each costs one batched lookup).
    pub relation_predicates: usize,
    pub counts: Vec<RelPlan>,
    pub est_rows: f64,
    pub est_cost: f64,
    pub children: Vec<NodePlan>,
}

#[derive(Debug, Clone)]
pub struct FetchPlan {
    pub root: NodePlan,
    pub budget: Budget,
    pub schema_version: u64,
    /// (table id, row count) the estimates were made with; a cached plan is re-planned when a
    /// table has changed size a lot since.
    pub table_rows: Vec<(u32, u64)>,
}

impl FetchPlan {
    pub fn node_count(&self) -> usize {
        fn walk(n: &NodePlan) -> usize {
            1 + n.children.iter().map(walk).sum::<usize>()
        }
        walk(&self.root)
    }
}

/// Flattens the top-level AND of a filter into conjuncts.
pub fn conjuncts(f: Option<&Filter>) -> Vec<&Filter> {
    fn walk<'a>(f: &'a Filter, out: &mut Vec<&'a Filter>) {
        match f {
            Filter::And(fs) => fs.iter().for_each(|x| walk(x, out)),
            other => out.push(other),
        }
    }
    let mut out = Vec::new();
    if let Some(f) = f {
        walk(f, &mut out);
    }
    out
}

/// The plan cache key: the fetch's shape with literal values left out (IN lists keep a size
/// class, since list length changes the best access path).
pub fn signature(f: &GraphFetch) -> String {
    let mut s = String::with_capacity(128);
    let _ = write!(s, "{}|", f.root.to_ascii_lowercase());
    sig_filter(f.filter.as_ref(), &mut s);
    sig_common(f.select.as_deref(), &f.order, &f.counts, &mut s);
    let _ = write!(
        s,
        "|L{}|A{}|O{}",
        f.page.limit.is_some() as u8,
        f.page.after.is_some() as u8,
        (f.page.offset > 0) as u8
    );
    for i in &f.includes {
        sig_include(i, &mut s);
    }
    // The depth budget is checked while planning and EXPLAIN shows the budget: key on it.
    if let Some(b) = &f.budget {
        let _ = write!(s, "|B{b:?}");
    }
    s
}

fn sig_include(i: &Include, s: &mut String) {
    let _ = write!(
        s,
        "[{}@{}|",
        i.relation.to_ascii_lowercase(),
        i.alias.as_deref().unwrap_or("")
    );
    sig_filter(i.filter.as_ref(), s);
    sig_common(i.select.as_deref(), &i.order, &i.counts, s);
    let _ = write!(
        s,
        "|L{}A{}",
        i.limit.is_some() as u8,
        i.after.is_some() as u8
    );
    for c in &i.includes {
        sig_include(c, s);
    }
    s.push(']');
}

fn sig_common(select: Option<&[String]>, order: &[OrderBy], counts: &[String], s: &mut String) {
    if let Some(sel) = select {
        let _ = write!(s, "|S{}", sel.join(",").to_ascii_lowercase());
    }
    for o in order {
        let _ = write!(
            s,
            "|o{}{}{:?}",
            o.field.to_ascii_lowercase(),
            o.desc as u8,
            o.nulls
        );
    }
    for c in counts {
        let _ = write!(s, "|c{}", c.to_ascii_lowercase());
    }
}

fn sig_filter(f: Option<&Filter>, s: &mut String) {
    let Some(f) = f else {
        return;
    };
    match f {
        Filter::And(fs) | Filter::Or(fs) => {
            s.push_str(if matches!(f, Filter::And(_)) {
                "&("
            } else {
                "|("
            });
            for x in fs {
                sig_filter(Some(x), s);
                s.push(',');
            }
            s.push(')');
        }
        Filter::Not(x) => {
            s.push('!');
            sig_filter(Some(x), s);
        }
        Filter::Cmp { field, op, value } => {
            let _ = write!(
                s,
                "{}{:?}{}",
                field.to_ascii_lowercase(),
                op,
                value.is_null() as u8
            );
        }
        Filter::In {
            field,
            values,
            negated,
        } => {
            let class = usize::BITS - values.len().leading_zeros();
            let _ = write!(
                s,
                "{}in{}{}",
                field.to_ascii_lowercase(),
                *negated as u8,
                class
            );
        }
        Filter::Like { field, negated, .. } => {
            let _ = write!(s, "{}like{}", field.to_ascii_lowercase(), *negated as u8);
        }
        Filter::IsNull { field, negated } => {
            let _ = write!(s, "{}null{}", field.to_ascii_lowercase(), *negated as u8);
        }
        Filter::Some { relation, filter }
        | Filter::Every { relation, filter }
        | Filter::None { relation, filter } => {
            let k = match f {
                Filter::Some { .. } => "some",
                Filter::Every { .. } => "every",
                _ => "none",
            };
            let _ = write!(s, "{k}:{}(", relation.to_ascii_lowercase());
            sig_filter(filter.as_deref(), s);
            s.push(')');
        }
    }
}

pub struct Planner<'a> {
    pub schema: &'a Schema,
    pub stats: &'a StatsStore,
    pub txn: &'a Txn,
    pub table_rows: Vec<(u32, u64)>,
}

impl<'a> Planner<'a> {
    fn rows(&mut self, e: &EntityDef) -> Result<f64> {
        let n = self.stats.row_count(self.txn, e)?;
        if !self.table_rows.iter().any(|(t, _)| *t == e.id) {
            self.table_rows.push((e.id, n));
        }
        Ok(n as f64)
    }

    /// Estimated rows per distinct value of the first `k` fields of an index.
    fn rows_per_key(&mut self, e: &EntityDef, index: u32, k: usize) -> Result<f64> {
        let rows = self.rows(e)?;
        let Some(ix) = e.indexes.iter().find(|i| i.id == index) else {
            return Ok(rows);
        };
        if ix.unique && k >= ix.fields.len() {
            return Ok(1.0);
        }
        let d = self.stats.distinct(self.txn, e, ix, k)? as f64;
        Ok((rows / d.max(1.0)).max(1.0))
    }

    pub fn plan(mut self, f: &GraphFetch) -> Result<FetchPlan> {
        let budget = f.budget.unwrap_or_default();
        let pos = self
            .schema
            .entity_pos(&f.root)
            .ok_or_else(|| Error::unknown_entity(&f.root))?;
        let e = self.schema.entity_at(pos).clone();
        let conj = conjuncts(f.filter.as_ref());
        check_filter(self.schema, pos, f.filter.as_ref())?;
        let (access, mut est_rows, mut est_cost) = self.choose_access(&e, &conj)?;
        let order = resolve_order(&e, &f.order)?;
        let id_order = is_id_order(&e, &order);
        est_rows *= residual_selectivity(&conj, &access);
        est_cost += est_rows * cost::CPU_ROW;
        if !id_order || !matches!(access, Access::Scan) {
            est_cost += est_rows * est_rows.max(2.0).log2() * cost::CPU_ROW;
        }
        if let Some(l) = f.page.limit {
            est_rows = est_rows.min(l as f64);
        }
        let counts = f
            .counts
            .iter()
            .map(|c| resolve(self.schema, pos, c))
            .collect::<Result<Vec<_>>>()?;
        let mut root = NodePlan {
            path: String::new(),
            entity_pos: pos,
            entity: e.name.clone(),
            depth: 0,
            rel: None,
            access,
            strategies: Vec::new(),
            projection: resolve_projection(&e, f.select.as_deref())?,
            order,
            id_order,
            relation_predicates: count_relation_predicates(f.filter.as_ref()),
            counts,
            est_rows,
            est_cost,
            children: Vec::new(),
        };
        check_sibling_names(&f.includes)?;
        for inc in &f.includes {
            let child = self.plan_include(&root, inc, &budget)?;
            root.children.push(child);
        }
        Ok(FetchPlan {
            root,
            budget,
            schema_version: self.schema.version(),
            table_rows: self.table_rows,
        })
    }

    fn plan_include(
        &mut self,
        parent: &NodePlan,
        inc: &Include,
        budget: &Budget,
    ) -> Result<NodePlan> {
        let depth = parent.depth + 1;
        if depth > budget.max_depth {
            return Err(Error::new(
                SqlState::LimitExceeded,
                format!(
                    "budget max_depth ({}) exceeded: include {} is at depth {depth}",
                    budget.max_depth, inc.relation
                ),
            ));
        }
        let rel = resolve(self.schema, parent.entity_pos, &inc.relation)?;
        let pos = rel.target_pos;
        let e = self.schema.entity_at(pos).clone();
        check_filter(self.schema, pos, inc.filter.as_ref())?;
        // Walk the hops: estimated keys in, rows out, strategy per hop.
        let mut keys_in = parent.est_rows.max(1.0);
        let mut strategies = Vec::new();
        let mut cost_total = 0.0;
        let mut rows_out = keys_in;
        for hop in &rel.hops {
            let target = self.schema.entity_at(hop.target_pos).clone();
            let target_rows = self.rows(&target)?;
            let per_key = if hop.target_unique {
                1.0
            } else if let Some(ix) = hop.target_index {
                self.rows_per_key(&target, ix, hop.target_fields.len())?
            } else {
                target_rows.max(1.0)
            };
            let (strategy, c) = choose_strategy(
                hop.target_rowid || hop.target_index.is_some(),
                keys_in,
                per_key,
                target_rows,
                false,
            );
            strategies.push(strategy);
            cost_total += c;
            rows_out = (keys_in * per_key).min(target_rows.max(1.0));
            keys_in = rows_out;
        }
        let conj = conjuncts(inc.filter.as_ref());
        rows_out *= residual_selectivity(&conj, &Access::Scan);
        if let Some(l) = inc.limit {
            rows_out = rows_out.min(parent.est_rows.max(1.0) * l as f64);
        }
        let name = inc.alias.clone().unwrap_or_else(|| rel.name.clone());
        if name.is_empty() || name.contains('.') {
            return Err(Error::new(
                SqlState::InvalidParameter,
                format!("include alias {name:?} must be a non-empty name without dots"),
            ));
        }
        let path = if parent.path.is_empty() {
            name
        } else {
            format!("{}.{}", parent.path, name)
        };
        let order = resolve_order(&e, &inc.order)?;
        let counts = inc
            .counts
            .iter()
            .map(|c| resolve(self.schema, pos, c))
            .collect::<Result<Vec<_>>>()?;
        let mut node = NodePlan {
            path,
            entity_pos: pos,
            entity: e.name.clone(),
            depth,
            id_order: is_id_order(&e, &order),
            order,
            rel: Some(rel),
            access: Access::Scan,
            strategies,
            projection: resolve_projection(&e, inc.select.as_deref())?,
            relation_predicates: count_relation_predicates(inc.filter.as_ref()),
            counts,
            est_rows: rows_out,
            est_cost: cost_total + rows_out * cost::CPU_ROW,
            children: Vec::new(),
        };
        check_sibling_names(&inc.includes)?;
        for c in &inc.includes {
            let child = self.plan_include(&node, c, budget)?;
            node.children.push(child);
        }
        Ok(node)
    }

    /// Picks the cheapest access path for a filter's conjuncts on `e`.
    pub fn choose_access(&mut self, e: &EntityDef, conj: &[&Filter]) -> Result<(Access, f64, f64)> {
        let rows = self.rows(e)?;
        let mut best = (Access::Scan, rows, rows * cost::SCAN_ROW + cost::SEEK);
        let field_of = |name: &str| e.field_index(name);
        // Identity.
        if let Some(alias) = e.rowid_alias {
            for (i, c) in conj.iter().enumerate() {
                if let Some(n) = eq_values(c, &field_of, alias) {
                    let cost = n as f64 * cost::SEEK;
                    if cost < best.2 {
                        best = (Access::Identity { conjunct: i }, n as f64, cost);
                    }
                }
            }
            let range: Vec<usize> = conj
                .iter()
                .enumerate()
                .filter(|(_, c)| is_range_bound(c, &field_of, alias))
                .map(|(i, _)| i)
                .collect();
            if !range.is_empty() {
                let sel = cost::RANGE_SELECTIVITY.powi(range.len().min(2) as i32);
                let est = (rows * sel).max(1.0);
                let cost = cost::SEEK + est * cost::SCAN_ROW;
                if cost < best.2 {
                    best = (Access::IdentityRange { conjuncts: range }, est, cost);
                }
            }
        }
        // Index equality / range on leading fields.
        for ix in &e.indexes {
            let mut eq = Vec::new();
            let mut combos = 1usize;
            for f in &ix.fields {
                match conj
                    .iter()
                    .enumerate()
                    .find_map(|(i, c)| eq_values(c, &field_of, *f).map(|n| (i, n)))
                {
                    Some((i, n)) => {
                        eq.push(i);
                        combos = combos.saturating_mul(n.max(1));
                    }
                    None => break,
                }
            }
            if !eq.is_empty() {
                let per_key = self.rows_per_key(e, ix.id, eq.len())?;
                let unique = ix.unique && eq.len() == ix.fields.len();
                let est = (combos as f64 * per_key).min(rows.max(1.0));
                let cost = combos as f64 * cost::SEEK + est * cost::SEEK;
                if cost < best.2 {
                    best = (
                        Access::IndexEq {
                            index: ix.id,
                            name: ix.name.clone(),
                            unique,
                            conjuncts: eq.clone(),
                        },
                        est,
                        cost,
                    );
                }
            }
            // Range bounds on the field after the equality prefix (single-valued equality only).
            if combos == 1 && eq.len() < ix.fields.len() {
                let f = ix.fields[eq.len()];
                let range: Vec<usize> = conj
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| is_range_bound(c, &field_of, f))
                    .map(|(i, _)| i)
                    .collect();
                if !range.is_empty() {
                    let base = if eq.is_empty() {
                        rows
                    } else {
                        self.rows_per_key(e, ix.id, eq.len())?
                    };
                    let sel = cost::RANGE_SELECTIVITY.powi(range.len().min(2) as i32);
                    let est = (base * sel).max(1.0);
                    let cost = cost::SEEK + est * cost::SEEK;
                    if cost < best.2 {
                        best = (
                            Access::IndexRange {
                                index: ix.id,
                                name: ix.name.clone(),
                                eq_conjuncts: eq,
                                range_conjuncts: range,
                            },
                            est,
                            cost,
                        );
                    }
                }
            }
        }
        Ok(best)
    }
}

/// Sibling includes must have distinct names (their relation, or their alias): the name is the
/// include's path segment and its key in nested results.
fn check_sibling_names(incs: &[Include]) -> Result<()> {
    let mut seen: Vec<String> = Vec::new();
    for i in incs {
        let n = i
            .alias
            .as_deref()
            .unwrap_or(&i.relation)
            .to_ascii_lowercase();
        if seen.contains(&n) {
            return Err(Error::new(
                SqlState::InvalidParameter,
                format!("include {n} appears twice at the same level; give one of them an alias"),
            ));
        }
        seen.push(n);
    }
    Ok(())
}

/// Chooses between index nested loop and hash join for one hop; returns the strategy and cost.
/// `imaged`: the target has a decoded table image, so scanning it and reading rows cost
/// [`cost::IMAGE_ROW`] per row instead of store work, and a key is probed in the image's
/// equality index.
pub fn choose_strategy(
    indexed: bool,
    keys: f64,
    per_key: f64,
    target_rows: f64,
    imaged: bool,
) -> (JoinStrategy, f64) {
    // An imaged target is probed through the image's in-memory equality index: a probe
    // costs a hash lookup, not a store seek.
    let (scan_row, read_row, probe) = if imaged {
        (cost::IMAGE_ROW, cost::IMAGE_ROW, cost::CPU_ROW)
    } else {
        (cost::SCAN_ROW, cost::SEEK, cost::SEEK)
    };
    let hash = target_rows * (scan_row + cost::CPU_ROW) + keys * cost::CPU_ROW;
    if !indexed {
        return (JoinStrategy::Hash, hash);
    }
    let inl = keys * probe + (keys * per_key).min(target_rows) * read_row;
    if inl <= hash {
        (JoinStrategy::IndexNestedLoop, inl)
    } else {
        (JoinStrategy::Hash, hash)
    }
}

/// For an equality or IN conjunct on field `f`: how many values it names.
fn eq_values(c: &Filter, field_of: &impl Fn(&str) -> Option<u32>, f: u32) -> Option<usize> {
    match c {
        Filter::Cmp {
            field,
            op: CmpOp::Eq,
            value,
        } if field_of(field) == Some(f) && !value.is_null() => Some(1),
        Filter::In {
            field,
            values,
            negated: false,
        } if field_of(field) == Some(f) => Some(values.len()),
        _ => None,
    }
}

fn is_range_bound(c: &Filter, field_of: &impl Fn(&str) -> Option<u32>, f: u32) -> bool {
    matches!(c, Filter::Cmp { field, op: CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge, value }
        if field_of(field) == Some(f) && !value.is_null())
}

fn residual_selectivity(conj: &[&Filter], access: &Access) -> f64 {
    let used: Vec<usize> = match access {
        Access::Identity { conjunct } => vec![*conjunct],
        Access::IdentityRange { conjuncts } => conjuncts.clone(),
        Access::IndexEq { conjuncts, .. } => conjuncts.clone(),
        Access::IndexRange {
            eq_conjuncts,
            range_conjuncts,
            ..
        } => eq_conjuncts
            .iter()
            .chain(range_conjuncts)
            .copied()
            .collect(),
        Access::Scan => Vec::new(),
    };
    let n = (0..conj.len()).filter(|i| !used.contains(i)).count();
    cost::FILTER_SELECTIVITY.powi(n.min(8) as i32)
}

fn resolve_projection(e: &EntityDef, select: Option<&[String]>) -> Result<Vec<u32>> {
    match select {
        None => Ok((0..e.fields.len() as u32).collect()),
        Some(names) => {
            let mut out = Vec::with_capacity(names.len());
            for n in names {
                let i = e
                    .field_index(n)
                    .ok_or_else(|| Error::unknown_field(&e.name, n))?;
                if !out.contains(&i) {
                    out.push(i);
                }
            }
            Ok(out)
        }
    }
}

fn resolve_order(e: &EntityDef, order: &[OrderBy]) -> Result<Vec<SortKey>> {
    order
        .iter()
        .map(|o| {
            let field = e
                .field_index(&o.field)
                .ok_or_else(|| Error::unknown_field(&e.name, &o.field))?;
            Ok(SortKey {
                field,
                desc: o.desc,
                nulls_first: match o.nulls {
                    Some(Nulls::First) => true,
                    Some(Nulls::Last) => false,
                    None => !o.desc,
                },
            })
        })
        .collect()
}

fn is_id_order(e: &EntityDef, order: &[SortKey]) -> bool {
    match order {
        [] => true,
        [k] => e.rowid_alias == Some(k.field) && !k.desc,
        _ => false,
    }
}

fn count_relation_predicates(f: Option<&Filter>) -> usize {
    let Some(f) = f else {
        return 0;
    };
    match f {
        Filter::And(fs) | Filter::Or(fs) => {
            fs.iter().map(|x| count_relation_predicates(Some(x))).sum()
        }
        Filter::Not(x) => count_relation_predicates(Some(x)),
        Filter::Some { .. } | Filter::Every { .. } | Filter::None { .. } => 1,
        _ => 0,
    }
}

/// Checks every field and relation a filter names, recursively into relation predicates.
pub fn check_filter(schema: &Schema, pos: usize, f: Option<&Filter>) -> Result<()> {
    let Some(f) = f else {
        return Ok(());
    };
    let e = schema.entity_at(pos);
    let field = |n: &str| {
        e.field_index(n)
            .map(|_| ())
            .ok_or_else(|| Error::unknown_field(&e.name, n))
    };
    match f {
        Filter::And(fs) | Filter::Or(fs) => {
            for x in fs {
                check_filter(schema, pos, Some(x))?;
            }
            Ok(())
        }
        Filter::Not(x) => check_filter(schema, pos, Some(x)),
        Filter::Cmp { field: n, .. }
        | Filter::In { field: n, .. }
        | Filter::Like { field: n, .. }
        | Filter::IsNull { field: n, .. } => field(n),
        Filter::Some { relation, filter }
        | Filter::Every { relation, filter }
        | Filter::None { relation, filter } => {
            let rel = resolve(schema, pos, relation)?;
            check_filter(schema, rel.target_pos, filter.as_deref())
        }
    }
}
