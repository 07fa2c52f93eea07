//! Real WebDAV servers for integration tests, one per test, each on its own free loopback port
//! and in its own temporary directory, and all killed (whole process group) when dropped, even
//! when the test panics.
//!
//! Profiles:
//! - [`Profile::Sabre`]: SabreDAV under `php -S` (Debian `php-cli php-sabre-dav php-xml
//!   php-mbstring`), the framework Nextcloud and ownCloud are built on. Content ETags, honours
//!   `If-Match` / `If-None-Match`.
//! - [`Profile::SabreFolderEtags`]: the same with Nextcloud-style folder ETags (they change when
//!   anything below changes) and `oc:fileid`.
//! - [`Profile::SabreAuth`]: plain SabreDAV behind Basic auth.
//! - [`Profile::Apache`]: Apache `mod_dav` (Debian `apache2`): no ETag on PUT, weak ETags for
//!   about a second after a change.
//! - [`Profile::ApacheTls`]: Apache over HTTPS with a private CA made by `openssl` per server.
//! - [`Profile::Rclone`]: `rclone serve webdav` (Debian `rclone`): ignores `If-Match`.
//!
//! The data directory is returned too, so a test can change the cloud side behind the client's
//! back, or check on disk what the server stored.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which server to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Profile {
    /// SabreDAV, no auth.
    Sabre,
    /// SabreDAV with subtree folder ETags and `oc:fileid`.
    SabreFolderEtags,
    /// SabreDAV requiring Basic auth with this user and password.
    SabreAuth {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// Apache `mod_dav` / `mod_dav_fs`.
    Apache,
    /// The same over HTTPS, with a certificate from a private CA made for the test (needs
    /// `openssl`); [`DavServer::ca_file`] is that CA.
    ApacheTls,
    /// `rclone serve webdav`.
    Rclone,
}

/// A running server. Dropping it kills it.
pub struct DavServer {
    /// The URL of the server's WebDAV root, ending in `/`.
    pub url: String,
    /// Where the server keeps the files: `url` maps onto this directory.
    pub data: PathBuf,
    /// The address the server listens on.
    pub addr: SocketAddr,
    /// What was started.
    pub profile: Profile,
    /// The server's own log (stdout and stderr).
    pub log: PathBuf,
    /// The private CA the server's certificate comes from ([`Profile::ApacheTls`]).
    pub ca_file: Option<PathBuf>,
    /// The uid and gid files must belong to for the server to change them (Apache as root).
    owner: Option<(u32, u32)>,
    child: Child,
    /// How the server was started, to start it again on the same port and data.
    spec: LaunchSpec,
    /// False between [`DavServer::stop`] and [`DavServer::restart`].
    running: bool,
    _dir: tempfile::TempDir,
}

/// Everything needed to run the same server command again.
struct LaunchSpec {
    program: std::ffi::OsString,
    args: Vec<std::ffi::OsString>,
    envs: Vec<(std::ffi::OsString, Option<std::ffi::OsString>)>,
    cwd: PathBuf,
}

impl LaunchSpec {
    fn of(cmd: &Command, cwd: &Path) -> LaunchSpec {
        LaunchSpec {
            program: cmd.get_program().to_owned(),
            args: cmd.get_args().map(|a| a.to_owned()).collect(),
            envs: cmd
                .get_envs()
                .map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned())))
                .collect(),
            cwd: cwd.to_path_buf(),
        }
    }

    /// A fresh command, with output appended to `log`, in its own process group.
    fn command(&self, log: &Path) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        for (k, v) in &self.envs {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        c.stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .current_dir(&self.cwd)
            .process_group(0);
        c
    }
}

/// The Debian packages these servers come from.
pub const DEBIAN_PACKAGES: &[&str] = &[
    "php-cli",
    "php-sabre-dav",
    "php-xml",
    "php-mbstring",
    "apache2",
    "rclone",
    "openssl",
];

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// True once something at `addr` answers an HTTP request (any status). A TLS server only has
/// to accept connections: requests queue until its workers are up.
fn answers_http(addr: SocketAddr, tls: bool) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    if tls {
        return true;
    }
    let _ = s.set_read_timeout(Some(Duration::from_millis(1000)));
    let _ = s.set_write_timeout(Some(Duration::from_millis(1000)));
    if s.write_all(b"OPTIONS / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).is_ok() && &buf == b"HTTP/"
}

