//! Ordered index range reads served from decoded table images (`Txn::index_range_ref`: the
//! image's ordered index merged with its overlay and the transaction's own index hints). The
//! reference is the same sequence of statements on a database with images disabled
//! (`image_budget(0)`), which reads index entries and rows from the store: results, row order,
//! LIMIT/OFFSET, NULLs, multi-column indexes, own uncommitted writes, savepoints, deletes,
//! older snapshots and serializable conflicts must all be the same.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use ormdb::{Database, Durability, Options, Params, Session, SqlState, Value};

fn open(budget: Option<u64>) -> Database {
    let mut o = Options::default().durability(Durability::Normal);
    if let Some(b) = budget {
        o = o.image_budget(b);
    }
    Database::temporary_with(o).expect("db")
}

fn metric(db: &Database, name: &str) -> u64 {
    db.metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from metrics"))
}

/// A small deterministic generator (xorshift), so a failure is reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> i64 {
        (self.next() % n) as i64
    }
}

const ROWS: i64 = 400;

/// `t(id, a, b, c)` with indexes on `a` and `(a, b)`; `a` has duplicates and NULLs, `b` too.
fn setup(s: &mut Session) {
    s.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER, b TEXT, c BLOB);
         CREATE INDEX t_a ON t (a);
         CREATE INDEX t_ab ON t (a, b);",
    )
    .unwrap();
    s.execute("BEGIN", &Params::None).unwrap();
    for i in 1..=ROWS {
        let a = if i % 17 == 0 {
            Value::Null
        } else {
            int((i * 37) % 150)
        };
        let b = if i % 11 == 0 {
            Value::Null
        } else {
            text(&format!("b{}", (i * 7) % 23))
        };
        s.execute(
            "INSERT INTO t (id, a, b, c) VALUES (?, ?, ?, ?)",
            &Params::Positional(vec![int(i), a, b, Value::Blob(vec![i as u8; 40])]),
        )
        .unwrap();
    }
    s.execute("COMMIT", &Params::None).unwrap();
}

/// Point-reads every row often enough that the table's image is built, then reads both
/// indexes whole in order so that their ordered indexes over the image are built (both by
/// the ski-rental rule).
fn warm(db: &Database) {
    let conn = db.connect();
    for _ in 0..4 {
        let mut tx = conn.begin().unwrap();
        for id in 1..=ROWS + 2 {
            tx.get("t", id).unwrap();
        }
    }
    let mut s = db.connect().sql();
    for _ in 0..2 {
        for q in WHOLE {
            s.execute(q, &Params::None).unwrap();
        }
    }
}

/// Whole-index reads in order (through `t_a` and `t_ab`).
const WHOLE: &[&str] = &[
    "SELECT id, a FROM t ORDER BY a LIMIT 100000",
    "SELECT id, a, b FROM t ORDER BY a DESC, b DESC LIMIT 100000",
];

/// The ordered reads compared (each ORDER BY is one an index produces, so every one of them
/// is an ordered index read with the LIMIT pushed into it).
const QUERIES: &[&str] = &[
    "SELECT id, b FROM t WHERE a BETWEEN ? AND ? ORDER BY a LIMIT ?",
    "SELECT id, a, b FROM t WHERE a >= ? AND a < ? ORDER BY a DESC LIMIT ?",
    "SELECT id FROM t WHERE a > ? AND a <= ? ORDER BY a LIMIT ? OFFSET 3",
    "SELECT id, a FROM t WHERE a < ? AND a > ? - 60 ORDER BY a DESC LIMIT ?",
    "SELECT * FROM t WHERE a = ? AND b > ? ORDER BY b LIMIT ?",
    "SELECT id, b FROM t WHERE a = ? AND b <= ? ORDER BY b DESC LIMIT ?",
    "SELECT id, a, b, length(c) FROM t WHERE ? = ? ORDER BY a LIMIT ?",
    "SELECT id, a FROM t WHERE ? = ? ORDER BY a DESC LIMIT ? OFFSET 5",
    "SELECT id FROM t WHERE a BETWEEN ? AND ? AND b IS NOT NULL ORDER BY a, b LIMIT ?",
    "SELECT id, b FROM t WHERE a = ? AND ? = ? ORDER BY b LIMIT ?",
    "SELECT id, a FROM t WHERE a BETWEEN ? AND ? ORDER BY a LIMIT -1",
    // Whole-index reads (WHOLE): they also earn the ordered index back after the image's
    // overlay is folded into a new base.
    "SELECT id, a FROM t ORDER BY a LIMIT 100000",
    "SELECT id, a, b FROM t ORDER BY a DESC, b DESC LIMIT 100000",
];

