//! The puller: discovers cloud changes and merges them into the on-premise folder.
//!
//! Every `pull_interval`, or at once when asked, it pulls each sync set in three parts:
//! discovery (`discover.rs`: the walk of the cloud, skipping folders whose ETag has not changed
//! where the server gives folder ETags, against the journal), the decision per path (the pure
//! [`reconcile`] function), and propagation (`apply.rs`: one function per action). This file
//! holds the loop and the orchestration of one pull. Downloads go to a temporary file beside
//! the target and are put in place whole, so a reader never sees half a file, and the journal
//! record is written at once, so what the puller writes is never pushed back. A file open for
//! writing through the mount is never replaced under its writer; it waits for the next pull.

use crate::sync::{SyncError, SyncResult};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::parts::Parts;
use super::reconcile::{Action, Side, reconcile};
use super::sets::SyncSet;
use crate::cloud::{self, CloudEntry, CloudError};
use crate::journal::{Change, NodeKind, NodeRecord, NodeState, Op, QueueState};
use crate::onprem::Onprem;

mod apply;
mod discover;
mod moves;

use discover::{BusyCheck, Plan};

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
    /// Moved on-premise to the new name the cloud gave it.
    Moved(String),
}

/// What the cloud holds of one path: the item there, or the new name of the file the journal
/// knew there.
#[derive(Clone, Copy, Default)]
struct Remote<'a> {
    entry: Option<&'a CloudEntry>,
    moved_to: Option<(&'a str, &'a CloudEntry)>,
}

impl<'a> Remote<'a> {
    fn at(entry: Option<&'a CloudEntry>) -> Self {
        Remote {
            entry,
            moved_to: None,
        }
    }
}

/// What the ordered pass of one set's merge has set aside so far.
#[derive(Default)]
struct Pass<'a> {
    /// Folders settled with their whole subtree: nothing below is merged again.
    removed_dirs: Vec<String>,
    /// Paths left for later (busy, or failed to merge): folder tags above them are not
    /// remembered, so the next pull walks there again.
    incomplete: Vec<String>,
    /// Files new in the cloud, with nothing on-premise and no record: downloaded after the
    /// pass, `transfers` at a time. Everything else (folders, deletes, moves, conflicts) is
    /// merged in order first, so their folders exist by then.
    new_files: Vec<&'a str>,
    /// Move targets whose move was applied.
    moves_done: HashSet<String>,
    /// Both ends of folder moves that could not be carried out yet (a writer below, a change
    /// on its way): nothing at or below them is merged in this pull, so a move that waits is
    /// never taken for a delete and a new folder.
    held: Vec<String>,
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
    /// What the puller shares with the pusher.
    pub parts: Parts,
    /// Kernel cache invalidation.
    pub invalidate: Arc<dyn Invalidate>,
    /// Wakes the pusher after the puller queued work for it.
    pub wake_pusher: Arc<Notify>,
    /// One pull at a time.
    pub running: tokio::sync::Mutex<()>,
    /// Pulls so far.
    pub pulls: std::sync::atomic::AtomicU64,
    /// Downloads sent so far, for the pull report.
    pub gets: std::sync::atomic::AtomicU64,
    /// Paths found blocked on-premise (a link on the way) and warned about since the sync
    /// request whose count is held with them: once each, until the next sync request.
    pub blocked: std::sync::Mutex<(u64, HashSet<String>)>,
}

/// Cloud folders deeper than this many levels are not walked: each level costs a listing, and
/// a hostile server could nest folders without end.
pub const MAX_DEPTH: usize = 256;

/// Every this many pulls, folder tags are ignored and the whole tree is walked.
pub const FULL_WALK_EVERY: u64 = 20;

/// Strips the weak marker, so `W/"x"` and `"x"` compare equal.
fn tag(t: &Option<String>) -> Option<&str> {
    t.as_deref().map(|t| t.strip_prefix("W/").unwrap_or(t))
}

fn map_io(e: std::io::Error) -> SyncError {
    SyncError::Local(e)
}

/// True when nothing is at `path` on-premise (a path blocked by a link is not free).
fn free(o: &Onprem, path: &str) -> bool {
    matches!(o.stat(path), Ok(None))
}

