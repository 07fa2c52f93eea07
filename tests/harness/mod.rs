//! Test harness for real mounts: starts the `cloudsync` binary on temp folders, waits for the
//! mount, and always unmounts and kills the daemon on drop, even when a test panics.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cloudsync"))
}

/// True when `path` is a mount point.
pub fn is_mounted(path: &Path) -> bool {
    let want = path.to_string_lossy().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// Reads an xattr, `None` when absent.
pub fn xattr(path: &Path, name: &str) -> Option<String> {
    let out = Command::new("getfattr")
        .args(["--only-values", "--absolute-names", "-n", name])
        .arg(path)
        .output()
        .expect("getfattr (package attr)");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).to_string())
}

/// Polls `f` until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        if t.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A mounted cloudsync with a `file://` cloud, all in one temp dir.
pub struct Mount {
    /// Keeps the folders alive.
    pub tmp: tempfile::TempDir,
    /// The on-premise folder.
    pub onprem: PathBuf,
    /// The mount point.
    pub mnt: PathBuf,
    /// The cloud folder.
    pub cloud: PathBuf,
    /// The state dir.
    pub state: PathBuf,
    /// The daemon's stderr.
    pub log: PathBuf,
    /// Extra flags.
    pub extra: Vec<String>,
    /// The cloud URL.
    pub cloud_url: String,
    /// Extra environment for the daemon (say, `CLOUDSYNC_PASSWORD`).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Mount {
    /// Mounts with a 300 ms push delay and `extra` flags.
    pub fn start(extra: &[&str]) -> Mount {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        for d in ["onprem", "mnt", "cloud"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        let cloud = root.join("cloud");
        let mut m = Mount {
            onprem: root.join("onprem"),
            mnt: root.join("mnt"),
            cloud_url: format!("file://{}", cloud.display()),
            cloud,
            state: root.join("state"),
            log: root.join("daemon.log"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            tmp,
            child: None,
        };
        m.spawn();
        m
    }

    /// Like [`Mount::start`], but against the cloud at `cloud_url` (say, a WebDAV server's
    /// `http://` URL) and with `env` added to the daemon's environment. Nothing is started:
    /// the test may fill the on-premise folder first, then calls [`Mount::spawn`]. The
    /// `cloud` folder exists but is unused.
    pub fn prepare_with_cloud(cloud_url: &str, extra: &[&str], env: &[(&str, &str)]) -> Mount {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        for d in ["onprem", "mnt", "cloud"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        Mount {
            onprem: root.join("onprem"),
            mnt: root.join("mnt"),
            cloud_url: cloud_url.to_string(),
            cloud: root.join("cloud"),
            state: root.join("state"),
            log: root.join("daemon.log"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            tmp,
            child: None,
        }
    }

    /// [`Mount::prepare_with_cloud`], then [`Mount::spawn`].
    pub fn start_with_cloud(cloud_url: &str, extra: &[&str], env: &[(&str, &str)]) -> Mount {
        let mut m = Mount::prepare_with_cloud(cloud_url, extra, env);
        m.spawn();
        m
    }

    /// True while the daemon started by [`Mount::spawn`] has not been killed or unmounted.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The status xattr of `rel` in the mount, `None` when it cannot be read.
    pub fn status(&self, rel: &str) -> Option<String> {
        xattr(&self.m(rel), "user.cloudsync.status")
    }

    /// Starts the daemon (foreground child) and waits for the mount.
    pub fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(bin());
        cmd.arg("mount")
            .arg(&self.onprem)
            .arg(&self.mnt)
            .arg("--cloud")
            .arg(&self.cloud_url)
            .arg("--state-dir")
            .arg(&self.state)
            .args(&self.extra)
            .env("RUST_LOG", "cloudsync=debug,info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if !self.extra.iter().any(|a| a == "--push-delay") {
            cmd.args(["--push-delay", "300ms"]);
        }
        let mut child = cmd.spawn().unwrap();
        let t = Instant::now();
        while !is_mounted(&self.mnt) {
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "daemon exited with {st} before mounting:\n{}",
                    self.log_text()
                );
            }
            if t.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("mount did not appear:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Unmounts cleanly and waits for the daemon to exit.
    pub fn unmount(&mut self) {
        // The daemon's readiness probe (and watchdog probe) make the mount busy for an instant;
        // a busy answer is asked again, as `cloudsync unmount` does.
        let mut tries = 0;
        let st = loop {
            let st = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.mnt)
                .status()
                .unwrap();
            tries += 1;
            if st.success() || tries == 5 {
                break st;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(st.success(), "fusermount3 -u failed");
        self.wait_exit();
    }

    /// Waits for the daemon to exit by itself (after an unmount made elsewhere), and checks it
    /// exited with 0.
    pub fn wait_exit(&mut self) {
        if let Some(mut c) = self.child.take() {
            let t = Instant::now();
            loop {
                if let Ok(Some(st)) = c.try_wait() {
                    assert!(
                        st.success(),
                        "daemon exited with {st}:\n{}",
                        self.log_text()
                    );
                    return;
                }
                if t.elapsed() > Duration::from_secs(15) {
                    let _ = c.kill();
                    panic!("daemon did not exit after unmount:\n{}", self.log_text());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// kill -9 the daemon and leave its dead mount behind, as a crash does.
    pub fn kill9_leaving_the_mount(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// kill -9 the daemon and clear the dead mount.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("fusermount3")
            .arg("-uz")
            .arg(&self.mnt)
            .status();
        wait_until(Duration::from_secs(10), "dead mount to go", || {
            !is_mounted(&self.mnt)
        });
    }

    /// Path inside the mount.
    pub fn m(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// Path inside the on-premise folder.
    pub fn o(&self, rel: &str) -> PathBuf {
        self.onprem.join(rel)
    }

    /// Path inside the cloud folder.
    pub fn c(&self, rel: &str) -> PathBuf {
        self.cloud.join(rel)
    }

    /// Waits until the status xattr of `rel` in the mount says `want`.
    pub fn wait_status(&self, rel: &str, want: &str) {
        let p = self.m(rel);
        wait_until(
            Duration::from_secs(20),
            &format!("{rel} to be {want}"),
            || xattr(&p, "user.cloudsync.status").as_deref() == Some(want),
        );
    }

    /// Waits until the whole mount is synced.
    pub fn wait_all_synced(&self) {
        self.wait_status("", "synced");
    }

    /// How many times the log says `rel` was uploaded.
    pub fn uploads_of(&self, rel: &str) -> usize {
        let needle = format!("push{{path={rel} ");
        self.log_text()
            .lines()
            .filter(|l| l.contains(&needle) && l.contains("uploaded"))
            .count()
    }

    /// Log lines for `rel` that change the cloud other than by upload.
    pub fn other_cloud_ops_of(&self, rel: &str) -> Vec<String> {
        let needle = format!("push{{path={rel} ");
        self.log_text()
            .lines()
            .filter(|l| {
                l.contains(&needle)
                    && (l.contains("deleted in the cloud") || l.contains("moved in the cloud"))
            })
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if is_mounted(&self.mnt) {
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.mnt)
                .status();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- daemon log ---\n{}", self.log_text());
        }
    }
}

/// A sorted listing of a tree: (relative path, content or "<dir>"), skipping `skip(name)`.
pub fn tree(root: &Path, skip: &dyn Fn(&str) -> bool) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        // The daemon may change the tree while we look: skip what vanishes.
        let Ok(rd) = fs::read_dir(root.join(&rel)) else {
            continue;
        };
        for de in rd {
            let Ok(de) = de else { continue };
            let name = de.file_name().to_string_lossy().to_string();
            if skip(&name) {
                continue;
            }
            let r = rel.join(&name);
            let Ok(ft) = de.file_type() else { continue };
            if ft.is_dir() {
                out.push((r.to_string_lossy().to_string(), b"<dir>".to_vec()));
                stack.push(r);
            } else if ft.is_file() {
                let Ok(data) = fs::read(de.path()) else {
                    continue;
                };
                out.push((r.to_string_lossy().to_string(), data));
            }
        }
    }
    out.sort();
    out
}

/// Names that are not content on either side: editor temporaries and other ignored names,
/// conflict copies (on-premise only) and downloads in progress.
pub fn not_content(name: &str) -> bool {
    static IGNORE: std::sync::OnceLock<cloudsync::ignore::Ignore> = std::sync::OnceLock::new();
    IGNORE
        .get_or_init(|| cloudsync::ignore::Ignore::new(&[]).unwrap())
        .name_excluded(name)
        || cloudsync::sync::reconcile::is_conflict_name(name)
        || name.starts_with(".cloudsync-dl-")
}

/// Writes `len` bytes of cheap pseudo-random data.
pub fn write_pseudo_random(path: &Path, len: usize, seed: u64) {
    use std::io::Write;
    let mut x = seed | 1;
    let mut f = std::io::BufWriter::with_capacity(1 << 20, fs::File::create(path).unwrap());
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for b in chunk.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let bytes = x.to_le_bytes();
            b.copy_from_slice(&bytes[..b.len()]);
        }
        let n = left.min(chunk.len());
        f.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    f.into_inner().unwrap().sync_all().unwrap();
}
/// Compares two files chunk by chunk, never holding either whole.
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (Ok(mut fa), Ok(mut fb)) = (fs::File::open(a), fs::File::open(b)) else {
        return false;
    };
    if fa.metadata().unwrap().len() != fb.metadata().unwrap().len() {
        return false;
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        if n == 0 {
            return true;
        }
        if fb.read_exact(&mut bb[..n]).is_err() || ba[..n] != bb[..n] {
            return false;
        }
    }
}
/// What differs between two trees, by path, without dumping contents.
pub fn diff(a: &[(String, Vec<u8>)], b: &[(String, Vec<u8>)]) -> String {
    let mut out = String::new();
    let bm: std::collections::BTreeMap<_, _> = b.iter().map(|(p, c)| (p, c)).collect();
    let am: std::collections::BTreeMap<_, _> = a.iter().map(|(p, c)| (p, c)).collect();
    for (p, c) in &am {
        match bm.get(p) {
            None => out.push_str(&format!("  only on-premise: {p}\n")),
            Some(d) if d != c => out.push_str(&format!(
                "  differs: {p} ({} bytes on-premise, {} on the server)\n",
                c.len(),
                d.len()
            )),
            _ => {}
        }
    }
    for p in bm.keys() {
        if !am.contains_key(p) {
            out.push_str(&format!("  only on the server: {p}\n"));
        }
    }
    out
}
/// The paths the log says were uploaded, with how often, in `log`.
pub fn uploaded_paths(log: &str) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for l in log.lines().filter(|l| l.contains("uploaded")) {
        if let Some(i) = l.find("push{path=") {
            let rest = &l[i + "push{path=".len()..];
            if let Some(j) = rest.find(" op=") {
                *out.entry(rest[..j].to_string()).or_default() += 1;
            }
        }
    }
    out
}
/// Every conflict copy under `root`, as relative paths.
pub fn conflict_copies(root: &Path) -> Vec<String> {
    tree(root, &|_| false)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| cloudsync::sync::reconcile::is_conflict_name(p.rsplit('/').next().unwrap_or(p)))
        .collect()
}
