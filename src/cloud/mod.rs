//! The cloud side behind one trait: `file://` directories, WebDAV servers and S3 buckets.
//!
//! Paths given to a [`Cloud`] are relative to the synced root, use `/` as separator, have no
//! leading or trailing slash, and `""` is the root itself. [`check_rel_path`] is the single gate
//! that every path coming *from* a server passes before the engine acts on it; every backend
//! also refuses a path going *to* it that fails the gate, with `CloudError::Protocol`, before
//! anything reaches the cloud.
//!
//! What each operation promises is written on the trait, and `tests/contract.rs` holds every
//! backend to it.

mod body;
pub mod dir;
mod http;
pub mod mem;
pub mod s3;
pub mod webdav;

use std::path::Path;
use std::time::SystemTime;

use async_trait::async_trait;

use crate::status::FailureCode;

/// One item as the cloud reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudEntry {
    /// Path relative to the synced root.
    pub path: String,
    /// A folder (collection) rather than a file.
    pub is_dir: bool,
    /// Content length in bytes; 0 for folders.
    pub size: u64,
    /// Last modification time, where the cloud reports one.
    pub mtime: Option<SystemTime>,
    /// Entity tag, where the cloud reports one. Weak tags keep their `W/` prefix.
    pub etag: Option<String>,
    /// The cloud's stable id of the item, where it has one (`oc:fileid` on Nextcloud and
    /// ownCloud, the inode on `file://`): it stays with the item through renames and moves,
    /// so a folder moved in the cloud is recognised by it. `None` for clouds without ids.
    pub file_id: Option<String>,
}

/// What a folder listing found: the entries it understood, and what it could not show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing<T = CloudEntry> {
    /// The direct children that were understood, each with a checked path.
    pub entries: Vec<T>,
    /// The children the listing saw but cannot represent, as raw (lossy) names or hrefs: a
    /// name that is not UTF-8, a symbolic link or special file, a refused href, an answer
    /// without properties. They exist in the cloud, so a delete of the folder in one request
    /// would delete them too.
    pub skipped: Vec<String>,
    /// The cloud paths of files hidden by a folder of the same name (an object store may hold
    /// a key `x` and keys `x/…`): the folder is listed, the file is among `skipped` too.
    pub clashes: Vec<String>,
}

impl<T> Default for Listing<T> {
    fn default() -> Self {
        Listing {
            entries: Vec::new(),
            skipped: Vec::new(),
            clashes: Vec::new(),
        }
    }
}

impl<T> Listing<T> {
    /// True when nothing was skipped: the entries are all there is.
    pub fn is_complete(&self) -> bool {
        self.skipped.is_empty()
    }
}

/// What a listing of a whole subtree in one pass found ([`Cloud::list_tree`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subtree {
    /// Every item below the folder (never the folder itself), each with a checked path, in no
    /// set order: files, and every folder, also those that exist only by what lies below
    /// them. Folders carry no ETag.
    pub entries: Vec<CloudEntry>,
    /// What the listing saw but cannot represent, as for [`Listing::skipped`].
    pub skipped: Vec<String>,
    /// Files hidden by a folder of the same name, as for [`Listing::clashes`].
    pub clashes: Vec<String>,
    /// Requests sent.
    pub requests: u64,
}

/// A condition on a write, so that a newer cloud version is never silently overwritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// Write whatever is there. Only for items the journal has never seen in the cloud and
    /// where the backend cannot express a condition.
    None,
    /// The cloud copy must still carry this ETag (`If-Match`).
    IfMatch(String),
    /// The item must not exist yet (`If-None-Match: *`).
    IfNoneMatch,
}

