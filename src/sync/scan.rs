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
