"""ORMDB for Python.

``ormdb`` is a PEP 249 (DB-API 2.0) module with the sqlite3 extras ORMs use (implicit
transactions, ``isolation_level`` / ``autocommit``, ``create_function``, adapters and
converters), plus ORMDB's native API on every connection: ``fetch`` (nested graph fetch),
``explain``, ``mutate``, ``aggregate``, ``metrics`` and ``subscribe`` (change streams)::

    import ormdb
    conn = ormdb.connect("app.db")
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO users (name) VALUES (?)", ("ada",))
    conn.commit()
    conn.fetch({"root": "users"})   # [{"id": 1, "name": "ada"}]
"""

from .dbapi import (
    BINARY,
    DATETIME,
    LEGACY_TRANSACTION_CONTROL,
    NUMBER,
    PARSE_COLNAMES,
    PARSE_DECLTYPES,
    ROWID,
    STRING,
    Binary,
    Connection,
    Cursor,
    DatabaseError,
    DataError,
    Date,
    DateFromTicks,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    Time,
    TimeFromTicks,
    Timestamp,
    TimestampFromTicks,
    Warning,
    adapters,
    apilevel,
    connect,
    converters,
    paramstyle,
    register_adapter,
    register_converter,
    sqlite_version,
    sqlite_version_info,
    threadsafety,
    version,
    version_info,
)

__version__ = version

__all__ = [
    "BINARY",
    "DATETIME",
    "LEGACY_TRANSACTION_CONTROL",
    "NUMBER",
    "PARSE_COLNAMES",
    "PARSE_DECLTYPES",
    "ROWID",
    "STRING",
    "Binary",
    "Connection",
    "Cursor",
    "DataError",
    "DatabaseError",
    "Date",
    "DateFromTicks",
    "Error",
    "IntegrityError",
    "InterfaceError",
    "InternalError",
    "NotSupportedError",
    "OperationalError",
    "ProgrammingError",
    "Time",
    "TimeFromTicks",
    "Timestamp",
    "TimestampFromTicks",
    "Warning",
    "adapters",
    "apilevel",
    "connect",
    "converters",
    "paramstyle",
    "register_adapter",
    "register_converter",
    "sqlite_version",
    "sqlite_version_info",
    "threadsafety",
    "version",
    "version_info",
]
