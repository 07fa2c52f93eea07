//! `cloudsync doctor`: the checks an admin runs when sync misbehaves, each with a verdict
//! (ok, warn, fail) and, when it is not ok, what to do about it.
//!
//! The checks, in order: the host (`/dev/fuse`, `fusermount3`, FUSE passthrough), the server
//! (reachable, TLS, credentials, writes and the ETag of a PUT, conditions, folder ETags, clock
//! skew), the password file, free space, the journal, and the guards of the state dir. A check
//! that cannot run because an earlier one failed is left out, not reported as a second fault.
//!
//! The server checks speak HTTP themselves for what the [`Cloud`](crate::cloud::Cloud) trait
//! deliberately hides (the `Date` header, whether a PUT answers with an ETag, the raw status of
//! a refused login); whether conditions are honoured is asked of the WebDAV cloud itself, with
//! the very probe the daemon uses. The journal is opened read-only and never migrated, and the
//! state dir's lock is read from `/proc/locks`, never taken: a running daemon is not disturbed.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

mod http;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::{DoctorArgs, MountArgs};
use crate::cloud::CloudOptions;
use crate::config::Config;
use crate::control::{Request, Setup};
use crate::journal::Journal;

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Nothing to do.
    Ok,
    /// Works, but not as well as it could, or not for long.
    Warn,
    /// Sync cannot work (or will go wrong) until this is fixed.
    Fail,
}

impl Verdict {
    fn word(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        }
    }
}

/// One check and what it found.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// A stable name, like `server.credentials`.
    pub check: &'static str,
    /// The verdict.
    pub verdict: Verdict,
    /// What was found.
    pub detail: String,
    /// What to do, when the verdict is not ok.
    pub fix: Option<String>,
}

/// Every check of one run.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// The checks, in the order they ran.
    pub checks: Vec<Check>,
}

impl Report {
    fn add(&mut self, check: &'static str, verdict: Verdict, detail: impl Into<String>) {
        self.checks.push(Check {
            check,
            verdict,
            detail: detail.into(),
            fix: None,
        });
    }

    fn bad(
        &mut self,
        check: &'static str,
        verdict: Verdict,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.checks.push(Check {
            check,
            verdict,
            detail: detail.into(),
            fix: Some(fix.into()),
        });
    }

    /// True when every check is ok.
    pub fn all_ok(&self) -> bool {
        self.checks.iter().all(|c| c.verdict == Verdict::Ok)
    }

    /// The report for a person: one line per check, the fix indented below.
    pub fn human(&self) -> String {
        let width = self.checks.iter().map(|c| c.check.len()).max().unwrap_or(0);
        let mut out = String::new();
        for c in &self.checks {
            out.push_str(&format!(
                "{:<4}  {:<width$}  {}\n",
                c.verdict.word(),
                c.check,
                c.detail
            ));
            if let Some(f) = &c.fix {
                out.push_str(&format!("{:<4}  {:<width$}  fix: {f}\n", "", ""));
            }
        }
        let (warn, fail) = self
            .checks
            .iter()
            .fold((0, 0), |(w, f), c| match c.verdict {
                Verdict::Ok => (w, f),
                Verdict::Warn => (w + 1, f),
                Verdict::Fail => (w, f + 1),
            });
        out.push_str(&format!(
            "\n{} checks: {} ok, {warn} warn, {fail} fail\n",
            self.checks.len(),
            self.checks.len() - warn - fail
        ));
        out
    }
}

/// What is checked: a mount's setup, from its running daemon or from a configuration file.
#[derive(Debug, Clone)]
struct Target {
    onprem: PathBuf,
    cloud: String,
    state_dir: PathBuf,
    opts: CloudOptions,
    password_file: Option<PathBuf>,
    passthrough: bool,
    /// The daemon serving the mount, when it runs.
    running: Option<u32>,
}

/// Runs `cloudsync doctor`; the exit code is 0 when every check is ok, 1 otherwise.
pub fn run(args: DoctorArgs) -> Result<u8> {
    let mut report = Report::default();
    host_checks(&mut report);
    if let Some(target) = target(&args, &mut report) {
        target_checks(&target, &mut report);
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "ok": report.all_ok(),
                "checks": report.checks,
            }))?
        );
    } else {
        print!("{}", report.human());
    }
    Ok(if report.all_ok() { 0 } else { 1 })
}

