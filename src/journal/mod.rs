//! The journal: ALL of cloudsync's SQL. Node records, the durable change queue, upload intents,
//! the multipart uploads under way (S3) with their finished parts, and metadata.
//!
//! One [`Journal`] owns two SQLite connections in WAL mode: one for writes, one for the status
//! reads that FUSE `getxattr` makes, so a status read never waits behind a batch of writes.
//! Migrations run on open. With `synchronous = NORMAL` a committed change survives a kill -9 of
//! the daemon; what had not been committed yet is found again by the start-up scan.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::cloud::{MovedObject, MultipartUpload, PartDone, Precondition};
use crate::status::FailureCode;

/// Errors of the journal layer.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// SQLite failed.
    #[error("journal database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database was written by a newer cloudsync.
    #[error(
        "the journal has schema version {0}, newer than this cloudsync understands ({1}); upgrade cloudsync"
    )]
    TooNew(i64, i64),
    /// A row held something this version cannot read.
    #[error("journal row is corrupt: {0}")]
    Corrupt(String),
}

type Result<T> = std::result::Result<T, JournalError>;

mod inspect;
pub use inspect::{FailedItem, Inspection};

/// The keys of the `meta` table: only the typed methods of [`Journal`] use them.
mod meta_key {
    pub const ONPREM: &str = "onprem";
    pub const HOST: &str = "host";
    pub const UNSYNCED: &str = "unsynced";
    pub fn root_etag(set: &str) -> String {
        format!("root_etag:{set}")
    }
}

/// Whom a journal belongs to: the on-premise folder, and the host it was made on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The on-premise folder, as it was given.
    pub onprem: String,
    /// The host id, when one was recorded.
    pub host: Option<String>,
}

/// The schema, one step per version. Step N brings the database from version N to N+1.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE nodes(
        path TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        size INTEGER NOT NULL DEFAULT 0,
        mtime_ns INTEGER NOT NULL DEFAULT 0,
        ctime_ns INTEGER NOT NULL DEFAULT 0,
        ino INTEGER NOT NULL DEFAULT 0,
        hash TEXT,
        etag TEXT,
        state TEXT NOT NULL,
        error TEXT,
        synced_at INTEGER
     ) WITHOUT ROWID;
     CREATE TABLE queue(
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        op TEXT NOT NULL,
        path TEXT NOT NULL,
        dest TEXT,
        not_before INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_retry_at INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'pending',
        failure TEXT,
        last_error TEXT,
        gen INTEGER NOT NULL DEFAULT 0
     );
     CREATE INDEX queue_path ON queue(path);
     CREATE INDEX queue_dest ON queue(dest) WHERE dest IS NOT NULL;",
    // 1 -> 2: folder status asks "anything failed below?" in a few index steps, not a scan.
    "CREATE INDEX nodes_failed ON nodes(path) WHERE state = 'failed';
     CREATE INDEX queue_failed ON queue(path) WHERE state = 'failed';",
    // 2 -> 3: "is a rename queued after this entry?" is asked for every queued change; without
    // this index it scanned the rest of the queue, quadratic in a first sync of a large tree.
    "CREATE INDEX queue_renames ON queue(id) WHERE op = 'rename';",
    // 3 -> 4: upload intents get a table of their own and say what the attempt sent. An intent
    // of 0.1.0 (`meta` key `intent:PATH`, a time only) becomes one that knows nothing, which
    // can never prove a cloud copy to be our own leftover.
    "CREATE TABLE intents(
        path TEXT PRIMARY KEY,
        precondition TEXT,
        size INTEGER,
        hash TEXT,
        started_at INTEGER NOT NULL
     ) WITHOUT ROWID;
     INSERT OR REPLACE INTO intents(path, started_at)
        SELECT substr(key, 8), coalesce(CAST(value AS INTEGER), 0) FROM meta
        WHERE key >= 'intent:' AND key < 'intent;';
     DELETE FROM meta WHERE key >= 'intent:' AND key < 'intent;';",
    // 4 -> 5: multipart uploads under way (S3), with their finished parts, so a restart
    // resumes them, and only their ids are ever aborted.
    "CREATE TABLE multipart(
        upload_id TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        part_size INTEGER NOT NULL,
        precondition TEXT NOT NULL,
        started_at INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX multipart_path ON multipart(path);
     CREATE TABLE multipart_parts(
        upload_id TEXT NOT NULL,
        number INTEGER NOT NULL,
        etag TEXT NOT NULL,
        hash TEXT NOT NULL,
        PRIMARY KEY(upload_id, number)
     ) WITHOUT ROWID;",
    // 5 -> 6: folder moves under way on clouds that move object by object (S3), with the
    // objects already copied, so a restart resumes the move instead of taking the copies at
    // the new name for someone else's.
    "CREATE TABLE cloud_moves(
        from_path TEXT NOT NULL,
        to_path TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        PRIMARY KEY(from_path, to_path)
     ) WITHOUT ROWID;
     CREATE TABLE cloud_move_objects(
        from_path TEXT NOT NULL,
        to_path TEXT NOT NULL,
        rel TEXT NOT NULL,
        source_etag TEXT NOT NULL,
        copy_etag TEXT,
        PRIMARY KEY(from_path, to_path, rel)
     ) WITHOUT ROWID;",
    // 6 -> 7: the cloud's stable id of each item (`oc:fileid`, a `file://` inode), so a folder
    // moved in the cloud is recognised as a move; and the cloud moves the puller is carrying
    // out on-premise, so a crash between the on-premise rename and the journal's is finished
    // at the next start rather than taken for a delete and a new folder.
    "ALTER TABLE nodes ADD COLUMN file_id TEXT;
     CREATE INDEX nodes_file_id ON nodes(file_id) WHERE file_id IS NOT NULL;
     CREATE TABLE pull_moves(
        from_path TEXT PRIMARY KEY,
        to_path TEXT NOT NULL,
        started_at INTEGER NOT NULL
     ) WITHOUT ROWID;",
    // 7 -> 8: cloud files hidden by a folder of the same name (an object store's `x` beside
    // `x/…`), as the last pull saw them, so their path reads failed with NAME_CLASH.
    "CREATE TABLE cloud_clashes(
        path TEXT PRIMARY KEY,
        seen_at INTEGER NOT NULL
     ) WITHOUT ROWID;",
];

/// What `user.cloudsync.error` says of a cloud file hidden by a folder of its name.
pub const CLASH_DETAIL: &str = "the cloud holds a file and a folder of this name; the folder is synced and the file is left in the cloud as it is: rename or remove one of them in the cloud";

/// Milliseconds since the epoch, the journal's clock.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A regular file.
    File,
    /// A folder.
    Dir,
}

impl NodeKind {
    fn as_str(self) -> &'static str {
        match self {
            NodeKind::File => "file",
            NodeKind::Dir => "dir",
        }
    }
}

/// The sync state of a node record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// The cloud holds what the record describes.
    Synced,
    /// The item failed for good; see `error`.
    Failed,
    /// A conflict copy, or an item waiting for the reconciler.
    Conflict,
}

impl NodeState {
    fn as_str(self) -> &'static str {
        match self {
            NodeState::Synced => "synced",
            NodeState::Failed => "failed",
            NodeState::Conflict => "conflict",
        }
    }
}

/// What the journal knows of one item: its on-premise stat at the last sync, and its cloud tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// Path relative to the on-premise root.
    pub path: String,
    /// File or folder.
    pub kind: NodeKind,
    /// Size at the last sync.
    pub size: u64,
    /// Modification time (ns) at the last sync.
    pub mtime_ns: i64,
    /// Change time (ns) at the last sync.
    pub ctime_ns: i64,
    /// Inode number at the last sync.
    pub ino: u64,
    /// Content fingerprint (BLAKE3, hex).
    pub hash: Option<String>,
    /// Cloud ETag at the last sync.
    pub etag: Option<String>,
    /// Sync state.
    pub state: NodeState,
    /// `CODE: detail` when failed.
    pub error: Option<String>,
    /// When it was last synced (ms since the epoch).
    pub synced_at: Option<i64>,
}

/// The part of a file's stat that tells whether its content may have changed: size, mtime,
/// ctime and inode number. Any write moves the ctime, even one that puts the size and mtime
/// back (`cp --preserve=timestamps`, `touch -r`), so a file whose `FileStat` is the same as
/// at the last sync is taken as unchanged without reading it; any difference means a re-hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// Size in bytes.
    pub size: u64,
    /// Modification time (ns).
    pub mtime_ns: i64,
    /// Change time (ns).
    pub ctime_ns: i64,
    /// Inode number.
    pub ino: u64,
}

impl FileStat {
    /// The stat of a file as it is now.
    pub fn of(m: &Metadata) -> FileStat {
        FileStat {
            size: m.size(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
            ino: m.ino(),
        }
    }
}

impl NodeRecord {
    /// The stat recorded at the last sync.
    pub fn stat(&self) -> FileStat {
        FileStat {
            size: self.size,
            mtime_ns: self.mtime_ns,
            ctime_ns: self.ctime_ns,
            ino: self.ino,
        }
    }

