//! The WebDAV cloud: `http://` and `https://` URLs (Nextcloud, ownCloud, SharePoint, Apache
//! `mod_dav`, `rclone serve webdav` and any RFC 4918 server).
//!
//! This module owns everything that speaks HTTP to such a server: building URLs from relative
//! paths, Basic auth, TLS roots, timeouts, the mapping of HTTP answers onto [`CloudError`], and
//! the PROPFIND parser. It exists so that the sync engine never sees HTTP, and so that nothing a
//! server says reaches the engine unchecked.
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

use std::fmt;
use std::future::Future;
use std::io::{Read, Seek};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use base64::Engine as _;
use futures_util::Stream;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio_util::bytes::Bytes;
use tokio_util::io::ReaderStream;
use url::Url;

use super::{
    Cloud, CloudEntry, CloudError, Listing, Precondition, Uploaded, check_rel_path, join, parent,
};
use crate::config::CloudOptions;

/// The largest PROPFIND answer accepted. At the few hundred bytes an entry takes, a Depth-1
/// listing of some hundred thousand items fits; anything bigger is treated as a broken or
/// hostile server.
pub const MAX_PROPFIND_BYTES: usize = 64 << 20;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default idle timeout: no byte moved in either direction for this long means the connection
/// is dead. Any progress resets it, so a 1 GiB upload over a slow link is fine.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// After the last byte of an upload, servers may take a while (assembling, scanning) before
/// they answer; they get this many idle timeouts.
const AFTER_UPLOAD_FACTOR: u32 = 5;

/// How much of an error answer is read for its detail text.
const MAX_ERROR_BODY: usize = 8 << 10;

/// The namespace of the WebDAV elements.
const DAV_NS: &str = "DAV:";
/// The ownCloud / Nextcloud namespace, for `oc:fileid`.
const OC_NS: &str = "http://owncloud.org/ns";

/// What every PROPFIND asks for. Servers answer unknown properties with a 404 propstat.
const PROPFIND_BODY: &str = concat!(
    r#"<?xml version="1.0" encoding="utf-8"?>"#,
    r#"<d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:prop>"#,
    r#"<d:resourcetype/><d:getcontentlength/><d:getlastmodified/><d:getetag/><oc:fileid/>"#,
    r#"</d:prop></d:propfind>"#
);

/// Bytes left alone in a path segment: RFC 3986 "unreserved". Everything else is escaped,
/// which every server decodes.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

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
    client: reqwest::Client,
    /// The synced root: no user info, no query, always ending in `/`.
    base: Url,
    /// The decoded path segments of `base`, to recognise hrefs inside the root.
    base_segments: Vec<String>,
    /// The `Authorization` header, marked sensitive.
    auth: Option<HeaderValue>,
    /// The user name, for `describe`.
    user: Option<String>,
    /// Strings that must never appear in messages (the password and its Basic form).
    secrets: Vec<String>,
    idle_timeout: Duration,
    max_propfind_bytes: usize,
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
            .field("base", &self.base.as_str())
            .field("user", &self.user)
            .field("auth", &self.auth.as_ref().map(|_| "<redacted>"))
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

/// Removes `user:password@` from a URL-like string, for messages about URLs that did not parse.
fn strip_userinfo(s: &str) -> String {
    let Some(i) = s.find("://") else {
        return s.to_string();
    };
    let start = i + 3;
    let end = s[start..]
        .find(['/', '?', '#'])
        .map_or(s.len(), |j| start + j);
    match s[start..end].rfind('@') {
        Some(at) => format!("{}{}", &s[..start], &s[start + at + 1..]),
        None => s.to_string(),
    }
}

/// Why an href was refused.
type Refusal = String;

/// Decodes one raw path segment of an href; refuses anything that could escape a folder.
fn decode_segment(raw: &str) -> Result<String, Refusal> {
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| format!("segment {raw:?} is not UTF-8"))?;
    if decoded.is_empty() || decoded == "." || decoded == ".." {
        return Err(format!("segment {raw:?} is empty, . or .."));
    }
    if decoded.contains('/') || decoded.contains('\0') {
        return Err(format!(
            "segment {raw:?} decodes to a name holding / or NUL"
        ));
    }
    Ok(decoded.into_owned())
}

/// Compares a decoded server name with one of ours: exactly, or ignoring case (SharePoint and
/// IIS answer with the case they store, not the case asked for).
fn same_name(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

/// Makes an entity tag well-formed: trimmed and quoted, keeping a weak `W/` prefix.
fn normalize_etag(raw: &str) -> Option<String> {
    let t = raw.trim();
    if t.is_empty() {
        return None;
    }
    let (weak, opaque) = match t.strip_prefix("W/") {
        Some(rest) => (true, rest.trim()),
        None => (false, t),
    };
    let quoted = if opaque.len() >= 2 && opaque.starts_with('"') && opaque.ends_with('"') {
        opaque.to_string()
    } else {
        format!("\"{}\"", opaque.trim_matches('"'))
    };
    Some(if weak { format!("W/{quoted}") } else { quoted })
}

/// True for a weak entity tag.
fn is_weak(tag: &str) -> bool {
    tag.starts_with("W/")
}

/// The tag without its weak prefix, for weak comparison (RFC 9110 section 8.8.3.2).
fn strip_weak(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

/// Parses `getlastmodified`: RFC 1123 as the standard says, RFC 3339 as some servers send.
fn parse_http_time(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    httpdate::parse_http_date(s)
        .ok()
        .or_else(|| humantime::parse_rfc3339_weak(s).ok())
}

/// The properties of one `response`, merged from its 2xx propstats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Props {
    etag: Option<String>,
    length: Option<u64>,
    modified: Option<SystemTime>,
    is_dir: bool,
    file_id: Option<String>,
}

/// One `response` element of a multistatus, before its href is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct RawResponse {
    hrefs: Vec<String>,
    /// The response-level status, for answers without propstat (`404` for a whole href).
    status: Option<u16>,
    /// The merged properties when at least one propstat had a 2xx status.
    props: Option<Props>,
}

/// Parses the status line `HTTP/1.1 200 OK` into its code.
fn parse_status_line(s: &str) -> Option<u16> {
    s.split_whitespace().nth(1)?.parse().ok()
}

/// The elements the parser cares about; everything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Elem {
    MultiStatus,
    Response,
    Href,
    PropStat,
    Prop,
    Status,
    ETag,
    Length,
    Modified,
    ResourceType,
    Collection,
    FileId,
    Other,
}

impl Elem {
    /// True for elements whose text content is kept.
    fn keeps_text(self) -> bool {
        matches!(
            self,
            Elem::Href | Elem::Status | Elem::ETag | Elem::Length | Elem::Modified | Elem::FileId
        )
    }
}

/// Deeper nesting than this is not a real multistatus.
const MAX_XML_DEPTH: usize = 64;