/// Finds the setup to check, reporting why when there is none.
fn target(args: &DoctorArgs, report: &mut Report) -> Option<Target> {
    if let Some(file) = &args.config {
        let margs = MountArgs {
            config: Some(file.clone()),
            ..Default::default()
        };
        return match Config::load(&margs) {
            Ok(cfg) => {
                report.add(
                    "config",
                    Verdict::Ok,
                    format!("{} is valid", file.display()),
                );
                let running = crate::client::locate(&cfg.mountpoint)
                    .ok()
                    .filter(|(l, _)| l.mountpoint == cfg.mountpoint)
                    .and_then(|(l, _)| describe(&l.socket).ok())
                    .filter(|s| s.state_dir == cfg.state_dir)
                    .map(|s| s.pid);
                Some(Target {
                    onprem: cfg.onprem,
                    cloud: cfg.cloud,
                    state_dir: cfg.state_dir,
                    opts: cfg.cloud_opts,
                    password_file: cfg.password_file,
                    passthrough: cfg.passthrough,
                    running,
                })
            }
            Err(e) => {
                report.bad(
                    "config",
                    Verdict::Fail,
                    format!("{e:#}"),
                    "correct the configuration file (see cloudsync.toml(5))",
                );
                None
            }
        };
    }
    let path = match &args.mountpoint {
        Some(p) => p.clone(),
        None => std::env::current_dir().unwrap_or_default(),
    };
    let setup = crate::client::locate(&path).and_then(|(l, _)| {
        describe(&l.socket).with_context(|| format!("cannot ask {}", l.mountpoint.display()))
    });
    match setup {
        Ok(s) => {
            report.add(
                "mount",
                Verdict::Ok,
                format!(
                    "{} is served by daemon pid {} ({} -> {})",
                    s.mountpoint.display(),
                    s.pid,
                    s.onprem.display(),
                    s.cloud
                ),
            );
            let password = match &s.password_file {
                Some(p) => std::fs::read_to_string(p)
                    .ok()
                    .map(|t| t.trim_end_matches(['\n', '\r']).to_string()),
                None => std::env::var("CLOUDSYNC_PASSWORD").ok(),
            };
            Some(Target {
                onprem: s.onprem,
                cloud: s.cloud,
                state_dir: s.state_dir,
                opts: CloudOptions {
                    user: s.user,
                    password,
                    ca_file: s.ca_file,
                    // The S3 options of a running mount are not described yet: doctor
                    // checks an S3 mount through --config.
                    ..CloudOptions::default()
                },
                password_file: s.password_file,
                passthrough: s.passthrough,
                running: Some(s.pid),
            })
        }
        Err(e) => {
            report.bad(
                "mount",
                Verdict::Fail,
                format!("{e:#}"),
                "name a running cloudsync mount, or check a setup with --config FILE",
            );
            None
        }
    }
}

/// Asks a daemon for its setup.
fn describe(socket: &Path) -> Result<Setup> {
    let r = crate::control::request(socket, &Request::Describe)?;
    match r.setup {
        Some(s) if r.ok => Ok(s),
        _ => anyhow::bail!(
            "the daemon did not describe its setup: {}",
            r.error
                .unwrap_or_else(|| "it is older than this cloudsync".into())
        ),
    }
}

