//! The `file://` cloud: a directory that stands for the cloud, such as a NAS share.
//!
//! Writes are atomic (a hidden temporary file in the target folder, fsync, then rename), and the
//! ETag is derived from size, mtime and inode, so a change made by anyone else to the directory
//! is noticed. Conditions are checked just before the rename; the window between the check and
//! the rename is documented in `doc/SEMANTICS.md`.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{Cloud, CloudEntry, CloudError, Listing, Precondition, Uploaded, check_rel_path};

/// Prefix of the temporary files this backend writes; they are never listed.
const TMP_PREFIX: &str = ".cloudsync-tmp-";

/// A directory used as the cloud.
#[derive(Debug)]
pub struct DirCloud {
    root: PathBuf,
}

impl DirCloud {
    /// Uses `root` as the cloud. It must exist and be a directory.
    pub fn new(root: &Path) -> anyhow::Result<DirCloud> {
        let meta = fs::metadata(root).map_err(|e| {
            anyhow::anyhow!(
                "cloud directory {} is not usable: {e} (create it, or fix the --cloud URL)",
                root.display()
            )
        })?;
        if !meta.is_dir() {
            anyhow::bail!("cloud path {} is not a directory", root.display());
        }
        Ok(DirCloud {
            root: root.to_path_buf(),
        })
    }

    fn full(&self, path: &str) -> Result<PathBuf, CloudError> {
        check_rel_path(path)?;
        Ok(if path.is_empty() {
            self.root.clone()
        } else {
            self.root.join(path)
        })
    }
}

/// The ETag of a file in the directory cloud.
fn etag_of(meta: &fs::Metadata) -> String {
    format!(
        "\"{:x}-{:x}-{:x}\"",
        meta.size(),
        meta.mtime() as u64 * 1_000_000_000 + meta.mtime_nsec() as u64,
        meta.ino()
    )
}

fn entry_of(path: String, meta: &fs::Metadata) -> CloudEntry {
    CloudEntry {
        path,
        is_dir: meta.is_dir(),
        size: if meta.is_dir() { 0 } else { meta.size() },
        mtime: meta.modified().ok(),
        etag: (!meta.is_dir()).then(|| etag_of(meta)),
        // The inode: a rename keeps it, so a folder moved in this cloud keeps its id.
        file_id: Some(format!("{:x}:{:x}", meta.dev(), meta.ino())),
    }
}

fn map_io(e: io::Error) -> CloudError {
    match e.kind() {
        io::ErrorKind::NotFound => CloudError::NotFound,
        io::ErrorKind::PermissionDenied => CloudError::Forbidden,
        io::ErrorKind::StorageFull => CloudError::InsufficientStorage,
        io::ErrorKind::InvalidFilename => CloudError::InvalidName(e.to_string()),
        _ => match e.raw_os_error() {
            Some(libc::ENAMETOOLONG) | Some(libc::EILSEQ) => CloudError::InvalidName(e.to_string()),
            Some(libc::ENOTDIR) => CloudError::MissingParent,
            Some(libc::EDQUOT) => CloudError::InsufficientStorage,
            // An unmounted share or a flaky NAS: worth retrying.
            Some(libc::EIO) | Some(libc::ESTALE) | Some(libc::ENOTCONN) | Some(libc::EHOSTDOWN) => {
                CloudError::Transport(e.to_string())
            }
            _ => CloudError::Io(e),
        },
    }
}

fn check_cond(target: &Path, cond: &Precondition) -> Result<(), CloudError> {
    let current = match fs::symlink_metadata(target) {
        Ok(m) => Some(m),
        Err(e) if is_missing(&e) => None,
        Err(e) => return Err(map_io(e)),
    };
    match (cond, current) {
        (Precondition::None, _) => Ok(()),
        (Precondition::IfNoneMatch, None) => Ok(()),
        (Precondition::IfNoneMatch, Some(_)) => Err(CloudError::PreconditionFailed),
        (Precondition::IfMatch(_), None) => Err(CloudError::NotFound),
        (Precondition::IfMatch(tag), Some(m)) => {
            if !m.is_dir() && &etag_of(&m) == tag {
                Ok(())
            } else {
                Err(CloudError::PreconditionFailed)
            }
        }
    }
}

