//! The Sync Manager: an HTTP server the daemon runs when `--status-addr` is given, with one
//! page for people, `GET /metrics` for Prometheus and a small JSON API the page uses.
//!
//! Every answer comes from the control code ([`Control`]): the status report is the one
//! `cloudsync status --json` prints, and the actions (sync request, retry, pause, resume)
//! are the control socket's own requests, so the page can do nothing the socket cannot.
//!
//! Who may use it:
//! - The server listens on a loopback address unless `status_allow_remote` says otherwise.
//! - Every request but `GET /metrics` needs the token kept in `STATE/web.token` (created
//!   private at each start, so only the daemon's user and root can read it, the same people
//!   the control socket lets in). It comes as `Authorization: Bearer TOKEN`, or as a cookie
//!   that `GET /?token=TOKEN` sets before it sends the browser on to `/`, so the token does
//!   not stay in the address bar or the history.
//! - State changes are `POST` only, and each must carry the header `X-Cloudsync-Action: 1`,
//!   which a page of another origin cannot send without a CORS preflight this server never
//!   grants; an `Origin` header, when sent, must be this server's. The cookie is `HttpOnly`
//!   and `SameSite=Strict`.
//! - On a loopback address the `Host` header must name a loopback host, which keeps out pages
//!   that reach the port through a DNS name of their own.
//! - `/metrics` names no path, file or URL.
//!
//! Requests are never logged, so the token cannot reach a log through a URL.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tracing::{info, warn};

use crate::control::{self, Control};
use crate::metrics;

/// The file in the state dir that holds the token.
pub const TOKEN_FILE: &str = "web.token";
/// The header every state-changing request must carry.
pub const ACTION_HEADER: &str = "x-cloudsync-action";

/// Where the Sync Manager listens, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusAddr {
    /// The address to bind.
    pub addr: SocketAddr,
    /// Whether a non-loopback address was explicitly allowed.
    pub allow_remote: bool,
}

impl StatusAddr {
    /// Parses `--status-addr` and checks it against `--status-allow-remote`.
    pub fn parse(s: &str, allow_remote: bool) -> Result<StatusAddr> {
        let addr: SocketAddr = s.trim().parse().with_context(|| {
            format!(
                "status_addr = {s:?} is not an address; write it like 127.0.0.1:8080 or [::1]:8080"
            )
        })?;
        if !addr.ip().is_loopback() && !allow_remote {
            anyhow::bail!(
                "status_addr = {addr} is not a loopback address: the page would be reachable from the network over plain HTTP (use 127.0.0.1 or [::1], or allow it with --status-allow-remote)"
            );
        }
        Ok(StatusAddr { addr, allow_remote })
    }
}

/// The bound socket and the token, made before the mount so that a port already taken is
/// refused before anything is mounted.
pub struct Bound {
    listener: std::net::TcpListener,
    token: String,
    /// The address bound (with the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// The token file.
    pub token_file: PathBuf,
}

/// A fresh token: 32 random bytes from the kernel, in hex.
fn new_token() -> Result<String> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf)
        .map_err(|e| anyhow::anyhow!("cannot get random bytes for the status page token: {e}"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `token` to `STATE/web.token`: in a new file that is 0600 from its creation, then
/// renamed over the old one, so the file is never readable by others, not even for an instant.
fn write_token(state_dir: &Path, token: &str) -> Result<PathBuf> {
    let dest = state_dir.join(TOKEN_FILE);
    let mut f = tempfile::Builder::new()
        .prefix(".web-token-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .tempfile_in(state_dir)
        .with_context(|| format!("cannot create the token file in {}", state_dir.display()))?;
    writeln!(f, "{token}")?;
    f.as_file().sync_all()?;
    f.persist(&dest)
        .with_context(|| format!("cannot write {}", dest.display()))?;
    Ok(dest)
}

/// Binds `addr` and writes a new token into `state_dir`.
pub fn bind(addr: &StatusAddr, state_dir: &Path) -> Result<Bound> {
    let listener = std::net::TcpListener::bind(addr.addr)
        .with_context(|| format!("cannot serve the status page on {}", addr.addr))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let token = new_token()?;
    let token_file = write_token(state_dir, &token)?;
    Ok(Bound {
        listener,
        token,
        addr: bound,
        token_file,
    })
}

/// What every handler sees.
struct Web {
    control: Arc<Control>,
    token: String,
    cookie: String,
    /// Bound to a loopback address: the `Host` header must be a loopback host.
    loopback: bool,
}

type Shared = Arc<Web>;

/// Serves the page on `bound` until the runtime ends. Needs a tokio runtime context.
pub async fn serve(bound: Bound, control: Arc<Control>) {
    let Bound {
        listener,
        token,
        addr,
        token_file,
    } = bound;
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, "cannot serve the status page");
            return;
        }
    };
    let web = Arc::new(Web {
        control,
        token,
        cookie: format!("cloudsync_token_{}", addr.port()),
        loopback: addr.ip().is_loopback(),
    });
    info!(
        addr = %addr,
        token_file = %token_file.display(),
        "the Sync Manager page is at http://{addr}/ (log in with ?token= and the token file's content)"
    );
    if let Err(e) = axum::serve(listener, router(web)).await {
        warn!(error = %e, "the status page stopped");
    }
}

