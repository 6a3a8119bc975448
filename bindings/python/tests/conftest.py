import pytest

import ormdb


@pytest.fixture
def conn():
    c = ormdb.connect(":memory:")
    yield c
    c.close()


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "test.db")


@pytest.fixture
def blog(conn):
    """users -> posts -> comments, with a few rows."""
    conn.executescript(
        """
        CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
        CREATE TABLE posts (
            id INTEGER PRIMARY KEY,
            author_id INTEGER NOT NULL REFERENCES users(id),
            title TEXT NOT NULL
        );
        CREATE TABLE comments (
            id INTEGER PRIMARY KEY,
            post_id INTEGER NOT NULL REFERENCES posts(id),
            body TEXT
        );
        """
    )
    conn.executemany("INSERT INTO users (id, name) VALUES (?, ?)", [(1, "ada"), (2, "bob")])
    conn.executemany(
        "INSERT INTO posts (id, author_id, title) VALUES (?, ?, ?)",
        [(10, 1, "first"), (11, 1, "second"), (12, 2, "third")],
    )
    conn.executemany(
        "INSERT INTO comments (id, post_id, body) VALUES (?, ?, ?)",
        [(100, 10, "nice"), (101, 10, "meh"), (102, 12, "ok")],
    )
    conn.commit()
    return conn
