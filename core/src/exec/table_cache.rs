//! Decoded table images: for read-mostly tables, the rows of a table as of some commit, decoded
//! once and shared by every reader whose snapshot sees exactly that content. A graph fetch's hash
//! joins and identity reads then skip the store (a sled iteration step costs far more than
//! reading a decoded row).
//!
//! Validity is tracked per table with the timestamp of the newest commit that wrote it
//! (`note_writes`, called under the commit lock before the commit's rows reach the store).
//! An image built by a scan at snapshot `s` records `valid_from`, the newest write at or below
//! `s` (known because every commit at or below a snapshot has noted its writes before it became
//! visible), and `built_at = s`. A reader at snapshot `r` may use it when `valid_from <= r` and
//! no commit has written the table since `built_at`; any later write makes the image stale for
//! everyone. Transactions with their own buffered writes to a table never use its image.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::value::Value;

/// Bytes of decoded rows kept across all images.
pub const DEFAULT_BUDGET: usize = 64 << 20;
/// Largest single image.
pub const MAX_IMAGE_BYTES: usize = DEFAULT_BUDGET / 2;
/// Tables larger than this many rows are not imaged.
pub const MAX_ROWS: u64 = 250_000;

pub struct TableImage {
    pub table_id: u32,
    pub schema_version: u64,
    pub built_at: u64,
    pub valid_from: u64,
    /// (row id, soft-deleted, every field), in row id order.
    pub rows: Vec<(i64, bool, Arc<Vec<Value>>)>,
    pub bytes: usize,
    /// Equality indexes over the image, built on first use: key of the fields -> positions in
    /// `rows` (identity order).
    pub indexes: Mutex<HashMap<Vec<u32>, Arc<ImageIndex>>>,
}

/// Positions of an image's rows by the equality key of some fields (see
/// [`crate::exec::filter::key_into`]).
pub type ImageIndex = rustc_hash::FxHashMap<Vec<u8>, Vec<u32>>;

impl TableImage {
    /// Position of the first row with id `>= id`.
    pub fn seek(&self, id: i64) -> usize {
        self.rows.partition_point(|r| r.0 < id)
    }

    pub fn get(&self, id: i64) -> Option<&(i64, bool, Arc<Vec<Value>>)> {
        let i = self.seek(id);
        self.rows.get(i).filter(|r| r.0 == id)
    }

    /// The equality index on `fields`, built now if this is its first use.
    pub fn index(&self, fields: &[u32]) -> Arc<ImageIndex> {
        if let Some(ix) = self.indexes.lock().get(fields) {
            return ix.clone();
        }
        let mut ix = ImageIndex::default();
        let mut k = Vec::new();
        for (pos, (_, _, vals)) in self.rows.iter().enumerate() {
            if crate::exec::filter::key_into(vals, fields, &mut k) {
                ix.entry(k.clone()).or_default().push(pos as u32);
            }
        }
        let ix = Arc::new(ix);
        self.indexes.lock().insert(fields.to_vec(), ix.clone());
        ix
    }
}

pub fn row_bytes(values: &[Value]) -> usize {
    48 + values.iter().map(|v| 16 + v.size()).sum::<usize>()
}

#[derive(Default)]
pub struct TableCache {
    last_write: RwLock<HashMap<u32, u64>>,
    /// Per table: (last write seen, rows read from the store since then).
    served: Mutex<HashMap<u32, (u64, u64)>>,
    images: Mutex<HashMap<u32, Arc<TableImage>>>,
    bytes: AtomicU64,
    pub hits: AtomicU64,
    pub builds: AtomicU64,
    pub invalidations: AtomicU64,
}

impl TableCache {
    /// Records that the commit at `ts` writes `tables` (under the commit lock, before the rows
    /// are applied).
    pub fn note_writes(&self, tables: impl Iterator<Item = u32>, ts: u64) {
        let mut lw = self.last_write.write();
        for t in tables {
            lw.insert(t, ts);
        }
    }

    /// Counts rows of `table` read from the store (not from an image).
    pub fn note_served(&self, table: u32, rows: u64) {
        let lw = self.last_write(table);
        let mut m = self.served.lock();
        let e = m.entry(table).or_insert((lw, 0));
        if e.0 != lw {
            *e = (lw, 0);
        }
        e.1 += rows;
    }

    /// Whether reads of `table` since its last write have cost as much as the scan that builds
    /// its image (so building it at most doubles what reading it without one would cost).
    pub fn wants_image(&self, table: u32, table_rows: u64) -> bool {
        if table_rows > MAX_ROWS {
            return false;
        }
        let lw = self.last_write(table);
        self.served
            .lock()
            .get(&table)
            .is_some_and(|(seen, rows)| *seen == lw && *rows >= table_rows.max(64))
    }

    /// The newest commit known to have written `table` (0: none since open).
    pub fn last_write(&self, table: u32) -> u64 {
        self.last_write.read().get(&table).copied().unwrap_or(0)
    }

    /// An image a reader at `snapshot` may use.
    pub fn get(&self, table: u32, schema_version: u64, snapshot: u64) -> Option<Arc<TableImage>> {
        let img = self.images.lock().get(&table).cloned()?;
        if img.schema_version != schema_version || img.valid_from > snapshot {
            return None;
        }
        if self.last_write(table) > img.built_at {
            if let Some(old) = self.images.lock().remove(&table) {
                self.bytes.fetch_sub(old.bytes as u64, Ordering::Relaxed);
                self.invalidations.fetch_add(1, Ordering::Relaxed);
            }
            return None;
        }
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(img)
    }

    /// Keeps an image built by a complete scan (see the module docs for `valid_from`).
    pub fn put(&self, img: TableImage) {
        let budget = DEFAULT_BUDGET as u64;
        if img.bytes > MAX_IMAGE_BYTES || self.last_write(img.table_id) > img.built_at {
            return;
        }
        let mut images = self.images.lock();
        if let Some(old) = images.remove(&img.table_id) {
            self.bytes.fetch_sub(old.bytes as u64, Ordering::Relaxed);
        }
        // Evict others until the new image fits.
        while self.bytes.load(Ordering::Relaxed) + img.bytes as u64 > budget {
            let Some(&victim) = images.keys().next() else {
                break;
            };
            if let Some(old) = images.remove(&victim) {
                self.bytes.fetch_sub(old.bytes as u64, Ordering::Relaxed);
            }
        }
        self.bytes.fetch_add(img.bytes as u64, Ordering::Relaxed);
        self.builds.fetch_add(1, Ordering::Relaxed);
        images.insert(img.table_id, Arc::new(img));
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn forget(&self, table: u32) {
        if let Some(old) = self.images.lock().remove(&table) {
            self.bytes.fetch_sub(old.bytes as u64, Ordering::Relaxed);
        }
    }
}
