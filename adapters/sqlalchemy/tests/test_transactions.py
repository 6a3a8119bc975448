"""Transactions, savepoints and constraint errors through the ORM."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import Comment, Post, User


def _count(s, model):
    return s.scalar(select(func.count()).select_from(model))


def test_rollback_discards(blog):
    with Session(blog) as s:
        s.add(User(name="cy"))
        s.flush()
        assert _count(s, User) == 3
        s.rollback()
        assert _count(s, User) == 2


def test_commit_visible_to_other_connection(blog):
    with Session(blog) as s1, Session(blog) as s2:
        s1.add(User(name="cy"))
        s1.flush()
        assert _count(s2, User) == 2  # uncommitted, invisible
        s2.rollback()
        s1.commit()
        assert _count(s2, User) == 3


def test_savepoint_rollback_keeps_outer_work(blog):
    with Session(blog) as s:
        s.add(User(name="cy"))
        s.flush()
        nested = s.begin_nested()
        s.add(User(name="dee"))
        s.flush()
        assert _count(s, User) == 4
        nested.rollback()
        assert _count(s, User) == 3
        s.commit()
    with Session(blog) as s:
        assert sorted(s.scalars(select(User.name))) == ["ada", "bob", "cy"]


def test_savepoint_release(blog):
    with Session(blog) as s:
        with s.begin_nested():
            s.add(User(name="cy"))
        with s.begin_nested():
            s.add(User(name="dee"))
        s.commit()
        assert _count(s, User) == 4


def test_savepoint_integrity_error_recovers(blog):
    with Session(blog) as s:
        s.add(User(name="cy"))
        s.flush()
        with pytest.raises(IntegrityError):
            with s.begin_nested():
                s.add(User(name="ada"))  # duplicate
        s.commit()
        assert _count(s, User) == 3


def test_unique_violation(blog):
    with Session(blog) as s:
        s.add(User(name="ada"))
        with pytest.raises(IntegrityError) as e:
            s.commit()
        assert "23505" in str(e.value) or "UNIQUE" in str(e.value).upper()


def test_foreign_key_violation(blog):
    with Session(blog) as s:
        s.add(Post(author_id=999, title="orphan"))
        with pytest.raises(IntegrityError):
            s.commit()


def test_not_null_violation(blog):
    with Session(blog) as s:
        s.add(Comment(post_id=None, body="x"))  # type: ignore[arg-type]
        with pytest.raises(IntegrityError):
            s.commit()


def test_session_usable_after_integrity_error(blog):
    with Session(blog) as s:
        s.add(User(name="bob"))
        with pytest.raises(IntegrityError):
            s.flush()
        s.rollback()
        s.add(User(name="cy"))
        s.commit()
        assert _count(s, User) == 3


def test_autocommit_isolation_level(blog):
    eng = blog.execution_options(isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text("INSERT INTO users (name) VALUES ('auto')"))
    with Session(blog) as s:
        assert _count(s, User) == 3


def test_engine_begin_rolls_back_on_exception(blog):
    with pytest.raises(RuntimeError):
        with blog.begin() as c:
            c.execute(text("INSERT INTO users (name) VALUES ('gone')"))
            raise RuntimeError("boom")
    with Session(blog) as s:
        assert _count(s, User) == 2
