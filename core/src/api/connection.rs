use std::sync::atomic::{AtomicBool, Ordering};

use super::database::Database;
use super::transaction::Transaction;
use crate::error::Result;
use crate::txn::{Txn, TxnOptions};

/// A connection: a handle on a database plus per-connection settings. Connections are cheap;
/// ORMs open several.
pub struct Connection {
    db: Database,
    foreign_keys: AtomicBool,
}

impl Connection {
    pub(crate) fn new(db: Database) -> Connection {
        Connection {
            db,
            foreign_keys: AtomicBool::new(true),
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
        let txn = Txn::begin(self.db.core().clone(), opts)?;
        Ok(Transaction::new(txn, self.db.clone()))
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
                Err(e) if e.state.is_retryable() && n < attempts => {
                    // Retry from a snapshot that includes the commit we conflicted with.
                    self.db
                        .core()
                        .wait_for_committed(std::time::Duration::from_secs(1));
                    continue;
                }
                other => return other,
            }
        }
    }
}
