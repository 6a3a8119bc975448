"""PEP 249 basics: module globals, cursors, parameters, description, rowcount, lastrowid."""

import pytest

import ormdb


def test_module_globals():
    assert ormdb.apilevel == "2.0"
    assert ormdb.threadsafety == 1
    assert ormdb.paramstyle == "qmark"
    assert isinstance(ormdb.sqlite_version, str)
    assert ormdb.sqlite_version_info == tuple(int(x) for x in ormdb.sqlite_version.split("."))
    assert ormdb.sqlite_version_info >= (3, 35, 0)
    assert isinstance(ormdb.version_info, tuple)


def test_exception_hierarchy():
    assert issubclass(ormdb.Error, Exception)
    assert issubclass(ormdb.Warning, Exception)
    assert issubclass(ormdb.InterfaceError, ormdb.Error)
    assert issubclass(ormdb.DatabaseError, ormdb.Error)
    for cls in (
        ormdb.DataError,
        ormdb.OperationalError,
        ormdb.IntegrityError,
        ormdb.InternalError,
        ormdb.ProgrammingError,
        ormdb.NotSupportedError,
    ):
        assert issubclass(cls, ormdb.DatabaseError)
    c = ormdb.connect(":memory:")
    assert c.IntegrityError is ormdb.IntegrityError
    c.close()


def test_select_description_and_rowcount(conn):
    cur = conn.cursor()
    cur.execute("SELECT 1 AS a, 'x' AS b")
    assert cur.description == (
        ("a", None, None, None, None, None, None),
        ("b", None, None, None, None, None, None),
    )
    assert cur.rowcount == -1
    assert cur.fetchall() == [(1, "x")]
    assert cur.fetchone() is None


def test_description_none_for_statements_without_rows(conn):
    cur = conn.execute("CREATE TABLE t (x INTEGER)")
    assert cur.description is None
    cur = conn.execute("INSERT INTO t VALUES (1)")
    assert cur.description is None
    assert cur.rowcount == 1


def test_fetch_methods_and_iteration(conn):
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(10)])
    cur = conn.execute("SELECT x FROM t ORDER BY x")
    assert cur.fetchone() == (0,)
    assert cur.fetchmany() == [(1,)]
    cur.arraysize = 3
    assert cur.fetchmany() == [(2,), (3,), (4,)]
    assert cur.fetchmany(2) == [(5,), (6,)]
    assert list(cur) == [(7,), (8,), (9,)]
    assert cur.fetchall() == []
    assert [r[0] for r in conn.execute("SELECT x FROM t ORDER BY x DESC")][:2] == [9, 8]


def test_qmark_numbered_and_named_parameters(conn):
    assert conn.execute("SELECT ?, ?", (1, "a")).fetchone() == (1, "a")
    assert conn.execute("SELECT ?2, ?1", [1, 2]).fetchone() == (2, 1)
    assert conn.execute("SELECT :a, :b, :a", {"a": 1, "b": 2}).fetchone() == (1, 2, 1)
    assert conn.execute("SELECT @x || $y", {"x": "p", "y": "q"}).fetchone() == ("pq",)


def test_wrong_parameter_counts_are_programming_errors(conn):
    with pytest.raises(ormdb.ProgrammingError):
        conn.execute("SELECT ?, ?", (1,))
    with pytest.raises(ormdb.ProgrammingError):
        conn.execute("SELECT ?", (1, 2))
    with pytest.raises(ormdb.ProgrammingError):
        conn.execute("SELECT ?")
    with pytest.raises(ormdb.ProgrammingError):
        conn.execute("SELECT :a", {"b": 1})


def test_unsupported_parameter_types_name_the_parameter(conn):
    with pytest.raises(ormdb.ProgrammingError, match="parameter 2"):
        conn.execute("SELECT ?, ?", (1, [1, 2]))
    with pytest.raises(ormdb.ProgrammingError, match=":x"):
        conn.execute("SELECT :x", {"x": object()})
    with pytest.raises(ormdb.ProgrammingError):
        conn.execute("SELECT ?", "a")  # a str is not a parameter sequence
    with pytest.raises(OverflowError):
        conn.execute("SELECT ?", (2**63,))


