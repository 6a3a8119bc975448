"""Runs Django's own test suite (from the pinned sdist) on django_ormdb or, with --backend
sqlite3, on Django's stock sqlite3 backend, and prints passed/failed/errors/skipped per app.

    python scripts/django/run_suite.py [--backend ormdb|sqlite3] [--record] [app ...]

The sdist is downloaded once with pip into target/django-cache. With --record the per-app
counts are written to scripts/django/baseline.json (meant for --backend sqlite3). On ormdb the
run compares the passes with the recorded sqlite3 baseline and fails below GOAL; the last line
is cargo-style ("test result: ok. N passed; M failed; K ignored") for scripts/test.sh.
ORMDB_DJANGO_GOAL overrides the goal (a fraction, default 0.97). On ormdb, --parallel-check
APPS additionally runs those apps with `--parallel 2` under the "spawn" start method (test
databases cloned through Connection.backup) and fails unless every test that ran passed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

DJANGO_VERSION = "5.2.19"
# The share of the sqlite3 baseline's passes that must pass on ORMDB (issue 6: 97%).
GOAL = float(os.environ.get("ORMDB_DJANGO_GOAL", "0.97"))
APPS = [
    "basic", "queries", "model_fields", "migrations", "schema", "transactions",
    "prefetch_related", "select_related", "many_to_one", "one_to_one", "many_to_many",
    "aggregation", "ordering", "lookup", "update", "delete", "backends", "introspection",
    "inspectdb",
]  # fmt: skip

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CACHE = ROOT / "target" / "django-cache"
BASELINE = HERE / "baseline.json"

# "test_x (app.tests.Class.test_x) ... ok", possibly with the docstring's first line between
# the id and the status, and "setUpClass (app.tests.Class) ... ERROR".
TEST_ID = re.compile(r"^(\w+) \(([\w.]+)\)")
STATUS = re.compile(
    r"\.\.\. (ok|FAIL|ERROR|skipped|expected failure|unexpected success)(?: .*)?$"
)


def django_source() -> Path:
    src = CACHE / f"django-{DJANGO_VERSION}"
    if (src / "tests" / "runtests.py").exists():
        return src
    CACHE.mkdir(parents=True, exist_ok=True)
    sdist = CACHE / f"django-{DJANGO_VERSION}.tar.gz"
    if not sdist.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:",
             "--no-deps", "--dest", str(CACHE), f"django=={DJANGO_VERSION}"],
            check=True,
        )  # fmt: skip
    with tarfile.open(sdist) as tar:
        tar.extractall(CACHE, filter="data")
    return src


def parse(output: str) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    current = None
    for line in output.splitlines():
        m = TEST_ID.match(line)
        if m:
            current = m.group(2)
        s = STATUS.search(line)
        if s and current:
            app = current.split(".")[0]
            c = counts.setdefault(app, {"passed": 0, "failed": 0, "errors": 0, "skipped": 0})
            status = s.group(1)
            if status == "ok":
                c["passed"] += 1
            elif status in ("FAIL", "unexpected success"):
                c["failed"] += 1
            elif status == "ERROR":
                c["errors"] += 1
            else:  # skipped, expected failure
                c["skipped"] += 1
            current = None
    return counts


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", choices=["ormdb", "sqlite3"], default="ormdb")
    ap.add_argument("--record", action="store_true", help="write baseline.json")
    ap.add_argument("--log", help="also write the full runner output here")
    ap.add_argument(
        "--parallel-check",
        metavar="APPS",
        help="comma-separated apps to run again with --parallel 2 under 'spawn'",
    )
    ap.add_argument("apps", nargs="*")
    args = ap.parse_args()
    apps = args.apps or APPS

    src = django_source()
    env = dict(os.environ)
    adapter = ROOT / "adapters" / "django"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(src), str(HERE), str(adapter), env.get("PYTHONPATH", "")]
    )
    cmd = [
        sys.executable, "-W", "ignore", str(src / "tests" / "runtests.py"),
        f"--settings=settings_{args.backend}", "--parallel=1", "-v", "2", "--noinput",
        *apps,
    ]  # fmt: skip
    start = time.monotonic()
    proc = subprocess.run(
        cmd, cwd=src / "tests", env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    elapsed = time.monotonic() - start
    if args.log:
        Path(args.log).write_text(proc.stdout)
    counts = parse(proc.stdout)
    if not counts:
        print(proc.stdout[-5000:])
        print("test result: FAILED. 0 passed; 1 failed; 0 ignored (the runner produced no results)")
        return 1

    baseline = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
    total = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    base_passed = 0
    print(f"{'app':<18}{'passed':>8}{'failed':>8}{'errors':>8}{'skipped':>8}  sqlite3 passed")
    for app in apps:
        c = counts.get(app, {"passed": 0, "failed": 0, "errors": 0, "skipped": 0})
        b = baseline.get("apps", {}).get(app, {}).get("passed")
        base_passed += b or 0
        for k in total:
            total[k] += c[k]
        print(
            f"{app:<18}{c['passed']:>8}{c['failed']:>8}{c['errors']:>8}{c['skipped']:>8}"
            f"  {b if b is not None else '-'}"
        )
    print(
        f"{'total':<18}{total['passed']:>8}{total['failed']:>8}{total['errors']:>8}"
        f"{total['skipped']:>8}  {base_passed or '-'}   ({elapsed:.0f} s)"
    )
    if args.record:
        BASELINE.write_text(
            json.dumps(
                {"django": DJANGO_VERSION, "backend": args.backend,
                 "seconds": round(elapsed), "apps": {a: counts.get(a) for a in apps}},
                indent=1,
            )  # fmt: skip
            + "\n"
        )
    ok = True
    if args.parallel_check:
        ok = parallel_check(src, env, args.parallel_check.split(",")) and ok
    if args.backend == "ormdb" and base_passed:
        ratio = total["passed"] / base_passed
        ok = ratio >= GOAL
        print(f"{ratio:.1%} of the sqlite3 baseline's passes (goal {GOAL:.0%})")
    failed = total["failed"] + total["errors"]
    status = "ok" if ok else "FAILED"
    print(
        f"test result: {status}. {total['passed']} passed; {failed} failed; "
        f"{total['skipped']} ignored"
    )
    return 0 if ok else 1


# runtests.py under the "spawn" start method (the default on macOS and Windows); on Linux
# the runner would otherwise fork, and forked workers inherit the in-memory test databases.
SPAWN = (
    "import multiprocessing, runpy, sys; multiprocessing.set_start_method('spawn'); "
    "sys.argv[0] = 'runtests.py'; runpy.run_path('runtests.py', run_name='__main__')"
)


def parallel_check(src: Path, env: dict, apps: list[str]) -> bool:
    cmd = [
        sys.executable, "-W", "ignore", "-c", SPAWN, "--settings=settings_ormdb",
        "--parallel=2", "--noinput", *apps,
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, cwd=src / "tests", env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    ran = re.search(r"^Ran (\d+) tests?", proc.stdout, re.M)
    cloned = proc.stdout.count("Cloning test database")
    ok = proc.returncode == 0 and ran is not None and cloned >= 2
    print(
        f"parallel check ({', '.join(apps)}; --parallel 2, spawn): "
        f"{ran.group(1) if ran else 0} tests, {cloned} clones, "
        f"{'OK' if ok else 'FAILED'}"
    )
    if not ok:
        print(proc.stdout[-3000:])
    return ok


if __name__ == "__main__":
    sys.exit(main())
