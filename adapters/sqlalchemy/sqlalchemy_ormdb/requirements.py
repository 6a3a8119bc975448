"""Requirements for SQLAlchemy's dialect compliance suite run against ORMDB.

Starts from what SQLAlchemy's own test requirements grant SQLite (ORMDB speaks SQLite's SQL
and emulates its catalog), then switches off what ORMDB does not do yet. Every feature
switched off says why.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.testing import exclusions
from sqlalchemy.testing.requirements import SuiteRequirements

class Requirements(SuiteRequirements):
    # -- DDL and constraints --------------------------------------------------------------

    @property
    def create_table(self) -> Any:
        return exclusions.open()

    @property
    def drop_table(self) -> Any:
        return exclusions.open()

    @property
    def table_ddl_if_exists(self) -> Any:
        return exclusions.open()

    @property
    def index_ddl_if_exists(self) -> Any:
        return exclusions.open()

    @property
    def unique_constraints_reflect_as_index(self) -> Any:
        # As with SQLite, the sqlite_autoindex_* index behind a UNIQUE constraint is left out
        # of get_indexes (it is reported by get_unique_constraints).
        return exclusions.closed()

    @property
    def unbounded_varchar(self) -> Any:
        return exclusions.open()

    @property
    def foreign_key_constraint_name_reflection(self) -> Any:
        return exclusions.open()

    @property
    def foreign_key_constraint_option_reflection_ondelete(self) -> Any:
        return exclusions.open()

    @property
    def fk_constraint_option_reflection_ondelete_restrict(self) -> Any:
        return exclusions.open()

    @property
    def fk_constraint_option_reflection_ondelete_noaction(self) -> Any:
        return exclusions.open()

    @property
    def foreign_key_constraint_option_reflection_onupdate(self) -> Any:
        return exclusions.open()

    @property
    def fk_constraint_option_reflection_onupdate_restrict(self) -> Any:
        return exclusions.open()

    @property
    def check_constraint_reflection(self) -> Any:
        return exclusions.open()

    @property
    def implicitly_named_constraints(self) -> Any:
        # SQLite (and ORMDB, which keeps its CREATE text) gives unnamed constraints no name.
        return exclusions.closed()

    @property
    def reflects_pk_names(self) -> Any:
        # Parsed from the CREATE text kept in sqlite_master, as for SQLite.
        return exclusions.open()

    @property
    def reflect_table_options(self) -> Any:
        # SQLite's table options (WITHOUT ROWID, STRICT) come back from the CREATE text.
        return exclusions.open()

    @property
    def reflect_tables_no_columns(self) -> Any:
        # SQLite's grammar has no table without columns.
        return exclusions.closed()

    @property
    def comment_reflection(self) -> Any:
        # SQLite has no table or column comments.
        return exclusions.closed()

    @property
    def computed_columns(self) -> Any:
        # Generated columns: 0A000 in the engine (COMPAT.md, CREATE TABLE).
        return exclusions.closed()

    @property
    def identity_columns(self) -> Any:
        # SQLite's dialect has no GENERATED AS IDENTITY (INTEGER PRIMARY KEY instead).
        return exclusions.closed()

    @property
    def sequences(self) -> Any:
        # No sequences in SQLite's dialect.
        return exclusions.closed()

    @property
    def views(self) -> Any:
        return exclusions.open()

    @property
    def temporary_tables(self) -> Any:
        # Per session, listed in sqlite_temp_master (COMPAT.md, CREATE TEMP TABLE).
        return exclusions.open()

    @property
    def temp_table_reflection(self) -> Any:
        return exclusions.open()

    @property
    def temp_table_names(self) -> Any:
        return exclusions.open()

    @property
    def has_temp_table(self) -> Any:
        return exclusions.open()

    @property
    def temporary_views(self) -> Any:
        return exclusions.open()

    @property
    def indexes_with_ascdesc(self) -> Any:
        return exclusions.open()

    @property
    def reflect_indexes_with_ascdesc(self) -> Any:
        # PRAGMA index_xinfo reports each column's direction, as in SQLite.
        return exclusions.open()

    @property
    def indexes_with_expressions(self) -> Any:
        return exclusions.open()

    @property
    def reflect_indexes_with_expressions(self) -> Any:
        # SQLAlchemy's SQLite dialect (whose reflection this one inherits) leaves
        # expression-based indexes out of get_indexes with a warning, as it does on SQLite;
        # PRAGMA index_xinfo and sqlite_master describe them as SQLite does.
        return exclusions.closed()

    @property
    def schemas(self) -> Any:
        # SQLite's schemas are ATTACHed databases; ATTACH is 0A000 in ORMDB (one database per
        # directory).
        return exclusions.closed()

    @property
    def schema_create_delete(self) -> Any:
        # No CREATE SCHEMA in SQLite's dialect.
        return exclusions.closed()

    # -- queries ----------------------------------------------------------------------------

    @property
    def intersect(self) -> Any:
        return exclusions.open()

    @property
    def except_(self) -> Any:
        return exclusions.open()

    @property
    def window_functions(self) -> Any:
        return exclusions.open()

    @property
    def ctes(self) -> Any:
        return exclusions.open()

    @property
    def ctes_with_update_delete(self) -> Any:
        return exclusions.open()

    @property
    def ctes_on_dml(self) -> Any:
        # SQLite's grammar has no CTE inside INSERT/UPDATE/DELETE as a data source
        # (WITH ... INSERT is another form); SQLAlchemy does not grant it to SQLite either.
        return exclusions.closed()

    @property
    def tuple_in(self) -> Any:
        # Row values ("(a, b) IN (...)", "(a, b) = (c, d)") work as in SQLite >= 3.15.
        return exclusions.open()

    @property
    def tuple_in_w_empty(self) -> Any:
        return exclusions.open()

    @property
    def order_by_label_with_expression(self) -> Any:
        return exclusions.open()

    @property
    def mod_operator_as_percent_sign(self) -> Any:
        return exclusions.open()

    @property
    def regexp_match(self) -> Any:
        # The dialect registers a Python regexp() on every connection, as with sqlite3.
        return exclusions.open()

    @property
    def regexp_replace(self) -> Any:
        # SQLite has no regexp_replace.
        return exclusions.closed()

    @property
    def supports_bitwise_and(self) -> Any:
        return exclusions.open()

    @property
    def supports_bitwise_or(self) -> Any:
        return exclusions.open()

    @property
    def supports_bitwise_not(self) -> Any:
        return exclusions.open()

    @property
    def supports_bitwise_shift(self) -> Any:
        return exclusions.open()

    @property
    def supports_bitwise_xor(self) -> Any:
        # SQLite has no XOR operator.
        return exclusions.closed()

    @property
    def fetch_first(self) -> Any:
        # FETCH FIRST is not SQLite syntax (SQLAlchemy emits LIMIT for SQLite).
        return exclusions.closed()

    @property
    def update_from(self) -> Any:
        return exclusions.open()

    @property
    def delete_from(self) -> Any:
        # SQLite has no DELETE ... FROM / USING.
        return exclusions.closed()

    @property
    def json_type(self) -> Any:
        return exclusions.open()

    @property
    def json_array_indexes(self) -> Any:
        return exclusions.open()

    @property
    def uuid_data_type(self) -> Any:
        # No native UUID type in SQLite's dialect (stored as CHAR(32)).
        return exclusions.closed()

    @property
    def array_type(self) -> Any:
        # No ARRAY in SQLite's dialect.
        return exclusions.closed()

    # -- types --------------------------------------------------------------------------------

    @property
    def datetime_microseconds(self) -> Any:
        return exclusions.open()

    @property
    def timestamp_microseconds(self) -> Any:
        return exclusions.open()

    @property
    def time_microseconds(self) -> Any:
        return exclusions.open()

    @property
    def datetime_historic(self) -> Any:
        return exclusions.open()

    @property
    def date_historic(self) -> Any:
        return exclusions.open()

    @property
    def datetime_timezone(self) -> Any:
        # SQLite's DATETIME keeps no time zone.
        return exclusions.closed()

    @property
    def time_timezone(self) -> Any:
        # SQLite's TIME keeps no time zone.
        return exclusions.closed()

    @property
    def precision_numerics_enotation_large(self) -> Any:
        # SQLite stores NUMERIC as a double: 1E+25-scale decimals lose digits (same for SQLite).
        return exclusions.closed()

    @property
    def precision_numerics_many_significant_digits(self) -> Any:
        # A double holds ~15-17 significant digits (same for SQLite).
        return exclusions.closed()

    @property
    def precision_numerics_retains_significant_digits(self) -> Any:
        # Trailing zeros of a decimal are lost in a double (same for SQLite).
        return exclusions.closed()

    @property
    def cast_precision_numerics_many_significant_digits(self) -> Any:
        # A double holds ~15-17 significant digits (same for SQLite).
        return exclusions.closed()

    # -- transactions and connections -------------------------------------------------------

    @property
    def savepoints(self) -> Any:
        return exclusions.open()

    @property
    def isolation_level(self) -> Any:
        return exclusions.open()

    def get_isolation_levels(self, config: Any) -> dict[str, Any]:
        # Transactions are always serializable snapshots (READ UNCOMMITTED is refused by the
        # dialect); AUTOCOMMIT is the DB-API's isolation_level = None.
        # (In the dialect's order: the suite compares error messages listing the levels.)
        return {
            "default": "SERIALIZABLE",
            "supported": list(config.db.dialect.get_isolation_level_values(None)),
        }

    @property
    def autocommit(self) -> Any:
        return exclusions.open()

    @property
    def independent_connections(self) -> Any:
        # The suite runs on ":memory:", where every connection is its own database.
        return exclusions.closed()

    @property
    def independent_readonly_connections(self) -> Any:
        # As above: a second ":memory:" connection does not see the first one's tables.
        return exclusions.closed()

    @property
    def server_side_cursors(self) -> Any:
        # The DB-API materializes results (like sqlite3); no server-side cursor mode.
        return exclusions.closed()

    @property
    def dbapi_lastrowid(self) -> Any:
        return exclusions.open()

    @property
    def emulated_lastrowid(self) -> Any:
        return exclusions.open()

    @property
    def emulated_lastrowid_even_with_sequences(self) -> Any:
        return exclusions.open()

    @property
    def arraysize(self) -> Any:
        return exclusions.open()

    @property
    def async_dialect(self) -> Any:
        # No asyncio driver yet.
        return exclusions.closed()
