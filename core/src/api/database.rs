use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tracing::warn;

use super::connection::Connection;
use crate::catalog::SchemaBundle;
use crate::changes::{ChangeToken, Subscription, SubscriptionFilter};
use crate::error::{Error, Result, SqlState};
use crate::exec::mutate::WriteLimits;
use crate::txn::core::GcStats;
use crate::txn::{DbCore, Durability};

/// Name of the marker file that identifies an ORMDB database directory.
const MARKER: &str = "ORMDB";
const MARKER_CONTENT: &str = "ormdb database format 1\n";

/// Default [`Options::value_threshold`].
pub const DEFAULT_VALUE_THRESHOLD: usize = 512;

/// How a database is opened.
#[derive(Debug, Clone)]
pub struct Options {
    pub durability: Durability,
    /// sled page cache size in bytes (sled's own default is 1 GiB; ours is 64 MiB). An upper
    /// bound: the cache only holds pages that were read or written.
    pub cache_capacity: u64,
    /// Bytes of decoded table images (read-mostly tables kept decoded for graph fetches)
    /// across all tables, least recently read evicted first; 0 disables them. Default 64 MiB.
    pub image_budget: u64,
    /// Under `Normal` durability, how often the commit log is synced.
    pub sync_interval: Duration,
    /// Checkpoint when this many log bytes accumulated...
    pub checkpoint_bytes: u64,
    /// ...or when this much time passed with any log bytes.
    pub checkpoint_interval: Duration,
    /// How often old row versions are garbage-collected (when anything committed).
    pub gc_interval: Duration,
    /// How many commits of change log to retain for subscribers that resume.
    pub change_retention: u64,
    pub create_if_missing: bool,
    pub limits: WriteLimits,
    /// Under `Full` durability, write the commit log with `O_DIRECT` and native AIO where the
    /// file system allows (Linux; falls back to the page cache elsewhere). Default on.
    pub log_direct_io: bool,
    /// Row versions and change records longer than this many bytes keep their value in the
    /// value log (files under `values/`) and a 21-byte pointer in the store, so the store's
    /// pages stay small and cached when rows are large; 0 keeps every new value in the store
    /// (values already in the value log are still read). Default 512.
    pub value_threshold: usize,
    /// Bytes of memory for row heads: the newest version's place in the value log of each
    /// recently read or written row whose value is there, so a point read of it skips the
    /// store's search (24 bytes a row, in pages of 1024 consecutive row ids; about 23 MiB for
    /// 1M rows). Pages are kept until the database closes; 0 disables. Default 64 MiB.
    pub row_head_budget: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Full,
            cache_capacity: 64 << 20,
            image_budget: crate::exec::table_cache::DEFAULT_BUDGET,
            sync_interval: Duration::from_millis(100),
            checkpoint_bytes: 64 << 20,
            checkpoint_interval: Duration::from_secs(30),
            gc_interval: Duration::from_secs(10),
            change_retention: 1_000_000,
            create_if_missing: true,
            limits: WriteLimits::default(),
            log_direct_io: true,
            value_threshold: DEFAULT_VALUE_THRESHOLD,
            row_head_budget: 64 << 20,
        }
    }
}

impl Options {
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }
    pub fn value_threshold(mut self, bytes: usize) -> Self {
        self.value_threshold = bytes;
        self
    }
    pub fn row_head_budget(mut self, bytes: u64) -> Self {
        self.row_head_budget = bytes;
        self
    }
    pub fn log_direct_io(mut self, on: bool) -> Self {
        self.log_direct_io = on;
        self
    }
    pub fn cache_capacity(mut self, bytes: u64) -> Self {
        self.cache_capacity = bytes;
        self
    }
    pub fn image_budget(mut self, bytes: u64) -> Self {
        self.image_budget = bytes;
        self
    }
}

struct Background {
    stop: Mutex<bool>,
    cv: Condvar,
}

