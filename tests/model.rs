//! Model tests of sync, against a real mount and a `file://` cloud.
//!
//! - Random operations on both sides, with kill -9 restarts of the daemon in between. After
//!   each round the two sides must converge, and no content anybody wrote in the round may be
//!   lost.
//! - Random namespace changes through the mount: folders made, files written, files and folders
//!   moved (into new folders, over each other, in chains), exchanged with `RENAME_EXCHANGE` and
//!   deleted, with pauses between them so that pushes run in the middle, and remounts. At each
//!   quiet point (`cloudsync sync --wait`, then a pull) the cloud holds exactly the on-premise
//!   tree, folders included, and the pull brought nothing back.
//!
//! `PROPTEST_CASES` sets the number of cases of each (default 4; CI keeps it small for wall
//! time).

mod harness;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
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

    #[test]
    fn random_namespace_changes_leave_the_cloud_equal_to_onprem(steps in prop::collection::vec(ns_step(), 1..30)) {
        run_namespace(steps);
    }
}

/// Paths of the namespace model: every path of one to three names from `a` and `b`, few
/// enough that most steps meet an item that is there.
fn ns_paths() -> Vec<String> {
    let seg = ["a", "b"];
    let mut all: Vec<String> = seg.iter().map(|s| s.to_string()).collect();
    let mut level = all.clone();
    for _ in 1..3 {
        level = level
            .iter()
            .flat_map(|p| seg.iter().map(move |s| format!("{p}/{s}")))
            .collect();
        all.extend(level.iter().cloned());
    }
    all
}

/// One step of the namespace model, through the mount. Steps that the filesystem refuses
/// (no parent, a folder moved into itself, a move over a folder that is not empty) change
/// nothing and are fine.
#[derive(Debug, Clone)]
enum NsStep {
    Mkdir(String),
    Write(String),
    Move(String, String),
    Exchange(String, String),
    Remove(String),
    Pause(u64),
    Quiet,
    Remount,
}

fn ns_step() -> impl Strategy<Value = NsStep> {
    let p = || prop::sample::select(ns_paths());
    prop_oneof![
        3 => p().prop_map(NsStep::Mkdir),
        3 => p().prop_map(NsStep::Write),
        6 => (p(), p()).prop_map(|(a, b)| NsStep::Move(a, b)),
        2 => (p(), p()).prop_map(|(a, b)| NsStep::Exchange(a, b)),
        2 => p().prop_map(NsStep::Remove),
        2 => (0u64..400).prop_map(NsStep::Pause),
        1 => Just(NsStep::Quiet),
        1 => Just(NsStep::Remount),
    ]
}

/// `renameat2(a, b, RENAME_EXCHANGE)`; false when refused.
fn exchange(a: &Path, b: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let (a, b) = (c(a), c(b));
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        ) == 0
    }
}

fn cloudsync(m: &Mount, args: &[&str]) {
    let out = Command::new(harness::bin())
        .args(args)
        .arg(&m.mnt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cloudsync {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A quiet point: everything pushed, then one pull. The cloud must hold what ONPREM held
/// before, files and folders, and the pull must not have changed ONPREM.
fn ns_quiet(m: &Mount, steps: &[NsStep], at: usize) {
    let show = |t: Vec<(String, Vec<u8>)>| -> Vec<String> {
        t.into_iter()
            .map(|(p, c)| format!("{p}={}", String::from_utf8_lossy(&c)))
            .collect()
    };
    let want = tree(&m.onprem, &skip);
    cloudsync(m, &["sync", "--wait", "--timeout", "30s"]);
    assert_eq!(
        show(tree(&m.cloud, &skip)),
        show(want.clone()),
        "after step {at} of {steps:?}: the cloud differs from on-premise"
    );
    cloudsync(m, &["sync", "--now"]);
    assert_eq!(
        show(tree(&m.onprem, &skip)),
        show(want),
        "after step {at} of {steps:?}: the pull changed on-premise"
    );
    assert_eq!(m.status("").as_deref(), Some("synced"));
}

fn run_namespace(steps: Vec<NsStep>) {
    let mut m = Mount::start(&["--pull-interval", "1h"]);
    for d in ["a", "a/b", "b"] {
        fs::create_dir(m.m(d)).unwrap();
    }
    for f in ["a/b/a", "a/a", "b/a"] {
        fs::write(m.m(f), format!("initial {f}")).unwrap();
    }
    ns_quiet(&m, &steps, 0);
    for (n, s) in steps.iter().enumerate() {
        match s {
            NsStep::Mkdir(p) => {
                let _ = fs::create_dir(m.m(p));
            }
            NsStep::Write(p) => {
                let _ = fs::write(m.m(p), format!("write {n} to {p}"));
            }
            NsStep::Move(a, b) => {
                let _ = fs::rename(m.m(a), m.m(b));
            }
            NsStep::Exchange(a, b) => {
                exchange(&m.m(a), &m.m(b));
            }
            NsStep::Remove(p) => {
                let p = m.m(p);
                if p.is_dir() {
                    let _ = fs::remove_dir_all(&p);
                } else {
                    let _ = fs::remove_file(&p);
                }
            }
            NsStep::Pause(ms) => std::thread::sleep(Duration::from_millis(*ms)),
            NsStep::Quiet => ns_quiet(&m, &steps, n + 1),
            NsStep::Remount => {
                ns_quiet(&m, &steps, n + 1);
                m.unmount();
                m.spawn();
                // The pull at start is let finish first: a pull racing a rename through the
                // mount is another matter (see the pull's own tests).
                ns_quiet(&m, &steps, n + 1);
            }
        }
    }
    ns_quiet(&m, &steps, steps.len());
}
