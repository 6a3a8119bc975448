#!/usr/bin/env bash
# Paired before/after runs of benches/src/bin/image_cold.rs: the same bench source built against
# the base commit (BEFORE dir) and this branch (AFTER dir), alternated, REPS pairs, every case
# cold (a fresh open or a fresh `ormdb serve` per case). Each dir holds `image_cold` and `ormdb`
# built with `cargo build --release -p ormdb-benches --bin image_cold -p ormdb --features
# ormdb/cli --bin ormdb`.
#   run_pairs.sh BEFORE_DIR AFTER_DIR REPS [extra image_cold args...]
set -euo pipefail
before=$1 after=$2 reps=$3
shift 3
for r in $(seq 1 "$reps"); do
  if (( r % 2 )); then order="before after"; else order="after before"; fi
  for v in $order; do
    dir=$before; [[ $v == after ]] && dir=$after
    echo "# pair $r $v $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
    "$dir/image_cold" --reps 1 --label "$v" --server-bin "$dir/ormdb" "$@"
  done
done
