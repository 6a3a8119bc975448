//! Cached plans of INSERT / UPDATE / DELETE: a write is compiled once per text and schema and
//! run again with new parameters. Every case runs differentially against SQLite (values, row
//! counts, last insert ids, error classes), with the cached plan re-executed across schema
//! changes that must invalidate it. Tables that lose rows use AUTOINCREMENT, so SQLite does not
//! reuse the largest row id after a DELETE (ORMDB never does, see COMPAT.md).

mod sqldiff;

use ormdb::{Database, Durability, Options, Params, Value};
use sqldiff::{Diff, Res};

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

/// The connection counters, compared after each write.
const COUNTERS: &str = "SELECT last_insert_rowid(), changes(), total_changes()";

/// Runs `sql` with `params` on both engines, then compares the connection counters.
fn write(d: &mut Diff, sql: &str, params: &[Value]) {
    d.check(sql, params);
    d.check(COUNTERS, &[]);
}

#[test]
fn repeated_writes_hit_the_plan_cache() {
    let db =
        Database::temporary_with(Options::default().durability(Durability::Normal)).expect("db");
    let mut s = db.connect().sql();
    s.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER NOT NULL, b TEXT)")
        .expect("setup");
    let ins = "INSERT INTO t (a, b) VALUES (?, ?)";
    for i in 0..5 {
        let r = s
            .execute(ins, &vec![int(i), text(&format!("r{i}"))].into())
            .expect("insert");
        assert_eq!((r.rows_affected, r.last_insert_rowid), (1, i + 1));
    }
    assert_eq!(s.plan_cache_stats(), (4, 1));
    let upd = "UPDATE t SET a = a + ? WHERE id = ?";
    for id in 1..=3 {
        let r = s
            .execute(upd, &vec![int(10), int(id)].into())
            .expect("update");
        assert_eq!(r.rows_affected, 1);
    }
    let del = "DELETE FROM t WHERE id = ?";
    for id in [2, 2, 4] {
        s.execute(del, &vec![int(id)].into()).expect("delete");
    }
    assert_eq!(s.changes(), 1);
    // Inside an explicit transaction the plans are reused too.
    s.execute_batch("BEGIN").expect("begin");
    for i in 10..13 {
        s.execute(ins, &vec![int(i), Value::Null].into())
            .expect("insert");
    }
    s.execute_batch("COMMIT").expect("commit");
    assert_eq!(s.plan_cache_stats(), (4 + 2 + 2 + 3, 3));
    assert_eq!(metric(&db, "ormdb_sql_plan_cache_hits_total"), 11);
    assert_eq!(metric(&db, "ormdb_sql_plan_cache_misses_total"), 3);
    let r = s
        .execute("SELECT id, a, b FROM t ORDER BY id", &Params::None)
        .expect("select");
    assert_eq!(
        r.rows,
        vec![
            vec![int(1), int(10), text("r0")],
            vec![int(3), int(12), text("r2")],
            vec![int(5), int(4), text("r4")],
            vec![int(6), int(10), Value::Null],
            vec![int(7), int(11), Value::Null],
            vec![int(8), int(12), Value::Null],
        ]
    );
}

