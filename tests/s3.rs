//! The S3 cloud beyond the contract, on each real store (SeaweedFS, moto, s3s-fs): multipart
//! uploads cut short and resumed with the parts that were done (recorded in the journal),
//! refused keys, a file and a folder of one name, probes that leave nothing behind, and
//! secrets that never show.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cloudsync::cloud::s3::S3;
use cloudsync::cloud::{
    Cloud, CloudError, CloudOptions, MovedObject, MultipartUpload, PartDone, Precondition,
    UploadLedger,
};
use cloudsync::journal::{Intent, Journal};
use cloudsync::sync::ledger::JournalLedger;
use cloudsync::sync::sets::SyncSets;
use support::s3::{KEY, REGION, S3Server, SECRET, Store};

const MIB: u64 = 1 << 20;

fn opts(server: &S3Server, dir: &std::path::Path, secret: &str) -> CloudOptions {
    let creds = dir.join("credentials");
    std::fs::write(
        &creds,
        format!("aws_access_key_id = {KEY}\naws_secret_access_key = {secret}\n"),
    )
    .unwrap();
    CloudOptions {
        s3_endpoint: Some(server.endpoint.clone()),
        s3_region: Some(REGION.into()),
        credentials_file: Some(creds),
        ..CloudOptions::default()
    }
}

fn server(store: Store) -> &'static S3Server {
    assert!(
        support::s3::available(store),
        "{store:?} is not installed: run scripts/test once (it installs the S3 test stores)"
    );
    S3Server::shared(store)
}

/// The journal's ledger, counting the parts recorded and telling when `stop_after` were.
struct Counting {
    inner: JournalLedger,
    parts: AtomicUsize,
    stop_after: usize,
    stop: tokio::sync::Notify,
    ended: Mutex<Vec<String>>,
}

impl UploadLedger for Counting {
    fn upload(&self, path: &str) -> std::io::Result<Option<MultipartUpload>> {
        self.inner.upload(path)
    }
    fn begin(&self, up: &MultipartUpload) -> std::io::Result<()> {
        self.inner.begin(up)
    }
    fn part_done(&self, path: &str, upload_id: &str, part: &PartDone) -> std::io::Result<()> {
        self.inner.part_done(path, upload_id, part)?;
        if self.parts.fetch_add(1, Ordering::SeqCst) + 1 == self.stop_after {
            self.stop.notify_one();
        }
        Ok(())
    }
    fn end(&self, upload_id: &str) -> std::io::Result<()> {
        self.ended.lock().unwrap().push(upload_id.to_string());
        self.inner.end(upload_id)
    }
    fn abandoned(&self) -> std::io::Result<Vec<MultipartUpload>> {
        self.inner.abandoned()
    }
    fn move_plan(&self, from: &str, to: &str) -> std::io::Result<Option<Vec<MovedObject>>> {
        self.inner.move_plan(from, to)
    }
    fn begin_move(&self, from: &str, to: &str) -> std::io::Result<()> {
        self.inner.begin_move(from, to)
    }
    fn object_copied(&self, from: &str, to: &str, object: &MovedObject) -> std::io::Result<()> {
        self.inner.object_copied(from, to, object)?;
        if self.parts.fetch_add(1, Ordering::SeqCst) + 1 == self.stop_after {
            self.stop.notify_one();
        }
        Ok(())
    }
    fn end_move(&self, from: &str, to: &str) -> std::io::Result<()> {
        self.ended.lock().unwrap().push(format!("{from} -> {to}"));
        self.inner.end_move(from, to)
    }
}

