//! A tiny fault-injecting TCP proxy for tests: it sits between a client and a real server and,
//! per new connection, passes traffic through or breaks it in one chosen way (a delay, a reset,
//! a canned error status, a truncated body). It exists so that tests can check how transport
//! trouble and server errors map onto error kinds, with a real server behind it for the rest.
//!
//! Plain std threads: it works under any async runtime, or none. Dropping it stops accepting;
//! connections in flight end with their sockets.
//!
//! Besides the whole-connection faults there are per-request ones ([`Fault::Only`],
//! [`Fault::Logged`], [`Fault::InjectPropfind`]): the proxy reads each request head, forces
//! `Connection: close` so that every connection carries exactly one request, logs the request
//! line (see [`FaultProxy::requests`]) and then decides. [`FaultProxy::sever`] breaks every
//! connection in flight, as a server crash or a network cut would.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the proxy does to each new connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Forward both ways unchanged.
    Pass,
    /// Wait this long, then forward.
    Delay(Duration),
    /// Read the request, then reset the connection (RST) without answering.
    Reset,
    /// Read the request, then answer with this status and a short body.
    Status(u16),
    /// Read the request, then answer 200 announcing 100000 bytes but send 1000 and close.
    Truncate,
    /// Per request: requests with this method (like `"PUT"`) get the inner fault; all others
    /// pass through.
    Only(String, Box<Fault>),
    /// Per request: pass through, one request per connection, each request line logged.
    Logged,
    /// Per request: pass through, but send the request body on at most this many bytes a
    /// second, so that a test can act in the middle of an upload.
    Throttle(u64),
    /// Per request: pass through, but insert these XML fragments (whole `<d:response>`
    /// elements, with `xmlns:d="DAV:"` on them) at the end of every 207 Multi-Status answer,
    /// as a hostile or broken server would list them.
    InjectPropfind(Vec<String>),
}

impl Fault {
    fn per_request(&self) -> bool {
        matches!(
            self,
            Fault::Only(..) | Fault::Logged | Fault::Throttle(_) | Fault::InjectPropfind(_)
        )
    }
}

/// What the connection handlers share with the proxy.
#[derive(Default)]
struct Shared {
    /// Request lines seen, in order.
    requests: Mutex<Vec<String>>,
    /// Forwarded requests with their conditional headers and the answer's status line.
    exchanges: Mutex<Vec<String>>,
    /// Sockets of connections in flight, by connection number, so they can be cut.
    live: Mutex<HashMap<u64, Vec<TcpStream>>>,
    next: AtomicU64,
}

impl Shared {
    fn register(&self, id: u64, s: &TcpStream) {
        if let Ok(c) = s.try_clone() {
            self.live.lock().unwrap().entry(id).or_default().push(c);
        }
    }

    fn log(&self, head: &[u8]) {
        let line = String::from_utf8_lossy(head)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        self.requests.lock().unwrap().push(line);
    }

    fn exchange(&self, head: &[u8], answer: &[u8]) {
        let text = String::from_utf8_lossy(head);
        let mut line = text.lines().next().unwrap_or_default().to_string();
        for h in [
            "if-match",
            "if-none-match",
            "depth",
            "destination",
            "overwrite",
        ] {
            if let Some(v) = header_value(head, h) {
                line.push_str(&format!(" [{h}: {v}]"));
            }
        }
        let status = String::from_utf8_lossy(answer)
            .lines()
            .next()
            .unwrap_or("(no answer)")
            .to_string();
        line.push_str(&format!(" -> {status}"));
        self.exchanges.lock().unwrap().push(line);
    }
}

