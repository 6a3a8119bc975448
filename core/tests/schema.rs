//! Durability of data and schema across reopen, atomic commit and rollback, nested savepoints
//! (with DDL inside), transactional DDL, schema history, relations derived from foreign keys,
//! index builds, field changes, renames, garbage collection with old snapshots, and
//! `Database::info`. Every test uses a real database on disk.

mod common;
use common::*;

use std::path::Path;
use std::time::Duration;

use ormdb::{
    DataType, Database, EntitySpec, FieldDef, FkAction, ForeignKeySpec, IndexSpec, Options,
    RelationKind, SqlState, Transaction, Value,
};

// ---------------------------------------------------------------------------------------------
// helpers

/// Options with background GC effectively off, so explicit `gc()` counts are deterministic.
fn quiet() -> Options {
    Options {
        gc_interval: Duration::from_secs(3600),
        ..Options::default()
    }
}

fn open(path: &Path) -> Database {
    Database::open(path, quiet()).expect("open database")
}

fn values(tx: &mut Transaction, entity: &str) -> Vec<Vec<Value>> {
    rows(tx, entity).into_iter().map(|r| r.values).collect()
}

fn users_spec() -> EntitySpec {
    EntitySpec::new("users")
        .id("id")
        .field(FieldDef::new("name", DataType::Text).not_null())
        .field(FieldDef::new("email", DataType::Text))
        .unique(&["email"])
}

fn posts_spec() -> EntitySpec {
    EntitySpec::new("posts")
        .id("id")
        .field(FieldDef::new("author_id", DataType::Integer))
        .field(FieldDef::new("title", DataType::Text))
        .foreign_key(
            ForeignKeySpec::new(&["author_id"], "users", &[])
                .named("posts_author_fk")
                .on_delete(FkAction::Cascade),
        )
}

// ---------------------------------------------------------------------------------------------
// persistence, atomicity

#[test]
fn data_and_schema_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let (alice, bob);
    {
        let db = open(&path);
        let conn = db.connect();
        let mut tx = conn.begin().unwrap();
        tx.create_entity(&users_spec()).unwrap();
        tx.create_entity(&posts_spec()).unwrap();
        alice = tx
            .insert("users", &[("name", text("alice")), ("email", text("a@x"))])
            .unwrap()
            .row_id;
        bob = tx
            .insert("users", &[("name", text("bob")), ("email", text("b@x"))])
            .unwrap()
            .row_id;
        tx.insert("posts", &[("author_id", int(alice)), ("title", text("hi"))])
            .unwrap();
        tx.commit().unwrap();
        let mut tx = conn.begin().unwrap();
        tx.update("users", bob, &[("name", text("robert"))])
            .unwrap()
            .unwrap();
        tx.commit().unwrap();
        // Uncommitted work is not persisted.
        let mut tx = conn.begin().unwrap();
        tx.insert("users", &[("name", text("ghost"))]).unwrap();
        drop(tx);
    }
    {
        let db = open(&path);
        let conn = db.connect();
        let mut tx = conn.begin().unwrap();
        assert_eq!(
            values(&mut tx, "users"),
            vec![
                vec![int(alice), text("alice"), text("a@x")],
                vec![int(bob), text("robert"), text("b@x")],
            ]
        );
        assert_eq!(tx.get("users", bob).unwrap().unwrap().version, 2);
        assert_eq!(tx.count("posts").unwrap(), 1);
        // Constraints came back with the schema.
        expect_err(
            tx.insert("users", &[("name", text("x")), ("email", text("a@x"))]),
            SqlState::UniqueViolation,
            &["users.email"],
        );
        expect_err(
            tx.insert("posts", &[("author_id", int(999))]),
            SqlState::ForeignKeyViolation,
            &["posts_author_fk"],
        );
        // Row ids continue above the stored ones; the index finds reopened rows.
        let carol = tx
            .insert("users", &[("name", text("carol"))])
            .unwrap()
            .row_id;
        assert!(carol > bob, "row id {carol} reused after reopen");
        let hits = tx
            .find_by_index("users", "sqlite_autoindex_users_1", &[text("b@x")])
            .unwrap();
        assert_eq!(hits.len(), 1);
        // The cascade still works after reopen.
        tx.delete("users", alice).unwrap().unwrap();
        assert_eq!(tx.count("posts").unwrap(), 0);
        tx.commit().unwrap();
    }
    let db = open(&path);
    let mut tx = db.connect().begin().unwrap();
    assert_eq!(tx.count("users").unwrap(), 2);
    assert_eq!(tx.count("posts").unwrap(), 0);
}