/// True when `e` says that nothing is at the path: it is missing, or a file stands where one
/// of its folders should be.
fn is_missing(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

/// Creates the folder `full` and its missing parents below the root, mode 0755. A file where a
/// folder should be is in the way: `PreconditionFailed`.
fn make_dirs(root: &Path, full: &Path) -> Result<(), CloudError> {
    use std::os::unix::fs::DirBuilderExt;
    let rel = full.strip_prefix(root).map_err(|_| {
        CloudError::Protocol(format!("{} is not below the cloud root", full.display()))
    })?;
    let mut p = root.to_path_buf();
    for comp in rel.components() {
        p.push(comp);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => return Err(CloudError::PreconditionFailed),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(map_io(e)),
        }
        match fs::DirBuilder::new().mode(0o755).create(&p) {
            Ok(()) => {}
            // Made meanwhile by someone else: fine when it is a folder.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && p.is_dir() => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(CloudError::PreconditionFailed);
            }
            Err(e) => return Err(map_io(e)),
        }
    }
    Ok(())
}

/// Runs blocking filesystem work off the async executor.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CloudError> + Send + 'static,
) -> Result<T, CloudError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CloudError::Io(io::Error::other(e)))?
}

/// True for a temporary file `PREFIX<pid>-…` whose writer process is gone.
pub fn is_stale_tmp(name: &str, prefix: &str) -> bool {
    let Some(rest) = name.strip_prefix(prefix) else {
        return false;
    };
    let pid = rest.split('-').next().unwrap_or_default();
    pid.parse::<u32>()
        .is_ok_and(|pid| pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists())
}

/// Creates (or truncates) a file with mode 0644, whatever the process umask.
fn new_file(p: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(p)
}

