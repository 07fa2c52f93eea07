//! The server checks of `cloudsync doctor` for a WebDAV cloud: what the server says at the
//! HTTP level (reachable, TLS, login, a PUT's ETag, its clock, folder ETags), and whether it
//! honours conditions, asked of the WebDAV cloud with the daemon's own probe.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};

use super::{MAX_SKEW, Report, Verdict, skew_secs};
use crate::cloud::CloudOptions;
use crate::cloud::webdav::WebDav;

/// What the PROPFIND of the root asks for: ETags, and the file ids of Nextcloud and ownCloud.
const PROPFIND: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns">
  <d:prop><d:resourcetype/><d:getetag/><oc:fileid/></d:prop>
</d:propfind>"#;

/// True when `xml` holds an element of local name `name` with text in it (a property answered
/// empty, or in a 404 propstat, does not count). Namespace prefixes and attributes on the tag
/// (`<x1:fileid xmlns:x1="…">12</x1:fileid>`) are allowed for.
fn has_value(xml: &str, name: &str) -> bool {
    xml.match_indices('<').any(|(i, _)| {
        let tag = &xml[i + 1..];
        let Some(end) = tag.find('>') else {
            return false;
        };
        let open = &tag[..end];
        let qname = open.split_whitespace().next().unwrap_or_default();
        let local = qname.rsplit(':').next().unwrap_or_default();
        local == name
            && !open.ends_with('/')
            && tag[end + 1..].chars().next().is_some_and(|c| c != '<')
    })
}

/// The whole cause chain of an error, for matching and for messages.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

fn client(opts: &CloudOptions) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("cloudsync-doctor/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &opts.ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| format!("cannot read the CA file {}: {e}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("the CA file {} is not PEM: {e}", ca.display()))?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build()
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))
}

fn auth(opts: &CloudOptions) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(u) = &opts.user {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{u}:{}", opts.password.as_deref().unwrap_or("")));
        if let Ok(mut v) = HeaderValue::from_str(&format!("Basic {token}")) {
            v.set_sensitive(true);
            h.insert(header::AUTHORIZATION, v);
        }
    }
    h
}

