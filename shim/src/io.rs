//! The shim's edge without std: `thick::shim::Io` over system calls (the daemon socket with its
//! deadlines, the clock, the log) and the network-namespace check of `cni::validate::netns`.

use core::time::Duration;

use crate::cni::error::{CniError, Error, code};
use crate::cni::skel::Command;
use crate::log::{Level, Log};
use crate::prelude::*;
use crate::sys::{self, EAGAIN, ECONNRESET, EINTR, EPIPE, Errno, Fd, PollFd};
use crate::thick::api::URL_HOST;
use crate::thick::http::{CLOSED_EARLY, ClientError, Reply, ReplyReader, Unfinished, encode_request};
use crate::thick::shim::{Io, ShimConf};

/// The shim's world: system calls and the log.
#[derive(Debug, Default)]
pub struct SysIo {
    pub log: Log,
}

impl Io for SysIo {
    fn send(&self, socket: &str, endpoint: &str, body: &[u8], timeout: Option<Duration>) -> Result<Reply, ClientError> {
        exchange(socket, endpoint, body, timeout)
    }

    fn sleep(&self, d: Duration) {
        sys::sleep(d)
    }

    fn now(&self) -> Duration {
        sys::monotonic()
    }

    fn init_log(&self, conf: &ShimConf) {
        self.log.init(&conf.log_file, &conf.log_level, conf.log_to_stderr);
    }

    fn error(&self, msg: &str) {
        self.log.log(Level::Error, msg)
    }

    fn verbose(&self, msg: &str) {
        self.log.log(Level::Verbose, msg)
    }

    fn validate_netns(&self, cmd: Command, path: &str) -> Result<(), Error> {
        validate_netns(cmd, path)
    }
}

/// One POST over the unix socket, as `client::send` does it over std: `timeout` bounds the whole
/// exchange (each wait gets what is left), a broken pipe while writing still leaves the answer
/// to read, and the answer is framed by `http::ReplyReader`.
pub fn exchange(socket: &str, endpoint: &str, body: &[u8], timeout: Option<Duration>) -> Result<Reply, ClientError> {
    let start = sys::monotonic();
    let left = || -> Result<Option<Duration>, ClientError> {
        match timeout {
            None => Ok(None),
            Some(t) => {
                let spent = sys::monotonic().saturating_sub(start);
                if spent >= t { Err(ClientError::Timeout(t)) } else { Ok(Some(t - spent)) }
            }
        }
    };
    let fd = connect(socket, timeout.is_some(), &left)?;
    let what = format!("POST http://{URL_HOST}{endpoint}");
    let io_error = |e: Errno| ClientError::Http(format!("{what}: {e}"));
    let request = encode_request("POST", endpoint, body);
    let mut rest = &request[..];
    let mut write_error = None;
    while !rest.is_empty() {
        match sys::write(fd.0, rest) {
            Ok(n) => rest = &rest[n..],
            Err(Errno(EINTR)) => {}
            Err(Errno(EAGAIN)) => wait(&fd, sys::POLLOUT, left()?, timeout)?,
            Err(e @ Errno(EPIPE | ECONNRESET)) => {
                write_error = Some(e);
                break;
            }
            Err(e) => return Err(io_error(e)),
        }
    }
    let mut reader = ReplyReader::default();
    let mut chunk = [0u8; 8192];
    loop {
        if timeout.is_some() {
            wait(&fd, sys::POLLIN, left()?, timeout)?;
        }
        let n = match sys::read(fd.0, &mut chunk) {
            Ok(n) => n,
            Err(Errno(EINTR | EAGAIN)) => continue,
            Err(e) => return Err(io_error(write_error.unwrap_or(e))),
        };
        if n == 0 {
            return match (reader.at_end(), write_error) {
                (Ok(reply), _) => Ok(reply),
                (Err(Unfinished::Head), Some(e)) => Err(io_error(e)),
                _ => Err(ClientError::Http(format!("{what}: {CLOSED_EARLY}"))),
            };
        }
        if let Some(reply) = reader.feed(&chunk[..n]).map_err(|e| ClientError::Http(format!("{what}: {e}")))? {
            return Ok(reply);
        }
    }
}

/// Connects; with a deadline a full accept backlog is waited out until it passes.
fn connect(
    socket: &str,
    bounded: bool,
    left: &dyn Fn() -> Result<Option<Duration>, ClientError>,
) -> Result<Fd, ClientError> {
    let failed = |source: Errno| ClientError::Connect { path: socket.to_string(), source };
    if !bounded {
        return sys::connect_unix(socket, false).map_err(failed);
    }
    loop {
        match sys::connect_unix(socket, true) {
            Ok(fd) => return Ok(fd),
            Err(Errno(EAGAIN)) => {
                let wait = left()?.unwrap_or_default();
                sys::sleep(wait.min(Duration::from_millis(1)));
            }
            Err(e) => return Err(failed(e)),
        }
    }
}

/// Waits until `fd` is ready for `events` or the time `left` is over.
fn wait(fd: &Fd, events: i16, left: Option<Duration>, timeout: Option<Duration>) -> Result<(), ClientError> {
    let mut p = [PollFd { fd: fd.0, events, revents: 0 }];
    loop {
        match sys::poll(&mut p, left) {
            Ok(0) => return Err(ClientError::Timeout(timeout.unwrap_or_default())),
            Ok(_) => return Ok(()),
            Err(Errno(EINTR)) => {}
            Err(e) => return Err(ClientError::Http(format!("poll: {e}"))),
        }
    }
}

