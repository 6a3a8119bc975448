"""Django ORM on ORMDB (django_ormdb) vs on Django's sqlite3 backend, same models, data and
durability (ORMDB durability "full" = fsync before a commit returns; SQLite WAL with
synchronous=FULL = fsync of the WAL at each commit).

    python benches/python/django_bench.py [--authors 200] [--repeat 200]
    python benches/python/django_bench.py --statements 300   # per-statement write timings

Workloads (each run --repeat times after a warm-up; p50/p95/p99 in milliseconds):
  nested_read   Author.objects.prefetch_related("books__chapters", "books__tags")[:50]
                fully traversed (sqlite3 vs ormdb, both through Django's prefetch)
  write         one transaction.atomic(): an author and 3 books with 2 tags each
  graph         the nested read as .graph() on ORMDB vs prefetch_related on sqlite3
Ratios are ormdb / sqlite3 (lower is better for ORMDB); for graph, sqlite3 / graph (speed-up).
Needs Django 5.2, ormdb and django-ormdb installed (scripts/test.sh's venv has them).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import random
import statistics
import sys
import tempfile
import time
from decimal import Decimal

import django
from django.conf import settings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
TMP = tempfile.mkdtemp(prefix="django-bench-")

settings.configure(
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(TMP, "bench.sqlite3"),
            "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL"},
        },
        "ormdb": {"ENGINE": "django_ormdb", "NAME": os.path.join(TMP, "bench.ormdb")},
    },
    INSTALLED_APPS=["django_bench_app"],
    DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    USE_TZ=False,
)
django.setup()

from django.apps import apps  # noqa: E402
from django.db import connections, transaction  # noqa: E402

from django_bench_app.models import Author, Book, Chapter, Tag  # noqa: E402

LOOKUPS = ("books__chapters", "books__tags")


def create_schema(alias: str) -> None:
    with connections[alias].schema_editor() as editor:
        for model in apps.get_app_config("django_bench_app").get_models():
            editor.create_model(model)


def load(alias: str, authors: int, seed: int = 7) -> None:
    rnd = random.Random(seed)
    with transaction.atomic(using=alias):
        tags = Tag.objects.using(alias).bulk_create(Tag(label=f"t{i}") for i in range(20))
        objs = Author.objects.using(alias).bulk_create(
            Author(name=f"author {i}", born=datetime.date(1900 + i % 100, 1, 1))
            for i in range(authors)
        )
        books = Book.objects.using(alias).bulk_create(
            Book(author=a, title=f"{a.name} book {j}", price=Decimal(rnd.randint(100, 9999)) / 100)
            for a in objs
            for j in range(5)
        )
        Chapter.objects.using(alias).bulk_create(
            Chapter(book=b, number=k, words=rnd.randint(1000, 9000))
            for b in books
            for k in range(4)
        )
        Through = Book.tags.through
        Through.objects.using(alias).bulk_create(
            Through(book_id=b.pk, tag_id=t.pk) for b in books for t in rnd.sample(tags, 2)
        )


def traverse(authors) -> int:
    n = 0
    for a in authors:
        for b in a.books.all():
            n += len(b.chapters.all()) + len(b.tags.all())
    return n


def nested_prefetch(alias: str) -> int:
    return traverse(Author.objects.using(alias).prefetch_related(*LOOKUPS).order_by("id")[:50])


def nested_graph(alias: str) -> int:
    return traverse(
        Author.objects.using(alias).prefetch_related(*LOOKUPS).order_by("id")[:50].graph()
    )


class Writer:
    def __init__(self, alias: str):
        self.alias = alias
        self.i = 0
        self.tags = list(Tag.objects.using(alias).order_by("id")[:2])

    def __call__(self) -> int:
        self.i += 1
        with transaction.atomic(using=self.alias):
            a = Author.objects.using(self.alias).create(name=f"writer {self.i}")
            for j in range(3):
                b = Book.objects.using(self.alias).create(
                    author=a, title=f"w{self.i}.{j}", price=Decimal("9.99")
                )
                b.tags.add(*self.tags)
        return 1


def measure(fn, repeat: int) -> list[float]:
    for _ in range(max(3, repeat // 10)):
        fn()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def summary(xs: list[float]) -> dict:
    return {"p50": pct(xs, 50), "p95": pct(xs, 95), "p99": pct(xs, 99), "mean": statistics.mean(xs)}


def per_statement(rounds: int) -> int:
    """The write workload ROUNDS times on each backend (alternating), every statement timed
    through Django's execute wrapper (driver included: DB-API cursor, binding, engine), median
    microseconds per statement text on each backend."""
    import re

    times: dict[str, dict[str, list[float]]] = {"default": {}, "ormdb": {}}

    def timer(alias):
        def wrap(execute, sql, params, many, context):
            t0 = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                key = re.sub(r"\s+", " ", sql)[:70]
                times[alias].setdefault(key, []).append((time.perf_counter() - t0) * 1e6)

        return wrap

    writers = {alias: Writer(alias) for alias in times}
    for w in writers.values():
        for _ in range(20):
            w()
    for _ in range(rounds):
        for alias, w in writers.items():
            with connections[alias].execute_wrapper(timer(alias)):
                w()
    print(f"{rounds} rounds per backend, load average {os.getloadavg()[0]:.1f}")
    print(f"{'statement':<72} {'n':>5} {'sqlite3 us':>10} {'ormdb us':>10} {'ratio':>6}")
    for key, xs in sorted(times["default"].items(), key=lambda kv: -len(kv[1])):
        ys = times["ormdb"].get(key)
        if not ys:
            continue
        a, b = statistics.median(xs), statistics.median(ys)
        print(f"{key:<72} {len(xs):>5} {a:>10.1f} {b:>10.1f} {b / a:>6.2f}")
    return 0


def interleaved(rounds: int) -> int:
    prebuilt = Author.objects.using("ormdb").prefetch_related(*LOOKUPS).order_by("id")[:50].graph()
    variants = {
        "sqlite3 prefetch": lambda: nested_prefetch("default"),
        "ormdb prefetch": lambda: nested_prefetch("ormdb"),
        "ormdb .graph()": lambda: nested_graph("ormdb"),
        "traversal alone": lambda: traverse(prebuilt),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    for fn in variants.values():
        fn()
    for _ in range(rounds):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1000)
    print(f"{rounds} interleaved rounds, load average {os.getloadavg()[0]:.1f}")
    for name, xs in times.items():
        print(f"{name:<18} min {min(xs):8.2f}  median {statistics.median(xs):8.2f} ms")
    lite, graph = times["sqlite3 prefetch"], times["ormdb .graph()"]
    print(
        f"speed-up of .graph(): {min(lite) / min(graph):.2f}x (min), "
        f"{statistics.median(lite) / statistics.median(graph):.2f}x (median)"
    )
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--authors", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--json", help="write the figures here as JSON")
    ap.add_argument(
        "--freeze-gc",
        action="store_true",
        help="gc.freeze() after loading: full collections then skip the long-lived objects "
        "(Django, the app), which otherwise dominate both backends' times",
    )
    ap.add_argument(
        "--interleave",
        type=int,
        default=0,
        help="instead: ROUNDS rounds alternating sqlite3 prefetch, ORMDB prefetch and .graph() "
        "(and the traversal alone), min/median per variant: fairer under a shared machine's load",
    )
    ap.add_argument(
        "--statements",
        type=int,
        default=0,
        help="instead: ROUNDS rounds of the write workload on each backend, each statement "
        "timed through Django's execute wrapper; median microseconds per statement text",
    )
    args = ap.parse_args()

    for alias in ("default", "ormdb"):
        create_schema(alias)
        load(alias, args.authors)
    # Same answer on both before timing anything.
    assert nested_prefetch("default") == nested_prefetch("ormdb") == nested_graph("ormdb")
    if args.freeze_gc:
        gc.collect()
        gc.freeze()

    if args.interleave:
        return interleaved(args.interleave)
    if args.statements:
        return per_statement(args.statements)
    results = {}
    rows = [
        ("nested_read", lambda: nested_prefetch("default"), lambda: nested_prefetch("ormdb")),
        ("write", Writer("default"), Writer("ormdb")),
        ("graph", lambda: nested_prefetch("default"), lambda: nested_graph("ormdb")),
    ]
    print(f"{'workload':<12} {'backend':<16} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for name, lite, ours in rows:
        a = summary(measure(lite, args.repeat))
        b = summary(measure(ours, args.repeat))
        label = "ormdb .graph()" if name == "graph" else "ormdb"
        for backend, s in (("sqlite3", a), (label, b)):
            print(f"{name:<12} {backend:<16} {s['p50']:>8.3f} {s['p95']:>8.3f} {s['p99']:>8.3f}")
        ratio = a["p50"] / b["p50"] if name == "graph" else b["p50"] / a["p50"]
        what = "speed-up of .graph() over sqlite3 prefetch" if name == "graph" else "ormdb/sqlite3"
        print(f"{'':<12} p50 {what}: {ratio:.2f}x")
        results[name] = {"sqlite3": a, "ormdb": b, "ratio_p50": ratio}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
            {"authors": args.authors, "repeat": args.repeat, "freeze_gc": args.freeze_gc,
             "load_average": os.getloadavg(), **results},
            f,
            indent=1,
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
