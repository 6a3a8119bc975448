"""Connection.iterdump and Connection.backup: round trips into new databases (ORMDB and, for
the dump text, sqlite3 itself), foreign key ordering, steps and progress, misuse."""

import os
import sqlite3

import pytest

import ormdb

SCHEMA = """
CREATE TABLE z_users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, score REAL);
CREATE TABLE a_posts (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES z_users(id),
    title TEXT,
    body BLOB
);
CREATE INDEX a_posts_title ON a_posts(title);
CREATE VIEW titles AS SELECT u.name, p.title FROM z_users u JOIN a_posts p ON p.user_id = u.id;
"""

USERS = [
    (1, "ada", 1.5),
    (2, "it's \"quoted\"; -- not a comment", None),
    (3, "line\nbreak, ünïcödé ✓", -0.0),
    (4, "big", 1e300),
    (5, "tiny", 5e-324),
    (9223372036854775807, "max", 0.1),
]
POSTS = [
    (10, 1, "first", b"\x00\x01\xff"),
    (11, 1, None, None),
    (12, 2, "", b""),
    (13, 9223372036854775807, "x" * 1000, bytes(range(256))),
]


def fill(conn):
    conn.executescript(SCHEMA)
    conn.executemany("INSERT INTO z_users VALUES (?, ?, ?)", USERS)
    conn.executemany("INSERT INTO a_posts VALUES (?, ?, ?, ?)", POSTS)
    conn.commit()


def contents(conn):
    """Schema text and every row of every table and view, comparable across databases."""
    schema = sorted(
        r
        for r in conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL"
        ).fetchall()
    )
    data = {
        name: conn.execute(f'SELECT * FROM "{name}" ORDER BY 1, 2').fetchall()
        for kind, name, _ in schema
        if kind in ("table", "view")
    }
    return schema, data


@pytest.fixture
def src():
    c = ormdb.connect(":memory:")
    fill(c)
    yield c
    c.close()


def test_iterdump_shape(src):
    lines = list(src.iterdump())
    assert lines[0] == "BEGIN TRANSACTION;"
    assert lines[-1] == "COMMIT;"
    creates = [i for i, s in enumerate(lines) if s.startswith("CREATE TABLE")]
    # The referenced table first, although its name sorts last.
    assert lines[creates[0]].startswith("CREATE TABLE z_users")
    first_post_insert = next(i for i, s in enumerate(lines) if s.startswith('INSERT INTO "a_posts"'))
    assert first_post_insert > creates[1]
    # Indexes and views after every table and row.
    last_insert = max(i for i, s in enumerate(lines) if s.startswith("INSERT"))
    assert lines.index("CREATE INDEX a_posts_title ON a_posts(title);") > last_insert
    assert lines[-2].startswith("CREATE VIEW titles")
    assert sum(s.startswith("INSERT") for s in lines) == len(USERS) + len(POSTS)


def test_iterdump_round_trip_into_ormdb(src, tmp_path):
    dump = "\n".join(src.iterdump())
    dst = ormdb.connect(str(tmp_path / "copy"))
    dst.executescript(dump)
    assert contents(dst) == contents(src)
    # Values keep their types (REAL stays REAL, blobs stay bytes).
    assert dst.execute("SELECT typeof(score) FROM z_users WHERE id = 1").fetchone() == ("real",)
    assert dst.execute("SELECT body FROM a_posts WHERE id = 13").fetchone() == (bytes(range(256)),)
    dst.close()


def test_iterdump_replays_in_sqlite3(src):
    lite = sqlite3.connect(":memory:")
    lite.execute("PRAGMA foreign_keys = ON")
    lite.executescript("\n".join(src.iterdump()))
    assert sorted(lite.execute("SELECT * FROM z_users").fetchall()) == sorted(USERS)
    assert sorted(lite.execute("SELECT * FROM a_posts").fetchall()) == sorted(POSTS)
    assert lite.execute("SELECT count(*) FROM titles").fetchone() == (4,)
    lite.close()


