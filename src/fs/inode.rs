//! The inode table: FUSE node ids, the names each is known by, and lookup counts for `forget`.
//!
//! A node id is the on-premise file's own inode number, so numbers are stable across lookups
//! and remounts and hard links share one id. The one exception is the root: FUSE wants id 1, so
//! the on-premise root's number and 1 swap places.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::SystemTime;

/// The FUSE root id.
pub const ROOT: u64 = 1;

#[derive(Debug, Default)]
struct Node {
    /// (parent id, name) pairs this node is reachable by; the first is its path.
    names: Vec<(u64, OsString)>,
    /// How many lookups the kernel holds.
    lookups: u64,
    /// Bumped each time the on-premise inode number is seen on a new file.
    generation: u64,
    /// Birth time of the file now behind the number, when the filesystem records one.
    birth: Option<SystemTime>,
}

/// Node ids to names.
#[derive(Debug)]
pub struct InodeTable {
    root_ino: u64,
    nodes: RwLock<HashMap<u64, Node>>,
}

impl InodeTable {
    /// A table whose root is the on-premise folder with inode number `root_ino`.
    pub fn new(root_ino: u64) -> InodeTable {
        let mut m = HashMap::new();
        m.insert(ROOT, Node::default());
        InodeTable {
            root_ino,
            nodes: RwLock::new(m),
        }
    }

    /// The node id of an on-premise inode number.
    pub fn id_of(&self, st_ino: u64) -> u64 {
        if st_ino == self.root_ino {
            ROOT
        } else if st_ino == ROOT {
            self.root_ino
        } else {
            st_ino
        }
    }

    /// The on-premise relative path of a node (empty for the root), or `None` if unknown.
    pub fn path(&self, id: u64) -> Option<PathBuf> {
        let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
        let mut parts: Vec<&OsStr> = Vec::new();
        let mut cur = id;
        let mut guard = 0;
        while cur != ROOT {
            let n = nodes.get(&cur)?;
            let (parent, name) = n.names.first()?;
            parts.push(name);
            cur = *parent;
            guard += 1;
            if guard > 4096 {
                return None;
            }
        }
        let mut p = PathBuf::new();
        for part in parts.iter().rev() {
            p.push(part);
        }
        Some(p)
    }

    /// Every known path of a node: one per hard link the kernel has looked up.
    pub fn paths(&self, id: u64) -> Vec<PathBuf> {
        let names: Vec<(u64, OsString)> = {
            let nodes = self.nodes.read().unwrap_or_else(|p| p.into_inner());
            match nodes.get(&id) {
                Some(n) => n.names.clone(),
                None => return Vec::new(),
            }
        };
        names
            .into_iter()
            .filter_map(|(parent, name)| self.child_path(parent, &name))
            .collect()
    }

    /// The relative path of `name` in the folder `parent`.
    pub fn child_path(&self, parent: u64, name: &OsStr) -> Option<PathBuf> {
        let mut p = self.path(parent)?;
        p.push(name);
        Some(p)
    }

    /// Records a lookup of `id` by `name` in `parent`, and returns the node's generation.
    ///
    /// `birth` is the birth time of the file found. The on-premise filesystem reuses inode
    /// numbers of deleted files; when the kernel still holds the old node, a new birth time
    /// bumps the generation, so the kernel drops its old inode instead of taking the new file
    /// for it, and the old file's names are forgotten.
    pub fn remember(&self, id: u64, parent: u64, name: &OsStr, birth: Option<SystemTime>) -> u64 {
        if id == ROOT {
            return 0;
        }
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        let n = nodes.entry(id).or_default();
        n.lookups += 1;
        if birth.is_some() && n.birth != birth {
            if n.birth.is_some() {
                n.generation += 1;
                n.names.clear();
            }
            n.birth = birth;
        }
        // A lookup proves this name is current, so it becomes the node's path: the file may
        // have been renamed in the on-premise folder behind the kernel's back.
        n.names.retain(|(p, nm)| !(*p == parent && nm == name));
        n.names.insert(0, (parent, name.to_os_string()));
        n.generation
    }

    /// The kernel dropped `count` lookups of `id`.
    pub fn forget(&self, id: u64, count: u64) {
        if id == ROOT {
            return;
        }
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = nodes.get_mut(&id) {
            n.lookups = n.lookups.saturating_sub(count);
            if n.lookups == 0 {
                nodes.remove(&id);
            }
        }
    }

    /// `name` in `parent` no longer names `id`.
    pub fn unlinked(&self, id: u64, parent: u64, name: &OsStr) {
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = nodes.get_mut(&id) {
            n.names.retain(|(p, nm)| !(*p == parent && nm == name));
        }
    }

    /// `id` moved from (`parent`, `name`) to (`newparent`, `newname`).
    pub fn renamed(&self, id: u64, parent: u64, name: &OsStr, newparent: u64, newname: &OsStr) {
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = nodes.get_mut(&id) {
            match n
                .names
                .iter_mut()
                .find(|(p, nm)| *p == parent && nm == name)
            {
                Some(slot) => *slot = (newparent, newname.to_os_string()),
                None => n.names.insert(0, (newparent, newname.to_os_string())),
            }
        }
    }

    /// Number of nodes the kernel holds.
    pub fn len(&self) -> usize {
        self.nodes.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when only the root is known.
    pub fn is_empty(&self) -> bool {
        self.len() <= 1
    }
}

/// A relative path as the `/`-separated UTF-8 string the journal and cloud use, if it is one.
pub fn rel_str(p: &std::path::Path) -> Option<&str> {
    std::str::from_utf8(p.as_os_str().as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_renames_and_links() {
        let t = InodeTable::new(2);
        assert_eq!(t.id_of(2), ROOT);
        assert_eq!(t.id_of(1), 2);
        t.remember(10, ROOT, OsStr::new("d"), None);
        t.remember(11, 10, OsStr::new("f"), None);
        assert_eq!(t.path(11).unwrap(), PathBuf::from("d/f"));
        t.renamed(10, ROOT, OsStr::new("d"), ROOT, OsStr::new("e"));
        assert_eq!(t.path(11).unwrap(), PathBuf::from("e/f"));
        t.remember(11, ROOT, OsStr::new("hard"), None);
        t.unlinked(11, 10, OsStr::new("f"));
        assert_eq!(t.path(11).unwrap(), PathBuf::from("hard"));
        t.forget(11, 2);
        assert!(t.path(11).is_none());
    }

    #[test]
    fn reused_numbers_get_a_new_generation() {
        let t = InodeTable::new(2);
        let (b1, b2) = (born(1), born(2));
        assert_eq!(t.remember(10, ROOT, OsStr::new("old"), Some(b1)), 0);
        // A hard link to the same file keeps the generation and both names.
        assert_eq!(t.remember(10, ROOT, OsStr::new("link"), Some(b1)), 0);
        t.unlinked(10, ROOT, OsStr::new("old"));
        t.unlinked(10, ROOT, OsStr::new("link"));
        // The kernel still holds the old node when a new file gets the same number.
        assert_eq!(t.remember(10, ROOT, OsStr::new("new"), Some(b2)), 1);
        assert_eq!(t.path(10).unwrap(), PathBuf::from("new"));
        t.remember(10, ROOT, OsStr::new("old"), Some(b2));
        t.unlinked(10, ROOT, OsStr::new("old"));
        assert_eq!(t.path(10).unwrap(), PathBuf::from("new"));
        // Without birth times nothing changes.
        assert_eq!(t.remember(10, ROOT, OsStr::new("new"), None), 1);
    }

    fn born(s: u64) -> SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(s)
    }
}