fn host_checks(report: &mut Report) {
    match std::fs::metadata("/dev/fuse") {
        Ok(m) if m.file_type().is_char_device() => {
            // SAFETY: a valid C string; access only reads.
            let rw = unsafe { libc::access(c"/dev/fuse".as_ptr(), libc::R_OK | libc::W_OK) } == 0;
            if rw {
                report.add("fuse.device", Verdict::Ok, "/dev/fuse is there and usable");
            } else {
                report.bad(
                    "fuse.device",
                    Verdict::Fail,
                    "/dev/fuse cannot be opened for reading and writing by this user",
                    "run as root, or make /dev/fuse mode 0666 (the fuse3 package's default)",
                );
            }
        }
        Ok(_) => report.bad(
            "fuse.device",
            Verdict::Fail,
            "/dev/fuse is not a character device",
            "remove it and load the module: modprobe fuse",
        ),
        Err(e) => report.bad(
            "fuse.device",
            Verdict::Fail,
            format!("/dev/fuse: {e}"),
            "load the fuse module (modprobe fuse); in a container, pass --device /dev/fuse",
        ),
    }
    match crate::mount::which("fusermount3") {
        Some(p) => {
            let setuid = p.metadata().is_ok_and(|m| m.mode() & 0o4000 != 0);
            // SAFETY: geteuid has no preconditions.
            let root = unsafe { libc::geteuid() } == 0;
            if root || setuid {
                report.add("fuse.fusermount3", Verdict::Ok, format!("{}", p.display()));
            } else {
                report.bad(
                    "fuse.fusermount3",
                    Verdict::Fail,
                    format!("{} is not setuid root, so users cannot mount", p.display()),
                    "chmod u+s on it (as the fuse3 package installs it), or run as root",
                );
            }
        }
        None => report.bad(
            "fuse.fusermount3",
            Verdict::Fail,
            "fusermount3 is not on PATH",
            "install the fuse3 package",
        ),
    }
}

/// Why FUSE passthrough is not available, or `None` when it is.
fn passthrough_missing() -> Option<(String, String)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let (major, minor) = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    if (major, minor) < (6, 9) {
        return Some((
            format!("kernel {release} is older than 6.9, the first with FUSE passthrough"),
            "upgrade the kernel to 6.9 or later for native-speed reads and writes".into(),
        ));
    }
    if let Some(cfg) = kernel_config(release)
        && !cfg.lines().any(|l| l.trim() == "CONFIG_FUSE_PASSTHROUGH=y")
    {
        return Some((
            format!("kernel {release} is built without CONFIG_FUSE_PASSTHROUGH"),
            "use a kernel built with CONFIG_FUSE_PASSTHROUGH=y".into(),
        ));
    }
    // Opening a backing file needs CAP_SYS_ADMIN (bit 21 of the effective set).
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0);
    if cap & (1 << 21) == 0 {
        return Some((
            "this user lacks CAP_SYS_ADMIN, which opening passthrough backing files needs".into(),
            "run the daemon as root (or with CAP_SYS_ADMIN) for native-speed reads and writes"
                .into(),
        ));
    }
    None
}

/// Which transport carries FUSE requests, and what the kernel would offer besides.
fn transport_detail() -> String {
    const URING: &str = "/sys/module/fuse/parameters/enable_uring";
    let uring = match std::fs::read_to_string(URING) {
        Ok(v) if matches!(v.trim(), "Y" | "1") => {
            format!("the kernel has FUSE over io_uring turned on ({URING} is Y)")
        }
        Ok(_) => format!(
            "the kernel offers FUSE over io_uring, turned off (echo 1 > {URING} as root turns it on)"
        ),
        Err(_) => "the kernel offers no FUSE over io_uring (Linux 6.14 or later with CONFIG_FUSE_IO_URING)".to_string(),
    };
    format!("requests go over /dev/fuse; {uring}, which this version of cloudsync does not use yet")
}

