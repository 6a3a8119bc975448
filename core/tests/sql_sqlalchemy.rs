//! SQL that SQLAlchemy (its dialect compliance suite and ORM) sends, checked against SQLite.

mod sqldiff;

use sqldiff::Diff;

fn run(script: &str) {
    let mut d = Diff::new();
    d.script(script);
    assert!(
        d.mismatches.is_empty() && d.unsupported.is_empty(),
        "{}",
        d.report()
    );
}

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
