"""Alembic support: the SQLite implementation (batch "move and copy" for the ALTERs SQLite
cannot do) registered under the ``ormdb`` dialect name, which Alembic looks up. Also an Alembic
plugin (entry point ``alembic.plugins``), so that importing Alembic registers it without
``sqlalchemy_ormdb`` importing Alembic up front."""

from __future__ import annotations

from alembic.ddl import sqlite as _alembic_sqlite
from alembic.ddl.base import ColumnName, RenameTable
from alembic.ddl.sqlite import SQLiteImpl
from sqlalchemy.ext.compiler import compiles


class OrmdbImpl(SQLiteImpl):
    __dialect__ = "ormdb"


# Alembic registers SQLite's RENAME TABLE / RENAME COLUMN forms for the "sqlite" name only;
# ORMDB accepts the same statements, so the same compilers serve the "ormdb" name.
compiles(RenameTable, "ormdb")(_alembic_sqlite.visit_rename_table)
compiles(ColumnName, "ormdb")(_alembic_sqlite.visit_column_name)


def setup(plugin: object) -> None:
    """Alembic plugin hook: importing this module registered everything already."""
