//! Row heads: an in-memory map from a row to its newest version, for rows whose newest version
//! keeps its value in the value log. A point read that finds its row here reads the value with
//! one `pread` and skips sled's descent (page table, binary searches, LRU bookkeeping), which
//! was most of a point read's cost once rows were large and the store far larger than the
//! cache (BENCHMARKS.md, "Row heads").
//!
//! What a slot holds is exact: the timestamp and pointer of the newest version of the row
//! applied to the store. A reader may use it when that timestamp is at or below its snapshot
//! (every commit up to the snapshot is applied, so no version in between can exist) and is not
//! an aborted commit's; otherwise it reads the store as before. It stays exact because:
//!
//! - every put of a row version updates the slot, keeping the larger timestamp, so commits
//!   applied out of order leave the newest; a put whose value stays in the store (small rows,
//!   tombstones) clears a slot with an older timestamp;
//! - a slot is filled by a reader only with what one seek found as the row's newest version,
//!   and only if nothing was removed or moved in its shard since before that seek (the
//!   shard's epoch): removals (garbage collection) and moves (value log compaction) bump the
//!   epoch under the shard lock after they changed the store, so a fill that raced them is
//!   dropped, while a fill that raced a put loses to the put's larger timestamp;
//! - a removal clears the slot holding the removed version, and a move re-points it.
//!
//! Memory: slots live in pages of [`PAGE_SLOTS`] consecutive row ids (24 bytes a slot, 24 KiB
//! a page), allocated on first use up to a byte budget and kept until the store closes. Row ids
//! are dense in practice (allocated in order), so 1M rows take about 23 MiB.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::RwLock;

use super::vlog::Pointer;

/// Row ids per page.
pub const PAGE_SLOTS: usize = 1024;
const SHARDS: usize = 64;

/// One row's newest version: timestamp 0 means the slot is empty. `loc` packs the pointer's
/// file (high [`FILE_BITS`] bits) and offset (low [`OFFSET_BITS`]); a pointer outside those
/// ranges is never held (see [`fits`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
struct Slot {
    ts: u64,
    loc: u64,
    len: u32,
    crc: u32,
}

const OFFSET_BITS: u32 = 40;
const FILE_BITS: u32 = 64 - OFFSET_BITS;

/// Whether a pointer fits a slot (files below 2^24, offsets below 1 TiB: value log files are
/// sealed at 64 MiB, and every open starts one file).
#[inline]
fn fits(p: &Pointer) -> bool {
    u64::from(p.file) < (1 << FILE_BITS) && p.offset < (1 << OFFSET_BITS)
}

impl Slot {
    fn new(ts: u64, p: &Pointer) -> Slot {
        Slot {
            ts,
            loc: (u64::from(p.file) << OFFSET_BITS) | p.offset,
            len: p.len,
            crc: p.crc,
        }
    }

    fn pointer(&self) -> Pointer {
        Pointer {
            file: (self.loc >> OFFSET_BITS) as u32,
            offset: self.loc & ((1 << OFFSET_BITS) - 1),
            len: self.len,
            crc: self.crc,
        }
    }
}

/// The bytes one page takes.
pub const PAGE_BYTES: usize = PAGE_SLOTS * std::mem::size_of::<Slot>();

type Page = Box<[Slot; PAGE_SLOTS]>;

#[derive(Default)]
struct Shard {
    /// Bumped (under the write lock) by every removal and move in this shard.
    epoch: u64,
    /// The newest timestamp of a version put in this shard whose value stays in the store.
    inline_max: u64,
    pages: HashMap<(u32, i64), Page>,
}

/// Every shard's epoch at one moment (see [`RowHeads::epochs`]).
pub struct Epochs(Vec<u64>);

pub struct RowHeads {
    shards: Box<[RwLock<Shard>]>,
    pages: AtomicUsize,
    max_pages: usize,
    hits: AtomicU64,
}

/// What the row heads hold and did (see `Database::row_head_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowHeadStats {
    /// Bytes allocated to pages.
    pub bytes: u64,
    /// The budget.
    pub budget: u64,
    /// Point reads answered from a row head (one `pread`, no search of the store).
    pub hits: u64,
}

/// Where a row's slot is: its page key and index in the page.
#[inline]
fn locate(table: u32, row: i64) -> ((u32, i64), usize) {
    (
        (table, row >> PAGE_SLOTS.trailing_zeros()),
        (row & (PAGE_SLOTS as i64 - 1)) as usize,
    )
}

