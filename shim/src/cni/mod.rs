//! The CNI modules the shim shares with multus-core (`src/cni/`), compiled here without std.

#[path = "../../../src/cni/error.rs"]
pub mod error;
#[path = "../../../src/cni/result.rs"]
pub mod result;
#[path = "../../../src/cni/skel.rs"]
pub mod skel;
#[path = "../../../src/cni/validate.rs"]
pub mod validate;
#[path = "../../../src/cni/version.rs"]
pub mod version;

pub use error::{CniError, Error};
pub use result::CniResult;