/// A 69 MiB file in 8 MiB parts, four at a time: cut short once two parts are recorded (more
/// may land meanwhile), then resumed with only the parts not recorded sent; the object is the
/// file, the hash is the file's (made of the parts' hashes), and the record is gone.
async fn multipart_resumes(store: Store) {
    let server = server(store);
    let bucket = server.bucket("multipart");
    let tmp = tempfile::tempdir().unwrap();
    let journal = Arc::new(Journal::open(&tmp.path().join("j.db")).unwrap());
    journal
        .set_intent(&Intent {
            path: "big.bin".into(),
            precondition: Some(Precondition::IfNoneMatch),
            size: None,
            hash: None,
            started_at: 0,
        })
        .unwrap();
    let ledger = Arc::new(Counting {
        inner: JournalLedger::new(journal.clone(), SyncSets::whole()),
        parts: AtomicUsize::new(0),
        stop_after: 2,
        stop: tokio::sync::Notify::new(),
        ended: Mutex::new(Vec::new()),
    });
    // Nine parts of 8 MiB (the last 5 MiB), four at a time.
    let data: Vec<u8> = (0..69 * MIB).map(|i| (i * 7 % 251) as u8).collect();
    let path = tmp.path().join("big.bin");
    std::fs::write(&path, &data).unwrap();
    let open = || {
        S3::new(
            &format!("s3://{bucket}/site/"),
            &opts(server, tmp.path(), SECRET),
        )
        .unwrap()
        .with_multipart(6 * MIB, 8 * MIB)
    };

    let first = open();
    first.use_upload_ledger(ledger.clone());
    let f = std::fs::File::open(&path).unwrap();
    tokio::select! {
        r = first.upload("big.bin", &f, &Precondition::IfNoneMatch) => {
            panic!("{store:?}: the first attempt was not cut short: {r:?}")
        }
        _ = ledger.stop.notified() => {}
    }
    drop(first);
    let rec = journal
        .multipart_upload("big.bin")
        .unwrap()
        .expect("a record");
    let before = rec.parts.len();
    assert!(
        (2..9).contains(&before),
        "{store:?}: {before} parts recorded"
    );
    assert_eq!(
        journal.multipart_uploads().unwrap().len(),
        1,
        "{store:?}: the record waits for its intent"
    );

    // A restart: a new client, the same journal.
    let second = open();
    second.use_upload_ledger(ledger.clone());
    let up = second
        .upload("big.bin", &f, &Precondition::IfNoneMatch)
        .await
        .unwrap_or_else(|e| panic!("{store:?}: resume: {e}"));
    assert_eq!(
        ledger.parts.load(Ordering::SeqCst),
        9,
        "{store:?}: {before} parts recorded before, each part went up once"
    );
    assert_eq!(
        up.hash.as_deref(),
        Some(blake3::hash(&data).to_hex().as_str()),
        "{store:?}"
    );
    assert!(up.etag.is_some());
    let raw = server.raw(&bucket);
    assert!(
        raw.get("site/big.bin").unwrap() == data,
        "{store:?}: content"
    );
    assert_eq!(journal.multipart_upload("big.bin").unwrap(), None);
    assert_eq!(*ledger.ended.lock().unwrap(), vec![rec.upload_id]);

    // The completion carries its condition: a second new upload of the name is refused.
    let again = second
        .upload("big.bin", &f, &Precondition::IfNoneMatch)
        .await;
    assert!(
        matches!(again, Err(CloudError::PreconditionFailed)),
        "{store:?}: {again:?}"
    );
    let tag = up.etag.unwrap();
    second
        .upload("big.bin", &f, &Precondition::IfMatch(tag.clone()))
        .await
        .unwrap_or_else(|e| panic!("{store:?}: update: {e}"));
    let stale = second
        .upload("big.bin", &f, &Precondition::IfMatch(tag))
        .await;
    // The same content again may keep its tag on some stores; a refusal is what matters when
    // it does not.
    if let Err(e) = stale {
        assert!(
            matches!(e, CloudError::PreconditionFailed),
            "{store:?}: {e:?}"
        );
    }
    assert!(journal.multipart_uploads().unwrap().is_empty(), "{store:?}");
}

/// An upload recorded but waited for by nothing is aborted at the next run's first multipart
/// upload; the ledger forgets it.
async fn abandoned_uploads_are_aborted(store: Store) {
    let server = server(store);
    let bucket = server.bucket("abandoned");
    let tmp = tempfile::tempdir().unwrap();
    let journal = Arc::new(Journal::open(&tmp.path().join("j.db")).unwrap());
    let ledger = Arc::new(Counting {
        inner: JournalLedger::new(journal.clone(), SyncSets::whole()),
        parts: AtomicUsize::new(0),
        stop_after: 1,
        stop: tokio::sync::Notify::new(),
        ended: Mutex::new(Vec::new()),
    });
    let path = tmp.path().join("f.bin");
    std::fs::write(&path, vec![1u8; (6 * MIB) as usize]).unwrap();
    let open = || {
        S3::new(
            &format!("s3://{bucket}/"),
            &opts(server, tmp.path(), SECRET),
        )
        .unwrap()
        .with_multipart(6 * MIB, 5 * MIB)
    };
    let c = open();
    c.use_upload_ledger(ledger.clone());
    let f = std::fs::File::open(&path).unwrap();
    tokio::select! {
        r = c.upload("gone.bin", &f, &Precondition::IfNoneMatch) => panic!("{r:?}"),
        _ = ledger.stop.notified() => {}
    }
    drop(c);
    let id = journal
        .multipart_upload("gone.bin")
        .unwrap()
        .unwrap()
        .upload_id;
    // No intent waits for gone.bin: the next run aborts it before its own upload.
    let c = open();
    c.use_upload_ledger(ledger.clone());
    c.upload("other.bin", &f, &Precondition::IfNoneMatch)
        .await
        .unwrap();
    assert!(
        ledger.ended.lock().unwrap().contains(&id),
        "{store:?}: {:?}",
        ledger.ended
    );
    assert!(journal.multipart_uploads().unwrap().is_empty());
}

