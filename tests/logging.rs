//! Where the log goes. Under systemd (standard error connected to the journal, as
//! `JOURNAL_STREAM` says) the daemon writes to the journal's socket with structured fields;
//! otherwise, and when the journal cannot be reached, to standard error.
//!
//! The journal here is a socket of the test's own: the daemon runs in a private mount
//! namespace (`unshare -m`) with a tmpfs over `/run/systemd`, and a small listener bound at
//! `/run/systemd/journal/socket` keeps every datagram. Nothing outside the namespace changes.

mod harness;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use harness::{Mount, bin};

/// Receives journal datagrams at `/run/systemd/journal/socket` and appends each to the file
/// named by argv[1], followed by a line `--END--`.
const LISTENER: &str = r#"
import os, socket, sys
os.makedirs("/run/systemd/journal", exist_ok=True)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/run/systemd/journal/socket")
open(sys.argv[2], "w").close()
with open(sys.argv[1], "ab", buffering=0) as out:
    while True:
        data = s.recv(1 << 20)
        if data:
            out.write(data + b"\n--END--\n")
"#;

/// Runs the daemon in a private mount namespace with the listener as its journal, writes a
/// file through the mount, unmounts, and returns (journal datagrams, standard error).
fn run_under_fake_journal(log_target: Option<&str>, journal_stream: bool) -> (Vec<Entry>, String) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for d in ["on", "mnt", "cloud"] {
        fs::create_dir(root.join(d)).unwrap();
    }
    fs::write(root.join("listener.py"), LISTENER).unwrap();
    let stderr_path = root.join("stderr.log");
    let stderr = fs::File::create(&stderr_path).unwrap();
    let meta = stderr.metadata().unwrap();
    let target = log_target
        .map(|t| format!("--log-target {t}"))
        .unwrap_or_default();
    let script = format!(
        r#"set -e
mount -t tmpfs tmpfs /run/systemd
python3 {root}/listener.py {root}/journal.dump {root}/listening &
L=$!
while [ ! -e {root}/listening ]; do sleep 0.05; done
{bin} mount {root}/on {root}/mnt --cloud file://{root}/cloud --state-dir {root}/state --push-delay 100ms {target} &
D=$!
for i in $(seq 200); do grep -qs " {root}/mnt " /proc/self/mountinfo && break; sleep 0.05; done
echo draft > {root}/mnt/report.txt
for i in $(seq 200); do [ -e {root}/cloud/report.txt ] && break; sleep 0.05; done
sleep 0.3
fusermount3 -u {root}/mnt || {{ sleep 0.5; fusermount3 -u {root}/mnt; }}
wait $D
sleep 0.2
kill $L
"#,
        root = root.display(),
        bin = bin().display(),
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stderr(stderr)
        .env("RUST_LOG", "info");
    if journal_stream {
        cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
    } else {
        cmd.env_remove("JOURNAL_STREAM");
    }
    let st = cmd.status().unwrap();
    let err = fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(st.success(), "the run failed:\n{err}");
    let dump = fs::read(root.join("journal.dump")).unwrap_or_default();
    (
        split_datagrams(&dump).iter().map(|d| fields(d)).collect(),
        err,
    )
}

/// The datagrams of a dump, each followed by `\n--END--\n`.
fn split_datagrams(dump: &[u8]) -> Vec<&[u8]> {
    let marker = b"\n--END--\n";
    let mut out = Vec::new();
    let mut rest = dump;
    while let Some(i) = rest.windows(marker.len()).position(|w| w == marker) {
        out.push(&rest[..i]);
        rest = &rest[i + marker.len()..];
    }
    out
}

/// The fields of one datagram of the journal's native protocol: `KEY=value\n`, or `KEY\n`, a
/// 64-bit little-endian length, the value and `\n`.
fn fields(mut d: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while !d.is_empty() {
        let nl = d.iter().position(|&b| b == b'\n').unwrap_or(d.len());
        let line = &d[..nl];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            out.push((
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            ));
            d = &d[(nl + 1).min(d.len())..];
        } else {
            let key = String::from_utf8_lossy(line).into_owned();
            let len = u64::from_le_bytes(d[nl + 1..nl + 9].try_into().unwrap()) as usize;
            let value = &d[nl + 9..nl + 9 + len];
            out.push((key, String::from_utf8_lossy(value).into_owned()));
            d = &d[(nl + 10 + len).min(d.len())..];
        }
    }
    out
}

type Entry = Vec<(String, String)>;

/// The entry whose MESSAGE is `message`.
fn entry<'a>(notes: &'a [Entry], message: &str) -> &'a Entry {
    notes
        .iter()
        .find(|n| field(n, "MESSAGE") == Some(message))
        .unwrap_or_else(|| panic!("no journal entry {message:?} in {notes:#?}"))
}

fn field<'a>(e: &'a Entry, key: &str) -> Option<&'a str> {
    e.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[test]
fn under_systemd_the_log_goes_to_the_journal_with_fields() {
    let (notes, err) = run_under_fake_journal(None, true);
    let up = entry(&notes, "uploaded");
    for (k, v) in [
        ("CLOUDSYNC_PATH", "report.txt"),
        ("CLOUDSYNC_OP", "create"),
        ("CLOUDSYNC_BYTES", "6"),
        ("SPAN_NAME", "push"),
        ("SYSLOG_IDENTIFIER", "cloudsync"),
        ("PRIORITY", "5"),
    ] {
        assert_eq!(field(up, k), Some(v), "{k} in {up:?}");
    }
    let mounted = entry(&notes, "mounted");
    assert!(
        field(mounted, "CLOUDSYNC_MOUNTPOINT").is_some_and(|m| m.ends_with("/mnt")),
        "{mounted:?}"
    );
    entry(&notes, "stopped; queued changes resume at the next mount");
    // Nothing of it went to standard error as well.
    assert!(!err.contains("uploaded"), "{err}");
}

#[test]
fn a_stream_that_is_not_the_journal_keeps_the_log_on_stderr() {
    let (notes, err) = run_under_fake_journal(None, false);
    assert!(notes.is_empty(), "{notes:#?}");
    assert!(err.contains("uploaded"), "{err}");
    // --log-target journal asks for the journal whatever the stream.
    let (notes, _) = run_under_fake_journal(Some("journal"), false);
    entry(&notes, "uploaded");
}

#[test]
fn the_journal_asked_for_but_missing_falls_back_to_stderr() {
    if Path::new("/run/systemd/journal/socket").exists() {
        eprintln!("skipped: this host runs a journal, which the test would write to");
        return;
    }
    let mut m = Mount::start(&["--log-target", "journal"]);
    fs::write(m.m("a.txt"), b"a").unwrap();
    m.wait_status("a.txt", "synced");
    m.unmount();
    let log = m.log_text();
    assert!(
        log.contains("cannot reach the systemd journal; logging to standard error"),
        "{log}"
    );
    assert!(log.contains("uploaded"), "{log}");
}

#[test]
fn a_bad_log_target_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for d in ["on", "mnt"] {
        fs::create_dir(tmp.path().join(d)).unwrap();
    }
    let out = Command::new(bin())
        .arg("mount")
        .arg(tmp.path().join("on"))
        .arg(tmp.path().join("mnt"))
        .args(["--cloud", "file:///tmp", "--log-target", "syslog"])
        .arg("--state-dir")
        .arg(tmp.path().join("state"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("log_target must be auto, journal or stderr"),
        "{err}"
    );
}
