//! Garbage collection of old row versions and index entries, full and incremental, with and
//! without older snapshots still open.

use ormdb::{DataType, Database, EntitySpec, FieldDef, Value};

fn setup() -> Database {
    let db = Database::temporary().unwrap();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("users")
            .id("id")
            .field(FieldDef::new("email", DataType::Text).not_null())
            .unique(&["email"]),
    )
    .unwrap();
    tx.commit().unwrap();
    db
}

fn set_email(db: &Database, id: i64, email: &str) {
    let mut tx = db.connect().begin().unwrap();
    tx.update("users", id, &[("email", Value::from(email))])
        .unwrap()
        .unwrap();
    tx.commit().unwrap();
}

#[test]
fn incremental_gc_removes_old_versions_and_stale_index_entries() {
    let db = setup();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    let id = tx
        .insert("users", &[("email", Value::from("e0"))])
        .unwrap()
        .row_id;
    tx.commit().unwrap();
    for i in 1..=3 {
        set_email(&db, id, &format!("e{i}"));
    }
    let stats = db.gc_incremental().unwrap();
    assert_eq!(stats.row_versions_removed, 3, "{stats:?}");
    assert_eq!(stats.index_entries_removed, 3, "{stats:?}");
    let mut tx = conn.begin().unwrap();
    assert_eq!(
        tx.get("users", id).unwrap().unwrap().values[1],
        Value::from("e3")
    );
    for old in ["e0", "e1", "e2"] {
        assert!(tx
            .find_by_index("users", "sqlite_autoindex_users_1", &[Value::from(old)])
            .unwrap()
            .is_empty());
        // The freed value can be taken again.
        tx.insert("users", &[("email", Value::from(old))]).unwrap();
    }
    assert_eq!(
        tx.find_by_index("users", "sqlite_autoindex_users_1", &[Value::from("e3")])
            .unwrap()
            .len(),
        1
    );
    tx.commit().unwrap();
    // Nothing left to collect: a second pass removes nothing.
    assert_eq!(db.gc_incremental().unwrap().row_versions_removed, 0);
    assert_eq!(db.gc().unwrap().row_versions_removed, 0);
}

#[test]
fn gc_keeps_what_an_open_snapshot_reads() {
    let db = setup();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    let id = tx
        .insert("users", &[("email", Value::from("old"))])
        .unwrap()
        .row_id;
    let gone = tx
        .insert("users", &[("email", Value::from("gone"))])
        .unwrap()
        .row_id;
    tx.commit().unwrap();

    let mut reader = conn.begin().unwrap();
    set_email(&db, id, "new");
    let mut tx = conn.begin().unwrap();
    tx.delete("users", gone).unwrap().unwrap();
    tx.commit().unwrap();

    for full in [false, true] {
        let stats = if full {
            db.gc().unwrap()
        } else {
            db.gc_incremental().unwrap()
        };
        assert_eq!(stats.row_versions_removed, 0, "full={full}: {stats:?}");
        assert_eq!(
            reader.get("users", id).unwrap().unwrap().values[1],
            Value::from("old")
        );
        assert!(reader.get("users", gone).unwrap().is_some());
        let hits = reader
            .find_by_index("users", "sqlite_autoindex_users_1", &[Value::from("old")])
            .unwrap();
        assert_eq!(hits.len(), 1);
    }
    reader.rollback();
    // The incremental queue was cleared by the full pass above; the full pass finds the rest.
    let stats = db.gc().unwrap();
    assert_eq!(
        stats.row_versions_removed, 3,
        "old version of id, live + tombstone of gone: {stats:?}"
    );
    assert_eq!(stats.index_entries_removed, 2, "{stats:?}");
    let mut tx = conn.begin().unwrap();
    assert_eq!(
        tx.get("users", id).unwrap().unwrap().values[1],
        Value::from("new")
    );
    assert!(tx.get("users", gone).unwrap().is_none());
    assert_eq!(tx.count("users").unwrap(), 1);
}

#[test]
fn gc_removes_rows_of_dropped_tables() {
    let db = setup();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    for i in 0..10 {
        tx.insert("users", &[("email", Value::from(format!("u{i}")))])
            .unwrap();
    }
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    tx.drop_entity("users").unwrap();
    tx.commit().unwrap();
    let stats = db.gc().unwrap();
    assert_eq!(stats.row_versions_removed, 10, "{stats:?}");
    assert_eq!(stats.index_entries_removed, 10, "{stats:?}");
}
