//! Running plugin binaries: the [`Exec`] edge trait and its real implementation [`RawExec`].
//!
//! Owns process execution only: find a plugin in CNI_PATH, run it with the CNI_* environment and
//! the config on stdin, bound its runtime, and turn a failure into the plugin's own error object
//! (or a clear one when it printed none). What the env and stdin contain is decided by
//! `cni::network`; nothing here knows about results or configs.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use super::error::{CniError, Error, code};
use super::spawn::{self, reap};

/// The process edge: everything that starts a plugin goes through this trait.
pub trait Exec: Send + Sync {
    /// Runs `plugin` with `env` added to the inherited environment and `stdin` as input.
    /// Returns stdout on exit status 0; otherwise the plugin's error object.
    fn exec_plugin(&self, plugin: &Path, stdin: &[u8], env: &[(String, String)]) -> Result<Vec<u8>, Error>;

    /// [`Exec::exec_plugin`] with this timeout instead of the executor's own. Executors without
    /// a timeout ignore it.
    fn exec_plugin_timeout(
        &self,
        plugin: &Path,
        stdin: &[u8],
        env: &[(String, String)],
        _timeout: Duration,
    ) -> Result<Vec<u8>, Error> {
        self.exec_plugin(plugin, stdin, env)
    }

    /// Finds a plugin binary by name in the search path (libcni `FindInPath`).
    fn find_in_path(&self, name: &str, paths: &[PathBuf]) -> Result<PathBuf, Error> {
        find_in_path(name, paths)
    }
}

/// An executor whose every plugin run has `timeout` (the multus config's delegate timeout, or
/// the shorter rollback timeout).
#[derive(Debug, Clone)]
pub struct WithTimeout<E> {
    pub inner: E,
    pub timeout: Duration,
}

impl<E: Exec> Exec for WithTimeout<E> {
    fn exec_plugin(&self, plugin: &Path, stdin: &[u8], env: &[(String, String)]) -> Result<Vec<u8>, Error> {
        self.inner.exec_plugin_timeout(plugin, stdin, env, self.timeout)
    }

    fn exec_plugin_timeout(
        &self,
        plugin: &Path,
        stdin: &[u8],
        env: &[(String, String)],
        timeout: Duration,
    ) -> Result<Vec<u8>, Error> {
        self.inner.exec_plugin_timeout(plugin, stdin, env, timeout)
    }

    fn find_in_path(&self, name: &str, paths: &[PathBuf]) -> Result<PathBuf, Error> {
        self.inner.find_in_path(name, paths)
    }
}

/// Shared and borrowed executors are executors (the daemon shares one; a rollback borrows one).
macro_rules! forward_exec {
    ($($wrapper:ty),*) => {$(
        impl<T: Exec + ?Sized> Exec for $wrapper {
            fn exec_plugin(&self, plugin: &Path, stdin: &[u8], env: &[(String, String)]) -> Result<Vec<u8>, Error> {
                (**self).exec_plugin(plugin, stdin, env)
            }

            fn exec_plugin_timeout(
                &self,
                plugin: &Path,
                stdin: &[u8],
                env: &[(String, String)],
                timeout: Duration,
            ) -> Result<Vec<u8>, Error> {
                (**self).exec_plugin_timeout(plugin, stdin, env, timeout)
            }

            fn find_in_path(&self, name: &str, paths: &[PathBuf]) -> Result<PathBuf, Error> {
                (**self).find_in_path(name, paths)
            }
        }
    )*};
}

forward_exec!(&T, std::sync::Arc<T>);

/// Finds a regular file `name` in `paths`; names with a path separator are refused.
pub fn find_in_path(name: &str, paths: &[PathBuf]) -> Result<PathBuf, Error> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(Error::InvalidConfig(format!("invalid plugin name {name:?}")));
    }
    if paths.is_empty() {
        return Err(Error::InvalidConfig(format!("no paths provided to search for plugin {name:?}")));
    }
    for dir in paths {
        let candidate = dir.join(name);
        if std::fs::metadata(&candidate).is_ok_and(|m| m.is_file()) {
            return Ok(candidate);
        }
    }
    Err(Error::PluginNotFound { name: name.to_string(), paths: paths.to_vec() })
}

/// Runs plugins as child processes, killing any that outlive `timeout`.
#[derive(Debug, Clone)]
pub struct RawExec {
    pub timeout: Duration,
    /// Copy the plugin's stderr to ours (libcni does; it is informational).
    pub forward_stderr: bool,
}

