//! The plan cache: plans keyed by fetch signature and schema version, with hit and miss
//! counters. Bounded: when full it is cleared (plans are cheap to rebuild; a clear is rare).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::planner::FetchPlan;

const CAPACITY: usize = 1024;

#[derive(Default)]
pub struct PlanCache {
    plans: Mutex<HashMap<(String, u64), Arc<FetchPlan>>>,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

impl PlanCache {
    pub fn get(&self, sig: &str, schema_version: u64) -> Option<Arc<FetchPlan>> {
        let p = self
            .plans
            .lock()
            .get(&(sig.to_string(), schema_version))
            .cloned();
        match p {
            Some(_) => self.hits.fetch_add(1, Ordering::Relaxed),
            None => self.misses.fetch_add(1, Ordering::Relaxed),
        };
        p
    }

    /// Turns the last `get` hit into a miss (the cached plan was stale).
    pub fn demote_hit(&self) {
        self.hits.fetch_sub(1, Ordering::Relaxed);
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    pub fn put(&self, sig: String, schema_version: u64, plan: Arc<FetchPlan>) {
        let mut m = self.plans.lock();
        if m.len() >= CAPACITY {
            m.clear();
        }
        m.insert((sig, schema_version), plan);
    }

    pub fn len(&self) -> usize {
        self.plans.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
