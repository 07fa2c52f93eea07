//! A folder of 1000 files moved in a real cloud is one rename on-premise, and not one file's
//! content is fetched again: on the `file://` cloud (where the item ids are inodes), on
//! SabreDAV, plain (content ETags, no ids: the move is told by the ETags of what the folder
//! holds) and Nextcloud-style (`oc:fileid`), and on the degraded servers, Apache `mod_dav`
//! (ETags of size and time, shared by files of one size written in one second, and weak for a
//! second after a write) and `rclone serve webdav`. The engine runs without FUSE, over the real
//! clouds; GETs are counted by a counting wrapper around the cloud, and on SabreDAV also in
//! the server's own access log.

#[path = "engine/fake.rs"]
mod fake;
mod support;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use cloudsync::cloud::dir::DirCloud;
use cloudsync::cloud::webdav::WebDav;
use cloudsync::cloud::{
    Cloud, CloudEntry, CloudError, CloudOptions, Listing, Precondition, Subtree, UploadLedger,
    Uploaded,
};
use cloudsync::status::Status;

use fake::{Backend, FakeFolder, Options};
use support::webdav::{DavServer, Profile};

/// A cloud that counts the file downloads it is asked for, and passes everything on.
struct Counting {
    inner: Arc<dyn Cloud>,
    gets: AtomicU64,
}

#[async_trait]
impl Cloud for Counting {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn url(&self) -> String {
        self.inner.url()
    }
    async fn stat(&self, path: &str) -> Result<Option<CloudEntry>, CloudError> {
        self.inner.stat(path).await
    }
    async fn list(&self, path: &str) -> Result<Listing, CloudError> {
        self.inner.list(path).await
    }
    async fn upload(
        &self,
        path: &str,
        src: &std::fs::File,
        cond: &Precondition,
    ) -> Result<Uploaded, CloudError> {
        self.inner.upload(path, src, cond).await
    }
    fn hashes_uploads(&self) -> bool {
        self.inner.hashes_uploads()
    }
    async fn get_file(&self, path: &str, dest: &std::fs::File) -> Result<CloudEntry, CloudError> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.inner.get_file(path, dest).await
    }
    async fn mkdir(&self, path: &str) -> Result<(), CloudError> {
        self.inner.mkdir(path).await
    }
    async fn delete(&self, path: &str, cond: &Precondition) -> Result<(), CloudError> {
        self.inner.delete(path, cond).await
    }
    async fn rename(&self, from: &str, to: &str) -> Result<(), CloudError> {
        self.inner.rename(from, to).await
    }
    async fn list_tree(&self, path: &str) -> Option<Result<Subtree, CloudError>> {
        self.inner.list_tree(path).await
    }
    fn folder_etags_cover_subtree(&self) -> bool {
        self.inner.folder_etags_cover_subtree()
    }
    fn use_upload_ledger(&self, ledger: Arc<dyn UploadLedger>) {
        self.inner.use_upload_ledger(ledger)
    }
}

const FILES: usize = 1000;

/// 1000 files of distinct content in ten folders below `proj`.
fn project() -> Vec<(String, String)> {
    (0..FILES)
        .map(|i| {
            (
                format!("proj/part{}/f{i:04}.txt", i / 100),
                format!("file {i} of the project\n"),
            )
        })
        .collect()
}

/// What one cloud move of `proj` to `archive/proj-2026` cost.
struct Measured {
    gets: u64,
    secs: f64,
}

/// Syncs the project up to `cloud`, lets `cloud_move` move it in the cloud behind the
/// engine's back, syncs again and checks that it is one rename on-premise with every file
/// in place and synced.
fn move_project(
    name: &str,
    cloud: Arc<dyn Cloud>,
    cloud_dir: PathBuf,
    cloud_move: &dyn Fn(),
) -> Measured {
    let counting = Arc::new(Counting {
        inner: cloud,
        gets: AtomicU64::new(0),
    });
    let files = project();
    let init: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let mut opts = Options::new(Backend::Dir);
    opts.transfers = 8;
    let ff = FakeFolder::with_cloud(opts, counting.clone(), cloud_dir, &init);
    ff.sync();
    ff.assert_converged(false);
    let before = std::fs::metadata(ff.path("proj")).unwrap().ino();
    let gets = counting.gets.load(Ordering::Relaxed);
    cloud_move();
    let t = Instant::now();
    ff.sync();
    let secs = t.elapsed().as_secs_f64();
    let gets = counting.gets.load(Ordering::Relaxed) - gets;
    eprintln!("{name}: {FILES} files moved in the cloud: {gets} GETs, {secs:.2} s to merge");
    ff.assert_converged(false);
    let moved = ff.path("archive/proj-2026");
    assert_eq!(
        std::fs::metadata(&moved).unwrap().ino(),
        before,
        "{name}: the folder was renamed, not made anew"
    );
    assert!(!ff.path("proj").exists(), "{name}");
    for (p, c) in &files {
        let p = p.replace("proj/", "archive/proj-2026/");
        assert_eq!(ff.read(&p).as_deref(), Some(c.as_str()), "{name}: {p}");
    }
    assert_eq!(
        ff.status("archive/proj-2026/part9/f0999.txt"),
        (Status::Synced, None),
        "{name}"
    );
    assert!(ff.journal().queue().unwrap().is_empty(), "{name}");
    Measured { gets, secs }
}

