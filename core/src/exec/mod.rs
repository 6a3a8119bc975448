//! Execution: the mutation executor (inserts, updates, deletes with constraint enforcement and
//! foreign key actions). Query operators and graph fetch join it as the query engine lands.

pub mod ddl;
pub mod mutate;

pub use mutate::{DeleteMode, DeleteResult, WriteResult};
