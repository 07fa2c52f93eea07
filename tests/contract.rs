//! One contract for every cloud: the same suite of `Cloud` trait tests runs against each
//! backend (`file://`, SabreDAV with and without folder ETags, Apache `mod_dav`, `rclone serve
//! webdav`, the S3 stores, and the in-memory cloud of the engine tests), so that what the sync engine relies on is written down once and every backend is
//! held to it. A new backend proves itself by passing [`suite`] through one more test function.
//!
//! Cases that depend on what a server can do are gated by the capabilities the client finds
//! out itself ([`WebDav::honours_conditions`], [`Cloud::folder_etags_cover_subtree`]): where
//! the server ignores conditions, the suite shows that the server would have overwritten and
//! that cloudsync's own check refuses anyway.

mod support;

use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cloudsync::cloud::dir::DirCloud;
use cloudsync::cloud::mem::MemCloud;
use cloudsync::cloud::s3::S3;
use cloudsync::cloud::webdav::WebDav;
use cloudsync::cloud::{Cloud, CloudError, Precondition, check_rel_path};
use cloudsync::config::CloudOptions;
use support::s3::{S3Server, Store};
use support::webdav::{DavServer, Profile};

/// The synced root inside each WebDAV server: a subfolder with a space and a non-ASCII name.
const ROOT: &str = "sync root ü";
const ROOT_ENC: &str = "sync%20root%20%C3%BC";

/// What is at a path of the synced root, seen behind the client's back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    None,
    File,
    Dir,
}

/// How the suite sees a backend's items behind the client's back, as another user of the
/// cloud would: on disk for the directory and WebDAV backends, by raw requests for S3.
trait Behind: Send + Sync {
    /// The content of the file at `rel`.
    fn read(&self, rel: &str) -> Option<Vec<u8>>;
    fn kind(&self, rel: &str) -> Kind;
    /// Writes a file (path, content), making its folders.
    fn write(&self, rel: &str, data: &[u8]);
    /// Puts into the new folder `dir` one item that a listing cannot show, and `dir/fine.txt`.
    fn plant_unshowable(&self, dir: &str);
    /// True when something named `name` exists beside the synced root.
    fn outside_exists(&self, name: &str) -> bool;
}

/// Writes a file (path, content) behind the client's back.
type WriteBehind = Box<dyn Fn(&str, &[u8]) + Send + Sync>;

/// A backend that keeps its items in a plain directory.
struct OnDisk {
    disk: PathBuf,
    write: WriteBehind,
}

impl OnDisk {
    fn path(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.disk.clone()
        } else {
            self.disk.join(rel)
        }
    }
}

impl Behind for OnDisk {
    fn read(&self, rel: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(rel)).ok()
    }

    fn kind(&self, rel: &str) -> Kind {
        let p = self.path(rel);
        if p.is_dir() {
            Kind::Dir
        } else if p.is_file() {
            Kind::File
        } else {
            Kind::None
        }
    }

    fn write(&self, rel: &str, data: &[u8]) {
        (self.write)(rel, data)
    }

    fn plant_unshowable(&self, dir: &str) {
        use std::os::unix::ffi::OsStrExt;
        std::fs::create_dir(self.path(dir)).unwrap();
        let raw = std::ffi::OsStr::from_bytes(b"bad-\xff-name.txt");
        std::fs::write(self.path(dir).join(raw), b"x").unwrap();
        std::fs::write(self.path(dir).join("fine.txt"), b"x").unwrap();
    }

    fn outside_exists(&self, name: &str) -> bool {
        self.disk.parent().unwrap().join(name).exists()
    }
}

/// What the suite knows of a backend besides the trait: how to see its items behind the
/// client's back, and what the client found out about it.
struct Backend {
    name: String,
    cloud: Arc<dyn Cloud>,
    behind: Box<dyn Behind>,
    /// Whether the server itself refuses a write whose condition fails (`None` for backends
    /// that are not servers, where the backend's own check is all there is).
    server_conditions: Option<bool>,
    /// The server leaves names that are not UTF-8 out of its listings altogether (SabreDAV),
    /// so the client cannot count them.
    hides_undecodable: bool,
    /// The backend stores a name of 255 bytes. s3s-fs does not: it keeps each object's
    /// metadata in a file named after the bucket and the whole key, so long keys fail there
    /// (with 500).
    long_names: bool,
    /// What the folder-ETag capability must read once the backend listed something.
    folder_etags: bool,
    /// Sends a raw PUT of `rel` with `If-Match: "no-such-tag"` behind the client's back, and
    /// tells whether it succeeded (the server ignores the condition).
    raw_put_if_match: Option<RawPut>,
    _keep: Box<dyn std::any::Any + Send + Sync>,
}

