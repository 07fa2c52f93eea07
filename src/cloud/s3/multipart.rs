//! Large files as multipart uploads, resumable across a kill -9.
//!
//! Each finished part (its number, ETag and the BLAKE3 hash of its bytes) is recorded in the
//! [`UploadLedger`] (the journal) as soon as the store has it. The next attempt for the same
//! path, size, part size and condition takes the recorded upload up again: a recorded part
//! whose bytes still hash the same on-premise is not sent again, any other part is. An
//! upload that cannot be resumed (the file changed size, the condition changed) is aborted,
//! and so are, once per run at the first upload, recorded uploads that nothing waits for any
//! more. Only upload
//! ids of this ledger are ever aborted, never uploads found by prefix or age: another site may
//! be uploading.
//!
//! CompleteMultipartUpload carries the condition (`If-None-Match: *` or `If-Match`), and the
//! condition is also checked with a HEAD just before, since not every store that honours
//! conditions on PutObject does on completion: on such a store a change landing between that
//! HEAD and the completion is overwritten.

use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use super::S3;
use super::client::Cond;
use crate::cloud::body::Body;
use crate::cloud::{CloudError, MultipartUpload, PartDone, Precondition, Uploaded};

/// S3 takes at most this many parts.
const MAX_PARTS: u64 = 10_000;

fn ledger_err(e: std::io::Error) -> CloudError {
    CloudError::Io(std::io::Error::other(format!(
        "cannot record the multipart upload in the journal: {e}"
    )))
}

/// BLAKE3 of `len` bytes of `f` from `offset`, fed to `whole` too.
fn hash_range(
    f: &std::fs::File,
    offset: u64,
    len: u64,
    whole: &Mutex<blake3::Hasher>,
) -> std::io::Result<String> {
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0;
    while done < len {
        let want = buf.len().min((len - done) as usize);
        let n = f.read_at(&mut buf[..want], offset + done)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the local file shrank during the upload",
            ));
        }
        h.update(&buf[..n]);
        whole
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .update(&buf[..n]);
        done += n as u64;
    }
    Ok(h.finalize().to_hex().to_string())
}

impl S3 {
    /// The part size for a file of `size` bytes: the configured one, larger when the file
    /// would need more than 10 000 parts.
    fn part_size_for(&self, size: u64) -> u64 {
        let min = size.div_ceil(MAX_PARTS);
        self.part_size
            .max(min.next_multiple_of(1 << 20).min(5 << 30))
    }

