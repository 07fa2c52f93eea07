//! Host paths: how the core names an on-premise file to the kernel, even past `PATH_MAX`.
//!
//! A path through the mount may be almost `PATH_MAX` long *below the mount point*. The same
//! file's on-premise path is longer by the on-premise root, so the kernel would refuse it with
//! `ENAMETOOLONG` although the caller did nothing wrong. For such a path the folder holding the
//! file is opened step by step (each step well under `PATH_MAX`), and the file is named through
//! that open folder as `/proc/self/fd/N/NAME`. Every path-taking call, ours and the standard
//! library's, accepts that name, so the rest of the core stays written against plain paths.
//! Short paths, the common case, cost nothing extra.

use std::ffi::{CString, OsStr};
use std::io;
use std::ops::Deref;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Longest path, in bytes without the closing NUL, that the kernel takes.
const PATH_LIMIT: usize = libc::PATH_MAX as usize - 1;

/// Longest run of components opened in one step while walking a long path.
const STEP: usize = 2048;

/// An on-premise file named so that the kernel accepts it; keeps its folder open while alive.
#[derive(Debug)]
pub struct HostPath {
    path: PathBuf,
    _dir: Option<OwnedFd>,
}

impl HostPath {
    /// The path to hand to syscalls.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Deref for HostPath {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for HostPath {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

fn open_dir(at: RawFd, rel: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(rel.as_os_str().as_bytes())?;
    // SAFETY: c is a valid C string; `at` is AT_FDCWD or an fd the caller keeps open.
    let fd = unsafe {
        libc::openat(
            at,
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by openat and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Names `rel` (relative to the on-premise `root`; empty for the root itself) for the kernel.
pub fn resolve(root: &Path, rel: &Path) -> io::Result<HostPath> {
    let full = if rel.as_os_str().is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    if full.as_os_str().len() <= PATH_LIMIT {
        return Ok(HostPath {
            path: full,
            _dir: None,
        });
    }
    let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    };
    let mut dir = open_dir(libc::AT_FDCWD, root)?;
    let mut step = PathBuf::new();
    for comp in parent.components() {
        let c: &OsStr = comp.as_os_str();
        let len = step.as_os_str().len();
        if len > 0 && len + 1 + c.len() > STEP {
            dir = open_dir(dir.as_raw_fd(), &step)?;
            step.clear();
        }
        step.push(c);
    }
    if !step.as_os_str().is_empty() {
        dir = open_dir(dir.as_raw_fd(), &step)?;
    }
    let path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
    Ok(HostPath {
        path,
        _dir: Some(dir),
    })
}

/// Reopens an open file with other flags through `/proc/self/fd`: the same inode even when it
/// was renamed or unlinked since it was opened.
pub fn reopen(file: &impl AsRawFd, flags: i32) -> io::Result<std::fs::File> {
    let c = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    // SAFETY: c is a valid C string; open returns a new fd we take ownership of.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by open and nobody else owns it.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn short_paths_are_plain() {
        let h = resolve(Path::new("/srv/onprem"), Path::new("a/b")).unwrap();
        assert_eq!(h.path(), Path::new("/srv/onprem/a/b"));
        let h = resolve(Path::new("/srv/onprem"), Path::new("")).unwrap();
        assert_eq!(h.path(), Path::new("/srv/onprem"));
    }

    #[test]
    fn paths_past_path_max_still_work() {
        let d = tempfile::tempdir().unwrap();
        let comp = "d".repeat(200);
        let mut rel = PathBuf::new();
        // 25 levels of 201 bytes: about 5000 bytes, past PATH_MAX.
        for _ in 0..25 {
            let h = resolve(d.path(), &rel).unwrap();
            let fd = open_dir(libc::AT_FDCWD, h.path()).unwrap();
            let c = CString::new(comp.as_bytes()).unwrap();
            // SAFETY: c is a valid C string and fd is open.
            let rc = unsafe { libc::mkdirat(fd.as_raw_fd(), c.as_ptr(), 0o755) };
            assert_eq!(rc, 0);
            rel.push(&comp);
        }
        rel.push("file");
        assert!(d.path().join(&rel).as_os_str().len() > PATH_LIMIT);
        let h = resolve(d.path(), &rel).unwrap();
        assert!(h.path().starts_with("/proc/self/fd"));
        fs::write(&h, b"deep").unwrap();
        assert_eq!(fs::read(&h).unwrap(), b"deep");
        let f = fs::File::open(&h).unwrap();
        drop(h);
        let w = reopen(&f, libc::O_WRONLY).unwrap();
        assert_eq!(w.metadata().unwrap().len(), 4);
    }
}
