//! The journal as the cloud's [`UploadLedger`]: multipart uploads under way are kept in the
//! journal, under their cloud path, so a restart resumes them with the parts that were done.
//!
//! An upload is abandoned when no upload intent waits for it: the pusher writes an intent
//! (under the on-premise path) before every upload and ends it with the upload, a delete or a
//! move of the path. The sync sets map each recorded cloud path back to its on-premise paths
//! for that check. Only uploads recorded here are ever reported, so the cloud never aborts an
//! upload it did not start (another site may be uploading to the same bucket).

use std::sync::Arc;

use crate::cloud::{MovedObject, MultipartUpload, PartDone, UploadLedger};
use crate::journal::Journal;
use crate::paths;
use crate::sync::sets::SyncSets;

/// The journal, seen by a cloud.
pub struct JournalLedger {
    journal: Arc<Journal>,
    sets: SyncSets,
}

impl JournalLedger {
    /// A ledger over `journal`, whose cloud paths map to on-premise paths through `sets`.
    pub fn new(journal: Arc<Journal>, sets: SyncSets) -> JournalLedger {
        JournalLedger { journal, sets }
    }

    /// True when an upload intent of an on-premise path of `cloud_path` is recorded.
    fn awaited(&self, cloud_path: &str) -> std::io::Result<bool> {
        for set in self.sets.iter() {
            if !paths::is_within(cloud_path, &set.cloud) {
                continue;
            }
            let local = set.to_local(cloud_path);
            if self.journal.intent(&local).map_err(io)?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn io(e: crate::journal::JournalError) -> std::io::Error {
    std::io::Error::other(e)
}

impl UploadLedger for JournalLedger {
    fn upload(&self, path: &str) -> std::io::Result<Option<MultipartUpload>> {
        self.journal.multipart_upload(path).map_err(io)
    }

    fn begin(&self, up: &MultipartUpload) -> std::io::Result<()> {
        self.journal.begin_multipart(up).map_err(io)
    }

    fn part_done(&self, path: &str, upload_id: &str, part: &PartDone) -> std::io::Result<()> {
        self.journal
            .multipart_part_done(path, upload_id, part)
            .map_err(io)
    }

    fn end(&self, upload_id: &str) -> std::io::Result<()> {
        self.journal.end_multipart(upload_id).map_err(io)
    }

    fn abandoned(&self) -> std::io::Result<Vec<MultipartUpload>> {
        let mut out = Vec::new();
        for up in self.journal.multipart_uploads().map_err(io)? {
            if !self.awaited(&up.path)? {
                out.push(up);
            }
        }
        Ok(out)
    }

    fn move_plan(&self, from: &str, to: &str) -> std::io::Result<Option<Vec<MovedObject>>> {
        self.journal.cloud_move(from, to).map_err(io)
    }

    fn begin_move(&self, from: &str, to: &str) -> std::io::Result<()> {
        self.journal.begin_cloud_move(from, to).map_err(io)
    }

    fn object_copied(&self, from: &str, to: &str, object: &MovedObject) -> std::io::Result<()> {
        self.journal.cloud_move_copied(from, to, object).map_err(io)
    }

    fn end_move(&self, from: &str, to: &str) -> std::io::Result<()> {
        self.journal.end_cloud_move(from, to).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::Precondition;
    use crate::journal::Intent;

    #[test]
    fn abandoned_means_no_intent_waits() {
        let d = tempfile::tempdir().unwrap();
        let j = Arc::new(Journal::open(&d.path().join("j.db")).unwrap());
        let l = JournalLedger::new(j.clone(), SyncSets::whole());
        for (id, path) in [("u1", "a.iso"), ("u2", "b.iso")] {
            l.begin(&MultipartUpload {
                path: path.into(),
                upload_id: id.into(),
                size: 1,
                part_size: 1,
                precondition: Precondition::IfNoneMatch,
                parts: Vec::new(),
            })
            .unwrap();
        }
        j.set_intent(&Intent {
            path: "a.iso".into(),
            precondition: Some(Precondition::IfNoneMatch),
            size: Some(1),
            hash: None,
            started_at: 0,
        })
        .unwrap();
        let gone: Vec<String> = l.abandoned().unwrap().into_iter().map(|u| u.path).collect();
        assert_eq!(gone, ["b.iso"]);
    }
}