/// A running proxy.
pub struct FaultProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    fault: Arc<Mutex<Fault>>,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port in front of `upstream`, passing traffic through.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let fault = Arc::new(Mutex::new(Fault::Pass));
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(Shared::default());
        let accept = {
            let (fault, stop, connections, shared) = (
                fault.clone(),
                stop.clone(),
                connections.clone(),
                shared.clone(),
            );
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = conn else { continue };
                    connections.fetch_add(1, Ordering::SeqCst);
                    let f = fault.lock().unwrap().clone();
                    let sh = shared.clone();
                    std::thread::spawn(move || {
                        let id = sh.next.fetch_add(1, Ordering::SeqCst);
                        sh.register(id, &client);
                        let _ = if f.per_request() {
                            handle_request(client, upstream, f, &sh, id)
                        } else {
                            handle(client, upstream, f, &sh, id)
                        };
                        sh.live.lock().unwrap().remove(&id);
                    });
                }
            })
        };
        FaultProxy {
            addr,
            fault,
            stop,
            connections,
            shared,
            accept: Some(accept),
        }
    }

    /// The request lines (`METHOD target HTTP/1.1`) the proxy has read so far, in order. Only
    /// the per-request faults and those that read the request ([`Fault::Reset`],
    /// [`Fault::Status`], [`Fault::Truncate`]) see them; [`Fault::Pass`] and
    /// [`Fault::Delay`] forward raw bytes.
    pub fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Each request forwarded in a per-request mode, with its conditional headers and the
    /// status line of the answer, like `PUT /dav/a HTTP/1.1 [if-match: "x"] -> HTTP/1.1 412
    /// Precondition Failed`. For failure messages and for checks on what reached the server.
    pub fn exchanges(&self) -> Vec<String> {
        self.shared.exchanges.lock().unwrap().clone()
    }

    /// Breaks every connection in flight with a reset, in both directions, as a server crash
    /// or a network cut would. New connections are handled as usual.
    pub fn sever(&self) {
        let live: Vec<TcpStream> = self
            .shared
            .live
            .lock()
            .unwrap()
            .drain()
            .flat_map(|(_, v)| v)
            .collect();
        for s in live {
            set_linger_zero(&s);
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Sets what happens to connections from now on.
    pub fn set(&self, f: Fault) {
        *self.fault.lock().unwrap() = f;
    }

    /// The proxy's URL for a path on the server (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// Reads one request: the head, then as many body bytes as `Content-Length` says.
fn read_request(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 64 << 10];
    let head_end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(got);
        }
        got.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = got.len() - head_end;
    while body < len {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        body += n;
    }
    Ok(got)
}

/// Makes closing the socket send a RST instead of a FIN.
fn set_linger_zero(s: &TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the fd is a valid open socket owned by `s`, and the option value points to a
    // properly initialised `linger` whose size is passed alongside.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        401 => "Unauthorized",
        403 => "Forbidden",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        507 => "Insufficient Storage",
        _ => "Injected",
    }
}

fn handle(
    mut client: TcpStream,
    upstream: SocketAddr,
    fault: Fault,
    sh: &Shared,
    id: u64,
) -> io::Result<()> {
    match fault {
        Fault::Pass => pipe(client, upstream, sh, id),
        Fault::Delay(d) => {
            std::thread::sleep(d);
            pipe(client, upstream, sh, id)
        }
        Fault::Reset => {
            sh.log(&read_request(&mut client)?);
            set_linger_zero(&client);
            drop(client);
            Ok(())
        }
        Fault::Status(code) => {
            sh.log(&read_request(&mut client)?);
            let body = format!("injected {code}\n");
            let auth = if code == 401 {
                "WWW-Authenticate: Basic realm=\"proxy\"\r\n"
            } else {
                ""
            };
            let resp = format!(
                "HTTP/1.1 {code} {}\r\n{auth}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                reason(code),
                body.len()
            );
            client.write_all(resp.as_bytes())?;
            client.shutdown(Shutdown::Write)
        }
        Fault::Truncate => {
            sh.log(&read_request(&mut client)?);
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nETag: \"t\"\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n";
            client.write_all(head.as_bytes())?;
            client.write_all(&[b'x'; 1000])?;
            client.flush()?;
            client.shutdown(Shutdown::Both)
        }
        Fault::Only(..) | Fault::Logged | Fault::Throttle(_) | Fault::InjectPropfind(_) => {
            handle_request(client, upstream, fault, sh, id)
        }
    }
}

