//! The whole product against real WebDAV servers: the `cloudsync` binary mounted through real
//! FUSE, syncing to SabreDAV (plain, and with Nextcloud-style folder ETags), Apache `mod_dav`
//! and `rclone serve webdav`, with a fault-injecting proxy in between where a test needs one.
//!
//! Every test starts its own servers, proxies and mounts on free loopback ports and in its own
//! temporary folders, so the tests run in parallel. Where a scenario makes sense for several
//! server profiles, the profiles run side by side in threads of one test, and a failure names
//! the profile.

mod harness;
mod support;

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use harness::{
    Mount, conflict_copies, diff, is_mounted, same_file, tree, uploaded_paths, wait_until,
    write_pseudo_random,
};
use support::proxy::{Fault, FaultProxy};
use support::webdav::{DavServer, Profile};

/// Size of the file the daemon is killed in the middle of uploading. Large enough that the
/// upload takes a while, small enough for CI.
const BIG_UPLOAD: usize = 200 << 20;

/// Number of small files in the burst the daemon is killed in the middle of.
const BURST_FILES: usize = 1000;

/// Flags every mount here gets: pull every second so cloud changes show quickly.
const FLAGS: &[&str] = &["--pull-interval", "1s"];

/// A password the auth tests use; it must never show in logs or process listings.
const SECRET: &str = "s3cret-Pa55word-never-shown";

/// The profiles a scenario runs against when every server makes sense.
fn all_profiles() -> Vec<Profile> {
    vec![
        Profile::Sabre,
        Profile::SabreFolderEtags,
        Profile::Apache,
        Profile::Rclone,
    ]
}

/// Names that are not content: editor temporaries, conflict copies (on-premise only),
/// downloads in progress, and the servers' own bookkeeping (SabreDAV's property files,
/// Apache's property folders and the temporary files a killed Apache leaves behind, which it
/// never lists).
fn skip(name: &str) -> bool {
    harness::not_content(name)
        || name == ".sabredav"
        || name == ".DAV"
        || name.starts_with(".davfs.tmp")
}

