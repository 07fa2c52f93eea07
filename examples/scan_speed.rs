//! Measures the start-up scan over a tree the journal already knows:
//! `cargo run --release --example scan_speed [FILES]` (default 100000). It builds the tree and
//! its records, scans it unchanged, then changes 1% of the files and scans again.

use std::os::unix::fs::MetadataExt;
use std::time::Instant;

use cloudsync::ignore::Ignore;
use cloudsync::journal::{Journal, NodeKind, NodeRecord, NodeState};
use cloudsync::sync::{ctime_ns, mtime_ns, scan};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let base = std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into());
    let tmp = tempfile::tempdir_in(base).expect("temp dir");
    let root = tmp.path().join("onprem");
    let mut records = Vec::new();
    for i in 0..n {
        let dir = format!("d{:03}", i % 1000);
        if i < 1000 {
            std::fs::create_dir_all(root.join(&dir)).expect("mkdir");
        }
        let path = format!("{dir}/f{i:06}.txt");
        std::fs::write(root.join(&path), format!("file {i}")).expect("write");
        let m = std::fs::symlink_metadata(root.join(&path)).expect("stat");
        records.push(NodeRecord {
            path,
            kind: NodeKind::File,
            size: m.size(),
            mtime_ns: mtime_ns(&m),
            ctime_ns: ctime_ns(&m),
            ino: m.ino(),
            hash: None,
            etag: None,
            state: NodeState::Synced,
            error: None,
            synced_at: Some(1),
        });
    }
    for d in 0..1000.min(n) {
        let path = format!("d{d:03}");
        let m = std::fs::symlink_metadata(root.join(&path)).expect("stat");
        records.push(NodeRecord {
            path,
            kind: NodeKind::Dir,
            size: 0,
            ..records[0].clone()
        });
        let _ = m;
    }
    let j = Journal::open(&tmp.path().join("journal.db")).expect("journal");
    j.put_nodes(&records).expect("records");
    let ignore = Ignore::new(&[]).expect("ignore");
    let all = |_: &str| true;
    let door = cloudsync::onprem::Onprem::open(&root, 0o022).expect("onprem");
    let t = Instant::now();
    let r = scan::scan(&door, &j, &ignore, &all, 0).expect("scan");
    println!(
        "unchanged: {} items seen, {} queued, {:.0} ms",
        r.seen,
        r.queued,
        t.elapsed().as_secs_f64() * 1e3
    );
    for i in (0..n).step_by(100) {
        std::fs::write(
            root.join(format!("d{:03}/f{i:06}.txt", i % 1000)),
            "changed",
        )
        .expect("write");
    }
    let t = Instant::now();
    let r = scan::scan(&door, &j, &ignore, &all, 0).expect("scan");
    println!(
        "1% changed: {} items seen, {} queued, {:.0} ms",
        r.seen,
        r.queued,
        t.elapsed().as_secs_f64() * 1e3
    );
}
