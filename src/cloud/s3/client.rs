//! The HTTP side of the S3 cloud: SigV4 signing (rusty-s3, sans-IO) over the project's reqwest
//! client, the requests the cloud sends (HEAD, GET, PUT, DELETE, CopyObject, ListObjectsV2,
//! the multipart calls), and the mapping of S3 error answers onto [`CloudError`].
//!
//! It knows nothing of folders, conditions or moves: those are in the `Cloud` implementation
//! beside it. What it guarantees: every request is signed just before it is sent (a presigned
//! URL, with the payload unsigned, so a body streams without being read twice); the signed URL
//! carries the signature, so no URL ever reaches a message or a log (errors name the key);
//! the secret key and session token are redacted from quoted server text; there is no total
//! timeout but an idle timeout that any progress resets; every answer is read up to a cap.

use std::time::{Duration, SystemTime};

use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use rusty_s3::actions::{
    AbortMultipartUpload, CompleteMultipartUpload, CompleteMultipartUploadResponse,
    CreateMultipartUpload, DeleteObject, GetObject, HeadObject, ListObjectsV2,
    ListObjectsV2Response, PutObject, UploadPart,
};
use rusty_s3::{Bucket, Credentials, S3Action};
use tokio_util::bytes::Bytes;
use url::Url;

use crate::cloud::CloudError;
use crate::cloud::body::{Body, watchdog};

/// How long a signed request stays valid. It is signed right before it is sent, and servers
/// check the time when the request arrives, so a long upload is fine.
const SIGNED_FOR: Duration = Duration::from_secs(3600);

/// Default idle timeout: no byte moved for this long means the connection is dead.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest listing page, multipart answer or error body read. A page of 1000 keys of 1 KiB
/// each is well below.
const MAX_ANSWER: usize = 16 << 20;

/// How much of an error answer is read for its code and message.
const MAX_ERROR_BODY: usize = 8 << 10;

/// What an S3 error answer says.
#[derive(Debug, Default)]
pub(super) struct S3Error {
    pub(super) code: String,
    pub(super) message: String,
}

impl S3Error {
    /// The `Code` and `Message` of an S3 `<Error>` document, if `body` is one.
    pub(super) fn parse(body: &str) -> Option<S3Error> {
        let tag = |name: &str| {
            let open = format!("<{name}>");
            let i = body.find(&open)? + open.len();
            let j = body[i..].find('<')? + i;
            Some(body[i..j].trim().to_string())
        };
        body.contains("<Error")
            .then(|| S3Error {
                code: tag("Code").unwrap_or_default(),
                message: tag("Message").unwrap_or_default(),
            })
            .filter(|e| !e.code.is_empty())
    }
}

/// What a HEAD of an object tells.
#[derive(Debug, Clone)]
pub(super) struct Head {
    pub(super) etag: Option<String>,
    pub(super) size: u64,
    pub(super) mtime: Option<SystemTime>,
}

/// The HTTP client of one bucket.
pub(super) struct Client {
    http: reqwest::Client,
    pub(super) bucket: Bucket,
    creds: Option<Credentials>,
    /// Strings that must never appear in messages (the secret key, the session token).
    secrets: Vec<String>,
    pub(super) idle_timeout: Duration,
}

/// A conditional header for a write.
#[derive(Debug, Clone, Copy)]
pub(super) enum Cond<'a> {
    None,
    IfMatch(&'a str),
    IfNoneMatch,
}

impl Client {
    pub(super) fn new(
        bucket: Bucket,
        creds: Option<Credentials>,
        ca_file: Option<&std::path::Path>,
    ) -> anyhow::Result<Client> {
        let http = crate::cloud::http::builder(ca_file)?
            .build()
            .map_err(|e| anyhow::anyhow!("cannot set up the HTTP client: {e}"))?;
        let secrets = creds
            .iter()
            .flat_map(|c| [Some(c.secret().to_string()), c.token().map(str::to_string)])
            .flatten()
            .filter(|s| !s.is_empty())
            .collect();
        Ok(Client {
            http,
            bucket,
            creds,
            secrets,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        })
    }

