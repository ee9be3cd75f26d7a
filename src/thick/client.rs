//! The client side of the daemon socket: HTTP/1.1 over a unix stream, one request per connection
//! (`Connection: close`), blocking, on std alone. Used by the shim (a process per CNI call, so no
//! async runtime to start and no HTTP stack to link: the shim stays small and starts fast) and by
//! the daemon's self-check at startup.
//!
//! The answer is framed the three ways an HTTP/1.1 server may frame it (our daemon and upstream's
//! Go daemon both answer with one of them): `Content-Length`, `Transfer-Encoding: chunked`, or the
//! end of the stream. Parsing is [`parse_head`] and [`decode_chunked`], plain functions over bytes.

use std::io::{self, Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http::Method;

use super::api::{HEALTH_ENDPOINT, URL_HOST};

/// The largest answer the client reads (a CNI result is a few KiB).
pub const MAX_REPLY: usize = 16 << 20;
/// The largest header block the client reads.
const MAX_HEAD: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("dial unix {}: {source}", path.display())]
    Connect { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Http(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// What the daemon answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

/// How the body after the header block is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// The parsed header block of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub framing: Framing,
    /// Bytes of the header block, including the blank line.
    pub len: usize,
}

/// Parses the header block at the start of `buf`; `Ok(None)` when it is not complete yet.
/// Informational (1xx) answers are skipped: the head returned is the final one.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut start = 0;
    loop {
        let Some(end) = find(&buf[start..], b"\r\n\r\n") else {
            return Ok(None);
        };
        // Go lets header values carry any byte: read them lossily rather than refuse the answer.
        let block = String::from_utf8_lossy(&buf[start..start + end]);
        let mut lines = block.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let (proto, code) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
        if !proto.starts_with("HTTP/1.") || code.len() != 3 {
            return Err(format!("malformed status line {status_line:?}"));
        }
        let status: u16 = code.parse().map_err(|_| format!("malformed status line {status_line:?}"))?;
        let len = start + end + 4;
        if (100..200).contains(&status) {
            start = len;
            continue;
        }
        let mut framing = Framing::UntilClose;
        for line in lines {
            let (name, value) = line.split_once(':').ok_or_else(|| format!("malformed header line {line:?}"))?;
            let value = value.trim();
            if name.eq_ignore_ascii_case("transfer-encoding") {
                if value.eq_ignore_ascii_case("chunked") {
                    framing = Framing::Chunked;
                } else {
                    return Err(format!("unsupported transfer-encoding {value:?}"));
                }
            } else if name.eq_ignore_ascii_case("content-length") && framing != Framing::Chunked {
                let n: usize = value.parse().map_err(|_| format!("malformed content-length {value:?}"))?;
                if n > MAX_REPLY {
                    return Err(format!("the answer has {n} bytes, more than the {MAX_REPLY} read"));
                }
                framing = Framing::Length(n);
            }
        }
        // A body is never sent with 204 or 304.
        if status == 204 || status == 304 {
            framing = Framing::Length(0);
        }
        return Ok(Some(Head { status, framing, len }));
    }
}

/// The longest chunk-size or trailer line read.
const MAX_LINE: usize = 4096;

/// A chunked body decoded as it arrives: each [`Chunked::feed`] resumes where the last stopped, so
/// a body of many small chunks costs linear time. Extensions and trailers are read and dropped.
#[derive(Debug, Default)]
pub struct Chunked {
    /// Where the next unread line starts in the bytes after the head.
    at: usize,
    body: Vec<u8>,
    in_trailers: bool,
}

