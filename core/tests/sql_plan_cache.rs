//! The compiled-plan cache of SQL sessions (a SELECT compiled once per text and schema, with
//! parameter slots instead of values) and ordered index reads (ORDER BY on an indexed column
//! reads the index in order and stops at the LIMIT). Differential against SQLite where results
//! are compared.

mod sqldiff;

use ormdb::{Database, Durability, Options, Params, Value};
use sqldiff::Diff;

fn int(i: i64) -> Value {
    Value::Integer(i)
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn metric(db: &Database, name: &str) -> u64 {
    db.metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing"))
}

fn db() -> Database {
    Database::temporary_with(Options::default().durability(Durability::Normal)).expect("db")
}

#[test]
fn repeated_select_hits_the_plan_cache() {
    let db = db();
    let mut s = db.connect().sql();
    s.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT); INSERT INTO t (a) VALUES ('x'), ('y'), ('z')")
        .expect("setup");
    let q = "SELECT a FROM t WHERE id = ?";
    for (id, want) in [(1, "x"), (2, "y"), (3, "z"), (1, "x")] {
        let r = s
            .execute(q, &Params::Positional(vec![int(id)]))
            .expect("select");
        assert_eq!(r.rows, vec![vec![text(want)]]);
    }
    // The setup's INSERT was a miss too (writes are cached plans as well).
    assert_eq!(s.plan_cache_stats(), (3, 2));
    assert_eq!(metric(&db, "ormdb_sql_plan_cache_hits_total"), 3);
    assert_eq!(metric(&db, "ormdb_sql_plan_cache_misses_total"), 2);
    assert_eq!(metric(&db, "ormdb_sql_plan_cache_invalidations_total"), 0);
    // A write does not invalidate a SELECT's plan (the schema is unchanged).
    s.execute(
        "UPDATE t SET a = ? WHERE id = ?",
        &vec![text("w"), int(1)].into(),
    )
    .expect("update");
    assert_eq!(s.plan_cache_stats(), (3, 3));
    let r = s.execute(q, &vec![int(1)].into()).expect("select");
    assert_eq!(r.rows, vec![vec![text("w")]]);
    assert_eq!(s.plan_cache_stats(), (4, 3));
}

#[test]
fn ddl_in_another_session_invalidates_the_plan() {
    let db = db();
    let mut a = db.connect().sql();
    let mut b = db.connect().sql();
    a.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT); INSERT INTO t (a) VALUES ('x')",
    )
    .expect("setup");
    let q = "SELECT * FROM t";
    assert_eq!(
        a.execute(q, &Params::None).expect("select").columns,
        ["id", "a"]
    );
    a.execute(q, &Params::None).expect("select");
    // (The setup's INSERT is one more miss.)
    assert_eq!(a.plan_cache_stats(), (1, 2));
    b.execute(
        "ALTER TABLE t ADD COLUMN n INTEGER DEFAULT 7",
        &Params::None,
    )
    .expect("alter");
    let r = a.execute(q, &Params::None).expect("select after alter");
    assert_eq!(r.columns, ["id", "a", "n"]);
    assert_eq!(r.rows, vec![vec![int(1), text("x"), int(7)]]);
    assert_eq!(a.plan_cache_stats(), (1, 3));
    assert_eq!(metric(&db, "ormdb_sql_plan_cache_invalidations_total"), 1);
    // A new index changes the access path of a cached plan.
    let eqp = "EXPLAIN QUERY PLAN SELECT a FROM t WHERE a = ?";
    let sel = "SELECT a FROM t WHERE a = ?";
    a.execute(sel, &vec![text("x")].into()).expect("select");
    b.execute("CREATE INDEX t_a ON t (a)", &Params::None)
        .expect("index");
    let r = a.execute(sel, &vec![text("x")].into()).expect("select");
    assert_eq!(r.rows, vec![vec![text("x")]]);
    assert_eq!(
        a.last_rows_read(),
        1,
        "the recompiled plan reads through t_a"
    );
    let plan = a.execute(eqp, &vec![text("x")].into()).expect("eqp");
    assert!(format!("{:?}", plan.rows).contains("USING INDEX t_a"));
    // A dropped table: the cached plan is not run against a missing table.
    b.execute("DROP TABLE t", &Params::None).expect("drop");
    let e = a.execute(q, &Params::None).expect_err("table is gone");
    assert_eq!(e.state.code(), "42P01", "{e}");
}

