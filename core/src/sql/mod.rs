//! The SQL front end: SQLite-flavoured SQL text (as the ORMs emit it) compiled against the
//! catalog and executed inside a [`Transaction`](crate::Transaction).
//!
//! Flow: [`session::Session::execute`] splits the text into statements ([`parse`]), answers
//! PRAGMAs itself ([`pragma`]), parses the rest with sqlparser (SQLiteDialect), binds parameters
//! ([`params`]), compiles expressions against scopes ([`compile`]) and runs queries ([`query`]),
//! writes ([`dml`]) and schema changes ([`ddl`]). `sqlite_master` and the introspection PRAGMAs
//! are answered from the catalog ([`catalog_emulation`]), `sqlite_sequence` from the
//! AUTOINCREMENT marks ([`sequence`]). Scalar functions live in
//! [`functions`] and [`json`]; applications add their own through [`udf`]. Anything not
//! supported fails with 0A000 naming the construct: never a silently different answer.

pub mod catalog_emulation;
pub mod compile;
pub mod ddl;
pub mod dml;
pub mod eval;
pub mod explain;
pub mod functions;
pub mod functions_django;
pub mod json;
pub mod params;
pub mod parse;
pub mod pragma;
pub mod query;
pub mod sequence;
pub mod session;
pub mod temp;
pub mod user_functions;
pub mod view;

pub use params::Params;
pub use session::{
    clear_shared_parse_cache, shared_parse_cache_stats, PreparedStatement, Session, StatementResult,
};
pub use user_functions::{AggregateFn, ScalarFn, UserAggregate, UserFunction, UserFunctions};
