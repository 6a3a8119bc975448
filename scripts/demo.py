"""The Python half of the demo: an ORM-style workload through ORMDB's DB-API (the `ormdb`
package), then the same object graph loaded three ways -- N+1 queries, batched IN-list
queries, and one native graph fetch -- with EXPLAIN ANALYZE, a change stream and timings.

Run by scripts/demo.sh inside the venv that has the ormdb wheel installed.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

import ormdb

USERS = int(os.environ.get("ORMDB_DEMO_PY_USERS", "200"))
POSTS_PER_USER = 5
COMMENTS_PER_POST = 4


def timed(label: str, fn: Callable[[], Any], repeat: int = 7) -> Any:
    """Runs fn `repeat` times and prints the median time; returns the last result."""
    times = []
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    print(f"  {label:<48} {statistics.median(times) * 1000:8.2f} ms (median of {repeat})")
    return result


def main() -> int:
    path = os.path.join(tempfile.mkdtemp(prefix="ormdb-demo-"), "app.db")
    conn = ormdb.connect(path)
    print(f"ormdb DB-API (PEP 249, paramstyle {ormdb.paramstyle}) on {path}")
    conn.executescript(
        """
        CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT);
        CREATE TABLE posts (id INTEGER PRIMARY KEY,
                            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                            title TEXT NOT NULL, score INTEGER DEFAULT 0);
        CREATE TABLE comments (id INTEGER PRIMARY KEY,
                               post_id INTEGER NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
                               body TEXT NOT NULL);
        """
    )
    start = time.perf_counter()
    cur = conn.cursor()
    cur.executemany(
        "INSERT INTO users (id, email, name) VALUES (?, ?, ?)",
        [(u, f"user{u}@example.com", f"User {u}") for u in range(1, USERS + 1)],
    )
    posts = [
        ((u - 1) * POSTS_PER_USER + p + 1, u, f"Post {p} by {u}", (u * 7 + p) % 11)
        for u in range(1, USERS + 1)
        for p in range(POSTS_PER_USER)
    ]
    cur.executemany("INSERT INTO posts (id, user_id, title, score) VALUES (?, ?, ?, ?)", posts)
    cur.executemany(
        "INSERT INTO comments (post_id, body) VALUES (?, ?)",
        [(p[0], f"comment {c}") for p in posts for c in range(COMMENTS_PER_POST)],
    )
    conn.commit()
    rows = USERS * (1 + POSTS_PER_USER * (1 + COMMENTS_PER_POST))
    print(f"loaded {rows} rows in one durable transaction in "
          f"{(time.perf_counter() - start) * 1000:.0f} ms")

    # Constraints surface as the DB-API exceptions ORMs expect, with the SQLSTATE attached.
    for sql, args in [
        ("INSERT INTO users (email) VALUES (?)", ("user1@example.com",)),
        ("INSERT INTO posts (user_id, title) VALUES (?, ?)", (999_999, "orphan")),
    ]:
        try:
            conn.execute(sql, args)
        except ormdb.IntegrityError as e:
            print(f"  IntegrityError [{e.sqlstate}]: {e}")
    conn.rollback()

    top = conn.execute(
        "SELECT u.name, count(c.id) AS n FROM users u JOIN posts p ON p.user_id = u.id "
        "JOIN comments c ON c.post_id = p.id WHERE u.id <= 20 GROUP BY u.id "
        "ORDER BY n DESC, u.name LIMIT 3"
    ).fetchall()
    print(f"  SQL join + group by: {top}")

    ids = list(range(1, 51))
    print(f"\nloading {len(ids)} users with their posts and comments, three ways:")

    def n_plus_one() -> int:
        n = 0
        for uid in ids:
            conn.execute("SELECT * FROM users WHERE id = ?", (uid,)).fetchall()
            for post in conn.execute("SELECT * FROM posts WHERE user_id = ?", (uid,)):
                n += 1 + len(
                    conn.execute("SELECT * FROM comments WHERE post_id = ?", (post[0],)).fetchall()
                )
        return n

    def batched() -> int:
        marks = ",".join("?" * len(ids))
        users = conn.execute(f"SELECT * FROM users WHERE id IN ({marks})", ids).fetchall()
        posts = conn.execute(f"SELECT * FROM posts WHERE user_id IN ({marks})", ids).fetchall()
        pids = [p[0] for p in posts]
        pmarks = ",".join("?" * len(pids))
        comments = conn.execute(
            f"SELECT * FROM comments WHERE post_id IN ({pmarks})", pids
        ).fetchall()
        return len(users) + len(posts) + len(comments)

    graph = {
        "root": "users",
        "filter": {"in": {"field": "id", "values": ids}},
        "includes": [{"relation": "posts", "includes": [{"relation": "comments"}]}],
    }

    timed("N+1 queries through the DB-API", n_plus_one)
    timed("batched IN-list queries through the DB-API", batched)
    nested = timed("one native graph fetch (nested dicts)", lambda: conn.fetch(graph))
    first = nested[0]
    print(f"  first user: {first['name']} with {len(first['posts'])} posts, "
          f"{sum(len(p['comments']) for p in first['posts'])} comments")
    raw = conn.fetch_raw(graph)
    print(f"  fetch stats: {raw['stats']}")
    print("\nEXPLAIN ANALYZE of the graph fetch:")
    print(conn.explain(graph, analyze=True).rstrip())

    sub = conn.subscribe(["posts"])
    conn.execute("UPDATE posts SET score = score + 1 WHERE user_id = ?", (1,))
    conn.commit()
    change = sub.next(timeout=2.0) or {}
    deltas = [(d["entity"], d["row_id"], d["kind"], d["changed"]) for d in change.get("entities", [])]
    print(f"\nchange stream after an UPDATE of user 1's posts: token {change.get('token')}, "
          f"{len(deltas)} deltas, first {deltas[:1]}")
    sub.close()

    metrics = [
        line for line in conn.metrics().splitlines()
        if line.startswith(("ormdb_fetches_total", "ormdb_plan_cache_hit_ratio",
                            "ormdb_commits_total", "ormdb_table_image_hits_total"))
    ]
    print("metrics: " + "; ".join(metrics))
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