#[inline]
fn shard_of(page: (u32, i64)) -> usize {
    let h = (page.0 as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(page.1 as u64);
    (h % SHARDS as u64) as usize
}

impl RowHeads {
    /// A map that allocates at most `budget` bytes of pages (0: none, every lookup misses).
    pub fn new(budget: u64) -> RowHeads {
        RowHeads {
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
            pages: AtomicUsize::new(0),
            max_pages: usize::try_from(budget / PAGE_BYTES as u64).unwrap_or(usize::MAX),
            hits: AtomicU64::new(0),
        }
    }

    fn shard(&self, page: (u32, i64)) -> &RwLock<Shard> {
        &self.shards[shard_of(page)]
    }

    /// The newest version's timestamp and pointer, when known; else the epoch of the row's
    /// shard (see [`RowHeads::epoch`]), read under the same lock, for the seek that follows.
    #[inline]
    pub fn lookup(&self, table: u32, row: i64) -> std::result::Result<(u64, Pointer), u64> {
        let (page, i) = locate(table, row);
        let s = self.shard(page).read();
        match s.pages.get(&page).map(|slots| slots[i]) {
            Some(slot) if slot.ts != 0 => Ok((slot.ts, slot.pointer())),
            _ => Err(s.epoch),
        }
    }

    #[cfg(test)]
    fn get(&self, table: u32, row: i64) -> Option<(u64, Pointer)> {
        self.lookup(table, row).ok()
    }

    /// The epoch of the row's shard, taken before the seek whose result [`RowHeads::fill`] is
    /// given.
    pub fn epoch(&self, table: u32, row: i64) -> u64 {
        self.shard(locate(table, row).0).read().epoch
    }

    /// Every shard's epoch, taken before a scan whose results [`RowHeads::fill_from`] is given.
    pub fn epochs(&self) -> Epochs {
        Epochs(self.shards.iter().map(|s| s.read().epoch).collect())
    }

    /// Whether every page the budget allows is allocated.
    pub fn is_full(&self) -> bool {
        self.pages.load(Ordering::Acquire) >= self.max_pages
    }

    /// Whether another page may be allocated (reserving it).
    fn reserve_page(&self) -> bool {
        self.pages
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_pages).then_some(n + 1)
            })
            .is_ok()
    }

    /// Sets the slot to `(ts, p)` unless it holds a newer version; allocates its page within
    /// the budget. Runs under the shard's write lock. For a put (`put`), an empty slot is only
    /// set when no version newer than `ts` that stays in the store was put in the shard: one
    /// may be this row's newer version, applied before this one, that emptied the slot.
    fn set_max(&self, s: &mut Shard, page: (u32, i64), i: usize, ts: u64, p: &Pointer, put: bool) {
        let inline_max = s.inline_max;
        let slots = match s.pages.get_mut(&page) {
            Some(slots) => slots,
            None => {
                if (put && ts < inline_max) || !self.reserve_page() {
                    return;
                }
                s.pages
                    .entry(page)
                    .or_insert_with(|| Box::new([Slot::default(); PAGE_SLOTS]))
            }
        };
        if slots[i].ts == 0 && put && ts < inline_max {
            return;
        }
        if slots[i].ts <= ts {
            slots[i] = Slot::new(ts, p);
        }
    }

    /// A reader found `(ts, p)` as the row's newest version with a seek started after it took
    /// `epoch`: recorded unless a removal or move in the shard came in between.
    pub fn fill(&self, table: u32, row: i64, epoch: u64, ts: u64, p: &Pointer) {
        let (page, i) = locate(table, row);
        let mut s = self.shard(page).write();
        if s.epoch == epoch && fits(p) {
            self.set_max(&mut s, page, i, ts, p, false);
        }
    }

    /// [`RowHeads::fill`] for rows a scan found, `(table, row, ts, pointer)` in key order, with
    /// the epochs taken before the scan: one lock per run of rows in the same page.
    pub fn fill_from(&self, epochs: &Epochs, rows: &[(u32, i64, u64, Pointer)]) {
        let mut rest = rows;
        while let Some(&(table, row, ..)) = rest.first() {
            let page = locate(table, row).0;
            let n = rest
                .iter()
                .position(|&(t, r, ..)| locate(t, r).0 != page)
                .unwrap_or(rest.len());
            let (run, tail) = rest.split_at(n);
            rest = tail;
            let shard = shard_of(page);
            let mut s = self.shards[shard].write();
            if s.epoch != epochs.0[shard] {
                continue;
            }
            for &(t, r, ts, ref p) in run {
                if fits(p) {
                    self.set_max(&mut s, page, locate(t, r).1, ts, p, false);
                }
            }
        }
    }

    /// A version was put in the store: `Some(pointer)` when its value is in the value log,
    /// `None` when it stays in the store (the slot then cannot answer for the row, nor for a
    /// pointer that does not fit a slot).
    pub fn put(&self, table: u32, row: i64, ts: u64, p: Option<&Pointer>) {
        let (page, i) = locate(table, row);
        let mut s = self.shard(page).write();
        match p.filter(|p| fits(p)) {
            Some(p) => self.set_max(&mut s, page, i, ts, p, true),
            None => {
                // Also drops a racing fill of an older value-log version.
                s.epoch += 1;
                s.inline_max = s.inline_max.max(ts);
                if let Some(slots) = s.pages.get_mut(&page) {
                    if slots[i].ts <= ts {
                        slots[i] = Slot::default();
                    }
                }
            }
        }
    }

    /// The version `ts` of the row was removed from the store.
    pub fn removed(&self, table: u32, row: i64, ts: u64) {
        let (page, i) = locate(table, row);
        let mut s = self.shard(page).write();
        s.epoch += 1;
        if let Some(slots) = s.pages.get_mut(&page) {
            if slots[i].ts == ts {
                slots[i] = Slot::default();
            }
        }
    }

    /// The value of version `ts` of the row moved from `old` to `new` in the value log.
    pub fn moved(&self, table: u32, row: i64, ts: u64, old: &Pointer, new: &Pointer) {
        let (page, i) = locate(table, row);
        let mut s = self.shard(page).write();
        s.epoch += 1;
        if let Some(slots) = s.pages.get_mut(&page) {
            let slot = &mut slots[i];
            if slot.ts == ts && slot.pointer() == *old {
                *slot = if fits(new) {
                    Slot::new(ts, new)
                } else {
                    Slot::default()
                };
            }
        }
    }

    /// Bytes allocated to pages.
    pub fn bytes(&self) -> usize {
        self.pages.load(Ordering::Relaxed) * PAGE_BYTES
    }

    /// Counts a read answered from a slot.
    #[inline]
    pub fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stats(&self) -> RowHeadStats {
        RowHeadStats {
            bytes: self.bytes() as u64,
            budget: (self.max_pages * PAGE_BYTES) as u64,
            hits: self.hits.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ptr(n: u64) -> Pointer {
        Pointer {
            file: n as u32,
            offset: n * 10,
            len: 100,
            crc: n as u32 ^ 7,
        }
    }

    #[test]
    fn slot_is_24_bytes_and_packs_pointers() {
        assert_eq!(std::mem::size_of::<Slot>(), 24);
        assert_eq!(PAGE_BYTES, 24 << 10);
        let p = Pointer {
            file: (1 << FILE_BITS) - 1,
            offset: (1 << OFFSET_BITS) - 1,
            len: u32::MAX,
            crc: 0xDEAD_BEEF,
        };
        assert_eq!(Slot::new(1, &p).pointer(), p);
        // A pointer that does not fit is treated as a value in the store.
        let h = RowHeads::new(1 << 20);
        h.put(1, 1, 5, Some(&p));
        assert_eq!(h.get(1, 1), Some((5, p)));
        let big = Pointer {
            file: 1 << FILE_BITS,
            ..p
        };
        h.put(1, 1, 6, Some(&big));
        assert_eq!(h.get(1, 1), None);
        h.fill(1, 2, h.epoch(1, 2), 6, &big);
        assert_eq!(h.get(1, 2), None);
    }

    #[test]
    fn puts_keep_the_newest_and_inline_puts_clear_older() {
        let h = RowHeads::new(1 << 20);
        assert_eq!(h.get(1, 5), None);
        h.put(1, 5, 10, Some(&ptr(1)));
        h.put(1, 5, 8, Some(&ptr(2))); // applied out of order: older
        assert_eq!(h.get(1, 5), Some((10, ptr(1))));
        h.put(1, 5, 9, None); // older inline version: the slot stays
        assert_eq!(h.get(1, 5), Some((10, ptr(1))));
        h.put(1, 5, 11, None);
        assert_eq!(h.get(1, 5), None);
        // An older value-log version applied after the newer inline one stays out.
        h.put(1, 5, 10, Some(&ptr(5)));
        assert_eq!(h.get(1, 5), None);
        h.put(1, 7, 10, Some(&ptr(5)));
        assert_eq!(
            h.get(1, 7),
            None,
            "conservative: an older put into an empty slot"
        );
        h.put(1, 5, 12, Some(&ptr(6)));
        assert_eq!(h.get(1, 5), Some((12, ptr(6))));
        // Negative ids and other tables have their own slots.
        h.put(1, -5, 3, Some(&ptr(3)));
        h.put(2, 5, 4, Some(&ptr(4)));
        assert_eq!(h.get(1, -5), Some((3, ptr(3))));
        assert_eq!(h.get(2, 5), Some((4, ptr(4))));
        assert_eq!(h.get(1, 5), Some((12, ptr(6))));
    }

    #[test]
    fn fills_lose_to_removals_moves_and_newer_puts() {
        let h = RowHeads::new(1 << 20);
        // A fill that raced a removal in its shard is dropped.
        let e = h.epoch(1, 1);
        h.removed(1, 1, 4);
        h.fill(1, 1, e, 4, &ptr(1));
        assert_eq!(h.get(1, 1), None);
        // A fill that raced a newer put keeps the put.
        let e = h.epoch(1, 1);
        h.put(1, 1, 9, Some(&ptr(9)));
        h.fill(1, 1, e, 4, &ptr(1));
        assert_eq!(h.get(1, 1), Some((9, ptr(9))));
        // A move re-points the version it names only.
        h.moved(1, 1, 8, &ptr(9), &ptr(20));
        assert_eq!(h.get(1, 1), Some((9, ptr(9))));
        h.moved(1, 1, 9, &ptr(9), &ptr(20));
        assert_eq!(h.get(1, 1), Some((9, ptr(20))));
        // A fill that raced the move is dropped (it may hold the old pointer).
        let e = h.epoch(1, 2);
        h.moved(1, 2, 3, &ptr(3), &ptr(30));
        h.fill(1, 2, e, 3, &ptr(3));
        assert_eq!(h.get(1, 2), None);
        let e = h.epoch(1, 2);
        h.fill(1, 2, e, 3, &ptr(30));
        assert_eq!(h.get(1, 2), Some((3, ptr(30))));
        // Removing an older version leaves the slot; removing the newest clears it.
        h.removed(1, 2, 2);
        assert_eq!(h.get(1, 2), Some((3, ptr(30))));
        h.removed(1, 2, 3);
        assert_eq!(h.get(1, 2), None);
    }

    #[test]
    fn a_scan_fill_is_dropped_only_in_shards_that_changed() {
        let h = RowHeads::new(1 << 20);
        let far = PAGE_SLOTS as i64; // the next page: another shard
        assert_ne!(shard_of(locate(1, 0).0), shard_of(locate(1, far).0));
        let epochs = h.epochs();
        h.removed(1, far + 3, 1); // a change in the second page's shard after the epochs
        h.put(1, 1, 9, Some(&ptr(9))); // a newer put in the first page
        let found: Vec<_> = [0, 1, 2, far, far + 1]
            .iter()
            .map(|&r| (1, r, 5, ptr(r as u64 + 1)))
            .collect();
        h.fill_from(&epochs, &found);
        assert_eq!(h.get(1, 0), Some((5, ptr(1))));
        assert_eq!(h.get(1, 1), Some((9, ptr(9))), "the newer put stays");
        assert_eq!(h.get(1, 2), Some((5, ptr(3))));
        assert_eq!(
            h.get(1, far),
            None,
            "its shard changed after the epochs were taken"
        );
        assert_eq!(h.get(1, far + 1), None);
    }

    #[test]
    fn pages_stop_at_the_budget() {
        let h = RowHeads::new(2 * PAGE_BYTES as u64);
        h.put(1, 0, 1, Some(&ptr(1)));
        h.put(1, PAGE_SLOTS as i64, 1, Some(&ptr(1)));
        h.put(1, 2 * PAGE_SLOTS as i64, 1, Some(&ptr(1)));
        assert_eq!(h.bytes(), 2 * PAGE_BYTES);
        assert!(h.get(1, 0).is_some());
        assert!(h.get(1, PAGE_SLOTS as i64).is_some());
        assert_eq!(h.get(1, 2 * PAGE_SLOTS as i64), None);
        // Inline puts never allocate.
        h.put(1, 5 * PAGE_SLOTS as i64, 1, None);
        assert_eq!(h.bytes(), 2 * PAGE_BYTES);
        let off = RowHeads::new(0);
        off.put(1, 0, 1, Some(&ptr(1)));
        assert_eq!(off.get(1, 0), None);
        assert_eq!(off.bytes(), 0);
    }
}