#[test]
fn commit_is_atomic_and_rollback_discards_everything() {
    let db = Database::temporary().unwrap();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(&users_spec()).unwrap();
    tx.commit().unwrap();

    let mut tx = conn.begin().unwrap();
    for i in 0..50 {
        tx.insert("users", &[("name", text(&format!("u{i}")))])
            .unwrap();
    }
    // A concurrent reader sees none of it before commit.
    let mut reader = conn.begin().unwrap();
    assert_eq!(reader.count("users").unwrap(), 0);
    tx.rollback();
    let mut tx = conn.begin().unwrap();
    assert_eq!(tx.count("users").unwrap(), 0);

    for i in 0..50 {
        tx.insert("users", &[("name", text(&format!("u{i}")))])
            .unwrap();
    }
    let info = tx.commit().unwrap();
    assert_eq!(info.token, db.last_commit());
    // The old reader keeps its snapshot; a new one sees all 50.
    assert_eq!(reader.count("users").unwrap(), 0);
    let mut tx = conn.begin().unwrap();
    assert_eq!(tx.count("users").unwrap(), 50);
    // A dropped transaction is a rollback.
    let first = ids(&mut tx, "users")[0];
    let mut tx2 = conn.begin().unwrap();
    tx2.delete("users", first).unwrap().unwrap();
    drop(tx2);
    assert!(tx.get("users", first).unwrap().is_some());
    let mut tx = conn.begin().unwrap();
    assert_eq!(tx.count("users").unwrap(), 50);
}

// ---------------------------------------------------------------------------------------------
// savepoints

#[test]
fn nested_savepoints() {
    let db = Database::temporary().unwrap();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(&users_spec()).unwrap();
    tx.commit().unwrap();

    let mut tx = conn.begin().unwrap();
    let ins = |tx: &mut Transaction, id: i64| {
        tx.insert("users", &[("id", int(id)), ("name", text(&id.to_string()))])
            .unwrap();
    };
    ins(&mut tx, 1);
    tx.savepoint("a").unwrap();
    ins(&mut tx, 2);
    tx.savepoint("b").unwrap();
    ins(&mut tx, 3);
    tx.update("users", 1, &[("name", text("changed"))])
        .unwrap()
        .unwrap();
    tx.savepoint("c").unwrap();
    ins(&mut tx, 4);
    assert_eq!(ids(&mut tx, "users"), vec![1, 2, 3, 4]);

    // Rolling back to b undoes c's and b's work; b stays open, c is gone.
    tx.rollback_to("b").unwrap();
    assert_eq!(ids(&mut tx, "users"), vec![1, 2]);
    assert_eq!(
        tx.get("users", 1).unwrap().unwrap().values[1],
        text("1"),
        "update after b undone"
    );
    expect_err(
        tx.rollback_to("c"),
        SqlState::InvalidTransactionState,
        &["c"],
    );
    ins(&mut tx, 5);
    tx.rollback_to("b").unwrap(); // b is still there: roll back twice
    assert_eq!(ids(&mut tx, "users"), vec![1, 2]);
    ins(&mut tx, 6);
    // Releasing b keeps 6; then rolling back to a drops 2 and 6.
    tx.release("b").unwrap();
    expect_err(
        tx.rollback_to("b"),
        SqlState::InvalidTransactionState,
        &["b"],
    );
    assert_eq!(ids(&mut tx, "users"), vec![1, 2, 6]);
    tx.rollback_to("a").unwrap();
    assert_eq!(ids(&mut tx, "users"), vec![1]);
    // Same name twice: the newest one is used.
    tx.savepoint("dup").unwrap();
    ins(&mut tx, 7);
    tx.savepoint("dup").unwrap();
    ins(&mut tx, 8);
    tx.rollback_to("dup").unwrap();
    assert_eq!(ids(&mut tx, "users"), vec![1, 7]);
    tx.release("a").unwrap();
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    assert_eq!(ids(&mut tx, "users"), vec![1, 7]);
}

#[test]
fn ddl_inside_savepoints() {
    let db = Database::temporary().unwrap();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(&users_spec()).unwrap();
    tx.savepoint("s1").unwrap();
    tx.create_entity(&posts_spec()).unwrap();
    tx.insert("users", &[("id", int(1)), ("name", text("a"))])
        .unwrap();
    tx.insert("posts", &[("author_id", int(1))]).unwrap();
    tx.savepoint("s2").unwrap();
    tx.add_field(
        "users",
        FieldDef::new("age", DataType::Integer).default_value(7),
    )
    .unwrap();
    tx.create_index("posts", &IndexSpec::new("posts_title", &["title"], false))
        .unwrap();
    assert_eq!(tx.get("users", 1).unwrap().unwrap().values.len(), 4);
    tx.rollback_to("s2").unwrap();
    // The field and index are gone, the entity and rows from before s2 remain.
    assert_eq!(tx.get("users", 1).unwrap().unwrap().values.len(), 3);
    expect_err(
        tx.insert("users", &[("name", text("b")), ("age", int(1))]),
        SqlState::UndefinedColumn,
        &["age"],
    );
    expect_err(
        tx.find_by_index("posts", "posts_title", &[text("x")]),
        SqlState::UndefinedTable,
        &["posts_title"],
    );
    assert_eq!(tx.count("posts").unwrap(), 1);
    tx.rollback_to("s1").unwrap();
    expect_err(tx.count("posts"), SqlState::UndefinedTable, &["posts"]);
    assert_eq!(tx.count("users").unwrap(), 0);
    // Create it again with another shape, release, commit.
    tx.create_entity(
        &EntitySpec::new("posts")
            .id("id")
            .field(FieldDef::new("body", DataType::Text)),
    )
    .unwrap();
    tx.insert("posts", &[("body", text("b"))]).unwrap();
    tx.release("s1").unwrap();
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    let posts = values(&mut tx, "posts");
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0][1], text("b"));
    let names: Vec<String> = tx
        .schema()
        .entities()
        .iter()
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(names, vec!["users", "posts"]);
}