    pub(super) fn creds(&self) -> Option<&Credentials> {
        self.creds.as_ref()
    }

    /// Replaces every secret in `s`.
    fn redact(&self, s: &str) -> String {
        crate::cloud::http::redact(&self.secrets, s)
    }

    /// A transport error with its cause chain, never with the signed URL.
    pub(super) fn transport(&self, what: &str, e: reqwest::Error) -> CloudError {
        crate::cloud::http::transport_error(what, e, "store", &self.secrets)
    }

    pub(super) fn timed_out(&self, what: &str) -> CloudError {
        crate::cloud::http::timed_out(what, "store", self.idle_timeout)
    }

    /// Sends a request with a small body (or none) to a signed URL.
    pub(super) async fn send(
        &self,
        what: &str,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<reqwest::Response, CloudError> {
        let mut rb = self.http.request(method, url).headers(headers);
        if let Some(b) = body {
            rb = rb.header(header::CONTENT_LENGTH, b.len()).body(b);
        }
        match tokio::time::timeout(self.idle_timeout, rb.send()).await {
            Err(_) => Err(self.timed_out(what)),
            Ok(Err(e)) => Err(self.transport(what, e)),
            Ok(Ok(r)) => Ok(r),
        }
    }

    /// Reads a body, at most `cap` bytes, with the idle timeout on every chunk.
    pub(super) async fn read_capped(
        &self,
        what: &str,
        mut resp: reqwest::Response,
        cap: usize,
    ) -> Result<Vec<u8>, CloudError> {
        let too_big =
            || CloudError::Protocol(format!("{what}: the answer is larger than {cap} bytes"));
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

    /// Maps an error answer onto [`CloudError`], reading a little of its body for the S3 code.
    pub(super) async fn error(&self, resp: reqwest::Response, key: &str) -> CloudError {
        let status = resp.status();
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
        let body = String::from_utf8_lossy(&buf);
        let err = S3Error::parse(&body).unwrap_or_default();
        map_error(status, &err, &self.redact(key), &self.redact(&err.message))
    }

    fn signed<'a>(&self, action: impl S3Action<'a>) -> Url {
        action.sign(SIGNED_FOR)
    }

    /// HEAD of `key`; `None` when there is no such object.
    pub(super) async fn head(&self, key: &str) -> Result<Option<Head>, CloudError> {
        let url = self.signed(HeadObject::new(&self.bucket, self.creds(), key));
        let what = format!("HEAD {key}");
        let resp = self
            .send(&what, Method::HEAD, url, HeaderMap::new(), None)
            .await?;
        match resp.status().as_u16() {
            200 => Ok(Some(Head {
                etag: header_etag(resp.headers()),
                // Not `content_length()`: the answer to a HEAD has no body, so that is 0.
                size: resp
                    .headers()
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0),
                mtime: last_modified(resp.headers()),
            })),
            404 => Ok(None),
            _ => Err(self.error(resp, key).await),
        }
    }

