//! Sync sets through a real mount: which folders pair with which cloud folders, unsynced items,
//! moves into, out of and between sets, and the control commands and xattrs scripts use.

mod harness;

use std::fs;
use std::process::Command;
use std::time::Duration;

use harness::{Mount, wait_until, xattr};

fn config(m: &Mount, body: &str) -> String {
    let p = m.tmp.path().join("cloudsync.toml");
    fs::write(&p, body).unwrap();
    p.to_string_lossy().into_owned()
}

/// A mount whose on-premise folder holds `dirs` before the daemon starts, with `sets`.
fn with_sets(dirs: &[&str], sets: &str, extra: &[&str]) -> Mount {
    let mut m = Mount::start(&[]);
    m.unmount();
    for d in dirs {
        fs::create_dir_all(m.o(d)).unwrap();
    }
    let c = config(&m, sets);
    m.extra = vec!["--config".into(), c];
    m.extra.extend(extra.iter().map(|s| s.to_string()));
    m.spawn();
    m
}

fn cloudsync(args: &[&str]) -> std::process::Output {
    Command::new(harness::bin()).args(args).output().unwrap()
}

#[test]
fn sets_pair_folders_and_leave_the_rest_unsynced() {
    let m = with_sets(
        &["projects/alpha", "projects/beta", "private"],
        "[[sync_set]]\npath = \"projects/alpha\"\ncloud = \"Shared/Alpha\"\n\n\
         [[sync_set]]\npath = \"projects/beta\"\ncloud = \"Beta\"\n",
        &[],
    );
    fs::write(m.m("projects/alpha/a.txt"), "a").unwrap();
    fs::write(m.m("projects/beta/b.txt"), "b").unwrap();
    fs::write(m.m("private/secret.txt"), "s").unwrap();
    m.wait_status("projects/alpha/a.txt", "synced");
    m.wait_status("projects/beta/b.txt", "synced");
    assert_eq!(fs::read_to_string(m.c("Shared/Alpha/a.txt")).unwrap(), "a");
    assert_eq!(fs::read_to_string(m.c("Beta/b.txt")).unwrap(), "b");
    assert_eq!(
        xattr(&m.m("private/secret.txt"), "user.cloudsync.status").as_deref(),
        Some("unsynced")
    );
    assert_eq!(
        xattr(&m.m("private"), "user.cloudsync.status").as_deref(),
        Some("unsynced")
    );
    assert_eq!(
        xattr(&m.m("projects/alpha/a.txt"), "user.cloudsync.set").as_deref(),
        Some("projects/alpha")
    );
    let url = xattr(&m.m("projects/alpha/a.txt"), "user.cloudsync.cloud_url").unwrap();
    assert!(url.ends_with("Shared/Alpha/a.txt"), "{url}");

    // Between sets: one move in the cloud. Out of every set: a cloud delete. Into a set: new.
    fs::rename(m.m("projects/alpha/a.txt"), m.m("projects/beta/a.txt")).unwrap();
    fs::rename(m.m("projects/beta/b.txt"), m.m("private/b.txt")).unwrap();
    fs::rename(m.m("private/secret.txt"), m.m("projects/alpha/secret.txt")).unwrap();
    m.wait_status("projects", "synced");
    wait_until(Duration::from_secs(20), "moves reach the cloud", || {
        m.c("Beta/a.txt").exists()
            && !m.c("Beta/b.txt").exists()
            && m.c("Shared/Alpha/secret.txt").exists()
    });
    assert!(!m.c("Shared/Alpha/a.txt").exists());
    assert!(
        !m.c("private").exists(),
        "unsynced items never reach the cloud"
    );
    assert_eq!(
        m.uploads_of("projects/beta/a.txt"),
        0,
        "a move, not an upload:\n{}",
        m.log_text()
    );
}

