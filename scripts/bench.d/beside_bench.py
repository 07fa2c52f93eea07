#!/usr/bin/env python3
"""Changes made beside the mount: latency and the cost of the watch (standard library only).

    python3 scripts/bench.d/beside_bench.py [--quick] [--runs N] [--dir DIR] [--out FILE]

  --quick      small sizes, a smoke test (about a minute)
  --runs N     repetitions (default 3); medians across them are reported
  --dir DIR    where the temporary folders go (default /var/tmp)
  --out FILE   also write the report to FILE

Each run mounts cloudsync on a fresh ONPREM with a file:// cloud, a 200 ms push delay and
rescans once an hour, so only the watch (or the mount) brings changes to the cloud:

  latency  a small file written straight in ONPREM, until it is in the cloud with its full
           content (polled every 2 ms); beside it, the same write through the mount. 30 files
           each (10 with --quick), one after the other; p50 and p95 per run.
  cpu      10 000 files of 1 KiB (2000 with --quick) written straight in ONPREM, in 10 folders,
           with a push delay of 60 s, so that what the daemon does while they are written and
           for 2 s after is the watch hearing them and queueing them, nothing else: the daemon's
           CPU time (utime + stime from /proc/PID/stat) over that span, per 1000 files. Also
           the CPU time until all of them are in the cloud (pushes included, push delay 200 ms),
           and the daemon's CPU time over 10 s idle (a fanotify mark sees the whole filesystem,
           so other processes' writes elsewhere cost it a little).

Both watches are measured: fanotify (the default as root) and inotify (forced). The script
builds nothing: it needs target/release/cloudsync (a private copy is used), fuse3, attr and
root. Mounts, daemons and temporary folders are removed on exit, on failure and on Ctrl-C.
"""

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TICK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[beside {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def is_mounted(path):
    with open("/proc/self/mountinfo") as f:
        return any(line.split(" ")[4] == path for line in f)


def cpu_secs(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15; after the ")" they are the 12th and 13th.
    return (int(fields[11]) + int(fields[12])) / TICK


class Mount:
    def __init__(self, binary, base, watch, push_delay):
        self.dir = tempfile.mkdtemp(prefix="beside-", dir=base)
        self.on, self.mnt, self.cloud = (os.path.join(self.dir, d) for d in ("on", "mnt", "cloud"))
        for d in (self.on, self.mnt, self.cloud):
            os.makedirs(d)
        self.log = open(os.path.join(self.dir, "daemon.log"), "w")
        self.proc = subprocess.Popen(
            [binary, "mount", self.on, self.mnt, "--cloud", "file://" + self.cloud,
             "--state-dir", os.path.join(self.dir, "state"), "--push-delay", push_delay,
             "--rescan-interval", "1h", "--watch", watch],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log,
            env=dict(os.environ, RUST_LOG="info"))
        t = time.time()
        while not is_mounted(self.mnt):
            if self.proc.poll() is not None or time.time() - t > 20:
                raise SystemExit(f"cloudsync did not mount; see {self.log.name}")
            time.sleep(0.02)
        want = f'watch="{watch}"'
        while want not in open(self.log.name).read():
            if time.time() - t > 20:
                raise SystemExit(f"the {watch} watch did not start; see {self.log.name}")
            time.sleep(0.02)

    def close(self):
        if is_mounted(self.mnt):
            for _ in range(10):
                if subprocess.call(["fusermount3", "-u", self.mnt], stderr=subprocess.DEVNULL) == 0:
                    break
                time.sleep(0.2)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if is_mounted(self.mnt):
            subprocess.call(["fusermount3", "-uz", self.mnt])
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def synced(self):
        out = subprocess.run(["getfattr", "--only-values", "--absolute-names", "-n",
                              "user.cloudsync.status", self.mnt], capture_output=True, text=True)
        return out.stdout.strip() == "synced"


def wait_content(path, want, timeout=30.0):
    t = time.time()
    while True:
        try:
            with open(path, "rb") as f:
                if f.read() == want:
                    return
        except FileNotFoundError:
            pass
        if time.time() - t > timeout:
            raise SystemExit(f"{path} did not reach the cloud within {timeout} s")
        time.sleep(0.002)


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def latency(binary, base, watch, n):
    m = Mount(binary, base, watch, "200ms")
    try:
        out = {}
        for side, root in (("beside", m.on), ("mount", m.mnt)):
            times = []
            for i in range(n):
                data = f"{side} {i} {time.time()}\n".encode() * 8
                name = f"lat-{side}-{i}.txt"
                t0 = time.perf_counter()
                with open(os.path.join(root, name), "wb") as f:
                    f.write(data)
                wait_content(os.path.join(m.cloud, name), data)
                times.append((time.perf_counter() - t0) * 1000)
            out[side] = (pct(times, 50), pct(times, 95))
        return out
    finally:
        m.close()


def cpu(binary, base, watch, files):
    per_dir = files // 10
    body = b"x" * 1024
    # The watch alone: pushes wait 60 s.
    m = Mount(binary, base, watch, "60s")
    try:
        time.sleep(1)
        pid = m.proc.pid
        c0 = cpu_secs(pid)
        time.sleep(10)
        idle = cpu_secs(pid) - c0
        c0 = cpu_secs(pid)
        t0 = time.perf_counter()
        for d in range(10):
            os.makedirs(os.path.join(m.on, f"d{d}"))
            for i in range(per_dir):
                with open(os.path.join(m.on, f"d{d}", f"f{i}.txt"), "wb") as f:
                    f.write(body)
        write_s = time.perf_counter() - t0
        time.sleep(2)
        watch_cpu = cpu_secs(pid) - c0
    finally:
        m.close()
    # End to end: the same files until all are in the cloud.
    m = Mount(binary, base, watch, "200ms")
    try:
        time.sleep(1)
        pid = m.proc.pid
        c0 = cpu_secs(pid)
        t0 = time.perf_counter()
        for d in range(10):
            os.makedirs(os.path.join(m.on, f"d{d}"))
            for i in range(per_dir):
                with open(os.path.join(m.on, f"d{d}", f"f{i}.txt"), "wb") as f:
                    f.write(body)
        last = os.path.join(m.cloud, "d9", f"f{per_dir - 1}.txt")
        while True:
            if os.path.exists(last) and sum(len(fs) for _, _, fs in os.walk(m.cloud)) >= files \
                    and m.synced():
                break
            if time.perf_counter() - t0 > 600:
                raise SystemExit("the files did not all reach the cloud within 600 s")
            time.sleep(0.05)
        total_s = time.perf_counter() - t0
        total_cpu = cpu_secs(pid) - c0
    finally:
        m.close()
    return {"idle": idle, "write_s": write_s, "watch_cpu": watch_cpu,
            "total_s": total_s, "total_cpu": total_cpu}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--out")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (fanotify, FUSE passthrough)")
    src = os.path.join(ROOT, "target", "release", "cloudsync")
    if not os.access(src, os.X_OK):
        raise SystemExit("target/release/cloudsync is missing: cargo build --release")
    work = tempfile.mkdtemp(prefix="cloudsync-beside-bench.", dir=a.dir)
    binary = os.path.join(work, "cloudsync")
    shutil.copy2(src, binary)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    n_lat = 10 if a.quick else 30
    files = 2000 if a.quick else 10000
    lat = {w: [] for w in ("fanotify", "inotify")}
    cost = {w: [] for w in ("fanotify", "inotify")}
    try:
        for r in range(a.runs):
            for w in ("fanotify", "inotify"):
                log(f"run {r + 1}/{a.runs}: {w}: latency of {n_lat} writes beside and through the mount")
                lat[w].append(latency(binary, work, w, n_lat))
                log(f"run {r + 1}/{a.runs}: {w}: CPU time of {files} files written beside the mount")
                cost[w].append(cpu(binary, work, w, files))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = statistics.median
    lines = [f"### Changes beside the mount (medians of {a.runs} run(s); push delay 200 ms; "
             f"{os.cpu_count()} cores, load {open('/proc/loadavg').read().split()[0]})", "",
             "| watch | write | to the cloud, p50 | p95 |", "|---|---|---|---|"]
    for w in lat:
        for side, label in (("beside", "straight in ONPREM"), ("mount", "through the mount")):
            p50 = med(x[side][0] for x in lat[w])
            p95 = med(x[side][1] for x in lat[w])
            lines.append(f"| {w} | {label} | {p50:.0f} ms | {p95:.0f} ms |")
    lines += ["", f"| watch | {files} files written beside the mount | daemon CPU while written "
              "(+2 s), pushes held | per 1000 files | until all in the cloud | daemon CPU, "
              "pushes included | daemon CPU idle, 10 s |", "|---|---|---|---|---|---|---|"]
    for w in cost:
        c = cost[w]
        wc = med(x["watch_cpu"] for x in c)
        lines.append(
            f"| {w} | {med(x['write_s'] for x in c):.2f} s | {wc:.2f} s | "
            f"{wc / files * 1000 * 1000:.0f} ms | {med(x['total_s'] for x in c):.1f} s | "
            f"{med(x['total_cpu'] for x in c):.2f} s | {med(x['idle'] for x in c):.2f} s |")
    report = "\n".join(lines) + "\n"
    print(report)
    if a.out:
        with open(a.out, "w") as f:
            f.write(report)


if __name__ == "__main__":
    main()