/// Forwards both ways until both sides are done.
fn pipe(client: TcpStream, upstream: SocketAddr, sh: &Shared, id: u64) -> io::Result<()> {
    let server = TcpStream::connect(upstream)?;
    sh.register(id, &server);
    let (mut c_read, mut s_write) = (client.try_clone()?, server.try_clone()?);
    let up = std::thread::spawn(move || {
        let _ = io::copy(&mut c_read, &mut s_write);
        let _ = s_write.shutdown(Shutdown::Write);
    });
    let (mut s_read, mut c_write) = (server, client);
    let _ = io::copy(&mut s_read, &mut c_write);
    let _ = c_write.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}

/// Reads up to the end of the request head. Returns the head and whatever body bytes came
/// with it.
fn read_head(s: &mut TcpStream) -> io::Result<(Vec<u8>, Vec<u8>)> {
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 16 << 10];
    loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = got.split_off(i + 4);
            return Ok((got, rest));
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no request"));
        }
        got.extend_from_slice(&buf[..n]);
    }
}

/// The value of a header in a head, lower-cased name.
fn header_value(head: &[u8], name: &str) -> Option<String> {
    String::from_utf8_lossy(head).lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// The head with its `Connection`, `Keep-Alive` (and, with `body_len`, `Content-Length` and
/// `Transfer-Encoding`) headers replaced by `Connection: close` (and the new length).
fn rewrite_head(head: &[u8], body_len: Option<usize>) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    for (i, l) in text.split("\r\n").enumerate() {
        if l.is_empty() {
            continue;
        }
        let name = l
            .split(':')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let drop = i > 0
            && (name == "connection"
                || name == "keep-alive"
                || body_len.is_some() && (name == "content-length" || name == "transfer-encoding"));
        if !drop {
            out.push_str(l);
            out.push_str("\r\n");
        }
    }
    if let Some(n) = body_len {
        out.push_str(&format!("Content-Length: {n}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

/// Reads the rest of a request body announced by `Content-Length`, after `rest`.
fn drain_body(s: &mut TcpStream, head: &[u8], rest: &[u8]) -> io::Result<()> {
    let len: usize = header_value(head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut left = len.saturating_sub(rest.len());
    let mut buf = [0u8; 64 << 10];
    while left > 0 {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        left = left.saturating_sub(n);
    }
    Ok(())
}

/// Decodes a chunked body; gives back what it could when the body is cut short.
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&b[..i]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let Ok(n) = usize::from_str_radix(size_text, 16) else {
            break;
        };
        b = &b[i + 2..];
        if n == 0 || b.len() < n {
            out.extend_from_slice(&b[..n.min(b.len())]);
            break;
        }
        out.extend_from_slice(&b[..n]);
        b = &b[(n + 2).min(b.len())..];
    }
    out
}

/// Inserts `fragments` before the closing tag of a multistatus body.
fn inject(body: &[u8], fragments: &[String]) -> Vec<u8> {
    let text = String::from_utf8_lossy(body);
    let lower = text.to_ascii_lowercase();
    let Some(end) = lower.rfind("multistatus>") else {
        return body.to_vec();
    };
    let Some(open) = lower[..end].rfind("</") else {
        return body.to_vec();
    };
    let mut out = text[..open].to_string();
    for f in fragments {
        out.push_str(f);
    }
    out.push_str(&text[open..]);
    out.into_bytes()
}

/// One request on one connection: log it, then fault it, pass it, or pass it and rewrite
/// the answer.
fn handle_request(
    mut client: TcpStream,
    upstream: SocketAddr,
    fault: Fault,
    sh: &Shared,
    id: u64,
) -> io::Result<()> {
    let (head, rest) = read_head(&mut client)?;
    sh.log(&head);
    let method = String::from_utf8_lossy(&head)
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_string();
    match fault {
        Fault::Only(m, inner) if m.eq_ignore_ascii_case(&method) => match *inner {
            Fault::Pass | Fault::Logged => {
                forward(client, upstream, &head, &rest, None, None, sh, id)
            }
            Fault::Delay(d) => {
                std::thread::sleep(d);
                forward(client, upstream, &head, &rest, None, None, sh, id)
            }
            Fault::InjectPropfind(f) => {
                forward(client, upstream, &head, &rest, Some(&f), None, sh, id)
            }
            Fault::Reset => {
                drain_body(&mut client, &head, &rest)?;
                set_linger_zero(&client);
                drop(client);
                Ok(())
            }
            Fault::Status(code) => {
                drain_body(&mut client, &head, &rest)?;
                let body = format!("injected {code}\n");
                let auth = if code == 401 {
                    "WWW-Authenticate: Basic realm=\"proxy\"\r\n"
                } else {
                    ""
                };
                let resp = format!(
                    "HTTP/1.1 {code} {}\r\n{auth}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    reason(code),
                    body.len()
                );
                client.write_all(resp.as_bytes())?;
                client.shutdown(Shutdown::Write)
            }
            Fault::Throttle(r) => forward(client, upstream, &head, &rest, None, Some(r), sh, id),
            Fault::Truncate => {
                drain_body(&mut client, &head, &rest)?;
                let h = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nETag: \"t\"\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n";
                client.write_all(h.as_bytes())?;
                client.write_all(&[b'x'; 1000])?;
                client.flush()?;
                client.shutdown(Shutdown::Both)
            }
            Fault::Only(..) => forward(client, upstream, &head, &rest, None, None, sh, id),
        },
        Fault::InjectPropfind(f) => forward(client, upstream, &head, &rest, Some(&f), None, sh, id),
        Fault::Throttle(r) => forward(client, upstream, &head, &rest, None, Some(r), sh, id),
        _ => forward(client, upstream, &head, &rest, None, None, sh, id),
    }
}

/// Sends one request upstream with `Connection: close` and relays the answer, with
/// `fragments` injected into a 207 answer when given.
#[allow(clippy::too_many_arguments)]
fn forward(
    client: TcpStream,
    upstream: SocketAddr,
    head: &[u8],
    rest: &[u8],
    fragments: Option<&[String]>,
    rate: Option<u64>,
    sh: &Shared,
    id: u64,
) -> io::Result<()> {
    let mut server = TcpStream::connect(upstream)?;
    sh.register(id, &server);
    server.write_all(&rewrite_head(head, None))?;
    server.write_all(rest)?;
    let (mut c_read, mut s_write) = (client.try_clone()?, server.try_clone()?);
    // The rest of the request body streams on; the server closes after its answer.
    let up = std::thread::spawn(move || match rate {
        None => {
            let _ = io::copy(&mut c_read, &mut s_write);
        }
        Some(rate) => {
            let start = std::time::Instant::now();
            let mut sent = 0u64;
            let mut buf = vec![0u8; 16 << 10];
            loop {
                let due = Duration::from_secs_f64(sent as f64 / rate.max(1) as f64);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
                match c_read.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if s_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        sent += n as u64;
                    }
                }
            }
        }
    });
    let mut c_write = client;
    match fragments {
        None => {
            // Note the answer's status line, then relay everything unchanged.
            let mut first = [0u8; 4096];
            let n = server.read(&mut first).unwrap_or(0);
            sh.exchange(head, &first[..n]);
            c_write.write_all(&first[..n])?;
            let _ = io::copy(&mut server, &mut c_write);
        }
        Some(f) => {
            let mut resp = Vec::new();
            let _ = server.read_to_end(&mut resp);
            let Some(i) = resp.windows(4).position(|w| w == b"\r\n\r\n") else {
                c_write.write_all(&resp)?;
                let _ = c_write.shutdown(Shutdown::Both);
                return Ok(());
            };
            let (rhead, body) = resp.split_at(i + 4);
            let chunked = header_value(rhead, "transfer-encoding")
                .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
            let mut body = if chunked {
                dechunk(body)
            } else {
                body.to_vec()
            };
            let status = String::from_utf8_lossy(rhead)
                .split(' ')
                .nth(1)
                .unwrap_or_default()
                .to_string();
            sh.exchange(head, rhead);
            if status == "207" {
                body = inject(&body, f);
            }
            c_write.write_all(&rewrite_head(rhead, Some(body.len())))?;
            c_write.write_all(&body)?;
        }
    }
    let _ = c_write.shutdown(Shutdown::Both);
    drop(up); // ends when the client closes its side
    Ok(())
}
