//! The HTTP/1.1 of the daemon socket as plain functions over bytes, shared by the std client
//! (`client`) and the libc-free shim (`shim/`): the request's bytes, and the answer framed the
//! three ways an HTTP/1.1 server may frame it (our daemon and upstream's Go daemon both answer
//! with one of them): `Content-Length`, `Transfer-Encoding: chunked`, or the end of the stream.

use core::time::Duration;

use super::api::URL_HOST;
use crate::prelude::*;

/// The largest answer the client reads (a CNI result is a few KiB).
pub const MAX_REPLY: usize = 16 << 20;
/// The largest header block the client reads.
const MAX_HEAD: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[cfg(not(multus_nostd))]
    #[error("dial unix {}: {source}", path.display())]
    Connect { path: std::path::PathBuf, source: std::io::Error },
    /// The libc-free shim's connect failure (its prelude's `OsError`, `sys::Errno`, prints as
    /// std's `io::Error` does).
    #[cfg(multus_nostd)]
    #[error("dial unix {path}: {source}")]
    Connect { path: String, source: OsError },
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
pub fn encode_request(method: &str, endpoint: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{method} {endpoint} HTTP/1.1\r\nHost: {URL_HOST}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// An answer as it arrives: [`ReplyReader::feed`] each read's bytes until it returns the reply,
/// or call [`ReplyReader::at_end`] when the stream ends first. Bounded: the header block to
/// [`MAX_HEAD`] bytes, the body to [`MAX_REPLY`].
#[derive(Debug, Default)]
pub struct ReplyReader {
    buf: Vec<u8>,
    head: Option<Head>,
    chunked: Chunked,
}

impl ReplyReader {
    /// Takes the next bytes read; the reply once it is complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<Reply>, String> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > MAX_REPLY + MAX_HEAD {
            return Err(format!("the answer is longer than {MAX_REPLY} bytes"));
        }
        if self.head.is_none() {
            self.head = parse_head(&self.buf)?;
            if self.head.is_none() && self.buf.len() > MAX_HEAD {
                return Err(format!("the answer's header is longer than {MAX_HEAD} bytes"));
            }
        }
        let Some(h) = &self.head else { return Ok(None) };
        let rest = &self.buf[h.len..];
        Ok(match h.framing {
            Framing::Length(n) if rest.len() >= n => Some(Reply { status: h.status, body: rest[..n].to_vec() }),
            Framing::Chunked if self.chunked.feed(rest)? => {
                Some(Reply { status: h.status, body: core::mem::take(&mut self.chunked).into_body() })
            }
            _ => None,
        })
    }

    /// The stream ended: the reply if it is framed by the end, else whether a head had arrived.
    pub fn at_end(mut self) -> Result<Reply, Unfinished> {
        match self.head {
            Some(h) if h.framing == Framing::UntilClose => {
                Ok(Reply { status: h.status, body: self.buf.split_off(h.len) })
            }
            Some(_) => Err(Unfinished::Body),
            None => Err(Unfinished::Head),
        }
    }
}

/// What was missing when the stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfinished {
    /// Nothing was answered (a failed write is the better error then).
    Head,
    Body,
}

/// The message for a stream that ended early.
pub const CLOSED_EARLY: &str = "connection closed before message completed";

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
        let bytes = encode_request("POST", "/cni", b"{}");
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "POST /cni HTTP/1.1\r\nHost: dummy\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        );
    }
}
