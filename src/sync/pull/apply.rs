//! Propagation: carries out one decided action on one path, one function per action.
//!
//! Every change to ONPREM goes through [`Onprem`], and every replace, remove or rename of an
//! on-premise file happens under a claim of the path (`OpenWriters::claim`), after checking that
//! the file is still what the decision saw. Downloads land in one kind of temporary file,
//! [`Temp`], made by [`Puller::fetch`], so no half file is ever seen under a real name. The
//! journal is written only after the on-premise change is made.

use crate::sync::{SyncError, SyncResult};
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tracing::{debug, info, warn};

use super::{Merge, PullReport, Puller, free, map_io};
use crate::cloud::{self, CloudEntry};
use crate::journal::{Change, FileStat, NodeKind, NodeRecord, NodeState, Op};
use crate::onprem::{self, Onprem};
use crate::sync::conflict;
use crate::sync::reconcile::Winner;
use crate::sync::record_of;
use crate::sync::sets::SyncSet;

impl Puller {
    /// Both sides agree: only the journal changes (a record for a folder both made, or none for
    /// a path both deleted).
    pub(super) fn record(
        &self,
        path: &str,
        entry: Option<&CloudEntry>,
        local: Option<&std::fs::Metadata>,
    ) -> SyncResult<Merge> {
        match (entry, local) {
            (Some(e), Some(m)) => {
                self.parts
                    .journal
                    .put_node(&record_of(path, m, None, e.etag.clone()))?
            }
            _ => self.parts.journal.delete_subtree(path)?,
        }
        Ok(Merge::Done)
    }

    /// A folder new in the cloud: made on-premise.
    pub(super) fn create_dir(&self, path: &str, report: &mut PullReport) -> SyncResult<Merge> {
        let m = self.make_dir(path)?;
        self.parts
            .journal
            .put_node(&record_of(path, &m, None, None))?;
        self.invalidate.changed(path);
        report.other += 1;
        Ok(Merge::Done)
    }

