"""The DB-API over `ormdb serve`: a real server process on 127.0.0.1 (a free port) and on an ipc
socket in a temporary directory, driven through ``ormdb.connect(url)``."""

import sys
import time
from pathlib import Path

import pytest

import ormdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ormdb_server import BIN, Server, free_port  # noqa: E402

pytestmark = pytest.mark.skipif(
    not BIN.exists(),
    reason=f"no ormdb binary at {BIN}: build it with `cargo build --features ormdb/cli`",
)


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path)
    yield s
    s.stop()


@pytest.fixture(params=["tcp", "ipc"])
def url(request, server):
    return getattr(server, request.param)


def test_round_trip(url):
    c = ormdb.connect(url)
    cur = c.cursor()
    cur.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, score REAL)")
    cur.execute("INSERT INTO users (name, score) VALUES (?, ?)", ("ada", 1.5))
    assert cur.rowcount == 1
    assert cur.lastrowid == 1
    cur.executemany("INSERT INTO users (name, score) VALUES (:n, :s)",
                    [{"n": "bob", "s": 2.0}, {"n": "cy", "s": None}])
    assert cur.rowcount == 2
    c.commit()
    cur.execute("SELECT id, name, score FROM users ORDER BY id")
    assert [d[0] for d in cur.description] == ["id", "name", "score"]
    assert cur.fetchone() == (1, "ada", 1.5)
    assert cur.fetchmany(1) == [(2, "bob", 2.0)]
    assert cur.fetchall() == [(3, "cy", None)]
    assert c.execute("SELECT count(*) FROM users").fetchone() == (3,)
    c.close()


def test_commit_visible_rollback_not(server):
    a = ormdb.connect(server.tcp)
    b = ormdb.connect(server.ipc)
    a.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    a.commit()
    a.execute("INSERT INTO t (v) VALUES ('kept')")
    assert a.in_transaction  # the implicit BEGIN before a write, as in sqlite3
    assert b.execute("SELECT count(*) FROM t").fetchone() == (0,)
    a.commit()
    assert not a.in_transaction
    assert b.execute("SELECT v FROM t").fetchall() == [("kept",)]
    a.execute("INSERT INTO t (v) VALUES ('dropped')")
    assert a.execute("SELECT count(*) FROM t").fetchone() == (2,)  # own uncommitted write
    a.rollback()
    assert b.execute("SELECT v FROM t").fetchall() == [("kept",)]
    assert a.execute("SELECT v FROM t").fetchall() == [("kept",)]
    with a:
        a.execute("INSERT INTO t (v) VALUES ('ctx')")
    assert b.execute("SELECT count(*) FROM t").fetchone() == (2,)
    a.close()
    b.close()


def test_autocommit_none_isolation(server):
    a = ormdb.connect(server.tcp, isolation_level=None)
    b = ormdb.connect(server.tcp)
    a.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    a.execute("INSERT INTO t (id) VALUES (7)")
    assert not a.in_transaction
    assert b.execute("SELECT id FROM t").fetchall() == [(7,)]
    a.close()
    b.close()


def test_unique_violation_is_integrity_error(url):
    c = ormdb.connect(url)
    c.execute("CREATE TABLE u (id INTEGER PRIMARY KEY, email TEXT UNIQUE)")
    c.execute("INSERT INTO u (email) VALUES ('a@x')")
    c.commit()
    with pytest.raises(ormdb.IntegrityError) as e:
        c.execute("INSERT INTO u (email) VALUES ('a@x')")
    assert e.value.sqlstate.startswith("23")
    c.rollback()
    assert c.execute("SELECT count(*) FROM u").fetchone() == (1,)
    c.close()


def test_syntax_error(url):
    c = ormdb.connect(url)
    with pytest.raises(ormdb.OperationalError) as e:
        c.execute("SELEC 1")
    assert e.value.sqlstate == "42601"
    with pytest.raises(ormdb.OperationalError):
        c.execute("SELECT * FROM no_such_table")
    c.close()


def test_closed_server_is_operational_error(server):
    c = ormdb.connect(server.tcp, timeout=2.0)
    assert c.execute("SELECT 1").fetchone() == (1,)
    server.stop()
    start = time.monotonic()
    with pytest.raises(ormdb.OperationalError):
        c.execute("SELECT 1")
    assert time.monotonic() - start < 15
    c.close()


def test_connect_to_nothing_is_operational_error(tmp_path):
    start = time.monotonic()
    with pytest.raises(ormdb.OperationalError):
        ormdb.connect(f"tcp://127.0.0.1:{free_port()}", timeout=1.0)
    assert time.monotonic() - start < 15


