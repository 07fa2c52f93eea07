//! Which names never reach the cloud: editor temporary and lock files, and the configured
//! ignore patterns. Matching is on the file name alone, with shell globs.

use globset::{Glob, GlobSet, GlobSetBuilder};

/// Names that editors and office suites use for scratch, lock and backup files.
pub const DEFAULT_PATTERNS: &[&str] = &[
    // vim: swap files, the 4913 write probe, backups
    ".*.sw?",
    "*.swp",
    "4913",
    "*~",
    // LibreOffice lock and temporary files
    ".~lock.*#",
    "lu*.tmp",
    // Microsoft Office owner files and temporaries
    "~$*",
    "~*.tmp",
    // emacs lock and autosave files
    ".#*",
    "#*#",
    // desktop clutter
    ".DS_Store",
    "Thumbs.db",
    // our own scratch files, and conflict copies (they stay on-premise)
    ".cloudsync-*",
    "* (conflict ????-??-?? ??????)*",
];

/// A compiled set of ignore patterns.
#[derive(Debug, Clone)]
pub struct Ignore {
    set: GlobSet,
}

impl Ignore {
    /// The default patterns plus `extra`.
    pub fn new(extra: &[String]) -> anyhow::Result<Ignore> {
        let mut b = GlobSetBuilder::new();
        for p in DEFAULT_PATTERNS
            .iter()
            .copied()
            .chain(extra.iter().map(String::as_str))
        {
            b.add(
                Glob::new(p)
                    .map_err(|e| anyhow::anyhow!("ignore pattern {p:?} is invalid: {e}"))?,
            );
        }
        Ok(Ignore { set: b.build()? })
    }

    /// True when the file name `name` is excluded.
    pub fn name_excluded(&self, name: &str) -> bool {
        self.set.is_match(name)
    }

    /// True when any component of the relative path is excluded.
    pub fn path_excluded(&self, path: &str) -> bool {
        path.split('/')
            .any(|c| !c.is_empty() && self.name_excluded(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editor_files() {
        let i = Ignore::new(&["*.bak".into()]).unwrap();
        for n in [
            ".report.txt.swp",
            "4913",
            "report.txt~",
            ".~lock.report.odt#",
            "lu12345.tmp",
            "~$report.docx",
            "x.bak",
            ".#notes",
        ] {
            assert!(i.name_excluded(n), "{n} should be excluded");
        }
        for n in ["report.txt", "report.odt", "4913.txt", "notes", ".profile"] {
            assert!(!i.name_excluded(n), "{n} should sync");
        }
        assert!(i.path_excluded("a/.~lock.x#"));
        assert!(i.path_excluded("a~/b"));
        assert!(!i.path_excluded("a/b"));
    }
}