#[test]
fn cached_writes_with_new_parameters_match_sqlite() {
    let mut d = Diff::new();
    d.script(
        "CREATE TABLE p (id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER, t TEXT UNIQUE, r REAL DEFAULT 1.5, ts TEXT DEFAULT CURRENT_DATE);
CREATE TABLE c (id INTEGER PRIMARY KEY AUTOINCREMENT, p_id INTEGER REFERENCES p (id) ON DELETE CASCADE, v TEXT);",
    );
    let cases: Vec<(&str, Vec<Vec<Value>>)> = vec![
        (
            "INSERT INTO p (n, t) VALUES (?, ?)",
            vec![
                vec![int(1), text("a")],
                vec![text("2"), text("b")],
                vec![Value::Real(3.0), int(7)],
                vec![int(4), text("a")],
                vec![Value::Null, Value::Null],
            ],
        ),
        (
            "INSERT INTO p (n, t) VALUES (?, ?), (?, ?) RETURNING id, n, typeof(n), t, r",
            vec![
                vec![int(5), text("c"), int(6), text("d")],
                vec![text("x"), text("e"), text("8"), text("f")],
            ],
        ),
        (
            "INSERT OR IGNORE INTO p (n, t) VALUES (?, ?)",
            vec![vec![int(9), text("a")], vec![int(10), text("g")]],
        ),
        (
            "INSERT OR REPLACE INTO p (id, n, t) VALUES (?, ?, ?)",
            vec![
                vec![int(1), int(100), text("a")],
                vec![int(50), int(101), text("b")],
            ],
        ),
        (
            "INSERT INTO p (n, t) VALUES (?, ?) ON CONFLICT (t) DO UPDATE SET n = n + excluded.n WHERE excluded.n > ? RETURNING id, n",
            vec![
                vec![int(5), text("c"), int(0)],
                vec![int(5), text("c"), int(10)],
                vec![int(1), text("h"), int(0)],
            ],
        ),
        (
            "INSERT INTO p (n, t) VALUES (?, ?) ON CONFLICT DO NOTHING",
            vec![vec![int(1), text("h")], vec![int(1), text("i")]],
        ),
        (
            "INSERT INTO p (n, t) SELECT n + ?, t || ? FROM p WHERE id = ?",
            vec![vec![int(1), text("-copy"), int(2)], vec![int(2), text("-2"), int(2)]],
        ),
        (
            "INSERT INTO c (p_id, v) VALUES (?, ?)",
            vec![
                vec![int(2), text("x")],
                vec![int(3), text("y")],
                vec![int(999), text("no parent")],
                vec![int(2), text("z")],
            ],
        ),
        (
            "UPDATE p SET n = ?, t = coalesce(?, t) WHERE id = ? RETURNING *",
            vec![
                vec![int(7), Value::Null, int(2)],
                vec![text("8"), text("zz"), int(3)],
                vec![int(9), text("a"), int(2)],
                vec![int(1), Value::Null, int(12345)],
            ],
        ),
        (
            "UPDATE c SET v = p.t || ? FROM p WHERE p.id = c.p_id AND p.n > ?",
            vec![vec![text("!"), int(0)], vec![text("?"), int(7)]],
        ),
        (
            "UPDATE p SET n = n + 1 WHERE t IN (?, ?)",
            vec![vec![text("a"), text("b")], vec![int(7), Value::Null]],
        ),
        (
            "DELETE FROM c WHERE v LIKE ? RETURNING id, v",
            vec![vec![text("%?")], vec![text("none")]],
        ),
        (
            "DELETE FROM p WHERE id = ? RETURNING id, t",
            vec![vec![int(2)], vec![int(2)], vec![int(3)]],
        ),
    ];
    // Twice over: the second round runs each text from its cached plan.
    for _ in 0..2 {
        for (sql, runs) in &cases {
            for args in runs {
                write(&mut d, sql, args);
            }
        }
        d.check("SELECT * FROM p ORDER BY id", &[]);
        d.check("SELECT * FROM c ORDER BY id", &[]);
    }
    d.assert_clean();
    let (hits, misses) = d.s.plan_cache_stats();
    assert!(hits >= 50, "{hits} hits, {misses} misses");
}

#[test]
fn alter_table_invalidates_cached_writes() {
    let mut d = Diff::new();
    d.script("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, a INTEGER, b TEXT)");
    let ins_all = "INSERT INTO t VALUES (?, ?, ?)";
    let ins = "INSERT INTO t (a, b) VALUES (?, ?) RETURNING *";
    let upd = "UPDATE t SET b = ? WHERE a = ? RETURNING *";
    let del = "DELETE FROM t WHERE b = ? RETURNING *";
    let round = |d: &mut Diff, k: i64| {
        write(d, ins_all, &[Value::Null, int(k), text("all")]);
        write(d, ins, &[int(k), text("x")]);
        write(d, ins, &[int(k + 1), text("y")]);
        write(d, upd, &[text("u"), int(k)]);
        write(d, del, &[text("y")]);
        d.check("SELECT * FROM t ORDER BY id", &[]);
    };
    round(&mut d, 1);
    round(&mut d, 10);
    d.script("ALTER TABLE t ADD COLUMN c TEXT DEFAULT 'dflt'");
    round(&mut d, 20);
    d.script("ALTER TABLE t DROP COLUMN c");
    round(&mut d, 30);
    d.script("ALTER TABLE t RENAME COLUMN b TO bb");
    round(&mut d, 40);
    d.script("ALTER TABLE t RENAME COLUMN bb TO b");
    round(&mut d, 50);
    d.script("ALTER TABLE t RENAME TO t2");
    round(&mut d, 60);
    d.script("ALTER TABLE t2 RENAME TO t");
    round(&mut d, 70);
    d.assert_clean();
    assert!(d.s.plan_cache_stats().0 > 10);
}