struct DbInner {
    core: Option<Arc<DbCore>>,
    path: PathBuf,
    options: Options,
    background: Arc<Background>,
    thread: Mutex<Option<JoinHandle<()>>>,
    temp: Option<tempfile::TempDir>,
}

/// An open database. Cheap to clone; every clone and every open of the same path in this
/// process share one engine (one sled instance, one commit pipeline).
#[derive(Clone)]
pub struct Database {
    inner: Arc<DbInner>,
}

fn registry() -> &'static Mutex<HashMap<PathBuf, Weak<DbInner>>> {
    static REG: OnceLock<Mutex<HashMap<PathBuf, Weak<DbInner>>>> = OnceLock::new();
    REG.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Per-table figures for [`Database::info`].
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub name: String,
    pub rows: u64,
    pub fields: usize,
    pub indexes: usize,
    pub soft_delete: bool,
}

#[derive(Debug, Clone)]
pub struct DbInfo {
    pub path: PathBuf,
    pub schema_version: u64,
    pub last_commit: u64,
    pub size_on_disk: u64,
    pub tables: Vec<TableInfo>,
}

fn prepare_dir(path: &Path, create: bool) -> Result<()> {
    if path.exists() {
        if !path.is_dir() {
            return Err(Error::new(
                SqlState::DataCorrupted,
                format!(
                    "{} is a file, not an ORMDB database (an ORMDB database is a directory)",
                    path.display()
                ),
            ));
        }
        let marker = path.join(MARKER);
        if marker.exists() {
            // Read as bytes: a marker that is not even UTF-8 is a damaged marker (XX001), not
            // an I/O error.
            let content =
                fs::read(&marker).map_err(|e| Error::io("reading the database marker", e))?;
            if content != MARKER_CONTENT.as_bytes() {
                return Err(Error::corrupted(format!(
                    "{} has an unknown format marker {:?}",
                    path.display(),
                    String::from_utf8_lossy(&content).trim()
                )));
            }
            return Ok(());
        }
        let empty = fs::read_dir(path)
            .map_err(|e| Error::io("reading the database directory", e))?
            .next()
            .is_none();
        if !empty {
            return Err(Error::new(
                SqlState::DataCorrupted,
                format!(
                    "{} is not an ORMDB database (a non-empty directory without the ORMDB marker)",
                    path.display()
                ),
            ));
        }
    } else if !create {
        return Err(Error::new(
            SqlState::IoError,
            format!("database {} does not exist", path.display()),
        ));
    } else {
        fs::create_dir_all(path).map_err(|e| Error::io("creating the database directory", e))?;
    }
    let tmp = path.join("ORMDB.tmp");
    fs::write(&tmp, MARKER_CONTENT)
        .and_then(|_| fs::File::open(&tmp)?.sync_all())
        .and_then(|_| fs::rename(&tmp, path.join(MARKER)))
        .map_err(|e| Error::io("writing the database marker", e))?;
    crate::storage::sled_kv::sync_dir(path)
}