impl Default for RawExec {
    fn default() -> RawExec {
        RawExec { timeout: Duration::from_secs(300), forward_stderr: true }
    }
}

/// How often and how long to wait when the kernel says "text file busy" (a binary being replaced).
const TEXT_BUSY_RETRIES: u32 = 5;
const TEXT_BUSY_WAIT: Duration = Duration::from_secs(1);

impl Exec for RawExec {
    fn exec_plugin(&self, plugin: &Path, stdin: &[u8], env: &[(String, String)]) -> Result<Vec<u8>, Error> {
        self.run(plugin, stdin, env, spawn::Options::default())
    }

    fn exec_plugin_timeout(
        &self,
        plugin: &Path,
        stdin: &[u8],
        env: &[(String, String)],
        timeout: Duration,
    ) -> Result<Vec<u8>, Error> {
        RawExec { timeout, ..self.clone() }.run(plugin, stdin, env, spawn::Options::default())
    }
}

/// How much of a plugin's stdout and of its stderr is kept (each); the rest is read, counted
/// and dropped, so a runaway plugin cannot make multus's memory or its error object huge.
pub const MAX_PLUGIN_OUTPUT: usize = 1 << 20;

/// Kills the plugin's whole process group (its pid is the group's id; it is not reaped yet, so
/// neither can have been reused).
fn kill_group(pid: libc::pid_t) {
    // SAFETY: signalling our own unreaped child's group; then the child itself, in case it left
    // the group (setsid/setpgid).
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
        libc::kill(pid, libc::SIGKILL);
    }
}

impl RawExec {
    /// Runs `plugin` like [`Exec::exec_plugin`], with `opts` (arguments, variables to drop, a
    /// chroot) for the child. The child leads a process group of its own (so a timeout kills
    /// everything it started) and gets SIGKILL when the thread that started it dies (a runtime
    /// that SIGKILLs `multus` on its own timeout takes the delegate with it). Retries on "text
    /// file busy", bounds the runtime, and turns a failure into the plugin's error object.
    pub fn run(
        &self,
        plugin: &Path,
        stdin: &[u8],
        env: &[(String, String)],
        opts: spawn::Options<'_>,
    ) -> Result<Vec<u8>, Error> {
        let mut attempt = 0;
        let child = loop {
            match spawn::spawn(plugin, env, opts) {
                Ok(c) => break c,
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < TEXT_BUSY_RETRIES => {
                    attempt += 1;
                    std::thread::sleep(TEXT_BUSY_WAIT);
                }
                Err(e) => return Err(Error::io("failed to execute plugin", plugin, e)),
            }
        };
        let pid = child.pid;
        // One thread does all the talking: stdin, stdout and stderr are driven by poll(2) until
        // the plugin closes them, so a run costs no helper threads (each one used to cost a
        // stack, a signal stack and a malloc arena, a measurable share of a short ADD).
        let deadline = Instant::now() + self.timeout;
        let mut io = PipeIo::new(child.stdin, child.stdout, child.stderr, stdin);
        let killed = match io.pump(pid, deadline) {
            Ok(k) => k,
            Err(e) => {
                kill_group(pid);
                let _ = reap(pid);
                return Err(Error::io("failed to talk to plugin", plugin, e));
            }
        };
        // The pipes are closed (or abandoned at the deadline); the plugin may still be running.
        let status = if killed { reap(pid).map(|_| None) } else { wait_until(pid, deadline) }
            .map_err(|e| Error::io("failed to wait for plugin", plugin, e))?;
        let killed = killed || status.is_none();
        let stdout_dropped = io.out.dropped;
        let (stdout, stderr) = (io.out.into_bytes(), io.err.into_bytes());
        if self.forward_stderr && !stderr.is_empty() {
            let _ = std::io::stderr().write_all(&stderr);
        }
        if killed {
            return Err(Error::Timeout { plugin: plugin.display().to_string(), seconds: self.timeout.as_secs() });
        }
        let status = status.expect("reaped");
        if stdout_dropped > 0 {
            // No result or error object is that large: report the flood, not a parse error.
            let total = stdout_dropped + MAX_PLUGIN_OUTPUT as u64;
            return Err(Error::Cni(CniError::new(
                code::INTERNAL,
                format!(
                    "plugin {} ({status}) printed {total} bytes on stdout, more than the {MAX_PLUGIN_OUTPUT} bytes read",
                    plugin.display()
                ),
                format!("output begins {}", quoted(&stdout)),
            )));
        }
        if status.success() {
            return Ok(stdout);
        }
        Err(Error::Cni(plugin_error(&status.to_string(), &stdout, &stderr)))
    }
}

