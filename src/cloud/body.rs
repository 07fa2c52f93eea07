//! The body of an upload, shared by the HTTP clouds (WebDAV, S3): a local file, or one range of
//! it (a part of an S3 multipart upload), opened once, sent with an exact `Content-Length` and
//! hashed (BLAKE3) on the way, with the progress that the idle-timeout watchdog reads.
//!
//! Small files are read whole and sent from memory; larger ones stream from the file, never
//! held whole. A file that grows or shrinks while it is sent ends the upload with an error,
//! rather than sending something that is neither the old nor the new content.

use std::future::Future;
use std::io::{Read, Seek};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::Stream;
use tokio_util::bytes::Bytes;
use tokio_util::io::ReaderStream;

use crate::cloud::CloudError;

/// After the last byte of an upload, servers may take a while (assembling, scanning) before
/// they answer; they get this many idle timeouts.
const AFTER_UPLOAD_FACTOR: u32 = 5;

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
pub(crate) struct Progress {
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
    inner: ReaderStream<tokio::io::Take<tokio::fs::File>>,
    remaining: u64,
    progress: Arc<Progress>,
    changed: Arc<AtomicBool>,
    /// The hash of the bytes sent so far; the finished hash once the whole file went.
    hash: Arc<Mutex<Hashing>>,
    /// A hash over more than this body (the whole file of a multipart upload), fed too.
    outer: Option<Arc<Mutex<blake3::Hasher>>>,
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
                if let Some(o) = &this.outer {
                    o.lock().unwrap_or_else(|e| e.into_inner()).update(&chunk);
                }
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
pub(crate) async fn watchdog<F: Future>(
    fut: F,
    progress: &Progress,
    idle: Duration,
) -> Option<F::Output> {
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

/// An upload body, ready to send: the request takes [`Body::body`], and the rest tells how
/// the sending went.
pub(crate) struct Body {
    /// Its exact length.
    pub(crate) len: u64,
    /// What goes to the server.
    pub(crate) body: reqwest::Body,
    /// When a byte last went out, for the watchdog.
    pub(crate) progress: Arc<Progress>,
    /// Whether the local file grew or shrank while it was sent, and the hash of what went.
    pub(crate) sent: Sent,
}

impl Body {
    /// Opens `src` (from its start) as a body. A small file (most are) is read and hashed right
    /// here: a trip to the blocking pool and back costs more than that read. Larger files
    /// stream from the pool. `what` names the upload in errors.
    pub(crate) fn open(src: &std::fs::File, what: &str) -> Result<Body, CloudError> {
        let progress = Arc::new(Progress::new());
        let changed = Arc::new(AtomicBool::new(false));
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
                    format!("{what} changed size while it was read; it will be sent again"),
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
                // One byte more than expected is asked for, so that growth shows.
                let file = tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(file), len + 1);
                let stream = UploadStream {
                    inner: ReaderStream::with_capacity(file, 1 << 20),
                    remaining: len,
                    progress: progress.clone(),
                    changed: changed.clone(),
                    hash: hash.clone(),
                    outer: None,
                };
                (len, hash, reqwest::Body::wrap_stream(stream))
            }
        };
        Ok(Body {
            len,
            body,
            progress,
            sent: Sent { changed, hash },
        })
    }
}

impl Body {
    /// Opens the `len` bytes of `src` from `offset` as a body that streams (one part of a
    /// multipart upload), feeding `outer` as well as its own hash. A range cut short by a file
    /// that shrank ends the upload with an error.
    pub(crate) fn range(
        src: &std::fs::File,
        offset: u64,
        len: u64,
        outer: Option<Arc<Mutex<blake3::Hasher>>>,
    ) -> Result<Body, CloudError> {
        let progress = Arc::new(Progress::new());
        let changed = Arc::new(AtomicBool::new(false));
        let mut file = src.try_clone()?;
        file.seek(std::io::SeekFrom::Start(offset))?;
        let file = tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(file), len);
        let hash = Arc::new(Mutex::new(Hashing::Running(
            Box::new(blake3::Hasher::new()),
        )));
        if len == 0 {
            hash.lock().unwrap_or_else(|e| e.into_inner()).finish();
            progress.done.store(true, Ordering::Relaxed);
        }
        let stream = UploadStream {
            inner: ReaderStream::with_capacity(file, 1 << 20),
            remaining: len,
            progress: progress.clone(),
            changed: changed.clone(),
            hash: hash.clone(),
            outer,
        };
        Ok(Body {
            len,
            body: reqwest::Body::wrap_stream(stream),
            progress,
            sent: Sent { changed, hash },
        })
    }
}

/// How the sending of a [`Body`] went.
pub(crate) struct Sent {
    changed: Arc<AtomicBool>,
    hash: Arc<Mutex<Hashing>>,
}

impl Sent {
    /// True when the local file grew or shrank while it was sent.
    pub(crate) fn changed(&self) -> bool {
        self.changed.load(Ordering::Relaxed)
    }

    /// The BLAKE3 hash (hex) of the body, when all of it was sent.
    pub(crate) fn hash(&self) -> Option<String> {
        match &*self.hash.lock().unwrap_or_else(|e| e.into_inner()) {
            Hashing::Done(h) => Some(h.clone()),
            _ => None,
        }
    }
}
