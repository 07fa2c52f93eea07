#!/usr/bin/env python3
"""Helpers for scripts/bench (standard library only).

Subcommands:
  smallfiles DIR N            create, stat, read and unlink N small files in DIR; print
                              "create=S stat=S read=S unlink=S" (seconds)
  gentree TAR N               write a deterministic tarball of N small files (about 110 folders)
  mkfiles DIR N               create N tiny files in DIR (100 per folder), for the journal test
  settle-cloudsync MNT SECS [STATE_DIR]
                              wait until user.cloudsync.status of MNT reads "synced" twice in a
                              row; print the seconds waited; exit 1 on timeout, 2 when the root
                              stays failed/conflict with nothing queued in the journal, 3 when
                              the mount's daemon is gone (printing the last status after the
                              seconds)
  settle-rclone URL SECS      wait until rclone's vfs/stats shows no upload queued or running;
                              same output and exit codes (3: rc refuses connections)
  freeport                    print a free TCP port on 127.0.0.1
  report TSV RUNS QUICK       print the markdown report of the results file
"""

import errno
import io
import json
import os
import random
import socket
import statistics
import sys
import tarfile
import time
import urllib.request

SMALL_SIZE = 1024  # bytes per file in the small-files workload


def smallfiles(d, n):
    os.makedirs(d, exist_ok=True)
    names = [os.path.join(d, "f%05d.dat" % i) for i in range(n)]
    payload = bytes(random.Random(7).getrandbits(8) for _ in range(SMALL_SIZE))
    times = {}

    t = time.perf_counter()
    for p in names:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, payload)
        os.close(fd)
    times["create"] = time.perf_counter() - t

    t = time.perf_counter()
    for p in names:
        st = os.stat(p)
        if st.st_size != SMALL_SIZE:
            sys.exit("smallfiles: %s has size %d, not %d" % (p, st.st_size, SMALL_SIZE))
    times["stat"] = time.perf_counter() - t

    t = time.perf_counter()
    for p in names:
        fd = os.open(p, os.O_RDONLY)
        data = os.read(fd, SMALL_SIZE + 1)
        os.close(fd)
        if data != payload:
            sys.exit("smallfiles: %s reads back %d wrong bytes" % (p, len(data)))
    times["read"] = time.perf_counter() - t

    t = time.perf_counter()
    for p in names:
        os.unlink(p)
    times["unlink"] = time.perf_counter() - t

    os.rmdir(d)
    print(" ".join("%s=%.6f" % (k, v) for k, v in times.items()))


