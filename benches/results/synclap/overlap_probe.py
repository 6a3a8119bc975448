#!/usr/bin/env python3
"""The mechanism of the write-ahead, without either engine: one 200-byte record appended per
"commit" into a zero-filled, synced file, then ~10 us of CPU standing in for the sled apply,
then fdatasync. `plain` = pwrite, apply, fdatasync (the commit path before this branch);
`ahead` = pwrite, sync_file_range(WRITE), apply, fdatasync (this branch). Also the two device
steps on their own: `write` = pwrite + sync_file_range(WAIT_BEFORE|WRITE|WAIT_AFTER) (the 4 KiB
page write alone), `flush` = fdatasync of a clean file (the cache flush alone).
Variants alternate in blocks of 300 commits, ROUNDS times. Usage: overlap_probe.py DIR [ROUNDS]"""
import ctypes, os, statistics, sys, time
libc = ctypes.CDLL("libc.so.6", use_errno=True)
WAIT_BEFORE, WRITE, WAIT_AFTER = 1, 2, 4
d = sys.argv[1]
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 4
path = os.path.join(d, "overlap_probe.wal")
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
SIZE = 64 << 20
os.pwrite(fd, b"\0" * SIZE, 0)
os.fsync(fd)
rec = b"r" * 200
pos = 0
def sfr(off, n, flags):
    libc.sync_file_range(fd, ctypes.c_longlong(off), ctypes.c_longlong(n), flags)
def apply():
    t0 = time.perf_counter_ns()
    while time.perf_counter_ns() - t0 < 10_000:
        pass
def plain():
    global pos
    os.pwrite(fd, rec, pos); apply(); os.fdatasync(fd); pos += len(rec)
def ahead():
    global pos
    os.pwrite(fd, rec, pos); sfr(pos, len(rec), WRITE); apply(); os.fdatasync(fd); pos += len(rec)
def write_only():
    global pos
    os.pwrite(fd, rec, pos); sfr(pos, len(rec), WAIT_BEFORE | WRITE | WAIT_AFTER); pos += len(rec)
def flush_only():
    os.fdatasync(fd)
variants = [("plain", plain), ("ahead", ahead), ("write", write_only), ("flush", flush_only)]
lat = {n: [] for n, _ in variants}
for r in range(rounds):
    order = variants if r % 2 == 0 else variants[::-1]
    for name, f in order:
        for _ in range(300):
            if pos + 4096 > SIZE:
                pos = 0
            t0 = time.perf_counter_ns()
            f()
            lat[name].append((time.perf_counter_ns() - t0) / 1000)
    print(f"round {r + 1} load {open('/proc/loadavg').read().split()[:3]}", flush=True)
for name, _ in variants:
    v = sorted(lat[name])
    n = len(v)
    print(f"{name:6s} n={n} p50={v[n // 2]:.1f} p90={v[n * 9 // 10]:.1f} p99={v[n * 99 // 100]:.1f} mean={statistics.mean(v):.1f} us")
os.unlink(path)
