//! Feature scripts for views, math functions, joins and the other additions of issue 4's
//! gap list, each statement checked against SQLite (see sql_features.rs for the older areas).

mod sqldiff;

use ormdb::{Database, Options, Params, Value};
use sqldiff::run_clean as run;

const SCHEMA: &str = r#"
CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name VARCHAR(50), age INT, score REAL);
CREATE TABLE posts (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users(id), title TEXT NOT NULL, views INTEGER NOT NULL DEFAULT 0);
INSERT INTO users (email, name, age, score) VALUES ('a@x', 'Alice', 30, 1.5), ('b@x', 'Bob', NULL, 2.0), ('c@x', 'Carol', 41, NULL), ('d@x', 'dave', 25, 2.25);
INSERT INTO posts (user_id, title, views) VALUES (1, 'Hello', 10), (1, 'Draft', 0), (2, 'Bob post', 5), (3, 'Carol 1', 7), (NULL, 'Orphan', 3);
"#;

#[test]
fn views() {
    run(&format!(
        "{SCHEMA}{}",
        r#"
CREATE VIEW adults AS SELECT id, name, age FROM users WHERE age >= 26;
CREATE VIEW IF NOT EXISTS adults AS SELECT 1;
CREATE VIEW adults AS SELECT 1;
CREATE VIEW "post stats" (uid, n, total) AS SELECT user_id, count(*), sum(views) FROM posts GROUP BY user_id;
CREATE VIEW exprs AS SELECT id, age + 1, upper(name) AS shout, name, name FROM users;
CREATE VIEW nested AS SELECT a.name, s.total FROM adults a JOIN "post stats" s ON s.uid = a.id;
SELECT * FROM adults ORDER BY id;
SELECT name FROM adults WHERE age > 35;
SELECT * FROM "post stats" ORDER BY uid;
SELECT * FROM exprs ORDER BY id;
SELECT * FROM nested ORDER BY name;
SELECT u.email, a.age FROM users u LEFT JOIN adults a ON a.id = u.id ORDER BY u.id;
SELECT count(*), max(total) FROM "post stats";
SELECT name FROM users WHERE id IN (SELECT id FROM adults) ORDER BY 1;
SELECT name FROM users u WHERE EXISTS (SELECT 1 FROM adults a WHERE a.id = u.id AND a.age < 35);
WITH adults AS (SELECT 99 AS id) SELECT * FROM adults;
WITH x AS (SELECT * FROM adults) SELECT count(*) FROM x;
SELECT adults.name FROM adults ORDER BY adults.id DESC LIMIT 1;
SELECT main.adults.id FROM main.adults ORDER BY 1;
SELECT type, name, tbl_name, rootpage, sql FROM sqlite_master WHERE type = 'view' ORDER BY name;
SELECT name FROM sqlite_master ORDER BY name;
PRAGMA table_info(adults);
PRAGMA table_info("post stats");
PRAGMA table_info(exprs);
PRAGMA table_xinfo(nested);
PRAGMA index_list(adults);
INSERT INTO users (email, name, age) VALUES ('e@x', 'Eve', 50);
SELECT * FROM adults ORDER BY id;
INSERT INTO adults (id, name, age) VALUES (10, 'x', 1);
UPDATE adults SET age = 1;
DELETE FROM adults;
CREATE INDEX ix_v ON adults (age);
CREATE INDEX adults ON users (age);
CREATE INDEX users ON posts (views);
CREATE INDEX ix_users_age ON users (age);
CREATE VIEW ix_users_age AS SELECT 1;
DROP INDEX ix_users_age;
CREATE TABLE adults (x);
DROP TABLE adults;
DROP VIEW users;
DROP VIEW nested;
DROP VIEW nested;
DROP VIEW IF EXISTS nested;
DROP VIEW IF EXISTS main.exprs;
SELECT name FROM sqlite_master WHERE type = 'view' ORDER BY name;
BEGIN;
CREATE VIEW tmpv AS SELECT 1 AS one;
SELECT * FROM tmpv;
ROLLBACK;
SELECT * FROM tmpv;
CREATE VIEW bad1 AS SELECT nope FROM users;
CREATE VIEW bad2 AS SELECT * FROM missing;
CREATE VIEW bad3 (a, b) AS SELECT 1;
SELECT * FROM bad1;
SELECT * FROM bad2;
SELECT * FROM bad3;
CREATE TABLE missing (m);
INSERT INTO missing VALUES (7);
SELECT * FROM bad2;
CREATE VIEW selfref AS SELECT * FROM selfref;
SELECT * FROM selfref;
CREATE VIEW loop1 AS SELECT * FROM loop2;
CREATE VIEW loop2 AS SELECT * FROM loop1;
SELECT * FROM loop1;
CREATE VIEW dup AS SELECT 1 x, 2 x, 3 x;
CREATE VIEW dup2 AS SELECT id, id, name AS id FROM users;
SELECT * FROM dup;
SELECT * FROM dup2 ORDER BY 1;
PRAGMA table_info(dup2);
CREATE VIEW withparam AS SELECT ?;
SELECT * FROM bad;
DROP TABLE posts;
SELECT * FROM "post stats";
SELECT * FROM adults ORDER BY id;
"#
    ));
}

