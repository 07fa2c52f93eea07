//! The control socket: how `cloudsync status|sync|pause|resume|conflicts|unsync` talk to a
//! running daemon.
//!
//! The socket lives in the state dir with mode 0600, so only the daemon's owner may use it. The
//! CLI finds it through the virtual xattr `user.cloudsync.control` on the mount's root. Each
//! connection carries one JSON request line and gets one JSON response line. The CLI never
//! touches the journal itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::cloud::{self, Cloud, Precondition};
use crate::journal::Journal;
use crate::sync::conflict::is_conflict_name;
use crate::sync::progress::{InitialSync, Transferred};
use crate::sync::{CounterSnapshot, Engine};

pub use crate::status::XATTR_CONTROL;

/// A request to the daemon.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    /// The status of items (all when `paths` is empty) and a summary of the mount.
    Status {
        /// Paths relative to the on-premise root.
        paths: Vec<String>,
        /// Only failed and conflicting items.
        failed: bool,
    },
    /// Push these paths now (re-pushing DELETED_ON_CLOUD items); pull at once.
    Sync {
        /// Paths relative to the on-premise root; empty means everything.
        paths: Vec<String>,
        /// Pull before answering, and report what the pull cost (`sync --now`). Otherwise
        /// the pull runs in the background once the queue is drained.
        #[serde(default)]
        now: bool,
    },
    /// Pause pushing and/or pulling.
    Pause {
        /// Pause pushing.
        push: bool,
        /// Pause pulling.
        pull: bool,
    },
    /// Resume pushing and/or pulling.
    Resume {
        /// Resume pushing.
        push: bool,
        /// Resume pulling.
        pull: bool,
    },
    /// List conflict copies and their originals.
    Conflicts,
    /// Pull cloud changes now and report what the pull cost.
    Pull,
    /// Take a folder or file out of sync.
    Unsync {
        /// Path relative to the on-premise root.
        path: String,
        /// Also delete the cloud copy.
        delete_cloud: bool,
    },
    /// Describe the mount's setup, for `cloudsync doctor`.
    Describe,
}

/// How a running mount is set up: what `cloudsync doctor MOUNTPOINT` checks. It holds no
/// secret: the password stays in its file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Setup {
    /// The daemon's process id.
    pub pid: u32,
    /// The on-premise folder.
    pub onprem: PathBuf,
    /// The mount point.
    pub mountpoint: PathBuf,
    /// The cloud URL, without credentials.
    pub cloud: String,
    /// The state dir.
    pub state_dir: PathBuf,
    /// The cloud user, if any.
    pub user: Option<String>,
    /// The password file, if the password came from one.
    pub password_file: Option<PathBuf>,
    /// The private CA file, if any.
    pub ca_file: Option<PathBuf>,
    /// Whether FUSE passthrough was asked for.
    pub passthrough: bool,
}

/// One item of a status report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Item {
    /// Path relative to the on-premise root.
    pub path: String,
    /// Status word.
    pub status: String,
    /// `CODE: detail` when failed; for a `pending` file, why, when there is more to say
    /// (`open for writing`).
    pub error: Option<String>,
    /// The original, for a conflict copy.
    pub original: Option<String>,
}

/// A summary of the mount.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    /// Entries in the queue.
    pub queued: u64,
    /// Entries failed or in conflict.
    pub failed: u64,
    /// Transfers running now.
    pub in_flight: u64,
    /// Since when the cloud is unreachable (RFC 3339), if it is.
    pub offline_since: Option<String>,
    /// Pushing paused.
    pub push_paused: bool,
    /// Pulling paused.
    pub pull_paused: bool,
    /// Pushing stopped after the cloud refused the credentials.
    pub auth_paused: bool,
    /// Push and pull counters.
    pub counters: CounterSnapshot,
    /// Files and bytes uploaded and downloaded since the daemon started.
    #[serde(default)]
    pub transferred: Transferred,
    /// The initial sync, while it runs: the start-up scan, what it queued, and the first
    /// pull's downloads.
    #[serde(default)]
    pub initial_sync: Option<InitialSync>,
}

/// The answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Response {
    /// False when the request failed; see `error`.
    pub ok: bool,
    /// What went wrong.
    pub error: Option<String>,
    /// Items, for status and conflicts.
    pub items: Vec<Item>,
    /// The mount summary, for status.
    pub summary: Option<Summary>,
    /// The mount's setup, for describe.
    #[serde(default)]
    pub setup: Option<Setup>,
    /// What a pull did, for pull.
    pub pull: Option<PullStats>,
}

/// What one pull did and cost.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PullStats {
    /// Listing requests sent.
    pub requests: u64,
    /// Wall time in ms.
    pub ms: f64,
    /// Files downloaded.
    pub downloaded: u64,
    /// Conflicts resolved.
    pub conflicts: u64,
    /// Other changes applied.
    pub other: u64,
}

