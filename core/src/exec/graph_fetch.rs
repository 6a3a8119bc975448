//! The graph fetch executor. The root level is read through the planned access path; each
//! include node is resolved with one batched lookup for all parents at that level (identity or
//! index lookups per distinct parent key, or one hash-probed scan of the target), so the number
//! of internal lookups depends on the shape of the fetch, never on row counts. Everything is
//! read at the transaction's snapshot. Budgets are checked as rows are gathered, so a fetch
//! that would exceed one stops before holding its whole result.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::sync::Arc;
use std::time::Instant;

use super::filter::{
    compile_leaf, join_key, key_of, literal_for, source_join_key, source_key, JoinKey, Pred,
};
use crate::catalog::{EntityDef, IndexDef, Schema};
use crate::error::{Error, Result, SqlState};
use crate::ir::graph::{Budget, CmpOp, Cursor, Filter, GraphFetch, Include};
use crate::ir::result::{CountBlock, EdgeBlock, EntityBlock, FetchStats, GraphResult};
use crate::plan::planner::{choose_strategy, conjuncts, Access, JoinStrategy, Planner, SortKey};
use crate::plan::relation::{Hop, RelPlan};
use crate::plan::{FetchPlan, NodePlan};
use crate::storage::keys::{self, prefix_end};
use crate::storage::row_codec::StoredRow;
use crate::txn::Txn;
use crate::value::Value;

/// A row as the executor holds it: identity and every field (older stored layouts widened).
pub type RowRef = (i64, Arc<Vec<Value>>);

/// Which rows a hop keeps (include filters and cursors).
type KeepFn<'a> = dyn FnMut(&RowRef) -> Result<bool> + 'a;

/// Slot numbers of a hop's distinct keys. Integer keys (the usual foreign keys) have their own
/// map, so probing one hashes a single i64.
#[derive(Default)]
struct Slots {
    ints: HashMap<i64, usize>,
    other: HashMap<JoinKey, usize>,
}

impl Slots {
    fn get(&self, k: &JoinKey) -> Option<usize> {
        match k {
            JoinKey::Int(i) => self.ints.get(i).copied(),
            k => self.other.get(k).copied(),
        }
    }

    /// Gives `k` the slot `slot` unless it has one; true when it was new.
    fn insert_new(&mut self, k: &JoinKey, slot: usize) -> bool {
        use std::collections::hash_map::Entry;
        match k {
            JoinKey::Int(i) => match self.ints.entry(*i) {
                Entry::Vacant(v) => v.insert(slot),
                Entry::Occupied(_) => return false,
            },
            k => match self.other.entry(k.clone()) {
                Entry::Vacant(v) => v.insert(slot),
                Entry::Occupied(_) => return false,
            },
        };
        true
    }

    /// The slot of a target row's key `fields`; an integer in a single key field is probed
    /// without building a key.
    fn probe(&self, row: &[Value], fields: &[u32]) -> Option<usize> {
        if let [f] = fields {
            if let Some(Value::Integer(i)) = row.get(*f as usize) {
                return self.ints.get(i).copied();
            }
        }
        join_key(row, fields).and_then(|k| self.get(&k))
    }
}

/// What one hop found: target rows per distinct source key (by slot).
#[derive(Default)]
struct HopOut {
    slots: Slots,
    rows: Vec<Vec<RowRef>>,
}

impl HopOut {
    fn get(&self, key: &JoinKey) -> Option<&Vec<RowRef>> {
        self.slots.get(key).map(|s| &self.rows[s])
    }

    fn take(&mut self, key: &JoinKey) -> Option<Vec<RowRef>> {
        let s = self.slots.get(key)?;
        Some(std::mem::take(&mut self.rows[s]))
    }

    fn all(&self) -> impl Iterator<Item = &RowRef> {
        self.rows.iter().flatten()
    }
}

/// Actual figures of one plan step (EXPLAIN ANALYZE).
#[derive(Debug, Clone, Default)]
pub struct StepActual {
    pub rows: u64,
    pub examined: u64,
    pub lookups: u64,
    pub time_us: u64,
    pub strategies: Vec<JoinStrategy>,
}

pub struct Executor<'t> {
    txn: &'t mut Txn,
    schema: Arc<Schema>,
    budget: Budget,
    start: Instant,
    pub stats: FetchStats,
    /// Per plan node, in pre-order.
    pub steps: Vec<StepActual>,
    /// Per entity position: rows by identity, insertion-ordered.
    blocks: HashMap<usize, (Vec<RowRef>, HashMap<i64, usize>)>,
    /// Table image views taken by this execution, by table id (one per table per fetch).
    views: std::cell::RefCell<HashMap<u32, Arc<crate::exec::table_cache::ImageView>>>,
    /// Entity positions that appear in exactly one node of the plan.
    single_node_entities: HashSet<usize>,
    edges: Vec<EdgeBlock>,
    counts: Vec<CountBlock>,
}

fn budget_error(name: &str, limit: u64, detail: impl std::fmt::Display) -> Error {
    Error::new(
        SqlState::LimitExceeded,
        format!("budget {name} ({limit}) exceeded {detail}"),
    )
}

pub fn full_values(e: &EntityDef, r: StoredRow) -> Vec<Value> {
    if r.values.len() == e.fields.len() {
        r.values
    } else {
        (0..e.fields.len() as u32)
            .map(|f| e.stored_value(&r.values, f))
            .collect()
    }
}