def test_iterdump_self_reference_is_wrapped_in_foreign_keys_off(conn):
    conn.executescript(
        "CREATE TABLE node (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES node(id));"
    )
    # Row 1 references row 2, which a replay inserts after it.
    conn.execute("INSERT INTO node VALUES (2, NULL)")
    conn.execute("INSERT INTO node VALUES (1, 2)")
    conn.commit()
    lines = list(conn.iterdump())
    assert lines[0] == "PRAGMA foreign_keys=OFF;" and lines[-1] == "PRAGMA foreign_keys=ON;"
    other = ormdb.connect(":memory:")
    other.executescript("\n".join(lines))
    assert other.execute("SELECT * FROM node ORDER BY id").fetchall() == [(1, 2), (2, None)]
    assert other.execute("PRAGMA foreign_keys").fetchone() == (1,)
    other.close()


def test_iterdump_filter_and_empty_database(src, conn):
    lines = list(src.iterdump(filter="z_%"))
    assert not any("a_posts" in s for s in lines)
    assert sum(s.startswith("INSERT") for s in lines) == len(USERS)
    assert list(conn.iterdump()) == ["BEGIN TRANSACTION;", "COMMIT;"]
    with pytest.raises(TypeError):
        list(src.iterdump(filter=3))


def test_iterdump_bypasses_converters_and_row_factory(tmp_path):
    c = ormdb.connect(":memory:", detect_types=ormdb.PARSE_DECLTYPES)
    c.row_factory = lambda cur, row: dict(zip([d[0] for d in cur.description], row))
    c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, d DATE)")
    c.execute("INSERT INTO t VALUES (1, '2024-01-02')")
    c.commit()
    assert "INSERT INTO \"t\"(\"id\",\"d\") VALUES(1,'2024-01-02');" in list(c.iterdump())
    c.close()


def test_backup_replaces_target_contents(src, tmp_path):
    dst = ormdb.connect(str(tmp_path / "dst"))
    dst.executescript(
        "CREATE TABLE old (x); INSERT INTO old VALUES (1);"
        "CREATE TABLE z_users (id INTEGER PRIMARY KEY, other TEXT);"
    )
    dst.commit()
    src.backup(dst)
    assert contents(dst) == contents(src)
    assert dst.execute("SELECT name FROM sqlite_master WHERE name = 'old'").fetchall() == []
    # Foreign keys are enforced again afterwards.
    assert dst.execute("PRAGMA foreign_keys").fetchone() == (1,)
    with pytest.raises(ormdb.IntegrityError):
        dst.execute("INSERT INTO a_posts (id, user_id) VALUES (99, 12345)")
    dst.close()


def test_backup_steps_report_progress(src):
    dst = ormdb.connect(":memory:")
    calls = []
    src.backup(dst, pages=1, progress=lambda *a: calls.append(a), sleep=0)
    # 2 tables + their 2 row chunks + 1 index + 1 view, one per step.
    assert calls == [(0, 5 - i, 6) for i in range(6)]
    assert contents(dst) == contents(src)
    calls.clear()
    src.backup(dst, progress=lambda *a: calls.append(a))
    assert calls == [(0, 0, 6)]
    dst.close()


def test_backup_to_a_path(src, tmp_path):
    path = str(tmp_path / "by-path")
    src.backup(path)
    dst = ormdb.connect(path)
    assert contents(dst) == contents(src)
    dst.close()


def test_backup_failure_leaves_target_unchanged(src):
    dst = ormdb.connect(":memory:")
    dst.execute("CREATE TABLE keep (x)")
    dst.commit()

    def boom(status, remaining, total):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        src.backup(dst, pages=1, progress=boom)
    assert dst.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall() == [
        ("keep",)
    ]
    assert not dst.in_transaction
    dst.close()