/// Where Debian keeps Apache's modules.
const APACHE_MODULES: &str = "/usr/lib/apache2/modules";

/// Runs openssl, returning its output as the error when it fails.
fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Makes a private CA and a certificate for 127.0.0.1 signed by it, valid for two days.
/// Returns (certificate, key, CA certificate).
pub fn make_certs(dir: &Path) -> Result<(PathBuf, PathBuf, PathBuf), String> {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "2",
        "-subj",
        "/CN=cloudsync test CA",
    ];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    ca.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
    ca.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    openssl(dir, &ca)?;
    let mut csr = vec!["req", "-subj", "/CN=127.0.0.1"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(dir, &csr)?;
    fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    )?;
    Ok((
        dir.join("server.pem"),
        dir.join("server.key"),
        dir.join("ca.pem"),
    ))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The uid and gid of a user from /etc/passwd.
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() > 3 && f[0] == name {
            Some((f[2].parse().ok()?, f[3].parse().ok()?))
        } else {
            None
        }
    })
}

fn chown(path: &Path, owner: Option<(u32, u32)>) {
    if let Some((u, g)) = owner {
        std::os::unix::fs::chown(path, Some(u), Some(g))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    }
}

/// Kills the whole process group of `child` and reaps it.
fn kill_group(child: &mut Child) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill has no memory-safety preconditions; the child leads its own process group
    // (process_group(0)), so -pid names exactly the server and its workers.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
    let _ = child.wait();
}

impl DavServer {
    /// Starts a server of `profile`, waits until it answers, and panics with its log when it
    /// does not come up (after a few tries on fresh ports, in case another test took the port).
    pub fn start(profile: Profile) -> DavServer {
        let mut last_log = String::new();
        for _ in 0..3 {
            match Self::try_start(profile.clone()) {
                Ok(s) => return s,
                Err(log) => last_log = log,
            }
        }
        panic!("the {profile:?} WebDAV server did not start:\n{last_log}");
    }

