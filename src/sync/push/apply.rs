//! The push propagator: carries out one decided action (`decide.rs`) per function, against
//! the cloud first and the journal after.
//!
//! The journal is written only once the cloud call succeeded. A file is opened once through
//! the door, and that descriptor is hashed and sent; the upload intent is set before the PUT
//! and ends with the record, or is restored when the attempt stored nothing. Deletes are
//! conditional, and a cloud folder goes only as far as nothing changed there since the last
//! sync.

use crate::sync::{SyncError, SyncResult};
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use tracing::{debug, info};

use super::decide::{self, FileAction, PathAction, RenameAction};
use super::{Outcome, Pusher};
use crate::cloud::{self, CloudError, Precondition};
use crate::journal::{Change, FileStat, Intent, NodeKind, NodeRecord, NodeState, Op, now_ms};
use crate::onprem::hash_file;
use crate::sync::record_of;
use crate::sync::sets::SyncSet;

/// What the pusher gathered about a path for [`decide::decide`], and the propagator needs.
pub(super) struct PathFacts {
    /// What is at the path, for the decision.
    pub local: decide::Local,
    /// Its stat, when something is there.
    pub stat: Option<std::fs::Metadata>,
    /// Its record.
    pub rec: Option<NodeRecord>,
    /// The rename (source, target) that took the path away, if one did.
    pub renamed: Option<(String, String)>,
}

fn check(p: &str) -> Change {
    Change::Path(Op::Check, p.to_string())
}

impl Pusher {
    /// Carries out what a change of `path` (cloud path `cpath`, in `set`) asks for.
    pub(super) async fn apply_path(
        &self,
        action: PathAction,
        path: &str,
        cpath: &str,
        set: &SyncSet,
        facts: PathFacts,
    ) -> SyncResult<Outcome> {
        if let (PathAction::Nothing | PathAction::CarrySelf, Some((from, to))) =
            (&action, &facts.renamed)
        {
            debug!(from, to, "renamed meanwhile");
        }
        let stat = || {
            facts
                .stat
                .clone()
                .ok_or(SyncError::Cloud(CloudError::NotFound))
        };
        match action {
            PathAction::Nothing => Ok(Outcome::Done),
            PathAction::Later => Ok(Outcome::Later),
            PathAction::Blocked => Err(SyncError::Blocked(crate::onprem::crossing_detail(path))),
            PathAction::CarrySelf => Ok(Outcome::Carry(vec![check(path)])),
            PathAction::MakeSetFolder => {
                if !path.is_empty() {
                    self.parts.cloud.mkdir(cpath).await?;
                }
                Ok(Outcome::Done)
            }
            PathAction::DeleteDir => self.delete_folder(path, cpath, set, facts.rec).await,
            PathAction::DeleteFile { cond } => self.delete_file(path, cpath, &cond).await,
            PathAction::ForgetRecord => {
                info!("deleted on-premise; its cloud copy was gone already");
                self.parts.journal.delete_subtree(path)?;
                Ok(Outcome::Done)
            }
            PathAction::KeepCloudCopy => {
                // The cloud copy stays; the record stays too, so the next pull does not
                // bring it back while the cloud copy is unchanged. An upload intent goes
                // with the on-premise file.
                self.parts.journal.end_intents_under(path)?;
                Ok(Outcome::Done)
            }
            PathAction::CheckChanged => self.check_changed(path).await,
            PathAction::MkdirAndList => self.mkdir_and_list(path, cpath, &stat()?).await,
            PathAction::ReplaceFileByFolder { cond } => {
                // The cloud file goes, unless it changed there.
                match self.parts.cloud.delete(cpath, &cond).await {
                    Ok(()) | Err(CloudError::NotFound) => {}
                    Err(e) => return Err(e.into()),
                }
                self.mkdir_and_list(path, cpath, &stat()?).await
            }
            PathAction::PushFile => self.push_file(path, cpath, set, stat()?, facts.rec).await,
            PathAction::PushSnapshot => self.push_snapshot(path, cpath, stat()?, facts.rec).await,
        }
    }