    /// Deleted in the cloud and unchanged on-premise: deleted on-premise (a folder keeps what
    /// changed below it).
    pub(super) fn delete_local(
        &self,
        path: &str,
        m: Option<std::fs::Metadata>,
        report: &mut PullReport,
    ) -> SyncResult<Merge> {
        if m.as_ref().is_some_and(|m| m.is_dir()) {
            self.delete_local_tree(path)?;
            report.other += 1;
            self.invalidate.changed(path);
            return Ok(Merge::Subtree(path.to_string()));
        }
        let Some(claim) = self
            .parts
            .writers
            .claim(path, m.as_ref().map_or(0, |m| m.ino()))
        else {
            return Ok(Merge::Done); // open for writing: the next pull
        };
        if let Some(m) = &m
            && !self.still(path, m)?
        {
            return Ok(Merge::Done);
        }
        match self.parts.onprem.remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(map_io(e)),
        }
        drop(claim);
        self.parts.journal.delete_subtree(path)?;
        self.invalidate.changed(path);
        report.other += 1;
        info!(path, "deleted on-premise: deleted in the cloud");
        Ok(Merge::Done)
    }

    /// Deleted in the cloud while on-premise deletes are off: kept, and marked failed with
    /// DELETED_ON_CLOUD (with everything below, for a folder).
    pub(super) fn mark_deleted_on_cloud(
        &self,
        path: &str,
        rec: &NodeRecord,
        report: &mut PullReport,
    ) -> SyncResult<Merge> {
        let mut r = rec.clone();
        r.state = NodeState::Failed;
        r.error = Some(format!(
            "{}: deleted in the cloud; the on-premise copy is kept (request a sync to push it again)",
            crate::status::FailureCode::DeletedOnCloud
        ));
        r.etag = None;
        self.parts.journal.put_node(&r)?;
        if r.kind == NodeKind::Dir {
            // Everything below shares the fate of the folder.
            let mut below = Vec::new();
            self.parts.journal.for_each_node_under(path, |c| {
                if c.path != path {
                    below.push(c.path);
                }
            })?;
            for p in below {
                if let Some(child) = self.parts.journal.node(&p)? {
                    self.parts.journal.put_node(&NodeRecord {
                        state: NodeState::Failed,
                        error: r.error.clone(),
                        etag: None,
                        ..child
                    })?;
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

    /// Deleted in the cloud but edited on-premise: the edit wins, and the pusher sends it again.
    pub(super) fn reupload(&self, path: &str, report: &mut PullReport) -> SyncResult<Merge> {
        self.parts.journal.delete_subtree(path)?;
        self.parts
            .journal
            .enqueue(&[Change::Path(Op::Check, path.to_string())], 0)?;
        report.other += 1;
        info!(
            path,
            "deleted in the cloud but edited on-premise: the edit wins and is pushed again"
        );
        Ok(Merge::Done)
    }

    /// Both sides changed the file: both are kept, the loser as a conflict copy. Equal content
    /// is no conflict, and what an interrupted upload of ours left in the cloud is replaced by
    /// the on-premise version without a copy.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn conflict(
        &self,
        set: &SyncSet,
        path: &str,
        e: &CloudEntry,
        m: &std::fs::Metadata,
        rec: Option<&NodeRecord>,
        winner: Winner,
        report: &mut PullReport,
    ) -> SyncResult<Merge> {
        if self.parts.writers.is_open(m.ino()) {
            return Ok(Merge::Done); // wait for the writer to close
        }
        // Equal content on both sides (say, a crash between an upload and its journal
        // write) is no conflict: only the record changes.
        let (tmp, got, cloud_hash) = self.fetch(set, path, e).await?;
        let (o, p) = (self.parts.onprem.clone(), path.to_string());
        let local_hash = tokio::task::spawn_blocking(move || o.hash(&p))
            .await?
            .map_err(map_io)?;
        let etag = got.etag.clone().or_else(|| e.etag.clone());
        if cloud_hash == local_hash {
            drop(tmp);
            self.parts.journal.put_node_ending_intent(&record_of(
                path,
                m,
                Some(local_hash),
                etag,
            ))?;
            debug!(path, "both sides hold the same content; no conflict");
            return Ok(Merge::Done);
        }
        // An upload cut short may have left part of our own file there. Only when the
        // upload intent proves it does the on-premise version go up over it with no
        // conflict copy; anything else is someone's edit, merged as a conflict below.
        if let Some(i) = self.parts.journal.intent(path)? {
            if self.own_leftover(path, i, rec, &tmp).await? {
                drop(tmp);
                self.replace_leftover(path, m, etag)?;
                return Ok(Merge::Done);
            }
            self.parts.journal.end_intent(path)?;
        }
        let copy = conflict::copy_path(&self.parts.onprem, path)?;
        // Each version keeps the mode and owner of the file it stands for.
        onprem::finish(tmp.file(), onprem::like(m)).map_err(map_io)?;
        match winner {
            Winner::Cloud => {
                if !self.cloud_wins(path, m, tmp, &copy, cloud_hash, etag)? {
                    return Ok(Merge::Done);
                }
            }
            Winner::Onprem => self.onprem_wins(path, m, e, tmp, &copy)?,
        }
        report.conflicts += 1;
        Ok(Merge::Done)
    }

    /// True when the upload intent `i` proves that the cloud file in `tmp` is what an upload of
    /// ours cut short left there.
    async fn own_leftover(
        &self,
        path: &str,
        i: crate::journal::Intent,
        rec: Option<&NodeRecord>,
        tmp: &Temp,
    ) -> SyncResult<bool> {
        let expected = crate::sync::intent::precondition_for(rec);
        let mut t = tmp.file().try_clone().map_err(map_io)?;
        std::io::Seek::seek(&mut t, std::io::SeekFrom::Start(0)).map_err(map_io)?;
        let f = self.parts.onprem.open_file(path).map_err(map_io)?;
        let own = tokio::task::spawn_blocking(move || {
            crate::sync::intent::is_own_leftover(&i, &expected, t, f)
        })
        .await?
        .map_err(map_io)?;
        Ok(own)
    }

    /// The cloud holds our own interrupted upload: the on-premise version goes up over it.
    fn replace_leftover(
        &self,
        path: &str,
        m: &std::fs::Metadata,
        etag: Option<String>,
    ) -> SyncResult<()> {
        // An unknown stat makes the pusher upload, with If-Match on the leftover.
        let r = NodeRecord {
            hash: None,
            mtime_ns: -1,
            ..record_of(path, m, None, etag)
        };
        self.parts.journal.put_node_ending_intent(&r)?;
        self.parts
            .journal
            .enqueue(&[Change::Path(Op::Modify, path.to_string())], 0)?;
        info!(
            path,
            "the cloud holds what an interrupted upload left; the on-premise version replaces it"
        );
        Ok(())
    }

    /// A conflict the cloud won: the on-premise file becomes the conflict copy `copy`, and the
    /// download in `tmp` takes the name. False when the file was open or changed again, or the
    /// name was taken meanwhile: the next pull merges it.
    fn cloud_wins(
        &self,
        path: &str,
        m: &std::fs::Metadata,
        tmp: Temp,
        copy: &str,
        cloud_hash: String,
        etag: Option<String>,
    ) -> SyncResult<bool> {
        let Some(claim) = self.parts.writers.claim(path, m.ino()) else {
            return Ok(false); // open for writing: the next pull
        };
        if !self.still(path, m)? {
            return Ok(false); // changed again meanwhile: the next pull
        }
        self.parts
            .onprem
            .rename_noreplace(path, copy)
            .map_err(map_io)?;
        let placed = tmp.place(path, true);
        drop(claim);
        self.invalidate.changed(copy);
        if placed.is_err() {
            debug!(
                path,
                "created again during the merge; merged at the next pull"
            );
            return Ok(false);
        }
        let now = self
            .parts
            .onprem
            .stat(path)
            .map_err(map_io)?
            .ok_or_else(gone)?;
        self.parts
            .journal
            .put_node(&record_of(path, &now, Some(cloud_hash), etag))?;
        self.invalidate.changed(path);
        info!(path, copy = %copy, "conflict: the cloud version won; the on-premise edit is kept as a conflict copy");
        Ok(true)
    }

    /// A conflict the on-premise version won: the download becomes the conflict copy `copy`,
    /// and the pusher sends the on-premise version over the cloud version just saved.
    fn onprem_wins(
        &self,
        path: &str,
        m: &std::fs::Metadata,
        e: &CloudEntry,
        tmp: Temp,
        copy: &str,
    ) -> SyncResult<()> {
        tmp.place(copy, true).map_err(map_io)?;
        self.invalidate.changed(copy);
        // Push the on-premise version over the cloud version just saved.
        // An unknown stat makes the pusher upload, with If-Match on the
        // cloud version just saved.
        let r = NodeRecord {
            hash: None,
            mtime_ns: -1,
            ..record_of(path, m, None, e.etag.clone())
        };
        self.parts.journal.put_node(&r)?;
        self.parts
            .journal
            .enqueue(&[Change::Path(Op::Modify, path.to_string())], 0)?;
        info!(path, copy = %copy, "conflict: the on-premise version won; the cloud version is kept as a conflict copy");
        Ok(())
    }

    /// A file on one side and a folder on the other: the on-premise item moves to a conflict
    /// copy, and the cloud's takes the name.
    pub(super) async fn type_conflict(
        &self,
        set: &SyncSet,
        path: &str,
        e: &CloudEntry,
        m: &std::fs::Metadata,
        report: &mut PullReport,
    ) -> SyncResult<Merge> {
        let Some(claim) = self
            .parts
            .writers
            .claim(path, if m.is_file() { m.ino() } else { 0 })
        else {
            return Ok(Merge::Done);
        };
        let copy = conflict::copy_path(&self.parts.onprem, path)?;
        self.parts
            .onprem
            .rename_noreplace(path, &copy)
            .map_err(map_io)?;
        drop(claim);
        self.parts.journal.delete_subtree(path)?;
        self.invalidate.changed(&copy);
        if e.is_dir {
            let m = self.make_dir(path)?;
            self.parts
                .journal
                .put_node(&record_of(path, &m, None, None))?;
            self.invalidate.changed(path);
        } else {
            self.download(set, path, e, None).await?;
        }
        report.conflicts += 1;
        info!(path, copy = %copy, "a file and a folder met; both are kept");
        Ok(Merge::Done)
    }

    /// True when `path` still is what `m` describes.
    pub(super) fn still(&self, path: &str, m: &std::fs::Metadata) -> SyncResult<bool> {
        let now = self.parts.onprem.stat(path).map_err(map_io)?;
        Ok(now.is_some_and(|n| FileStat::of(m) == FileStat::of(&n))
            && !self.parts.writers.is_open(m.ino()))
    }

    /// Creates the folder `path` (and those above it) and returns its metadata.
    pub(super) fn make_dir(&self, path: &str) -> SyncResult<std::fs::Metadata> {
        self.parts.onprem.create_dirs(path).map_err(map_io)?;
        self.parts
            .onprem
            .stat(path)
            .map_err(map_io)?
            .ok_or_else(gone)
    }

    /// A cloud item whose on-premise path goes through a link or a special file: left alone,
    /// and shown failed until the way is clear and a sync is requested.
    pub(super) fn blocked(&self, path: &str) -> SyncResult<()> {
        // Said and queued once, not at every pull; again after a sync request (the user
        // replaced the link, say).
        let asked = self.parts.shared.sync_requests.load(Ordering::Relaxed);
        {
            let mut seen = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
            if seen.0 != asked {
                *seen = (asked, HashSet::new());
            }
            if !seen.1.insert(path.to_string()) {
                return Ok(());
            }
        }
        warn!(path, "{}", onprem::crossing_detail(path));
        self.parts
            .journal
            .enqueue(&[Change::Path(Op::Check, path.to_string())], 0)?;
        self.wake_pusher.notify_one();
        Ok(())
    }

    /// Downloads the cloud file `path` into a new private temporary file beside its target
    /// (the folders above it are made first). Returns it with what the cloud said and the hash
    /// of the bytes received. The temporary file goes away on any error.
    pub(super) async fn fetch(
        &self,
        set: &SyncSet,
        path: &str,
        e: &CloudEntry,
    ) -> SyncResult<(Temp, CloudEntry, String)> {
        let dir = cloud::parent(path);
        self.parts.onprem.create_dirs(dir).map_err(map_io)?;
        let tmp = Temp {
            onprem: self.parts.onprem.clone(),
            new: self.parts.onprem.create_temp(dir).map_err(map_io)?,
        };
        self.gets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let got = self
            .parts
            .cloud
            .get_file(&set.to_cloud(path), tmp.file())
            .await?;
        let mtime = got.mtime.or(e.mtime);
        let f = tmp.file().try_clone().map_err(map_io)?;
        let hash = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
            if let Some(mt) = mtime {
                f.set_modified(mt)?;
            }
            f.sync_all()?;
            onprem::hash_file(&f)
        })
        .await?
        .map_err(map_io)?;
        if let Ok(m) = tmp.file().metadata() {
            self.parts.shared.metrics.received(m.len());
        }
        Ok((tmp, got, hash))
    }

    /// Downloads `path` over the on-premise file, unless it changed meanwhile or is open for
    /// writing. Returns whether it did.
    pub(super) async fn download(
        &self,
        set: &SyncSet,
        path: &str,
        e: &CloudEntry,
        seen: Option<&std::fs::Metadata>,
    ) -> SyncResult<bool> {
        if let Some(m) = seen
            && self.parts.writers.is_open(m.ino())
        {
            debug!(path, "open for writing; the download waits for close");
            return Ok(false);
        }
        let _downloading = self.parts.shared.downloading(path);
        let (tmp, got, hash) = self.fetch(set, path, e).await?;
        // Mode and owner stay on-premise: a replaced file keeps its own; a new file gets the
        // daemon's file mode and the owner and group of its folder.
        let like = match seen {
            Some(m) => onprem::like(m),
            None => {
                let dir = self
                    .parts
                    .onprem
                    .stat(cloud::parent(path))
                    .map_err(map_io)?
                    .ok_or_else(gone)?;
                (self.parts.onprem.file_mode(), dir.uid(), dir.gid())
            }
        };
        onprem::finish(tmp.file(), like).map_err(map_io)?;
        // Never replace a file that changed while we downloaded, nor one opened for writing
        // meanwhile: the claim holds new opens for writing off until the rename is done.
        let Some(claim) = self.parts.writers.claim(path, seen.map_or(0, |m| m.ino())) else {
            debug!(path, "open for writing; the download waits for close");
            return Ok(false);
        };
        let now = self.parts.onprem.stat(path).map_err(map_io)?;
        let unchanged = match (seen, &now) {
            (None, None) => true,
            (Some(a), Some(b)) => FileStat::of(a) == FileStat::of(b),
            (None, Some(_)) => false,
            (Some(_), None) => false,
        };
        if !unchanged
            || now
                .as_ref()
                .is_some_and(|m| self.parts.writers.is_open(m.ino()))
        {
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
        let m = self
            .parts
            .onprem
            .stat(path)
            .map_err(map_io)?
            .ok_or_else(gone)?;
        let etag = got.etag.or_else(|| e.etag.clone());
        self.parts
            .journal
            .put_node(&record_of(path, &m, Some(hash), etag))?;
        self.invalidate.changed(path);
        self.parts.shared.progress.downloaded(m.size());
        info!(path, bytes = m.size(), "downloaded");
        Ok(true)
    }

    pub(super) async fn apply_move(
        &self,
        from: &str,
        to: &str,
        e: &CloudEntry,
    ) -> SyncResult<bool> {
        let Ok(Some(m)) = self.parts.onprem.stat(from) else {
            return Ok(false);
        };
        let rec = self.parts.journal.node(from)?;
        if rec.as_ref().is_none_or(|r| !r.unchanged(&m))
            || self.parts.writers.is_open(m.ino())
            || !free(&self.parts.onprem, to)
        {
            return Ok(false);
        }
        self.parts
            .onprem
            .create_dirs(cloud::parent(to))
            .map_err(map_io)?;
        let Some(claim) = self.parts.writers.claim(from, m.ino()) else {
            return Ok(false);
        };
        if !self.still(from, &m)? {
            return Ok(false);
        }
        self.parts
            .onprem
            .rename_noreplace(from, to)
            .map_err(map_io)?;
        drop(claim);
        self.parts.journal.move_subtree(from, to)?;
        if let Some(mut r) = self.parts.journal.node(to)? {
            r.etag = e.etag.clone();
            // The rename moved the file's ctime; the record follows, as the file is the one
            // just checked unchanged.
            if r.kind == NodeKind::File
                && let Ok(Some(after)) = self.parts.onprem.stat(to)
            {
                r.ctime_ns = FileStat::of(&after).ctime_ns;
            }
            self.parts.journal.put_node(&r)?;
        }
        self.invalidate.changed(from);
        self.invalidate.changed(to);
        info!(from, to, "moved on-premise: moved in the cloud");
        Ok(true)
    }

    /// Carries out on-premise a folder move made in the cloud: one rename of `from` to `to`
    /// through the door, and the records below follow. In this order, so that a crash at any
    /// point loses nothing and downloads nothing again:
    /// 1. the move is noted in the journal ([`crate::journal::Journal::begin_pull_move`]);
    /// 2. the folder is renamed on-premise (never over anything);
    /// 3. the records move and the note goes, in one transaction.
    ///
    /// After a crash between 2 and 3, [`Puller::recover_moves`] finds the note with the folder
    /// at its new name and finishes step 3; after one between 1 and 2 it forgets the note, and
    /// the next pull finds the move again.
    ///
    /// Items below `from` that changed on-premise since their last sync, or that the journal
    /// does not know, move with the folder and are queued to be pushed at their new path. A
    /// file below it that is open (or being opened) for writing through the mount, or a change
    /// on its way to the queue, makes the move wait for the next pull.
    pub(super) fn move_folder(&self, from: &str, to: &str) -> SyncResult<FolderMove> {
        let sh = &self.parts.shared;
        if [from, to]
            .iter()
            .any(|p| sh.renaming_over(p) || sh.unflushed_over(p))
            || self.parts.journal.pending_overlaps(from)?
            || self.parts.journal.pending_overlaps(to)?
        {
            return Ok(FolderMove::Later);
        }
        let Some(m) = self.parts.onprem.stat(from).map_err(map_io)? else {
            return Ok(FolderMove::No);
        };
        if !m.is_dir() || !free(&self.parts.onprem, to) {
            return Ok(FolderMove::No);
        }
        // Every file below is claimed, so no open for writing starts during the rename.
        let mut claims = Vec::new();
        let Some(changed) = self.changed_below(from, Some(&mut claims))? else {
            return Ok(FolderMove::Later);
        };
        self.parts
            .onprem
            .create_dirs(cloud::parent(to))
            .map_err(map_io)?;
        self.parts.journal.begin_pull_move(from, to)?;
        if let Err(e) = self.parts.onprem.rename_noreplace(from, to) {
            self.parts.journal.drop_pull_move(from)?;
            if matches!(
                e.raw_os_error(),
                Some(libc::EEXIST) | Some(libc::ENOTEMPTY) | Some(libc::EXDEV)
            ) {
                // Taken meanwhile, or on another file system: file by file.
                return Ok(FolderMove::No);
            }
            return Err(map_io(e));
        }
        drop(claims);
        self.parts.journal.finish_pull_move(from, to)?;
        self.invalidate.changed(from);
        self.invalidate.changed(to);
        if !changed.is_empty() {
            let changes: Vec<Change> = changed
                .iter()
                .map(|p| Change::Path(Op::Check, super::moves::rebase(p, from, to)))
                .collect();
            self.parts.journal.enqueue(&changes, 0)?;
            self.wake_pusher.notify_one();
        }
        info!(
            from,
            to,
            changed = changed.len(),
            "moved on-premise: moved in the cloud"
        );
        Ok(FolderMove::Done)
    }

    /// The items at or below the folder `dir` that changed on-premise since their last sync,
    /// or that the journal does not know. With `claims`, every file below is claimed too;
    /// `None` when one is open (or being opened) for writing.
    fn changed_below<'w>(
        &'w self,
        dir: &str,
        mut claims: Option<&mut Vec<crate::fs::handles::Claim<'w>>>,
    ) -> SyncResult<Option<Vec<String>>> {
        let mut changed = Vec::new();
        let mut stack = vec![dir.to_string()];
        while let Some(dir) = stack.pop() {
            for ent in self.parts.onprem.read_dir(&dir).map_err(map_io)? {
                let ent = ent.map_err(map_io)?;
                let Some(name) = ent.name.to_str() else {
                    continue; // not UTF-8: moves along, as the scan sees it
                };
                let p = cloud::join(&dir, name);
                let Ok(em) = ent.meta else { continue };
                let rec = self.parts.journal.node(&p)?;
                if em.is_dir() {
                    if rec.as_ref().is_none_or(|r| r.kind != NodeKind::Dir) {
                        changed.push(p.clone());
                    }
                    stack.push(p);
                } else if em.is_file() {
                    if let Some(claims) = claims.as_mut() {
                        let Some(claim) = self.parts.writers.claim(&p, em.ino()) else {
                            debug!(path = %p, "open for writing; the folder move waits");
                            return Ok(None);
                        };
                        claims.push(claim);
                    }
                    if rec.as_ref().is_none_or(|r| !r.unchanged(&em)) {
                        changed.push(p);
                    }
                }
            }
        }
        Ok(Some(changed))
    }

    /// Finishes, or forgets, the cloud moves a crash cut short (see [`Puller::move_folder`]):
    /// the folder at its new name and none at the old one means the rename was done, and the
    /// records follow; anything else means it was not, and the next pull looks again.
    pub(super) fn recover_moves(&self) {
        let moves = match self.parts.journal.pull_moves() {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "cannot read the cloud moves under way");
                return;
            }
        };
        for (from, to) in moves {
            let at = |p: &str| self.parts.onprem.stat(p).ok().flatten();
            let done = at(&from).is_none() && at(&to).is_some_and(|m| m.is_dir());
            let r = if done {
                info!(from = %from, to = %to, "finishing a cloud move cut short");
                self.parts
                    .journal
                    .finish_pull_move(&from, &to)
                    .map_err(SyncError::from)
                    .and_then(|()| {
                        // What changed below before the crash is pushed at its new path.
                        let changed = self.changed_below(&to, None)?.unwrap_or_default();
                        let changes: Vec<Change> = changed
                            .into_iter()
                            .map(|p| Change::Path(Op::Check, p))
                            .collect();
                        Ok(self.parts.journal.enqueue(&changes, 0)?)
                    })
            } else {
                self.parts
                    .journal
                    .drop_pull_move(&from)
                    .map_err(SyncError::from)
            };
            if let Err(e) = r {
                warn!(from = %from, error = %e, "cannot settle a cloud move cut short");
            }
        }
    }

    /// Deletes a folder the cloud deleted, keeping anything changed or unknown on-premise.
    pub(super) fn delete_local_tree(&self, path: &str) -> SyncResult<()> {
        let mut kept = false;
        let mut records: HashMap<String, NodeRecord> = HashMap::new();
        self.parts.journal.for_each_node_under(path, |r| {
            records.insert(r.path.clone(), r);
        })?;
        pub(super) fn walk(
            me: &Puller,
            rel: &str,
            records: &HashMap<String, NodeRecord>,
            kept: &mut bool,
        ) -> std::io::Result<()> {
            for ent in me.parts.onprem.read_dir(rel)? {
                let ent = ent?;
                let Some(name) = ent.name.to_str() else {
                    *kept = true;
                    continue;
                };
                let r = cloud::join(rel, name);
                let m = ent.meta?;
                if m.is_dir() {
                    walk(me, &r, records, kept)?;
                    if me.parts.onprem.remove_dir(&r).is_err() {
                        *kept = true;
                    }
                } else if m.is_file()
                    && records.get(&r).is_some_and(|x| x.unchanged(&m))
                    && let Some(_claim) = me.parts.writers.claim(&r, m.ino())
                    && me.still(&r, &m).is_ok_and(|s| s)
                {
                    me.parts.onprem.remove_file(&r)?;
                } else {
                    *kept = true;
                }
            }
            Ok(())
        }
        walk(self, path, &records, &mut kept).map_err(map_io)?;
        if self.parts.onprem.remove_dir(path).is_err() {
            kept = true;
        }
        self.parts.journal.delete_subtree(path)?;
        if kept {
            info!(
                path,
                "deleted in the cloud; changed items are kept on-premise and pushed again"
            );
            self.parts
                .journal
                .enqueue(&[Change::Path(Op::Check, path.to_string())], 0)?;
        } else {
            info!(path, "deleted on-premise: deleted in the cloud");
        }
        Ok(())
    }
}

/// What [`Puller::move_folder`] came to.
pub(super) enum FolderMove {
    /// Moved, with its records.
    Done,
    /// Not now (a writer, a change on its way): both ends wait for the next pull.
    Later,
    /// Not a move on-premise (the folder is gone or the target taken): merged file by file.
    No,
}

pub(super) fn gone() -> SyncError {
    SyncError::Local(std::io::Error::from_raw_os_error(libc::ENOENT))
}

/// A download in a new private file beside its target ([`Onprem::create_temp`]). Discarded
/// when dropped, unless it was put in place.
pub(super) struct Temp {
    onprem: Arc<Onprem>,
    new: onprem::NewFile,
}

impl Temp {
    /// The open file.
    pub(super) fn file(&self) -> &std::fs::File {
        &self.new.file
    }

    /// Puts the file at `to`; with `noreplace`, never over an item that is there.
    pub(super) fn place(mut self, to: &str, noreplace: bool) -> std::io::Result<()> {
        let o = self.onprem.clone();
        o.place(&mut self.new, to, noreplace)
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        self.onprem.discard(&mut self.new);
    }
}
