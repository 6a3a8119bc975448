"""Issue 5's Python benchmark: users -> posts -> comments loaded

  (a) through the SQLAlchemy ORM on ORMDB (selectinload),
  (b) through the SQLAlchemy ORM on sqlite3 (selectinload),
  (c) as one ORMDB native graph fetch (nested dicts),
  (d) by hand-written sqlite3 code building the same nested dicts,
  (e) as SQLAlchemy instances built from one native fetch (sqlalchemy_ormdb.graph_fetch),

plus single-row insert and update through the ORM (one commit each) on both databases, and
the peak RSS of (a) vs (b), each measured in a fresh process that opens the prepared database
and runs the loads.

Durability is the same on both sides: ORMDB's default ("full": the commit is fsynced before it
returns) against sqlite3 in WAL mode with PRAGMA synchronous = FULL (fsync of the WAL at every
commit).

    python benches/python/sqlalchemy_bench.py [--users 100] [--posts 10] [--comments 5]
        [--repeat 50] [--writes 200]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Optional

from sqlalchemy import ForeignKey, String, create_engine, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    selectinload,
)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    email: Mapped[Optional[str]] = mapped_column(String(100))
    posts: Mapped[list["Post"]] = relationship(order_by="Post.id")


class Post(Base):
    __tablename__ = "posts"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    score: Mapped[int] = mapped_column(default=0)
    comments: Mapped[list["Comment"]] = relationship(order_by="Comment.id")


class Comment(Base):
    __tablename__ = "comments"
    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"), index=True)
    body: Mapped[str] = mapped_column(String(500))


QUERY = select(User).order_by(User.id).options(selectinload(User.posts).selectinload(Post.comments))
GRAPH = {
    "root": "users",
    "order": [{"field": "id"}],
    "includes": [
        {
            "relation": "posts",
            "order": [{"field": "id"}],
            "includes": [{"relation": "comments", "order": [{"field": "id"}]}],
        }
    ],
}


def sqlite_engine(path: str) -> Engine:
    eng = create_engine(f"sqlite:///{path}")

    @event.listens_for(eng, "connect")
    def _durable(dbapi_conn: Any, _rec: Any) -> None:
        dbapi_conn.execute("PRAGMA journal_mode = WAL")
        dbapi_conn.execute("PRAGMA synchronous = FULL")
        dbapi_conn.execute("PRAGMA foreign_keys = ON")

    return eng


def ormdb_engine(path: str) -> Engine:
    return create_engine(f"ormdb:///{path}")


def populate(eng: Engine, users: int, posts: int, comments: int) -> None:
    Base.metadata.create_all(eng)
    with Session(eng) as s:
        for u in range(1, users + 1):
            s.add(
                User(
                    id=u,
                    name=f"user {u}",
                    email=f"u{u}@example.com",
                    posts=[
                        Post(
                            title=f"post {p} of {u}",
                            score=p,
                            comments=[Comment(body=f"comment {c}") for c in range(comments)],
                        )
                        for p in range(posts)
                    ],
                )
            )
        s.commit()


def orm_load(eng: Engine) -> int:
    with Session(eng) as s:
        return sum(1 + len(p.comments) for u in s.scalars(QUERY).all() for p in u.posts)


def graph_fetch_load(eng: Engine) -> int:
    from sqlalchemy_ormdb import graph_fetch

    with Session(eng) as s:
        return sum(1 + len(p.comments) for u in graph_fetch(s, QUERY) for p in u.posts)


def hand_sqlite(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """What a careful programmer writes without an ORM: three queries, dicts by id."""
    cur = conn.cursor()
    users = [
        {"id": r[0], "name": r[1], "email": r[2], "posts": []}
        for r in cur.execute("SELECT id, name, email FROM users ORDER BY id")
    ]
    by_user = {u["id"]: u for u in users}
    posts: dict[int, dict[str, Any]] = {}
    for r in cur.execute("SELECT id, user_id, title, score FROM posts ORDER BY id"):
        p = {"id": r[0], "user_id": r[1], "title": r[2], "score": r[3], "comments": []}
        posts[r[0]] = p
        by_user[r[1]]["posts"].append(p)
    for r in cur.execute("SELECT id, post_id, body FROM comments ORDER BY id"):
        posts[r[1]]["comments"].append({"id": r[0], "post_id": r[1], "body": r[2]})
    return users


def measure(fn: Callable[[], Any], repeat: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    i = min(len(s) - 1, max(0, int(round(p / 100 * (len(s) - 1)))))
    return s[i]


def summary(xs: list[float]) -> dict[str, float]:
    return {k: pct(xs, q) * 1000 for k, q in (("p50", 50), ("p95", 95), ("p99", 99))} | {
        "mean": statistics.fmean(xs) * 1000
    }


def single_row_writes(eng: Engine, n: int) -> tuple[list[float], list[float]]:
    inserts, updates = [], []
    with Session(eng) as s:
        for i in range(n):
            t = time.perf_counter()
            c = Comment(post_id=1 + i % 10, body=f"new {i}")
            s.add(c)
            s.commit()
            inserts.append(time.perf_counter() - t)
        for i in range(n):
            t = time.perf_counter()
            p = s.get(Post, 1 + i % 10)
            assert p is not None
            p.score = p.score + 1
            s.commit()
            updates.append(time.perf_counter() - t)
    return inserts, updates


def rss_child(kind: str, path: str, repeat: int) -> None:
    eng = ormdb_engine(path) if kind == "ormdb" else sqlite_engine(path)
    n = 0
    for _ in range(repeat):
        n += orm_load(eng)
    eng.dispose()
    print(json.dumps({"peak_rss_kb": _peak_rss_kb(), "rows": n}))


def _peak_rss_kb() -> int:
    # VmHWM belongs to this process image; ru_maxrss can carry the forking parent's peak
    # across exec on Linux.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def peak_rss(kind: str, path: str, repeat: int) -> int:
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", kind, "--path", path, "--repeat", str(repeat)],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_kb"])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--posts", type=int, default=10)
    ap.add_argument("--comments", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--writes", type=int, default=200)
    ap.add_argument("--rss-child", choices=["ormdb", "sqlite"])
    ap.add_argument("--path")
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.rss_child, args.path, args.repeat)
        return 0

    import ormdb
    import sqlalchemy

    tmp = tempfile.mkdtemp(prefix="ormdb-sqla-bench-")
    opath, spath = os.path.join(tmp, "bench.ormdb"), os.path.join(tmp, "bench.sqlite")
    oeng, seng = ormdb_engine(opath), sqlite_engine(spath)
    populate(oeng, args.users, args.posts, args.comments)
    populate(seng, args.users, args.posts, args.comments)
    # The RSS children open the databases themselves: ORMDB allows one process per database.
    oeng.dispose()
    seng.dispose()
    gc.collect()
    rss_a = peak_rss("ormdb", opath, args.repeat)
    rss_b = peak_rss("sqlite", spath, args.repeat)
    rows = args.users * (1 + args.posts * (1 + args.comments))
    print(
        f"SQLAlchemy {sqlalchemy.__version__}, ormdb {ormdb.version}, sqlite {sqlite3.sqlite_version}, "
        f"Python {sys.version.split()[0]}; {args.users} users x {args.posts} posts x {args.comments} "
        f"comments = {rows} rows; {args.repeat} timed runs after 3 warm-ups"
    )

    raw = oeng.raw_connection()
    native = raw.driver_connection
    lite = sqlite3.connect(spath)
    lite.execute("PRAGMA journal_mode = WAL")
    lite.execute("PRAGMA synchronous = FULL")
    # All four produce the same tree.
    a, c, d = orm_load(oeng), native.fetch(GRAPH), hand_sqlite(lite)
    assert a == orm_load(seng) == graph_fetch_load(oeng)
    assert [
        (u["id"], [(p["id"], [x["id"] for x in p["comments"]]) for p in u["posts"]]) for u in c
    ] == [(u["id"], [(p["id"], [x["id"] for x in p["comments"]]) for p in u["posts"]]) for u in d]

    results = {
        "(a) SQLAlchemy ORM on ORMDB, selectinload": summary(
            measure(lambda: orm_load(oeng), args.repeat)
        ),
        "(b) SQLAlchemy ORM on sqlite3, selectinload": summary(
            measure(lambda: orm_load(seng), args.repeat)
        ),
        "(c) ORMDB native graph fetch (nested dicts)": summary(
            measure(lambda: native.fetch(GRAPH), args.repeat)
        ),
        "(d) hand-written sqlite3, nested dicts": summary(
            measure(lambda: hand_sqlite(lite), args.repeat)
        ),
        "(e) ORM instances via graph_fetch on ORMDB": summary(
            measure(lambda: graph_fetch_load(oeng), args.repeat)
        ),
    }
    oi, ou = single_row_writes(oeng, args.writes)
    si, su = single_row_writes(seng, args.writes)
    results["ORM single-row insert + commit, ORMDB"] = summary(oi)
    results["ORM single-row insert + commit, sqlite3"] = summary(si)
    results["ORM single-row update + commit, ORMDB"] = summary(ou)
    results["ORM single-row update + commit, sqlite3"] = summary(su)
    raw.close()
    lite.close()
    oeng.dispose()
    seng.dispose()

    print(f"\n| operation | p50 ms | p95 ms | p99 ms |\n|---|---|---|---|")
    for k, v in results.items():
        print(f"| {k} | {v['p50']:.3f} | {v['p95']:.3f} | {v['p99']:.3f} |")
    r = {k[:3]: v["p50"] for k, v in results.items()}
    print("\nratios of p50:")
    print(f"  (b) / (c) = {r['(b)'] / r['(c)']:.2f}x  (goal: (c) at least 3x faster than (b))")
    print(f"  (d) / (c) = {r['(d)'] / r['(c)']:.2f}x  (goal: (c) faster than (d), > 1)")
    print(f"  (a) / (b) = {r['(a)'] / r['(b)']:.2f}x  (goal: within 1.3x)")
    ins = (
        results["ORM single-row insert + commit, ORMDB"]["p50"]
        / results["ORM single-row insert + commit, sqlite3"]["p50"]
    )
    upd = (
        results["ORM single-row update + commit, ORMDB"]["p50"]
        / results["ORM single-row update + commit, sqlite3"]["p50"]
    )
    print(f"  insert ORMDB / sqlite3 = {ins:.2f}x, update ORMDB / sqlite3 = {upd:.2f}x")
    print(
        f"peak RSS, fresh process opening the database and running {args.repeat} ORM loads: "
        f"(a) {rss_a / 1024:.1f} MB, (b) {rss_b / 1024:.1f} MB, (a)/(b) = {rss_a / rss_b:.2f}x (goal: within 1.5x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
