//! Row heads (`storage::row_heads`): point reads of rows whose newest version is in the value
//! log answered from memory. What they answer must always equal what a search of the store
//! would: across updates that move a row between the value log and the store, deletes, old
//! snapshots, garbage collection, value log compaction, reopen (the background fill), a zero
//! budget, and all of these at once from several threads.
//!
//! Decoded table images are off in these tests (`image_budget(0)`), so every point read goes
//! to the store path the row heads sit on.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ormdb::{DataType, Database, EntitySpec, FieldDef, Options, SqlState, Transaction, Value};

fn opts() -> Options {
    Options {
        change_retention: 10,
        ..Options::default().image_budget(0)
    }
}

/// `docs(id, n INTEGER, body TEXT)`.
fn create(db: &Database) {
    let mut tx = db.connect().begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("docs")
            .id("id")
            .field(FieldDef::new("n", DataType::Integer).not_null())
            .field(FieldDef::new("body", DataType::Text).not_null()),
    )
    .unwrap();
    tx.commit().unwrap();
}

/// A body of `len` bytes that names its row and value, so a row read whole can be checked.
fn body(id: i64, n: i64, len: usize) -> String {
    let head = format!("{id}:{n}:");
    let mut s = head.repeat(len / head.len() + 1);
    s.truncate(len);
    s
}

/// Sizes on both sides of the 512-byte threshold: a row moves between the value log and the
/// store as it is rewritten.
fn len_for(n: i64) -> usize {
    [40, 700, 300, 1500, 510, 2500][n.rem_euclid(6) as usize]
}

fn row(id: i64, n: i64) -> [(&'static str, Value); 3] {
    [
        ("id", Value::Integer(id)),
        ("n", Value::Integer(n)),
        ("body", Value::from(body(id, n, len_for(n)).as_str())),
    ]
}

/// The row's `n`, after checking its body belongs to that `n` (None: no such row).
fn read(tx: &mut Transaction, id: i64) -> ormdb::Result<Option<i64>> {
    let Some(r) = tx.get("docs", id)? else {
        return Ok(None);
    };
    let n = r.values[1].as_i64().expect("n is an integer");
    match &r.values[2] {
        Value::Text(t) => assert_eq!(t.as_ref(), body(id, n, len_for(n)), "row {id} body"),
        v => panic!("body is {v:?}"),
    }
    Ok(Some(n))
}

fn get(db: &Database, id: i64) -> Option<i64> {
    let mut tx = db.connect().begin().unwrap();
    read(&mut tx, id).unwrap()
}

fn put(db: &Database, id: i64, n: i64) {
    let mut tx = db.connect().begin().unwrap();
    let r = row(id, n);
    if tx.get("docs", id).unwrap().is_some() {
        tx.update("docs", id, &r[1..]).unwrap().unwrap();
    } else {
        tx.insert("docs", &r).unwrap();
    }
    tx.commit().unwrap();
}

fn delete(db: &Database, id: i64) {
    let mut tx = db.connect().begin().unwrap();
    tx.delete("docs", id).unwrap();
    tx.commit().unwrap();
}

fn hits(db: &Database) -> u64 {
    db.row_head_stats().unwrap().hits
}

#[test]
fn point_reads_follow_updates_deletes_and_old_snapshots() {
    let db = Database::temporary_with(opts()).unwrap();
    create(&db);
    for id in 1..=6 {
        put(&db, id, id); // bodies of 700, 300, 1500, 510, 2500, 40 bytes
    }
    let before = hits(&db);
    for id in 1..=6 {
        assert_eq!(get(&db, id), Some(id));
    }
    // Rows 1, 3, 4 and 5 are in the value log (row 4's 510-byte body with the row's other
    // fields is just over the threshold): their reads were answered from their heads.
    assert_eq!(hits(&db) - before, 4, "{:?}", db.row_head_stats());

    let conn = db.connect();
    let mut old = conn.begin().unwrap();
    assert_eq!(read(&mut old, 1).unwrap(), Some(1));
    put(&db, 1, 7); // value log -> value log
    put(&db, 3, 8); // value log -> store
    put(&db, 2, 9); // store -> value log
    delete(&db, 5); // value log -> tombstone
    put(&db, 6, 12); // store -> store
                     // The old snapshot still sees what it saw: every head is newer than it.
    for (id, n) in [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6)] {
        assert_eq!(
            read(&mut old, id).unwrap(),
            Some(n),
            "old snapshot, row {id}"
        );
    }
    old.commit().unwrap();
    for (id, n) in [
        (1, Some(7)),
        (2, Some(9)),
        (3, Some(8)),
        (5, None),
        (6, Some(12)),
    ] {
        assert_eq!(get(&db, id), n, "row {id}");
    }
    assert_eq!(get(&db, 99), None);
    // Re-inserted after its delete, in the value log again.
    put(&db, 5, 11);
    let before = hits(&db);
    assert_eq!(get(&db, 5), Some(11));
    assert_eq!(hits(&db) - before, 1);
    // A rolled-back write leaves nothing behind.
    let mut tx = conn.begin().unwrap();
    tx.update("docs", 5, &row(5, 13)[1..]).unwrap().unwrap();
    tx.rollback();
    assert_eq!(get(&db, 5), Some(11));
}

