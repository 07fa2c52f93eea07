//! Transfer progress: the files and bytes sent and received since the daemon started, and the
//! initial sync with its totals and ETA.
//!
//! The initial sync is what a mount does before it is first up to date: the start-up scan,
//! the pushes it queued (and what an earlier run left queued), and the first pull with its
//! downloads. Its totals are what the scan queued plus what that pull set out to download; it
//! ends once the scan is done, a pull has run, and nothing is queued or in flight.
//!
//! [`Progress`] is one small struct of counters, kept in [`super::Shared`], so that the status
//! reply, the progress log and any other report read the same numbers.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::Shared;
use crate::journal::Journal;

/// How often the daemon logs the progress of the initial sync, unless
/// `CLOUDSYNC_PROGRESS_INTERVAL` says otherwise.
pub const LOG_EVERY: Duration = Duration::from_secs(5);

/// A pull downloading at least this many new files after the initial sync logs its progress.
pub const LARGE_PULL_FILES: u64 = 100;

/// Or at least this many bytes.
pub const LARGE_PULL_BYTES: u64 = 100 << 20;

/// Transfer counters and the initial sync.
#[derive(Debug)]
pub struct Progress {
    files_up: AtomicU64,
    bytes_up: AtomicU64,
    files_down: AtomicU64,
    bytes_down: AtomicU64,
    initial: Mutex<Initial>,
    /// The end of the initial sync was logged.
    end_logged: AtomicBool,
}

#[derive(Debug)]
struct Initial {
    started: Instant,
    /// Files and bytes the start-up scan queued, once it is done.
    scanned: Option<(u64, u64)>,
    /// Files and bytes the pulls of the initial sync set out to download.
    planned_down: (u64, u64),
    /// How long it took, once it ended.
    took: Option<Duration>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            files_up: AtomicU64::new(0),
            bytes_up: AtomicU64::new(0),
            files_down: AtomicU64::new(0),
            bytes_down: AtomicU64::new(0),
            initial: Mutex::new(Initial {
                started: Instant::now(),
                scanned: None,
                planned_down: (0, 0),
                took: None,
            }),
            end_logged: AtomicBool::new(false),
        }
    }
}

/// Files and bytes sent and received since the daemon started.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Transferred {
    /// Files uploaded.
    pub files_uploaded: u64,
    /// Bytes of the files uploaded.
    pub bytes_uploaded: u64,
    /// Files downloaded.
    pub files_downloaded: u64,
    /// Bytes of the files downloaded.
    pub bytes_downloaded: u64,
}

impl Transferred {
    /// Files both ways.
    pub fn files(&self) -> u64 {
        self.files_uploaded + self.files_downloaded
    }

    /// Bytes both ways.
    pub fn bytes(&self) -> u64 {
        self.bytes_uploaded + self.bytes_downloaded
    }
}

/// Where the initial sync stands.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct InitialSync {
    /// The start-up scan is still walking the folder: the totals still grow.
    pub scanning: bool,
    /// Files uploaded and downloaded so far.
    pub files_done: u64,
    /// Files to upload and download in all, as far as known.
    pub files_total: u64,
    /// Bytes uploaded and downloaded so far.
    pub bytes_done: u64,
    /// Bytes to upload and download in all, as far as known.
    pub bytes_total: u64,
    /// Time since the daemon started, in ms.
    pub elapsed_ms: u64,
    /// The time left at the rate so far, in ms, once there is a rate to go by.
    pub eta_ms: Option<u64>,
}

impl InitialSync {
    /// Bytes a second so far.
    pub fn bytes_per_sec(&self) -> f64 {
        per_sec(self.bytes_done, self.elapsed_ms)
    }

    /// Files a second so far.
    pub fn files_per_sec(&self) -> f64 {
        per_sec(self.files_done, self.elapsed_ms)
    }
}

fn per_sec(n: u64, ms: u64) -> f64 {
    if ms == 0 {
        0.0
    } else {
        n as f64 * 1000.0 / ms as f64
    }
}

/// What the initial sync still waits for, read from the queue and the engine.
#[derive(Debug, Clone, Copy)]
pub struct Outstanding {
    /// Queue entries still to push (failed ones and conflicts are not waited for).
    pub pending: u64,
    /// Transfers running.
    pub in_flight: u64,
    /// A pull has run, or pulling is paused.
    pub pulled: bool,
}

