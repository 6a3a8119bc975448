from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

sys.path.insert(0, os.path.dirname(__file__))

from models import Base, Comment, Post, Tag, User  # noqa: E402


# The tests that take an engine run twice: on a database opened by path, and through an
# `ormdb serve` process (the binding's test helper starts it; scripts/test.sh builds it).
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "bindings", "python", "tests"))

from ormdb_server import BIN, Server  # noqa: E402


@pytest.fixture(params=["local", "server"])
def db_url(request, tmp_path) -> Iterator[str]:
    if request.param == "local":
        yield f"ormdb:///{tmp_path / 'app.db'}"
        return
    # Skipped only when the server binary was not built (running pytest by hand without
    # cargo): scripts/test.sh builds it first, so in CI these tests always run. The same
    # condition as the binding's test_remote.py.
    if not BIN.exists():
        pytest.skip(f"no ormdb binary at {BIN}: build it with `cargo build --features ormdb/cli`")
    server = Server(tmp_path)
    try:
        # ipc:// here; ormdb://HOST:PORT (tcp://) is covered by test_orm's URL test.
        yield f"ormdb://?server={server.ipc}"
    finally:
        server.stop()


@pytest.fixture
def on_server(db_url: str) -> bool:
    return "server=" in db_url


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