/// A raw conditional PUT (path, content): true when the server took it.
type RawPut = Box<dyn Fn(&str, &'static [u8]) -> BoxFuture<bool> + Send + Sync>;
type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl Backend {
    fn read(&self, rel: &str) -> Vec<u8> {
        self.behind
            .read(rel)
            .unwrap_or_else(|| panic!("{}: read {rel}: nothing there", self.name))
    }

    fn kind(&self, rel: &str) -> Kind {
        self.behind.kind(rel)
    }

    fn is_dir(&self, rel: &str) -> bool {
        self.kind(rel) == Kind::Dir
    }

    fn is_file(&self, rel: &str) -> bool {
        self.kind(rel) == Kind::File
    }

    fn exists(&self, rel: &str) -> bool {
        self.kind(rel) != Kind::None
    }

    fn write_behind(&self, rel: &str, data: &[u8]) {
        self.behind.write(rel, data)
    }
}

fn dir_backend() -> Backend {
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("cloud");
    std::fs::create_dir(&disk).unwrap();
    let cloud: Arc<dyn Cloud> = Arc::new(DirCloud::new(&disk).unwrap());
    let d2 = disk.clone();
    Backend {
        name: "file://".into(),
        cloud,
        behind: Box::new(OnDisk {
            disk,
            write: Box::new(move |rel, data| {
                let p = d2.join(rel);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, data).unwrap();
            }),
        }),
        server_conditions: None,
        hides_undecodable: false,
        long_names: true,
        folder_etags: false,
        raw_put_if_match: None,
        _keep: Box::new(tmp),
    }
}

async fn dav_backend(profile: Profile) -> Backend {
    let server = DavServer::start(profile.clone());
    let top = WebDav::new(&server.url, &CloudOptions::default()).unwrap();
    top.mkdir(ROOT).await.unwrap();
    let url = format!("{}{ROOT_ENC}/", server.url);
    let dav = WebDav::new(&url, &CloudOptions::default()).unwrap();
    let honours = dav.honours_conditions().await;
    let server = Arc::new(server);
    let s2 = server.clone();
    Backend {
        name: format!("{profile:?}"),
        cloud: Arc::new(dav),
        behind: Box::new(OnDisk {
            disk: server.disk(ROOT),
            write: Box::new(move |rel, data| s2.write_on_disk(&format!("{ROOT}/{rel}"), data)),
        }),
        server_conditions: Some(honours),
        hides_undecodable: matches!(profile, Profile::Sabre | Profile::SabreFolderEtags),
        long_names: true,
        folder_etags: profile == Profile::SabreFolderEtags,
        raw_put_if_match: Some(Box::new(move |rel, data| {
            let url = format!("{url}{rel}");
            Box::pin(async move {
                let resp = reqwest::Client::new()
                    .put(url)
                    .header("If-Match", "\"no-such-tag\"")
                    .body(data)
                    .send()
                    .await
                    .unwrap();
                resp.status().is_success()
            })
        })),
        _keep: Box::new(server),
    }
}

/// The in-memory cloud seen through its test hooks.
struct MemBehind(Arc<MemCloud>);

impl Behind for MemBehind {
    fn read(&self, rel: &str) -> Option<Vec<u8>> {
        self.0.read(rel)
    }

    fn kind(&self, rel: &str) -> Kind {
        if rel.is_empty() {
            return Kind::Dir;
        }
        match self.0.snapshot().get(rel) {
            None => Kind::None,
            Some(Some(_)) => Kind::File,
            Some(None) => Kind::Dir,
        }
    }

    fn write(&self, rel: &str, data: &[u8]) {
        self.0.write(rel, data)
    }

    fn plant_unshowable(&self, dir: &str) {
        self.0.write(&format!("{dir}/fine.txt"), b"x");
        self.0.plant_unshowable(dir, "bad-\u{fffd}-name.txt");
    }

    fn outside_exists(&self, _name: &str) -> bool {
        false // nothing is beside its root
    }
}

/// The in-memory cloud of the engine tests, held to the same contract as the real ones.
fn mem_backend(folder_etags: bool) -> Backend {
    let mem = Arc::new(if folder_etags {
        MemCloud::with_folder_etags()
    } else {
        MemCloud::new()
    });
    Backend {
        name: format!("mem{}", if folder_etags { " (folder ETags)" } else { "" }),
        cloud: mem.clone(),
        behind: Box::new(MemBehind(mem)),
        server_conditions: None,
        hides_undecodable: false,
        long_names: true,
        folder_etags,
        raw_put_if_match: None,
        _keep: Box::new(()),
    }
}

