//! The engine state shared by every connection to one database: the store, the commit log, the
//! timestamp oracle, the schema versions and the row id allocators; plus the commit pipeline,
//! checkpoints and garbage collection.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};
use tracing::{info, info_span, warn};

use super::oracle::{CommittedWrites, Oracle};
use super::read_set::ReadSet;
use crate::catalog::{Schema, SchemaBundle};
use crate::error::{Error, Result, SqlState};
use crate::observe::Metrics;
use crate::storage::commit_log::CommitLog;
use crate::storage::keys::{self, prefix_end};
use crate::storage::row_codec::{decode_header, decode_row, FLAG_TOMBSTONE};
use crate::storage::sled_kv::SledKv;
use crate::storage::vlog::Pointer;
use crate::storage::{Batch, BatchOp, Kv};

/// How a commit is made durable before it is acknowledged (like SQLite's `synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fdatasync the commit log before acknowledging; concurrent commits share one sync.
    Full,
    /// Write the commit log record to the OS before acknowledging (survives a process crash);
    /// sync on an interval (a power loss may lose the last interval).
    Normal,
}

/// One transaction's writes, ready to commit.
pub struct CommitRequest {
    pub snapshot_ts: u64,
    pub read_set: ReadSet,
    /// (table id, row id, encoded row version).
    pub rows: Vec<(u32, i64, Vec<u8>)>,
    /// Index entry keys to add.
    pub index_entries: Vec<Vec<u8>>,
    /// A new schema bundle when the transaction changed the schema.
    pub new_schema: Option<SchemaBundle>,
    /// Encoded change record (written under the commit timestamp).
    pub change_record: Option<Vec<u8>>,
    /// AUTOINCREMENT high-water marks to persist (raised, never lowered: the store keeps the
    /// larger of the stored mark and this one).
    pub sequences: Vec<(u32, i64)>,
    /// Writes to `sqlite_sequence`: the table's new mark (None: its row was deleted) and the
    /// largest live row id the transaction saw in the table (it read the whole table, so a
    /// concurrent insert there conflicts).
    pub sequence_resets: Vec<SequenceReset>,
    /// Identifies the transaction's outstanding row id allocations (see [`DbCore::alloc_row_id`]).
    pub alloc_owner: u64,
    /// Rows that had a previous version (updated or deleted): candidates for incremental GC.
    pub gc_candidates: Vec<(u32, i64)>,
}

/// A write to an AUTOINCREMENT table's `sqlite_sequence` row, applied at commit.
#[derive(Debug, Clone, Copy)]
pub struct SequenceReset {
    pub table_id: u32,
    pub seq: Option<i64>,
    pub live_max: i64,
}

/// Row id allocation state of one table.
struct IdAlloc {
    /// The next id to hand out.
    next: i64,
    /// Every id above this was never handed out nor stored: its row key has no version, so an
    /// insert under it needs no lookup. Ids at or below it (possible after an AUTOINCREMENT
    /// reset lowered `next`) may have tombstones or, under a race, live rows.
    fresh_above: i64,
    /// AUTOINCREMENT tables only: the largest id handed to each transaction that has not
    /// finished. A reset never lowers `next` to or below one of these, or the two
    /// transactions could both write the same row id.
    outstanding: HashMap<u64, i64>,
}

/// Commits applied to the store out of timestamp order, and the in-order watermark.
struct ApplyState {
    /// Every commit at or below this timestamp is applied to the store.
    watermark: u64,
    /// Commits above the watermark that finished applying (they wait for the earlier ones).
    done: std::collections::BTreeSet<u64>,
}

/// What garbage collection removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcStats {
    pub horizon: u64,
    pub row_versions_removed: u64,
    pub index_entries_removed: u64,
    pub change_records_removed: u64,
}

pub struct DbCore {
    pub kv: Arc<dyn Kv>,
    pub log: Arc<CommitLog>,
    /// Which commits are fully applied to the store. Commits take timestamps and append to the
    /// log in order under the commit lock but apply to sled outside it, concurrently; the
    /// watermark is the newest timestamp below which every commit is applied, and nothing above
    /// it is ever visible.
    applying: Mutex<ApplyState>,
    /// Signalled when the watermark advances or the database is poisoned.
    applied_cv: Condvar,
    /// Syncs the commit log as records arrive (durability `full`).
    syncer: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub oracle: Oracle,
    pub durability: Durability,
    pub metrics: Metrics,
    /// Planner statistics, the plan cache and query metrics.
    pub query: crate::plan::QueryState,
    /// Change records with a token at or below this have been pruned.
    pub changes_floor: AtomicU64,
    /// How many commits of change log to keep.
    pub change_retention: u64,
    catalog: RwLock<Vec<(u64, Arc<Schema>)>>,
    row_ids: Mutex<HashMap<u32, IdAlloc>>,
    /// Source of transaction keys for `IdAlloc::outstanding`.
    next_alloc_owner: AtomicU64,
    gc_queue: Mutex<Vec<(u32, i64)>>,
    poisoned: Mutex<Option<String>>,
    /// Commit timestamps below this are reserved: the store may hold versions up to it.
    reserved_ts: AtomicU64,
    /// Ranges `(a, b]` of timestamps of commits that never became durable (see `open`).
    aborted: Vec<(u64, u64)>,
    /// Set with `poisoned`, so the hot-path check is one atomic load.
    is_poisoned: AtomicBool,
    closed: AtomicBool,
    /// The newest commit timestamp written to the checkpoint record (see [`CHECKPOINT_RECORD`]).
    checkpoint_recorded: AtomicU64,
    _dir_guard: OpenDirGuard,
}

/// Deferred acknowledgement of durable commits, for a server that answers a request once its
/// commit is durable without holding a thread until then (see [`defer_durable_commit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Defer {
    Off,
    Armed,
    Pending(DurableTicket),
}

thread_local! {
    static DEFER: std::cell::Cell<Defer> = const { std::cell::Cell::new(Defer::Off) };
}

/// A commit that returned before its log record was synced (see [`defer_durable_commit`]).
/// Until [`DbCore::when_durable`] reports it durable it is not visible to anyone and must not
/// be acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurableTicket {
    pub lsn: u64,
    pub ts: u64,
}

/// Lets the next commit on this thread under durability `full` return as soon as it is logged
/// and applied, before its record is synced; [`take_deferred_commit`] then hands out its ticket,
/// and [`DbCore::when_durable`] runs the acknowledgement once the record is synced. At most one
/// commit per arming is deferred, and only an ordinary one (not a schema change, not one whose
/// predecessors are still being applied). A transaction that begins on this thread meanwhile
/// first waits for the deferred commit, so a request still reads its own writes.
pub fn defer_durable_commit() {
    DEFER.with(|d| d.set(Defer::Armed));
}

