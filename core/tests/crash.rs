//! Crash safety of the commit pipeline (the checksummed, group-committed commit log in `<db>/log`
//! is the durability source; sled in `<db>/data` is applied to without flushing and checkpointed).
//!
//! - `kill9_loop_loses_no_acknowledged_commit`: a child process (this test binary re-executed,
//!   see `crash_child_entry`) commits multi-row transactions with `Durability::Full` and prints
//!   `ACK <seq> <token>` after each commit returns; the parent SIGKILLs it at a random moment, 60
//!   times, reopens the directory and checks that every acknowledged commit survived whole, that
//!   no transaction is partially visible, that the invariants hold and that the database keeps
//!   working. Children vary: 1-4 committing threads, checkpoints every N commits or racing in a
//!   background thread, and sometimes a second child is killed while it recovers the first
//!   one's log before the parent reopens. A third of the children commit with
//!   `Durability::Normal` from 4-8 threads (acknowledged once the log record is written to the
//!   OS, which a kill -9 does not lose): many concurrent commits apply to the store out of
//!   timestamp order, so kills land between out-of-order applies.
//! - `damaged_log_tail_is_cut_or_reported`: the newest commit log segment is truncated or garbled
//!   after a clean close and after a kill; opening must keep every commit acknowledged before the
//!   damaged record, or fail with `SqlState::DataCorrupted`, and never panic.
//! - `recovery_never_moves_the_commit_clock_back`: the store is durably ahead of the commit log
//!   (the state a kill leaves when a checkpoint flushed sled while the log record of a commit was
//!   still in memory); replaying the older log must not move the commit timestamp backwards.
//!
//! Failures print the PRNG seed; rerun with `ORMDB_CRASH_SEED=<seed>` to reproduce the schedule.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ormdb::{
    Connection, DataType, Database, Durability, EntitySpec, FieldDef, Options, SqlState, Value,
};

/// Set in the child: the database directory it commits to.
const CHILD_DIR_ENV: &str = "ORMDB_CRASH_CHILD_DIR";
/// Set in the child: `threads,checkpoint_every,background_checkpoints,seed,normal`.
const CHILD_MODE_ENV: &str = "ORMDB_CRASH_CHILD_MODE";
/// Overrides the time-derived seed of the parent.
const SEED_ENV: &str = "ORMDB_CRASH_SEED";

const ACCOUNTS: i64 = 5;
const INITIAL_BALANCE: i64 = 1_000;
const TOTAL: i64 = ACCOUNTS * INITIAL_BALANCE;
/// Ledger rows written by every transaction, all with the transaction's sequence number.
const PARTS: i64 = 3;
const KILLS: usize = 60;
/// Ledger rows with a note longer than about this keep their value in the value log, the
/// rest in the store, so kills land among both kinds of writes (and value log compactions).
const VALUE_THRESHOLD: usize = 64;

fn opts() -> Options {
    Options::default().value_threshold(VALUE_THRESHOLD)
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

/// xorshift64: small, seedable, good enough for schedules.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn time_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    nanos ^ (u64::from(std::process::id()) << 32)
}

fn seed_for(test: &str) -> u64 {
    let seed = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(time_seed);
    println!("{test}: seed {seed} (rerun with {SEED_ENV}={seed})");
    seed
}

/// `accounts` (balances summing to [`TOTAL`]), `ledger` ([`PARTS`] rows per transaction, unique
/// on (seq, part)) and `stats` (one row counting committed transactions).
fn create_schema(dir: &Path) {
    let db = Database::open(dir, opts()).expect("create database");
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("accounts")
            .id("id")
            .field(FieldDef::new("balance", DataType::Integer).not_null()),
    )
    .unwrap();
    tx.create_entity(
        &EntitySpec::new("ledger")
            .id("id")
            .field(FieldDef::new("seq", DataType::Integer).not_null())
            .field(FieldDef::new("part", DataType::Integer).not_null())
            .field(FieldDef::new("src", DataType::Integer).not_null())
            .field(FieldDef::new("dst", DataType::Integer).not_null())
            .field(FieldDef::new("amount", DataType::Integer).not_null())
            .field(FieldDef::new("note", DataType::Text))
            .unique(&["seq", "part"]),
    )
    .unwrap();
    tx.create_entity(
        &EntitySpec::new("stats")
            .id("id")
            .field(FieldDef::new("commits", DataType::Integer).not_null()),
    )
    .unwrap();
    for id in 1..=ACCOUNTS {
        tx.insert(
            "accounts",
            &[
                ("id", Value::Integer(id)),
                ("balance", Value::Integer(INITIAL_BALANCE)),
            ],
        )
        .unwrap();
    }
    tx.insert(
        "stats",
        &[("id", Value::Integer(1)), ("commits", Value::Integer(0))],
    )
    .unwrap();
    tx.commit().unwrap();
}

