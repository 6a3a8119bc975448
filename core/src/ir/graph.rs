//! Graph fetch IR: a root entity set with nested relation includes, each with its own filter,
//! projection, order, per-parent limit and keyset cursor, plus a budget. Also the filter tree
//! (boolean logic, comparisons, IN, LIKE, IS NULL and relation predicates some / every / none).
//!
//! Every type is rkyv-archivable (wire and cache form) and has a serde JSON form for bindings.
//! Names (entities, fields, relations) are resolved against the catalog by the planner, which
//! reports unknown names with 42P01 / 42703.

use rkyv::{Archive, Deserialize, Serialize};
use serde::{Deserialize as SerdeDeserialize, Serialize as SerdeSerialize};

use crate::value::Value;

/// Loads `root` rows and, for each include, the related rows of every loaded parent.
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
pub struct GraphFetch {
    pub root: String,
    #[serde(default)]
    pub filter: Option<Filter>,
    /// Fields to return; `None` returns every field.
    #[serde(default)]
    pub select: Option<Vec<String>>,
    /// Sort keys; the identity is always the final tie-break.
    #[serde(default)]
    pub order: Vec<OrderBy>,
    #[serde(default)]
    pub page: Page,
    #[serde(default)]
    #[rkyv(omit_bounds)]
    pub includes: Vec<Include>,
    /// Relations whose related-row count is returned per root row.
    #[serde(default)]
    pub counts: Vec<String>,
    #[serde(default)]
    pub budget: Option<Budget>,
}

/// Related rows of every parent loaded at the level above.
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
pub struct Include {
    /// A relation of the parent entity, as named by the catalog.
    pub relation: String,
    /// Name of this include in paths and nested results (default: the relation name). Needed
    /// to include one relation twice at the same level (say, with different filters).
    #[serde(default)]
    pub alias: Option<String>,
    #[serde(default)]
    pub filter: Option<Filter>,
    #[serde(default)]
    pub select: Option<Vec<String>>,
    #[serde(default)]
    pub order: Vec<OrderBy>,
    /// At most this many related rows per parent.
    #[serde(default)]
    pub limit: Option<u64>,
    /// Per parent, only related rows after this position (in `order`, identity tie-break).
    #[serde(default)]
    pub after: Option<Cursor>,
    #[serde(default)]
    #[rkyv(omit_bounds)]
    pub includes: Vec<Include>,
    #[serde(default)]
    pub counts: Vec<String>,
}

impl Include {
    pub fn new(relation: &str) -> Include {
        Include {
            relation: relation.to_string(),
            alias: None,
            filter: None,
            select: None,
            order: Vec::new(),
            limit: None,
            after: None,
            includes: Vec::new(),
            counts: Vec::new(),
        }
    }
    pub fn alias(mut self, name: &str) -> Self {
        self.alias = Some(name.to_string());
        self
    }
    pub fn filter(mut self, f: Filter) -> Self {
        self.filter = Some(f);
        self
    }
    pub fn select(mut self, fields: &[&str]) -> Self {
        self.select = Some(fields.iter().map(|s| s.to_string()).collect());
        self
    }
    pub fn order(mut self, o: OrderBy) -> Self {
        self.order.push(o);
        self
    }
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }
    pub fn after(mut self, c: Cursor) -> Self {
        self.after = Some(c);
        self
    }
    pub fn include(mut self, i: Include) -> Self {
        self.includes.push(i);
        self
    }
    pub fn count(mut self, relation: &str) -> Self {
        self.counts.push(relation.to_string());
        self
    }
}

impl GraphFetch {
    pub fn new(root: &str) -> GraphFetch {
        GraphFetch {
            root: root.to_string(),
            filter: None,
            select: None,
            order: Vec::new(),
            page: Page::default(),
            includes: Vec::new(),
            counts: Vec::new(),
            budget: None,
        }
    }
    pub fn filter(mut self, f: Filter) -> Self {
        self.filter = Some(f);
        self
    }
    pub fn select(mut self, fields: &[&str]) -> Self {
        self.select = Some(fields.iter().map(|s| s.to_string()).collect());
        self
    }
    pub fn order(mut self, o: OrderBy) -> Self {
        self.order.push(o);
        self
    }
    pub fn limit(mut self, n: u64) -> Self {
        self.page.limit = Some(n);
        self
    }
    pub fn offset(mut self, n: u64) -> Self {
        self.page.offset = n;
        self
    }
    pub fn after(mut self, c: Cursor) -> Self {
        self.page.after = Some(c);
        self
    }
    pub fn include(mut self, i: Include) -> Self {
        self.includes.push(i);
        self
    }
    pub fn count(mut self, relation: &str) -> Self {
        self.counts.push(relation.to_string());
        self
    }
    pub fn budget(mut self, b: Budget) -> Self {
        self.budget = Some(b);
        self
    }

