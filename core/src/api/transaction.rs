use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::database::Database;
use crate::catalog::{
    EntityDef, EntitySpec, FieldDef, ForeignKeySpec, IndexDef, IndexSpec, Schema, ViewDef,
};
use crate::changes::ChangeToken;
use crate::error::{Error, Result};
use crate::exec::ddl;
use crate::exec::mutate::{self, DeleteMode, DeleteResult, WriteLimits, WriteResult};
use crate::ir::Expr;
use crate::storage::row_codec::StoredRow;
use crate::txn::transaction::Mark;
use crate::txn::Txn;
use crate::value::Value;

/// A row as read: identity, version token, soft-delete mark and one value per field.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub row_id: i64,
    pub version: u64,
    pub soft_deleted: bool,
    pub values: Vec<Value>,
}

impl Row {
    fn from_stored(e: &EntityDef, row_id: i64, r: StoredRow) -> Row {
        let soft_deleted = r.is_soft_deleted();
        let values = if r.values.len() == e.fields.len() {
            r.values
        } else {
            (0..e.fields.len() as u32)
                .map(|f| e.stored_value(&r.values, f))
                .collect()
        };
        Row {
            row_id,
            version: r.version,
            soft_deleted,
            values,
        }
    }

    /// The row as the engine buffers it (values in the entity's current layout).
    fn into_stored(self) -> StoredRow {
        StoredRow {
            flags: if self.soft_deleted {
                crate::storage::row_codec::FLAG_SOFT_DELETED
            } else {
                0
            },
            version: self.version,
            values: self.values,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ScanOptions {
    /// Include rows marked deleted on soft-delete entities.
    pub include_deleted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitInfo {
    /// The change token of the commit (the snapshot timestamp for read-only transactions).
    pub token: ChangeToken,
}

/// A transaction: snapshot reads, buffered writes with every constraint enforced, transactional
/// DDL, savepoints, and a serializable commit. Dropping it rolls it back.
pub struct Transaction {
    txn: Txn,
    limits: WriteLimits,
    _db: Database,
    /// Its connection's flag, set when the commit fails with a serialization conflict.
    conflicted: Arc<AtomicBool>,
}

impl Transaction {
    /// `conflicted`: its connection's flag, set if the commit fails with a serialization
    /// conflict (see `Connection::begin`).
    pub(crate) fn new(txn: Txn, db: Database, conflicted: Arc<AtomicBool>) -> Transaction {
        let limits = db.options().limits;
        Transaction {
            txn,
            limits,
            _db: db,
            conflicted,
        }
    }

    /// The engine transaction, for the SQL front end's catalog text updates.
    pub(crate) fn engine_txn(&mut self) -> &mut Txn {
        &mut self.txn
    }

    fn live(&self) -> Result<()> {
        if self.txn.is_finished() {
            return Err(Error::txn_state("the transaction has already finished"));
        }
        self.txn.core().check_open()
    }

    pub(crate) fn txn_mut(&mut self) -> Result<&mut Txn> {
        self.live()?;
        Ok(&mut self.txn)
    }

    pub(crate) fn limits(&self) -> WriteLimits {
        self.limits
    }

    /// The schema this transaction sees, including its own changes.
    pub fn schema(&self) -> &Arc<Schema> {
        self.txn.schema()
    }

    /// The snapshot this transaction reads at.
    pub fn snapshot(&self) -> ChangeToken {
        self.txn.snapshot_ts
    }

    // ---- reads ----

    /// A row by row id (the identity of `INTEGER PRIMARY KEY` entities). Soft-deleted rows are
    /// not returned.
    pub fn get(&mut self, entity: &str, row_id: i64) -> Result<Option<Row>> {
        self.get_with(entity, row_id, ScanOptions::default())
    }

    pub fn get_with(
        &mut self,
        entity: &str,
        row_id: i64,
        opts: ScanOptions,
    ) -> Result<Option<Row>> {
        self.live()?;
        let schema = self.txn.schema().clone();
        let e = schema.entity(entity)?;
        Ok(self
            .txn
            .read_row(e.id, row_id)?
            .filter(|r| !r.is_tombstone() && (opts.include_deleted || !r.is_soft_deleted()))
            .map(|r| Row::from_stored(e, row_id, r)))
    }

    /// A row by its primary key values (row id for `INTEGER PRIMARY KEY`, else the key index).
    pub fn get_by_key(&mut self, entity: &str, key: &[Value]) -> Result<Option<Row>> {
        self.live()?;
        let schema = self.txn.schema().clone();
        let e = schema.entity(entity)?;
        if e.rowid_alias.is_some() || e.primary_key.is_empty() {
            if key.len() != 1 {
                return Err(Error::invalid(format!(
                    "the identity of {} is one value, {} were given",
                    e.name,
                    key.len()
                )));
            }
            let id = match e.fields[e.rowid_alias.unwrap_or(0) as usize]
                .ty
                .apply_affinity(key[0].clone())
            {
                Value::Integer(i) => i,
                _ => return Ok(None),
            };
            return self.get(entity, id);
        }
        let ix = e
            .primary_key_index()
            .ok_or_else(|| Error::internal("primary key index missing"))?
            .clone();
        if key.len() != ix.fields.len() {
            return Err(Error::invalid(format!(
                "the primary key of {} has {} fields, {} values were given",
                e.name,
                ix.fields.len(),
                key.len()
            )));
        }
        let key: Vec<Value> = key
            .iter()
            .zip(&ix.fields)
            .map(|(v, f)| e.fields[*f as usize].ty.apply_affinity(v.clone()))
            .collect();
        let hit = self
            .txn
            .index_lookup(e, &ix, &key)?
            .into_iter()
            .find(|(_, r)| !r.is_soft_deleted());
        Ok(hit.map(|(id, r)| Row::from_stored(e, id, r)))
    }

    /// Rows whose leading fields of index `index` equal `values`.
    pub fn find_by_index(
        &mut self,
        entity: &str,
        index: &str,
        values: &[Value],
    ) -> Result<Vec<Row>> {
        self.live()?;
        let schema = self.txn.schema().clone();
        let e = schema.entity(entity)?;
        let ix = index_named(e, index)?;
        check_key_len(&ix, values.len())?;
        Ok(self
            .txn
            .index_lookup(e, &ix, values)?
            .into_iter()
            .filter(|(_, r)| !r.is_soft_deleted())
            .map(|(id, r)| Row::from_stored(e, id, r))
            .collect())
    }

    /// Rows whose leading fields of index `index` equal any of `keys` (each a tuple of 1 to
    /// the index's field count values), each row once, in index key order (soft-deleted
    /// excluded). Equivalent to [`Self::find_by_index`] per key, but the keys' index entries
    /// are read in sorted order with one range scan per run of nearby integer keys, and all
    /// the rows in one batch, instead of a seek per key and per row (IN lists of foreign keys,
    /// as ORMs send them for eager loads).
    pub fn find_by_index_keys(
        &mut self,
        entity: &str,
        index: &str,
        keys: &[Vec<Value>],
    ) -> Result<Vec<Row>> {
        use crate::storage::keys::index_values_prefix;
        self.live()?;
        let schema = self.txn.schema().clone();
        let e = schema.entity(entity)?;
        let ix = index_named(e, index)?;
        for k in keys {
            check_key_len(&ix, k.len())?;
        }
        let mut prefixes: Vec<(Vec<u8>, usize)> = keys
            .iter()
            .map(|k| (index_values_prefix(ix.id, k), k.len()))
            .collect();
        prefixes.sort();
        prefixes.dedup();
        let (matches, mut rows) = self.rows_by_prefixes(e, &ix, &prefixes)?;
        let mut out = Vec::new();
        for id in matches.into_iter().flatten() {
            if let Some(r) = rows.remove(&id) {
                out.push(Row::from_stored(e, id, r));
            }
        }
        Ok(out)
    }

    /// For each distinct, sorted `(encoded key prefix, key length)` of `ix`: the ids of the
    /// live rows whose current values give that prefix, in row id order, and those rows. The
    /// prefixes' index entries are read in one pass (`index_candidates_grouped`: a range scan
    /// per run of nearby integer keys) and the rows in one batch.
    fn rows_by_prefixes(
        &mut self,
        e: &EntityDef,
        ix: &IndexDef,
        prefixes: &[(Vec<u8>, usize)],
    ) -> Result<PrefixMatches> {
        use crate::storage::keys::index_values_prefix;
        let encoded: Vec<Vec<u8>> = prefixes.iter().map(|(p, _)| p.clone()).collect();
        let cands = self.txn.index_candidates_grouped(&encoded)?;
        let mut ids: Vec<i64> = cands.iter().flatten().copied().collect();
        ids.sort_unstable();
        ids.dedup();
        let mut rows: std::collections::HashMap<i64, StoredRow> =
            std::collections::HashMap::with_capacity(ids.len());
        self.txn.read_rows_batch(e.id, &ids, |id, r| {
            if !r.is_soft_deleted() {
                rows.insert(id, r);
            }
            Ok(())
        })?;
        let mut matches = Vec::with_capacity(prefixes.len());
        for ((prefix, n), cand) in prefixes.iter().zip(cands) {
            let mut found = Vec::new();
            for id in cand {
                let Some(r) = rows.get(&id) else {
                    continue;
                };
                // Entries are hints: the row's current values decide.
                let Some(mut vals) = ix.entry_values(e, &r.values)? else {
                    continue;
                };
                vals.truncate(*n);
                if index_values_prefix(ix.id, &vals) == *prefix {
                    found.push(id);
                }
            }
            matches.push(found);
        }
        Ok((matches, rows))
    }

    /// The rows with the given row ids (sorted, distinct), as [`Self::get`] returns them one
    /// at a time (missing, deleted and soft-deleted ids left out), in id order, read with one
    /// batch ([`crate::txn`]'s `read_rows_batch`: the table image, else one range scan per run
    /// of nearby ids). The SQL join reads the inner table's rows for a chunk of outer rows so.
    pub fn get_many(&mut self, entity: &str, ids: &[i64]) -> Result<Vec<Row>> {
        self.live()?;
        if ids.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::invalid("get_many needs sorted, distinct row ids"));
        }
        let schema = self.txn.schema().clone();
        let e = schema.entity(entity)?;
        let mut out = Vec::with_capacity(ids.len());
        self.txn.read_rows_batch(e.id, ids, |id, r| {
            if !r.is_soft_deleted() {
                out.push(Row::from_stored(e, id, r));
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// [`Self::find_by_index`] for each of `keys` (tuples of 1 to the index's field count
    /// values): one list of rows per key, in row id order, a row in every list whose key it
    /// matches. Read as [`Self::find_by_index_keys`] reads them (sorted keys, one range scan
    /// per run of nearby integer keys, all rows in one batch).
    pub fn find_by_index_keys_grouped(
        &mut self,
        entity: &str,
        index: &str,
        keys: &[Vec<Value>],
    ) -> Result<Vec<Vec<Row>>> {
        use crate::storage::keys::index_values_prefix;
        self.live()?;
        let schema = self.txn.schema().clone();
        let e = schema.entity(entity)?;
        let ix = index_named(e, index)?;
        for k in keys {
            check_key_len(&ix, k.len())?;
        }
        let mut order: Vec<(Vec<u8>, usize)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (index_values_prefix(ix.id, k), i))
            .collect();
        order.sort();
        // Distinct prefixes with their tuple length, and which of them each key is.
        let mut prefixes: Vec<(Vec<u8>, usize)> = Vec::with_capacity(order.len());
        let mut group = vec![0usize; keys.len()];
        for (p, k) in order {
            if prefixes.last().map(|(q, _)| q) != Some(&p) {
                prefixes.push((p, keys[k].len()));
            }
            group[k] = prefixes.len() - 1;
        }
        let (matches, rows) = self.rows_by_prefixes(e, &ix, &prefixes)?;
        let per_prefix: Vec<Vec<Row>> = matches
            .into_iter()
            .map(|ids| {
                ids.into_iter()
                    .filter_map(|id| rows.get(&id).map(|r| Row::from_stored(e, id, r.clone())))
                    .collect()
            })
            .collect();
        Ok(group.iter().map(|&g| per_prefix[g].clone()).collect())
    }

    /// Rows whose index key starts with `eq` and whose next indexed field lies within `lo` /
    /// `hi` (value, inclusive), in index order (soft-deleted excluded). Values compare in
    /// SQLite's cross-type order (NULL < numbers < text < blob), as index keys do.
    pub fn find_by_index_range(
        &mut self,
        entity: &str,
        index: &str,
        eq: &[Value],
        lo: Option<(&Value, bool)>,
        hi: Option<(&Value, bool)>,
    ) -> Result<Vec<Row>> {
        self.find_by_index_range_ordered(entity, index, eq, lo, hi, false, usize::MAX)
    }

    /// [`Self::find_by_index_range`] in ascending or (`desc`) descending index order (ties in
    /// row id order, reversed when descending), stopping after `max` rows: an ORDER BY on the
    /// index's next field with a LIMIT reads only the rows it returns. With no bounds, `eq`
    /// may cover every field of the index (the rows of that key, in row id order).
    #[allow(clippy::too_many_arguments)]
    pub fn find_by_index_range_ordered(
        &mut self,
        entity: &str,
        index: &str,
        eq: &[Value],
        lo: Option<(&Value, bool)>,
        hi: Option<(&Value, bool)>,
        desc: bool,
        max: usize,
    ) -> Result<Vec<Row>> {
        let mut out = Vec::new();
        self.visit_index_range(entity, index, eq, lo, hi, desc, max, |id, version, vals| {
            out.push(Row {
                row_id: id,
                version,
                soft_deleted: false,
                values: vals.to_vec(),
            });
            Ok(())
        })?;
        Ok(out)
    }

    /// [`Self::find_by_index_range_ordered`] handing each row to `visit` as (row id, version
    /// token, values in the entity's field order) instead of collecting them: the values are
    /// borrowed (from a decoded table image when the table has one), so a caller that needs
    /// a few columns copies only those. Returns how many rows were visited (at most `max`).
    #[allow(clippy::too_many_arguments)]
    pub fn visit_index_range(
        &mut self,
        entity: &str,
        index: &str,
        eq: &[Value],
        lo: Option<(&Value, bool)>,
        hi: Option<(&Value, bool)>,
        desc: bool,
        max: usize,
        mut visit: impl FnMut(i64, u64, &[Value]) -> Result<()>,
    ) -> Result<usize> {
        use crate::storage::keys::{index_values_prefix, prefix_end};
        self.live()?;
        let schema = self.txn.schema().clone();
        let e = schema.entity(entity)?;
        let ix = index_named(e, index)?;
        let bounded = lo.is_some() || hi.is_some();
        if eq.len() > ix.fields.len() || (bounded && eq.len() == ix.fields.len()) {
            return Err(Error::invalid(format!(
                "index {index} has {} fields; a range needs fewer than that many equalities",
                ix.fields.len()
            )));
        }
        let prefix = index_values_prefix(ix.id, eq);
        let bound = |v: &Value| {
            let mut k = prefix.clone();
            crate::value::encode_key_value(v, &mut k);
            k
        };
        let start = match lo {
            None => prefix.clone(),
            Some((v, true)) => bound(v),
            Some((v, false)) => prefix_end(&bound(v)),
        };
        let end = match hi {
            None => prefix_end(&prefix),
            Some((v, true)) => prefix_end(&bound(v)),
            Some((v, false)) => bound(v),
        };
        let mut n = 0usize;
        if start < end && max > 0 {
            let nfields = e.fields.len();
            self.txn
                .index_range_ref(e, &ix, &start, &end, desc, max.min(64), |id, r| {
                    if r.soft_deleted {
                        return Ok(true);
                    }
                    if r.values.len() == nfields {
                        visit(id, r.version, r.values)?;
                    } else {
                        // Stored before an ADD COLUMN: the missing fields read as defaults.
                        let full: Vec<Value> = (0..nfields as u32)
                            .map(|f| e.stored_value(r.values, f))
                            .collect();
                        visit(id, r.version, &full)?;
                    }
                    n += 1;
                    Ok(n < max)
                })?;
        }
        Ok(n)
    }

    /// Rows with `lo <= row id <= hi`, in row id order (soft-deleted excluded).
    pub fn scan_id_range(&mut self, entity: &str, lo: i64, hi: i64) -> Result<Vec<Row>> {
        self.live()?;
        let schema = self.txn.schema().clone();
        let e = schema.entity(entity)?;
        let mut out = Vec::new();
        if lo > hi {
            return Ok(out);
        }
        for item in self.txn.scan_from(e.id, lo) {
            let (id, r) = item?;
            if id > hi {
                break;
            }
            if !r.is_soft_deleted() {
                out.push(Row::from_stored(e, id, r));
            }
        }
        Ok(out)
    }

    /// Every row of an entity in row id order (soft-deleted rows excluded).
    pub fn scan(&mut self, entity: &str) -> Result<impl Iterator<Item = Result<Row>> + '_> {
        self.scan_with(entity, ScanOptions::default())
    }

    pub fn scan_with(
        &mut self,
        entity: &str,
        opts: ScanOptions,
    ) -> Result<impl Iterator<Item = Result<Row>> + '_> {
        self.live()?;
        let schema = self.txn.schema().clone();
        let e = schema.entity(entity)?.clone();
        let scan = self.txn.scan(e.id);
        Ok(scan.filter_map(move |item| match item {
            Ok((id, r)) if opts.include_deleted || !r.is_soft_deleted() => {
                Some(Ok(Row::from_stored(&e, id, r)))
            }
            Ok(_) => None,
            Err(err) => Some(Err(err)),
        }))
    }

    /// Number of rows (soft-deleted excluded).
    pub fn count(&mut self, entity: &str) -> Result<u64> {
        let mut n = 0;
        for r in self.scan(entity)? {
            r?;
            n += 1;
        }
        Ok(n)
    }

    // ---- writes ----

    /// Inserts a row by field name; returns its row id and version token.
    pub fn insert(&mut self, entity: &str, values: &[(&str, Value)]) -> Result<WriteResult> {
        self.live()?;
        mutate::insert(&mut self.txn, entity, values, &self.limits)
    }

    /// Inserts a row given positionally (`None` takes the field's default).
    pub fn insert_positional(
        &mut self,
        entity: &str,
        row: Vec<Option<Value>>,
    ) -> Result<WriteResult> {
        self.live()?;
        mutate::insert_positional(&mut self.txn, entity, row, &self.limits)
    }

    /// Updates fields of a row; None when there is no such (non-deleted) row.
    pub fn update(
        &mut self,
        entity: &str,
        row_id: i64,
        changes: &[(&str, Value)],
    ) -> Result<Option<WriteResult>> {
        self.live()?;
        mutate::update(&mut self.txn, entity, row_id, changes, None, &self.limits)
    }

    /// [`Self::update`] of a row this transaction read (`read`: as [`Self::get`] or another
    /// read of this transaction returned it, unchanged; None: read it here). The row is not
    /// read again unless the transaction has written it since: the SQL front end hands over
    /// the target rows its WHERE clause found.
    pub(crate) fn update_known(
        &mut self,
        entity: &str,
        row_id: i64,
        read: Option<Row>,
        changes: &[(&str, Value)],
    ) -> Result<Option<WriteResult>> {
        self.live()?;
        mutate::update_known(
            &mut self.txn,
            entity,
            row_id,
            read.map(Row::into_stored),
            changes,
            None,
            &self.limits,
        )
    }

    /// Updates a row only if its version token is `expected_version` (else 40002).
    pub fn update_versioned(
        &mut self,
        entity: &str,
        row_id: i64,
        changes: &[(&str, Value)],
        expected_version: u64,
    ) -> Result<Option<WriteResult>> {
        self.live()?;
        mutate::update(
            &mut self.txn,
            entity,
            row_id,
            changes,
            Some(expected_version),
            &self.limits,
        )
    }

    /// Deletes a row (marks it on soft-delete entities); None when there is no such row.
    pub fn delete(&mut self, entity: &str, row_id: i64) -> Result<Option<DeleteResult>> {
        self.live()?;
        mutate::delete(
            &mut self.txn,
            entity,
            row_id,
            None,
            DeleteMode::Default,
            &self.limits,
        )
    }

    /// Deletes rows as one statement: foreign key NO ACTION checks run after the last row
    /// (SQLite's end-of-statement check). One result per id, None where no row was deleted.
    pub fn delete_many(
        &mut self,
        entity: &str,
        row_ids: &[i64],
    ) -> Result<Vec<Option<DeleteResult>>> {
        self.live()?;
        mutate::delete_many(&mut self.txn, entity, row_ids, &self.limits)
    }

    /// [`Self::delete_many`] of rows this transaction read: each id with the row as a read of
    /// this transaction returned it, unchanged (None: read it here); see
    /// [`Self::update_known`].
    pub(crate) fn delete_many_known(
        &mut self,
        entity: &str,
        rows: Vec<(i64, Option<Row>)>,
    ) -> Result<Vec<Option<DeleteResult>>> {
        self.live()?;
        let rows = rows
            .into_iter()
            .map(|(id, r)| (id, r.map(Row::into_stored)))
            .collect();
        mutate::delete_many_known(&mut self.txn, entity, rows, &self.limits)
    }

    /// Deletes a row only if its version token is `expected_version` (else 40002).
    pub fn delete_versioned(
        &mut self,
        entity: &str,
        row_id: i64,
        expected_version: u64,
    ) -> Result<Option<DeleteResult>> {
        self.live()?;
        mutate::delete(
            &mut self.txn,
            entity,
            row_id,
            Some(expected_version),
            DeleteMode::Default,
            &self.limits,
        )
    }

    /// Removes a row even from a soft-delete entity.
    pub fn purge(&mut self, entity: &str, row_id: i64) -> Result<Option<DeleteResult>> {
        self.live()?;
        mutate::delete(
            &mut self.txn,
            entity,
            row_id,
            None,
            DeleteMode::Hard,
            &self.limits,
        )
    }

    /// Restores a soft-deleted row.
    pub fn restore(&mut self, entity: &str, row_id: i64) -> Result<Option<WriteResult>> {
        self.live()?;
        mutate::restore(&mut self.txn, entity, row_id)
    }

    // ---- schema ----

    pub fn create_entity(&mut self, spec: &EntitySpec) -> Result<()> {
        self.live()?;
        ddl::create_entity(&mut self.txn, spec, false).map(|_| ())
    }

    pub fn create_entity_if_not_exists(&mut self, spec: &EntitySpec) -> Result<bool> {
        self.live()?;
        ddl::create_entity(&mut self.txn, spec, true)
    }

    pub fn drop_entity(&mut self, entity: &str) -> Result<()> {
        self.live()?;
        ddl::drop_entity(&mut self.txn, entity, false, &self.limits).map(|_| ())
    }

    pub fn drop_entity_if_exists(&mut self, entity: &str) -> Result<bool> {
        self.live()?;
        ddl::drop_entity(&mut self.txn, entity, true, &self.limits)
    }

    /// Creates a view (the caller checked its query); false when it exists and `if_not_exists`.
    pub fn create_view(&mut self, view: ViewDef, if_not_exists: bool) -> Result<bool> {
        self.live()?;
        ddl::create_view(&mut self.txn, view, if_not_exists)
    }

    pub fn drop_view(&mut self, name: &str, if_exists: bool) -> Result<bool> {
        self.live()?;
        ddl::drop_view(&mut self.txn, name, if_exists)
    }

    /// Sets the schema's user version (`PRAGMA user_version`).
    pub fn set_user_version(&mut self, v: i64) -> Result<()> {
        self.live()?;
        ddl::set_user_version(&mut self.txn, v);
        Ok(())
    }

    pub fn rename_entity(&mut self, entity: &str, new_name: &str) -> Result<()> {
        self.live()?;
        ddl::rename_entity(&mut self.txn, entity, new_name)
    }

    pub fn add_field(&mut self, entity: &str, field: FieldDef) -> Result<()> {
        self.live()?;
        mutate::atomically(&mut self.txn, |t| ddl::add_field(t, entity, field))
    }

    pub fn drop_field(&mut self, entity: &str, field: &str) -> Result<()> {
        self.live()?;
        mutate::atomically(&mut self.txn, |t| ddl::drop_field(t, entity, field))
    }

    pub fn rename_field(&mut self, entity: &str, field: &str, new_name: &str) -> Result<()> {
        self.live()?;
        ddl::rename_field(&mut self.txn, entity, field, new_name)
    }

    pub fn create_index(&mut self, entity: &str, spec: &IndexSpec) -> Result<()> {
        self.live()?;
        mutate::atomically(&mut self.txn, |t| ddl::create_index(t, entity, spec, false)).map(|_| ())
    }

    pub fn drop_index(&mut self, name: &str) -> Result<()> {
        self.live()?;
        mutate::atomically(&mut self.txn, |t| ddl::drop_index(t, name, false)).map(|_| ())
    }

    pub fn add_foreign_key(&mut self, entity: &str, spec: &ForeignKeySpec) -> Result<()> {
        self.live()?;
        mutate::atomically(&mut self.txn, |t| ddl::add_foreign_key(t, entity, spec))
    }

    pub fn add_check(&mut self, entity: &str, name: &str, expr: Expr) -> Result<()> {
        self.live()?;
        mutate::atomically(&mut self.txn, |t| ddl::add_check(t, entity, name, expr))
    }

    pub fn set_soft_delete(&mut self, entity: &str, on: bool) -> Result<()> {
        self.live()?;
        ddl::set_soft_delete(&mut self.txn, entity, on)
    }

    // ---- savepoints and the end ----

    /// Starts a (nestable) savepoint.
    pub fn savepoint(&mut self, name: &str) -> Result<()> {
        self.live()?;
        self.txn.savepoint(name);
        Ok(())
    }

    /// Undoes everything since the savepoint (which stays open).
    pub fn rollback_to(&mut self, name: &str) -> Result<()> {
        self.live()?;
        self.txn.rollback_to(name)
    }

    /// Keeps the changes since the savepoint and forgets it (and later ones).
    pub fn release(&mut self, name: &str) -> Result<()> {
        self.live()?;
        self.txn.release(name)
    }

    /// Marks the start of a statement that must be atomic (see `Txn::mark`): cheaper than a
    /// named savepoint, and invisible to `ROLLBACK TO` / `RELEASE` by name.
    pub(crate) fn statement_mark(&mut self) -> Result<Mark> {
        self.live()?;
        Ok(self.txn.mark())
    }

    /// Keeps the statement's changes.
    pub(crate) fn release_mark(&mut self, mark: Mark) -> Result<()> {
        self.live()?;
        self.txn.release_mark(mark);
        Ok(())
    }

    /// Undoes the statement's changes.
    pub(crate) fn rollback_to_mark(&mut self, mark: Mark) -> Result<()> {
        self.live()?;
        self.txn.rollback_to_mark(mark);
        Ok(())
    }

    /// Commits: deferred foreign keys are checked, then the serializable validation; on
    /// 40001 the whole transaction may be retried.
    pub fn commit(mut self) -> Result<CommitInfo> {
        self.live()?;
        if let Err(e) = mutate::check_deferred(&mut self.txn) {
            self.txn.abort();
            return Err(e);
        }
        let token = self.txn.commit().inspect_err(|e| {
            if e.state.is_retryable() {
                self.conflicted.store(true, Ordering::Relaxed);
            }
        })?;
        Ok(CommitInfo { token })
    }

    /// Discards every change.
    pub fn rollback(mut self) {
        if !self.txn.is_finished() {
            self.txn
                .core()
                .metrics
                .rollbacks
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.txn.abort();
    }
}

/// The index named `index` on `e` (42P01 when there is none).
/// Per key prefix, the ids of the rows matching it; and those rows by id.
type PrefixMatches = (Vec<Vec<i64>>, std::collections::HashMap<i64, StoredRow>);

fn index_named(e: &crate::catalog::EntityDef, index: &str) -> Result<crate::catalog::IndexDef> {
    e.index_by_name(index).cloned().ok_or_else(|| {
        Error::new(
            crate::error::SqlState::UndefinedTable,
            format!("no such index on {}: {index}", e.name),
        )
    })
}

/// A lookup key must give 1 to all of the index's fields.
fn check_key_len(ix: &crate::catalog::IndexDef, n: usize) -> Result<()> {
    if n > ix.fields.len() || n == 0 {
        return Err(Error::invalid(format!(
            "index {} has {} fields, {n} values were given",
            ix.name,
            ix.fields.len()
        )));
    }
    Ok(())
}
