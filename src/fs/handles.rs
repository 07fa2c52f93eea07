//! Open files and folders: the table of file handles, and which inodes are open for writing.
//!
//! The sync engine asks [`OpenWriters`] before it pushes a file, so a file is never uploaded
//! while a writer still has it open through the mount.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// One open file.
#[derive(Debug)]
pub struct FileHandle {
    /// The open on-premise file.
    pub file: Arc<File>,
    /// The node id.
    pub ino: u64,
    /// The on-premise inode number, for [`OpenWriters`].
    pub st_ino: u64,
    /// Opened for writing.
    pub writable: bool,
}

/// One open folder: a snapshot of its entries taken at opendir.
#[derive(Debug)]
pub struct DirHandle {
    /// Name, node id, and `d_type`-style kind of each entry, `.` and `..` first.
    pub entries: Vec<(OsString, u64, u32)>,
}

/// Inodes that are open for writing, by on-premise inode number, and the gate between opens
/// for writing through the mount and the engine's replacements.
///
/// The engine replaces or removes an on-premise file (a download, a conflict copy, a cloud
/// delete or move) only under a [`Claim`] of its path, taken when no writer has the file open
/// and no open for writing of that path is under way. An open for writing of a claimed path
/// waits until the claim ends, a few system calls later, and then opens whatever is there: a
/// write through the mount never lands in a file the engine just took away.
#[derive(Debug, Default)]
pub struct OpenWriters {
    state: Mutex<WriterState>,
    released: Condvar,
}

#[derive(Debug, Default)]
struct WriterState {
    /// Per inode: how many handles have it open for writing, and since when one has.
    counts: HashMap<u64, (u32, std::time::Instant)>,
    opening: HashMap<String, u32>,
    claimed: HashSet<String>,
}

/// An engine's hold on one on-premise path; opens for writing of it wait until it is dropped.
#[derive(Debug)]
pub struct Claim<'a> {
    writers: &'a OpenWriters,
    path: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.writers.lock().claimed.remove(&self.path);
        self.writers.released.notify_all();
    }
}

/// An open for writing under way; the engine cannot claim its path meanwhile.
#[derive(Debug)]
pub struct Opening<'a> {
    writers: &'a OpenWriters,
    path: String,
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        let mut st = self.writers.lock();
        if let Some(n) = st.opening.get_mut(&self.path) {
            *n -= 1;
            if *n == 0 {
                st.opening.remove(&self.path);
            }
        }
    }
}

impl OpenWriters {
    fn lock(&self) -> std::sync::MutexGuard<'_, WriterState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, st_ino: u64) {
        self.lock()
            .counts
            .entry(st_ino)
            .or_insert((0, std::time::Instant::now()))
            .0 += 1;
    }

    fn remove(&self, st_ino: u64) {
        let mut st = self.lock();
        if let Some((n, _)) = st.counts.get_mut(&st_ino) {
            *n -= 1;
            if *n == 0 {
                st.counts.remove(&st_ino);
            }
        }
    }

    /// Since when the inode has been open for writing through the mount without a break
    /// (from the first of the handles open now), if it is.
    pub fn open_since(&self, st_ino: u64) -> Option<std::time::Instant> {
        self.lock().counts.get(&st_ino).map(|(_, t)| *t)
    }

    /// True while some process has the inode open for writing through the mount.
    pub fn is_open(&self, st_ino: u64) -> bool {
        self.lock().counts.contains_key(&st_ino)
    }

    /// Marks an open for writing of `path` as under way, first waiting for any claim of it to
    /// end. Keep the guard until the file is registered.
    pub fn opening(&self, path: &str) -> Opening<'_> {
        let mut st = self.lock();
        while st.claimed.contains(path) {
            st = self.released.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        *st.opening.entry(path.to_string()).or_default() += 1;
        Opening {
            writers: self,
            path: path.to_string(),
        }
    }

    /// Claims `path`, whose file has inode number `st_ino` (0 for none), for a replacement or
    /// removal: `None` while it is open for writing or being opened for writing.
    pub fn claim(&self, path: &str, st_ino: u64) -> Option<Claim<'_>> {
        let mut st = self.lock();
        if st.counts.contains_key(&st_ino)
            || st.opening.contains_key(path)
            || st.claimed.contains(path)
        {
            return None;
        }
        st.claimed.insert(path.to_string());
        Some(Claim {
            writers: self,
            path: path.to_string(),
        })
    }
}

/// The handle tables.
#[derive(Debug, Default)]
pub struct Handles {
    next: AtomicU64,
    files: Mutex<HashMap<u64, FileHandle>>,
    dirs: Mutex<HashMap<u64, Arc<DirHandle>>>,
    /// Shared with the sync engine.
    pub writers: Arc<OpenWriters>,
}

impl Handles {
    fn next(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Registers an open file and returns its handle number.
    pub fn add_file(&self, h: FileHandle) -> u64 {
        if h.writable {
            self.writers.add(h.st_ino);
        }
        let fh = self.next();
        self.files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fh, h);
        fh
    }

    /// The open file behind `fh`.
    pub fn file(&self, fh: u64) -> Option<(Arc<File>, u64)> {
        self.files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh)
            .map(|h| (h.file.clone(), h.ino))
    }

    /// Some open file of the node `ino`, if any.
    pub fn file_of(&self, ino: u64) -> Option<Arc<File>> {
        self.files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .find(|h| h.ino == ino)
            .map(|h| h.file.clone())
    }

    /// Closes `fh`, returning what it was.
    pub fn remove_file(&self, fh: u64) -> Option<FileHandle> {
        let h = self
            .files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh)?;
        if h.writable {
            self.writers.remove(h.st_ino);
        }
        Some(h)
    }

    /// Registers an open folder.
    pub fn add_dir(&self, d: DirHandle) -> u64 {
        let fh = self.next();
        self.dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fh, Arc::new(d));
        fh
    }

    /// The open folder behind `fh`.
    pub fn dir(&self, fh: u64) -> Option<Arc<DirHandle>> {
        self.dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fh)
            .cloned()
    }

    /// Closes a folder handle.
    pub fn remove_dir(&self, fh: u64) {
        self.dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh);
    }

    /// Number of open files.
    pub fn open_files(&self) -> usize {
        self.files.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn opens_for_writing_and_claims_exclude_each_other() {
        let w = Arc::new(OpenWriters::default());
        // A claim is refused while the file is open for writing, or being opened.
        w.add(7);
        assert!(w.claim("a", 7).is_none());
        w.remove(7);
        let opening = w.opening("a");
        assert!(w.claim("a", 7).is_none());
        drop(opening);
        // An open for writing waits until the claim ends.
        let claim = w.claim("a", 7).unwrap();
        assert!(w.claim("a", 7).is_none(), "one claim at a time");
        let (tx, rx) = std::sync::mpsc::channel();
        let w2 = w.clone();
        let t = std::thread::spawn(move || {
            let _o = w2.opening("a");
            tx.send(()).unwrap();
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "waits"
        );
        drop(claim);
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        t.join().unwrap();
        assert!(w.claim("b", 0).is_some(), "other paths are free");
    }
}