impl Database {
    /// Opens (creating if allowed) the database directory at `path`.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Database> {
        let path = path.as_ref();
        prepare_dir(path, options.create_if_missing)?;
        let canonical = path
            .canonicalize()
            .map_err(|e| Error::io("resolving the database path", e))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut reg = registry().lock();
            match reg.get(&canonical).map(|w| w.upgrade()) {
                Some(Some(inner)) => return Ok(Database { inner }),
                Some(None) if Instant::now() < deadline => {
                    // The previous instance is still closing; wait for it to release the files.
                    drop(reg);
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
                _ => {}
            }
            let db = Database::start(canonical.clone(), options, None)?;
            reg.insert(canonical, Arc::downgrade(&db.inner));
            return Ok(db);
        }
    }

    /// A database in a fresh temporary directory, removed when the last handle is dropped.
    pub fn temporary() -> Result<Database> {
        Database::temporary_with(Options::default())
    }

    pub fn temporary_with(options: Options) -> Result<Database> {
        let dir = tempfile::Builder::new()
            .prefix("ormdb-")
            .tempdir()
            .map_err(|e| Error::io("creating a temporary directory", e))?;
        let path = dir.path().to_path_buf();
        prepare_dir(&path, true)?;
        Database::start(path, options, Some(dir))
    }

    fn start(path: PathBuf, options: Options, temp: Option<tempfile::TempDir>) -> Result<Database> {
        let core = Arc::new(DbCore::open(
            &path,
            options.cache_capacity,
            options.durability,
            options.change_retention,
            options.log_direct_io,
            options.value_threshold,
            options.row_head_budget,
        )?);
        core.query.tables.set_budget(options.image_budget);
        let background = Arc::new(Background {
            stop: Mutex::new(false),
            cv: Condvar::new(),
        });
        let thread = spawn_background(core.clone(), background.clone(), options.clone())?;
        let db = Database {
            inner: Arc::new(DbInner {
                core: Some(core),
                path,
                options,
                background,
                thread: Mutex::new(Some(thread)),
                temp,
            }),
        };
        db.drop_orphaned_temp_tables()?;
        Ok(db)
    }

    /// Temporary tables (SQL `CREATE TEMP TABLE`) belong to a session; one that a crash left
    /// in the catalog has no session any more and goes before anyone can connect.
    fn drop_orphaned_temp_tables(&self) -> Result<()> {
        let mut tx = self.connect().begin()?;
        let orphans: Vec<String> = tx
            .schema()
            .entities()
            .iter()
            .filter(|e| crate::catalog::is_temp_entity_name(&e.name))
            .map(|e| e.name.clone())
            .collect();
        let orphan_views: Vec<String> = tx
            .schema()
            .views()
            .iter()
            .filter(|v| crate::catalog::is_temp_entity_name(&v.name))
            .map(|v| v.name.clone())
            .collect();
        if orphans.is_empty() && orphan_views.is_empty() {
            tx.rollback();
            return Ok(());
        }
        for name in &orphan_views {
            tx.drop_view(name, true)?;
        }
        for name in &orphans {
            tx.drop_entity(name)?;
        }
        tx.commit().map(|_| ())
    }

    pub(crate) fn core(&self) -> &Arc<DbCore> {
        self.inner.core.as_ref().expect("core present until drop")
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// A new connection with default settings (foreign keys enforced).
    pub fn connect(&self) -> Connection {
        Connection::new(self.clone())
    }

    /// The newest committed schema.
    pub fn schema(&self) -> SchemaBundle {
        self.core().latest_schema().bundle.clone()
    }

    /// Every schema version ever committed: (commit token, bundle), oldest first.
    pub fn schema_history(&self) -> Result<Vec<(ChangeToken, SchemaBundle)>> {
        self.core().schema_history()
    }

    /// The token of the newest visible commit.
    pub fn last_commit(&self) -> ChangeToken {
        self.core().oracle.visible_ts()
    }

    /// Subscribes to committed changes after `from` (None: from now on).
    pub fn subscribe(
        &self,
        from: Option<ChangeToken>,
        filter: SubscriptionFilter,
    ) -> Result<Subscription> {
        Subscription::new(self.core().clone(), from, filter)
    }

    /// Makes everything durable in the store and trims the commit log.
    pub fn checkpoint(&self) -> Result<()> {
        self.core().checkpoint()
    }

    /// Garbage-collects versions no snapshot can read: a full pass over every row version and
    /// index entry (the background thread runs cheaper incremental passes on its own).
    pub fn gc(&self) -> Result<GcStats> {
        self.core().gc()
    }

    /// Counts the live bytes of the value log now and removes the files at most half live,
    /// moving their live values (the background thread does this once enough was written).
    pub fn compact_values(&self) -> Result<crate::storage::vlog::CompactStats> {
        self.core().check_open()?;
        self.core().kv.compact_values(true)
    }

    /// What the row heads (the in-memory newest versions of rows whose value is in the value
    /// log; see [`Options::row_head_budget`]) hold, and how many point reads they answered.
    pub fn row_head_stats(&self) -> Result<crate::storage::row_heads::RowHeadStats> {
        self.core().check_open()?;
        Ok(self.core().kv.row_head_stats())
    }

    /// An incremental pass over the rows updated or deleted since the last pass.
    pub fn gc_incremental(&self) -> Result<GcStats> {
        self.core().gc_incremental()
    }

    /// Engine counters in Prometheus text format.
    pub fn metrics_text(&self) -> String {
        let core = self.core();
        let mut out = core.metrics.render_prometheus(&[
            (
                "ormdb_last_commit_token",
                "Token of the newest visible commit.",
                core.oracle.visible_ts(),
            ),
            (
                "ormdb_live_snapshots",
                "Open transactions (snapshots).",
                core.oracle.live_snapshots() as u64,
            ),
            (
                "ormdb_schema_version",
                "Current schema version.",
                core.latest_schema().version(),
            ),
        ]);
        let q = &core.query;
        let t = &q.tables;
        for (name, help, v) in [
            (
                "ormdb_table_image_hits_total",
                "Reads served from decoded table images.",
                t.hits.load(std::sync::atomic::Ordering::Relaxed),
            ),
            (
                "ormdb_table_image_ordered_reads_total",
                "Ordered index range reads served from decoded table images.",
                t.ordered_reads.load(std::sync::atomic::Ordering::Relaxed),
            ),
            (
                "ormdb_table_image_builds_total",
                "Decoded table images built by full scans (kept or not).",
                t.builds.load(std::sync::atomic::Ordering::Relaxed),
            ),
            (
                "ormdb_table_image_builds_skipped_total",
                "Image builds not started because another reader was building the same table's image.",
                t.builds_skipped.load(std::sync::atomic::Ordering::Relaxed),
            ),
            (
                "ormdb_table_image_builds_discarded_total",
                "Image builds not kept (a schema change or too many writes raced them, or they no longer fit).",
                t.builds_discarded.load(std::sync::atomic::Ordering::Relaxed),
            ),
            (
                "ormdb_table_image_index_builds_total",
                "Equality and ordered indexes built over decoded table images.",
                t.index_builds.load(std::sync::atomic::Ordering::Relaxed),
            ),
            (
                "ormdb_planner_stats_measurements_total",
                "Planner statistics measured by a scan (row counts, distinct-key samples).",
                q.stats
                    .measurements
                    .load(std::sync::atomic::Ordering::Relaxed),
            ),
            (
                "ormdb_table_image_invalidations_total",
                "Decoded table images dropped because their table was written.",
                t.invalidations.load(std::sync::atomic::Ordering::Relaxed),
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            ));
        }
        out.push_str(&format!(
            "# HELP ormdb_table_image_build_seconds_total CPU time of the threads building decoded table images (a root scan's own work included).\n# TYPE ormdb_table_image_build_seconds_total counter\normdb_table_image_build_seconds_total {:.6}\n",
            t.build_nanos.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e9
        ));
        let heads = core.kv.row_head_stats();
        out.push_str(&format!(
            "# HELP ormdb_row_head_hits_total Point reads answered from row heads (no search of the store).\n# TYPE ormdb_row_head_hits_total counter\normdb_row_head_hits_total {}\n",
            heads.hits
        ));
        out.push_str(&format!(
            "# HELP ormdb_row_head_bytes Bytes held by row heads.\n# TYPE ormdb_row_head_bytes gauge\normdb_row_head_bytes {}\n",
            heads.bytes
        ));
        out.push_str(&format!(
            "# HELP ormdb_row_head_budget_bytes Most bytes row heads may hold (Options::row_head_budget).\n# TYPE ormdb_row_head_budget_bytes gauge\normdb_row_head_budget_bytes {}\n",
            heads.budget
        ));
        out.push_str(&format!(
            "# HELP ormdb_table_images Decoded table images kept.\n# TYPE ormdb_table_images gauge\normdb_table_images {}\n",
            t.images()
        ));
        out.push_str(&format!(
            "# HELP ormdb_table_image_bytes Bytes held by decoded table images.\n# TYPE ormdb_table_image_bytes gauge\normdb_table_image_bytes {}\n",
            t.bytes()
        ));
        out.push_str(&format!(
            "# HELP ormdb_table_image_budget_bytes Most bytes decoded table images may hold (Options::image_budget).\n# TYPE ormdb_table_image_budget_bytes gauge\normdb_table_image_budget_bytes {}\n",
            t.budget()
        ));
        q.metrics.render_prometheus(
            q.cache.hits.load(std::sync::atomic::Ordering::Relaxed),
            q.cache.misses.load(std::sync::atomic::Ordering::Relaxed),
            &mut out,
        );
        out
    }

    /// Tables with exact row counts at the current snapshot, schema version, size on disk.
    pub fn info(&self) -> Result<DbInfo> {
        let conn = self.connect();
        let mut tx = conn.begin()?;
        let schema = tx.schema().clone();
        let mut tables = Vec::new();
        for e in schema.entities() {
            let rows = tx.count(&e.name)?;
            tables.push(TableInfo {
                name: e.name.clone(),
                rows,
                fields: e.fields.len(),
                indexes: e.indexes.len(),
                soft_delete: e.soft_delete,
            });
        }
        Ok(DbInfo {
            path: self.inner.path.clone(),
            schema_version: schema.version(),
            last_commit: self.last_commit(),
            size_on_disk: self.core().kv.size_on_disk()?,
            tables,
        })
    }
}

