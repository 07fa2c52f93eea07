//! A look at a journal without changing it, for `cloudsync doctor`: the database is opened
//! read-only and never migrated, so a running daemon is not disturbed and a journal from
//! another version is described rather than converted.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::{Journal, Owner, Result, meta_key};

/// One failed item, as the journal holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedItem {
    /// The path, relative to ONPREM.
    pub path: String,
    /// The failure code, as stored (`DELETED_ON_CLOUD`, …).
    pub code: Option<String>,
    /// The last error message.
    pub detail: Option<String>,
}

/// What [`Journal::inspect`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The schema version the file has (`PRAGMA user_version`).
    pub schema_version: i64,
    /// What SQLite's integrity check said: `["ok"]` when all is well.
    pub integrity: Vec<String>,
    /// Whom the journal belongs to, when the schema is one this build reads.
    pub owner: Option<Owner>,
    /// Entries in the queue (pending, failed and in conflict).
    pub queued: u64,
    /// Failed queue entries and failed items, oldest first, at most `limit`.
    pub failed: Vec<FailedItem>,
    /// How many failed items there are in all.
    pub failed_total: u64,
}

impl Journal {
    /// Looks at the journal at `path` read-only. At most `limit` failed items are listed.
    pub fn inspect(path: &Path, limit: usize) -> Result<Inspection> {
        let c = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.busy_timeout(std::time::Duration::from_secs(10))?;
        let schema_version: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let mut integrity = Vec::new();
        {
            let mut st = c.prepare("PRAGMA integrity_check(20)")?;
            let rows = st.query_map([], |r| r.get::<_, String>(0))?;
            for r in rows {
                integrity.push(r?);
            }
        }
        let mut out = Inspection {
            schema_version,
            integrity,
            owner: None,
            queued: 0,
            failed: Vec::new(),
            failed_total: 0,
        };
        if !(1..=Journal::SCHEMA_VERSION).contains(&schema_version) {
            return Ok(out);
        }
        let meta = |k: &str| -> Result<Option<String>> {
            Ok(
                c.query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))
                    .optional()?,
            )
        };
        out.owner = meta(meta_key::ONPREM)?.map(|onprem| Owner { onprem, host: None });
        if let Some(o) = &mut out.owner {
            o.host = meta(meta_key::HOST)?;
        }
        out.queued = c.query_row("SELECT count(*) FROM queue", [], |r| r.get::<_, i64>(0))? as u64;
        let failed_queue: i64 = c.query_row(
            "SELECT count(*) FROM queue WHERE state = 'failed'",
            [],
            |r| r.get(0),
        )?;
        let failed_nodes: i64 = c.query_row(
            "SELECT count(*) FROM nodes WHERE state = 'failed'",
            [],
            |r| r.get(0),
        )?;
        out.failed_total = (failed_queue + failed_nodes) as u64;
        let mut st = c.prepare(
            "SELECT path, failure, last_error FROM queue WHERE state = 'failed'
             UNION ALL
             SELECT path, NULL, error FROM nodes WHERE state = 'failed'
             LIMIT ?1",
        )?;
        let rows = st.query_map([limit as i64], |r| {
            Ok(FailedItem {
                path: r.get(0)?,
                code: r.get(1)?,
                detail: r.get(2)?,
            })
        })?;
        for r in rows {
            let mut item = r?;
            // A node's error is `CODE: detail`.
            if item.code.is_none()
                && let Some(d) = &item.detail
                && let Some((code, rest)) = d.split_once(": ")
                && crate::status::FailureCode::parse(code).is_some()
            {
                item.code = Some(code.to_string());
                item.detail = Some(rest.to_string());
            }
            out.failed.push(item);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Change, Op};

    #[test]
    fn inspects_without_changing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("journal.db");
        {
            let j = Journal::open(&p).unwrap();
            j.set_owner("/srv/x", "host").unwrap();
            j.enqueue(&[Change::Path(Op::Create, "a".into())], 0)
                .unwrap();
        }
        let before = std::fs::read(&p).unwrap();
        let i = Journal::inspect(&p, 10).unwrap();
        assert_eq!(i.schema_version, Journal::SCHEMA_VERSION);
        assert_eq!(i.integrity, vec!["ok".to_string()]);
        assert_eq!(i.owner.unwrap().onprem, "/srv/x");
        assert_eq!(i.queued, 1);
        assert!(i.failed.is_empty());
        assert_eq!(std::fs::read(&p).unwrap(), before);
    }
}
