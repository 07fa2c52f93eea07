//! The sync-status and failure-code vocabulary, shared by the xattrs, the journal and the CLI.
//!
//! Every string that a script can read (`user.cloudsync.status`, `user.cloudsync.error`) is
//! defined here once, so the journal, the FUSE layer and the CLI cannot drift apart.

use std::fmt;

/// Prefix of the virtual, reserved xattr namespace.
pub const XATTR_PREFIX: &str = "user.cloudsync.";
/// The status of an item, for example `synced`.
pub const XATTR_STATUS: &str = "user.cloudsync.status";
/// `CODE: detail`, present only when the item failed.
pub const XATTR_ERROR: &str = "user.cloudsync.error";
/// Why an item that has not failed is not `synced` yet, when there is more to say than its
/// status: `open for writing`.
pub const XATTR_DETAIL: &str = "user.cloudsync.detail";
/// RFC 3339 time of the last successful sync.
pub const XATTR_SYNCED_AT: &str = "user.cloudsync.synced_at";
/// The cloud ETag recorded at the last sync.
pub const XATTR_ETAG: &str = "user.cloudsync.etag";
/// Where the item lives in the cloud.
pub const XATTR_CLOUD_URL: &str = "user.cloudsync.cloud_url";
/// Write-only control: `sync` or `unsync`.
pub const XATTR_REQUEST: &str = "user.cloudsync.request";
/// On the mount root: the path of the daemon's control socket.
pub const XATTR_CONTROL: &str = "user.cloudsync.control";
/// The on-premise path of the item's sync set.
pub const XATTR_SET: &str = "user.cloudsync.set";

/// The status of one file or folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// The cloud holds exactly the on-premise content.
    Synced,
    /// A change waits for its push.
    Pending,
    /// The change is being sent now.
    Uploading,
    /// The cloud copy is being fetched now.
    Downloading,
    /// The cloud cannot be reached; sync resumes by itself.
    Offline,
    /// The push failed for a reason that retrying will not fix; see the failure code.
    Failed,
    /// Both sides changed; this is a conflict copy, or waits for the reconciler.
    Conflict,
    /// Read-only on-premise because its sync set is locked.
    Locked,
    /// An editor temporary or lock file, an ignored name, or a kind the cloud cannot hold.
    Excluded,
    /// Outside every sync set.
    Unsynced,
}

impl Status {
    /// The word scripts read.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Synced => "synced",
            Status::Pending => "pending",
            Status::Uploading => "uploading",
            Status::Downloading => "downloading",
            Status::Offline => "offline",
            Status::Failed => "failed",
            Status::Conflict => "conflict",
            Status::Locked => "locked",
            Status::Excluded => "excluded",
            Status::Unsynced => "unsynced",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a push failed for good. The names are the enterprise product's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureCode {
    /// Another item already holds the target name in the cloud.
    NameClash,
    /// The cloud folder the item belongs in is gone.
    TargetNoLongerExists,
    /// The cloud copy was deleted and `onprem_delete` is off.
    DeletedOnCloud,
    /// HTTP 403.
    AccessDenied,
    /// HTTP 401: pushing stops until credentials change or a sync is requested.
    AuthenticationError,
    /// HTTP 413.
    ContentLimit,
    /// HTTP 507.
    QuotaLimit,
    /// The cloud rejects the name.
    InvalidName,
    /// Anything else that retrying will not fix.
    Unknown,
}

impl FailureCode {
    /// Every code, for parsing and for documentation tests.
    pub const ALL: [FailureCode; 9] = [
        FailureCode::NameClash,
        FailureCode::TargetNoLongerExists,
        FailureCode::DeletedOnCloud,
        FailureCode::AccessDenied,
        FailureCode::AuthenticationError,
        FailureCode::ContentLimit,
        FailureCode::QuotaLimit,
        FailureCode::InvalidName,
        FailureCode::Unknown,
    ];

    /// The code as scripts read it.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCode::NameClash => "NAME_CLASH",
            FailureCode::TargetNoLongerExists => "TARGET_NO_LONGER_EXISTS",
            FailureCode::DeletedOnCloud => "DELETED_ON_CLOUD",
            FailureCode::AccessDenied => "ACCESS_DENIED",
            FailureCode::AuthenticationError => "AUTHENTICATION_ERROR",
            FailureCode::ContentLimit => "CONTENT_LIMIT",
            FailureCode::QuotaLimit => "QUOTA_LIMIT",
            FailureCode::InvalidName => "INVALID_NAME",
            FailureCode::Unknown => "UNKNOWN",
        }
    }

    /// Parses a code written by [`FailureCode::as_str`].
    pub fn parse(s: &str) -> Option<FailureCode> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for FailureCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Formats a time as RFC 3339 in UTC, as `user.cloudsync.synced_at` shows it.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_codes_round_trip() {
        for c in FailureCode::ALL {
            assert_eq!(FailureCode::parse(c.as_str()), Some(c));
        }
        assert_eq!(FailureCode::parse("nope"), None);
    }
}
