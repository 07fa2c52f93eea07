//! The S3 cloud: `s3://bucket/prefix/` on AWS S3 or any S3-compatible store (Ceph RGW,
//! SeaweedFS, MinIO...), with SigV4 keys from the environment, the AWS shared credentials
//! file or a `credentials_file`.
//!
//! This module is the [`Cloud`] implementation: what each operation becomes in S3 requests,
//! how folders are made out of prefixes, and what the client finds out about a store (whether
//! it honours conditional writes). Its parts, by job:
//! - `client`: signing (rusty-s3) over reqwest, the requests, and the error mapping;
//! - `keys`: keys under the prefix, and the listing parsers (delimited and flat) with their
//!   key checks;
//! - `folders`: the folders lately seen holding objects, so a new file below one is not
//!   checked for a file in the way above it;
//! - `multipart`: large files in parts, recorded in the [`UploadLedger`] so a restart resumes;
//! - `moves`: folder moves, object by object, recorded in the ledger so a restart resumes;
//! - `creds`: where the keys come from.
//!
//! Signing: rusty-s3 is sans-IO (it only builds presigned URLs), so requests go over the same
//! reqwest client, TLS roots and timeouts as WebDAV, with no second HTTP stack; the payload is
//! unsigned, so a file streams once. object_store would bring a second reqwest and aws-lc,
//! aws-sdk-s3 a whole runtime stack at this compiler's edge.
//!
//! What it guarantees:
//! - **Folders.** A folder is a prefix: it exists while any key lies below it or its
//!   zero-byte marker `name/` (which `mkdir` writes, for it and each parent) is there. When a
//!   file `x` and keys `x/…` both exist, the folder wins and the file is skipped as a name
//!   clash.
//! - **Keys are never trusted.** Listed keys outside the prefix, with empty, `.` or `..`
//!   components, NUL, or names over 255 bytes are refused into [`Listing::skipped`].
//! - **Writes never overwrite what they have not seen.** New files go with `If-None-Match: *`,
//!   updates with `If-Match`, also on CompleteMultipartUpload. Whether the store honours them
//!   is found out once per run (`honours_conditions`); where it does not, each condition is
//!   checked with a HEAD first, and a change landing between the HEAD and the write is
//!   overwritten (the window is listed in doc/SEMANTICS.md).
//! - **Moves and folder deletes are not atomic.** A rename is a CopyObject and a DeleteObject
//!   per object, each source deleted only once its copy is made and only while it is still
//!   the version copied; a folder move is recorded in the ledger as it goes, so a restart
//!   resumes it. A folder delete deletes each object below the prefix, its marker last.

mod client;
mod creds;
mod folders;
mod keys;
mod moves;
mod multipart;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header;
use rusty_s3::actions::ListObjectsV2Response;

use super::{
    Cloud, CloudEntry, CloudError, CloudOptions, Listing, Precondition, Subtree, UploadLedger,
    Uploaded, check_rel_path, parent,
};
use client::{Client, Cond, header_etag};
use folders::KnownFolders;
use keys::{Flat, Gather, MAX_KEY, MAX_NAME};

/// Files from this size on go up as multipart uploads.
pub const MULTIPART_THRESHOLD: u64 = 64 << 20;

/// The part size of multipart uploads (S3 takes at least 5 MiB, at most 10 000 parts). Part
/// sizes are powers of two: each part's hash is then a subtree of the file's BLAKE3 tree, and
/// the hash of the whole file is made of them, whatever order the parts went in.
pub const PART_SIZE: u64 = 16 << 20;

/// How many parts of one multipart upload go at once.
pub const PARTS_IN_FLIGHT: usize = 4;

/// The marker of an empty folder on a store that keeps no `name/` markers (s3s-fs maps keys
/// onto a directory and lists no empty folder): a zero-byte object inside it. Its name is in
/// the built-in ignore list, and listings take it for the folder's marker, never a child.
pub const FOLDER_FILE: &str = ".cloudsync-folder";

/// How many requests a folder delete or move keeps in flight.
const FAN_OUT: usize = 8;

/// How the bucket is named in request URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// `https://endpoint/bucket/key`: every S3-compatible store takes it.
    Path,
    /// `https://bucket.endpoint/key`: AWS's default.
    VirtualHost,
}

impl std::str::FromStr for Addressing {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Addressing> {
        match s {
            "path" => Ok(Addressing::Path),
            "virtual-host" | "virtual" => Ok(Addressing::VirtualHost),
            _ => anyhow::bail!("unknown S3 addressing {s:?}: use \"path\" or \"virtual-host\""),
        }
    }
}

/// An S3 bucket (and a prefix in it) used as the cloud.
pub struct S3 {
    client: Client,
    /// The key prefix of the synced root: empty, or ending in `/`.
    prefix: String,
    /// `s3://bucket/prefix/`, for messages.
    shown: String,
    /// Where the keys came from, for logs.
    creds_source: String,
    /// Whether the store honours `If-Match` and `If-None-Match: *` on PutObject, once found.
    conditions: tokio::sync::OnceCell<bool>,
    ledger: OnceLock<Arc<dyn UploadLedger>>,
    /// What the store's listings show, once found.
    listing: tokio::sync::OnceCell<ListingCaps>,
    /// Abandoned uploads of the ledger were aborted this run.
    swept: tokio::sync::OnceCell<()>,
    multipart_threshold: u64,
    part_size: u64,
    /// Keys per listing page; `None` for the store's default (1000 on AWS).
    page_size: Option<usize>,
    /// Folders lately seen holding objects: no file above a new key needs looking for there.
    known: KnownFolders,
    /// Per prefix listed flat, every 999th key of the last listing: where the next one cuts
    /// the key space into ranges listed side by side.
    cuts: std::sync::Mutex<std::collections::HashMap<String, Vec<String>>>,
}

