//! The Sync Manager page (`--status-addr`) of a real mount with a `file://` cloud: who may use
//! it, what `/metrics` and `/api/status` say, that actions are POST only with the action
//! header, and the page itself in a real headless Chromium driven over WebDriver.

mod harness;

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harness::{Mount, wait_until};
use serde_json::{Value, json};

/// One HTTP answer.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request on a new connection, with `headers` as given (a `Host` of our own
/// replaces the default one).
fn http(port: u16, method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let mut raw = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            let n = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).unwrap();
            raw.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        // Some servers (chromedriver) keep the connection open whatever the request says.
        raw.resize(n, 0);
        r.read_exact(&mut raw).unwrap();
    } else {
        r.read_to_end(&mut raw).unwrap();
    }
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&raw).into_owned(),
    }
}

/// A mount serving the page on a port of its own choosing, and that port and the token.
struct Served {
    m: Mount,
    port: u16,
    token: String,
}

fn serve(extra: &[&str]) -> Served {
    let mut flags = vec!["--status-addr", "127.0.0.1:0"];
    flags.extend_from_slice(extra);
    let m = Mount::start(&flags);
    let mut port = 0;
    wait_until(
        Duration::from_secs(20),
        "the page's address in the log",
        || {
            let log = m.log_text();
            let Some(at) = log.find("the Sync Manager page is at http://127.0.0.1:") else {
                return false;
            };
            let rest = &log[at + "the Sync Manager page is at http://127.0.0.1:".len()..];
            port = rest
                .split('/')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            port != 0
        },
    );
    let file = m.state.join("web.token");
    let meta = fs::metadata(&file).unwrap();
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "web.token must be private"
    );
    let token = fs::read_to_string(&file).unwrap().trim().to_string();
    assert_eq!(token.len(), 64, "{token:?}");
    Served { m, port, token }
}

impl Served {
    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    fn get(&self, target: &str) -> Answer {
        let auth = self.bearer();
        http(self.port, "GET", target, &[("Authorization", &auth)], "")
    }

    fn post(&self, target: &str, body: &str) -> Answer {
        let auth = self.bearer();
        http(
            self.port,
            "POST",
            target,
            &[("Authorization", &auth), ("X-Cloudsync-Action", "1")],
            body,
        )
    }

    fn summary(&self) -> Value {
        let a = self.get("/api/status");
        assert_eq!(a.status, 200, "{}", a.body);
        a.json()[0]["summary"].clone()
    }

    fn metrics(&self) -> Vec<(String, f64)> {
        let a = http(self.port, "GET", "/metrics", &[], "");
        assert_eq!(a.status, 200, "{}", a.body);
        parse_metrics(&a.body)
    }
}

/// The samples of a Prometheus text exposition, checked line by line: every line is a
/// comment (`# HELP`, `# TYPE`, `# UNIT`, `# EOF`) or `name{labels} value`.
fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let mut eof = false;
    for line in text.lines().filter(|l| !l.is_empty()) {
        assert!(!eof, "a line after # EOF: {line:?}");
        if let Some(c) = line.strip_prefix("# ") {
            let kind = c.split(' ').next().unwrap_or_default();
            assert!(
                ["HELP", "TYPE", "UNIT", "EOF"].contains(&kind),
                "bad comment {line:?}"
            );
            eof = kind == "EOF";
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "bad metric name in {line:?}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "bad labels in {line:?}"
            );
        }
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        out.push((series.to_string(), v));
    }
    assert!(eof, "no # EOF at the end:\n{text}");
    out
}

fn sample(samples: &[(String, f64)], series: &str) -> Option<f64> {
    samples.iter().find(|(s, _)| s == series).map(|(_, v)| *v)
}

/// The keys of a JSON value, recursively: the shape of a report.
fn shape(v: &Value, at: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = format!("{at}.{k}");
                out.insert(p.clone());
                shape(v, &p, out);
            }
        }
        Value::Array(a) => {
            for v in a {
                shape(v, &format!("{at}[]"), out);
            }
        }
        _ => {}
    }
}