/// What a cloud call can end in. Server answers are kept apart from transport trouble, so the
/// retry policy reads the variant and never parses strings.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// The item does not exist (404).
    #[error("not found in the cloud")]
    NotFound,
    /// The cloud copy changed since the last sync, or the target already exists (412).
    #[error("the cloud copy changed since the last sync (precondition failed)")]
    PreconditionFailed,
    /// Credentials were refused (401).
    #[error("the server refused the credentials (401); check --user and the password file")]
    Unauthorized,
    /// The user may not do this (403).
    #[error("access denied by the server (403)")]
    Forbidden,
    /// A parent folder is missing (409).
    #[error("a parent folder is missing in the cloud (409)")]
    MissingParent,
    /// The file is larger than the server accepts (413).
    #[error("the server refuses content this large (413)")]
    ContentTooLarge,
    /// The account is out of space (507).
    #[error("the cloud account is out of space (507)")]
    InsufficientStorage,
    /// The cloud refuses the name.
    #[error("the cloud rejects the name: {0}")]
    InvalidName(String),
    /// The server answered with an error status that is not transient.
    #[error("the server answered {status}: {detail}")]
    Status {
        /// HTTP status code.
        status: u16,
        /// First line of the body or the reason phrase.
        detail: String,
    },
    /// The server is unavailable (5xx) or overloaded; worth retrying.
    #[error("the server is unavailable ({status}); will retry")]
    Unavailable {
        /// HTTP status code.
        status: u16,
    },
    /// The server could not be reached or the connection broke; worth retrying.
    #[error("cannot reach the cloud: {0}")]
    Transport(String),
    /// No connection to the server could be made (refused, no route, TLS handshake cut), so
    /// nothing of the request was sent; worth retrying.
    #[error("cannot connect to the cloud: {0}")]
    Unreachable(String),
    /// The server's answer made no sense or was hostile; refused.
    #[error("refused a malformed server answer: {0}")]
    Protocol(String),
    /// Reading or writing the local side failed.
    #[error("local I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl CloudError {
    /// Transient trouble means `offline` and a retry with backoff, never `failed`.
    pub fn is_transient(&self) -> bool {
        match self {
            CloudError::Unavailable { .. }
            | CloudError::Transport(_)
            | CloudError::Unreachable(_) => true,
            CloudError::Io(e) => matches!(
                e.kind(),
                std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
            ),
            CloudError::NotFound
            | CloudError::PreconditionFailed
            | CloudError::Unauthorized
            | CloudError::Forbidden
            | CloudError::MissingParent
            | CloudError::ContentTooLarge
            | CloudError::InsufficientStorage
            | CloudError::InvalidName(_)
            | CloudError::Status { .. }
            | CloudError::Protocol(_) => false,
        }
    }

    /// The failure code a permanent error is reported with.
    pub fn failure_code(&self) -> FailureCode {
        match self {
            CloudError::Unauthorized => FailureCode::AuthenticationError,
            CloudError::Forbidden => FailureCode::AccessDenied,
            CloudError::ContentTooLarge => FailureCode::ContentLimit,
            CloudError::InsufficientStorage => FailureCode::QuotaLimit,
            CloudError::InvalidName(_) => FailureCode::InvalidName,
            CloudError::PreconditionFailed => FailureCode::NameClash,
            CloudError::MissingParent => FailureCode::TargetNoLongerExists,
            CloudError::NotFound
            | CloudError::Status { .. }
            | CloudError::Unavailable { .. }
            | CloudError::Transport(_)
            | CloudError::Unreachable(_)
            | CloudError::Protocol(_)
            | CloudError::Io(_) => FailureCode::Unknown,
        }
    }
}

/// What an upload reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uploaded {
    /// The new ETag, when the cloud has one.
    pub etag: Option<String>,
    /// The BLAKE3 hash (hex) of the bytes sent, when the backend computed it on the way.
    pub hash: Option<String>,
}

/// One finished part of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartDone {
    /// Its number, from 1.
    pub number: u16,
    /// The ETag the store gave it.
    pub etag: String,
    /// The BLAKE3 hash (hex) of its bytes, so a resume can tell it still matches the file.
    pub hash: String,
}

/// A multipart upload under way, as the ledger keeps it so that a restart resumes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartUpload {
    /// The cloud path uploaded to.
    pub path: String,
    /// The store's id of the upload.
    pub upload_id: String,
    /// The size of the whole file.
    pub size: u64,
    /// The size of every part but the last.
    pub part_size: u64,
    /// The condition the upload completes under.
    pub precondition: Precondition,
    /// The parts done so far.
    pub parts: Vec<PartDone>,
}

/// An object that a folder move under way has copied to the new name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedObject {
    /// Its key below the folder (the same below the old and the new name).
    pub rel: String,
    /// The ETag of the source that was copied.
    pub source_etag: String,
    /// The ETag of the copy, when the store gave one.
    pub copy_etag: Option<String>,
}

