//! Observability: engine counters and their Prometheus text form. Tracing spans are emitted where
//! the work happens (`ormdb.open`, `ormdb.recovery`, `ormdb.commit`, `ormdb.checkpoint`,
//! `ormdb.gc`).

pub mod query;

pub use query::{Histogram, QueryMetrics};

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub commits: AtomicU64,
    pub conflicts: AtomicU64,
    pub rollbacks: AtomicU64,
    pub rows_written: AtomicU64,
    pub rows_read: AtomicU64,
    pub checkpoints: AtomicU64,
    pub gc_runs: AtomicU64,
}

impl Metrics {
    /// Prometheus text exposition of every counter.
    pub fn render_prometheus(&self, extra: &[(&str, &str, u64)]) -> String {
        let mut out = String::new();
        let counters = [
            (
                "ormdb_commits_total",
                "Committed write transactions.",
                &self.commits,
            ),
            (
                "ormdb_conflicts_total",
                "Commits refused with a serialization conflict (40001).",
                &self.conflicts,
            ),
            (
                "ormdb_rollbacks_total",
                "Transactions rolled back.",
                &self.rollbacks,
            ),
            (
                "ormdb_rows_written_total",
                "Row versions written.",
                &self.rows_written,
            ),
            (
                "ormdb_rows_read_total",
                "Rows read by get and scan.",
                &self.rows_read,
            ),
            (
                "ormdb_checkpoints_total",
                "Store checkpoints.",
                &self.checkpoints,
            ),
            (
                "ormdb_gc_runs_total",
                "Garbage collection passes.",
                &self.gc_runs,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.load(Ordering::Relaxed)
            );
        }
        for (name, help, v) in extra {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}
