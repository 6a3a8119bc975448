"""PEP 249 (DB-API 2.0) over ORMDB, following the sqlite3 module's behaviour where ORMs rely
on it: implicit BEGIN before INSERT/UPDATE/DELETE/REPLACE (``isolation_level``), the
``autocommit`` attribute of Python 3.12, adapters and converters, ``create_function``.

The native layer (``ormdb._ormdb``) only marshals values and runs statements; everything here
is driver behaviour.
"""

from __future__ import annotations

import datetime
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Optional, Union

from . import _ormdb
from ._ormdb import (
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    Warning,
)

apilevel = "2.0"
threadsafety = 1
paramstyle = "qmark"

#: The SQLite version whose SQL dialect and behaviour ORMDB follows.
sqlite_version: str = _ormdb.SQLITE_VERSION
sqlite_version_info: tuple[int, int, int] = tuple(  # type: ignore[assignment]
    int(x) for x in sqlite_version.split(".")
)
version: str = _ormdb.__version__
version_info: tuple[int, ...] = tuple(int(x) for x in version.split(".") if x.isdigit())

PARSE_DECLTYPES = 1
PARSE_COLNAMES = 2
#: ``autocommit`` value selecting the pre-3.12 sqlite3 behaviour (driven by isolation_level).
LEGACY_TRANSACTION_CONTROL = -1

Binary = bytes
Date = datetime.date
Time = datetime.time
Timestamp = datetime.datetime


def DateFromTicks(ticks: float) -> datetime.date:
    return Date(*time.localtime(ticks)[:3])


def TimeFromTicks(ticks: float) -> datetime.time:
    return Time(*time.localtime(ticks)[3:6])


def TimestampFromTicks(ticks: float) -> datetime.datetime:
    return Timestamp(*time.localtime(ticks)[:6])


class _TypeObject:
    def __init__(self, *names: str) -> None:
        self.names = names

    def __eq__(self, other: object) -> bool:
        return other in self.names

    def __hash__(self) -> int:
        return hash(self.names)


STRING = _TypeObject("TEXT", "VARCHAR", "CHAR", "CLOB")
BINARY = _TypeObject("BLOB")
NUMBER = _TypeObject("INTEGER", "INT", "REAL", "NUMERIC", "FLOAT", "DOUBLE")
DATETIME = _TypeObject("DATE", "DATETIME", "TIMESTAMP", "TIME")
ROWID = _TypeObject("ROWID")

# type -> callable(value) -> None/int/float/str/bytes, consulted by the native layer for any
# parameter of another type.
adapters: dict[type, Callable[[Any], Any]] = {}
# upper-case type name -> callable(bytes) -> value (detect_types).
converters: dict[str, Callable[[bytes], Any]] = {}
_ormdb._set_adapters(adapters)


def register_adapter(type_: type, adapter: Callable[[Any], Any]) -> None:
    """Makes values of ``type_`` bindable as parameters: ``adapter(value)`` returns None, int,
    float, str or bytes."""
    adapters[type_] = adapter


def register_converter(typename: str, converter: Callable[[bytes], Any]) -> None:
    """With ``detect_types``, values of columns declared (or named, with PARSE_COLNAMES) as
    ``typename`` are passed as bytes to ``converter``, as in sqlite3."""
    converters[typename.upper()] = converter


def _adapt_date(d: datetime.date) -> str:
    return d.isoformat()


def _adapt_datetime(d: datetime.datetime) -> str:
    return d.isoformat(" ")


def _convert_date(b: bytes) -> datetime.date:
    return datetime.date(*map(int, b.split(b"-")))


def _convert_timestamp(b: bytes) -> datetime.datetime:
    datepart, timepart = b.split(b" ")
    year, month, day = map(int, datepart.split(b"-"))
    timepart_full = timepart.split(b".")
    hours, minutes, seconds = map(int, timepart_full[0].split(b":"))
    micro = int(f"{timepart_full[1].decode():0<6.6}") if len(timepart_full) == 2 else 0
    return datetime.datetime(year, month, day, hours, minutes, seconds, micro)


# sqlite3's default adapters and converters (deprecated there since 3.12, kept for drivers
# written against them).
register_adapter(datetime.date, _adapt_date)
register_adapter(datetime.datetime, _adapt_datetime)
register_converter("date", _convert_date)
register_converter("timestamp", _convert_timestamp)

_DML = ("insert", "update", "delete", "replace")
_LEADING = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?(?:\*/|$))*", re.S)
_ISOLATION_LEVELS = ("", "DEFERRED", "IMMEDIATE", "EXCLUSIVE")