/// The kernel's build configuration, where it can be read.
fn kernel_config(release: &str) -> Option<String> {
    if let Ok(t) = std::fs::read_to_string(format!("/boot/config-{release}")) {
        return Some(t);
    }
    let out = std::process::Command::new("zcat")
        .arg("/proc/config.gz")
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn target_checks(t: &Target, report: &mut Report) {
    if !t.passthrough {
        report.add(
            "fuse.passthrough",
            Verdict::Ok,
            "turned off in the configuration (passthrough = false or --no-passthrough)",
        );
    } else {
        match passthrough_missing() {
            None => report.add(
                "fuse.passthrough",
                Verdict::Ok,
                "available: reads and writes of open files go straight to ONPREM",
            ),
            Some((why, fix)) => report.bad(
                "fuse.passthrough",
                Verdict::Warn,
                format!("not available: {why}; reads and writes go through the daemon"),
                fix,
            ),
        }
    }
    report.add("fuse.transport", Verdict::Ok, transport_detail());
    server_checks(t, report);
    password_file_check(t, report);
    space_check(report, "space.onprem", &t.onprem);
    space_check(report, "space.state_dir", &t.state_dir);
    journal_checks(t, report);
}

/// The server checks, on a runtime of their own.
fn server_checks(t: &Target, report: &mut Report) {
    if let Some(dir) = t.cloud.strip_prefix("file://") {
        let p = Path::new(dir);
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => {
                let c = std::ffi::CString::new(dir).unwrap_or_default();
                // SAFETY: a valid C string; access only reads.
                if unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0 {
                    report.add(
                        "server.reachable",
                        Verdict::Ok,
                        format!("{dir} is a writable folder"),
                    );
                } else {
                    report.bad(
                        "server.reachable",
                        Verdict::Fail,
                        format!("{dir} is not writable by this user"),
                        "give the daemon's user write access to the cloud folder",
                    );
                }
            }
            Ok(_) => report.bad(
                "server.reachable",
                Verdict::Fail,
                format!("{dir} is not a folder"),
                "point --cloud at a folder",
            ),
            Err(e) => report.bad(
                "server.reachable",
                Verdict::Fail,
                format!("{dir}: {e}"),
                "create the cloud folder, or correct --cloud",
            ),
        }
        return;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            report.bad(
                "server.reachable",
                Verdict::Fail,
                format!("cannot start the HTTP client: {e}"),
                "free some memory or threads and run again",
            );
            return;
        }
    };
    if t.cloud.starts_with("s3://") {
        rt.block_on(s3_checks(t, report));
        return;
    }
    rt.block_on(http::check(&t.cloud, &t.opts, report));
}

/// An S3 cloud: the store answers a listing of the prefix with these keys, and whether it
/// honours conditional writes.
async fn s3_checks(t: &Target, report: &mut Report) {
    use crate::cloud::{Cloud, CloudError};
    let s3 = match crate::cloud::s3::S3::new(&t.cloud, &t.opts) {
        Ok(s3) => s3,
        Err(e) => {
            report.bad(
                "server.reachable",
                Verdict::Fail,
                format!("{e:#}"),
                "correct the cloud URL, --s3-endpoint, --s3-region or the credentials",
            );
            return;
        }
    };
    match s3.list("").await {
        Ok(_) | Err(CloudError::NotFound) => {
            report.add(
                "server.reachable",
                Verdict::Ok,
                format!("{} answers", s3.describe()),
            );
            report.add(
                "server.credentials",
                Verdict::Ok,
                "the store accepts the keys",
            );
        }
        Err(e @ CloudError::Unauthorized) | Err(e @ CloudError::Forbidden) => report.bad(
            "server.credentials",
            Verdict::Fail,
            e.to_string(),
            "check the keys (--credentials-file, AWS_ACCESS_KEY_ID, ~/.aws/credentials) and the bucket policy",
        ),
        Err(e) => report.bad(
            "server.reachable",
            Verdict::Fail,
            e.to_string(),
            "check --s3-endpoint, the network and the store",
        ),
    }
    if s3.honours_conditions().await {
        report.add(
            "server.conditions",
            Verdict::Ok,
            "the store honours If-Match and If-None-Match on writes",
        );
    } else {
        report.bad(
            "server.conditions",
            Verdict::Warn,
            "the store ignores conditional writes (or could not be asked): cloudsync checks before each write, leaving a window of one round trip",
            "use a store that honours conditional PUT (SeaweedFS, AWS S3) for no lost update",
        );
    }
}

