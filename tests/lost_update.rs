//! Lost updates, and the journal they are decided from: a change that keeps size and mtime is
//! still pushed, a retried upload never replaces a cloud edit it has not seen, and a journal
//! written by an older cloudsync opens and migrates with what it knew.
//!
//! Each test mounts the real binary through FUSE against a `file://` cloud or a real SabreDAV
//! (and Apache where the case exists there), with the fault proxy in between where a test needs
//! to cut or hold a request.

mod harness;
mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use harness::{Mount, wait_until};
use support::proxy::{Fault, FaultProxy};
use support::webdav::{DavServer, Profile};

/// Flags every WebDAV mount here gets: pull every second so cloud changes show quickly.
const FLAGS: &[&str] = &["--pull-interval", "1s"];

/// Where the journal made by cloudsync 0.1.0 is kept.
fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journal-0.1.0.sqlite")
}

/// Waits for the status of `rel` to be `want`.
fn wait_status(m: &Mount, rel: &str, want: &str, timeout: Duration) {
    wait_until(timeout, &format!("{rel} to be {want}"), || {
        m.status(rel).as_deref() == Some(want)
    });
}

/// Writes the journal fixture (see tests/fixtures/README.md). Run it only with the version the
/// fixture is named after: `cargo test --test lost_update make_journal_fixture -- --ignored`.
#[test]
#[ignore = "makes tests/fixtures/journal-0.1.0.sqlite; run by hand with cloudsync 0.1.0"]
fn make_journal_fixture() {
    let s = DavServer::start(Profile::Sabre);
    let proxy = FaultProxy::start(s.addr);
    proxy.set(Fault::Logged);
    let url = DavServer::url_for(&Profile::Sabre, proxy.addr);
    let mut flags = FLAGS.to_vec();
    flags.extend(["--transfers", "1"]);
    let mut m = Mount::start_with_cloud(&url, &flags, &[]);
    // Synced files and folders.
    fs::create_dir_all(m.m("docs/sub")).unwrap();
    fs::write(m.m("docs/a.txt"), b"a, version 1\n").unwrap();
    fs::write(m.m("docs/sub/b.txt"), b"b\n").unwrap();
    fs::write(m.m("gone.txt"), b"deleted in the cloud\n").unwrap();
    fs::write(m.m("big.bin"), vec![b'1'; 64 << 10]).unwrap();
    wait_status(&m, "", "synced", Duration::from_secs(30));
    // A failed record: deleted in the cloud, kept on-premise (DELETED_ON_CLOUD).
    fs::remove_file(s.disk("gone.txt")).unwrap();
    wait_status(&m, "gone.txt", "failed", Duration::from_secs(30));
    // An upload cut short by kill -9: its intent stays. A change queued behind it stays queued
    // (one transfer at a time).
    proxy.set(Fault::Only(
        "PUT".into(),
        Box::new(Fault::Throttle(16 << 10)),
    ));
    fs::write(m.m("big.bin"), vec![b'2'; 1 << 20]).unwrap();
    wait_until(Duration::from_secs(20), "the PUT of big.bin", || {
        proxy
            .requests()
            .iter()
            .any(|r| r.starts_with("PUT ") && r.contains("big.bin"))
    });
    fs::write(m.m("docs/a.txt"), b"a, version 2 (queued)\n").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    m.kill9();
    proxy.sever();
    let c = rusqlite::Connection::open(m.state.join("journal.db")).unwrap();
    c.pragma_update(None, "wal_checkpoint", "TRUNCATE").unwrap();
    let count = |sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("PRAGMA user_version"), 3, "not a 0.1.0 journal");
    assert_eq!(
        count("SELECT count(*) FROM meta WHERE key = 'intent:big.bin'"),
        1
    );
    assert!(count("SELECT count(*) FROM queue WHERE path = 'docs/a.txt'") >= 1);
    assert_eq!(
        count("SELECT count(*) FROM nodes WHERE state = 'failed'"),
        1
    );
    assert!(count("SELECT count(*) FROM nodes WHERE state = 'synced'") >= 5);
    drop(c);
    // The checkpoint moved everything into the main file; it is copied as 0.1.0 left it.
    fs::create_dir_all(fixture().parent().unwrap()).unwrap();
    fs::copy(m.state.join("journal.db"), fixture()).unwrap();
}

