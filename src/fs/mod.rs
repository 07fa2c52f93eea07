//! The filesystem core: POSIX semantics over the on-premise folder, testable without FUSE.
//!
//! Every operation is carried out on the on-premise folder at once, so the folder stays the
//! system of record. Each change that matters to the cloud is reported to [`SyncHooks`], which
//! queues it durably; the core never talks to the cloud itself. `fuse.rs` is a thin adapter that
//! calls these methods and replies.

pub mod error;
pub mod handles;
pub mod host;
pub mod inode;
pub mod xattr;

use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, File, Metadata};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use error::{FsError, FsResult};
use handles::{DirHandle, FileHandle, Handles, OpenWriters};
use host::HostPath;
use inode::{InodeTable, ROOT, rel_str};

use crate::journal::Op;

/// Who is asking: the caller of a FUSE request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ctx {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Process id.
    pub pid: u32,
}

/// What the sync engine needs to hear from the filesystem, and what it answers for xattrs.
pub trait SyncHooks: Send + Sync {
    /// Something happened to `path` (relative to the on-premise root).
    fn changed(&self, op: Op, path: &str);
    /// `from` was renamed to `to`.
    fn renamed(&self, from: &str, to: &str);
    /// A rename of `from` to `to` is about to happen (`true`), or is over and reported, or
    /// failed (`false`). Between the two, the engine knows that what it reads at or below
    /// either name may already be renamed while the queue does not know it yet.
    fn renaming(&self, _from: &str, _to: &str, _starts: bool) {}
    /// The virtual `user.cloudsync.*` attributes of `path`, given its current metadata.
    fn xattrs(&self, path: &str, meta: &Metadata) -> Vec<(&'static str, String)>;
    /// True when the existing item at `path` is read-only on-premise (a locked sync set).
    fn locked(&self, _path: &str) -> bool {
        false
    }
    /// A write by `caller` to the reserved attribute `name` (the full name, like
    /// `user.cloudsync.request`) of `path`: an errno when refused. The core has already checked
    /// that the caller may control the item (see [`Fs::setxattr`]).
    fn control(&self, _caller: &Ctx, _path: &str, _name: &str, _value: &[u8]) -> Result<(), i32> {
        Err(libc::EPERM)
    }
}

/// Hooks that ignore everything, for tests of the bare filesystem.
#[derive(Debug, Default)]
pub struct NoHooks;

impl SyncHooks for NoHooks {
    fn changed(&self, _: Op, _: &str) {}
    fn renamed(&self, _: &str, _: &str) {}
    fn xattrs(&self, _: &str, _: &Metadata) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

/// The kind of an inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Regular file.
    File,
    /// Folder.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
}

impl Kind {
    fn from_mode(mode: u32) -> Kind {
        match mode & libc::S_IFMT {
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            libc::S_IFCHR => Kind::CharDevice,
            libc::S_IFBLK => Kind::BlockDevice,
            _ => Kind::File,
        }
    }
}

/// Attributes of an inode, as FUSE reports them.
#[derive(Debug, Clone, Copy)]
pub struct Attr {
    /// Node id.
    pub ino: u64,
    /// Generation of the node id: changes when the on-premise inode number is reused.
    pub generation: u64,
    /// Size in bytes.
    pub size: u64,
    /// 512-byte blocks allocated.
    pub blocks: u64,
    /// Access time.
    pub atime: SystemTime,
    /// Modification time.
    pub mtime: SystemTime,
    /// Change time.
    pub ctime: SystemTime,
    /// Kind.
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky.
    pub perm: u16,
    /// Hard links.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number.
    pub rdev: u32,
    /// Preferred I/O size.
    pub blksize: u32,
}

fn ts(sec: i64, nsec: i64) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs((-sec) as u64) + Duration::from_nanos(nsec as u64)
    }
}

/// A device number as FUSE carries it (the kernel's 32-bit encoding) from a host `dev_t`.
fn fuse_rdev(dev: u64) -> u32 {
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

/// A host `dev_t` from a device number as FUSE carries it.
fn host_rdev(rdev: u32) -> libc::dev_t {
    let major = (rdev & 0xfff00) >> 8;
    let minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
    libc::makedev(major, minor)
}

/// A time to set with `utimensat`.
#[derive(Debug, Clone, Copy)]
pub enum SetTime {
    /// Now.
    Now,
    /// A given time.
    At(SystemTime),
}

/// Changes asked for by `setattr`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SetAttr {
    /// New mode bits.
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size.
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<SetTime>,
    /// New modification time.
    pub mtime: Option<SetTime>,
    /// The open file this applies to, if any.
    pub fh: Option<u64>,
    /// The caller may not keep the setuid and setgid bits of a file it truncates: clear them
    /// (setgid only with group execute), as a local filesystem would. The daemon changes files
    /// as root, so the on-premise filesystem would keep them.
    pub kill_suidgid: bool,
}

/// Result of `open` and `create`: the handle, and the file to hand the kernel for passthrough.
#[derive(Debug)]
pub struct Opened {
    /// Handle number.
    pub fh: u64,
    /// The open on-premise file.
    pub file: Arc<File>,
    /// The file is setuid, or setgid and group-executable: a write must clear those bits.
    pub setid: bool,
}

/// `mode` without the bits a write or truncate by an unprivileged caller clears: setuid, and
/// setgid when group-executable. `None` when there is nothing to clear.
fn without_setid(mode: u32) -> Option<u32> {
    let mut m = mode & 0o7777;
    m &= !libc::S_ISUID;
    if m & (libc::S_ISGID | libc::S_IXGRP) == libc::S_ISGID | libc::S_IXGRP {
        m &= !libc::S_ISGID;
    }
    (m != mode & 0o7777).then_some(m)
}

/// Filesystem statistics.
#[derive(Debug, Clone, Copy)]
pub struct StatFs {
    /// Total blocks.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Blocks free to unprivileged users.
    pub bavail: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Block size.
    pub bsize: u32,
    /// Longest name.
    pub namelen: u32,
    /// Fragment size.
    pub frsize: u32,
}

/// A rename announced to the hooks, until dropped.
struct Announced<'a> {
    hooks: &'a dyn SyncHooks,
    names: Option<(&'a str, &'a str)>,
}

impl<'a> Announced<'a> {
    fn new(hooks: &'a dyn SyncHooks, names: Option<(&'a str, &'a str)>) -> Self {
        if let Some((a, b)) = names {
            hooks.renaming(a, b, true);
        }
        Announced { hooks, names }
    }
}

impl Drop for Announced<'_> {
    fn drop(&mut self) {
        if let Some((a, b)) = self.names {
            self.hooks.renaming(a, b, false);
        }
    }
}

/// Flags of `rename`.
pub const RENAME_NOREPLACE: u32 = libc::RENAME_NOREPLACE;
/// Flags of `rename`.
pub const RENAME_EXCHANGE: u32 = libc::RENAME_EXCHANGE;