    /// Parses the JSON form (what bindings send).
    pub fn from_json(json: &str) -> crate::error::Result<GraphFetch> {
        serde_json::from_str(json).map_err(|e| {
            crate::error::Error::new(
                crate::error::SqlState::InvalidParameter,
                format!("invalid graph fetch JSON: {e}"),
            )
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
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
pub enum Nulls {
    First,
    Last,
}

#[derive(
    Debug, Clone, PartialEq, Eq, Archive, Serialize, Deserialize, SerdeSerialize, SerdeDeserialize,
)]
#[serde(deny_unknown_fields)]
pub struct OrderBy {
    pub field: String,
    #[serde(default)]
    pub desc: bool,
    /// Where NULLs go; SQLite's default is first for ascending, last for descending.
    #[serde(default)]
    pub nulls: Option<Nulls>,
}

impl OrderBy {
    pub fn asc(field: &str) -> OrderBy {
        OrderBy {
            field: field.to_string(),
            desc: false,
            nulls: None,
        }
    }
    pub fn desc(field: &str) -> OrderBy {
        OrderBy {
            field: field.to_string(),
            desc: true,
            nulls: None,
        }
    }
    pub fn nulls(mut self, n: Nulls) -> Self {
        self.nulls = Some(n);
        self
    }
}

/// Root pagination: a limit, a keyset cursor (rows strictly after it) and an offset (capped by
/// the budget's `max_offset`; prefer cursors).
#[derive(
    Debug,
    Clone,
    Default,
    PartialEq,
    Archive,
    Serialize,
    Deserialize,
    SerdeSerialize,
    SerdeDeserialize,
)]
#[serde(deny_unknown_fields)]
pub struct Page {
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub after: Option<Cursor>,
    #[serde(default)]
    pub offset: u64,
}

/// A keyset position: the sort-key values of the last row returned, then its identity. In JSON
/// it is an opaque string token.
#[derive(Debug, Clone, PartialEq, Archive, Serialize, Deserialize)]
pub struct Cursor {
    pub values: Vec<Value>,
    pub id: i64,
}

impl Cursor {
    /// The opaque token form: hex of the CRC-32 (little-endian) of the rkyv bytes, then the
    /// bytes. rkyv reads from the end of a buffer, so the checksum is what refuses a truncated
    /// or altered token instead of reading it as another position.
    pub fn to_token(&self) -> String {
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(self)
            .map(|b| b.to_vec())
            .unwrap_or_default();
        let mut s = String::with_capacity(8 + bytes.len() * 2);
        for b in crc32fast::hash(&bytes).to_le_bytes().iter().chain(&bytes) {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    pub fn from_token(token: &str) -> crate::error::Result<Cursor> {
        let bad = || {
            crate::error::Error::new(
                crate::error::SqlState::InvalidParameter,
                format!("invalid cursor token {token:?}"),
            )
        };
        if !token.len().is_multiple_of(2) || token.len() < 8 || token.len() > 1 << 20 {
            return Err(bad());
        }
        let bytes: Vec<u8> = (0..token.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(token.get(i..i + 2).unwrap_or("zz"), 16))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad())?;
        let (crc, payload) = bytes.split_at(4);
        if crc32fast::hash(payload).to_le_bytes() != crc {
            return Err(bad());
        }
        rkyv::from_bytes::<Cursor, rkyv::rancor::Error>(payload).map_err(|_| bad())
    }
}

impl SerdeSerialize for Cursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_token())
    }
}

impl<'de> SerdeDeserialize<'de> for Cursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Cursor, D::Error> {
        let s = String::deserialize(d)?;
        Cursor::from_token(&s).map_err(serde::de::Error::custom)
    }
}

