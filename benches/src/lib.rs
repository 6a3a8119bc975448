//! Shared helpers for the ORMDB engine benchmarks: matching schemas and durability settings for
//! ORMDB and SQLite, data loaders, the write operations the benchmarks time, a multi-writer
//! driver, and small measurement utilities (latency percentiles, RSS, directory size).
//!
//! Durability pairs (see docs/BENCHMARKS.md):
//! - [`Mode::Full`]: ORMDB `Durability::Full` (group-committed commit log, fdatasync before the
//!   acknowledgement) vs SQLite `journal_mode=WAL`, `synchronous=FULL`.
//! - [`Mode::Normal`]: ORMDB `Durability::Normal` (log written to the OS before the
//!   acknowledgement, synced every 100 ms) vs SQLite `journal_mode=WAL`, `synchronous=NORMAL`.

pub mod graph;
pub mod joins;
pub mod prisma;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ormdb::{
    Connection, DataType, Database, Durability, EntitySpec, FieldDef, ForeignKeySpec, Options,
    Value,
};
use rusqlite::params;

/// Rows in the point-read table.
pub const READ_ROWS: i64 = 100_000;
/// Size of the blob payload of a benchmark row in the criterion cases.
pub const SMALL_PAYLOAD: usize = 100;
/// Children inserted with each parent in the parent + children case.
pub const CHILDREN: usize = 10;

/// A durability pairing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Full,
    Normal,
}

impl Mode {
    pub const ALL: [Mode; 2] = [Mode::Full, Mode::Normal];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Normal => "normal",
        }
    }

    pub fn durability(self) -> Durability {
        match self {
            Mode::Full => Durability::Full,
            Mode::Normal => Durability::Normal,
        }
    }

    pub fn sqlite_synchronous(self) -> &'static str {
        match self {
            Mode::Full => "FULL",
            Mode::Normal => "NORMAL",
        }
    }
}

/// Where benchmark databases are created: `$ORMDB_BENCH_DIR`, else the system temp directory.
/// The number following a command-line flag (underscores allowed: `1_000_000`).
pub fn arg_num(v: Option<String>, what: &str) -> u64 {
    v.and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or_else(|| panic!("{what} needs a number"))
}

pub fn bench_root() -> PathBuf {
    std::env::var_os("ORMDB_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// A fresh temporary directory under [`bench_root`].
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    let root = bench_root();
    std::fs::create_dir_all(&root).expect("create bench root");
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(root)
        .expect("create temp dir")
}

/// A small deterministic PRNG (xorshift64*), so both engines get identical data and ids.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `1..=n`.
    pub fn id(&mut self, n: i64) -> i64 {
        (self.next_u64() % n as u64) as i64 + 1
    }

    /// Incompressible bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(len);
        v
    }
}

/// The values of benchmark row `i`: a name, a number and a blob payload of `payload` bytes.
pub fn row_values(i: i64, payload: usize, rng: &mut Rng) -> (String, i64, Vec<u8>) {
    (format!("item-{i:010}"), i * 7, rng.bytes(payload))
}

// ---------------------------------------------------------------------------------------------
// ORMDB

/// ORMDB options for a mode; `cache_capacity` is always explicit. `ORMDB_BENCH_IMAGE_BUDGET`
/// (bytes) overrides the decoded table image budget: 0 reads every row from the store, which
/// measures the read path without images in the same binary and run. `ORMDB_BENCH_LOG_DIRECT=0`
/// writes the commit log through the page cache instead of `O_DIRECT` (the default), to compare
/// the two in one binary. `ORMDB_BENCH_VALUE_THRESHOLD` (bytes) sets the size above which row
/// values go to the value log (0: none do). `ORMDB_BENCH_ROW_HEADS` (bytes) sets the row head
/// budget (0: off, every point read searches the store).
pub fn ormdb_options(mode: Mode, cache_capacity: u64) -> Options {
    let direct = std::env::var("ORMDB_BENCH_LOG_DIRECT").map_or(true, |v| v.trim() != "0");
    let mut o = Options::default()
        .durability(mode.durability())
        .cache_capacity(cache_capacity)
        .log_direct_io(direct);
    if let Ok(v) = std::env::var("ORMDB_BENCH_VALUE_THRESHOLD") {
        o = o.value_threshold(
            v.trim()
                .parse()
                .expect("ORMDB_BENCH_VALUE_THRESHOLD must be a byte count"),
        );
    }
    if let Ok(v) = std::env::var("ORMDB_BENCH_ROW_HEADS") {
        o = o.row_head_budget(
            v.trim()
                .parse()
                .expect("ORMDB_BENCH_ROW_HEADS must be a byte count"),
        );
    }
    match std::env::var("ORMDB_BENCH_IMAGE_BUDGET") {
        Ok(v) => o.image_budget(
            v.trim()
                .parse()
                .expect("ORMDB_BENCH_IMAGE_BUDGET must be a byte count"),
        ),
        Err(_) => o,
    }
}

