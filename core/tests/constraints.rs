//! Constraint enforcement through the embedded API: NOT NULL, UNIQUE (single and composite),
//! CHECK, foreign keys with every ON DELETE / ON UPDATE action (immediate and deferred), statement
//! atomicity, soft delete, version tokens and strict/lenient typing. Every test runs against a
//! real database and checks both the error (SQLSTATE and message) and the data left behind.

mod common;
use common::*;

use ormdb::{
    BinaryOp, DataType, Database, EntitySpec, Expr, FieldDef, FkAction, ForeignKeySpec,
    ScanOptions, SqlState, Transaction, Value,
};

// ---------------------------------------------------------------------------------------------
// helpers

fn db() -> Database {
    Database::temporary().expect("temporary database")
}

fn field(tx: &mut Transaction, entity: &str, id: i64, pos: usize) -> Value {
    tx.get(entity, id)
        .expect("get")
        .unwrap_or_else(|| panic!("{entity} row {id} missing"))
        .values[pos]
        .clone()
}

/// users(id, name) and posts(id, author_id -> users, title) with the given FK actions.
fn users_posts(db: &Database, fk: ForeignKeySpec) {
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
            .field(FieldDef::new("author_id", DataType::Integer))
            .field(FieldDef::new("title", DataType::Text))
            .foreign_key(fk),
    )
    .unwrap();
    tx.commit().unwrap();
}

/// Inserts users 1 and 2 and posts 10, 11 (user 1) and 20 (user 2).
fn seed_users_posts(db: &Database) {
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    for (id, name) in [(1, "ada"), (2, "bob")] {
        tx.insert("users", &[("id", int(id)), ("name", text(name))])
            .unwrap();
    }
    for (id, author) in [(10, 1), (11, 1), (20, 2)] {
        tx.insert(
            "posts",
            &[
                ("id", int(id)),
                ("author_id", int(author)),
                ("title", text(&format!("post {id}"))),
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

fn author_fk() -> ForeignKeySpec {
    ForeignKeySpec::new(&["author_id"], "users", &[]).named("posts_author_fk")
}

// ---------------------------------------------------------------------------------------------
// NOT NULL, UNIQUE, CHECK

#[test]
fn not_null_rejected_on_insert_and_update() {
    let db = db();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("users")
            .id("id")
            .field(FieldDef::new("name", DataType::Text).not_null())
            .field(FieldDef::new("bio", DataType::Text)),
    )
    .unwrap();
    // Missing value (no default) and explicit NULL.
    expect_err(
        tx.insert("users", &[("bio", text("x"))]),
        SqlState::NotNullViolation,
        &["users.name"],
    );
    expect_err(
        tx.insert("users", &[("name", Value::Null)]),
        SqlState::NotNullViolation,
        &["NOT NULL", "users.name"],
    );
    assert_eq!(tx.count("users").unwrap(), 0, "failed inserts left rows");
    let w = tx.insert("users", &[("name", text("ada"))]).unwrap();
    expect_err(
        tx.update("users", w.row_id, &[("name", Value::Null)]),
        SqlState::NotNullViolation,
        &["users.name"],
    );
    let r = tx.get("users", w.row_id).unwrap().unwrap();
    assert_eq!(r.values[1], text("ada"));
    assert_eq!(r.version, 1, "failed update must not bump the version");
    // Nullable field accepts NULL; the transaction is still usable and commits.
    tx.update("users", w.row_id, &[("bio", Value::Null)])
        .unwrap()
        .unwrap();
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    assert_eq!(rows(&mut tx, "users").len(), 1);
}

#[test]
fn unique_single_field_and_nulls() {
    let db = db();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("users")
            .id("id")
            .field(FieldDef::new("email", DataType::Text))
            .unique_named("users_email_key", &["email"]),
    )
    .unwrap();
    let a = tx.insert("users", &[("email", text("a@x"))]).unwrap();
    tx.commit().unwrap();

    let mut tx = conn.begin().unwrap();
    expect_err(
        tx.insert("users", &[("email", text("a@x"))]),
        SqlState::UniqueViolation,
        &["users_email_key", "users.email"],
    );
    // NULLs never conflict.
    tx.insert("users", &[("email", Value::Null)]).unwrap();
    tx.insert("users", &[("email", Value::Null)]).unwrap();
    let b = tx.insert("users", &[("email", text("b@x"))]).unwrap();
    // Update into a taken value fails and leaves the row alone; updating to its own value works.
    expect_err(
        tx.update("users", b.row_id, &[("email", text("a@x"))]),
        SqlState::UniqueViolation,
        &["users_email_key"],
    );
    assert_eq!(field(&mut tx, "users", b.row_id, 1), text("b@x"));
    tx.update("users", a.row_id, &[("email", text("a@x"))])
        .unwrap()
        .unwrap();
    // A freed value can be reused in the same transaction.
    tx.delete("users", a.row_id).unwrap().unwrap();
    tx.update("users", b.row_id, &[("email", text("a@x"))])
        .unwrap()
        .unwrap();
    tx.commit().unwrap();

    let mut tx = conn.begin().unwrap();
    let emails: Vec<Value> = rows(&mut tx, "users")
        .into_iter()
        .map(|r| r.values[1].clone())
        .collect();
    assert_eq!(emails, vec![Value::Null, Value::Null, text("a@x")]);
    // Text keys compare with BINARY collation: a different case is a different value.
    tx.insert("users", &[("email", text("A@x"))]).unwrap();
}

#[test]
fn unique_composite() {
    let db = db();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("members")
            .id("id")
            .field(FieldDef::new("org", DataType::Integer))
            .field(FieldDef::new("handle", DataType::Text))
            .unique_named("members_org_handle", &["org", "handle"]),
    )
    .unwrap();
    for (org, handle) in [(1, "a"), (1, "b"), (2, "a")] {
        tx.insert("members", &[("org", int(org)), ("handle", text(handle))])
            .unwrap();
    }
    let e = expect_err(
        tx.insert("members", &[("org", int(1)), ("handle", text("a"))]),
        SqlState::UniqueViolation,
        &["members_org_handle", "members.org", "members.handle"],
    );
    assert!(e.state.is_integrity());
    // A NULL in any field of the key never conflicts.
    for _ in 0..2 {
        tx.insert("members", &[("org", int(1)), ("handle", Value::Null)])
            .unwrap();
    }
    // Changing one field of the pair into a taken combination fails.
    let row_2a = rows(&mut tx, "members")
        .into_iter()
        .find(|r| r.values[1] == int(2))
        .unwrap();
    expect_err(
        tx.update("members", row_2a.row_id, &[("org", int(1))]),
        SqlState::UniqueViolation,
        &["members_org_handle"],
    );
    tx.update("members", row_2a.row_id, &[("org", int(3))])
        .unwrap()
        .unwrap();
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    assert_eq!(tx.count("members").unwrap(), 5);
}

#[test]
fn check_constraint_on_insert_update_and_add_check() {
    let db = db();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("items")
            .id("id")
            .field(FieldDef::new("price", DataType::Integer))
            .field(FieldDef::new("qty", DataType::Integer))
            .check(
                "price_nonneg",
                Expr::bin(BinaryOp::Ge, Expr::named("price"), Expr::lit(0)),
            ),
    )
    .unwrap();
    expect_err(
        tx.insert("items", &[("price", int(-1))]),
        SqlState::CheckViolation,
        &["price_nonneg", "items"],
    );
    let ok = tx.insert("items", &[("price", int(5))]).unwrap();
    // NULL makes the check unknown, which passes (SQL semantics).
    tx.insert("items", &[("price", Value::Null)]).unwrap();
    expect_err(
        tx.update("items", ok.row_id, &[("price", int(-5))]),
        SqlState::CheckViolation,
        &["price_nonneg"],
    );
    assert_eq!(field(&mut tx, "items", ok.row_id, 1), int(5));
    tx.update("items", ok.row_id, &[("qty", int(-3))])
        .unwrap()
        .unwrap();
    // A new check is validated against existing rows (qty -3 violates it) and not added.
    expect_err(
        tx.add_check(
            "items",
            "qty_pos",
            Expr::bin(BinaryOp::Gt, Expr::named("qty"), Expr::lit(0)),
        ),
        SqlState::CheckViolation,
        &["qty_pos"],
    );
    tx.insert("items", &[("price", int(1)), ("qty", int(-9))])
        .unwrap();
    tx.add_check(
        "items",
        "price_small",
        Expr::bin(BinaryOp::Lt, Expr::named("price"), Expr::lit(100)),
    )
    .unwrap();
    expect_err(
        tx.insert("items", &[("price", int(100))]),
        SqlState::CheckViolation,
        &["price_small"],
    );
    tx.commit().unwrap();
    // The check persists in the committed schema.
    let mut tx = conn.begin().unwrap();
    expect_err(
        tx.insert("items", &[("price", int(-2))]),
        SqlState::CheckViolation,
        &["price_nonneg"],
    );
    assert_eq!(tx.count("items").unwrap(), 3);
}

