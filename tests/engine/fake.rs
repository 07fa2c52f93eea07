//! A fake folder in the manner of the Nextcloud client's `FakeFolder`: the real engine (journal
//! writer, pusher, puller, start-up scan) over a temporary ONPREM and an in-process cloud, with
//! no FUSE in the loop.
//!
//! Local changes are made straight in ONPREM and reported to the engine through the same
//! [`SyncHooks`] calls the FUSE core makes; cloud changes are made behind the engine's back.
//! [`FakeFolder::sync`] then pushes until the queue is quiet, pulls, and repeats until neither
//! has anything left to do. Each "daemon life" has its own tokio runtime (one thread, as
//! deterministic as the engine's blocking work allows), so [`FakeFolder::crash`] can stop it
//! mid-push the way `kill -9` does, and [`FakeFolder::restart`] opens the same state dir again
//! with the start-up scan.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudsync::cloud::Cloud;
use cloudsync::cloud::dir::DirCloud;
use cloudsync::cloud::mem::{Hold, MemCloud};
use cloudsync::fs::SyncHooks;
use cloudsync::fs::handles::OpenWriters;
use cloudsync::ignore::Ignore;
use cloudsync::journal::{Journal, Op};
use cloudsync::onprem::Onprem;
use cloudsync::status::Status;
use cloudsync::sync::parts::Parts;
use cloudsync::sync::pull::{NoInvalidate, PullReport, Puller};
use cloudsync::sync::push::Pusher;
use cloudsync::sync::sets::{SetConfig, SyncSets};
use cloudsync::sync::{Engine, scan};
use cloudsync::sync::{EngineSetup, SyncError};

/// Which in-process cloud a fake folder syncs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The `file://` cloud over a temporary directory.
    Dir,
    /// The in-memory cloud, without folder ETags.
    Mem,
    /// The in-memory cloud with Nextcloud-style folder ETags.
    MemFolderEtags,
    /// The in-memory cloud listing whole trees in one pass, as an object store does.
    MemTrees,
    /// The in-memory cloud with folder ETags and stable item ids, as Nextcloud has them.
    MemIds,
    /// The in-memory cloud with content-hash file ETags (files of the same bytes share one)
    /// and no ids, as plain SabreDAV has them.
    MemContent,
}

/// How a fake folder is set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// The cloud.
    pub backend: Backend,
    /// `[[sync_set]]` tables; none means the whole folder.
    pub sets: Vec<SetConfig>,
    /// Extra ignore patterns.
    pub ignore: Vec<String>,
    /// Parallel transfers.
    pub transfers: usize,
}

impl Options {
    /// The whole folder synced with `backend`, four transfers at once.
    pub fn new(backend: Backend) -> Options {
        Options {
            backend,
            sets: Vec::new(),
            ignore: Vec::new(),
            transfers: 4,
        }
    }
}

/// One daemon life: the engine's parts and the runtime they run on.
struct Life {
    rt: tokio::runtime::Runtime,
    engine: Arc<Engine>,
    writer: Option<std::thread::JoinHandle<()>>,
    pusher: Arc<Pusher>,
    puller: Arc<Puller>,
    journal: Arc<Journal>,
    writers: Arc<OpenWriters>,
}

/// The engine over a temporary ONPREM and an in-process cloud.
pub struct FakeFolder {
    _tmp: tempfile::TempDir,
    /// ONPREM.
    pub onprem: PathBuf,
    state: PathBuf,
    cloud_dir: PathBuf,
    /// The in-memory cloud, when it is the backend.
    pub mem: Option<Arc<MemCloud>>,
    cloud: Arc<dyn Cloud>,
    opts: Options,
    life: Option<Life>,
    ignore: Ignore,
}

/// The longest a sync may take before the harness calls it stuck.
const STUCK: Duration = Duration::from_secs(30);

/// Push and pull rounds after which a sync that still finds work is called stuck.
const MAX_ROUNDS: usize = 25;

