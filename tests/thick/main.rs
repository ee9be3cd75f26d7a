//! Thick mode end to end: `multus-daemon` serving its unix socket, `multus-shim` invoked as a
//! runtime would, the config manager generating `00-multus.conf`, `install_multus` and
//! `thin_entrypoint` on temporary host trees.

#[path = "../support/mod.rs"]
mod support;
