//! Thick mode end to end: `multus-daemon` serving its unix socket, `multus-shim` invoked as a
//! runtime would, the config manager generating `00-multus.conf`, `install_multus` and
//! `thin_entrypoint` on temporary host trees.
//!
//! `harness`: the daemon (in the node namespace, killed with its process group on drop) and the
//! shim from `support::thick` (shared with the bench), curl on the socket. `flows`:
//! ADD/CHECK/DEL/GC/STATUS with real plugins. `http`: the API by hand. `failures`: daemon down,
//! SIGKILL mid-ADD, SIGTERM with requests in flight. `scale`: a hundred pods at once. `chroot`:
//! `chrootDir`. `cli`: flags, exit codes, startup. `config_manager`, `install`, `deployments`:
//! the generated config, the init container's installer and the manifests.

#[path = "../support/mod.rs"]
mod support;

mod chroot;
mod cli;
mod config_manager;
mod deployments;
mod failures;
mod flows;
mod harness;
mod http;
mod install;
mod kube;
mod pernode;
mod scale;
