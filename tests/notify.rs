//! The service manager's side: a real notify socket of the test's own (`NOTIFY_SOCKET`), and a
//! real daemon. `READY=1` comes once the mount answers, `STATUS=` follows the queue and the
//! offline state, `STOPPING=1` and `EXTEND_TIMEOUT_USEC=` come at a stop that waits for an
//! upload, and `WATCHDOG=1` comes while the unit asks for it (`WATCHDOG_USEC`).

mod harness;
mod support;

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::{Mount, is_mounted, wait_until, xattr};
use support::proxy::{Fault, FaultProxy};
use support::webdav::{DavServer, Profile};

/// One datagram, and what the mount looked like when it arrived.
#[derive(Debug, Clone)]
struct Note {
    text: String,
    /// The mount was in mountinfo, and its control attribute could be read within a second.
    answering: bool,
}

/// A notify socket bound in a temporary folder, with a thread that records every datagram.
struct Socket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    notes: Arc<Mutex<Vec<Note>>>,
}

/// True when the control attribute of `mnt` can be read within a second.
fn answers(mnt: &Path) -> bool {
    let (tx, rx) = std::sync::mpsc::channel();
    let mnt = mnt.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(xattr(&mnt, "user.cloudsync.control").is_some());
    });
    rx.recv_timeout(Duration::from_secs(1)).unwrap_or(false)
}

impl Socket {
    fn bind(mnt: &Path) -> Socket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        let notes = Arc::new(Mutex::new(Vec::new()));
        let n = notes.clone();
        let mnt = mnt.to_path_buf();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(len) = sock.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..len]).into_owned();
                let answering = text.contains("READY=1") && is_mounted(&mnt) && answers(&mnt);
                n.lock().unwrap().push(Note { text, answering });
            }
        });
        Socket {
            _dir: dir,
            path,
            notes,
        }
    }

    fn notes(&self) -> Vec<Note> {
        self.notes.lock().unwrap().clone()
    }

    /// The lines of every datagram so far, in order.
    fn lines(&self) -> Vec<String> {
        self.notes()
            .iter()
            .flat_map(|n| n.text.lines().map(str::to_string).collect::<Vec<_>>())
            .collect()
    }

    fn wait_for(&self, what: &str, f: impl Fn(&str) -> bool) {
        wait_until(Duration::from_secs(20), what, || {
            self.lines().iter().any(|l| f(l))
        });
    }
}

/// A mount with its own `file://` cloud, the notify socket in its environment, and `env`.
fn mount(extra: &[&str], env: &[(&str, &str)]) -> (Mount, Socket, tempfile::TempDir) {
    let cloud = tempfile::tempdir().unwrap();
    let url = format!("file://{}", cloud.path().display());
    let mut m = Mount::prepare_with_cloud(&url, extra, &[]);
    let sock = Socket::bind(&m.mnt);
    m.env
        .push(("NOTIFY_SOCKET".into(), sock.path.display().to_string()));
    m.env
        .extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    m.spawn();
    (m, sock, cloud)
}

#[test]
fn ready_comes_once_the_mount_answers_then_status_and_stopping() {
    let (mut m, sock, cloud) = mount(&["--push-delay", "4s"], &[]);
    sock.wait_for("READY=1", |l| l == "READY=1");
    let notes = sock.notes();
    let ready = notes.iter().find(|n| n.text.contains("READY=1")).unwrap();
    assert!(
        ready.answering,
        "READY=1 came before the mount answered: {notes:?}"
    );
    // READY is the first word the daemon says, and comes with a status line.
    assert!(notes[0].text.contains("READY=1"), "{notes:?}");
    assert!(
        ready.text.contains("STATUS=mounted ") && ready.text.contains("0 queued"),
        "{notes:?}"
    );
    // No watchdog was asked for, so none is pinged.
    assert!(!sock.lines().iter().any(|l| l == "WATCHDOG=1"));

    fs::write(m.m("report.txt"), b"draft").unwrap();
    sock.wait_for("a status line with the queued change", |l| {
        l.starts_with("STATUS=") && l.contains("1 queued") && l.contains("online")
    });
    m.wait_status("report.txt", "synced");
    assert_eq!(fs::read(cloud.path().join("report.txt")).unwrap(), b"draft");
    sock.wait_for("a status line with the queue empty again", |l| {
        l.starts_with("STATUS=") && l.contains("0 queued") && !l.contains("READY")
    });
    let before = sock.lines().len();
    assert!(
        !sock.lines().iter().any(|l| l == "STOPPING=1"),
        "{:?}",
        sock.lines()
    );

    m.unmount();
    let after: Vec<String> = sock.lines().into_iter().skip(before).collect();
    assert!(after.iter().any(|l| l == "STOPPING=1"), "{after:?}");
}