    /// One page of ListObjectsV2 under `prefix`, grouped at `/` when `delimited`, from the
    /// first key after `start_after` when given, with keys URL-encoded on the way when `encode`.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn list_page(
        &self,
        prefix: &str,
        delimited: bool,
        start_after: Option<&str>,
        token: Option<&str>,
        max_keys: Option<usize>,
        encode: bool,
    ) -> Result<ListObjectsV2Response, CloudError> {
        let mut action = ListObjectsV2::new(&self.bucket, self.creds());
        if !encode {
            action.query_mut().remove("encoding-type");
        }
        action.with_prefix(prefix);
        if delimited {
            action.with_delimiter("/");
        }
        if let Some(a) = start_after {
            action.with_start_after(a);
        }
        if let Some(t) = token {
            action.with_continuation_token(t);
        }
        if let Some(n) = max_keys {
            action.with_max_keys(n);
        }
        let url = self.signed(action);
        let what = format!("ListObjectsV2 {prefix}");
        let resp = self
            .send(&what, Method::GET, url, HeaderMap::new(), None)
            .await?;
        if resp.status() != StatusCode::OK {
            return Err(self.error(resp, prefix).await);
        }
        let body = self.read_capped(&what, resp, MAX_ANSWER).await?;
        let text = std::str::from_utf8(&body)
            .map_err(|_| CloudError::Protocol(format!("{what}: the answer is not UTF-8")))?;
        ListObjectsV2::parse_response(text)
            .map_err(|e| CloudError::Protocol(format!("{what}: cannot read the listing: {e}")))
    }

    fn cond_headers(h: &mut HeaderMap, cond: Cond<'_>) -> Result<(), CloudError> {
        match cond {
            Cond::None => {}
            Cond::IfNoneMatch => {
                h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
            }
            Cond::IfMatch(tag) => {
                h.insert(header::IF_MATCH, tag_header(tag)?);
            }
        }
        Ok(())
    }

    /// A PUT of small, in-memory content (a folder marker, a probe).
    pub(super) async fn put_small(
        &self,
        key: &str,
        data: &'static [u8],
        cond: Cond<'_>,
    ) -> Result<reqwest::Response, CloudError> {
        let url = self.signed(PutObject::new(&self.bucket, self.creds(), key));
        let mut h = HeaderMap::new();
        Self::cond_headers(&mut h, cond)?;
        self.send(
            &format!("PUT {key}"),
            Method::PUT,
            url,
            h,
            Some(Bytes::from_static(data)),
        )
        .await
    }

    /// Sends a streamed body to a signed URL; returns the answer and the hash of what went.
    async fn put_body(
        &self,
        what: &str,
        url: Url,
        mut h: HeaderMap,
        body: Body,
    ) -> Result<(reqwest::Response, Option<String>), CloudError> {
        let Body {
            len,
            body,
            progress,
            sent,
        } = body;
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        let rb = self.http.request(Method::PUT, url).headers(h).body(body);
        match watchdog(rb.send(), &progress, self.idle_timeout).await {
            None => Err(self.timed_out(what)),
            Some(Err(_)) if sent.changed() => Err(CloudError::Io(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                format!(
                    "{what}: the local file changed size during the upload; it will be sent again"
                ),
            ))),
            Some(Err(e)) => Err(self.transport(what, e)),
            Some(Ok(r)) => Ok((r, sent.hash())),
        }
    }

    /// A PutObject of the whole local file, streamed.
    pub(super) async fn put_file(
        &self,
        key: &str,
        src: &std::fs::File,
        cond: Cond<'_>,
    ) -> Result<(reqwest::Response, Option<String>), CloudError> {
        let what = format!("PUT {key}");
        let body = Body::open(src, key)?;
        let url = self.signed(PutObject::new(&self.bucket, self.creds(), key));
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        Self::cond_headers(&mut h, cond)?;
        self.put_body(&what, url, h, body).await
    }

    /// GET of `key`: the answer, whatever its status.
    pub(super) async fn get(&self, key: &str) -> Result<reqwest::Response, CloudError> {
        let url = self.signed(GetObject::new(&self.bucket, self.creds(), key));
        self.send(
            &format!("GET {key}"),
            Method::GET,
            url,
            HeaderMap::new(),
            None,
        )
        .await
    }

    /// DELETE of `key`. A missing key is fine on S3 (204), so it is not an error here.
    pub(super) async fn delete(&self, key: &str) -> Result<(), CloudError> {
        self.delete_if(key, None).await
    }

    /// DELETE of `key` with `If-Match: etag` when given (honoured by SeaweedFS and moto,
    /// ignored by s3s-fs; a 412 is `PreconditionFailed`).
    pub(super) async fn delete_if(&self, key: &str, etag: Option<&str>) -> Result<(), CloudError> {
        let url = self.signed(DeleteObject::new(&self.bucket, self.creds(), key));
        let mut h = HeaderMap::new();
        if let Some(t) = etag {
            h.insert(header::IF_MATCH, tag_header(t)?);
        }
        let resp = self
            .send(&format!("DELETE {key}"), Method::DELETE, url, h, None)
            .await?;
        if resp.status().is_success() || resp.status() == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(self.error(resp, key).await)
        }
    }

    /// CopyObject of `from` to `to`, only while `from` still carries `etag` (when given), and
    /// with `If-None-Match: *` for the target (honoured by SeaweedFS; moto and s3s-fs ignore
    /// it, so the caller checks the target first). Returns the ETag of the copy. rusty-s3 has
    /// no CopyObject, so the PUT is signed here with its `x-amz-copy-source` headers.
    pub(super) async fn copy(
        &self,
        from: &str,
        to: &str,
        etag: Option<&str>,
    ) -> Result<Option<String>, CloudError> {
        let source = format!(
            "/{}/{}",
            self.bucket.name(),
            percent_encoding::utf8_percent_encode(from, KEY_IN_HEADER)
        );
        let mut action = PutObject::new(&self.bucket, self.creds(), to);
        action
            .headers_mut()
            .insert("x-amz-copy-source", source.clone());
        if let Some(t) = etag {
            action
                .headers_mut()
                .insert("x-amz-copy-source-if-match", t.to_string());
        }
        let url = self.signed(action);
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        h.insert(
            HeaderName::from_static("x-amz-copy-source"),
            HeaderValue::from_str(&source)
                .map_err(|_| CloudError::Protocol(format!("cannot name {from:?} in a copy")))?,
        );
        if let Some(t) = etag {
            h.insert(
                HeaderName::from_static("x-amz-copy-source-if-match"),
                tag_header(t)?,
            );
        }
        let what = format!("CopyObject {from} -> {to}");
        let resp = self
            .send(&what, Method::PUT, url, h, Some(Bytes::new()))
            .await?;
        if !resp.status().is_success() {
            return Err(self.error(resp, to).await);
        }
        // A copy may fail after the 200 has gone out: the body then holds an <Error>.
        let body = self.read_capped(&what, resp, MAX_ANSWER).await?;
        let text = String::from_utf8_lossy(&body);
        if let Some(e) = S3Error::parse(&text) {
            return Err(map_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &e,
                to,
                &self.redact(&e.message),
            ));
        }
        Ok(xml_tag(&text, "ETag").and_then(|t| normalize_etag(&t)))
    }

    /// CreateMultipartUpload of `key`: the upload id.
    pub(super) async fn create_multipart(&self, key: &str) -> Result<String, CloudError> {
        let url = self.signed(CreateMultipartUpload::new(&self.bucket, self.creds(), key));
        let what = format!("CreateMultipartUpload {key}");
        let resp = self
            .send(&what, Method::POST, url, HeaderMap::new(), None)
            .await?;
        if !resp.status().is_success() {
            return Err(self.error(resp, key).await);
        }
        let body = self.read_capped(&what, resp, MAX_ANSWER).await?;
        let text = String::from_utf8_lossy(&body);
        CreateMultipartUpload::parse_response(&text)
            .map(|r| r.upload_id().to_string())
            .map_err(|e| CloudError::Protocol(format!("{what}: cannot read the answer: {e}")))
    }

    /// UploadPart `number` of `upload_id` from `body`: the part's ETag and the hash of what
    /// went.
    pub(super) async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u16,
        body: Body,
    ) -> Result<(String, Option<String>), CloudError> {
        let url = self.signed(UploadPart::new(
            &self.bucket,
            self.creds(),
            key,
            number,
            upload_id,
        ));
        let what = format!("UploadPart {key} #{number}");
        let (resp, hash) = self.put_body(&what, url, HeaderMap::new(), body).await?;
        if !resp.status().is_success() {
            return Err(self.error(resp, key).await);
        }
        let etag = header_etag(resp.headers()).ok_or_else(|| {
            CloudError::Protocol(format!("{what}: the store answered without an ETag"))
        })?;
        Ok((etag, hash))
    }

    /// CompleteMultipartUpload under `cond`: the ETag of the object.
    pub(super) async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        etags: &[String],
        cond: Cond<'_>,
    ) -> Result<Option<String>, CloudError> {
        let action = CompleteMultipartUpload::new(
            &self.bucket,
            self.creds(),
            key,
            upload_id,
            etags.iter().map(String::as_str),
        );
        let url = self.signed(action.clone());
        let body = action.body();
        let mut h = HeaderMap::new();
        Self::cond_headers(&mut h, cond)?;
        let what = format!("CompleteMultipartUpload {key}");
        let resp = self
            .send(&what, Method::POST, url, h, Some(Bytes::from(body)))
            .await?;
        if !resp.status().is_success() {
            return Err(self.error(resp, key).await);
        }
        let head_tag = header_etag(resp.headers());
        let body = self.read_capped(&what, resp, MAX_ANSWER).await?;
        let text = String::from_utf8_lossy(&body);
        if let Some(e) = S3Error::parse(&text) {
            return Err(map_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &e,
                key,
                &self.redact(&e.message),
            ));
        }
        Ok(CompleteMultipartUploadResponse::parse(&text)
            .ok()
            .and_then(|r| normalize_etag(r.etag()))
            .or(head_tag))
    }

    /// AbortMultipartUpload; an upload that is gone already is fine.
    pub(super) async fn abort_multipart(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<(), CloudError> {
        let url = self.signed(AbortMultipartUpload::new(
            &self.bucket,
            self.creds(),
            key,
            upload_id,
        ));
        let resp = self
            .send(
                &format!("AbortMultipartUpload {key}"),
                Method::DELETE,
                url,
                HeaderMap::new(),
                None,
            )
            .await?;
        if resp.status().is_success() || resp.status() == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(self.error(resp, key).await)
        }
    }
}

