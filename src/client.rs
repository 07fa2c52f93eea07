//! The CLI side of the control socket: finds the mount that holds a path, sends requests, and
//! prints reports as a table, JSON or CSV.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cli::{ConflictsArgs, PauseArgs, StatusArgs, SyncArgs, UnsyncArgs};
use crate::control::{self, Item, Request, Response, XATTR_CONTROL};

/// A cloudsync mount found from a path inside it.
#[derive(Debug)]
pub struct Located {
    /// The mount point.
    pub mountpoint: PathBuf,
    /// The control socket.
    pub socket: PathBuf,
}

fn lgetxattr(path: &Path, name: &str) -> std::io::Result<Option<String>> {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())?;
    let n = std::ffi::CString::new(name)?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid C strings and a buffer of buf.len() bytes.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => Ok(None),
            _ => Err(e),
        };
    }
    buf.truncate(r as usize);
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// Finds the cloudsync mount holding `path`, and `path` relative to it.
pub fn locate(path: &Path) -> Result<(Located, String)> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    // The path itself may be gone (a deleted file); its folder must exist.
    let canon = std::fs::canonicalize(&abs)
        .or_else(|_| {
            let parent = abs.parent().context("no parent")?;
            let name = abs.file_name().context("no name")?;
            Ok::<_, anyhow::Error>(std::fs::canonicalize(parent)?.join(name))
        })
        .with_context(|| format!("{}: no such file or folder", path.display()))?;
    let mut mounts = crate::mountinfo::cloudsync_mounts();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    let Some(mp) = mounts.into_iter().find(|m| canon.starts_with(m)) else {
        bail!("{}: not inside a cloudsync mount", path.display());
    };
    let socket = lgetxattr(&mp, XATTR_CONTROL)
        .with_context(|| format!("cannot ask {} for its daemon", mp.display()))?
        .with_context(|| format!("{}: the daemon offers no control socket", mp.display()))?;
    let rel = canon
        .strip_prefix(&mp)
        .unwrap_or(Path::new(""))
        .to_string_lossy()
        .into_owned();
    Ok((
        Located {
            mountpoint: mp,
            socket: PathBuf::from(socket),
        },
        rel,
    ))
}

fn ask(loc: &Located, req: &Request) -> Result<Response> {
    let r = control::request(&loc.socket, req)?;
    if !r.ok {
        bail!(
            "{}",
            r.error
                .unwrap_or_else(|| "the daemon refused the request".into())
        );
    }
    Ok(r)
}

/// Groups paths by the mount holding them.
fn by_mount(paths: &[PathBuf]) -> Result<Vec<(Located, Vec<String>)>> {
    let paths: Vec<PathBuf> = if paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        paths.to_vec()
    };
    let mut out: Vec<(Located, Vec<String>)> = Vec::new();
    for p in &paths {
        let (loc, rel) = locate(p)?;
        match out.iter_mut().find(|(l, _)| l.mountpoint == loc.mountpoint) {
            Some((_, v)) => v.push(rel),
            None => out.push((loc, vec![rel])),
        }
    }
    Ok(out)
}

fn print_items(mp: &Path, items: &[Item], json: bool, csv: bool) {
    if json {
        return;
    }
    if csv {
        // The same CSV as the Sync Manager's download.
        print!("{}", control::status_csv(mp, items));
        return;
    }
    for i in items {
        let extra = match (&i.error, &i.original) {
            (Some(e), _) => format!("  ({e})"),
            (None, Some(o)) => format!("  (copy of {})", mp.join(o).display()),
            _ => String::new(),
        };
        println!("{:<12} {}{}", i.status, mp.join(&i.path).display(), extra);
    }
}

/// The summary of the mount behind `loc`, without listing its items.
pub fn summary_of(loc: &Located) -> Result<control::Summary> {
    let r = ask(
        loc,
        &Request::Status {
            paths: vec![String::new()],
            failed: false,
        },
    )?;
    r.summary
        .context("the daemon's status reply holds no summary")
}

/// `cloudsync status`: exit 0, or 1 when something failed.
pub fn status(a: StatusArgs) -> Result<u8> {
    if a.watch {
        let mounts: Vec<Located> = by_mount(&a.paths)?.into_iter().map(|(l, _)| l).collect();
        let points: Vec<&Path> = mounts.iter().map(|l| l.mountpoint.as_path()).collect();
        return crate::watch::watch(&points, &|i| summary_of(&mounts[i]), a.count);
    }
    let mut any_failed = false;
    let mut json_out = Vec::new();
    for (loc, rels) in by_mount(&a.paths)? {
        // A mount root or no path at all means everything.
        let paths = if a.paths.is_empty() || rels.iter().any(String::is_empty) {
            Vec::new()
        } else {
            rels
        };
        let r = ask(
            &loc,
            &Request::Status {
                paths,
                failed: a.failed,
            },
        )?;
        any_failed |= r
            .items
            .iter()
            .any(|i| i.status == "failed" || i.status == "missing");
        print_items(&loc.mountpoint, &r.items, a.json, a.csv);
        if let Some(s) = &r.summary {
            if a.json {
                json_out.push(control::status_report(&loc.mountpoint, &r));
            } else if !a.csv {
                let c = &s.counters;
                println!(
                    "\n{}: {} queued, {} failed, {} in flight{}{}{}",
                    loc.mountpoint.display(),
                    s.queued,
                    s.failed,
                    s.in_flight,
                    s.offline_since
                        .as_deref()
                        .map(|t| format!(", offline since {t}"))
                        .unwrap_or_default(),
                    if s.push_paused || s.auth_paused {
                        ", pushing paused"
                    } else {
                        ""
                    },
                    if s.pull_paused {
                        ", pulling paused"
                    } else {
                        ""
                    },
                );
                println!(
                    "pushes: {} ok, {} failed, {:.0} ms avg; pulls: {} ok, {} failed, {:.0} ms avg",
                    c.pushes_ok,
                    c.pushes_failed,
                    c.push_avg_ms,
                    c.pulls_ok,
                    c.pulls_failed,
                    c.pull_avg_ms
                );
            }
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&json_out)?);
    }
    Ok(u8::from(any_failed))
}