#[test]
fn views_survive_reopen_and_user_version_persists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    {
        let db = Database::open(&path, Options::default()).expect("open");
        let mut s = db.connect().sql();
        s.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
             INSERT INTO t (v) VALUES ('a'), ('b');
             CREATE VIEW tv (n) AS SELECT upper(v) FROM t;
             CREATE UNIQUE INDEX t_lower_v ON t (lower(v)) WHERE id > 0;
             PRAGMA user_version = 42;",
        )
        .expect("setup");
    }
    let db = Database::open(&path, Options::default()).expect("reopen");
    let mut s = db.connect().sql();
    let r = s
        .execute("SELECT n FROM tv ORDER BY n", &Params::None)
        .expect("query view");
    assert_eq!(r.rows, vec![vec![Value::from("A")], vec![Value::from("B")]]);
    let r = s
        .execute(
            "SELECT sql FROM sqlite_master WHERE name = 'tv'",
            &Params::None,
        )
        .expect("master");
    assert_eq!(
        r.rows,
        vec![vec![Value::from(
            "CREATE VIEW tv (n) AS SELECT upper(v) FROM t"
        )]]
    );
    let r = s
        .execute("PRAGMA user_version", &Params::None)
        .expect("user_version");
    assert_eq!(r.rows, vec![vec![Value::Integer(42)]]);
    let e = s
        .execute("INSERT INTO t (v) VALUES ('A')", &Params::None)
        .expect_err("the expression index still enforces uniqueness");
    assert_eq!(e.state, ormdb::SqlState::UniqueViolation);
}

#[test]
fn math_functions() {
    let inputs = [
        "0",
        "1",
        "-1",
        "2",
        "0.5",
        "-0.5",
        "2.5",
        "-2.5",
        "10",
        "1e300",
        "-7",
        "'4'",
        "' 9 '",
        "'1.5'",
        "'abc'",
        "'12abc'",
        "NULL",
        "x'01'",
        "9223372036854775807",
        "-3.75",
    ];
    let one = [
        "acos", "acosh", "asin", "asinh", "atan", "atanh", "ceil", "ceiling", "cos", "cosh",
        "degrees", "exp", "floor", "ln", "log", "log10", "log2", "radians", "sin", "sinh", "sqrt",
        "tan", "tanh", "trunc",
    ];
    let mut script = String::from(
        "SELECT pi(), typeof(pi()), sqlite_compileoption_used('ENABLE_MATH_FUNCTIONS'), sqlite_compileoption_used('SQLITE_ENABLE_MATH_FUNCTIONS'), sqlite_compileoption_used('enable_math_functions'), sqlite_compileoption_used(NULL);\n",
    );
    for f in one {
        let cols: Vec<String> = inputs.iter().map(|i| format!("{f}({i})")).collect();
        script.push_str(&format!("SELECT {};\n", cols.join(", ")));
        let types: Vec<String> = inputs.iter().map(|i| format!("typeof({f}({i}))")).collect();
        script.push_str(&format!("SELECT {};\n", types.join(", ")));
    }
    let pairs = [
        ("2", "10"),
        ("10", "2"),
        ("0", "-1"),
        ("-8", "1.0 / 3"),
        ("7", "3"),
        ("-7", "3"),
        ("7.5", "-2"),
        ("5", "0"),
        ("0", "0"),
        ("1", "8"),
        ("0.5", "4"),
        ("-2", "8"),
        ("NULL", "2"),
        ("2", "NULL"),
        ("'8'", "'2'"),
        ("'x'", "2"),
        ("1e308", "10"),
    ];
    for f in ["atan2", "mod", "pow", "power", "log"] {
        let cols: Vec<String> = pairs
            .iter()
            .map(|(a, b)| format!("{f}({a}, {b})"))
            .collect();
        script.push_str(&format!("SELECT {};\n", cols.join(", ")));
    }
    script.push_str(
        r#"CREATE TABLE m (id INTEGER PRIMARY KEY, x REAL, t TEXT, i INT);
INSERT INTO m (x, t, i) VALUES (1.25, '3', 4), (-2.75, 'q', -9), (NULL, NULL, NULL), (100.0, '0.001', 0);
SELECT id, floor(x), ceil(x), round(sqrt(abs(x)), 6), ln(i), log(2, i), mod(i, 4), pow(x, 2), trunc(t) FROM m ORDER BY id;
SELECT sum(floor(x)), max(ceiling(t)) FROM m;
SELECT id FROM m WHERE floor(x) = 1 OR sqrt(i) = 2 ORDER BY 1;
SELECT acos();
SELECT pow(2);
SELECT log(1, 2, 3);
SELECT pi(1);
"#,
    );
    run(&script);
}