/// An S3 bucket seen by raw requests: the synced root is the prefix `sync root ü/`.
struct S3Behind {
    raw: support::s3::Raw,
    prefix: String,
}

impl Behind for S3Behind {
    fn read(&self, rel: &str) -> Option<Vec<u8>> {
        self.raw.get(&format!("{}{rel}", self.prefix))
    }

    fn kind(&self, rel: &str) -> Kind {
        if rel.is_empty() {
            return Kind::Dir;
        }
        match self.raw.kind(&format!("{}{rel}", self.prefix)) {
            support::s3::Kind::None => Kind::None,
            support::s3::Kind::File => Kind::File,
            support::s3::Kind::Dir => Kind::Dir,
        }
    }

    fn write(&self, rel: &str, data: &[u8]) {
        let s = self.raw.put(&format!("{}{rel}", self.prefix), data);
        assert_eq!(s, 200, "raw PUT {rel}");
    }

    fn plant_unshowable(&self, dir: &str) {
        // A key with an empty component: no file system could hold it.
        self.write(&format!("{dir}/fine.txt"), b"x");
        self.write(&format!("{dir}//hidden"), b"x");
    }

    fn outside_exists(&self, name: &str) -> bool {
        self.raw.get(name).is_some()
    }
}

/// An S3 backend on `store`; with `own_checks`, the client takes the store for one that ignores
/// conditions and checks each itself, as it would on such a store.
async fn s3_backend(store: Store, own_checks: bool) -> Backend {
    assert!(
        support::s3::available(store),
        "{store:?} is not installed: run scripts/test once (it installs the S3 test stores)"
    );
    let server = S3Server::shared(store);
    let bucket = server.bucket("contract");
    let tmp = tempfile::tempdir().unwrap();
    let creds = tmp.path().join("credentials");
    std::fs::write(
        &creds,
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            support::s3::KEY,
            support::s3::SECRET
        ),
    )
    .unwrap();
    let opts = CloudOptions {
        s3_endpoint: Some(server.endpoint.clone()),
        s3_region: Some(support::s3::REGION.into()),
        credentials_file: Some(creds),
        ..CloudOptions::default()
    };
    let prefix = format!("{ROOT}/");
    let mut s3 = S3::new(&format!("s3://{bucket}/{prefix}"), &opts).unwrap();
    if own_checks {
        s3 = s3.with_conditions_known(false);
    }
    let honours = s3.honours_conditions().await;
    let b2 = bucket.clone();
    let p2 = prefix.clone();
    Backend {
        name: format!(
            "S3 {store:?}{}",
            if own_checks { " (own checks)" } else { "" }
        ),
        cloud: Arc::new(s3),
        behind: Box::new(S3Behind {
            raw: server.raw(&bucket),
            prefix,
        }),
        // With its own checks the client says nothing of what the store would do.
        server_conditions: (!own_checks).then_some(honours),
        hides_undecodable: false,
        long_names: store != Store::S3sFs,
        folder_etags: false,
        raw_put_if_match: Some(Box::new(move |rel, data| {
            let raw = server.raw(&b2);
            let key = format!("{p2}{rel}");
            Box::pin(async move {
                let s = raw.put_with(&key, data, ("If-Match", "\"no-such-tag\""));
                (200..300).contains(&s)
            })
        })),
        _keep: Box::new(tmp),
    }
}

/// A local file holding `content`, opened for an upload.
fn local(dir: &Path, name: &str, content: &[u8]) -> std::fs::File {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    std::fs::File::open(p).unwrap()
}

fn strip_weak(t: &str) -> &str {
    t.strip_prefix("W/").unwrap_or(t)
}

#[track_caller]
fn err<T: std::fmt::Debug>(r: Result<T, CloudError>, what: &str) -> CloudError {
    match r {
        Ok(v) => panic!("{what}: expected an error, got {v:?}"),
        Err(e) => e,
    }
}

macro_rules! expect {
    ($b:expr, $r:expr, $pat:pat, $what:expr) => {{
        let e = err($r, &format!("{}: {}", $b.name, $what));
        assert!(matches!(e, $pat), "{}: {}: got {e:?}", $b.name, $what);
    }};
}

/// The whole contract, against one backend.
async fn suite(b: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    paths(&b, tmp.path()).await;
    stat_and_list(&b, tmp.path()).await;
    odd_names(&b, tmp.path()).await;
    conditions(&b, tmp.path()).await;
    missing_parents(&b, tmp.path()).await;
    downloads(&b, tmp.path()).await;
    folders(&b, tmp.path()).await;
    deletes(&b, tmp.path()).await;
    renames(&b, tmp.path()).await;
    etags_change_on_every_write(&b, tmp.path()).await;
    refused_names(&b, tmp.path()).await;
    capabilities(&b).await;
}

