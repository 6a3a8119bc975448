//! Generated columns (`GENERATED ALWAYS AS (expr) [STORED|VIRTUAL]`, `c AS (expr)`), each
//! statement checked against SQLite: values on every write path, affinity, constraints and
//! indexes on them, the writes and definitions SQLite refuses, catalog emulation, ALTER TABLE
//! and reopening the database.

mod sqldiff;

use ormdb::{Database, Durability, Options, Params, SqlState, Value};
use sqldiff::{run_clean as run, Diff};

const SCHEMA: &str = r#"
CREATE TABLE item (id INTEGER PRIMARY KEY, price REAL NOT NULL, qty INTEGER NOT NULL DEFAULT 1, name TEXT, total REAL GENERATED ALWAYS AS (price * qty) STORED, label AS (upper(name) || '#' || id), big INT AS (total > 100) VIRTUAL, twice AS (total * 2));
INSERT INTO item (price, qty, name) VALUES (10, 2, 'pen'), (55.5, 3, 'ink'), (1, 1, NULL);
INSERT INTO item VALUES (10, 7.5, 1, 'cup');
"#;

#[test]
fn values_are_computed_on_insert_and_update() {
    run(&format!(
        "{SCHEMA}{}",
        r#"
SELECT * FROM item ORDER BY id;
SELECT id, typeof(total), typeof(label), typeof(big), typeof(twice) FROM item ORDER BY id;
UPDATE item SET qty = qty + 1 WHERE id = 2;
SELECT * FROM item ORDER BY id;
UPDATE item SET name = 'mug', price = 200 WHERE id = 10 RETURNING *;
UPDATE item SET id = id + 100 WHERE id = 3 RETURNING id, label;
INSERT INTO item (price, name) VALUES (3, 'x') RETURNING *;
INSERT INTO item (price, name) VALUES (4, 'y') RETURNING total, label, big;
SELECT * FROM item WHERE big = 1 ORDER BY id;
SELECT label FROM item WHERE total BETWEEN 5 AND 30 ORDER BY twice DESC;
SELECT sum(total), max(twice), count(label) FROM item;
SELECT item.*, label FROM item ORDER BY 1;
DELETE FROM item WHERE total < 5 RETURNING *;
SELECT * FROM item ORDER BY id;
"#
    ));
}

#[test]
fn every_write_path_computes_them() {
    run(&format!(
        "{SCHEMA}{}",
        r#"
CREATE TABLE src (p REAL, q INTEGER, n TEXT);
INSERT INTO src VALUES (2, 3, 'a'), (5, 5, 'b');
INSERT INTO item (price, qty, name) SELECT p, q, n FROM src;
INSERT INTO item SELECT 50, p, q, n FROM src WHERE n = 'a';
SELECT * FROM item ORDER BY id;
CREATE TABLE u (id INTEGER PRIMARY KEY, k TEXT UNIQUE, v INT, w AS (v * 10) STORED, x AS (k || v));
INSERT INTO u (k, v) VALUES ('a', 1), ('b', 2);
INSERT INTO u (k, v) VALUES ('a', 5) ON CONFLICT (k) DO UPDATE SET v = excluded.v + 1 RETURNING *;
INSERT INTO u (k, v) VALUES ('b', 9) ON CONFLICT (k) DO UPDATE SET v = v + excluded.v WHERE excluded.v > 100;
INSERT INTO u (k, v) VALUES ('c', 3) ON CONFLICT DO NOTHING;
INSERT OR REPLACE INTO u (k, v) VALUES ('a', 7) RETURNING *;
REPLACE INTO u (id, k, v) VALUES (2, 'b', 8);
INSERT OR IGNORE INTO u (k, v) VALUES ('b', 100);
SELECT * FROM u ORDER BY id;
UPDATE u SET v = src.q FROM src WHERE src.n = u.k;
UPDATE u SET v = s.q * 2 FROM src AS s WHERE s.n = 'b' AND u.k = 'c' RETURNING *;
SELECT * FROM u ORDER BY id;
INSERT INTO u DEFAULT VALUES;
SELECT * FROM u ORDER BY id;
"#
    ));
}

