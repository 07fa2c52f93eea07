//! The sync engine: hears changes from the filesystem, queues them durably, answers status,
//! and drives the pusher.
//!
//! Changes travel from FUSE handlers over a channel to one journal-writer thread that commits
//! them in batches, so a FUSE request never waits for SQLite. A change still in the channel
//! when the daemon is killed is found again by the start-up scan.

pub mod busy;
pub mod conflict;
pub mod error;
pub mod intent;
pub mod ledger;
pub mod parts;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reconcile;
pub mod scan;
pub mod scope;
pub mod sets;

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use crate::fs::{Ctx, SyncHooks};
use crate::ignore::Ignore;
use crate::journal::{Change, Journal, NodeKind, NodeRecord, NodeState, Op, QueueState, now_ms};
use crate::status::{self, Status};
pub use error::{SyncError, SyncResult};

/// State shared by the engine, the pusher and status reads.
#[derive(Debug, Default)]
pub struct Shared {
    /// Entries being transferred now: queue id to (path, dest).
    pub in_flight: Mutex<HashMap<i64, (String, Option<String>)>>,
    /// Paths the puller is downloading now.
    pub downloading: PathCounts,
    /// Since when the cloud has been unreachable (ms), if it is.
    pub offline_since: Mutex<Option<i64>>,
    /// Pushing stopped after a 401, until a sync is requested.
    pub auth_paused: std::sync::atomic::AtomicBool,
    /// Pushing paused by the user.
    pub push_paused: std::sync::atomic::AtomicBool,
    /// Pulling paused by the user.
    pub pull_paused: std::sync::atomic::AtomicBool,
    /// Push and pull counters.
    pub counters: Counters,
    /// What `GET /metrics` reports: durations, bytes and failure codes.
    pub metrics: crate::metrics::SyncMetrics,
    /// Files and bytes transferred, and the initial sync.
    pub progress: progress::Progress,
    /// Paths with changes still on their way to the journal, so status never says `synced`
    /// for a change the queue has not recorded yet.
    pub unflushed: PathCounts,
    /// The source and target of each rename under way on-premise or on its way to the
    /// journal: from just before the rename until it is committed to the queue.
    pub renaming: PathCounts,
    /// When a sync request asked for a pull (ms), if that pull has not started yet. The pusher
    /// starts it once the queue is drained, so that the two do not compete for the server, or
    /// after [`PULL_AFTER_SYNC_WAIT`] whatever the queue holds.
    pub pull_requested_at: std::sync::atomic::AtomicI64,
    /// Sync requests so far: what a request asks for again (a blocked item warned about and
    /// queued once, say) is done again after the next one.
    pub sync_requests: std::sync::atomic::AtomicU64,
    /// Files open for writing through the mount (set once the mount is made), so a status
    /// read can say why a file is `pending`.
    pub writers: std::sync::OnceLock<Arc<crate::fs::handles::OpenWriters>>,
}

/// The detail of a `pending` file that a process holds open for writing through the mount.
pub const OPEN_FOR_WRITING: &str = "open for writing";

/// The longest a pull asked for by a sync request waits for the queue to drain.
pub const PULL_AFTER_SYNC_WAIT: Duration = Duration::from_secs(10);