    /// True when the on-premise file `m` is, by its stat, the file this record describes: the
    /// one "unchanged?" rule of the pusher, the puller, the scan and status reads. False for
    /// folders; a false answer means "hash it", never "upload it".
    pub fn unchanged(&self, m: &Metadata) -> bool {
        self.kind == NodeKind::File && m.is_file() && self.stat() == FileStat::of(m)
    }
}

/// Reads the columns of `nodes` in table order, as every SELECT of whole records lists them.
impl TryFrom<&Row<'_>> for NodeRecord {
    type Error = rusqlite::Error;
    fn try_from(r: &Row<'_>) -> rusqlite::Result<Self> {
        let kind: String = r.get(1)?;
        let state: String = r.get(8)?;
        let bad = |what: &str, v: &str| {
            rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Text,
                format!("unknown {what} {v:?}").into(),
            )
        };
        Ok(NodeRecord {
            path: r.get(0)?,
            kind: match kind.as_str() {
                "file" => NodeKind::File,
                "dir" => NodeKind::Dir,
                k => return Err(bad("kind", k)),
            },
            size: r.get::<_, i64>(2)? as u64,
            mtime_ns: r.get(3)?,
            ctime_ns: r.get(4)?,
            ino: r.get::<_, i64>(5)? as u64,
            hash: r.get(6)?,
            etag: r.get(7)?,
            state: match state.as_str() {
                "synced" => NodeState::Synced,
                "failed" => NodeState::Failed,
                "conflict" => NodeState::Conflict,
                s => return Err(bad("state", s)),
            },
            error: r.get(9)?,
            synced_at: r.get(10)?,
        })
    }
}

/// What an upload attempt was, written before its request and kept when the attempt was cut
/// short in a way that may have left part of its body in the cloud. A later 412 on the same
/// path replaces the cloud copy only when that copy is provably what this attempt sent (see
/// [`crate::sync::intent`]); anything else is merged as a conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    /// The on-premise path uploaded.
    pub path: String,
    /// The condition the attempt was sent under; `None` when unknown (written by 0.1.0).
    pub precondition: Option<Precondition>,
    /// Size of the body sent; `None` when unknown.
    pub size: Option<u64>,
    /// BLAKE3 hash (hex) of the body sent; `None` when unknown.
    pub hash: Option<String>,
    /// When the attempt started (ms since the epoch).
    pub started_at: i64,
}

impl Intent {
    /// True when the intent says what was sent: an intent of 0.1.0 does not.
    pub fn is_known(&self) -> bool {
        self.precondition.is_some() && self.size.is_some() && self.hash.is_some()
    }
}

/// A precondition as the journal stores it.
fn precondition_text(p: &Precondition) -> String {
    match p {
        Precondition::None => "none".into(),
        Precondition::IfNoneMatch => "if-none-match".into(),
        Precondition::IfMatch(t) => format!("if-match:{t}"),
    }
}

/// A stored precondition read back; anything unreadable is unknown.
fn precondition_parse(s: &str) -> Option<Precondition> {
    match s {
        "none" => Some(Precondition::None),
        "if-none-match" => Some(Precondition::IfNoneMatch),
        _ => s
            .strip_prefix("if-match:")
            .map(|t| Precondition::IfMatch(t.to_string())),
    }
}

/// A `multipart` row (upload_id, path, size, part_size, precondition), without its parts.
fn multipart_row(r: &Row) -> rusqlite::Result<Result<MultipartUpload>> {
    let pre: String = r.get(4)?;
    let path: String = r.get(1)?;
    Ok(match precondition_parse(&pre) {
        None => Err(JournalError::Corrupt(format!(
            "the multipart upload of {path:?} has the unreadable condition {pre:?}"
        ))),
        Some(precondition) => Ok(MultipartUpload {
            upload_id: r.get(0)?,
            path,
            size: r.get::<_, i64>(2)? as u64,
            part_size: r.get::<_, i64>(3)? as u64,
            precondition,
            parts: Vec::new(),
        }),
    })
}

/// The finished parts of the multipart upload `upload_id`, by number.
fn multipart_parts(c: &Connection, upload_id: &str) -> Result<Vec<PartDone>> {
    let mut st = c.prepare_cached(
        "SELECT number, etag, hash FROM multipart_parts WHERE upload_id = ?1 ORDER BY number",
    )?;
    let parts = st
        .query_map([upload_id], |r| {
            Ok(PartDone {
                number: r.get::<_, i64>(0)? as u16,
                etag: r.get(1)?,
                hash: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(parts)
}

fn insert_part(c: &Connection, upload_id: &str, p: &PartDone) -> rusqlite::Result<usize> {
    c.run(
        "INSERT OR REPLACE INTO multipart_parts(upload_id, number, etag, hash) VALUES(?1, ?2, ?3, ?4)",
        params![upload_id, p.number as i64, p.etag, p.hash],
    )
}

/// True when a folder move from `from` to `to` is recorded as begun.
fn cloud_move_begun(c: &Connection, from: &str, to: &str) -> rusqlite::Result<bool> {
    c.one(
        "SELECT count(*) > 0 FROM cloud_moves WHERE from_path = ?1 AND to_path = ?2",
        params![from, to],
        |r| r.get(0),
    )
}

/// Drops the intents of `path` and of everything below it.
/// Moves the records of `from` and everything below it to `to`, on `c` (in its transaction).
fn move_subtree_on(c: &Connection, from: &str, to: &str) -> rusqlite::Result<()> {
    let (lo, hi) = below(from);
    let (tlo, thi) = below(to);
    c.run(
        "DELETE FROM nodes WHERE path = ?1 OR (path >= ?2 AND path < ?3)",
        params![to, tlo, thi],
    )?;
    c.run(
        "UPDATE nodes SET path = ?2 || substr(path, ?3)
         WHERE path = ?1 OR (path >= ?4 AND path < ?5)",
        params![from, to, from.len() as i64 + 1, lo, hi],
    )?;
    // What an interrupted upload left under the old name is no proof for the new one.
    end_intents_on(c, from)?;
    end_intents_on(c, to)?;
    Ok(())
}

fn end_intents_on(c: &Connection, path: &str) -> rusqlite::Result<usize> {
    let (lo, hi) = below(path);
    c.run(
        "DELETE FROM intents WHERE path = ?1 OR (path >= ?2 AND path < ?3)",
        params![path, lo, hi],
    )
}

/// The kind of change a queue entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A new file.
    Create,
    /// New content.
    Modify,
    /// Gone on-premise.
    Delete,
    /// A new folder.
    Mkdir,
    /// `path` moved to `dest`.
    Rename,
    /// Found by the start-up scan or asked for by a user: compare and do what is needed.
    Check,
}

impl Op {
    /// The name stored in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Modify => "modify",
            Op::Delete => "delete",
            Op::Mkdir => "mkdir",
            Op::Rename => "rename",
            Op::Check => "check",
        }
    }
    fn parse(s: &str) -> Option<Op> {
        [
            Op::Create,
            Op::Modify,
            Op::Delete,
            Op::Mkdir,
            Op::Rename,
            Op::Check,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// The state of a queue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueState {
    /// Waiting for its time.
    Pending,
    /// Failed for good until the user asks again or the file changes.
    Failed,
    /// The cloud changed too (412): kept for the reconciler, never overwritten.
    Conflict,
}

impl QueueState {
    fn as_str(self) -> &'static str {
        match self {
            QueueState::Pending => "pending",
            QueueState::Failed => "failed",
            QueueState::Conflict => "conflict",
        }
    }
}

/// One durable change waiting for the cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    /// Order of arrival.
    pub id: i64,
    /// What happened.
    pub op: Op,
    /// The path (the source, for a rename).
    pub path: String,
    /// The target of a rename.
    pub dest: Option<String>,
    /// Not before this time (ms): the quiet period.
    pub not_before: i64,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Next retry time after a transient error (ms).
    pub next_retry_at: i64,
    /// Pending, failed or conflict.
    pub state: QueueState,
    /// Failure code when failed.
    pub failure: Option<FailureCode>,
    /// Last error message.
    pub last_error: Option<String>,
    /// Bumped each time a new change folds into this entry.
    pub generation: i64,
}

/// Reads the columns of `queue` in table order, as every SELECT of whole entries lists them.
impl TryFrom<&Row<'_>> for QueueEntry {
    type Error = rusqlite::Error;
    fn try_from(r: &Row<'_>) -> rusqlite::Result<Self> {
        let op: String = r.get(1)?;
        let state: String = r.get(7)?;
        let failure: Option<String> = r.get(8)?;
        Ok(QueueEntry {
            id: r.get(0)?,
            op: Op::parse(&op).unwrap_or(Op::Check),
            path: r.get(2)?,
            dest: r.get(3)?,
            not_before: r.get(4)?,
            attempts: r.get::<_, i64>(5)? as u32,
            next_retry_at: r.get(6)?,
            state: match state.as_str() {
                "failed" => QueueState::Failed,
                "conflict" => QueueState::Conflict,
                _ => QueueState::Pending,
            },
            failure: failure.as_deref().and_then(FailureCode::parse),
            last_error: r.get(9)?,
            generation: r.get(10)?,
        })
    }
}

/// A change reported by the filesystem, before it is written to the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Something happened to `path`.
    Path(Op, String),
    /// `from` was renamed to `to`.
    Rename(String, String),
}

