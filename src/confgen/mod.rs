//! multus's own CNI config files and the node-side installers, for both modes.
//!
//! Pure generation: which primary config multus wraps (`primary`, for both modes), the thin
//! `00-multus.conf[list]` (`thin`) and the thin kubeconfig (`kubeconfig`), with the Go encoding
//! details they depend on (`crate::golang`). IO at the edges: the thin entrypoint's run loop
//! (`entrypoint`) and installation of binaries and files (`install`, used by `install_multus` and
//! both config writers). The thick `00-multus.conf` and the manager that keeps it in step belong
//! to the daemon (`crate::thick::generate`, `crate::thick::manager`, as upstream's
//! `pkg/server/config`).

pub mod entrypoint;
pub mod error;
pub mod install;
pub mod kubeconfig;
pub mod primary;
pub mod thin;

pub use error::Error;

/// `multusConfigFile` value that makes multus generate its config (both modes).
pub const AUTO: &str = "auto";
