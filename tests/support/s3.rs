//! Real S3 stores for the tests, on free loopback ports: a small SeaweedFS cluster (master, two
//! volume servers, a filer, and the S3 gateway in front of it with SigV4 identities), moto (AWS semantics, no key
//! check) and s3s-fs (SigV4 on a plain directory). `scripts/test` installs them: SeaweedFS and
//! moto into the venv `target/venv`, s3s-fs into `target/tools`.
//!
//! Every store runs in its own process group under a small shell watchdog that kills the group
//! (SIGTERM, then SIGKILL after a grace period) once the test binary is gone, so a store shared
//! by a whole test binary ([`S3Server::shared`], SeaweedFS takes 15-20 s to start) never outlives
//! it. A store owned by one test is killed when dropped. Each test takes a bucket of its own.
//!
//! Tests also speak to a store behind the client's back ([`S3Server::raw`]), with requests
//! signed by rusty-s3 and sent over a plain blocking socket, as another user of the bucket would.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

/// The keys every store here is set up with.
pub const KEY: &str = "cloudsync-test-key";
pub const SECRET: &str = "cloudsync-test-secret-0123456789";
pub const REGION: &str = "us-east-1";

/// Which store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Seaweed,
    Moto,
    S3sFs,
}

/// A running store.
pub struct S3Server {
    pub store: Store,
    pub endpoint: String,
    /// SeaweedFS started with TLS: its `https://` endpoint and the CA that signed it.
    pub tls: Option<(String, PathBuf)>,
    /// The directory s3s-fs serves (its buckets are folders in it).
    pub root: PathBuf,
    child: Child,
    /// SeaweedFS's S3 gateway runs apart from the cluster, so a test can restart it.
    gateway: Option<(Child, String)>,
    dir: PathBuf,
    addr: SocketAddr,
    _tmp: Option<tempfile::TempDir>,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where a store's program is: `$CLOUDSYNC_<NAME>` or what scripts/test installs.
fn program(env: &str, default: &str) -> PathBuf {
    std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(default))
}

/// True when every program of `store` is installed.
pub fn available(store: Store) -> bool {
    match store {
        Store::Seaweed => program("CLOUDSYNC_WEED", "target/venv/bin/weed").exists(),
        Store::Moto => program("CLOUDSYNC_MOTO", "target/venv/bin/moto_server").exists(),
        Store::S3sFs => program("CLOUDSYNC_S3S_FS", "target/tools/bin/s3s-fs").exists(),
    }
}

fn answers_http(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(2000)));
    if s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).is_ok() && &buf == b"HTTP/"
}

/// The watchdog: runs `script` (which starts the store's processes in the background) in a
/// process group of its own, and kills the group once the test binary `parent` is gone.
fn launch(script: &str, dir: &Path, name: &str) -> Child {
    let parent = std::process::id();
    // The shell ignores SIGTERM only once its children run (they must not inherit that), so it
    // outlives its own `kill -TERM 0` and can clean up before `kill -KILL 0` ends it too.
    let cleanup = if name == "run" {
        format!("cd / && rm -rf '{}'\n", dir.display())
    } else {
        String::new()
    };
    let full = format!(
        "{script}\nwhile kill -0 {parent} 2>/dev/null; do sleep 1; done\n\
         trap '' TERM\nkill -TERM 0 2>/dev/null; sleep 2\n{cleanup}kill -KILL 0\n"
    );
    std::fs::write(dir.join(format!("{name}.sh")), &full).unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("store.log"))
        .unwrap();
    use std::os::unix::process::CommandExt;
    Command::new("sh")
        .arg(dir.join(format!("{name}.sh")))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("start sh")
}

fn kill_group(child: &mut Child, grace: Duration) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill has no memory-safety preconditions; the child leads its own process group
    // (process_group(0)), so -pid names exactly the store's processes.
    unsafe {
        libc::kill(-pid, libc::SIGTERM);
    }
    let end = Instant::now() + grace;
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: as above; SeaweedFS may ignore SIGTERM for a while.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
    let _ = child.wait();
}

