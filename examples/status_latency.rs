//! Measures how long a folder's status takes to compute from the journal when the folder holds
//! many files: `cargo run --release --example status_latency [FILES]` (default 100000).
//! `scripts/bench` runs it; the median is what matters on a noisy machine.

use std::time::Instant;

use cloudsync::journal::{Change, Journal, NodeKind, NodeRecord, NodeState, Op};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let j = Journal::open(&dir.path().join("journal.db")).expect("journal");
    let t = Instant::now();
    j.put_nodes(
        &(0..n)
            .map(|i| NodeRecord {
                path: format!("big/d{:03}/f{i:06}", i % 1000),
                kind: NodeKind::File,
                size: 1,
                mtime_ns: 1,
                ctime_ns: 1,
                ino: i as u64,
                hash: None,
                etag: Some(format!("\"{i}\"")),
                state: NodeState::Synced,
                error: None,
                synced_at: Some(1),
            })
            .collect::<Vec<_>>(),
    )
    .expect("records");
    // One pending change deep inside, so the folder is not trivially synced.
    j.enqueue(&[Change::Path(Op::Modify, "big/d500/f000500".into())], 0)
        .expect("queue");
    println!("{n} records written in {:.1} s", t.elapsed().as_secs_f64());
    let mut times = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let failed = j.failure_under("big", true).expect("failure");
        let queued = j.queue_for_status("big", true).expect("queue");
        times.push(t.elapsed().as_secs_f64() * 1e6);
        assert!(failed.is_none() && !queued.is_empty());
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "folder status over {n} files: median {:.0} us, p95 {:.0} us (200 reads)",
        times[times.len() / 2],
        times[times.len() * 95 / 100]
    );
}
