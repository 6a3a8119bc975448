"""Django's SQLite functions run natively in the engine (no Python call per row) with the
results Django's Python implementations give; what the native code does not take reaches
Django's Python function."""

import datetime
import hashlib
import statistics
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.models import F, StdDev, Value, Variance
from django.db.models.functions import (
    MD5,
    SHA256,
    Extract,
    ExtractIsoYear,
    ExtractWeek,
    ExtractWeekDay,
    LPad,
    Repeat,
    Reverse,
    RPad,
    Sign,
    Trunc,
    TruncDate,
    TruncTime,
)

from graphapp.models import Author, Book, Chapter


@pytest.fixture
def books(schema):
    with transaction.atomic():
        for m in (Chapter, Book.tags.through, Book, Author):
            m._base_manager.all().delete()
        ada = Author.objects.create(name="ada", born=datetime.date(2008, 12, 29))
        stamps = [
            datetime.datetime(2021, 1, 3, 12, 0),
            datetime.datetime(2024, 2, 29, 23, 59, 59, 999999),
            datetime.datetime(1843, 9, 1, 12, 30, 5, 250),
            None,
        ]
        out = []
        for i, ts in enumerate(stamps):
            b = Book.objects.create(
                author=ada, title=f"tïtle {i}", price=Decimal("1.00"), published=ts
            )
            for n in (1, 2, 4 + i):
                Chapter.objects.create(book=b, number=n)
            out.append(b)
    return out


def test_installed_natively():
    connection.ensure_connection()
    # A fresh connection installs them; the list is what the engine took over.
    names = connection.connection.install_django_functions()
    assert {"django_datetime_trunc", "regexp", "md5", "stddev_pop"} <= set(names)


def test_extract_and_trunc_match_python(books):
    qs = Book.objects.order_by("pk").annotate(
        y=Extract("published", "year"),
        w=ExtractWeek("published"),
        wd=ExtractWeekDay("published"),
        iy=ExtractIsoYear("published"),
        q=Extract("published", "quarter"),
        s=Extract("published", "second"),
        tm=Trunc("published", "month"),
        tw=Trunc("published", "week"),
        th=Trunc("published", "hour"),
        d=TruncDate("published"),
        t=TruncTime("published"),
    )
    for b in qs:
        ts = b.published
        if ts is None:
            assert (b.y, b.tm, b.d, b.t) == (None, None, None, None)
            continue
        iso = ts.isocalendar()
        assert (b.y, b.w, b.iy, b.wd) == (ts.year, iso.week, iso.year, ts.isoweekday() % 7 + 1)
        assert b.q == (ts.month + 2) // 3 and b.s == ts.second
        assert b.tm == ts.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        monday = (ts - datetime.timedelta(days=ts.weekday())).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        assert b.tw == monday
        assert b.th == ts.replace(minute=0, second=0, microsecond=0)
        assert b.d == ts.date() and b.t == ts.time()
    # A filter on an extracted part runs in the engine too.
    assert Book.objects.filter(published__week_day=1).count() == 1  # 2021-01-03 was a Sunday
    assert Author.objects.filter(born__iso_year=2009).count() == 1


def test_text_functions_and_hashes(books):
    rows = Book.objects.order_by("pk").annotate(
        md5=MD5("title"),
        sha=SHA256("title"),
        lp=LPad("title", 10, Value("·-")),
        rp=RPad("title", 3),
        rev=Reverse("title"),
        rep=Repeat("title", 2),
    )
    for b in rows:
        t = b.title
        assert b.md5 == hashlib.md5(t.encode()).hexdigest()
        assert b.sha == hashlib.sha256(t.encode()).hexdigest()
        assert b.lp == ("·-" * 10)[: 10 - len(t)] + t
        assert b.rp == t[:3] and b.rev == t[::-1] and b.rep == t * 2
    signs = Chapter.objects.annotate(s=Sign(F("number") - 2)).values_list("number", "s")
    assert all(s == (n > 2) - (n < 2) for n, s in signs)


def test_regex_lookups_native_and_fallback(books):
    assert Book.objects.filter(title__regex=r"^tïtle [0-2]$").count() == 3
    # Case folding beyond ASCII is Python's re: handed to Django's function.
    assert Book.objects.filter(title__iregex=r"^TÏTLE").count() == 4
    assert Book.objects.filter(title__iregex=r"^T.TLE 1").count() == 1
    # So is a backreference.
    Author.objects.create(name="anna")
    Author.objects.create(name="bea")
    names = Author.objects.filter(name__regex=r"^(.).*\1$").values_list("name", flat=True)
    assert list(names) == ["ada", "anna"]


def test_statistical_aggregates(books):
    numbers = list(Chapter.objects.values_list("number", flat=True))
    got = Chapter.objects.aggregate(
        sp=StdDev("number"),
        ss=StdDev("number", sample=True),
        vp=Variance("number"),
        vs=Variance("number", sample=True),
    )
    assert got == {
        "sp": statistics.pstdev(numbers),
        "ss": statistics.stdev(numbers),
        "vp": float(statistics.pvariance(numbers)),
        "vs": float(statistics.variance(numbers)),
    }
    per_book = Book.objects.order_by("pk").annotate(v=Variance("chapter__number"))
    for b in per_book:
        nums = [c.number for c in Chapter.objects.filter(book=b)]
        assert b.v == float(statistics.pvariance(nums))


def test_python_function_is_the_fallback_only(books):
    """A spy registered before the install sees only the calls the engine hands over."""
    connection.ensure_connection()
    raw = connection.connection
    calls = []

    def spy(text):
        calls.append(text)
        return "from python"

    raw.create_function("MD5", 1, spy, deterministic=True)
    raw.install_django_functions()
    try:
        with connection.cursor() as c:
            c.execute("SELECT MD5(title) FROM graphapp_book ORDER BY id")
            assert c.fetchall()[0][0] == hashlib.md5("tïtle 0".encode()).hexdigest()
            assert calls == []
            c.execute("SELECT MD5(id) FROM graphapp_book ORDER BY id")
            assert c.fetchall()[0][0] == "from python"
            assert len(calls) == 4
    finally:
        connection.close()  # the next connection registers Django's own functions again
