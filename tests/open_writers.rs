//! Writers that never close: a file held open for writing through a real mount (a log, a
//! recording) reaches the cloud as snapshots every `open_push_interval`, each a consistent
//! prefix of the file, reads `pending` with the detail `open for writing` meanwhile, and is
//! synced in its final version once closed.

mod harness;

use std::fs;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::{Mount, uploaded_paths, xattr};

/// Appends numbered lines to `app.log` through the mount for `run`, keeping the file open,
/// while the cloud copy is read over and over: every copy seen must be a prefix of what was
/// written, and several of growing size must be seen before the close.
fn log_reaches_the_cloud_while_open(extra: &[&str]) {
    let mut flags = vec!["--open-push-interval", "2s"];
    flags.extend_from_slice(extra);
    let m = Mount::start(&flags);
    let written = Arc::new(Mutex::new(Vec::<u8>::new()));
    let done = Arc::new(AtomicBool::new(false));
    let run = Duration::from_secs(12);
    let writer = {
        let (path, written, done) = (m.m("app.log"), written.clone(), done.clone());
        std::thread::spawn(move || {
            let mut f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap();
            let t = Instant::now();
            let mut i = 0u64;
            while t.elapsed() < run {
                let line = format!("line {i:06} {}\n", "x".repeat((i % 37) as usize));
                // Recorded before it is written: a cloud copy can never hold more than this.
                written.lock().unwrap().extend_from_slice(line.as_bytes());
                f.write_all(line.as_bytes()).unwrap();
                i += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            drop(f);
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut sizes = Vec::new();
    let mut detail_seen = false;
    while !done.load(Ordering::SeqCst) {
        if let Ok(copy) = fs::read(m.c("app.log")) {
            let w = written.lock().unwrap();
            assert!(
                w.starts_with(&copy),
                "the cloud copy ({} bytes) is not a prefix of what was written ({} bytes)",
                copy.len(),
                w.len()
            );
            if sizes.last() != Some(&copy.len()) {
                sizes.push(copy.len());
            }
        }
        if !done.load(Ordering::SeqCst) && m.status("app.log").as_deref() == Some("pending") {
            detail_seen |= xattr(&m.m("app.log"), "user.cloudsync.detail").as_deref()
                == Some("open for writing");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    writer.join().unwrap();
    assert!(
        sizes.len() >= 3,
        "expected snapshots every 2s over 12s, saw cloud sizes {sizes:?}"
    );
    assert!(
        sizes.windows(2).all(|w| w[0] < w[1]),
        "snapshots went backwards: {sizes:?}"
    );
    assert!(detail_seen, "the status never said `open for writing`");
    // Closed: the final version goes, and the file reads synced.
    m.wait_status("app.log", "synced");
    assert!(fs::read(m.c("app.log")).unwrap() == *written.lock().unwrap());
    assert_eq!(xattr(&m.m("app.log"), "user.cloudsync.detail"), None);
    let log = m.log_text();
    assert!(
        log.matches("pushed a snapshot of a file open for writing")
            .count()
            >= 3,
        "{log}"
    );
    assert_eq!(uploaded_paths(&log).get("app.log"), Some(&1), "{log}");
}

#[test]
fn a_log_kept_open_reaches_the_cloud_in_consistent_snapshots() {
    log_reaches_the_cloud_while_open(&[]);
}

#[test]
fn a_log_kept_open_reaches_the_cloud_without_passthrough() {
    log_reaches_the_cloud_while_open(&["--no-passthrough"]);
}

/// `open_push_interval = 0`: nothing goes while the file is open, and all of it once closed.
#[test]
fn no_snapshots_when_the_interval_is_zero() {
    let m = Mount::start(&["--open-push-interval", "0"]);
    let mut f = fs::File::create(m.m("rec.bin")).unwrap();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(4) {
        f.write_all(&[7u8; 4096]).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !m.c("rec.bin").exists(),
            "a snapshot went with the interval 0"
        );
    }
    assert_eq!(m.status("rec.bin").as_deref(), Some("pending"));
    drop(f);
    m.wait_status("rec.bin", "synced");
    assert!(fs::read(m.c("rec.bin")).unwrap() == fs::read(m.o("rec.bin")).unwrap());
}
