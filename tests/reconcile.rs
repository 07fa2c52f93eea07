//! Reconciler tests through a real mount: every pair of changes on the two sides, then the two
//! sides must converge and every content ever written must still exist somewhere.

mod harness;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use cloudsync::sync::reconcile::is_conflict_name;
use harness::{Mount, tree, xattr};

const OPS: [&str; 4] = ["none", "edit", "delete", "rename"];

fn skip(name: &str) -> bool {
    cloudsync::ignore::Ignore::new(&[])
        .unwrap()
        .name_excluded(name)
}

/// On-premise tree without conflict copies and DELETED_ON_CLOUD items, and the cloud tree.
type Tree = Vec<(String, Vec<u8>)>;

fn comparable(m: &Mount) -> (Tree, Tree) {
    let local: Vec<_> = tree(&m.onprem, &skip)
        .into_iter()
        .filter(|(p, _)| {
            let deleted_on_cloud = xattr(&m.m(p), "user.cloudsync.error")
                .is_some_and(|e| e.starts_with("DELETED_ON_CLOUD"));
            !deleted_on_cloud
        })
        .collect();
    (local, tree(&m.cloud, &skip))
}

fn wait_converged(m: &Mount) {
    let t = Instant::now();
    loop {
        let (l, c) = comparable(m);
        // Settled: nothing pending. The root may say failed for a DELETED_ON_CLOUD item.
        let root = xattr(&m.mnt, "user.cloudsync.status");
        let synced = matches!(root.as_deref(), Some("synced") | Some("failed"));
        if l == c && synced {
            return;
        }
        if t.elapsed() > Duration::from_secs(30) {
            let lm: BTreeMap<_, _> = l.into_iter().collect();
            let cm: BTreeMap<_, _> = c.into_iter().collect();
            let only_l: Vec<_> = lm.keys().filter(|k| cm.get(*k) != lm.get(*k)).collect();
            let only_c: Vec<_> = cm.keys().filter(|k| cm.get(*k) != lm.get(*k)).collect();
            panic!(
                "did not converge: differing on-premise {only_l:?}, cloud {only_c:?}\n{}",
                m.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every content in a tree, but for transfers in progress: the daemon may be uploading into
/// the cloud folder or downloading into ONPREM while the test looks, and a temporary file of
/// theirs is nobody's content.
fn contents(root: &Path) -> Vec<Vec<u8>> {
    tree(root, &|n| {
        n.starts_with(".cloudsync-tmp-") || n.starts_with(".cloudsync-dl-")
    })
    .into_iter()
    .map(|(_, c)| c)
    .collect()
}

fn apply(op: &str, root: &Path, name: &str, side: &str) {
    let p = root.join(name);
    match op {
        "none" => {}
        "edit" => fs::write(&p, format!("{name} edited on {side}")).unwrap(),
        "delete" => fs::remove_file(&p).unwrap(),
        "rename" => fs::rename(&p, root.join(format!("{name}.renamed-{side}"))).unwrap(),
        _ => unreachable!(),
    }
}

#[test]
fn every_pair_of_file_changes_converges_and_loses_nothing() {
    let m = Mount::start(&["--pull-interval", "1s"]);
    let mut written: Vec<Vec<u8>> = Vec::new();
    for l in OPS {
        for c in OPS {
            let name = format!("{l}-{c}.txt");
            fs::write(m.m(&name), format!("{name} original")).unwrap();
        }
    }
    // Both sides create the same new name, or only one does.
    m.wait_all_synced();
    wait_converged(&m);

    for l in OPS {
        for c in OPS {
            let name = format!("{l}-{c}.txt");
            apply(c, &m.cloud, &name, "cloud");
            apply(l, &m.mnt, &name, "onprem");
        }
    }
    fs::write(m.c("both-new.txt"), "both-new on cloud").unwrap();
    fs::write(m.m("both-new.txt"), "both-new on onprem").unwrap();
    fs::write(m.c("cloud-new.txt"), "cloud-new").unwrap();
    fs::create_dir(m.c("cloud-dir")).unwrap();
    fs::write(m.c("cloud-dir/inner.txt"), "inner").unwrap();
    fs::create_dir(m.m("type")).unwrap();
    fs::write(m.c("type"), "a file in the cloud").unwrap();
    written.extend(contents(&m.onprem));
    written.extend(contents(&m.cloud));
    // Originals are older versions: an edit on either side supersedes them, a delete removes
    // them. What must survive is every version written after the last sync.
    written.retain(|w| !w.ends_with(b" original"));
    wait_converged(&m);
    // Nothing anyone wrote is lost: every content is still on one side or the other.
    let now: Vec<Vec<u8>> = contents(&m.onprem)
        .into_iter()
        .chain(contents(&m.cloud))
        .collect();
    for w in &written {
        if w != b"<dir>" {
            assert!(now.contains(w), "lost: {}", String::from_utf8_lossy(w));
        }
    }
    // The rules, case by case.
    let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();
    assert_eq!(
        read(&m.o("edit-edit.txt")),
        "edit-edit.txt edited on cloud",
        "the cloud wins"
    );
    let copies: Vec<String> = fs::read_dir(&m.onprem)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| is_conflict_name(n))
        .collect();
    assert!(
        copies.iter().any(|c| c.starts_with("edit-edit (conflict ")),
        "the on-premise edit is kept as a conflict copy: {copies:?}"
    );
    for c in &copies {
        assert_eq!(
            xattr(&m.m(c), "user.cloudsync.status").as_deref(),
            Some("conflict")
        );
        assert!(!m.c(c).exists(), "conflict copies stay on-premise");
    }
    assert_eq!(
        read(&m.c("edit-delete.txt")),
        "edit-delete.txt edited on onprem",
        "edit beats delete"
    );
    assert_eq!(
        read(&m.o("delete-edit.txt")),
        "delete-edit.txt edited on cloud",
        "edit beats delete"
    );
    assert!(
        m.o("none-delete.txt").exists(),
        "onprem_delete is off by default"
    );
    assert!(
        xattr(&m.m("none-delete.txt"), "user.cloudsync.error")
            .unwrap()
            .starts_with("DELETED_ON_CLOUD")
    );
    assert!(!m.o("delete-delete.txt").exists() && !m.c("delete-delete.txt").exists());
    assert_eq!(
        read(&m.o("none-rename.txt.renamed-cloud")),
        "none-rename.txt original"
    );
    assert!(
        !m.o("none-rename.txt").exists(),
        "a cloud move is a local move"
    );
    assert_eq!(
        read(&m.c("rename-none.txt.renamed-onprem")),
        "rename-none.txt original"
    );
    assert_eq!(
        read(&m.o("rename-rename.txt.renamed-cloud")),
        "rename-rename.txt original"
    );
    assert_eq!(
        read(&m.c("rename-rename.txt.renamed-onprem")),
        "rename-rename.txt original"
    );
    assert_eq!(read(&m.o("cloud-dir/inner.txt")), "inner");
    assert!(m.o("type").is_file() || m.o("type").is_dir());
}

#[test]
fn cloud_changes_reach_open_readers_and_ls() {
    let m = Mount::start(&["--pull-interval", "1s"]);
    fs::write(m.m("doc.txt"), "v1").unwrap();
    m.wait_all_synced();
    assert_eq!(fs::read_to_string(m.m("doc.txt")).unwrap(), "v1");
    fs::write(m.c("doc.txt"), "v2 from the cloud").unwrap();
    fs::write(m.c("fresh.txt"), "fresh").unwrap();
    harness::wait_until(
        Duration::from_secs(10),
        "cloud change visible in the mount",
        || {
            fs::read_to_string(m.m("doc.txt")).unwrap_or_default() == "v2 from the cloud"
                && m.m("fresh.txt").exists()
        },
    );
    // The download took the cloud's modification time and is not pushed back.
    let cm = fs::metadata(m.c("doc.txt")).unwrap().modified().unwrap();
    assert_eq!(
        fs::metadata(m.m("doc.txt")).unwrap().modified().unwrap(),
        cm
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(m.uploads_of("doc.txt"), 1, "no echo: {}", m.log_text());
    assert_eq!(m.uploads_of("fresh.txt"), 0, "no echo: {}", m.log_text());
}

#[test]
fn a_file_open_for_writing_is_not_replaced() {
    use std::io::Write;
    let m = Mount::start(&["--pull-interval", "1s"]);
    fs::write(m.m("busy.txt"), "v1").unwrap();
    m.wait_all_synced();
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(m.m("busy.txt"))
        .unwrap();
    fs::write(m.c("busy.txt"), "cloud v2").unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        fs::read_to_string(m.o("busy.txt")).unwrap(),
        "v1",
        "never replaced under its writer"
    );
    f.write_all(b" + local").unwrap();
    drop(f);
    // After close: both changed, so the cloud wins and the local edit becomes a conflict copy.
    wait_converged(&m);
    assert_eq!(fs::read_to_string(m.o("busy.txt")).unwrap(), "cloud v2");
    let kept = fs::read_dir(&m.onprem)
        .unwrap()
        .map(|e| e.unwrap().path())
        .any(|p| fs::read_to_string(&p).unwrap_or_default() == "v1 + local");
    assert!(kept, "the local edit is kept");
}

#[test]
fn deleting_a_folder_never_deletes_what_changed_in_the_cloud() {
    let m = Mount::start(&["--pull-interval", "30s"]);
    fs::create_dir_all(m.m("proj/sub")).unwrap();
    fs::write(m.m("proj/a.txt"), "a").unwrap();
    fs::write(m.m("proj/sub/b.txt"), "b").unwrap();
    m.wait_all_synced();
    // Someone adds a file in the cloud; before any pull, the folder is deleted on-premise.
    fs::write(m.c("proj/sub/new-in-cloud.txt"), "precious").unwrap();
    fs::remove_dir_all(m.m("proj")).unwrap();
    harness::wait_until(
        Duration::from_secs(20),
        "known files deleted in the cloud",
        || !m.c("proj/a.txt").exists() && !m.c("proj/sub/b.txt").exists(),
    );
    assert_eq!(
        fs::read_to_string(m.c("proj/sub/new-in-cloud.txt")).unwrap(),
        "precious"
    );
    // The next pull brings it back on-premise.
    let out = std::process::Command::new(harness::bin())
        .args(["sync", "--wait"])
        .arg(&m.mnt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    harness::wait_until(Duration::from_secs(20), "the cloud file comes back", || {
        m.o("proj/sub/new-in-cloud.txt").exists()
    });
}

/// Pulls that run while a first upload of many files is under way never take a file whose
/// push finished during their walk for one deleted in the cloud.
#[test]
fn pulls_during_a_first_upload_never_take_new_files_for_deleted_ones() {
    let mut m = Mount::prepare_with_cloud("", &["--pull-interval", "1h"], &[]);
    m.cloud_url = format!("file://{}", m.cloud.display());
    for d in 0..20 {
        let dir = m.onprem.join(format!("d{d:02}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            fs::write(dir.join(format!("f{f:03}.txt")), format!("{d} {f}")).unwrap();
        }
    }
    m.spawn();
    // Pull after pull, each walking the cloud while the pusher fills it.
    let mut pulls = 0;
    let start = Instant::now();
    while tree(&m.cloud, &skip).len() < 2020 && start.elapsed() < Duration::from_secs(60) {
        let out = std::process::Command::new(harness::bin())
            .args(["sync", "--now"])
            .arg(&m.mnt)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        pulls += 1;
    }
    m.wait_all_synced();
    let log = m.log_text();
    assert!(
        !log.contains("DELETED_ON_CLOUD"),
        "a pushed file was taken for deleted in the cloud after {pulls} pulls:\n{}",
        log.lines()
            .filter(|l| l.contains("DELETED_ON_CLOUD"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        tree(&m.cloud, &skip).len(),
        2020,
        "20 folders and 2000 files"
    );
    assert!(pulls > 1, "only {pulls} pulls ran during the upload");
}

/// `sync --wait` on a folder holding a conflict copy exits 1 and names the copy, as the man
/// page says, though everything in it reached the cloud; the folder itself reads `synced`.
#[test]
fn sync_wait_exits_1_while_a_conflict_copy_is_below_the_path() {
    let mut m = Mount::start(&["--pull-interval", "1h"]);
    fs::create_dir_all(m.m("docs")).unwrap();
    fs::write(m.m("docs/report.txt"), "v1").unwrap();
    fs::write(m.m("other.txt"), "o").unwrap();
    m.wait_all_synced();
    m.unmount();
    fs::write(m.o("docs/report.txt"), "local edit").unwrap();
    fs::write(m.c("docs/report.txt"), "cloud edit!").unwrap();
    m.spawn();
    let wait = |p: &Path| {
        std::process::Command::new(harness::bin())
            .args(["sync", "--wait", "--timeout", "30s"])
            .arg(p)
            .output()
            .unwrap()
    };
    let now = std::process::Command::new(harness::bin())
        .args(["sync", "--now"])
        .arg(&m.mnt)
        .output()
        .unwrap();
    assert!(now.status.success(), "{now:?}");
    let out = wait(&m.m("docs"));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("(conflict ") && err.contains("report.txt"),
        "{err}"
    );
    assert_eq!(wait(&m.mnt).status.code(), Some(1));
    // A path with no conflict copy below it is fine.
    assert_eq!(wait(&m.m("other.txt")).status.code(), Some(0));
    assert_eq!(
        xattr(&m.m("docs"), "user.cloudsync.status").as_deref(),
        Some("synced")
    );
}