/// Unsafe paths are refused before anything reaches the backend; the root is never deleted.
async fn paths(b: &Backend, tmp: &Path) {
    let c = &b.cloud;
    for bad in [
        "../escape",
        "/abs",
        "a//b",
        "a/./b",
        "a/",
        "a/../../b",
        "nul\0x",
    ] {
        assert!(check_rel_path(bad).is_err(), "{bad:?}");
        let f = local(tmp, "p", b"x");
        expect!(
            b,
            c.stat(bad).await,
            CloudError::Protocol(_),
            format!("stat {bad:?}")
        );
        expect!(
            b,
            c.list(bad).await,
            CloudError::Protocol(_),
            format!("list {bad:?}")
        );
        expect!(
            b,
            c.upload(bad, &f, &Precondition::None).await,
            CloudError::Protocol(_),
            format!("upload {bad:?}")
        );
        expect!(
            b,
            c.get_file(bad, &f).await,
            CloudError::Protocol(_),
            format!("get_file {bad:?}")
        );
        expect!(
            b,
            c.mkdir(bad).await,
            CloudError::Protocol(_),
            format!("mkdir {bad:?}")
        );
        expect!(
            b,
            c.delete(bad, &Precondition::None).await,
            CloudError::Protocol(_),
            format!("delete {bad:?}")
        );
        expect!(
            b,
            c.rename("x", bad).await,
            CloudError::Protocol(_),
            format!("rename to {bad:?}")
        );
    }
    assert!(check_rel_path("").is_ok() && check_rel_path("a/b c/d").is_ok());
    expect!(
        b,
        c.delete("", &Precondition::None).await,
        CloudError::Protocol(_),
        "delete root"
    );
    assert!(b.is_dir(""));
    assert!(
        c.stat("").await.unwrap().unwrap().is_dir,
        "{}: root",
        b.name
    );
    assert!(!b.behind.outside_exists("escape"));
}

/// stat and list report files and folders, direct children only, with sizes and tags.
async fn stat_and_list(b: &Backend, tmp: &Path) {
    let c = &b.cloud;
    c.mkdir("sl/sub/deeper").await.unwrap();
    let up = c
        .upload(
            "sl/f.txt",
            &local(tmp, "f", b"twelve bytes"),
            &Precondition::IfNoneMatch,
        )
        .await
        .unwrap();
    let tag = up.etag.expect("an ETag after an upload");
    let f = c.stat("sl/f.txt").await.unwrap().expect("the file");
    assert_eq!(f.path, "sl/f.txt");
    assert!(!f.is_dir);
    assert_eq!(f.size, 12);
    assert!(f.mtime.is_some(), "{}: mtime", b.name);
    assert_eq!(strip_weak(f.etag.as_deref().unwrap()), strip_weak(&tag));
    let d = c.stat("sl/sub").await.unwrap().expect("the folder");
    assert!(
        d.is_dir && d.size == 0 && d.path == "sl/sub",
        "{}: {d:?}",
        b.name
    );

    let l = c.list("sl").await.unwrap();
    assert!(l.is_complete(), "{}: {:?}", b.name, l.skipped);
    let mut got: Vec<_> = l
        .entries
        .iter()
        .map(|e| (e.path.as_str(), e.is_dir, e.size))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [("sl/f.txt", false, 12), ("sl/sub", true, 0)],
        "{}",
        b.name
    );
    let top: Vec<_> = c
        .list("")
        .await
        .unwrap()
        .entries
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert!(top.contains(&"sl".to_string()), "{}: {top:?}", b.name);
    assert!(c.list("sl/sub/deeper").await.unwrap().entries.is_empty());

    assert_eq!(c.stat("sl/none").await.unwrap(), None);
    assert_eq!(c.stat("sl/none/deeper").await.unwrap(), None);
    assert_eq!(
        c.stat("sl/f.txt/under-a-file").await.unwrap(),
        None,
        "{}",
        b.name
    );
    expect!(
        b,
        c.list("sl/none").await,
        CloudError::NotFound,
        "list of nothing"
    );
    expect!(
        b,
        c.list("sl/f.txt").await,
        CloudError::Status { status: 409, .. },
        "list of a file"
    );
}

