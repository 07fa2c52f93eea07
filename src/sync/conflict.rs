//! Conflict copies: how they are named, how they are recognised, and where one goes.
//!
//! When both sides changed a file, the losing version is kept beside the winner under a name
//! that says when the conflict happened. The name must fit the local filesystem (NAME_MAX) and
//! be recognisable again, so that a walk never takes a conflict copy for a file to sync.

use crate::sync::{SyncError, SyncResult};
use std::time::SystemTime;

use crate::cloud::{self};
use crate::onprem::Onprem;

/// The name of the `k`th conflict copy made in one second: `NAME (conflict YYYY-MM-DD
/// HHMMSS).EXT`, then `NAME (conflict ...) k.EXT`; the stem is shortened so that the name fits
/// [`NAME_MAX`], and an extension is kept.
pub fn conflict_name(name: &str, t: SystemTime, k: u32) -> String {
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

/// A free name for the conflict copy of `path` beside it, short enough for the local
/// filesystem.
pub fn copy_path(onprem: &Onprem, path: &str) -> SyncResult<String> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let dir = cloud::parent(path);
    let now = SystemTime::now();
    for k in 1..1000 {
        let n = conflict_name(name, now, k);
        let p = cloud::join(dir, &n);
        if matches!(onprem.stat(&p), Ok(None)) {
            return Ok(p);
        }
    }
    Err(SyncError::Local(std::io::Error::other(format!(
        "no free conflict-copy name beside {path}"
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;

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
