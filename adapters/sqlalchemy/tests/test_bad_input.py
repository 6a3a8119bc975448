"""Bad input gives Python exceptions, never a crash."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    StatementError,
)
from sqlalchemy.orm import Session

from models import Post, User


def test_wrong_parameter_type(blog):
    with blog.connect() as c:
        with pytest.raises((InterfaceError, StatementError, DBAPIError)):
            c.execute(text("SELECT :x"), {"x": object()})


def test_wrong_type_in_orm_column(blog):
    with Session(blog) as s:
        s.add(User(name={"not": "a string"}))  # type: ignore[arg-type]
        with pytest.raises((InterfaceError, StatementError, DBAPIError)):
            s.commit()


def test_syntax_error_and_missing_table(blog):
    with blog.connect() as c:
        with pytest.raises(OperationalError):
            c.execute(text("SELEC 1"))
    with blog.connect() as c:
        with pytest.raises(OperationalError):
            c.execute(text("SELECT * FROM nope"))


def test_huge_parameters(blog):
    big = "x" * (8 * 1024 * 1024)
    with Session(blog) as s:
        s.add(User(name="big", email=big))
        s.commit()
        assert len(s.scalar(select(User.email).where(User.name == "big"))) == len(big)
    with blog.connect() as c:
        # Beyond 64 bits: OverflowError, as with sqlite3 (SQLAlchemy passes it through).
        with pytest.raises(OverflowError):
            c.execute(text("SELECT :x"), {"x": 10**30})
        ids = list(range(20000))
        assert c.execute(select(User.id).where(User.id.in_(ids)).order_by(User.id)).scalars().all()[
            :2
        ] == [1, 2]


def test_closed_dbapi_connection(blog):
    conn = blog.raw_connection()
    dbapi = conn.driver_connection
    conn.close()
    dbapi.close()
    with pytest.raises(Exception) as e:
        dbapi.execute("SELECT 1")
    assert "closed" in str(e.value)


def test_disposed_engine_reconnects(blog):
    with blog.connect() as c:
        assert c.execute(text("SELECT 1")).scalar() == 1
    blog.dispose()
    with blog.connect() as c:
        assert c.execute(select(Post.title).order_by(Post.id)).scalars().first() == "first"


def test_bad_urls():
    with pytest.raises(ArgumentError):
        create_engine("ormdb://user:pw@host/db.db").connect()
    with pytest.raises(ArgumentError):
        create_engine("ormdb:///x.db?bogus=1").connect()
    with pytest.raises(ArgumentError):
        create_engine("ormdb:///x.db?timeout=soon").connect()
    with pytest.raises(ArgumentError):
        create_engine("ormdb:///x.db?value_threshold=big").connect()
    # Server URLs: a host needs a port and no path; `server` takes tcp:// or ipc:// only; the
    # options of a database opened by path do not apply to a server.
    for bad in (
        "ormdb://localhost",
        "ormdb://127.0.0.1:7450/app.db",
        "ormdb://127.0.0.1:7450?server=tcp://127.0.0.1:7451",
        "ormdb://?server=http://127.0.0.1:7450",
        "ormdb:///app.db?server=tcp://127.0.0.1:7450",
        "ormdb://127.0.0.1:7450?durability=normal",
        "ormdb://?server=ipc:///tmp/x.sock&value_threshold=64",
    ):
        with pytest.raises(ArgumentError):
            create_engine(bad).connect()


def test_memory_options_in_the_url(tmp_path):
    path = tmp_path / "big.db"
    eng = create_engine(
        f"ormdb:///{path}?value_threshold=64&cache_capacity=8388608&row_head_budget=1048576"
    )
    with eng.begin() as c:
        c.execute(text("CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT)"))
        c.execute(text("INSERT INTO docs VALUES (1, :b)"), {"b": "x" * 4000})
    with eng.connect() as c:
        assert c.execute(text("SELECT length(body) FROM docs")).scalar() == 4000
        metrics = c.connection.dbapi_connection.metrics()
        assert "ormdb_row_head_budget_bytes 1032192\n" in metrics
    eng.dispose()
    values = path / "values"
    assert sum(f.stat().st_size for f in values.iterdir()) >= 4000


def test_constraint_violation_in_executemany(blog):
    with blog.connect() as c:
        with pytest.raises(IntegrityError):
            c.execute(text("INSERT INTO users (name) VALUES (:n)"), [{"n": "z1"}, {"n": "ada"}])
        c.rollback()
        assert c.execute(text("SELECT count(*) FROM users WHERE name = 'z1'")).scalar() == 0
