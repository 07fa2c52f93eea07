//! Cloud-side moves: which records gone from the cloud are items that moved there, and to
//! where. Pure reading of the walk and the journal; `apply.rs` carries the moves out.
//!
//! A folder gone from the cloud (A) and a folder new there (B) are one move when
//! - the cloud gives ids ([`CloudEntry::file_id`]) and B carries the id recorded for A, with
//!   at least one file below B agreeing with one below A (by id or by ETag and size) when A
//!   held files: an id alone could be a reused inode; or
//! - every file below B matches exactly one file below A by ETag and size (two files of A
//!   with one ETag are told apart only by an identical path below the folder, and only for a
//!   strong ETag), no file of A is matched twice, more than half of A's files are matched,
//!   and no other pair of folders matches the same way: the pairing is unique.
//!
//! ETags that are empty never pair; weak ones (as the listing shows them now) pair only when
//! no other file, gone or new, carries the same. A file gone from the cloud is a file move when exactly one new file
//! carries its ETag and size and no other gone file does, or when the cloud's id says so
//! (with the same ETag and size). Anything else is merged file by file, as deletes and new
//! files: nothing is ever paired on a guess.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Puller, free, tag};
use crate::cloud::{self, CloudEntry};
use crate::journal::{NodeKind, NodeRecord, NodeState};
use crate::sync::SyncResult;
use crate::sync::sets::SyncSet;

/// A file's ETag (weak marker stripped) and size: what pairs files without ids.
type Key<'a> = (&'a str, u64);

/// How often each key occurs, and whether a weak form of it was seen.
#[derive(Default)]
struct Seen {
    gone: usize,
    new: usize,
    weak: bool,
}

/// The keys of the gone and the new files, counted, for telling which can pair.
struct Keys<'a> {
    seen: HashMap<Key<'a>, Seen>,
}

impl<'a> Keys<'a> {
    fn key_of(etag: &'a Option<String>, size: u64) -> Option<(Key<'a>, bool)> {
        let t = tag(etag)?;
        let t = t.trim();
        if t.is_empty() || t == "\"\"" {
            return None;
        }
        let weak = etag.as_deref().is_some_and(|e| e.starts_with("W/"));
        Some(((t, size), weak))
    }

    /// True when files may pair by `k`: never on a weak ETag that another file shares.
    fn pairs(&self, k: &Key<'a>) -> bool {
        self.seen
            .get(k)
            .is_some_and(|s| !s.weak || (s.gone <= 1 && s.new <= 1))
    }

    fn unique(&self, k: &Key<'a>) -> bool {
        self.seen.get(k).is_some_and(|s| s.gone == 1 && s.new == 1)
    }
}

/// The range of `found` strictly below `dir`.
fn below<'a, V>(
    map: &'a BTreeMap<String, V>,
    dir: &str,
) -> impl Iterator<Item = (&'a String, &'a V)> {
    let lo = format!("{dir}/");
    let hi = format!("{dir}0");
    map.range(lo..hi)
}

/// `path` (at or below `from`) as it is below `to`.
pub(super) fn rebase(path: &str, from: &str, to: &str) -> String {
    format!("{to}{}", &path[from.len()..])
}

/// What the walk found for move detection, indexed once.
pub(super) struct Index<'a> {
    found: &'a BTreeMap<String, CloudEntry>,
    keys: Keys<'a>,
    /// New files (no record; their folder has none either, or they are free) by key.
    new_by_key: HashMap<Key<'a>, Vec<&'a str>>,
    /// Found items by the cloud's id; `None` for an id shown twice (never trusted).
    by_id: HashMap<&'a str, Option<&'a str>>,
    /// Gone records by path, in path order.
    gone: BTreeMap<String, &'a NodeRecord>,
}

