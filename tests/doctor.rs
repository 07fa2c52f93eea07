//! `cloudsync doctor` against real servers set up wrong, one fault per test: each fault is
//! found by its own check, with a fix, and makes the exit status 1; a sound setup is all ok
//! with exit status 0.

mod harness;
mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cloudsync::journal::{Change, Journal, Op, QueueState};
use cloudsync::status::FailureCode;
use harness::{Mount, bin};
use support::webdav::{DavServer, Profile};

/// A setup to check: folders, a password file of mode 0600, and a config file naming them.
struct Setup {
    tmp: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn new(cloud: &str, user: Option<(&str, &str)>) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for d in ["on", "mnt"] {
            fs::create_dir(root.join(d)).unwrap();
        }
        let mut text = format!(
            "onprem = {:?}\nmountpoint = {:?}\ncloud = {cloud:?}\nstate_dir = {:?}\n",
            root.join("on"),
            root.join("mnt"),
            root.join("state")
        );
        if let Some((u, p)) = user {
            let pw = root.join("password");
            fs::write(&pw, format!("{p}\n")).unwrap();
            fs::set_permissions(&pw, fs::Permissions::from_mode(0o600)).unwrap();
            text.push_str(&format!("user = {u:?}\npassword_file = {pw:?}\n"));
        }
        let config = root.join("cloudsync.toml");
        fs::write(&config, text).unwrap();
        Setup { tmp, config }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }
}

/// The checks of one run, by name: (verdict, detail, fix), and the exit status.
struct Found {
    checks: BTreeMap<String, (String, String, Option<String>)>,
    code: i32,
    raw: String,
}

impl Found {
    fn verdict(&self, check: &str) -> &str {
        &self
            .checks
            .get(check)
            .unwrap_or_else(|| panic!("no check {check}: {}", self.raw))
            .0
    }
    fn detail(&self, check: &str) -> &str {
        &self.checks[check].1
    }
    /// `check` has `verdict`, its detail mentions `needle`, and it says what to do.
    fn says(&self, check: &str, verdict: &str, needle: &str) {
        assert_eq!(self.verdict(check), verdict, "{check}: {}", self.raw);
        assert!(
            self.detail(check).contains(needle),
            "{check} should mention {needle:?}: {}",
            self.raw
        );
        assert!(self.checks[check].2.is_some(), "{check} has no fix");
        assert_eq!(self.code, 1, "a {verdict} makes the exit status 1");
    }
}

fn doctor(args: &[&std::ffi::OsStr]) -> Found {
    let out = Command::new(bin())
        .arg("doctor")
        .arg("--json")
        .args(args)
        .env_remove("CLOUDSYNC_PASSWORD")
        .output()
        .unwrap();
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    let v: serde_json::Value = serde_json::from_str(&raw)
        .unwrap_or_else(|e| panic!("{e}: {raw}\n{}", String::from_utf8_lossy(&out.stderr)));
    let checks = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["check"].as_str().unwrap().to_string(),
                (
                    c["verdict"].as_str().unwrap().to_string(),
                    c["detail"].as_str().unwrap().to_string(),
                    c["fix"].as_str().map(str::to_string),
                ),
            )
        })
        .collect();
    assert_eq!(
        v["ok"].as_bool().unwrap(),
        out.status.code() == Some(0),
        "{raw}"
    );
    Found {
        checks,
        code: out.status.code().unwrap_or(-1),
        raw,
    }
}

fn doctor_config(s: &Setup) -> Found {
    doctor(&[std::ffi::OsStr::new("--config"), s.config.as_os_str()])
}

fn auth_server() -> DavServer {
    DavServer::start(Profile::SabreAuth {
        user: "svc".into(),
        password: "s3cret".into(),
    })
}

#[test]
fn a_sound_setup_is_all_ok() {
    let dav = auth_server();
    let s = Setup::new(&dav.url, Some(("svc", "s3cret")));
    let f = doctor_config(&s);
    assert_eq!(f.code, 0, "{}", f.raw);
    for c in [
        "fuse.device",
        "fuse.fusermount3",
        "config",
        "server.reachable",
        "server.tls",
        "server.clock",
        "server.credentials",
        "server.folder_etags",
        "server.write",
        "server.conditions",
        "credentials.file",
        "space.onprem",
        "space.state_dir",
        "guard.lock",
    ] {
        assert_eq!(f.verdict(c), "ok", "{c}: {}", f.raw);
    }
    assert!(f.detail("server.conditions").contains("honoured"));
    assert!(f.detail("server.write").contains("with the new ETag"));
    assert!(f.detail("server.folder_etags").contains("no folder ETags"));
    // The human form says the same, with a summary line.
    let out = Command::new(bin())
        .args(["doctor", "--config"])
        .arg(&s.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("ok    server.credentials"), "{text}");
    assert!(text.contains(" 0 warn, 0 fail"), "{text}");
    // The test file went again.
    assert!(
        !fs::read_dir(&dav.data).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("doctor")),
        "the write probe was left behind"
    );
}