fn router(web: Shared) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics_text))
        .route("/api/status", get(status_json))
        .route("/api/status.csv", get(status_csv))
        .route("/api/mount", get(mount_json))
        .route("/api/sync", post(sync))
        .route("/api/retry", post(retry))
        .route("/api/pause", post(pause))
        .route("/api/resume", post(resume))
        .layer(middleware::from_fn_with_state(web.clone(), guard))
        .with_state(web)
}

/// Equal strings, compared in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The token a request carries, from `Authorization: Bearer` or from the cookie.
fn presented<'a>(headers: &'a HeaderMap, cookie: &str) -> Option<&'a str> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(v.trim());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == cookie)
        .map(|(_, v)| v)
}

/// The host part of a `Host` header or of an origin's authority.
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

fn is_loopback_host(h: &str) -> bool {
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{why}\n"),
    )
        .into_response()
}

const LOGIN_HELP: &str = "<!doctype html><meta charset=utf-8><title>cloudsync: log in</title>\
<body style=\"font:15px system-ui,sans-serif;max-width:40em;margin:4em auto;color:#222\">\
<h1 style=\"font-size:20px\">cloudsync Sync Manager</h1>\
<p>This page needs the token of the mount. It is in the file <code>web.token</code> in the \
mount's state directory, readable by the daemon's user only. Open this page as \
<code>/?token=TOKEN</code> once; the browser then keeps it in a cookie.</p>";

/// Checks every request before its handler: the `Host`, the token, and for `POST` the action
/// header and the origin. Adds the headers that keep the answers out of caches and frames.
async fn guard(State(web): State<Shared>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    if web.loopback {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(host_of);
        if host.is_some_and(|h| !is_loopback_host(h)) {
            return refuse(StatusCode::MISDIRECTED_REQUEST, "wrong host");
        }
    }
    let path = req.uri().path().to_string();
    if path == "/metrics" {
        return next.run(req).await;
    }
    // The login: `/?token=` with the right token sets the cookie and sends the browser on
    // to `/`, without the token in the address.
    if path == "/"
        && let Some(q) = req.uri().query()
        && let Some(t) = q
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| v)
    {
        if !same(t, &web.token) {
            return secured(
                (
                    StatusCode::UNAUTHORIZED,
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    LOGIN_HELP,
                )
                    .into_response(),
            );
        }
        let cookie = format!(
            "{}={}; HttpOnly; SameSite=Strict; Path=/",
            web.cookie, web.token
        );
        let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        return secured(r);
    }
    if !presented(headers, &web.cookie).is_some_and(|t| same(t, &web.token)) {
        let r = if path == "/" {
            (
                StatusCode::UNAUTHORIZED,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                LOGIN_HELP,
            )
                .into_response()
        } else {
            refuse(
                StatusCode::UNAUTHORIZED,
                "the token is missing or wrong (see web.token in the state directory)",
            )
        };
        return secured(r);
    }
    if req.method() == Method::POST {
        if headers
            .get(ACTION_HEADER)
            .is_none_or(|v| v.as_bytes() != b"1")
        {
            return secured(refuse(
                StatusCode::FORBIDDEN,
                "a state change needs the header X-Cloudsync-Action: 1",
            ));
        }
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default();
            let ok = origin
                .strip_prefix("http://")
                .is_some_and(|a| a.eq_ignore_ascii_case(host));
            if !ok {
                return secured(refuse(StatusCode::FORBIDDEN, "cross-origin request"));
            }
        }
    }
    secured(next.run(req).await)
}