impl Chunked {
    /// `buf` is every byte after the head received so far; `Ok(true)` once the body is complete.
    pub fn feed(&mut self, buf: &[u8]) -> Result<bool, String> {
        loop {
            let Some(eol) = find(&buf[self.at..], b"\r\n") else {
                if buf.len() - self.at > MAX_LINE {
                    return Err(format!("a chunk-size or trailer line is longer than {MAX_LINE} bytes"));
                }
                return Ok(false);
            };
            let line_end = self.at + eol + 2;
            if self.in_trailers {
                self.at = line_end;
                if eol == 0 {
                    return Ok(true);
                }
                continue;
            }
            let line = String::from_utf8_lossy(&buf[self.at..self.at + eol]);
            let size_text = line.split(';').next().unwrap_or_default().trim();
            // u64, not usize: on 32-bit platforms a size past usize::MAX is "too long", not "malformed".
            let size = u64::from_str_radix(size_text, 16).map_err(|_| format!("malformed chunk size {line:?}"))?;
            if size == 0 {
                self.at = line_end;
                self.in_trailers = true;
                continue;
            }
            let size = match usize::try_from(size) {
                Ok(s) if s <= MAX_REPLY - self.body.len() => s,
                _ => return Err(format!("the answer is longer than the {MAX_REPLY} bytes read")),
            };
            // No overflow: line_end <= buf.len() and size <= MAX_REPLY.
            if buf.len() < line_end + size + 2 {
                return Ok(false);
            }
            if &buf[line_end + size..line_end + size + 2] != b"\r\n" {
                return Err("a chunk does not end in CRLF".into());
            }
            self.body.extend_from_slice(&buf[line_end..line_end + size]);
            self.at = line_end + size + 2;
        }
    }

    pub fn into_body(self) -> Vec<u8> {
        self.body
    }
}

