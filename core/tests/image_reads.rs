//! Point and batched row reads served from decoded table images (`Txn::read_row`,
//! `Txn::read_rows_batch`: `Transaction::get`, SQL primary-key and index reads). An image is
//! built once store reads of a table have cost about a scan; from then on reads must stay exact
//! at every snapshot: own buffered writes first, soft deletes, schema changes, concurrent
//! writers, and read-set recording for serializable conflict detection. The reference is the
//! same database with images disabled (`image_budget(0)`), which reads only the store.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use ormdb::{
    Connection, DataType, Database, Durability, EntitySpec, FieldDef, Options, Params, Row,
    ScanOptions, SqlState, Value,
};

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

const ALL: ScanOptions = ScanOptions {
    include_deleted: true,
};

/// `items(id, name, n)` with an index on `n`, soft delete on, `rows` rows.
fn setup(conn: &Connection, rows: i64) {
    let mut tx = conn.begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("items")
            .id("id")
            .field(FieldDef::new("name", DataType::Text).not_null())
            .field(FieldDef::new("n", DataType::Integer))
            .index("items_n", &["n"])
            .soft_delete(),
    )
    .unwrap();
    for i in 1..=rows {
        tx.insert(
            "items",
            &[("name", text(&format!("item{i}"))), ("n", int(i * 10))],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// Point-reads every id in `1..=rows` (plus a few absent ones) often enough that the table's
/// image gets built, one transaction per pass.
fn warm(conn: &Connection, rows: i64) {
    for _ in 0..4 {
        let mut tx = conn.begin().unwrap();
        for id in 1..=rows + 2 {
            tx.get("items", id).unwrap();
        }
    }
}

fn all_rows(conn: &Connection, ids: std::ops::RangeInclusive<i64>) -> Vec<Option<Row>> {
    let mut tx = conn.begin().unwrap();
    ids.map(|id| tx.get_with("items", id, ALL).unwrap())
        .collect()
}

#[test]
fn point_reads_build_an_image_and_match_the_store() {
    let db = open(None);
    let plain = open(Some(0));
    let (conn, pconn) = (db.connect(), plain.connect());
    setup(&conn, 150);
    setup(&pconn, 150);
    warm(&conn, 150);
    warm(&pconn, 150);
    assert!(
        metric(&db, "ormdb_table_image_builds_total") >= 1,
        "point reads never built an image"
    );
    let hits = metric(&db, "ormdb_table_image_hits_total");
    assert_eq!(all_rows(&conn, 0..=152), all_rows(&pconn, 0..=152));
    assert!(metric(&db, "ormdb_table_image_hits_total") > hits);
    assert_eq!(metric(&plain, "ormdb_table_image_builds_total"), 0);
}

#[test]
fn image_reads_see_their_snapshot_and_own_writes() {
    let db = open(None);
    let conn = db.connect();
    setup(&conn, 100);
    warm(&conn, 100);
    assert!(metric(&db, "ormdb_table_image_builds_total") >= 1);

    // A reader whose snapshot predates the writes below.
    let mut old = conn.begin().unwrap();
    let before = old.get("items", 7).unwrap().unwrap();
    assert_eq!(before.values[1], text("item7"));

    let other = db.connect();
    let mut w = other.begin().unwrap();
    w.update("items", 7, &[("name", text("seven"))]).unwrap();
    w.delete("items", 8).unwrap(); // soft delete
    w.insert(
        "items",
        &[("id", int(500)), ("name", text("new")), ("n", int(5))],
    )
    .unwrap();
    // Own writes first, others do not see them yet.
    assert_eq!(w.get("items", 7).unwrap().unwrap().values[1], text("seven"));
    assert!(w.get("items", 8).unwrap().is_none());
    assert!(w.get_with("items", 8, ALL).unwrap().unwrap().soft_deleted);
    assert_eq!(w.get("items", 500).unwrap().unwrap().values[1], text("new"));
    {
        let mut tx = conn.begin().unwrap();
        assert_eq!(
            tx.get("items", 7).unwrap().unwrap().values[1],
            text("item7")
        );
        assert!(tx.get("items", 8).unwrap().is_some());
        assert!(tx.get("items", 500).unwrap().is_none());
    }
    let v7 = w.get("items", 7).unwrap().unwrap().version;
    w.commit().unwrap();

    // New snapshots see the commit (through the image's overlay), with the version tokens.
    let mut tx = conn.begin().unwrap();
    let now = tx.get("items", 7).unwrap().unwrap();
    assert_eq!(now.values[1], text("seven"));
    assert_eq!(now.version, v7);
    assert_eq!(now.version, before.version + 1);
    assert!(tx.get("items", 8).unwrap().is_none());
    let hidden = tx.get_with("items", 8, ALL).unwrap().unwrap();
    assert!(hidden.soft_deleted);
    assert_eq!(hidden.values[1], text("item8"));
    assert_eq!(
        tx.get("items", 500).unwrap().unwrap().values[1],
        text("new")
    );
    drop(tx);

    // The old snapshot still reads the rows as they were.
    assert_eq!(old.get("items", 7).unwrap().unwrap(), before);
    assert!(old.get("items", 8).unwrap().is_some());
    assert!(old.get("items", 500).unwrap().is_none());

    // A transaction's own delete and re-read of a row the image holds.
    let mut tx = conn.begin().unwrap();
    tx.get("items", 9).unwrap().unwrap();
    tx.update("items", 9, &[("n", int(-9))]).unwrap();
    assert_eq!(tx.get("items", 9).unwrap().unwrap().values[2], int(-9));
    tx.delete("items", 9).unwrap();
    assert!(tx.get("items", 9).unwrap().is_none());
    tx.rollback();
    let mut tx = conn.begin().unwrap();
    assert_eq!(tx.get("items", 9).unwrap().unwrap().values[2], int(90));
}

#[test]
fn schema_changes_are_seen_by_image_reads() {
    let db = open(None);
    let conn = db.connect();
    setup(&conn, 100);
    warm(&conn, 100);
    assert!(metric(&db, "ormdb_table_image_builds_total") >= 1);
    let mut old = conn.begin().unwrap();
    old.get("items", 3).unwrap().unwrap();

    // DDL inside a transaction: its reads use the new layout, others the old one.
    let mut ddl = conn.begin().unwrap();
    ddl.add_field(
        "items",
        FieldDef::new("color", DataType::Text).default_value(text("red")),
    )
    .unwrap();
    let r = ddl.get("items", 3).unwrap().unwrap();
    assert_eq!(r.values.len(), 4);
    assert_eq!(r.values[3], text("red"));
    ddl.commit().unwrap();

    let mut tx = conn.begin().unwrap();
    let r = tx.get("items", 3).unwrap().unwrap();
    assert_eq!(r.values, vec![int(3), text("item3"), int(30), text("red")]);
    drop(tx);
    // After the change, point reads build a new image in the new layout.
    let builds = metric(&db, "ormdb_table_image_builds_total");
    warm(&conn, 100);
    assert!(metric(&db, "ormdb_table_image_builds_total") > builds);
    let mut tx = conn.begin().unwrap();
    assert_eq!(tx.get("items", 4).unwrap().unwrap().values[3], text("red"));
    // The snapshot from before the change keeps its schema and rows.
    assert_eq!(old.get("items", 3).unwrap().unwrap().values.len(), 3);
}

#[test]
fn image_reads_join_the_read_set() {
    let db = open(None);
    let conn = db.connect();
    setup(&conn, 100);
    warm(&conn, 100);
    assert!(metric(&db, "ormdb_table_image_builds_total") >= 1);

    // Point read: a concurrent update of the row read makes the writer's commit conflict.
    let mut a = conn.begin().unwrap();
    let r = a.get("items", 5).unwrap().unwrap();
    let mut b = conn.begin().unwrap();
    b.update("items", 5, &[("n", int(0))]).unwrap();
    b.commit().unwrap();
    a.update("items", 6, &[("n", r.values[2].clone())]).unwrap();
    expect_err(a.commit(), SqlState::SerializationFailure, &[]);

    // Batched read (SQL IN list on the primary key, index range): the same.
    let mut s = db.connect().sql();
    s.execute("BEGIN", &Params::None).unwrap();
    let got = s
        .execute(
            "SELECT id FROM items WHERE id IN (11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27)",
            &Params::None,
        )
        .unwrap();
    assert_eq!(got.rows.len(), 17);
    let mut b = conn.begin().unwrap();
    b.update("items", 13, &[("name", text("x"))]).unwrap();
    b.commit().unwrap();
    s.execute("UPDATE items SET n = 1 WHERE id = 40", &Params::None)
        .unwrap();
    expect_err(
        s.execute("COMMIT", &Params::None),
        SqlState::SerializationFailure,
        &[],
    );
    s.execute("ROLLBACK", &Params::None).ok();

    // A row not read does not conflict.
    let mut a = conn.begin().unwrap();
    a.get("items", 30).unwrap().unwrap();
    let mut b = conn.begin().unwrap();
    b.update("items", 31, &[("n", int(0))]).unwrap();
    b.commit().unwrap();
    a.update("items", 32, &[("n", int(1))]).unwrap();
    a.commit().unwrap();
}

/// Transfers between accounts on writer threads while readers read every account with point
/// reads in one transaction: each reader's total must be the initial total (a snapshot-exact
/// overlay), and the image must have served reads meanwhile.
#[test]
fn concurrent_writers_and_image_readers_keep_the_invariant() {
    let db = open(None);
    let conn = db.connect();
    const N: i64 = 80;
    let mut tx = conn.begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("acct")
            .id("id")
            .field(FieldDef::new("bal", DataType::Integer).not_null()),
    )
    .unwrap();
    for _ in 0..N {
        tx.insert("acct", &[("bal", int(100))]).unwrap();
    }
    tx.commit().unwrap();
    let total = |conn: &Connection| -> i64 {
        let mut tx = conn.begin().unwrap();
        (1..=N)
            .map(|id| match tx.get("acct", id).unwrap().unwrap().values[1] {
                Value::Integer(b) => b,
                ref v => panic!("balance {v:?}"),
            })
            .sum()
    };
    for _ in 0..4 {
        assert_eq!(total(&conn), 100 * N);
    }
    let builds = metric(&db, "ormdb_table_image_builds_total");
    assert!(builds >= 1, "no image built");
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for t in 0..2u64 {
        let conn = db.connect();
        let stop = stop.clone();
        writers.push(std::thread::spawn(move || {
            let mut seed = 0x2545_f491_4f6c_dd1d ^ t;
            let mut next = || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed % N as u64) as i64 + 1
            };
            let mut done = 0;
            while !stop.load(Ordering::Relaxed) || done < 20 {
                let (from, to) = (next(), next());
                if from == to {
                    continue;
                }
                let mut tx = conn.begin().unwrap();
                let bal = |tx: &mut ormdb::Transaction, id| match tx
                    .get("acct", id)
                    .unwrap()
                    .unwrap()
                    .values[1]
                {
                    Value::Integer(b) => b,
                    _ => unreachable!("balances are integers"),
                };
                let (a, b) = (bal(&mut tx, from), bal(&mut tx, to));
                tx.update("acct", from, &[("bal", int(a - 3))]).unwrap();
                tx.update("acct", to, &[("bal", int(b + 3))]).unwrap();
                match tx.commit() {
                    Ok(_) => done += 1,
                    Err(e) if e.state == SqlState::SerializationFailure => {}
                    Err(e) => panic!("commit: {e}"),
                }
            }
            done
        }));
    }
    let hits = metric(&db, "ormdb_table_image_hits_total");
    for _ in 0..150 {
        assert_eq!(total(&conn), 100 * N);
    }
    stop.store(true, Ordering::Relaxed);
    let commits: i32 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(commits >= 40);
    assert_eq!(total(&conn), 100 * N);
    assert!(metric(&db, "ormdb_table_image_hits_total") > hits);
}

