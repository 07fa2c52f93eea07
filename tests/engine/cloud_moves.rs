//! Moves made in the cloud (SEMANTICS, "Cloud-side moves"): a folder or a file moved or
//! renamed in the cloud becomes one rename on-premise, with no content fetched again, when it
//! can be told for sure (by the cloud's ids, or by the ETags of what the folder holds), and is
//! merged file by file otherwise, never losing anything.

use std::os::unix::fs::MetadataExt;

use cloudsync::cloud::mem::Method;
use cloudsync::status::Status;
use cloudsync::sync::sets::SetConfig;

use crate::fake::{Backend, FakeFolder, Options};

/// Every cloud the moves are told on: ids (`file://` inodes, `MemIds`), unique ETags (the
/// in-memory clouds), content ETags (`MemContent`, as SabreDAV).
const MOVES: [Backend; 6] = [
    Backend::Dir,
    Backend::Mem,
    Backend::MemFolderEtags,
    Backend::MemTrees,
    Backend::MemIds,
    Backend::MemContent,
];

const TREE: &[(&str, &str)] = &[
    ("d/a.txt", "a"),
    ("d/sub/b.txt", "b"),
    ("d/sub/c.txt", "c"),
    ("d/sub/deeper/e.txt", "e"),
    ("top.txt", "t"),
];

fn synced(b: Backend, init: &[(&str, &str)]) -> FakeFolder {
    let ff = FakeFolder::new(Options::new(b), init);
    ff.sync();
    ff.assert_converged(false);
    ff
}

fn ino(ff: &FakeFolder, p: &str) -> u64 {
    std::fs::metadata(ff.path(p)).unwrap().ino()
}

/// The cloud requests of kind `m` since `from` (in-memory clouds; none for `file://`).
fn sent(ff: &FakeFolder, from: usize, m: Method) -> usize {
    ff.mem.as_ref().map_or(0, |c| {
        c.requests()[from..].iter().filter(|(x, _)| *x == m).count()
    })
}

fn log_len(ff: &FakeFolder) -> usize {
    ff.mem.as_ref().map_or(0, |c| c.requests().len())
}

/// Moves `from` to `to` in the cloud and checks that one sync makes it one rename on-premise
/// (the folder keeps its inode), with nothing fetched and nothing sent back.
fn moved_as_one(ff: &FakeFolder, b: Backend, from: &str, to: &str) {
    let before = ino(ff, from);
    let log = log_len(ff);
    let gets = ff.gets();
    assert!(ff.cloud_rename(from, to));
    ff.sync();
    ff.assert_converged(false);
    assert!(!ff.path(from).exists(), "{b:?}\n{}", ff.describe());
    assert_eq!(ino(ff, to), before, "{b:?}: one rename, not a new folder");
    assert_eq!(ff.gets(), gets, "{b:?}: nothing fetched again");
    assert_eq!(sent(ff, log, Method::Get), 0, "{b:?}");
    assert_eq!(sent(ff, log, Method::Put), 0, "{b:?}: nothing pushed back");
    assert_eq!(sent(ff, log, Method::Delete), 0, "{b:?}");
    assert!(ff.conflict_copies().is_empty(), "{b:?}");
}

#[test]
fn a_folder_renamed_in_the_cloud_is_one_rename_on_premise() {
    for b in MOVES {
        let ff = synced(b, TREE);
        moved_as_one(&ff, b, "d", "renamed");
        assert_eq!(ff.read("renamed/sub/deeper/e.txt").as_deref(), Some("e"));
        assert_eq!(
            ff.status("renamed/sub/c.txt"),
            (Status::Synced, None),
            "{b:?}"
        );
        assert_eq!(ff.status("renamed").0, Status::Synced, "{b:?}");
        // The records moved along: an edit at the new name is an update of the cloud file.
        ff.write("renamed/sub/b.txt", "edited");
        ff.sync();
        ff.assert_converged(false);
        assert_eq!(
            ff.cloud_read("renamed/sub/b.txt").as_deref(),
            Some("edited")
        );
    }
}

