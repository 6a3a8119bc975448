//! Feature scripts for `sqlite_sequence`, row values, outer joins with USING / NATURAL and
//! named windows, each statement checked against SQLite (see sql_features.rs and
//! sql_features2.rs for the older areas).

mod sqldiff;

use ormdb::{Database, Options, Params, SqlState, Value};
use sqldiff::run_clean as run;

#[test]
fn sqlite_sequence_reads_and_writes() {
    let mut d = sqldiff::Diff::new();
    let script = r#"
CREATE TABLE a (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);
CREATE TABLE b (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);
CREATE TABLE plain (id INTEGER PRIMARY KEY, v TEXT);
SELECT name, seq FROM sqlite_sequence ORDER BY name;
INSERT INTO a (v) VALUES ('x'), ('y'), ('z');
INSERT INTO plain (v) VALUES ('p');
SELECT name, seq FROM sqlite_sequence ORDER BY name;
SELECT * FROM sqlite_sequence;
SELECT seq FROM main.sqlite_sequence WHERE name = 'a';
SELECT s.seq + 1 FROM sqlite_sequence AS s WHERE s.name = 'a';
INSERT INTO b (id, v) VALUES (40, 'explicit');
SELECT name, seq FROM sqlite_sequence ORDER BY name;
DELETE FROM a WHERE id = 3;
INSERT INTO a (v) VALUES ('after delete');
SELECT id, v FROM a ORDER BY id;
DELETE FROM a;
UPDATE sqlite_sequence SET seq = 0 WHERE name = 'a';
SELECT name, seq FROM sqlite_sequence ORDER BY name;
INSERT INTO a (v) VALUES ('restart'), ('again');
SELECT id, v FROM a ORDER BY id;
SELECT name, seq FROM sqlite_sequence ORDER BY name;
UPDATE sqlite_sequence SET seq = 100 WHERE name = 'a';
INSERT INTO a (v) VALUES ('jump');
SELECT id, v FROM a ORDER BY id;
UPDATE sqlite_sequence SET seq = 0 WHERE name = 'a';
INSERT INTO a (v) VALUES ('live rows win');
SELECT id, v FROM a ORDER BY id;
UPDATE "sqlite_sequence" SET "seq" = 0 WHERE "name" IN ('a', 'b', 'nope');
SELECT name, seq FROM sqlite_sequence ORDER BY name;
DELETE FROM sqlite_sequence WHERE name = 'b';
SELECT name, seq FROM sqlite_sequence ORDER BY name;
INSERT INTO b (v) VALUES ('max rowid + 1');
SELECT id, v FROM b ORDER BY id;
SELECT name, seq FROM sqlite_sequence ORDER BY name;
DELETE FROM b;
DELETE FROM sqlite_sequence;
SELECT count(*) FROM sqlite_sequence;
-- split
INSERT INTO sqlite_sequence (name, seq) VALUES ('b', 7);
-- split
INSERT INTO b (v) VALUES ('from inserted seq');
SELECT id, v FROM b ORDER BY id;
-- split
INSERT INTO sqlite_sequence VALUES ('a', 500);
-- split
INSERT INTO a (v) VALUES ('five hundred and one');
SELECT id, v FROM a ORDER BY id;
SELECT name, seq FROM sqlite_sequence ORDER BY name;
SELECT t.name, s.seq FROM sqlite_master t LEFT JOIN sqlite_sequence s ON s.name = t.name WHERE t.type = 'table' ORDER BY t.name;
UPDATE sqlite_sequence SET seq = seq + 10 WHERE seq > 100;
SELECT name, seq FROM sqlite_sequence ORDER BY name;
UPDATE sqlite_sequence SET seq = 0 WHERE name IN (SELECT name FROM sqlite_master WHERE name = 'b');
SELECT name, seq FROM sqlite_sequence ORDER BY name;
"#;
    // An INSERT into sqlite_sequence sets SQLite's last insert row id to the rowid of its
    // sqlite_sequence row, which ORMDB does not keep: those statements run on both engines
    // with their row counts compared, the rest of the script statement by statement.
    for (i, part) in script.split("-- split\n").enumerate() {
        if i % 2 == 0 {
            d.script(part);
            continue;
        }
        let sql = part.trim().trim_end_matches(';');
        let lite = d.run_lite(sql, &[]);
        let ours = d.run_ormdb(sql, &[]);
        match (lite, ours) {
            (sqldiff::Res::Rows { changes: a, .. }, sqldiff::Res::Rows { changes: b, .. }) => {
                assert_eq!(a, b, "{sql}")
            }
            (a, b) => panic!("{sql}: sqlite {a:?}, ormdb {b:?}"),
        }
    }
    d.assert_clean();
}

