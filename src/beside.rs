//! Changes made beside the mount: a Samba or NFS share of the on-premise folder, an admin's
//! shell, a backup restore. They are heard at once and queued like changes made through the
//! mount, instead of waiting for the next rescan.
//!
//! - **fanotify** (as root): one filesystem mark on ONPREM's filesystem, reporting the parent
//!   folder's file handle and the name (`FAN_REPORT_DFID_NAME`), with `FAN_RENAME` carrying
//!   both names of a rename. The mark sees the whole filesystem, so every reported folder is
//!   opened by its handle (`open_by_handle_at`) and kept only when it is, by device and inode,
//!   the folder of that name beneath ONPREM opened through the door ([`Onprem::stat`]): a
//!   path string alone is never trusted. Events caused by the daemon itself (its FUSE
//!   handlers, downloads, conflict copies, temporary files) carry its pid and are skipped.
//! - **inotify** otherwise: a watch on every folder, renames paired by cookie. inotify names
//!   no writer, so the renames the daemon made itself (reported by its FUSE handlers or made
//!   by the puller) are recognised through [`Echo`] and dropped.
//!
//! Both feed the engine's own [`SyncHooks::changed`] and [`SyncHooks::renamed`], so a change
//! beside the mount is coalesced, excluded and delayed exactly like one through it; the
//! pusher compares content, so a change also heard from FUSE (a write through the mount with
//! passthrough carries the writer's pid) folds into the same entry and is pushed once. The
//! kernel's cache of the mount is told about each changed name. A lost event (queue overflow,
//! watch limit) is made good by a scan of the tree, said once in the log.

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::fs::{Ctx, SyncHooks};
use crate::ignore::Ignore;
use crate::journal::{Journal, Op};
use crate::onprem::Onprem;
use crate::sync::Engine;
use crate::sync::pull::Invalidate;

pub use crate::config::WatchMode;

/// The kind of watch that was set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A fanotify filesystem mark.
    Fanotify,
    /// inotify watches on every folder.
    Inotify,
}

impl Kind {
    /// Its name, for the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Fanotify => "fanotify",
            Kind::Inotify => "inotify",
        }
    }
}

/// An opened watch, not yet running.
pub struct Watch {
    kind: Kind,
    fd: OwnedFd,
}

impl Watch {
    /// Which kind it is.
    pub fn kind(&self) -> Kind {
        self.kind
    }
}

/// Events watched by fanotify.
const FAN_MASK: u64 = libc::FAN_CREATE
    | libc::FAN_DELETE
    | libc::FAN_RENAME
    | libc::FAN_CLOSE_WRITE
    | libc::FAN_ATTRIB
    | libc::FAN_ONDIR;

/// Opens the watch `mode` asks for on `root`, or `None` (with the reason in the log) when
/// none can be had.
pub fn open(mode: WatchMode, root: &Path) -> Option<Watch> {
    let fan = || match open_fanotify(root) {
        Ok(fd) => Some(Watch {
            kind: Kind::Fanotify,
            fd,
        }),
        Err(e) => {
            info!(error = %e, "fanotify cannot watch the on-premise folder");
            None
        }
    };
    let ino = || match rustix::fs::inotify::init(
        rustix::fs::inotify::CreateFlags::CLOEXEC | rustix::fs::inotify::CreateFlags::NONBLOCK,
    ) {
        Ok(fd) => Some(Watch {
            kind: Kind::Inotify,
            fd,
        }),
        Err(e) => {
            warn!(error = %e, "inotify cannot be used");
            None
        }
    };
    let w = match mode {
        WatchMode::Off => return None,
        WatchMode::Fanotify => fan(),
        WatchMode::Inotify => ino(),
        WatchMode::Auto => fan().or_else(ino),
    };
    if w.is_none() {
        warn!(
            "no watch on the on-premise folder: changes made straight in it are found by the rescans only"
        );
    }
    w
}