fn int(v: &Value) -> i64 {
    v.as_i64()
        .unwrap_or_else(|| panic!("expected an integer, got {v:?}"))
}

/// One transaction: a transfer between two accounts, [`PARTS`] ledger rows numbered `seq`, and
/// the commit counter. Retries serialization failures. Returns the commit token.
fn transfer(conn: &Connection, seq: i64, rng: &mut Rng) -> ormdb::Result<u64> {
    let src = rng.range(1, ACCOUNTS as u64) as i64;
    let dst = (src + rng.range(0, ACCOUNTS as u64 - 2) as i64) % ACCOUNTS + 1;
    let amount = rng.range(1, 100) as i64;
    let note = "n".repeat(rng.range(0, 300) as usize);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut tx = conn.begin()?;
        let res = (|| {
            let a = int(&tx.get("accounts", src)?.expect("source account").values[1]);
            let b = int(&tx.get("accounts", dst)?.expect("target account").values[1]);
            tx.update("accounts", src, &[("balance", Value::Integer(a - amount))])?;
            tx.update("accounts", dst, &[("balance", Value::Integer(b + amount))])?;
            for part in 0..PARTS {
                tx.insert(
                    "ledger",
                    &[
                        ("seq", Value::Integer(seq)),
                        ("part", Value::Integer(part)),
                        ("src", Value::Integer(src)),
                        ("dst", Value::Integer(dst)),
                        ("amount", Value::Integer(amount)),
                        ("note", Value::Text(note.clone())),
                    ],
                )?;
            }
            let n = int(&tx.get("stats", 1)?.expect("stats row").values[1]);
            tx.update("stats", 1, &[("commits", Value::Integer(n + 1))])?;
            Ok(())
        })();
        let res = res.and_then(|()| tx.commit().map(|c| c.token));
        match res {
            // Every transfer updates the one stats row: under four committers a retry can lose
            // hundreds of times in a row (see concurrency.rs, retries_on_a_hot_row_do_not_starve).
            Err(e) if e.state == SqlState::SerializationFailure && attempts < 20_000 => continue,
            other => return other,
        }
    }
}

/// The ledger rows of one sequence number: their parts and their distinct (src, dst, amount).
type LedgerEntry = (Vec<i64>, BTreeSet<(i64, i64, i64)>);

/// What a verification found.
struct Verified {
    max_seq: i64,
    seqs: usize,
    last_commit: u64,
}

