//! Transactions: MVCC snapshots, serializable optimistic concurrency control and the commit
//! pipeline.
//!
//! - Reads run at a snapshot timestamp (the newest commit that is applied *and* durable) and
//!   never block. Writes are buffered in the transaction.
//! - A transaction records what it read: point keys and key ranges (a table scan reads the
//!   table's range, an index lookup the range of the looked-up values).
//! - Commit, under one short lock: fail with 40001 if any transaction that committed after our
//!   snapshot wrote a key we read (FoundationDB-style validation); otherwise take the next commit
//!   timestamp, apply the batch to the store and append it to the commit log. Outside the lock the
//!   committer waits for the group sync, after which the commit becomes visible to new snapshots.
//! - Read-only transactions need no validation: a snapshot is consistent by construction.

pub mod core;
pub mod oracle;
pub mod read_set;
pub mod transaction;

pub use self::core::{DbCore, Durability};
pub use transaction::{Txn, TxnOptions};
