//! The model test of `tests/model.rs` on the fake folder: random operations on both sides,
//! with daemon crashes in between, and after each round the two sides must converge and no
//! content anybody wrote may be lost. Besides edits, deletes and renames of files, folders are
//! moved on both sides (in the cloud, a move the puller recognises as one rename when it can).
//! Without a mount it runs hundreds of cases a minute, so it also runs over the in-memory cloud
//! with delayed, reordered and randomly failing answers.
//!
//! `PROPTEST_CASES` sets the number of cases per cloud (default 64).

use std::time::Duration;

use proptest::prelude::*;

use crate::fake::{Backend, FakeFolder, Options};

const NAMES: [&str; 4] = ["a.txt", "b.txt", "d/c.txt", "d/e.txt"];

/// The folders a folder move goes between: `d` (which [`NAMES`] write into) and two names
/// that only moves reach, one of them below another folder.
const FOLDERS: [&str; 3] = ["d", "f", "g/h"];

#[derive(Debug, Clone)]
enum Op {
    Write(usize),
    Delete(usize),
    Rename(usize, usize),
    /// Moves the folder `FOLDERS[a]` to `FOLDERS[b]` when the one exists and the other does
    /// not: a folder move never replaces anything.
    MoveDir(usize, usize),
    Nothing,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..NAMES.len()).prop_map(Op::Write),
        1 => (0..NAMES.len()).prop_map(Op::Delete),
        1 => (0..NAMES.len(), 0..NAMES.len()).prop_map(|(a, b)| Op::Rename(a, b)),
        2 => (0..FOLDERS.len(), 0..FOLDERS.len()).prop_map(|(a, b)| Op::MoveDir(a, b)),
        1 => Just(Op::Nothing),
    ]
}

/// A daemon killed after the round's changes: whether the local change had reached the engine
/// (or was lost in the channel with the daemon, and only the start-up scan finds it), and how
/// long into the push it died.
#[derive(Debug, Clone)]
struct Kill {
    heard: bool,
    after_ms: u64,
}

#[derive(Debug, Clone)]
struct Round {
    local: Op,
    cloud: Op,
    kill: Option<Kill>,
}

fn round() -> impl Strategy<Value = Round> {
    let kill = (any::<bool>(), 0..8u64).prop_map(|(heard, after_ms)| Kill { heard, after_ms });
    (op(), op(), prop::option::weighted(0.3, kill)).prop_map(|(local, cloud, kill)| Round {
        local,
        cloud,
        kill,
    })
}

/// Applies `op` on one side; returns the content written, and the names whose old content
/// may legitimately go.
fn apply(
    ff: &FakeFolder,
    op: &Op,
    cloud: bool,
    heard: bool,
    n: usize,
) -> (Option<String>, Vec<&'static str>) {
    let side = if cloud { "cloud" } else { "local" };
    match op {
        Op::Write(i) => {
            let c = format!("{side} write {n} to {}", NAMES[*i]);
            if cloud {
                ff.cloud_write(NAMES[*i], &c);
            } else {
                ff.write_as(NAMES[*i], &c, heard);
            }
            (Some(c), vec![NAMES[*i]])
        }
        Op::Delete(i) => {
            if cloud {
                ff.cloud_remove(NAMES[*i]);
            } else {
                ff.remove_as(NAMES[*i], heard);
            }
            (None, vec![NAMES[*i]])
        }
        Op::MoveDir(a, b) if a != b => {
            let (from, to) = (FOLDERS[*a], FOLDERS[*b]);
            // `g` is never a file, so every target's folder can be made.
            let (has_from, has_to) = if cloud {
                (ff.cloud_has(from), ff.cloud_has(to))
            } else {
                (ff.path(from).is_dir(), ff.path(to).exists())
            };
            if has_from && !has_to {
                if cloud {
                    ff.cloud_rename(from, to);
                } else {
                    ff.rename_as(from, to, heard);
                }
            }
            (None, vec![])
        }
        Op::Rename(a, b) if a != b => {
            let done = if cloud {
                ff.cloud_rename(NAMES[*a], NAMES[*b])
            } else {
                ff.rename_as(NAMES[*a], NAMES[*b], heard)
            };
            (None, if done { vec![NAMES[*b]] } else { vec![] })
        }
        _ => (None, vec![]),
    }
}

