//! The pusher: carries queued on-premise changes to the cloud, on tokio.
//!
//! It takes entries in queue order. An entry waits while an earlier entry touches the same path,
//! an ancestor or a descendant (so a folder's creation precedes its children, and a move waits
//! for earlier changes of its source), and at most `transfers` run at once. Each push decides
//! from the on-premise state and the journal record, not from the queued operation alone, so
//! editor save patterns collapse to one update. The journal is written only after the cloud
//! call succeeded.

use crate::sync::{SyncError, SyncResult};
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, warn};

mod apply;
mod decide;

use self::apply::PathFacts;
use self::decide::{Local, Source};
use super::busy::Busy;
use super::parts::Parts;
use crate::cloud::CloudError;
use crate::journal::{
    Change, Journal, NodeKind, NodeRecord, NodeState, Op, QueueEntry, QueueState, now_ms,
};

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
    /// What the pusher shares with the puller.
    pub parts: Parts,
    /// Woken when new changes are queued.
    pub wake: Arc<Notify>,
    /// Asks the puller to merge at once (after a conflicting upload).
    pub pull_now: Arc<Notify>,
    /// Quiet time before a push.
    pub push_delay: Duration,
    /// How long a file may stay open for writing before a snapshot of it goes; `None` for
    /// never.
    pub open_push_interval: Option<Duration>,
    /// When the last snapshot of each file kept open for writing went.
    snapshots: std::sync::Mutex<HashMap<String, std::time::Instant>>,
}