/// What `setattr` changes: an open file, or a path (a symlink itself, not its target).
enum Target<'a> {
    Open(&'a File),
    Path(&'a HostPath, CString),
}

impl Target<'_> {
    fn chown(&self, uid: u32, gid: u32) -> FsResult<()> {
        match self {
            // SAFETY: the fd is open for the life of the borrow; u32::MAX leaves an id unchanged.
            Target::Open(f) => error::check(unsafe { libc::fchown(f.as_raw_fd(), uid, gid) })?,
            // SAFETY: c is a valid C string; u32::MAX leaves an id unchanged.
            Target::Path(_, c) => error::check(unsafe { libc::lchown(c.as_ptr(), uid, gid) })?,
        };
        Ok(())
    }

    fn chmod(&self, mode: u32) -> FsResult<()> {
        match self {
            // SAFETY: the fd is open for the life of the borrow.
            Target::Open(f) => error::check(unsafe { libc::fchmod(f.as_raw_fd(), mode) })?,
            // SAFETY: c is a valid C string. A symlink itself has no mode: EOPNOTSUPP.
            Target::Path(_, c) => error::check(unsafe {
                libc::fchmodat(libc::AT_FDCWD, c.as_ptr(), mode, libc::AT_SYMLINK_NOFOLLOW)
            })?,
        };
        Ok(())
    }

    /// Clears the setuid bit, and the setgid bit when group-executable. True when it did.
    fn clear_setid(&self) -> FsResult<bool> {
        match without_setid(self.metadata()?.mode()) {
            Some(m) => self.chmod(m).map(|()| true),
            None => Ok(false),
        }
    }

    fn truncate(&self, size: u64) -> FsResult<()> {
        match self {
            Target::Open(f) => match f.set_len(size) {
                // A handle open only for reading: truncate the same inode through a new one.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EBADF)) => {
                    host::reopen(*f, libc::O_WRONLY)?.set_len(size)?
                }
                r => r?,
            },
            Target::Path(_, c) => {
                // SAFETY: c is a valid C string.
                error::check(unsafe { libc::truncate(c.as_ptr(), size as libc::off_t) })?;
            }
        }
        Ok(())
    }

    fn utimens(&self, times: [libc::timespec; 2]) -> FsResult<()> {
        match self {
            Target::Open(f) => {
                let fd = f.as_raw_fd();
                // SAFETY: fd is open for the life of the borrow; times holds two timespecs.
                error::check(unsafe { libc::futimens(fd, times.as_ptr()) })?
            }
            // SAFETY: c is a valid C string and times holds two timespecs.
            Target::Path(_, c) => error::check(unsafe {
                libc::utimensat(
                    libc::AT_FDCWD,
                    c.as_ptr(),
                    times.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            })?,
        };
        Ok(())
    }

    fn metadata(&self) -> FsResult<Metadata> {
        Ok(match self {
            Target::Open(f) => f.metadata()?,
            Target::Path(h, _) => fs::symlink_metadata(h)?,
        })
    }
}

/// A time for `utimensat`: none leaves it alone.
fn timespec(t: Option<SetTime>) -> libc::timespec {
    match t {
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        Some(SetTime::Now) => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        Some(SetTime::At(t)) => {
            let (sec, nsec) = match t.duration_since(UNIX_EPOCH) {
                Ok(d) => (d.as_secs() as i64, d.subsec_nanos() as i64),
                // Before 1970: whole seconds down, nanoseconds up.
                Err(e) => {
                    let d = e.duration();
                    let mut sec = -(d.as_secs() as i64);
                    let mut nsec = d.subsec_nanos() as i64;
                    if nsec > 0 {
                        sec -= 1;
                        nsec = 1_000_000_000 - nsec;
                    }
                    (sec, nsec)
                }
            };
            libc::timespec {
                tv_sec: sec as libc::time_t,
                tv_nsec: nsec as libc::c_long,
            }
        }
    }
}

/// The filesystem core.
pub struct Fs {
    root: PathBuf,
    inodes: InodeTable,
    handles: Handles,
    hooks: Arc<dyn SyncHooks>,
    read_only: bool,
    as_root: bool,
    /// The daemon's own user id: it may always control items (see [`Fs::setxattr`]).
    daemon_uid: u32,
}

impl std::fmt::Debug for Fs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fs").field("root", &self.root).finish()
    }
}

fn cstr(p: &Path) -> FsResult<CString> {
    Ok(CString::new(p.as_os_str().as_bytes())?)
}

fn check_name(name: &OsStr) -> FsResult<()> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') {
        return Err(FsError(libc::EINVAL));
    }
    if b.len() > 255 {
        return Err(FsError(libc::ENAMETOOLONG));
    }
    Ok(())
}

impl Fs {
    /// A filesystem over the on-premise folder `root`.
    pub fn new(root: &Path, hooks: Arc<dyn SyncHooks>, read_only: bool) -> std::io::Result<Fs> {
        let meta = fs::metadata(root)?;
        Ok(Fs {
            root: root.to_path_buf(),
            inodes: InodeTable::new(meta.ino()),
            handles: Handles::default(),
            hooks,
            read_only,
            // SAFETY: geteuid has no preconditions.
            as_root: unsafe { libc::geteuid() } == 0,
            // SAFETY: geteuid has no preconditions.
            daemon_uid: unsafe { libc::geteuid() },
        })
    }

    /// Which inodes are open for writing; shared with the sync engine.
    pub fn writers(&self) -> Arc<OpenWriters> {
        self.handles.writers.clone()
    }

    /// Number of open file handles (for shutdown reports).
    pub fn open_files(&self) -> usize {
        self.handles.open_files()
    }

    /// The node id of an on-premise inode number.
    pub fn node_id(&self, st_ino: u64) -> u64 {
        self.inodes.id_of(st_ino)
    }

    /// The on-premise relative path of a node, if the kernel still holds it.
    pub fn rel_path(&self, ino: u64) -> Option<PathBuf> {
        self.inodes.path(ino)
    }

    fn rel(&self, ino: u64) -> FsResult<PathBuf> {
        self.inodes.path(ino).ok_or(FsError(libc::ESTALE))
    }

    /// Names the on-premise file at `rel` for the kernel, however long its path.
    fn host(&self, rel: &Path) -> FsResult<HostPath> {
        Ok(host::resolve(&self.root, rel)?)
    }

    /// The host path of a node.
    fn node(&self, ino: u64) -> FsResult<HostPath> {
        self.host(&self.rel(ino)?)
    }

    fn child(&self, parent: u64, name: &OsStr) -> FsResult<(PathBuf, HostPath)> {
        check_name(name)?;
        let rel = self
            .inodes
            .child_path(parent, name)
            .ok_or(FsError(libc::ESTALE))?;
        let full = self.host(&rel)?;
        Ok((rel, full))
    }

    /// The host path of the folder that holds `rel`.
    fn parent_of(&self, rel: &Path) -> FsResult<HostPath> {
        self.host(rel.parent().unwrap_or(Path::new("")))
    }

    /// An open file of a node that has no name any more (unlinked while open).
    fn orphan(&self, ino: u64) -> FsResult<Arc<File>> {
        self.handles.file_of(ino).ok_or(FsError(libc::ESTALE))
    }

    fn writable(&self) -> FsResult<()> {
        if self.read_only {
            Err(FsError(libc::EROFS))
        } else {
            Ok(())
        }
    }

    /// Refuses changes to an item of a locked sync set.
    fn check_locked(&self, rel: &Path) -> FsResult<()> {
        match rel_str(rel) {
            Some(s) if !s.is_empty() && self.hooks.locked(s) => Err(FsError(libc::EACCES)),
            _ => Ok(()),
        }
    }

    fn report(&self, op: Op, rel: &Path) {
        if let Some(s) = rel_str(rel) {
            self.hooks.changed(op, s);
        }
    }

