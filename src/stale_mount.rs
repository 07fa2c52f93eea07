//! A dead cloudsync mount: the FUSE mount a daemon leaves behind when it is killed (`kill -9`,
//! the watchdog, a crash). Every access to it fails with `ENOTCONN` ("Transport endpoint is
//! not connected"), so a new mount on the same mount point could not even look at it. The
//! next `cloudsync mount` there detaches it first, and only it: a live mount, a hung one, or
//! anything that is not a cloudsync mount is left alone.

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The mount point is a dead cloudsync mount: what `Config::load` says of it, so that
/// `cloudsync mount` can detach it and try again.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot mount: {} is a dead cloudsync mount, left by a daemon that ended without unmounting (cloudsync mount detaches it; or run fusermount3 -uz {})",
    .0.display(),
    .0.display()
)]
pub struct DeadMount(pub PathBuf);

/// True when `path` is a cloudsync mount whose daemon is gone.
pub fn is_dead(path: &Path) -> bool {
    crate::mountinfo::entries()
        .iter()
        .any(|e| e.is_cloudsync() && e.mountpoint == path)
        && answers_not_connected(path)
}

/// Detaches the dead cloudsync mount at `path`, if that is what is there. Returns true when
/// it detached one; false when `path` is no dead cloudsync mount.
pub fn detach_if_dead(path: &Path) -> io::Result<bool> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    if !is_dead(&abs) {
        return Ok(false);
    }
    let c = CString::new(abs.as_os_str().as_encoded_bytes())?;
    // SAFETY: a valid C string. As root the kernel detaches it; otherwise fusermount3 may.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
        return Ok(true);
    }
    let st = Command::new("fusermount3").arg("-uz").arg(&abs).status()?;
    if st.success() {
        Ok(true)
    } else {
        Err(io::Error::other(format!(
            "fusermount3 -uz {} failed ({st})",
            abs.display()
        )))
    }
}

/// statfs always reaches the daemon (a stat may be answered from the kernel's cache): a dead
/// one makes it fail with ENOTCONN at once. A live daemon answers; a hung one makes it wait,
/// so it is asked from a thread and given up on after a few seconds.
fn answers_not_connected(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // SAFETY: statfs is plain data, for which all zeroes is a valid value.
        let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: a valid C string and a statfs buffer of the right size.
        let r = unsafe { libc::statfs(c.as_ptr(), &mut buf) };
        let errno = if r == 0 {
            0
        } else {
            io::Error::last_os_error().raw_os_error().unwrap_or(0)
        };
        let _ = tx.send(errno);
    });
    matches!(
        rx.recv_timeout(std::time::Duration::from_secs(5)),
        Ok(e) if e == libc::ENOTCONN
    )
}