fn query_params(rng: &mut Rng, q: &str) -> Vec<Value> {
    let lo = rng.below(160) - 5;
    let n = q.matches('?').count();
    let mut p = vec![
        int(lo),
        if q.contains("b >") || q.contains("b <=") {
            text(&format!("b{}", rng.below(23)))
        } else {
            int(lo + rng.below(60))
        },
    ];
    if n == 4 {
        p.push(p[1].clone());
    }
    if n > p.len() {
        p.push(int(rng.below(30)));
    }
    p.truncate(n);
    p
}

fn run(s: &mut Session, q: &str, p: &[Value]) -> Result<Vec<Vec<Value>>, SqlState> {
    s.execute(q, &Params::Positional(p.to_vec()))
        .map(|r| r.rows)
        .map_err(|e| e.state)
}

/// One random write through SQL (insert, update of the indexed columns, delete).
fn write_stmt(rng: &mut Rng, next_id: &mut i64) -> (String, Vec<Value>) {
    let id = rng.below(ROWS as u64 + 40) + 1;
    let a = if rng.below(10) == 0 {
        Value::Null
    } else {
        int(rng.below(150))
    };
    match rng.below(5) {
        0 => {
            *next_id += 1;
            (
                "INSERT INTO t (id, a, b, c) VALUES (?, ?, ?, x'00')".into(),
                vec![int(*next_id), a, text(&format!("b{}", rng.below(23)))],
            )
        }
        1 => ("UPDATE t SET a = ? WHERE id = ?".into(), vec![a, int(id)]),
        2 => (
            "UPDATE t SET b = ?, a = a + 1 WHERE id = ?".into(),
            vec![text(&format!("b{}", rng.below(23))), int(id)],
        ),
        3 => ("DELETE FROM t WHERE id = ?".into(), vec![int(id)]),
        _ => (
            "UPDATE t SET a = ? WHERE a BETWEEN ? AND ?".into(),
            vec![a.clone(), int(rng.below(150)), int(rng.below(150) + 2)],
        ),
    }
}

/// The same random mix of ordered reads and writes (autocommit, explicit transactions with
/// reads of their own writes, savepoints rolled back, whole rollbacks, an old snapshot kept
/// open across commits) on a database with images and one without; every result must match.
#[test]
fn ordered_ranges_from_images_match_the_store() {
    let img = open(None);
    let plain = open(Some(0));
    let (mut si, mut sp) = (img.connect().sql(), plain.connect().sql());
    setup(&mut si);
    setup(&mut sp);
    warm(&img);
    assert!(metric(&img, "ormdb_table_image_builds_total") >= 1);
    assert_eq!(metric(&plain, "ormdb_table_image_builds_total"), 0);
    // Old snapshots: one session per database stays inside a transaction across commits.
    let (mut oi, mut op) = (img.connect().sql(), plain.connect().sql());
    let mut rng = Rng(0x5eed_0ad1);
    let mut next_id = 10_000;
    let mut compared = 0;
    let hits = metric(&img, "ormdb_table_image_hits_total");
    let ordered = metric(&img, "ormdb_table_image_ordered_reads_total");
    assert!(ordered >= 2, "warm-up reads built no ordered index");
    for step in 0..600 {
        let q = QUERIES[rng.below(QUERIES.len() as u64) as usize];
        let p = query_params(&mut rng, q);
        let (a, b) = (run(&mut si, q, &p), run(&mut sp, q, &p));
        assert_eq!(a, b, "step {step}: {q} {p:?}");
        compared += 1;
        match rng.below(12) {
            0..=3 => {
                let (w, wp) = write_stmt(&mut rng, &mut next_id);
                let ra = si
                    .execute(&w, &Params::Positional(wp.clone()))
                    .map(|r| r.rows_affected);
                let rb = sp
                    .execute(&w, &Params::Positional(wp))
                    .map(|r| r.rows_affected);
                assert_eq!(
                    ra.map_err(|e| e.state),
                    rb.map_err(|e| e.state),
                    "step {step}: {w}"
                );
            }
            4 => {
                // An explicit transaction reading its own writes, committed or rolled back,
                // with a savepoint rolled back in the middle.
                let commit = rng.below(3) != 0;
                for s in [&mut si, &mut sp] {
                    s.execute("BEGIN", &Params::None).unwrap();
                }
                let mut r2 = Rng(rng.next());
                let mut id2 = next_id;
                for k in 0..6 {
                    if k == 3 {
                        for s in [&mut si, &mut sp] {
                            s.execute("SAVEPOINT sp", &Params::None).unwrap();
                        }
                    }
                    let (w, wp) = write_stmt(&mut r2, &mut id2);
                    let ra = si
                        .execute(&w, &Params::Positional(wp.clone()))
                        .map(|r| r.rows_affected);
                    let rb = sp
                        .execute(&w, &Params::Positional(wp))
                        .map(|r| r.rows_affected);
                    assert_eq!(ra.map_err(|e| e.state), rb.map_err(|e| e.state));
                    let q = QUERIES[r2.below(QUERIES.len() as u64) as usize];
                    let p = query_params(&mut r2, q);
                    assert_eq!(
                        run(&mut si, q, &p),
                        run(&mut sp, q, &p),
                        "own writes: {q} {p:?}"
                    );
                    compared += 1;
                    if k == 4 {
                        for s in [&mut si, &mut sp] {
                            s.execute("ROLLBACK TO sp", &Params::None).unwrap();
                        }
                        let q = QUERIES[r2.below(QUERIES.len() as u64) as usize];
                        let p = query_params(&mut r2, q);
                        assert_eq!(
                            run(&mut si, q, &p),
                            run(&mut sp, q, &p),
                            "after ROLLBACK TO: {q} {p:?}"
                        );
                        compared += 1;
                    }
                }
                next_id = id2;
                let end = if commit { "COMMIT" } else { "ROLLBACK" };
                for s in [&mut si, &mut sp] {
                    s.execute(end, &Params::None).unwrap();
                }
            }
            5 => {
                // The old snapshots: begin one, or read at it and maybe end it.
                if oi.in_transaction() {
                    let q = QUERIES[rng.below(QUERIES.len() as u64) as usize];
                    let p = query_params(&mut rng, q);
                    assert_eq!(
                        run(&mut oi, q, &p),
                        run(&mut op, q, &p),
                        "old snapshot: {q} {p:?}"
                    );
                    compared += 1;
                    if rng.below(3) == 0 {
                        oi.execute("ROLLBACK", &Params::None).unwrap();
                        op.execute("ROLLBACK", &Params::None).unwrap();
                    }
                } else {
                    for s in [&mut oi, &mut op] {
                        s.execute("BEGIN", &Params::None).unwrap();
                        s.execute("SELECT count(*) FROM t", &Params::None).unwrap();
                    }
                }
            }
            _ => {}
        }
    }
    assert!(compared >= 600);
    // The image served the reads (its overlay absorbed the commits).
    assert!(metric(&img, "ormdb_table_image_hits_total") > hits + 100);
    let served = metric(&img, "ormdb_table_image_ordered_reads_total") - ordered;
    assert!(
        served > 200,
        "only {served} ordered reads served from the image"
    );
    assert_eq!(metric(&plain, "ormdb_table_image_ordered_reads_total"), 0);
}

