//! The SQL API bindings call: parameters (positional, numbered, named), prepared statements,
//! connection counters, transactions state, application-defined functions and REGEXP, the
//! statement cache, and SQLSTATE codes of bad SQL.

use std::sync::Arc;

use ormdb::{Database, Params, SqlState, Value};

fn session() -> (Database, ormdb::Session) {
    let db = Database::temporary().expect("db");
    let s = db.connect().sql();
    (db, s)
}

fn one(s: &mut ormdb::Session, sql: &str, p: Params) -> Value {
    let r = s.execute(sql, &p).unwrap_or_else(|e| panic!("{sql}: {e}"));
    r.rows[0][0].clone()
}

#[test]
fn parameters_bind_like_sqlite() {
    let (_db, mut s) = session();
    let p = Params::Positional(vec![Value::Integer(1), Value::from("b"), Value::Integer(3)]);
    let r = s.execute("SELECT ?, ?, ?3, ?1", &p).unwrap();
    assert_eq!(
        r.rows[0],
        vec![
            Value::Integer(1),
            Value::from("b"),
            Value::Integer(3),
            Value::Integer(1)
        ]
    );
    let named = Params::Named(vec![
        ("a".into(), Value::Integer(7)),
        (":b".into(), Value::from("x")),
    ]);
    let r = s.execute("SELECT :a, @b, :a + 1, $a", &named).unwrap();
    assert_eq!(
        r.rows[0],
        vec![
            Value::Integer(7),
            Value::from("x"),
            Value::Integer(8),
            Value::Integer(7)
        ]
    );
    // Named parameters are numbered too: they bind by position.
    let r = s
        .execute(
            "SELECT :x, :y, :x",
            &Params::Positional(vec![Value::Integer(1), Value::Integer(2)]),
        )
        .unwrap();
    assert_eq!(
        r.rows[0],
        vec![Value::Integer(1), Value::Integer(2), Value::Integer(1)]
    );
    let err = s
        .execute(
            "SELECT ?",
            &Params::Positional(vec![Value::Integer(1), Value::Integer(2)]),
        )
        .unwrap_err();
    assert_eq!(err.state, SqlState::InvalidParameter);
    let err = s
        .execute("SELECT ?, ?", &Params::Positional(vec![Value::Integer(1)]))
        .unwrap_err();
    assert_eq!(err.state, SqlState::InvalidParameter);
    let prep = s.prepare("SELECT ?2, :name, ?").unwrap();
    assert_eq!(prep.parameter_count, 4);
    assert_eq!(
        prep.parameter_names,
        vec![None, None, Some(":name".to_string()), None]
    );
    let r = s
        .execute_prepared(
            &prep,
            &Params::Positional(vec![1.into(), 2.into(), 3.into(), 4.into()]),
        )
        .unwrap();
    assert_eq!(
        r.rows[0],
        vec![Value::Integer(2), Value::Integer(3), Value::Integer(4)]
    );
}

#[test]
fn counters_transactions_and_cache() {
    let (_db, mut s) = session();
    s.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t (v) VALUES ('a'), ('b');",
    )
    .unwrap();
    assert_eq!(s.changes(), 2);
    assert_eq!(s.last_insert_rowid(), 2);
    let r = s
        .execute("UPDATE t SET v = v || '!'", &Params::None)
        .unwrap();
    assert_eq!(r.rows_affected, 2);
    assert_eq!(s.total_changes(), 4);
    assert!(!s.in_transaction());
    s.execute("BEGIN", &Params::None).unwrap();
    assert!(s.in_transaction());
    s.execute("INSERT INTO t (v) VALUES ('c')", &Params::None)
        .unwrap();
    // A failing statement inside a transaction undoes only itself.
    assert!(s
        .execute("INSERT INTO t (id, v) VALUES (1, 'dup')", &Params::None)
        .is_err());
    s.execute("COMMIT", &Params::None).unwrap();
    assert_eq!(
        one(&mut s, "SELECT count(*) FROM t", Params::None),
        Value::Integer(3)
    );
    let (hits_before, _) = s.cache_stats();
    for _ in 0..3 {
        s.execute(
            "SELECT v FROM t WHERE id = ?",
            &Params::Positional(vec![Value::Integer(1)]),
        )
        .unwrap();
    }
    assert!(
        s.cache_stats().0 >= hits_before + 2,
        "{:?}",
        s.cache_stats()
    );
    let r = s
        .execute("SELECT id, v AS value FROM t WHERE id = 1", &Params::None)
        .unwrap();
    assert_eq!(r.columns, vec!["id", "value"]);
    assert_eq!(
        r.decl_types,
        vec![Some("INTEGER".to_string()), Some("TEXT".to_string())]
    );
}

