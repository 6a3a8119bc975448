//! Recovery of a store that holds part of a commit whose log record never became durable.
//! Commits are applied to the store op by op, so after a crash the store may hold such a
//! fragment; its timestamp must stay invisible forever, and new commits must never reuse it.

use ormdb::storage::keys;
use ormdb::storage::row_codec::encode_row;
use ormdb::storage::sled_kv::SledKv;
use ormdb::storage::{Batch, Kv};
use ormdb::{DataType, Database, EntitySpec, FieldDef, Options, SubscriptionFilter, Value};

#[test]
fn fragment_of_an_unlogged_commit_stays_invisible() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let (table_id, last) = {
        let db = Database::open(&path, Options::default()).unwrap();
        let conn = db.connect();
        let mut tx = conn.begin().unwrap();
        tx.create_entity(
            &EntitySpec::new("t")
                .id("id")
                .field(FieldDef::new("v", DataType::Integer)),
        )
        .unwrap();
        tx.insert("t", &[("v", Value::Integer(1))]).unwrap();
        tx.commit().unwrap();
        let id = db.schema().entities[0].id;
        (id, db.last_commit())
    };
    // What a crash can leave: row versions of commit `last + 3` (inside the reserved range)
    // applied to the store, its log record lost.
    let orphan_ts = last + 3;
    {
        let kv = SledKv::open(&path.join("data"), 8 << 20).unwrap();
        let mut b = Batch::default();
        b.put(
            keys::row_version_key(table_id, 1, orphan_ts),
            encode_row(0, 2, &[Value::Integer(1), Value::Integer(99)]),
        );
        b.put(
            keys::row_version_key(table_id, 50, orphan_ts),
            encode_row(0, 1, &[Value::Integer(50), Value::Integer(5)]),
        );
        b.put(keys::change_key(orphan_ts), vec![1, 0, 0, 0, 0]);
        // A running engine holds a reservation above its last commit (a clean close releases
        // it; a crash does not).
        b.put(
            b"\x02reserved_ts".to_vec(),
            (last + 10).to_be_bytes().to_vec(),
        );
        kv.apply_unordered(&b).unwrap();
        kv.sync().unwrap();
    }
    let db = Database::open(&path, Options::default()).unwrap();
    let conn = db.connect();
    let mut sub = db
        .subscribe(Some(last), SubscriptionFilter::default())
        .unwrap();
    let mut tx = conn.begin().unwrap();
    assert_eq!(
        tx.get("t", 1).unwrap().unwrap().values[1],
        Value::Integer(1),
        "fragment must not be visible"
    );
    assert!(tx.get("t", 50).unwrap().is_none());
    assert_eq!(tx.count("t").unwrap(), 1);
    tx.rollback();
    // New commits go above the fragment and never expose it.
    for i in 0..5 {
        let mut tx = conn.begin().unwrap();
        tx.insert("t", &[("v", Value::Integer(100 + i))]).unwrap();
        let token = tx.commit().unwrap().token;
        assert!(
            token > orphan_ts,
            "token {token} reused an aborted timestamp {orphan_ts}"
        );
    }
    let mut tx = conn.begin().unwrap();
    assert_eq!(
        tx.get("t", 1).unwrap().unwrap().values[1],
        Value::Integer(1)
    );
    assert!(tx.get("t", 50).unwrap().is_none());
    assert_eq!(tx.count("t").unwrap(), 6);
    tx.rollback();
    // The change stream skips the aborted commit.
    let mut tokens = Vec::new();
    while let Some(cs) = sub.try_next().unwrap() {
        tokens.push(cs.token);
    }
    assert_eq!(tokens.len(), 5);
    assert!(!tokens.contains(&orphan_ts));
    // Full GC removes the fragment; still invisible after another reopen.
    let stats = db.gc().unwrap();
    assert!(stats.row_versions_removed >= 2, "{stats:?}");
    drop(db);
    let db = Database::open(&path, Options::default()).unwrap();
    let mut tx = db.connect().begin().unwrap();
    assert!(tx.get("t", 50).unwrap().is_none());
    assert_eq!(tx.count("t").unwrap(), 6);
    tx.rollback();
    // Commits after a clean close of a recovered database land above the aborted range and
    // are visible (they once reused aborted timestamps and vanished).
    let mut tx = db.connect().begin().unwrap();
    tx.insert("t", &[("v", Value::Integer(7))]).unwrap();
    let token = tx.commit().unwrap().token;
    assert!(token > last + 10, "token {token} inside the aborted range");
    drop(db);
    let db = Database::open(&path, Options::default()).unwrap();
    assert_eq!(db.connect().begin().unwrap().count("t").unwrap(), 7);
}