/// Parses a `207 Multi-Status` body. Namespace prefixes are resolved (any prefix may stand for
/// `DAV:`), entities are decoded, and properties from non-2xx propstats are ignored.
fn parse_multistatus(xml: &str) -> Result<Vec<RawResponse>, CloudError> {
    let bad = |e: &dyn fmt::Display| CloudError::Protocol(format!("invalid PROPFIND answer: {e}"));
    let mut reader = quick_xml::reader::NsReader::from_str(xml);
    reader.config_mut().expand_empty_elements = true;
    let mut stack: Vec<Elem> = Vec::new();
    let mut out = Vec::new();
    let mut seen_root = false;
    let mut cur: Option<RawResponse> = None;
    // The current propstat: its status and properties.
    let mut ps: Option<(Option<u16>, Props)> = None;
    let mut text = String::new();
    loop {
        let (ns, ev) = reader.read_resolved_event().map_err(|e| bad(&e))?;
        let ns_is = |want: &str| matches!(&ns, ResolveResult::Bound(n) if n.as_ref() == want);
        match ev {
            Event::Start(e) => {
                let local = e.local_name();
                let local: &str = local.as_ref();
                let dav = ns_is(DAV_NS);
                let top = stack.last().copied();
                let tag = match (top, dav, local) {
                    (None, true, "multistatus") => Elem::MultiStatus,
                    (None, _, _) => {
                        return Err(CloudError::Protocol(format!(
                            "the answer is not a WebDAV multistatus (root element {local:?})"
                        )));
                    }
                    (Some(Elem::MultiStatus), true, "response") => Elem::Response,
                    (Some(Elem::Response), true, "href") => Elem::Href,
                    (Some(Elem::Response), true, "propstat") => Elem::PropStat,
                    (Some(Elem::Response), true, "status") => Elem::Status,
                    (Some(Elem::PropStat), true, "status") => Elem::Status,
                    (Some(Elem::PropStat), true, "prop") => Elem::Prop,
                    (Some(Elem::Prop), true, "getetag") => Elem::ETag,
                    (Some(Elem::Prop), true, "getcontentlength") => Elem::Length,
                    (Some(Elem::Prop), true, "getlastmodified") => Elem::Modified,
                    (Some(Elem::Prop), true, "resourcetype") => Elem::ResourceType,
                    (Some(Elem::Prop), false, "fileid") if ns_is(OC_NS) => Elem::FileId,
                    (Some(Elem::ResourceType), true, "collection") => Elem::Collection,
                    _ => Elem::Other,
                };
                match tag {
                    Elem::MultiStatus => seen_root = true,
                    Elem::Response => cur = Some(RawResponse::default()),
                    Elem::PropStat => ps = Some((None, Props::default())),
                    Elem::Collection => {
                        if let Some((_, p)) = ps.as_mut() {
                            p.is_dir = true;
                        }
                    }
                    _ => {}
                }
                text.clear();
                stack.push(tag);
                if stack.len() > MAX_XML_DEPTH {
                    return Err(CloudError::Protocol(
                        "PROPFIND answer nested too deeply".into(),
                    ));
                }
            }
            Event::Text(t) => {
                if stack.last().is_some_and(|t| t.keeps_text()) {
                    text.push_str(&t.xml10_content());
                }
            }
            Event::CData(t) => {
                if stack.last().is_some_and(|t| t.keeps_text()) {
                    text.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                if stack.last().is_some_and(|t| t.keeps_text()) {
                    let raw = format!("&{};", r.xml10_content());
                    let s = quick_xml::escape::unescape(&raw).map_err(|e| bad(&e))?;
                    text.push_str(&s);
                }
            }
            Event::End(_) => {
                let tag = stack.pop().ok_or_else(|| bad(&"unbalanced end tag"))?;
                let value = std::mem::take(&mut text);
                match tag {
                    Elem::Href => {
                        if let Some(r) = cur.as_mut() {
                            r.hrefs.push(value.trim().to_string());
                        }
                    }
                    Elem::Status => match (stack.last(), ps.as_mut(), cur.as_mut()) {
                        (Some(Elem::PropStat), Some((st, _)), _) => *st = parse_status_line(&value),
                        (Some(Elem::Response), _, Some(r)) => r.status = parse_status_line(&value),
                        _ => {}
                    },
                    Elem::ETag | Elem::Length | Elem::Modified | Elem::FileId => {
                        if let Some((_, p)) = ps.as_mut() {
                            match tag {
                                Elem::ETag => p.etag = normalize_etag(&value),
                                Elem::Length => p.length = value.trim().parse().ok(),
                                Elem::Modified => p.modified = parse_http_time(&value),
                                _ => {
                                    let v = value.trim();
                                    p.file_id = (!v.is_empty()).then(|| v.to_string());
                                }
                            }
                        }
                    }
                    Elem::PropStat => {
                        if let (Some((st, p)), Some(r)) = (ps.take(), cur.as_mut())
                            && st.is_some_and(|s| (200..300).contains(&s))
                        {
                            let m = r.props.get_or_insert_with(Props::default);
                            m.is_dir |= p.is_dir;
                            m.etag = m.etag.take().or(p.etag);
                            m.length = m.length.or(p.length);
                            m.modified = m.modified.or(p.modified);
                            m.file_id = m.file_id.take().or(p.file_id);
                        }
                    }
                    Elem::Response => {
                        if let Some(r) = cur.take() {
                            out.push(r);
                        }
                    }
                    _ => {}
                }
            }
            Event::Eof => break,
            Event::Empty(_)
            | Event::Comment(_)
            | Event::Decl(_)
            | Event::PI(_)
            | Event::DocType(_) => {}
        }
    }
    if !seen_root {
        return Err(CloudError::Protocol(
            "the answer is not a WebDAV multistatus".into(),
        ));
    }
    if !stack.is_empty() {
        return Err(bad(&"the answer ends in the middle of an element"));
    }
    Ok(out)
}

/// Files up to this size are read whole and sent from memory; larger ones stream.
const SMALL_UPLOAD: u64 = 64 << 10;

/// The local file of an upload, opened.
enum Source {
    /// Read whole, with its hash.
    Small(Bytes, String),
    /// To be streamed: the file and its length.
    Large(std::fs::File, u64),
    /// Its length changed while it was read.
    Changed,
}

/// Progress of an upload, shared between the body stream and the watchdog.
struct Progress {
    last: Mutex<Instant>,
    done: AtomicBool,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            last: Mutex::new(Instant::now()),
            done: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    fn deadline(&self, idle: Duration) -> tokio::time::Instant {
        let last = *self.last.lock().unwrap_or_else(|e| e.into_inner());
        let wait = if self.done.load(Ordering::Relaxed) {
            idle * AFTER_UPLOAD_FACTOR
        } else {
            idle
        };
        tokio::time::Instant::from_std(last + wait)
    }
}

/// Streams a local file as an upload body of exactly `remaining` bytes, recording progress.
/// A file that grows or shrinks meanwhile ends the upload with an error rather than sending
/// something that is neither the old nor the new content.
struct UploadStream {
    inner: ReaderStream<tokio::fs::File>,
    remaining: u64,
    progress: Arc<Progress>,
    changed: Arc<AtomicBool>,
    /// The hash of the bytes sent so far; the finished hash once the whole file went.
    hash: Arc<Mutex<Hashing>>,
}

/// The content hash of an upload body, computed as it is sent.
enum Hashing {
    Running(Box<blake3::Hasher>),
    Done(String),
    /// The body did not go out whole.
    Broken,
}

impl Hashing {
    fn update(&mut self, chunk: &[u8]) {
        if let Hashing::Running(h) = self {
            h.update(chunk);
        }
    }

    fn finish(&mut self) {
        if let Hashing::Running(h) = self {
            *self = Hashing::Done(h.finalize().to_hex().to_string());
        }
    }
}

impl Stream for UploadStream {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                this.progress.touch();
                let n = chunk.len() as u64;
                if n > this.remaining {
                    *this.hash.lock().unwrap_or_else(|e| e.into_inner()) = Hashing::Broken;
                    this.changed.store(true, Ordering::Relaxed);
                    return Poll::Ready(Some(Err(std::io::Error::other(
                        "the local file grew during the upload",
                    ))));
                }
                this.remaining -= n;
                let mut h = this.hash.lock().unwrap_or_else(|e| e.into_inner());
                h.update(&chunk);
                if this.remaining == 0 {
                    h.finish();
                    this.progress.done.store(true, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                *this.hash.lock().unwrap_or_else(|e| e.into_inner()) = Hashing::Broken;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                if this.remaining > 0 {
                    *this.hash.lock().unwrap_or_else(|e| e.into_inner()) = Hashing::Broken;
                    this.changed.store(true, Ordering::Relaxed);
                    return Poll::Ready(Some(Err(std::io::Error::other(
                        "the local file shrank during the upload",
                    ))));
                }
                this.progress.done.store(true, Ordering::Relaxed);
                Poll::Ready(None)
            }
        }
    }
}

