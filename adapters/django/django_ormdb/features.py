"""Feature flags: the sqlite3 backend's, with ORMDB's SQLite version where the parent
reads the stdlib module's, and the Django tests ORMDB knowingly skips or fails."""

from django.db.backends.sqlite3.features import DatabaseFeatures as SQLiteFeatures
from django.utils.functional import cached_property

import ormdb


class DatabaseFeatures(SQLiteFeatures):
    # The parent computes these from the stdlib sqlite3 version at import time.
    can_alter_table_drop_column = ormdb.sqlite_version_info >= (3, 35, 5)

    @cached_property
    def can_return_columns_from_insert(self):
        return ormdb.sqlite_version_info >= (3, 35)

    @cached_property
    def supports_atomic_references_rename(self):
        return True

    # A column's declared collation (`name TEXT COLLATE NOCASE`, Django's db_collation) works
    # in the engine for comparisons, ORDER BY, UNIQUE / PRIMARY KEY, indexes and foreign keys,
    # as on SQLite. "virtual" stays None: Django's test then reads a generated column declared
    # COLLATE NOCASE where the engine still refuses a collated column (0A000, see COMPAT), so
    # those two tests skip themselves.
    test_collations = {
        "ci": "nocase",
        "cs": "binary",
        "non_default": "nocase",
        "virtual": None,
    }

    # The engine computes GENERATED ALWAYS AS columns, STORED and VIRTUAL (docs/COMPAT.md).
    supports_stored_generated_columns = True
    supports_virtual_generated_columns = True

    django_test_expected_failures = set(SQLiteFeatures.django_test_expected_failures)

    @cached_property
    def django_test_skips(self):
        skips = dict(super().django_test_skips)
        for reason, tests in ORMDB_SKIPS.items():
            skips.setdefault(reason, set()).update(tests)
        return skips


# reason -> test labels (module.Class.method) that cannot pass on ORMDB today.
ORMDB_SKIPS: dict[str, set[str]] = {
    "The version error names ORMDB (display_name), the test expects 'SQLite'": {
        "backends.sqlite.tests.Tests.test_check_database_version_supported",
    },
}