/// Wrong keys are an authentication error, never retried as transient.
async fn wrong_keys_are_refused(store: Store) {
    let server = server(store);
    let bucket = server.bucket("keys");
    let tmp = tempfile::tempdir().unwrap();
    let c = S3::new(
        &format!("s3://{bucket}/"),
        &opts(server, tmp.path(), "not-the-secret"),
    )
    .unwrap();
    let e = c.list("").await.unwrap_err();
    assert!(matches!(e, CloudError::Unauthorized), "{store:?}: {e:?}");
    assert!(!e.is_transient());
    let shown = format!("{c:?} {} {e}", c.describe());
    assert!(!shown.contains("not-the-secret"), "{shown}");
}

/// A file `x` beside keys `x/…`: the folder wins, the file is skipped as a name clash and left
/// alone; a key beside the prefix is never shown; probes leave nothing behind.
async fn clashes_and_refused_keys(store: Store) {
    let server = server(store);
    let bucket = server.bucket("clash");
    let tmp = tempfile::tempdir().unwrap();
    let c = S3::new(
        &format!("s3://{bucket}/p/"),
        &opts(server, tmp.path(), SECRET),
    )
    .unwrap();
    let raw = server.raw(&bucket);
    assert_eq!(raw.put("outside.txt", b"o"), 200);
    // A directory store (s3s-fs) cannot hold a file and a folder of one name.
    if store != Store::S3sFs {
        assert_eq!(raw.put("p/x", b"file"), 200);
        assert_eq!(raw.put("p/x/inner.txt", b"in"), 200);
        let l = c.list("").await.unwrap();
        let shown: Vec<_> = l
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e.is_dir))
            .collect();
        assert_eq!(shown, [("x", true)], "{store:?}");
        assert!(
            l.skipped.iter().any(|s| s.contains("name clash")),
            "{store:?}: {:?}",
            l.skipped
        );
        assert!(c.stat("x").await.unwrap().unwrap().is_dir);
        // The flat listing of the whole tree says the same.
        let t = c.list_tree("").await.unwrap().unwrap();
        let mut shown: Vec<_> = t
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e.is_dir))
            .collect();
        shown.sort();
        assert_eq!(shown, [("x", true), ("x/inner.txt", false)], "{store:?}");
        assert!(
            t.skipped.iter().any(|s| s.contains("name clash")),
            "{store:?}: {:?}",
            t.skipped
        );
        assert_eq!(raw.get("p/x").unwrap(), b"file");
    }
    // The probes leave nothing behind.
    let _ = c.honours_conditions().await;
    c.mkdir("made").await.unwrap();
    let keys = raw.keys("");
    assert!(
        !keys.iter().any(|k| k.contains(".cloudsync-probe")),
        "{store:?}: {keys:?}"
    );
}

