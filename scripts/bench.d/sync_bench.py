#!/usr/bin/env python3
"""Sync benchmarks for cloudsync against SabreDAV (standard library only).

    python3 scripts/bench.d/sync_bench.py [--quick] [--runs N] [--only LIST]
                                          [--pull-files N,N] [--dir DIR] [--out FILE]

  --quick          small sizes, a smoke test (about 2.5 minutes; the full run about 10)
  --runs N         repetitions of each upload measurement (default 3); idle pulls are
                   measured max(N, 5) times
  --only LIST      some sections only: upload, latency, pull, visible (comma-separated)
  --pull-files L   tree sizes for the idle-pull section (default 10000,50000;
                   1000,5000 with --quick). 100000 works but adds about 12 minutes here,
                   most of it cloudsync's initial download of the tree (about 300 files/s)
  --dir DIR        where the temporary folders go (default /var/tmp)
  --out FILE       also write the report to FILE

Sections (each against its own SabreDAV under `php -S 127.0.0.1:PORT` with
PHP_CLI_SERVER_WORKERS=4, served by scripts/bench.d/sabre_server.php):
  upload   one 1 GiB file (256 MiB with --quick), and 1000 files of 4 KiB (200), written
           through the mount with --push-delay 0s, timed until `cloudsync sync --wait` returns:
           the big file from its close; the small files once from `cloudsync resume --push`
           after writing them with pushing paused (upload alone), and once from the first
           write (end to end); against curl uploading the same data to the same server (one
           PUT; one curl process sending the small files one after another).
  latency  with push delays 2s (the default) and 500ms: a small file written through the mount,
           until it shows in the server's data directory with its full size (polled every
           20 ms); 20 times each (10 with --quick); p50 and p95.
  pull     idle pulls over a tree of 100 files per folder, with Nextcloud-style folder ETags
           (oc:fileid, folder ETags that change with anything below) and without (plain
           SabreDAV): `cloudsync sync --now` once the initial download is done, as it is and
           with the background puller paused (so that exactly one pull runs); against a bare
           PROPFIND walk (Depth 1 on every folder, 8 threads, Python http.client), and with
           folder ETags also against one bare Depth-0 PROPFIND of the root. Also the initial
           download rate against bare GETs.
  visible  with --pull-interval 1s, and with a `sync --now` right after the change: a file
           changed straight in the server's data directory, until the new content reads back
           through the mount (polled every 20 ms); both server profiles; 10 times each.

Times are medians (or percentiles) over repetitions, never single runs. The script builds
nothing: it needs target/release/cloudsync (cargo build --release; a private copy is used, so
a rebuild during the run changes nothing), php-cli, php-sabre-dav, curl, attr, fuse3 and root. Mounts, daemons, servers and temporary folders are removed on exit, on
failure and on Ctrl-C.
"""

import argparse
import hashlib
import http.client
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILT = os.path.join(REPO, "target", "release", "cloudsync")
BIN = BUILT  # replaced by a private copy at start, so a rebuild meanwhile changes nothing
SERVER_PHP = os.path.join(HERE, "sabre_server.php")

PROPFIND_BODY = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:prop>'
    "<d:resourcetype/><d:getcontentlength/><d:getlastmodified/><d:getetag/><oc:fileid/>"
    "</d:prop></d:propfind>"
).encode()

PULL_LINE = re.compile(
    r"pulled in ([0-9.]+) ms with (\d+) requests: (\d+) downloaded, (\d+) conflicts, "
    r"(\d+) other changes"
)