impl Response {
    fn err(e: impl std::fmt::Display) -> Response {
        Response {
            ok: false,
            error: Some(e.to_string()),
            ..Default::default()
        }
    }
}

/// What the control server needs.
pub struct Control {
    /// The engine (status, sets, unsynced list).
    pub engine: Arc<Engine>,
    /// The journal.
    pub journal: Arc<Journal>,
    /// The cloud, for `unsync --delete-cloud`.
    pub cloud: Arc<dyn Cloud>,
    /// The on-premise folder, reached only through its door.
    pub onprem: Arc<crate::onprem::Onprem>,
    /// Wakes the pusher.
    pub wake_pusher: Arc<Notify>,
    /// Triggers a pull.
    pub pull_now: Arc<Notify>,
    /// The puller, for a pull on request.
    pub puller: Arc<crate::sync::pull::Puller>,
    /// The mount's setup, for describe.
    pub setup: Setup,
}

fn clean(p: &str) -> Result<String, String> {
    let p = p.trim_matches('/').to_string();
    cloud::check_rel_path(&p).map_err(|_| format!("{p:?} is not a path inside the mount"))?;
    Ok(p)
}

impl Control {
    /// Serves requests on `socket` until the task is dropped.
    /// Binds the control socket at `socket`, so that it answers as soon as the mount is
    /// reported ready. Needs a tokio runtime context.
    pub fn bind(socket: &Path) -> std::io::Result<tokio::net::UnixListener> {
        let _ = std::fs::remove_file(socket);
        // Bound in a fresh folder only the daemon can enter, made private, and only then
        // moved to its name: the socket is never reachable by others, not even for an instant.
        let parent = socket.parent().unwrap_or(Path::new("."));
        let private = tempfile::Builder::new()
            .prefix(".control-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir_in(parent)?;
        let fresh = private.path().join("s");
        let listener = {
            let (_dir, short) = reachable(&fresh)?;
            tokio::net::UnixListener::bind(&short)?
        };
        std::fs::set_permissions(&fresh, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        std::fs::rename(&fresh, socket)?;
        drop(private);
        Ok(listener)
    }

    /// Answers requests on `listener` until the runtime ends.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::UnixListener) -> std::io::Result<()> {
        loop {
            let (stream, _) = listener.accept().await?;
            let me = self.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut line = String::new();
                if BufReader::new(r).read_line(&mut line).await.is_err() {
                    return;
                }
                let resp = match serde_json::from_str::<Request>(&line) {
                    Ok(req) => me.handle(req).await,
                    Err(e) => Response::err(format!("bad request: {e}")),
                };
                let mut out = serde_json::to_string(&resp).unwrap_or_default();
                out.push('\n');
                let _ = w.write_all(out.as_bytes()).await;
            });
        }
    }

    /// Answers one request: the socket's and the status page's.
    pub async fn handle(&self, req: Request) -> Response {
        match req {
            Request::Status { paths, failed } => self.status(paths, failed),
            Request::Sync { paths, now } => self.sync(paths, now).await,
            Request::Pause { push, pull } => self.pause(push, pull, true),
            Request::Resume { push, pull } => self.pause(push, pull, false),
            Request::Conflicts => self.conflicts(),
            Request::Pull => self.pull().await,
            Request::Unsync { path, delete_cloud } => self.unsync(path, delete_cloud).await,
            Request::Describe => Response {
                ok: true,
                setup: Some(self.setup.clone()),
                ..Default::default()
            },
        }
    }

    fn item(&self, path: &str) -> Item {
        match self.onprem.stat(path) {
            Ok(Some(m)) => {
                let (st, err) = self.engine.status(path, &m);
                let name = path.rsplit('/').next().unwrap_or(path);
                Item {
                    path: path.to_string(),
                    status: st.as_str().to_string(),
                    error: err,
                    original: is_conflict_name(name).then(|| original_of(path)),
                }
            }
            Ok(None) => Item {
                path: path.to_string(),
                status: "missing".into(),
                error: Some("nothing is there on-premise".into()),
                original: None,
            },
            Err(e) => Item {
                path: path.to_string(),
                status: "missing".into(),
                error: Some(e.to_string()),
                original: None,
            },
        }
    }

    /// The summary of the mount now.
    pub fn summary(&self) -> Summary {
        let sh = &self.engine.shared;
        let (queued, failed) = self.journal.queue_counts().unwrap_or((0, 0));
        let offline = *sh.offline_since.lock().unwrap_or_else(|p| p.into_inner());
        // Read before the summary below, which holds the in-flight lock while it is built.
        let initial_sync = match crate::sync::progress::initial_sync(sh, (queued, failed)) {
            (s, true) => Some(s),
            (_, false) => None,
        };
        Summary {
            queued,
            failed,
            in_flight: sh.in_flight.lock().unwrap_or_else(|p| p.into_inner()).len() as u64,
            offline_since: offline.map(|ms| {
                crate::status::rfc3339(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64),
                )
            }),
            push_paused: sh.push_paused.load(Ordering::Relaxed),
            pull_paused: sh.pull_paused.load(Ordering::Relaxed),
            auth_paused: sh.auth_paused.load(Ordering::Relaxed),
            counters: sh.counters.snapshot(),
            transferred: sh.progress.transferred(),
            initial_sync,
        }
    }

    fn status(&self, paths: Vec<String>, failed_only: bool) -> Response {
        let mut items = Vec::new();
        if paths.is_empty() {
            // Everything: walk the on-premise folder.
            let mut stack = vec![String::new()];
            while let Some(dir) = stack.pop() {
                let Ok(rd) = self.onprem.read_dir(&dir) else {
                    continue;
                };
                for de in rd.flatten() {
                    let Some(name) = de.name.to_str().map(str::to_string) else {
                        continue;
                    };
                    let p = cloud::join(&dir, &name);
                    if de.meta.as_ref().is_ok_and(|m| m.is_dir()) {
                        stack.push(p.clone());
                    }
                    items.push(self.item(&p));
                }
            }
            // Failures of cloud items with nothing on-premise (say, one whose way is blocked
            // by a link) are listed too: they are not met by the walk.
            for e in self.journal.failed_entries().unwrap_or_default() {
                // What is there on-premise was met by the walk.
                if !matches!(self.onprem.stat(&e.path), Ok(Some(_))) {
                    let code = e.failure.map_or("UNKNOWN", |c| c.as_str());
                    items.push(Item {
                        path: e.path,
                        status: "failed".into(),
                        error: Some(format!("{code}: {}", e.last_error.unwrap_or_default())),
                        original: None,
                    });
                }
            }
            items.sort_by(|a, b| a.path.cmp(&b.path));
            items.dedup_by(|a, b| a.path == b.path);
        } else {
            for p in paths {
                match clean(&p) {
                    Ok(p) => items.push(self.item(&p)),
                    Err(e) => return Response::err(e),
                }
            }
        }
        if failed_only {
            items.retain(|i| i.status == "failed" || i.status == "conflict");
        }
        Response {
            ok: true,
            items,
            summary: Some(self.summary()),
            ..Default::default()
        }
    }

    async fn sync(&self, paths: Vec<String>, now: bool) -> Response {
        let mut clean_paths = Vec::new();
        for p in paths {
            match clean(&p) {
                Ok(p) => clean_paths.push(p),
                Err(e) => return Response::err(e),
            }
        }
        match self.engine.request_sync(&clean_paths, !now) {
            // The pull of `sync --now` is the one the request asks for: the background puller
            // is not woken for another.
            Ok(()) if now => self.pull().await,
            Ok(()) => Response {
                ok: true,
                ..Default::default()
            },
            Err(e) => Response::err(e),
        }
    }

    fn pause(&self, push: bool, pull: bool, on: bool) -> Response {
        let (push, pull) = if !push && !pull {
            (true, true)
        } else {
            (push, pull)
        };
        let sh = &self.engine.shared;
        if push {
            sh.push_paused.store(on, Ordering::Relaxed);
        }
        if pull {
            sh.pull_paused.store(on, Ordering::Relaxed);
        }
        info!(
            push,
            pull,
            paused = on,
            "sync {}",
            if on { "paused" } else { "resumed" }
        );
        if !on {
            self.wake_pusher.notify_one();
            self.pull_now.notify_one();
        }
        Response {
            ok: true,
            summary: Some(self.summary()),
            ..Default::default()
        }
    }

    async fn pull(&self) -> Response {
        let t = std::time::Instant::now();
        // This pull stands for one a sync request may have asked for.
        self.engine
            .shared
            .pull_requested_at
            .store(0, std::sync::atomic::Ordering::Relaxed);
        match self.puller.pull_counted().await {
            Ok(r) => Response {
                ok: true,
                pull: Some(PullStats {
                    requests: r.requests,
                    ms: t.elapsed().as_secs_f64() * 1000.0,
                    downloaded: r.downloaded,
                    conflicts: r.conflicts,
                    other: r.other,
                }),
                ..Default::default()
            },
            Err(e) => Response::err(format!("pull failed: {e}")),
        }
    }

    fn conflicts(&self) -> Response {
        let mut r = self.status(Vec::new(), false);
        r.items.retain(|i| i.original.is_some());
        r.summary = None;
        r
    }

    async fn unsync(&self, path: String, delete_cloud: bool) -> Response {
        let path = match clean(&path) {
            Ok(p) => p,
            Err(e) => return Response::err(e),
        };
        let Some(set) = self.engine.scope.sets.set_for(&path) else {
            return Response::err(format!("{path} is not in any sync set"));
        };
        let cpath = set.to_cloud(&path);
        if delete_cloud && cpath.is_empty() {
            return Response::err(format!(
                "{} is paired with the cloud root; refusing to delete the whole cloud (unsync without --delete-cloud)",
                if path.is_empty() { "the mount" } else { &path }
            ));
        }
        if let Err(e) = self.engine.unsync(&path) {
            return Response::err(e);
        }
        if delete_cloud {
            match self.cloud.delete(&cpath, &Precondition::None).await {
                Ok(()) | Err(cloud::CloudError::NotFound) => {}
                Err(e) => {
                    warn!(path, error = %e, "unsync: cannot delete the cloud copy");
                    return Response::err(format!(
                        "unsynced, but the cloud copy could not be deleted: {e}"
                    ));
                }
            }
        }
        Response {
            ok: true,
            ..Default::default()
        }
    }
}