/// Indexes the walk and the gone records for move detection.
pub(super) fn index<'a>(
    gone: &'a HashMap<String, NodeRecord>,
    found: &'a BTreeMap<String, CloudEntry>,
) -> Index<'a> {
    let mut keys = Keys {
        seen: HashMap::new(),
    };
    let mut new_by_key: HashMap<Key<'a>, Vec<&'a str>> = HashMap::new();
    let mut by_id: HashMap<&'a str, Option<&'a str>> = HashMap::new();
    for (p, e) in found {
        if let Some(id) = e.file_id.as_deref() {
            by_id
                .entry(id)
                .and_modify(|v| *v = None)
                .or_insert(Some(p.as_str()));
        }
        if e.is_dir {
            continue;
        }
        if let Some((k, weak)) = Keys::key_of(&e.etag, e.size) {
            let s = keys.seen.entry(k).or_default();
            s.new += 1;
            s.weak |= weak;
            new_by_key.entry(k).or_default().push(p.as_str());
        }
    }
    let mut sorted = BTreeMap::new();
    // A record kept as DELETED_ON_CLOUD stays where it is until a sync is requested: it
    // is no move's source.
    for (p, r) in gone.iter().filter(|(_, r)| r.state != NodeState::Failed) {
        // Whether a tag is weak is the cloud's word now: a record's tag was weak only for
        // the second after its write (Apache), and the listing shows it strong since.
        if r.kind == NodeKind::File
            && let Some((k, _)) = Keys::key_of(&r.etag, r.size)
        {
            keys.seen.entry(k).or_default().gone += 1;
        }
        sorted.insert(p.clone(), r);
    }
    Index {
        found,
        keys,
        new_by_key,
        by_id,
        gone: sorted,
    }
}

impl Puller {
    /// True when `p` is a found path free for a move to land on: no record, nothing
    /// on-premise, not unsynced.
    fn landing(&self, p: &str) -> SyncResult<bool> {
        Ok(!self.parts.scope.is_unsynced(p)
            && self.parts.journal.node(p)?.is_none()
            && free(&self.parts.onprem, p))
    }

