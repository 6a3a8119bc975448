"""SQL generation is the sqlite3 backend's: ORMDB runs SQLite's dialect."""

from django.db.backends.sqlite3.operations import DatabaseOperations as SQLiteOperations


class DatabaseOperations(SQLiteOperations):
    pass
