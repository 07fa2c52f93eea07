//! The pusher: carries queued on-premise changes to the cloud, on tokio.
//!
//! It takes entries in queue order. An entry waits while an earlier entry touches the same path,
//! an ancestor or a descendant (so a folder's creation precedes its children, and a move waits
//! for earlier changes of its source), and at most `transfers` run at once. Each push decides
//! from the on-premise state and the journal record, not from the queued operation alone, so
//! editor save patterns collapse to one update. The journal is written only after the cloud
//! call succeeded.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

use super::{Shared, jr, record_of};
use crate::cloud::{self, Cloud, CloudError, Precondition};
use crate::fs::handles::OpenWriters;
use crate::ignore::Ignore;
use crate::journal::{
    Change, FileStat, Intent, Journal, NodeKind, NodeRecord, NodeState, Op, QueueEntry, QueueState,
    now_ms,
};
use crate::onprem::Onprem;

/// Longest wait between two retries of a transient failure.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What a push came to, when it did not fail.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Done; drop the entry.
    Done,
    /// Not now (the file is open for writing, or changed during the upload).
    Later,
    /// Replace the entry by these changes, under today's names (what a folder holds now).
    Replace(Vec<Change>),
    /// Replace the entry by these changes, under the names of the entry's time (a rename's
    /// source and target): the renames queued after the entry carry them to today's names.
    Carry(Vec<Change>),
}

/// Everything the pusher needs.
pub struct Pusher {
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
    /// Shared with status reads.
    pub shared: Arc<Shared>,
    /// Woken when new changes are queued.
    pub wake: Arc<Notify>,
    /// Asks the puller to merge at once (after a conflicting upload).
    pub pull_now: Arc<Notify>,
    /// Parallel transfers.
    pub transfers: usize,
    /// Quiet time before a push.
    pub push_delay: Duration,
    /// Which folders sync where.
    pub sets: super::sets::SyncSets,
    /// Paths unsynced at run time.
    pub unsynced: Arc<std::sync::Mutex<Vec<String>>>,
}

/// Paths taken by earlier or running entries; a later entry that touches one of them, an
/// ancestor or a descendant, waits. Each check costs the depth of the path.
#[derive(Default)]
pub(crate) struct Busy {
    exact: HashSet<String>,
    ancestors: HashSet<String>,
}

impl Busy {
    pub(crate) fn add(&mut self, path: &str, dest: Option<&str>) {
        for p in std::iter::once(path).chain(dest) {
            let mut a = p;
            while !a.is_empty() {
                a = cloud::parent(a);
                if !self.ancestors.insert(a.to_string()) {
                    break; // the rest of the chain is there already
                }
            }
            self.exact.insert(p.to_string());
        }
    }