/// Hard limits on one fetch, enforced while it executes. Exceeding one fails with 54000 naming
/// it. Defaults are generous; set tighter ones per query.
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
#[serde(default, deny_unknown_fields)]
pub struct Budget {
    /// Include nesting depth (the root is depth 0).
    pub max_depth: u32,
    /// Related rows returned for one parent in one relation.
    pub max_fanout: u64,
    /// Rows returned in total (root and includes, counted per occurrence).
    pub max_rows: u64,
    /// Parent/child pairs returned in total.
    pub max_edges: u64,
    /// Wall-clock time in milliseconds.
    pub max_time_ms: u64,
    /// Largest root offset accepted.
    pub max_offset: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_depth: 16,
            max_fanout: 1_000_000,
            max_rows: 1_000_000,
            max_edges: 1_000_000,
            max_time_ms: 30_000,
            max_offset: 100_000,
        }
    }
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
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A boolean filter over one entity's rows, with SQLite's three-valued logic. Literal values
/// take the compared field's affinity, as SQLite does when a column meets a constant.
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
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Filter {
    And(#[rkyv(omit_bounds)] Vec<Filter>),
    Or(#[rkyv(omit_bounds)] Vec<Filter>),
    Not(#[rkyv(omit_bounds)] Box<Filter>),
    Cmp {
        field: String,
        op: CmpOp,
        value: Value,
    },
    In {
        field: String,
        values: Vec<Value>,
        #[serde(default)]
        negated: bool,
    },
    /// SQLite LIKE (ASCII case-insensitive, `%` and `_`).
    Like {
        field: String,
        pattern: String,
        #[serde(default)]
        escape: Option<char>,
        #[serde(default)]
        negated: bool,
    },
    IsNull {
        field: String,
        #[serde(default)]
        negated: bool,
    },
    /// At least one related row matches (`filter` absent: at least one related row exists).
    Some {
        relation: String,
        #[serde(default)]
        #[rkyv(omit_bounds)]
        filter: Option<Box<Filter>>,
    },
    /// Every related row matches (true when there are none).
    Every {
        relation: String,
        #[serde(default)]
        #[rkyv(omit_bounds)]
        filter: Option<Box<Filter>>,
    },
    /// No related row matches.
    None {
        relation: String,
        #[serde(default)]
        #[rkyv(omit_bounds)]
        filter: Option<Box<Filter>>,
    },
}

impl Filter {
    pub fn cmp(field: &str, op: CmpOp, value: impl Into<Value>) -> Filter {
        Filter::Cmp {
            field: field.to_string(),
            op,
            value: value.into(),
        }
    }
    pub fn eq(field: &str, value: impl Into<Value>) -> Filter {
        Filter::cmp(field, CmpOp::Eq, value)
    }
    pub fn in_list(field: &str, values: Vec<Value>) -> Filter {
        Filter::In {
            field: field.to_string(),
            values,
            negated: false,
        }
    }
    pub fn is_null(field: &str) -> Filter {
        Filter::IsNull {
            field: field.to_string(),
            negated: false,
        }
    }
    pub fn like(field: &str, pattern: &str) -> Filter {
        Filter::Like {
            field: field.to_string(),
            pattern: pattern.to_string(),
            escape: None,
            negated: false,
        }
    }
    pub fn some(relation: &str, f: Option<Filter>) -> Filter {
        Filter::Some {
            relation: relation.to_string(),
            filter: f.map(Box::new),
        }
    }
    pub fn every(relation: &str, f: Option<Filter>) -> Filter {
        Filter::Every {
            relation: relation.to_string(),
            filter: f.map(Box::new),
        }
    }
    pub fn none(relation: &str, f: Option<Filter>) -> Filter {
        Filter::None {
            relation: relation.to_string(),
            filter: f.map(Box::new),
        }
    }
    pub fn and(fs: Vec<Filter>) -> Filter {
        Filter::And(fs)
    }
    pub fn or(fs: Vec<Filter>) -> Filter {
        Filter::Or(fs)
    }
    #[allow(clippy::should_implement_trait)]
    pub fn not(f: Filter) -> Filter {
        Filter::Not(Box::new(f))
    }
}
