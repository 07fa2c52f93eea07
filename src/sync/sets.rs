//! Sync sets: which on-premise folders or files pair with which cloud folders, and how.
//!
//! A path belongs to the set with the longest matching on-premise path. Items outside every
//! set are `unsynced`: they live in the mount and never reach the cloud. With no set
//! configured, the whole mount is one set paired with the cloud URL's root.

use serde::Deserialize;

use super::reconcile::Winner;
use crate::paths;

/// One `[[sync_set]]` table as written in the config file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SetConfig {
    /// A folder or a single file under the on-premise folder (relative, or absolute inside it).
    pub path: String,
    /// The cloud folder (or file, for a file set) under the cloud URL; defaults to `path`.
    pub cloud: Option<String>,
    /// Sync the whole subtree (default), or only the files directly in the folder.
    pub include_subfolders: Option<bool>,
    /// On-premise copies are read-only through the mount; only the cloud copy is edited.
    pub lock_onprem: Option<bool>,
    /// Deleting on-premise deletes the cloud copy (default on).
    pub cloud_delete: Option<bool>,
    /// Deleting in the cloud deletes the on-premise copy (default off).
    pub onprem_delete: Option<bool>,
    /// `cloud-wins` (default) or `onprem-wins`.
    pub conflict: Option<String>,
}

/// A validated sync set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSet {
    /// On-premise path, relative, `""` for the whole mount.
    pub local: String,
    /// Cloud path, relative to the cloud URL.
    pub cloud: String,
    /// A single file rather than a folder.
    pub is_file: bool,
    /// Whole subtree, or direct children only.
    pub include_subfolders: bool,
    /// Read-only on-premise.
    pub lock_onprem: bool,
    /// Propagate on-premise deletes.
    pub cloud_delete: bool,
    /// Propagate cloud deletes.
    pub onprem_delete: bool,
    /// Who wins a conflict.
    pub conflict: Winner,
}

impl SyncSet {
    /// The whole mount as one set, with the default options.
    pub fn whole() -> SyncSet {
        SyncSet {
            local: String::new(),
            cloud: String::new(),
            is_file: false,
            include_subfolders: true,
            lock_onprem: false,
            cloud_delete: true,
            onprem_delete: false,
            conflict: Winner::Cloud,
        }
    }

    /// True when `path` is covered by this set.
    pub fn covers(&self, path: &str) -> bool {
        if self.is_file {
            return path == self.local;
        }
        if !paths::is_within(path, &self.local) {
            return false;
        }
        if self.include_subfolders || path == self.local {
            return true;
        }
        // Only the direct children of the folder.
        paths::parent(path) == self.local
    }

    /// The cloud path of an on-premise path in this set.
    pub fn to_cloud(&self, path: &str) -> String {
        let rest = path[self.local.len()..].trim_start_matches('/');
        if rest.is_empty() {
            self.cloud.clone()
        } else {
            paths::join(&self.cloud, rest)
        }
    }

    /// The on-premise path of a cloud path in this set.
    pub fn to_local(&self, cloud_path: &str) -> String {
        let rest = cloud_path[self.cloud.len()..].trim_start_matches('/');
        if rest.is_empty() {
            self.local.clone()
        } else {
            paths::join(&self.local, rest)
        }
    }
}

/// All sync sets of a mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSets {
    sets: Vec<SyncSet>,
}

fn clean(p: &str, what: &str, onprem: &std::path::Path) -> anyhow::Result<String> {
    let mut p = p.trim().to_string();
    let root = onprem.to_string_lossy();
    if let Some(rest) = p.strip_prefix(root.as_ref()) {
        p = rest.to_string();
    } else if p.starts_with('/') && what == "path" {
        anyhow::bail!("sync_set path {p:?} is not inside the on-premise folder {root}");
    }
    let p = p.trim_matches('/').to_string();
    if !paths::is_plain(&p) {
        anyhow::bail!("sync_set {what} {p:?} must be a plain relative path");
    }
    Ok(p)
}

impl SyncSets {
    /// The whole mount as one set.
    pub fn whole() -> SyncSets {
        SyncSets {
            sets: vec![SyncSet::whole()],
        }
    }

