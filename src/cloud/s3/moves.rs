//! Folder moves on S3, where a folder is a prefix and nothing moves a prefix at once: each
//! object is copied to the new name, then each source is deleted, so a reader sees every
//! object under the old name, the new one, or both, never neither.
//!
//! The move is a plan recorded in the [`UploadLedger`] (the journal) as it goes: begun before
//! the first copy, each copy recorded with the ETags of its source and of the copy, and ended
//! once the sources are gone. A restart (after a kill -9, a crash, a lost connection) finds the
//! plan and goes on:
//! - the object at the new name is looked at (a HEAD) before each copy: it is ours when it
//!   carries the ETag recorded for the copy, or the source's own ETag (a copy made without
//!   living to record it); our copy of the version the source still is counts as done, our
//!   copy of an older version is replaced by a copy of the new one; any other object there
//!   is someone else's, and that source stays where it is;
//! - the check that the new name is free is not made again (our own copies are there).
//!
//! A plan whose rename never comes again (the folder was deleted on-premise meanwhile) stays
//! on record; should the same move be asked for later, it runs as a resumed one, which looks
//! at the new name before every copy and so still replaces nothing of anyone else's.
//!
//! What is never done: overwriting an object at the new name that the plan did not copy
//! (copies go with `If-None-Match: *`; on stores that ignore it the new name was checked to
//! be free when the move began), or deleting a source that changed since it was copied
//! (deletes go with `If-Match`). Such a source stays under the old name, and the next pull
//! brings it back on-premise there, so nothing is lost.

use std::collections::HashMap;

use futures_util::StreamExt;

use super::{FAN_OUT, MAX_KEY, S3};
use crate::cloud::{CloudError, MovedObject};

fn ledger_err(e: std::io::Error) -> CloudError {
    CloudError::Io(std::io::Error::other(format!(
        "cannot record the folder move in the journal: {e}"
    )))
}

/// What became of one object of a move.
enum Step {
    /// Copied (now or by an earlier run): the source may go while it is still this version.
    Copied { key: String, etag: String },
    /// Left where it is (it changed, or the new name holds someone else's object).
    Kept { key: String },
}