def gentree(tar_path, n):
    """N files in pkgNN/modNN/, sizes 64 B .. 32 KiB (most a few KiB), fixed content and
    times, so every run and every machine extracts the same bytes."""
    rng = random.Random(20240601)
    per_dir = 100
    dirs_per_pkg = 10
    mtime = 1700000000
    with tarfile.open(tar_path, "w", format=tarfile.GNU_FORMAT) as tf:
        made = set()

        def add_dir(name):
            if name in made:
                return
            ti = tarfile.TarInfo(name)
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
            ti.mtime = mtime
            tf.addfile(ti)
            made.add(name)

        add_dir("tree")
        for i in range(n):
            d = i // per_dir
            pkg = "tree/pkg%02d" % (d // dirs_per_pkg)
            mod = "%s/mod%02d" % (pkg, d % dirs_per_pkg)
            add_dir(pkg)
            add_dir(mod)
            size = int(min(32768, max(64, rng.lognormvariate(7.8, 1.0))))
            # Text-like content: hex of pseudo-random bytes, in lines.
            raw = rng.randbytes((size + 1) // 2).hex()[:size]
            data = "\n".join(raw[j:j + 79] for j in range(0, len(raw), 80)).encode()
            ti = tarfile.TarInfo("%s/file%05d.txt" % (mod, i))
            ti.size = len(data)
            ti.mode = 0o644
            ti.mtime = mtime
            tf.addfile(ti, io.BytesIO(data))


def mkfiles(d, n):
    per_dir = 100
    for i in range(n):
        sub = os.path.join(d, "d%04d" % (i // per_dir))
        if i % per_dir == 0:
            os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, "f%03d.txt" % (i % per_dir)), "w") as f:
            f.write("%d\n" % i)


def settle(check, timeout):
    """Polls check() -> (state, text) every 0.1 s; state is "done", "busy", "stuck" (a final
    state that is not success) or "gone" (the daemon is not there). Returns once it reads
    "done" twice in a row (exit 0), "stuck" for 3 s (exit 2), "gone" for 3 s (exit 3), or at
    the timeout (exit 1). Prints the seconds waited, then the last text when not done."""
    t0 = time.monotonic()
    run_state, run_since, last = None, t0, ""
    n_in_row = 0
    while True:
        try:
            state, last = check()
        except OSError as e:
            gone = isinstance(e, ConnectionRefusedError) or e.errno == errno.ENOTCONN or (
                isinstance(getattr(e, "reason", None), ConnectionRefusedError))
            state, last = ("gone" if gone else "busy"), str(e)
        now = time.monotonic()
        if state != run_state:
            run_state, run_since, n_in_row = state, now, 0
        n_in_row += 1
        if state == "done" and n_in_row >= 2:
            print("%.3f" % (run_since - t0))
            return 0
        if state in ("stuck", "gone") and now - run_since >= 3:
            print("%.3f %s" % (run_since - t0, last))
            return 2 if state == "stuck" else 3
        if now - t0 > timeout:
            print("%.3f %s" % (now - t0, last))
            return 1
        time.sleep(0.1)


def journal_queue(state_dir):
    """(pending, failed, examples of failed entries) in cloudsync's journal queue, or None when
    it cannot be read (the daemon's schema is its own business; this is only for reports)."""
    import sqlite3
    db = os.path.join(state_dir, "journal.db")
    try:
        c = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=2)
        try:
            rows = dict(c.execute("SELECT state, count(*) FROM queue GROUP BY state").fetchall())
            try:
                ex = c.execute("SELECT op, path, coalesce(failure, ''), coalesce(last_error, '') "
                               "FROM queue WHERE state != 'pending' ORDER BY id LIMIT 3").fetchall()
            except sqlite3.Error:
                ex = []
        finally:
            c.close()
    except Exception:
        return None
    failed = sum(v for k, v in rows.items() if k != "pending")
    return rows.get("pending", 0), failed, ["%s %s: %s %s" % e for e in ex]


BUSY = ("pending", "uploading", "downloading", "offline")


def settle_cloudsync(mnt, timeout, state_dir=None):
    def check():
        s = os.getxattr(mnt, "user.cloudsync.status").decode(errors="replace")
        if s == "synced":
            return "done", s
        if s in BUSY:
            return "busy", s
        # failed, conflict...: the root's summary may hide work still queued below it, so ask
        # the journal when it can be read.
        q = journal_queue(state_dir) if state_dir else None
        if q is None:
            return "stuck", "root status %s" % s
        pending, failed, examples = q
        if pending:
            return "busy", "root status %s, %d queued" % (s, pending)
        return "stuck", "root status %s, %d failed entries in the queue%s" % (
            s, failed, (", e.g. " + "; ".join(examples)) if examples else "")

    return settle(check, timeout)


def settle_rclone(url, timeout):
    def check():
        req = urllib.request.Request(url.rstrip("/") + "/vfs/stats", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            st = json.load(r)
        dc = st.get("diskCache", {})
        busy = dc.get("uploadsInProgress", 0) + dc.get("uploadsQueued", 0)
        return ("done" if busy == 0 else "busy"), "uploads in progress/queued: %d" % busy

    return settle(check, timeout)


def freeport():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()


# ---------------------------------------------------------------- report

SYSTEMS = ["native", "cloudsync", "rclone"]

# Workload titles and the order of their rows.
TITLES = {
    "seq": "Sequential I/O",
    "small": "Small files",
    "tar": "Source tree: tar x, then ls -lR",
    "rss": "Daemon memory with a large journal",
    "lsbig": "Listing the journal test's tree (after the memory test, 1 run)",
}


def fmt(v, unit="s"):
    if v is None:
        return "—"
    if unit == "MiB":
        return "%.1f" % v
    if unit in ("files", "count"):
        return "%d" % v
    if v >= 100:
        return "%.0f" % v
    if v >= 10:
        return "%.1f" % v
    if v >= 1:
        return "%.2f" % v
    return "%.3f" % v


def ratio(a, b):
    if a is None or b is None or b <= 0:
        return None
    return a / b


def fmt_ratio(r):
    if r is None:
        return "—"
    return ("%.2f×" if r >= 0.1 else "%.3f×") % r


def check_target(target, vals):
    """target: list of (kind, threshold); kind 'native' (native/cs >= t), 'rclone'
    (rclone/cs >= t) or 'max' (cs value < t). Returns (text, verdict)."""
    if not target:
        return "", ""
    texts, ok = [], True
    native, cs, rc = vals.get("native"), vals.get("cloudsync"), vals.get("rclone")
    for kind, t in target:
        if kind == "native":
            texts.append("≥ %.1f× native" % t)
            r = ratio(native, cs)
            ok = ok and r is not None and r >= t
        elif kind == "rclone":
            texts.append("≥ %g× rclone" % t)
            r = ratio(rc, cs)
            ok = ok and r is not None and r >= t
        elif kind == "max":
            texts.append("< %g MiB" % t)
            ok = ok and cs is not None and cs < t
    return ", ".join(texts), ("met" if ok else "**missed**")


def report(tsv, runs, quick):
    rows = {}  # (workload, metric) -> {"unit", "target", "order", "vals": {system: [v]}}
    notes = []
    order = 0
    with open(tsv) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if parts[0] == "note":
                notes.append(parts[1])
                continue
            if parts[0] == "meta":
                # meta WORKLOAD METRIC UNIT TARGET
                _, wl, metric, unit, target = parts
                key = (wl, metric)
                if key not in rows:
                    order += 1
                    rows[key] = {"unit": unit, "target": target, "order": order, "vals": {}}
                continue
            wl, metric, system, _run, value = parts
            key = (wl, metric)
            if key not in rows:
                order += 1
                rows[key] = {"unit": "s", "target": "", "order": order, "vals": {}}
            rows[key]["vals"].setdefault(system, []).append(float(value))

    def parse_target(t):
        out = []
        for part in filter(None, t.split(",")):
            kind, val = part.split(":")
            out.append((kind, float(val)))
        return out

    out = []
    out.append("Runs per measurement: %s (median shown)%s." % (
        runs, ", quick mode: small sizes, a smoke test only" if quick == "1" else ""))
    out.append("Ratios are throughput relative to native (native time ÷ time: 1.00 = native "
               "speed, higher is better); *cs vs rclone* is rclone time ÷ cloudsync time.")
    out.append("")
    raw = []
    for wl in TITLES:
        keys = sorted((k for k in rows if k[0] == wl), key=lambda k: rows[k]["order"])
        if not keys:
            continue
        out.append("### " + TITLES[wl])
        out.append("")
        if wl == "rss":
            out.append("| measurement | native | cloudsync | rclone | target | verdict |")
            out.append("|---|---:|---:|---:|---|---|")
        else:
            out.append("| measurement | native s | cloudsync s | rclone s | cloudsync ×native "
                       "| rclone ×native | cs vs rclone | target | verdict |")
            out.append("|---|---:|---:|---:|---:|---:|---:|---|---|")
        for k in keys:
            r = rows[k]
            med = {s: (statistics.median(v) if v else None) for s, v in r["vals"].items()}
            if any(len(v) > 1 for v in r["vals"].values()):
                raw.append("%s: %s" % (k[1], " | ".join(
                    "%s %s" % (s, " ".join(fmt(x, r["unit"]) for x in r["vals"][s]))
                    for s in SYSTEMS if s in r["vals"])))
            ttext, verdict = check_target(parse_target(r["target"]), med)
            unit = r["unit"]
            if wl == "rss" or unit != "s":
                label = k[1] + (" (s)" if unit == "s" else "")
                out.append("| %s | %s | %s | %s | %s | %s |" % (
                    label, fmt(med.get("native"), unit), fmt(med.get("cloudsync"), unit),
                    fmt(med.get("rclone"), unit), ttext, verdict))
            else:
                n, c, rc = med.get("native"), med.get("cloudsync"), med.get("rclone")
                out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    k[1], fmt(n), fmt(c), fmt(rc), fmt_ratio(ratio(n, c)),
                    fmt_ratio(ratio(n, rc)), fmt_ratio(ratio(rc, c)), ttext, verdict))
        out.append("")
    if raw:
        out.append("<details><summary>All runs, in run order</summary>")
        out.append("")
        out.extend("    " + x for x in raw)
        out.append("")
        out.append("</details>")
        out.append("")
    if notes:
        out.append("Notes from this run:")
        out.append("")
        counts = {}
        for n in notes:
            counts[n] = counts.get(n, 0) + 1
        out.extend("- " + n + (" (%d times)" % c if c > 1 else "") for n, c in counts.items())
        out.append("")
    print("\n".join(out))


def main():
    a = sys.argv[1:]
    if not a:
        sys.exit(__doc__)
    cmd = a[0]
    if cmd == "smallfiles":
        smallfiles(a[1], int(a[2]))
    elif cmd == "gentree":
        gentree(a[1], int(a[2]))
    elif cmd == "mkfiles":
        mkfiles(a[1], int(a[2]))
    elif cmd == "settle-cloudsync":
        sys.exit(settle_cloudsync(a[1], float(a[2]), a[3] if len(a) > 3 else None))
    elif cmd == "settle-rclone":
        sys.exit(settle_rclone(a[1], float(a[2])))
    elif cmd == "freeport":
        freeport()
    elif cmd == "report":
        report(a[1], a[2], a[3])
    else:
        sys.exit("unknown subcommand %s\n%s" % (cmd, __doc__))


if __name__ == "__main__":
    main()