/// Opens the database and checks every invariant; `acked` maps acknowledged sequence numbers
/// to their commit tokens; `must_have_below` (if set) restricts the durability check to tokens
/// below it (records after a damaged log record may be lost). Returns what it saw.
fn verify(
    db: &Database,
    acked: &BTreeMap<i64, u64>,
    must_have_below: Option<u64>,
    ctx: &str,
) -> Verified {
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    let accounts: Vec<_> = tx
        .scan("accounts")
        .unwrap()
        .collect::<ormdb::Result<_>>()
        .unwrap();
    assert_eq!(accounts.len() as i64, ACCOUNTS, "{ctx}: account rows");
    let sum: i64 = accounts.iter().map(|r| int(&r.values[1])).sum();
    assert_eq!(
        sum, TOTAL,
        "{ctx}: the balances no longer sum to {TOTAL} (a partial transfer?)"
    );

    // seq -> (parts, (src, dst, amount))
    let mut ledger: BTreeMap<i64, LedgerEntry> = BTreeMap::new();
    let rows: Vec<_> = tx
        .scan("ledger")
        .unwrap()
        .collect::<ormdb::Result<_>>()
        .unwrap();
    for (i, r) in rows.iter().enumerate() {
        if i % 3 == 0 {
            // A point read of the row (answered from its row head once the background pass or
            // an earlier read filled it) returns what the scan did.
            let got = tx.get("ledger", int(&r.values[0])).unwrap();
            assert_eq!(
                got.as_ref().map(|g| &g.values),
                Some(&r.values),
                "{ctx}: point read of a ledger row"
            );
        }
        let e = ledger.entry(int(&r.values[1])).or_default();
        e.0.push(int(&r.values[2]));
        e.1.insert((int(&r.values[3]), int(&r.values[4]), int(&r.values[5])));
    }
    for (seq, (parts, details)) in &ledger {
        let mut p = parts.clone();
        p.sort_unstable();
        assert_eq!(
            p,
            (0..PARTS).collect::<Vec<_>>(),
            "{ctx}: seq {seq} has ledger parts {parts:?} (a partial or duplicated transaction)"
        );
        assert_eq!(
            details.len(),
            1,
            "{ctx}: seq {seq} mixes transactions: {details:?}"
        );
    }
    let commits = int(&tx.get("stats", 1).unwrap().expect("stats row").values[1]);
    assert_eq!(
        commits,
        ledger.len() as i64,
        "{ctx}: the commit counter disagrees with the ledger"
    );
    let mut lost = Vec::new();
    for (&seq, &token) in acked {
        if must_have_below.is_none_or(|b| token < b) && !ledger.contains_key(&seq) {
            lost.push((seq, token));
        }
    }
    assert!(
        lost.is_empty(),
        "{ctx}: acknowledged commits lost (seq, token): {lost:?}"
    );
    let last_commit = db.last_commit();
    let max_required = acked
        .values()
        .copied()
        .filter(|t| must_have_below.is_none_or(|b| *t < b))
        .max()
        .unwrap_or(0);
    assert!(
        last_commit >= max_required,
        "{ctx}: last commit token {last_commit} is below an acknowledged token {max_required}"
    );
    let max_seq = ledger.keys().next_back().copied().unwrap_or(0);
    // The unique constraint still holds after recovery.
    if max_seq > 0 {
        let dup = tx.insert(
            "ledger",
            &[
                ("seq", Value::Integer(max_seq)),
                ("part", Value::Integer(0)),
                ("src", Value::Integer(1)),
                ("dst", Value::Integer(2)),
                ("amount", Value::Integer(0)),
            ],
        );
        assert_eq!(
            dup.err().map(|e| e.state),
            Some(SqlState::UniqueViolation),
            "{ctx}: a duplicate (seq, part) was accepted"
        );
    }
    tx.rollback();
    Verified {
        max_seq,
        seqs: ledger.len(),
        last_commit,
    }
}

// ---------------------------------------------------------------------------------------------
// The child

/// Child entry point: when `ORMDB_CRASH_CHILD_DIR` is set, this test body becomes the crash
/// child, which commits transactions forever (until the parent kills it). In a normal test run
/// the variable is absent and it returns at once.
#[test]
fn crash_child_entry() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let mode = std::env::var(CHILD_MODE_ENV).unwrap_or_default();
    let m: Vec<u64> = mode.split(',').filter_map(|s| s.parse().ok()).collect();
    let (threads, checkpoint_every, background_checkpoints, seed, normal) = match m[..] {
        [a, b, c, d, e] => (a.max(1), b, c != 0, d, e != 0),
        _ => (1, 0, false, 1, false),
    };
    let durability = if normal {
        Durability::Normal
    } else {
        Durability::Full
    };
    let db = Database::open(PathBuf::from(dir), opts().durability(durability))
        .unwrap_or_else(|e| child_fail("open", &e));
    let start = {
        let conn = db.connect();
        let mut tx = conn.begin().unwrap_or_else(|e| child_fail("begin", &e));
        let mut max = 0;
        for r in tx.scan("ledger").unwrap_or_else(|e| child_fail("scan", &e)) {
            let r = r.unwrap_or_else(|e| child_fail("scan", &e));
            max = max.max(int(&r.values[1]));
        }
        max + 1
    };
    // libtest has printed "test crash_child_entry ... " without a newline: start a fresh line.
    println!("\nSTART {start}");
    let _ = std::io::stdout().flush();
    let next = Arc::new(AtomicI64::new(start));
    let mut handles = Vec::new();
    if background_checkpoints {
        // Checkpoints racing with the committers (until the kill, like everything here).
        let db = db.clone();
        let mut rng = Rng::new(seed ^ 0xC0FFEE);
        handles.push(thread::spawn(move || loop {
            if let Err(e) = db.checkpoint() {
                child_fail("background checkpoint", &e);
            }
            // Every reopen starts a value log file and replay rewrites values into it, so
            // older files hold dead values for compaction to move out and remove.
            if rng.range(0, 3) == 0 {
                if let Err(e) = db.compact_values() {
                    child_fail("value log compaction", &e);
                }
            }
            thread::sleep(Duration::from_micros(rng.range(0, 3000)));
        }));
    }
    for t in 0..threads {
        let db = db.clone();
        let next = next.clone();
        let mut rng = Rng::new(seed.wrapping_add(t * 7919));
        handles.push(thread::spawn(move || {
            let conn = db.connect();
            loop {
                let seq = next.fetch_add(1, Ordering::SeqCst);
                match transfer(&conn, seq, &mut rng) {
                    Ok(token) => {
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "ACK {seq} {token}");
                        let _ = out.flush();
                    }
                    Err(e) => child_fail(&format!("commit of seq {seq}"), &e),
                }
                if checkpoint_every > 0 && (seq as u64).is_multiple_of(checkpoint_every) {
                    if let Err(e) = db.checkpoint() {
                        child_fail("checkpoint", &e);
                    }
                }
            }
        }));
    }
    for h in handles {
        let _ = h.join();
    }
}