def _is_dml(sql: str) -> bool:
    """Whether the statement starts (after whitespace and comments) with INSERT, UPDATE,
    DELETE or REPLACE: what sqlite3 opens an implicit transaction for."""
    m = _LEADING.match(sql)
    head = sql[m.end() if m else 0 :][:7].lower()
    return head.startswith(_DML)


def _to_bytes(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode("utf-8")
    return str(v).encode("ascii")


_COLNAME_TYPE = re.compile(r"\[([^\]]*)\]")


class Cursor:
    """A DB-API cursor. Results are fully materialized by the engine call."""

    arraysize: int
    row_factory: Optional[Callable[["Cursor", tuple], Any]]

    def __init__(self, connection: "Connection") -> None:
        if not isinstance(connection, Connection):
            raise TypeError("Cursor() needs an ormdb.Connection")
        self._connection = connection
        self.arraysize = 1
        self.row_factory = connection.row_factory
        self._rows: list[Any] = []
        self._pos = 0
        self._description: Optional[tuple] = None
        self.rowcount = -1
        self.lastrowid: Optional[int] = None
        self._closed = False

    @property
    def connection(self) -> "Connection":
        return self._connection

    @property
    def description(self) -> Optional[tuple]:
        return self._description

    def _check(self) -> None:
        self._connection._check()
        if self._closed:
            raise ProgrammingError("Cannot operate on a closed cursor.")

    def _reset(self) -> None:
        self._rows = []
        self._pos = 0
        self._description = None
        self.rowcount = -1

    def execute(self, sql: str, parameters: Any = ()) -> "Cursor":
        self._check()
        if not isinstance(sql, str):
            raise TypeError(f"execute() argument 1 must be str, not {type(sql).__name__}")
        self._reset()
        conn = self._connection
        dml = _is_dml(sql)
        if dml:
            conn._begin_implicit()
        cols, decls, rows, affected, lastrowid = conn._native.execute(sql, parameters)
        if cols:
            self._description = tuple((c, None, None, None, None, None, None) for c in cols)
            rows = self._convert(cols, decls, rows)
            if self.row_factory is not None:
                rows = [self.row_factory(self, r) for r in rows]
            self._rows = rows
        self.rowcount = affected if dml else -1
        self.lastrowid = lastrowid
        return self

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any]) -> "Cursor":
        self._check()
        if not isinstance(sql, str):
            raise TypeError(f"executemany() argument 1 must be str, not {type(sql).__name__}")
        self._reset()
        if not _is_dml(sql):
            raise ProgrammingError("executemany() can only execute DML statements.")
        conn = self._connection
        conn._begin_implicit()
        self.rowcount = conn._native.executemany(sql, seq_of_parameters)
        return self

    def executescript(self, sql_script: str) -> "Cursor":
        self._check()
        if not isinstance(sql_script, str):
            raise ValueError("script argument must be unicode.")
        self._reset()
        conn = self._connection
        if conn._autocommit == LEGACY_TRANSACTION_CONTROL and conn.in_transaction:
            conn._native.execute("COMMIT")
        conn._native.executescript(sql_script)
        return self

    def _convert(self, cols: list, decls: list, rows: list) -> list:
        detect = self._connection._detect_types
        if not detect or not converters:
            return rows
        funcs: list[Optional[Callable[[bytes], Any]]] = []
        for name, decl in zip(cols, decls):
            f = None
            if detect & PARSE_COLNAMES:
                m = _COLNAME_TYPE.search(name)
                if m:
                    f = converters.get(m.group(1).strip().upper())
            if f is None and detect & PARSE_DECLTYPES and decl:
                # sqlite3 uses the first word of the declared type ("VARCHAR(20)" -> VARCHAR).
                key = re.split(r"[\s(]", decl.strip(), maxsplit=1)[0].upper()
                f = converters.get(key)
            funcs.append(f)
        if detect & PARSE_COLNAMES:
            names = [n.split(" [", 1)[0] for n in cols]
            self._description = tuple((c, None, None, None, None, None, None) for c in names)
        if not any(funcs):
            return rows
        return [
            tuple(
                v if f is None or v is None else f(_to_bytes(v)) for f, v in zip(funcs, row)
            )
            for row in rows
        ]

    def fetchone(self) -> Any:
        self._check()
        if self._pos >= len(self._rows):
            return None
        row = self._rows[self._pos]
        self._pos += 1
        return row

    def fetchmany(self, size: Optional[int] = None) -> list:
        self._check()
        n = self.arraysize if size is None else size
        if n < 0:
            n = len(self._rows) - self._pos
        out = self._rows[self._pos : self._pos + n]
        self._pos += len(out)
        return out

    def fetchall(self) -> list:
        self._check()
        out = self._rows[self._pos :]
        self._pos = len(self._rows)
        return out

    def close(self) -> None:
        self._closed = True
        self._rows = []

    def setinputsizes(self, sizes: Any) -> None:
        pass

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        pass

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row


