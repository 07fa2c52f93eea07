//! CLI tests: bad input gets one clear line on stderr and a non-zero exit, and nothing is mounted.

mod harness;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use harness::{Mount, bin, is_mounted};

fn cloudsync(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

fn fails_with(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got success: {err}"
    );
    assert!(
        err.contains(needle),
        "stderr should mention {needle:?}: {err}"
    );
    assert!(
        err.lines().count() <= 3,
        "one clear line, not a dump: {err}"
    );
}

struct Dirs {
    tmp: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Dirs {
        let tmp = tempfile::tempdir().unwrap();
        for d in ["on", "mnt", "cloud"] {
            fs::create_dir(tmp.path().join(d)).unwrap();
        }
        Dirs { tmp }
    }
    fn p(&self, rel: &str) -> String {
        self.tmp.path().join(rel).to_string_lossy().to_string()
    }
    fn cloud(&self) -> String {
        format!("file://{}", self.p("cloud"))
    }
    fn mount(&self, extra: &[&str]) -> Output {
        let mut args = vec![
            "mount".to_string(),
            self.p("on"),
            self.p("mnt"),
            "--cloud".into(),
            self.cloud(),
            "--state-dir".into(),
            self.p("state"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cloudsync(&args)
    }
}

#[test]
fn help_and_version() {
    let out = cloudsync(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["mount", "unmount", "status", "doctor"] {
        assert!(text.contains(cmd), "{text}");
    }
    let out = cloudsync(&["--version"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("cloudsync "));
    let out = cloudsync(&["mount", "--help"]);
    for flag in [
        "--cloud",
        "--state-dir",
        "--config",
        "--push-delay",
        "--pull-interval",
        "--daemon",
        "-o",
    ] {
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(flag),
            "mount --help lacks {flag}"
        );
    }
}

#[test]
fn missing_onprem() {
    let d = Dirs::new();
    let out = cloudsync(&["mount", &d.p("nope"), &d.p("mnt"), "--cloud", &d.cloud()]);
    fails_with(&out, "on-premise folder");
    fails_with(&out, "nope");
}

#[test]
fn missing_mountpoint() {
    let d = Dirs::new();
    let out = cloudsync(&["mount", &d.p("on"), &d.p("nomnt"), "--cloud", &d.cloud()]);
    fails_with(&out, "mount point");
}

#[test]
fn mountpoint_not_empty() {
    let d = Dirs::new();
    fs::write(d.tmp.path().join("mnt/x"), b"x").unwrap();
    fails_with(&d.mount(&[]), "not empty");
}

#[test]
fn no_cloud_and_bad_cloud() {
    let d = Dirs::new();
    fails_with(&cloudsync(&["mount", &d.p("on"), &d.p("mnt")]), "--cloud");
    fails_with(
        &cloudsync(&[
            "mount",
            &d.p("on"),
            &d.p("mnt"),
            "--cloud",
            "ftp://x/",
            "--state-dir",
            &d.p("s"),
        ]),
        "unknown cloud URL",
    );
    fails_with(
        &cloudsync(&[
            "mount",
            &d.p("on"),
            &d.p("mnt"),
            "--cloud",
            "file:///does/not/exist",
            "--state-dir",
            &d.p("s"),
        ]),
        "/does/not/exist",
    );
    assert!(!is_mounted(Path::new(&d.p("mnt"))));
}

#[test]
fn bad_config() {
    let d = Dirs::new();
    fails_with(
        &d.mount(&["--config", &d.p("missing.toml")]),
        "cannot read config file",
    );
    fs::write(d.tmp.path().join("c.toml"), "push_dealy = \"2s\"\n").unwrap();
    fails_with(&d.mount(&["--config", &d.p("c.toml")]), "push_dealy");
    fs::write(d.tmp.path().join("c2.toml"), "push_delay = \"soon\"\n").unwrap();
    fails_with(&d.mount(&["--config", &d.p("c2.toml")]), "push_delay");
    fs::write(d.tmp.path().join("c3.toml"), "this is not toml").unwrap();
    fails_with(&d.mount(&["--config", &d.p("c3.toml")]), "invalid");
    fails_with(&d.mount(&["--push-delay", "fast"]), "push_delay");
    fails_with(
        &d.mount(&["-o", "allow_everything"]),
        "unknown mount option",
    );
}

#[test]
fn fusermount3_missing() {
    let d = Dirs::new();
    let out = Command::new(bin())
        .args([
            "mount",
            &d.p("on"),
            &d.p("mnt"),
            "--cloud",
            &d.cloud(),
            "--state-dir",
            &d.p("s"),
        ])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    fails_with(&out, "fusermount3");
}

#[test]
fn already_mounted_and_second_daemon_on_one_state_dir() {
    let m = Mount::start(&[]);
    // The same mount point again.
    let state2 = m.tmp.path().join("state2");
    let out = cloudsync(&[
        "mount",
        m.onprem.to_str().unwrap(),
        m.mnt.to_str().unwrap(),
        "--cloud",
        &m.cloud_url,
        "--state-dir",
        state2.to_str().unwrap(),
    ]);
    fails_with(&out, "already mounted");
    // Another mount point, but the same state dir.
    let mnt2 = m.tmp.path().join("mnt2");
    fs::create_dir(&mnt2).unwrap();
    let out = cloudsync(&[
        "mount",
        m.onprem.to_str().unwrap(),
        mnt2.to_str().unwrap(),
        "--cloud",
        &m.cloud_url,
        "--state-dir",
        m.state.to_str().unwrap(),
    ]);
    fails_with(&out, "another cloudsync daemon");
    assert!(!is_mounted(&mnt2));
}

#[test]
fn state_dir_of_another_folder_is_refused() {
    let mut m = Mount::start(&[]);
    m.unmount();
    let other = m.tmp.path().join("other");
    fs::create_dir(&other).unwrap();
    let out = cloudsync(&[
        "mount",
        other.to_str().unwrap(),
        m.mnt.to_str().unwrap(),
        "--cloud",
        &m.cloud_url,
        "--state-dir",
        m.state.to_str().unwrap(),
    ]);
    fails_with(&out, "belongs to the on-premise folder");
}

#[test]
fn daemon_mode_returns_once_mounted() {
    let d = Dirs::new();
    let out = d.mount(&["--daemon"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mnt = d.p("mnt");
    assert!(is_mounted(Path::new(&mnt)), "mounted when --daemon returns");
    fs::write(d.tmp.path().join("mnt/x"), b"x").unwrap();
    let out = cloudsync(&["unmount", &mnt]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!is_mounted(Path::new(&mnt)));
    // --daemon reports a failure with the reason and a non-zero exit.
    fs::write(d.tmp.path().join("mnt/y"), b"y").unwrap();
    fails_with(&d.mount(&["--daemon"]), "not empty");
}

#[test]
fn unmount_and_status_outside_a_mount() {
    let d = Dirs::new();
    fails_with(&cloudsync(&["unmount", &d.p("mnt")]), "not mounted");
    fs::write(d.tmp.path().join("on/f"), b"x").unwrap();
    fails_with(
        &cloudsync(&["status", &d.p("on/f")]),
        "not inside a cloudsync mount",
    );
}

#[test]
fn mount_helper_for_fstab() {
    let d = Dirs::new();
    let helper = d.tmp.path().join("mount.cloudsync");
    std::os::unix::fs::symlink(bin(), &helper).unwrap();
    // As mount(8) calls it for `ONPREM MNT cloudsync cloud=...,_netdev 0 0` in fstab.
    let opts = format!(
        "rw,_netdev,cloud={},state_dir={},push_delay=1s",
        d.cloud(),
        d.p("state")
    );
    // mount(8) runs its helpers without PATH; the helper must still find fusermount3.
    let out = Command::new(&helper)
        .args([&d.p("on"), &d.p("mnt"), "-o", &opts])
        .env_remove("PATH")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(is_mounted(Path::new(&d.p("mnt"))));
    assert!(cloudsync(&["unmount", &d.p("mnt")]).status.success());
    // A password in the options would be world-readable in /proc/mounts and fstab.
    let out = Command::new(&helper)
        .args([&d.p("on"), &d.p("mnt"), "-o", "cloud=https://h/,password=x"])
        .output()
        .unwrap();
    fails_with(&out, "password_file");
}