/// Push and pull counters, for `cloudsync status`.
#[derive(Debug, Default)]
pub struct Counters {
    pushes_ok: AtomicU64,
    pushes_failed: AtomicU64,
    push_ms: AtomicU64,
    pulls_ok: AtomicU64,
    pulls_failed: AtomicU64,
    pull_ms: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct CounterSnapshot {
    /// Successful pushes.
    pub pushes_ok: u64,
    /// Failed pushes (transient or not).
    pub pushes_failed: u64,
    /// Average push duration in ms.
    pub push_avg_ms: f64,
    /// Successful pulls.
    pub pulls_ok: u64,
    /// Failed pulls.
    pub pulls_failed: u64,
    /// Average pull duration in ms.
    pub pull_avg_ms: f64,
}

impl Counters {
    /// Counts one push.
    pub fn push(&self, ok: bool, took: Duration) {
        let c = if ok {
            &self.pushes_ok
        } else {
            &self.pushes_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
        self.push_ms
            .fetch_add(took.as_millis() as u64, Ordering::Relaxed);
    }

    /// Counts one pull.
    pub fn pull(&self, ok: bool, took: Duration) {
        let c = if ok {
            &self.pulls_ok
        } else {
            &self.pulls_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
        self.pull_ms
            .fetch_add(took.as_millis() as u64, Ordering::Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> CounterSnapshot {
        let (po, pf) = (
            self.pushes_ok.load(Ordering::Relaxed),
            self.pushes_failed.load(Ordering::Relaxed),
        );
        let (lo, lf) = (
            self.pulls_ok.load(Ordering::Relaxed),
            self.pulls_failed.load(Ordering::Relaxed),
        );
        let avg = |ms: &AtomicU64, n: u64| {
            if n == 0 {
                0.0
            } else {
                ms.load(Ordering::Relaxed) as f64 / n as f64
            }
        };
        CounterSnapshot {
            pushes_ok: po,
            pushes_failed: pf,
            push_avg_ms: avg(&self.push_ms, po + pf),
            pulls_ok: lo,
            pulls_failed: lf,
            pull_avg_ms: avg(&self.pull_ms, lo + lf),
        }
    }
}

/// Paths with something under way for each (a change on its way to the journal, a download),
/// counted, so that status can ask about a path and what lies below or above it.
#[derive(Debug, Default)]
pub struct PathCounts(Mutex<HashMap<String, u32>>);

impl PathCounts {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, path: &str) {
        *self.map().entry(path.to_string()).or_default() += 1;
    }

    fn sub(&self, path: &str) {
        let mut m = self.map();
        if let Some(n) = m.get_mut(path) {
            *n -= 1;
            if *n == 0 {
                m.remove(path);
            }
        }
    }

    /// `path` itself has a count, or with `subtree` anything at or below it.
    fn under(&self, path: &str, subtree: bool) -> bool {
        let m = self.map();
        if subtree {
            !m.is_empty() && m.keys().any(|p| crate::cloud::is_within(p, path))
        } else {
            m.contains_key(path)
        }
    }

    /// `path` or one of its folders has a count.
    fn at_or_above(&self, path: &str) -> bool {
        let m = self.map();
        let mut a = path;
        loop {
            if m.contains_key(a) {
                return true;
            }
            match a.rsplit_once('/') {
                Some((up, _)) => a = up,
                None => return false,
            }
        }
    }
}

/// A download under way, counted in [`Shared::downloading`] until dropped.
pub struct Downloading<'a> {
    shared: &'a Shared,
    path: String,
}

impl Drop for Downloading<'_> {
    fn drop(&mut self) {
        self.shared.downloading.sub(&self.path);
    }
}

impl Shared {
    /// Counts a download of `path` until the returned guard is dropped: meanwhile the file and
    /// its folders read `downloading`.
    pub fn downloading(&self, path: &str) -> Downloading<'_> {
        self.downloading.add(path);
        Downloading {
            shared: self,
            path: path.to_string(),
        }
    }

    fn in_flight_under(&self, path: &str, subtree: bool) -> bool {
        let m = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        m.values().any(|(p, d)| {
            let hit = |x: &str| {
                if subtree {
                    crate::cloud::is_within(x, path)
                } else {
                    x == path
                }
            };
            hit(p) || d.as_deref().is_some_and(hit)
        })
    }

    /// True while a change to `path` or to one of its folders is still on its way to the
    /// journal: a rename of a folder above it, say, that will move its queued entry.
    pub fn unflushed_at_or_above(&self, path: &str) -> bool {
        self.unflushed.at_or_above(path)
    }

    /// True while a change at, above or below `path` is on its way to the journal.
    pub fn unflushed_over(&self, path: &str) -> bool {
        self.unflushed.at_or_above(path) || self.unflushed.under(path, true)
    }

    /// True while a rename at, above or below `path` is under way or on its way to the
    /// journal: what a push read there may be what the rename brought, under a name the
    /// queue (and so the cloud) does not give it yet.
    pub fn renaming_over(&self, path: &str) -> bool {
        self.renaming.at_or_above(path) || self.renaming.under(path, true)
    }

    fn track(&self, c: &Change, delta: i32) {
        let (paths, rename): ([Option<&String>; 2], bool) = match c {
            Change::Path(_, p) => ([Some(p), None], false),
            Change::Rename(a, b) => ([Some(a), Some(b)], true),
        };
        for p in paths.into_iter().flatten() {
            for counts in std::iter::once(&self.unflushed).chain(rename.then_some(&self.renaming)) {
                if delta > 0 {
                    counts.add(p);
                } else {
                    counts.sub(p);
                }
            }
        }
    }

