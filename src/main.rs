//! The `cloudsync` binary: parse flags, run the subcommand, map errors to exit codes.
//!
//! Exit codes: 0 success, 1 an error with a one-line reason on stderr (or, for `status` and
//! `sync --wait`, a failed item), 2 bad usage, 124 when `sync --wait` times out.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, Result, bail};
use clap::Parser;

use cloudsync::cli::{Cli, Command as Cmd, MountArgs, UnmountArgs};
use cloudsync::client;
use cloudsync::config::{Config, LogTarget};

/// True when standard error is the stream systemd connected to the journal: `JOURNAL_STREAM`
/// names its device and inode (a child that inherited the variable but not the stream, such as
/// a `--daemon` logging to a file, does not count).
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    // SAFETY: fd 2 stays open for the life of the process; ManuallyDrop never closes it.
    let f = std::mem::ManuallyDrop::new(unsafe {
        <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(2)
    });
    f.metadata()
        .is_ok_and(|m| dev.parse() == Ok(m.dev()) && ino.parse() == Ok(m.ino()))
}

fn init_logging(filter: &str, target: LogTarget) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // The FUSE library's own warning about unmounting an already unmounted filesystem, at every
    // clean unmount, is noise.
    let filter =
        std::env::var("RUST_LOG").unwrap_or_else(|_| format!("{filter},fuser::session=error"));
    let journal = match target {
        LogTarget::Stderr => false,
        LogTarget::Journal => true,
        LogTarget::Auto => stderr_is_journal(),
    };
    let mut refused = None;
    if journal {
        // Fields keep their names under a prefix of their own: CLOUDSYNC_PATH, CLOUDSYNC_OP,
        // CLOUDSYNC_CODE, CLOUDSYNC_ERROR...
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_field_prefix(Some("CLOUDSYNC".into()))
                    .with_syslog_identifier("cloudsync".into());
                let _ = tracing_subscriber::registry()
                    .with(tracing_subscriber::EnvFilter::new(&filter))
                    .with(layer)
                    .try_init();
                return;
            }
            Err(e) => refused = Some(e),
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    if let Some(e) = refused {
        tracing::warn!(error = %e, "cannot reach the systemd journal; logging to standard error");
    }
}

/// The configuration of a mount, after detaching the dead mount a killed daemon left at its
/// mount point, and only such a mount.
fn load_detaching_a_dead_mount(args: &MountArgs) -> Result<Config> {
    use cloudsync::stale_mount::{DeadMount, detach_if_dead, is_dead};
    let dead = match Config::load(args) {
        Ok(cfg) if !is_dead(&cfg.mountpoint) => return Ok(cfg),
        Ok(cfg) => cfg.mountpoint,
        Err(e) => match e.downcast_ref::<DeadMount>() {
            Some(d) => d.0.clone(),
            None => return Err(e),
        },
    };
    if detach_if_dead(&dead).with_context(|| {
        format!(
            "cannot mount: {} is a dead cloudsync mount that cannot be detached (run fusermount3 -uz on it as root)",
            dead.display()
        )
    })? {
        eprintln!(
            "cloudsync: detached the dead cloudsync mount at {} (its daemon had ended)",
            dead.display()
        );
    }
    Config::load(args)
}

fn mount(args: MountArgs, raw: &[String]) -> Result<()> {
    let cfg = load_detaching_a_dead_mount(&args)?;
    if args.daemon {
        return spawn_daemon(&cfg, raw);
    }
    init_logging(&cfg.log_level, cfg.log_target);
    // With --ready-fd (set by --daemon) readiness goes to the parent over stdout.
    let to_parent = args.ready_fd.is_some();
    cloudsync::mount::run(cfg, move |r| {
        if to_parent {
            let mut out = std::io::stdout();
            let _ = match &r {
                Ok(()) => writeln!(out, "READY"),
                Err(e) => writeln!(out, "ERROR {e}"),
            };
            let _ = out.flush();
            // Detach stdout so the parent's read ends.
            if let Ok(null) = std::fs::File::open("/dev/null") {
                use std::os::fd::AsRawFd;
                // SAFETY: both fds are valid; dup2 atomically replaces fd 1.
                unsafe { libc::dup2(null.as_raw_fd(), 1) };
            }
        }
    })
}

