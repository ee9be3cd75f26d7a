//! multus: a drop-in replacement for Multus CNI.
//!
//! `cni` is the CNI runtime and plugin core (libcni parity); the binaries in `src/bin/` are thin
//! mains over it. See ARCHITECTURE.md for the module map and the data flow of an ADD.

pub mod build_info;
pub mod cni;
pub mod confgen;
pub mod k8s;
pub mod multus;
pub mod netns;