/// Runs `fut` until it ends, or until `progress` has not moved for the idle timeout.
async fn watchdog<F: Future>(fut: F, progress: &Progress, idle: Duration) -> Option<F::Output> {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            out = &mut fut => return Some(out),
            _ = tokio::time::sleep_until(progress.deadline(idle)) => {
                if tokio::time::Instant::now() >= progress.deadline(idle) {
                    return None;
                }
            }
        }
    }
}

/// What a request does with names, for mapping 400-class answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Reads (PROPFIND, GET): a 400 is a plain error.
    Read,
    /// Creates or changes a name (PUT, MKCOL, MOVE): a 400 means the name was refused.
    Name,
}

/// A PROPFIND answer sorted by [`WebDav::sort_responses`].
#[derive(Debug, Default)]
struct Sorted {
    /// The item asked for.
    me: Option<DavEntry>,
    /// Its direct children.
    children: Vec<DavEntry>,
    /// What the answer held that could not be taken, other than the item itself: refused
    /// hrefs, responses without a 2xx propstat, items deeper down. Raw hrefs (or a note).
    skipped: Vec<String>,
    /// The server said, inside the multistatus, that the item asked for does not exist.
    gone: bool,
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
        let mut base_segments = Vec::new();
        for raw in base.path().split('/').filter(|s| !s.is_empty()) {
            base_segments.push(decode_segment(raw).map_err(|why| {
                anyhow::anyhow!("the cloud URL {shown:?} has an unusable path: {why}")
            })?);
        }

        let user = opts
            .user
            .clone()
            .or_else(|| (!url_user.is_empty()).then_some(url_user));
        let mut secrets = Vec::new();
        let auth = match (&user, &opts.password) {
            (Some(u), p) => {
                let pass = p.as_deref().unwrap_or("");
                let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{pass}"));
                let mut v = HeaderValue::from_str(&format!("Basic {token}")).map_err(|_| {
                    anyhow::anyhow!("the cloud user name holds characters HTTP cannot carry")
                })?;
                v.set_sensitive(true);
                if !pass.is_empty() {
                    secrets.push(pass.to_string());
                }
                secrets.push(token);
                Some(v)
            }
            (None, Some(_)) => anyhow::bail!(
                "a cloud password is set but no user: add --user (or `user =` in the config)"
            ),
            (None, None) => None,
        };

        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_keepalive(Duration::from_secs(30))
            // Below Apache's default keep-alive of 5 s, so an idle connection is dropped here
            // before the server closes it under a request whose streamed body cannot be replayed.
            .pool_idle_timeout(Duration::from_secs(4))
            // Redirects are handled by hand: a streamed body cannot be replayed, and the only
            // redirect worth following is the one that adds a trailing slash.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cloudsync/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &opts.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| anyhow::anyhow!("cannot read the CA file {}: {e}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| anyhow::anyhow!("the CA file {} is not PEM: {e}", ca.display()))?;
            if certs.is_empty() {
                anyhow::bail!("the CA file {} holds no certificate", ca.display());
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let client = builder
            .build()
            .map_err(|e| anyhow::anyhow!("cannot set up the HTTP client: {e}"))?;
        Ok(WebDav {
            client,
            base,
            base_segments,
            auth,
            user,
            secrets,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_propfind_bytes: MAX_PROPFIND_BYTES,
            subtree_etags: std::sync::atomic::AtomicBool::new(false),
            conditions: tokio::sync::OnceCell::new(),
        })
    }

    /// Sets the idle timeout: how long the connection may move no byte before the request is
    /// given up as a transport error. Defaults to 60 s. Once an upload body is sent, the server
    /// gets five times as long to answer.
    pub fn with_idle_timeout(mut self, idle: Duration) -> WebDav {
        self.idle_timeout = idle;
        self
    }

    /// Sets the largest PROPFIND answer accepted (default [`MAX_PROPFIND_BYTES`]).
    pub fn with_max_propfind_bytes(mut self, max: usize) -> WebDav {
        self.max_propfind_bytes = max;
        self
    }

    /// The synced root URL, without credentials, ending in `/`.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// The URL of `path` (checked), with a trailing slash when `folder` is set.
    fn url_of(&self, path: &str, folder: bool) -> Result<Url, CloudError> {
        check_rel_path(path)?;
        let mut s = self.base.as_str().to_string();
        for (i, seg) in path.split('/').filter(|s| !s.is_empty()).enumerate() {
            if i > 0 {
                s.push('/');
            }
            s.extend(utf8_percent_encode(seg, SEGMENT));
        }
        if folder && !s.ends_with('/') {
            s.push('/');
        }
        Url::parse(&s).map_err(|e| CloudError::InvalidName(format!("{path:?}: {e}")))
    }

    /// Replaces every secret in `s`.
    fn redact(&self, s: &str) -> String {
        let mut s = s.to_string();
        for secret in &self.secrets {
            if !secret.is_empty() {
                s = s.replace(secret.as_str(), "<redacted>");
            }
        }
        s
    }

