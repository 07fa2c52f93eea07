//! Discovery: what the cloud and the journal say about one sync set, gathered before anything
//! is decided.
//!
//! It walks the set's cloud folder (skipping folders whose ETag did not change, where the server
//! sums subtrees in folder ETags; in one flat pass where the cloud lists a whole tree at once
//! and has no such ETags, as an object store does), adds the paths whose upload met a 412 or
//! 404, and finds the records the walk did not meet (gone from the cloud); which of those moved
//! is told by `moves.rs`. It also takes the snapshot of what the pusher holds, so that a
//! busy path is left alone. Nothing here changes ONPREM or the journal.

use crate::sync::SyncResult;
use std::collections::{BTreeMap, HashMap, HashSet};

use tracing::warn;

use super::{FULL_WALK_EVERY, MAX_DEPTH, Puller, tag};
use crate::cloud::{self, CloudEntry};
use crate::journal::{NodeKind, NodeRecord};
use crate::sync::busy::Busy;
use crate::sync::sets::SyncSet;

/// Above this many pending changes, a pull asks the journal whether a path is busy rather
/// than holding the queue in memory.
const LONG_QUEUE: u64 = 10_000;

/// What a walk of one set's cloud folder found.
pub(super) struct Walk {
    /// Entries by on-premise path.
    found: BTreeMap<String, CloudEntry>,
    /// On-premise folders skipped because their cloud ETag did not change.
    skipped: Vec<String>,
    /// Requests sent.
    requests: u64,
    /// The set folder's ETag when the walk began.
    root_tag: Option<String>,
    /// On-premise paths of cloud files hidden by a folder of their name.
    clashes: Vec<String>,
}

/// What discovery found for one set: every input the merge decides from.
pub(super) struct Plan {
    /// Cloud entries by on-premise path: the walk's, and those of conflicted paths.
    pub found: BTreeMap<String, CloudEntry>,
    /// The set folder's ETag when the walk began.
    pub root_tag: Option<String>,
    /// Paths whose upload met a 412 or 404, with their queue ids.
    pub conflicted: HashMap<String, Vec<i64>>,
    /// The set's records that the walk did not meet: gone from the cloud.
    pub gone: HashMap<String, NodeRecord>,
    /// Cloud-side file moves: a gone file's path to its new path (see `moves.rs`), found
    /// once the folder moves are done.
    pub moved: HashMap<String, String>,
    /// The targets of `moved`.
    pub move_targets: HashSet<String>,
    /// The set's records before the walk, by path: a [`fingerprint`] each.
    before: HashMap<Box<str>, u64>,
    /// Records the walk did not meet that a push rewrote while it was under way: merged at
    /// the next pull.
    pub rewritten: Vec<String>,
}

/// What a record says of its item: kind, ETag and state. A record whose fingerprint changed
/// while the walk was under way (a push that finished, a delete pushed) cannot be judged
/// against a listing that may predate it.
fn fingerprint(r: &NodeRecord) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (r.kind as u8, r.etag.as_deref(), r.state as u8).hash(&mut h);
    h.finish()
}

impl Plan {
    /// The folder `from` was moved on-premise to `to`, with its records: what was gone below
    /// `from` and is not found below `to` either is gone there, and every record's state
    /// before the walk follows it, so the paths below `to` are merged in this pull.
    pub fn folder_moved(&mut self, from: &str, to: &str) {
        let below: Vec<String> = self
            .gone
            .keys()
            .filter(|p| cloud::is_within(p, from))
            .cloned()
            .collect();
        for p in below {
            let Some(mut r) = self.gone.remove(&p) else {
                continue;
            };
            let np = super::moves::rebase(&p, from, to);
            if let Some(f) = self.before.remove(p.as_str()) {
                self.before.insert(np.clone().into_boxed_str(), f);
            }
            if !self.found.contains_key(&np) {
                r.path = np.clone();
                self.gone.insert(np, r);
            }
        }
    }