/// Where a cloud keeps its resumable work across restarts (the journal): multipart uploads
/// with their parts, and folder moves with the objects already copied. A cloud without one
/// still uploads and moves; it just starts over after a restart.
pub trait UploadLedger: Send + Sync {
    /// The upload under way to `path`, if one is recorded.
    fn upload(&self, path: &str) -> std::io::Result<Option<MultipartUpload>>;
    /// Records a new upload (no parts yet), replacing any earlier one of its path.
    fn begin(&self, up: &MultipartUpload) -> std::io::Result<()>;
    /// Records a finished part of the upload `upload_id` of `path`.
    fn part_done(&self, path: &str, upload_id: &str, part: &PartDone) -> std::io::Result<()>;
    /// Forgets the upload `upload_id` (completed or aborted).
    fn end(&self, upload_id: &str) -> std::io::Result<()>;
    /// The recorded uploads that nothing waits for any more (their path has no pending
    /// upload), to be aborted.
    fn abandoned(&self) -> std::io::Result<Vec<MultipartUpload>>;
    /// The objects already copied by the folder move from `from` to `to`, if that move is
    /// under way (begun by an earlier run that did not finish it).
    fn move_plan(&self, from: &str, to: &str) -> std::io::Result<Option<Vec<MovedObject>>>;
    /// Records that the folder move from `from` to `to` has begun.
    fn begin_move(&self, from: &str, to: &str) -> std::io::Result<()>;
    /// Records an object the folder move from `from` to `to` has copied.
    fn object_copied(&self, from: &str, to: &str, object: &MovedObject) -> std::io::Result<()>;
    /// Forgets the folder move from `from` to `to`.
    fn end_move(&self, from: &str, to: &str) -> std::io::Result<()>;
}

/// The operations the sync engine needs from any cloud.
#[async_trait]
pub trait Cloud: Send + Sync {
    /// A description for logs and status, never containing credentials.
    fn describe(&self) -> String;

    /// The URL of the synced root, never containing credentials: a cloud path appended to it
    /// (percent-encoded) is where the item lives.
    fn url(&self) -> String {
        self.describe()
    }

    /// The item at `path`, or `None` when it does not exist: also when a folder on the way is
    /// missing or is a file.
    async fn stat(&self, path: &str) -> Result<Option<CloudEntry>, CloudError>;

    /// The direct children of the folder at `path` (never the folder itself, never anything
    /// deeper), and what of them could not be shown. `NotFound` when nothing is at `path`;
    /// `Status { status: 409, .. }` when it is a file.
    async fn list(&self, path: &str) -> Result<Listing, CloudError>;

    /// Streams the open local file `src` (from its start) to `path` under `cond`, never
    /// holding it whole in memory, and reports the new ETag when the cloud has one, and the
    /// hash of what was sent when the backend computes it on the way
    /// ([`Cloud::hashes_uploads`]), which spares the caller a read of the file before the
    /// upload. The engine opens `src` through [`crate::onprem::Onprem`], so no cloud reads a
    /// path itself.
    ///
    /// Outcomes every backend agrees on:
    /// - `IfNoneMatch` when anything (file or folder) is at `path`: `PreconditionFailed`.
    /// - `IfMatch` when the file carries another tag, or a folder is at `path`:
    ///   `PreconditionFailed`; when nothing is at `path` (whether or not its folder exists):
    ///   `NotFound`. A weak tag matches its strong form. Nothing is written in these cases.
    /// - Without `IfMatch`, missing parent folders are created; a file where one of them should
    ///   be is `PreconditionFailed`.
    /// - A name the backend cannot store is `InvalidName`.
    /// - Every write of new content gives a new ETag.
    async fn upload(
        &self,
        path: &str,
        src: &std::fs::File,
        cond: &Precondition,
    ) -> Result<Uploaded, CloudError>;

    /// True when [`Cloud::upload`] reports the content hash of every complete upload.
    fn hashes_uploads(&self) -> bool {
        false
    }

    /// Streams the cloud file at `path` into the open local file `dest`, from its start
    /// (what it held before is cut off), and reports the item as downloaded, with the ETag of
    /// what was received. `NotFound` when there is no file, and then `dest` is left alone.
    /// The content is written, not synced: making it durable is the caller's part.
    async fn get_file(&self, path: &str, dest: &std::fs::File) -> Result<CloudEntry, CloudError>;

    /// Creates the folder at `path` and any missing parents; an existing folder (the root
    /// too) is fine. A file at `path` or where one of its parents should be is
    /// `PreconditionFailed`; a name the backend cannot store is `InvalidName`.
    async fn mkdir(&self, path: &str) -> Result<(), CloudError>;

    /// Deletes the item at `path` (a folder with everything in it, in one call) under `cond`.
    /// `NotFound` when nothing is there, whatever `cond`; `IfNoneMatch` on an existing item is
    /// `PreconditionFailed`. `IfMatch` compares the item's ETag as for uploads; a folder is
    /// compared only where the backend reports folder ETags, elsewhere it only has to exist.
    /// The root is never deleted (`Protocol`).
    async fn delete(&self, path: &str, cond: &Precondition) -> Result<(), CloudError>;