#[test]
fn application_functions_and_regexp() {
    let (_db, mut s) = session();
    let err = s
        .execute("SELECT 'abc' REGEXP 'b'", &Params::None)
        .unwrap_err();
    assert_eq!(err.state, SqlState::FeatureNotSupported);
    assert!(err.message.contains("REGEXP"), "{err}");
    s.create_function(
        "regexp",
        Some(2),
        ormdb::sql::UserFunction {
            func: Arc::new(|args: &[Value]| {
                // a tiny "contains" stand-in for a regex engine
                Ok(match (&args[0], &args[1]) {
                    (Value::Text(p), Value::Text(t)) => {
                        Value::Integer(t.contains(p.as_str()) as i64)
                    }
                    _ => Value::Null,
                })
            }),
            deterministic: true,
        },
    );
    assert_eq!(
        one(&mut s, "SELECT 'abc' REGEXP 'b'", Params::None),
        Value::Integer(1)
    );
    assert_eq!(
        one(&mut s, "SELECT 'abc' NOT REGEXP 'z'", Params::None),
        Value::Integer(1)
    );
    s.create_function(
        "double",
        Some(1),
        ormdb::sql::UserFunction {
            func: Arc::new(|a: &[Value]| {
                Ok(match a[0] {
                    Value::Integer(i) => Value::Integer(i * 2),
                    _ => Value::Null,
                })
            }),
            deterministic: true,
        },
    );
    s.execute_batch("CREATE TABLE n (x INTEGER); INSERT INTO n VALUES (1), (2), (3);")
        .unwrap();
    assert_eq!(
        one(
            &mut s,
            "SELECT sum(double(x)) FROM n WHERE double(x) > 2",
            Params::None
        ),
        Value::Integer(10)
    );
    // Overriding a built-in, and errors raised by the function.
    s.create_function(
        "upper",
        Some(1),
        ormdb::sql::UserFunction {
            func: Arc::new(|_: &[Value]| Ok(Value::from("overridden"))),
            deterministic: true,
        },
    );
    assert_eq!(
        one(&mut s, "SELECT upper('x')", Params::None),
        Value::from("overridden")
    );
    s.create_function(
        "fail",
        Some(0),
        ormdb::sql::UserFunction {
            func: Arc::new(|_: &[Value]| Err(ormdb::Error::invalid("boom"))),
            deterministic: false,
        },
    );
    let err = s.execute("SELECT fail()", &Params::None).unwrap_err();
    assert!(err.message.contains("boom"));
    s.remove_function("upper", Some(1));
    assert_eq!(
        one(&mut s, "SELECT upper('x')", Params::None),
        Value::from("X")
    );
}

#[test]
fn bad_sql_has_sqlstates() {
    let (_db, mut s) = session();
    s.execute("CREATE TABLE t (a INT)", &Params::None).unwrap();
    let cases: &[(&str, SqlState)] = &[
        ("SELEC 1", SqlState::SyntaxError),
        ("SELECT * FROM nope", SqlState::UndefinedTable),
        ("SELECT b FROM t", SqlState::UndefinedColumn),
        ("SELECT a FROM t ORDER BY 2", SqlState::SyntaxError),
        (
            "SELECT count(*) FROM t WHERE count(*) > 0",
            SqlState::SyntaxError,
        ),
        (
            "SELECT * FROM t RIGHT JOIN t u USING (a)",
            SqlState::FeatureNotSupported,
        ),
        (
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) SELECT n FROM c",
            SqlState::LimitExceeded,
        ),
        (
            "SELECT ntile(2) OVER (ORDER BY a) FROM t",
            SqlState::FeatureNotSupported,
        ),
        ("CREATE TABLE u AS SELECT 1", SqlState::FeatureNotSupported),
        ("PRAGMA no_such_pragma", SqlState::FeatureNotSupported),
        (
            "SELECT a COLLATE NOCASE FROM t",
            SqlState::FeatureNotSupported,
        ),
        ("SELECT no_such_function(1)", SqlState::FeatureNotSupported),
        ("DROP TABLE sqlite_sequence", SqlState::FeatureNotSupported),
        ("COMMIT", SqlState::InvalidTransactionState),
        (
            "INSERT INTO t (a) VALUES (1), (1, 2)",
            SqlState::SyntaxError,
        ),
        ("", SqlState::SyntaxError),
    ];
    for (sql, state) in cases {
        match s.execute(sql, &Params::None) {
            Ok(r) if sql.is_empty() => assert!(r.rows.is_empty()),
            Ok(r) => panic!("{sql}: expected {state:?}, got {r:?}"),
            Err(e) => assert_eq!(e.state, *state, "{sql}: {e}"),
        }
    }
}

