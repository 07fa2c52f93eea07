//! The three-way decision: on-premise state, cloud state and journal record in, one action out.
//!
//! This is a pure function over a fixed vocabulary, so the whole decision table is tested without
//! any I/O. The puller gathers the three states and carries the action out.

use crate::journal::NodeKind;

// Conflict naming lives in its own module; these names stay reachable from here for callers
// that knew them here.
pub use super::conflict::{NAME_MAX, conflict_name, is_conflict_name};

/// What is on one side, as the decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Side {
    /// File or folder.
    pub kind: NodeKind,
    /// Changed since the journal record (always true when there is no record).
    pub changed: bool,
}

/// Which side wins a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Winner {
    /// The cloud version takes the name; the on-premise edit is kept as a conflict copy.
    #[default]
    Cloud,
    /// The on-premise version stays; the cloud version is kept as a conflict copy.
    Onprem,
}

/// The decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing to do (or the pusher's job).
    Nothing,
    /// Fetch the cloud file and put it in place.
    Download,
    /// Create the folder on-premise.
    CreateDir,
    /// The cloud deleted it and `onprem_delete` is on: delete on-premise.
    DeleteLocal,
    /// The cloud deleted it and `onprem_delete` is off: keep it, failed with DELETED_ON_CLOUD.
    MarkDeletedOnCloud,
    /// The cloud deleted what was edited on-premise: the edit wins and is pushed again.
    Reupload,
    /// The cloud moved the file, unchanged, to a new name that is free on-premise: move the
    /// on-premise file there too.
    Move,
    /// Both sides changed: keep both, the loser as a conflict copy.
    Conflict(Winner),
    /// A file on one side, a folder on the other: keep both.
    TypeConflict,
    /// Both sides agree (both gone, or the same new folder): only the journal changes.
    Record,
}

/// Decides what to do with one path. `moved` says the cloud item of the record is gone from
/// this path and the same file (same ETag) is at a new path that is free on both sides.
pub fn reconcile(
    local: Option<Side>,
    cloud: Option<Side>,
    has_record: bool,
    moved: bool,
    onprem_delete: bool,
    winner: Winner,
) -> Action {
    use Action::*;
    match (local, cloud) {
        (None, None) => {
            if has_record {
                Record
            } else {
                Nothing
            }
        }
        (None, Some(c)) => {
            if has_record && !c.changed {
                Nothing // deleted on-premise; the pusher deletes it in the cloud
            } else if c.kind == NodeKind::Dir {
                CreateDir // new in the cloud, or edited there after an on-premise delete
            } else {
                Download
            }
        }
        (Some(l), None) => {
            if !has_record {
                Nothing // new on-premise; the pusher uploads it
            } else if l.changed {
                Reupload // delete (or move) against edit: the edit wins
            } else if moved && l.kind == NodeKind::File {
                Move
            } else if onprem_delete {
                DeleteLocal
            } else {
                MarkDeletedOnCloud
            }
        }
        (Some(l), Some(c)) => {
            if l.kind != c.kind {
                return TypeConflict;
            }
            if l.kind == NodeKind::Dir {
                return if has_record { Nothing } else { Record };
            }
            match (l.changed, c.changed) {
                (_, false) => Nothing,
                (false, true) => Download,
                (true, true) => Conflict(winner),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;
    use NodeKind::{Dir, File};

    fn s(kind: NodeKind, changed: bool) -> Option<Side> {
        Some(Side { kind, changed })
    }

    #[test]
    fn decision_table() {
        type Case = (Option<Side>, Option<Side>, bool, bool, Action);
        let cases: &[Case] = &[
            // local, cloud, record?, onprem_delete, expected (nothing moved in the cloud)
            (None, None, false, false, Nothing),
            (None, None, true, false, Record),
            (None, s(File, true), false, false, Download),
            (None, s(Dir, true), false, false, CreateDir),
            (None, s(File, false), true, false, Nothing),
            (None, s(File, true), true, false, Download),
            (s(File, true), None, false, false, Nothing),
            (s(File, false), None, true, false, MarkDeletedOnCloud),
            (s(File, false), None, true, true, DeleteLocal),
            (s(Dir, false), None, true, true, DeleteLocal),
            (s(File, true), None, true, true, Reupload),
            (s(File, false), s(File, false), true, false, Nothing),
            (s(File, false), s(File, true), true, false, Download),
            (s(File, true), s(File, false), true, false, Nothing),
            (
                s(File, true),
                s(File, true),
                true,
                false,
                Conflict(Winner::Cloud),
            ),
            (
                s(File, true),
                s(File, true),
                false,
                false,
                Conflict(Winner::Cloud),
            ),
            (s(Dir, true), s(Dir, true), false, false, Record),
            (s(Dir, false), s(Dir, true), true, false, Nothing),
            (s(File, true), s(Dir, true), true, false, TypeConflict),
            (s(Dir, true), s(File, true), false, false, TypeConflict),
        ];
        for (i, (l, c, r, od, want)) in cases.iter().enumerate() {
            assert_eq!(
                reconcile(*l, *c, *r, false, *od, Winner::Cloud),
                *want,
                "case {i}"
            );
        }
        assert_eq!(
            reconcile(
                s(File, true),
                s(File, true),
                true,
                false,
                false,
                Winner::Onprem
            ),
            Conflict(Winner::Onprem)
        );
    }

    #[test]
    fn a_cloud_move_follows_only_an_unchanged_file() {
        // local, record?, onprem_delete, expected: the cloud copy moved away from this path.
        type Case = (Option<Side>, bool, bool, Action);
        let cases: &[Case] = &[
            (s(File, false), true, false, Move),
            (s(File, false), true, true, Move),
            // Edited on-premise meanwhile: the edit stays here and is pushed again; the moved
            // copy arrives as a new file.
            (s(File, true), true, false, Reupload),
            (s(File, true), true, true, Reupload),
            // Gone on both sides: only the journal changes.
            (None, true, false, Record),
            // A folder is never moved by this rule.
            (s(Dir, false), true, true, DeleteLocal),
            (s(Dir, false), true, false, MarkDeletedOnCloud),
            // No record: nothing was synced here, so nothing moved away.
            (s(File, true), false, false, Nothing),
        ];
        for (i, (l, r, od, want)) in cases.iter().enumerate() {
            assert_eq!(
                reconcile(*l, None, *r, true, *od, Winner::Cloud),
                *want,
                "case {i}"
            );
        }
    }
}
