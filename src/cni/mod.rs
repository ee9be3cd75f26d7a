//! The CNI specification and libcni's runtime side (the Rust equivalent of libcni v1.3.0 and skel).
//!
//! Knows nothing of Multus or Kubernetes. A runtime-side call flows
//! `config` (load) → `network` (build each plugin's stdin, chain, cache) → `exec` (run) →
//! `result` (parse, convert); the plugin side of our own binaries is `skel`.

pub mod cache;
pub mod config;
pub mod error;
pub mod exec;
pub mod network;
pub mod result;
pub mod skel;
pub mod spawn;
pub mod validate;
pub mod version;

pub use config::{NetworkConfigList, PluginConfig};
pub use error::{CniError, Error};
pub use exec::{Exec, RawExec};
pub use network::{CniConfig, GcAttachment, RuntimeConf};
pub use result::CniResult;
