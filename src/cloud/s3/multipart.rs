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

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;

use super::client::Cond;
use super::{PARTS_IN_FLIGHT, S3};
use crate::cloud::body::{self, Body};
use crate::cloud::{CloudError, MultipartUpload, PartDone, Precondition, Uploaded};

/// S3 takes at most this many parts.
const MAX_PARTS: u64 = 10_000;

fn ledger_err(e: std::io::Error) -> CloudError {
    CloudError::Io(std::io::Error::other(format!(
        "cannot record the multipart upload in the journal: {e}"
    )))
}

impl S3 {
    /// The part size for a file of `size` bytes: the configured one, larger when the file
    /// would need more than 10 000 parts.
    fn part_size_for(&self, size: u64) -> u64 {
        let min = size.div_ceil(MAX_PARTS);
        // A power of two (see PART_SIZE), and at most 4 GiB (S3 takes parts up to 5 GiB).
        self.part_size.max(min).next_power_of_two().min(4 << 30)
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

    /// Sends the parts `up` does not have yet (or whose bytes changed), a few at once, and
    /// records each as it lands; returns the ETags in part order and the hash of the whole
    /// file, made of the parts' own hashes.
    async fn send_parts(
        &self,
        key: &str,
        src: &std::fs::File,
        up: &mut MultipartUpload,
        ledger: &Option<Arc<dyn crate::cloud::UploadLedger>>,
    ) -> Result<(Vec<String>, String), CloudError> {
        let (size, part_size) = (up.size, up.part_size);
        let count = size.div_ceil(part_size).max(1);
        let recorded: HashMap<u16, PartDone> =
            up.parts.iter().map(|p| (p.number, p.clone())).collect();
        let work: Vec<_> = (0..count)
            .map(|i| {
                let number = (i + 1) as u16;
                let offset = i * part_size;
                (number, offset, part_size.min(size - offset))
            })
            .collect();
        let (upload_id, path) = (up.upload_id.as_str(), up.path.as_str());
        let recorded = &recorded;
        let mut parts = futures_util::stream::iter(work)
            .map(|(number, offset, len)| async move {
                if let Some(p) = recorded.get(&number) {
                    // Still the same bytes? Then the store has them already.
                    let f = src.try_clone()?;
                    let cv = tokio::task::spawn_blocking(move || body::subtree_cv(&f, offset, len))
                        .await
                        .map_err(|e| CloudError::Io(std::io::Error::other(e)))??;
                    if cv == p.hash {
                        return Ok(p.clone());
                    }
                }
                let body = Body::range(src, offset, len)?;
                let (etag, hash) = self
                    .client
                    .upload_part(key, upload_id, number, body)
                    .await?;
                let hash = hash.ok_or_else(|| {
                    CloudError::Io(std::io::Error::new(
                        std::io::ErrorKind::Interrupted,
                        "a part did not go out whole; it will be sent again",
                    ))
                })?;
                let part = PartDone { number, etag, hash };
                if let Some(l) = ledger {
                    l.part_done(path, upload_id, &part).map_err(ledger_err)?;
                }
                Ok::<_, CloudError>(part)
            })
            .buffer_unordered(PARTS_IN_FLIGHT);
        let mut done: Vec<Option<PartDone>> = vec![None; count as usize];
        while let Some(p) = parts.next().await {
            let p = p?;
            let i = p.number as usize - 1;
            done[i] = Some(p);
        }
        drop(parts);
        let done: Vec<PartDone> = done.into_iter().flatten().collect();
        up.parts = done.clone();
        if src.metadata()?.len() != size {
            return Err(CloudError::Io(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "the local file changed size during the upload; it will be sent again",
            )));
        }
        let cvs: Vec<String> = done.iter().map(|p| p.hash.clone()).collect();
        let hash = match body::root_hash(&cvs, part_size, size) {
            Some(h) => h,
            // One part: its hash needs the bytes again.
            None => {
                let f = src.try_clone()?;
                tokio::task::spawn_blocking(move || crate::onprem::hash_file(&f))
                    .await
                    .map_err(|e| CloudError::Io(std::io::Error::other(e)))??
            }
        };
        Ok((done.into_iter().map(|p| p.etag).collect(), hash))
    }
}