fn password_file_check(t: &Target, report: &mut Report) {
    let Some(p) = &t.password_file else {
        if t.opts.user.is_some() {
            report.bad(
                "credentials.file",
                Verdict::Warn,
                "no password file: the password comes from CLOUDSYNC_PASSWORD",
                "put the password in a file of mode 0600 and give it with password_file",
            );
        }
        return;
    };
    let m = match std::fs::metadata(p) {
        Ok(m) => m,
        Err(e) => {
            report.bad(
                "credentials.file",
                Verdict::Fail,
                format!("{}: {e}", p.display()),
                "create the password file, readable by the daemon's user alone",
            );
            return;
        }
    };
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let mode = m.mode() & 0o7777;
    if m.uid() != me {
        report.bad(
            "credentials.file",
            Verdict::Warn,
            format!(
                "{} belongs to uid {}, not to the running user (uid {me})",
                p.display(),
                m.uid()
            ),
            format!("chown {me} {}", p.display()),
        );
    } else if mode & 0o077 != 0 {
        report.bad(
            "credentials.file",
            Verdict::Warn,
            format!(
                "{} has mode {mode:04o}: other users may read the password",
                p.display()
            ),
            format!("chmod 600 {}", p.display()),
        );
    } else {
        report.add(
            "credentials.file",
            Verdict::Ok,
            format!("{} is yours alone (mode {mode:04o})", p.display()),
        );
    }
}

fn space_check(report: &mut Report, check: &'static str, dir: &Path) {
    let probe = if dir.exists() {
        dir.to_path_buf()
    } else {
        // A state dir not made yet: the folder it will be made in.
        match dir.ancestors().find(|a| a.exists()) {
            Some(a) => a.to_path_buf(),
            None => return,
        }
    };
    let st = match rustix::fs::statvfs(&probe) {
        Ok(st) => st,
        Err(e) => {
            report.bad(
                check,
                Verdict::Warn,
                format!("cannot tell the free space of {}: {e}", probe.display()),
                "check the file system by hand (df -h)",
            );
            return;
        }
    };
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    let total = st.f_blocks.saturating_mul(st.f_frsize).max(1);
    let pct = free as f64 * 100.0 / total as f64;
    let shown = format!(
        "{}: {} free ({pct:.1}%)",
        probe.display(),
        human_bytes(free)
    );
    if free < 64 << 20 {
        report.bad(
            check,
            Verdict::Fail,
            shown,
            "free some space: writes and downloads fail with ENOSPC",
        );
    } else if free < 1 << 30 || pct < 5.0 {
        report.bad(check, Verdict::Warn, shown, "free some space soon");
    } else {
        report.add(check, Verdict::Ok, shown);
    }
}

fn human_bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", units[u])
}

/// The holder of the flock on `path`, from /proc/locks: its pid, when someone holds it.
fn lock_holder(path: &Path) -> Option<u32> {
    let m = std::fs::metadata(path).ok()?;
    let (maj, min) = (libc::major(m.dev()), libc::minor(m.dev()));
    let want = format!("{maj:02x}:{min:02x}:{}", m.ino());
    std::fs::read_to_string("/proc/locks")
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // "1: FLOCK  ADVISORY  WRITE 1234 00:1f:5678 0 EOF"
            let i = f.iter().position(|w| *w == "FLOCK")?;
            let dev_ino = f.get(i + 4)?;
            (dev_ino.eq_ignore_ascii_case(&want)).then(|| f.get(i + 3)?.parse().ok())?
        })
}

