//! `multus-shim`: the thick-mode CNI plugin. Forwards the runtime's environment and config to
//! `multus-daemon` over its unix socket and prints the answer (see `multus::thick::shim`).

use multus::cni::{skel, version};
use multus::thick::shim::Shim;

fn main() {
    skel::plugin_main(&Shim::from_process(), "multus-shim", version::ALL)
}
