"""Threads: several connections in parallel, one connection shared (serialized, never a
crash), check_same_thread, and the GIL released during engine work."""

import threading
import time

import pytest

import ormdb


def _retry(fn, attempts=50):
    for i in range(attempts):
        try:
            return fn()
        except ormdb.OperationalError as e:
            if e.sqlstate != "40001" or i == attempts - 1:
                raise
            time.sleep(0.001 * (i + 1))


def test_two_connections_in_two_threads_on_one_file(db_path):
    setup = ormdb.connect(db_path)
    setup.execute("CREATE TABLE t (worker INTEGER, n INTEGER)")
    setup.close()
    errors = []

    def work(worker):
        try:
            c = ormdb.connect(db_path)
            for n in range(50):
                def insert():
                    try:
                        c.execute("INSERT INTO t VALUES (?, ?)", (worker, n))
                        c.commit()
                    except Exception:
                        c.rollback()
                        raise
                _retry(insert)
            c.close()
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    c = ormdb.connect(db_path)
    assert c.execute("SELECT worker, count(*) FROM t GROUP BY worker ORDER BY worker").fetchall() == [
        (0, 50),
        (1, 50),
    ]
    c.close()


def test_check_same_thread(conn):
    out = []

    def use():
        try:
            conn.execute("SELECT 1")
        except ormdb.ProgrammingError as e:
            out.append(e)

    t = threading.Thread(target=use)
    t.start()
    t.join()
    assert len(out) == 1 and "same thread" in str(out[0])


def test_one_connection_shared_by_threads_is_serialized():
    c = ormdb.connect(":memory:", check_same_thread=False, isolation_level=None)
    c.execute("CREATE TABLE t (x INTEGER)")
    errors = []

    def work(k):
        try:
            for i in range(100):
                c.execute("INSERT INTO t VALUES (?)", (k * 1000 + i,))
                c.execute("SELECT count(*) FROM t").fetchone()
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert c.execute("SELECT count(*) FROM t").fetchone() == (400,)
    c.close()


def test_close_while_other_threads_use_the_connection():
    c = ormdb.connect(":memory:", check_same_thread=False)
    c.execute("CREATE TABLE t (x INTEGER)")
    c.commit()
    stop = threading.Event()
    seen = []

    def work():
        while not stop.is_set():
            try:
                c.execute("SELECT count(*) FROM t").fetchall()
            except ormdb.ProgrammingError as e:
                seen.append(str(e))
                return

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    c.close()
    time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join()
    assert all("closed" in s for s in seen)


def test_gil_is_released_during_engine_work(conn):
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(3000)])
    conn.commit()
    ticks = []
    done = threading.Event()

    def ticker():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.0005)

    t = threading.Thread(target=ticker)
    t.start()
    start = time.perf_counter()
    n = 0
    while time.perf_counter() - start < 0.3:
        conn.execute("SELECT count(*) FROM t a JOIN t b ON a.x = b.x").fetchall()
        n += 1
    done.set()
    t.join()
    # The ticker thread kept running while the main thread was inside the engine.
    assert n >= 1
    assert len(ticks) > 20


def test_subscription_in_another_thread(db_path):
    c = ormdb.connect(db_path, check_same_thread=False)
    c.execute("CREATE TABLE t (x INTEGER)")
    sub = c.subscribe()
    got = []
    t = threading.Thread(target=lambda: got.append(sub.next(timeout=5)))
    t.start()
    time.sleep(0.05)
    c.execute("INSERT INTO t VALUES (1)")
    c.commit()
    t.join()
    assert got and got[0]["entities"][0]["values"]["x"] == 1
    c.close()


@pytest.mark.parametrize("n", [1, 8])
def test_many_connections(db_path, n):
    conns = [ormdb.connect(db_path) for _ in range(n)]
    conns[0].execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
    for i, c in enumerate(conns):
        c.execute("INSERT INTO t VALUES (?)", (i,))
        c.commit()
    assert conns[-1].execute("SELECT count(*) FROM t").fetchone() == (n,)
    for c in conns:
        c.close()