class _Shared:
    """A named in-memory database (``file:name?mode=memory&cache=shared``), kept while any
    connection to it is open."""

    def __init__(self, db: "_ormdb.NativeDatabase") -> None:
        self.db = db


_shared_lock = threading.Lock()
_shared: "weakref.WeakValueDictionary[str, _Shared]" = weakref.WeakValueDictionary()


def _open_database(
    database: str, uri: bool, durability: str, memory: dict[str, Optional[int]]
) -> tuple["_ormdb.NativeDatabase", Optional[_Shared]]:
    if uri and database.startswith("file:"):
        from urllib.parse import parse_qs, unquote

        rest = database[len("file:") :]
        path, _, query = rest.partition("?")
        opts = {k: v[-1] for k, v in parse_qs(query).items()}
        path = unquote(path)
        if path.startswith("//"):
            # file://host/path: only an empty host or localhost, as in SQLite.
            host, _, p = path[2:].partition("/")
            if host not in ("", "localhost"):
                raise OperationalError(f"invalid uri authority: {host}")
            path = "/" + p
        mode = opts.get("mode", "rwc")
        if mode not in ("rwc", "rw", "memory", "ro"):
            raise OperationalError(f"no such access mode: {mode}")
        if mode == "ro":
            raise NotSupportedError("read-only databases (mode=ro) are not supported")
        if mode == "memory" or path == ":memory:":
            if opts.get("cache") == "shared" and path not in ("", ":memory:"):
                with _shared_lock:
                    holder = _shared.get(path)
                    if holder is None:
                        holder = _Shared(_ormdb.NativeDatabase.open(None, durability, **memory))
                        _shared[path] = holder
                return holder.db, holder
            return _ormdb.NativeDatabase.open(None, durability, **memory), None
        if mode == "rw" and not os.path.exists(path):
            raise OperationalError(f"unable to open database file: {path}")
        return _ormdb.NativeDatabase.open(path, durability, **memory), None
    if database == ":memory:" or database == "":
        return _ormdb.NativeDatabase.open(None, durability, **memory), None
    return _ormdb.NativeDatabase.open(database, durability, **memory), None


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_literal(v: Any) -> str:
    """A value as an SQL literal that reads back as the same value and type."""
    if v is None:
        return "NULL"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return "NULL"
        if v in (float("inf"), float("-inf")):
            return "1e999" if v > 0 else "-1e999"
        return repr(v)
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    if isinstance(v, (bytes, bytearray, memoryview)):
        return "X'" + bytes(v).hex().upper() + "'"
    raise InternalError(f"unexpected value of type {type(v).__name__} in a dump")


def _parents_first(native: Any, tables: dict[str, str]) -> tuple[list[str], bool]:
    """Table names ordered so that a table comes after the tables its foreign keys
    reference (by name otherwise), and whether references form a cycle (a table referencing
    itself included: its rows may reference rows that come later)."""
    refs: dict[str, set[str]] = {}
    lower = {t.lower(): t for t in tables}
    for t in tables:
        fks = native.execute(f"PRAGMA foreign_key_list({_ident(t)})")[2]
        refs[t] = {lower[r[2].lower()] for r in fks if r[2] and r[2].lower() in lower}
    order: list[str] = []
    state: dict[str, int] = {}  # 1: being visited, 2: done
    cyclic = any(t in r for t, r in refs.items())

    def visit(t: str) -> None:
        nonlocal cyclic
        state[t] = 1
        for p in sorted(refs[t]):
            if state.get(p) == 1:
                cyclic = True
            elif p not in state:
                visit(p)
        state[t] = 2
        order.append(t)

    for t in sorted(tables):
        if t not in state:
            visit(t)
    return order, cyclic


_ROWS_PER_UNIT = 100