/// Opens (creating) an ORMDB database in `dir`.
pub fn ormdb_open(dir: &Path, mode: Mode, cache_capacity: u64) -> Database {
    Database::open(dir, ormdb_options(mode, cache_capacity)).expect("open ormdb")
}

/// Creates `items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, n INTEGER, payload BLOB)`,
/// `parents(id, name)` and `children(id, parent_id -> parents, name, n)`.
pub fn ormdb_schema(db: &Database) {
    let conn = db.connect();
    let mut tx = conn.begin().expect("begin");
    tx.create_entity(&item_spec("items")).expect("items");
    tx.create_entity(
        &EntitySpec::new("parents")
            .id("id")
            .field(FieldDef::new("name", DataType::Text).not_null()),
    )
    .expect("parents");
    tx.create_entity(
        &EntitySpec::new("children")
            .id("id")
            .field(FieldDef::new("parent_id", DataType::Integer).not_null())
            .field(FieldDef::new("name", DataType::Text).not_null())
            .field(FieldDef::new("n", DataType::Integer))
            .foreign_key(ForeignKeySpec::new(&["parent_id"], "parents", &["id"])),
    )
    .expect("children");
    tx.commit().expect("commit schema");
}

fn item_spec(name: &str) -> EntitySpec {
    EntitySpec::new(name)
        .id("id")
        .field(FieldDef::new("name", DataType::Text).not_null())
        .field(FieldDef::new("n", DataType::Integer))
        .field(FieldDef::new("payload", DataType::Blob))
}

/// Loads rows `1..=rows` into `items`, `batch` rows per transaction. Calls `progress` after each
/// batch with the number of rows loaded so far.
pub fn ormdb_load_items(
    db: &Database,
    rows: i64,
    payload: usize,
    batch: i64,
    mut progress: impl FnMut(i64),
) {
    let conn = db.connect();
    let mut rng = Rng::new(42);
    let mut i = 1;
    while i <= rows {
        let mut tx = conn.begin().expect("begin");
        let end = (i + batch - 1).min(rows);
        while i <= end {
            let (name, n, p) = row_values(i, payload, &mut rng);
            tx.insert_positional(
                "items",
                vec![
                    Some(Value::Integer(i)),
                    Some(Value::Text(name)),
                    Some(Value::Integer(n)),
                    Some(Value::Blob(p)),
                ],
            )
            .expect("insert");
            i += 1;
        }
        tx.commit().expect("commit");
        progress(end);
    }
}

/// A point read of `items` in its own read transaction. Returns a checksum of the row.
pub fn ormdb_get_one(conn: &Connection, id: i64) -> usize {
    let mut tx = conn.begin().expect("begin");
    let n = ormdb_get_in(&mut tx, id);
    drop(tx); // read-only: rolling back and committing are the same
    n
}

/// A point read of `items` inside an open transaction. Returns a checksum of the row.
pub fn ormdb_get_in(tx: &mut ormdb::Transaction, id: i64) -> usize {
    let row = tx.get("items", id).expect("get").expect("row exists");
    row_checksum(&row.values)
}

fn row_checksum(values: &[Value]) -> usize {
    values.iter().map(Value::size).sum()
}

/// One single-row insert transaction into `items` (row id assigned by the engine).
pub fn ormdb_insert_one(conn: &Connection, rng: &mut Rng) -> i64 {
    let (name, n, p) = row_values(0, SMALL_PAYLOAD, rng);
    let mut tx = conn.begin().expect("begin");
    let w = tx
        .insert_positional(
            "items",
            vec![
                None,
                Some(Value::Text(name)),
                Some(Value::Integer(n)),
                Some(Value::Blob(p)),
            ],
        )
        .expect("insert");
    tx.commit().expect("commit");
    w.row_id
}

