#!/usr/bin/env python3
"""fdatasync latency of 35 KiB appends by MODE, with PROCS processes writing at once.

    python3 bench/fsync_modes.py grow|overwrite|fallocate [PROCS]

grow: appends to a growing file (what the WAL does); overwrite: into a file of written zeros;
fallocate: into a posix_fallocate'd file. Files go to /tmp and are removed. Prints median,
p90 and p99 in microseconds. Used for docs/design.md ("Where a replicated store's time goes").
"""
import os, sys, time, statistics, multiprocessing as mp
MODE = sys.argv[1]; N = 1500; SZ = 35 * 1024; PROCS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
def worker(i, q):
    path = f"/tmp/fsync-test-{i}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    if MODE == "overwrite":
        os.write(fd, b"\0" * (SZ * N + 4096)); os.fsync(fd); os.lseek(fd, 0, 0)
    elif MODE == "fallocate":
        os.posix_fallocate(fd, 0, SZ * N + 4096); os.fsync(fd)
    buf = os.urandom(SZ); lat = []
    for _ in range(N):
        t = time.perf_counter(); os.write(fd, buf); os.fdatasync(fd); lat.append(time.perf_counter() - t)
    os.close(fd); os.unlink(path)
    q.put(lat)
q = mp.Queue(); ps = [mp.Process(target=worker, args=(i, q)) for i in range(PROCS)]
[p.start() for p in ps]; lats = []
for _ in ps: lats += q.get()
[p.join() for p in ps]
lats.sort()
print(f"{MODE} x{PROCS}: median {statistics.median(lats)*1e6:.0f} us, p90 {lats[int(len(lats)*0.9)]*1e6:.0f}, p99 {lats[int(len(lats)*0.99)]*1e6:.0f}")
