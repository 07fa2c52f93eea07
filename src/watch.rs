//! The CLI's live views of a mount: `cloudsync status --watch`, redrawn in place on a terminal
//! and one plain line per interval otherwise, and the progress bar of `cloudsync sync --wait`
//! on a terminal.
//!
//! Both read the mount summary of the status reply: the queue, the transfers in flight, the
//! files and bytes transferred since the daemon started, and the initial sync while it runs.
//! Throughput is the difference of successive summaries over the last few seconds.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::control::Summary;
use crate::sync::progress::{Transferred, human_bytes, human_secs};

/// Time between two summaries of `status --watch`.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

/// How far back throughput looks.
const RATE_WINDOW: Duration = Duration::from_secs(5);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Ctrl-C (and SIGTERM) end the watch at its next step instead of killing it, so that the
/// terminal gets its cursor back.
fn catch_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

/// Throughput over the last few seconds, from successive summaries.
#[derive(Debug, Default)]
pub struct Rates {
    samples: VecDeque<(Instant, Transferred)>,
}

/// Bytes and files a second, both ways together and each way.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Bytes a second uploaded.
    pub up: f64,
    /// Bytes a second downloaded.
    pub down: f64,
    /// Files a second, both ways.
    pub files: f64,
}

impl Rates {
    /// Adds the counters seen at `at`, and gives the rate over the window.
    pub fn add(&mut self, at: Instant, t: Transferred) -> Rate {
        self.samples.push_back((at, t));
        while self.samples.len() > 2 && at.duration_since(self.samples[1].0) >= RATE_WINDOW {
            self.samples.pop_front();
        }
        let (t0, a) = self.samples[0];
        let secs = at.duration_since(t0).as_secs_f64();
        if secs <= 0.0 {
            return Rate::default();
        }
        let d = |x: u64, y: u64| x.saturating_sub(y) as f64 / secs;
        Rate {
            up: d(t.bytes_uploaded, a.bytes_uploaded),
            down: d(t.bytes_downloaded, a.bytes_downloaded),
            files: d(t.files(), a.files()),
        }
    }
}

fn state_words(s: &Summary) -> String {
    let mut w = match &s.offline_since {
        Some(t) => format!("offline since {t}"),
        None => "online".to_string(),
    };
    if s.auth_paused {
        w.push_str(", pushing stopped (credentials refused)");
    } else if s.push_paused {
        w.push_str(", pushing paused");
    }
    if s.pull_paused {
        w.push_str(", pulling paused");
    }
    w
}

fn initial_words(s: &Summary) -> Option<String> {
    let i = s.initial_sync.as_ref()?;
    let eta = match (i.scanning, i.eta_ms) {
        (true, _) => "scanning".to_string(),
        (false, Some(ms)) => format!("ETA {}", human_secs(ms.div_ceil(1000))),
        (false, None) => "ETA unknown".to_string(),
    };
    Some(format!(
        "{} of {} files, {} of {}, {eta}",
        i.files_done,
        i.files_total,
        human_bytes(i.bytes_done),
        human_bytes(i.bytes_total)
    ))
}

/// One plain line for a log: the mount, the queue, throughput, the state, and the initial sync.
pub fn plain_line(mount: &str, s: &Summary, r: Rate) -> String {
    let mut line = format!(
        "{} {mount}: {} queued, {} in flight, {} failed; up {}/s, down {}/s, {:.1} files/s; {}",
        crate::status::rfc3339(std::time::SystemTime::now()),
        s.queued,
        s.in_flight,
        s.failed,
        human_bytes(r.up as u64),
        human_bytes(r.down as u64),
        r.files,
        state_words(s)
    );
    if let Some(i) = initial_words(s) {
        line.push_str("; initial sync: ");
        line.push_str(&i);
    }
    line
}

/// The lines drawn for one mount on a terminal.
fn screen_lines(mount: &str, s: &Summary, r: Rate) -> Vec<String> {
    let mut v = vec![
        format!("{mount}  ({})", state_words(s)),
        format!(
            "  queue     {} queued, {} in flight, {} failed",
            s.queued, s.in_flight, s.failed
        ),
        format!(
            "  speed     up {}/s, down {}/s, {:.1} files/s",
            human_bytes(r.up as u64),
            human_bytes(r.down as u64),
            r.files
        ),
        format!(
            "  total     {} files up ({}), {} down ({})",
            s.transferred.files_uploaded,
            human_bytes(s.transferred.bytes_uploaded),
            s.transferred.files_downloaded,
            human_bytes(s.transferred.bytes_downloaded)
        ),
    ];
    if let (Some(i), Some(words)) = (&s.initial_sync, initial_words(s)) {
        const WIDTH: usize = 24;
        let frac = if i.bytes_total > 0 {
            i.bytes_done as f64 / i.bytes_total as f64
        } else if i.files_total > 0 {
            i.files_done as f64 / i.files_total as f64
        } else {
            0.0
        };
        let full = ((frac * WIDTH as f64) as usize).min(WIDTH);
        v.push(format!(
            "  initial   [{}{}] {words}",
            "#".repeat(full),
            "-".repeat(WIDTH - full)
        ));
    }
    v
}

/// The width of the terminal on standard output, if it says.
fn terminal_width() -> Option<usize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ only writes a winsize into the struct passed.
    let r = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0).then_some(ws.ws_col as usize)
}

/// `line` cut to `width` characters: a line that wrapped would spoil the redraw.
fn fit(line: &str, width: Option<usize>) -> &str {
    match width.and_then(|w| line.char_indices().nth(w.saturating_sub(1))) {
        Some((at, _)) => &line[..at],
        None => line,
    }
}