#[test]
fn sqlite_sequence_writes_are_transactional() {
    run(r#"
CREATE TABLE a (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);
INSERT INTO a (v) VALUES ('1'), ('2'), ('3');
BEGIN;
DELETE FROM a;
UPDATE sqlite_sequence SET seq = 0 WHERE name = 'a';
SELECT name, seq FROM sqlite_sequence;
ROLLBACK;
SELECT name, seq FROM sqlite_sequence;
INSERT INTO a (v) VALUES ('4');
SELECT id, v FROM a ORDER BY id;
BEGIN;
SAVEPOINT s1;
UPDATE sqlite_sequence SET seq = 50;
SELECT seq FROM sqlite_sequence;
ROLLBACK TO s1;
SELECT seq FROM sqlite_sequence;
DELETE FROM sqlite_sequence;
SELECT count(*) FROM sqlite_sequence;
COMMIT;
SELECT count(*) FROM sqlite_sequence;
INSERT INTO a (v) VALUES ('5');
SELECT id, v FROM a ORDER BY id;
SELECT name, seq FROM sqlite_sequence;
BEGIN;
DELETE FROM a;
UPDATE sqlite_sequence SET seq = 0;
COMMIT;
INSERT INTO a (v) VALUES ('fresh');
SELECT id, v FROM a ORDER BY id;
SELECT name, seq FROM sqlite_sequence;
"#);
}

/// Django's `flush` with sequence reset: delete every row, then reset the counters.
#[test]
fn sqlite_sequence_django_flush_pattern() {
    run(r#"
CREATE TABLE "app_author" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "name" varchar(50) NOT NULL);
CREATE TABLE "app_book" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "author_id" bigint NOT NULL REFERENCES "app_author" ("id") DEFERRABLE INITIALLY DEFERRED, "title" varchar(50) NOT NULL);
INSERT INTO app_author (name) VALUES ('x'), ('y');
INSERT INTO app_book (author_id, title) VALUES (1, 't1'), (2, 't2'), (2, 't3');
BEGIN;
DELETE FROM "app_book";
DELETE FROM "app_author";
UPDATE "sqlite_sequence" SET "seq" = 0 WHERE "name" IN ('app_book', 'app_author');
COMMIT;
INSERT INTO app_author (name) VALUES ('z');
INSERT INTO app_book (author_id, title) VALUES (1, 'again');
SELECT id, name FROM app_author;
SELECT id, author_id, title FROM app_book;
SELECT name, seq FROM sqlite_sequence ORDER BY name;
"#);
}