def test_executemany_rowcount_and_lastrowid(conn):
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, x INTEGER)")
    cur = conn.executemany("INSERT INTO t (x) VALUES (?)", [(1,), (2,), (3,)])
    assert cur.rowcount == 3
    cur = conn.executemany("UPDATE t SET x = x + 1 WHERE x >= ?", iter([(2,), (4,)]))
    assert cur.rowcount == 2 + 1
    cur = conn.execute("INSERT INTO t (x) VALUES (42)")
    assert cur.lastrowid == 4
    cur = conn.execute("UPDATE t SET x = 0")
    assert cur.rowcount == 4
    cur = conn.execute("DELETE FROM t WHERE id > 2")
    assert cur.rowcount == 2
    with pytest.raises(ormdb.ProgrammingError, match="DML"):
        conn.executemany("SELECT ?", [(1,)])


def test_executemany_with_generator_of_mappings(conn):
    conn.execute("CREATE TABLE t (a INTEGER, b TEXT)")
    conn.executemany("INSERT INTO t VALUES (:a, :b)", ({"a": i, "b": str(i)} for i in range(5)))
    assert conn.execute("SELECT count(*), sum(a) FROM t").fetchone() == (5, 10)


def test_one_statement_per_execute_and_executescript(conn):
    with pytest.raises(ormdb.ProgrammingError, match="one statement"):
        conn.execute("SELECT 1; SELECT 2")
    conn.executescript(
        """
        CREATE TABLE a (x INTEGER);
        INSERT INTO a VALUES (1);
        INSERT INTO a VALUES (2); -- trailing comment
        """
    )
    assert conn.execute("SELECT sum(x) FROM a").fetchone() == (3,)


def test_returning_rows(conn):
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    cur = conn.execute("INSERT INTO t (name) VALUES (?) RETURNING id, name", ("ada",))
    assert [d[0] for d in cur.description] == ["id", "name"]
    assert cur.fetchall() == [(1, "ada")]
    assert cur.rowcount == 1


def test_row_factory(conn):
    conn.row_factory = lambda cur, row: {d[0]: v for d, v in zip(cur.description, row)}
    assert conn.execute("SELECT 1 AS a").fetchone() == {"a": 1}


def test_calls_after_close(conn_factory=None):
    c = ormdb.connect(":memory:")
    cur = c.cursor()
    c.close()
    c.close()  # idempotent
    for call in (
        lambda: c.execute("SELECT 1"),
        lambda: c.cursor(),
        lambda: c.commit(),
        lambda: c.rollback(),
        lambda: c.in_transaction,
        lambda: c.total_changes,
        lambda: cur.execute("SELECT 1"),
        lambda: c.fetch({"root": "t"}),
        lambda: c.metrics(),
        lambda: c.create_function("f", 0, lambda: 1),
    ):
        with pytest.raises(ormdb.ProgrammingError, match="closed database"):
            call()


def test_closed_cursor(conn):
    cur = conn.execute("SELECT 1")
    cur.close()
    with pytest.raises(ormdb.ProgrammingError, match="closed cursor"):
        cur.fetchone()


def test_file_database_persists(db_path):
    c = ormdb.connect(db_path)
    c.execute("CREATE TABLE t (x TEXT)")
    c.execute("INSERT INTO t VALUES ('kept')")
    c.commit()
    c.close()
    c = ormdb.connect(db_path)
    assert c.execute("SELECT x FROM t").fetchall() == [("kept",)]
    c.close()


def test_memory_databases_are_separate():
    a = ormdb.connect(":memory:")
    b = ormdb.connect(":memory:")
    a.execute("CREATE TABLE t (x INTEGER)")
    with pytest.raises(ormdb.OperationalError):
        b.execute("SELECT * FROM t")
    a.close()
    b.close()


def test_shared_cache_memory_uri():
    a = ormdb.connect("file:shared1?mode=memory&cache=shared", uri=True)
    b = ormdb.connect("file:shared1?mode=memory&cache=shared", uri=True)
    a.execute("CREATE TABLE t (x INTEGER)")
    a.execute("INSERT INTO t VALUES (7)")
    a.commit()
    assert b.execute("SELECT x FROM t").fetchall() == [(7,)]
    a.close()
    b.close()


def test_uri_with_plain_path(db_path):
    c = ormdb.connect(db_path, uri=True, detect_types=3, check_same_thread=False)
    c.execute("SELECT 1")
    c.close()


