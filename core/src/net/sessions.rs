//! Sessions: a transaction that spans requests, bound to an id the client got from `Begin`.
//! Each session owns a SQL [`Session`] with an open transaction; a session left idle longer than
//! the idle timeout (a client that died mid-transaction) is rolled back by the reaper.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::error::{Error, Result, SqlState};
use crate::sql::Session;

pub struct SessionEntry {
    pub session: Mutex<Session>,
    last_used: Mutex<Instant>,
}

impl SessionEntry {
    pub fn touch(&self) {
        *self.last_used.lock() = Instant::now();
    }
}

pub struct Sessions {
    map: Mutex<HashMap<u64, Arc<SessionEntry>>>,
    next: AtomicU64,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new()
    }
}

impl Sessions {
    pub fn new() -> Sessions {
        // Ids start from a clock-derived value so that an id from a previous server run (a
        // client that reconnected after a restart) is very unlikely to name a live session.
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            .rotate_left(17)
            | 1;
        Sessions {
            map: Mutex::new(HashMap::new()),
            next: AtomicU64::new(seed),
        }
    }

    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn insert(&self, session: Session) -> u64 {
        let mut id = self.next.fetch_add(1, Ordering::Relaxed);
        if id == 0 {
            id = self.next.fetch_add(1, Ordering::Relaxed);
        }
        let entry = Arc::new(SessionEntry {
            session: Mutex::new(session),
            last_used: Mutex::new(Instant::now()),
        });
        self.map.lock().insert(id, entry);
        id
    }

    pub fn get(&self, id: u64) -> Result<Arc<SessionEntry>> {
        // Touched under the map lock, so the reaper never expires a session between this lookup
        // and the request taking the session's lock.
        let map = self.map.lock();
        let entry = map.get(&id).cloned().ok_or_else(|| unknown(id))?;
        entry.touch();
        Ok(entry)
    }

    pub fn remove(&self, id: u64) -> Result<Arc<SessionEntry>> {
        self.map.lock().remove(&id).ok_or_else(|| unknown(id))
    }

    /// Rolls back and forgets sessions idle for longer than `idle`, adding how many to
    /// `expired_total` while the table is still locked: a metrics scrape never sees a session
    /// gone from the open count but not yet counted as expired. A session busy with a request is
    /// never idle (its lock is held), so it is skipped.
    pub fn reap(&self, idle: Duration, expired_total: &std::sync::atomic::AtomicU64) -> usize {
        let now = Instant::now();
        let expired: Vec<(u64, Arc<SessionEntry>)> = {
            let mut map = self.map.lock();
            let ids: Vec<u64> = map
                .iter()
                .filter(|(_, e)| {
                    now.duration_since(*e.last_used.lock()) > idle && !e.session.is_locked()
                })
                .map(|(id, _)| *id)
                .collect();
            let gone: Vec<_> = ids
                .into_iter()
                .filter_map(|id| map.remove(&id).map(|e| (id, e)))
                .collect();
            expired_total.fetch_add(gone.len() as u64, std::sync::atomic::Ordering::Relaxed);
            gone
        };
        for (id, e) in &expired {
            rollback(&mut e.session.lock());
            tracing::info!(session = id, "session idle too long: rolled back");
        }
        expired.len()
    }

    /// Rolls back every session (server shutdown).
    pub fn rollback_all(&self) -> usize {
        let all: Vec<Arc<SessionEntry>> = self.map.lock().drain().map(|(_, e)| e).collect();
        for e in &all {
            rollback(&mut e.session.lock());
        }
        all.len()
    }
}

pub fn rollback(s: &mut Session) {
    if s.in_transaction() {
        if let Err(e) = s.execute_batch("ROLLBACK") {
            tracing::warn!("rolling back a session: {e}");
        }
    }
}

fn unknown(id: u64) -> Error {
    Error::new(
        SqlState::InvalidTransactionState,
        format!(
            "unknown session id {id}: it was never opened, was already committed or rolled back, or expired after its idle timeout"
        ),
    )
}