impl S3 {
    /// The objects copied so far by a folder move from `from` to `to` that an earlier run
    /// began, if there is one.
    pub(super) fn move_plan(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Option<Vec<MovedObject>>, CloudError> {
        match self.ledger.get() {
            Some(l) => l.move_plan(from, to).map_err(ledger_err),
            None => Ok(None),
        }
    }

    /// Moves the folder `from` to `to`, object by object, recorded in the ledger as it goes.
    /// `copied` is what an earlier run of the same move recorded, when this resumes one; a new
    /// move is called only once the new name is known to be free and its parent to exist.
    pub(super) async fn move_folder(
        &self,
        from: &str,
        to: &str,
        copied: Option<Vec<MovedObject>>,
    ) -> Result<(), CloudError> {
        let resumed = copied.is_some();
        let copied: HashMap<String, MovedObject> = copied
            .unwrap_or_default()
            .into_iter()
            .map(|o| (o.rel.clone(), o))
            .collect();
        let from_prefix = self.dir_key(from);
        let to_prefix = self.dir_key(to);
        let tree = self.walk(from).await?;
        let moved = |k: &str| format!("{to_prefix}{}", &k[from_prefix.len()..]);
        if tree
            .objects
            .iter()
            .map(|(k, _)| k)
            .chain(&tree.folders)
            .any(|k| moved(k).len() > MAX_KEY)
        {
            return Err(CloudError::InvalidName(format!(
                "{to:?}: a key below it would be longer than S3's {MAX_KEY} bytes"
            )));
        }
        let ledger = self.ledger.get();
        if let Some(l) = ledger {
            l.begin_move(from, to).map_err(ledger_err)?;
        }
        // Every object is copied, and every folder made at the new name, before any source
        // goes.
        let work: Vec<_> = tree
            .objects
            .iter()
            .map(|(key, etag)| {
                let rel = key[from_prefix.len()..].to_string();
                let done = copied.get(&rel).cloned();
                (key.clone(), etag.clone(), moved(key), rel, done)
            })
            .collect();
        let mut copies = futures_util::stream::iter(work)
            .map(|(key, etag, target, rel, done)| async move {
                self.copy_one(
                    from,
                    to,
                    (&key, etag.as_deref()),
                    (&rel, &target),
                    done,
                    resumed,
                )
                .await
            })
            .buffer_unordered(FAN_OUT);
        let mut steps = Vec::with_capacity(tree.objects.len());
        while let Some(r) = copies.next().await {
            steps.push(r?);
        }
        drop(copies);
        if self.keeps_markers().await {
            for f in &tree.folders {
                self.put_marker(&moved(f)).await?;
            }
        }
        let mut kept: Vec<String> = Vec::new();
        let mut sources = Vec::new();
        for s in steps {
            match s {
                Step::Copied { key, etag } => sources.push((key, etag)),
                Step::Kept { key } => kept.push(key),
            }
        }
        let mut deletes = futures_util::stream::iter(sources)
            .map(|(key, etag)| async move {
                match self.client.delete_if(&key, Some(&etag)).await {
                    Ok(()) => Ok(None),
                    // Changed since it was copied: the new version stays under the old name.
                    Err(CloudError::PreconditionFailed) => Ok(Some(key)),
                    Err(e) => Err(e),
                }
            })
            .buffer_unordered(FAN_OUT);
        while let Some(r) = deletes.next().await {
            if let Some(key) = r? {
                tracing::warn!(
                    key,
                    "an object changed in the cloud while its folder was moved; it stays under the old name"
                );
                kept.push(key);
            }
        }
        drop(deletes);
        // The markers of the old folders, deepest first, but not of one that still holds an
        // object left in place (the folder stays, with what was kept).
        let mut folders: Vec<&String> = tree
            .folders
            .iter()
            .filter(|f| !f.is_empty())
            .filter(|f| !kept.iter().any(|k| k.starts_with(f.as_str())))
            .collect();
        folders.sort_by_key(|k| std::cmp::Reverse(k.matches('/').count()));
        for f in folders {
            // On a store over a directory, this removes the folder once it is empty.
            self.client.delete(f).await?;
        }
        if let Some(l) = ledger {
            l.end_move(from, to).map_err(ledger_err)?;
        }
        Ok(())
    }

    /// Copies one object of a folder move (the source `key` at version `etag`, to `target`,
    /// `rel` below the folder), unless `done` records the copy of that very version already.
    async fn copy_one(
        &self,
        from: &str,
        to: &str,
        (key, etag): (&str, Option<&str>),
        (rel, target): (&str, &str),
        done: Option<MovedObject>,
        resumed: bool,
    ) -> Result<Step, CloudError> {
        // Some stores (s3s-fs) list no ETags: the source's own HEAD tells it.
        let etag = match etag {
            Some(t) => t.to_string(),
            None => match self.client.head(key).await? {
                Some(h) => match h.etag {
                    Some(t) => t,
                    None => {
                        // Nothing to tell its versions apart: copied, but never deleted.
                        self.client.copy(key, target, None).await?;
                        return Ok(Step::Kept { key: key.into() });
                    }
                },
                None => return Ok(Step::Kept { key: key.into() }),
            },
        };
        let etag = etag.as_str();
        if resumed {
            // What is at the new name: a copy an earlier run made (recorded, or made without
            // living to record it), or someone else's object, which is never replaced.
            if let Some(h) = self.client.head(target).await? {
                let ours = done
                    .as_ref()
                    .filter(|d| d.copy_etag.is_some() && d.copy_etag == h.etag);
                if h.etag.as_deref() == Some(etag) || ours.is_some_and(|d| d.source_etag == etag) {
                    return Ok(Step::Copied {
                        key: key.into(),
                        etag: etag.into(),
                    });
                }
                if ours.is_none() {
                    tracing::warn!(
                        key,
                        target,
                        "the new name of an object holds another object; the source stays"
                    );
                    return Ok(Step::Kept { key: key.into() });
                }
                // Our copy of a version the source no longer is: it makes way for a copy of
                // this one (the source stays meanwhile, so the object is never nowhere).
                match self.client.delete_if(target, h.etag.as_deref()).await {
                    Ok(()) => {}
                    Err(CloudError::PreconditionFailed) => {
                        return Ok(Step::Kept { key: key.into() });
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        match self.client.copy(key, target, Some(etag)).await {
            Ok(copy_etag) => {
                if let Some(l) = self.ledger.get() {
                    let o = MovedObject {
                        rel: rel.into(),
                        source_etag: etag.into(),
                        copy_etag,
                    };
                    l.object_copied(from, to, &o).map_err(ledger_err)?;
                }
                Ok(Step::Copied {
                    key: key.into(),
                    etag: etag.into(),
                })
            }
            // The source changed since it was listed, or the new name was taken meanwhile.
            Err(CloudError::PreconditionFailed) => {
                tracing::warn!(
                    key,
                    "an object changed, or its new name was taken, while its folder was moved; it stays"
                );
                Ok(Step::Kept { key: key.into() })
            }
            Err(CloudError::NotFound) => Ok(Step::Kept { key: key.into() }),
            Err(e) => Err(e),
        }
    }
}
