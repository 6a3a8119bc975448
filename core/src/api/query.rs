//! The native query API: graph fetch, EXPLAIN, mutations and aggregates, on a transaction (its
//! snapshot and own writes) or on a connection (a fresh read-only snapshot, or one committed
//! write transaction retried on serialization conflicts).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::connection::Connection;
use super::transaction::Transaction;
use crate::error::{Result, SqlState};
use crate::exec::graph_fetch::{Executor, StepActual};
use crate::ir::aggregate::{Aggregate, AggregateResult};
use crate::ir::graph::GraphFetch;
use crate::ir::mutation::{Mutation, MutationResult};
use crate::ir::result::GraphResult;
use crate::plan::explain::{explain, Explain};
use crate::plan::planner::{signature, Planner};
use crate::plan::FetchPlan;
use crate::txn::Txn;

/// Plans a fetch, through the plan cache when the transaction sees a committed schema.
fn plan_for(txn: &Txn, f: &GraphFetch) -> Result<(Arc<FetchPlan>, bool)> {
    let core = txn.core().clone();
    let q = &core.query;
    let schema = txn.schema().clone();
    let cacheable = txn.schema_is_committed();
    let sig = if cacheable { Some(signature(f)) } else { None };
    if let Some(sig) = &sig {
        if let Some(p) = q.cache.get(sig, schema.version()) {
            // Re-plan when a table the estimates used has changed size by more than 4x.
            let stale = p.table_rows.iter().any(|(t, n)| {
                schema.entity_by_id(*t).is_none_or(|e| {
                    let now = q.stats.row_count(txn, e).unwrap_or(*n);
                    now > n.saturating_mul(4) + 64 || n > &now.saturating_mul(4).saturating_add(64)
                })
            });
            if !stale {
                return Ok((p, true));
            }
            q.cache.demote_hit();
        }
    }
    let plan = Arc::new(
        Planner {
            schema: &schema,
            stats: &q.stats,
            txn,
            table_rows: Vec::new(),
        }
        .plan(f)?,
    );
    if let Some(sig) = sig {
        q.cache.put(sig, schema.version(), plan.clone());
    }
    Ok((plan, false))
}

fn run_fetch(
    txn: &mut Txn,
    f: &GraphFetch,
) -> Result<(GraphResult, Arc<FetchPlan>, bool, Vec<StepActual>)> {
    let core = txn.core().clone();
    let m = &core.query.metrics;
    let t0 = Instant::now();
    let res = plan_for(txn, f).and_then(|(plan, cached)| {
        let ex = Executor::new(txn, f.budget.unwrap_or_default());
        let (mut r, steps) = ex.run(&plan, f)?;
        r.stats.plan_cached = cached;
        Ok((r, plan, cached, steps))
    });
    m.fetches.fetch_add(1, Ordering::Relaxed);
    m.fetch_latency.observe_us(t0.elapsed().as_micros() as u64);
    match &res {
        Ok((r, ..)) => {
            m.lookups.fetch_add(r.stats.lookups, Ordering::Relaxed);
            m.rows.fetch_add(r.stats.rows, Ordering::Relaxed);
            m.edges.fetch_add(r.stats.edges, Ordering::Relaxed);
            m.rows_examined
                .fetch_add(r.stats.rows_examined, Ordering::Relaxed);
            m.max_fanout
                .fetch_max(r.stats.max_fanout, Ordering::Relaxed);
        }
        Err(e) if e.state == SqlState::LimitExceeded => {
            m.budget_rejections.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {}
    }
    res
}

fn run_explain(txn: &mut Txn, f: &GraphFetch, analyze: bool) -> Result<Explain> {
    let schema = txn.schema().clone();
    if analyze {
        let (r, plan, cached, steps) = run_fetch(txn, f)?;
        Ok(explain(&plan, &schema, cached, Some((&steps, &r.stats))))
    } else {
        let (plan, cached) = plan_for(txn, f)?;
        Ok(explain(&plan, &schema, cached, None))
    }
}

fn run_aggregate(txn: &mut Txn, a: &Aggregate) -> Result<AggregateResult> {
    let core = txn.core().clone();
    let t0 = Instant::now();
    let r = crate::exec::aggregate::run(txn, a);
    core.query
        .metrics
        .aggregates
        .fetch_add(1, Ordering::Relaxed);
    core.query
        .metrics
        .aggregate_latency
        .observe_us(t0.elapsed().as_micros() as u64);
    r
}

impl Transaction {
    /// Runs a graph fetch at this transaction's snapshot (its own writes included).
    pub fn fetch(&mut self, f: &GraphFetch) -> Result<GraphResult> {
        Ok(run_fetch(self.txn_mut()?, f)?.0)
    }

    /// The plan of a fetch; with `analyze`, runs it and adds actual figures per step.
    pub fn explain(&mut self, f: &GraphFetch, analyze: bool) -> Result<Explain> {
        run_explain(self.txn_mut()?, f, analyze)
    }

    /// Applies a mutation batch inside this transaction (committed with it). Each operation is
    /// atomic on its own.
    pub fn mutate(&mut self, m: &Mutation) -> Result<MutationResult> {
        let limits = self.limits();
        let t0 = Instant::now();
        let txn = self.txn_mut()?;
        let core = txn.core().clone();
        let ops = crate::exec::mutation_ir::run(txn, m, &limits);
        core.query.metrics.mutations.fetch_add(1, Ordering::Relaxed);
        core.query
            .metrics
            .mutation_latency
            .observe_us(t0.elapsed().as_micros() as u64);
        Ok(MutationResult {
            ops: ops?,
            token: self.snapshot(),
        })
    }

    pub fn aggregate(&mut self, a: &Aggregate) -> Result<AggregateResult> {
        run_aggregate(self.txn_mut()?, a)
    }
}

impl Connection {
    /// A read-only transaction whose reads are not tracked (it never commits writes).
    fn snapshot_txn(&self) -> Result<Transaction> {
        let mut tx = self.begin()?;
        tx.txn_mut()?.disable_read_tracking();
        Ok(tx)
    }

    /// Runs a graph fetch at a fresh snapshot: the whole graph is read at one point in time.
    pub fn fetch(&self, f: &GraphFetch) -> Result<GraphResult> {
        let mut tx = self.snapshot_txn()?;
        let r = tx.fetch(f);
        tx.rollback();
        r
    }

    pub fn explain(&self, f: &GraphFetch, analyze: bool) -> Result<Explain> {
        let mut tx = self.snapshot_txn()?;
        let r = tx.explain(f, analyze);
        tx.rollback();
        r
    }

    /// Applies a mutation batch as one transaction, retrying on serialization conflicts (the
    /// batch is data, so a retry is safe).
    pub fn mutate(&self, m: &Mutation) -> Result<MutationResult> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut tx = self.begin()?;
            let res = tx.mutate(m).and_then(|r| tx.commit().map(|c| (r, c)));
            match res {
                Ok((mut r, c)) => {
                    r.token = c.token;
                    return Ok(r);
                }
                // `begin` waits for the commit this one conflicted with to become visible.
                Err(e) if e.state.is_retryable() && attempt < 8 => {}
                Err(e) => return Err(e),
            }
        }
    }

    pub fn aggregate(&self, a: &Aggregate) -> Result<AggregateResult> {
        let mut tx = self.snapshot_txn()?;
        let r = tx.aggregate(a);
        tx.rollback();
        r
    }
}