/// `cloudsync sync`: exit 0 when synced (or requested), 1 on failure or conflict, 124 on
/// timeout.
pub fn sync(a: SyncArgs) -> Result<u8> {
    let timeout = crate::config::parse_duration("--timeout", &a.timeout)?;
    let groups = by_mount(&a.paths)?;
    for (loc, rels) in &groups {
        let paths = if rels.iter().any(String::is_empty) {
            Vec::new()
        } else {
            rels.clone()
        };
        // With --now the daemon pulls before it answers, and says what the pull cost.
        let r = ask(loc, &Request::Sync { paths, now: a.now })?;
        if a.now
            && let Some(p) = r.pull
        {
            println!(
                "{}: pulled in {:.1} ms with {} requests: {} downloaded, {} conflicts, {} other changes",
                loc.mountpoint.display(),
                p.ms,
                p.requests,
                p.downloaded,
                p.conflicts,
                p.other
            );
        }
    }
    if !a.wait {
        return Ok(0);
    }
    let start = Instant::now();
    // The sync request is answered once its changes are queued, so the first status can be
    // trusted at once. Polling starts fast and slows down to 10 times a second.
    let mut pause = Duration::from_millis(10);
    // On a terminal a bar shows what is sent meanwhile; piped, nothing is added.
    let mut bar = crate::watch::WaitBar::new();
    loop {
        let mut pending = Vec::new();
        let mut summaries = Vec::new();
        for (loc, rels) in &groups {
            let r = ask(
                loc,
                &Request::Status {
                    paths: rels.clone(),
                    failed: false,
                },
            )?;
            summaries.extend(r.summary);
            for i in r.items {
                let name = i.path.rsplit('/').next().unwrap_or(&i.path);
                match i.status.as_str() {
                    "synced" | "excluded" | "unsynced" | "locked" => {}
                    // A conflict copy is named once nothing is pending (below). Any other item
                    // reads `conflict` while the reconciler settles a push the cloud refused,
                    // which may well end with no conflict at all: that is waited for.
                    "conflict" if crate::sync::reconcile::is_conflict_name(name) => {}
                    "failed" | "missing" => {
                        bar.clear();
                        eprintln!(
                            "cloudsync: {}: {}{}",
                            loc.mountpoint.join(&i.path).display(),
                            i.status,
                            i.error.map(|e| format!(" ({e})")).unwrap_or_default()
                        );
                        return Ok(1);
                    }
                    _ => pending.push(loc.mountpoint.join(&i.path)),
                }
            }
        }
        bar.update(&summaries);
        if pending.is_empty() {
            bar.clear();
            // Everything is in the cloud; a conflict copy at or below a path still needs a
            // person, so the wait ends in 1 and names it.
            let mut conflicts = 0;
            for (loc, rels) in &groups {
                let r = ask(loc, &Request::Conflicts)?;
                for i in r.items {
                    if rels.iter().any(|p| crate::cloud::is_within(&i.path, p)) {
                        eprintln!(
                            "cloudsync: {}: conflict copy of {}",
                            loc.mountpoint.join(&i.path).display(),
                            loc.mountpoint
                                .join(i.original.as_deref().unwrap_or_default())
                                .display()
                        );
                        conflicts += 1;
                    }
                }
            }
            return Ok(u8::from(conflicts > 0));
        }
        if start.elapsed() >= timeout {
            bar.clear();
            for p in pending {
                eprintln!("cloudsync: {}: not synced after {}", p.display(), a.timeout);
            }
            return Ok(124);
        }
        std::thread::sleep(pause);
        pause = (pause * 3 / 2).min(Duration::from_millis(100));
    }
}

/// `cloudsync conflicts`.
pub fn conflicts(a: ConflictsArgs) -> Result<u8> {
    let (loc, _) = locate(a.mountpoint.as_deref().unwrap_or(Path::new(".")))?;
    let r = ask(&loc, &Request::Conflicts)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r.items)?);
    } else {
        for i in &r.items {
            println!(
                "{}\t{}",
                loc.mountpoint.join(&i.path).display(),
                loc.mountpoint
                    .join(i.original.as_deref().unwrap_or_default())
                    .display()
            );
        }
    }
    Ok(0)
}

/// `cloudsync unsync`.
pub fn unsync(a: UnsyncArgs) -> Result<u8> {
    let (loc, rel) = locate(&a.path)?;
    ask(
        &loc,
        &Request::Unsync {
            path: rel,
            delete_cloud: a.delete_cloud,
        },
    )?;
    Ok(0)
}

/// `cloudsync pause` and `cloudsync resume`.
pub fn pause(a: PauseArgs, on: bool) -> Result<u8> {
    let (loc, _) = locate(a.mountpoint.as_deref().unwrap_or(Path::new(".")))?;
    let req = if on {
        Request::Pause {
            push: a.push,
            pull: a.pull,
        }
    } else {
        Request::Resume {
            push: a.push,
            pull: a.pull,
        }
    };
    ask(&loc, &req)?;
    Ok(0)
}