#[test]
fn index_changes_invalidate_cached_writes() {
    let mut d = Diff::new();
    d.script("CREATE TABLE u (id INTEGER PRIMARY KEY AUTOINCREMENT, email TEXT, n INTEGER)");
    let ins = "INSERT INTO u (email, n) VALUES (?, ?)";
    let upsert =
        "INSERT INTO u (email, n) VALUES (?, ?) ON CONFLICT (email) DO UPDATE SET n = excluded.n";
    let upd = "UPDATE u SET email = ? WHERE id = ?";
    let ignore = "INSERT OR IGNORE INTO u (email, n) VALUES (?, ?)";
    for _ in 0..2 {
        write(&mut d, ins, &[text("a@x"), int(1)]);
        write(&mut d, ins, &[text("a@x"), int(2)]);
        write(&mut d, upsert, &[text("a@x"), int(3)]);
        write(&mut d, ignore, &[text("a@x"), int(4)]);
    }
    d.script("DELETE FROM u WHERE id > 1");
    d.script("CREATE UNIQUE INDEX u_email ON u (email)");
    for k in 0..2 {
        write(&mut d, ins, &[text("a@x"), int(5)]);
        write(&mut d, ins, &[text(&format!("b{k}@x")), int(6)]);
        write(&mut d, upsert, &[text("a@x"), int(7)]);
        write(&mut d, ignore, &[text("a@x"), int(8)]);
        write(&mut d, upd, &[text("a@x"), int(2 + k)]);
        d.check("SELECT * FROM u ORDER BY id", &[]);
    }
    d.script("DROP INDEX u_email");
    for _ in 0..2 {
        write(&mut d, ins, &[text("a@x"), int(9)]);
        write(&mut d, upsert, &[text("a@x"), int(10)]);
        write(&mut d, ignore, &[text("a@x"), int(11)]);
        write(&mut d, upd, &[text("a@x"), int(3)]);
    }
    // A plain index, then a unique one over two columns.
    d.script("CREATE INDEX u_n ON u (n)");
    write(&mut d, "UPDATE u SET n = ? WHERE n = ?", &[int(99), int(9)]);
    write(
        &mut d,
        "UPDATE u SET n = ? WHERE n = ?",
        &[int(98), int(99)],
    );
    d.script("DELETE FROM u WHERE id > 2");
    d.script("CREATE UNIQUE INDEX u_en ON u (email, n)");
    for _ in 0..2 {
        write(&mut d, ins, &[text("a@x"), int(1)]);
        write(&mut d, ignore, &[text("a@x"), int(1)]);
    }
    d.check("SELECT * FROM u ORDER BY id", &[]);
    d.assert_clean();
}