    /// True when every change heard so far is in the journal: none is on its way.
    pub fn all_flushed(&self) -> bool {
        self.unflushed.map().is_empty()
    }

    /// True while the cloud is unreachable.
    pub fn is_offline(&self) -> bool {
        self.offline_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }
}

/// The journal record of an item as it is on-premise now, synced with `hash` and `etag`.
pub fn record_of(
    path: &str,
    m: &std::fs::Metadata,
    hash: Option<String>,
    etag: Option<String>,
) -> NodeRecord {
    NodeRecord {
        path: path.to_string(),
        kind: if m.is_dir() {
            NodeKind::Dir
        } else {
            NodeKind::File
        },
        size: if m.is_dir() { 0 } else { m.size() },
        mtime_ns: mtime_ns(m),
        ctime_ns: ctime_ns(m),
        ino: m.ino(),
        hash,
        etag,
        state: NodeState::Synced,
        error: None,
        synced_at: Some(now_ms()),
    }
}

/// The URL of a cloud path under the cloud's base URL, each segment percent-encoded.
pub fn cloud_url(base: &str, cloud_path: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        .add(b'`')
        .add(b'{')
        .add(b'}')
        .add(b'/');
    let mut url = base.trim_end_matches('/').to_string();
    for seg in cloud_path.split('/').filter(|s| !s.is_empty()) {
        url.push('/');
        url.push_str(&percent_encoding::utf8_percent_encode(seg, SEGMENT).to_string());
    }
    url
}

/// The engine's face towards the filesystem.
pub struct Engine {
    journal: Arc<Journal>,
    /// What is synced and where it goes (sets, ignore list, unsynced folders), shared with
    /// the pusher and the puller; the unsynced folders are kept in the journal.
    pub scope: Arc<scope::Scope>,
    /// The control socket, shown on the mount root as `user.cloudsync.control`.
    control_socket: Option<String>,
    /// The cloud URL without credentials, for `user.cloudsync.cloud_url`.
    cloud_base: Option<String>,
    /// Woken after each committed batch of changes and after a sync request.
    wake_pusher: Arc<tokio::sync::Notify>,
    /// Asked for a pull after a sync request while pushing is paused.
    pull_now: Arc<tokio::sync::Notify>,
    tx: Mutex<Option<mpsc::Sender<Change>>>,
    /// Shared with the pusher.
    pub shared: Arc<Shared>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Engine")
    }
}

/// Nanoseconds of a metadata time pair.
pub fn mtime_ns(m: &Metadata) -> i64 {
    m.mtime() * 1_000_000_000 + m.mtime_nsec()
}

/// How long the journal writer lets changes gather before it commits them.
const BATCH_WINDOW: Duration = Duration::from_millis(20);

/// The most changes committed in one transaction.
const BATCH_MAX: usize = 4096;

/// Nanoseconds of a metadata change-time pair.
pub fn ctime_ns(m: &Metadata) -> i64 {
    m.ctime() * 1_000_000_000 + m.ctime_nsec()
}

/// What an engine starts with: all of it is known before it starts.
pub struct EngineSetup {
    /// The journal.
    pub journal: Arc<Journal>,
    /// The ignore list.
    pub ignore: Ignore,
    /// The sync sets.
    pub sets: sets::SyncSets,
    /// Quiet time before a change is pushed.
    pub push_delay: Duration,
    /// The pusher's wake-up: after each committed batch of changes and each sync request.
    pub wake_pusher: Arc<tokio::sync::Notify>,
    /// The puller's wake-up, for a sync request while pushing is paused.
    pub pull_now: Arc<tokio::sync::Notify>,
    /// The control socket, when the daemon serves one.
    pub control_socket: Option<String>,
    /// The cloud URL without credentials.
    pub cloud_url: Option<String>,
}