/// Names with spaces, unicode, `%`, `#`, `?` and the longest a file system takes survive the
/// round trip byte for byte; what a backend cannot show is counted in `Listing::skipped`.
async fn odd_names(b: &Backend, tmp: &Path) {
    let c = &b.cloud;
    let long = format!("{}.txt", "l".repeat(251));
    assert_eq!(long.len(), 255);
    let names = [
        "sp ace.txt",
        " leading and trailing ",
        "hash#1.txt",
        "100%.txt",
        "%41%2F%00",
        "q?mark&amp=1;x.txt",
        "plus+[brackets]'quote'\"dq\".txt",
        "ünïcödé ✓ 日本 🦀.txt",
        "..dots..",
        long.as_str(),
    ];
    let names: Vec<&str> = names
        .into_iter()
        .filter(|n| b.long_names || n.len() < 200)
        .collect();
    c.mkdir("names").await.unwrap();
    for (i, n) in names.iter().enumerate() {
        let path = format!("names/{n}");
        let content = format!("content {i}");
        c.upload(
            &path,
            &local(tmp, "n", content.as_bytes()),
            &Precondition::IfNoneMatch,
        )
        .await
        .unwrap_or_else(|e| panic!("{}: upload of {n:?}: {e}", b.name));
        assert_eq!(
            b.read(&path),
            content.as_bytes(),
            "{}: {n:?} on disk",
            b.name
        );
        let st = c
            .stat(&path)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{}: stat {n:?}", b.name));
        assert_eq!(st.path, path);
        let dest = tmp.join("got");
        let got = c
            .get_file(&path, &std::fs::File::create(&dest).unwrap())
            .await
            .unwrap();
        assert_eq!(got.path, path);
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            content.as_bytes(),
            "{}: {n:?}",
            b.name
        );
    }
    c.mkdir("names/ü dir #2").await.unwrap();
    let l = c.list("names").await.unwrap();
    assert!(l.is_complete(), "{}: {:?}", b.name, l.skipped);
    let mut listed: Vec<String> = l.entries.into_iter().map(|e| e.path).collect();
    listed.sort();
    let mut want: Vec<String> = names.iter().map(|n| format!("names/{n}")).collect();
    want.push("names/ü dir #2".into());
    want.sort();
    assert_eq!(listed, want, "{}", b.name);
    assert_eq!(c.list("names/ü dir #2").await.unwrap().entries, []);

    // A name that is not UTF-8, put there behind the client's back: it is either counted as
    // skipped, or shown under a name that passes the path checks; never dropped silently.
    b.behind.plant_unshowable("unshowable");
    let l = c.list("unshowable").await.unwrap();
    let shown: Vec<_> = l.entries.iter().map(|e| e.path.as_str()).collect();
    assert!(
        shown.contains(&"unshowable/fine.txt"),
        "{}: {shown:?}",
        b.name
    );
    assert_eq!(
        l.entries.len() + l.skipped.len(),
        if b.hides_undecodable { 1 } else { 2 },
        "{}: {shown:?} skipped {:?}",
        b.name,
        l.skipped
    );
    for e in &l.entries {
        check_rel_path(&e.path).unwrap();
    }
}