fn cli_status_json(mnt: &Path) -> Value {
    let out = Command::new(harness::bin())
        .args(["status", "--json"])
        .arg(mnt)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "cloudsync status --json: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Deletes `rel` in the cloud and waits until the pull marks it `DELETED_ON_CLOUD`.
fn fail_by_cloud_delete(m: &Mount, rel: &str) {
    fs::remove_file(m.c(rel)).unwrap();
    m.wait_status(rel, "failed");
    let err = harness::xattr(&m.m(rel), "user.cloudsync.error").unwrap_or_default();
    assert!(err.starts_with("DELETED_ON_CLOUD"), "{err}");
}

#[test]
fn the_page_needs_the_token_and_changes_state_only_by_post_with_the_action_header() {
    let s = serve(&["--pull-interval", "1s"]);
    let m = &s.m;
    fs::create_dir(m.m("dir")).unwrap();
    fs::write(m.m("a.txt"), "alpha").unwrap();
    fs::write(m.m("dir/b.txt"), "bravo!").unwrap();
    m.wait_all_synced();

    // Without the token, or with a wrong one: 401, page and API alike.
    for target in ["/", "/api/status", "/api/status.csv", "/api/mount"] {
        let a = http(s.port, "GET", target, &[], "");
        assert_eq!(a.status, 401, "GET {target} without the token");
        let a = http(
            s.port,
            "GET",
            target,
            &[("Authorization", "Bearer 0000")],
            "",
        );
        assert_eq!(a.status, 401, "GET {target} with a wrong token");
    }
    let a = http(s.port, "GET", "/?token=nope", &[], "");
    assert_eq!(a.status, 401);
    assert!(a.header("set-cookie").is_none());
    let a = http(
        s.port,
        "POST",
        "/api/pause",
        &[("X-Cloudsync-Action", "1")],
        "",
    );
    assert_eq!(a.status, 401, "POST without the token");

    // The login sets an HttpOnly, SameSite=Strict cookie and sends the browser to `/`.
    let a = http(s.port, "GET", &format!("/?token={}", s.token), &[], "");
    assert_eq!(a.status, 303);
    assert_eq!(a.header("location"), Some("/"));
    let cookie = a.header("set-cookie").unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let a = http(s.port, "GET", "/", &[("Cookie", &pair)], "");
    assert_eq!(a.status, 200);
    assert!(a.body.contains("Sync Manager"));
    assert!(
        !a.body.contains("http://") && !a.body.contains("https://"),
        "the page loads nothing from elsewhere"
    );
    assert_eq!(a.header("cache-control"), Some("no-store"));
    // A page of another site reaching the port through a DNS name of its own is refused.
    let a = http(
        s.port,
        "GET",
        "/api/status",
        &[("Cookie", &pair), ("Host", "evil.example:80")],
        "",
    );
    assert_eq!(a.status, 421);

    // /metrics: no token needed, well formed, the counters there, and no path in it.
    fail_by_cloud_delete(m, "a.txt");
    let text = http(s.port, "GET", "/metrics", &[], "").body;
    let samples = parse_metrics(&text);
    assert!(sample(&samples, "cloudsync_pushes_total{result=\"ok\"}").unwrap() >= 3.0);
    assert!(sample(&samples, "cloudsync_pulls_total{result=\"ok\"}").unwrap() >= 1.0);
    assert!(sample(&samples, "cloudsync_push_duration_seconds_count").unwrap() >= 3.0);
    assert!(sample(&samples, "cloudsync_pull_duration_seconds_count").unwrap() >= 1.0);
    assert!(
        sample(&samples, "cloudsync_sent_bytes_total").unwrap() >= 11.0,
        "{text}"
    );
    assert!(sample(&samples, "cloudsync_received_bytes_total").is_some());
    assert_eq!(sample(&samples, "cloudsync_queue_length"), Some(0.0));
    assert_eq!(
        sample(
            &samples,
            "cloudsync_failed_items{code=\"DELETED_ON_CLOUD\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(sample(&samples, "cloudsync_offline"), Some(0.0));
    for secret in [
        "a.txt",
        "b.txt",
        "dir",
        m.tmp.path().to_str().unwrap(),
        "/tmp",
        "file:",
        &s.token,
    ] {
        assert!(!text.contains(secret), "/metrics names {secret:?}:\n{text}");
    }

    // /api/status is what `cloudsync status --json` prints.
    let cli = cli_status_json(&m.mnt);
    let web = s.get("/api/status").json();
    let (mut a, mut b) = (BTreeSet::new(), BTreeSet::new());
    shape(&cli, "", &mut a);
    shape(&web, "", &mut b);
    assert_eq!(a, b, "the shapes differ:\n{cli:#}\n{web:#}");
    assert_eq!(cli[0]["mountpoint"], web[0]["mountpoint"]);
    assert_eq!(cli[0]["items"], web[0]["items"]);
    let failed = s.get("/api/status?failed=true").json();
    let failed: Vec<&str> = failed[0]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["a.txt"]);
    // The CSV is the CLI's, failed items first.
    let csv = s.get("/api/status.csv");
    assert_eq!(csv.status, 200);
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines[0], "path,status,error,original");
    assert!(
        lines[1].starts_with(&format!(
            "{},failed,DELETED_ON_CLOUD",
            m.m("a.txt").display()
        )),
        "{}",
        csv.body
    );

    // A GET never changes state; a POST needs the action header, and the page's own origin.
    for target in [
        "/api/pause",
        "/api/sync",
        "/api/retry",
        "/api/pause?push=true",
    ] {
        let a = s.get(target);
        assert_eq!(a.status, 405, "GET {target}: {}", a.body);
    }
    let auth = s.bearer();
    let a = http(
        s.port,
        "POST",
        "/api/pause",
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(a.status, 403, "POST without the action header");
    let a = http(
        s.port,
        "POST",
        "/api/pause",
        &[("Cookie", &pair), ("X-Cloudsync-Action", "0")],
        "",
    );
    assert_eq!(a.status, 403, "POST with a wrong action header");
    let a = http(
        s.port,
        "POST",
        "/api/pause",
        &[
            ("Cookie", &pair),
            ("X-Cloudsync-Action", "1"),
            ("Origin", "http://evil.example"),
        ],
        "",
    );
    assert_eq!(a.status, 403, "POST from another origin");
    let sm = s.summary();
    assert_eq!(
        (sm["push_paused"].as_bool(), sm["pull_paused"].as_bool()),
        (Some(false), Some(false)),
        "nothing was paused: {sm}"
    );

    // With both, the actions are the control socket's.
    let origin = format!("http://127.0.0.1:{}", s.port);
    let a = http(
        s.port,
        "POST",
        "/api/pause",
        &[
            ("Cookie", &pair),
            ("X-Cloudsync-Action", "1"),
            ("Origin", &origin),
        ],
        r#"{"push": true}"#,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let sm = s.summary();
    assert_eq!(sm["push_paused"], true);
    assert_eq!(sm["pull_paused"], false);
    assert_eq!(s.post("/api/resume", "").status, 200);
    assert_eq!(s.summary()["push_paused"], false);
    let a = s.post("/api/sync", r#"{"paths": ["../x"]}"#);
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(s.post("/api/retry", r#"{"paths": ["a.txt"]}"#).status, 200);
    m.wait_status("a.txt", "synced");
    assert_eq!(fs::read_to_string(m.c("a.txt")).unwrap(), "alpha");
    assert_eq!(s.post("/api/sync", "").status, 200);

    assert!(
        !m.log_text().contains(&s.token),
        "the token reached the log"
    );
}

/// `cloudsync mount` of fresh folders with `--status-addr ADDR`: its output.
fn mount_with_status_addr(d: &Path, addr: &str) -> std::process::Output {
    for sub in ["on", "mnt", "cloud"] {
        let _ = fs::create_dir(d.join(sub));
    }
    Command::new(harness::bin())
        .arg("mount")
        .arg(d.join("on"))
        .arg(d.join("mnt"))
        .arg("--cloud")
        .arg(format!("file://{}", d.join("cloud").display()))
        .arg("--state-dir")
        .arg(d.join("state"))
        .args(["--status-addr", addr, "--daemon"])
        .output()
        .unwrap()
}

#[test]
fn a_non_loopback_address_or_a_port_in_use_is_refused_before_mounting() {
    let d = tempfile::tempdir().unwrap();
    let out = mount_with_status_addr(d.path(), "0.0.0.0:0");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--status-allow-remote"), "{err}");
    assert!(
        !d.path().join("state").exists(),
        "refused before anything was made"
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = mount_with_status_addr(d.path(), &addr);
    let mnt = d.path().join("mnt");
    if harness::is_mounted(&mnt) {
        let _ = Command::new("fusermount3").arg("-u").arg(&mnt).status();
        panic!("mounted although {addr} is taken");
    }
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot serve the status page on {addr}")),
        "{err}"
    );
}

// ---- The page in a real browser ----

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    port: u16,
    session: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = std::panic::catch_unwind(|| {
                http(
                    self.port,
                    "DELETE",
                    &format!("/session/{}", self.session),
                    &[],
                    "",
                )
            });
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Driver {
    fn start(profile: &Path, downloads: &Path) -> Driver {
        for (p, pkg) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(p).exists(),
                "{p} is missing: the browser test needs the Debian packages chromium and chromium-driver (scripts/test installs them; or apt-get install {pkg})"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let mut d = Driver {
            child,
            port,
            session: String::new(),
        };
        wait_until(Duration::from_secs(20), "chromedriver", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
                && http(port, "GET", "/status", &[], "").json()["value"]["ready"] == true
        });
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.display()),
                ],
                "prefs": {
                    "download.default_directory": downloads.to_str().unwrap(),
                    "download.prompt_for_download": false,
                    "download.directory_upgrade": true,
                },
            },
        }}});
        let a = http(port, "POST", "/session", &[], &caps.to_string());
        assert_eq!(a.status, 200, "no browser session: {}", a.body);
        d.session = a.json()["value"]["sessionId"].as_str().unwrap().to_string();
        d
    }

    fn call(&self, method: &str, what: &str, body: Value) -> Value {
        let a = http(
            self.port,
            method,
            &format!("/session/{}{what}", self.session),
            &[],
            &if method == "GET" {
                String::new()
            } else {
                body.to_string()
            },
        );
        assert_eq!(a.status, 200, "{method} {what}: {}", a.body);
        a.json()["value"].clone()
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url }));
    }

    fn js(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
    }

    fn click(&self, css: &str) {
        let e = self.call(
            "POST",
            "/element",
            json!({ "using": "css selector", "value": css }),
        );
        let id = e[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {e}"))
            .to_string();
        self.call("POST", &format!("/element/{id}/click"), json!({}));
    }

    /// The rows of the items table: (status, path).
    fn rows(&self) -> Vec<(String, String)> {
        let v = self.js(
            "return [...document.querySelectorAll('#items tbody tr')].map(r => [r.dataset.status, r.dataset.path]);",
        );
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r[0].as_str().unwrap().to_string(),
                    r[1].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    fn screenshot(&self, to: &Path) {
        use base64::Engine as _;
        let v = self.call("GET", "/screenshot", Value::Null);
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::write(to, png).unwrap();
    }
}

fn artefacts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/artefacts")
}