/// Disarms [`defer_durable_commit`] and returns the ticket of the commit it deferred, if any.
pub fn take_deferred_commit() -> Option<DurableTicket> {
    match DEFER.with(|d| d.replace(Defer::Off)) {
        Defer::Pending(t) => Some(t),
        _ => None,
    }
}

const SEQ_PREFIX: &[u8] = b"\x02seq:";

fn seq_key(table_id: u32) -> Vec<u8> {
    let mut k = SEQ_PREFIX.to_vec();
    k.extend_from_slice(&table_id.to_be_bytes());
    k
}

/// Drops from a replayed log record the puts of high-water marks (the last commit timestamp,
/// AUTOINCREMENT marks) that are lower than the value the store already holds.
///
/// The store can be durably *ahead* of the log: sled writes its buffers to its files on its own,
/// and a checkpoint's flush persists every applied commit, including one whose log record was
/// still in memory when the process died (or a log tail lost to damage). Replaying the older
/// records used to move `last_ts` back below timestamps the store holds: those commits became
/// invisible, and new commits reused their timestamps, their row versions mixing with the old
/// ones (partial transfers, duplicated unique keys).
fn keep_high_water_marks(kv: &dyn Kv, batch: &mut Batch) -> Result<()> {
    let mut stale = Vec::new();
    for (i, op) in batch.ops.iter().enumerate() {
        let BatchOp::Put(k, v) = op else { continue };
        if k.as_slice() != keys::META_LAST_TS && !k.starts_with(SEQ_PREFIX) {
            continue;
        }
        let (Some(cur), Ok(new)) = (kv.get(k)?, <[u8; 8]>::try_from(v.as_slice())) else {
            continue;
        };
        let Ok(cur) = <[u8; 8]>::try_from(cur.as_ref()) else {
            continue;
        };
        // `last_ts` is a u64, AUTOINCREMENT marks are i64 (row ids may be negative).
        let lower = if k.as_slice() == keys::META_LAST_TS {
            u64::from_be_bytes(new) < u64::from_be_bytes(cur)
        } else {
            i64::from_be_bytes(new) < i64::from_be_bytes(cur)
        };
        if lower {
            stale.push(i);
        }
    }
    for i in stale.into_iter().rev() {
        batch.ops.remove(i);
    }
    Ok(())
}

const META_CHANGES_FLOOR: &[u8] = b"\x02changes_floor";
/// The highest commit timestamp that may be used before the reservation is extended.
const META_RESERVED: &[u8] = b"\x02reserved_ts";
/// Aborted timestamp ranges, 16 bytes each.
const META_ABORTED: &[u8] = b"\x02aborted_ts";
/// How many commit timestamps one (synced) reservation covers.
const TS_RESERVATION: u64 = 1 << 16;

fn read_u64(kv: &dyn Kv, key: &[u8]) -> Result<Option<u64>> {
    match kv.get(key)? {
        Some(b) => Ok(Some(u64::from_be_bytes(b.as_ref().try_into().map_err(
            |_| {
                Error::corrupted(format!(
                    "meta record {} is malformed",
                    String::from_utf8_lossy(&key[1..])
                ))
            },
        )?))),
        None => Ok(None),
    }
}

fn read_aborted(kv: &dyn Kv) -> Result<Vec<(u64, u64)>> {
    let Some(b) = kv.get(META_ABORTED)? else {
        return Ok(Vec::new());
    };
    if b.len() % 16 != 0 {
        return Err(Error::corrupted("aborted timestamp ranges are malformed"));
    }
    Ok(b.chunks(16)
        .map(|c| {
            let a = u64::from_be_bytes(c[..8].try_into().expect("8 bytes"));
            let z = u64::from_be_bytes(c[8..].try_into().expect("8 bytes"));
            (a, z)
        })
        .collect())
}

fn encode_aborted(ranges: &[(u64, u64)]) -> Vec<u8> {
    ranges
        .iter()
        .flat_map(|(a, b)| a.to_be_bytes().into_iter().chain(b.to_be_bytes()))
        .collect()
}

/// Directories with a live engine in this process. sled's directory lock would refuse a second
/// open anyway; this turns that into an accurate message when the holder is this process.
fn open_dirs() -> &'static Mutex<std::collections::HashSet<std::path::PathBuf>> {
    static DIRS: std::sync::OnceLock<Mutex<std::collections::HashSet<std::path::PathBuf>>> =
        std::sync::OnceLock::new();
    DIRS.get_or_init(Default::default)
}

/// Keeps a directory registered in [`open_dirs`] for the life of the engine.
struct OpenDirGuard(std::path::PathBuf);

impl Drop for OpenDirGuard {
    fn drop(&mut self) {
        open_dirs().lock().remove(&self.0);
    }
}