#[test]
fn drop_and_create_of_the_same_table_invalidates() {
    let mut d = Diff::new();
    d.script("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, a TEXT NOT NULL)");
    let ins = "INSERT INTO t (a) VALUES (?) RETURNING *";
    let del = "DELETE FROM t WHERE id = ?";
    for _ in 0..2 {
        write(&mut d, ins, &[text("x")]);
        write(&mut d, ins, &[Value::Null]);
        write(&mut d, del, &[int(1)]);
    }
    d.script("DROP TABLE t");
    write(&mut d, ins, &[text("gone")]);
    write(&mut d, del, &[int(1)]);
    d.script("CREATE TABLE t (a TEXT, id INTEGER PRIMARY KEY AUTOINCREMENT, z INTEGER DEFAULT 3)");
    for _ in 0..2 {
        write(&mut d, ins, &[text("again")]);
        write(&mut d, ins, &[Value::Null]);
        write(&mut d, del, &[int(1)]);
    }
    // Django's rebuild: a new table renamed over the old one inside a transaction.
    d.script(
        "BEGIN;
CREATE TABLE new__t (id INTEGER PRIMARY KEY AUTOINCREMENT, a TEXT UNIQUE, z INTEGER DEFAULT 4);
INSERT INTO new__t (id, a, z) SELECT id, a, z FROM t;
DROP TABLE t;
ALTER TABLE new__t RENAME TO t;
COMMIT",
    );
    for _ in 0..2 {
        write(&mut d, ins, &[text("again")]);
        write(&mut d, ins, &[text("new")]);
    }
    d.check("SELECT * FROM t ORDER BY id", &[]);
    d.assert_clean();
}

#[test]
fn foreign_key_actions_and_pragma_with_cached_writes() {
    let mut d = Diff::new();
    // SQLite checks an INSERT's foreign keys at the statement's end, after the row was counted
    // by total_changes(); ORMDB checks before writing (COMPAT.md): compare the other counters.
    let write = |d: &mut Diff, sql: &str, params: &[Value]| {
        d.check(sql, params);
        d.check("SELECT last_insert_rowid(), changes()", &[]);
    };
    d.script(
        "CREATE TABLE a (id INTEGER PRIMARY KEY, name TEXT);
CREATE TABLE b (id INTEGER PRIMARY KEY AUTOINCREMENT, a_id INTEGER REFERENCES a (id) ON DELETE CASCADE ON UPDATE CASCADE);
CREATE TABLE c (id INTEGER PRIMARY KEY AUTOINCREMENT, a_id INTEGER REFERENCES a (id) ON DELETE SET NULL);
INSERT INTO a (id, name) VALUES (1, 'x'), (2, 'y'), (3, 'z');",
    );
    let ins_b = "INSERT INTO b (a_id) VALUES (?)";
    let ins_c = "INSERT INTO c (a_id) VALUES (?)";
    let del_a = "DELETE FROM a WHERE id = ?";
    let upd_a = "UPDATE a SET id = ? WHERE id = ?";
    for k in [1, 2, 3] {
        write(&mut d, ins_b, &[int(k)]);
        write(&mut d, ins_b, &[int(k)]);
        write(&mut d, ins_c, &[int(k)]);
    }
    write(&mut d, ins_b, &[int(42)]);
    write(&mut d, del_a, &[int(1)]);
    write(&mut d, upd_a, &[int(20), int(2)]);
    d.check("SELECT * FROM b ORDER BY id", &[]);
    d.check("SELECT * FROM c ORDER BY id", &[]);
    // The same cached texts with foreign keys off: nothing is checked or cascaded.
    d.script("PRAGMA foreign_keys = OFF");
    write(&mut d, ins_b, &[int(42)]);
    write(&mut d, del_a, &[int(3)]);
    d.check("SELECT * FROM b ORDER BY id", &[]);
    d.check("SELECT * FROM c ORDER BY id", &[]);
    d.script("PRAGMA foreign_keys = ON");
    write(&mut d, ins_b, &[int(43)]);
    write(&mut d, del_a, &[int(20)]);
    d.check("SELECT * FROM b ORDER BY id", &[]);
    d.check("SELECT * FROM c ORDER BY id", &[]);
    d.assert_clean();
}