#[test]
fn ddl_rolled_back_in_the_same_session() {
    let db = db();
    let mut s = db.connect().sql();
    s.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT); INSERT INTO t (a) VALUES ('x')",
    )
    .expect("setup");
    let q = "SELECT * FROM t";
    s.execute(q, &Params::None).expect("select");
    s.execute_batch("BEGIN; ALTER TABLE t ADD COLUMN b TEXT")
        .expect("alter");
    assert_eq!(
        s.execute(q, &Params::None).expect("in tx").columns,
        ["id", "a", "b"]
    );
    s.execute_batch("ALTER TABLE t ADD COLUMN c TEXT")
        .expect("alter 2");
    assert_eq!(
        s.execute(q, &Params::None).expect("in tx").columns,
        ["id", "a", "b", "c"]
    );
    s.execute_batch("ROLLBACK").expect("rollback");
    assert_eq!(
        s.execute(q, &Params::None).expect("after").columns,
        ["id", "a"]
    );
    // Temporary tables shadow main ones: creating one changes what a cached text reads.
    s.execute_batch("CREATE TEMP TABLE t (z TEXT); INSERT INTO t VALUES ('temp')")
        .expect("temp");
    let r = s.execute(q, &Params::None).expect("temp select");
    assert_eq!(r.columns, ["z"]);
    assert_eq!(r.rows, vec![vec![text("temp")]]);
}

#[test]
fn replaced_function_invalidates_the_plan() {
    let db = db();
    let mut s = db.connect().sql();
    let constant = |v: i64| ormdb::sql::UserFunction {
        func: std::sync::Arc::new(move |_: &[Value]| Ok(int(v))),
        deterministic: true,
    };
    s.create_function("f", Some(0), constant(1));
    assert_eq!(
        s.execute("SELECT f()", &Params::None).expect("f").rows,
        vec![vec![int(1)]]
    );
    s.create_function("f", Some(0), constant(2));
    assert_eq!(
        s.execute("SELECT f()", &Params::None).expect("f").rows,
        vec![vec![int(2)]]
    );
    assert!(s.remove_function("f", Some(0)));
    assert!(s.execute("SELECT f()", &Params::None).is_err());
}

/// Parameter values are bound per execution, never compiled into the cached plan: the same
/// text with values of other types, NULLs, IN lists padded with NULL, LIMIT/OFFSET parameters,
/// numbered and named parameters, against SQLite.
#[test]
fn parameters_are_not_baked_into_cached_plans() {
    let mut d = Diff::new();
    d.script(
        "CREATE TABLE p (id INTEGER PRIMARY KEY, n INTEGER, t TEXT, r REAL);
CREATE INDEX p_n ON p (n);
INSERT INTO p (n, t, r) VALUES (1, 'a', 1.5), (2, 'b', 2.5), (3, '10', NULL), (NULL, 'c', 4.0), (2, '2', 0.5);",
    );
    let cases: Vec<(&str, Vec<Vec<Value>>)> = vec![
        (
            "SELECT id FROM p WHERE n = ? ORDER BY id",
            vec![
                vec![int(2)],
                vec![text("2")],
                vec![Value::Real(2.0)],
                vec![Value::Null],
                vec![text("x")],
            ],
        ),
        (
            "SELECT id FROM p WHERE t = ? ORDER BY id",
            vec![
                vec![int(10)],
                vec![text("10")],
                vec![int(2)],
                vec![Value::Real(10.0)],
            ],
        ),
        (
            "SELECT id FROM p WHERE n IN (?, ?, NULL) ORDER BY id",
            vec![
                vec![int(1), int(3)],
                vec![text("2"), Value::Null],
                vec![Value::Null, Value::Null],
            ],
        ),
        (
            "SELECT id FROM p WHERE t IN (?, ?) ORDER BY id",
            vec![vec![int(10), int(2)], vec![text("a"), Value::Real(2.0)]],
        ),
        (
            "SELECT id FROM p ORDER BY id LIMIT ? OFFSET ?",
            vec![
                vec![int(2), int(1)],
                vec![int(-1), int(3)],
                vec![int(0), int(0)],
            ],
        ),
        (
            "SELECT id, ?2 || ?1 FROM p WHERE id > ?1 ORDER BY id",
            vec![vec![int(3), text("z")], vec![text("1"), int(5)]],
        ),
        (
            "SELECT id FROM p WHERE n = :k OR t = :k ORDER BY id",
            vec![vec![int(2)], vec![text("c")]],
        ),
        (
            "SELECT id FROM p WHERE r BETWEEN ? AND ? ORDER BY r DESC",
            vec![vec![int(1), int(3)], vec![Value::Real(0.5), text("2.5")]],
        ),
        (
            "SELECT (SELECT count(*) FROM p WHERE n > ?), ? + 1",
            vec![vec![int(1), int(2)], vec![int(0), text("4")]],
        ),
        (
            "SELECT t FROM p WHERE t LIKE ? ORDER BY t",
            vec![vec![text("%")], vec![text("1%")], vec![text("_")]],
        ),
    ];
    // Twice: the second round runs every text from its cached plan.
    for _ in 0..2 {
        for (sql, runs) in &cases {
            for args in runs {
                d.check(sql, args);
            }
        }
    }
    d.assert_clean();
    let (hits, misses) = d.s.plan_cache_stats();
    assert!(
        misses <= cases.len() as u64 + 1,
        "{hits} hits, {misses} misses"
    );
    assert!(hits >= 30, "{hits} hits, {misses} misses");
}

