//! The embedded API: [`Database`] (open, temporary, subscribe, info, checkpoint, gc),
//! [`Connection`] (per-connection settings such as foreign key enforcement) and [`Transaction`]
//! (reads, writes, DDL, savepoints, commit). Every binding calls this facade; nothing below it is
//! public API.

mod connection;
mod database;
mod query;
mod transaction;

pub use connection::Connection;
pub use database::{Database, DbInfo, Options, TableInfo};
pub use transaction::{CommitInfo, Row, ScanOptions, Transaction};
