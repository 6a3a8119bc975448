//! Commits take their timestamps and log records in order under the commit lock but apply to the
//! store outside it, concurrently and so out of timestamp order; a commit becomes visible only
//! once every commit up to it is applied.
//!
//! - `readers_never_see_part_of_a_concurrent_commit`: 16 writers commit multi-row transactions
//!   over two tables while readers check, in every snapshot, that each transaction is there
//!   whole or not at all, that snapshots only grow, that a writer sees its own commit in its
//!   next transaction, and that the change stream delivers whole commits in timestamp order
//!   (both durability levels).
//! - `crash_between_out_of_order_applies_recovers_whole_commits`: the store state a crash can
//!   leave when a later commit finished applying before an earlier one: recovery replays what
//!   the log holds and aborts what it does not, never exposing a fragment.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ormdb::storage::commit_log::CommitLog;
use ormdb::storage::keys;
use ormdb::storage::row_codec::encode_row;
use ormdb::storage::sled_kv::SledKv;
use ormdb::storage::{Batch, Kv};
use ormdb::{
    DataType, Database, Durability, EntitySpec, FieldDef, Options, SubscriptionFilter, Value,
};

const WRITERS: i64 = 16;
const COMMITS_PER_WRITER: i64 = 25;
/// `items` rows per transaction (plus one `batches` row).
const ITEMS: i64 = 6;

fn int(v: &Value) -> i64 {
    v.as_i64()
        .unwrap_or_else(|| panic!("expected an integer, got {v:?}"))
}

fn create_tables(db: &Database) {
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("batches")
            .id("id")
            .field(FieldDef::new("n", DataType::Integer).not_null()),
    )
    .unwrap();
    tx.create_entity(
        &EntitySpec::new("items")
            .id("id")
            .field(FieldDef::new("batch", DataType::Integer).not_null())
            .field(FieldDef::new("k", DataType::Integer).not_null()),
    )
    .unwrap();
    tx.commit().unwrap();
}

/// Checks one snapshot: every batch has all of its items and its `batches` row, or nothing.
/// Returns the batch ids seen.
fn check_snapshot(conn: &ormdb::Connection) -> BTreeSet<i64> {
    let mut tx = conn.begin().unwrap();
    let mut items: BTreeMap<i64, i64> = BTreeMap::new();
    for r in tx.scan("items").unwrap() {
        *items.entry(int(&r.unwrap().values[1])).or_default() += 1;
    }
    let mut batches = BTreeSet::new();
    for r in tx.scan("batches").unwrap() {
        let r = r.unwrap();
        assert_eq!(int(&r.values[1]), ITEMS);
        batches.insert(int(&r.values[0]));
    }
    for (b, n) in &items {
        assert_eq!(
            *n, ITEMS,
            "batch {b}: a reader saw {n} of its {ITEMS} items"
        );
        assert!(
            batches.contains(b),
            "batch {b}: items visible without the batch row of the same commit"
        );
    }
    assert_eq!(
        batches.len(),
        items.len(),
        "a batch row is visible without its items"
    );
    tx.rollback();
    batches
}

fn run(durability: Durability) {
    let db = Database::temporary_with(Options::default().durability(durability)).unwrap();
    create_tables(&db);
    let mut sub = db
        .subscribe(Some(db.last_commit()), SubscriptionFilter::default())
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let db = db.clone();
            let done = done.clone();
            thread::spawn(move || {
                let conn = db.connect();
                let mut last = BTreeSet::new();
                let mut snapshots = 0u64;
                while !done.load(Ordering::Acquire) || snapshots < 3 {
                    let seen = check_snapshot(&conn);
                    assert!(
                        seen.is_superset(&last),
                        "a later snapshot lost commits an earlier one saw"
                    );
                    last = seen;
                    snapshots += 1;
                }
                snapshots
            })
        })
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let db = db.clone();
            thread::spawn(move || {
                let conn = db.connect();
                for i in 0..COMMITS_PER_WRITER {
                    let batch = w * 1_000 + i + 1;
                    let mut tx = conn.begin().unwrap();
                    for k in 0..ITEMS {
                        tx.insert("items", &[("batch", batch.into()), ("k", k.into())])
                            .unwrap();
                    }
                    tx.insert("batches", &[("id", batch.into()), ("n", ITEMS.into())])
                        .unwrap();
                    let token = tx.commit().unwrap().token;
                    // The writer's next transaction sees its commit, although commits before
                    // it may still have been applying when it finished its own apply.
                    let mut tx = conn.begin().unwrap();
                    assert!(
                        tx.get("batches", batch).unwrap().is_some(),
                        "commit {token} (batch {batch}) not visible to its own connection"
                    );
                    tx.rollback();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Release);
    let snapshots: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    let all = check_snapshot(&db.connect());
    assert_eq!(all.len() as i64, WRITERS * COMMITS_PER_WRITER);

    // The change stream: every commit once, whole, in timestamp order.
    let mut tokens = Vec::new();
    while let Some(cs) = sub.next_timeout(Duration::from_secs(5)).unwrap() {
        assert_eq!(
            cs.entities.len() as i64,
            ITEMS + 1,
            "change set {} is not a whole commit",
            cs.token
        );
        tokens.push(cs.token);
        if tokens.len() as i64 == WRITERS * COMMITS_PER_WRITER {
            break;
        }
    }
    assert_eq!(tokens.len() as i64, WRITERS * COMMITS_PER_WRITER);
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "change sets out of order"
    );
    println!("{durability:?}: {snapshots} reader snapshots checked");
}

