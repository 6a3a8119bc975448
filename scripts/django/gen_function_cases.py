"""Writes core/tests/data/django_functions.json: calls of Django's SQLite functions
(django.db.backends.sqlite3._functions, Django 5.2) with the values Django's own Python
implementation returns, for core/tests/django_functions.rs to compare the engine's native
versions against.

    python scripts/django/gen_function_cases.py   # needs Django 5.2 importable

A case is {"name", "args", "result"} or {"name", "args", "error"} (Python raised); "native"
marks the canonical inputs the engine must answer itself (everything else may be handed to
Django's Python function). Values: null, {"int"}, {"real_bits"} (IEEE bits, exact), {"text"}.
"""

import json
import math
import struct
import sys
from pathlib import Path

import django
from django.db.backends.sqlite3 import _functions as F

OUT = Path(__file__).resolve().parents[2] / "core" / "tests" / "data" / "django_functions.json"

SCALARS = {
    "django_date_extract": F._sqlite_datetime_extract,
    "django_date_trunc": F._sqlite_date_trunc,
    "django_datetime_cast_date": F._sqlite_datetime_cast_date,
    "django_datetime_cast_time": F._sqlite_datetime_cast_time,
    "django_datetime_extract": F._sqlite_datetime_extract,
    "django_datetime_trunc": F._sqlite_datetime_trunc,
    "django_time_extract": F._sqlite_time_extract,
    "django_time_trunc": F._sqlite_time_trunc,
    "django_time_diff": F._sqlite_time_diff,
    "django_timestamp_diff": F._sqlite_timestamp_diff,
    "regexp": F._sqlite_regexp,
    "bitxor": F._sqlite_bitxor,
    "cot": F._sqlite_cot,
    "lpad": F._sqlite_lpad,
    "rpad": F._sqlite_rpad,
    "md5": F._sqlite_md5,
    "sha1": F._sqlite_sha1,
    "sha224": F._sqlite_sha224,
    "sha256": F._sqlite_sha256,
    "sha384": F._sqlite_sha384,
    "sha512": F._sqlite_sha512,
    "repeat": F._sqlite_repeat,
    "reverse": F._sqlite_reverse,
    "sign": F._sqlite_sign,
}
AGGREGATES = {
    "stddev_pop": F.StdDevPop,
    "stddev_samp": F.StdDevSamp,
    "var_pop": F.VarPop,
    "var_samp": F.VarSamp,
}


