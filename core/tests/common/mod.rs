//! Helpers shared by the integration test files (each file compiles this module on its own and
//! uses a different subset, hence the dead-code allowance).
#![allow(dead_code)]

use std::fmt::Debug;

use ormdb::{
    Connection, DataType, EntitySpec, Error, FieldDef, ForeignKeySpec, Row, SqlState, Transaction,
    Value,
};

/// Asserts that `r` failed with `state` and a message containing every needle.
pub fn expect_err<T: Debug>(r: ormdb::Result<T>, state: SqlState, needles: &[&str]) -> Error {
    let err = match r {
        Ok(v) => panic!("expected error {state:?}, got Ok({v:?})"),
        Err(e) => e,
    };
    assert_eq!(err.state, state, "unexpected error: {err}");
    assert_eq!(err.code(), state.code());
    for n in needles {
        assert!(
            err.message.contains(n),
            "error message {:?} should mention {n:?}",
            err.message
        );
    }
    err
}

pub fn int(i: i64) -> Value {
    Value::Integer(i)
}

pub fn text(s: &str) -> Value {
    Value::from(s)
}

/// Every (non-deleted) row of an entity, in row id order.
pub fn rows(tx: &mut Transaction, entity: &str) -> Vec<Row> {
    tx.scan(entity)
        .expect("scan")
        .collect::<ormdb::Result<Vec<_>>>()
        .expect("scan rows")
}

pub fn ids(tx: &mut Transaction, entity: &str) -> Vec<i64> {
    rows(tx, entity).into_iter().map(|r| r.row_id).collect()
}

/// The blog schema the graph fetch tests share: users -> posts -> comments (comments.author_id
/// -> users, nullable), posts <-> tags through the join entity post_tags. Relations: users.posts,
/// posts.user, posts.comments, comments.post, comments.author, users.comments, posts.tags,
/// tags.posts.
pub fn blog_schema(conn: &Connection) {
    let mut tx = conn.begin().unwrap();
    tx.create_entity(
        &EntitySpec::new("users")
            .id("id")
            .field(FieldDef::new("name", DataType::Text).not_null())
            .field(FieldDef::new("email", DataType::Text))
            .field(FieldDef::new("age", DataType::Integer))
            .field(FieldDef::new("balance", DataType::Integer))
            .unique(&["email"]),
    )
    .unwrap();
    tx.create_entity(
        &EntitySpec::new("posts")
            .id("id")
            .field(FieldDef::new("user_id", DataType::Integer).not_null())
            .field(FieldDef::new("title", DataType::Text))
            .field(FieldDef::new("score", DataType::Integer))
            .foreign_key(ForeignKeySpec::new(&["user_id"], "users", &["id"])),
    )
    .unwrap();
    tx.create_entity(
        &EntitySpec::new("comments")
            .id("id")
            .field(FieldDef::new("post_id", DataType::Integer).not_null())
            .field(FieldDef::new("author_id", DataType::Integer))
            .field(FieldDef::new("body", DataType::Text))
            .foreign_key(ForeignKeySpec::new(&["post_id"], "posts", &["id"]))
            .foreign_key(ForeignKeySpec::new(&["author_id"], "users", &["id"])),
    )
    .unwrap();
    tx.create_entity(
        &EntitySpec::new("tags")
            .id("id")
            .field(FieldDef::new("name", DataType::Text).not_null()),
    )
    .unwrap();
    tx.create_entity(
        &EntitySpec::new("post_tags")
            .field(FieldDef::new("post_id", DataType::Integer).not_null())
            .field(FieldDef::new("tag_id", DataType::Integer).not_null())
            .primary_key(&["post_id", "tag_id"])
            .foreign_key(ForeignKeySpec::new(&["post_id"], "posts", &["id"]))
            .foreign_key(ForeignKeySpec::new(&["tag_id"], "tags", &["id"])),
    )
    .unwrap();
    tx.commit().unwrap();
}

/// A value as rusqlite binds it (tests that use SQLite as the reference).
pub fn to_sql(v: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as SqlValue;
    match v {
        Value::Null => SqlValue::Null,
        Value::Integer(i) => SqlValue::Integer(*i),
        Value::Real(r) => SqlValue::Real(*r),
        Value::Text(s) => SqlValue::Text(s.clone()),
        Value::Blob(b) => SqlValue::Blob(b.clone()),
    }
}

/// A value rusqlite returned, as ORMDB's.
pub fn from_sql(v: rusqlite::types::Value) -> Value {
    use rusqlite::types::Value as SqlValue;
    match v {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => Value::Integer(i),
        SqlValue::Real(r) => Value::Real(r),
        SqlValue::Text(s) => Value::Text(s),
        SqlValue::Blob(b) => Value::Blob(b),
    }
}