impl FakeFolder {
    /// A fresh, empty fake folder with `opts`; `init` files (path, content) are made in ONPREM
    /// before the engine starts, so the start-up scan finds them.
    pub fn new(opts: Options, init: &[(&str, &str)]) -> FakeFolder {
        let tmp = tempfile::tempdir().unwrap();
        let onprem = tmp.path().join("onprem");
        let state = tmp.path().join("state");
        let cloud_dir = tmp.path().join("cloud");
        for d in [&onprem, &state, &cloud_dir] {
            fs::create_dir(d).unwrap();
        }
        for (p, c) in init {
            let full = onprem.join(p);
            fs::create_dir_all(full.parent().unwrap()).unwrap();
            fs::write(full, c).unwrap();
        }
        let (mem, cloud): (Option<Arc<MemCloud>>, Arc<dyn Cloud>) = match opts.backend {
            Backend::Dir => (None, Arc::new(DirCloud::new(&cloud_dir).unwrap())),
            Backend::Mem
            | Backend::MemFolderEtags
            | Backend::MemTrees
            | Backend::MemIds
            | Backend::MemContent => {
                let m = Arc::new(match opts.backend {
                    Backend::Mem => MemCloud::new(),
                    Backend::MemTrees => MemCloud::listing_trees(),
                    Backend::MemIds => MemCloud::with_folder_etags().with_file_ids(),
                    Backend::MemContent => MemCloud::new().with_content_etags(),
                    _ => MemCloud::with_folder_etags(),
                });
                (Some(m.clone()), m)
            }
        };
        Self::assemble(tmp, onprem, state, cloud_dir, mem, cloud, opts)
    }

    /// A fresh fake folder syncing with `cloud`, a real one (a `file://` cloud or a server),
    /// whose items live in `cloud_dir` on disk (for [`FakeFolder::cloud_tree`] and the cloud
    /// changes made behind the engine's back). `init` is made in ONPREM first.
    pub fn with_cloud(
        opts: Options,
        cloud: Arc<dyn Cloud>,
        cloud_dir: PathBuf,
        init: &[(&str, &str)],
    ) -> FakeFolder {
        let tmp = tempfile::tempdir().unwrap();
        let onprem = tmp.path().join("onprem");
        let state = tmp.path().join("state");
        for d in [&onprem, &state] {
            fs::create_dir(d).unwrap();
        }
        for (p, c) in init {
            let full = onprem.join(p);
            fs::create_dir_all(full.parent().unwrap()).unwrap();
            fs::write(full, c).unwrap();
        }
        Self::assemble(tmp, onprem, state, cloud_dir, None, cloud, opts)
    }

    fn assemble(
        tmp: tempfile::TempDir,
        onprem: PathBuf,
        state: PathBuf,
        cloud_dir: PathBuf,
        mem: Option<Arc<MemCloud>>,
        cloud: Arc<dyn Cloud>,
        opts: Options,
    ) -> FakeFolder {
        // `ENGINE_LOG=debug` shows what the engine did, test by test.
        if let Ok(filter) = std::env::var("ENGINE_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let ignore = Ignore::new(&opts.ignore).unwrap();
        let mut ff = FakeFolder {
            _tmp: tmp,
            onprem,
            state,
            cloud_dir,
            mem,
            cloud,
            opts,
            life: None,
            ignore,
        };
        ff.start();
        ff
    }

    /// Starts a daemon life on the state dir: the journal writer, the start-up scan, the
    /// pusher and the puller, wired as `mount::run` wires them.
    fn start(&mut self) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let journal = Arc::new(Journal::open(&self.state.join("journal.db")).unwrap());
        let sets = SyncSets::from_config(&self.opts.sets, &self.onprem).unwrap();
        let onprem = Arc::new(Onprem::open(&self.onprem, 0o022).unwrap());
        let wake = Arc::new(tokio::sync::Notify::new());
        let pull_now = Arc::new(tokio::sync::Notify::new());
        let (engine, writer) = Engine::start(EngineSetup {
            journal: journal.clone(),
            ignore: self.ignore.clone(),
            sets,
            push_delay: Duration::ZERO,
            wake_pusher: wake.clone(),
            pull_now: pull_now.clone(),
            control_socket: None,
            cloud_url: Some(self.cloud.url()),
        });
        let writers = Arc::new(OpenWriters::default());
        let parts = Parts::of(
            &engine,
            self.cloud.clone(),
            onprem.clone(),
            writers.clone(),
            self.opts.transfers,
        );
        let pusher = Arc::new(Pusher::new(
            parts.clone(),
            wake.clone(),
            pull_now,
            Duration::ZERO,
        ));
        // As `mount::run` does: the puller (which settles a cloud move a crash cut short)
        // before the start-up scan.
        let puller = Arc::new(Puller::new(parts, Arc::new(NoInvalidate), wake));
        scan::scan(&onprem, &journal, &self.ignore, &|p| engine.syncable(p), 0).unwrap();
        self.life = Some(Life {
            rt,
            engine,
            writer: Some(writer),
            pusher,
            puller,
            journal,
            writers,
        });
    }