/// True when no further request of this pull should be sent: the cloud is unreachable, or it
/// refused the credentials (one refused request is enough: a retry storm can trip a server's
/// brute-force lockout).
fn ends_pull(e: &SyncError) -> bool {
    e.is_transient() || e.is_unauthorized()
}

/// True when `e` says the on-premise path crosses a link or a special file.
fn crossing(e: &SyncError) -> bool {
    e.is_crossing()
}

impl Puller {
    /// A puller over `parts` that tells the kernel what it replaced through `invalidate` and
    /// wakes the pusher through `wake_pusher`.
    ///
    /// A cloud move that a crash cut short between the on-premise rename and the journal's is
    /// finished (or forgotten, when the rename did not happen) here, before the start-up scan
    /// could take it for a delete and a new folder.
    pub fn new(parts: Parts, invalidate: Arc<dyn Invalidate>, wake_pusher: Arc<Notify>) -> Self {
        let p = Puller {
            parts,
            invalidate,
            wake_pusher,
            running: tokio::sync::Mutex::new(()),
            pulls: std::sync::atomic::AtomicU64::new(1),
            gets: std::sync::atomic::AtomicU64::new(0),
            blocked: std::sync::Mutex::new((0, HashSet::new())),
        };
        p.recover_moves();
        p
    }

