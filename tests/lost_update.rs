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