fn ordered_fixture(d: &mut Diff) {
    d.script(
        "CREATE TABLE o (id INTEGER PRIMARY KEY, n INTEGER, g INTEGER, s TEXT, c TEXT COLLATE NOCASE);
CREATE INDEX o_n ON o (n);
CREATE INDEX o_gn ON o (g, n);
CREATE INDEX o_s ON o (s);
CREATE INDEX o_c ON o (c);",
    );
    // Ties, NULLs, mixed types, case variants.
    let mut vals = Vec::new();
    for i in 0..300i64 {
        let n = if i % 17 == 0 {
            "NULL".to_string()
        } else if i % 23 == 0 {
            format!("{}.5", (i * 7) % 50)
        } else {
            ((i * 37) % 50).to_string()
        };
        let s = match i % 5 {
            0 => "NULL".to_string(),
            1 => format!("'b{}'", i % 13),
            2 => format!("'B{}'", i % 11),
            3 => format!("{}", i % 7),
            _ => format!("'a{}'", i % 3),
        };
        vals.push(format!("({n}, {}, {s}, {s})", i % 4));
    }
    d.check(
        &format!("INSERT INTO o (n, g, s, c) VALUES {}", vals.join(", ")),
        &[],
    );
}

#[test]
fn ordered_index_reads_match_sqlite() {
    let mut d = Diff::new();
    ordered_fixture(&mut d);
    let queries: Vec<(&str, Vec<Value>)> = vec![
        ("SELECT id, n FROM o ORDER BY n, id LIMIT 10", vec![]),
        (
            "SELECT id, n FROM o ORDER BY n DESC, id DESC LIMIT 10",
            vec![],
        ),
        ("SELECT id, n FROM o ORDER BY n LIMIT 5 OFFSET 20", vec![]),
        (
            "SELECT id, n FROM o ORDER BY n DESC LIMIT 7 OFFSET 280",
            vec![],
        ),
        (
            "SELECT id, n FROM o ORDER BY n NULLS LAST, id LIMIT 12",
            vec![],
        ),
        (
            "SELECT id, n FROM o ORDER BY n DESC NULLS FIRST, id LIMIT 12",
            vec![],
        ),
        (
            "SELECT id, n FROM o WHERE n > ? ORDER BY n, id LIMIT 8",
            vec![int(40)],
        ),
        (
            "SELECT id, n FROM o WHERE n BETWEEN ? AND ? ORDER BY n DESC, id DESC LIMIT 9",
            vec![int(10), int(20)],
        ),
        (
            "SELECT id, n FROM o WHERE n < ? ORDER BY n, id LIMIT 5",
            vec![int(3)],
        ),
        (
            "SELECT id, n FROM o WHERE n >= ? AND id % 3 = 0 ORDER BY n, id LIMIT 6",
            vec![text("5")],
        ),
        (
            "SELECT id FROM o WHERE n = ? ORDER BY id LIMIT 3",
            vec![int(11)],
        ),
        (
            "SELECT id FROM o WHERE n = ? ORDER BY id DESC",
            vec![int(11)],
        ),
        (
            "SELECT id, n FROM o WHERE g = ? ORDER BY n, id LIMIT 10",
            vec![int(2)],
        ),
        (
            "SELECT id, n FROM o WHERE g = ? AND n > ? ORDER BY n DESC, id DESC LIMIT 4",
            vec![int(1), int(30)],
        ),
        (
            "SELECT id, n FROM o WHERE g = ? ORDER BY n DESC, id DESC LIMIT 3 OFFSET 2",
            vec![int(3)],
        ),
        ("SELECT id, s FROM o ORDER BY s, id LIMIT 15", vec![]),
        (
            "SELECT id, s FROM o ORDER BY s DESC, id DESC LIMIT 15",
            vec![],
        ),
        ("SELECT id, c FROM o ORDER BY c, id LIMIT 15", vec![]),
        (
            "SELECT id, c FROM o ORDER BY c COLLATE BINARY, id LIMIT 15",
            vec![],
        ),
        (
            "SELECT id, s FROM o ORDER BY s COLLATE NOCASE, id LIMIT 15",
            vec![],
        ),
        (
            "SELECT id, n FROM o WHERE n > 1000 ORDER BY n LIMIT 3",
            vec![],
        ),
        ("SELECT id, n FROM o ORDER BY n, id LIMIT 0", vec![]),
        (
            "SELECT id, n FROM o ORDER BY n, id LIMIT -1 OFFSET 290",
            vec![],
        ),
        (
            "SELECT n, count(*) FROM o GROUP BY n ORDER BY n LIMIT 5",
            vec![],
        ),
        ("SELECT DISTINCT n FROM o ORDER BY n LIMIT 5", vec![]),
        (
            "SELECT id, n FROM o WHERE n IN (3, 4, 5) ORDER BY n, id LIMIT 4",
            vec![],
        ),
    ];
    for (sql, args) in &queries {
        d.check(sql, args);
    }
    // After writes in a transaction (index entry hints merged in both directions).
    d.check("BEGIN", &[]);
    d.check(
        "INSERT INTO o (n, g, s) VALUES (-5, 2, 'zz'), (100, 2, 'a'), (12, 2, NULL)",
        &[],
    );
    d.check("UPDATE o SET n = n + 1 WHERE id % 10 = 0", &[]);
    d.check("DELETE FROM o WHERE id % 9 = 0", &[]);
    for (sql, args) in &queries {
        d.check(sql, args);
    }
    d.check("COMMIT", &[]);
    d.assert_clean();
}

