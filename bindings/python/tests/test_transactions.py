"""sqlite3's transaction semantics: implicit BEGIN before DML, isolation_level, autocommit,
commit/rollback, context manager, close."""

import pytest

import ormdb


def test_implicit_begin_before_dml_only(conn):
    conn.execute("CREATE TABLE t (x INTEGER)")
    assert not conn.in_transaction  # DDL runs in autocommit
    conn.execute("SELECT * FROM t")
    assert not conn.in_transaction
    conn.execute("INSERT INTO t VALUES (1)")
    assert conn.in_transaction
    conn.commit()
    assert not conn.in_transaction


def test_rollback_discards_uncommitted_writes(conn):
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    conn.execute("INSERT INTO t VALUES (2)")
    conn.execute("UPDATE t SET x = 10 WHERE x = 1")
    assert conn.execute("SELECT sum(x) FROM t").fetchone() == (12,)
    conn.rollback()
    assert conn.execute("SELECT sum(x) FROM t").fetchone() == (1,)


def test_uncommitted_writes_are_invisible_to_other_connections(db_path):
    a = ormdb.connect(db_path)
    b = ormdb.connect(db_path)
    a.execute("CREATE TABLE t (x INTEGER)")
    a.execute("INSERT INTO t VALUES (1)")
    assert b.execute("SELECT count(*) FROM t").fetchone() == (0,)
    a.commit()
    assert b.execute("SELECT count(*) FROM t").fetchone() == (1,)
    a.close()
    b.close()


def test_commit_and_rollback_outside_a_transaction_are_noops(conn):
    conn.commit()
    conn.rollback()
    assert not conn.in_transaction


def test_isolation_level_none_is_autocommit(db_path):
    a = ormdb.connect(db_path, isolation_level=None)
    b = ormdb.connect(db_path)
    a.execute("CREATE TABLE t (x INTEGER)")
    a.execute("INSERT INTO t VALUES (1)")
    assert not a.in_transaction
    assert b.execute("SELECT count(*) FROM t").fetchone() == (1,)
    # Explicit transactions still work.
    a.execute("BEGIN")
    a.execute("INSERT INTO t VALUES (2)")
    assert a.in_transaction
    a.execute("ROLLBACK")
    assert a.execute("SELECT count(*) FROM t").fetchone() == (1,)
    a.close()
    b.close()


def test_setting_isolation_level_none_commits(conn):
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.execute("INSERT INTO t VALUES (1)")
    assert conn.in_transaction
    conn.isolation_level = None
    assert not conn.in_transaction
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)
    assert conn.isolation_level is None


def test_isolation_level_values(conn):
    for level in ("", "DEFERRED", "IMMEDIATE", "exclusive"):
        conn.isolation_level = level
        assert conn.isolation_level == level
    with pytest.raises(ValueError):
        conn.isolation_level = "SERIALIZABLE"
    conn.isolation_level = "IMMEDIATE"
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.execute("INSERT INTO t VALUES (1)")
    assert conn.in_transaction
    conn.commit()


def test_autocommit_true(conn):
    c = ormdb.connect(":memory:", autocommit=True)
    c.execute("CREATE TABLE t (x INTEGER)")
    c.execute("INSERT INTO t VALUES (1)")
    assert not c.in_transaction
    c.rollback()  # no-op
    assert c.execute("SELECT count(*) FROM t").fetchone() == (1,)
    c.close()


def test_autocommit_false_always_has_a_transaction():
    c = ormdb.connect(":memory:", autocommit=False)
    assert c.in_transaction
    c.execute("CREATE TABLE t (x INTEGER)")
    c.commit()
    assert c.in_transaction
    c.execute("INSERT INTO t VALUES (1)")
    c.rollback()
    assert c.in_transaction
    assert c.execute("SELECT count(*) FROM t").fetchone() == (0,)
    c.autocommit = True
    assert not c.in_transaction
    c.autocommit = False
    assert c.in_transaction
    with pytest.raises(ValueError):
        c.autocommit = 5
    c.close()


def test_context_manager_commits_or_rolls_back(conn):
    conn.execute("CREATE TABLE t (x INTEGER UNIQUE)")
    with conn:
        conn.execute("INSERT INTO t VALUES (1)")
    assert not conn.in_transaction
    with pytest.raises(ormdb.IntegrityError):
        with conn:
            conn.execute("INSERT INTO t VALUES (2)")
            conn.execute("INSERT INTO t VALUES (1)")
    assert not conn.in_transaction
    assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_failed_statement_keeps_the_transaction(conn):
    conn.execute("CREATE TABLE t (x INTEGER UNIQUE)")
    conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(ormdb.IntegrityError):
        conn.execute("INSERT INTO t VALUES (1)")
    assert conn.in_transaction
    conn.execute("INSERT INTO t VALUES (2)")
    conn.commit()
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)


def test_close_rolls_back(db_path):
    c = ormdb.connect(db_path)
    c.execute("CREATE TABLE t (x INTEGER)")
    c.execute("INSERT INTO t VALUES (1)")
    c.close()
    c = ormdb.connect(db_path)
    assert c.execute("SELECT count(*) FROM t").fetchone() == (0,)
    c.close()


def test_executescript_commits_a_pending_transaction(conn):
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.executescript("INSERT INTO t VALUES (2);")
    assert not conn.in_transaction
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)


def test_savepoints(conn):
    conn.isolation_level = None
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.execute("BEGIN")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.execute("SAVEPOINT sp")
    conn.execute("INSERT INTO t VALUES (2)")
    conn.execute("ROLLBACK TO SAVEPOINT sp")
    conn.execute("RELEASE SAVEPOINT sp")
    conn.execute("COMMIT")
    assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_total_changes(conn):
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])
    conn.execute("UPDATE t SET x = 0")
    assert conn.total_changes == 4
