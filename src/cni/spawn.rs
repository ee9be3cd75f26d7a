//! Starting a plugin process: the one place that forks.
//!
//! Owns the child's side of a plugin run: a process group of its own, a parent-death signal,
//! optionally a chroot, the three pipes as its stdin/stdout/stderr, and the `execve`. It starts
//! the child the way `posix_spawn` does, with `clone(CLONE_VM | CLONE_VFORK)`: the child borrows
//! the parent's memory until it execs, so nothing is copied. std's `Command` does the same only
//! without a `pre_exec` hook; with one (which the parent-death signal and the chroot need) it
//! forks, and a fork copies the page tables of the whole process and makes the parent fault on
//! every page it writes afterwards — in the daemon, a multithreaded process of several MB, that was
//! a measurable share of a delegate run.
//!
//! Everything the child touches is prepared before the clone (paths, argv, envp as C strings,
//! the pipes), and the child calls only async-signal-safe syscall wrappers. An exec failure comes
//! back as its errno over a close-on-exec pipe, which also works where `CLONE_VM` is not honoured
//! (qemu-user turns a vfork into a fork).

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;

/// What to run and how, beyond the program and its CNI environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct Options<'a> {
    /// Arguments after argv[0] (the program's path).
    pub args: &'a [String],
    /// Inherited variables the child must not see.
    pub env_remove: &'a [String],
    /// Change root (and directory, to `/`) before the exec; the program path is inside it.
    pub chroot: Option<&'a CStr>,
}

/// A started child: its pid (unreaped, so it stays ours) and the parent's ends of its pipes.
#[derive(Debug)]
pub struct Child {
    pub pid: libc::pid_t,
    pub stdin: File,
    pub stdout: File,
    pub stderr: File,
}

/// Everything the child reads, laid out before the clone.
struct Plan {
    program: CString,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    chroot: *const libc::c_char,
    parent: libc::pid_t,
    /// The child's ends: stdin's read end, stdout's and stderr's write ends (all ≥ 3).
    fds: [RawFd; 3],
    /// The write end of the close-on-exec error pipe.
    err_fd: RawFd,
    /// The highest signal number (glibc's, read before the clone).
    sigmax: libc::c_int,
}

/// The child's stack while it borrows the parent's memory (it only makes syscalls).
const CHILD_STACK: usize = 64 * 1024;

/// Starts `program` with the inherited environment minus `opts.env_remove`, plus `env`.
pub fn spawn(program: &Path, env: &[(String, String)], opts: Options<'_>) -> io::Result<Child> {
    let program_c = cstring(program.as_os_str())?;
    let args: Vec<CString> = opts.args.iter().map(|a| cstring(OsStr::new(a))).collect::<io::Result<_>>()?;
    let env_c = environment(env, opts.env_remove)?;

    let (stdin_r, stdin_w) = pipe()?;
    let (stdout_r, stdout_w) = pipe()?;
    let (stderr_r, stderr_w) = pipe()?;
    let (err_r, err_w) = pipe()?;

    let mut argv: Vec<*const libc::c_char> = Vec::with_capacity(args.len() + 2);
    argv.push(program_c.as_ptr());
    argv.extend(args.iter().map(|a| a.as_ptr()));
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env_c.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    let plan = Plan {
        program: program_c,
        argv,
        envp,
        chroot: opts.chroot.map_or(std::ptr::null(), CStr::as_ptr),
        // SAFETY: getpid has no preconditions.
        parent: unsafe { libc::getpid() },
        fds: [stdin_r.as_raw_fd(), stdout_w.as_raw_fd(), stderr_w.as_raw_fd()],
        err_fd: err_w.as_raw_fd(),
        sigmax: libc::SIGRTMAX(),
    };
    let mut stack = vec![0u8; CHILD_STACK];
    // Stacks grow down on every platform we build for; the top must be 16-byte aligned.
    let top = (stack.as_mut_ptr() as usize + CHILD_STACK) & !15;

    // No signal handler may run in the child while it shares our memory: block them all
    // around the clone; the child resets handlers and unblocks before its exec.
    // SAFETY: sigset_t is plain data; sigfillset and pthread_sigmask only write the sets given.
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        // SAFETY: `plan` and `stack` outlive the child's use of them: with CLONE_VFORK this
        // thread is suspended until the child has exec'd or exited.
        let pid = libc::clone(
            child_main,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &plan as *const Plan as *mut libc::c_void,
        );
        let clone_err = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid < 0 {
            return Err(clone_err);
        }
        pid
    };
    drop(stack);
    drop(plan);
    // Our copies of the child's ends go; the error pipe reports whether the exec happened.
    drop((stdin_r, stdout_w, stderr_w, err_w));
    if let Some(errno) = read_errno(&err_r) {
        // The child exited with 127 without exec'ing: reap it so no zombie stays.
        let _ = reap(pid);
        return Err(io::Error::from_raw_os_error(errno));
    }
    Ok(Child { pid, stdin: File::from(stdin_w), stdout: File::from(stdout_r), stderr: File::from(stderr_r) })
}