/// `statfs.f_type` of the namespace file system, and of procfs (kernels before 3.19).
const NSFS_MAGIC: u32 = 0x6e73_6673;
const PROC_SUPER_MAGIC: u32 = 0x9fa0;
const CLONE_NEWNET: usize = 0x4000_0000;

/// `cni::validate::netns` over system calls: ADD and CHECK need a network namespace, DEL accepts
/// an empty or vanished path but never an existing file that is not one; the messages are the
/// std shim's.
pub fn validate_netns(cmd: Command, path: &str) -> Result<(), Error> {
    match cmd {
        Command::Add | Command::Check => open_netns(path).map(drop),
        Command::Del if !path.is_empty() => match open_netns(path) {
            Err(Opened::Io(Errno(sys::ENOENT), _)) => Ok(()),
            other => other.map(drop),
        },
        _ => Ok(()),
    }
    .map_err(Error::from)
}

/// Why `open_netns` failed: an IO error (kept apart so DEL can accept a vanished path), or the
/// refusal itself.
enum Opened {
    Io(Errno, Error),
    Refused(Error),
}

impl From<Opened> for Error {
    fn from(o: Opened) -> Error {
        match o {
            Opened::Io(_, e) | Opened::Refused(e) => e,
        }
    }
}

fn open_netns(path: &str) -> Result<Fd, Opened> {
    let not_a_netns = |why: String| {
        Opened::Refused(Error::InvalidEnv(format!("CNI_NETNS {path:?} is not a network namespace: {why}")))
    };
    if path.contains('\0') {
        return Err(not_a_netns("it contains a NUL byte".into()));
    }
    let io = |context: &str, e: Errno| {
        Opened::Io(e, Error::Cni(CniError::new(code::IO_FAILURE, format!("{context} {path}: {e}"), "")))
    };
    let checked_open = |flags: usize| -> Result<Fd, Opened> {
        let fd = sys::open(path, flags, 0).map_err(|e| io("failed to open netns", e))?;
        let fs = sys::fs_type(&fd).map_err(|e| io("failed to stat netns", e))?;
        if fs != NSFS_MAGIC && fs != PROC_SUPER_MAGIC {
            return Err(not_a_netns(format!("it is on a file system of type {fs:#x}, not nsfs")));
        }
        Ok(fd)
    };
    checked_open(sys::O_PATH)?;
    let fd = checked_open(sys::O_RDONLY | sys::O_NONBLOCK | sys::O_NOCTTY)?;
    match sys::ns_type(&fd) {
        Ok(kind) if kind != CLONE_NEWNET => Err(not_a_netns(format!("it is a namespace of another kind ({kind:#x})"))),
        _ => Ok(fd),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_netns_is_refused_for_add_and_accepted_for_del() {
        let e = validate_netns(Command::Add, "/nonexistent/netns").unwrap_err();
        assert_eq!(e.to_cni().code, 5);
        assert_eq!(e.to_string(), "failed to open netns /nonexistent/netns: No such file or directory (os error 2)");
        assert!(validate_netns(Command::Del, "/nonexistent/netns").is_ok());
        assert!(validate_netns(Command::Del, "").is_ok());
        let e = validate_netns(Command::Add, "/dev/null").unwrap_err();
        assert_eq!(e.to_cni().code, 4, "{e}");
        assert!(e.to_string().contains("not nsfs"), "{e}");
        assert!(validate_netns(Command::Check, "/proc/self/ns/net").is_ok());
        // qemu-user (the 32-bit suite) does not pass NS_GET_NSTYPE on; a kernel answers it.
        let uts = sys::open("/proc/self/ns/uts", sys::O_RDONLY, 0).unwrap();
        if sys::ns_type(&uts).is_ok() {
            let e = validate_netns(Command::Add, "/proc/self/ns/uts").unwrap_err();
            assert!(e.to_string().contains("another kind"), "{e}");
        }
    }

    /// A real socket: the std client's cases (answers in pieces, chunked, a silent server).
    #[test]
    fn answers_are_read_over_a_socket_and_a_silent_server_times_out() {
        use std::io::{Read, Write};
        use std::os::unix::net::UnixListener;
        let dir = std::env::temp_dir().join(format!("shim-io-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
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
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
            let (s, _) = listener.accept().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(500));
            drop(s);
        });
        let p = path.to_str().unwrap();
        let r = exchange(p, "/cni", b"{}", Some(Duration::from_secs(5))).unwrap();
        assert_eq!(r, Reply { status: 200, body: b"abc".to_vec() });
        let r = exchange(p, "/cni", b"{}", None).unwrap();
        assert_eq!(r, Reply { status: 400, body: b"{\"code\":7}".to_vec() });
        let e = exchange(p, "/cni", b"", Some(Duration::from_millis(100))).unwrap_err();
        assert!(matches!(e, ClientError::Timeout(_)), "{e}");
        server.join().unwrap();
        let missing = dir.join("missing.sock");
        let e = exchange(missing.to_str().unwrap(), "/healthz", b"null", Some(Duration::from_secs(1))).unwrap_err();
        assert_eq!(e.to_string(), format!("dial unix {}: No such file or directory (os error 2)", missing.display()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