    /// True when `rec`, read now, says what the set's record said before the walk: the
    /// listing can be trusted for it. A record made, rewritten or dropped since is merged at
    /// the next pull, from a listing made after it.
    pub fn record_as_before(&self, path: &str, rec: Option<&NodeRecord>) -> bool {
        self.before.get(path).copied() == rec.map(fingerprint)
    }

    /// Every path to merge, in order. Borrowed, not copied: a large tree's names are held
    /// once, in `found`.
    pub fn paths(&self, owns: impl Fn(&str) -> bool) -> Vec<&str> {
        let mut paths: Vec<&str> = self.found.keys().map(String::as_str).collect();
        paths.extend(self.gone.keys().map(String::as_str));
        paths.extend(
            self.conflicted
                .keys()
                .map(String::as_str)
                .filter(|p| !self.found.contains_key(*p) && !self.gone.contains_key(*p))
                .filter(|p| owns(p)),
        );
        paths.sort_unstable();
        paths
    }
}

/// What the pusher holds, for leaving its paths alone.
pub(super) struct BusyCheck<'a> {
    puller: &'a Puller,
    /// The queue is too long to hold: asked per path instead.
    long_queue: bool,
    /// The queued paths, when the queue is of ordinary length.
    queued: Busy,
}

impl BusyCheck<'_> {
    /// True when the pusher has `path` queued or in flight.
    pub fn is_busy(&self, p: &str) -> SyncResult<bool> {
        let queued = if self.long_queue {
            self.puller.parts.journal.pending_overlaps(p)?
        } else {
            self.queued.overlaps(p)
        };
        Ok(queued
            || self
                .puller
                .parts
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
    }
}

impl Puller {
    /// Discovers one set: walks its cloud folder, adds conflicted paths, and finds what is gone
    /// and what moved. Returns the plan and the number of requests sent.
    pub(super) async fn discover(&self, set: &SyncSet) -> SyncResult<(Plan, u64)> {
        // The names of the set's records before the walk. A record written while the walk is
        // under way (a push finishing) may be missing from a listing made just before it, and
        // must not be taken for an item deleted in the cloud.
        // Each with a fingerprint of what it says, for a record rewritten meanwhile (below).
        let mut before: HashMap<Box<str>, u64> = HashMap::new();
        self.parts.journal.for_each_node_under(&set.local, |r| {
            let f = fingerprint(&r);
            before.insert(r.path.into_boxed_str(), f);
        })?;
        let Walk {
            mut found,
            skipped,
            mut requests,
            root_tag,
            clashes,
        } = self.walk(set).await?;
        // A file beside a folder of its name is left in the cloud, and its path reads failed
        // (NAME_CLASH) until one of the two is renamed or removed there.
        for p in self
            .parts
            .journal
            .set_cloud_clashes(&set.local, &skipped, &clashes)?
        {
            warn!(
                path = %p,
                "the cloud holds a file and a folder of this name; the folder is synced, the file is left in the cloud"
            );
        }
        // Paths whose upload met a 412 or 404 are merged even where the walk did not go (an
        // unchanged folder) or found nothing (a new file refused by something in between):
        // otherwise their entries wait for a merge that never comes.
        let conflicted = self.parts.journal.conflict_ids()?;
        for path in conflicted.keys() {
            if found.contains_key(path) || !self.parts.scope.owns(set, path) {
                continue;
            }
            let cpath = set.to_cloud(path);
            requests += 1;
            if let Some(mut e) = self.parts.cloud.stat(&cpath).await? {
                e.path = path.clone();
                found.insert(path.clone(), e);
            }
        }
        let in_skipped = |p: &str| skipped.iter().any(|s| cloud::is_within(p, s));
        // The set's records that the walk did not meet (gone from the cloud), streamed from
        // the journal: only these are held, never the whole journal. Records of paths found
        // are read one by one in the merge.
        let mut gone: HashMap<String, NodeRecord> = HashMap::new();
        let mut rewritten = Vec::new();
        self.parts.journal.for_each_node_under(&set.local, |r| {
            if found.contains_key(&r.path)
                || in_skipped(&r.path)
                || !self.parts.scope.owns(set, &r.path)
                || self.parts.scope.is_unsynced(&r.path)
            {
                return;
            }
            let was = before.get(r.path.as_str());
            if was.is_some() && was != Some(&fingerprint(&r)) {
                // Rewritten by a push during the walk: the listing may predate it.
                rewritten.push(r.path);
                return;
            }
            if was.is_some() {
                gone.insert(r.path.clone(), r);
            }
        })?;
        let plan = Plan {
            found,
            root_tag,
            conflicted,
            gone,
            moved: HashMap::new(),
            move_targets: HashSet::new(),
            before,
            rewritten,
        };
        Ok((plan, requests))
    }