def enc(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return {"int": int(v)}
    if isinstance(v, int):
        if not -(2**63) <= v < 2**63:
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        return {"int": v}
    if isinstance(v, float):
        return {"real_bits": struct.unpack("<Q", struct.pack("<d", v))[0]}
    if isinstance(v, str):
        return {"text": v}
    raise TypeError(f"cannot encode {v!r}")


CANON_TS = [
    "2005-07-29 15:48:00.590358", "2005-07-29 09:56:00", "2024-02-29 23:59:59.999999",
    "0001-01-01 00:00:00", "9999-12-31 23:59:59", "2021-01-03 12:00:00",
    "2008-12-29 00:00:00", "2020-12-31 06:07:08.5", "2005-07-29",
    "2024-02-30 10:00:00", "2005-13-01", "",
    "2005-07-29 09:56:00-05", "2005-07-29 09:56:00+05:30", "2005-7-9 1:2:3",
    "2005-07-29 10:00:00.", "2005-07-29 10:00:00.1234567", "2005-07-29 25:00:00",
]  # fmt: skip
ODD_TS = [
    "garbage", "2005-07-29T10:00:00", " 2005-07-29 10:00:00", "2005-07-29  10:00:00",
    "2005-07-29 10:00:00.1.2", "10:30:00", "2005-07-29 10:00", "2005-07-29 10:00:00:01",
    "+2005-07-29 10:00:00", 5, 1.5,
]  # fmt: skip
LOOKUPS_DT = ["year", "iso_year", "quarter", "month", "week", "week_day", "iso_week_day",
              "day", "hour", "minute", "second", "microsecond", "bogus"]  # fmt: skip
TRUNC_DATE = ["year", "quarter", "month", "week", "day", "hour"]
TRUNC_DT = ["year", "quarter", "month", "week", "day", "hour", "minute", "second", "bogus"]
TZ_NATIVE = [(None, None), ("UTC", "UTC"), (None, "UTC")]
TZ_OTHER = [("Europe/Paris", "UTC"), ("America/New_York", None), ("UTC+05:00", "UTC")]
CANON_TIME = ["10:30:45", "10:30:45.123", "23:59:59.999999", "00:00:00", "24:00:00",
              "10:30", "", "1:2:3", "10:30:45.1.2"]  # fmt: skip
ODD_TIME = ["abc", " 10:30:45", "10:30:45 ", 5, "2005-07-29 10:30:45"]
TIME_LOOKUPS = ["hour", "minute", "second", "microsecond", "bogus"]


def scalar_cases():
    cases = []

    def add(name, args, native):
        cases.append((name, list(args), native))

    def dt_native(ts, tz, conn, good_lookup, needs_time):
        """Whether the engine answers without Django's Python: canonical text (or NULL) and
        no time zone conversion; a date-only value where a time part is needed raises."""
        if ts is None:
            return True
        if ts not in CANON_TS or (tz, conn) not in TZ_NATIVE or not good_lookup:
            return False
        if ts == "" and (tz, conn) != (None, None):
            return False
        date_only = " " not in ts and ts in ("2005-07-29",)
        return not (date_only and (needs_time or conn is not None))

    for i, ts in enumerate(CANON_TS + ODD_TS + [None]):
        canon = ts in CANON_TS or ts is None
        # Time zone conversions are Python's: a few values show they are handed over.
        tzs = TZ_NATIVE + TZ_OTHER if i < 3 else TZ_NATIVE
        time_parts = ("hour", "minute", "second", "microsecond")
        for lk in LOOKUPS_DT:
            add("django_date_extract", [lk, ts],
                dt_native(ts, None, None, lk != "bogus", lk in time_parts))
            for tz, conn in tzs:
                add("django_datetime_extract", [lk, ts, tz, conn],
                    dt_native(ts, tz, conn, lk != "bogus", lk in time_parts))
        for lk in TRUNC_DATE:
            for tz, conn in tzs:
                add("django_date_trunc", [lk, ts, tz, conn],
                    dt_native(ts, tz, conn, lk != "hour", False))
        for lk in TRUNC_DT:
            for tz, conn in tzs:
                add("django_datetime_trunc", [lk, ts, tz, conn],
                    dt_native(ts, tz, conn, lk != "bogus", lk in ("hour", "minute", "second")))
        for tz, conn in tzs:
            add("django_datetime_cast_date", [ts, tz, conn], dt_native(ts, tz, conn, True, True))
            add("django_datetime_cast_time", [ts, tz, conn], dt_native(ts, tz, conn, True, True))
        for other in ("2005-07-28 09:56:00.5", "2001-01-01", None):
            add("django_timestamp_diff", [ts, other], ts is None or other is None or (
                canon and ts not in ("", "2024-02-30 10:00:00", "2005-13-01", "2005-07-29 25:00:00")
                and (" " in ts) == (" " in other)))  # fmt: skip
    for t in CANON_TIME + ODD_TIME + [None]:
        for lk in TIME_LOOKUPS:
            add("django_time_extract", [lk, t], t in CANON_TIME and lk != "bogus")
        for lk in ("hour", "minute", "second", "bogus"):
            for tz, conn in TZ_NATIVE + TZ_OTHER:
                add("django_time_trunc", [lk, t, tz, conn], t in CANON_TIME and lk != "bogus" and (
                    t is None or (t != "" and t not in ("24:00:00", "10:30", "10:30:45.1.2"))))  # fmt: skip
        for other in ("01:02:03.000004", None):
            add("django_time_diff", [t, other], t is None or other is None or (
                t in CANON_TIME and t not in ("", "24:00:00", "10:30", "10:30:45.1.2")))  # fmt: skip
    for text in ("", "abc", "héllo ✓", "a" * 300, 5, None):
        for h in ("md5", "sha1", "sha224", "sha256", "sha384", "sha512"):
            add(h, [text], not isinstance(text, int))
        add("reverse", [text], not isinstance(text, int))
    for args in (("abc", 5, "xy"), ("abc", 2, "x"), ("abc", -1, "x"), ("abc", 0, "x"),
                 ("ééé", 5, "üv"), ("abc", 5, ""), ("", 3, "ab"), (None, 3, "x"),
                 ("abc", None, "x"), ("abc", 5.0, "x"), (5, 2, "x"), ("abc", 1, 7)):  # fmt: skip
        native = isinstance(args[0], str) and isinstance(args[1], int) and isinstance(args[2], str)
        native = native or None in args
        add("lpad", args, native)
        add("rpad", args, native)
    for args in (("ab", 3), ("ab", 0), ("ab", -2), ("", 5), ("é", 4), (3, 4), (None, 1), ("a", None)):
        add("repeat", args, not isinstance(args[0], int))
    for x in (5, -3, 0, 2.5, -0.0, -1e-300, math.nan, math.inf, "x", None):
        add("sign", [x], not isinstance(x, str))
    for args in ((5, 3), (-1, 7), (None, 1), (1, None), (1.5, 2)):
        add("bitxor", args, not isinstance(args[0], float))
    for x in (1, 0.5, 0, -2, 1e10, None, "x"):
        add("cot", [x], x not in (0, "x"))
    regex_native = [
        ("^ab", "abc"), ("(?i)ABC", "xabcx"), ("\\d+", "a12"), ("[a-c]+", "xbx"),
        ("x{2,3}", "axxb"), ("a|b", "c"), ("colou?r", "color"), ("^a.*z$", "abcz"),
        ("(?:ab)+c", "ababc"), ("\\w+\\s\\w+", "hello world"), ("a.c", "a\nc"),
        ("[^0-9]", "123"), ("\\bword\\b", "a word."), ("a*?b", "aab"), ("é", "café"),
        (None, "a"), ("a", None), ("1", 123), ("^x", "é x"),
    ]  # fmt: skip
    regex_other = [
        ("b(.).*b\\1", "bxaxb"), ("\\d", "٣"), ("\\w+$", "abc\n"), ("a$", "a\n"),
        ("a{,2}", "b"), ("(?P<n>a)", "a"), ("*a", "a"), ("^*", ""), ("\\s", "\x1c"),
        ("\\.", 1.5), ("(?i)straße", "STRASSE"), ("[[a]", "["), ("a{2", "a{2"),
        ("\\Z", ""), ("[a-z&&b]", "&"),
    ]  # fmt: skip
    for p, s in regex_native:
        add("regexp", [p, s], True)
    for p, s in regex_other:
        add("regexp", [p, s], False)
    return cases


def agg_cases():
    data = [
        [1, 2, 3, 4], [1, 3], [1, 2], [1.5, 2.5, 2.5, 2.75, 3.25, 4.75], [0.1, 0.2, 0.3],
        [5], [2**40, 2**40 + 1, 3], [1, 2.5], [0.0, 0.0], [7, 7, 7], [-1e300, 1e300],
        [1e-300, 3e-300], [1, None], ["a", 1],
    ]  # fmt: skip
    out = []
    for name, cls in AGGREGATES.items():
        for rows in data:
            native = all(isinstance(v, (int, float)) for v in rows) and not (
                name.endswith("samp") and len(rows) < 2) and abs(max(rows, key=abs)) < 1e200  # fmt: skip
            out.append((name, rows, native, cls))
    return out


def main():
    out = []
    for name, args, native in scalar_cases():
        case = {"name": name, "args": [enc(a) for a in args], "native": native}
        try:
            case["result"] = enc(SCALARS[name](*args))
        except Exception as e:  # Django's function raised: the statement must fail
            case["error"] = type(e).__name__
        out.append(case)
    for name, rows, native, cls in agg_cases():
        case = {"name": name, "rows": [enc(v) for v in rows], "native": native}
        agg = cls()
        try:
            for v in rows:
                agg.step(v)
            case["result"] = enc(agg.finalize())
        except Exception as e:
            case["error"] = type(e).__name__
        out.append(case)
    head = json.dumps({"django": django.get_version(), "python": sys.version.split()[0]})
    lines = ",\n".join(json.dumps(c, ensure_ascii=False) for c in out)
    OUT.write_text(f'{head[:-1]}, "cases": [\n{lines}\n]}}\n')
    print(f"{len(out)} cases -> {OUT}")


if __name__ == "__main__":
    main()