/// The child, on its own small stack in the parent's memory. Only async-signal-safe calls; on
/// any failure the errno goes down the error pipe and the child exits 127.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `Plan`, alive and unchanged while the parent is suspended.
    let plan = unsafe { &*(arg as *const Plan) };
    /// Sends errno down the error pipe and exits.
    unsafe fn fail(fd: RawFd) -> ! {
        // SAFETY: errno is this thread's; write and _exit are async-signal-safe.
        unsafe {
            let bytes = (*libc::__errno_location()).to_ne_bytes();
            libc::write(fd, bytes.as_ptr().cast(), bytes.len());
            libc::_exit(127)
        }
    }
    // SAFETY: every call below is a plain syscall wrapper on memory prepared before the clone.
    unsafe {
        // Handlers belong to the parent's code: reset them (and SIGPIPE, which Rust ignores
        // and an ignored signal stays ignored across exec) before unblocking anything.
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for sig in 1..=plan.sigmax {
            let mut cur: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut cur) == 0
                && (sig == libc::SIGPIPE || (cur.sa_sigaction != libc::SIG_DFL && cur.sa_sigaction != libc::SIG_IGN))
            {
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());

        // A group of its own, so a timeout kills everything it started; SIGKILL when the
        // thread that started it dies (unless the parent died already, before the prctl).
        if libc::setpgid(0, 0) != 0 || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0
        {
            fail(plan.err_fd);
        }
        if libc::getppid() != plan.parent {
            libc::_exit(1);
        }
        if !plan.chroot.is_null() && (libc::chroot(plan.chroot) != 0 || libc::chdir(c"/".as_ptr()) != 0) {
            fail(plan.err_fd);
        }
        for (target, &fd) in plan.fds.iter().enumerate() {
            if libc::dup2(fd, target as libc::c_int) < 0 {
                fail(plan.err_fd);
            }
        }
        libc::execve(plan.program.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr());
        fail(plan.err_fd)
    }
}

/// Reaps `pid` (blocking), retrying on EINTR.
pub fn reap(pid: libc::pid_t) -> io::Result<ExitStatus> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child writes only `status`.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return Ok(ExitStatus::from_raw(status));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The errno the child sent before exiting, or `None` when the pipe closed on a successful exec.
fn read_errno(fd: &OwnedFd) -> Option<i32> {
    let mut buf = [0u8; 4];
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: reading into the unfilled tail of a local buffer.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        match n {
            0 => break,
            n if n > 0 => got += n as usize,
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            _ => break,
        }
    }
    (got == buf.len()).then(|| i32::from_ne_bytes(buf))
}

/// A close-on-exec pipe whose ends are not 0, 1 or 2 (the child's `dup2`s must not clobber one
/// another even when the daemon runs with a standard stream closed).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two new fds into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds are new and owned by nothing else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((above_stdio(r)?, above_stdio(w)?))
}

fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC returns a new fd ≥ 3 (or -1); the low one is closed on drop.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh fd owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// The child's environment as `KEY=value` C strings: ours without `remove`, then `add` (which
/// replaces a variable of the same name).
fn environment(add: &[(String, String)], remove: &[String]) -> io::Result<Vec<CString>> {
    let mut vars: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| !remove.iter().any(|r| OsStr::new(r) == k) && !add.iter().any(|(a, _)| OsStr::new(a) == k))
        .collect();
    vars.extend(add.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))));
    vars.into_iter()
        .map(|(k, v)| {
            if k.is_empty() || k.as_bytes().contains(&b'=') {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("invalid environment variable name {k:?}"),
                ));
            }
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            cstring(OsStr::from_bytes(&kv))
        })
        .collect()
}

fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{s:?} contains a NUL byte")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn run(program: &str, env: &[(String, String)], opts: Options<'_>, input: &[u8]) -> (ExitStatus, String) {
        let mut child = spawn(Path::new(program), env, opts).unwrap();
        child.stdin.write_all(input).unwrap();
        drop(child.stdin);
        let mut out = String::new();
        child.stdout.read_to_string(&mut out).unwrap();
        (reap(child.pid).unwrap(), out)
    }

    #[test]
    fn the_child_gets_stdin_args_and_the_merged_environment() {
        assert!(std::env::var_os("HOME").is_some());
        let args = ["-c".to_string(), "cat; echo \" $A $B ${HOME:-unset}\"".to_string()];
        let env = [("A".to_string(), "one".to_string()), ("B".to_string(), "two".to_string())];
        let remove = ["HOME".to_string()];
        let (status, out) = run("/bin/sh", &env, Options { args: &args, env_remove: &remove, chroot: None }, b"in");
        assert!(status.success());
        assert_eq!(out, "in one two unset\n");
    }

    #[test]
    fn the_child_leads_its_own_process_group_with_sigpipe_default() {
        let args = [
            "-c".to_string(),
            "cut -d' ' -f5 /proc/$$/stat; while read k v; do [ $k = SigIgn: ] && echo $v; done < /proc/$$/status; true"
                .to_string(),
        ];
        let mut child = spawn(Path::new("/bin/sh"), &[], Options { args: &args, ..Options::default() }).unwrap();
        let pid = child.pid;
        drop(child.stdin);
        let mut out = String::new();
        child.stdout.read_to_string(&mut out).unwrap();
        assert!(reap(pid).unwrap().success());
        let mut lines = out.lines();
        assert_eq!(lines.next().map(str::trim), Some(pid.to_string().as_str()), "{out}");
        // SIGPIPE (Rust ignores it in this process) must be back to its default in the child.
        let pipe_bit = 1u64 << (libc::SIGPIPE - 1);
        let ours = std::fs::read_to_string("/proc/self/status").unwrap();
        let ours = ours.lines().find_map(|l| l.strip_prefix("SigIgn:")).unwrap().trim();
        assert_ne!(u64::from_str_radix(ours, 16).unwrap() & pipe_bit, 0, "this test needs SIGPIPE ignored here");
        let theirs = u64::from_str_radix(lines.next().unwrap().trim(), 16).unwrap();
        assert_eq!(theirs & pipe_bit, 0, "{out}");
    }

    #[test]
    fn an_exec_failure_is_the_errno() {
        let e = spawn(Path::new("/nonexistent/plugin"), &[], Options::default()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        let dir = tempfile::tempdir().unwrap();
        let not_exec = dir.path().join("plain");
        std::fs::write(&not_exec, "data").unwrap();
        let e = spawn(&not_exec, &[], Options::default()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EACCES));
    }

    #[test]
    fn a_chroot_failure_is_reported() {
        let root = c"/nonexistent-root";
        let e = spawn(Path::new("/bin/true"), &[], Options { chroot: Some(root), ..Options::default() }).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    }
}
