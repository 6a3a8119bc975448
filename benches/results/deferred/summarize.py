#!/usr/bin/env python3
"""Medians per (case, server) of a run_latency.sh / run_ab.sh output: python3 summarize.py OUT"""
import re, sys, statistics, collections
vals = collections.defaultdict(list)
server = None
for line in open(sys.argv[1]):
    m = re.match(r"== rep \d+ (?:durability=(\w+) )?server=(\w+)", line)
    if m:
        dur, server = m.group(1), m.group(2)
        continue
    if line.startswith("RESULT") and server:
        f = line.split()
        case = f[1] + (f" ({dur})" if dur else "")
        kv = dict(x.split("=", 1) for x in f[2:] if "=" in x)
        vals[(case, server)].append(kv)
    if line.strip().startswith("COST") and server:
        kv = dict(x.split("=", 1) for x in line.split() if "=" in x)
        vals[(case, server)][-1].update(kv)
cases = sorted({c for c, _ in vals}, key=lambda c: list(k[0] for k in vals).index(c))
keys = ["ops_per_s", "achieved_per_s", "p50_us", "p99_us", "commit_p99_us", "server_cpu_us", "server_switches", "client_cpu_us"]
for c in cases:
    out = []
    for s in ("base", "new"):
        runs = vals.get((c, s), [])
        parts = []
        for k in keys:
            xs = [float(r[k]) for r in runs if k in r]
            if xs:
                parts.append(f"{k}={statistics.median(xs):.1f} ({', '.join(f'{x:.0f}' if x > 100 else f'{x:.1f}' for x in xs)})")
        out.append(f"  {s}: " + " ".join(parts))
    print(c); print("\n".join(out))