/// Runs the server checks of the WebDAV folder at `url`.
pub(super) async fn check(url: &str, opts: &CloudOptions, report: &mut Report) {
    let mut base = match url::Url::parse(url) {
        Ok(u) => u,
        Err(e) => {
            report.bad(
                "server.reachable",
                Verdict::Fail,
                format!("the cloud URL is not a valid URL: {e}"),
                "correct the cloud URL",
            );
            return;
        }
    };
    if !base.path().ends_with('/') {
        let p = format!("{}/", base.path());
        base.set_path(&p);
    }
    let _ = base.set_username("");
    let _ = base.set_password(None);
    let host = base.host_str().unwrap_or_default().to_string();
    let http = match client(opts) {
        Ok(c) => c,
        Err(e) => {
            report.bad("server.tls", Verdict::Fail, e, "correct ca_file");
            return;
        }
    };
    let mut h = auth(opts);
    h.insert("Depth", HeaderValue::from_static("0"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml; charset=utf-8"),
    );
    let sent = http
        .request(
            Method::from_bytes(b"PROPFIND").expect("a valid method"),
            base.clone(),
        )
        .headers(h)
        .body(PROPFIND)
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => {
            let why = chain(&e);
            let lower = why.to_lowercase();
            if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
            {
                report.add(
                    "server.reachable",
                    Verdict::Ok,
                    format!("{host} accepts connections"),
                );
                report.bad(
                    "server.tls",
                    Verdict::Fail,
                    format!("the TLS handshake with {host} failed: {why}"),
                    "give the server's CA with ca_file (--ca-file), or fix the server's certificate",
                );
            } else {
                report.bad(
                    "server.reachable",
                    Verdict::Fail,
                    format!("cannot reach {base}: {why}"),
                    "check the URL, the network and that the server runs",
                );
            }
            return;
        }
    };
    let status = resp.status();
    report.add(
        "server.reachable",
        Verdict::Ok,
        format!("{host} answered {}", status.as_u16()),
    );
    if base.scheme() == "https" {
        report.add(
            "server.tls",
            Verdict::Ok,
            format!("the certificate of {host} is valid"),
        );
    } else if host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
    {
        report.add("server.tls", Verdict::Ok, "plain HTTP, to this host only");
    } else {
        report.bad(
            "server.tls",
            Verdict::Warn,
            format!("plain HTTP to {host}: the password and every file travel unencrypted"),
            "use an https:// URL",
        );
    }
    // The clock: file times and synced_at come from it.
    if let Some(date) = resp
        .headers()
        .get(header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| httpdate::parse_http_date(s).ok())
    {
        let skew = skew_secs(date, SystemTime::now());
        if skew.unsigned_abs() > MAX_SKEW.as_secs() {
            report.bad(
                "server.clock",
                Verdict::Warn,
                format!(
                    "the server's clock is {} s {} this host's",
                    skew.abs(),
                    if skew > 0 { "ahead of" } else { "behind" }
                ),
                "synchronise both clocks (NTP)",
            );
        } else {
            report.add(
                "server.clock",
                Verdict::Ok,
                format!("within {} s of this host", skew.abs()),
            );
        }
    } else {
        report.add(
            "server.clock",
            Verdict::Ok,
            "the server sends no Date header to compare",
        );
    }
    match status {
        StatusCode::UNAUTHORIZED if opts.user.is_none() => {
            report.bad(
                "server.credentials",
                Verdict::Fail,
                "the server asks for a login, and none is configured",
                "set user and password_file (--user, --password-file)",
            );
            return;
        }
        StatusCode::UNAUTHORIZED => {
            report.bad(
                "server.credentials",
                Verdict::Fail,
                format!(
                    "the server refused the user {:?} (401)",
                    opts.user.as_deref().unwrap_or_default()
                ),
                "check the user name and the password file (on Nextcloud with two factors, use an app password)",
            );
            return;
        }
        StatusCode::FORBIDDEN => {
            report.bad(
                "server.credentials",
                Verdict::Fail,
                format!("the server denies access to {base} (403)"),
                "give the user access to the folder, or correct the URL",
            );
            return;
        }
        StatusCode::NOT_FOUND => {
            report.bad(
                "server.folder",
                Verdict::Fail,
                format!("there is no folder at {base} (404)"),
                "create the folder on the server, or correct the URL",
            );
            return;
        }
        StatusCode::MULTI_STATUS => {}
        s => {
            report.bad(
                "server.folder",
                Verdict::Fail,
                format!("the server answered {s} to a PROPFIND of {base}: not a WebDAV folder"),
                "give the URL of the WebDAV folder (Nextcloud: https://HOST/remote.php/dav/files/USER/)",
            );
            return;
        }
    }
    report.add(
        "server.credentials",
        Verdict::Ok,
        match &opts.user {
            Some(u) => format!("the server accepted the user {u:?}"),
            None => "the server asks for no login".to_string(),
        },
    );
    let body = resp.text().await.unwrap_or_default();
    if has_value(&body, "fileid") {
        report.add(
            "server.folder_etags",
            Verdict::Ok,
            "folder ETags cover their subtree (file ids shown): a pull skips unchanged folders",
        );
    } else if has_value(&body, "getetag") {
        report.add(
            "server.folder_etags",
            Verdict::Ok,
            "folder ETags follow the folder's own entries only: every pull lists every folder",
        );
    } else {
        report.add(
            "server.folder_etags",
            Verdict::Ok,
            "no folder ETags: every pull lists every folder",
        );
    }

    // A write: an empty file of an ignored name, made and deleted again.
    let id = blake3::hash(format!("{}\n{base}", crate::mount::host_id()).as_bytes());
    let probe = match base.join(&format!(".cloudsync-doctor-{}", &id.to_hex()[..16])) {
        Ok(u) => u,
        Err(_) => return,
    };
    let delete = || async {
        let _ = http.delete(probe.clone()).headers(auth(opts)).send().await;
    };
    delete().await;
    let mut h = auth(opts);
    h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    let put = http.put(probe.clone()).headers(h).body("").send().await;
    match put {
        Ok(r) if r.status().is_success() => {
            let etag = r.headers().contains_key(header::ETAG);
            delete().await;
            if etag {
                report.add(
                    "server.write",
                    Verdict::Ok,
                    "a PUT works and answers with the new ETag",
                );
            } else {
                report.add(
                    "server.write",
                    Verdict::Ok,
                    "a PUT works but answers without an ETag (as Apache does): each upload costs one more request",
                );
            }
        }
        Ok(r) => {
            delete().await;
            let (what, fix) = match r.status() {
                StatusCode::FORBIDDEN | StatusCode::METHOD_NOT_ALLOWED => (
                    "the server refuses writes to the folder",
                    "give the user write access to the folder",
                ),
                StatusCode::INSUFFICIENT_STORAGE => (
                    "the account is out of space",
                    "free space in the cloud account, or raise its quota",
                ),
                _ => ("the server refused a test upload", "see the server's log"),
            };
            report.bad(
                "server.write",
                Verdict::Fail,
                format!("{what} ({})", r.status()),
                fix,
            );
            return;
        }
        Err(e) => {
            report.bad(
                "server.write",
                Verdict::Fail,
                format!("a test upload failed: {}", chain(&e)),
                "check the server and run again",
            );
            return;
        }
    }

    // Conditions, with the daemon's own probe.
    match WebDav::new(url, opts) {
        Ok(dav) if dav.honours_conditions().await => report.add(
            "server.conditions",
            Verdict::Ok,
            "If-Match and If-None-Match are honoured: an upload never overwrites a newer cloud copy",
        ),
        Ok(_) => report.bad(
            "server.conditions",
            Verdict::Warn,
            "the server ignores If-Match or If-None-Match (as rclone does): cloudsync checks before each upload, but a cloud change landing between the check and the upload can be overwritten",
            "use a server that honours conditional requests (Nextcloud, ownCloud, SabreDAV) for files edited on both sides",
        ),
        Err(e) => report.bad(
            "server.conditions",
            Verdict::Fail,
            format!("{e:#}"),
            "correct the cloud URL",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::has_value;

    #[test]
    fn property_values() {
        assert!(has_value("<d:getetag>\"x\"</d:getetag>", "getetag"));
        assert!(!has_value("<d:getetag/>", "getetag"));
        assert!(!has_value(
            "<d:propstat><d:prop><oc:fileid/></d:prop>",
            "fileid"
        ));
        assert!(has_value("<oc:fileid>12</oc:fileid>", "fileid"));
        assert!(!has_value("<d:getetag></d:getetag>", "getetag"));
        assert!(has_value(
            "<x1:fileid xmlns:x1=\"http://owncloud.org/ns\">12</x1:fileid>",
            "fileid"
        ));
    }
}