// ---------------------------------------------------------------------------------------------
// foreign keys: child side

#[test]
fn fk_rejects_missing_parent_on_insert_and_update() {
    let db = db();
    users_posts(&db, author_fk());
    seed_users_posts(&db);
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    expect_err(
        tx.insert("posts", &[("author_id", int(99)), ("title", text("x"))]),
        SqlState::ForeignKeyViolation,
        &["posts_author_fk", "posts.author_id", "users"],
    );
    expect_err(
        tx.update("posts", 10, &[("author_id", int(99))]),
        SqlState::ForeignKeyViolation,
        &["posts_author_fk"],
    );
    assert_eq!(field(&mut tx, "posts", 10, 1), int(1));
    // NULL references nothing and is allowed; a valid move is allowed.
    tx.insert("posts", &[("author_id", Value::Null)]).unwrap();
    tx.update("posts", 10, &[("author_id", int(2))])
        .unwrap()
        .unwrap();
    // A parent inserted in this transaction is visible to the check.
    tx.insert("users", &[("id", int(3))]).unwrap();
    tx.insert("posts", &[("author_id", int(3))]).unwrap();
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    assert_eq!(tx.count("posts").unwrap(), 5);
    assert_eq!(field(&mut tx, "posts", 10, 1), int(2));
}

#[test]
fn fk_to_unique_non_rowid_key() {
    let db = db();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("countries")
            .id("id")
            .field(FieldDef::new("code", DataType::Text).not_null())
            .unique(&["code"]),
    )
    .unwrap();
    tx.create_entity(
        &EntitySpec::new("cities")
            .id("id")
            .field(FieldDef::new("country", DataType::Text))
            .foreign_key(
                ForeignKeySpec::new(&["country"], "countries", &["code"]).named("city_cc"),
            ),
    )
    .unwrap();
    tx.insert("countries", &[("code", text("FR"))]).unwrap();
    tx.insert("cities", &[("country", text("FR"))]).unwrap();
    expect_err(
        tx.insert("cities", &[("country", text("XX"))]),
        SqlState::ForeignKeyViolation,
        &["city_cc", "cities.country"],
    );
    tx.commit().unwrap();
}

// ---------------------------------------------------------------------------------------------
// foreign keys: ON DELETE

#[test]
fn on_delete_cascade_multi_level() {
    let db = db();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(&EntitySpec::new("users").id("id"))
        .unwrap();
    tx.create_entity(
        &EntitySpec::new("posts")
            .id("id")
            .field(FieldDef::new("user_id", DataType::Integer))
            .foreign_key(
                ForeignKeySpec::new(&["user_id"], "users", &[]).on_delete(FkAction::Cascade),
            ),
    )
    .unwrap();
    tx.create_entity(
        &EntitySpec::new("comments")
            .id("id")
            .field(FieldDef::new("post_id", DataType::Integer))
            .foreign_key(
                ForeignKeySpec::new(&["post_id"], "posts", &[]).on_delete(FkAction::Cascade),
            ),
    )
    .unwrap();
    tx.create_entity(
        &EntitySpec::new("likes")
            .id("id")
            .field(FieldDef::new("comment_id", DataType::Integer))
            .foreign_key(
                ForeignKeySpec::new(&["comment_id"], "comments", &[]).on_delete(FkAction::Cascade),
            ),
    )
    .unwrap();
    for u in [1, 2] {
        tx.insert("users", &[("id", int(u))]).unwrap();
        for p in 0..3 {
            let pid = u * 100 + p;
            tx.insert("posts", &[("id", int(pid)), ("user_id", int(u))])
                .unwrap();
            for c in 0..2 {
                let cid = pid * 10 + c;
                tx.insert("comments", &[("id", int(cid)), ("post_id", int(pid))])
                    .unwrap();
                tx.insert("likes", &[("id", int(cid)), ("comment_id", int(cid))])
                    .unwrap();
            }
        }
    }
    tx.commit().unwrap();

    let mut tx = conn.begin().unwrap();
    let d = tx.delete("users", 1).unwrap().unwrap();
    assert_eq!(d.row_id, 1);
    assert_eq!(d.cascaded, 3 + 6 + 6, "posts + comments + likes of user 1");
    tx.commit().unwrap();

    let mut tx = conn.begin().unwrap();
    assert_eq!(ids(&mut tx, "users"), vec![2]);
    assert_eq!(ids(&mut tx, "posts"), vec![200, 201, 202]);
    assert_eq!(
        ids(&mut tx, "comments"),
        vec![2000, 2001, 2010, 2011, 2020, 2021]
    );
    assert_eq!(ids(&mut tx, "likes"), ids(&mut tx, "comments"));
    // Untouched rows keep their version.
    assert!(rows(&mut tx, "likes").iter().all(|r| r.version == 1));
}

