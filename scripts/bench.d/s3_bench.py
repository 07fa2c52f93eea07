#!/usr/bin/env python3
"""S3 benchmarks for cloudsync against SeaweedFS (standard library only).

    python3 scripts/bench.d/s3_bench.py [--quick] [--runs N] [--objects N] [--dir DIR]
                                        [--only PARTS] [--bin FILE] [--out FILE]

  --quick        small sizes, a smoke test (a few minutes)
  --runs N       repetitions of each measurement (default 3); medians are reported
  --objects N    objects for the idle pulls (default 100000; 2000 with --quick); the first
                 download is timed on 10000 more (as many with --quick)
  --dir DIR      where the temporary folders go (default /var/tmp)
  --only PARTS   some parts only, comma-separated: big, small (the two uploads; `upload` is
                 both) and pull (default: all)
  --bin FILE     the cloudsync binary to measure (default target/release/cloudsync)
  --out FILE     also write the report to FILE

One SeaweedFS cluster (master, two volume servers, filer, S3 gateway with a SigV4 identity) on
free loopback ports, from target/venv/bin/weed (scripts/test installs it), a bucket per section.
Each measurement runs cloudsync, `rclone` (Debian's, with its S3 client) and the bare store
(`curl --aws-sigv4`) on the same data, in one run:
  upload   one 1 GiB file (256 MiB with --quick) written through the mount with pushing
           paused, timed from `cloudsync resume --push` until `cloudsync sync --wait` returns,
           against one `curl --aws-sigv4 -T` PUT and `rclone copyto`; and 1000 files of 4 KiB
           (200 with --quick) the same way, against `rclone copy` of the folder (4 transfers,
           its default) and one curl process sending them one after another.
  pull     objects put in the bucket by rclone; a fresh mount on an empty folder each run:
           the first download of 10k (`cloudsync sync --now`, mount to all on-premise),
           against `rclone copy` of the same prefix; then, on one mount of N objects, idle
           pulls (`sync --now` with the background puller paused, so exactly one pull runs)
           against one bare paginated ListObjectsV2 of the prefix by curl.

Times are medians over repetitions. The script builds nothing: it needs
target/release/cloudsync (cargo build --release; a private copy is used), target/venv/bin/weed,
rclone, curl, attr, fuse3 and root. Mounts, daemons, the store and temporary folders are
removed on exit, on failure and on Ctrl-C.
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sync_bench as sb  # noqa: E402  (shared helpers: mounts, cleanup, tables)

KEY = "cloudsync-bench-key"
SECRET = "cloudsync-bench-secret-0123456789"
REGION = "us-east-1"
WEED = os.path.join(sb.REPO, "target", "venv", "bin", "weed")


class Seaweed:
    """A small SeaweedFS cluster with its S3 gateway, in its own process group."""

    def __init__(self, base):
        self.dir = os.path.join(base, "seaweed")
        for d in ("m", "v1", "v2", "f"):
            os.makedirs(os.path.join(self.dir, d))
        with open(os.path.join(self.dir, "s3.json"), "w") as f:
            f.write('{"identities":[{"name":"bench","credentials":[{"accessKey":"%s",'
                    '"secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}'
                    % (KEY, SECRET))
        ip = "127.0.0.1"
        p = {k: sb.free_port() for k in ("m", "mg", "v1", "v1g", "v2", "v2g", "f", "fg",
                                         "s", "sg")}
        w = WEED
        script = (
            f"{w} master -ip={ip} -ip.bind={ip} -port={p['m']} -port.grpc={p['mg']} -mdir=m "
            f"-volumeSizeLimitMB=256 -defaultReplication=000 -telemetry=false -peers=none &\n"
            f"{w} volume -ip={ip} -ip.bind={ip} -port={p['v1']} -port.grpc={p['v1g']} -dir=v1 "
            f"-max=40 -master={ip}:{p['m']}.{p['mg']} -minFreeSpace=1 &\n"
            f"{w} volume -ip={ip} -ip.bind={ip} -port={p['v2']} -port.grpc={p['v2g']} -dir=v2 "
            f"-max=40 -master={ip}:{p['m']}.{p['mg']} -minFreeSpace=1 &\n"
            f"{w} filer -ip={ip} -ip.bind={ip} -port={p['f']} -port.grpc={p['fg']} "
            f"-master={ip}:{p['m']}.{p['mg']} -defaultStoreDir=f &\n"
            f"sleep 3\n"
            f"{w} s3 -filer={ip}:{p['f']}.{p['fg']} -ip.bind={ip} -port={p['s']} "
            f"-port.grpc={p['sg']} -port.iceberg=0 -port.lance=0 -config=s3.json &\n"
            f"wait\n")
        with open(os.path.join(self.dir, "run.sh"), "w") as f:
            f.write(script)
        self.log = open(os.path.join(self.dir, "store.log"), "ab")
        self.proc = subprocess.Popen(["sh", "run.sh"], cwd=self.dir, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log, start_new_session=True)
        sb.CLEANUP.push("seaweedfs", self.stop)
        self.endpoint = "http://%s:%d" % (ip, p["s"])
        deadline = time.monotonic() + 120
        seen = None
        while True:
            made = self.curl(["-X", "PUT", "%s/ready-probe" % self.endpoint])
            probe = os.path.join(self.dir, "probe.txt")
            with open(probe, "w") as f:
                f.write("x")
            put = self.curl(["-T", probe, self.endpoint + "/ready-probe/x"],
                            out=os.path.join(self.dir, "probe.out"))
            seen = (made, put)
            if made in (200, 409) and put == 200:
                break
            if time.monotonic() > deadline or self.proc.poll() is not None:
                with open(os.path.join(self.dir, "store.log"), errors="replace") as f:
                    try:
                        answer = open(os.path.join(self.dir, "probe.out")).read()[:500]
                    except OSError:
                        answer = ""
                    sb.die("SeaweedFS did not come up at %s (bucket %s, put %s %s):\n%s"
                           % (self.endpoint, seen[0], seen[1], answer, f.read()[-1500:]))
            time.sleep(0.5)

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def curl(self, args, out=os.devnull):
        """One signed request; returns the HTTP status (0 when there was no answer)."""
        p = subprocess.run(
            ["curl", "-s", "-o", out, "-w", "%{http_code}", "--aws-sigv4",
             "aws:amz:%s:s3" % REGION, "--user", "%s:%s" % (KEY, SECRET)] + args,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            stdin=subprocess.DEVNULL)
        try:
            return int(p.stdout.strip() or 0)
        except ValueError:
            return 0

    def make_bucket(self, name):
        return self.curl(["-X", "PUT", "%s/%s" % (self.endpoint, name)]) in (200, 409)

    def rclone(self, *args, timeout=3600):
        """rclone with the store as the on-the-fly remote `:s3:`, keys in its environment."""
        env = dict(os.environ, RCLONE_S3_PROVIDER="SeaweedFS", RCLONE_S3_ENDPOINT=self.endpoint,
                   RCLONE_S3_ACCESS_KEY_ID=KEY, RCLONE_S3_SECRET_ACCESS_KEY=SECRET,
                   RCLONE_S3_REGION=REGION, RCLONE_S3_FORCE_PATH_STYLE="true",
                   RCLONE_CONFIG="/dev/null")
        # A custom CA bundle of the environment breaks rclone's S3 client over plain HTTP.
        env.pop("AWS_CA_BUNDLE", None)
        t = time.perf_counter()
        p = subprocess.run(["rclone", "--retries", "1"] + list(args), env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            sb.die("rclone %s: exit %d\n%s" % (" ".join(args), p.returncode, p.stderr[-2000:]))
        return time.perf_counter() - t

    def list_all(self, bucket, prefix):
        """One bare paginated ListObjectsV2 of `prefix` (no delimiter): (seconds, requests)."""
        t = time.perf_counter()
        token, requests = None, 0
        out = os.path.join(self.dir, "list.xml")
        while True:
            # Parameters in canonical (sorted) order, as SigV4 signs them.
            q = "list-type=2&max-keys=1000&prefix=" + sb.urllib.parse.quote(prefix, safe="")
            if token:
                q = ("continuation-token=" + sb.urllib.parse.quote(token, safe="") + "&" + q)
            st = self.curl(["%s/%s?%s" % (self.endpoint, bucket, q)], out=out)
            requests += 1
            if st != 200:
                with open(out, errors="replace") as f:
                    sb.die("bare ListObjectsV2 answered %d: %s" % (st, f.read()[:400]))
            with open(out) as f:
                body = f.read()
            m = re.search(r"<NextContinuationToken>([^<]+)</NextContinuationToken>", body)
            if "<IsTruncated>true</IsTruncated>" not in body or not m:
                break
            token = m.group(1)
        return time.perf_counter() - t, requests


class S3Mount(sb.Mount):
    def __init__(self, base, name, store, bucket, prefix, creds, **kw):
        super().__init__(base, name, "s3://%s/%s/" % (bucket, prefix), extra=[
            "--s3-endpoint", store.endpoint, "--s3-region", REGION,
            "--credentials-file", creds], **kw)


def bench_upload(base, store, creds, cfg):
    big = cfg["big_mib"] << 20
    n = cfg["small_n"]
    src = os.path.join(base, "src")
    os.makedirs(os.path.join(src, "small"), exist_ok=True)
    big_src = os.path.join(src, "big.bin")
    if cfg["big"]:
        with open(big_src, "wb") as f:
            chunk = os.urandom(8 << 20)
            for _ in range(big // len(chunk)):
                f.write(chunk)
    for i in range(n):
        sb.write_file(os.path.join(src, "small", "f%04d.bin" % i), os.urandom(4096))
    res = {"cs_big": [], "curl_big": [], "rc_big": [], "cs_small": [], "curl_small": [],
           "rc_small": []}

    for r in range(cfg["runs"]):
        bucket = "up%d" % r
        if not store.make_bucket(bucket):
            sb.die("cannot make the bucket " + bucket)
        m = S3Mount(base, "up%d" % r, store, bucket, "cs", creds, push_delay="0s")
        run = subprocess.run
        if cfg["big"]:
            # The big file: written with pushing paused, timed from the resume.
            run([sb.BIN, "pause", "--push", m.mnt], check=True, stdout=subprocess.DEVNULL)
            sb.copy_file(big_src, os.path.join(m.mnt, "big.bin"))
            t = time.perf_counter()
            run([sb.BIN, "resume", "--push", m.mnt], check=True, stdout=subprocess.DEVNULL)
            m.sync_wait()
            res["cs_big"].append(big / (time.perf_counter() - t))
        if cfg["small"]:
            # The small files, the same way.
            run([sb.BIN, "pause", "--push", m.mnt], check=True, stdout=subprocess.DEVNULL)
            os.makedirs(os.path.join(m.mnt, "small"))
            for name in sorted(os.listdir(os.path.join(src, "small"))):
                shutil.copyfile(os.path.join(src, "small", name),
                                os.path.join(m.mnt, "small", name))
            t = time.perf_counter()
            run([sb.BIN, "resume", "--push", m.mnt], check=True, stdout=subprocess.DEVNULL)
            m.sync_wait()
            res["cs_small"].append(n / (time.perf_counter() - t))
        m.unmount()
        # The bare store: one PUT, then one curl process for the small files.
        if cfg["big"]:
            t = time.perf_counter()
            st = store.curl(["-T", big_src, "%s/%s/bare/big.bin" % (store.endpoint, bucket)])
            if st != 200:
                sb.die("curl PUT of the big file answered %d" % st)
            res["curl_big"].append(big / (time.perf_counter() - t))
            res["rc_big"].append(
                big / store.rclone("copyto", big_src, ":s3:%s/rc/big.bin" % bucket))
        if not cfg["small"]:
            continue
        args = []
        for name in sorted(os.listdir(os.path.join(src, "small"))):
            args += ["-T", os.path.join(src, "small", name),
                     "%s/%s/bare/small/%s" % (store.endpoint, bucket, name)]
        t = time.perf_counter()
        p = subprocess.run(["curl", "-s", "-f", "-o", "/dev/null", "--aws-sigv4",
                            "aws:amz:%s:s3" % REGION, "--user", "%s:%s" % (KEY, SECRET)] + args,
                           stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            sb.die("curl PUT of the small files failed (%d)" % p.returncode)
        res["curl_small"].append(n / (time.perf_counter() - t))
        res["rc_small"].append(
            n / store.rclone("copy", os.path.join(src, "small"), ":s3:%s/rc/small" % bucket))
    return res


def report_upload(res, cfg):
    med = {k: sb.median(v) for k, v in res.items() if v}
    mib = lambda x: "%.0f MiB/s" % (x / (1 << 20))  # noqa: E731
    fps = lambda x: "%.0f files/s" % x  # noqa: E731
    rows = []
    if cfg["big"]:
        rows.append(
        ["upload %d MiB, resume → synced" % cfg["big_mib"], mib(med["cs_big"]),
         "%s (%.2f×)" % (mib(med["curl_big"]), med["cs_big"] / med["curl_big"]),
         "%s (%.2f×)" % (mib(med["rc_big"]), med["cs_big"] / med["rc_big"]),
         "≥ 0.9× bare store: %s" % ("met" if med["cs_big"] >= 0.9 * med["curl_big"]
                                    else "**missed**")])
    if cfg["small"]:
        rows.append(
        ["upload %d × 4 KiB, resume → synced" % cfg["small_n"], fps(med["cs_small"]),
         "%s (%.2f×)" % (fps(med["curl_small"]), med["cs_small"] / med["curl_small"]),
         "%s (%.2f×)" % (fps(med["rc_small"]), med["cs_small"] / med["rc_small"]),
         "≥ 2× rclone: %s" % ("met" if med["cs_small"] >= 2 * med["rc_small"]
                              else "**missed**")])
    return ("### Uploads to SeaweedFS (medians of %d runs)\n\n" % cfg["runs"]
            + sb.table(["measurement", "cloudsync", "bare store (curl --aws-sigv4)",
                        "rclone", "target"], rows) + "\n")


def bench_pull(base, store, creds, cfg):
    n = cfg["objects"]
    ten = min(n, 10000)
    bucket = "pull"
    if not store.make_bucket(bucket):
        sb.die("cannot make the bucket " + bucket)
    for prefix, count in (("ten", ten), ("all", n)):
        tree = os.path.join(base, "tree-" + prefix)
        sb.log("putting %d objects under %s/" % (count, prefix))
        sb.populate(tree, count)
        store.rclone("copy", tree, ":s3:%s/%s" % (bucket, prefix), "--transfers", "16")
        shutil.rmtree(tree, ignore_errors=True)
    res = {"first": [], "rc_first": [], "idle": [], "idle_req": [], "bare": [], "bare_req": []}
    # The first download of the 10k: a fresh mount on an empty folder each run, beside rclone.
    for r in range(cfg["runs"]):
        m = S3Mount(base, "first%d" % r, store, bucket, "ten", creds, pull_interval="1h")
        m.pause_pull(True)
        s = m.sync_now()
        got = sb.count_files(m.onprem)
        if got < ten:
            sb.die("the first download brought %d of %d files" % (got, ten))
        res["first"].append(ten / s["wall"])
        m.unmount()
        shutil.rmtree(m.dir, ignore_errors=True)
        dest = os.path.join(base, "rc-dl%d" % r)
        res["rc_first"].append(ten / store.rclone("copy", ":s3:%s/ten" % bucket, dest))
        shutil.rmtree(dest, ignore_errors=True)
    # Idle pulls over all N: downloaded once, then exactly one pull per measurement, each
    # beside one bare listing of the same prefix.
    m = S3Mount(base, "idle", store, bucket, "all", creds, pull_interval="1h")
    m.pause_pull(True)
    sb.log("first download of %d objects for the idle pulls" % n)
    m.sync_now()
    for _ in range(max(cfg["runs"], 5)):
        s = m.sync_now()
        res["idle"].append(s["ms"] / 1000)
        res["idle_req"].append(s["requests"])
        secs, req = store.list_all(bucket, "all/")
        res["bare"].append(secs)
        res["bare_req"].append(req)
    m.pause_pull(False)
    m.unmount()
    res["n"] = n
    res["ten"] = ten
    return res


def report_pull(res, cfg):
    med = {k: sb.median(v) for k, v in res.items() if isinstance(v, list)}
    n = res["n"]
    rows = [
        ["first download of %d objects (mount → all on-premise)" % res["ten"],
         "%.0f files/s" % med["first"], "",
         "%.0f files/s (%.2f×)" % (med["rc_first"], med["first"] / med["rc_first"]), ""],
        ["idle pull over %d objects" % n,
         "%s, %d requests" % (sb.fmt_s(med["idle"]), med["idle_req"]),
         "%s, %d requests (%.2f×)" % (sb.fmt_s(med["bare"]), med["bare_req"],
                                     med["idle"] / med["bare"]),
         "", "under 2 s at 100k: %s" % (
             "met" if med["idle"] < 2 else "**missed**") if n >= 100000 else "(100k: --objects)"],
    ]
    return ("### Pulls from SeaweedFS (medians of %d runs)\n\n" % cfg["runs"]
            + sb.table(["measurement", "cloudsync", "bare ListObjectsV2 (curl)", "rclone",
                        "target"], rows) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--objects", type=int, default=None)
    ap.add_argument("--only", default="big,small,pull")
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--out", default=None)
    ap.add_argument("--bin", default=None)
    a = ap.parse_args()
    if a.bin:
        sb.BUILT = os.path.abspath(a.bin)
    if a.runs < 1:
        sb.die("--runs needs a positive number")
    cfg = {
        "runs": a.runs,
        "big_mib": 256 if a.quick else 1024,
        "small_n": 200 if a.quick else 1000,
        "objects": a.objects or (2000 if a.quick else 100000),
    }
    if not os.access(sb.BUILT, os.X_OK):
        sb.die("%s is missing: build it first with `cargo build --release`" % sb.BUILT)
    if not os.access(WEED, os.X_OK):
        sb.die("%s is missing: run scripts/test once (it installs the S3 test stores)" % WEED)
    if os.geteuid() != 0:
        sb.die("run as root (FUSE mounts of the benchmark)")
    for tool in ("curl", "rclone", "getfattr", "fusermount3"):
        if not shutil.which(tool):
            sb.die("%s is not installed (Debian: curl rclone attr fuse3)" % tool)
    signal.signal(signal.SIGINT, sb.on_signal)
    signal.signal(signal.SIGTERM, sb.on_signal)
    os.makedirs(a.dir, exist_ok=True)
    base = tempfile.mkdtemp(prefix="cloudsync-s3bench-", dir=a.dir)
    sb.CLEANUP.push("temp dir", lambda: shutil.rmtree(base, ignore_errors=True))
    sb.BIN = os.path.join(base, "cloudsync")
    shutil.copy2(sb.BUILT, sb.BIN)
    creds = os.path.join(base, "credentials")
    fd = os.open(creds, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, ("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n"
                  % (KEY, SECRET)).encode())
    os.close(fd)
    head = subprocess.run(["git", "-C", sb.REPO, "log", "-1", "--format=%h"], text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.strip()
    started = time.perf_counter()
    parts = []
    try:
        ver = subprocess.run([sb.BIN, "--version"], stdout=subprocess.PIPE, text=True).stdout
        weed = subprocess.run([WEED, "version"], stdout=subprocess.PIPE, text=True).stdout
        parts.append("## cloudsync S3 benchmarks%s\n\n%s (git HEAD %s), run %s; %d CPUs; %s; "
                     "load average at the start %s; --runs %d.\n"
                     % (" (--quick)" if a.quick else "", ver.strip(), head or "?",
                        time.strftime("%Y-%m-%d %H:%M"), os.cpu_count(),
                        " ".join(weed.split()[:3]) or "SeaweedFS",
                        open("/proc/loadavg").read().split()[0], a.runs))
        only = [w.strip() for w in a.only.split(",") if w.strip()]
        for w in only:
            if w not in ("big", "small", "upload", "pull"):
                sb.die("unknown part %r: big, small, upload or pull" % w)
        cfg["big"] = "big" in only or "upload" in only
        cfg["small"] = "small" in only or "upload" in only
        store = Seaweed(base)
        if cfg["big"] or cfg["small"]:
            parts.append(report_upload(bench_upload(base, store, creds, cfg), cfg))
        if "pull" in only:
            parts.append(report_pull(bench_pull(base, store, creds, cfg), cfg))
    finally:
        sb.CLEANUP.run()
    if sb.NOTES:
        parts.append("### Notes\n\n" + "\n".join("- " + n for n in sb.NOTES) + "\n")
    parts.append("Total time: %.0f s; load average at the end %s.\n"
                 % (time.perf_counter() - started, open("/proc/loadavg").read().split()[0]))
    report = "\n".join(parts)
    print(report)
    if a.out:
        with open(a.out, "w") as f:
            f.write(report)


if __name__ == "__main__":
    main()