#[test]
fn garbage_collection_and_compaction_keep_heads_exact() {
    let db = Database::temporary_with(opts()).unwrap();
    create(&db);
    const ROWS: i64 = 300;
    for n in 0..6 {
        for id in 1..=ROWS {
            put(&db, id, id * 10 + n);
        }
    }
    for id in (1..=ROWS).step_by(3) {
        delete(&db, id);
    }
    let expect = |id: i64| (id % 3 != 1).then_some(id * 10 + 5);
    for id in 1..=ROWS {
        assert_eq!(get(&db, id), expect(id), "row {id} before gc");
    }
    let gc = db.gc().unwrap();
    assert!(gc.row_versions_removed > 0, "{gc:?}");
    for id in 1..=ROWS {
        assert_eq!(get(&db, id), expect(id), "row {id} after gc");
    }
    let files = db.compact_values().unwrap();
    assert!(
        files.files_removed > 0 && files.values_moved > 0,
        "{files:?}"
    );
    let before = hits(&db);
    for id in 1..=ROWS {
        assert_eq!(get(&db, id), expect(id), "row {id} after compaction");
    }
    // The rows whose newest version (n = 5: 2500 bytes) is in the value log were all answered
    // from their heads, re-pointed by the compaction.
    let live = (1..=ROWS).filter(|id| id % 3 != 1).count() as u64;
    assert_eq!(hits(&db) - before, live, "{:?}", db.row_head_stats());
}

#[test]
fn reopen_fills_heads_in_the_background_and_skips_small_row_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    const ROWS: i64 = 5000;
    {
        let db = Database::open(&path, opts()).unwrap();
        create(&db);
        let conn = db.connect();
        let mut tx = conn.begin().unwrap();
        tx.create_entity(
            &EntitySpec::new("small")
                .id("id")
                .field(FieldDef::new("v", DataType::Integer)),
        )
        .unwrap();
        for id in 1..=ROWS {
            tx.insert("docs", &row(id, 3)).unwrap(); // 1500 bytes
            tx.insert("small", &[("id", id.into()), ("v", id.into())])
                .unwrap();
        }
        tx.commit().unwrap();
    }
    let db = Database::open(&path, opts()).unwrap();
    let pages = (ROWS as u64).div_ceil(1024) + 1; // ids 1..=5000 touch pages 0..=4
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.row_head_stats().unwrap().bytes < (pages - 1) * 24 * 1024 {
        assert!(Instant::now() < deadline, "{:?}", db.row_head_stats());
        thread::sleep(Duration::from_millis(10));
    }
    thread::sleep(Duration::from_millis(200));
    let stats = db.row_head_stats().unwrap();
    assert_eq!(
        stats.bytes,
        (pages - 1) * 24 * 1024,
        "only docs' pages: {stats:?}"
    );
    assert_eq!(stats.hits, 0);
    for id in 1..=ROWS {
        assert_eq!(get(&db, id), Some(3), "row {id}");
    }
    assert_eq!(
        hits(&db),
        ROWS as u64,
        "every read from a head filled at open"
    );
    let mut tx = db.connect().begin().unwrap();
    assert_eq!(
        tx.get("small", 77).unwrap().unwrap().values[1],
        Value::Integer(77)
    );
}

#[test]
fn a_zero_budget_turns_them_off() {
    let db = Database::temporary_with(opts().row_head_budget(0)).unwrap();
    create(&db);
    for id in 1..=20 {
        put(&db, id, 3);
    }
    put(&db, 4, 7);
    for id in 1..=20 {
        assert_eq!(get(&db, id), Some(if id == 4 { 7 } else { 3 }));
    }
    let s = db.row_head_stats().unwrap();
    assert_eq!((s.bytes, s.hits, s.budget), (0, 0, 0));
}