/// One transaction inserting a parent and [`CHILDREN`] children referencing it.
pub fn ormdb_insert_family(conn: &Connection, k: i64) -> i64 {
    let mut tx = conn.begin().expect("begin");
    let p = tx
        .insert_positional(
            "parents",
            vec![None, Some(Value::Text(format!("parent-{k}")))],
        )
        .expect("insert parent");
    for c in 0..CHILDREN as i64 {
        tx.insert_positional(
            "children",
            vec![
                None,
                Some(Value::Integer(p.row_id)),
                Some(Value::Text(format!("child-{k}-{c}"))),
                Some(Value::Integer(c)),
            ],
        )
        .expect("insert child");
    }
    tx.commit().expect("commit");
    p.row_id
}

// ---------------------------------------------------------------------------------------------
// SQLite

/// Opens a SQLite connection with WAL, the mode's `synchronous`, foreign keys on and a 30 s
/// busy timeout.
pub fn sqlite_open(path: &Path, mode: Mode) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).expect("open sqlite");
    c.busy_timeout(Duration::from_secs(30)).expect("busy");
    let jm: String = c
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .expect("wal");
    assert_eq!(jm.to_ascii_lowercase(), "wal");
    c.execute_batch(&format!(
        "PRAGMA synchronous={}; PRAGMA foreign_keys=ON;",
        mode.sqlite_synchronous()
    ))
    .expect("pragmas");
    c.set_prepared_statement_cache_capacity(32);
    c
}

/// The same schema as [`ormdb_schema`]. ORMDB indexes foreign key fields automatically, so the
/// SQLite schema gets the same index on `children(parent_id)`.
pub fn sqlite_schema(c: &rusqlite::Connection) {
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, n INTEGER, payload BLOB);
         CREATE TABLE IF NOT EXISTS parents (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS children (id INTEGER PRIMARY KEY,
             parent_id INTEGER NOT NULL REFERENCES parents(id), name TEXT NOT NULL, n INTEGER);
         CREATE INDEX IF NOT EXISTS children_parent_id ON children(parent_id);",
    )
    .expect("sqlite schema");
}

/// Loads rows `1..=rows` into `items`, `batch` rows per transaction.
pub fn sqlite_load_items(
    c: &rusqlite::Connection,
    rows: i64,
    payload: usize,
    batch: i64,
    mut progress: impl FnMut(i64),
) {
    let mut rng = Rng::new(42);
    let mut i = 1;
    while i <= rows {
        let end = (i + batch - 1).min(rows);
        c.execute_batch("BEGIN").expect("begin");
        {
            let mut st = c
                .prepare_cached("INSERT INTO items (id, name, n, payload) VALUES (?1, ?2, ?3, ?4)")
                .expect("prepare");
            while i <= end {
                let (name, n, p) = row_values(i, payload, &mut rng);
                st.execute(params![i, name, n, p]).expect("insert");
                i += 1;
            }
        }
        c.execute_batch("COMMIT").expect("commit");
        progress(end);
    }
}

const SQLITE_GET: &str = "SELECT id, name, n, payload FROM items WHERE id = ?1";

/// A point read in autocommit mode: SQLite opens and closes a read transaction around the
/// statement, the same unit of work as ORMDB's begin + get + end.
pub fn sqlite_get_one(c: &rusqlite::Connection, id: i64) -> usize {
    sqlite_get_in(c, id)
}

/// A point read through the prepared statement cache; materializes every column, as ORMDB's
/// `get` does. Returns a checksum of the row.
pub fn sqlite_get_in(c: &rusqlite::Connection, id: i64) -> usize {
    let mut st = c.prepare_cached(SQLITE_GET).expect("prepare");
    st.query_row([id], |r| {
        let _id: i64 = r.get(0)?;
        let name: String = r.get(1)?;
        let _n: Option<i64> = r.get(2)?;
        let p: Option<Vec<u8>> = r.get(3)?;
        Ok(8 + name.len() + 8 + p.map_or(0, |p| p.len()))
    })
    .expect("row exists")
}

/// One single-row insert transaction in autocommit mode (SQLite's cheapest one-row commit).
pub fn sqlite_insert_one(c: &rusqlite::Connection, rng: &mut Rng) -> i64 {
    let (name, n, p) = row_values(0, SMALL_PAYLOAD, rng);
    let mut st = c
        .prepare_cached("INSERT INTO items (name, n, payload) VALUES (?1, ?2, ?3)")
        .expect("prepare");
    st.execute(params![name, n, p]).expect("insert");
    c.last_insert_rowid()
}

