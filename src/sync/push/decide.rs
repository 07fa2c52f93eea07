//! The push decision: what one queued change asks of the cloud, from the on-premise state, the
//! journal record and the change, as pure functions over a fixed vocabulary.
//!
//! The pusher gathers the inputs (a stat through the door, the record, the flags of the
//! engine) and carries out the answer, one propagator function per action (`apply.rs`).
//! Nothing here touches ONPREM, the journal or the cloud, so every rule of the push is one
//! row of the tables below: file ↔ folder, delete against edit, rename over an item, records
//! of items deleted in the cloud (`DELETED_ON_CLOUD`: never deleted nor moved there again),
//! links in the way, changes still on their way to the queue.
//!
//! There are three decisions, one per moment the pusher learns enough to take it: a change of
//! a path ([`decide`]), the content of a file once it is open ([`decide_file`]), and a rename
//! ([`decide_rename`]).

use crate::cloud::Precondition;
use crate::journal::{NodeKind, NodeRecord, NodeState};

/// What a synced path is on-premise, as far as the push of a change there cares. (A path
/// that is excluded, unsynced or outside every sync set is not the cloud's business: its
/// change is done before anything is gathered.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Local {
    /// The root or a sync set's own folder.
    SetFolder,
    /// A link (or something else the door refuses) is in the way.
    Blocked,
    /// Nothing at the path.
    Absent {
        /// A change at or above the path is still on its way to the journal.
        unflushed_above: bool,
        /// A rename queued after this entry took the path away (a folder above it moved).
        renamed_over: bool,
    },
    /// A folder, with its inode.
    Dir {
        /// Its inode number.
        ino: u64,
    },
    /// A regular file.
    File {
        /// Open for writing through the mount.
        open_for_writing: bool,
        /// Open for writing for longer than `open_push_interval`, and changed since its last
        /// snapshot went: a snapshot of it is due.
        snapshot_due: bool,
    },
    /// A symbolic link or a special file: stays on-premise.
    Special,
}

/// What a change of a path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathAction {
    /// Nothing to send: the entry is done.
    Nothing,
    /// Not now: decide again after the push delay.
    Later,
    /// Refuse: a link is in the way (`CloudError::Blocked`).
    Blocked,
    /// Gone because a rename carried it, and it never reached the cloud: check it again under
    /// the name the renames queued since give it.
    CarrySelf,
    /// Make sure the set's cloud folder exists.
    MakeSetFolder,
    /// Gone here: delete the cloud folder, keeping what changed there since the last sync.
    DeleteDir,
    /// Gone here: delete the cloud file under this condition (delete against edit: the edit
    /// wins), then forget the record.
    DeleteFile {
        /// Usually the recorded ETag.
        cond: Precondition,
    },
    /// Gone here, and its cloud copy was gone already (`DELETED_ON_CLOUD`): forget the record,
    /// delete nothing.
    ForgetRecord,
    /// Gone here, in a set that keeps cloud copies of on-premise deletes: keep the record,
    /// end the upload intents below.
    KeepCloudCopy,
    /// A synced folder: check only what differs one level down.
    CheckChanged,
    /// A folder new to the cloud (or made in place of a recorded one): make it, and check all
    /// it holds.
    MkdirAndList,
    /// A file became a folder: delete the cloud file under this condition, then as
    /// [`PathAction::MkdirAndList`].
    ReplaceFileByFolder {
        /// The recorded ETag, or none.
        cond: Precondition,
    },
    /// A file: open it through the door and decide on its content ([`decide_file`]).
    PushFile,
    /// A file kept open for writing: push a consistent snapshot of it, recorded as the
    /// cloud's version but never as synced content, and decide again later.
    PushSnapshot,
}

