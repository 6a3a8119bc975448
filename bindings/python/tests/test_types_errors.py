"""Value round trips, adapters/converters, and engine errors mapped per SQLSTATE class."""

import datetime
import math

import pytest

import ormdb


@pytest.mark.parametrize(
    "value",
    [None, 0, -1, 2**63 - 1, -(2**63), 1.5, -0.25, 1e300, "", "héllo ✓", "a\x00b", b"", b"\x00\xff"],
)
def test_round_trip(conn, value):
    conn.execute("CREATE TABLE t (v)")
    conn.execute("INSERT INTO t VALUES (?)", (value,))
    (got,) = conn.execute("SELECT v FROM t").fetchone()
    assert got == value
    assert type(got) is type(value)


def test_bool_binds_as_int_and_buffers_as_blob(conn):
    assert conn.execute("SELECT ?, ?", (True, False)).fetchone() == (1, 0)
    assert conn.execute("SELECT ?", (bytearray(b"ab"),)).fetchone() == (b"ab",)
    assert conn.execute("SELECT ?", (memoryview(b"cd"),)).fetchone() == (b"cd",)
    assert conn.execute("SELECT ?", (float("nan"),)).fetchone() == (None,)


def test_big_values(conn):
    big = "x" * (4 << 20)
    conn.execute("CREATE TABLE t (v TEXT)")
    conn.execute("INSERT INTO t VALUES (?)", (big,))
    assert conn.execute("SELECT length(v) FROM t").fetchone() == (len(big),)


def test_typeof_follows_sqlite(conn):
    row = conn.execute("SELECT typeof(?), typeof(?), typeof(?), typeof(?), typeof(?)",
                       (None, 1, 1.0, "s", b"b")).fetchone()
    assert row == ("null", "integer", "real", "text", "blob")


def test_adapters_and_converters(db_path):
    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y

    ormdb.register_adapter(Point, lambda p: f"{p.x};{p.y}")
    ormdb.register_converter("point", lambda b: Point(*map(float, b.split(b";"))))
    try:
        c = ormdb.connect(db_path, detect_types=ormdb.PARSE_DECLTYPES | ormdb.PARSE_COLNAMES)
        c.execute("CREATE TABLE t (p point, d date, ts timestamp, n INTEGER)")
        now = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456)
        c.execute("INSERT INTO t VALUES (?, ?, ?, ?)",
                  (Point(1, 2), datetime.date(2024, 1, 2), now, 5))
        p, d, ts, n = c.execute("SELECT p, d, ts, n FROM t").fetchone()
        assert (p.x, p.y) == (1.0, 2.0)
        assert d == datetime.date(2024, 1, 2)
        assert ts == now
        assert n == 5
        (d2,) = c.execute('SELECT d AS "d [date]" FROM t').fetchone()
        assert d2 == datetime.date(2024, 1, 2)
        c.close()
    finally:
        del ormdb.adapters[Point]
        del ormdb.converters["POINT"]
    c = ormdb.connect(":memory:")
    with pytest.raises(ormdb.ProgrammingError, match="Point"):
        c.execute("SELECT ?", (Point(1, 2),))
    c.close()


def test_adapter_returning_unsupported_type(conn):
    class X:
        pass

    ormdb.register_adapter(X, lambda x: [1])
    try:
        with pytest.raises(ormdb.ProgrammingError, match="adapter"):
            conn.execute("SELECT ?", (X(),))
    finally:
        del ormdb.adapters[X]


def _err(conn, sql, params=()):
    with pytest.raises(ormdb.Error) as ei:
        conn.execute(sql, params)
    return ei.value


def test_integrity_errors_carry_sqlstate(conn):
    conn.executescript(
        """
        CREATE TABLE p (id INTEGER PRIMARY KEY, u TEXT UNIQUE, n TEXT NOT NULL,
                        c INTEGER CHECK (c > 0));
        CREATE TABLE ch (id INTEGER PRIMARY KEY, p_id INTEGER REFERENCES p(id));
        INSERT INTO p VALUES (1, 'a', 'x', 1);
        """
    )
    cases = [
        ("INSERT INTO p VALUES (2, 'a', 'x', 1)", "23505"),
        ("INSERT INTO p VALUES (2, 'b', NULL, 1)", "23502"),
        ("INSERT INTO p VALUES (2, 'b', 'x', 0)", "23514"),
        ("INSERT INTO ch VALUES (1, 99)", "23503"),
    ]
    for sql, state in cases:
        e = _err(conn, sql)
        assert isinstance(e, ormdb.IntegrityError), (sql, e)
        assert e.sqlstate == state


@pytest.mark.parametrize(
    "sql,cls,state",
    [
        ("SELEC 1", ormdb.OperationalError, "42601"),
        ("SELECT * FROM nope", ormdb.OperationalError, "42P01"),
        ("SELECT nope FROM t", ormdb.OperationalError, "42703"),
        ("CREATE TABLE t (x)", ormdb.OperationalError, "42P07"),
        ("COMMIT", ormdb.ProgrammingError, "25000"),
        ("CREATE TABLE u AS SELECT 1", ormdb.NotSupportedError, "0A000"),
    ],
)
def test_errors_per_sqlstate_class(conn, sql, cls, state):
    conn.execute("CREATE TABLE t (x INTEGER)")
    e = _err(conn, sql)
    assert type(e) is cls, e
    assert e.sqlstate == state
    assert str(e)


def test_strict_type_mismatch_is_integrity_error(conn):
    conn.execute("CREATE TABLE s (x INTEGER) STRICT")
    e = _err(conn, "INSERT INTO s VALUES ('abc')")
    assert isinstance(e, ormdb.IntegrityError)


def test_infinity_and_negative_zero(conn):
    (v,) = conn.execute("SELECT ?", (math.inf,)).fetchone()
    assert v == math.inf
