"""The ``ormdb`` SQLAlchemy dialect.

ORMDB speaks SQLite's SQL dialect and emulates its catalog (``sqlite_master`` and the
reflection PRAGMAs), and the ``ormdb`` DB-API module follows the ``sqlite3`` module, so the
dialect is SQLAlchemy's pysqlite dialect with another DB-API module, its own name (so that
Alembic and the testing plugin find ORMDB's implementations) and URL handling for ORMDB's
options and for ``ormdb serve`` (``ormdb://HOST:PORT``, ``ormdb://?server=ipc:///PATH``).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from sqlalchemy import exc, pool
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine.url import URL

_URL_FORMS = (
    "Valid ORMDB URL forms are:\n"
    " ormdb:///:memory: (or ormdb://)\n"
    " ormdb:///relative/path/to/app.db\n"
    " ormdb:////absolute/path/to/app.db\n"
    " ormdb://HOST:PORT (an `ormdb serve` listening on tcp://HOST:PORT)\n"
    " ormdb://?server=tcp://HOST:PORT or ormdb://?server=ipc:///path/to/socket"
)

# Options of a database opened by path; a server was given its own when it started.
_LOCAL_ONLY = ("durability", "cache_capacity", "image_budget", "value_threshold", "row_head_budget")

# Connection arguments accepted in the URL query string, with the type to coerce them to.
_CONNECT_ARGS: tuple[tuple[str, type], ...] = (
    ("timeout", float),
    ("isolation_level", str),
    ("detect_types", int),
    ("check_same_thread", bool),
    ("cached_statements", int),
    ("durability", str),
    ("cache_capacity", int),
    ("image_budget", int),
    ("value_threshold", int),
    ("row_head_budget", int),
)


def register_alembic_if_loaded() -> None:
    """Registers the Alembic implementation when Alembic is already imported. Importing
    Alembic just for that would cost every process using an engine ~10 MB; Alembic >= 1.17
    imports the implementation itself through the ``alembic.plugins`` entry point, and for
    older releases this runs again when an engine first connects (after env.py imported
    Alembic)."""
    if "alembic" in sys.modules:
        from . import alembic_impl  # noqa: F401


class OrmdbDialect(SQLiteDialect_pysqlite):
    """SQLite SQL generation and reflection over the ``ormdb`` DB-API module."""

    name = "ormdb"
    driver = "ormdb"
    supports_statement_cache = True

    # Every ORMDB transaction is a serializable snapshot; SQLite's READ UNCOMMITTED (shared
    # cache dirty reads) has no equivalent, so it is refused rather than silently ignored.
    _isolation_lookup = {"SERIALIZABLE": 0, "AUTOCOMMIT": None}  # type: ignore[assignment]

    @classmethod
    def import_dbapi(cls) -> Any:
        import ormdb

        return ormdb

    @classmethod
    def _server_url(cls, url: URL) -> str | None:
        """The ``tcp://`` / ``ipc://`` URL of the server ``url`` names, or None for a database
        opened by path (or in memory)."""
        if url.username or url.password:
            raise exc.ArgumentError(
                f"Invalid ORMDB URL: {url}: `ormdb serve` has no user names or passwords "
                "(loopback and the IPC socket's file permissions are its access control)\n"
                + _URL_FORMS
            )
        server = url.query.get("server")
        if isinstance(server, tuple):
            server = server[-1]
        if url.host or url.port:
            if server is not None or url.database or not (url.host and url.port):
                raise exc.ArgumentError(f"Invalid ORMDB URL: {url}\n" + _URL_FORMS)
            return f"tcp://{url.host}:{url.port}"
        if server is not None:
            if url.database or not str(server).startswith(("tcp://", "ipc://")):
                raise exc.ArgumentError(f"Invalid ORMDB URL: {url}\n" + _URL_FORMS)
            return str(server)
        return None

    @classmethod
    def _is_url_file_db(cls, url: URL) -> bool:
        return bool(url.database) and url.database != ":memory:"

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        # Every ":memory:" connection is a separate database (as in sqlite3): one connection
        # per thread keeps a thread's work on one database.
        if cls._is_url_file_db(url) or cls._server_url(url) is not None:
            return pool.QueuePool
        return pool.SingletonThreadPool

    def create_connect_args(self, url: URL) -> tuple[list[Any], dict[str, Any]]:
        server = self._server_url(url)
        opts = dict(url.query)
        opts.pop("server", None)
        if server is not None:
            local = sorted(k for k in opts if k in _LOCAL_ONLY)
            if local:
                raise exc.ArgumentError(
                    f"ORMDB URL option(s) {', '.join(local)} set how a database is opened by "
                    "path; a server has its own (ormdb serve --durability ...)"
                )
        kwargs: dict[str, Any] = {}
        for key, type_ in _CONNECT_ARGS:
            if key in opts:
                raw = opts.pop(key)
                value = raw[-1] if isinstance(raw, tuple) else raw
                if type_ is bool:
                    kwargs[key] = str(value).lower() in ("1", "true", "yes", "on")
                else:
                    try:
                        kwargs[key] = type_(value)
                    except ValueError as e:
                        raise exc.ArgumentError(f"ORMDB URL option {key}={value!r}: {e}") from e
        if opts:
            raise exc.ArgumentError(
                "Unknown ORMDB URL option(s): "
                + ", ".join(sorted(opts))
                + "; accepted: server, "
                + ", ".join(k for k, _ in _CONNECT_ARGS)
            )
        if server is not None:
            # A pooled connection may move between threads, as for a file database.
            kwargs.setdefault("check_same_thread", False)
            return [server], kwargs
        filename = url.database or ":memory:"
        if filename != ":memory:":
            filename = os.path.abspath(filename)
        # A file database is shared by the pool's connections, which SQLAlchemy hands to any
        # thread; the DB-API connection is safe to move between threads when not shared.
        kwargs.setdefault("check_same_thread", not self._is_url_file_db(url))
        return [filename], kwargs

    def on_connect(self) -> Any:
        # pysqlite registers Python functions (regexp, floor) on every connection. Over a
        # server there are no Python callbacks: floor is the engine's own, and REGEXP is the
        # engine's native, Python-compatible one where the server provides it (otherwise a
        # clear 0A000 error).
        local_hook = super().on_connect()

        def connect(conn: Any) -> None:
            if str(getattr(conn, "database", "")).startswith(("tcp://", "ipc://")):
                return
            if local_hook is not None:
                local_hook(conn)

        return connect

    def initialize(self, connection: Any) -> None:
        super().initialize(connection)
        register_alembic_if_loaded()

    def is_disconnect(self, e: Any, connection: Any, cursor: Any) -> bool:
        return isinstance(e, self.dbapi.ProgrammingError) and (  # type: ignore[union-attr]
            "Cannot operate on a closed database." in str(e)
        )


dialect = OrmdbDialect