/// Runs `f` for each profile in its own thread, all at once, and fails naming the profiles
/// that failed (their panics and daemon logs are printed above).
fn for_profiles(profiles: &[Profile], f: impl Fn(Profile) + Sync) {
    let failed: Vec<String> = std::thread::scope(|sc| {
        let handles: Vec<_> = profiles
            .iter()
            .map(|p| {
                let f = &f;
                let p2 = p.clone();
                let h = std::thread::Builder::new()
                    .name(format!("{p:?}"))
                    .spawn_scoped(sc, move || f(p2))
                    .unwrap();
                (p.clone(), h)
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|(p, h)| h.join().is_err().then(|| format!("{p:?}")))
            .collect()
    });
    assert!(
        failed.is_empty(),
        "failed for {failed:?} (see the panics above)"
    );
}

fn ino(p: &Path) -> u64 {
    fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .ino()
}

/// Waits until the mount says everything is synced and the server's data directory holds
/// exactly the on-premise tree (names, folders, bytes), skipping names `extra_skip` accepts.
fn wait_converged_skip(
    m: &Mount,
    s: &DavServer,
    timeout: Duration,
    extra_skip: &dyn Fn(&str) -> bool,
) {
    let sk = |n: &str| skip(n) || extra_skip(n);
    let t = Instant::now();
    loop {
        let st = m.status("");
        if st.as_deref() == Some("synced") {
            let (a, b) = (tree(&m.onprem, &sk), tree(&s.data, &sk));
            if a == b {
                return;
            }
            if t.elapsed() > timeout {
                panic!(
                    "synced, but the server differs from on-premise after {timeout:?}:\n{}",
                    diff(&a, &b)
                );
            }
        } else if t.elapsed() > timeout {
            let (a, b) = (tree(&m.onprem, &sk), tree(&s.data, &sk));
            panic!(
                "not synced after {timeout:?}: the mount root is {st:?}\n{}",
                diff(&a, &b)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_converged(m: &Mount, s: &DavServer) {
    wait_converged_skip(m, s, Duration::from_secs(45), &|_| false);
}

/// Waits for the status of `rel` to be `want`.
fn wait_status(m: &Mount, rel: &str, want: &str, timeout: Duration) {
    wait_until(timeout, &format!("{rel} to be {want}"), || {
        m.status(rel).as_deref() == Some(want)
    });
}

// ---------------------------------------------------------------------------------------------
// 1. Push: files, folders, renames and deletes reach the server, renames as moves.

fn push_scenario(p: Profile) {
    let s = DavServer::start(p);
    let m = Mount::start_with_cloud(&s.url, FLAGS, &[]);
    fs::write(m.m("a.txt"), b"alpha\n").unwrap();
    fs::create_dir_all(m.m("dir/sub/deeper")).unwrap();
    fs::write(m.m("dir/c.txt"), b"c").unwrap();
    write_pseudo_random(&m.m("dir/sub/b.bin"), 300_000, 7);
    fs::write(m.m("dir/sub/deeper/empty"), b"").unwrap();
    fs::write(m.m("sp ace ü #1 100%.txt"), "odd name ✓".as_bytes()).unwrap();
    fs::create_dir(m.m("empty dir")).unwrap();
    wait_converged(&m, &s);
    assert_eq!(fs::read(s.disk("a.txt")).unwrap(), b"alpha\n");
    let (ino_a, ino_dir, ino_b) = (
        ino(&s.disk("a.txt")),
        ino(&s.disk("dir")),
        ino(&s.disk("dir/sub/b.bin")),
    );

    // A file renamed into another folder: a MOVE, so the server keeps the same file.
    fs::rename(m.m("a.txt"), m.m("dir/renamed.txt")).unwrap();
    wait_converged(&m, &s);
    assert!(!s.disk("a.txt").exists());
    assert_eq!(
        ino(&s.disk("dir/renamed.txt")),
        ino_a,
        "the server got a new file, not a move"
    );

    // A folder renamed: one MOVE of the whole subtree.
    fs::rename(m.m("dir"), m.m("dir2")).unwrap();
    wait_converged(&m, &s);
    assert!(!s.disk("dir").exists());
    assert_eq!(ino(&s.disk("dir2")), ino_dir, "the folder was not moved");
    assert_eq!(ino(&s.disk("dir2/sub/b.bin")), ino_b);
    assert_eq!(ino(&s.disk("dir2/renamed.txt")), ino_a);
    let ups = uploaded_paths(&m.log_text());
    for (path, n) in [
        ("a.txt", 1),
        ("dir/sub/b.bin", 1),
        ("dir/renamed.txt", 0),
        ("dir2/renamed.txt", 0),
        ("dir2/sub/b.bin", 0),
        ("dir2/c.txt", 0),
    ] {
        assert_eq!(
            ups.get(path).copied().unwrap_or(0),
            n,
            "uploads of {path}: {ups:?}"
        );
    }

    // An update: one conditional PUT of the same file.
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(m.m("dir2/c.txt"))
        .unwrap();
    f.write_all(b" and more").unwrap();
    drop(f);
    wait_converged(&m, &s);
    assert_eq!(fs::read(s.disk("dir2/c.txt")).unwrap(), b"c and more");
    assert_eq!(m.uploads_of("dir2/c.txt"), 1);

    // Deletes of a file, a folder with content, and an empty folder.
    fs::remove_file(m.m("dir2/renamed.txt")).unwrap();
    fs::remove_dir_all(m.m("dir2/sub")).unwrap();
    fs::remove_dir(m.m("empty dir")).unwrap();
    wait_converged(&m, &s);
    assert!(!s.disk("dir2/renamed.txt").exists());
    assert!(!s.disk("dir2/sub").exists());
    assert!(!s.disk("empty dir").exists());
    assert!(conflict_copies(&m.onprem).is_empty());
}

#[test]
fn push_files_folders_renames_and_deletes() {
    for_profiles(&all_profiles(), push_scenario);
}

// ---------------------------------------------------------------------------------------------
// 2. Pull: cloud changes show in the mount; a conflict keeps both versions; folder ETags
//    never hide a change.

fn pull_scenario(p: Profile) {
    let s = DavServer::start(p);
    let m = Mount::start_with_cloud(&s.url, FLAGS, &[]);
    fs::write(m.m("shared.txt"), b"v1 from on-premise\n").unwrap();
    wait_converged(&m, &s);

    // Made in the cloud: a new file, a new nested folder, an edit.
    s.write_on_disk("from cloud.txt", b"made in the cloud");
    s.write_on_disk("cloud dir/deep/x.txt", b"deep down");
    s.write_on_disk("shared.txt", b"v2 from the cloud, longer\n");
    wait_until(
        Duration::from_secs(20),
        "cloud changes in the mount",
        || {
            fs::read(m.m("from cloud.txt")).ok().as_deref() == Some(b"made in the cloud")
                && fs::read(m.m("cloud dir/deep/x.txt")).ok().as_deref() == Some(b"deep down")
                && fs::read(m.m("shared.txt")).ok().as_deref()
                    == Some(b"v2 from the cloud, longer\n")
        },
    );
    wait_converged(&m, &s);
    assert!(
        m.uploads_of("from cloud.txt") == 0,
        "a download was pushed back"
    );
    assert_eq!(m.status("cloud dir/deep/x.txt").as_deref(), Some("synced"));

    // Deleted in the cloud: kept on-premise (onprem_delete is off), marked DELETED_ON_CLOUD.
    fs::remove_file(s.disk("from cloud.txt")).unwrap();
    wait_status(&m, "from cloud.txt", "failed", Duration::from_secs(20));
    let err = harness::xattr(&m.m("from cloud.txt"), "user.cloudsync.error").unwrap_or_default();
    assert!(err.starts_with("DELETED_ON_CLOUD"), "{err}");
    assert_eq!(
        fs::read(m.o("from cloud.txt")).unwrap(),
        b"made in the cloud"
    );
}

#[test]
fn pull_new_files_folders_edits_and_deletes() {
    for_profiles(&all_profiles(), pull_scenario);
}

/// Files new in the cloud are downloaded several at a time. While every download fails (the
/// server answers 503 to GET), none is half made on-premise; once downloads work again, all
/// arrive, and none is pushed back or taken for a conflict.
fn failed_downloads_scenario(p: Profile) {
    let s = DavServer::start(p.clone());
    let proxy = FaultProxy::start(s.addr);
    let url = DavServer::url_for(&p, proxy.addr);
    let name = |i: usize| format!("new/d{}/f{i:02}.txt", i % 3);
    let body = |i: usize| format!("cloud file {i}\n").repeat(1 + i % 5);
    for i in 0..60 {
        s.write_on_disk(&name(i), body(i).as_bytes());
    }
    proxy.set(Fault::Only("GET".into(), Box::new(Fault::Status(503))));
    let m = Mount::start_with_cloud(&url, &["--pull-interval", "1s"], &[]);
    let _show = ShowOnPanic(&proxy);
    wait_until(Duration::from_secs(20), "the cloud folders", || {
        (0..3).all(|d| m.m(&format!("new/d{d}")).is_dir())
    });
    std::thread::sleep(Duration::from_secs(2));
    let here = tree(&m.onprem, &|_| false);
    assert!(
        here.iter()
            .all(|(p, _)| !p.ends_with(".txt") && !p.contains(".cloudsync-dl-")),
        "files appeared while every download failed: {here:?}"
    );
    proxy.set(Fault::Pass);
    proxy.sever();
    wait_until(Duration::from_secs(45), "all 60 cloud files", || {
        (0..60).all(|i| fs::read_to_string(m.m(&name(i))).ok() == Some(body(i)))
    });
    wait_converged(&m, &s);
    assert!(conflict_copies(&m.onprem).is_empty());
    for i in 0..60 {
        assert_eq!(m.uploads_of(&name(i)), 0, "{} was pushed back", name(i));
    }
}

/// While a cloud edit is being downloaded, the file and its folders read `downloading`, and
/// the mount still shows the old content; then `synced` and the new content.
#[test]
fn a_file_being_downloaded_reads_downloading() {
    let s = DavServer::start(Profile::Sabre);
    let proxy = FaultProxy::start(s.addr);
    let url = DavServer::url_for(&Profile::Sabre, proxy.addr);
    let m = Mount::start_with_cloud(&url, &["--pull-interval", "1s"], &[]);
    let _show = ShowOnPanic(&proxy);
    fs::create_dir_all(m.m("dir")).unwrap();
    fs::write(m.m("dir/doc.txt"), b"v1").unwrap();
    wait_converged(&m, &s);
    proxy.set(Fault::Only(
        "GET".into(),
        Box::new(Fault::Delay(Duration::from_secs(3))),
    ));
    proxy.sever();
    s.write_on_disk("dir/doc.txt", b"v2 from the cloud");
    wait_status(&m, "dir/doc.txt", "downloading", Duration::from_secs(20));
    assert_eq!(m.status("dir").as_deref(), Some("downloading"));
    assert_eq!(m.status("").as_deref(), Some("downloading"));
    assert_eq!(fs::read(m.m("dir/doc.txt")).unwrap(), b"v1");
    wait_status(&m, "dir/doc.txt", "synced", Duration::from_secs(20));
    assert_eq!(fs::read(m.m("dir/doc.txt")).unwrap(), b"v2 from the cloud");
    assert_eq!(m.status("dir").as_deref(), Some("synced"));
}

/// With folder ETags too: a folder whose files were left for later is walked again.
#[test]
fn new_cloud_files_arrive_after_downloads_failed_for_a_while() {
    for_profiles(
        &[Profile::Sabre, Profile::SabreFolderEtags],
        failed_downloads_scenario,
    );
}

/// Writes `body` to `url` with a plain HTTP PUT, as another WebDAV client of the server would,
/// and returns once the server has answered.
fn put_direct(url: &str, body: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("body");
    fs::write(&f, body).unwrap();
    // No `Expect: 100-continue`: SabreDAV under php -S never answers it, and curl would wait a
    // second before sending the body.
    let out = Command::new("curl")
        .args(["-sS", "-f", "-o", "/dev/null", "-H", "Expect:", "-T"])
        .arg(&f)
        .arg(url)
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "PUT {url} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Another client edits a file deep in the tree (through the server, so the server updates
/// whatever it keeps): the edit reaches the mount.
fn deep_edit_scenario(p: Profile) {
    let s = DavServer::start(p);
    let m = Mount::start_with_cloud(&s.url, FLAGS, &[]);
    fs::create_dir_all(m.m("dir/sub")).unwrap();
    fs::write(m.m("dir/sub/x.txt"), b"x, version one\n").unwrap();
    fs::write(m.m("top.txt"), b"top").unwrap();
    wait_converged(&m, &s);
    // Let a few pulls pass, so that the servers' folder tags settle (Apache's are weak for a
    // second after a change).
    std::thread::sleep(Duration::from_secs(2));
    put_direct(
        &format!("{}dir/sub/x.txt", s.url),
        b"x, version two from another client\n",
    );
    wait_until(
        Duration::from_secs(15),
        "the deep cloud edit in the mount",
        || {
            fs::read(m.m("dir/sub/x.txt")).ok().as_deref()
                == Some(b"x, version two from another client\n")
        },
    );
    wait_converged(&m, &s);
}

#[test]
fn cloud_edit_deep_in_the_tree_is_pulled() {
    for_profiles(
        &[Profile::Sabre, Profile::SabreFolderEtags, Profile::Rclone],
        deep_edit_scenario,
    );
}

#[test]
fn cloud_edit_deep_in_the_tree_is_pulled_from_apache() {
    for_profiles(&[Profile::Apache], deep_edit_scenario);
}

/// Prints what went through the proxy when the test fails.
struct ShowOnPanic<'a>(&'a FaultProxy);

impl Drop for ShowOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- requests through the proxy ---\n{}",
                self.0.exchanges().join("\n")
            );
        }
    }
}

/// Both sides edit the same file: the cloud version wins the name, the on-premise edit is
/// kept beside it as a conflict copy, and the cloud copy is never overwritten.
fn conflict_scenario(p: Profile) {
    let s = DavServer::start(p.clone());
    let proxy = FaultProxy::start(s.addr);
    proxy.set(Fault::Logged);
    let url = DavServer::url_for(&p, proxy.addr);
    // A push delay long enough that the cloud edit lands before the on-premise edit is pushed.
    let m = Mount::start_with_cloud(&url, &["--pull-interval", "1s", "--push-delay", "1s"], &[]);
    let _show = ShowOnPanic(&proxy);
    fs::write(m.m("shared.txt"), b"v1 from on-premise\n").unwrap();
    fs::write(m.m("other.txt"), b"unrelated").unwrap();
    wait_converged(&m, &s);
    fs::write(m.m("shared.txt"), b"v2 edited on-premise\n").unwrap();
    put_direct(
        &format!("{}shared.txt", s.url),
        b"v2 edited in the cloud at the same time\n",
    );
    wait_until(Duration::from_secs(20), "a conflict copy", || {
        !conflict_copies(&m.onprem).is_empty()
    });
    let copies = conflict_copies(&m.onprem);
    assert_eq!(copies.len(), 1, "{copies:?}");
    let copy = &copies[0];
    assert!(copy.starts_with("shared (conflict "), "{copy}");
    assert_eq!(fs::read(m.m(copy)).unwrap(), b"v2 edited on-premise\n");
    wait_until(
        Duration::from_secs(20),
        "the cloud version in place",
        || {
            fs::read(m.m("shared.txt")).ok().as_deref()
                == Some(b"v2 edited in the cloud at the same time\n")
        },
    );
    assert_eq!(
        fs::read(s.disk("shared.txt")).unwrap(),
        b"v2 edited in the cloud at the same time\n",
        "the cloud edit was overwritten"
    );
    assert_eq!(m.status(copy).as_deref(), Some("conflict"));
    wait_status(&m, "shared.txt", "synced", Duration::from_secs(20));
    // The conflict copy stays on-premise only; everything else converges.
    wait_converged(&m, &s);
    assert!(
        conflict_copies(&s.data).is_empty(),
        "a conflict copy reached the cloud"
    );
}

#[test]
fn conflict_keeps_both_versions() {
    for_profiles(
        &[Profile::Sabre, Profile::Apache, Profile::Rclone],
        conflict_scenario,
    );
}

#[test]
fn conflict_keeps_both_versions_with_folder_etags() {
    for_profiles(&[Profile::SabreFolderEtags], conflict_scenario);
}

// ---------------------------------------------------------------------------------------------
// 3. Offline from the start: the mount works, and the queue drains once the server appears.

fn offline_start_scenario(p: Profile) {
    let port = DavServer::unused_port();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let url = DavServer::url_for(&p, addr);
    let m = Mount::start_with_cloud(&url, FLAGS, &[]);
    fs::write(m.m("a.txt"), b"written offline").unwrap();
    fs::create_dir(m.m("d")).unwrap();
    fs::write(m.m("d/b.txt"), b"b").unwrap();
    wait_status(&m, "a.txt", "offline", Duration::from_secs(15));
    // The mount works while the cloud is away.
    assert_eq!(fs::read(m.m("a.txt")).unwrap(), b"written offline");
    fs::rename(m.m("d/b.txt"), m.m("d/c.txt")).unwrap();
    fs::write(m.m("d/c.txt"), b"c, edited offline").unwrap();
    let names: BTreeSet<String> = fs::read_dir(m.m("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names, BTreeSet::from(["c.txt".to_string()]));
    wait_status(&m, "d/c.txt", "offline", Duration::from_secs(15));
    let root = m.status("").unwrap_or_default();
    assert!(
        root == "offline" || root == "uploading" || root == "pending",
        "root is {root}"
    );

    let s = DavServer::start_on(p, port);
    wait_converged(&m, &s);
    assert_eq!(fs::read(s.disk("d/c.txt")).unwrap(), b"c, edited offline");
    let ups = uploaded_paths(&m.log_text());
    assert_eq!(ups.get("a.txt"), Some(&1), "{ups:?}");
    assert_eq!(ups.get("d/c.txt"), Some(&1), "{ups:?}");
    assert_eq!(ups.get("d/b.txt"), None, "{ups:?}");
}

#[test]
fn offline_from_the_start_then_the_server_appears() {
    for_profiles(&all_profiles(), offline_start_scenario);
}

// ---------------------------------------------------------------------------------------------
// 4. The server dies in the middle of a sync and comes back.

fn server_dies_scenario(p: Profile) {
    let mut s = DavServer::start(p);
    let m = Mount::start_with_cloud(&s.url, FLAGS, &[]);
    fs::create_dir(m.m("batch")).unwrap();
    for i in 0..40 {
        fs::write(
            m.m(&format!("batch/f{i:02}.txt")),
            format!("file {i}\n").repeat(50 + i),
        )
        .unwrap();
    }
    write_pseudo_random(&m.m("medium.bin"), 20 << 20, 3);
    wait_until(Duration::from_secs(20), "some uploads", || {
        uploaded_paths(&m.log_text()).len() >= 5
    });
    s.stop();
    for i in 40..50 {
        fs::write(
            m.m(&format!("batch/f{i:02}.txt")),
            format!("written while down {i}\n"),
        )
        .unwrap();
    }
    wait_status(&m, "batch/f45.txt", "offline", Duration::from_secs(15));
    std::thread::sleep(Duration::from_millis(500));
    s.restart();
    wait_converged(&m, &s);
    assert!(
        same_file(&m.o("medium.bin"), &s.disk("medium.bin")),
        "medium.bin differs"
    );
    let copies = conflict_copies(&m.onprem);
    assert!(
        copies.is_empty(),
        "conflict copies after a server restart: {copies:?}"
    );
}

#[test]
fn server_killed_mid_sync_and_restarted() {
    // rclone is left out: a PUT it was killed in the middle of leaves a partial file that then
    // wins a conflict (see server_killed_in_the_middle_of_an_upload_and_restarted_rclone,
    // which shows the same bug deterministically).
    for_profiles(
        &[Profile::Sabre, Profile::SabreFolderEtags, Profile::Apache],
        server_dies_scenario,
    );
}

/// Size of the file whose upload the server dies in the middle of.
const MID_UPLOAD: usize = 3 << 20;

/// The server is killed while it receives a file (the proxy slows the upload down so that
/// the kill lands in the middle), then comes back: the file arrives whole, once, and nothing
/// the dead server left behind ends up on-premise.
fn server_dies_mid_upload_scenario(p: Profile) {
    let mut s = DavServer::start(p.clone());
    let proxy = FaultProxy::start(s.addr);
    proxy.set(Fault::Logged);
    let url = DavServer::url_for(&p, proxy.addr);
    let m = Mount::start_with_cloud(&url, FLAGS, &[]);
    let _show = ShowOnPanic(&proxy);
    fs::write(m.m("first.txt"), b"first").unwrap();
    wait_converged(&m, &s);
    proxy.set(Fault::Only(
        "PUT".into(),
        Box::new(Fault::Throttle(1 << 20)),
    ));
    write_pseudo_random(&m.m("mid.bin"), MID_UPLOAD, 5);
    wait_until(Duration::from_secs(20), "the PUT to start", || {
        proxy
            .requests()
            .iter()
            .any(|r| r.starts_with("PUT ") && r.contains("mid.bin"))
    });
    std::thread::sleep(Duration::from_millis(1200));
    s.stop();
    proxy.set(Fault::Logged);
    wait_status(&m, "mid.bin", "offline", Duration::from_secs(15));
    s.restart();
    wait_converged_skip(&m, &s, Duration::from_secs(40), &|_| false);
    let want = tempfile::tempdir().unwrap();
    write_pseudo_random(&want.path().join("mid.bin"), MID_UPLOAD, 5);
    assert!(
        same_file(&m.o("mid.bin"), &want.path().join("mid.bin")),
        "the on-premise mid.bin is no longer what was written ({} bytes)",
        fs::metadata(m.o("mid.bin")).map(|m| m.len()).unwrap_or(0)
    );
    assert!(
        same_file(&m.o("mid.bin"), &s.disk("mid.bin")),
        "mid.bin differs"
    );
    let copies = conflict_copies(&m.onprem);
    assert!(copies.is_empty(), "conflict copies: {copies:?}");
    // Nothing but our files on-premise (downloads in progress aside).
    let names: Vec<String> = tree(&m.onprem, &|n| n.starts_with(".cloudsync-dl-"))
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(
        names,
        ["first.txt", "mid.bin"],
        "on-premise holds more than was written"
    );
}

#[test]
fn server_killed_in_the_middle_of_an_upload_and_restarted() {
    for_profiles(
        &[Profile::Sabre, Profile::SabreFolderEtags, Profile::Apache],
        server_dies_mid_upload_scenario,
    );
}

#[test]
fn server_killed_in_the_middle_of_an_upload_and_restarted_rclone() {
    for_profiles(&[Profile::Rclone], server_dies_mid_upload_scenario);
}

// ---------------------------------------------------------------------------------------------
// 5. Authentication: a refused password fails without a retry storm; no password ever shows.

/// Panics when `secret` (or its Basic form) shows in the daemon log, in any process's command
/// line, or in the state directory.
fn assert_never_shown(m: &Mount, user: &str, secret: &str) {
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
    let log = m.log_text();
    assert!(!log.contains(secret), "the password is in the daemon log");
    assert!(
        !log.contains(&basic),
        "the Basic credentials are in the daemon log"
    );
    let ps = Command::new("ps")
        .args(["-eww", "-o", "pid=,args="])
        .output()
        .unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(!ps.contains(secret), "the password shows in ps");
    let cmdline = fs::read(format!("/proc/{}/cmdline", m.pid())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(secret));
    for p in ["", "a.txt"] {
        let err = harness::xattr(&m.m(p), "user.cloudsync.error").unwrap_or_default();
        assert!(!err.contains(secret), "the password is in an error xattr");
    }
    for (p, content) in tree(&m.state, &|_| false) {
        let text = String::from_utf8_lossy(&content);
        assert!(
            !text.contains(secret) && !text.contains(&basic),
            "the password is stored in the state dir ({p})"
        );
    }
}

/// A SabreDAV server behind Basic auth, a logging proxy in front of it, and a mount through the
/// proxy with a refused password (from the environment).
fn wrong_password_mount() -> (DavServer, FaultProxy, Mount) {
    let s = DavServer::start(Profile::SabreAuth {
        user: "alice".into(),
        password: "the-right-one".into(),
    });
    let proxy = FaultProxy::start(s.addr);
    proxy.set(Fault::Logged);
    let m = Mount::start_with_cloud(
        &proxy.url("/dav/"),
        &["--pull-interval", "1s", "--user", "alice"],
        &[("CLOUDSYNC_PASSWORD", SECRET)],
    );
    (s, proxy, m)
}

#[test]
fn wrong_password_makes_no_retry_storm_and_never_shows() {
    let (s, proxy, m) = wrong_password_mount();
    fs::write(m.m("a.txt"), b"a").unwrap();
    wait_until(Duration::from_secs(10), "a 401", || {
        proxy.exchanges().iter().any(|e| e.contains(" 401 "))
    });
    // Over the next seconds, with more writes queued, the daemon must not hammer the server.
    std::thread::sleep(Duration::from_secs(1));
    let before = proxy.requests().len();
    let window = Duration::from_secs(5);
    for i in 0..20 {
        fs::write(m.m(&format!("more{i}.txt")), b"more").unwrap();
    }
    std::thread::sleep(window);
    let reqs = proxy.requests();
    let during = &reqs[before..];
    // At most a pull a second; pushes stay paused.
    assert!(
        during.len() <= 2 * window.as_secs() as usize + 4,
        "{} requests in {window:?} after a 401:\n{}",
        during.len(),
        during.join("\n")
    );
    // The first refusal may answer a PUT (when the push of a.txt goes out before the pull at
    // start is refused); after it, no PUT is sent.
    assert!(
        reqs.iter().filter(|r| r.starts_with("PUT ")).count() <= 1,
        "PUTs were sent after credentials were refused: {reqs:?}"
    );
    for p in ["a.txt", "more0.txt", "more19.txt"] {
        let st = m.status(p).unwrap_or_default();
        assert_ne!(st, "synced", "{p} is {st}");
    }
    assert_eq!(fs::read(m.m("a.txt")).unwrap(), b"a", "the mount works");
    assert!(s.disk("a.txt").metadata().is_err());
    assert_never_shown(&m, "alice", SECRET);
}

/// A file edited in the cloud is renamed through the mount while its download is under way.
/// The download is never renamed onto the old name: the rename goes to the cloud as a move,
/// the next pull brings the cloud's content to the new name, and the two sides converge with
/// no stray copy under either name.
#[test]
fn a_rename_through_the_mount_during_a_download_converges() {
    let s = DavServer::start(Profile::Sabre);
    let proxy = FaultProxy::start(s.addr);
    proxy.set(Fault::Logged);
    let m = Mount::start_with_cloud(&proxy.url("/dav/"), &["--pull-interval", "1h"], &[]);
    fs::write(m.m("r-72.txt"), b"old content").unwrap();
    wait_converged(&m, &s);
    s.write_on_disk("r-72.txt", b"new content from the cloud");
    proxy.set(Fault::Only(
        "GET".into(),
        Box::new(Fault::Delay(Duration::from_secs(2))),
    ));
    let mnt = m.mnt.clone();
    let pull = std::thread::spawn(move || {
        Command::new(harness::bin())
            .args(["sync", "--now"])
            .arg(&mnt)
            .output()
            .unwrap()
    });
    wait_until(Duration::from_secs(20), "the GET", || {
        proxy.requests().iter().any(|r| r.starts_with("GET "))
    });
    fs::rename(m.m("r-72.txt"), m.m("r-79.txt")).unwrap();
    let _ = pull.join().unwrap();
    proxy.set(Fault::Logged);
    wait_until(
        Duration::from_secs(30),
        "the new name with the cloud's content",
        || {
            let _ = Command::new(harness::bin())
                .args(["sync", "--now"])
                .arg(&m.mnt)
                .output();
            fs::read(m.o("r-79.txt")).is_ok_and(|c| c == b"new content from the cloud")
        },
    );
    wait_converged(&m, &s);
    assert!(!m.o("r-72.txt").exists(), "a stray copy under the old name");
    assert!(!s.disk("r-72.txt").exists());
    assert_eq!(
        fs::read(s.disk("r-79.txt")).unwrap(),
        b"new content from the cloud"
    );
    assert_eq!(m.status("r-79.txt").as_deref(), Some("synced"));
}

/// A 412 that no cloud change explains (a proxy's, say) sends the file to the reconciler, which
/// finds nothing changed in the cloud. The push must not be dropped: the edit still reaches the
/// cloud, with no conflict copy.
#[test]
fn a_spurious_412_never_drops_the_push() {
    let s = DavServer::start(Profile::Sabre);
    let proxy = FaultProxy::start(s.addr);
    proxy.set(Fault::Logged);
    let m = Mount::start_with_cloud(&proxy.url("/dav/"), &["--pull-interval", "1h"], &[]);
    fs::write(m.m("f.txt"), b"v1").unwrap();
    wait_status(&m, "f.txt", "synced", Duration::from_secs(20));
    proxy.set(Fault::Only("PUT".into(), Box::new(Fault::Status(412))));
    fs::write(m.m("f.txt"), b"v2, edited").unwrap();
    wait_until(Duration::from_secs(20), "the refused PUT", || {
        proxy.requests().iter().any(|r| r.starts_with("PUT "))
    });
    std::thread::sleep(Duration::from_millis(500));
    proxy.set(Fault::Logged);
    let out = Command::new(harness::bin())
        .args(["sync", "--wait", "--timeout", "30s"])
        .arg(m.m("f.txt"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}\n{}", m.log_text());
    wait_until(Duration::from_secs(20), "the edit in the cloud", || {
        fs::read(s.disk("f.txt")).is_ok_and(|c| c == b"v2, edited")
    });
    assert!(
        !fs::read_dir(&m.onprem).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("(conflict ")),
        "no conflict copy"
    );
}

/// A 401 in the middle of a pull stops it at once: 200 files new in the cloud, every GET
/// refused, and one `sync --now` sends no more than the downloads already under way, then
/// pulling and pushing pause (a retry storm can trip a server's brute-force lockout).
#[test]
fn a_401_during_a_pull_stops_it_at_once() {
    let s = DavServer::start(Profile::Sabre);
    for i in 0..200 {
        s.write_on_disk(&format!("new-{i:03}.txt"), b"new in the cloud");
    }
    let proxy = FaultProxy::start(s.addr);
    proxy.set(Fault::Only("GET".into(), Box::new(Fault::Status(401))));
    let m = Mount::start_with_cloud(
        &proxy.url("/dav/"),
        &["--pull-interval", "1h", "--transfers", "4"],
        &[],
    );
    let gets = || -> Vec<String> {
        proxy
            .requests()
            .into_iter()
            .filter(|r| r.starts_with("GET "))
            .collect()
    };
    // The pull at start: stopped by the first refusal, with at most the downloads under way.
    wait_until(Duration::from_secs(20), "the refusal", || {
        m.log_text().contains("refused the credentials")
    });
    std::thread::sleep(Duration::from_secs(2));
    let first = gets();
    assert!(
        !first.is_empty() && first.len() <= 4,
        "{} GETs were sent by one pull with refused credentials:\n{}",
        first.len(),
        first.join("\n")
    );
    // A sync request tries again, once: the same bound.
    let out = Command::new(harness::bin())
        .args(["sync", "--now", m.mnt.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success(), "sync --now says the refusal");
    std::thread::sleep(Duration::from_secs(1));
    let all = gets();
    assert!(
        all.len() <= first.len() + 4,
        "{} GETs after a sync request:\n{}",
        all.len() - first.len(),
        all.join("\n")
    );
    assert!(
        m.log_text().contains("refused the credentials"),
        "{}",
        m.log_text()
    );
}

#[test]
fn wrong_password_shows_authentication_error() {
    let (_s, _proxy, m) = wrong_password_mount();
    fs::write(m.m("a.txt"), b"a").unwrap();
    wait_status(&m, "a.txt", "failed", Duration::from_secs(15));
    let err = harness::xattr(&m.m("a.txt"), "user.cloudsync.error").unwrap_or_default();
    assert!(err.starts_with("AUTHENTICATION_ERROR"), "{err}");
}

#[test]
fn password_file_syncs_and_never_shows() {
    let s = DavServer::start(Profile::SabreAuth {
        user: "alice".into(),
        password: SECRET.into(),
    });
    let pw_dir = tempfile::tempdir().unwrap();
    let pw = pw_dir.path().join("password");
    fs::write(&pw, format!("{SECRET}\n")).unwrap();
    let pw_s = pw.to_string_lossy().to_string();
    let m = Mount::start_with_cloud(
        &s.url,
        &[
            "--pull-interval",
            "1s",
            "--user",
            "alice",
            "--password-file",
            &pw_s,
        ],
        &[],
    );
    fs::write(m.m("a.txt"), b"with credentials").unwrap();
    s.write_on_disk("from cloud.txt", b"pulled with credentials");
    wait_until(Duration::from_secs(20), "the pull", || {
        m.o("from cloud.txt").exists()
    });
    wait_converged(&m, &s);
    assert_eq!(fs::read(s.disk("a.txt")).unwrap(), b"with credentials");
    assert_never_shown(&m, "alice", SECRET);
}

// ---------------------------------------------------------------------------------------------
// 6. A fault proxy between the daemon and SabreDAV.

/// A SabreDAV server, a proxy in front of it (passing), and a mount through the proxy, with a
/// first file synced.
fn proxied(extra: &[&str]) -> (DavServer, FaultProxy, Mount) {
    let s = DavServer::start(Profile::Sabre);
    let proxy = FaultProxy::start(s.addr);
    // One request per connection: a new fault applies from the next request on.
    proxy.set(Fault::Logged);
    let mut flags = FLAGS.to_vec();
    flags.extend_from_slice(extra);
    let m = Mount::start_with_cloud(&proxy.url("/dav/"), &flags, &[]);
    fs::write(m.m("base.txt"), b"base\n").unwrap();
    wait_converged(&m, &s);
    (s, proxy, m)
}

/// A burst of `fault` while files are written and edited: they go `offline`, never `failed`,
/// and all arrive once the burst ends.
fn transient_burst(fault: Fault) {
    let (s, proxy, m) = proxied(&[]);
    proxy.set(fault.clone());
    for i in 0..5 {
        fs::write(m.m(&format!("n{i}.txt")), format!("new {i}")).unwrap();
    }
    fs::write(m.m("base.txt"), b"base, edited during the burst\n").unwrap();
    wait_status(&m, "n0.txt", "offline", Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(2));
    for i in 0..5 {
        let st = m.status(&format!("n{i}.txt")).unwrap_or_default();
        assert_ne!(st, "failed", "{fault:?} made n{i}.txt fail");
    }
    proxy.set(Fault::Logged);
    wait_converged(&m, &s);
    let ups = uploaded_paths(&m.log_text());
    for i in 0..5 {
        assert_eq!(ups.get(&format!("n{i}.txt")), Some(&1), "{ups:?}");
    }
    assert!(conflict_copies(&m.onprem).is_empty());
}

#[test]
fn transient_faults_are_offline_and_eventually_consistent() {
    type Scenario = Box<dyn Fn() + Sync>;
    let scenarios: Vec<(&str, Scenario)> = vec![
        ("503", Box::new(|| transient_burst(Fault::Status(503)))),
        ("500", Box::new(|| transient_burst(Fault::Status(500)))),
        ("reset", Box::new(|| transient_burst(Fault::Reset))),
        (
            "put-reset",
            Box::new(|| transient_burst(Fault::Only("PUT".into(), Box::new(Fault::Reset)))),
        ),
        (
            "delay",
            Box::new(|| {
                // Slow answers are not errors: everything syncs, just later.
                let (s, proxy, m) = proxied(&[]);
                proxy.set(Fault::Delay(Duration::from_millis(700)));
                for i in 0..4 {
                    fs::write(m.m(&format!("slow{i}.txt")), format!("slow {i}")).unwrap();
                }
                wait_converged(&m, &s);
                assert!(conflict_copies(&m.onprem).is_empty());
            }),
        ),
        (
            "truncated-get",
            Box::new(|| {
                // Downloads cut short never replace or create an on-premise file.
                let (s, proxy, m) = proxied(&[]);
                proxy.set(Fault::Only("GET".into(), Box::new(Fault::Truncate)));
                s.write_on_disk("base.txt", b"base, edited in the cloud\n");
                s.write_on_disk("new.txt", &vec![b'n'; 5000]);
                let t = Instant::now();
                while t.elapsed() < Duration::from_secs(3) {
                    assert_eq!(fs::read(m.o("base.txt")).unwrap(), b"base\n");
                    assert!(!m.o("new.txt").exists(), "a truncated download was kept");
                    std::thread::sleep(Duration::from_millis(50));
                }
                assert!(
                    proxy.requests().iter().any(|r| r.starts_with("GET ")),
                    "no download was tried"
                );
                proxy.set(Fault::Logged);
                wait_until(Duration::from_secs(20), "the downloads", || {
                    fs::read(m.m("base.txt")).ok().as_deref()
                        == Some(b"base, edited in the cloud\n")
                        && fs::read(m.m("new.txt")).ok() == Some(vec![b'n'; 5000])
                });
                wait_converged(&m, &s);
            }),
        ),
        (
            "chaos",
            Box::new(|| {
                // Faults change every few hundred milliseconds while files are written.
                let (s, proxy, m) = proxied(&[]);
                let faults = [
                    Fault::Status(500),
                    Fault::Pass,
                    Fault::Reset,
                    Fault::Status(503),
                    Fault::Delay(Duration::from_millis(300)),
                    Fault::Only("PROPFIND".into(), Box::new(Fault::Status(502))),
                    Fault::Only("PUT".into(), Box::new(Fault::Reset)),
                ];
                for round in 0..14 {
                    proxy.set(faults[round % faults.len()].clone());
                    fs::write(
                        m.m(&format!("c{}.txt", round % 5)),
                        format!("round {round}"),
                    )
                    .unwrap();
                    std::thread::sleep(Duration::from_millis(250));
                }
                proxy.set(Fault::Logged);
                wait_converged_skip(&m, &s, Duration::from_secs(45), &|_| false);
                assert!(conflict_copies(&m.onprem).is_empty());
            }),
        ),
    ];
    let failed: Vec<&str> = std::thread::scope(|sc| {
        let hs: Vec<_> = scenarios
            .iter()
            .map(|(name, f)| {
                (
                    *name,
                    std::thread::Builder::new()
                        .name(name.to_string())
                        .spawn_scoped(sc, f)
                        .unwrap(),
                )
            })
            .collect();
        hs.into_iter()
            .filter_map(|(n, h)| h.join().is_err().then_some(n))
            .collect()
    });
    assert!(
        failed.is_empty(),
        "failed: {failed:?} (see the panics above)"
    );
}

#[test]
fn insufficient_storage_fails_with_quota_limit_then_recovers() {
    let (s, proxy, m) = proxied(&[]);
    proxy.set(Fault::Only("PUT".into(), Box::new(Fault::Status(507))));
    fs::write(m.m("q.txt"), b"too much").unwrap();
    wait_status(&m, "q.txt", "failed", Duration::from_secs(15));
    let err = harness::xattr(&m.m("q.txt"), "user.cloudsync.error").unwrap_or_default();
    assert!(err.starts_with("QUOTA_LIMIT"), "{err}");
    assert_eq!(fs::read(m.m("q.txt")).unwrap(), b"too much");
    assert!(!s.disk("q.txt").exists());
    // A permanent failure is not retried on its own.
    let puts = |p: &FaultProxy| {
        p.requests()
            .iter()
            .filter(|r| r.starts_with("PUT "))
            .count()
    };
    let n = puts(&proxy);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        puts(&proxy),
        n,
        "a QUOTA_LIMIT failure was retried by itself"
    );
    // Space again, and the next change pushes it.
    proxy.set(Fault::Logged);
    fs::write(m.m("q.txt"), b"fits now").unwrap();
    wait_converged(&m, &s);
    assert_eq!(fs::read(s.disk("q.txt")).unwrap(), b"fits now");
}

// ---------------------------------------------------------------------------------------------
// 7. Crash safety: kill -9 in the middle of a large upload and of a burst of small writes.

/// kill -9 while a large file is being uploaded, restart: the file arrives whole, the files
/// synced before are not uploaded again, and nothing turns into a conflict.
fn kill9_large_upload_scenario(p: Profile) {
    let s = DavServer::start(p.clone());
    let proxy = FaultProxy::start(s.addr);
    proxy.set(Fault::Logged);
    let url = DavServer::url_for(&p, proxy.addr);
    let mut m = Mount::start_with_cloud(&url, FLAGS, &[]);
    let _show = ShowOnPanic(&proxy);
    for i in 0..5 {
        fs::write(m.m(&format!("small{i}.txt")), format!("small {i}")).unwrap();
    }
    wait_converged(&m, &s);
    write_pseudo_random(&m.m("big.bin"), BIG_UPLOAD, 11);
    wait_until(Duration::from_secs(60), "the big PUT to start", || {
        proxy
            .requests()
            .iter()
            .any(|r| r.starts_with("PUT ") && r.contains("/big.bin"))
    });
    std::thread::sleep(Duration::from_millis(300));
    let complete_before_kill = same_file(&m.o("big.bin"), &s.disk("big.bin"));
    m.kill9();
    eprintln!("{p:?}: killed; the server had the whole file already: {complete_before_kill}");
    let mark = m.log_text().len();
    m.spawn();
    let is_big = |n: &str| n == "big.bin";
    wait_converged_skip(&m, &s, Duration::from_secs(120), &is_big);
    wait_status(&m, "big.bin", "synced", Duration::from_secs(120));
    let want = tempfile::tempdir().unwrap();
    write_pseudo_random(&want.path().join("big.bin"), BIG_UPLOAD, 11);
    assert!(
        same_file(&m.o("big.bin"), &want.path().join("big.bin")),
        "the on-premise big.bin is no longer what was written ({} bytes)",
        fs::metadata(m.o("big.bin")).map(|m| m.len()).unwrap_or(0)
    );
    drop(want);
    assert!(
        same_file(&m.o("big.bin"), &s.disk("big.bin")),
        "big.bin on the server differs"
    );
    let after = uploaded_paths(&m.log_text()[mark..]);
    assert!(
        after.keys().all(|p| p == "big.bin"),
        "synced files were uploaded again after the restart: {after:?}"
    );
    assert!(after.get("big.bin").copied().unwrap_or(0) <= 1, "{after:?}");
    let copies = conflict_copies(&m.onprem);
    assert!(copies.is_empty(), "conflict copies: {copies:?}");
}

#[test]
fn kill9_in_the_middle_of_a_large_upload() {
    for_profiles(
        &[Profile::Sabre, Profile::Apache],
        kill9_large_upload_scenario,
    );
}

#[test]
#[ignore = "rclone serve webdav answers 423 Locked for minutes after its uploader is killed mid-PUT; the daemon keeps the file offline and retries, and nothing is lost, but the test cannot wait that long"]
fn kill9_in_the_middle_of_a_large_upload_rclone() {
    for_profiles(&[Profile::Rclone], kill9_large_upload_scenario);
}

#[test]
fn kill9_in_the_middle_of_a_burst_of_small_writes() {
    let s = DavServer::start(Profile::Sabre);
    let mut m = Mount::start_with_cloud(&s.url, FLAGS, &[]);
    let name = |i: usize| format!("burst/d{:02}/f{i:04}.txt", i / 100);
    let content = |i: usize, round: u8| format!("file {i} round {round}\n").repeat(1 + i % 7);
    let first_missing = std::thread::scope(|sc| {
        let writer = sc.spawn(|| {
            for i in 0..BURST_FILES {
                if i % 100 == 0 && fs::create_dir_all(m.m(&name(i)).parent().unwrap()).is_err() {
                    return i;
                }
                if fs::write(m.m(&name(i)), content(i, 1)).is_err() {
                    return i;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            BURST_FILES
        });
        wait_until(Duration::from_secs(30), "100 uploads", || {
            uploaded_paths(&m.log_text()).len() >= 100 || writer.is_finished()
        });
        let uploaded_before = uploaded_paths(&m.log_text());
        // The daemon dies; the writer sees its writes fail from then on.
        let pid = m.pid() as i32;
        // SAFETY: kill has no memory-safety preconditions; pid is our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let first_missing = writer.join().unwrap();
        (first_missing, uploaded_before)
    });
    let (first_missing, uploaded_before) = first_missing;
    eprintln!(
        "killed after {} uploads; the writer stopped at {first_missing}",
        uploaded_before.len()
    );
    m.kill9();
    let mark = m.log_text().len();
    m.spawn();
    // The application carries on where it failed.
    for i in first_missing..BURST_FILES {
        fs::create_dir_all(m.m(&name(i)).parent().unwrap()).unwrap();
        fs::write(m.m(&name(i)), content(i, 2)).unwrap();
    }
    let t = Instant::now();
    wait_converged_skip(&m, &s, Duration::from_secs(90), &|_| false);
    eprintln!("converged {:?} after the restart", t.elapsed());
    let after = uploaded_paths(&m.log_text()[mark..]);
    let again: Vec<&String> = uploaded_before
        .keys()
        .filter(|p| after.contains_key(*p))
        .collect();
    assert!(
        again.is_empty(),
        "uploaded again after the restart: {again:?}"
    );
    let copies = conflict_copies(&m.onprem);
    assert!(
        copies.is_empty(),
        "conflict copies after the restart: {copies:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 8. A hostile server: PROPFIND answers that name things outside the synced root.

/// One PROPFIND `<d:response>` for `href`.
fn response(href: &str, dir: bool, n: usize) -> String {
    let rt = if dir {
        "<d:resourcetype><d:collection/></d:resourcetype>"
    } else {
        "<d:resourcetype/><d:getcontentlength>5</d:getcontentlength>"
    };
    format!(
        "<d:response xmlns:d=\"DAV:\"><d:href>{href}</d:href><d:propstat><d:prop>{rt}\
         <d:getetag>\"evil-{n}\"</d:getetag>\
         <d:getlastmodified>Wed, 25 Nov 2026 10:00:00 GMT</d:getlastmodified>\
         </d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>"
    )
}

fn hostile_scenario(p: Profile) {
    let s = DavServer::start(p);
    let proxy = FaultProxy::start(s.addr);
    // One request per connection, so that the answers change as soon as the fault does, also
    // with servers that keep connections alive.
    proxy.set(Fault::Logged);
    let m = Mount::start_with_cloud(&proxy.url("/dav/"), FLAGS, &[]);
    // A unique token, so that an escape would be found by name anywhere.
    let tok = format!("escape{}", proxy.addr.port());
    let hrefs: Vec<(String, bool)> = [
        ("/dav/../{t}-dotdot.txt", false),
        ("/dav/%2e%2e/{t}-encdot.txt", false),
        ("/dav/..%2f{t}-encslash.txt", false),
        ("/dav/..%2F..%2F..%2F..%2F..%2Ftmp%2F{t}-deep.txt", false),
        ("/dav/a%2F{t}-slash.txt", false),
        ("/dav/%2Ftmp%2F{t}-abs.txt", false),
        ("http://evil.example/dav/{t}-host.txt", false),
        ("//evil.example/dav/{t}-netpath.txt", false),
        ("/elsewhere/{t}-outside.txt", false),
        ("/dav/sub/{t}-not-a-child.txt", false),
        ("/dav/%00{t}-nul.txt", false),
        ("/dav/./{t}-dot.txt", false),
        ("/dav//{t}-double.txt", false),
        ("/dav/..%2F{t}-dir/", true),
        ("/dav/../{t}-dir2/", true),
        ("/dav/{t}%2F..%2F..%2Fx/", true),
    ]
    .iter()
    .map(|(h, d)| (h.replace("{t}", &tok), *d))
    .collect();
    let fragments: Vec<String> = hrefs
        .iter()
        .enumerate()
        .map(|(i, (h, d))| response(h, *d, i))
        .collect();
    fs::write(m.m("before.txt"), b"before").unwrap();
    wait_converged(&m, &s);
    let outside_before = tree(m.tmp.path(), &|n| {
        n == "onprem" || n == "mnt" || n == "state" || n == "daemon.log"
    });
    proxy.set(Fault::InjectPropfind(fragments));

    // Several pulls see the hostile answers; pushes go on through the same answers.
    fs::write(m.m("during.txt"), b"during").unwrap();
    s.write_on_disk("legit from cloud.txt", b"legit");
    wait_until(Duration::from_secs(20), "the legit cloud file", || {
        fs::read(m.m("legit from cloud.txt")).ok().as_deref() == Some(b"legit")
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(is_mounted(&m.mnt), "the mount went away");
    wait_converged(&m, &s);
    assert_eq!(fs::read(s.disk("during.txt")).unwrap(), b"during");

    // Nothing named by the hostile answers exists anywhere we can look.
    let onprem: Vec<String> = tree(&m.onprem, &|_| false)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(
        onprem,
        ["before.txt", "during.txt", "legit from cloud.txt"],
        "unexpected on-premise items"
    );
    let outside_after = tree(m.tmp.path(), &|n| {
        n == "onprem" || n == "mnt" || n == "state" || n == "daemon.log"
    });
    assert_eq!(
        outside_before, outside_after,
        "something outside ONPREM changed"
    );
    for dir in [
        m.tmp.path().parent().unwrap().to_path_buf(),
        std::env::temp_dir(),
        s.data.parent().unwrap().to_path_buf(),
        s.data.clone(),
        std::path::PathBuf::from("/"),
    ] {
        for e in fs::read_dir(&dir).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            assert!(!n.contains(&tok), "{} appeared in {}", n, dir.display());
        }
    }
    let log = m.log_text();
    assert!(log.contains("refusing"), "no refusal was logged");
    assert!(!log.contains(" panicked "), "the daemon panicked");
    // Still working both ways.
    fs::write(m.m("after.txt"), b"after").unwrap();
    s.write_on_disk("legit 2.txt", b"legit 2");
    wait_until(
        Duration::from_secs(20),
        "the second legit cloud file",
        || m.o("legit 2.txt").exists(),
    );
    wait_converged(&m, &s);
}

#[test]
fn hostile_propfind_answers_touch_nothing_outside_onprem() {
    for_profiles(&[Profile::Sabre, Profile::Apache], hostile_scenario);
}

/// What a script does: write a file, wait until it is in the cloud, then hand its link on. And
/// every status attribute and control, against a real SabreDAV.
#[test]
fn script_waits_for_the_cloud_then_uses_the_link() {
    let s = DavServer::start(Profile::Sabre);
    let m = Mount::start_with_cloud(
        &s.url,
        &["--push-delay", "5s", "--pull-interval", "1s"],
        &[],
    );
    let cs = |args: &[&str]| Command::new(harness::bin()).args(args).output().unwrap();
    fs::create_dir(m.m("out")).unwrap();
    fs::write(m.m("out/report.pdf"), b"%PDF report").unwrap();
    assert_eq!(m.status("out/report.pdf").as_deref(), Some("pending"));
    let out = cs(&[
        "sync",
        "--wait",
        "--timeout",
        "60s",
        m.m("out/report.pdf").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read(s.data.join("out/report.pdf")).unwrap(),
        b"%PDF report"
    );
    // The link a script hands on is the server's URL of the file.
    let url = harness::xattr(&m.m("out/report.pdf"), "user.cloudsync.cloud_url").unwrap();
    assert_eq!(url, format!("{}out/report.pdf", s.url));
    let got = Command::new("curl")
        .args(["-s", "-f", &url])
        .output()
        .unwrap();
    assert_eq!(got.stdout, b"%PDF report");
    for name in ["synced_at", "etag", "set"] {
        assert!(
            harness::xattr(&m.m("out/report.pdf"), &format!("user.cloudsync.{name}")).is_some(),
            "{name}"
        );
    }
    // A cloud delete, then a sync request through setfattr pushes it again.
    fs::remove_file(s.data.join("out/report.pdf")).unwrap();
    wait_until(Duration::from_secs(30), "DELETED_ON_CLOUD", || {
        harness::xattr(&m.m("out/report.pdf"), "user.cloudsync.error")
            .is_some_and(|e| e.starts_with("DELETED_ON_CLOUD"))
    });
    let out = cs(&["status", "--failed", "--csv", m.mnt.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("DELETED_ON_CLOUD"));
    let st = Command::new("setfattr")
        .args(["-n", "user.cloudsync.request", "-v", "sync"])
        .arg(m.m("out/report.pdf"))
        .status()
        .unwrap();
    assert!(st.success());
    let out = cs(&[
        "sync",
        "--wait",
        "--timeout",
        "60s",
        m.m("out").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read(s.data.join("out/report.pdf")).unwrap(),
        b"%PDF report"
    );
}