fn spawn_background(
    core: Arc<DbCore>,
    bg: Arc<Background>,
    opts: Options,
) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ormdb-background".into())
        .spawn(move || {
            let tick = if opts.durability == Durability::Normal {
                opts.sync_interval.min(Duration::from_millis(500))
            } else {
                Duration::from_millis(500)
            };
            let mut last_checkpoint = Instant::now();
            // Incremental passes over the rows commits updated or deleted. The queue is drained
            // on a clean close; after a crash, `Database::gc` (a full pass) finds the rest.
            let mut last_gc = Instant::now();
            // Where filling the row heads goes on (see `storage::row_heads`): a chunk of rows
            // per turn, without waiting for the tick, until done; the periodic work below still
            // runs once per tick meanwhile.
            let mut warm = Some(Vec::new());
            let mut last_tick = Instant::now();
            let warm_t0 = Instant::now();
            loop {
                {
                    let mut stop = bg.stop.lock();
                    if *stop {
                        return;
                    }
                    if warm.is_none() {
                        bg.cv.wait_for(&mut stop, tick);
                    }
                    if *stop {
                        return;
                    }
                }
                if let Some(from) = warm.take() {
                    warm = core.kv.warm_row_heads(&from, 4096).unwrap_or_else(|e| {
                        warn!(error = %e, "filling the row heads failed");
                        None
                    });
                    if warm.is_none() {
                        let bytes = core.kv.row_head_stats().bytes;
                        tracing::info!(
                            bytes,
                            secs = warm_t0.elapsed().as_secs_f64(),
                            "row heads filled"
                        );
                    }
                    if last_tick.elapsed() < tick {
                        continue;
                    }
                }
                last_tick = Instant::now();
                if opts.durability == Durability::Normal {
                    if let Err(e) = core.log.sync_all_pending() {
                        warn!(error = %e, "interval sync of the commit log failed");
                    }
                }
                let log_bytes = core.log.bytes_since_rotation();
                if log_bytes >= opts.checkpoint_bytes
                    || (log_bytes > 0 && last_checkpoint.elapsed() >= opts.checkpoint_interval)
                {
                    if let Err(e) = core.checkpoint() {
                        warn!(error = %e, "background checkpoint failed");
                    }
                    last_checkpoint = Instant::now();
                }
                if last_gc.elapsed() >= opts.gc_interval && core.gc_pending() > 0 {
                    if let Err(e) = core.gc_incremental() {
                        warn!(error = %e, "background garbage collection failed");
                    }
                    last_gc = Instant::now();
                }
                // Does nothing until enough large values were written since the last count.
                if let Err(e) = core.kv.compact_values(false) {
                    warn!(error = %e, "value log compaction failed");
                }
            }
        })
        .map_err(|e| Error::io("starting the background thread", e))
}