impl DbCore {
    /// Opens the store in `dir/data` and the log in `dir/log`, replaying the log first.
    pub fn open(
        dir: &Path,
        cache_capacity: u64,
        durability: Durability,
        change_retention: u64,
        log_direct_io: bool,
        value_threshold: usize,
        row_head_budget: u64,
    ) -> Result<DbCore> {
        let _span = info_span!("ormdb.open", path = %dir.display()).entered();
        if !open_dirs().lock().insert(dir.to_path_buf()) {
            return Err(Error::new(
                SqlState::ObjectInUse,
                format!(
                    "database {} is still in use in this process by transactions or subscriptions of a closed handle; finish them first",
                    dir.display()
                ),
            ));
        }
        let dir_guard = OpenDirGuard(dir.to_path_buf());
        // A store that a checkpoint made durable must still hold what it held: damaged or
        // replaced data files are reported rather than opened as an older or empty database
        // (whose next checkpoint would then drop the commit log as well).
        let recorded = read_checkpoint_record(dir)?;
        if recorded.is_some_and(|ts| ts > 0)
            && !crate::storage::sled_kv::has_intact_segment(&dir.join("data"))?
        {
            return Err(Error::corrupted(format!(
                "the data files of {} are damaged (no readable segment in data/db); they were left untouched",
                dir.display()
            )));
        }
        let kv: Arc<dyn Kv> = Arc::new(
            SledKv::open_with_values(
                &dir.join("data"),
                cache_capacity,
                Some(&dir.join("values")),
                value_threshold,
            )?
            .with_row_heads(row_head_budget),
        );
        if let Some(recorded) = recorded {
            let held = stored_last_ts(kv.as_ref())?;
            if held < recorded {
                return Err(Error::corrupted(format!(
                    "the data files of {} are damaged: they hold commits up to {held}, but a checkpoint made commits up to {recorded} durable in them",
                    dir.display()
                )));
            }
        }
        let log_dir = dir.join("log");
        let replay = {
            let _span = info_span!("ormdb.recovery").entered();
            let kv2 = kv.clone();
            let info = CommitLog::replay(&log_dir, |_, mut batch| {
                keep_high_water_marks(kv2.as_ref(), &mut batch)?;
                kv2.apply(&batch)
            })?;
            if info.records > 0 {
                kv.sync()?;
            }
            info!(
                segments = info.segments,
                records = info.records,
                max_ts = info.max_ts,
                truncated_bytes = info.truncated_bytes,
                "commit log replayed"
            );
            info
        };
        let stored_ts = stored_last_ts(kv.as_ref())?;
        // Commits are applied to the store op by op (not as one sled batch, which costs two
        // synchronous buffer writes), so after a crash the store may hold part of a commit whose
        // log record never became durable. Every commit up to `durable` is complete (in a
        // checkpoint or in the log, just replayed); timestamps above it up to the reserved
        // high-water mark may belong to such partial commits: they are aborted for good, their
        // versions invisible, and new commits start above the reservation.
        let reserved = read_u64(kv.as_ref(), META_RESERVED)?;
        let durable = match reserved {
            // A store written before reservations existed applied commits atomically.
            None => stored_ts.max(replay.max_ts),
            Some(_) => recorded.unwrap_or(0).max(replay.max_ts),
        };
        let mut aborted = read_aborted(kv.as_ref())?;
        // Timestamps up to the newest durable commit or an earlier aborted range are spoken for.
        let floor = aborted.iter().map(|r| r.1).max().unwrap_or(0).max(durable);
        if let Some(r) = reserved.filter(|r| *r > floor) {
            aborted.push((floor, r));
            info!(
                from = floor + 1,
                to = r,
                "timestamps of commits that were not durable are aborted"
            );
        }
        let next_ts = reserved.unwrap_or(0).max(floor) + 1;
        let new_reservation = next_ts + TS_RESERVATION - 1;
        let mut meta = Batch::default();
        // Commits no longer write `last_ts` (checkpoints do): the replayed ones are in the store.
        meta.put(
            keys::META_LAST_TS.to_vec(),
            stored_ts.max(durable).to_be_bytes().to_vec(),
        );
        meta.put(META_ABORTED.to_vec(), encode_aborted(&aborted));
        // Format 2: row values may be value-log pointers. Readers of format 1 would take them
        // for rows, so the mark goes in before anything is written.
        meta.put(
            keys::META_FORMAT.to_vec(),
            keys::FORMAT_VERSION.to_be_bytes().to_vec(),
        );
        meta.put(
            META_RESERVED.to_vec(),
            new_reservation.to_be_bytes().to_vec(),
        );
        kv.apply(&meta)?;
        kv.sync()?;
        // The replayed commits are durable in the store now, and the log that held them is
        // about to be replaced: record them as checkpointed first, or a crash before the next
        // checkpoint would make the next open abort them as not durable.
        let recorded = match recorded {
            Some(r) if r >= durable => Some(r),
            _ if durable > 0 => {
                write_checkpoint_record(dir, durable)?;
                Some(durable)
            }
            other => other,
        };
        let is_aborted = |ts: u64| in_aborted_ranges(&aborted, ts);
        // Catalog history: every bundle, keyed by its commit timestamp.
        let mut versions = vec![(0u64, Arc::new(Schema::new(SchemaBundle::default())))];
        let cat = [keys::CATALOG];
        for item in kv.scan(&cat, &prefix_end(&cat)) {
            let (k, v) = item?;
            let ts = u64::from_be_bytes(
                k.get(1..9)
                    .and_then(|s| s.try_into().ok())
                    .ok_or_else(|| Error::corrupted("malformed catalog key"))?,
            );
            if is_aborted(ts) {
                continue;
            }
            versions.push((ts, Arc::new(Schema::new(SchemaBundle::from_bytes(&v)?))));
        }
        let catalog_ts = versions.last().map_or(0, |v| v.0);
        // Keep only the newest bundle in memory; history is read from the store on demand.
        let latest = versions.pop().expect("at least the empty schema");
        let changes_floor = read_u64(kv.as_ref(), META_CHANGES_FLOOR)?.unwrap_or(0);
        // Direct log writes pay off where every commit waits for its record to reach the
        // device; under `normal` the page cache absorbs the writes and syncs batch them.
        let log = Arc::new(CommitLog::create_with(
            &log_dir,
            durable,
            log_direct_io && durability == Durability::Full,
        )?);
        let syncer = if durability == Durability::Full {
            let l = log.clone();
            Some(
                std::thread::Builder::new()
                    .name("ormdb-log-sync".into())
                    .spawn(move || l.run_syncer())
                    .map_err(|e| Error::io("starting the commit log syncer", e))?,
            )
        } else {
            None
        };
        let oracle = Oracle::new(durable, catalog_ts);
        oracle.commit.lock().next_ts = next_ts;
        Ok(DbCore {
            kv,
            log,
            // Timestamps between `durable` and `next_ts` are aborted: nothing to wait for.
            applying: Mutex::new(ApplyState {
                watermark: next_ts - 1,
                done: Default::default(),
            }),
            applied_cv: Condvar::new(),
            syncer: Mutex::new(syncer),
            oracle,
            reserved_ts: AtomicU64::new(new_reservation),
            aborted,
            durability,
            metrics: Metrics::default(),
            query: Default::default(),
            changes_floor: AtomicU64::new(changes_floor),
            change_retention,
            catalog: RwLock::new(vec![latest]),
            row_ids: Mutex::new(HashMap::new()),
            next_alloc_owner: AtomicU64::new(1),
            gc_queue: Mutex::new(Vec::new()),
            poisoned: Mutex::new(None),
            is_poisoned: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            checkpoint_recorded: AtomicU64::new(recorded.unwrap_or(0)),
            _dir_guard: dir_guard,
        })
    }