#[cfg(test)]
fn overlaps(a: &str, b: &str) -> bool {
    crate::paths::is_within(a, b) || crate::paths::is_within(b, a)
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

impl Pusher {
    /// A pusher over `parts`, woken by `wake`, that asks for a pull through `pull_now` and
    /// waits `push_delay` before it pushes a change.
    pub fn new(
        parts: Parts,
        wake: Arc<Notify>,
        pull_now: Arc<Notify>,
        push_delay: Duration,
    ) -> Self {
        Pusher {
            parts,
            wake,
            pull_now,
            push_delay,
            open_push_interval: Some(crate::config::DEFAULT_OPEN_PUSH_INTERVAL),
            snapshots: std::sync::Mutex::default(),
        }
    }

    /// The same pusher, pushing snapshots of files kept open for writing after `interval`
    /// (`None`: never).
    pub fn with_open_push_interval(mut self, interval: Option<Duration>) -> Self {
        self.open_push_interval = interval;
        self
    }

    /// True when a snapshot of the file `path` (stat `m`, record `rec`), open for writing,
    /// is due: open without a break for `open_push_interval`, the last snapshot at least that
    /// long ago, and changed since the record.
    fn snapshot_due(&self, path: &str, m: &std::fs::Metadata, rec: Option<&NodeRecord>) -> bool {
        let Some(every) = self.open_push_interval else {
            return false;
        };
        let open_long = self
            .parts
            .writers
            .open_since(m.ino())
            .is_some_and(|t| t.elapsed() >= every);
        let mut last = self.snapshots.lock().unwrap_or_else(|p| p.into_inner());
        // Forget files no longer open, so the map holds only the open ones.
        last.retain(|p, t| p == path || t.elapsed() < every * 4);
        open_long
            && last.get(path).is_none_or(|t| t.elapsed() >= every)
            && !rec.is_some_and(|r| r.unchanged(m))
    }

    /// Notes that a snapshot of `path` went now.
    pub(super) fn snapshot_sent(&self, path: &str) {
        self.snapshots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path.to_string(), std::time::Instant::now());
    }

    /// Runs until `stop` is cancelled. In-flight transfers are abandoned at stop; their entries
    /// stay queued and run again at the next start.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let sem = Arc::new(Semaphore::new(self.parts.transfers));
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
        let sem = Arc::new(Semaphore::new(self.parts.transfers));
        let mut total = 0;
        loop {
            let woken = self.wake.notified();
            let (_, started) = self.schedule(&sem);
            total += started;
            let running = !self
                .parts
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
        if self.parts.shared.auth_paused.load(Ordering::Relaxed)
            || self.parts.shared.push_paused.load(Ordering::Relaxed)
        {
            // Nothing is sent while paused: a pull asked for need not wait.
            if self
                .parts
                .shared
                .pull_requested_at
                .swap(0, Ordering::Relaxed)
                > 0
            {
                self.pull_now.notify_one();
            }
            return (None, 0);
        }
        if sem.available_permits() == 0 {
            return (None, 0); // a finishing transfer wakes us
        }
        let now = now_ms();
        let offline = self.parts.shared.is_offline();
        let mut busy = Busy::default();
        let in_flight: Vec<(String, Option<String>)> = {
            let m = self
                .parts
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
            .parts
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
        let walked = self.parts.journal.for_each_pending(256, |e| {
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
            self.parts
                .shared
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
        self.pull_if_asked(queued, now);
        (next, started)
    }

    /// A pull asked for by a sync request starts once the queue is drained (`queued` false),
    /// or has waited long enough.
    fn pull_if_asked(&self, queued: bool, now: i64) {
        let asked = self.parts.shared.pull_requested_at.load(Ordering::Relaxed);
        if asked > 0 {
            let waited = now - asked >= super::PULL_AFTER_SYNC_WAIT.as_millis() as i64;
            if (!queued || waited)
                && self
                    .parts
                    .shared
                    .pull_requested_at
                    .compare_exchange(asked, 0, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                self.pull_now.notify_one();
            }
        }
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
        self.parts
            .shared
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&e.id);
        let ok = matches!(
            result,
            Ok(Outcome::Done | Outcome::Replace(_) | Outcome::Carry(_))
        );
        if !matches!(result, Ok(Outcome::Later)) {
            self.parts.shared.counters.push(ok, started.elapsed());
            self.parts.shared.metrics.pushed(ok, started.elapsed());
        }
        self.record_result(&e, result, started);
    }

    /// Writes what the push of `e` (started at `started`) came to into the queue: finished,
    /// postponed, replaced, retried later or failed, each under the entry's generation where
    /// a change folded in meanwhile must survive.
    fn record_result(
        &self,
        e: &QueueEntry,
        result: SyncResult<Outcome>,
        started: std::time::Instant,
    ) {
        let j = &self.parts.journal;
        let r = match result {
            Ok(outcome) => {
                *self
                    .parts
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
            Err(err) if err.is_local_not_found() => {
                j.postpone(e.id, now_ms() + self.push_delay.as_millis() as i64)
            }
            Err(err) if err.is_transient() => {
                let mut off = self
                    .parts
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
            Err(SyncError::Cloud(CloudError::PreconditionFailed | CloudError::NotFound))
                if e.op != Op::Rename =>
            {
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
                self.parts.shared.metrics.push_failed(code);
                if err.is_unauthorized() {
                    self.parts.shared.auth_paused.store(true, Ordering::Relaxed);
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
    ) -> SyncResult<T> {
        tokio::task::spawn_blocking(f)
            .await?
            .map_err(SyncError::Local)
    }

    /// Makes the cloud match the on-premise state of `path`: gathers what is there and its
    /// record, decides ([`decide::decide`]), and carries the action out.
    async fn push_path(&self, path: &str) -> SyncResult<Outcome> {
        let Some((cpath, set)) = self.parts.scope.target(path) else {
            return Ok(Outcome::Done);
        };
        let facts = self.path_facts(path, set)?;
        let action = decide::decide(facts.local, facts.rec.as_ref(), set.cloud_delete);
        self.apply_path(action, path, &cpath, set, facts).await
    }

    /// What is at the synced `path` (in `set`) on-premise and in the journal.
    fn path_facts(&self, path: &str, set: &super::sets::SyncSet) -> SyncResult<PathFacts> {
        let mut facts = PathFacts {
            local: Local::SetFolder,
            stat: None,
            rec: None,
            renamed: None,
        };
        if path.is_empty() || path == set.local && !set.is_file {
            return Ok(facts);
        }
        facts.stat = match self.parts.onprem.stat(path) {
            Ok(m) => m,
            Err(e) if crate::onprem::is_crossing(&e) => {
                facts.local = Local::Blocked;
                return Ok(facts);
            }
            Err(e) => return Err(SyncError::Local(e)),
        };
        facts.local = match &facts.stat {
            None => Local::Absent {
                unflushed_above: self.parts.shared.unflushed_at_or_above(path),
                renamed_over: false,
            },
            Some(m) if m.is_dir() => Local::Dir { ino: m.ino() },
            Some(m) if m.is_file() => {
                let open = self.parts.writers.is_open(m.ino());
                facts.rec = self.parts.journal.node(path)?;
                Local::File {
                    open_for_writing: open,
                    snapshot_due: open && self.snapshot_due(path, m, facts.rec.as_ref()),
                }
            }
            Some(_) => Local::Special,
        };
        if facts.rec.is_none() {
            facts.rec = self.parts.journal.node(path)?;
        }
        if let Local::Absent {
            unflushed_above: false,
            renamed_over,
        } = &mut facts.local
        {
            facts.renamed = self.parts.journal.rename_over(path)?;
            *renamed_over = facts.renamed.is_some();
        }
        Ok(facts)
    }

    /// Carries a rename to the cloud as one move, when the source is there.
    ///
    /// The queue holds renames in the order they happened, and an entry waits for every
    /// earlier entry that touches its paths; so when a rename runs, the cloud holds (of what
    /// reached it) the on-premise tree as it was when the rename happened, under the names of
    /// that time. What the rename cannot do as a move it hands back as checks of its source
    /// and target under those names, and the renames queued after it carry them on to
    /// today's names, as they carried every entry pending below their source.
    async fn push_rename(&self, from: &str, to: &str) -> SyncResult<Outcome> {
        let (Some((cfrom, _)), Some((cto, set))) =
            (self.parts.scope.target(from), self.parts.scope.target(to))
        else {
            let action = decide::decide_rename(false, Source::NeverSent, None);
            return self.apply_rename(action, (from, ""), (to, ""), None).await;
        };
        // What the cloud holds of the source: its record says, or records below it (a
        // folder the cloud got without a record of its own, from an older journal).
        let source = match self.parts.journal.node(from)? {
            Some(r) if r.state == NodeState::Failed => Source::DeletedOnCloud,
            Some(r) => Source::Sent(r.kind),
            None if self.parts.journal.has_nodes_below(from)? => Source::Sent(NodeKind::Dir),
            None => Source::NeverSent,
        };
        // Only a source the cloud holds makes the target matter.
        let target = match source {
            Source::Sent(_) => match self.parts.journal.node(to)? {
                Some(r) => Some(r.kind),
                None if self.parts.journal.has_nodes_below(to)? => Some(NodeKind::Dir),
                None => None,
            },
            _ => None,
        };
        let action = decide::decide_rename(true, source, target);
        self.apply_rename(action, (from, &cfrom), (to, &cto), Some(set))
            .await
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