#[test]
fn transactional_ddl_rollback_removes_entity_and_rows() {
    let db = Database::temporary().unwrap();
    let conn = db.connect();
    let version_before = db.schema().version;
    let mut tx = conn.begin().unwrap();
    tx.create_entity(&users_spec()).unwrap();
    tx.insert("users", &[("name", text("a"))]).unwrap();
    // Not visible to anyone else while uncommitted.
    let mut other = conn.begin().unwrap();
    expect_err(other.count("users"), SqlState::UndefinedTable, &["users"]);
    drop(other);
    tx.rollback();
    assert_eq!(db.schema().version, version_before);
    assert!(db.schema().entities.is_empty());
    let mut tx = conn.begin().unwrap();
    expect_err(tx.count("users"), SqlState::UndefinedTable, &["users"]);
    // The name is free, and a create + insert in one transaction commits together.
    tx.create_entity(&users_spec()).unwrap();
    tx.insert("users", &[("name", text("a"))]).unwrap();
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    assert_eq!(tx.count("users").unwrap(), 1);
    // Dropping an entity is transactional too.
    tx.drop_entity("users").unwrap();
    expect_err(tx.count("users"), SqlState::UndefinedTable, &[]);
    tx.rollback();
    let mut tx = conn.begin().unwrap();
    assert_eq!(tx.count("users").unwrap(), 1);
}

// ---------------------------------------------------------------------------------------------
// schema history

#[test]
fn schema_history_one_version_per_ddl_commit_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut tokens = Vec::new();
    {
        let db = open(&path);
        assert!(db.schema_history().unwrap().is_empty());
        let conn = db.connect();
        // Two DDL statements in one transaction: one version.
        let mut tx = conn.begin().unwrap();
        tx.create_entity(&users_spec()).unwrap();
        tx.create_entity(&posts_spec()).unwrap();
        tokens.push(tx.commit().unwrap().token);
        // A data-only commit adds no version.
        let mut tx = conn.begin().unwrap();
        tx.insert("users", &[("name", text("a"))]).unwrap();
        tx.commit().unwrap();
        // A rolled-back DDL adds none either.
        let mut tx = conn.begin().unwrap();
        tx.drop_entity("posts").unwrap();
        tx.rollback();
        let mut tx = conn.begin().unwrap();
        tx.add_field("users", FieldDef::new("age", DataType::Integer))
            .unwrap();
        tokens.push(tx.commit().unwrap().token);
        let mut tx = conn.begin().unwrap();
        tx.rename_entity("posts", "articles").unwrap();
        tokens.push(tx.commit().unwrap().token);

        let h = db.schema_history().unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(
            h.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            tokens,
            "history keyed by commit token"
        );
        assert_eq!(
            h.iter().map(|(_, b)| b.version).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(h[0].1.entities.len(), 2);
        assert_eq!(h[0].1.entities[0].fields.len(), 3);
        assert_eq!(h[1].1.entities[0].fields.len(), 4);
        assert_eq!(h[2].1.entities[1].name, "articles");
        assert_eq!(db.schema().version, 3);
    }
    let db = open(&path);
    let h = db.schema_history().unwrap();
    assert_eq!(h.iter().map(|(t, _)| *t).collect::<Vec<_>>(), tokens);
    assert_eq!(h[2].1.entities[1].name, "articles");
    assert_eq!(db.schema().version, 3);
    // The next DDL continues the numbering.
    let mut tx = db.connect().begin().unwrap();
    tx.drop_entity("articles").unwrap();
    tx.commit().unwrap();
    assert_eq!(db.schema_history().unwrap().len(), 4);
    assert_eq!(db.schema().version, 4);
}

// ---------------------------------------------------------------------------------------------
// relations