/// How long a plugin's pipes may stay open and silent after the plugin itself exited (a
/// grandchild it left behind holds them) before we stop reading and use what arrived. The exit is
/// noticed when a poll times out, so a grandchild that keeps writing is read until the deadline.
const ORPHANED_PIPE_GRACE: Duration = Duration::from_secs(1);

/// The parent's ends of a plugin's three pipes, driven without threads.
struct PipeIo<'a> {
    stdin: Option<File>,
    input: &'a [u8],
    stdout: Option<File>,
    stderr: Option<File>,
    out: Capped,
    err: Capped,
}

/// The first [`MAX_PLUGIN_OUTPUT`] bytes of a stream and the count of the rest.
#[derive(Default)]
struct Capped {
    kept: Vec<u8>,
    dropped: u64,
}

impl Capped {
    fn push(&mut self, bytes: &[u8]) {
        let room = MAX_PLUGIN_OUTPUT.saturating_sub(self.kept.len());
        let n = room.min(bytes.len());
        self.kept.extend_from_slice(&bytes[..n]);
        self.dropped += (bytes.len() - n) as u64;
    }

    /// What was kept, with a note of what was not.
    fn into_bytes(mut self) -> Vec<u8> {
        if self.dropped > 0 {
            self.kept.extend_from_slice(format!("\n[{} more bytes truncated]", self.dropped).as_bytes());
        }
        self.kept
    }
}

impl<'a> PipeIo<'a> {
    fn new(stdin: File, stdout: File, stderr: File, input: &'a [u8]) -> PipeIo<'a> {
        let stdin = Some(stdin).filter(|_| !input.is_empty());
        PipeIo {
            stdin,
            input,
            stdout: Some(stdout),
            stderr: Some(stderr),
            out: Capped::default(),
            err: Capped::default(),
        }
    }

    /// Feeds stdin and drains stdout/stderr until all are closed. At `deadline` the plugin is
    /// killed (it is not reaped yet, so its pid is still ours) and `true` returned.
    fn pump(&mut self, pid: libc::pid_t, deadline: Instant) -> io::Result<bool> {
        for fd in [self.stdin.as_ref().map(AsRawFd::as_raw_fd), self.stdout.as_ref().map(AsRawFd::as_raw_fd)]
            .into_iter()
            .chain([self.stderr.as_ref().map(AsRawFd::as_raw_fd)])
            .flatten()
        {
            set_nonblocking(fd)?;
        }
        let mut exited_at: Option<Instant> = None;
        while self.stdin.is_some() || self.stdout.is_some() || self.stderr.is_some() {
            let now = Instant::now();
            if now >= deadline {
                kill_group(pid);
                return Ok(true);
            }
            if exited_at.is_some_and(|t| now.duration_since(t) >= ORPHANED_PIPE_GRACE) {
                break;
            }
            let mut fds: Vec<libc::pollfd> = Vec::with_capacity(3);
            let watch = |fd: Option<RawFd>, events: libc::c_short, fds: &mut Vec<libc::pollfd>| {
                if let Some(fd) = fd {
                    fds.push(libc::pollfd { fd, events, revents: 0 });
                }
            };
            watch(self.stdin.as_ref().map(AsRawFd::as_raw_fd), libc::POLLOUT, &mut fds);
            watch(self.stdout.as_ref().map(AsRawFd::as_raw_fd), libc::POLLIN, &mut fds);
            watch(self.stderr.as_ref().map(AsRawFd::as_raw_fd), libc::POLLIN, &mut fds);
            // Wake at least every 200 ms to notice a plugin that exited while something it
            // started keeps the pipes open.
            let wait = deadline.saturating_duration_since(now).min(Duration::from_millis(200));
            let timeout = wait.as_millis().max(1) as libc::c_int;
            // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                if exited_at.is_none() && has_exited(pid) {
                    exited_at = Some(Instant::now());
                }
                continue;
            }
            for p in &fds {
                if p.revents == 0 {
                    continue;
                }
                if self.stdin.as_ref().is_some_and(|s| s.as_raw_fd() == p.fd) {
                    self.feed();
                } else if self.stdout.as_ref().is_some_and(|s| s.as_raw_fd() == p.fd) {
                    drain(&mut self.stdout, &mut self.out);
                } else {
                    drain(&mut self.stderr, &mut self.err);
                }
            }
        }
        Ok(false)
    }

    /// Writes what the pipe takes; closes stdin when all is written or the plugin stopped
    /// reading (a plugin may exit without reading its input; that is not our failure).
    fn feed(&mut self) {
        let Some(pipe) = self.stdin.as_mut() else { return };
        loop {
            if self.input.is_empty() {
                self.stdin = None;
                return;
            }
            match pipe.write(self.input) {
                Ok(n) => self.input = &self.input[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.stdin = None;
                    return;
                }
            }
        }
    }
}

