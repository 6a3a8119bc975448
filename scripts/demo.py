"""The Python half of the demo: a SQLAlchemy ORM workload on ORMDB (``create_engine(
"ormdb:///...")``: models, inserts, a selectinload query, an update, a rollback, constraint
errors), then the same object graph loaded through SQLAlchemy and as one native graph fetch
(``sqlalchemy_ormdb.graph_fetch`` and the binding's ``Connection.fetch``), with EXPLAIN
ANALYZE, a change stream and timings.

Run by scripts/demo.sh inside the venv that has the ormdb and sqlalchemy-ormdb packages.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Optional

import ormdb
from sqlalchemy import ForeignKey, String, create_engine, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    selectinload,
)

from sqlalchemy_ormdb import graph_fetch

USERS = int(os.environ.get("ORMDB_DEMO_PY_USERS", "200"))
POSTS_PER_USER = 5
COMMENTS_PER_POST = 4


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[Optional[str]] = mapped_column(String(50))
    posts: Mapped[list["Post"]] = relationship(back_populates="user", order_by="Post.id")


class Post(Base):
    __tablename__ = "posts"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    score: Mapped[int] = mapped_column(default=0)
    user: Mapped[User] = relationship(back_populates="posts")
    comments: Mapped[list["Comment"]] = relationship(order_by="Comment.id")


class Comment(Base):
    __tablename__ = "comments"
    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
    body: Mapped[str] = mapped_column(String(500))


def timed(label: str, fn: Callable[[], Any], repeat: int = 7) -> Any:
    """Runs fn `repeat` times and prints the median time; returns the last result."""
    times = []
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    print(f"  {label:<52} {statistics.median(times) * 1000:8.2f} ms (median of {repeat})")
    return result


def main() -> int:
    path = os.path.join(tempfile.mkdtemp(prefix="ormdb-demo-"), "app.db")
    engine = create_engine(f"ormdb:///{path}")
    print(
        f"SQLAlchemy {__import__('sqlalchemy').__version__} on {engine.url} "
        f"(dialect {engine.dialect.name}, DB-API ormdb {ormdb.version})"
    )
    Base.metadata.create_all(engine)

    start = time.perf_counter()
    with Session(engine) as s:
        for u in range(1, USERS + 1):
            s.add(
                User(
                    id=u,
                    email=f"user{u}@example.com",
                    name=f"User {u}",
                    posts=[
                        Post(
                            title=f"Post {p} by {u}",
                            score=(u * 7 + p) % 11,
                            comments=[
                                Comment(body=f"comment {c}") for c in range(COMMENTS_PER_POST)
                            ],
                        )
                        for p in range(POSTS_PER_USER)
                    ],
                )
            )
        s.commit()
    rows = USERS * (1 + POSTS_PER_USER * (1 + COMMENTS_PER_POST))
    print(
        f"ORM inserted {rows} rows (session.add_all + one commit) in "
        f"{(time.perf_counter() - start) * 1000:.0f} ms"
    )

    with Session(engine) as s:
        # Constraint violations surface as SQLAlchemy's IntegrityError, the DB-API error
        # (with ORMDB's SQLSTATE) as its .orig.
        for obj in (User(email="user1@example.com"), Post(user_id=999_999, title="orphan")):
            s.add(obj)
            try:
                s.flush()
            except IntegrityError as e:
                print(f"  IntegrityError [{getattr(e.orig, 'sqlstate', '?')}]: {e.orig}")
            s.rollback()

        q = (
            select(User)
            .where(User.id <= 3)
            .order_by(User.id)
            .options(selectinload(User.posts).selectinload(Post.comments))
        )
        users = s.scalars(q).all()
        print(
            f"  selectinload: {len(users)} users, {sum(len(u.posts) for u in users)} posts, "
            f"{sum(len(p.comments) for u in users for p in u.posts)} comments"
        )

        n = s.execute(update(Post).where(Post.user_id == 1).values(score=Post.score + 100)).rowcount
        s.commit()
        print(f"  update: {n} posts of user 1 re-scored and committed")

        s.add(User(email="temp@example.com"))
        users[0].name = "renamed, then rolled back"
        s.flush()
        s.rollback()
        print(
            f"  rollback: {s.scalar(select(func.count()).select_from(User))} users, "
            f"user 1 is still {s.get(User, 1).name!r}"
        )

        top = s.execute(
            select(User.name, func.count(Comment.id).label("n"))
            .join(User.posts)
            .join(Post.comments)
            .where(User.id <= 20)
            .group_by(User.id)
            .order_by(func.count(Comment.id).desc(), User.name)
            .limit(3)
        ).all()
        print(f"  ORM join + group by: {[tuple(r) for r in top]}")

    ids = list(range(1, 51))
    q = (
        select(User)
        .where(User.id.in_(ids))
        .order_by(User.id)
        .options(selectinload(User.posts).selectinload(Post.comments))
    )
    print(f"\nloading {len(ids)} users with their posts and comments:")

    def orm_selectin() -> int:
        with Session(engine) as s:
            return sum(1 + len(p.comments) for u in s.scalars(q).all() for p in u.posts)

    def orm_graph_fetch() -> int:
        with Session(engine) as s:
            return sum(1 + len(p.comments) for u in graph_fetch(s, q) for p in u.posts)

    raw_conn = engine.raw_connection()
    conn = raw_conn.driver_connection
    graph = {
        "root": "users",
        "filter": {"in": {"field": "id", "values": ids}},
        "order": [{"field": "id"}],
        "includes": [{"relation": "posts", "includes": [{"relation": "comments"}]}],
    }

    timed("SQLAlchemy ORM, selectinload (3 SELECTs)", orm_selectin)
    timed("SQLAlchemy ORM instances via graph_fetch (1 fetch)", orm_graph_fetch)
    nested = timed("native graph fetch, nested dicts", lambda: conn.fetch(graph))
    first = nested[0]
    print(
        f"  first user: {first['name']} with {len(first['posts'])} posts, "
        f"{sum(len(p['comments']) for p in first['posts'])} comments"
    )
    raw = conn.fetch_raw(graph)
    print(f"  fetch stats: {raw['stats']}")
    print("\nEXPLAIN ANALYZE of the graph fetch:")
    print(conn.explain(graph, analyze=True).rstrip())

    sub = conn.subscribe(["posts"])
    with Session(engine) as s:
        s.execute(update(Post).where(Post.user_id == 2).values(score=Post.score + 1))
        s.commit()
    change = sub.next(timeout=2.0) or {}
    deltas = [
        (d["entity"], d["row_id"], d["kind"], d["changed"]) for d in change.get("entities", [])
    ]
    print(
        f"\nchange stream after an ORM UPDATE of user 2's posts: token {change.get('token')}, "
        f"{len(deltas)} deltas, first {deltas[:1]}"
    )
    sub.close()

    metrics = [
        line
        for line in conn.metrics().splitlines()
        if line.startswith(
            (
                "ormdb_fetches_total",
                "ormdb_plan_cache_hit_ratio",
                "ormdb_commits_total",
                "ormdb_table_image_hits_total",
            )
        )
    ]
    print("metrics: " + "; ".join(metrics))
    raw_conn.close()
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
