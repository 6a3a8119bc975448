//! Storage: a narrow ordered key-value trait ([`Kv`]) with the sled implementation, the key
//! layout of every record kind ([`keys`]), the row codec, and the commit log that is the
//! durability source (sled is applied to without flushing and checkpointed in the background).
//!
//! The `Kv` trait is the seam for another engine later: nothing above this module names sled.

pub mod commit_log;
pub mod keys;
pub mod row_codec;
pub mod row_heads;
mod segment;
pub mod sled_kv;
pub mod vlog;

use crate::error::Result;

/// Bytes returned by the store (cheap to clone; small values are inline).
pub type KvBytes = sled::IVec;

/// A key-value pair from a scan.
pub type KvPair = (KvBytes, KvBytes);

/// An iterator over a key range. Owns what it needs, so it may outlive the borrow of the store.
pub type KvIter = Box<dyn Iterator<Item = Result<KvPair>> + Send>;

/// One operation of an atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// Operations applied atomically: after a crash either all are present or none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub ops: Vec<BatchOp>,
}

impl Batch {
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(BatchOp::Put(key, value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.ops.push(BatchOp::Delete(key));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }
}

/// What the store can tell of a row's newest version (see [`Kv::row_head`]).
#[derive(Debug)]
pub enum RowHead {
    /// The row has no version in the store.
    Absent,
    /// The newest version applied to the store: its commit timestamp and stored value.
    Newest(u64, KvBytes),
}

/// The ordered key-value store under the engine.
pub trait Kv: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<KvBytes>>;
    /// Entries with `start <= key < end`, ascending.
    fn scan(&self, start: &[u8], end: &[u8]) -> KvIter;
    /// [`Kv::scan`] without reading large values back: a value kept in the value log comes as
    /// its pointer (`storage::vlog::Pointer`). For passes that need only keys or small values.
    fn scan_raw(&self, start: &[u8], end: &[u8]) -> KvIter {
        self.scan(start, end)
    }
    /// Entries with `start <= key < end`, descending.
    fn scan_rev(&self, start: &[u8], end: &[u8]) -> KvIter;
    /// The first entry with `start <= key < end`: one seek.
    fn first_in(&self, start: &[u8], end: &[u8]) -> Result<Option<KvPair>>;
    /// The last entry with `start <= key < end`: one seek.
    fn last_in(&self, start: &[u8], end: &[u8]) -> Result<Option<KvPair>>;
    /// The newest version of row `row` of table `table` applied to the store, when the store
    /// can find it faster than a seek from a snapshot (`None`: it cannot; seek). It may be a
    /// version no snapshot sees yet, or an aborted commit's: the caller checks its timestamp.
    fn row_head(&self, _table: u32, _row: i64) -> Result<Option<RowHead>> {
        Ok(None)
    }
    /// Fills the in-memory row heads (see `storage::row_heads`) from the store, for up to
    /// `rows` rows from row key `from` (empty: the first). Returns where to go on, or `None`
    /// when every row was seen or the memory budget is used up. Stores without them: `None`.
    fn warm_row_heads(&self, _from: &[u8], _rows: usize) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }
    /// What the in-memory row heads hold (zeros for stores without them).
    fn row_head_stats(&self) -> row_heads::RowHeadStats {
        row_heads::RowHeadStats::default()
    }
    /// Applies every operation atomically (not necessarily durably: see [`Kv::sync`]).
    fn apply(&self, batch: &Batch) -> Result<()>;
    /// Applies every operation in order, without crash atomicity: after a crash any prefix (or,
    /// for stores without ordered recovery, any subset) may be present. The commit pipeline uses
    /// it because its own log restores atomicity (see `txn::core`).
    fn apply_unordered(&self, batch: &Batch) -> Result<()>;
    /// Makes everything applied so far durable, including against power loss.
    fn sync(&self) -> Result<()>;
    /// Bytes used on disk by the store.
    fn size_on_disk(&self) -> Result<u64>;
    /// Reclaims the space of large values that are no longer referenced (see `storage::vlog`):
    /// when due, or always with `force`. Stores without a value log do nothing.
    fn compact_values(&self, _force: bool) -> Result<vlog::CompactStats> {
        Ok(vlog::CompactStats::default())
    }
}
