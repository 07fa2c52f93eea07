//! The whole product against a real S3 store: the `cloudsync` binary mounted through real FUSE,
//! syncing to a SeaweedFS cluster (one per test binary, a bucket per test), with a
//! fault-injecting proxy in between where a test needs one. The scenarios of the WebDAV mount
//! tests: editor saves, kill -9 in a burst of small writes and in the middle of a multipart
//! upload, an offline drain, a conflict, sync sets and the status attributes.

mod harness;
mod support;

use std::fs;
use std::time::{Duration, Instant};

use harness::{
    Mount, conflict_copies, diff, not_content, tree, uploaded_paths, wait_until,
    write_pseudo_random, xattr,
};
use support::proxy::{Fault, FaultProxy};
use support::s3::{Raw, S3Server, Store};

/// The cloud folder of every mount here, in its bucket.
const PREFIX: &str = "site";

/// Pull every second so cloud changes show quickly.
const FLAGS: &[&str] = &["--pull-interval", "1s"];

fn server() -> &'static S3Server {
    assert!(
        support::s3::available(Store::Seaweed),
        "SeaweedFS is not installed: run scripts/test once (it installs the S3 test stores)"
    );
    S3Server::shared(Store::Seaweed)
}

/// A mount of `PREFIX/` in `bucket`, reached at `endpoint`, with `extra` flags; the on-premise
/// folder is filled by `before` first.
fn mount(
    srv: &S3Server,
    endpoint: &str,
    bucket: &str,
    extra: &[&str],
    before: impl FnOnce(&mut Mount),
) -> Mount {
    let mut m = Mount::prepare_with_cloud("", &[], &[]);
    let (url, flags) = srv.mount_args(endpoint, bucket, &format!("{PREFIX}/"), m.tmp.path());
    m.cloud_url = url;
    m.extra = flags;
    m.extra.extend(FLAGS.iter().map(|s| s.to_string()));
    m.extra.extend(extra.iter().map(|s| s.to_string()));
    before(&mut m);
    m.spawn();
    m
}