def _dump_items(native: Any, table_like: Optional[str]) -> tuple[list[tuple], bool]:
    """What a dump holds, in replay order: ("sql", CREATE statement) and ("rows", table,
    columns, rows) per table (parents first), the AUTOINCREMENT counters, then ("sql", ...)
    for indexes, triggers and views; and whether foreign keys form a cycle."""
    query = (
        "SELECT type, name, tbl_name, sql FROM sqlite_master "
        "WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
    )
    params: tuple = ()
    if table_like is not None:
        query += " AND tbl_name LIKE ?"
        params = (table_like,)
    schema = native.execute(query, params)[2]
    tables = {name: sql for kind, name, _, sql in schema if kind == "table"}
    order, cyclic = _parents_first(native, tables)
    items: list[tuple] = []
    for table in order:
        items.append(("sql", tables[table]))
        # table_info leaves out generated columns, which an INSERT must not set.
        cols = [r[1] for r in native.execute(f"PRAGMA table_info({_ident(table)})")[2]]
        col_list = ",".join(_ident(c) for c in cols)
        rows = native.execute(f"SELECT {col_list} FROM {_ident(table)}")[2]
        items.append(("rows", table, cols, rows))
    has_sequence = native.execute(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'"
    )[2][0][0]
    if has_sequence:
        # AUTOINCREMENT counters, as sqlite3 dumps them: they may be above the largest id.
        seq = native.execute("SELECT name, seq FROM sqlite_sequence")[2]
        seq = [r for r in seq if r[0] in tables]
        items.append(("sql", 'DELETE FROM "sqlite_sequence"'))
        items.append(("rows", "sqlite_sequence", ["name", "seq"], seq))
    for kind in ("index", "trigger", "view"):
        items.extend(("sql", sql) for k, _, _, sql in schema if k == kind)
    return items, cyclic


def _drop_all(native: Any) -> list[str]:
    """DROP statements removing every view and table of a database (indexes and triggers go
    with their tables)."""
    rows = native.execute(
        "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'view') "
        "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
    )[2]
    views = [f"DROP VIEW {_ident(n)}" for k, n in rows if k == "view"]
    return views + [f"DROP TABLE {_ident(n)}" for k, n in rows if k == "table"]


def _byte_limit(name: str, value: Optional[int]) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int (bytes) or None, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0 bytes, not {value}")
    return value