/// Conditions are honoured on every backend: by the server where it does, by cloudsync's own
/// check where it does not.
async fn conditions(b: &Backend, tmp: &Path) {
    let c = &b.cloud;
    c.mkdir("cond").await.unwrap();
    let tag1 = c
        .upload(
            "cond/a.txt",
            &local(tmp, "1", b"one"),
            &Precondition::IfNoneMatch,
        )
        .await
        .unwrap()
        .etag
        .unwrap();
    expect!(
        b,
        c.upload(
            "cond/a.txt",
            &local(tmp, "x", b"other"),
            &Precondition::IfNoneMatch
        )
        .await,
        CloudError::PreconditionFailed,
        "IfNoneMatch on an existing file"
    );
    expect!(
        b,
        c.upload(
            "cond",
            &local(tmp, "x", b"other"),
            &Precondition::IfNoneMatch
        )
        .await,
        CloudError::PreconditionFailed,
        "IfNoneMatch on an existing folder"
    );
    assert_eq!(b.read("cond/a.txt"), b"one");
    assert!(b.is_dir("cond"));

    let tag2 = c
        .upload(
            "cond/a.txt",
            &local(tmp, "2", b"two, longer"),
            &Precondition::IfMatch(tag1.clone()),
        )
        .await
        .unwrap()
        .etag
        .unwrap();
    for stale in [
        tag1.clone(),
        "\"no-such-tag\"".to_string(),
        "W/\"weak-and-stale\"".into(),
    ] {
        expect!(
            b,
            c.upload(
                "cond/a.txt",
                &local(tmp, "3", b"three"),
                &Precondition::IfMatch(stale.clone())
            )
            .await,
            CloudError::PreconditionFailed,
            format!("IfMatch with the stale tag {stale}")
        );
    }
    assert_eq!(b.read("cond/a.txt"), b"two, longer");

    // Someone else writes: the update that does not know of it must not overwrite it.
    b.write_behind("cond/a.txt", b"changed by someone else");
    expect!(
        b,
        c.upload(
            "cond/a.txt",
            &local(tmp, "3", b"three"),
            &Precondition::IfMatch(tag2.clone())
        )
        .await,
        CloudError::PreconditionFailed,
        "IfMatch over a foreign change"
    );
    assert_eq!(b.read("cond/a.txt"), b"changed by someone else");
    let cur = c.stat("cond/a.txt").await.unwrap().unwrap().etag.unwrap();
    c.upload(
        "cond/a.txt",
        &local(tmp, "3", b"three"),
        &Precondition::IfMatch(cur),
    )
    .await
    .unwrap();
    assert_eq!(b.read("cond/a.txt"), b"three");

    // IfMatch on a missing item is NotFound, whether or not its folder exists.
    for missing in ["cond/gone.txt", "cond/no/such/folder/gone.txt"] {
        expect!(
            b,
            c.upload(
                missing,
                &local(tmp, "4", b"x"),
                &Precondition::IfMatch(tag2.clone())
            )
            .await,
            CloudError::NotFound,
            format!("IfMatch on the missing {missing}")
        );
    }
    assert!(!b.exists("cond/gone.txt") && !b.exists("cond/no"));

    // An IfMatch on a folder never replaces it with a file.
    c.mkdir("cond/dir").await.unwrap();
    expect!(
        b,
        c.upload(
            "cond/dir",
            &local(tmp, "5", b"x"),
            &Precondition::IfMatch(tag2.clone())
        )
        .await,
        CloudError::PreconditionFailed,
        "IfMatch on a folder"
    );
    assert!(b.is_dir("cond/dir"));

    // The gate: where the server honours conditions it refuses a stale write by itself; where
    // it does not, it would overwrite, and only the check above stood in the way.
    if let (Some(honours), Some(raw_put)) = (b.server_conditions, &b.raw_put_if_match) {
        let took = raw_put("cond/a.txt", b"raw overwrite").await;
        if honours {
            assert!(!took, "{}", b.name);
            assert_eq!(b.read("cond/a.txt"), b"three");
        } else {
            assert!(took, "{}", b.name);
            assert_eq!(b.read("cond/a.txt"), b"raw overwrite", "{}", b.name);
        }
    }
}

/// Uploads without `IfMatch` create missing parent folders; moves into a missing folder fail
/// with MissingParent.
async fn missing_parents(b: &Backend, tmp: &Path) {
    let c = &b.cloud;
    for (i, cond) in [Precondition::None, Precondition::IfNoneMatch]
        .iter()
        .enumerate()
    {
        let path = format!("mp{i}/deep/er/f.txt");
        c.upload(&path, &local(tmp, "m", b"made"), cond)
            .await
            .unwrap_or_else(|e| panic!("{}: upload into missing folders ({cond:?}): {e}", b.name));
        assert_eq!(b.read(&path), b"made");
        assert!(
            c.stat(&format!("mp{i}/deep/er"))
                .await
                .unwrap()
                .unwrap()
                .is_dir
        );
    }
    expect!(
        b,
        c.rename("mp0/deep/er/f.txt", "mp-none/x/f.txt").await,
        CloudError::MissingParent,
        "rename into a missing folder"
    );
    assert!(b.is_file("mp0/deep/er/f.txt"));
    // A file where a folder should be is in the way, not missing.
    expect!(
        b,
        c.upload(
            "mp1/deep/er/f.txt/x",
            &local(tmp, "m", b"x"),
            &Precondition::IfNoneMatch
        )
        .await,
        CloudError::PreconditionFailed,
        "upload below a file"
    );
}

/// get_file streams into an open file from its start, cutting off what it held, and leaves it
/// alone when there is nothing to download.
async fn downloads(b: &Backend, tmp: &Path) {
    let c = &b.cloud;
    c.upload("dl/f.txt", &local(tmp, "d", b"short"), &Precondition::None)
        .await
        .unwrap();
    let dest = tmp.join("dest");
    std::fs::write(&dest, b"a much longer old content that must go").unwrap();
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&dest)
        .unwrap();
    f.seek(std::io::SeekFrom::End(0)).unwrap();
    let got = c.get_file("dl/f.txt", &f).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"short", "{}", b.name);
    assert_eq!(got.path, "dl/f.txt");
    assert_eq!(got.size, 5);
    assert!(!got.is_dir);
    let st = c.stat("dl/f.txt").await.unwrap().unwrap();
    assert_eq!(
        got.etag.as_deref().map(strip_weak),
        st.etag.as_deref().map(strip_weak),
        "{}",
        b.name
    );
    f.write_all(b"!").unwrap();
    drop(f);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&dest)
        .unwrap();
    expect!(
        b,
        c.get_file("dl/none.txt", &f).await,
        CloudError::NotFound,
        "download of nothing"
    );
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        b"short!",
        "{}: dest after a 404",
        b.name
    );
}

