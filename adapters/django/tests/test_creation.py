"""Test database cloning for parallel test runs (Django's runner, ``--parallel N``): with the
"spawn" start method an in-memory test database reaches each worker through an on-disk copy
made with Connection.backup, as with Django's sqlite3 backend. ("fork" workers inherit the
in-memory database; on-disk test databases are copied as directories.)"""

import copy
import multiprocessing
import os

import pytest
from django.db import connections

from django_ormdb.base import DatabaseWrapper


def wrapper(alias, name):
    settings = copy.deepcopy(connections["default"].settings_dict)
    settings["NAME"] = name
    return DatabaseWrapper(settings, alias=alias)


@pytest.fixture
def spawn(monkeypatch, tmp_path):
    monkeypatch.setattr(multiprocessing, "get_start_method", lambda *a, **k: "spawn")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_spawn_workers_get_their_own_copy(spawn, schema):
    source = wrapper("cloning", "file:memorydb_cloning?mode=memory&cache=shared")
    with source.cursor() as c:
        c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        c.execute("CREATE INDEX t_v ON t (v)")
        c.execute("INSERT INTO t (v) VALUES ('a'), ('b')")
    try:
        assert source.creation.get_test_db_clone_settings("1")["NAME"] == "cloning_1.ormdb"
        source.creation._clone_test_db("1", verbosity=0)
        assert os.path.isdir(spawn / "cloning_1.ormdb")

        # What a spawned worker does: it starts with the parent's settings (the in-memory
        # name) and copies the on-disk clone into an in-memory database of its own.
        worker = wrapper("cloning", "file:memorydb_cloning?mode=memory&cache=shared")
        worker.creation.setup_worker_connection("1")
        assert worker.settings_dict["NAME"] == "file:memorydb_cloning_1?mode=memory&cache=shared"
        with worker.cursor() as c:
            c.execute("SELECT v FROM t ORDER BY id")
            assert c.fetchall() == [("a",), ("b",)]
            c.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND name = 't_v'")
            assert c.fetchall() == [("t_v",)]
            c.execute("INSERT INTO t (v) VALUES ('only in the worker')")
        with source.cursor() as c:
            c.execute("SELECT count(*) FROM t")
            assert c.fetchall() == [(2,)]
        worker.close()

        # Destroying a clone removes its directory.
        source.creation._destroy_test_db(
            source.creation.get_test_db_clone_settings("1")["NAME"], verbosity=0
        )
        assert not os.path.exists(spawn / "cloning_1.ormdb")
    finally:
        source.close()


def test_other_start_methods_are_refused(monkeypatch, schema):
    from django.db import NotSupportedError

    monkeypatch.setattr(multiprocessing, "get_start_method", lambda *a, **k: "forkserver")
    w = wrapper("cloning2", "file:memorydb_cloning2?mode=memory&cache=shared")
    with pytest.raises(NotSupportedError, match="forkserver"):
        w.creation.get_test_db_clone_settings("1")


def test_a_server_url_is_refused_with_a_clear_error():
    from django.core.exceptions import ImproperlyConfigured

    for url in ("tcp://127.0.0.1:7450", "ipc:///tmp/ormdb.sock"):
        with pytest.raises(ImproperlyConfigured, match="does not run over `ormdb serve` yet"):
            wrapper("remote", url).cursor()
