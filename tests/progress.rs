//! Progress on real mounts: `cloudsync status --watch` (plain lines when piped, a redrawn view
//! on a terminal, a clean end on Ctrl-C), the bar of `cloudsync sync --wait` on a terminal and
//! nothing extra when piped, and the daemon's log of the initial sync.

mod harness;

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use harness::{Mount, bin, wait_until};

fn cloudsync(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

/// Runs `cloudsync ARGS` on a pseudo-terminal (util-linux `script`); returns the exit status
/// and everything written to the terminal.
fn on_a_terminal(args: &[&str]) -> (Option<i32>, String) {
    let mut cmd = format!("'{}'", bin().display());
    for a in args {
        cmd.push_str(&format!(" '{a}'"));
    }
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux)");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A mount whose cloud cannot be reached, over an on-premise folder of `files` files: the
/// initial sync starts and stays, offline.
fn offline_mount(files: usize) -> Mount {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/dav/");
    let mut m = Mount::prepare_with_cloud(
        &url,
        &["--push-delay", "100ms"],
        &[("CLOUDSYNC_PROGRESS_INTERVAL", "100ms")],
    );
    for i in 0..files {
        fs::write(m.o(&format!("f{i}.txt")), vec![b'x'; 1000]).unwrap();
    }
    m.spawn();
    m
}

#[test]
fn watch_piped_prints_plain_lines_with_the_fields() {
    let m = offline_mount(20);
    let mnt = m.mnt.to_str().unwrap();
    wait_until(Duration::from_secs(20), "an offline status", || {
        let out = cloudsync(&["status", "--json", mnt]);
        String::from_utf8_lossy(&out.stdout).contains("\"offline_since\": \"")
    });
    let out = cloudsync(&["status", "--watch", "--count", "2", mnt]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for l in &lines {
        for want in [
            format!("{mnt}: 20 queued, ").as_str(),
            " in flight, 0 failed; up 0 B/s, down 0 B/s, 0.0 files/s; offline since ",
            "; initial sync: 0 of 20 files, 0 B of 19.5 KiB, ETA unknown",
        ] {
            assert!(l.contains(want), "{want:?} in {l:?}");
        }
        assert!(!l.contains('\x1b'), "no escape codes when piped: {l:?}");
    }
    // The JSON summary carries the same numbers.
    let out = cloudsync(&["status", "--json", mnt]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v[0]["summary"];
    assert_eq!(s["initial_sync"]["files_total"], 20, "{s}");
    assert_eq!(s["initial_sync"]["bytes_total"], 20_000, "{s}");
    assert_eq!(s["transferred"]["files_uploaded"], 0, "{s}");
    // The daemon logs the initial sync while it runs, offline or not.
    wait_until(Duration::from_secs(10), "a progress line", || {
        m.log_text().lines().any(|l| {
            l.contains("initial sync progress")
                && l.contains("files=0 files_total=20")
                && l.contains("eta=unknown")
        })
    });
}

#[test]
fn watch_ends_cleanly_when_interrupted() {
    let m = offline_mount(1);
    let mut child = Command::new(bin())
        .args(["status", "--watch"])
        .arg(&m.mnt)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains(" queued, "), "{first}");
    // SAFETY: signals a child of this test, by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "Ctrl-C ends the watch with 0: {out:?}"
    );
    assert!(out.stderr.is_empty(), "{out:?}");
}

#[test]
fn watch_on_a_terminal_redraws_and_gives_the_cursor_back() {
    let m = offline_mount(3);
    let (code, text) =
        on_a_terminal(&["status", "--watch", "--count", "2", m.mnt.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{text:?}");
    assert!(
        text.starts_with("\x1b[?25l"),
        "the cursor is hidden: {text:?}"
    );
    assert!(
        text.contains("\x1b[5F"),
        "the second summary redraws the first: {text:?}"
    );
    assert!(text.contains("  initial   ["), "{text:?}");
    assert!(
        text.trim_end().ends_with("\x1b[?25h"),
        "and shown again: {text:?}"
    );
}

#[test]
fn watch_flags_are_checked() {
    let out = cloudsync(&["status", "--count", "2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--watch"));
    let out = cloudsync(&["status", "--watch", "--json"]);
    assert!(!out.status.success());
    let out = cloudsync(&["status", "--watch", "--count", "0"]);
    assert!(!out.status.success());
}

#[test]
fn sync_wait_piped_prints_nothing_and_shows_a_bar_on_a_terminal() {
    let m = Mount::start(&["--transfers", "1"]);
    let mnt = m.mnt.to_str().unwrap();
    for i in 0..5 {
        fs::write(m.m(&format!("a{i}.txt")), b"a").unwrap();
    }
    // Piped: the output scripts read stays as it was, empty.
    let out = cloudsync(&["sync", "--wait", "--timeout", "30s", mnt]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    // On a terminal, with pushing paused so that the wait lasts: a bar of the files queued.
    assert!(cloudsync(&["pause", "--push", mnt]).status.success());
    for i in 0..5 {
        fs::write(m.m(&format!("b{i}.txt")), b"b").unwrap();
    }
    wait_until(Duration::from_secs(10), "the changes queued", || {
        let out = cloudsync(&["status", "--json", mnt]);
        String::from_utf8_lossy(&out.stdout).contains("\"queued\": 5")
    });
    let (code, text) = on_a_terminal(&["sync", "--wait", "--timeout", "1s", mnt]);
    assert_eq!(code, Some(124), "{text:?}");
    assert!(
        text.contains("] 0/5 files, 0 B sent, ETA unknown"),
        "{text:?}"
    );
    assert!(text.contains("not synced after 1s"), "{text:?}");
    assert!(cloudsync(&["resume", mnt]).status.success());
    let (code, text) = on_a_terminal(&["sync", "--wait", "--timeout", "30s", mnt]);
    assert_eq!(code, Some(0), "{text:?}");
}

#[test]
fn the_daemon_logs_the_initial_sync_then_stays_quiet() {
    let mut m = Mount::start(&["--transfers", "1"]);
    m.unmount();
    for i in 0..300 {
        fs::write(m.o(&format!("f{i:03}.txt")), vec![b'y'; 4096]).unwrap();
    }
    m.env
        .push(("CLOUDSYNC_PROGRESS_INTERVAL".into(), "100ms".into()));
    // Only what this start logs counts.
    let skip = m.log_text().len();
    m.spawn();
    let log_now = || m.log_text()[skip..].to_string();
    wait_until(
        Duration::from_secs(60),
        "the end of the initial sync",
        || log_now().contains("initial sync done"),
    );
    let log = log_now();
    let progress = |log: &str| {
        log.lines()
            .filter(|l| l.contains("initial sync progress"))
            .count()
    };
    assert!(
        log.lines().any(|l| l.contains("initial sync progress")
            && l.contains("files_total=300 ")
            && l.contains("bytes_total=1228800 ")
            && l.contains(" rate=")
            && l.contains(" eta=")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("initial sync done files=300 bytes=1228800 ")),
        "{log}"
    );
    // Idle from here on: no more progress lines.
    let before = progress(&log);
    std::thread::sleep(Duration::from_millis(600));
    fs::write(m.m("later.txt"), b"later").unwrap();
    m.wait_all_synced();
    let log = log_now();
    assert_eq!(progress(&log), before, "{log}");
    assert_eq!(log.matches("initial sync done").count(), 1, "{log}");
}

#[test]
fn downloads_of_the_first_pull_and_of_a_large_pull_later_are_logged() {
    let mut m = Mount::start(&["--transfers", "1"]);
    m.unmount();
    for i in 0..300 {
        fs::write(m.c(&format!("c{i:03}.txt")), vec![b'z'; 1024]).unwrap();
    }
    m.env
        .push(("CLOUDSYNC_PROGRESS_INTERVAL".into(), "100ms".into()));
    let skip = m.log_text().len();
    m.spawn();
    let log_now = || m.log_text()[skip..].to_string();
    // The first pull's downloads are part of the initial sync.
    wait_until(
        Duration::from_secs(60),
        "the end of the initial sync",
        || log_now().contains("initial sync done"),
    );
    let log = log_now();
    assert!(
        log.contains("initial sync done files=300 bytes=307200 "),
        "{log}"
    );
    assert!(!log.contains("downloading cloud changes"), "{log}");
    // A large pull later logs its own progress.
    for i in 0..300 {
        fs::write(m.c(&format!("d{i:03}.txt")), vec![b'z'; 1024]).unwrap();
    }
    let out = cloudsync(&["sync", "--now", m.mnt.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let log = log_now();
    assert!(
        log.lines().any(|l| l.contains("downloading cloud changes")
            && l.contains("files_total=300 bytes=")
            && l.contains("bytes_total=307200 ")),
        "{log}"
    );
    assert_eq!(log.matches("initial sync done").count(), 1, "{log}");
}
