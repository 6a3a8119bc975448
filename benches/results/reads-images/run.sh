#!/usr/bin/env bash
# Runs the point-read and SQL read comparisons: images off (before) and on (after), alternating, N reps.
set -u
cd /work/wt-reads
OUT=${OUT:-/tmp/reads-results}
mkdir -p "$OUT"
EC=$(ls -t target/release/deps/engine_core-* | grep -v '\.d$' | head -1)
SF=$(ls -t target/release/deps/sql_frontend-* | grep -v '\.d$' | head -1)
REPS=${REPS:-3}
for rep in $(seq 1 $REPS); do
  for mode in off on; do
    if [ $mode = off ]; then export ORMDB_BENCH_IMAGE_BUDGET=0; else unset ORMDB_BENCH_IMAGE_BUDGET; fi
    echo "rep $rep $mode $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/log.txt"
    $EC --bench point_read --warm-up-time 1 --measurement-time 3 --noplot > "$OUT/ec-$rep-$mode.txt" 2>&1
    $SF --bench 'sql_point_select|sql_index_range|sql_index_desc|sql_in_list_500' --noplot > "$OUT/sf-$rep-$mode.txt" 2>&1
  done
done
echo finished $(date -u +%T) | tee -a "$OUT/log.txt"
