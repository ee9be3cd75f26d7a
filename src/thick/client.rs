//! The client side of the daemon socket: HTTP/1.1 over a unix stream, one request per connection
//! (`Connection: close`), blocking, on std alone. Used by the daemon's self-check at startup, by
//! `shim::StdIo` and by the tests; the shipped shim (`shim/`) does the same exchange over system
//! calls (`shim/src/io.rs`).
//! The bytes on the wire are `http`'s plain functions; this module does the IO and the deadlines.

use std::io::{self, Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http::Method;

use super::api::URL_HOST;
use super::http::CLOSED_EARLY;
pub use super::http::{
    ClientError, Framing, Head, MAX_REPLY, Reply, ReplyReader, Unfinished, decode_chunked, encode_request, parse_head,
};

/// Connects to `path`; with a timeout the wait for a full accept backlog is bounded too (a unix
/// socket's connect waits up to the socket's send timeout).
fn connect(path: &Path, timeout: Option<Duration>) -> io::Result<UnixStream> {
    let Some(timeout) = timeout else {
        return UnixStream::connect(path);
    };
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    if bytes.is_empty() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a socket path must be non-empty and free of NUL bytes",
        ));
    }
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "a socket path must be shorter than 108 bytes"));
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: socket(2) with constant arguments; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket that nothing else owns; the stream closes it.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    stream.set_write_timeout(Some(timeout.max(Duration::from_millis(1))))?;
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes for the duration of the call.
    let rc = unsafe { libc::connect(fd, (&raw const addr).cast::<libc::sockaddr>(), len) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(if e.kind() == io::ErrorKind::WouldBlock { io::ErrorKind::TimedOut.into() } else { e });
    }
    Ok(stream)
}

/// Sends one request and reads the whole answer; `timeout` bounds the whole exchange.
pub fn send(
    socket: &Path,
    method: Method,
    endpoint: &str,
    body: &[u8],
    timeout: Option<Duration>,
) -> Result<Reply, ClientError> {
    let deadline = timeout.map(|t| (Instant::now() + t, t));
    let mut stream = connect(socket, timeout).map_err(|source| match source.kind() {
        io::ErrorKind::TimedOut => ClientError::Timeout(timeout.unwrap_or_default()),
        _ => ClientError::Connect { path: socket.to_path_buf(), source },
    })?;
    let what = format!("{method} http://{URL_HOST}{endpoint}");
    let io_error = |e: io::Error| match (e.kind(), deadline) {
        (io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut, Some((_, t))) => ClientError::Timeout(t),
        _ => ClientError::Http(format!("{what}: {e}")),
    };
    // Each read and write gets what is left of the deadline.
    let arm = |stream: &UnixStream| -> Result<(), ClientError> {
        if let Some((at, t)) = deadline {
            let left = at.checked_duration_since(Instant::now()).filter(|d| !d.is_zero());
            let left = left.ok_or(ClientError::Timeout(t))?;
            stream.set_read_timeout(Some(left)).map_err(io_error)?;
            stream.set_write_timeout(Some(left)).map_err(io_error)?;
        } else {
            stream.set_write_timeout(None).map_err(io_error)?;
        }
        Ok(())
    };
    arm(&stream)?;
    // A server may answer and close before it has read the whole request (a refusal of an
    // oversized body): a broken pipe while writing still leaves its answer to read.
    let written = stream.write_all(&encode_request(method.as_str(), endpoint, body));
    let write_error = match written {
        Ok(()) => None,
        Err(e) if matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) => Some(e),
        Err(e) => return Err(io_error(e)),
    };
    let mut reader = ReplyReader::default();
    let mut chunk = [0u8; 8192];
    loop {
        arm(&stream)?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(write_error.unwrap_or(e))),
        };
        if n == 0 {
            return match (reader.at_end(), write_error) {
                (Ok(reply), _) => Ok(reply),
                // Nothing was answered: the failed write is the error.
                (Err(Unfinished::Head), Some(e)) => Err(io_error(e)),
                _ => Err(ClientError::Http(format!("{what}: {CLOSED_EARLY}"))),
            };
        }
        if let Some(reply) = reader.feed(&chunk[..n]).map_err(|e| ClientError::Http(format!("{what}: {e}")))? {
            return Ok(reply);
        }
    }
}

/// A client for one socket.
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client { socket: socket.into() }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// One request; `timeout` bounds the whole exchange.
    pub fn send(
        &self,
        method: Method,
        endpoint: &str,
        body: Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<Reply, ClientError> {
        send(&self.socket, method, endpoint, &body, timeout)
    }

    /// One `/healthz` probe (`shim::probe`).
    pub fn probe(&self, timeout: Duration) -> Result<(), ClientError> {
        super::shim::probe(&super::shim::StdIo, &self.socket.to_string_lossy(), timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real unix socket: a server that answers in pieces, chunked, and one that never answers.
    #[test]
    fn answers_are_read_over_a_socket_and_a_silent_server_times_out() {
        use std::os::unix::net::UnixListener;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let answers: [&[&[u8]]; 2] = [
                &[b"HTTP/1.1 200 OK\r\nTransfer-", b"Encoding: chunked\r\n\r\n3\r\nabc\r\n", b"0\r\n\r\n"],
                &[b"HTTP/1.1 400 Bad Request\r\n\r\n", b"{\"code\":7}"],
            ];
            for parts in answers {
                let (mut s, _) = listener.accept().unwrap();
                let mut req = [0u8; 1024];
                let _ = s.read(&mut req).unwrap();
                for p in parts {
                    s.write_all(p).unwrap();
                    s.flush().unwrap();
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            // The third connection is accepted and never answered.
            let (s, _) = listener.accept().unwrap();
            std::thread::sleep(Duration::from_millis(500));
            drop(s);
        });
        let client = Client::new(&path);
        let r = client.send(Method::POST, "/cni", b"{}".to_vec(), Some(Duration::from_secs(5))).unwrap();
        assert_eq!(r, Reply { status: 200, body: b"abc".to_vec() });
        let r = client.send(Method::POST, "/cni", b"{}".to_vec(), None).unwrap();
        assert_eq!(r, Reply { status: 400, body: b"{\"code\":7}".to_vec() });
        let e = client.send(Method::POST, "/cni", Vec::new(), Some(Duration::from_millis(100))).unwrap_err();
        assert!(matches!(e, ClientError::Timeout(_)), "{e}");
        server.join().unwrap();
        let e = Client::new(dir.path().join("missing.sock")).probe(Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().starts_with("dial unix ") && e.to_string().contains("missing.sock"), "{e}");
    }
}
