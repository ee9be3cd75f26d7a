//! multus: a drop-in replacement for Multus CNI.
//!
//! `cni` is the CNI runtime and plugin core (libcni parity), `multus` the meta-plugin's semantics,
//! `thick` the shim/daemon split over a unix socket; the binaries in `src/bin/` are thin mains over
//! them. See ARCHITECTURE.md for the module map and the data flow of an ADD.

pub use multus_core::{build_info, cni, confgen, files, golang, logging};
pub mod k8s;
pub mod multicall;
pub mod multus;
pub mod netns;
pub mod thick;

#[cfg(test)]
mod tidy;
