"""Django's SQLite functions over 10k rows: the engine's native implementations against
Django's Python callbacks on the same ORMDB database, and against Django's sqlite3 backend
(which always calls Python).

    python benches/python/django_functions_bench.py [--rows 10000] [--repeat 15]

Workloads (median of --repeat runs, ms):
  extract_trunc_md5  annotate(ExtractYear, ExtractWeek, TruncMonth, MD5) over every row, fetched
  week_day_filter    filter(at__week_day=2).count(): one function call per row, nothing fetched
  regex_filter       filter(title__regex=r"^ev [0-9]*7$").count()
  stddev             aggregate(StdDev("n"), Variance("n", sample=True))
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time

import django
from django.conf import settings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
TMP = tempfile.mkdtemp(prefix="django-fn-bench-")

settings.configure(
    DATABASES={
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(TMP, "b.sqlite3")},
        "ormdb": {"ENGINE": "django_ormdb", "NAME": os.path.join(TMP, "b.ormdb")},
    },
    INSTALLED_APPS=["django_fn_app"],
    DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    USE_TZ=False,
)
django.setup()

from django.db import connections, transaction  # noqa: E402
from django.db.backends.sqlite3._functions import register  # noqa: E402
from django.db.models import StdDev, Variance  # noqa: E402
from django.db.models.functions import MD5, ExtractWeek, ExtractYear, TruncMonth  # noqa: E402

from django_fn_app.models import Event  # noqa: E402

WORKLOADS = {
    "extract_trunc_md5": lambda qs: len(
        list(
            qs.annotate(
                y=ExtractYear("at"), w=ExtractWeek("at"), m=TruncMonth("at"), h=MD5("title")
            ).values_list("y", "w", "m", "h")
        )
    ),
    "week_day_filter": lambda qs: qs.filter(at__week_day=2).count(),
    "regex_filter": lambda qs: qs.filter(title__regex=r"^ev [0-9]*7$").count(),
    "stddev": lambda qs: qs.aggregate(s=StdDev("n"), v=Variance("n", sample=True)),
}


def setup(alias: str, rows: int) -> None:
    with connections[alias].schema_editor() as editor:
        editor.create_model(Event)
    base = datetime.datetime(2020, 1, 1, 8, 30)
    with transaction.atomic(using=alias):
        Event.objects.using(alias).bulk_create(
            Event(title=f"ev {i}", at=base + datetime.timedelta(hours=7 * i), n=i % 97)
            for i in range(rows)
        )


def median_ms(fn, repeat: int) -> float:
    fn()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return statistics.median(out)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    for alias in ("default", "ormdb"):
        setup(alias, args.rows)
    print(f"{args.rows} rows, median of {args.repeat} runs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'workload':<20} {'sqlite3':>9} {'ormdb py':>9} {'ormdb native':>13} {'py/native':>10}")
    for name, work in WORKLOADS.items():
        lite = Event.objects.using("default")
        ours = Event.objects.using("ormdb")
        conn = connections["ormdb"]
        conn.close()
        conn.ensure_connection()  # a fresh connection: native functions installed
        want = work(lite)
        assert work(ours) == want, name
        native = median_ms(lambda: work(ours), args.repeat)
        register(conn.connection)  # Django's Python callbacks replace the native ones
        assert work(ours) == want, name
        python = median_ms(lambda: work(ours), args.repeat)
        sqlite = median_ms(lambda: work(lite), args.repeat)
        print(f"{name:<20} {sqlite:>9.2f} {python:>9.2f} {native:>13.2f} {python / native:>9.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
