#!/usr/bin/env python3
"""Inline vs background zero-fill of the log, without either engine: COMMITS appends of a
333-byte record + fdatasync into a file zero-filled 1 MiB at a time (write + fsync).
`inline`: the committer extends when its record would cross the filled end (the old path);
`ahead`: a thread extends when less than 512 KiB is left (this branch; a committer still
extends inline if it gets there first). Usage: zero_fill_probe.py DIR [ROUNDS] [COMMITS]"""
import os, statistics, sys, threading, time
d = sys.argv[1]
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
commits = int(sys.argv[3]) if len(sys.argv) > 3 else 8000
STEP = 1 << 20
Z = b"\0" * STEP
rec = b"r" * 333
def run(mode):
    path = os.path.join(d, f"zf-{mode}.wal")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    os.pwrite(fd, Z, 0); os.fsync(fd)
    st = {"alloc": STEP, "pos": 0, "ext": False, "stop": False}
    cv = threading.Condition()
    def extender():
        with cv:
            while not st["stop"]:
                if not st["ext"] and st["alloc"] - st["pos"] < STEP // 2:
                    st["ext"] = True; frm = st["alloc"]
                    cv.release()
                    os.pwrite(fd, Z, frm); os.fsync(fd)
                    cv.acquire()
                    st["alloc"] = frm + STEP; st["ext"] = False; cv.notify_all()
                else:
                    cv.wait(0.2)
    t = threading.Thread(target=extender) if mode == "ahead" else None
    if t: t.start()
    lat = []
    t0 = time.perf_counter()
    for _ in range(commits):
        s = time.perf_counter_ns()
        with cv:
            while st["ext"] and st["pos"] + len(rec) > st["alloc"]:
                cv.wait()
            if st["pos"] + len(rec) > st["alloc"]:
                frm = st["alloc"]; os.pwrite(fd, Z, frm); os.fsync(fd); st["alloc"] = frm + STEP
            pos = st["pos"]
        os.pwrite(fd, rec, pos); os.fdatasync(fd)
        with cv:
            st["pos"] = pos + len(rec)
            if mode == "ahead" and st["alloc"] - st["pos"] < STEP // 2:
                cv.notify_all()
        lat.append((time.perf_counter_ns() - s) / 1000)
    wall = time.perf_counter() - t0
    with cv:
        st["stop"] = True; cv.notify_all()
    if t: t.join()
    os.close(fd); os.unlink(path)
    lat.sort(); n = len(lat)
    return wall, lat[n // 2], lat[n * 99 // 100], lat[-1], statistics.mean(lat)
for r in range(rounds):
    for mode in (["inline", "ahead"] if r % 2 == 0 else ["ahead", "inline"]):
        load = open("/proc/loadavg").read().split()[0]
        w, p50, p99, mx, mean = run(mode)
        print(f"round {r + 1} {mode:6s} load {load}: {commits / w:7.0f} commits/s mean {mean:7.1f} p50 {p50:6.1f} p99 {p99:8.1f} max {mx:8.1f} us", flush=True)
