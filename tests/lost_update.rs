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