#[test]
fn temp_tables() {
    run(&format!(
        "{SCHEMA}{}",
        r#"
CREATE TEMP TABLE scratch (id INTEGER PRIMARY KEY, v TEXT UNIQUE, n INT DEFAULT 3);
CREATE TEMPORARY TABLE IF NOT EXISTS scratch (x);
CREATE TEMP TABLE scratch (x);
INSERT INTO scratch (v) VALUES ('a'), ('b');
INSERT INTO scratch (v) VALUES ('a');
INSERT INTO temp.scratch (v, n) VALUES ('c', 9) RETURNING id, v, n;
SELECT * FROM scratch ORDER BY id;
SELECT scratch.v FROM temp.scratch WHERE scratch.n = 3 ORDER BY 1;
SELECT u.name, s.v FROM users u JOIN scratch s ON s.id = u.id ORDER BY u.id;
UPDATE scratch SET n = n + 1 WHERE v <> 'a';
DELETE FROM scratch WHERE v = 'b';
SELECT * FROM scratch ORDER BY id;
CREATE TEMP TABLE users (id INTEGER PRIMARY KEY, shadow TEXT);
INSERT INTO users (shadow) VALUES ('temp wins');
SELECT * FROM users;
SELECT id, email FROM main.users ORDER BY id;
SELECT count(*) FROM temp.users;
PRAGMA table_info(users);
PRAGMA main.table_info(users);
PRAGMA temp.table_info(users);
PRAGMA temp.table_info(posts);
PRAGMA table_info(scratch);
PRAGMA index_list(scratch);
PRAGMA index_info(sqlite_autoindex_scratch_1);
CREATE INDEX ix_scratch_n ON scratch (n);
PRAGMA index_list(scratch);
SELECT type, name, tbl_name, sql FROM sqlite_temp_master ORDER BY name;
SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name;
SELECT name FROM sqlite_temp_schema WHERE type = 'table' ORDER BY 1;
DROP TABLE users;
SELECT id, email FROM users ORDER BY id;
SELECT * FROM temp.users;
ALTER TABLE scratch RENAME TO scratch2;
ALTER TABLE scratch2 ADD COLUMN extra TEXT DEFAULT 'e';
SELECT * FROM scratch2 ORDER BY id;
SELECT name, sql FROM sqlite_temp_master WHERE type = 'table' ORDER BY name;
BEGIN;
CREATE TEMP TABLE rolled (a);
INSERT INTO rolled VALUES (1);
ROLLBACK;
SELECT * FROM rolled;
CREATE TEMP VIEW tv AS SELECT id, v FROM scratch2 WHERE id > 1;
CREATE TEMP VIEW IF NOT EXISTS tv AS SELECT 1;
CREATE VIEW users_v AS SELECT id, name FROM users;
CREATE TEMP VIEW users_v (uid, uname) AS SELECT id, upper(name) FROM main.users;
SELECT * FROM tv ORDER BY id;
SELECT * FROM users_v ORDER BY 1;
SELECT * FROM main.users_v ORDER BY 1;
SELECT * FROM temp.users_v ORDER BY 1;
PRAGMA table_info(users_v);
PRAGMA main.table_info(users_v);
SELECT type, name, sql FROM sqlite_temp_master WHERE type = 'view' ORDER BY name;
SELECT type, name, sql FROM sqlite_master WHERE type = 'view' ORDER BY name;
DROP VIEW users_v;
SELECT * FROM users_v ORDER BY 1;
DROP VIEW temp.tv;
SELECT * FROM tv;
CREATE TEMP VIEW tv2 AS SELECT * FROM scratch2;
DROP TABLE temp.scratch2;
SELECT * FROM tv2;
DROP VIEW tv2;
SELECT count(*) FROM sqlite_temp_master;
CREATE TEMP TABLE main.bad (a);
"#
    ));
}