    /// A transport error with its whole cause chain, never with credentials.
    fn transport(&self, what: &str, e: reqwest::Error) -> CloudError {
        let e = e.without_url();
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            let t = s.to_string();
            if !msg.contains(&t) {
                msg.push_str(": ");
                msg.push_str(&t);
            }
            src = s.source();
        }
        // A certificate the client does not trust will not become trusted by retrying: that
        // is a configuration error, reported once with what to do.
        if msg.contains("invalid peer certificate") || msg.contains("certificate verify failed") {
            return CloudError::Protocol(self.redact(&format!(
                "{what}: the server's TLS certificate is not trusted ({msg}); give its CA with --ca-file"
            )));
        }
        if e.is_connect() {
            // Nothing of the request left this host.
            return CloudError::Unreachable(self.redact(&format!("{what}: {msg}")));
        }
        CloudError::Transport(self.redact(&format!("{what}: {msg}")))
    }

    fn timed_out(&self, what: &str) -> CloudError {
        CloudError::Transport(format!(
            "{what}: no answer from the server for {} s",
            self.idle_timeout.as_secs_f32()
        ))
    }

    /// A request builder with auth and the given headers.
    fn request(&self, method: Method, url: Url, headers: HeaderMap) -> reqwest::RequestBuilder {
        let mut rb = self.client.request(method, url).headers(headers);
        if let Some(a) = &self.auth {
            rb = rb.header(header::AUTHORIZATION, a.clone());
        }
        rb
    }

    /// Sends a request whose body is small and can be replayed. Follows one redirect that only
    /// adds a trailing slash to the URL.
    async fn send(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Option<&'static str>,
    ) -> Result<reqwest::Response, CloudError> {
        let mut url = url;
        for attempt in 0..2 {
            let what = format!("{method} {url}");
            let mut rb = self.request(method.clone(), url.clone(), headers.clone());
            if let Some(b) = body {
                rb = rb.body(b);
            }
            let resp = match tokio::time::timeout(self.idle_timeout, rb.send()).await {
                Err(_) => return Err(self.timed_out(&what)),
                Ok(Err(e)) => return Err(self.transport(&what, e)),
                Ok(Ok(r)) => r,
            };
            if attempt == 0 && resp.status().is_redirection() && !url.path().ends_with('/') {
                let slashed = {
                    let mut u = url.clone();
                    u.set_path(&format!("{}/", url.path()));
                    u
                };
                let target = resp
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| url.join(l).ok());
                if target.as_ref() == Some(&slashed) {
                    url = slashed;
                    continue;
                }
            }
            return Ok(resp);
        }
        unreachable!("the loop returns on its second pass")
    }

    /// Reads a body, at most `cap` bytes, with the idle timeout on every chunk.
    async fn read_capped(
        &self,
        what: &str,
        mut resp: reqwest::Response,
        cap: usize,
    ) -> Result<Vec<u8>, CloudError> {
        let too_big = || {
            CloudError::Protocol(format!(
                "{what}: the answer is larger than {cap} bytes; refused"
            ))
        };
        if resp.content_length().is_some_and(|n| n > cap as u64) {
            return Err(too_big());
        }
        let mut buf = Vec::new();
        loop {
            match tokio::time::timeout(self.idle_timeout, resp.chunk()).await {
                Err(_) => return Err(self.timed_out(what)),
                Ok(Err(e)) => return Err(self.transport(what, e)),
                Ok(Ok(None)) => return Ok(buf),
                Ok(Ok(Some(c))) => {
                    if buf.len() + c.len() > cap {
                        return Err(too_big());
                    }
                    buf.extend_from_slice(&c);
                }
            }
        }
    }

    /// Maps an error answer onto [`CloudError`], reading a little of its body for detail.
    async fn status_error(&self, resp: reqwest::Response, op: Op, path: &str) -> CloudError {
        let status = resp.status();
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(strip_userinfo);
        // Only a bounded prefix of the body, and only when it comes quickly.
        let body = {
            let mut buf = Vec::new();
            let mut resp = resp;
            let read = async {
                while let Ok(Some(c)) = resp.chunk().await {
                    buf.extend_from_slice(&c[..c.len().min(MAX_ERROR_BODY - buf.len())]);
                    if buf.len() >= MAX_ERROR_BODY {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(2), read).await;
            String::from_utf8_lossy(&buf).into_owned()
        };
        let detail = match location {
            Some(l) if status.is_redirection() => {
                format!("the server redirects to {l}; use that URL for --cloud")
            }
            _ => self.detail(&body, status),
        };
        map_status(status, op, path, &body, detail)
    }

    /// A one-line, redacted summary of an error body.
    fn detail(&self, body: &str, status: StatusCode) -> String {
        // Prefer the message element of an XML error (SabreDAV, Nextcloud).
        let text = match (body.find("message>"), body.rfind("</")) {
            (Some(i), Some(_)) => {
                let rest = &body[i + "message>".len()..];
                rest.split('<').next().unwrap_or("").to_string()
            }
            _ => {
                let mut out = String::new();
                let mut in_tag = false;
                for c in body.chars() {
                    match c {
                        '<' => in_tag = true,
                        '>' => {
                            in_tag = false;
                            out.push(' ');
                        }
                        _ if !in_tag => out.push(c),
                        _ => {}
                    }
                }
                out
            }
        };
        let mut line: String = text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        if line.is_empty() {
            line = status.canonical_reason().unwrap_or("no detail").to_string();
        }
        self.redact(&line)
    }

    /// PROPFIND at `depth` (0 or 1); `None` when the item does not exist.
    async fn propfind(
        &self,
        path: &str,
        depth: u8,
    ) -> Result<Option<Vec<RawResponse>>, CloudError> {
        let url = self.url_of(path, depth > 0 || path.is_empty())?;
        let what = format!("PROPFIND {url}");
        let mut h = HeaderMap::new();
        h.insert(
            "depth",
            HeaderValue::from_static(if depth == 0 { "0" } else { "1" }),
        );
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml; charset=utf-8"),
        );
        let resp = self
            .send(
                Method::from_bytes(b"PROPFIND").expect("valid method"),
                url,
                h,
                Some(PROPFIND_BODY),
            )
            .await?;
        match resp.status().as_u16() {
            207 | 200 => {}
            404 => return Ok(None),
            _ => return Err(self.status_error(resp, Op::Read, path).await),
        }
        let body = self
            .read_capped(&what, resp, self.max_propfind_bytes)
            .await?;
        let text = std::str::from_utf8(&body)
            .map_err(|_| CloudError::Protocol(format!("{what}: the answer is not UTF-8")))?;
        parse_multistatus(text).map(Some)
    }

    /// Checks an href and turns it into a path relative to the synced root.
    fn href_to_rel(&self, href: &str) -> Result<String, Refusal> {
        let href = href.trim();
        if href.contains(['?', '#']) {
            return Err("it has a query or fragment".into());
        }
        let raw_path = if href.starts_with('/') {
            if href.starts_with("//") {
                return Err("it is a network-path reference".into());
            }
            href
        } else if let Some(i) = href.find("://") {
            let u = Url::parse(href).map_err(|e| format!("it does not parse: {e}"))?;
            if u.scheme() != self.base.scheme()
                || u.host_str() != self.base.host_str()
                || u.port_or_known_default() != self.base.port_or_known_default()
            {
                return Err("it names another server".into());
            }
            let after = &href[i + 3..];
            after.find('/').map_or("/", |j| &after[j..])
        } else {
            return Err("it is neither absolute nor path-absolute".into());
        };
        let mut raw: Vec<&str> = raw_path[1..].split('/').collect();
        if raw.last() == Some(&"") {
            raw.pop();
        }
        let segs = raw
            .iter()
            .map(|s| decode_segment(s))
            .collect::<Result<Vec<_>, _>>()?;
        let n = self.base_segments.len();
        if segs.len() < n
            || !segs
                .iter()
                .zip(&self.base_segments)
                .all(|(a, b)| same_name(a, b))
        {
            return Err("it lies outside the synced root".into());
        }
        let rel = segs[n..].join("/");
        check_rel_path(&rel).map_err(|e| e.to_string())?;
        Ok(rel)
    }

    /// Sorts checked responses into the item at `path` itself and its direct children.
    /// Anything else the server sent (refused names, items deeper down or elsewhere,
    /// duplicates) is skipped with a warning; all but duplicates and the item's own answer are
    /// counted in [`Sorted::skipped`], since they may be items inside the folder.
    fn sort_responses(&self, path: &str, responses: Vec<RawResponse>) -> Sorted {
        let mut out = Sorted::default();
        let want: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        for r in responses {
            let Some(href) = r.hrefs.first() else {
                tracing::warn!(cloud = %self.base, "skipping a PROPFIND response without href");
                out.skipped.push("(a response without href)".into());
                continue;
            };
            let rel = match self.href_to_rel(href) {
                Ok(rel) => rel,
                Err(why) => {
                    tracing::warn!(cloud = %self.base, href = ?href, "refusing a server name: {why}");
                    out.skipped.push(href.clone());
                    continue;
                }
            };
            let segs: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
            let under =
                segs.len() >= want.len() && segs.iter().zip(&want).all(|(a, b)| same_name(a, b));
            let is_self = under && segs.len() == want.len();
            let is_child = under && segs.len() == want.len() + 1;
            let Some(props) = r.props else {
                // A status-only response may name several hrefs; only the first can be the
                // item itself.
                let first = if r.status == Some(404) && is_self {
                    out.gone = true;
                    1
                } else if is_self {
                    1
                } else {
                    tracing::warn!(cloud = %self.base, href = ?href, "skipping a response without properties");
                    0
                };
                out.skipped.extend(r.hrefs[first..].iter().cloned());
                continue;
            };
            let entry_path = if is_self {
                path.to_string()
            } else if is_child {
                // Our own folder path plus the server's (checked) name.
                join(path, segs[segs.len() - 1])
            } else {
                tracing::warn!(cloud = %self.base, href = ?href, path, "refusing an answer that is not the item asked for or a direct child of it");
                out.skipped.push(href.clone());
                continue;
            };
            if check_rel_path(&entry_path).is_err() {
                out.skipped.push(href.clone());
                continue;
            }
            let entry = DavEntry {
                entry: CloudEntry {
                    path: entry_path,
                    is_dir: props.is_dir,
                    size: if props.is_dir {
                        0
                    } else {
                        props.length.unwrap_or(0)
                    },
                    mtime: props.modified,
                    etag: props.etag,
                },
                file_id: props.file_id,
            };
            if entry.file_id.is_some() {
                self.subtree_etags
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            if is_self {
                if out.me.is_none() {
                    out.me = Some(entry);
                }
            } else if out
                .children
                .iter()
                .any(|e| e.entry.path == entry.entry.path)
            {
                tracing::warn!(cloud = %self.base, href = ?href, "skipping a duplicate listed item");
            } else {
                out.children.push(entry);
            }
        }
        out
    }

    /// The item at `path` with its server id, or `None` when it does not exist.
    pub async fn stat_entry(&self, path: &str) -> Result<Option<DavEntry>, CloudError> {
        check_rel_path(path)?;
        let Some(responses) = self.propfind(path, 0).await? else {
            return Ok(None);
        };
        let sorted = self.sort_responses(path, responses);
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
        let responses = self.propfind(path, 1).await?.ok_or(CloudError::NotFound)?;
        let sorted = self.sort_responses(path, responses);
        if sorted.gone {
            return Err(CloudError::NotFound);
        }
        // The folder's own response, when present, must say it is a folder.
        if sorted.me.as_ref().is_some_and(|me| !me.entry.is_dir) {
            return Err(CloudError::Status {
                status: 409,
                detail: format!("{path} is a file, not a folder"),
            });
        }
        Ok(Listing {
            entries: sorted.children,
            skipped: sorted.skipped,
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
                tracing::debug!(cloud = %self.base, error = %e, "cannot tell yet whether the server honours If-Match");
                false
            }
        }
    }

    /// Sends an empty PUT with an `If-Match` that nothing can match to a fresh name in the
    /// root. A server that honours conditions answers 412 and writes nothing. One that writes
    /// the file ignores them; the file is deleted again (its name is in the built-in ignore
    /// list, so a pull meanwhile leaves it alone). Any other answer (403 for a read-only root,
    /// say) counts as no. Transport trouble is an error, so that the next upload asks again.
    async fn probe_conditions(&self) -> Result<bool, CloudError> {
        let name = format!(".cloudsync-probe-{:016x}", fastrand::u64(..));
        let url = self.url_of(&name, false)?;
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_MATCH,
            HeaderValue::from_static("\"cloudsync-probe-matches-nothing\""),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
        let resp = self.send(Method::PUT, url.clone(), h, Some("")).await?;
        let status = resp.status();
        if status.is_server_error() || status == StatusCode::UNAUTHORIZED {
            return Err(CloudError::Status {
                status: status.as_u16(),
                detail: "no answer yet to whether the server honours If-Match".into(),
            });
        }
        let mut yes = status == StatusCode::PRECONDITION_FAILED;
        if status.is_success() {
            let _ = self.send(Method::DELETE, url, HeaderMap::new(), None).await;
        }
        if yes {
            // If-Match alone says nothing of If-None-Match: * (a server may honour one only):
            // a file is made, and made again under the condition, which must be refused.
            let url = self.url_of(&format!("{name}-n"), false)?;
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
            let made = self
                .send(Method::PUT, url.clone(), h.clone(), Some(""))
                .await?;
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
            let again = if made.status().is_success() {
                Some(
                    self.send(Method::PUT, url.clone(), h, Some(""))
                        .await?
                        .status(),
                )
            } else {
                None
            };
            let _ = self.send(Method::DELETE, url, HeaderMap::new(), None).await;
            yes = again == Some(StatusCode::PRECONDITION_FAILED);
        }
        tracing::info!(
            cloud = %self.base,
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
                            tracing::debug!(cloud = %self.base, path, "the server's ETag is still weak; writing without If-Match after the check");
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

    /// An ETag as a header value. A tag that cannot be sent (a hostile or broken server's) is an
    /// error: the write would otherwise go without its condition.
    fn tag_header(tag: &str) -> Result<HeaderValue, CloudError> {
        HeaderValue::from_str(tag).map_err(|_| {
        CloudError::Protocol(format!(
            "the server's ETag {tag:?} cannot be sent back in If-Match; nothing is written without it"
        ))
    })
    }

    /// One PUT of the local file. Returns the answer, whatever its status, and the BLAKE3 hash
    /// of the body when all of it was sent.
    async fn put_once(
        &self,
        url: &Url,
        src: &std::fs::File,
        if_match: Option<&str>,
        if_none_match: bool,
    ) -> Result<(reqwest::Response, Option<String>), CloudError> {
        let what = format!("PUT {url}");
        let progress = Arc::new(Progress::new());
        let changed = Arc::new(AtomicBool::new(false));
        // A small file (most are) is opened, read and hashed right here: a trip to the blocking
        // pool and back costs more than that read. Larger files stream from the pool.
        let opened = (|| -> std::io::Result<Source> {
            let mut file = src.try_clone()?;
            file.seek(std::io::SeekFrom::Start(0))?;
            let len = file.metadata()?.len();
            if len > SMALL_UPLOAD {
                return Ok(Source::Large(file, len));
            }
            let mut buf = Vec::with_capacity(len as usize);
            (&mut file).take(len + 1).read_to_end(&mut buf)?;
            if buf.len() as u64 != len {
                return Ok(Source::Changed);
            }
            let hash = blake3::hash(&buf).to_hex().to_string();
            Ok(Source::Small(Bytes::from(buf), hash))
        })()?;
        let (len, hash, body) = match opened {
            Source::Changed => {
                return Err(CloudError::Io(std::io::Error::new(
                    std::io::ErrorKind::Interrupted,
                    format!("{url} changed size while it was read; it will be sent again"),
                )));
            }
            Source::Small(bytes, h) => {
                progress.done.store(true, Ordering::Relaxed);
                let len = bytes.len() as u64;
                let hash = Arc::new(Mutex::new(Hashing::Done(h)));
                (len, hash, reqwest::Body::from(bytes))
            }
            Source::Large(file, len) => {
                let hash = Arc::new(Mutex::new(Hashing::Running(
                    Box::new(blake3::Hasher::new()),
                )));
                let stream = UploadStream {
                    inner: ReaderStream::with_capacity(tokio::fs::File::from_std(file), 1 << 20),
                    remaining: len,
                    progress: progress.clone(),
                    changed: changed.clone(),
                    hash: hash.clone(),
                };
                (len, hash, reqwest::Body::wrap_stream(stream))
            }
        };
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        if let Some(tag) = if_match {
            h.insert(header::IF_MATCH, Self::tag_header(tag)?);
        }
        if if_none_match {
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        }
        let rb = self.request(Method::PUT, url.clone(), h).body(body);
        match watchdog(rb.send(), &progress, self.idle_timeout).await {
            None => Err(self.timed_out(&what)),
            Some(Err(_)) if changed.load(Ordering::Relaxed) => {
                Err(CloudError::Io(std::io::Error::new(
                    std::io::ErrorKind::Interrupted,
                    format!("{url} changed size during the upload; it will be sent again"),
                )))
            }
            Some(Err(e)) => Err(self.transport(&what, e)),
            Some(Ok(r)) => {
                let h = match &*hash.lock().unwrap_or_else(|e| e.into_inner()) {
                    Hashing::Done(h) => Some(h.clone()),
                    _ => None,
                };
                Ok((r, h))
            }
        }
    }

    /// One MKCOL.
    async fn mkcol_once(&self, path: &str) -> Result<Mkcol, CloudError> {
        let url = self.url_of(path, false)?;
        let resp = self
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
                None => Err(CloudError::Status {
                    status: 405,
                    detail: format!("the server does not allow creating the folder {path}"),
                }),
            },
            404 | 409 => Ok(Mkcol::MissingParent),
            _ => Err(self.status_error(resp, Op::Name, path).await),
        }
    }

    /// The ETag a response header carries (`ETag`, or `OC-ETag` which some servers add).
    fn header_etag(resp: &reqwest::Response) -> Option<String> {
        let h = resp.headers();
        h.get(header::ETAG)
            .or_else(|| h.get("oc-etag"))
            .and_then(|v| v.to_str().ok())
            .and_then(normalize_etag)
    }
}

/// Maps an HTTP error status onto [`CloudError`].
fn map_status(status: StatusCode, op: Op, path: &str, body: &str, detail: String) -> CloudError {
    let refuses_name = || {
        let b = body.to_ascii_lowercase();
        [
            "invalidpath",
            "invalid path",
            "invalid name",
            "invalid character",
            "forbidden char",
        ]
        .iter()
        .any(|k| b.contains(k))
    };
    match status.as_u16() {
        401 => CloudError::Unauthorized,
        403 if op == Op::Name && refuses_name() => {
            CloudError::InvalidName(format!("{path:?}: {detail}"))
        }
        403 => CloudError::Forbidden,
        404 => CloudError::NotFound,
        409 => CloudError::MissingParent,
        412 => CloudError::PreconditionFailed,
        413 => CloudError::ContentTooLarge,
        507 => CloudError::InsufficientStorage,
        400 | 414 | 415 if op == Op::Name => CloudError::InvalidName(format!("{path:?}: {detail}")),
        // Timeouts, locks held by someone else, rate limits: all pass by themselves.
        408 | 423 | 425 | 429 => CloudError::Unavailable {
            status: status.as_u16(),
        },
        500..=599 => CloudError::Unavailable {
            status: status.as_u16(),
        },
        s => CloudError::Status { status: s, detail },
    }
}

fn name_op_path(path: &str) -> Result<&str, CloudError> {
    check_rel_path(path)?;
    if path.is_empty() {
        return Err(CloudError::Protocol(
            "refusing to write, move or delete the cloud root itself".into(),
        ));
    }
    Ok(path)
}

#[async_trait]
impl Cloud for WebDav {
    fn url(&self) -> String {
        self.base.to_string()
    }

    fn describe(&self) -> String {
        match &self.user {
            Some(u) => format!("WebDAV {} (user {u})", self.base),
            None => format!("WebDAV {}", self.base),
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
        let url = self.url_of(path, false)?;
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
            .put_once(&url, src, if_match.as_deref(), if_none_match)
            .await?;
        // A missing parent: 409 by the standard, 404 from SabreDAV 1.8 and rclone. Create the
        // parents and send once more. Not for an update: its target existed a moment ago, so a
        // 404 there means it was deleted meanwhile.
        let missing = matches!(resp.status().as_u16(), 404 | 409);
        if missing && !matches!(cond, Precondition::IfMatch(_)) && !parent(path).is_empty() {
            self.mkdir(parent(path)).await?;
            (resp, hash) = self
                .put_once(&url, src, if_match.as_deref(), if_none_match)
                .await?;
            if matches!(resp.status().as_u16(), 404 | 409) {
                return Err(CloudError::MissingParent);
            }
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
            return Err(self.status_error(resp, Op::Name, path).await);
        }
        if let Some(tag) = Self::header_etag(&resp) {
            return Ok(Uploaded {
                etag: Some(tag),
                hash,
            });
        }
        // No ETag on the PUT answer (Apache mod_dav): ask for it. A change by someone else
        // between the PUT and this PROPFIND would be taken for ours; that window is one round
        // trip and exists only on such servers.
        Ok(Uploaded {
            etag: self.stat(path).await?.and_then(|e| e.etag),
            hash,
        })
    }

    async fn get_file(&self, path: &str, dest: &std::fs::File) -> Result<CloudEntry, CloudError> {
        let url = self.url_of(path, false)?;
        let what = format!("GET {url}");
        let mut resp = self.send(Method::GET, url, HeaderMap::new(), None).await?;
        if resp.status().as_u16() != 200 {
            return Err(self.status_error(resp, Op::Read, path).await);
        }
        let expected: Option<u64> = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let etag = Self::header_etag(&resp);
        let mtime = resp
            .headers()
            .get(header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_http_time);
        let out = dest.try_clone()?;
        out.set_len(0)?;
        let mut out = tokio::fs::File::from_std(out);
        out.seek(std::io::SeekFrom::Start(0)).await?;
        let mut got: u64 = 0;
        loop {
            let chunk = match tokio::time::timeout(self.idle_timeout, resp.chunk()).await {
                Err(_) => return Err(self.timed_out(&what)),
                Ok(Err(e)) => return Err(self.transport(&what, e)),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(c))) => c,
            };
            got += chunk.len() as u64;
            if expected.is_some_and(|n| got > n) {
                return Err(CloudError::Transport(format!(
                    "{what}: the server sent more than the {} bytes it announced",
                    expected.unwrap_or(0)
                )));
            }
            out.write_all(&chunk).await?;
        }
        if let Some(n) = expected
            && got != n
        {
            return Err(CloudError::Transport(format!(
                "{what}: the download broke off after {got} of {n} bytes"
            )));
        }
        out.flush().await?;
        out.sync_data().await?;
        drop(out);
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
        })
    }

    async fn mkdir(&self, path: &str) -> Result<(), CloudError> {
        check_rel_path(path)?;
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
        let url = self.url_of(path, false)?;
        let mut h = HeaderMap::new();
        if let Some(tag) = if_match {
            h.insert(header::IF_MATCH, Self::tag_header(&tag)?);
        }
        let resp = self.send(Method::DELETE, url, h, None).await?;
        match resp.status().as_u16() {
            // 207 means some members could not be deleted.
            207 => Err(CloudError::Status {
                status: 207,
                detail: format!("the server could not delete everything in {path}"),
            }),
            200..=299 => Ok(()),
            _ => Err(self.status_error(resp, Op::Read, path).await),
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
        let src = self.url_of(from, false)?;
        let dst = self.url_of(to, false)?;
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
            .send(
                Method::from_bytes(b"MOVE").expect("valid method"),
                src,
                h,
                None,
            )
            .await?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            401 | 412 | 413 | 507 => Err(self.status_error(resp, Op::Name, to).await),
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
                Err(self.status_error(resp, Op::Name, to).await)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn dav(url: &str) -> WebDav {
        WebDav::new(url, &CloudOptions::default()).unwrap()
    }

    fn ms(body: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="utf-8"?><d:multistatus xmlns:d="DAV:">{body}</d:multistatus>"#
        )
    }

    fn resp(href: &str, dir: bool) -> String {
        let rt = if dir { "<d:collection/>" } else { "" };
        format!(
            "<d:response><d:href>{href}</d:href><d:propstat><d:prop><d:resourcetype>{rt}</d:resourcetype>\
             <d:getcontentlength>3</d:getcontentlength><d:getetag>\"e\"</d:getetag></d:prop>\
             <d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>"
        )
    }

    #[test]
    fn hrefs_are_checked() {
        let d = dav("http://h.example:8080/dav/sub%20dir");
        assert_eq!(d.base_url(), "http://h.example:8080/dav/sub%20dir/");
        let ok = |h: &str| d.href_to_rel(h).unwrap();
        assert_eq!(ok("/dav/sub%20dir/"), "");
        assert_eq!(ok("/dav/sub dir/a%23b.txt"), "a#b.txt");
        assert_eq!(ok("http://h.example:8080/dav/sub%20dir/x/y/"), "x/y");
        assert_eq!(ok("/DAV/Sub%20Dir/x"), "x");
        assert_eq!(ok("/dav/sub%20dir/%C3%BCber%25"), "über%");
        for bad in [
            "/dav/sub%20dir/../../etc/passwd",
            "/dav/sub%20dir/a/%2e%2e/b",
            "/dav/sub%20dir/./x",
            "/dav/sub%20dir/a%2Fb",
            "/dav/sub%20dir/a%00b",
            "/dav/sub%20dir//x",
            "/dav/other/x",
            "/dav/",
            "/etc/passwd",
            "http://evil.example:8080/dav/sub%20dir/x",
            "https://h.example:8080/dav/sub%20dir/x",
            "http://h.example:9999/dav/sub%20dir/x",
            "//h.example:8080/dav/sub%20dir/x",
            "x.txt",
            "/dav/sub%20dir/x?y",
            "/dav/sub%20dir/%FF",
        ] {
            assert!(d.href_to_rel(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn parses_any_prefix_entities_and_404_propstats() {
        let xml = r#"<?xml version="1.0"?>
<X:multistatus xmlns:X="DAV:" xmlns:lp1="DAV:" xmlns:oc="http://owncloud.org/ns">
 <X:response>
  <X:href>/dav/a%20b.txt</X:href>
  <X:propstat><X:prop>
    <lp1:getetag>&quot;abc&amp;1&quot;</lp1:getetag>
    <lp1:getcontentlength> 12 </lp1:getcontentlength>
    <lp1:getlastmodified>Wed, 25 Nov 2026 22:39:14 GMT</lp1:getlastmodified>
    <lp1:resourcetype/>
    <oc:fileid>00000042oc</oc:fileid>
  </X:prop><X:status>HTTP/1.1 200 OK</X:status></X:propstat>
  <X:propstat><X:prop><X:getetag>"bogus"</X:getetag><X:resourcetype><X:collection/></X:resourcetype></X:prop>
   <X:status>HTTP/1.1 404 Not Found</X:status></X:propstat>
 </X:response>
 <X:response><X:href>/dav/gone</X:href><X:status>HTTP/1.1 404 Not Found</X:status></X:response>
 <X:response><X:href>/dav/d/</X:href><X:propstat><X:prop><X:resourcetype><X:collection/></X:resourcetype>
   <X:getetag>W/"7"</X:getetag></X:prop><X:status>HTTP/1.1 200 OK</X:status></X:propstat></X:response>
</X:multistatus>"#;
        let r = parse_multistatus(xml).unwrap();
        assert_eq!(r.len(), 3);
        let p = r[0].props.as_ref().unwrap();
        assert_eq!(p.etag.as_deref(), Some("\"abc&1\""));
        assert_eq!(p.length, Some(12));
        assert!(!p.is_dir);
        assert_eq!(p.file_id.as_deref(), Some("00000042oc"));
        assert_eq!(
            p.modified,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_646_354))
        );
        assert!(r[1].props.is_none());
        assert_eq!(r[1].status, Some(404));
        assert!(r[2].props.as_ref().unwrap().is_dir);
        let d = dav("http://h/dav");
        let l = d.sort_responses("", r).children;
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].entry.path, "a b.txt");
        assert_eq!(l[0].file_id.as_deref(), Some("00000042oc"));
        assert_eq!(l[1].entry.path, "d");
        assert_eq!(l[1].entry.etag.as_deref(), Some("W/\"7\""));
    }

    #[test]
    fn a_dav_element_in_another_namespace_is_not_dav() {
        let xml = r#"<m:multistatus xmlns:m="urn:not-dav"><m:response/></m:multistatus>"#;
        assert!(matches!(
            parse_multistatus(xml),
            Err(CloudError::Protocol(_))
        ));
        let xml = ms(
            r#"<d:response xmlns:e="urn:x"><d:href>/a</d:href><d:propstat><d:prop>
            <e:getetag>"no"</e:getetag><d:resourcetype><e:collection/></d:resourcetype></d:prop>
            <d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>"#,
        );
        let r = parse_multistatus(&xml).unwrap();
        let p = r[0].props.as_ref().unwrap();
        assert_eq!(p.etag, None);
        assert!(!p.is_dir);
        for broken in [
            "<d:multistatus xmlns:d=\"DAV:\"><d:response>",
            "not xml at all <",
            "<html><body>hi</body></html>",
        ] {
            assert!(parse_multistatus(broken).is_err(), "{broken:?}");
        }
    }

    #[test]
    fn hostile_listing_keeps_only_direct_children() {
        let d = dav("http://h/dav/root/");
        let body = ms(&[
            resp("/dav/root/f/", true),
            resp("/dav/root/f/ok.txt", false),
            resp("/dav/root/f/../../../etc/passwd", false),
            resp("/dav/root/f/a%2Fb", false),
            resp("/dav/root/f/nul%00", false),
            resp("/dav/root/f/deep/er.txt", false),
            resp("/dav/root/g/x.txt", false),
            resp("/dav/elsewhere/x.txt", false),
            resp("http://evil/dav/root/f/x.txt", false),
            resp("/dav/root/f/ok.txt", false),
            resp("/dav/root/f/%C3%A9t%C3%A9", true),
        ]
        .concat());
        let sorted = d.sort_responses("f", parse_multistatus(&body).unwrap());
        assert!(
            sorted
                .me
                .as_ref()
                .is_some_and(|m| m.entry.is_dir && m.entry.path == "f")
        );
        let l = sorted.children;
        let paths: Vec<_> = l.iter().map(|e| e.entry.path.as_str()).collect();
        assert_eq!(paths, ["f/ok.txt", "f/été"]);
        for e in &l {
            check_rel_path(&e.entry.path).unwrap();
            assert_eq!(parent(&e.entry.path), "f");
        }
        // Everything refused is counted; the duplicate is not.
        assert_eq!(sorted.skipped.len(), 7, "{:?}", sorted.skipped);
    }

    /// A member without a 2xx propstat, or with a status only, cannot be represented: it is
    /// counted as skipped, while the folder's own answer is not.
    #[test]
    fn members_without_properties_are_counted() {
        let d = dav("http://h/dav/");
        let body = ms(&[
            resp("/dav/f/", true),
            "<d:response><d:href>/dav/f/secret.txt</d:href><d:propstat><d:prop><d:getetag>\"1\"</d:getetag></d:prop>\
             <d:status>HTTP/1.1 403 Forbidden</d:status></d:propstat></d:response>"
                .to_string(),
            "<d:response><d:href>/dav/f/a</d:href><d:href>/dav/f/b</d:href>\
             <d:status>HTTP/1.1 423 Locked</d:status></d:response>"
                .to_string(),
            resp("/dav/f/ok.txt", false),
        ]
        .concat());
        let sorted = d.sort_responses("f", parse_multistatus(&body).unwrap());
        assert_eq!(sorted.children.len(), 1);
        assert_eq!(
            sorted.skipped,
            ["/dav/f/secret.txt", "/dav/f/a", "/dav/f/b"]
        );
        assert!(!sorted.gone);
    }

    #[test]
    fn etags_and_helpers() {
        assert_eq!(normalize_etag(" \"a\" ").as_deref(), Some("\"a\""));
        assert_eq!(normalize_etag("a").as_deref(), Some("\"a\""));
        assert_eq!(normalize_etag("W/\"a\"").as_deref(), Some("W/\"a\""));
        assert_eq!(normalize_etag("  "), None);
        assert_eq!(strip_weak("W/\"a\""), "\"a\"");
        assert!(is_weak("W/\"a\""));
        assert_eq!(
            strip_userinfo("https://bob:s3cret@host/x@y"),
            "https://host/x@y"
        );
        let d = dav("https://host/a b/ü/");
        assert_eq!(
            d.url_of("x y/#1?/100%/é", false).unwrap().as_str(),
            "https://host/a%20b/%C3%BC/x%20y/%231%3F/100%25/%C3%A9"
        );
        assert!(d.url_of("../x", false).is_err());
        assert_eq!(
            d.url_of("", false).unwrap().as_str(),
            "https://host/a%20b/%C3%BC/"
        );
        assert_eq!(parse_status_line("HTTP/1.1 404 Not Found"), Some(404));
    }

    #[test]
    fn secrets_never_show() {
        let opts = CloudOptions {
            user: Some("bob".into()),
            password: Some("hunter22".into()),
            ca_file: None,
        };
        let d = WebDav::new("https://host/dav/", &opts).unwrap();
        let shown = format!("{d:?} {}", d.describe());
        assert!(!shown.contains("hunter22"), "{shown}");
        assert!(!shown.contains(&d.secrets[1]), "{shown}");
        assert_eq!(d.redact("x hunter22 y"), "x <redacted> y");
        let e =
            WebDav::new("https://bob:hunter22@host/dav/", &CloudOptions::default()).unwrap_err();
        assert!(!format!("{e:#}").contains("hunter22"), "{e:#}");
        let e = WebDav::new("https://bob:hunter22@ho st/", &CloudOptions::default()).unwrap_err();
        assert!(!format!("{e:#}").contains("hunter22"), "{e:#}");
        // A user name in the URL is taken, and not shown in the base URL.
        let d = WebDav::new("https://alice@host/dav", &CloudOptions::default()).unwrap();
        assert_eq!(d.base_url(), "https://host/dav/");
        assert_eq!(d.user.as_deref(), Some("alice"));
        assert!(WebDav::new("ftp://host/", &CloudOptions::default()).is_err());
        assert!(WebDav::new("https://host/?q=1", &CloudOptions::default()).is_err());
    }

    #[test]
    fn status_mapping() {
        let m =
            |s: u16, op| map_status(StatusCode::from_u16(s).unwrap(), op, "a", "", String::new());
        assert!(matches!(m(401, Op::Read), CloudError::Unauthorized));
        assert!(matches!(m(403, Op::Name), CloudError::Forbidden));
        assert!(matches!(m(404, Op::Read), CloudError::NotFound));
        assert!(matches!(m(409, Op::Name), CloudError::MissingParent));
        assert!(matches!(m(412, Op::Name), CloudError::PreconditionFailed));
        assert!(matches!(m(413, Op::Name), CloudError::ContentTooLarge));
        assert!(matches!(m(507, Op::Name), CloudError::InsufficientStorage));
        assert!(matches!(m(400, Op::Name), CloudError::InvalidName(_)));
        assert!(matches!(m(415, Op::Name), CloudError::InvalidName(_)));
        assert!(matches!(
            m(400, Op::Read),
            CloudError::Status { status: 400, .. }
        ));
        assert!(m(503, Op::Read).is_transient());
        assert!(m(429, Op::Read).is_transient());
        assert!(!m(507, Op::Read).is_transient());
        let e = map_status(
            StatusCode::FORBIDDEN,
            Op::Name,
            "a",
            "<s:exception>Sabre\\DAV\\Exception\\InvalidPath</s:exception>",
            String::new(),
        );
        assert!(matches!(e, CloudError::InvalidName(_)));
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