/// Starts the daemon in the background and waits until its mount is ready.
fn spawn_daemon(cfg: &Config, raw: &[String]) -> Result<()> {
    cloudsync::mount::preflight(cfg)?;
    std::fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("cannot create the state dir {}", cfg.state_dir.display()))?;
    let log_path = cfg.state_dir.join("cloudsync.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open the log {}", log_path.display()))?;
    let args: Vec<String> = raw.iter().filter(|a| *a != "--daemon").cloned().collect();
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(&args)
        .arg("--ready-fd=1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start the daemon")?;
    let out = child.stdout.take().context("no pipe to the daemon")?;
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line)?;
    match line.trim_end() {
        "READY" => {
            println!(
                "cloudsync: mounted {} (pid {}, log {})",
                cfg.mountpoint.display(),
                child.id(),
                log_path.display()
            );
            Ok(())
        }
        l if l.starts_with("ERROR ") => bail!("{}", &l[6..]),
        _ => {
            let _ = child.wait();
            bail!(
                "the daemon exited before the mount was ready; see {}",
                log_path.display()
            )
        }
    }
}

fn unmount(args: UnmountArgs) -> Result<()> {
    let mp = std::fs::canonicalize(&args.mountpoint)
        .with_context(|| format!("cannot unmount {}", args.mountpoint.display()))?;
    if !cloudsync::mountinfo::is_mount_point(&mp) {
        bail!("{} is not mounted", mp.display());
    }
    // A mount is busy for the instant of any request on its path, the daemon's own watchdog
    // probe included: a busy answer is asked again a few times before it counts.
    let mut tries = 0;
    let out = loop {
        let mut cmd = Command::new("fusermount3");
        cmd.arg("-u");
        if args.lazy {
            cmd.arg("-z");
        }
        let out = cmd
            .arg(&mp)
            .output()
            .context("cannot run fusermount3 (install the fuse3 package)")?;
        tries += 1;
        if out.status.success()
            || tries == 5
            || !String::from_utf8_lossy(&out.stderr).contains("busy")
        {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("busy") {
            bail!(
                "cannot unmount {}: files are still open in it (close them, or use cloudsync unmount --lazy)",
                mp.display()
            );
        }
        bail!("cannot unmount {}: {}", mp.display(), err.trim());
    }
    Ok(())
}

fn main() -> ExitCode {
    // Called by mount(8) for fstab entries: `mount.cloudsync SOURCE DIR -o OPTS`.
    let argv0 = std::env::args().next().unwrap_or_default();
    let name = Path::new(&argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if name.starts_with("mount.") {
        if std::env::var_os("PATH").is_none_or(|p| p.is_empty()) {
            // SAFETY: no other thread has started yet, so nothing reads the environment
            // while it changes.
            unsafe { std::env::set_var("PATH", cloudsync::mount_helper::DEFAULT_PATH) };
        }
        match cloudsync::mount_helper::translate(&args) {
            Ok(a) => args = a,
            Err(e) => {
                eprintln!("{e:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    let cli = Cli::parse_from(std::iter::once("cloudsync".to_string()).chain(args.iter().cloned()));
    if !matches!(cli.command, Cmd::Mount(_)) {
        // The short-lived commands end quietly when their output is cut off (`| head`), as
        // other tools do. The daemon keeps SIGPIPE ignored: a client hanging up on its control
        // socket must not kill it.
        // SAFETY: restoring a default signal disposition before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let r = match cli.command {
        Cmd::Mount(a) => mount(*a, &args).map(|_| 0),
        Cmd::Unmount(a) => unmount(a).map(|_| 0),
        Cmd::Status(a) => client::status(a),
        Cmd::Sync(a) => client::sync(a),
        Cmd::Conflicts(a) => client::conflicts(a),
        Cmd::Unsync(a) => client::unsync(a),
        Cmd::Pause(a) => client::pause(a, true),
        Cmd::Resume(a) => client::pause(a, false),
        Cmd::Doctor(a) => cloudsync::doctor::run(a),
    };
    match r {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("cloudsync: {e:#}");
            ExitCode::FAILURE
        }
    }
}
