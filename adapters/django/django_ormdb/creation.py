"""Test database creation and cloning.

An ORMDB database on disk is a directory, not a file, so removing and cloning use directory
operations. In-memory test databases are shared by name (``file:memorydb_<alias>?mode=memory&
cache=shared``) exactly as with sqlite3; a forked worker inherits the parent's copy. For
workers started with "spawn" the parent copies the in-memory database to disk
(``<alias>_<n>.ormdb``) with ``Connection.backup`` and each worker copies that into its own
shared in-memory database, as Django's sqlite3 backend does.
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
        if start_method == "spawn":
            return {**orig_settings_dict, "NAME": f"{self.connection.alias}_{suffix}.ormdb"}
        raise NotSupportedError(
            f"Cloning with start method {start_method!r} is not supported."
        )

    def _clone_test_db(self, suffix, verbosity, keepdb=False):
        source_database_name = self.connection.settings_dict["NAME"]
        target_database_name = self.get_test_db_clone_settings(suffix)["NAME"]
        in_memory = self.is_in_memory_db(source_database_name)
        if in_memory and multiprocessing.get_start_method() == "fork":
            # fork copies the process, and with it the in-memory database.
            return
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
        if in_memory:
            # "spawn": the workers start empty; each copies this on-disk copy into its own
            # in-memory database (setup_worker_connection).
            self.connection.ensure_connection()
            copy = self.connection.Database.connect(target_database_name)
            try:
                self.connection.connection.backup(copy)
            finally:
                copy.close()
            return
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
        start_method = multiprocessing.get_start_method()
        in_memory = self.is_in_memory_db(self.connection.settings_dict["NAME"])
        if not (in_memory and start_method == "spawn"):
            self.connection.settings_dict.update(settings_dict)
            self.connection.close()
            return
        alias = self.connection.alias
        memory_name = f"file:memorydb_{alias}_{_worker_id}?mode=memory&cache=shared"
        source = self.connection.Database.connect(settings_dict["NAME"])
        # The copy holds the shared in-memory database open until the connection below has
        # opened it too.
        target = self.connection.Database.connect(memory_name, uri=True)
        try:
            source.backup(target)
        finally:
            source.close()
        self.connection.settings_dict.update(settings_dict)
        self.connection.settings_dict["NAME"] = memory_name
        self.connection.connect()
        target.close()
        if os.environ.get("RUNNING_DJANGOS_TEST_SUITE") == "true":
            self.mark_expected_failures_and_skips()