impl Engine {
    /// Starts the engine and its journal-writer thread.
    pub fn start(setup: EngineSetup) -> (Arc<Engine>, std::thread::JoinHandle<()>) {
        let EngineSetup {
            journal,
            ignore,
            sets,
            push_delay,
            wake_pusher,
            pull_now,
            control_socket,
            cloud_url,
        } = setup;
        let wake = wake_pusher.clone();
        let (tx, rx) = mpsc::channel::<Change>();
        let j = journal.clone();
        let shared = Arc::new(Shared::default());
        let sh = shared.clone();
        let writer = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    // The batch gathers while the writer sleeps: senders never wake it for
                    // each change of a burst, which would cost a context switch per change.
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter().take(BATCH_MAX - 1));
                    if batch.len() < BATCH_MAX {
                        std::thread::sleep(BATCH_WINDOW);
                        let room = BATCH_MAX - batch.len();
                        batch.extend(rx.try_iter().take(room));
                    }
                    let not_before = now_ms() + push_delay.as_millis() as i64;
                    // A change that cannot be written (the state dir's disk is full, say) is
                    // never dropped: the batch is kept, with what arrives meanwhile, and
                    // written again until it goes. Its paths read `pending` all along. Only
                    // when the daemon stops with the journal still refusing does it give up;
                    // the next start-up scan finds those changes again.
                    let mut pause = Duration::from_millis(100);
                    let mut closing = 0;
                    while let Err(e) = j.enqueue(&batch, not_before) {
                        let more: Vec<Change> = rx.try_iter().collect();
                        let gone = matches!(rx.try_recv(), Err(mpsc::TryRecvError::Disconnected));
                        batch.extend(more);
                        if gone {
                            closing += 1;
                            if closing > 5 {
                                tracing::error!(error = %e, changes = batch.len(), "cannot write changes to the journal while stopping; the next start-up scan will find them again");
                                break;
                            }
                        }
                        tracing::error!(error = %e, changes = batch.len(), retry_in = ?pause, "cannot write changes to the journal (is the state dir's disk full?); they are kept and written again");
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(Duration::from_secs(10));
                    }
                    for c in &batch {
                        sh.track(c, -1);
                    }
                    wake.notify_one();
                }
            })
            .expect("spawn journal writer");
        let unsynced = journal.unsynced().unwrap_or_else(|e| {
            tracing::warn!("{e}: every folder is synced");
            Vec::new()
        });
        let engine = Arc::new(Engine {
            journal,
            scope: scope::Scope::new(sets, ignore, unsynced),
            control_socket,
            cloud_base: cloud_url,
            wake_pusher,
            pull_now,
            tx: Mutex::new(Some(tx)),
            shared,
        });
        (engine, writer)
    }

    /// Stops accepting changes; the writer thread ends after committing what it has.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    fn send(&self, c: Change) {
        if let Some(tx) = self.tx.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            self.shared.track(&c, 1);
            if let Err(mpsc::SendError(c)) = tx.send(c) {
                self.shared.track(&c, -1);
            }
        }
    }

    /// True when `path` reaches the cloud: not excluded, in a set, not unsynced.
    pub fn syncable(&self, path: &str) -> bool {
        self.scope.syncable(path)
    }

    /// A sync request for `paths` (relative; empty or `""` means everything): unsynced paths
    /// are synced again, failed items and DELETED_ON_CLOUD records are pushed again, pushing
    /// resumes after an authentication failure, and everything queued is due now. With `pull`,
    /// a pull follows in the background once the queue is drained (at once while pushing is
    /// paused); without, the caller pulls itself.
    pub fn request_sync(&self, paths: &[String], pull: bool) -> SyncResult<()> {
        let all = [String::new()];
        let paths = if paths.is_empty() { &all[..] } else { paths };
        let j = &self.journal;
        let mut changes = Vec::new();
        for p in paths {
            {
                let mut u = self.scope.unsynced();
                let before = u.len();
                u.retain(|x| !crate::cloud::is_within(x, p));
                if u.len() != before {
                    j.set_unsynced(&u)?;
                    tracing::info!(path = %p, "synced again");
                }
            }
            j.retry_failed(if p.is_empty() { None } else { Some(p) })?;
            for path in j.failed_nodes_under(p)? {
                changes.push(Change::Path(Op::Check, path));
            }
            if !p.is_empty() {
                changes.push(Change::Path(Op::Check, p.clone()));
            }
        }
        j.enqueue(&changes, 0).and_then(|_| j.expedite())?;
        self.shared.sync_requests.fetch_add(1, Ordering::Relaxed);
        if self.shared.auth_paused.swap(false, Ordering::Relaxed) {
            tracing::info!(
                "a sync was requested: pushing resumes after the authentication failure"
            );
        }
        *self
            .shared
            .offline_since
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        if !pull {
            // The caller pulls itself.
        } else if self.shared.push_paused.load(Ordering::Relaxed) {
            self.pull_now.notify_one();
        } else {
            // The pusher starts the pull once it has sent what is queued.
            self.shared
                .pull_requested_at
                .store(now_ms().max(1), Ordering::Relaxed);
        }
        self.wake_pusher.notify_one();
        Ok(())
    }

    /// Takes `path` out of sync: nothing below it is pushed or pulled any more, and its cloud
    /// copy stays. Kept in the journal across restarts; a sync request undoes it.
    pub fn unsync(&self, path: &str) -> SyncResult<()> {
        if self.scope.sets.set_for(path).is_none() {
            return Err(SyncError::Refused(format!("{path} is not in any sync set")));
        }
        {
            let mut u = self.scope.unsynced();
            if !u.iter().any(|x| x == path) {
                u.push(path.to_string());
            }
            self.journal.set_unsynced(&u)?;
        }
        if let Ok(q) = self.journal.queue() {
            for e in q.iter().filter(|e| crate::cloud::is_within(&e.path, path)) {
                let _ = self.journal.remove(e.id);
            }
        }
        let _ = self.journal.delete_subtree(path);
        tracing::info!(path, "unsynced; the cloud copy stays");
        Ok(())
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// The status of `path` and the details scripts read, from the journal and the local
    /// metadata.
    pub fn status(&self, path: &str, meta: &Metadata) -> (Status, Option<String>) {
        let name = path.rsplit('/').next().unwrap_or(path);
        if conflict::is_conflict_name(name) {
            return (Status::Conflict, None);
        }
        if self.scope.ignore.path_excluded(path) || !(meta.is_file() || meta.is_dir()) {
            return (Status::Excluded, None);
        }
        let dir = meta.is_dir();
        let set = self.scope.synced_set(path);
        let Some(set) = set else {
            // A folder that holds a set is not synced itself, but sums up what is below it.
            let holds_set = dir
                && self
                    .scope
                    .sets
                    .iter()
                    .any(|s| s.local != path && crate::cloud::is_within(&s.local, path));
            if holds_set {
                return self
                    .subtree_status(path, true)
                    .unwrap_or((Status::Synced, None));
            }
            return (Status::Unsynced, None);
        };
        if let Some(st) = self.subtree_status(path, dir) {
            return match st {
                (Status::Pending, None) => self.pending(meta),
                st => st,
            };
        }
        if path.is_empty() || (path == set.local && !set.is_file) {
            return (Status::Synced, None);
        }
        let synced = if set.lock_onprem {
            Status::Locked
        } else {
            Status::Synced
        };
        match self.journal.node_for_status(path) {
            Ok(Some(r)) => match r.state {
                NodeState::Failed => (Status::Failed, r.error),
                NodeState::Conflict => (Status::Conflict, None),
                NodeState::Synced => {
                    let same = match r.kind {
                        NodeKind::Dir => dir,
                        NodeKind::File => r.unchanged(meta),
                    };
                    if same {
                        (synced, None)
                    } else {
                        self.pending(meta)
                    }
                }
            },
            _ => self.pending(meta),
        }
    }

    /// `pending`, with the detail `open for writing` for a file some process holds open for
    /// writing through the mount.
    fn pending(&self, meta: &Metadata) -> (Status, Option<String>) {
        let open = meta.is_file()
            && self
                .shared
                .writers
                .get()
                .is_some_and(|w| w.is_open(meta.ino()));
        (Status::Pending, open.then(|| OPEN_FOR_WRITING.to_string()))
    }

    /// What the queue says of `path` (and of its subtree, for a folder), if anything.
    fn subtree_status(&self, path: &str, subtree: bool) -> Option<(Status, Option<String>)> {
        if self.shared.unflushed.under(path, subtree) {
            return Some((Status::Pending, None));
        }
        let j = &self.journal;
        match j.failure_under(path, subtree) {
            Ok(Some((code, detail))) => {
                return Some((Status::Failed, Some(format!("{code}: {detail}"))));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "status read failed"),
        }
        let entries = match j.queue_for_status(path, subtree) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "status read failed");
                return Some((Status::Pending, None));
            }
        };
        if entries.iter().any(|e| e.state == QueueState::Conflict) {
            return Some((Status::Conflict, None));
        }
        if entries.iter().any(|e| e.state == QueueState::Pending) {
            if self.shared.auth_paused.load(Ordering::Relaxed) {
                return Some((
                    Status::Failed,
                    Some(format!(
                        "{}: the cloud refused the credentials; fix them, then request a sync",
                        status::FailureCode::AuthenticationError
                    )),
                ));
            }
            if self.shared.in_flight_under(path, subtree) {
                return Some((Status::Uploading, None));
            }
            if self.shared.is_offline() {
                return Some((Status::Offline, None));
            }
            return Some((Status::Pending, None));
        }
        if self.shared.downloading.under(path, subtree) {
            return Some((Status::Downloading, None));
        }
        None
    }
}

