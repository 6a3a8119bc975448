#!/usr/bin/env python3
"""Summarizes a scripts/bench.sh results directory: medians over repetitions (with min-max
spread) of the criterion benchmarks, the per-operation latency percentiles and the memory/disk
benchmark, ORMDB vs SQLite ratios, and the performance goals.

Usage: bench_summary.py RESULTS_DIR   (prints Markdown; also writes RESULTS_DIR/summary.md)
"""

import glob
import json
import os
import re
import statistics
import sys
from collections import defaultdict


def med(xs):
    return statistics.median(xs) if xs else None


def fmt(x, digits=1):
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def spread(xs, digits=1):
    if not xs:
        return "-"
    if len(xs) == 1:
        return fmt(xs[0], digits)
    return f"{fmt(med(xs), digits)} ({fmt(min(xs), digits)}-{fmt(max(xs), digits)})"


def split_id(full_id):
    """case/engine/rest -> (case, engine, rest)."""
    parts = full_id.split("/")
    return parts[0], parts[1], "/".join(parts[2:])


def load_criterion(out):
    """{full_id: [ops_per_s per rep]}, {full_id: [us per element per rep]}, {full_id: {rep: ops_per_s}}."""
    thr, per, by_rep = defaultdict(list), defaultdict(list), defaultdict(dict)
    for rep_dir in sorted(d for d in glob.glob(os.path.join(out, "criterion-*")) if os.path.isdir(d)):
        for bj in glob.glob(os.path.join(rep_dir, "**", "new", "benchmark.json"), recursive=True):
            ej = os.path.join(os.path.dirname(bj), "estimates.json")
            if not os.path.exists(ej):
                continue
            b = json.load(open(bj))
            e = json.load(open(ej))
            elems = 1
            t = b.get("throughput") or {}
            if "Elements" in t:
                elems = t["Elements"]
            ns_per_iter = e["median"]["point_estimate"]
            us_per_elem = ns_per_iter / elems / 1000.0
            per[b["full_id"]].append(us_per_elem)
            thr[b["full_id"]].append(1e6 / us_per_elem)
            by_rep[b["full_id"]][rep_dir] = 1e6 / us_per_elem
    return thr, per, by_rep


def load_kv_lines(out, pattern, prefix):
    """RESULT/METRIC lines of every repetition: {id: {key: [values]}}."""
    res = defaultdict(lambda: defaultdict(list))
    for f in sorted(glob.glob(os.path.join(out, pattern))):
        for line in open(f, errors="replace"):
            if not line.startswith(prefix + " "):
                continue
            fields = line.split()
            if prefix == "METRIC":
                try:
                    res[fields[1]]["v"].append(float(fields[2]))
                except (IndexError, ValueError):
                    pass
                continue
            rid = fields[1]
            for kv in fields[2:]:
                k, _, v = kv.partition("=")
                try:
                    res[rid][k].append(float(v))
                except ValueError:
                    pass
    return res


GRAPH_VARIANTS = [
    ("ormdb", "ORMDB conn.fetch"),
    ("ormdb_nested", "ORMDB fetch + nesting"),
    ("sqlite", "SQLite (a) IN-list batching"),
    ("sqlite_nplus1", "SQLite (b) N+1"),
]


def graph_section(p, per, by_rep):
    """Graph fetch (issue 3) table: time per fetch per variant, paired time ratios. Returns goals."""
    cases = [c for c in ("one_user", "hundred_users") if f"graph_fetch/ormdb/{c}" in per]
    if not cases:
        return []
    p("## Graph fetch (issue 3): users -> posts -> comments, time per fetch")
    p("")
    p(
        "Time ratios are medians of per-repetition ratios: ORMDB/(a) < 1 means ORMDB is faster than"
        " hand-written batching; (b)/ORMDB > 1 means ORMDB is that many times faster than N+1."
    )
    p("")
    p("| case | " + " | ".join(label for _, label in GRAPH_VARIANTS) + " | ORMDB/(a) time | (b)/ORMDB time |")
    p("|---|" + "---:|" * (len(GRAPH_VARIANTS) + 2))
    goals = []
    for case in cases:
        rows = {"one_user": 111, "hundred_users": 11100}[case]
        cells = []
        for v, _ in GRAPH_VARIANTS:
            k = f"graph_fetch/{v}/{case}"
            # per[] is us per element (row); a fetch returns `rows` rows.
            cells.append(spread([x * rows for x in per.get(k, [])], 1))
        o, a, b = (f"graph_fetch/{v}/{case}" for v in ("ormdb", "sqlite", "sqlite_nplus1"))

        def paired(num, den):
            # by_rep holds throughput; time ratio num/den = thr(den)/thr(num).
            xs = [by_rep[den][r] / by_rep[num][r] for r in sorted(by_rep.get(num, {})) if r in by_rep.get(den, {})]
            return med(xs), xs

        oa, oa_xs = paired(o, a)
        bo, bo_xs = paired(b, o)
        txt = lambda m, xs: "-" if m is None else f"{m:.2f} ({', '.join(f'{x:.2f}' for x in xs)})"
        p(f"| {case} (us) | " + " | ".join(cells) + f" | {txt(oa, oa_xs)} | {txt(bo, bo_xs)} |")
        if oa is not None:
            goals.append(
                (f"graph fetch no slower than hand-written IN-list batching ({case})", oa <= 1.0,
                 f"ORMDB/(a) time {oa:.2f}")
            )
        if case == "hundred_users" and bo is not None:
            goals.append(
                ("graph fetch >= 10x faster than N+1 (hundred_users)", bo >= 10.0, f"(b)/ORMDB time {bo:.2f}")
            )
    p("")
    return goals