/// What of a key is percent-encoded in `x-amz-copy-source`: everything but unreserved
/// characters and `/`.
const KEY_IN_HEADER: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// The text of the first `<name>` element of `xml`, unescaped for the usual entities.
fn xml_tag(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let i = xml.find(&open)? + open.len();
    let j = xml[i..].find('<')? + i;
    Some(
        xml[i..j]
            .replace("&quot;", "\"")
            .replace("&#34;", "\"")
            .replace("&amp;", "&"),
    )
}

/// An ETag as the store gave it, quoted (S3 tags are strong); `None` when empty.
pub(super) fn normalize_etag(raw: &str) -> Option<String> {
    let t = raw.trim();
    if t.is_empty() || t == "\"\"" {
        return None;
    }
    if t.starts_with('"') || t.starts_with("W/") {
        Some(t.to_string())
    } else {
        Some(format!("\"{t}\""))
    }
}

/// The ETag header of an answer.
pub(super) fn header_etag(h: &HeaderMap) -> Option<String> {
    h.get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .and_then(normalize_etag)
}

fn last_modified(h: &HeaderMap) -> Option<SystemTime> {
    h.get(header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
}

/// An ETag as a header value; a tag that cannot be sent is an error, never a write without it.
fn tag_header(tag: &str) -> Result<HeaderValue, CloudError> {
    HeaderValue::from_str(tag).map_err(|_| {
        CloudError::Protocol(format!(
            "the store's ETag {tag:?} cannot be sent back in If-Match; nothing is written without it"
        ))
    })
}

/// Maps an S3 error answer (status and `<Code>`) onto [`CloudError`].
pub(super) fn map_error(status: StatusCode, e: &S3Error, key: &str, message: &str) -> CloudError {
    let detail = || {
        let mut d = if e.code.is_empty() {
            status.canonical_reason().unwrap_or("no detail").to_string()
        } else {
            e.code.clone()
        };
        if !message.is_empty() {
            d.push_str(": ");
            d.extend(message.chars().filter(|c| !c.is_control()).take(200));
        }
        d
    };
    match e.code.as_str() {
        "AccessDenied" | "AllAccessDisabled" | "AccountProblem" => return CloudError::Forbidden,
        "InvalidAccessKeyId"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "InvalidToken"
        | "TokenRefreshRequired"
        | "InvalidSecurity"
        | "AuthorizationHeaderMalformed"
        | "AuthorizationQueryParametersError"
        | "RequestTimeTooSkewed"
        | "MissingSecurityHeader"
        | "CredentialsNotSupported" => return CloudError::Unauthorized,
        "EntityTooLarge" | "MaxMessageLengthExceeded" => return CloudError::ContentTooLarge,
        "QuotaExceeded"
        | "StorageQuotaExceeded"
        | "XMinioStorageFull"
        | "InsufficientStorage"
        | "QuotaLimitReached" => return CloudError::InsufficientStorage,
        "KeyTooLongError" | "InvalidObjectName" | "XMinioInvalidObjectName" => {
            return CloudError::InvalidName(format!("{key:?}: {}", detail()));
        }
        "PreconditionFailed" => return CloudError::PreconditionFailed,
        "NoSuchKey" | "NoSuchUpload" => return CloudError::NotFound,
        "NoSuchBucket" => {
            return CloudError::Status {
                status: 404,
                detail: detail(),
            };
        }
        "SlowDown"
        | "ServiceUnavailable"
        | "InternalError"
        | "RequestTimeout"
        | "OperationAborted"
        | "ConditionalRequestConflict"
        | "Throttling"
        | "ThrottlingException" => {
            return CloudError::Unavailable {
                status: status.as_u16(),
            };
        }
        c if c.to_ascii_lowercase().contains("quota") => return CloudError::InsufficientStorage,
        _ => {}
    }
    match status.as_u16() {
        401 => CloudError::Unauthorized,
        403 => CloudError::Forbidden,
        404 => CloudError::NotFound,
        412 => CloudError::PreconditionFailed,
        413 => CloudError::ContentTooLarge,
        507 => CloudError::InsufficientStorage,
        408 | 425 | 429 | 500..=599 => CloudError::Unavailable {
            status: status.as_u16(),
        },
        s => CloudError::Status {
            status: s,
            detail: detail(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(status: u16, code: &str) -> CloudError {
        let e = S3Error {
            code: code.into(),
            message: String::new(),
        };
        map_error(StatusCode::from_u16(status).unwrap(), &e, "k", "")
    }

    #[test]
    fn error_codes() {
        assert!(matches!(m(403, "AccessDenied"), CloudError::Forbidden));
        assert!(matches!(
            m(403, "SignatureDoesNotMatch"),
            CloudError::Unauthorized
        ));
        assert!(matches!(
            m(403, "InvalidAccessKeyId"),
            CloudError::Unauthorized
        ));
        assert!(matches!(
            m(400, "EntityTooLarge"),
            CloudError::ContentTooLarge
        ));
        assert!(matches!(
            m(403, "QuotaExceeded"),
            CloudError::InsufficientStorage
        ));
        assert!(m(503, "SlowDown").is_transient());
        assert!(m(500, "").is_transient());
        assert!(m(400, "RequestTimeout").is_transient());
        assert!(!m(403, "SignatureDoesNotMatch").is_transient());
        assert!(matches!(m(412, ""), CloudError::PreconditionFailed));
        assert!(matches!(m(404, "NoSuchKey"), CloudError::NotFound));
        assert!(matches!(
            m(400, "KeyTooLongError"),
            CloudError::InvalidName(_)
        ));
        assert!(matches!(
            m(400, "Whatever"),
            CloudError::Status { status: 400, .. }
        ));
    }

    #[test]
    fn error_documents() {
        let e = S3Error::parse(
            "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>",
        )
        .unwrap();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("SlowDown", "Reduce your rate")
        );
        assert!(S3Error::parse("<ListBucketResult/>").is_none());
        assert_eq!(normalize_etag("abc").as_deref(), Some("\"abc\""));
        assert_eq!(normalize_etag("\"abc\"").as_deref(), Some("\"abc\""));
        assert_eq!(normalize_etag(""), None);
    }
}