impl S3Server {
    /// One store of `store` for the whole test binary.
    pub fn shared(store: Store) -> &'static S3Server {
        static SEAWEED: OnceLock<S3Server> = OnceLock::new();
        static MOTO: OnceLock<S3Server> = OnceLock::new();
        static S3S: OnceLock<S3Server> = OnceLock::new();
        let cell = match store {
            Store::Seaweed => &SEAWEED,
            Store::Moto => &MOTO,
            Store::S3sFs => &S3S,
        };
        cell.get_or_init(|| S3Server::start(store))
    }

    /// Starts a store and waits until it takes requests; panics with its log otherwise.
    pub fn start(store: Store) -> S3Server {
        S3Server::start_with(store, false)
    }

    /// Starts SeaweedFS with its gateway on HTTPS too, with a certificate of a private CA.
    pub fn start_tls() -> S3Server {
        S3Server::start_with(Store::Seaweed, true)
    }

    fn start_with(store: Store, tls: bool) -> S3Server {
        // The data of a shared store is left to the watchdog, which outlives any TempDir.
        let tmp = tempfile::Builder::new()
            .prefix("cloudsync-s3-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().to_path_buf();
        let port = free_port();
        let ip = "127.0.0.1";
        let mut gateway = None;
        let mut tls_endpoint = None;
        let script = match store {
            Store::Moto => format!(
                "{} -H {ip} -p {port} &",
                program("CLOUDSYNC_MOTO", "target/venv/bin/moto_server").display()
            ),
            Store::S3sFs => {
                std::fs::create_dir(dir.join("data")).unwrap();
                format!(
                    "{} --host {ip} --port {port} --access-key {KEY} --secret-key {SECRET} data &",
                    program("CLOUDSYNC_S3S_FS", "target/tools/bin/s3s-fs").display()
                )
            }
            Store::Seaweed => {
                let weed = program("CLOUDSYNC_WEED", "target/venv/bin/weed");
                let config = format!(
                    r#"{{"identities":[{{"name":"cloudsync","credentials":[{{"accessKey":"{KEY}","secretKey":"{SECRET}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
                );
                std::fs::write(dir.join("s3.json"), config).unwrap();
                for d in ["m", "v1", "v2", "f"] {
                    std::fs::create_dir(dir.join(d)).unwrap();
                }
                let (m, mg) = (free_port(), free_port());
                let (v1, v1g, v2, v2g) = (free_port(), free_port(), free_port(), free_port());
                let (f, fg, sg) = (free_port(), free_port(), free_port());
                let w = weed.display();
                // Every bucket is a collection that grows volumes of its own, so a test binary
                // with a bucket per test needs many: with too few, writes to the later buckets
                // answer 500 for good.
                let cluster = format!(
                    "{w} master -ip={ip} -ip.bind={ip} -port={m} -port.grpc={mg} -mdir=m \
                       -volumeSizeLimitMB=64 -defaultReplication=000 -telemetry=false -peers=none &\n\
                     {w} volume -ip={ip} -ip.bind={ip} -port={v1} -port.grpc={v1g} -dir=v1 -max=200 \
                       -master={ip}:{m}.{mg} -minFreeSpace=1 &\n\
                     {w} volume -ip={ip} -ip.bind={ip} -port={v2} -port.grpc={v2g} -dir=v2 -max=200 \
                       -master={ip}:{m}.{mg} -minFreeSpace=1 &\n\
                     {w} filer -ip={ip} -ip.bind={ip} -port={f} -port.grpc={fg} -master={ip}:{m}.{mg} \
                       -defaultStoreDir=f &"
                );
                let mut https = String::new();
                if tls {
                    let (cert, key, ca) = super::webdav::make_certs(&dir).unwrap();
                    let tls_port = free_port();
                    https = format!(
                        " -port.https={tls_port} -cert.file={} -key.file={}",
                        cert.display(),
                        key.display()
                    );
                    tls_endpoint = Some((format!("https://{ip}:{tls_port}"), ca));
                }
                gateway = Some(format!(
                    "{w} s3 -filer={ip}:{f}.{fg} -ip.bind={ip} -port={port} -port.grpc={sg} \
                       -port.iceberg=0 -port.lance=0 -config=s3.json{https} &"
                ));
                cluster
            }
        };
        let child = launch(&script, &dir, "run");
        let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
        let gateway = gateway.map(|g| (launch(&g, &dir, "gateway"), g));
        let mut server = S3Server {
            store,
            endpoint: format!("http://{ip}:{port}"),
            tls: tls_endpoint,
            root: dir.join("data"),
            child,
            gateway,
            dir: dir.clone(),
            addr,
            _tmp: Some(tmp),
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        // Up means: it answers, and a bucket can be made and written (SeaweedFS needs its
        // volume servers registered first).
        let probe = format!("ready-{}", fastrand::u32(..));
        loop {
            if answers_http(addr) && server.try_make_bucket(&probe) {
                let raw = server.raw(&probe);
                if raw.put("ready", b"x") == 200 {
                    break;
                }
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(dir.join("store.log")).unwrap_or_default();
                server.kill_all();
                panic!("{store:?} did not come up at {addr}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        server
    }

    fn kill_all(&mut self) {
        if let Some((g, _)) = &mut self.gateway {
            kill_group(g, Duration::from_secs(3));
        }
        kill_group(&mut self.child, Duration::from_secs(3));
    }

    /// Kills SeaweedFS's S3 gateway (SIGKILL, as a crash would) and starts it again on the same
    /// port; returns once it takes requests. The cluster behind it keeps running.
    pub fn restart_gateway(&mut self) {
        let (child, script) = self.gateway.as_mut().expect("only SeaweedFS has a gateway");
        let pid = child.id() as libc::pid_t;
        // SAFETY: kill has no memory-safety preconditions; the gateway's watchdog leads its
        // own process group.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let _ = child.wait();
        let script = script.clone();
        let end = Instant::now() + Duration::from_secs(60);
        // The port is free again once the old gateway is gone.
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(100)).is_ok() {
            assert!(Instant::now() < end, "the old gateway does not go away");
            std::thread::sleep(Duration::from_millis(100));
        }
        *child = launch(&script, &self.dir, "gateway");
        while !answers_http(self.addr) {
            assert!(
                Instant::now() < end,
                "the gateway does not come back:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn try_make_bucket(&self, name: &str) -> bool {
        let raw = self.raw(name);
        let action = rusty_s3::actions::CreateBucket::new(&raw.bucket, &raw.creds);
        let url = action.sign(Duration::from_secs(600));
        let (status, _) = raw.send("PUT", &url, &[], b"");
        status == 200 || status == 409
    }

    /// A fresh bucket for one test, and the cloud URL of a prefix in it.
    pub fn bucket(&self, name: &str) -> String {
        let name = format!("{name}-{}", fastrand::u32(..));
        assert!(self.try_make_bucket(&name), "cannot make the bucket {name}");
        name
    }

    /// Speaks to `bucket` behind the client's back.
    pub fn raw(&self, bucket: &str) -> Raw {
        let endpoint: url::Url = self.endpoint.parse().unwrap();
        Raw {
            bucket: Bucket::new(endpoint, UrlStyle::Path, bucket.to_string(), REGION).unwrap(),
            creds: Credentials::new(KEY, SECRET),
        }
    }

    /// What a mount needs for the folder `prefix` of `bucket` on this store, reached at
    /// `endpoint` (the store's own, or a proxy's in front of it): the cloud URL and the flags,
    /// with the keys in a credentials file written into `dir`.
    pub fn mount_args(
        &self,
        endpoint: &str,
        bucket: &str,
        prefix: &str,
        dir: &Path,
    ) -> (String, Vec<String>) {
        let creds = dir.join("s3-credentials");
        std::fs::write(
            &creds,
            format!("[default]\naws_access_key_id = {KEY}\naws_secret_access_key = {SECRET}\n"),
        )
        .unwrap();
        let url = format!("s3://{bucket}/{prefix}");
        let flags = vec![
            "--s3-endpoint".to_string(),
            endpoint.to_string(),
            "--s3-region".to_string(),
            REGION.to_string(),
            "--credentials-file".to_string(),
            creds.to_string_lossy().into_owned(),
        ];
        (url, flags)
    }

    /// The log of the store so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("store.log")).unwrap_or_default()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Requests to one bucket, signed, over a blocking socket.
pub struct Raw {
    pub bucket: Bucket,
    pub creds: Credentials,
}

impl Raw {
    /// Sends one request to a signed URL; the status and the body.
    pub fn send(
        &self,
        method: &str,
        url: &url::Url,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        let (status, _, body) = self.send_head(method, url, headers, body);
        (status, body)
    }

    /// Like [`Raw::send`], with the head of the answer too.
    pub fn send_head(
        &self,
        method: &str,
        url: &url::Url,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String, Vec<u8>) {
        let host = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
        let mut s = TcpStream::connect(&host).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let mut req = format!(
            "{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let split = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP answer");
        let head = String::from_utf8_lossy(&out[..split]).to_string();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        let mut body = out[split + 4..].to_vec();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body = dechunk(&body);
        }
        (status, head, body)
    }

    /// The content and ETag of `key`, if there is such an object.
    pub fn get_tagged(&self, key: &str) -> Option<(Vec<u8>, String)> {
        let url = self
            .bucket
            .get_object(Some(&self.creds), key)
            .sign(Duration::from_secs(600));
        match self.send_head("GET", &url, &[], b"") {
            (200, head, b) => {
                let etag = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.trim()
                            .eq_ignore_ascii_case("etag")
                            .then(|| v.trim().to_string())
                    })
                    .expect("an ETag");
                Some((b, etag))
            }
            (404, _, _) => None,
            (s, _, b) => panic!("GET {key}: {s} {}", String::from_utf8_lossy(&b)),
        }
    }

    /// DeleteObject of `key`, with a header (a condition, say) or none: the status.
    pub fn delete_with(&self, key: &str, header: Option<(&str, &str)>) -> u16 {
        let url = self
            .bucket
            .delete_object(Some(&self.creds), key)
            .sign(Duration::from_secs(600));
        self.send("DELETE", &url, header.as_slice(), b"").0
    }

    /// The files under the folder `prefix/` as `harness::tree` lists a folder:
    /// (relative path, content, or `<dir>` for a folder, be it a marker or a prefix of keys),
    /// skipping paths with a component `skip` accepts and the empty-folder object.
    pub fn tree(&self, prefix: &str, skip: &dyn Fn(&str) -> bool) -> Vec<(String, Vec<u8>)> {
        let base = format!("{}/", prefix.trim_end_matches('/'));
        let mut out = std::collections::BTreeMap::new();
        for key in self.keys(&base) {
            let rel = &key[base.len()..];
            if rel.is_empty() || rel.split('/').any(|c| !c.is_empty() && skip(c)) {
                continue;
            }
            let parts: Vec<&str> = rel.trim_end_matches('/').split('/').collect();
            for i in 1..parts.len() {
                out.insert(parts[..i].join("/"), b"<dir>".to_vec());
            }
            let whole = parts.join("/");
            if rel.ends_with('/') {
                out.insert(whole, b"<dir>".to_vec());
            } else if parts.last() == Some(&".cloudsync-folder") {
                continue;
            } else if let Some(data) = self.get(&key) {
                out.insert(whole, data);
            }
        }
        out.into_iter().collect()
    }

    /// PutObject of `key`: the status.
    pub fn put(&self, key: &str, data: &[u8]) -> u16 {
        let url = self
            .bucket
            .put_object(Some(&self.creds), key)
            .sign(Duration::from_secs(600));
        self.send("PUT", &url, &[], data).0
    }

    /// PutObject with a header (a condition, say): the status.
    pub fn put_with(&self, key: &str, data: &[u8], header: (&str, &str)) -> u16 {
        let url = self
            .bucket
            .put_object(Some(&self.creds), key)
            .sign(Duration::from_secs(600));
        self.send("PUT", &url, &[header], data).0
    }

    /// The content of `key`, if there is such an object.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let url = self
            .bucket
            .get_object(Some(&self.creds), key)
            .sign(Duration::from_secs(600));
        match self.send("GET", &url, &[], b"") {
            (200, b) => Some(b),
            (404, _) => None,
            (s, b) => panic!("GET {key}: {s} {}", String::from_utf8_lossy(&b)),
        }
    }

    /// Every key under `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut a = self.bucket.list_objects_v2(Some(&self.creds));
            a.with_prefix(prefix.to_string());
            if let Some(t) = &token {
                a.with_continuation_token(t.clone());
            }
            let url = a.sign(Duration::from_secs(600));
            let (s, b) = self.send("GET", &url, &[], b"");
            assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
            let page =
                rusty_s3::actions::ListObjectsV2::parse_response(&String::from_utf8_lossy(&b))
                    .unwrap();
            out.extend(page.contents.into_iter().map(|c| c.key));
            match page.next_continuation_token {
                Some(t) => token = Some(t),
                None => return out,
            }
        }
    }

    /// True when `key` is an object, or a prefix of one (`key/…`).
    pub fn kind(&self, key: &str) -> Kind {
        if !self.keys(&format!("{key}/")).is_empty() {
            return Kind::Dir;
        }
        let url = self
            .bucket
            .head_object(Some(&self.creds), key)
            .sign(Duration::from_secs(600));
        match self.send("HEAD", &url, &[], b"").0 {
            200 => Kind::File,
            404 => Kind::None,
            // s3s-fs answers a HEAD of a directory (an empty folder's) with 500.
            500 => Kind::Dir,
            s => panic!("HEAD {key}: {s}"),
        }
    }
}

/// What is at a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    None,
    File,
    Dir,
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(i) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).trim(), 16).unwrap_or(0);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + n]);
        b = &b[i + 2 + n + 2..];
    }
}
