#!/bin/bash
# A/B of deferred commit acknowledgement (stop 19): the server before (BASE) and after (NEW),
# the same net_latency client, alternated per repetition.
# Usage: run_ab.sh OUT REPS BASE_BIN NEW_BIN
set -u
OUT=$1; REPS=$2; BASE=$3; NEW=$4
NL=./target/release/net_latency
for r in $(seq 1 "$REPS"); do
  for d in full normal; do
    for b in base new; do
      bin=$BASE; [ $b = new ] && bin=$NEW
      echo "== rep $r durability=$d server=$b $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT"
      $NL --cases change_rate --durability $d --rate 10000 --server-bin "$bin" >> "$OUT" 2>&1
    done
  done
done
echo DONE >> "$OUT"