#[test]
fn temporary_table_shadows_a_cached_write() {
    let mut d = Diff::new();
    d.script("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT)");
    let ins = "INSERT INTO t (a) VALUES (?)";
    let upd = "UPDATE t SET a = ? WHERE id = ?";
    write(&mut d, ins, &[text("main")]);
    write(&mut d, ins, &[text("main2")]);
    d.script("CREATE TEMP TABLE t (id INTEGER PRIMARY KEY, a TEXT, extra INTEGER DEFAULT 5)");
    write(&mut d, ins, &[text("temp")]);
    write(&mut d, upd, &[text("temp!"), int(1)]);
    d.check("SELECT * FROM t ORDER BY id", &[]);
    d.check("SELECT * FROM main.t ORDER BY id", &[]);
    d.script("DROP TABLE temp.t");
    write(&mut d, ins, &[text("main3")]);
    write(&mut d, upd, &[text("main!"), int(1)]);
    d.check("SELECT * FROM t ORDER BY id", &[]);
    d.assert_clean();
}

#[test]
fn ddl_rolled_back_recompiles_cached_writes() {
    let mut d = Diff::new();
    d.script("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT)");
    // Explicit ids: ORMDB does not reuse the ids of rolled back rows (COMPAT.md).
    let ins = "INSERT INTO t VALUES (?, ?)";
    write(&mut d, ins, &[int(1), text("x")]);
    d.script("BEGIN;\nALTER TABLE t ADD COLUMN b INTEGER");
    write(&mut d, ins, &[int(2), text("y")]);
    write(
        &mut d,
        "INSERT INTO t VALUES (?, ?, ?)",
        &[int(2), text("y"), int(1)],
    );
    d.script("ROLLBACK");
    write(&mut d, ins, &[int(3), text("z")]);
    d.check("SELECT * FROM t ORDER BY id", &[]);
    d.assert_clean();
}

/// Single-row writes inside explicit transactions, where UPDATE / DELETE by row id hand the
/// rows they read to the engine and each statement is atomic on its own: rows deleted and
/// read again, updated then deleted, deleted then updated (no change), re-inserted under the
/// same id, several ids in one statement, RETURNING, and savepoints around them.
#[test]
fn writes_inside_a_transaction_match_sqlite() {
    let mut d = Diff::new();
    d.script(
        "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, a INTEGER NOT NULL, u TEXT UNIQUE);
INSERT INTO t (a, u) VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd'), (5, 'e'), (6, 'f');",
    );
    let upd = "UPDATE t SET a = a + ? WHERE id = ?";
    let del = "DELETE FROM t WHERE id = ?";
    let get = "SELECT * FROM t WHERE id = ?";
    for round in 0..2 {
        let k = round * 100;
        d.check("BEGIN", &[]);
        // Updated, read, deleted, read again, updated and deleted again (nothing to change).
        write(&mut d, upd, &[int(10 + k), int(1)]);
        d.check(get, &[int(1)]);
        write(&mut d, del, &[int(1)]);
        d.check(get, &[int(1)]);
        write(&mut d, upd, &[int(1), int(1)]);
        write(&mut d, del, &[int(1)]);
        // Updated twice, then deleted with RETURNING (the row as the statement found it).
        write(&mut d, upd, &[int(1), int(2)]);
        write(&mut d, upd, &[int(2), int(2)]);
        write(&mut d, "DELETE FROM t WHERE id = ? RETURNING *", &[int(2)]);
        // Deleted and inserted again under the same id, then updated.
        write(&mut d, del, &[int(3)]);
        write(
            &mut d,
            "INSERT INTO t (id, a, u) VALUES (?, ?, ?)",
            &[int(3), int(33), text("c")],
        );
        write(
            &mut d,
            "UPDATE t SET a = ? WHERE id = ? RETURNING id, a, u",
            &[int(34), int(3)],
        );
        // Several ids in one statement (one of them twice, one missing).
        write(
            &mut d,
            "UPDATE t SET a = a * 2 WHERE id IN (?, ?, ?, ?)",
            &[int(4), int(5), int(4), int(999)],
        );
        write(
            &mut d,
            "DELETE FROM t WHERE id IN (?, ?) RETURNING id, a",
            &[int(5), int(999)],
        );
        // Savepoints around the same statements: rolled back, then kept.
        d.check("SAVEPOINT s1", &[]);
        write(&mut d, upd, &[int(1000), int(4)]);
        write(&mut d, del, &[int(6)]);
        d.check("SELECT * FROM t ORDER BY id", &[]);
        d.check("ROLLBACK TO s1", &[]);
        d.check("SELECT * FROM t ORDER BY id", &[]);
        write(&mut d, upd, &[int(7), int(6)]);
        d.check("RELEASE s1", &[]);
        d.check("SELECT * FROM t ORDER BY id", &[]);
        d.check("COMMIT", &[]);
        d.check("SELECT * FROM t ORDER BY id", &[]);
        // Refill for the second round (new ids: AUTOINCREMENT never reuses them).
        d.script(
            "INSERT INTO t (id, a, u) VALUES (1, 1, 'a'), (2, 2, 'b'), (5, 5, 'e');
DELETE FROM t WHERE id = 3;
INSERT INTO t (id, a, u) VALUES (3, 3, 'c')",
        );
    }
    d.assert_clean();
}