#[test]
fn a_folder_of_1000_files_moved_in_a_file_cloud_is_one_rename() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cloud");
    std::fs::create_dir(&dir).unwrap();
    let cloud: Arc<dyn Cloud> = Arc::new(DirCloud::new(&dir).unwrap());
    let d = dir.clone();
    let m = move_project("file://", cloud, dir, &move || {
        std::fs::create_dir(d.join("archive")).unwrap();
        std::fs::rename(d.join("proj"), d.join("archive/proj-2026")).unwrap();
    });
    assert_eq!(m.gets, 0, "no file fetched again");
    assert!(m.secs < 30.0);
}

/// The GETs in SabreDAV's access log since `from` bytes.
fn logged_gets(srv: &DavServer, from: usize) -> usize {
    srv.access_log()[from..]
        .lines()
        .filter(|l| l.starts_with("GET "))
        .count()
}

fn dav(profile: Profile) {
    let srv = DavServer::start(profile.clone());
    let cloud: Arc<dyn Cloud> = Arc::new(WebDav::new(&srv.url, &CloudOptions::default()).unwrap());
    // Another client of the server moves the folder, with MKCOL and MOVE.
    let mover = WebDav::new(&srv.url, &CloudOptions::default()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let log_at = std::cell::Cell::new(0);
    let name = format!("WebDAV {profile:?}");
    let sabre = matches!(profile, Profile::Sabre | Profile::SabreFolderEtags);
    let m = move_project(&name, cloud, srv.data.clone(), &|| {
        if profile == Profile::Apache {
            // Apache gives a file written less than a second ago a weak ETag, which same-size
            // files written in that second share: such files cannot be paired (they are
            // merged file by file, see SEMANTICS). The move comes later than that here, as a
            // move by another client of files uploaded earlier does.
            std::thread::sleep(std::time::Duration::from_millis(1500));
        }
        rt.block_on(async {
            mover.mkdir("archive").await.unwrap();
            mover.rename("proj", "archive/proj-2026").await.unwrap();
        });
        log_at.set(srv.access_log().len());
    });
    assert_eq!(m.gets, 0, "{name}: no file fetched again");
    if !sabre {
        return; // only SabreDAV keeps an access log here
    }
    let logged = logged_gets(&srv, log_at.get());
    eprintln!("{name}: {logged} GETs in the server's log");
    assert_eq!(logged, 0, "{name}: the server saw no GET");
    // The log does show GETs when there are some: a file new in the cloud is fetched.
    let at = srv.access_log().len();
    let c = WebDav::new(&srv.url, &CloudOptions::default()).unwrap();
    rt.block_on(async {
        let tmp = tempfile::tempfile().unwrap();
        c.get_file("archive/proj-2026/part0/f0000.txt", &tmp)
            .await
            .unwrap();
    });
    assert_eq!(logged_gets(&srv, at), 1, "the log counts GETs");
}

#[test]
fn a_folder_of_1000_files_moved_on_sabredav_is_one_rename() {
    dav(Profile::Sabre);
}

#[test]
fn a_folder_of_1000_files_moved_on_sabredav_with_file_ids_is_one_rename() {
    dav(Profile::SabreFolderEtags);
}

#[test]
fn a_folder_of_1000_files_moved_on_apache_is_one_rename() {
    dav(Profile::Apache);
}

#[test]
fn a_folder_of_1000_files_moved_on_rclone_is_one_rename() {
    dav(Profile::Rclone);
}
