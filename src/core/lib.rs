//! multus-core: the dependency-light part of multus, which every binary links and the small
//! per-node binaries (`multus-shim`, `passthru`, `install_multus`, `thin_entrypoint`) link alone.
//!
//! It owns the CNI core (`cni`), config generation and file installation (`confgen`), logging,
//! atomic files, Go-compatible parsing, build facts, and the shim's side of the thick socket API
//! (`thick::{api, client, shim}`). It uses serde, serde_json, thiserror, base64, libc, flate2, http
//! and clap, and nothing of Kubernetes, tokio or hyper: a binary that links only this crate gives
//! its fat-LTO link a few crates to read instead of the whole graph (amd64 warm build: 4.8-6.5 s
//! per small binary instead of 6.9-8.7 s; std's own bitcode, ~4 s of it, stays).
//!
//! The sources stay where the `multus` library's modules are (`src/cni/`, `src/confgen/`, ...;
//! ARCHITECTURE.md's module map); the `multus` library re-exports them under the same paths, so
//! `multus::cni::...` names the same items as `multus_core::cni::...`.

extern crate alloc;

/// The `alloc` items std's prelude names, imported explicitly by the modules that the libc-free
/// shim (`shim/`, `no_std`) compiles too: there, as here, `use crate::prelude::*;` names them.
pub mod prelude {
    pub use alloc::borrow::ToOwned;
    pub use alloc::boxed::Box;
    pub use alloc::format;
    pub use alloc::string::{String, ToString};
    pub use alloc::vec;
    pub use alloc::vec::Vec;
}

#[path = "../build_info.rs"]
pub mod build_info;
#[path = "../cni/mod.rs"]
pub mod cni;
#[path = "../confgen/mod.rs"]
pub mod confgen;
#[path = "../files.rs"]
pub mod files;
#[path = "../golang.rs"]
pub mod golang;
#[path = "../logging.rs"]
pub mod logging;

/// The shim's side of the thick-mode socket API; the daemon's side is `multus::thick`.
pub mod thick;