    /// Pulls every `interval` and whenever `now` is notified, until `stop` is cancelled.
    pub async fn run(
        self: Arc<Self>,
        interval: Duration,
        now: Arc<Notify>,
        stop: CancellationToken,
    ) {
        loop {
            if self
                .parts
                .shared
                .pull_paused
                .load(std::sync::atomic::Ordering::Relaxed)
                || self
                    .parts
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
    pub async fn pull_counted(&self) -> SyncResult<PullReport> {
        let started = std::time::Instant::now();
        let r = self.pull_once().await;
        self.parts
            .shared
            .counters
            .pull(r.is_ok(), started.elapsed());
        self.parts
            .shared
            .metrics
            .pulled(r.is_ok(), started.elapsed());
        self.report(&r);
        r
    }

    fn report(&self, r: &SyncResult<PullReport>) {
        {
            match r {
                Ok(r) => debug!(?r, "pull done"),
                Err(e) if e.is_transient() => {
                    debug!(error = %e, "pull: the cloud is unreachable; will retry")
                }
                Err(SyncError::Cloud(CloudError::Unauthorized)) => {
                    warn!(
                        "the cloud refused the credentials: pulling and pushing stop until a sync is requested"
                    );
                    self.parts
                        .shared
                        .auth_paused
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => warn!(error = %e, "pull failed"),
            }
        }
    }

    /// One pull over every sync set: discover, decide, apply.
    pub async fn pull_once(&self) -> SyncResult<PullReport> {
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
        if self.parts.cloud.folder_etags_cover_subtree() && !n.is_multiple_of(FULL_WALK_EVERY) {
            // A path whose upload met a 412 or 404 waits for this merge, whatever the tags say.
            let conflicted = self.parts.journal.conflict_ids()?;
            for set in self.parts.scope.sets.iter().filter(|s| !s.is_file) {
                if conflicted.keys().any(|p| self.parts.scope.owns(set, p)) {
                    continue;
                }
                let tag = self
                    .parts
                    .cloud
                    .stat(&set.cloud)
                    .await?
                    .and_then(|e| e.etag);
                report.requests += 1;
                let known = self.parts.journal.root_etag(&set.local)?;
                if tag.is_some() && tag == known {
                    idle.push(set.local.clone());
                }
            }
            if idle.len() == self.parts.scope.sets.iter().count() {
                return Ok(report);
            }
        }
        for set in self.parts.scope.sets.iter() {
            if idle.contains(&set.local) || self.parts.scope.is_unsynced(&set.local) {
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

    /// Pulls one set: discover, then merge every path in order, then the new files, then
    /// remember folder tags where everything below was merged.
    async fn pull_set(&self, set: &SyncSet, report: &mut PullReport) -> SyncResult<()> {
        self.recover_moves();
        let (mut plan, requests) = self.discover(set).await?;
        report.requests += requests;
        let busy = self.busy_check()?;
        let is_busy = |p: &str| busy.is_busy(p);
        // Moves first: folders, each in one rename with its records, then single files.
        // Nothing gone from the cloud, nothing moved: a quiet pull indexes nothing.
        let (held, moved) = if plan.gone.is_empty() {
            Default::default()
        } else {
            let held = self.move_folders(set, &mut plan, &busy, report).await?;
            let ix = moves::index(&plan.gone, &plan.found);
            let moved = self.file_moves(&ix, &held)?;
            (held, moved)
        };
        plan.move_targets = moved.values().cloned().collect();
        plan.moved = moved;
        let paths = plan.paths(|p| self.parts.scope.owns(set, p));
        let mut pass = Pass {
            held,
            ..Pass::default()
        };
        let mut sources: Vec<&str> = plan.moved.keys().map(String::as_str).collect();
        sources.sort_unstable();
        for &path in &sources {
            self.merge_one(set, &plan, &busy, path, &mut pass, report)
                .await?;
        }
        for &path in &paths {
            if plan.moved.contains_key(path) {
                continue; // merged above
            }
            self.merge_one(set, &plan, &busy, path, &mut pass, report)
                .await?;
        }
        let Pass {
            mut incomplete,
            new_files,
            moves_done,
            ..
        } = pass;
        // A move target is merged only by its move: one not applied (its source changed, or
        // was never reached) is left for the next pull, which walks there again.
        incomplete.extend(plan.rewritten.iter().cloned());
        incomplete.extend(
            plan.move_targets
                .iter()
                .filter(|t| !moves_done.contains(t.as_str()))
                .cloned(),
        );
        self.download_new(
            set,
            &plan.found,
            new_files,
            &is_busy,
            &mut incomplete,
            report,
        )
        .await?;
        self.remember_ids(&plan, &incomplete)?;
        self.remember_tags(set, &plan, &incomplete)
    }

    /// Finds the folder moves of `plan` and carries out each that can be now, moving its
    /// records and what the plan says of them along. Returns both ends of the moves that wait
    /// for a later pull.
    async fn move_folders(
        &self,
        set: &SyncSet,
        plan: &mut Plan,
        busy: &BusyCheck<'_>,
        report: &mut PullReport,
    ) -> SyncResult<Vec<String>> {
        let pairs = {
            let ix = moves::index(&plan.gone, &plan.found);
            self.folder_moves(set, &ix, &plan.rewritten)?
        };
        let mut held = Vec::new();
        for (from, to) in pairs {
            if busy.is_busy(&from)? || busy.is_busy(&to)? {
                held.extend([from, to]);
                continue;
            }
            match self.move_folder(&from, &to) {
                Ok(apply::FolderMove::Done) => {
                    plan.folder_moved(&from, &to);
                    report.other += 1;
                }
                Ok(apply::FolderMove::Later) => held.extend([from, to]),
                // Not a move after all (changed on-premise meanwhile): both sides are merged
                // as they are, file by file.
                Ok(apply::FolderMove::No) => {}
                Err(e) if ends_pull(&e) => return Err(e),
                // A link on the way: merged file by file, where each path meets it as today.
                Err(e) if crossing(&e) => {}
                Err(e) => {
                    warn!(from = %from, to = %to, error = %e, "cannot move a folder the cloud moved; trying again at the next pull");
                    held.extend([from, to]);
                }
            }
        }
        Ok(held)
    }

    /// Remembers the cloud's ids of the items found, where the cloud gives ids: the next pull
    /// recognises a move by them.
    fn remember_ids(&self, plan: &Plan, incomplete: &[String]) -> SyncResult<()> {
        let incomplete: HashSet<&str> = incomplete.iter().map(String::as_str).collect();
        let ids: Vec<(&str, &str)> = plan
            .found
            .iter()
            .filter(|(p, _)| !incomplete.contains(p.as_str()))
            .filter_map(|(p, e)| e.file_id.as_deref().map(|id| (p.as_str(), id)))
            .collect();
        if !ids.is_empty() {
            self.parts.journal.set_file_ids(&ids)?;
        }
        Ok(())
    }

    /// Remembers folder tags only after the whole walk was merged.
    fn remember_tags(&self, set: &SyncSet, plan: &Plan, incomplete: &[String]) -> SyncResult<()> {
        let covers_incomplete = |dir: &str| incomplete.iter().any(|p| cloud::is_within(p, dir));
        for (p, e) in &plan.found {
            if e.is_dir
                && !covers_incomplete(p)
                && e.etag.is_some()
                && let Ok(Some(mut r)) = self.parts.journal.node(p)
                && r.kind == NodeKind::Dir
                && r.etag != e.etag
            {
                r.etag = e.etag.clone();
                self.parts.journal.put_node(&r)?;
            }
        }
        // The folder tag seen when the walk began: a change made after it is seen next time.
        if let Some(root) = plan.root_tag.clone().filter(|_| incomplete.is_empty()) {
            self.parts.journal.set_root_etag(&set.local, &root)?;
        }
        Ok(())
    }

    /// Merges one path of the ordered pass, or sets it aside: busy, inside a folder already
    /// settled, a move target, or a file new in the cloud (downloaded after the pass).
    async fn merge_one<'p>(
        &self,
        set: &SyncSet,
        plan: &'p Plan,
        busy: &BusyCheck<'_>,
        path: &'p str,
        pass: &mut Pass<'p>,
        report: &mut PullReport,
    ) -> SyncResult<()> {
        if self.parts.scope.ignore.path_excluded(path) {
            return Ok(());
        }
        if !plan.conflicted.contains_key(path) && busy.is_busy(path)? {
            pass.incomplete.push(path.to_string());
            return Ok(());
        }
        if pass.held.iter().any(|d| cloud::is_within(path, d)) {
            pass.incomplete.push(path.to_string());
            return Ok(());
        }
        if pass.removed_dirs.iter().any(|d| cloud::is_within(path, d))
            || plan.move_targets.contains(path)
        {
            return Ok(());
        }
        if self.parts.scope.is_unsynced(path) {
            return Ok(());
        }
        // From the moment the pusher's conflict entry is taken until the path is queued again
        // after the merge, the path reads `downloading` (and so do its folders): a script's
        // `sync --wait` never sees it settled in between.
        let _merging = plan
            .conflicted
            .contains_key(path)
            .then(|| self.parts.shared.downloading(path));
        if let Some(ids) = plan.conflicted.get(path)
            && !self.take_conflicted(ids)?
        {
            pass.incomplete.push(path.to_string());
            return Ok(());
        }
        // Read now, after the walk: a push may have finished since.
        let fresh;
        let rec = match plan.gone.get(path) {
            Some(r) => Some(r),
            None => {
                fresh = self.parts.journal.node(path)?;
                fresh.as_ref()
            }
        };
        let now = match plan.gone.get(path) {
            Some(_) => self.parts.journal.node(path)?,
            None => None,
        };
        let rec_now = if plan.gone.contains_key(path) {
            now.as_ref()
        } else {
            rec
        };
        if !plan.conflicted.contains_key(path) && !plan.record_as_before(path, rec_now) {
            debug!(
                path,
                "synced while the walk was under way; merged at the next pull"
            );
            pass.incomplete.push(path.to_string());
            return Ok(());
        }
        if rec.is_none()
            && !plan.conflicted.contains_key(path)
            && plan.found.get(path).is_some_and(|e| !e.is_dir)
            && free(&self.parts.onprem, path)
        {
            pass.new_files.push(path);
            return Ok(());
        }
        let merged = self
            .merge_path(
                set,
                path,
                Remote {
                    entry: plan.found.get(path),
                    moved_to: plan
                        .moved
                        .get(path)
                        .map(|to| (to.as_str(), &plan.found[to])),
                },
                rec,
                plan.conflicted.contains_key(path),
                report,
            )
            .await;
        if plan.conflicted.contains_key(path) {
            // The pusher's entry was taken for this merge. Whatever the merge found, the
            // pusher looks at the path again: a spurious 412 or 404 (a proxy's), or a merge
            // cut short, never drops the on-premise change.
            self.parts
                .journal
                .enqueue(&[Change::Path(Op::Check, path.to_string())], 0)?;
            self.wake_pusher.notify_one();
        }
        self.settle(path, merged, pass)
    }

    /// The merge below settles what the pusher could not, unless a new change has put the
    /// entry back in the pusher's hands since the queue was read: true when every queue entry
    /// `ids` was taken.
    fn take_conflicted(&self, ids: &[i64]) -> SyncResult<bool> {
        let mut taken = true;
        for &id in ids {
            taken &= self
                .parts
                .journal
                .remove_in_state(id, QueueState::Conflict)?;
        }
        Ok(taken)
    }

    /// Notes what merging `path` came to; only an error that ends the pull is returned.
    fn settle(&self, path: &str, merged: SyncResult<Merge>, pass: &mut Pass<'_>) -> SyncResult<()> {
        match merged {
            Ok(Merge::Subtree(d)) => pass.removed_dirs.push(d),
            Ok(Merge::Done) => {}
            Ok(Merge::Later) => pass.incomplete.push(path.to_string()),
            Ok(Merge::Moved(to)) => {
                pass.moves_done.insert(to);
            }
            Err(e) if ends_pull(&e) => return Err(e),
            Err(e) if crossing(&e) => {
                pass.incomplete.push(path.to_string());
                self.blocked(path)?;
            }
            Err(e) => {
                pass.incomplete.push(path.to_string());
                warn!(path = %path, error = %e, "cannot merge a cloud change")
            }
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
        is_busy: &(dyn Fn(&str) -> SyncResult<bool> + Sync),
        incomplete: &mut Vec<String>,
        report: &mut PullReport,
    ) -> SyncResult<()> {
        use futures_util::stream::{FuturesUnordered, StreamExt};
        let bytes = paths
            .iter()
            .filter_map(|p| found.get(*p))
            .map(|e| e.size)
            .sum();
        let mut log = self
            .parts
            .shared
            .progress
            .planned_downloads(paths.len() as u64, bytes);
        let stopped = std::sync::atomic::AtomicBool::new(false);
        let mut waiting = paths.into_iter();
        let mut running = FuturesUnordered::new();
        let mut first_transient = None;
        loop {
            while running.len() < self.parts.transfers.max(1)
                && let Some(path) = waiting.next()
            {
                running.push(self.merge_new(set, found, path, is_busy, &stopped));
            }
            let Some((path, res, r)) = running.next().await else {
                break;
            };
            log.tick(&self.parts.shared.progress);
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
        is_busy: &(dyn Fn(&str) -> SyncResult<bool> + Sync),
        stopped: &std::sync::atomic::AtomicBool,
    ) -> (&'a str, Result<(), Option<SyncError>>, PullReport) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut r = PullReport::default();
        if stopped.load(Relaxed) {
            return (path, Err(None), r);
        }
        let res = match is_busy(path) {
            Ok(true) => return (path, Err(None), r),
            Ok(false) => match self.parts.journal.node(path) {
                Ok(rec) => {
                    match self
                        .merge_path(
                            set,
                            path,
                            Remote::at(found.get(path)),
                            rec.as_ref(),
                            false,
                            &mut r,
                        )
                        .await
                    {
                        Ok(Merge::Later) => return (path, Err(None), r),
                        Ok(_) => Ok(()),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e.into()),
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
    ) -> SyncResult<Option<(Side, std::fs::Metadata)>> {
        let m = match self.parts.onprem.stat(path).map_err(map_io)? {
            Some(m) => m,
            None => return Ok(None),
        };
        if !(m.is_file() || m.is_dir()) {
            // A link or a special file holds the name: nothing of the cloud's goes there,
            // and nothing is read through it.
            return Err(SyncError::Local(std::io::Error::from_raw_os_error(
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
                    let (o, p) = (self.parts.onprem.clone(), path.to_string());
                    let h = tokio::task::spawn_blocking(move || o.hash(&p))
                        .await?
                        .map_err(map_io)?;
                    // The snapshot has no hashes: the record's own.
                    let known = self.parts.journal.node(path)?.and_then(|r| r.hash);
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
        remote: Remote<'_>,
        rec: Option<&NodeRecord>,
        taken: bool,
        report: &mut PullReport,
    ) -> SyncResult<Merge> {
        let entry = remote.entry;
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
            remote.moved_to.is_some(),
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
            && (self.parts.shared.renaming_over(path)
                || self.parts.shared.unflushed_over(path)
                || self.parts.journal.pending_overlaps(path)?)
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
            Action::Move => {
                let (to, e) = remote.moved_to.expect("a move has a target");
                if self.apply_move(path, to, e).await? {
                    report.other += 1;
                    Ok(Merge::Moved(to.to_string()))
                } else {
                    // A writer has it open, or the target was taken meanwhile: never delete
                    // it for want of a move; look again at the next pull.
                    Ok(Merge::Later)
                }
            }
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