/// mkdir makes nested folders, is fine over an existing folder, and refuses a file in the way.
async fn folders(b: &Backend, tmp: &Path) {
    let c = &b.cloud;
    c.mkdir("mk/a b/ü/c").await.unwrap();
    assert!(b.is_dir("mk/a b/ü/c"));
    c.mkdir("mk/a b/ü/c").await.unwrap();
    c.mkdir("mk").await.unwrap();
    c.mkdir("").await.unwrap();
    c.upload("mk/file", &local(tmp, "k", b"x"), &Precondition::None)
        .await
        .unwrap();
    expect!(
        b,
        c.mkdir("mk/file").await,
        CloudError::PreconditionFailed,
        "mkdir over a file"
    );
    expect!(
        b,
        c.mkdir("mk/file/below").await,
        CloudError::PreconditionFailed,
        "mkdir below a file"
    );
    assert_eq!(b.read("mk/file"), b"x");
}

/// Deletes: files under a condition, folders with all they hold.
async fn deletes(b: &Backend, tmp: &Path) {
    let c = &b.cloud;
    let tag = c
        .upload("del/f.txt", &local(tmp, "x", b"x"), &Precondition::None)
        .await
        .unwrap()
        .etag
        .unwrap();
    expect!(
        b,
        c.delete("del/f.txt", &Precondition::IfMatch("\"stale\"".into()))
            .await,
        CloudError::PreconditionFailed,
        "delete with a stale tag"
    );
    expect!(
        b,
        c.delete("del/f.txt", &Precondition::IfNoneMatch).await,
        CloudError::PreconditionFailed,
        "delete of an existing file under IfNoneMatch"
    );
    assert!(b.is_file("del/f.txt"));
    c.delete("del/f.txt", &Precondition::IfMatch(tag.clone()))
        .await
        .unwrap();
    assert!(!b.exists("del/f.txt"));
    expect!(
        b,
        c.delete("del/f.txt", &Precondition::None).await,
        CloudError::NotFound,
        "delete again"
    );
    expect!(
        b,
        c.delete("del/f.txt", &Precondition::IfMatch(tag)).await,
        CloudError::NotFound,
        "conditional delete of nothing"
    );

    // A folder goes with everything in it, in one call.
    c.upload("del/d/e/f.txt", &local(tmp, "x", b"x"), &Precondition::None)
        .await
        .unwrap();
    expect!(
        b,
        c.delete("del/d", &Precondition::IfNoneMatch).await,
        CloudError::PreconditionFailed,
        "delete of an existing folder under IfNoneMatch"
    );
    let folder = c.stat("del/d").await.unwrap().unwrap();
    if b.folder_etags {
        // Its tag covers the subtree: a stale one is refused, the current one deletes.
        let before = folder.etag.clone().expect("a folder ETag");
        b.write_behind("del/d/e/f.txt", b"changed below");
        expect!(
            b,
            c.delete("del/d", &Precondition::IfMatch(before)).await,
            CloudError::PreconditionFailed,
            "folder delete with a tag from before a change below"
        );
        assert!(b.is_file("del/d/e/f.txt"));
    }
    let now = c.stat("del/d").await.unwrap().unwrap();
    let cond = now.etag.map_or(Precondition::None, Precondition::IfMatch);
    c.delete("del/d", &cond).await.unwrap();
    assert!(!b.exists("del/d"));
    expect!(
        b,
        c.delete("del/d", &Precondition::None).await,
        CloudError::NotFound,
        "folder again"
    );
}

/// Moves are one step, carry a folder's content, and never replace what is at the target.
async fn renames(b: &Backend, tmp: &Path) {
    let c = &b.cloud;
    c.upload("mv/a.txt", &local(tmp, "a", b"a"), &Precondition::None)
        .await
        .unwrap();
    c.upload("mv/b.txt", &local(tmp, "b", b"b"), &Precondition::None)
        .await
        .unwrap();
    c.upload("mv/d/in.txt", &local(tmp, "i", b"in"), &Precondition::None)
        .await
        .unwrap();
    c.mkdir("mv/target").await.unwrap();

    c.rename("mv/a.txt", "mv/target/ä renamed.txt")
        .await
        .unwrap();
    assert!(!b.exists("mv/a.txt"));
    assert_eq!(b.read("mv/target/ä renamed.txt"), b"a");
    assert_eq!(c.stat("mv/a.txt").await.unwrap(), None);
    c.rename("mv/d", "mv/target/d2").await.unwrap();
    assert_eq!(b.read("mv/target/d2/in.txt"), b"in");
    assert!(c.stat("mv/target/d2/in.txt").await.unwrap().is_some());

    expect!(
        b,
        c.rename("mv/b.txt", "mv/target/ä renamed.txt").await,
        CloudError::PreconditionFailed,
        "rename onto a file"
    );
    expect!(
        b,
        c.rename("mv/b.txt", "mv/target/d2").await,
        CloudError::PreconditionFailed,
        "rename onto a folder"
    );
    assert_eq!(b.read("mv/b.txt"), b"b");
    assert_eq!(b.read("mv/target/ä renamed.txt"), b"a");
    expect!(
        b,
        c.rename("mv/none", "mv/none2").await,
        CloudError::NotFound,
        "rename of nothing"
    );
}

