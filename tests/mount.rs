//! Mount tests: a real FUSE mount driven with syscalls and ordinary tools, checked against the
//! on-premise folder and the `file://` cloud.

mod harness;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use std::time::Duration;

use harness::{Mount, tree, wait_until, xattr};

fn skip(name: &str) -> bool {
    cloudsync::ignore::Ignore::new(&[])
        .unwrap()
        .name_excluded(name)
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn assert_converged(m: &Mount) {
    m.wait_all_synced();
    assert_eq!(
        tree(&m.onprem, &skip),
        tree(&m.cloud, &skip),
        "cloud differs from on-premise"
    );
}

fn posix_ops(extra: &[&str]) {
    let m = Mount::start(extra);
    // create + write + read back
    fs::write(m.m("a.txt"), b"hello").unwrap();
    assert_eq!(
        fs::read(m.o("a.txt")).unwrap(),
        b"hello",
        "writes land on-premise at once"
    );
    assert_eq!(fs::read(m.m("a.txt")).unwrap(), b"hello");
    // append, fsync
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(m.m("a.txt"))
        .unwrap();
    f.write_all(b" world").unwrap();
    f.sync_all().unwrap();
    drop(f);
    assert_eq!(fs::read(m.o("a.txt")).unwrap(), b"hello world");
    // mkdir, nested create, rename of file and folder
    fs::create_dir_all(m.m("d/e")).unwrap();
    fs::write(m.m("d/e/f.txt"), b"f").unwrap();
    fs::rename(m.m("a.txt"), m.m("d/b.txt")).unwrap();
    fs::rename(m.m("d/e"), m.m("d/g")).unwrap();
    assert!(m.o("d/g/f.txt").exists());
    // setattr: chmod, truncate, utimens
    fs::set_permissions(m.m("d/b.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(fs::metadata(m.o("d/b.txt")).unwrap().mode() & 0o777, 0o600);
    fs::OpenOptions::new()
        .write(true)
        .open(m.m("d/b.txt"))
        .unwrap()
        .set_len(5)
        .unwrap();
    assert_eq!(fs::read(m.o("d/b.txt")).unwrap(), b"hello");
    run(Command::new("touch")
        .args(["-d", "2020-01-02 03:04:05"])
        .arg(m.m("d/b.txt")));
    assert_eq!(
        fs::metadata(m.o("d/b.txt")).unwrap().mtime(),
        fs::metadata(m.m("d/b.txt")).unwrap().mtime()
    );
    // symlink, readlink, hard link with link counts and stable inode numbers
    std::os::unix::fs::symlink("b.txt", m.m("d/sym")).unwrap();
    assert_eq!(fs::read_link(m.m("d/sym")).unwrap().to_str(), Some("b.txt"));
    fs::hard_link(m.m("d/b.txt"), m.m("d/hard")).unwrap();
    let (a, b) = (
        fs::metadata(m.m("d/b.txt")).unwrap(),
        fs::metadata(m.m("d/hard")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.nlink(), 2);
    assert_eq!(
        fs::metadata(m.m("d/b.txt")).unwrap().ino(),
        a.ino(),
        "inode numbers are stable"
    );
    fs::remove_file(m.m("d/hard")).unwrap();
    assert_eq!(fs::metadata(m.m("d/b.txt")).unwrap().nlink(), 1);
    // user.* xattrs pass through, reserved ones are refused
    run(Command::new("setfattr")
        .args(["-n", "user.color", "-v", "red"])
        .arg(m.m("d/b.txt")));
    assert_eq!(xattr(&m.o("d/b.txt"), "user.color").as_deref(), Some("red"));
    let out = Command::new("setfattr")
        .args(["-n", "user.cloudsync.status", "-v", "synced"])
        .arg(m.m("d/b.txt"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not permitted"));
    assert_eq!(
        xattr(&m.o("d/b.txt"), "user.cloudsync.status"),
        None,
        "reserved names never reach on-premise"
    );
    // statfs, fallocate, locks
    run(Command::new("df").arg(&m.mnt));
    run(Command::new("fallocate").args(["-l", "1M"]).arg(m.m("big")));
    assert_eq!(fs::metadata(m.o("big")).unwrap().len(), 1 << 20);
    run(Command::new("flock").arg(m.m("big")).arg("true"));
    // readdir sees everything, unlink and rmdir
    let mut names: Vec<_> = fs::read_dir(m.m("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["b.txt", "g", "sym"]);
    fs::remove_file(m.m("big")).unwrap();
    fs::remove_file(m.m("d/g/f.txt")).unwrap();
    fs::remove_dir(m.m("d/g")).unwrap();
    assert!(!m.o("d/g").exists());
    // errors come with the right errno
    assert_eq!(
        fs::remove_dir(m.m("d")).unwrap_err().raw_os_error(),
        Some(libc::ENOTEMPTY)
    );
    assert_eq!(
        fs::read(m.m("nope")).unwrap_err().raw_os_error(),
        Some(libc::ENOENT)
    );
    assert_converged(&m);
    assert_eq!(fs::read(m.c("d/b.txt")).unwrap(), b"hello");
    assert!(!m.c("d/sym").exists(), "symlinks stay on-premise");
}

#[test]
fn posix_operations_with_passthrough() {
    posix_ops(&[]);
}

#[test]
fn posix_operations_through_the_daemon() {
    posix_ops(&["--no-passthrough"]);
}

#[test]
fn rename_flags() {
    let m = Mount::start(&[]);
    fs::write(m.m("x"), b"x").unwrap();
    fs::write(m.m("y"), b"y").unwrap();
    m.wait_all_synced();
    let out = Command::new("mv")
        .args(["--exchange"])
        .arg(m.m("x"))
        .arg(m.m("y"))
        .output()
        .unwrap();
    if out.status.success() {
        assert_eq!(fs::read(m.o("x")).unwrap(), b"y");
        assert_converged(&m);
    }
    let out = Command::new("mv")
        .args(["--no-clobber", "--update=none-fail"])
        .arg(m.m("x"))
        .arg(m.m("y"))
        .output()
        .unwrap();
    let _ = out; // older coreutils lack --update=none-fail; the core test covers NOREPLACE
}

#[test]
fn status_xattrs_follow_the_push() {
    let m = Mount::start(&["--push-delay", "1500ms"]);
    fs::create_dir(m.m("dir")).unwrap();
    fs::write(m.m("dir/report.txt"), b"v1").unwrap();
    assert_eq!(
        xattr(&m.m("dir/report.txt"), "user.cloudsync.status").as_deref(),
        Some("pending")
    );
    wait_until(Duration::from_secs(5), "folder pending", || {
        xattr(&m.m("dir"), "user.cloudsync.status").as_deref() == Some("pending")
    });
    fs::write(m.m("dir/.~lock.report.txt#"), b"lock").unwrap();
    assert_eq!(
        xattr(&m.m("dir/.~lock.report.txt#"), "user.cloudsync.status").as_deref(),
        Some("excluded")
    );
    m.wait_status("dir/report.txt", "synced");
    m.wait_status("dir", "synced");
    let list = Command::new("getfattr")
        .args(["-d", "-m", "-"])
        .arg(m.m("dir/report.txt"))
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains("user.cloudsync.synced_at"), "{list}");
    assert!(list.contains("user.cloudsync.etag"), "{list}");
    assert!(
        !m.c("dir/.~lock.report.txt#").exists(),
        "lock files never reach the cloud"
    );
    // A change makes it pending again.
    fs::write(m.m("dir/report.txt"), b"v2").unwrap();
    assert_eq!(
        xattr(&m.m("dir/report.txt"), "user.cloudsync.status").as_deref(),
        Some("pending")
    );
    m.wait_status("dir/report.txt", "synced");
    assert_eq!(fs::read(m.c("dir/report.txt")).unwrap(), b"v2");
}

#[test]
fn many_writes_make_one_push() {
    let m = Mount::start(&["--push-delay", "800ms"]);
    for i in 0..20 {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(m.m("log.txt"))
            .unwrap();
        writeln!(f, "line {i}").unwrap();
    }
    m.wait_status("log.txt", "synced");
    assert_eq!(m.uploads_of("log.txt"), 1, "{}", m.log_text());
    assert_eq!(
        fs::read(m.c("log.txt")).unwrap(),
        fs::read(m.o("log.txt")).unwrap()
    );
}

#[test]
fn editor_saves_are_one_update() {
    let m = Mount::start(&[]);
    for name in ["vim.txt", "report.odt", "rsync.txt"] {
        fs::write(m.m(name), b"version 1").unwrap();
    }
    m.wait_all_synced();
    let before: Vec<usize> = ["vim.txt", "report.odt", "rsync.txt"]
        .iter()
        .map(|n| m.uploads_of(n))
        .collect();
    assert_eq!(before, [1, 1, 1]);

    // vim: probe file, backup by rename, write the new file, drop the backup.
    fs::write(m.m("4913"), b"").unwrap();
    fs::remove_file(m.m("4913")).unwrap();
    fs::rename(m.m("vim.txt"), m.m("vim.txt~")).unwrap();
    fs::write(m.m("vim.txt"), b"version 2 (vim)").unwrap();
    fs::remove_file(m.m("vim.txt~")).unwrap();

    // LibreOffice: lock file, temp file renamed over the original, lock removed.
    fs::write(m.m(".~lock.report.odt#"), b"me").unwrap();
    fs::write(m.m("lu4711abc.tmp"), b"version 2 (office)").unwrap();
    fs::rename(m.m("lu4711abc.tmp"), m.m("report.odt")).unwrap();
    fs::remove_file(m.m(".~lock.report.odt#")).unwrap();

    // rsync itself: .NAME.XXXXXX renamed into place.
    let src = m.tmp.path().join("rsync-src.txt");
    fs::write(&src, b"version 2 (rsync)").unwrap();
    run(Command::new("rsync").arg(&src).arg(m.m("rsync.txt")));

    m.wait_all_synced();
    assert_eq!(fs::read(m.c("vim.txt")).unwrap(), b"version 2 (vim)");
    assert_eq!(fs::read(m.c("report.odt")).unwrap(), b"version 2 (office)");
    assert_eq!(fs::read(m.c("rsync.txt")).unwrap(), b"version 2 (rsync)");
    for n in ["vim.txt", "report.odt", "rsync.txt"] {
        assert_eq!(
            m.uploads_of(n),
            2,
            "{n}: one update per save\n{}",
            m.log_text()
        );
        assert!(
            m.other_cloud_ops_of(n).is_empty(),
            "{n}: {:?}",
            m.other_cloud_ops_of(n)
        );
    }
    assert_converged(&m);
    let names: Vec<_> = fs::read_dir(&m.cloud)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names.len(),
        3,
        "no temp or lock file in the cloud: {names:?}"
    );
}

#[test]
fn real_tools_cp_mv_rsync_tar() {
    let m = Mount::start(&[]);
    let src = m.tmp.path().join("src");
    for i in 0..30 {
        let d = src.join(format!("dir{}", i % 5));
        fs::create_dir_all(&d).unwrap();
        fs::write(
            d.join(format!("file{i}.txt")),
            format!("content {i}").repeat(i + 1),
        )
        .unwrap();
    }
    run(Command::new("cp").arg("-r").arg(&src).arg(m.m("copied")));
    run(Command::new("rsync")
        .arg("-a")
        .arg(format!("{}/", src.display()))
        .arg(m.m("rsynced")));
    let tarball = m.tmp.path().join("t.tar");
    run(Command::new("tar")
        .arg("-cf")
        .arg(&tarball)
        .arg("-C")
        .arg(&src)
        .arg("."));
    fs::create_dir(m.m("untarred")).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&tarball)
        .arg("-C")
        .arg(m.m("untarred")));
    run(Command::new("mv").arg(m.m("copied")).arg(m.m("moved")));
    assert_converged(&m);
    assert!(m.c("moved/dir1/file1.txt").exists());
    assert!(!m.c("copied").exists());
}

#[test]
fn changes_made_while_down_are_pushed_at_start() {
    let mut m = Mount::start(&[]);
    fs::write(m.m("keep.txt"), b"one").unwrap();
    fs::write(m.m("gone.txt"), b"bye").unwrap();
    m.wait_all_synced();
    m.unmount();
    // Straight into the on-premise folder, with no daemon running.
    fs::write(m.o("keep.txt"), b"two").unwrap();
    fs::remove_file(m.o("gone.txt")).unwrap();
    fs::create_dir(m.o("new")).unwrap();
    fs::write(m.o("new/n.txt"), b"new").unwrap();
    m.spawn();
    assert_converged(&m);
    assert_eq!(fs::read(m.c("keep.txt")).unwrap(), b"two");
    assert!(!m.c("gone.txt").exists());
}

/// Changes made straight in the on-premise folder while it is mounted (not through the mount)
/// reach the cloud at the next rescan: a new file and folder, an edit, a delete.
#[test]
fn changes_made_straight_in_onprem_while_mounted_are_found_by_the_rescan() {
    let m = Mount::start(&["--rescan-interval", "1s"]);
    fs::write(m.m("edit.txt"), b"one").unwrap();
    fs::write(m.m("gone.txt"), b"bye").unwrap();
    m.wait_all_synced();
    fs::write(m.o("edit.txt"), b"two, edited behind the mount").unwrap();
    fs::remove_file(m.o("gone.txt")).unwrap();
    fs::create_dir(m.o("new")).unwrap();
    fs::write(m.o("new/n.txt"), b"new behind the mount").unwrap();
    wait_until(
        Duration::from_secs(20),
        "the direct changes in the cloud",
        || {
            fs::read(m.c("edit.txt")).ok().as_deref() == Some(b"two, edited behind the mount")
                && !m.c("gone.txt").exists()
                && fs::read(m.c("new/n.txt")).ok().as_deref() == Some(b"new behind the mount")
        },
    );
    assert_converged(&m);
}

/// A daemon killed with its mount in place leaves a dead mount ("Transport endpoint is not
/// connected"); the next `cloudsync mount` there detaches it and mounts again, as a
/// `Restart=` of systemd or an admin's `mount` needs.
#[test]
fn a_mount_point_left_by_a_killed_daemon_is_mounted_again() {
    let mut m = Mount::start(&[]);
    fs::write(m.m("a.txt"), "a").unwrap();
    m.wait_status("a.txt", "synced");
    m.kill9_leaving_the_mount();
    let e = fs::metadata(m.m("a.txt")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTCONN), "{e}");
    m.spawn();
    wait_until(Duration::from_secs(20), "the new mount to answer", || {
        fs::read(m.m("a.txt")).is_ok_and(|b| b == b"a")
    });
    assert!(
        m.log_text().contains("detached the dead cloudsync mount"),
        "{}",
        m.log_text()
    );
    fs::write(m.m("b.txt"), "b").unwrap();
    m.wait_status("b.txt", "synced");
    assert_eq!(fs::read(m.c("b.txt")).unwrap(), b"b");
    m.unmount();
}

#[test]
fn kill9_during_a_burst_loses_nothing() {
    let mut m = Mount::start(&[]);
    let mut written = 0;
    for i in 0..400 {
        if i == 200 {
            m.kill9();
            break;
        }
        fs::write(m.m(&format!("f{i:03}.txt")), format!("burst {i}")).unwrap();
        written += 1;
    }
    assert_eq!(written, 200);
    m.spawn();
    for i in 200..300 {
        fs::write(m.m(&format!("f{i:03}.txt")), format!("burst {i}")).unwrap();
    }
    assert_converged(&m);
    assert_eq!(fs::read_dir(&m.cloud).unwrap().count(), 300);
    // Nothing unchanged is uploaded again after a clean restart.
    let uploads = m.log_text().matches("uploaded").count();
    m.unmount();
    m.spawn();
    m.wait_all_synced();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(m.log_text().matches("uploaded").count(), uploads);
}

#[test]
fn read_only_mount_refuses_writes() {
    let m = Mount::start(&["-o", "ro"]);
    let e = fs::write(m.m("x"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
}

#[test]
fn cli_unmount_stops_the_daemon() {
    let mut m = Mount::start(&[]);
    fs::write(m.m("x"), b"x").unwrap();
    let out = Command::new(harness::bin())
        .arg("unmount")
        .arg(&m.mnt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until(Duration::from_secs(10), "unmount", || {
        !harness::is_mounted(&m.mnt)
    });
    m.kill9();
}

#[test]
fn real_vim_save_is_one_update() {
    let vim = ["vim.tiny", "vim.basic", "vim"]
        .into_iter()
        .find(|v| {
            Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {v}"))
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("vim is installed by scripts/test (vim-tiny)");
    let m = Mount::start(&[]);
    fs::write(m.m("notes.txt"), b"first line\n").unwrap();
    m.wait_status("notes.txt", "synced");
    run(Command::new(vim)
        .args([
            "-N",
            "-u",
            "NONE",
            "-i",
            "NONE",
            "-n",
            "-es",
            "-c",
            "normal! Gosecond line",
            "-c",
            "wq",
        ])
        .arg(m.m("notes.txt")));
    m.wait_all_synced();
    assert_eq!(
        fs::read(m.c("notes.txt")).unwrap(),
        b"first line\nsecond line\n"
    );
    assert_eq!(m.uploads_of("notes.txt"), 2, "{}", m.log_text());
    assert!(m.other_cloud_ops_of("notes.txt").is_empty());
    assert_converged(&m);
}

#[test]
fn hard_links_and_times() {
    let m = Mount::start(&[]);
    fs::write(m.m("report.txt"), "v1").unwrap();
    fs::hard_link(m.m("report.txt"), m.m("hard.txt")).unwrap();
    m.wait_all_synced();
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(m.m("hard.txt"))
        .unwrap();
    f.write_all(b" + more").unwrap();
    drop(f);
    m.wait_all_synced();
    assert_eq!(fs::read_to_string(m.c("report.txt")).unwrap(), "v1 + more");
    assert_eq!(fs::read_to_string(m.c("hard.txt")).unwrap(), "v1 + more");
    // New times alone make the file pending, then synced, with no upload.
    let uploads = m.uploads_of("report.txt");
    run(Command::new("touch")
        .args(["-d", "2021-01-01"])
        .arg(m.m("report.txt")));
    assert_eq!(
        xattr(&m.m("report.txt"), "user.cloudsync.status").as_deref(),
        Some("pending")
    );
    m.wait_status("report.txt", "synced");
    assert_eq!(m.uploads_of("report.txt"), uploads);
}

/// A state dir whose socket path is longer than a socket address holds still takes control
/// requests.
#[test]
fn a_long_state_dir_path_still_takes_control_requests() {
    let mut m = Mount::prepare_with_cloud("", &[], &[]);
    m.cloud_url = format!("file://{}", m.cloud.display());
    m.state = m
        .tmp
        .path()
        .join("a-rather-long-state-directory-name-".repeat(3));
    m.spawn();
    assert!(m.state.join("control.sock").as_os_str().len() > 108);
    fs::write(m.m("f.txt"), "x").unwrap();
    let out = Command::new(harness::bin())
        .args(["sync", "--wait", "--timeout", "30s"])
        .arg(m.m("f.txt"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(fs::read_to_string(m.c("f.txt")).unwrap(), "x");
}

/// `cloudsync status | head` ends quietly when its output is cut off.
#[test]
fn status_output_cut_off_ends_quietly() {
    let m = Mount::start(&[]);
    // More than a pipe holds, so the writer meets the closed pipe.
    for i in 0..2000 {
        fs::write(m.o(&format!("a-rather-long-file-name-{i:04}.txt")), "x").unwrap();
    }
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' status '{}' | head -1",
            harness::bin().display(),
            m.mnt.display()
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

/// Runs `script` with sh as the user and group nobody, in `dir`.
fn as_nobody(dir: &std::path::Path, script: &str) {
    run(Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
        ])
        .arg(script)
        .current_dir(dir));
}

/// An unprivileged write or truncation clears the setuid bit, and the setgid bit of a
/// group-executable file, as on a local filesystem; root keeps them.
fn setid_bits(extra: &[&str]) {
    let mut args = vec!["-o", "allow_other", "-o", "default_permissions"];
    args.extend_from_slice(extra);
    let m = Mount::start(&args);
    // nobody must reach the mount through the test's private temporary folder.
    let top = m.mnt.parent().unwrap();
    fs::set_permissions(top, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(m.m(""), fs::Permissions::from_mode(0o777)).unwrap();
    let mode = |rel: &str| {
        (
            fs::metadata(m.m(rel)).unwrap().mode() & 0o7777,
            fs::metadata(m.o(rel)).unwrap().mode() & 0o7777,
        )
    };
    let chmod = |rel: &str, mode: u32| {
        fs::set_permissions(m.m(rel), fs::Permissions::from_mode(mode)).unwrap()
    };
    fs::write(m.m("f"), b"x").unwrap();
    // (mode before, what nobody does, mode after, why); the mode is checked through the mount
    // and on-premise.
    let steps = [
        (
            0o4777,
            "printf y >> f",
            0o777,
            "a write by nobody clears setuid",
        ),
        (
            0o2777,
            "truncate -s 1 f",
            0o777,
            "a truncation by nobody clears setgid",
        ),
        (0o4777, ": > f", 0o777, "O_TRUNC by nobody clears setuid"),
        (
            0o2767,
            "printf y >> f",
            0o2767,
            "setgid without group execute stays",
        ),
        (
            0o4777,
            "fallocate -l 8192 f",
            0o777,
            "fallocate by nobody clears setuid",
        ),
    ];
    for (before, script, after, why) in steps {
        chmod("f", before);
        as_nobody(&m.mnt, script);
        assert_eq!(mode("f"), (after, after), "{why}");
    }
    assert_eq!(fs::metadata(m.o("f")).unwrap().len(), 8192);

    chmod("f", 0o6777);
    fs::OpenOptions::new()
        .append(true)
        .open(m.m("f"))
        .unwrap()
        .write_all(b"z")
        .unwrap();
    assert_eq!(mode("f"), (0o6777, 0o6777), "root keeps both bits");
    let data = fs::read(m.o("f")).unwrap();
    assert_eq!((data.len(), data[0], data[8192]), (8193, b'y', b'z'));
}

#[test]
fn setid_bits_with_passthrough() {
    setid_bits(&[]);
}

#[test]
fn setid_bits_through_the_daemon() {
    setid_bits(&["--no-passthrough"]);
}

/// Pulls so far, as `cloudsync status` reports them.
fn pulls_ok(m: &Mount) -> u64 {
    let out = Command::new(harness::bin())
        .arg("status")
        .arg(&m.mnt)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let rest = text
        .split("pulls: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no pull counts in {text}"));
    rest.split(' ').next().unwrap().parse().unwrap()
}

/// `sync --now` is one pull: the daemon runs the pull the request asks for itself, and starts
/// no other for it.
#[test]
fn sync_now_is_one_pull() {
    let m = Mount::start(&["--pull-interval", "1h"]);
    fs::write(m.m("a.txt"), b"a").unwrap();
    m.wait_all_synced();
    wait_until(Duration::from_secs(10), "the start-up pull", || {
        pulls_ok(&m) >= 1
    });
    let before = pulls_ok(&m);
    run(Command::new(harness::bin())
        .args(["sync", "--now"])
        .arg(&m.mnt));
    // Time for a second pull, had the request started one in the background.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(pulls_ok(&m), before + 1);
}
