//! Decoded table images: for read-mostly tables, the rows of a table as of some commit, decoded
//! once and shared by readers, plus an overlay of the row versions committed since. A graph
//! fetch's hash joins, identity reads and include lookups then skip the store (a sled iteration
//! step costs far more than reading a decoded row).
//!
//! An image is built by a complete scan at snapshot `s` (`built_at = s`); `valid_from` is the
//! newest commit at or below `s` that wrote the table. From then on every commit that writes the
//! table appends its row versions to the image's overlay, under the commit lock and before the
//! commit becomes visible (`note_commit`). A reader at snapshot `r >= valid_from` therefore sees
//! exactly its snapshot: the base rows, overridden by the overlay versions with `ts <= r`.
//! Readers below `valid_from` never use the image. Both the per-table write marks and the images
//! live under one lock, so an image can never be installed after a write it missed. A schema
//! change drops the images of the tables it touches, and an overlay that grows past an eighth of
//! its base drops its image (the ski-rental rule in `wants_image` rebuilds it once store reads
//! of the table have cost as much as a scan). A graph fetch does not use the image of a table it
//! has buffered writes to; row reads (`Txn::read_row`, `Txn::read_rows_batch`) use it row by row,
//! after the transaction's own writes.
//!
//! Builds are claimed (`begin_build`): one per table at a time, so readers that want the same
//! image at once (a cold start) do not each scan the table; the others wait for it (bounded) or
//! keep reading the store.
//! Commits during a build's scan are kept for it like an overlay (`Building`), so the image it
//! installs is exact from its snapshot on even when writers raced the scan.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use crate::catalog::Schema;
use crate::exec::filter::{join_key, JoinKey};
use crate::value::Value;

/// Bytes of decoded rows kept across all images unless `Options::image_budget` says otherwise.
pub const DEFAULT_BUDGET: u64 = 64 << 20;
/// Overlay length at which a reader that sees all of it folds it into a new base.
pub const COMPACT_AT: usize = 64;
/// Tables larger than this many rows are not imaged.
pub const MAX_ROWS: u64 = 250_000;
/// Longest a reader waits for another reader's build of an image it wants (see
/// [`TableCache::wait_for_build`]): a build of `MAX_ROWS` rows takes about this long on an
/// idle core.
pub const BUILD_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// A decoded row: (row id, soft-deleted, every field).
pub type ImageRow = (i64, bool, Arc<Vec<Value>>);

/// A row version in an overlay: (soft-deleted, every field, the row's version token); `None`
/// means deleted.
type Version = Option<(bool, Arc<Vec<Value>>, u64)>;

/// One overlay version: commit timestamp, row id, the row.
type OverlayEntry = (u64, i64, Version);

/// A per-image index built once on first use. Concurrent first users of one index wait for the
/// one building it (a sort or hash of the base rows, milliseconds) instead of each building
/// their own copy: on a cold start 16 readers would otherwise build 16 identical indexes.
type Slot<T> = Arc<Mutex<Option<Arc<T>>>>;

/// The slot of `key` in `map`, created empty if there is none.
fn slot<K: std::hash::Hash + Eq + Clone, T>(map: &Mutex<HashMap<K, Slot<T>>>, key: &K) -> Slot<T> {
    map.lock().entry(key.clone()).or_default().clone()
}

/// Whether the index in `key`'s slot has been built (without waiting for a build under way).
fn slot_built<K: std::hash::Hash + Eq, T>(map: &Mutex<HashMap<K, Slot<T>>>, key: &K) -> bool {
    map.lock()
        .get(key)
        .is_some_and(|s| s.try_lock().is_some_and(|v| v.is_some()))
}

pub struct TableImage {
    pub table_id: u32,
    pub schema_version: u64,
    pub built_at: u64,
    pub valid_from: u64,
    /// Base rows in row id order.
    pub rows: Vec<ImageRow>,
    /// The version token of each base row (same positions as `rows`), for point reads that
    /// return whole stored rows.
    pub versions: Vec<u64>,
    pub bytes: usize,
    /// Tick of the last reader (the least recently used image is evicted first).
    last_used: AtomicU64,
    /// Equality indexes over the base rows, built on first use: key of the fields -> positions
    /// in `rows` (identity order).
    indexes: Mutex<HashMap<Vec<u32>, Slot<ImageIndex>>>,
    /// Ordered indexes over the base rows, built on first use, by index id.
    ordered: Mutex<HashMap<u32, Slot<OrderedIndex>>>,
    /// Per index id without an ordered index yet: rows ordered reads took from the store.
    ordered_reads: Mutex<HashMap<u32, u64>>,
    /// Versions committed after `built_at`, in commit order.
    overlay: Mutex<Vec<OverlayEntry>>,
}

/// An image's base rows in the order of one index: each live row's full index entry key (as
/// `storage::keys::index_entry_key` encodes it, so the order and the range bounds are the
/// store's) and the row's position in `TableImage::rows`. Rows without an entry (a partial
/// index's predicate is false) are left out, as the store has no entry for them.
#[derive(Default)]
pub struct OrderedIndex {
    /// The entry keys, concatenated in key order (one allocation for the whole index).
    bytes: Vec<u8>,
    /// Per entry: end offset of its key in `bytes` (the start is the previous end), and the
    /// row's position in the base.
    entries: Vec<(u32, u32)>,
}

