//! Renames through a real mount, against a `file://` cloud: chained folder moves, moves into
//! folders that never reached the cloud, and `RENAME_EXCHANGE`. After each quiet point
//! (`cloudsync sync --wait`, then a pull) the cloud holds exactly what ONPREM holds, files and
//! folders alike, and a remount brings nothing deleted back.

mod harness;

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

use harness::{Mount, tree};

fn skip(name: &str) -> bool {
    cloudsync::ignore::Ignore::new(&[])
        .unwrap()
        .name_excluded(name)
}

fn cloudsync(m: &Mount, args: &[&str]) {
    let out = Command::new(harness::bin())
        .args(args)
        .arg(&m.mnt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cloudsync {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A quiet point: everything pushed (`sync --wait`), then one pull (`sync --now`), then the
/// two sides compared, folders included.
fn quiet_point(m: &Mount) {
    cloudsync(m, &["sync", "--wait", "--timeout", "30s"]);
    cloudsync(m, &["sync", "--now"]);
    assert_eq!(
        tree(&m.onprem, &skip),
        tree(&m.cloud, &skip),
        "the cloud differs from on-premise"
    );
}

/// `renameat2(a, b, RENAME_EXCHANGE)`.
fn exchange(a: &Path, b: &Path) {
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).unwrap();
    let (a, b) = (c(a), c(b));
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    assert_eq!(rc, 0, "renameat2: {}", std::io::Error::last_os_error());
}

/// A synced folder `s` moved into a new folder `t`, and `t` renamed to `u` before it was
/// pushed: the cloud ends with `u/s/f` only, no `t` is left there, and no pull or remount
/// brings `t` back on-premise.
#[test]
fn a_synced_folder_moved_into_a_new_folder_that_is_renamed_before_its_push() {
    let mut m = Mount::start(&["--pull-interval", "1h"]);
    fs::create_dir(m.m("s")).unwrap();
    fs::write(m.m("s/f"), "f").unwrap();
    quiet_point(&m);
    fs::create_dir(m.m("t")).unwrap();
    fs::rename(m.m("s"), m.m("t/s")).unwrap();
    fs::rename(m.m("t"), m.m("u")).unwrap();
    quiet_point(&m);
    assert_eq!(fs::read_to_string(m.c("u/s/f")).unwrap(), "f");
    assert!(!m.c("t").exists() && !m.o("t").exists());
    m.unmount();
    m.spawn();
    quiet_point(&m);
    assert!(!m.o("t").exists());
}

/// `RENAME_EXCHANGE` of a synced folder `a` with a new folder `b`, at once and at moments
/// around the new folder's push (300 ms after it was made): the cloud ends with the old `a`
/// under `b` and the new folder under `a`, and no old `a/f1` stays behind, even when the push
/// of `b` listed it after the exchange and before the queue knew of it.
#[test]
fn rename_exchange_of_a_synced_folder_with_a_new_folder() {
    for wait in [0, 250, 300, 310, 320, 340] {
        let mut m = Mount::start(&["--pull-interval", "1h"]);
        fs::create_dir(m.m("a")).unwrap();
        fs::write(m.m("a/f1"), "1").unwrap();
        quiet_point(&m);
        fs::create_dir(m.m("b")).unwrap();
        fs::write(m.m("b/f2"), "2").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(wait));
        exchange(&m.m("a"), &m.m("b"));
        quiet_point(&m);
        assert_eq!(fs::read_to_string(m.c("b/f1")).unwrap(), "1");
        assert_eq!(fs::read_to_string(m.c("a/f2")).unwrap(), "2");
        assert!(!m.c("a/f1").exists(), "after {wait} ms");
        if wait == 0 {
            m.unmount();
            m.spawn();
            quiet_point(&m);
        }
    }
}

/// `RENAME_EXCHANGE` of a synced file with a synced folder: the cloud ends with the file
/// under the folder's name and the folder under the file's name, and no old copy of either.
#[test]
fn rename_exchange_of_a_synced_file_with_a_synced_folder() {
    let m = Mount::start(&["--pull-interval", "1h"]);
    fs::create_dir_all(m.m("a")).unwrap();
    fs::create_dir_all(m.m("b")).unwrap();
    fs::write(m.m("a/a"), "file").unwrap();
    fs::write(m.m("b/a"), "in folder").unwrap();
    quiet_point(&m);
    exchange(&m.m("a/a"), &m.m("b"));
    quiet_point(&m);
    assert_eq!(fs::read_to_string(m.c("b")).unwrap(), "file");
    assert_eq!(fs::read_to_string(m.c("a/a/a")).unwrap(), "in folder");
}

/// A synced file moved over another synced file, then its old folder moved: the move over
/// the file becomes an update of the target and a delete of the source, and that delete
/// follows the folder to its new name, so no copy of the file stays in the cloud there.
#[test]
fn a_file_moved_over_a_file_then_its_old_folder_moved() {
    let m = Mount::start(&["--pull-interval", "1h"]);
    fs::create_dir_all(m.m("a/b")).unwrap();
    fs::create_dir_all(m.m("b")).unwrap();
    fs::write(m.m("a/b/a"), "moved").unwrap();
    fs::write(m.m("b/a"), "replaced").unwrap();
    quiet_point(&m);
    fs::rename(m.m("a/b/a"), m.m("b/a")).unwrap();
    fs::rename(m.m("a/b"), m.m("b/b")).unwrap();
    quiet_point(&m);
    assert_eq!(fs::read_to_string(m.c("b/a")).unwrap(), "moved");
    assert!(!m.c("b/b/a").exists());
}