/// Reads everything available from `pipe` into `buf`; drops the pipe at end of file.
fn drain(pipe: &mut Option<impl Read>, buf: &mut Capped) {
    let Some(p) = pipe.as_mut() else { return };
    let mut chunk = [0u8; 8192];
    loop {
        match p.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.push(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(_) => break,
        }
    }
    *pipe = None;
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own; only the status flags change.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `pid` has exited, leaving it a zombie so the pid stays ours.
fn has_exited(pid: libc::pid_t) -> bool {
    // SAFETY: zeroed siginfo is a valid out-parameter; waitid only writes into it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT | libc::WNOHANG)
    };
    // SAFETY: waitid filled `info`; si_pid is 0 when the child has not changed state.
    rc == 0 && unsafe { info.si_pid() } != 0
}

/// Reaps the plugin, killing it at `deadline`. `None` means it had to be killed.
fn wait_until(pid: libc::pid_t, deadline: Instant) -> io::Result<Option<ExitStatus>> {
    // Usually the plugin closed its pipes by exiting, but the kernel closes a process's files a
    // moment before it becomes a zombie. A pidfd wakes us at that moment; sleeping instead cost
    // ~0.18 ms per plugin run (perf trace of a multus ADD and DEL). Kernels before 5.3 have no pidfd:
    // there we poll waitid with a growing pause.
    let exit_fd = if has_exited(pid) { None } else { pidfd(pid) };
    let mut pause = Duration::from_micros(100);
    loop {
        if has_exited(pid) {
            return reap(pid).map(Some);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            kill_group(pid);
            reap(pid)?;
            return Ok(None);
        }
        match &exit_fd {
            Some(fd) => {
                let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                let ms = left.as_millis().clamp(1, libc::c_int::MAX as u128) as libc::c_int;
                // SAFETY: one valid pollfd; an interrupted or timed-out poll just loops.
                unsafe { libc::poll(&mut p, 1, ms) };
            }
            None => {
                std::thread::sleep(pause.min(left));
                pause = (pause * 2).min(Duration::from_millis(50));
            }
        }
    }
}

/// A pidfd for our unreaped child (readable once it has exited), or `None` before Linux 5.3.
fn pidfd(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a non-negative return is a fresh fd that nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// How much of a failed plugin's output an error message quotes.
const MAX_QUOTED_OUTPUT: usize = 16 * 1024;

/// The output as text for an error message: at most [`MAX_QUOTED_OUTPUT`] bytes of it.
fn quoted(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_QUOTED_OUTPUT)]);
    if bytes.len() > MAX_QUOTED_OUTPUT {
        format!("{:?} (first {MAX_QUOTED_OUTPUT} of {} bytes)", text, bytes.len())
    } else {
        format!("{:?}", text.trim_end())
    }
}

