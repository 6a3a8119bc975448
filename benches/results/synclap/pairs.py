#!/usr/bin/env python3
"""Per-repetition paired ratios from `synclap-pair.sh` output (latency binary runs of two
binaries, base and v1, alternated; each run has ORMDB and SQLite back to back).
Ratio = ORMDB throughput / SQLite throughput in the same run (= SQLite mean / ORMDB mean)
and the same for p50 (SQLite p50 / ORMDB p50). Usage: pairs.py FILE [CASE]"""
import re, sys, statistics
from collections import defaultdict
f = sys.argv[1]
case = sys.argv[2] if len(sys.argv) > 2 else "insert_commit"
runs = []
cur = None
for line in open(f):
    m = re.match(r"=== rep (\d+) bin (\S+) (\S+) load (\S+)", line)
    if m:
        cur = {"rep": int(m[1]), "bin": m[2], "time": m[3], "load": m[4], "res": {}}
        runs.append(cur)
        continue
    m = re.match(r"RESULT (\S+) (.*)", line)
    if m and cur is not None:
        cur["res"][m[1]] = {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", m[2])}
by_bin = defaultdict(list)
for r in runs:
    o = r["res"].get(f"{case}/ormdb/full")
    s = r["res"].get(f"{case}/sqlite/full")
    if not o or not s:
        continue
    tp = s["mean_us"] / o["mean_us"]
    p50 = s["p50_us"] / o["p50_us"]
    by_bin[r["bin"]].append((tp, p50))
    print(f"rep {r['rep']} {r['bin']:4s} {r['time']} load {r['load']:>5s}  ormdb mean/p50/p99 {o['mean_us']:8.1f} {o['p50_us']:7.1f} {o['p99_us']:8.1f} cpu {o['cpu_us_per_op']:6.1f} | sqlite {s['mean_us']:8.1f} {s['p50_us']:7.1f} {s['p99_us']:8.1f} cpu {s['cpu_us_per_op']:6.1f} | ratio mean {tp:.2f}x p50 {p50:.2f}x")
for b, v in by_bin.items():
    print(f"{b}: median ratio (throughput) {statistics.median(x[0] for x in v):.2f}x, p50 {statistics.median(x[1] for x in v):.2f}x over {len(v)} reps")
# Before/after: ORMDB of v1 against ORMDB of base in the same repetition (adjacent runs).
reps = defaultdict(dict)
for r in runs:
    o = r["res"].get(f"{case}/ormdb/full")
    if o:
        reps[r["rep"]][r["bin"]] = o
ba = []
for rep, d in sorted(reps.items()):
    new = "v1" if "v1" in d else "final"
    if "base" in d and new in d:
        b, v = d["base"], d[new]
        x = (b["mean_us"] / v["mean_us"], b["p50_us"] / v["p50_us"], b["p99_us"] / v["p99_us"])
        ba.append(x)
        print(f"rep {rep} ORMDB base/{new} time: mean {x[0]:.2f}x p50 {x[1]:.2f}x p99 {x[2]:.2f}x (p50 {b['p50_us']:.1f} -> {v['p50_us']:.1f} us)")
if ba:
    print(f"ORMDB new speed-up over base, median of reps: mean {statistics.median(x[0] for x in ba):.2f}x, p50 {statistics.median(x[1] for x in ba):.2f}x, p99 {statistics.median(x[2] for x in ba):.2f}x over {len(ba)} reps")
