//! Thick mode end to end: `multus-daemon` serving its unix socket, `multus-shim` invoked as a
//! runtime would, the config manager generating `00-multus.conf`, `install_multus` and
//! `thin_entrypoint` on temporary host trees.

#[path = "../support/mod.rs"]
mod support;

mod config_manager;
mod deployments;
mod entrypoint;
mod install;

use std::time::{Duration, Instant};

/// Waits until `cond` holds, polling; panics with `what` if it never does. A wait for an
/// outcome, not a timing assertion: the deadline is only there so a broken build fails instead
/// of hanging.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The file's content, or `None` when it does not exist.
pub fn read(path: &std::path::Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The file's permission bits.
pub fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}
