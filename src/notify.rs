//! What the service manager is told: readiness, a status line, stopping, and the watchdog.
//!
//! Under systemd (`Type=notify`, `NOTIFY_SOCKET` set) the daemon sends `READY=1` only once its
//! FUSE session has answered a request from another thread, `STATUS=` with the queue and the
//! offline state whenever it changes, `STOPPING=1` and `EXTEND_TIMEOUT_USEC=` while a stop
//! waits for uploads in flight, and `WATCHDOG=1` while both the FUSE loop and the engine give
//! signs of life. Without `NOTIFY_SOCKET` every call here does nothing.
//!
//! Liveness is two heartbeats ([`Heartbeat`]): one beaten by a probe that asks the mount's root
//! for a virtual attribute (a request the kernel never answers from its cache, so it reaches the
//! FUSE loop), one by a task on the engine's runtime that reads the journal. The watchdog
//! thread sends `WATCHDOG=1` only while both are fresh; a hung FUSE loop, runtime or journal
//! stops the pings, and systemd restarts the unit.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// Sends `states` to the service manager, if there is one. Failures are logged at debug level
/// only: a notify socket that went away must not disturb the mount.
pub fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "cannot reach the service manager's notify socket");
    }
}

/// True when a service manager listens (`NOTIFY_SOCKET` is set).
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// The watchdog interval the unit asked for (`WatchdogSec=`), if any.
pub fn watchdog() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
}

/// A time of the last sign of life, readable from any thread.
#[derive(Debug)]
pub struct Heartbeat {
    start: Instant,
    /// Milliseconds after `start` of the last beat, plus one (0: never).
    last: AtomicU64,
}

impl Default for Heartbeat {
    fn default() -> Heartbeat {
        Heartbeat {
            start: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl Heartbeat {
    /// Records a sign of life now.
    pub fn beat(&self) {
        let ms = self.start.elapsed().as_millis() as u64 + 1;
        self.last.store(ms, Ordering::Relaxed);
    }

    /// True when the last beat is younger than `max`. Before its first beat, a part counts
    /// as alive for `max` after it was made: it is still starting, not hung.
    pub fn fresh(&self, max: Duration) -> bool {
        match self.last.load(Ordering::Relaxed) {
            0 => self.start.elapsed() <= max,
            ms => self.start.elapsed().as_millis() as u64 + 1 - ms <= max.as_millis() as u64,
        }
    }
}

/// Asks the mount at `mountpoint` for `xattr` (a virtual attribute the daemon answers, which
/// the kernel never caches) and checks the answer is `want`: true only when our own FUSE
/// session answered.
pub fn mount_answers(mountpoint: &Path, xattr: &str, want: &str) -> bool {
    let Ok(p) = std::ffi::CString::new(mountpoint.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    let Ok(n) = std::ffi::CString::new(xattr) else {
        return false;
    };
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid C strings and a buffer of buf.len() bytes.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    r >= 0 && &buf[..r as usize] == want.as_bytes()
}

/// The probe of a mount: it waits until the mount answers, calls `on_ready` once, and, with a
/// watchdog, keeps asking every `every` and beats `fuse` after each answer. Ends when `stop`
/// is set (or, without a watchdog, right after `on_ready`).
pub struct Probe {
    /// The mount point to ask.
    pub mountpoint: PathBuf,
    /// The attribute to ask for, and the answer that proves the mount is ours.
    pub xattr: &'static str,
    /// The expected answer.
    pub want: String,
    /// Beaten after each answer.
    pub fuse: Arc<Heartbeat>,
    /// How often to ask once ready; `None` stops after the first answer.
    pub every: Option<Duration>,
    /// Set when the session has ended.
    pub stop: Arc<AtomicBool>,
}

impl Probe {
    /// Starts the probe thread.
    pub fn spawn(self, on_ready: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("mount-probe".into())
            .spawn(move || {
                let mut on_ready = Some(on_ready);
                let mut pause = Duration::from_millis(5);
                while !self.stop.load(Ordering::Relaxed) {
                    if mount_answers(&self.mountpoint, self.xattr, &self.want) {
                        self.fuse.beat();
                        if let Some(f) = on_ready.take() {
                            f();
                        }
                        match self.every {
                            Some(d) => pause = d,
                            None => return,
                        }
                    } else if on_ready.is_some() {
                        pause = (pause * 2).min(Duration::from_millis(200));
                    }
                    std::thread::sleep(pause);
                }
            })
            .map(|_| ())
    }
}

/// Starts the watchdog thread: every `interval / 2` it sends `WATCHDOG=1` when every one of
/// `beats` is younger than `interval / 2` plus its probe period, and otherwise logs which part
/// went quiet. Ends when `stop` is set.
pub fn spawn_watchdog(
    interval: Duration,
    beats: Vec<(&'static str, Arc<Heartbeat>)>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let period = interval / 2;
    // A beat comes every interval / 4 (see `heartbeat_period`); three quarters of the interval
    // leaves room for one late beat without letting a hung part go unnoticed.
    let max_age = interval * 3 / 4;
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match beats.iter().find(|(_, b)| !b.fresh(max_age)) {
                    None => send(&[NotifyState::Watchdog]),
                    Some((what, _)) => tracing::warn!(
                        part = what,
                        "no sign of life within the watchdog interval; not pinging the watchdog"
                    ),
                }
                std::thread::sleep(period);
            }
        })
        .map(|_| ())
}

/// How often the heartbeats are beaten for a watchdog of `interval`.
pub fn heartbeat_period(interval: Duration) -> Duration {
    (interval / 4).clamp(Duration::from_millis(50), Duration::from_secs(5))
}

/// The `STATUS=` line: the queue and whether the cloud is reachable.
pub fn status_line(
    queued: u64,
    failed: u64,
    in_flight: u64,
    offline_since: Option<&str>,
    paused: &[&str],
) -> String {
    let mut s = format!("{queued} queued, {failed} failed, {in_flight} in flight");
    match offline_since {
        Some(t) => s.push_str(&format!("; offline since {t}")),
        None => s.push_str("; online"),
    }
    for p in paused {
        s.push_str(&format!("; {p} paused"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_goes_stale() {
        let h = Heartbeat::default();
        assert!(h.fresh(Duration::from_secs(10)), "still starting");
        std::thread::sleep(Duration::from_millis(30));
        assert!(!h.fresh(Duration::from_millis(10)), "never beaten");
        h.beat();
        assert!(h.fresh(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(30));
        assert!(!h.fresh(Duration::from_millis(10)));
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            status_line(3, 1, 2, None, &[]),
            "3 queued, 1 failed, 2 in flight; online"
        );
        assert_eq!(
            status_line(0, 0, 0, Some("2026-01-01T00:00:00Z"), &["push"]),
            "0 queued, 0 failed, 0 in flight; offline since 2026-01-01T00:00:00Z; push paused"
        );
    }
}
