//! Upload intents: what an interrupted upload may have left in the cloud, and the proof that a
//! cloud copy is that leftover rather than someone else's edit.
//!
//! The pusher writes an [`Intent`] before each PUT: the precondition it is sent under, the
//! size of the body, and its hash where the file was hashed before sending (a large file is
//! hashed on the way instead, and then the leftover must be a prefix of the file as it is). When the attempt fails before any byte can have reached the
//! server (the connection was refused, or the server answered with an error), the intent goes
//! again. When it is cut short otherwise (a dropped connection, a dead daemon), it stays, and
//! the retry typically meets a 412, because the server may have kept part of the body. That
//! 412 goes to the puller's conflict merge like any other; there the cloud copy is replaced
//! without a conflict copy only when [`is_own_leftover`] proves it is ours. Anything else,
//! including every intent written by 0.1.0, which records no body, is merged as a conflict.

use std::fs::File;
use std::io::Read;

use crate::cloud::{CloudError, Precondition};
use crate::journal::{Intent, NodeKind, NodeRecord, NodeState};

/// The condition an upload of a file with journal record `rec` is sent under: `If-None-Match:
/// *` for a file the cloud should not have (no record, a folder record, or a file deleted in
/// the cloud), `If-Match` on the recorded ETag otherwise, and no condition for a synced file
/// whose cloud had no ETag.
pub fn precondition_for(rec: Option<&NodeRecord>) -> Precondition {
    match rec {
        Some(r) if r.kind == NodeKind::File && r.state != NodeState::Failed => match &r.etag {
            Some(t) => Precondition::IfMatch(t.clone()),
            None => Precondition::None,
        },
        _ => Precondition::IfNoneMatch,
    }
}

/// True when an upload that failed with `e` cannot have left any of its body in the cloud:
/// the connection was never made, or the server answered with an error of its own (a 412, a
/// 423 lock, a 403...). Its intent is then not kept.
pub fn stored_nothing(e: &CloudError) -> bool {
    match e {
        CloudError::Unreachable(_) => true,
        // Locks, rate limits and request timeouts are refusals: the body was not taken.
        CloudError::Unavailable { status } => matches!(status, 408 | 423 | 425 | 429),
        CloudError::Transport(_) | CloudError::Io(_) => false,
        CloudError::NotFound
        | CloudError::PreconditionFailed
        | CloudError::Unauthorized
        | CloudError::Forbidden
        | CloudError::MissingParent
        | CloudError::ContentTooLarge
        | CloudError::InsufficientStorage
        | CloudError::InvalidName(_)
        | CloudError::Status { .. }
        | CloudError::Protocol(_) => true,
    }
}

/// True when the `n` bytes of `copy` are the first `n` bytes of `local`.
fn is_prefix_of(copy: &mut File, n: u64, local: &mut File) -> std::io::Result<bool> {
    if local.metadata()?.len() < n {
        return Ok(false);
    }
    let (mut a, mut b) = (blake3::Hasher::new(), blake3::Hasher::new());
    if hash_prefix(copy, n, &mut a)? != n || hash_prefix(local, n, &mut b)? != n {
        return Ok(false);
    }
    Ok(a.finalize() == b.finalize())
}

/// BLAKE3 of the first `n` bytes of `r` (fewer if it ends first), and how many there were.
fn hash_prefix(r: &mut impl Read, n: u64, h: &mut blake3::Hasher) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut left = n;
    while left > 0 {
        let want = buf.len().min(left.min(usize::MAX as u64) as usize);
        let got = r.read(&mut buf[..want])?;
        if got == 0 {
            break;
        }
        h.update(&buf[..got]);
        left -= got as u64;
    }
    Ok(n - left)
}

