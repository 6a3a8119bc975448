//! In-process change stream subscriptions. A subscriber reads the change log from its position
//! up to the visible timestamp and then waits for the next commit, so it sees every commit in
//! order, can resume from any retained token, and never slows committers down: a subscriber that
//! falls behind the change log's retention is told so (72000) instead of silently missing changes.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{ChangeSet, ChangeToken};
use crate::error::{Error, Result, SqlState};
use crate::storage::keys;
use crate::txn::DbCore;

const READ_BATCH: usize = 1024;

/// Which changes a subscriber wants. Empty `entities` means all.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionFilter {
    pub entities: Vec<String>,
}

impl SubscriptionFilter {
    pub fn entities(names: &[&str]) -> Self {
        SubscriptionFilter {
            entities: names.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn wants(&self, entity: &str) -> bool {
        self.entities.is_empty() || self.entities.iter().any(|e| e.eq_ignore_ascii_case(entity))
    }

    fn apply(&self, mut cs: ChangeSet) -> Option<ChangeSet> {
        if self.entities.is_empty() {
            return Some(cs);
        }
        cs.entities.retain(|e| self.wants(&e.entity));
        cs.relations
            .retain(|r| self.wants(&r.child_entity) || self.wants(&r.parent_entity));
        (!cs.entities.is_empty() || !cs.relations.is_empty() || cs.schema_changed).then_some(cs)
    }
}

pub struct Subscription {
    core: Arc<DbCore>,
    /// Every change with a token at or below this has been read.
    position: ChangeToken,
    buf: VecDeque<ChangeSet>,
    filter: SubscriptionFilter,
}

impl Subscription {
    /// Starts after `from` (None: after the newest visible commit).
    pub fn new(
        core: Arc<DbCore>,
        from: Option<ChangeToken>,
        filter: SubscriptionFilter,
    ) -> Result<Subscription> {
        core.check_open()?;
        let position = from.unwrap_or_else(|| core.oracle.visible_ts());
        let sub = Subscription {
            core,
            position,
            buf: VecDeque::new(),
            filter,
        };
        sub.check_retained()?;
        Ok(sub)
    }

    /// The token of the last change set delivered (or skipped by the filter).
    pub fn position(&self) -> ChangeToken {
        self.position
    }

    fn check_retained(&self) -> Result<()> {
        let floor = self.core.changes_floor.load(Ordering::Acquire);
        if self.position < floor {
            return Err(Error::new(
                SqlState::SnapshotTooOld,
                format!(
                    "subscriber fell behind: changes up to token {floor} were pruned (subscriber at {}); resubscribe from a fresh read",
                    self.position
                ),
            ));
        }
        Ok(())
    }

    fn fill(&mut self) -> Result<()> {
        let visible = self.core.oracle.visible_ts();
        if self.position >= visible {
            return Ok(());
        }
        self.check_retained()?;
        let start = keys::change_key(self.position + 1);
        let end = keys::change_key(visible.saturating_add(1));
        let mut read = 0;
        let mut last = self.position;
        for item in self.core.kv.scan(&start, &end) {
            let (k, v) = item?;
            let token = u64::from_be_bytes(
                k[1..9]
                    .try_into()
                    .map_err(|_| Error::corrupted("malformed change key"))?,
            );
            last = token;
            if self.core.is_aborted(token) {
                continue; // a commit that never became durable
            }
            if let Some(cs) = self.filter.apply(ChangeSet::decode(token, &v)?) {
                self.buf.push_back(cs);
            }
            read += 1;
            if read >= READ_BATCH {
                break;
            }
        }
        // Re-check after reading: pruning may have raced with the scan.
        self.check_retained()?;
        self.position = if read >= READ_BATCH { last } else { visible };
        Ok(())
    }

    /// The next change set if one is already committed.
    pub fn try_next(&mut self) -> Result<Option<ChangeSet>> {
        if self.buf.is_empty() {
            self.fill()?;
        }
        Ok(self.buf.pop_front())
    }

    /// Waits up to `timeout` for the next change set.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<ChangeSet>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(cs) = self.try_next()? {
                return Ok(Some(cs));
            }
            self.core.check_open()?;
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            self.core
                .oracle
                .wait_visible_after(self.position, deadline - now);
        }
    }
}

impl Iterator for Subscription {
    type Item = Result<ChangeSet>;

    /// Blocks until the next change set; ends when the database closes.
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.next_timeout(Duration::from_millis(500)) {
                Ok(Some(cs)) => return Some(Ok(cs)),
                Ok(None) => continue,
                Err(e) if e.state == SqlState::ConnectionDoesNotExist => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