#[test]
fn a_folder_moved_into_another_folder_is_one_rename_on_premise() {
    for b in MOVES {
        let ff = synced(b, &[TREE, &[("keep/k.txt", "k")]].concat());
        // Into a folder both sides know.
        moved_as_one(&ff, b, "d/sub", "keep/sub");
        assert_eq!(ff.read("keep/sub/b.txt").as_deref(), Some("b"), "{b:?}");
        // Into folders new in the cloud.
        moved_as_one(&ff, b, "keep", "x/y/keep");
        assert_eq!(ff.read("x/y/keep/sub/c.txt").as_deref(), Some("c"));
        assert_eq!(ff.read("x/y/keep/k.txt").as_deref(), Some("k"));
    }
}

#[test]
fn a_file_moved_in_the_cloud_is_renamed_on_premise() {
    for b in MOVES {
        let ff = synced(b, TREE);
        let before = ino(&ff, "d/sub/b.txt");
        let gets = ff.gets();
        assert!(ff.cloud_rename("d/sub/b.txt", "top-b.txt"));
        ff.sync();
        ff.assert_converged(false);
        assert_eq!(ino(&ff, "top-b.txt"), before, "{b:?}");
        assert!(!ff.path("d/sub/b.txt").exists());
        assert_eq!(ff.gets(), gets, "{b:?}");
    }
}

#[test]
fn a_folder_moved_and_changed_in_the_cloud_moves_and_fetches_only_the_change() {
    for b in MOVES {
        let ff = synced(b, TREE);
        assert!(ff.cloud_rename("d", "e"));
        ff.cloud_write("e/new.txt", "new in the cloud");
        ff.cloud_remove("e/sub/c.txt");
        let gets = ff.gets();
        ff.sync();
        ff.assert_converged(true);
        assert_eq!(ff.read("e/new.txt").as_deref(), Some("new in the cloud"));
        assert_eq!(ff.read("e/sub/b.txt").as_deref(), Some("b"));
        // A file new in the moved folder has no match in the old one, so the folder matches
        // by id only; by ETags it is merged file by file, as moves of each file.
        assert_eq!(ff.gets() - gets, 1, "{b:?}: only the new file is fetched");
        // What the cloud deleted meanwhile is kept on-premise, marked: below the folder that
        // moved (`e` by id; `e/sub` by ETags, since `e` holds a file `d` never had).
        let kept = "e/sub/c.txt";
        assert_eq!(
            ff.read(kept).as_deref(),
            Some("c"),
            "{b:?}\n{}",
            ff.describe()
        );
        assert_eq!(
            ff.status(kept).1.map(|e| e.starts_with("DELETED_ON_CLOUD")),
            Some(true),
            "{b:?}"
        );
    }
}

#[test]
fn a_local_edit_not_yet_heard_moves_with_the_folder_and_is_pushed_there() {
    for b in MOVES {
        let mut ff = synced(b, TREE);
        // Made straight in ONPREM: nothing is queued for it, only the records can tell.
        ff.write_as("d/sub/b.txt", "edited on-premise", false);
        assert!(ff.cloud_rename("d", "e"));
        ff.sync();
        assert_eq!(ff.read("e/sub/b.txt").as_deref(), Some("edited on-premise"));
        assert_eq!(
            ff.cloud_read("e/sub/b.txt").as_deref(),
            Some("edited on-premise"),
            "{b:?}: pushed at the new place\n{}",
            ff.describe()
        );
        ff.restart();
        ff.sync();
        ff.assert_converged(false);
        assert!(ff.conflict_copies().is_empty(), "{b:?}");
    }
}

