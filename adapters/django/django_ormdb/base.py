"""DatabaseWrapper for ORMDB.

ORMDB speaks SQLite's SQL dialect, so the wrapper subclasses Django's sqlite3 backend and keeps
``vendor = "sqlite"``: Django's expressions have many ``as_sqlite`` branches whose SQL ORMDB
runs as SQLite does. What differs is the driver (the ``ormdb`` DB-API module instead of the
stdlib ``sqlite3``), the functions registered per connection, and the on-disk layout (an ORMDB
database is a directory), which creation.py handles.
"""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Mapping
from itertools import tee

import ormdb as Database
from django.core.exceptions import ImproperlyConfigured
from django.db.backends.sqlite3 import base as sqlite_base
from django.db.backends.sqlite3._functions import register as register_django_functions
from django.utils.asyncio import async_unsafe
from django.utils.dateparse import parse_date, parse_datetime, parse_time

from .creation import DatabaseCreation
from .features import DatabaseFeatures
from .introspection import DatabaseIntrospection
from .operations import DatabaseOperations
from .schema import DatabaseSchemaEditor

# The converters and adapters Django installs on the sqlite3 module at import time, installed
# on ormdb's registries: column values typed bool/date/time/datetime come back as Python
# objects, and Decimal/date/datetime parameters bind as the text Django stores.
Database.register_converter("bool", b"1".__eq__)
Database.register_converter("date", sqlite_base.decoder(parse_date))
Database.register_converter("time", sqlite_base.decoder(parse_time))
Database.register_converter("datetime", sqlite_base.decoder(parse_datetime))
Database.register_converter("timestamp", sqlite_base.decoder(parse_datetime))
Database.register_adapter(decimal.Decimal, str)
Database.register_adapter(datetime.date, sqlite_base.adapt_date)
Database.register_adapter(datetime.datetime, sqlite_base.adapt_datetime)


class DatabaseWrapper(sqlite_base.DatabaseWrapper):
    display_name = "ORMDB"
    # The parent's class attribute is the stdlib module; everything reading
    # ``self.Database`` (exception mapping, version checks, dbshell) must see ormdb.
    Database = Database
    SchemaEditorClass = DatabaseSchemaEditor
    creation_class = DatabaseCreation
    features_class = DatabaseFeatures
    introspection_class = DatabaseIntrospection
    ops_class = DatabaseOperations

    @async_unsafe
    def get_new_connection(self, conn_params):
        name = str(conn_params.get("database", ""))
        if name.startswith(("tcp://", "ipc://")):
            raise ImproperlyConfigured(
                f"NAME = {name!r}: django_ormdb does not run over `ormdb serve` yet. Django's "
                "SQLite backend keeps connection state the server does not keep between "
                "requests (its schema editor turns foreign keys off outside a transaction) "
                "and registers Python functions a server cannot call. Give NAME a database "
                "path, or share the database through the ormdb DB-API or SQLAlchemy over the "
                "server."
            )
        # The parent calls the module-global sqlite3.connect, hence the override.
        conn = Database.connect(**conn_params)
        register_django_functions(conn)
        # The engine implements most of these natively (no Python call per row); Django's
        # Python functions registered just above stay as the fallback for what the native
        # code hands over: time zone conversions and values Django itself never stores.
        conn.install_django_functions()
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA legacy_alter_table = OFF")
        for init_command in self.init_commands:
            if init_command := init_command.strip():
                conn.execute(init_command)
        return conn

    def create_cursor(self, name=None):
        return self.connection.cursor(factory=OrmdbCursorWrapper)


class OrmdbCursorWrapper(Database.Cursor):
    """Django writes parameters as ``%s`` ("format") or ``%(name)s`` ("pyformat"); ormdb
    takes ``?`` and ``:name`` as sqlite3 does. A literal percent sign is written ``%%``."""

    def execute(self, query, params=None):
        if params is None:
            return super().execute(query)
        param_names = list(params) if isinstance(params, Mapping) else None
        return super().execute(self.convert_query(query, param_names=param_names), params)

    def executemany(self, query, param_list):
        # A generator may be passed: peek at the first item without consuming it.
        peekable, param_list = tee(iter(param_list))
        first = next(peekable, None)
        param_names = list(first) if first and isinstance(first, Mapping) else None
        return super().executemany(
            self.convert_query(query, param_names=param_names), param_list
        )

    @staticmethod
    def convert_query(query, *, param_names=None):
        if param_names is None:
            return sqlite_base.FORMAT_QMARK_REGEX.sub("?", query).replace("%%", "%")
        return query % {name: f":{name}" for name in param_names}