impl Drop for DbInner {
    fn drop(&mut self) {
        *self.background.stop.lock() = true;
        self.background.cv.notify_all();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
        if let Some(core) = self.core.take() {
            if !core.is_closed() {
                if let Err(e) = core.gc_incremental() {
                    warn!(error = %e, "garbage collection on close failed");
                }
                if let Err(e) = core.log.sync_all_pending().and_then(|_| core.checkpoint()) {
                    warn!(error = %e, "final checkpoint on close failed; the commit log will be replayed on open");
                } else if let Err(e) = core.release_reservation() {
                    warn!(error = %e, "releasing the timestamp reservation on close failed");
                }
            }
            core.mark_closed();
            drop(core);
        }
        let mut reg = registry().lock();
        if reg.get(&self.path).is_some_and(|w| w.strong_count() == 0) {
            reg.remove(&self.path);
        }
        drop(reg);
        drop(self.temp.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DataType, EntitySpec, FieldDef, Value};

    fn items(db: &Database) {
        let conn = db.connect();
        let mut tx = conn.begin().unwrap();
        tx.create_entity(
            &EntitySpec::new("items")
                .id("id")
                .field(FieldDef::new("n", DataType::Integer).not_null()),
        )
        .unwrap();
        tx.commit().unwrap();
    }

    fn insert(conn: &crate::Connection, n: i64) {
        let mut tx = conn.begin().unwrap();
        tx.insert_positional("items", vec![None, Some(Value::Integer(n))])
            .unwrap();
        tx.commit().unwrap();
    }

    /// A single Full committer syncs its own log record: the syncer thread is never woken for
    /// it (each wake-up, and the one back, costs tens of microseconds across CPUs).
    #[test]
    fn lone_full_committer_needs_no_syncer_hand_off() {
        let db = Database::temporary_with(Options::default().durability(Durability::Full)).unwrap();
        items(&db);
        let before = db.core().log.hand_offs();
        let ahead = db.core().log.write_aheads();
        let conn = db.connect();
        for n in 0..25 {
            insert(&conn, n);
        }
        assert_eq!(db.core().log.hand_offs(), before);
        // Each record's device write started before its apply. (The syncer's 200 ms timeout
        // may take a round now and then, which makes that commit's write-ahead a no-op.)
        assert!(db.core().log.write_aheads() >= ahead + 20);
        let mut tx = conn.begin().unwrap();
        assert_eq!(tx.scan("items").unwrap().count(), 25);
    }

    fn count_elsewhere(db: &Database) -> usize {
        // On another thread: a commit deferred on this one is not settled by its begin.
        std::thread::scope(|s| {
            s.spawn(|| {
                let conn = db.connect();
                let mut tx = conn.begin().unwrap();
                tx.scan("items").unwrap().count()
            })
            .join()
            .unwrap()
        })
    }

    /// A deferred Full commit (the server's path) returns before its record is synced, stays
    /// invisible to everyone else until `when_durable` reports it durable, and is read by a
    /// transaction its own thread begins meanwhile.
    #[test]
    fn a_deferred_commit_is_visible_and_acknowledged_only_once_durable() {
        use crate::txn::core::{defer_durable_commit, take_deferred_commit};
        let db = Database::temporary_with(Options::default().durability(Durability::Full)).unwrap();
        items(&db);
        let conn = db.connect();
        // Not armed: an ordinary commit, nothing to take.
        insert(&conn, 1);
        assert_eq!(take_deferred_commit(), None);
        assert_eq!(count_elsewhere(&db), 1);

        defer_durable_commit();
        insert(&conn, 2);
        let t = take_deferred_commit().expect("the commit was deferred");
        assert_eq!(take_deferred_commit(), None, "taken once");
        // Nothing made it visible yet (no other committer, no settle on this thread).
        assert_eq!(count_elsewhere(&db), 1);
        let (tx, rx) = std::sync::mpsc::channel();
        db.core()
            .when_durable(t, move |r| tx.send(r.is_ok()).unwrap());
        assert_eq!(
            rx.recv_timeout(std::time::Duration::from_secs(10)),
            Ok(true)
        );
        assert_eq!(count_elsewhere(&db), 2);

        // The deferring thread reads its own write before the acknowledgement, which then runs
        // at once.
        defer_durable_commit();
        insert(&conn, 3);
        {
            let mut tx = conn.begin().unwrap();
            assert_eq!(tx.scan("items").unwrap().count(), 3);
        }
        let t = take_deferred_commit().expect("deferred");
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let r2 = ran.clone();
        db.core().when_durable(t, move |r| {
            r.unwrap();
            r2.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        assert!(ran.load(std::sync::atomic::Ordering::SeqCst));

        // Schema changes are never deferred.
        defer_durable_commit();
        let mut tx = conn.begin().unwrap();
        tx.create_entity(&EntitySpec::new("more").id("id")).unwrap();
        tx.commit().unwrap();
        assert_eq!(take_deferred_commit(), None);
    }

    /// Deferred commits from many threads, acknowledged out of the syncer's rounds: every one is
    /// acknowledged once, and all are there.
    #[test]
    fn deferred_commits_from_many_threads_are_all_acknowledged() {
        use crate::txn::core::{defer_durable_commit, take_deferred_commit};
        let db = Database::temporary_with(Options::default().durability(Durability::Full)).unwrap();
        items(&db);
        let (tx, rx) = std::sync::mpsc::channel::<i64>();
        std::thread::scope(|s| {
            for t in 0..6i64 {
                let (db, tx) = (&db, tx.clone());
                s.spawn(move || {
                    let conn = db.connect();
                    for n in 0..40 {
                        defer_durable_commit();
                        insert(&conn, t * 100 + n);
                        match take_deferred_commit() {
                            Some(ticket) => {
                                let tx = tx.clone();
                                db.core().when_durable(ticket, move |r| {
                                    r.unwrap();
                                    tx.send(t * 100 + n).unwrap();
                                });
                            }
                            // Not deferred (an earlier commit was still being applied).
                            None => tx.send(t * 100 + n).unwrap(),
                        }
                    }
                });
            }
        });
        drop(tx);
        let mut acked: Vec<i64> = rx.iter().collect();
        acked.sort_unstable();
        let want: Vec<i64> = (0..6)
            .flat_map(|t| (0..40).map(move |n| t * 100 + n))
            .collect();
        assert_eq!(acked, want);
        assert_eq!(count_elsewhere(&db), 240);
        assert_eq!(db.core().log.sync_waiters(), 0);
    }

    #[test]
    fn concurrent_full_committers_all_commit() {
        let db = Database::temporary_with(Options::default().durability(Durability::Full)).unwrap();
        items(&db);
        std::thread::scope(|s| {
            for t in 0..4 {
                let db = &db;
                s.spawn(move || {
                    let conn = db.connect();
                    for n in 0..20 {
                        insert(&conn, t * 100 + n);
                    }
                });
            }
        });
        let conn = db.connect();
        let mut tx = conn.begin().unwrap();
        assert_eq!(tx.scan("items").unwrap().count(), 80);
    }
}
