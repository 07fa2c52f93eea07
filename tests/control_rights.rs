//! Who may make control requests through a real mount: `user.cloudsync.request` is taken from
//! the daemon's own user, root and the owner of the item, and refused with `EPERM` to anyone
//! else, even a user the item's mode lets write it. Needs root (it mounts with `allow_other` and
//! switches to the user nobody).

mod harness;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use harness::Mount;

const NOBODY: &str = "65534";

/// `setfattr -n user.cloudsync.request -v VALUE PATH`, run as `uid` (its group the same, no
/// supplementary groups).
fn request_as(uid: &str, path: &Path, value: &str) -> Output {
    Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
            "setfattr",
            "-n",
            "user.cloudsync.request",
            "-v",
            value,
        ])
        .arg(path)
        .output()
        .expect("setpriv (util-linux) and setfattr (attr)")
}

fn refused(out: &Output) -> bool {
    !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not permitted")
}

/// A shared folder that everyone may write (mode 0777, owned by root) and a shared file in it
/// (0666): the user nobody may write both, but may not unsync them, nor the mount root; nobody
/// may still make requests on a file of its own, and root may on anything.
#[test]
fn unsync_by_a_user_who_may_write_but_does_not_own_is_refused() {
    let m = Mount::start(&["-o", "allow_other"]);
    // nobody must reach the mount through the test's private temporary folder.
    let top = m.mnt.parent().unwrap();
    fs::set_permissions(top, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(m.m(""), fs::Permissions::from_mode(0o777)).unwrap();
    fs::create_dir(m.m("shared")).unwrap();
    fs::set_permissions(m.m("shared"), fs::Permissions::from_mode(0o777)).unwrap();
    fs::write(m.m("shared/report.txt"), "v1").unwrap();
    fs::set_permissions(m.m("shared/report.txt"), fs::Permissions::from_mode(0o666)).unwrap();
    m.wait_all_synced();

    for rel in ["", "shared", "shared/report.txt"] {
        let out = request_as(NOBODY, &m.m(rel), "unsync");
        assert!(
            refused(&out),
            "nobody unsynced {rel:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = request_as(NOBODY, &m.m(rel), "sync");
        assert!(refused(&out), "nobody made a sync request on {rel:?}");
    }
    assert_eq!(m.status("").as_deref(), Some("synced"));
    assert_eq!(m.status("shared/report.txt").as_deref(), Some("synced"));
    assert!(
        m.log_text().contains("control request refused"),
        "the refusal is logged"
    );

    // nobody's own file: nobody may ask for it.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
            "printf mine > shared/mine.txt",
        ])
        .current_dir(&m.mnt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = request_as(NOBODY, &m.m("shared/mine.txt"), "sync");
    assert!(
        out.status.success(),
        "the owner's request: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    m.wait_status("shared/mine.txt", "synced");
    assert_eq!(fs::read_to_string(m.c("shared/mine.txt")).unwrap(), "mine");

    // Root may make requests on anything, nobody's file included.
    let out = request_as("0", &m.m("shared/mine.txt"), "sync");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = request_as("0", &m.m("shared"), "unsync");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    m.wait_status("shared/report.txt", "unsynced");
}
