//! The join order of inner-joined tables: when the first table of a FROM clause has no
//! equality or IN restriction on its row id or an index while a later one has, the later one
//! drives the join and the others are reached by lookups on their join keys (Django's
//! many-to-many prefetch query). Results are checked against SQLite (multisets unless ORDER BY
//! fixes the order); the chosen order is checked through EXPLAIN QUERY PLAN.

mod sqldiff;

use ormdb::{Params, Value};
use sqldiff::Diff;

/// A library with a many-to-many link table: NULL join keys, a link without its tag, text
/// join keys that SQLite's affinity turns into integers, and a link table without a unique
/// constraint (duplicate pairs).
fn library() -> Diff {
    let mut d = Diff::new();
    let mut script = String::from(
        "CREATE TABLE tag (id INTEGER PRIMARY KEY, name TEXT, weight INT);
         CREATE TABLE book (id INTEGER PRIMARY KEY, title TEXT, year INT);
         CREATE TABLE book_tags (id INTEGER PRIMARY KEY, book_id INT REFERENCES book (id), tag_id INT, UNIQUE (book_id, tag_id));
         CREATE INDEX book_tags_book ON book_tags (book_id);
         CREATE INDEX book_tags_tag ON book_tags (tag_id);
         CREATE TABLE pairs (a INT, b INT);
         CREATE INDEX pairs_a ON pairs (a);
         CREATE TABLE loose (id INTEGER PRIMARY KEY, tag_ref TEXT, grp INT);
         CREATE INDEX loose_grp ON loose (grp);
",
    );
    for t in 1..=40 {
        let name = if t % 7 == 0 {
            "NULL".to_string()
        } else {
            format!("'tag{}'", t % 13)
        };
        script.push_str(&format!(
            "INSERT INTO tag (id, name, weight) VALUES ({t}, {name}, {});\n",
            t % 5
        ));
    }
    for b in 1..=30 {
        script.push_str(&format!(
            "INSERT INTO book (id, title, year) VALUES ({b}, 'b{}', {});\n",
            b % 9,
            1990 + b % 4
        ));
    }
    let mut n = 0;
    for b in 1..=30 {
        for k in 0..(b % 5) {
            let t = (b * 7 + k * 11) % 45 + 1; // some tags past 40 do not exist
            n += 1;
            script.push_str(&format!(
                "INSERT INTO book_tags (id, book_id, tag_id) VALUES ({n}, {b}, {t});\n"
            ));
        }
    }
    script.push_str(
        "INSERT INTO book_tags (book_id, tag_id) VALUES (NULL, 1), (NULL, 2), (3, NULL), (4, NULL);
         INSERT INTO pairs (a, b) VALUES (1, 2), (1, 2), (1, 3), (2, 2), (NULL, 1), (2, NULL), (3, 3), (3, 3);
         INSERT INTO loose (tag_ref, grp) VALUES ('1', 1), ('2', 1), ('1.0', 1), (' 3', 1), ('x', 1), (NULL, 1), ('5', 2), (6, 2);
",
    );
    d.script(&script);
    d
}