#[test]
fn foreign_key_actions_recompute_them() {
    run(r#"
CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT);
CREATE TABLE child (id INTEGER PRIMARY KEY, pid INTEGER DEFAULT 0 REFERENCES parent(id) ON DELETE SET NULL ON UPDATE CASCADE, has_parent AS (pid IS NOT NULL), tag AS (coalesce(pid, -1) * 10) STORED);
CREATE TABLE child2 (id INTEGER PRIMARY KEY, pid INTEGER DEFAULT 1 REFERENCES parent(id) ON DELETE SET DEFAULT, g AS (pid + 100));
INSERT INTO parent VALUES (1, 'a'), (2, 'b'), (3, 'c');
INSERT INTO child (pid) VALUES (1), (2), (2), (NULL);
INSERT INTO child2 (pid) VALUES (2), (3);
SELECT * FROM child ORDER BY id;
DELETE FROM parent WHERE id = 2;
SELECT * FROM child ORDER BY id;
SELECT * FROM child2 ORDER BY id;
UPDATE parent SET id = 10 WHERE id = 1;
SELECT * FROM child ORDER BY id;
DELETE FROM parent WHERE id = 3;
SELECT * FROM child2 ORDER BY id;
"#);
}

#[test]
fn affinity_of_the_declared_type_applies() {
    run(r#"
CREATE TABLE v (a, b INT AS (a) STORED, c TEXT AS (a), d REAL AS (a), e AS (a), f NUMERIC AS (a), g BLOB AS (a));
INSERT INTO v VALUES ('12'), ('x'), (1.0), (3), (NULL), ('4.5'), (x'41');
SELECT a, b, typeof(b), c, typeof(c), d, typeof(d), e, typeof(e), f, typeof(f), g, typeof(g) FROM v ORDER BY rowid;
CREATE TABLE w (a INTEGER, b TEXT, s AS (a || b), n AS (a + b), l AS (length(b)), cs AS (CASE WHEN a > 1 THEN 'big' ELSE 'small' END), ct AS (CAST(b AS INTEGER)));
INSERT INTO w VALUES ('7', '3'), (1, 'abc'), (NULL, 'z'), (2.0, NULL);
SELECT *, typeof(a), typeof(s), typeof(n) FROM w ORDER BY rowid;
"#);
}

#[test]
fn generated_columns_read_each_other_in_any_declared_order() {
    run(r#"
CREATE TABLE t (a INT, d AS (c + 1), b AS (a * 2), c AS (b + a) STORED, e AS (d || '/' || c));
INSERT INTO t (a) VALUES (1), (5), (NULL);
INSERT INTO t VALUES (10);
SELECT * FROM t ORDER BY a;
UPDATE t SET a = a * 3 WHERE a = 5;
SELECT * FROM t ORDER BY a;
CREATE TABLE r (id INTEGER PRIMARY KEY, g AS (id * 2) STORED, h AS (id + 1), CHECK (g > 0));
INSERT INTO r (id) VALUES (NULL);
INSERT INTO r DEFAULT VALUES;
INSERT INTO r (id) VALUES (10);
INSERT INTO r VALUES (NULL);
SELECT * FROM r ORDER BY id;
"#);
}

#[test]
fn constraints_and_indexes_on_generated_columns() {
    run(r#"
CREATE TABLE t (id INTEGER PRIMARY KEY, a INT, b TEXT, g AS (a * 2) UNIQUE, h AS (lower(b)) STORED NOT NULL, k AS (a + 1) CHECK (k < 100), CHECK (g <> 8));
INSERT INTO t (a, b) VALUES (1, 'X'), (2, 'Y');
INSERT INTO t (a, b) VALUES (1, 'dup');
INSERT INTO t (a, b) VALUES (3, NULL);
INSERT INTO t (a, b) VALUES (4, 'four');
INSERT INTO t (a, b) VALUES (200, 'big');
INSERT OR IGNORE INTO t (a, b) VALUES (1, 'ignored');
INSERT INTO t (a, b) VALUES (1, 'up') ON CONFLICT (g) DO UPDATE SET b = excluded.b;
UPDATE t SET a = 2 WHERE id = 1;
UPDATE t SET b = NULL WHERE id = 2;
SELECT * FROM t ORDER BY id;
CREATE INDEX t_h ON t (h);
CREATE INDEX t_kg ON t (k, g);
CREATE UNIQUE INDEX t_hk ON t (h, k);
INSERT INTO t (a, b) VALUES (5, 'p'), (6, 'q'), (7, 'p');
SELECT id FROM t WHERE h = 'p' ORDER BY id;
SELECT id, g FROM t WHERE g > 4 ORDER BY g DESC;
SELECT id FROM t WHERE k = 6 AND g = 10;
SELECT h, count(*) FROM t GROUP BY h ORDER BY h;
INSERT INTO t (a, b) VALUES (5, 'P');
UPDATE t SET b = 'q' WHERE id = 4;
SELECT * FROM t ORDER BY id;
CREATE INDEX t_expr ON t (g + k);
CREATE INDEX t_part ON t (a) WHERE g > 10;
SELECT id FROM t WHERE g > 10 ORDER BY a;
DROP INDEX t_h;
SELECT * FROM t WHERE h = 'x';
"#);
}

#[test]
fn writes_naming_a_generated_column_are_refused() {
    run(&format!(
        "{SCHEMA}{}",
        r#"
INSERT INTO item (price, total) VALUES (1, 2);
INSERT INTO item (label) VALUES ('x');
INSERT INTO item VALUES (20, 1, 1, 'a', 5);
INSERT INTO item VALUES (20, 1);
INSERT INTO item SELECT * FROM item;
UPDATE item SET total = 1;
UPDATE item SET price = 1, twice = 2 WHERE id = 1;
UPDATE item SET big = 0 WHERE 0;
INSERT INTO item (id, price) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET label = 'x';
SELECT * FROM item ORDER BY id;
"#
    ));
}

#[test]
fn definitions_sqlite_refuses() {
    run(r#"
CREATE TABLE e1 (a, b AS (a) DEFAULT 3);
CREATE TABLE e2 (a, b DEFAULT 3 AS (a));
CREATE TABLE e3 (a, b AS (random()));
CREATE TABLE e4 (a, b AS (randomblob(4)));
CREATE TABLE e5 (a, b AS (changes()));
CREATE TABLE e6 (a, b AS (last_insert_rowid()));
CREATE TABLE e7 (a, b AS ((SELECT 1)));
CREATE TABLE e8 (a, b AS (a IN (SELECT 1)));
CREATE TABLE e9 (a, b AS (EXISTS (SELECT 1)));
CREATE TABLE e10 (a, b AS (sum(a)));
CREATE TABLE e11 (a, b AS (count(*)));
CREATE TABLE e12 (a, b AS (count(*) OVER ()));
CREATE TABLE e13 (a, b AS (?));
CREATE TABLE e14 (a, b AS (e14.a));
CREATE TABLE e15 (a, b AS (zzz));
CREATE TABLE e16 (a, b AS (rowid));
CREATE TABLE e17 (a AS (1));
CREATE TABLE e18 (a, b AS (a) PRIMARY KEY);
CREATE TABLE e19 (a INTEGER PRIMARY KEY AS (1), b);
CREATE TABLE e20 (a, b AS (a), PRIMARY KEY (b));
CREATE TABLE e21 (a, b AS (a) AS (a));
CREATE TABLE ok1 (a, b AS (nullif(a, 7)), c AS (ifnull(b, 0) + coalesce(a, 1)), d AS (abs(a)));
INSERT INTO ok1 VALUES (-5), (7);
SELECT * FROM ok1 ORDER BY a;
SELECT name FROM sqlite_master ORDER BY name;
"#);
}

#[test]
fn generated_column_loops_are_refused() {
    // SQLite accepts the CREATE and fails every later statement on the table; ORMDB refuses
    // the definition (docs/COMPAT.md).
    let db =
        Database::temporary_with(Options::default().durability(Durability::Normal)).expect("db");
    let mut s = db.connect().sql();
    for sql in [
        "CREATE TABLE t (a, b AS (c), c AS (b))",
        "CREATE TABLE t (a, b AS (a + b))",
        "CREATE TABLE t (a, b AS (d), c AS (b), d AS (c + a))",
    ] {
        let e = s.execute(sql, &Params::None).expect_err(sql);
        assert_eq!(e.state, SqlState::SyntaxError, "{sql}: {e}");
        assert!(e.to_string().contains("generated column loop"), "{e}");
    }
    s.execute("CREATE TABLE t (a)", &Params::None).expect("t");
    let e = s
        .execute("ALTER TABLE t ADD COLUMN b AS (b + 1)", &Params::None)
        .expect_err("self loop");
    assert_eq!(e.state, SqlState::SyntaxError, "{e}");
}

#[test]
fn catalog_emulation_shows_them_as_sqlite() {
    run(r#"
CREATE TABLE t (a INTEGER PRIMARY KEY, g1 AS (a) NOT NULL, b TEXT DEFAULT 'x', g2 INT GENERATED ALWAYS AS (a * 2) STORED, g3 TEXT GENERATED ALWAYS AS (b || a) VIRTUAL, c);
PRAGMA table_info(t);
PRAGMA table_xinfo(t);
SELECT sql FROM sqlite_master WHERE name = 't';
CREATE INDEX t_g2 ON t (g2);
PRAGMA index_info(t_g2);
PRAGMA index_xinfo(t_g2);
PRAGMA index_list(t);
INSERT INTO t (b, c) VALUES ('q', 1);
SELECT * FROM t;
"#);
}

#[test]
fn alter_table_with_generated_columns() {
    run(r#"
CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT, c INT, g AS (b || c) STORED, h AS (a * 10));
INSERT INTO t (b, c) VALUES ('x', 1), ('y', NULL), (NULL, 3);
ALTER TABLE t ADD COLUMN s AS (a + 1) STORED;
ALTER TABLE t ADD COLUMN v AS (c * 2);
ALTER TABLE t ADD COLUMN w INT GENERATED ALWAYS AS (v + h) VIRTUAL;
ALTER TABLE t ADD COLUMN d AS (a) DEFAULT 1;
SELECT * FROM t ORDER BY a;
PRAGMA table_xinfo(t);
SELECT sql FROM sqlite_master WHERE name = 't';
INSERT INTO t (b, c) VALUES ('z', 9);
SELECT * FROM t ORDER BY a;
ALTER TABLE t RENAME COLUMN c TO cc;
SELECT sql FROM sqlite_master WHERE name = 't';
UPDATE t SET cc = 4 WHERE a = 1;
SELECT * FROM t ORDER BY a;
ALTER TABLE t DROP COLUMN cc;
ALTER TABLE t DROP COLUMN w;
ALTER TABLE t DROP COLUMN h;
SELECT * FROM t ORDER BY a;
ALTER TABLE t DROP COLUMN g;
ALTER TABLE t DROP COLUMN v;
PRAGMA table_xinfo(t);
SELECT sql FROM sqlite_master WHERE name = 't';
SELECT * FROM t ORDER BY a;
ALTER TABLE t RENAME TO t2;
INSERT INTO t2 (b, cc) VALUES ('r', 2);
SELECT * FROM t2 ORDER BY a;
CREATE TABLE n (a);
INSERT INTO n VALUES (NULL), (7);
ALTER TABLE n ADD COLUMN g AS (a) NOT NULL;
ALTER TABLE n ADD COLUMN h AS (a * 2);
CREATE INDEX n_h ON n (h);
SELECT * FROM n WHERE h = 14;
SELECT * FROM n ORDER BY rowid;
"#);
}

#[test]
fn django_style_table_rebuild_keeps_them() {
    run(r#"
CREATE TABLE "app_m" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "a" integer NOT NULL, "b" integer NOT NULL, "s" integer GENERATED ALWAYS AS (("a" + "b")) STORED);
INSERT INTO "app_m" ("a", "b") VALUES (1, 2), (3, 4);
CREATE TABLE "new__app_m" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "a" integer NOT NULL, "b" integer NOT NULL, "c" integer NOT NULL, "s" integer GENERATED ALWAYS AS (("a" * "b" + "c")) VIRTUAL);
INSERT INTO "new__app_m" ("id", "a", "b", "c") SELECT "id", "a", "b", 5 FROM "app_m";
DROP TABLE "app_m";
ALTER TABLE "new__app_m" RENAME TO "app_m";
SELECT * FROM "app_m" ORDER BY "id";
INSERT INTO "app_m" ("a", "b", "c") VALUES (2, 2, 2) RETURNING "app_m"."id", "app_m"."s";
SELECT sql FROM sqlite_master WHERE name = 'app_m';
PRAGMA table_xinfo("app_m");
"#);
}

/// A differential session over a database file, so the ORMDB side can be reopened.
fn file_diff(path: &std::path::Path) -> Diff {
    let mut d = Diff::new();
    d.db = Database::open(path, Options::default().durability(Durability::Normal)).expect("open");
    d.s = d.db.connect().sql();
    d
}

#[test]
fn generated_columns_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gen.ormdb");
    let mut d = file_diff(&path);
    d.script(
        r#"
CREATE TABLE t (id INTEGER PRIMARY KEY, a INT, b TEXT, g AS (a * 2) STORED, v TEXT AS (b || '!'), CHECK (g < 50));
CREATE INDEX t_v ON t (v);
INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y');
ALTER TABLE t ADD COLUMN w AS (g + a);
"#,
    );
    drop(std::mem::replace(&mut d.s, {
        // a throwaway session on a temporary database while the file is closed
        let tmp = Database::temporary().expect("tmp");
        tmp.connect().sql()
    }));
    let old = std::mem::replace(&mut d.db, Database::temporary().expect("tmp"));
    drop(old);
    d.db =
        Database::open(&path, Options::default().durability(Durability::Normal)).expect("reopen");
    d.s = d.db.connect().sql();
    d.script(
        r#"
SELECT * FROM t ORDER BY id;
PRAGMA table_xinfo(t);
SELECT sql FROM sqlite_master WHERE name = 't';
INSERT INTO t (a, b) VALUES (3, 'z');
INSERT INTO t (a, b) VALUES (30, 'no');
INSERT INTO t (a, g) VALUES (3, 1);
UPDATE t SET a = a + 1 RETURNING *;
SELECT id FROM t WHERE v = 'z!';
"#,
    );
    d.assert_clean();
}

#[test]
fn native_api_refuses_writing_generated_fields() {
    let db =
        Database::temporary_with(Options::default().durability(Durability::Normal)).expect("db");
    let mut s = db.connect().sql();
    s.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, a INT, g AS (a + 1))",
        &Params::None,
    )
    .expect("create");
    let conn = db.connect();
    let mut tx = conn.begin().expect("begin");
    let e = tx
        .insert("t", &[("a", Value::Integer(1)), ("g", Value::Integer(5))])
        .expect_err("generated field given");
    assert_eq!(e.state, SqlState::SyntaxError, "{e}");
    let w = tx.insert("t", &[("a", Value::Integer(1))]).expect("insert");
    let e = tx
        .update("t", w.row_id, &[("g", Value::Integer(0))])
        .expect_err("generated field updated");
    assert_eq!(e.state, SqlState::SyntaxError, "{e}");
    tx.update("t", w.row_id, &[("a", Value::Integer(41))])
        .expect("update");
    let row = tx.get("t", w.row_id).expect("get").expect("row");
    assert_eq!(row.values[2], Value::Integer(42));
    tx.commit().expect("commit");
}
