//! Query metrics: graph fetches, aggregates and mutations run, internal lookups, rows, edges,
//! the largest fanout seen, plan cache hits and misses, and latency histograms.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the latency buckets, in microseconds.
pub const LATENCY_BUCKETS_US: &[u64] = &[
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
    5_000_000,
];

/// A fixed-bucket latency histogram (Prometheus semantics: cumulative on export).
#[derive(Debug)]
pub struct Histogram {
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..=LATENCY_BUCKETS_US.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe_us(&self, us: u64) {
        let i = LATENCY_BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (i, b) in LATENCY_BUCKETS_US.iter().enumerate() {
            cum += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{}\"}} {cum}",
                *b as f64 / 1_000_000.0
            );
        }
        cum += self.buckets[LATENCY_BUCKETS_US.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cum}");
        let _ = writeln!(
            out,
            "{name}_sum {}\n{name}_count {}",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1_000_000.0,
            self.count()
        );
    }
}

#[derive(Debug, Default)]
pub struct QueryMetrics {
    pub fetches: AtomicU64,
    pub aggregates: AtomicU64,
    pub mutations: AtomicU64,
    pub lookups: AtomicU64,
    pub rows: AtomicU64,
    pub edges: AtomicU64,
    pub rows_examined: AtomicU64,
    pub budget_rejections: AtomicU64,
    /// Largest fanout (related rows for one parent) any fetch returned.
    pub max_fanout: AtomicU64,
    /// SQL statements executed through sessions, and their statement cache lookups.
    pub sql_statements: AtomicU64,
    pub sql_cache_hits: AtomicU64,
    pub sql_cache_misses: AtomicU64,
    /// Compiled SQL query plans: reused, compiled (not cached, or cached for an older schema
    /// or function set), and the subset of misses that replaced a stale plan.
    pub sql_plan_hits: AtomicU64,
    pub sql_plan_misses: AtomicU64,
    pub sql_plan_invalidations: AtomicU64,
    pub sql_latency: Histogram,
    pub fetch_latency: Histogram,
    pub aggregate_latency: Histogram,
    pub mutation_latency: Histogram,
}

impl QueryMetrics {
    pub fn render_prometheus(&self, plan_hits: u64, plan_misses: u64, out: &mut String) {
        let counters = [
            ("ormdb_fetches_total", "Graph fetches run.", &self.fetches),
            (
                "ormdb_aggregates_total",
                "Aggregates run.",
                &self.aggregates,
            ),
            (
                "ormdb_mutations_total",
                "Mutation batches run.",
                &self.mutations,
            ),
            (
                "ormdb_fetch_lookups_total",
                "Batched internal lookups made by graph fetches.",
                &self.lookups,
            ),
            (
                "ormdb_fetch_rows_total",
                "Rows returned by graph fetches.",
                &self.rows,
            ),
            (
                "ormdb_fetch_edges_total",
                "Edges returned by graph fetches.",
                &self.edges,
            ),
            (
                "ormdb_fetch_rows_examined_total",
                "Rows read by graph fetches, including filtered ones.",
                &self.rows_examined,
            ),
            (
                "ormdb_sql_statements_total",
                "SQL statements executed.",
                &self.sql_statements,
            ),
            (
                "ormdb_sql_statement_cache_hits_total",
                "SQL statements found parsed in a session's statement cache.",
                &self.sql_cache_hits,
            ),
            (
                "ormdb_sql_statement_cache_misses_total",
                "SQL statements parsed because a session's statement cache lacked them.",
                &self.sql_cache_misses,
            ),
            (
                "ormdb_sql_plan_cache_hits_total",
                "SQL queries run from a session's cached compiled plan.",
                &self.sql_plan_hits,
            ),
            (
                "ormdb_sql_plan_cache_misses_total",
                "SQL queries compiled because no valid cached plan existed.",
                &self.sql_plan_misses,
            ),
            (
                "ormdb_sql_plan_cache_invalidations_total",
                "Cached SQL plans recompiled because the schema or the session's functions changed.",
                &self.sql_plan_invalidations,
            ),
            (
                "ormdb_budget_rejections_total",
                "Queries refused for exceeding a budget (54000).",
                &self.budget_rejections,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP ormdb_fetch_max_fanout Largest number of related rows returned for one parent.\n# TYPE ormdb_fetch_max_fanout gauge\normdb_fetch_max_fanout {}",
            self.max_fanout.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP ormdb_plan_cache_hits_total Plan cache hits.\n# TYPE ormdb_plan_cache_hits_total counter\normdb_plan_cache_hits_total {plan_hits}"
        );
        let _ = writeln!(
            out,
            "# HELP ormdb_plan_cache_misses_total Plan cache misses.\n# TYPE ormdb_plan_cache_misses_total counter\normdb_plan_cache_misses_total {plan_misses}"
        );
        let total = plan_hits + plan_misses;
        let rate = if total == 0 {
            0.0
        } else {
            plan_hits as f64 / total as f64
        };
        let _ = writeln!(
            out,
            "# HELP ormdb_plan_cache_hit_ratio Plan cache hits over lookups.\n# TYPE ormdb_plan_cache_hit_ratio gauge\normdb_plan_cache_hit_ratio {rate}"
        );
        self.fetch_latency
            .render("ormdb_fetch_duration_seconds", "Graph fetch latency.", out);
        self.sql_latency.render(
            "ormdb_sql_statement_duration_seconds",
            "SQL statement latency (including its autocommit transaction).",
            out,
        );
        self.aggregate_latency.render(
            "ormdb_aggregate_duration_seconds",
            "Aggregate latency.",
            out,
        );
        self.mutation_latency.render(
            "ormdb_mutation_duration_seconds",
            "Mutation batch latency (including commit).",
            out,
        );
    }
}