def test_unsupported_on_remote(server):
    c = ormdb.connect(server.tcp)
    with pytest.raises(ormdb.NotSupportedError, match="create_function"):
        c.create_function("twice", 1, lambda x: x * 2)
    with pytest.raises(ormdb.NotSupportedError, match="create_aggregate"):
        c.create_aggregate("agg", 1, object)
    # The connection still works afterwards.
    assert c.execute("SELECT 2").fetchone() == (2,)
    c.close()
    with pytest.raises(ormdb.ProgrammingError):
        c.execute("SELECT 1")


def test_explain_and_metrics_remote(server):
    c = ormdb.connect(server.tcp)
    c.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    c.commit()
    assert "root users" in c.explain({"root": "users"})
    r = c.mutate({"ops": [{"insert": {"entity": "users", "rows": [{"name": "ada"}]}}]})
    assert r["ops"][0]["affected"] == 1
    assert c.execute("SELECT name FROM users").fetchall() == [("ada",)]
    assert "ormdb_commits_total" in c.metrics()
    c.close()


BLOG = """
CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE posts (id INTEGER PRIMARY KEY, author_id INTEGER REFERENCES users(id), title TEXT);
INSERT INTO users (id, name) VALUES (1, 'ada'), (2, 'bob');
INSERT INTO posts (id, author_id, title) VALUES (10, 1, 'a1'), (11, 1, 'a2'), (12, 2, 'b1');
"""

NESTED = {
    "root": "users",
    "order": [{"field": "id"}],
    "includes": [{"relation": "posts", "order": [{"field": "id"}]}],
}
COUNT_POSTS = {"entity": "posts", "measures": [{"func": "count"}]}


def names(c) -> list:
    return [u["name"] for u in c.fetch(NESTED)]


def test_remote_fetch_matches_local(url, tmp_path):
    local = ormdb.connect(str(tmp_path / "local"))
    remote = ormdb.connect(url)
    for c in (local, remote):
        c.executescript(BLOG)
    users = remote.fetch(NESTED)
    assert users == local.fetch(NESTED)
    assert [p["title"] for p in users[0]["posts"]] == ["a1", "a2"]
    to_one = {"root": "posts", "order": [{"field": "id"}], "includes": [{"relation": "author"}]}
    posts = remote.fetch(to_one)
    assert posts == local.fetch(to_one)
    assert posts[2]["author"] == {"id": 2, "name": "bob"}
    page = {"root": "posts", "order": [{"field": "id"}], "page": {"limit": 2}}
    first = remote.fetch_raw(page)
    assert [p["id"] for p in first["data"]] == [10, 11]
    assert isinstance(first["next_cursor"], str) and first["stats"]["lookups"] >= 1
    page["page"]["after"] = first["next_cursor"]
    second = remote.fetch_raw(page)
    assert [p["id"] for p in second["data"]] == [12] and second["next_cursor"] is None
    assert remote.relations() == local.relations()
    # A relation created after the catalog was cached is followed and nested correctly.
    for c in (local, remote):
        c.execute("CREATE TABLE tags (id INTEGER PRIMARY KEY, post_id INTEGER REFERENCES posts(id), label TEXT)")
        c.execute("INSERT INTO tags (id, post_id, label) VALUES (1, 10, 'x')")
        c.commit()
    tagged = {"root": "posts", "order": [{"field": "id"}], "includes": [{"relation": "tags"}]}
    got = remote.fetch(tagged)
    assert got == local.fetch(tagged)
    assert got[0]["tags"] == [{"id": 1, "post_id": 10, "label": "x"}] and got[1]["tags"] == []
    assert any(r["name"] == "tags" for r in remote.relations())
    # The ORM-object path builds the same objects from the server's catalog.

    class State:
        adding = True
        db = None

    class Post:
        pass

    class User:
        pass

    graph = {"root": "posts", "order": [{"field": "id"}], "includes": [{"relation": "author", "alias": "a"}]}
    plan = {"cls": Post, "columns": ["id", "title"], "attnames": ["id", "title"], "kind": "root",
            "includes": [{"cls": User, "columns": ["id", "name"], "attnames": ["id", "name"],
                          "kind": "to_one", "key": "a", "cache": "author"}]}  # fmt: skip
    objs = remote.fetch_objects(graph, plan, State, "remote")
    assert [(o.id, o.title, o._state.fields_cache["author"].name) for o in objs] == [
        (o.id, o.title, o._state.fields_cache["author"].name)
        for o in local.fetch_objects(graph, plan, State, "local")
    ] == [(10, "a1", "ada"), (11, "a2", "ada"), (12, "b1", "bob")]
    local.close()
    remote.close()