/// The files on-premise, by name.
fn named(ff: &FakeFolder) -> Vec<(String, Vec<u8>)> {
    ff.local_tree()
        .into_iter()
        .filter(|(p, _)| !ff.stays_local(p))
        .filter_map(|(p, c)| c.map(|c| (p, c)))
        .collect()
}

/// How a model run's cloud misbehaves.
#[derive(Debug, Clone, Copy)]
enum Weather {
    Fair,
    /// Answers delayed at random (so reordered), and a share of requests failing with a 503
    /// or losing their answer.
    Rough,
}

fn run(backend: Backend, weather: Weather, seed: u64, rounds: &[Round]) {
    let mut ff = FakeFolder::new(Options::new(backend), &[("a.txt", "initial a")]);
    ff.sync();
    ff.assert_converged(true);
    if let (Weather::Rough, Some(m)) = (weather, &ff.mem) {
        m.seed(seed);
        m.set_delay(Duration::from_millis(2));
        m.set_chaos(0.1);
    }
    for (n, r) in rounds.iter().enumerate() {
        let before = ff.all_contents();
        let before_named = named(&ff);
        let heard = r.kill.as_ref().is_none_or(|k| k.heard);
        let (cw, cgone) = apply(&ff, &r.cloud, true, true, n);
        let (lw, lgone) = apply(&ff, &r.local, false, heard, n);
        if let Some(k) = &r.kill {
            ff.crash(Duration::from_millis(k.after_ms));
        }
        ff.sync();
        if let Some(m) = &ff.mem {
            // The weather clears for a last look: what failed at random is retried once more.
            let chaos = matches!(weather, Weather::Rough);
            if chaos {
                m.set_chaos(0.0);
                ff.time_passes();
                ff.sync();
                m.set_chaos(0.1);
            }
        }
        ff.assert_converged(true);
        let after = ff.all_contents();
        for w in [cw, lw].into_iter().flatten() {
            assert!(
                after.contains(&w.clone().into_bytes()),
                "round {n} {r:?}: lost {w:?}\n{}",
                ff.describe()
            );
        }
        // Content no op of this round replaced or deleted is still there.
        let mut gone: Vec<&str> = cgone.into_iter().chain(lgone).collect();
        // A rename over a name that held the very same bytes changes nothing there: an edit
        // the other side made meanwhile at that name wins without a conflict, as an edit of
        // an unchanged file does.
        for op in [&r.local, &r.cloud] {
            if let Op::Rename(a, b) = op {
                let at = |n: &str| before_named.iter().find(|(p, _)| p == n).map(|(_, c)| c);
                if at(NAMES[*a]).is_some() && at(NAMES[*a]) == at(NAMES[*b]) {
                    gone.push(NAMES[*a]);
                }
            }
        }
        for (p, c) in before_named {
            if !gone.contains(&p.as_str()) && before.contains(&c) {
                assert!(
                    after.contains(&c),
                    "round {n} {r:?}: lost {p} = {}\n{}",
                    String::from_utf8_lossy(&c),
                    ff.describe()
                );
            }
        }
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 200,
        .. ProptestConfig::default()
    })]

    #[test]
    fn model_file_cloud(rounds in prop::collection::vec(round(), 1..5)) {
        run(Backend::Dir, Weather::Fair, 0, &rounds);
    }

    #[test]
    fn model_mem_cloud(rounds in prop::collection::vec(round(), 1..5)) {
        run(Backend::MemFolderEtags, Weather::Fair, 0, &rounds);
    }

    #[test]
    fn model_mem_cloud_rough_weather(seed in any::<u64>(), rounds in prop::collection::vec(round(), 1..5)) {
        run(Backend::Mem, Weather::Rough, seed, &rounds);
    }

    #[test]
    fn model_tree_listing_cloud_rough_weather(seed in any::<u64>(), rounds in prop::collection::vec(round(), 1..5)) {
        run(Backend::MemTrees, Weather::Rough, seed, &rounds);
    }
}
