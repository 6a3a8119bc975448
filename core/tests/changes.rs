//! The change log and subscriptions: entity deltas (insert, update, soft delete, restore,
//! delete, with versions and changed fields) and relation deltas for every commit, delivered
//! exactly once in commit order; several subscribers; resuming from a token (also across a
//! reopen); entity filters; live delivery to another thread; and the retention floor.

mod common;
use common::*;

use std::path::Path;
use std::time::Duration;

use ormdb::changes::{EntityChange, RelationChange};
use ormdb::{
    ChangeKind, ChangeSet, ChangeToken, DataType, Database, EntitySpec, FieldDef, FkAction,
    ForeignKeySpec, Options, SqlState, Subscription, SubscriptionFilter,
};

// ---------------------------------------------------------------------------------------------
// helpers

/// Everything already committed that the subscription has not delivered yet.
fn drain(sub: &mut Subscription) -> Vec<ChangeSet> {
    let mut out = Vec::new();
    while let Some(cs) = sub.try_next().expect("try_next") {
        out.push(cs);
    }
    out
}

fn tokens(sets: &[ChangeSet]) -> Vec<ChangeToken> {
    sets.iter().map(|c| c.token).collect()
}

fn all() -> SubscriptionFilter {
    SubscriptionFilter::default()
}

/// users(id, name), posts(id, author_id -> users ON DELETE CASCADE, title), notes (soft delete).
fn schema(db: &Database) -> ChangeToken {
    let mut tx = db.connect().begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("users")
            .id("id")
            .field(FieldDef::new("name", DataType::Text)),
    )
    .unwrap();
    tx.create_entity(
        &EntitySpec::new("posts")
            .id("id")
            .field(FieldDef::new("author_id", DataType::Integer))
            .field(FieldDef::new("title", DataType::Text))
            .foreign_key(
                ForeignKeySpec::new(&["author_id"], "users", &[]).on_delete(FkAction::Cascade),
            ),
    )
    .unwrap();
    tx.create_entity(
        &EntitySpec::new("notes")
            .id("id")
            .field(FieldDef::new("body", DataType::Text))
            .soft_delete(),
    )
    .unwrap();
    tx.commit().unwrap().token
}

/// Commits one insert of a user; returns the commit token.
fn add_user(db: &Database, id: i64) -> ChangeToken {
    let mut tx = db.connect().begin().unwrap();
    tx.insert(
        "users",
        &[("id", int(id)), ("name", text(&format!("u{id}")))],
    )
    .unwrap();
    tx.commit().unwrap().token
}

fn entity_change<'a>(cs: &'a ChangeSet, entity: &str, row_id: i64) -> &'a EntityChange {
    cs.entities
        .iter()
        .find(|e| e.entity == entity && e.row_id == row_id)
        .unwrap_or_else(|| panic!("no change of {entity} {row_id} in {cs:?}"))
}

fn rel(child_row: i64, parent: i64, attached: bool) -> RelationChange {
    RelationChange {
        relation: "author".into(),
        child_entity: "posts".into(),
        child_row_id: child_row,
        parent_entity: "users".into(),
        parent_key: vec![int(parent)],
        attached,
    }
}

// ---------------------------------------------------------------------------------------------
// tests

