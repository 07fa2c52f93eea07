//! The WebDAV cloud: `http://` and `https://` URLs (Nextcloud, ownCloud, SharePoint, Apache
//! `mod_dav`, `rclone serve webdav` and any RFC 4918 server).
//!
//! This module is the [`Cloud`] implementation: what each operation asks of the server, how
//! conditions, missing parents and moves are made to mean the same on every server, and what
//! the client finds out about a server (whether it honours conditions, whether its folder
//! ETags cover the subtree). It exists so that the sync engine never sees HTTP, and so that
//! nothing a server says reaches the engine unchecked. Its parts, by job:
//! - `parse`: the PROPFIND parser, entity tags, and the href checks;
//! - `client`: the HTTP client (auth, TLS, timeouts) and the mapping of statuses onto
//!   [`CloudError`].
//!
//! What it guarantees:
//! - **Names from the server are never trusted.** Every `href` is decoded segment by segment and
//!   refused (skipped with a warning) when it names another origin, lies outside the synced
//!   root, has a `.`/`..`/empty segment, or decodes to a name holding `/` or NUL. Every path
//!   returned passes [`check_rel_path`], and `list` returns only direct children of the folder;
//!   what it refused, or found without properties, is counted in [`Listing::skipped`], so that
//!   a folder is never deleted whole over items nobody could see.
//!   PROPFIND answers larger than [`MAX_PROPFIND_BYTES`] are refused.
//! - **Uploads never overwrite a newer cloud copy.** On a server that honours `If-Match` and
//!   `If-None-Match` (found out once, by `probe_conditions`) the header alone guards a PUT.
//!   Elsewhere conditions are checked by the client with a Depth-0 PROPFIND before the PUT *and*
//!   sent as headers. The remaining windows are documented where they are (in `upload`): a
//!   server that ignores the headers, or an Apache file whose ETag is still weak, can be
//!   overwritten by a change that lands between the check and the PUT.
//! - **Large files stream.** PUT streams the local file with an exact `Content-Length` (no
//!   chunked encoding, no `Expect: 100-continue`); GET streams into the destination file and
//!   checks the length. There is no total timeout, only an idle timeout that any progress resets.
//! - **Secrets stay secret.** The password is only ever inside a sensitive `Authorization`
//!   header. URLs are kept without user info, and text quoted from server answers is redacted.

mod client;
mod parse;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use percent_encoding::percent_decode_str;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use url::Url;

use super::{
    Cloud, CloudEntry, CloudError, Listing, Precondition, Uploaded, check_rel_path, parent,
};
use crate::cloud::CloudOptions;
pub use client::MAX_PROPFIND_BYTES;
use client::{Client, Op, strip_userinfo};
use parse::{RawResponse, Root, Sorted, is_weak, parse_http_time, strip_weak};

/// One item as a WebDAV server reports it, with what [`CloudEntry`] has no room for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DavEntry {
    /// The item, with a checked relative path.
    pub entry: CloudEntry,
    /// The server's stable id of the item (`oc:fileid`), where it has one. It survives renames.
    pub file_id: Option<String>,
}

/// A WebDAV server used as the cloud.
pub struct WebDav {
    client: Client,
    /// The synced root.
    root: Root,
    /// Set once the server showed file ids (`oc:fileid`), as Nextcloud and ownCloud do: their
    /// folder ETags change with anything below, so unchanged subtrees can be skipped. Other
    /// servers (Apache, rclone) give folder ETags that only follow the folder's own entries.
    subtree_etags: std::sync::atomic::AtomicBool,
    /// Whether the server honours `If-Match` and `If-None-Match` on PUT, once found out.
    conditions: tokio::sync::OnceCell<bool>,
}

impl fmt::Debug for WebDav {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebDav")
            .field("base", &self.root.base.as_str())
            .field("user", &self.client.user)
            .field("auth", &self.client.auth.as_ref().map(|_| "<redacted>"))
            .field("idle_timeout", &self.client.idle_timeout)
            .finish()
    }
}

/// The result of one MKCOL.
enum Mkcol {
    Done,
    MissingParent,
}

