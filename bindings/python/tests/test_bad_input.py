"""Bad input gives Python exceptions, never a crash: garbage SQL, wrong types, huge values,
non-ORMDB paths."""

import pytest

import ormdb


@pytest.mark.parametrize(
    "sql",
    ["", "   ", "-- just a comment", ";"],
)
def test_empty_statements_are_noops(conn, sql):
    cur = conn.execute(sql)
    assert cur.description is None
    assert cur.fetchall() == []


@pytest.mark.parametrize(
    "sql",
    ["SELECT", "SELECT (", "INSERT INTO", "\x00", "SELECT 'unterminated", "☃", "SELECT 1 +"],
)
def test_garbage_sql(conn, sql):
    with pytest.raises(ormdb.DatabaseError):
        conn.execute(sql)
    assert conn.execute("SELECT 1").fetchone() == (1,)


def test_wrong_argument_types(conn):
    with pytest.raises(TypeError):
        conn.execute(b"SELECT 1")
    with pytest.raises(TypeError):
        conn.execute(None)
    with pytest.raises(ormdb.ProgrammingError):
        conn.execute("SELECT ?", 5)
    with pytest.raises(ormdb.ProgrammingError):
        conn.execute("SELECT :a", {1: 2})
    with pytest.raises(TypeError):
        conn.executemany("INSERT INTO t VALUES (?)", 5)


def test_many_parameters(conn):
    n = 5000
    sql = "SELECT " + ", ".join("?" for _ in range(n))
    assert conn.execute(sql, list(range(n))).fetchone() == tuple(range(n))


def test_huge_blob_parameter(conn):
    blob = bytes(range(256)) * (64 << 10)  # 16 MiB
    conn.execute("CREATE TABLE t (b BLOB)")
    conn.execute("INSERT INTO t VALUES (?)", (blob,))
    assert conn.execute("SELECT length(b) FROM t").fetchone() == (len(blob),)


def test_opening_a_plain_file_is_a_database_error(tmp_path):
    f = tmp_path / "not-a-db"
    f.write_bytes(b"SQLite format 3\x00")
    with pytest.raises(ormdb.DatabaseError, match="not an ORMDB database"):
        ormdb.connect(str(f))


def test_bad_connect_options(db_path):
    with pytest.raises(ormdb.ProgrammingError, match="durability"):
        ormdb.connect(db_path, durability="sometimes")
    with pytest.raises(ValueError):
        ormdb.connect(db_path, isolation_level="SERIALIZABLE")
    with pytest.raises(ValueError):
        ormdb.connect(db_path, autocommit="yes")
    with pytest.raises(ormdb.NotSupportedError):
        ormdb.connect(f"file:{db_path}?mode=ro", uri=True)
    c = ormdb.connect(db_path, durability="normal")
    c.close()


def test_text_factory(conn):
    conn.text_factory = str
    assert conn.text_factory is str
    with pytest.raises(ormdb.NotSupportedError):
        conn.text_factory = bytes


def test_subscription_timeout_validation(conn):
    sub = conn.subscribe()
    with pytest.raises(ormdb.ProgrammingError):
        sub.next(timeout=-1)
    with pytest.raises(ormdb.ProgrammingError):
        sub.next(timeout=float("nan"))
    assert sub.next(timeout=0) is None
