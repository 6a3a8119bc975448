//! SQL that SQLAlchemy (its dialect compliance suite and ORM) sends, checked against SQLite.

mod sqldiff;

use ormdb::Value;
use sqldiff::Diff;

use sqldiff::run_clean as run;

/// A named UNIQUE constraint is still backed by a `sqlite_autoindex_*` index: SQLAlchemy's
/// get_unique_constraints pairs the constraints it parses from the CREATE text with indexes by
/// that prefix, and get_indexes leaves such indexes out.
#[test]
fn named_unique_constraints_use_autoindex_names() {
    run(r#"
CREATE TABLE tags (
	id INTEGER NOT NULL,
	label VARCHAR(30) NOT NULL,
	code VARCHAR(5) CONSTRAINT uq_code UNIQUE,
	PRIMARY KEY (id),
	CONSTRAINT uq_tags_label UNIQUE (label)
);
CREATE TABLE pairs (a INTEGER, b INTEGER, CONSTRAINT "UQ pair" UNIQUE (a, b), UNIQUE (b));
SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name;
PRAGMA index_list(tags);
PRAGMA index_list(pairs);
PRAGMA index_info(sqlite_autoindex_pairs_1);
CREATE INDEX uq_tags_label ON tags (code);
PRAGMA index_list(tags);
INSERT INTO tags (label, code) VALUES ('a', 'x');
INSERT INTO tags (label, code) VALUES ('a', 'y');
INSERT INTO tags (label, code) VALUES ('b', 'x');
SELECT label, code FROM tags ORDER BY id;
"#);
}

/// SQLite checks immediate foreign keys at the end of a statement: one DELETE may remove rows
/// that reference each other, in any order (SQLAlchemy empties tables with `DELETE FROM t`
/// between tests).
#[test]
fn delete_checks_foreign_keys_at_statement_end() {
    run(r#"
PRAGMA foreign_keys = ON;
CREATE TABLE some_table (id INTEGER NOT NULL, data VARCHAR(50), parent_id INTEGER, PRIMARY KEY (id), FOREIGN KEY(parent_id) REFERENCES some_table (id));
INSERT INTO some_table (id, data, parent_id) VALUES (1, 'd1', NULL), (2, 'd2', 1), (3, 'd3', 1), (4, 'd4', 3), (5, 'd5', 3);
DELETE FROM some_table WHERE id IN (3, 4);
DELETE FROM some_table WHERE id IN (1, 2);
SELECT * FROM some_table ORDER BY id;
DELETE FROM some_table WHERE id = 3;
SELECT * FROM some_table ORDER BY id;
DELETE FROM some_table;
SELECT count(*) FROM some_table;
CREATE TABLE parent (id INTEGER PRIMARY KEY);
CREATE TABLE child (id INTEGER PRIMARY KEY, p INTEGER REFERENCES parent(id) ON DELETE CASCADE, name TEXT);
INSERT INTO parent VALUES (1), (2);
INSERT INTO child VALUES (10, 1, 'a'), (11, 2, 'b'), (12, 2, 'c');
DELETE FROM parent WHERE id = 2 RETURNING id;
SELECT * FROM child ORDER BY id;
INSERT INTO some_table (id, data, parent_id) VALUES (1, 'r', NULL), (2, 's', 1), (3, 't', 2);
DELETE FROM some_table WHERE id >= 2 RETURNING id, data, parent_id;
SELECT * FROM some_table ORDER BY id;
BEGIN;
INSERT INTO some_table (id, data, parent_id) VALUES (2, 'x', 1);
DELETE FROM some_table WHERE id = 1;
ROLLBACK;
SELECT * FROM some_table ORDER BY id;
"#);
}

const NESTED_SCHEMA: &str = r#"
CREATE TABLE users (id INTEGER NOT NULL, name VARCHAR(50) NOT NULL, PRIMARY KEY (id));
CREATE TABLE posts (id INTEGER NOT NULL, author_id INTEGER NOT NULL, title VARCHAR(200) NOT NULL, PRIMARY KEY (id), FOREIGN KEY(author_id) REFERENCES users (id));
CREATE TABLE tags (id INTEGER NOT NULL, label VARCHAR(30) NOT NULL, PRIMARY KEY (id));
CREATE TABLE post_tags (post_id INTEGER NOT NULL, tag_id INTEGER NOT NULL, PRIMARY KEY (post_id, tag_id), FOREIGN KEY(post_id) REFERENCES posts (id), FOREIGN KEY(tag_id) REFERENCES tags (id));
INSERT INTO users VALUES (1, 'ada'), (2, 'bob'), (3, 'cy');
INSERT INTO posts VALUES (10, 1, 'first'), (11, 1, 'second'), (12, 2, 'third');
INSERT INTO tags VALUES (1, 'python'), (2, 'rust'), (3, 'unused');
INSERT INTO post_tags VALUES (10, 1), (10, 2), (11, 2);
"#;

/// SQLAlchemy's joined eager load of a many-to-many relation nests the association join:
/// `LEFT OUTER JOIN (post_tags AS pt JOIN tags AS t ON ...) ON ...`.
#[test]
fn parenthesized_joins() {
    let mut d = Diff::new();
    d.script(NESTED_SCHEMA);
    d.script(r#"
SELECT users.id, users.name, posts_1.id, posts_1.title, tags_1.id, tags_1.label FROM users LEFT OUTER JOIN posts AS posts_1 ON users.id = posts_1.author_id LEFT OUTER JOIN (post_tags AS post_tags_1 JOIN tags AS tags_1 ON tags_1.id = post_tags_1.tag_id) ON posts_1.id = post_tags_1.post_id ORDER BY users.id, posts_1.id, tags_1.id;
SELECT count(*), count(t.id) FROM posts p JOIN (post_tags pt LEFT JOIN tags t ON t.id = pt.tag_id) ON pt.post_id = p.id;
SELECT * FROM users LEFT JOIN (posts JOIN post_tags ON post_tags.post_id = posts.id) ON posts.author_id = users.id ORDER BY users.id, posts.id, post_tags.tag_id;
"#);
    // Parameters inside and after the parenthesized join keep their positions.
    d.check(
        "SELECT posts.title, tags.label FROM posts LEFT JOIN (post_tags JOIN tags ON tags.id = post_tags.tag_id AND tags.label <> ?) ON posts.id = post_tags.post_id WHERE posts.id >= ? ORDER BY 1, 2",
        &[Value::Text("python".into()), Value::Integer(11)],
    );
    d.assert_clean();
}

/// `WITH ... INSERT / UPDATE / DELETE` (SQLAlchemy's CTEs on DML): the common table
/// expressions are visible to the statement's SELECT, FROM and subqueries.
#[test]
fn with_before_insert_update_delete() {
    run(r#"
CREATE TABLE some_table (id INTEGER NOT NULL, data VARCHAR(50), parent_id INTEGER, PRIMARY KEY (id));
CREATE TABLE some_other_table (id INTEGER NOT NULL, data VARCHAR(50), parent_id INTEGER, PRIMARY KEY (id));
INSERT INTO some_table VALUES (1, 'd1', NULL), (2, 'd2', 1), (3, 'd3', 1), (4, 'd4', 3), (5, 'd5', 3);
WITH some_cte AS (SELECT some_table.id AS id, some_table.data AS data, some_table.parent_id AS parent_id FROM some_table WHERE some_table.data IN ('d2', 'd3', 'd4')) INSERT INTO some_other_table (id, data, parent_id) SELECT some_cte.id, some_cte.data, some_cte.parent_id FROM some_cte;
SELECT * FROM some_other_table ORDER BY id;
WITH some_cte AS (SELECT id, data FROM some_table WHERE data IN ('d2', 'd3')) UPDATE some_other_table SET parent_id = 5 FROM some_cte WHERE some_other_table.data = some_cte.data;
SELECT * FROM some_other_table ORDER BY id;
WITH some_cte AS (SELECT id, data FROM some_table WHERE data IN ('d2', 'd4')) DELETE FROM some_other_table WHERE some_other_table.data = (SELECT some_cte.data FROM some_cte WHERE some_cte.id = some_other_table.id);
SELECT * FROM some_other_table ORDER BY id;
WITH RECURSIVE down(id) AS (SELECT 1 UNION ALL SELECT some_table.id FROM some_table JOIN down ON some_table.parent_id = down.id) DELETE FROM some_table WHERE id IN (SELECT id FROM down WHERE id > 2) RETURNING id;
SELECT * FROM some_table ORDER BY id;
WITH n(x) AS (VALUES (10), (11)) INSERT INTO some_table (id, data) SELECT x, 'n' || x FROM n RETURNING id, data;
SELECT changes(), last_insert_rowid();
"#);
}

/// selectinload's `col IN (?, ?, ...)` with hundreds of parameters: constants take the
/// column's affinity once at compile time; results (and NULL semantics) stay SQLite's.
#[test]
fn in_lists_of_parameters() {
    let mut d = Diff::new();
    d.script(
        r#"
CREATE TABLE c (id INTEGER PRIMARY KEY, post_id INTEGER, tag TEXT, score REAL);
CREATE INDEX ix_c_post ON c (post_id);
WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 600) INSERT INTO c (post_id, tag, score) SELECT x % 300, 't' || (x % 7), x / 4.0 FROM n;
"#,
    );
    let ids: Vec<Value> = (0..500).map(|i| Value::Integer(i * 2)).collect();
    let marks = vec!["?"; ids.len()].join(", ");
    d.check(
        &format!("SELECT post_id, id FROM c WHERE post_id IN ({marks}) ORDER BY id"),
        &ids,
    );
    let mixed = vec![
        Value::Text("3".into()),
        Value::Real(4.0),
        Value::Null,
        Value::Text("x".into()),
        Value::Integer(5),
    ];
    for sql in [
        "SELECT id FROM c WHERE post_id IN (?, ?, ?, ?, ?) ORDER BY id",
        "SELECT id FROM c WHERE post_id NOT IN (?, ?, ?, ?, ?) ORDER BY id",
        "SELECT id FROM c WHERE tag IN (?, ?, ?, ?, ?) ORDER BY id",
        "SELECT id FROM c WHERE score IN (?, ?, ?, ?, ?) ORDER BY id",
        "SELECT count(*) FROM c WHERE (post_id IN (?, ?, ?, ?, ?)) IS NULL",
    ] {
        d.check(sql, &mixed);
    }
    d.assert_clean();
}

/// An IN list over an indexed column reads all its keys' index entries and rows in one sorted
/// batch: nearby and distant keys, duplicates, keys of other types, composite indexes, stale
/// entries of updated or deleted rows and rows written earlier in the same transaction must
/// give SQLite's rows, each once.
#[test]
fn in_list_index_lookups_in_one_batch() {
    let mut d = Diff::new();
    d.script(
        r#"
CREATE TABLE p (id INTEGER PRIMARY KEY, name TEXT);
CREATE TABLE c (id INTEGER PRIMARY KEY, post_id INTEGER REFERENCES p (id), kind TEXT, n INTEGER);
CREATE INDEX ix_c_post ON c (post_id);
CREATE INDEX ix_c_kind_n ON c (kind, n);
WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < 400) INSERT INTO p (id, name) SELECT x, 'p' || x FROM s;
WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < 2000) INSERT INTO c (post_id, kind, n) SELECT CASE WHEN x % 97 = 0 THEN NULL ELSE (x * 7) % 400 - 3 END, 'k' || (x % 5), x % 11 FROM s;
SELECT id, post_id FROM c WHERE post_id IN (1, 2, 3, 4, 5, 6, 7, 8);
SELECT id, post_id FROM c WHERE post_id IN (390, 1, 200, 3, 2, 250, 1, 3, -2, -3, 1000);
SELECT id, post_id FROM c WHERE post_id IN ('5', 6.0, 7.5, NULL, 'x', x'07', 8);
SELECT id FROM c WHERE post_id IN (10, 11, 12) AND kind IN ('k1', 'k2');
SELECT id, kind, n FROM c WHERE kind IN ('k3', 'k0', 'k3', 'zz') AND n = 4;
SELECT id, kind, n FROM c WHERE kind IN ('k1', 'k4') ORDER BY n, id;
SELECT p.id, c.id FROM p JOIN c ON c.post_id = p.id WHERE c.post_id IN (20, 21, 22, 40, 80) ORDER BY c.id;
UPDATE c SET post_id = 1000 WHERE post_id IN (30, 31);
DELETE FROM c WHERE post_id IN (32, 34);
SELECT id, post_id FROM c WHERE post_id IN (29, 30, 31, 32, 33, 34, 35, 1000);
BEGIN;
INSERT INTO c (post_id, kind, n) VALUES (36, 'new', 1), (37, 'new', 2), (500, 'new', 3);
UPDATE c SET post_id = 38 WHERE post_id = 39;
DELETE FROM c WHERE post_id = 40;
SELECT id, post_id FROM c WHERE post_id IN (36, 37, 38, 39, 40, 41, 500);
SELECT id, kind, n FROM c WHERE kind IN ('new', 'k2') AND n = 2;
ROLLBACK;
SELECT id, post_id FROM c WHERE post_id IN (36, 37, 38, 39, 40, 41, 500);
"#,
    );
    // SQLAlchemy's selectinload: 500 bound parameters, some matching nothing.
    let ids: Vec<Value> = (0..500).map(|i| Value::Integer(i * 3 - 10)).collect();
    let marks = vec!["?"; ids.len()].join(", ");
    d.check(
        &format!("SELECT c.id, c.post_id, c.kind FROM c WHERE c.post_id IN ({marks})"),
        &ids,
    );
    d.check(
        &format!("SELECT count(*), sum(n) FROM c WHERE post_id IN ({marks})"),
        &ids,
    );
    d.assert_clean();
}

/// SQLAlchemy's has_table / get_columns run `PRAGMA main.table_info(x)` then
/// `PRAGMA temp.table_info(x)`: a temporary view is answered by the second only, and a main
/// view or table by the first only.
#[test]
fn table_info_of_temporary_views_by_schema() {
    run(r#"
CREATE TABLE users (id INTEGER PRIMARY KEY, name VARCHAR(30) NOT NULL);
CREATE VIEW users_v AS SELECT id, name FROM users;
CREATE TEMPORARY TABLE user_tmp (id INTEGER PRIMARY KEY, name TEXT);
CREATE TEMPORARY VIEW user_tmp_v AS SELECT id, upper(name) AS up FROM user_tmp;
PRAGMA main.table_info(user_tmp_v);
PRAGMA temp.table_info(user_tmp_v);
PRAGMA temp.table_xinfo(user_tmp_v);
PRAGMA table_info(user_tmp_v);
PRAGMA temp.index_list(user_tmp_v);
PRAGMA main.table_info(users_v);
PRAGMA temp.table_info(users_v);
PRAGMA main.table_info(user_tmp);
PRAGMA temp.table_info(user_tmp);
PRAGMA temp.table_info(users);
SELECT type, name, tbl_name FROM sqlite_temp_master ORDER BY name;
"#);
}