    /// Snapshots what the pusher is working on. Paths it holds are left alone, except those
    /// its conditional upload found changed in the cloud (412): those are ours to merge.
    /// A queue of ordinary length is held as a set, checked per path in the depth of the
    /// path. A very long one (a first sync of a large tree) is asked per path instead, so
    /// that a pull never holds the whole queue in memory. In-flight transfers are few (at most
    /// `transfers`): looked at live, path by path.
    pub(super) fn busy_check(&self) -> SyncResult<BusyCheck<'_>> {
        let (pending, failed) = self.parts.journal.queue_counts()?;
        let long_queue = pending.saturating_sub(failed) > LONG_QUEUE;
        let mut queued = Busy::default();
        if !long_queue {
            self.parts
                .journal
                .for_each_pending_path(|p, d| queued.add(p, d))?;
        }
        Ok(BusyCheck {
            puller: self,
            long_queue,
            queued,
        })
    }

    /// Lists the cloud tree, skipping folders whose ETag matches the journal. Returns the
    /// entries found, the folders skipped as unchanged, and the number of requests.
    pub(super) async fn walk(&self, set: &SyncSet) -> SyncResult<Walk> {
        let mut found = BTreeMap::new();
        let mut skipped = Vec::new();
        let mut clashes = Vec::new();
        let mut requests = 0u64;
        let root = self.parts.cloud.stat(&set.cloud).await?;
        requests += 1;
        // Folder tags are trusted only where the server sums up subtrees in them, and every
        // FULL_WALK_EVERY pulls the whole tree is walked anyway, as a safety net.
        let n = self.pulls.load(std::sync::atomic::Ordering::Relaxed);
        let trust =
            self.parts.cloud.folder_etags_cover_subtree() && !n.is_multiple_of(FULL_WALK_EVERY);
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
                clashes: Vec::new(),
            });
        }
        if root_tag.is_some() && self.parts.journal.root_etag(&set.local)? == root_tag {
            skipped.push(set.local.clone());
            return Ok(Walk {
                found,
                skipped,
                requests,
                root_tag,
                clashes,
            });
        }
        if root.is_none() {
            // The set's cloud folder is gone (or not made yet): nothing to list.
            return Ok(Walk {
                found,
                skipped,
                requests,
                root_tag,
                clashes,
            });
        }
        if !trust && let Some(tree) = self.parts.cloud.list_tree(&set.cloud).await {
            // One pass over the whole tree where the cloud lists it flat (an object store):
            // what the walk below would find, folder for folder, with the same checks.
            let tree = tree?;
            requests += tree.requests;
            self.clashes_of(set, &tree.clashes, &mut clashes);
            let mut entries = tree.entries;
            // Path order puts every folder before what lies below it.
            entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
            let mut walked: HashSet<String> = HashSet::from([set.cloud.clone()]);
            for e in entries {
                if e.path == set.cloud
                    || cloud::check_rel_path(&e.path).is_err()
                    || !cloud::is_within(&e.path, &set.cloud)
                {
                    warn!(path = %e.path, "refusing a cloud entry outside the listed folder");
                    continue;
                }
                if !walked.contains(cloud::parent(&e.path)) {
                    // Below a folder the walk would not list (left out, or too deep).
                    continue;
                }
                let cpath = e.path.clone();
                if self.take(set, e, trust, &mut found, &mut skipped)? {
                    walked.insert(cpath);
                }
            }
            return Ok(Walk {
                found,
                skipped,
                requests,
                root_tag,
                clashes,
            });
        }
        let mut pending = vec![set.cloud.clone()];
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            while tasks.len() < 8 {
                let Some(dir) = pending.pop() else { break };
                let c = self.parts.cloud.clone();
                tasks.spawn(async move {
                    let r = c.list(&dir).await;
                    (dir, r)
                });
            }
            let Some(done) = tasks.join_next().await else {
                break;
            };
            let (dir, r) = done?;
            requests += 1;
            let listing = r?;
            self.clashes_of(set, &listing.clashes, &mut clashes);
            let entries = listing.entries;
            for e in entries {
                if cloud::check_rel_path(&e.path).is_err() || cloud::parent(&e.path) != dir {
                    warn!(path = %e.path, "refusing a cloud entry outside the listed folder");
                    continue;
                }
                let cpath = e.path.clone();
                if self.take(set, e, trust, &mut found, &mut skipped)? {
                    pending.push(cpath);
                }
            }
        }
        Ok(Walk {
            found,
            skipped,
            requests,
            root_tag,
            clashes,
        })
    }

    /// Adds the on-premise paths of the cloud files `hidden` by a folder of their name (cloud
    /// paths) that `set` syncs to `out`.
    fn clashes_of(&self, set: &SyncSet, hidden: &[String], out: &mut Vec<String>) {
        for c in hidden {
            if cloud::check_rel_path(c).is_err() || !cloud::is_within(c, &set.cloud) {
                continue;
            }
            let local = set.to_local(c);
            if self.parts.scope.owns(set, &local) {
                out.push(local);
            }
        }
    }

    /// Takes the cloud entry `e` (a checked path in a folder the walk lists) into `found`,
    /// unless its name is excluded or a conflict copy's, or the set leaves it out. True when
    /// it is a folder the walk lists too; a folder it does not list goes to `skipped`.
    fn take(
        &self,
        set: &SyncSet,
        mut e: CloudEntry,
        trust: bool,
        found: &mut BTreeMap<String, CloudEntry>,
        skipped: &mut Vec<String>,
    ) -> SyncResult<bool> {
        let name = e.path.rsplit('/').next().unwrap_or_default();
        if self.parts.scope.ignore.name_excluded(name)
            || crate::sync::conflict::is_conflict_name(name)
        {
            return Ok(false);
        }
        let local = set.to_local(&e.path);
        if !self.parts.scope.owns(set, &local) {
            return Ok(false);
        }
        let mut walk = false;
        if e.is_dir {
            walk = self.walks_into(&local, &e, trust)?;
            if !walk {
                skipped.push(local.clone());
            }
        }
        e.path = local.clone();
        found.insert(local, e);
        Ok(walk)
    }

    /// True when the walk lists the cloud folder `e` (on-premise path `local`); false when it
    /// is skipped: unchanged by its trusted tag, or too deep.
    fn walks_into(&self, local: &str, e: &CloudEntry, trust: bool) -> SyncResult<bool> {
        let unchanged = trust
            && e.etag.is_some()
            && self
                .parts
                .journal
                .node(local)?
                .is_some_and(|r| r.kind == NodeKind::Dir && tag(&r.etag) == tag(&e.etag));
        if unchanged {
            return Ok(false);
        }
        if local.split('/').count() >= MAX_DEPTH {
            // A tree this deep is a broken or hostile server's: not walked, and nothing below
            // it is taken for deleted either.
            warn!(path = %local, "a cloud folder lies deeper than {MAX_DEPTH} levels; not walked");
            return Ok(false);
        }
        Ok(true)
    }
}
