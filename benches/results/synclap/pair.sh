#!/usr/bin/env bash
# Alternates base and v1 latency binaries; each run has ORMDB and SQLite back to back.
# usage: pair.sh OUTFILE REPS OPS FILTERS...
out=$1; reps=$2; ops=$3; shift 3
for r in $(seq 1 $reps); do
  if [ $((r % 2)) = 1 ]; then order="base v1"; else order="v1 base"; fi
  for b in $order; do
    echo "=== rep $r bin $b $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)" >> $out
    ${BIN_DIR:-/tmp/synclap-bin}/$b/latency --ops $ops "$@" >> $out 2>&1
  done
done
