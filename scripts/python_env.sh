#!/usr/bin/env bash
# Sourced by test.sh and demo.sh (after common.sh): provides `ensure_python_env`, which creates
# a virtual environment (default target/python-venv, override with ORMDB_VENV), installs the
# pinned build and test tools from PyPI and then installs ./bindings/python (the `ormdb`
# package, built by maturin from this checkout). Afterwards $ORMDB_PY is the venv's python.
# Needs python3 >= 3.9 with the venv module, Rust (ensure_rust) and network access to PyPI and
# crates.io (or their caches).

ORMDB_VENV="${ORMDB_VENV:-$ROOT/target/python-venv}"
ORMDB_PY="$ORMDB_VENV/bin/python"

ensure_python_env() {
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
  log "installing maturin, pytest and the ormdb Python package (bindings/python)"
  "$ORMDB_PY" -m pip install --quiet --disable-pip-version-check "maturin==1.16.0" pytest &&
    "$ORMDB_PY" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps \
      "$ROOT/bindings/python"
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
# baseline (scripts/django/baseline.json); fails below 97% of the baseline's passes.
django_suite() {
  ensure_django_env || return 1
  "$ORMDB_PY" "$ROOT/scripts/django/run_suite.py"
}