/// A statement that fails part way through its rows inside a transaction leaves exactly the
/// state before it: the transaction's earlier writes and none of its own (a UNIQUE conflict on
/// the second row of an UPDATE, a RESTRICT child on the second row of a DELETE, a NOT NULL
/// violation, a CHECK failing on the second row), and the transaction goes on and commits.
#[test]
fn failing_statement_in_a_transaction_leaves_the_prior_state() {
    let mut d = Diff::new();
    // SQLite's total_changes() also counts the rows a failing statement changed before it
    // failed (and then undid); ORMDB counts completed statements only (COMPAT.md): compare the
    // other counters.
    let write = |d: &mut Diff, sql: &str, params: &[Value]| {
        d.check(sql, params);
        d.check("SELECT last_insert_rowid(), changes()", &[]);
    };
    // Both engines must fail the statement with SQLSTATE class `class`.
    let fails = |d: &mut Diff, sql: &str, params: &[Value], class: &str| {
        let (a, b) = (d.run_lite(sql, params), d.run_ormdb(sql, params));
        for (engine, r) in [("sqlite", a), ("ormdb", b)] {
            assert!(
                matches!(&r, Res::Err(c, _) if c == class),
                "{engine}: {sql} {params:?} gave {r:?}, not a {class} error"
            );
        }
        d.check("SELECT last_insert_rowid(), changes()", &[]);
    };
    d.script(
        "CREATE TABLE p (id INTEGER PRIMARY KEY AUTOINCREMENT, a INTEGER NOT NULL, u TEXT UNIQUE);
CREATE TABLE r (id INTEGER PRIMARY KEY AUTOINCREMENT, p_id INTEGER REFERENCES p (id) ON DELETE RESTRICT);
CREATE TABLE c (id INTEGER PRIMARY KEY AUTOINCREMENT, p_id INTEGER REFERENCES p (id) ON DELETE CASCADE ON UPDATE CASCADE, n INTEGER CHECK (n < 100));
INSERT INTO p (a, u) VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd');
INSERT INTO r (p_id) VALUES (3);
INSERT INTO c (p_id, n) VALUES (1, 1), (2, 2), (4, 4);",
    );
    let state = |d: &mut Diff| {
        for t in ["p", "r", "c"] {
            d.check(&format!("SELECT * FROM {t} ORDER BY id"), &[]);
        }
    };
    d.check("BEGIN", &[]);
    // Earlier writes of the transaction, which must survive the failures below.
    write(&mut d, "UPDATE p SET a = a + 10 WHERE id = ?", &[int(1)]);
    write(&mut d, "DELETE FROM p WHERE id = ?", &[int(4)]);
    write(
        &mut d,
        "INSERT INTO p (a, u) VALUES (?, ?)",
        &[int(5), text("e")],
    );
    state(&mut d);
    // Row 1 takes 'x', row 2 then conflicts with it.
    fails(
        &mut d,
        "UPDATE p SET u = ? WHERE id IN (?, ?)",
        &[text("x"), int(1), int(2)],
        "23505",
    );
    state(&mut d);
    // Rows 1 and 2 go (cascading to c), row 3 is restricted by r.
    fails(
        &mut d,
        "DELETE FROM p WHERE id IN (?, ?, ?)",
        &[int(1), int(2), int(3)],
        "23503",
    );
    state(&mut d);
    // NOT NULL on the second row only.
    fails(
        &mut d,
        "UPDATE p SET a = CASE WHEN id = ? THEN NULL ELSE a + 1 END WHERE id IN (?, ?)",
        &[int(2), int(1), int(2)],
        "23502",
    );
    state(&mut d);
    // The second of two rows fails its CHECK.
    write(&mut d, "UPDATE c SET n = 99 WHERE id = ?", &[int(2)]);
    fails(
        &mut d,
        "UPDATE c SET n = n + 1 WHERE id IN (?, ?)",
        &[int(1), int(2)],
        "23514",
    );
    state(&mut d);
    // The same statements succeed once the obstacles are gone.
    write(&mut d, "DELETE FROM r WHERE p_id = ?", &[int(3)]);
    write(
        &mut d,
        "DELETE FROM p WHERE id IN (?, ?, ?)",
        &[int(1), int(2), int(3)],
    );
    state(&mut d);
    d.check("COMMIT", &[]);
    state(&mut d);
    d.assert_clean();
}