#[test]
fn cloud_delete_off_keeps_the_cloud_copy_and_onprem_delete_on_follows_the_cloud() {
    let m = with_sets(
        &["keep", "follow"],
        "[[sync_set]]\npath = \"keep\"\ncloud_delete = false\n\n\
         [[sync_set]]\npath = \"follow\"\nonprem_delete = true\n",
        &["--pull-interval", "1s"],
    );
    fs::write(m.m("keep/k.txt"), "k").unwrap();
    fs::write(m.m("follow/f.txt"), "f").unwrap();
    m.wait_all_synced();
    fs::remove_file(m.m("keep/k.txt")).unwrap();
    fs::remove_file(m.c("follow/f.txt")).unwrap();
    wait_until(
        Duration::from_secs(20),
        "cloud delete to reach on-premise",
        || !m.o("follow/f.txt").exists(),
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        m.c("keep/k.txt").exists(),
        "cloud_delete = false keeps the cloud copy"
    );
    assert!(
        !m.o("keep/k.txt").exists(),
        "and the pull does not bring it back"
    );
}

#[test]
fn script_style_sync_wait_and_control_commands() {
    let m = Mount::start(&["--push-delay", "10s"]);
    fs::write(m.m("report.pdf"), "pdf").unwrap();
    // Without waiting for the 10 s quiet time: sync --wait pushes now and returns once synced.
    let out = cloudsync(&[
        "sync",
        "--wait",
        "--timeout",
        "20s",
        m.m("report.pdf").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read_to_string(m.c("report.pdf")).unwrap(), "pdf");

    // Status as JSON and CSV.
    let out = cloudsync(&["status", "--json", m.mnt.to_str().unwrap()]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["items"][0]["status"], "synced");
    assert!(v[0]["summary"]["counters"]["pushes_ok"].as_u64().unwrap() >= 1);
    let out = cloudsync(&["status", "--csv", m.mnt.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("path,status,error,original\n"));

    // Pause pushing: a wait times out with 124; resume and it completes.
    let mnt = m.mnt.to_str().unwrap();
    assert!(cloudsync(&["pause", "--push", mnt]).status.success());
    fs::write(m.m("later.txt"), "later").unwrap();
    let out = cloudsync(&[
        "sync",
        "--wait",
        "--timeout",
        "1s",
        m.m("later.txt").to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(124),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!m.c("later.txt").exists());
    assert!(cloudsync(&["resume", mnt]).status.success());
    let out = cloudsync(&["sync", "--wait", m.m("later.txt").to_str().unwrap()]);
    assert!(out.status.success());

    // sync --now pulls at once.
    fs::write(m.c("from-cloud.txt"), "cloud").unwrap();
    let out = cloudsync(&["sync", "--now", mnt]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("pulled in"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        m.o("from-cloud.txt").exists(),
        "sync --now returns after the pull"
    );

    // A conflict shows up in `conflicts`, and makes sync --wait exit 1 for the copy.
    fs::write(m.c("report.pdf"), "cloud edit").unwrap();
    fs::write(m.m("report.pdf"), "local edit").unwrap();
    let out = cloudsync(&[
        "sync",
        "--wait",
        "--now",
        m.m("report.pdf").to_str().unwrap(),
    ]);
    let _ = out;
    wait_until(Duration::from_secs(20), "the conflict copy", || {
        let out = cloudsync(&["conflicts", mnt]);
        String::from_utf8_lossy(&out.stdout).contains("report (conflict ")
    });
    let out = cloudsync(&["status", "--failed", mnt]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("conflict"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Unsync keeps the cloud copy unless asked; the item becomes unsynced.
    fs::create_dir(m.m("old")).unwrap();
    fs::write(m.m("old/x.txt"), "x").unwrap();
    assert!(
        cloudsync(&["sync", "--wait", m.m("old").to_str().unwrap()])
            .status
            .success()
    );
    assert!(
        cloudsync(&["unsync", m.m("old").to_str().unwrap()])
            .status
            .success()
    );
    assert_eq!(
        xattr(&m.m("old/x.txt"), "user.cloudsync.status").as_deref(),
        Some("unsynced")
    );
    fs::write(m.m("old/y.txt"), "y").unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert!(m.c("old/x.txt").exists() && !m.c("old/y.txt").exists());
    // A sync request syncs it again.
    let out = cloudsync(&["sync", "--wait", m.m("old").to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{out:?}\n{}",
        m.log_text()
            .lines()
            .filter(|l| l.contains("old"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(m.c("old/y.txt").exists());
}

#[test]
fn bad_control_input_gets_clear_errors() {
    let m = Mount::start(&[]);
    let out = cloudsync(&["status", "/"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not inside a cloudsync mount"));
    let out = cloudsync(&["unsync", m.mnt.to_str().unwrap(), "--delete-cloud"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to delete the whole cloud"));
    let out = cloudsync(&[
        "sync",
        "--wait",
        "--timeout",
        "soon",
        m.mnt.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--timeout"));
    let out = cloudsync(&["status", m.m("missing.txt").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn locked_sets_and_xattr_control() {
    let m = with_sets(
        &["locked", "open"],
        "[[sync_set]]\npath = \"locked\"\nlock_onprem = true\n\n[[sync_set]]\npath = \"open\"\n",
        &["--pull-interval", "1s"],
    );
    // A file that comes from the cloud is read-only on-premise.
    fs::create_dir_all(m.c("locked")).unwrap();
    fs::write(m.c("locked/policy.txt"), "v1").unwrap();
    wait_until(Duration::from_secs(20), "the cloud file", || {
        m.o("locked/policy.txt").exists()
    });
    wait_until(Duration::from_secs(10), "locked status", || {
        xattr(&m.m("locked/policy.txt"), "user.cloudsync.status").as_deref() == Some("locked")
    });
    let e = fs::OpenOptions::new()
        .write(true)
        .open(m.m("locked/policy.txt"))
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EACCES));
    assert_eq!(
        fs::remove_file(m.m("locked/policy.txt"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EACCES)
    );
    assert_eq!(
        fs::rename(m.m("locked/policy.txt"), m.m("locked/p2.txt"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EACCES)
    );
    // New files may still be added, and cloud updates keep arriving.
    fs::write(m.m("locked/new.txt"), "mine").unwrap();
    fs::write(m.c("locked/policy.txt"), "v2 from the cloud").unwrap();
    wait_until(Duration::from_secs(20), "the cloud update", || {
        fs::read_to_string(m.m("locked/policy.txt")).unwrap_or_default() == "v2 from the cloud"
    });
    m.wait_status("locked/new.txt", "locked");
    assert_eq!(fs::read_to_string(m.c("locked/new.txt")).unwrap(), "mine");

    // Control through setxattr.
    let set = |p: &std::path::Path, v: &str| {
        Command::new("setfattr")
            .args(["-n", "user.cloudsync.request", "-v", v])
            .arg(p)
            .output()
            .unwrap()
    };
    fs::write(m.m("open/a.txt"), "a").unwrap();
    let out = set(&m.m("open/a.txt"), "sync");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = set(&m.m("open/a.txt"), "frobnicate");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Invalid argument"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("setfattr")
        .args(["-n", "user.cloudsync.etag", "-v", "x"])
        .arg(m.m("open/a.txt"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("not permitted"));
    m.wait_status("open/a.txt", "synced");
    // A cloud delete marks it DELETED_ON_CLOUD; a sync request pushes it again.
    fs::remove_file(m.c("open/a.txt")).unwrap();
    wait_until(Duration::from_secs(20), "DELETED_ON_CLOUD", || {
        xattr(&m.m("open/a.txt"), "user.cloudsync.error")
            .is_some_and(|e| e.starts_with("DELETED_ON_CLOUD"))
    });
    assert!(set(&m.m("open/a.txt"), "sync").status.success());
    m.wait_status("open/a.txt", "synced");
    assert_eq!(fs::read_to_string(m.c("open/a.txt")).unwrap(), "a");
    // unsync on a set's folder.
    assert!(set(&m.m("open"), "unsync").status.success());
    assert_eq!(
        xattr(&m.m("open/a.txt"), "user.cloudsync.status").as_deref(),
        Some("unsynced")
    );
}
