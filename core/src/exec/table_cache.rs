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
}

impl TableImage {
    /// Position of the first row with id `>= id`.
    pub fn seek(&self, id: i64) -> usize {
        self.rows.partition_point(|r| r.0 < id)
    }

    pub fn get(&self, id: i64) -> Option<&(i64, bool, Arc<Vec<Value>>)> {
        let i = self.seek(id);
        self.rows.get(i).filter(|r| r.0 == id)
    }
}

pub fn row_bytes(values: &[Value]) -> usize {
    48 + values.iter().map(|v| 16 + v.size()).sum::<usize>()
}

#[derive(Default)]
pub struct TableCache {
    last_write: RwLock<HashMap<u32, u64>>,
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
        if img.bytes as u64 > budget / 2 || self.last_write(img.table_id) > img.built_at {
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