impl fmt::Debug for S3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3")
            .field("cloud", &self.shown)
            .field("endpoint", &self.client.bucket.base_url().as_str())
            .field("region", &self.client.bucket.region())
            .field("credentials", &self.client.creds())
            .field("credentials_from", &self.creds_source)
            .finish()
    }
}

/// Checks a path for a write: plain, not the root, every name at most 255 bytes.
fn name_op_path(path: &str) -> Result<&str, CloudError> {
    check_rel_path(path)?;
    if path.is_empty() {
        return Err(CloudError::Protocol(
            "the cloud root itself is never written, moved or deleted".into(),
        ));
    }
    check_name_lengths(path)
}

fn check_name_lengths(path: &str) -> Result<&str, CloudError> {
    if let Some(long) = path.split('/').find(|n| n.len() > MAX_NAME) {
        return Err(CloudError::InvalidName(format!(
            "{}…: a name longer than {MAX_NAME} bytes",
            long.chars().take(40).collect::<String>()
        )));
    }
    Ok(path)
}

impl S3 {
    /// Opens `s3://bucket/prefix/` with the endpoint, region and keys of `opts`.
    pub fn new(url: &str, opts: &CloudOptions) -> anyhow::Result<S3> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| anyhow::anyhow!("the cloud URL {url:?} is not s3://bucket/prefix/"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() || bucket.contains(['?', '#', '@']) {
            anyhow::bail!("the cloud URL {url:?} names no usable bucket: use s3://bucket/prefix/");
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() && check_rel_path(prefix).is_err() {
            anyhow::bail!(
                "the prefix of the cloud URL {url:?} has an empty, `.` or `..` component"
            );
        }
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let region = opts
            .s3_region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        let (endpoint, default_style) = match &opts.s3_endpoint {
            Some(e) => (e.clone(), Addressing::Path),
            None => (
                format!("https://s3.{region}.amazonaws.com"),
                Addressing::VirtualHost,
            ),
        };
        let endpoint: url::Url = endpoint
            .parse()
            .map_err(|e| anyhow::anyhow!("the S3 endpoint {endpoint:?} is not a URL: {e}"))?;
        if endpoint.scheme() != "http" && endpoint.scheme() != "https" {
            anyhow::bail!("the S3 endpoint {endpoint} is not http:// or https://");
        }
        if endpoint.password().is_some() || !endpoint.username().is_empty() {
            anyhow::bail!(
                "the S3 endpoint carries credentials; keys come from the environment, the AWS \
                 credentials file or credentials_file"
            );
        }
        let style = match opts.s3_addressing.unwrap_or(default_style) {
            Addressing::Path => rusty_s3::UrlStyle::Path,
            Addressing::VirtualHost => rusty_s3::UrlStyle::VirtualHost,
        };
        let b = rusty_s3::Bucket::new(endpoint, style, bucket.to_string(), region)
            .map_err(|e| anyhow::anyhow!("cannot use the bucket {bucket:?}: {e}"))?;
        let found = creds::find(opts.credentials_file.as_deref())?;
        Ok(S3 {
            client: Client::new(b, found.creds, opts.ca_file.as_deref())?,
            shown: format!("s3://{bucket}/{prefix}"),
            prefix,
            creds_source: found.source,
            conditions: tokio::sync::OnceCell::new(),
            ledger: OnceLock::new(),
            swept: tokio::sync::OnceCell::new(),
            listing: tokio::sync::OnceCell::new(),
            multipart_threshold: MULTIPART_THRESHOLD,
            part_size: PART_SIZE,
            page_size: None,
            known: KnownFolders::default(),
            cuts: std::sync::Mutex::default(),
        })
    }

    /// Sets from which size files go as multipart uploads, and the part size (tests use small
    /// ones; S3 takes parts of at least 5 MiB but the last).
    pub fn with_multipart(mut self, threshold: u64, part_size: u64) -> S3 {
        self.multipart_threshold = threshold.max(1);
        // A power of two, so that each part is a whole subtree of the file's BLAKE3 tree.
        self.part_size = part_size.max(blake3::CHUNK_LEN as u64).next_power_of_two();
        self
    }

    /// Takes as known whether the store honours conditional writes, instead of probing: `false`
    /// makes every conditional write checked with a HEAD first (stores known to ignore the
    /// headers, and the tests of that check).
    pub fn with_conditions_known(self, honours: bool) -> S3 {
        let _ = self.conditions.set(honours);
        self
    }

    /// Sets how many keys a listing page holds (tests use small pages to cross page ends).
    pub fn with_page_size(mut self, keys: usize) -> S3 {
        self.page_size = Some(keys.max(1));
        self
    }

    /// Sets the idle timeout (default 60 s).
    pub fn with_idle_timeout(mut self, idle: Duration) -> S3 {
        self.client.idle_timeout = idle;
        self
    }

    fn key(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }

    /// The key prefix of everything in the folder `path`, ending in `/` (the root's may be
    /// empty). It is also the folder's marker, on stores that list `name/` markers.
    fn dir_key(&self, path: &str) -> String {
        if path.is_empty() {
            self.prefix.clone()
        } else {
            format!("{}{path}/", self.prefix)
        }
    }

    fn check_key(&self, path: &str) -> Result<String, CloudError> {
        let key = self.key(path);
        if key.len() + 1 > MAX_KEY {
            return Err(CloudError::InvalidName(format!(
                "{path:?}: the key would be longer than S3's {MAX_KEY} bytes"
            )));
        }
        Ok(key)
    }

    /// True when anything lies under the folder key of `path` (its marker too).
    async fn is_folder(&self, path: &str) -> Result<bool, CloudError> {
        if path.is_empty() {
            return Ok(true);
        }
        let page = self
            .list_page(&self.dir_key(path), true, None, Some(1))
            .await?;
        let yes = !page.contents.is_empty() || !page.common_prefixes.is_empty();
        if yes {
            self.known.proven(path);
        }
        Ok(yes)
    }

    /// What one listing of the folder of `path` tells about a new file at `path`, from the
    /// first keys after its key (`start-after`): whether a folder is at `path` (`None` when
    /// the listing cannot tell: the store ignores `start-after`, or names that sort between
    /// `x` and `x/`, such as `x.bak`, fill the page), and whether the folder of `path` holds
    /// objects (then every folder above it does, and no file above is in the way).
    async fn place(&self, path: &str) -> Result<(Option<bool>, bool), CloudError> {
        const AFTER: usize = 4;
        let key = self.key(path);
        let dir = self.dir_key(parent(path));
        let folder = format!("{key}/");
        let encode = self.listing_caps().await.encodes;
        let page = self
            .client
            .list_page(&dir, true, Some(&key), None, Some(AFTER), encode)
            .await?;
        let items: Vec<&str> = page
            .contents
            .iter()
            .map(|o| o.key.as_str())
            .chain(page.common_prefixes.iter().map(|p| p.prefix.as_str()))
            .collect();
        let holds = items.iter().any(|k| k.starts_with(&dir));
        if holds {
            self.known.proven(parent(path));
        }
        if items
            .iter()
            .any(|k| !k.starts_with(&dir) || *k <= key.as_str())
        {
            // Not what was asked for: the store ignores `start-after`.
            return Ok((None, holds));
        }
        if items.iter().any(|k| k.starts_with(&folder)) {
            return Ok((Some(true), holds));
        }
        let complete = page.next_continuation_token.is_none() && items.len() < AFTER;
        let past = items.iter().any(|k| *k > folder.as_str());
        Ok(((complete || past).then_some(false), holds))
    }

    /// True when something is in the way of a new file at `path`: a folder of its name, or a
    /// file where one of its folders should be. One listing (see `place`) mostly tells both;
    /// a folder above known to hold objects needs no look (it wins over a file of its name).
    async fn in_the_way(&self, path: &str) -> Result<bool, CloudError> {
        let (here, holds) = self.place(path).await?;
        let here = match here {
            Some(h) => h,
            None => self.is_folder(path).await?,
        };
        if here {
            return Ok(true);
        }
        if holds {
            return Ok(false);
        }
        self.file_above(path).await
    }

    /// True when a file and no folder is at `path`. The folder is asked first: some stores
    /// (s3s-fs) answer a HEAD of a folder's name with an error.
    async fn file_only(&self, path: &str) -> Result<bool, CloudError> {
        let key = self.key(path);
        let (head, folder) = tokio::join!(self.client.head(&key), self.is_folder(path));
        if folder? {
            return Ok(false);
        }
        match head {
            // s3s-fs answers a HEAD of an (empty, so unlisted) directory with 500. That is no
            // file in the way; if the store is in trouble, the write that follows finds out.
            Err(CloudError::Unavailable { .. }) => Ok(false),
            h => Ok(h?.is_some()),
        }
    }

    /// A file in the way of `path`: one of its parents is a file and no folder. The parents
    /// from the nearest folder known to hold objects up are not looked at: they are folders.
    async fn file_above(&self, path: &str) -> Result<bool, CloudError> {
        let mut ancestors = Vec::new();
        let mut p = parent(path);
        while !self.known.holds_objects(p) {
            ancestors.push(p);
            p = parent(p);
        }
        let found =
            futures_util::future::join_all(ancestors.iter().map(|a| self.file_only(a))).await;
        for f in found {
            if f? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Why a conditional write failed: a folder at `path` or a changed file is
    /// `PreconditionFailed`, nothing at all `NotFound`.
    async fn refusal(&self, path: &str, cond: &Precondition) -> CloudError {
        if !matches!(cond, Precondition::IfMatch(_)) {
            return CloudError::PreconditionFailed;
        }
        match self.is_folder(path).await {
            Ok(true) => return CloudError::PreconditionFailed,
            Ok(false) => {}
            Err(e) => return e,
        }
        match self.client.head(&self.key(path)).await {
            Ok(None) => CloudError::NotFound,
            Ok(Some(_)) => CloudError::PreconditionFailed,
            Err(e) => e,
        }
    }

    /// Checks `cond` against the store with a HEAD: what cloudsync does itself where the store
    /// ignores conditions, and before every multipart upload.
    async fn check_condition(&self, path: &str, cond: &Precondition) -> Result<(), CloudError> {
        if *cond == Precondition::None {
            return Ok(());
        }
        let head = match self.client.head(&self.key(path)).await {
            // A store on a directory (s3s-fs) answers a HEAD of a folder with 500.
            Err(e @ CloudError::Unavailable { .. }) => {
                return Err(if self.is_folder(path).await? {
                    CloudError::PreconditionFailed
                } else {
                    e
                });
            }
            r => r?,
        };
        match (cond, head) {
            (Precondition::None, _) | (Precondition::IfNoneMatch, None) => Ok(()),
            (Precondition::IfNoneMatch, Some(_)) => Err(CloudError::PreconditionFailed),
            (Precondition::IfMatch(_), None) => Err(if self.is_folder(path).await? {
                CloudError::PreconditionFailed
            } else {
                CloudError::NotFound
            }),
            (Precondition::IfMatch(want), Some(h)) => {
                if h.etag.as_deref().map(strip_weak) == Some(strip_weak(want)) {
                    Ok(())
                } else {
                    Err(CloudError::PreconditionFailed)
                }
            }
        }
    }

    /// Whether the store honours `If-Match` and `If-None-Match: *` on PutObject, found out once
    /// per run (see `probe_conditions`); until an answer comes, no (which only costs a HEAD).
    pub async fn honours_conditions(&self) -> bool {
        match self
            .conditions
            .get_or_try_init(|| self.probe_conditions())
            .await
        {
            Ok(yes) => *yes,
            Err(e) => {
                tracing::debug!(cloud = %self.shown, error = %e, "cannot tell yet whether the store honours conditional writes");
                false
            }
        }
    }

    /// The probe's key: one name per host and cloud folder, so what a probe cut short left is
    /// replaced and deleted by the next one.
    fn probe_key(&self) -> String {
        let host = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
        let id = blake3::hash(format!("{}\n{}", host.trim(), self.shown).as_bytes());
        self.key(&format!(".cloudsync-probe-{}", &id.to_hex()[..16]))
    }

    async fn remove_probe(&self, key: &str) {
        for attempt in 0..5u32 {
            if self.client.delete(key).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
        tracing::warn!(
            key,
            "a condition probe object may be left in the cloud; it is ignored by sync and may be deleted by hand"
        );
    }

    /// Writes the probe with an `If-Match` nothing matches (must not be written), then
    /// plainly, then again with `If-None-Match: *` and with a stale `If-Match` (both must be
    /// refused with 412), and deletes it. Transport trouble, 401 and 5xx leave the question
    /// open.
    async fn probe_conditions(&self) -> Result<bool, CloudError> {
        let key = self.probe_key();
        let open_question = |status: StatusCode| {
            (status.is_server_error() || status == StatusCode::UNAUTHORIZED).then(|| {
                CloudError::Status {
                    status: status.as_u16(),
                    detail: "no answer yet to whether the store honours conditional writes".into(),
                }
            })
        };
        let first = self
            .client
            .put_small(
                &key,
                b"",
                Cond::IfMatch("\"cloudsync-probe-matches-nothing\""),
            )
            .await;
        let first = match first {
            Ok(r) => r.status(),
            Err(e) => {
                if !matches!(e, CloudError::Unreachable(_)) {
                    self.remove_probe(&key).await;
                }
                return Err(e);
            }
        };
        if let Some(e) = open_question(first) {
            return Err(e);
        }
        let mut yes = matches!(first.as_u16(), 404 | 412);
        if yes {
            let made = self.client.put_small(&key, b"", Cond::None).await;
            let result = async {
                if !made?.status().is_success() {
                    return Ok(false);
                }
                let a = self
                    .client
                    .put_small(&key, b"", Cond::IfNoneMatch)
                    .await?
                    .status();
                let b = self
                    .client
                    .put_small(&key, b"", Cond::IfMatch("\"cloudsync-probe-stale\""))
                    .await?
                    .status();
                Ok::<bool, CloudError>(
                    a == StatusCode::PRECONDITION_FAILED && b == StatusCode::PRECONDITION_FAILED,
                )
            }
            .await;
            self.remove_probe(&key).await;
            yes = result?;
        } else {
            self.remove_probe(&key).await;
        }
        tracing::info!(
            cloud = %self.shown,
            "{}",
            if yes {
                "the store honours If-Match and If-None-Match: uploads go without a check first"
            } else {
                "the store ignores conditional writes: every upload is checked with a HEAD first"
            }
        );
        Ok(yes)
    }

    /// What the store's listings can do, found out once per run with a probe folder holding a
    /// marker and a file named `%41+`: whether the store lists zero-byte `name/` markers (most
    /// do; s3s-fs makes an empty directory that no listing shows), and whether it really
    /// URL-encodes keys when asked to (s3s-fs says it does and does not, so `%41+` would read
    /// as `A `). Until an answer comes, both yes.
    async fn listing_caps(&self) -> ListingCaps {
        let probe = async {
            let dir = format!("{}-d/", self.probe_key());
            let file = format!("{dir}%41+");
            for key in [&dir, &file] {
                let made = self.client.put_small(key, b"", Cond::None).await?;
                if !made.status().is_success() {
                    let e = self.client.error(made, key).await;
                    self.remove_probe(&file).await;
                    self.remove_probe(&dir).await;
                    return Err(e);
                }
            }
            let page = self
                .client
                .list_page(&dir, true, None, None, None, true)
                .await;
            self.remove_probe(&file).await;
            self.remove_probe(&dir).await;
            let page = page?;
            let caps = ListingCaps {
                markers: page.contents.iter().any(|o| o.key == dir),
                encodes: !page.contents.iter().any(|o| o.key == format!("{dir}A ")),
            };
            tracing::info!(
                cloud = %self.shown,
                markers = caps.markers,
                encodes_keys = caps.encodes,
                "what the store's listings show"
            );
            Ok::<ListingCaps, CloudError>(caps)
        };
        match self.listing.get_or_try_init(|| probe).await {
            Ok(caps) => *caps,
            Err(e) => {
                tracing::debug!(cloud = %self.shown, error = %e, "cannot tell yet what the store's listings show");
                ListingCaps {
                    markers: true,
                    encodes: true,
                }
            }
        }
    }

    async fn keeps_markers(&self) -> bool {
        self.listing_caps().await.markers
    }

    /// One page of a listing, URL-encoded where the store does that right.
    async fn list_page(
        &self,
        prefix: &str,
        delimited: bool,
        token: Option<&str>,
        max_keys: Option<usize>,
    ) -> Result<rusty_s3::actions::ListObjectsV2Response, CloudError> {
        let encode = self.listing_caps().await.encodes;
        self.client
            .list_page(prefix, delimited, None, token, max_keys, encode)
            .await
    }

    /// The marker object of the folder whose key is `dir_key`.
    async fn marker_key(&self, dir_key: &str) -> String {
        if self.keeps_markers().await {
            dir_key.to_string()
        } else {
            format!("{dir_key}{FOLDER_FILE}")
        }
    }

    /// Writes the marker of the folder `dir_key` unless one is there.
    async fn put_marker(&self, dir_key: &str) -> Result<(), CloudError> {
        let key = self.marker_key(dir_key).await;
        let resp = self.client.put_small(&key, b"", Cond::IfNoneMatch).await?;
        let s = resp.status();
        if !s.is_success() && s != StatusCode::PRECONDITION_FAILED {
            return Err(self.client.error(resp, &key).await);
        }
        Ok(())
    }

    /// Every object below the folder `path` and every folder key (`name/`) below it and of
    /// itself, walked level by level with delimited listings (a store on a plain directory,
    /// s3s-fs, shows empty folders only as common prefixes). A key that fails the checks makes
    /// the whole folder untouchable: it is an error, and nothing is changed.
    async fn walk(&self, path: &str) -> Result<Tree, CloudError> {
        let mut tree = Tree::default();
        let mut todo = vec![self.dir_key(path)];
        while let Some(prefix) = todo.pop() {
            tree.folders.push(prefix.clone());
            let mut token: Option<String> = None;
            loop {
                let page = self
                    .list_page(&prefix, true, token.as_deref(), self.page_size)
                    .await?;
                let bad = |key: &str| {
                    CloudError::Protocol(format!(
                        "the folder {path:?} holds the key {key:?} that cannot be shown; the folder is left as it is"
                    ))
                };
                for o in page.contents {
                    let Some(rest) = o.key.strip_prefix(&prefix) else {
                        return Err(bad(&o.key));
                    };
                    if !rest.is_empty() && keys::refuse_name(rest).is_some() {
                        return Err(bad(&o.key));
                    }
                    if !rest.is_empty() {
                        let etag = o.etag.as_deref().and_then(client::normalize_etag);
                        tree.objects.push((o.key, etag));
                    }
                }
                for p in page.common_prefixes {
                    let name = p
                        .prefix
                        .strip_prefix(&prefix)
                        .and_then(|n| n.strip_suffix('/'));
                    match name {
                        Some(n) if keys::refuse_name(n).is_none() => todo.push(p.prefix),
                        _ => return Err(bad(&p.prefix)),
                    }
                }
                match page.next_continuation_token {
                    Some(t) if Some(&t) != token.as_ref() => token = Some(t),
                    Some(_) => {
                        return Err(CloudError::Protocol(
                            "the store repeats a listing continuation token".into(),
                        ));
                    }
                    None => break,
                }
            }
        }
        Ok(tree)
    }

    /// Deletes the objects of `tree`, then its folder markers, deepest first, a few at a time:
    /// the folder itself goes last, so a delete cut short leaves it in place.
    async fn delete_tree(&self, tree: Tree) -> Result<(), CloudError> {
        let mut keys: Vec<String> = tree.objects.into_iter().map(|(k, _)| k).collect();
        let mut folders: Vec<String> = tree
            .folders
            .into_iter()
            .filter(|f| !keys.contains(f) && !f.is_empty())
            .collect();
        keys.sort_by_key(|k| std::cmp::Reverse(k.matches('/').count()));
        folders.sort_by_key(|k| std::cmp::Reverse(k.matches('/').count()));
        let mut results = futures_util::stream::iter(keys)
            .map(|k| async move { self.client.delete(&k).await })
            .buffer_unordered(FAN_OUT);
        while let Some(r) = results.next().await {
            r?;
        }
        // Markers one level at a time, deepest first (a store on a directory removes a folder
        // only once it is empty).
        for f in folders {
            self.client.delete(&f).await?;
        }
        Ok(())
    }

    /// Aborts, once per run, the multipart uploads the ledger recorded that nothing waits for.
    async fn sweep_abandoned(&self) {
        let Some(ledger) = self.ledger.get() else {
            return;
        };
        self.swept
            .get_or_init(|| async {
                let Ok(list) = ledger.abandoned() else {
                    return;
                };
                for up in list {
                    let key = self.key(&up.path);
                    match self.client.abort_multipart(&key, &up.upload_id).await {
                        Ok(()) | Err(CloudError::NotFound) => {
                            let _ = ledger.end(&up.upload_id);
                            tracing::info!(path = up.path, "aborted an abandoned multipart upload of our own");
                        }
                        Err(e) => {
                            tracing::debug!(path = up.path, error = %e, "cannot abort an abandoned multipart upload yet");
                        }
                    }
                }
            })
            .await;
    }
}

/// What a store's listings can do.
#[derive(Debug, Clone, Copy)]
struct ListingCaps {
    /// Zero-byte `name/` markers are kept and listed.
    markers: bool,
    /// Keys are URL-encoded in listings when asked for (`encoding-type=url`).
    encodes: bool,
}

/// What a folder holds, as keys: its objects (with their ETags), and the folder keys of it
/// and every folder below (which may or may not be marker objects).
#[derive(Default)]
struct Tree {
    objects: Vec<(String, Option<String>)>,
    folders: Vec<String>,
}

fn strip_weak(t: &str) -> &str {
    t.strip_prefix("W/").unwrap_or(t)
}

fn not_a_folder(path: &str) -> CloudError {
    CloudError::Status {
        status: 409,
        detail: format!("{path:?} is a file, not a folder"),
    }
}

#[async_trait]
impl Cloud for S3 {
    fn describe(&self) -> String {
        format!(
            "{} at {} ({})",
            self.shown,
            self.client.bucket.base_url(),
            self.client.bucket.region()
        )
    }

    fn url(&self) -> String {
        self.shown.clone()
    }

    async fn stat(&self, path: &str) -> Result<Option<CloudEntry>, CloudError> {
        check_rel_path(path)?;
        let dir = CloudEntry {
            path: path.to_string(),
            is_dir: true,
            size: 0,
            mtime: None,
            etag: None,
            file_id: None,
        };
        if path.is_empty() {
            return Ok(Some(dir));
        }
        if path.split('/').any(|n| n.len() > MAX_NAME) {
            return Ok(None);
        }
        let key = self.key(path);
        let (head, folder) = tokio::join!(self.client.head(&key), self.is_folder(path));
        if folder? {
            return Ok(Some(dir));
        }
        Ok(head?.map(|h| CloudEntry {
            path: path.to_string(),
            is_dir: false,
            size: h.size,
            mtime: h.mtime,
            etag: h.etag,
            file_id: None,
        }))
    }

    async fn list(&self, path: &str) -> Result<Listing, CloudError> {
        check_rel_path(path)?;
        let prefix = self.dir_key(path);
        let mut g = Gather::new(path, &prefix);
        let mut token: Option<String> = None;
        loop {
            let page = self
                .list_page(&prefix, true, token.as_deref(), self.page_size)
                .await?;
            let next = page.next_continuation_token.clone();
            g.page(page);
            match next {
                Some(t) if Some(&t) != token.as_ref() => token = Some(t),
                Some(_) => {
                    return Err(CloudError::Protocol(
                        "the store repeats a listing continuation token".into(),
                    ));
                }
                None => break,
            }
        }
        if !path.is_empty() && !g.saw_anything() {
            return Err(match self.client.head(&self.key(path)).await? {
                Some(_) => not_a_folder(path),
                None => CloudError::NotFound,
            });
        }
        let listing = g.finish();
        self.known.proven(path);
        for e in listing.entries.iter().filter(|e| e.is_dir) {
            self.known.proven(&e.path);
        }
        Ok(listing)
    }

    async fn list_tree(&self, path: &str) -> Option<Result<Subtree, CloudError>> {
        Some(self.list_flat(path).await)
    }

    fn hashes_uploads(&self) -> bool {
        true
    }

    async fn upload(
        &self,
        path: &str,
        src: &std::fs::File,
        cond: &Precondition,
    ) -> Result<Uploaded, CloudError> {
        name_op_path(path)?;
        let key = self.check_key(path)?;
        // Once per run, at the first upload: abandoned multipart uploads of our own go.
        self.sweep_abandoned().await;
        if !matches!(cond, Precondition::IfMatch(_)) && self.in_the_way(path).await? {
            // A folder at the path, or a file where one of its folders should be, is in the
            // way; S3 itself would take the key beside them.
            return Err(CloudError::PreconditionFailed);
        }
        let size = src.metadata()?.len();
        if size >= self.multipart_threshold {
            return self.upload_multipart(path, &key, src, cond, size).await;
        }
        let honours = match cond {
            Precondition::None => true,
            _ => self.honours_conditions().await,
        };
        if !honours {
            // The store ignores the headers: a HEAD checks first, and a change landing between
            // it and the PUT is overwritten (one round trip).
            self.check_condition(path, cond).await?;
        }
        let c = match cond {
            Precondition::None => Cond::None,
            Precondition::IfNoneMatch => Cond::IfNoneMatch,
            Precondition::IfMatch(t) => Cond::IfMatch(t),
        };
        let (resp, hash) = self.client.put_file(&key, src, c).await?;
        match resp.status().as_u16() {
            200..=299 => {}
            404 | 412 if !matches!(cond, Precondition::None) => {
                return Err(self.refusal(path, cond).await);
            }
            // A store on a directory (s3s-fs) fails a conditional write over a folder with 500.
            500..=599 if !matches!(cond, Precondition::None) && self.is_folder(path).await? => {
                return Err(CloudError::PreconditionFailed);
            }
            _ => return Err(self.client.error(resp, &key).await),
        }
        self.known.file_written(path);
        let etag = match header_etag(resp.headers()) {
            Some(t) => Some(t),
            None => self.client.head(&key).await?.and_then(|h| h.etag),
        };
        Ok(Uploaded { etag, hash })
    }

    async fn get_file(&self, path: &str, dest: &std::fs::File) -> Result<CloudEntry, CloudError> {
        check_rel_path(path)?;
        if path.is_empty() {
            return Err(CloudError::NotFound);
        }
        let key = self.key(path);
        let what = format!("GET {key}");
        let mut resp = self.client.get(&key).await?;
        if resp.status() != StatusCode::OK {
            return Err(self.client.error(resp, &key).await);
        }
        let expected = resp.content_length();
        let etag = header_etag(resp.headers());
        let mtime = resp
            .headers()
            .get(header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok());
        let got = super::http::receive(
            &mut resp,
            dest,
            expected,
            self.client.idle_timeout,
            &what,
            |e| self.client.transport(&what, e),
            || self.client.timed_out(&what),
        )
        .await?;
        Ok(CloudEntry {
            path: path.to_string(),
            is_dir: false,
            size: got,
            mtime,
            etag,
            file_id: None,
        })
    }

    async fn mkdir(&self, path: &str) -> Result<(), CloudError> {
        check_rel_path(path)?;
        check_name_lengths(path)?;
        if path.is_empty() {
            return Ok(());
        }
        self.check_key(path)?;
        // A file at the path, or where one of its parents should be, is in the way (not where
        // a folder is known to hold objects: it wins over a file of its name).
        let known = self.known.holds_objects(path);
        let (here, above) = tokio::join!(
            async {
                if known {
                    Ok(false)
                } else {
                    self.file_only(path).await
                }
            },
            self.file_above(path)
        );
        if here? || above? {
            return Err(CloudError::PreconditionFailed);
        }
        // A marker for the folder and each parent, so none vanishes with its last file.
        let mut folders = vec![path];
        let mut p = parent(path);
        while !p.is_empty() {
            folders.push(p);
            p = parent(p);
        }
        let puts = futures_util::future::join_all(
            folders
                .iter()
                .map(|f| async move { self.put_marker(&self.dir_key(f)).await }),
        )
        .await;
        puts.into_iter().collect::<Result<(), CloudError>>()?;
        self.known.proven(path);
        Ok(())
    }

    async fn delete(&self, path: &str, cond: &Precondition) -> Result<(), CloudError> {
        name_op_path(path)?;
        let done = self.delete_now(path, cond).await;
        // Whatever happened, what the delete may have emptied is no longer known to hold objects.
        self.known.forget(path);
        done
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), CloudError> {
        name_op_path(from)?;
        name_op_path(to)?;
        self.check_key(to)?;
        let done = self.rename_now(from, to).await;
        self.known.forget(from);
        done
    }

    fn use_upload_ledger(&self, ledger: Arc<dyn UploadLedger>) {
        let _ = self.ledger.set(ledger);
    }
}

impl S3 {
    /// Everything below the folder `path`, from one flat ListObjectsV2 of its prefix, 1000
    /// keys a page (see [`Flat`]). The pages of a prefix listed before are asked for
    /// [`FAN_OUT`] at a time: the key space is cut at every 999th key the last listing saw,
    /// and each range is listed from its first key on (`start-after`) up to the next cut,
    /// paginated further where it grew. Every key is still listed once, in about as many pages
    /// as one after another; a store that ignores `start-after` is listed one page after
    /// another.
    async fn list_flat(&self, path: &str) -> Result<Subtree, CloudError> {
        check_rel_path(path)?;
        let prefix = self.dir_key(path);
        let cuts = self
            .cuts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&prefix)
            .cloned()
            .unwrap_or_default();
        let mut ranges: Vec<(Option<String>, Option<String>)> = Vec::new();
        let mut after = None;
        for c in cuts {
            ranges.push((after.take(), Some(c.clone())));
            after = Some(c);
        }
        ranges.push((after, None));
        let mut requests = 0;
        let mut pages = Vec::new();
        let from = prefix.as_str();
        let mut listed = futures_util::stream::iter(ranges)
            .map(|(a, u)| async move { self.list_range(from, a.as_deref(), u.as_deref()).await })
            .buffered(FAN_OUT);
        let mut in_order = true;
        while let Some(r) = listed.next().await {
            match r? {
                Some((p, n)) => {
                    requests += n;
                    pages.extend(p);
                }
                None => in_order = false,
            }
        }
        drop(listed);
        if !in_order {
            // The store ignores `start-after`: one page after another.
            tracing::debug!(cloud = %self.shown, "the store ignores start-after; listing one page after another");
            let (p, n) = self
                .list_range(&prefix, None, None)
                .await?
                .unwrap_or_default();
            requests += n;
            pages = p;
        }
        // The cuts for the next listing: one key short of every page's worth, so that a page
        // shows a range whole and the first key past it, and no second page is asked for.
        let step = self.page_size.unwrap_or(1000).max(2) - 1;
        let cuts: Vec<String> = pages
            .iter()
            .flat_map(|p| p.contents.iter())
            .skip(step - 1)
            .step_by(step)
            .map(|o| o.key.clone())
            .collect();
        let mut f = Flat::new(path, &prefix);
        for page in pages {
            f.page(page);
        }
        if !path.is_empty() && !f.saw_anything() {
            return Err(match self.client.head(&self.key(path)).await? {
                Some(_) => not_a_folder(path),
                None => CloudError::NotFound,
            });
        }
        {
            let mut all = self.cuts.lock().unwrap_or_else(|p| p.into_inner());
            if in_order {
                all.insert(prefix.clone(), cuts);
            } else {
                all.remove(&prefix);
            }
        }
        let tree = f.finish(requests);
        self.known.proven(path);
        for e in tree.entries.iter().filter(|e| e.is_dir) {
            self.known.proven(&e.path);
        }
        Ok(tree)
    }

    /// The pages of a flat listing of `prefix` with the keys after `after` (from the first
    /// when `None`) up to `upto` (to the last when `None`), and the requests sent; `None` when
    /// the store answers with keys that are not after `after` (it ignores `start-after`).
    async fn list_range(
        &self,
        prefix: &str,
        after: Option<&str>,
        upto: Option<&str>,
    ) -> Result<Option<(Vec<ListObjectsV2Response>, u64)>, CloudError> {
        let encode = self.listing_caps().await.encodes;
        let mut pages = Vec::new();
        let mut token: Option<String> = None;
        let mut requests = 0;
        loop {
            let first = token.is_none();
            let mut page = self
                .client
                .list_page(
                    prefix,
                    false,
                    after.filter(|_| first),
                    token.as_deref(),
                    self.page_size,
                    encode,
                )
                .await?;
            requests += 1;
            if let Some(a) = after
                && page.contents.iter().any(|o| o.key.as_str() <= a)
            {
                return Ok(None);
            }
            let next = page.next_continuation_token.take();
            let had = page.contents.len();
            if let Some(u) = upto {
                page.contents.retain(|o| o.key.as_str() <= u);
            }
            let past = page.contents.len() < had;
            pages.push(page);
            if past {
                break;
            }
            match next {
                Some(t) if Some(&t) != token.as_ref() => token = Some(t),
                Some(_) => {
                    return Err(CloudError::Protocol(
                        "the store repeats a listing continuation token".into(),
                    ));
                }
                None => break,
            }
        }
        Ok(Some((pages, requests)))
    }

    async fn delete_now(&self, path: &str, cond: &Precondition) -> Result<(), CloudError> {
        if self.is_folder(path).await? {
            if *cond == Precondition::IfNoneMatch {
                return Err(CloudError::PreconditionFailed);
            }
            // No folder ETags on S3: an IfMatch only needs the folder to exist.
            let tree = self.walk(path).await?;
            return self.delete_tree(tree).await;
        }
        let key = self.key(path);
        // Checked with a HEAD, then deleted: a change landing in between is deleted too.
        let head = self.client.head(&key).await?.ok_or(CloudError::NotFound)?;
        match cond {
            Precondition::None => {}
            Precondition::IfNoneMatch => return Err(CloudError::PreconditionFailed),
            Precondition::IfMatch(want) => {
                if head.etag.as_deref().map(strip_weak) != Some(strip_weak(want)) {
                    return Err(CloudError::PreconditionFailed);
                }
            }
        }
        // The condition goes along too, for the stores that honour it on DeleteObject.
        let tag = match cond {
            Precondition::IfMatch(_) => head.etag.as_deref(),
            _ => None,
        };
        self.client.delete_if(&key, tag).await
    }

    async fn rename_now(&self, from: &str, to: &str) -> Result<(), CloudError> {
        // A folder move that an earlier run began goes on where it stopped: the copies it
        // made are at the new name already, and the source may be gone in part or in whole.
        if let Some(copied) = self.move_plan(from, to)? {
            tracing::info!(from, to, "resuming a folder move begun by an earlier run");
            return self.move_folder(from, to, Some(copied)).await;
        }
        let src = self.stat(from).await?.ok_or(CloudError::NotFound)?;
        if self.stat(to).await?.is_some() {
            return Err(CloudError::PreconditionFailed);
        }
        if !self.is_folder(parent(to)).await? {
            return Err(CloudError::MissingParent);
        }
        if !src.is_dir {
            // The copy is taken only from the version stat saw (x-amz-copy-source-if-match),
            // and the source goes only while it still is that version: a change landing in
            // between keeps the source, and the next pull sees both names.
            self.client
                .copy(&self.key(from), &self.key(to), src.etag.as_deref())
                .await?;
            let now = self.client.head(&self.key(from)).await?;
            if now.as_ref().and_then(|h| h.etag.as_deref()) != src.etag.as_deref() {
                tracing::warn!(from, to, "the source changed while it was copied; it stays");
                return Ok(());
            }
            return self
                .client
                .delete_if(&self.key(from), src.etag.as_deref())
                .await;
        }
        self.move_folder(from, to, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Options with a credentials file, and the directory that holds it (read by `S3::new`).
    fn opts_in(
        endpoint: Option<&str>,
        style: Option<Addressing>,
    ) -> (tempfile::TempDir, CloudOptions) {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("k");
        std::fs::write(
            &creds,
            "aws_access_key_id = AKIDTEST\naws_secret_access_key = very-secret-key\n",
        )
        .unwrap();
        let o = CloudOptions {
            s3_endpoint: endpoint.map(str::to_string),
            s3_region: Some("eu-1".into()),
            s3_addressing: style,
            credentials_file: Some(creds),
            ..CloudOptions::default()
        };
        (dir, o)
    }

    /// Opens `url` with those options; only `S3::new` reads the credentials file.
    fn open(url: &str, endpoint: Option<&str>, style: Option<Addressing>) -> anyhow::Result<S3> {
        let (_dir, o) = opts_in(endpoint, style);
        S3::new(url, &o)
    }

    #[test]
    fn addressing_and_urls() {
        let aws = open("s3://team-bucket/projects/", None, None).unwrap();
        assert!(
            aws.describe()
                .contains("https://team-bucket.s3.eu-1.amazonaws.com/"),
            "{}",
            aws.describe()
        );
        assert_eq!(aws.url(), "s3://team-bucket/projects/");
        assert_eq!(aws.key("a/b.txt"), "projects/a/b.txt");
        assert_eq!(aws.dir_key(""), "projects/");
        let path = open("s3://b", Some("http://127.0.0.1:9000"), None).unwrap();
        assert!(
            path.describe().contains("http://127.0.0.1:9000/b/"),
            "{}",
            path.describe()
        );
        assert_eq!(path.dir_key(""), "");
        assert_eq!(path.dir_key("x"), "x/");
        let vh = open(
            "s3://b/p",
            Some("https://store.example"),
            Some(Addressing::VirtualHost),
        )
        .unwrap();
        assert!(
            vh.describe().contains("https://b.store.example/"),
            "{}",
            vh.describe()
        );
        assert_eq!(vh.key("f"), "p/f");
        for bad in ["s3://", "s3:///p/", "s3://b/../x/", "s3://b/a//c/"] {
            assert!(open(bad, None, None).is_err(), "{bad}");
        }
        assert!(open("s3://b/", Some("https://u:pw@store.example"), None).is_err());
    }

    #[test]
    fn the_ca_file_is_read() {
        let (dir, mut o) = opts_in(Some("https://store.example"), None);
        o.ca_file = Some(dir.path().join("missing.pem"));
        let e = S3::new("s3://b/", &o).unwrap_err();
        assert!(e.to_string().contains("CA file"), "{e}");
        std::fs::write(dir.path().join("bad.pem"), "not a certificate").unwrap();
        o.ca_file = Some(dir.path().join("bad.pem"));
        assert!(S3::new("s3://b/", &o).is_err());
    }

    #[test]
    fn secrets_never_show() {
        let c = open("s3://b/p/", None, None).unwrap();
        let shown = format!("{c:?} {}", c.describe());
        assert!(!shown.contains("very-secret-key"), "{shown}");
        assert!(shown.contains("AKIDTEST"), "{shown}");
        let (_d, o) = opts_in(None, None);
        assert!(!format!("{o:?}").contains("very-secret-key"));
    }

    #[test]
    fn names_too_long_are_invalid() {
        let c = open("s3://b/", None, None).unwrap();
        let long = "x".repeat(256);
        assert!(matches!(
            name_op_path(&format!("a/{long}")),
            Err(CloudError::InvalidName(_))
        ));
        let deep = vec!["d".repeat(200); 6].join("/");
        assert!(matches!(
            c.check_key(&deep),
            Err(CloudError::InvalidName(_))
        ));
        assert!(matches!(name_op_path(""), Err(CloudError::Protocol(_))));
    }
}