    /// Folder moves: pairs of a folder gone from the cloud and a new one, each of which can
    /// be moved on-premise in one rename. Outer folders first; a folder inside a moved one
    /// moves with it.
    pub(super) fn folder_moves(
        &self,
        set: &SyncSet,
        ix: &Index<'_>,
        rewritten: &[String],
    ) -> SyncResult<Vec<(String, String)>> {
        let gone_dirs: Vec<&NodeRecord> = ix
            .gone
            .values()
            .copied()
            .filter(|r| r.kind == NodeKind::Dir && r.path != set.local)
            .collect();
        if gone_dirs.is_empty() {
            return Ok(Vec::new());
        }
        // Folders new in the cloud that a move could land on.
        let mut new_dirs: HashSet<&str> = HashSet::new();
        for (p, e) in ix.found {
            if e.is_dir
                && p != &set.local
                && self.landing(p)?
                && !self.parts.journal.has_nodes_below(p)?
            {
                new_dirs.insert(p.as_str());
            }
        }
        if new_dirs.is_empty() {
            return Ok(Vec::new());
        }
        let mut by_id_pairs: Vec<(String, String)> = Vec::new();
        let mut tag_pairs: Vec<(String, String)> = Vec::new();
        for a in &gone_dirs {
            let from = a.path.as_str();
            if rewritten.iter().any(|p| cloud::is_within(p, from)) {
                continue; // a push rewrote something below during the walk: the next pull
            }
            if !self
                .parts
                .onprem
                .stat(from)
                .ok()
                .flatten()
                .is_some_and(|m| m.is_dir())
            {
                continue; // nothing to move on-premise: merged as it is
            }
            // By the cloud's id.
            if let Some(id) = self.parts.journal.file_id(from)?
                && let Some(Some(to)) = ix.by_id.get(id.as_str())
                && new_dirs.contains(to)
                && self.id_confirmed(ix, from, to)?
            {
                by_id_pairs.push((from.to_string(), to.to_string()));
                continue;
            }
            // By the ETags of the contents.
            let files: Vec<(&str, Key<'_>)> = below(&ix.gone, from)
                .filter(|(_, r)| r.kind == NodeKind::File)
                .filter_map(|(p, r)| {
                    Keys::key_of(&r.etag, r.size).map(|(k, _)| (&p[from.len() + 1..], k))
                })
                .collect();
            let mut candidates: HashSet<&str> = HashSet::new();
            for (rel, k) in &files {
                for p in ix.new_by_key.get(k).into_iter().flatten() {
                    if let Some(to) = p
                        .strip_suffix(rel)
                        .and_then(|s| s.strip_suffix('/'))
                        .filter(|to| new_dirs.contains(to))
                    {
                        candidates.insert(to);
                    }
                }
            }
            for to in candidates {
                if self.contents_match(ix, from, to, &files) {
                    tag_pairs.push((from.to_string(), to.to_string()));
                }
            }
        }
        // A pairing by ETags stands only when neither folder pairs with another.
        let count = |f: &dyn Fn(&(String, String)) -> &str, x: &str| {
            tag_pairs.iter().filter(|p| f(p) == x).count()
        };
        let unique: Vec<(String, String)> = tag_pairs
            .iter()
            .filter(|(a, b)| count(&|p| &p.0, a) == 1 && count(&|p| &p.1, b) == 1)
            .cloned()
            .collect();
        let mut pairs = by_id_pairs;
        for p in unique {
            if !pairs.iter().any(|q| q.0 == p.0 || q.1 == p.1) {
                pairs.push(p);
            }
        }
        // Outer folders first; one inside a folder that moves goes with it.
        pairs.sort();
        let mut chosen: Vec<(String, String)> = Vec::new();
        for (a, b) in pairs {
            if chosen
                .iter()
                .any(|(ca, cb)| cloud::is_within(&a, ca) || cloud::is_within(&b, cb))
            {
                continue;
            }
            chosen.push((a, b));
        }
        // Where one move lands inside another's target, the outer one first.
        chosen.sort_by(|x, y| x.1.cmp(&y.1));
        Ok(chosen)
    }

    /// An id pairing of the folders `from` (gone) and `to` (new) stands when `from` held no
    /// file, or some file below `to` is one of the files below `from` (same id, or same ETag
    /// and size): an id alone may be a number the cloud gave out again.
    fn id_confirmed(&self, ix: &Index<'_>, from: &str, to: &str) -> SyncResult<bool> {
        let files: Vec<&NodeRecord> = below(&ix.gone, from)
            .map(|(_, r)| *r)
            .filter(|r| r.kind == NodeKind::File)
            .collect();
        if files.is_empty() {
            return Ok(true);
        }
        let keys: HashSet<Key<'_>> = files
            .iter()
            .filter_map(|r| Keys::key_of(&r.etag, r.size).map(|(k, _)| k))
            .filter(|k| ix.keys.pairs(k))
            .collect();
        let mut ids: Option<HashSet<String>> = None;
        for (_, e) in below(ix.found, to).filter(|(_, e)| !e.is_dir) {
            if Keys::key_of(&e.etag, e.size).is_some_and(|(k, _)| keys.contains(&k)) {
                return Ok(true);
            }
            if let Some(id) = &e.file_id {
                if ids.is_none() {
                    let mut s = HashSet::new();
                    for r in &files {
                        if let Some(i) = self.parts.journal.file_id(&r.path)? {
                            s.insert(i);
                        }
                    }
                    ids = Some(s);
                }
                if ids.as_ref().is_some_and(|s| s.contains(id)) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// True when every file below the new folder `to` matches exactly one of the gone files
    /// `files` (relative path below `from`, key), none twice, and more than half of them are
    /// matched.
    fn contents_match(
        &self,
        ix: &Index<'_>,
        from: &str,
        to: &str,
        files: &[(&str, Key<'_>)],
    ) -> bool {
        let _ = from;
        let mut by_key: HashMap<Key<'_>, Vec<&str>> = HashMap::new();
        for (rel, k) in files {
            by_key.entry(*k).or_default().push(rel);
        }
        let mut used: HashSet<&str> = HashSet::new();
        let mut any = false;
        for (p, e) in below(ix.found, to) {
            if e.is_dir {
                continue;
            }
            any = true;
            let Some((k, weak)) = Keys::key_of(&e.etag, e.size) else {
                return false;
            };
            if !ix.keys.pairs(&k) {
                return false;
            }
            let rel = &p[to.len() + 1..];
            let Some(cands) = by_key.get(&k) else {
                return false;
            };
            let pick = match cands.as_slice() {
                [one] => *one,
                many if !weak && many.contains(&rel) => rel,
                _ => return false,
            };
            if !used.insert(pick) {
                return false;
            }
        }
        any && used.len() * 2 > files.len()
    }

    /// File moves: a gone file's path to the new path of the same file. By the cloud's id
    /// (with the same ETag and size), or by an ETag and size that exactly one gone file and
    /// exactly one new file carry. The target is free on-premise and has no record.
    pub(super) fn file_moves(
        &self,
        ix: &Index<'_>,
        held: &[String],
    ) -> SyncResult<HashMap<String, String>> {
        let mut moved: HashMap<String, String> = HashMap::new();
        let mut taken: HashSet<&str> = HashSet::new();
        for r in ix.gone.values() {
            if r.kind != NodeKind::File {
                continue;
            }
            let Some((k, _)) = Keys::key_of(&r.etag, r.size) else {
                continue;
            };
            let same = |p: &str| {
                ix.found.get(p).is_some_and(|e| {
                    !e.is_dir && Keys::key_of(&e.etag, e.size).map(|x| x.0) == Some(k)
                })
            };
            let mut target = None;
            if let Some(id) = self.parts.journal.file_id(&r.path)?
                && let Some(Some(p)) = ix.by_id.get(id.as_str())
                && same(p)
            {
                target = Some(*p);
            }
            if target.is_none() && ix.keys.unique(&k) && ix.keys.pairs(&k) {
                target = ix.new_by_key.get(&k).and_then(|v| v.first().copied());
            }
            let Some(to) = target else { continue };
            if held.iter().any(|h| cloud::is_within(to, h))
                || taken.contains(to)
                || !self.landing(to)?
            {
                continue;
            }
            taken.insert(to);
            moved.insert(r.path.clone(), to.to_string());
        }
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_etags_never_pair_and_weak_ones_only_alone() {
        assert!(Keys::key_of(&None, 1).is_none());
        assert!(Keys::key_of(&Some(String::new()), 1).is_none());
        assert!(Keys::key_of(&Some("\"\"".into()), 1).is_none());
        assert!(Keys::key_of(&Some("W/\"\"".into()), 1).is_none());
        let strong = Some("\"s\"".to_string());
        let weak = Some("W/\"w\"".to_string());
        let (ks, w) = Keys::key_of(&strong, 3).unwrap();
        assert!(!w);
        let (kw, w) = Keys::key_of(&weak, 3).unwrap();
        assert!(w && kw == ("\"w\"", 3));
        let mut keys = Keys {
            seen: HashMap::new(),
        };
        keys.seen.insert(
            ks,
            Seen {
                gone: 2,
                new: 2,
                weak: false,
            },
        );
        keys.seen.insert(
            kw,
            Seen {
                gone: 1,
                new: 2,
                weak: true,
            },
        );
        assert!(keys.pairs(&ks), "a strong ETag shared may pair by path");
        assert!(!keys.unique(&ks));
        assert!(!keys.pairs(&kw), "a weak ETag shared never pairs");
        keys.seen.insert(
            kw,
            Seen {
                gone: 1,
                new: 1,
                weak: true,
            },
        );
        assert!(keys.pairs(&kw) && keys.unique(&kw));
        assert!(!keys.pairs(&("\"other\"", 3)));
    }

    fn entry(path: &str, id: &str, etag: &str) -> CloudEntry {
        CloudEntry {
            path: path.into(),
            is_dir: false,
            size: 1,
            mtime: None,
            etag: Some(etag.into()),
            file_id: Some(id.into()),
        }
    }

    #[test]
    fn an_id_a_server_shows_twice_is_never_trusted() {
        let mut found = BTreeMap::new();
        for (p, id, t) in [
            ("x", "7", "\"1\""),
            ("y", "7", "\"2\""),
            ("z", "8", "\"2\""),
        ] {
            found.insert(p.to_string(), entry(p, id, t));
        }
        let gone = HashMap::new();
        let ix = index(&gone, &found);
        assert_eq!(ix.by_id.get("7"), Some(&None));
        assert_eq!(ix.by_id.get("8"), Some(&Some("z")));
        assert_eq!(ix.new_by_key[&("\"2\"", 1)], vec!["y", "z"]);
    }

    #[test]
    fn rebase_keeps_what_lies_below() {
        assert_eq!(rebase("a/b/c", "a", "x/y"), "x/y/b/c");
        assert_eq!(rebase("a", "a", "z"), "z");
    }
}