impl Progress {
    /// Counts one uploaded file of `bytes`.
    pub fn uploaded(&self, bytes: u64) {
        self.files_up.fetch_add(1, Ordering::Relaxed);
        self.bytes_up.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts one downloaded file of `bytes`.
    pub fn downloaded(&self, bytes: u64) {
        self.files_down.fetch_add(1, Ordering::Relaxed);
        self.bytes_down.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The start-up scan is done and queued `files` files of `bytes` in all.
    pub fn scanned(&self, files: u64, bytes: u64) {
        self.lock().scanned = Some((files, bytes));
    }

    /// A pull is about to download `files` new files of `bytes`: part of the initial sync
    /// while it runs. Otherwise, when they are many, the returned log reports their progress.
    pub fn planned_downloads(&self, files: u64, bytes: u64) -> DownloadLog {
        let mut i = self.lock();
        let initial = i.took.is_none();
        if initial {
            i.planned_down.0 += files;
            i.planned_down.1 += bytes;
        }
        let t = self.transferred();
        let every = log_every();
        DownloadLog {
            on: !initial && (files >= LARGE_PULL_FILES || bytes >= LARGE_PULL_BYTES),
            files,
            bytes,
            start: (t.files_downloaded, t.bytes_downloaded),
            started: Instant::now(),
            next: Instant::now() + every,
            every,
        }
    }

    /// The counters now.
    pub fn transferred(&self) -> Transferred {
        Transferred {
            files_uploaded: self.files_up.load(Ordering::Relaxed),
            bytes_uploaded: self.bytes_up.load(Ordering::Relaxed),
            files_downloaded: self.files_down.load(Ordering::Relaxed),
            bytes_downloaded: self.bytes_down.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Initial> {
        self.initial.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the initial sync stands, and whether it still runs. It ends (for good) the first
    /// time this is asked with the scan done and nothing `left`.
    pub fn initial(&self, left: Outstanding) -> (InitialSync, bool) {
        let t = self.transferred();
        let mut i = self.lock();
        let quiet = left.pending == 0 && left.in_flight == 0 && left.pulled;
        if i.took.is_none() && i.scanned.is_some() && quiet {
            i.took = Some(i.started.elapsed());
        }
        let (sf, sb) = i.scanned.unwrap_or((0, 0));
        let files_done = t.files();
        let bytes_done = t.bytes();
        let files_total = (sf + i.planned_down.0).max(files_done);
        let bytes_total = (sb + i.planned_down.1).max(bytes_done);
        let elapsed = i.took.unwrap_or_else(|| i.started.elapsed());
        let elapsed_ms = elapsed.as_millis() as u64;
        let secs = elapsed.as_secs_f64();
        let eta = |done: u64, total: u64| {
            (done > 0 && secs > 0.0)
                .then(|| ((total - done) as f64 * secs * 1000.0 / done as f64) as u64)
        };
        let running = i.took.is_none();
        let eta_ms = if !running {
            Some(0)
        } else if i.scanned.is_none() {
            None
        } else {
            match (eta(files_done, files_total), eta(bytes_done, bytes_total)) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            }
        };
        let snap = InitialSync {
            scanning: i.scanned.is_none(),
            files_done,
            files_total,
            bytes_done,
            bytes_total,
            elapsed_ms,
            eta_ms,
        };
        (snap, running)
    }

    /// Says once, the first time it is asked after the initial sync ended, that its end is
    /// to be logged.
    fn take_end(&self) -> bool {
        !self.end_logged.swap(true, Ordering::Relaxed)
    }
}

/// The progress log of one large pull's downloads, after the initial sync.
#[derive(Debug)]
pub struct DownloadLog {
    on: bool,
    files: u64,
    bytes: u64,
    /// The download counters when the pull began.
    start: (u64, u64),
    started: Instant,
    next: Instant,
    every: Duration,
}

impl DownloadLog {
    /// Called after each download: logs where the pull stands once per interval.
    pub fn tick(&mut self, p: &Progress) {
        if !self.on || Instant::now() < self.next {
            return;
        }
        self.next = Instant::now() + self.every;
        let t = p.transferred();
        let files = t
            .files_downloaded
            .saturating_sub(self.start.0)
            .min(self.files);
        let bytes = t
            .bytes_downloaded
            .saturating_sub(self.start.1)
            .min(self.bytes);
        let secs = self.started.elapsed().as_secs_f64();
        let eta = (bytes > 0).then(|| ((self.bytes - bytes) as f64 * secs / bytes as f64) as u64);
        tracing::info!(
            files,
            files_total = self.files,
            bytes,
            bytes_total = self.bytes,
            rate = %format!("{}/s", human_bytes((bytes as f64 / secs.max(0.001)) as u64)),
            eta = %eta.map_or_else(|| "unknown".to_string(), human_secs),
            "downloading cloud changes"
        );
    }
}

/// Where the initial sync of the engine behind `shared` stands, with `queue` its queue's
/// counts (entries, failed or in conflict) as [`Journal::queue_counts`] gives them.
pub fn initial_sync(shared: &Shared, queue: (u64, u64)) -> (InitialSync, bool) {
    let (queued, failed) = queue;
    let in_flight = shared
        .in_flight
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .len() as u64;
    let c = shared.counters.snapshot();
    let pulled = c.pulls_ok + c.pulls_failed > 0
        || shared.pull_paused.load(Ordering::Relaxed)
        || shared.auth_paused.load(Ordering::Relaxed);
    shared.progress.initial(Outstanding {
        pending: queued.saturating_sub(failed),
        in_flight,
        pulled,
    })
}

/// The progress log interval: `CLOUDSYNC_PROGRESS_INTERVAL` (like `500ms`), else
/// [`LOG_EVERY`].
pub fn log_every() -> Duration {
    std::env::var("CLOUDSYNC_PROGRESS_INTERVAL")
        .ok()
        .and_then(|v| humantime::parse_duration(v.trim()).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(LOG_EVERY)
}

/// Logs the progress of the initial sync every `every` while it runs, and one line when it
/// ends; then returns. Nothing is logged after that.
pub async fn log_initial(
    shared: std::sync::Arc<Shared>,
    journal: std::sync::Arc<Journal>,
    every: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let poll = every.min(Duration::from_millis(500));
    let mut next = Instant::now() + every;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(poll) => {}
        }
        let Ok(queue) = journal.queue_counts() else {
            continue;
        };
        let (s, running) = initial_sync(&shared, queue);
        if !running {
            if shared.progress.take_end() {
                tracing::info!(
                    files = s.files_done,
                    bytes = s.bytes_done,
                    secs = %format!("{:.1}", s.elapsed_ms as f64 / 1000.0),
                    "initial sync done"
                );
            }
            return;
        }
        if Instant::now() >= next {
            next = Instant::now() + every;
            tracing::info!(
                files = s.files_done,
                files_total = s.files_total,
                bytes = s.bytes_done,
                bytes_total = s.bytes_total,
                rate = %format!("{}/s", human_bytes(s.bytes_per_sec() as u64)),
                files_per_sec = %format!("{:.1}", s.files_per_sec()),
                eta = %s.eta_ms.map_or_else(|| "unknown".to_string(), |ms| human_secs(ms / 1000)),
                scanning = s.scanning,
                "initial sync progress"
            );
        }
    }
}

/// Bytes for people: `512 B`, `1.5 KiB`, `12.0 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// Seconds for people: `45s`, `3m05s`, `2h10m`.
pub fn human_secs(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn left(pending: u64, pulled: bool) -> Outstanding {
        Outstanding {
            pending,
            in_flight: 0,
            pulled,
        }
    }

    #[test]
    fn the_initial_sync_ends_once_scanned_pulled_and_drained() {
        let p = Progress::default();
        let (s, running) = p.initial(left(0, true));
        assert!(running && s.scanning, "not before the scan is done");
        p.scanned(4, 4000);
        p.uploaded(1000);
        let (s, running) = p.initial(left(3, true));
        assert!(running && !s.scanning);
        assert_eq!((s.files_done, s.files_total), (1, 4));
        assert_eq!((s.bytes_done, s.bytes_total), (1000, 4000));
        assert!(s.eta_ms.is_some());
        assert!(p.initial(left(0, false)).1, "the first pull is waited for");
        p.planned_downloads(2, 10);
        let (s, running) = p.initial(left(0, true));
        assert!(!running);
        assert_eq!(s.files_total, 6);
        assert_eq!(s.eta_ms, Some(0));
        // Ended for good: later downloads belong to no initial sync.
        p.planned_downloads(5, 5);
        let (s, running) = p.initial(left(9, false));
        assert!(!running);
        assert_eq!(s.files_total, 6);
        assert!(p.take_end());
        assert!(!p.take_end(), "the end is logged once");
    }

    #[test]
    fn totals_never_fall_below_what_was_done() {
        let p = Progress::default();
        p.scanned(1, 10);
        p.uploaded(50);
        p.downloaded(50);
        let (s, _) = p.initial(left(1, true));
        assert_eq!((s.files_done, s.files_total), (2, 2));
        assert_eq!((s.bytes_done, s.bytes_total), (100, 100));
        assert_eq!(p.transferred().bytes(), 100);
    }

    #[test]
    fn numbers_for_people() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(12 * 1024 * 1024), "12.0 MiB");
        assert_eq!(human_secs(45), "45s");
        assert_eq!(human_secs(185), "3m05s");
        assert_eq!(human_secs(7800), "2h10m");
    }
}