/// What a change of a path asks for, from what is at the path, its record, and whether its
/// set deletes in the cloud what is deleted on-premise.
pub(crate) fn decide(local: Local, rec: Option<&NodeRecord>, cloud_delete: bool) -> PathAction {
    match local {
        Local::SetFolder => PathAction::MakeSetFolder,
        // Never pushed, and never taken for a delete: left alone until the way is clear.
        Local::Blocked => PathAction::Blocked,
        // Gone here. If a change at or above it is still on its way to the journal (a folder
        // renamed a moment ago), decide once it is queued: that rename moves this item.
        Local::Absent {
            unflushed_above: true,
            ..
        } => PathAction::Later,
        // Gone because a folder above it was renamed after this entry was taken (it ran
        // while that rename was queued, and the rename carried a copy of it). The rename
        // carries what is in the cloud; what never got there goes up under the name the
        // renames queued since give it.
        Local::Absent {
            renamed_over: true, ..
        } => match rec {
            Some(_) => PathAction::Nothing,
            None => PathAction::CarrySelf,
        },
        Local::Absent { .. } => match rec {
            None => PathAction::Nothing,
            Some(_) if !cloud_delete => PathAction::KeepCloudCopy,
            Some(r) if r.kind == NodeKind::Dir => PathAction::DeleteDir,
            // Deleted in the cloud already (DELETED_ON_CLOUD): whatever is at the path now is
            // someone's new item, never ours to delete.
            Some(r) if r.state == NodeState::Failed => PathAction::ForgetRecord,
            Some(r) => PathAction::DeleteFile {
                cond: match &r.etag {
                    Some(t) => Precondition::IfMatch(t.clone()),
                    None => Precondition::None,
                },
            },
        },
        Local::Dir { ino } => match rec {
            // The inode tells this folder from one made in its place, and from a folder the
            // pusher made in the cloud for a move into it (recorded with no inode): what
            // either holds is not known to be in the cloud yet.
            Some(r) if r.kind == NodeKind::Dir && r.state == NodeState::Synced && r.ino == ino => {
                PathAction::CheckChanged
            }
            // A file became a folder: the cloud file goes, unless it changed there.
            Some(r) if r.kind == NodeKind::File => PathAction::ReplaceFileByFolder {
                cond: r
                    .etag
                    .clone()
                    .map_or(Precondition::None, Precondition::IfMatch),
            },
            _ => PathAction::MkdirAndList,
        },
        // Open for writing: the final version goes once the last writer closes it; a writer
        // that keeps it open past `open_push_interval` gets a snapshot pushed meanwhile.
        Local::File {
            open_for_writing: true,
            snapshot_due: true,
        } => PathAction::PushSnapshot,
        Local::File {
            open_for_writing: true,
            ..
        } => PathAction::Later,
        Local::File { .. } => PathAction::PushFile,
        Local::Special => PathAction::Nothing,
    }
}

/// What the content of a file asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FileAction {
    /// Synced and unchanged by its stat: nothing to send.
    Nothing,
    /// Hash the open file and decide again with the hash.
    Hash,
    /// Same content as the synced record (a touch, a rename, a restart): write the new stat
    /// into the record, send nothing.
    RefreshRecord,
    /// Upload under this condition.
    Upload {
        /// `If-Match` the recorded ETag for an update, `If-None-Match: *` for a new file.
        cond: Precondition,
    },
    /// A folder became a file: delete the cloud folder (keeping what changed there), forget
    /// its records, and upload the file as new.
    ReplaceFolderByFile,
}

/// What a file's content asks for, from its record, whether its stat is the record's, and its
/// hash once known. The hash is asked for only when the stat does not settle it.
pub(crate) fn decide_file(
    rec: Option<&NodeRecord>,
    unchanged: bool,
    hash: Option<&str>,
    size: u64,
    prehash: bool,
) -> FileAction {
    if rec.is_some_and(|r| r.state == NodeState::Synced) && unchanged {
        return FileAction::Nothing;
    }
    // The content is hashed before the upload only when that can spare it: a synced file of
    // the same size may hold the same bytes (a touch, a chmod, a rename, a restart). With
    // `prehash` (a backend that does not hash while sending) it is hashed anyway, to be read
    // once. Otherwise the upload hashes what it sends, and a large file is read once.
    let same_size_synced = rec.is_some_and(|r| {
        r.kind == NodeKind::File
            && r.state == NodeState::Synced
            && r.hash.is_some()
            && r.size == size
    });
    if hash.is_none() && (prehash || same_size_synced) {
        return FileAction::Hash;
    }
    match rec {
        // Deleted in the cloud and kept here (DELETED_ON_CLOUD): pushed again as new.
        Some(r) if r.state == NodeState::Failed => FileAction::Upload {
            cond: Precondition::IfNoneMatch,
        },
        Some(r) if r.kind == NodeKind::File => {
            if hash.is_some() && r.hash.as_deref() == hash && r.state == NodeState::Synced {
                FileAction::RefreshRecord
            } else {
                FileAction::Upload {
                    cond: crate::sync::intent::precondition_for(Some(r)),
                }
            }
        }
        Some(_) => FileAction::ReplaceFolderByFile,
        None => FileAction::Upload {
            cond: Precondition::IfNoneMatch,
        },
    }
}

/// What the cloud holds of a rename's source, by the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// No record at or below it: it never reached the cloud.
    NeverSent,
    /// Its record says it was deleted in the cloud (`DELETED_ON_CLOUD`).
    DeletedOnCloud,
    /// A file or a folder (a folder also when only records below it say so).
    Sent(NodeKind),
}

