//! Wires the parts together: checks, state dir and its guards, journal, cloud, engine, FUSE
//! session, signals and a clean shutdown.

use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tracing::{info, warn};

use crate::config::Config;
use crate::fs::Fs;
use crate::fuse::FuseFs;
use crate::ignore::Ignore;
use crate::journal::Journal;
use crate::sync::parts::Parts;
use crate::sync::pull::Puller;
use crate::sync::push::Pusher;
use crate::sync::{Engine, EngineSetup, scan};

/// Finds an executable on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
        })
}

/// Checks what the kernel side needs before anything is created.
pub fn preflight(cfg: &Config) -> Result<()> {
    if !Path::new("/dev/fuse").exists() {
        bail!("cannot mount: /dev/fuse is missing (load the fuse module: modprobe fuse)");
    }
    if which("fusermount3").is_none() {
        bail!("cannot mount: fusermount3 is not installed (install the fuse3 package)");
    }
    let mp = &cfg.mountpoint;
    let meta = fs::metadata(mp).with_context(|| format!("cannot mount on {}", mp.display()))?;
    if !meta.is_dir() {
        bail!("cannot mount on {}: not a directory", mp.display());
    }
    if crate::mountinfo::is_mount_point(mp) {
        bail!(
            "cannot mount on {}: something is already mounted there (cloudsync unmount {} first)",
            mp.display(),
            mp.display()
        );
    }
    if fs::read_dir(mp)?.next().is_some() {
        bail!(
            "cannot mount on {}: the directory is not empty",
            mp.display()
        );
    }
    Ok(())
}

/// The state directory, locked for this daemon alone. Dropping it releases the lock.
pub struct StateDir {
    _lock: fs::File,
    /// Where it is.
    pub path: PathBuf,
}

/// This host as a journal records it: the machine id and the host name.
pub fn host_id() -> String {
    let mid = fs::read_to_string("/etc/machine-id").unwrap_or_default();
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}/{}", mid.trim(), host.trim())
}

/// Creates and locks the state dir, refusing a second daemon.
pub fn lock_state_dir(dir: &Path) -> Result<StateDir> {
    // Private from its first instant: the journal names every synced file.
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create the state dir {}", dir.display()))?;
    }
    match std::os::unix::fs::DirBuilderExt::mode(&mut fs::DirBuilder::new(), 0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot create the state dir {}", dir.display()));
        }
    }
    let _ = fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700));
    let lock_path = dir.join("lock");
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    // SAFETY: the fd is valid for the life of `f`.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let pid = fs::read_to_string(&lock_path).unwrap_or_default();
        bail!(
            "another cloudsync daemon (pid {}) is using the state dir {}; two daemons would corrupt its journal (unmount the other mount, or give this one its own --state-dir)",
            pid.trim(),
            dir.display()
        );
    }
    f.set_len(0)?;
    writeln!(f, "{}", std::process::id())?;
    Ok(StateDir {
        _lock: f,
        path: dir.to_path_buf(),
    })
}

/// Refuses a journal that belongs to another folder or was copied from another host.
pub fn guard_clone(j: &Journal, onprem: &Path) -> Result<()> {
    let here = host_id();
    let dir = onprem.to_string_lossy().to_string();
    match j.owner()?.map(|o| (o.onprem, o.host)) {
        None => j.set_owner(&dir, &here)?,
        Some((o, _)) if o != dir => bail!(
            "the state dir belongs to the on-premise folder {o}, not {dir}: it was copied or mixed up (give this mount its own --state-dir)"
        ),
        Some((_, Some(h))) if h != here => bail!(
            "the state dir was created on another host ({h}); a copied journal would corrupt sync (give this host its own --state-dir)"
        ),
        _ => {}
    }
    Ok(())
}

