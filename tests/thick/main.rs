//! Thick mode end to end: `multus-daemon` serving its unix socket, `multus-shim` invoked as a
//! runtime would, the config manager generating `00-multus.conf`, `install_multus` and
//! `thin_entrypoint` on temporary host trees.
//!
//! `harness`: the daemon (in the node namespace, killed with its process group on drop) and the
//! shim from `support::thick` (shared with the bench), curl on the socket. `flows`:
//! ADD/CHECK/DEL/GC/STATUS with real plugins. `http`: the API by hand. `failures`: daemon down,
//! SIGKILL mid-ADD, SIGTERM with requests in flight. `scale`: a hundred pods at once. `chroot`:
//! `chrootDir`. `cli`: flags, exit codes, startup. `config_manager`, `entrypoint`, `install`,
//! `deployments`: the generated configs, the thin DaemonSet's entrypoint, the init container's
//! installer and the manifests.

#[path = "../support/mod.rs"]
mod support;

mod chroot;
mod cli;
mod config_manager;
mod deployments;
mod entrypoint;
mod failures;
mod flows;
mod harness;
mod http;
mod install;
mod kube;
mod scale;

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