class Connection:
    """A DB-API connection (sqlite3-compatible surface)."""

    # PEP 249 optional extension: exceptions as connection attributes.
    Warning = Warning
    Error = Error
    InterfaceError = InterfaceError
    DatabaseError = DatabaseError
    DataError = DataError
    OperationalError = OperationalError
    IntegrityError = IntegrityError
    InternalError = InternalError
    ProgrammingError = ProgrammingError
    NotSupportedError = NotSupportedError

    row_factory: Optional[Callable[[Cursor, tuple], Any]]

    def __init__(
        self,
        database: Union[str, bytes, "os.PathLike[str]"],
        timeout: float = 5.0,
        detect_types: int = 0,
        isolation_level: Optional[str] = "",
        check_same_thread: bool = True,
        factory: Any = None,
        cached_statements: int = 128,
        uri: bool = False,
        *,
        autocommit: Union[bool, int] = LEGACY_TRANSACTION_CONTROL,
        durability: str = "full",
        cache_capacity: Optional[int] = None,
        image_budget: Optional[int] = None,
        value_threshold: Optional[int] = None,
        row_head_budget: Optional[int] = None,
    ) -> None:
        self._native: Any = None
        if isinstance(database, bytes):
            database = database.decode()
        database = os.fspath(database)
        if not isinstance(detect_types, int):
            raise TypeError("detect_types must be an int")
        self._check_autocommit_value(autocommit)
        self._isolation_level = self._valid_isolation_level(isolation_level)
        if database.startswith(("tcp://", "ipc://")):
            # A server URL: the same surface over `ormdb serve`; `timeout` bounds connecting
            # and each request so a server that went away raises OperationalError.
            self._db, self._shared = None, None
            self._native = _ormdb.RemoteConnection.connect(database, float(timeout))
        else:
            memory = {
                "cache_capacity": _byte_limit("cache_capacity", cache_capacity),
                "image_budget": _byte_limit("image_budget", image_budget),
                "value_threshold": _byte_limit("value_threshold", value_threshold),
                "row_head_budget": _byte_limit("row_head_budget", row_head_budget),
            }
            self._db, self._shared = _open_database(database, uri, durability, memory)
            self._native = self._db.connect()
        self.database = database
        self.timeout = timeout
        self._detect_types = detect_types
        self._check_same_thread = check_same_thread
        self._thread = threading.get_ident()
        self._autocommit = autocommit
        self.row_factory = None
        if autocommit is False:
            self._native.execute("BEGIN")

    # -- state checks ------------------------------------------------------------------

    def _check(self) -> None:
        native = self._native
        if native is None or native.closed:
            raise ProgrammingError("Cannot operate on a closed database.")
        if self._check_same_thread and threading.get_ident() != self._thread:
            raise ProgrammingError(
                "SQLite objects created in a thread can only be used in that same thread. "
                f"The object was created in thread id {self._thread} and this is thread id "
                f"{threading.get_ident()}."
            )

    @staticmethod
    def _check_autocommit_value(value: Any) -> None:
        if value is not True and value is not False and value != LEGACY_TRANSACTION_CONTROL:
            raise ValueError(
                "autocommit must be True, False, or ormdb.LEGACY_TRANSACTION_CONTROL"
            )

    @staticmethod
    def _valid_isolation_level(level: Optional[str]) -> Optional[str]:
        if level is None:
            return None
        if not isinstance(level, str):
            raise TypeError("isolation_level must be str or None")
        if level.upper() not in _ISOLATION_LEVELS:
            raise ValueError(
                "isolation_level string must be '', 'DEFERRED', 'IMMEDIATE', or 'EXCLUSIVE'"
            )
        return level

    def _begin_implicit(self) -> None:
        if (
            self._autocommit == LEGACY_TRANSACTION_CONTROL
            and self._isolation_level is not None
            and not self._native.in_transaction
        ):
            self._native.execute(f"BEGIN {self._isolation_level}".strip())

    # -- transaction control -------------------------------------------------------------

    @property
    def isolation_level(self) -> Optional[str]:
        return self._isolation_level

    @isolation_level.setter
    def isolation_level(self, value: Optional[str]) -> None:
        self._check()
        level = self._valid_isolation_level(value)
        if level is None and self._autocommit == LEGACY_TRANSACTION_CONTROL:
            # sqlite3 commits a pending transaction when switching to autocommit.
            if self._native.in_transaction:
                self._native.execute("COMMIT")
        self._isolation_level = level

    @property
    def autocommit(self) -> Union[bool, int]:
        return self._autocommit

    @autocommit.setter
    def autocommit(self, value: Union[bool, int]) -> None:
        self._check()
        self._check_autocommit_value(value)
        if value is True and self._native.in_transaction:
            self._native.execute("COMMIT")
        elif value is False and not self._native.in_transaction:
            self._native.execute("BEGIN")
        self._autocommit = value

    @property
    def text_factory(self) -> Any:
        return str

    @text_factory.setter
    def text_factory(self, value: Any) -> None:
        # TEXT values always arrive as str; anything else would silently be ignored.
        if value is not str:
            raise NotSupportedError("text_factory: only str is supported")

    @property
    def in_transaction(self) -> bool:
        self._check()
        return bool(self._native.in_transaction)

    @property
    def total_changes(self) -> int:
        self._check()
        return int(self._native.total_changes)

    def commit(self) -> None:
        self._check()
        if self._autocommit is True:
            return
        if self._native.in_transaction:
            self._native.execute("COMMIT")
        if self._autocommit is False:
            self._native.execute("BEGIN")

    def rollback(self) -> None:
        self._check()
        if self._autocommit is True:
            return
        if self._native.in_transaction:
            self._native.execute("ROLLBACK")
        if self._autocommit is False:
            self._native.execute("BEGIN")

    def close(self) -> None:
        """Closes the connection; an open transaction is rolled back (as in sqlite3)."""
        if self._native is None:
            return
        if self._check_same_thread and threading.get_ident() != self._thread:
            self._check()
        self._native.close()
        self._shared = None

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is None:
            self.commit()
        else:
            self.rollback()
        return False

    def __del__(self) -> None:
        native = getattr(self, "_native", None)
        if native is not None:
            try:
                native.close()
            except Exception:
                pass

    # -- statements ----------------------------------------------------------------------

    def cursor(self, factory: Optional[Callable[["Connection"], Cursor]] = None) -> Cursor:
        self._check()
        cur = (factory or Cursor)(self)
        if not isinstance(cur, Cursor):
            raise TypeError("factory must return a cursor, not " + type(cur).__name__)
        return cur

    def execute(self, sql: str, parameters: Any = ()) -> Cursor:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any]) -> Cursor:
        return self.cursor().executemany(sql, seq_of_parameters)

    def executescript(self, sql_script: str) -> Cursor:
        return self.cursor().executescript(sql_script)

    def create_function(
        self,
        name: str,
        narg: int,
        func: Optional[Callable[..., Any]],
        *,
        deterministic: bool = False,
    ) -> None:
        """Registers a Python function callable from SQL (``func=None`` removes it). An
        exception in ``func`` fails the statement with OperationalError (its ``__cause__``
        is the original exception)."""
        self._check()
        self._native.create_function(name, narg, func, deterministic)

    def create_aggregate(self, name: str, n_arg: int, aggregate_class: Any) -> None:
        """Registers an aggregate: ``aggregate_class()`` is instantiated per group, its
        ``step(*args)`` called for each row and ``finalize()`` gives the value
        (``aggregate_class=None`` removes it). The steps of a group run when the group is
        complete."""
        self._check()
        self._native.create_aggregate(name, n_arg, aggregate_class)

    def install_django_functions(self) -> list[str]:
        """Replaces Django's SQLite functions, registered before with ``create_function`` /
        ``create_aggregate``, by the engine's native implementations; the Python ones stay as
        the fallback for time zone conversions and unusual values. Returns the names."""
        self._check()
        return self._native.install_django_functions()

    def create_window_function(self, name: str, num_params: int, aggregate_class: Any) -> None:
        self._check()
        raise NotSupportedError("create_window_function: window functions are not supported")

    def create_collation(self, name: str, callable: Any) -> None:
        self._check()
        raise NotSupportedError("create_collation: user-defined collations are not supported")

    def set_authorizer(self, authorizer_callback: Any) -> None:
        self._check()
        raise NotSupportedError("set_authorizer is not supported")

    def set_progress_handler(self, progress_handler: Any, n: int) -> None:
        self._check()
        if progress_handler is not None:
            raise NotSupportedError("set_progress_handler is not supported")

    def set_trace_callback(self, trace_callback: Any) -> None:
        self._check()
        if trace_callback is not None:
            raise NotSupportedError("set_trace_callback is not supported")

    def enable_load_extension(self, enabled: bool) -> None:
        self._check()
        raise NotSupportedError("SQLite extensions cannot be loaded into ORMDB")

    def load_extension(self, path: str, *, entrypoint: Optional[str] = None) -> None:
        self._check()
        raise NotSupportedError("SQLite extensions cannot be loaded into ORMDB")

    def interrupt(self) -> None:
        self._check()
        raise NotSupportedError("interrupt is not supported")

    def backup(
        self,
        target: Union["Connection", str, "os.PathLike[str]"],
        *,
        pages: int = -1,
        progress: Optional[Callable[[int, int, int], Any]] = None,
        name: str = "main",
        sleep: float = 0.250,
    ) -> None:
        """Copies this database into ``target`` (another ORMDB connection, or a path opened
        for the copy), replacing the target's tables, indexes and views, as sqlite3's backup
        does. The copy is the statements of :meth:`iterdump` replayed in one transaction of
        the target (rows as parameters, not SQL text), so a failure leaves the target as it
        was. A step copies ``pages`` units, a unit being a schema object or up to 100 rows of
        a table (<= 0: everything in one step); after each step
        ``progress(0, remaining, total)`` is called and, if more remain, the copy sleeps
        ``sleep`` seconds."""
        self._check()
        if not isinstance(pages, int) or isinstance(pages, bool):
            raise TypeError(f"pages must be an int, not {type(pages).__name__}")
        if progress is not None and not callable(progress):
            raise TypeError("progress argument must be a callable")
        if not isinstance(name, str):
            raise TypeError(f"name must be str, not {type(name).__name__}")
        if name != "main":
            raise OperationalError(f"unknown database {name}")
        if isinstance(target, (str, bytes, os.PathLike)):
            with connect(target) as dest:
                self.backup(dest, pages=pages, progress=progress, sleep=sleep)
            return
        if not isinstance(target, Connection):
            raise TypeError(
                "backup() argument 1 must be ormdb.Connection or a path, "
                f"not {type(target).__name__}"
            )
        if target is self:
            raise ValueError("target cannot be the same connection instance")
        target._check()
        if target.in_transaction:
            raise OperationalError("target is in transaction")
        items, _ = _dump_items(self._native, None)
        # A step copies `pages` units: a schema object or up to _ROWS_PER_UNIT rows.
        units: list[tuple] = []
        for item in items:
            if item[0] == "sql":
                units.append(item)
            else:
                _, table, cols, rows = item
                for i in range(0, len(rows), _ROWS_PER_UNIT):
                    units.append(("rows", table, cols, rows[i : i + _ROWS_PER_UNIT]))
        dest = target._native
        fk_on = bool(dest.execute("PRAGMA foreign_keys")[2][0][0])
        if fk_on:
            # The target's old tables are dropped in any order and the rows arrive table by
            # table; the source's constraints held when it was read.
            dest.execute("PRAGMA foreign_keys = OFF")
        try:
            dest.execute("BEGIN")
            try:
                for stmt in _drop_all(dest):
                    dest.execute(stmt)
                total = len(units)
                step = total if pages <= 0 else pages
                done = 0
                while True:
                    for unit in units[done : done + step]:
                        if unit[0] == "sql":
                            dest.executescript(unit[1])
                        else:
                            _, table, cols, rows = unit
                            dest.executemany(
                                f"INSERT INTO {_ident(table)}({','.join(_ident(c) for c in cols)}) "
                                f"VALUES({','.join('?' * len(cols))})",
                                rows,
                            )
                    done = min(total, done + step)
                    if progress is not None:
                        progress(0, total - done, total)
                    if done >= total:
                        break
                    if sleep > 0:
                        time.sleep(sleep)
                dest.execute("COMMIT")
            except BaseException:
                if dest.in_transaction:
                    dest.execute("ROLLBACK")
                raise
        finally:
            if fk_on:
                dest.execute("PRAGMA foreign_keys = ON")

    def iterdump(self, *, filter: Optional[str] = None) -> Iterator[str]:
        """The database as SQL text, one statement per item, as sqlite3's iterdump:
        ``BEGIN TRANSACTION;``, each table's CREATE statement followed by its rows as
        INSERTs, then indexes, triggers and views, then ``COMMIT;``. Tables come parents
        first (by foreign key), so the script replays on a database that enforces foreign
        keys; where references form a cycle it is wrapped in ``PRAGMA foreign_keys=OFF``
        / ``ON``. ``filter`` is a LIKE pattern on table names (Python 3.13's sqlite3)."""
        self._check()
        if filter is not None and not isinstance(filter, str):
            raise TypeError(f"filter must be str or None, not {type(filter).__name__}")
        items, cyclic = _dump_items(self._native, filter)
        if cyclic:
            yield "PRAGMA foreign_keys=OFF;"
        yield "BEGIN TRANSACTION;"
        for item in items:
            if item[0] == "sql":
                yield f"{item[1]};"
            else:
                _, table, cols, rows = item
                head = f"INSERT INTO {_ident(table)}({','.join(_ident(c) for c in cols)}) VALUES("
                for row in rows:
                    yield head + ",".join(_sql_literal(v) for v in row) + ");"
        yield "COMMIT;"
        if cyclic:
            yield "PRAGMA foreign_keys=ON;"

    # -- native API ----------------------------------------------------------------------

    def fetch(self, graph: Union[Mapping[str, Any], str]) -> list[dict[str, Any]]:
        """Graph fetch: nested rows (to-one relations as a dict or None, to-many as lists).
        Inside an open transaction it reads that transaction's snapshot, including this
        connection's uncommitted writes (as a SELECT does); otherwise the latest commit."""
        self._check()
        return self._native.fetch(graph)  # type: ignore[no-any-return]

    def fetch_objects(
        self, graph: Union[Mapping[str, Any], str], plan: Mapping[str, Any], state_cls: Any, db: Any
    ) -> list[Any]:
        """Graph fetch building ORM objects in the binding instead of nested dicts: for each
        row ``object.__new__(plan["cls"])`` with a fresh ``state_cls`` object (``adding =
        False``, ``db = db``) under ``_state`` and the converted column values under their
        attribute names (or ``plan["from_db"](values)``), relation caches filled in the state's
        ``fields_cache`` and to-many lists handed to the plan's ``attach(obj, objects)``. The
        plan's keys are described in the binding's objects.rs; the Django backend's
        ``.graph()`` is its user. Same snapshot rules as ``fetch``."""
        self._check()
        return self._native.fetch_objects(graph, plan, state_cls, db)  # type: ignore[no-any-return]

    def relations(self) -> list[dict[str, Any]]:
        """The relations a graph fetch can include, named as the catalog derives them from
        foreign keys: dicts with name, kind (many_to_one, one_to_one, one_to_many,
        many_to_many), from, to, forward, fk_entity, fk_fields and far_fk_fields."""
        self._check()
        return self._native.relations()  # type: ignore[no-any-return]

    def fetch_raw(self, graph: Union[Mapping[str, Any], str]) -> dict[str, Any]:
        """Graph fetch returning {"data": [...], "next_cursor": str | None, "stats": {...}}."""
        self._check()
        return self._native.fetch_raw(graph)  # type: ignore[no-any-return]

    def explain(self, graph: Union[Mapping[str, Any], str], analyze: bool = False) -> str:
        self._check()
        return self._native.explain(graph, analyze)  # type: ignore[no-any-return]

    def mutate(self, mutation: Union[Mapping[str, Any], str]) -> dict[str, Any]:
        """Applies a mutation batch as one committed transaction."""
        self._check()
        return self._native.mutate(mutation)  # type: ignore[no-any-return]

    def aggregate(self, aggregate: Union[Mapping[str, Any], str]) -> dict[str, Any]:
        self._check()
        return self._native.aggregate(aggregate)  # type: ignore[no-any-return]

    def metrics(self) -> str:
        """Engine counters in Prometheus text format."""
        self._check()
        return self._native.metrics()  # type: ignore[no-any-return]

    def subscribe(
        self, entities: Optional[Sequence[str]] = None, after: Optional[int] = None
    ) -> "Union[_ormdb.NativeSubscription, _ormdb.RemoteSubscription]":
        """A change stream of committed change sets (dicts) from now on, or after token
        ``after``. Iterate it (blocks) or call ``next(timeout=seconds)``. ``position`` is the
        token of the last change delivered: ``subscribe(after=position)`` on a new connection
        (also to a restarted server) resumes without gaps or repeats."""
        self._check()
        return self._native.subscribe(list(entities) if entities is not None else None, after)