/// Adds the headers every authenticated answer carries.
fn secured(mut r: Response) -> Response {
    let h = r.headers_mut();
    for (k, v) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src data:; form-action 'none'; base-uri 'none'; \
             frame-ancestors 'none'",
        ),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    r
}

/// The page, with its CSS and script inline: nothing is loaded from elsewhere.
const PAGE: &str = include_str!("page.html");

async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response()
}

async fn metrics_text(State(web): State<Shared>) -> Response {
    let c = &web.control;
    let s = c.summary();
    use crate::status::FailureCode;
    // Failed queue entries, and failed records (such as DELETED_ON_CLOUD), whose error reads
    // `CODE: detail`.
    let failed = c.journal.failed_entries().unwrap_or_default();
    let mut codes: Vec<FailureCode> = failed
        .iter()
        .map(|e| e.failure.unwrap_or(FailureCode::Unknown))
        .collect();
    for p in c.journal.failed_nodes_under("").unwrap_or_default() {
        if let Ok(Some(n)) = c.journal.node(&p) {
            let word = n.error.as_deref().unwrap_or_default();
            let word = word.split(':').next().unwrap_or_default();
            codes.push(FailureCode::parse(word).unwrap_or(FailureCode::Unknown));
        }
    }
    let mut by_code: Vec<(FailureCode, u64)> = Vec::new();
    for code in codes {
        match by_code.iter_mut().find(|(c, _)| *c == code) {
            Some((_, n)) => *n += 1,
            None => by_code.push((code, 1)),
        }
    }
    let sh = &c.engine.shared;
    let now = metrics::Now {
        queued: s.queued,
        in_flight: s.in_flight,
        conflicts: s.failed.saturating_sub(failed.len() as u64),
        failed: by_code,
        offline_since_ms: *sh.offline_since.lock().unwrap_or_else(|p| p.into_inner()),
        push_paused: s.push_paused || s.auth_paused,
        pull_paused: s.pull_paused,
    };
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics::render(&sh.metrics, &now),
    )
        .into_response()
}

#[derive(Deserialize)]
struct StatusQuery {
    #[serde(default)]
    failed: bool,
}

/// The control socket's status answer for the whole mount.
async fn full_status(web: &Web, failed: bool) -> control::Response {
    web.control
        .handle(control::Request::Status {
            paths: Vec::new(),
            failed,
        })
        .await
}

fn answer(r: control::Response) -> Response {
    let code = if r.ok {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    (code, axum::Json(r)).into_response()
}

/// `GET /api/status`: what `cloudsync status --json` prints for this mount.
async fn status_json(State(web): State<Shared>, Query(q): Query<StatusQuery>) -> Response {
    let r = full_status(&web, q.failed).await;
    if !r.ok {
        return answer(r);
    }
    let report = control::status_report(&web.control.setup.mountpoint, &r);
    axum::Json(serde_json::Value::Array(vec![report])).into_response()
}

/// `GET /api/status.csv`: what `cloudsync status --csv` prints, failed and conflicting items
/// first.
async fn status_csv(State(web): State<Shared>, Query(q): Query<StatusQuery>) -> Response {
    let mut r = full_status(&web, q.failed).await;
    if !r.ok {
        return answer(r);
    }
    r.items
        .sort_by_key(|i| !matches!(i.status.as_str(), "failed" | "conflict" | "missing"));
    let body = control::status_csv(&web.control.setup.mountpoint, &r.items);
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"cloudsync-status.csv\"",
            ),
        ],
        body,
    )
        .into_response()
}

/// `GET /api/mount`: the mount and its sync sets with their options.
async fn mount_json(State(web): State<Shared>) -> Response {
    let c = &web.control;
    let sets: Vec<serde_json::Value> = c
        .engine
        .scope
        .sets
        .iter()
        .map(|s| {
            serde_json::json!({
                "path": s.local,
                "cloud": s.cloud,
                "is_file": s.is_file,
                "include_subfolders": s.include_subfolders,
                "lock_onprem": s.lock_onprem,
                "cloud_delete": s.cloud_delete,
                "onprem_delete": s.onprem_delete,
                "conflict": match s.conflict {
                    crate::sync::reconcile::Winner::Cloud => "cloud-wins",
                    crate::sync::reconcile::Winner::Onprem => "onprem-wins",
                },
            })
        })
        .collect();
    axum::Json(serde_json::json!({
        "mountpoint": c.setup.mountpoint,
        "onprem": c.setup.onprem,
        "cloud": c.setup.cloud,
        "pid": c.setup.pid,
        "sets": sets,
    }))
    .into_response()
}