#[test]
fn every_commit_delivered_once_in_order_with_entity_and_relation_deltas() {
    let db = Database::temporary().unwrap();
    let mut sub = db.subscribe(Some(0), all()).unwrap();
    let conn = db.connect();
    let mut expected = Vec::new();

    expected.push(schema(&db));

    // 1: inserts (and an update of a row inserted in the same transaction).
    let mut tx = conn.begin().unwrap();
    tx.insert("users", &[("id", int(1)), ("name", text("ada"))])
        .unwrap();
    tx.insert("users", &[("id", int(2)), ("name", text("bob"))])
        .unwrap();
    tx.insert(
        "posts",
        &[("id", int(10)), ("author_id", int(1)), ("title", text("t"))],
    )
    .unwrap();
    tx.update("users", 2, &[("name", text("bobby"))])
        .unwrap()
        .unwrap();
    expected.push(tx.commit().unwrap().token);

    // 2: field update.
    let mut tx = conn.begin().unwrap();
    tx.update("users", 1, &[("name", text("ada l."))])
        .unwrap()
        .unwrap();
    expected.push(tx.commit().unwrap().token);

    // 3: a post moves to another author (relation detached + attached).
    let mut tx = conn.begin().unwrap();
    tx.update("posts", 10, &[("author_id", int(2))])
        .unwrap()
        .unwrap();
    expected.push(tx.commit().unwrap().token);

    // A read-only and a rolled-back transaction produce nothing.
    let mut tx = conn.begin().unwrap();
    tx.count("users").unwrap();
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    tx.insert("users", &[("name", text("never"))]).unwrap();
    tx.rollback();

    // 4: soft delete; 5: restore; 6: a cascading delete.
    let mut tx = conn.begin().unwrap();
    tx.insert("notes", &[("id", int(1)), ("body", text("n"))])
        .unwrap();
    expected.push(tx.commit().unwrap().token);
    let mut tx = conn.begin().unwrap();
    tx.delete("notes", 1).unwrap().unwrap();
    expected.push(tx.commit().unwrap().token);
    let mut tx = conn.begin().unwrap();
    tx.restore("notes", 1).unwrap().unwrap();
    expected.push(tx.commit().unwrap().token);
    let mut tx = conn.begin().unwrap();
    tx.delete("users", 2).unwrap().unwrap();
    expected.push(tx.commit().unwrap().token);

    let sets = drain(&mut sub);
    assert_eq!(
        tokens(&sets),
        expected,
        "each commit exactly once, in order"
    );
    assert!(drain(&mut sub).is_empty(), "nothing delivered twice");
    assert_eq!(sub.position(), *expected.last().unwrap());

    // Schema commit.
    assert!(sets[0].schema_changed);
    assert!(sets[0].entities.is_empty());
    assert_eq!(sets[0].schema_version, 1);
    assert!(sets[1..].iter().all(|c| !c.schema_changed));

    // Inserts: version (2 for the row updated after its insert), all fields, after-image.
    let c = &sets[1];
    assert_eq!(c.entities.len(), 3);
    let u1 = entity_change(c, "users", 1);
    assert_eq!(
        (u1.kind, u1.version, u1.changed.clone(), u1.values.clone()),
        (ChangeKind::Insert, 1, vec![0, 1], vec![int(1), text("ada")])
    );
    let u2 = entity_change(c, "users", 2);
    assert_eq!((u2.kind, u2.version), (ChangeKind::Insert, 2));
    assert_eq!(u2.values, vec![int(2), text("bobby")]);
    let p = entity_change(c, "posts", 10);
    assert_eq!(p.kind, ChangeKind::Insert);
    assert_eq!(c.relations, vec![rel(10, 1, true)]);

    // Update of one field.
    let c = &sets[2];
    let u1 = entity_change(c, "users", 1);
    assert_eq!(
        (u1.kind, u1.version, u1.changed.clone()),
        (ChangeKind::Update, 2, vec![1])
    );
    assert_eq!(u1.values[1], text("ada l."));
    assert!(c.relations.is_empty());

    // Relation moved.
    let c = &sets[3];
    let p = entity_change(c, "posts", 10);
    assert_eq!((p.kind, p.changed.clone()), (ChangeKind::Update, vec![1]));
    assert_eq!(c.relations, vec![rel(10, 1, false), rel(10, 2, true)]);

    // Soft delete and restore.
    let n = entity_change(&sets[5], "notes", 1);
    assert_eq!((n.kind, n.version), (ChangeKind::SoftDelete, 2));
    let n = entity_change(&sets[6], "notes", 1);
    assert_eq!((n.kind, n.version), (ChangeKind::Restore, 3));

    // The cascade: user 2 and its post deleted in one change set.
    let c = &sets[7];
    assert_eq!(c.entities.len(), 2);
    let u2 = entity_change(c, "users", 2);
    assert_eq!(u2.kind, ChangeKind::Delete);
    assert_eq!(u2.version, 3, "tombstone version after version 2");
    assert!(u2.values.is_empty());
    assert_eq!(entity_change(c, "posts", 10).kind, ChangeKind::Delete);
    assert_eq!(c.relations, vec![rel(10, 2, false)]);
}