def connect(
    database: Union[str, bytes, "os.PathLike[str]"],
    timeout: float = 5.0,
    detect_types: int = 0,
    isolation_level: Optional[str] = "",
    check_same_thread: bool = True,
    factory: Optional[type] = None,
    cached_statements: int = 128,
    uri: bool = False,
    *,
    autocommit: Union[bool, int] = LEGACY_TRANSACTION_CONTROL,
    durability: str = "full",
    cache_capacity: Optional[int] = None,
    image_budget: Optional[int] = None,
    value_threshold: Optional[int] = None,
    row_head_budget: Optional[int] = None,
) -> Connection:
    """Opens a connection to the ORMDB database at ``database`` (a directory path, created if
    missing), to a fresh temporary database for ``":memory:"``, or to an ``ormdb serve`` at a
    ``tcp://host:port`` or ``ipc:///path`` URL (there ``timeout`` bounds connecting and each
    request; graph fetch, explain, mutate and aggregate run in the connection's open
    transaction as locally, change streams resume from a token; only Python callbacks
    (create_function, create_aggregate) raise NotSupportedError). Locally, ``timeout`` and
    ``cached_statements`` are accepted for sqlite3 compatibility: ORMDB never waits on locks
    (conflicting commits fail with OperationalError, SQLSTATE 40001) and caches statements on
    its own. ``durability`` is "full" (fsync before a commit returns) or "normal".

    Memory (local databases; byte limits, None for the defaults): ``cache_capacity`` bounds
    the storage page cache (default 64 MiB; it only holds pages read or written, so a small
    database uses far less) and ``image_budget`` the decoded table images that graph fetches
    keep for read-mostly tables of up to 250,000 rows (default 64 MiB, least recently read
    evicted first, 0 turns them off). ``value_threshold`` is the size in bytes above which a
    row or change record is kept in the value log, a file read with one ``pread``, instead of
    the storage pages (default 512; 0 keeps everything in the pages), so that tables of large
    rows keep their pages small and cached. ``row_head_budget`` bounds the row heads: for rows
    kept in the value log, the place of the newest version, so that reading one by its key
    skips the page search (24 bytes a row, default 64 MiB, 0 turns them off). Every connection to a database in one process
    shares the settings of its first open; different explicit values raise OperationalError."""
    cls = factory or Connection
    return cls(  # type: ignore[no-any-return]
        database,
        timeout=timeout,
        detect_types=detect_types,
        isolation_level=isolation_level,
        check_same_thread=check_same_thread,
        cached_statements=cached_statements,
        uri=uri,
        autocommit=autocommit,
        durability=durability,
        cache_capacity=cache_capacity,
        image_budget=image_budget,
        value_threshold=value_threshold,
        row_head_budget=row_head_budget,
    )