/// A folder move cut short after five copies (as by a kill -9: the future is dropped, copies
/// in flight may land unrecorded) and run again by a new client on the same journal: it goes
/// on without taking its own copies for someone else's, moves the file edited meanwhile in its
/// new version, never replaces an object someone put at the new name (that source stays under
/// the old name), and ends its record.
async fn folder_moves_resume(store: Store) {
    let server = server(store);
    let bucket = server.bucket("moves");
    let tmp = tempfile::tempdir().unwrap();
    let journal = Arc::new(Journal::open(&tmp.path().join("j.db")).unwrap());
    let ledger = Arc::new(Counting {
        inner: JournalLedger::new(journal.clone(), SyncSets::whole()),
        parts: AtomicUsize::new(0),
        stop_after: 5,
        stop: tokio::sync::Notify::new(),
        ended: Mutex::new(Vec::new()),
    });
    let open = || {
        let c = S3::new(
            &format!("s3://{bucket}/site/"),
            &opts(server, tmp.path(), SECRET),
        )
        .unwrap();
        c.use_upload_ledger(ledger.clone());
        c
    };
    let raw = server.raw(&bucket);
    let first = open();
    first.mkdir("a").await.unwrap();
    first.mkdir("a/sub").await.unwrap();
    first.mkdir("a/empty").await.unwrap();
    let mut want: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..25 {
        want.push((format!("f{i:02}"), format!("file {i}").into_bytes()));
    }
    want.push(("sub/s1".into(), b"s1".to_vec()));
    want.push(("sub/s2".into(), b"s2".to_vec()));
    for (rel, data) in &want {
        assert_eq!(raw.put(&format!("site/a/{rel}"), data), 200, "{store:?}");
    }
    assert_eq!(raw.put("site/a/z.txt", b"ours"), 200);

    tokio::select! {
        r = first.rename("a", "b") => panic!("{store:?}: the move was not cut short: {r:?}"),
        _ = ledger.stop.notified() => {}
    }
    drop(first);
    assert!(
        journal.cloud_move("a", "b").unwrap().is_some(),
        "{store:?}: the move is on record"
    );
    for (rel, data) in &want {
        assert_eq!(
            raw.get(&format!("site/a/{rel}")).as_ref(),
            Some(data),
            "{store:?}: no source goes before every copy is made"
        );
    }
    // While the daemon is down: an edit under the old name, and someone's file at the new one.
    assert_eq!(raw.put("site/a/f24", b"edited meanwhile"), 200);
    want[24].1 = b"edited meanwhile".to_vec();
    assert_eq!(raw.put("site/b/z.txt", b"someone else's"), 200);

    let second = open();
    second
        .rename("a", "b")
        .await
        .unwrap_or_else(|e| panic!("{store:?}: resume: {e}"));
    for (rel, data) in &want {
        if rel == "f24"
            && raw.get("site/a/f24").as_deref() == Some(b"edited meanwhile".as_slice())
            && raw.get("site/b/f24").as_deref() == Some(b"file 24".as_slice())
        {
            // A copy of the old version in flight at the cut landed unrecorded: it cannot be
            // told from someone else's object, so the edited source stays where it is.
            continue;
        }
        assert_eq!(
            raw.get(&format!("site/b/{rel}")).as_ref(),
            Some(data),
            "{store:?}: b/{rel}"
        );
        assert_eq!(
            raw.get(&format!("site/a/{rel}")),
            None,
            "{store:?}: a/{rel}"
        );
    }
    assert_eq!(raw.get("site/b/z.txt").unwrap(), b"someone else's");
    assert_eq!(
        raw.get("site/a/z.txt").unwrap(),
        b"ours",
        "{store:?}: a source whose new name is taken stays"
    );
    assert!(
        second.stat("b/empty").await.unwrap().unwrap().is_dir,
        "{store:?}"
    );
    assert!(
        second.stat("b/sub").await.unwrap().unwrap().is_dir,
        "{store:?}"
    );
    assert!(second.stat("a/empty").await.unwrap().is_none(), "{store:?}");
    assert!(second.stat("a/sub").await.unwrap().is_none(), "{store:?}");
    assert_eq!(journal.cloud_move("a", "b").unwrap(), None, "{store:?}");
    assert_eq!(*ledger.ended.lock().unwrap(), ["a -> b"], "{store:?}");
    // Each object once, but the edited one and the one whose new name was taken may have been
    // copied by the first run too.
    let recorded = ledger.parts.load(Ordering::SeqCst);
    assert!(
        recorded <= want.len() + 2,
        "{store:?}: {recorded} copies recorded for {} objects",
        want.len()
    );

    // A move of the whole folder back, begun and finished in one run, leaves no record.
    second.rename("b", "c").await.unwrap();
    assert_eq!(raw.get("site/c/f00").unwrap(), b"file 0");
    assert!(
        raw.keys("site/b/").is_empty(),
        "{store:?}: {:?}",
        raw.keys("site/b/")
    );
    assert_eq!(journal.cloud_move("b", "c").unwrap(), None);
}

