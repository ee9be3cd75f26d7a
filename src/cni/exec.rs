//! Running plugin binaries: the [`Exec`] edge trait and its real implementation [`RawExec`].
//!
//! Owns process execution only: find a plugin in CNI_PATH, run it with the CNI_* environment and
//! the config on stdin, bound its runtime, and turn a failure into the plugin's own error object
//! (or a clear one when it printed none). What the env and stdin contain is decided by
//! `cni::network`; nothing here knows about results or configs.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use super::error::{CniError, Error, code};

/// The process edge: everything that starts a plugin goes through this trait.
pub trait Exec: Send + Sync {
    /// Runs `plugin` with `env` added to the inherited environment and `stdin` as input.
    /// Returns stdout on exit status 0; otherwise the plugin's error object.
    fn exec_plugin(&self, plugin: &Path, stdin: &[u8], env: &[(String, String)]) -> Result<Vec<u8>, Error>;

    /// Finds a plugin binary by name in the search path (libcni `FindInPath`).
    fn find_in_path(&self, name: &str, paths: &[PathBuf]) -> Result<PathBuf, Error> {
        find_in_path(name, paths)
    }
}

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

impl<T: Exec + ?Sized> Exec for std::sync::Arc<T> {
    fn exec_plugin(&self, plugin: &Path, stdin: &[u8], env: &[(String, String)]) -> Result<Vec<u8>, Error> {
        (**self).exec_plugin(plugin, stdin, env)
    }

    fn find_in_path(&self, name: &str, paths: &[PathBuf]) -> Result<PathBuf, Error> {
        (**self).find_in_path(name, paths)
    }
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
        self.run(plugin, stdin, env, &|_| {})
    }
}

impl RawExec {
    /// Runs `plugin` like [`Exec::exec_plugin`], letting `prepare` adjust each `Command` before it
    /// is spawned (e.g. a `pre_exec` hook that chroots the child). Retries on "text file busy",
    /// bounds the runtime, and turns a failure into the plugin's error object.
    pub fn run(
        &self,
        plugin: &Path,
        stdin: &[u8],
        env: &[(String, String)],
        prepare: &dyn Fn(&mut Command),
    ) -> Result<Vec<u8>, Error> {
        let mut attempt = 0;
        let mut child = loop {
            let mut cmd = Command::new(plugin);
            cmd.envs(env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            prepare(&mut cmd);
            let spawned = cmd.spawn();
            match spawned {
                Ok(c) => break c,
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < TEXT_BUSY_RETRIES => {
                    attempt += 1;
                    std::thread::sleep(TEXT_BUSY_WAIT);
                }
                Err(e) => return Err(Error::io("failed to execute plugin", plugin, e)),
            }
        };
        let pid = child.id() as libc::pid_t;
        let mut out_pipe = child.stdout.take().expect("piped stdout");
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let out_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = out_pipe.read_to_end(&mut buf);
            buf
        });
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = err_pipe.read_to_end(&mut buf);
            buf
        });

        // Watchdog: kills the child at the deadline unless the child already exited. The child is
        // only reaped after `exited` is set under the lock, so the pid cannot have been reused.
        let state = Arc::new(Mutex::new(WatchState { exited: false, killed: false }));
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let watchdog = {
            let state = Arc::clone(&state);
            let timeout = self.timeout;
            std::thread::spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(timeout) {
                    let mut s = state.lock().expect("watch state");
                    if !s.exited {
                        // SAFETY: the pid belongs to our unreaped child (see above).
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                        s.killed = true;
                    }
                }
            })
        };

        if let Some(mut input) = child.stdin.take() {
            // A plugin may exit without reading its input; a broken pipe is not our failure.
            let _ = input.write_all(stdin);
        }
        wait_exited_no_reap(pid);
        state.lock().expect("watch state").exited = true;
        let _ = done_tx.send(());
        let status = child.wait().map_err(|e| Error::io("failed to wait for plugin", plugin, e))?;
        let _ = watchdog.join();
        let stdout = out_reader.join().unwrap_or_default();
        let stderr = err_reader.join().unwrap_or_default();
        if self.forward_stderr && !stderr.is_empty() {
            let _ = std::io::stderr().write_all(&stderr);
        }
        if state.lock().expect("watch state").killed {
            return Err(Error::Timeout { plugin: plugin.display().to_string(), seconds: self.timeout.as_secs() });
        }
        if status.success() {
            return Ok(stdout);
        }
        Err(Error::Cni(plugin_error(&status.to_string(), &stdout, &stderr)))
    }
}

struct WatchState {
    exited: bool,
    killed: bool,
}

/// Blocks until `pid` has exited, leaving it a zombie so the pid stays ours.
fn wait_exited_no_reap(pid: libc::pid_t) {
    loop {
        // SAFETY: zeroed siginfo is a valid out-parameter; waitid only writes into it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

/// libcni's `pluginErr`: the error object from stdout, else a message built from stderr.
pub fn plugin_error(status: &str, stdout: &[u8], stderr: &[u8]) -> CniError {
    if stdout.iter().all(u8::is_ascii_whitespace) {
        let msg = if stderr.is_empty() {
            format!("netplugin failed with no error message: {status}")
        } else {
            format!("netplugin failed: {:?}", String::from_utf8_lossy(stderr).trim_end())
        };
        return CniError::new(code::INTERNAL, msg, "");
    }
    match serde_json::from_slice::<CniError>(stdout) {
        Ok(e) => e,
        Err(err) => CniError::new(
            code::INTERNAL,
            format!(
                "netplugin failed but error parsing its diagnostic message {:?}: {err}",
                String::from_utf8_lossy(stdout)
            ),
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
    fn does_not_deadlock_on_unread_large_stdin() {
        let d = tempfile::tempdir().unwrap();
        let p = script(d.path(), "ignorer", "echo '{}'");
        let big = vec![b' '; 1 << 20];
        assert_eq!(RawExec::default().exec_plugin(&p, &big, &[]).unwrap(), b"{}\n");
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