#[test]
fn equality_and_in_use_key_and_index_lookups() {
    let (_db, mut s) = session();
    s.execute_batch(
        "CREATE TABLE u (id INTEGER PRIMARY KEY, email TEXT UNIQUE, team INT, name TEXT);
         CREATE INDEX u_team ON u (team);
         CREATE TABLE p (id INTEGER PRIMARY KEY, author INT REFERENCES u(id), title TEXT);",
    )
    .unwrap();
    s.execute("BEGIN", &Params::None).unwrap();
    for i in 1..=500 {
        s.execute(
            "INSERT INTO u (email, team, name) VALUES (?, ?, ?)",
            &Params::Positional(vec![
                Value::from(format!("u{i}@x")),
                Value::Integer(i % 50),
                Value::from(format!("n{i}")),
            ]),
        )
        .unwrap();
        s.execute(
            "INSERT INTO p (author, title) VALUES (?, 't')",
            &Params::Positional(vec![Value::Integer(i)]),
        )
        .unwrap();
    }
    s.execute("COMMIT", &Params::None).unwrap();
    let cases: &[(&str, Vec<Value>, u64, usize)] = &[
        (
            "SELECT name FROM u WHERE id = ?",
            vec![Value::Integer(42)],
            1,
            1,
        ),
        (
            "SELECT name FROM u WHERE id = ?",
            vec![Value::from("42")],
            1,
            1,
        ),
        (
            "SELECT name FROM u WHERE rowid IN (?, ?, ?)",
            vec![1.into(), 2.into(), 999.into()],
            2,
            2,
        ),
        (
            "SELECT id FROM u WHERE email = ?",
            vec![Value::from("u7@x")],
            1,
            1,
        ),
        (
            "SELECT id FROM u WHERE team = ? AND name LIKE 'n%'",
            vec![Value::Integer(3)],
            10,
            10,
        ),
        (
            "SELECT u.name, p.title FROM u JOIN p ON p.author = u.id WHERE u.id IN (?, ?)",
            vec![5.into(), 6.into()],
            4,
            2,
        ),
        (
            "SELECT count(*) FROM p WHERE author = ?",
            vec![Value::Integer(9)],
            1,
            1,
        ),
        (
            "SELECT name FROM u WHERE id > ? AND id <= ?",
            vec![Value::Integer(100), Value::Integer(110)],
            10,
            10,
        ),
        (
            "SELECT name FROM u WHERE id BETWEEN ? AND ?",
            vec![Value::Real(10.5), Value::from("14")],
            4,
            4,
        ),
        (
            "SELECT id FROM u WHERE team >= ? AND team < ?",
            vec![Value::Integer(48), Value::Integer(50)],
            20,
            20,
        ),
        (
            "SELECT id FROM u WHERE email > ? AND email < ?",
            vec![Value::from("u20"), Value::from("u21")],
            20,
            11,
        ),
    ];
    for (sql, params, max_read, rows) in cases {
        let r = s.execute(sql, &Params::Positional(params.clone())).unwrap();
        assert_eq!(
            r.rows.len().max(if sql.contains("count") { 1 } else { 0 }),
            *rows,
            "{sql}"
        );
        assert!(
            s.last_rows_read() <= *max_read,
            "{sql}: read {} rows (lookup not used)",
            s.last_rows_read()
        );
    }
    // Without a usable predicate the table is scanned.
    s.execute("SELECT count(*) FROM u WHERE name = 'n1'", &Params::None)
        .unwrap();
    assert_eq!(s.last_rows_read(), 500);
}

