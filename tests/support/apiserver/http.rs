//! The fake API server's HTTP/1.1: one thread per connection, keep-alive, Content-Length bodies
//! (chunked request bodies accepted), and watches as chunked responses of newline-delimited events.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::store::{Watch, code_names};
use super::{ApiHandle, FakeRequest, FakeResponse, Reply, Shared, lock};

/// Accepts until the server stops, then joins every connection thread.
pub(super) fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    let mut next_id = 0u64;
    for conn in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = conn else { continue };
        // Answers go out at once (no Nagle wait behind a delayed ACK), as a real API server's do.
        let _ = stream.set_nodelay(true);
        let Ok(clone) = stream.try_clone() else { continue };
        next_id += 1;
        let id = next_id;
        {
            // Registered under the lock `stop` shuts connections down with, so none is missed.
            let mut conns = lock(&shared.conns);
            if shared.stopping.load(Ordering::SeqCst) {
                break;
            }
            conns.insert(id, clone);
        }
        let api = ApiHandle(shared.clone());
        workers.retain(|w| !w.is_finished());
        workers.push(std::thread::spawn(move || {
            let _ = serve_connection(&api, stream);
            lock(&api.0.conns).remove(&id);
        }));
    }
    drop(listener);
    for w in workers {
        let _ = w.join();
    }
}

/// Serves requests on one keep-alive connection until the client closes it or the server stops.
fn serve_connection(api: &ApiHandle, stream: TcpStream) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    while let Some(req) = read_request(&mut reader, &mut out)? {
        if api.0.stopping.load(Ordering::SeqCst) {
            return Ok(());
        }
        match api.handle(&req) {
            Reply::Response(r) if r.hang_up => return Ok(()),
            Reply::Response(r) => write_response(&mut out, &r)?,
            Reply::Watch(w) => stream_watch(api, &mut out, w)?,
        }
        if req.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close")) {
            return Ok(());
        }
    }
    Ok(())
}

fn read_request(r: &mut BufReader<TcpStream>, out: &mut TcpStream) -> io::Result<Option<FakeRequest>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let mut line = String::new();
    while line.trim().is_empty() {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else { return Err(bad("bad request line")) };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (method, path, query) = (method.to_string(), path.to_string(), query.to_string());
    let mut req = FakeRequest { method, path, query, headers: Vec::new(), body: Vec::new() };
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Err(bad("eof in headers"));
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').ok_or_else(|| bad("bad header"))?;
        req.headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    if req.header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")) {
        out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    if req.header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let size = size.trim().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk)?;
            if size == 0 {
                break; // the clients we serve send no trailers
            }
            req.body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(len) = req.header("content-length") {
        req.body = vec![0; len.parse().map_err(|_| bad("bad content-length"))?];
        r.read_exact(&mut req.body)?;
    }
    Ok(Some(req))
}

fn write_response(out: &mut TcpStream, r: &FakeResponse) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", r.code, code_names(r.code).1);
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", r.body.len()));
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&r.body);
    out.write_all(&bytes)
}

fn write_event(out: &mut TcpStream, event: &Value) -> io::Result<()> {
    let line = format!("{event}\n");
    out.write_all(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes())
}

/// Whether the client closed its side (checked while a watch is idle, so its thread can end).
fn peer_closed(out: &TcpStream) -> bool {
    let _ = out.set_nonblocking(true);
    let closed = matches!(out.peek(&mut [0u8; 1]), Ok(0));
    let _ = out.set_nonblocking(false);
    closed
}

/// Streams a watch until its timeout, the client leaving, or the server stopping.
fn stream_watch(api: &ApiHandle, out: &mut TcpStream, w: Watch) -> io::Result<()> {
    out.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")?;
    for e in &w.initial {
        write_event(out, e)?;
    }
    if !w.finished {
        follow(api, out, &w)?;
    }
    out.write_all(b"0\r\n\r\n")
}

/// Sends the watch's events as writes happen; returns at the watch's deadline.
fn follow(api: &ApiHandle, out: &mut TcpStream, w: &Watch) -> io::Result<()> {
    let mut cursor = w.cursor;
    loop {
        let events = {
            let mut st = api.state();
            loop {
                if api.0.stopping.load(Ordering::SeqCst) || peer_closed(out) {
                    return Err(io::ErrorKind::ConnectionAborted.into());
                }
                let (events, next) = w.after(&st, cursor);
                cursor = next;
                let now = Instant::now();
                if !events.is_empty() {
                    break events;
                }
                if now >= w.deadline {
                    return Ok(());
                }
                let wait = (w.deadline - now).min(Duration::from_secs(1));
                st = api.0.changed.wait_timeout(st, wait).unwrap_or_else(|e| e.into_inner()).0;
            }
        };
        for e in &events {
            write_event(out, e)?;
        }
    }
}

/// Decodes `%XX` and `+` (query strings as Go and form_urlencoded write them).
pub(super) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex =
            b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 2;
            }
            (b'+', _) => out.push(b' '),
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