impl WebDav {
    /// Connects to the WebDAV folder at `url` (`http://` or `https://`), which is taken as a
    /// folder whether or not it ends in `/`. Credentials come from `opts`; a user name in the
    /// URL is used when `opts` has none, but a password in the URL is refused.
    pub fn new(url: &str, opts: &CloudOptions) -> anyhow::Result<WebDav> {
        let shown = strip_userinfo(url);
        let mut base = Url::parse(url)
            .map_err(|e| anyhow::anyhow!("the cloud URL {shown:?} is not a valid URL: {e}"))?;
        if base.scheme() != "http" && base.scheme() != "https" {
            anyhow::bail!("the cloud URL {shown:?} is not http:// or https://");
        }
        if base.host_str().is_none_or(str::is_empty) {
            anyhow::bail!("the cloud URL {shown:?} names no host");
        }
        if base.query().is_some() || base.fragment().is_some() {
            anyhow::bail!("the cloud URL {shown:?} must not have a query (?) or fragment (#)");
        }
        if base.password().is_some() {
            anyhow::bail!(
                "the cloud URL {shown:?} carries a password; put the password in a file and \
                 pass it with --password-file (or `password_file =` in the config)"
            );
        }
        let url_user = percent_decode_str(base.username())
            .decode_utf8_lossy()
            .into_owned();
        let _ = base.set_username("");
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let root = Root::new(base).map_err(|why| {
            anyhow::anyhow!("the cloud URL {shown:?} has an unusable path: {why}")
        })?;
        Ok(WebDav {
            client: Client::new(opts, url_user)?,
            root,
            subtree_etags: std::sync::atomic::AtomicBool::new(false),
            conditions: tokio::sync::OnceCell::new(),
        })
    }

    /// Sets the idle timeout: how long the connection may move no byte before the request is
    /// given up as a transport error. Defaults to 60 s. Once an upload body is sent, the server
    /// gets five times as long to answer.
    pub fn with_idle_timeout(mut self, idle: Duration) -> WebDav {
        self.client.idle_timeout = idle;
        self
    }

    /// Sets the largest PROPFIND answer accepted (default [`MAX_PROPFIND_BYTES`]).
    pub fn with_max_propfind_bytes(mut self, max: usize) -> WebDav {
        self.client.max_propfind_bytes = max;
        self
    }

    /// The synced root URL, without credentials, ending in `/`.
    pub fn base_url(&self) -> &str {
        self.root.base.as_str()
    }

    /// PROPFIND of `path` at `depth` (0 or 1); `None` when the item does not exist.
    async fn propfind(
        &self,
        path: &str,
        depth: u8,
    ) -> Result<Option<Vec<RawResponse>>, CloudError> {
        let url = self.root.url_of(path, depth > 0 || path.is_empty())?;
        self.client.propfind(url, path, depth).await
    }

