//! A model test of sync: random operations on both sides, with kill -9 restarts of the daemon in
//! between, against a real mount and a `file://` cloud. After each round the two sides must
//! converge, and no content anybody wrote in the round may be lost.
//!
//! `PROPTEST_CASES` sets the number of cases (default 4; CI keeps it small for wall time).

mod harness;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use harness::{Mount, tree, xattr};
use proptest::prelude::*;

const NAMES: [&str; 4] = ["a.txt", "b.txt", "d/c.txt", "d/e.txt"];

#[derive(Debug, Clone)]
enum Op {
    Write(usize),
    Delete(usize),
    Rename(usize, usize),
    Nothing,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..NAMES.len()).prop_map(Op::Write),
        1 => (0..NAMES.len()).prop_map(Op::Delete),
        1 => (0..NAMES.len(), 0..NAMES.len()).prop_map(|(a, b)| Op::Rename(a, b)),
        1 => Just(Op::Nothing),
    ]
}

#[derive(Debug, Clone)]
struct Round {
    local: Op,
    cloud: Op,
    kill: bool,
}

fn round() -> impl Strategy<Value = Round> {
    (op(), op(), prop::bool::weighted(0.3)).prop_map(|(local, cloud, kill)| Round {
        local,
        cloud,
        kill,
    })
}

fn skip(name: &str) -> bool {
    cloudsync::ignore::Ignore::new(&[])
        .unwrap()
        .name_excluded(name)
}

/// Applies `op` under `root`; returns the content written, and the names whose old content
/// may legitimately go.
fn apply(op: &Op, root: &Path, side: &str, n: usize) -> (Option<String>, Vec<&'static str>) {
    match op {
        Op::Write(i) => {
            let p = root.join(NAMES[*i]);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            let c = format!("{side} write {n} to {}", NAMES[*i]);
            fs::write(&p, &c).unwrap();
            (Some(c), vec![NAMES[*i]])
        }
        Op::Delete(i) => {
            let _ = fs::remove_file(root.join(NAMES[*i]));
            (None, vec![NAMES[*i]])
        }
        Op::Rename(a, b) if a != b => {
            let to = root.join(NAMES[*b]);
            fs::create_dir_all(to.parent().unwrap()).unwrap();
            if fs::rename(root.join(NAMES[*a]), &to).is_ok() {
                (None, vec![NAMES[*b]])
            } else {
                (None, vec![])
            }
        }
        _ => (None, vec![]),
    }
}

fn contents(m: &Mount) -> Vec<Vec<u8>> {
    let all = |r: &Path| {
        tree(r, &|_| false)
            .into_iter()
            .map(|(_, c)| c)
            .collect::<Vec<_>>()
    };
    let mut v = all(&m.onprem);
    v.extend(all(&m.cloud));
    v
}

fn converged(m: &Mount) -> bool {
    let local: Vec<_> = tree(&m.onprem, &skip)
        .into_iter()
        .filter(|(p, c)| {
            c == b"<dir>"
                || !xattr(&m.m(p), "user.cloudsync.error")
                    .is_some_and(|e| e.starts_with("DELETED_ON_CLOUD"))
        })
        .collect();
    let cloud = tree(&m.cloud, &skip);
    // Folders may linger empty on one side; compare files.
    let files = |t: Vec<(String, Vec<u8>)>| -> BTreeMap<String, Vec<u8>> {
        t.into_iter().filter(|(_, c)| c != b"<dir>").collect()
    };
    let root = xattr(&m.mnt, "user.cloudsync.status");
    files(local) == files(cloud) && matches!(root.as_deref(), Some("synced") | Some("failed"))
}

fn settle(m: &Mount) {
    let t = Instant::now();
    while !converged(m) {
        if t.elapsed() > Duration::from_secs(40) {
            panic!(
                "did not converge:\non-premise {:?}\ncloud {:?}\n{}",
                tree(&m.onprem, &skip)
                    .into_iter()
                    .map(|(p, c)| (p, String::from_utf8_lossy(&c).into_owned()))
                    .collect::<Vec<_>>(),
                tree(&m.cloud, &skip)
                    .into_iter()
                    .map(|(p, c)| (p, String::from_utf8_lossy(&c).into_owned()))
                    .collect::<Vec<_>>(),
                m.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(150));
    }
}

fn run(rounds: Vec<Round>) {
    let mut m = Mount::start(&["--pull-interval", "1s"]);
    fs::write(m.m("a.txt"), "initial a").unwrap();
    settle(&m);
    for (n, r) in rounds.iter().enumerate() {
        let before = contents(&m);
        let before_named: Vec<(String, Vec<u8>)> = tree(&m.onprem, &skip);
        let (cw, cgone) = apply(&r.cloud, &m.cloud, "cloud", n);
        let (lw, lgone) = apply(&r.local, &m.mnt, "local", n);
        if r.kill {
            m.kill9();
            m.spawn();
        }
        settle(&m);
        let after = contents(&m);
        for w in [cw, lw].into_iter().flatten() {
            assert!(
                after.contains(&w.clone().into_bytes()),
                "round {n} {r:?}: lost {w:?}"
            );
        }
        // Content no op of this round replaced or deleted is still there.
        let gone: Vec<&str> = cgone.into_iter().chain(lgone).collect();
        for (p, c) in before_named {
            if c != b"<dir>" && !gone.contains(&p.as_str()) && before.contains(&c) {
                assert!(
                    after.contains(&c),
                    "round {n} {r:?}: lost {p} = {}",
                    String::from_utf8_lossy(&c)
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(4),
        max_shrink_iters: 20,
        .. ProptestConfig::default()
    })]

    #[test]
    fn random_changes_on_both_sides_converge_without_loss(rounds in prop::collection::vec(round(), 1..5)) {
        run(rounds);
    }
}
