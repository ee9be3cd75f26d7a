//! multus's own CNI config files and the node-side installers, for both modes.
//!
//! Pure generation: which primary config multus wraps (`primary`), the thick `00-multus.conf`
//! (`thick`), the thin `00-multus.conf[list]` (`thin`) and the thin kubeconfig (`kubeconfig`),
//! with the Go encoding details they depend on (`crate::golang`). IO at the edges: the thick config
//! manager that keeps the file in step with the primary for the daemon (`manager`), the thin
//! entrypoint's run loop (`entrypoint`), and atomic installation of binaries and files
//! (`install`, used by `install_multus` and both config writers).

pub mod entrypoint;
pub mod install;
pub mod kubeconfig;
pub mod manager;
pub mod primary;
pub mod thick;
pub mod thin;

pub use manager::{Fatal, Manager, ManagerConfig, ManagerHandle};