// ---------------------------------------------------------------------------------------------
// 1. ctime counts: an edit that keeps size and mtime is an edit.

/// Runs `cmd` with `args`, panicking with its stderr when it fails.
fn run(cmd: &str, args: &[&std::ffi::OsStr]) {
    let out = std::process::Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Replaces the content of `file` (through the mount) by `new` of the same size, keeping its
/// size and modification time, as `touch -r` and `cp --preserve=timestamps` do.
fn same_size_and_mtime_edit(file: &Path, new: &[u8]) {
    assert_eq!(fs::metadata(file).unwrap().len(), new.len() as u64);
    let reference = tempfile::NamedTempFile::new().unwrap();
    run(
        "touch",
        &[
            "-r".as_ref(),
            file.as_os_str(),
            reference.path().as_os_str(),
        ],
    );
    // cp --preserve=timestamps from a file that has the new content and the old times.
    let src = tempfile::NamedTempFile::new().unwrap();
    fs::write(src.path(), new).unwrap();
    run(
        "touch",
        &[
            "-r".as_ref(),
            reference.path().as_os_str(),
            src.path().as_os_str(),
        ],
    );
    run(
        "cp",
        &[
            "--preserve=timestamps".as_ref(),
            src.path().as_os_str(),
            file.as_os_str(),
        ],
    );
    let m = fs::metadata(file).unwrap();
    let r = fs::metadata(reference.path()).unwrap();
    assert_eq!(m.modified().unwrap(), r.modified().unwrap(), "mtime kept");
}

#[test]
fn an_edit_keeping_size_and_mtime_is_pushed_and_status_follows() {
    let m = Mount::start(&[]);
    fs::write(m.m("a.txt"), b"version 1\n").unwrap();
    m.wait_status("a.txt", "synced");
    same_size_and_mtime_edit(&m.m("a.txt"), b"version 2\n");
    wait_until(Duration::from_secs(20), "version 2 in the cloud", || {
        fs::read(m.c("a.txt")).ok().as_deref() == Some(b"version 2\n".as_slice())
    });
    m.wait_status("a.txt", "synced");
    assert_eq!(m.uploads_of("a.txt"), 2);
}

#[test]
fn an_edit_keeping_size_and_mtime_is_pushed_to_sabredav() {
    let s = DavServer::start(Profile::Sabre);
    let m = Mount::start_with_cloud(&s.url, FLAGS, &[]);
    fs::write(m.m("a.txt"), b"version 1\n").unwrap();
    wait_status(&m, "a.txt", "synced", Duration::from_secs(20));
    same_size_and_mtime_edit(&m.m("a.txt"), b"version 2\n");
    wait_until(Duration::from_secs(20), "version 2 on the server", || {
        fs::read(s.disk("a.txt")).ok().as_deref() == Some(b"version 2\n".as_slice())
    });
    wait_status(&m, "a.txt", "synced", Duration::from_secs(20));
    // A later pull sees its own upload, not a cloud change.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(fs::read(m.o("a.txt")).unwrap(), b"version 2\n");
    assert_eq!(m.uploads_of("a.txt"), 2);
}

#[test]
fn chmod_and_mv_of_a_synced_tree_upload_nothing() {
    let m = Mount::start(&[]);
    fs::create_dir_all(m.m("t/sub")).unwrap();
    let files = ["t/a.txt", "t/b.txt", "t/sub/c.txt", "t/sub/d.txt"];
    for f in files {
        fs::write(m.m(f), f.as_bytes()).unwrap();
    }
    fs::write(m.m("lone.txt"), b"lone").unwrap();
    m.wait_all_synced();
    let uploads = |m: &Mount| -> usize {
        files.iter().map(|f| m.uploads_of(f)).sum::<usize>() + m.uploads_of("lone.txt")
    };
    assert_eq!(uploads(&m), 5);
    run(
        "chmod",
        &["-R".as_ref(), "go-rwx".as_ref(), m.m("t").as_os_str()],
    );
    run("chmod", &["600".as_ref(), m.m("lone.txt").as_os_str()]);
    m.wait_all_synced();
    for f in files {
        m.wait_status(f, "synced");
    }
    m.wait_status("lone.txt", "synced");
    fs::rename(m.m("t"), m.m("u")).unwrap();
    fs::rename(m.m("lone.txt"), m.m("moved.txt")).unwrap();
    m.wait_all_synced();
    m.wait_status("u/sub/c.txt", "synced");
    m.wait_status("moved.txt", "synced");
    assert_eq!(fs::read(m.c("u/sub/c.txt")).unwrap(), b"t/sub/c.txt");
    assert_eq!(fs::read(m.c("moved.txt")).unwrap(), b"lone");
    let after: usize = [
        "u/a.txt",
        "u/b.txt",
        "u/sub/c.txt",
        "u/sub/d.txt",
        "moved.txt",
    ]
    .iter()
    .map(|f| m.uploads_of(f))
    .sum();
    assert_eq!(
        (uploads(&m), after),
        (5, 0),
        "chmod or mv uploaded content again:\n{}",
        m.log_text()
    );
}

// ---------------------------------------------------------------------------------------------
// 2. A retried upload never replaces a cloud edit it has not seen.

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

/// Writes `body` to `url` with a plain HTTP PUT, as another WebDAV client of the server would,
/// and returns once the server has answered.
fn put_direct(url: &str, body: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("body");
    fs::write(&f, body).unwrap();
    // No `Expect: 100-continue`: SabreDAV under php -S never answers it.
    let out = std::process::Command::new("curl")
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

/// Conflict copies of `name` in the top folder of `root`, with their content.
fn copies_of(root: &Path, name: &str) -> Vec<Vec<u8>> {
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    let mut v = Vec::new();
    for de in fs::read_dir(root).unwrap().flatten() {
        let n = de.file_name().to_string_lossy().to_string();
        if n.starts_with(stem) && cloudsync::sync::reconcile::is_conflict_name(&n) {
            v.push(fs::read(de.path()).unwrap());
        }
    }
    v
}

/// Waits until both versions of `name` survive: one as the file, the same on-premise and on
/// the server, the other as a conflict copy on-premise; and the file reads `synced`.
fn wait_both_survive(m: &Mount, s: &DavServer, name: &str, ours: &[u8], theirs: &[u8]) {
    let t = std::time::Instant::now();
    loop {
        let here = fs::read(m.o(name)).unwrap_or_default();
        let there = fs::read(s.disk(name)).unwrap_or_default();
        let copies = copies_of(&m.onprem, name);
        let mut got = copies.clone();
        got.push(here.clone());
        got.sort();
        let mut want = vec![ours.to_vec(), theirs.to_vec()];
        want.sort();
        if here == there && got == want && m.status(name).as_deref() == Some("synced") {
            return;
        }
        if t.elapsed() > Duration::from_secs(45) {
            let show = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(60)]).to_string();
            panic!(
                "both versions of {name} did not survive: on-premise {:?}, server {:?}, \
                 conflict copies {:?}, status {:?}",
                show(&here),
                show(&there),
                copies.iter().map(|c| show(c)).collect::<Vec<_>>(),
                m.status(name)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The server is down while an edit is pushed (connection refused); another client edits the
/// file meanwhile; the server comes back: the retry meets the other edit as a conflict.
fn server_down_during_a_push_scenario(p: Profile) {
    let mut s = DavServer::start(p);
    let m = Mount::start_with_cloud(&s.url, FLAGS, &[]);
    fs::write(m.m("a.txt"), b"version 1\n").unwrap();
    wait_status(&m, "a.txt", "synced", Duration::from_secs(20));
    s.stop();
    let ours = b"version 2, edited on-premise while the server was down\n";
    fs::write(m.m("a.txt"), ours).unwrap();
    wait_status(&m, "a.txt", "offline", Duration::from_secs(20));
    assert_eq!(intents(&m), 0, "an intent is left though nothing was sent");
    let theirs = b"version 3, edited in the cloud\n";
    s.write_on_disk("a.txt", theirs);
    s.restart();
    wait_both_survive(&m, &s, "a.txt", ours, theirs);
}

/// How many upload intents the running daemon's journal holds.
fn intents(m: &Mount) -> i64 {
    let c = rusqlite::Connection::open_with_flags(
        m.state.join("journal.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    c.query_row("SELECT count(*) FROM intents", [], |r| r.get(0))
        .unwrap()
}

/// The server refuses the PUT with 423 Locked (the proxy answers for it) while another client
/// edits the file: the retry meets the edit as a conflict.
#[test]
fn a_put_refused_as_locked_and_a_cloud_edit_meanwhile_keeps_both_versions() {
    let s = DavServer::start(Profile::Sabre);
    let proxy = FaultProxy::start(s.addr);
    proxy.set(Fault::Logged);
    let url = DavServer::url_for(&Profile::Sabre, proxy.addr);
    let m = Mount::start_with_cloud(&url, FLAGS, &[]);
    fs::write(m.m("a.txt"), b"version 1\n").unwrap();
    wait_status(&m, "a.txt", "synced", Duration::from_secs(20));
    proxy.set(Fault::Only("PUT".into(), Box::new(Fault::Status(423))));
    let ours = b"version 2, edited on-premise while the file was locked\n";
    fs::write(m.m("a.txt"), ours).unwrap();
    wait_status(&m, "a.txt", "offline", Duration::from_secs(20));
    assert_eq!(intents(&m), 0, "an intent is left though nothing was sent");
    let theirs = b"version 3, edited in the cloud\n";
    put_direct(&format!("{}a.txt", s.url), theirs);
    proxy.set(Fault::Logged);
    wait_both_survive(&m, &s, "a.txt", ours, theirs);
}

#[test]
fn server_down_during_a_push_and_a_cloud_edit_meanwhile_keeps_both_versions() {
    for_profiles(
        &[Profile::Sabre, Profile::Apache],
        server_down_during_a_push_scenario,
    );
}

/// The daemon is killed while its PUT is held in the proxy (nothing reached the server) or
/// while the body is on its way (`throttle`); another client edits the file; the daemon
/// starts again: the retry meets the other edit as a conflict.
fn daemon_killed_during_a_push_scenario(p: Profile, throttle: bool) {
    let s = DavServer::start(p.clone());
    let proxy = FaultProxy::start(s.addr);
    proxy.set(Fault::Logged);
    let url = DavServer::url_for(&p, proxy.addr);
    let mut m = Mount::start_with_cloud(&url, FLAGS, &[]);
    fs::write(m.m("a.bin"), b"version 1\n").unwrap();
    wait_status(&m, "a.bin", "synced", Duration::from_secs(20));
    let ours = vec![b'2'; 1 << 20];
    let hold = if throttle {
        Fault::Throttle(64 << 10)
    } else {
        Fault::Delay(Duration::from_secs(600))
    };
    proxy.set(Fault::Only("PUT".into(), Box::new(hold)));
    fs::write(m.m("a.bin"), &ours).unwrap();
    wait_until(Duration::from_secs(20), "the PUT of a.bin", || {
        proxy
            .requests()
            .iter()
            .any(|r| r.starts_with("PUT ") && r.contains("a.bin"))
    });
    std::thread::sleep(Duration::from_millis(1000));
    m.kill9();
    proxy.sever();
    std::thread::sleep(Duration::from_millis(500));
    let theirs = b"version 3, edited in the cloud while the daemon was dead\n";
    put_direct(&format!("{}a.bin", s.url), theirs);
    proxy.set(Fault::Logged);
    m.spawn();
    wait_both_survive(&m, &s, "a.bin", &ours, theirs);
}

#[test]
fn daemon_killed_before_its_put_reached_the_server_and_a_cloud_edit_meanwhile_keeps_both() {
    for_profiles(&[Profile::Sabre, Profile::Apache], |p| {
        daemon_killed_during_a_push_scenario(p, false)
    });
}

#[test]
fn daemon_killed_while_its_put_was_under_way_and_a_cloud_edit_meanwhile_keeps_both() {
    for_profiles(&[Profile::Sabre, Profile::Apache], |p| {
        daemon_killed_during_a_push_scenario(p, true)
    });
}

/// A partial body that rclone kept after the daemon was killed mid-PUT is our own leftover,
/// proven by the upload intent: it is replaced, and no conflict copy of it appears.
#[test]
fn a_partial_upload_left_by_a_killed_daemon_is_replaced_without_a_conflict_copy() {
    let p = Profile::Rclone;
    let s = DavServer::start(p.clone());
    let proxy = FaultProxy::start(s.addr);
    proxy.set(Fault::Logged);
    let url = DavServer::url_for(&p, proxy.addr);
    let mut m = Mount::start_with_cloud(&url, FLAGS, &[]);
    fs::write(m.m("a.bin"), b"version 1\n").unwrap();
    wait_status(&m, "a.bin", "synced", Duration::from_secs(20));
    let ours: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    proxy.set(Fault::Only(
        "PUT".into(),
        Box::new(Fault::Throttle(128 << 10)),
    ));
    fs::write(m.m("a.bin"), &ours).unwrap();
    wait_until(
        Duration::from_secs(20),
        "part of the PUT on the server",
        || fs::metadata(s.disk("a.bin")).is_ok_and(|d| d.len() > 64 << 10),
    );
    m.kill9();
    proxy.sever();
    std::thread::sleep(Duration::from_millis(500));
    let left = fs::metadata(s.disk("a.bin")).unwrap().len();
    proxy.set(Fault::Logged);
    m.spawn();
    wait_until(Duration::from_secs(45), "a.bin whole on the server", || {
        fs::read(s.disk("a.bin")).ok().as_deref() == Some(ours.as_slice())
            && m.status("a.bin").as_deref() == Some("synced")
    });
    assert_eq!(fs::read(m.o("a.bin")).unwrap(), ours);
    assert!(
        copies_of(&m.onprem, "a.bin").is_empty(),
        "a conflict copy of our own leftover ({left} bytes)"
    );
    assert!(
        m.log_text().contains("what an interrupted upload left"),
        "the {left} bytes left on the server were not met as our own leftover"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Upgrades: a journal written by 0.1.0 opens, migrates, and keeps what it knew.

#[test]
fn a_journal_from_0_1_0_opens_migrates_and_its_old_intents_prove_nothing() {
    use cloudsync::journal::{Journal, NodeState, QueueState};
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("journal.db");
    fs::copy(fixture(), &p).unwrap();
    let j = Journal::open(&p).expect("a 0.1.0 journal opens");
    // Records intact.
    assert_eq!(j.node_count().unwrap(), 6);
    for path in [
        "docs",
        "docs/sub",
        "docs/a.txt",
        "docs/sub/b.txt",
        "big.bin",
    ] {
        let r = j
            .node(path)
            .unwrap()
            .unwrap_or_else(|| panic!("{path} lost"));
        assert_eq!(r.state, NodeState::Synced, "{path}");
    }
    let a = j.node("docs/a.txt").unwrap().unwrap();
    assert_eq!(a.size, 13);
    assert!(a.hash.is_some() && a.etag.is_some() && a.ctime_ns != 0);
    let gone = j.node("gone.txt").unwrap().unwrap();
    assert_eq!(gone.state, NodeState::Failed);
    assert!(gone.error.unwrap().starts_with("DELETED_ON_CLOUD: "));
    // The queue intact.
    let q: Vec<_> = j
        .queue()
        .unwrap()
        .into_iter()
        .map(|e| (e.path, e.state))
        .collect();
    assert_eq!(
        q,
        [
            ("big.bin".to_string(), QueueState::Pending),
            ("docs/a.txt".to_string(), QueueState::Pending)
        ]
    );
    // The 0.1.0 intent is there, moved out of `meta`, and knows nothing of what was sent.
    assert_eq!(j.meta("intent:big.bin").unwrap(), None);
    let i = j.intent("big.bin").unwrap().expect("the intent survives");
    assert!(!i.is_known());
    assert!(i.started_at > 0);
    // So no cloud copy is ever proven ours by it, not even one equal to the local file: a
    // 412 after it is merged as a conflict.
    let body = d.path().join("body");
    fs::write(&body, vec![b'2'; 1 << 20]).unwrap();
    let expected = cloudsync::sync::intent::precondition_for(j.node("big.bin").unwrap().as_ref());
    assert!(
        !cloudsync::sync::intent::is_own_leftover(
            &i,
            &expected,
            fs::File::open(&body).unwrap(),
            fs::File::open(&body).unwrap()
        )
        .unwrap()
    );
    // And it goes with the path.
    j.delete_subtree("big.bin").unwrap();
    assert_eq!(j.intent("big.bin").unwrap(), None);
    // Opening again migrates nothing more.
    drop(j);
    let j = Journal::open(&p).unwrap();
    assert_eq!(j.node_count().unwrap(), 5);
}