    /// Sorts a PROPFIND answer about `path`, and notes whether the server shows file ids.
    fn sort(&self, path: &str, responses: Vec<RawResponse>) -> Sorted {
        let sorted = self.root.sort_responses(path, responses);
        if sorted.file_ids {
            self.subtree_etags
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        sorted
    }

    /// The item at `path` with its server id, or `None` when it does not exist.
    pub async fn stat_entry(&self, path: &str) -> Result<Option<DavEntry>, CloudError> {
        check_rel_path(path)?;
        let responses = match self.propfind(path, 0).await {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(None),
            // A file where one of its folders should be: Apache answers 400, others 409. Then
            // there is nothing at the path; anything else is the server's error.
            Err(e @ (CloudError::Status { .. } | CloudError::MissingParent))
                if !parent(path).is_empty() =>
            {
                return match Box::pin(self.stat_entry(parent(path))).await? {
                    Some(p) if p.entry.is_dir => Err(e),
                    _ => Ok(None),
                };
            }
            Err(e) => return Err(e),
        };
        let sorted = self.sort(path, responses);
        match sorted.me {
            Some(e) => Ok(Some(e)),
            None if sorted.gone => Ok(None),
            None => Err(CloudError::Protocol(format!(
                "the server answered a PROPFIND for {path:?} without a usable entry for it"
            ))),
        }
    }

    /// The direct children of the folder at `path`, with their server ids, and the hrefs of
    /// what the answer held but could not be taken.
    pub async fn list_entries(&self, path: &str) -> Result<Listing<DavEntry>, CloudError> {
        check_rel_path(path)?;
        let responses = match self.propfind(path, 1).await {
            Ok(Some(r)) => r,
            Ok(None) => return Err(CloudError::NotFound),
            // A file asked for as a folder: Apache answers 400. Say what it is.
            Err(e @ (CloudError::Status { .. } | CloudError::MissingParent)) => {
                return Err(match self.stat(path).await? {
                    None => CloudError::NotFound,
                    Some(me) if !me.is_dir => not_a_folder(path),
                    Some(_) => e,
                });
            }
            Err(e) => return Err(e),
        };
        let sorted = self.sort(path, responses);
        if sorted.gone {
            return Err(CloudError::NotFound);
        }
        // The folder's own response, when present, must say it is a folder.
        if sorted.me.as_ref().is_some_and(|me| !me.entry.is_dir) {
            return Err(not_a_folder(path));
        }
        Ok(Listing {
            entries: sorted.children,
            skipped: sorted.skipped,
            clashes: Vec::new(),
        })
    }

    /// Whether the server honours `If-Match` and `If-None-Match` on PUT. Found out once, on
    /// the first conditional upload, by `probe_conditions`; until an answer comes
    /// (the server is down, say), the answer is no, which only costs a PROPFIND per upload.
    pub async fn honours_conditions(&self) -> bool {
        match self
            .conditions
            .get_or_try_init(|| self.probe_conditions())
            .await
        {
            Ok(yes) => *yes,
            Err(e) => {
                tracing::debug!(cloud = %self.root.base, error = %e, "cannot tell yet whether the server honours If-Match");
                false
            }
        }
    }

    /// Sends an empty PUT with an `If-Match` that nothing can match to a fresh name in the
    /// root. A server that honours conditions answers 412 and writes nothing. One that writes
    /// the file ignores them; the file is deleted again (its name is in the built-in ignore
    /// list, so a pull meanwhile leaves it alone). Any other answer (403 for a read-only root,
    /// say) counts as no. Transport trouble is an error, so that the next upload asks again.
    async fn remove_probe(&self, url: Url) {
        // A probe file must not stay behind: the delete is sent again after transport
        // trouble, a few times, until the server says it is gone.
        for attempt in 0..5u32 {
            match self
                .client
                .send(Method::DELETE, url.clone(), HeaderMap::new(), None)
                .await
            {
                Ok(r) if r.status().is_success() || r.status() == StatusCode::NOT_FOUND => return,
                _ => tokio::time::sleep(Duration::from_millis(100 << attempt)).await,
            }
        }
        tracing::warn!(url = %url, "a condition probe file may be left in the cloud; it is ignored by sync and may be deleted by hand");
    }

    async fn probe_conditions(&self) -> Result<bool, CloudError> {
        // One name per host and cloud folder, not a random one: what a probe cut short (a
        // kill, a lost answer) left behind is replaced and deleted by the next probe.
        let host = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
        let id = blake3::hash(format!("{}\n{}", host.trim(), self.root.base).as_bytes());
        let name = format!(".cloudsync-probe-{}", &id.to_hex()[..16]);
        let url = self.root.url_of(&name, false)?;
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_MATCH,
            HeaderValue::from_static("\"cloudsync-probe-matches-nothing\""),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
        let resp = match self
            .client
            .send(Method::PUT, url.clone(), h, Some(""))
            .await
        {
            Ok(r) => r,
            Err(e) => {
                // A server that ignores the condition may have made the file, and the answer
                // been lost (not when no connection was made).
                if !matches!(e, CloudError::Unreachable(_)) {
                    self.remove_probe(url).await;
                }
                return Err(e);
            }
        };
        let status = resp.status();
        if status.is_server_error() || status == StatusCode::UNAUTHORIZED {
            return Err(CloudError::Status {
                status: status.as_u16(),
                detail: "no answer yet to whether the server honours If-Match".into(),
            });
        }
        let mut yes = status == StatusCode::PRECONDITION_FAILED;
        if status.is_success() {
            self.remove_probe(url).await;
        }
        if yes {
            // If-Match alone says nothing of If-None-Match: * (a server may honour one only):
            // a file is made, and made again under the condition, which must be refused.
            let url = self.root.url_of(&format!("{name}-n"), false)?;
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
            let made = match self
                .client
                .send(Method::PUT, url.clone(), h.clone(), Some(""))
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    // The answer may be lost after the file was made.
                    if !matches!(e, CloudError::Unreachable(_)) {
                        self.remove_probe(url).await;
                    }
                    return Err(e);
                }
            };
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
            let again = if made.status().is_success() {
                let r = self
                    .client
                    .send(Method::PUT, url.clone(), h, Some(""))
                    .await
                    .map(|r| Some(r.status()));
                self.remove_probe(url).await;
                r?
            } else {
                None
            };
            yes = again == Some(StatusCode::PRECONDITION_FAILED);
        }
        tracing::info!(
            cloud = %self.root.base,
            status = status.as_u16(),
            "{}",
            if yes {
                "the server honours If-Match and If-None-Match: uploads go without a check first"
            } else {
                "the server does not honour If-Match: every upload is checked with a PROPFIND first"
            }
        );
        Ok(yes)
    }

    /// Checks `cond` against the current cloud copy. Returns the `If-Match` value worth sending
    /// (the server's strong tag), or `None` when no header should be sent. `write` is set for
    /// uploads, which may only replace a file.
    async fn check_precondition(
        &self,
        path: &str,
        cond: &Precondition,
        write: bool,
    ) -> Result<Option<String>, CloudError> {
        match cond {
            Precondition::None => Ok(None),
            Precondition::IfNoneMatch => match self.stat(path).await? {
                Some(_) => Err(CloudError::PreconditionFailed),
                None => Ok(None),
            },
            Precondition::IfMatch(want) => {
                let cur = self.stat(path).await?.ok_or(CloudError::NotFound)?;
                if write && cur.is_dir {
                    return Err(CloudError::PreconditionFailed);
                }
                match cur.etag {
                    // Weak comparison here: Apache reports `W/"x"` for about a second after a
                    // change and `"x"` afterwards, for the same content.
                    Some(have) if strip_weak(&have) == strip_weak(want) => {
                        // A strong tag can go to the server, which then closes the race between
                        // this check and the write. A weak one cannot: under the strong
                        // comparison If-Match requires it never matches, so the write goes
                        // without a header, and a change landing between this PROPFIND and the
                        // PUT (a window of one round trip, only while the tag is weak) is
                        // overwritten.
                        if is_weak(&have) {
                            tracing::debug!(cloud = %self.root.base, path, "the server's ETag is still weak; writing without If-Match after the check");
                            return Ok(None);
                        }
                        Ok(Some(have))
                    }
                    // A folder without a tag, to be deleted: nothing to compare. Servers with
                    // folder tags (Nextcloud) get them compared above.
                    None if cur.is_dir => Ok(None),
                    _ => Err(CloudError::PreconditionFailed),
                }
            }
        }
    }

    /// True when a PUT to `path` was refused because a folder is there, or a file stands
    /// where one of its folders should be. Servers
    /// say so in many ways (409 from Apache, 500 from SabreDAV, 405), so a refusal other than
    /// 412 and the credential and size answers is followed by a look at the path.
    async fn folder_in_the_way(
        &self,
        path: &str,
        resp: &reqwest::Response,
    ) -> Result<bool, CloudError> {
        let code = resp.status().as_u16();
        if resp.status().is_success() || matches!(code, 401 | 412 | 413 | 507) {
            return Ok(false);
        }
        if self.stat(path).await?.is_some_and(|e| e.is_dir) {
            return Ok(true);
        }
        self.file_above(path).await
    }

    /// True when a file stands where one of the folders of `path` should be (Apache answers
    /// 400 to a request below a file). Asked only after a refusal.
    async fn file_above(&self, path: &str) -> Result<bool, CloudError> {
        let mut up = parent(path);
        while !up.is_empty() {
            if let Some(e) = Box::pin(self.stat(up)).await? {
                return Ok(!e.is_dir);
            }
            up = parent(up);
        }
        Ok(false)
    }

    /// One MKCOL.
    async fn mkcol_once(&self, path: &str) -> Result<Mkcol, CloudError> {
        let url = self.root.url_of(path, false)?;
        let resp = self
            .client
            .send(
                Method::from_bytes(b"MKCOL").expect("valid method"),
                url,
                HeaderMap::new(),
                None,
            )
            .await?;
        match resp.status().as_u16() {
            200..=299 => Ok(Mkcol::Done),
            // Something exists there already: fine when it is a folder.
            405 => match self.stat(path).await? {
                Some(e) if e.is_dir => Ok(Mkcol::Done),
                Some(_) => Err(CloudError::PreconditionFailed),
                // Nothing there, yet refused: rclone says so when a parent is a file.
                None => match Box::pin(self.stat(parent(path))).await? {
                    Some(p) if !p.is_dir => Err(CloudError::PreconditionFailed),
                    _ => Err(CloudError::Status {
                        status: 405,
                        detail: format!("the server does not allow creating the folder {path}"),
                    }),
                },
            },
            404 | 409 => Ok(Mkcol::MissingParent),
            400 if self.file_above(path).await? => Err(CloudError::PreconditionFailed),
            _ => Err(self.client.status_error(resp, Op::Name, path).await),
        }
    }
}