#[test]
fn readers_never_see_part_of_a_concurrent_commit() {
    run(Durability::Normal);
    run(Durability::Full);
}

#[test]
fn crash_between_out_of_order_applies_recovers_whole_commits() {
    // Two cases of what a kill can leave: commits A < B, B fully applied to the store, A only
    // partly (B finished its apply first). (1) The log holds both records: both are replayed
    // and whole. (2) Only A's record reached the log (B's was never written: it is appended
    // after A's): A is replayed, B is aborted, its versions never visible.
    for b_logged in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let (items, batches, last) = {
            let db = Database::open(&path, Options::default()).unwrap();
            create_tables(&db);
            let s = db.schema();
            let id = |n: &str| s.entities.iter().find(|e| e.name == n).unwrap().id;
            (id("items"), id("batches"), db.last_commit())
        };
        let (a, b) = (last + 1, last + 2);
        // Batch `ts` rows: items ids 10*ts..10*ts+ITEMS, batch row id ts.
        let commit = |ts: u64| {
            let mut batch = Batch::default();
            for k in 0..ITEMS {
                let id = ts as i64 * 10 + k;
                batch.put(
                    keys::row_version_key(items, id, ts),
                    encode_row(
                        0,
                        ts,
                        &[Value::Integer(id), Value::Integer(ts as i64), k.into()],
                    ),
                );
            }
            batch.put(
                keys::row_version_key(batches, ts as i64, ts),
                encode_row(0, ts, &[Value::Integer(ts as i64), ITEMS.into()]),
            );
            batch
        };
        {
            let log = CommitLog::create(&path.join("log"), last).unwrap();
            let lsn = log.append(a, &commit(a)).unwrap().lsn;
            let lsn = if b_logged {
                log.append(b, &commit(b)).unwrap().lsn
            } else {
                lsn
            };
            log.persist(lsn, true).unwrap();
            let kv = SledKv::open(&path.join("data"), 8 << 20).unwrap();
            kv.apply_unordered(&commit(b)).unwrap();
            let mut part = commit(a);
            part.ops.truncate(2);
            kv.apply_unordered(&part).unwrap();
            // A running engine holds a reservation above its commits (a crash keeps it).
            let mut m = Batch::default();
            m.put(
                b"\x02reserved_ts".to_vec(),
                (last + 10).to_be_bytes().to_vec(),
            );
            kv.apply_unordered(&m).unwrap();
            kv.sync().unwrap();
        }
        let db = Database::open(&path, Options::default()).unwrap();
        let conn = db.connect();
        let seen = check_snapshot(&conn);
        let want: BTreeSet<i64> = if b_logged {
            [a as i64, b as i64].into()
        } else {
            [a as i64].into()
        };
        assert_eq!(seen, want, "b logged: {b_logged}");
        // New commits land above the reservation and the recovered state stays consistent.
        let mut tx = conn.begin().unwrap();
        tx.insert("batches", &[("id", 1_000_000.into()), ("n", ITEMS.into())])
            .unwrap();
        for k in 0..ITEMS {
            tx.insert("items", &[("batch", 1_000_000.into()), ("k", k.into())])
                .unwrap();
        }
        let token = tx.commit().unwrap().token;
        assert!(token > last + 10, "token {token} inside the aborted range");
        drop(conn);
        drop(db);
        let db = Database::open(&path, Options::default()).unwrap();
        let mut want = want;
        want.insert(1_000_000);
        assert_eq!(check_snapshot(&db.connect()), want);
    }
}