/// Orders two rows by sort keys, then identity.
pub fn cmp_rows(keys: &[SortKey], a: (&[Value], i64), b: (&[Value], i64)) -> Ordering {
    for (i, k) in keys.iter().enumerate() {
        let x = a.0.get(i).unwrap_or(&Value::Null);
        let y = b.0.get(i).unwrap_or(&Value::Null);
        let o = match (x.is_null(), y.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) => {
                if k.nulls_first {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (false, true) => {
                if k.nulls_first {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            _ => {
                let o = x.total_cmp(y);
                if k.desc {
                    o.reverse()
                } else {
                    o
                }
            }
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.1.cmp(&b.1)
}

fn sort_values(keys: &[SortKey], row: &[Value]) -> Vec<Value> {
    keys.iter()
        .map(|k| row.get(k.field as usize).cloned().unwrap_or(Value::Null))
        .collect()
}

/// Rows kept in order with an optional cap: sorts and truncates as it grows, so memory stays
/// within about twice the cap. Sort values are kept beside the rows only when there are sort
/// keys (identity order needs none).
struct TopK<'k> {
    keys: &'k [SortKey],
    cap: Option<usize>,
    rows: Vec<RowRef>,
    /// `svs[i]` is the sort values of `rows[i]`; empty without sort keys.
    svs: Vec<Vec<Value>>,
    sorted: bool,
}

impl<'k> TopK<'k> {
    fn new(keys: &'k [SortKey], cap: Option<usize>, presorted: bool) -> Self {
        TopK {
            keys,
            cap,
            rows: Vec::new(),
            svs: Vec::new(),
            sorted: presorted,
        }
    }
    fn push(&mut self, r: RowRef, presorted: bool) {
        if !self.keys.is_empty() {
            self.svs.push(sort_values(self.keys, &r.1));
        }
        self.rows.push(r);
        self.sorted &= presorted;
        if let Some(c) = self.cap {
            if self.rows.len() > 2 * c + 64 {
                self.finish_sort();
                self.rows.truncate(c);
                self.svs.truncate(c);
            }
        }
    }
    fn finish_sort(&mut self) {
        if self.sorted {
            return;
        }
        self.sorted = true;
        if self.keys.is_empty() {
            self.rows.sort_by_key(|r| r.0);
            return;
        }
        let (keys, rows, svs) = (self.keys, &self.rows, &self.svs);
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by(|a, b| cmp_rows(keys, (&svs[*a], rows[*a].0), (&svs[*b], rows[*b].0)));
        self.rows = order.iter().map(|i| self.rows[*i].clone()).collect();
        self.svs = order
            .iter()
            .map(|i| std::mem::take(&mut self.svs[*i]))
            .collect();
    }
    fn len(&self) -> usize {
        self.rows.len()
    }
    /// The rows in order, cut to the cap.
    fn into_rows(mut self) -> Vec<RowRef> {
        self.finish_sort();
        if let Some(c) = self.cap {
            self.rows.truncate(c);
        }
        self.rows
    }
}

/// Whether a row (sort values + id) comes strictly after a cursor.
fn after_cursor(keys: &[SortKey], sv: &[Value], id: i64, c: &Cursor) -> bool {
    cmp_rows(keys, (sv, id), (&c.values, c.id)) == Ordering::Greater
}

impl<'t> Executor<'t> {
    pub fn new(txn: &'t mut Txn, budget: Budget) -> Self {
        let schema = txn.schema().clone();
        Executor {
            txn,
            schema,
            budget,
            start: Instant::now(),
            stats: FetchStats::default(),
            steps: Vec::new(),
            blocks: HashMap::default(),
            views: Default::default(),
            single_node_entities: HashSet::default(),
            edges: Vec::new(),
            counts: Vec::new(),
        }
    }

    /// Budgets on rows gathered by a hop without a per-parent limit (`limit_check` is the
    /// fanout limit and what to name): every kept row will be returned, so `total` rows so far
    /// count against `max_rows` now, and `key_rows` of one key against the fanout limit.
    fn check_gathered(
        &self,
        total: u64,
        key_rows: usize,
        limit_check: Option<(u64, &str)>,
    ) -> Result<()> {
        let Some((limit, what)) = limit_check else {
            return Ok(());
        };
        if self.stats.rows + total > self.budget.max_rows {
            return Err(budget_error(
                "max_rows",
                self.budget.max_rows,
                format!("while fetching {what}"),
            ));
        }
        if key_rows as u64 > limit {
            return Err(budget_error(
                "max_fanout",
                limit,
                format!("in relation {what}"),
            ));
        }
        Ok(())
    }

    /// [`Self::tick`] for `n` rows at once.
    fn tick_n(&mut self, step: usize, n: u64) -> Result<()> {
        let before = self.stats.rows_examined;
        self.stats.rows_examined += n;
        if let Some(s) = self.steps.get_mut(step) {
            s.examined += n;
        }
        if before / 256 != self.stats.rows_examined / 256 {
            self.check_time()?;
        }
        Ok(())
    }

    fn tick(&mut self, step: usize) -> Result<()> {
        self.stats.rows_examined += 1;
        if let Some(s) = self.steps.get_mut(step) {
            s.examined += 1;
        }
        if self.stats.rows_examined.is_multiple_of(256) {
            self.check_time()?;
        }
        Ok(())
    }

    fn check_time(&self) -> Result<()> {
        let ms = self.start.elapsed().as_millis() as u64;
        if ms > self.budget.max_time_ms {
            return Err(budget_error(
                "max_time_ms",
                self.budget.max_time_ms,
                format!("after {ms} ms"),
            ));
        }
        Ok(())
    }

    fn add_rows(&mut self, n: u64, what: &str) -> Result<()> {
        self.stats.rows += n;
        if self.stats.rows > self.budget.max_rows {
            return Err(budget_error(
                "max_rows",
                self.budget.max_rows,
                format!("while fetching {what}"),
            ));
        }
        Ok(())
    }

    /// Every live row of `e` (soft-deleted excluded) in identity order, from `from` on, until
    /// `visit` returns false.
    fn scan(
        &mut self,
        e: &EntityDef,
        from: i64,
        step: usize,
        mut visit: impl FnMut(&mut Self, RowRef) -> Result<bool>,
    ) -> Result<()> {
        if let Some(img) = self.image(e) {
            self.txn.record_scan(e.id, from);
            for (id, deleted, vals) in img.iter_from(from) {
                self.tick(step)?;
                if deleted {
                    continue;
                }
                if !visit(self, (id, vals.clone()))? {
                    return Ok(());
                }
            }
            return Ok(());
        }
        // A full scan of a table without buffered writes can leave a decoded image behind,
        // unless another reader is building it already.
        let core = self.txn.core().clone();
        let cache = &core.query.tables;
        let ticket = if from == i64::MIN
            && self.may_build_image(e)
            && core.query.stats.row_count(self.txn, e)? <= crate::exec::table_cache::MAX_ROWS
        {
            let t = cache.begin_build(e.id, self.schema.version(), self.txn.snapshot_ts);
            // Another reader is scanning this table into its image: waiting for it costs less
            // than the same scan here.
            if t.is_none()
                && cache.wait_for_build(e.id, crate::exec::table_cache::BUILD_WAIT)
                && self.image(e).is_some()
            {
                return self.scan(e, from, step, visit);
            }
            t
        } else {
            None
        };
        self.scan_store(e, from, step, ticket, visit)
    }

    /// Whether this fetch may build `e`'s image: the image holds committed rows at the
    /// committed schema, which is what this transaction scans only without its own writes to
    /// the table or its own schema changes.
    fn may_build_image(&self, e: &EntityDef) -> bool {
        self.txn.schema_is_committed()
            && !self.txn.has_pending_in(e.id)
            && self.txn.core().query.tables.budget() > 0
    }

    /// [`Self::scan`] from the store; with a build ticket (a complete scan, `from` is the
    /// smallest id) the rows are collected into the table's image on the way.
    fn scan_store(
        &mut self,
        e: &EntityDef,
        from: i64,
        step: usize,
        ticket: Option<crate::exec::table_cache::BuildTicket<'_>>,
        mut visit: impl FnMut(&mut Self, RowRef) -> Result<bool>,
    ) -> Result<()> {
        let max_bytes = self.txn.core().query.tables.max_image_bytes();
        let mut image = ticket.map(|t| (t, Vec::new(), Vec::new(), 0usize));
        // Collect in chunks so `visit` may use the executor (the scan borrows the txn).
        let mut out = Vec::new();
        let mut next = from;
        loop {
            out.clear();
            let mut it = self.txn.scan_from(e.id, next);
            for item in it.by_ref() {
                out.push(item?);
                if out.len() >= 1024 {
                    break;
                }
            }
            drop(it);
            let full = out.len() >= 1024;
            let last = out.last().map(|(id, _)| *id);
            for (id, r) in out.drain(..) {
                self.tick(step)?;
                let deleted = r.is_soft_deleted();
                let version = r.version;
                let vals = Arc::new(full_values(e, r));
                if let Some((_, rows, versions, bytes)) = image.as_mut() {
                    *bytes += crate::exec::table_cache::row_bytes(&vals);
                    rows.push((id, deleted, vals.clone()));
                    versions.push(version);
                    if *bytes > max_bytes {
                        image = None; // too big to keep: stop collecting, abandon the build
                    }
                }
                if deleted {
                    continue;
                }
                if !visit(self, (id, vals))? {
                    return Ok(());
                }
            }
            match (full, last) {
                (true, Some(l)) if l < i64::MAX => next = l + 1,
                _ => break,
            }
        }
        if let Some((ticket, rows, versions, bytes)) = image {
            ticket.finish(rows, versions, bytes);
        }
        Ok(())
    }

    /// The decoded image of `e` this transaction may read, if any.
    fn image(&self, e: &EntityDef) -> Option<Arc<crate::exec::table_cache::ImageView>> {
        if !self.txn.schema_is_committed() || self.txn.has_pending_in(e.id) {
            return None;
        }
        if let Some(v) = self.views.borrow().get(&e.id) {
            return Some(v.clone());
        }
        let v = Arc::new(self.txn.core().query.tables.get(
            e.id,
            self.schema.version(),
            self.txn.snapshot_ts,
        )?);
        self.views.borrow_mut().insert(e.id, v.clone());
        Some(v)
    }

    /// Live rows (soft-deleted excluded) with the given ids (sorted, distinct), in id order,
    /// read in runs of nearby ids.
    fn read_batch(&mut self, e: &EntityDef, ids: &[i64], step: usize) -> Result<Vec<RowRef>> {
        if let Some(img) = self.image(e) {
            self.txn.record_points(e.id, ids);
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some((_, deleted, vals)) = img.get(*id) {
                    self.tick(step)?;
                    if !deleted {
                        out.push((*id, vals));
                    }
                }
            }
            return Ok(out);
        }
        let mut stored = Vec::with_capacity(ids.len());
        // Counts its store reads toward the table's image itself.
        self.txn.read_rows_batch(e.id, ids, |id, r| {
            stored.push((id, r));
            Ok(())
        })?;
        let mut out = Vec::with_capacity(stored.len());
        for (id, r) in stored {
            self.tick(step)?;
            if !r.is_soft_deleted() {
                out.push((id, Arc::new(full_values(e, r))));
            }
        }
        Ok(out)
    }

    /// For each encoded prefix of the first `n` fields of `ix`: the live rows (soft-deleted
    /// excluded) under it, in id order. All candidates are read in one batch; each is verified
    /// against its current values (index entries are hints).
    fn index_lookup_batch(
        &mut self,
        e: &EntityDef,
        ix: &IndexDef,
        prefixes: &[Vec<u8>],
        n: usize,
        step: usize,
    ) -> Result<Vec<Vec<RowRef>>> {
        let cands = self.txn.index_candidates_grouped(prefixes)?;
        let mut all: Vec<i64> = cands.iter().flatten().copied().collect();
        all.sort_unstable();
        all.dedup();
        let rows: HashMap<i64, RowRef> = self
            .read_batch(e, &all, step)?
            .into_iter()
            .map(|r| (r.0, r))
            .collect();
        let n = n.min(ix.fields.len());
        let mut out = Vec::with_capacity(prefixes.len());
        for (p, ids) in prefixes.iter().zip(cands) {
            let mut v = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(r) = rows.get(&id) {
                    let vals: Vec<Value> = ix.fields[..n]
                        .iter()
                        .map(|f| r.1.get(*f as usize).cloned().unwrap_or(Value::Null))
                        .collect();
                    if keys::index_values_prefix(ix.id, &vals) == *p {
                        v.push(r.clone());
                    }
                }
            }
            out.push(v);
        }
        Ok(out)
    }

    fn reserve_block(&mut self, pos: usize, n: usize) {
        let (rows, index) = self.blocks.entry(pos).or_default();
        rows.reserve(n);
        index.reserve(n);
    }

    fn add_to_block(&mut self, pos: usize, r: &RowRef) {
        let (rows, index) = self.blocks.entry(pos).or_default();
        if let std::collections::hash_map::Entry::Vacant(v) = index.entry(r.0) {
            v.insert(rows.len());
            rows.push(r.clone());
        }
    }

    // ---- filters ----

    /// Compiles a filter on the entity at `pos`; relation predicates run their batched lookup
    /// now (counted in `step`).
    pub fn compile_filter(
        &mut self,
        pos: usize,
        f: Option<&Filter>,
        step: usize,
    ) -> Result<Option<Pred>> {
        let Some(f) = f else {
            return Ok(None);
        };
        let schema = self.schema.clone();
        let e = schema.entity_at(pos);
        Ok(Some(match f {
            Filter::And(fs) | Filter::Or(fs) => {
                let mut ps = Vec::with_capacity(fs.len());
                for x in fs {
                    if let Some(p) = self.compile_filter(pos, Some(x), step)? {
                        ps.push(p);
                    }
                }
                if matches!(f, Filter::And(_)) {
                    Pred::And(ps)
                } else {
                    Pred::Or(ps)
                }
            }
            Filter::Not(x) => match self.compile_filter(pos, Some(x), step)? {
                Some(p) => Pred::Not(Box::new(p)),
                None => return Ok(None),
            },
            Filter::Some { relation, filter }
            | Filter::Every { relation, filter }
            | Filter::None { relation, filter } => {
                let rel = crate::plan::relation::resolve(&schema, pos, relation)?;
                let every = matches!(f, Filter::Every { .. });
                let set = self.related_keys(&rel, filter.as_deref(), every, step)?;
                let key_in = Pred::KeyIn {
                    fields: rel.hops[0].source_fields.clone(),
                    types: rel.hops[0].target_types.clone(),
                    set,
                };
                if matches!(f, Filter::Some { .. }) {
                    key_in
                } else {
                    Pred::Not(Box::new(key_in))
                }
            }
            leaf => match compile_leaf(e, leaf)? {
                Some(x) => Pred::Expr(x),
                None => return Ok(None),
            },
        }))
    }

    /// Keys (in the source entity's `source_fields` terms) of rows that have at least one
    /// related row matching `filter` (with `failing`: at least one related row for which
    /// `filter` is not true).
    fn related_keys(
        &mut self,
        rel: &RelPlan,
        filter: Option<&Filter>,
        failing: bool,
        step: usize,
    ) -> Result<HashSet<Vec<u8>>> {
        if let Some(s) = self.steps.get_mut(step) {
            s.lookups += 1;
        }
        self.stats.lookups += 1;
        let schema = self.schema.clone();
        let last = rel.hops.last().expect("a relation has a hop");
        let target = schema.entity_at(last.target_pos).clone();
        let pred = self.compile_filter(last.target_pos, filter, step)?;
        if failing && pred.is_none() {
            return Ok(HashSet::default()); // every related row matches an absent filter
        }
        // Matching target rows, through the cheapest access path for the filter.
        let conj = if failing {
            Vec::new()
        } else {
            conjuncts(filter)
        };
        let access = self.choose_access(&target, &conj)?;
        let mut keys_at_target: HashSet<Vec<u8>> = HashSet::default();
        let tf = last.target_fields.clone();
        self.access_rows(&target, &access, &conj, None, step, &mut |_, r| {
            let pass = match &pred {
                None => true,
                Some(p) => {
                    let v = p.eval(&r.1)?;
                    if failing {
                        v != Some(true)
                    } else {
                        v == Some(true)
                    }
                }
            };
            if pass {
                if let Some(k) = key_of(&r.1, &tf) {
                    keys_at_target.insert(k);
                }
            }
            Ok(true)
        })?;
        if rel.hops.len() == 1 {
            return Ok(keys_at_target);
        }
        // Many-to-many: join rows whose far key matched give the near keys.
        let join = schema.entity_at(rel.hops[0].target_pos).clone();
        let near = rel.hops[0].target_fields.clone();
        let far = rel.hops[1].source_fields.clone();
        let far_types = rel.hops[1].target_types.clone();
        let mut out = HashSet::default();
        self.scan(&join, i64::MIN, step, |_, r| {
            if source_key(&r.1, &far, &far_types).is_some_and(|k| keys_at_target.contains(&k)) {
                if let Some(k) = key_of(&r.1, &near) {
                    out.insert(k);
                }
            }
            Ok(true)
        })?;
        Ok(out)
    }

    fn choose_access(&mut self, e: &EntityDef, conj: &[&Filter]) -> Result<Access> {
        let core = self.txn.core().clone();
        let planner = Planner {
            schema: &self.schema.clone(),
            stats: &core.query.stats,
            txn: self.txn,
            table_rows: Vec::new(),
        };
        let mut p = planner;
        Ok(p.choose_access(e, conj)?.0)
    }

    // ---- access paths ----

    /// Feeds the rows an access path yields (a superset of the rows matching the conjuncts it
    /// uses; callers apply the full filter) to `visit` until it returns false. Identity order
    /// for identity lookups and scans; index order for index paths.
    fn access_rows(
        &mut self,
        e: &EntityDef,
        access: &Access,
        conj: &[&Filter],
        scan_from: Option<i64>,
        step: usize,
        visit: &mut dyn FnMut(&mut Self, RowRef) -> Result<bool>,
    ) -> Result<()> {
        match access {
            Access::Identity { conjunct } => {
                let alias = e.rowid_alias.unwrap_or(0);
                let mut ids: Vec<i64> = in_values(conj[*conjunct])
                    .iter()
                    .filter_map(|v| literal_for(e, alias, v).as_i64())
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                for r in self.read_batch(e, &ids, step)? {
                    if !visit(self, r)? {
                        return Ok(());
                    }
                }
                Ok(())
            }
            Access::IndexEq {
                index, conjuncts, ..
            } => {
                let ix = e
                    .indexes
                    .iter()
                    .find(|i| i.id == *index)
                    .ok_or_else(|| Error::internal("planned index vanished"))?
                    .clone();
                // Cartesian product of the equality values, field by field.
                let mut combos: Vec<Vec<Value>> = vec![Vec::new()];
                for (n, c) in conjuncts.iter().enumerate() {
                    let f = ix.fields[n];
                    let vals = in_values(conj[*c]);
                    let mut next = Vec::with_capacity(combos.len() * vals.len());
                    for combo in &combos {
                        for v in &vals {
                            let v = literal_for(e, f, v);
                            if v.is_null() {
                                continue;
                            }
                            let mut c2 = combo.clone();
                            c2.push(v);
                            next.push(c2);
                        }
                    }
                    combos = next;
                }
                let mut keys: Vec<Vec<u8>> = combos
                    .iter()
                    .map(|c| keys::index_values_prefix(ix.id, c))
                    .collect();
                keys.sort();
                keys.dedup();
                let mut seen: HashSet<i64> = HashSet::default();
                for rows in self.index_lookup_batch(e, &ix, &keys, conjuncts.len(), step)? {
                    for r in rows {
                        if seen.insert(r.0) && !visit(self, r)? {
                            return Ok(());
                        }
                    }
                }
                Ok(())
            }
            Access::IndexRange {
                index,
                eq_conjuncts,
                range_conjuncts,
                ..
            } => {
                let ix = e
                    .indexes
                    .iter()
                    .find(|i| i.id == *index)
                    .ok_or_else(|| Error::internal("planned index vanished"))?
                    .clone();
                let mut eq_vals = Vec::new();
                for (n, c) in eq_conjuncts.iter().enumerate() {
                    let v = in_values(conj[*c])
                        .into_iter()
                        .next()
                        .unwrap_or(Value::Null);
                    eq_vals.push(literal_for(e, ix.fields[n], &v));
                }
                let prefix = keys::index_values_prefix(ix.id, &eq_vals);
                let f = ix.fields[eq_vals.len()];
                let mut start = prefix.clone();
                let mut end = prefix_end(&prefix);
                for c in range_conjuncts {
                    if let Filter::Cmp { op, value, .. } = conj[*c] {
                        let v = literal_for(e, f, value);
                        let mut k = prefix.clone();
                        crate::value::encode_key_value(&v, &mut k);
                        match op {
                            CmpOp::Gt => start = start.max(prefix_end(&k)),
                            CmpOp::Ge => start = start.max(k),
                            CmpOp::Lt => end = end.min(k),
                            CmpOp::Le => end = end.min(prefix_end(&k)),
                            _ => {}
                        }
                    }
                }
                if start >= end {
                    return Ok(());
                }
                let mut batch = Vec::new();
                self.txn.index_range(e, &ix, &start, &end, |id, r| {
                    batch.push((id, r));
                    Ok(true)
                })?;
                for (id, r) in batch {
                    self.tick(step)?;
                    if r.is_soft_deleted() {
                        continue;
                    }
                    if !visit(self, (id, Arc::new(full_values(e, r))))? {
                        break;
                    }
                }
                Ok(())
            }
            Access::IdentityRange { conjuncts } => {
                let alias = e.rowid_alias.unwrap_or(0);
                let (mut lo, mut hi) = (i64::MIN, i64::MAX);
                for c in conjuncts {
                    if let Filter::Cmp { op, value, .. } = conj[*c] {
                        // Bounds only narrow the scan; the full filter still decides.
                        let (l, h) = id_bounds(*op, &literal_for(e, alias, value));
                        lo = lo.max(l);
                        hi = hi.min(h);
                    }
                }
                let from = scan_from.map_or(lo, |s| s.max(lo));
                if from > hi {
                    return Ok(());
                }
                self.scan(e, from, step, |ex, r| {
                    if r.0 > hi {
                        return Ok(false);
                    }
                    visit(ex, r)
                })
            }
            Access::Scan => self.scan(e, scan_from.unwrap_or(i64::MIN), step, |ex, r| visit(ex, r)),
        }
    }

    /// Rows of the entity at `pos` matching `filter` (all rows when absent), in the access
    /// path's order. Used by mutations and aggregates.
    pub fn matching_rows(&mut self, pos: usize, filter: Option<&Filter>) -> Result<Vec<RowRef>> {
        self.steps = vec![StepActual::default()];
        let schema = self.schema.clone();
        let e = schema.entity_at(pos).clone();
        let pred = self.compile_filter(pos, filter, 0)?;
        let conj = conjuncts(filter);
        let access = self.choose_access(&e, &conj)?;
        let mut out = Vec::new();
        self.access_rows(&e, &access, &conj, None, 0, &mut |_, r| {
            if pred.as_ref().map_or(Ok(true), |p| p.passes(&r.1))? {
                out.push(r);
            }
            Ok(true)
        })?;
        Ok(out)
    }

    // ---- the fetch ----

    pub fn run(
        mut self,
        plan: &FetchPlan,
        f: &GraphFetch,
    ) -> Result<(GraphResult, Vec<StepActual>)> {
        if f.page.offset > self.budget.max_offset {
            return Err(budget_error(
                "max_offset",
                self.budget.max_offset,
                format!("by offset {}", f.page.offset),
            ));
        }
        let n = plan.node_count();
        self.steps = vec![StepActual::default(); n];
        let mut uses: HashMap<usize, usize> = HashMap::default();
        fn count(n: &NodePlan, uses: &mut HashMap<usize, usize>) {
            *uses.entry(n.entity_pos).or_default() += 1;
            n.children.iter().for_each(|c| count(c, uses));
        }
        count(&plan.root, &mut uses);
        self.single_node_entities = uses
            .into_iter()
            .filter(|(_, k)| *k == 1)
            .map(|(p, _)| p)
            .collect();
        let root_plan = &plan.root;
        let (roots, next_cursor) = self.run_root(root_plan, f)?;
        self.stats.lookups += 1;
        self.steps[0].lookups += 1;
        let mut next_step = 1;
        let root_ids: Vec<i64> = roots.iter().map(|r| r.0).collect();
        self.run_counts(root_plan, &roots, 0)?;
        for (child, inc) in root_plan.children.iter().zip(&f.includes) {
            self.run_include(child, inc, &roots, &root_plan.entity, &mut next_step)?;
        }
        self.check_time()?;
        let result = self.assemble(plan, root_ids, next_cursor);
        Ok((result, self.steps))
    }

    fn run_root(
        &mut self,
        node: &NodePlan,
        f: &GraphFetch,
    ) -> Result<(Vec<RowRef>, Option<Cursor>)> {
        let t0 = Instant::now();
        let schema = self.schema.clone();
        let e = schema.entity_at(node.entity_pos).clone();
        let pred = self.compile_filter(node.entity_pos, f.filter.as_ref(), 0)?;
        let conj = conjuncts(f.filter.as_ref());
        let offset = f.page.offset as usize;
        let keep = f.page.limit.map(|l| offset + l as usize + 1);
        let after = f.page.after.clone();
        let scan_order =
            node.id_order && matches!(node.access, Access::Scan | Access::Identity { .. });
        let scan_from = match (&after, scan_order) {
            (Some(c), true) => Some(c.id.saturating_add(1)),
            _ => None,
        };
        let keys = node.order.clone();
        let mut top = TopK::new(&keys, keep, scan_order);
        let unlimited = keep.is_none();
        let what = e.name.clone();
        let budget_rows = self.budget.max_rows;
        let mut accepted: u64 = 0;
        self.access_rows(&e, &node.access, &conj, scan_from, 0, &mut |_, r| {
            if let Some(p) = &pred {
                if !p.passes(&r.1)? {
                    return Ok(true);
                }
            }
            if let Some(c) = &after {
                let sv = sort_values(&keys, &r.1);
                if !after_cursor(&keys, &sv, r.0, c) {
                    return Ok(true);
                }
            }
            accepted += 1;
            if unlimited && accepted > budget_rows {
                return Err(budget_error(
                    "max_rows",
                    budget_rows,
                    format!("while fetching {what}"),
                ));
            }
            top.push(r, scan_order);
            // In scan order, the first `keep` accepted rows are the answer.
            Ok(!(scan_order && keep.is_some_and(|k| top.len() >= k)))
        })?;
        let mut out = top.into_rows();
        let more = keep.is_some_and(|k| out.len() >= k);
        if more {
            out.pop();
        }
        out.drain(..offset.min(out.len()));
        let next_cursor = if more {
            out.last().map(|r| Cursor {
                values: sort_values(&keys, &r.1),
                id: r.0,
            })
        } else {
            None
        };
        self.add_rows(out.len() as u64, &e.name)?;
        for r in &out {
            self.add_to_block(node.entity_pos, r);
        }
        let s = &mut self.steps[0];
        s.rows = out.len() as u64;
        s.time_us += t0.elapsed().as_micros() as u64;
        Ok((out, next_cursor))
    }

    /// Runs one hop: for each distinct source key, the live target rows (identity order) that
    /// `keep` accepts, at most `cap` per key after ordering (when given).
    #[allow(clippy::too_many_arguments)]
    fn run_hop(
        &mut self,
        hop: &Hop,
        planned: JoinStrategy,
        sources: &[RowRef],
        step: usize,
        mut keep: Option<&mut KeepFn<'_>>,
        keys_order: &[SortKey],
        cap: Option<usize>,
        per_key_limit_check: Option<(u64, &str)>,
    ) -> Result<(HopOut, JoinStrategy)> {
        let schema = self.schema.clone();
        let target = schema.entity_at(hop.target_pos).clone();
        // Distinct keys in first-seen order, with their values for index lookups.
        let mut key_list: Vec<(JoinKey, Vec<Value>)> = Vec::new();
        let mut slots = Slots::default();
        slots.ints.reserve(sources.len());
        for (_, vals) in sources {
            if let Some(k) = source_join_key(vals, &hop.source_fields, &hop.target_types) {
                if slots.insert_new(&k, key_list.len()) {
                    let v = hop
                        .source_fields
                        .iter()
                        .zip(&hop.target_fields)
                        .map(|(s, t)| literal_for(&target, *t, &vals[*s as usize]))
                        .collect();
                    key_list.push((k, v));
                }
            }
        }
        let mut out: Vec<TopK> = (0..key_list.len())
            .map(|_| TopK::new(keys_order, cap, true))
            .collect();
        if key_list.is_empty() {
            return Ok((HopOut::default(), planned));
        }
        // A read-mostly target read often enough through the store gets its image now, built
        // by one reader (the others wait for it, for a bounded time).
        let mut image = self.image(&target);
        if image.is_none() && self.may_build_image(&target) {
            let core = self.txn.core().clone();
            let cache = &core.query.tables;
            let rows = core.query.stats.row_count(self.txn, &target)?;
            if cache.wants_image(target.id, rows) {
                match cache.begin_build(target.id, self.schema.version(), self.txn.snapshot_ts) {
                    Some(t) => {
                        self.scan_store(&target, i64::MIN, step, Some(t), |_, _| Ok(true))?;
                        image = self.image(&target);
                    }
                    None => {
                        if cache.wait_for_build(target.id, crate::exec::table_cache::BUILD_WAIT) {
                            image = self.image(&target);
                        }
                    }
                }
            }
        }
        // Re-check the planned strategy with the actual number of keys; `per_key` is the
        // expected number of target rows per key.
        let (strategy, per_key) = if hop.target_rowid || hop.target_index.is_some() {
            let core = self.txn.core().clone();
            let rows = core.query.stats.row_count(self.txn, &target)? as f64;
            let per_key = if hop.target_unique {
                1.0
            } else {
                let ix = hop
                    .target_index
                    .and_then(|id| target.indexes.iter().find(|i| i.id == id));
                match ix {
                    Some(ix) => {
                        let d = core.query.stats.distinct(
                            self.txn,
                            &target,
                            ix,
                            hop.target_fields.len(),
                        )?;
                        (rows / d.max(1) as f64).max(1.0)
                    }
                    None => rows,
                }
            };
            let s = choose_strategy(true, key_list.len() as f64, per_key, rows, image.is_some()).0;
            (s, per_key)
        } else {
            (JoinStrategy::Hash, 1.0)
        };
        // Room for the expected rows per key up front instead of growing each list row by row.
        let expect = (per_key.ceil() as usize)
            .min(cap.unwrap_or(usize::MAX))
            .min(64);
        for t in &mut out {
            t.rows.reserve_exact(expect);
        }
        if strategy == JoinStrategy::IndexNestedLoop
            && !hop.target_rowid
            && keep.is_none()
            && keys_order.is_empty()
            && cap.is_none()
        {
            if let Some(img) = image.as_ref().filter(|i| i.has_no_overlay()) {
                // Every row of every key, in identity order: copy each key's run of image
                // rows at once, checking budgets per key.
                self.txn.record_scan(target.id, i64::MIN);
                let ix = img.index(&hop.target_fields);
                let mut total: u64 = 0;
                for (slot, (k, _)) in key_list.iter().enumerate() {
                    let run = img.base_run(&ix, k);
                    self.tick_n(step, run.len() as u64)?;
                    let t = &mut out[slot].rows;
                    t.reserve_exact(run.len());
                    t.extend(
                        run.filter(|(_, deleted, _)| !deleted)
                            .map(|(id, _, vals)| (*id, vals.clone())),
                    );
                    total += t.len() as u64;
                    self.check_gathered(total, t.len(), per_key_limit_check)?;
                }
                let rows = out.into_iter().map(TopK::into_rows).collect();
                return Ok((HopOut { slots, rows }, strategy));
            }
        }
        let mut total: u64 = 0;
        let mut accept = |ex: &mut Self, slot: usize, r: RowRef, presorted: bool| -> Result<()> {
            if let Some(keep) = keep.as_mut() {
                if !keep(&r)? {
                    return Ok(());
                }
            }
            let t = &mut out[slot];
            // Rows arrive in identity order per key: only the identity order is presorted.
            t.push(r, presorted && keys_order.is_empty());
            total += 1;
            ex.check_gathered(total, t.len(), per_key_limit_check)
        };
        match strategy {
            JoinStrategy::IndexNestedLoop if hop.target_rowid => {
                let f = hop.target_fields[0];
                let mut by_id: Vec<(i64, usize)> = key_list
                    .iter()
                    .enumerate()
                    .filter_map(|(i, (_, vals))| {
                        literal_for(&target, f, &vals[0]).as_i64().map(|id| (id, i))
                    })
                    .collect();
                by_id.sort_unstable();
                let mut ids: Vec<i64> = by_id.iter().map(|(id, _)| *id).collect();
                ids.dedup();
                let rows = self.read_batch(&target, &ids, step)?;
                let mut ri = 0;
                for (id, ki) in by_id {
                    while ri < rows.len() && rows[ri].0 < id {
                        ri += 1;
                    }
                    if ri < rows.len() && rows[ri].0 == id {
                        accept(self, ki, rows[ri].clone(), true)?;
                    }
                }
            }
            JoinStrategy::IndexNestedLoop if image.is_some() => {
                // Probe the image's equality index instead of the store's index.
                let img = image.take().expect("checked");
                self.txn.record_scan(target.id, i64::MIN);
                let ix = img.index(&hop.target_fields);
                for (slot, (k, _)) in key_list.iter().enumerate() {
                    img.for_each_match(&ix, &hop.target_fields, k, |id, deleted, vals| {
                        self.tick(step)?;
                        if !deleted {
                            accept(self, slot, (id, vals.clone()), true)?;
                        }
                        Ok(())
                    })?;
                }
            }
            JoinStrategy::IndexNestedLoop => {
                let ix = target
                    .indexes
                    .iter()
                    .find(|i| Some(i.id) == hop.target_index)
                    .ok_or_else(|| Error::internal("planned index vanished"))?
                    .clone();
                let prefixes: Vec<Vec<u8>> = key_list
                    .iter()
                    .map(|(_, vals)| keys::index_values_prefix(ix.id, vals))
                    .collect();
                let found = self.index_lookup_batch(
                    &target,
                    &ix,
                    &prefixes,
                    hop.target_fields.len(),
                    step,
                )?;
                for (slot, rows) in found.into_iter().enumerate() {
                    for r in rows {
                        accept(self, slot, r, true)?;
                    }
                }
            }
            JoinStrategy::Hash => {
                let tf = hop.target_fields.clone();
                self.scan(&target, i64::MIN, step, |ex, r| {
                    if let Some(slot) = slots.probe(&r.1, &tf) {
                        accept(ex, slot, r, true)?;
                    }
                    Ok(true)
                })?;
            }
        }
        let rows = out.into_iter().map(TopK::into_rows).collect();
        Ok((HopOut { slots, rows }, strategy))
    }

    fn run_include(
        &mut self,
        node: &NodePlan,
        inc: &Include,
        parents: &[RowRef],
        parent_entity: &str,
        next_step: &mut usize,
    ) -> Result<()> {
        let step = *next_step;
        *next_step += 1;
        let t0 = Instant::now();
        let rel = node
            .rel
            .clone()
            .ok_or_else(|| Error::internal("include without relation"))?;
        let pred = self.compile_filter(node.entity_pos, inc.filter.as_ref(), step)?;
        self.stats.lookups += 1;
        self.steps[step].lookups += 1;
        let keys = node.order.clone();
        let after = inc.after.clone();
        let limit = inc.limit.map(|l| l as usize);
        let filtered = pred.is_some() || after.is_some();
        let mut keep_fn = |r: &RowRef| -> Result<bool> {
            if let Some(p) = &pred {
                if !p.passes(&r.1)? {
                    return Ok(false);
                }
            }
            if let Some(c) = &after {
                let sv = sort_values(&keys, &r.1);
                if !after_cursor(&keys, &sv, r.0, c) {
                    return Ok(false);
                }
            }
            Ok(true)
        };
        let cap = limit.map(|l| l + 1);
        let what = node.path.clone();
        let check = if limit.is_none() && rel.hops.len() == 1 {
            Some((self.budget.max_fanout, what.as_str()))
        } else {
            None
        };
        let mut strategies = Vec::new();
        // Children per parent, in order, with the "more" flag.
        let mut per_parent: Vec<(i64, Vec<RowRef>, bool)> = Vec::with_capacity(parents.len());
        if rel.hops.len() == 1 {
            let hop = &rel.hops[0];
            let (map, s) = self.run_hop(
                hop,
                node.strategies[0],
                parents,
                step,
                filtered.then_some(&mut keep_fn as &mut KeepFn<'_>),
                &keys,
                cap,
                check,
            )?;
            strategies.push(s);
            // One-to-many: each parent has its own key, so its rows can be moved out.
            let unique_keys = !hop.target_unique;
            let mut map = map;
            for (pid, vals) in parents {
                let mut kids = source_join_key(vals, &hop.source_fields, &hop.target_types)
                    .and_then(|k| {
                        if unique_keys {
                            map.take(&k)
                        } else {
                            map.get(&k).cloned()
                        }
                    })
                    .unwrap_or_default();
                let more = limit.is_some_and(|l| kids.len() > l);
                if let Some(l) = limit {
                    kids.truncate(l);
                }
                per_parent.push((*pid, kids, more));
            }
        } else {
            // Many-to-many: parents -> join rows -> targets.
            let (h1, h2) = (&rel.hops[0], &rel.hops[1]);
            let (joins, s1) =
                self.run_hop(h1, node.strategies[0], parents, step, None, &[], None, None)?;
            let join_rows: Vec<RowRef> = {
                let mut seen = HashSet::default();
                let mut v = Vec::new();
                for r in joins.all() {
                    if seen.insert(r.0) {
                        v.push(r.clone());
                    }
                }
                v.sort_by_key(|r| r.0);
                v
            };
            let (targets, s2) = self.run_hop(
                h2,
                node.strategies[1],
                &join_rows,
                step,
                filtered.then_some(&mut keep_fn as &mut KeepFn<'_>),
                &keys,
                None,
                None,
            )?;
            strategies.push(s1);
            strategies.push(s2);
            for (pid, vals) in parents {
                let mut t = TopK::new(&keys, cap, false);
                let mut seen = HashSet::default();
                if let Some(js) = source_join_key(vals, &h1.source_fields, &h1.target_types)
                    .and_then(|k| joins.get(&k))
                {
                    for j in js {
                        if let Some(ts) = source_join_key(&j.1, &h2.source_fields, &h2.target_types)
                            .and_then(|k| targets.get(&k))
                        {
                            for r in ts {
                                if seen.insert(r.0) {
                                    t.push(r.clone(), false);
                                }
                            }
                        }
                    }
                }
                let mut kids: Vec<RowRef> = t.into_rows();
                let more = limit.is_some_and(|l| kids.len() > l);
                if let Some(l) = limit {
                    kids.truncate(l);
                }
                per_parent.push((*pid, kids, more));
            }
        }
        // Budgets on what is returned, edges and the next level's parents.
        let mut edge = EdgeBlock {
            path: node.path.clone(),
            relation: rel.name.clone(),
            parent_entity: parent_entity.to_string(),
            child_entity: node.entity.clone(),
            parents: Vec::new(),
            children: Vec::new(),
            more_parents: Vec::new(),
            more_cursors: Vec::new(),
        };
        let mut next_parents: Vec<RowRef> = Vec::new();
        let mut next_seen: HashSet<i64> = HashSet::default();
        // One-to-many: every child row hangs off exactly one (distinct) parent key, so the
        // children of this level are distinct without checking.
        let distinct_children = rel.hops.len() == 1 && !rel.hops[0].target_unique;
        let mut returned = 0u64;
        for (pid, kids, more) in per_parent {
            let fan = kids.len() as u64;
            if fan > self.budget.max_fanout {
                return Err(budget_error(
                    "max_fanout",
                    self.budget.max_fanout,
                    format!("in relation {} (parent {pid} has {fan})", node.path),
                ));
            }
            self.stats.max_fanout = self.stats.max_fanout.max(fan);
            if more {
                if let Some(last) = kids.last() {
                    edge.more_parents.push(pid);
                    edge.more_cursors.push(Cursor {
                        values: sort_values(&keys, &last.1),
                        id: last.0,
                    });
                }
            }
            for r in kids {
                edge.parents.push(pid);
                edge.children.push(r.0);
                returned += 1;
                if distinct_children || next_seen.insert(r.0) {
                    next_parents.push(r);
                }
            }
        }
        self.stats.edges += edge.parents.len() as u64;
        if self.stats.edges > self.budget.max_edges {
            return Err(budget_error(
                "max_edges",
                self.budget.max_edges,
                format!("while fetching {}", node.path),
            ));
        }
        self.add_rows(returned, &node.path)?;
        // No other node fills this block and these rows are distinct: no identity map, and
        // the rows move into the block once the children no longer need them.
        let sole = distinct_children && self.single_node_entities.contains(&node.entity_pos);
        if !sole {
            self.reserve_block(node.entity_pos, next_parents.len());
            for r in &next_parents {
                self.add_to_block(node.entity_pos, r);
            }
        }
        self.edges.push(edge);
        let s = &mut self.steps[step];
        s.rows += returned;
        s.strategies = strategies;
        s.time_us += t0.elapsed().as_micros() as u64;
        self.run_counts(node, &next_parents, step)?;
        for (child, cinc) in node.children.iter().zip(&inc.includes) {
            self.run_include(child, cinc, &next_parents, &node.entity, next_step)?;
        }
        if sole {
            let (rows, _) = self.blocks.entry(node.entity_pos).or_default();
            if rows.is_empty() {
                *rows = next_parents;
            } else {
                rows.extend(next_parents);
            }
        }
        Ok(())
    }

    /// Related-row counts per row of `rows` for each counted relation of `node`.
    fn run_counts(&mut self, node: &NodePlan, rows: &[RowRef], step: usize) -> Result<()> {
        for rel in &node.counts {
            self.stats.lookups += 1;
            self.steps[step].lookups += 1;
            let h1 = &rel.hops[0];
            let strategy = self.planned_strategy(h1, rows.len())?;
            let (map, _) = self.run_hop(h1, strategy, rows, step, None, &[], None, None)?;
            let mut block = CountBlock {
                path: node.path.clone(),
                relation: rel.name.clone(),
                parents: Vec::with_capacity(rows.len()),
                counts: Vec::with_capacity(rows.len()),
            };
            for (id, vals) in rows {
                let related = source_join_key(vals, &h1.source_fields, &h1.target_types)
                    .and_then(|k| map.get(&k));
                let n = match (related, rel.hops.get(1)) {
                    (None, _) => 0,
                    (Some(v), None) => v.len() as u64,
                    // Many-to-many: distinct far keys among the join rows.
                    (Some(v), Some(h2)) => v
                        .iter()
                        .filter_map(|j| source_join_key(&j.1, &h2.source_fields, &h2.target_types))
                        .collect::<HashSet<_>>()
                        .len() as u64,
                };
                block.parents.push(*id);
                block.counts.push(n);
            }
            self.counts.push(block);
        }
        Ok(())
    }

    fn planned_strategy(&mut self, hop: &Hop, keys: usize) -> Result<JoinStrategy> {
        if !(hop.target_rowid || hop.target_index.is_some()) {
            return Ok(JoinStrategy::Hash);
        }
        let schema = self.schema.clone();
        let target = schema.entity_at(hop.target_pos);
        let rows = self.txn.core().query.stats.row_count(self.txn, target)? as f64;
        let imaged = self.image(target).is_some();
        Ok(choose_strategy(true, keys as f64, 1.0, rows, imaged).0)
    }

    fn assemble(
        &mut self,
        plan: &FetchPlan,
        roots: Vec<i64>,
        next_cursor: Option<Cursor>,
    ) -> GraphResult {
        // Fields per entity: the union of every node's projection, in field order.
        let mut fields: HashMap<usize, BTreeSet<u32>> = HashMap::default();
        let mut order: Vec<usize> = Vec::new();
        fn walk(n: &NodePlan, fields: &mut HashMap<usize, BTreeSet<u32>>, order: &mut Vec<usize>) {
            if !order.contains(&n.entity_pos) {
                order.push(n.entity_pos);
            }
            fields
                .entry(n.entity_pos)
                .or_default()
                .extend(n.projection.iter().copied());
            for c in &n.children {
                walk(c, fields, order);
            }
        }
        walk(&plan.root, &mut fields, &mut order);
        let mut entities = Vec::new();
        for pos in order {
            let e = self.schema.entity_at(pos);
            let fs: Vec<u32> = fields
                .remove(&pos)
                .unwrap_or_default()
                .into_iter()
                .collect();
            let (rows, _) = self.blocks.remove(&pos).unwrap_or_default();
            // Column by column: each column is one exact-size collect.
            let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
            let columns: Vec<Vec<Value>> = fs
                .iter()
                .map(|f| {
                    let f = *f as usize;
                    rows.iter()
                        .map(|(_, vals)| vals.get(f).cloned().unwrap_or(Value::Null))
                        .collect()
                })
                .collect();
            entities.push(EntityBlock {
                entity: e.name.clone(),
                fields: fs
                    .iter()
                    .map(|f| e.fields[*f as usize].name.clone())
                    .collect(),
                ids,
                columns,
            });
        }
        self.stats.time_us = self.start.elapsed().as_micros() as u64;
        GraphResult {
            roots,
            entities,
            edges: std::mem::take(&mut self.edges),
            counts: std::mem::take(&mut self.counts),
            next_cursor,
            stats: self.stats.clone(),
        }
    }
}

/// The identity range `[lo, hi]` a comparison of the row id with `v` allows (a superset for
/// reals; unbounded when `v` is not a number).
fn id_bounds(op: CmpOp, v: &Value) -> (i64, i64) {
    let (lo_incl, hi_incl) = match v {
        Value::Integer(i) => (*i as f64, *i as f64),
        Value::Real(r) if r.is_finite() => (r.ceil(), r.floor()),
        _ => return (i64::MIN, i64::MAX),
    };
    let clamp = |f: f64| f.clamp(i64::MIN as f64, i64::MAX as f64) as i64;
    match op {
        CmpOp::Ge => (clamp(lo_incl), i64::MAX),
        CmpOp::Gt => (clamp(hi_incl).saturating_add(1), i64::MAX),
        CmpOp::Le => (i64::MIN, clamp(hi_incl)),
        CmpOp::Lt => (i64::MIN, clamp(lo_incl).saturating_sub(1)),
        _ => (i64::MIN, i64::MAX),
    }
}

/// Values named by an equality (one) or IN (many) conjunct.
fn in_values(f: &Filter) -> Vec<Value> {
    match f {
        Filter::Cmp { value, .. } => vec![value.clone()],
        Filter::In { values, .. } => values.clone(),
        _ => Vec::new(),
    }
}
