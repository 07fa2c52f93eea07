//! Several sites, one cloud folder: three mounts, each with its own on-premise folder and state
//! directory, sync the folder `w` with one cloud folder, on SabreDAV and on SeaweedFS. Random
//! edits (writes, deletes, renames of a few names) at all three sites and in the cloud, in
//! rounds, with a site killed (kill -9) and started again now and then; then quiet. After
//! quiet every site's folder equals the cloud folder apart from conflict copies, and no version
//! was lost.
//!
//! The edits are seeded: the seed is printed, and `CLOUDSYNC_SITES_SEED=N` replays it;
//! `CLOUDSYNC_SITES_ROUNDS=N` runs more rounds than the default.
//!
//! "No version was lost", precisely: every version written anywhere (each content is unique)
//! survives as a file or a conflict copy at some site, unless an actor replaced or deleted it
//! having seen it (it read that content at that name just before it overwrote, deleted or
//! renamed something over it). That contains the rule "every version written last somewhere
//! survives": a site's last write to a name, and the cloud's, was never replaced by that
//! actor, and one replaced by another actor who had seen it is a deliberate edit of it, not a
//! lost update.
//!
//! For "having seen it" to hold, an actor's read and its change are made one step: a site
//! either pauses pulling while it edits (so no download replaces a file between the read and
//! the write), or keeps pulling and holds each file it changes open for writing meanwhile
//! (the daemon never replaces, deletes or renames a file open for writing); the WebDAV
//! cloud's edits are renames on the server's disk (`RENAME_EXCHANGE` hands back exactly the
//! content replaced), and the S3 cloud's edits carry `If-Match` on the ETag of the content
//! read.

mod harness;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use harness::{Mount, not_content, tree};
use support::s3::{Raw, S3Server, Store};
use support::webdav::{DavServer, Profile};

/// The names edited.
const NAMES: &[&str] = &["a.txt", "b.txt", "c.txt", "d.txt"];

/// The synced folder at each site, and in the cloud.
const DIR: &str = "w";

/// Rounds of edits, and edits per actor and round (at most).
const ROUNDS: usize = 10;
const OPS: usize = 3;

/// Each site's conflict rule: two let the cloud win, one lets its own edit win.
const CONFLICT: [&str; 3] = ["cloud-wins", "cloud-wins", "onprem-wins"];

/// Each site's push delay, so that the sites' uploads race in different orders.
const PUSH_DELAY: [&str; 3] = ["100ms", "300ms", "1s"];

/// The cloud folder, as another user of the cloud edits it.
enum Cloud {
    Dav(DavServer),
    S3(Raw),
}

/// What every actor did, for the checks and the failure message.
struct Book {
    seed: u64,
    next: u64,
    /// Every version written, with who wrote it where.
    written: Vec<(String, Vec<u8>)>,
    /// Versions an actor replaced or deleted having seen them.
    replaced: BTreeSet<Vec<u8>>,
    log: Vec<String>,
}

impl Book {
    fn version(&mut self, actor: &str, round: usize, name: &str) -> Vec<u8> {
        self.next += 1;
        let v = format!("{actor} round {round} #{} at {name}\n", self.next).into_bytes();
        self.written.push((format!("{actor}: {name}"), v.clone()));
        v
    }

    fn seen(&mut self, old: Option<Vec<u8>>) {
        if let Some(old) = old {
            self.replaced.insert(old);
        }
    }

    fn note(&mut self, line: String) {
        self.log.push(line);
    }

    fn dump(&self) -> String {
        format!(
            "seed {} (CLOUDSYNC_SITES_SEED={} replays it)\n{}",
            self.seed,
            self.seed,
            self.log.join("\n")
        )
    }
}

fn show(v: &Option<Vec<u8>>) -> String {
    match v {
        Some(v) => format!("{:?}", String::from_utf8_lossy(v).trim_end()),
        None => "nothing".into(),
    }
}