    /// Validates the config tables. No table means the whole mount.
    pub fn from_config(tables: &[SetConfig], onprem: &std::path::Path) -> anyhow::Result<SyncSets> {
        if tables.is_empty() {
            return Ok(SyncSets::whole());
        }
        let mut sets = Vec::new();
        for t in tables {
            let local = clean(&t.path, "path", onprem)?;
            let cloud = clean(t.cloud.as_deref().unwrap_or(&local), "cloud", onprem)?;
            let conflict = match t.conflict.as_deref().unwrap_or("cloud-wins") {
                "cloud-wins" => Winner::Cloud,
                "onprem-wins" => Winner::Onprem,
                other => anyhow::bail!(
                    "sync_set {local:?}: conflict = {other:?} is unknown; use \"cloud-wins\" or \"onprem-wins\""
                ),
            };
            let meta = std::fs::metadata(onprem.join(&local)).map_err(|_| {
                anyhow::anyhow!(
                    "sync_set path {local:?} does not exist in the on-premise folder {}; create it first",
                    onprem.display()
                )
            })?;
            let is_file = meta.is_file();
            if sets.iter().any(|s: &SyncSet| s.local == local) {
                anyhow::bail!("sync_set {local:?} is configured twice");
            }
            if let Some(o) = sets.iter().find(|s: &&SyncSet| {
                paths::is_within(&s.cloud, &cloud) || paths::is_within(&cloud, &s.cloud)
            }) {
                anyhow::bail!(
                    "sync_sets {:?} and {local:?} share the cloud folder {cloud:?}; each set needs its own",
                    o.local
                );
            }
            sets.push(SyncSet {
                local,
                cloud,
                is_file,
                include_subfolders: t.include_subfolders.unwrap_or(true),
                lock_onprem: t.lock_onprem.unwrap_or(false),
                cloud_delete: t.cloud_delete.unwrap_or(true),
                onprem_delete: t.onprem_delete.unwrap_or(false),
                conflict,
            });
        }
        // Longest on-premise path first, so nested sets win over their parents.
        sets.sort_by_key(|s| std::cmp::Reverse(s.local.len()));
        Ok(SyncSets { sets })
    }

    /// The set `path` belongs to, if any.
    pub fn set_for(&self, path: &str) -> Option<&SyncSet> {
        // The longest set that contains the path decides, even when its options exclude it.
        let s = self.sets.iter().find(|s| {
            if s.is_file {
                path == s.local
            } else {
                paths::is_within(path, &s.local)
            }
        })?;
        s.covers(path).then_some(s)
    }

    /// The cloud path of `path`, if it is synced.
    pub fn to_cloud(&self, path: &str) -> Option<String> {
        self.set_for(path).map(|s| s.to_cloud(path))
    }

    /// Every set.
    pub fn iter(&self) -> impl Iterator<Item = &SyncSet> {
        self.sets.iter()
    }

    /// True when the whole mount is one set at the cloud root.
    pub fn is_whole(&self) -> bool {
        self.sets.len() == 1 && self.sets[0].local.is_empty() && self.sets[0].cloud.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(path: &str, cloud: Option<&str>) -> SetConfig {
        SetConfig {
            path: path.into(),
            cloud: cloud.map(str::to_string),
            include_subfolders: None,
            lock_onprem: None,
            cloud_delete: None,
            onprem_delete: None,
            conflict: None,
        }
    }

    #[test]
    fn mapping() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("projects/a")).unwrap();
        std::fs::create_dir_all(d.path().join("flat")).unwrap();
        std::fs::write(d.path().join("report.pdf"), b"x").unwrap();
        let mut flat = t("flat", Some("Flat"));
        flat.include_subfolders = Some(false);
        let sets = SyncSets::from_config(
            &[
                t("projects/a", Some("Shared/A")),
                t("report.pdf", Some("Reports/report.pdf")),
                flat,
            ],
            d.path(),
        )
        .unwrap();
        assert_eq!(
            sets.to_cloud("projects/a/x/y.txt").as_deref(),
            Some("Shared/A/x/y.txt")
        );
        assert_eq!(sets.to_cloud("projects/a").as_deref(), Some("Shared/A"));
        assert_eq!(sets.to_cloud("projects/b.txt"), None, "outside every set");
        assert_eq!(
            sets.to_cloud("report.pdf").as_deref(),
            Some("Reports/report.pdf")
        );
        assert_eq!(sets.to_cloud("report.pdf2"), None);
        assert_eq!(sets.to_cloud("flat/f.txt").as_deref(), Some("Flat/f.txt"));
        assert_eq!(
            sets.to_cloud("flat/sub/f.txt"),
            None,
            "include_subfolders = false"
        );
        let a = sets.set_for("projects/a/q").unwrap();
        assert_eq!(a.to_local("Shared/A/q/r"), "projects/a/q/r");
        assert!(SyncSets::whole().is_whole());
        assert_eq!(SyncSets::whole().to_cloud("x/y").as_deref(), Some("x/y"));
    }

    #[test]
    fn bad_sets() {
        let d = tempfile::tempdir().unwrap();
        for x in ["a", "b"] {
            std::fs::create_dir(d.path().join(x)).unwrap();
        }
        let e = SyncSets::from_config(&[t("missing", None)], d.path()).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        let mut c = t("a", None);
        c.conflict = Some("newest-wins".into());
        assert!(SyncSets::from_config(&[c], d.path()).is_err());
        assert!(SyncSets::from_config(&[t("../x", None)], d.path()).is_err());
        assert!(SyncSets::from_config(&[t("/elsewhere", None)], d.path()).is_err());
        assert!(
            SyncSets::from_config(&[t("a", Some("c")), t("b", Some("c/d"))], d.path()).is_err()
        );
        let abs = format!("{}/a", d.path().display());
        assert_eq!(
            SyncSets::from_config(&[t(&abs, None)], d.path())
                .unwrap()
                .to_cloud("a/x")
                .as_deref(),
            Some("a/x")
        );
    }
}
