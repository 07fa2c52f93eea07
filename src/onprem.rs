//! The one door through which the sync engine reaches the on-premise folder.
//!
//! The puller, the pusher, the scans and the conflict copies name on-premise items by paths
//! relative to ONPREM, and those paths come from the cloud or from a tree that local users can
//! change. Joined by hand and handed to `std::fs`, such a path follows every symbolic link on
//! the way: a link `x -> /etc/cron.d` made through the mount would let a cloud user's `x/evil`
//! land in `/etc/cron.d`. So the engine never does that. It holds an [`Onprem`]: a directory
//! handle of ONPREM, and every operation resolves its path *beneath* that handle with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`. The kernel refuses any component that is a
//! symbolic link, any `..`, any magic link, so a path can only name an item inside ONPREM and
//! never goes through a link, whatever the tree looks like or how it changes meanwhile. The last
//! component is never followed either: a link there is seen as a link.
//!
//! rustix gives the system calls with owned descriptors and no `unsafe` here; cap-std's `Dir`
//! would also confine, but it follows symbolic links that stay inside the tree and has its own
//! metadata type, while the engine wants no link followed and `std::fs::Metadata`.
//!
//! Files the engine creates here start life as temporary files made with `O_EXCL` and mode
//! 0600, get their final mode and owner through their descriptor, and only then are renamed
//! into place, so nothing is ever wider than its final mode, not even for an instant.

use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Gid, Mode, OFlags, RenameFlags, ResolveFlags, Uid};

/// Prefix of the engine's temporary files; an exclude pattern keeps them out of the cloud.
pub const TEMP_PREFIX: &str = ".cloudsync-dl-";

/// How every path is resolved: beneath ONPREM, through no symbolic or magic link.
const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// Longest run of a path resolved in one step; longer paths are walked in steps, each beneath
/// the folder the previous step opened.
const STEP: usize = 2048;

/// True when `e` says a path went through a symbolic link, a special file or out of ONPREM:
/// something a user or the cloud put in the way, never a transient failure.
pub fn is_crossing(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ELOOP | libc::EXDEV))
}

/// A user-facing line for an item whose path is blocked on-premise.
pub fn crossing_detail(path: &str) -> String {
    format!(
        "the on-premise path {path:?} goes through a symbolic link or a special file; \
         the cloud item is left alone (replace the link with a real folder and request a sync)"
    )
}

/// The on-premise folder, reachable only beneath itself.
#[derive(Debug)]
pub struct Onprem {
    root: OwnedFd,
    path: PathBuf,
    umask: u32,
}

/// A new private file not yet in place: see [`Onprem::create_temp`].
#[derive(Debug)]
pub struct NewFile {
    /// The open file, to write and give its final mode.
    pub file: File,
    /// Its temporary name, where the filesystem needs one.
    name: Option<String>,
}

/// A fresh temporary name: `TEMP_PREFIX`, the daemon's pid, a random number.
fn temp_name() -> String {
    format!("{TEMP_PREFIX}{}-{}", std::process::id(), fastrand::u64(..))
}

/// One entry of an on-premise folder.
#[derive(Debug)]
pub struct Entry {
    /// Its name.
    pub name: OsString,
    /// Its metadata, of the entry itself (a link is a link).
    pub meta: io::Result<Metadata>,
}