    fn life(&self) -> &Life {
        self.life.as_ref().expect("the engine is running")
    }

    /// The files open for writing, as the FUSE core registers them.
    pub fn writers(&self) -> &Arc<OpenWriters> {
        &self.life().writers
    }

    /// The engine, as the FUSE core sees it.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.life().engine
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<Journal> {
        &self.life().journal
    }

    /// The cloud files the puller fetched in this daemon life (downloads, and the fetches a
    /// conflict makes).
    pub fn gets(&self) -> u64 {
        self.life()
            .puller
            .gets
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// True when the cloud has an item (file or folder) at `p`.
    pub fn cloud_has(&self, p: &str) -> bool {
        self.cloud_tree().contains_key(p)
    }

    /// A clean stop: the journal writer commits what it heard; nothing is cut short.
    fn stop(&mut self) {
        if let Some(mut life) = self.life.take() {
            life.engine.close();
            if let Some(w) = life.writer.take() {
                w.join().unwrap();
            }
            life.rt.shutdown_timeout(Duration::from_secs(5));
        }
    }

    /// Stops the daemon and starts it again on the same state dir.
    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }

    /// Kills the daemon the way `kill -9` does, `after` into a push: transfers under way are
    /// dropped at their next await, whatever they sent stays sent, and whatever they had not
    /// written to the journal is not there. Then starts it again.
    pub fn crash(&mut self, after: Duration) {
        self.flush();
        if let Some(mut life) = self.life.take() {
            let p = life.pusher.clone();
            let _ = life
                .rt
                .block_on(async { tokio::time::timeout(after, p.push_until_quiet()).await });
            // Tasks still under way die with the runtime.
            life.rt.shutdown_background();
            life.engine.close();
            if let Some(w) = life.writer.take() {
                w.join().unwrap();
            }
        }
        self.start();
    }

    // ---- local changes, reported as the FUSE core reports them ----

    fn full(&self, p: &str) -> PathBuf {
        self.onprem.join(p)
    }

    /// Makes the missing folders above `p`, reporting each.
    fn local_parents(&self, p: &str, report: bool) {
        let mut at = String::new();
        let parts: Vec<&str> = p.split('/').collect();
        for seg in &parts[..parts.len() - 1] {
            at = cloudsync::cloud::join(&at, seg);
            if !self.full(&at).is_dir() {
                fs::create_dir(self.full(&at)).unwrap();
                if report {
                    self.engine().changed(Op::Mkdir, &at);
                }
            }
        }
    }

    /// Writes a file as an editor would through the mount (create or truncate, write).
    pub fn write(&self, p: &str, content: &str) {
        self.write_as(p, content, true);
    }

    /// Writes a file; with `report` false, the change is never heard (lost with a killed
    /// daemon, or made behind the mount's back) and only a scan finds it.
    pub fn write_as(&self, p: &str, content: &str, report: bool) {
        self.local_parents(p, report);
        let existed = self.full(p).exists();
        fs::write(self.full(p), content).unwrap();
        if report {
            let op = if existed { Op::Modify } else { Op::Create };
            self.engine().changed(op, p);
        }
    }