fn journal_checks(t: &Target, report: &mut Report) {
    // The guard against two daemons.
    let lock = t.state_dir.join("lock");
    match (lock_holder(&lock), t.running) {
        (Some(pid), Some(running)) if pid == running => report.add(
            "guard.lock",
            Verdict::Ok,
            format!("held by the daemon of this mount (pid {pid})"),
        ),
        (Some(pid), _) => report.bad(
            "guard.lock",
            Verdict::Fail,
            format!(
                "another cloudsync daemon (pid {pid}) holds the state dir {}; a mount with this setup is refused",
                t.state_dir.display()
            ),
            "unmount the other mount, or give this one its own state_dir",
        ),
        (None, Some(pid)) => report.bad(
            "guard.lock",
            Verdict::Warn,
            format!("the daemon (pid {pid}) runs but holds no lock on {}", lock.display()),
            "restart the mount: a second daemon could start on the same state dir",
        ),
        (None, None) => report.add("guard.lock", Verdict::Ok, "no daemon holds the state dir"),
    }

    let path = t.state_dir.join("journal.db");
    if !path.exists() {
        report.add(
            "journal",
            Verdict::Ok,
            format!(
                "no journal yet in {}: the first mount makes one",
                t.state_dir.display()
            ),
        );
        return;
    }
    let i = match Journal::inspect(&path, 20) {
        Ok(i) => i,
        Err(e) => {
            report.bad(
                "journal.integrity",
                Verdict::Fail,
                format!("cannot read {}: {e}", path.display()),
                "move the state dir aside and mount again (the start-up scan rebuilds the queue; unsynced changes on both sides become conflicts)",
            );
            return;
        }
    };
    if i.integrity == ["ok"] {
        report.add(
            "journal.integrity",
            Verdict::Ok,
            "SQLite integrity check passed",
        );
    } else {
        report.bad(
            "journal.integrity",
            Verdict::Fail,
            format!("SQLite integrity check: {}", i.integrity.join("; ")),
            "stop the mount, move the state dir aside and mount again",
        );
    }
    let v = i.schema_version;
    let now = Journal::SCHEMA_VERSION;
    if v > now {
        report.bad(
            "journal.schema",
            Verdict::Fail,
            format!("schema version {v}, newer than this cloudsync understands ({now})"),
            "upgrade cloudsync",
        );
        return;
    } else if v < now {
        report.add(
            "journal.schema",
            Verdict::Ok,
            format!("schema version {v}: migrated to {now} at the next mount"),
        );
    } else {
        report.add("journal.schema", Verdict::Ok, format!("schema version {v}"));
    }
    report.add("journal.queue", Verdict::Ok, format!("{} queued", i.queued));
    if i.failed_total == 0 {
        report.add("journal.failed", Verdict::Ok, "no failed items");
    } else {
        let mut list: Vec<String> = i
            .failed
            .iter()
            .map(|f| {
                format!(
                    "{} {}{}",
                    f.path,
                    f.code.as_deref().unwrap_or("UNKNOWN"),
                    f.detail
                        .as_deref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                )
            })
            .collect();
        if i.failed_total as usize > list.len() {
            list.push(format!("and {} more", i.failed_total as usize - list.len()));
        }
        report.bad(
            "journal.failed",
            Verdict::Warn,
            format!("{} failed: {}", i.failed_total, list.join("; ")),
            "see cloudsync status --failed; fix the cause, then cloudsync sync PATH",
        );
    }

    // The guard against a copied state dir.
    let here = crate::mount::host_id();
    let onprem = t.onprem.to_string_lossy();
    match &i.owner {
        None => report.add("guard.clone", Verdict::Ok, "the journal has no owner yet"),
        Some(o) if o.onprem != onprem => report.bad(
            "guard.clone",
            Verdict::Fail,
            format!(
                "the state dir belongs to the on-premise folder {}, not {onprem}: it was copied or mixed up",
                o.onprem
            ),
            "give this mount its own state_dir",
        ),
        Some(o) if o.host.as_deref().is_some_and(|h| h != here) => report.bad(
            "guard.clone",
            Verdict::Fail,
            format!(
                "the state dir was made on another host ({}); a copied journal would corrupt sync",
                o.host.as_deref().unwrap_or_default()
            ),
            "give this host its own state_dir",
        ),
        Some(_) => report.add(
            "guard.clone",
            Verdict::Ok,
            "the journal belongs to this folder on this host",
        ),
    }
}

/// Seconds between two times, signed (`a - b`).
pub(crate) fn skew_secs(a: SystemTime, b: SystemTime) -> i64 {
    match a.duration_since(b) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// Largest clock skew taken as ok.
pub(crate) const MAX_SKEW: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_follows_the_worst_verdict() {
        let mut r = Report::default();
        r.add("a", Verdict::Ok, "fine");
        assert!(r.all_ok());
        r.bad("b", Verdict::Warn, "meh", "do x");
        assert!(!r.all_ok());
        let h = r.human();
        assert!(h.contains("warn  b  meh") && h.contains("fix: do x"), "{h}");
        assert!(h.contains("2 checks: 1 ok, 1 warn, 0 fail"), "{h}");
    }

    #[test]
    fn skew() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        assert_eq!(skew_secs(t, t - Duration::from_secs(5)), 5);
        assert_eq!(skew_secs(t - Duration::from_secs(5), t), -5);
    }
}
