//! One error type for the filesystem core: an errno, built at the edge where a syscall failed.

use std::io;

/// A failed filesystem operation, carrying the errno the caller sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsError(pub i32);

impl FsError {
    /// The errno of the last failed libc call.
    pub fn last() -> FsError {
        FsError::from(io::Error::last_os_error())
    }
}

impl From<io::Error> for FsError {
    fn from(e: io::Error) -> FsError {
        FsError(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

impl From<std::ffi::NulError> for FsError {
    fn from(_: std::ffi::NulError) -> FsError {
        FsError(libc::EINVAL)
    }
}

impl std::fmt::Display for FsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", io::Error::from_raw_os_error(self.0))
    }
}

impl std::error::Error for FsError {}

/// Result of a filesystem-core operation.
pub type FsResult<T> = Result<T, FsError>;

/// Turns a libc return code into a result.
pub fn check(rc: libc::c_int) -> FsResult<libc::c_int> {
    if rc < 0 { Err(FsError::last()) } else { Ok(rc) }
}