/// The same random writes on a database with images and one without; after each step, point
/// reads, SQL IN lists and ordered index ranges agree at the newest snapshot and at an older
/// one kept open.
#[test]
fn random_writes_reads_agree_with_images_disabled() {
    let db = open(None);
    let plain = open(Some(0));
    let (conn, pconn) = (db.connect(), plain.connect());
    setup(&conn, 120);
    setup(&pconn, 120);
    warm(&conn, 120);
    warm(&pconn, 120);
    assert!(metric(&db, "ormdb_table_image_builds_total") >= 1);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let (mut s, mut ps) = (db.connect().sql(), plain.connect().sql());
    let queries = [
        "SELECT id, name, n FROM items WHERE id IN (1, 5, 9, 17, 33, 64, 65, 66, 90, 119, 121, 400)",
        "SELECT id, name FROM items WHERE n BETWEEN 200 AND 900 ORDER BY n LIMIT 20",
        "SELECT id, name FROM items WHERE n < 700 ORDER BY n DESC LIMIT 20",
        "SELECT id, n FROM items WHERE n = 330",
    ];
    let mut old = None;
    for step in 0..60 {
        let ops: Vec<(u64, i64, i64)> = (0..3)
            .map(|_| (rnd(4), rnd(130) as i64 + 1, rnd(1500) as i64))
            .collect();
        for c in [&conn, &pconn] {
            let mut tx = c.begin().unwrap();
            for &(op, id, v) in &ops {
                let _ = match op {
                    0 => tx
                        .update(
                            "items",
                            id,
                            &[("n", int(v)), ("name", text(&format!("u{v}")))],
                        )
                        .map(|_| ()),
                    1 => tx.delete("items", id).map(|_| ()),
                    2 => tx.restore("items", id).map(|_| ()),
                    _ => tx
                        .insert("items", &[("name", text("ins")), ("n", int(v))])
                        .map(|_| ()),
                };
            }
            if step % 7 == 3 {
                tx.rollback();
            } else {
                tx.commit().unwrap();
            }
        }
        assert_eq!(
            all_rows(&conn, 0..=200),
            all_rows(&pconn, 0..=200),
            "step {step}"
        );
        for q in queries {
            assert_eq!(
                s.execute(q, &Params::None).unwrap().rows,
                ps.execute(q, &Params::None).unwrap().rows,
                "step {step}: {q}"
            );
        }
        if step % 10 == 0 {
            if let Some((mut a, mut b, at)) = old.take() {
                let a: Vec<_> = (0..=200)
                    .map(|id| ormdb::Transaction::get_with(&mut a, "items", id, ALL).unwrap())
                    .collect();
                let b: Vec<_> = (0..=200)
                    .map(|id| ormdb::Transaction::get_with(&mut b, "items", id, ALL).unwrap())
                    .collect();
                assert_eq!(a, b, "snapshot of step {at}");
            }
            old = Some((conn.begin().unwrap(), pconn.begin().unwrap(), step));
        }
        // Reads keep the image warm across the writes' overlays and compactions.
        if step % 5 == 0 {
            warm(&conn, 130);
        }
    }
    assert!(metric(&db, "ormdb_table_image_hits_total") > 0);
}
