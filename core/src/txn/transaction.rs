//! One transaction's private state: its snapshot, the schema it sees (including its own DDL),
//! buffered row writes with an undo log for savepoints, index entry hints, the read set and the
//! deferred constraint checks. Reads merge the buffered writes over the snapshot.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::core::{CommitRequest, DbCore};
use super::read_set::ReadSet;
use crate::catalog::{EntityDef, IndexDef, RelationKind, Schema, SchemaBundle};
use crate::changes::{ChangeKind, ChangeSet, EntityChange, RelationChange};
use crate::error::{Error, Result};
use crate::exec::table_cache::{self, ImageView};
use crate::storage::keys::{self, prefix_end};
use crate::storage::row_codec::{
    decode_row, encode_row, StoredRow, FLAG_SOFT_DELETED, FLAG_TOMBSTONE,
};
use crate::storage::{KvIter, RowHead};
use crate::value::Value;

#[derive(Debug, Clone, Copy)]
pub struct TxnOptions {
    /// Enforce foreign keys (`PRAGMA foreign_keys`); on by default, unlike SQLite.
    pub foreign_keys: bool,
}

impl Default for TxnOptions {
    fn default() -> Self {
        TxnOptions { foreign_keys: true }
    }
}

/// A foreign key check postponed to commit (DEFERRABLE INITIALLY DEFERRED).
#[derive(Debug, Clone)]
pub enum DeferredCheck {
    /// The child row must reference an existing parent at commit.
    Child {
        entity_id: u32,
        row_id: i64,
        fk: String,
    },
    /// No child may reference this parent key at commit unless the key exists again.
    Parent {
        parent_id: u32,
        key: Vec<Value>,
        child_id: u32,
        fk: String,
    },
}

#[derive(Debug, Clone)]
struct PendingRow {
    /// The committed version at the snapshot (tombstones included), if any.
    base: Option<StoredRow>,
    cur: StoredRow,
}

/// One change a savepoint or statement mark may have to undo, with what it replaced. The
/// per-table maps are logged here rather than copied at each mark: a mark is then a few
/// lengths, whatever the transaction holds.
enum Undo {
    /// A buffered row version; `prev` None when the row was not buffered.
    Row {
        key: (u32, i64),
        prev: Option<StoredRow>,
    },
    /// An AUTOINCREMENT high-water mark (`sequences`); None: no entry.
    Sequence { table_id: u32, prev: Option<i64> },
    /// A written `sqlite_sequence` row (`seq_sets`); None: no entry.
    SeqSet {
        table_id: u32,
        prev: Option<Option<i64>>,
    },
    /// A dropped-field position map (`field_maps`); None: no entry.
    FieldMap {
        table_id: u32,
        prev: Option<Vec<Option<u32>>>,
    },
}

/// The state to return to when a savepoint or a statement is undone: how long the logs were
/// and the schema then (schemas are shared, so keeping one costs a reference count).
#[derive(Clone)]
pub struct Mark {
    undo_len: usize,
    deferred_len: usize,
    savepoints_len: usize,
    schema: Arc<Schema>,
    schema_changed: bool,
}

struct Savepoint {
    name: String,
    mark: Mark,
}

pub struct Txn {
    core: Arc<DbCore>,
    pub snapshot_ts: u64,
    schema: Arc<Schema>,
    base_schema_version: u64,
    schema_changed: bool,
    pending: BTreeMap<(u32, i64), PendingRow>,
    hints: BTreeSet<Vec<u8>>,
    undo: Vec<Undo>,
    savepoints: Vec<Savepoint>,
    /// Statement marks taken and not yet released or rolled back to. With none and no
    /// savepoint nothing can be undone any more, and the undo log is dropped.
    open_marks: usize,
    read_set: ReadSet,
    pub deferred: Vec<DeferredCheck>,
    sequences: HashMap<u32, i64>,
    /// `sqlite_sequence` rows this transaction wrote (None: deleted), by table id. Inserts
    /// afterwards raise them like SQLite's own bookkeeping does.
    seq_sets: HashMap<u32, Option<i64>>,
    /// Key of this transaction's outstanding AUTOINCREMENT row ids in the allocator, and the
    /// tables they belong to (released when the transaction finishes).
    alloc_owner: u64,
    alloc_tables: Vec<u32>,
    /// For tables with fields dropped in this transaction: for each current field position, its
    /// position in rows written before the transaction (None: the field is new). Dropping a
    /// field shifts positions, and commit compares those older rows with the rewritten ones.
    field_maps: HashMap<u32, Vec<Option<u32>>>,
    pub opts: TxnOptions,
    finished: bool,
    /// Whether reads join the read set. A read-only transaction that will never commit writes
    /// (a one-shot graph fetch) turns this off: it has nothing to validate.
    track_reads: bool,
    /// The decoded table image each table's row reads use (None: the table had none when
    /// first read). Looked up once per transaction: a view is exact for this snapshot.
    views: HashMap<u32, Option<Arc<ImageView>>>,
}

/// A live row version borrowed from where a read found it (a decoded image, the transaction's
/// own writes, a store read), for readers that use only some of its values.
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'a> {
    pub soft_deleted: bool,
    pub version: u64,
    /// The entity's fields, possibly fewer for rows stored before an ADD COLUMN (see
    /// `EntityDef::stored_value`).
    pub values: &'a [Value],
}

impl<'a> RowRef<'a> {
    pub fn of(row: &'a StoredRow) -> RowRef<'a> {
        RowRef {
            soft_deleted: row.is_soft_deleted(),
            version: row.version,
            values: &row.values,
        }
    }

    pub fn to_stored(self) -> StoredRow {
        StoredRow {
            flags: if self.soft_deleted {
                FLAG_SOFT_DELETED
            } else {
                0
            },
            version: self.version,
            values: self.values.to_vec(),
        }
    }
}

/// The row id of a base row of a view.
fn view_id(view: &ImageView, pos: usize) -> i64 {
    view.entry_row(table_cache::ImageEntry::Base(pos))
        .map_or(i64::MIN, |r| r.0)
}

/// Whether a stored version is a live row (not a tombstone).
pub fn is_live(row: &StoredRow) -> bool {
    !row.is_tombstone()
}

/// A live row of an image view as a stored row (None: absent or deleted at the view's
/// snapshot). The values are the entity's full layout, which reads of stored rows give too.
fn image_row(view: &ImageView, row_id: i64) -> Option<StoredRow> {
    let (soft_deleted, vals, version) = view.get_ref(row_id)?;
    Some(StoredRow {
        flags: if soft_deleted { FLAG_SOFT_DELETED } else { 0 },
        version,
        values: vals.as_ref().clone(),
    })
}

impl Txn {
    pub fn begin(core: Arc<DbCore>, opts: TxnOptions) -> Result<Txn> {
        core.check_open()?;
        core.settle_deferred_commit()?;
        let snapshot_ts = core.oracle.begin_snapshot();
        let schema = match core.schema_at(snapshot_ts) {
            Ok(s) => s,
            Err(e) => {
                core.oracle.end_snapshot(snapshot_ts);
                return Err(e);
            }
        };
        let alloc_owner = core.new_alloc_owner();
        Ok(Txn {
            core,
            snapshot_ts,
            base_schema_version: schema.version(),
            schema,
            schema_changed: false,
            pending: BTreeMap::new(),
            hints: BTreeSet::new(),
            undo: Vec::new(),
            savepoints: Vec::new(),
            open_marks: 0,
            read_set: ReadSet::default(),
            deferred: Vec::new(),
            sequences: HashMap::new(),
            seq_sets: HashMap::new(),
            alloc_owner,
            alloc_tables: Vec::new(),
            field_maps: HashMap::new(),
            opts,
            finished: false,
            track_reads: true,
            views: HashMap::new(),
        })
    }

    pub fn core(&self) -> &Arc<DbCore> {
        &self.core
    }