#[derive(Deserialize, Default)]
struct Paths {
    #[serde(default)]
    paths: Vec<String>,
}

#[derive(Deserialize, Default)]
struct Directions {
    #[serde(default)]
    push: bool,
    #[serde(default)]
    pull: bool,
}

/// The JSON body of `req`, or the default when there is none.
async fn parse<T: serde::de::DeserializeOwned + Default>(req: Request<Body>) -> Result<T, String> {
    let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .map_err(|_| "the request is too large".to_string())?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("bad request: {e}"))
}

fn bad(why: String) -> Response {
    refuse(StatusCode::BAD_REQUEST, &why)
}

/// `POST /api/sync`: a sync request for `paths` (everything when empty), as `cloudsync sync`.
async fn sync(State(web): State<Shared>, req: Request<Body>) -> Response {
    let p: Paths = match parse(req).await {
        Ok(p) => p,
        Err(e) => return bad(e),
    };
    answer(
        web.control
            .handle(control::Request::Sync {
                paths: p.paths,
                now: false,
            })
            .await,
    )
}

/// `POST /api/retry`: a sync request for `paths`, or for every failed and conflicting item.
async fn retry(State(web): State<Shared>, req: Request<Body>) -> Response {
    let mut p: Paths = match parse(req).await {
        Ok(p) => p,
        Err(e) => return bad(e),
    };
    if p.paths.is_empty() {
        let r = full_status(&web, true).await;
        p.paths = r.items.into_iter().map(|i| i.path).collect();
        if p.paths.is_empty() {
            return answer(control::Response {
                ok: true,
                ..Default::default()
            });
        }
    }
    answer(
        web.control
            .handle(control::Request::Sync {
                paths: p.paths,
                now: false,
            })
            .await,
    )
}

/// `POST /api/pause`: as `cloudsync pause`.
async fn pause(State(web): State<Shared>, req: Request<Body>) -> Response {
    match parse::<Directions>(req).await {
        Ok(d) => answer(
            web.control
                .handle(control::Request::Pause {
                    push: d.push,
                    pull: d.pull,
                })
                .await,
        ),
        Err(e) => bad(e),
    }
}

/// `POST /api/resume`: as `cloudsync resume`.
async fn resume(State(web): State<Shared>, req: Request<Body>) -> Response {
    match parse::<Directions>(req).await {
        Ok(d) => answer(
            web.control
                .handle(control::Request::Resume {
                    push: d.push,
                    pull: d.pull,
                })
                .await,
        ),
        Err(e) => bad(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert!(StatusAddr::parse("127.0.0.1:8080", false).is_ok());
        assert!(StatusAddr::parse("[::1]:0", false).is_ok());
        let e = StatusAddr::parse("0.0.0.0:8080", false).unwrap_err();
        assert!(e.to_string().contains("--status-allow-remote"), "{e}");
        assert!(StatusAddr::parse("0.0.0.0:8080", true).is_ok());
        assert!(StatusAddr::parse("localhost", false).is_err());
    }

    #[test]
    fn hosts() {
        assert_eq!(host_of("127.0.0.1:80"), "127.0.0.1");
        assert_eq!(host_of("[::1]:80"), "::1");
        assert_eq!(host_of("localhost"), "localhost");
        assert!(is_loopback_host("localhost") && is_loopback_host("127.0.0.2"));
        assert!(!is_loopback_host("evil.example"));
    }

    #[test]
    fn tokens() {
        let a = new_token().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, new_token().unwrap());
        assert!(same(&a, &a.clone()) && !same(&a, "x"));
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; cloudsync_token_80=tok"),
        );
        assert_eq!(presented(&h, "cloudsync_token_80"), Some("tok"));
        assert_eq!(presented(&h, "cloudsync_token_81"), None);
    }

    #[test]
    fn token_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = write_token(d.path(), "abc").unwrap();
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "abc\n");
    }
}