#[test]
fn on_delete_cascade_diamond() {
    // root <- left, root <- right, leaf -> left and leaf -> right, all cascading; leaf also
    // references root with NO ACTION, which is satisfied at the end of the statement.
    let db = db();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(&EntitySpec::new("root").id("id")).unwrap();
    for side in ["left", "right"] {
        tx.create_entity(
            &EntitySpec::new(side)
                .id("id")
                .field(FieldDef::new("root_id", DataType::Integer))
                .foreign_key(
                    ForeignKeySpec::new(&["root_id"], "root", &[]).on_delete(FkAction::Cascade),
                ),
        )
        .unwrap();
    }
    tx.create_entity(
        &EntitySpec::new("leaf")
            .id("id")
            .field(FieldDef::new("left_id", DataType::Integer))
            .field(FieldDef::new("right_id", DataType::Integer))
            .field(FieldDef::new("root_id", DataType::Integer))
            .foreign_key(
                ForeignKeySpec::new(&["left_id"], "left", &[]).on_delete(FkAction::Cascade),
            )
            .foreign_key(
                ForeignKeySpec::new(&["right_id"], "right", &[]).on_delete(FkAction::Cascade),
            )
            .foreign_key(ForeignKeySpec::new(&["root_id"], "root", &[])),
    )
    .unwrap();
    for r in [1, 2] {
        tx.insert("root", &[("id", int(r))]).unwrap();
        tx.insert("left", &[("id", int(r)), ("root_id", int(r))])
            .unwrap();
        tx.insert("right", &[("id", int(r)), ("root_id", int(r))])
            .unwrap();
        for k in 0..3 {
            tx.insert(
                "leaf",
                &[
                    ("id", int(r * 10 + k)),
                    ("left_id", int(r)),
                    ("right_id", int(r)),
                    ("root_id", int(r)),
                ],
            )
            .unwrap();
        }
    }
    // A leaf reachable only through `right` of root 1 but left of root 2.
    tx.insert(
        "leaf",
        &[
            ("id", int(99)),
            ("left_id", int(2)),
            ("right_id", int(1)),
            ("root_id", int(2)),
        ],
    )
    .unwrap();
    tx.commit().unwrap();

    let mut tx = conn.begin().unwrap();
    let d = tx.delete("root", 1).unwrap().unwrap();
    // left 1, right 1, leaves 10..12 (each once), leaf 99 via right 1.
    assert_eq!(d.cascaded, 2 + 3 + 1);
    assert_eq!(ids(&mut tx, "root"), vec![2]);
    assert_eq!(ids(&mut tx, "left"), vec![2]);
    assert_eq!(ids(&mut tx, "right"), vec![2]);
    assert_eq!(ids(&mut tx, "leaf"), vec![20, 21, 22]);
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    assert_eq!(ids(&mut tx, "leaf"), vec![20, 21, 22]);
}

#[test]
fn on_delete_restrict() {
    let db = db();
    users_posts(&db, author_fk().on_delete(FkAction::Restrict));
    seed_users_posts(&db);
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    expect_err(
        tx.delete("users", 1),
        SqlState::ForeignKeyViolation,
        &["posts_author_fk", "RESTRICT"],
    );
    assert!(tx.get("users", 1).unwrap().is_some());
    assert_eq!(ids(&mut tx, "posts"), vec![10, 11, 20]);
    // Once the children are gone the parent can go; others are untouched.
    tx.delete("posts", 10).unwrap().unwrap();
    tx.delete("posts", 11).unwrap().unwrap();
    let d = tx.delete("users", 1).unwrap().unwrap();
    assert_eq!(d.cascaded, 0);
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    assert_eq!(ids(&mut tx, "users"), vec![2]);
    assert_eq!(ids(&mut tx, "posts"), vec![20]);
}

#[test]
fn on_delete_set_null() {
    let db = db();
    users_posts(&db, author_fk().on_delete(FkAction::SetNull));
    seed_users_posts(&db);
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    let d = tx.delete("users", 1).unwrap().unwrap();
    assert_eq!(d.cascaded, 2);
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    let posts = rows(&mut tx, "posts");
    assert_eq!(posts.len(), 3, "SET NULL must not delete children");
    for p in &posts {
        match p.row_id {
            10 | 11 => {
                assert_eq!(p.values[1], Value::Null);
                assert_eq!(p.version, 2);
                assert_eq!(p.values[2], text(&format!("post {}", p.row_id)));
            }
            20 => {
                assert_eq!(p.values[1], int(2));
                assert_eq!(p.version, 1);
            }
            other => panic!("unexpected post {other}"),
        }
    }
}

#[test]
fn on_delete_set_null_on_not_null_field_fails_atomically() {
    let db = db();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(&EntitySpec::new("users").id("id"))
        .unwrap();
    tx.create_entity(
        &EntitySpec::new("posts")
            .id("id")
            .field(FieldDef::new("author_id", DataType::Integer).not_null())
            .foreign_key(
                ForeignKeySpec::new(&["author_id"], "users", &[]).on_delete(FkAction::SetNull),
            ),
    )
    .unwrap();
    tx.insert("users", &[("id", int(1))]).unwrap();
    tx.insert("posts", &[("author_id", int(1))]).unwrap();
    expect_err(
        tx.delete("users", 1),
        SqlState::NotNullViolation,
        &["posts.author_id"],
    );
    assert!(tx.get("users", 1).unwrap().is_some());
    assert_eq!(field(&mut tx, "posts", 1, 1), int(1));
    tx.commit().unwrap();
}

#[test]
fn on_delete_set_default() {
    let db = db();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(&EntitySpec::new("users").id("id"))
        .unwrap();
    tx.create_entity(
        &EntitySpec::new("posts")
            .id("id")
            .field(FieldDef::new("author_id", DataType::Integer).default_value(0))
            .foreign_key(
                ForeignKeySpec::new(&["author_id"], "users", &[])
                    .named("posts_author_fk")
                    .on_delete(FkAction::SetDefault),
            ),
    )
    .unwrap();
    for u in [0, 1, 2] {
        tx.insert("users", &[("id", int(u))]).unwrap();
    }
    for (p, u) in [(1, 1), (2, 1), (3, 2)] {
        tx.insert("posts", &[("id", int(p)), ("author_id", int(u))])
            .unwrap();
    }
    tx.commit().unwrap();

    let mut tx = conn.begin().unwrap();
    let d = tx.delete("users", 1).unwrap().unwrap();
    assert_eq!(d.cascaded, 2);
    let authors: Vec<Value> = rows(&mut tx, "posts")
        .into_iter()
        .map(|r| r.values[1].clone())
        .collect();
    assert_eq!(authors, vec![int(0), int(0), int(2)]);
    // The default parent must exist: deleting it would set children to 0 again (itself gone).
    expect_err(
        tx.delete("users", 0),
        SqlState::ForeignKeyViolation,
        &["posts_author_fk"],
    );
    assert!(tx.get("users", 0).unwrap().is_some());
    assert_eq!(tx.count("posts").unwrap(), 3);
    tx.commit().unwrap();
}