/// What listing a file is: the answer WebDAV servers give (409), whichever way they say it.
fn not_a_folder(path: &str) -> CloudError {
    CloudError::Status {
        status: 409,
        detail: format!("{path} is a file, not a folder"),
    }
}

/// The longest name (in bytes) written to a WebDAV server. The servers store names in file
/// systems that take 255 bytes (Nextcloud even fewer characters), and they do not say so
/// alike when a name is longer: SabreDAV answers 201 and stores nothing, rclone answers 405.
pub const MAX_NAME_BYTES: usize = 255;

/// Checks a path to be written, moved or deleted: safe, not the root, no name too long.
fn name_op_path(path: &str) -> Result<&str, CloudError> {
    check_rel_path(path)?;
    if path.is_empty() {
        return Err(CloudError::Protocol(
            "refusing to write, move or delete the cloud root itself".into(),
        ));
    }
    check_name_lengths(path)?;
    Ok(path)
}

/// Refuses a path with a name longer than [`MAX_NAME_BYTES`] as [`CloudError::InvalidName`].
fn check_name_lengths(path: &str) -> Result<(), CloudError> {
    match path.split('/').find(|n| n.len() > MAX_NAME_BYTES) {
        Some(n) => Err(CloudError::InvalidName(format!(
            "{}…: a name is longer than {MAX_NAME_BYTES} bytes",
            n.chars().take(40).collect::<String>()
        ))),
        None => Ok(()),
    }
}

