//! Trust boundaries through a real mount: what a local user with a symbolic link, or a cloud
//! user with a crafted name, can make the daemon do on-premise. The engine reaches ONPREM only
//! beneath it and never through a link, so none of these tests may see a byte outside ONPREM
//! change, and no file the daemon makes may be wider than the version it stands for.

mod harness;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use harness::{Mount, wait_until};

fn cloudsync(args: &[&str]) -> std::process::Output {
    Command::new(harness::bin()).args(args).output().unwrap()
}

fn sync_now(m: &Mount) {
    let out = cloudsync(&["sync", "--now", m.mnt.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}\n{}", m.log_text());
}

/// Every file below `dir`, with its content, to compare before and after.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>, u32)> {
    let mut v = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                stack.push(e.path());
            }
            let content = if m.is_file() {
                fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            v.push((
                e.path().to_string_lossy().into_owned(),
                content,
                m.permissions().mode(),
            ));
        }
    }
    v.sort();
    v
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// A local user links a folder of the mount to `/etc/cron.d`-like places, at the top and
/// deeper down, through the mount and straight in ONPREM; a cloud user uploads files under
/// those names. Nothing outside ONPREM is written, and the cloud items are shown failed.
#[test]
fn symlink_made_through_the_mount_never_lets_a_cloud_file_out() {
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("keep"), "outside").unwrap();
    let before = snapshot(outside.path());
    let m = Mount::start(&["--pull-interval", "1h"]);
    symlink(outside.path(), m.m("x")).unwrap();
    fs::create_dir_all(m.m("a")).unwrap();
    symlink(outside.path(), m.m("a/b")).unwrap();
    fs::create_dir_all(m.o("real")).unwrap();
    symlink(outside.path(), m.o("real/straight")).unwrap();
    m.wait_all_synced();
    for d in ["x", "a/b", "real/straight"] {
        fs::create_dir_all(m.c(d)).unwrap();
        fs::write(m.c(&format!("{d}/evil")), "pwned").unwrap();
        fs::write(m.c(&format!("{d}/keep")), "overwritten").unwrap();
    }
    sync_now(&m);
    sync_now(&m);
    assert_eq!(
        snapshot(outside.path()),
        before,
        "a file outside ONPREM changed:\n{}",
        m.log_text()
    );
    // The cloud copies stay, and each is listed as failed with a code and a reason.
    wait_until(Duration::from_secs(20), "the blocked items listed", || {
        let out = cloudsync(&["status", "--failed", m.mnt.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout);
        ["x/evil", "a/b/evil", "real/straight/evil"]
            .iter()
            .all(|p| text.contains(p))
            && text.contains("NAME_CLASH")
            && text.contains("symbolic link")
    });
    for d in ["x", "a/b", "real/straight"] {
        assert_eq!(fs::read(m.c(&format!("{d}/evil"))).unwrap(), b"pwned");
    }
    assert_eq!(fs::read_to_string(m.c("x/keep")).unwrap(), "overwritten");
}

/// A blocked item is warned about and queued once, not at every pull; a sync request (made
/// once the link is gone, say) looks at it again.
#[test]
fn a_blocked_item_is_warned_about_once_until_a_sync_request() {
    let outside = tempfile::tempdir().unwrap();
    let m = Mount::start(&["--pull-interval", "1s"]);
    symlink(outside.path(), m.m("x")).unwrap();
    fs::create_dir_all(m.c("x")).unwrap();
    fs::write(m.c("x/evil"), "pwned").unwrap();
    let warned = |m: &Mount| {
        m.log_text()
            .lines()
            .filter(|l| l.contains("pull::apply") && l.contains("goes through a symbolic link"))
            .count()
    };
    wait_until(
        Duration::from_secs(20),
        "the blocked item warned about",
        || warned(&m) > 0,
    );
    let once = warned(&m);
    // Three more pulls.
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(
        warned(&m),
        once,
        "warned again at a pull:\n{}",
        m.log_text()
    );
    sync_now(&m);
    wait_until(
        Duration::from_secs(20),
        "warned again after the request",
        || warned(&m) > once,
    );
    assert!(fs::read_dir(outside.path()).unwrap().next().is_none());
}

