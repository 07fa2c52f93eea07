//! A tiny fault-injecting TCP proxy for tests: it sits between a client and a real server and,
//! per new connection, passes traffic through or breaks it in one chosen way (a delay, a reset,
//! a canned error status, a truncated body). It exists so that tests can check how transport
//! trouble and server errors map onto error kinds, with a real server behind it for the rest.
//!
//! Plain std threads: it works under any async runtime, or none. Dropping it stops accepting;
//! connections in flight end with their sockets.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
}

/// A running proxy.
pub struct FaultProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    fault: Arc<Mutex<Fault>>,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
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
        let accept = {
            let (fault, stop, connections) = (fault.clone(), stop.clone(), connections.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = conn else { continue };
                    connections.fetch_add(1, Ordering::SeqCst);
                    let f = fault.lock().unwrap().clone();
                    std::thread::spawn(move || {
                        let _ = handle(client, upstream, f);
                    });
                }
            })
        };
        FaultProxy {
            addr,
            fault,
            stop,
            connections,
            accept: Some(accept),
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

fn handle(mut client: TcpStream, upstream: SocketAddr, fault: Fault) -> io::Result<()> {
    match fault {
        Fault::Pass => pipe(client, upstream),
        Fault::Delay(d) => {
            std::thread::sleep(d);
            pipe(client, upstream)
        }
        Fault::Reset => {
            read_request(&mut client)?;
            set_linger_zero(&client);
            drop(client);
            Ok(())
        }
        Fault::Status(code) => {
            read_request(&mut client)?;
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
            read_request(&mut client)?;
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nETag: \"t\"\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n";
            client.write_all(head.as_bytes())?;
            client.write_all(&[b'x'; 1000])?;
            client.flush()?;
            client.shutdown(Shutdown::Both)
        }
    }
}

/// Forwards both ways until both sides are done.
fn pipe(client: TcpStream, upstream: SocketAddr) -> io::Result<()> {
    let server = TcpStream::connect(upstream)?;
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