impl SyncHooks for Engine {
    fn changed(&self, op: Op, path: &str) {
        if self.syncable(path) {
            self.send(Change::Path(op, path.to_string()));
        }
    }

    fn renamed(&self, from: &str, to: &str) {
        match (self.syncable(from), self.syncable(to)) {
            (false, false) => {}
            // Moved into a set, or a temporary file renamed into place (LibreOffice, rsync):
            // `to` is new or updated.
            (false, true) => self.send(Change::Path(Op::Create, to.to_string())),
            // Moved out of every set, or renamed to a backup name (vim): `from` is deleted in
            // the cloud, unless it comes back before the push.
            (true, false) => self.send(Change::Path(Op::Delete, from.to_string())),
            (true, true) => self.send(Change::Rename(from.to_string(), to.to_string())),
        }
    }

    fn renaming(&self, from: &str, to: &str, starts: bool) {
        // Reported in between (if it is synced at all), and counted again until the report
        // is committed to the queue.
        for p in [from, to] {
            if starts {
                self.shared.renaming.add(p);
            } else {
                self.shared.renaming.sub(p);
            }
        }
    }

    fn locked(&self, path: &str) -> bool {
        // Items that came from the cloud or were synced are read-only; new files are not,
        // until they are synced.
        self.scope
            .synced_set(path)
            .is_some_and(|s| s.lock_onprem && s.local != path)
            && self
                .journal
                .node_for_status(path)
                .is_ok_and(|r| r.is_some())
    }