#[test]
fn watchdog_is_pinged_when_the_unit_asks_for_it() {
    let (mut m, sock, _cloud) = mount(&[], &[("WATCHDOG_USEC", "400000")]);
    sock.wait_for("READY=1", |l| l == "READY=1");
    let t = Instant::now();
    wait_until(Duration::from_secs(10), "three watchdog pings", || {
        sock.lines().iter().filter(|l| *l == "WATCHDOG=1").count() >= 3
    });
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "pings come every 200 ms"
    );
    assert!(m.log_text().contains("watchdog is on"), "{}", m.log_text());
    // The probe behind the pings makes the mount busy for an instant now and then, which
    // `cloudsync unmount` rides out.
    let out = std::process::Command::new(harness::bin())
        .arg("unmount")
        .arg(&m.mnt)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    m.wait_exit();
    let n = sock.lines().iter().filter(|l| *l == "WATCHDOG=1").count();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        sock.lines().iter().filter(|l| *l == "WATCHDOG=1").count(),
        n,
        "no pings once the daemon stopped"
    );
}

#[test]
fn watchdog_meant_for_another_process_is_left_alone() {
    let (mut m, sock, _cloud) = mount(&[], &[("WATCHDOG_USEC", "200000"), ("WATCHDOG_PID", "1")]);
    sock.wait_for("READY=1", |l| l == "READY=1");
    std::thread::sleep(Duration::from_millis(600));
    assert!(!sock.lines().iter().any(|l| l == "WATCHDOG=1"));
    m.unmount();
}

#[test]
fn status_says_offline_while_the_cloud_is_unreachable() {
    let port = DavServer::unused_port();
    let url = format!("http://127.0.0.1:{port}/dav/");
    let mut m = Mount::prepare_with_cloud(&url, &["--push-delay", "100ms"], &[]);
    let sock = Socket::bind(&m.mnt);
    m.env
        .push(("NOTIFY_SOCKET".into(), sock.path.display().to_string()));
    m.spawn();
    sock.wait_for("READY=1", |l| l == "READY=1");
    fs::write(m.m("a.txt"), b"a").unwrap();
    sock.wait_for("an offline status line", |l| {
        l.starts_with("STATUS=") && l.contains("offline since") && l.contains("1 queued")
    });
    m.unmount();
}

#[test]
fn a_stop_waiting_for_an_upload_extends_its_timeout() {
    let dav = DavServer::start(Profile::Sabre);
    let proxy = FaultProxy::start(dav.addr);
    let mut m = Mount::prepare_with_cloud(&proxy.url("/dav/"), &["--push-delay", "100ms"], &[]);
    let sock = Socket::bind(&m.mnt);
    m.env
        .push(("NOTIFY_SOCKET".into(), sock.path.display().to_string()));
    m.spawn();
    sock.wait_for("READY=1", |l| l == "READY=1");
    // An upload of 1 MiB at 20 KiB/s is still under way when the mount goes.
    proxy.set(Fault::Only(
        "PUT".into(),
        Box::new(Fault::Throttle(20 << 10)),
    ));
    fs::write(m.m("big.bin"), vec![7u8; 1 << 20]).unwrap();
    sock.wait_for("the upload in flight", |l| {
        l.starts_with("STATUS=") && l.contains("1 in flight")
    });
    let t = Instant::now();
    m.unmount();
    let lines = sock.lines();
    let stopping = lines.iter().position(|l| l == "STOPPING=1");
    let extend = lines
        .iter()
        .position(|l| l.starts_with("EXTEND_TIMEOUT_USEC="));
    assert!(
        matches!((stopping, extend), (Some(s), Some(e)) if s < e),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("STATUS=stopping: waiting for 1 upload")),
        "{lines:?}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "the stop waits a bounded time"
    );
}