#[test]
fn sqlite_sequence_errors() {
    let db = Database::temporary().expect("db");
    let mut s = db.connect().sql();
    s.execute_batch(
        "CREATE TABLE a (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);
         CREATE TABLE plain (id INTEGER PRIMARY KEY, v TEXT);
         INSERT INTO a (v) VALUES ('x');",
    )
    .expect("setup");
    for (sql, state) in [
        // ORMDB keeps one integer mark per AUTOINCREMENT table.
        (
            "INSERT INTO sqlite_sequence VALUES ('plain', 3)",
            SqlState::FeatureNotSupported,
        ),
        (
            "INSERT INTO sqlite_sequence VALUES ('a', 3)",
            SqlState::FeatureNotSupported,
        ),
        (
            "UPDATE sqlite_sequence SET seq = 'text'",
            SqlState::FeatureNotSupported,
        ),
        (
            "UPDATE sqlite_sequence SET name = 'b'",
            SqlState::FeatureNotSupported,
        ),
        (
            "UPDATE sqlite_sequence SET nope = 1",
            SqlState::UndefinedColumn,
        ),
        (
            "DELETE FROM sqlite_sequence RETURNING *",
            SqlState::FeatureNotSupported,
        ),
        ("DROP TABLE sqlite_sequence", SqlState::FeatureNotSupported),
        (
            "CREATE INDEX ix ON sqlite_sequence (name)",
            SqlState::FeatureNotSupported,
        ),
    ] {
        match s.execute(sql, &Params::None) {
            Ok(r) => panic!("{sql}: expected {state:?}, got {r:?}"),
            Err(e) => assert_eq!(e.state, state, "{sql}: {e}"),
        }
    }
    // Nothing above changed the mark.
    let r = s
        .execute("SELECT name, seq FROM sqlite_sequence", &Params::None)
        .expect("read");
    assert_eq!(r.rows, vec![vec![Value::from("a"), Value::Integer(1)]]);
}

fn one_id(s: &mut ormdb::Session, sql: &str) -> i64 {
    let r = s.execute(sql, &Params::None).expect(sql);
    r.last_insert_rowid
}

/// A reset never hands out an id another open transaction already holds, whatever the order in
/// which the transactions finish.
#[test]
fn sqlite_sequence_reset_is_safe_against_concurrent_inserters() {
    let db = Database::temporary().expect("db");
    let mut a = db.connect().sql();
    let mut b = db.connect().sql();
    a.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);
         INSERT INTO t (v) VALUES ('1'), ('2'), ('3');",
    )
    .expect("setup");
    // b holds id 4 in an open transaction while a empties the table and resets the counter.
    b.execute_batch("BEGIN").expect("begin");
    assert_eq!(one_id(&mut b, "INSERT INTO t (v) VALUES ('held')"), 4);
    a.execute_batch("DELETE FROM t; UPDATE sqlite_sequence SET seq = 0 WHERE name = 't';")
        .expect("reset");
    // The allocator may not go below b's id: the next one is above it.
    let next = one_id(&mut a, "INSERT INTO t (v) VALUES ('after reset')");
    assert!(next > 4, "got {next}");
    b.execute_batch("COMMIT").expect("commit");
    let ids = a
        .execute("SELECT id FROM t ORDER BY id", &Params::None)
        .expect("read")
        .rows;
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_ne!(ids[0], ids[1]);

    // With nobody else inserting, the reset restarts ids at 1.
    a.execute_batch("DELETE FROM t; UPDATE sqlite_sequence SET seq = 0 WHERE name = 't';")
        .expect("reset");
    assert_eq!(one_id(&mut a, "INSERT INTO t (v) VALUES ('one')"), 1);

    // A reset whose transaction read the table conflicts with an insert committed meanwhile.
    a.execute_batch("BEGIN; DELETE FROM t;").expect("begin");
    let id = one_id(&mut b, "INSERT INTO t (v) VALUES ('concurrent')");
    a.execute("UPDATE sqlite_sequence SET seq = 0", &Params::None)
        .expect("update");
    let err = a.execute_batch("COMMIT").expect_err("conflict");
    assert_eq!(err.state, SqlState::SerializationFailure, "{err}");
    let next = one_id(&mut b, "INSERT INTO t (v) VALUES ('next')");
    assert!(next > id);
}

