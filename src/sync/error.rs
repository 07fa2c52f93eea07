//! The one error type of the sync engine: what went wrong in a push or a pull, kept apart by
//! where it happened (the cloud, the journal, the on-premise side), so the retry policy and
//! the status read the variant and never a string.

use crate::cloud::CloudError;
use crate::journal::JournalError;
use crate::status::FailureCode;

/// What a push, a pull or a control request can end in.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The cloud refused the request or could not be reached.
    #[error(transparent)]
    Cloud(#[from] CloudError),
    /// The journal could not be read or written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Reading or writing ONPREM failed.
    #[error("on-premise: {0}")]
    Local(#[from] std::io::Error),
    /// The on-premise path goes through a symbolic link or a special file; nothing is read or
    /// written through it.
    #[error("{0}")]
    Blocked(String),
    /// The request names something it cannot act on (a path outside every sync set).
    #[error("{0}")]
    Refused(String),
}

/// The result of an engine step.
pub type SyncResult<T> = Result<T, SyncError>;

impl From<tokio::task::JoinError> for SyncError {
    fn from(e: tokio::task::JoinError) -> Self {
        SyncError::Local(std::io::Error::other(e))
    }
}

impl SyncError {
    /// Transient trouble means `offline` and a retry with backoff, never `failed`. Only the
    /// cloud's answers can be transient: a journal or on-premise failure is not cured by
    /// waiting for the server.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Cloud(e) => e.is_transient(),
            SyncError::Local(e) => matches!(
                e.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
            ),
            SyncError::Journal(_) | SyncError::Blocked(_) | SyncError::Refused(_) => false,
        }
    }

    /// The failure code a permanent error is reported with.
    pub fn failure_code(&self) -> FailureCode {
        match self {
            SyncError::Cloud(e) => e.failure_code(),
            SyncError::Blocked(_) => FailureCode::NameClash,
            SyncError::Journal(_) | SyncError::Local(_) | SyncError::Refused(_) => {
                FailureCode::Unknown
            }
        }
    }

    /// The cloud's answer, when the cloud gave it.
    pub fn cloud(&self) -> Option<&CloudError> {
        match self {
            SyncError::Cloud(e) => Some(e),
            _ => None,
        }
    }

    /// The local I/O error, whether the engine or a cloud backend (reading or writing the
    /// open file it was given) met it.
    pub fn local_io(&self) -> Option<&std::io::Error> {
        match self {
            SyncError::Local(e) | SyncError::Cloud(CloudError::Io(e)) => Some(e),
            _ => None,
        }
    }

    /// True when the on-premise item was not there (it went away while being worked on).
    pub fn is_local_not_found(&self) -> bool {
        self.local_io()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound)
    }

    /// True when the cloud said nothing is at the path.
    pub fn is_cloud_not_found(&self) -> bool {
        matches!(self, SyncError::Cloud(CloudError::NotFound))
    }

    /// True when a condition of the request failed in the cloud (412).
    pub fn is_precondition_failed(&self) -> bool {
        matches!(self, SyncError::Cloud(CloudError::PreconditionFailed))
    }

    /// True when the cloud refused the credentials.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, SyncError::Cloud(CloudError::Unauthorized))
    }

    /// True when the on-premise path crosses a link or a special file.
    pub fn is_crossing(&self) -> bool {
        matches!(self, SyncError::Blocked(_))
            || self.local_io().is_some_and(crate::onprem::is_crossing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_cloud_is_worth_waiting_for() {
        assert!(SyncError::from(CloudError::Transport("reset".into())).is_transient());
        assert!(!SyncError::from(CloudError::Forbidden).is_transient());
        assert!(
            !SyncError::from(JournalError::Corrupt("x".into())).is_transient(),
            "a broken journal is not cured by a retry"
        );
        assert!(!SyncError::Blocked("link".into()).is_transient());
    }

    #[test]
    fn codes() {
        assert_eq!(
            SyncError::Blocked("link".into()).failure_code(),
            FailureCode::NameClash
        );
        assert_eq!(
            SyncError::from(CloudError::Unauthorized).failure_code(),
            FailureCode::AuthenticationError
        );
        assert_eq!(
            SyncError::from(JournalError::Corrupt("x".into())).failure_code(),
            FailureCode::Unknown
        );
    }

    #[test]
    fn a_vanished_file_is_seen_whoever_met_it() {
        let gone = || std::io::Error::from(std::io::ErrorKind::NotFound);
        assert!(SyncError::Local(gone()).is_local_not_found());
        assert!(SyncError::Cloud(CloudError::Io(gone())).is_local_not_found());
        assert!(!SyncError::Cloud(CloudError::NotFound).is_local_not_found());
        assert!(SyncError::Cloud(CloudError::NotFound).is_cloud_not_found());
    }
}
