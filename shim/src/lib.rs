//! `multus-shim` without libc (issue #20): the thick-mode CNI plugin as a static binary that
//! makes its own system calls. It starts in ~0.2 ms where a glibc binary spends ~0.5 ms in
//! start-up (glibc probes the CPU with `cpuid`, which traps to the hypervisor in a VM), which is
//! what the shim adds to every pod's ADD and DEL.
//!
//! The shim's logic is multus-core's own, compiled here without std: the CNI skeleton, errors,
//! versions and results (`cni`), Go's decoding rules (`golang`), and the socket API, HTTP framing
//! and the shim itself (`thick`) are the same source files (`#[path]`), built with the
//! `multus_nostd` cfg that leaves out their std parts (`logging` lends its levels and time format). This crate adds only the edge: system
//! calls (`sys`), the socket exchange and netns check over them (`io`), the log (`log`), and the
//! process entry (`run` here, `_start` in `main.rs`).

#![no_std]

extern crate alloc;
#[cfg(test)]
extern crate std;

/// The `alloc` items std's prelude names (the shared modules import them from here).
pub mod prelude {
    pub use alloc::borrow::ToOwned;
    pub use alloc::boxed::Box;
    pub use alloc::format;
    pub use alloc::string::{String, ToString};
    pub use alloc::vec;
    pub use alloc::vec::Vec;

    /// What a failed system call is, where the shared modules name std's `io::Error`.
    pub use crate::sys::Errno as OsError;
}

#[path = "../../src/build_info.rs"]
pub mod build_info;
pub mod cni;
#[path = "../../src/golang.rs"]
pub mod golang;
pub mod io;
pub mod log;
#[path = "../../src/logging.rs"]
pub mod logging;
pub mod sys;
pub mod thick;

use prelude::*;

/// The largest config read from stdin (a multus config with inline delegates is a few KiB).
pub const MAX_STDIN: usize = 16 << 20;

/// The process: `skel::plugin_main` without std. `argv` and `envp` are the entries the kernel
/// put on the stack; returns the exit code.
pub fn run(argv: &[&[u8]], envp: &[&[u8]]) -> i32 {
    prepare_fds();
    sys::ignore_sigpipe();
    let args: Vec<String> = argv.iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    if build_info::wants_version(&args) {
        let line = format!("{}\n", build_info::version_line("multus-shim"));
        return if sys::write_all(1, line.as_bytes()).is_ok() { 0 } else { 1 };
    }
    let env = environment(envp);
    let about = format!("CNI multus-shim plugin {}", build_info::VERSION);
    let mut stdin = Vec::new();
    if let Err(e) = sys::read_to_end(0, &mut stdin, MAX_STDIN) {
        // Refused whole, before anything is sent: a cut config must not reach the daemon.
        let msg = match e {
            sys::Errno(27) => format!("the config on stdin is larger than {MAX_STDIN} bytes"),
            e => format!("reading the config on stdin: {e}"),
        };
        let mut error = cni::CniError::new(cni::error::code::IO_FAILURE, msg, "");
        error.cni_version = Some(cni::version::CURRENT.into());
        let _ = sys::write_all(1, format!("{}\n", error.to_json()).as_bytes());
        return 1;
    }
    let getenv = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let shim = thick::shim::Shim { env: env.clone(), io: io::SysIo::default() };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = cni::skel::run(&shim, &about, cni::version::ALL, &getenv, &stdin, &mut out, &mut err);
    let _ = sys::write_all(2, &err);
    // A result the runtime cannot read is a failed command.
    if sys::write_all(1, &out).is_err() { 1 } else { code }
}

/// The environment as std's `env::vars_os` reads it: split at the first `=` after the first
/// byte, entries without one left out. A lookup takes the first of a repeated name (as
/// `getenv`); the request sent to the daemon keeps the last (as upstream's map does).
pub fn environment(envp: &[&[u8]]) -> Vec<(String, String)> {
    envp.iter()
        .filter_map(|e| {
            let eq = e.iter().skip(1).position(|b| *b == b'=')? + 1;
            Some((String::from_utf8_lossy(&e[..eq]).into_owned(), String::from_utf8_lossy(&e[eq + 1..]).into_owned()))
        })
        .collect()
}

/// fds 0-2 must be open, else the first file the shim opens would become its stdout (as
/// `skel::plugin_main`'s `prepare_process`).
fn prepare_fds() {
    let mut fds = [0, 1, 2].map(|fd| sys::PollFd { fd, events: 0, revents: 0 });
    if sys::poll(&mut fds, Some(core::time::Duration::ZERO)).is_err() {
        sys::exit(127);
    }
    for p in fds.iter().filter(|p| p.revents & sys::POLLNVAL != 0) {
        match sys::open("/dev/null", sys::O_RDWR, 0) {
            Ok(fd) if fd.0 == p.fd => core::mem::forget(fd),
            _ => sys::exit(127),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_splits_at_the_first_equals_sign() {
        let env: [&[u8]; 4] = [b"CNI_COMMAND=ADD", b"=x=1", b"noequals", b"A=b=c"];
        assert_eq!(
            environment(&env),
            vec![
                ("CNI_COMMAND".to_string(), "ADD".to_string()),
                ("=x".to_string(), "1".to_string()),
                ("A".to_string(), "b=c".to_string())
            ]
        );
    }
}