#[test]
fn ordered_index_read_stops_at_the_limit() {
    let mut d = Diff::new();
    ordered_fixture(&mut d);
    let s = &mut d.s;
    let plan = |s: &mut ormdb::Session, sql: &str| -> Vec<String> {
        s.execute(&format!("EXPLAIN QUERY PLAN {sql}"), &Params::None)
            .expect("eqp")
            .rows
            .into_iter()
            .map(|r| match &r[3] {
                Value::Text(t) => t.clone(),
                other => panic!("{other:?}"),
            })
            .collect()
    };
    assert_eq!(
        plan(s, "SELECT id FROM o ORDER BY n LIMIT 5"),
        ["SCAN o USING INDEX o_n"]
    );
    assert_eq!(
        plan(s, "SELECT id FROM o WHERE n > 3 ORDER BY n DESC LIMIT 5"),
        ["SEARCH o USING INDEX o_n (key>?)"]
    );
    assert_eq!(
        plan(s, "SELECT id FROM o WHERE g = 1 ORDER BY n LIMIT 5"),
        ["SEARCH o USING INDEX o_gn (key=?)"]
    );
    // Index keys compare as BINARY: a term sorted by another collation is sorted (o_c is a
    // plain index on a NOCASE column: it keeps raw values).
    assert_eq!(
        plan(s, "SELECT id FROM o ORDER BY c LIMIT 5"),
        ["SCAN o", "USE TEMP B-TREE FOR ORDER BY"]
    );
    assert_eq!(
        plan(s, "SELECT id FROM o ORDER BY c COLLATE BINARY LIMIT 5"),
        ["SCAN o USING INDEX o_c"]
    );
    assert_eq!(
        plan(s, "SELECT id FROM o ORDER BY s COLLATE NOCASE LIMIT 5"),
        ["SCAN o", "USE TEMP B-TREE FOR ORDER BY"]
    );
    assert_eq!(
        plan(s, "SELECT id FROM o ORDER BY s COLLATE BINARY LIMIT 5"),
        ["SCAN o USING INDEX o_s"]
    );
    // Mixed directions, NULLS LAST ascending, an expression: sorted.
    for q in [
        "SELECT id FROM o ORDER BY n, id DESC LIMIT 5",
        "SELECT id FROM o ORDER BY n NULLS LAST LIMIT 5",
        "SELECT id FROM o ORDER BY n + 1 LIMIT 5",
    ] {
        assert!(
            plan(s, q).contains(&"USE TEMP B-TREE FOR ORDER BY".to_string()),
            "{q}"
        );
    }
    // No LIMIT and no predicate: a scan and a sort beat reading every row through the index.
    assert_eq!(
        plan(s, "SELECT id FROM o ORDER BY n"),
        ["SCAN o", "USE TEMP B-TREE FOR ORDER BY"]
    );
    s.execute("SELECT id FROM o ORDER BY n LIMIT 5", &Params::None)
        .expect("select");
    assert!(s.last_rows_read() <= 16, "read {}", s.last_rows_read());
    s.execute(
        "SELECT id FROM o WHERE n > ? ORDER BY n DESC LIMIT 3",
        &vec![int(10)].into(),
    )
    .expect("select");
    assert!(s.last_rows_read() <= 16, "read {}", s.last_rows_read());
    // A filter that rejects most rows: the read grows until enough rows pass.
    let r = s
        .execute(
            "SELECT id FROM o WHERE id % 50 = 0 ORDER BY n LIMIT 4",
            &Params::None,
        )
        .expect("select");
    assert_eq!(r.rows.len(), 4);
}