/// One single-row insert in an explicit `BEGIN IMMEDIATE` transaction (the multi-writer form:
/// the write lock is taken up front, waiting through the busy timeout).
pub fn sqlite_insert_one_immediate(c: &rusqlite::Connection, rng: &mut Rng) -> i64 {
    let (name, n, p) = row_values(0, SMALL_PAYLOAD, rng);
    c.execute_batch("BEGIN IMMEDIATE").expect("begin immediate");
    {
        let mut st = c
            .prepare_cached("INSERT INTO items (name, n, payload) VALUES (?1, ?2, ?3)")
            .expect("prepare");
        st.execute(params![name, n, p]).expect("insert");
    }
    let id = c.last_insert_rowid();
    c.execute_batch("COMMIT").expect("commit");
    id
}

/// One transaction inserting a parent and [`CHILDREN`] children referencing it.
pub fn sqlite_insert_family(c: &rusqlite::Connection, k: i64) -> i64 {
    c.execute_batch("BEGIN").expect("begin");
    let pid = {
        let mut st = c
            .prepare_cached("INSERT INTO parents (name) VALUES (?1)")
            .expect("prepare");
        st.execute([format!("parent-{k}")]).expect("insert parent");
        c.last_insert_rowid()
    };
    {
        let mut st = c
            .prepare_cached("INSERT INTO children (parent_id, name, n) VALUES (?1, ?2, ?3)")
            .expect("prepare");
        for ch in 0..CHILDREN as i64 {
            st.execute(params![pid, format!("child-{k}-{ch}"), ch])
                .expect("insert child");
        }
    }
    c.execute_batch("COMMIT").expect("commit");
    pid
}

// ---------------------------------------------------------------------------------------------
// Fixtures

/// An ORMDB database in a temporary directory with the benchmark schema.
pub struct OrmdbFixture {
    pub db: Database,
    _dir: tempfile::TempDir,
}

impl OrmdbFixture {
    pub fn new(mode: Mode) -> OrmdbFixture {
        let dir = temp_dir("ormdb-bench-");
        let db = ormdb_open(dir.path(), mode, 64 << 20);
        ormdb_schema(&db);
        OrmdbFixture { db, _dir: dir }
    }

    /// With `rows` rows of [`SMALL_PAYLOAD`] bytes in `items`, checkpointed.
    pub fn with_items(mode: Mode, rows: i64) -> OrmdbFixture {
        let f = OrmdbFixture::new(mode);
        ormdb_load_items(&f.db, rows, SMALL_PAYLOAD, 1000, |_| {});
        f.db.checkpoint().expect("checkpoint");
        f
    }
}

/// A SQLite database file in a temporary directory with the benchmark schema.
pub struct SqliteFixture {
    pub path: PathBuf,
    pub mode: Mode,
    pub conn: rusqlite::Connection,
    _dir: tempfile::TempDir,
}

impl SqliteFixture {
    pub fn new(mode: Mode) -> SqliteFixture {
        let dir = temp_dir("sqlite-bench-");
        let path = dir.path().join("bench.db");
        let conn = sqlite_open(&path, mode);
        sqlite_schema(&conn);
        SqliteFixture {
            path,
            mode,
            conn,
            _dir: dir,
        }
    }

    pub fn with_items(mode: Mode, rows: i64) -> SqliteFixture {
        let f = SqliteFixture::new(mode);
        sqlite_load_items(&f.conn, rows, SMALL_PAYLOAD, 1000, |_| {});
        f.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .expect("checkpoint");
        f
    }

    /// Another connection to the same file with the same settings.
    pub fn connect(&self) -> rusqlite::Connection {
        sqlite_open(&self.path, self.mode)
    }
}

// ---------------------------------------------------------------------------------------------
// Concurrent writers

/// What a multi-writer run did.
#[derive(Debug, Clone, Copy)]
pub struct WriterRun {
    /// Wall time from the common start to the last commit.
    pub elapsed: Duration,
    /// Commits made (all threads).
    pub commits: u64,
}