#[test]
fn on_delete_no_action_immediate() {
    let db = db();
    users_posts(&db, author_fk());
    seed_users_posts(&db);
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    expect_err(
        tx.delete("users", 1),
        SqlState::ForeignKeyViolation,
        &["posts_author_fk"],
    );
    assert!(tx.get("users", 1).unwrap().is_some());
    assert_eq!(tx.count("posts").unwrap(), 3);
    // A user without posts can be deleted.
    tx.insert("users", &[("id", int(3))]).unwrap();
    tx.delete("users", 3).unwrap().unwrap();
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    assert_eq!(ids(&mut tx, "users"), vec![1, 2]);
}

// ---------------------------------------------------------------------------------------------
// foreign keys: ON UPDATE

#[test]
fn on_update_cascade_rowid_key() {
    let db = db();
    users_posts(&db, author_fk().on_update(FkAction::Cascade));
    seed_users_posts(&db);
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    let w = tx.update("users", 1, &[("id", int(10))]).unwrap().unwrap();
    assert_eq!(w.row_id, 10);
    assert!(tx.get("users", 1).unwrap().is_none());
    assert_eq!(field(&mut tx, "users", 10, 1), text("ada"));
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    let authors: Vec<(i64, Value)> = rows(&mut tx, "posts")
        .into_iter()
        .map(|r| (r.row_id, r.values[1].clone()))
        .collect();
    assert_eq!(
        authors,
        vec![(10, int(10)), (11, int(10)), (20, int(2))],
        "exactly user 1's posts follow the key"
    );
    // Moving onto an existing key is a primary key violation.
    expect_err(
        tx.update("users", 10, &[("id", int(2))]),
        SqlState::UniqueViolation,
        &["PRIMARY KEY"],
    );
    assert_eq!(ids(&mut tx, "users"), vec![2, 10]);
}

#[test]
fn on_update_no_action_and_restrict_block_key_change() {
    let db = db();
    users_posts(&db, author_fk());
    seed_users_posts(&db);
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    expect_err(
        tx.update("users", 1, &[("id", int(5))]),
        SqlState::ForeignKeyViolation,
        &["posts_author_fk"],
    );
    assert!(tx.get("users", 1).unwrap().is_some());
    assert!(tx.get("users", 5).unwrap().is_none());
    // Changing a non-key field is fine.
    tx.update("users", 1, &[("name", text("ada2"))])
        .unwrap()
        .unwrap();
    // A user without children can change its key.
    tx.insert("users", &[("id", int(3))]).unwrap();
    tx.update("users", 3, &[("id", int(4))]).unwrap().unwrap();
    tx.commit().unwrap();

    let db = Database::temporary().unwrap();
    users_posts(
        &db,
        author_fk()
            .on_update(FkAction::Restrict)
            .on_delete(FkAction::Cascade),
    );
    seed_users_posts(&db);
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    expect_err(
        tx.update("users", 2, &[("id", int(7))]),
        SqlState::ForeignKeyViolation,
        &["RESTRICT"],
    );
    assert_eq!(ids(&mut tx, "users"), vec![1, 2]);
}

#[test]
fn on_update_on_unique_non_rowid_key() {
    let db = db();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("accounts")
            .id("id")
            .field(FieldDef::new("email", DataType::Text))
            .unique(&["email"]),
    )
    .unwrap();
    tx.create_entity(
        &EntitySpec::new("sessions")
            .id("id")
            .field(FieldDef::new("email", DataType::Text))
            .foreign_key(
                ForeignKeySpec::new(&["email"], "accounts", &["email"])
                    .on_update(FkAction::Cascade),
            ),
    )
    .unwrap();
    tx.create_entity(
        &EntitySpec::new("notes")
            .id("id")
            .field(FieldDef::new("email", DataType::Text))
            .foreign_key(
                ForeignKeySpec::new(&["email"], "accounts", &["email"])
                    .on_update(FkAction::SetNull),
            ),
    )
    .unwrap();
    tx.insert("accounts", &[("email", text("a@x"))]).unwrap();
    tx.insert("accounts", &[("email", text("b@x"))]).unwrap();
    for e in ["a@x", "a@x", "b@x"] {
        tx.insert("sessions", &[("email", text(e))]).unwrap();
        tx.insert("notes", &[("email", text(e))]).unwrap();
    }
    tx.commit().unwrap();

    let mut tx = conn.begin().unwrap();
    let d = tx
        .update("accounts", 1, &[("email", text("a2@x"))])
        .unwrap()
        .unwrap();
    assert_eq!(d.version, 2);
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    let s: Vec<Value> = rows(&mut tx, "sessions")
        .into_iter()
        .map(|r| r.values[1].clone())
        .collect();
    assert_eq!(s, vec![text("a2@x"), text("a2@x"), text("b@x")]);
    let n: Vec<Value> = rows(&mut tx, "notes")
        .into_iter()
        .map(|r| r.values[1].clone())
        .collect();
    assert_eq!(n, vec![Value::Null, Value::Null, text("b@x")]);
    // The renamed key is referenceable, the old one is not.
    tx.insert("sessions", &[("email", text("a2@x"))]).unwrap();
    expect_err(
        tx.insert("sessions", &[("email", text("a@x"))]),
        SqlState::ForeignKeyViolation,
        &["sessions.email"],
    );
}

#[test]
fn on_update_set_null_for_rowid_key() {
    let db = db();
    users_posts(&db, author_fk().on_update(FkAction::SetNull));
    seed_users_posts(&db);
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.update("users", 2, &[("id", int(200))]).unwrap().unwrap();
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    let authors: Vec<Value> = rows(&mut tx, "posts")
        .into_iter()
        .map(|r| r.values[1].clone())
        .collect();
    assert_eq!(authors, vec![int(1), int(1), Value::Null]);
}

// ---------------------------------------------------------------------------------------------
// deferred foreign keys and enforcement off

fn deferred_schema(db: &Database) {
    users_posts(db, author_fk().deferred());
}

#[test]
fn deferred_fk_child_before_parent_commits() {
    let db = db();
    deferred_schema(&db);
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.insert("posts", &[("id", int(1)), ("author_id", int(5))])
        .unwrap();
    tx.insert("users", &[("id", int(5))]).unwrap();
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    assert_eq!(field(&mut tx, "posts", 1, 1), int(5));
}

