#!/usr/bin/env bash
# Alternates base and v1 criterion engine_core binaries (Full commit cases), 3 reps.
out=$1; reps=${2:-3}
for r in $(seq 1 $reps); do
  if [ $((r % 2)) = 1 ]; then order="base final"; else order="final base"; fi
  for b in $order; do
    echo "=== rep $r bin $b $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $out
    ${BIN_DIR:-/tmp/synclap-bin}/$b/engine_core --bench --warm-up-time 1 --measurement-time 3 --noplot 'insert_commit/(ormdb|sqlite)/full$|writers/(ormdb|sqlite)/full/(1|16)$' >> $out 2>&1
  done
done
echo finished >> $out