#[test]
fn relations_derived_from_foreign_keys() {
    let db = Database::temporary().unwrap();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(&users_spec()).unwrap();
    tx.create_entity(&posts_spec()).unwrap();
    tx.create_entity(
        &EntitySpec::new("profiles")
            .id("id")
            .field(FieldDef::new("user_id", DataType::Integer))
            .field(FieldDef::new("bio", DataType::Text))
            .unique(&["user_id"])
            .foreign_key(ForeignKeySpec::new(&["user_id"], "users", &[])),
    )
    .unwrap();
    tx.create_entity(
        &EntitySpec::new("tags")
            .id("id")
            .field(FieldDef::new("label", DataType::Text)),
    )
    .unwrap();
    tx.create_entity(
        &EntitySpec::new("post_tags")
            .field(FieldDef::new("post_id", DataType::Integer))
            .field(FieldDef::new("tag_id", DataType::Integer))
            .primary_key(&["post_id", "tag_id"])
            .foreign_key(
                ForeignKeySpec::new(&["post_id"], "posts", &[]).on_delete(FkAction::Cascade),
            )
            .foreign_key(
                ForeignKeySpec::new(&["tag_id"], "tags", &[]).on_delete(FkAction::Cascade),
            ),
    )
    .unwrap();
    let schema = tx.schema().clone();
    let find = |from: &str, name: &str| {
        schema
            .relations_of(from)
            .find(|r| r.name == name)
            .unwrap_or_else(|| {
                panic!(
                    "no relation {from}.{name}; have {:?}",
                    schema
                        .relations()
                        .iter()
                        .map(|r| format!("{}.{} {:?}", r.from, r.name, r.kind))
                        .collect::<Vec<_>>()
                )
            })
            .clone()
    };
    let author = find("posts", "author");
    assert_eq!(author.kind, RelationKind::ManyToOne);
    assert_eq!(author.to, "users");
    assert_eq!(author.fk_name, "posts_author_fk");
    assert_eq!(author.on_delete, FkAction::Cascade);
    let users_posts = find("users", "posts");
    assert_eq!(users_posts.kind, RelationKind::OneToMany);
    assert_eq!(users_posts.to, "posts");
    assert_eq!(users_posts.fk_entity, "posts");

    let user = find("profiles", "user");
    assert_eq!(user.kind, RelationKind::OneToOne);
    let profile = find("users", "profiles");
    assert_eq!(profile.kind, RelationKind::OneToOne);

    let post_tags = find("posts", "tags");
    assert_eq!(post_tags.kind, RelationKind::ManyToMany);
    assert_eq!(post_tags.to, "tags");
    assert_eq!(post_tags.fk_entity, "post_tags");
    assert!(post_tags.far_fk_name.is_some());
    let tag_posts = find("tags", "posts");
    assert_eq!(tag_posts.kind, RelationKind::ManyToMany);
    assert_eq!(tag_posts.to, "posts");
    // The join entity itself has two many-to-one relations.
    assert_eq!(find("post_tags", "post").kind, RelationKind::ManyToOne);
    assert_eq!(find("post_tags", "tag").kind, RelationKind::ManyToOne);
    // Names are unique per entity.
    for e in schema.entities() {
        let mut names: Vec<&str> = schema
            .relations_of(&e.name)
            .map(|r| r.name.as_str())
            .collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "duplicate relation names on {}", e.name);
    }
    tx.commit().unwrap();
    // The committed schema derives the same relations.
    let tx = conn.begin().unwrap();
    assert_eq!(tx.schema().relations(), schema.relations());
}

#[test]
fn relation_names_do_not_clash() {
    // Two foreign keys from messages to users: sender_id and recipient_id.
    let db = Database::temporary().unwrap();
    let mut tx = db.connect().begin().unwrap();
    tx.create_entity(&users_spec()).unwrap();
    tx.create_entity(
        &EntitySpec::new("messages")
            .id("id")
            .field(FieldDef::new("sender_id", DataType::Integer))
            .field(FieldDef::new("recipient_id", DataType::Integer))
            .field(FieldDef::new("body", DataType::Text))
            .foreign_key(ForeignKeySpec::new(&["sender_id"], "users", &[]))
            .foreign_key(ForeignKeySpec::new(&["recipient_id"], "users", &[])),
    )
    .unwrap();
    let schema = tx.schema().clone();
    let mut on_messages: Vec<&str> = schema
        .relations_of("messages")
        .map(|r| r.name.as_str())
        .collect();
    on_messages.sort_unstable();
    assert_eq!(on_messages, vec!["recipient", "sender"]);
    let on_users: Vec<&str> = schema
        .relations_of("users")
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(on_users.len(), 2);
    assert_ne!(on_users[0], on_users[1]);
    // Not a join entity (it has a body): no many-to-many.
    assert!(schema
        .relations()
        .iter()
        .all(|r| r.kind != RelationKind::ManyToMany));
}

// ---------------------------------------------------------------------------------------------
// indexes