/// A tiny deterministic generator for the randomized tests.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Folder moves cut short at random points, with random edits, deletes and objects of someone
/// else's landing while the daemon is down, then resumed: nothing is lost (every object's
/// latest version is under the new name or, where it could not go, the old one), nothing of
/// someone else's is replaced, what nobody touched is under the new name only, and the move's
/// record ends.
async fn folder_moves_resume_at_random_points(store: Store) {
    let server = server(store);
    let bucket = server.bucket("random-moves");
    let raw = server.raw(&bucket);
    for seed in 1..=6u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let tmp = tempfile::tempdir().unwrap();
        let journal = Arc::new(Journal::open(&tmp.path().join("j.db")).unwrap());
        let n = 8 + rng.below(20) as usize;
        let ledger = Arc::new(Counting {
            inner: JournalLedger::new(journal.clone(), SyncSets::whole()),
            parts: AtomicUsize::new(0),
            stop_after: 1 + rng.below(n as u64 - 1) as usize,
            stop: tokio::sync::Notify::new(),
            ended: Mutex::new(Vec::new()),
        });
        let root = format!("r{seed}");
        let open = || {
            let c = S3::new(
                &format!("s3://{bucket}/{root}/"),
                &opts(server, tmp.path(), SECRET),
            )
            .unwrap();
            c.use_upload_ledger(ledger.clone());
            c
        };
        let first = open();
        first.mkdir("a").await.unwrap();
        first.mkdir("a/d").await.unwrap();
        let rels: Vec<String> = (0..n)
            .map(|i| {
                if rng.below(3) == 0 {
                    format!("d/f{i:02}")
                } else {
                    format!("f{i:02}")
                }
            })
            .collect();
        let key = |side: &str, rel: &str| format!("{root}/{side}/{rel}");
        for (i, rel) in rels.iter().enumerate() {
            assert_eq!(raw.put(&key("a", rel), format!("v0 {i}").as_bytes()), 200);
        }
        tokio::select! {
            r = first.rename("a", "b") => panic!("{store:?} seed {seed}: not cut short: {r:?}"),
            _ = ledger.stop.notified() => {}
        }
        drop(first);
        // Requests in flight at the cut may still be carried out by the store: they land
        // first, as they would just after a real kill -9 (s3s-fs, which writes an object's
        // bytes and its ETag in two steps, could otherwise mix one of them with a put below).
        tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
        // While the daemon is down.
        let mut latest: Vec<Option<Vec<u8>>> = (0..n)
            .map(|i| Some(format!("v0 {i}").into_bytes()))
            .collect();
        let mut taken: Vec<Option<Vec<u8>>> = vec![None; n];
        let mut touched = vec![false; n];
        for i in 0..n {
            match rng.below(6) {
                0 => {
                    let v = format!("v1 {i} edited").into_bytes();
                    assert_eq!(raw.put(&key("a", &rels[i]), &v), 200);
                    latest[i] = Some(v);
                    touched[i] = true;
                }
                1 => {
                    let v = format!("someone's {i}").into_bytes();
                    assert_eq!(raw.put(&key("b", &rels[i]), &v), 200);
                    taken[i] = Some(v);
                    touched[i] = true;
                }
                2 => {
                    raw.delete_with(&key("a", &rels[i]), None);
                    latest[i] = None;
                    touched[i] = true;
                }
                _ => {}
            }
        }
        open()
            .rename("a", "b")
            .await
            .unwrap_or_else(|e| panic!("{store:?} seed {seed}: resume: {e}"));
        for i in 0..n {
            let (old, new) = (raw.get(&key("a", &rels[i])), raw.get(&key("b", &rels[i])));
            let what = format!(
                "{store:?} seed {seed}: {} (old {old:?}, new {new:?})",
                rels[i]
            );
            if let Some(theirs) = &taken[i] {
                // Someone's object at the new name is never replaced... unless ours had gone
                // there before and theirs replaced it: then ours stays under the old name.
                assert_eq!(new.as_ref(), Some(theirs), "{what}");
                assert_eq!(old, latest[i], "{what}");
                continue;
            }
            if let Some(v) = &latest[i] {
                assert!(
                    new.as_ref() == Some(v) || old.as_ref() == Some(v),
                    "lost: {what}"
                );
            }
            if !touched[i] {
                assert_eq!(new, latest[i], "{what}");
                assert_eq!(old, None, "{what}");
            }
        }
        assert_eq!(
            journal.cloud_move("a", "b").unwrap(),
            None,
            "{store:?} seed {seed}"
        );
    }
}