/// Decodes a whole chunked body; `Ok(None)` when it is not complete yet.
pub fn decode_chunked(buf: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut c = Chunked::default();
    Ok(c.feed(buf)?.then(|| c.into_body()))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The request's bytes: head and body.
pub fn encode_request(method: &Method, endpoint: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{method} {endpoint} HTTP/1.1\r\nHost: {URL_HOST}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

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
    let written = stream.write_all(&encode_request(&method, endpoint, body));
    let write_error = match written {
        Ok(()) => None,
        Err(e) if matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) => Some(e),
        Err(e) => return Err(io_error(e)),
    };
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let mut head: Option<Head> = None;
    let mut chunked = Chunked::default();
    loop {
        if let Some(h) = &head {
            let rest = &buf[h.len..];
            match h.framing {
                Framing::Length(n) if rest.len() >= n => {
                    return Ok(Reply { status: h.status, body: rest[..n].to_vec() });
                }
                Framing::Chunked if chunked.feed(rest).map_err(|e| ClientError::Http(format!("{what}: {e}")))? => {
                    return Ok(Reply { status: h.status, body: std::mem::take(&mut chunked).into_body() });
                }
                _ => {}
            }
        }
        arm(&stream)?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(write_error.unwrap_or(e))),
        };
        if n == 0 {
            return match (head, write_error) {
                (Some(h), _) if h.framing == Framing::UntilClose => {
                    Ok(Reply { status: h.status, body: buf.split_off(h.len) })
                }
                // Nothing was answered: the failed write is the error.
                (None, Some(e)) => Err(io_error(e)),
                _ => Err(ClientError::Http(format!("{what}: connection closed before message completed"))),
            };
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_REPLY + MAX_HEAD {
            return Err(ClientError::Http(format!("{what}: the answer is longer than {MAX_REPLY} bytes")));
        }
        if head.is_none() {
            head = parse_head(&buf).map_err(|e| ClientError::Http(format!("{what}: {e}")))?;
            if head.is_none() && buf.len() > MAX_HEAD {
                return Err(ClientError::Http(format!("{what}: the answer's header is longer than {MAX_HEAD} bytes")));
            }
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

    /// One `/healthz` probe (upstream's shim POSTs `null`).
    pub fn probe(&self, timeout: Duration) -> Result<(), ClientError> {
        let reply = self.send(Method::POST, HEALTH_ENDPOINT, b"null".to_vec(), Some(timeout))?;
        if reply.status == 200 {
            Ok(())
        } else {
            Err(ClientError::Http(format!(
                "{HEALTH_ENDPOINT} answered {}: '{}'",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            )))
        }
    }

    /// Probes every `interval` until the daemon answers or `timeout` has passed (upstream's
    /// `WaitUntilAPIReady`: 100 ms, 60 s). Returns the last failure.
    pub fn wait_ready(&self, timeout: Duration, interval: Duration) -> Result<(), ClientError> {
        let start = Instant::now();
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            let last = match self.probe(left.max(interval)) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if start.elapsed() + interval > timeout {
                return Err(last);
            }
            std::thread::sleep(interval);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Option<Head>, String> {
        parse_head(text.as_bytes())
    }

    #[test]
    fn a_head_is_framed_by_length_chunks_or_the_end_of_the_stream() {
        let block = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: 12\r\n\r\n";
        let h = head(&format!("{block}{{\"Result\":1}}")).unwrap().unwrap();
        assert_eq!(h, Head { status: 200, framing: Framing::Length(12), len: block.len() });
        let h = head("HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        // Chunked wins over a length sent beside it (RFC 9112 6.3).
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        let h = head("HTTP/1.0 500 Internal Server Error\r\n\r\n").unwrap().unwrap();
        assert_eq!((h.status, h.framing), (500, Framing::UntilClose));
        let h = head("HTTP/1.1 204 No Content\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.framing, Framing::Length(0));
    }

    #[test]
    fn an_incomplete_head_asks_for_more_and_informational_answers_are_skipped() {
        assert_eq!(head("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n").unwrap(), None);
        let text = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let h = head(text).unwrap().unwrap();
        assert_eq!((h.status, h.len), (200, text.len()));
        assert_eq!(head("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2").unwrap(), None);
    }

    #[test]
    fn a_malformed_head_is_an_error_that_says_what() {
        assert!(head("SSH-2.0-OpenSSH\r\n\r\n").unwrap_err().contains("malformed status line"));
        assert!(head("HTTP/1.1 20 OK\r\n\r\n").unwrap_err().contains("malformed status line"));
        assert!(head("HTTP/1.1 200 OK\r\nno colon\r\n\r\n").unwrap_err().contains("malformed header line"));
        assert!(head("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n").unwrap_err().contains("content-length"));
        assert!(head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n").unwrap_err().contains("gzip"));
        let huge = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", MAX_REPLY + 1);
        assert!(head(&huge).unwrap_err().contains("more than"));
    }

    #[test]
    fn chunks_are_joined_with_extensions_and_trailers_dropped() {
        let body = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n";
        assert_eq!(decode_chunked(body).unwrap().unwrap(), b"hello, world");
        assert_eq!(decode_chunked(b"0\r\n\r\n").unwrap().unwrap(), b"");
        for cut in 0..body.len() - 1 {
            assert_eq!(decode_chunked(&body[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert!(decode_chunked(b"zz\r\n").unwrap_err().contains("chunk size"));
        assert!(decode_chunked(b"2\r\nabc\r\n").unwrap_err().contains("CRLF"));
        // A size that would overflow is refused, not trusted.
        let huge = decode_chunked(b"1\r\na\r\nffffffffffffffff\r\n").unwrap_err();
        assert!(huge.contains("longer than"), "{huge}");
        assert!(decode_chunked(&[b'1'; MAX_LINE + 1]).unwrap_err().contains("longer than"));
        // Fed piece by piece, the decoder resumes where it stopped.
        let mut c = Chunked::default();
        let mut fed = Vec::new();
        let mut done = false;
        for b in body {
            fed.push(*b);
            done = c.feed(&fed).unwrap();
        }
        assert!(done);
        assert_eq!(c.into_body(), b"hello, world");
    }

    #[test]
    fn the_request_closes_the_connection_and_says_its_length() {
        let bytes = encode_request(&Method::POST, "/cni", b"{}");
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "POST /cni HTTP/1.1\r\nHost: dummy\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        );
    }

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
