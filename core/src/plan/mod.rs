//! Planning: table statistics, relation resolution, the cost-based graph fetch planner, the plan
//! cache and EXPLAIN rendering. The executor (`exec::graph_fetch`) runs what the planner decides.

pub mod cache;
pub mod explain;
pub mod planner;
pub mod relation;
pub mod stats;

pub use cache::PlanCache;
pub use explain::{Explain, ExplainStep};
pub use planner::{Access, FetchPlan, JoinStrategy, NodePlan};

use crate::observe::QueryMetrics;

/// Per-database query state shared by every connection.
#[derive(Default)]
pub struct QueryState {
    pub stats: stats::StatsStore,
    pub cache: PlanCache,
    pub metrics: QueryMetrics,
    pub tables: crate::exec::table_cache::TableCache,
}
