//! FakeFolder scenarios: change both sides, sync, and assert that the two sides are equal
//! apart from conflict copies, and that nothing anybody wrote is lost. Each runs against the
//! `file://` cloud and the in-memory one, with and without folder ETags, unless it needs the
//! in-memory cloud's faults.

use std::time::Duration;

use cloudsync::cloud::mem::{Fault, Method, Rule};
use cloudsync::status::Status;
use cloudsync::sync::pull::MAX_DEPTH;
use cloudsync::sync::sets::SetConfig;

use crate::fake::{Backend, FakeFolder, Options};

const ALL: [Backend; 4] = [
    Backend::Dir,
    Backend::Mem,
    Backend::MemFolderEtags,
    Backend::MemTrees,
];

/// A fake folder over `b` holding `init`, synced once.
fn synced(b: Backend, init: &[(&str, &str)]) -> FakeFolder {
    let ff = FakeFolder::new(Options::new(b), init);
    ff.sync();
    ff.assert_converged(false);
    ff
}

/// One set over the folder `docs` with the given conflict winner.
fn docs_set(b: Backend, conflict: &str) -> Options {
    let mut o = Options::new(b);
    o.sets = vec![SetConfig {
        path: "docs".into(),
        cloud: None,
        include_subfolders: None,
        lock_onprem: None,
        cloud_delete: None,
        onprem_delete: None,
        conflict: Some(conflict.into()),
    }];
    o
}

#[test]
fn new_files_and_folders_reach_the_other_side() {
    for b in ALL {
        let ff = synced(b, &[("a.txt", "a"), ("d/e/f.txt", "f")]);
        assert_eq!(ff.cloud_read("d/e/f.txt").as_deref(), Some("f"));
        ff.write("n/new.txt", "new here");
        ff.cloud_write("c/from-cloud.txt", "new there");
        ff.sync();
        ff.assert_converged(false);
        assert_eq!(ff.read("c/from-cloud.txt").as_deref(), Some("new there"));
        assert_eq!(ff.cloud_read("n/new.txt").as_deref(), Some("new here"));
        assert_eq!(ff.status("n/new.txt").0, Status::Synced, "{b:?}");
        assert!(ff.conflict_copies().is_empty());
    }
}

#[test]
fn edit_edit_conflict_cloud_wins_and_keeps_the_local_edit() {
    for b in ALL {
        let ff = synced(b, &[("a.txt", "base")]);
        ff.write("a.txt", "local edit");
        ff.cloud_write("a.txt", "cloud edit");
        ff.sync();
        ff.assert_converged(false);
        assert_eq!(ff.read("a.txt").as_deref(), Some("cloud edit"), "{b:?}");
        assert_eq!(ff.cloud_read("a.txt").as_deref(), Some("cloud edit"));
        let copies = ff.conflict_copies();
        assert_eq!(copies.len(), 1, "{b:?}\n{}", ff.describe());
        assert_eq!(ff.read(&copies[0]).as_deref(), Some("local edit"));
        assert_eq!(ff.status(&copies[0]).0, Status::Conflict);
        assert_eq!(
            ff.cloud_read(&copies[0]),
            None,
            "a conflict copy stays on-premise"
        );
    }
}

#[test]
fn edit_edit_conflict_onprem_wins_and_keeps_the_cloud_edit() {
    for b in ALL {
        let ff = FakeFolder::new(docs_set(b, "onprem-wins"), &[("docs/a.txt", "base")]);
        ff.sync();
        ff.assert_converged(false);
        ff.write("docs/a.txt", "local edit");
        ff.cloud_write("docs/a.txt", "cloud edit");
        ff.sync();
        ff.assert_converged(false);
        assert_eq!(
            ff.read("docs/a.txt").as_deref(),
            Some("local edit"),
            "{b:?}"
        );
        assert_eq!(ff.cloud_read("docs/a.txt").as_deref(), Some("local edit"));
        let copies = ff.conflict_copies();
        assert_eq!(copies.len(), 1, "{b:?}\n{}", ff.describe());
        assert_eq!(ff.read(&copies[0]).as_deref(), Some("cloud edit"));
    }
}

