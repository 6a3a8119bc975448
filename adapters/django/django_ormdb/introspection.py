"""Introspection reads sqlite_master and the PRAGMAs, which ORMDB answers from its catalog."""

from django.db.backends.sqlite3.introspection import (
    DatabaseIntrospection as SQLiteIntrospection,
)


class DatabaseIntrospection(SQLiteIntrospection):
    pass