#[test]
fn temp_tables_are_per_session_and_go_on_close() {
    let db = Database::temporary().expect("db");
    let mut a = db.connect().sql();
    let mut b = db.connect().sql();
    a.execute_batch(
        "CREATE TABLE t (x); INSERT INTO t VALUES (1);
         CREATE TEMP TABLE t (y); INSERT INTO t VALUES (2), (3);
         CREATE TEMP TABLE only_a (z UNIQUE);
         CREATE TEMP VIEW only_a_v AS SELECT * FROM t;",
    )
    .expect("setup");
    let count = |s: &mut ormdb::Session, sql: &str| -> Value {
        s.execute(sql, &Params::None).expect(sql).rows[0][0].clone()
    };
    assert_eq!(count(&mut a, "SELECT count(*) FROM t"), Value::Integer(2));
    assert_eq!(count(&mut b, "SELECT count(*) FROM t"), Value::Integer(1));
    assert!(b.execute("SELECT * FROM only_a", &Params::None).is_err());
    assert!(b
        .execute("SELECT * FROM temp.only_a", &Params::None)
        .is_err());
    assert!(b.execute("SELECT * FROM only_a_v", &Params::None).is_err());
    assert_eq!(
        count(&mut a, "SELECT count(*) FROM only_a_v"),
        Value::Integer(2)
    );
    assert_eq!(
        count(&mut b, "SELECT count(*) FROM sqlite_master"),
        Value::Integer(1)
    );
    assert_eq!(
        count(&mut b, "SELECT count(*) FROM sqlite_temp_master"),
        Value::Integer(0)
    );
    // B may have its own temporary table of the same name.
    b.execute_batch("CREATE TEMP TABLE only_a (q); INSERT INTO only_a VALUES (7);")
        .expect("b's own");
    a.execute("INSERT INTO only_a VALUES (5)", &Params::None)
        .expect("a insert");
    let e = a
        .execute("INSERT INTO only_a VALUES (5)", &Params::None)
        .expect_err("unique");
    assert_eq!(e.state, ormdb::SqlState::UniqueViolation);
    assert!(
        !e.message.contains("sqlite_temp_"),
        "message names the table as the session knows it: {}",
        e.message
    );
    assert_eq!(count(&mut b, "SELECT q FROM only_a"), Value::Integer(7));
    drop(a);
    let mut c = db.connect().sql();
    assert_eq!(count(&mut c, "SELECT count(*) FROM t"), Value::Integer(1));
    let stored: Vec<String> = db
        .schema()
        .entities
        .iter()
        .map(|e| e.name.clone())
        .filter(|n| n.starts_with("sqlite_temp_"))
        .collect();
    assert_eq!(
        stored.len(),
        1,
        "only b's temporary table remains: {stored:?}"
    );
    assert!(db.schema().views.is_empty(), "a's temporary view went too");
}

#[test]
fn temp_tables_left_by_a_crash_are_dropped_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    {
        let db = Database::open(&path, Options::default()).expect("open");
        let conn = db.connect();
        let mut tx = conn.begin().expect("begin");
        // What a session that never closed leaves behind.
        tx.create_entity(
            &ormdb::EntitySpec::new("sqlite_temp_999_left")
                .field(ormdb::FieldDef::new("a", ormdb::DataType::Integer)),
        )
        .expect("create");
        tx.commit().expect("commit");
    }
    let db = Database::open(&path, Options::default()).expect("reopen");
    assert!(db
        .schema()
        .entities
        .iter()
        .all(|e| !e.name.starts_with("sqlite_temp_")));
}

