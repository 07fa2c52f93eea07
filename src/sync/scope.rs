//! The scope of the sync: which on-premise paths reach the cloud, and where they go there.
//!
//! Three things decide it: the sync sets (a path belongs to the set with the longest matching
//! on-premise path), the ignore list, and the folders unsynced at run time. The engine, the
//! pusher and the puller all ask one shared [`Scope`], so the rule is written once and an
//! unsync seen by one is seen by all.

use std::sync::{Arc, Mutex, MutexGuard};

use super::sets::{SyncSet, SyncSets};
use crate::ignore::Ignore;
use crate::paths::is_within;

/// The sync sets, the ignore list and the unsynced folders, shared (behind an `Arc`) by the
/// engine, the pusher and the puller.
#[derive(Debug)]
pub struct Scope {
    /// Which folders sync where.
    pub sets: SyncSets,
    /// Excluded names.
    pub ignore: Ignore,
    /// Paths unsynced at run time, kept in the journal by the engine.
    unsynced: Mutex<Vec<String>>,
}

impl Scope {
    /// A scope over `sets` and `ignore`, with the folders `unsynced` taken out of sync.
    pub fn new(sets: SyncSets, ignore: Ignore, unsynced: Vec<String>) -> Arc<Scope> {
        Arc::new(Scope {
            sets,
            ignore,
            unsynced: Mutex::new(unsynced),
        })
    }

    /// The list of unsynced folders, locked, for the engine to change and persist.
    pub fn unsynced(&self) -> MutexGuard<'_, Vec<String>> {
        self.unsynced.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when `path` lies in a folder unsynced at run time.
    pub fn is_unsynced(&self, path: &str) -> bool {
        self.unsynced().iter().any(|u| is_within(path, u))
    }

    /// The set that `path` syncs in: `None` when it is excluded, unsynced or outside every
    /// set.
    pub fn synced_set(&self, path: &str) -> Option<&SyncSet> {
        if self.ignore.path_excluded(path) || self.is_unsynced(path) {
            return None;
        }
        self.sets.set_for(path)
    }

    /// True when `path` reaches the cloud: not excluded, in a set, not unsynced.
    pub fn syncable(&self, path: &str) -> bool {
        self.synced_set(path).is_some()
    }

    /// The cloud path of a synced on-premise path, and its set; `None` when `path` does not
    /// reach the cloud.
    pub fn target(&self, path: &str) -> Option<(String, &SyncSet)> {
        let set = self.synced_set(path)?;
        Some((set.to_cloud(path), set))
    }

    /// True when `set` is the set that decides for `path` (not a set nested inside it).
    pub fn owns(&self, set: &SyncSet, path: &str) -> bool {
        self.sets
            .set_for(path)
            .is_some_and(|s| s.local == set.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::sets::SetConfig;

    fn set(path: &str, cloud: &str) -> SetConfig {
        SetConfig {
            path: path.into(),
            cloud: Some(cloud.into()),
            include_subfolders: None,
            lock_onprem: None,
            cloud_delete: None,
            onprem_delete: None,
            conflict: None,
        }
    }

    fn scope(unsynced: &[&str]) -> (tempfile::TempDir, Arc<Scope>) {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("projects/inner")).unwrap();
        let sets = SyncSets::from_config(
            &[set("projects", "Shared"), set("projects/inner", "Inner")],
            d.path(),
        )
        .unwrap();
        let ignore = Ignore::new(&["*.bak".to_string()]).unwrap();
        let unsynced = unsynced.iter().map(|s| s.to_string()).collect();
        (d, Scope::new(sets, ignore, unsynced))
    }

    #[test]
    fn synced_paths_and_where_they_go() {
        let (_d, s) = scope(&[]);
        assert!(s.syncable("projects/a.txt"));
        assert_eq!(
            s.target("projects/a.txt")
                .map(|(c, set)| (c, set.local.clone())),
            Some(("Shared/a.txt".to_string(), "projects".to_string()))
        );
        assert_eq!(
            s.target("projects/inner/b.txt").map(|(c, _)| c),
            Some("Inner/b.txt".to_string()),
            "the nested set decides"
        );
        assert!(!s.syncable("elsewhere.txt"), "outside every set");
        assert_eq!(s.target("elsewhere.txt").map(|(c, _)| c), None);
        assert!(!s.syncable("projects/old.bak"), "ignored");
        assert!(!s.syncable("projects/x.bak/y.txt"), "under an ignored name");
        assert_eq!(s.target("projects/old.bak").map(|(c, _)| c), None);
    }

    #[test]
    fn unsynced_folders_are_out_of_scope_until_taken_back() {
        let (_d, s) = scope(&["projects/old"]);
        assert!(s.is_unsynced("projects/old"));
        assert!(s.is_unsynced("projects/old/a.txt"));
        assert!(
            !s.is_unsynced("projects/older"),
            "a sibling with a longer name"
        );
        assert!(!s.syncable("projects/old/a.txt"));
        assert_eq!(s.target("projects/old/a.txt").map(|(c, _)| c), None);
        s.unsynced().clear();
        assert!(
            s.syncable("projects/old/a.txt"),
            "seen at once by every holder"
        );
    }

    #[test]
    fn a_set_owns_only_what_no_nested_set_claims() {
        let (_d, s) = scope(&[]);
        let outer = s.sets.set_for("projects").unwrap().clone();
        let inner = s.sets.set_for("projects/inner").unwrap().clone();
        assert!(s.owns(&outer, "projects/a.txt"));
        assert!(!s.owns(&outer, "projects/inner/b.txt"));
        assert!(s.owns(&inner, "projects/inner/b.txt"));
        assert!(!s.owns(&inner, "elsewhere.txt"));
    }
}
