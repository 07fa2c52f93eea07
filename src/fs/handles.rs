//! Open files and folders: the table of file handles, and which inodes are open for writing.
//!
//! The sync engine asks [`OpenWriters`] before it pushes a file, so a file is never uploaded
//! while a writer still has it open through the mount.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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

/// Inodes that are open for writing, by on-premise inode number.
#[derive(Debug, Default)]
pub struct OpenWriters {
    counts: Mutex<HashMap<u64, u32>>,
}

impl OpenWriters {
    fn add(&self, st_ino: u64) {
        *self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(st_ino)
            .or_default() += 1;
    }

    fn remove(&self, st_ino: u64) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = c.get_mut(&st_ino) {
            *n -= 1;
            if *n == 0 {
                c.remove(&st_ino);
            }
        }
    }

    /// True while some process has the inode open for writing through the mount.
    pub fn is_open(&self, st_ino: u64) -> bool {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&st_ino)
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