/// Every write of new content gives a new ETag, also for content of the same size written at
/// once. (A tag may follow the content, as SabreDAV's does: the same bytes again may keep it.)
async fn etags_change_on_every_write(b: &Backend, tmp: &Path) {
    let c = &b.cloud;
    let mut seen = Vec::new();
    let mut cond = Precondition::IfNoneMatch;
    for content in [b"aaaa", b"bbbb", b"cccc", b"dddd"] {
        let tag = c
            .upload("et.txt", &local(tmp, "e", content), &cond)
            .await
            .unwrap()
            .etag
            .unwrap();
        let st = c.stat("et.txt").await.unwrap().unwrap();
        assert_eq!(
            strip_weak(st.etag.as_deref().unwrap()),
            strip_weak(&tag),
            "{}",
            b.name
        );
        assert!(
            !seen
                .iter()
                .any(|t: &String| strip_weak(t) == strip_weak(&tag)),
            "{}: the tag {tag} came back after {seen:?}",
            b.name
        );
        seen.push(tag.clone());
        cond = Precondition::IfMatch(tag);
    }
}

/// A name the backend cannot store is InvalidName: a permanent failure, never retried.
async fn refused_names(b: &Backend, tmp: &Path) {
    let c = &b.cloud;
    let too_long = "x".repeat(300);
    for path in [too_long.clone(), format!("rn/{too_long}")] {
        let e = err(
            c.upload(&path, &local(tmp, "r", b"x"), &Precondition::IfNoneMatch)
                .await,
            "upload of a name too long",
        );
        assert!(
            matches!(e, CloudError::InvalidName(_)),
            "{}: upload {path}: {e:?}",
            b.name
        );
        assert!(!e.is_transient());
    }
    let e = err(
        c.mkdir(&format!("rn/{too_long}/x")).await,
        "mkdir of a name too long",
    );
    assert!(
        matches!(e, CloudError::InvalidName(_)),
        "{}: mkdir: {e:?}",
        b.name
    );
    let e = err(
        c.rename("et.txt", &too_long).await,
        "rename to a name too long",
    );
    assert!(
        matches!(e, CloudError::InvalidName(_)),
        "{}: rename: {e:?}",
        b.name
    );
    assert!(b.is_file("et.txt"));
}

/// What the client found out about the backend matches what it is.
async fn capabilities(b: &Backend) {
    let c = &b.cloud;
    let _ = c.list("").await.unwrap();
    assert_eq!(c.folder_etags_cover_subtree(), b.folder_etags, "{}", b.name);
    if b.folder_etags {
        // An unchanged subtree keeps its tag; a change deep below changes it.
        let before = c.stat("mv").await.unwrap().unwrap().etag;
        assert!(before.is_some());
        assert_eq!(c.stat("mv").await.unwrap().unwrap().etag, before);
        b.write_behind("mv/target/d2/in.txt", b"changed deep below");
        assert_ne!(
            c.stat("mv").await.unwrap().unwrap().etag,
            before,
            "{}",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_dir() {
    suite(dir_backend()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mem() {
    suite(mem_backend(false)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mem_with_folder_etags() {
    suite(mem_backend(true)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sabre() {
    suite(dav_backend(Profile::Sabre).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sabre_with_folder_etags() {
    suite(dav_backend(Profile::SabreFolderEtags).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apache() {
    suite(dav_backend(Profile::Apache).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rclone() {
    suite(dav_backend(Profile::Rclone).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_moto() {
    suite(s3_backend(Store::Moto, false).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_seaweedfs() {
    suite(s3_backend(Store::Seaweed, false).await).await;
}

/// s3s-fs keeps folders as directories and lists no empty one: the client finds that out and
/// marks empty folders with a `.cloudsync-folder` object instead of a `name/` marker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_s3s_fs() {
    suite(s3_backend(Store::S3sFs, false).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_seaweedfs_own_checks() {
    suite(s3_backend(Store::Seaweed, true).await).await;
}