/// Reports a failure of the child to the parent and exits.
fn child_fail(what: &str, e: &dyn std::fmt::Display) -> ! {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ERR {what}: {e}");
    let _ = out.flush();
    std::process::exit(3);
}

/// A running child and the lines it printed so far.
struct ChildProc {
    child: Child,
    lines: mpsc::Receiver<String>,
    reader: thread::JoinHandle<()>,
    /// Lines already read from `lines`.
    seen: Vec<String>,
}

fn spawn_child(
    dir: &Path,
    threads: u64,
    checkpoint_every: u64,
    bg: bool,
    seed: u64,
    normal: bool,
) -> ChildProc {
    let mut child = Command::new(std::env::current_exe().expect("test binary path"))
        .args([
            "--exact",
            "crash_child_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir)
        .env(
            CHILD_MODE_ENV,
            format!(
                "{threads},{checkpoint_every},{},{seed},{}",
                u8::from(bg),
                u8::from(normal)
            ),
        )
        .env_remove(SEED_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the crash child");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    ChildProc {
        child,
        lines: rx,
        reader,
        seen: Vec::new(),
    }
}

/// What a killed child reported.
#[derive(Default)]
struct ChildReport {
    start: Option<i64>,
    acks: Vec<(i64, u64)>,
}

/// The last lines of a child's output, for messages.
fn tail(lines: &[String]) -> &[String] {
    &lines[lines.len().saturating_sub(20)..]
}

impl ChildProc {
    /// Reads lines until `want` accepts one (true) or `timeout` passes (false).
    fn wait_for(&mut self, timeout: Duration, mut want: impl FnMut(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = want(&l);
                    self.seen.push(l);
                    if hit {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
    }

    /// Waits until the child has opened the database (its `START` line).
    fn wait_started(&mut self, ctx: &str) {
        if !self.wait_for(Duration::from_secs(60), |l| {
            l.starts_with("START") || l.starts_with("ERR")
        }) {
            panic!("{ctx}: the child did not start: {:?}", tail(&self.seen));
        }
    }

    /// Waits until the child acknowledged `n` commits (or `timeout` passed).
    fn wait_acks(&mut self, n: usize, timeout: Duration) {
        let mut acks = self.seen.iter().filter(|l| l.starts_with("ACK")).count();
        if acks < n {
            self.wait_for(timeout, |l| {
                acks += usize::from(l.starts_with("ACK"));
                acks >= n || l.starts_with("ERR")
            });
        }
    }

    /// SIGKILLs the child (which must still be running) and parses everything it printed.
    fn kill(mut self, ctx: &str) -> ChildReport {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            let _ = self.reader.join();
            self.seen.extend(self.lines.try_iter());
            panic!(
                "{ctx}: the child exited by itself ({status}); output: {:?}",
                tail(&self.seen)
            );
        }
        self.child.kill().expect("SIGKILL the child");
        self.child.wait().expect("reap the child");
        self.reader.join().expect("reader thread");
        self.seen.extend(self.lines.try_iter());
        let mut rep = ChildReport::default();
        for line in &self.seen {
            let mut w = line.split_whitespace();
            match w.next() {
                Some("START") => rep.start = w.next().and_then(|s| s.parse().ok()),
                Some("ACK") => {
                    let seq = w.next().and_then(|s| s.parse().ok());
                    let token = w.next().and_then(|s| s.parse().ok());
                    match (seq, token) {
                        (Some(s), Some(t)) => rep.acks.push((s, t)),
                        _ => panic!("{ctx}: malformed line from the child: {line:?}"),
                    }
                }
                Some("ERR") => panic!("{ctx}: the child failed: {line}"),
                _ => {}
            }
        }
        rep
    }
}

/// Records a child's acknowledgements; a sequence number acknowledged twice means a child
/// restarted from a state that had lost an acknowledged commit.
fn record_acks(acked: &mut BTreeMap<i64, u64>, rep: &ChildReport, ctx: &str) {
    let prev_max = acked.keys().next_back().copied().unwrap_or(0);
    if let Some(start) = rep.start {
        assert!(
            start > prev_max,
            "{ctx}: the child started at seq {start} but seq {prev_max} was acknowledged"
        );
    }
    for &(seq, token) in &rep.acks {
        if let Some(old) = acked.insert(seq, token) {
            panic!("{ctx}: seq {seq} acknowledged twice (tokens {old} and {token})");
        }
    }
}

/// Copies a database directory that failed to reopen under the target's temp dir, so the
/// failure can be studied after the test's own temp dir is gone. Returns where it went.
fn keep_for_diagnosis(path: &Path, name: &str) -> String {
    fn copy(from: &Path, to: &Path) -> std::io::Result<()> {
        fs::create_dir_all(to)?;
        for e in fs::read_dir(from)? {
            let e = e?;
            let dest = to.join(e.file_name());
            if e.file_type()?.is_dir() {
                copy(&e.path(), &dest)?;
            } else {
                fs::copy(e.path(), dest)?;
            }
        }
        Ok(())
    }
    let to = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("crash-failures")
        .join(name);
    match copy(path, &to) {
        Ok(()) => to.display().to_string(),
        Err(e) => format!("nowhere: copying failed: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn kill9_loop_loses_no_acknowledged_commit() {
    let t0 = Instant::now();
    let seed = seed_for("kill9_loop");
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    create_schema(&path);

    let mut acked: BTreeMap<i64, u64> = BTreeMap::new();
    let mut kills = 0usize;
    let mut kills_after_ack = 0usize;
    let mut kills_in_checkpoint_modes = 0usize;
    let mut chained = 0usize;
    // Value log files removed and values moved by the parent's compactions.
    let mut compactions = (0usize, 0u64);
    // Point reads of ledger rows the verifications answered from row heads.
    let mut head_hits = 0u64;
    let mut last = Verified {
        max_seq: 0,
        seqs: 0,
        last_commit: 0,
    };
    while kills < KILLS {
        // One child, or (sometimes) two in a row so the second is killed while it recovers
        // the first one's log, before the parent reopens.
        let chain = if kills + 2 <= KILLS && rng.range(0, 4) == 0 {
            2
        } else {
            1
        };
        if chain == 2 {
            chained += 1;
        }
        for link in 0..chain {
            let normal = rng.range(0, 2) == 0;
            let threads = if normal {
                [4, 8][rng.range(0, 1) as usize]
            } else {
                [1, 1, 2, 4][rng.range(0, 3) as usize]
            };
            let checkpoint_every = if rng.range(0, 2) == 0 {
                rng.range(1, 25)
            } else {
                0
            };
            let bg = rng.range(0, 4) == 0;
            let delay = rng.range(5, 150);
            let from_spawn = rng.range(0, 4) == 0;
            let ctx = format!(
                "kill {} (seed {seed}, threads {threads}, normal durability {normal}, checkpoint \
                 every {checkpoint_every}, background checkpoints {bg}, delay {delay} ms after {})",
                kills + 1,
                if from_spawn { "spawn" } else { "open" }
            );
            let mut child = spawn_child(&path, threads, checkpoint_every, bg, rng.next(), normal);
            // Mostly count the delay from the moment the child has opened the database (so
            // the kill lands among commits and checkpoints); sometimes from the spawn (so it
            // lands in process start-up or in recovery of the previous child's log).
            if !from_spawn {
                child.wait_started(&ctx);
            }
            thread::sleep(Duration::from_millis(delay));
            let rep = child.kill(&ctx);
            kills += 1;
            if !rep.acks.is_empty() {
                kills_after_ack += 1;
            }
            if checkpoint_every > 0 || bg {
                kills_in_checkpoint_modes += 1;
            }
            if let (0, Some(start)) = (link, rep.start) {
                // The child sees exactly what the parent verified.
                assert_eq!(
                    start,
                    last.max_seq + 1,
                    "{ctx}: the child started elsewhere"
                );
            }
            record_acks(&mut acked, &rep, &ctx);
        }
        let ctx = format!("reopen after kill {kills} (seed {seed})");
        let db = Database::open(&path, opts()).unwrap_or_else(|e| {
            let kept = keep_for_diagnosis(&path, &format!("kill9-{seed}-{kills}"));
            panic!("{ctx}: the database does not open: {e} (directory kept in {kept})")
        });
        let v = verify(&db, &acked, None, &ctx);
        head_hits += db.row_head_stats().unwrap().hits;
        if kills.is_multiple_of(5) {
            // Replays rewrote values into new files: move the live ones out of the old files.
            let stats = db.compact_values().unwrap();
            compactions.0 += stats.files_removed;
            compactions.1 += stats.values_moved;
            verify(
                &db,
                &acked,
                None,
                &format!("{ctx}, after compacting the value log"),
            );
        }
        assert!(v.max_seq >= last.max_seq, "{ctx}: the ledger shrank");
        assert!(
            v.last_commit >= last.last_commit,
            "{ctx}: the commit clock moved back"
        );
        last = v;
        // Only one process may open the directory: close before the next child.
        drop(db);
    }
    // The database keeps working after all of that: one more commit, reopen, check.
    {
        let db = Database::open(&path, opts()).unwrap();
        let token = transfer(&db.connect(), last.max_seq + 1, &mut rng).unwrap();
        acked.insert(last.max_seq + 1, token);
        drop(db);
        let db = Database::open(&path, opts()).unwrap();
        last = verify(&db, &acked, None, "final reopen");
    }
    println!(
        "kill9_loop: {kills} SIGKILLs ({kills_after_ack} after at least one ack, \
         {kills_in_checkpoint_modes} with checkpoints running, {chained} chained), \
         {} acknowledged commits checked, {} transactions in the ledger, value log \
         compactions removed {} files and moved {} values, {head_hits} point reads from row \
         heads, {:.1} s",
        acked.len(),
        last.seqs,
        compactions.0,
        compactions.1,
        t0.elapsed().as_secs_f64()
    );
    assert!(
        head_hits > 0,
        "no verification read went through a row head"
    );
    assert!(
        compactions.0 > 0 && compactions.1 > 0,
        "the value log compactions had nothing to do: {compactions:?}"
    );
    assert!(
        kills_after_ack >= KILLS / 2,
        "too few kills landed after a commit ({kills_after_ack}); the child starts too slowly"
    );
}

/// The newest `.wal` segment of the commit log.
fn newest_segment(db_dir: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = fs::read_dir(db_dir.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segs.sort();
    segs.pop().expect("a commit log segment")
}

/// (offset, total length, commit timestamp) of each record of a segment, following the
/// documented framing `len u32 LE | crc32 u32 LE | payload (ts u64 LE | ...)`.
fn records(data: &[u8]) -> Vec<(usize, usize, u64)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 8 <= data.len() {
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        let end = pos + 8 + len;
        if len < 8 || end > data.len() {
            break;
        }
        let ts = u64::from_le_bytes(data[pos + 8..pos + 16].try_into().unwrap());
        out.push((pos, 8 + len, ts));
        pos = end;
    }
    out
}

/// Opens a damaged database: must either open (and pass `verify`) or fail with DataCorrupted.
fn open_damaged(path: &Path, acked: &BTreeMap<i64, u64>, below: Option<u64>, ctx: &str) -> bool {
    let res = std::panic::catch_unwind(|| Database::open(path, opts()));
    match res {
        Err(_) => panic!("{ctx}: opening a damaged database panicked"),
        Ok(Err(e)) => {
            assert_eq!(
                e.state,
                SqlState::DataCorrupted,
                "{ctx}: a damaged log must open or report corruption, got {e}"
            );
            assert!(!e.message.is_empty());
            println!("{ctx}: reported as corruption: {e}");
            false
        }
        Ok(Ok(db)) => {
            verify(&db, acked, below, ctx);
            // Still writable, and the write survives a reopen.
            let mut rng = Rng::new(7);
            let seq = 1_000_000 + acked.len() as i64;
            let token = transfer(&db.connect(), seq, &mut rng)
                .unwrap_or_else(|e| panic!("{ctx}: commit after recovery failed: {e}"));
            drop(db);
            let db = Database::open(path, opts()).unwrap();
            let mut must = BTreeMap::new();
            must.insert(seq, token);
            verify(&db, &must, None, &format!("{ctx}, after one more commit"));
            drop(db);
            true
        }
    }
}

#[test]
fn damaged_log_tail_is_cut_or_reported() {
    let seed = seed_for("damaged_log");
    let mut rng = Rng::new(seed);
    let t0 = Instant::now();

    // 1. After a clean close the newest segment is a fresh one without records (zero-filled
    //    ahead of the write position). Damage written where the next record would go (garbage,
    //    a torn header, a header claiming a huge record, a wrong checksum, zeros), or appended
    //    at the end of the file, must be cut off.
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("random bytes", (0..37).map(|_| rng.next() as u8).collect()),
        ("torn header", vec![0x40, 0x00, 0x00]),
        (
            "header of a record longer than the file",
            [
                &(64u32 << 20).to_le_bytes()[..],
                &[1, 2, 3, 4, 5, 6, 7, 8, 9],
            ]
            .concat(),
        ),
        ("header with a wrong checksum", {
            let mut v = 12u32.to_le_bytes().to_vec();
            v.extend_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
            v.extend_from_slice(&[7; 12]);
            v
        }),
        ("zeros", vec![0; 64]),
    ];
    let mut cases = 0;
    for (what, bytes) in garbage {
        for at_file_end in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("db");
            create_schema(&path);
            let mut acked = BTreeMap::new();
            {
                let db = Database::open(&path, opts()).unwrap();
                let conn = db.connect();
                for seq in 1..=20 {
                    acked.insert(seq, transfer(&conn, seq, &mut rng).unwrap());
                }
            }
            let seg = newest_segment(&path);
            let data = fs::read(&seg).unwrap();
            let valid_end = records(&data).last().map_or(0, |(o, l, _)| o + l);
            let at = if at_file_end { data.len() } else { valid_end };
            {
                use std::os::unix::fs::FileExt;
                let f = fs::OpenOptions::new().write(true).open(&seg).unwrap();
                f.write_all_at(&bytes, at as u64).unwrap();
            }
            let ctx = format!(
                "clean close + {what} written at byte {at} of {} ({} bytes long, records end \
                 at {valid_end})",
                seg.display(),
                data.len()
            );
            assert!(open_damaged(&path, &acked, None, &ctx), "{ctx}: must open");
            cases += 1;
        }
    }

    // 2. After a kill: cut or garble the newest segment inside one of its last records.
    let mut opened = 0;
    let mut reported = 0;
    for round in 0..6 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        create_schema(&path);
        let ctx = format!("kill round {round} (seed {seed})");
        let mut child = spawn_child(&path, 1 + round % 2, 0, false, rng.next(), false);
        child.wait_acks(30, Duration::from_secs(60));
        let rep = child.kill(&ctx);
        let mut acked = BTreeMap::new();
        record_acks(&mut acked, &rep, &ctx);
        assert!(acked.len() >= 30, "{ctx}: only {} acks", acked.len());
        let seg = newest_segment(&path);
        let data = fs::read(&seg).unwrap();
        let recs = records(&data);
        assert!(
            recs.len() >= 30,
            "{ctx}: the newest segment holds {} records",
            recs.len()
        );
        // Every acknowledged token is in the log.
        let logged: BTreeSet<u64> = recs.iter().map(|r| r.2).collect();
        for (seq, t) in &acked {
            assert!(
                logged.contains(t),
                "{ctx}: acked seq {seq} (token {t}) is not in the log"
            );
        }
        let k = recs.len() - 1 - rng.range(0, 4) as usize;
        let (off, len, ts) = recs[k];
        let mut damaged = data.clone();
        let what = match round % 3 {
            0 => {
                let cut = off + rng.range(1, len as u64 - 1) as usize;
                damaged.truncate(cut);
                format!("truncated at byte {cut} inside record {k} (ts {ts})")
            }
            1 => {
                let at = off + 8 + rng.range(0, len as u64 - 9) as usize;
                damaged[at] ^= 0x5A;
                format!("byte {at} of record {k} (ts {ts}) flipped")
            }
            _ => {
                let from = off + rng.range(0, len as u64 - 1) as usize;
                for b in &mut damaged[from..] {
                    *b = rng.next() as u8;
                }
                format!("garbage from byte {from} inside record {k} (ts {ts}) to the end")
            }
        };
        fs::write(&seg, &damaged).unwrap();
        let ctx = format!("{ctx}: {what}");
        if open_damaged(&path, &acked, Some(ts), &ctx) {
            opened += 1;
        } else {
            reported += 1;
        }
    }

    // 3. Damage in a segment that is not the newest one (a later, empty segment exists, as after
    //    a rotation): that is not a torn tail, so it must be reported as corruption.
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        create_schema(&path);
        let ctx = format!("damage before the last segment (seed {seed})");
        let mut child = spawn_child(&path, 1, 0, false, rng.next(), false);
        child.wait_acks(10, Duration::from_secs(60));
        let rep = child.kill(&ctx);
        let mut acked = BTreeMap::new();
        record_acks(&mut acked, &rep, &ctx);
        let seg = newest_segment(&path);
        let mut data = fs::read(&seg).unwrap();
        let recs = records(&data);
        assert!(recs.len() >= 2, "{ctx}: {} records", recs.len());
        let (off, _, _) = recs[1];
        data[off + 9] ^= 0xFF;
        fs::write(&seg, &data).unwrap();
        let n: u64 = seg
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse().ok())
            .unwrap();
        fs::write(seg.with_file_name(format!("{:016}.wal", n + 1)), b"").unwrap();
        let res = std::panic::catch_unwind(|| Database::open(&path, opts()));
        match res {
            Err(_) => panic!("{ctx}: open panicked"),
            Ok(Ok(_)) => panic!("{ctx}: a damaged record in a non-final segment was accepted"),
            Ok(Err(e)) => assert_eq!(e.state, SqlState::DataCorrupted, "{ctx}: {e}"),
        }
    }
    println!(
        "damaged_log: {cases} clean-close damages recovered, kill damages: {opened} recovered, \
         {reported} reported as corruption; non-final segment damage reported; {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

/// Copies every file of `from` into `to` (which is emptied first).
fn replace_dir(from: &Path, to: &Path) {
    for e in fs::read_dir(to).unwrap() {
        fs::remove_file(e.unwrap().path()).unwrap();
    }
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn recovery_never_moves_the_commit_clock_back() {
    let seed = seed_for("commit_clock");
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    create_schema(&path);
    let saved_log = dir.path().join("saved-log");
    fs::create_dir(&saved_log).unwrap();
    let mut acked = BTreeMap::new();
    {
        let db = Database::open(&path, opts()).unwrap();
        let conn = db.connect();
        for seq in 1..=10 {
            acked.insert(seq, transfer(&conn, seq, &mut rng).unwrap());
        }
        // The log now holds these ten records (each was fsync'd before its commit returned).
        for e in fs::read_dir(path.join("log")).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), saved_log.join(e.file_name())).unwrap();
        }
        for seq in 11..=20 {
            acked.insert(seq, transfer(&conn, seq, &mut rng).unwrap());
        }
        // The clean close checkpoints: the store durably holds all twenty.
    }
    // Put back the log as it was after ten commits. The store is now durably ahead of the log:
    // the state a kill leaves when a checkpoint (or one of sled's own buffer writes) persisted a
    // commit whose log record was still in memory.
    replace_dir(&saved_log, &path.join("log"));
    let db = Database::open(&path, opts()).unwrap();
    let v = verify(&db, &acked, None, "store ahead of the log");
    assert_eq!(v.max_seq, 20);
    // New commits must get fresh timestamps: reusing one would mix them with the rows of the
    // commits the store already holds at those timestamps.
    let conn = db.connect();
    for seq in 21..=30 {
        let token = transfer(&conn, seq, &mut rng).unwrap();
        assert!(
            token > acked[&20],
            "commit token {token} reused (seq 20 had {})",
            acked[&20]
        );
        acked.insert(seq, token);
    }
    drop(conn);
    drop(db);
    let db = Database::open(&path, opts()).unwrap();
    let v = verify(
        &db,
        &acked,
        None,
        "store ahead of the log, after more commits",
    );
    assert_eq!(v.max_seq, 30);
    println!(
        "commit_clock: last commit {} after replaying a log older than the store",
        v.last_commit
    );
}