    /// Makes a folder (and its parents).
    pub fn mkdir(&self, p: &str) {
        self.local_parents(&format!("{p}/x"), true);
    }

    /// Deletes a file or a folder with everything in it, deepest first, reporting each.
    pub fn remove(&self, p: &str) -> bool {
        self.remove_as(p, true)
    }

    /// [`FakeFolder::remove`], heard or not.
    pub fn remove_as(&self, p: &str, report: bool) -> bool {
        let full = self.full(p);
        let Ok(m) = fs::symlink_metadata(&full) else {
            return false;
        };
        if m.is_dir() {
            let mut names: Vec<String> = fs::read_dir(&full)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for n in names {
                self.remove_as(&format!("{p}/{n}"), report);
            }
            fs::remove_dir(&full).unwrap();
        } else {
            fs::remove_file(&full).unwrap();
        }
        if report {
            self.engine().changed(Op::Delete, p);
        }
        true
    }

    /// Renames `from` over `to` (making `to`'s folders first), as `rename(2)` through the
    /// mount; false when `from` is missing or the rename is refused.
    pub fn rename(&self, from: &str, to: &str) -> bool {
        self.rename_as(from, to, true)
    }

    /// [`FakeFolder::rename`], heard or not.
    pub fn rename_as(&self, from: &str, to: &str, report: bool) -> bool {
        if !self.full(from).exists() {
            return false;
        }
        self.local_parents(to, report);
        if fs::rename(self.full(from), self.full(to)).is_err() {
            return false;
        }
        if report {
            self.engine().renamed(from, to);
        }
        true
    }

    // ---- cloud changes, behind the engine's back ----

    /// Writes a cloud file, making its folders.
    pub fn cloud_write(&self, p: &str, content: &str) {
        match &self.mem {
            Some(m) => m.write(p, content.as_bytes()),
            None => {
                let full = self.cloud_dir.join(p);
                fs::create_dir_all(full.parent().unwrap()).unwrap();
                fs::write(full, content).unwrap();
            }
        }
    }

    /// Makes a cloud folder.
    pub fn cloud_mkdir(&self, p: &str) {
        match &self.mem {
            Some(m) => m.mkdir_direct(p),
            None => fs::create_dir_all(self.cloud_dir.join(p)).unwrap(),
        }
    }

    /// Deletes a cloud item; false when there was none.
    pub fn cloud_remove(&self, p: &str) -> bool {
        match &self.mem {
            Some(m) => m.remove(p),
            None => {
                let full = self.cloud_dir.join(p);
                match fs::symlink_metadata(&full) {
                    Ok(m) if m.is_dir() => fs::remove_dir_all(full).is_ok(),
                    Ok(_) => fs::remove_file(full).is_ok(),
                    Err(_) => false,
                }
            }
        }
    }

    /// Moves a cloud item over whatever is at `to`; false when `from` is missing.
    pub fn cloud_rename(&self, from: &str, to: &str) -> bool {
        match &self.mem {
            Some(m) => m.rename_direct(from, to),
            None => {
                let to = self.cloud_dir.join(to);
                fs::create_dir_all(to.parent().unwrap()).unwrap();
                fs::rename(self.cloud_dir.join(from), to).is_ok()
            }
        }
    }

    // ---- driving the engine ----