#[test]
fn a_local_edit_queued_under_the_old_folder_is_never_lost() {
    for b in MOVES {
        let ff = synced(b, TREE);
        ff.write("d/sub/b.txt", "edited on-premise");
        assert!(ff.cloud_rename("d", "e"));
        // The pull comes first: the edit is still queued, so the move waits for it.
        ff.pull().unwrap().unwrap();
        assert_eq!(
            ff.read("d/sub/b.txt").as_deref(),
            Some("edited on-premise"),
            "{b:?}"
        );
        assert!(
            !ff.path("e").exists(),
            "{b:?}: nothing fetched while the move waits"
        );
        // The push finds the old path gone in the cloud and hands the file to the puller;
        // the folder then moves with the edit in it, and the edit is pushed at its new path.
        let before = ino(&ff, "d");
        ff.sync();
        ff.assert_converged(false);
        assert_eq!(ino(&ff, "e"), before, "{b:?}: one rename");
        assert_eq!(
            ff.cloud_read("e/sub/b.txt").as_deref(),
            Some("edited on-premise"),
            "{b:?}\n{}",
            ff.describe()
        );
        assert_eq!(ff.gets(), 0, "{b:?}");
        assert!(ff.conflict_copies().is_empty(), "{b:?}");
        assert_eq!(ff.read("e/sub/c.txt").as_deref(), Some("c"), "{b:?}");
    }
}

#[test]
fn a_folder_moved_onto_a_name_taken_on_premise_overwrites_nothing() {
    for b in MOVES {
        let mut ff = synced(b, TREE);
        // A folder of the target's name made straight in ONPREM, not pushed yet.
        ff.write_as("e/mine.txt", "mine", false);
        ff.write_as("e/a.txt", "my own a", false);
        assert!(ff.cloud_rename("d", "e"));
        ff.sync();
        assert_eq!(ff.read("e/mine.txt").as_deref(), Some("mine"), "{b:?}");
        // File by file: what is free on-premise is moved there, what is taken is a
        // conflict, with both kept.
        assert_eq!(ff.read("e/sub/b.txt").as_deref(), Some("b"), "{b:?}");
        let contents = ff.all_contents();
        for c in ["my own a", "a", "mine"] {
            assert!(
                contents.contains(&c.as_bytes().to_vec()),
                "{b:?}: lost {c:?}\n{}",
                ff.describe()
            );
        }
        ff.restart();
        ff.sync();
        ff.assert_converged(true);
        let contents = ff.all_contents();
        for c in ["my own a", "a", "mine", "b", "c", "e"] {
            assert!(
                contents.contains(&c.as_bytes().to_vec()),
                "{b:?}: lost {c:?}"
            );
        }
    }
}

#[test]
fn folders_matching_by_etags_more_than_one_way_are_merged_file_by_file() {
    // Content ETags: two copies of a folder share every ETag, so neither is "the" move.
    let ff = synced(Backend::MemContent, &[("d/a.txt", "a"), ("d/b.txt", "b")]);
    let m = ff.mem.as_ref().unwrap();
    for copy in ["e1", "e2"] {
        m.write(&format!("{copy}/a.txt"), b"a");
        m.write(&format!("{copy}/b.txt"), b"b");
    }
    assert!(m.remove("d"));
    let gets = ff.gets();
    ff.sync();
    ff.assert_converged(true);
    assert_eq!(ff.gets() - gets, 4, "both copies are downloaded");
    for p in ["e1/a.txt", "e2/b.txt"] {
        assert_eq!(ff.status(p).0, Status::Synced);
    }
    // The old folder is handled as deleted in the cloud: kept, and marked.
    assert_eq!(ff.read("d/a.txt").as_deref(), Some("a"));
    assert!(
        ff.status("d/a.txt")
            .1
            .is_some_and(|e| e.starts_with("DELETED_ON_CLOUD"))
    );
}