#[async_trait]
impl Cloud for WebDav {
    fn url(&self) -> String {
        self.root.base.to_string()
    }

    fn describe(&self) -> String {
        match &self.client.user {
            Some(u) => format!("WebDAV {} (user {u})", self.root.base),
            None => format!("WebDAV {}", self.root.base),
        }
    }

    async fn stat(&self, path: &str) -> Result<Option<CloudEntry>, CloudError> {
        Ok(self.stat_entry(path).await?.map(|e| e.entry))
    }

    fn folder_etags_cover_subtree(&self) -> bool {
        self.subtree_etags
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn list(&self, path: &str) -> Result<Listing, CloudError> {
        let l = self.list_entries(path).await?;
        Ok(Listing {
            entries: l.entries.into_iter().map(|e| e.entry).collect(),
            skipped: l.skipped,
            clashes: l.clashes,
        })
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
        let url = self.root.url_of(path, false)?;
        // A server that honours If-Match and If-None-Match (found out once, see
        // `honours_conditions`) closes every race by itself, so the header goes alone. Others,
        // such as rclone, ignore the headers: there a Depth-0 PROPFIND checks the condition
        // first, and the headers still go along. A weak tag in the journal (Apache, within a
        // second of a change) can never match under If-Match, so it is checked by PROPFIND too.
        let direct = match cond {
            Precondition::None => true,
            Precondition::IfNoneMatch => self.honours_conditions().await,
            Precondition::IfMatch(t) => !is_weak(t) && self.honours_conditions().await,
        };
        let if_match = if direct {
            match cond {
                Precondition::IfMatch(t) => Some(t.clone()),
                _ => None,
            }
        } else {
            self.check_precondition(path, cond, true).await?
        };
        let if_none_match = *cond == Precondition::IfNoneMatch;
        let (mut resp, mut hash) = self
            .client
            .put(&url, src, if_match.as_deref(), if_none_match)
            .await?;
        // A missing parent: 409 by the standard, 404 from SabreDAV 1.8 and rclone. Create the
        // parents and send once more. Not for an update: its target existed a moment ago, so a
        // 404 there means it was deleted meanwhile.
        let missing = |resp: &reqwest::Response| matches!(resp.status().as_u16(), 404 | 409);
        if missing(&resp)
            && !matches!(cond, Precondition::IfMatch(_))
            && !parent(path).is_empty()
            && !self.folder_in_the_way(path, &resp).await?
        {
            self.mkdir(parent(path)).await?;
            (resp, hash) = self
                .client
                .put(&url, src, if_match.as_deref(), if_none_match)
                .await?;
            if missing(&resp) && !self.folder_in_the_way(path, &resp).await? {
                return Err(CloudError::MissingParent);
            }
        }
        if self.folder_in_the_way(path, &resp).await? {
            return Err(CloudError::PreconditionFailed);
        }
        if resp.status() == StatusCode::PRECONDITION_FAILED
            && matches!(cond, Precondition::IfMatch(_))
        {
            // Changed or gone? The caller treats both alike, but says which.
            return match self.stat(path).await? {
                None => Err(CloudError::NotFound),
                Some(_) => Err(CloudError::PreconditionFailed),
            };
        }
        if !resp.status().is_success() {
            return Err(self.client.status_error(resp, Op::Name, path).await);
        }
        if let Some(tag) = Client::header_etag(&resp) {
            return Ok(Uploaded {
                etag: Some(tag),
                hash,
            });
        }
        // No ETag on the PUT answer (Apache mod_dav): ask for it. A change by someone else
        // between the PUT and this PROPFIND would be taken for ours; that window is one round
        // trip and exists only on such servers. A server that said it stored the file and has
        // none (SabreDAV when the write failed: 201 with an empty ETag) lost it.
        match self.stat(path).await? {
            Some(e) if !e.is_dir => Ok(Uploaded { etag: e.etag, hash }),
            _ => Err(CloudError::Protocol(format!(
                "the server answered the upload of {path:?} with success, but does not have it"
            ))),
        }
    }

    async fn get_file(&self, path: &str, dest: &std::fs::File) -> Result<CloudEntry, CloudError> {
        let url = self.root.url_of(path, false)?;
        let what = format!("GET {url}");
        let mut resp = self
            .client
            .send(Method::GET, url, HeaderMap::new(), None)
            .await?;
        if resp.status().as_u16() != 200 {
            return Err(self.client.status_error(resp, Op::Read, path).await);
        }
        let expected: Option<u64> = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let etag = Client::header_etag(&resp);
        let mtime = resp
            .headers()
            .get(header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_http_time);
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
        let etag = match etag {
            Some(t) => Some(t),
            // No ETag on the GET answer: take the PROPFIND one only when it plainly describes
            // the bytes just received.
            None => self.stat(path).await?.and_then(|e| {
                (e.size == got && (mtime.is_none() || e.mtime == mtime))
                    .then_some(e.etag)
                    .flatten()
            }),
        };
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
        // Try the folder itself; on a missing parent walk up until a MKCOL succeeds, then
        // back down.
        // A server that keeps saying "missing parent" after the parent was made must not keep
        // this loop going: each level gets one try up and one down, plus slack.
        let mut budget = 2 * path.split('/').count() + 2;
        let mut pending = vec![path.to_string()];
        while let Some(p) = pending.last().cloned() {
            if budget == 0 {
                return Err(CloudError::MissingParent);
            }
            budget -= 1;
            match self.mkcol_once(&p).await? {
                Mkcol::Done => {
                    pending.pop();
                }
                Mkcol::MissingParent => {
                    let up = parent(&p);
                    if up.is_empty() {
                        return Err(CloudError::MissingParent);
                    }
                    pending.push(up.to_string());
                }
            }
        }
        Ok(())
    }

    async fn delete(&self, path: &str, cond: &Precondition) -> Result<(), CloudError> {
        name_op_path(path)?;
        let if_match = match cond {
            Precondition::None => None,
            _ => self.check_precondition(path, cond, false).await?,
        };
        let url = self.root.url_of(path, false)?;
        let mut h = HeaderMap::new();
        if let Some(tag) = if_match {
            h.insert(header::IF_MATCH, Client::tag_header(&tag)?);
        }
        let resp = self.client.send(Method::DELETE, url, h, None).await?;
        match resp.status().as_u16() {
            // 207 means some members could not be deleted.
            207 => Err(CloudError::Status {
                status: 207,
                detail: format!("the server could not delete everything in {path}"),
            }),
            200..=299 => Ok(()),
            _ => Err(self.client.status_error(resp, Op::Read, path).await),
        }
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), CloudError> {
        name_op_path(from)?;
        name_op_path(to)?;
        // Overwrite: F is the real guard; this check catches servers that ignore it. A rename
        // that only changes case is left to the server, which may see both names as one.
        if from.to_lowercase() != to.to_lowercase() && self.stat(to).await?.is_some() {
            return Err(CloudError::PreconditionFailed);
        }
        let src = self.root.url_of(from, false)?;
        let dst = self.root.url_of(to, false)?;
        let mut h = HeaderMap::new();
        h.insert(
            HeaderName::from_static("destination"),
            HeaderValue::from_str(dst.as_str())
                .map_err(|_| CloudError::InvalidName(to.to_string()))?,
        );
        h.insert(
            HeaderName::from_static("overwrite"),
            HeaderValue::from_static("F"),
        );
        let resp = self
            .client
            .send(
                Method::from_bytes(b"MOVE").expect("valid method"),
                src,
                h,
                None,
            )
            .await?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            401 | 412 | 413 | 507 => Err(self.client.status_error(resp, Op::Name, to).await),
            // Servers disagree on how to say "no such source" (404, 403 from rclone) and "no
            // such target folder" (409, 404, even 500 from Apache). Ask, so that neither is
            // reported as something else or retried for ever.
            _ => {
                if self.stat(from).await?.is_none() {
                    return Err(CloudError::NotFound);
                }
                if !parent(to).is_empty() && self.stat(parent(to)).await?.is_none() {
                    return Err(CloudError::MissingParent);
                }
                Err(self.client.status_error(resp, Op::Name, to).await)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse::tests::{ms, resp};
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::io::AsyncWriteExt;

    fn dav(url: &str) -> WebDav {
        WebDav::new(url, &CloudOptions::default()).unwrap()
    }

    /// A name no server here stores is refused before any request, the same way everywhere.
    #[tokio::test]
    async fn names_too_long_are_invalid() {
        let d = dav("http://127.0.0.1:9/dav/");
        let long = "n".repeat(MAX_NAME_BYTES + 1);
        let ok = "n".repeat(MAX_NAME_BYTES);
        assert!(check_name_lengths(&format!("a/{ok}")).is_ok());
        let tmp = tempfile::tempfile().unwrap();
        for path in [long.clone(), format!("a/{long}/b")] {
            let e = d
                .upload(&path, &tmp, &Precondition::None)
                .await
                .unwrap_err();
            assert!(matches!(e, CloudError::InvalidName(_)), "{e:?}");
            let e = d.mkdir(&path).await.unwrap_err();
            assert!(matches!(e, CloudError::InvalidName(_)), "{e:?}");
            let e = d.rename("a", &path).await.unwrap_err();
            assert!(matches!(e, CloudError::InvalidName(_)), "{e:?}");
        }
    }

    #[test]
    fn secrets_never_show() {
        let opts = CloudOptions {
            user: Some("bob".into()),
            password: Some("hunter22".into()),
            ca_file: None,
            ..CloudOptions::default()
        };
        let d = WebDav::new("https://host/dav/", &opts).unwrap();
        let shown = format!("{d:?} {}", d.describe());
        assert!(!shown.contains("hunter22"), "{shown}");
        assert!(!shown.contains(&d.client.secrets[1]), "{shown}");
        assert_eq!(d.client.redact("x hunter22 y"), "x <redacted> y");
        let e =
            WebDav::new("https://bob:hunter22@host/dav/", &CloudOptions::default()).unwrap_err();
        assert!(!format!("{e:#}").contains("hunter22"), "{e:#}");
        let e = WebDav::new("https://bob:hunter22@ho st/", &CloudOptions::default()).unwrap_err();
        assert!(!format!("{e:#}").contains("hunter22"), "{e:#}");
        // A user name in the URL is taken, and not shown in the base URL.
        let d = WebDav::new("https://alice@host/dav", &CloudOptions::default()).unwrap();
        assert_eq!(d.base_url(), "https://host/dav/");
        assert_eq!(d.client.user.as_deref(), Some("alice"));
        assert!(WebDav::new("ftp://host/", &CloudOptions::default()).is_err());
        assert!(WebDav::new("https://host/?q=1", &CloudOptions::default()).is_err());
    }

    /// Serves each of `answers` to one connection, after reading the request.
    async fn canned(answers: Vec<Vec<u8>>) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            for a in answers {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                let _ = s.write_all(&a).await;
                let _ = s.shutdown().await;
            }
        });
        format!("http://{addr}/dav/")
    }

