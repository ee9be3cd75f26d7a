//! Integration tests of the CNI core (`multus::cni`) — one binary for the whole area.
//!
//! `golden`: every wire format against fixture documents. `real_plugins`: Debian's reference
//! plugins run by our library inside network namespaces the tests create (root). `gc_status`:
//! CNI 1.1.0 GC and STATUS against our recorder plugin (the Debian plugins predate 1.1.0).
//! `passthru`: our passthru binary through the library and by hand. `process`: what our plugin
//! binaries guarantee as processes without std's runtime start-up.

#[path = "../support/mod.rs"]
mod support;

mod cache_interop;
mod gc_status;
mod golden;
mod passthru;
mod process;
mod props;
mod real_plugins;