/// SeaweedFS's S3 gateway is killed and started again in the middle of a multipart upload: the
/// attempt fails as transient trouble (offline, retried), and the retry goes on with the parts
/// the journal recorded, once the gateway is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seaweedfs_gateway_restart_mid_multipart() {
    assert!(
        support::s3::available(Store::Seaweed),
        "SeaweedFS is not installed: run scripts/test once"
    );
    // A cluster of its own: its gateway goes away for a while.
    let mut server = S3Server::start(Store::Seaweed);
    let bucket = server.bucket("restart");
    let tmp = tempfile::tempdir().unwrap();
    let journal = Arc::new(Journal::open(&tmp.path().join("j.db")).unwrap());
    journal
        .set_intent(&Intent {
            path: "big.bin".into(),
            precondition: Some(Precondition::IfNoneMatch),
            size: None,
            hash: None,
            started_at: 0,
        })
        .unwrap();
    let ledger = Arc::new(Counting {
        inner: JournalLedger::new(journal.clone(), SyncSets::whole()),
        parts: AtomicUsize::new(0),
        stop_after: 2,
        stop: tokio::sync::Notify::new(),
        ended: Mutex::new(Vec::new()),
    });
    let data: Vec<u8> = (0..45 * MIB).map(|i| (i * 13 % 253) as u8).collect();
    let path = tmp.path().join("big.bin");
    std::fs::write(&path, &data).unwrap();
    let o = opts(&server, tmp.path(), SECRET);
    let c = Arc::new(
        S3::new(&format!("s3://{bucket}/"), &o)
            .unwrap()
            .with_multipart(6 * MIB, 8 * MIB),
    );
    c.use_upload_ledger(ledger.clone());
    let (c2, p2) = (c.clone(), path.clone());
    let first = tokio::spawn(async move {
        let f = std::fs::File::open(p2).unwrap();
        c2.upload("big.bin", &f, &Precondition::IfNoneMatch).await
    });
    ledger.stop.notified().await;
    let server = tokio::task::spawn_blocking(move || {
        server.restart_gateway();
        server
    })
    .await
    .unwrap();
    let e = first.await.unwrap().unwrap_err();
    assert!(
        e.is_transient(),
        "a gateway restart is offline, not failed: {e:?}"
    );
    let done = journal
        .multipart_upload("big.bin")
        .unwrap()
        .unwrap()
        .parts
        .len();
    assert!((2..6).contains(&done), "{done} parts recorded");

    let f = std::fs::File::open(&path).unwrap();
    let up = c
        .upload("big.bin", &f, &Precondition::IfNoneMatch)
        .await
        .unwrap();
    assert_eq!(
        ledger.parts.load(Ordering::SeqCst),
        6,
        "each of the six parts went up once"
    );
    assert_eq!(
        up.hash.as_deref(),
        Some(blake3::hash(&data).to_hex().as_str())
    );
    assert!(server.raw(&bucket).get("big.bin").unwrap() == data);
    assert!(journal.multipart_uploads().unwrap().is_empty());
}

/// Listings of two keys a page: a folder of seven children is listed whole, and a folder tree
/// is moved and deleted whole, across page ends.
async fn listings_cross_pages(store: Store) {
    let server = server(store);
    let bucket = server.bucket("pages");
    let tmp = tempfile::tempdir().unwrap();
    let c = S3::new(
        &format!("s3://{bucket}/"),
        &opts(server, tmp.path(), SECRET),
    )
    .unwrap()
    .with_page_size(2);
    let f = tmp.path().join("x");
    std::fs::write(&f, b"x").unwrap();
    let f = std::fs::File::open(&f).unwrap();
    c.mkdir("d/empty").await.unwrap();
    for n in ["a", "b", "c", "e", "sub/one", "sub/two"] {
        c.upload(&format!("d/{n}"), &f, &Precondition::IfNoneMatch)
            .await
            .unwrap();
    }
    let mut got: Vec<_> = c
        .list("d")
        .await
        .unwrap()
        .entries
        .into_iter()
        .map(|e| e.path)
        .collect();
    got.sort();
    assert_eq!(
        got,
        ["d/a", "d/b", "d/c", "d/e", "d/empty", "d/sub"],
        "{store:?}"
    );
    c.rename("d", "moved").await.unwrap();
    assert_eq!(c.stat("d").await.unwrap(), None, "{store:?}");
    assert_eq!(c.list("moved").await.unwrap().entries.len(), 6, "{store:?}");
    assert!(c.stat("moved/empty").await.unwrap().unwrap().is_dir);
    c.delete("moved", &Precondition::None).await.unwrap();
    assert_eq!(c.stat("moved").await.unwrap(), None, "{store:?}");
    let left: Vec<String> = server
        .raw(&bucket)
        .keys("")
        .into_iter()
        .filter(|k| !k.starts_with(".cloudsync-probe"))
        .collect();
    assert!(left.is_empty(), "{store:?}: {left:?}");
}