impl WriterRun {
    pub fn commits_per_s(&self) -> f64 {
        self.commits as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `threads` writer threads from a common start until `total` commits have completed (or
/// `budget`, if any, has passed). The threads take commits from a shared count, so a writer
/// that is starved (e.g. sleeping in SQLite's busy handler) does not hold up the others: the
/// measurement is aggregate throughput, and the time is taken when the `total`-th commit
/// completes. Commits still in flight at that moment finish afterwards and are not counted.
/// Each thread calls `setup` once (untimed) before the start.
fn run_writers<S>(
    threads: usize,
    total: u64,
    budget: Option<Duration>,
    latencies: Option<&mut Vec<Duration>>,
    setup: impl Fn(usize) -> S + Sync,
    commit: impl Fn(&S, &mut Rng) + Sync,
) -> WriterRun {
    let record = latencies.is_some();
    let barrier = Barrier::new(threads + 1);
    let done = AtomicU64::new(0);
    let end: Mutex<Option<Instant>> = Mutex::new(None);
    let start_cell: OnceLock<Instant> = OnceLock::new();
    let lats = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, setup, commit) = (&barrier, &setup, &commit);
                let (done, end, start_cell) = (&done, &end, &start_cell);
                s.spawn(move || {
                    let state = setup(t);
                    let mut rng = Rng::new(1000 + t as u64);
                    let mut lat = Vec::new();
                    barrier.wait();
                    let start = *start_cell.wait();
                    while done.load(Ordering::Acquire) < total
                        && budget.is_none_or(|b| start.elapsed() < b)
                    {
                        let t0 = Instant::now();
                        commit(&state, &mut rng);
                        let now = Instant::now();
                        if record {
                            lat.push(now - t0);
                        }
                        if done.fetch_add(1, Ordering::AcqRel) + 1 == total {
                            *end.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
                        }
                    }
                    lat
                })
            })
            .collect();
        barrier.wait();
        start_cell.set(Instant::now()).expect("start set once");
        handles
            .into_iter()
            .map(|h| h.join().expect("writer thread"))
            .collect::<Vec<_>>()
    });
    let start = *start_cell.get().expect("started");
    let finished = Instant::now();
    let commits = done.load(Ordering::Acquire).min(total);
    let end = end
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .unwrap_or(finished);
    if let Some(out) = latencies {
        out.extend(lats.into_iter().flatten());
    }
    WriterRun {
        elapsed: end - start,
        commits,
    }
}

/// Criterion `iter_custom` adapter for the writer benchmarks: one iteration is one commit per
/// thread. Runs at least `min_per_thread` commits per thread so that the measurement is a
/// steady state rather than one round of lock hand-offs, and scales the time back to `iters`.
pub fn writers_iter_time(
    iters: u64,
    threads: usize,
    min_per_thread: u64,
    run: impl FnOnce(u64) -> WriterRun,
) -> Duration {
    let wanted = iters * threads as u64;
    let total = wanted.max(min_per_thread * threads as u64);
    let r = run(total);
    r.elapsed.mul_f64(wanted as f64 / r.commits.max(1) as f64)
}

/// `threads` threads (one ORMDB connection each, one shared database) commit `total`
/// single-row inserts between them. Per-commit latencies are appended to `latencies` if given.
pub fn ormdb_writers(
    db: &Database,
    threads: usize,
    total: u64,
    budget: Option<Duration>,
    latencies: Option<&mut Vec<Duration>>,
) -> WriterRun {
    run_writers(
        threads,
        total,
        budget,
        latencies,
        |_| db.connect(),
        |conn, rng| {
            ormdb_insert_one(conn, rng);
        },
    )
}