def main():
    out = sys.argv[1]
    lines = []
    p = lines.append
    reps = len([d for d in glob.glob(os.path.join(out, "criterion-*")) if os.path.isdir(d)]) or len(
        glob.glob(os.path.join(out, "latency-*.txt"))
    )
    p(f"# ORMDB vs SQLite benchmark summary ({out})")
    p("")
    p(f"Repetitions: {reps}. Figures are medians over repetitions, (min-max) in brackets.")
    loads = [l.strip() for l in open(os.path.join(out, "loadavg.txt"))] if os.path.exists(
        os.path.join(out, "loadavg.txt")
    ) else []
    if loads:
        p("Load average before each repetition: " + "; ".join(loads))
    p(
        "Ratio = ORMDB throughput / SQLite throughput (> 1: ORMDB faster); for criterion, the median of"
        " the per-repetition ratios (ORMDB and SQLite run back to back in each repetition)."
    )
    p("")

    thr, per, by_rep = load_criterion(out)
    goals = {}
    if any(not k.startswith("graph_fetch/") for k in thr):
        p("## Criterion (throughput per second; time per operation in us)")
        p("")
        p(
            "| case | variant | ORMDB ops/s | SQLite ops/s | ratio (per rep) | ORMDB us/op | SQLite us/op |"
        )
        p("|---|---|---:|---:|---:|---:|---:|")
        # graph_fetch has its own section below.
        keys = sorted({(split_id(k)[0], split_id(k)[2]) for k in thr if not k.startswith("graph_fetch/")})
        for case, rest in keys:
            o = f"{case}/ormdb/{rest}"
            for sq in ("sqlite", "sqlite_mutex"):
                s = f"{case}/{sq}/{rest}"
                if s not in thr or o not in thr:
                    continue
                paired = [
                    by_rep[o][r] / by_rep[s][r] for r in sorted(by_rep[o]) if r in by_rep[s]
                ]
                ratio = med(paired) if paired else med(thr[o]) / med(thr[s])
                reps_txt = ", ".join(f"{x:.2f}" for x in paired)
                label = rest + ("" if sq == "sqlite" else " (SQLite writers serialized on a mutex)")
                p(
                    f"| {case} | {label} | {spread(thr[o], 0)} | {spread(thr[s], 0)} | "
                    f"{ratio:.2f}x ({reps_txt}) | {spread(per[o], 2)} | {spread(per[s], 2)} |"
                )
                goals[f"{case}/{sq}/{rest}"] = ratio
        p("")

    graph_goals = graph_section(p, per, by_rep)

    lat = load_kv_lines(out, "latency-*.txt", "RESULT")
    if lat:
        p("## Per-operation latency (us) and process CPU per operation (all threads)")
        p("")
        p("| id | ops/s | p50 | p95 | p99 | CPU us/op |")
        p("|---|---:|---:|---:|---:|---:|")
        for rid in sorted(lat):
            r = lat[rid]
            p(
                f"| {rid} | {spread(r['ops_per_s'], 0)} | {spread(r['p50_us'], 1)} | "
                f"{spread(r['p95_us'], 1)} | {spread(r['p99_us'], 1)} | {spread(r['cpu_us_per_op'], 1)} |"
            )
        p("")

    gmem = load_kv_lines(out, "graph-memory-*.txt", "METRIC")
    if gmem:
        p("## Graph fetch memory (ORMDB; peak RSS over the RSS before the fetch, own process per phase)")
        p("")
        rows = gmem.get("graph.rows", {}).get("v", [])
        refuse = gmem.get("graph.refuse_at", {}).get("v", [])
        p(
            f"Dataset: {fmt(med(rows), 0) if rows else '?'} rows; refused fetch budget max_rows = "
            f"{fmt(med(refuse), 0) if refuse else '?'}."
        )
        p("")
        p("| phase | rows returned | time ms | RSS before MiB | peak RSS MiB | peak over before MiB |")
        p("|---|---:|---:|---:|---:|---:|")
        for ph in ("open", "refused", "full"):
            g = lambda k: gmem.get(f"graph.{ph}.{k}", {}).get("v", [])
            p(
                f"| {ph} | {spread(g('rows'), 0)} | {spread(g('time_ms'), 1)} | {spread(g('rss_before_mib'), 1)} | "
                f"{spread(g('peak_rss_mib'), 1)} | {spread(g('peak_over_before_mib'), 1)} |"
            )
        p("")

    mem = load_kv_lines(out, "memory-*.txt", "METRIC")
    if mem:
        p("## Memory and disk")
        p("")
        p("| metric | ORMDB | SQLite |")
        p("|---|---:|---:|")
        names = sorted({k.split(".", 1)[1] for k in mem})
        for n in names:
            o = mem.get(f"ormdb.{n}", {}).get("v", [])
            s = mem.get(f"sqlite.{n}", {}).get("v", [])
            p(f"| {n} | {spread(o, 1)} | {spread(s, 1)} |")
        p("")

    p("## Goals")
    p("")

    def goal(name, ok, detail):
        p(f"- {name}: **{'met' if ok else 'MISSED'}** ({detail})")

    if "point_read/sqlite/txn_per_lookup" in goals:
        r1 = goals["point_read/sqlite/txn_per_lookup"]
        r2 = goals.get("point_read/sqlite/batch100")
        goal(
            "point read no slower than SQLite (100k rows, read txn per lookup)",
            r1 >= 1.0,
            f"ORMDB/SQLite throughput {r1:.2f}x",
        )
        if r2 is not None:
            goal(
                "point read no slower than SQLite (100 lookups per read txn)",
                r2 >= 1.0,
                f"{r2:.2f}x",
            )
    mo = mem.get("ormdb.reads_per_s", {}).get("v", [])
    ms = mem.get("sqlite.reads_per_s", {}).get("v", [])
    if mo and ms:
        r = med(mo) / med(ms)
        goal("point read no slower than SQLite (memory benchmark, ~1 KB rows)", r >= 1.0, f"{r:.2f}x")
    for mode in ("full", "normal"):
        k1 = f"writers/sqlite/{mode}/1"
        if k1 in goals:
            goal(
                f"commit throughput >= SQLite with 1 writer ({mode})",
                goals[k1] >= 1.0,
                f"{goals[k1]:.2f}x",
            )
        k16 = f"writers/sqlite/{mode}/16"
        if k16 in goals:
            extra = ""
            km = f"writers/sqlite_mutex/{mode}/16"
            if km in goals:
                extra = f"; vs SQLite with writers serialized on a mutex: {goals[km]:.2f}x"
            goal(
                f"commit throughput >= 2x SQLite with 16 writers ({mode})",
                goals[k16] >= 2.0,
                f"{goals[k16]:.2f}x vs stock SQLite (busy timeout){extra}",
            )
    for name, ok, detail in graph_goals:
        goal(name, ok, detail)
    rss = mem.get("ormdb.read_rss_max_mib", {}).get("v", [])
    rows = mem.get("ormdb.rows", {}).get("v", [])
    if rss:
        goal(
            f"RSS < 256 MiB while serving point reads ({fmt(med(rows), 0) if rows else '?'} rows)",
            max(rss) < 256,
            f"max sampled RSS {spread(rss, 0)} MiB, peak (VmHWM) {spread(mem.get('ormdb.read_hwm_mib', {}).get('v', []), 0)} MiB",
        )
    do = mem.get("ormdb.disk_mib", {}).get("v", [])
    ds = mem.get("sqlite.disk_mib", {}).get("v", [])
    if do and ds:
        p(
            f"- on-disk size: ORMDB {fmt(med(do))} MiB vs SQLite {fmt(med(ds))} MiB "
            f"({med(do) / med(ds):.2f}x)"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
