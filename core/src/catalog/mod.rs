//! The catalog: schema bundles (entities, fields, identity, defaults, constraints, indexes,
//! foreign keys, soft-delete flags) and the relations derived from foreign keys.
//!
//! A bundle is immutable; every schema change inside a transaction produces a new bundle with the
//! next version number, written at commit under `CATALOG | commit_ts` (rkyv), so the history is
//! kept, readable at any snapshot, and survives restart. [`Schema`] wraps a bundle with the lookup
//! tables the write path needs (by name, by id, incoming foreign keys, relations).

pub mod builder;
pub mod relations;
pub mod schema;

pub use builder::{EntitySpec, ForeignKeySpec, IndexSpec};
pub use relations::{Relation, RelationKind};
pub use schema::*;
