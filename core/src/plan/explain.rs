//! EXPLAIN for graph fetches: one step per plan node (root, includes) with its access path or
//! join strategy, estimated rows and cost, and the budget; EXPLAIN ANALYZE adds what the run
//! actually did per step (rows, rows examined, lookups, time, strategies used).

use std::fmt::Write;

use serde::Serialize;

use super::planner::{FetchPlan, NodePlan};
use crate::catalog::Schema;
use crate::exec::graph_fetch::StepActual;
use crate::ir::result::FetchStats;

#[derive(Debug, Clone, Serialize)]
pub struct ExplainStep {
    pub id: usize,
    pub depth: u32,
    /// Relation path ("" for the root).
    pub path: String,
    pub entity: String,
    /// "root" or "include".
    pub kind: String,
    /// Root: the access path. Include: relation, key fields and strategy per hop.
    pub access: String,
    pub est_rows: f64,
    pub est_cost: f64,
    pub relation_predicates: usize,
    pub counts: Vec<String>,
    pub actual: Option<ActualStep>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActualStep {
    pub rows: u64,
    pub examined: u64,
    pub lookups: u64,
    pub time_us: u64,
    pub strategies: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Explain {
    pub steps: Vec<ExplainStep>,
    pub budget: crate::ir::graph::Budget,
    pub plan_cached: bool,
    pub schema_version: u64,
    /// Present for EXPLAIN ANALYZE.
    pub stats: Option<FetchStats>,
    pub text: String,
}

pub fn explain(
    plan: &FetchPlan,
    schema: &Schema,
    plan_cached: bool,
    actual: Option<(&[StepActual], &FetchStats)>,
) -> Explain {
    let mut steps = Vec::new();
    fn walk(
        n: &NodePlan,
        schema: &Schema,
        steps: &mut Vec<ExplainStep>,
        actual: Option<&[StepActual]>,
    ) {
        let id = steps.len();
        let e = schema.entity_at(n.entity_pos);
        let access = match &n.rel {
            None => {
                let mut s = n.access.describe(e);
                if n.id_order && matches!(n.access, super::Access::Scan) {
                    s.push_str(" in identity order (stops at the limit)");
                }
                s
            }
            Some(rel) => {
                let hops: Vec<String> = rel
                    .hops
                    .iter()
                    .zip(&n.strategies)
                    .map(|(h, st)| {
                        let t = schema.entity_at(h.target_pos);
                        let how = if h.target_rowid {
                            "identity".to_string()
                        } else if let Some(ix) = h
                            .target_index
                            .and_then(|i| t.indexes.iter().find(|x| x.id == i))
                        {
                            format!("index {}", ix.name)
                        } else {
                            "no index".to_string()
                        };
                        format!(
                            "{}({}) by {} [{how}]",
                            t.name,
                            super::relation::names(t, &h.target_fields),
                            st.name()
                        )
                    })
                    .collect();
                format!(
                    "{} {} via {}: {}",
                    super::relation::kind_name(rel.kind),
                    rel.name,
                    rel.via,
                    hops.join(" -> ")
                )
            }
        };
        steps.push(ExplainStep {
            id,
            depth: n.depth,
            path: n.path.clone(),
            entity: n.entity.clone(),
            kind: if n.rel.is_none() { "root" } else { "include" }.into(),
            access,
            est_rows: (n.est_rows * 10.0).round() / 10.0,
            est_cost: (n.est_cost * 10.0).round() / 10.0,
            relation_predicates: n.relation_predicates,
            counts: n.counts.iter().map(|c| c.name.clone()).collect(),
            actual: actual.and_then(|a| a.get(id)).map(|a| ActualStep {
                rows: a.rows,
                examined: a.examined,
                lookups: a.lookups,
                time_us: a.time_us,
                strategies: a.strategies.iter().map(|s| s.name().to_string()).collect(),
            }),
        });
        for c in &n.children {
            walk(c, schema, steps, actual);
        }
    }
    walk(&plan.root, schema, &mut steps, actual.map(|a| a.0));
    let b = plan.budget;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "GraphFetch {} (schema v{}, plan {})",
        plan.root.entity,
        plan.schema_version,
        if plan_cached { "cached" } else { "new" }
    );
    let _ = writeln!(
        text,
        "  budget: depth {}, fanout {}, rows {}, edges {}, time {} ms, offset {}",
        b.max_depth, b.max_fanout, b.max_rows, b.max_edges, b.max_time_ms, b.max_offset
    );
    for s in &steps {
        let indent = "  ".repeat(s.depth as usize + 1);
        let label = if s.path.is_empty() {
            format!("root {}", s.entity)
        } else {
            format!("include {} -> {}", s.path, s.entity)
        };
        let _ = write!(
            text,
            "{indent}#{} {label}: {} (est rows {}, cost {})",
            s.id, s.access, s.est_rows, s.est_cost
        );
        if s.relation_predicates > 0 {
            let _ = write!(
                text,
                ", {} relation predicate(s) as semi-joins",
                s.relation_predicates
            );
        }
        if !s.counts.is_empty() {
            let _ = write!(text, ", counts {}", s.counts.join(", "));
        }
        if let Some(a) = &s.actual {
            let _ = write!(
                text,
                "\n{indent}   actual: rows {}, examined {}, lookups {}, time {} us",
                a.rows, a.examined, a.lookups, a.time_us
            );
            if !a.strategies.is_empty() {
                let _ = write!(text, ", {}", a.strategies.join(" -> "));
            }
        }
        text.push('\n');
    }
    if let Some((_, st)) = actual {
        let _ = writeln!(
            text,
            "  total: rows {}/{}, edges {}/{}, lookups {}, examined {}, max fanout {}/{}, time {} us/{} ms",
            st.rows, b.max_rows, st.edges, b.max_edges, st.lookups, st.rows_examined, st.max_fanout, b.max_fanout, st.time_us, b.max_time_ms
        );
    }
    Explain {
        steps,
        budget: b,
        plan_cached,
        schema_version: plan.schema_version,
        stats: actual.map(|a| a.1.clone()),
        text,
    }
}