#[test]
fn clean_close_releases_the_timestamp_reservation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut last = 0;
    for round in 0..3 {
        let db = Database::open(&path, Options::default()).unwrap();
        let conn = db.connect();
        let mut tx = conn.begin().unwrap();
        if round == 0 {
            tx.create_entity(
                &EntitySpec::new("t")
                    .id("id")
                    .field(FieldDef::new("v", DataType::Integer)),
            )
            .unwrap();
        }
        tx.insert("t", &[("v", Value::Integer(round))]).unwrap();
        let token = tx.commit().unwrap().token;
        // After a clean close nothing is aborted: tokens continue where they stopped.
        assert_eq!(token, last + 1, "round {round}");
        last = token;
    }
}

#[test]
fn recovered_database_closed_without_commits_keeps_new_commits_visible() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let last = {
        let db = Database::open(&path, Options::default()).unwrap();
        let mut tx = db.connect().begin().unwrap();
        tx.create_entity(
            &EntitySpec::new("t")
                .id("id")
                .field(FieldDef::new("v", DataType::Integer)),
        )
        .unwrap();
        tx.insert("t", &[("v", Value::Integer(1))]).unwrap();
        tx.commit().unwrap();
        db.last_commit()
    };
    {
        // A crash leaves a reservation above the last commit.
        let kv = SledKv::open(&path.join("data"), 8 << 20).unwrap();
        let mut b = Batch::default();
        b.put(
            b"\x02reserved_ts".to_vec(),
            (last + 100).to_be_bytes().to_vec(),
        );
        kv.apply_unordered(&b).unwrap();
        kv.sync().unwrap();
    }
    // Recover, then close cleanly without committing anything.
    drop(Database::open(&path, Options::default()).unwrap());
    let db = Database::open(&path, Options::default()).unwrap();
    let mut tx = db.connect().begin().unwrap();
    tx.insert("t", &[("v", Value::Integer(2))]).unwrap();
    let token = tx.commit().unwrap().token;
    assert!(
        token > last + 100,
        "token {token} reuses an aborted timestamp"
    );
    assert_eq!(db.connect().begin().unwrap().count("t").unwrap(), 2);
    drop(db);
    let db = Database::open(&path, Options::default()).unwrap();
    assert_eq!(db.connect().begin().unwrap().count("t").unwrap(), 2);
}

/// A kill while sled writes a snapshot leaves a torn `snap.<lsn>.generating` file; sled 0.34
/// picks it at the next open and refuses the store as corrupted. The engine removes it first.
#[test]
fn torn_sled_snapshot_left_by_a_kill_does_not_block_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db = Database::open(&path, Options::default()).unwrap();
        let conn = db.connect();
        let mut tx = conn.begin().unwrap();
        tx.create_entity(
            &EntitySpec::new("t")
                .id("id")
                .field(FieldDef::new("v", DataType::Integer)),
        )
        .unwrap();
        for i in 0..100 {
            tx.insert("t", &[("v", Value::Integer(i))]).unwrap();
        }
        tx.commit().unwrap();
    }
    let data = path.join("data");
    // A snapshot sled had begun to write: part of its body, no length or checksum yet.
    let torn = data.join("snap.7FFFFFFFFFFFFFFF.generating");
    std::fs::write(&torn, [0x5a; 40]).unwrap();
    // sled on its own cannot open this directory any more.
    match sled::Config::new().path(&data).open() {
        Err(sled::Error::Corruption { .. }) => {}
        other => panic!("expected sled to refuse the torn snapshot, got {other:?}"),
    }
    std::fs::write(&torn, [0x5a; 40]).unwrap();
    let db = Database::open(&path, Options::default()).unwrap();
    assert!(!torn.exists());
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    let rows: Vec<_> = tx.scan("t").unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(rows.len(), 100);
}