#[test]
fn a_wrong_password_fails_the_credentials() {
    let dav = auth_server();
    let s = Setup::new(&dav.url, Some(("svc", "wrong")));
    let f = doctor_config(&s);
    f.says(
        "server.credentials",
        "fail",
        "refused the user \"svc\" (401)",
    );
    assert_eq!(f.verdict("server.reachable"), "ok");
    assert!(!f.checks.contains_key("server.write"), "{}", f.raw);
}

#[test]
fn no_user_on_a_server_that_wants_one_fails_the_credentials() {
    let dav = auth_server();
    let s = Setup::new(&dav.url, None);
    doctor_config(&s).says("server.credentials", "fail", "asks for a login");
}

#[test]
fn a_stopped_server_is_unreachable() {
    let mut dav = DavServer::start(Profile::Sabre);
    let url = dav.url.clone();
    dav.stop();
    let s = Setup::new(&url, None);
    let f = doctor_config(&s);
    f.says("server.reachable", "fail", "cannot reach");
    assert!(!f.checks.contains_key("server.credentials"), "{}", f.raw);
    // The checks that need no server still ran.
    assert_eq!(f.verdict("space.onprem"), "ok");
}

#[test]
fn rclone_ignores_conditions() {
    let dav = DavServer::start(Profile::Rclone);
    let s = Setup::new(&dav.url, None);
    let f = doctor_config(&s);
    f.says("server.conditions", "warn", "ignores If-Match");
    assert_eq!(f.verdict("server.credentials"), "ok");
}

#[test]
fn apache_answers_a_put_without_an_etag() {
    let dav = DavServer::start(Profile::Apache);
    let s = Setup::new(&dav.url, None);
    let f = doctor_config(&s);
    assert_eq!(f.verdict("server.write"), "ok", "{}", f.raw);
    assert!(
        f.detail("server.write").contains("without an ETag"),
        "{}",
        f.raw
    );
    assert!(
        f.detail("server.folder_etags").contains("own entries only"),
        "{}",
        f.raw
    );
}

#[test]
fn nextcloud_style_folder_etags_are_seen() {
    let dav = DavServer::start(Profile::SabreFolderEtags);
    let s = Setup::new(&dav.url, None);
    let f = doctor_config(&s);
    assert!(
        f.detail("server.folder_etags")
            .contains("cover their subtree"),
        "{}",
        f.raw
    );
}

#[test]
fn a_password_file_others_can_read_is_a_warning() {
    let dav = auth_server();
    let s = Setup::new(&dav.url, Some(("svc", "s3cret")));
    fs::set_permissions(s.p("password"), fs::Permissions::from_mode(0o644)).unwrap();
    let f = doctor_config(&s);
    f.says("credentials.file", "warn", "mode 0644");
    assert!(
        f.checks["credentials.file"]
            .2
            .as_deref()
            .unwrap()
            .contains("chmod 600")
    );
    assert_eq!(f.verdict("server.credentials"), "ok");
}

#[test]
fn a_missing_cloud_folder_fails() {
    let s = Setup::new("file:///nonexistent/cloudsync-doctor", None);
    doctor_config(&s).says("server.reachable", "fail", "No such file");
}

#[test]
fn a_bad_config_file_fails_but_the_host_is_still_checked() {
    let s = Setup::new("file:///tmp", None);
    fs::write(&s.config, "push_dealy = \"2s\"\n").unwrap();
    let f = doctor_config(&s);
    f.says("config", "fail", "push_dealy");
    assert_eq!(f.verdict("fuse.device"), "ok");
}

/// A mount of `s`'s folders, so that its state dir has a journal owned by them.
fn mount_once(s: &Setup, cloud: &Path) -> Mount {
    let mut m = Mount::prepare_with_cloud(
        &format!("file://{}", cloud.display()),
        &["--config", s.config.to_str().unwrap()],
        &[],
    );
    m.onprem = s.p("on");
    m.mnt = s.p("mnt");
    m.state = s.p("state");
    m.spawn();
    m
}