#[test]
fn deferred_fk_violation_detected_at_commit() {
    let db = db();
    deferred_schema(&db);
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.insert("users", &[("id", int(1))]).unwrap();
    tx.insert("posts", &[("id", int(1)), ("author_id", int(404))])
        .unwrap();
    expect_err(
        tx.commit(),
        SqlState::ForeignKeyViolation,
        &["posts_author_fk", "deferred"],
    );
    // Nothing of the failed transaction is visible.
    let mut tx = conn.begin().unwrap();
    assert_eq!(tx.count("users").unwrap(), 0);
    assert_eq!(tx.count("posts").unwrap(), 0);

    // Deleting the parent of a committed child under a deferred NO ACTION key: fine if the
    // parent comes back before commit, fails otherwise.
    tx.insert("users", &[("id", int(1))]).unwrap();
    tx.insert("posts", &[("id", int(1)), ("author_id", int(1))])
        .unwrap();
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    tx.delete("users", 1).unwrap().unwrap();
    tx.insert("users", &[("id", int(1)), ("name", text("again"))])
        .unwrap();
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    tx.delete("users", 1).unwrap().unwrap();
    expect_err(
        tx.commit(),
        SqlState::ForeignKeyViolation,
        &["posts_author_fk"],
    );
    let mut tx = conn.begin().unwrap();
    assert_eq!(field(&mut tx, "users", 1, 1), text("again"));
    // Fixing the child before commit also satisfies it.
    tx.delete("users", 1).unwrap().unwrap();
    tx.update("posts", 1, &[("author_id", Value::Null)])
        .unwrap()
        .unwrap();
    tx.commit().unwrap();
}

#[test]
fn deferred_check_rolled_back_with_savepoint() {
    let db = db();
    deferred_schema(&db);
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.insert("users", &[("id", int(1))]).unwrap();
    tx.savepoint("sp").unwrap();
    tx.insert("posts", &[("id", int(1)), ("author_id", int(404))])
        .unwrap();
    tx.rollback_to("sp").unwrap();
    tx.insert("posts", &[("id", int(2)), ("author_id", int(1))])
        .unwrap();
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    assert_eq!(ids(&mut tx, "posts"), vec![2]);
}

#[test]
fn foreign_keys_can_be_disabled_per_connection() {
    let db = db();
    users_posts(&db, author_fk().on_delete(FkAction::Cascade));
    seed_users_posts(&db);
    let off = db.connect();
    off.set_foreign_keys(false);
    assert!(!off.foreign_keys());
    let mut tx = off.begin().unwrap();
    tx.insert("posts", &[("id", int(30)), ("author_id", int(404))])
        .unwrap();
    // No cascade either.
    let d = tx.delete("users", 1).unwrap().unwrap();
    assert_eq!(d.cascaded, 0);
    tx.commit().unwrap();

    let on = db.connect();
    assert!(on.foreign_keys());
    let mut tx = on.begin().unwrap();
    assert_eq!(ids(&mut tx, "posts"), vec![10, 11, 20, 30]);
    assert_eq!(ids(&mut tx, "users"), vec![2]);
    expect_err(
        tx.insert("posts", &[("author_id", int(404))]),
        SqlState::ForeignKeyViolation,
        &["posts_author_fk"],
    );
    drop(tx);
    // The setting applies to transactions begun afterwards.
    let mut before = on.begin().unwrap();
    on.set_foreign_keys(false);
    expect_err(
        before.insert("posts", &[("author_id", int(405))]),
        SqlState::ForeignKeyViolation,
        &[],
    );
    let mut after = on.begin().unwrap();
    after.insert("posts", &[("author_id", int(405))]).unwrap();
}

// ---------------------------------------------------------------------------------------------
// statement atomicity

#[test]
fn failed_cascade_leaves_no_partial_writes() {
    // users -> posts cascade; comments -> posts RESTRICT. Deleting a user whose posts have
    // comments fails; posts already cascaded in the statement must come back.
    let db = db();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(&EntitySpec::new("users").id("id"))
        .unwrap();
    tx.create_entity(
        &EntitySpec::new("posts")
            .id("id")
            .field(FieldDef::new("user_id", DataType::Integer))
            .foreign_key(
                ForeignKeySpec::new(&["user_id"], "users", &[]).on_delete(FkAction::Cascade),
            ),
    )
    .unwrap();
    tx.create_entity(
        &EntitySpec::new("comments")
            .id("id")
            .field(FieldDef::new("post_id", DataType::Integer))
            .foreign_key(
                ForeignKeySpec::new(&["post_id"], "posts", &[])
                    .named("comments_post_fk")
                    .on_delete(FkAction::Restrict),
            ),
    )
    .unwrap();
    tx.insert("users", &[("id", int(1))]).unwrap();
    for p in 1..=5 {
        tx.insert("posts", &[("id", int(p)), ("user_id", int(1))])
            .unwrap();
    }
    // Only the last post has a comment, so four posts cascade before the failure.
    tx.insert("comments", &[("id", int(1)), ("post_id", int(5))])
        .unwrap();
    tx.commit().unwrap();

    let mut tx = conn.begin().unwrap();
    tx.savepoint("user_sp").unwrap();
    expect_err(
        tx.delete("users", 1),
        SqlState::ForeignKeyViolation,
        &["comments_post_fk"],
    );
    assert!(tx.get("users", 1).unwrap().is_some());
    assert_eq!(ids(&mut tx, "posts"), vec![1, 2, 3, 4, 5]);
    assert!(rows(&mut tx, "posts").iter().all(|r| r.version == 1));
    // The transaction (and the user's savepoint) is still usable.
    tx.insert("posts", &[("id", int(6)), ("user_id", int(1))])
        .unwrap();
    tx.rollback_to("user_sp").unwrap();
    tx.insert("posts", &[("id", int(7)), ("user_id", int(1))])
        .unwrap();
    tx.release("user_sp").unwrap();
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    assert_eq!(ids(&mut tx, "posts"), vec![1, 2, 3, 4, 5, 7]);
    assert_eq!(tx.count("users").unwrap(), 1);
}

