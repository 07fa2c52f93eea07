//! The WebDAV cloud against real servers: SabreDAV (plain, with Nextcloud-style folder ETags,
//! and behind Basic auth), Apache `mod_dav` and `rclone serve webdav`, plus a fault-injecting
//! proxy for transport trouble. Every test starts its own servers on free loopback ports, so
//! the tests run in parallel and leave nothing behind.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cloudsync::cloud::webdav::WebDav;
use cloudsync::cloud::{Cloud, CloudError, Precondition};
use cloudsync::config::CloudOptions;
use support::proxy::{Fault, FaultProxy};
use support::webdav::{DavServer, Profile};

/// The synced root used inside each server: a subfolder with a space and a non-ASCII name,
/// given without a trailing slash, so hrefs must be matched against a decoded prefix.
const ROOT: &str = "sync root ü";
const ROOT_ENC: &str = "sync%20root%20%C3%BC";

/// Opens a local file for an upload.
fn open(p: &Path) -> std::fs::File {
    std::fs::File::open(p).unwrap()
}

/// Creates (or truncates) a local file for a download.
fn create(p: &Path) -> std::fs::File {
    std::fs::File::create(p).unwrap()
}

fn strip_weak(t: &str) -> &str {
    t.strip_prefix("W/").unwrap_or(t)
}

/// Writes `len` bytes of cheap pseudo-random data.
fn write_pseudo_random(path: &Path, len: usize, seed: u64) {
    use std::io::Write;
    let mut x = seed | 1;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for b in chunk.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let bytes = x.to_le_bytes();
            b.copy_from_slice(&bytes[..b.len()]);
        }
        let n = left.min(chunk.len());
        f.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    f.flush().unwrap();
}

/// Compares two files chunk by chunk, never holding either whole.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (mut fa, mut fb) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    if fa.metadata().unwrap().len() != fb.metadata().unwrap().len() {
        return false;
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        if n == 0 {
            return true;
        }
        fb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            return false;
        }
    }
}

#[track_caller]
fn expect_err<T: std::fmt::Debug>(r: Result<T, CloudError>, what: &str) -> CloudError {
    match r {
        Ok(v) => panic!("{what}: expected an error, got {v:?}"),
        Err(e) => e,
    }
}

/// Starts `profile`, creates the synced root inside it and opens it through `cloud::open`.
async fn setup(profile: Profile) -> (DavServer, Arc<dyn Cloud>) {
    let server = DavServer::start(profile);
    let top = WebDav::new(&server.url, &CloudOptions::default()).unwrap();
    top.mkdir(ROOT).await.unwrap();
    let url = format!("{}{ROOT_ENC}", server.url);
    let cloud = cloudsync::cloud::open(&url, &CloudOptions::default()).unwrap();
    (server, cloud)
}