/// An ordered range read in a writing transaction joins the read set exactly as a store read
/// does: a concurrent commit that inserts into the range, moves a returned row out of it or
/// deletes one makes the reader's commit fail with 40001; a write elsewhere does not.
#[test]
fn ordered_ranges_from_images_join_the_read_set() {
    for budget in [None, Some(0)] {
        let db = open(budget);
        let mut setup_s = db.connect().sql();
        setup(&mut setup_s);
        warm(&db);
        let q = "SELECT id, a FROM t WHERE a BETWEEN 40 AND 60 ORDER BY a LIMIT 5";
        let first = run(&mut setup_s, q, &[]).unwrap();
        assert_eq!(first.len(), 5);
        let returned = first[1][0].clone();
        let cases: Vec<(String, bool)> = vec![
            // A new row inside the range, before the rows returned.
            (
                "INSERT INTO t (id, a, b) VALUES (5000, 40, 'x')".into(),
                true,
            ),
            // A returned row moved out of the range.
            (
                format!("UPDATE t SET a = 1000 WHERE id = {}", value_sql(&returned)),
                true,
            ),
            // A returned row deleted.
            (
                format!("DELETE FROM t WHERE id = {}", value_sql(&returned)),
                true,
            ),
            // A row far outside the range, and a column the index does not hold.
            (
                "INSERT INTO t (id, a, b) VALUES (5001, 140, 'y')".into(),
                false,
            ),
            ("UPDATE t SET c = x'01' WHERE a = 140".into(), false),
        ];
        for (write, conflicts) in cases {
            let mut reader = db.connect().sql();
            reader.execute("BEGIN", &Params::None).unwrap();
            let got = run(&mut reader, q, &[]).unwrap();
            assert_eq!(got.len(), 5);
            let mut w = db.connect().sql();
            w.execute(&write, &Params::None).unwrap();
            reader
                .execute("UPDATE t SET b = 'r' WHERE id = 1", &Params::None)
                .unwrap();
            let r = reader.execute("COMMIT", &Params::None);
            if conflicts {
                expect_err(r, SqlState::SerializationFailure, &[]);
                reader.execute("ROLLBACK", &Params::None).ok();
            } else {
                r.unwrap_or_else(|e| panic!("{write} (budget {budget:?}): {e}"));
            }
            // Put the table back for the next case.
            let mut fix = db.connect().sql();
            fix.execute_batch(&format!(
                "DELETE FROM t WHERE id IN (5000, 5001); UPDATE t SET c = x'00' WHERE a = 140; {}",
                restore_sql(&first, &returned)
            ))
            .unwrap();
        }
        if budget.is_none() {
            assert!(metric(&db, "ormdb_table_image_ordered_reads_total") > 5);
        }
    }
}

