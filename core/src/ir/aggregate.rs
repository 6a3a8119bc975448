//! Aggregate IR: count, sum, avg, min and max over an entity's rows, optionally grouped.
//! (Related-row counts per row are part of [`super::GraphFetch`]: `counts`.)

use rkyv::{Archive, Deserialize, Serialize};
use serde::{Deserialize as SerdeDeserialize, Serialize as SerdeSerialize};

use super::graph::Filter;
use crate::value::Value;

#[derive(
    Debug, Clone, PartialEq, Archive, Serialize, Deserialize, SerdeSerialize, SerdeDeserialize,
)]
#[serde(deny_unknown_fields)]
pub struct Aggregate {
    pub entity: String,
    #[serde(default)]
    pub filter: Option<Filter>,
    #[serde(default)]
    pub group_by: Vec<String>,
    pub measures: Vec<Measure>,
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Archive,
    Serialize,
    Deserialize,
    SerdeSerialize,
    SerdeDeserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum AggFunc {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

#[derive(
    Debug, Clone, PartialEq, Eq, Archive, Serialize, Deserialize, SerdeSerialize, SerdeDeserialize,
)]
#[serde(deny_unknown_fields)]
pub struct Measure {
    pub func: AggFunc,
    /// The field aggregated; `None` only for `count` (counts rows).
    #[serde(default)]
    pub field: Option<String>,
    #[serde(default)]
    pub distinct: bool,
    /// Column name in the result (default `func(field)`).
    #[serde(default)]
    pub alias: Option<String>,
}

impl Measure {
    pub fn count() -> Measure {
        Measure {
            func: AggFunc::Count,
            field: None,
            distinct: false,
            alias: None,
        }
    }
    pub fn of(func: AggFunc, field: &str) -> Measure {
        Measure {
            func,
            field: Some(field.to_string()),
            distinct: false,
            alias: None,
        }
    }
}

impl Aggregate {
    pub fn from_json(json: &str) -> crate::error::Result<Aggregate> {
        serde_json::from_str(json).map_err(|e| {
            crate::error::Error::new(
                crate::error::SqlState::InvalidParameter,
                format!("invalid aggregate JSON: {e}"),
            )
        })
    }
}

/// Group-by columns first, then one column per measure; groups in ascending group key order.
#[derive(Debug, Clone, Default, PartialEq, Archive, Serialize, Deserialize, SerdeSerialize)]
pub struct AggregateResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    pub rows_examined: u64,
}