#[test]
fn failed_update_cascade_leaves_no_partial_writes() {
    // ON UPDATE CASCADE into a child with a CHECK that the new key violates for one child.
    let db = db();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(&EntitySpec::new("users").id("id"))
        .unwrap();
    tx.create_entity(
        &EntitySpec::new("posts")
            .id("id")
            .field(FieldDef::new("user_id", DataType::Integer))
            .field(FieldDef::new("cap", DataType::Integer))
            .check(
                "user_below_cap",
                Expr::bin(BinaryOp::Lt, Expr::named("user_id"), Expr::named("cap")),
            )
            .foreign_key(
                ForeignKeySpec::new(&["user_id"], "users", &[]).on_update(FkAction::Cascade),
            ),
    )
    .unwrap();
    tx.insert("users", &[("id", int(1))]).unwrap();
    tx.insert(
        "posts",
        &[("id", int(1)), ("user_id", int(1)), ("cap", int(100))],
    )
    .unwrap();
    tx.insert(
        "posts",
        &[("id", int(2)), ("user_id", int(1)), ("cap", int(10))],
    )
    .unwrap();
    tx.commit().unwrap();

    let mut tx = conn.begin().unwrap();
    expect_err(
        tx.update("users", 1, &[("id", int(50))]),
        SqlState::CheckViolation,
        &["user_below_cap"],
    );
    assert_eq!(ids(&mut tx, "users"), vec![1]);
    let r: Vec<(Value, u64)> = rows(&mut tx, "posts")
        .into_iter()
        .map(|r| (r.values[1].clone(), r.version))
        .collect();
    assert_eq!(r, vec![(int(1), 1), (int(1), 1)]);
    tx.update("users", 1, &[("id", int(5))]).unwrap().unwrap();
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    let r: Vec<Value> = rows(&mut tx, "posts")
        .into_iter()
        .map(|r| r.values[1].clone())
        .collect();
    assert_eq!(r, vec![int(5), int(5)]);
}

#[test]
fn failed_insert_leaves_indexes_clean() {
    // A failed insert must not leave a phantom unique entry behind.
    let db = db();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("t")
            .id("id")
            .field(FieldDef::new("u", DataType::Text))
            .field(FieldDef::new("n", DataType::Integer).not_null())
            .unique(&["u"]),
    )
    .unwrap();
    expect_err(
        tx.insert("t", &[("u", text("k"))]),
        SqlState::NotNullViolation,
        &["t.n"],
    );
    tx.insert("t", &[("u", text("k")), ("n", int(1))]).unwrap();
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    assert_eq!(
        tx.find_by_index("t", "sqlite_autoindex_t_1", &[text("k")])
            .unwrap()
            .len(),
        1
    );
}

// ---------------------------------------------------------------------------------------------
// soft delete

#[test]
fn soft_delete_lifecycle() {
    let db = db();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("docs")
            .id("id")
            .field(FieldDef::new("slug", DataType::Text))
            .unique(&["slug"])
            .soft_delete(),
    )
    .unwrap();
    let a = tx.insert("docs", &[("slug", text("a"))]).unwrap();
    let b = tx.insert("docs", &[("slug", text("b"))]).unwrap();
    tx.commit().unwrap();

    let all = ScanOptions {
        include_deleted: true,
    };
    let mut tx = conn.begin().unwrap();
    let d = tx.delete("docs", a.row_id).unwrap().unwrap();
    assert_eq!(d.version, 2);
    assert!(tx.get("docs", a.row_id).unwrap().is_none());
    assert_eq!(ids(&mut tx, "docs"), vec![b.row_id]);
    assert_eq!(tx.count("docs").unwrap(), 1);
    // Deleting or updating a soft-deleted row finds nothing.
    assert!(tx.delete("docs", a.row_id).unwrap().is_none());
    assert!(tx
        .update("docs", a.row_id, &[("slug", text("z"))])
        .unwrap()
        .is_none());
    tx.commit().unwrap();

    let mut tx = conn.begin().unwrap();
    assert!(tx.get("docs", a.row_id).unwrap().is_none());
    let hidden = tx.get_with("docs", a.row_id, all).unwrap().unwrap();
    assert!(hidden.soft_deleted);
    assert_eq!(hidden.values[1], text("a"));
    let with_deleted: Vec<(i64, bool)> = tx
        .scan_with("docs", all)
        .unwrap()
        .map(|r| r.map(|r| (r.row_id, r.soft_deleted)))
        .collect::<ormdb::Result<_>>()
        .unwrap();
    assert_eq!(with_deleted, vec![(a.row_id, true), (b.row_id, false)]);
    // The marked row still holds its unique value.
    expect_err(
        tx.insert("docs", &[("slug", text("a"))]),
        SqlState::UniqueViolation,
        &["docs.slug"],
    );
    assert!(tx
        .find_by_index("docs", "sqlite_autoindex_docs_1", &[text("a")])
        .unwrap()
        .is_empty());
    // Restore.
    assert!(
        tx.restore("docs", b.row_id).unwrap().is_none(),
        "b is not deleted"
    );
    let r = tx.restore("docs", a.row_id).unwrap().unwrap();
    assert_eq!(r.version, 3);
    let back = tx.get("docs", a.row_id).unwrap().unwrap();
    assert!(!back.soft_deleted);
    assert_eq!(back.version, 3);
    tx.commit().unwrap();

    // Purge removes even from the include_deleted view.
    let mut tx = conn.begin().unwrap();
    tx.delete("docs", b.row_id).unwrap().unwrap();
    tx.purge("docs", b.row_id).unwrap().unwrap();
    assert!(tx.get_with("docs", b.row_id, all).unwrap().is_none());
    tx.purge("docs", a.row_id).unwrap().unwrap();
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    assert_eq!(tx.scan_with("docs", all).unwrap().count(), 0);
    // The purged unique value is free again.
    tx.insert("docs", &[("slug", text("a"))]).unwrap();
    tx.commit().unwrap();
}

// ---------------------------------------------------------------------------------------------
// version tokens

#[test]
fn version_tokens_and_optimistic_checks() {
    let db = db();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("c")
            .id("id")
            .field(FieldDef::new("n", DataType::Integer)),
    )
    .unwrap();
    let w = tx.insert("c", &[("n", int(0))]).unwrap();
    assert_eq!(w.version, 1);
    tx.commit().unwrap();

    let mut tx = conn.begin().unwrap();
    assert_eq!(tx.get("c", w.row_id).unwrap().unwrap().version, 1);
    let v2 = tx.update("c", w.row_id, &[("n", int(1))]).unwrap().unwrap();
    assert_eq!(v2.version, 2);
    let v3 = tx.update("c", w.row_id, &[("n", int(2))]).unwrap().unwrap();
    assert_eq!(v3.version, 3);
    tx.commit().unwrap();

    let mut tx = conn.begin().unwrap();
    assert_eq!(tx.get("c", w.row_id).unwrap().unwrap().version, 3);
    let e = expect_err(
        tx.update_versioned("c", w.row_id, &[("n", int(99))], 2),
        SqlState::VersionMismatch,
        &["c", "expected version 2", "found 3"],
    );
    assert_eq!(e.code(), "40002");
    let r = tx.get("c", w.row_id).unwrap().unwrap();
    assert_eq!((r.version, r.values[1].clone()), (3, int(2)));
    expect_err(
        tx.delete_versioned("c", w.row_id, 1),
        SqlState::VersionMismatch,
        &["expected version 1"],
    );
    assert!(tx.get("c", w.row_id).unwrap().is_some());
    let v4 = tx
        .update_versioned("c", w.row_id, &[("n", int(3))], 3)
        .unwrap()
        .unwrap();
    assert_eq!(v4.version, 4);
    let d = tx.delete_versioned("c", w.row_id, 4).unwrap().unwrap();
    assert_eq!(d.version, 5);
    assert!(tx.get("c", w.row_id).unwrap().is_none());
    // Missing rows are None, not errors.
    assert!(tx.update_versioned("c", 12345, &[], 1).unwrap().is_none());
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    assert_eq!(tx.count("c").unwrap(), 0);
}

