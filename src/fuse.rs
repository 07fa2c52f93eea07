//! The only file that names fuser types: a thin adapter from FUSE requests to [`crate::fs::Fs`].
//!
//! Each handler opens a span with the request id, inode and pid, calls the core, and replies
//! or maps the error. Passthrough backing ids live here too, because they are fuser objects:
//! one backing file per inode, shared by all its open handles, as the kernel requires.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tracing::{debug, info, warn};

use crate::fs::{Attr, Ctx, Fs, FsError, Kind, SetAttr, SetTime};

/// How long the kernel may cache attributes and names. Changes made straight in the
/// on-premise folder show up after at most this long.
const TTL: Duration = Duration::from_secs(1);

/// Flags of every file open. `FOPEN_NOFLUSH`: `close` need not wait for a FLUSH round trip,
/// since data is in the on-premise file already and locks are kept by the kernel (the daemon
/// implements no lock operations). Data the kernel caches for write-back is still written
/// before `close` returns.
const OPEN_FLAGS: FopenFlags = FopenFlags::FOPEN_NOFLUSH;

#[derive(Default)]
struct Backing {
    by_fh: HashMap<u64, Arc<BackingId>>,
    by_ino: HashMap<u64, Weak<BackingId>>,
    /// Handles served through the daemon while passthrough is on, with their inodes: the
    /// kernel refuses to mix the two kinds of handle on one inode. Few: setuid and setgid
    /// files only.
    daemon_fh: HashMap<u64, u64>,
}

/// The FUSE face of the filesystem.
pub struct FuseFs {
    fs: Arc<Fs>,
    onprem: std::path::PathBuf,
    want_passthrough: bool,
    passthrough: AtomicBool,
    /// The kernel left clearing setuid and setgid bits to the daemon.
    killpriv: AtomicBool,
    backing: Mutex<Backing>,
    /// Tells the kernel about attribute changes it did not ask for; set once mounted.
    notifier: Arc<std::sync::OnceLock<fuser::Notifier>>,
}

impl FuseFs {
    /// Wraps the core. `passthrough` asks for kernel passthrough when available.
    pub fn new(fs: Arc<Fs>, onprem: &Path, passthrough: bool) -> FuseFs {
        FuseFs {
            fs,
            onprem: onprem.to_path_buf(),
            want_passthrough: passthrough,
            passthrough: AtomicBool::new(false),
            killpriv: AtomicBool::new(false),
            backing: Mutex::new(Backing::default()),
            notifier: Arc::default(),
        }
    }

    fn backing(&self) -> std::sync::MutexGuard<'_, Backing> {
        self.backing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens (or reuses) the passthrough backing file of `ino`, opened as handle `o`.
    ///
    /// `None` serves the handle through the daemon: when passthrough is off, and for a setuid
    /// or setgid file while the daemon clears those bits (it must see the writes), unless the
    /// inode has passthrough handles already. An inode with handles served through the daemon
    /// gets no passthrough handle either.
    fn backing_for(
        &self,
        ino: u64,
        o: &crate::fs::Opened,
        make: impl FnOnce(&File) -> std::io::Result<BackingId>,
    ) -> Option<Arc<BackingId>> {
        if !self.passthrough.load(Ordering::Relaxed) {
            return None;
        }
        let fh = o.fh;
        let mut b = self.backing();
        if let Some(id) = b.by_ino.get(&ino).and_then(Weak::upgrade) {
            b.by_fh.insert(fh, id.clone());
            return Some(id);
        }
        if (o.setid && self.killpriv.load(Ordering::Relaxed))
            || b.daemon_fh.values().any(|&i| i == ino)
        {
            b.daemon_fh.insert(fh, ino);
            return None;
        }
        let file = self.fs.backing_file(fh).ok()?;
        match make(&file) {
            Ok(id) => {
                let id = Arc::new(id);
                b.by_ino.insert(ino, Arc::downgrade(&id));
                b.by_fh.insert(fh, id.clone());
                Some(id)
            }
            Err(e) => {
                warn!(error = %e, "FUSE passthrough refused; reads and writes now go through the daemon");
                self.passthrough.store(false, Ordering::Relaxed);
                None
            }
        }
    }

    /// True when the daemon must clear setuid and setgid bits for a change by the caller of
    /// `req` that the kernel does not flag (truncation, fallocate, copy_file_range). The kernel
    /// flags callers without CAP_FSETID; "not root" stands for that.
    fn unprivileged(&self, req: &Request) -> bool {
        self.killpriv.load(Ordering::Relaxed) && req.uid() != 0
    }