def tx_script(a, b) -> None:
    """Graph requests in ``a``'s open transaction; ``b`` is another connection."""
    a.executescript(BLOG)
    a.execute("INSERT INTO users (id, name) VALUES (3, 'cy')")  # implicit BEGIN
    assert a.in_transaction
    r = a.mutate({"ops": [{"insert": {"entity": "posts", "rows": [{"id": 13, "author_id": 3, "title": "c1"}]}}]})
    assert r["ops"][0]["affected"] == 1
    users = a.fetch(NESTED)
    assert [u["name"] for u in users] == ["ada", "bob", "cy"]
    assert [p["title"] for p in users[2]["posts"]] == ["c1"]
    assert a.fetch_raw(NESTED)["data"] == users
    assert a.aggregate(COUNT_POSTS)["rows"] == [[4]]
    assert "actual: rows 3," in a.explain(NESTED, analyze=True)
    assert a.execute("SELECT count(*) FROM posts").fetchone() == (4,)
    # Isolated from the other connection, which sees the committed state.
    assert names(b) == ["ada", "bob"]
    assert b.aggregate(COUNT_POSTS)["rows"] == [[3]]
    assert "actual: rows 2," in b.explain(NESTED, analyze=True)
    a.rollback()
    assert names(a) == ["ada", "bob"]
    assert a.aggregate(COUNT_POSTS)["rows"] == [[3]]
    # A mutation in a transaction commits with it; outside one, on its own.
    a.execute("INSERT INTO users (id, name) VALUES (4, 'dee')")
    a.mutate({"ops": [{"insert": {"entity": "posts", "rows": [{"id": 14, "author_id": 4, "title": "d1"}]}}]})
    assert names(b) == ["ada", "bob"]
    a.commit()
    assert names(b) == ["ada", "bob", "dee"]
    assert not a.in_transaction
    a.mutate({"ops": [{"insert": {"entity": "users", "rows": [{"id": 5, "name": "eve"}]}}]})
    assert names(b) == ["ada", "bob", "dee", "eve"]
    # A failed mutation inside a transaction raises; the transaction goes on.
    a.execute("INSERT INTO users (id, name) VALUES (6, 'fay')")
    with pytest.raises(ormdb.IntegrityError):
        a.mutate({"ops": [{"insert": {"entity": "users", "rows": [{"id": 1, "name": "dup"}]}}]})
    assert a.in_transaction
    a.commit()
    assert names(b) == ["ada", "bob", "dee", "eve", "fay"]


def test_graph_requests_in_a_remote_transaction(server):
    a = ormdb.connect(server.tcp)
    b = ormdb.connect(server.ipc)
    tx_script(a, b)
    a.close()
    b.close()


def test_graph_requests_in_a_local_transaction_behave_the_same(tmp_path):
    a = ormdb.connect(str(tmp_path / "db"))
    b = ormdb.connect(str(tmp_path / "db"))
    tx_script(a, b)
    a.close()
    b.close()


def test_remote_transaction_rolled_back_on_idle_timeout(tmp_path):
    s = Server(tmp_path, extra=["--session-idle-timeout", "1"])
    try:
        a = ormdb.connect(s.tcp)
        a.executescript(BLOG)
        a.execute("INSERT INTO users (id, name) VALUES (3, 'cy')")
        a.mutate({"ops": [{"insert": {"entity": "posts", "rows": [{"id": 13, "author_id": 3}]}}]})
        assert names(a) == ["ada", "bob", "cy"]
        time.sleep(3)
        with pytest.raises(ormdb.OperationalError, match="idle timeout"):
            a.fetch(NESTED)
        with pytest.raises(ormdb.OperationalError, match="idle timeout"):
            a.mutate({"ops": [{"insert": {"entity": "users", "rows": [{"id": 9, "name": "x"}]}}]})
        a.rollback()  # the server already did; the connection is usable again
        assert not a.in_transaction
        assert names(a) == ["ada", "bob"]
        b = ormdb.connect(s.ipc)
        assert names(b) == ["ada", "bob"]
        assert b.aggregate(COUNT_POSTS)["rows"] == [[3]]
        b.close()
        a.close()
    finally:
        s.stop()


def values_of(change: dict) -> list:
    return [e["values"] for e in change["entities"]]