impl OrderedIndex {
    /// Builds the index from `(key, position)` pairs in any order.
    fn from_pairs(mut pairs: Vec<(Vec<u8>, u32)>) -> Option<OrderedIndex> {
        pairs.sort_unstable();
        let total: usize = pairs.iter().map(|p| p.0.len()).sum();
        // Offsets are u32: an image is far below 4 GiB, but do not wrap if one ever is not.
        u32::try_from(total).ok()?;
        let mut ix = OrderedIndex {
            bytes: Vec::with_capacity(total),
            entries: Vec::with_capacity(pairs.len()),
        };
        for (k, pos) in pairs {
            ix.bytes.extend_from_slice(&k);
            ix.entries.push((ix.bytes.len() as u32, pos));
        }
        Some(ix)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The key of entry `i`.
    pub fn key(&self, i: usize) -> &[u8] {
        let start = if i == 0 {
            0
        } else {
            self.entries[i - 1].0 as usize
        };
        &self.bytes[start..self.entries[i].0 as usize]
    }

    /// The base position of entry `i`'s row.
    pub fn pos(&self, i: usize) -> usize {
        self.entries[i].1 as usize
    }

    /// The first entry whose key is `>= key`.
    pub fn lower_bound(&self, key: &[u8]) -> usize {
        let (mut lo, mut hi) = (0, self.entries.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.key(mid) < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// Computes a row's index entry key from (row id, values); None: the row has no entry.
pub type KeyOf<'a> = dyn FnMut(i64, &[Value]) -> crate::error::Result<Option<Vec<u8>>> + 'a;

/// A view's live overlay versions in one index's order: (entry key, position in the overlay).
pub type OverlayOrder = Vec<(Vec<u8>, usize)>;

/// What an ordered read over a view sees: a base entry (position in the base rows) or an
/// overlay version (position in the view's overlay).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageEntry {
    Base(usize),
    Overlay(usize),
}

/// Positions of an image's base rows by the equality key of some fields (see
/// [`crate::exec::filter::join_key`]).
pub type ImageIndex = rustc_hash::FxHashMap<JoinKey, Vec<u32>>;

/// Positions in a view's overlay by equality key.
type OverlayIndex = rustc_hash::FxHashMap<JoinKey, Vec<usize>>;

impl TableImage {
    pub fn new(
        table_id: u32,
        schema_version: u64,
        built_at: u64,
        valid_from: u64,
        rows: Vec<ImageRow>,
        versions: Vec<u64>,
        bytes: usize,
    ) -> TableImage {
        debug_assert_eq!(rows.len(), versions.len());
        TableImage {
            table_id,
            schema_version,
            built_at,
            valid_from,
            rows,
            versions,
            bytes,
            last_used: AtomicU64::new(0),
            indexes: Mutex::new(HashMap::new()),
            ordered: Mutex::new(HashMap::new()),
            ordered_reads: Mutex::new(HashMap::new()),
            overlay: Mutex::new(Vec::new()),
        }
    }

    /// The ordered index `index_id` over the base rows, built now if this is its first use
    /// (concurrent first users wait for one build); `key_of(row id, values)` gives a row's
    /// entry key (None: the row has no entry).
    fn ordered_index(
        &self,
        index_id: u32,
        key_of: &mut KeyOf<'_>,
        builds: &AtomicU64,
    ) -> crate::error::Result<Option<Arc<OrderedIndex>>> {
        let slot = slot(&self.ordered, &index_id);
        let mut built = slot.lock();
        if let Some(ix) = built.as_ref() {
            return Ok(Some(ix.clone()));
        }
        let mut pairs = Vec::with_capacity(self.rows.len());
        for (pos, (id, _, vals)) in self.rows.iter().enumerate() {
            if let Some(k) = key_of(*id, vals)? {
                pairs.push((k, pos as u32));
            }
        }
        // Too large to order (the slot stays empty; every use would fail the same way, which
        // `from_pairs` finds in one pass over the key sizes).
        let Some(ix) = OrderedIndex::from_pairs(pairs) else {
            return Ok(None);
        };
        builds.fetch_add(1, Ordering::Relaxed);
        let ix = Arc::new(ix);
        *built = Some(ix.clone());
        Ok(Some(ix))
    }

    /// Position of the first base row with id `>= id`.
    fn seek(&self, id: i64) -> usize {
        self.rows.partition_point(|r| r.0 < id)
    }

    /// The equality index on `fields` over the base rows, built now if this is its first use
    /// (concurrent first users wait for one build).
    fn index(&self, fields: &[u32], builds: &AtomicU64) -> Arc<ImageIndex> {
        let slot = slot(&self.indexes, &fields.to_vec());
        let mut built = slot.lock();
        if let Some(ix) = built.as_ref() {
            return ix.clone();
        }
        let mut ix = ImageIndex::default();
        for (pos, (_, _, vals)) in self.rows.iter().enumerate() {
            if let Some(k) = join_key(vals, fields) {
                ix.entry(k).or_default().push(pos as u32);
            }
        }
        builds.fetch_add(1, Ordering::Relaxed);
        let ix = Arc::new(ix);
        *built = Some(ix.clone());
        ix
    }
}

/// What one reader sees of an image: the base plus the overlay versions visible at its
/// snapshot (the newest per row, in row id order).
pub struct ImageView {
    base: Arc<TableImage>,
    /// The cache's count of index builds (`ormdb_table_image_index_builds_total`).
    index_builds: Arc<AtomicU64>,
    overlay: Vec<(i64, Version)>,
    /// Overlay positions by equality key, per field list (built on first lookup).
    overlay_keys: Mutex<HashMap<Vec<u32>, Arc<OverlayIndex>>>,
    /// The live overlay versions in the order of an index, per index id (built on first
    /// ordered read): (entry key, position in `overlay`), sorted by key.
    overlay_ordered: Mutex<HashMap<u32, Arc<OverlayOrder>>>,
}

/// One index's entries of a view, in key order: the base's ordered index (its entries for rows
/// an overlay version replaces are skipped by the reader) and the overlay's live versions.
pub struct OrderedEntries {
    pub base: Arc<OrderedIndex>,
    pub overlay: Arc<OverlayOrder>,
}

impl ImageView {
    fn overlay_pos(&self, id: i64) -> Result<usize, usize> {
        self.overlay.binary_search_by_key(&id, |e| e.0)
    }

    /// Rows with id `>= from` in id order (deleted rows skipped, soft-deleted included).
    pub fn rows_from(&self, from: i64) -> Vec<ImageRow> {
        self.iter_from(from)
            .map(|(id, deleted, vals)| (id, deleted, vals.clone()))
            .collect()
    }

    /// [`Self::rows_from`] without collecting: the rows are borrowed from the view.
    pub fn iter_from(&self, from: i64) -> impl Iterator<Item = (i64, bool, &Arc<Vec<Value>>)> {
        self.versioned_from(from).map(|(id, d, v, _)| (id, d, v))
    }

    /// [`Self::iter_from`] with each row's version token.
    fn versioned_from(
        &self,
        from: i64,
    ) -> impl Iterator<Item = (i64, bool, &Arc<Vec<Value>>, u64)> {
        let first = self.base.seek(from);
        let base = &self.base.rows[first..];
        let versions = &self.base.versions[first..];
        let start = self.overlay_pos(from).unwrap_or_else(|p| p);
        let over = &self.overlay[start..];
        let (mut i, mut j) = (0, 0);
        std::iter::from_fn(move || loop {
            let take_over = match (base.get(i), over.get(j)) {
                (Some(b), Some(o)) if o.0 <= b.0 => {
                    if o.0 == b.0 {
                        i += 1; // the overlay version replaces the base row
                    }
                    true
                }
                (None, Some(_)) => true,
                (Some(_), None) | (Some(_), Some(_)) => false,
                (None, None) => return None,
            };
            if take_over {
                let (id, row) = &over[j];
                j += 1;
                if let Some((deleted, vals, version)) = row {
                    return Some((*id, *deleted, vals, *version));
                }
            } else {
                let (id, deleted, vals) = &base[i];
                let version = versions.get(i).copied().unwrap_or(0);
                i += 1;
                return Some((*id, *deleted, vals, version));
            }
        })
    }

    /// The row with this id (`None`: absent or deleted).
    pub fn get(&self, id: i64) -> Option<ImageRow> {
        self.get_ref(id).map(|(d, v, _)| (id, d, v.clone()))
    }

    /// The row with this id and its version token, borrowed (`None`: absent or deleted).
    pub fn get_ref(&self, id: i64) -> Option<(bool, &Arc<Vec<Value>>, u64)> {
        if let Ok(p) = self.overlay_pos(id) {
            return self.overlay[p].1.as_ref().map(|(d, v, ver)| (*d, v, *ver));
        }
        let i = self.base.seek(id);
        let (rid, d, v) = self.base.rows.get(i)?;
        (*rid == id).then(|| (*d, v, self.base.versions.get(i).copied().unwrap_or(0)))
    }

    /// The entries of one index over this view (see [`OrderedEntries`]); `key_of(row id,
    /// values)` computes a row's entry key. None when the index cannot be kept (too large).
    pub fn ordered_entries(
        &self,
        index_id: u32,
        key_of: &mut KeyOf<'_>,
    ) -> crate::error::Result<Option<OrderedEntries>> {
        let Some(base) = self
            .base
            .ordered_index(index_id, key_of, &self.index_builds)?
        else {
            return Ok(None);
        };
        let cached = self.overlay_ordered.lock().get(&index_id).cloned();
        let overlay = match cached {
            Some(o) => o,
            None => {
                let mut v = Vec::new();
                for (p, (id, row)) in self.overlay.iter().enumerate() {
                    if let Some((_, vals, _)) = row {
                        if let Some(k) = key_of(*id, vals)? {
                            v.push((k, p));
                        }
                    }
                }
                v.sort_unstable();
                let v = Arc::new(v);
                self.overlay_ordered.lock().insert(index_id, v.clone());
                v
            }
        };
        Ok(Some(OrderedEntries { base, overlay }))
    }

    /// Whether ordered reads of `index_id` should use this view: its ordered index exists, or
    /// store reads of that index since the base was built have visited as many rows as the
    /// base holds (then the next read builds it).
    pub fn ordered_ready(&self, index_id: u32) -> bool {
        if slot_built(&self.base.ordered, &index_id) {
            return true;
        }
        let reads = self.base.ordered_reads.lock().get(&index_id).copied();
        reads.unwrap_or(0) >= (self.base.rows.len() as u64).max(64)
    }

    /// Counts rows an ordered read of `index_id` took from the store (see
    /// [`Self::ordered_ready`]).
    pub fn note_ordered_reads(&self, index_id: u32, rows: u64) {
        if rows > 0 && !slot_built(&self.base.ordered, &index_id) {
            *self.base.ordered_reads.lock().entry(index_id).or_insert(0) += rows;
        }
    }

    /// Whether an overlay version replaces (or deletes) the base row with this id.
    pub fn overrides(&self, id: i64) -> bool {
        !self.overlay.is_empty() && self.overlay_pos(id).is_ok()
    }

    /// The row an ordered entry points at: (row id, soft-deleted, values, version token).
    /// None for an overlay deletion (never listed by [`Self::ordered_entries`]).
    pub fn entry_row(&self, e: ImageEntry) -> Option<(i64, bool, &Arc<Vec<Value>>, u64)> {
        match e {
            ImageEntry::Base(p) => {
                let (id, d, v) = self.base.rows.get(p)?;
                Some((*id, *d, v, self.base.versions.get(p).copied().unwrap_or(0)))
            }
            ImageEntry::Overlay(p) => {
                let (id, row) = self.overlay.get(p)?;
                row.as_ref().map(|(d, v, ver)| (*id, *d, v, *ver))
            }
        }
    }

    /// Whether the view is the base alone (no versions committed after it was built).
    pub fn has_no_overlay(&self) -> bool {
        self.overlay.is_empty()
    }

    /// The base rows whose equality key (of the index's fields) is `key`, in id order. Only
    /// the whole answer when [`Self::has_no_overlay`].
    pub fn base_run<'a>(
        &'a self,
        index: &'a ImageIndex,
        key: &JoinKey,
    ) -> impl ExactSizeIterator<Item = &'a ImageRow> + 'a {
        index
            .get(key)
            .map(|v| v.as_slice())
            .unwrap_or(&[])
            .iter()
            .map(|p| &self.base.rows[*p as usize])
    }

    /// Calls `f` for each row whose `fields` have equality key `key`, in id order (deleted
    /// rows skipped, soft-deleted included). Without overlay versions the rows are visited
    /// in place.
    pub fn for_each_match(
        &self,
        index: &ImageIndex,
        fields: &[u32],
        key: &JoinKey,
        mut f: impl FnMut(i64, bool, &Arc<Vec<Value>>) -> crate::error::Result<()>,
    ) -> crate::error::Result<()> {
        let base = index.get(key).map(|v| v.as_slice()).unwrap_or(&[]);
        if self.overlay.is_empty() {
            for p in base {
                let (id, deleted, vals) = &self.base.rows[*p as usize];
                f(*id, *deleted, vals)?;
            }
            return Ok(());
        }
        let mut out: Vec<(i64, bool, &Arc<Vec<Value>>)> = base
            .iter()
            .map(|p| &self.base.rows[*p as usize])
            .filter(|r| self.overlay_pos(r.0).is_err())
            .map(|(id, d, v)| (*id, *d, v))
            .collect();
        let keys = self.overlay_index(fields);
        let before = out.len();
        for p in keys.get(key).map(|v| v.as_slice()).unwrap_or(&[]) {
            if let (id, Some((d, vals, _))) = &self.overlay[*p] {
                out.push((*id, *d, vals));
            }
        }
        if out.len() > before {
            out.sort_by_key(|r| r.0);
        }
        for (id, d, vals) in out {
            f(id, d, vals)?;
        }
        Ok(())
    }

    fn overlay_index(&self, fields: &[u32]) -> Arc<OverlayIndex> {
        let mut m = self.overlay_keys.lock();
        if let Some(ix) = m.get(fields) {
            return ix.clone();
        }
        let mut ix = OverlayIndex::default();
        for (p, (_, row)) in self.overlay.iter().enumerate() {
            if let Some((_, vals, _)) = row {
                if let Some(k) = join_key(vals, fields) {
                    ix.entry(k).or_default().push(p);
                }
            }
        }
        let ix = Arc::new(ix);
        m.insert(fields.to_vec(), ix.clone());
        ix
    }

    /// The base's equality index on `fields`.
    pub fn index(&self, fields: &[u32]) -> Arc<ImageIndex> {
        self.base.index(fields, &self.index_builds)
    }
}

pub fn row_bytes(values: &[Value]) -> usize {
    48 + values.iter().map(|v| 16 + v.size()).sum::<usize>()
}

#[derive(Default)]
struct Inner {
    /// Newest commit that wrote each table (absent: none since open).
    last_write: HashMap<u32, u64>,
    images: HashMap<u32, Arc<TableImage>>,
    bytes: u64,
    /// Image builds under way, at most one per table (see [`TableCache::begin_build`]).
    building: HashMap<u32, Building>,
    /// Identifies the builds in `building` (a finished build removes only its own entry).
    next_build: u64,
}

/// A build of one table's image under way: the commits that write the table while its scan
/// runs are decoded here, under the commit lock like an image's overlay, and become the new
/// image's overlay. So a writer racing the build does not waste it.
struct Building {
    id: u64,
    schema_version: u64,
    /// The builder's snapshot: every commit noted here is above it.
    snapshot: u64,
    overlay: Vec<OverlayEntry>,
    /// A noted commit could not be decoded, or changed the schema: the build is not kept.
    broken: bool,
}

impl Inner {
    fn drop_image(&mut self, table: u32) -> bool {
        match self.images.remove(&table) {
            Some(old) => {
                self.bytes = self.bytes.saturating_sub(old.bytes as u64);
                true
            }
            None => false,
        }
    }
}

pub struct TableCache {
    inner: Mutex<Inner>,
    /// Signalled (with `inner`) whenever a build ends, for readers in `wait_for_build`.
    build_ended: Condvar,
    /// Equality and ordered indexes built over image bases.
    pub index_builds: Arc<AtomicU64>,
    /// Image builds not started because another reader was building the same table's image
    /// (the reader kept reading the store instead).
    pub builds_skipped: AtomicU64,
    /// Completed image builds whose image was not kept (a schema change or too many writes
    /// raced it, or it no longer fit).
    pub builds_discarded: AtomicU64,
    /// CPU time (nanoseconds, of the building threads) spent in image builds, abandoned and
    /// discarded ones included.
    pub build_nanos: AtomicU64,
    /// Bytes of decoded rows kept across all images (0: no images).
    budget: AtomicU64,
    /// Advances on every image read; orders images for eviction.
    clock: AtomicU64,
    /// Per table: rows read from the store (not from an image) since the last image build.
    served: Mutex<HashMap<u32, u64>>,
    pub hits: AtomicU64,
    /// Ordered index range reads served from an image's ordered index.
    pub ordered_reads: AtomicU64,
    /// Completed image builds (complete scans that collected an image, kept or not).
    pub builds: AtomicU64,
    pub invalidations: AtomicU64,
}

impl Default for TableCache {
    fn default() -> Self {
        TableCache {
            inner: Mutex::default(),
            build_ended: Condvar::new(),
            index_builds: Arc::default(),
            builds_skipped: AtomicU64::new(0),
            builds_discarded: AtomicU64::new(0),
            build_nanos: AtomicU64::new(0),
            budget: AtomicU64::new(DEFAULT_BUDGET),
            clock: AtomicU64::new(0),
            served: Mutex::default(),
            hits: AtomicU64::new(0),
            ordered_reads: AtomicU64::new(0),
            builds: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
        }
    }
}

impl TableCache {
    /// Sets the memory budget of the images (0 disables them) and evicts down to it.
    pub fn set_budget(&self, bytes: u64) {
        self.budget.store(bytes, Ordering::Relaxed);
        let mut inner = self.inner.lock();
        while inner.bytes > bytes && evict_lru(&mut inner) {}
    }

    pub fn budget(&self) -> u64 {
        self.budget.load(Ordering::Relaxed)
    }

    /// The largest image kept: half the budget, so one table cannot evict all others.
    pub fn max_image_bytes(&self) -> usize {
        usize::try_from(self.budget() / 2).unwrap_or(usize::MAX)
    }

    /// Records the rows the commit at `ts` writes, as `(table, row id, encoded row)` (under the
    /// commit lock, before the commit becomes visible): updates the write marks and appends to
    /// the overlays of imaged tables and of builds under way. `schema` gives the schema the
    /// rows are written with (asked only when images or builds exist); `schema_changed` drops
    /// every image and spoils every build.
    pub fn note_commit(
        &self,
        ts: u64,
        rows: &[(u32, i64, Vec<u8>)],
        schema_changed: bool,
        schema: impl FnOnce() -> Arc<Schema>,
    ) {
        let mut inner = self.inner.lock();
        for (t, _, _) in rows {
            inner.last_write.insert(*t, ts);
        }
        if inner.images.is_empty() && inner.building.is_empty() {
            return;
        }
        if schema_changed {
            // Images are tied to a schema version; a new one makes them all useless.
            for b in inner.building.values_mut() {
                b.broken = true;
            }
            if !inner.images.is_empty() {
                let tables: Vec<u32> = inner.images.keys().copied().collect();
                for t in tables {
                    inner.drop_image(t);
                }
                self.invalidations.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        let schema = schema();
        let mut tables: Vec<u32> = rows.iter().map(|r| r.0).collect();
        tables.sort_unstable();
        tables.dedup();
        for t in tables {
            let of_t = || rows.iter().filter(move |r| r.0 == t);
            if let Some(b) = inner.building.get_mut(&t) {
                let ok = match schema.entity_by_id(t) {
                    Some(e) if b.schema_version == schema.version() => {
                        debug_assert!(ts > b.snapshot);
                        decode_versions(e, ts, of_t(), &mut b.overlay)
                    }
                    _ => false,
                };
                b.broken |= !ok;
            }
            let Some(img) = inner.images.get(&t).cloned() else {
                continue;
            };
            let mut ok = false;
            if let Some(e) = schema.entity_by_id(t) {
                if img.schema_version == schema.version() {
                    let mut overlay = img.overlay.lock();
                    ok = decode_versions(e, ts, of_t(), &mut overlay)
                        && overlay.len() <= overlay_limit(img.rows.len());
                }
            }
            if !ok && inner.drop_image(t) {
                self.invalidations.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Waits until no build of `table`'s image is under way, for at most `limit`; true when
    /// none is (then the caller looks for the image). A reader that needs a whole table, or
    /// that crossed the ski-rental threshold like the builder, waits rather than reading the
    /// store meanwhile: on a loaded machine the readers that went on reading took the cores
    /// from the builder (16 graph fetches on 2 cores: one 60 ms build then took about a
    /// second, every fetch meanwhile on the slower store path). The limit bounds the wait if
    /// the build is slow; after it the reader reads the store.
    pub fn wait_for_build(&self, table: u32, limit: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        let mut inner = self.inner.lock();
        while inner.building.contains_key(&table) {
            if self
                .build_ended
                .wait_until(&mut inner, deadline)
                .timed_out()
            {
                return !inner.building.contains_key(&table);
            }
        }
        true
    }

    /// Claims the build of `table`'s image at `snapshot` (a complete scan of its committed
    /// rows by the caller, handed to [`BuildTicket::finish`]). One build per table at a time:
    /// None when images are off, when the table has an image of this schema already, when a
    /// commit above `snapshot` wrote the table (the image could not learn of it), or when
    /// another reader is building it; the caller then reads the store, or first waits for that
    /// build ([`Self::wait_for_build`]) when it wanted the whole table.
    pub fn begin_build(
        &self,
        table: u32,
        schema_version: u64,
        snapshot: u64,
    ) -> Option<BuildTicket<'_>> {
        if self.budget() == 0 {
            return None;
        }
        let mut inner = self.inner.lock();
        let valid_from = inner.last_write.get(&table).copied().unwrap_or(0);
        if valid_from > snapshot
            || inner
                .images
                .get(&table)
                .is_some_and(|i| i.schema_version == schema_version)
        {
            return None;
        }
        if inner.building.contains_key(&table) {
            self.builds_skipped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        inner.next_build += 1;
        let id = inner.next_build;
        inner.building.insert(
            table,
            Building {
                id,
                schema_version,
                snapshot,
                overlay: Vec::new(),
                broken: false,
            },
        );
        Some(BuildTicket {
            cache: self,
            table,
            id,
            schema_version,
            snapshot,
            valid_from,
            cpu_start: thread_cpu_nanos(),
            finished: false,
        })
    }

    /// Counts rows of `table` read from the store (not from an image); returns the count
    /// before and after.
    pub fn note_served(&self, table: u32, rows: u64) -> (u64, u64) {
        let mut served = self.served.lock();
        let n = served.entry(table).or_insert(0);
        let before = *n;
        *n += rows;
        (before, *n)
    }

    /// Starts the count of store reads of `table` over (after a build that was not kept: the
    /// next attempt must be paid for by as many reads again).
    pub fn reset_served(&self, table: u32) {
        self.served.lock().remove(&table);
    }

    /// Whether reads of `table` from the store have cost as much as the scan that builds its
    /// image (so building it at most doubles what reading it without one would cost). Writes
    /// do not reset the count: an image survives them through its overlay.
    pub fn wants_image(&self, table: u32, table_rows: u64) -> bool {
        self.budget() > 0
            && table_rows <= MAX_ROWS
            && self
                .served
                .lock()
                .get(&table)
                .is_some_and(|rows| *rows >= table_rows.max(64))
    }

    /// The newest commit known to have written `table` (0: none since open).
    pub fn last_write(&self, table: u32) -> u64 {
        self.inner
            .lock()
            .last_write
            .get(&table)
            .copied()
            .unwrap_or(0)
    }

    /// The view of `table` a reader at `snapshot` may use.
    pub fn get(&self, table: u32, schema_version: u64, snapshot: u64) -> Option<ImageView> {
        let mut img = self.inner.lock().images.get(&table).cloned()?;
        img.last_used.store(
            self.clock.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        if img.schema_version != schema_version || img.valid_from > snapshot {
            return None;
        }
        let entries: Vec<OverlayEntry> = img.overlay.lock().clone();
        // A long overlay that this reader sees whole is folded into a new base (readers older
        // than the newest folded write then fall back to the store).
        if entries.len() >= COMPACT_AT && entries.iter().all(|e| e.0 <= snapshot) {
            if let Some(merged) = self.compact(&img, &entries) {
                img = merged;
                return Some(ImageView {
                    base: img,
                    index_builds: self.index_builds.clone(),
                    overlay: Vec::new(),
                    overlay_keys: Mutex::new(HashMap::new()),
                    overlay_ordered: Mutex::new(HashMap::new()),
                });
            }
        }
        let mut visible: Vec<(i64, Version)> = entries
            .into_iter()
            .filter(|e| e.0 <= snapshot)
            .map(|e| (e.1, e.2))
            .collect();
        // Newest version per row: entries are in commit order, so keep the last one per id.
        visible.reverse();
        visible.sort_by_key(|e| e.0); // stable: the newest stays first per id
        visible.dedup_by_key(|e| e.0);
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(ImageView {
            base: img,
            index_builds: self.index_builds.clone(),
            overlay: visible,
            overlay_keys: Mutex::new(HashMap::new()),
            overlay_ordered: Mutex::new(HashMap::new()),
        })
    }

    /// Folds `entries` (the whole overlay of `img`) into a new image and installs it, unless a
    /// commit appended to the overlay meanwhile.
    fn compact(&self, img: &Arc<TableImage>, entries: &[OverlayEntry]) -> Option<Arc<TableImage>> {
        let newest = entries.iter().map(|e| e.0).max()?;
        let view = ImageView {
            base: img.clone(),
            index_builds: self.index_builds.clone(),
            overlay: {
                let mut v: Vec<(i64, Version)> =
                    entries.iter().map(|e| (e.1, e.2.clone())).collect();
                v.reverse();
                v.sort_by_key(|e| e.0);
                v.dedup_by_key(|e| e.0);
                v
            },
            overlay_keys: Mutex::new(HashMap::new()),
            overlay_ordered: Mutex::new(HashMap::new()),
        };
        let (rows, versions): (Vec<ImageRow>, Vec<u64>) = view
            .versioned_from(i64::MIN)
            .map(|(id, d, v, ver)| ((id, d, v.clone()), ver))
            .unzip();
        let bytes = rows.iter().map(|r| row_bytes(&r.2)).sum();
        let merged = Arc::new(TableImage::new(
            img.table_id,
            img.schema_version,
            newest,
            newest,
            rows,
            versions,
            bytes,
        ));
        merged.last_used.store(
            self.clock.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        let mut inner = self.inner.lock();
        let current = inner.images.get(&img.table_id)?;
        if !Arc::ptr_eq(current, img) || img.overlay.lock().len() != entries.len() {
            return None;
        }
        inner.bytes = inner.bytes.saturating_sub(img.bytes as u64) + merged.bytes as u64;
        inner.images.insert(img.table_id, merged.clone());
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(merged)
    }

    pub fn bytes(&self) -> u64 {
        self.inner.lock().bytes
    }

    /// Images currently kept.
    pub fn images(&self) -> usize {
        self.inner.lock().images.len()
    }
}

/// The claim on one table's image build ([`TableCache::begin_build`]). Dropping it without
/// [`Self::finish`] abandons the build (the scan stopped early or outgrew the size limit).
pub struct BuildTicket<'a> {
    cache: &'a TableCache,
    table: u32,
    id: u64,
    /// The schema the build decodes rows with.
    pub schema_version: u64,
    /// The snapshot the scan must read at.
    pub snapshot: u64,
    /// The newest commit at or below `snapshot` that wrote the table.
    pub valid_from: u64,
    cpu_start: u64,
    finished: bool,
}

impl BuildTicket<'_> {
    /// Installs the image of the scanned rows (in row id order, as of `snapshot`), with the
    /// versions committed during the scan as its overlay; false when it is not kept (a schema
    /// change or too many writes raced the scan, or it does not fit the budget).
    pub fn finish(mut self, rows: Vec<ImageRow>, versions: Vec<u64>, bytes: usize) -> bool {
        self.finished = true;
        let cache = self.cache;
        cache.builds.fetch_add(1, Ordering::Relaxed);
        let mut inner = cache.inner.lock();
        let claim = match inner.building.get(&self.table) {
            Some(b) if b.id == self.id => inner.building.remove(&self.table),
            _ => None,
        };
        // Waiters look for the image once `inner` is released, after it is installed below.
        cache.build_ended.notify_all();
        let budget = cache.budget();
        let Some(claim) = claim.filter(|b| {
            !b.broken
                && budget > 0
                && bytes <= cache.max_image_bytes()
                && b.overlay.len() <= overlay_limit(rows.len())
        }) else {
            cache.builds_discarded.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let img = TableImage::new(
            self.table,
            self.schema_version,
            self.snapshot,
            self.valid_from,
            rows,
            versions,
            bytes,
        );
        *img.overlay.lock() = claim.overlay;
        img.last_used.store(
            cache.clock.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        inner.drop_image(self.table);
        // Evict the least recently read others until the new image fits.
        while inner.bytes + img.bytes as u64 > budget && evict_lru(&mut inner) {}
        inner.bytes += img.bytes as u64;
        cache.served.lock().remove(&self.table);
        inner.images.insert(self.table, Arc::new(img));
        true
    }
}

impl Drop for BuildTicket<'_> {
    fn drop(&mut self) {
        let spent = thread_cpu_nanos().saturating_sub(self.cpu_start);
        self.cache.build_nanos.fetch_add(spent, Ordering::Relaxed);
        if !self.finished {
            let mut inner = self.cache.inner.lock();
            if inner
                .building
                .get(&self.table)
                .is_some_and(|b| b.id == self.id)
            {
                inner.building.remove(&self.table);
                self.cache.build_ended.notify_all();
            }
        }
    }
}

/// CPU time of the calling thread, nanoseconds (0 where the clock is unavailable): a build's
/// cost without the time its thread waited for a core.
fn thread_cpu_nanos() -> u64 {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the timespec it is given and reads nothing else.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0 {
            return ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
        }
    }
    0
}

/// Longest overlay an image of `rows` base rows keeps (past it the image is dropped: readers
/// would merge more than the base saves them).
fn overlay_limit(rows: usize) -> usize {
    (rows / 8).max(256)
}

/// Decodes the row versions one commit at `ts` writes to `e`'s table and appends them to
/// `out`; false when a row does not decode.
fn decode_versions<'a>(
    e: &crate::catalog::EntityDef,
    ts: u64,
    rows: impl Iterator<Item = &'a (u32, i64, Vec<u8>)>,
    out: &mut Vec<OverlayEntry>,
) -> bool {
    for (_, id, bytes) in rows {
        match crate::storage::row_codec::decode_row(bytes) {
            Ok(r) if r.is_tombstone() => out.push((ts, *id, None)),
            Ok(r) => {
                let deleted = r.is_soft_deleted();
                let version = r.version;
                let vals = crate::exec::graph_fetch::full_values(e, r);
                out.push((ts, *id, Some((deleted, Arc::new(vals), version))));
            }
            Err(_) => return false,
        }
    }
    true
}

/// Drops the least recently read image; false when there is none.
fn evict_lru(inner: &mut Inner) -> bool {
    let victim = inner
        .images
        .iter()
        .min_by_key(|(_, img)| img.last_used.load(Ordering::Relaxed))
        .map(|(t, _)| *t);
    victim.is_some_and(|t| inner.drop_image(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds and offers an empty image of `bytes` bytes for `table` at snapshot 10.
    fn put(cache: &TableCache, table: u32, bytes: usize) {
        if let Some(t) = cache.begin_build(table, 1, 10) {
            t.finish(Vec::new(), Vec::new(), bytes);
        }
    }

    /// The schema of a database with one table `items(id, n)`, and the table's id.
    fn items_schema() -> (Arc<Schema>, u32) {
        use crate::{DataType, Database, EntitySpec, FieldDef};
        let db = Database::temporary().expect("db");
        let mut tx = db.connect().begin().expect("begin");
        tx.create_entity(
            &EntitySpec::new("items")
                .id("id")
                .field(FieldDef::new("n", DataType::Integer)),
        )
        .expect("items");
        tx.commit().expect("commit");
        let schema = db.core().latest_schema();
        let id = schema.entity("items").expect("items").id;
        (schema, id)
    }

    /// A commit's write of row `id` of `table` (None: a delete).
    fn write(table: u32, id: i64, n: Option<i64>) -> (u32, i64, Vec<u8>) {
        use crate::storage::row_codec::{encode_row, FLAG_TOMBSTONE};
        let bytes = match n {
            Some(n) => encode_row(0, 1, &[Value::Integer(id), Value::Integer(n)]),
            None => encode_row(FLAG_TOMBSTONE, 1, &[]),
        };
        (table, id, bytes)
    }

    fn row(id: i64, n: i64) -> ImageRow {
        (
            id,
            false,
            Arc::new(vec![Value::Integer(id), Value::Integer(n)]),
        )
    }

    fn n_of(view: &ImageView, id: i64) -> Option<Value> {
        view.get(id).map(|r| r.2[1].clone())
    }

    #[test]
    fn one_build_per_table_keeps_the_commits_that_race_it() {
        let (schema, t) = items_schema();
        let v = schema.version();
        let cache = TableCache::default();
        cache.note_commit(5, &[write(t, 1, Some(10))], false, || schema.clone());
        let ticket = cache.begin_build(t, v, 10).expect("first claim");
        assert_eq!(ticket.valid_from, 5);
        // A second reader does not build the same image; it reads the store meanwhile.
        assert!(cache.begin_build(t, v, 10).is_none());
        assert_eq!(cache.builds_skipped.load(Ordering::Relaxed), 1);
        // Commits while the scan (at snapshot 10) runs: an update, an insert, a delete.
        cache.note_commit(
            11,
            &[write(t, 1, Some(11)), write(t, 3, Some(30))],
            false,
            || schema.clone(),
        );
        cache.note_commit(12, &[write(t, 2, None)], false, || schema.clone());
        assert!(ticket.finish(vec![row(1, 10), row(2, 20)], vec![1, 1], 100));
        assert_eq!(cache.builds.load(Ordering::Relaxed), 1);
        assert_eq!(cache.images(), 1);
        // Every snapshot from valid_from on sees exactly its commits; older ones get nothing.
        assert!(cache.get(t, v, 4).is_none());
        let at = |snap| cache.get(t, v, snap).expect("view");
        let s10 = at(10);
        assert_eq!(n_of(&s10, 1), Some(Value::Integer(10)));
        assert_eq!(n_of(&s10, 2), Some(Value::Integer(20)));
        assert_eq!(n_of(&s10, 3), None);
        assert_eq!(n_of(&at(5), 1), Some(Value::Integer(10)));
        let s11 = at(11);
        assert_eq!(n_of(&s11, 1), Some(Value::Integer(11)));
        assert_eq!(n_of(&s11, 2), Some(Value::Integer(20)));
        assert_eq!(n_of(&s11, 3), Some(Value::Integer(30)));
        let s12 = at(12);
        assert_eq!(n_of(&s12, 2), None);
        assert_eq!(n_of(&s12, 3), Some(Value::Integer(30)));
        // With the image in place nobody builds it again.
        assert!(cache.begin_build(t, v, 12).is_none());
        assert_eq!(cache.builds_skipped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn claims_refuse_old_snapshots_and_schema_changes_spoil_builds() {
        let (schema, t) = items_schema();
        let v = schema.version();
        let cache = TableCache::default();
        cache.note_commit(12, &[write(t, 1, Some(1))], false, || schema.clone());
        // A reader below the newest write could not learn of it through the overlay.
        assert!(cache.begin_build(t, v, 11).is_none());
        // An abandoned build frees the table for the next reader.
        drop(cache.begin_build(t, v, 12).expect("claim"));
        let ticket = cache.begin_build(t, v, 12).expect("claim after abandon");
        cache.note_commit(13, &[], true, || schema.clone());
        assert!(!ticket.finish(vec![row(1, 1)], vec![1], 10));
        assert_eq!(cache.builds_discarded.load(Ordering::Relaxed), 1);
        assert_eq!(cache.images(), 0);
        // Too many writes during the scan: the image would be mostly overlay.
        let ticket = cache.begin_build(t, v, 13).expect("claim");
        for ts in 14..14 + 300 {
            cache.note_commit(ts, &[write(t, ts as i64, Some(0))], false, || {
                schema.clone()
            });
        }
        assert!(!ticket.finish(vec![row(1, 1)], vec![1], 10));
        assert_eq!(cache.builds_discarded.load(Ordering::Relaxed), 2);
        assert_eq!(cache.images(), 0);
        assert!(cache.build_nanos.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn waits_for_a_build_are_bounded_and_end_with_it() {
        use std::time::{Duration, Instant};
        let cache = TableCache::default();
        // No build under way: no wait.
        assert!(cache.wait_for_build(1, Duration::from_secs(10)));
        let ticket = cache.begin_build(1, 1, 10).expect("claim");
        // A build that outlasts the limit: the reader gives up after it.
        let t0 = Instant::now();
        assert!(!cache.wait_for_build(1, Duration::from_millis(30)));
        assert!(t0.elapsed() >= Duration::from_millis(30));
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let ok = cache.wait_for_build(1, Duration::from_secs(30));
                (ok, cache.get(1, 1, 10).is_some())
            });
            std::thread::sleep(Duration::from_millis(20));
            assert!(ticket.finish(Vec::new(), Vec::new(), 10));
            // Woken by the end of the build, with the image installed.
            assert_eq!(waiter.join().expect("waiter"), (true, true));
        });
        // An abandoned build wakes its waiters too.
        cache.set_budget(0);
        cache.set_budget(1000);
        let ticket = cache.begin_build(1, 1, 10).expect("claim");
        std::thread::scope(|s| {
            let waiter = s.spawn(|| cache.wait_for_build(1, Duration::from_secs(30)));
            std::thread::sleep(Duration::from_millis(20));
            drop(ticket);
            assert!(waiter.join().expect("waiter"));
        });
    }

    #[test]
    fn evicts_least_recently_read_image_to_fit_budget() {
        let cache = TableCache::default();
        cache.set_budget(300);
        put(&cache, 1, 100);
        put(&cache, 2, 100);
        put(&cache, 3, 100);
        assert_eq!(cache.images(), 3);
        // Reading 1 makes 2 the least recently used.
        assert!(cache.get(1, 1, 10).is_some());
        put(&cache, 4, 100);
        assert!(cache.get(2, 1, 10).is_none());
        assert!(cache.get(1, 1, 10).is_some());
        assert!(cache.get(3, 1, 10).is_some());
        assert!(cache.get(4, 1, 10).is_some());
        assert_eq!(cache.bytes(), 300);
    }

    #[test]
    fn budget_bounds_single_images_and_zero_disables() {
        let cache = TableCache::default();
        assert_eq!(cache.budget(), DEFAULT_BUDGET);
        cache.set_budget(300);
        // More than half the budget is never kept.
        put(&cache, 1, 151);
        assert_eq!(cache.images(), 0);
        put(&cache, 1, 150);
        put(&cache, 2, 150);
        assert_eq!(cache.bytes(), 300);
        // Shrinking the budget evicts down to it.
        cache.set_budget(200);
        assert_eq!((cache.images(), cache.bytes()), (1, 150));
        cache.set_budget(0);
        assert_eq!((cache.images(), cache.bytes()), (0, 0));
        assert!(!cache.wants_image(1, 10));
        put(&cache, 3, 0);
        assert_eq!(cache.images(), 0);
    }
}