    /// Clears the setuid bit of the open file `fh`, and its setgid bit when group-executable,
    /// as a local filesystem does for an unprivileged change, and drops the kernel's cached
    /// mode.
    fn kill_suidgid(&self, ino: INodeNo, fh: FileHandle) {
        match self.fs.kill_suidgid(fh.0) {
            Ok(true) => {
                if let Some(n) = self.notifier.get() {
                    let _ = n.inval_inode(ino, -1, 0);
                }
            }
            Ok(false) => {}
            Err(e) => warn!(errno = e.0, "cannot clear setuid/setgid bits"),
        }
    }
}

fn ctx(req: &Request) -> Ctx {
    Ctx {
        uid: req.uid(),
        gid: req.gid(),
        pid: req.pid(),
    }
}

fn errno(e: FsError) -> Errno {
    Errno::from_i32(e.0)
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.ctime,
        kind: kind(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: a.blksize,
        flags: 0,
    }
}

fn kind(k: Kind) -> FileType {
    match k {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDevice => FileType::CharDevice,
        Kind::BlockDevice => FileType::BlockDevice,
    }
}

fn dtype(dt: u32) -> FileType {
    match dt as u8 {
        libc::DT_DIR => FileType::Directory,
        libc::DT_LNK => FileType::Symlink,
        libc::DT_FIFO => FileType::NamedPipe,
        libc::DT_SOCK => FileType::Socket,
        libc::DT_CHR => FileType::CharDevice,
        libc::DT_BLK => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

fn set_time(t: Option<TimeOrNow>) -> Option<SetTime> {
    t.map(|t| match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(s) => SetTime::At(s),
    })
}

macro_rules! span {
    ($op:literal, $req:expr, $ino:expr) => {
        tracing::debug_span!($op, req = $req.unique().0, ino = $ino, pid = $req.pid()).entered()
    };
}

impl Filesystem for FuseFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Not FUSE_ATOMIC_O_TRUNC: with it the kernel hands O_TRUNC to open and checks for a
        // running executable (ETXTBSY) only afterwards, so `open(O_RDONLY | O_TRUNC)` would
        // empty a program while it runs. Without it the kernel checks first, then truncates
        // through setattr.
        let _ = config.add_capabilities(
            InitFlags::FUSE_DO_READDIRPLUS
                | InitFlags::FUSE_READDIRPLUS_AUTO
                | InitFlags::FUSE_PARALLEL_DIROPS
                | InitFlags::FUSE_ASYNC_DIO,
        );
        // The daemon clears setuid and setgid bits itself (on writes it serves, and on
        // truncation, fallocate and copy_file_range), so the kernel need not ask for
        // `security.capability` before every write: without this, each write() of an open
        // file cost a GETXATTR round trip, passthrough or not. Files with those bits are not
        // opened for passthrough, whose writes the daemon never sees.
        if config
            .add_capabilities(InitFlags::FUSE_HANDLE_KILLPRIV_V2)
            .is_ok()
        {
            self.killpriv.store(true, Ordering::Relaxed);
        }
        let _ = config.set_max_write(1 << 20);
        if self.want_passthrough {
            match config.add_capabilities(InitFlags::FUSE_PASSTHROUGH) {
                Ok(()) => {
                    let _ = config.set_max_stack_depth(1);
                    self.passthrough.store(true, Ordering::Relaxed);
                    info!(
                        onprem = %self.onprem.display(),
                        "FUSE passthrough on: reads and writes of open files go straight to the on-premise folder"
                    );
                }
                Err(_) => info!(
                    "the kernel offers no FUSE passthrough; reads and writes go through the daemon"
                ),
            }
        }
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let _s = span!("lookup", req, parent.0);
        match self.fs.lookup(parent.0, name) {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), Generation(a.generation)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let _s = span!("getattr", req, ino.0);
        match self.fs.getattr(ino.0, fh.map(|f| f.0)) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let _s = span!("setattr", req, ino.0);
        let s = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: set_time(atime),
            mtime: set_time(mtime),
            fh: fh.map(|f| f.0),
            kill_suidgid: size.is_some() && self.unprivileged(req),
        };
        match self.fs.setattr(ino.0, s) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        let _s = span!("readlink", req, ino.0);
        match self.fs.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let _s = span!("mknod", req, parent.0);
        match self.fs.mknod(&ctx(req), parent.0, name, mode, rdev) {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), Generation(a.generation)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let _s = span!("mkdir", req, parent.0);
        match self.fs.mkdir(&ctx(req), parent.0, name, mode) {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), Generation(a.generation)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _s = span!("unlink", req, parent.0);
        match self.fs.unlink(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _s = span!("rmdir", req, parent.0);
        match self.fs.rmdir(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let _s = span!("symlink", req, parent.0);
        match self.fs.symlink(&ctx(req), parent.0, link_name, target) {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), Generation(a.generation)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let _s = span!("rename", req, parent.0);
        match self
            .fs
            .rename(parent.0, name, newparent.0, newname, flags.bits())
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let _s = span!("link", req, ino.0);
        match self.fs.link(ino.0, newparent.0, newname) {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), Generation(a.generation)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let _s = span!("open", req, ino.0);
        match self.fs.open(ino.0, flags.0) {
            Ok(o) => match self.backing_for(ino.0, &o, |f| reply.open_backing(f)) {
                Some(id) => reply.opened_passthrough(FileHandle(o.fh), OPEN_FLAGS, &id),
                None => reply.opened(FileHandle(o.fh), OPEN_FLAGS),
            },
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let _s = span!("read", req, ino.0);
        match self.fs.read(fh.0, offset, size) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let _s = span!("write", req, ino.0);
        if write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID) {
            self.kill_suidgid(ino, fh);
        }
        match self.fs.write(fh.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Data is already in the on-premise file; the push is queued at release.
        reply.ok();
    }

    fn release(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let _s = span!("release", req, ino.0);
        {
            let mut b = self.backing();
            b.by_fh.remove(&fh.0);
            b.daemon_fh.remove(&fh.0);
        }
        self.fs.release(fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _s = span!("fsync", req, ino.0);
        match self.fs.fsync(fh.0, datasync) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let _s = span!("opendir", req, ino.0);
        match self.fs.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let _s = span!("readdir", req, ino.0);
        match self.fs.readdir(fh.0, offset) {
            Ok(d) => {
                for (i, (name, id, dt)) in d.entries.iter().enumerate().skip(offset as usize) {
                    if reply.add(INodeNo(*id), (i + 1) as u64, dtype(*dt), name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let _s = span!("readdirplus", req, ino.0);
        let d = match self.fs.readdir(fh.0, offset) {
            Ok(d) => d,
            Err(e) => return reply.error(errno(e)),
        };
        for (i, (name, _, _)) in d.entries.iter().enumerate().skip(offset as usize) {
            let dot = name.as_bytes() == b"." || name.as_bytes() == b"..";
            let attr = if dot {
                self.fs.getattr(
                    if name.as_bytes() == b"." {
                        ino.0
                    } else {
                        d.entries[1].1
                    },
                    None,
                )
            } else {
                self.fs.readdirplus_entry(ino.0, name)
            };
            let Ok(a) = attr else { continue };
            if reply.add(
                INodeNo(a.ino),
                (i + 1) as u64,
                name,
                &TTL,
                &file_attr(&a),
                Generation(a.generation),
            ) {
                if !dot {
                    // The kernel did not take this entry, so it holds no lookup for it.
                    self.fs.forget(a.ino, 1);
                }
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let _s = span!("fsyncdir", req, ino.0);
        match self.fs.fsyncdir(ino.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.fs.statfs() {
            Ok(s) => reply.statfs(
                s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let _s = span!("setxattr", req, ino.0);
        match self.fs.setxattr(&ctx(req), ino.0, name, value, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let _s = span!("getxattr", req, ino.0);
        reply_xattr(self.fs.getxattr(ino.0, name), size, reply);
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let _s = span!("listxattr", req, ino.0);
        reply_xattr(self.fs.listxattr(ino.0), size, reply);
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _s = span!("removexattr", req, ino.0);
        match self.fs.removexattr(ino.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let _s = span!("access", req, ino.0);
        match self.fs.access(&ctx(req), ino.0, mask.bits()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let _s = span!("create", req, parent.0);
        match self.fs.create(&ctx(req), parent.0, name, mode, flags) {
            Ok((a, o)) => {
                let attr = file_attr(&a);
                match self.backing_for(a.ino, &o, |f| reply.open_backing(f)) {
                    Some(id) => reply.created_passthrough(
                        &TTL,
                        &attr,
                        Generation(a.generation),
                        FileHandle(o.fh),
                        OPEN_FLAGS,
                        &id,
                    ),
                    None => reply.created(
                        &TTL,
                        &attr,
                        Generation(a.generation),
                        FileHandle(o.fh),
                        OPEN_FLAGS,
                    ),
                }
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        // Terminal and filesystem ioctls have no meaning here: "not a typewriter", quietly.
        reply.error(Errno::from_i32(libc::ENOTTY));
    }

    fn fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let _s = span!("fallocate", req, ino.0);
        if self.unprivileged(req) {
            self.kill_suidgid(ino, fh);
        }
        match self.fs.fallocate(fh.0, offset, length, mode) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn lseek(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let _s = span!("lseek", req, ino.0);
        match self.fs.lseek(fh.0, offset, whence) {
            Ok(o) => reply.offset(o),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn copy_file_range(
        &self,
        req: &Request,
        ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: fuser::CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        let _s = span!("copy_file_range", req, ino_in.0);
        if self.unprivileged(req) {
            self.kill_suidgid(ino_out, fh_out);
        }
        match self
            .fs
            .copy_file_range(fh_in.0, offset_in, fh_out.0, offset_out, len)
        {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(e)),
        }
    }
}

fn reply_xattr(r: Result<Vec<u8>, FsError>, size: u32, reply: ReplyXattr) {
    match r {
        Ok(v) if size == 0 => reply.size(v.len() as u32),
        Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
        Ok(v) => reply.data(&v),
        Err(e) => {
            debug!(errno = e.0, "xattr");
            reply.error(errno(e))
        }
    }
}

/// A mounted FUSE session, not yet running.
pub struct Mounted {
    session: fuser::Session<FuseFs>,
}

/// Ends a running session from another thread (signals, shutdown).
pub struct Unmounter(fuser::SessionUnmounter);

impl Unmounter {
    /// Unmounts, which ends [`Mounted::run`].
    pub fn unmount(&mut self) -> std::io::Result<()> {
        self.0.unmount()
    }
}

/// Mounts `fs` at `mountpoint`. With `allow_other`, `default_permissions` is always on, so other
/// users never act with the daemon's rights.
pub fn mount(
    fs: FuseFs,
    mountpoint: &Path,
    fsname: &str,
    opts: &crate::config::MountOptions,
) -> std::io::Result<Mounted> {
    let mut options = vec![
        fuser::MountOption::FSName(fsname.to_string()),
        fuser::MountOption::Subtype("cloudsync".into()),
    ];
    let mut acl = fuser::SessionACL::Owner;
    if opts.allow_other {
        acl = fuser::SessionACL::All;
    }
    if opts.allow_other || opts.default_permissions {
        options.push(fuser::MountOption::DefaultPermissions);
    }
    if opts.read_only {
        options.push(fuser::MountOption::RO);
    }
    let mut cfg = fuser::Config::default();
    cfg.mount_options = options;
    cfg.acl = acl;
    cfg.n_threads = Some(4);
    cfg.clone_fd = true;
    let slot = fs.notifier.clone();
    let session = fuser::Session::new(fs, mountpoint, &cfg)?;
    let _ = slot.set(session.notifier());
    Ok(Mounted { session })
}

impl Mounted {
    /// A handle that unmounts the session from elsewhere.
    pub fn unmounter(&mut self) -> Unmounter {
        Unmounter(self.session.unmount_callable())
    }

    /// Tells the kernel about on-premise changes made behind its back (by the puller).
    pub fn invalidator(&self, fs: Arc<Fs>, onprem: &Path) -> KernelInvalidator {
        KernelInvalidator {
            notifier: self.session.notifier(),
            fs,
            onprem: onprem.to_path_buf(),
        }
    }

    /// Serves requests until the mount goes away.
    pub fn run(self) -> std::io::Result<()> {
        self.session.run()
    }
}

/// Drops the kernel's cached names and attributes for paths the puller changed.
pub struct KernelInvalidator {
    notifier: fuser::Notifier,
    fs: Arc<Fs>,
    onprem: std::path::PathBuf,
}

impl crate::sync::pull::Invalidate for KernelInvalidator {
    fn changed(&self, path: &str) {
        let parent = crate::cloud::parent(path);
        let name = path.rsplit('/').next().unwrap_or(path);
        let pdir = if parent.is_empty() {
            self.onprem.clone()
        } else {
            self.onprem.join(parent)
        };
        if let Ok(pm) = std::fs::symlink_metadata(&pdir) {
            let pid = INodeNo(self.fs.node_id(std::os::unix::fs::MetadataExt::ino(&pm)));
            // Errors only mean the kernel had nothing cached.
            let _ = self.notifier.inval_entry(pid, OsStr::new(name));
            let _ = self.notifier.inval_inode(pid, 0, 0);
        }
    }
}