def test_backup_misuse(src):
    dst = ormdb.connect(":memory:")
    with pytest.raises(ValueError):
        src.backup(src)
    with pytest.raises(ormdb.OperationalError, match="unknown database"):
        src.backup(dst, name="temp")
    with pytest.raises(TypeError):
        src.backup(object())
    with pytest.raises(TypeError):
        src.backup(dst, pages="1")
    with pytest.raises(TypeError):
        src.backup(dst, progress=3)
    dst.execute("CREATE TABLE t (x)")
    dst.execute("INSERT INTO t VALUES (1)")
    assert dst.in_transaction
    with pytest.raises(ormdb.OperationalError, match="target is in transaction"):
        src.backup(dst)
    dst.close()
    with pytest.raises(ormdb.ProgrammingError):
        src.backup(dst)


def test_connect_memory_options(tmp_path):
    path = str(tmp_path / "db")
    c = ormdb.connect(path, cache_capacity=8 << 20, image_budget=0)
    c.executescript(
        "CREATE TABLE p (id INTEGER PRIMARY KEY);"
        "CREATE TABLE k (id INTEGER PRIMARY KEY, p_id INTEGER REFERENCES p(id));"
    )
    c.executemany("INSERT INTO p VALUES (?)", [(i,) for i in range(50)])
    c.executemany("INSERT INTO k VALUES (?, ?)", [(i, i % 50) for i in range(200)])
    c.commit()
    graph = {"root": "p", "order": [{"field": "id"}], "includes": [{"relation": "k"}]}
    for _ in range(3):  # repeated full scans would build images with a budget
        got = c.fetch(graph)
    assert [len(x["k"]) for x in got] == [4] * 50
    metrics = c.metrics()
    assert "ormdb_table_image_budget_bytes 0\n" in metrics
    assert "ormdb_table_image_builds_total 0\n" in metrics
    # Same values again are fine; different ones cannot apply to the open database.
    ormdb.connect(path, cache_capacity=8 << 20).close()
    with pytest.raises(ormdb.OperationalError, match="image_budget"):
        ormdb.connect(path, image_budget=1 << 20)
    c.close()
    with pytest.raises(TypeError):
        ormdb.connect(":memory:", cache_capacity="big")
    with pytest.raises(TypeError):
        ormdb.connect(":memory:", image_budget=True)
    with pytest.raises(ValueError):
        ormdb.connect(":memory:", cache_capacity=-1)


def test_default_image_budget_builds_images(tmp_path):
    c = ormdb.connect(str(tmp_path / "db"))
    c.execute("CREATE TABLE p (id INTEGER PRIMARY KEY, name TEXT)")
    c.executemany("INSERT INTO p VALUES (?, ?)", [(i, f"n{i}") for i in range(300)])
    c.commit()
    for _ in range(4):
        assert len(c.fetch({"root": "p"})) == 300
    metrics = dict(
        line.split(" ", 1) for line in c.metrics().splitlines() if line.startswith("ormdb_table_image")
    )
    assert int(metrics["ormdb_table_image_budget_bytes"]) == 64 << 20
    assert int(metrics["ormdb_table_image_builds_total"]) >= 1
    assert 0 < int(metrics["ormdb_table_image_bytes"]) <= 64 << 20
    c.close()


def test_dump_and_backup_keep_autoincrement_counters(conn):
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, x TEXT)")
    conn.executemany("INSERT INTO t (x) VALUES (?)", [("a",), ("b",), ("c",)])
    conn.execute("DELETE FROM t WHERE id = 3")
    conn.commit()
    lines = list(conn.iterdump())
    assert 'DELETE FROM "sqlite_sequence";' in lines
    assert 'INSERT INTO "sqlite_sequence"("name","seq") VALUES(\'t\',3);' in lines
    for replay in (ormdb.connect(":memory:"), sqlite3.connect(":memory:")):
        replay.executescript("\n".join(lines))
        replay.execute("INSERT INTO t (x) VALUES ('d')")
        # The deleted id 3 is not reused.
        assert replay.execute("SELECT id FROM t WHERE x = 'd'").fetchone() == (4,)
        replay.close()
    dst = ormdb.connect(":memory:")
    conn.backup(dst)
    dst.execute("INSERT INTO t (x) VALUES ('d')")
    assert dst.execute("SELECT id FROM t WHERE x = 'd'").fetchone() == (4,)
    dst.close()


