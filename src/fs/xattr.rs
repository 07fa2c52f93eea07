//! Extended attributes: the virtual, reserved `user.cloudsync.*` namespace, and every other name
//! passed through to the on-premise file.
//!
//! Reserved names are answered from the sync engine and never reach the on-premise folder;
//! writing or removing them fails with `EPERM`.

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::error::{FsError, FsResult};
use crate::status::XATTR_PREFIX;

/// True for names in the reserved namespace.
pub fn is_reserved(name: &OsStr) -> bool {
    name.as_bytes().starts_with(XATTR_PREFIX.as_bytes())
}

fn cpath(p: &Path) -> FsResult<CString> {
    Ok(CString::new(p.as_os_str().as_bytes())?)
}

/// Reads a real xattr of the on-premise file (without following a symlink).
pub fn get(path: &Path, name: &OsStr) -> FsResult<Vec<u8>> {
    let p = cpath(path)?;
    let n = CString::new(name.as_bytes())?;
    loop {
        // SAFETY: p and n are valid C strings; a null buffer with size 0 asks for the size.
        let size = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
        if size < 0 {
            return Err(FsError::last());
        }
        let mut buf = vec![0u8; size as usize];
        // SAFETY: buf has exactly buf.len() writable bytes.
        let got =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if got < 0 {
            let e = FsError::last();
            if e.0 == libc::ERANGE {
                continue; // it grew between the two calls
            }
            return Err(e);
        }
        buf.truncate(got as usize);
        return Ok(buf);
    }
}

/// Writes a real xattr of the on-premise file.
pub fn set(path: &Path, name: &OsStr, value: &[u8], flags: i32) -> FsResult<()> {
    let p = cpath(path)?;
    let n = CString::new(name.as_bytes())?;
    // SAFETY: valid C strings, and value is a valid buffer of value.len() bytes.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    super::error::check(rc).map(|_| ())
}

/// Lists the real xattr names of the on-premise file, NUL-separated.
pub fn list(path: &Path) -> FsResult<Vec<u8>> {
    let p = cpath(path)?;
    loop {
        // SAFETY: valid C string; a null buffer with size 0 asks for the size.
        let size = unsafe { libc::llistxattr(p.as_ptr(), std::ptr::null_mut(), 0) };
        if size < 0 {
            return Err(FsError::last());
        }
        let mut buf = vec![0u8; size as usize];
        // SAFETY: buf has exactly buf.len() writable bytes.
        let got = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if got < 0 {
            let e = FsError::last();
            if e.0 == libc::ERANGE {
                continue;
            }
            return Err(e);
        }
        buf.truncate(got as usize);
        // Never show reserved names that somebody wrote straight into the folder.
        let mut out = Vec::with_capacity(buf.len());
        for name in buf.split(|b| *b == 0).filter(|n| !n.is_empty()) {
            if !is_reserved(OsStr::from_bytes(name)) {
                out.extend_from_slice(name);
                out.push(0);
            }
        }
        return Ok(out);
    }
}

/// Removes a real xattr of the on-premise file.
pub fn remove(path: &Path, name: &OsStr) -> FsResult<()> {
    let p = cpath(path)?;
    let n = CString::new(name.as_bytes())?;
    // SAFETY: valid C strings.
    let rc = unsafe { libc::lremovexattr(p.as_ptr(), n.as_ptr()) };
    super::error::check(rc).map(|_| ())
}