/// Transfers between accounts whose rows are rewritten at sizes on both sides of the
/// threshold, from several threads, while readers check every snapshot's total and every
/// row's body, and garbage collection and value log compaction run: a head that ever answered
/// with a wrong version breaks the total or a body.
#[test]
fn concurrent_transfers_gc_and_compaction_keep_every_read_exact() {
    const ACCOUNTS: i64 = 40;
    const INITIAL: i64 = 1_000;
    let db = Database::temporary_with(opts()).unwrap();
    create(&db);
    {
        let mut tx = db.connect().begin().unwrap();
        for id in 1..=ACCOUNTS {
            tx.insert("docs", &row(id, INITIAL)).unwrap();
        }
        tx.commit().unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let transfers = Arc::new(AtomicU64::new(0));
    let run_for = Duration::from_secs(4);
    let mut threads = Vec::new();
    for t in 0..3u64 {
        let (db, stop, transfers) = (db.clone(), stop.clone(), transfers.clone());
        threads.push(thread::spawn(move || {
            let conn = db.connect();
            let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (t + 1);
            let mut next = move |n: u64| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % n
            };
            while !stop.load(Ordering::Acquire) {
                let a = next(ACCOUNTS as u64) as i64 + 1;
                let b = (a + next(ACCOUNTS as u64 - 1) as i64) % ACCOUNTS + 1;
                let amount = next(7) as i64 + 1;
                let r = conn.transact(1000, |tx| {
                    let x = read(tx, a)?.expect("account");
                    let y = read(tx, b)?.expect("account");
                    tx.update("docs", a, &row(a, x - amount)[1..])?.unwrap();
                    tx.update("docs", b, &row(b, y + amount)[1..])?.unwrap();
                    Ok(())
                });
                match r {
                    Ok(()) => {
                        transfers.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.state == SqlState::SerializationFailure => {}
                    Err(e) => panic!("transfer: {e}"),
                }
            }
        }));
    }
    // Churn: rows inserted, read, deleted and read again outside the accounts' ids.
    {
        let (db, stop) = (db.clone(), stop.clone());
        threads.push(thread::spawn(move || {
            let mut i = 0i64;
            while !stop.load(Ordering::Acquire) {
                let id = 1000 + i % 50;
                put(&db, id, i);
                assert_eq!(get(&db, id), Some(i));
                delete(&db, id);
                assert_eq!(get(&db, id), None);
                i += 1;
            }
        }));
    }
    {
        let (db, stop) = (db.clone(), stop.clone());
        threads.push(thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                db.gc().unwrap();
                db.compact_values().unwrap();
                thread::sleep(Duration::from_millis(20));
            }
        }));
    }
    let reader = {
        let (db, stop) = (db.clone(), stop.clone());
        thread::spawn(move || {
            let conn = db.connect();
            let mut checks = 0u64;
            while !stop.load(Ordering::Acquire) || checks < 5 {
                let mut tx = conn.begin().unwrap();
                let mut total = 0;
                for id in 1..=ACCOUNTS {
                    total += read(&mut tx, id).unwrap().expect("account");
                }
                assert_eq!(total, ACCOUNTS * INITIAL, "a snapshot's total");
                tx.commit().unwrap();
                checks += 1;
            }
            checks
        })
    };
    thread::sleep(run_for);
    stop.store(true, Ordering::Release);
    for t in threads {
        t.join().unwrap();
    }
    let checks = reader.join().unwrap();
    let mut tx = db.connect().begin().unwrap();
    let total: i64 = (1..=ACCOUNTS)
        .map(|id| read(&mut tx, id).unwrap().unwrap())
        .sum();
    assert_eq!(total, ACCOUNTS * INITIAL);
    let stats = db.row_head_stats().unwrap();
    println!(
        "{} transfers, {checks} snapshot checks, {stats:?}",
        transfers.load(Ordering::Relaxed)
    );
    assert!(transfers.load(Ordering::Relaxed) > 50);
    assert!(stats.hits > 100, "the heads answered reads: {stats:?}");
}

/// The row heads of a reopened database after a crash-free close answer like the store.
#[test]
fn reads_after_reopen_match_the_store_row_for_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let check = |path: &Path, budget: u64| {
        let db = Database::open(path, opts().row_head_budget(budget)).unwrap();
        let mut tx = db.connect().begin().unwrap();
        let got: Vec<Option<i64>> = (1..=200).map(|id| read(&mut tx, id).unwrap()).collect();
        tx.commit().unwrap();
        got
    };
    {
        let db = Database::open(&path, opts()).unwrap();
        create(&db);
        for n in 0..4 {
            for id in 1..=200 {
                if (id + n) % 7 == 0 {
                    delete(&db, id);
                } else {
                    put(&db, id, id + n);
                }
            }
        }
    }
    let with_heads = check(&path, 64 << 20);
    let without = check(&path, 0);
    assert_eq!(with_heads, without);
    assert!(with_heads.iter().filter(|n| n.is_none()).count() > 10);
}