#[test]
fn a_folder_holding_less_than_half_of_the_old_one_is_no_move() {
    for b in [Backend::Mem, Backend::MemContent] {
        let ff = synced(b, &[("d/a.txt", "a"), ("d/b.txt", "b"), ("d/c.txt", "c")]);
        let m = ff.mem.as_ref().unwrap();
        // One file moved to a new folder, the rest deleted with the old one.
        assert!(m.rename_direct("d/a.txt", "e/a.txt"));
        assert!(m.remove("d"));
        let gets = ff.gets();
        ff.sync();
        ff.assert_converged(true);
        assert_eq!(ff.gets(), gets, "{b:?}: the file moved is moved");
        assert!(
            ff.path("d/b.txt").exists(),
            "{b:?}: kept as DELETED_ON_CLOUD"
        );
        assert_eq!(
            ff.status("d/b.txt")
                .1
                .map(|e| e.starts_with("DELETED_ON_CLOUD")),
            Some(true)
        );
        assert_eq!(ff.read("e/a.txt").as_deref(), Some("a"));
    }
}

#[test]
fn two_files_of_the_same_content_moved_apart_are_told_apart_by_their_path() {
    // Content ETags: a folder holding two identical files still moves as one, each file to
    // the same name below the new folder.
    let ff = synced(
        Backend::MemContent,
        &[
            ("d/one.txt", "same"),
            ("d/two.txt", "same"),
            ("d/x.txt", "x"),
        ],
    );
    moved_as_one(&ff, Backend::MemContent, "d", "e");
    // A single file whose ETag another gone file shares is not paired: fetched.
    let gets = ff.gets();
    let m = ff.mem.as_ref().unwrap();
    assert!(m.rename_direct("e/one.txt", "f1.txt"));
    assert!(m.rename_direct("e/two.txt", "f2.txt"));
    ff.sync();
    ff.assert_converged(true);
    assert_eq!(ff.gets() - gets, 2);
    assert_eq!(ff.read("f1.txt").as_deref(), Some("same"));
}

/// Two sets, `docs` and `other`, over cloud folders of the same names.
fn two_sets(b: Backend) -> Options {
    let set = |p: &str| SetConfig {
        path: p.into(),
        cloud: None,
        include_subfolders: None,
        lock_onprem: None,
        cloud_delete: None,
        onprem_delete: None,
        conflict: None,
    };
    let mut o = Options::new(b);
    o.sets = vec![set("docs"), set("other")];
    o
}

#[test]
fn cloud_moves_between_and_out_of_sets_follow_the_sets() {
    for b in MOVES {
        let ff = FakeFolder::new(
            two_sets(b),
            &[
                ("docs/d/a.txt", "a"),
                ("docs/stay/s.txt", "s"),
                ("docs/out/o.txt", "o"),
                ("other/x.txt", "x"),
            ],
        );
        ff.sync();
        ff.assert_converged(false);
        // Within a set: a move.
        moved_as_one(&ff, b, "docs/stay", "docs/still");
        let gets = ff.gets();
        // From one set to another: a delete in the one, a new folder in the other.
        assert!(ff.cloud_rename("docs/d", "other/d"));
        // Out of every set: a delete there.
        assert!(ff.cloud_rename("docs/out", "nowhere/out"));
        // Into a set from outside: new files.
        ff.cloud_write("outside/in.txt", "in");
        assert!(ff.cloud_rename("outside", "docs/in"));
        ff.sync();
        // Both sides agree inside the sets; `nowhere/` is outside every set.
        let (local, cloud) = ff.synced_files();
        let cloud: std::collections::BTreeMap<_, _> = cloud
            .into_iter()
            .filter(|(p, _)| !p.starts_with("nowhere/"))
            .collect();
        assert_eq!(local, cloud, "{b:?}\n{}", ff.describe());
        assert_eq!(ff.read("other/d/a.txt").as_deref(), Some("a"), "{b:?}");
        assert_eq!(ff.read("docs/in/in.txt").as_deref(), Some("in"), "{b:?}");
        assert_eq!(
            ff.gets() - gets,
            2,
            "{b:?}: what enters a set is downloaded"
        );
        for p in ["docs/d/a.txt", "docs/out/o.txt"] {
            assert_eq!(
                ff.status(p).1.map(|e| e.starts_with("DELETED_ON_CLOUD")),
                Some(true),
                "{b:?}: {p} kept as DELETED_ON_CLOUD\n{}",
                ff.describe()
            );
        }
        assert!(!ff.path("nowhere").exists(), "{b:?}");
    }
}