    /// Waits until every change heard is in the journal.
    pub fn flush(&self) {
        let t = Instant::now();
        while !self.engine().shared.all_flushed() {
            assert!(t.elapsed() < STUCK, "the journal writer is stuck");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Pushes until the queue is quiet; returns the entries started.
    pub fn push(&self) -> usize {
        self.flush();
        let life = self.life();
        let p = life.pusher.clone();
        life.rt
            .block_on(async { tokio::time::timeout(STUCK, p.push_until_quiet()).await })
            .expect("the pusher never went quiet")
    }

    /// One pull, unless pulling is paused (as `Puller::run` skips it).
    pub fn pull(&self) -> Option<Result<PullReport, SyncError>> {
        self.flush();
        let life = self.life();
        let sh = &life.engine.shared;
        if sh.pull_paused.load(std::sync::atomic::Ordering::Relaxed)
            || sh.auth_paused.load(std::sync::atomic::Ordering::Relaxed)
        {
            return None;
        }
        let p = life.puller.clone();
        let r = life
            .rt
            .block_on(async { tokio::time::timeout(STUCK, p.pull_counted()).await })
            .expect("a pull never ended");
        self.flush();
        Some(r)
    }

    /// One pull whose read `hold` is held once it has taken its snapshot; meanwhile the
    /// pusher pushes until the queue is quiet, then the read answers and the pull goes on.
    pub fn pull_while_pushing(&self, hold: &Arc<Hold>) -> Result<PullReport, SyncError> {
        self.flush();
        let life = self.life();
        let (puller, pusher, hold) = (life.puller.clone(), life.pusher.clone(), hold.clone());
        let r = life.rt.block_on(async move {
            let pull = tokio::spawn(async move { puller.pull_counted().await });
            let t = Instant::now();
            while !hold.reached() {
                assert!(t.elapsed() < STUCK, "the pull never made the held read");
                if pull.is_finished() {
                    panic!("the pull ended before the held read: {:?}", pull.await);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tokio::time::timeout(STUCK, pusher.push_until_quiet())
                .await
                .expect("the pusher never went quiet");
            hold.release();
            tokio::time::timeout(STUCK, pull)
                .await
                .expect("a pull never ended")
                .expect("the pull panicked")
        });
        self.flush();
        r
    }

    /// Lets time pass: every retry and every delayed change is due now.
    pub fn time_passes(&self) {
        self.journal().expedite().unwrap();
    }

    /// Pushes and pulls, letting retry waits pass, until neither has anything left to do or
    /// the engine has stopped itself (after a 401). Panics when that never happens.
    pub fn sync(&self) -> usize {
        for round in 1..=MAX_ROUNDS {
            let pushed = self.push();
            let waiting = self.journal().next_due().unwrap().is_some();
            let stopped = self
                .engine()
                .shared
                .auth_paused
                .load(std::sync::atomic::Ordering::Relaxed);
            if stopped {
                return round;
            }
            let pulled = match self.pull() {
                Some(Ok(r)) => r.downloaded + r.conflicts + r.other,
                Some(Err(e)) if e.is_transient() => 1,
                Some(Err(e)) => panic!("pull failed: {e}"),
                None => 0,
            };
            if waiting {
                self.time_passes();
            }
            let queued = self.journal().next_due().unwrap().is_some();
            if pushed == 0 && pulled == 0 && !waiting && !queued {
                return round;
            }
        }
        panic!(
            "no quiet after {MAX_ROUNDS} push and pull rounds\n{}",
            self.describe()
        );
    }

    // ---- looking at both sides ----

    /// The status of an on-premise path, as `user.cloudsync.status` shows it, with the error.
    pub fn status(&self, p: &str) -> (Status, Option<String>) {
        let m = fs::symlink_metadata(self.full(p)).unwrap();
        self.engine().status(p, &m)
    }

    /// Every on-premise item: files with content, folders with `None`.
    pub fn local_tree(&self) -> BTreeMap<String, Option<Vec<u8>>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![String::new()];
        while let Some(dir) = stack.pop() {
            for de in fs::read_dir(self.full(&dir)).unwrap() {
                let de = de.unwrap();
                let p = cloudsync::cloud::join(&dir, &de.file_name().to_string_lossy());
                let ft = de.file_type().unwrap();
                if ft.is_dir() {
                    out.insert(p.clone(), None);
                    stack.push(p);
                } else if ft.is_file() {
                    out.insert(p, Some(fs::read(de.path()).unwrap()));
                }
            }
        }
        out
    }

    /// Every cloud item: files with content, folders with `None`.
    pub fn cloud_tree(&self) -> BTreeMap<String, Option<Vec<u8>>> {
        if let Some(m) = &self.mem {
            return m.snapshot();
        }
        let mut out = BTreeMap::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(dir) = stack.pop() {
            for de in fs::read_dir(self.cloud_dir.join(&dir)).unwrap() {
                let de = de.unwrap();
                let rel = dir.join(de.file_name());
                let p = rel.to_string_lossy().into_owned();
                let ft = de.file_type().unwrap();
                if ft.is_dir() {
                    out.insert(p, None);
                    stack.push(rel);
                } else if ft.is_file() {
                    out.insert(p, Some(fs::read(de.path()).unwrap()));
                }
            }
        }
        out
    }

    /// True for a name that stays on-premise: excluded names, conflict copies among them.
    pub fn stays_local(&self, p: &str) -> bool {
        self.ignore.path_excluded(p)
    }

    /// The synced files of both sides: no excluded name, no conflict copy, and on-premise no
    /// file the cloud deleted and the set keeps (`DELETED_ON_CLOUD`).
    pub fn synced_files(&self) -> (BTreeMap<String, Vec<u8>>, BTreeMap<String, Vec<u8>>) {
        let files = |t: BTreeMap<String, Option<Vec<u8>>>| -> BTreeMap<String, Vec<u8>> {
            t.into_iter()
                .filter(|(p, _)| !self.stays_local(p))
                .filter_map(|(p, c)| c.map(|c| (p, c)))
                .collect()
        };
        let local = files(self.local_tree())
            .into_iter()
            .filter(|(p, _)| {
                !self
                    .status(p)
                    .1
                    .is_some_and(|e| e.starts_with("DELETED_ON_CLOUD"))
            })
            .collect();
        (local, files(self.cloud_tree()))
    }

    /// Asserts that both sides hold the same files, apart from what stays on-premise, and that
    /// the root reads `synced` (or `failed`, when `failed_ok`).
    pub fn assert_converged(&self, failed_ok: bool) {
        let (local, cloud) = self.synced_files();
        assert!(local == cloud, "the two sides differ\n{}", self.describe());
        let (root, _) = self.status("");
        assert!(
            root == Status::Synced || (failed_ok && root == Status::Failed),
            "the root reads {root:?}\n{}",
            self.describe()
        );
    }

    /// Every piece of content on either side, conflict copies included.
    pub fn all_contents(&self) -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = self.local_tree().into_values().flatten().collect();
        v.extend(self.cloud_tree().into_values().flatten());
        v
    }

    /// The paths of the on-premise conflict copies.
    pub fn conflict_copies(&self) -> Vec<String> {
        self.local_tree()
            .into_keys()
            .filter(|p| cloudsync::sync::reconcile::is_conflict_name(p.rsplit('/').next().unwrap()))
            .collect()
    }

    /// Both trees and the queue, for failure messages.
    pub fn describe(&self) -> String {
        let show = |t: BTreeMap<String, Option<Vec<u8>>>| {
            t.into_iter()
                .map(|(p, c)| match c {
                    Some(c) => format!("  {p} = {:?}", String::from_utf8_lossy(&c)),
                    None => format!("  {p}/"),
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let queue = self
            .journal()
            .queue()
            .map(|q| {
                q.iter()
                    .map(|e| format!("  {e:?}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        format!(
            "backend: {:?}\non-premise:\n{}\ncloud:\n{}\nqueue:\n{queue}",
            self.opts.backend,
            show(self.local_tree()),
            show(self.cloud_tree())
        )
    }

    /// The ONPREM path of `p`.
    pub fn path(&self, p: &str) -> PathBuf {
        self.full(p)
    }

    /// The on-premise content of `p`.
    pub fn read(&self, p: &str) -> Option<String> {
        fs::read_to_string(self.full(p)).ok()
    }

    /// The cloud content of `p`.
    pub fn cloud_read(&self, p: &str) -> Option<String> {
        match &self.mem {
            Some(m) => m.read(p).map(|c| String::from_utf8(c).unwrap()),
            None => fs::read_to_string(self.cloud_dir.join(p)).ok(),
        }
    }
}

impl Drop for FakeFolder {
    fn drop(&mut self) {
        if let Some(mut life) = self.life.take() {
            life.engine.close();
            if let Some(w) = life.writer.take() {
                let _ = w.join();
            }
            life.rt.shutdown_background();
        }
    }
}