#[test]
fn several_subscribers_see_the_same_stream() {
    let db = Database::temporary().unwrap();
    let start = schema(&db);
    let mut a = db.subscribe(None, all()).unwrap();
    let mut b = db.subscribe(Some(start), all()).unwrap();
    let mut from_zero = db.subscribe(Some(0), all()).unwrap();
    let mut expected = Vec::new();
    for i in 1..=20 {
        expected.push(add_user(&db, i));
        if i == 10 {
            // Interleave reads with commits.
            assert_eq!(tokens(&drain(&mut a)), expected);
        }
    }
    let a_rest = drain(&mut a);
    let b_all = drain(&mut b);
    assert_eq!(tokens(&a_rest), expected[10..]);
    assert_eq!(tokens(&b_all), expected);
    let z = drain(&mut from_zero);
    assert_eq!(z[0].token, start);
    assert_eq!(z[1..], b_all[..]);
    // A subscriber created now starts after the newest commit.
    let mut late = db.subscribe(None, all()).unwrap();
    assert!(drain(&mut late).is_empty());
    let t = add_user(&db, 99);
    assert_eq!(tokens(&drain(&mut late)), vec![t]);
}

#[test]
fn resume_from_token_after_dropping_subscriber() {
    let db = Database::temporary().unwrap();
    schema(&db);
    let mut sub = db.subscribe(None, all()).unwrap();
    let mut expected = Vec::new();
    for i in 1..=5 {
        expected.push(add_user(&db, i));
    }
    // Consume the first three, note the last token delivered, then drop the subscriber.
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(sub.try_next().unwrap().unwrap().token);
    }
    let resume_at = *seen.last().unwrap();
    drop(sub);
    for i in 6..=8 {
        expected.push(add_user(&db, i));
    }
    let mut sub = db.subscribe(Some(resume_at), all()).unwrap();
    seen.extend(tokens(&drain(&mut sub)));
    assert_eq!(seen, expected, "no gap and no duplicate across the resume");
}

fn quiet() -> Options {
    Options {
        gc_interval: Duration::from_secs(3600),
        ..Options::default()
    }
}

fn open(path: &Path) -> Database {
    Database::open(path, quiet()).unwrap()
}

#[test]
fn resume_from_token_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut expected = Vec::new();
    let resume_at;
    {
        let db = open(&path);
        expected.push(schema(&db));
        let mut sub = db.subscribe(Some(0), all()).unwrap();
        for i in 1..=4 {
            expected.push(add_user(&db, i));
        }
        let first = sub.try_next().unwrap().unwrap();
        let second = sub.try_next().unwrap().unwrap();
        assert_eq!(tokens(&[first, second.clone()]), expected[..2]);
        resume_at = second.token;
    }
    {
        let db = open(&path);
        for i in 5..=6 {
            expected.push(add_user(&db, i));
        }
        let mut sub = db.subscribe(Some(resume_at), all()).unwrap();
        let rest = drain(&mut sub);
        assert_eq!(tokens(&rest), expected[2..]);
        let u3 = entity_change(&rest[1], "users", 3);
        assert_eq!(u3.values, vec![int(3), text("u3")]);
        assert!(rest[0].token > resume_at);
    }
    // And once more, from the very beginning, after a second reopen.
    let db = open(&path);
    let mut sub = db.subscribe(Some(0), all()).unwrap();
    assert_eq!(tokens(&drain(&mut sub)), expected);
}