/// libcni's `pluginErr`: the error object from stdout, else a message built from stderr. The
/// plugin's own object is kept as it is only when it is small; quoted output is bounded.
pub fn plugin_error(status: &str, stdout: &[u8], stderr: &[u8]) -> CniError {
    if stdout.iter().all(u8::is_ascii_whitespace) {
        let msg = if stderr.is_empty() {
            format!("netplugin failed with no error message: {status}")
        } else {
            format!("netplugin failed: {}", quoted(stderr))
        };
        return CniError::new(code::INTERNAL, msg, "");
    }
    match serde_json::from_slice::<CniError>(stdout) {
        Ok(mut e) => {
            for field in [&mut e.msg, &mut e.details] {
                if field.len() > MAX_QUOTED_OUTPUT {
                    let mut end = MAX_QUOTED_OUTPUT;
                    while !field.is_char_boundary(end) {
                        end -= 1;
                    }
                    let total = field.len();
                    field.truncate(end);
                    field.push_str(&format!(" [truncated, {total} bytes]"));
                }
            }
            e
        }
        Err(err) => CniError::new(
            code::INTERNAL,
            format!("netplugin failed but error parsing its diagnostic message {}: {err}", quoted(stdout)),
            "",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn passes_env_and_stdin_and_returns_stdout() {
        let d = tempfile::tempdir().unwrap();
        let p = script(d.path(), "echoer", r#"printf '%s|' "$CNI_COMMAND"; cat"#);
        let out = RawExec::default().exec_plugin(&p, b"{\"a\":1}", &[("CNI_COMMAND".into(), "ADD".into())]).unwrap();
        assert_eq!(out, b"ADD|{\"a\":1}");
    }

    #[test]
    fn error_object_and_stderr_fallback() {
        let d = tempfile::tempdir().unwrap();
        let p = script(d.path(), "fails", r#"echo '{"code":11,"msg":"later"}'; exit 1"#);
        let e = RawExec::default().exec_plugin(&p, b"", &[]).unwrap_err();
        assert_eq!(e.to_cni(), CniError::new(11, "later", ""));
        let p = script(d.path(), "fails2", "echo oops >&2; exit 3");
        let e = RawExec { forward_stderr: false, ..Default::default() }.exec_plugin(&p, b"", &[]).unwrap_err();
        assert_eq!(e.to_cni().msg, "netplugin failed: \"oops\"");
        let p = script(d.path(), "fails3", "echo notjson; exit 3");
        let e = RawExec::default().exec_plugin(&p, b"", &[]).unwrap_err();
        assert!(e.to_string().contains("error parsing its diagnostic message"), "{e}");
    }

    #[test]
    fn kills_on_timeout() {
        let d = tempfile::tempdir().unwrap();
        let p = script(d.path(), "sleeper", "exec sleep 30");
        let start = std::time::Instant::now();
        let e = RawExec { timeout: Duration::from_millis(200), forward_stderr: false }
            .exec_plugin(&p, b"", &[])
            .unwrap_err();
        assert!(matches!(e, Error::Timeout { .. }), "{e}");
        assert_eq!(e.code(), code::TRY_AGAIN_LATER);
        assert!(start.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn huge_output_gives_a_small_error() {
        let d = tempfile::tempdir().unwrap();
        // 20 MB on stdout and on stderr, then failure.
        let p = script(
            d.path(),
            "flood",
            "head -c 20000000 /dev/zero | tr '\\0' x; head -c 20000000 /dev/zero >&2; exit 1",
        );
        let e = RawExec { forward_stderr: false, ..Default::default() }.exec_plugin(&p, b"", &[]).unwrap_err();
        let json = e.to_cni().to_json();
        assert!(json.len() < 64 * 1024, "error object of {} bytes", json.len());
        assert!(json.contains("printed 20000000 bytes on stdout"), "{}", &json[..200]);
        // A plugin's own error object with a long message keeps its code; the message is cut.
        let p = script(
            d.path(),
            "verbose",
            "printf '{\"code\":7,\"msg\":\"'; head -c 500000 /dev/zero | tr '\\0' m; printf '\"}'; exit 1",
        );
        let e = RawExec::default().exec_plugin(&p, b"", &[]).unwrap_err();
        assert_eq!(e.code(), 7);
        assert!(e.to_cni().to_json().len() < 64 * 1024);
        assert!(e.to_cni().msg.ends_with("[truncated, 500000 bytes]"));
        // Successful output within the bound is untouched (the unit above covers 1 MiB echoed).
    }

    #[test]
    fn a_timeout_kills_the_plugins_children_too() {
        let d = tempfile::tempdir().unwrap();
        let pidfile = d.path().join("child.pid");
        let body = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let p = script(d.path(), "forks", &body);
        // Time enough for a loaded machine to start the shell and its child before the kill.
        let e =
            RawExec { timeout: Duration::from_secs(3), forward_stderr: false }.exec_plugin(&p, b"", &[]).unwrap_err();
        assert!(matches!(e, Error::Timeout { .. }), "{e}");
        let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        let gone = |pid: i32| {
            // A killed grandchild is reparented and reaped by init (or is a zombie briefly).
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.is_empty() || stat.split_whitespace().nth(2) == Some("Z")
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !gone(pid) {
            assert!(Instant::now() < deadline, "the plugin's child {pid} survived the timeout");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn per_call_timeout() {
        let d = tempfile::tempdir().unwrap();
        let p = script(d.path(), "sleeper", "exec sleep 30");
        let exec = WithTimeout { inner: RawExec::default(), timeout: Duration::from_millis(200) };
        let start = Instant::now();
        let e = exec.exec_plugin(&p, b"", &[]).unwrap_err();
        assert!(matches!(e, Error::Timeout { .. }), "{e}");
        assert!(start.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn does_not_deadlock_on_unread_large_stdin() {
        let d = tempfile::tempdir().unwrap();
        let p = script(d.path(), "ignorer", "echo '{}'");
        let big = vec![b' '; 1 << 20];
        assert_eq!(RawExec::default().exec_plugin(&p, &big, &[]).unwrap(), b"{}\n");
    }

    #[test]
    fn large_output_on_both_pipes_while_stdin_is_still_being_fed() {
        let d = tempfile::tempdir().unwrap();
        // 1 MiB in, echoed to stdout, and 256 KiB of stderr before reading: every pipe fills.
        let p = script(d.path(), "chatty", "head -c 262144 /dev/zero | tr '\\0' e >&2; cat");
        let big: Vec<u8> = (0..1 << 20).map(|i| b'a' + (i % 26) as u8).collect();
        let out = RawExec { forward_stderr: false, ..Default::default() }.exec_plugin(&p, &big, &[]).unwrap();
        assert_eq!(out, big);
    }

    #[test]
    fn a_grandchild_holding_the_pipes_does_not_hang_the_run() {
        let d = tempfile::tempdir().unwrap();
        // The plugin answers and exits; what it started keeps stdout and stderr open for 30 s.
        let pidfile = d.path().join("grandchild.pid");
        let body = format!("echo '{{\"ok\":1}}'; sleep 30 & echo $! > {}; exit 0", pidfile.display());
        let p = script(d.path(), "forker", &body);
        struct KillOnDrop(PathBuf);
        impl Drop for KillOnDrop {
            fn drop(&mut self) {
                if let Some(pid) = std::fs::read_to_string(&self.0).ok().and_then(|s| s.trim().parse().ok()) {
                    // SAFETY: signalling the sleep this test started.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _grandchild = KillOnDrop(pidfile);
        let start = std::time::Instant::now();
        let out = RawExec::default().exec_plugin(&p, b"", &[]).unwrap();
        assert_eq!(out, b"{\"ok\":1}\n");
        assert!(start.elapsed() < Duration::from_secs(20), "waited {:?}", start.elapsed());
    }

    #[test]
    fn a_plugin_that_closes_its_pipes_but_keeps_running_is_killed_at_the_deadline() {
        let d = tempfile::tempdir().unwrap();
        let p = script(d.path(), "closer", "exec >&- 2>&- <&-; exec sleep 30");
        let e = RawExec { timeout: Duration::from_millis(300), forward_stderr: false }
            .exec_plugin(&p, b"{}", &[])
            .unwrap_err();
        assert!(matches!(e, Error::Timeout { .. }), "{e}");
    }

    #[test]
    fn retries_while_the_binary_is_being_written() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("busy");
        // Held open for writing, the file cannot be executed (ETXTBSY) until the writer closes it.
        let mut w = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o755).open(&p).unwrap();
        w.write_all(b"#!/bin/sh\necho done\n").unwrap();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(w);
        });
        let out = RawExec::default().exec_plugin(&p, b"", &[]).unwrap();
        closer.join().unwrap();
        assert_eq!(out, b"done\n");
    }

    #[test]
    fn find_in_path_rules() {
        let d = tempfile::tempdir().unwrap();
        script(d.path(), "bridge", "true");
        let paths = vec![PathBuf::from("/nonexistent"), d.path().to_path_buf()];
        assert_eq!(find_in_path("bridge", &paths).unwrap(), d.path().join("bridge"));
        assert!(matches!(find_in_path("nosuch", &paths), Err(Error::PluginNotFound { .. })));
        assert!(find_in_path("../bridge", &paths).is_err());
        assert!(find_in_path("bridge", &[]).is_err());
    }
}