/// `renameat2(2)` with `flags`.
fn rename2(from: &Path, to: &Path, flags: libc::c_uint) -> std::io::Result<()> {
    let (f, t) = (
        CString::new(from.as_os_str().as_bytes()).unwrap(),
        CString::new(to.as_os_str().as_bytes()).unwrap(),
    );
    // SAFETY: both are valid NUL-terminated paths that live across the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            flags,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl Cloud {
    fn rel(name: &str) -> String {
        format!("{DIR}/{name}")
    }

    /// Puts the file staged at `staged` (outside the data directory) in place at `name`: the
    /// content it replaced, if any.
    fn dav_place(s: &DavServer, staged: &Path, name: &str) -> Option<Vec<u8>> {
        let target = s.disk(&Cloud::rel(name));
        loop {
            match rename2(staged, &target, libc::RENAME_NOREPLACE) {
                Ok(()) => return None,
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => panic!("rename onto {}: {e}", target.display()),
            }
            match rename2(staged, &target, libc::RENAME_EXCHANGE) {
                Ok(()) => {
                    let old = fs::read(staged).unwrap();
                    fs::remove_file(staged).unwrap();
                    return Some(old);
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => panic!("exchange with {}: {e}", target.display()),
            }
        }
    }

    /// Takes `name` away: its content, if there was a file.
    fn dav_take(
        s: &DavServer,
        name: &str,
        book: &mut Book,
    ) -> Option<(std::path::PathBuf, Vec<u8>)> {
        book.next += 1;
        let aside = s.disk(&format!("../aside-{}", book.next));
        match fs::rename(s.disk(&Cloud::rel(name)), &aside) {
            Ok(()) => {
                let data = fs::read(&aside).unwrap();
                Some((aside, data))
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
            Err(e) => panic!("take {name}: {e}"),
        }
    }

    fn write(&self, name: &str, round: usize, book: &mut Book) {
        let v = book.version("cloud", round, name);
        let old = match self {
            Cloud::Dav(s) => {
                let staged = format!("../staged-{}", book.next);
                s.write_on_disk(&staged, &v);
                Cloud::dav_place(s, &s.disk(&staged), name)
            }
            Cloud::S3(raw) => {
                let key = s3_key(name);
                match raw.get_tagged(&key) {
                    Some((old, etag)) => match raw.put_with(&key, &v, ("If-Match", &etag)) {
                        200 => Some(old),
                        412 => {
                            book.note(format!("  cloud: write {name}: 412, not written"));
                            book.written.pop();
                            return;
                        }
                        st => panic!("PUT {key}: {st}"),
                    },
                    None => match raw.put_with(&key, &v, ("If-None-Match", "*")) {
                        200 => None,
                        412 => {
                            book.note(format!("  cloud: write {name}: 412, not written"));
                            book.written.pop();
                            return;
                        }
                        st => panic!("PUT {key}: {st}"),
                    },
                }
            }
        };
        book.note(format!(
            "  cloud: write {name} {} over {}",
            show(&Some(v)),
            show(&old)
        ));
        book.seen(old);
    }

    fn delete(&self, name: &str, book: &mut Book) {
        let old = match self {
            Cloud::Dav(s) => Cloud::dav_take(s, name, book).map(|(aside, data)| {
                fs::remove_file(aside).unwrap();
                data
            }),
            Cloud::S3(raw) => {
                let key = s3_key(name);
                match raw.get_tagged(&key) {
                    Some((old, etag)) => match raw.delete_with(&key, Some(("If-Match", &etag))) {
                        204 | 200 => Some(old),
                        412 => None,
                        st => panic!("DELETE {key}: {st}"),
                    },
                    None => None,
                }
            }
        };
        book.note(format!("  cloud: delete {name}: {}", show(&old)));
        book.seen(old);
    }

    /// A rename as another client does it: the content taken from `from`, put at `to`.
    fn rename(&self, from: &str, to: &str, book: &mut Book) {
        let (moved, old) = match self {
            Cloud::Dav(s) => match Cloud::dav_take(s, from, book) {
                Some((aside, data)) => (Some(data), Cloud::dav_place(s, &aside, to)),
                None => (None, None),
            },
            Cloud::S3(raw) => {
                let (fk, tk) = (s3_key(from), s3_key(to));
                match raw.get_tagged(&fk) {
                    None => (None, None),
                    Some((data, etag)) => {
                        let old = match raw.get_tagged(&tk) {
                            Some((old, t)) => match raw.put_with(&tk, &data, ("If-Match", &t)) {
                                200 => Some(Some(old)),
                                _ => None,
                            },
                            None => match raw.put_with(&tk, &data, ("If-None-Match", "*")) {
                                200 => Some(None),
                                _ => None,
                            },
                        };
                        match old {
                            None => (None, None),
                            Some(old) => {
                                // The source goes only while it is the version copied.
                                let st = raw.delete_with(&fk, Some(("If-Match", &etag)));
                                assert!(matches!(st, 200 | 204 | 412), "DELETE {fk}: {st}");
                                (Some(data), old)
                            }
                        }
                    }
                }
            }
        };
        book.note(format!(
            "  cloud: rename {from} ({}) to {to} over {}",
            show(&moved),
            show(&old)
        ));
        book.seen(old);
    }

    /// The cloud folder as `harness::tree` lists a folder.
    fn tree(&self, skip: &dyn Fn(&str) -> bool) -> Vec<(String, Vec<u8>)> {
        match self {
            Cloud::Dav(s) => tree(&s.disk(DIR), &|n| n == ".sabredav" || skip(n)),
            Cloud::S3(raw) => raw.tree(&format!("site/{DIR}"), skip),
        }
    }
}

fn s3_key(name: &str) -> String {
    format!("site/{DIR}/{name}")
}

fn cli(m: &Mount, args: &[&str]) -> std::process::Output {
    Command::new(harness::bin())
        .args(args)
        .arg(&m.mnt)
        .output()
        .unwrap()
}

/// One site's edits: pulls paused meanwhile, so each read and the change after it are one step.
fn edit_site(i: usize, m: &Mount, round: usize, rng: &mut fastrand::Rng, book: &mut Book) {
    let mark = m.log_text().len();
    let out = cli(m, &["pause", "--pull"]);
    assert!(out.status.success(), "pause: {out:?}");
    // A pull already running finishes first: the puller says it is paused only between pulls.
    harness::wait_until(Duration::from_secs(60), "the puller to pause", || {
        m.log_text()[mark..].contains("pulling is paused")
    });
    let actor = format!("site{i}");
    let p = |n: &str| m.m(&format!("{DIR}/{n}"));
    for _ in 0..rng.usize(1..=OPS) {
        let name = NAMES[rng.usize(..NAMES.len())];
        match rng.u8(..10) {
            0..5 => {
                let old = fs::read(p(name)).ok();
                let v = book.version(&actor, round, name);
                fs::write(p(name), &v).unwrap_or_else(|e| panic!("{actor}: write {name}: {e}"));
                book.note(format!(
                    "  {actor}: write {name} {} over {}",
                    show(&Some(v)),
                    show(&old)
                ));
                book.seen(old);
            }
            5 => {
                // An editor's save: LibreOffice's temporary renamed over the file, or vim's
                // backup by rename, the new file, and the backup dropped.
                let old = fs::read(p(name)).ok();
                let v = book.version(&actor, round, name);
                if rng.bool() || old.is_none() {
                    let tmp = p(&format!("lu{}.tmp", book.next));
                    fs::write(&tmp, &v).unwrap();
                    fs::rename(&tmp, p(name)).unwrap();
                } else {
                    let backup = p(&format!("{name}~"));
                    fs::rename(p(name), &backup).unwrap();
                    fs::write(p(name), &v).unwrap();
                    fs::remove_file(&backup).unwrap();
                }
                book.note(format!(
                    "  {actor}: editor save {name} {} over {}",
                    show(&Some(v)),
                    show(&old)
                ));
                book.seen(old);
            }
            6 => {
                let old = fs::read(p(name)).ok();
                if old.is_some() {
                    fs::remove_file(p(name)).unwrap_or_else(|e| panic!("{actor}: rm {name}: {e}"));
                }
                book.note(format!("  {actor}: delete {name}: {}", show(&old)));
                book.seen(old);
            }
            _ => {
                let to = NAMES[rng.usize(..NAMES.len())];
                let moved = fs::read(p(name)).ok();
                if to == name || moved.is_none() {
                    continue;
                }
                let old = fs::read(p(to)).ok();
                fs::rename(p(name), p(to))
                    .unwrap_or_else(|e| panic!("{actor}: mv {name} {to}: {e}"));
                book.note(format!(
                    "  {actor}: rename {name} ({}) to {to} over {}",
                    show(&moved),
                    show(&old)
                ));
                book.seen(old);
            }
        }
    }
    let out = cli(m, &["resume", "--pull"]);
    assert!(out.status.success(), "resume: {out:?}");
}

/// Opens `p` for writing and reads it: the handle and the content, or `None` when there is no
/// file. While the handle is open, the daemon neither replaces, deletes nor renames the file
/// (a download, a cloud delete or a conflict waits for the next pull), so what was read is
/// what the change after it replaces.
fn hold(p: &Path) -> Option<(fs::File, Vec<u8>)> {
    use std::io::Read;
    let mut f = fs::OpenOptions::new().read(true).write(true).open(p).ok()?;
    let mut v = Vec::new();
    f.read_to_end(&mut v).unwrap();
    Some((f, v))
}

/// Puts `from` (a file of the mount) at `to` without ever replacing what was not read: the
/// content replaced, if any.
fn place(from: &Path, to: &Path) -> Option<Vec<u8>> {
    loop {
        if let Some((held, old)) = hold(to) {
            fs::rename(from, to).unwrap_or_else(|e| panic!("mv onto {}: {e}", to.display()));
            drop(held);
            return Some(old);
        }
        match rename2(from, to, libc::RENAME_NOREPLACE) {
            Ok(()) => return None,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => panic!("mv onto {}: {e}", to.display()),
        }
    }
}

/// One site's edits while it keeps pulling: each read and the change after it are made one
/// step by holding the file open for writing (see [`hold`]), and new names are taken only
/// where nothing is (`O_EXCL`, `RENAME_NOREPLACE`).
fn edit_site_pulling(i: usize, m: &Mount, round: usize, rng: &mut fastrand::Rng, book: &mut Book) {
    use std::io::{Seek, Write};
    let actor = format!("site{i}");
    let p = |n: &str| m.m(&format!("{DIR}/{n}"));
    for _ in 0..rng.usize(1..=OPS) {
        let name = NAMES[rng.usize(..NAMES.len())];
        match rng.u8(..10) {
            0..5 => {
                let v = book.version(&actor, round, name);
                let old = loop {
                    if let Some((mut f, old)) = hold(&p(name)) {
                        f.set_len(0).unwrap();
                        f.rewind().unwrap();
                        f.write_all(&v).unwrap();
                        break Some(old);
                    }
                    match fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(p(name))
                    {
                        Ok(mut f) => {
                            f.write_all(&v).unwrap();
                            break None;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                        Err(e) => panic!("{actor}: create {name}: {e}"),
                    }
                };
                book.note(format!(
                    "  {actor}: write {name} {} over {} (pulling)",
                    show(&Some(v)),
                    show(&old)
                ));
                book.seen(old);
            }
            5 => {
                // LibreOffice's save: a temporary renamed over the file.
                let v = book.version(&actor, round, name);
                let tmp = p(&format!("lu{}.tmp", book.next));
                fs::write(&tmp, &v).unwrap();
                let old = place(&tmp, &p(name));
                book.note(format!(
                    "  {actor}: editor save {name} {} over {} (pulling)",
                    show(&Some(v)),
                    show(&old)
                ));
                book.seen(old);
            }
            6 => {
                let old = hold(&p(name)).map(|(held, old)| {
                    fs::remove_file(p(name)).unwrap_or_else(|e| panic!("{actor}: rm {name}: {e}"));
                    drop(held);
                    old
                });
                book.note(format!(
                    "  {actor}: delete {name}: {} (pulling)",
                    show(&old)
                ));
                book.seen(old);
            }
            _ => {
                let to = NAMES[rng.usize(..NAMES.len())];
                if to == name {
                    continue;
                }
                let Some((held, moved)) = hold(&p(name)) else {
                    continue;
                };
                let old = place(&p(name), &p(to));
                drop(held);
                book.note(format!(
                    "  {actor}: rename {name} ({}) to {to} over {} (pulling)",
                    show(&Some(moved)),
                    show(&old)
                ));
                book.seen(old);
            }
        }
    }
}

fn edit_cloud(cloud: &Cloud, round: usize, rng: &mut fastrand::Rng, book: &mut Book) {
    for _ in 0..rng.usize(1..=OPS) {
        let name = NAMES[rng.usize(..NAMES.len())];
        match rng.u8(..10) {
            0..5 => cloud.write(name, round, book),
            5..7 => cloud.delete(name, book),
            _ => {
                let to = NAMES[rng.usize(..NAMES.len())];
                if to != name {
                    cloud.rename(name, to, book);
                }
            }
        }
    }
}

/// Everything at every site (conflict copies too) and in the cloud: for the no-loss check, and
/// to tell when nothing changes any more.
fn snapshot(sites: &[Mount], cloud: &Cloud) -> Vec<Vec<(String, Vec<u8>)>> {
    let everything = |n: &str| n.starts_with(".cloudsync-dl-");
    let mut all: Vec<_> = sites.iter().map(|m| tree(&m.o(DIR), &everything)).collect();
    all.push(cloud.tree(&everything));
    all
}

/// Site `i`: the folder `DIR` in a set of its own, with the site's conflict rule and push
/// delay, deletes followed both ways.
fn site(url: &str, extra: &[String], i: usize) -> Mount {
    let conflict = CONFLICT[i];
    let mut m = Mount::prepare_with_cloud(
        url,
        &["--pull-interval", "1s", "--push-delay", PUSH_DELAY[i]],
        &[],
    );
    m.extra.extend(extra.iter().cloned());
    fs::create_dir(m.o(DIR)).unwrap();
    let conf = m.tmp.path().join("cloudsync.toml");
    fs::write(
        &conf,
        format!(
            "[[sync_set]]\npath = \"{DIR}\"\nonprem_delete = true\nconflict = \"{conflict}\"\n"
        ),
    )
    .unwrap();
    m.extra.push("--config".into());
    m.extra.push(conf.to_string_lossy().into_owned());
    m.spawn();
    m
}

fn seed() -> u64 {
    std::env::var("CLOUDSYNC_SITES_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..))
}

/// The rounds, the quiet, and the checks.
fn sites_converge(cloud: Cloud, mut sites: Vec<Mount>) {
    let seed = seed();
    eprintln!("seed {seed} (CLOUDSYNC_SITES_SEED={seed} replays it)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut book = Book {
        seed,
        next: 0,
        written: Vec::new(),
        replaced: BTreeSet::new(),
        log: Vec::new(),
    };
    let fail = |book: &Book, what: String| -> ! {
        panic!("{what}\n--- what was done ---\n{}", book.dump());
    };
    let t = Instant::now();
    let rounds = std::env::var("CLOUDSYNC_SITES_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(ROUNDS);
    for round in 0..rounds {
        book.note(format!("round {round}"));
        let mut actors: Vec<usize> = (0..=sites.len()).collect();
        rng.shuffle(&mut actors);
        for a in actors {
            if a == sites.len() {
                edit_cloud(&cloud, round, &mut rng, &mut book);
            } else {
                if rng.bool() {
                    edit_site(a, &sites[a], round, &mut rng, &mut book);
                } else {
                    edit_site_pulling(a, &sites[a], round, &mut rng, &mut book);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(rng.u64(0..1500)));
        // Now and then a site crashes (kill -9) in the middle of its work, and starts again.
        if rng.u8(..4) == 0 {
            let i = rng.usize(..sites.len());
            book.note(format!("  site{i}: kill -9, restart"));
            sites[i].kill9();
            sites[i].spawn();
        }
    }
    eprintln!("edits done after {:?}", t.elapsed());

    // Quiet: each site in turn waits for its pushes and pulls at once, until a whole pass
    // changes nothing and every site holds the cloud's folder.
    let content = |n: &str| not_content(n);
    let mut last = Vec::new();
    let mut passes = 0;
    loop {
        passes += 1;
        for (i, m) in sites.iter().enumerate() {
            let root = DIR.to_string();
            let settled = |m: &Mount| {
                !matches!(
                    m.status(&root).as_deref(),
                    Some("pending" | "uploading" | "downloading" | "offline")
                )
            };
            let t = Instant::now();
            while !settled(m) && t.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let out = cli(m, &["sync", "--now"]);
            assert!(out.status.success(), "site{i}: sync --now: {out:?}");
        }
        let now = snapshot(&sites, &cloud);
        let cloud_tree = cloud.tree(&content);
        let equal = sites
            .iter()
            .all(|m| tree(&m.o(DIR), &content) == cloud_tree);
        let settled = sites
            .iter()
            .all(|m| m.status(DIR).as_deref() == Some("synced"));
        if now == last && equal && settled {
            break;
        }
        if passes == 12 {
            let mut what = String::from("no quiet after 12 passes:\n");
            what.push_str(&format!("cloud: {:?}\n", names(&cloud_tree)));
            for (i, m) in sites.iter().enumerate() {
                what.push_str(&format!(
                    "site{i} ({:?}): {:?}\n",
                    m.status(DIR),
                    names(&tree(&m.o(DIR), &content))
                ));
            }
            fail(&book, what);
        }
        last = now;
    }
    eprintln!("quiet after {passes} passes, {:?} in all", t.elapsed());

    // No version lost.
    let all = snapshot(&sites, &cloud);
    let held: BTreeMap<&Vec<u8>, String> = all
        .iter()
        .enumerate()
        .flat_map(|(i, t)| t.iter().map(move |(p, c)| (c, format!("{i}:{p}"))))
        .collect();
    let lost: Vec<String> = book
        .written
        .iter()
        .filter(|(_, v)| !book.replaced.contains(v) && !held.contains_key(v))
        .map(|(who, v)| format!("{who}: {}", String::from_utf8_lossy(v).trim_end()))
        .collect();
    let mut where_ = String::new();
    for (i, t) in all.iter().enumerate() {
        let who = if i == sites.len() {
            "cloud".to_string()
        } else {
            format!("site{i}")
        };
        where_.push_str(&format!("{who}:\n"));
        for (p, c) in t {
            where_.push_str(&format!(
                "  {p}: {}\n",
                String::from_utf8_lossy(c).trim_end()
            ));
        }
    }
    if !lost.is_empty() {
        fail(
            &book,
            format!(
                "lost versions:\n  {}\nwhat is left:\n{where_}",
                lost.join("\n  ")
            ),
        );
    }
    // Conflict copies stay where they were made; none reaches the cloud.
    let in_cloud = cloud.tree(&|_| false);
    assert!(
        in_cloud
            .iter()
            .all(|(p, _)| !cloudsync::sync::reconcile::is_conflict_name(p)),
        "a conflict copy in the cloud: {:?}\n{}",
        names(&in_cloud),
        book.dump()
    );
    eprintln!(
        "{} versions written, none lost; what is left:\n{where_}",
        book.written.len()
    );
}

fn names(t: &[(String, Vec<u8>)]) -> Vec<&str> {
    t.iter().map(|(p, _)| p.as_str()).collect()
}

#[test]
fn three_sites_on_one_webdav_folder_converge_and_lose_nothing() {
    let s = DavServer::start(Profile::Sabre);
    s.mkdir_on_disk(DIR);
    let sites: Vec<Mount> = (0..3).map(|i| site(&s.url, &[], i)).collect();
    sites_converge(Cloud::Dav(s), sites);
}

#[test]
fn three_sites_on_one_s3_folder_converge_and_lose_nothing() {
    assert!(
        support::s3::available(Store::Seaweed),
        "SeaweedFS is not installed: run scripts/test once (it installs the S3 test stores)"
    );
    let srv = S3Server::shared(Store::Seaweed);
    let bucket = srv.bucket("sites");
    let tmp = tempfile::tempdir().unwrap();
    let (url, flags) = srv.mount_args(&srv.endpoint, &bucket, "site/", tmp.path());
    let sites: Vec<Mount> = (0..3).map(|i| site(&url, &flags, i)).collect();
    sites_converge(Cloud::S3(srv.raw(&bucket)), sites);
}

/// Waits until `f` holds, for at most a minute.
fn wait_for(what: &str, f: impl FnMut() -> bool) {
    harness::wait_until(Duration::from_secs(60), what, f);
}

/// The conflict copies in a site's folder, with their contents.
fn copies(m: &Mount) -> Vec<(String, Vec<u8>)> {
    tree(&m.o(DIR), &|_| false)
        .into_iter()
        .filter(|(p, _)| cloudsync::sync::reconcile::is_conflict_name(p))
        .collect()
}

/// Two sites edit one file, one after the other, the second before it saw the first's edit.
/// The first upload wins; the second site settles the conflict by its own rule and holds the
/// only conflict copy; the first site never gets one.
#[test]
fn between_sites_the_later_site_settles_the_conflict_by_its_own_rule() {
    let s = DavServer::start(Profile::Sabre);
    s.mkdir_on_disk(DIR);
    let sites: Vec<Mount> = (0..3).map(|i| site(&s.url, &[], i)).collect();
    let (a, b, c) = (&sites[0], &sites[1], &sites[2]);
    let at = |m: &Mount| fs::read(m.m(&format!("{DIR}/x.txt"))).ok();
    let cloud = || fs::read(s.disk(&format!("{DIR}/x.txt"))).ok();
    let write = |m: &Mount, v: &str| fs::write(m.m(&format!("{DIR}/x.txt")), v).unwrap();
    let settled = |m: &Mount| m.status(&format!("{DIR}/x.txt")).as_deref() == Some("synced");

    write(a, "v1");
    wait_for("v1 at every site", || {
        sites
            .iter()
            .all(|m| at(m).as_deref() == Some(b"v1") && settled(m))
    });

    // cloud-wins at the later site: its own edit goes to the copy.
    for m in [b, c] {
        assert!(cli(m, &["pause", "--pull"]).status.success());
    }
    write(a, "v2 from site0");
    wait_for("v2 in the cloud", || {
        cloud().as_deref() == Some(b"v2 from site0")
    });
    write(b, "v2 from site1");
    assert!(cli(b, &["resume", "--pull"]).status.success());
    wait_for("site1 settles", || !copies(b).is_empty() && settled(b));
    assert_eq!(at(b).as_deref(), Some(&b"v2 from site0"[..]));
    assert_eq!(
        copies(b).into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        [b"v2 from site1".to_vec()]
    );
    assert_eq!(cloud().as_deref(), Some(&b"v2 from site0"[..]));

    // onprem-wins at the later site: the cloud version goes to the copy, its own edit over it.
    write(c, "v3 from site2");
    assert!(cli(c, &["resume", "--pull"]).status.success());
    wait_for("site2's edit everywhere", || {
        sites
            .iter()
            .all(|m| at(m).as_deref() == Some(b"v3 from site2") && settled(m))
    });
    assert_eq!(cloud().as_deref(), Some(&b"v3 from site2"[..]));
    assert_eq!(
        copies(c).into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        [b"v2 from site0".to_vec()]
    );
    // The copies stayed where they were made.
    assert!(copies(a).is_empty(), "{:?}", names(&copies(a)));
    assert_eq!(copies(b).len(), 1, "{:?}", names(&copies(b)));
    assert!(
        tree(&s.disk(DIR), &|_| false)
            .iter()
            .all(|(p, _)| !cloudsync::sync::reconcile::is_conflict_name(p))
    );
}