/// With `onprem-wins`, a link to an outside folder used to make the pusher upload the outside
/// files and rename them to conflict copies. Nothing outside is read, renamed or sent.
#[test]
fn onprem_wins_conflict_never_uploads_through_a_link() {
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret.txt"), "outside secret").unwrap();
    let before = snapshot(outside.path());
    let mut m = Mount::start(&[]);
    m.unmount();
    fs::create_dir_all(m.o("proj")).unwrap();
    let cfg = m.tmp.path().join("cloudsync.toml");
    fs::write(
        &cfg,
        "pull_interval = \"1h\"\n[[sync_set]]\npath = \"proj\"\nconflict = \"onprem-wins\"\n",
    )
    .unwrap();
    m.extra = vec!["--config".into(), cfg.to_string_lossy().into_owned()];
    m.spawn();
    symlink(outside.path(), m.m("proj/x")).unwrap();
    m.wait_all_synced();
    fs::create_dir_all(m.c("proj/x")).unwrap();
    fs::write(m.c("proj/x/secret.txt"), "cloud version").unwrap();
    sync_now(&m);
    sync_now(&m);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(snapshot(outside.path()), before, "{}", m.log_text());
    assert_eq!(
        fs::read_to_string(m.c("proj/x/secret.txt")).unwrap(),
        "cloud version",
        "an outside file was uploaded"
    );
    let names: Vec<_> = fs::read_dir(m.c("proj/x")).unwrap().collect();
    assert_eq!(names.len(), 1, "nothing else reached the cloud");
}

