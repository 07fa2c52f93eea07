//! The body of an upload, shared by the HTTP clouds (WebDAV, S3): a local file, or one range of
//! it (a part of an S3 multipart upload), opened once, sent with an exact `Content-Length` and
//! hashed (BLAKE3) on the way, with the progress that the idle-timeout watchdog reads.
//!
//! Small files are read whole and sent from memory; larger ones stream from the file, never
//! held whole. A file that grows or shrinks while it is sent ends the upload with an error,
//! rather than sending something that is neither the old nor the new content.

use std::future::Future;
use std::io::{Read, Seek};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
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
}

/// The content hash of an upload body, computed as it is sent.
enum Hashing {
    Running(Box<blake3::Hasher>),
    /// A range of a larger file (a part of a multipart upload): it ends as the BLAKE3
    /// chaining value of that subtree of the file, which [`root_hash`] joins into the hash of
    /// the whole file.
    Subtree(Box<blake3::Hasher>),
    Done(String),
    /// The body did not go out whole.
    Broken,
}

impl Hashing {
    fn update(&mut self, chunk: &[u8]) {
        if let Hashing::Running(h) | Hashing::Subtree(h) = self {
            h.update(chunk);
        }
    }

    fn finish(&mut self) {
        use blake3::hazmat::HasherExt;
        match self {
            Hashing::Running(h) => *self = Hashing::Done(h.finalize().to_hex().to_string()),
            Hashing::Subtree(h) => *self = Hashing::Done(hex(&h.finalize_non_root())),
            Hashing::Done(_) | Hashing::Broken => {}
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
    /// multipart upload). Its hash is the chaining value of that range as a subtree of the
    /// whole file ([`subtree_cv`]): `offset` must be a multiple of the part size, a power of
    /// two of at least one BLAKE3 chunk, and `len` more than nothing. A range cut short by a
    /// file that shrank ends the upload with an error.
    pub(crate) fn range(src: &std::fs::File, offset: u64, len: u64) -> Result<Body, CloudError> {
        use blake3::hazmat::HasherExt;
        let progress = Arc::new(Progress::new());
        let changed = Arc::new(AtomicBool::new(false));
        // A file description of its own (a duplicate descriptor would share the offset with
        // the other parts in flight), of the very file `src` is, whatever its name now.
        let mut file = std::fs::File::open(format!("/proc/self/fd/{}", src.as_raw_fd()))?;
        if file.metadata()?.ino() != src.metadata()?.ino() {
            return Err(CloudError::Io(std::io::Error::other(
                "the file to upload could not be opened again",
            )));
        }
        file.seek(std::io::SeekFrom::Start(offset))?;
        let file = tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(file), len);
        let mut h = blake3::Hasher::new();
        h.set_input_offset(offset);
        let hash = Arc::new(Mutex::new(if len == 0 {
            Hashing::Broken
        } else {
            Hashing::Subtree(Box::new(h))
        }));
        let stream = UploadStream {
            inner: ReaderStream::with_capacity(file, 1 << 20),
            remaining: len,
            progress: progress.clone(),
            changed: changed.clone(),
            hash: hash.clone(),
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

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The BLAKE3 chaining value (hex) of the `len` bytes at `offset` of `f`, as a subtree of the
/// whole file: what [`Body::range`] computes on the way, for a part sent by an earlier run.
/// The same rules for `offset` and `len`.
pub(crate) fn subtree_cv(f: &std::fs::File, offset: u64, len: u64) -> std::io::Result<String> {
    use blake3::hazmat::HasherExt;
    use std::os::unix::fs::FileExt;
    let mut h = blake3::Hasher::new();
    h.set_input_offset(offset);
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0;
    while done < len {
        let want = buf.len().min((len - done) as usize);
        let n = f.read_at(&mut buf[..want], offset + done)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the local file shrank during the upload",
            ));
        }
        h.update(&buf[..n]);
        done += n as u64;
    }
    if len == 0 {
        return Err(std::io::Error::other("an empty part"));
    }
    Ok(hex(&h.finalize_non_root()))
}

/// The BLAKE3 hash (hex) of a file of `len` bytes from the chaining values (hex) of its parts
/// of `part` bytes each (the last may be shorter), in order, as [`Body::range`] and
/// [`subtree_cv`] give them. `part` is a power of two of at least one chunk (1 KiB): then
/// every part is a whole subtree of the file's BLAKE3 tree, and the tree above the parts is
/// built here as [`blake3::hash`] would. `None` for a file of one part (its hash needs its
/// bytes) or values that do not fit.
pub(crate) fn root_hash(cvs: &[String], part: u64, len: u64) -> Option<String> {
    use blake3::hazmat::{ChainingValue, Mode, left_subtree_len, merge_subtrees_non_root};
    if !part.is_power_of_two() || part < blake3::CHUNK_LEN as u64 || len <= part {
        return None;
    }
    if len.div_ceil(part) != cvs.len() as u64 {
        return None;
    }
    let parse = |s: &str| -> Option<ChainingValue> {
        let mut cv = [0u8; 32];
        if s.len() != 64 {
            return None;
        }
        for (i, b) in cv.iter_mut().enumerate() {
            *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(cv)
    };
    let cvs: Vec<ChainingValue> = cvs.iter().map(|s| parse(s)).collect::<Option<_>>()?;
    // The chaining value of the subtree of `len` bytes at `offset` (a multiple of `part`).
    fn subtree(cvs: &[ChainingValue], part: u64, offset: u64, len: u64) -> ChainingValue {
        if len <= part {
            return cvs[(offset / part) as usize];
        }
        let left = left_subtree_len(len);
        merge_subtrees_non_root(
            &subtree(cvs, part, offset, left),
            &subtree(cvs, part, offset + left, len - left),
            Mode::Hash,
        )
    }
    let left = left_subtree_len(len);
    let root = blake3::hazmat::merge_subtrees_root(
        &subtree(&cvs, part, 0, left),
        &subtree(&cvs, part, left, len - left),
        Mode::Hash,
    );
    Some(root.to_hex().to_string())
}

#[cfg(test)]
mod tree_tests {
    use super::*;
    use proptest::prelude::*;

    fn parts_root(data: &[u8], part: u64) -> Option<String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, data).unwrap();
        let f = std::fs::File::open(&p).unwrap();
        let len = data.len() as u64;
        let cvs: Vec<String> = (0..len.div_ceil(part))
            .map(|i| subtree_cv(&f, i * part, part.min(len - i * part)).unwrap())
            .collect();
        root_hash(&cvs, part, len)
    }