    /// Pushes a snapshot of the file `path` (stat `m`, record `rec`) that a writer keeps
    /// open: a reflink clone where the filesystem can, otherwise a copy of its first
    /// `m.size()` bytes (a consistent prefix of a file that is only appended to), in a private
    /// nameless file beside it. What goes is recorded as the cloud's version (its ETag, for
    /// the next upload's `If-Match`) but not as synced content while the file stays open; the
    /// final version goes once it is closed.
    async fn push_snapshot(
        &self,
        path: &str,
        cpath: &str,
        m: std::fs::Metadata,
        rec: Option<NodeRecord>,
    ) -> SyncResult<Outcome> {
        let src = match self.parts.onprem.open_file(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Outcome::Later),
            Err(e) if crate::onprem::is_crossing(&e) => {
                return Err(SyncError::Blocked(crate::onprem::crossing_detail(path)));
            }
            Err(e) => return Err(SyncError::Local(e)),
        };
        if src.metadata()?.ino() != m.ino() {
            return Ok(Outcome::Later);
        }
        let mut new = self
            .parts
            .onprem
            .create_temp(cloud::parent(path))
            .map_err(SyncError::Local)?;
        let snap = Arc::new(new.file.try_clone()?);
        let (s, size) = (snap.clone(), m.size());
        let made = Self::blocking(move || take_snapshot(&src, &s, size)).await;
        let r = match made {
            Ok(true) => {
                let cond = crate::sync::intent::precondition_for(rec.as_ref());
                let r = self.upload(path, cpath, &m, &snap, cond, None).await;
                if r.is_ok() {
                    self.snapshot_sent(path);
                    info!(bytes = size, "pushed a snapshot of a file open for writing");
                }
                r
            }
            // It shrank meanwhile: decide again from what it is then.
            Ok(false) => Ok(Outcome::Later),
            Err(e) => Err(e),
        };
        self.parts.onprem.discard(&mut new);
        r
    }

    /// Deletes in the cloud the folder `path`, gone on-premise, keeping what changed there.
    async fn delete_folder(
        &self,
        path: &str,
        cpath: &str,
        set: &SyncSet,
        rec: Option<NodeRecord>,
    ) -> SyncResult<Outcome> {
        let kept = self.delete_dir_keeping(cpath, set).await?;
        if kept.is_empty() {
            info!("deleted in the cloud");
        } else {
            info!(
                kept = kept.len(),
                "folder kept in the cloud: it holds what changed there since the last sync, or what cannot be synced"
            );
            let r = rec.ok_or(SyncError::Cloud(CloudError::NotFound))?;
            self.remember_kept(path, &r, set, &kept)?;
            return Ok(Outcome::Done);
        }
        self.parts.journal.delete_subtree(path)?;
        Ok(Outcome::Done)
    }

    /// Deletes in the cloud the file `path`, gone on-premise, under `cond`.
    async fn delete_file(
        &self,
        path: &str,
        cpath: &str,
        cond: &Precondition,
    ) -> SyncResult<Outcome> {
        match self.parts.cloud.delete(cpath, cond).await {
            Ok(()) | Err(CloudError::NotFound) => info!("deleted in the cloud"),
            Err(CloudError::PreconditionFailed) => {
                // Delete against edit: the edit wins. The cloud copy stays, and the
                // reconciler brings it back.
                info!("not deleted in the cloud: it changed there since the last sync");
            }
            Err(e) => return Err(e.into()),
        }
        self.parts.journal.delete_subtree(path)?;
        Ok(Outcome::Done)
    }

    /// A synced folder: only what differs one level down is looked at again.
    async fn check_changed(&self, path: &str) -> SyncResult<Outcome> {
        let changes = self.children_to_check(path, true).await?;
        if self.parts.shared.renaming_over(path) {
            return Ok(Outcome::Later);
        }
        Ok(if changes.is_empty() {
            Outcome::Done
        } else {
            Outcome::Replace(changes)
        })
    }

    /// Makes the cloud folder `cpath`, records it, and checks all that `path` holds.
    async fn mkdir_and_list(
        &self,
        path: &str,
        cpath: &str,
        m: &std::fs::Metadata,
    ) -> SyncResult<Outcome> {
        self.parts.cloud.mkdir(cpath).await?;
        // Whatever is already inside (a folder moved in, or found by a scan) follows.
        // The record is written once the listing is in hand: a folder renamed away
        // meanwhile leaves no record that says its contents are in the cloud.
        let children = self.children_to_check(path, false).await?;
        self.parts
            .journal
            .put_node(&record_of(path, m, None, None))?;
        if self.parts.shared.renaming_over(path) {
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

    /// Pushes the file `path` (stat `m`, record `rec`): opens it once through the door,
    /// decides on its content ([`decide::decide_file`]), and uploads that descriptor.
    async fn push_file(
        &self,
        path: &str,
        cpath: &str,
        set: &SyncSet,
        m: std::fs::Metadata,
        rec: Option<NodeRecord>,
    ) -> SyncResult<Outcome> {
        // Opened once, through the door: what is hashed and sent is this file, whatever
        // happens to its name meanwhile.
        let file = match self.parts.onprem.open_file(path) {
            Ok(f) => Arc::new(f),
            // Renamed or deleted meanwhile: the queue holds what happened to it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Outcome::Later),
            Err(e) if crate::onprem::is_crossing(&e) => {
                return Err(SyncError::Blocked(crate::onprem::crossing_detail(path)));
            }
            Err(e) => return Err(SyncError::Local(e)),
        };
        if file.metadata()?.ino() != m.ino() {
            return Ok(Outcome::Later);
        }
        let unchanged = rec.as_ref().is_some_and(|r| r.unchanged(&m));
        let mut hash = None;
        let prehash = !self.parts.cloud.hashes_uploads();
        let mut action = decide::decide_file(rec.as_ref(), unchanged, None, m.size(), prehash);
        if action == FileAction::Hash {
            let f = file.clone();
            let h = Self::blocking(move || hash_file(&f)).await?;
            action = decide::decide_file(rec.as_ref(), unchanged, Some(&h), m.size(), prehash);
            hash = Some(h);
        }
        let cond = match action {
            FileAction::Nothing => return Ok(Outcome::Done),
            FileAction::Hash => unreachable!("decide_file asks for the hash only once"),
            FileAction::RefreshRecord => {
                // Same content (touch, rename, or a restart): only the stat changed.
                let r = rec.as_ref().ok_or(SyncError::Cloud(CloudError::NotFound))?;
                self.parts.journal.put_node(&NodeRecord {
                    synced_at: r.synced_at,
                    ..record_of(path, &m, hash, r.etag.clone())
                })?;
                return Ok(Outcome::Done);
            }
            FileAction::Upload { cond } => cond,
            FileAction::ReplaceFolderByFile => {
                if !self.delete_dir_safely(cpath, set).await? {
                    return Err(CloudError::PreconditionFailed.into());
                }
                self.parts.journal.delete_subtree(path)?;
                Precondition::IfNoneMatch
            }
        };
        self.upload(path, cpath, &m, &file, cond, hash).await
    }

    /// Uploads the open `file` (stat `m` before it was opened, content hash `hash`) to
    /// `cpath` under `cond`, with its upload intent, and records what was sent.
    async fn upload(
        &self,
        path: &str,
        cpath: &str,
        m: &std::fs::Metadata,
        file: &Arc<std::fs::File>,
        cond: Precondition,
        hash: Option<String>,
    ) -> SyncResult<Outcome> {
        // The intent says what this attempt sends, before it is sent. It stays only when the
        // attempt is cut short in a way that may have left part of the body in the cloud (a
        // dropped connection, a dead daemon). The retry then meets a 412, which goes to the
        // puller's merge like any other: the cloud copy is replaced only when the intent
        // proves it is that leftover, and kept as a conflict copy otherwise.
        let prior = self.parts.journal.intent(path)?;
        self.parts.journal.set_intent(&Intent {
            path: path.to_string(),
            precondition: Some(cond.clone()),
            size: Some(m.size()),
            hash: hash.clone(),
            started_at: now_ms(),
        })?;
        let put = match self.parts.cloud.upload(cpath, file, &cond).await {
            Err(CloudError::MissingParent) => match self.make_parents(path, cpath).await {
                Ok(()) => self
                    .parts
                    .cloud
                    .upload(cpath, file, &cond)
                    .await
                    .map_err(Into::into),
                Err(e) => Err(e),
            },
            r => r.map_err(SyncError::from),
        };
        // Nothing of this attempt reached the cloud (refused connection, an answer such as 412
        // or 423): what an earlier attempt left, if anything, is still what the cloud holds.
        // After a complete upload the intent ends with the record below, in one transaction.
        if let Err(SyncError::Cloud(e)) = &put
            && crate::sync::intent::stored_nothing(e)
        {
            match &prior {
                Some(i) => self.parts.journal.set_intent(i)?,
                None => self.parts.journal.end_intent(path)?,
            }
        }
        let crate::cloud::Uploaded { etag, hash: sent } = put?;
        self.parts.shared.metrics.sent(m.size());
        // A file renamed or deleted during the upload counts as changed: the cloud tag is
        // recorded, and the queue decides again.
        let after = self.parts.onprem.stat(path).ok().flatten();
        // So does a rename there that the queue does not hold yet: what was sent may be
        // what the rename brought to this name.
        if !after
            .as_ref()
            .is_some_and(|a| FileStat::of(a) == FileStat::of(m))
            || self.parts.writers.is_open(m.ino())
            || self.parts.shared.renaming_over(path)
        {
            // Changed during the upload: record the new cloud tag, but not as synced content.
            self.parts.journal.put_node_ending_intent(&NodeRecord {
                hash: None,
                ..record_of(path, m, None, etag)
            })?;
            info!("changed during upload; will upload again");
            return Ok(Outcome::Later);
        }
        // The stat did not move during the upload, so what was sent is the file's content.
        let hash = match sent.or(hash) {
            Some(h) => h,
            None => {
                let f = file.clone();
                Self::blocking(move || hash_file(&f)).await?
            }
        };
        self.parts
            .journal
            .put_node_ending_intent(&record_of(path, m, Some(hash), etag))?;
        // Logged once recorded: a daemon killed before the record is written uploads the
        // file again at the next start, and the log never says "uploaded" for it twice.
        self.parts.shared.progress.uploaded(m.size());
        info!(bytes = m.size(), "uploaded");
        Ok(Outcome::Done)
    }

    /// Carries out what a rename from `from` to `to` (cloud paths `cfrom`, `cto`; `to` in
    /// `set`) asks for. Checks are handed back under the names of the rename's time.
    pub(super) async fn apply_rename(
        &self,
        action: RenameAction,
        (from, cfrom): (&str, &str),
        (to, cto): (&str, &str),
        set: Option<&SyncSet>,
    ) -> SyncResult<Outcome> {
        match action {
            RenameAction::CheckBoth => Ok(Outcome::Carry(vec![check(to), check(from)])),
            RenameAction::CheckTarget => Ok(Outcome::Carry(vec![check(to)])),
            RenameAction::ForgetSource => {
                self.parts.journal.delete_subtree(from)?;
                Ok(Outcome::Carry(vec![check(to)]))
            }
            RenameAction::ReplaceFolderThenMove => {
                let set = set.ok_or(SyncError::Cloud(CloudError::NotFound))?;
                if !self.delete_dir_safely(cto, set).await? {
                    return Err(CloudError::PreconditionFailed.into());
                }
                self.parts.journal.delete_subtree(to)?;
                self.move_item((from, cfrom), (to, cto), false).await
            }
            RenameAction::Move { file } => self.move_item((from, cfrom), (to, cto), file).await,
        }
    }

    /// Moves `cfrom` to `cto` in the cloud, and the records from `from` to `to` after.
    async fn move_item(
        &self,
        (from, cfrom): (&str, &str),
        (to, cto): (&str, &str),
        file: bool,
    ) -> SyncResult<Outcome> {
        let r = match self.parts.cloud.rename(cfrom, cto).await {
            Err(CloudError::MissingParent) => {
                // The target folder has not reached the cloud yet (made just before, or
                // itself moved since): it is made now, as it was when the rename happened.
                self.make_parents(to, cto).await?;
                self.parts.cloud.rename(cfrom, cto).await
            }
            r => r,
        };
        match r {
            Ok(()) => {
                info!(to, "moved in the cloud");
                self.parts.journal.move_subtree(from, to)?;
                // A renamed file has a new ctime: it is checked again, which costs a hash and
                // refreshes its record, and uploads nothing when the content is the same.
                Ok(if file {
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
                self.parts.journal.delete_subtree(from)?;
                Ok(Outcome::Carry(vec![check(to)]))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a cloud folder, but never what changed there since the last sync; true when
    /// the folder is gone. See [`Pusher::delete_dir_keeping`].
    async fn delete_dir_safely(&self, cpath: &str, set: &SyncSet) -> SyncResult<bool> {
        Ok(self.delete_dir_keeping(cpath, set).await?.is_empty())
    }

    /// Deletes a cloud folder, but never what changed there since the last sync, nor what its
    /// listing could not show. The folder goes in one request only when every entry below
    /// it, at every depth, was understood (the listings skipped nothing: no name that is not
    /// UTF-8, no symbolic link or special file, no refused href) and is known to the journal
    /// (a file with the same ETag, or a folder). Otherwise the known files go one by one, then
    /// the known folders left empty, deepest first, and the rest stays. Returns the cloud
    /// folders left in place, `cpath` among them; none when the folder is gone.
    async fn delete_dir_keeping(&self, cpath: &str, set: &SyncSet) -> SyncResult<Vec<String>> {
        let strip =
            |t: &Option<String>| t.as_deref().map(|t| t.trim_start_matches("W/").to_string());
        let known_dir = |p: &str| -> SyncResult<bool> {
            Ok(p == cpath
                || self
                    .parts
                    .journal
                    .node(&set.to_local(p))?
                    .is_some_and(|r| r.kind == NodeKind::Dir))
        };
        let mut known = Vec::new();
        let mut whole = true;
        let mut dirs = vec![cpath.to_string()];
        let mut all_dirs = Vec::new();
        while let Some(d) = dirs.pop() {
            let listing = match self.parts.cloud.list(&d).await {
                Ok(l) => l,
                Err(CloudError::NotFound) => continue,
                Err(e) => return Err(e.into()),
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
                let rec = self.parts.journal.node(&set.to_local(&e.path))?;
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
            return match self.parts.cloud.delete(cpath, &Precondition::None).await {
                Ok(()) | Err(CloudError::NotFound) => Ok(Vec::new()),
                Err(e) => Err(e.into()),
            };
        }
        for (p, tag) in known {
            match self
                .parts
                .cloud
                .delete(&p, &Precondition::IfMatch(tag))
                .await
            {
                Ok(()) | Err(CloudError::NotFound) | Err(CloudError::PreconditionFailed) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // Known folders left empty go too, deepest first (a folder was listed before anything
        // in it); a folder that still holds anything, even what a listing skips, stays.
        let mut kept = Vec::new();
        for d in all_dirs.into_iter().rev() {
            if known_dir(&d)? {
                match self.parts.cloud.list(&d).await {
                    Ok(l) if l.entries.is_empty() && l.is_complete() => {
                        match self.parts.cloud.delete(&d, &Precondition::None).await {
                            Ok(()) | Err(CloudError::NotFound) => continue,
                            Err(e) if e.is_transient() => return Err(e.into()),
                            Err(_) => {}
                        }
                    }
                    Ok(_) => {}
                    Err(CloudError::NotFound) => continue,
                    Err(e) if e.is_transient() => return Err(e.into()),
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
        set: &SyncSet,
        kept: &[String],
    ) -> SyncResult<()> {
        let kept: HashSet<String> = kept.iter().map(|c| set.to_local(c)).collect();
        let mut others = Vec::new();
        let mut have = HashSet::new();
        self.parts.journal.for_each_node_under(path, |r| {
            // The folders kept are closed under their parents, so no other record holds one.
            if !kept.contains(&r.path) {
                others.push(r.path);
            } else if r.kind == NodeKind::Dir {
                have.insert(r.path);
            }
        })?;
        let missing: Vec<NodeRecord> = kept
            .iter()
            .filter(|p| !have.contains(*p))
            .map(|p| NodeRecord {
                path: p.clone(),
                etag: None,
                ..rec.clone()
            })
            .collect();
        self.parts.journal.put_nodes(&missing)?;
        for p in others {
            self.parts.journal.delete_subtree(&p)?;
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
    async fn children_to_check(&self, path: &str, differing: bool) -> SyncResult<Vec<Change>> {
        let onprem = self.parts.onprem.clone();
        let dir = path.to_string();
        let scope = self.parts.scope.clone();
        let here: Vec<String> = Self::blocking(move || {
            let mut v = Vec::new();
            for de in onprem.read_dir(&dir)? {
                let de = de?;
                if let Some(name) = de.name.to_str()
                    && !scope.ignore.name_excluded(name)
                {
                    v.push(cloud::join(&dir, name));
                }
            }
            Ok(v)
        })
        .await?;
        let recorded: HashSet<String> = self.parts.journal.child_paths(path)?.into_iter().collect();
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

    /// Makes the cloud folder that `path` (cloud path `cpath`) belongs in, with its missing
    /// folders above, and records each folder that had no record, without an inode: the
    /// cloud holds the folder, and what it holds on-premise is pushed by its own entries (a
    /// later push of the folder sees no inode of its own and lists it). So a later move or
    /// delete of such a folder reaches the cloud too.
    async fn make_parents(&self, path: &str, cpath: &str) -> SyncResult<()> {
        self.parts.cloud.mkdir(cloud::parent(cpath)).await?;
        let Some(set) = self.parts.scope.sets.set_for(path) else {
            return Ok(());
        };
        let mut missing = Vec::new();
        let mut a = cloud::parent(path);
        while !a.is_empty() && a != set.local && cloud::is_within(a, &set.local) {
            if self.parts.journal.node(a)?.is_some() {
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
        Ok(self.parts.journal.put_nodes(&missing)?)
    }
}

/// Makes `dst` (new and empty) a snapshot of the first `size` bytes of `src`: a reflink clone
/// where the filesystem offers one (one instant of the file), otherwise a copy (a consistent
/// prefix of a file that is only appended to). False when `src` holds fewer bytes by now.
fn take_snapshot(src: &std::fs::File, dst: &std::fs::File, size: u64) -> std::io::Result<bool> {
    if rustix::fs::ioctl_ficlone(dst, src).is_ok() {
        if dst.metadata()?.len() < size {
            return Ok(false);
        }
        dst.set_len(size)?;
        return Ok(true);
    }
    let (mut off_in, mut off_out) = (0u64, 0u64);
    while off_in < size {
        let want = (size - off_in).min(1 << 30) as usize;
        match rustix::fs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), want) {
            Ok(0) => return Ok(false),
            Ok(_) => {}
            // Not offered between these two files: read and write.
            Err(
                rustix::io::Errno::XDEV
                | rustix::io::Errno::INVAL
                | rustix::io::Errno::NOSYS
                | rustix::io::Errno::OPNOTSUPP,
            ) => return copy_range(src, dst, off_in, size),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// Copies bytes `from..size` of `src` to the same offsets of `dst`; false when `src` ends
/// first.
fn copy_range(
    src: &std::fs::File,
    dst: &std::fs::File,
    from: u64,
    size: u64,
) -> std::io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 1 << 20];
    let mut off = from;
    while off < size {
        let want = (size - off).min(buf.len() as u64) as usize;
        let n = src.read_at(&mut buf[..want], off)?;
        if n == 0 {
            return Ok(false);
        }
        dst.write_all_at(&buf[..n], off)?;
        off += n as u64;
    }
    Ok(true)
}