def log(msg):
    print("[sync_bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def die(msg):
    log("error: " + msg)
    raise SystemExit(1)


# ---------------------------------------------------------------------------------------------
# statistics


def median(xs):
    return statistics.median(xs)


def pct(xs, p):
    """The p-quantile (0..1) with linear interpolation between closest ranks."""
    s = sorted(xs)
    if len(s) == 1:
        return s[0]
    k = (len(s) - 1) * p
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def fmt_s(x):
    if x < 1:
        return "%.0f ms" % (x * 1000)
    return "%.2f s" % x


def fmt_ms(x):
    return "%.1f ms" % x if x < 100 else "%.0f ms" % x


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# cleanup registry: everything started is stopped on exit, in reverse order


class Cleanup:
    def __init__(self):
        self.items = []  # (label, fn)
        self.done = False

    def push(self, label, fn):
        self.items.append((label, fn))
        return fn

    def remove(self, fn):
        self.items = [(l, f) for (l, f) in self.items if f is not fn]

    def run(self):
        if self.done:
            return
        self.done = True
        while self.items:
            label, fn = self.items.pop()
            try:
                fn()
            except Exception as e:  # keep cleaning up
                log("cleanup of %s failed: %s" % (label, e))


CLEANUP = Cleanup()


def on_signal(signum, _frame):
    log("signal %d: cleaning up" % signum)
    CLEANUP.run()
    os._exit(130)


# ---------------------------------------------------------------------------------------------
# helpers


def free_port():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run(cmd, timeout=None, check=True):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        die("%s exited with %d:\n%s%s" % (" ".join(cmd), p.returncode, p.stdout, p.stderr))
    return p


def write_file(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    finally:
        os.close(fd)


def copy_file(src, dst, chunk=8 << 20):
    with open(src, "rb") as f:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            while True:
                b = f.read(chunk)
                if not b:
                    break
                view = memoryview(b)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
        finally:
            os.close(fd)


def count_files(d):
    n = 0
    stack = [d]
    while stack:
        p = stack.pop()
        with os.scandir(p) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                else:
                    n += 1
    return n


def wait_for(pred, timeout, step=0.02, what="condition"):
    end = time.monotonic() + timeout
    while True:
        if pred():
            return
        if time.monotonic() > end:
            die("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(step)


# ---------------------------------------------------------------------------------------------
# SabreDAV


class DavServer:
    """SabreDAV under `php -S`, in its own process group, on 127.0.0.1 only."""

    def __init__(self, base, name, folder_etags, port=None, data=None, request_log=False):
        self.dir = os.path.join(base, name)
        os.makedirs(self.dir, exist_ok=True)
        self.data = data or os.path.join(self.dir, "data")
        os.makedirs(self.data, exist_ok=True)
        self.etags = os.path.join(self.dir, "etags")
        if os.path.isdir(self.etags):
            shutil.rmtree(self.etags)
        os.makedirs(self.etags)
        self.folder_etags = folder_etags
        self.reqlog = os.path.join(self.dir, "requests.log") if request_log else None
        self.name = name
        self.proc = None
        last = ""
        for attempt in range(5):
            self.port = port or free_port()
            try:
                self._start()
                break
            except RuntimeError as e:
                last = str(e)
                time.sleep(0.5)
        else:
            die("the %s server did not start:\n%s" % (name, last))
        self.url = "http://127.0.0.1:%d/dav/" % self.port
        self._cleanup = CLEANUP.push("server " + name, self.stop)

    def _start(self):
        env = dict(os.environ)
        env.update(DAV_ROOT=self.data, PHP_CLI_SERVER_WORKERS="4")
        if self.folder_etags:
            env.update(DAV_FOLDER_ETAGS="1", DAV_ETAG_DIR=self.etags)
        if self.reqlog:
            env.update(DAV_REQUEST_LOG=self.reqlog)
        logf = open(os.path.join(self.dir, "server.log"), "ab")
        self.proc = subprocess.Popen(
            ["php", "-d", "display_errors=0", "-d", "log_errors=1",
             "-d", "error_log=" + os.path.join(self.dir, "php-errors.log"),
             "-d", "memory_limit=-1", "-S", "127.0.0.1:%d" % self.port, SERVER_PHP],
            cwd=self.dir, env=env, stdin=subprocess.DEVNULL, stdout=logf,
            stderr=subprocess.STDOUT, start_new_session=True)
        logf.close()
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(self.log_tail())
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("OPTIONS", "/dav/")
                r = c.getresponse()
                r.read()
                c.close()
                if r.status < 500:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self._kill()
        raise RuntimeError("no answer within 10 s\n" + self.log_tail())

    def log_tail(self):
        try:
            with open(os.path.join(self.dir, "server.log"), "rb") as f:
                return f.read()[-2000:].decode(errors="replace")
        except OSError:
            return ""

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def stop(self):
        self._kill()
        CLEANUP.remove(self._cleanup)

    def req_mark(self):
        try:
            return os.path.getsize(self.reqlog)
        except OSError:
            return 0

    def req_counts(self, mark, prefix="/dav/"):
        """Requests logged since `mark` on paths under `prefix`, by method. cloudsync's one-off
        probe of whether the server honours If-Match (an empty PUT to .cloudsync-probe-*) is
        counted apart, as PROBE."""
        counts = {}
        with open(self.reqlog, "rb") as f:
            f.seek(mark)
            for line in f.read().decode(errors="replace").splitlines():
                parts = line.split(" ", 2)
                if len(parts) == 3 and parts[2].startswith(prefix):
                    method = parts[0]
                    if "/.cloudsync-probe-" in parts[2]:
                        method = "PROBE"
                    counts[method] = counts.get(method, 0) + 1
        return counts

    def disk(self, rel):
        return os.path.join(self.data, rel)

    def changed_on_disk(self, rel):
        """What `occ files:scan` does for a change made straight in the data directory: the
        folders above `rel` get new ETags (the same rule sabre_server.php applies itself after
        a write through WebDAV)."""
        if not self.folder_etags:
            return
        p = os.path.dirname(self.disk(rel).rstrip("/"))
        root = self.data.rstrip("/")
        while True:
            relp = p[len(root):]
            key = hashlib.md5((relp + "\0" + str(os.stat(p).st_ino)).encode()).hexdigest()
            tmp = os.path.join(self.etags, key + ".tmp%d" % os.getpid())
            with open(tmp, "w") as f:
                f.write('"%s"' % os.urandom(10).hex())
            os.rename(tmp, os.path.join(self.etags, key))
            if p == root:
                break
            p = os.path.dirname(p)

    def propfind(self, conn, path, depth):
        conn.request("PROPFIND", path, body=PROPFIND_BODY,
                     headers={"Depth": str(depth), "Content-Type": "application/xml"})
        r = conn.getresponse()
        body = r.read()
        if r.status != 207:
            die("PROPFIND %s answered %d" % (path, r.status))
        return body


def bare_walk(server, threads=8):
    """Depth-1 PROPFIND of every folder, `threads` at a time, parsing each answer to find the
    subfolders, as the daemon does. Returns (seconds, requests, files)."""
    cond = threading.Condition()
    state = {"pending": ["/dav/"], "active": 0, "requests": 0, "files": 0, "error": None}

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        try:
            while True:
                with cond:
                    while not state["pending"] and state["active"] and not state["error"]:
                        cond.wait()
                    if state["error"] or not state["pending"]:
                        cond.notify_all()
                        return
                    path = state["pending"].pop()
                    state["active"] += 1
                subdirs, files = [], 0
                try:
                    body = server.propfind(conn, path, 1)
                    me = urllib.parse.unquote(path).rstrip("/")
                    for resp in ET.fromstring(body).iter("{DAV:}response"):
                        href = resp.findtext("{DAV:}href") or ""
                        if urllib.parse.unquote(urllib.parse.urlsplit(href).path).rstrip("/") == me:
                            continue
                        if resp.find(".//{DAV:}resourcetype/{DAV:}collection") is not None:
                            subdirs.append(urllib.parse.urlsplit(href).path)
                        else:
                            files += 1
                except BaseException as e:  # report, stop the others
                    with cond:
                        state["error"] = e
                        state["active"] -= 1
                        cond.notify_all()
                    return
                with cond:
                    state["pending"].extend(subdirs)
                    state["requests"] += 1
                    state["files"] += files
                    state["active"] -= 1
                    cond.notify_all()
        finally:
            conn.close()

    t = time.perf_counter()
    ws = [threading.Thread(target=worker) for _ in range(threads)]
    for w in ws:
        w.start()
    for w in ws:
        w.join()
    dt = time.perf_counter() - t
    if state["error"]:
        die("bare PROPFIND walk failed: %r" % state["error"])
    return dt, state["requests"], state["files"]


def bare_gets(server, rels, threads):
    """GET every path in `rels`, `threads` at a time. Returns files per second."""
    lock = threading.Lock()
    state = {"next": 0, "error": None}

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        while True:
            with lock:
                if state["next"] >= len(rels) or state["error"]:
                    break
                rel = rels[state["next"]]
                state["next"] += 1
            try:
                conn.request("GET", "/dav/" + urllib.parse.quote(rel))
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    raise RuntimeError("GET %s answered %d" % (rel, r.status))
            except Exception as e:
                state["error"] = e
                break
        conn.close()

    t = time.perf_counter()
    ws = [threading.Thread(target=worker) for _ in range(threads)]
    for w in ws:
        w.start()
    for w in ws:
        w.join()
    if state["error"]:
        die("bare GETs failed: %r" % state["error"])
    return len(rels) / (time.perf_counter() - t)


def bare_root(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    t = time.perf_counter()
    server.propfind(conn, "/dav/", 0)
    dt = time.perf_counter() - t
    conn.close()
    return dt


# ---------------------------------------------------------------------------------------------
# cloudsync


class Mount:
    def __init__(self, base, name, url, push_delay=None, pull_interval=None, onprem=None,
                 state=None, extra=()):
        self.dir = os.path.join(base, name)
        self.onprem = onprem or os.path.join(self.dir, "onprem")
        self.mnt = os.path.join(self.dir, "mnt")
        self.state = state or os.path.join(self.dir, "state")
        for d in (self.onprem, self.mnt):
            os.makedirs(d, exist_ok=True)
        cmd = [BIN, "mount", self.onprem, self.mnt, "--cloud", url, "--state-dir", self.state]
        if push_delay is not None:
            cmd += ["--push-delay", push_delay]
        if pull_interval is not None:
            cmd += ["--pull-interval", pull_interval]
        cmd += list(extra)
        cmd.append("--daemon")
        self.name = name
        self.pid = None
        try:
            self.log_start = os.path.getsize(self.log_path)
        except OSError:
            self.log_start = 0
        p = run(cmd, timeout=300, check=False)
        if p.returncode != 0:
            die("mount failed (%d): %s%s\n%s" % (p.returncode, p.stdout, p.stderr,
                                                 self.log_tail()))
        try:
            with open(os.path.join(self.state, "lock")) as f:
                self.pid = int(f.read().strip() or 0) or None
        except (OSError, ValueError):
            self.pid = None
        self._cleanup = CLEANUP.push("mount " + name, self.unmount)

    @property
    def log_path(self):
        return os.path.join(self.state, "cloudsync.log")

    def log_tail(self, n=3000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def alive(self):
        if not self.pid:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        try:  # a zombie is not alive
            with open("/proc/%d/stat" % self.pid) as f:
                return f.read().split(")")[-1].split()[0] != "Z"
        except OSError:
            return False

    def unmount(self):
        CLEANUP.remove(self._cleanup)
        t = time.monotonic()
        try:
            p = run([BIN, "unmount", self.mnt], timeout=120, check=False)
            if p.returncode != 0:
                log("unmount %s: exit %d %s" % (self.mnt, p.returncode, p.stderr.strip()))
        except subprocess.TimeoutExpired:
            log("unmount %s did not return within 120 s" % self.mnt)
        end = time.monotonic() + 60
        while self.alive() and time.monotonic() < end:
            time.sleep(0.1)
        if os.path.ismount(self.mnt):
            subprocess.run(["fusermount3", "-uz", self.mnt], stderr=subprocess.DEVNULL)
        if self.alive():
            note("%s: daemon %d still running 60 s after `cloudsync unmount`: killed it"
                 % (self.name, self.pid))
            os.kill(self.pid, signal.SIGKILL)
        dt = time.monotonic() - t
        for k, n in self.problems().items():
            e = LOG_PROBLEMS.setdefault(k, [0, set()])
            e[0] += n
            e[1].add(self.name)
        return dt

    def sync_wait(self, path=None, timeout="30m"):
        p = run([BIN, "sync", "--wait", "--timeout", timeout, path or self.mnt], check=False)
        if p.returncode != 0:
            die("sync --wait %s: exit %d %s%s\n--- daemon log ---\n%s" % (
                path or self.mnt, p.returncode, p.stdout, p.stderr, self.log_tail()))

    def sync_now(self):
        t = time.perf_counter()
        p = run([BIN, "sync", "--now", self.mnt], timeout=600)
        wall = time.perf_counter() - t
        m = PULL_LINE.search(p.stdout + p.stderr)
        if not m:
            die("cannot parse `sync --now` output: %r" % (p.stdout + p.stderr))
        return {"ms": float(m.group(1)), "requests": int(m.group(2)),
                "downloaded": int(m.group(3)), "conflicts": int(m.group(4)),
                "other": int(m.group(5)), "wall": wall}

    def pause_pull(self, on=True):
        run([BIN, "pause" if on else "resume", "--pull", self.mnt], timeout=60)

    def measure_pulls(self, runs, between=None):
        """`sync --now` `runs` times as it is, then `runs` times with the background puller
        paused. `sync --now` first asks for a sync, which wakes the background puller, then
        runs its own pull, which waits for that one to finish: with the puller paused, only
        the measured pull runs. `between(i)` runs after each of those (a baseline measurement,
        interleaved so that noise on this busy machine hits both alike)."""
        asis, single = [], []
        for i in range(runs):
            asis.append(self.sync_now())
        self.pause_pull(True)
        for i in range(runs):
            single.append(self.sync_now())
            if between:
                between(i)
        self.pause_pull(False)
        return asis, single

    def status(self, path):
        p = run(["getfattr", "--only-values", "-n", "user.cloudsync.status", path], check=False)
        return p.stdout.strip()

    def problems(self):
        """WARN/ERROR lines of the daemon log, counted by message (timestamps stripped)."""
        seen = {}
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_start)
                text = f.read().decode(errors="replace")
        except OSError:
            return seen
        # one entry per timestamped line, with its continuation lines (pretty-printed values)
        for entry in re.split(r"\n(?=\d{4}-\d\d-\d\dT)", text):
            head = entry.split("\n", 1)[0]
            if " WARN " in head or " ERROR " in head or "panicked" in entry:
                key = re.sub(r"^\S+\s+", "", " ".join(entry.split()))
                key = re.sub(r"\d+(\.\d+)?", "N", key)[:200]
                seen[key] = seen.get(key, 0) + 1
        return seen


NOTES = []  # misbehaviour and remarks, printed at the end
LOG_PROBLEMS = {}  # daemon log WARN/ERROR message -> [count, mounts]


def note(msg):
    log("note: " + msg)
    NOTES.append(msg)


# ---------------------------------------------------------------------------------------------
# 1. uploads


def bench_upload(base, cfg):
    big = cfg["big_mib"] << 20
    nsmall = cfg["small_n"]
    runs = cfg["runs"]
    src = os.path.join(base, "src")
    os.makedirs(src, exist_ok=True)
    bigsrc = os.path.join(src, "big.bin")
    log("upload: generating %d MiB of random data" % cfg["big_mib"])
    with open(bigsrc, "wb") as f:
        left = big
        while left:
            n = min(left, 16 << 20)
            f.write(os.urandom(n))
            left -= n
    smalldir = os.path.join(src, "small")
    os.makedirs(smalldir)
    payloads = [os.urandom(4096) for _ in range(nsmall)]
    for i, b in enumerate(payloads):
        write_file(os.path.join(smalldir, "f%04d.dat" % i), b)

    srv = DavServer(base, "up-server", folder_etags=False, request_log=True)
    # cloudsync syncs cs/, curl writes to curl/: the mount never pulls curl's files
    os.makedirs(srv.disk("cs"))
    os.makedirs(srv.disk("curl"))
    m = Mount(base, "up-mount", srv.url + "cs/", push_delay="0s")
    m.sync_wait()
    # Uploads only: no pull walks the growing server tree while either side is timed.
    m.pause_pull()
    res = {"cs_big": [], "cs_big_total": [], "curl_big": [], "cs_small": [],
           "cs_small_write": [], "cs_small_e2e": [], "curl_small": [], "req_big": {}, "req_small": {},
           "req_curl_small": {}, "puts_big": []}

    def curl_big(i):
        url = srv.url + "curl/big-%d.bin" % i
        t = time.perf_counter()
        p = run(["curl", "-sS", "-f", "-H", "Expect:", "-T", bigsrc, url, "-o", "/dev/null"],
                timeout=1800)
        dt = time.perf_counter() - t
        if os.path.getsize(srv.disk("curl/big-%d.bin" % i)) != big:
            die("curl upload has the wrong size")
        os.unlink(srv.disk("curl/big-%d.bin" % i))
        del p
        return dt

    def cs_big(i):
        name = "big-%d.bin" % i
        disk = srv.disk("cs/" + name)
        mark = srv.req_mark()
        logmark = os.path.getsize(m.log_path)
        t0 = time.perf_counter()
        copy_file(bigsrc, os.path.join(m.mnt, name))
        t1 = time.perf_counter()
        m.sync_wait(os.path.join(m.mnt, name))
        t2 = time.perf_counter()
        if os.path.getsize(disk) != big:
            die("%s reads synced but the server has %d bytes" % (name, os.path.getsize(disk)))
        res["req_big"] = srv.req_counts(mark, "/dav/cs/")
        res["req_big"].pop("PROBE", None)
        res["puts_big"].append(res["req_big"].get("PUT", 0))
        if res["req_big"].get("PUT", 0) != 1:
            with open(m.log_path, "rb") as f:
                f.seek(logmark)
                lines = [" ".join(l.split()[1:])[:200] for l in
                         f.read().decode(errors="replace").splitlines() if "push" in l]
            note("upload: %s (%d MiB, written once through the mount) took %d PUTs and %d "
                 "PROPFINDs to reach the cloud; daemon log meanwhile: %s"
                 % (name, big >> 20, res["req_big"].get("PUT", 0),
                    res["req_big"].get("PROPFIND", 0), " | ".join(lines) or "nothing"))
        os.unlink(os.path.join(m.mnt, name))
        wait_for(lambda: not os.path.exists(disk), 120, 0.05, "the cloud delete of " + name)
        m.sync_wait()
        return t2 - t1, t2 - t0

    for i in range(runs):
        order = [0, 1] if i % 2 == 0 else [1, 0]  # alternate, so drift hits both alike
        for which in order:
            if which == 0:
                log("upload: big file through the mount, run %d/%d" % (i + 1, runs))
                a, b = cs_big(i)
                res["cs_big"].append(a)
                res["cs_big_total"].append(b)
            else:
                log("upload: big file with curl, run %d/%d" % (i + 1, runs))
                res["curl_big"].append(curl_big(i))

    def curl_small(i):
        folder = "curl/small-%d" % i
        cfgfile = os.path.join(base, "curl-small-%d.cfg" % i)
        with open(cfgfile, "w") as f:
            for k in range(nsmall):
                f.write('upload-file = "%s"\nurl = "%s%s/f%04d.dat"\noutput = "/dev/null"\n'
                        % (os.path.join(smalldir, "f%04d.dat" % k), srv.url, folder, k))
        mark = srv.req_mark()
        t = time.perf_counter()
        run(["curl", "-sS", "-f", "-X", "MKCOL", srv.url + folder + "/", "-o", "/dev/null"])
        p = run(["curl", "-sS", "-H", "Expect:", "-w", "%{http_code}\\n", "-K", cfgfile],
                timeout=1800)
        dt = time.perf_counter() - t
        codes = p.stdout.split()
        bad = [c for c in codes if c not in ("201", "204")]
        if len(codes) != nsmall or bad:
            die("curl small uploads: %d answers, unexpected %s" % (len(codes), bad[:5]))
        res["req_curl_small"] = srv.req_counts(mark, "/dav/curl/")
        return dt

    def cs_small(i, paused):
        """With `paused`, the files are written while pushing is paused and the clock runs
        from `cloudsync resume --push` (upload alone, as curl is timed); without, from the
        first write (writing through the mount and uploading, overlapped)."""
        name = "small-%d%s" % (i, "p" if paused else "")
        folder = os.path.join(m.mnt, name)
        mark = srv.req_mark()
        if paused:
            run([BIN, "pause", "--push", m.mnt], timeout=60)
        t0 = time.perf_counter()
        os.mkdir(folder)
        for k, b in enumerate(payloads):
            write_file(os.path.join(folder, "f%04d.dat" % k), b)
        t1 = time.perf_counter()
        if paused:
            t0 = time.perf_counter()
            run([BIN, "resume", "--push", m.mnt], timeout=60)
        m.sync_wait(folder)
        t2 = time.perf_counter()
        n = count_files(srv.disk("cs/" + name))
        if n != nsmall:
            die("%s reads synced but the server has %d of %d files" % (name, n, nsmall))
        res["req_small"] = srv.req_counts(mark, "/dav/cs/")
        res["req_small"].pop("PROBE", None)
        return t2 - t0, t1 - t0

    for i in range(runs):
        order = [0, 1] if i % 2 == 0 else [1, 0]
        for which in order:
            if which == 0:
                log("upload: %d small files through the mount, run %d/%d" % (nsmall, i + 1, runs))
                a, _ = cs_small(i, True)
                res["cs_small"].append(a)
                a, b = cs_small(i, False)
                res["cs_small_e2e"].append(a)
                res["cs_small_write"].append(b)
            else:
                log("upload: %d small files with curl, run %d/%d" % (nsmall, i + 1, runs))
                res["curl_small"].append(curl_small(i))
    m.unmount()
    srv.stop()
    os.unlink(bigsrc)
    return res


def report_upload(res, cfg):
    mib = cfg["big_mib"]
    n = cfg["small_n"]
    cb, ub = median(res["cs_big"]), median(res["curl_big"])
    cs, us = median(res["cs_small"]), median(res["curl_small"])
    rows = [
        ["1 file of %d MiB: close → `sync --wait` returns" % mib, fmt_s(cb),
         "%.0f MiB/s" % (mib / cb), fmt_s(ub), "%.0f MiB/s" % (mib / ub),
         "%.2f" % (ub / cb)],
        ["%d files of 4 KiB, in place (written while pushing was paused): "
         "`resume --push` → `sync --wait` returns" % n, fmt_s(cs),
         "%.0f files/s" % (n / cs), fmt_s(us), "%.0f files/s" % (n / us), "%.2f" % (us / cs)],
        ["%d files of 4 KiB, end to end: first write → `sync --wait` returns (the writes "
         "through the mount took %s of it)" % (n, fmt_s(median(res["cs_small_write"]))),
         fmt_s(median(res["cs_small_e2e"])),
         "%.0f files/s" % (n / median(res["cs_small_e2e"])), fmt_s(us),
         "%.0f files/s" % (n / us), "%.2f" % (us / median(res["cs_small_e2e"]))],
    ]
    s = ("### 1. Upload throughput (SabreDAV, plain; cloudsync --push-delay 0s, --transfers 4 "
         "(default); medians of %d runs)\n\n" % cfg["runs"])
    s += table(["workload", "cloudsync", "cloudsync rate", "curl", "curl rate",
                "ratio cloudsync/curl throughput"], rows)
    s += ("\n\nFor comparison, the big file through the mount, first byte written → synced: %s "
          "(median). curl sends the big file as one PUT (no `Expect: 100-continue`) and the small "
          "files as one curl process, one request after another (no --parallel; `php -S` closes "
          "the connection after each answer), after a MKCOL of their folder. cloudsync syncs "
          "the server folder cs/, curl writes to curl/, so the mount never pulls curl's files. "
          "Pulling is paused (`cloudsync pause --pull`) for the whole section, so no pull of the "
          "growing tree runs while either side is timed.\n"
          % fmt_s(median(res["cs_big_total"])))

    def fmt_req(c, per):
        tot = sum(c.values())
        return "%.2f per file (%s)" % (tot / per, ", ".join(
            "%s %d" % (k, v) for k, v in sorted(c.items(), key=lambda kv: -kv[1])))
    s += ("\nPUTs per big file through the mount, by run: %s.\n"
          % ", ".join(str(x) for x in res["puts_big"]))
    s += ("\nRequests the server saw (last run): big file, cloudsync: %s; %d small files, "
          "cloudsync: %s; curl: %s.\n" % (fmt_req(res["req_big"], 1), n,
                                          fmt_req(res["req_small"], n),
                                          fmt_req(res["req_curl_small"], n)))
    return s


# ---------------------------------------------------------------------------------------------
# 2. propagation latency


def bench_latency(base, cfg):
    reps = cfg["lat_reps"]
    out = {}
    for label, delay, pd in (("2s (default)", None, 2.0), ("500ms", "500ms", 0.5)):
        tag = "lat-" + ("default" if delay is None else delay)
        srv = DavServer(base, tag + "-server", folder_etags=False)
        m = Mount(base, tag + "-mount", srv.url, push_delay=delay)
        m.sync_wait()
        rng = random.Random(1)
        lat = []
        for i in range(reps):
            name = "f%03d.txt" % i
            data = os.urandom(1000 + i)
            dst = srv.disk(name)
            time.sleep(rng.uniform(0.1, 0.6))
            write_file(os.path.join(m.mnt, name), data)
            t0 = time.perf_counter()
            end = t0 + 60
            while True:
                try:
                    if os.stat(dst).st_size == len(data):
                        break
                except FileNotFoundError:
                    pass
                if time.perf_counter() > end:
                    die("%s did not reach the server within 60 s\n%s" % (name, m.log_tail()))
                time.sleep(0.02)
            lat.append(time.perf_counter() - t0)
            m.sync_wait(os.path.join(m.mnt, name), timeout="60s")
        log("latency with push delay %s: p50 %s" % (label, fmt_s(pct(lat, 0.5))))
        out[label] = (pd, lat)
        m.unmount()
        srv.stop()
    return out


def report_latency(out, cfg):
    rows = []
    for label, (pd, lat) in out.items():
        p50 = pct(lat, 0.5)
        target = pd + 0.5
        rows.append([label, len(lat), fmt_s(p50), fmt_s(pct(lat, 0.95)), fmt_s(max(lat)),
                     "≤ %s" % fmt_s(target), "met" if p50 <= target else "**missed**"])
    s = ("### 2. Propagation latency: close of a new 1 KB file through the mount → it has its "
         "full size in the server's data directory (polled every 20 ms)\n\n")
    s += table(["push delay", "samples", "p50", "p95", "max", "target p50", "p50 vs target"],
               rows)
    return s + "\n"


# ---------------------------------------------------------------------------------------------
# 3. idle pulls


def populate(data, n, per_folder=100, fan=10):
    """n files, `per_folder` per leaf folder, leaf folders grouped `fan` per top folder.
    Returns the number of folders (the root included)."""
    leaves = (n + per_folder - 1) // per_folder
    folders = {""}
    k = 0
    for leaf in range(leaves):
        rel = "t%03d/l%02d" % (leaf // fan, leaf % fan)
        d = os.path.join(data, rel)
        os.makedirs(d, exist_ok=True)
        folders.add(rel)
        folders.add(rel.split("/")[0])
        for j in range(per_folder):
            if k == n:
                break
            with open(os.path.join(d, "f%03d.txt" % j), "wb") as f:
                f.write(b"%s/f%03d.txt %d\n" % (rel.encode(), j, k))
            k += 1
    return len(folders)


def bench_pull(base, cfg):
    runs = max(cfg["runs"], 5)
    out = []
    for n in cfg["pull_files"]:
        tag = "pull-%d" % n
        data = os.path.join(base, tag + "-data")
        os.makedirs(data)
        t = time.perf_counter()
        nfolders = populate(data, n)
        log("pull %d: %d files in %d folders written in %.1f s" % (n, n, nfolders,
                                                                  time.perf_counter() - t))
        plain = DavServer(base, tag + "-plain", folder_etags=False, data=data)
        port = plain.port
        m = Mount(base, tag + "-mount", plain.url, pull_interval="1h")
        t = time.perf_counter()
        wait_for(lambda: count_files(m.onprem) >= n, 3600, 1.0, "the initial download")
        m.sync_wait()
        init = time.perf_counter() - t
        log("pull %d: initial download of %d files took %.1f s (%.0f files/s)"
            % (n, n, init, n / init))
        got = count_files(m.onprem)
        if got != n:
            note("pull %d: ONPREM holds %d files after the initial pull, not %d" % (n, got, n))
        row = {"n": n, "folders": nfolders, "init": init}
        # plain SabreDAV: no folder ETags
        walks = []
        asis, pulls = m.measure_pulls(runs, lambda i: walks.append(bare_walk(plain)))
        row["plain"] = (pulls, walks, asis)
        sample = []
        for dp, _dn, fns in os.walk(data):
            sample += [os.path.relpath(os.path.join(dp, f), data) for f in fns]
            if len(sample) >= 2000:
                break
        row["get1"] = median([bare_gets(plain, sample, 1) for _ in range(3)])
        row["get4"] = median([bare_gets(plain, sample, 4) for _ in range(3)])
        log("pull %d plain: idle pull %.1f ms / %d requests; bare walk %.1f ms / %d requests"
            % (n, median([p["ms"] for p in pulls]), median([p["requests"] for p in pulls]),
               median([w[0] for w in walks]) * 1000, median([w[1] for w in walks])))
        for p in pulls + asis:
            if p["downloaded"] or p["conflicts"] or p["other"]:
                note("pull %d plain: an idle pull changed something: %r" % (n, p))
        m.unmount()
        plain.stop()
        # the same data and journal, now with Nextcloud-style folder ETags on the same URL
        oc = DavServer(base, tag + "-etags", folder_etags=True, port=port, data=data)
        m = Mount(base, tag + "-mount", oc.url, pull_interval="1h", onprem=m.onprem,
                  state=m.state)
        m.sync_wait()
        first = m.sync_now()
        walks, roots = [], []

        def baselines(i):
            walks.append(bare_walk(oc))
            roots.append(bare_root(oc))
        asis, pulls = m.measure_pulls(runs, baselines)
        row["etags"] = (pulls, walks, roots, asis)
        log("pull %d etags: idle pull %.1f ms / %d requests; bare root PROPFIND %.1f ms"
            % (n, median([p["ms"] for p in pulls]), median([p["requests"] for p in pulls]),
               median(roots) * 1000))
        for p in pulls + asis:
            if p["downloaded"] or p["conflicts"] or p["other"]:
                note("pull %d etags: an idle pull changed something: %r" % (n, p))
        if first["downloaded"] or first["conflicts"]:
            note("pull %d etags: the first pull after switching the server downloaded %d "
                 "files, %d conflicts" % (n, first["downloaded"], first["conflicts"]))
        row["unmount"] = m.unmount()
        oc.stop()
        out.append(row)
        t = time.perf_counter()
        subprocess.run(["rm", "-rf", data, os.path.join(base, tag + "-mount")])
        log("pull %d: removed the trees in %.1f s" % (n, time.perf_counter() - t))
    return out


def report_pull(out, cfg):
    rows = []

    def reqs(ps):
        lo, hi = min(p["requests"] for p in ps), max(p["requests"] for p in ps)
        return "%g" % median([p["requests"] for p in ps]) + ("" if lo == hi else
                                                             " (%d–%d)" % (lo, hi))
    for r in out:
        n = r["n"]
        pulls, walks, asis = r["plain"]
        pm = median([p["ms"] for p in pulls])
        am = median([p["ms"] for p in asis])
        wm = median([w[0] for w in walks]) * 1000
        rows.append(["%d files, %d folders" % (n, r["folders"]), "plain (no folder ETags)",
                     fmt_ms(pm), reqs(pulls), fmt_ms(am), reqs(asis),
                     "walk %s, %g req" % (fmt_ms(wm), median([w[1] for w in walks])),
                     "%.2f (as is %.2f)" % (pm / wm, am / wm), "≤ 2× walk",
                     "met" if pm <= 2 * wm else "**missed**"])
        pulls, walks, roots, asis = r["etags"]
        pm = median([p["ms"] for p in pulls])
        am = median([p["ms"] for p in asis])
        wm = median([w[0] for w in walks]) * 1000
        rm = median(roots) * 1000
        ok = pm < 50 and median([p["requests"] for p in pulls]) == 1
        rows.append(["%d files, %d folders" % (n, r["folders"]), "folder ETags (Nextcloud-style)",
                     fmt_ms(pm), reqs(pulls), fmt_ms(am), reqs(asis),
                     "root PROPFIND %s; walk %s" % (fmt_ms(rm), fmt_ms(wm)),
                     "%.1f× root, %.3f× walk" % (pm / rm, pm / wm), "< 50 ms, 1 request",
                     "met" if ok else "**missed**"])
    s = ("### 3. Idle pull (nothing changed; medians of %d pulls each, times as the daemon "
         "reports them; 100 files per folder)\n\n" % max(cfg["runs"], 5))
    s += table(["tree", "server", "one idle pull", "requests", "`sync --now` as is",
                "requests (as is)", "bare baseline (median)", "ratio (one pull / baseline)",
                "target", "verdict (one pull)"], rows)
    s += ("\n\n\"One idle pull\" is `cloudsync sync --now` with the background puller paused "
          "(`cloudsync pause --pull`). \"As is\" is plain `cloudsync sync --now`: it first sends "
          "a sync request, which wakes the background puller, then runs its own pull, which "
          "waits for the first one; its time covers the rest of that first pull plus its own, "
          "its request count only its own.\n")
    s += "\n\nOther numbers from the same runs:\n\n"
    rows = []
    for r in out:
        n = r["n"]
        rate = n / r["init"]
        rows.append(["%d files" % n, "%.1f s (%.0f files/s)" % (r["init"], rate),
                     "%.0f / %.0f files/s" % (r["get1"], r["get4"]),
                     "%.2f / %.2f" % (rate / r["get1"], rate / r["get4"]),
                     fmt_s(median([p["wall"] for p in r["etags"][3]])),
                     fmt_s(r["unmount"])])
    s += table(["tree", "initial download by cloudsync (mount → all files on-premise, plain "
                "server)", "bare GETs, 1 / 4 threads (2000-file sample, median of 3)",
                "ratio cloudsync / bare (1 / 4 threads)",
                "`sync --now` as is, wall time incl. CLI (folder ETags, idle)",
                "unmount (folder-ETag mount)"], rows)
    s += ("\n\nThe bare walk is Python http.client, 8 threads, Depth-1 PROPFIND of every folder "
          "asking the same properties as cloudsync, parsing each answer for subfolders. The "
          "folder-ETag server keeps folder ETags cached and renews them on writes, as "
          "Nextcloud does (scripts/bench.d/sabre_server.php); tests/support/sabre/server.php "
          "hashes the whole subtree on every request, which costs about 1 s per PROPFIND of "
          "the root at 10k files, so it would measure the server, not the client.\n")
    return s


# ---------------------------------------------------------------------------------------------
# 4. cloud change → visible through the mount


def bench_visible(base, cfg):
    reps = cfg["vis_reps"]
    nfiles = cfg["vis_files"]
    out = []
    for folder_etags in (True, False):
        prof = "folder ETags" if folder_etags else "plain"
        tag = "vis-" + ("etags" if folder_etags else "plain")
        srv = DavServer(base, tag + "-server", folder_etags=folder_etags)
        populate(srv.data, nfiles)
        files = []
        for dp, _dn, fns in os.walk(srv.data):
            for fn in fns:
                files.append(os.path.relpath(os.path.join(dp, fn), srv.data))
        files.sort()
        for mode in ("interval", "now"):
            interval = "1s" if mode == "interval" else "1h"
            m = Mount(base, "%s-%s-mount" % (tag, mode), srv.url, pull_interval=interval)
            wait_for(lambda: count_files(m.onprem) >= nfiles, 600, 0.2, "the initial download")
            m.sync_wait()
            rng = random.Random(2)
            lat, nows = [], []
            for i in range(reps):
                rel = files[rng.randrange(len(files))]
                old = open(srv.disk(rel), "rb").read()
                new = (b"%08x" % rng.getrandbits(32)) + old[8:]
                if new == old:
                    new = b"X" + old[1:]
                time.sleep(rng.uniform(0.0, 1.0))  # any phase of the pull timer
                t0 = time.perf_counter()
                fd = os.open(srv.disk(rel), os.O_WRONLY)  # same size, in place, one write
                os.write(fd, new)
                os.close(fd)
                srv.changed_on_disk(rel)
                if mode == "now":
                    nows.append(m.sync_now())
                path = os.path.join(m.mnt, rel)
                end = t0 + 60
                while True:
                    with open(path, "rb") as f:
                        if f.read() == new:
                            break
                    if time.perf_counter() > end:
                        die("%s: the change to %s did not show within 60 s\n%s"
                            % (prof, rel, m.log_tail()))
                    time.sleep(0.02)
                lat.append(time.perf_counter() - t0)
            log("visible %s %s: p50 %s" % (prof, mode, fmt_s(pct(lat, 0.5))))
            out.append({"profile": prof, "mode": mode, "lat": lat, "nows": nows})
            m.unmount()
        srv.stop()
    return out


def report_visible(out, cfg):
    rows = []
    for r in out:
        lat = r["lat"]
        how = ("--pull-interval 1s" if r["mode"] == "interval"
               else "`sync --now` right after the change (--pull-interval 1h)")
        extra = ""
        if r["nows"]:
            ns = r["nows"]
            extra = "%s wall; its own pull: %s, %g requests, %d of %d reported the download" % (
                fmt_ms(median([p["wall"] for p in ns]) * 1000),
                fmt_ms(median([p["ms"] for p in ns])), median([p["requests"] for p in ns]),
                sum(1 for p in ns if p["downloaded"]), len(ns))
        rows.append([r["profile"], how, len(lat), fmt_s(pct(lat, 0.5)), fmt_s(pct(lat, 0.95)),
                     fmt_s(max(lat)), extra])
    s = ("### 4. Cloud change → visible through the mount (a file of a %d-file tree changed "
         "in place in the server's data directory; with folder ETags its folders get new "
         "ETags at once, as `occ files:scan` would give them; read back every 20 ms)\n\n"
         % cfg["vis_files"])
    s += table(["server", "how", "samples", "p50", "p95", "max", "`sync --now` (medians)"], rows)
    s += ("\n\nExpected with a 1 s interval: about half the interval plus one pull on "
          "average, at most the interval plus one pull.\n")
    return s


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="upload,latency,pull,visible")
    ap.add_argument("--pull-files", default=None)
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.runs < 1:
        die("--runs needs a positive number")
    only = [w.strip() for w in a.only.split(",") if w.strip()]
    for w in only:
        if w not in ("upload", "latency", "pull", "visible"):
            die("unknown section %r (upload, latency, pull, visible)" % w)
    cfg = {
        "runs": a.runs,
        "big_mib": 256 if a.quick else 1024,
        "small_n": 200 if a.quick else 1000,
        "lat_reps": 10 if a.quick else 20,
        "pull_files": [1000, 5000] if a.quick else [10000, 50000],
        "vis_reps": 10,
        "vis_files": 500 if a.quick else 1000,
    }
    if a.pull_files:
        try:
            cfg["pull_files"] = [int(x) for x in a.pull_files.split(",") if x.strip()]
        except ValueError:
            die("--pull-files takes numbers like 10000,50000")

    if not os.access(BUILT, os.X_OK):
        die("%s is missing: build it first with `cargo build --release`" % BUILT)
    if os.geteuid() != 0:
        die("run as root (FUSE mounts of the benchmark)")
    for tool in ("php", "curl", "getfattr", "fusermount3"):
        if not shutil.which(tool):
            die("%s is not installed (Debian: php-cli php-sabre-dav curl attr fuse3)" % tool)
    if not os.path.exists("/usr/share/php/Sabre/autoload.php"):
        die("SabreDAV is missing (Debian: php-sabre-dav)")
    if not os.path.exists(SERVER_PHP):
        die("%s is missing" % SERVER_PHP)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    os.makedirs(a.dir, exist_ok=True)
    base = tempfile.mkdtemp(prefix="cloudsync-syncbench-", dir=a.dir)
    CLEANUP.push("temp dir", lambda: shutil.rmtree(base, ignore_errors=True))
    log("working in %s" % base)
    global BIN
    BIN = os.path.join(base, "cloudsync")
    shutil.copy2(BUILT, BIN)
    built_at = time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(BUILT)))
    head = subprocess.run(["git", "-C", REPO, "log", "-1", "--format=%h"], text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.strip()

    started = time.perf_counter()
    parts = []
    try:
        ver = run([BIN, "--version"], check=False).stdout.strip()
        parts.append(
            "## cloudsync sync benchmarks%s\n\n%s (target/release/cloudsync built %s; git HEAD "
            "%s), run %s; %d CPUs; SabreDAV %s under `php -S` with 4 workers on 127.0.0.1. "
            "Medians and percentiles over repetitions; --runs %d.\n"
            % (" (--quick)" if a.quick else "", ver or "cloudsync", built_at, head or "?",
               time.strftime("%Y-%m-%d %H:%M"), os.cpu_count(), sabre_version(), a.runs))
        if "upload" in only:
            parts.append(report_upload(bench_upload(base, cfg), cfg))
        if "latency" in only:
            parts.append(report_latency(bench_latency(base, cfg), cfg))
        if "pull" in only:
            parts.append(report_pull(bench_pull(base, cfg), cfg))
        if "visible" in only:
            parts.append(report_visible(bench_visible(base, cfg), cfg))
    finally:
        CLEANUP.run()
    for k, (n, mounts) in sorted(LOG_PROBLEMS.items(), key=lambda kv: -kv[1][0]):
        NOTES.append("daemon log: %d × `%s` (in %d of the mounts: %s)"
                     % (n, k, len(mounts), ", ".join(sorted(mounts))))
    if NOTES:
        parts.append("### Notes and misbehaviour seen\n\n" + "\n".join("- " + n for n in NOTES)
                     + "\n")
    parts.append("Total time: %.0f s.\n" % (time.perf_counter() - started))
    report = "\n".join(parts)
    print(report)
    if a.out:
        with open(a.out, "w") as f:
            f.write(report)


def sabre_version():
    try:
        with open("/usr/share/php/Sabre/DAV/Version.php") as f:
            m = re.search(r"VERSION\s*=\s*'([^']+)'", f.read())
            return m.group(1) if m else "?"
    except OSError:
        return "?"


if __name__ == "__main__":
    main()