/// UPDATE / DELETE by row id inside a transaction read each target row once and hand it to
/// the engine: that read still makes a concurrent commit to the row a conflict (40001 at
/// COMMIT), and the commit's version tokens and change log are those of the stored rows.
#[test]
fn rows_read_once_keep_conflicts_versions_and_change_log() {
    use ormdb::{ChangeKind, SqlState, SubscriptionFilter};
    let db =
        Database::temporary_with(Options::default().durability(Durability::Normal)).expect("db");
    let mut a = db.connect().sql();
    let mut b = db.connect().sql();
    a.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, s TEXT);
INSERT INTO t VALUES (1, 1, 'a'), (2, 2, 'b'), (3, 3, 'c'), (4, 4, 'd'), (5, 5, 'e');",
    )
    .expect("setup");
    let p = |id: i64| Params::from(vec![int(id)]);
    for (stmt, id) in [
        ("UPDATE t SET n = n + 1 WHERE id = ?", 1),
        ("DELETE FROM t WHERE id = ?", 2),
        ("DELETE FROM t WHERE id IN (?, 5)", 5),
    ] {
        a.execute_batch("BEGIN").expect("begin");
        assert_eq!(a.execute(stmt, &p(id)).expect(stmt).rows_affected, 1);
        b.execute("UPDATE t SET s = 'other' WHERE id = ?", &p(id))
            .expect("concurrent update");
        let err = a.execute_batch("COMMIT").expect_err(stmt);
        assert_eq!(err.state, SqlState::SerializationFailure, "{stmt}: {err}");
    }
    let mut sub = db
        .subscribe(None, SubscriptionFilter::default())
        .expect("subscribe");
    let version = |db: &Database, id: i64| {
        let mut tx = db.connect().begin().expect("tx");
        tx.get("t", id).expect("get").map(|r| r.version)
    };
    assert_eq!(version(&db, 3), Some(1));
    a.execute_batch(
        "BEGIN;
UPDATE t SET n = n + 1 WHERE id = 3;
UPDATE t SET n = n + 1 WHERE id = 3;
UPDATE t SET n = n + 1 WHERE id = 4;
DELETE FROM t WHERE id = 4;
COMMIT",
    )
    .expect("transaction");
    assert_eq!(version(&db, 3), Some(3));
    assert_eq!(version(&db, 4), None);
    let cs = sub.try_next().expect("next").expect("a change set");
    let row = |id: i64| {
        cs.entities
            .iter()
            .find(|c| c.row_id == id)
            .unwrap_or_else(|| panic!("no change of row {id}: {cs:?}"))
    };
    assert_eq!(cs.entities.len(), 2, "{cs:?}");
    let (r3, r4) = (row(3), row(4));
    assert_eq!(
        (r3.kind, r3.version, r3.changed.clone()),
        (ChangeKind::Update, 3, vec![1])
    );
    assert_eq!(r3.values, vec![int(3), int(5), text("c")]);
    assert_eq!((r4.kind, r4.version), (ChangeKind::Delete, 3));
}
