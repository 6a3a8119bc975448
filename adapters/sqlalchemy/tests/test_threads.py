"""Several threads, each with its own session, on one file database."""

from __future__ import annotations

import threading

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from models import Comment, Post, User


def test_concurrent_writers_and_readers(blog):
    errors: list[BaseException] = []
    per_thread = 20

    def writer(n: int) -> None:
        try:
            for i in range(per_thread):
                for attempt in range(20):
                    try:
                        with Session(blog) as s:
                            u = User(
                                name=f"t{n}-{i}",
                                posts=[Post(title=f"p{n}-{i}", comments=[Comment(body="c")])],
                            )
                            s.add(u)
                            s.commit()
                        break
                    except OperationalError:
                        # A write-write conflict is reported as 40001 (retryable).
                        continue
                else:
                    raise AssertionError("commit kept conflicting")
        except BaseException as e:  # noqa: BLE001 - reported to the main thread
            errors.append(e)

    def reader() -> None:
        try:
            for _ in range(30):
                with Session(blog) as s:
                    n_users = s.scalar(select(func.count()).select_from(User))
                    n_posts = s.scalar(select(func.count()).select_from(Post))
                    assert n_users >= 2 and n_posts >= 3
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Session(blog) as s:
        assert s.scalar(select(func.count()).select_from(User)) == 2 + 4 * per_thread
        assert s.scalar(select(func.count()).select_from(Comment)) == 3 + 4 * per_thread