#[test]
fn partial_expression_and_desc_indexes() {
    run(r#"
CREATE TABLE acct (id INTEGER PRIMARY KEY, email TEXT, name TEXT, deleted INTEGER, kind TEXT, n INT);
CREATE UNIQUE INDEX acct_email_live ON acct (email) WHERE deleted IS NULL;
CREATE UNIQUE INDEX acct_lower_name ON acct (lower(name));
CREATE INDEX acct_kind_desc ON acct (kind DESC, n ASC);
CREATE INDEX acct_name_nocase ON acct (name COLLATE NOCASE);
CREATE UNIQUE INDEX acct_kind_n ON acct (kind, n) WHERE kind = 'x' AND n > 0;
INSERT INTO acct (email, name, deleted, kind, n) VALUES ('a@x', 'Ann', NULL, 'x', 1);
INSERT INTO acct (email, name, deleted, kind, n) VALUES ('a@x', 'Bob', NULL, 'y', 1);
INSERT INTO acct (email, name, deleted, kind, n) VALUES ('a@x', 'Bob', 1, 'y', 1);
INSERT INTO acct (email, name, deleted, kind, n) VALUES ('a@x', 'Cat', 2, 'y', 2);
INSERT INTO acct (email, name, deleted, kind, n) VALUES ('b@x', 'ANN', NULL, 'y', 3);
INSERT INTO acct (email, name, deleted, kind, n) VALUES ('c@x', NULL, NULL, 'x', 1);
INSERT INTO acct (email, name, deleted, kind, n) VALUES ('c@x', NULL, NULL, 'x', 0);
INSERT INTO acct (email, name, deleted, kind, n) VALUES ('d@x', NULL, NULL, 'x', 0);
INSERT INTO acct (email, name, deleted, kind, n) VALUES ('e@x', NULL, NULL, 'x', 0);
SELECT * FROM acct ORDER BY id;
UPDATE acct SET deleted = NULL WHERE name = 'Bob';
UPDATE acct SET deleted = NULL WHERE name = 'Cat';
UPDATE acct SET name = 'cAt' WHERE id = 1;
UPDATE acct SET name = 'dan' WHERE id = 1;
UPDATE acct SET n = 5 WHERE kind = 'x' AND n = 0;
UPDATE acct SET n = 5 WHERE id = 5;
UPDATE acct SET kind = 'z' WHERE id = 5;
SELECT * FROM acct ORDER BY id;
INSERT OR IGNORE INTO acct (email, name, deleted) VALUES ('a@x', 'new', NULL);
INSERT OR IGNORE INTO acct (email, name, deleted) VALUES ('q@x', 'DAN', NULL);
INSERT OR REPLACE INTO acct (email, name, deleted, kind) VALUES ('a@x', 'Eve', NULL, 'r');
INSERT INTO acct (email, name) VALUES ('a@x', 'Fay') ON CONFLICT DO NOTHING;
INSERT INTO acct (email, name) VALUES ('a@x', 'Fay') ON CONFLICT (email) DO NOTHING;
SELECT * FROM acct ORDER BY id;
SELECT name FROM acct WHERE lower(name) = 'dan';
SELECT email FROM acct WHERE email = 'a@x' AND deleted IS NULL;
SELECT id FROM acct WHERE kind = 'x' ORDER BY id;
PRAGMA index_list(acct);
PRAGMA index_info(acct_lower_name);
PRAGMA index_xinfo(acct_lower_name);
PRAGMA index_xinfo(acct_kind_desc);
PRAGMA index_xinfo(acct_name_nocase);
PRAGMA index_info(acct_email_live);
PRAGMA index_xinfo(acct_kind_n);
SELECT name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name;
CREATE UNIQUE INDEX dup_lower ON acct (lower(email));
CREATE UNIQUE INDEX bad_partial ON acct (kind) WHERE deleted IS NULL;
CREATE UNIQUE INDEX ok_partial ON acct (email) WHERE kind = 'r';
ALTER TABLE acct ADD COLUMN extra TEXT;
ALTER TABLE acct DROP COLUMN extra;
ALTER TABLE acct RENAME COLUMN n TO num;
SELECT name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name;
PRAGMA index_xinfo(acct_kind_n);
ALTER TABLE acct RENAME TO acct2;
SELECT name, tbl_name, sql FROM sqlite_master ORDER BY name;
ALTER TABLE acct2 RENAME TO acct;
INSERT INTO acct (email, name, kind, num) VALUES ('z@x', 'zed', 'x', 1);
INSERT INTO acct (email, name, kind, num) VALUES ('z2@x', 'zed2', 'x', 77);
DROP INDEX acct_lower_name;
INSERT INTO acct (email, name) VALUES ('y@x', 'ZED');
SELECT * FROM acct ORDER BY id;
DROP INDEX acct_email_live;
INSERT INTO acct (email, name) VALUES ('a@x', 'again');
SELECT count(*) FROM acct;
"#);
}

#[test]
fn right_and_full_joins() {
    run(&format!(
        "{SCHEMA}{}",
        r#"
CREATE TABLE tags (id INTEGER PRIMARY KEY, post_id INT, tag TEXT);
INSERT INTO tags (post_id, tag) VALUES (1, 'x'), (1, 'y'), (3, 'z'), (99, 'lost'), (NULL, 'none');
SELECT u.name, p.title FROM users u RIGHT JOIN posts p ON p.user_id = u.id ORDER BY p.id;
SELECT u.name, p.title FROM posts p RIGHT OUTER JOIN users u ON p.user_id = u.id ORDER BY u.id, p.id;
SELECT u.name, p.title FROM users u FULL OUTER JOIN posts p ON p.user_id = u.id ORDER BY u.id, p.id;
SELECT u.name, p.title FROM users u FULL JOIN posts p ON p.user_id = u.id AND p.views > 4 ORDER BY u.id, p.id;
SELECT p.title, t.tag FROM posts p FULL JOIN tags t ON t.post_id = p.id ORDER BY p.id, t.id;
SELECT u.name, p.title, t.tag FROM users u JOIN posts p ON p.user_id = u.id RIGHT JOIN tags t ON t.post_id = p.id ORDER BY t.id;
SELECT u.name, p.title, t.tag FROM users u LEFT JOIN posts p ON p.user_id = u.id FULL JOIN tags t ON t.post_id = p.id ORDER BY u.id, p.id, t.id;
SELECT u.name, p.title, t.tag FROM users u RIGHT JOIN posts p ON p.user_id = u.id LEFT JOIN tags t ON t.post_id = p.id ORDER BY p.id, t.id;
SELECT u.name, p.title FROM users u RIGHT JOIN posts p ON p.user_id = u.id WHERE u.id IS NULL;
SELECT u.name, p.title FROM users u FULL JOIN posts p ON p.user_id = u.id WHERE u.age > 26 OR p.views > 6 ORDER BY 1, 2;
SELECT count(*), count(u.id), count(p.id) FROM users u FULL JOIN posts p ON p.user_id = u.id;
SELECT u.id, count(p.id) FROM posts p RIGHT JOIN users u ON u.id = p.user_id GROUP BY u.id ORDER BY u.id;
SELECT * FROM users u RIGHT JOIN posts p ON p.user_id = u.id WHERE u.id = 1 ORDER BY p.id;
SELECT a.tag, b.tag FROM tags a FULL JOIN tags b ON a.post_id = b.post_id AND a.id < b.id ORDER BY a.id, b.id;
SELECT x.n, y.m FROM (SELECT 1 AS n UNION ALL SELECT 2) x FULL JOIN (SELECT 2 AS m UNION ALL SELECT 3) y ON x.n = y.m ORDER BY 1, 2;
"#
    ));
}

#[test]
fn collations_in_expressions() {
    run(r#"
CREATE TABLE w (id INTEGER PRIMARY KEY, s TEXT, n INT);
INSERT INTO w (s, n) VALUES ('apple', 1), ('Apple', 2), ('APPLE ', 3), ('banana', 4), ('Banana  ', 5), ('cherry', 6), (NULL, 7), ('ÄPFEL', 8), ('äpfel', 9), ('10', 10), (10, 11), (x'41', 12);
SELECT id FROM w WHERE s = 'APPLE' COLLATE NOCASE ORDER BY id;
SELECT id FROM w WHERE s COLLATE NOCASE = 'apple' ORDER BY id;
SELECT id FROM w WHERE s COLLATE RTRIM = 'APPLE' ORDER BY id;
SELECT id FROM w WHERE (s COLLATE NOCASE) = 'banana' ORDER BY id;
SELECT id FROM w WHERE s COLLATE BINARY = 'apple';
SELECT id FROM w WHERE s = 'äpfel' COLLATE NOCASE ORDER BY id;
SELECT id FROM w WHERE s COLLATE NOCASE < 'b' ORDER BY id;
SELECT id FROM w WHERE s COLLATE NOCASE >= 'BANANA' ORDER BY id;
SELECT id FROM w WHERE s COLLATE NOCASE <> 'apple' ORDER BY id;
SELECT id FROM w WHERE s COLLATE NOCASE BETWEEN 'B' AND 'C' ORDER BY id;
SELECT id FROM w WHERE s BETWEEN 'B' COLLATE NOCASE AND 'C' ORDER BY id;
SELECT id FROM w WHERE s NOT BETWEEN 'B' COLLATE NOCASE AND 'C' ORDER BY id;
SELECT id FROM w WHERE s COLLATE NOCASE = 10 ORDER BY id;
SELECT id FROM w WHERE n COLLATE NOCASE = '4';
SELECT id FROM w WHERE s COLLATE NOCASE IS 'CHERRY';
SELECT 'abc' = 'ABC' COLLATE NOCASE, 'abc' COLLATE NOCASE = 'ABC', 'abc ' = 'abc' COLLATE RTRIM, 'abc' < 'ABD' COLLATE NOCASE, 'x' COLLATE NOCASE = 'X' COLLATE BINARY, 'x' COLLATE BINARY = 'X' COLLATE NOCASE;
SELECT id, s FROM w ORDER BY s COLLATE NOCASE, id;
SELECT id, s FROM w ORDER BY s COLLATE NOCASE DESC, id;
SELECT id, s FROM w ORDER BY s COLLATE RTRIM, id;
SELECT id, s AS t FROM w ORDER BY t COLLATE NOCASE, id;
SELECT s, id FROM w ORDER BY 1 COLLATE NOCASE, 2;
SELECT id FROM w WHERE s = 'apple' COLLATE nocase ORDER BY id;
SELECT id FROM w WHERE s = 'apple' COLLATE "NOCASE" ORDER BY id;
SELECT id FROM w WHERE s = 'apple' COLLATE klingon;
SELECT id FROM w WHERE s COLLATE NOCASE IN ('APPLE', 'cherry', NULL) ORDER BY id;
SELECT id FROM w WHERE s COLLATE NOCASE NOT IN ('APPLE', 'cherry') ORDER BY id;
SELECT id FROM w WHERE s COLLATE RTRIM IN ('banana', 'Banana') ORDER BY id;
SELECT id FROM w WHERE n COLLATE NOCASE IN ('1', 2) ORDER BY id;
"#);
}

#[test]
fn unsupported_collation_uses_fail_with_0a000() {
    let db = Database::temporary().expect("db");
    let mut s = db.connect().sql();
    s.execute_batch("CREATE TABLE w (s TEXT); INSERT INTO w VALUES ('a'), ('A');")
        .expect("setup");
    for sql in [
        "SELECT s FROM w GROUP BY s COLLATE NOCASE",
        "SELECT DISTINCT s COLLATE NOCASE FROM w",
        "SELECT count(*) FROM w WHERE s COLLATE NOCASE IN (SELECT 'a')",
        "SELECT min(s COLLATE NOCASE) FROM w",
    ] {
        let e = s.execute(sql, &Params::None).expect_err(sql);
        assert!(
            matches!(
                e.state,
                ormdb::SqlState::FeatureNotSupported | ormdb::SqlState::SyntaxError
            ),
            "{sql}: {e}"
        );
    }
}

#[test]
fn window_frames() {
    run(r#"
CREATE TABLE s (id INTEGER PRIMARY KEY, g TEXT, k INT, v REAL);
INSERT INTO s (g, k, v) VALUES ('a', 1, 1.0), ('a', 2, 2.5), ('a', 2, 3.0), ('a', 4, NULL), ('a', 7, 5.0), ('a', NULL, 6.0), ('b', 3, 1.0), ('b', 3, 2.0), ('b', 10, 4.0), ('c', NULL, 9.0);
SELECT id, sum(v) OVER (ORDER BY id ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING) FROM s ORDER BY id;
SELECT id, sum(v) OVER (ORDER BY id ROWS 2 PRECEDING) FROM s ORDER BY id;
SELECT id, count(*) OVER (PARTITION BY g ORDER BY k ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) FROM s ORDER BY id;
SELECT id, sum(v) OVER (PARTITION BY g ORDER BY k, id ROWS BETWEEN CURRENT ROW AND 2 FOLLOWING) FROM s ORDER BY id;
SELECT id, sum(v) OVER (PARTITION BY g ORDER BY id ROWS BETWEEN 2 PRECEDING AND 1 PRECEDING) FROM s ORDER BY id;
SELECT id, sum(v) OVER (PARTITION BY g ORDER BY id ROWS BETWEEN 1 FOLLOWING AND 3 FOLLOWING) FROM s ORDER BY id;
SELECT id, sum(v) OVER (PARTITION BY g ORDER BY k RANGE BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING) FROM s ORDER BY id;
SELECT id, sum(v) OVER (PARTITION BY g ORDER BY k RANGE BETWEEN 1 PRECEDING AND 1 FOLLOWING) FROM s ORDER BY id;
SELECT id, sum(v) OVER (PARTITION BY g ORDER BY k DESC RANGE BETWEEN 2 PRECEDING AND CURRENT ROW) FROM s ORDER BY id;
SELECT id, sum(v) OVER (ORDER BY k NULLS LAST RANGE BETWEEN 3 PRECEDING AND 0.5 FOLLOWING) FROM s ORDER BY id;
SELECT id, sum(v) OVER (ORDER BY k RANGE BETWEEN 2 FOLLOWING AND 5 FOLLOWING) FROM s ORDER BY id;
SELECT id, count(*) OVER (ORDER BY k GROUPS BETWEEN 1 PRECEDING AND 1 FOLLOWING) FROM s ORDER BY id;
SELECT id, count(*) OVER (PARTITION BY g ORDER BY k GROUPS BETWEEN CURRENT ROW AND 1 FOLLOWING) FROM s ORDER BY id;
SELECT id, count(*) OVER (ORDER BY k GROUPS 2 PRECEDING) FROM s ORDER BY id;
SELECT id, first_value(v) OVER (ORDER BY id ROWS BETWEEN 2 PRECEDING AND CURRENT ROW), last_value(v) OVER (ORDER BY id ROWS BETWEEN CURRENT ROW AND 2 FOLLOWING) FROM s ORDER BY id;
SELECT id, last_value(id) OVER (PARTITION BY g ORDER BY k RANGE BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) FROM s ORDER BY id;
SELECT id, first_value(id) OVER (ORDER BY id ROWS BETWEEN 3 FOLLOWING AND 5 FOLLOWING) FROM s ORDER BY id;
SELECT id, avg(v) OVER (PARTITION BY g ROWS BETWEEN 1 PRECEDING AND CURRENT ROW), min(v) OVER (ROWS UNBOUNDED PRECEDING) FROM s ORDER BY id;
SELECT id, row_number() OVER (ORDER BY id ROWS 1 PRECEDING), rank() OVER (ORDER BY k ROWS 1 PRECEDING) FROM s ORDER BY id;
SELECT id, total(v) OVER (ORDER BY k RANGE UNBOUNDED PRECEDING), group_concat(id) OVER (ORDER BY id ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING) FROM s ORDER BY id;
SELECT id, sum(v) OVER (ORDER BY id ROWS BETWEEN 1 FOLLOWING AND 1 PRECEDING) FROM s;
SELECT id, sum(v) OVER (ORDER BY id ROWS BETWEEN UNBOUNDED FOLLOWING AND CURRENT ROW) FROM s;
SELECT id, sum(v) OVER (ORDER BY id ROWS -1 PRECEDING) FROM s;
SELECT id, sum(v) OVER (ORDER BY g, k RANGE 1 PRECEDING) FROM s;
SELECT id, sum(v) OVER (ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING) FROM s WHERE g = 'b' ORDER BY id;
"#);
}

/// SQLite accepts `UPDATE/DELETE ... ORDER BY ... LIMIT` only when built with
/// SQLITE_ENABLE_UPDATE_DELETE_LIMIT; the oracle is not, so ORMDB refuses them too (a syntax
/// error as in SQLite where sqlparser cannot read the form, else 0A000).
#[test]
fn update_delete_limit_is_refused_like_the_oracle() {
    let lite = rusqlite::Connection::open_in_memory().expect("sqlite");
    lite.execute_batch("CREATE TABLE w (s TEXT); INSERT INTO w VALUES ('a'), ('b');")
        .expect("setup");
    let db = Database::temporary().expect("db");
    let mut s = db.connect().sql();
    s.execute_batch("CREATE TABLE w (s TEXT); INSERT INTO w VALUES ('a'), ('b');")
        .expect("setup");
    for sql in [
        "DELETE FROM w ORDER BY s LIMIT 1",
        "UPDATE w SET s = 'c' ORDER BY s LIMIT 1",
    ] {
        assert!(lite.execute_batch(sql).is_err(), "the oracle accepts {sql}");
        let e = s.execute(sql, &Params::None).expect_err(sql);
        assert!(
            matches!(
                e.state,
                ormdb::SqlState::FeatureNotSupported | ormdb::SqlState::SyntaxError
            ),
            "{sql}: {e}"
        );
    }
}