    #[test]
    fn parts_join_into_the_hash_of_the_whole_file() {
        for part in [1024u64, 2048, 8192] {
            for len in [
                part + 1,
                2 * part,
                2 * part + 1,
                3 * part,
                5 * part - 7,
                8 * part,
                9 * part + 1,
            ] {
                let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
                assert_eq!(
                    parts_root(&data, part).as_deref(),
                    Some(blake3::hash(&data).to_hex().as_str()),
                    "part {part}, len {len}"
                );
            }
        }
    }

    #[test]
    fn what_cannot_be_joined_is_refused() {
        assert_eq!(root_hash(&[], 1000, 5000), None, "not a power of two");
        assert_eq!(root_hash(&["00".repeat(32)], 1024, 1000), None, "one part");
        assert_eq!(
            root_hash(&["00".repeat(32)], 1024, 3000),
            None,
            "too few values"
        );
        assert_eq!(
            root_hash(&["zz".repeat(32), "00".repeat(32)], 1024, 2000),
            None
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_length_and_part_size(len in 1025u64..40_000, shift in 10u32..14, seed in any::<u8>()) {
            let part = 1u64 << shift;
            prop_assume!(len > part);
            let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed | 1).wrapping_add(seed)).collect();
            prop_assert_eq!(parts_root(&data, part), Some(blake3::hash(&data).to_hex().to_string()));
        }
    }
}
