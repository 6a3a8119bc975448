//! Intermediate representation shared by the layers: expressions today (used by CHECK
//! constraints, defaults and, later, query filters), query/mutation IR as the query engine lands.
//! All IR types are rkyv-archivable so they can be stored in the catalog and sent on the wire.

pub mod expr;

pub use expr::{BinaryOp, Expr, UnaryOp};