    /// Converts on-premise metadata to attributes.
    pub fn attr_of(&self, m: &Metadata) -> Attr {
        Attr {
            ino: self.inodes.id_of(m.ino()),
            generation: 0,
            size: m.size(),
            blocks: m.blocks(),
            atime: ts(m.atime(), m.atime_nsec()),
            mtime: ts(m.mtime(), m.mtime_nsec()),
            ctime: ts(m.ctime(), m.ctime_nsec()),
            kind: Kind::from_mode(m.mode()),
            perm: (m.mode() & 0o7777) as u16,
            nlink: m.nlink() as u32,
            uid: m.uid(),
            gid: m.gid(),
            rdev: fuse_rdev(m.rdev()),
            blksize: m.blksize() as u32,
        }
    }

    fn entry(&self, parent: u64, name: &OsStr, full: &Path) -> FsResult<Attr> {
        let m = fs::symlink_metadata(full)?;
        let mut a = self.attr_of(&m);
        a.generation = self.inodes.remember(a.ino, parent, name, m.created().ok());
        Ok(a)
    }

    /// New inodes belong to the caller, as on a local filesystem, when the daemon runs as root.
    ///
    /// The daemon creates them as root and hands them over. The group is the caller's, or the
    /// folder's when the folder is setgid (the kernel already gave it that one). Handing over a
    /// file clears its setuid and setgid bits, which the caller would have kept, so the mode it
    /// was created with is put back. `fd` is the new file when it is open.
    fn own(&self, ctx: &Ctx, rel: &Path, full: &Path, fd: Option<RawFd>) -> FsResult<()> {
        if !self.as_root || (ctx.uid == 0 && ctx.gid == 0) {
            return Ok(());
        }
        let pm = fs::metadata(self.parent_of(rel)?)?;
        let gid = if pm.mode() & libc::S_ISGID != 0 {
            u32::MAX
        } else {
            ctx.gid
        };
        let m = fs::symlink_metadata(full)?;
        let c = cstr(full)?;
        match fd {
            // SAFETY: the caller keeps fd open; -1 (u32::MAX) leaves the group unchanged.
            Some(fd) => error::check(unsafe { libc::fchown(fd, ctx.uid, gid) })?,
            // SAFETY: c is a valid C string; -1 (u32::MAX) leaves the group unchanged.
            None => error::check(unsafe { libc::lchown(c.as_ptr(), ctx.uid, gid) })?,
        };
        let special = m.mode() & (libc::S_ISUID | libc::S_ISGID);
        if special != 0 && !m.file_type().is_symlink() && !m.is_dir() {
            let mode = m.mode() & 0o7777;
            match fd {
                // SAFETY: the caller keeps fd open.
                Some(fd) => error::check(unsafe { libc::fchmod(fd, mode) })?,
                // SAFETY: c is a valid C string.
                None => error::check(unsafe { libc::chmod(c.as_ptr(), mode) })?,
            };
        }
        Ok(())
    }

    // ------------------------------------------------------------ names

    /// Looks up `name` in `parent`.
    pub fn lookup(&self, parent: u64, name: &OsStr) -> FsResult<Attr> {
        let (_, full) = self.child(parent, name)?;
        self.entry(parent, name, &full)
    }

