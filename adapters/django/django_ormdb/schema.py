"""Schema changes use the sqlite3 backend's table-rebuild pattern, which ORMDB supports
(CREATE new__t, INSERT ... SELECT, DROP, ALTER TABLE ... RENAME under PRAGMA foreign_keys=OFF)."""

from django.db.backends.sqlite3.schema import DatabaseSchemaEditor as SQLiteSchemaEditor


class DatabaseSchemaEditor(SQLiteSchemaEditor):
    pass
