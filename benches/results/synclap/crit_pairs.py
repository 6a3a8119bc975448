#!/usr/bin/env python3
"""Per-repetition ratios from alternated criterion runs (`=== rep N bin B` headers):
ORMDB throughput / SQLite throughput in the same run, for each Full case. Usage: crit_pairs.py FILE"""
import re, sys, statistics
from collections import defaultdict
runs, cur, name = [], None, None
for line in open(sys.argv[1]):
    m = re.match(r"=== rep (\d+) bin (\S+) (\S+) load (\S+)", line)
    if m:
        cur = {"rep": m[1], "bin": m[2], "time": m[3], "load": m[4], "thr": {}}
        runs.append(cur)
        continue
    m = re.match(r"^(\S+/\S+)\s+time:", line) or re.match(r"^(\S+/\S+)\s*$", line)
    if m and "/" in m[1] and not line.startswith("Benchmarking"):
        name = m[1]
    m = re.search(r"thrpt:\s+\[\S+\s+\S+\s+(\S+)\s+(\S+)", line)
    if m and cur is not None and name:
        v = float(m[1]) * {"elem/s": 1, "Kelem/s": 1e3, "Melem/s": 1e6}[m[2]]
        cur["thr"][name] = v
cases = [("insert_commit/ormdb/full", "insert_commit/sqlite/full")] + [
    (f"writers/ormdb/full/{t}", f"writers/sqlite/full/{t}") for t in (1, 4, 16)]
ratios = defaultdict(list)
for r in runs:
    parts = []
    for o, s in cases:
        if o in r["thr"] and s in r["thr"]:
            x = r["thr"][o] / r["thr"][s]
            ratios[(r["bin"], o)].append(x)
            parts.append(f"{o.split('/')[0]}{'/' + o.split('/')[-1] if o.startswith('writers') else ''} {r['thr'][o]:.0f}/{r['thr'][s]:.0f}/s = {x:.2f}x")
    print(f"rep {r['rep']} {r['bin']:4s} {r['time']} load {r['load']:>5s}: " + "; ".join(parts))
for (b, o), v in sorted(ratios.items()):
    print(f"{b:4s} {o:28s} median {statistics.median(v):.2f}x  ({', '.join(f'{x:.2f}' for x in v)})")
