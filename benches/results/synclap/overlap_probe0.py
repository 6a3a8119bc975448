import os, time, ctypes, sys, statistics
libc = ctypes.CDLL("libc.so.6", use_errno=True)
SFR_WAIT_BEFORE, SFR_WRITE, SFR_WAIT_AFTER = 1, 2, 4
d = sys.argv[1]
fn = os.path.join(d, "probe.wal")
fd = os.open(fn, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
os.pwrite(fd, b"\0" * (1 << 22), 0); os.fsync(fd)
rec = b"x" * 200
def t(label, f, n=2000):
    lat = []
    pos = 0
    for i in range(n):
        t0 = time.perf_counter_ns()
        f(pos)
        lat.append((time.perf_counter_ns() - t0) / 1000)
        pos = (pos + 200) % (1 << 22 - 1)
    lat.sort()
    print(f"{label:40s} p50={lat[n//2]:7.1f} p90={lat[n*9//10]:7.1f} p99={lat[n*99//100]:7.1f} mean={statistics.mean(lat):7.1f}")
def w_sync(pos):
    os.pwrite(fd, rec, pos); os.fdatasync(fd)
def w_sfr_wait(pos):
    os.pwrite(fd, rec, pos); libc.sync_file_range(fd, ctypes.c_longlong(pos & ~4095), ctypes.c_longlong(4096), SFR_WAIT_BEFORE|SFR_WRITE|SFR_WAIT_AFTER)
def w_sfr_then_sync(pos):
    os.pwrite(fd, rec, pos); libc.sync_file_range(fd, ctypes.c_longlong(pos & ~4095), ctypes.c_longlong(4096), SFR_WAIT_BEFORE|SFR_WRITE|SFR_WAIT_AFTER); os.fdatasync(fd)
def w_sfr_nowait_spin_sync(pos):
    os.pwrite(fd, rec, pos); libc.sync_file_range(fd, ctypes.c_longlong(pos & ~4095), ctypes.c_longlong(4096), SFR_WRITE)
    t0=time.perf_counter_ns()
    while time.perf_counter_ns()-t0 < 10000: pass
    os.fdatasync(fd)
def spin_then_sync(pos):
    os.pwrite(fd, rec, pos)
    t0=time.perf_counter_ns()
    while time.perf_counter_ns()-t0 < 10000: pass
    os.fdatasync(fd)
def only_sync(pos):
    os.fdatasync(fd)
for r in range(2):
    t("pwrite+fdatasync", w_sync)
    t("pwrite+sfr(write,wait)", w_sfr_wait)
    t("pwrite+sfr(wait)+fdatasync", w_sfr_then_sync)
    t("pwrite+10us spin+fdatasync", spin_then_sync)
    t("pwrite+sfr(write)+10us spin+fdatasync", w_sfr_nowait_spin_sync)
    t("fdatasync only (clean)", only_sync)
os.unlink(fn)