def test_remote_subscribe_and_resume_after_reconnect(server):
    w = ormdb.connect(server.tcp, isolation_level=None)
    w.execute("CREATE TABLE ev (id INTEGER PRIMARY KEY, v TEXT)")
    w.execute("CREATE TABLE other (id INTEGER PRIMARY KEY)")
    c = ormdb.connect(server.ipc)
    sub = c.subscribe(["ev"])
    assert sub.next(timeout=0.3) is None
    for i in (1, 2, 3):
        w.execute("INSERT INTO ev (id, v) VALUES (?, ?)", (i, f"v{i}"))
    w.execute("INSERT INTO other (id) VALUES (1)")  # not subscribed to
    got = [sub.next(timeout=10) for _ in range(3)]
    assert [values_of(g) for g in got] == [[{"id": i, "v": f"v{i}"}] for i in (1, 2, 3)]
    assert got[0]["entities"][0]["entity"] == "ev" and got[0]["entities"][0]["kind"] == "insert"
    assert got[0]["token"] < got[1]["token"] < got[2]["token"]
    assert sub.next(timeout=0.5) is None
    pos = sub.position
    assert pos == got[2]["token"]
    sub.close()
    c.close()
    with pytest.raises(ormdb.ProgrammingError):
        sub.next(timeout=0)

    # Committed while nobody listened: a new connection resumes from the token.
    w.execute("INSERT INTO ev (id, v) VALUES (4, 'v4')")
    w.execute("UPDATE ev SET v = 'w1' WHERE id = 1")
    c2 = ormdb.connect(server.tcp)
    sub2 = c2.subscribe(["ev"], after=pos)
    a, b = sub2.next(timeout=10), sub2.next(timeout=10)
    assert values_of(a) == [{"id": 4, "v": "v4"}]
    assert b["entities"][0]["kind"] == "update" and b["entities"][0]["changed"] == ["v"]
    assert sub2.next(timeout=0.5) is None
    # Then live: delivered promptly through the change stream.
    start = time.monotonic()
    w.execute("INSERT INTO ev (id, v) VALUES (5, 'v5')")
    live = sub2.next(timeout=10)
    assert values_of(live) == [{"id": 5, "v": "v5"}]
    assert time.monotonic() - start < 2
    sub2.close()
    c2.close()
    w.close()


def test_remote_subscribe_resumes_across_a_server_restart(tmp_path):
    s = Server(tmp_path)
    try:
        w = ormdb.connect(s.tcp, isolation_level=None)
        w.execute("CREATE TABLE ev (id INTEGER PRIMARY KEY, v TEXT)")
        c = ormdb.connect(s.tcp)
        sub = c.subscribe()
        w.execute("INSERT INTO ev (id, v) VALUES (1, 'a')")
        first = sub.next(timeout=10)
        assert values_of(first) == [{"id": 1, "v": "a"}]
        pos = sub.position
        sub.close()
        c.close()
        w.close()
    finally:
        s.stop()
    s = Server(tmp_path, tcp=s.tcp)
    try:
        w = ormdb.connect(s.ipc, isolation_level=None)
        w.execute("INSERT INTO ev (id, v) VALUES (2, 'b')")
        # A table created after subscribing: its fields are named from the refreshed catalog.
        w.execute("CREATE TABLE late (id INTEGER PRIMARY KEY, label TEXT)")
        w.execute("INSERT INTO late (id, label) VALUES (7, 'z')")
        c = ormdb.connect(s.tcp)
        sub = c.subscribe(after=pos)
        seen = []
        while True:
            cs = sub.next(timeout=5)
            if cs is None:
                break
            seen.extend(values_of(cs))
        assert seen == [{"id": 2, "v": "b"}, {"id": 7, "label": "z"}]
        sub.close()
        c.close()
        w.close()
    finally:
        s.stop()


def test_oversized_request_is_refused_locally_naming_the_limit(tmp_path):
    # The server advertises its limit in the handshake; the client refuses a larger request
    # before sending it (NNG would drop it unanswered) and the connection stays usable.
    s = Server(tmp_path, extra=["--max-request-bytes", "65536"])
    try:
        conn = ormdb.connect(s.ipc)
        with pytest.raises(ormdb.OperationalError) as e:
            conn.execute("SELECT ?", ("x" * 100_000,))
        assert e.value.sqlstate == "54000"
        assert "limit of 65536 bytes" in str(e.value)
        assert conn.execute("SELECT 1").fetchone() == (1,)
        conn.close()
    finally:
        s.stop()