/// The journal.
pub struct Journal {
    write: Mutex<Connection>,
    read: Mutex<Connection>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Journal")
    }
}

/// The journal runs the same few statements for every file; parsing them again each time cost
/// more than running them. These go through the connection's cache of prepared statements.
trait Cached {
    fn run<P: rusqlite::Params>(&self, sql: &str, p: P) -> rusqlite::Result<usize>;
    fn one<T, P, F>(&self, sql: &str, p: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&Row<'_>) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn run<P: rusqlite::Params>(&self, sql: &str, p: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(p)
    }

    fn one<T, P, F>(&self, sql: &str, p: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(p, f)
    }
}

/// The record of `path` read on `c`.
fn node_on(c: &Connection, path: &str) -> Result<Option<NodeRecord>> {
    let mut st = c.prepare_cached(
        "SELECT path, kind, size, mtime_ns, ctime_ns, ino, hash, etag, state, error, synced_at
         FROM nodes WHERE path = ?1",
    )?;
    Ok(st
        .query_row([path], |r| NodeRecord::try_from(r))
        .optional()?)
}

fn open_conn(path: &Path) -> Result<Connection> {
    let c = Connection::open(path)?;
    c.set_prepared_statement_cache_capacity(64);
    c.busy_timeout(Duration::from_secs(30))?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "NORMAL")?;
    c.pragma_update(None, "foreign_keys", "ON")?;
    Ok(c)
}

/// The range `[lo, hi)` of paths strictly below `dir` (`dir/…`), for index scans.
fn below(dir: &str) -> (String, String) {
    (format!("{dir}/"), format!("{dir}0"))
}

impl Journal {
    /// Opens (creating if needed) the journal at `path` and migrates it.
    pub fn open(path: &Path) -> Result<Journal> {
        let mut w = open_conn(path)?;
        Self::migrate(&mut w)?;
        let r = open_conn(path)?;
        Ok(Journal {
            write: Mutex::new(w),
            read: Mutex::new(r),
        })
    }

    /// The schema version this build writes.
    pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