impl Onprem {
    /// Opens the on-premise folder `path`. New files get `0666 & !umask`, new folders
    /// `0777 & !umask`: the umask the daemon was started with.
    pub fn open(path: &Path, umask: u32) -> io::Result<Onprem> {
        let root = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Onprem {
            root,
            path: path.to_path_buf(),
            umask: umask & 0o777,
        })
    }

    /// The on-premise folder's own path, for messages.
    pub fn root(&self) -> &Path {
        &self.path
    }

    /// Where `rel` is, for messages only: never hand it to a system call.
    pub fn display(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.path.clone()
        } else {
            self.path.join(rel)
        }
    }

    /// Mode of a file the engine creates.
    pub fn file_mode(&self) -> u32 {
        0o666 & !self.umask
    }

    /// Mode of a folder the engine creates.
    pub fn dir_mode(&self) -> u32 {
        0o777 & !self.umask
    }

    /// Resolves `rel` beneath ONPREM with `flags`, in steps when it is long.
    fn at(&self, rel: &str, flags: OFlags) -> io::Result<OwnedFd> {
        check(rel)?;
        let flags = flags | OFlags::CLOEXEC;
        if rel.is_empty() {
            return Ok(rustix::fs::openat2(
                &self.root,
                ".",
                flags,
                Mode::empty(),
                RESOLVE,
            )?);
        }
        if rel.len() <= STEP {
            return Ok(rustix::fs::openat2(
                &self.root,
                rel,
                flags,
                Mode::empty(),
                RESOLVE,
            )?);
        }
        let mut dir: Option<OwnedFd> = None;
        let mut rest = rel;
        while rest.len() > STEP {
            let cut = rest[..STEP]
                .rfind('/')
                .filter(|&i| i > 0)
                .ok_or_else(|| io::Error::from_raw_os_error(libc::ENAMETOOLONG))?;
            let d = rustix::fs::openat2(
                dir.as_ref().map_or(self.root.as_fd(), |d| d.as_fd()),
                &rest[..cut],
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                RESOLVE,
            )?;
            dir = Some(d);
            rest = &rest[cut + 1..];
        }
        Ok(rustix::fs::openat2(
            dir.as_ref().map_or(self.root.as_fd(), |d| d.as_fd()),
            rest,
            flags,
            Mode::empty(),
            RESOLVE,
        )?)
    }

    /// The folder holding `rel`, opened beneath ONPREM, and `rel`'s last name.
    fn parent<'a>(&self, rel: &'a str) -> io::Result<(OwnedFd, &'a str)> {
        check(rel)?;
        if rel.is_empty() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let fd = self.at(dir, OFlags::PATH | OFlags::DIRECTORY)?;
        Ok((fd, name))
    }

    /// The metadata of `rel` itself (a link is reported as a link), or `None` when nothing is
    /// there. A path through a link or a special file is an error ([`is_crossing`]).
    pub fn stat(&self, rel: &str) -> io::Result<Option<Metadata>> {
        match self.at(rel, OFlags::PATH | OFlags::NOFOLLOW) {
            Ok(fd) => Ok(Some(File::from(fd).metadata()?)),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens the regular file `rel` for reading. Anything else (a link, a pipe, a device) is
    /// refused with `ELOOP`/`EINVAL` without being opened for I/O, so a pipe never blocks and a
    /// device never sees an open.
    pub fn open_file(&self, rel: &str) -> io::Result<File> {
        let fd = self.at(rel, OFlags::PATH | OFlags::NOFOLLOW)?;
        let f = File::from(fd);
        let m = f.metadata()?;
        if m.file_type().is_symlink() {
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
        if !m.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", self.display(rel).display()),
            ));
        }
        // The O_PATH descriptor pins the inode checked above; reopening it through its
        // /proc entry opens exactly that inode, never whatever the path names by now.
        reopen(&f, libc::O_RDONLY)
    }

    /// The entries of the folder `rel`, with the metadata of each.
    pub fn read_dir(&self, rel: &str) -> io::Result<Entries> {
        let fd = self.at(rel, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW)?;
        Ok(Entries {
            dir: rustix::fs::Dir::new(fd)?,
        })
    }

    /// Creates a new empty private file (mode 0600) in the folder `dir`, open for reading and
    /// writing, to be put in place with [`Onprem::place`] once it is complete.
    ///
    /// Where the filesystem can, the file has no name at all until it is placed (`O_TMPFILE`):
    /// a download cut short, or whose folder is renamed or deleted meanwhile, leaves nothing
    /// behind, whatever happens to the daemon. Elsewhere it is a named temporary file made
    /// with `O_EXCL`, which [`Onprem::discard`] removes and a later scan cleans up after a
    /// crash.
    pub fn create_temp(&self, dir: &str) -> io::Result<NewFile> {
        let d = self.at(dir, OFlags::PATH | OFlags::DIRECTORY)?;
        match rustix::fs::openat(
            &d,
            ".",
            OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => {
                return Ok(NewFile {
                    file: File::from(fd),
                    name: None,
                });
            }
            // Not offered by this filesystem: a named file instead.
            Err(
                rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::ISDIR | rustix::io::Errno::INVAL,
            ) => {}
            Err(e) => return Err(e.into()),
        }
        loop {
            let name = temp_name();
            match rustix::fs::openat(
                &d,
                name.as_str(),
                OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::RDWR | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            ) {
                Ok(fd) => {
                    return Ok(NewFile {
                        file: File::from(fd),
                        name: Some(crate::cloud::join(dir, &name)),
                    });
                }
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Puts a file made by [`Onprem::create_temp`] at `to`: over what is there, or, with
    /// `noreplace`, only where nothing is (`EEXIST` otherwise). The folder of `to` is resolved
    /// now, so a folder renamed since the file was made is never written into under its old
    /// name.
    pub fn place(&self, new: &mut NewFile, to: &str, noreplace: bool) -> io::Result<()> {
        if let Some(rel) = new.name.clone() {
            if noreplace {
                self.rename_noreplace(&rel, to)?;
            } else {
                self.rename(&rel, to)?;
            }
            new.name = None;
            return Ok(());
        }
        let (d, name) = self.parent(to)?;
        let me = format!("/proc/self/fd/{}", new.file.as_raw_fd());
        let link = |at: &str| {
            rustix::fs::linkat(
                rustix::fs::CWD,
                me.as_str(),
                &d,
                at,
                AtFlags::SYMLINK_FOLLOW,
            )
        };
        if noreplace {
            return Ok(link(name)?);
        }
        // A name of its own for one system call, then renamed over the target.
        let tmp = loop {
            let t = temp_name();
            match link(&t) {
                Ok(()) => break t,
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        if let Err(e) = rustix::fs::renameat(&d, tmp.as_str(), &d, name) {
            let _ = rustix::fs::unlinkat(&d, tmp.as_str(), AtFlags::empty());
            return Err(e.into());
        }
        Ok(())
    }

    /// Removes a file made by [`Onprem::create_temp`] that was not placed (a file with no name
    /// needs nothing: it goes with its last descriptor).
    pub fn discard(&self, new: &mut NewFile) {
        if let Some(rel) = new.name.take() {
            let _ = self.remove_file(&rel);
        }
    }

    /// Renames `from` over `to` (both beneath ONPREM; neither last name is followed).
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.rename_with(from, to, RenameFlags::empty())
    }

    /// Renames `from` to `to`, failing with `EEXIST` when `to` exists.
    pub fn rename_noreplace(&self, from: &str, to: &str) -> io::Result<()> {
        self.rename_with(from, to, RenameFlags::NOREPLACE)
    }

    fn rename_with(&self, from: &str, to: &str, flags: RenameFlags) -> io::Result<()> {
        let (fd, fname) = self.parent(from)?;
        let (td, tname) = self.parent(to)?;
        Ok(rustix::fs::renameat_with(&fd, fname, &td, tname, flags)?)
    }

    /// Removes the file (or link) `rel`.
    pub fn remove_file(&self, rel: &str) -> io::Result<()> {
        let (d, name) = self.parent(rel)?;
        Ok(rustix::fs::unlinkat(&d, name, AtFlags::empty())?)
    }

    /// Removes the empty folder `rel`.
    pub fn remove_dir(&self, rel: &str) -> io::Result<()> {
        let (d, name) = self.parent(rel)?;
        Ok(rustix::fs::unlinkat(&d, name, AtFlags::REMOVEDIR)?)
    }

    /// Creates the folder `rel` and any missing folders above it, each with
    /// [`Onprem::dir_mode`] and the owner and group of the folder it is made in. A link or a
    /// file in the way is an error, never followed.
    pub fn create_dirs(&self, rel: &str) -> io::Result<()> {
        check(rel)?;
        if rel.is_empty() {
            return Ok(());
        }
        // Walk down from the deepest folder that exists.
        let mut have = rel;
        let mut missing: Vec<&str> = Vec::new();
        loop {
            match self.at(have, OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW) {
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let (up, name) = have.rsplit_once('/').unwrap_or(("", have));
                    missing.push(name);
                    have = up;
                    if have.is_empty() {
                        break;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let mut dir = self.at(have, OFlags::PATH | OFlags::DIRECTORY)?;
        for name in missing.into_iter().rev() {
            let owner = rustix::fs::fstat(&dir)?;
            match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o700)) {
                Ok(()) => {
                    let d = rustix::fs::openat2(
                        &dir,
                        name,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                        RESOLVE,
                    )?;
                    // Owner first, mode second: chown clears setgid bits the mode then sets.
                    let _ = rustix::fs::fchown(
                        &d,
                        Some(Uid::from_raw(owner.st_uid)),
                        Some(Gid::from_raw(owner.st_gid)),
                    );
                    let setgid = owner.st_mode & libc::S_ISGID;
                    rustix::fs::fchmod(&d, Mode::from_raw_mode(self.dir_mode() | setgid))?;
                    dir = d;
                }
                Err(rustix::io::Errno::EXIST) => {
                    dir = rustix::fs::openat2(
                        &dir,
                        name,
                        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                        RESOLVE,
                    )?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The BLAKE3 hash (hex) of the regular file `rel`.
    pub fn hash(&self, rel: &str) -> io::Result<String> {
        hash_file(&self.open_file(rel)?)
    }
}

/// Iterates the entries of a folder opened by [`Onprem::read_dir`], without `.` and `..`.
pub struct Entries {
    dir: rustix::fs::Dir,
}

impl Iterator for Entries {
    type Item = io::Result<Entry>;

    fn next(&mut self) -> Option<io::Result<Entry>> {
        loop {
            let de = match self.dir.read()? {
                Ok(de) => de,
                Err(e) => return Some(Err(e.into())),
            };
            let name = de.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let name = OsStr::from_bytes(name).to_os_string();
            let meta = self.stat_entry(&name);
            return Some(Ok(Entry { name, meta }));
        }
    }
}

impl Entries {
    fn stat_entry(&self, name: &OsStr) -> io::Result<Metadata> {
        let fd = rustix::fs::openat(
            self.dir.fd()?,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        File::from(fd).metadata()
    }
}

/// Refuses paths that are not plain relative paths: the kernel would refuse them too, but the
/// message is clearer here.
fn check(rel: &str) -> io::Result<()> {
    if rel.is_empty() {
        return Ok(());
    }
    let bad = rel.starts_with('/')
        || rel.ends_with('/')
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == ".." || c.contains('\0'));
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{rel:?} is not a plain path beneath the on-premise folder"),
        ));
    }
    Ok(())
}

/// Reopens an open file (even an `O_PATH` one) with other flags: the same inode.
pub fn reopen(file: &impl AsRawFd, flags: i32) -> io::Result<File> {
    crate::fs::host::reopen(file, flags)
}

/// Hashes an open file's content from its start (BLAKE3, hex), whatever its offset: the one
/// content hash of the engine, for uploads, downloads and "same content?" checks.
pub fn hash_file(f: &File) -> io::Result<String> {
    use std::os::unix::fs::FileExt;
    let mut h = blake3::Hasher::new();
    // Most files are small: a small buffer first, so that hashing one does not zero (and
    // fault in) a large one; a file that fills it is read on in large reads.
    let mut buf = vec![0u8; 64 << 10];
    let mut at = 0u64;
    loop {
        let n = f.read_at(&mut buf, at)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        at += n as u64;
        if n == buf.len() && buf.len() < 1 << 20 {
            buf = vec![0u8; 1 << 20];
        }
    }
    Ok(h.finalize().to_hex().to_string())
}

/// Gives a file the engine made its final mode and owner, through its descriptor.
pub fn finish(f: &File, (mode, uid, gid): (u32, u32, u32)) -> io::Result<()> {
    // Owner first: a chown by root clears setuid/setgid bits, which the mode then restores.
    let _ = rustix::fs::fchown(f, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
    rustix::fs::fchmod(f, Mode::from_raw_mode(mode & 0o7777))?;
    Ok(())
}

/// The mode, owner and group of `m`, for [`finish`].
pub fn like(m: &Metadata) -> (u32, u32, u32) {
    (m.mode() & 0o7777, m.uid(), m.gid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn door() -> (tempfile::TempDir, tempfile::TempDir, Onprem) {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("real")).unwrap();
        std::fs::write(d.path().join("real/f"), b"in").unwrap();
        std::fs::write(outside.path().join("secret"), b"out").unwrap();
        symlink(outside.path(), d.path().join("x")).unwrap();
        symlink("real", d.path().join("rel")).unwrap();
        symlink(outside.path().join("secret"), d.path().join("real/link")).unwrap();
        let o = Onprem::open(d.path(), 0o022).unwrap();
        (d, outside, o)
    }

    #[test]
    fn no_path_goes_through_a_link() {
        let (d, outside, o) = door();
        for p in ["x/secret", "rel/f", "x/new"] {
            let e = o.stat(p).unwrap_err();
            assert!(is_crossing(&e), "{p}: {e}");
            assert!(is_crossing(&o.open_file(p).unwrap_err()), "{p}");
            assert!(is_crossing(&o.create_dirs(p).unwrap_err()), "{p}");
            assert!(o.create_temp(p).is_err(), "{p}");
        }
        assert!(o.create_temp("x").is_err());
        assert!(o.rename("real/f", "x/f").is_err());
        assert!(o.read_dir("x").is_err());
        // A link as the last name is itself, never its target.
        assert!(o.stat("x").unwrap().unwrap().file_type().is_symlink());
        assert!(o.open_file("real/link").is_err());
        o.remove_file("real/link").unwrap();
        assert_eq!(
            std::fs::read(outside.path().join("secret")).unwrap(),
            b"out"
        );
        assert!(o.stat("../etc").is_err());
        assert!(o.stat("/etc").is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
        assert!(d.path().join("real/f").exists());
    }

    #[test]
    fn temps_are_private_and_dirs_get_the_umask() {
        let (d, _o, o) = door();
        let mut t = o.create_temp("real").unwrap();
        assert_eq!(t.file.metadata().unwrap().mode() & 0o7777, 0o600);
        finish(&t.file, (0o640, 0, 0)).unwrap();
        // Nothing shows in the folder until the file is placed.
        assert_eq!(std::fs::read_dir(d.path().join("real")).unwrap().count(), 2);
        o.place(&mut t, "real/g", true).unwrap();
        let m = std::fs::metadata(d.path().join("real/g")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o640);
        o.create_dirs("a/b/c").unwrap();
        let m = std::fs::metadata(d.path().join("a/b")).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o755);
        o.create_dirs("a/b/c").unwrap();
        std::fs::write(d.path().join("file"), b"").unwrap();
        assert!(o.create_dirs("file/sub").is_err());
        let names: Vec<_> = o.read_dir("").unwrap().map(|e| e.unwrap().name).collect();
        assert!(names.iter().any(|n| n == "x"));
        assert!(!names.iter().any(|n| n == "." || n == ".."));
        assert!(o.rename_noreplace("real/g", "real/f").is_err());
        assert_eq!(o.hash("real/g").unwrap().len(), 64);
    }

    #[test]
    fn special_files_are_not_opened() {
        let (d, _o, o) = door();
        let fifo = std::ffi::CString::new(d.path().join("p").as_os_str().as_bytes()).unwrap();
        // SAFETY: fifo is a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        // Would block forever if opened for reading.
        assert!(o.open_file("p").is_err());
        assert!(o.create_dirs("p/q").is_err());
    }

    #[test]
    fn long_paths_are_walked_in_steps() {
        let d = tempfile::tempdir().unwrap();
        let o = Onprem::open(d.path(), 0o022).unwrap();
        let comp = "d".repeat(200);
        let rel = vec![comp.as_str(); 25].join("/");
        o.create_dirs(&rel).unwrap();
        let mut t = o.create_temp(&rel).unwrap();
        std::io::Write::write_all(&mut t.file, b"deep").unwrap();
        let target = format!("{rel}/file");
        o.place(&mut t, &target, false).unwrap();
        assert_eq!(o.stat(&target).unwrap().unwrap().len(), 4);
        assert_eq!(
            o.hash(&target).unwrap(),
            blake3::hash(b"deep").to_hex().to_string()
        );
    }

    #[test]
    fn a_temp_whose_folder_moved_leaves_nothing_and_replaces_in_place() {
        let (d, _o, o) = door();
        let mut t = o.create_temp("real").unwrap();
        std::fs::rename(d.path().join("real"), d.path().join("moved")).unwrap();
        assert!(o.place(&mut t, "real/f", true).is_err());
        drop(t);
        let names: Vec<_> = std::fs::read_dir(d.path().join("moved"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| !n.to_string_lossy().starts_with(TEMP_PREFIX)),
            "{names:?}"
        );
        let mut t = o.create_temp("moved").unwrap();
        std::io::Write::write_all(&mut t.file, b"new").unwrap();
        o.place(&mut t, "moved/f", false).unwrap();
        assert_eq!(std::fs::read(d.path().join("moved/f")).unwrap(), b"new");
        let mut t = o.create_temp("moved").unwrap();
        assert_eq!(
            o.place(&mut t, "moved/f", true).unwrap_err().raw_os_error(),
            Some(libc::EEXIST)
        );
    }
}