    /// Moves `from` (a file, or a folder with all it holds) to `to` in one step. Fails with
    /// `PreconditionFailed` when anything is at `to`, `NotFound` when nothing is at `from`,
    /// `MissingParent` when the folder of `to` does not exist, and `InvalidName` when the
    /// backend cannot store the new name.
    async fn rename(&self, from: &str, to: &str) -> Result<(), CloudError>;

    /// Everything below the folder at `path`, in one pass, where the cloud lists a whole tree
    /// more cheaply than folder by folder (an object store's flat, paginated listing of a
    /// prefix); `None` where it does not, and the caller lists folder by folder with
    /// [`Cloud::list`]. The same paths pass the same checks as in [`Cloud::list`] (a key that
    /// fails them is skipped, never shown), and a file and a folder of one name show the folder.
    /// `NotFound` when nothing is at `path`; `Status { status: 409, .. }` when it is a file.
    async fn list_tree(&self, path: &str) -> Option<Result<Subtree, CloudError>> {
        let _ = path;
        None
    }

    /// True when a folder's ETag changes whenever anything below it changes, so an unchanged
    /// folder can be skipped whole. Only some servers promise that.
    fn folder_etags_cover_subtree(&self) -> bool {
        false
    }

    /// Gives the cloud a ledger for resumable uploads. Clouds that upload in one request
    /// ignore it.
    fn use_upload_ledger(&self, ledger: std::sync::Arc<dyn UploadLedger>) {
        let _ = ledger;
    }
}

/// Checks that a relative path is safe to act on: no empty, `.` or `..` component, no NUL,
/// no backslash-free tricks such as a leading `/`. Returns the path unchanged when it is fine.
pub fn check_rel_path(path: &str) -> Result<&str, CloudError> {
    if crate::paths::is_plain(path) {
        Ok(path)
    } else {
        Err(CloudError::Protocol(format!(
            "path {path:?} is not a plain relative path"
        )))
    }
}

pub use crate::paths::{is_within, join, parent};

/// How to reach the cloud, apart from its URL.
#[derive(Clone, Default)]
pub struct CloudOptions {
    /// Basic-auth user.
    pub user: Option<String>,
    /// Basic-auth password, read from a file or the environment; never printed.
    pub password: Option<String>,
    /// Extra CA to trust.
    pub ca_file: Option<std::path::PathBuf>,
    /// S3: the endpoint URL of the store (default: AWS for the region).
    pub s3_endpoint: Option<String>,
    /// S3: the region requests are signed for (default `us-east-1`).
    pub s3_region: Option<String>,
    /// S3: how the bucket is named in URLs (default: path style with an endpoint, virtual-host
    /// style on AWS).
    pub s3_addressing: Option<s3::Addressing>,
    /// S3: a credentials file in the AWS shared-credentials format, read instead of the
    /// environment and `~/.aws/credentials`.
    pub credentials_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for CloudOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudOptions")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("s3_endpoint", &self.s3_endpoint)
            .field("s3_region", &self.s3_region)
            .field("s3_addressing", &self.s3_addressing)
            .field("credentials_file", &self.credentials_file)
            .finish()
    }
}

/// Opens the cloud named by a URL: `file:///path` for a directory, `http(s)://` for WebDAV,
/// `s3://bucket/prefix/` for an S3 bucket.
pub fn open(url: &str, opts: &CloudOptions) -> anyhow::Result<std::sync::Arc<dyn Cloud>> {
    if url.starts_with("s3://") {
        return Ok(std::sync::Arc::new(s3::S3::new(url, opts)?));
    }
    if let Some(rest) = url.strip_prefix("file://") {
        let root = Path::new(rest);
        if !root.is_absolute() {
            anyhow::bail!("cloud URL {url:?} must name an absolute path, like file:///srv/cloud");
        }
        return Ok(std::sync::Arc::new(dir::DirCloud::new(root)?));
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        return Ok(std::sync::Arc::new(webdav::WebDav::new(url, opts)?));
    }
    anyhow::bail!(
        "unknown cloud URL {url:?}: use file:///path for a directory, https://host/path/ for WebDAV or s3://bucket/prefix/ for S3"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rel_paths() {
        assert!(check_rel_path("a/b.txt").is_ok());
        assert!(check_rel_path("").is_ok());
        for bad in [
            "/etc/passwd",
            "a/../../b",
            "..",
            "a//b",
            "a/./b",
            "a\0b",
            "a/",
        ] {
            assert!(check_rel_path(bad).is_err(), "{bad:?} accepted");
        }
    }
}
