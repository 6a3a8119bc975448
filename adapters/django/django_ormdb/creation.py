"""Test database creation and cloning.

An ORMDB database on disk is a directory, not a file, so removing and cloning use directory
operations. In-memory test databases are shared by name (``file:memorydb_<alias>?mode=memory&
cache=shared``) exactly as with sqlite3; a forked worker inherits the parent's copy. Workers
started with "spawn" would need an on-disk copy of an in-memory database (sqlite3 uses
``Connection.backup``, which ORMDB does not have): that case fails with a clear error.
"""

import multiprocessing
import os
import shutil
import sys

from django.db import NotSupportedError
from django.db.backends.sqlite3.creation import DatabaseCreation as SQLiteCreation


def _remove_path(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


class DatabaseCreation(SQLiteCreation):
    def _create_test_db(self, verbosity, autoclobber, keepdb=False):
        test_database_name = self._get_test_db_name()
        if keepdb or self.is_in_memory_db(test_database_name):
            return test_database_name
        if os.access(test_database_name, os.F_OK):
            if verbosity >= 1:
                self.log(
                    "Destroying old test database for alias %s..."
                    % (self._get_database_display_str(verbosity, test_database_name),)
                )
            if not autoclobber:
                confirm = input(
                    "Type 'yes' if you would like to try deleting the test "
                    "database '%s', or 'no' to cancel: " % test_database_name
                )
                if confirm != "yes":
                    self.log("Tests cancelled.")
                    sys.exit(1)
            try:
                _remove_path(test_database_name)
            except OSError as e:
                self.log("Got an error deleting the old test database: %s" % e)
                sys.exit(2)
        return test_database_name

    def get_test_db_clone_settings(self, suffix):
        orig_settings_dict = self.connection.settings_dict
        source_database_name = orig_settings_dict["NAME"] or ":memory:"
        if not self.is_in_memory_db(source_database_name):
            root, ext = os.path.splitext(str(source_database_name))
            return {**orig_settings_dict, "NAME": f"{root}_{suffix}{ext}"}
        start_method = multiprocessing.get_start_method()
        if start_method == "fork":
            return orig_settings_dict
        # sqlite3 clones into "spawn" workers with Connection.backup(), which ORMDB lacks;
        # an on-disk TEST NAME clones by copying the directory under any start method.
        raise NotSupportedError(
            f"Cloning with start method {start_method!r} is not supported."
        )

    def _clone_test_db(self, suffix, verbosity, keepdb=False):
        source_database_name = self.connection.settings_dict["NAME"]
        if self.is_in_memory_db(source_database_name):
            # fork copies the process, and with it the in-memory database.
            self.get_test_db_clone_settings(suffix)
            return
        target_database_name = self.get_test_db_clone_settings(suffix)["NAME"]
        if os.access(target_database_name, os.F_OK):
            if keepdb:
                return
            if verbosity >= 1:
                self.log(
                    "Destroying old test database for alias %s..."
                    % (self._get_database_display_str(verbosity, target_database_name),)
                )
            try:
                _remove_path(target_database_name)
            except OSError as e:
                self.log("Got an error deleting the old test database: %s" % e)
                sys.exit(2)
        # The source must be closed so every committed change is in its files (ORMDB holds
        # one open handle per path per process and flushes it on close).
        self.connection.close()
        try:
            if os.path.isdir(source_database_name):
                shutil.copytree(source_database_name, target_database_name)
            else:
                shutil.copy(source_database_name, target_database_name)
        except OSError as e:
            self.log("Got an error cloning the test database: %s" % e)
            sys.exit(2)

    def _destroy_test_db(self, test_database_name, verbosity):
        if test_database_name and not self.is_in_memory_db(test_database_name):
            if os.access(test_database_name, os.F_OK):
                _remove_path(test_database_name)

    def setup_worker_connection(self, _worker_id):
        settings_dict = self.get_test_db_clone_settings(_worker_id)
        self.connection.settings_dict.update(settings_dict)
        self.connection.close()
