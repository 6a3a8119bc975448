#!/bin/bash
# Point select and graph fetch round trips (1 and 16 clients, ipc:// and tcp://), server before
# (BASE) and after (NEW), alternated. Usage: run_latency.sh OUT REPS BASE_BIN NEW_BIN
set -u
OUT=$1; REPS=$2; BASE=$3; NEW=$4
NL=./target/release/net_latency
for r in $(seq 1 "$REPS"); do
  for b in base new; do
    bin=$BASE; [ $b = new ] && bin=$NEW
    echo "== rep $r server=$b $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT"
    $NL --cases ipc,tcp,changes --server-bin "$bin" >> "$OUT" 2>&1
  done
done
echo DONE >> "$OUT"
