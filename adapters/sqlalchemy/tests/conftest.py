from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

sys.path.insert(0, os.path.dirname(__file__))

from models import Base, Comment, Post, Tag, User  # noqa: E402


@pytest.fixture
def db_url(tmp_path) -> str:
    return f"ormdb:///{tmp_path / 'app.db'}"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = create_engine(db_url)
    Base.metadata.create_all(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def blog(engine: Engine) -> Engine:
    """Two users, three posts, three comments, two tags."""
    with Session(engine) as s:
        python, rust = Tag(label="python"), Tag(label="rust")
        ada = User(name="ada", email="ada@example.com")
        bob = User(name="bob")
        ada.posts = [
            Post(
                title="first",
                comments=[Comment(body="nice"), Comment(body="meh")],
                tags=[python, rust],
            ),
            Post(title="second", tags=[rust]),
        ]
        bob.posts = [Post(title="third", comments=[Comment(body="ok")])]
        s.add_all([ada, bob])
        s.commit()
    return engine
