//! Helpers shared by the integration test files (each file compiles this module on its own and
//! uses a different subset, hence the dead-code allowance).
#![allow(dead_code)]

use std::fmt::Debug;

use ormdb::{Error, Row, SqlState, Transaction, Value};

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