/// What a mount needs before anything runs: bad input is refused before anything is created
/// on disk, then the state dir is locked and the journal opened.
fn open_parts(cfg: &Config) -> Result<Opened> {
    preflight(cfg)?;
    let ignore = Ignore::new(&cfg.ignore)?;
    let cloud = crate::cloud::open(&cfg.cloud, &cfg.cloud_opts)?;
    let state = lock_state_dir(&cfg.state_dir)?;
    let journal = Arc::new(
        Journal::open(&state.path.join("journal.db"))
            .with_context(|| format!("cannot open the journal in {}", state.path.display()))?,
    );
    guard_clone(&journal, &cfg.onprem)?;
    // The status page's port is taken, and its token written, before anything is mounted:
    // a port in use is refused here.
    let web = cfg
        .status_addr
        .as_ref()
        .map(|a| crate::web::bind(a, &state.path))
        .transpose()?;
    // Multipart uploads (S3) are recorded in the journal, so a restart resumes them.
    cloud.use_upload_ledger(Arc::new(crate::sync::ledger::JournalLedger::new(
        journal.clone(),
        cfg.sets.clone(),
    )));
    Ok(Opened {
        state,
        journal,
        ignore,
        cloud,
        web,
    })
}

/// What [`open_parts`] made.
struct Opened {
    state: StateDir,
    journal: Arc<Journal>,
    ignore: Ignore,
    cloud: Arc<dyn crate::cloud::Cloud>,
    web: Option<crate::web::Bound>,
}

