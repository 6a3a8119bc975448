//! Execution: the mutation executor (inserts, updates, deletes with constraint enforcement and
//! foreign key actions), DDL, the graph fetch executor with its compiled filters, aggregates and
//! the mutation IR runner.

pub mod aggregate;
pub mod ddl;
pub mod filter;
pub mod graph_fetch;
pub mod mutate;
pub mod mutation_ir;
pub mod table_cache;

pub use mutate::{DeleteMode, DeleteResult, WriteResult};