#[test]
fn local_delete_against_cloud_edit_keeps_the_edit() {
    for b in ALL {
        let ff = synced(b, &[("a.txt", "base")]);
        ff.remove("a.txt");
        ff.cloud_write("a.txt", "cloud edit");
        ff.sync();
        ff.assert_converged(false);
        assert_eq!(ff.read("a.txt").as_deref(), Some("cloud edit"), "{b:?}");
        assert_eq!(ff.cloud_read("a.txt").as_deref(), Some("cloud edit"));
    }
}

#[test]
fn cloud_delete_against_local_edit_keeps_the_edit() {
    for b in ALL {
        let ff = synced(b, &[("a.txt", "base")]);
        ff.write("a.txt", "local edit");
        assert!(ff.cloud_remove("a.txt"));
        ff.sync();
        ff.assert_converged(false);
        assert_eq!(ff.read("a.txt").as_deref(), Some("local edit"), "{b:?}");
        assert_eq!(
            ff.cloud_read("a.txt").as_deref(),
            Some("local edit"),
            "{b:?}"
        );
    }
}

#[test]
fn cloud_delete_of_an_unchanged_file_keeps_it_on_premise_as_deleted_on_cloud() {
    for b in ALL {
        let ff = synced(b, &[("a.txt", "base"), ("b.txt", "b")]);
        assert!(ff.cloud_remove("a.txt"));
        ff.sync();
        ff.assert_converged(true);
        assert_eq!(ff.read("a.txt").as_deref(), Some("base"));
        let (st, err) = ff.status("a.txt");
        assert_eq!(st, Status::Failed, "{b:?}");
        assert!(err.unwrap().starts_with("DELETED_ON_CLOUD"));
        // A sync request pushes it again.
        ff.engine().request_sync(&["a.txt".into()], false).unwrap();
        ff.sync();
        ff.assert_converged(false);
        assert_eq!(ff.cloud_read("a.txt").as_deref(), Some("base"), "{b:?}");
    }
}

#[test]
fn a_folder_renamed_with_its_contents_is_one_move_in_the_cloud() {
    for b in ALL {
        let ff = synced(
            b,
            &[("d/a.txt", "a"), ("d/sub/b.txt", "b"), ("d/sub/c.txt", "c")],
        );
        let before = ff.mem.as_ref().map(|m| m.requests().len());
        assert!(ff.rename("d", "e"));
        ff.sync();
        ff.assert_converged(false);
        assert_eq!(ff.cloud_read("e/sub/b.txt").as_deref(), Some("b"), "{b:?}");
        assert_eq!(ff.cloud_read("d/a.txt"), None);
        assert_eq!(ff.status("e/sub/c.txt").0, Status::Synced);
        if let (Some(m), Some(before)) = (&ff.mem, before) {
            let sent = &m.requests()[before..];
            assert!(
                sent.iter()
                    .any(|(m, p)| *m == Method::Move && p == "d -> e"),
                "{sent:?}"
            );
            assert!(
                !sent
                    .iter()
                    .any(|(m, _)| *m == Method::Put || *m == Method::Delete),
                "a move, never a delete and a new upload: {sent:?}"
            );
        }
    }
}

/// A folder move the puller cannot tell (no ids, and no file inside to match by ETag: see
/// SEMANTICS, "Cloud-side moves") arrives as a new folder, and the old one is kept as
/// `DELETED_ON_CLOUD`. Moves it can tell are in `cloud_moves`.
#[test]
fn a_folder_renamed_in_the_cloud_that_cannot_be_told_arrives_new_and_the_old_one_is_kept() {
    for b in [Backend::Mem, Backend::MemFolderEtags, Backend::MemTrees] {
        let ff = FakeFolder::new(Options::new(b), &[("top.txt", "t")]);
        ff.mkdir("d/sub");
        ff.sync();
        ff.assert_converged(false);
        assert!(ff.cloud_rename("d", "e"));
        ff.sync();
        ff.assert_converged(true);
        assert!(ff.path("e/sub").is_dir(), "{b:?}");
        let (st, err) = ff.status("d/sub");
        assert_eq!(st, Status::Failed, "{b:?}");
        assert!(err.unwrap().starts_with("DELETED_ON_CLOUD"));
    }
}

