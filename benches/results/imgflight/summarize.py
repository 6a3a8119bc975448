#!/usr/bin/env python3
"""Summarizes run_pairs.sh output: per case, the median over pairs of each figure for each
label, and the median of the per-pair after/before ratios (ttfr, p50, p99, max, cpu)."""
import re
import statistics
import sys
from collections import defaultdict

rows = defaultdict(lambda: defaultdict(list))  # case -> label -> [dict]
loads = []
for line in open(sys.argv[1]):
    if line.startswith("# pair"):
        m = re.search(r"load ([\d.]+)", line)
        if m:
            loads.append(float(m.group(1)))
    if not line.startswith("RESULT "):
        continue
    parts = line.split()
    label, case = parts[1], parts[2]
    kv = dict(p.split("=", 1) for p in parts[3:])
    rows[case][label].append(kv)

labels = sys.argv[2:] or ["before", "after"]
figs = ["ttfr_us", "ttfr_all_us", "p50_us", "p99_us", "max_us", "cpu_ms", "builds", "build_cpu_ms",
        "stats_scans"]
print(f"load average (1 min) at the pairs: {min(loads):.1f}-{max(loads):.1f}" if loads else "")
for case, by in rows.items():
    print(f"== {case}")
    for lab in labels:
        runs = by.get(lab, [])
        out = []
        for f in figs:
            vals = [float(r[f]) for r in runs if r.get(f, "na") != "na"]
            out.append(f"{f}={statistics.median(vals):.1f}" if vals else f"{f}=na")
        print(f"  {lab:7} n={len(runs)} " + " ".join(out))
    a, b = by.get(labels[1], []), by.get(labels[0], [])
    for f in ["ttfr_us", "ttfr_all_us", "p50_us", "p99_us", "max_us", "cpu_ms"]:
        ratios = [float(x[f]) / float(y[f]) for x, y in zip(a, b) if float(y[f]) > 0]
        if ratios:
            print(f"  ratio {labels[1]}/{labels[0]} {f}: median {statistics.median(ratios):.2f} "
                  f"(per pair {', '.join(f'{r:.2f}' for r in ratios)})")