/// Statements that join in an order other than the FROM order, and neighbours that must not.
const JOINS: &str = r#"
SELECT id, tag_id FROM book_tags WHERE book_id IN (1, 2, 3, 4, 9, 30);
SELECT (book_tags.book_id) AS _prefetch_related_val_book_id, tag.id, tag.name, tag.weight FROM tag INNER JOIN book_tags ON (tag.id = book_tags.tag_id) WHERE book_tags.book_id IN (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12);
SELECT (book_tags.book_id) AS v, tag.* FROM tag INNER JOIN book_tags ON (tag.id = book_tags.tag_id) WHERE book_tags.book_id IN (3, 3, 4, 99, NULL);
SELECT book_tags.book_id, tag.id FROM tag INNER JOIN book_tags ON tag.id = book_tags.tag_id WHERE book_tags.book_id IN (2, 5, 9) ORDER BY book_tags.book_id, tag.id;
SELECT book_tags.book_id, tag.id FROM tag INNER JOIN book_tags ON tag.id = book_tags.tag_id WHERE book_tags.book_id IN (2, 5, 9, 14, 19) ORDER BY tag.id DESC, book_tags.book_id LIMIT 4;
SELECT book_tags.book_id, tag.id FROM tag INNER JOIN book_tags ON tag.id = book_tags.tag_id WHERE book_tags.book_id IN (2, 5, 9, 14, 19) ORDER BY tag.id, book_tags.book_id LIMIT 3 OFFSET 2;
SELECT count(*) FROM tag INNER JOIN book_tags ON tag.id = book_tags.tag_id WHERE book_tags.book_id IN (2, 5, 9, 14, 19) LIMIT 1;
SELECT tag.name, book_tags.book_id FROM tag JOIN book_tags ON tag.id = book_tags.tag_id WHERE book_tags.book_id = 4;
SELECT tag.name, book_tags.book_id FROM tag, book_tags WHERE tag.id = book_tags.tag_id AND book_tags.book_id = 4;
SELECT tag.name, book_tags.book_id FROM tag CROSS JOIN book_tags WHERE book_tags.book_id = 9 AND book_tags.tag_id = tag.id;
SELECT tag.name, book.title FROM tag JOIN book_tags ON tag.id = book_tags.tag_id JOIN book ON book.id = book_tags.book_id WHERE book.id IN (2, 4, 7, 8);
SELECT tag.name, book.title, book_tags.id FROM tag JOIN book_tags ON tag.id = book_tags.tag_id JOIN book ON book.id = book_tags.book_id AND book.year = 1991 WHERE book_tags.book_id IN (1, 5, 9, 13, 17);
SELECT tag.name, book.title FROM tag JOIN book ON book.year = tag.weight + 1990 JOIN book_tags ON book_tags.book_id = book.id AND book_tags.tag_id = tag.id WHERE book_tags.book_id IN (3, 8, 13);
SELECT tag.id, book.id FROM tag, book WHERE book.id = 2 AND tag.weight = 1;
SELECT tag.id FROM tag JOIN book_tags ON tag.id = book_tags.tag_id WHERE book_tags.book_id IN (SELECT id FROM book WHERE year = 1992);
SELECT tag.id, book_tags.book_id FROM tag JOIN book_tags ON tag.id = book_tags.tag_id WHERE tag.id > 10 AND book_tags.book_id IN (3, 8, 13, 18);
SELECT tag.id, book_tags.book_id FROM tag JOIN book_tags ON tag.id = book_tags.tag_id AND tag.weight <> 2 WHERE book_tags.book_id IN (3, 8, 13, 18) AND (tag.name IS NULL OR tag.name <> 'tag3');
SELECT book_tags.book_id, count(*), max(tag.name), sum(tag.weight) FROM tag JOIN book_tags ON tag.id = book_tags.tag_id WHERE book_tags.book_id IN (1, 2, 3, 4, 8, 9) GROUP BY book_tags.book_id;
SELECT count(DISTINCT tag.name), count(tag.name), total(tag.weight) FROM tag JOIN book_tags ON tag.id = book_tags.tag_id WHERE book_tags.book_id IN (1, 2, 3, 4, 8, 9);
SELECT DISTINCT tag.weight FROM tag JOIN book_tags ON tag.id = book_tags.tag_id WHERE book_tags.book_id IN (1, 2, 3, 4, 8, 9) ORDER BY 1;
SELECT tag.name, (SELECT count(*) FROM book_tags x WHERE x.tag_id = tag.id AND x.book_id <> book_tags.book_id) FROM tag JOIN book_tags ON tag.id = book_tags.tag_id WHERE book_tags.book_id IN (1, 2, 6, 7);
SELECT tag.id FROM tag JOIN book_tags ON tag.id = book_tags.tag_id WHERE book_tags.book_id IN (1, 2, 6, 7, 11) AND EXISTS (SELECT 1 FROM book b WHERE b.id = book_tags.book_id AND b.year > 1990);
SELECT tag.id, book_tags.book_id FROM tag JOIN book_tags ON tag.id = book_tags.tag_id AND tag.id IN (SELECT t2.tag_id FROM book_tags t2 WHERE t2.book_id = book_tags.book_id + 5) WHERE book_tags.book_id IN (1, 2, 3, 4, 6, 7, 8, 9);
SELECT b.id, (SELECT count(*) FROM tag JOIN book_tags ON tag.id = book_tags.tag_id WHERE book_tags.book_id = b.id) FROM book b;
SELECT b.id FROM book b WHERE EXISTS (SELECT 1 FROM tag JOIN book_tags ON tag.id = book_tags.tag_id WHERE book_tags.book_id = b.id AND tag.weight = 3);
SELECT tag.id, book_tags.book_id, book.title FROM tag JOIN book_tags ON tag.id = book_tags.tag_id LEFT JOIN book ON book.id = book_tags.book_id AND book.year = 1993 WHERE book_tags.book_id IN (1, 2, 3, 4, 5, 6, 7);
SELECT tag.id, book_tags.book_id FROM tag LEFT JOIN book_tags ON tag.id = book_tags.tag_id WHERE book_tags.book_id IN (1, 2, 3, 4);
SELECT tag.id, book_tags.book_id FROM tag LEFT JOIN book_tags ON tag.id = book_tags.tag_id AND book_tags.book_id IN (1, 2, 3, 4);
SELECT a.id, b.id FROM tag a JOIN tag b ON a.name = b.name WHERE b.id IN (1, 2, 14);
SELECT x.book_id, y.book_id, x.tag_id FROM book_tags x JOIN book_tags y ON x.tag_id = y.tag_id WHERE y.book_id = 2;
SELECT p.a, p.b, q.a, q.b FROM pairs p JOIN pairs q ON p.b = q.a WHERE q.a IN (1, 2, 3);
SELECT p.a, p.b, tag.id FROM tag JOIN pairs p ON tag.id = p.b WHERE p.a IN (1, 3, NULL);
SELECT tag.id, loose.tag_ref FROM tag JOIN loose ON tag.id = loose.tag_ref WHERE loose.grp = 1;
SELECT tag.id, loose.tag_ref FROM tag JOIN loose ON loose.tag_ref = tag.id WHERE loose.grp IN (1, 2);
SELECT tag.id, loose.id FROM tag JOIN loose ON tag.id = loose.tag_ref + 0 WHERE loose.grp IN (1, 2);
SELECT tag.id FROM tag JOIN book_tags USING (id) WHERE book_tags.book_id IN (2, 3);
SELECT tag.name, book_tags.book_id FROM tag NATURAL JOIN book_tags WHERE book_tags.book_id IN (2, 3, 4);
"#;