    fn migrate(c: &mut Connection) -> Result<()> {
        let v: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if v > Self::SCHEMA_VERSION {
            return Err(JournalError::TooNew(v, Self::SCHEMA_VERSION));
        }
        for (i, step) in MIGRATIONS.iter().enumerate().skip(v as usize) {
            let tx = c.transaction()?;
            tx.execute_batch(step)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        if v > 0 && v < Self::SCHEMA_VERSION {
            tracing::info!(
                from = v,
                to = Self::SCHEMA_VERSION,
                "journal schema migrated"
            );
        }
        Ok(())
    }

    fn w(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.write.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn r(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.read.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The raw metadata value under `key`: for inspection and migrations. The engine reads and
    /// writes its metadata through the typed methods below, which own the keys.
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .w()
            .one("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.w().run(
            "INSERT INTO meta(key, value) VALUES(?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    /// The on-premise folder and the host this journal was made for, once it was claimed.
    pub fn owner(&self) -> Result<Option<Owner>> {
        Ok(match self.meta(meta_key::ONPREM)? {
            None => None,
            Some(onprem) => Some(Owner {
                onprem,
                host: self.meta(meta_key::HOST)?,
            }),
        })
    }

    /// Claims this journal for the on-premise folder `onprem` on host `host`.
    pub fn set_owner(&self, onprem: &str, host: &str) -> Result<()> {
        let mut c = self.w();
        let tx = c.transaction()?;
        for (k, v) in [(meta_key::ONPREM, onprem), (meta_key::HOST, host)] {
            tx.execute(
                "INSERT INTO meta(key, value) VALUES(?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![k, v],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The ETag the cloud folder of the sync set at `set` had when its last complete pull
    /// began.
    pub fn root_etag(&self, set: &str) -> Result<Option<String>> {
        self.meta(&meta_key::root_etag(set))
    }

    /// Records the ETag of the cloud folder of the sync set at `set` after a complete pull.
    pub fn set_root_etag(&self, set: &str, etag: &str) -> Result<()> {
        self.set_meta(&meta_key::root_etag(set), etag)
    }

    /// The folders taken out of sync by the user. A value this version cannot read is no
    /// folder at all (and is reported).
    pub fn unsynced(&self) -> Result<Vec<String>> {
        Ok(match self.meta(meta_key::UNSYNCED)? {
            None => Vec::new(),
            Some(s) => serde_json::from_str(&s)
                .map_err(|e| JournalError::Corrupt(format!("the list of unsynced folders: {e}")))?,
        })
    }

    /// Records the folders taken out of sync by the user.
    pub fn set_unsynced(&self, folders: &[String]) -> Result<()> {
        let json = serde_json::to_string(folders)
            .map_err(|e| JournalError::Corrupt(format!("the list of unsynced folders: {e}")))?;
        self.set_meta(meta_key::UNSYNCED, &json)
    }

    // ---------------------------------------------------------------- nodes

    /// The record of `path`, if any.
    pub fn node(&self, path: &str) -> Result<Option<NodeRecord>> {
        node_on(&self.w(), path)
    }

    /// Like [`Journal::node`], on the read connection (for status reads).
    pub fn node_for_status(&self, path: &str) -> Result<Option<NodeRecord>> {
        node_on(&self.r(), path)
    }

    /// Every node record (tests only: the daemon streams records or reads them by path).
    #[cfg(test)]
    pub fn all_nodes(&self) -> Result<Vec<NodeRecord>> {
        let c = self.r();
        let mut st = c.prepare("SELECT path, kind, size, mtime_ns, ctime_ns, ino, hash, etag, state, error, synced_at FROM nodes")?;
        let rows = st.query_map([], |r| NodeRecord::try_from(r))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Calls `f` on every node record at or below `path` (all of them for `""`), without its
    /// content hash, in path order, one row at a time: a pull of a large tree never holds the
    /// journal in memory.
    pub fn for_each_node_under(&self, path: &str, mut f: impl FnMut(NodeRecord)) -> Result<()> {
        let c = self.r();
        let (lo, hi) = below(path);
        let mut st = c.prepare_cached(
            "SELECT path, kind, size, mtime_ns, ctime_ns, ino, NULL AS hash, etag, state, error,
             synced_at FROM nodes WHERE ?4 OR path = ?1 OR (path >= ?2 AND path < ?3)
             ORDER BY path",
        )?;
        let mut rows = st.query(params![path, lo, hi, path.is_empty()])?;
        while let Some(r) = rows.next()? {
            f(NodeRecord::try_from(r)?);
        }
        Ok(())
    }

    /// Calls `f` with the stat part of every node record, without holding them all at once:
    /// path, kind and [`FileStat`].
    pub fn for_each_stat(&self, mut f: impl FnMut(String, NodeKind, FileStat)) -> Result<()> {
        let c = self.r();
        let mut st = c.prepare("SELECT path, kind, size, mtime_ns, ctime_ns, ino FROM nodes")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let kind: String = r.get(1)?;
            let kind = if kind == "dir" {
                NodeKind::Dir
            } else {
                NodeKind::File
            };
            let stat = FileStat {
                size: r.get::<_, i64>(2)? as u64,
                mtime_ns: r.get(3)?,
                ctime_ns: r.get(4)?,
                ino: r.get::<_, i64>(5)? as u64,
            };
            f(r.get(0)?, kind, stat);
        }
        Ok(())
    }

    /// The paths of the records directly below the folder `dir` (top-level ones for `""`).
    pub fn child_paths(&self, dir: &str) -> Result<Vec<String>> {
        let c = self.w();
        let (lo, hi) = if dir.is_empty() {
            (String::new(), "\u{10FFFF}".to_string())
        } else {
            below(dir)
        };
        let skip = if dir.is_empty() {
            1
        } else {
            dir.len() as i64 + 2
        };
        let mut st = c.prepare_cached(
            "SELECT path FROM nodes WHERE path >= ?1 AND path < ?2
             AND instr(substr(path, ?3), '/') = 0",
        )?;
        let rows = st.query_map(params![lo, hi, skip], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
    }

    /// True when some record lies strictly below `path`.
    pub fn has_nodes_below(&self, path: &str) -> Result<bool> {
        let (lo, hi) = below(path);
        Ok(self.w().one(
            "SELECT EXISTS(SELECT 1 FROM nodes WHERE path >= ?1 AND path < ?2)",
            params![lo, hi],
            |r| r.get(0),
        )?)
    }

    /// Number of node records.
    pub fn node_count(&self) -> Result<u64> {
        Ok(self
            .r()
            .one("SELECT count(*) FROM nodes", [], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Writes a node record.
    pub fn put_node(&self, n: &NodeRecord) -> Result<()> {
        self.put_nodes(std::slice::from_ref(n))
    }

    /// Writes many node records in one transaction.
    pub fn put_nodes(&self, nodes: &[NodeRecord]) -> Result<()> {
        self.put_nodes_ending_intent(nodes, false)
    }

    /// Writes a node record and ends the upload intent of its path, in one transaction: an
    /// upload is finished only when both are done.
    pub fn put_node_ending_intent(&self, n: &NodeRecord) -> Result<()> {
        self.put_nodes_ending_intent(std::slice::from_ref(n), true)
    }

    fn put_nodes_ending_intent(&self, nodes: &[NodeRecord], end_intent: bool) -> Result<()> {
        let mut c = self.w();
        let tx = c.transaction()?;
        if end_intent {
            for n in nodes {
                tx.run("DELETE FROM intents WHERE path = ?1", [&n.path])?;
            }
        }
        {
            // The cloud's id of the item stays with its record while the record keeps its kind:
            // a download, an upload or a mark rewrites the record, not the item's identity.
            let mut st = tx.prepare_cached(
                "INSERT INTO nodes(path, kind, size, mtime_ns, ctime_ns, ino, hash, etag,
                    state, error, synced_at) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)
                 ON CONFLICT(path) DO UPDATE SET kind = excluded.kind, size = excluded.size,
                    mtime_ns = excluded.mtime_ns, ctime_ns = excluded.ctime_ns,
                    ino = excluded.ino, hash = excluded.hash, etag = excluded.etag,
                    state = excluded.state, error = excluded.error,
                    synced_at = excluded.synced_at,
                    file_id = CASE WHEN nodes.kind = excluded.kind THEN nodes.file_id END",
            )?;
            for n in nodes {
                st.execute(params![
                    n.path,
                    n.kind.as_str(),
                    n.size as i64,
                    n.mtime_ns,
                    n.ctime_ns,
                    n.ino as i64,
                    n.hash,
                    n.etag,
                    n.state.as_str(),
                    n.error,
                    n.synced_at
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Removes the record of `path` and of everything below it, and their upload intents.
    pub fn delete_subtree(&self, path: &str) -> Result<()> {
        let (lo, hi) = below(path);
        let mut c = self.w();
        let tx = c.transaction()?;
        tx.run(
            "DELETE FROM nodes WHERE path = ?1 OR (path >= ?2 AND path < ?3)",
            params![path, lo, hi],
        )?;
        end_intents_on(&tx, path)?;
        tx.commit()?;
        Ok(())
    }

    /// Moves the records of `from` and everything below it to `to`.
    pub fn move_subtree(&self, from: &str, to: &str) -> Result<()> {
        let mut c = self.w();
        let tx = c.transaction()?;
        move_subtree_on(&tx, from, to)?;
        tx.commit()?;
        Ok(())
    }

    /// The cloud's id of the item recorded at `path` ([`crate::cloud::CloudEntry::file_id`]),
    /// if the record has one.
    pub fn file_id(&self, path: &str) -> Result<Option<String>> {
        Ok(self
            .w()
            .one("SELECT file_id FROM nodes WHERE path = ?1", [path], |r| {
                r.get(0)
            })
            .optional()?
            .flatten())
    }

    /// Records the cloud's ids of items, `(path, id)`, in one transaction. A path without a
    /// record is left alone: the id goes with a record, never makes one.
    pub fn set_file_ids(&self, ids: &[(&str, &str)]) -> Result<()> {
        let mut c = self.w();
        let tx = c.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "UPDATE nodes SET file_id = ?2 WHERE path = ?1 AND file_id IS NOT ?2",
            )?;
            for (p, id) in ids {
                st.execute(params![p, id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    // ---------------------------------------------------------------- cloud moves

    /// Notes that the puller is about to rename `from` to `to` on-premise for a move made in
    /// the cloud: written before the rename, so that a crash after it is finished
    /// ([`Journal::finish_pull_move`]) rather than taken for a delete and a new folder.
    pub fn begin_pull_move(&self, from: &str, to: &str) -> Result<()> {
        self.w().run(
            "INSERT OR REPLACE INTO pull_moves(from_path, to_path, started_at) VALUES(?1, ?2, ?3)",
            params![from, to, now_ms()],
        )?;
        Ok(())
    }

    /// The on-premise rename of a cloud move is done: the records of `from` and below move to
    /// `to` ([`Journal::move_subtree`]) and the note of the move goes, in one transaction.
    pub fn finish_pull_move(&self, from: &str, to: &str) -> Result<()> {
        let mut c = self.w();
        let tx = c.transaction()?;
        move_subtree_on(&tx, from, to)?;
        tx.run("DELETE FROM pull_moves WHERE from_path = ?1", [from])?;
        tx.commit()?;
        Ok(())
    }

    /// Forgets the note of a cloud move whose on-premise rename did not happen.
    pub fn drop_pull_move(&self, from: &str) -> Result<()> {
        self.w()
            .run("DELETE FROM pull_moves WHERE from_path = ?1", [from])?;
        Ok(())
    }

    /// The cloud moves noted and not finished, as `(from, to)`: left by a crash.
    pub fn pull_moves(&self) -> Result<Vec<(String, String)>> {
        let c = self.w();
        let mut st =
            c.prepare_cached("SELECT from_path, to_path FROM pull_moves ORDER BY from_path")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    // ---------------------------------------------------------------- upload intents

    /// The upload intent of `path`, if an attempt left one.
    pub fn intent(&self, path: &str) -> Result<Option<Intent>> {
        Ok(self
            .w()
            .one(
                "SELECT path, precondition, size, hash, started_at FROM intents WHERE path = ?1",
                [path],
                |r| {
                    let pre: Option<String> = r.get(1)?;
                    Ok(Intent {
                        path: r.get(0)?,
                        precondition: pre.as_deref().and_then(precondition_parse),
                        size: r.get::<_, Option<i64>>(2)?.map(|n| n as u64),
                        hash: r.get(3)?,
                        started_at: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    /// Writes (or replaces) the upload intent of its path.
    pub fn set_intent(&self, i: &Intent) -> Result<()> {
        self.w().run(
            "INSERT OR REPLACE INTO intents(path, precondition, size, hash, started_at)
             VALUES(?1, ?2, ?3, ?4, ?5)",
            params![
                i.path,
                i.precondition.as_ref().map(precondition_text),
                i.size.map(|n| n as i64),
                i.hash,
                i.started_at
            ],
        )?;
        Ok(())
    }

    /// Ends the upload intent of `path`, if any.
    pub fn end_intent(&self, path: &str) -> Result<()> {
        self.w()
            .run("DELETE FROM intents WHERE path = ?1", [path])?;
        Ok(())
    }

    /// Ends the upload intents of `path` and of everything below it.
    pub fn end_intents_under(&self, path: &str) -> Result<()> {
        end_intents_on(&self.w(), path)?;
        Ok(())
    }

    // ---------------------------------------------------------------- multipart uploads

    /// The multipart upload under way to the cloud path `path`, with its finished parts, if
    /// one is recorded (the newest, should there be several).
    pub fn multipart_upload(&self, path: &str) -> Result<Option<MultipartUpload>> {
        let c = self.w();
        let up = c
            .one(
                "SELECT upload_id, path, size, part_size, precondition FROM multipart
                 WHERE path = ?1 ORDER BY started_at DESC LIMIT 1",
                [path],
                multipart_row,
            )
            .optional()?;
        let Some(mut up) = up.transpose()? else {
            return Ok(None);
        };
        up.parts = multipart_parts(&c, &up.upload_id)?;
        Ok(Some(up))
    }

    /// Records a new multipart upload (its parts, if any, too), replacing every earlier record
    /// of its path.
    pub fn begin_multipart(&self, up: &MultipartUpload) -> Result<()> {
        let mut c = self.w();
        let tx = c.transaction()?;
        tx.run(
            "DELETE FROM multipart_parts WHERE upload_id IN
                (SELECT upload_id FROM multipart WHERE path = ?1)",
            [&up.path],
        )?;
        tx.run("DELETE FROM multipart WHERE path = ?1", [&up.path])?;
        tx.run(
            "INSERT INTO multipart(upload_id, path, size, part_size, precondition, started_at)
             VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                up.upload_id,
                up.path,
                up.size as i64,
                up.part_size as i64,
                precondition_text(&up.precondition),
                now_ms()
            ],
        )?;
        for p in &up.parts {
            insert_part(&tx, &up.upload_id, p)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Records a finished part of the multipart upload `upload_id` (of the cloud path `path`).
    pub fn multipart_part_done(&self, path: &str, upload_id: &str, part: &PartDone) -> Result<()> {
        let c = self.w();
        let known: bool = c.one(
            "SELECT count(*) > 0 FROM multipart WHERE upload_id = ?1 AND path = ?2",
            params![upload_id, path],
            |r| r.get(0),
        )?;
        if !known {
            return Err(JournalError::Corrupt(format!(
                "a part of the multipart upload of {path:?} that was never begun"
            )));
        }
        insert_part(&c, upload_id, part)?;
        Ok(())
    }

    /// Forgets the multipart upload `upload_id` and its parts.
    pub fn end_multipart(&self, upload_id: &str) -> Result<()> {
        let mut c = self.w();
        let tx = c.transaction()?;
        tx.run(
            "DELETE FROM multipart_parts WHERE upload_id = ?1",
            [upload_id],
        )?;
        tx.run("DELETE FROM multipart WHERE upload_id = ?1", [upload_id])?;
        tx.commit()?;
        Ok(())
    }

    /// Every recorded multipart upload, with its parts.
    pub fn multipart_uploads(&self) -> Result<Vec<MultipartUpload>> {
        let c = self.w();
        let mut st = c.prepare_cached(
            "SELECT upload_id, path, size, part_size, precondition FROM multipart ORDER BY path",
        )?;
        let rows: Vec<rusqlite::Result<Result<MultipartUpload>>> =
            st.query_map([], multipart_row)?.collect();
        drop(st);
        let mut out = Vec::new();
        for r in rows {
            let mut up = r??;
            up.parts = multipart_parts(&c, &up.upload_id)?;
            out.push(up);
        }
        Ok(out)
    }

    // ---------------------------------------------------------------- name clashes

    /// Makes `clashes` (on-premise paths) the cloud files hidden by a folder of their name
    /// under the folder `under`, as a pull that listed it saw them, keeping those below the
    /// folders in `unlisted` (which the pull did not list). Returns the paths new since the
    /// last pull, for the log.
    pub fn set_cloud_clashes(
        &self,
        under: &str,
        unlisted: &[String],
        clashes: &[String],
    ) -> Result<Vec<String>> {
        let mut c = self.w();
        let (lo, hi) = below(under);
        let old: Vec<String> = {
            let mut st = c.prepare_cached(
                "SELECT path FROM cloud_clashes WHERE ?1 = '' OR path = ?1 OR (path >= ?2 AND path < ?3)",
            )?;
            st.query_map(params![under, lo, hi], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        // The usual pull: nothing to write.
        if old.is_empty() && clashes.is_empty() {
            return Ok(Vec::new());
        }
        let tx = c.transaction()?;
        let kept = |p: &str| unlisted.iter().any(|u| crate::paths::is_within(p, u));
        for p in &old {
            if !kept(p) && !clashes.contains(p) {
                tx.run("DELETE FROM cloud_clashes WHERE path = ?1", [p])?;
            }
        }
        let mut new = Vec::new();
        for p in clashes {
            if !old.contains(p) {
                tx.run(
                    "INSERT OR REPLACE INTO cloud_clashes(path, seen_at) VALUES(?1, ?2)",
                    params![p, now_ms()],
                )?;
                new.push(p.clone());
            }
        }
        tx.commit()?;
        Ok(new)
    }

    // ---------------------------------------------------------------- cloud folder moves

    /// The objects already copied by the folder move from `from` to `to` (cloud paths), if
    /// one is under way.
    pub fn cloud_move(&self, from: &str, to: &str) -> Result<Option<Vec<MovedObject>>> {
        let c = self.w();
        let started = cloud_move_begun(&c, from, to)?;
        if !started {
            return Ok(None);
        }
        let mut st = c.prepare_cached(
            "SELECT rel, source_etag, copy_etag FROM cloud_move_objects
             WHERE from_path = ?1 AND to_path = ?2 ORDER BY rel",
        )?;
        let rows = st
            .query_map(params![from, to], |r| {
                Ok(MovedObject {
                    rel: r.get(0)?,
                    source_etag: r.get(1)?,
                    copy_etag: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Some(rows))
    }

    /// Records that a folder move from `from` to `to` has begun (keeping what an earlier,
    /// interrupted run of it recorded).
    pub fn begin_cloud_move(&self, from: &str, to: &str) -> Result<()> {
        self.w().run(
            "INSERT OR IGNORE INTO cloud_moves(from_path, to_path, started_at) VALUES(?1, ?2, ?3)",
            params![from, to, now_ms()],
        )?;
        Ok(())
    }

    /// Records an object copied by the folder move from `from` to `to`.
    pub fn cloud_move_copied(&self, from: &str, to: &str, o: &MovedObject) -> Result<()> {
        let c = self.w();
        let started = cloud_move_begun(&c, from, to)?;
        if !started {
            return Err(JournalError::Corrupt(format!(
                "an object of the move of {from:?} to {to:?}, which was never begun"
            )));
        }
        c.run(
            "INSERT OR REPLACE INTO cloud_move_objects(from_path, to_path, rel, source_etag, copy_etag)
             VALUES(?1, ?2, ?3, ?4, ?5)",
            params![from, to, o.rel, o.source_etag, o.copy_etag],
        )?;
        Ok(())
    }

    /// Forgets the folder move from `from` to `to` (done, or given up).
    pub fn end_cloud_move(&self, from: &str, to: &str) -> Result<()> {
        let mut c = self.w();
        let tx = c.transaction()?;
        tx.run(
            "DELETE FROM cloud_move_objects WHERE from_path = ?1 AND to_path = ?2",
            params![from, to],
        )?;
        tx.run(
            "DELETE FROM cloud_moves WHERE from_path = ?1 AND to_path = ?2",
            params![from, to],
        )?;
        tx.commit()?;
        Ok(())
    }

    // ---------------------------------------------------------------- queue

    /// Writes a batch of changes to the queue in one transaction, folding repeated changes to
    /// one path into one entry and restarting its quiet period.
    pub fn enqueue(&self, changes: &[Change], not_before: i64) -> Result<()> {
        let mut c = self.w();
        let tx = c.transaction()?;
        enqueue_on(&tx, changes, not_before)?;
        tx.commit()?;
        Ok(())
    }

    /// Replaces the entry `id` by `changes`, in one transaction. With `carried`, the paths of
    /// `changes` are the names they had when the entry was queued (a rename's source and
    /// target): they are carried through every rename queued after the entry, oldest first,
    /// as those renames carried the entries pending below their source when they were queued.
    /// The changes then stand where the entry stood, under today's names. The entry goes
    /// only if no newer change folded into it meanwhile (`generation`); otherwise it stays
    /// and runs again. Says whether it went.
    pub fn replace(
        &self,
        id: i64,
        generation: i64,
        changes: &[Change],
        carried: bool,
    ) -> Result<bool> {
        let mut c = self.w();
        let tx = c.transaction()?;
        let changes = if carried {
            let later: Vec<(String, String)> = {
                let mut st = tx.prepare_cached(
                    "SELECT path, dest FROM queue INDEXED BY queue_renames
                     WHERE op = 'rename' AND id > ?1 AND dest IS NOT NULL ORDER BY id",
                )?;
                st.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?
            };
            let carry = |p: &str| carry_through(p, &later);
            changes
                .iter()
                .map(|ch| match ch {
                    Change::Path(op, p) => Change::Path(*op, carry(p)),
                    Change::Rename(a, b) => Change::Rename(carry(a), carry(b)),
                })
                .collect()
        } else {
            changes.to_vec()
        };
        enqueue_on(&tx, &changes, 0)?;
        let gone = tx.run(
            "DELETE FROM queue WHERE id = ?1 AND gen = ?2",
            params![id, generation],
        )? > 0;
        tx.commit()?;
        Ok(gone)
    }

    /// Pending entries, oldest first, at most `limit`.
    #[cfg(test)]
    pub fn pending(&self, limit: usize) -> Result<Vec<QueueEntry>> {
        let c = self.w();
        let mut st =
            c.prepare_cached("SELECT id, op, path, dest, not_before, attempts, next_retry_at, state, failure, last_error, gen FROM queue WHERE state = 'pending' ORDER BY id LIMIT ?1")?;
        let rows = st.query_map([limit as i64], |r| QueueEntry::try_from(r))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Calls `f` on pending entries, oldest first, at most `limit`, until it returns `false`.
    /// Rows are decoded one at a time, so a caller that stops early pays only for what it saw.
    pub fn for_each_pending(
        &self,
        limit: usize,
        mut f: impl FnMut(QueueEntry) -> bool,
    ) -> Result<()> {
        let c = self.w();
        let mut st = c.prepare_cached(
            "SELECT id, op, path, dest, not_before, attempts, next_retry_at, state, failure, last_error, gen
             FROM queue WHERE state = 'pending' ORDER BY id LIMIT ?1",
        )?;
        let mut rows = st.query([limit as i64])?;
        while let Some(row) = rows.next()? {
            if !f(QueueEntry::try_from(row)?) {
                break;
            }
        }
        Ok(())
    }

    /// All entries in any state, oldest first (for reports).
    pub fn queue(&self) -> Result<Vec<QueueEntry>> {
        let c = self.r();
        let mut st = c.prepare("SELECT id, op, path, dest, not_before, attempts, next_retry_at, state, failure, last_error, gen FROM queue ORDER BY id")?;
        let rows = st.query_map([], |r| QueueEntry::try_from(r))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The failed entries, oldest first, for the report of failures.
    pub fn failed_entries(&self) -> Result<Vec<QueueEntry>> {
        let c = self.r();
        let mut st = c.prepare_cached("SELECT id, op, path, dest, not_before, attempts, next_retry_at, state, failure, last_error, gen FROM queue WHERE state = 'failed' ORDER BY id")?;
        let rows = st.query_map([], |r| QueueEntry::try_from(r))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Queue entries that concern `path` or anything below it, for status reads.
    pub fn queue_for_status(&self, path: &str, subtree: bool) -> Result<Vec<QueueEntry>> {
        let c = self.r();
        let (lo, hi) = below(path);
        let sql = if subtree && !path.is_empty() {
            "SELECT id, op, path, dest, not_before, attempts, next_retry_at, state, failure, last_error, gen FROM queue WHERE path = ?1 OR dest = ?1 OR (path >= ?2 AND path < ?3)
             OR (dest >= ?2 AND dest < ?3) LIMIT 64"
        } else if subtree {
            "SELECT id, op, path, dest, not_before, attempts, next_retry_at, state, failure, last_error, gen FROM queue WHERE ?1 = ?1 OR ?2 = ?3 LIMIT 64"
        } else {
            "SELECT id, op, path, dest, not_before, attempts, next_retry_at, state, failure, last_error, gen FROM queue WHERE (path = ?1 OR dest = ?1) AND ?2 != ?3"
        };
        let mut st = c.prepare_cached(sql)?;
        let rows = st.query_map(params![path, lo, hi], |r| QueueEntry::try_from(r))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Conflicting queue entries: their ids by path.
    pub fn conflict_ids(&self) -> Result<HashMap<String, Vec<i64>>> {
        let c = self.w();
        let mut st = c.prepare_cached("SELECT id, path FROM queue WHERE state = 'conflict'")?;
        let mut out: HashMap<String, Vec<i64>> = HashMap::new();
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            out.entry(r.get(1)?).or_default().push(r.get(0)?);
        }
        Ok(out)
    }

    /// Calls `f` with the path and destination of every pending entry, without holding the
    /// queue in memory.
    pub fn for_each_pending_path(&self, mut f: impl FnMut(&str, Option<&str>)) -> Result<()> {
        let c = self.w();
        let mut st = c.prepare_cached("SELECT path, dest FROM queue WHERE state = 'pending'")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let path = r.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
            let dest = r
                .get_ref(1)?
                .as_str_or_null()
                .map_err(rusqlite::Error::from)?;
            f(path, dest);
        }
        Ok(())
    }

    /// True when a pending entry touches `path`, one of its ancestors, or anything below it
    /// (as its path or its rename target): a few index lookups, for a queue too long to hold.
    pub fn pending_overlaps(&self, path: &str) -> Result<bool> {
        let c = self.w();
        if path.is_empty() {
            return Ok(c.one(
                "SELECT EXISTS(SELECT 1 FROM queue WHERE state = 'pending')",
                [],
                |r| r.get(0),
            )?);
        }
        let (lo, hi) = below(path);
        let mut st = c.prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM queue WHERE state = 'pending'
             AND (path = ?1 OR (path >= ?2 AND path < ?3)))
             OR EXISTS(SELECT 1 FROM queue WHERE state = 'pending'
             AND (dest = ?1 OR (dest >= ?2 AND dest < ?3)))",
        )?;
        if st.query_row(params![path, lo, hi], |r| r.get::<_, bool>(0))? {
            return Ok(true);
        }
        let mut st = c.prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM queue WHERE state = 'pending' AND path = ?1)
             OR EXISTS(SELECT 1 FROM queue WHERE state = 'pending' AND dest = ?1)",
        )?;
        let mut a = path;
        while let Some((up, _)) = a.rsplit_once('/') {
            a = up;
            if st.query_row([a], |r| r.get::<_, bool>(0))? {
                return Ok(true);
            }
        }
        Ok(st.query_row([""], |r| r.get::<_, bool>(0))?)
    }

    /// The newest pending rename whose source is `path` or one of its folders, as
    /// `(from, to)`.
    pub fn rename_over(&self, path: &str) -> Result<Option<(String, String)>> {
        let c = self.w();
        let mut st = c.prepare_cached(
            "SELECT path, dest FROM queue INDEXED BY queue_renames
             WHERE op = 'rename' AND state = 'pending' ORDER BY id DESC",
        )?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let from: String = r.get(0)?;
            if crate::paths::is_within(path, &from) {
                let to: Option<String> = r.get(1)?;
                return Ok(to.map(|t| (from, t)));
            }
        }
        Ok(None)
    }

    /// The paths of failed records (such as DELETED_ON_CLOUD) at or below `path` (everything
    /// for `""`), through the index of failed records.
    pub fn failed_nodes_under(&self, path: &str) -> Result<Vec<String>> {
        let c = self.w();
        let (lo, hi) = below(path);
        let mut st = c.prepare_cached(
            "SELECT path FROM nodes INDEXED BY nodes_failed WHERE state = 'failed'
             AND (?4 OR path = ?1 OR (path >= ?2 AND path < ?3))",
        )?;
        let rows = st.query_map(params![path, lo, hi, path.is_empty()], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
    }

    /// The first failure at `path` (or below it): a failed queue entry, or a failed record
    /// such as DELETED_ON_CLOUD. Returns the code and the detail.
    pub fn failure_under(&self, path: &str, subtree: bool) -> Result<Option<(String, String)>> {
        let c = self.r();
        let (lo, hi) = below(path);
        let all = subtree && path.is_empty();
        let sub = subtree && !path.is_empty();
        let q: Option<(Option<String>, Option<String>)> = c
            .prepare_cached(
                "SELECT failure, last_error FROM queue WHERE state = 'failed'
                 AND (?4 OR path = ?1 OR dest = ?1 OR (?5 AND path >= ?2 AND path < ?3)) LIMIT 1",
            )?
            .query_row(params![path, lo, hi, all, sub], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        if let Some((code, detail)) = q {
            return Ok(Some((
                code.unwrap_or_else(|| "UNKNOWN".into()),
                detail.unwrap_or_default(),
            )));
        }
        let clash: Option<String> = c
            .prepare_cached(
                "SELECT path FROM cloud_clashes
                 WHERE ?4 OR path = ?1 OR (?5 AND path >= ?2 AND path < ?3) LIMIT 1",
            )?
            .query_row(params![path, lo, hi, all, sub], |r| r.get(0))
            .optional()?;
        if let Some(p) = clash {
            let detail = if p == path {
                CLASH_DETAIL.to_string()
            } else {
                format!("{p}: {CLASH_DETAIL}")
            };
            return Ok(Some((FailureCode::NameClash.as_str().to_string(), detail)));
        }
        if !subtree {
            return Ok(None);
        }
        let n: Option<Option<String>> = c
            .prepare_cached(
                "SELECT error FROM nodes WHERE state = 'failed'
                 AND (?4 OR path = ?1 OR (path >= ?2 AND path < ?3)) LIMIT 1",
            )?
            .query_row(params![path, lo, hi, all], |r| r.get(0))
            .optional()?;
        Ok(n.map(|e| {
            let e = e.unwrap_or_default();
            match e.split_once(": ") {
                Some((c, d)) => (c.to_string(), d.to_string()),
                None => ("UNKNOWN".to_string(), e),
            }
        }))
    }

    /// Number of entries in the queue, and of those failed.
    pub fn queue_counts(&self) -> Result<(u64, u64)> {
        Ok(self.r().one(
            "SELECT count(*), coalesce(sum(state != 'pending'), 0) FROM queue",
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )?)
    }

    /// Drops a finished entry, unless a newer change folded into it meanwhile.
    pub fn finish(&self, id: i64, generation: i64) -> Result<bool> {
        Ok(self.w().run(
            "DELETE FROM queue WHERE id = ?1 AND gen = ?2",
            params![id, generation],
        )? > 0)
    }

    /// Drops an entry only while it is still in `state`; says whether it did.
    pub fn remove_in_state(&self, id: i64, state: QueueState) -> Result<bool> {
        Ok(self.w().run(
            "DELETE FROM queue WHERE id = ?1 AND state = ?2",
            params![id, state.as_str()],
        )? > 0)
    }

    /// Drops an entry whatever its generation.
    pub fn remove(&self, id: i64) -> Result<()> {
        self.w().run("DELETE FROM queue WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Records a transient failure and when to try again.
    pub fn retry_later(&self, id: i64, next_retry_at: i64, error: &str) -> Result<()> {
        self.w().run(
            "UPDATE queue SET attempts = attempts + 1, next_retry_at = ?2, last_error = ?3
             WHERE id = ?1",
            params![id, next_retry_at, error],
        )?;
        Ok(())
    }

    /// Pushes an entry's time back without counting a failure (the file is still open).
    pub fn postpone(&self, id: i64, not_before: i64) -> Result<()> {
        self.w().run(
            "UPDATE queue SET not_before = max(not_before, ?2) WHERE id = ?1",
            params![id, not_before],
        )?;
        Ok(())
    }

    /// Marks an entry failed for good, or conflicting, with a code.
    pub fn fail(
        &self,
        id: i64,
        generation: i64,
        state: QueueState,
        code: FailureCode,
        error: &str,
    ) -> Result<bool> {
        // A change folded into the entry while it was being pushed (a new generation) is not
        // the one that failed: the entry stays pending and is tried again.
        Ok(self.w().run(
            "UPDATE queue SET state = ?2, failure = ?3, last_error = ?4, attempts = attempts + 1
             WHERE id = ?1 AND gen = ?5",
            params![id, state.as_str(), code.as_str(), error, generation],
        )? > 0)
    }

    /// Puts failed entries (all, or those below `path`) back in the queue, for a sync request
    /// or after the credentials changed.
    pub fn retry_failed(&self, path: Option<&str>) -> Result<usize> {
        let c = self.w();
        let n = match path {
            None => c.run(
                "UPDATE queue SET state = 'pending', attempts = 0, next_retry_at = 0
                 WHERE state != 'pending'",
                [],
            )?,
            Some(p) => {
                let (lo, hi) = below(p);
                c.run(
                    "UPDATE queue SET state = 'pending', attempts = 0, next_retry_at = 0
                     WHERE state != 'pending' AND (path = ?1 OR (path >= ?2 AND path < ?3))",
                    params![p, lo, hi],
                )?
            }
        };
        Ok(n)
    }

    /// Makes every pending entry due now (for `sync --now`) and clears retry waits.
    pub fn expedite(&self) -> Result<()> {
        self.w().run(
            "UPDATE queue SET not_before = 0, next_retry_at = 0 WHERE state = 'pending'",
            [],
        )?;
        Ok(())
    }

    /// The earliest time any pending entry becomes due, if any.
    pub fn next_due(&self) -> Result<Option<i64>> {
        Ok(self.w().one(
            "SELECT min(max(not_before, next_retry_at)) FROM queue WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )?)
    }
}

/// `path` under the names the renames `later` (oldest first) gave it, one after the other.
fn carry_through(path: &str, later: &[(String, String)]) -> String {
    let mut p = path.to_string();
    for (from, to) in later {
        if crate::paths::is_within(&p, from) && !from.is_empty() {
            p = format!("{to}{}", &p[from.len()..]);
        }
    }
    p
}

fn enqueue_on(tx: &rusqlite::Transaction<'_>, changes: &[Change], not_before: i64) -> Result<()> {
    for ch in changes {
        match ch {
            Change::Path(op, path) => enqueue_path(tx, *op, path, not_before)?,
            Change::Rename(from, to) => {
                // Pending changes below the source follow the files: they are re-queued
                // under the new name, after the rename.
                let (lo, hi) = below(from);
                let moved: Vec<(i64, String, String)> = {
                    let mut st = tx.prepare_cached(
                        "SELECT id, op, path FROM queue WHERE op != 'rename'
                         AND (path = ?1 OR (path >= ?2 AND path < ?3))",
                    )?;
                    st.query_map(params![from, lo, hi], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?
                    .collect::<rusqlite::Result<_>>()?
                };
                tx.run(
                    "INSERT INTO queue(op, path, dest, not_before) VALUES('rename', ?1, ?2, ?3)",
                    params![from, to, now_ms()],
                )?;
                for (id, op, p) in moved {
                    tx.run("DELETE FROM queue WHERE id = ?1", [id])?;
                    let newp = format!("{to}{}", &p[from.len()..]);
                    enqueue_path(tx, Op::parse(&op).unwrap_or(Op::Check), &newp, not_before)?;
                }
            }
        }
    }
    Ok(())
}

/// The non-rename queue entries of a path.
const ENTRIES_OF_PATH: &str = "SELECT id, op FROM queue WHERE path = ?1 AND op != 'rename'";

fn enqueue_path(tx: &rusqlite::Transaction<'_>, op: Op, path: &str, not_before: i64) -> Result<()> {
    // Fold into an existing non-rename entry for the same path, keeping the first kind of
    // change when it says more (a create followed by modifies is still a create).
    //
    // The newest entry is picked here, not with `ORDER BY id DESC LIMIT 1`: with that clause
    // SQLite prepared the statement again on every run (a new bound path each time), which
    // made most of the journal writer's work.
    let existing: Option<(i64, String)> = {
        let mut st = tx.prepare_cached(ENTRIES_OF_PATH)?;
        let mut rows = st.query([path])?;
        let mut newest: Option<(i64, String)> = None;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            if newest.as_ref().is_none_or(|(n, _)| id > *n) {
                newest = Some((id, r.get(1)?));
            }
        }
        newest
    };
    // A later rename touching this path must stay ordered after it; only fold when no rename
    // was queued since.
    if let Some((id, old)) = existing {
        let later_rename: bool = tx.one(
            "SELECT EXISTS(SELECT 1 FROM queue WHERE id > ?1 AND op = 'rename')",
            [id],
            |r| r.get(0),
        )?;
        if !later_rename {
            let keep = match (Op::parse(&old), op) {
                (Some(Op::Create), Op::Modify) | (Some(Op::Mkdir), Op::Modify) => old,
                _ => op.as_str().to_string(),
            };
            tx.run(
                "UPDATE queue SET op = ?2, not_before = max(not_before, ?3), state = 'pending',
                 attempts = 0, next_retry_at = 0, failure = NULL, gen = gen + 1 WHERE id = ?1",
                params![id, keep, not_before],
            )?;
            return Ok(());
        }
    }
    tx.run(
        "INSERT INTO queue(op, path, not_before) VALUES(?1, ?2, ?3)",
        params![op.as_str(), path, not_before],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queueing_changes_never_prepares_statements_again() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(&d.path().join("j.db")).unwrap();
        for i in 0..20 {
            let p = format!("s/f{i}");
            j.enqueue(
                &[
                    Change::Path(Op::Create, p.clone()),
                    Change::Path(Op::Modify, p),
                ],
                0,
            )
            .unwrap();
        }
        let c = j.w();
        let st = c.prepare_cached(ENTRIES_OF_PATH).unwrap();
        assert_eq!(st.get_status(rusqlite::StatementStatus::Run), 40);
        assert_eq!(st.get_status(rusqlite::StatementStatus::RePrepare), 0);
    }

    #[test]
    fn pending_overlaps_matches_ancestors_descendants_and_rename_targets() {
        let (_d, j) = journal();
        j.enqueue(
            &[
                Change::Path(Op::Create, "a/b/c.txt".into()),
                Change::Rename("x/old".into(), "y/new".into()),
            ],
            0,
        )
        .unwrap();
        for (p, want) in [
            ("", true),
            ("a", true),
            ("a/b", true),
            ("a/b/c.txt", true),
            ("a/b/c.txt/d", true),
            ("a/bc", false),
            ("a/b/c", false),
            ("x/old", true),
            ("y", true),
            ("y/new/z", true),
            ("y/ne", false),
            ("z", false),
        ] {
            assert_eq!(j.pending_overlaps(p).unwrap(), want, "{p:?}");
        }
        let mut seen = Vec::new();
        j.for_each_pending_path(|p, d| seen.push((p.to_string(), d.map(str::to_string))))
            .unwrap();
        assert_eq!(seen.len(), 2);
        assert!(j.conflict_ids().unwrap().is_empty());
    }

    fn journal() -> (tempfile::TempDir, Journal) {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(&d.path().join("j.db")).unwrap();
        (d, j)
    }

    fn rec(path: &str) -> NodeRecord {
        NodeRecord {
            path: path.into(),
            kind: NodeKind::File,
            size: 1,
            mtime_ns: 2,
            ctime_ns: 3,
            ino: 4,
            hash: Some("h".into()),
            etag: Some("\"e\"".into()),
            state: NodeState::Synced,
            error: None,
            synced_at: Some(5),
        }
    }

    #[test]
    fn a_record_is_unchanged_only_while_size_mtime_ctime_and_inode_stay() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        let m = std::fs::metadata(&p).unwrap();
        let st = FileStat::of(&m);
        let r = NodeRecord {
            size: st.size,
            mtime_ns: st.mtime_ns,
            ctime_ns: st.ctime_ns,
            ino: st.ino,
            ..rec("f")
        };
        assert!(r.unchanged(&m));
        assert!(
            !NodeRecord {
                ctime_ns: 1,
                ..r.clone()
            }
            .unchanged(&m)
        );
        assert!(
            !NodeRecord {
                ino: 1,
                ..r.clone()
            }
            .unchanged(&m)
        );
        assert!(
            !NodeRecord {
                kind: NodeKind::Dir,
                ..r.clone()
            }
            .unchanged(&m)
        );
        // A chmod keeps size and mtime but moves the ctime.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(!r.unchanged(&std::fs::metadata(&p).unwrap()));
    }

    #[test]
    fn writes_coalesce() {
        let (_d, j) = journal();
        let c = |op, p: &str| Change::Path(op, p.into());
        j.enqueue(&[c(Op::Create, "a"), c(Op::Modify, "a")], 10)
            .unwrap();
        j.enqueue(&[c(Op::Modify, "a")], 20).unwrap();
        let q = j.pending(10).unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].op, Op::Create);
        assert_eq!(q[0].not_before, 20);
        assert_eq!(q[0].generation, 2);
        assert!(
            !j.finish(q[0].id, 1).unwrap(),
            "a stale generation must not finish"
        );
        assert!(j.finish(q[0].id, 2).unwrap());
    }

    #[test]
    fn rename_carries_pending_changes() {
        let (_d, j) = journal();
        j.enqueue(
            &[
                Change::Path(Op::Modify, "d/x".into()),
                Change::Path(Op::Modify, "dd".into()),
                Change::Rename("d".into(), "e".into()),
            ],
            10,
        )
        .unwrap();
        let q = j.pending(10).unwrap();
        let v: Vec<_> = q.iter().map(|e| (e.op, e.path.as_str())).collect();
        assert_eq!(
            v,
            vec![(Op::Modify, "dd"), (Op::Rename, "d"), (Op::Modify, "e/x")]
        );
    }

    #[test]
    fn a_replaced_entry_is_carried_through_later_renames() {
        let (_d, j) = journal();
        let r = |a: &str, b: &str| Change::Rename(a.into(), b.into());
        j.enqueue(&[r("x/f", "y/f"), r("x", "z"), r("z", "w")], 0)
            .unwrap();
        let first = j.pending(10).unwrap()[0].clone();
        let check = |p: &str| Change::Path(Op::Check, p.into());
        // The move of x/f over y/f became an update of y/f and a delete of x/f: the delete
        // follows x to z, then to w; y/f stays.
        assert!(
            j.replace(
                first.id,
                first.generation,
                &[check("y/f"), check("x/f")],
                true
            )
            .unwrap()
        );
        let v: Vec<_> = j
            .pending(10)
            .unwrap()
            .into_iter()
            .map(|e| (e.op, e.path, e.dest))
            .collect();
        assert_eq!(
            v,
            vec![
                (Op::Rename, "x".into(), Some("z".into())),
                (Op::Rename, "z".into(), Some("w".into())),
                (Op::Check, "y/f".into(), None),
                (Op::Check, "w/f".into(), None),
            ]
        );
        // Uncarried, the names stand; and an entry a change folded into meanwhile stays.
        let check_y = j.pending(10).unwrap()[2].clone();
        j.enqueue(&[Change::Path(Op::Modify, "y/f".into())], 0)
            .unwrap();
        assert!(
            !j.replace(check_y.id, check_y.generation, &[check("x/g")], false)
                .unwrap()
        );
        let paths: Vec<_> = j.pending(10).unwrap().into_iter().map(|e| e.path).collect();
        assert_eq!(paths, vec!["x", "z", "y/f", "w/f", "x/g"]);
    }

    #[test]
    fn a_file_id_stays_with_its_record_and_moves_with_it() {
        let (_d, j) = journal();
        for p in ["a", "a/f", "b"] {
            j.put_node(&rec(p)).unwrap();
        }
        j.set_file_ids(&[("a", "1"), ("a/f", "2"), ("b", "3"), ("none", "4")])
            .unwrap();
        assert_eq!(j.file_id("none").unwrap(), None, "an id makes no record");
        // Rewritten by a download or an upload: the same item.
        j.put_node(&NodeRecord {
            etag: Some("\"new\"".into()),
            ..rec("a/f")
        })
        .unwrap();
        assert_eq!(j.file_id("a/f").unwrap().as_deref(), Some("2"));
        // Another kind at the path: another item.
        j.put_node(&NodeRecord {
            kind: NodeKind::Dir,
            ..rec("b")
        })
        .unwrap();
        assert_eq!(j.file_id("b").unwrap(), None);
        j.move_subtree("a", "c").unwrap();
        assert_eq!(j.file_id("c/f").unwrap().as_deref(), Some("2"));
        assert_eq!(j.file_id("c").unwrap().as_deref(), Some("1"));
        j.delete_subtree("c").unwrap();
        assert_eq!(j.file_id("c/f").unwrap(), None);
    }

    #[test]
    fn a_cloud_move_is_noted_until_its_records_move() {
        let (_d, j) = journal();
        for p in ["a", "a/f"] {
            j.put_node(&rec(p)).unwrap();
        }
        j.begin_pull_move("a", "b").unwrap();
        j.begin_pull_move("x", "y").unwrap();
        assert_eq!(
            j.pull_moves().unwrap(),
            vec![("a".into(), "b".into()), ("x".into(), "y".into())]
        );
        j.finish_pull_move("a", "b").unwrap();
        j.drop_pull_move("x").unwrap();
        assert!(j.pull_moves().unwrap().is_empty());
        assert!(j.node("b/f").unwrap().is_some() && j.node("a/f").unwrap().is_none());
    }

    #[test]
    fn subtree_moves() {
        let (_d, j) = journal();
        for p in ["a", "a/b", "a/b/c", "ab", "x"] {
            j.put_node(&rec(p)).unwrap();
        }
        j.move_subtree("a", "x").unwrap();
        let mut top = j.child_paths("").unwrap();
        top.sort();
        assert_eq!(top, vec!["ab", "x"]);
        assert_eq!(j.child_paths("x").unwrap(), vec!["x/b"]);
        assert!(j.has_nodes_below("x/b").unwrap() && !j.has_nodes_below("ab").unwrap());
        let mut paths: Vec<_> = j.all_nodes().unwrap().into_iter().map(|n| n.path).collect();
        paths.sort();
        assert_eq!(paths, vec!["ab", "x", "x/b", "x/b/c"]);
        j.delete_subtree("x").unwrap();
        assert_eq!(j.node_count().unwrap(), 1);
    }

    #[test]
    fn an_old_journal_migrates_and_keeps_its_data() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("j.db");
        {
            // A journal as version 1 wrote it.
            let c = Connection::open(&p).unwrap();
            c.execute_batch(MIGRATIONS[0]).unwrap();
            c.pragma_update(None, "user_version", 1).unwrap();
            c.execute(
                "INSERT INTO queue(op, path, not_before) VALUES('create', 'a', 0)",
                [],
            )
            .unwrap();
        }
        let j = Journal::open(&p).unwrap();
        assert_eq!(j.pending(10).unwrap().len(), 1);
        let v: i64 = j
            .w()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, Journal::SCHEMA_VERSION);
        // A journal from a newer cloudsync is refused, not damaged.
        j.w().pragma_update(None, "user_version", 99).unwrap();
        drop(j);
        assert!(matches!(
            Journal::open(&p),
            Err(JournalError::TooNew(99, _))
        ));
    }

    #[test]
    fn reopen_keeps_queue_and_migrates_once() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("j.db");
        {
            let j = Journal::open(&p).unwrap();
            j.enqueue(&[Change::Path(Op::Create, "a".into())], 1)
                .unwrap();
        }
        let j = Journal::open(&p).unwrap();
        assert_eq!(j.pending(10).unwrap().len(), 1);
    }

    #[test]
    fn a_failure_of_an_older_generation_leaves_the_entry_pending() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::open(&d.path().join("j.db")).unwrap();
        j.enqueue(&[Change::Path(Op::Modify, "a".into())], 0)
            .unwrap();
        let e = j.pending(10).unwrap().remove(0);
        // A new change is folded in while the push is under way.
        j.enqueue(&[Change::Path(Op::Modify, "a".into())], 0)
            .unwrap();
        let failed = j
            .fail(
                e.id,
                e.generation,
                QueueState::Failed,
                FailureCode::Unknown,
                "x",
            )
            .unwrap();
        assert!(!failed);
        assert_eq!(j.pending(10).unwrap().len(), 1, "still pending");
        assert!(
            !j.finish(e.id, e.generation).unwrap(),
            "not finished either"
        );
        let e2 = j.pending(10).unwrap().remove(0);
        assert!(
            j.fail(
                e2.id,
                e2.generation,
                QueueState::Failed,
                FailureCode::Unknown,
                "x"
            )
            .unwrap()
        );
        assert!(j.pending(10).unwrap().is_empty());
    }

    #[test]
    fn metadata_is_read_and_written_by_meaning() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("j.db");
        let j = Journal::open(&p).unwrap();
        assert_eq!(j.owner().unwrap(), None);
        assert!(j.unsynced().unwrap().is_empty());
        assert_eq!(j.root_etag("docs").unwrap(), None);
        j.set_owner("/srv/a", "host-1").unwrap();
        j.set_unsynced(&["docs/old".into(), "x y".into()]).unwrap();
        j.set_root_etag("docs", "\"e1\"").unwrap();
        j.set_root_etag("", "\"root\"").unwrap();
        drop(j);
        let j = Journal::open(&p).unwrap();
        assert_eq!(
            j.owner().unwrap(),
            Some(Owner {
                onprem: "/srv/a".into(),
                host: Some("host-1".into())
            })
        );
        assert_eq!(j.unsynced().unwrap(), ["docs/old", "x y"]);
        assert_eq!(j.root_etag("docs").unwrap().as_deref(), Some("\"e1\""));
        assert_eq!(j.root_etag("").unwrap().as_deref(), Some("\"root\""));
        // A list this version cannot read is reported, not taken for "nothing unsynced".
        j.set_meta(meta_key::UNSYNCED, "{not json").unwrap();
        assert!(matches!(j.unsynced(), Err(JournalError::Corrupt(_))));
    }

    #[test]
    fn multipart_uploads_survive_and_end() {
        let (_d, j) = journal();
        let mut up = MultipartUpload {
            path: "big/f.iso".into(),
            upload_id: "u1".into(),
            size: 40,
            part_size: 16,
            precondition: Precondition::IfMatch("\"e1\"".into()),
            parts: Vec::new(),
        };
        j.begin_multipart(&up).unwrap();
        let p1 = PartDone {
            number: 1,
            etag: "\"p1\"".into(),
            hash: "h1".into(),
        };
        j.multipart_part_done("big/f.iso", "u1", &p1).unwrap();
        assert!(j.multipart_part_done("big/f.iso", "other", &p1).is_err());
        up.parts.push(p1);
        assert_eq!(j.multipart_upload("big/f.iso").unwrap(), Some(up.clone()));
        assert_eq!(j.multipart_uploads().unwrap(), [up.clone()]);
        // A new upload of the path replaces the record.
        let up2 = MultipartUpload {
            upload_id: "u2".into(),
            parts: Vec::new(),
            ..up.clone()
        };
        j.begin_multipart(&up2).unwrap();
        assert_eq!(j.multipart_upload("big/f.iso").unwrap(), Some(up2));
        j.end_multipart("u2").unwrap();
        assert_eq!(j.multipart_upload("big/f.iso").unwrap(), None);
        assert!(j.multipart_uploads().unwrap().is_empty());
    }
}