#[test]
fn hostile_input_never_panics() {
    let (_db, mut s) = session();
    s.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b REAL); INSERT INTO t VALUES (1, 'x', 1.5);")
        .unwrap();
    let mut inputs: Vec<String> = [
        "pragmé x", "PRAGMA", "PRAGMA (", "PRAGMA table_info(", "PRAGMA a.b.c", "PRAGMA foreign_keys = maybe",
        "SELECT X'zz'", "SELECT X'é1'", "SELECT '", "SELECT \"", "SELECT [", "SELECT 1 FROM t WHERE",
        "SELECT ?99999", "SELECT ?0", "SELECT :", "SELECT @", "SELECT $", "SELECT 1;;;", ";", "  -- only a comment",
        "/* unterminated", "SELECT substr('é', 2, 1), printf('%', 1), printf('%.*f', -1, 1.5), printf('%5', 1)",
        "SELECT json_extract('{}', 'nope')", "SELECT json_extract('[1]', '$[')", "SELECT strftime('%', 'now')",
        "SELECT date('é'), date('2024-13-45'), datetime(1e300), julianday('x', 'start of é'), datetime(1e300, 'unixepoch'), date(0, '+1e300 days')",
        "SELECT zeroblob(1e18)", "SELECT 1 << 1000, 1 >> -1000, -9223372036854775808 / -1, -9223372036854775808 % -1",
        "SELECT abs(-9223372036854775808)", "SELECT sum(a) FROM (SELECT 9223372036854775807 AS a UNION ALL SELECT 1)",
        "SELECT * FROM t LIMIT 'x'", "SELECT * FROM t LIMIT 1e30", "SELECT a FROM t ORDER BY 0",
        "CREATE TABLE é (x)", "CREATE TABLE z (x DEFAULT (x + 1))", "CREATE TABLE z2 (x CHECK (nosuchfn(x)))",
        "ALTER TABLE t RENAME COLUMN nope TO x", "ALTER TABLE t ADD COLUMN c INT NOT NULL", "DROP INDEX sqlite_autoindex_t_1",
        "INSERT INTO t VALUES (1)", "INSERT INTO t (id) SELECT 1, 2", "UPDATE t SET nope = 1", "DELETE FROM nope",
        "SELECT (SELECT 1, 2)", "SELECT 1 IN (SELECT 1, 2)", "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT 'a' FROM r LIMIT 2) SELECT * FROM r",
        "SELECT * FROM t a JOIN t b USING (nope)", "SELECT t.* FROM t AS u", "SELECT 1 GROUP BY 2", "SELECT count(*) GROUP BY count(*)",
        "SELECT a FROM t WHERE a LIKE 'x' ESCAPE 'ab'", "SELECT char(1114112, -1), unicode(''), hex(zeroblob(2))",
        "SAVEPOINT a; ROLLBACK TO b", "RELEASE nothing", "BEGIN; BEGIN", "COMMIT; COMMIT",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Random byte soup built from SQL fragments.
    let frags = [
        "SELECT", " ", "(", ")", "'", "\"", ",", "*", "FROM t", "WHERE", "?", ":x", "1", "-", "||",
        "é", "/*", "--", ";", "x'", "CASE", "END", "IN", "NULL", "JOIN", "ON",
    ];
    let mut seed = 0x1234_5678_9abc_def1u64;
    for _ in 0..2000 {
        let mut q = String::new();
        for _ in 0..(seed % 12 + 1) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            q.push_str(frags[(seed % frags.len() as u64) as usize]);
        }
        inputs.push(q);
    }
    for q in &inputs {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = s.execute(q, &Params::None);
        }));
        assert!(r.is_ok(), "panicked on {q:?}");
    }
    // The session is still usable.
    let _ = s.execute("ROLLBACK", &Params::None);
    assert_eq!(
        one(&mut s, "SELECT count(*) FROM t", Params::None),
        Value::Integer(1)
    );
}

#[test]
fn session_can_move_between_threads() {
    // Bindings keep a Session inside a Python/Node/Java object that may move across threads.
    fn assert_send<T: Send>() {}
    assert_send::<ormdb::Session>();
    let (_db, mut s) = session();
    let h = std::thread::spawn(move || {
        s.execute("SELECT 1", &Params::None).unwrap();
        s
    });
    let mut s = h.join().unwrap();
    assert_eq!(one(&mut s, "SELECT 2", Params::None), Value::Integer(2));
}

#[test]
fn statement_cache_and_latency_are_in_metrics() {
    let (db, mut s) = session();
    s.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
    for i in 0..5 {
        s.execute(
            "INSERT INTO t VALUES (?)",
            &Params::Positional(vec![Value::Integer(i)]),
        )
        .unwrap();
    }
    let m = db.metrics_text();
    let get = |name: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    assert_eq!(get("ormdb_sql_statements_total"), 6);
    assert_eq!(get("ormdb_sql_statement_cache_hits_total"), 4);
    assert_eq!(get("ormdb_sql_statement_cache_misses_total"), 2);
    assert_eq!(get("ormdb_sql_statement_duration_seconds_count"), 6);
}