#[test]
fn reordered_joins_agree_with_sqlite() {
    let mut d = library();
    d.script(JOINS);
    d.assert_clean();
}

#[test]
fn reordered_joins_with_parameters_agree_with_sqlite() {
    let mut d = library();
    let ids: Vec<i64> = (1..=30).step_by(2).collect();
    let marks = vec!["?"; ids.len()].join(", ");
    let sql = format!(
        "SELECT (book_tags.book_id) AS _prefetch_related_val_book_id, tag.id, tag.name, tag.weight FROM tag INNER JOIN book_tags ON (tag.id = book_tags.tag_id) WHERE book_tags.book_id IN ({marks})"
    );
    let params: Vec<Value> = ids.iter().map(|i| Value::Integer(*i)).collect();
    // Twice: the second run takes the cached plan.
    d.check(&sql, &params);
    d.check(&sql, &params);
    let params: Vec<Value> = (0..ids.len() as i64)
        .map(|i| {
            if i % 3 == 0 {
                Value::Null
            } else {
                Value::Integer(i)
            }
        })
        .collect();
    d.check(&sql, &params);
    d.assert_clean();
}

fn plan(d: &mut Diff, sql: &str) -> Vec<String> {
    let r =
        d.s.execute(&format!("EXPLAIN QUERY PLAN {sql}"), &Params::None)
            .expect(sql);
    sqldiff::plan_details(&r.rows)
}