#[test]
fn a_file_renamed_in_the_cloud_is_moved_on_premise() {
    for b in ALL {
        let ff = synced(b, &[("d/a.txt", "a"), ("b.txt", "b")]);
        assert!(ff.cloud_rename("d/a.txt", "d/moved.txt"));
        assert!(ff.cloud_rename("b.txt", "d/b.txt"));
        ff.sync();
        ff.assert_converged(false);
        assert_eq!(ff.read("d/moved.txt").as_deref(), Some("a"), "{b:?}");
        assert!(!ff.path("d/a.txt").exists(), "{b:?}\n{}", ff.describe());
        assert!(!ff.path("b.txt").exists(), "{b:?}\n{}", ff.describe());
    }
}

#[test]
fn a_cloud_move_of_a_file_being_opened_for_writing_waits_and_loses_nothing() {
    for b in ALL {
        for onprem_delete in [false, true] {
            let mut opts = docs_set(b, "cloud-wins");
            opts.sets[0].onprem_delete = Some(onprem_delete);
            let ff = FakeFolder::new(opts, &[("docs/a.txt", "a")]);
            ff.sync();
            assert!(ff.cloud_rename("docs/a.txt", "docs/b.txt"));
            let opening = ff.writers().opening("docs/a.txt");
            ff.pull().unwrap().unwrap();
            assert_eq!(
                ff.read("docs/a.txt").as_deref(),
                Some("a"),
                "{b:?}, onprem_delete {onprem_delete}: a file being opened is neither moved nor deleted\n{}",
                ff.describe()
            );
            assert!(!ff.path("docs/b.txt").exists(), "{b:?}: the move waits");
            drop(opening);
            ff.sync();
            ff.assert_converged(false);
            assert_eq!(ff.read("docs/b.txt").as_deref(), Some("a"), "{b:?}");
            assert!(!ff.path("docs/a.txt").exists(), "{b:?}\n{}", ff.describe());
        }
    }
}

#[test]
fn a_push_that_ends_while_a_pull_lists_is_not_taken_for_a_cloud_delete() {
    for b in [Backend::Mem, Backend::MemFolderEtags] {
        let ff = synced(b, &[("a.txt", "a")]);
        assert!(ff.cloud_remove("a.txt"));
        ff.pull().unwrap().unwrap();
        assert_eq!(
            ff.status("a.txt").0,
            Status::Failed,
            "{b:?}: DELETED_ON_CLOUD"
        );
        // A sync request pushes it again, and the push ends while a pull's listing, taken
        // before the upload, is on its way: that listing must not mark it deleted again.
        ff.engine().request_sync(&["a.txt".into()], false).unwrap();
        // Something else changed in the cloud, so that even a cloud with folder ETags walks.
        ff.cloud_write("other.txt", "o");
        let hold = ff.mem.as_ref().unwrap().hold(Method::List, "");
        ff.pull_while_pushing(&hold).unwrap();
        assert_eq!(
            ff.cloud_read("a.txt").as_deref(),
            Some("a"),
            "{b:?}: pushed again"
        );
        assert_eq!(
            ff.status("a.txt"),
            (Status::Synced, None),
            "{b:?}\n{}",
            ff.describe()
        );
        ff.sync();
        ff.assert_converged(false);
        assert_eq!(ff.status("a.txt").0, Status::Synced, "{b:?}");
    }
}

