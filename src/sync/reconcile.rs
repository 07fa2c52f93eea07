//! The three-way decision: on-premise state, cloud state and journal record in, one action out.
//!
//! This is a pure function over a fixed vocabulary, so the whole decision table is tested without
//! any I/O. The puller gathers the three states and carries the action out.

use crate::journal::NodeKind;

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
    /// Both sides changed: keep both, the loser as a conflict copy.
    Conflict(Winner),
    /// A file on one side, a folder on the other: keep both.
    TypeConflict,
    /// Both sides agree (both gone, or the same new folder): only the journal changes.
    Record,
}

/// Decides what to do with one path.
pub fn reconcile(
    local: Option<Side>,
    cloud: Option<Side>,
    has_record: bool,
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
                Reupload // delete against edit: the edit wins
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

/// The name of the `k`th conflict copy made in one second: `NAME (conflict YYYY-MM-DD
/// HHMMSS).EXT`, then `NAME (conflict ...) k.EXT`; the stem is shortened so that the name fits
/// [`NAME_MAX`], and an extension is kept.
pub fn conflict_name(name: &str, t: std::time::SystemTime, k: u32) -> String {
    let stamp = humantime::format_rfc3339_seconds(t).to_string(); // 2026-11-25T22:45:53Z
    let stamp = format!("{} {}", &stamp[..10], stamp[11..19].replace(':', ""));
    // The second copy in the same second: `report (conflict 2026-11-25 225500) 2.odt`.
    let mark = if k > 1 {
        format!(" (conflict {stamp}) {k}")
    } else {
        format!(" (conflict {stamp})")
    };
    // An extension is kept when it is one (short, after a non-empty stem).
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 && name.len() - i <= MAX_EXT => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    // The whole name must fit NAME_MAX: the stem gives way, cut on a character boundary.
    let room = NAME_MAX.saturating_sub(mark.len() + ext.len());
    let mut cut = stem.len().min(room);
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{mark}{ext}", &stem[..cut])
}

/// Longest name, in bytes, that Linux filesystems take.
pub const NAME_MAX: usize = 255;

/// Longest extension kept whole in a conflict copy's name.
const MAX_EXT: usize = 32;

/// True for names made by [`conflict_name`].
pub fn is_conflict_name(name: &str) -> bool {
    let Some(i) = name.find(" (conflict ") else {
        return false;
    };
    let rest = &name[i + 11..];
    rest.len() >= 18
        && rest.as_bytes()[17] == b')'
        && rest[..17].bytes().enumerate().all(|(k, b)| match k {
            4 | 7 => b == b'-',
            10 => b == b' ',
            _ => b.is_ascii_digit(),
        })
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
            // local, cloud, record?, onprem_delete, expected
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
            assert_eq!(reconcile(*l, *c, *r, *od, Winner::Cloud), *want, "case {i}");
        }
        assert_eq!(
            reconcile(s(File, true), s(File, true), true, false, Winner::Onprem),
            Conflict(Winner::Onprem)
        );
    }

    #[test]
    fn conflict_names() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
        let n = conflict_name("report.odt", t, 1);
        assert_eq!(n, "report (conflict 2026-11-18 110640).odt");
        assert!(is_conflict_name(&n));
        assert_eq!(
            conflict_name("Makefile", t, 1),
            "Makefile (conflict 2026-11-18 110640)"
        );
        assert_eq!(
            conflict_name(".bashrc", t, 1),
            ".bashrc (conflict 2026-11-18 110640)"
        );
        assert!(!is_conflict_name("report (conflict).odt"));
        assert!(!is_conflict_name("report.odt"));
    }

    #[test]
    fn conflict_names_fit_name_max() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_764_111_300);
        assert_eq!(
            conflict_name("report.odt", t, 2),
            "report (conflict 2025-11-25 225500) 2.odt"
        );
        for len in [200, 226, 227, 240, 255] {
            for stem in ["a".repeat(len - 4), "é".repeat((len - 4) / 2)] {
                let name = format!("{stem}.txt");
                for k in [1, 2, 100] {
                    let c = conflict_name(&name, t, k);
                    assert!(c.len() <= NAME_MAX, "{} bytes", c.len());
                    assert!(c.ends_with(".txt"), "{c}");
                    assert!(is_conflict_name(&c), "{c}");
                }
            }
        }
        // A name whose "extension" is most of it is cut as a whole.
        let c = conflict_name(&format!("a.{}", "x".repeat(250)), t, 1);
        assert!(c.len() <= NAME_MAX && is_conflict_name(&c));
    }
}
