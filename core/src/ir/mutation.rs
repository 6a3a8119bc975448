//! Mutation IR: batches of inserts, updates, deletes and upserts, and nested creates that fill
//! foreign keys from the created parent. A [`Mutation`] runs in one transaction: all of its
//! operations commit together or not at all.

use std::collections::BTreeMap;

use rkyv::{Archive, Deserialize, Serialize};
use serde::{Deserialize as SerdeDeserialize, Serialize as SerdeSerialize};

use super::graph::Filter;
use crate::value::Value;

/// Field name -> value.
pub type Record = BTreeMap<String, Value>;

#[derive(
    Debug, Clone, PartialEq, Archive, Serialize, Deserialize, SerdeSerialize, SerdeDeserialize,
)]
#[serde(deny_unknown_fields)]
pub struct Mutation {
    pub ops: Vec<MutationOp>,
}

#[derive(
    Debug, Clone, PartialEq, Archive, Serialize, Deserialize, SerdeSerialize, SerdeDeserialize,
)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum MutationOp {
    Insert {
        entity: String,
        rows: Vec<Record>,
    },
    /// Sets `set` on every row matching `filter` (all rows when absent).
    Update {
        entity: String,
        #[serde(default)]
        filter: Option<Filter>,
        set: Record,
    },
    Delete {
        entity: String,
        #[serde(default)]
        filter: Option<Filter>,
    },
    /// Inserts each row, or when a row with the same values in `on` (a unique key) exists,
    /// updates the fields named in `update` (every given field when absent).
    Upsert {
        entity: String,
        on: Vec<String>,
        rows: Vec<Record>,
        #[serde(default)]
        update: Option<Vec<String>>,
    },
    /// Creates a row and, through one-to-many / one-to-one relations, related rows whose
    /// foreign keys point at it.
    Create(CreateNode),
}

#[derive(
    Debug, Clone, PartialEq, Archive, Serialize, Deserialize, SerdeSerialize, SerdeDeserialize,
)]
#[rkyv(serialize_bounds(
    __S: rkyv::ser::Writer + rkyv::ser::Allocator,
    __S::Error: rkyv::rancor::Source,
))]
#[rkyv(deserialize_bounds(__D::Error: rkyv::rancor::Source))]
#[rkyv(bytecheck(bounds(
    __C: rkyv::validation::ArchiveContext,
    __C::Error: rkyv::rancor::Source,
)))]
#[serde(deny_unknown_fields)]
pub struct CreateNode {
    pub entity: String,
    pub values: Record,
    #[serde(default)]
    #[rkyv(omit_bounds)]
    pub nested: Vec<NestedCreate>,
}

#[derive(
    Debug, Clone, PartialEq, Archive, Serialize, Deserialize, SerdeSerialize, SerdeDeserialize,
)]
#[rkyv(serialize_bounds(
    __S: rkyv::ser::Writer + rkyv::ser::Allocator,
    __S::Error: rkyv::rancor::Source,
))]
#[rkyv(deserialize_bounds(__D::Error: rkyv::rancor::Source))]
#[rkyv(bytecheck(bounds(
    __C: rkyv::validation::ArchiveContext,
    __C::Error: rkyv::rancor::Source,
)))]
#[serde(deny_unknown_fields)]
pub struct NestedCreate {
    /// A to-many (or inverse one-to-one) relation of the parent node's entity.
    pub relation: String,
    /// Values of the related rows; the foreign key fields are filled in.
    #[rkyv(omit_bounds)]
    pub rows: Vec<CreateNode>,
}

impl Mutation {
    pub fn from_json(json: &str) -> crate::error::Result<Mutation> {
        serde_json::from_str(json).map_err(|e| {
            crate::error::Error::new(
                crate::error::SqlState::InvalidParameter,
                format!("invalid mutation JSON: {e}"),
            )
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Archive, Serialize, Deserialize, SerdeSerialize)]
pub struct MutationResult {
    /// One entry per operation, in order.
    pub ops: Vec<OpResult>,
    /// The commit's change token.
    pub token: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Archive, Serialize, Deserialize, SerdeSerialize)]
pub struct OpResult {
    /// Rows inserted, updated or deleted (a nested create counts every row it created).
    pub affected: u64,
    /// Identities of the rows written, in operation order (for a nested create: the root row
    /// first, then its related rows depth first).
    pub ids: Vec<i64>,
}