def test_create_function(conn):
    conn.create_function("twice", 1, lambda x: None if x is None else x * 2, deterministic=True)
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.executemany("INSERT INTO t VALUES (?)", [(1,), (2,), (None,)])
    assert conn.execute("SELECT twice(x) FROM t ORDER BY x").fetchall() == [(None,), (2,), (4,)]
    # Overrides a built-in of the same name and arity; narg -1 takes any number.
    conn.create_function("concat_all", -1, lambda *a: "".join(str(x) for x in a))
    assert conn.execute("SELECT concat_all(1, 'b', 2.5)").fetchone() == ("1b2.5",)
    conn.create_function("floor", 1, lambda x: int(x // 1), deterministic=True)
    assert conn.execute("SELECT floor(2.7)").fetchone() == (2,)
    conn.create_function("regexp", 2, lambda p, s: 1 if p in (s or "") else 0)
    assert conn.execute("SELECT regexp('b', 'abc')").fetchone() == (1,)
    conn.create_function("twice", 1, None)
    with pytest.raises(ormdb.NotSupportedError):
        conn.execute("SELECT twice(1)")


def test_create_function_errors(conn):
    def boom(x):
        raise ValueError("bad input")

    conn.create_function("boom", 1, boom)
    with pytest.raises(ormdb.OperationalError, match="user-defined function raised") as ei:
        conn.execute("SELECT boom(1)")
    assert isinstance(ei.value.__cause__, ValueError)
    conn.create_function("weird", 0, lambda: [1])
    with pytest.raises(ormdb.OperationalError):
        conn.execute("SELECT weird()")
    with pytest.raises(ormdb.ProgrammingError):
        conn.create_function("f", 200, lambda: 1)
    with pytest.raises(ormdb.ProgrammingError):
        conn.create_function("f", 1, "not callable")
    # The connection still works afterwards.
    assert conn.execute("SELECT 1").fetchone() == (1,)


def test_recursive_use_from_a_function_is_refused(conn):
    conn.create_function("again", 0, lambda: conn.execute("SELECT 1").fetchone()[0])
    with pytest.raises(ormdb.OperationalError) as ei:
        conn.execute("SELECT again()")
    assert isinstance(ei.value.__cause__, ormdb.ProgrammingError)
    assert conn.execute("SELECT 2").fetchone() == (2,)


def test_create_aggregate(conn):
    class Variance:
        def __init__(self):
            self.values = []

        def step(self, v):
            if v is not None:
                self.values.append(v)

        def finalize(self):
            n = len(self.values)
            if n < 2:
                return None
            m = sum(self.values) / n
            return sum((v - m) ** 2 for v in self.values) / (n - 1)

    conn.create_aggregate("VAR_SAMP", 1, Variance)
    conn.execute("CREATE TABLE t (g TEXT, x REAL)")
    conn.executemany(
        "INSERT INTO t VALUES (?, ?)", [("a", 1), ("a", 2), ("a", 3), ("b", 5), ("b", None)]
    )
    assert conn.execute("SELECT g, var_samp(x) FROM t GROUP BY g ORDER BY g").fetchall() == [
        ("a", 1.0),
        ("b", None),
    ]
    assert conn.execute("SELECT var_samp(x) FROM t WHERE x > 100").fetchone() == (None,)

    class Concat:
        def __init__(self):
            self.parts = []

        def step(self, *args):
            self.parts.append("/".join(map(str, args)))

        def finalize(self):
            return ",".join(self.parts)

    conn.create_aggregate("cat", -1, Concat)
    assert conn.execute("SELECT cat(g, x) FROM t WHERE g = 'b'").fetchone() == ("b/5.0,b/None",)
    # As in sqlite3: no rows, no instance and no finalize() call; the value is NULL.
    assert conn.execute("SELECT cat(g) FROM t WHERE g = 'zz'").fetchone() == (None,)
    conn.create_aggregate("cat", -1, None)
    with pytest.raises(ormdb.NotSupportedError):
        conn.execute("SELECT cat(g) FROM t")


@pytest.mark.parametrize("stage", ["__init__", "step", "finalize"])
def test_create_aggregate_errors(conn, stage):
    class Bad:
        def __init__(self):
            if stage == "__init__":
                raise RuntimeError("init")

        def step(self, v):
            if stage == "step":
                raise RuntimeError("step")

        def finalize(self):
            if stage == "finalize":
                raise RuntimeError("finalize")
            return 1

    conn.create_aggregate("bad", 1, Bad)
    with pytest.raises(ormdb.OperationalError, match=f"'{stage}' method") as ei:
        conn.execute("SELECT bad(1)")
    assert isinstance(ei.value.__cause__, RuntimeError)


def test_unsupported_features_raise_not_supported(conn):
    with pytest.raises(ormdb.NotSupportedError):
        conn.create_collation("c", lambda a, b: 0)