fn open_fanotify(root: &Path) -> io::Result<OwnedFd> {
    // SAFETY: fanotify_init takes flags only; the result is checked.
    let fd = unsafe {
        libc::fanotify_init(
            libc::FAN_CLASS_NOTIF
                | libc::FAN_CLOEXEC
                | libc::FAN_NONBLOCK
                | libc::FAN_REPORT_DFID_NAME,
            (libc::O_RDONLY | libc::O_CLOEXEC) as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let path = std::ffi::CString::new(root.as_os_str().as_bytes())?;
    // SAFETY: fd is a fanotify group, path a NUL-terminated string alive for the call.
    let r = unsafe {
        libc::fanotify_mark(
            fd.as_raw_fd(),
            libc::FAN_MARK_ADD | libc::FAN_MARK_FILESYSTEM,
            FAN_MASK,
            libc::AT_FDCWD,
            path.as_ptr(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Renames the daemon made itself, for a watch that cannot tell who made a change
/// (inotify): what the FUSE handlers reported as renames, and the names the puller replaced.
#[derive(Debug, Default)]
pub struct Echo {
    renames: Mutex<HashMap<(String, String), Instant>>,
    paths: Mutex<HashMap<String, Instant>>,
}

/// How long a change the daemon made itself is remembered.
const ECHO_FOR: Duration = Duration::from_secs(3);

fn remember<K: std::hash::Hash + Eq>(m: &Mutex<HashMap<K, Instant>>, k: K) {
    let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    if m.len() > 1024 {
        m.retain(|_, t| now.duration_since(*t) < ECHO_FOR);
    }
    m.insert(k, now);
}

fn recent<K: std::hash::Hash + Eq>(m: &Mutex<HashMap<K, Instant>>, k: &K) -> bool {
    let m = m.lock().unwrap_or_else(|p| p.into_inner());
    m.get(k).is_some_and(|t| t.elapsed() < ECHO_FOR)
}

impl Echo {
    fn rename(&self, from: &str, to: &str) {
        remember(&self.renames, (from.to_string(), to.to_string()));
    }

    fn path(&self, p: &str) {
        remember(&self.paths, p.to_string());
    }

    /// True when the rename `from` → `to` was the daemon's own.
    fn is_own_rename(&self, from: &str, to: &str) -> bool {
        recent(&self.renames, &(from.to_string(), to.to_string()))
            || (recent(&self.paths, &from.to_string()) && recent(&self.paths, &to.to_string()))
    }
}

/// The engine's hooks, remembering the renames the FUSE handlers make ([`Echo`]).
pub struct EchoHooks {
    /// The engine.
    pub inner: Arc<Engine>,
    /// Where renames are remembered.
    pub echo: Arc<Echo>,
}

impl SyncHooks for EchoHooks {
    fn changed(&self, op: Op, path: &str) {
        self.inner.changed(op, path)
    }
    fn renamed(&self, from: &str, to: &str) {
        self.echo.rename(from, to);
        self.inner.renamed(from, to)
    }
    fn renaming(&self, from: &str, to: &str, starts: bool) {
        if starts {
            self.echo.rename(from, to);
        }
        self.inner.renaming(from, to, starts)
    }
    fn xattrs(&self, path: &str, meta: &std::fs::Metadata) -> Vec<(&'static str, String)> {
        self.inner.xattrs(path, meta)
    }
    fn locked(&self, path: &str) -> bool {
        self.inner.locked(path)
    }
    fn control(&self, caller: &Ctx, path: &str, name: &str, value: &[u8]) -> Result<(), i32> {
        self.inner.control(caller, path, name, value)
    }
}

/// The puller's invalidator, remembering the names the puller replaced ([`Echo`]).
pub struct EchoInvalidate {
    /// The kernel's invalidator.
    pub inner: Arc<dyn Invalidate>,
    /// Where names are remembered.
    pub echo: Arc<Echo>,
}

impl Invalidate for EchoInvalidate {
    fn changed(&self, path: &str) {
        self.echo.path(path);
        self.inner.changed(path)
    }
}

/// One change heard, with paths relative to ONPREM.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    /// A new file or folder.
    Create { path: String, dir: bool },
    /// Written and closed.
    Write(String),
    /// Mode, owner or times.
    Attrib(String),
    /// Gone.
    Delete(String),
    /// Renamed within ONPREM.
    Rename { from: String, to: String, dir: bool },
    /// Moved here from outside ONPREM.
    MovedIn { path: String, dir: bool },
    /// Events were lost: scan.
    Lost,
}

/// What a running watch needs.
pub struct Beside {
    /// The on-premise folder, through the door.
    pub onprem: Arc<Onprem>,
    /// The engine changes go to.
    pub engine: Arc<Engine>,
    /// The journal, for scans.
    pub journal: Arc<Journal>,
    /// Excluded names, for scans.
    pub ignore: Ignore,
    /// The kernel's cache of the mount.
    pub invalidate: Arc<dyn Invalidate>,
    /// Renames the daemon made itself (inotify).
    pub echo: Option<Arc<Echo>>,
    /// Wakes the pusher after a scan.
    pub wake: Arc<tokio::sync::Notify>,
    /// The push delay, for what a scan finds.
    pub delay: Duration,
    /// Ends the watch.
    pub stop: tokio_util::sync::CancellationToken,
}

/// Runs `w` on a thread of its own until [`Beside::stop`].
pub fn spawn(w: Watch, b: Beside) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("watch-{}", w.kind.as_str()))
        .spawn(move || {
            let r = match w.kind {
                Kind::Fanotify => Fanotify::new(w.fd, &b).and_then(|f| f.run(&b)),
                Kind::Inotify => Inotify::new(w.fd).run(&b),
            };
            if let Err(e) = r {
                warn!(error = %e, watch = w.kind.as_str(), "the watch of the on-premise folder stopped; changes made straight in it are found by the rescans only");
            }
        })
}

/// Says a warning the first time only, later ones at debug level.
#[derive(Default)]
struct Once(bool);

impl Once {
    fn warn(&mut self, msg: &str) {
        if self.0 {
            debug!("{msg}");
        } else {
            warn!("{msg}");
            self.0 = true;
        }
    }
}

impl Beside {
    /// Hands a batch of changes to the engine, and tells the kernel which names changed.
    fn apply(&self, evs: Vec<Ev>, lost_once: &mut Once) {
        let mut touched: HashSet<String> = HashSet::new();
        let mut lost = false;
        // A download placed by the puller is recorded in the journal a moment after its
        // rename: wait a little for that record rather than queue the download.
        if self.echo.is_some() {
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(500)
                && evs.iter().any(|ev| {
                    matches!(ev, Ev::Rename { from, .. }
                        if from.rsplit('/').next().is_some_and(|n| n.starts_with(crate::onprem::TEMP_PREFIX)))
                        && !self.is_own(ev)
                })
            {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        for ev in evs {
            if self.is_own(&ev) {
                debug!(?ev, "a change the daemon made itself");
                continue;
            }
            debug!(?ev, "heard beside the mount");
            match ev {
                Ev::Create { path, dir } => {
                    self.engine
                        .changed(if dir { Op::Mkdir } else { Op::Create }, &path);
                    touched.insert(path);
                }
                Ev::Write(path) | Ev::Attrib(path) => {
                    self.engine.changed(Op::Modify, &path);
                    touched.insert(path);
                }
                Ev::Delete(path) => {
                    self.engine.changed(Op::Delete, &path);
                    touched.insert(path);
                }
                Ev::Rename { from, to, dir } => {
                    if self
                        .echo
                        .as_ref()
                        .is_some_and(|e| e.is_own_rename(&from, &to))
                    {
                        debug!(from, to, "a rename the daemon made itself");
                        continue;
                    }
                    self.engine.renamed(&from, &to);
                    // The pusher may have looked for a change at the old name after the
                    // rename and found nothing there (through the mount, the FUSE handlers
                    // announce a rename before it happens; here it is heard after): what
                    // the journal does not know as it is now is queued again, under the new
                    // name, after the rename.
                    if self.engine.syncable(&to) {
                        if dir {
                            self.requeue_unknown(&from, &to);
                        } else {
                            self.engine.changed(Op::Modify, &to);
                        }
                    }
                    touched.insert(from);
                    touched.insert(to);
                }
                Ev::MovedIn { path, dir } => {
                    if dir {
                        self.engine.changed(Op::Mkdir, &path);
                        self.walk(&path);
                    } else {
                        self.engine.changed(Op::Create, &path);
                    }
                    touched.insert(path);
                }
                Ev::Lost => lost = true,
            }
        }
        for p in &touched {
            self.invalidate.changed(p);
        }
        if lost {
            lost_once.warn(
                "changes made straight in the on-premise folder came faster than the watch could take them; scanning the whole folder",
            );
            self.scan();
        }
    }

    /// True when `ev` needs no queueing: the queue already waits for that path (see
    /// [`Beside::already_queued`]), or, for a watch that names no writer (inotify), `ev` is
    /// what the daemon itself did, as far as can be told. A file is the daemon's when the
    /// journal already records it as it is now (a download records what it placed; any
    /// change of a user's moves its ctime); a folder made or anything deleted, when the puller
    /// has just touched that name and the journal agrees.
    fn is_own(&self, ev: &Ev) -> bool {
        if let Ev::Create { path, .. } | Ev::Write(path) | Ev::Attrib(path) | Ev::Delete(path) = ev
            && self.already_queued(path)
        {
            return true;
        }
        let Some(echo) = &self.echo else {
            return false;
        };
        let recent = |p: &str| recent(&echo.paths, &p.to_string());
        let file_known = |p: &str| match (self.onprem.stat(p), self.journal.node(p)) {
            (Ok(Some(m)), Ok(Some(r))) => r.unchanged(&m),
            _ => false,
        };
        match ev {
            Ev::Create { path, dir: false }
            | Ev::MovedIn { path, dir: false }
            | Ev::Write(path)
            | Ev::Attrib(path) => file_known(path),
            Ev::Rename {
                from,
                to,
                dir: false,
            } if !self.engine.syncable(from) => file_known(to),
            Ev::Create { path, dir: true } | Ev::MovedIn { path, dir: true } => {
                recent(path)
                    && matches!(self.onprem.stat(path), Ok(Some(m)) if m.is_dir())
                    && matches!(self.journal.node(path), Ok(Some(r)) if r.kind == crate::journal::NodeKind::Dir)
            }
            Ev::Delete(path) => {
                recent(path)
                    && matches!(self.onprem.stat(path), Ok(None))
                    && matches!(self.journal.node(path), Ok(None))
            }
            Ev::Rename { .. } | Ev::Lost => false,
        }
    }

    /// True when a change to `path` heard now would add nothing to the queue: a change of
    /// that path waits there (reported by the FUSE handlers, most often: with passthrough, and
    /// under inotify, the mount's own writes are heard here too), not yet due and not being
    /// pushed, with no rename of the path queued. The push reads the file after this event,
    /// so it sends what the event is about; folding in would only restart the quiet period.
    fn already_queued(&self, path: &str) -> bool {
        let Ok(entries) = self.journal.queue_for_status(path, false) else {
            return false;
        };
        let soon = crate::journal::now_ms() + 50;
        let waiting = entries.iter().any(|e| {
            e.path == path && e.state == crate::journal::QueueState::Pending && e.not_before > soon
        });
        if !waiting || entries.iter().any(|e| e.op == Op::Rename) {
            return false;
        }
        let in_flight = self
            .engine
            .shared
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        !in_flight
            .values()
            .any(|(p, d)| p == path || d.as_deref() == Some(path))
    }

    /// Queues what lies below the folder renamed from `from` to `to` and that the journal
    /// does not record, under its old name, as it is now.
    fn requeue_unknown(&self, from: &str, to: &str) {
        each_below(&self.onprem, to, |p, m| {
            let old = format!("{from}{}", &p[to.len()..]);
            // Under its old name until the pusher has moved it, then under the new one.
            let rec = match self.journal.node(&old).ok().flatten() {
                Some(r) => Some(r),
                None => self.journal.node(p).ok().flatten(),
            };
            if m.is_dir() {
                if rec.is_none_or(|r| r.kind != crate::journal::NodeKind::Dir) {
                    self.engine.changed(Op::Mkdir, p);
                }
            } else if !rec.is_some_and(|r| r.unchanged(m)) {
                self.engine.changed(Op::Create, p);
            }
            true
        });
    }

    /// Queues everything below the folder `dir` (moved in, or made before its watch).
    fn walk(&self, dir: &str) {
        each_below(&self.onprem, dir, |p, m| {
            let op = if m.is_dir() { Op::Mkdir } else { Op::Create };
            self.engine.changed(op, p);
            true
        });
    }

    /// A scan of the whole folder, queuing what differs from the journal.
    fn scan(&self) {
        let t = Instant::now();
        let due = crate::journal::now_ms() + self.delay.as_millis() as i64;
        let syncable = |p: &str| self.engine.syncable(p);
        match crate::sync::scan::scan(&self.onprem, &self.journal, &self.ignore, &syncable, due) {
            Ok(r) => {
                info!(
                    seen = r.seen,
                    queued = r.queued,
                    ms = t.elapsed().as_millis() as u64,
                    "scan after lost events done"
                );
                self.wake.notify_one();
            }
            Err(e) => warn!(error = %e, "scan after lost events failed"),
        }
    }

    /// True while ONPREM is still the folder the door holds, at its path.
    fn still_there(&self, root: &std::fs::Metadata) -> bool {
        std::fs::symlink_metadata(self.onprem.root())
            .is_ok_and(|m| m.dev() == root.dev() && m.ino() == root.ino())
            && self
                .onprem
                .stat("")
                .ok()
                .flatten()
                .is_some_and(|m| m.nlink() > 0)
    }
}

/// Waits up to `ms` for `fd` to be readable. True when it is.
fn wait_readable(fd: &OwnedFd, ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: p is one valid pollfd for the duration of the call.
    let r = unsafe { libc::poll(&mut p, 1, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(e)
        };
    }
    Ok(r > 0)
}

/// Reads what is there without blocking; 0 when nothing is.
fn read_some(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    match rustix::io::read(fd, buf) {
        Ok(n) => Ok(n),
        Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// The time a batch of events may gather before it is handed on.
const GATHER: Duration = Duration::from_millis(20);
/// Events handed on in one batch at most.
const BATCH: usize = 4096;

// ------------------------------------------------------------------------------- fanotify

/// One fanotify event as read: its mask, the writer's pid, and its folder-and-name records.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FanEvent {
    mask: u64,
    pid: i32,
    /// (info type, the `struct file_handle` bytes, the name).
    names: Vec<(u8, Vec<u8>, Vec<u8>)>,
}

const META_LEN: usize = std::mem::size_of::<libc::fanotify_event_metadata>();

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Splits a buffer read from a fanotify group into events. Malformed tails are dropped.
fn parse_fan(buf: &[u8]) -> Vec<FanEvent> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + META_LEN <= buf.len() {
        let Some(len) = u32_at(buf, at).map(|l| l as usize) else {
            break;
        };
        if len < META_LEN || at + len > buf.len() {
            break;
        }
        let ev = &buf[at..at + len];
        let meta_len = u16_at(ev, 6).unwrap_or(META_LEN as u16) as usize;
        let mask = u64_at(ev, 8).unwrap_or(0);
        let pid = u32_at(ev, 20).unwrap_or(0) as i32;
        let mut names = Vec::new();
        let mut r = meta_len.max(META_LEN);
        // Each record: type (u8), pad (u8), len (u16), fsid (8 bytes), file_handle, name.
        while r + 4 <= ev.len() {
            let kind = ev[r];
            let rlen = u16_at(ev, r + 2).unwrap_or(0) as usize;
            if rlen < 4 || r + rlen > ev.len() {
                break;
            }
            let rec = &ev[r..r + rlen];
            if matches!(
                kind,
                libc::FAN_EVENT_INFO_TYPE_DFID_NAME
                    | libc::FAN_EVENT_INFO_TYPE_OLD_DFID_NAME
                    | libc::FAN_EVENT_INFO_TYPE_NEW_DFID_NAME
            ) && let Some(hb) = u32_at(rec, 12).map(|h| h as usize)
                && 20 + hb <= rec.len()
            {
                let handle = rec[12..20 + hb].to_vec();
                let tail = &rec[20 + hb..];
                let name = tail.split(|&c| c == 0).next().unwrap_or(&[]).to_vec();
                names.push((kind, handle, name));
            }
            r += rlen;
        }
        out.push(FanEvent { mask, pid, names });
        at += len;
    }
    out
}

struct Fanotify {
    fd: OwnedFd,
    /// An `O_PATH` descriptor of ONPREM, naming its filesystem to `open_by_handle_at`.
    mount_fd: OwnedFd,
    /// ONPREM's path with every link resolved, as `/proc/self/fd` reports folders.
    real: PathBuf,
    root: std::fs::Metadata,
    pid: i32,
}

impl Fanotify {
    fn new(fd: OwnedFd, b: &Beside) -> io::Result<Fanotify> {
        let real = std::fs::canonicalize(b.onprem.root())?;
        // open_by_handle_at refuses an `O_PATH` descriptor.
        let mount_fd = rustix::fs::open(
            &real,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        let root = std::fs::File::from(mount_fd.try_clone()?).metadata()?;
        Ok(Fanotify {
            fd,
            mount_fd,
            real,
            root,
            pid: std::process::id() as i32,
        })
    }

    fn run(self, b: &Beside) -> io::Result<()> {
        info!(
            watch = "fanotify",
            "watching the on-premise folder for changes made beside the mount"
        );
        let mut buf = vec![0u8; 256 * 1024];
        let mut lost = Once::default();
        let mut gone = Once::default();
        let mut last_check = Instant::now();
        // Folder handles and where they are beneath ONPREM (`None`: not beneath it). The mark
        // sees the whole filesystem, so most events name folders elsewhere: each is looked up
        // once. A folder rename or delete anywhere forgets them all.
        let mut cache: HashMap<Vec<u8>, Option<String>> = HashMap::new();
        while !b.stop.is_cancelled() {
            if last_check.elapsed() >= Duration::from_secs(1) {
                last_check = Instant::now();
                if !b.still_there(&self.root) {
                    gone.warn("the on-premise folder was removed or unmounted under the watch; changes made straight in it are found by the rescans only");
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
            }
            if !wait_readable(&self.fd, 200)? {
                continue;
            }
            std::thread::sleep(GATHER);
            let mut raw = Vec::new();
            loop {
                let n = read_some(&self.fd, &mut buf)?;
                if n == 0 {
                    break;
                }
                raw.extend(parse_fan(&buf[..n]));
                if raw.len() >= BATCH {
                    break;
                }
            }
            // Folders are named as they are now, once per batch: a folder renamed anywhere
            // (perhaps into ONPREM) makes every handle worth looking up again.
            if cache.len() > 65536
                || raw
                    .iter()
                    .any(|e| e.mask & libc::FAN_RENAME != 0 && e.mask & libc::FAN_ONDIR != 0)
            {
                cache.clear();
            }
            let mut evs = Vec::new();
            for e in &raw {
                self.translate(e, b, &mut cache, &mut evs);
            }
            // Only what is not beneath ONPREM is remembered past the batch.
            cache.retain(|_, v| v.is_none());
            at_event_time(&mut evs);
            if !evs.is_empty() {
                b.apply(evs, &mut lost);
            }
        }
        Ok(())
    }

    /// The path beneath ONPREM of the folder with file handle `handle`, when it is one.
    fn folder(&self, b: &Beside, handle: &[u8]) -> Option<String> {
        // The handle, copied into memory aligned for `struct file_handle`.
        let mut h = vec![0u64; handle.len().div_ceil(8) + 1];
        // SAFETY: h holds at least handle.len() bytes; the regions do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                handle.as_ptr(),
                h.as_mut_ptr().cast::<u8>(),
                handle.len(),
            )
        };
        // SAFETY: h is a complete `struct file_handle` (handle_bytes, handle_type, f_handle),
        // as the kernel reported it; mount_fd is an open descriptor on ONPREM's filesystem.
        let fd = unsafe {
            libc::open_by_handle_at(
                self.mount_fd.as_raw_fd(),
                h.as_mut_ptr().cast::<libc::file_handle>(),
                libc::O_PATH | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return None;
        }
        // SAFETY: fd is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let m = std::fs::File::from(fd.try_clone().ok()?).metadata().ok()?;
        if m.dev() != self.root.dev() || !m.is_dir() {
            return None;
        }
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())).ok()?;
        let rel = link.strip_prefix(&self.real).ok()?.to_str()?.to_string();
        // The name the kernel gave is only a hint: the folder of that name beneath ONPREM,
        // opened through the door (no links, never above ONPREM), must be this very one.
        let there = b.onprem.stat(&rel).ok()??;
        (there.dev() == m.dev() && there.ino() == m.ino()).then_some(rel)
    }

    /// Turns one fanotify event into changes beneath ONPREM.
    fn translate(
        &self,
        e: &FanEvent,
        b: &Beside,
        cache: &mut HashMap<Vec<u8>, Option<String>>,
        out: &mut Vec<Ev>,
    ) {
        if e.mask & libc::FAN_Q_OVERFLOW != 0 {
            out.push(Ev::Lost);
            return;
        }
        if e.pid == self.pid {
            return;
        }
        let mut path_of = |kind: u8| -> Option<Option<String>> {
            let (_, handle, name) = e.names.iter().find(|(k, ..)| *k == kind)?;
            let dir = cache
                .entry(handle.clone())
                .or_insert_with(|| self.folder(b, handle))
                .clone();
            Some(dir.and_then(|d| child(&d, name)))
        };
        let dir = e.mask & libc::FAN_ONDIR != 0;
        if e.mask & libc::FAN_RENAME != 0 {
            let from = path_of(libc::FAN_EVENT_INFO_TYPE_OLD_DFID_NAME).flatten();
            let to = path_of(libc::FAN_EVENT_INFO_TYPE_NEW_DFID_NAME).flatten();
            match (from, to) {
                (Some(from), Some(to)) => out.push(Ev::Rename { from, to, dir }),
                (Some(from), None) => out.push(Ev::Delete(from)),
                (None, Some(to)) => out.push(Ev::MovedIn { path: to, dir }),
                (None, None) => {}
            }
            return;
        }
        let Some(Some(path)) = path_of(libc::FAN_EVENT_INFO_TYPE_DFID_NAME) else {
            return;
        };
        if e.mask & libc::FAN_CREATE != 0 {
            out.push(Ev::Create {
                path: path.clone(),
                dir,
            });
        }
        if e.mask & libc::FAN_CLOSE_WRITE != 0 {
            out.push(Ev::Write(path.clone()));
        }
        // A folder's mode, owner and times stay on-premise: nothing to push.
        if e.mask & libc::FAN_ATTRIB != 0 && !dir {
            out.push(Ev::Attrib(path.clone()));
        }
        if e.mask & libc::FAN_DELETE != 0 {
            out.push(Ev::Delete(path));
        }
    }
}

/// Rewrites the paths of a batch, named by folders as they are after the whole batch, to the
/// names they had when each event happened: a folder renamed later in the batch is renamed
/// back for every event before its rename, latest rename first. So `mv d/x d/y; mv d e` is
/// `d/x → d/y`, then `d → e`, not `e/x → e/y` before `d` is renamed.
fn at_event_time(evs: &mut [Ev]) {
    // Only the folder part was named late; the last name is the event's own.
    fn back(p: &mut String, later: &[(String, String)]) {
        let (mut dir, name) = match p.rsplit_once('/') {
            Some((d, n)) => (d.to_string(), n.to_string()),
            None => return,
        };
        for (from, to) in later.iter() {
            if crate::cloud::is_within(&dir, to) {
                dir = format!("{from}{}", &dir[to.len()..]);
            }
        }
        *p = crate::cloud::join(&dir, &name);
    }
    // Folder renames after the event at hand, the latest first: the order they are undone in.
    let mut later: Vec<(String, String)> = Vec::new();
    for ev in evs.iter_mut().rev() {
        let undo = &later;
        match ev {
            Ev::Create { path, .. }
            | Ev::Write(path)
            | Ev::Attrib(path)
            | Ev::Delete(path)
            | Ev::MovedIn { path, .. } => back(path, undo),
            Ev::Rename { from, to, dir } => {
                back(from, undo);
                back(to, undo);
                if *dir {
                    later.push((from.clone(), to.clone()));
                }
            }
            Ev::Lost => {}
        }
    }
}

/// `dir/name` when `name` is one plain UTF-8 name; the root itself has no event of its own.
fn child(dir: &str, name: &[u8]) -> Option<String> {
    let name = std::str::from_utf8(name).ok()?;
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return None;
    }
    Some(crate::cloud::join(dir, name))
}

// -------------------------------------------------------------------------------- inotify

use rustix::fs::inotify::{ReadFlags, WatchFlags};

/// The events inotify watches on each folder.
fn ino_mask() -> WatchFlags {
    WatchFlags::CREATE
        | WatchFlags::CLOSE_WRITE
        | WatchFlags::DELETE
        | WatchFlags::MOVED_FROM
        | WatchFlags::MOVED_TO
        | WatchFlags::ATTRIB
        | WatchFlags::DELETE_SELF
        | WatchFlags::MOVE_SELF
        | WatchFlags::ONLYDIR
        | WatchFlags::DONT_FOLLOW
        | WatchFlags::EXCL_UNLINK
}

/// One inotify event, its folder already named.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InoEvent {
    flags: u32,
    cookie: u32,
    path: String,
}

/// Calls `f` with the path and metadata of everything below the folder `dir` of ONPREM
/// (names that are not UTF-8 left out), each folder before what it holds; a folder is gone
/// into when `f` returns true for it.
fn each_below(
    onprem: &crate::onprem::Onprem,
    dir: &str,
    mut f: impl FnMut(&str, &std::fs::Metadata) -> bool,
) {
    let mut stack = vec![dir.to_string()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = onprem.read_dir(&d) else {
            continue;
        };
        for de in rd.flatten() {
            let Some(name) = de.name.to_str() else {
                continue;
            };
            let Ok(m) = de.meta else { continue };
            let p = crate::cloud::join(&d, name);
            if f(&p, &m) && m.is_dir() {
                stack.push(p);
            }
        }
    }
}

/// Pairs the two halves of each rename by cookie; a half without its pair is a move out of
/// (or into) the watched tree. `held` keeps a move-out whose pair may still come in the next
/// read; what stays in it past that read is a move out.
#[cfg(test)]
fn pair(events: Vec<InoEvent>, held: &mut Vec<InoEvent>) -> Vec<Ev> {
    let mut out = Vec::new();
    for e in events {
        pair_one(e, held, &mut out);
    }
    out
}

/// [`pair`] for one event.
fn pair_one(e: InoEvent, held: &mut Vec<InoEvent>, out: &mut Vec<Ev>) {
    let from_flag = ReadFlags::MOVED_FROM.bits();
    let to_flag = ReadFlags::MOVED_TO.bits();
    let dir_flag = ReadFlags::ISDIR.bits();
    {
        let dir = e.flags & dir_flag != 0;
        if e.flags & ReadFlags::QUEUE_OVERFLOW.bits() != 0 {
            out.push(Ev::Lost);
        } else if e.flags & from_flag != 0 {
            held.push(e);
        } else if e.flags & to_flag != 0 {
            match held.iter().position(|h| h.cookie == e.cookie) {
                Some(i) => {
                    let from = held.remove(i);
                    out.push(Ev::Rename {
                        from: from.path,
                        to: e.path,
                        dir,
                    });
                }
                None => out.push(Ev::MovedIn { path: e.path, dir }),
            }
        } else if e.flags & ReadFlags::CREATE.bits() != 0 {
            out.push(Ev::Create { path: e.path, dir });
        } else if e.flags & ReadFlags::CLOSE_WRITE.bits() != 0 {
            out.push(Ev::Write(e.path));
        } else if e.flags & ReadFlags::ATTRIB.bits() != 0 && !dir {
            out.push(Ev::Attrib(e.path));
        } else if e.flags & ReadFlags::DELETE.bits() != 0 {
            out.push(Ev::Delete(e.path));
        }
    }
}

struct Inotify {
    fd: OwnedFd,
    /// Watch descriptor → the folder's path beneath ONPREM.
    dirs: HashMap<i32, String>,
    limit: Once,
    /// Some folders could not be watched (the watch limit): rescans make up for them.
    partial: bool,
}

impl Inotify {
    fn new(fd: OwnedFd) -> Inotify {
        Inotify {
            fd,
            dirs: HashMap::new(),
            limit: Once::default(),
            partial: false,
        }
    }

    /// Watches `rel` and every folder below it. With `report`, what is found below is queued
    /// too: it may have been made before its folder's watch.
    fn watch_tree(&mut self, b: &Beside, rel: &str, mut report: Option<&mut Vec<Ev>>) {
        if !self.watch_one(b, rel) {
            return;
        }
        each_below(&b.onprem, rel, |p, m| {
            if let Some(out) = report.as_deref_mut() {
                out.push(Ev::Create {
                    path: p.to_string(),
                    dir: m.is_dir(),
                });
            }
            // A folder is gone into only once it is watched.
            m.is_dir() && self.watch_one(b, p)
        });
    }

    /// Adds a watch on the folder `rel`, checked to be the folder of that name beneath ONPREM.
    fn watch_one(&mut self, b: &Beside, rel: &str) -> bool {
        let Ok(Some(before)) = b.onprem.stat(rel) else {
            return false;
        };
        if !before.is_dir() {
            return false;
        }
        let path = b.onprem.display(rel);
        match rustix::fs::inotify::add_watch(&self.fd, &path, ino_mask()) {
            Ok(wd) => {
                // The watch went on what the path named at that instant; keep it only when
                // that is still the folder beneath ONPREM.
                let same = b
                    .onprem
                    .stat(rel)
                    .ok()
                    .flatten()
                    .is_some_and(|m| m.dev() == before.dev() && m.ino() == before.ino());
                if same {
                    self.dirs.insert(wd, rel.to_string());
                } else {
                    let _ = rustix::fs::inotify::remove_watch(&self.fd, wd);
                }
                same
            }
            Err(rustix::io::Errno::NOSPC) => {
                self.partial = true;
                self.limit.warn("inotify's watch limit (fs.inotify.max_user_watches) is reached: folders beyond it are scanned now, then every 10 minutes");
                false
            }
            Err(e) => {
                debug!(path = %path.display(), error = %e, "cannot watch a folder");
                false
            }
        }
    }

    fn run(mut self, b: &Beside) -> io::Result<()> {
        // The same inotify instance, read while the watches change.
        let reader_fd = self.fd.try_clone()?;
        self.watch_tree(b, "", None);
        info!(
            watch = "inotify",
            folders = self.dirs.len(),
            "watching the on-premise folder for changes made beside the mount"
        );
        let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 256 * 1024];
        let mut lost = Once::default();
        let mut gone = Once::default();
        let mut held: Vec<InoEvent> = Vec::new();
        // Folders past the watch limit are scanned at once, then every 10 minutes.
        let mut last_scan: Option<Instant> = None;
        // ONPREM's own delete is not heard while the daemon holds it open: it is looked at.
        let root = b
            .onprem
            .stat("")?
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
        let mut last_check = Instant::now();
        while !b.stop.is_cancelled() {
            if last_check.elapsed() >= Duration::from_secs(1) {
                last_check = Instant::now();
                if !b.still_there(&root) {
                    gone.warn("the on-premise folder was removed or unmounted under the watch; changes made straight in it are found by the rescans only");
                    return Ok(());
                }
            }
            if self.partial
                && last_scan.is_none_or(|t| t.elapsed() >= crate::config::DEFAULT_RESCAN_INTERVAL)
            {
                last_scan = Some(Instant::now());
                b.scan();
            }
            if !wait_readable(&self.fd, if held.is_empty() { 200 } else { 10 })? {
                // A move-out whose pair did not come is a move out of the tree.
                if !held.is_empty() {
                    let evs: Vec<Ev> = held.drain(..).map(|e| Ev::Delete(e.path)).collect();
                    // Watches of a folder moved away no longer name anything beneath ONPREM.
                    for ev in &evs {
                        if let Ev::Delete(p) = ev {
                            let fd = &self.fd;
                            self.dirs.retain(|wd, d| {
                                let keep = !crate::cloud::is_within(d, p);
                                if !keep {
                                    let _ = rustix::fs::inotify::remove_watch(fd, *wd);
                                }
                                keep
                            });
                        }
                    }
                    b.apply(evs, &mut lost);
                }
                continue;
            }
            // A little time for the daemon's own renames to be known (see Echo), and for a
            // burst to gather.
            std::thread::sleep(if b.echo.is_some() {
                Duration::from_millis(100)
            } else {
                GATHER
            });
            let mut evs = Vec::new();
            let mut root_gone = false;
            let mut overflow = false;
            {
                let mut r = rustix::fs::inotify::Reader::new(&reader_fd, &mut buf);
                loop {
                    let e = match r.next() {
                        Ok(e) => e,
                        Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => break,
                        Err(e) => return Err(e.into()),
                    };
                    let flags = e.events();
                    if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                        overflow = true;
                        continue;
                    }
                    // A folder's own delete or move is heard in its parent; only ONPREM's
                    // matters here.
                    if flags.intersects(ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF) {
                        if self.dirs.get(&e.wd()).is_some_and(|d| d.is_empty()) {
                            root_gone = true;
                        }
                        continue;
                    }
                    if flags.contains(ReadFlags::IGNORED) || flags.contains(ReadFlags::UNMOUNT) {
                        if self.dirs.remove(&e.wd()).is_some_and(|d| d.is_empty()) {
                            root_gone = true;
                        }
                        continue;
                    }
                    let Some(dir) = self.dirs.get(&e.wd()) else {
                        continue;
                    };
                    let Some(path) = e.file_name().and_then(|n: &CStr| child(dir, n.to_bytes()))
                    else {
                        continue;
                    };
                    let n = evs.len();
                    pair_one(
                        InoEvent {
                            flags: flags.bits(),
                            cookie: e.cookie(),
                            path,
                        },
                        &mut held,
                        &mut evs,
                    );
                    match evs.get(n).cloned() {
                        // A renamed folder's watches follow it at once: the next event read
                        // may already be below its new name. A folder renamed before it was
                        // watched is watched under its new name.
                        Some(Ev::Rename {
                            from,
                            to,
                            dir: true,
                        }) => {
                            let mut watched = false;
                            for d in self.dirs.values_mut() {
                                if crate::cloud::is_within(d, &from) {
                                    *d = format!("{to}{}", &d[from.len()..]);
                                    watched = true;
                                }
                            }
                            if !watched {
                                self.watch_tree(b, &to, Some(&mut evs));
                            }
                        }
                        // A new folder is watched at once, and what is in it already queued.
                        Some(Ev::Create { path, dir: true } | Ev::MovedIn { path, dir: true }) => {
                            self.watch_tree(b, &path, Some(&mut evs))
                        }
                        _ => {}
                    }
                    if evs.len() >= BATCH {
                        break;
                    }
                }
            }
            if overflow {
                // Lost creates of folders would leave them unwatched: watch the tree again.
                self.watch_tree(b, "", None);
                evs.push(Ev::Lost);
            }
            if !evs.is_empty() {
                b.apply(evs, &mut lost);
            }
            if root_gone {
                gone.warn("the on-premise folder was removed or unmounted under the watch; changes made straight in it are found by the rescans only");
                return Ok(());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ino(flags: ReadFlags, cookie: u32, path: &str) -> InoEvent {
        InoEvent {
            flags: flags.bits(),
            cookie,
            path: path.into(),
        }
    }

    #[test]
    fn watch_modes_parse() {
        assert_eq!("auto".parse::<WatchMode>().unwrap(), WatchMode::Auto);
        assert_eq!("off".parse::<WatchMode>().unwrap(), WatchMode::Off);
        assert_eq!("inotify".parse::<WatchMode>().unwrap(), WatchMode::Inotify);
        assert!("polling".parse::<WatchMode>().is_err());
    }

    #[test]
    fn inotify_halves_pair_by_cookie() {
        let mut held = Vec::new();
        let evs = pair(
            vec![
                ino(ReadFlags::MOVED_FROM, 7, "a"),
                ino(ReadFlags::MOVED_FROM | ReadFlags::ISDIR, 9, "d"),
                ino(ReadFlags::MOVED_TO, 7, "b"),
                ino(ReadFlags::MOVED_TO, 8, "in"),
                ino(ReadFlags::CREATE | ReadFlags::ISDIR, 0, "n"),
                ino(ReadFlags::CLOSE_WRITE, 0, "n/x"),
            ],
            &mut held,
        );
        assert_eq!(
            evs,
            vec![
                Ev::Rename {
                    from: "a".into(),
                    to: "b".into(),
                    dir: false
                },
                Ev::MovedIn {
                    path: "in".into(),
                    dir: false
                },
                Ev::Create {
                    path: "n".into(),
                    dir: true
                },
                Ev::Write("n/x".into()),
            ]
        );
        // The folder's move-out waits for its pair in the next read.
        assert_eq!(held.len(), 1);
        let evs = pair(
            vec![ino(ReadFlags::MOVED_TO | ReadFlags::ISDIR, 9, "e")],
            &mut held,
        );
        assert_eq!(
            evs,
            vec![Ev::Rename {
                from: "d".into(),
                to: "e".into(),
                dir: true
            }]
        );
        assert!(held.is_empty());
    }

    /// Builds one fanotify event as the kernel lays it out.
    fn fan_bytes(mask: u64, pid: i32, recs: &[(u8, &[u8], &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (kind, fh, name) in recs {
            let mut r = vec![*kind, 0, 0, 0];
            r.extend_from_slice(&[0u8; 8]); // fsid
            r.extend_from_slice(&(fh.len() as u32).to_ne_bytes());
            r.extend_from_slice(&1i32.to_ne_bytes()); // handle type
            r.extend_from_slice(fh);
            r.extend_from_slice(name);
            r.push(0);
            while r.len() % 4 != 0 {
                r.push(0);
            }
            let l = r.len() as u16;
            r[2..4].copy_from_slice(&l.to_ne_bytes());
            body.extend(r);
        }
        let len = (META_LEN + body.len()) as u32;
        let mut ev = Vec::new();
        ev.extend_from_slice(&len.to_ne_bytes());
        ev.push(libc::FANOTIFY_METADATA_VERSION);
        ev.push(0);
        ev.extend_from_slice(&(META_LEN as u16).to_ne_bytes());
        ev.extend_from_slice(&mask.to_ne_bytes());
        ev.extend_from_slice(&libc::FAN_NOFD.to_ne_bytes());
        ev.extend_from_slice(&pid.to_ne_bytes());
        assert_eq!(ev.len(), META_LEN);
        ev.extend(body);
        ev
    }

    #[test]
    fn fanotify_records_parse() {
        let mut buf = fan_bytes(
            libc::FAN_RENAME,
            42,
            &[
                (
                    libc::FAN_EVENT_INFO_TYPE_OLD_DFID_NAME,
                    b"12345678",
                    b"old.txt",
                ),
                (
                    libc::FAN_EVENT_INFO_TYPE_NEW_DFID_NAME,
                    b"abcdefgh",
                    b"new.txt",
                ),
            ],
        );
        buf.extend(fan_bytes(libc::FAN_Q_OVERFLOW, 0, &[]));
        // A torn tail is dropped.
        buf.extend_from_slice(&[1, 2, 3]);
        let evs = parse_fan(&buf);
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].pid, 42);
        assert_eq!(evs[0].mask, libc::FAN_RENAME);
        assert_eq!(evs[0].names.len(), 2);
        let (kind, fh, name) = &evs[0].names[1];
        assert_eq!(*kind, libc::FAN_EVENT_INFO_TYPE_NEW_DFID_NAME);
        assert_eq!(&fh[8..], b"abcdefgh", "the handle keeps its header");
        assert_eq!(u32::from_ne_bytes(fh[..4].try_into().unwrap()), 8);
        assert_eq!(name, b"new.txt");
        assert_eq!(evs[1].mask, libc::FAN_Q_OVERFLOW);
        assert!(evs[1].names.is_empty());
    }

    #[test]
    fn fanotify_paths_are_put_back_to_event_time() {
        let r = |from: &str, to: &str, dir| Ev::Rename {
            from: from.into(),
            to: to.into(),
            dir,
        };
        // mv d/x d/y; mv d e; mkdir e/f; mv e/f g; write g/z; mv g h, each folder
        // named as it is at the end.
        let mut evs = vec![
            r("e/x", "e/y", false),
            r("d", "e", true),
            Ev::Create {
                path: "e/f".into(),
                dir: true,
            },
            r("e/f", "g", true),
            Ev::Write("h/z".into()),
            r("g", "h", true),
            Ev::Write("h/w".into()),
            // mv a b; mv c a: the first rename's names are its own.
            r("a", "b", false),
            r("c", "a", true),
        ];
        at_event_time(&mut evs);
        assert_eq!(
            evs,
            vec![
                r("d/x", "d/y", false),
                r("d", "e", true),
                Ev::Create {
                    path: "e/f".into(),
                    dir: true
                },
                r("e/f", "g", true),
                Ev::Write("g/z".into()),
                r("g", "h", true),
                Ev::Write("h/w".into()),
                r("a", "b", false),
                r("c", "a", true),
            ]
        );
    }

    #[test]
    fn names_from_the_kernel_are_plain() {
        assert_eq!(child("", b"a").as_deref(), Some("a"));
        assert_eq!(child("d/e", b"f").as_deref(), Some("d/e/f"));
        for bad in [&b".."[..], b".", b"", b"a/b", b"\xff"] {
            assert_eq!(child("d", bad), None);
        }
    }

    #[test]
    fn own_renames_are_remembered() {
        let e = Echo::default();
        e.rename("a", "b");
        assert!(e.is_own_rename("a", "b"));
        assert!(!e.is_own_rename("b", "a"));
        e.path("x");
        assert!(!e.is_own_rename("x", "y"));
        e.path("y");
        assert!(e.is_own_rename("x", "y"));
    }
}
