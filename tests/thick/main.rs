//! Thick mode end to end: `multus-daemon` serving its unix socket, `multus-shim` invoked as a
//! runtime would, the config manager generating `00-multus.conf`, `install_multus` and
//! `thin_entrypoint` on temporary host trees.
//!
//! `harness`: the daemon (in the node namespace, killed with its process group on drop), the
//! shim, curl on the socket. `flows`: ADD/CHECK/DEL/GC/STATUS with real plugins. `http`: the API
//! by hand. `failures`: daemon down, SIGKILL mid-ADD, SIGTERM with requests in flight.
//! `scale`: a hundred pods at once. `chroot`: `chrootDir`. `cli`: flags, exit codes, startup.

#[path = "../support/mod.rs"]
mod support;

mod chroot;
mod cli;
mod failures;
mod flows;
mod harness;
mod http;
mod scale;