#[test]
fn the_page_in_a_real_browser_lists_failures_first_filters_downloads_csv_and_requests_a_sync() {
    let s = serve(&["--pull-interval", "1s"]);
    let m = &s.m;
    fs::create_dir_all(m.m("projects/2026")).unwrap();
    fs::create_dir_all(m.m("reports")).unwrap();
    for (rel, body) in [
        ("projects/2026/plan.odt", "plan"),
        ("projects/2026/budget.ods", "budget"),
        ("projects/readme.md", "readme"),
        ("reports/q3.pdf", "q3"),
        ("reports/zz-summary.txt", "summary"),
    ] {
        fs::write(m.m(rel), body).unwrap();
    }
    m.wait_all_synced();
    // A real failure: the cloud copy of a file that sorts last is deleted there.
    fail_by_cloud_delete(m, "reports/zz-summary.txt");
    let failed = "cloudsync_failed_items{code=\"DELETED_ON_CLOUD\"}";
    assert_eq!(sample(&s.metrics(), failed), Some(1.0));
    // And a real conflict: both sides edit the same file; the cloud wins, and the on-premise
    // edit is kept as a conflict copy.
    fs::write(m.c("projects/readme.md"), "cloud edit").unwrap();
    fs::write(m.m("projects/readme.md"), "local edit").unwrap();
    wait_until(Duration::from_secs(20), "the conflict copy", || {
        !harness::conflict_copies(&m.onprem).is_empty()
    });
    let copy = harness::conflict_copies(&m.onprem).remove(0);

    let tmp = tempfile::tempdir().unwrap();
    let downloads = tmp.path().join("downloads");
    fs::create_dir(&downloads).unwrap();
    let d = Driver::start(&tmp.path().join("profile"), &downloads);
    d.go(&format!("http://127.0.0.1:{}/?token={}", s.port, s.token));
    let url = d.call("GET", "/url", Value::Null);
    assert_eq!(
        url.as_str(),
        Some(format!("http://127.0.0.1:{}/", s.port).as_str()),
        "the login leaves the token out of the address"
    );
    wait_until(Duration::from_secs(20), "the items on the page", || {
        d.rows().len() >= 9
    });
    // The failed file (and its folder, which sums it up) and the conflict copy come first,
    // before items that sort before them by path.
    let rows = d.rows();
    let attention = |st: &str| st == "failed" || st == "conflict";
    let n = rows.iter().take_while(|(st, _)| attention(st)).count();
    assert!(
        rows[n..].iter().all(|(st, _)| !attention(st)),
        "the failed and conflicting items come first: {rows:?}"
    );
    let first: Vec<&str> = rows[..n].iter().map(|(_, p)| p.as_str()).collect();
    assert!(
        first.contains(&"reports/zz-summary.txt") && first.contains(&copy.as_str()),
        "{rows:?}"
    );
    assert!(
        rows.contains(&("synced".to_string(), "projects/2026/budget.ods".to_string())),
        "{rows:?}"
    );
    let shown = d.js(
        "return document.querySelector('#items tbody tr[data-path=\"reports/zz-summary.txt\"] .detail').textContent;",
    );
    assert!(
        shown.as_str().unwrap().starts_with("DELETED_ON_CLOUD"),
        "{shown}"
    );
    let count = d.js("return document.getElementById('c-failed').textContent;");
    assert_eq!(
        count, "2",
        "the card counts the file and the copy, not their folders too"
    );
    let sets = d.js("return document.querySelector('#sets tbody').innerText;");
    assert!(sets.as_str().unwrap().contains("cloud-wins"), "{sets}");
    d.screenshot(&artefacts().join("sync-manager.png"));

    // The filters.
    d.click("button[data-filter=failed]");
    let rows = d.rows();
    assert!(rows.iter().all(|(st, _)| st == "failed"), "{rows:?}");
    assert!(
        rows.iter().any(|(_, p)| p == "reports/zz-summary.txt"),
        "{rows:?}"
    );
    d.click("button[data-filter=conflict]");
    let rows = d.rows();
    assert!(rows.iter().all(|(st, _)| st == "conflict"), "{rows:?}");
    assert!(rows.iter().any(|(_, p)| p == &copy), "{rows:?}");
    d.click("button[data-filter=synced]");
    let rows = d.rows();
    assert!(rows.len() >= 5, "{rows:?}");
    assert!(rows.iter().all(|(st, _)| st == "synced"), "{rows:?}");
    d.js("const s = document.getElementById('search'); s.value = 'budget'; s.dispatchEvent(new Event('input'));");
    assert_eq!(
        d.rows(),
        vec![("synced".to_string(), "projects/2026/budget.ods".to_string())]
    );
    d.js("const s = document.getElementById('search'); s.value = ''; s.dispatchEvent(new Event('input'));");
    d.click("button[data-filter=all]");

    // The CSV download.
    d.click("#csv");
    let csv = downloads.join("cloudsync-status.csv");
    wait_until(Duration::from_secs(20), "the CSV download", || {
        fs::read_to_string(&csv).is_ok_and(|t| t.ends_with('\n'))
    });
    let text = fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "path,status,error,original");
    let status_of = |l: &str| l.split(',').nth(1).unwrap_or_default().to_string();
    let n = lines[1..]
        .iter()
        .take_while(|l| attention(&status_of(l)))
        .count();
    assert!(
        lines[1 + n..].iter().all(|l| !attention(&status_of(l))),
        "failed and conflicting lines first:\n{text}"
    );
    assert!(
        lines[1..=n].iter().any(|l| l.starts_with(&format!(
            "{},failed,DELETED_ON_CLOUD",
            m.m("reports/zz-summary.txt").display()
        ))),
        "{text}"
    );
    assert!(
        lines[1..=n].iter().any(|l| l.starts_with(&format!(
            "{},conflict,,{}",
            m.m(&copy).display(),
            m.m("projects/readme.md").display()
        ))),
        "{text}"
    );
    assert!(
        text.contains(&format!("{},synced,,", m.m("reports/q3.pdf").display())),
        "{text}"
    );

    // Request a sync: the file goes to the cloud again and turns synced on the page.
    d.click("#sync-now");
    wait_until(Duration::from_secs(30), "the item to turn synced", || {
        d.rows()
            .iter()
            .any(|r| r == &("synced".to_string(), "reports/zz-summary.txt".to_string()))
    });
    assert_eq!(
        fs::read_to_string(m.c("reports/zz-summary.txt")).unwrap(),
        "summary"
    );
    assert!(d.rows().iter().all(|(st, _)| st != "failed"));
    assert!(
        d.rows()
            .iter()
            .any(|r| r == &("conflict".to_string(), copy.clone())),
        "the conflict copy stays until a person resolves it"
    );
    assert_eq!(sample(&s.metrics(), failed), None);

    // Pause and resume from the page.
    d.click("#pause");
    wait_until(Duration::from_secs(10), "pushing paused", || {
        s.summary()["push_paused"] == true
    });
    wait_until(Duration::from_secs(10), "the pause shown", || {
        d.js("return document.getElementById('state').textContent;")
            .as_str()
            .is_some_and(|t| t.starts_with("Paused"))
    });
    d.click("#resume");
    wait_until(Duration::from_secs(10), "pushing resumed", || {
        s.summary()["push_paused"] == false
    });
    wait_until(Duration::from_secs(10), "the page back online", || {
        d.js("return document.getElementById('state').textContent;") == "Online"
    });
    d.screenshot(&artefacts().join("sync-manager-synced.png"));
}