/// An id handed out again after a reset may land on a deleted row's tombstone; a transaction
/// whose snapshot predates the reset still sees that row live and must fail retryably rather
/// than overwrite it.
#[test]
fn sqlite_sequence_reused_id_seen_live_by_an_old_snapshot_conflicts() {
    let db = Database::temporary().expect("db");
    let mut a = db.connect().sql();
    let mut b = db.connect().sql();
    a.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);
         INSERT INTO t (v) VALUES ('1');",
    )
    .expect("setup");
    b.execute_batch("BEGIN").expect("begin");
    b.execute("SELECT count(*) FROM t", &Params::None)
        .expect("snapshot");
    a.execute_batch("DELETE FROM t; UPDATE sqlite_sequence SET seq = 0;")
        .expect("reset");
    let err = b
        .execute("INSERT INTO t (v) VALUES ('x')", &Params::None)
        .and_then(|_| b.execute_batch("COMMIT"))
        .expect_err("conflict");
    assert_eq!(err.state, SqlState::SerializationFailure, "{err}");
    let _ = b.execute_batch("ROLLBACK");
    assert_eq!(one_id(&mut a, "INSERT INTO t (v) VALUES ('y')") > 0, true);
    let rows = a
        .execute("SELECT count(*) FROM t", &Params::None)
        .expect("count")
        .rows;
    assert_eq!(rows, vec![vec![Value::Integer(1)]]);
}

#[test]
fn sqlite_sequence_survives_reopen() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("db");
    {
        let db = Database::open(&path, Options::default()).expect("open");
        let mut s = db.connect().sql();
        s.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);
             INSERT INTO t (v) VALUES ('1'), ('2');
             UPDATE sqlite_sequence SET seq = 40;",
        )
        .expect("setup");
    }
    let db = Database::open(&path, Options::default()).expect("reopen");
    let mut s = db.connect().sql();
    let r = s
        .execute("SELECT name, seq FROM sqlite_sequence", &Params::None)
        .expect("read");
    assert_eq!(r.rows, vec![vec![Value::from("t"), Value::Integer(40)]]);
    assert_eq!(one_id(&mut s, "INSERT INTO t (v) VALUES ('3')"), 41);
}