def _vlog_bytes(path):
    values = os.path.join(path, "values")
    if not os.path.isdir(values):
        return None
    return sum(os.path.getsize(os.path.join(values, f)) for f in os.listdir(values))


def test_connect_value_threshold(tmp_path):
    path = str(tmp_path / "db")
    c = ormdb.connect(path, value_threshold=64)
    c.execute("CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT)")
    rows = [(i, f"{i}:" * (10 * i + 1)) for i in range(1, 60)]
    c.executemany("INSERT INTO docs VALUES (?, ?)", rows)
    c.commit()
    assert c.execute("SELECT id, body FROM docs ORDER BY id").fetchall() == rows
    # Same value again is fine; a different one cannot apply to the open database.
    ormdb.connect(path, value_threshold=64).close()
    with pytest.raises(ormdb.OperationalError, match="value_threshold"):
        ormdb.connect(path, value_threshold=1024)
    c.close()
    # The rows above 64 bytes went to the value log (their change records too).
    big = sum(len(b) for _, b in rows if len(b) > 64)
    assert _vlog_bytes(path) >= big
    c = ormdb.connect(path)
    assert c.execute("SELECT id, body FROM docs ORDER BY id").fetchall() == rows
    c.close()
    off = str(tmp_path / "off")
    c = ormdb.connect(off, value_threshold=0)
    c.execute("CREATE TABLE t (x TEXT)")
    c.execute("INSERT INTO t VALUES (?)", ("y" * 5000,))
    c.commit()
    c.close()
    assert _vlog_bytes(off) is None
    with pytest.raises(TypeError):
        ormdb.connect(":memory:", value_threshold="big")
    with pytest.raises(ValueError):
        ormdb.connect(":memory:", value_threshold=-1)


def _metric(c, name):
    for line in c.metrics().splitlines():
        if line.startswith(name + " "):
            return int(line.split(" ", 1)[1])
    raise AssertionError(f"no metric {name}")


def test_connect_row_head_budget(tmp_path):
    path = str(tmp_path / "db")
    c = ormdb.connect(path, image_budget=0)
    c.execute("CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT)")
    rows = [(i, f"{i}:" * 400) for i in range(1, 41)]
    c.executemany("INSERT INTO docs VALUES (?, ?)", rows)
    c.commit()
    assert _metric(c, "ormdb_row_head_budget_bytes") > 0
    before = _metric(c, "ormdb_row_head_hits_total")
    for i, body in rows:
        assert c.execute("SELECT body FROM docs WHERE id = ?", (i,)).fetchone() == (body,)
    # Rows of ~1.2 KB live in the value log: reads by key are answered from their heads.
    assert _metric(c, "ormdb_row_head_hits_total") - before == len(rows)
    assert _metric(c, "ormdb_row_head_bytes") > 0
    c.execute("UPDATE docs SET body = 'short' WHERE id = 7")
    c.commit()
    assert c.execute("SELECT body FROM docs WHERE id = 7").fetchone() == ("short",)
    with pytest.raises(ormdb.OperationalError, match="row_head_budget"):
        ormdb.connect(path, row_head_budget=1024)
    c.close()
    off = ormdb.connect(str(tmp_path / "off"), image_budget=0, row_head_budget=0)
    off.execute("CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT)")
    off.executemany("INSERT INTO docs VALUES (?, ?)", rows)
    off.commit()
    assert off.execute("SELECT body FROM docs WHERE id = 3").fetchone() == (rows[2][1],)
    assert _metric(off, "ormdb_row_head_budget_bytes") == 0
    assert _metric(off, "ormdb_row_head_hits_total") == 0
    off.close()
    with pytest.raises(ValueError):
        ormdb.connect(":memory:", row_head_budget=-1)
