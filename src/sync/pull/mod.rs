//! The puller: discovers cloud changes and merges them into the on-premise folder.
//!
//! Every `pull_interval`, or at once when asked, it walks the cloud (skipping folders whose ETag
//! has not changed, where the server gives folder ETags), decides each path with the pure
//! [`reconcile`] function, and applies the action. Downloads go to a temporary file beside the
//! target and are renamed over it, so a reader never sees half a file, and the journal record is
//! written at once, so what the puller writes is never pushed back. A file open for writing
//! through the mount is never replaced under its writer; it waits for the next pull.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::conflict;
use super::reconcile::{Action, Side, Winner, reconcile};
use super::sets::{SyncSet, SyncSets};
use super::{Shared, jr, record_of};
use crate::cloud::{self, Cloud, CloudEntry, CloudError};
use crate::fs::handles::OpenWriters;
use crate::ignore::Ignore;
use crate::journal::{Change, FileStat, Journal, NodeKind, NodeRecord, NodeState, Op, QueueState};
use crate::onprem::{self, Onprem};

/// Tells the kernel that an on-premise path changed behind its back.
pub trait Invalidate: Send + Sync {
    /// `path` (relative) was replaced, created or removed.
    fn changed(&self, path: &str);
}

/// An invalidator for tests without a mount.
#[derive(Debug, Default)]
pub struct NoInvalidate;

impl Invalidate for NoInvalidate {
    fn changed(&self, _: &str) {}
}

/// What merging one path came to.
enum Merge {
    /// Merged, or nothing to do.
    Done,
    /// A folder whose whole subtree was settled with it.
    Subtree(String),
    /// Left for the next pull: the path changed on-premise meanwhile.
    Later,
}

/// What a walk of one set's cloud folder found.
struct Walk {
    /// Entries by on-premise path.
    found: BTreeMap<String, CloudEntry>,
    /// On-premise folders skipped because their cloud ETag did not change.
    skipped: Vec<String>,
    /// Requests sent.
    requests: u64,
    /// The set folder's ETag when the walk began.
    root_tag: Option<String>,
}

/// What one pull did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PullReport {
    /// Cloud requests sent: listings and downloads.
    pub requests: u64,
    /// Files downloaded.
    pub downloaded: u64,
    /// Conflicts resolved with a conflict copy.
    pub conflicts: u64,
    /// Other actions applied (folders, deletes, moves, marks).
    pub other: u64,
}

impl PullReport {
    fn absorb(&mut self, o: PullReport) {
        self.requests += o.requests;
        self.downloaded += o.downloaded;
        self.conflicts += o.conflicts;
        self.other += o.other;
    }
}

/// Everything the puller needs.
pub struct Puller {
    /// The journal.
    pub journal: Arc<Journal>,
    /// The cloud.
    pub cloud: Arc<dyn Cloud>,
    /// The on-premise folder, reached only through its door.
    pub onprem: Arc<Onprem>,
    /// Excluded names.
    pub ignore: Ignore,
    /// Files open for writing through the mount.
    pub writers: Arc<OpenWriters>,
    /// Shared state.
    pub shared: Arc<Shared>,
    /// Kernel cache invalidation.
    pub invalidate: Arc<dyn Invalidate>,
    /// The sync sets.
    pub sets: SyncSets,
    /// Paths unsynced at run time (shared with the engine).
    pub unsynced: Arc<std::sync::Mutex<Vec<String>>>,
    /// Wakes the pusher after the puller queued work for it.
    pub wake_pusher: Arc<Notify>,
    /// One pull at a time.
    pub running: tokio::sync::Mutex<()>,
    /// Pulls so far.
    pub pulls: std::sync::atomic::AtomicU64,
    /// Downloads of new files that may run at once.
    pub transfers: usize,
    /// Downloads sent so far, for the pull report.
    pub gets: std::sync::atomic::AtomicU64,
}

/// Cloud folders deeper than this many levels are not walked: each level costs a listing, and
/// a hostile server could nest folders without end.
pub const MAX_DEPTH: usize = 256;

/// Every this many pulls, folder tags are ignored and the whole tree is walked.
pub const FULL_WALK_EVERY: u64 = 20;

/// Above this many pending changes, a pull asks the journal whether a path is busy rather
/// than holding the queue in memory.
const LONG_QUEUE: u64 = 10_000;

/// Strips the weak marker, so `W/"x"` and `"x"` compare equal.
fn tag(t: &Option<String>) -> Option<&str> {
    t.as_deref().map(|t| t.strip_prefix("W/").unwrap_or(t))
}

fn map_io(e: std::io::Error) -> CloudError {
    CloudError::Io(e)
}

/// True when nothing is at `path` on-premise (a path blocked by a link is not free).
fn free(o: &Onprem, path: &str) -> bool {
    matches!(o.stat(path), Ok(None))
}

/// True when no further request of this pull should be sent: the cloud is unreachable, or it
/// refused the credentials (one refused request is enough: a retry storm can trip a server's
/// brute-force lockout).
fn ends_pull(e: &CloudError) -> bool {
    e.is_transient() || matches!(e, CloudError::Unauthorized)
}

/// True when `e` says the on-premise path crosses a link or a special file.
fn crossing(e: &CloudError) -> bool {
    matches!(e, CloudError::Io(e) if onprem::is_crossing(e))
}