#[test]
fn row_values() {
    let mut d = sqldiff::Diff::new();
    d.script(r#"
CREATE TABLE t (id INTEGER PRIMARY KEY, a INT, b TEXT, c REAL);
INSERT INTO t (a, b, c) VALUES (1, 'x', 1.5), (1, 'y', 2.0), (2, 'x', NULL), (2, NULL, 3.0), (NULL, 'z', 4.0), (3, '10', 10.0);
CREATE TABLE k (p INT, q TEXT);
INSERT INTO k VALUES (1, 'x'), (2, NULL), (3, 10), (NULL, 'z');
SELECT id FROM t WHERE (a, b) = (1, 'y');
SELECT id FROM t WHERE (a, b) <> (1, 'y') ORDER BY id;
SELECT id, (a, b) = (2, 'x'), (a, b) != (2, 'x') FROM t ORDER BY id;
SELECT id, (a, b) < (2, 'x'), (a, b) <= (2, 'x'), (a, b) > (1, 'x'), (a, b) >= (1, 'y') FROM t ORDER BY id;
SELECT id, (a, b, c) < (2, 'x', 0) FROM t ORDER BY id;
SELECT id, (a, b) IS (2, NULL), (a, b) IS NOT (2, NULL) FROM t ORDER BY id;
SELECT id FROM t WHERE ((a, b)) = ((1, 'x'));
SELECT id, (a, b) IN ((1, 'x'), (2, 'x')), (a, b) NOT IN ((1, 'x'), (2, 'x')) FROM t ORDER BY id;
SELECT id, (a, b) IN (VALUES (1, 'x'), (2, 'x')) FROM t ORDER BY id;
SELECT id, (a, b) NOT IN (VALUES (1, 'x'), (2, NULL)) FROM t ORDER BY id;
SELECT id, (a, b) IN (SELECT p, q FROM k) FROM t ORDER BY id;
SELECT id, (a, b) NOT IN (SELECT p, q FROM k) FROM t ORDER BY id;
SELECT id FROM t WHERE (a, b) IN (SELECT p, q FROM k WHERE p > 1) ORDER BY id;
SELECT id, (a, b) IN (SELECT p, q FROM k WHERE 0) FROM t ORDER BY id;
SELECT id FROM t WHERE (b, a) IN (SELECT q, p FROM k) ORDER BY id;
SELECT id FROM t t1 WHERE (a, c) IN (SELECT a, max(c) FROM t t2 GROUP BY a) ORDER BY id;
SELECT id FROM t WHERE (a, b) > (1, 'x') AND (a, b) < (3, '') ORDER BY a, b;
UPDATE t SET c = 0 WHERE (a, b) IN (VALUES (1, 'y'), (3, '10'));
SELECT id, c FROM t ORDER BY id;
DELETE FROM t WHERE (a, b) = (2, 'x');
SELECT count(*) FROM t;
SELECT (1, 2) = (1, 2, 3);
SELECT (1, 2);
SELECT (1, 2) IN (SELECT 1);
SELECT (1, 2) + 1;
"#);
    for params in [
        vec![Value::Integer(1), Value::from("y")],
        vec![Value::from("2"), Value::from("x")],
        vec![Value::Null, Value::from("z")],
    ] {
        d.check(
            "SELECT id FROM t WHERE (a, b) = (?, ?) ORDER BY id",
            &params,
        );
        d.check(
            "SELECT id FROM t WHERE (a, b) >= (?, ?) ORDER BY id",
            &params,
        );
        d.check(
            "SELECT id FROM t WHERE (a, b) IN (VALUES (?, ?), (3, '10')) ORDER BY id",
            &params,
        );
    }
    d.assert_clean();
}

#[test]
fn right_and_full_joins_with_using_and_natural() {
    run(r#"
CREATE TABLE a (id INT, x TEXT, k TEXT);
CREATE TABLE b (id INT, y TEXT, k TEXT);
CREATE TABLE c (id INT, z TEXT);
INSERT INTO a VALUES (1, 'a1', 'p'), (2, 'a2', 'q'), (NULL, 'an', 'r');
INSERT INTO b VALUES (2, 'b2', 'q'), (3, 'b3', 's'), (NULL, 'bn', 'r');
INSERT INTO c VALUES (3, 'c3'), (4, 'c4');
SELECT * FROM a RIGHT JOIN b USING (id) ORDER BY y;
SELECT * FROM a FULL JOIN b USING (id) ORDER BY x, y;
SELECT id, a.id, b.id FROM a FULL OUTER JOIN b USING (id) ORDER BY x, y;
SELECT * FROM a NATURAL FULL JOIN b ORDER BY x, y;
SELECT * FROM a NATURAL RIGHT JOIN b ORDER BY y;
SELECT id, k FROM a FULL JOIN b USING (id, k) ORDER BY id, k;
SELECT id FROM a FULL JOIN b USING (id) WHERE id > 1 ORDER BY id;
SELECT id, count(*) FROM a FULL JOIN b USING (id) GROUP BY id ORDER BY id DESC;
SELECT a.x, b.y, c.z FROM a FULL JOIN b USING (id) LEFT JOIN c ON c.id = b.id ORDER BY 1, 2, 3;
SELECT id, x, z FROM a RIGHT JOIN c USING (id) ORDER BY id;
SELECT (SELECT count(*) FROM c WHERE c.id = id) FROM a FULL JOIN b USING (id) ORDER BY x, y;
SELECT t.id FROM (SELECT * FROM a FULL JOIN b USING (id)) t ORDER BY 1;
"#);
}

/// A second join on a column a RIGHT / FULL JOIN USING already shares would have to compare
/// with coalesce(left, right): refused rather than compared with the left column.
#[test]
fn chained_using_after_full_join_is_refused() {
    let db = Database::temporary().expect("db");
    let mut s = db.connect().sql();
    s.execute_batch("CREATE TABLE a (id INT); CREATE TABLE b (id INT); CREATE TABLE c (id INT);")
        .expect("setup");
    for sql in [
        "SELECT * FROM a FULL JOIN b USING (id) FULL JOIN c USING (id)",
        "SELECT * FROM a FULL JOIN b USING (id) JOIN c USING (id)",
        "SELECT * FROM a JOIN b USING (id) RIGHT JOIN c USING (id)",
    ] {
        let err = s.execute(sql, &Params::None).expect_err(sql);
        assert_eq!(err.state, SqlState::FeatureNotSupported, "{sql}: {err}");
    }
}