/// A new file costs one listing and its PUT, with a proxy counting the requests: the listing
/// of its folder after its key (`start-after`) tells whether a folder has its name and proves
/// the folders above it. The guarantees stay: a folder of the name (behind names that sort
/// between `x` and `x/`) and a file where a folder should be are still found.
async fn new_files_cost_a_listing_and_a_put(store: Store) {
    use support::proxy::{Fault, FaultProxy};
    let server = server(store);
    let bucket = server.bucket("small");
    let tmp = tempfile::tempdir().unwrap();
    let addr: std::net::SocketAddr = server
        .endpoint
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let proxy = FaultProxy::start(addr);
    proxy.set(Fault::Logged);
    let mut o = opts(server, tmp.path(), SECRET);
    o.s3_endpoint = Some(proxy.url(""));
    let c = S3::new(&format!("s3://{bucket}/p/"), &o).unwrap();
    let f = tmp.path().join("f");
    std::fs::write(&f, vec![7u8; 4096]).unwrap();
    let f = std::fs::File::open(&f).unwrap();
    // The probes (conditions, listings) once, and the folder.
    let _ = c.honours_conditions().await;
    c.mkdir("d").await.unwrap();
    let from = proxy.requests().len();
    const N: usize = 20;
    for i in 0..N {
        c.upload(&format!("d/f{i:02}"), &f, &Precondition::IfNoneMatch)
            .await
            .unwrap();
    }
    let sent: Vec<String> = proxy.requests()[from..].to_vec();
    let puts = sent.iter().filter(|r| r.starts_with("PUT ")).count();
    let lists = sent.iter().filter(|r| r.contains("list-type=2")).count();
    assert_eq!(puts, N, "{store:?}: {sent:#?}");
    assert_eq!(lists, N, "{store:?}: {sent:#?}");
    assert_eq!(sent.len(), 2 * N, "{store:?}: {sent:#?}");
    // A new folder: the first file in it looks for a file above once, the next ones do not.
    let from = proxy.requests().len();
    for i in 0..3 {
        c.upload(&format!("new/f{i}"), &f, &Precondition::IfNoneMatch)
            .await
            .unwrap();
    }
    let sent: Vec<String> = proxy.requests()[from..].to_vec();
    assert!(sent.len() <= 2 * 3 + 2, "{store:?}: {sent:#?}");
    // A folder of the name is found behind names that sort between `x` and `x/`.
    let raw = server.raw(&bucket);
    assert_eq!(raw.put("p/d/x/inner", b"in"), 200);
    for n in ["x!", "x-1", "x.bak", "x.old", "x(1)"] {
        assert_eq!(raw.put(&format!("p/d/{n}"), b"s"), 200);
    }
    let e = c
        .upload("d/x", &f, &Precondition::IfNoneMatch)
        .await
        .unwrap_err();
    assert!(
        matches!(e, CloudError::PreconditionFailed),
        "{store:?}: {e:?}"
    );
    assert!(!raw.keys("p/d/").iter().any(|k| k == "p/d/x"), "{store:?}");
    let e = c.upload("d/x", &f, &Precondition::None).await.unwrap_err();
    assert!(
        matches!(e, CloudError::PreconditionFailed),
        "{store:?}: {e:?}"
    );
    // A file where a folder should be, in a folder never seen.
    assert_eq!(raw.put("p/file", b"f"), 200);
    let e = c
        .upload("file/y", &f, &Precondition::IfNoneMatch)
        .await
        .unwrap_err();
    assert!(
        matches!(e, CloudError::PreconditionFailed),
        "{store:?}: {e:?}"
    );
    // A folder deleted by this client is no longer taken as one: a file of its name, made
    // behind its back, is in the way again.
    c.delete("new", &Precondition::None).await.unwrap();
    if store != Store::S3sFs {
        assert_eq!(raw.put("p/new", b"now a file"), 200);
        let e = c
            .upload("new/f9", &f, &Precondition::IfNoneMatch)
            .await
            .unwrap_err();
        assert!(
            matches!(e, CloudError::PreconditionFailed),
            "{store:?}: {e:?}"
        );
    }
}