// ---------------------------------------------------------------------------------------------
// strict and lenient typing

#[test]
fn strict_entities_reject_wrong_types() {
    let db = db();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("s")
            .id("id")
            .field(FieldDef::new("i", DataType::Integer))
            .field(FieldDef::new("r", DataType::Real))
            .field(FieldDef::new("t", DataType::Text))
            .field(FieldDef::new("b", DataType::Blob))
            .field(FieldDef::new("a", DataType::Any)),
    )
    .unwrap();
    for (f, v) in [
        ("i", text("abc")),
        ("i", Value::Real(1.5)),
        ("i", Value::Blob(vec![1])),
        ("r", text("x")),
        ("t", Value::Blob(vec![1, 2])),
        ("b", text("not a blob")),
        ("b", int(3)),
    ] {
        let e = expect_err(
            tx.insert("s", &[(f, v.clone())]),
            SqlState::DatatypeMismatch,
            &[&format!("s.{f}")],
        );
        assert_eq!(e.code(), "42804", "{f} <- {v:?}");
    }
    // Lossless conversions are fine, as in SQLite STRICT tables.
    let w = tx
        .insert(
            "s",
            &[
                ("i", text("12")),
                ("r", int(2)),
                ("t", int(7)),
                ("b", Value::Blob(vec![0, 255])),
                ("a", text("anything")),
            ],
        )
        .unwrap();
    let r = tx.get("s", w.row_id).unwrap().unwrap();
    assert_eq!(
        r.values[1..],
        [
            int(12),
            Value::Real(2.0),
            text("7"),
            Value::Blob(vec![0, 255]),
            text("anything")
        ]
    );
    expect_err(
        tx.update("s", w.row_id, &[("i", text("twelve"))]),
        SqlState::DatatypeMismatch,
        &["s.i"],
    );
    assert_eq!(field(&mut tx, "s", w.row_id, 1), int(12));
    // A non-integer identity.
    expect_err(
        tx.insert("s", &[("id", text("abc"))]),
        SqlState::DatatypeMismatch,
        &["s.id"],
    );
    assert_eq!(tx.count("s").unwrap(), 1);
    tx.commit().unwrap();
}

#[test]
fn lenient_entities_apply_affinity() {
    let db = db();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("l")
            .id("id")
            .field(FieldDef::new("i", DataType::Integer))
            .field(FieldDef::new("r", DataType::Real))
            .field(FieldDef::new("t", DataType::Text))
            .field(FieldDef::new("n", DataType::Numeric))
            .lenient(),
    )
    .unwrap();
    let cases: Vec<([Value; 4], [Value; 4])> = vec![
        (
            [text("12"), text("2.5"), int(3), text("4.0")],
            [int(12), Value::Real(2.5), text("3"), int(4)],
        ),
        (
            [text("abc"), int(2), Value::Real(1.5), text("x")],
            [text("abc"), Value::Real(2.0), text("1.5"), text("x")],
        ),
        (
            [
                Value::Real(3.0),
                Value::Blob(vec![1]),
                Value::Blob(vec![2]),
                Value::Real(2.5),
            ],
            [
                int(3),
                Value::Blob(vec![1]),
                Value::Blob(vec![2]),
                Value::Real(2.5),
            ],
        ),
    ];
    for (input, want) in cases {
        let w = tx
            .insert(
                "l",
                &[
                    ("i", input[0].clone()),
                    ("r", input[1].clone()),
                    ("t", input[2].clone()),
                    ("n", input[3].clone()),
                ],
            )
            .unwrap();
        tx.commit().unwrap();
        tx = conn.begin().unwrap();
        let got = tx.get("l", w.row_id).unwrap().unwrap().values;
        assert_eq!(got[1..], want, "input {input:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// more shapes: self reference, composite keys, a foreign key on the identity itself

#[test]
fn self_referencing_cascade_deletes_subtree() {
    let db = db();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("cats")
            .id("id")
            .field(FieldDef::new("parent_id", DataType::Integer))
            .foreign_key(
                ForeignKeySpec::new(&["parent_id"], "cats", &[]).on_delete(FkAction::Cascade),
            ),
    )
    .unwrap();
    // 1 <- 2 <- 3 <- 4, 1 <- 5; 6 is a separate root; 7 references itself.
    for (id, parent) in [
        (1, None),
        (2, Some(1)),
        (3, Some(2)),
        (4, Some(3)),
        (5, Some(1)),
    ] {
        tx.insert(
            "cats",
            &[("id", int(id)), ("parent_id", Value::from(parent))],
        )
        .unwrap();
    }
    tx.insert("cats", &[("id", int(6))]).unwrap();
    tx.insert("cats", &[("id", int(7)), ("parent_id", int(7))])
        .unwrap();
    tx.insert("cats", &[("id", int(8)), ("parent_id", int(6))])
        .unwrap();
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    let d = tx.delete("cats", 2).unwrap().unwrap();
    assert_eq!(d.cascaded, 2);
    assert_eq!(ids(&mut tx, "cats"), vec![1, 5, 6, 7, 8]);
    let d = tx.delete("cats", 7).unwrap().unwrap();
    assert_eq!(d.cascaded, 0);
    let d = tx.delete("cats", 1).unwrap().unwrap();
    assert_eq!(d.cascaded, 1);
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    assert_eq!(ids(&mut tx, "cats"), vec![6, 8]);
}

#[test]
fn composite_foreign_key_match_simple() {
    let db = db();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("rooms")
            .field(FieldDef::new("building", DataType::Text))
            .field(FieldDef::new("number", DataType::Integer))
            .primary_key(&["building", "number"]),
    )
    .unwrap();
    tx.create_entity(
        &EntitySpec::new("meetings")
            .id("id")
            .field(FieldDef::new("building", DataType::Text))
            .field(FieldDef::new("room", DataType::Integer))
            .foreign_key(
                ForeignKeySpec::new(&["building", "room"], "rooms", &[])
                    .named("meeting_room")
                    .on_delete(FkAction::Cascade)
                    .on_update(FkAction::Cascade),
            ),
    )
    .unwrap();
    let a1 = tx
        .insert("rooms", &[("building", text("A")), ("number", int(1))])
        .unwrap();
    tx.insert("rooms", &[("building", text("A")), ("number", int(2))])
        .unwrap();
    expect_err(
        tx.insert("rooms", &[("building", text("A")), ("number", int(1))]),
        SqlState::UniqueViolation,
        &["rooms.building", "rooms.number"],
    );
    tx.insert("meetings", &[("building", text("A")), ("room", int(1))])
        .unwrap();
    tx.insert("meetings", &[("building", text("A")), ("room", int(2))])
        .unwrap();
    expect_err(
        tx.insert("meetings", &[("building", text("B")), ("room", int(1))]),
        SqlState::ForeignKeyViolation,
        &["meeting_room", "meetings.building", "meetings.room"],
    );
    // MATCH SIMPLE: a NULL in any key field means no reference at all.
    tx.insert(
        "meetings",
        &[("building", text("Z")), ("room", Value::Null)],
    )
    .unwrap();
    // Primary key lookup of the composite key.
    let r = tx
        .get_by_key("rooms", &[text("A"), int(1)])
        .unwrap()
        .unwrap();
    assert_eq!(r.row_id, a1.row_id);
    // Renumber room A1 -> A10: the meeting follows; delete A2: its meeting goes.
    tx.update("rooms", a1.row_id, &[("number", int(10))])
        .unwrap()
        .unwrap();
    let a2 = tx
        .get_by_key("rooms", &[text("A"), int(2)])
        .unwrap()
        .unwrap();
    tx.delete("rooms", a2.row_id).unwrap().unwrap();
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    let m: Vec<Vec<Value>> = rows(&mut tx, "meetings")
        .into_iter()
        .map(|r| r.values[1..].to_vec())
        .collect();
    assert_eq!(
        m,
        vec![vec![text("A"), int(10)], vec![text("Z"), Value::Null]]
    );
}