#[test]
fn a_file_renamed_into_a_new_folder_and_edited_keeps_the_edit() {
    for b in ALL {
        let ff = synced(b, &[("a.txt", "a")]);
        assert!(ff.rename("a.txt", "x/y/a.txt"));
        ff.write("x/y/a.txt", "edited after the move");
        ff.sync();
        ff.assert_converged(false);
        assert_eq!(
            ff.cloud_read("x/y/a.txt").as_deref(),
            Some("edited after the move"),
            "{b:?}"
        );
    }
}

#[test]
fn offline_then_back_loses_nothing() {
    let ff = synced(Backend::Mem, &[("a.txt", "a")]);
    let mem = ff.mem.clone().unwrap();
    mem.set_offline(true);
    ff.write("a.txt", "edited offline");
    ff.write("d/new.txt", "made offline");
    ff.remove("a.txt");
    ff.write("a.txt", "again");
    ff.push();
    assert!(ff.pull().unwrap().is_err_and(|e| e.is_transient()));
    assert_eq!(ff.status("a.txt").0, Status::Offline);
    assert_eq!(ff.status("").0, Status::Offline);
    assert_eq!(mem.read("a.txt").unwrap(), b"a");
    // Retries come and fail while the cloud stays away.
    ff.time_passes();
    ff.push();
    assert_eq!(ff.status("d/new.txt").0, Status::Offline);
    mem.set_offline(false);
    ff.sync();
    ff.assert_converged(false);
    assert_eq!(ff.cloud_read("a.txt").as_deref(), Some("again"));
    assert_eq!(ff.cloud_read("d/new.txt").as_deref(), Some("made offline"));
    assert_eq!(ff.status("a.txt").0, Status::Synced);
}

/// Something in between (a proxy, a load balancer) answers the upload of `path` with `fault`
/// although the cloud copy did not change: the on-premise content must still get there.
fn spurious_answer_keeps_the_edit(b: Backend, path: &str, fault: Fault) {
    let ff = synced(b, &[("a.txt", "base"), ("b.txt", "b")]);
    let mem = ff.mem.clone().unwrap();
    mem.inject(Rule::on(Method::Put, path, fault, 1));
    ff.write(path, "local edit");
    ff.sync();
    ff.assert_converged(false);
    assert_eq!(
        mem.read(path).as_deref(),
        Some(&b"local edit"[..]),
        "{b:?} {path} {fault:?}\n{}",
        ff.describe()
    );
    assert!(ff.conflict_copies().is_empty(), "{}", ff.describe());
}

#[test]
fn a_412_from_a_proxy_on_an_update_never_drops_the_edit() {
    for b in [Backend::Mem, Backend::MemFolderEtags] {
        spurious_answer_keeps_the_edit(b, "a.txt", Fault::PreconditionFailed);
    }
}

#[test]
fn a_412_from_a_proxy_on_a_new_file_never_drops_it() {
    for b in [Backend::Mem, Backend::MemFolderEtags] {
        spurious_answer_keeps_the_edit(b, "c.txt", Fault::PreconditionFailed);
    }
}

#[test]
fn a_404_from_a_proxy_on_an_update_never_drops_the_edit() {
    for b in [Backend::Mem, Backend::MemFolderEtags] {
        spurious_answer_keeps_the_edit(b, "a.txt", Fault::NotFound);
    }
}

#[test]
fn a_401_stops_everything_until_a_sync_is_requested() {
    let ff = synced(Backend::Mem, &[("a.txt", "a")]);
    let mem = ff.mem.clone().unwrap();
    mem.inject(Rule::always(Fault::Unauthorized));
    for i in 0..5 {
        ff.write(&format!("f{i}.txt"), "x");
    }
    ff.write("a.txt", "edited");
    let before = mem.requests().len();
    ff.sync();
    // The transfers already under way when the first 401 came back, and nothing after.
    let sent = mem.requests().len() - before;
    assert!(sent <= 4, "{:?}", &mem.requests()[before..]);
    let before = mem.requests().len();
    ff.time_passes();
    ff.sync();
    // No retry storm (it can trip a server's lockout), and no pull either.
    assert_eq!(
        mem.requests().len(),
        before,
        "{:?}",
        &mem.requests()[before..]
    );
    let (st, err) = ff.status("f3.txt");
    assert_eq!(st, Status::Failed);
    assert!(err.unwrap().starts_with("AUTHENTICATION_ERROR"));
    assert!(ff.pull().is_none(), "pulling stops too");
    // Credentials fixed: a sync request resumes.
    mem.clear_faults();
    ff.engine().request_sync(&[], false).unwrap();
    ff.sync();
    ff.assert_converged(false);
    assert_eq!(mem.read("a.txt").unwrap(), b"edited");
}