#[test]
fn create_index_on_existing_rows() {
    let db = Database::temporary().unwrap();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("people")
            .id("id")
            .field(FieldDef::new("city", DataType::Text))
            .field(FieldDef::new("nick", DataType::Text)),
    )
    .unwrap();
    for (city, nick) in [
        ("paris", Some("p")),
        ("rome", Some("r")),
        ("paris", None),
        ("oslo", None),
        ("paris", Some("r")),
    ] {
        tx.insert(
            "people",
            &[("city", text(city)), ("nick", Value::from(nick))],
        )
        .unwrap();
    }
    tx.commit().unwrap();

    let mut tx = conn.begin().unwrap();
    tx.create_index("people", &IndexSpec::new("people_city", &["city"], false))
        .unwrap();
    let paris: Vec<i64> = tx
        .find_by_index("people", "people_city", &[text("paris")])
        .unwrap()
        .into_iter()
        .map(|r| r.row_id)
        .collect();
    assert_eq!(paris, vec![1, 3, 5]);
    // A unique index over duplicates fails and leaves nothing behind.
    expect_err(
        tx.create_index("people", &IndexSpec::new("people_nick", &["nick"], true)),
        SqlState::UniqueViolation,
        &["people_nick", "people.nick"],
    );
    expect_err(
        tx.find_by_index("people", "people_nick", &[text("r")]),
        SqlState::UndefinedTable,
        &["people_nick"],
    );
    // Duplicate NULLs do not block a unique index; the index then enforces uniqueness.
    tx.update("people", 5, &[("nick", text("q"))])
        .unwrap()
        .unwrap();
    tx.create_index("people", &IndexSpec::new("people_nick", &["nick"], true))
        .unwrap();
    expect_err(
        tx.insert("people", &[("nick", text("p"))]),
        SqlState::UniqueViolation,
        &["people_nick"],
    );
    tx.insert("people", &[("city", text("paris"))]).unwrap();
    tx.commit().unwrap();

    let mut tx = conn.begin().unwrap();
    assert_eq!(
        tx.find_by_index("people", "people_city", &[text("paris")])
            .unwrap()
            .len(),
        4
    );
    // Index names are global: a second index with the same name fails.
    expect_err(
        tx.create_index("people", &IndexSpec::new("people_city", &["nick"], false)),
        SqlState::DuplicateObject,
        &["people_city"],
    );
}

#[test]
fn drop_index() {
    let db = Database::temporary().unwrap();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("t")
            .id("id")
            .field(FieldDef::new("a", DataType::Text))
            .field(FieldDef::new("b", DataType::Text))
            .unique_named("t_b_key", &["b"]),
    )
    .unwrap();
    tx.create_index("t", &IndexSpec::new("t_a_uniq", &["a"], true))
        .unwrap();
    tx.insert("t", &[("a", text("x")), ("b", text("1"))])
        .unwrap();
    expect_err(
        tx.insert("t", &[("a", text("x")), ("b", text("2"))]),
        SqlState::UniqueViolation,
        &["t_a_uniq"],
    );
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    tx.drop_index("t_a_uniq").unwrap();
    expect_err(
        tx.find_by_index("t", "t_a_uniq", &[text("x")]),
        SqlState::UndefinedTable,
        &[],
    );
    tx.insert("t", &[("a", text("x")), ("b", text("2"))])
        .unwrap();
    // Constraint indexes cannot be dropped; unknown ones are reported.
    expect_err(
        tx.drop_index("t_b_key"),
        SqlState::FeatureNotSupported,
        &["t_b_key"],
    );
    expect_err(tx.drop_index("nope"), SqlState::UndefinedTable, &["nope"]);
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    assert_eq!(tx.count("t").unwrap(), 2);
    assert!(tx
        .schema()
        .entity("t")
        .unwrap()
        .index_by_name("t_a_uniq")
        .is_none());
}

#[test]
fn dropping_an_index_used_by_a_foreign_key_keeps_child_lookups_working() {
    let db = Database::temporary().unwrap();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(&users_spec()).unwrap();
    tx.create_entity(
        &EntitySpec::new("posts")
            .id("id")
            .field(FieldDef::new("author_id", DataType::Integer))
            .index("posts_by_author", &["author_id"])
            .foreign_key(
                ForeignKeySpec::new(&["author_id"], "users", &[]).on_delete(FkAction::Cascade),
            ),
    )
    .unwrap();
    for u in 1..=2 {
        tx.insert("users", &[("id", int(u)), ("name", text("n"))])
            .unwrap();
        for _ in 0..3 {
            tx.insert("posts", &[("author_id", int(u))]).unwrap();
        }
    }
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    tx.drop_index("posts_by_author").unwrap();
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    let d = tx.delete("users", 1).unwrap().unwrap();
    assert_eq!(d.cascaded, 3);
    assert_eq!(tx.count("posts").unwrap(), 3);
}

// ---------------------------------------------------------------------------------------------
// field changes and renames