#[test]
fn entity_filter() {
    let db = Database::temporary().unwrap();
    schema(&db);
    let mut posts_only = db
        .subscribe(None, SubscriptionFilter::entities(&["POSTS"]))
        .unwrap();
    let mut notes_only = db
        .subscribe(None, SubscriptionFilter::entities(&["notes"]))
        .unwrap();
    let mut everything = db.subscribe(None, all()).unwrap();
    add_user(&db, 1);
    add_user(&db, 2);
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.insert("posts", &[("id", int(1)), ("author_id", int(1))])
        .unwrap();
    tx.update("users", 2, &[("name", text("x"))])
        .unwrap()
        .unwrap();
    let mixed = tx.commit().unwrap().token;
    let mut tx = conn.begin().unwrap();
    tx.delete("users", 1).unwrap().unwrap();
    let cascade = tx.commit().unwrap().token;

    let p = drain(&mut posts_only);
    assert_eq!(tokens(&p), vec![mixed, cascade]);
    for cs in &p {
        assert!(cs.entities.iter().all(|e| e.entity == "posts"), "{cs:?}");
        assert_eq!(cs.relations.len(), 1);
    }
    assert_eq!(p[1].entities[0].kind, ChangeKind::Delete);
    assert!(drain(&mut notes_only).is_empty());
    assert_eq!(drain(&mut everything).len(), 4);
    // The filtered subscriber's position still advanced past the skipped commits.
    assert_eq!(posts_only.position(), db.last_commit());
    assert_eq!(notes_only.position(), db.last_commit());
}

#[test]
fn live_subscriber_in_another_thread() {
    let db = Database::temporary().unwrap();
    schema(&db);
    let mut sub = db.subscribe(None, all()).unwrap();
    const N: usize = 30;
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        while got.len() < N {
            match sub.next_timeout(Duration::from_secs(20)).unwrap() {
                Some(cs) => got.push(cs),
                None => panic!("timed out after {} change sets", got.len()),
            }
        }
        // Nothing further arrives.
        assert!(sub
            .next_timeout(Duration::from_millis(100))
            .unwrap()
            .is_none());
        got
    });
    let mut expected = Vec::new();
    for i in 0..N as i64 {
        expected.push(add_user(&db, i + 1));
        if i % 7 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let got = reader.join().expect("reader thread");
    assert_eq!(tokens(&got), expected);
    for (i, cs) in got.iter().enumerate() {
        assert_eq!(cs.entities.len(), 1);
        assert_eq!(cs.entities[0].row_id, i as i64 + 1);
    }
}

#[test]
fn subscriber_behind_retention_gets_snapshot_too_old() {
    let db = Database::temporary_with(Options {
        change_retention: 3,
        gc_interval: Duration::from_secs(3600),
        ..Options::default()
    })
    .unwrap();
    let start = schema(&db);
    let mut slow = db.subscribe(Some(start), all()).unwrap();
    let mut expected = Vec::new();
    for i in 1..=10 {
        expected.push(add_user(&db, i));
    }
    let mut fast = db.subscribe(Some(expected[6]), all()).unwrap();
    let stats = db.gc().unwrap();
    assert_eq!(stats.change_records_removed, 8, "{stats:?}");
    let err = slow.try_next().unwrap_err();
    assert_eq!(err.state, SqlState::SnapshotTooOld);
    assert_eq!(err.code(), "72000");
    assert!(err.message.contains("pruned"), "{}", err.message);
    // It keeps failing rather than silently skipping.
    assert_eq!(slow.try_next().unwrap_err().state, SqlState::SnapshotTooOld);
    // Resubscribing from a pruned token fails too; from the floor it works.
    let err = db.subscribe(Some(start), all()).err().unwrap();
    assert_eq!(err.state, SqlState::SnapshotTooOld);
    let floor = db.last_commit() - 3;
    let mut sub = db.subscribe(Some(floor), all()).unwrap();
    assert_eq!(tokens(&drain(&mut sub)), expected[7..]);
    // A subscriber inside the window is unaffected.
    assert_eq!(tokens(&drain(&mut fast)), expected[7..]);
}