/// What a rename asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RenameAction {
    /// No move: check the target and the source under the names of the rename's time (a
    /// create and a delete, or an update in place of the file at the target).
    CheckBoth,
    /// No move: the target is new to the cloud; check it.
    CheckTarget,
    /// The source's cloud copy is someone else's now (`DELETED_ON_CLOUD`): forget the
    /// source's records, and check the target as new.
    ForgetSource,
    /// Move in the cloud.
    Move {
        /// The source is a file (checked again after the move: it has a new ctime).
        file: bool,
    },
    /// An empty cloud folder is in the way of a folder: delete it (keeping what changed
    /// there), then move.
    ReplaceFolderThenMove,
}

/// What a rename asks for, from whether both names are synced, what the cloud holds of the
/// source, and what it holds at the target (by its record, or records below it).
pub(crate) fn decide_rename(synced: bool, from: Source, to: Option<NodeKind>) -> RenameAction {
    if !synced {
        // Into, out of, or outside the sync sets: a create and a delete.
        return RenameAction::CheckBoth;
    }
    let from_kind = match from {
        // Deleted in the cloud already (DELETED_ON_CLOUD): what is at `from` there now is
        // someone's new item, never ours to move. The target goes up as new.
        Source::DeletedOnCloud => return RenameAction::ForgetSource,
        // Never reached the cloud: the target is simply new.
        Source::NeverSent => return RenameAction::CheckTarget,
        Source::Sent(k) => k,
    };
    match to {
        // Replaced an existing cloud file: update it in place, then drop the source.
        Some(t) if t == NodeKind::File || from_kind == NodeKind::File => RenameAction::CheckBoth,
        // An empty folder was replaced by a folder.
        Some(_) => RenameAction::ReplaceFolderThenMove,
        None => RenameAction::Move {
            file: from_kind == NodeKind::File,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use NodeKind::{Dir, File};
    use NodeState::{Failed, Synced};

    fn rec(kind: NodeKind, state: NodeState, etag: Option<&str>) -> NodeRecord {
        NodeRecord {
            path: "a".into(),
            kind,
            size: 3,
            mtime_ns: 1,
            ctime_ns: 1,
            ino: 7,
            hash: Some("h".into()),
            etag: etag.map(str::to_string),
            state,
            error: None,
            synced_at: Some(1),
        }
    }

    #[test]
    fn path_table() {
        use PathAction::*;
        let gone_here = |unflushed_above, renamed_over| Local::Absent {
            unflushed_above,
            renamed_over,
        };
        let absent = gone_here(false, false);
        let dir_here = |ino| Local::Dir { ino };
        let file_here = |open_for_writing| Local::File {
            open_for_writing,
            snapshot_due: false,
        };
        let snapshot_due = Local::File {
            open_for_writing: true,
            snapshot_due: true,
        };
        let file = rec(File, Synced, Some("e"));
        let untagged = rec(File, Synced, None);
        let gone = rec(File, Failed, Some("e"));
        let dir = rec(Dir, Synced, None);
        let gone_dir = rec(Dir, Failed, None);
        let made_dir = NodeRecord {
            ino: 0,
            ..dir.clone()
        };
        let if_match = || Precondition::IfMatch("e".into());
        let untagged_cond = || Precondition::None;
        type Case<'a> = (Local, Option<&'a NodeRecord>, bool, PathAction);
        let cases: &[Case] = &[
            // local, record, cloud_delete, expected
            (Local::SetFolder, None, true, MakeSetFolder),
            (Local::Blocked, Some(&file), true, Blocked),
            (gone_here(true, true), Some(&file), true, Later),
            (gone_here(true, false), None, true, Later),
            (gone_here(false, true), Some(&file), true, Nothing),
            (gone_here(false, true), None, true, CarrySelf),
            (absent, None, true, Nothing),
            (absent, None, false, Nothing),
            (absent, Some(&file), false, KeepCloudCopy),
            (absent, Some(&dir), false, KeepCloudCopy),
            (absent, Some(&gone), false, KeepCloudCopy),
            (absent, Some(&dir), true, DeleteDir),
            (absent, Some(&gone_dir), true, DeleteDir),
            (absent, Some(&gone), true, ForgetRecord),
            (absent, Some(&file), true, DeleteFile { cond: if_match() }),
            (
                absent,
                Some(&untagged),
                true,
                DeleteFile {
                    cond: untagged_cond(),
                },
            ),
            (dir_here(7), Some(&dir), true, CheckChanged),
            (dir_here(8), Some(&dir), true, MkdirAndList),
            (dir_here(7), Some(&made_dir), true, MkdirAndList),
            (dir_here(7), Some(&gone_dir), true, MkdirAndList),
            (dir_here(7), None, true, MkdirAndList),
            (
                dir_here(7),
                Some(&file),
                true,
                ReplaceFileByFolder { cond: if_match() },
            ),
            (
                dir_here(7),
                Some(&untagged),
                true,
                ReplaceFileByFolder {
                    cond: untagged_cond(),
                },
            ),
            (file_here(true), Some(&file), true, Later),
            (snapshot_due, Some(&file), true, PushSnapshot),
            (snapshot_due, None, true, PushSnapshot),
            (file_here(false), Some(&file), true, PushFile),
            (file_here(false), Some(&dir), true, PushFile),
            (file_here(false), None, true, PushFile),
            (Local::Special, Some(&file), true, Nothing),
        ];
        for (i, (l, r, cd, want)) in cases.iter().enumerate() {
            assert_eq!(decide(*l, *r, *cd), *want, "case {i}");
        }
    }

    #[test]
    fn file_table() {
        use FileAction::*;
        let file = rec(File, Synced, Some("e"));
        let untagged = rec(File, Synced, None);
        let pending = rec(File, NodeState::Conflict, Some("e"));
        let gone = rec(File, Failed, Some("e"));
        let dir = rec(Dir, Synced, None);
        let new = Upload {
            cond: Precondition::IfNoneMatch,
        };
        type Case<'a> = (Option<&'a NodeRecord>, bool, Option<&'a str>, FileAction);
        let cases: &[Case] = &[
            // record, unchanged by stat, hash, expected
            (Some(&file), true, None, Nothing),
            (Some(&file), false, None, Hash),
            (Some(&pending), true, None, Hash),
            (None, false, None, Hash),
            (Some(&file), false, Some("h"), RefreshRecord),
            (
                Some(&file),
                false,
                Some("other"),
                Upload {
                    cond: Precondition::IfMatch("e".into()),
                },
            ),
            (
                Some(&untagged),
                false,
                Some("other"),
                Upload {
                    cond: Precondition::None,
                },
            ),
            // Not synced: the same hash is no proof the cloud holds it.
            (
                Some(&pending),
                true,
                Some("h"),
                Upload {
                    cond: Precondition::IfMatch("e".into()),
                },
            ),
            (Some(&gone), true, Some("h"), new.clone()),
            (Some(&dir), false, Some("h"), ReplaceFolderByFile),
            (None, false, Some("h"), new.clone()),
        ];
        // With a backend that does not hash while sending, every upload is hashed first.
        for (i, (r, u, h, want)) in cases.iter().enumerate() {
            assert_eq!(decide_file(*r, *u, *h, 3, true), *want, "case {i}");
        }
        // With one that does, only a synced file of the same size is hashed first; anything
        // else goes up at once and is hashed on the way.
        let upload_now: &[Case] = &[
            (Some(&file), false, None, Hash),
            (
                Some(&pending),
                true,
                None,
                Upload {
                    cond: Precondition::IfMatch("e".into()),
                },
            ),
            (None, false, None, new.clone()),
            (Some(&gone), false, None, new.clone()),
            (Some(&dir), false, None, ReplaceFolderByFile),
            (Some(&file), true, None, Nothing),
        ];
        for (i, (r, u, h, want)) in upload_now.iter().enumerate() {
            assert_eq!(
                decide_file(*r, *u, *h, 3, false),
                *want,
                "unhashed case {i}"
            );
        }
        // A synced file whose size changed is not worth a hash first.
        assert_eq!(
            decide_file(Some(&file), false, None, 4, false),
            Upload {
                cond: Precondition::IfMatch("e".into()),
            }
        );
    }

    #[test]
    fn rename_table() {
        use RenameAction::*;
        use Source::*;
        type Case = (bool, Source, Option<NodeKind>, RenameAction);
        let cases: &[Case] = &[
            // both names synced, source in the cloud, target in the cloud, expected
            (false, Sent(File), None, CheckBoth),
            (false, NeverSent, Some(Dir), CheckBoth),
            (true, DeletedOnCloud, None, ForgetSource),
            (true, DeletedOnCloud, Some(File), ForgetSource),
            (true, NeverSent, None, CheckTarget),
            (true, NeverSent, Some(File), CheckTarget),
            (true, Sent(File), Some(File), CheckBoth),
            (true, Sent(File), Some(Dir), CheckBoth),
            (true, Sent(Dir), Some(File), CheckBoth),
            (true, Sent(Dir), Some(Dir), ReplaceFolderThenMove),
            (true, Sent(File), None, Move { file: true }),
            (true, Sent(Dir), None, Move { file: false }),
        ];
        for (i, (s, f, t, want)) in cases.iter().enumerate() {
            assert_eq!(decide_rename(*s, *f, *t), *want, "case {i}");
        }
    }
}