/// Waits until the mount says everything is synced and the bucket holds exactly the
/// on-premise tree below `PREFIX/` (names, folders, bytes).
fn wait_converged(m: &Mount, raw: &Raw, timeout: Duration) {
    let t = Instant::now();
    loop {
        let st = m.status("");
        let (a, b) = (
            tree(&m.onprem, &not_content),
            raw.tree(PREFIX, &not_content),
        );
        if st.as_deref() == Some("synced") && a == b {
            return;
        }
        if t.elapsed() > timeout {
            panic!(
                "not converged after {timeout:?}: the mount root is {st:?}\n{}",
                diff(&a, &b)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits for the status of `rel` to be `want`. Longer than the harness's wait: SeaweedFS
/// answers 500 now and then under load, and the retry waits out its backoff.
fn wait_status(m: &Mount, rel: &str, want: &str) {
    wait_until(
        Duration::from_secs(90),
        &format!("{rel} to be {want}"),
        || m.status(rel).as_deref() == Some(want),
    );
}

fn key(rel: &str) -> String {
    format!("{PREFIX}/{rel}")
}

#[test]
fn editor_saves_are_one_update() {
    let srv = server();
    let bucket = srv.bucket("editors");
    let raw = srv.raw(&bucket);
    let m = mount(srv, &srv.endpoint, &bucket, &[], |_: &mut Mount| {});
    for name in ["vim.txt", "report.odt"] {
        fs::write(m.m(name), b"version 1").unwrap();
    }
    wait_converged(&m, &raw, Duration::from_secs(90));

    // vim: probe file, backup by rename, write the new file, drop the backup.
    fs::write(m.m("4913"), b"").unwrap();
    fs::remove_file(m.m("4913")).unwrap();
    fs::rename(m.m("vim.txt"), m.m("vim.txt~")).unwrap();
    fs::write(m.m("vim.txt"), b"version 2 (vim)").unwrap();
    fs::remove_file(m.m("vim.txt~")).unwrap();

    // LibreOffice: lock file, temp file renamed over the original, lock removed.
    fs::write(m.m(".~lock.report.odt#"), b"me").unwrap();
    fs::write(m.m("lu4711abc.tmp"), b"version 2 (office)").unwrap();
    fs::rename(m.m("lu4711abc.tmp"), m.m("report.odt")).unwrap();
    fs::remove_file(m.m(".~lock.report.odt#")).unwrap();

    wait_until(Duration::from_secs(90), "both saves in the bucket", || {
        raw.get(&key("vim.txt")).as_deref() == Some(b"version 2 (vim)")
            && raw.get(&key("report.odt")).as_deref() == Some(b"version 2 (office)")
    });
    wait_converged(&m, &raw, Duration::from_secs(90));
    for n in ["vim.txt", "report.odt"] {
        assert_eq!(m.uploads_of(n), 2, "{n}: one update per save");
        assert!(
            m.other_cloud_ops_of(n).is_empty(),
            "{n}: {:?}",
            m.other_cloud_ops_of(n)
        );
    }
    let mut keys = raw.keys(&format!("{PREFIX}/"));
    keys.sort();
    assert_eq!(
        keys,
        [key("report.odt"), key("vim.txt")],
        "no temp or lock file in the bucket"
    );
}

#[test]
fn kill9_in_the_middle_of_a_burst_of_small_writes() {
    const FILES: usize = 300;
    let srv = server();
    let bucket = srv.bucket("burst");
    let raw = srv.raw(&bucket);
    let mut m = mount(srv, &srv.endpoint, &bucket, &[], |_: &mut Mount| {});
    let name = |i: usize| format!("burst/d{:02}/f{i:04}.txt", i / 50);
    let content = |i: usize, round: u8| format!("file {i} round {round}\n").repeat(1 + i % 7);
    let (first_missing, uploaded_before) = std::thread::scope(|sc| {
        let writer = sc.spawn(|| {
            for i in 0..FILES {
                if i % 50 == 0 && fs::create_dir_all(m.m(&name(i)).parent().unwrap()).is_err() {
                    return i;
                }
                if fs::write(m.m(&name(i)), content(i, 1)).is_err() {
                    return i;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            FILES
        });
        wait_until(Duration::from_secs(60), "50 uploads", || {
            uploaded_paths(&m.log_text()).len() >= 50 || writer.is_finished()
        });
        let uploaded_before = uploaded_paths(&m.log_text());
        let pid = m.pid() as i32;
        // SAFETY: kill has no memory-safety preconditions; pid is our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        (writer.join().unwrap(), uploaded_before)
    });
    eprintln!(
        "killed after {} uploads; the writer stopped at {first_missing}",
        uploaded_before.len()
    );
    m.kill9();
    let mark = m.log_text().len();
    m.spawn();
    // The application carries on where it failed.
    for i in first_missing..FILES {
        fs::create_dir_all(m.m(&name(i)).parent().unwrap()).unwrap();
        fs::write(m.m(&name(i)), content(i, 2)).unwrap();
    }
    wait_converged(&m, &raw, Duration::from_secs(90));
    let after = uploaded_paths(&m.log_text()[mark..]);
    let again: Vec<&String> = uploaded_before
        .keys()
        .filter(|p| after.contains_key(*p))
        .collect();
    assert!(
        again.is_empty(),
        "uploaded again after the restart: {again:?}"
    );
    let copies = conflict_copies(&m.onprem);
    assert!(copies.is_empty(), "conflict copies: {copies:?}");
}

/// Completed part uploads among the proxy's exchanges.
fn parts_sent(proxy: &FaultProxy) -> usize {
    proxy
        .exchanges()
        .iter()
        .filter(|e| e.starts_with("PUT ") && e.contains("partNumber=") && e.contains(" 200"))
        .count()
}

/// The part numbers of the multipart uploads that landed (answered 200) in `exchanges`.
fn part_numbers(exchanges: &[String]) -> Vec<u32> {
    exchanges
        .iter()
        .filter(|e| e.starts_with("PUT ") && e.contains(" 200"))
        .filter_map(|e| e.split("partNumber=").nth(1))
        .filter_map(|r| r.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .collect()
}

/// kill -9 in the middle of a multipart upload (96 MiB, six parts of 16 MiB, four at a time,
/// sent slowly through a proxy), restart: the upload resumes with the parts recorded as done
/// and never sends one of them again (parts in flight at the kill may still land after it),
/// and the object is the file.
#[test]
fn kill9_in_the_middle_of_a_multipart_upload_resumes_with_the_parts_done() {
    const SIZE: usize = 96 << 20;
    const PARTS: u32 = 6;
    let srv = server();
    let bucket = srv.bucket("kill9-multipart");
    let raw = srv.raw(&bucket);
    let proxy = FaultProxy::start(srv.endpoint.trim_start_matches("http://").parse().unwrap());
    proxy.set(Fault::Throttle(24 << 20));
    let endpoint = format!("http://{}", proxy.addr);
    let mut m = mount(srv, &endpoint, &bucket, &[], |_: &mut Mount| {});
    fs::write(m.m("small.txt"), b"small").unwrap();
    wait_converged(&m, &raw, Duration::from_secs(90));
    write_pseudo_random(&m.m("big.bin"), SIZE, 23);
    wait_until(Duration::from_secs(90), "two parts sent", || {
        parts_sent(&proxy) >= 2
    });
    m.kill9();
    let at_kill = proxy.exchanges().len();
    let recorded: Vec<u32> = {
        let j = cloudsync::journal::Journal::open(&m.state.join("journal.db")).unwrap();
        let ups = j.multipart_uploads().unwrap();
        assert_eq!(ups.len(), 1, "{ups:?}");
        ups[0].parts.iter().map(|p| p.number as u32).collect()
    };
    assert!(
        !recorded.is_empty() && (recorded.len() as u32) < PARTS,
        "recorded {recorded:?}"
    );
    let mark = m.log_text().len();
    m.spawn();
    wait_until(Duration::from_secs(120), "big.bin synced", || {
        m.status("big.bin").as_deref() == Some("synced")
    });
    let log = m.log_text()[mark..].to_string();
    assert!(
        log.contains("resuming a multipart upload"),
        "the upload was not resumed:\n{log}"
    );
    let all = proxy.exchanges();
    let after = part_numbers(&all[at_kill..]);
    for n in &recorded {
        assert!(
            !after.contains(n),
            "part {n} was recorded before the kill and sent again: after the kill {after:?}"
        );
    }
    let mut every = part_numbers(&all);
    every.sort_unstable();
    every.dedup();
    assert_eq!(every, (1..=PARTS).collect::<Vec<_>>(), "every part landed");
    let got = raw.get(&key("big.bin")).expect("big.bin in the bucket");
    assert!(got == fs::read(m.o("big.bin")).unwrap(), "big.bin differs");
    assert_eq!(uploaded_paths(&log).get("small.txt"), None);
    assert!(conflict_copies(&m.onprem).is_empty());
}

/// A file `x` beside keys `x/…` in the bucket (another tool made both): the folder is synced,
/// the file is left in the cloud, and `x` reads failed with NAME_CLASH until the file is
/// removed there.
#[test]
fn a_file_beside_a_folder_of_its_name_reads_name_clash() {
    let srv = server();
    let bucket = srv.bucket("name-clash");
    let raw = srv.raw(&bucket);
    let m = mount(srv, &srv.endpoint, &bucket, &[], |_: &mut Mount| {});
    assert_eq!(raw.put(&key("x"), b"file"), 200);
    assert_eq!(raw.put(&key("x/inner.txt"), b"in"), 200);
    wait_until(Duration::from_secs(60), "x/inner.txt pulled", || {
        m.o("x/inner.txt").exists()
    });
    wait_status(&m, "x", "failed");
    let err = xattr(&m.m("x"), "user.cloudsync.error").unwrap_or_default();
    assert!(err.starts_with("NAME_CLASH: "), "{err}");
    assert_eq!(m.status("x/inner.txt").as_deref(), Some("synced"));
    assert_eq!(
        raw.get(&key("x")).unwrap(),
        b"file",
        "the cloud is left as it is"
    );
    assert!(m.o("x").is_dir());
    let log = m.log_text();
    assert_eq!(
        log.matches("the cloud holds a file and a folder of this name")
            .count(),
        1,
        "said once:\n{log}"
    );
    // Put right in the cloud: the name reads synced again.
    raw.delete_with(&key("x"), None);
    wait_status(&m, "x", "synced");
}

/// Copies (PUTs with a copy source) that landed at a key below `site/<folder>/`.
fn copies_into(proxy: &FaultProxy, folder: &str) -> usize {
    let below = format!("/{PREFIX}/{folder}/");
    proxy
        .exchanges()
        .iter()
        .filter(|e| e.starts_with("PUT ") && e.contains(&below) && e.contains(" 200"))
        .filter(|e| {
            let target = e.split_whitespace().nth(1).unwrap_or("");
            let key = target.split('?').next().unwrap_or("");
            !key.ends_with('/')
        })
        .count()
}

/// kill -9 in the middle of a folder move of 200 files (copies slowed down by a proxy): no
/// source is gone before every copy is made, and the restarted daemon resumes the move from
/// its record: each object copied once in all, the old folder gone, no conflict copy.
#[test]
fn kill9_in_the_middle_of_a_folder_move_resumes_it() {
    const FILES: usize = 200;
    let srv = server();
    let bucket = srv.bucket("kill9-move");
    let raw = srv.raw(&bucket);
    let proxy = FaultProxy::start(srv.endpoint.trim_start_matches("http://").parse().unwrap());
    proxy.set(Fault::Logged);
    let endpoint = format!("http://{}", proxy.addr);
    let mut m = mount(srv, &endpoint, &bucket, &[], |m: &mut Mount| {
        fs::create_dir_all(m.o("proj/docs")).unwrap();
        for i in 0..FILES {
            let sub = if i % 4 == 0 { "proj/docs" } else { "proj" };
            fs::write(m.o(&format!("{sub}/f{i:03}")), format!("file {i}")).unwrap();
        }
    });
    wait_converged(&m, &raw, Duration::from_secs(120));
    proxy.set(Fault::Only(
        "PUT".into(),
        Box::new(Fault::Delay(Duration::from_millis(100))),
    ));
    fs::rename(m.m("proj"), m.m("moved")).unwrap();
    wait_until(Duration::from_secs(60), "40 objects copied", || {
        copies_into(&proxy, "moved") >= 40
    });
    m.kill9();
    let before = copies_into(&proxy, "moved");
    assert!(before < FILES, "the whole move was done before the kill");
    assert_eq!(
        raw.keys(&key("proj/"))
            .iter()
            .filter(|k| !k.ends_with('/'))
            .count(),
        FILES,
        "a source went before every copy was made"
    );
    proxy.set(Fault::Logged);
    let mark = m.log_text().len();
    m.spawn();
    wait_converged(&m, &raw, Duration::from_secs(180));
    let log = m.log_text()[mark..].to_string();
    assert!(
        log.contains("resuming a folder move"),
        "the move was not resumed:\n{log}"
    );
    let after = copies_into(&proxy, "moved") - before;
    assert_eq!(
        before + after,
        FILES,
        "{before} copies before the kill, {after} after"
    );
    assert!(
        raw.keys(&key("proj/")).is_empty(),
        "{:?}",
        raw.keys(&key("proj/"))
    );
    assert!(conflict_copies(&m.onprem).is_empty());
    assert!(uploaded_paths(&log).is_empty(), "{log}");
}

/// The store cannot be reached (every connection reset): writes go on, the files read
/// `offline`, and once the store is back the queue drains by itself.
#[test]
fn offline_then_back_drains_the_queue() {
    let srv = server();
    let bucket = srv.bucket("offline");
    let raw = srv.raw(&bucket);
    let proxy = FaultProxy::start(srv.endpoint.trim_start_matches("http://").parse().unwrap());
    let endpoint = format!("http://{}", proxy.addr);
    let m = mount(srv, &endpoint, &bucket, &[], |_: &mut Mount| {});
    fs::write(m.m("before.txt"), b"before").unwrap();
    wait_converged(&m, &raw, Duration::from_secs(90));

    proxy.set(Fault::Reset);
    proxy.sever();
    fs::create_dir(m.m("dir")).unwrap();
    for i in 0..20 {
        fs::write(m.m(&format!("dir/f{i}.txt")), format!("offline {i}")).unwrap();
    }
    fs::write(m.m("before.txt"), b"edited offline").unwrap();
    wait_status(&m, "dir/f0.txt", "offline");
    assert!(raw.get(&key("dir/f0.txt")).is_none());

    proxy.set(Fault::Pass);
    wait_converged(&m, &raw, Duration::from_secs(90));
    assert_eq!(
        raw.get(&key("before.txt")).as_deref(),
        Some(&b"edited offline"[..])
    );
    assert!(conflict_copies(&m.onprem).is_empty());
}

/// Both sides edit one file: the cloud version keeps the name (cloud-wins), the on-premise
/// edit is kept beside it as a conflict copy, and the cloud copy is never overwritten.
#[test]
fn conflict_keeps_both_versions() {
    let srv = server();
    let bucket = srv.bucket("conflict");
    let raw = srv.raw(&bucket);
    let m = mount(
        srv,
        &srv.endpoint,
        &bucket,
        &["--push-delay", "1s"],
        |_: &mut Mount| {},
    );
    fs::write(m.m("shared.txt"), b"v1 from on-premise\n").unwrap();
    wait_converged(&m, &raw, Duration::from_secs(90));
    fs::write(m.m("shared.txt"), b"v2 edited on-premise\n").unwrap();
    assert_eq!(
        raw.put(&key("shared.txt"), b"v2 edited in the cloud\n"),
        200
    );
    wait_until(Duration::from_secs(90), "a conflict copy", || {
        !conflict_copies(&m.onprem).is_empty()
    });
    let copies = conflict_copies(&m.onprem);
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert!(copies[0].starts_with("shared (conflict "), "{copies:?}");
    assert_eq!(
        fs::read(m.m(&copies[0])).unwrap(),
        b"v2 edited on-premise\n"
    );
    assert_eq!(m.status(&copies[0]).as_deref(), Some("conflict"));
    wait_until(
        Duration::from_secs(30),
        "the cloud version in place",
        || fs::read(m.m("shared.txt")).ok().as_deref() == Some(b"v2 edited in the cloud\n"),
    );
    wait_converged(&m, &raw, Duration::from_secs(90));
    assert_eq!(
        raw.get(&key("shared.txt")).as_deref(),
        Some(&b"v2 edited in the cloud\n"[..]),
        "the cloud edit was overwritten"
    );
}

/// Sets pair folders with cloud folders below the prefix; the rest stays unsynced; a move
/// between sets is a move in the cloud.
#[test]
fn sync_sets_pair_folders_with_cloud_folders() {
    let srv = server();
    let bucket = srv.bucket("sets");
    let raw = srv.raw(&bucket);
    let m = mount(srv, &srv.endpoint, &bucket, &[], |m| {
        for d in ["projects/alpha", "projects/beta", "private"] {
            fs::create_dir_all(m.o(d)).unwrap();
        }
        let conf = m.tmp.path().join("cloudsync.toml");
        fs::write(
            &conf,
            "[[sync_set]]\npath = \"projects/alpha\"\ncloud = \"Shared/Alpha\"\n\n\
             [[sync_set]]\npath = \"projects/beta\"\ncloud = \"Beta\"\n",
        )
        .unwrap();
        m.extra.push("--config".into());
        m.extra.push(conf.to_string_lossy().into_owned());
    });
    fs::write(m.m("projects/alpha/a.txt"), "a").unwrap();
    fs::write(m.m("projects/beta/b.txt"), "b").unwrap();
    fs::write(m.m("private/secret.txt"), "s").unwrap();
    wait_status(&m, "projects/alpha/a.txt", "synced");
    wait_status(&m, "projects/beta/b.txt", "synced");
    assert_eq!(
        raw.get(&key("Shared/Alpha/a.txt")).as_deref(),
        Some(&b"a"[..])
    );
    assert_eq!(raw.get(&key("Beta/b.txt")).as_deref(), Some(&b"b"[..]));
    assert_eq!(m.status("private/secret.txt").as_deref(), Some("unsynced"));
    assert_eq!(
        xattr(&m.m("projects/alpha/a.txt"), "user.cloudsync.set").as_deref(),
        Some("projects/alpha")
    );

    fs::rename(m.m("projects/alpha/a.txt"), m.m("projects/beta/a.txt")).unwrap();
    fs::rename(m.m("private/secret.txt"), m.m("projects/alpha/secret.txt")).unwrap();
    wait_until(Duration::from_secs(90), "moves reach the bucket", || {
        raw.get(&key("Beta/a.txt")).is_some()
            && raw.get(&key("Shared/Alpha/a.txt")).is_none()
            && raw.get(&key("Shared/Alpha/secret.txt")).is_some()
    });
    wait_status(&m, "projects", "synced");
    assert_eq!(
        m.uploads_of("projects/beta/a.txt"),
        0,
        "a move, not an upload"
    );
    assert!(
        raw.keys(&key("private")).is_empty(),
        "unsynced items never reach the bucket"
    );
}

/// The status attributes: pending before the push, synced after, the cloud URL, a folder's
/// sum of its subtree, and DELETED_ON_CLOUD once the object is deleted behind its back.
#[test]
fn status_attributes() {
    let srv = server();
    let bucket = srv.bucket("status");
    let raw = srv.raw(&bucket);
    let m = mount(
        srv,
        &srv.endpoint,
        &bucket,
        &["--push-delay", "2s"],
        |_: &mut Mount| {},
    );
    fs::create_dir(m.m("docs")).unwrap();
    fs::write(m.m("docs/report.pdf"), b"pdf").unwrap();
    // Not in the cloud yet: `pending`, or `offline` while the store still refuses the new
    // bucket's first requests (SeaweedFS answers 500 until it has grown volumes for it, which
    // takes a moment on a loaded machine).
    for p in ["docs/report.pdf", "docs"] {
        let st = m.status(p);
        assert!(
            matches!(st.as_deref(), Some("pending" | "offline")),
            "{p}: {st:?}"
        );
    }
    wait_status(&m, "docs/report.pdf", "synced");
    wait_status(&m, "docs", "synced");
    let url = xattr(&m.m("docs/report.pdf"), "user.cloudsync.cloud_url").unwrap_or_default();
    assert!(
        url.starts_with("s3://") && url.ends_with(&format!("{PREFIX}/docs/report.pdf")),
        "{url}"
    );
    assert_eq!(m.status(".~lock.x#").as_deref(), None);
    fs::write(m.m(".~lock.x#"), b"me").unwrap();
    assert_eq!(m.status(".~lock.x#").as_deref(), Some("excluded"));
    fs::remove_file(m.m(".~lock.x#")).unwrap();

    assert_eq!(raw.delete_with(&key("docs/report.pdf"), None), 204);
    wait_status(&m, "docs/report.pdf", "failed");
    let err = xattr(&m.m("docs/report.pdf"), "user.cloudsync.error").unwrap_or_default();
    assert!(err.starts_with("DELETED_ON_CLOUD"), "{err}");
    assert_eq!(fs::read(m.o("docs/report.pdf")).unwrap(), b"pdf");
}

/// The journal's files (the database and its log): their lengths and modification times.
fn journal_stamp(m: &Mount) -> Vec<(String, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    for e in fs::read_dir(&m.state).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("journal.db") {
            let md = e.metadata().unwrap();
            out.push((name, md.len(), md.modified().unwrap()));
        }
    }
    out.sort();
    out
}

/// An idle pull over a tree of folders is one flat listing (a page per 1000 keys), not one
/// per folder, and writes nothing to the journal; the folder wins over a file of its name, and
/// a change deep in the tree is still seen.
#[test]
fn an_idle_pull_is_one_flat_listing_and_no_journal_write() {
    let srv = server();
    let bucket = srv.bucket("idle");
    let raw = srv.raw(&bucket);
    for d in 0..6 {
        for f in 0..5 {
            assert_eq!(raw.put(&key(&format!("d{d}/sub/f{f}.txt")), b"x"), 200);
        }
    }
    // A file and a folder of one name: the folder wins.
    assert_eq!(raw.put(&key("d1/sub"), b"a file"), 200);
    let addr: std::net::SocketAddr = srv.endpoint.trim_start_matches("http://").parse().unwrap();
    let proxy = FaultProxy::start(addr);
    proxy.set(Fault::Logged);
    let m = mount(srv, &proxy.url(""), &bucket, &[], |_: &mut Mount| {});
    wait_until(Duration::from_secs(90), "the first download", || {
        m.o("d5/sub/f4.txt").exists()
    });
    // Everything synced, but the name both a file and a folder hold in the cloud.
    wait_status(&m, "d1/sub", "failed");
    for d in [0, 2, 3, 4, 5] {
        wait_status(&m, &format!("d{d}"), "synced");
    }
    for f in 0..5 {
        wait_status(&m, &format!("d1/sub/f{f}.txt"), "synced");
    }
    let sync_now = |m: &Mount| {
        let out = std::process::Command::new(harness::bin())
            .args(["pause", "--pull"])
            .arg(&m.mnt)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let out = std::process::Command::new(harness::bin())
            .args(["sync", "--now"])
            .arg(&m.mnt)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    // One pull to settle, then the idle one, measured.
    sync_now(&m);
    std::thread::sleep(Duration::from_millis(1100));
    let stamp = journal_stamp(&m);
    let from = proxy.requests().len();
    let said = sync_now(&m);
    let sent: Vec<String> = proxy.requests()[from..].to_vec();
    assert!(said.contains(" requests"), "{said}");
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert!(
        sent[0].contains("list-type=2") && !sent[0].contains("delimiter"),
        "{sent:#?}"
    );
    assert_eq!(
        journal_stamp(&m),
        stamp,
        "an idle pull wrote to the journal"
    );
    assert!(m.o("d1/sub").is_dir() && m.o("d1/sub/f0.txt").is_file());
    // A change deep down is seen by the next pull.
    assert_eq!(raw.put(&key("d3/sub/f2.txt"), b"changed"), 200);
    sync_now(&m);
    assert_eq!(fs::read(m.o("d3/sub/f2.txt")).unwrap(), b"changed");
}
