#!/usr/bin/env bash
# Builds everything and runs every test suite, printing one pass/fail line per suite and a
# summary. Exit status is non-zero if any suite failed.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/python_env.sh"
set +e # a failing suite must not stop the others; the summary decides the exit status
cd "$ROOT"

ensure_rust
ensure_build_tools
# A clean checkout gains nothing from incremental compilation and its cache is gigabytes.
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=0; fi

declare -a NAMES=() RESULTS=() DETAILS=()
LOGDIR="$(mktemp -d)"

run_suite() {
  local name="$1"; shift
  local logf="$LOGDIR/$(echo "$name" | tr ' /' '__').log"
  log "$name"
  local start=$SECONDS
  if "$@" >"$logf" 2>&1; then
    RESULTS+=("PASS")
  else
    RESULTS+=("FAIL")
    tail -n 60 "$logf"
  fi
  NAMES+=("$name")
  # cargo test prints "test result: ok. N passed; M failed; ..." per test binary: add them up.
  local counts
  counts=$(grep -E '^test result:' "$logf" | awk '{p+=$4; f+=$6; i+=$8} END {if (NR>0) printf "%d passed, %d failed, %d ignored", p, f, i}' || true)
  DETAILS+=("${counts:-} ($((SECONDS - start)) s)")
  printf '%s: %s %s\n' "${RESULTS[-1]}" "$name" "${DETAILS[-1]}"
}

run_suite "rust format (cargo fmt --check)" cargo fmt --all -- --check
run_suite "rust lint (cargo clippy -D warnings)" cargo clippy --workspace --all-targets --features ormdb/cli -- -D warnings
# Every ormdb test target is built and run with one feature set (`cli`, which the server tests
# need for the `ormdb` binary they start), so each is compiled once: a workspace-wide build unifies
# dependency features differently and would compile every test binary a second time.
run_suite "rust build (workspace + cli)" bash -c \
  'cargo build -p ormdb --all-targets --features cli && cargo build -p ormdb-benches -p ormdb-python --all-targets'
run_suite "rust unit tests (ormdb lib)" cargo test -p ormdb --lib --features cli
run_suite "rust doc tests (ormdb)" cargo test -p ormdb --doc --features cli
for t in core/tests/*.rs; do
  name="$(basename "$t" .rs)"
  run_suite "rust integration: $name" cargo test -p ormdb --features cli --test "$name" -- --test-threads=2
done
run_suite "python binding (pytest)" python_binding_tests
run_suite "sqlalchemy adapter (pytest)" sqlalchemy_adapter_tests
run_suite "sqlalchemy compliance suite" sqlalchemy_compliance_tests
run_suite "django backend (pytest: .graph(), native functions)" django_backend_tests
run_suite "django suite (Django 5.2 tests on django_ormdb)" django_suite
run_suite "cli smoke (ormdb demo + info)" bash -c '
  d=$(mktemp -d) && ./target/debug/ormdb demo "$d/demo.db" --users 20 >/dev/null &&
  ./target/debug/ormdb info "$d/demo.db" | grep -q "^comments " && rm -rf "$d"'

echo
echo "================ summary ================"
pass=0; fail=0
for i in "${!NAMES[@]}"; do
  printf '%-5s %-45s %s\n' "${RESULTS[$i]}" "${NAMES[$i]}" "${DETAILS[$i]}"
  if [ "${RESULTS[$i]}" = PASS ]; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
done
echo "suites: $pass passed, $fail failed"
rm -rf "$LOGDIR"
[ "$fail" -eq 0 ]