    pub fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::new(
                SqlState::ConnectionDoesNotExist,
                "the database is closed",
            ));
        }
        if !self.is_poisoned.load(Ordering::Acquire) {
            return Ok(());
        }
        if let Some(p) = self.poisoned.lock().as_ref() {
            return Err(Error::new(
                SqlState::IoError,
                format!(
                    "the database refuses writes after an earlier storage failure: {p}; reopen it"
                ),
            ));
        }
        Ok(())
    }

    pub fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
        self.oracle.wake_all();
        self.stop_syncer();
    }

    fn stop_syncer(&self) {
        if let Some(t) = self.syncer.lock().take() {
            self.log.stop_syncer();
            let _ = t.join();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn poison(&self, why: &Error) {
        warn!(error = %why, "storage failure during commit; database refuses further writes");
        *self.poisoned.lock() = Some(why.to_string());
        self.is_poisoned.store(true, Ordering::Release);
        // Committers waiting for earlier commits to apply must not wait forever.
        let _a = self.applying.lock();
        self.applied_cv.notify_all();
    }

    /// The schema visible at snapshot `ts`.
    pub fn schema_at(&self, ts: u64) -> Result<Arc<Schema>> {
        {
            let cat = self.catalog.read();
            if let Some((_, s)) = cat.iter().rev().find(|(t, _)| *t <= ts) {
                return Ok(s.clone());
            }
        }
        // Older than the versions kept in memory: read it from the store.
        let start = [keys::CATALOG];
        let end = keys::catalog_key(ts.saturating_add(1));
        let mut found = None;
        for item in self.kv.scan(&start, &end) {
            let (k, v) = item?;
            let kts = k
                .get(1..9)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes);
            if kts.is_some_and(|t| !self.is_aborted(t)) {
                found = Some(v);
            }
        }
        match found {
            Some(v) => Ok(Arc::new(Schema::new(SchemaBundle::from_bytes(&v)?))),
            None => Ok(Arc::new(Schema::new(SchemaBundle::default()))),
        }
    }

    pub fn latest_schema(&self) -> Arc<Schema> {
        self.catalog
            .read()
            .last()
            .map(|(_, s)| s.clone())
            .expect("catalog never empty")
    }

    /// Every stored schema version: (commit timestamp, bundle), oldest first.
    pub fn schema_history(&self) -> Result<Vec<(u64, SchemaBundle)>> {
        let cat = [keys::CATALOG];
        let mut out = Vec::new();
        for item in self.kv.scan(&cat, &prefix_end(&cat)) {
            let (k, v) = item?;
            let ts = u64::from_be_bytes(
                k[1..9]
                    .try_into()
                    .map_err(|_| Error::corrupted("malformed catalog key"))?,
            );
            out.push((ts, SchemaBundle::from_bytes(&v)?));
        }
        Ok(out)
    }

    /// A key naming one transaction's row id allocations.
    pub fn new_alloc_owner(&self) -> u64 {
        self.next_alloc_owner.fetch_add(1, Ordering::Relaxed)
    }

    fn id_alloc<'a>(
        &self,
        ids: &'a mut HashMap<u32, IdAlloc>,
        table_id: u32,
    ) -> Result<&'a mut IdAlloc> {
        Ok(match ids.entry(table_id) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let next = self
                    .max_stored_row_id(table_id)?
                    .map_or(1, |m| m.saturating_add(1))
                    .max(1);
                v.insert(IdAlloc {
                    next,
                    fresh_above: next - 1,
                    outstanding: HashMap::new(),
                })
            }
        })
    }

    /// Allocates a row id for `table_id`: (id, fresh), where a fresh id is above every id used
    /// so far. Only after an AUTOINCREMENT reset can an id be not fresh. `owner` (a
    /// transaction's key, for AUTOINCREMENT tables) keeps the id outstanding until
    /// [`DbCore::release_row_ids`], so a concurrent reset stays above it.
    pub fn alloc_row_id(&self, table_id: u32, owner: Option<u64>) -> Result<(i64, bool)> {
        let mut ids = self.row_ids.lock();
        let a = self.id_alloc(&mut ids, table_id)?;
        let next = a.next;
        if next == i64::MAX {
            return Err(Error::new(
                SqlState::LimitExceeded,
                "row id space of the table is exhausted",
            ));
        }
        a.next = next + 1;
        if let Some(o) = owner {
            let m = a.outstanding.entry(o).or_insert(next);
            *m = (*m).max(next);
        }
        Ok((next, next > a.fresh_above))
    }

    /// Forgets a finished transaction's outstanding allocations.
    pub fn release_row_ids(&self, owner: u64, tables: &[u32]) {
        let mut ids = self.row_ids.lock();
        for t in tables {
            if let Some(a) = ids.get_mut(t) {
                a.outstanding.remove(&owner);
            }
        }
    }

    /// Notes an explicitly chosen row id so later allocations go above it.
    /// The id [`alloc_row_id`](Self::alloc_row_id) would hand out next, without taking it
    /// (another connection may take it first: only for checks the write repeats).
    pub fn peek_row_id(&self, table_id: u32) -> Result<i64> {
        let ids = self.row_ids.lock();
        match ids.get(&table_id) {
            Some(a) => Ok(a.next),
            None => {
                drop(ids);
                Ok(self
                    .max_stored_row_id(table_id)?
                    .map_or(1, |m| m.saturating_add(1))
                    .max(1))
            }
        }
    }

    pub fn note_row_id(&self, table_id: u32, row_id: i64) -> Result<()> {
        let mut ids = self.row_ids.lock();
        let a = self.id_alloc(&mut ids, table_id)?;
        a.next = a.next.max(row_id.saturating_add(1));
        Ok(())
    }

    /// The stored AUTOINCREMENT mark of a table (its committed `sqlite_sequence.seq`).
    pub fn stored_sequence(&self, table_id: u32) -> Result<Option<i64>> {
        Ok(self
            .kv
            .get(&seq_key(table_id))?
            .and_then(|b| b.as_ref().try_into().ok().map(i64::from_be_bytes)))
    }

    /// Applies `sqlite_sequence` writes to the allocator (under the commit lock, after the
    /// commit is applied): the next id becomes SQLite's `max(seq, largest live row id) + 1`,
    /// but never at or below an id another unfinished transaction holds.
    fn apply_sequence_resets(&self, resets: &[SequenceReset], owner: u64) -> Result<()> {
        let mut ids = self.row_ids.lock();
        for r in resets {
            let a = self.id_alloc(&mut ids, r.table_id)?;
            let held = a
                .outstanding
                .iter()
                .filter(|(o, _)| **o != owner)
                .map(|(_, id)| *id)
                .max()
                .unwrap_or(0);
            let floor = r.seq.unwrap_or(0).max(r.live_max).max(held).max(0);
            let next = floor.saturating_add(1);
            if next < a.next {
                a.fresh_above = a.fresh_above.max(a.next - 1);
            }
            a.next = next;
        }
        Ok(())
    }

    fn max_stored_row_id(&self, table_id: u32) -> Result<Option<i64>> {
        let p = keys::table_prefix(table_id);
        let from_rows = self
            .kv
            .last_in(&p, &prefix_end(&p))?
            .and_then(|(k, _)| keys::parse_row_version_key(&k).map(|(_, r, _)| r));
        let from_seq = self
            .kv
            .get(&seq_key(table_id))?
            .and_then(|b| b.as_ref().try_into().ok().map(i64::from_be_bytes));
        Ok(match (from_rows, from_seq) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        })
    }

    /// Validates, applies and logs one transaction; returns its commit timestamp once durable
    /// (or written, under `Normal`).
    pub fn commit(&self, req: CommitRequest) -> Result<u64> {
        self.check_open()?;
        let _span = info_span!("ormdb.commit", rows = req.rows.len()).entered();
        let mut write_keys: Vec<Vec<u8>> =
            Vec::with_capacity(req.rows.len() + req.index_entries.len());
        for (t, r, _) in &req.rows {
            write_keys.push(keys::row_key(*t, *r));
        }
        write_keys.extend(req.index_entries.iter().cloned());
        write_keys.sort_unstable();
        write_keys.dedup();
        let write_keys = Arc::new(write_keys);
        let mut read_set = req.read_set;
        read_set.seal();
        let schema_bytes = req.new_schema.as_ref().map(|b| b.to_bytes()).transpose()?;
        let gc_candidates = req.gc_candidates;

        let (ts, appended, pending) = {
            let mut st = self.oracle.commit.lock();
            self.check_open()?;
            if st.catalog_ts > req.snapshot_ts {
                self.metrics.conflicts.fetch_add(1, Ordering::Relaxed);
                return Err(Error::conflict(
                    "the schema changed since the transaction began",
                ));
            }
            // Every commit above the snapshot is in `recent` from the moment it takes its
            // timestamp, applied to the store or not: validation does not depend on the apply.
            for c in st.recent.iter().rev() {
                if c.ts <= req.snapshot_ts {
                    break;
                }
                if let Some(k) = c.keys.iter().find(|k| read_set.contains(k)) {
                    self.metrics.conflicts.fetch_add(1, Ordering::Relaxed);
                    return Err(Error::conflict(describe_key(k)));
                }
            }
            let ts = st.next_ts;
            // Before the commit becomes visible: decoded table images get its row versions.
            // (A schema change drops them all.)
            self.query
                .tables
                .note_commit(ts, &req.rows, req.new_schema.is_some(), || {
                    self.latest_schema()
                });
            let mut batch = Batch::default();
            for (t, r, v) in req.rows {
                batch.put(keys::row_version_key(t, r, ts), v);
            }
            for k in req.index_entries {
                batch.put(k, Vec::new());
            }
            if let Some(rec) = req.change_record {
                batch.put(keys::change_key(ts), rec);
            }
            if let Some(b) = &schema_bytes {
                batch.put(keys::catalog_key(ts), b.clone());
            }
            let writes_sequences = !req.sequences.is_empty() || !req.sequence_resets.is_empty();
            for (t, s) in req.sequences {
                // Transactions commit in another order than they allocated ids: keep the larger.
                let s = match self.stored_sequence(t) {
                    Ok(cur) => cur.map_or(s, |c| c.max(s)),
                    Err(e) => {
                        self.poison(&e);
                        return Err(e);
                    }
                };
                batch.put(seq_key(t), s.to_be_bytes().to_vec());
            }
            for r in &req.sequence_resets {
                match r.seq {
                    Some(v) => batch.put(seq_key(r.table_id), v.to_be_bytes().to_vec()),
                    None => batch.delete(seq_key(r.table_id)),
                }
            }
            if ts > self.reserved_ts.load(Ordering::Acquire) {
                if let Err(e) = self.extend_reservation(ts) {
                    self.poison(&e);
                    return Err(e);
                }
            }
            // Log first, in timestamp order: under `full` the record is written and its device
            // write started (by this thread after the lock, or by the syncer thread when other
            // records are queued) while this thread applies it to the store. Checkpoints rotate the log
            // under this lock and wait for the apply watermark to pass every record of the old
            // segments before syncing the store.
            let appended = match self.log.append(ts, &batch) {
                Ok(a) => a,
                Err(e) => {
                    self.poison(&e);
                    return Err(e);
                }
            };
            // Keys that are not versioned by the commit timestamp (AUTOINCREMENT marks, read
            // then written here) must be written in timestamp order, so such commits, like
            // schema changes (rare), apply under the lock. The others apply after it is
            // released, concurrently with each other.
            let inline = schema_bytes.is_some() || writes_sequences;
            let pending = if inline {
                if let Err(e) = self.kv.apply_unordered(&batch) {
                    self.poison(&e);
                    return Err(e);
                }
                if !req.sequence_resets.is_empty() {
                    if let Err(e) =
                        self.apply_sequence_resets(&req.sequence_resets, req.alloc_owner)
                    {
                        self.poison(&e);
                        return Err(e);
                    }
                }
                None
            } else {
                Some(batch)
            };
            st.next_ts += 1;
            st.last_commit = ts;
            st.recent.push_back(CommittedWrites {
                ts,
                keys: write_keys,
            });
            if let Some(bundle) = req.new_schema {
                st.catalog_ts = ts;
                self.catalog
                    .write()
                    .push((ts, Arc::new(Schema::new(bundle))));
            }
            let oldest = self.oracle.oldest_snapshot();
            while st.recent.front().is_some_and(|c| c.ts <= oldest) {
                st.recent.pop_front();
            }
            (ts, appended, pending)
        };
        let lsn = appended.lsn;
        if appended.lone && self.durability == Durability::Full {
            // Start the device write of the record now and sync it after the apply, so the
            // apply overlaps the write instead of preceding it. Records handed to the syncer
            // are already on their way.
            self.log.write_ahead(lsn).inspect_err(|e| self.poison(e))?;
        }
        if let Some(batch) = pending {
            // A panic inside the store would leave the watermark below this commit for good and
            // hang every later committer in `wait_applied`: poison first, then let it unwind.
            let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.kv.apply_unordered(&batch)
            }))
            .unwrap_or_else(|panic| {
                self.poison(&Error::internal(
                    "the store panicked while applying a commit",
                ));
                std::panic::resume_unwind(panic)
            });
            if let Err(e) = applied {
                // The record may still become durable: the outcome is unknown, as with a lost
                // connection, and the database refuses further writes until reopened. The
                // watermark never passes this commit, so nothing of it becomes visible.
                self.poison(&e);
                return Err(e);
            }
        }
        let applied = self.mark_applied(ts)?;
        let deferred = self.durability == Durability::Full
            && applied >= ts
            && schema_bytes.is_none()
            && DEFER.with(|d| {
                let armed = d.get() == Defer::Armed;
                if armed {
                    d.set(Defer::Pending(DurableTicket { lsn, ts }));
                }
                armed
            });
        match self.durability {
            // Acknowledged through `when_durable`, which also makes it visible.
            Durability::Full if deferred => {}
            Durability::Full => {
                let synced = self
                    .log
                    .persist(lsn, true)
                    .inspect_err(|e| self.poison(e))?;
                let applied = if applied >= ts {
                    applied
                } else {
                    self.wait_applied(ts)?
                };
                self.oracle.advance_visible(synced.min(applied));
            }
            Durability::Normal => {
                if applied < ts {
                    self.wait_applied(ts)?;
                }
                self.log
                    .persist(lsn, false)
                    .inspect_err(|e| self.poison(e))?;
            }
        }
        self.metrics.commits.fetch_add(1, Ordering::Relaxed);
        if !gc_candidates.is_empty() {
            self.gc_queue.lock().extend(gc_candidates);
        }
        Ok(ts)
    }

    /// Runs `done` once the deferred commit `t` (see [`defer_durable_commit`]) is durable, after
    /// making it visible; with the error instead if the log failed first (the database is then
    /// poisoned, as after a failed sync in [`DbCore::commit`]). Runs on this thread at once, or
    /// on whichever thread finishes the log round that syncs the commit: `done` must be short.
    pub fn when_durable(
        self: &Arc<Self>,
        t: DurableTicket,
        done: impl FnOnce(Result<()>) + Send + 'static,
    ) {
        let core = self.clone();
        self.log.on_synced(
            t.lsn,
            Box::new(move |r| match r {
                Ok(synced) => {
                    // Every commit at or below `t.ts` is applied (the watermark had passed it
                    // when the commit was deferred) and logged at or below `t.lsn`, now synced;
                    // so is every applied one up to the sync's newest, which the first
                    // acknowledgement of a round makes visible for the whole round.
                    let applied = core.applying.lock().watermark;
                    core.oracle.advance_visible(synced.min(applied));
                    done(Ok(()))
                }
                Err(e) => {
                    core.poison(&e);
                    done(Err(e))
                }
            }),
        );
    }

    /// Before a transaction begins: a commit deferred on this thread (see
    /// [`defer_durable_commit`]) is waited for and made visible, so the thread reads its writes.
    /// Its ticket stays for [`take_deferred_commit`]; its acknowledgement then runs at once.
    pub(crate) fn settle_deferred_commit(&self) -> Result<()> {
        if let Defer::Pending(t) = DEFER.with(|d| d.get()) {
            self.log
                .persist(t.lsn, true)
                .inspect_err(|e| self.poison(e))?;
            self.oracle.advance_visible(t.ts);
        }
        Ok(())
    }

    /// Records that commit `ts` is fully applied to the store and advances the watermark over
    /// every commit applied in order; under `normal` the watermark is also the visible
    /// timestamp. Returns the watermark.
    fn mark_applied(&self, ts: u64) -> Result<u64> {
        let mut a = self.applying.lock();
        if a.watermark + 1 == ts {
            a.watermark = ts;
            while a.done.first() == Some(&(a.watermark + 1)) {
                a.done.pop_first();
                a.watermark += 1;
            }
            let wm = a.watermark;
            if self.durability == Durability::Normal {
                // Under the lock, so the visible timestamp never moves past a commit that
                // another thread's later, smaller watermark call would still report.
                self.oracle.advance_visible(wm);
            }
            drop(a);
            self.applied_cv.notify_all();
            Ok(wm)
        } else if a.watermark >= ts {
            Err(Error::internal(format!(
                "commit {ts} applied twice (watermark {})",
                a.watermark
            )))
        } else {
            a.done.insert(ts);
            Ok(a.watermark)
        }
    }

    /// Waits until every commit up to `ts` is applied to the store; returns the watermark.
    /// Fails if the database was poisoned meanwhile (an apply failed: the watermark may never
    /// get there).
    fn wait_applied(&self, ts: u64) -> Result<u64> {
        let mut a = self.applying.lock();
        while a.watermark < ts {
            if self.is_poisoned.load(Ordering::Acquire) {
                drop(a);
                self.check_open()?;
                return Err(Error::new(
                    SqlState::IoError,
                    "an earlier commit failed to apply to the store; reopen the database",
                ));
            }
            self.applied_cv.wait(&mut a);
        }
        Ok(a.watermark)
    }

    /// Durably reserves the next block of commit timestamps (called under the commit lock, once
    /// per [`TS_RESERVATION`] commits): recovery aborts every timestamp up to the reservation
    /// that is not durable, so the store must never hold a version above it.
    fn extend_reservation(&self, ts: u64) -> Result<()> {
        let r = ts + TS_RESERVATION - 1;
        let mut b = Batch::default();
        b.put(META_RESERVED.to_vec(), r.to_be_bytes().to_vec());
        self.kv.apply(&b)?;
        self.kv.sync()?;
        self.reserved_ts.store(r, Ordering::Release);
        Ok(())
    }

    /// On a clean close: shrinks the timestamp reservation to the last commit, which the final
    /// checkpoint made durable, so the next open has no timestamps to abort.
    pub fn release_reservation(&self) -> Result<()> {
        let commits = self.oracle.commit.lock();
        let last = commits.last_commit;
        if self.checkpoint_recorded.load(Ordering::Acquire) < last {
            return Ok(()); // not everything is checkpointed: keep the reservation
        }
        let mut b = Batch::default();
        b.put(META_RESERVED.to_vec(), last.to_be_bytes().to_vec());
        self.kv.apply(&b)?;
        self.kv.sync()?;
        self.reserved_ts.store(last, Ordering::Release);
        Ok(())
    }

    /// Whether `ts` belongs to a commit that never became durable (its versions are ignored).
    #[inline]
    pub fn is_aborted(&self, ts: u64) -> bool {
        in_aborted_ranges(&self.aborted, ts)
    }

    pub fn has_aborted(&self) -> bool {
        !self.aborted.is_empty()
    }

    pub fn aborted_ranges(&self) -> &[(u64, u64)] {
        &self.aborted
    }

    /// Waits (up to `timeout`) until every commit that has taken a timestamp is visible. A
    /// transaction retried after a 40001 calls this first: otherwise its new snapshot may still
    /// miss the commit it conflicted with (not yet synced) and conflict again.
    pub fn wait_for_committed(&self, timeout: std::time::Duration) {
        let target = self.oracle.commit.lock().next_ts - 1;
        let deadline = std::time::Instant::now() + timeout;
        while self.oracle.visible_ts() < target && !self.is_closed() {
            let now = std::time::Instant::now();
            if now >= deadline {
                return;
            }
            self.oracle
                .wait_visible_after(self.oracle.visible_ts(), deadline - now);
        }
    }

    /// Flushes the store durably and drops the commit log segments it now covers.
    pub fn checkpoint(&self) -> Result<()> {
        let _span = info_span!("ormdb.checkpoint").entered();
        let (old, applied) = {
            // Every record of the segments that rotate out is appended; the store is synced
            // only once all of them are applied (they may be applying outside the lock now).
            let commits = self.oracle.commit.lock();
            (self.log.rotate()?, commits.last_commit)
        };
        self.wait_applied(applied)?;
        // Commits do not write `last_ts`: the checkpoint records what the sync covers.
        if applied > stored_last_ts(self.kv.as_ref())? {
            let mut b = Batch::default();
            b.put(keys::META_LAST_TS.to_vec(), applied.to_be_bytes().to_vec());
            self.kv.apply_unordered(&b)?;
        }
        // Every commit applied to the store before the sync is durable after it.
        self.kv.sync()?;
        if applied > self.checkpoint_recorded.load(Ordering::Acquire) {
            write_checkpoint_record(&self._dir_guard.0, applied)?;
            self.checkpoint_recorded.store(applied, Ordering::Release);
        }
        self.log.remove_segments(&old)?;
        self.metrics.checkpoints.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Schemas a snapshot at or after `horizon` can see (and drops older in-memory versions).
    fn live_schemas(&self, horizon: u64) -> Result<Vec<Arc<Schema>>> {
        let live_schema = self.schema_at(horizon)?;
        let mut cat = self.catalog.write();
        let keep_from = cat.iter().rposition(|(t, _)| *t <= horizon).unwrap_or(0);
        cat.drain(..keep_from);
        Ok(std::iter::once(live_schema)
            .chain(cat.iter().map(|(_, s)| s.clone()))
            .collect())
    }

    /// Full garbage collection: scans every row version and index entry. Removes what no live
    /// or future snapshot can read, including the rows and index entries of dropped tables.
    pub fn gc(&self) -> Result<GcStats> {
        let _span = info_span!("ormdb.gc", full = true).entered();
        let horizon = self.oracle.oldest_snapshot();
        let mut stats = GcStats {
            horizon,
            ..Default::default()
        };
        let schemas = self.live_schemas(horizon)?;
        let live_tables: std::collections::HashSet<u32> = schemas
            .iter()
            .flat_map(|s| s.entities().iter().map(|e| e.id))
            .collect();
        // Everything queued for incremental collection is covered by this pass.
        self.gc_queue.lock().clear();

        // Row versions.
        let rows = [keys::ROW];
        let mut batch = Batch::default();
        let mut cur_row: Option<(u32, i64)> = None;
        let mut kept_old = false;
        // Raw: only a tombstone's flags are read here, and tombstones are never in the value log.
        for item in self.kv.scan_raw(&rows, &prefix_end(&rows)) {
            let (k, v) = item?;
            let Some((t, r, ts)) = keys::parse_row_version_key(&k) else {
                continue;
            };
            if !live_tables.contains(&t) || self.is_aborted(ts) {
                batch.delete(k.to_vec());
                stats.row_versions_removed += 1;
            } else {
                if cur_row != Some((t, r)) {
                    cur_row = Some((t, r));
                    kept_old = false;
                }
                if ts <= horizon {
                    if kept_old {
                        batch.delete(k.to_vec());
                        stats.row_versions_removed += 1;
                    } else {
                        kept_old = true;
                        // The newest version at the horizon: a tombstone there can go, because
                        // every older version goes with it.
                        if Pointer::decode(&v).is_none()
                            && decode_header(&v)?.0 & FLAG_TOMBSTONE != 0
                        {
                            batch.delete(k.to_vec());
                            stats.row_versions_removed += 1;
                        }
                    }
                }
            }
            if batch.len() >= 4096 {
                self.kv.apply(&std::mem::take(&mut batch))?;
            }
        }
        if !batch.is_empty() {
            self.kv.apply(&std::mem::take(&mut batch))?;
        }

        // Index entries: remove those whose index is gone or that no remaining row version
        // matches. Re-verified under the commit lock, so a concurrent commit that re-adds the
        // same entry cannot lose it.
        let index_owner = index_owners(&schemas);
        let idx = [keys::INDEX];
        let mut candidates = Vec::new();
        for item in self.kv.scan(&idx, &prefix_end(&idx)) {
            let (k, _) = item?;
            if !self.index_entry_live(&k, &index_owner)? {
                candidates.push(k.to_vec());
            }
            if candidates.len() >= 1024 {
                stats.index_entries_removed +=
                    self.remove_index_entries(&mut candidates, &index_owner)?;
            }
        }
        stats.index_entries_removed += self.remove_index_entries(&mut candidates, &index_owner)?;
        self.prune_changes(&mut stats)?;
        self.metrics.gc_runs.fetch_add(1, Ordering::Relaxed);
        Ok(stats)
    }

    /// Incremental garbage collection: only the rows that commits updated or deleted since the
    /// last pass (new rows make no garbage). Each chunk runs under the commit lock, so the index
    /// entries it removes cannot be re-added concurrently by a commit it did not see.
    pub fn gc_incremental(&self) -> Result<GcStats> {
        let _span = info_span!("ormdb.gc", full = false).entered();
        let horizon = self.oracle.oldest_snapshot();
        let mut stats = GcStats {
            horizon,
            ..Default::default()
        };
        let mut rows = std::mem::take(&mut *self.gc_queue.lock());
        if rows.is_empty() {
            self.prune_changes(&mut stats)?;
            return Ok(stats);
        }
        rows.sort_unstable();
        rows.dedup();
        let schemas = self.live_schemas(horizon)?;
        // Table id -> every index definition a live snapshot may use, with its entity.
        let mut indexes: HashMap<u32, Vec<(Arc<Schema>, usize, usize)>> = HashMap::new();
        for (id, owner) in index_owners(&schemas) {
            let table = owner.0.entity_at(owner.1).id;
            let list = indexes.entry(table).or_default();
            if !list
                .iter()
                .any(|(s, e, i)| s.entity_at(*e).indexes[*i].id == id)
            {
                list.push(owner);
            }
        }
        let mut requeue = Vec::new();
        for chunk in rows.chunks(256) {
            let commit_lock = self.oracle.commit.lock();
            // A commit still applying could have written an index entry but not yet the row
            // version that keeps it live: wait for the in-flight applies to finish.
            self.wait_applied(commit_lock.last_commit)?;
            let mut batch = Batch::default();
            for &(t, r) in chunk {
                let rk = keys::row_key(t, r);
                let mut kept_old = false;
                let mut kept = 0usize;
                let mut dead_keys = std::collections::BTreeSet::new();
                let mut live_keys = std::collections::BTreeSet::new();
                let no_indexes = Vec::new();
                let ixs = indexes.get(&t).unwrap_or(&no_indexes);
                for item in self.kv.scan(&rk, &prefix_end(&rk)) {
                    let (k, v) = item?;
                    let Some((_, _, ts)) = keys::parse_row_version_key(&k) else {
                        continue;
                    };
                    if self.is_aborted(ts) {
                        batch.delete(k.to_vec());
                        stats.row_versions_removed += 1;
                        continue;
                    }
                    let row = decode_row(&v)?;
                    let remove = if ts <= horizon {
                        let r = kept_old || row.is_tombstone();
                        kept_old = true;
                        r
                    } else {
                        false
                    };
                    if !row.is_tombstone() {
                        for (s, ep, ip) in ixs {
                            let e = s.entity_at(*ep);
                            let ix = &e.indexes[*ip];
                            // A version a partial index leaves out has no entry to keep.
                            let Ok(Some(vals)) = ix.entry_values(e, &row.values) else {
                                continue;
                            };
                            let key = keys::index_entry_key(ix.id, &vals, r);
                            if remove {
                                dead_keys.insert(key)
                            } else {
                                live_keys.insert(key)
                            };
                        }
                    }
                    if remove {
                        batch.delete(k.to_vec());
                        stats.row_versions_removed += 1;
                    } else {
                        kept += 1;
                    }
                }
                for k in dead_keys.difference(&live_keys) {
                    batch.delete(k.clone());
                    stats.index_entries_removed += 1;
                }
                if kept > 1 {
                    requeue.push((t, r)); // versions newer than the horizon may become garbage later
                }
            }
            self.kv.apply(&batch)?;
        }
        self.gc_queue.lock().extend(requeue);
        self.prune_changes(&mut stats)?;
        self.metrics.gc_runs.fetch_add(1, Ordering::Relaxed);
        Ok(stats)
    }

    /// Rows waiting for incremental garbage collection.
    pub fn gc_pending(&self) -> usize {
        self.gc_queue.lock().len()
    }

    /// Drops change records older than the retention window.
    fn prune_changes(&self, stats: &mut GcStats) -> Result<()> {
        let visible = self.oracle.visible_ts();
        let new_floor = visible.saturating_sub(self.change_retention);
        if new_floor > self.changes_floor.load(Ordering::Acquire) {
            let start = [keys::CHANGE];
            let end = keys::change_key(new_floor.saturating_add(1));
            let mut batch = Batch::default();
            for item in self.kv.scan_raw(&start, &end) {
                let (k, _) = item?;
                batch.delete(k.to_vec());
                stats.change_records_removed += 1;
            }
            batch.put(
                META_CHANGES_FLOOR.to_vec(),
                new_floor.to_be_bytes().to_vec(),
            );
            self.kv.apply(&batch)?;
            self.changes_floor.store(new_floor, Ordering::Release);
        }
        Ok(())
    }

    fn remove_index_entries(&self, cands: &mut Vec<Vec<u8>>, owner: &IndexOwners) -> Result<u64> {
        if cands.is_empty() {
            return Ok(0);
        }
        let st = self.oracle.commit.lock();
        // As in `gc_incremental`: no commit may be half applied while entries are judged.
        self.wait_applied(st.last_commit)?;
        let mut batch = Batch::default();
        for k in cands.drain(..) {
            if !self.index_entry_live(&k, owner)? {
                batch.delete(k);
            }
        }
        let n = batch.len() as u64;
        self.kv.apply(&batch)?;
        Ok(n)
    }

    /// Whether some stored version of the entry's row still has the entry's values.
    fn index_entry_live(&self, k: &[u8], owner: &IndexOwners) -> Result<bool> {
        let Some(index_id) = k
            .get(1..5)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
        else {
            return Ok(false);
        };
        let Some((schema, ep, ip)) = owner.get(&index_id) else {
            return Ok(false);
        };
        let entity = schema.entity_at(*ep);
        let fields = &entity.indexes[*ip].fields;
        let Some(row_id) = keys::index_entry_row_id(k) else {
            return Ok(false);
        };
        let rk = keys::row_key(entity.id, row_id);
        for item in self.kv.scan(&rk, &prefix_end(&rk)) {
            let (vk, v) = item?;
            if keys::parse_row_version_key(&vk).is_some_and(|(_, _, ts)| self.is_aborted(ts)) {
                continue;
            }
            let row = decode_row(&v)?;
            if row.is_tombstone() {
                continue;
            }
            let vals: Vec<_> = fields
                .iter()
                .map(|f| entity.stored_value(&row.values, *f))
                .collect();
            if keys::index_entry_key(index_id, &vals, row_id) == k {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Index id -> (schema, entity position, index position) for every index a live snapshot sees.
type IndexOwners = HashMap<u32, (Arc<Schema>, usize, usize)>;

fn index_owners(schemas: &[Arc<Schema>]) -> IndexOwners {
    let mut owners = HashMap::new();
    for s in schemas {
        for (ep, e) in s.entities().iter().enumerate() {
            for (ip, ix) in e.indexes.iter().enumerate() {
                owners.insert(ix.id, (s.clone(), ep, ip));
            }
        }
    }
    owners
}

fn describe_key(k: &[u8]) -> String {
    match k.first() {
        Some(&keys::ROW) if k.len() >= 13 => format!(
            "row {} of table #{} was changed by another transaction",
            keys::row_id_from_bytes(&k[5..13]),
            u32::from_be_bytes(k[1..5].try_into().unwrap_or([0; 4]))
        ),
        Some(&keys::INDEX) => {
            "an index range this transaction read was changed by another transaction".into()
        }
        _ => "data this transaction read was changed by another transaction".into(),
    }
}

/// A file in the database directory holding the newest commit timestamp that a checkpoint made
/// durable in the store (decimal, one line). Checked on open: see [`DbCore::open`].
const CHECKPOINT_RECORD: &str = "ORMDB.checkpoint";

fn read_checkpoint_record(dir: &Path) -> Result<Option<u64>> {
    match std::fs::read(dir.join(CHECKPOINT_RECORD)) {
        Ok(b) => std::str::from_utf8(&b)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| {
                Error::corrupted(format!(
                    "the checkpoint record {} is damaged",
                    dir.join(CHECKPOINT_RECORD).display()
                ))
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("reading the checkpoint record", e)),
    }
}

/// Replaces the checkpoint record atomically and durably.
fn write_checkpoint_record(dir: &Path, ts: u64) -> Result<()> {
    // Checkpoints run concurrently (the background thread and explicit calls): unserialized,
    // one writer's rename took the shared temporary file away from the other, whose checkpoint
    // then failed with "No such file or directory", and an older timestamp could replace a
    // newer one. Serialize the writers and keep the record monotonic.
    static WRITERS: Mutex<()> = Mutex::new(());
    let _writing = WRITERS.lock();
    if read_checkpoint_record(dir)?.is_some_and(|cur| cur >= ts) {
        return Ok(());
    }
    let tmp = dir.join(format!("{CHECKPOINT_RECORD}.tmp"));
    std::fs::write(&tmp, format!("{ts}\n"))
        .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|_| std::fs::rename(&tmp, dir.join(CHECKPOINT_RECORD)))
        .map_err(|e| Error::io("writing the checkpoint record", e))?;
    crate::storage::sled_kv::sync_dir(dir)
}

/// The last commit timestamp recorded in the store (0 for an empty store).
fn stored_last_ts(kv: &dyn Kv) -> Result<u64> {
    Ok(read_u64(kv, keys::META_LAST_TS)?.unwrap_or(0))
}

/// Whether `ts` lies in one of the aborted ranges `(a, b]`.
pub fn in_aborted_ranges(ranges: &[(u64, u64)], ts: u64) -> bool {
    ranges.iter().any(|(a, b)| ts > *a && ts <= *b)
}

impl Drop for DbCore {
    fn drop(&mut self) {
        self.stop_syncer();
    }
}