    /// Starts a server of `profile` on the given loopback port (say, one a client was already
    /// pointed at while nothing listened there), and panics with its log when it does not come
    /// up.
    pub fn start_on(profile: Profile, port: u16) -> DavServer {
        let mut last_log = String::new();
        for _ in 0..3 {
            match Self::try_start_at(profile.clone(), port) {
                Ok(s) => return s,
                Err(log) => last_log = log,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("the {profile:?} WebDAV server did not start on port {port}:\n{last_log}");
    }

    /// A port that was free a moment ago, to start a server on later with [`Self::start_on`].
    pub fn unused_port() -> u16 {
        free_port()
    }

    /// The URL a server of `profile` listening on `addr` serves its WebDAV root at, ending in
    /// `/`: known before the server runs.
    pub fn url_for(profile: &Profile, addr: SocketAddr) -> String {
        match profile {
            Profile::Rclone => format!("http://{addr}/"),
            Profile::ApacheTls => format!("https://{addr}/dav/"),
            _ => format!("http://{addr}/dav/"),
        }
    }

    fn try_start(profile: Profile) -> Result<DavServer, String> {
        Self::try_start_at(profile, free_port())
    }

    fn try_start_at(profile: Profile, port: u16) -> Result<DavServer, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        fs::create_dir(&data).unwrap();
        let log = dir.path().join("server.log");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut owner = None;
        let mut ca_file = None;
        let (mut cmd, url) = match &profile {
            Profile::Sabre | Profile::SabreFolderEtags | Profile::SabreAuth { .. } => {
                let script = concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/support/sabre/server.php"
                );
                let mut c = Command::new("php");
                c.arg("-d")
                    .arg("display_errors=0")
                    .arg("-d")
                    .arg("log_errors=1")
                    .arg("-d")
                    .arg(format!(
                        "error_log={}",
                        dir.path().join("php-errors.log").display()
                    ))
                    .arg("-d")
                    .arg("memory_limit=-1")
                    .arg("-S")
                    .arg(addr.to_string())
                    .arg(script)
                    .env("DAV_ROOT", &data)
                    .env("DAV_ACCESS_LOG", dir.path().join("access.log"))
                    .env("PHP_CLI_SERVER_WORKERS", "4");
                if profile == Profile::SabreFolderEtags {
                    c.env("DAV_FOLDER_ETAGS", "1");
                }
                if let Profile::SabreAuth { user, password } = &profile {
                    c.env("DAV_USER", user).env("DAV_PASS", password);
                }
                (c, format!("http://{addr}/dav/"))
            }
            Profile::Apache | Profile::ApacheTls => {
                let tls = if profile == Profile::ApacheTls {
                    let (cert, key, ca) = make_certs(dir.path())?;
                    ca_file = Some(ca);
                    format!(
                        "LoadModule socache_shmcb_module {m}/mod_socache_shmcb.so\n\
                         LoadModule ssl_module {m}/mod_ssl.so\n\
                         SSLEngine on\n\
                         SSLCertificateFile {}\n\
                         SSLCertificateKeyFile {}\n",
                        cert.display(),
                        key.display(),
                        m = APACHE_MODULES,
                    )
                } else {
                    String::new()
                };
                let run = dir.path().join("run");
                let lock = dir.path().join("lock");
                fs::create_dir(&run).unwrap();
                fs::create_dir(&lock).unwrap();
                // As root, Apache's workers run as www-data: they must reach and own the data.
                let user_lines = if is_root() {
                    owner = Some(lookup_user("www-data").expect("user www-data (from apache2)"));
                    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
                    chown(&data, owner);
                    chown(&lock, owner);
                    "User www-data\nGroup www-data\n"
                } else {
                    ""
                };
                let m = APACHE_MODULES;
                let conf = format!(
                    "ServerRoot {root}\n\
                     ServerName 127.0.0.1\n\
                     Listen {addr}\n\
                     LoadModule mpm_event_module {m}/mod_mpm_event.so\n\
                     LoadModule authz_core_module {m}/mod_authz_core.so\n\
                     LoadModule alias_module {m}/mod_alias.so\n\
                     LoadModule dav_module {m}/mod_dav.so\n\
                     LoadModule dav_fs_module {m}/mod_dav_fs.so\n\
                     {user_lines}\
                     {tls}\
                     PidFile {run}/httpd.pid\n\
                     DefaultRuntimeDir {run}\n\
                     Mutex file:{run} default\n\
                     ErrorLog {root}/error.log\n\
                     LogLevel warn\n\
                     StartServers 1\n\
                     ServerLimit 2\n\
                     ThreadsPerChild 8\n\
                     MinSpareThreads 1\n\
                     MaxSpareThreads 16\n\
                     MaxRequestWorkers 16\n\
                     DAVLockDB {lock}/DAVLock\n\
                     DocumentRoot {data}\n\
                     <Directory />\n  Require all denied\n</Directory>\n\
                     Alias /dav {data}\n\
                     <Directory {data}>\n  Dav On\n  Require all granted\n</Directory>\n",
                    root = dir.path().display(),
                    run = run.display(),
                    lock = lock.display(),
                    data = data.display(),
                );
                let conf_path = dir.path().join("httpd.conf");
                fs::write(&conf_path, conf).unwrap();
                let mut c = Command::new("apache2");
                c.arg("-f").arg(&conf_path).arg("-DFOREGROUND");
                let scheme = if ca_file.is_some() { "https" } else { "http" };
                (c, format!("{scheme}://{addr}/dav/"))
            }
            Profile::Rclone => {
                let conf = dir.path().join("rclone.conf");
                fs::write(&conf, "").unwrap();
                let mut c = Command::new("rclone");
                c.arg("serve")
                    .arg("webdav")
                    .arg("--addr")
                    .arg(addr.to_string())
                    .arg("--config")
                    .arg(&conf)
                    // Changes made on disk by a test must show at once.
                    .arg("--dir-cache-time")
                    .arg("0s")
                    .arg(&data);
                (c, format!("http://{addr}/"))
            }
        };
        debug_assert_eq!(url, Self::url_for(&profile, addr));
        let spec = LaunchSpec::of(&cmd, dir.path());
        let out = fs::File::create(&log).unwrap();
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .current_dir(dir.path())
            .process_group(0);
        let mut child = cmd.spawn().map_err(|e| {
            format!(
                "cannot run {:?}: {e} (install {DEBIAN_PACKAGES:?})",
                cmd.get_program()
            )
        })?;
        let read_log = |dir: &Path| {
            let mut s = fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            s.push_str(&fs::read_to_string(dir.join("error.log")).unwrap_or_default());
            s
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                kill_group(&mut child);
                return Err(format!("exited with {status}:\n{}", read_log(dir.path())));
            }
            if answers_http(addr, ca_file.is_some()) {
                break;
            }
            if Instant::now() > deadline {
                kill_group(&mut child);
                return Err(format!("no answer within 10 s:\n{}", read_log(dir.path())));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(DavServer {
            url,
            data,
            addr,
            profile,
            log,
            ca_file,
            owner,
            child,
            spec,
            running: true,
            _dir: dir,
        })
    }

    /// Kills the server (SIGKILL to its whole process group), as a crash or a pulled plug
    /// would: connections in flight break, and the port stops answering. The data stays.
    pub fn stop(&mut self) {
        if self.running {
            kill_group(&mut self.child);
            self.running = false;
        }
    }

    /// Starts the server again after [`Self::stop`], on the same port with the same data and
    /// settings, and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let tls = self.ca_file.is_some();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            // A killed Apache leaves its pid file behind; it would refuse to start over it.
            let _ = fs::remove_file(self.spec.cwd.join("run/httpd.pid"));
            let mut child = self
                .spec
                .command(&self.log)
                .spawn()
                .expect("restart the server");
            let started = Instant::now();
            let up = loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break false; // the port may still be held; try again
                }
                if answers_http(self.addr, tls) {
                    break true;
                }
                if started.elapsed() > Duration::from_secs(5) {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            if up {
                self.child = child;
                self.running = true;
                return;
            }
            kill_group(&mut child);
            if Instant::now() > deadline {
                panic!(
                    "the {:?} server did not come back on {}:\n{}",
                    self.profile,
                    self.addr,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// True between a start and a [`Self::stop`].
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// The on-disk path of a path relative to the server's WebDAV root.
    pub fn disk(&self, rel: &str) -> PathBuf {
        self.data.join(rel)
    }

    /// Writes a file straight into the data directory, as another client of the server would,
    /// and hands it to the server's user so the server can change it later.
    pub fn write_on_disk(&self, rel: &str, contents: &[u8]) {
        if let Some((dir, _)) = rel.rsplit_once('/') {
            self.mkdir_on_disk(dir);
        }
        let p = self.disk(rel);
        fs::write(&p, contents).unwrap();
        chown(&p, self.owner);
    }

    /// Creates a folder and its missing parents straight in the data directory, owned by the
    /// server's user.
    pub fn mkdir_on_disk(&self, rel: &str) {
        let mut p = self.data.clone();
        for comp in rel.split('/').filter(|c| !c.is_empty()) {
            p.push(comp);
            if !p.exists() {
                fs::create_dir(&p).unwrap();
                chown(&p, self.owner);
            }
        }
    }

    /// The server's log so far, for failure messages.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The requests the server answered so far, one `METHOD URI` line each (SabreDAV only).
    pub fn access_log(&self) -> String {
        fs::read_to_string(self.spec.cwd.join("access.log")).unwrap_or_default()
    }
}

impl Drop for DavServer {
    fn drop(&mut self) {
        self.stop();
    }
}
