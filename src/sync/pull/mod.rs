//! The puller: discovers cloud changes and merges them into the on-premise folder.
//!
//! Every `pull_interval`, or at once when asked, it walks the cloud (skipping folders whose ETag
//! has not changed, where the server gives folder ETags), decides each path with the pure
//! [`reconcile`] function, and applies the action. Downloads go to a temporary file beside the
//! target and are renamed over it, so a reader never sees half a file, and the journal record is
//! written at once, so what the puller writes is never pushed back. A file open for writing
//! through the mount is never replaced under its writer; it waits for the next pull.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::conflict;
use super::reconcile::{Action, Side, reconcile};
use super::sets::{SyncSet, SyncSets};
use super::{Shared, jr};
use crate::cloud::{self, Cloud, CloudEntry, CloudError};
use crate::fs::handles::OpenWriters;
use crate::ignore::Ignore;
use crate::journal::{Change, Journal, NodeKind, NodeRecord, NodeState, Op, QueueState};
use crate::onprem::{self, Onprem};

mod apply;

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
        let meta = local.map(|(_, m)| m);
        match action {
            Action::Nothing => Ok(Merge::Done),
            Action::Record => self.record(path, entry, meta.as_ref()),
            Action::CreateDir => self.create_dir(path, report),
            Action::Download => {
                let e = entry.expect("download has a cloud entry");
                if self.download(set, path, e, meta.as_ref()).await? {
                    report.downloaded += 1;
                }
                Ok(Merge::Done)
            }
            Action::DeleteLocal => self.delete_local(path, meta, report),
            Action::MarkDeletedOnCloud => {
                self.mark_deleted_on_cloud(path, rec.expect("mark has a record"), report)
            }
            Action::Reupload => self.reupload(path, report),
            Action::Conflict(winner) => {
                let e = entry.expect("conflict has a cloud entry");
                let m = meta.as_ref().expect("conflict has a local side");
                self.conflict(set, path, e, m, rec, winner, report).await
            }
            Action::TypeConflict => {
                let e = entry.expect("type conflict has a cloud entry");
                let m = meta.as_ref().expect("type conflict has a local side");
                self.type_conflict(set, path, e, m, report).await
            }
        }
    }
}