#[test]
fn a_running_mount_is_checked_through_its_daemon_and_holds_its_lock() {
    let cloud = tempfile::tempdir().unwrap();
    let s = Setup::new(&format!("file://{}", cloud.path().display()), None);
    let mut m = mount_once(&s, cloud.path());
    let f = doctor(&[m.mnt.as_os_str()]);
    assert_eq!(f.code, 0, "{}", f.raw);
    assert!(
        f.detail("mount").contains(&format!("pid {}", m.pid())),
        "{}",
        f.raw
    );
    assert!(
        f.detail("guard.lock")
            .contains("held by the daemon of this mount")
    );
    assert_eq!(f.verdict("guard.clone"), "ok");
    assert_eq!(f.verdict("journal.integrity"), "ok");
    assert!(f.detail("journal.schema").starts_with("schema version"));
    // The same through the config file.
    let f = doctor_config(&s);
    assert_eq!(f.verdict("guard.lock"), "ok", "{}", f.raw);

    // A second setup on the same state dir, with another mount point: its lock is taken.
    let other = Setup::new(&format!("file://{}", cloud.path().display()), None);
    let text = fs::read_to_string(&other.config).unwrap().replace(
        &format!("{:?}", other.p("state")),
        &format!("{:?}", s.p("state")),
    );
    fs::write(&other.config, text).unwrap();
    doctor_config(&other).says("guard.lock", "fail", &format!("pid {}", m.pid()));
    m.unmount();
    // Not a mount any more.
    let f = doctor(&[m.mnt.as_os_str()]);
    f.says("mount", "fail", "not inside a cloudsync mount");
}

#[test]
fn a_copied_state_dir_fails_the_clone_guard() {
    let cloud = tempfile::tempdir().unwrap();
    let s = Setup::new(&format!("file://{}", cloud.path().display()), None);
    let mut m = mount_once(&s, cloud.path());
    m.unmount();
    // Another folder's setup, with a copy of the first one's state dir.
    let other = Setup::new(&format!("file://{}", cloud.path().display()), None);
    copy_dir(&s.p("state"), &other.p("state"));
    let f = doctor_config(&other);
    f.says("guard.clone", "fail", "copied or mixed up");
    assert_eq!(f.verdict("guard.lock"), "ok");
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A journal for `s`, owned by its folder on this host, with what `fill` puts in it.
fn journal_for(s: &Setup, fill: impl FnOnce(&Journal)) {
    fs::create_dir_all(s.p("state")).unwrap();
    let j = Journal::open(&s.p("state/journal.db")).unwrap();
    let on = fs::canonicalize(s.p("on")).unwrap();
    j.set_owner(&on.to_string_lossy(), &cloudsync::mount::host_id())
        .unwrap();
    fill(&j);
}

#[test]
fn failed_items_are_listed_with_their_codes() {
    let s = Setup::new("file:///tmp", None);
    journal_for(&s, |j| {
        j.enqueue(
            &[
                Change::Path(Op::Create, "big.iso".into()),
                Change::Path(Op::Create, "ok.txt".into()),
            ],
            0,
        )
        .unwrap();
        let e = j.queue().unwrap();
        let big = e.iter().find(|e| e.path == "big.iso").unwrap();
        assert!(
            j.fail(
                big.id,
                big.generation,
                QueueState::Failed,
                FailureCode::ContentLimit,
                "the server refuses content this large (413)",
            )
            .unwrap()
        );
    });
    let f = doctor_config(&s);
    f.says("journal.failed", "warn", "big.iso CONTENT_LIMIT");
    assert_eq!(f.detail("journal.queue"), "2 queued");
    assert_eq!(f.verdict("guard.clone"), "ok", "{}", f.raw);
}

#[test]
fn a_damaged_journal_fails_its_integrity_check() {
    let s = Setup::new("file:///tmp", None);
    journal_for(&s, |j| {
        let many: Vec<Change> = (0..2000)
            .map(|i| Change::Path(Op::Create, format!("dir/file-{i:05}.txt")))
            .collect();
        j.enqueue(&many, 0).unwrap();
    });
    // Scribble over the middle of the file, away from its header.
    let p = s.p("state/journal.db");
    let mut bytes = fs::read(&p).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 8192] {
        *b = 0x5a;
    }
    fs::write(&p, bytes).unwrap();
    doctor_config(&s).says("journal.integrity", "fail", "");
}