/// `threads` threads (one SQLite connection each to the same file, busy timeout, `BEGIN
/// IMMEDIATE`) commit `total` single-row inserts between them. With `serialize`, the threads
/// also take a shared in-process mutex around each write transaction, so they queue on the
/// mutex instead of in SQLite's sleeping busy handler (what a tuned application does).
pub fn sqlite_writers(
    path: &Path,
    mode: Mode,
    threads: usize,
    total: u64,
    serialize: bool,
    budget: Option<Duration>,
    latencies: Option<&mut Vec<Duration>>,
) -> WriterRun {
    let lock = Mutex::new(());
    run_writers(
        threads,
        total,
        budget,
        latencies,
        |_| sqlite_open(path, mode),
        |c, rng| {
            let _g = serialize.then(|| lock.lock().unwrap_or_else(|e| e.into_inner()));
            sqlite_insert_one_immediate(c, rng);
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Measurement utilities

/// p50 / p95 / p99 / max of a set of durations, in microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    pub n: usize,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p95_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

pub fn percentiles(d: &mut [Duration]) -> Percentiles {
    if d.is_empty() {
        return Percentiles::default();
    }
    d.sort_unstable();
    let us = |x: Duration| x.as_secs_f64() * 1e6;
    let at = |q: f64| us(d[((d.len() as f64 * q).ceil() as usize).clamp(1, d.len()) - 1]);
    Percentiles {
        n: d.len(),
        mean_us: d.iter().map(|x| us(*x)).sum::<f64>() / d.len() as f64,
        p50_us: at(0.50),
        p95_us: at(0.95),
        p99_us: at(0.99),
        max_us: us(*d.last().expect("non-empty")),
    }
}

/// CPU time (user + system, in clock ticks) and context switches (voluntary + involuntary)
/// summed over every thread of a process.
pub fn process_cost(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesized command name; utime and stime are the 14th and 15th.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let mut switches = 0;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let st = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            for l in st.lines() {
                if l.starts_with("voluntary_ctxt_switches:")
                    || l.starts_with("nonvoluntary_ctxt_switches:")
                {
                    switches += l
                        .split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
        }
    }
    (ticks, switches)
}

/// Microseconds per clock tick of `process_cost`'s CPU times.
pub fn tick_us() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    1e6 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// `(VmRSS, VmHWM)` of this process in bytes, from /proc/self/status.
pub fn rss() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Allocated size of every file under `path` (like `du -s`, in bytes).
pub fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    total += meta.blocks() * 512;
    if meta.is_dir() {
        if let Ok(rd) = std::fs::read_dir(path) {
            for e in rd.flatten() {
                total += disk_usage(&e.path());
            }
        }
    }
    total
}

/// Apparent (logical) size of every file under `path`.
pub fn apparent_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_dir() {
        std::fs::read_dir(path)
            .map(|rd| rd.flatten().map(|e| apparent_size(&e.path())).sum())
            .unwrap_or(0)
    } else {
        meta.len()
    }
}

/// CPU time (user + system, all threads) this process has used so far.
pub fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// An `ormdb serve` child process for the network benches; SIGTERM and reaped on drop.
pub struct ServerProcess(std::process::Child);

impl ServerProcess {
    /// Starts `bin serve db args...` and waits for its "listening" line, so the endpoints are
    /// bound when this returns.
    pub fn start(bin: &std::path::Path, db: &std::path::Path, args: &[String]) -> ServerProcess {
        use std::io::BufRead;
        let mut child = std::process::Command::new(bin)
            .arg("serve")
            .arg(db)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start ormdb serve (build it with --features cli)");
        let out = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(out)
            .read_line(&mut line)
            .expect("ready line");
        assert!(line.contains("listening"), "{line}");
        ServerProcess(child)
    }

    /// The server's process id (for /proc CPU figures).
    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_agree_on_reads() {
        let o = OrmdbFixture::with_items(Mode::Normal, 500);
        let s = SqliteFixture::with_items(Mode::Normal, 500);
        let conn = o.db.connect();
        for id in [1, 17, 250, 500] {
            assert_eq!(ormdb_get_one(&conn, id), sqlite_get_one(&s.conn, id));
        }
        let mut rng = Rng::new(1);
        assert_eq!(ormdb_insert_one(&conn, &mut rng), 501);
        assert_eq!(sqlite_insert_one(&s.conn, &mut rng), 501);
        assert!(ormdb_insert_family(&conn, 1) > 0);
        assert!(sqlite_insert_family(&s.conn, 1) > 0);
        let r = ormdb_writers(&o.db, 4, 20, None, None);
        assert_eq!(r.commits, 20);
        let r = sqlite_writers(&s.path, Mode::Normal, 4, 20, true, None, None);
        assert_eq!(r.commits, 20);
        let n: i64 = s
            .conn
            .query_row("SELECT count(*) FROM items", [], |r| r.get(0))
            .unwrap();
        // Commits in flight when the 20th completes finish too (up to 3 more).
        assert!((521..=524).contains(&n), "{n}");
        let mut tx = conn.begin().unwrap();
        let n = tx.count("items").unwrap();
        assert!((521..=524).contains(&n), "{n}");
    }
}