#[test]
fn schema_rewrite_reports_no_spurious_field_or_relation_changes() {
    // Dropping a field rewrites every row; the change set must describe it against the right
    // field positions: nothing but the schema changed, and no relation moved.
    let db = Database::temporary().unwrap();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("users")
            .id("id")
            .field(FieldDef::new("name", DataType::Text)),
    )
    .unwrap();
    tx.create_entity(
        &EntitySpec::new("posts")
            .id("id")
            .field(FieldDef::new("junk", DataType::Integer))
            .field(FieldDef::new("author_id", DataType::Integer))
            .field(FieldDef::new("title", DataType::Text))
            .foreign_key(ForeignKeySpec::new(&["author_id"], "users", &[])),
    )
    .unwrap();
    tx.insert("users", &[("id", int(1))]).unwrap();
    tx.insert(
        "posts",
        &[
            ("id", int(1)),
            ("junk", int(7)),
            ("author_id", int(1)),
            ("title", text("t")),
        ],
    )
    .unwrap();
    tx.commit().unwrap();
    let mut sub = db.subscribe(None, all()).unwrap();
    let mut tx = conn.begin().unwrap();
    tx.drop_field("posts", "junk").unwrap();
    tx.commit().unwrap();
    let sets = drain(&mut sub);
    assert_eq!(sets.len(), 1);
    let cs = &sets[0];
    assert!(cs.schema_changed);
    assert!(
        cs.relations.is_empty(),
        "spurious relation deltas: {:?}",
        cs.relations
    );
    let p = entity_change(cs, "posts", 1);
    assert_eq!(p.kind, ChangeKind::Update);
    assert!(
        p.changed.is_empty(),
        "no field value changed: {:?}",
        p.changed
    );
    assert_eq!(p.values, vec![int(1), int(1), text("t")]);
}

#[test]
fn several_drops_and_a_rolled_back_drop_in_one_transaction() {
    let db = Database::temporary().unwrap();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(&EntitySpec::new("users").id("id"))
        .unwrap();
    tx.create_entity(
        &EntitySpec::new("posts")
            .id("id")
            .field(FieldDef::new("a", DataType::Integer))
            .field(FieldDef::new("b", DataType::Integer))
            .field(FieldDef::new("author_id", DataType::Integer))
            .field(FieldDef::new("c", DataType::Integer))
            .field(FieldDef::new("d", DataType::Integer))
            .foreign_key(ForeignKeySpec::new(&["author_id"], "users", &[])),
    )
    .unwrap();
    tx.insert("users", &[("id", int(1))]).unwrap();
    tx.insert("users", &[("id", int(2))]).unwrap();
    tx.insert(
        "posts",
        &[
            ("id", int(1)),
            ("a", int(10)),
            ("b", int(20)),
            ("author_id", int(1)),
            ("c", int(30)),
            ("d", int(40)),
        ],
    )
    .unwrap();
    tx.commit().unwrap();
    let mut sub = db.subscribe(None, all()).unwrap();
    let mut tx = conn.begin().unwrap();
    tx.drop_field("posts", "b").unwrap();
    tx.savepoint("s").unwrap();
    tx.drop_field("posts", "c").unwrap();
    tx.rollback_to("s").unwrap();
    tx.drop_field("posts", "a").unwrap();
    tx.add_field(
        "posts",
        FieldDef::new("e", DataType::Integer).default_value(5),
    )
    .unwrap();
    // A real change too: the post moves to user 2 and c changes.
    tx.update("posts", 1, &[("author_id", int(2)), ("c", int(31))])
        .unwrap()
        .unwrap();
    tx.commit().unwrap();
    let sets = drain(&mut sub);
    assert_eq!(sets.len(), 1);
    let p = entity_change(&sets[0], "posts", 1);
    // Layout now: id, author_id, c, d, e.
    assert_eq!(p.values, vec![int(1), int(2), int(31), int(40), int(5)]);
    assert_eq!(p.changed, vec![1, 2]);
    assert_eq!(sets[0].relations, vec![rel(1, 1, false), rel(1, 2, true)]);
}
