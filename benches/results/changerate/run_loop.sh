#!/bin/bash
# usage: cr-run.sh OUT REPS "label=BIN ..." "case args ..." 
out=$1; reps=$2; bins=$3; shift 3
for r in $(seq 1 $reps); do
  for args in "$@"; do
    for lb in $bins; do
      label=${lb%%=*}; bin=${lb#*=}
      echo "=== rep=$r bin=$label args=$args $(date -u +%H:%M:%S) load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $out
      $bin $args >> $out 2>&1
    done
  done
done
