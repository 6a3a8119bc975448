//! Intermediate representation shared by the layers: scalar expressions (CHECK constraints,
//! defaults, filters), the graph fetch, mutation and aggregate IR, their results, and the wire
//! messages that carry them. All IR types are rkyv-archivable (catalog, plan cache keys, wire)
//! and the request types have a serde JSON form for bindings.

pub mod aggregate;
pub mod expr;
pub mod graph;
pub mod json;
pub mod mutation;
pub mod protocol;
pub mod result;

pub use aggregate::{AggFunc, Aggregate, AggregateResult, Measure};
pub use expr::{BinaryOp, Expr, UnaryOp};
pub use graph::{Budget, CmpOp, Cursor, Filter, GraphFetch, Include, Nulls, OrderBy, Page};
pub use mutation::{
    CreateNode, Mutation, MutationOp, MutationResult, NestedCreate, OpResult, Record,
};
pub use result::{CountBlock, EdgeBlock, EntityBlock, FetchStats, GraphResult};