    fn control(&self, caller: &Ctx, path: &str, name: &str, value: &[u8]) -> Result<(), i32> {
        if name != status::XATTR_REQUEST {
            return Err(libc::EPERM);
        }
        tracing::info!(path, uid = caller.uid, pid = caller.pid, "control request");
        let r = match value.strip_suffix(b"\n").unwrap_or(value) {
            b"sync" => self.request_sync(&[path.to_string()], true),
            b"unsync" => self.unsync(path),
            _ => return Err(libc::EINVAL),
        };
        r.map_err(|e| {
            tracing::warn!(path, uid = caller.uid, error = %e, "control request refused");
            match e {
                SyncError::Refused(_) => libc::EINVAL,
                _ => libc::EIO,
            }
        })
    }

    fn xattrs(&self, path: &str, meta: &Metadata) -> Vec<(&'static str, String)> {
        let (st, err) = self.status(path, meta);
        let mut v = vec![(status::XATTR_STATUS, st.as_str().to_string())];
        if path.is_empty()
            && let Some(s) = &self.control_socket
        {
            v.push((crate::status::XATTR_CONTROL, s.clone()));
        }
        match err {
            Some(e) if st == Status::Failed => v.push((status::XATTR_ERROR, e)),
            Some(d) => v.push((status::XATTR_DETAIL, d)),
            None => {}
        }
        if !matches!(st, Status::Excluded | Status::Unsynced | Status::Conflict)
            && let Some(set) = self.scope.sets.set_for(path)
        {
            v.push((status::XATTR_SET, set.local.clone()));
            if let Some(base) = &self.cloud_base {
                v.push((
                    status::XATTR_CLOUD_URL,
                    cloud_url(base, &set.to_cloud(path)),
                ));
            }
        }
        if matches!(st, Status::Synced | Status::Locked)
            && !path.is_empty()
            && let Ok(Some(r)) = self.journal.node_for_status(path)
        {
            if let Some(t) = r.synced_at {
                let t = UNIX_EPOCH + Duration::from_millis(t as u64);
                v.push((status::XATTR_SYNCED_AT, status::rfc3339(t)));
            }
            if let Some(e) = r.etag {
                v.push((status::XATTR_ETAG, e));
            }
        }
        v
    }
}