fn tmp_name(dir: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    dir.join(format!(
        "{TMP_PREFIX}{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

#[async_trait]
impl Cloud for DirCloud {
    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }

    async fn stat(&self, path: &str) -> Result<Option<CloudEntry>, CloudError> {
        let full = self.full(path)?;
        let path = path.to_string();
        blocking(move || match fs::symlink_metadata(&full) {
            Ok(m) => Ok(Some(entry_of(path, &m))),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(map_io(e)),
        })
        .await
    }

    /// Names that are not UTF-8, symbolic links and special files are not listed, and
    /// neither are temporary files of uploads under way; all of them are counted as skipped.
    async fn list(&self, path: &str) -> Result<Listing, CloudError> {
        let full = self.full(path)?;
        let path = path.to_string();
        blocking(move || {
            match fs::symlink_metadata(&full) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(CloudError::Status {
                        status: 409,
                        detail: format!("{path} is a file, not a folder"),
                    });
                }
                Err(e) if is_missing(&e) => return Err(CloudError::NotFound),
                Err(e) => return Err(map_io(e)),
            }
            let mut out = Listing::default();
            for de in fs::read_dir(&full).map_err(map_io)? {
                let de = de.map_err(map_io)?;
                let Some(name) = de.file_name().to_str().map(str::to_string) else {
                    tracing::warn!(dir = %full.display(), "skipping a cloud name that is not UTF-8");
                    out.skipped
                        .push(de.file_name().to_string_lossy().into_owned());
                    continue;
                };
                if name.starts_with(TMP_PREFIX) {
                    if is_stale_tmp(&name, TMP_PREFIX) {
                        // Left by a writer that died mid-upload.
                        let _ = fs::remove_file(de.path());
                    } else {
                        // An upload under way: not an item yet, but not ours to delete.
                        out.skipped.push(name);
                    }
                    continue;
                }
                let meta = match de.metadata() {
                    Ok(m) => m,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(map_io(e)),
                };
                if !(meta.is_dir() || meta.is_file()) {
                    tracing::debug!(dir = %full.display(), name, "skipping a cloud item that is neither a file nor a folder");
                    out.skipped.push(name);
                    continue;
                }
                out.entries.push(entry_of(super::join(&path, &name), &meta));
            }
            Ok(out)
        })
        .await
    }

    async fn upload(
        &self,
        path: &str,
        src: &fs::File,
        cond: &Precondition,
    ) -> Result<Uploaded, CloudError> {
        if path.is_empty() {
            return Err(CloudError::Protocol(
                "refusing to write the cloud root itself".into(),
            ));
        }
        let target = self.full(path)?;
        let root = self.root.clone();
        let src = src.try_clone()?;
        let cond = cond.clone();
        blocking(move || {
            let dir = target.parent().ok_or(CloudError::MissingParent)?;
            if !dir.is_dir() {
                // An update of an item that is not there, or a new item whose folders are made.
                check_cond(&target, &cond)?;
                make_dirs(&root, dir)?;
            }
            let tmp = tmp_name(dir);
            let result = (|| {
                let mut input = &src;
                io::Seek::seek(&mut input, io::SeekFrom::Start(0)).map_err(CloudError::Io)?;
                let mut out = new_file(&tmp).map_err(map_io)?;
                io::copy(&mut input, &mut out).map_err(map_io)?;
                out.sync_all().map_err(map_io)?;
                check_cond(&target, &cond)?;
                fs::rename(&tmp, &target).map_err(map_io)?;
                let meta = fs::symlink_metadata(&target).map_err(map_io)?;
                Ok(Uploaded {
                    etag: Some(etag_of(&meta)),
                    hash: None,
                })
            })();
            if result.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            result
        })
        .await
    }

    async fn get_file(&self, path: &str, dest: &fs::File) -> Result<CloudEntry, CloudError> {
        let full = self.full(path)?;
        let dest = dest.try_clone()?;
        let path = path.to_string();
        blocking(move || {
            let mut input = fs::File::open(&full).map_err(map_io)?;
            let meta = input.metadata().map_err(map_io)?;
            if meta.is_dir() {
                return Err(CloudError::Status {
                    status: 409,
                    detail: format!("{path} is a folder"),
                });
            }
            let mut out = &dest;
            out.set_len(0).map_err(CloudError::Io)?;
            io::Seek::seek(&mut out, io::SeekFrom::Start(0)).map_err(CloudError::Io)?;
            io::copy(&mut input, &mut out).map_err(CloudError::Io)?;
            Ok(entry_of(path, &meta))
        })
        .await
    }

    async fn mkdir(&self, path: &str) -> Result<(), CloudError> {
        let full = self.full(path)?;
        let root = self.root.clone();
        blocking(move || make_dirs(&root, &full)).await
    }

    async fn delete(&self, path: &str, cond: &Precondition) -> Result<(), CloudError> {
        if path.is_empty() {
            return Err(CloudError::Protocol(
                "refusing to delete the cloud root".into(),
            ));
        }
        let full = self.full(path)?;
        let cond = cond.clone();
        blocking(move || {
            let meta = match fs::symlink_metadata(&full) {
                Ok(m) => m,
                Err(e) if is_missing(&e) => return Err(CloudError::NotFound),
                Err(e) => return Err(map_io(e)),
            };
            if meta.is_dir() {
                // Folders here have no ETag: `IfMatch` only asks that the folder is there.
                if cond == Precondition::IfNoneMatch {
                    return Err(CloudError::PreconditionFailed);
                }
                fs::remove_dir_all(&full).map_err(map_io)
            } else {
                check_cond(&full, &cond)?;
                fs::remove_file(&full).map_err(map_io)
            }
        })
        .await
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), CloudError> {
        let src = self.full(from)?;
        let dst = self.full(to)?;
        blocking(move || {
            if !dst.parent().is_some_and(Path::is_dir) {
                return Err(CloudError::MissingParent);
            }
            // renameat2(RENAME_NOREPLACE) makes "fails when the target exists" atomic.
            let c = |p: &Path| {
                std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()))
                    .map_err(|_| CloudError::InvalidName(p.display().to_string()))
            };
            let (a, b) = (c(&src)?, c(&dst)?);
            // SAFETY: both pointers are valid NUL-terminated strings that outlive the call.
            let rc = unsafe {
                libc::renameat2(
                    libc::AT_FDCWD,
                    a.as_ptr(),
                    libc::AT_FDCWD,
                    b.as_ptr(),
                    libc::RENAME_NOREPLACE,
                )
            };
            if rc == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EEXIST) {
                Err(CloudError::PreconditionFailed)
            } else {
                Err(map_io(e))
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conditional_put_and_move() {
        let d = tempfile::tempdir().unwrap();
        let src = tempfile::NamedTempFile::new().unwrap();
        fs::write(src.path(), b"one").unwrap();
        let c = DirCloud::new(d.path()).unwrap();
        let tag = c
            .upload("a.txt", src.as_file(), &Precondition::IfNoneMatch)
            .await
            .unwrap()
            .etag
            .unwrap();
        // A second create must not overwrite.
        assert!(matches!(
            c.upload("a.txt", src.as_file(), &Precondition::IfNoneMatch)
                .await,
            Err(CloudError::PreconditionFailed)
        ));
        // An update with a stale tag must not overwrite.
        assert!(matches!(
            c.upload(
                "a.txt",
                src.as_file(),
                &Precondition::IfMatch("\"x\"".into())
            )
            .await,
            Err(CloudError::PreconditionFailed)
        ));
        fs::write(src.path(), b"two").unwrap();
        c.upload("a.txt", src.as_file(), &Precondition::IfMatch(tag))
            .await
            .unwrap();
        assert_eq!(fs::read(d.path().join("a.txt")).unwrap(), b"two");
        c.mkdir("x/y").await.unwrap();
        c.rename("a.txt", "x/y/b.txt").await.unwrap();
        // A missing parent is made, as on every cloud (it used to be MissingParent here).
        c.upload("nope/z", src.as_file(), &Precondition::None)
            .await
            .unwrap();
        assert!(d.path().join("nope/z").is_file());
        assert!(matches!(
            c.rename("x/y/b.txt", "none/b.txt").await,
            Err(CloudError::MissingParent)
        ));
        let l = c.list("x/y").await.unwrap();
        assert_eq!(l.entries.len(), 1);
        assert_eq!(l.entries[0].path, "x/y/b.txt");
        assert!(l.is_complete());
        assert!(c.stat("../etc").await.is_err());
        c.delete("x", &Precondition::None).await.unwrap();
        assert!(c.stat("x").await.unwrap().is_none());
    }

    /// The outcomes the trait documents, where a plain directory would say something else
    /// (ENOTDIR, a missing parent, a folder delete without a look at the condition).
    #[tokio::test]
    async fn outcomes_agree_with_the_trait() {
        let d = tempfile::tempdir().unwrap();
        let src = tempfile::NamedTempFile::new().unwrap();
        fs::write(src.path(), b"x").unwrap();
        let c = DirCloud::new(d.path()).unwrap();
        let f = src.as_file();
        // Missing parents are made, unless the upload is an update.
        c.upload("a/b/c.txt", f, &Precondition::IfNoneMatch)
            .await
            .unwrap();
        assert_eq!(fs::read(d.path().join("a/b/c.txt")).unwrap(), b"x");
        assert!(matches!(
            c.upload("n/o/c.txt", f, &Precondition::IfMatch("\"t\"".into()))
                .await,
            Err(CloudError::NotFound)
        ));
        assert!(!d.path().join("n").exists());
        // A file where a folder should be.
        assert_eq!(c.stat("a/b/c.txt/x").await.unwrap(), None);
        assert!(matches!(
            c.upload("a/b/c.txt/x", f, &Precondition::None).await,
            Err(CloudError::PreconditionFailed)
        ));
        assert!(matches!(
            c.mkdir("a/b/c.txt/x").await,
            Err(CloudError::PreconditionFailed)
        ));
        assert!(matches!(
            c.list("a/b/c.txt").await,
            Err(CloudError::Status { status: 409, .. })
        ));
        assert!(matches!(
            c.list("a/b/c.txt/x").await,
            Err(CloudError::NotFound)
        ));
        // Folder deletes look at the condition too.
        assert!(matches!(
            c.delete("a", &Precondition::IfNoneMatch).await,
            Err(CloudError::PreconditionFailed)
        ));
        assert!(matches!(
            c.delete("a/b/c.txt/x", &Precondition::None).await,
            Err(CloudError::NotFound)
        ));
        c.delete("a", &Precondition::IfMatch("\"any\"".into()))
            .await
            .unwrap();
        assert!(!d.path().join("a").exists());
        assert!(matches!(
            c.upload("", f, &Precondition::None).await,
            Err(CloudError::Protocol(_))
        ));
    }

    /// What a listing cannot show is counted, so that a folder delete knows it is not alone.
    #[tokio::test]
    async fn listing_counts_what_it_cannot_show() {
        use std::os::unix::ffi::OsStrExt;
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("sub")).unwrap();
        fs::write(d.path().join("ok.txt"), b"x").unwrap();
        fs::write(
            d.path().join(std::ffi::OsStr::from_bytes(b"bad-\xff.txt")),
            b"x",
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("link")).unwrap();
        let fifo = std::ffi::CString::new(d.path().join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: fifo is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let c = DirCloud::new(d.path()).unwrap();
        let mut l = c.list("").await.unwrap();
        let mut names: Vec<_> = l.entries.iter().map(|e| e.path.as_str()).collect();
        names.sort();
        assert_eq!(names, ["ok.txt", "sub"]);
        l.skipped.sort();
        assert_eq!(l.skipped, ["bad-\u{fffd}.txt", "fifo", "link"]);
        assert!(!l.is_complete());
        assert!(c.list("sub").await.unwrap().is_complete());
    }
}
