use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::database::Database;
use super::transaction::Transaction;
use crate::error::Result;
use crate::txn::{Txn, TxnOptions};

/// A connection: a handle on a database plus per-connection settings. Connections are cheap;
/// ORMs open several.
pub struct Connection {
    db: Database,
    foreign_keys: AtomicBool,
    /// Set when a transaction of this connection failed to commit with a serialization
    /// conflict; the next `begin` first waits for the commits in flight (see `begin`).
    conflicted: Arc<AtomicBool>,
}

impl Connection {
    pub(crate) fn new(db: Database) -> Connection {
        Connection {
            db,
            foreign_keys: AtomicBool::new(true),
            conflicted: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Turns foreign key enforcement on or off for transactions begun afterwards (like
    /// `PRAGMA foreign_keys`; on by default).
    pub fn set_foreign_keys(&self, on: bool) {
        self.foreign_keys.store(on, Ordering::Relaxed);
    }

    pub fn foreign_keys(&self) -> bool {
        self.foreign_keys.load(Ordering::Relaxed)
    }

    /// Begins a transaction at the current snapshot.
    pub fn begin(&self) -> Result<Transaction> {
        let opts = TxnOptions {
            foreign_keys: self.foreign_keys(),
        };
        if self.conflicted.swap(false, Ordering::Relaxed) {
            // The retry of a transaction that lost a conflict: a snapshot taken now would miss
            // the commit it lost to whenever that commit is still on its way to disk, and
            // conflict with it again (under steady contention, again and again). Wait until
            // every commit that has taken its timestamp is visible, then take the snapshot.
            self.db.core().wait_for_committed(Duration::from_secs(1));
        }
        let txn = Txn::begin(self.db.core().clone(), opts)?;
        Ok(Transaction::new(
            txn,
            self.db.clone(),
            self.conflicted.clone(),
        ))
    }

    /// Runs `f` in a transaction and commits it, retrying on serialization conflicts (40001) up
    /// to `attempts` times.
    pub fn transact<T>(
        &self,
        attempts: usize,
        mut f: impl FnMut(&mut Transaction) -> Result<T>,
    ) -> Result<T> {
        let mut n = 0;
        loop {
            n += 1;
            let mut tx = self.begin()?;
            let res = f(&mut tx).and_then(|v| tx.commit().map(|_| v));
            match res {
                // `begin` waits for the commit this one conflicted with to become visible.
                Err(e) if e.state.is_retryable() && n < attempts => continue,
                other => return other,
            }
        }
    }
}
