//! The HTTP side of the WebDAV cloud: one `reqwest` client with Basic auth, TLS roots and
//! timeouts, the requests it sends (small replayable ones, PROPFIND, a streamed PUT), and the
//! mapping of HTTP answers onto [`CloudError`].
//!
//! It knows nothing of the sync semantics (conditions, parents, moves): those are in the
//! `Cloud` implementation beside it. What it guarantees: the password is only ever inside a
//! sensitive `Authorization` header, text quoted from server answers is redacted, there is no
//! total timeout but an idle timeout that any progress resets, and every answer is read only
//! up to a cap.

use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use url::Url;

use super::parse::{PROPFIND_BODY, RawResponse, normalize_etag, parse_multistatus};
use crate::cloud::CloudError;
use crate::cloud::CloudOptions;
use crate::cloud::body::{Body, watchdog};

/// The largest PROPFIND answer accepted. At the few hundred bytes an entry takes, a Depth-1
/// listing of some hundred thousand items fits; anything bigger is treated as a broken or
/// hostile server.
pub const MAX_PROPFIND_BYTES: usize = 64 << 20;

/// Default idle timeout: no byte moved in either direction for this long means the connection
/// is dead. Any progress resets it, so a 1 GiB upload over a slow link is fine.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How much of an error answer is read for its detail text.
const MAX_ERROR_BODY: usize = 8 << 10;

/// What a request does with names, for mapping 400-class answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    /// Reads (PROPFIND, GET): a 400 is a plain error.
    Read,
    /// Creates or changes a name (PUT, MKCOL, MOVE): a 400 means the name was refused.
    Name,
}

/// The HTTP client of one WebDAV server.
pub(super) struct Client {
    http: reqwest::Client,
    /// The `Authorization` header, marked sensitive.
    pub(super) auth: Option<HeaderValue>,
    /// The user name, for `describe`.
    pub(super) user: Option<String>,
    /// Strings that must never appear in messages (the password and its Basic form).
    pub(super) secrets: Vec<String>,
    pub(super) idle_timeout: Duration,
    pub(super) max_propfind_bytes: usize,
}

/// Removes `user:password@` from a URL-like string, for messages about URLs that did not parse.
pub(super) fn strip_userinfo(s: &str) -> String {
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

impl Client {
    /// A client with the credentials and CA of `opts`; `url_user` is the user name the cloud
    /// URL carried, used when `opts` has none.
    pub(super) fn new(opts: &CloudOptions, url_user: String) -> anyhow::Result<Client> {
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

        let builder = crate::cloud::http::builder(opts.ca_file.as_deref())?;
        let http = builder
            .build()
            .map_err(|e| anyhow::anyhow!("cannot set up the HTTP client: {e}"))?;
        Ok(Client {
            http,
            auth,
            user,
            secrets,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_propfind_bytes: MAX_PROPFIND_BYTES,
        })
    }

    /// Replaces every secret in `s`.
    pub(super) fn redact(&self, s: &str) -> String {
        crate::cloud::http::redact(&self.secrets, s)
    }

    /// A transport error with its whole cause chain, never with credentials.
    pub(super) fn transport(&self, what: &str, e: reqwest::Error) -> CloudError {
        crate::cloud::http::transport_error(what, e, "server", &self.secrets)
    }

    pub(super) fn timed_out(&self, what: &str) -> CloudError {
        crate::cloud::http::timed_out(what, "server", self.idle_timeout)
    }

    /// A request builder with auth and the given headers.
    pub(super) fn request(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
    ) -> reqwest::RequestBuilder {
        let mut rb = self.http.request(method, url).headers(headers);
        if let Some(a) = &self.auth {
            rb = rb.header(header::AUTHORIZATION, a.clone());
        }
        rb
    }

    /// Sends a request whose body is small and can be replayed. Follows one redirect that only
    /// adds a trailing slash to the URL.
    pub(super) async fn send(
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
    pub(super) async fn read_capped(
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
    pub(super) async fn status_error(
        &self,
        resp: reqwest::Response,
        op: Op,
        path: &str,
    ) -> CloudError {
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

    /// PROPFIND of `url` at `depth` (0 or 1); `None` when the item does not exist. `path` names
    /// the item in errors.
    pub(super) async fn propfind(
        &self,
        url: Url,
        path: &str,
        depth: u8,
    ) -> Result<Option<Vec<RawResponse>>, CloudError> {
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

    /// An ETag as a header value. A tag that cannot be sent (a hostile or broken server's) is an
    /// error: the write would otherwise go without its condition.
    pub(super) fn tag_header(tag: &str) -> Result<HeaderValue, CloudError> {
        HeaderValue::from_str(tag).map_err(|_| {
            CloudError::Protocol(format!(
                "the server's ETag {tag:?} cannot be sent back in If-Match; nothing is written without it"
            ))
        })
    }

    /// One PUT of the local file. Returns the answer, whatever its status, and the BLAKE3 hash
    /// of the body when all of it was sent.
    pub(super) async fn put(
        &self,
        url: &Url,
        src: &std::fs::File,
        if_match: Option<&str>,
        if_none_match: bool,
    ) -> Result<(reqwest::Response, Option<String>), CloudError> {
        let what = format!("PUT {url}");
        let Body {
            len,
            body,
            progress,
            sent,
        } = Body::open(src, url.as_str())?;
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
            Some(Err(_)) if sent.changed() => Err(CloudError::Io(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                format!("{url} changed size during the upload; it will be sent again"),
            ))),
            Some(Err(e)) => Err(self.transport(&what, e)),
            Some(Ok(r)) => Ok((r, sent.hash())),
        }
    }

    /// The ETag a response header carries (`ETag`, or `OC-ETag` which some servers add).
    pub(super) fn header_etag(resp: &reqwest::Response) -> Option<String> {
        let h = resp.headers();
        h.get(header::ETAG)
            .or_else(|| h.get("oc-etag"))
            .and_then(|v| v.to_str().ok())
            .and_then(normalize_etag)
    }
}

/// Maps an HTTP error status onto [`CloudError`].
pub(super) fn map_status(
    status: StatusCode,
    op: Op,
    path: &str,
    body: &str,
    detail: String,
) -> CloudError {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