/// Everything the sync engine relies on, through the `Cloud` trait.
async fn conformance(profile: Profile) {
    let (server, c) = setup(profile.clone()).await;
    let disk = |rel: &str| server.disk(&format!("{ROOT}/{rel}"));
    let tmp = tempfile::tempdir().unwrap();
    let src = |name: &str, content: &[u8]| {
        let p = tmp.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    };
    assert!(c.describe().contains(ROOT_ENC), "{}", c.describe());
    let root = c.stat("").await.unwrap().expect("root exists");
    assert!(root.is_dir);

    // Create, then a second create must not overwrite.
    let one = src("one", b"version one");
    let tag1 = c
        .upload("a.txt", &open(&one), &Precondition::IfNoneMatch)
        .await
        .unwrap()
        .etag
        .expect("an ETag after the first upload");
    let e = expect_err(
        c.upload(
            "a.txt",
            &open(&src("other", b"other")),
            &Precondition::IfNoneMatch,
        )
        .await,
        "second create",
    );
    assert!(matches!(e, CloudError::PreconditionFailed), "{e}");
    assert_eq!(std::fs::read(disk("a.txt")).unwrap(), b"version one");

    // stat agrees with what the upload said.
    let st = c.stat("a.txt").await.unwrap().unwrap();
    assert!(!st.is_dir);
    assert_eq!(st.size, 11);
    assert!(st.mtime.is_some());
    assert_eq!(strip_weak(st.etag.as_deref().unwrap()), strip_weak(&tag1));

    // Update with the right tag (on Apache it is still weak here).
    let two = src("two", b"version two, longer");
    let tag2 = c
        .upload("a.txt", &open(&two), &Precondition::IfMatch(tag1.clone()))
        .await
        .unwrap()
        .etag
        .expect("an ETag after the update");
    assert_ne!(strip_weak(&tag2), strip_weak(&tag1));
    assert_eq!(
        std::fs::read(disk("a.txt")).unwrap(),
        b"version two, longer"
    );

    // A stale tag must fail and leave the cloud copy alone, on every server.
    let three = src("three", b"version three");
    for stale in [tag1.clone(), "\"no-such-tag\"".to_string()] {
        let e = expect_err(
            c.upload("a.txt", &open(&three), &Precondition::IfMatch(stale))
                .await,
            "stale update",
        );
        assert!(matches!(e, CloudError::PreconditionFailed), "{e}");
    }
    assert_eq!(
        std::fs::read(disk("a.txt")).unwrap(),
        b"version two, longer"
    );

    // Another client changes the file behind our back: our update must not overwrite it.
    server.write_on_disk(&format!("{ROOT}/a.txt"), b"changed by someone else");
    let e = expect_err(
        c.upload("a.txt", &open(&three), &Precondition::IfMatch(tag2.clone()))
            .await,
        "update over a foreign change",
    );
    assert!(matches!(e, CloudError::PreconditionFailed), "{e}");
    assert_eq!(
        std::fs::read(disk("a.txt")).unwrap(),
        b"changed by someone else"
    );
    let cur = c.stat("a.txt").await.unwrap().unwrap();
    let tag3 = c
        .upload(
            "a.txt",
            &open(&three),
            &Precondition::IfMatch(cur.etag.unwrap()),
        )
        .await
        .unwrap()
        .etag;
    assert!(tag3.is_some());
    assert_eq!(std::fs::read(disk("a.txt")).unwrap(), b"version three");

    // An update of something that is gone.
    let e = expect_err(
        c.upload(
            "gone.txt",
            &open(&three),
            &Precondition::IfMatch(tag2.clone()),
        )
        .await,
        "update of a missing file",
    );
    assert!(matches!(e, CloudError::NotFound), "{e}");

    // Folders: nested creation, existing is fine, a file in the way is not.
    c.mkdir("x/y z/w").await.unwrap();
    assert!(disk("x/y z/w").is_dir());
    c.mkdir("x/y z/w").await.unwrap();
    c.mkdir("x").await.unwrap();
    assert!(c.mkdir("a.txt").await.is_err());
    assert!(c.stat("x/y z").await.unwrap().unwrap().is_dir);

    // An upload into missing folders creates them.
    c.upload("new/deep/f.txt", &open(&one), &Precondition::IfNoneMatch)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(disk("new/deep/f.txt")).unwrap(),
        b"version one"
    );

    // Listing: direct children only, never the folder itself.
    let listing = c.list("").await.unwrap();
    assert!(listing.is_complete(), "{:?}", listing.skipped);
    let mut l = listing.entries;
    l.sort_by(|a, b| a.path.cmp(&b.path));
    let names: Vec<_> = l.iter().map(|e| (e.path.as_str(), e.is_dir)).collect();
    assert_eq!(names, [("a.txt", false), ("new", true), ("x", true)]);
    assert_eq!(l[0].size, 13);
    let l = c.list("x").await.unwrap().entries;
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].path, "x/y z");
    assert!(matches!(c.list("nope").await, Err(CloudError::NotFound)));
    assert!(c.stat("nope").await.unwrap().is_none());
    assert!(c.stat("nope/deeper").await.unwrap().is_none());

    // Awkward names survive the round trip, byte for byte.
    let names = [
        "sp ace.txt",
        "hash#1.txt",
        "100%.txt",
        "q?mark&amp=1;x.txt",
        "plus+[brackets]'quote'.txt",
        "ünïcödé ✓ 日本.txt",
        "%2F not a slash",
        "%00",
    ];
    c.mkdir("names").await.unwrap();
    for (i, n) in names.iter().enumerate() {
        let content = format!("content {i}");
        let p = src(&format!("n{i}"), content.as_bytes());
        c.upload(&format!("names/{n}"), &open(&p), &Precondition::IfNoneMatch)
            .await
            .unwrap_or_else(|e| panic!("upload of {n:?}: {e}"));
        assert_eq!(
            std::fs::read(disk(&format!("names/{n}"))).unwrap(),
            content.as_bytes(),
            "{n:?} on disk"
        );
        let got = tmp.path().join("got");
        let e = c
            .get_file(&format!("names/{n}"), &create(&got))
            .await
            .unwrap();
        assert_eq!(std::fs::read(&got).unwrap(), content.as_bytes());
        assert_eq!(e.path, format!("names/{n}"));
    }
    let mut listed: Vec<String> = c
        .list("names")
        .await
        .unwrap()
        .entries
        .into_iter()
        .map(|e| e.path)
        .collect();
    listed.sort();
    let mut want: Vec<String> = names.iter().map(|n| format!("names/{n}")).collect();
    want.sort();
    assert_eq!(listed, want);

    // Renames: a file, a folder with content (one MOVE), never onto an existing item.
    c.rename("a.txt", "x/renamed.txt").await.unwrap();
    assert!(!disk("a.txt").exists());
    assert_eq!(
        std::fs::read(disk("x/renamed.txt")).unwrap(),
        b"version three"
    );
    assert!(c.stat("a.txt").await.unwrap().is_none());
    c.rename("new", "x/moved").await.unwrap();
    assert!(disk("x/moved/deep/f.txt").is_file());
    assert!(c.stat("x/moved/deep/f.txt").await.unwrap().is_some());
    c.upload("b.txt", &open(&one), &Precondition::IfNoneMatch)
        .await
        .unwrap();
    let e = expect_err(
        c.rename("b.txt", "x/renamed.txt").await,
        "rename onto a file",
    );
    assert!(matches!(e, CloudError::PreconditionFailed), "{e}");
    let e = expect_err(c.rename("b.txt", "x/moved").await, "rename onto a folder");
    assert!(matches!(e, CloudError::PreconditionFailed), "{e}");
    assert_eq!(std::fs::read(disk("b.txt")).unwrap(), b"version one");
    assert_eq!(
        std::fs::read(disk("x/renamed.txt")).unwrap(),
        b"version three"
    );
    let e = expect_err(
        c.rename("b.txt", "no/such/dir/b.txt").await,
        "rename into nowhere",
    );
    assert!(matches!(e, CloudError::MissingParent), "{e}");
    let e = expect_err(c.rename("nothing", "nothing2").await, "rename of nothing");
    assert!(matches!(e, CloudError::NotFound), "{e}");

    // Download.
    let got = tmp.path().join("download");
    let e = c.get_file("x/renamed.txt", &create(&got)).await.unwrap();
    assert_eq!(std::fs::read(&got).unwrap(), b"version three");
    assert_eq!(e.size, 13);
    assert!(!e.is_dir);
    let st = c.stat("x/renamed.txt").await.unwrap().unwrap();
    assert_eq!(
        strip_weak(e.etag.as_deref().expect("an ETag from GET")),
        strip_weak(st.etag.as_deref().unwrap())
    );
    let e = expect_err(
        c.get_file("x/none.txt", &create(&got)).await,
        "download of nothing",
    );
    assert!(matches!(e, CloudError::NotFound), "{e}");

    // Deletes: conditional on files, recursive on folders.
    let e = expect_err(
        c.delete("b.txt", &Precondition::IfMatch("\"stale\"".into()))
            .await,
        "stale delete",
    );
    assert!(matches!(e, CloudError::PreconditionFailed), "{e}");
    assert!(disk("b.txt").exists());
    let bt = c.stat("b.txt").await.unwrap().unwrap().etag.unwrap();
    c.delete("b.txt", &Precondition::IfMatch(bt)).await.unwrap();
    assert!(!disk("b.txt").exists());
    let e = expect_err(c.delete("b.txt", &Precondition::None).await, "delete again");
    assert!(matches!(e, CloudError::NotFound), "{e}");
    c.delete("x", &Precondition::None).await.unwrap();
    assert!(!disk("x").exists());
    assert!(c.delete("", &Precondition::None).await.is_err());
    assert!(disk("").is_dir());

    // Unsafe paths never reach the server.
    assert!(c.stat("../escape").await.is_err());
    assert!(
        c.upload("/abs", &open(&one), &Precondition::None)
            .await
            .is_err()
    );

    // A 50 MiB file streams both ways, byte for byte.
    let big = tmp.path().join("big");
    write_pseudo_random(&big, 50 << 20, 0x5eed);
    let tag = c
        .upload("big/blob.bin", &open(&big), &Precondition::IfNoneMatch)
        .await
        .unwrap()
        .etag;
    assert!(tag.is_some());
    assert!(
        same_file(&big, &disk("big/blob.bin")),
        "uploaded 50 MiB differ"
    );
    assert_eq!(
        c.stat("big/blob.bin").await.unwrap().unwrap().size,
        50 << 20
    );
    let back = tmp.path().join("back");
    let e = c.get_file("big/blob.bin", &create(&back)).await.unwrap();
    assert_eq!(e.size, 50 << 20);
    assert!(same_file(&big, &back), "downloaded 50 MiB differ");

    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sabre() {
    conformance(Profile::Sabre).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sabre_with_folder_etags() {
    conformance(Profile::SabreFolderEtags).await;

    // Folder ETags sum up the subtree, and ids survive edits and renames.
    let (server, _) = setup(Profile::SabreFolderEtags).await;
    let url = format!("{}{ROOT_ENC}/", server.url);
    let c = WebDav::new(&url, &CloudOptions::default()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("f");
    std::fs::write(&p, b"one").unwrap();
    c.upload("f/g/h.txt", &open(&p), &Precondition::IfNoneMatch)
        .await
        .unwrap();
    let before = c.stat_entry("f").await.unwrap().unwrap();
    let file_before = c.stat_entry("f/g/h.txt").await.unwrap().unwrap();
    assert!(before.entry.etag.is_some());
    assert!(before.file_id.is_some() && file_before.file_id.is_some());
    // Unchanged subtree, unchanged ETag.
    assert_eq!(c.stat_entry("f").await.unwrap().unwrap(), before);
    server.write_on_disk(&format!("{ROOT}/f/g/h.txt"), b"two!");
    let after = c.stat_entry("f").await.unwrap().unwrap();
    assert_ne!(after.entry.etag, before.entry.etag);
    let listed = c.list_entries("f/g").await.unwrap().entries;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].file_id, file_before.file_id);
    c.rename("f/g/h.txt", "f/h2.txt").await.unwrap();
    let moved = c.stat_entry("f/h2.txt").await.unwrap().unwrap();
    assert_eq!(moved.file_id, file_before.file_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apache() {
    conformance(Profile::Apache).await;

    // Apache reports no ETag on PUT and a weak one for about a second after a change; the tag
    // learnt then still works for the next update once the server's tag has turned strong.
    let (server, c) = setup(Profile::Apache).await;
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("f");
    std::fs::write(&p, b"one").unwrap();
    let weak = c
        .upload("w.txt", &open(&p), &Precondition::IfNoneMatch)
        .await
        .unwrap()
        .etag
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let now = c.stat("w.txt").await.unwrap().unwrap().etag.unwrap();
    assert!(!now.starts_with("W/"), "{now}");
    assert_eq!(strip_weak(&weak), now);
    std::fs::write(&p, b"two").unwrap();
    c.upload("w.txt", &open(&p), &Precondition::IfMatch(weak.clone()))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(server.disk(&format!("{ROOT}/w.txt"))).unwrap(),
        b"two"
    );
    let e = c
        .upload("w.txt", &open(&p), &Precondition::IfMatch(weak))
        .await
        .unwrap_err();
    assert!(matches!(e, CloudError::PreconditionFailed), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rclone() {
    conformance(Profile::Rclone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_unauthorized() {
    let password = "correct horse battery";
    let server = DavServer::start(Profile::SabreAuth {
        user: "alice".into(),
        password: password.into(),
    });
    let good = CloudOptions {
        user: Some("alice".into()),
        password: Some(password.into()),
        ca_file: None,
        ..CloudOptions::default()
    };
    let c = cloudsync::cloud::open(&server.url, &good).unwrap();
    assert!(c.stat("").await.unwrap().unwrap().is_dir);
    c.mkdir("ok").await.unwrap();

    let bad = CloudOptions {
        password: Some("Tr0ub4dor&3 wrong".into()),
        ..good.clone()
    };
    let c = cloudsync::cloud::open(&server.url, &bad).unwrap();
    for e in [
        c.stat("").await.unwrap_err(),
        c.list("ok").await.unwrap_err(),
        c.mkdir("nope").await.unwrap_err(),
    ] {
        assert!(matches!(e, CloudError::Unauthorized), "{e}");
        assert!(!e.is_transient());
        let shown = format!("{e} {e:?} {c:?}", c = c.describe());
        assert!(!shown.contains("wrong"), "{shown}");
    }
    let none = cloudsync::cloud::open(&server.url, &CloudOptions::default()).unwrap();
    assert!(matches!(none.stat("").await, Err(CloudError::Unauthorized)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_map_to_the_right_errors() {
    let server = DavServer::start(Profile::Sabre);
    server.write_on_disk("f.txt", b"hello");
    let proxy = FaultProxy::start(server.addr);
    let c = WebDav::new(&proxy.url("/dav/"), &CloudOptions::default())
        .unwrap()
        .with_idle_timeout(Duration::from_millis(1500));
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::write(&src, b"some bytes").unwrap();
    let dest = tmp.path().join("dest");

    // Passing through works.
    assert_eq!(c.stat("f.txt").await.unwrap().unwrap().size, 5);

    // A short delay is fine; a long one is a transient transport error.
    proxy.set(Fault::Delay(Duration::from_millis(200)));
    assert!(c.stat("f.txt").await.unwrap().is_some());
    proxy.set(Fault::Delay(Duration::from_secs(4)));
    let e = c.stat("f.txt").await.unwrap_err();
    assert!(
        matches!(e, CloudError::Transport(_)) && e.is_transient(),
        "{e}"
    );

    proxy.set(Fault::Reset);
    let e = c.stat("f.txt").await.unwrap_err();
    assert!(
        matches!(e, CloudError::Transport(_)) && e.is_transient(),
        "{e}"
    );
    let e = c
        .upload("up.txt", &open(&src), &Precondition::None)
        .await
        .unwrap_err();
    assert!(
        matches!(e, CloudError::Transport(_)) && e.is_transient(),
        "{e}"
    );

    for code in [500, 502, 503] {
        proxy.set(Fault::Status(code));
        let e = c.stat("f.txt").await.unwrap_err();
        assert!(
            matches!(e, CloudError::Unavailable { status } if status == code) && e.is_transient(),
            "{code}: {e}"
        );
    }

    proxy.set(Fault::Status(401));
    let e = c.list("").await.unwrap_err();
    assert!(
        matches!(e, CloudError::Unauthorized) && !e.is_transient(),
        "{e}"
    );

    proxy.set(Fault::Status(507));
    let e = c
        .upload("up.txt", &open(&src), &Precondition::None)
        .await
        .unwrap_err();
    assert!(
        matches!(e, CloudError::InsufficientStorage) && !e.is_transient(),
        "{e}"
    );

    proxy.set(Fault::Status(403));
    let e = c.get_file("f.txt", &create(&dest)).await.unwrap_err();
    assert!(
        matches!(e, CloudError::Forbidden) && !e.is_transient(),
        "{e}"
    );

    proxy.set(Fault::Truncate);
    let e = c.get_file("f.txt", &create(&dest)).await.unwrap_err();
    assert!(
        matches!(e, CloudError::Transport(_)) && e.is_transient(),
        "{e}"
    );
    let e = c.list("").await.unwrap_err();
    assert!(e.is_transient(), "{e}");

    // And back to normal.
    proxy.set(Fault::Pass);
    let got = c.get_file("f.txt", &create(&dest)).await.unwrap();
    assert_eq!(got.size, 5);
    assert_eq!(std::fs::read(&dest).unwrap(), b"hello");
    assert!(proxy.connections() > 10);
}

/// The peak resident memory of this process, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

/// A 1 GiB file goes up and down without the client ever holding it in memory. Needs 3 GiB
/// of temporary disk, so it only runs when asked for:
/// `cargo test --test webdav -- --ignored one_gib`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn one_gib_streams_through_apache() {
    let (server, c) = setup(Profile::Apache).await;
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big");
    write_pseudo_random(&big, 1 << 30, 0x1de);
    let before = peak_rss();
    c.upload("huge.bin", &open(&big), &Precondition::IfNoneMatch)
        .await
        .unwrap();
    let back = tmp.path().join("back");
    let e = c.get_file("huge.bin", &create(&back)).await.unwrap();
    assert_eq!(e.size, 1 << 30);
    let peak = peak_rss();
    assert!(same_file(&big, &server.disk(&format!("{ROOT}/huge.bin"))));
    assert!(same_file(&big, &back));
    assert!(
        peak < before + (128 << 20),
        "peak RSS grew from {before} to {peak} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_private_ca() {
    let server = DavServer::start(Profile::ApacheTls);
    assert!(server.url.starts_with("https://"));
    let opts = CloudOptions {
        ca_file: server.ca_file.clone(),
        ..CloudOptions::default()
    };
    let c = cloudsync::cloud::open(&server.url, &opts).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("f");
    std::fs::write(&p, b"over TLS").unwrap();
    c.upload("t.txt", &open(&p), &Precondition::IfNoneMatch)
        .await
        .unwrap();
    let back = tmp.path().join("back");
    c.get_file("t.txt", &create(&back)).await.unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), b"over TLS");

    // Without the CA the server is not trusted.
    let c = cloudsync::cloud::open(&server.url, &CloudOptions::default()).unwrap();
    let e = c.stat("t.txt").await.unwrap_err();
    assert!(
        !e.is_transient(),
        "an untrusted certificate is not retried: {e}"
    );
    assert!(e.to_string().contains("--ca-file"), "{e}");

    // A CA file that is missing or not PEM is an error at start.
    let bad = CloudOptions {
        ca_file: Some(tmp.path().join("none.pem")),
        ..CloudOptions::default()
    };
    assert!(cloudsync::cloud::open(&server.url, &bad).is_err());
    let bad = CloudOptions {
        ca_file: Some(p),
        ..CloudOptions::default()
    };
    assert!(cloudsync::cloud::open(&server.url, &bad).is_err());
}

/// Whether a server honours If-Match is found out once, with a probe that leaves nothing
/// behind; uploads report the hash of what they sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_are_found_out_per_server() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("f");
    std::fs::write(&p, b"some content").unwrap();
    let want = blake3::hash(b"some content").to_hex().to_string();
    for (profile, honours) in [
        (Profile::Sabre, true),
        (Profile::Apache, true),
        (Profile::Rclone, false),
    ] {
        let (server, _) = setup(profile.clone()).await;
        let url = format!("{}{ROOT_ENC}/", server.url);
        let c = WebDav::new(&url, &CloudOptions::default()).unwrap();
        assert_eq!(c.honours_conditions().await, honours, "{profile:?}");
        let left: Vec<_> = std::fs::read_dir(server.disk(ROOT))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{profile:?}: the probe left {left:?}");
        let up = c
            .upload("a/b.txt", &open(&p), &Precondition::IfNoneMatch)
            .await
            .unwrap();
        assert_eq!(up.hash.as_deref(), Some(want.as_str()), "{profile:?}");
        // Created meanwhile by someone else: never overwritten, whichever way it is checked.
        let e = c
            .upload("a/b.txt", &open(&p), &Precondition::IfNoneMatch)
            .await
            .unwrap_err();
        assert!(
            matches!(e, CloudError::PreconditionFailed),
            "{profile:?}: {e}"
        );
    }
}

/// A server that refuses a large upload with 413 or 507 before it has read the body (and
/// closes the connection) is heard: the refusal is a failure with its code, never a transport
/// error retried forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_413_or_507_on_a_streamed_put_is_heard() {
    let server = DavServer::start(Profile::Sabre);
    let proxy = FaultProxy::start(server.addr);
    let c = WebDav::new(&proxy.url("/dav/"), &CloudOptions::default()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big");
    write_pseudo_random(&big, 32 << 20, 7);
    for (code, want) in [(413u16, "413"), (507, "507")] {
        proxy.set(Fault::Status(code));
        let e = c
            .upload("big.bin", &open(&big), &Precondition::IfNoneMatch)
            .await
            .unwrap_err();
        assert!(!e.is_transient(), "{code}: {e}");
        assert!(e.to_string().contains(want), "{code}: {e}");
    }
}