#[test]
fn a_crash_between_the_rename_and_the_journal_finishes_the_move() {
    for b in MOVES {
        let mut ff = synced(b, TREE);
        assert!(ff.cloud_rename("d", "e"));
        let before = ino(&ff, "d");
        // The daemon noted the move, renamed the folder, and died before the journal's
        // part.
        ff.journal().begin_pull_move("d", "e").unwrap();
        std::fs::rename(ff.path("d"), ff.path("e")).unwrap();
        ff.crash(std::time::Duration::ZERO);
        let log = log_len(&ff);
        ff.sync();
        ff.assert_converged(false);
        assert_eq!(ff.gets(), 0, "{b:?}: nothing fetched again");
        assert_eq!(sent(&ff, log, Method::Put), 0, "{b:?}");
        assert_eq!(ino(&ff, "e"), before);
        assert_eq!(ff.status("e/sub/b.txt"), (Status::Synced, None), "{b:?}");
        assert!(ff.journal().pull_moves().unwrap().is_empty());
    }
}

#[test]
fn a_crash_before_the_rename_lets_the_next_pull_move_again() {
    for b in MOVES {
        let mut ff = synced(b, TREE);
        assert!(ff.cloud_rename("d", "e"));
        let before = ino(&ff, "d");
        ff.journal().begin_pull_move("d", "e").unwrap();
        ff.crash(std::time::Duration::ZERO);
        assert!(ff.journal().pull_moves().unwrap().is_empty(), "{b:?}");
        ff.sync();
        ff.assert_converged(false);
        assert_eq!(ff.gets(), 0, "{b:?}");
        assert_eq!(ino(&ff, "e"), before, "{b:?}");
    }
}

#[test]
fn a_folder_move_waits_while_a_file_below_is_open_for_writing() {
    for b in MOVES {
        let ff = synced(b, TREE);
        assert!(ff.cloud_rename("d", "e"));
        let opening = ff.writers().opening("d/sub/b.txt");
        ff.pull().unwrap().unwrap();
        assert!(ff.path("d/sub/b.txt").exists(), "{b:?}");
        assert!(
            !ff.path("e").exists(),
            "{b:?}: neither moved nor downloaded"
        );
        assert_eq!(ff.gets(), 0);
        drop(opening);
        let before = ino(&ff, "d");
        ff.sync();
        ff.assert_converged(false);
        assert_eq!(ino(&ff, "e"), before, "{b:?}");
        assert_eq!(ff.gets(), 0, "{b:?}");
    }
}

#[test]
fn a_cloud_move_onto_a_path_through_an_on_premise_link_follows_no_link() {
    for b in MOVES {
        let ff = synced(b, TREE);
        let outside = tempfile::tempdir().unwrap();
        // A link made straight in ONPREM, to a folder outside it; the cloud moves `d` to
        // where the link stands.
        std::os::unix::fs::symlink(outside.path(), ff.path("link")).unwrap();
        ff.cloud_mkdir("link");
        assert!(ff.cloud_rename("d", "link/d"));
        for _ in 0..3 {
            let _ = ff.pull();
            let _ = ff.push();
        }
        assert_eq!(
            std::fs::read_dir(outside.path()).unwrap().count(),
            0,
            "{b:?}: nothing written through the link"
        );
        // Nothing lost: the folder stays where it was on-premise.
        assert_eq!(ff.read("d/sub/b.txt").as_deref(), Some("b"), "{b:?}");
        assert_eq!(ff.read("d/a.txt").as_deref(), Some("a"), "{b:?}");
    }
}