fn value_sql(v: &Value) -> String {
    match v {
        Value::Integer(i) => i.to_string(),
        other => panic!("not an id: {other:?}"),
    }
}

/// Re-inserts or resets the returned row `id` to its values in `first` (id, a).
fn restore_sql(first: &[Vec<Value>], id: &Value) -> String {
    let row = first.iter().find(|r| &r[0] == id).expect("row");
    let (id, a) = (value_sql(&row[0]), value_sql(&row[1]));
    format!("INSERT OR IGNORE INTO t (id, a, b) VALUES ({id}, {a}, 'z'); UPDATE t SET a = {a} WHERE id = {id};")
}

/// Writers swap the `a` values of two rows per transaction (the multiset of `a` never
/// changes) while readers read the whole index in order at their snapshots through an image:
/// every read must return that same sorted multiset, each row once.
#[test]
fn concurrent_writers_and_ordered_image_readers_keep_the_invariant() {
    let db = Arc::new(open(None));
    let mut s = db.connect().sql();
    setup(&mut s);
    warm(&db);
    let q = "SELECT id, a FROM t ORDER BY a LIMIT 100000";
    let base = run(&mut s, q, &[]).unwrap();
    let sorted =
        |rows: &[Vec<Value>]| -> Vec<Value> { rows.iter().map(|r| r[1].clone()).collect() };
    let expected = sorted(&base);
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..2u64 {
        let (db, stop) = (db.clone(), stop.clone());
        writers.push(std::thread::spawn(move || {
            let mut s = db.connect().sql();
            let mut rng = Rng(0x1234 + w);
            let mut commits = 0;
            while !stop.load(Ordering::Relaxed) {
                let (x, y) = (rng.below(ROWS as u64) + 1, rng.below(ROWS as u64) + 1);
                // Read both values, write them swapped; a concurrent swap of either row makes
                // one of the two commits fail (serializable), never both succeed.
                let r = (|| -> ormdb::Result<()> {
                    s.execute("BEGIN", &Params::None)?;
                    let get = |s: &mut Session, id: i64| -> ormdb::Result<Value> {
                        let r = s.execute(
                            "SELECT a FROM t WHERE id = ?",
                            &Params::Positional(vec![int(id)]),
                        )?;
                        Ok(r.rows[0][0].clone())
                    };
                    let (ax, ay) = (get(&mut s, x)?, get(&mut s, y)?);
                    let set = "UPDATE t SET a = ? WHERE id = ?";
                    s.execute(set, &Params::Positional(vec![ay, int(x)]))?;
                    s.execute(set, &Params::Positional(vec![ax, int(y)]))?;
                    s.execute("COMMIT", &Params::None)?;
                    Ok(())
                })();
                if r.is_err() {
                    s.execute("ROLLBACK", &Params::None).ok();
                }
                match r {
                    Ok(_) => commits += 1,
                    Err(e) if e.state == SqlState::SerializationFailure => {}
                    Err(e) => panic!("writer: {e}"),
                }
            }
            commits
        }));
    }
    let mut reads = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(1500);
    let mut r = db.connect().sql();
    while std::time::Instant::now() < deadline {
        r.execute("BEGIN", &Params::None).unwrap();
        let got = run(&mut r, q, &[]).unwrap();
        let again = run(
            &mut r,
            "SELECT id, a FROM t WHERE a BETWEEN 20 AND 90 ORDER BY a DESC LIMIT 50",
            &[],
        )
        .unwrap();
        r.execute("COMMIT", &Params::None).unwrap();
        assert_eq!(sorted(&got), expected, "read {reads}");
        let mut ids: Vec<&Value> = got.iter().map(|row| &row[0]).collect();
        ids.sort_by(|a, b| a.total_cmp(b));
        ids.dedup();
        assert_eq!(ids.len(), got.len(), "a row read twice");
        let in_range: Vec<&Value> = expected
            .iter()
            .filter(|v| matches!(v, Value::Integer(i) if (20..=90).contains(i)))
            .collect();
        let desc: Vec<Value> = in_range
            .iter()
            .rev()
            .take(50)
            .map(|v| (*v).clone())
            .collect();
        assert_eq!(sorted(&again), desc);
        reads += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let commits: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(reads > 5 && commits > 5, "reads {reads}, commits {commits}");
    assert!(metric(&db, "ormdb_table_image_ordered_reads_total") > 0);
}
