#!/usr/bin/env bash
# Sourced by test.sh and demo.sh (after common.sh): provides `ensure_python_env`, which creates
# a virtual environment (default target/python-venv, override with ORMDB_VENV), installs the
# pinned build and test tools from PyPI, then ./bindings/python (the `ormdb` package, built by
# maturin from this checkout) and ./adapters/sqlalchemy (`sqlalchemy-ormdb`, with pinned
# SQLAlchemy and Alembic). Afterwards $ORMDB_PY is the venv's python.
# Needs python3 >= 3.9 with the venv module, Rust (ensure_rust) and network access to PyPI and
# crates.io (or their caches).

ORMDB_VENV="${ORMDB_VENV:-$ROOT/target/python-venv}"
ORMDB_PY="$ORMDB_VENV/bin/python"
# The SQLAlchemy line the dialect and its compliance suite are tested against.
SQLALCHEMY_PIN="sqlalchemy==2.0.58"
ALEMBIC_PIN="alembic==1.20.1"

ensure_python_env() {
  # Several suites call this; building and installing once per run is enough.
  if [ -n "${ORMDB_PY_ENV_READY:-}" ]; then
    return 0
  fi
  if ! command -v python3 >/dev/null 2>&1; then
    echo "error: python3 (>= 3.9) is needed for the Python binding" >&2
    return 1
  fi
  if ! python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)'; then
    echo "error: python3 >= 3.9 is needed for the Python binding (found $(python3 --version))" >&2
    return 1
  fi
  if [ ! -x "$ORMDB_PY" ]; then
    log "creating the Python virtual environment in $ORMDB_VENV"
    if ! python3 -m venv "$ORMDB_VENV"; then
      echo "error: python3 -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2
      return 1
    fi
  fi
  log "installing maturin, pytest, $SQLALCHEMY_PIN, $ALEMBIC_PIN, ormdb (bindings/python) and sqlalchemy-ormdb (adapters/sqlalchemy)"
  "$ORMDB_PY" -m pip install --quiet --disable-pip-version-check "maturin==1.16.0" pytest \
    "$SQLALCHEMY_PIN" "$ALEMBIC_PIN" &&
    "$ORMDB_PY" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps \
      "$ROOT/bindings/python" "$ROOT/adapters/sqlalchemy" &&
    ORMDB_PY_ENV_READY=1
}

# Prints a cargo-style "test result:" line from a pytest JUnit XML report, so test.sh's summary
# counts the tests. $2 is pytest's exit status; with $3 (a percentage) the verdict is instead
# whether at least that share of the tests that ran (not skipped) passed.
pytest_result_line() {
  "$ORMDB_PY" - "$@" <<'PY'
import sys
import xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    total = sum(int(s.get("tests")) for s in suites)
    failed = sum(int(s.get("failures")) + int(s.get("errors")) for s in suites)
    skipped = sum(int(s.get("skipped")) for s in suites)
    passed = total - failed - skipped
    if len(sys.argv) > 3:
        goal = float(sys.argv[3])
        ran = passed + failed
        share = 100.0 * passed / ran if ran else 0.0
        ok = ran > 0 and share >= goal
        print(f"{passed} passed, {failed} failed, {skipped} skipped: {share:.1f}% of the "
              f"{ran} tests that ran passed (goal {goal:g}%)")
    else:
        ok = sys.argv[2] == "0"
    print(f"test result: {'ok' if ok else 'FAILED'}. {passed} passed; {failed} failed; {skipped} ignored")
    sys.exit(0 if ok else 1)
except Exception as e:
    print(f"could not read the pytest report: {e}")
    sys.exit(1)
PY
}

# The Python binding's pytest suite against the installed wheel. Ends with a cargo-style
# "test result:" line so test.sh's summary counts the tests.
python_binding_tests() {
  ensure_python_env || return 1
  local xml rc
  xml="$(mktemp)"
  (cd "$ROOT" && "$ORMDB_PY" -m pytest -q -c bindings/python/pyproject.toml \
    --junitxml="$xml" bindings/python/tests)
  rc=$?
  pytest_result_line "$xml" "$rc"
  rc=$?
  rm -f "$xml"
  return $rc
}

# Our SQLAlchemy adapter tests (ORM, transactions, reflection, Alembic, graph_fetch, threads,
# bad input) against the installed packages.
sqlalchemy_adapter_tests() {
  ensure_python_env || return 1
  local xml rc
  xml="$(mktemp)"
  (cd "$ROOT/adapters/sqlalchemy" && "$ORMDB_PY" -m pytest -q --junitxml="$xml" tests)
  rc=$?
  pytest_result_line "$xml" "$rc"
  rc=$?
  rm -f "$xml"
  return $rc
}

# SQLAlchemy's third-party dialect compliance suite (adapters/sqlalchemy/test, configured by
# its setup.cfg). Passes when at least 95% of the tests that are not skipped pass.
sqlalchemy_compliance_tests() {
  ensure_python_env || return 1
  local xml rc
  xml="$(mktemp)"
  (cd "$ROOT/adapters/sqlalchemy" && "$ORMDB_PY" -m pytest -q -p no:cacheprovider \
    --junitxml="$xml" test/test_suite.py | tail -n 80) || true # the verdict is the share below
  pytest_result_line "$xml" 1 95
  rc=$?
  rm -f "$xml"
  return $rc
}

# Django 5.2 and the django-ormdb backend (adapters/django) in the same venv. The version
# matches the sdist scripts/django/run_suite.py runs Django's own tests from.
ensure_django_env() {
  ensure_python_env || return 1
  log "installing Django, tblib and django-ormdb (adapters/django)"
  "$ORMDB_PY" -m pip install --quiet --disable-pip-version-check "Django==5.2.19" tblib &&
    "$ORMDB_PY" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps \
      "$ROOT/adapters/django"
}

# Our own tests of the backend (.graph()), with the same cargo-style summary line.
django_backend_tests() {
  ensure_django_env || return 1
  local xml rc
  xml="$(mktemp)"
  (cd "$ROOT/adapters/django" && "$ORMDB_PY" -m pytest -q -p no:cacheprovider \
    --junitxml="$xml" tests)
  rc=$?
  "$ORMDB_PY" - "$xml" "$rc" <<'PY'
import sys
import xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
    s = root if root.tag == "testsuite" else root.find("testsuite")
    total, failed = int(s.get("tests")), int(s.get("failures")) + int(s.get("errors"))
    skipped = int(s.get("skipped"))
    status = "ok" if sys.argv[2] == "0" else "FAILED"
    print(f"test result: {status}. {total - failed - skipped} passed; {failed} failed; {skipped} ignored")
except Exception as e:
    print(f"could not read the pytest report: {e}")
PY
  rm -f "$xml"
  return $rc
}

# Django's own test suite (19 apps) on django_ormdb, compared with the recorded sqlite3
# baseline (scripts/django/baseline.json); fails below 97% of the baseline's passes. Then two
# apps again with Django's parallel runner under "spawn" (test databases cloned through
# Connection.backup), which must pass in full.
django_suite() {
  ensure_django_env || return 1
  "$ORMDB_PY" "$ROOT/scripts/django/run_suite.py" --parallel-check basic,many_to_one
}