#[test]
fn add_field_with_default_is_read_by_old_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db = open(&path);
        let conn = db.connect();
        let mut tx = conn.begin().unwrap();
        tx.create_entity(&users_spec()).unwrap();
        tx.insert("users", &[("name", text("old"))]).unwrap();
        tx.commit().unwrap();
        let mut tx = conn.begin().unwrap();
        expect_err(
            tx.add_field("users", FieldDef::new("must", DataType::Integer).not_null()),
            SqlState::NotNullViolation,
            &["must"],
        );
        expect_err(
            tx.add_field("users", FieldDef::new("name", DataType::Text)),
            SqlState::DuplicateObject,
            &["name"],
        );
        expect_err(
            tx.add_field(
                "users",
                FieldDef::new("bad", DataType::Integer).default_value("abc"),
            ),
            SqlState::DatatypeMismatch,
            &["bad"],
        );
        tx.add_field(
            "users",
            FieldDef::new("score", DataType::Integer)
                .not_null()
                .default_value(10),
        )
        .unwrap();
        tx.add_field("users", FieldDef::new("note", DataType::Text))
            .unwrap();
        assert_eq!(
            values(&mut tx, "users"),
            vec![vec![int(1), text("old"), Value::Null, int(10), Value::Null]]
        );
        tx.insert(
            "users",
            &[
                ("name", text("new")),
                ("score", int(3)),
                ("note", text("n")),
            ],
        )
        .unwrap();
        tx.insert("users", &[("name", text("dflt"))]).unwrap();
        tx.commit().unwrap();
    }
    let db = open(&path);
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    assert_eq!(
        values(&mut tx, "users"),
        vec![
            vec![int(1), text("old"), Value::Null, int(10), Value::Null],
            vec![int(2), text("new"), Value::Null, int(3), text("n")],
            vec![int(3), text("dflt"), Value::Null, int(10), Value::Null],
        ]
    );
    // Updating an old row materializes the default.
    tx.update("users", 1, &[("note", text("x"))])
        .unwrap()
        .unwrap();
    assert_eq!(tx.get("users", 1).unwrap().unwrap().values[3], int(10));
    tx.commit().unwrap();
}

#[test]
fn drop_field_rewrites_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db = open(&path);
        let conn = db.connect();
        let mut tx = conn.begin().unwrap();
        tx.create_entity(
            &EntitySpec::new("t")
                .id("id")
                .field(FieldDef::new("a", DataType::Text))
                .field(FieldDef::new("gone", DataType::Text))
                .field(FieldDef::new("c", DataType::Integer))
                .field(FieldDef::new("u", DataType::Text))
                .unique(&["u"])
                .check(
                    "c_small",
                    ormdb::Expr::bin(
                        ormdb::BinaryOp::Lt,
                        ormdb::Expr::named("c"),
                        ormdb::Expr::lit(100),
                    ),
                ),
        )
        .unwrap();
        for i in 0..5 {
            tx.insert(
                "t",
                &[
                    ("a", text(&format!("a{i}"))),
                    ("gone", text("bye")),
                    ("c", int(i)),
                    ("u", text(&format!("u{i}"))),
                ],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        let mut tx = conn.begin().unwrap();
        expect_err(
            tx.drop_field("t", "u"),
            SqlState::FeatureNotSupported,
            &["t.u"],
        );
        expect_err(
            tx.drop_field("t", "c"),
            SqlState::FeatureNotSupported,
            &["CHECK"],
        );
        expect_err(tx.drop_field("t", "zz"), SqlState::UndefinedColumn, &["zz"]);
        tx.drop_field("t", "gone").unwrap();
        let r = tx.get("t", 2).unwrap().unwrap();
        assert_eq!(r.values, vec![int(2), text("a1"), int(1), text("u1")]);
        assert_eq!(r.version, 2, "the rewrite is a new version");
        tx.commit().unwrap();
    }
    let db = open(&path);
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    let e = tx.schema().entity("t").unwrap().clone();
    assert_eq!(
        e.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        vec!["id", "a", "c", "u"]
    );
    assert_eq!(
        values(&mut tx, "t")[4],
        vec![int(5), text("a4"), int(4), text("u4")]
    );
    // Constraints on the shifted fields still apply to the right fields.
    expect_err(
        tx.insert("t", &[("c", int(500))]),
        SqlState::CheckViolation,
        &["c_small"],
    );
    expect_err(
        tx.insert("t", &[("u", text("u3"))]),
        SqlState::UniqueViolation,
        &["t.u"],
    );
    let hits = tx
        .find_by_index("t", "sqlite_autoindex_t_1", &[text("u3")])
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].values[1], text("a3"));
    expect_err(
        tx.insert("t", &[("gone", text("x"))]),
        SqlState::UndefinedColumn,
        &["gone"],
    );
}