#[test]
fn on_update_cascade_moves_child_identity() {
    // profiles.id is both the identity and a foreign key to users (one-to-one); a cascaded key
    // change moves the profile row, and the profile's own children follow it.
    let db = db();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(&EntitySpec::new("users").id("id"))
        .unwrap();
    tx.create_entity(
        &EntitySpec::new("profiles")
            .id("id")
            .field(FieldDef::new("bio", DataType::Text))
            .foreign_key(
                ForeignKeySpec::new(&["id"], "users", &[])
                    .on_update(FkAction::Cascade)
                    .on_delete(FkAction::Cascade),
            ),
    )
    .unwrap();
    tx.create_entity(
        &EntitySpec::new("links")
            .id("id")
            .field(FieldDef::new("profile_id", DataType::Integer))
            .foreign_key(
                ForeignKeySpec::new(&["profile_id"], "profiles", &[])
                    .on_update(FkAction::Cascade)
                    .on_delete(FkAction::Cascade),
            ),
    )
    .unwrap();
    for u in [1, 2] {
        tx.insert("users", &[("id", int(u))]).unwrap();
        tx.insert(
            "profiles",
            &[("id", int(u)), ("bio", text(&format!("bio{u}")))],
        )
        .unwrap();
        tx.insert("links", &[("id", int(u)), ("profile_id", int(u))])
            .unwrap();
    }
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    tx.update("users", 1, &[("id", int(100))]).unwrap().unwrap();
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    assert_eq!(ids(&mut tx, "profiles"), vec![2, 100]);
    assert_eq!(field(&mut tx, "profiles", 100, 1), text("bio1"));
    let l: Vec<(i64, Value)> = rows(&mut tx, "links")
        .into_iter()
        .map(|r| (r.row_id, r.values[1].clone()))
        .collect();
    assert_eq!(l, vec![(1, int(100)), (2, int(2))]);
    // And a delete cascades along the same path.
    let d = tx.delete("users", 100).unwrap().unwrap();
    assert_eq!(d.cascaded, 2);
    assert_eq!(ids(&mut tx, "profiles"), vec![2]);
    assert_eq!(ids(&mut tx, "links"), vec![2]);
}

#[test]
fn changing_the_identity_of_a_row_with_unique_fields() {
    // The row must not conflict with itself under its old id.
    let db = db();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("users")
            .id("id")
            .field(FieldDef::new("email", DataType::Text))
            .field(FieldDef::new("org", DataType::Integer))
            .field(FieldDef::new("handle", DataType::Text))
            .unique(&["email"])
            .unique(&["org", "handle"]),
    )
    .unwrap();
    tx.insert(
        "users",
        &[
            ("id", int(1)),
            ("email", text("a@x")),
            ("org", int(1)),
            ("handle", text("a")),
        ],
    )
    .unwrap();
    tx.insert("users", &[("id", int(2)), ("email", text("b@x"))])
        .unwrap();
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    let w = tx.update("users", 1, &[("id", int(10))]).unwrap().unwrap();
    assert_eq!(w.row_id, 10);
    // Move and change a unique field at once; and into another row's value: still refused.
    tx.update("users", 10, &[("id", int(11)), ("email", text("c@x"))])
        .unwrap()
        .unwrap();
    expect_err(
        tx.update("users", 11, &[("id", int(12)), ("email", text("b@x"))]),
        SqlState::UniqueViolation,
        &["users.email"],
    );
    assert!(tx.get("users", 11).unwrap().is_some());
    assert!(tx.get("users", 12).unwrap().is_none());
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    assert_eq!(ids(&mut tx, "users"), vec![2, 11]);
    let r = tx.get("users", 11).unwrap().unwrap();
    assert_eq!(r.values[1..], [text("c@x"), int(1), text("a")]);
    let hit = tx
        .find_by_index("users", "sqlite_autoindex_users_2", &[int(1), text("a")])
        .unwrap();
    assert_eq!(hit.len(), 1);
    assert_eq!(hit[0].row_id, 11);
    // The old values are free again.
    tx.insert("users", &[("email", text("a@x"))]).unwrap();
}

#[test]
fn a_row_may_reference_itself_also_under_a_new_id() {
    let db = db();
    let conn = db.connect();
    let mut tx = conn.begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("nodes")
            .id("id")
            .field(FieldDef::new("parent_id", DataType::Integer))
            .foreign_key(ForeignKeySpec::new(&["parent_id"], "nodes", &[]).named("node_parent")),
    )
    .unwrap();
    tx.insert("nodes", &[("id", int(9)), ("parent_id", int(9))])
        .unwrap();
    tx.update("nodes", 9, &[("id", int(90)), ("parent_id", int(90))])
        .unwrap()
        .unwrap();
    // Moving without updating the self-reference leaves it dangling: refused (NO ACTION).
    expect_err(
        tx.update("nodes", 90, &[("id", int(91))]),
        SqlState::ForeignKeyViolation,
        &["node_parent"],
    );
    tx.commit().unwrap();
    let mut tx = conn.begin().unwrap();
    assert_eq!(field(&mut tx, "nodes", 90, 1), int(90));
    assert_eq!(ids(&mut tx, "nodes"), vec![90]);
}
