#!/bin/bash
# Alternates the before/after bench binaries; raw output per run.
out=${OUT:-benches/results/txnwrites}
for r in 1 2 3 4 5; do
  for b in before after; do
    if [ $((r % 2)) -eq 0 ]; then b=$([ $b = before ] && echo after || echo before); fi
    echo "run $r $b start $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $out/pairs.log
    ORMDB_BENCH_WRITE_REPS=5 ${BIN_DIR:-/tmp/txnw}-$b/sql_frontend --bench sql_writes > $out/sql_writes-$b-run$r.txt 2>&1
  done
done
echo done >> $out/pairs.log
