#!/usr/bin/env bash
# Runs the engine-core benchmarks (ORMDB vs SQLite, release build) several times and prints a
# summary with medians, spread, ratios and the performance goals (see docs/BENCHMARKS.md).
#
# Usage: scripts/bench.sh [--reps N] [--rows N] [--reads N] [--ops N] [--out DIR]
#                         [--benches "engine_core graph_fetch"] [--graph-users N]
#                         [--skip-criterion] [--skip-latency] [--skip-memory] [--only "A B"]
#   --reps N     repetitions of every benchmark (default 3; the machine is shared and noisy)
#   --rows N     rows for the memory/disk benchmark (default 1000000, ~1 KB each: ~1 GB of data,
#                ~3.5 GB of free disk needed for ORMDB plus SQLite)
#   --reads N    point reads in the memory benchmark's read phase (default 200000)
#   --ops N      operations per latency measurement (default 5000)
#   --out DIR    results directory (default target/bench-results/<timestamp>)
#   --benches L  criterion benches to run (default "engine_core graph_fetch")
#   --graph-users N  users in the graph fetch memory benchmark (default 2000: x 10 posts x 40
#                comments = 822,000 rows)
#   --only L     run only the cases whose ids contain one of these words, e.g. "insert_commit
#                family_commit writers" (criterion filter and latency filters)
# Environment: ORMDB_BENCH_DIR (where benchmark databases are created; default the temp dir),
# CRITERION_ARGS (extra criterion arguments; default "--warm-up-time 1 --measurement-time 3").
#
# A full run (3 repetitions, 1M rows) takes about 15 minutes on 2 cores.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$ROOT"

REPS=3
ROWS=1000000
READS=200000
OPS=5000
OUT=""
BENCHES="engine_core graph_fetch"
GRAPH_USERS=2000
ONLY=""
RUN_CRITERION=1
RUN_LATENCY=1
RUN_MEMORY=1
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS="$2"; shift 2 ;;
    --rows) ROWS="$2"; shift 2 ;;
    --reads) READS="$2"; shift 2 ;;
    --ops) OPS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --benches) BENCHES="$2"; shift 2 ;;
    --graph-users) GRAPH_USERS="$2"; shift 2 ;;
    --skip-criterion) RUN_CRITERION=0; shift ;;
    --skip-latency) RUN_LATENCY=0; shift ;;
    --skip-memory) RUN_MEMORY=0; shift ;;
    --only) ONLY="$2"; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

ensure_rust
ensure_build_tools
command -v python3 >/dev/null 2>&1 || { echo "error: python3 is needed for the summary" >&2; exit 1; }

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="${OUT:-$TARGET/bench-results/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)" # absolute: later steps run in other directories
CRITERION_ARGS="${CRITERION_ARGS:---warm-up-time 1 --measurement-time 3}"

log "building (release)"
cargo build --release -p ormdb-benches --bins
for b in $BENCHES; do cargo bench -p ormdb-benches --bench "$b" --no-run; done

{
  echo "date: $(date -u +%FT%TZ)"
  if git rev-parse --git-dir >/dev/null 2>&1; then
    echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet -- core || echo ' (core has uncommitted changes)')"
  else
    echo "commit: ${ORMDB_BENCH_COMMIT:-unknown (not a git checkout)}"
  fi
  echo "cpus: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "memory: $(free -m | awk '/^Mem:/ {print $2 " MiB"}')"
  echo "kernel: $(uname -r)"
  echo "fs: $(df -T "${ORMDB_BENCH_DIR:-${TMPDIR:-/tmp}}" | awk 'NR==2 {print $2 " on " $1}')"
  echo "rustc: $(rustc --version)"
} > "$OUT/conditions.txt"
cat "$OUT/conditions.txt"
: > "$OUT/loadavg.txt"

for rep in $(seq 1 "$REPS"); do
  echo "rep $rep: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/loadavg.txt"
  if [ "$RUN_CRITERION" = 1 ]; then
    log "rep $rep/$REPS: criterion benches"
    rm -rf "$TARGET/criterion"
    for b in $BENCHES; do
      # shellcheck disable=SC2086
      cargo bench -p ormdb-benches --bench "$b" -- --noplot $CRITERION_ARGS ${ONLY:+"${ONLY// /|}"} \
        2>&1 | tee -a "$OUT/criterion-$rep.log" | grep -E '^[a-z_]+/|time:|thrpt:' || true
    done
    mkdir -p "$OUT/criterion-$rep"
    (cd "$TARGET/criterion" && find . -path '*/new/*.json' -exec cp --parents {} "$OUT/criterion-$rep/" \;)
  fi
  if [ "$RUN_LATENCY" = 1 ]; then
    log "rep $rep/$REPS: per-operation latencies"
    # shellcheck disable=SC2086
    "$TARGET/release/latency" --ops "$OPS" $ONLY | tee "$OUT/latency-$rep.txt"
  fi
  if [ "$RUN_MEMORY" = 1 ]; then
    log "rep $rep/$REPS: memory and disk ($ROWS rows)"
    "$TARGET/release/memory" --rows "$ROWS" --reads "$READS" | tee "$OUT/memory-$rep.txt"
    log "rep $rep/$REPS: graph fetch memory ($GRAPH_USERS users x 10 x 40)"
    "$TARGET/release/graph_memory" --users "$GRAPH_USERS" | tee "$OUT/graph-memory-$rep.txt"
  fi
done

log "summary"
python3 "$ROOT/scripts/bench_summary.py" "$OUT"
echo "results in $OUT (summary.md)"
