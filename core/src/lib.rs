//! ORMDB: an ORM-native relational database engine.
//!
//! Layers, top to bottom (see docs/ARCHITECTURE.md): [`api`] (the embedded facade every binding
//! calls) -> [`exec`] (mutations with constraints, DDL) -> [`txn`] (MVCC snapshots, optimistic
//! serializable commits, group commit) -> [`storage`] (the `Kv` trait over sled, key layout, row
//! codec, commit log). Beside them: [`catalog`] (schema bundles and relations), [`constraint`],
//! [`changes`] (change log and subscriptions), [`ir`] (expressions), [`observe`] (metrics).
//!
//! ```
//! use ormdb::{Database, EntitySpec, FieldDef, DataType, Value};
//! let db = Database::temporary().unwrap();
//! let conn = db.connect();
//! let mut tx = conn.begin().unwrap();
//! tx.create_entity(&EntitySpec::new("users").id("id").field(FieldDef::new("name", DataType::Text).not_null())).unwrap();
//! let w = tx.insert("users", &[("name", Value::from("ada"))]).unwrap();
//! tx.commit().unwrap();
//! let mut tx = conn.begin().unwrap();
//! assert_eq!(tx.get("users", w.row_id).unwrap().unwrap().values[1], Value::from("ada"));
//! ```

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod api;
pub mod catalog;
pub mod changes;
pub mod constraint;
pub mod error;
pub mod exec;
pub mod ir;
#[cfg(feature = "server")]
pub mod net;
pub mod observe;
pub mod plan;
pub mod sql;
pub mod storage;
pub mod txn;
pub mod value;

pub use api::{
    CommitInfo, Connection, Database, DbInfo, Options, Row, ScanOptions, TableInfo, Transaction,
};
pub use catalog::{
    EntitySpec, FieldDef, FkAction, ForeignKeySpec, IndexSpec, Relation, RelationKind,
};
pub use changes::{ChangeKind, ChangeSet, ChangeToken, Subscription, SubscriptionFilter};
pub use error::{Error, Result, SqlState};
pub use exec::{DeleteMode, DeleteResult, WriteResult};
pub use ir::{
    AggFunc, Aggregate, AggregateResult, BinaryOp, Budget, CmpOp, CreateNode, Cursor, Expr, Filter,
    GraphFetch, GraphResult, Include, Measure, Mutation, MutationOp, MutationResult, NestedCreate,
    Nulls, OrderBy,
};
pub use plan::Explain;
pub use sql::{Params, Session, StatementResult};
pub use txn::Durability;
pub use value::{DataType, Value};