    /// The kernel forgets `n` lookups of `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        self.inodes.forget(ino, n);
    }

    /// Attributes of `ino`. A file unlinked while open is still answered, from an open handle.
    pub fn getattr(&self, ino: u64, fh: Option<u64>) -> FsResult<Attr> {
        if let Some((f, _)) = fh.and_then(|fh| self.handles.file(fh)) {
            return Ok(self.attr_of(&f.metadata()?));
        }
        let m = match self.inodes.path(ino) {
            Some(rel) => fs::symlink_metadata(self.host(&rel)?)?,
            None => self.orphan(ino)?.metadata()?,
        };
        Ok(self.attr_of(&m))
    }

    /// chmod, chown, truncate and utimens.
    ///
    /// They act on the open file when the kernel names one, or when the node has no name any
    /// more (it was unlinked while open), and on the path otherwise. Ownership changes first:
    /// handing a file over clears its setuid and setgid bits, and a mode asked for in the same
    /// request must win.
    pub fn setattr(&self, ino: u64, s: SetAttr) -> FsResult<Attr> {
        self.writable()?;
        let rel = self.inodes.path(ino);
        if let Some(rel) = &rel {
            self.check_locked(rel)?;
        }
        let file = match s.fh.and_then(|fh| self.handles.file(fh)) {
            Some((f, _)) => Some(f),
            None if rel.is_none() => Some(self.orphan(ino)?),
            None => None,
        };
        let host = match (&file, &rel) {
            (None, Some(rel)) => Some(self.host(rel)?),
            _ => None,
        };
        let target = match (&file, &host) {
            (Some(f), _) => Target::Open(f),
            (None, Some(h)) => Target::Path(h, cstr(h)?),
            (None, None) => return Err(FsError(libc::ESTALE)),
        };
        if s.uid.is_some() || s.gid.is_some() {
            target.chown(s.uid.unwrap_or(u32::MAX), s.gid.unwrap_or(u32::MAX))?;
        }
        if let Some(mode) = s.mode {
            target.chmod(mode & 0o7777)?;
        }
        if let Some(size) = s.size {
            target.truncate(size)?;
            if s.kill_suidgid && s.mode.is_none() {
                target.clear_setid()?;
            }
            if let Some(rel) = &rel {
                self.report(Op::Modify, rel);
            }
        }
        if s.atime.is_some() || s.mtime.is_some() {
            target.utimens([timespec(s.atime), timespec(s.mtime)])?;
        }
        // New times, mode or owner move the ctime, which makes the status pending until the
        // pusher has looked (it compares content, so nothing is uploaded when only the
        // metadata changed).
        let meta_only = s.uid.is_some()
            || s.gid.is_some()
            || s.mode.is_some()
            || s.atime.is_some()
            || s.mtime.is_some();
        if meta_only
            && s.size.is_none()
            && let Some(rel) = &rel
        {
            self.report(Op::Modify, rel);
        }
        Ok(self.attr_of(&target.metadata()?))
    }

    /// The target of a symlink.
    pub fn readlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        Ok(fs::read_link(self.node(ino)?)?.into_os_string().into_vec())
    }

    /// Creates a special file or a regular file without opening it.
    pub fn mknod(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: &OsStr,
        mode: u32,
        rdev: u32,
    ) -> FsResult<Attr> {
        self.writable()?;
        let (rel, full) = self.child(parent, name)?;
        let c = cstr(&full)?;
        // SAFETY: c is a valid C string.
        error::check(unsafe { libc::mknod(c.as_ptr(), mode, host_rdev(rdev)) })?;
        self.own(ctx, &rel, &full, None)?;
        self.report(Op::Create, &rel);
        self.entry(parent, name, &full)
    }

    /// Creates a folder.
    pub fn mkdir(&self, ctx: &Ctx, parent: u64, name: &OsStr, mode: u32) -> FsResult<Attr> {
        self.writable()?;
        let (rel, full) = self.child(parent, name)?;
        let c = cstr(&full)?;
        // SAFETY: c is a valid C string.
        error::check(unsafe { libc::mkdir(c.as_ptr(), mode as libc::mode_t) })?;
        self.own(ctx, &rel, &full, None)?;
        self.report(Op::Mkdir, &rel);
        self.entry(parent, name, &full)
    }

    /// Removes a file, symlink or special file.
    pub fn unlink(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.writable()?;
        let (rel, full) = self.child(parent, name)?;
        let m = fs::symlink_metadata(&full)?;
        if m.is_dir() {
            return Err(FsError(libc::EISDIR));
        }
        self.check_locked(&rel)?;
        fs::remove_file(&full)?;
        self.inodes
            .unlinked(self.inodes.id_of(m.ino()), parent, name);
        self.report(Op::Delete, &rel);
        Ok(())
    }

    /// Removes an empty folder.
    pub fn rmdir(&self, parent: u64, name: &OsStr) -> FsResult<()> {
        self.writable()?;
        let (rel, full) = self.child(parent, name)?;
        let m = fs::symlink_metadata(&full)?;
        self.check_locked(&rel)?;
        let c = cstr(&full)?;
        // SAFETY: c is a valid C string.
        error::check(unsafe { libc::rmdir(c.as_ptr()) })?;
        self.inodes
            .unlinked(self.inodes.id_of(m.ino()), parent, name);
        self.report(Op::Delete, &rel);
        Ok(())
    }

    /// Creates a symlink.
    pub fn symlink(&self, ctx: &Ctx, parent: u64, name: &OsStr, target: &Path) -> FsResult<Attr> {
        self.writable()?;
        let (rel, full) = self.child(parent, name)?;
        std::os::unix::fs::symlink(target, &full)?;
        self.own(ctx, &rel, &full, None)?;
        self.report(Op::Create, &rel);
        self.entry(parent, name, &full)
    }

    /// Renames, with `RENAME_NOREPLACE` and `RENAME_EXCHANGE` honoured.
    pub fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
    ) -> FsResult<()> {
        self.writable()?;
        if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE) != 0 {
            return Err(FsError(libc::EINVAL));
        }
        let (rel, full) = self.child(parent, name)?;
        let (newrel, newfull) = self.child(newparent, newname)?;
        let m = fs::symlink_metadata(&full)?;
        let other = fs::symlink_metadata(&newfull).ok();
        self.check_locked(&rel)?;
        if other.is_some() {
            self.check_locked(&newrel)?;
        }
        if other.as_ref().is_some_and(|o| o.ino() == m.ino()) && flags & RENAME_EXCHANGE == 0 {
            // Two names of one file: POSIX says rename does nothing, and so does Linux.
            return Ok(());
        }
        let (a, b) = (cstr(&full)?, cstr(&newfull)?);
        // Announced until it is reported (or failed): see [`SyncHooks::renaming`].
        let _announced = Announced::new(&*self.hooks, rel_str(&rel).zip(rel_str(&newrel)));
        // SAFETY: a and b are valid C strings.
        error::check(unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                a.as_ptr(),
                libc::AT_FDCWD,
                b.as_ptr(),
                flags,
            )
        })?;
        let id = self.inodes.id_of(m.ino());
        if flags & RENAME_EXCHANGE != 0 {
            if let Some(o) = &other {
                let oid = self.inodes.id_of(o.ino());
                // Swap the two names through a placeholder.
                let tmp = OsString::from(format!(".cloudsync-exchange-{id}"));
                self.inodes.renamed(id, parent, name, u64::MAX, &tmp);
                self.inodes.renamed(oid, newparent, newname, parent, name);
                self.inodes.renamed(id, u64::MAX, &tmp, newparent, newname);
            }
            if let (Some(a), Some(b)) = (rel_str(&rel), rel_str(&newrel)) {
                let tmp = format!("{a}.cloudsync-exchange");
                self.hooks.renamed(a, &tmp);
                self.hooks.renamed(b, a);
                self.hooks.renamed(&tmp, b);
            }
            return Ok(());
        }
        if let Some(o) = &other {
            self.inodes
                .unlinked(self.inodes.id_of(o.ino()), newparent, newname);
        }
        self.inodes.renamed(id, parent, name, newparent, newname);
        match (rel_str(&rel), rel_str(&newrel)) {
            (Some(a), Some(b)) => self.hooks.renamed(a, b),
            (None, Some(b)) => self.hooks.changed(Op::Create, b),
            (Some(a), None) => self.hooks.changed(Op::Delete, a),
            (None, None) => {}
        }
        Ok(())
    }

    /// Makes a hard link.
    pub fn link(&self, ino: u64, newparent: u64, newname: &OsStr) -> FsResult<Attr> {
        self.writable()?;
        let src = self.node(ino)?;
        let (rel, full) = self.child(newparent, newname)?;
        fs::hard_link(&src, &full)?;
        self.report(Op::Create, &rel);
        self.entry(newparent, newname, &full)
    }

    // ------------------------------------------------------------ files

    fn open_path(&self, full: &Path, flags: i32, mode: u32) -> FsResult<File> {
        let c = cstr(full)?;
        // Never through a symlink: the kernel resolves those itself, and one put in the
        // on-premise folder behind its back must not lead outside.
        let flags = (flags & !libc::O_NOCTTY) | libc::O_CLOEXEC | libc::O_NOFOLLOW;
        // SAFETY: c is a valid C string; open returns a new fd we take ownership of.
        let fd = error::check(unsafe { libc::open(c.as_ptr(), flags, mode as libc::c_uint) })?;
        // SAFETY: fd was just returned by open and is owned by nobody else.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    fn register(&self, ino: u64, file: File, flags: i32) -> FsResult<Opened> {
        let m = file.metadata()?;
        let (st_ino, setid) = (m.ino(), without_setid(m.mode()).is_some());
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        let file = Arc::new(file);
        let fh = self.handles.add_file(FileHandle {
            file: file.clone(),
            ino,
            st_ino,
            writable,
        });
        Ok(Opened { fh, file, setid })
    }

    /// Opens a file.
    pub fn open(&self, ino: u64, flags: i32) -> FsResult<Opened> {
        let acc = flags & libc::O_ACCMODE;
        if self.read_only && (acc != libc::O_RDONLY || flags & libc::O_TRUNC != 0) {
            return Err(FsError(libc::EROFS));
        }
        let flags = flags & !(libc::O_CREAT | libc::O_EXCL);
        let Some(rel) = self.inodes.path(ino) else {
            // Unlinked while open, and now opened again (through /proc/PID/fd).
            let file = host::reopen(&*self.orphan(ino)?, flags & !libc::O_NOCTTY)?;
            return self.register(ino, file, flags);
        };
        let writing = acc != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        if writing {
            self.check_locked(&rel)?;
        }
        // An open for writing waits out the engine's replacement of the file, if one is under
        // way, and holds off the next one until the file is registered as open.
        let _opening = writing.then(|| self.handles.writers.opening(&rel.to_string_lossy()));
        let file = self.open_path(&self.host(&rel)?, flags, 0)?;
        if flags & libc::O_TRUNC != 0 {
            self.report(Op::Modify, &rel);
        }
        self.register(ino, file, flags)
    }

    /// A second open file of the inode behind `fh`, for the kernel's passthrough: read-write
    /// when possible, so one backing file serves every reader and writer of the inode.
    pub fn backing_file(&self, fh: u64) -> FsResult<File> {
        let (f, _) = self.handles.file(fh).ok_or(FsError(libc::EBADF))?;
        Ok(host::reopen(&*f, libc::O_RDWR).or_else(|_| host::reopen(&*f, libc::O_RDONLY))?)
    }

    /// Creates and opens a file.
    pub fn create(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> FsResult<(Attr, Opened)> {
        self.writable()?;
        let (rel, full) = self.child(parent, name)?;
        // The kernel asks only for names it believes free; if the file appeared behind its
        // back, it is opened as it is and keeps its owner.
        let file = match self.open_path(&full, flags | libc::O_CREAT | libc::O_EXCL, mode) {
            Ok(file) => {
                self.own(ctx, &rel, &full, Some(file.as_raw_fd()))?;
                file
            }
            Err(FsError(libc::EEXIST)) if flags & libc::O_EXCL == 0 => {
                self.open_path(&full, flags & !libc::O_CREAT, 0)?
            }
            Err(e) => return Err(e),
        };
        self.report(Op::Create, &rel);
        let attr = self.entry(parent, name, &full)?;
        let opened = self.register(attr.ino, file, flags | libc::O_WRONLY)?;
        Ok((attr, opened))
    }

    /// Reads from an open file (when passthrough is not in use).
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let (f, _) = self.handles.file(fh).ok_or(FsError(libc::EBADF))?;
        let mut buf = vec![0u8; size as usize];
        let mut done = 0;
        while done < buf.len() {
            match f.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        buf.truncate(done);
        Ok(buf)
    }

    /// Writes to an open file (when passthrough is not in use).
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        let (f, _) = self.handles.file(fh).ok_or(FsError(libc::EBADF))?;
        f.write_all_at(data, offset)?;
        Ok(data.len() as u32)
    }

    /// Clears the setuid bit of the open file `fh`, and its setgid bit when group-executable,
    /// for a change by a caller that may not keep them. True when a bit was cleared.
    pub fn kill_suidgid(&self, fh: u64) -> FsResult<bool> {
        let (f, _) = self.handles.file(fh).ok_or(FsError(libc::EBADF))?;
        Target::Open(&f).clear_setid()
    }

    /// Flushes data of an open file to disk.
    pub fn fsync(&self, fh: u64, datasync: bool) -> FsResult<()> {
        let (f, _) = self.handles.file(fh).ok_or(FsError(libc::EBADF))?;
        if datasync {
            f.sync_data()?
        } else {
            f.sync_all()?
        }
        Ok(())
    }

    /// The last close of a handle. A file that was open for writing is queued for a push.
    pub fn release(&self, fh: u64) {
        if let Some(h) = self.handles.remove_file(fh)
            && h.writable
        {
            // Every name of a hard-linked file now holds the new content.
            let ino = h.ino;
            drop(h);
            for rel in self.inodes.paths(ino) {
                self.report(Op::Modify, &rel);
            }
        }
    }

    /// Preallocates or punches space.
    pub fn fallocate(&self, fh: u64, offset: u64, length: u64, mode: i32) -> FsResult<()> {
        self.writable()?;
        let (f, _) = self.handles.file(fh).ok_or(FsError(libc::EBADF))?;
        // SAFETY: the fd is open for the life of `f`.
        error::check(unsafe {
            libc::fallocate(
                f.as_raw_fd(),
                mode,
                offset as libc::off_t,
                length as libc::off_t,
            )
        })?;
        Ok(())
    }

    /// SEEK_DATA and SEEK_HOLE.
    pub fn lseek(&self, fh: u64, offset: i64, whence: i32) -> FsResult<i64> {
        let (f, _) = self.handles.file(fh).ok_or(FsError(libc::EBADF))?;
        // SAFETY: the fd is open for the life of `f`.
        let r = unsafe { libc::lseek(f.as_raw_fd(), offset as libc::off_t, whence) };
        if r < 0 {
            Err(FsError::last())
        } else {
            Ok(r as i64)
        }
    }

    /// Copies a range between two open files inside the on-premise filesystem.
    pub fn copy_file_range(
        &self,
        fh_in: u64,
        off_in: u64,
        fh_out: u64,
        off_out: u64,
        len: u64,
    ) -> FsResult<u32> {
        self.writable()?;
        let (fi, _) = self.handles.file(fh_in).ok_or(FsError(libc::EBADF))?;
        let (fo, _) = self.handles.file(fh_out).ok_or(FsError(libc::EBADF))?;
        let mut oi = off_in as libc::loff_t;
        let mut oo = off_out as libc::loff_t;
        let len = len.min(u32::MAX as u64 & !0xfff) as usize;
        // SAFETY: both fds are open; the offsets point to live locals.
        let n = unsafe {
            libc::copy_file_range(fi.as_raw_fd(), &mut oi, fo.as_raw_fd(), &mut oo, len, 0)
        };
        if n < 0 {
            Err(FsError::last())
        } else {
            Ok(n as u32)
        }
    }

    // ------------------------------------------------------------ folders

    /// Opens a folder, taking a snapshot of its entries.
    pub fn opendir(&self, ino: u64) -> FsResult<u64> {
        let rel = self.rel(ino)?;
        let full = self.host(&rel)?;
        let parent_ino = if ino == ROOT {
            ROOT
        } else {
            let pm = fs::symlink_metadata(self.parent_of(&rel)?)?;
            self.inodes.id_of(pm.ino())
        };
        let mut entries = vec![
            (OsString::from("."), ino, libc::DT_DIR as u32),
            (OsString::from(".."), parent_ino, libc::DT_DIR as u32),
        ];
        for de in fs::read_dir(&full)? {
            let de = de?;
            let ft = de.file_type()?;
            let dt = if ft.is_dir() {
                libc::DT_DIR
            } else if ft.is_symlink() {
                libc::DT_LNK
            } else if ft.is_file() {
                libc::DT_REG
            } else {
                use std::os::unix::fs::FileTypeExt;
                if ft.is_fifo() {
                    libc::DT_FIFO
                } else if ft.is_socket() {
                    libc::DT_SOCK
                } else if ft.is_char_device() {
                    libc::DT_CHR
                } else {
                    libc::DT_BLK
                }
            };
            use std::os::unix::fs::DirEntryExt;
            entries.push((de.file_name(), self.inodes.id_of(de.ino()), dt as u32));
        }
        Ok(self.handles.add_dir(DirHandle { entries }))
    }

    /// The entries of an open folder from `offset` on: name, node id, kind and next offset.
    pub fn readdir(&self, fh: u64, offset: u64) -> FsResult<Arc<DirHandle>> {
        let _ = offset;
        self.handles.dir(fh).ok_or(FsError(libc::EBADF))
    }

    /// Attributes of one entry for readdirplus; counts as a lookup.
    pub fn readdirplus_entry(&self, parent: u64, name: &OsStr) -> FsResult<Attr> {
        let (_, full) = self.child(parent, name)?;
        self.entry(parent, name, &full)
    }

    /// Closes a folder handle.
    pub fn releasedir(&self, fh: u64) {
        self.handles.remove_dir(fh);
    }

    /// Flushes a folder to disk.
    pub fn fsyncdir(&self, ino: u64) -> FsResult<()> {
        File::open(self.node(ino)?)?.sync_all()?;
        Ok(())
    }

    /// Statistics of the on-premise filesystem.
    pub fn statfs(&self) -> FsResult<StatFs> {
        let c = cstr(&self.root)?;
        let mut s = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: c is a valid C string and s points to writable memory of the right size.
        error::check(unsafe { libc::statvfs(c.as_ptr(), s.as_mut_ptr()) })?;
        // SAFETY: statvfs succeeded, so it filled s.
        let s = unsafe { s.assume_init() };
        Ok(StatFs {
            blocks: s.f_blocks,
            bfree: s.f_bfree,
            bavail: s.f_bavail,
            files: s.f_files,
            ffree: s.f_ffree,
            bsize: s.f_bsize as u32,
            namelen: s.f_namemax as u32,
            frsize: s.f_frsize as u32,
        })
    }

    /// Checks access for callers when the kernel does not (no `default_permissions`).
    pub fn access(&self, ctx: &Ctx, ino: u64, mask: i32) -> FsResult<()> {
        let m = fs::symlink_metadata(self.node(ino)?)?;
        if mask == libc::F_OK {
            return Ok(());
        }
        if mask & libc::W_OK != 0 && self.read_only {
            return Err(FsError(libc::EROFS));
        }
        let mode = m.mode();
        if ctx.uid == 0 {
            if mask & libc::X_OK != 0 && !m.is_dir() && mode & 0o111 == 0 {
                return Err(FsError(libc::EACCES));
            }
            return Ok(());
        }
        let bits = if ctx.uid == m.uid() {
            (mode >> 6) & 7
        } else if ctx.gid == m.gid() {
            (mode >> 3) & 7
        } else {
            mode & 7
        } as i32;
        if bits & mask == mask {
            Ok(())
        } else {
            Err(FsError(libc::EACCES))
        }
    }

    // ------------------------------------------------------------ xattrs

    /// Reads an xattr: reserved names from the sync engine, others from the on-premise file.
    pub fn getxattr(&self, ino: u64, name: &OsStr) -> FsResult<Vec<u8>> {
        let rel = self.rel(ino)?;
        let full = self.host(&rel)?;
        if xattr::is_reserved(name) {
            let m = fs::symlink_metadata(&full)?;
            let path = rel_str(&rel).ok_or(FsError(libc::ENODATA))?;
            return self
                .hooks
                .xattrs(path, &m)
                .into_iter()
                .find(|(n, _)| n.as_bytes() == name.as_bytes())
                .map(|(_, v)| v.into_bytes())
                .ok_or(FsError(libc::ENODATA));
        }
        xattr::get(&full, name)
    }

    /// Lists xattr names, NUL-separated: the real ones, then the reserved ones.
    pub fn listxattr(&self, ino: u64) -> FsResult<Vec<u8>> {
        let rel = self.rel(ino)?;
        let full = self.host(&rel)?;
        let mut out = match xattr::list(&full) {
            Ok(v) => v,
            Err(e) if e.0 == libc::ENOTSUP => Vec::new(),
            Err(e) => return Err(e),
        };
        if let Some(path) = rel_str(&rel) {
            let m = fs::symlink_metadata(&full)?;
            for (n, _) in self.hooks.xattrs(path, &m) {
                out.extend_from_slice(n.as_bytes());
                out.push(0);
            }
        }
        Ok(out)
    }

    /// Writes an xattr. A reserved name is a control request (`user.cloudsync.request`), handed
    /// to the sync engine, and only the daemon's own user, root and the owner of the item may
    /// make one: anyone else gets `EPERM`, whatever the item's mode says, so a user who may
    /// write a shared file or folder cannot take it, or the whole mount, out of sync.
    pub fn setxattr(
        &self,
        ctx: &Ctx,
        ino: u64,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> FsResult<()> {
        if xattr::is_reserved(name) {
            let rel = self.inodes.path(ino).ok_or(FsError(libc::ESTALE))?;
            let owner = fs::symlink_metadata(self.host(&rel)?)?.uid();
            if !self.may_control(ctx, owner) {
                tracing::info!(
                    path = %rel.display(),
                    uid = ctx.uid,
                    owner,
                    "control request refused: only the owner, root or the daemon's user may make it"
                );
                return Err(FsError(libc::EPERM));
            }
            let path = rel_str(&rel).ok_or(FsError(libc::EPERM))?;
            let name = name.to_str().ok_or(FsError(libc::EPERM))?;
            return self.hooks.control(ctx, path, name, value).map_err(FsError);
        }
        self.writable()?;
        let rel = self.inodes.path(ino);
        if let Some(rel) = &rel {
            self.check_locked(rel)?;
        }
        xattr::set(&self.node(ino)?, name, value, flags)?;
        // The ctime moved: the pusher looks again (and uploads nothing for an xattr alone).
        if let Some(rel) = &rel {
            self.report(Op::Modify, rel);
        }
        Ok(())
    }

    /// True when `ctx` may make control requests on an item owned by `owner`: the daemon's own
    /// user, root, or the owner.
    fn may_control(&self, ctx: &Ctx, owner: u32) -> bool {
        ctx.uid == 0 || ctx.uid == self.daemon_uid || ctx.uid == owner
    }

    /// Removes an xattr; reserved names are refused with `EPERM`.
    pub fn removexattr(&self, ino: u64, name: &OsStr) -> FsResult<()> {
        if xattr::is_reserved(name) {
            return Err(FsError(libc::EPERM));
        }
        self.writable()?;
        xattr::remove(&self.node(ino)?, name)?;
        if let Some(rel) = self.inodes.path(ino) {
            self.report(Op::Modify, &rel);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Rec(Mutex<Vec<String>>);
    impl SyncHooks for Rec {
        fn changed(&self, op: Op, path: &str) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{} {path}", op.as_str()));
        }
        fn renamed(&self, from: &str, to: &str) {
            self.0.lock().unwrap().push(format!("rename {from} {to}"));
        }
        fn xattrs(&self, _: &str, _: &Metadata) -> Vec<(&'static str, String)> {
            vec![("user.cloudsync.status", "pending".into())]
        }
        fn control(&self, caller: &Ctx, path: &str, name: &str, value: &[u8]) -> Result<(), i32> {
            if name != "user.cloudsync.request" {
                return Err(libc::EPERM);
            }
            let v = String::from_utf8_lossy(value);
            self.0
                .lock()
                .unwrap()
                .push(format!("control {} {path:?} {v}", caller.uid));
            Ok(())
        }
    }

    fn setup() -> (tempfile::TempDir, Arc<Rec>, Fs) {
        let d = tempfile::tempdir().unwrap();
        let rec = Arc::new(Rec::default());
        let fs = Fs::new(d.path(), rec.clone(), false).unwrap();
        (d, rec, fs)
    }

    #[test]
    fn create_write_rename_reports_changes() {
        let (d, rec, fs) = setup();
        let ctx = Ctx::default();
        let dir = fs.mkdir(&ctx, ROOT, OsStr::new("docs"), 0o755).unwrap();
        let (a, o) = fs
            .create(&ctx, dir.ino, OsStr::new("a.txt"), 0o644, libc::O_WRONLY)
            .unwrap();
        assert_eq!(fs.write(o.fh, 0, b"hello").unwrap(), 5);
        assert!(
            fs.writers()
                .is_open(fs::metadata(d.path().join("docs/a.txt")).unwrap().ino())
        );
        fs.release(o.fh);
        assert_eq!(fs.getattr(a.ino, None).unwrap().size, 5);
        fs.rename(dir.ino, OsStr::new("a.txt"), ROOT, OsStr::new("b.txt"), 0)
            .unwrap();
        assert_eq!(fs::read(d.path().join("b.txt")).unwrap(), b"hello");
        let o = fs.open(a.ino, libc::O_RDONLY).unwrap();
        assert_eq!(fs.read(o.fh, 1, 10).unwrap(), b"ello");
        fs.release(o.fh);
        fs.unlink(ROOT, OsStr::new("b.txt")).unwrap();
        fs.rmdir(ROOT, OsStr::new("docs")).unwrap();
        assert_eq!(
            *rec.0.lock().unwrap(),
            vec![
                "mkdir docs",
                "create docs/a.txt",
                "modify docs/a.txt",
                "rename docs/a.txt b.txt",
                "delete b.txt",
                "delete docs"
            ]
        );
    }

    #[test]
    fn rename_flags() {
        let (d, _rec, fs) = setup();
        fs::write(d.path().join("x"), b"x").unwrap();
        fs::write(d.path().join("y"), b"y").unwrap();
        let e = fs.rename(
            ROOT,
            OsStr::new("x"),
            ROOT,
            OsStr::new("y"),
            RENAME_NOREPLACE,
        );
        assert_eq!(e, Err(FsError(libc::EEXIST)));
        fs.rename(
            ROOT,
            OsStr::new("x"),
            ROOT,
            OsStr::new("y"),
            RENAME_EXCHANGE,
        )
        .unwrap();
        assert_eq!(fs::read(d.path().join("x")).unwrap(), b"y");
        assert_eq!(
            fs.rename(ROOT, OsStr::new("x"), ROOT, OsStr::new("y"), 99),
            Err(FsError(libc::EINVAL))
        );
    }

    /// A user who may write a shared item but does not own it cannot take it, or the mount
    /// root, out of sync; the owner, root and the daemon's own user can.
    #[test]
    fn control_request_by_a_non_owner_is_refused() {
        let (d, rec, mut fs) = setup();
        fs.daemon_uid = 4242;
        fs::write(d.path().join("f"), b"x").unwrap();
        let owner = 1000;
        std::os::unix::fs::lchown(d.path().join("f"), Some(owner), None).unwrap();
        std::os::unix::fs::lchown(d.path(), Some(owner), None).unwrap();
        fs::set_permissions(d.path().join("f"), fs::Permissions::from_mode(0o666)).unwrap();
        let f = fs.lookup(ROOT, OsStr::new("f")).unwrap().ino;
        let as_uid = |uid| Ctx {
            uid,
            gid: uid,
            pid: 1,
        };
        let req = OsStr::new("user.cloudsync.request");
        for ino in [ROOT, f] {
            assert_eq!(
                fs.setxattr(&as_uid(65534), ino, req, b"unsync", 0),
                Err(FsError(libc::EPERM)),
                "a stranger, on node {ino}"
            );
            assert_eq!(
                fs.setxattr(
                    &as_uid(65534),
                    ino,
                    OsStr::new("user.cloudsync.etag"),
                    b"x",
                    0
                ),
                Err(FsError(libc::EPERM)),
            );
        }
        assert!(
            rec.0.lock().unwrap().is_empty(),
            "no request reached the engine"
        );
        for uid in [owner, 0, 4242] {
            fs.setxattr(&as_uid(uid), f, req, b"sync", 0).unwrap();
        }
        fs.setxattr(&as_uid(owner), ROOT, req, b"sync", 0).unwrap();
        assert_eq!(
            *rec.0.lock().unwrap(),
            [
                "control 1000 \"f\" sync",
                "control 0 \"f\" sync",
                "control 4242 \"f\" sync",
                "control 1000 \"\" sync",
            ]
        );
    }

    #[test]
    fn reserved_xattrs() {
        let (d, _rec, fs) = setup();
        fs::write(d.path().join("f"), b"x").unwrap();
        let a = fs.lookup(ROOT, OsStr::new("f")).unwrap();
        assert_eq!(
            fs.getxattr(a.ino, OsStr::new("user.cloudsync.status"))
                .unwrap(),
            b"pending"
        );
        assert_eq!(
            fs.setxattr(
                &Ctx::default(),
                a.ino,
                OsStr::new("user.cloudsync.status"),
                b"synced",
                0
            ),
            Err(FsError(libc::EPERM))
        );
        fs.setxattr(&Ctx::default(), a.ino, OsStr::new("user.color"), b"red", 0)
            .unwrap();
        assert_eq!(
            fs.getxattr(a.ino, OsStr::new("user.color")).unwrap(),
            b"red"
        );
        let l = fs.listxattr(a.ino).unwrap();
        assert_eq!(l, b"user.color\0user.cloudsync.status\0");
        assert_eq!(
            fs.lookup(ROOT, OsStr::new("..")).unwrap_err(),
            FsError(libc::EINVAL)
        );
    }

    #[test]
    fn read_only_refuses_writes() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("f"), b"x").unwrap();
        let fs = Fs::new(d.path(), Arc::new(NoHooks), true).unwrap();
        let a = fs.lookup(ROOT, OsStr::new("f")).unwrap();
        assert_eq!(
            fs.open(a.ino, libc::O_RDWR).unwrap_err(),
            FsError(libc::EROFS)
        );
        assert_eq!(
            fs.mkdir(&Ctx::default(), ROOT, OsStr::new("d"), 0o755)
                .unwrap_err(),
            FsError(libc::EROFS)
        );
        assert!(fs.open(a.ino, libc::O_RDONLY).is_ok());
    }

    /// The daemon runs as root in production; tests of handing files over need root too.
    fn root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode()
    }

    const NOBODY: Ctx = Ctx {
        uid: 65534,
        gid: 65534,
        pid: 0,
    };

    #[test]
    fn new_inodes_belong_to_the_caller_and_keep_setuid() {
        if !root() {
            return;
        }
        let (d, _rec, fs) = setup();
        let (a, o) = fs
            .create(&NOBODY, ROOT, OsStr::new("f"), 0o4755, libc::O_WRONLY)
            .unwrap();
        fs.release(o.fh);
        assert_eq!((a.uid, a.gid, a.perm), (65534, 65534, 0o4755));
        let m = fs::metadata(d.path().join("f")).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o7777),
            (65534, 65534, 0o4755)
        );
        let p = fs
            .mknod(&NOBODY, ROOT, OsStr::new("p"), libc::S_IFIFO | 0o2754, 0)
            .unwrap();
        assert_eq!((p.kind, p.uid, p.perm), (Kind::Fifo, 65534, 0o2754));
        let l = fs
            .symlink(&NOBODY, ROOT, OsStr::new("l"), Path::new("f"))
            .unwrap();
        assert_eq!((l.kind, l.uid, l.gid), (Kind::Symlink, 65534, 65534));
    }

    #[test]
    fn setgid_folders_pass_their_group_on() {
        if !root() {
            return;
        }
        let (d, _rec, fs) = setup();
        let g = fs
            .mkdir(&Ctx::default(), ROOT, OsStr::new("g"), 0o777)
            .unwrap();
        fs.setattr(
            g.ino,
            SetAttr {
                gid: Some(1),
                mode: Some(0o2777),
                ..SetAttr::default()
            },
        )
        .unwrap();
        let sub = fs.mkdir(&NOBODY, g.ino, OsStr::new("sub"), 0o755).unwrap();
        assert_eq!((sub.uid, sub.gid, sub.perm), (65534, 1, 0o2755));
        let (f, o) = fs
            .create(&NOBODY, g.ino, OsStr::new("f"), 0o644, libc::O_WRONLY)
            .unwrap();
        fs.release(o.fh);
        assert_eq!((f.uid, f.gid), (65534, 1));
        assert_eq!(mode(&d.path().join("g/sub")) & 0o7777, 0o2755);
    }

    #[test]
    fn create_over_a_file_made_behind_the_kernels_back_keeps_its_owner() {
        if !root() {
            return;
        }
        let (d, _rec, fs) = setup();
        fs::write(d.path().join("f"), b"x").unwrap();
        let (a, o) = fs
            .create(&NOBODY, ROOT, OsStr::new("f"), 0o600, libc::O_WRONLY)
            .unwrap();
        fs.release(o.fh);
        assert_eq!(a.uid, 0);
        assert_eq!(
            fs.create(
                &NOBODY,
                ROOT,
                OsStr::new("f"),
                0o600,
                libc::O_WRONLY | libc::O_EXCL
            )
            .unwrap_err(),
            FsError(libc::EEXIST)
        );
    }

    #[test]
    fn chown_and_chmod_in_one_request_keep_the_mode_asked_for() {
        if !root() {
            return;
        }
        let (d, _rec, fs) = setup();
        fs::write(d.path().join("f"), b"x").unwrap();
        let a = fs.lookup(ROOT, OsStr::new("f")).unwrap();
        let a = fs
            .setattr(
                a.ino,
                SetAttr {
                    uid: Some(65534),
                    gid: Some(65534),
                    mode: Some(0o6755),
                    ..SetAttr::default()
                },
            )
            .unwrap();
        assert_eq!((a.uid, a.gid, a.perm), (65534, 65534, 0o6755));
        // A chown alone clears setuid and setgid, as on any Linux filesystem.
        let a = fs
            .setattr(
                a.ino,
                SetAttr {
                    uid: Some(1),
                    ..SetAttr::default()
                },
            )
            .unwrap();
        assert_eq!((a.uid, a.perm), (1, 0o755));
    }

    #[test]
    fn unlinked_open_files_still_answer() {
        let (d, _rec, fs) = setup();
        let ctx = Ctx::default();
        let (a, w) = fs
            .create(&ctx, ROOT, OsStr::new("f"), 0o644, libc::O_RDWR)
            .unwrap();
        fs.write(w.fh, 0, b"hello").unwrap();
        fs.release(w.fh);
        let r = fs.open(a.ino, libc::O_RDONLY).unwrap();
        fs.unlink(ROOT, OsStr::new("f")).unwrap();
        assert!(!d.path().join("f").exists());
        let g = fs.getattr(a.ino, None).unwrap();
        assert_eq!((g.nlink, g.size), (0, 5));
        // Truncating through a handle open only for reading, and setting times.
        let t = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let s = fs
            .setattr(
                a.ino,
                SetAttr {
                    size: Some(2),
                    mtime: Some(SetTime::At(t)),
                    ..SetAttr::default()
                },
            )
            .unwrap();
        assert_eq!((s.size, s.mtime), (2, t));
        // Opened again through /proc/PID/fd.
        let again = fs.open(a.ino, libc::O_RDONLY).unwrap();
        assert_eq!(fs.read(again.fh, 0, 10).unwrap(), b"he");
        fs.release(again.fh);
        fs.release(r.fh);
        assert_eq!(fs.getattr(a.ino, None).unwrap_err(), FsError(libc::ESTALE));
    }

    #[test]
    fn times_before_1970_and_omitted_times() {
        let (d, _rec, fs) = setup();
        fs::write(d.path().join("f"), b"x").unwrap();
        let a = fs.lookup(ROOT, OsStr::new("f")).unwrap();
        let old = UNIX_EPOCH - Duration::from_millis(1500);
        let s = fs
            .setattr(
                a.ino,
                SetAttr {
                    mtime: Some(SetTime::At(old)),
                    ..SetAttr::default()
                },
            )
            .unwrap();
        assert_eq!(s.mtime, old);
        assert_eq!(s.atime, a.atime);
        let m = fs::metadata(d.path().join("f")).unwrap();
        assert_eq!((m.mtime(), m.mtime_nsec()), (-2, 500_000_000));
        let s = fs
            .setattr(
                a.ino,
                SetAttr {
                    atime: Some(SetTime::Now),
                    ..SetAttr::default()
                },
            )
            .unwrap();
        assert_eq!(s.mtime, old);
        assert!(s.atime >= a.atime);
    }

    #[test]
    fn paths_longer_than_path_max() {
        let (d, _rec, fs) = setup();
        let ctx = Ctx::default();
        let name = OsString::from("n".repeat(250));
        let mut dirs = vec![ROOT];
        for _ in 0..20 {
            let parent = *dirs.last().unwrap();
            dirs.push(fs.mkdir(&ctx, parent, &name, 0o755).unwrap().ino);
        }
        let dir = *dirs.last().unwrap();
        let rel = fs.rel_path(dir).unwrap();
        assert!(d.path().join(&rel).as_os_str().len() > libc::PATH_MAX as usize);
        let (a, o) = fs
            .create(&ctx, dir, OsStr::new("f"), 0o644, libc::O_WRONLY)
            .unwrap();
        fs.write(o.fh, 0, b"deep").unwrap();
        fs.release(o.fh);
        assert_eq!(fs.lookup(dir, OsStr::new("f")).unwrap().size, 4);
        let s = fs
            .setattr(
                a.ino,
                SetAttr {
                    mode: Some(0o600),
                    size: Some(1),
                    ..SetAttr::default()
                },
            )
            .unwrap();
        assert_eq!((s.perm, s.size), (0o600, 1));
        fs.setxattr(&Ctx::default(), a.ino, OsStr::new("user.k"), b"v", 0)
            .unwrap();
        assert_eq!(fs.getxattr(a.ino, OsStr::new("user.k")).unwrap(), b"v");
        fs.symlink(&ctx, dir, OsStr::new("l"), Path::new("f"))
            .unwrap();
        let l = fs.lookup(dir, OsStr::new("l")).unwrap();
        assert_eq!(fs.readlink(l.ino).unwrap(), b"f");
        fs.rename(dir, OsStr::new("l"), dir, OsStr::new("m"), 0)
            .unwrap();
        let h = fs.opendir(dir).unwrap();
        let mut names: Vec<_> = fs
            .readdir(h, 0)
            .unwrap()
            .entries
            .iter()
            .map(|e| e.0.clone())
            .collect();
        names.sort();
        assert_eq!(names, [".", "..", "f", "m"]);
        fs.releasedir(h);
        fs.unlink(dir, OsStr::new("m")).unwrap();
        fs.unlink(dir, OsStr::new("f")).unwrap();
        for pair in dirs.windows(2).rev() {
            fs.rmdir(pair[0], &name).unwrap();
        }
        assert!(!d.path().join(&name).exists());
    }

    #[test]
    fn renaming_a_name_onto_another_name_of_the_same_file_does_nothing() {
        let (d, rec, fs) = setup();
        fs::write(d.path().join("a"), b"x").unwrap();
        fs::hard_link(d.path().join("a"), d.path().join("b")).unwrap();
        fs.rename(ROOT, OsStr::new("a"), ROOT, OsStr::new("b"), 0)
            .unwrap();
        assert!(d.path().join("a").exists() && d.path().join("b").exists());
        assert!(rec.0.lock().unwrap().is_empty());
    }

    #[test]
    fn device_numbers_cross_fuse_intact() {
        for (major, minor) in [(0, 0), (1, 3), (8, 17), (259, 65537), (4095, 0xfffff)] {
            let dev = libc::makedev(major, minor);
            assert_eq!(host_rdev(fuse_rdev(dev)), dev, "{major}:{minor}");
        }
        if !root() {
            return;
        }
        let (d, _rec, fs) = setup();
        let rdev = fuse_rdev(libc::makedev(1, 3));
        let c = fs
            .mknod(
                &Ctx::default(),
                ROOT,
                OsStr::new("null"),
                libc::S_IFCHR | 0o666,
                rdev,
            )
            .unwrap();
        assert_eq!((c.kind, c.rdev), (Kind::CharDevice, rdev));
        let m = fs::symlink_metadata(d.path().join("null")).unwrap();
        assert_eq!(m.rdev(), libc::makedev(1, 3));
    }
}