    fn http_207(body: &[u8]) -> Vec<u8> {
        let mut v = format!(
            "HTTP/1.1 207 Multi-Status\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        v.extend_from_slice(body);
        v
    }

    #[tokio::test]
    async fn huge_answers_are_refused() {
        // A big but well-formed listing, over the (lowered) cap: refused, not parsed.
        let one = resp("/dav/x", false);
        let body = ms(&one.repeat((2 << 20) / one.len()));
        let url = canned(vec![http_207(body.as_bytes())]).await;
        let d = dav(&url).with_max_propfind_bytes(1 << 20);
        let e = d.list("").await.unwrap_err();
        assert!(matches!(e, CloudError::Protocol(_)), "{e}");
        // The same without Content-Length (read until close) is refused while reading.
        let mut raw = b"HTTP/1.1 207 Multi-Status\r\nConnection: close\r\n\r\n".to_vec();
        raw.extend_from_slice(body.as_bytes());
        let url = canned(vec![raw]).await;
        let d = dav(&url).with_max_propfind_bytes(1 << 20);
        let e = d.list("").await.unwrap_err();
        assert!(matches!(e, CloudError::Protocol(_)), "{e}");
    }

    #[tokio::test]
    async fn hostile_answers_over_http() {
        let body = ms(&[
            resp("/dav/", true),
            resp("/dav/fine.txt", false),
            resp("/dav/../etc/passwd", false),
            resp("/etc/shadow", false),
            resp("http://other.example/dav/x", false),
            resp("/dav/sub/deeper.txt", false),
            resp("/dav/a%2F..%2F..%2Fb", false),
        ]
        .concat());
        let gone = ms(
            "<d:response><d:href>/dav/x</d:href><d:status>HTTP/1.1 404 Not Found</d:status></d:response>",
        );
        let hostile = ms(&resp("/dav/x/../../../etc/passwd", false));
        let url = canned(vec![
            http_207(body.as_bytes()),
            http_207(b"<html>nope</html>"),
            http_207(gone.as_bytes()),
            http_207(hostile.as_bytes()),
        ])
        .await;
        let d = dav(&url);
        let l = d.list("").await.unwrap();
        assert_eq!(l.entries.len(), 1);
        assert_eq!(l.entries[0].path, "fine.txt");
        // Everything refused is counted, so that a folder delete knows it is not alone.
        assert_eq!(
            l.skipped,
            [
                "/dav/../etc/passwd",
                "/etc/shadow",
                "http://other.example/dav/x",
                "/dav/sub/deeper.txt",
                "/dav/a%2F..%2F..%2Fb",
            ]
        );
        assert!(matches!(d.list("").await, Err(CloudError::Protocol(_))));
        // A 404 inside the multistatus means "not there".
        assert_eq!(d.stat("x").await.unwrap(), None);
        // An answer only about some other, unsafe name is refused, not taken for "x".
        assert!(matches!(d.stat("x").await, Err(CloudError::Protocol(_))));
    }

    #[tokio::test]
    async fn connection_refused_is_transient() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", l.local_addr().unwrap());
        drop(l);
        let e = dav(&url).stat("x").await.unwrap_err();
        assert!(
            matches!(e, CloudError::Unreachable(_)) && e.is_transient(),
            "{e}"
        );
    }
}