/// One mount's part of `cloudsync status --json`: its mount point, the items and the summary
/// of a status answer.
pub fn status_report(mountpoint: &Path, r: &Response) -> serde_json::Value {
    serde_json::json!({ "mountpoint": mountpoint, "items": r.items, "summary": r.summary })
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Items as `cloudsync status --csv` prints them: a header line, then one line per item with
/// absolute paths.
pub fn status_csv(mountpoint: &Path, items: &[Item]) -> String {
    let mut out = String::from("path,status,error,original\n");
    for i in items {
        let original = i
            .original
            .as_deref()
            .map(|o| mountpoint.join(o).to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push_str(&format!(
            "{},{},{},{}\n",
            csv_field(&mountpoint.join(&i.path).to_string_lossy()),
            csv_field(&i.status),
            csv_field(i.error.as_deref().unwrap_or("")),
            csv_field(&original)
        ));
    }
    out
}

/// The original of a conflict copy: the name without ` (conflict …)`.
pub fn original_of(copy: &str) -> String {
    match copy.rfind(" (conflict ") {
        Some(i) => {
            let tail = &copy[i..];
            let after = tail.find(')').map(|j| &tail[j + 1..]).unwrap_or("");
            format!("{}{}", &copy[..i], after)
        }
        None => copy.to_string(),
    }
}

/// A socket address has room for about 107 bytes of path. A longer `socket` path is reached
/// through its folder, opened here: `/proc/self/fd/N/NAME`. Keep the returned folder open
/// until the bind or connect is done.
fn reachable(socket: &Path) -> std::io::Result<(Option<std::fs::File>, PathBuf)> {
    if socket.as_os_str().len() < 100 {
        return Ok((None, socket.to_path_buf()));
    }
    let (Some(dir), Some(name)) = (socket.parent(), socket.file_name()) else {
        return Ok((None, socket.to_path_buf()));
    };
    use std::os::unix::fs::OpenOptionsExt;
    let d = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(dir)?;
    let short = Path::new("/proc/self/fd")
        .join(std::os::fd::AsRawFd::as_raw_fd(&d).to_string())
        .join(name);
    Ok((Some(d), short))
}

/// Sends one request to the daemon behind `socket`.
pub fn request(socket: &Path, req: &Request) -> anyhow::Result<Response> {
    use std::io::{BufRead, Write};
    let connect = || -> std::io::Result<std::os::unix::net::UnixStream> {
        let (_dir, short) = reachable(socket)?;
        std::os::unix::net::UnixStream::connect(short)
    };
    let mut s = connect().map_err(|e| {
        anyhow::anyhow!(
            "cannot reach the daemon at {}: {e} (is it running, and are you its owner?)",
            socket.display()
        )
    })?;
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut out = String::new();
    std::io::BufReader::new(s).read_line(&mut out)?;
    Ok(serde_json::from_str(&out)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn originals() {
        assert_eq!(
            original_of("a/report (conflict 2026-01-02 030405).odt"),
            "a/report.odt"
        );
        assert_eq!(
            original_of("Makefile (conflict 2026-01-02 030405)"),
            "Makefile"
        );
    }

    #[test]
    fn requests_round_trip() {
        let r = Request::Unsync {
            path: "a".into(),
            delete_cloud: true,
        };
        let s = serde_json::to_string(&r).unwrap();
        assert!(s.contains("\"cmd\":\"unsync\""), "{s}");
        assert_eq!(serde_json::from_str::<Request>(&s).unwrap(), r);
    }
}