    pub(crate) fn overlaps(&self, path: &str) -> bool {
        if self.exact.contains(path) || self.ancestors.contains(path) {
            return true;
        }
        let mut a = path;
        while !a.is_empty() {
            a = cloud::parent(a);
            if self.exact.contains(a) {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
fn overlaps(a: &str, b: &str) -> bool {
    cloud::is_within(a, b) || cloud::is_within(b, a)
}

#[cfg(test)]
fn entry_overlaps(a: &(String, Option<String>), b: &(String, Option<String>)) -> bool {
    let av = std::iter::once(a.0.as_str()).chain(a.1.as_deref());
    av.into_iter().any(|x| {
        std::iter::once(b.0.as_str())
            .chain(b.1.as_deref())
            .any(|y| overlaps(x, y))
    })
}

/// Capped exponential backoff with jitter, in ms.
pub fn backoff_ms(attempts: u32) -> i64 {
    let base = 1000u64.saturating_mul(1u64 << attempts.min(16));
    let capped = base.min(MAX_BACKOFF.as_millis() as u64);
    let jitter = 0.5 + fastrand::f64();
    (capped as f64 * jitter) as i64
}

/// Hashes an open file's content from its start (BLAKE3, hex), whatever its offset.
pub fn hash_open(f: &std::fs::File) -> std::io::Result<String> {
    use std::os::unix::fs::FileExt;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    loop {
        let n = f.read_at(&mut buf, at)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        at += n as u64;
    }
    Ok(h.finalize().to_hex().to_string())
}

impl Pusher {
    /// Runs until `stop` is cancelled. In-flight transfers are abandoned at stop; their entries
    /// stay queued and run again at the next start.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let sem = Arc::new(Semaphore::new(self.transfers));
        loop {
            let (next, _) = self.schedule(&sem);
            let wait = match next {
                Some(t) => Duration::from_millis((t - now_ms()).clamp(5, 1000) as u64),
                None => Duration::from_secs(1),
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        debug!("pusher stopped");
    }

    /// Pushes what is due now, and what those pushes queue in turn, until nothing more can
    /// start and nothing runs: one stretch of [`Pusher::run`] taken to quiet. Entries waiting
    /// for a later time (a retry, the push delay) stay queued, and nothing is sent while
    /// pushing is paused. Returns how many entries it started. The engine tests drive the
    /// pusher with this.
    pub async fn push_until_quiet(self: &Arc<Self>) -> usize {
        let sem = Arc::new(Semaphore::new(self.transfers));
        let mut total = 0;
        loop {
            let woken = self.wake.notified();
            let (_, started) = self.schedule(&sem);
            total += started;
            let running = !self
                .shared
                .in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty();
            if started == 0 && !running {
                return total;
            }
            // A finishing transfer wakes us; the timeout only guards against a lost wake-up.
            let _ = tokio::time::timeout(Duration::from_millis(50), woken).await;
        }
    }

    /// Starts every entry that may start now; returns the earliest time a waiting entry is due,
    /// and how many entries it started.
    fn schedule(self: &Arc<Self>, sem: &Arc<Semaphore>) -> (Option<i64>, usize) {
        if self.shared.auth_paused.load(Ordering::Relaxed)
            || self.shared.push_paused.load(Ordering::Relaxed)
        {
            // Nothing is sent while paused: a pull asked for need not wait.
            if self.shared.pull_requested_at.swap(0, Ordering::Relaxed) > 0 {
                self.pull_now.notify_one();
            }
            return (None, 0);
        }
        if sem.available_permits() == 0 {
            return (None, 0); // a finishing transfer wakes us
        }
        let now = now_ms();
        let offline = self.shared.is_offline();
        let mut busy = Busy::default();
        let in_flight: Vec<(String, Option<String>)> = {
            let m = self
                .shared
                .in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if offline && !m.is_empty() {
                return (Some(now + 200), 0); // while offline, probe with one transfer at a time
            }
            m.values().cloned().collect()
        };
        for (p, d) in &in_flight {
            busy.add(p, d.as_deref());
        }
        let running: HashSet<i64> = self
            .shared
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        let mut next: Option<i64> = None;
        let mut started = 0;
        // Entries are read one by one and the walk stops once every transfer slot is taken,
        // so a wake-up after each finished transfer costs a few rows, not a page of the queue.
        let mut queued = false;
        let walked = self.journal.for_each_pending(256, |e| {
            queued = true;
            if running.contains(&e.id) {
                return true;
            }
            let key = (e.path.clone(), e.dest.clone());
            let blocked =
                busy.overlaps(&key.0) || key.1.as_deref().is_some_and(|d| busy.overlaps(d));
            busy.add(&key.0, key.1.as_deref());
            if blocked {
                return true;
            }
            let due = e.not_before.max(e.next_retry_at);
            if due > now {
                next = Some(next.map_or(due, |n: i64| n.min(due)));
                return true;
            }
            let Ok(permit) = sem.clone().try_acquire_owned() else {
                return false;
            };
            self.shared
                .in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(e.id, key);
            let me = self.clone();
            let span = tracing::info_span!("push", path = %e.path, op = e.op.as_str());
            started += 1;
            tokio::spawn(
                async move {
                    me.run_one(e).await;
                    drop(permit);
                    me.wake.notify_one();
                }
                .instrument(span),
            );
            !offline && sem.available_permits() > 0
        });
        if let Err(e) = walked {
            warn!(error = %e, "cannot read the queue");
            return (None, started);
        }
        // A pull asked for by a sync request starts once the queue is drained (or has waited
        // long enough).
        let asked = self.shared.pull_requested_at.load(Ordering::Relaxed);
        if asked > 0 {
            let waited = now - asked >= super::PULL_AFTER_SYNC_WAIT.as_millis() as i64;
            if (!queued || waited)
                && self
                    .shared
                    .pull_requested_at
                    .compare_exchange(asked, 0, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                self.pull_now.notify_one();
            }
        }
        (next, started)
    }

    async fn run_one(&self, e: QueueEntry) {
        let started = std::time::Instant::now();
        let result = match e.op {
            Op::Rename => {
                self.push_rename(&e.path, e.dest.as_deref().unwrap_or_default())
                    .await
            }
            _ => self.push_path(&e.path).await,
        };
        self.shared
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&e.id);
        let ok = matches!(
            result,
            Ok(Outcome::Done | Outcome::Replace(_) | Outcome::Carry(_))
        );
        if !matches!(result, Ok(Outcome::Later)) {
            self.shared.counters.push(ok, started.elapsed());
        }
        let j = &self.journal;
        let r = match result {
            Ok(outcome) => {
                *self
                    .shared
                    .offline_since
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = None;
                match outcome {
                    Outcome::Done => {
                        debug!(ms = started.elapsed().as_millis() as u64, "pushed");
                        j.finish(e.id, e.generation).map(|_| ())
                    }
                    Outcome::Later => {
                        j.postpone(e.id, now_ms() + self.push_delay.as_millis() as i64)
                    }
                    Outcome::Replace(changes) => {
                        j.replace(e.id, e.generation, &changes, false).map(|_| ())
                    }
                    Outcome::Carry(changes) => {
                        j.replace(e.id, e.generation, &changes, true).map(|_| ())
                    }
                }
            }
            // The file vanished on-premise while we worked on it (renamed, deleted, or set
            // aside as a conflict copy): decide again later, from what is there then.
            Err(CloudError::Io(err)) if err.kind() == std::io::ErrorKind::NotFound => {
                j.postpone(e.id, now_ms() + self.push_delay.as_millis() as i64)
            }
            Err(err) if err.is_transient() => {
                let mut off = self
                    .shared
                    .offline_since
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if off.is_none() {
                    warn!(error = %err, "the cloud is unreachable; changes stay queued and sync resumes by itself");
                    *off = Some(now_ms());
                }
                drop(off);
                j.retry_later(e.id, now_ms() + backoff_ms(e.attempts), &err.to_string())
            }
            // The cloud copy changed or vanished since the last sync: never overwrite.
            Err(CloudError::PreconditionFailed | CloudError::NotFound) if e.op != Op::Rename => {
                warn!(
                    "the cloud copy changed since the last sync; kept for the reconciler, not overwritten"
                );
                self.pull_now.notify_one();
                j.fail(
                    e.id,
                    e.generation,
                    QueueState::Conflict,
                    crate::status::FailureCode::NameClash,
                    "the cloud copy changed since the last sync",
                )
                .map(|_| ())
            }
            Err(err) => {
                let code = err.failure_code();
                if matches!(err, CloudError::Unauthorized) {
                    self.shared.auth_paused.store(true, Ordering::Relaxed);
                    warn!(
                        "the cloud refused the credentials: pushing stops until a sync is requested"
                    );
                } else {
                    warn!(code = code.as_str(), error = %err, "push failed");
                }
                j.fail(
                    e.id,
                    e.generation,
                    QueueState::Failed,
                    code,
                    &err.to_string(),
                )
                .map(|_| ())
            }
        };
        if let Err(err) = r {
            warn!(error = %err, "cannot record the push result in the journal");
        }
    }

    async fn blocking<T: Send + 'static>(
        f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, CloudError> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| CloudError::Io(std::io::Error::other(e)))?
            .map_err(CloudError::Io)
    }

    /// Makes the cloud match the on-premise state of `path`.
    /// The cloud path of a synced on-premise path, and its set.
    fn target(&self, path: &str) -> Option<(String, &super::sets::SyncSet)> {
        if self.ignore.path_excluded(path) || super::is_unsynced(&self.unsynced, path) {
            return None;
        }
        let set = self.sets.set_for(path)?;
        Some((set.to_cloud(path), set))
    }

    async fn push_path(&self, path: &str) -> Result<Outcome, CloudError> {
        let Some((cpath, set)) = self.target(path) else {
            return Ok(Outcome::Done);
        };
        if path.is_empty() || path == set.local && !set.is_file {
            // A set's own folder: make sure it exists in the cloud.
            if !path.is_empty() {
                self.cloud.mkdir(&cpath).await?;
            }
            return Ok(Outcome::Done);
        }
        let local = match self.onprem.stat(path) {
            Ok(m) => m,
            // Never pushed, and never taken for a delete: left alone until the way is clear.
            Err(e) if crate::onprem::is_crossing(&e) => {
                return Err(CloudError::Blocked(crate::onprem::crossing_detail(path)));
            }
            Err(e) => return Err(CloudError::Io(e)),
        };
        // Gone here. If a change at or above it is still on its way to the journal (a folder
        // renamed a moment ago), decide once it is queued: that rename moves this item.
        if local.is_none() && self.shared.unflushed_at_or_above(path) {
            return Ok(Outcome::Later);
        }
        let rec = jr(self.journal.node(path))?;
        if local.is_none()
            && let Some((from, to)) = jr(self.journal.rename_over(path))?
        {
            // Gone because a folder above it was renamed after this entry was taken (it ran
            // while that rename was queued, and the rename carried a copy of it). The rename
            // carries what is in the cloud; what never got there goes up under the name the
            // renames queued since give it.
            debug!(from, to, "renamed meanwhile");
            return Ok(if rec.is_some() {
                Outcome::Done
            } else {
                Outcome::Carry(vec![Change::Path(Op::Check, path.to_string())])
            });
        }
        match local {
            None => {
                let Some(r) = rec else {
                    return Ok(Outcome::Done);
                };
                if set.cloud_delete && r.kind == NodeKind::Dir {
                    let kept = self.delete_dir_keeping(&cpath, set).await?;
                    if kept.is_empty() {
                        info!("deleted in the cloud");
                    } else {
                        info!(
                            kept = kept.len(),
                            "folder kept in the cloud: it holds what changed there since the last sync, or what cannot be synced"
                        );
                        self.remember_kept(path, &r, set, &kept)?;
                        return Ok(Outcome::Done);
                    }
                } else if set.cloud_delete && r.state == NodeState::Failed {
                    // Deleted in the cloud already (DELETED_ON_CLOUD): whatever is at the path
                    // now is someone's new item, never ours to delete.
                    info!("deleted on-premise; its cloud copy was gone already");
                } else if set.cloud_delete {
                    let cond = match &r.etag {
                        Some(t) => Precondition::IfMatch(t.clone()),
                        None => Precondition::None,
                    };
                    match self.cloud.delete(&cpath, &cond).await {
                        Ok(()) | Err(CloudError::NotFound) => info!("deleted in the cloud"),
                        Err(CloudError::PreconditionFailed) => {
                            // Delete against edit: the edit wins. The cloud copy stays, and the
                            // reconciler brings it back.
                            info!("not deleted in the cloud: it changed there since the last sync");
                        }
                        Err(e) => return Err(e),
                    }
                }
                if !set.cloud_delete {
                    // The cloud copy stays; the record stays too, so the next pull does not
                    // bring it back while the cloud copy is unchanged. An upload intent goes
                    // with the on-premise file.
                    jr(self.journal.end_intents_under(path))?;
                    return Ok(Outcome::Done);
                }
                jr(self.journal.delete_subtree(path))?;
                Ok(Outcome::Done)
            }
            Some(m) if m.is_dir() => {
                if let Some(r) = &rec {
                    // The inode tells this folder from one made in its place, and from a
                    // folder the pusher made in the cloud for a move into it (recorded with
                    // no inode): what either holds is not known to be in the cloud yet.
                    if r.kind == NodeKind::Dir && r.state == NodeState::Synced && r.ino == m.ino() {
                        // Synced: only what differs one level down is looked at again.
                        let changes = self.children_to_check(path, true).await?;
                        if self.shared.renaming_over(path) {
                            return Ok(Outcome::Later);
                        }
                        return Ok(if changes.is_empty() {
                            Outcome::Done
                        } else {
                            Outcome::Replace(changes)
                        });
                    }
                    if r.kind == NodeKind::File {
                        // A file became a folder: the cloud file goes, unless it changed there.
                        let cond = r
                            .etag
                            .clone()
                            .map_or(Precondition::None, Precondition::IfMatch);
                        match self.cloud.delete(&cpath, &cond).await {
                            Ok(()) | Err(CloudError::NotFound) => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
                self.cloud.mkdir(&cpath).await?;
                // Whatever is already inside (a folder moved in, or found by a scan) follows.
                // The record is written once the listing is in hand: a folder renamed away
                // meanwhile leaves no record that says its contents are in the cloud.
                let children = self.children_to_check(path, false).await?;
                jr(self.journal.put_node(&record_of(path, &m, None, None)))?;
                if self.shared.renaming_over(path) {
                    // A rename here is not queued yet: the listing may show what it brought,
                    // under names the cloud does not have yet. Looked at again once queued
                    // (the rename carries this entry, if it moved the folder).
                    return Ok(Outcome::Later);
                }
                if children.is_empty() {
                    Ok(Outcome::Done)
                } else {
                    Ok(Outcome::Replace(children))
                }
            }
            Some(m) if m.is_file() => self.push_file(path, &cpath, m, rec).await,
            Some(_) => Ok(Outcome::Done), // symlinks and special files stay on-premise
        }
    }

    /// Deletes a cloud folder, but never what changed there since the last sync; true when
    /// the folder is gone. See [`Pusher::delete_dir_keeping`].
    async fn delete_dir_safely(
        &self,
        cpath: &str,
        set: &super::sets::SyncSet,
    ) -> Result<bool, CloudError> {
        Ok(self.delete_dir_keeping(cpath, set).await?.is_empty())
    }

    /// Deletes a cloud folder, but never what changed there since the last sync, nor what its
    /// listing could not show. The folder goes in one request only when every entry below
    /// it, at every depth, was understood (the listings skipped nothing: no name that is not
    /// UTF-8, no symbolic link or special file, no refused href) and is known to the journal
    /// (a file with the same ETag, or a folder). Otherwise the known files go one by one, then
    /// the known folders left empty, deepest first, and the rest stays. Returns the cloud
    /// folders left in place, `cpath` among them; none when the folder is gone.
    async fn delete_dir_keeping(
        &self,
        cpath: &str,
        set: &super::sets::SyncSet,
    ) -> Result<Vec<String>, CloudError> {
        let strip =
            |t: &Option<String>| t.as_deref().map(|t| t.trim_start_matches("W/").to_string());
        let known_dir = |p: &str| -> Result<bool, CloudError> {
            Ok(p == cpath
                || jr(self.journal.node(&set.to_local(p)))?
                    .is_some_and(|r| r.kind == NodeKind::Dir))
        };
        let mut known = Vec::new();
        let mut whole = true;
        let mut dirs = vec![cpath.to_string()];
        let mut all_dirs = Vec::new();
        while let Some(d) = dirs.pop() {
            let listing = match self.cloud.list(&d).await {
                Ok(l) => l,
                Err(CloudError::NotFound) => continue,
                Err(e) => return Err(e),
            };
            if !listing.is_complete() {
                info!(
                    folder = %d,
                    skipped = ?listing.skipped,
                    "the cloud folder holds items that cannot be synced; they stay in the cloud"
                );
                whole = false;
            }
            all_dirs.push(d);
            for e in listing.entries {
                if e.is_dir {
                    whole &= known_dir(&e.path)?;
                    dirs.push(e.path);
                    continue;
                }
                let rec = jr(self.journal.node(&set.to_local(&e.path)))?;
                match rec {
                    Some(r)
                        if r.kind == NodeKind::File
                            && r.etag.is_some()
                            && strip(&r.etag) == strip(&e.etag) =>
                    {
                        known.push((e.path, r.etag.unwrap_or_default()));
                    }
                    _ => whole = false,
                }
            }
        }
        if whole {
            return match self.cloud.delete(cpath, &Precondition::None).await {
                Ok(()) | Err(CloudError::NotFound) => Ok(Vec::new()),
                Err(e) => Err(e),
            };
        }
        for (p, tag) in known {
            match self.cloud.delete(&p, &Precondition::IfMatch(tag)).await {
                Ok(()) | Err(CloudError::NotFound) | Err(CloudError::PreconditionFailed) => {}
                Err(e) => return Err(e),
            }
        }
        // Known folders left empty go too, deepest first (a folder was listed before anything
        // in it); a folder that still holds anything, even what a listing skips, stays.
        let mut kept = Vec::new();
        for d in all_dirs.into_iter().rev() {
            if known_dir(&d)? {
                match self.cloud.list(&d).await {
                    Ok(l) if l.entries.is_empty() && l.is_complete() => {
                        match self.cloud.delete(&d, &Precondition::None).await {
                            Ok(()) | Err(CloudError::NotFound) => continue,
                            Err(e) if e.is_transient() => return Err(e),
                            Err(_) => {}
                        }
                    }
                    Ok(_) => {}
                    Err(CloudError::NotFound) => continue,
                    Err(e) if e.is_transient() => return Err(e),
                    Err(_) => {}
                }
            }
            kept.push(d);
        }
        Ok(kept)
    }

    /// After an on-premise delete of the folder `path` (record `rec`) that left the cloud
    /// folders `kept` in place: each of them keeps a record (a copy of the folder's own for one
    /// the journal did not know), so the next pull does not bring them back on-premise, and
    /// every other record below `path` is forgotten, so what changed in the cloud is pulled
    /// again as new. A later delete of the same records (the next scan queues one) tries again.
    fn remember_kept(
        &self,
        path: &str,
        rec: &NodeRecord,
        set: &super::sets::SyncSet,
        kept: &[String],
    ) -> Result<(), CloudError> {
        let kept: HashSet<String> = kept.iter().map(|c| set.to_local(c)).collect();
        let mut others = Vec::new();
        let mut have = HashSet::new();
        jr(self.journal.for_each_node_under(path, |r| {
            // The folders kept are closed under their parents, so no other record holds one.
            if !kept.contains(&r.path) {
                others.push(r.path);
            } else if r.kind == NodeKind::Dir {
                have.insert(r.path);
            }
        }))?;
        let missing: Vec<NodeRecord> = kept
            .iter()
            .filter(|p| !have.contains(*p))
            .map(|p| NodeRecord {
                path: p.clone(),
                etag: None,
                ..rec.clone()
            })
            .collect();
        jr(self.journal.put_nodes(&missing))?;
        for p in others {
            jr(self.journal.delete_subtree(&p))?;
        }
        Ok(())
    }

    /// Checks for what the folder `path` holds on-premise, and for what its records say it
    /// held but it no longer does (so a delete reaches the cloud). With `differing`, only
    /// those that differ: an item with no record, or a record with no item.
    ///
    /// A folder push compares one level, so what a push saw at a name that a rename gave to
    /// another folder meanwhile (it reached the cloud under the old folder, which the rename
    /// then moved) is put right by the push of the folder that the rename queued.
    async fn children_to_check(
        &self,
        path: &str,
        differing: bool,
    ) -> Result<Vec<Change>, CloudError> {
        let onprem = self.onprem.clone();
        let dir = path.to_string();
        let ignore = self.ignore.clone();
        let here: Vec<String> = Self::blocking(move || {
            let mut v = Vec::new();
            for de in onprem.read_dir(&dir)? {
                let de = de?;
                if let Some(name) = de.name.to_str()
                    && !ignore.name_excluded(name)
                {
                    v.push(cloud::join(&dir, name));
                }
            }
            Ok(v)
        })
        .await?;
        let recorded: HashSet<String> = jr(self.journal.child_paths(path))?.into_iter().collect();
        let here_set: HashSet<&str> = here.iter().map(String::as_str).collect();
        let gone = recorded.iter().filter(|p| !here_set.contains(p.as_str()));
        let mut v: Vec<&String> = here
            .iter()
            .filter(|p| !differing || !recorded.contains(*p))
            .chain(gone)
            .collect();
        v.sort_unstable();
        Ok(v.into_iter()
            .map(|p| Change::Path(Op::Check, p.clone()))
            .collect())
    }

    async fn push_file(
        &self,
        path: &str,
        cpath: &str,
        m: std::fs::Metadata,
        rec: Option<NodeRecord>,
    ) -> Result<Outcome, CloudError> {
        if self.writers.is_open(m.ino()) {
            return Ok(Outcome::Later);
        }
        // Opened once, through the door: what is hashed and sent is this file, whatever
        // happens to its name meanwhile.
        let file = match self.onprem.open_file(path) {
            Ok(f) => Arc::new(f),
            // Renamed or deleted meanwhile: the queue holds what happened to it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Outcome::Later),
            Err(e) if crate::onprem::is_crossing(&e) => {
                return Err(CloudError::Blocked(crate::onprem::crossing_detail(path)));
            }
            Err(e) => return Err(CloudError::Io(e)),
        };
        if file.metadata()?.ino() != m.ino() {
            return Ok(Outcome::Later);
        }
        if let Some(r) = &rec
            && r.state == NodeState::Synced
            && r.unchanged(&m)
        {
            return Ok(Outcome::Done);
        }
        // The content is hashed before the upload: a synced file whose stat moved may hold the
        // same bytes (a touch, a chmod, a rename, a restart), and the upload intent says what
        // is about to be sent.
        let f = file.clone();
        let hash = Some(Self::blocking(move || hash_open(&f)).await?);
        let cond = match &rec {
            // Deleted in the cloud and kept here (DELETED_ON_CLOUD): pushed again as new.
            Some(r) if r.state == NodeState::Failed => Precondition::IfNoneMatch,
            Some(r) if r.kind == NodeKind::File => {
                if hash.is_some() && r.hash == hash && r.state == NodeState::Synced {
                    // Same content (touch, rename, or a restart): only the stat changed.
                    jr(self.journal.put_node(&NodeRecord {
                        synced_at: r.synced_at,
                        ..record_of(path, &m, hash, r.etag.clone())
                    }))?;
                    return Ok(Outcome::Done);
                }
                super::intent::precondition_for(Some(r))
            }
            Some(_) => {
                // A folder became a file.
                let set = self.sets.set_for(path).ok_or(CloudError::NotFound)?;
                if !self.delete_dir_safely(cpath, set).await? {
                    return Err(CloudError::PreconditionFailed);
                }
                jr(self.journal.delete_subtree(path))?;
                Precondition::IfNoneMatch
            }
            None => Precondition::IfNoneMatch,
        };
        // The intent says what this attempt sends, before it is sent. It stays only when the
        // attempt is cut short in a way that may have left part of the body in the cloud (a
        // dropped connection, a dead daemon). The retry then meets a 412, which goes to the
        // puller's merge like any other: the cloud copy is replaced only when the intent
        // proves it is that leftover, and kept as a conflict copy otherwise.
        let prior = jr(self.journal.intent(path))?;
        jr(self.journal.set_intent(&Intent {
            path: path.to_string(),
            precondition: Some(cond.clone()),
            size: Some(m.size()),
            hash: hash.clone(),
            started_at: now_ms(),
        }))?;
        let put = match self.cloud.upload(cpath, &file, &cond).await {
            Err(CloudError::MissingParent) => match self.make_parents(path, cpath).await {
                Ok(()) => self.cloud.upload(cpath, &file, &cond).await,
                Err(e) => Err(e),
            },
            r => r,
        };
        // Nothing of this attempt reached the cloud (refused connection, an answer such as 412
        // or 423): what an earlier attempt left, if anything, is still what the cloud holds.
        // After a complete upload the intent ends with the record below, in one transaction.
        if let Err(e) = &put
            && super::intent::stored_nothing(e)
        {
            match &prior {
                Some(i) => jr(self.journal.set_intent(i))?,
                None => jr(self.journal.end_intent(path))?,
            }
        }
        let crate::cloud::Uploaded { etag, hash: sent } = put?;
        // A file renamed or deleted during the upload counts as changed: the cloud tag is
        // recorded, and the queue decides again.
        let after = self.onprem.stat(path).ok().flatten();
        // So does a rename there that the queue does not hold yet: what was sent may be
        // what the rename brought to this name.
        if !after
            .as_ref()
            .is_some_and(|a| FileStat::of(a) == FileStat::of(&m))
            || self.writers.is_open(m.ino())
            || self.shared.renaming_over(path)
        {
            // Changed during the upload: record the new cloud tag, but not as synced content.
            jr(self.journal.put_node_ending_intent(&NodeRecord {
                hash: None,
                ..record_of(path, &m, None, etag)
            }))?;
            info!("changed during upload; will upload again");
            return Ok(Outcome::Later);
        }
        // The stat did not move during the upload, so what was sent is the file's content.
        let hash = match sent.or(hash) {
            Some(h) => h,
            None => {
                let f = file.clone();
                Self::blocking(move || hash_open(&f)).await?
            }
        };
        jr(self
            .journal
            .put_node_ending_intent(&record_of(path, &m, Some(hash), etag)))?;
        // Logged once recorded: a daemon killed before the record is written uploads the
        // file again at the next start, and the log never says "uploaded" for it twice.
        info!(bytes = m.size(), "uploaded");
        Ok(Outcome::Done)
    }

    /// Makes the cloud folder that `path` (cloud path `cpath`) belongs in, with its missing
    /// folders above, and records each folder that had no record, without an inode: the
    /// cloud holds the folder, and what it holds on-premise is pushed by its own entries (a
    /// later push of the folder sees no inode of its own and lists it). So a later move or
    /// delete of such a folder reaches the cloud too.
    async fn make_parents(&self, path: &str, cpath: &str) -> Result<(), CloudError> {
        self.cloud.mkdir(cloud::parent(cpath)).await?;
        let Some(set) = self.sets.set_for(path) else {
            return Ok(());
        };
        let mut missing = Vec::new();
        let mut a = cloud::parent(path);
        while !a.is_empty() && a != set.local && cloud::is_within(a, &set.local) {
            if jr(self.journal.node(a))?.is_some() {
                break; // the folders above it were recorded with it
            }
            missing.push(NodeRecord {
                path: a.to_string(),
                kind: NodeKind::Dir,
                size: 0,
                mtime_ns: 0,
                ctime_ns: 0,
                ino: 0,
                hash: None,
                etag: None,
                state: NodeState::Synced,
                error: None,
                synced_at: Some(now_ms()),
            });
            a = cloud::parent(a);
        }
        jr(self.journal.put_nodes(&missing))
    }

    /// Carries a rename to the cloud as one move, when the source is there.
    ///
    /// The queue holds renames in the order they happened, and an entry waits for every
    /// earlier entry that touches its paths; so when a rename runs, the cloud holds (of what
    /// reached it) the on-premise tree as it was when the rename happened, under the names of
    /// that time. What the rename cannot do as a move it hands back as checks of its source
    /// and target under those names, and the renames queued after it carry them on to
    /// today's names, as they carried every entry pending below their source.
    async fn push_rename(&self, from: &str, to: &str) -> Result<Outcome, CloudError> {
        let check = |p: &str| Change::Path(Op::Check, p.to_string());
        let (Some((cfrom, _)), Some((cto, _))) = (self.target(from), self.target(to)) else {
            // Into, out of, or outside the sync sets: a create and a delete.
            return Ok(Outcome::Carry(vec![check(to), check(from)]));
        };
        // What the cloud holds of the source: its record says, or records below it (a
        // folder the cloud got without a record of its own, from an older journal).
        let rec_from = jr(self.journal.node(from))?;
        if rec_from
            .as_ref()
            .is_some_and(|r| r.state == NodeState::Failed)
        {
            // Deleted in the cloud already (DELETED_ON_CLOUD): what is at `from` there now is
            // someone's new item, never ours to move. The target goes up as new.
            jr(self.journal.delete_subtree(from))?;
            return Ok(Outcome::Carry(vec![check(to)]));
        }
        let from_kind = match rec_from {
            Some(r) => r.kind,
            None if jr(self.journal.has_nodes_below(from))? => NodeKind::Dir,
            // Never reached the cloud: the target is simply new.
            None => return Ok(Outcome::Carry(vec![check(to)])),
        };
        let to_kind = match jr(self.journal.node(to))? {
            Some(r) => Some(r.kind),
            None if jr(self.journal.has_nodes_below(to))? => Some(NodeKind::Dir),
            None => None,
        };
        if let Some(to_kind) = to_kind {
            if to_kind == NodeKind::File || from_kind == NodeKind::File {
                // Replaced an existing cloud file: update it in place, then drop the source.
                return Ok(Outcome::Carry(vec![check(to), check(from)]));
            }
            // An empty folder was replaced by a folder.
            let set = self.sets.set_for(to).ok_or(CloudError::NotFound)?;
            if !self.delete_dir_safely(&cto, set).await? {
                return Err(CloudError::PreconditionFailed);
            }
            jr(self.journal.delete_subtree(to))?;
        }
        let r = match self.cloud.rename(&cfrom, &cto).await {
            Err(CloudError::MissingParent) => {
                // The target folder has not reached the cloud yet (made just before, or
                // itself moved since): it is made now, as it was when the rename happened.
                self.make_parents(to, &cto).await?;
                self.cloud.rename(&cfrom, &cto).await
            }
            r => r,
        };
        match r {
            Ok(()) => {
                info!(to, "moved in the cloud");
                jr(self.journal.move_subtree(from, to))?;
                // A renamed file has a new ctime: it is checked again, which costs a hash and
                // refreshes its record, and uploads nothing when the content is the same.
                Ok(if from_kind == NodeKind::File {
                    Outcome::Replace(vec![check(to)])
                } else {
                    Outcome::Done
                })
            }
            Err(CloudError::PreconditionFailed) => {
                // The target name is taken in the cloud by something we never saw: no move
                // over it. The source goes, and the target is uploaded as new, which meets the
                // cloud's item as a conflict that keeps both.
                Ok(Outcome::Carry(vec![check(to), check(from)]))
            }
            Err(CloudError::NotFound) => {
                // The source is gone from the cloud: upload the target as new.
                jr(self.journal.delete_subtree(from))?;
                Ok(Outcome::Carry(vec![check(to)]))
            }
            Err(e) => Err(e),
        }
    }
}

/// Counts entries per state, for reports.
pub fn queue_summary(j: &Journal) -> HashMap<&'static str, u64> {
    let mut m = HashMap::new();
    if let Ok((all, failed)) = j.queue_counts() {
        m.insert("queued", all);
        m.insert("failed", failed);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped() {
        for a in 0..40 {
            let b = backoff_ms(a);
            assert!(
                b >= 500 && b <= (MAX_BACKOFF.as_millis() as i64) * 3 / 2,
                "{a}: {b}"
            );
        }
    }

    #[test]
    fn busy_matches_the_overlap_rule() {
        let paths = ["", "a", "a/b", "a/b/c", "ab", "x/y", "x"];
        for p in paths {
            for q in paths {
                let mut b = Busy::default();
                b.add(p, None);
                assert_eq!(b.overlaps(q), overlaps(p, q), "{p:?} vs {q:?}");
            }
        }
    }

    #[test]
    fn overlap_rules() {
        let e = |p: &str, d: Option<&str>| (p.to_string(), d.map(str::to_string));
        assert!(entry_overlaps(&e("a", None), &e("a/b", None)));
        assert!(entry_overlaps(&e("x", Some("a")), &e("a/b", None)));
        assert!(!entry_overlaps(&e("ab", None), &e("a", None)));
    }
}