/// True when `cloud_copy` (a download of the cloud file) is provably what the attempt of
/// `intent` left there: the attempt was sent under `expected` (the condition a retry would be
/// sent under now), and the copy is either the whole body (same size and hash: the answer was
/// lost) or a prefix of it (checked by size and hash against `local`, which must itself still
/// be that body, by its size and hash). An intent that does not say what was sent proves
/// nothing.
pub fn is_own_leftover(
    intent: &Intent,
    expected: &Precondition,
    mut cloud_copy: File,
    mut local: File,
) -> std::io::Result<bool> {
    let (Some(pre), Some(size)) = (&intent.precondition, intent.size) else {
        return Ok(false);
    };
    if pre != expected {
        return Ok(false);
    }
    let n = cloud_copy.metadata()?.len();
    if n > size {
        return Ok(false);
    }
    let Some(hash) = &intent.hash else {
        // Sent without hashing first (a large file, hashed on the way): the cloud copy must
        // be a prefix of the file as it is now, byte for byte. It then holds nothing that the
        // on-premise version does not, so replacing it loses nothing.
        return is_prefix_of(&mut cloud_copy, n, &mut local);
    };
    let mut hc = blake3::Hasher::new();
    if hash_prefix(&mut cloud_copy, n, &mut hc)? != n {
        return Ok(false);
    }
    let hc = hc.finalize().to_hex().to_string();
    if n == size {
        return Ok(&hc == hash);
    }
    // A prefix: the local file must still be the body sent, and begin with the copy.
    if local.metadata()?.len() != size {
        return Ok(false);
    }
    let mut h = blake3::Hasher::new();
    if hash_prefix(&mut local, n, &mut h)? != n {
        return Ok(false);
    }
    let prefix = h.finalize().to_hex().to_string();
    hash_prefix(&mut local, size - n, &mut h)?;
    let mut rest = [0u8; 1];
    let whole = h.finalize().to_hex().to_string();
    Ok(prefix == hc && &whole == hash && local.read(&mut rest)? == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &std::path::Path, name: &str, data: &[u8]) -> File {
        let p = dir.join(name);
        std::fs::write(&p, data).unwrap();
        File::open(p).unwrap()
    }

    fn intent(pre: Option<Precondition>, body: &[u8]) -> Intent {
        Intent {
            path: "a".into(),
            precondition: pre,
            size: Some(body.len() as u64),
            hash: Some(blake3::hash(body).to_hex().to_string()),
            started_at: 0,
        }
    }

    #[test]
    fn only_our_own_bytes_are_a_leftover() {
        let d = tempfile::tempdir().unwrap();
        let body = b"the body we sent, all of it".as_slice();
        let tag = Precondition::IfMatch("\"e1\"".into());
        let i = intent(Some(tag.clone()), body);
        let check = |cloud: &[u8], local: &[u8], i: &Intent, expected: &Precondition| {
            is_own_leftover(
                i,
                expected,
                file(d.path(), "cloud", cloud),
                file(d.path(), "local", local),
            )
            .unwrap()
        };
        // The whole body (the answer was lost), or a prefix of it.
        assert!(check(body, body, &i, &tag));
        assert!(check(&body[..8], body, &i, &tag));
        assert!(check(b"", body, &i, &tag));
        // The whole body even after the local file changed again.
        assert!(check(body, b"changed since", &i, &tag));
        // Someone else's edit: other bytes, longer, or not a prefix.
        assert!(!check(b"their edit", body, &i, &tag));
        assert!(!check(
            b"the body we sent, all of it, and more",
            body,
            &i,
            &tag
        ));
        assert!(!check(b"the bodx", body, &i, &tag));
        // A prefix proves nothing once the local file is no longer the body sent.
        assert!(!check(
            &body[..8],
            b"the body we sent, but another end",
            &i,
            &tag
        ));
        // Another condition than the retry's: the attempt met another cloud version.
        let other = Precondition::IfMatch("\"e2\"".into());
        assert!(!check(body, body, &i, &other));
        // An intent of 0.1.0 knows nothing.
        let old = Intent {
            precondition: None,
            size: None,
            hash: None,
            ..i.clone()
        };
        assert!(!old.is_known());
        assert!(!check(body, body, &old, &tag));
        // Sent without a hash first: a prefix of the file as it is now is ours, anything else
        // is someone's edit.
        let unhashed = Intent {
            hash: None,
            ..i.clone()
        };
        assert!(check(&body[..8], body, &unhashed, &tag));
        assert!(check(body, body, &unhashed, &tag));
        assert!(!check(b"the bodx", body, &unhashed, &tag));
        assert!(!check(
            b"someone else's longer edit of it",
            body,
            &unhashed,
            &tag
        ));
        assert!(!check(body, body, &unhashed, &other));
    }

    #[test]
    fn refusals_and_unreachable_servers_store_nothing() {
        assert!(stored_nothing(&CloudError::Unreachable("x".into())));
        assert!(stored_nothing(&CloudError::Unavailable { status: 423 }));
        assert!(stored_nothing(&CloudError::PreconditionFailed));
        assert!(!stored_nothing(&CloudError::Transport("reset".into())));
        assert!(!stored_nothing(&CloudError::Unavailable { status: 502 }));
    }
}
