"""ORM mapping and loading strategies over ORMDB."""

from __future__ import annotations

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session, joinedload, selectinload, subqueryload

from models import Comment, Post, Tag, User


def _count_statements(engine):
    statements: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _track(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    return statements


def _shape(users):
    return [
        (
            u.name,
            [
                (p.title, [c.body for c in p.comments], sorted(t.label for t in p.tags))
                for p in u.posts
            ],
        )
        for u in users
    ]


EXPECTED = [
    ("ada", [("first", ["nice", "meh"], ["python", "rust"]), ("second", [], ["rust"])]),
    ("bob", [("third", ["ok"], [])]),
]


def test_one_to_many_lazy(blog):
    with Session(blog) as s:
        users = s.scalars(select(User).order_by(User.id)).all()
        assert _shape(users) == EXPECTED


def test_many_to_one(blog):
    with Session(blog) as s:
        c = s.scalars(select(Comment).where(Comment.body == "ok")).one()
        assert c.post.title == "third"
        assert c.post.author.name == "bob"


def test_many_to_many_both_directions(blog):
    with Session(blog) as s:
        rust = s.scalars(select(Tag).where(Tag.label == "rust")).one()
        assert sorted(p.title for p in rust.posts) == ["first", "second"]
        second = s.scalars(select(Post).where(Post.title == "second")).one()
        second.tags.append(s.scalars(select(Tag).where(Tag.label == "python")).one())
        s.commit()
        python = s.scalars(select(Tag).where(Tag.label == "python")).one()
        assert sorted(p.title for p in python.posts) == ["first", "second"]


def test_selectinload_chain_one_query_per_level(blog):
    stmts = _count_statements(blog)
    with Session(blog) as s:
        q = (
            select(User)
            .order_by(User.id)
            .options(
                selectinload(User.posts).selectinload(Post.comments),
                selectinload(User.posts).selectinload(Post.tags),
            )
        )
        users = s.scalars(q).all()
        n = len(stmts)
        assert _shape(users) == EXPECTED
        assert len(stmts) == n, "everything was eager-loaded"
    assert n == 4  # users, posts, comments, tags


def test_joinedload(blog):
    stmts = _count_statements(blog)
    with Session(blog) as s:
        q = (
            select(User)
            .order_by(User.id)
            .options(
                joinedload(User.posts).joinedload(Post.comments),
                joinedload(User.posts).joinedload(Post.tags),
            )
        )
        users = s.scalars(q).unique().all()
        n = len(stmts)
        assert _shape(users) == EXPECTED
        assert len(stmts) == n
    assert n == 1
    assert "LEFT OUTER JOIN" in stmts[0]


def test_subqueryload(blog):
    with Session(blog) as s:
        q = (
            select(User)
            .order_by(User.id)
            .options(
                subqueryload(User.posts).subqueryload(Post.comments),
                subqueryload(User.posts).subqueryload(Post.tags),
            )
        )
        assert _shape(s.scalars(q).all()) == EXPECTED


def test_aggregate_group_by_join(blog):
    with Session(blog) as s:
        rows = s.execute(
            select(User.name, func.count(Comment.id))
            .join(User.posts)
            .outerjoin(Post.comments)
            .group_by(User.name)
            .order_by(User.name)
        ).all()
        assert rows == [("ada", 2), ("bob", 1)]


def test_update_and_delete_cascade(blog):
    with Session(blog) as s:
        ada = s.scalars(select(User).where(User.name == "ada")).one()
        ada.email = "ada@new.example"
        s.commit()
        assert s.scalar(select(User.email).where(User.name == "ada")) == "ada@new.example"
        s.delete(ada)
        s.commit()
        assert s.scalar(select(func.count()).select_from(Post)) == 1
        assert s.scalar(select(func.count()).select_from(Comment)) == 1


def test_bulk_insert_returns_ids(engine):
    with Session(engine) as s:
        users = [User(name=f"u{i}") for i in range(50)]
        s.add_all(users)
        s.flush()
        ids = [u.id for u in users]
        assert len(set(ids)) == 50 and all(isinstance(i, int) for i in ids)
        s.commit()
        assert s.scalar(select(func.count()).select_from(User)) == 50


def test_url_forms(tmp_path, monkeypatch):
    from sqlalchemy import create_engine, text

    monkeypatch.chdir(tmp_path)
    for url in (
        "ormdb:///rel.db",
        f"ormdb:///{tmp_path / 'abs.db'}",
        "ormdb:///:memory:",
        "ormdb://",
    ):
        eng = create_engine(url)
        with eng.begin() as c:
            c.execute(text("CREATE TABLE t (x INTEGER)"))
            c.execute(text("INSERT INTO t VALUES (1)"))
        with eng.connect() as c:
            assert c.execute(text("SELECT x FROM t")).scalar() == 1
        eng.dispose()
    assert (tmp_path / "rel.db").exists() and (tmp_path / "abs.db").exists()


def test_server_url_forms(tmp_path):
    """`ormdb://HOST:PORT` (tcp://) and `ormdb://?server=tcp://...|ipc://...` reach one
    `ormdb serve`; writes through one are read through the others; REGEXP and floor() are the
    server's own (no Python callbacks over the network)."""
    from conftest import BIN, Server
    from sqlalchemy import create_engine, text

    # As for the server-backed fixture in conftest.py: skipped only without a built binary.
    if not BIN.exists():
        pytest.skip(f"no ormdb binary at {BIN}")
    server = Server(tmp_path)
    try:
        host_port = server.tcp.removeprefix("tcp://")
        urls = [
            f"ormdb://{host_port}",
            f"ormdb://?server={server.tcp}",
            f"ormdb://?server={server.ipc}&timeout=10",
        ]
        for i, url in enumerate(urls):
            eng = create_engine(url)
            with eng.begin() as c:
                if i == 0:
                    c.execute(text("CREATE TABLE t (x INTEGER, s TEXT)"))
                c.execute(text("INSERT INTO t VALUES (:x, :s)"), {"x": i, "s": f"row{i}"})
            with eng.connect() as c:
                assert c.execute(text("SELECT count(*) FROM t")).scalar() == i + 1
                matched = c.execute(text("SELECT s FROM t WHERE s REGEXP '^row[0-1]$' ORDER BY x"))
                assert matched.scalars().all() == ["row0", "row1"][: i + 1]
                # SQLite's floor (a real stays real), where pysqlite registers Python's math.floor.
                assert c.execute(text("SELECT floor(2.5)")).scalar() == 2.0
            eng.dispose()
    finally:
        server.stop()