    /// Stops recording reads for conflict detection. Only for transactions that will not
    /// write: a commit after this would not be serializable.
    pub fn disable_read_tracking(&mut self) {
        self.track_reads = false;
    }

    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// Replaces the schema this transaction sees (its own DDL); committed as a new version.
    pub fn set_schema(&mut self, mut bundle: SchemaBundle) {
        // One new version per committing transaction, however many changes it makes.
        bundle.version = self.base_schema_version + 1;
        self.schema = Arc::new(Schema::new(bundle));
        self.schema_changed = true;
    }

    /// Whether the schema is the committed one of the snapshot (no DDL in this transaction).
    pub fn schema_is_committed(&self) -> bool {
        !self.schema_changed
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    pub fn has_writes(&self) -> bool {
        !self.pending.is_empty() || self.schema_changed || !self.seq_sets.is_empty()
    }

    /// The committed version of a row visible at the snapshot, tombstones included.
    pub fn committed_row(&self, table_id: u32, row_id: i64) -> Result<Option<StoredRow>> {
        // The newest version, if the store can tell without a seek (storage::row_heads): it
        // is the one visible when no snapshot-invisible commit wrote the row since.
        match self.core.kv.row_head(table_id, row_id)? {
            Some(RowHead::Absent) => return Ok(None),
            Some(RowHead::Newest(ts, v)) if ts <= self.snapshot_ts && !self.core.is_aborted(ts) => {
                return Ok(Some(decode_row(&v)?));
            }
            _ => {}
        }
        let start = keys::row_version_key(table_id, row_id, self.snapshot_ts);
        let end = prefix_end(&keys::row_key(table_id, row_id));
        match self.core.kv.first_in(&start, &end)? {
            None => return Ok(None),
            Some((k, v)) => {
                let aborted = self.core.has_aborted()
                    && keys::parse_row_version_key(&k)
                        .is_some_and(|(_, _, ts)| self.core.is_aborted(ts));
                if !aborted {
                    return Ok(Some(decode_row(&v)?));
                }
            }
        }
        // The newest version belongs to a commit that never became durable: skip such versions.
        for item in self.core.kv.scan(&start, &end) {
            let (k, v) = item?;
            match keys::parse_row_version_key(&k) {
                Some((_, _, ts)) if self.core.is_aborted(ts) => continue,
                _ => return Ok(Some(decode_row(&v)?)),
            }
        }
        Ok(None)
    }

    /// The row as this transaction sees it (its own writes first), tombstones included.
    /// Records the read for conflict detection.
    pub fn read_row(&mut self, table_id: u32, row_id: i64) -> Result<Option<StoredRow>> {
        if let Some(p) = self.pending.get(&(table_id, row_id)) {
            return Ok(Some(p.cur.clone()));
        }
        if self.track_reads {
            self.read_set.add_point(keys::row_key(table_id, row_id));
        }
        self.core
            .metrics
            .rows_read
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(view) = self.image_view(table_id) {
            if let Some(row) = image_row(&view, row_id) {
                return Ok(Some(row));
            }
            // Absent or deleted at this snapshot: only the store knows a tombstone's version.
            return self.committed_row(table_id, row_id);
        }
        let row = self.committed_row(table_id, row_id)?;
        self.note_store_reads(table_id, 1)?;
        Ok(row)
    }

    /// The decoded image of a table this transaction's committed-row reads may use: exact at
    /// its snapshot (see `exec::table_cache`), so only its own buffered writes, which every
    /// reader checks first, and its own schema changes, which make the image's layout wrong,
    /// stand between it and the store.
    fn image_view(&mut self, table_id: u32) -> Option<Arc<ImageView>> {
        if self.schema_changed || self.core.query.tables.budget() == 0 {
            return None;
        }
        if let Some(v) = self.views.get(&table_id) {
            return v.clone();
        }
        let v = self
            .core
            .query
            .tables
            .get(table_id, self.schema.version(), self.snapshot_ts)
            .map(Arc::new);
        self.views.insert(table_id, v.clone());
        v
    }

    /// Counts rows of a table read from the store and, once those reads have cost about as
    /// much as a scan of the table (the ski-rental rule of `exec::table_cache`), builds its
    /// image so later reads skip the store. Checked when the count doubles, so the checks
    /// cost little next to the reads that trigger them.
    fn note_store_reads(&mut self, table_id: u32, n: u64) -> Result<()> {
        if n == 0 || self.core.query.tables.budget() == 0 {
            return Ok(());
        }
        let core = self.core.clone();
        let cache = &core.query.tables;
        let (before, after) = cache.note_served(table_id, n);
        if after < 64 || before.max(1).ilog2() == after.ilog2() {
            return Ok(());
        }
        if self.schema_changed || cache.last_write(table_id) > self.snapshot_ts {
            return Ok(());
        }
        // Live rows, or an upper bound from the span of stored row ids (two seeks, no count
        // scan: a table too big for an image is never scanned here).
        let rows = match core.query.stats.known_row_count(table_id) {
            Some(n) => n,
            None => {
                let prefix = keys::table_prefix(table_id);
                let end = prefix_end(&prefix);
                let id = |k: &[u8]| keys::parse_row_version_key(k).map(|(_, r, _)| r);
                let lo = core.kv.first_in(&prefix, &end)?.and_then(|(k, _)| id(&k));
                let hi = core.kv.last_in(&prefix, &end)?.and_then(|(k, _)| id(&k));
                match (lo, hi) {
                    (Some(lo), Some(hi)) => {
                        (hi as i128 - lo as i128 + 1).min(u64::MAX as i128) as u64
                    }
                    _ => 0,
                }
            }
        };
        if rows > after || rows > table_cache::MAX_ROWS {
            return Ok(());
        }
        self.build_image(table_id)
    }

    /// Builds and installs the decoded image of a table at this snapshot from the committed
    /// rows alone (this transaction's buffered writes stay out of it; nothing joins the read
    /// set: the image is a cache, not a read). Gives up when the table outgrows the image
    /// size limit, and leaves the build to the reader already building it if there is one.
    fn build_image(&mut self, table_id: u32) -> Result<()> {
        let core = self.core.clone();
        let cache = &core.query.tables;
        let Some(e) = self.schema.entity_by_id(table_id) else {
            return Ok(());
        };
        let Some(ticket) = cache.begin_build(table_id, self.schema.version(), self.snapshot_ts)
        else {
            return Ok(());
        };
        let max = cache.max_image_bytes();
        let prefix = keys::table_prefix(table_id);
        let end = prefix_end(&prefix);
        let scan = RowScan {
            kv: core.kv.scan(&prefix, &end),
            snapshot: self.snapshot_ts,
            aborted: core.aborted_ranges().to_vec(),
            last_row: None,
            next_kv: None,
            pending: Vec::new(),
            pending_pos: 0,
            done_kv: false,
        };
        let (mut rows, mut versions, mut bytes) = (Vec::new(), Vec::new(), 0usize);
        for item in scan {
            let (id, r) = item?;
            let deleted = r.is_soft_deleted();
            versions.push(r.version);
            let vals = Arc::new(crate::exec::graph_fetch::full_values(e, r));
            bytes += table_cache::row_bytes(&vals);
            if bytes > max {
                cache.reset_served(table_id);
                return Ok(());
            }
            rows.push((id, deleted, vals));
        }
        ticket.finish(rows, versions, bytes);
        self.views.remove(&table_id);
        Ok(())
    }

    /// Buffers a new version of a row (a tombstone to delete it).
    pub fn write_row(&mut self, table_id: u32, row_id: i64, row: StoredRow) -> Result<()> {
        let key = (table_id, row_id);
        match self.pending.get_mut(&key) {
            Some(p) => {
                let prev = std::mem::replace(&mut p.cur, row);
                self.undo.push(Undo::Row {
                    key,
                    prev: Some(prev),
                });
            }
            None => {
                self.read_set.add_point(keys::row_key(table_id, row_id));
                let base = self.committed_row(table_id, row_id)?;
                self.pending.insert(key, PendingRow { base, cur: row });
                self.undo.push(Undo::Row { key, prev: None });
            }
        }
        self.core
            .metrics
            .rows_written
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// [`Self::write_row`] for a row the caller has just read: `read` is what
    /// [`Self::read_row`] returned for it, with no write to the row since. When the row has no
    /// buffered version, that read was its committed version, which the buffer keeps as the
    /// row's base (the change log's before-image), so the store is not asked for it again.
    pub fn write_row_read(
        &mut self,
        table_id: u32,
        row_id: i64,
        row: StoredRow,
        read: Option<StoredRow>,
    ) -> Result<()> {
        let key = (table_id, row_id);
        if self.pending.contains_key(&key) || self.schema_changed {
            // Buffered: the read was that version. After DDL in this transaction a read may
            // be in another field layout than the stored base, so the base is read as stored.
            return self.write_row(table_id, row_id, row);
        }
        if !self.track_reads {
            // Otherwise the read recorded the row already.
            self.read_set.add_point(keys::row_key(table_id, row_id));
        }
        self.pending.insert(
            key,
            PendingRow {
                base: read,
                cur: row,
            },
        );
        self.undo.push(Undo::Row { key, prev: None });
        self.core
            .metrics
            .rows_written
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// The row as [`Self::read_row`] would return it, given `known`: the same row as this
    /// transaction read it earlier (live, by one of the row reads), which is still its
    /// committed version unless the transaction has written the row since. Without `known`,
    /// or when a write since makes it stale, the row is read. A statement that found its
    /// target rows by reading them passes them to its writes this way instead of reading each
    /// one again (the read was already recorded for conflict detection).
    pub fn row_for_write(
        &mut self,
        table_id: u32,
        row_id: i64,
        known: Option<StoredRow>,
    ) -> Result<Option<StoredRow>> {
        match known {
            Some(row)
                if !self.schema_changed && !self.pending.contains_key(&(table_id, row_id)) =>
            {
                Ok(Some(row))
            }
            _ => self.read_row(table_id, row_id),
        }
    }

    /// Buffers the first version of a row whose id was freshly allocated: no committed version
    /// can exist (allocation is above every stored id), so no store lookup is needed. The row
    /// key still joins the read set, so a concurrent explicit insert of the same id conflicts.
    pub fn write_new_row(&mut self, table_id: u32, row_id: i64, row: StoredRow) {
        let key = (table_id, row_id);
        self.read_set.add_point(keys::row_key(table_id, row_id));
        let prev = self.pending.insert(
            key,
            PendingRow {
                base: None,
                cur: row,
            },
        );
        self.undo.push(Undo::Row {
            key,
            prev: prev.map(|p| p.cur),
        });
        self.core
            .metrics
            .rows_written
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Adds an index entry hint (written at commit; readers verify hints against rows).
    pub fn add_index_entry(&mut self, key: Vec<u8>) {
        self.hints.insert(key);
    }

    /// Notes an AUTOINCREMENT high-water mark to persist at commit.
    pub fn note_sequence(&mut self, table_id: u32, row_id: i64) {
        if let Some(set) = self.seq_sets.get_mut(&table_id) {
            let prev = *set;
            *set = Some(set.map_or(row_id, |v| v.max(row_id)));
            if *set != prev {
                self.undo.push(Undo::SeqSet {
                    table_id,
                    prev: Some(prev),
                });
            }
            return;
        }
        let prev = match self.sequences.get_mut(&table_id) {
            Some(v) if *v >= row_id => return,
            Some(v) => Some(std::mem::replace(v, row_id)),
            None => {
                self.sequences.insert(table_id, row_id);
                None
            }
        };
        self.undo.push(Undo::Sequence { table_id, prev });
    }

    /// Allocates a row id (see [`DbCore::alloc_row_id`]); AUTOINCREMENT tables keep it
    /// outstanding until this transaction finishes.
    pub fn alloc_row_id(&mut self, table_id: u32, autoincrement: bool) -> Result<(i64, bool)> {
        let owner = autoincrement.then_some(self.alloc_owner);
        let r = self.core.alloc_row_id(table_id, owner)?;
        if autoincrement && !self.alloc_tables.contains(&table_id) {
            self.alloc_tables.push(table_id);
        }
        Ok(r)
    }

    /// A table's `sqlite_sequence.seq` as this transaction sees it: its own writes, else the
    /// latest committed mark raised by its own inserts. The committed mark is not versioned, so
    /// it is the newest one, not the one at the snapshot.
    pub fn sequence_value(&self, table_id: u32) -> Result<Option<i64>> {
        if let Some(v) = self.seq_sets.get(&table_id) {
            return Ok(*v);
        }
        let stored = self.core.stored_sequence(table_id)?;
        Ok(match (stored, self.sequences.get(&table_id)) {
            (Some(a), Some(b)) => Some(a.max(*b)),
            (a, b) => a.or(b.copied()),
        })
    }

    /// Writes (Some) or deletes (None) a table's `sqlite_sequence` row; applied at commit.
    pub fn set_sequence(&mut self, table_id: u32, seq: Option<i64>) {
        let prev_mark = self.sequences.remove(&table_id);
        self.undo.push(Undo::Sequence {
            table_id,
            prev: prev_mark,
        });
        let prev = self.seq_sets.insert(table_id, seq);
        self.undo.push(Undo::SeqSet { table_id, prev });
    }

    /// Every live row of a table at this transaction's view, in row id order. Records a read
    /// of the whole table.
    pub fn scan(&mut self, table_id: u32) -> RowScan {
        self.scan_from(table_id, i64::MIN)
    }

    /// Live rows with row id `>= from`, in row id order. Records a read of that id range.
    pub fn scan_from(&mut self, table_id: u32, from: i64) -> RowScan {
        let prefix = keys::table_prefix(table_id);
        let start = keys::row_key(table_id, from);
        let end = prefix_end(&prefix);
        if self.track_reads {
            self.read_set.add_range(start.clone(), end.clone());
        }
        self.untracked_scan(table_id, &start, &end, from)
    }

    fn untracked_scan(&self, table_id: u32, start: &[u8], end: &[u8], from: i64) -> RowScan {
        let pending: Vec<(i64, StoredRow)> = self
            .pending
            .range((table_id, from)..=(table_id, i64::MAX))
            .map(|((_, r), p)| (*r, p.cur.clone()))
            .collect();
        RowScan {
            kv: self.core.kv.scan(start, end),
            snapshot: self.snapshot_ts,
            aborted: self.core.aborted_ranges().to_vec(),
            last_row: None,
            next_kv: None,
            pending,
            pending_pos: 0,
            done_kv: false,
        }
    }

    /// Whether this transaction has buffered writes to `table_id`.
    pub fn has_pending_in(&self, table_id: u32) -> bool {
        self.pending
            .range((table_id, i64::MIN)..=(table_id, i64::MAX))
            .next()
            .is_some()
    }

    /// Records a read of the rows of a table from id `from` on, as a scan would (for reads
    /// served from a decoded table image).
    pub fn record_scan(&mut self, table_id: u32, from: i64) {
        if self.track_reads {
            self.read_set.add_range(
                keys::row_key(table_id, from),
                prefix_end(&keys::table_prefix(table_id)),
            );
        }
    }

    /// Records point reads of rows (served from a decoded table image).
    pub fn record_points(&mut self, table_id: u32, ids: &[i64]) {
        if self.track_reads {
            for id in ids {
                self.read_set.add_point(keys::row_key(table_id, *id));
            }
        }
    }

    /// Number of live rows in a table at this view, without recording the read (for planner
    /// statistics, which must not make a transaction conflict).
    pub fn count_rows_untracked(&self, table_id: u32) -> Result<u64> {
        let prefix = keys::table_prefix(table_id);
        let end = prefix_end(&prefix);
        // A row's liveness is its newest visible version's flags byte: decoding whole rows
        // (every field, text allocated) cost more than the walk itself. Rows this transaction
        // wrote count by their buffered version instead.
        let has_pending = self.has_pending_in(table_id);
        let aborted = self.core.aborted_ranges();
        let (mut n, mut last) = (0u64, None);
        for item in self.core.kv.scan(&prefix, &end) {
            let (k, v) = item?;
            let Some((_, r, ts)) = keys::parse_row_version_key(&k) else {
                continue;
            };
            if ts > self.snapshot_ts
                || last == Some(r)
                || super::core::in_aborted_ranges(aborted, ts)
            {
                continue;
            }
            last = Some(r);
            if has_pending && self.pending.contains_key(&(table_id, r)) {
                continue;
            }
            let flags = *v
                .first()
                .ok_or_else(|| Error::corrupted(format!("empty row record in table {table_id}")))?;
            if flags & FLAG_TOMBSTONE == 0 {
                n += 1;
            }
        }
        let pending_live = self
            .pending
            .range((table_id, i64::MIN)..=(table_id, i64::MAX))
            .filter(|(_, p)| p.cur.flags & FLAG_TOMBSTONE == 0)
            .count() as u64;
        Ok(n + pending_live)
    }

    /// Committed index entry keys in `[start, end)` in key order, without recording the read
    /// (for planner statistics). Stops after `max` entries.
    pub fn index_keys_untracked(
        &self,
        start: &[u8],
        end: &[u8],
        max: usize,
    ) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for item in self.core.kv.scan(start, end) {
            let (k, _) = item?;
            out.push(k.to_vec());
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    /// Live rows whose encoded index key (the index's fields, without the row id) lies in
    /// `[start, end)`, in index order; `start` and `end` are full key bytes from
    /// [`keys::index_values_prefix`]. Entries are hints: each is verified against the row version
    /// this transaction sees, so a row appears once, at the position of its current values.
    /// `visit` returns whether to go on.
    pub fn index_range(
        &mut self,
        entity: &EntityDef,
        index: &IndexDef,
        start: &[u8],
        end: &[u8],
        visit: impl FnMut(i64, StoredRow) -> Result<bool>,
    ) -> Result<()> {
        self.index_range_dir(entity, index, start, end, false, 64, visit)
    }

    /// [`Self::index_range`] in ascending or (`desc`) descending index order. When the table has
    /// a decoded image at this snapshot, the entries come from the image (see
    /// [`Self::index_range_ref`]); otherwise from the store, in chunks (the first of
    /// `first_chunk`, then doubling up to 1024) whose rows are read in one batch
    /// (`read_rows_batch`: a range scan per run of nearby row ids) rather than a seek each; a
    /// caller that stops early (an ORDER BY ... LIMIT) passes about the rows it needs.
    #[allow(clippy::too_many_arguments)]
    pub fn index_range_dir(
        &mut self,
        entity: &EntityDef,
        index: &IndexDef,
        start: &[u8],
        end: &[u8],
        desc: bool,
        first_chunk: usize,
        mut visit: impl FnMut(i64, StoredRow) -> Result<bool>,
    ) -> Result<()> {
        if let Some((view, entries)) = self.ordered_image(entity, index)? {
            return self.index_range_image(
                entity,
                index,
                &view,
                &entries,
                start,
                end,
                desc,
                |id, r| visit(id, r.to_stored()),
            );
        }
        let mut n = 0u64;
        let r = self.index_range_store(entity, index, start, end, desc, first_chunk, |id, r| {
            n += 1;
            visit(id, r)
        });
        self.note_ordered_store_reads(entity.id, index, n);
        r
    }

    /// [`Self::index_range_dir`] handing out borrowed rows: from a decoded image, a reader
    /// that needs a few of a row's columns does not copy the others.
    #[allow(clippy::too_many_arguments)]
    pub fn index_range_ref(
        &mut self,
        entity: &EntityDef,
        index: &IndexDef,
        start: &[u8],
        end: &[u8],
        desc: bool,
        first_chunk: usize,
        mut visit: impl FnMut(i64, RowRef<'_>) -> Result<bool>,
    ) -> Result<()> {
        if let Some((view, entries)) = self.ordered_image(entity, index)? {
            return self.index_range_image(entity, index, &view, &entries, start, end, desc, visit);
        }
        let mut n = 0u64;
        let r = self.index_range_store(entity, index, start, end, desc, first_chunk, |id, r| {
            n += 1;
            visit(id, RowRef::of(&r))
        });
        self.note_ordered_store_reads(entity.id, index, n);
        r
    }

    /// Counts rows an ordered read of `index` took from the store while the table had an image
    /// whose ordered index for it was not built yet (see `ordered_image`).
    fn note_ordered_store_reads(&mut self, table_id: u32, index: &IndexDef, n: u64) {
        if let Some(Some(view)) = self.views.get(&table_id) {
            view.note_ordered_reads(index.id, n);
        }
    }

    /// The image of `entity` this transaction may read `index`'s entries from, with those
    /// entries (built on first use). None: no image at this snapshot, or an index the image
    /// cannot order (keyed indexes compute their keys from expressions; they are read from
    /// the store like before).
    fn ordered_image(
        &mut self,
        entity: &EntityDef,
        index: &IndexDef,
    ) -> Result<Option<(Arc<ImageView>, table_cache::OrderedEntries)>> {
        if index.fields.is_empty() {
            return Ok(None);
        }
        let Some(view) = self.image_view(entity.id) else {
            return Ok(None);
        };
        // Ski-rental, as for the image itself: the ordered index (a sort of the table's keys)
        // is built once ordered reads from the store have visited as many rows as the table
        // holds, so a table whose base is folded often (each fold drops it) never pays for
        // more builds than the store reads it saves.
        if !view.ordered_ready(index.id) {
            return Ok(None);
        }
        let mut key_of = |id: i64, vals: &[Value]| -> Result<Option<Vec<u8>>> {
            Ok(index
                .entry_values(entity, vals)?
                .map(|v| keys::index_entry_key(index.id, &v, id)))
        };
        Ok(view
            .ordered_entries(index.id, &mut key_of)?
            .map(|entries| (view, entries)))
    }

    /// The rows whose index entry lies in `[start, end)`, in index order, from a decoded image:
    /// the image's entries are exact for the committed rows at this snapshot (the base's
    /// ordered index, minus rows an overlay version replaces, merged with the overlay's
    /// versions), and this transaction's own index hints in the range are merged in. As on
    /// the store path every entry is checked against the row this transaction sees (its own
    /// buffered version first), and the read set gets the index range and each row visited.
    #[allow(clippy::too_many_arguments)]
    fn index_range_image(
        &mut self,
        entity: &EntityDef,
        index: &IndexDef,
        view: &ImageView,
        entries: &table_cache::OrderedEntries,
        start: &[u8],
        end: &[u8],
        desc: bool,
        mut visit: impl FnMut(i64, RowRef<'_>) -> Result<bool>,
    ) -> Result<()> {
        use table_cache::ImageEntry;
        if self.track_reads {
            self.read_set.add_range(start.to_vec(), end.to_vec());
        }
        self.core
            .query
            .tables
            .ordered_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if start >= end {
            return Ok(());
        }
        let base = &entries.base;
        let (b_lo, b_hi) = (base.lower_bound(start), base.lower_bound(end));
        let over = entries.overlay.as_slice();
        let o_lo = over.partition_point(|e| e.0.as_slice() < start);
        let o_hi = over.partition_point(|e| e.0.as_slice() < end);
        let mut hints: Vec<Vec<u8>> = self
            .hints
            .range(start.to_vec()..end.to_vec())
            .cloned()
            .collect();
        if desc {
            hints.reverse();
        }
        let (nb, no, nh) = (b_hi - b_lo, o_hi - o_lo, hints.len());
        let b_at = |i: usize| if desc { b_hi - 1 - i } else { b_lo + i };
        let o_at = |i: usize| if desc { o_hi - 1 - i } else { o_lo + i };
        // `a` comes strictly before `b` in the read's direction.
        let before = |a: &[u8], b: &[u8]| if desc { a > b } else { a < b };
        let has_pending = self.has_pending_in(entity.id);
        let has_overlay = !view.has_no_overlay();
        let (mut ib, mut io, mut ih) = (0, 0, 0);
        let mut visited = 0u64;
        let result = loop {
            // Base entries of rows an overlay version replaces are stale at this snapshot.
            while has_overlay && ib < nb && view.overrides(view_id(view, base.pos(b_at(ib)))) {
                ib += 1;
            }
            let kb = (ib < nb).then(|| base.key(b_at(ib)));
            let ko = (io < no).then(|| over[o_at(io)].0.as_slice());
            let kh = (ih < nh).then(|| hints[ih].as_slice());
            // The next key in the read's direction, and which streams hold it.
            let mut key: Option<&[u8]> = None;
            for k in [kb, ko, kh].into_iter().flatten() {
                if key.is_none_or(|cur| before(k, cur)) {
                    key = Some(k);
                }
            }
            let Some(key) = key else {
                break Ok(());
            };
            let mut entry = None;
            if kb == Some(key) {
                entry = Some(ImageEntry::Base(base.pos(b_at(ib))));
                ib += 1;
            }
            if ko == Some(key) {
                entry = Some(ImageEntry::Overlay(over[o_at(io)].1));
                io += 1;
            }
            let key = key.to_vec();
            if ih < nh && hints[ih] == key {
                ih += 1;
            }
            let Some(id) = keys::index_entry_row_id(&key) else {
                continue;
            };
            if self.track_reads {
                self.read_set.add_point(keys::row_key(entity.id, id));
            }
            let own = if has_pending {
                self.pending.get(&(entity.id, id))
            } else {
                None
            };
            let go_on = match own {
                Some(p) => {
                    // A buffered version decides, whichever stream named the row: the entry is
                    // its entry only if its current values give this key.
                    if !is_live(&p.cur) {
                        continue;
                    }
                    let current = index.entry_values(entity, &p.cur.values)?;
                    if current.is_none_or(|v| keys::index_entry_key(index.id, &v, id) != key) {
                        continue;
                    }
                    visited += 1;
                    visit(id, RowRef::of(&p.cur))
                }
                None => {
                    // A hint alone names no committed row at this key (the image lists every
                    // committed entry), and a rolled-back write left no buffered version.
                    let Some((_, deleted, vals, version)) = entry.and_then(|e| view.entry_row(e))
                    else {
                        continue;
                    };
                    visited += 1;
                    visit(
                        id,
                        RowRef {
                            soft_deleted: deleted,
                            version,
                            values: vals,
                        },
                    )
                }
            };
            match go_on {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.core
            .metrics
            .rows_read
            .fetch_add(visited, std::sync::atomic::Ordering::Relaxed);
        result
    }

    /// The store path of [`Self::index_range_dir`].
    #[allow(clippy::too_many_arguments)]
    fn index_range_store(
        &mut self,
        entity: &EntityDef,
        index: &IndexDef,
        start: &[u8],
        end: &[u8],
        desc: bool,
        first_chunk: usize,
        mut visit: impl FnMut(i64, StoredRow) -> Result<bool>,
    ) -> Result<()> {
        if self.track_reads {
            self.read_set.add_range(start.to_vec(), end.to_vec());
        }
        let mut hints: Vec<Vec<u8>> = self
            .hints
            .range(start.to_vec()..end.to_vec())
            .cloned()
            .collect();
        if desc {
            hints.reverse();
        }
        // `a` comes no later than `b` in the scan's direction.
        let first = |a: &Vec<u8>, b: &Vec<u8>| if desc { a >= b } else { a <= b };
        let mut hint_pos = 0;
        let mut kv = if desc {
            self.core.kv.scan_rev(start, end)
        } else {
            self.core.kv.scan(start, end)
        };
        let mut next_kv: Option<Vec<u8>> = None;
        let mut kv_done = false;
        let mut last: Option<Vec<u8>> = None;
        let mut chunk_len = first_chunk.clamp(1, 1024);
        loop {
            // The next entries, merged from the store and this transaction's hints, distinct.
            let mut chunk: Vec<(Vec<u8>, i64)> = Vec::with_capacity(chunk_len.min(1024));
            while chunk.len() < chunk_len {
                if next_kv.is_none() && !kv_done {
                    match kv.next() {
                        None => kv_done = true,
                        Some(item) => next_kv = Some(item?.0.to_vec()),
                    }
                }
                let key = match (next_kv.as_ref(), hints.get(hint_pos)) {
                    (None, None) => break,
                    (Some(a), Some(b)) if first(b, a) => {
                        hint_pos += 1;
                        if b == a {
                            next_kv = None;
                        }
                        b.clone()
                    }
                    (None, Some(b)) => {
                        hint_pos += 1;
                        b.clone()
                    }
                    _ => next_kv.take().expect("checked"),
                };
                if last.as_ref() == Some(&key) {
                    continue;
                }
                last = Some(key.clone());
                if let Some(id) = keys::index_entry_row_id(&key) {
                    chunk.push((key, id));
                }
            }
            if chunk.is_empty() {
                return Ok(());
            }
            let mut ids: Vec<i64> = chunk.iter().map(|(_, id)| *id).collect();
            ids.sort_unstable();
            ids.dedup();
            let mut rows: HashMap<i64, StoredRow> = HashMap::with_capacity(ids.len());
            self.read_rows_batch(entity.id, &ids, |id, r| {
                rows.insert(id, r);
                Ok(())
            })?;
            for (key, id) in chunk {
                let Some(row) = rows.remove(&id) else {
                    continue;
                };
                if !is_live(&row) {
                    continue;
                }
                // Entries are hints: the row's current values decide whether this is its entry.
                let current = index.entry_values(entity, &row.values)?;
                if current.is_some_and(|vals| keys::index_entry_key(index.id, &vals, id) == key) {
                    if !visit(id, row)? {
                        return Ok(());
                    }
                } else {
                    // A stale entry: the row may have another entry later in this chunk.
                    rows.insert(id, row);
                }
            }
            chunk_len = (chunk_len * 2).min(1024);
        }
    }

    /// Row ids an index has entries for under an encoded value prefix (committed entries and
    /// this transaction's own), sorted and distinct. Entries are hints: the caller verifies
    /// each row. Records the index range.
    pub fn index_candidates(&mut self, prefix: &[u8]) -> Result<Vec<i64>> {
        let end = prefix_end(prefix);
        if self.track_reads {
            self.read_set.add_range(prefix.to_vec(), end.clone());
        }
        let mut ids = Vec::new();
        for item in self.core.kv.scan(prefix, &end) {
            let (k, _) = item?;
            if let Some(r) = keys::index_entry_row_id(&k) {
                ids.push(r);
            }
        }
        for k in self.hints.range(prefix.to_vec()..end) {
            if let Some(r) = keys::index_entry_row_id(k) {
                ids.push(r);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// Index entry keys in `[start, end)` (committed entries and this transaction's own),
    /// sorted and distinct. Records the range.
    pub fn index_entries(&mut self, start: &[u8], end: &[u8]) -> Result<Vec<Vec<u8>>> {
        if self.track_reads {
            self.read_set.add_range(start.to_vec(), end.to_vec());
        }
        let mut out = Vec::new();
        for item in self.core.kv.scan(start, end) {
            out.push(item?.0.to_vec());
        }
        let mut hints = self.hints.range(start.to_vec()..end.to_vec()).peekable();
        if hints.peek().is_some() {
            out.extend(hints.cloned());
            out.sort_unstable();
            out.dedup();
        }
        Ok(out)
    }

    /// Candidate row ids per encoded index prefix (sorted and distinct per prefix; hints, to be
    /// verified by the caller). Prefixes of nearby integer keys (ids, foreign keys to ids)
    /// share one range scan of the index instead of one scan each. Records the ranges read.
    pub fn index_candidates_grouped(&mut self, prefixes: &[Vec<u8>]) -> Result<Vec<Vec<i64>>> {
        /// Largest gap between integer keys read through by one scan.
        const GAP: i64 = 4;
        let mut order: Vec<usize> = (0..prefixes.len()).collect();
        order.sort_by(|a, b| prefixes[*a].cmp(&prefixes[*b]));
        let mut out: Vec<Vec<i64>> = vec![Vec::new(); prefixes.len()];
        let mut i = 0;
        while i < order.len() {
            let mut j = i;
            while j + 1 < order.len() {
                let (a, b) = (&prefixes[order[j]], &prefixes[order[j + 1]]);
                match (keys::trailing_int(a), keys::trailing_int(b)) {
                    (Some((pa, x)), Some((pb, y))) if pa == pb && y.saturating_sub(x) <= GAP => {
                        j += 1
                    }
                    _ => break,
                }
            }
            if i == j {
                out[order[i]] = self.index_candidates(&prefixes[order[i]])?;
            } else {
                let start = prefixes[order[i]].clone();
                let end = prefix_end(&prefixes[order[j]]);
                let entries = self.index_entries(&start, &end)?;
                // Entries and prefixes are both sorted: walk them together.
                let mut e = 0;
                for &pi in &order[i..=j] {
                    let p = &prefixes[pi];
                    while e < entries.len() && entries[e].as_slice() < p.as_slice() {
                        e += 1;
                    }
                    let mut ids = Vec::new();
                    while e < entries.len() && entries[e].starts_with(p) {
                        // A prefix of a many-field index has longer entries under it; the
                        // callers check each row's values, so every entry is a candidate.
                        if entries[e].len() >= p.len() + 8 {
                            if let Some(id) = keys::index_entry_row_id(&entries[e]) {
                                ids.push(id);
                            }
                        }
                        e += 1;
                    }
                    ids.sort_unstable();
                    ids.dedup();
                    out[pi] = ids;
                }
            }
            i = j + 1;
        }
        Ok(out)
    }

    /// Reads the rows with the given ids (sorted, distinct) as this transaction sees them, with
    /// one range scan per run of nearby ids instead of one seek per row (a seek costs about as
    /// much as stepping over a few rows). Tombstoned and missing rows are skipped. Records each
    /// run's id range.
    pub fn read_rows_batch(
        &mut self,
        table_id: u32,
        ids: &[i64],
        mut visit: impl FnMut(i64, StoredRow) -> Result<()>,
    ) -> Result<()> {
        /// Largest id gap bridged inside one run.
        const GAP: i64 = 4;
        let mut read = 0u64;
        if let Some(view) = self.image_view(table_id) {
            // Exact at the snapshot: each row from this transaction's writes, else the image.
            for &id in ids {
                if self.track_reads {
                    self.read_set.add_point(keys::row_key(table_id, id));
                }
                let row = match self.pending.get(&(table_id, id)) {
                    Some(p) => p.cur.clone(),
                    None => match image_row(&view, id) {
                        Some(r) => r,
                        None => continue,
                    },
                };
                if is_live(&row) {
                    read += 1;
                    visit(id, row)?;
                }
            }
            self.core
                .metrics
                .rows_read
                .fetch_add(read, std::sync::atomic::Ordering::Relaxed);
            return Ok(());
        }
        let mut i = 0;
        while i < ids.len() {
            let mut j = i;
            while j + 1 < ids.len() && ids[j + 1].saturating_sub(ids[j]) <= GAP {
                j += 1;
            }
            let (first, last) = (ids[i], ids[j]);
            let start = keys::row_key(table_id, first);
            let end = if last == i64::MAX {
                prefix_end(&keys::table_prefix(table_id))
            } else {
                keys::row_key(table_id, last + 1)
            };
            if self.track_reads {
                self.read_set.add_range(start.clone(), end.clone());
            }
            let pending: Vec<(i64, StoredRow)> = self
                .pending
                .range((table_id, first)..=(table_id, last))
                .map(|((_, r), p)| (*r, p.cur.clone()))
                .collect();
            let scan = RowScan {
                kv: self.core.kv.scan(&start, &end),
                snapshot: self.snapshot_ts,
                aborted: self.core.aborted_ranges().to_vec(),
                last_row: None,
                next_kv: None,
                pending,
                pending_pos: 0,
                done_kv: false,
            };
            let wanted = &ids[i..=j];
            let mut w = 0;
            for item in scan {
                let (id, row) = item?;
                while w < wanted.len() && wanted[w] < id {
                    w += 1;
                }
                if w == wanted.len() {
                    break;
                }
                if wanted[w] == id {
                    read += 1;
                    visit(id, row)?;
                }
            }
            i = j + 1;
        }
        self.core
            .metrics
            .rows_read
            .fetch_add(read, std::sync::atomic::Ordering::Relaxed);
        self.note_store_reads(table_id, read)
    }

    /// Rows whose leading index fields equal `values`, at this transaction's view (live rows
    /// only, soft-deleted included). Records the index range and each row read.
    pub fn index_lookup(
        &mut self,
        entity: &EntityDef,
        index: &IndexDef,
        values: &[Value],
    ) -> Result<Vec<(i64, StoredRow)>> {
        let prefix = keys::index_values_prefix(index.id, values);
        let end = prefix_end(&prefix);
        if self.track_reads {
            self.read_set.add_range(prefix.clone(), end.clone());
        }
        let mut ids: BTreeSet<i64> = BTreeSet::new();
        for item in self.core.kv.scan(&prefix, &end) {
            let (k, _) = item?;
            if let Some(r) = keys::index_entry_row_id(&k) {
                ids.insert(r);
            }
        }
        for k in self.hints.range(prefix.clone()..end) {
            if let Some(r) = keys::index_entry_row_id(k) {
                ids.insert(r);
            }
        }
        let n = values.len();
        let mut out = Vec::new();
        for id in ids {
            let Some(row) = self.read_row(entity.id, id)? else {
                continue;
            };
            if !is_live(&row) {
                continue;
            }
            let Some(mut vals) = index.entry_values(entity, &row.values)? else {
                continue;
            };
            vals.truncate(n);
            if keys::index_values_prefix(index.id, &vals) == prefix {
                out.push((id, row));
            }
        }
        Ok(out)
    }

    /// Starts a named (nestable) savepoint.
    pub fn savepoint(&mut self, name: &str) {
        let mark = self.state_mark();
        self.savepoints.push(Savepoint {
            name: name.to_string(),
            mark,
        });
    }

    fn state_mark(&self) -> Mark {
        Mark {
            undo_len: self.undo.len(),
            deferred_len: self.deferred.len(),
            savepoints_len: self.savepoints.len(),
            schema: self.schema.clone(),
            schema_changed: self.schema_changed,
        }
    }

    /// Marks the start of one statement (or one engine operation) that must be atomic: undo it
    /// with [`Self::rollback_to_mark`], keep it with [`Self::release_mark`]. Unlike a named
    /// savepoint nothing is looked up by name and no state is copied, so a statement inside a
    /// transaction pays a few words for its atomicity. Marks nest (strictly: the innermost
    /// is ended first), and savepoints may be taken and ended inside one.
    pub fn mark(&mut self) -> Mark {
        self.open_marks += 1;
        self.state_mark()
    }

    /// Keeps what was done since `mark`.
    pub fn release_mark(&mut self, mark: Mark) {
        self.savepoints.truncate(mark.savepoints_len);
        self.end_mark();
    }

    /// Undoes everything done since `mark` (savepoints taken since are forgotten).
    pub fn rollback_to_mark(&mut self, mark: Mark) {
        self.savepoints.truncate(mark.savepoints_len);
        self.undo_to(&mark);
        self.end_mark();
    }

    fn end_mark(&mut self) {
        self.open_marks = self.open_marks.saturating_sub(1);
        self.trim_undo();
    }

    /// With no savepoint and no statement mark open, nothing can be rolled back to any more
    /// (short of the whole transaction): the undo log, with the row versions it holds, goes.
    fn trim_undo(&mut self) {
        if self.open_marks == 0 && self.savepoints.is_empty() {
            self.undo.clear();
        }
    }

    fn undo_to(&mut self, mark: &Mark) {
        self.schema = mark.schema.clone();
        self.schema_changed = mark.schema_changed;
        while self.undo.len() > mark.undo_len {
            let Some(u) = self.undo.pop() else { break };
            match u {
                Undo::Row {
                    key,
                    prev: Some(prev),
                } => {
                    if let Some(p) = self.pending.get_mut(&key) {
                        p.cur = prev;
                    }
                }
                Undo::Row { key, prev: None } => {
                    self.pending.remove(&key);
                }
                Undo::Sequence { table_id, prev } => match prev {
                    Some(v) => {
                        self.sequences.insert(table_id, v);
                    }
                    None => {
                        self.sequences.remove(&table_id);
                    }
                },
                Undo::SeqSet { table_id, prev } => match prev {
                    Some(v) => {
                        self.seq_sets.insert(table_id, v);
                    }
                    None => {
                        self.seq_sets.remove(&table_id);
                    }
                },
                Undo::FieldMap { table_id, prev } => match prev {
                    Some(v) => {
                        self.field_maps.insert(table_id, v);
                    }
                    None => {
                        self.field_maps.remove(&table_id);
                    }
                },
            }
        }
        self.deferred.truncate(mark.deferred_len);
    }

    /// Records that field `pos` of a table that had `old_len` fields was dropped (see
    /// `field_maps`).
    pub fn note_field_dropped(&mut self, table_id: u32, old_len: usize, pos: u32) {
        let prev = self.field_maps.get(&table_id).cloned();
        self.undo.push(Undo::FieldMap { table_id, prev });
        let map = self
            .field_maps
            .entry(table_id)
            .or_insert_with(|| (0..old_len as u32).map(Some).collect());
        // Fields added since the first drop did not exist before the transaction.
        map.resize(old_len.max(map.len()), None);
        if (pos as usize) < map.len() {
            map.remove(pos as usize);
        }
    }

    /// The values of a row written before this transaction, in the entity's current layout.
    fn base_values(&self, entity: &EntityDef, values: &[Value]) -> Vec<Value> {
        let n = entity.fields.len() as u32;
        match self.field_maps.get(&entity.id) {
            None => (0..n).map(|f| entity.stored_value(values, f)).collect(),
            Some(map) => (0..n)
                .map(|f| match map.get(f as usize).copied().flatten() {
                    Some(old) if (old as usize) < values.len() => values[old as usize].clone(),
                    // Missing from the stored row: the field's default, as for reads.
                    _ => entity.stored_value(&[], f),
                })
                .collect(),
        }
    }

    fn find_savepoint(&self, name: &str) -> Result<usize> {
        self.savepoints
            .iter()
            .rposition(|s| s.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| Error::txn_state(format!("no such savepoint: {name}")))
    }

    /// Undoes everything since the savepoint; the savepoint stays (as in SQL).
    pub fn rollback_to(&mut self, name: &str) -> Result<()> {
        let i = self.find_savepoint(name)?;
        self.savepoints.truncate(i + 1);
        let mark = self.savepoints[i].mark.clone();
        self.undo_to(&mark);
        Ok(())
    }

    /// Forgets the savepoint and every savepoint after it, keeping their changes.
    pub fn release(&mut self, name: &str) -> Result<()> {
        let i = self.find_savepoint(name)?;
        self.savepoints.truncate(i);
        self.trim_undo();
        Ok(())
    }

    pub fn savepoint_names(&self) -> Vec<String> {
        self.savepoints.iter().map(|s| s.name.clone()).collect()
    }

    /// Ends the transaction without writing anything.
    pub fn abort(&mut self) {
        if !self.finished {
            self.finished = true;
            self.core.oracle.end_snapshot(self.snapshot_ts);
            if !self.alloc_tables.is_empty() {
                self.core
                    .release_row_ids(self.alloc_owner, &std::mem::take(&mut self.alloc_tables));
            }
        }
    }

    /// Commits the buffered writes. Read-only transactions return their snapshot timestamp.
    pub fn commit(&mut self) -> Result<u64> {
        if self.finished {
            return Err(Error::txn_state("the transaction has already finished"));
        }
        if !self.has_writes() {
            self.abort();
            return Ok(self.snapshot_ts);
        }
        let req = self.build_commit();
        let res = match req {
            Ok(req) => self.core.commit(req),
            Err(e) => Err(e),
        };
        if res.is_ok() {
            self.core.query.stats.apply_deltas(self.row_count_deltas());
        }
        self.abort();
        res
    }

    /// Live-row count change per table made by the buffered writes (planner statistics).
    fn row_count_deltas(&self) -> HashMap<u32, i64> {
        let mut out: HashMap<u32, i64> = HashMap::new();
        for ((table, _), p) in &self.pending {
            let before = p.base.as_ref().is_some_and(is_live) as i64;
            let after = is_live(&p.cur) as i64;
            if before != after {
                *out.entry(*table).or_default() += after - before;
            }
        }
        out
    }

    fn build_commit(&mut self) -> Result<CommitRequest> {
        let schema = self.schema.clone();
        let mut sequence_resets = Vec::new();
        let mut sets: Vec<(u32, Option<i64>)> = self.seq_sets.drain().collect();
        sets.sort_unstable();
        for (table_id, seq) in sets {
            if schema.entity_by_id(table_id).is_none() {
                continue; // dropped in this transaction
            }
            // The largest live id: SQLite's next id is max(seq, max(rowid)) + 1. Reading the
            // whole table makes a concurrent insert into it a conflict.
            let mut live_max = 0;
            for r in self.scan(table_id) {
                live_max = live_max.max(r?.0);
            }
            sequence_resets.push(crate::txn::core::SequenceReset {
                table_id,
                seq,
                live_max,
            });
        }
        let mut rows = Vec::with_capacity(self.pending.len());
        let mut changes = Vec::new();
        let mut relations = Vec::new();
        let mut gc_candidates = Vec::new();
        for (&(t, r), p) in &self.pending {
            if p.base.is_some() {
                gc_candidates.push((t, r));
            }
            let base_live = p.base.as_ref().filter(|b| is_live(b));
            if base_live.is_none() && p.cur.is_tombstone() {
                continue; // created and deleted inside this transaction
            }
            let Some(entity) = schema.entity_by_id(t) else {
                continue; // the table was dropped in this transaction
            };
            rows.push((t, r, encode_row(p.cur.flags, p.cur.version, &p.cur.values)));
            let kind = match (base_live, p.cur.is_tombstone()) {
                (None, _) => ChangeKind::Insert,
                (Some(_), true) => ChangeKind::Delete,
                (Some(b), false) => match (b.is_soft_deleted(), p.cur.is_soft_deleted()) {
                    (false, true) => ChangeKind::SoftDelete,
                    (true, false) => ChangeKind::Restore,
                    _ => ChangeKind::Update,
                },
            };
            let nf = entity.fields.len() as u32;
            // The before-image in the current layout (fields may have been dropped since).
            let base_vals = base_live.map(|b| self.base_values(entity, &b.values));
            let changed: Vec<u32> = match (kind, &base_vals) {
                (ChangeKind::Update, Some(b)) => (0..nf)
                    .filter(|&f| {
                        b[f as usize]
                            .total_cmp(&entity.stored_value(&p.cur.values, f))
                            .is_ne()
                    })
                    .collect(),
                (ChangeKind::Delete, _) => Vec::new(),
                _ => (0..nf).collect(),
            };
            // Relation deltas: a many-to-one link that appears or disappears.
            for fk in &entity.foreign_keys {
                let key_of = |values: Option<&[Value]>| -> Option<Vec<Value>> {
                    let values = values?;
                    let k: Vec<Value> = fk
                        .fields
                        .iter()
                        .map(|f| entity.stored_value(values, *f))
                        .collect();
                    (!k.iter().any(Value::is_null)).then_some(k)
                };
                let old = key_of(base_vals.as_deref());
                let new = key_of(Some(p.cur.values.as_slice()).filter(|_| !p.cur.is_tombstone()));
                if old == new {
                    continue;
                }
                let rel = schema
                    .relations()
                    .iter()
                    .find(|x| {
                        x.fk_entity == entity.name
                            && x.fk_name == fk.name
                            && matches!(x.kind, RelationKind::ManyToOne | RelationKind::OneToOne)
                            && x.from == entity.name
                    })
                    .map_or_else(|| fk.name.clone(), |x| x.name.clone());
                for (key, attached) in [(old, false), (new, true)] {
                    if let Some(parent_key) = key {
                        relations.push(RelationChange {
                            relation: rel.clone(),
                            child_entity: entity.name.clone(),
                            child_row_id: r,
                            parent_entity: fk.parent.clone(),
                            parent_key,
                            attached,
                        });
                    }
                }
            }
            changes.push(EntityChange {
                entity: entity.name.clone(),
                table_id: t,
                row_id: r,
                kind,
                version: p.cur.version,
                changed,
                values: if kind == ChangeKind::Delete {
                    Vec::new()
                } else {
                    p.cur.values.clone()
                },
            });
        }
        let change_set = ChangeSet {
            token: 0,
            schema_version: schema.version(),
            schema_changed: self.schema_changed,
            entities: changes,
            relations,
        };
        Ok(CommitRequest {
            snapshot_ts: self.snapshot_ts,
            read_set: std::mem::take(&mut self.read_set),
            rows,
            index_entries: std::mem::take(&mut self.hints).into_iter().collect(),
            new_schema: self.schema_changed.then(|| schema.bundle.clone()),
            change_record: Some(change_set.encode()),
            sequences: self.sequences.drain().collect(),
            sequence_resets,
            alloc_owner: self.alloc_owner,
            gc_candidates,
        })
    }
}

impl Drop for Txn {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Merges the committed rows of a table at a snapshot with the transaction's buffered rows.
pub struct RowScan {
    kv: KvIter,
    snapshot: u64,
    aborted: Vec<(u64, u64)>,
    last_row: Option<i64>,
    next_kv: Option<(i64, StoredRow)>,
    pending: Vec<(i64, StoredRow)>,
    pending_pos: usize,
    done_kv: bool,
}

impl RowScan {
    fn fill_kv(&mut self) -> Result<()> {
        while self.next_kv.is_none() && !self.done_kv {
            match self.kv.next() {
                None => self.done_kv = true,
                Some(item) => {
                    let (k, v) = item?;
                    let Some((_, r, ts)) = keys::parse_row_version_key(&k) else {
                        continue;
                    };
                    if ts > self.snapshot
                        || self.last_row == Some(r)
                        || super::core::in_aborted_ranges(&self.aborted, ts)
                    {
                        continue;
                    }
                    self.last_row = Some(r);
                    self.next_kv = Some((r, decode_row(&v)?));
                }
            }
        }
        Ok(())
    }
}

impl Iterator for RowScan {
    type Item = Result<(i64, StoredRow)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Err(e) = self.fill_kv() {
                self.done_kv = true;
                return Some(Err(e));
            }
            let p = self.pending.get(self.pending_pos).map(|(r, _)| *r);
            let k = self.next_kv.as_ref().map(|(r, _)| *r);
            let (id, row) = match (k, p) {
                (None, None) => return None,
                (Some(kr), Some(pr)) if pr <= kr => {
                    if pr == kr {
                        self.next_kv = None;
                    }
                    self.pending_pos += 1;
                    let (id, row) = &self.pending[self.pending_pos - 1];
                    (*id, row.clone())
                }
                (None, Some(_)) => {
                    self.pending_pos += 1;
                    let (id, row) = &self.pending[self.pending_pos - 1];
                    (*id, row.clone())
                }
                _ => self.next_kv.take().expect("checked"),
            };
            if row.flags & FLAG_TOMBSTONE == 0 {
                return Some(Ok((id, row)));
            }
        }
    }
}

/// Builds a tombstone for a row that had `version`.
pub fn tombstone(version: u64) -> StoredRow {
    StoredRow {
        flags: FLAG_TOMBSTONE,
        version: version + 1,
        values: Vec::new(),
    }
}

/// Marks a row soft-deleted (or restores it).
pub fn with_soft_delete(mut row: StoredRow, deleted: bool) -> StoredRow {
    if deleted {
        row.flags |= FLAG_SOFT_DELETED;
    } else {
        row.flags &= !FLAG_SOFT_DELETED;
    }
    row.version += 1;
    row
}

#[cfg(test)]
mod tests {
    use crate::{DataType, Database, EntitySpec, FieldDef, Value};

    /// Live rows by a full decoding scan, the definition `count_rows_untracked` must match.
    fn scanned(txn: &super::Txn, table: u32) -> u64 {
        let prefix = super::keys::table_prefix(table);
        let end = super::prefix_end(&prefix);
        txn.untracked_scan(table, &prefix, &end, i64::MIN).count() as u64
    }

    #[test]
    fn row_counts_read_flags_only_and_match_a_scan() {
        let db = Database::temporary().expect("db");
        let conn = db.connect();
        let mut tx = conn.begin().expect("begin");
        tx.create_entity(
            &EntitySpec::new("items")
                .id("id")
                .field(FieldDef::new("name", DataType::Text))
                .soft_delete(),
        )
        .expect("items");
        tx.commit().expect("commit");
        let mut tx = conn.begin().expect("begin");
        for i in 1..=10 {
            tx.insert("items", &[("id", Value::Integer(i)), ("name", "x".into())])
                .expect("insert");
        }
        tx.commit().expect("commit");
        // Deleted rows leave tombstones; a soft-deleted row still counts (as a scan yields it).
        let mut tx = conn.begin().expect("begin");
        for i in [2, 3, 4] {
            tx.purge("items", i).expect("delete");
        }
        tx.delete("items", 5).expect("soft delete");
        tx.update("items", 6, &[("name", "y".into())])
            .expect("update");
        tx.commit().expect("commit");
        // An older snapshot, and a transaction with buffered writes over committed rows.
        let mut tx = conn.begin().expect("begin");
        tx.insert("items", &[("id", Value::Integer(20)), ("name", "z".into())])
            .expect("insert");
        tx.purge("items", 7).expect("delete");
        tx.update("items", 8, &[("name", "w".into())])
            .expect("update");
        let table = tx.schema().entity("items").expect("items").id;
        let txn = tx.engine_txn();
        assert_eq!(txn.count_rows_untracked(table).expect("count"), 7);
        assert_eq!(
            txn.count_rows_untracked(table).expect("count"),
            scanned(txn, table)
        );
        let mut fresh = conn.begin().expect("begin");
        let txn = fresh.engine_txn();
        assert_eq!(txn.count_rows_untracked(table).expect("count"), 7);
        assert_eq!(
            txn.count_rows_untracked(table).expect("count"),
            scanned(txn, table)
        );
    }
}
