//! The folders this client has lately seen hold objects, so that a new file below one of them
//! is not checked for a file in the way above it: when a folder holds objects, a file of the
//! same name loses to it anyway (the folder wins, the file is a name clash), so the checks
//! would change nothing.
//!
//! A folder is proven by a listing that showed something in it (or showed it as a prefix), by
//! an upload that landed below it, and by a `mkdir`. A proof holds for [`KNOWN_FOR`]; a delete
//! or a move of anything drops what it may have emptied (the path, everything below it, and
//! every folder above it), and a file written at a path drops the folders of that name.
//! Another site can still empty a folder and write a file of its name while the proof holds:
//! that window is written down in doc/SEMANTICS.md ("The windows on S3").

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cloud::parent;

/// How long a proof that a folder holds objects is taken as still true.
pub(super) const KNOWN_FOR: Duration = Duration::from_secs(60);

/// Above this many folders known, everything known is dropped (and proven again as it goes).
const MAX_KNOWN: usize = 200_000;

/// Cloud paths of folders known to hold objects, with when that was last proven.
#[derive(Default)]
pub(super) struct KnownFolders {
    map: Mutex<BTreeMap<String, Instant>>,
}

impl KnownFolders {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Instant>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The folder `path` holds objects now, so every folder above it does too.
    pub(super) fn proven(&self, path: &str) {
        let now = Instant::now();
        let mut map = self.map();
        if map.len() >= MAX_KNOWN {
            map.clear();
        }
        let mut p = path;
        while !p.is_empty() {
            map.insert(p.to_string(), now);
            p = parent(p);
        }
    }

    /// True when the folder `path` was proven to hold objects less than [`KNOWN_FOR`] ago
    /// (the root always holds them).
    pub(super) fn holds_objects(&self, path: &str) -> bool {
        path.is_empty()
            || self
                .map()
                .get(path)
                .is_some_and(|at| at.elapsed() < KNOWN_FOR)
    }

    /// Drops `path`, everything below it, and every folder above it (which may be empty now).
    pub(super) fn forget(&self, path: &str) {
        let mut map = self.map();
        Self::drop_tree(&mut map, path);
        let mut p = parent(path);
        while !p.is_empty() {
            map.remove(p);
            p = parent(p);
        }
    }

    /// A file was written at `path`: no folder is there, and the folders above it hold it.
    pub(super) fn file_written(&self, path: &str) {
        Self::drop_tree(&mut self.map(), path);
        self.proven(parent(path));
    }

    fn drop_tree(map: &mut BTreeMap<String, Instant>, path: &str) {
        map.remove(path);
        let below = format!("{path}/");
        // Everything that starts with `path/` sorts between `path/` and `path0` ('0' follows '/').
        let end = format!("{path}0");
        let doomed: Vec<String> = map
            .range::<str, _>((
                Bound::Included(below.as_str()),
                Bound::Excluded(end.as_str()),
            ))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            map.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_and_what_drops_them() {
        let k = KnownFolders::default();
        assert!(k.holds_objects(""));
        assert!(!k.holds_objects("a"));
        k.proven("a/b/c");
        assert!(k.holds_objects("a") && k.holds_objects("a/b") && k.holds_objects("a/b/c"));
        k.proven("a/b.d/e");
        k.proven("a/bc");
        // A file written at a/b: no folder a/b any more, nor anything below it.
        k.file_written("a/b");
        assert!(!k.holds_objects("a/b") && !k.holds_objects("a/b/c"));
        assert!(k.holds_objects("a/b.d/e") && k.holds_objects("a/bc") && k.holds_objects("a"));
        // A delete of a/bc may empty a.
        k.forget("a/bc");
        assert!(!k.holds_objects("a/bc") && !k.holds_objects("a"));
        assert!(k.holds_objects("a/b.d/e"));
    }
}
