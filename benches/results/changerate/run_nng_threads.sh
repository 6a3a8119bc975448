#!/bin/bash
O=$1
for r in 1 2 3; do for d in full normal; do for nt in default 1,1; do
  extra=""; [ "$nt" != default ] && extra="--nng-threads $nt"
  echo "=== rep=$r bin=nt-$nt args=--cases change_rate --durability $d $extra $(date -u +%H:%M:%S) load=$(cut -d' ' -f1-3 /proc/loadavg)" >> $O
  ${NET_LATENCY:-target/release/net_latency} --cases change_rate --durability $d --rate 10000 --rate-secs 3 $extra >> $O 2>&1
done; done; done