#[test]
fn a_401_while_pulling_stops_pushing_too() {
    let ff = synced(Backend::Mem, &[("a.txt", "a")]);
    let mem = ff.mem.clone().unwrap();
    mem.inject(Rule::always(Fault::Unauthorized));
    assert!(matches!(
        ff.pull(),
        Some(Err(cloudsync::sync::SyncError::Cloud(
            cloudsync::cloud::CloudError::Unauthorized
        )))
    ));
    let before = mem.requests().len();
    ff.write("a.txt", "edited");
    ff.sync();
    assert_eq!(mem.requests().len(), before, "nothing is sent after a 401");
}

#[test]
fn an_upload_cut_short_is_sent_again_whole() {
    for (path, fault) in [
        ("new.txt", Fault::PartialUpload),
        ("a.txt", Fault::PartialUpload),
        ("new2.txt", Fault::LostAnswer),
        ("a.txt", Fault::LostAnswer),
    ] {
        let ff = synced(Backend::Mem, &[("a.txt", "a")]);
        let mem = ff.mem.clone().unwrap();
        mem.inject(Rule::on(Method::Put, path, fault, 1));
        ff.write(path, "the whole new content");
        ff.sync();
        ff.assert_converged(false);
        assert_eq!(
            mem.read(path).unwrap(),
            b"the whole new content",
            "{path} {fault:?}\n{}",
            ff.describe()
        );
        assert!(
            ff.conflict_copies().is_empty(),
            "{path} {fault:?}: our own leftover is no conflict\n{}",
            ff.describe()
        );
    }
}

#[test]
fn a_crash_mid_push_resumes_after_restart() {
    for b in ALL {
        let mut ff = synced(b, &[("a.txt", "a")]);
        if let Some(m) = &ff.mem {
            m.set_delay(Duration::from_millis(20));
        }
        for i in 0..6 {
            ff.write(&format!("d/f{i}.txt"), &format!("content {i}"));
        }
        ff.write("a.txt", "edited");
        ff.crash(Duration::from_millis(15));
        // Changes made while the daemon was down are found by the start-up scan.
        ff.write_as("down.txt", "made while down", false);
        ff.restart();
        ff.sync();
        ff.assert_converged(false);
        assert_eq!(
            ff.cloud_read("down.txt").as_deref(),
            Some("made while down")
        );
        assert_eq!(ff.cloud_read("d/f5.txt").as_deref(), Some("content 5"));
        assert!(ff.conflict_copies().is_empty(), "{b:?}\n{}", ff.describe());
    }
}

#[test]
fn delayed_and_reordered_answers_converge() {
    let ff = synced(Backend::MemFolderEtags, &[("a.txt", "a")]);
    let mem = ff.mem.clone().unwrap();
    mem.seed(7);
    mem.set_delay(Duration::from_millis(5));
    for i in 0..12 {
        ff.write(&format!("d{}/f{i}.txt", i % 3), &format!("c{i}"));
    }
    ff.rename("d0", "e0");
    ff.cloud_write("c/x.txt", "from the cloud");
    ff.sync();
    ff.assert_converged(false);
    assert_eq!(ff.cloud_read("e0/f9.txt").as_deref(), Some("c9"));
}