/// Downloads take the daemon's umask, and each side of a conflict keeps the mode of the version
/// it stands for: a cloud-wins conflict keeps a 0600 file 0600, and an onprem-wins conflict
/// copy is not left 0666.
#[test]
fn files_the_daemon_makes_are_never_wider_than_their_source() {
    let mut m = Mount::start(&["--pull-interval", "1h"]);
    // A new cloud file: 0666 minus the umask the daemon started with (the tests' 022).
    fs::write(m.c("new.txt"), "from the cloud").unwrap();
    sync_now(&m);
    assert_eq!(mode(&m.o("new.txt")), 0o644);
    // A private file, edited on both sides: the cloud wins, the file stays private, and so
    // does the conflict copy.
    fs::write(m.m("private.txt"), "v1").unwrap();
    fs::set_permissions(m.m("private.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    m.wait_status("private.txt", "synced");
    m.unmount();
    fs::write(m.o("private.txt"), "local edit").unwrap();
    fs::write(m.c("private.txt"), "cloud edit, longer").unwrap();
    m.spawn();
    sync_now(&m);
    wait_until(Duration::from_secs(20), "the conflict", || {
        fs::read_to_string(m.o("private.txt")).is_ok_and(|s| s == "cloud edit, longer")
    });
    assert_eq!(mode(&m.o("private.txt")), 0o600);
    let copies: Vec<_> = fs::read_dir(&m.onprem)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("(conflict "))
        .collect();
    assert_eq!(copies.len(), 1);
    assert_eq!(mode(&copies[0]), 0o600);
    assert_eq!(fs::read_to_string(&copies[0]).unwrap(), "local edit");
}

/// The same with `onprem-wins`: the cloud version, kept as the conflict copy, gets the mode of
/// the on-premise file, never 0666.
#[test]
fn onprem_wins_conflict_copy_keeps_the_files_mode() {
    let mut m = Mount::start(&[]);
    m.unmount();
    let cfg = m.tmp.path().join("cloudsync.toml");
    fs::create_dir_all(m.o("p")).unwrap();
    fs::write(
        &cfg,
        "pull_interval = \"1h\"\n[[sync_set]]\npath = \"p\"\nconflict = \"onprem-wins\"\n",
    )
    .unwrap();
    m.extra = vec!["--config".into(), cfg.to_string_lossy().into_owned()];
    m.spawn();
    fs::write(m.m("p/f.txt"), "v1").unwrap();
    fs::set_permissions(m.m("p/f.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    m.wait_status("p/f.txt", "synced");
    m.unmount();
    fs::write(m.o("p/f.txt"), "local wins").unwrap();
    fs::write(m.c("p/f.txt"), "cloud loses").unwrap();
    m.spawn();
    sync_now(&m);
    wait_until(Duration::from_secs(20), "the conflict copy", || {
        fs::read_dir(m.o("p")).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .contains("(conflict ")
        })
    });
    let copy = fs::read_dir(m.o("p"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("(conflict "))
        .unwrap();
    assert_eq!(fs::read_to_string(&copy).unwrap(), "cloud loses");
    assert_eq!(mode(&copy), 0o640);
    assert_eq!(mode(&m.o("p/f.txt")), 0o640);
}

/// A conflict on a name of 240 bytes: the copy's name is shortened to fit NAME_MAX (keeping the
/// extension), both versions are kept, and no temporary file is left behind.
#[test]
fn conflict_on_a_long_name_keeps_both_and_leaves_no_temp() {
    for winner in ["cloud-wins", "onprem-wins"] {
        let mut m = Mount::start(&[]);
        m.unmount();
        fs::create_dir_all(m.o("p")).unwrap();
        let cfg = m.tmp.path().join("cloudsync.toml");
        fs::write(
            &cfg,
            format!(
                "pull_interval = \"1h\"\n[[sync_set]]\npath = \"p\"\nconflict = \"{winner}\"\n"
            ),
        )
        .unwrap();
        m.extra = vec!["--config".into(), cfg.to_string_lossy().into_owned()];
        m.spawn();
        let name = format!("p/{}.txt", "n".repeat(236));
        fs::write(m.m(&name), "v1").unwrap();
        m.wait_status(&name, "synced");
        m.unmount();
        fs::write(m.o(&name), "local").unwrap();
        fs::write(m.c(&name), "cloud").unwrap();
        m.spawn();
        sync_now(&m);
        let list = || -> Vec<String> {
            fs::read_dir(m.o("p"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        };
        wait_until(Duration::from_secs(20), "the conflict copy", || {
            list().iter().any(|n| n.contains("(conflict "))
        });
        sync_now(&m);
        let names = list();
        assert_eq!(names.len(), 2, "{winner}: {names:?}\n{}", m.log_text());
        let copy = names.iter().find(|n| n.contains("(conflict ")).unwrap();
        assert!(copy.len() <= 255 && copy.ends_with(".txt"), "{copy}");
        let mut contents: Vec<String> = names
            .iter()
            .map(|n| fs::read_to_string(m.o(&format!("p/{n}"))).unwrap())
            .collect();
        contents.sort();
        assert_eq!(contents, ["cloud", "local"], "{winner}");
    }
}

/// A cloud tree nested deeper than the walk goes (a hostile server could nest without end) is
/// not walked below the limit; the pull completes, and nothing below is taken for deleted.
#[test]
fn a_cloud_tree_nested_without_end_is_walked_only_so_deep() {
    let m = Mount::start(&["--pull-interval", "1h"]);
    let deep: Vec<&str> = vec!["d"; 300];
    let deep = deep.join("/");
    fs::create_dir_all(m.c(&deep)).unwrap();
    fs::write(m.c(&format!("{deep}/bottom.txt")), "deep").unwrap();
    fs::write(m.c("top.txt"), "top").unwrap();
    sync_now(&m);
    assert_eq!(fs::read_to_string(m.o("top.txt")).unwrap(), "top");
    assert!(!m.o(&format!("{deep}/bottom.txt")).exists());
    assert!(m.log_text().contains("deeper than 256 levels"));
    sync_now(&m);
    assert!(
        m.c(&format!("{deep}/bottom.txt")).exists(),
        "nothing deleted"
    );
}
