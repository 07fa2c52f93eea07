//! The start-up scan: compares the on-premise folder with the journal and queues whatever
//! changed while the daemon was down or killed, including changes made straight in the folder.
//!
//! It compares size, mtime, ctime and inode only; the pusher hashes what differs, so an
//! unchanged tree of 100k files costs one walk and no reads.

use crate::onprem::Onprem;
use std::collections::HashMap;

use crate::cloud;
use crate::ignore::Ignore;
use crate::journal::{Change, FileStat, Journal, JournalError, NodeKind, Op};

/// What a scan found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanReport {
    /// Items looked at.
    pub seen: u64,
    /// Items queued.
    pub queued: u64,
    /// Files among them.
    pub files: u64,
    /// The bytes of those files.
    pub bytes: u64,
}

/// Scans `onprem` against the journal and queues differences, due at `not_before` (ms; 0 for
/// at once).
///
/// `syncable` says whether a path reaches the cloud at all (inside a sync set, not unsynced).
/// A record kept on purpose (DELETED_ON_CLOUD) is queued only when the file changed.
pub fn scan(
    onprem: &Onprem,
    journal: &Journal,
    ignore: &Ignore,
    syncable: &dyn Fn(&str) -> bool,
    not_before: i64,
) -> Result<ScanReport, JournalError> {
    let mut known: HashMap<String, (NodeKind, FileStat)> = HashMap::new();
    journal.for_each_stat(|path, kind, stat| {
        known.insert(path, (kind, stat));
    })?;
    let mut report = ScanReport::default();
    let mut batch: Vec<Change> = Vec::new();
    let mut stack = vec![String::new()];
    while let Some(dir) = stack.pop() {
        let full = onprem.display(&dir);
        let rd = match onprem.read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) => {
                tracing::warn!(dir = %full.display(), error = %e, "scan cannot read a folder");
                // Do not treat its records as deleted.
                let prefix = dir.clone();
                known.retain(|p, _| !cloud::is_within(p, &prefix) || p == &prefix);
                continue;
            }
        };
        for de in rd.flatten() {
            let Some(name) = de.name.to_str().map(str::to_string) else {
                tracing::warn!(dir = %full.display(), "skipping a name that is not UTF-8");
                continue;
            };
            if ignore.name_excluded(&name) {
                if crate::cloud::dir::is_stale_tmp(&name, crate::onprem::TEMP_PREFIX) {
                    // A download cut short by a crash.
                    let _ = onprem.remove_file(&cloud::join(&dir, &name));
                }
                continue;
            }
            let Ok(m) = de.meta else { continue };
            let path = cloud::join(&dir, &name);
            report.seen += 1;
            let rec = known.remove(&path);
            let changed = if m.is_dir() {
                stack.push(path.clone());
                !matches!(rec, Some((NodeKind::Dir, ..)))
            } else if m.is_file() {
                !matches!(rec, Some((NodeKind::File, stat)) if stat == FileStat::of(&m))
            } else {
                rec.is_some()
            };
            if changed && syncable(&path) {
                if m.is_file() {
                    report.files += 1;
                    report.bytes += m.len();
                }
                batch.push(Change::Path(Op::Check, path));
            }
            if batch.len() >= 1000 {
                report.queued += batch.len() as u64;
                journal.enqueue(&batch, not_before)?;
                batch.clear();
            }
        }
    }
    // Records with nothing on-premise: deleted while we were away.
    for (path, _) in known {
        if syncable(&path) {
            batch.push(Change::Path(Op::Delete, path));
        }
    }
    report.queued += batch.len() as u64;
    journal.enqueue(&batch, not_before)?;
    Ok(report)
}

/// What the scans beside a mount need.
pub struct Scans {
    /// The on-premise folder.
    pub onprem: std::sync::Arc<Onprem>,
    /// The journal.
    pub journal: std::sync::Arc<Journal>,
    /// Excluded names.
    pub ignore: Ignore,
    /// Says which paths reach the cloud.
    pub engine: std::sync::Arc<super::Engine>,
    /// Wakes the pusher after a scan queued something.
    pub wake: std::sync::Arc<tokio::sync::Notify>,
    /// Ends the rescans.
    pub stop: tokio_util::sync::CancellationToken,
    /// Time between two rescans; `None` for none.
    pub every: Option<std::time::Duration>,
    /// The push delay: changes a rescan finds are due after it, like changes made through the
    /// mount.
    pub delay: std::time::Duration,
}

/// Runs the start-up scan on a thread of its own, never holding the mount up, then a rescan
/// every [`Scans::every`] until [`Scans::stop`] is cancelled.
pub fn spawn(s: Scans) -> std::io::Result<std::thread::JoinHandle<()>> {
    use tracing::{debug, info, warn};
    std::thread::Builder::new()
        .name("scan".into())
        .spawn(move || {
            let syncable = |p: &str| s.engine.syncable(p);
            let t = std::time::Instant::now();
            let progress = &s.engine.shared.progress;
            match scan(&s.onprem, &s.journal, &s.ignore, &syncable, 0) {
                Ok(r) => {
                    progress.scanned(r.files, r.bytes);
                    info!(
                        seen = r.seen,
                        queued = r.queued,
                        ms = t.elapsed().as_millis() as u64,
                        "start-up scan done"
                    )
                }
                Err(e) => {
                    progress.scanned(0, 0);
                    warn!(error = %e, "start-up scan failed")
                }
            }
            s.wake.notify_one();
            let Some(every) = s.every else { return };
            loop {
                let until = std::time::Instant::now() + every;
                while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
                    if s.stop.is_cancelled() {
                        return;
                    }
                    std::thread::sleep(left.min(std::time::Duration::from_millis(200)));
                }
                let t = std::time::Instant::now();
                let due = crate::journal::now_ms() + s.delay.as_millis() as i64;
                match scan(&s.onprem, &s.journal, &s.ignore, &syncable, due) {
                    Ok(r) if r.queued > 0 => {
                        info!(
                            seen = r.seen,
                            queued = r.queued,
                            ms = t.elapsed().as_millis() as u64,
                            "rescan found changes made straight in the on-premise folder"
                        );
                        s.wake.notify_one();
                    }
                    Ok(r) => debug!(
                        seen = r.seen,
                        ms = t.elapsed().as_millis() as u64,
                        "rescan: no change"
                    ),
                    Err(e) => warn!(error = %e, "rescan failed"),
                }
            }
        })
}