/// A flat listing of a whole tree, with pages of three keys: the first one page after
/// another, the next ones in ranges cut where the last one saw every third key, listed side
/// by side; keys added before, between and after the cuts and keys deleted (cuts among them)
/// show as they are, each once.
async fn flat_listings_in_ranges(store: Store) {
    let server = server(store);
    let bucket = server.bucket("flat");
    let tmp = tempfile::tempdir().unwrap();
    let c = S3::new(
        &format!("s3://{bucket}/p/"),
        &opts(server, tmp.path(), SECRET),
    )
    .unwrap()
    .with_page_size(3);
    let f = tmp.path().join("x");
    std::fs::write(&f, b"x").unwrap();
    let f = std::fs::File::open(&f).unwrap();
    let put = |p: String| {
        let c = &c;
        let f = &f;
        async move {
            c.upload(&p, f, &Precondition::IfNoneMatch).await.unwrap();
        }
    };
    let mut want: std::collections::BTreeSet<(String, bool)> = Default::default();
    for d in ["b", "d", "f"] {
        for n in 0..4 {
            put(format!("{d}/sub/{n}")).await;
            want.insert((format!("{d}/sub/{n}"), false));
        }
        want.insert((d.to_string(), true));
        want.insert((format!("{d}/sub"), true));
    }
    c.mkdir("e/empty").await.unwrap();
    want.insert(("e".into(), true));
    want.insert(("e/empty".into(), true));
    let listed = |t: cloudsync::cloud::Subtree| {
        let got: std::collections::BTreeSet<(String, bool)> = t
            .entries
            .iter()
            .map(|e| (e.path.clone(), e.is_dir))
            .collect();
        assert_eq!(got.len(), t.entries.len(), "{store:?}: listed twice");
        (got, t.requests)
    };
    let (got, first) = listed(c.list_tree("").await.unwrap().unwrap());
    assert_eq!(got, want, "{store:?}");
    let (got, again) = listed(c.list_tree("").await.unwrap().unwrap());
    assert_eq!(got, want, "{store:?}");
    // Ranges one key short of a page each: one page a range.
    assert!(
        again <= first * 3 / 2 + 1,
        "{store:?}: {again} requests after {first}"
    );
    // Keys before, among and after the cuts; keys deleted.
    for p in ["a", "b/sub/1a", "c/x", "d/sub/9/deep", "g/z", "zz"] {
        put(p.to_string()).await;
        want.insert((p.to_string(), false));
    }
    for d in ["c", "d/sub/9", "g"] {
        want.insert((d.to_string(), true));
    }
    for p in ["b/sub/2", "f/sub/0", "f/sub/3"] {
        c.delete(p, &Precondition::None).await.unwrap();
        want.remove(&(p.to_string(), false));
    }
    let (got, _) = listed(c.list_tree("").await.unwrap().unwrap());
    let (got2, _) = listed(c.list_tree("").await.unwrap().unwrap());
    assert_eq!(got, want, "{store:?}");
    assert_eq!(got, got2, "{store:?}");
    assert!(matches!(
        c.list_tree("nothing").await.unwrap(),
        Err(CloudError::NotFound)
    ));
}

/// SeaweedFS over HTTPS with a private CA: trusted with `ca_file`, refused without it, and the
/// refusal is a configuration error, not transient trouble.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seaweedfs_over_https_with_a_private_ca() {
    assert!(
        support::s3::available(Store::Seaweed),
        "SeaweedFS is not installed: run scripts/test once"
    );
    let server = S3Server::start_tls();
    let bucket = server.bucket("tls");
    let (https, ca) = server.tls.clone().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut o = opts(&server, tmp.path(), SECRET);
    o.s3_endpoint = Some(https);
    let plain = S3::new(&format!("s3://{bucket}/"), &o).unwrap();
    let e = plain.list("").await.unwrap_err();
    assert!(!e.is_transient(), "{e:?}");
    assert!(e.to_string().contains("--ca-file"), "{e}");
    o.ca_file = Some(ca);
    let c = S3::new(&format!("s3://{bucket}/"), &o).unwrap();
    let p = tmp.path().join("f");
    std::fs::write(&p, b"over TLS").unwrap();
    c.upload(
        "t.txt",
        &std::fs::File::open(&p).unwrap(),
        &Precondition::IfNoneMatch,
    )
    .await
    .unwrap();
    let back = tmp.path().join("back");
    c.get_file("t.txt", &std::fs::File::create(&back).unwrap())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), b"over TLS");
}

macro_rules! on_every_store {
    ($($name:ident => $body:ident),* $(,)?) => {
        mod seaweedfs {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$body(Store::Seaweed).await }
            )*
        }
        mod moto {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$body(Store::Moto).await }
            )*
        }
        mod s3s_fs {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$body(Store::S3sFs).await }
            )*
        }
    };
}

on_every_store! {
    multipart_resumes => multipart_resumes,
    abandoned_uploads_are_aborted => abandoned_uploads_are_aborted,
    clashes_and_refused_keys => clashes_and_refused_keys,
    listings_cross_pages => listings_cross_pages,
    new_files_cost_a_listing_and_a_put => new_files_cost_a_listing_and_a_put,
    flat_listings_in_ranges => flat_listings_in_ranges,
    folder_moves_resume => folder_moves_resume,
    folder_moves_resume_at_random_points => folder_moves_resume_at_random_points,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_seaweedfs() {
    wrong_keys_are_refused(Store::Seaweed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_s3s_fs() {
    wrong_keys_are_refused(Store::S3sFs).await;
}
