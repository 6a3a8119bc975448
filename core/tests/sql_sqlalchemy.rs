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