/// Unmounts `mountpoint` on SIGINT or SIGTERM, lazily when it is busy.
async fn unmount_on_signal(mountpoint: PathBuf, mut unmounter: crate::fuse::Unmounter) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
    info!(mountpoint = %mountpoint.display(), "signal received; unmounting");
    if let Err(e) = unmounter.unmount() {
        warn!(error = %e, "unmount failed; trying a lazy unmount");
        let c =
            std::ffi::CString::new(mountpoint.as_os_str().as_encoded_bytes()).unwrap_or_default();
        // SAFETY: c is a valid C string.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// How long a stop waits for uploads in flight before it leaves them queued for the next start.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// How often the `STATUS=` line is brought up to date.
const STATUS_EVERY: Duration = Duration::from_secs(2);

/// The `STATUS=` line of a mount now.
fn status_line(journal: &Journal, shared: &crate::sync::Shared) -> Result<String> {
    use std::sync::atomic::Ordering;
    let (queued, failed) = journal.queue_counts()?;
    let in_flight = shared
        .in_flight
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .len() as u64;
    let offline = shared
        .offline_since
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .map(|ms| crate::status::rfc3339(std::time::UNIX_EPOCH + Duration::from_millis(ms as u64)));
    let mut paused = Vec::new();
    if shared.push_paused.load(Ordering::Relaxed) {
        paused.push("push");
    }
    if shared.pull_paused.load(Ordering::Relaxed) {
        paused.push("pull");
    }
    if shared.auth_paused.load(Ordering::Relaxed) {
        paused.push("push (credentials refused)");
    }
    Ok(crate::notify::status_line(
        queued,
        failed,
        in_flight,
        offline.as_deref(),
        &paused,
    ))
}

/// Runs a mount until it is unmounted or the process gets SIGINT or SIGTERM. `ready` is called
/// once the mount answers requests (a probe from another thread got its answer from this
/// session), or with the reason it could not start; under systemd `READY=1` goes out at the
/// same moment.
pub fn run(cfg: Config, ready: impl FnOnce(Result<(), String>) + Send + 'static) -> Result<()> {
    use sd_notify::NotifyState;
    use std::sync::atomic::{AtomicBool, Ordering};

    let live = match open_parts(&cfg).and_then(|opened| start(&cfg, opened)) {
        Ok(live) => live,
        Err(e) => {
            crate::notify::send(&[NotifyState::Status(&format!("cannot start: {e:#}"))]);
            ready(Err(format!("{e:#}")));
            return Err(e);
        }
    };
    let Live {
        state,
        journal,
        cloud,
        rt,
        engine,
        writer,
        session,
        stop,
        pusher,
        puller,
    } = live;

    // Readiness and liveness: the probe asks the mount for its control attribute.
    // A watchdog is only worth keeping with someone to ping.
    let watchdog = crate::notify::watchdog().filter(|_| crate::notify::enabled());
    let beat_every = watchdog.map(crate::notify::heartbeat_period);
    let ended = Arc::new(AtomicBool::new(false));
    let fuse_beat = Arc::new(crate::notify::Heartbeat::default());
    let engine_beat = Arc::new(crate::notify::Heartbeat::default());
    let ready = Arc::new(std::sync::Mutex::new(Some(ready)));
    let first_status = status_line(&journal, &engine.shared).unwrap_or_default();
    // No status line goes out before READY=1.
    let announced = Arc::new(AtomicBool::new(false));
    let on_ready = {
        let ready = ready.clone();
        let announced = announced.clone();
        let first_status = first_status.clone();
        let mountpoint = cfg.mountpoint.clone();
        let onprem = cfg.onprem.clone();
        let state_dir = state.path.clone();
        move || {
            info!(
                onprem = %onprem.display(),
                mountpoint = %mountpoint.display(),
                cloud = %cloud,
                state_dir = %state_dir.display(),
                "mounted"
            );
            crate::notify::send(&[
                NotifyState::Ready,
                NotifyState::Status(&format!("mounted {}: {first_status}", mountpoint.display())),
            ]);
            announced.store(true, Ordering::Release);
            if let Some(f) = ready.lock().unwrap_or_else(|p| p.into_inner()).take() {
                f(Ok(()));
            }
        }
    };
    let probe = crate::notify::Probe {
        mountpoint: cfg.mountpoint.clone(),
        xattr: crate::status::XATTR_CONTROL,
        want: state
            .path
            .join("control.sock")
            .to_string_lossy()
            .into_owned(),
        fuse: fuse_beat.clone(),
        every: beat_every,
        stop: ended.clone(),
    };
    probe.spawn(on_ready)?;

    // The status line, kept current; each journal read is also the engine's sign of life.
    if crate::notify::enabled() {
        let journal = journal.clone();
        let engine = engine.clone();
        let beat = engine_beat.clone();
        let mountpoint = cfg.mountpoint.clone();
        let every = beat_every.map_or(STATUS_EVERY, |b| b.min(STATUS_EVERY));
        let stop = stop.clone();
        rt.spawn(async move {
            let mut last = first_status;
            loop {
                match status_line(&journal, &engine.shared) {
                    Ok(line) => {
                        beat.beat();
                        if line != last && announced.load(Ordering::Acquire) && !stop.is_cancelled()
                        {
                            crate::notify::send(&[NotifyState::Status(&format!(
                                "mounted {}: {line}",
                                mountpoint.display()
                            ))]);
                            last = line;
                        }
                    }
                    Err(e) => warn!(error = %e, "cannot read the queue for the status line"),
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        });
    }
    if let Some(interval) = watchdog {
        info!(interval = ?interval, "the service manager's watchdog is on");
        crate::notify::spawn_watchdog(
            interval,
            vec![("FUSE loop", fuse_beat), ("engine", engine_beat)],
            ended.clone(),
        )?;
    }

    let result = session.run();
    ended.store(true, Ordering::Relaxed);
    if let Some(f) = ready.lock().unwrap_or_else(|p| p.into_inner()).take() {
        f(Err(match &result {
            Ok(()) => "the mount went away before it answered a request".to_string(),
            Err(e) => format!("the FUSE session ended before it answered a request: {e}"),
        }));
    }
    info!("unmounted; stopping");
    crate::notify::send(&[
        NotifyState::Stopping,
        NotifyState::Status("unmounted; stopping"),
    ]);

    stop.cancel();
    engine.close();
    let _ = writer.join();
    // Uploads under way are given a moment to finish, so that they need not be sent again at
    // the next start; the service manager is told the stop takes longer meanwhile.
    let in_flight = || {
        engine
            .shared
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    };
    let waited = std::time::Instant::now();
    let mut told: Option<std::time::Instant> = None;
    while in_flight() > 0 && waited.elapsed() < STOP_WAIT {
        if told.is_none_or(|t| t.elapsed() >= Duration::from_secs(2)) {
            if told.is_none() {
                info!(
                    in_flight = in_flight(),
                    "waiting for uploads in flight before stopping"
                );
            }
            crate::notify::send(&[
                NotifyState::ExtendTimeoutUsec(5_000_000),
                NotifyState::Status(&format!(
                    "stopping: waiting for {} upload(s) in flight",
                    in_flight()
                )),
            ]);
            told = Some(std::time::Instant::now());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    rt.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(5), pusher).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), puller).await;
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    let (queued, failed) = journal.queue_counts().unwrap_or((0, 0));
    info!(
        queued,
        failed, "stopped; queued changes resume at the next mount"
    );
    drop(state);
    result.context("the FUSE session ended with an error")
}

/// A live mount: what its shutdown needs.
struct Live {
    state: StateDir,
    journal: Arc<Journal>,
    cloud: String,
    rt: tokio::runtime::Runtime,
    engine: Arc<Engine>,
    writer: std::thread::JoinHandle<()>,
    session: crate::fuse::Mounted,
    stop: tokio_util::sync::CancellationToken,
    pusher: tokio::task::JoinHandle<()>,
    puller: tokio::task::JoinHandle<()>,
}

/// Starts everything of a mount: the engine and its journal writer, the pusher, the FUSE
/// session, the puller, signal handling, the control socket and the scans.
fn start(cfg: &Config, opened: Opened) -> Result<Live> {
    let Opened {
        state,
        journal,
        ignore,
        cloud,
        web,
    } = opened;
    // Fewer malloc arenas: the daemon's threads allocate in bursts (scan, pull), and one arena
    // per thread would keep every burst's peak as resident memory.
    // SAFETY: mallopt only tunes the allocator; it is called before the other threads start.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("cloudsync-sync")
        .build()?;
    // FUSE handlers create with the mode the kernel already masked for the caller, so the
    // process umask is 0 from here on. The engine never relies on it: everything it makes in
    // ONPREM is created private and given an explicit mode (0666/0777 minus the umask the
    // daemon was started with), through the one door below.
    // SAFETY: umask has no preconditions.
    let start_umask = unsafe { libc::umask(0) };
    let onprem = Arc::new(
        crate::onprem::Onprem::open(&cfg.onprem, start_umask)
            .with_context(|| format!("cannot open {}", cfg.onprem.display()))?,
    );
    let wake = Arc::new(tokio::sync::Notify::new());
    let pull_now = Arc::new(tokio::sync::Notify::new());
    let socket = state.path.join("control.sock");
    let (engine, writer) = Engine::start(EngineSetup {
        journal: journal.clone(),
        ignore: ignore.clone(),
        sets: cfg.sets.clone(),
        push_delay: cfg.push_delay,
        wake_pusher: wake.clone(),
        pull_now: pull_now.clone(),
        control_socket: Some(socket.to_string_lossy().into_owned()),
        cloud_url: Some(cloud.url()),
    });
    // The watch of changes made beside the mount is opened first: a watch that cannot tell
    // the daemon's own renames from a user's (inotify) needs the FUSE handlers' renames.
    let watch = crate::beside::open(cfg.watch, &cfg.onprem);
    let echo = watch
        .as_ref()
        .filter(|w| w.kind() == crate::beside::Kind::Inotify)
        .map(|_| Arc::new(crate::beside::Echo::default()));
    let hooks: Arc<dyn crate::fs::SyncHooks> = match &echo {
        Some(echo) => Arc::new(crate::beside::EchoHooks {
            inner: engine.clone(),
            echo: echo.clone(),
        }),
        None => engine.clone(),
    };
    let fs_core = Arc::new(Fs::new(&cfg.onprem, hooks, cfg.mount.read_only)?);
    let _ = engine.shared.writers.set(fs_core.writers());
    let parts = Parts::of(
        &engine,
        cloud.clone(),
        onprem.clone(),
        fs_core.writers(),
        cfg.transfers,
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let pusher = Arc::new(
        Pusher::new(
            parts.clone(),
            wake.clone(),
            pull_now.clone(),
            cfg.push_delay,
        )
        .with_open_push_interval(cfg.open_push_interval),
    );
    let pusher_task = rt.spawn(pusher.run(stop.clone()));

    let fuse_fs = FuseFs::new(fs_core.clone(), &cfg.onprem, cfg.passthrough);
    let fsname = format!("cloudsync:{}", cfg.onprem.display());
    let mut session = crate::fuse::mount(fuse_fs, &cfg.mountpoint, &fsname, &cfg.mount)
        .with_context(|| format!("cannot mount on {}", cfg.mountpoint.display()))?;

    // The puller merges cloud changes and tells the kernel what it replaced.
    let invalidate: Arc<dyn crate::sync::pull::Invalidate> =
        Arc::new(session.invalidator(fs_core, &cfg.onprem));
    let pull_invalidate: Arc<dyn crate::sync::pull::Invalidate> = match &echo {
        Some(echo) => Arc::new(crate::beside::EchoInvalidate {
            inner: invalidate.clone(),
            echo: echo.clone(),
        }),
        None => invalidate.clone(),
    };
    let puller = Arc::new(Puller::new(parts, pull_invalidate, wake.clone()));
    let puller_task = rt.spawn(puller.clone().run(
        cfg.pull_interval,
        pull_now.clone(),
        stop.clone(),
    ));
    rt.spawn(unmount_on_signal(
        cfg.mountpoint.clone(),
        session.unmounter(),
    ));
    let control = Arc::new(crate::control::Control {
        engine: engine.clone(),
        journal: journal.clone(),
        cloud: cloud.clone(),
        onprem: onprem.clone(),
        wake_pusher: wake.clone(),
        pull_now,
        puller,
        setup: crate::control::Setup {
            pid: std::process::id(),
            onprem: cfg.onprem.clone(),
            mountpoint: cfg.mountpoint.clone(),
            cloud: cloud.url(),
            state_dir: state.path.clone(),
            user: cfg.cloud_opts.user.clone(),
            password_file: cfg.password_file.clone(),
            ca_file: cfg.cloud_opts.ca_file.clone(),
            passthrough: cfg.passthrough,
        },
    });
    // Bound before the mount is reported ready: a script's `cloudsync sync --wait` right
    // after `mount --daemon` returns reaches the daemon.
    let bound = {
        let _in_rt = rt.enter();
        crate::control::Control::bind(&socket)
    };
    if let Some(web) = web {
        let _in_rt = rt.enter();
        rt.spawn(crate::web::serve(web, control.clone()));
    }
    match bound {
        Ok(listener) => {
            rt.spawn(async move {
                if let Err(e) = control.serve(listener).await {
                    warn!(error = %e, "the control socket failed; cloudsync status/sync cannot reach this daemon");
                }
            });
        }
        Err(e) => {
            warn!(error = %e, socket = %socket.display(), "cannot open the control socket; cloudsync status/sync cannot reach this daemon")
        }
    }
    // The initial sync's progress goes to the log every few seconds while it runs.
    rt.spawn(crate::sync::progress::log_initial(
        engine.shared.clone(),
        journal.clone(),
        crate::sync::progress::log_every(),
        stop.clone(),
    ));
    // The start-up scan runs beside the mount, never holding it up; then a rescan every
    // `rescan_interval` finds changes made straight in ONPREM that no watch heard: the safety
    // net, less often while a watch hears them at once.
    let every = match (&watch, cfg.rescan_by_default) {
        (Some(_), true) => Some(crate::config::WATCHED_RESCAN_INTERVAL),
        _ => cfg.rescan_interval,
    };
    info!(
        watch = watch.as_ref().map_or("off", |w| w.kind().as_str()),
        rescan_every_s = every.map_or(0, |d| d.as_secs()),
        "changes made straight in the on-premise folder: watch and rescans"
    );
    if let Some(w) = watch {
        crate::beside::spawn(
            w,
            crate::beside::Beside {
                onprem: onprem.clone(),
                engine: engine.clone(),
                journal: journal.clone(),
                ignore: ignore.clone(),
                invalidate,
                echo,
                wake: wake.clone(),
                delay: cfg.push_delay,
                stop: stop.clone(),
            },
        )?;
    }
    scan::spawn(scan::Scans {
        onprem,
        journal: journal.clone(),
        ignore,
        engine: engine.clone(),
        wake,
        stop: stop.clone(),
        every,
        delay: cfg.push_delay,
    })?;
    Ok(Live {
        state,
        journal,
        cloud: cloud.describe(),
        rt,
        engine,
        writer,
        session,
        stop,
        pusher: pusher_task,
        puller: puller_task,
    })
}