#[test]
fn explain_shows_the_chosen_order() {
    let mut d = library();
    assert_eq!(
        plan(
            &mut d,
            "SELECT tag.* FROM tag INNER JOIN book_tags ON (tag.id = book_tags.tag_id) WHERE book_tags.book_id IN (1, 2)"
        ),
        [
            "SEARCH book_tags USING INDEX sqlite_autoindex_book_tags_1 (key=?)",
            "SEARCH tag USING INTEGER PRIMARY KEY (rowid=?)",
        ]
    );
    // Three tables: the restricted one first, then each through its join key.
    assert_eq!(
        plan(
            &mut d,
            "SELECT 1 FROM tag JOIN book_tags ON tag.id = book_tags.tag_id JOIN book ON book.id = book_tags.book_id WHERE book.id IN (2, 4)"
        ),
        [
            "SEARCH book USING INTEGER PRIMARY KEY (rowid=?)",
            "SEARCH book_tags USING INDEX sqlite_autoindex_book_tags_1 (key=?)",
            "SEARCH tag USING INTEGER PRIMARY KEY (rowid=?)",
        ]
    );
    // The first table is restricted itself: FROM order.
    assert_eq!(
        plan(
            &mut d,
            "SELECT 1 FROM tag JOIN book_tags ON tag.id = book_tags.tag_id WHERE tag.id = 3 AND book_tags.book_id = 2"
        ),
        [
            "SEARCH tag USING INTEGER PRIMARY KEY (rowid=?)",
            "SEARCH book_tags USING INDEX sqlite_autoindex_book_tags_1 (key=?)",
        ]
    );
    // No restriction anywhere: FROM order.
    assert_eq!(
        plan(
            &mut d,
            "SELECT 1 FROM tag JOIN book_tags ON tag.id = book_tags.tag_id"
        ),
        [
            "SCAN tag",
            "SEARCH book_tags USING INDEX book_tags_tag (key=?)"
        ]
    );
    // A LEFT JOIN keeps its place (its right side cannot drive).
    assert_eq!(
        plan(
            &mut d,
            "SELECT 1 FROM tag LEFT JOIN book_tags ON tag.id = book_tags.tag_id WHERE book_tags.book_id IN (1, 2)"
        ),
        [
            "SCAN tag",
            "SEARCH book_tags USING INDEX book_tags_tag (key=?) LEFT-JOIN"
        ]
    );
    // Inner joins before a LEFT JOIN are reordered among themselves; the LEFT JOIN follows.
    assert_eq!(
        plan(
            &mut d,
            "SELECT 1 FROM tag JOIN book_tags ON tag.id = book_tags.tag_id LEFT JOIN book ON book.id = book_tags.book_id WHERE book_tags.book_id = 5"
        ),
        [
            "SEARCH book_tags USING INDEX sqlite_autoindex_book_tags_1 (key=?)",
            "SEARCH tag USING INTEGER PRIMARY KEY (rowid=?)",
            "SEARCH book USING INTEGER PRIMARY KEY (rowid=?) LEFT-JOIN",
        ]
    );
    // A RIGHT JOIN anywhere: FROM order.
    assert_eq!(
        plan(
            &mut d,
            "SELECT 1 FROM tag JOIN book_tags ON tag.id = book_tags.tag_id RIGHT JOIN book ON book.id = book_tags.book_id WHERE book_tags.book_id = 5"
        )[0],
        "SCAN tag"
    );
}

#[test]
fn a_new_index_replans_the_cached_join() {
    let mut d = Diff::new();
    d.script(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
         CREATE TABLE l (id INTEGER PRIMARY KEY, k INT, t_id INT);
         INSERT INTO t (v) VALUES ('a'), ('b'), ('c');
         INSERT INTO l (k, t_id) VALUES (1, 1), (1, 3), (2, 2), (3, 1);",
    );
    let q = "SELECT t.v, l.k FROM t JOIN l ON t.id = l.t_id WHERE l.k IN (1, 3) ORDER BY l.id";
    let want = vec![
        vec![Value::Text("a".into()), Value::Integer(1)],
        vec![Value::Text("c".into()), Value::Integer(1)],
        vec![Value::Text("a".into()), Value::Integer(3)],
    ];
    let run = |d: &mut Diff| d.s.execute(q, &Params::None).expect("select").rows;
    assert_eq!(run(&mut d), want);
    assert_eq!(run(&mut d), want);
    let (_, misses) = d.s.plan_cache_stats();
    assert_eq!(plan(&mut d, q)[0], "SCAN t");
    d.s.execute("CREATE INDEX l_k ON l (k)", &Params::None)
        .expect("index");
    assert_eq!(run(&mut d), want);
    assert_eq!(
        d.s.plan_cache_stats().1,
        misses + 1,
        "the plan was compiled again"
    );
    assert_eq!(
        plan(&mut d, q),
        [
            "SEARCH l USING INDEX l_k (key=?)",
            "SEARCH t USING INTEGER PRIMARY KEY (rowid=?)",
            "USE TEMP B-TREE FOR ORDER BY",
        ]
    );
    d.s.execute("DROP INDEX l_k", &Params::None).expect("drop");
    assert_eq!(run(&mut d), want);
    assert_eq!(plan(&mut d, q)[0], "SCAN t");
}
