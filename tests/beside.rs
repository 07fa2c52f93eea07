//! Changes made beside the mount: straight in the on-premise folder, as a Samba share or an
//! admin's shell would make them. Every mount here rescans only once an hour, so only the watch
//! can bring these changes to the cloud in time; each test runs with fanotify and, where it
//! says so, with the inotify fallback forced.

mod harness;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use harness::{Mount, conflict_copies, tree, wait_until};

fn skip(name: &str) -> bool {
    cloudsync::ignore::Ignore::new(&[])
        .unwrap()
        .name_excluded(name)
}

/// A mount with the given watch, rescanning only every hour.
fn mount(watch: &str, extra: &[&str]) -> Mount {
    let mut args = vec!["--watch", watch, "--rescan-interval", "1h"];
    args.extend_from_slice(extra);
    let m = Mount::start(&args);
    wait_until(Duration::from_secs(10), "the watch to start", || {
        m.log_text()
            .contains("watching the on-premise folder for changes made beside the mount")
    });
    let log = m.log_text();
    assert!(
        log.contains(&format!("watch=\"{watch}\"")),
        "the {watch} watch is not the one running:\n{log}"
    );
    m
}

/// Waits until the cloud holds what ONPREM holds and the mount says all is synced.
fn converged(m: &Mount, within: Duration) {
    let t = Instant::now();
    loop {
        let on = tree(&m.onprem, &skip);
        let cl = tree(&m.cloud, &skip);
        if on == cl && m.status("").as_deref() == Some("synced") {
            return;
        }
        if t.elapsed() > within {
            // What the daemon said of the paths that differ, for a failure under load.
            let d = harness::diff(&on, &cl);
            let names: Vec<&str> = d
                .lines()
                .filter_map(|l| l.rsplit(' ').next())
                .filter_map(|p| p.rsplit('/').next())
                .collect();
            let log = m.log_text();
            let said: Vec<&str> = log
                .lines()
                .filter(|l| names.iter().any(|n| !n.is_empty() && l.contains(n)))
                .collect();
            panic!(
                "the cloud did not catch up with ONPREM within {within:?} (status {:?}):\n{d}\nthe daemon on those names:\n{}",
                m.status(""),
                said.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The mount shows `want` for `rel` well before the kernel's one-second cache would expire:
/// the watch told the kernel what changed.
fn mount_shows(m: &Mount, rel: &str, want: Option<&[u8]>) {
    let t = Instant::now();
    loop {
        let got = fs::read(m.m(rel)).ok();
        if got.as_deref() == want {
            return;
        }
        if t.elapsed() > Duration::from_millis(700) {
            panic!("the mount still shows {got:?} for {rel}, not {want:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ino(p: &Path) -> u64 {
    fs::symlink_metadata(p).unwrap().ino()
}

/// Create, edit, rename, folder rename and delete, each made straight in ONPREM.
fn basic_changes(watch: &str) {
    let m = mount(watch, &[]);
    fs::write(m.o("a.txt"), b"one").unwrap();
    converged(&m, Duration::from_secs(10));
    assert_eq!(fs::read(m.c("a.txt")).unwrap(), b"one");

    // An edit of another size: the mount has the old size cached, and must not show it.
    assert_eq!(fs::read(m.m("a.txt")).unwrap(), b"one");
    fs::write(m.o("a.txt"), b"one and two").unwrap();
    mount_shows(&m, "a.txt", Some(b"one and two"));
    converged(&m, Duration::from_secs(10));
    assert_eq!(fs::read(m.c("a.txt")).unwrap(), b"one and two");

    // A rename is a move in the cloud: the same cloud file under the new name.
    let before = ino(&m.c("a.txt"));
    fs::rename(m.o("a.txt"), m.o("b.txt")).unwrap();
    mount_shows(&m, "a.txt", None);
    mount_shows(&m, "b.txt", Some(b"one and two"));
    converged(&m, Duration::from_secs(10));
    assert_eq!(
        ino(&m.c("b.txt")),
        before,
        "the rename was not a cloud move"
    );
    assert_eq!(
        m.uploads_of("b.txt"),
        0,
        "the renamed file was uploaded again"
    );

    // A folder with files, renamed whole.
    fs::create_dir_all(m.o("d/e")).unwrap();
    fs::write(m.o("d/e/f.txt"), b"f").unwrap();
    fs::write(m.o("d/g.txt"), b"g").unwrap();
    converged(&m, Duration::from_secs(10));
    let before = ino(&m.c("d/e/f.txt"));
    fs::rename(m.o("d"), m.o("h")).unwrap();
    mount_shows(&m, "h/e/f.txt", Some(b"f"));
    converged(&m, Duration::from_secs(10));
    assert_eq!(
        ino(&m.c("h/e/f.txt")),
        before,
        "the folder rename was not a cloud move"
    );
    let moved = m.other_cloud_ops_of("d");
    assert!(
        moved.iter().any(|l| l.contains("moved in the cloud")),
        "no cloud move of the folder: {moved:?}"
    );

    // A mode change alone uploads nothing; a delete deletes.
    let uploads = m.uploads_of("h/g.txt");
    Command::new("chmod")
        .arg("600")
        .arg(m.o("h/g.txt"))
        .status()
        .unwrap();
    fs::remove_file(m.o("b.txt")).unwrap();
    mount_shows(&m, "b.txt", None);
    converged(&m, Duration::from_secs(10));
    assert!(!m.c("b.txt").exists());
    assert_eq!(
        m.uploads_of("h/g.txt"),
        uploads,
        "a chmod uploaded the file"
    );
    assert!(conflict_copies(&m.onprem).is_empty());
}

#[test]
fn fanotify_create_edit_rename_delete() {
    basic_changes("fanotify");
}

#[test]
fn inotify_create_edit_rename_delete() {
    basic_changes("inotify");
}

/// An editor's save made beside the mount (LibreOffice: a lock file, a temporary file renamed
/// over the document) is one update of the same cloud file.
fn editor_save(watch: &str) {
    let m = mount(watch, &[]);
    fs::write(m.o("report.odt"), b"version 1").unwrap();
    converged(&m, Duration::from_secs(10));
    fs::write(m.o(".~lock.report.odt#"), b"lock").unwrap();
    fs::write(m.o("lu1234.tmp"), b"version 2, longer").unwrap();
    fs::rename(m.o("lu1234.tmp"), m.o("report.odt")).unwrap();
    fs::remove_file(m.o(".~lock.report.odt#")).unwrap();
    mount_shows(&m, "report.odt", Some(b"version 2, longer"));
    converged(&m, Duration::from_secs(10));
    assert_eq!(m.uploads_of("report.odt"), 2, "one upload per save");
    assert!(
        m.other_cloud_ops_of("report.odt").is_empty(),
        "the save deleted or moved the cloud file: {:?}",
        m.other_cloud_ops_of("report.odt")
    );
    for (p, _) in tree(&m.cloud, &|_| false) {
        assert!(
            !skip(p.rsplit('/').next().unwrap()),
            "{p} reached the cloud"
        );
    }
}

#[test]
fn fanotify_editor_save_beside_the_mount() {
    editor_save("fanotify");
}

#[test]
fn inotify_editor_save_beside_the_mount() {
    editor_save("inotify");
}

/// `cp -r` of 1000 files into ONPREM: all reach the cloud.
fn copy_tree(watch: &str) {
    let m = mount(watch, &[]);
    let src = m.tmp.path().join("src");
    for d in 0..10 {
        fs::create_dir_all(src.join(format!("d{d}"))).unwrap();
        for f in 0..100 {
            fs::write(src.join(format!("d{d}/f{f}.txt")), format!("file {d}/{f}")).unwrap();
        }
    }
    let t = Instant::now();
    let st = Command::new("cp")
        .arg("-r")
        .arg(&src)
        .arg(m.o("copy"))
        .status()
        .unwrap();
    assert!(st.success());
    converged(&m, Duration::from_secs(60));
    eprintln!(
        "{watch}: 1000 files copied beside the mount in the cloud after {:?}",
        t.elapsed()
    );
    assert_eq!(tree(&m.cloud, &skip).len(), 1011);
}

#[test]
fn fanotify_cp_r_of_1000_files() {
    copy_tree("fanotify");
}

#[test]
fn inotify_cp_r_of_1000_files() {
    copy_tree("inotify");
}

/// What the daemon writes itself (downloads of cloud changes) is not taken for a change to push.
fn downloads_not_requeued(watch: &str) {
    let m = mount(watch, &["--pull-interval", "1s"]);
    fs::create_dir(m.c("in")).unwrap();
    fs::write(m.c("in/cloud.txt"), b"from the cloud").unwrap();
    wait_until(Duration::from_secs(15), "the download", || {
        fs::read(m.o("in/cloud.txt")).ok().as_deref() == Some(b"from the cloud")
    });
    // Then a cloud rename, which the puller carries out on-premise as a rename.
    let before = ino(&m.c("in/cloud.txt"));
    fs::rename(m.c("in/cloud.txt"), m.c("in/moved.txt")).unwrap();
    wait_until(
        Duration::from_secs(15),
        "the cloud rename on-premise",
        || m.o("in/moved.txt").exists() && !m.o("in/cloud.txt").exists(),
    );
    // Several push delays and pulls later, nothing was pushed for any of it. fanotify names
    // the writer, so nothing was even queued; inotify does not, and under load a download may
    // be heard before the puller recorded it: queued then, it pushes nothing.
    std::thread::sleep(Duration::from_secs(3));
    let log = m.log_text();
    let pushes: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("push{path=in"))
        .filter(|l| {
            watch == "fanotify"
                || l.contains("uploaded")
                || l.contains("deleted in the cloud")
                || l.contains("moved in the cloud")
        })
        .collect();
    assert!(
        pushes.is_empty(),
        "downloads were queued as changes: {pushes:#?}"
    );
    assert_eq!(ino(&m.c("in/moved.txt")), before);
    assert_eq!(tree(&m.onprem, &skip), tree(&m.cloud, &skip));
    assert!(conflict_copies(&m.onprem).is_empty());
}

#[test]
fn fanotify_downloads_are_not_requeued() {
    downloads_not_requeued("fanotify");
}

#[test]
fn inotify_downloads_are_not_requeued() {
    downloads_not_requeued("inotify");
}

/// Writes through the mount (with FUSE passthrough the kernel writes the backing file on the
/// caller's behalf, so fanotify names the caller) are pushed once, and a rename through the
/// mount is one cloud move: nothing heard twice turns into a spurious rename, delete or
/// conflict.
fn through_the_mount_once(watch: &str, extra: &[&str]) {
    let m = mount(watch, extra);
    for i in 0..20 {
        fs::write(m.m(&format!("w{i}.txt")), format!("written {i}")).unwrap();
    }
    fs::create_dir(m.m("dir")).unwrap();
    fs::write(m.m("dir/x.txt"), b"x").unwrap();
    converged(&m, Duration::from_secs(15));
    fs::rename(m.m("w0.txt"), m.m("renamed.txt")).unwrap();
    fs::rename(m.m("dir"), m.m("dir2")).unwrap();
    // An editor save through the mount.
    fs::write(m.m("w1.txt.tmp"), b"saved").unwrap();
    fs::rename(m.m("w1.txt.tmp"), m.m("w1.txt")).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    converged(&m, Duration::from_secs(15));
    for i in 2..20 {
        assert_eq!(
            m.uploads_of(&format!("w{i}.txt")),
            1,
            "w{i}.txt pushed twice"
        );
    }
    let ops = m.other_cloud_ops_of("w0.txt");
    assert_eq!(ops.len(), 1, "one cloud move of w0.txt: {ops:#?}");
    let ops = m.other_cloud_ops_of("dir");
    assert_eq!(ops.len(), 1, "one cloud move of dir: {ops:#?}");
    assert!(m.other_cloud_ops_of("w1.txt").is_empty());
    assert!(m.other_cloud_ops_of("renamed.txt").is_empty());
    assert!(m.other_cloud_ops_of("dir2").is_empty());
    assert!(conflict_copies(&m.onprem).is_empty());
    let log = m.log_text();
    assert!(!log.contains("push failed"), "{log}");
}

#[test]
fn fanotify_writes_through_the_mount_are_pushed_once() {
    through_the_mount_once("fanotify", &[]);
}

#[test]
fn fanotify_writes_through_the_mount_without_passthrough_are_pushed_once() {
    through_the_mount_once("fanotify", &["--no-passthrough"]);
}

#[test]
fn inotify_writes_through_the_mount_are_pushed_once() {
    through_the_mount_once("inotify", &[]);
}

/// One test at a time lowers a system-wide limit.
static LIMITS: Mutex<()> = Mutex::new(());

/// Sets a sysctl file and puts the old value back when dropped, even when the test fails.
struct Sysctl {
    path: &'static str,
    old: String,
}

impl Sysctl {
    fn set(path: &'static str, value: &str) -> Sysctl {
        let old = fs::read_to_string(path).unwrap();
        fs::write(path, value).unwrap();
        Sysctl { path, old }
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        fs::write(self.path, self.old.trim()).unwrap();
    }
}

/// A queue of 32 events overflows while the daemon is stopped and 300 files are made: the watch
/// falls back to a scan, says so, and the cloud still gets everything.
fn overflow(watch: &str, sysctl: &'static str) {
    let _one = LIMITS.lock().unwrap_or_else(|p| p.into_inner());
    let m = {
        // The limit is read when the daemon opens its watch: it is lowered only until then.
        let _low = Sysctl::set(sysctl, "32");
        mount(watch, &[])
    };
    fs::write(m.o("first.txt"), b"first").unwrap();
    converged(&m, Duration::from_secs(10));
    let pid = m.pid().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let made = std::panic::catch_unwind(|| {
        // In a folder already watched: inotify would not hear a new one before its watch.
        for i in 0..300 {
            fs::write(m.o(&format!("burst{i}.txt")), format!("{i}")).unwrap();
        }
    });
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
    made.unwrap();
    converged(&m, Duration::from_secs(30));
    let log = m.log_text();
    let said = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("came faster than the watch"))
        .count();
    assert_eq!(said, 1, "the overflow is said once in the log:\n{log}");
    assert!(log.contains("scan after lost events done"), "{log}");
}

#[test]
fn fanotify_queue_overflow_falls_back_to_a_scan() {
    overflow("fanotify", "/proc/sys/fs/fanotify/max_queued_events");
}

#[test]
fn inotify_queue_overflow_falls_back_to_a_scan() {
    overflow("inotify", "/proc/sys/fs/inotify/max_queued_events");
}

/// A random sequence of creates, writes, renames and deletes of files and folders made beside
/// the mount, then quiet: the cloud equals ONPREM.
fn random_changes(watch: &str, seed: u64) {
    let m = mount(watch, &[]);
    // The same sequence through the mount, for comparison when a seed fails.
    let through = std::env::var("BESIDE_THROUGH_MOUNT").is_ok();
    let o = |p: &str| if through { m.m(p) } else { m.o(p) };
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut files: Vec<String> = Vec::new();
    let mut dirs: Vec<String> = vec![String::new()];
    let mut n = 0;
    for _ in 0..300 {
        n += 1;
        let dir = dirs[rng.usize(..dirs.len())].clone();
        let join = |d: &str, name: String| {
            if d.is_empty() {
                name
            } else {
                format!("{d}/{name}")
            }
        };
        match rng.u8(..10) {
            0..=2 => {
                let p = join(&dir, format!("f{n}.txt"));
                fs::write(o(&p), format!("new {n}")).unwrap();
                files.push(p);
            }
            3 if dirs.len() < 12 => {
                let p = join(&dir, format!("d{n}"));
                fs::create_dir(o(&p)).unwrap();
                dirs.push(p);
            }
            4..=5 if !files.is_empty() => {
                let p = &files[rng.usize(..files.len())];
                fs::write(o(p), format!("edit {n} {}", "x".repeat(rng.usize(..50)))).unwrap();
            }
            6 if !files.is_empty() => {
                let i = rng.usize(..files.len());
                let to = join(&dir, format!("r{n}.txt"));
                fs::rename(o(&files[i]), o(&to)).unwrap();
                files[i] = to;
            }
            7 if !files.is_empty() => {
                let i = rng.usize(..files.len());
                fs::remove_file(o(&files[i])).unwrap();
                files.remove(i);
            }
            8 if dirs.len() > 1 => {
                // Rename a folder (never into itself).
                let i = 1 + rng.usize(..dirs.len() - 1);
                let from = dirs[i].clone();
                let parent = dirs[rng.usize(..dirs.len())].clone();
                if parent == from || parent.starts_with(&format!("{from}/")) {
                    continue;
                }
                let to = join(&parent, format!("m{n}"));
                fs::rename(o(&from), o(&to)).unwrap();
                let moved = |p: &String| {
                    if p == &from || p.starts_with(&format!("{from}/")) {
                        format!("{to}{}", &p[from.len()..])
                    } else {
                        p.clone()
                    }
                };
                dirs = dirs.iter().map(moved).collect();
                files = files.iter().map(moved).collect();
            }
            9 if !files.is_empty() => {
                // An editor save: a temporary file renamed over the document.
                let p = files[rng.usize(..files.len())].clone();
                let tmp = format!("{p}.tmp~");
                fs::write(o(&tmp), format!("saved {n}")).unwrap();
                fs::rename(o(&tmp), o(&p)).unwrap();
            }
            _ => {}
        }
        if rng.u8(..20) == 0 {
            std::thread::sleep(Duration::from_millis(rng.u64(..400)));
        }
    }
    converged(&m, Duration::from_secs(60));
    assert!(conflict_copies(&m.onprem).is_empty());
    assert!(!m.log_text().contains("push failed"));
}

#[test]
fn fanotify_random_changes_converge() {
    for seed in [1, 2] {
        random_changes("fanotify", seed);
    }
}

#[test]
fn inotify_random_changes_converge() {
    for seed in [3, 4] {
        random_changes("inotify", seed);
    }
}

/// `auto` picks fanotify as root on this filesystem, and the rescan then defaults to an hour;
/// `off` keeps the ten minutes and hears nothing beside the mount.
#[test]
fn auto_picks_fanotify_and_off_watches_nothing() {
    let m = Mount::start(&[]);
    wait_until(Duration::from_secs(10), "the watch to start", || {
        m.log_text().contains("watch and rescans")
    });
    let log = m.log_text();
    assert!(
        log.contains("watch=\"fanotify\" rescan_every_s=3600"),
        "{log}"
    );
    drop(m);
    let m = Mount::start(&["--watch", "off"]);
    wait_until(Duration::from_secs(10), "the mount to settle", || {
        m.log_text().contains("watch and rescans")
    });
    assert!(m.log_text().contains("watch=\"off\" rescan_every_s=600"));
    fs::write(m.o("unheard.txt"), b"x").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !m.c("unheard.txt").exists(),
        "a change beside the mount was pushed without a watch"
    );
}

/// ONPREM removed under the watch: the log says once that the rescans take over.
fn onprem_removed(watch: &str) {
    let m = mount(watch, &[]);
    fs::write(m.o("a.txt"), b"a").unwrap();
    converged(&m, Duration::from_secs(10));
    fs::remove_dir_all(&m.onprem).unwrap();
    let said = || {
        m.log_text()
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("removed or unmounted under the watch"))
            .count()
    };
    wait_until(Duration::from_secs(10), "the watch to notice", || {
        said() > 0
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(said(), 1, "said more than once:\n{}", m.log_text());
}

#[test]
fn fanotify_onprem_removed_under_the_watch() {
    onprem_removed("fanotify");
}

#[test]
fn inotify_onprem_removed_under_the_watch() {
    onprem_removed("inotify");
}