    /// Uploads `src` (of `size` bytes) to `key` in parts under `cond`.
    pub(super) async fn upload_multipart(
        &self,
        path: &str,
        key: &str,
        src: &std::fs::File,
        cond: &Precondition,
        size: u64,
    ) -> Result<Uploaded, CloudError> {
        // The condition first: no parts go up for an upload that would be refused.
        self.check_condition(path, cond).await?;
        let part_size = self.part_size_for(size);
        let ledger = self.ledger.get().cloned();
        let mut up = match &ledger {
            Some(l) => l.upload(path).map_err(ledger_err)?,
            None => None,
        };
        if let Some(old) = &up
            && (old.size != size || old.part_size != part_size || old.precondition != *cond)
        {
            // Not the same upload any more: its parts are of no use.
            let _ = self.client.abort_multipart(key, &old.upload_id).await;
            if let Some(l) = &ledger {
                l.end(&old.upload_id).map_err(ledger_err)?;
            }
            up = None;
        }
        let mut up = match up {
            Some(u) => {
                tracing::info!(path, parts = u.parts.len(), "resuming a multipart upload");
                u
            }
            None => {
                let upload_id = self.client.create_multipart(key).await?;
                let u = MultipartUpload {
                    path: path.to_string(),
                    upload_id,
                    size,
                    part_size,
                    precondition: cond.clone(),
                    parts: Vec::new(),
                };
                if let Some(l) = &ledger {
                    l.begin(&u).map_err(ledger_err)?;
                }
                u
            }
        };
        let result = self.send_parts(key, src, &mut up, &ledger).await;
        let (etags, hash) = match result {
            Ok(v) => v,
            Err(e) => {
                if ledger.is_none() {
                    // Nobody could resume it.
                    let _ = self.client.abort_multipart(key, &up.upload_id).await;
                }
                return Err(e);
            }
        };
        let c = match cond {
            Precondition::None => Cond::None,
            Precondition::IfNoneMatch => Cond::IfNoneMatch,
            Precondition::IfMatch(t) => Cond::IfMatch(t),
        };
        let done = match self.check_condition(path, cond).await {
            Ok(()) => {
                self.client
                    .complete_multipart(key, &up.upload_id, &etags, c)
                    .await
            }
            Err(e) => Err(e),
        };
        match done {
            Ok(etag) => {
                if let Some(l) = &ledger {
                    l.end(&up.upload_id).map_err(ledger_err)?;
                }
                let etag = match etag {
                    Some(t) => Some(t),
                    None => self.client.head(key).await?.and_then(|h| h.etag),
                };
                Ok(Uploaded {
                    etag,
                    hash: Some(hash),
                })
            }
            Err(e @ (CloudError::PreconditionFailed | CloudError::NotFound)) => {
                // Refused: the parts are of no use; the reconciler takes over.
                let _ = self.client.abort_multipart(key, &up.upload_id).await;
                if let Some(l) = &ledger {
                    l.end(&up.upload_id).map_err(ledger_err)?;
                }
                Err(match e {
                    CloudError::PreconditionFailed => self.refusal(path, cond).await,
                    e => e,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Sends the parts `up` does not have yet (or whose bytes changed), recording each; returns
    /// the ETags in part order and the hash of the whole file.
    async fn send_parts(
        &self,
        key: &str,
        src: &std::fs::File,
        up: &mut MultipartUpload,
        ledger: &Option<Arc<dyn crate::cloud::UploadLedger>>,
    ) -> Result<(Vec<String>, String), CloudError> {
        let whole = Arc::new(Mutex::new(blake3::Hasher::new()));
        let count = up.size.div_ceil(up.part_size).max(1);
        let mut etags = Vec::with_capacity(count as usize);
        for i in 0..count {
            let number = (i + 1) as u16;
            let offset = i * up.part_size;
            let len = up.part_size.min(up.size - offset);
            let recorded = up.parts.iter().find(|p| p.number == number).cloned();
            if let Some(p) = recorded {
                // Still the same bytes? Then the store has them already.
                let f = src.try_clone()?;
                let w = whole.clone();
                let mark = w.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let h = tokio::task::spawn_blocking(move || hash_range(&f, offset, len, &w))
                    .await
                    .map_err(|e| CloudError::Io(std::io::Error::other(e)))??;
                if h == p.hash {
                    etags.push(p.etag);
                    continue;
                }
                // Changed since: undo what the check fed into the whole hash, and send it.
                *whole.lock().unwrap_or_else(|e| e.into_inner()) = mark;
                up.parts.retain(|q| q.number != number);
            }
            let body = Body::range(src, offset, len, Some(whole.clone()))?;
            let (etag, hash) = self
                .client
                .upload_part(key, &up.upload_id, number, body)
                .await?;
            let hash = hash.ok_or_else(|| {
                CloudError::Io(std::io::Error::new(
                    std::io::ErrorKind::Interrupted,
                    "a part did not go out whole; it will be sent again",
                ))
            })?;
            let part = PartDone {
                number,
                etag: etag.clone(),
                hash,
            };
            if let Some(l) = ledger {
                l.part_done(&up.path, &up.upload_id, &part)
                    .map_err(ledger_err)?;
            }
            up.parts.push(part);
            etags.push(etag);
        }
        if src.metadata()?.len() != up.size {
            return Err(CloudError::Io(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "the local file changed size during the upload; it will be sent again",
            )));
        }
        let hash = whole
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .finalize()
            .to_hex()
            .to_string();
        Ok((etags, hash))
    }
}
