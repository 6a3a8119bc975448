//! Timestamps and snapshots: the commit counter, the visible (applied and durable) timestamp,
//! the registry of live snapshots that bounds garbage collection and conflict history, and the
//! recent-writes history that commit validation checks against.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// Keys written by one committed transaction, sorted.
pub struct CommittedWrites {
    pub ts: u64,
    pub keys: Arc<Vec<Vec<u8>>>,
}

pub struct CommitState {
    pub next_ts: u64,
    /// Timestamp of the newest commit that took its timestamp and was logged (it may still be
    /// applying to the store outside the lock).
    pub last_commit: u64,
    /// Commits newer than the oldest live snapshot, in timestamp order.
    pub recent: VecDeque<CommittedWrites>,
    /// Timestamp of the newest commit that changed the schema.
    pub catalog_ts: u64,
}

pub struct Oracle {
    pub commit: Mutex<CommitState>,
    visible: AtomicU64,
    visible_lock: Mutex<()>,
    visible_cv: Condvar,
    snapshots: Mutex<BTreeMap<u64, usize>>,
}

impl Oracle {
    pub fn new(last_ts: u64, catalog_ts: u64) -> Oracle {
        Oracle {
            commit: Mutex::new(CommitState {
                next_ts: last_ts + 1,
                last_commit: last_ts,
                recent: VecDeque::new(),
                catalog_ts,
            }),
            visible: AtomicU64::new(last_ts),
            visible_lock: Mutex::new(()),
            visible_cv: Condvar::new(),
            snapshots: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn visible_ts(&self) -> u64 {
        self.visible.load(Ordering::Acquire)
    }

    /// Makes commits up to `ts` visible to new snapshots and wakes change-stream waiters.
    pub fn advance_visible(&self, ts: u64) {
        if self.visible.fetch_max(ts, Ordering::AcqRel) < ts {
            let _g = self.visible_lock.lock();
            self.visible_cv.notify_all();
        }
    }

    /// Waits until the visible timestamp exceeds `after` or the timeout passes.
    pub fn wait_visible_after(&self, after: u64, timeout: Duration) -> u64 {
        let mut g = self.visible_lock.lock();
        let v = self.visible_ts();
        if v > after {
            return v;
        }
        self.visible_cv.wait_for(&mut g, timeout);
        self.visible_ts()
    }

    /// Wakes every waiter (used on close).
    pub fn wake_all(&self) {
        let _g = self.visible_lock.lock();
        self.visible_cv.notify_all();
    }

    /// Registers a snapshot at the current visible timestamp.
    pub fn begin_snapshot(&self) -> u64 {
        let mut s = self.snapshots.lock();
        let ts = self.visible_ts();
        *s.entry(ts).or_insert(0) += 1;
        ts
    }

    pub fn end_snapshot(&self, ts: u64) {
        let mut s = self.snapshots.lock();
        if let Some(n) = s.get_mut(&ts) {
            *n -= 1;
            if *n == 0 {
                s.remove(&ts);
            }
        }
    }

    /// The oldest timestamp any live or future snapshot may read at.
    pub fn oldest_snapshot(&self) -> u64 {
        let s = self.snapshots.lock();
        let v = self.visible_ts();
        s.keys().next().map_or(v, |&o| o.min(v))
    }

    pub fn live_snapshots(&self) -> usize {
        self.snapshots.lock().values().sum()
    }
}
