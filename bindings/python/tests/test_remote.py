"""The DB-API over `ormdb serve`: a real server process on 127.0.0.1 (a free port) and on an ipc
socket in a temporary directory, driven through ``ormdb.connect(url)``."""

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

import ormdb

ROOT = Path(__file__).resolve().parents[3]
# scripts/test.sh builds the binary (cargo build --features ormdb/cli) before the Python suites;
# ORMDB_BIN points at another build.
BIN = Path(os.environ.get("ORMDB_BIN", ROOT / "target" / "debug" / "ormdb"))

pytestmark = pytest.mark.skipif(
    not BIN.exists(),
    reason=f"no ormdb binary at {BIN}: build it with `cargo build --features ormdb/cli`",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, tmp: Path) -> None:
        self.tcp = f"tcp://127.0.0.1:{free_port()}"
        self.ipc = f"ipc://{tmp / 'req.sock'}"
        self.proc = subprocess.Popen(
            [str(BIN), "serve", str(tmp / "db"), "--listen", self.tcp, "--listen", self.ipc],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        ready = threading.Event()

        def pump() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line)
                if "listening on" in line:
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + 60
        while not ready.wait(0.1):
            if self.proc.poll() is not None:
                raise RuntimeError(f"ormdb serve exited early: {''.join(self.lines)}")
            if time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError("ormdb serve did not start within 60 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


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
    with pytest.raises(ormdb.NotSupportedError, match="subscribe"):
        c.subscribe()
    with pytest.raises(ormdb.NotSupportedError, match="fetch"):
        c.fetch({"root": "t"})
    with pytest.raises(ormdb.NotSupportedError, match="fetch_objects"):
        c.fetch_objects({"root": "t"}, {"kind": "root"}, object, "default")
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
