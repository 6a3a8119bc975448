"""Provisioning hooks of SQLAlchemy's testing plugin for the ``ormdb`` backend (used only by
the compliance suite in test/)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.testing.provision import (
    create_db,
    drop_db,
    post_configure_testing_engine,
    stop_test_class_outside_fixtures,
    temp_table_keyword_args,
    upsert,
)


@create_db.for_db("ormdb")
def _create_db(cfg: Any, eng: Any, ident: str) -> None:
    # The suite runs on ":memory:" databases, which exist as soon as they are opened.
    pass


@drop_db.for_db("ormdb")
def _drop_db(cfg: Any, eng: Any, ident: str) -> None:
    pass


@stop_test_class_outside_fixtures.for_db("ormdb")
def _stop_test_class(config: Any, db: Any, cls: Any) -> None:
    db.dispose()


@post_configure_testing_engine.for_db("ormdb")
def _post_configure_testing_engine(url: Any, engine: Any, options: Any, scope: Any) -> None:
    # Tests asking for SQLite's savepoint workaround get the same thing: autocommit at the
    # DB-API level and an explicit BEGIN from SQLAlchemy.
    if options.get("sqlite_savepoint", False):

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, connection_record: Any) -> None:
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN")


@temp_table_keyword_args.for_db("ormdb")
def _temp_table_keyword_args(cfg: Any, eng: Any) -> dict[str, Any]:
    return {"prefixes": ["TEMPORARY"]}


@upsert.for_db("ormdb")
def _upsert(
    cfg: Any,
    table: Any,
    returning: Any,
    *,
    set_lambda: Any = None,
    sort_by_parameter_order: bool = False,
    index_elements: Any = None,
) -> Any:
    from sqlalchemy.dialects.sqlite import insert

    stmt = insert(table)
    if set_lambda:
        stmt = stmt.on_conflict_do_update(set_=set_lambda(stmt.excluded))
    else:
        stmt = stmt.on_conflict_do_nothing()
    return stmt.returning(*returning, sort_by_parameter_order=sort_by_parameter_order)