impl Puller {
    /// Pulls every `interval` and whenever `now` is notified, until `stop` is cancelled.
    pub async fn run(
        self: Arc<Self>,
        interval: Duration,
        now: Arc<Notify>,
        stop: CancellationToken,
    ) {
        loop {
            if self
                .shared
                .pull_paused
                .load(std::sync::atomic::Ordering::Relaxed)
                || self
                    .shared
                    .auth_paused
                    .load(std::sync::atomic::Ordering::Relaxed)
            {
                debug!("pulling is paused");
            } else {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = self.pull_counted() => {}
                };
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = now.notified() => {}
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// One pull, counted in the status counters and reported in the log, whoever asked for it.
    pub async fn pull_counted(&self) -> Result<PullReport, CloudError> {
        let started = std::time::Instant::now();
        let r = self.pull_once().await;
        self.shared.counters.pull(r.is_ok(), started.elapsed());
        self.report(&r);
        r
    }

    fn report(&self, r: &Result<PullReport, CloudError>) {
        {
            match r {
                Ok(r) => debug!(?r, "pull done"),
                Err(e) if e.is_transient() => {
                    debug!(error = %e, "pull: the cloud is unreachable; will retry")
                }
                Err(CloudError::Unauthorized) => {
                    warn!(
                        "the cloud refused the credentials: pulling and pushing stop until a sync is requested"
                    );
                    self.shared
                        .auth_paused
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => warn!(error = %e, "pull failed"),
            }
        }
    }

    /// Lists the cloud tree, skipping folders whose ETag matches the journal. Returns the
    /// entries found, the folders skipped as unchanged, and the number of requests.
    async fn walk(&self, set: &SyncSet) -> Result<Walk, CloudError> {
        let mut found = BTreeMap::new();
        let mut skipped = Vec::new();
        let mut requests = 0u64;
        let root = self.cloud.stat(&set.cloud).await?;
        requests += 1;
        // Folder tags are trusted only where the server sums up subtrees in them, and every
        // FULL_WALK_EVERY pulls the whole tree is walked anyway, as a safety net.
        let n = self.pulls.load(std::sync::atomic::Ordering::Relaxed);
        let trust = self.cloud.folder_etags_cover_subtree() && !n.is_multiple_of(FULL_WALK_EVERY);
        let root_tag = root.as_ref().and_then(|r| r.etag.clone()).filter(|_| trust);
        if set.is_file {
            if let Some(mut e) = root.filter(|e| !e.is_dir) {
                e.path = set.local.clone();
                found.insert(set.local.clone(), e);
            }
            return Ok(Walk {
                found,
                skipped,
                requests,
                root_tag: None,
            });
        }
        let meta_key = format!("root_etag:{}", set.local);
        if root_tag.is_some() && jr(self.journal.meta(&meta_key))? == root_tag {
            skipped.push(set.local.clone());
            return Ok(Walk {
                found,
                skipped,
                requests,
                root_tag,
            });
        }
        if root.is_none() {
            // The set's cloud folder is gone (or not made yet): nothing to list.
            return Ok(Walk {
                found,
                skipped,
                requests,
                root_tag,
            });
        }
        let mut pending = vec![set.cloud.clone()];
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            while tasks.len() < 8 {
                let Some(dir) = pending.pop() else { break };
                let c = self.cloud.clone();
                tasks.spawn(async move {
                    let r = c.list(&dir).await;
                    (dir, r)
                });
            }
            let Some(done) = tasks.join_next().await else {
                break;
            };
            let (dir, r) = done.map_err(|e| CloudError::Io(std::io::Error::other(e)))?;
            requests += 1;
            let entries = r?.entries;
            for e in entries {
                if cloud::check_rel_path(&e.path).is_err() || cloud::parent(&e.path) != dir {
                    warn!(path = %e.path, "refusing a cloud entry outside the listed folder");
                    continue;
                }
                let name = e.path.rsplit('/').next().unwrap_or_default();
                if self.ignore.name_excluded(name) || conflict::is_conflict_name(name) {
                    continue;
                }
                let local = set.to_local(&e.path);
                if !self.owns(set, &local) {
                    continue;
                }
                if e.is_dir {
                    let unchanged = trust
                        && e.etag.is_some()
                        && jr(self.journal.node(&local))?.is_some_and(|r| {
                            r.kind == NodeKind::Dir && tag(&r.etag) == tag(&e.etag)
                        });
                    if unchanged {
                        skipped.push(local.clone());
                    } else if local.split('/').count() >= MAX_DEPTH {
                        // A tree this deep is a broken or hostile server's: not walked, and
                        // nothing below it is taken for deleted either.
                        warn!(path = %local, "a cloud folder lies deeper than {MAX_DEPTH} levels; not walked");
                        skipped.push(local.clone());
                    } else {
                        pending.push(e.path.clone());
                    }
                }
                let mut e = e;
                e.path = local.clone();
                found.insert(local, e);
            }
        }
        Ok(Walk {
            found,
            skipped,
            requests,
            root_tag,
        })
    }

    /// One pull over every sync set: discover, decide, apply.
    pub async fn pull_once(&self) -> Result<PullReport, CloudError> {
        let _one = self.running.lock().await;
        let n = self
            .pulls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let mut report = PullReport::default();
        let gets = self.gets.load(std::sync::atomic::Ordering::Relaxed);
        // An idle tree on a server with subtree ETags costs one request per set, and the
        // journal is not even read.
        let mut idle = Vec::new();
        if self.cloud.folder_etags_cover_subtree() && !n.is_multiple_of(FULL_WALK_EVERY) {
            // A path whose upload met a 412 or 404 waits for this merge, whatever the tags say.
            let conflicted = jr(self.journal.conflict_ids())?;
            for set in self.sets.iter().filter(|s| !s.is_file) {
                if conflicted.keys().any(|p| self.owns(set, p)) {
                    continue;
                }
                let tag = self.cloud.stat(&set.cloud).await?.and_then(|e| e.etag);
                report.requests += 1;
                let known = jr(self.journal.meta(&format!("root_etag:{}", set.local)))?;
                if tag.is_some() && tag == known {
                    idle.push(set.local.clone());
                }
            }
            if idle.len() == self.sets.iter().count() {
                return Ok(report);
            }
        }
        for set in self.sets.iter() {
            if idle.contains(&set.local) || self.is_unsynced(&set.local) {
                continue;
            }
            self.pull_set(set, &mut report).await?;
        }
        if report.downloaded + report.conflicts + report.other > 0 {
            info!(
                downloaded = report.downloaded,
                conflicts = report.conflicts,
                other = report.other,
                "merged cloud changes"
            );
            self.wake_pusher.notify_one();
        }
        report.requests += self.gets.load(std::sync::atomic::Ordering::Relaxed) - gets;
        Ok(report)
    }

    /// True when `set` is the set that decides for `path` (not a set nested inside it).
    fn owns(&self, set: &SyncSet, path: &str) -> bool {
        self.sets
            .set_for(path)
            .is_some_and(|s| s.local == set.local)
    }

    fn is_unsynced(&self, path: &str) -> bool {
        self.unsynced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|u| cloud::is_within(path, u))
    }

    async fn pull_set(&self, set: &SyncSet, report: &mut PullReport) -> Result<(), CloudError> {
        // The names of the set's records before the walk. A record written while the walk is
        // under way (a push finishing) may be missing from a listing made just before it, and
        // must not be taken for an item deleted in the cloud.
        let mut known: HashSet<Box<str>> = HashSet::new();
        jr(self.journal.for_each_node_under(&set.local, |r| {
            known.insert(r.path.into_boxed_str());
        }))?;
        let Walk {
            mut found,
            skipped,
            requests,
            root_tag,
        } = self.walk(set).await?;
        report.requests += requests;
        // Paths whose upload met a 412 or 404 are merged even where the walk did not go (an
        // unchanged folder) or found nothing (a new file refused by something in between):
        // otherwise their entries wait for a merge that never comes.
        let conflicted = jr(self.journal.conflict_ids())?;
        for path in conflicted.keys() {
            if found.contains_key(path) || !self.owns(set, path) {
                continue;
            }
            let cpath = set.to_cloud(path);
            report.requests += 1;
            if let Some(mut e) = self.cloud.stat(&cpath).await? {
                e.path = path.clone();
                found.insert(path.clone(), e);
            }
        }
        let in_skipped = |p: &str| skipped.iter().any(|s| cloud::is_within(p, s));
        // The set's records that the walk did not meet (gone from the cloud), streamed from
        // the journal: only these are held, never the whole journal. Records of paths found
        // are read one by one below.
        let mut gone: HashMap<String, NodeRecord> = HashMap::new();
        jr(self.journal.for_each_node_under(&set.local, |r| {
            if !found.contains_key(&r.path)
                && known.contains(r.path.as_str())
                && !in_skipped(&r.path)
                && self.owns(set, &r.path)
                && !self.is_unsynced(&r.path)
            {
                gone.insert(r.path.clone(), r);
            }
        }))?;
        drop(known);

        // Paths the pusher is working on are left alone, except those its conditional upload
        // found changed in the cloud (412): those are ours to merge.
        // A queue of ordinary length is held as a set, checked per path in the depth of the
        // path. A very long one (a first sync of a large tree) is asked per path instead, so
        // that a pull never holds the whole queue in memory.
        let (pending, failed) = jr(self.journal.queue_counts())?;
        let long_queue = pending.saturating_sub(failed) > LONG_QUEUE;
        let mut busy_set = super::push::Busy::default();
        if !long_queue {
            jr(self
                .journal
                .for_each_pending_path(|p, d| busy_set.add(p, d)))?;
        }
        // In-flight transfers are few (at most `transfers`): looked at live, path by path.
        let is_busy = |p: &str| -> Result<bool, CloudError> {
            let queued = if long_queue {
                jr(self.journal.pending_overlaps(p))?
            } else {
                busy_set.overlaps(p)
            };
            Ok(queued
                || self
                    .shared
                    .in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                    .any(|(a, b)| {
                        cloud::is_within(p, a)
                            || cloud::is_within(a, p)
                            || b.as_deref().is_some_and(|b| cloud::is_within(p, b))
                    }))
        };

        // Borrowed, not copied: a large tree's names are held once, in `found`.
        let mut paths: Vec<&str> = found.keys().map(String::as_str).collect();
        paths.extend(gone.keys().map(String::as_str));
        paths.extend(
            conflicted
                .keys()
                .map(String::as_str)
                .filter(|p| !found.contains_key(*p) && !gone.contains_key(*p))
                .filter(|p| self.owns(set, p)),
        );
        paths.sort_unstable();

        // Cloud-side moves: a record gone and a new path with the same file ETag.
        let mut moved: HashMap<String, String> = HashMap::new();
        {
            let gone_files = gone
                .values()
                .filter(|r| r.kind == NodeKind::File && r.etag.is_some());
            for r in gone_files {
                let mut target = None;
                for (p, e) in &found {
                    if !e.is_dir
                        && tag(&e.etag) == tag(&r.etag)
                        && free(&self.onprem, p)
                        && jr(self.journal.node(p))?.is_none()
                    {
                        target = Some(p.clone());
                        break;
                    }
                }
                if let Some(newp) = target {
                    moved.insert(r.path.clone(), newp);
                }
            }
        }
        let move_targets: HashSet<String> = moved.values().cloned().collect();

        let mut removed_dirs: Vec<String> = Vec::new();
        // Paths left for later (busy, or failed to merge): folder tags above them are not
        // remembered, so the next pull walks there again.
        let mut incomplete: Vec<String> = Vec::new();
        // Files new in the cloud, with nothing on-premise and no record: downloaded after the
        // pass below, `transfers` at a time. Everything else (folders, deletes, moves,
        // conflicts) is merged in order first, so their folders exist by then.
        let mut new_files: Vec<&str> = Vec::new();
        let mut moves_done: HashSet<&str> = HashSet::new();
        for &path in &paths {
            if self.ignore.path_excluded(path) {
                continue;
            }
            if !conflicted.contains_key(path) && is_busy(path)? {
                incomplete.push(path.to_string());
                continue;
            }
            if removed_dirs.iter().any(|d| cloud::is_within(path, d)) || move_targets.contains(path)
            {
                continue;
            }
            if self.is_unsynced(path) {
                continue;
            }
            if let Some(to) = moved.get(path) {
                match self.apply_move(path, to, &found[to]).await {
                    Ok(true) => {
                        report.other += 1;
                        moves_done.insert(to.as_str());
                        continue;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        warn!(from = %path, to = %to, error = %e, "cannot apply a cloud move");
                        continue;
                    }
                }
            }
            if let Some(ids) = conflicted.get(path) {
                // The merge below settles what the pusher could not, unless a new change has
                // put the entry back in the pusher's hands since the queue was read.
                let mut taken = true;
                for &id in ids {
                    taken &= jr(self.journal.remove_in_state(id, QueueState::Conflict))?;
                }
                if !taken {
                    incomplete.push(path.to_string());
                    continue;
                }
            }
            // Read now, after the walk: a push may have finished since.
            let fresh;
            let rec = match gone.get(path) {
                Some(r) => Some(r),
                None => {
                    fresh = jr(self.journal.node(path))?;
                    fresh.as_ref()
                }
            };
            if rec.is_none()
                && !conflicted.contains_key(path)
                && found.get(path).is_some_and(|e| !e.is_dir)
                && free(&self.onprem, path)
            {
                new_files.push(path);
                continue;
            }
            let merged = self
                .merge_path(
                    set,
                    path,
                    found.get(path),
                    rec,
                    conflicted.contains_key(path),
                    report,
                )
                .await;
            if conflicted.contains_key(path) {
                // The pusher's entry was taken for this merge. Whatever the merge found, the
                // pusher looks at the path again: a spurious 412 or 404 (a proxy's), or a merge
                // cut short, never drops the on-premise change.
                jr(self
                    .journal
                    .enqueue(&[Change::Path(Op::Check, path.to_string())], 0))?;
                self.wake_pusher.notify_one();
            }
            match merged {
                Ok(Merge::Subtree(d)) => removed_dirs.push(d),
                Ok(Merge::Done) => {}
                Ok(Merge::Later) => incomplete.push(path.to_string()),
                Err(e) if ends_pull(&e) => return Err(e),
                Err(e) if crossing(&e) => {
                    incomplete.push(path.to_string());
                    self.blocked(path)?;
                }
                Err(e) => {
                    incomplete.push(path.to_string());
                    warn!(path = %path, error = %e, "cannot merge a cloud change")
                }
            }
        }
        // A move target is merged only by its move: one not applied (its source changed, or
        // was never reached) is left for the next pull, which walks there again.
        incomplete.extend(
            move_targets
                .iter()
                .filter(|t| !moves_done.contains(t.as_str()))
                .cloned(),
        );
        self.download_new(set, &found, new_files, &is_busy, &mut incomplete, report)
            .await?;
        // Remember folder tags only after the whole walk was merged.
        let covers_incomplete = |dir: &str| incomplete.iter().any(|p| cloud::is_within(p, dir));
        for (p, e) in &found {
            if e.is_dir
                && !covers_incomplete(p)
                && e.etag.is_some()
                && let Ok(Some(mut r)) = self.journal.node(p)
                && r.kind == NodeKind::Dir
                && r.etag != e.etag
            {
                r.etag = e.etag.clone();
                jr(self.journal.put_node(&r))?;
            }
        }
        // The folder tag seen when the walk began: a change made after it is seen next time.
        if let Some(root) = root_tag.filter(|_| incomplete.is_empty()) {
            jr(self
                .journal
                .set_meta(&format!("root_etag:{}", set.local), &root))?;
        }
        Ok(())
    }

    /// Merges the files new in the cloud that `pull_set` set aside, `transfers` at a time.
    /// Each is looked at again when its turn comes: a change on-premise since then is merged
    /// like any other. After a transient error no new download starts; those under way finish,
    /// and the error is returned.
    async fn download_new(
        &self,
        set: &SyncSet,
        found: &BTreeMap<String, CloudEntry>,
        paths: Vec<&str>,
        is_busy: &(dyn Fn(&str) -> Result<bool, CloudError> + Sync),
        incomplete: &mut Vec<String>,
        report: &mut PullReport,
    ) -> Result<(), CloudError> {
        use futures_util::stream::{FuturesUnordered, StreamExt};
        let stopped = std::sync::atomic::AtomicBool::new(false);
        let mut waiting = paths.into_iter();
        let mut running = FuturesUnordered::new();
        let mut first_transient = None;
        loop {
            while running.len() < self.transfers.max(1)
                && let Some(path) = waiting.next()
            {
                running.push(self.merge_new(set, found, path, is_busy, &stopped));
            }
            let Some((path, res, r)) = running.next().await else {
                break;
            };
            report.absorb(r);
            match res {
                Ok(()) => {}
                Err(None) => incomplete.push(path.to_string()),
                Err(Some(e)) if ends_pull(&e) => {
                    incomplete.push(path.to_string());
                    first_transient.get_or_insert(e);
                }
                Err(Some(e)) if crossing(&e) => {
                    incomplete.push(path.to_string());
                    self.blocked(path)?;
                }
                Err(Some(e)) => {
                    incomplete.push(path.to_string());
                    warn!(path = %path, error = %e, "cannot merge a cloud change")
                }
            }
        }
        match first_transient {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// One merge of [`Puller::download_new`]: `Err(None)` when it was left for later.
    async fn merge_new<'a>(
        &self,
        set: &SyncSet,
        found: &BTreeMap<String, CloudEntry>,
        path: &'a str,
        is_busy: &(dyn Fn(&str) -> Result<bool, CloudError> + Sync),
        stopped: &std::sync::atomic::AtomicBool,
    ) -> (&'a str, Result<(), Option<CloudError>>, PullReport) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut r = PullReport::default();
        if stopped.load(Relaxed) {
            return (path, Err(None), r);
        }
        let res = match is_busy(path) {
            Ok(true) => return (path, Err(None), r),
            Ok(false) => match jr(self.journal.node(path)) {
                Ok(rec) => {
                    match self
                        .merge_path(set, path, found.get(path), rec.as_ref(), false, &mut r)
                        .await
                    {
                        Ok(Merge::Later) => return (path, Err(None), r),
                        Ok(_) => Ok(()),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        if res.as_ref().is_err_and(ends_pull) {
            stopped.store(true, Relaxed);
        }
        (path, res.map_err(Some), r)
    }

    async fn local_side(
        &self,
        path: &str,
        rec: Option<&NodeRecord>,
    ) -> Result<Option<(Side, std::fs::Metadata)>, CloudError> {
        let m = match self.onprem.stat(path).map_err(map_io)? {
            Some(m) => m,
            None => return Ok(None),
        };
        if !(m.is_file() || m.is_dir()) {
            // A link or a special file holds the name: nothing of the cloud's goes there,
            // and nothing is read through it.
            return Err(CloudError::Io(std::io::Error::from_raw_os_error(
                libc::ELOOP,
            )));
        }
        let kind = if m.is_dir() {
            NodeKind::Dir
        } else {
            NodeKind::File
        };
        let changed = match rec {
            None => true,
            Some(r) if r.kind != kind => true,
            Some(_) if kind == NodeKind::Dir => false,
            Some(r) => {
                if r.unchanged(&m) {
                    false
                } else {
                    let (o, p) = (self.onprem.clone(), path.to_string());
                    let h = tokio::task::spawn_blocking(move || o.hash(&p))
                        .await
                        .map_err(|e| CloudError::Io(std::io::Error::other(e)))?
                        .map_err(map_io)?;
                    // The snapshot has no hashes: the record's own.
                    let known = jr(self.journal.node(path))?.and_then(|r| r.hash);
                    known.as_deref() != Some(h.as_str())
                }
            }
        };
        Ok(Some((Side { kind, changed }, m)))
    }

    /// Merges one path.
    async fn merge_path(
        &self,
        set: &SyncSet,
        path: &str,
        entry: Option<&CloudEntry>,
        rec: Option<&NodeRecord>,
        taken: bool,
        report: &mut PullReport,
    ) -> Result<Merge, CloudError> {
        let local = self.local_side(path, rec).await?;
        let cloud_side = entry.map(|e| Side {
            kind: if e.is_dir {
                NodeKind::Dir
            } else {
                NodeKind::File
            },
            changed: match rec {
                None => true,
                Some(r) if r.kind != NodeKind::Dir && e.is_dir => true,
                Some(r) if r.kind != NodeKind::File && !e.is_dir => true,
                Some(_) if e.is_dir => false,
                Some(r) => tag(&r.etag) != tag(&e.etag) || r.state == NodeState::Failed,
            },
        });
        // A DELETED_ON_CLOUD mark stays until the user asks for a sync.
        if entry.is_none() && rec.is_some_and(|r| r.state == NodeState::Failed) {
            return Ok(Merge::Done);
        }
        let action = reconcile(
            local.as_ref().map(|(s, _)| *s),
            cloud_side,
            rec.is_some(),
            set.onprem_delete,
            set.conflict,
        );
        if action == Action::Nothing {
            return Ok(Merge::Done);
        }
        // The queue may have changed since the pull began (a rename through the mount a moment
        // ago): a path the pusher now holds, or that a rename on its way to the queue touches,
        // is left for the next pull rather than merged from a stale picture.
        if !taken
            && (self.shared.renaming_over(path)
                || self.shared.unflushed_over(path)
                || jr(self.journal.pending_overlaps(path))?)
        {
            debug!(
                path,
                ?action,
                "changed on-premise meanwhile; merged at the next pull"
            );
            return Ok(Merge::Later);
        }
        debug!(path, ?action, "merge");
        match action {
            Action::Nothing => Ok(Merge::Done),
            Action::Record => {
                match (entry, &local) {
                    (Some(e), Some((_, m))) => {
                        jr(self
                            .journal
                            .put_node(&record_of(path, m, None, e.etag.clone())))?
                    }
                    _ => jr(self.journal.delete_subtree(path))?,
                }
                Ok(Merge::Done)
            }
            Action::CreateDir => {
                let m = self.make_dir(path)?;
                jr(self.journal.put_node(&record_of(path, &m, None, None)))?;
                self.invalidate.changed(path);
                report.other += 1;
                Ok(Merge::Done)
            }
            Action::Download => {
                let e = entry.expect("download has a cloud entry");
                if self
                    .download(set, path, e, local.as_ref().map(|(_, m)| m))
                    .await?
                {
                    report.downloaded += 1;
                }
                Ok(Merge::Done)
            }
            Action::DeleteLocal => {
                let m = local.map(|(_, m)| m);
                if m.as_ref().is_some_and(|m| m.is_dir()) {
                    self.delete_local_tree(path)?;
                    report.other += 1;
                    self.invalidate.changed(path);
                    return Ok(Merge::Subtree(path.to_string()));
                }
                let Some(claim) = self.writers.claim(path, m.as_ref().map_or(0, |m| m.ino()))
                else {
                    return Ok(Merge::Done); // open for writing: the next pull
                };
                if let Some(m) = &m
                    && !self.still(path, m)?
                {
                    return Ok(Merge::Done);
                }
                match self.onprem.remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(map_io(e)),
                }
                drop(claim);
                jr(self.journal.delete_subtree(path))?;
                self.invalidate.changed(path);
                report.other += 1;
                info!(path, "deleted on-premise: deleted in the cloud");
                Ok(Merge::Done)
            }
            Action::MarkDeletedOnCloud => {
                let mut r = rec.cloned().expect("mark has a record");
                r.state = NodeState::Failed;
                r.error = Some(format!(
                    "{}: deleted in the cloud; the on-premise copy is kept (request a sync to push it again)",
                    crate::status::FailureCode::DeletedOnCloud
                ));
                r.etag = None;
                jr(self.journal.put_node(&r))?;
                if r.kind == NodeKind::Dir {
                    // Everything below shares the fate of the folder.
                    let mut below = Vec::new();
                    jr(self.journal.for_each_node_under(path, |c| {
                        if c.path != path {
                            below.push(c.path);
                        }
                    }))?;
                    for p in below {
                        if let Some(child) = jr(self.journal.node(&p))? {
                            jr(self.journal.put_node(&NodeRecord {
                                state: NodeState::Failed,
                                error: r.error.clone(),
                                etag: None,
                                ..child
                            }))?;
                        }
                    }
                }
                report.other += 1;
                info!(
                    path,
                    "deleted in the cloud; kept on-premise as DELETED_ON_CLOUD"
                );
                Ok(if r.kind == NodeKind::Dir {
                    Merge::Subtree(path.to_string())
                } else {
                    Merge::Done
                })
            }
            Action::Reupload => {
                jr(self.journal.delete_subtree(path))?;
                jr(self
                    .journal
                    .enqueue(&[Change::Path(Op::Check, path.to_string())], 0))?;
                report.other += 1;
                info!(
                    path,
                    "deleted in the cloud but edited on-premise: the edit wins and is pushed again"
                );
                Ok(Merge::Done)
            }
            Action::Conflict(winner) => {
                let e = entry.expect("conflict has a cloud entry");
                let (_, m) = local.as_ref().expect("conflict has a local side");
                if self.writers.is_open(m.ino()) {
                    return Ok(Merge::Done); // wait for the writer to close
                }
                // Equal content on both sides (say, a crash between an upload and its journal
                // write) is no conflict: only the record changes.
                let (tmp, got, cloud_hash) = self.fetch(set, path, e).await?;
                let (o, p) = (self.onprem.clone(), path.to_string());
                let local_hash = tokio::task::spawn_blocking(move || o.hash(&p))
                    .await
                    .map_err(|e| CloudError::Io(std::io::Error::other(e)))?
                    .map_err(map_io)?;
                let etag = got.etag.clone().or_else(|| e.etag.clone());
                if cloud_hash == local_hash {
                    drop(tmp);
                    jr(self.journal.put_node_ending_intent(&record_of(
                        path,
                        m,
                        Some(local_hash),
                        etag,
                    )))?;
                    debug!(path, "both sides hold the same content; no conflict");
                    return Ok(Merge::Done);
                }
                // An upload cut short may have left part of our own file there. Only when the
                // upload intent proves it does the on-premise version go up over it with no
                // conflict copy; anything else is someone's edit, merged as a conflict below.
                if let Some(i) = jr(self.journal.intent(path))? {
                    let expected = super::intent::precondition_for(rec);
                    let mut t = tmp.file().try_clone().map_err(map_io)?;
                    std::io::Seek::seek(&mut t, std::io::SeekFrom::Start(0)).map_err(map_io)?;
                    let f = self.onprem.open_file(path).map_err(map_io)?;
                    let own = tokio::task::spawn_blocking(move || {
                        super::intent::is_own_leftover(&i, &expected, t, f)
                    })
                    .await
                    .map_err(|e| CloudError::Io(std::io::Error::other(e)))?
                    .map_err(map_io)?;
                    if own {
                        drop(tmp);
                        // An unknown stat makes the pusher upload, with If-Match on the leftover.
                        let r = NodeRecord {
                            hash: None,
                            mtime_ns: -1,
                            ..record_of(path, m, None, etag)
                        };
                        jr(self.journal.put_node_ending_intent(&r))?;
                        jr(self
                            .journal
                            .enqueue(&[Change::Path(Op::Modify, path.to_string())], 0))?;
                        info!(
                            path,
                            "the cloud holds what an interrupted upload left; the on-premise version replaces it"
                        );
                        return Ok(Merge::Done);
                    }
                    jr(self.journal.end_intent(path))?;
                }
                let copy = conflict::copy_path(&self.onprem, path)?;
                // Each version keeps the mode and owner of the file it stands for.
                onprem::finish(tmp.file(), onprem::like(m)).map_err(map_io)?;
                match winner {
                    Winner::Cloud => {
                        let Some(claim) = self.writers.claim(path, m.ino()) else {
                            return Ok(Merge::Done); // open for writing: the next pull
                        };
                        if !self.still(path, m)? {
                            return Ok(Merge::Done); // changed again meanwhile: the next pull
                        }
                        self.onprem.rename_noreplace(path, &copy).map_err(map_io)?;
                        let placed = tmp.place(path, true);
                        drop(claim);
                        self.invalidate.changed(&copy);
                        if placed.is_err() {
                            debug!(
                                path,
                                "created again during the merge; merged at the next pull"
                            );
                            return Ok(Merge::Done);
                        }
                        let now = self.onprem.stat(path).map_err(map_io)?.ok_or_else(gone)?;
                        jr(self
                            .journal
                            .put_node(&record_of(path, &now, Some(cloud_hash), etag)))?;
                        self.invalidate.changed(path);
                        info!(path, copy = %copy, "conflict: the cloud version won; the on-premise edit is kept as a conflict copy");
                    }
                    Winner::Onprem => {
                        tmp.place(&copy, true).map_err(map_io)?;
                        self.invalidate.changed(&copy);
                        // Push the on-premise version over the cloud version just saved.
                        // An unknown stat makes the pusher upload, with If-Match on the
                        // cloud version just saved.
                        let r = NodeRecord {
                            hash: None,
                            mtime_ns: -1,
                            ..record_of(path, m, None, e.etag.clone())
                        };
                        jr(self.journal.put_node(&r))?;
                        jr(self
                            .journal
                            .enqueue(&[Change::Path(Op::Modify, path.to_string())], 0))?;
                        info!(path, copy = %copy, "conflict: the on-premise version won; the cloud version is kept as a conflict copy");
                    }
                }
                report.conflicts += 1;
                Ok(Merge::Done)
            }
            Action::TypeConflict => {
                let (_, m) = local.as_ref().expect("type conflict has a local side");
                let Some(claim) = self
                    .writers
                    .claim(path, if m.is_file() { m.ino() } else { 0 })
                else {
                    return Ok(Merge::Done);
                };
                let copy = conflict::copy_path(&self.onprem, path)?;
                self.onprem.rename_noreplace(path, &copy).map_err(map_io)?;
                drop(claim);
                jr(self.journal.delete_subtree(path))?;
                self.invalidate.changed(&copy);
                let e = entry.expect("type conflict has a cloud entry");
                if e.is_dir {
                    let m = self.make_dir(path)?;
                    jr(self.journal.put_node(&record_of(path, &m, None, None)))?;
                    self.invalidate.changed(path);
                } else {
                    self.download(set, path, e, None).await?;
                }
                report.conflicts += 1;
                info!(path, copy = %copy, "a file and a folder met; both are kept");
                Ok(Merge::Done)
            }
        }
    }

    /// True when `path` still is what `m` describes.
    fn still(&self, path: &str, m: &std::fs::Metadata) -> Result<bool, CloudError> {
        let now = self.onprem.stat(path).map_err(map_io)?;
        Ok(now.is_some_and(|n| FileStat::of(m) == FileStat::of(&n))
            && !self.writers.is_open(m.ino()))
    }

    /// Creates the folder `path` (and those above it) and returns its metadata.
    fn make_dir(&self, path: &str) -> Result<std::fs::Metadata, CloudError> {
        self.onprem.create_dirs(path).map_err(map_io)?;
        self.onprem.stat(path).map_err(map_io)?.ok_or_else(gone)
    }

    /// A cloud item whose on-premise path goes through a link or a special file: left alone,
    /// and shown failed until the way is clear and a sync is requested.
    fn blocked(&self, path: &str) -> Result<(), CloudError> {
        warn!(path, "{}", onprem::crossing_detail(path));
        jr(self
            .journal
            .enqueue(&[Change::Path(Op::Check, path.to_string())], 0))?;
        self.wake_pusher.notify_one();
        Ok(())
    }

    /// Downloads the cloud file `path` into a new private temporary file beside its target
    /// (the folders above it are made first). Returns it with what the cloud said and the hash
    /// of the bytes received. The temporary file goes away on any error.
    async fn fetch(
        &self,
        set: &SyncSet,
        path: &str,
        e: &CloudEntry,
    ) -> Result<(Temp, CloudEntry, String), CloudError> {
        let dir = cloud::parent(path);
        self.onprem.create_dirs(dir).map_err(map_io)?;
        let tmp = Temp {
            onprem: self.onprem.clone(),
            new: self.onprem.create_temp(dir).map_err(map_io)?,
        };
        self.gets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let got = self.cloud.get_file(&set.to_cloud(path), tmp.file()).await?;
        let mtime = got.mtime.or(e.mtime);
        let f = tmp.file().try_clone().map_err(map_io)?;
        let hash = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
            use std::io::Seek;
            let mut f = f;
            if let Some(mt) = mtime {
                f.set_modified(mt)?;
            }
            f.sync_all()?;
            f.seek(std::io::SeekFrom::Start(0))?;
            onprem::hash_reader(&mut f)
        })
        .await
        .map_err(|e| CloudError::Io(std::io::Error::other(e)))?
        .map_err(map_io)?;
        Ok((tmp, got, hash))
    }

    /// Downloads `path` over the on-premise file, unless it changed meanwhile or is open for
    /// writing. Returns whether it did.
    async fn download(
        &self,
        set: &SyncSet,
        path: &str,
        e: &CloudEntry,
        seen: Option<&std::fs::Metadata>,
    ) -> Result<bool, CloudError> {
        if let Some(m) = seen
            && self.writers.is_open(m.ino())
        {
            debug!(path, "open for writing; the download waits for close");
            return Ok(false);
        }
        let _downloading = self.shared.downloading(path);
        let (tmp, got, hash) = self.fetch(set, path, e).await?;
        // Mode and owner stay on-premise: a replaced file keeps its own; a new file gets the
        // daemon's file mode and the owner and group of its folder.
        let like = match seen {
            Some(m) => onprem::like(m),
            None => {
                let dir = self
                    .onprem
                    .stat(cloud::parent(path))
                    .map_err(map_io)?
                    .ok_or_else(gone)?;
                (self.onprem.file_mode(), dir.uid(), dir.gid())
            }
        };
        onprem::finish(tmp.file(), like).map_err(map_io)?;
        // Never replace a file that changed while we downloaded, nor one opened for writing
        // meanwhile: the claim holds new opens for writing off until the rename is done.
        let Some(claim) = self.writers.claim(path, seen.map_or(0, |m| m.ino())) else {
            debug!(path, "open for writing; the download waits for close");
            return Ok(false);
        };
        let now = self.onprem.stat(path).map_err(map_io)?;
        let unchanged = match (seen, &now) {
            (None, None) => true,
            (Some(a), Some(b)) => FileStat::of(a) == FileStat::of(b),
            (None, Some(_)) => false,
            (Some(_), None) => false,
        };
        if !unchanged || now.as_ref().is_some_and(|m| self.writers.is_open(m.ino())) {
            debug!(
                path,
                "changed on-premise during the download; merged at the next pull"
            );
            return Ok(false);
        }
        let placed = tmp.place(path, seen.is_none());
        drop(claim);
        if let Err(err) = placed {
            if err.raw_os_error() == Some(libc::EEXIST) {
                debug!(
                    path,
                    "created on-premise during the download; merged at the next pull"
                );
                return Ok(false);
            }
            return Err(map_io(err));
        }
        let m = self.onprem.stat(path).map_err(map_io)?.ok_or_else(gone)?;
        let etag = got.etag.or_else(|| e.etag.clone());
        jr(self
            .journal
            .put_node(&record_of(path, &m, Some(hash), etag)))?;
        self.invalidate.changed(path);
        info!(path, bytes = m.size(), "downloaded");
        Ok(true)
    }

    async fn apply_move(&self, from: &str, to: &str, e: &CloudEntry) -> Result<bool, CloudError> {
        let Ok(Some(m)) = self.onprem.stat(from) else {
            return Ok(false);
        };
        let rec = jr(self.journal.node(from))?;
        if rec.as_ref().is_none_or(|r| !r.unchanged(&m))
            || self.writers.is_open(m.ino())
            || !free(&self.onprem, to)
        {
            return Ok(false);
        }
        self.onprem.create_dirs(cloud::parent(to)).map_err(map_io)?;
        let Some(claim) = self.writers.claim(from, m.ino()) else {
            return Ok(false);
        };
        if !self.still(from, &m)? {
            return Ok(false);
        }
        self.onprem.rename_noreplace(from, to).map_err(map_io)?;
        drop(claim);
        jr(self.journal.move_subtree(from, to))?;
        if let Some(mut r) = jr(self.journal.node(to))? {
            r.etag = e.etag.clone();
            // The rename moved the file's ctime; the record follows, as the file is the one
            // just checked unchanged.
            if r.kind == NodeKind::File
                && let Ok(Some(after)) = self.onprem.stat(to)
            {
                r.ctime_ns = FileStat::of(&after).ctime_ns;
            }
            jr(self.journal.put_node(&r))?;
        }
        self.invalidate.changed(from);
        self.invalidate.changed(to);
        info!(from, to, "moved on-premise: moved in the cloud");
        Ok(true)
    }

    /// Deletes a folder the cloud deleted, keeping anything changed or unknown on-premise.
    fn delete_local_tree(&self, path: &str) -> Result<(), CloudError> {
        let mut kept = false;
        let mut records: HashMap<String, NodeRecord> = HashMap::new();
        jr(self.journal.for_each_node_under(path, |r| {
            records.insert(r.path.clone(), r);
        }))?;
        fn walk(
            me: &Puller,
            rel: &str,
            records: &HashMap<String, NodeRecord>,
            kept: &mut bool,
        ) -> std::io::Result<()> {
            for ent in me.onprem.read_dir(rel)? {
                let ent = ent?;
                let Some(name) = ent.name.to_str() else {
                    *kept = true;
                    continue;
                };
                let r = cloud::join(rel, name);
                let m = ent.meta?;
                if m.is_dir() {
                    walk(me, &r, records, kept)?;
                    if me.onprem.remove_dir(&r).is_err() {
                        *kept = true;
                    }
                } else if m.is_file()
                    && records.get(&r).is_some_and(|x| x.unchanged(&m))
                    && let Some(_claim) = me.writers.claim(&r, m.ino())
                    && me.still(&r, &m).is_ok_and(|s| s)
                {
                    me.onprem.remove_file(&r)?;
                } else {
                    *kept = true;
                }
            }
            Ok(())
        }
        walk(self, path, &records, &mut kept).map_err(map_io)?;
        if self.onprem.remove_dir(path).is_err() {
            kept = true;
        }
        jr(self.journal.delete_subtree(path))?;
        if kept {
            info!(
                path,
                "deleted in the cloud; changed items are kept on-premise and pushed again"
            );
            jr(self
                .journal
                .enqueue(&[Change::Path(Op::Check, path.to_string())], 0))?;
        } else {
            info!(path, "deleted on-premise: deleted in the cloud");
        }
        Ok(())
    }
}

fn gone() -> CloudError {
    CloudError::Io(std::io::Error::from_raw_os_error(libc::ENOENT))
}

/// A download in a new private file beside its target ([`Onprem::create_temp`]). Discarded
/// when dropped, unless it was put in place.
struct Temp {
    onprem: Arc<Onprem>,
    new: onprem::NewFile,
}

impl Temp {
    /// The open file.
    fn file(&self) -> &std::fs::File {
        &self.new.file
    }

    /// Puts the file at `to`; with `noreplace`, never over an item that is there.
    fn place(mut self, to: &str, noreplace: bool) -> std::io::Result<()> {
        let o = self.onprem.clone();
        o.place(&mut self.new, to, noreplace)
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        self.onprem.discard(&mut self.new);
    }
}