#[test]
fn a_journal_from_a_newer_version_fails() {
    let s = Setup::new("file:///tmp", None);
    journal_for(&s, |_| {});
    let p = s.p("state/journal.db");
    let st = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA user_version = 99'); c.commit()",
        ])
        .arg(&p)
        .status()
        .unwrap();
    assert!(st.success());
    doctor_config(&s).says("journal.schema", "fail", "newer than this cloudsync");
}

#[test]
fn an_untrusted_certificate_fails_tls_and_its_ca_file_fixes_it() {
    let dav = DavServer::start(Profile::ApacheTls);
    let s = Setup::new(&dav.url, None);
    let f = doctor_config(&s);
    f.says("server.tls", "fail", "TLS handshake");
    assert!(!f.checks.contains_key("server.credentials"), "{}", f.raw);
    let ca = dav.ca_file.clone().unwrap();
    let text = fs::read_to_string(&s.config).unwrap() + &format!("ca_file = {ca:?}\n");
    fs::write(&s.config, text).unwrap();
    let f = doctor_config(&s);
    assert_eq!(f.verdict("server.tls"), "ok", "{}", f.raw);
    assert!(f.detail("server.tls").contains("is valid"), "{}", f.raw);
    assert_eq!(f.verdict("server.write"), "ok", "{}", f.raw);
}

/// A small tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_nearly_full_state_disk_fails_the_space_check() {
    let s = Setup::new("file:///tmp", None);
    let state = s.p("state");
    fs::create_dir_all(&state).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs"])
        .arg(&state)
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs");
    let _tmpfs = Tmpfs(state.clone());
    let f = doctor_config(&s);
    f.says("space.state_dir", "fail", "free");
    assert_eq!(f.verdict("space.onprem"), "ok", "{}", f.raw);
}

#[test]
fn passthrough_without_cap_sys_admin_is_a_warning_that_says_why() {
    let s = Setup::new("file:///tmp", None);
    let out = Command::new("setpriv")
        .args(["--bounding-set=-sys_admin"])
        .arg(bin())
        .args(["doctor", "--json", "--config"])
        .arg(&s.config)
        .output()
        .unwrap();
    let raw = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{raw}");
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let c = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "fuse.passthrough")
        .unwrap();
    assert_eq!(c["verdict"], "warn", "{raw}");
    assert!(
        c["detail"].as_str().unwrap().contains("CAP_SYS_ADMIN"),
        "{raw}"
    );
    // The transport is named, with what the kernel offers besides.
    let t = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "fuse.transport")
        .unwrap();
    assert_eq!(t["verdict"], "ok", "{raw}");
    let detail = t["detail"].as_str().unwrap();
    assert!(detail.starts_with("requests go over /dev/fuse"), "{raw}");
    assert!(detail.contains("io_uring"), "{raw}");
    // Turned off in the configuration, it is not a fault.
    let text = fs::read_to_string(&s.config).unwrap() + "passthrough = false\n";
    fs::write(&s.config, text).unwrap();
    let f = doctor_config(&s);
    assert!(
        f.detail("fuse.passthrough").contains("turned off"),
        "{}",
        f.raw
    );
}

#[test]
fn a_running_webdav_mount_is_checked_with_its_own_password_file() {
    let dav = auth_server();
    let s = Setup::new(&dav.url, Some(("svc", "s3cret")));
    let mut m = Mount::prepare_with_cloud(&dav.url, &["--config", s.config.to_str().unwrap()], &[]);
    m.onprem = s.p("on");
    m.mnt = s.p("mnt");
    m.state = s.p("state");
    m.spawn();
    fs::write(m.m("a.txt"), b"a").unwrap();
    m.wait_status("a.txt", "synced");
    let f = doctor(&[m.mnt.as_os_str()]);
    assert_eq!(f.code, 0, "{}", f.raw);
    assert!(
        f.detail("server.credentials").contains("\"svc\""),
        "{}",
        f.raw
    );
    assert!(
        f.detail("credentials.file").contains("password"),
        "{}",
        f.raw
    );
    // A wrong password in the mount's file (as after a change on the server) is found.
    fs::write(s.p("password"), "old\n").unwrap();
    doctor(&[m.mnt.as_os_str()]).says("server.credentials", "fail", "401");
    m.unmount();
}