#[test]
fn rename_entity_and_field_keep_foreign_keys_working() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db = open(&path);
        let conn = db.connect();
        let mut tx = conn.begin().unwrap();
        tx.create_entity(&users_spec()).unwrap();
        tx.create_entity(&posts_spec()).unwrap();
        tx.create_entity(
            &EntitySpec::new("logins")
                .id("id")
                .field(FieldDef::new("email", DataType::Text))
                .foreign_key(
                    ForeignKeySpec::new(&["email"], "users", &["email"])
                        .named("logins_email_fk")
                        .on_update(FkAction::Cascade),
                ),
        )
        .unwrap();
        tx.insert(
            "users",
            &[("id", int(1)), ("name", text("a")), ("email", text("a@x"))],
        )
        .unwrap();
        tx.insert("posts", &[("author_id", int(1))]).unwrap();
        tx.insert("logins", &[("email", text("a@x"))]).unwrap();
        tx.commit().unwrap();

        let mut tx = conn.begin().unwrap();
        expect_err(
            tx.rename_entity("users", "posts"),
            SqlState::DuplicateObject,
            &["posts"],
        );
        tx.rename_entity("users", "people").unwrap();
        tx.rename_field("people", "email", "mail").unwrap();
        expect_err(
            tx.rename_field("people", "mail", "name"),
            SqlState::DuplicateObject,
            &["name"],
        );
        tx.commit().unwrap();
    }
    let db = open(&path);
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    expect_err(tx.count("users"), SqlState::UndefinedTable, &["users"]);
    assert_eq!(tx.count("people").unwrap(), 1);
    let fk = &tx.schema().entity("posts").unwrap().foreign_keys[0];
    assert_eq!(fk.parent, "people");
    expect_err(
        tx.insert("posts", &[("author_id", int(2))]),
        SqlState::ForeignKeyViolation,
        &["posts_author_fk", "people"],
    );
    expect_err(
        tx.insert("logins", &[("email", text("zz@x"))]),
        SqlState::ForeignKeyViolation,
        &["logins_email_fk"],
    );
    tx.insert("logins", &[("email", text("a@x"))]).unwrap();
    // ON UPDATE CASCADE through the renamed parent field.
    tx.update("people", 1, &[("mail", text("new@x"))])
        .unwrap()
        .unwrap();
    let emails: Vec<Value> = rows(&mut tx, "logins")
        .into_iter()
        .map(|r| r.values[1].clone())
        .collect();
    assert_eq!(emails, vec![text("new@x"), text("new@x")]);
    // NO ACTION (logins) and ON DELETE CASCADE (posts) through the renamed parent.
    expect_err(
        tx.delete("people", 1),
        SqlState::ForeignKeyViolation,
        &["logins_email_fk"],
    );
    assert_eq!(tx.count("posts").unwrap(), 1);
    for id in ids(&mut tx, "logins") {
        tx.delete("logins", id).unwrap().unwrap();
    }
    let d = tx.delete("people", 1).unwrap().unwrap();
    assert_eq!(d.cascaded, 1);
    assert_eq!(tx.count("posts").unwrap(), 0);
    tx.commit().unwrap();
}

// ---------------------------------------------------------------------------------------------
// garbage collection and info

#[test]
fn gc_respects_open_snapshots() {
    let db = Database::temporary_with(quiet()).unwrap();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("kv")
            .id("id")
            .field(FieldDef::new("v", DataType::Text))
            .unique(&["v"]),
    )
    .unwrap();
    tx.insert("kv", &[("id", int(1)), ("v", text("v1"))])
        .unwrap();
    tx.insert("kv", &[("id", int(2)), ("v", text("doomed"))])
        .unwrap();
    tx.commit().unwrap();

    let mut old_reader = conn.begin().unwrap();
    assert_eq!(
        old_reader.get("kv", 1).unwrap().unwrap().values[1],
        text("v1")
    );
    for i in 2..=4 {
        let mut tx = conn.begin().unwrap();
        tx.update("kv", 1, &[("v", text(&format!("v{i}")))])
            .unwrap()
            .unwrap();
        tx.commit().unwrap();
    }
    let mut tx = conn.begin().unwrap();
    tx.delete("kv", 2).unwrap().unwrap();
    tx.commit().unwrap();

    // The old reader pins its snapshot: nothing it can read may go.
    let stats = db.gc().unwrap();
    assert_eq!(stats.horizon, old_reader.snapshot());
    assert_eq!(stats.row_versions_removed, 0, "{stats:?}");
    assert_eq!(stats.index_entries_removed, 0, "{stats:?}");
    let r = old_reader.get("kv", 1).unwrap().unwrap();
    assert_eq!((r.values[1].clone(), r.version), (text("v1"), 1));
    assert_eq!(
        old_reader.get("kv", 2).unwrap().unwrap().values[1],
        text("doomed")
    );
    assert_eq!(
        old_reader
            .find_by_index("kv", "sqlite_autoindex_kv_1", &[text("v1")])
            .unwrap()
            .len(),
        1
    );
    assert_eq!(old_reader.count("kv").unwrap(), 2);
    drop(old_reader);

    // Without it: v1, v2, v3 of row 1 go (v4 stays); row 2's version and tombstone go.
    let stats = db.gc().unwrap();
    assert_eq!(stats.horizon, db.last_commit());
    assert_eq!(stats.row_versions_removed, 3 + 2, "{stats:?}");
    assert_eq!(stats.index_entries_removed, 3 + 1, "{stats:?}");
    let mut tx = conn.begin().unwrap();
    let r = tx.get("kv", 1).unwrap().unwrap();
    assert_eq!((r.values[1].clone(), r.version), (text("v4"), 4));
    assert!(tx.get("kv", 2).unwrap().is_none());
    // Freed unique values are reusable, current ones still enforced.
    tx.insert("kv", &[("v", text("v1"))]).unwrap();
    tx.insert("kv", &[("v", text("doomed"))]).unwrap();
    expect_err(
        tx.insert("kv", &[("v", text("v4"))]),
        SqlState::UniqueViolation,
        &[],
    );
    tx.commit().unwrap();
    // A second pass finds nothing more.
    let stats = db.gc().unwrap();
    assert_eq!(stats.row_versions_removed, 0, "{stats:?}");
    assert_eq!(stats.index_entries_removed, 0, "{stats:?}");
}