/// `cloudsync status --watch`: a summary of each of `mounts` every second, asked with
/// `summary(i)` for the `i`th, until interrupted or `count` summaries are out.
pub fn watch(
    mounts: &[&Path],
    summary: &dyn Fn(usize) -> Result<Summary>,
    count: Option<u64>,
) -> Result<u8> {
    catch_interrupts();
    let tty = std::io::stdout().is_terminal();
    let mut out = std::io::stdout().lock();
    let mut rates: Vec<Rates> = mounts.iter().map(|_| Rates::default()).collect();
    let mut drawn = 0usize;
    if tty {
        write!(out, "\x1b[?25l")?;
    }
    let result = (|| -> Result<()> {
        let mut n = 0u64;
        while !INTERRUPTED.load(Ordering::Relaxed) {
            let started = Instant::now();
            let mut lines = Vec::new();
            for (i, (mount, rates)) in mounts.iter().zip(&mut rates).enumerate() {
                let r = summary(i)?;
                let rate = rates.add(Instant::now(), r.transferred);
                let mp = mount.display().to_string();
                if tty {
                    lines.extend(screen_lines(&mp, &r, rate));
                } else {
                    lines.push(plain_line(&mp, &r, rate));
                }
            }
            if tty {
                if drawn > 0 {
                    write!(out, "\x1b[{drawn}F")?;
                }
                let width = terminal_width();
                for l in &lines {
                    writeln!(out, "{}\x1b[K", fit(l, width))?;
                }
                write!(out, "\x1b[J")?;
                drawn = lines.len();
            } else {
                for l in &lines {
                    writeln!(out, "{l}")?;
                }
            }
            out.flush()?;
            n += 1;
            if count.is_some_and(|c| n >= c) {
                break;
            }
            while started.elapsed() < WATCH_EVERY && !INTERRUPTED.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    })();
    if tty {
        let _ = write!(out, "\x1b[?25h");
        let _ = out.flush();
    }
    result.map(|()| 0)
}

/// The bar's ETA: unknown until something moved (while pushing is paused, say).
fn eta(state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write) {
    let _ = if state.pos() == 0 {
        write!(w, "unknown")
    } else {
        write!(w, "{}", human_secs(state.eta().as_secs()))
    };
}

/// The progress bar of `sync --wait`, drawn on standard error when it is a terminal; nothing
/// at all otherwise.
pub struct WaitBar {
    bar: Option<indicatif::ProgressBar>,
    start: Option<Transferred>,
    len: u64,
}

impl WaitBar {
    /// A bar when standard error is a terminal.
    pub fn new() -> WaitBar {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{bar:30}] {pos}/{len} files, {msg}, ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .with_key("eta", eta)
                .progress_chars("#>-"),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        WaitBar {
            bar,
            start: None,
            len: 0,
        }
    }

    /// Updates the bar from the summaries of the mounts waited on: files transferred since
    /// the wait began, of those plus what is still queued.
    pub fn update(&mut self, summaries: &[Summary]) {
        let Some(bar) = &self.bar else { return };
        let mut now = Transferred::default();
        let mut pending = 0;
        for s in summaries {
            now.files_uploaded += s.transferred.files_uploaded;
            now.bytes_uploaded += s.transferred.bytes_uploaded;
            now.files_downloaded += s.transferred.files_downloaded;
            now.bytes_downloaded += s.transferred.bytes_downloaded;
            pending += s.queued.saturating_sub(s.failed);
        }
        let start = *self.start.get_or_insert(now);
        let files = now.files().saturating_sub(start.files());
        let bytes = now.bytes().saturating_sub(start.bytes());
        self.len = self.len.max(files + pending);
        bar.set_length(self.len);
        bar.set_position(files);
        bar.set_message(format!("{} sent", human_bytes(bytes)));
    }

    /// Takes the bar off the terminal, before anything else is printed there.
    pub fn clear(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Default for WaitBar {
    fn default() -> Self {
        WaitBar::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_successive_summaries() {
        let mut r = Rates::default();
        let t0 = Instant::now();
        let t = |up: u64, files: u64| Transferred {
            files_uploaded: files,
            bytes_uploaded: up,
            ..Default::default()
        };
        assert_eq!(r.add(t0, t(0, 0)), Rate::default());
        let rate = r.add(t0 + Duration::from_secs(2), t(2000, 4));
        assert_eq!((rate.up, rate.files), (1000.0, 2.0));
        // Old samples leave the window.
        for s in 3..20 {
            r.add(t0 + Duration::from_secs(s), t(2000, 4));
        }
        assert_eq!(r.add(t0 + Duration::from_secs(20), t(2000, 4)).up, 0.0);
    }

    #[test]
    fn lines_fit_the_terminal() {
        assert_eq!(fit("abcdef", Some(4)), "abc");
        assert_eq!(fit("abc", Some(4)), "abc");
        assert_eq!(fit("abcdef", None), "abcdef");
    }

    #[test]
    fn a_plain_line_has_every_field_and_no_escape() {
        let s = Summary {
            queued: 3,
            in_flight: 1,
            initial_sync: Some(crate::sync::progress::InitialSync {
                files_done: 1,
                files_total: 4,
                bytes_done: 1024,
                bytes_total: 4096,
                eta_ms: Some(3000),
                ..Default::default()
            }),
            ..Default::default()
        };
        let l = plain_line("/mnt/x", &s, Rate::default());
        for want in [
            "/mnt/x: 3 queued, 1 in flight, 0 failed",
            "up 0 B/s",
            "files/s",
            "online",
            "initial sync: 1 of 4 files, 1.0 KiB of 4.0 KiB, ETA 3s",
        ] {
            assert!(l.contains(want), "{want:?} in {l:?}");
        }
        assert!(!l.contains('\x1b'));
    }
}