#[test]
fn excluded_names_stay_on_premise() {
    for b in ALL {
        let ff = synced(b, &[("a.txt", "a")]);
        ff.write(".~lock.a.txt#", "lock");
        ff.write("4913", "probe");
        ff.write("a.txt~", "backup");
        ff.sync();
        ff.assert_converged(false);
        let cloud = ff.cloud_tree();
        assert_eq!(cloud.keys().collect::<Vec<_>>(), ["a.txt"], "{b:?}");
        assert_eq!(ff.status("4913").0, Status::Excluded);
    }
}

/// A file kept as `DELETED_ON_CLOUD`, then deleted or renamed on-premise, while a cloud user
/// makes a new file of the same name: the new cloud file is someone else's, and stays.
#[test]
fn a_deleted_on_cloud_file_deleted_or_moved_on_premise_leaves_a_new_cloud_file_alone() {
    for b in ALL {
        for rename in [false, true] {
            let ff = synced(b, &[("a.txt", "initial a")]);
            assert!(ff.cloud_remove("a.txt"));
            ff.sync();
            assert_eq!(ff.status("a.txt").0, Status::Failed);
            ff.cloud_write("a.txt", "a new file in the cloud");
            if rename {
                assert!(ff.rename("a.txt", "d/c.txt"));
            } else {
                assert!(ff.remove("a.txt"));
            }
            ff.sync();
            ff.assert_converged(false);
            assert_eq!(
                ff.cloud_read("a.txt").as_deref(),
                Some("a new file in the cloud"),
                "{b:?} rename {rename}\n{}",
                ff.describe()
            );
            assert_eq!(ff.read("a.txt").as_deref(), Some("a new file in the cloud"));
            if rename {
                assert_eq!(ff.cloud_read("d/c.txt").as_deref(), Some("initial a"));
            }
        }
    }
}

/// Where the cloud lists a whole tree in one pass (an object store), a pull takes from it what
/// a walk folder by folder takes: nothing below an excluded folder, nothing below the depth
/// limit (and nothing there is taken for deleted), the rest as it is; in one request.
#[test]
fn a_tree_listed_in_one_pass_is_taken_as_folder_by_folder() {
    let deep: String = (0..MAX_DEPTH + 4)
        .map(|i| format!("d{i}"))
        .collect::<Vec<_>>()
        .join("/");
    let mut trees = Vec::new();
    for b in [Backend::Mem, Backend::MemTrees] {
        let mut o = Options::new(b);
        o.ignore = vec!["build".into()];
        let ff = FakeFolder::new(o, &[("a.txt", "a")]);
        ff.sync();
        ff.cloud_write(&format!("{deep}/f.txt"), "deep");
        ff.cloud_write("build/out.o", "o");
        ff.cloud_write("x/y/z.txt", "z");
        ff.cloud_mkdir("x/empty");
        ff.sync();
        assert_eq!(ff.read("x/y/z.txt").as_deref(), Some("z"), "{b:?}");
        assert!(!ff.path("build").exists(), "{b:?}");
        assert!(!ff.path(&format!("{deep}/f.txt")).exists(), "{b:?}");
        assert!(
            ff.path(&deep[..deep.find("/d200").unwrap()]).is_dir(),
            "{b:?}"
        );
        // An idle pull: nothing changes; the tree is one request where it is listed whole.
        let mem = ff.mem.clone().unwrap();
        let from = mem.requests().len();
        ff.pull().unwrap().unwrap();
        let lists = mem.requests()[from..]
            .iter()
            .filter(|(m, _)| *m == Method::List)
            .count();
        if b == Backend::MemTrees {
            assert_eq!(lists, 1, "{b:?}");
        } else {
            assert!(lists > MAX_DEPTH, "{b:?}: {lists}");
        }
        assert_eq!(
            ff.cloud_read(&format!("{deep}/f.txt")).as_deref(),
            Some("deep")
        );
        trees.push(ff.local_tree());
    }
    assert_eq!(trees[0], trees[1]);
}
