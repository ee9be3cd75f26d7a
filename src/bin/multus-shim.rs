//! `multus-shim`: the thick-mode CNI plugin. Forwards the runtime's environment and config to
//! `multus-daemon` over its unix socket and prints the answer (see `multus_core::thick::shim`).

#![no_main]

use multus_core::cni::{skel, version};
use multus_core::thick::shim::Shim;

/// The C entry point, without std's runtime start-up (see `skel::plugin_main`).
#[unsafe(no_mangle)]
extern "C" fn main(_argc: std::ffi::c_int, _argv: *const *const std::ffi::c_char) -> std::ffi::c_int {
    skel::plugin_main(&Shim::from_process(), "multus-shim", version::ALL)
}