#[test]
fn gc_after_drop_entity_removes_its_rows() {
    let db = Database::temporary_with(quiet()).unwrap();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(&users_spec()).unwrap();
    for i in 0..10 {
        tx.insert(
            "users",
            &[("name", text("n")), ("email", text(&i.to_string()))],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    let mut reader = conn.begin().unwrap();
    let mut tx = conn.begin().unwrap();
    tx.drop_entity("users").unwrap();
    tx.commit().unwrap();
    // The reader still sees the dropped entity and its rows.
    let stats = db.gc().unwrap();
    assert_eq!(stats.row_versions_removed, 0);
    assert_eq!(reader.count("users").unwrap(), 10);
    drop(reader);
    let stats = db.gc().unwrap();
    assert_eq!(stats.row_versions_removed, 10, "{stats:?}");
    assert_eq!(stats.index_entries_removed, 10, "{stats:?}");
}

#[test]
fn info_counts() {
    let db = Database::temporary().unwrap();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(&users_spec()).unwrap();
    tx.create_entity(&posts_spec()).unwrap();
    tx.create_entity(
        &EntitySpec::new("notes")
            .id("id")
            .field(FieldDef::new("body", DataType::Text))
            .soft_delete(),
    )
    .unwrap();
    for i in 0..3 {
        tx.insert("users", &[("name", text(&format!("u{i}")))])
            .unwrap();
    }
    tx.insert("posts", &[("author_id", int(1))]).unwrap();
    for _ in 0..4 {
        tx.insert("notes", &[("body", text("b"))]).unwrap();
    }
    tx.delete("notes", 1).unwrap().unwrap();
    let token = tx.commit().unwrap().token;

    let info = db.info().unwrap();
    assert_eq!(info.path, db.path());
    assert_eq!(info.schema_version, 1);
    assert_eq!(info.last_commit, token);
    assert!(info.size_on_disk > 0);
    let t: Vec<(String, u64, usize, usize, bool)> = info
        .tables
        .iter()
        .map(|t| (t.name.clone(), t.rows, t.fields, t.indexes, t.soft_delete))
        .collect();
    assert_eq!(
        t,
        vec![
            ("users".to_string(), 3, 3, 1, false),
            ("posts".to_string(), 1, 3, 1, false),
            ("notes".to_string(), 3, 2, 0, true),
        ]
    );
    let mut tx = conn.begin().unwrap();
    tx.delete("users", 1).unwrap().unwrap();
    tx.commit().unwrap();
    let info = db.info().unwrap();
    assert_eq!(info.tables[0].rows, 2);
    assert_eq!(info.tables[1].rows, 0, "the post cascaded");
    assert_eq!(info.schema_version, 1);
}

#[test]
fn drop_entity_applies_foreign_key_actions() {
    let db = Database::temporary().unwrap();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(&users_spec()).unwrap();
    tx.create_entity(&posts_spec()).unwrap(); // ON DELETE CASCADE
    tx.create_entity(
        &EntitySpec::new("logins")
            .id("id")
            .field(FieldDef::new("user_id", DataType::Integer))
            .foreign_key(ForeignKeySpec::new(&["user_id"], "users", &[]).named("logins_user")),
    )
    .unwrap();
    for u in 1..=2 {
        tx.insert("users", &[("id", int(u)), ("name", text("n"))])
            .unwrap();
        tx.insert("posts", &[("author_id", int(u))]).unwrap();
    }
    tx.insert("logins", &[("user_id", int(2))]).unwrap();
    tx.commit().unwrap();

    // A NO ACTION reference blocks the drop (its implicit delete), which leaves everything.
    let mut tx = conn.begin().unwrap();
    expect_err(
        tx.drop_entity("users"),
        SqlState::ForeignKeyViolation,
        &["logins_user"],
    );
    assert_eq!(tx.count("users").unwrap(), 2);
    assert_eq!(tx.count("posts").unwrap(), 2);
    tx.delete("logins", 1).unwrap().unwrap();
    tx.drop_entity("users").unwrap();
    assert_eq!(tx.count("posts").unwrap(), 0, "posts cascaded");
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    expect_err(tx.count("users"), SqlState::UndefinedTable, &["users"]);
    // The dangling reference is reported on use; NULL is still fine.
    expect_err(
        tx.insert("posts", &[("author_id", int(1))]),
        SqlState::ForeignKeyViolation,
        &["users"],
    );
    tx.insert("posts", &[("author_id", Value::Null)]).unwrap();
    // Re-creating the parent makes the reference work again.
    tx.create_entity(&users_spec()).unwrap();
    tx.insert("users", &[("id", int(1)), ("name", text("again"))])
        .unwrap();
    tx.insert("posts", &[("author_id", int(1))]).unwrap();
    tx.commit().unwrap();
}
