//! Deleting a synced folder on-premise deletes in the cloud only what the journal knows. A
//! cloud folder goes in one request only when every entry of its listing, at every depth, was
//! understood and is known; items a listing cannot show (on `file://`: a name that is not
//! UTF-8, a symbolic link, a FIFO; on WebDAV: a refused href, a member without a 2xx propstat)
//! stay in the cloud with their folder. The on-premise delete completes, and the next pull does
//! not bring the folder back.

mod harness;
mod support;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use harness::{Mount, wait_until};
use support::proxy::{Fault, FaultProxy};
use support::webdav::{DavServer, Profile};

/// `cloudsync sync --now MNT`: one pull, at once, answered when it is done.
fn pull_now(m: &Mount) {
    let out = Command::new(harness::bin())
        .args(["sync", "--now"])
        .arg(&m.mnt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sync --now: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: c is a valid NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

/// True when something (even a dangling link or a FIFO) is at `p`.
fn exists(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok()
}

/// `rm -r` of a synced folder whose cloud copy holds a name that is not UTF-8, a symbolic link
/// and a FIFO (one level down): the known files are deleted in the cloud one by one, those
/// three stay with their folders, the on-premise delete stands, and neither the next pull nor
/// a restart (whose scan queues the delete again) brings the folder back on-premise.
#[test]
fn rm_r_of_a_folder_keeps_cloud_items_the_listing_cannot_show() {
    let mut m = Mount::start(&["--pull-interval", "1h"]);
    fs::create_dir_all(m.m("d/sub")).unwrap();
    fs::write(m.m("d/a.txt"), "a").unwrap();
    fs::write(m.m("d/sub/b.txt"), "b").unwrap();
    m.wait_all_synced();
    assert_eq!(fs::read_to_string(m.c("d/sub/b.txt")).unwrap(), "b");

    // Made in the cloud by someone else; none of them can be synced.
    let bad = m.c("d").join(OsStr::from_bytes(b"caf\xe9.txt"));
    fs::write(&bad, "latin-1 name").unwrap();
    std::os::unix::fs::symlink("a.txt", m.c("d/link")).unwrap();
    mkfifo(&m.c("d/sub/fifo"));
    pull_now(&m);

    let st = Command::new("rm").arg("-r").arg(m.m("d")).status().unwrap();
    assert!(st.success(), "rm -r through the mount");
    wait_until(Duration::from_secs(20), "the known files to go", || {
        !exists(&m.c("d/a.txt")) && !exists(&m.c("d/sub/b.txt"))
    });
    m.wait_all_synced();
    assert!(exists(&bad), "the name that is not UTF-8 was deleted");
    assert!(exists(&m.c("d/link")), "the symbolic link was deleted");
    assert!(exists(&m.c("d/sub/fifo")), "the FIFO was deleted");
    assert!(!exists(&m.o("d")), "the on-premise delete did not complete");
    assert!(
        m.log_text()
            .contains("cannot be synced; they stay in the cloud"),
        "the kept items are not logged"
    );

    // The next pull leaves the on-premise delete alone.
    pull_now(&m);
    assert!(!exists(&m.o("d")), "the pull brought the folder back");
    assert_eq!(m.status("").as_deref(), Some("synced"));

    // So does a restart: its scan queues the delete again, which keeps the same items.
    m.unmount();
    m.spawn();
    m.wait_all_synced();
    pull_now(&m);
    m.wait_all_synced();
    assert!(!exists(&m.o("d")), "the folder came back after a restart");
    assert!(exists(&bad) && exists(&m.c("d/link")) && exists(&m.c("d/sub/fifo")));

    // Once the cloud holds nothing it cannot show, a later delete takes the rest.
    fs::remove_file(&bad).unwrap();
    fs::remove_file(m.c("d/link")).unwrap();
    fs::remove_file(m.c("d/sub/fifo")).unwrap();
    m.unmount();
    m.spawn();
    wait_until(
        Duration::from_secs(20),
        "the emptied cloud folder to go",
        || !exists(&m.c("d")),
    );
    pull_now(&m);
    assert!(!exists(&m.o("d")));
}

/// One `<d:response>` for the proxy to add to every listing.
fn injected(href: &str, status: &str) -> String {
    format!(
        "<d:response xmlns:d=\"DAV:\"><d:href>{href}</d:href><d:propstat><d:prop>\
         <d:resourcetype/><d:getetag>\"injected\"</d:getetag></d:prop>\
         <d:status>HTTP/1.1 {status}</d:status></d:propstat></d:response>"
    )
}

/// `rm -r` of a synced folder while the SabreDAV listing of it holds a member whose href is
/// refused (a name holding `/`) and one without a 2xx propstat: the known file goes, the folder
/// stays in the cloud, the on-premise delete stands, and the next pull does not bring it back.
#[test]
fn rm_r_of_a_folder_keeps_it_when_the_dav_listing_holds_what_it_cannot_show() {
    let s = DavServer::start(Profile::Sabre);
    let proxy = FaultProxy::start(s.addr);
    proxy.set(Fault::Logged);
    let m = Mount::start_with_cloud(&proxy.url("/dav/"), &["--pull-interval", "1h"], &[]);
    fs::create_dir(m.m("d")).unwrap();
    fs::write(m.m("d/known.txt"), "known").unwrap();
    m.wait_all_synced();
    assert_eq!(fs::read_to_string(s.disk("d/known.txt")).unwrap(), "known");

    proxy.set(Fault::InjectPropfind(vec![
        injected("/dav/d/a%2Fb.txt", "200 OK"),
        injected("/dav/d/locked.txt", "403 Forbidden"),
    ]));
    let st = Command::new("rm").arg("-r").arg(m.m("d")).status().unwrap();
    assert!(st.success(), "rm -r through the mount");
    wait_until(Duration::from_secs(20), "the known file to go", || {
        !exists(&s.disk("d/known.txt"))
    });
    m.wait_all_synced();
    assert!(
        s.disk("d").is_dir(),
        "the cloud folder was deleted in one request"
    );
    assert!(!exists(&m.o("d")), "the on-premise delete did not complete");
    assert!(
        !proxy
            .requests()
            .iter()
            .any(|r| r.starts_with("DELETE /dav/d ") || r.starts_with("DELETE /dav/d/ ")),
        "a DELETE of the whole folder was sent"
    );

    pull_now(&m);
    assert!(!exists(&m.o("d")), "the pull brought the folder back");
    assert_eq!(m.status("").as_deref(), Some("synced"));
}
