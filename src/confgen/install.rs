//! What `install_multus` copies onto the host for each mode, with `crate::files::copy_atomic`
//! (a shim the runtime is running is replaced, never rewritten: issue #1221).

use std::path::{Path, PathBuf};

use super::Error;
use crate::files::copy_atomic;

/// Where the images keep the binaries (upstream's layout).
pub const SOURCE_DIR: &str = "/usr/src/multus-cni/bin";
/// Where the init container mounts the host's CNI bin dir.
pub const DEST_DIR: &str = "/host/opt/cni/bin";

/// Which plugin a DaemonSet installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `multus-shim` (the daemon runs in the pod).
    Thick,
    /// `multus` (the whole plugin on the host).
    Thin,
}

impl Flavor {
    /// The binaries, in the order they are installed: the plugin, then `passthru` (4.2.1).
    pub fn binaries(self) -> [&'static str; 2] {
        match self {
            Flavor::Thick => ["multus-shim", "passthru"],
            Flavor::Thin => ["multus", "passthru"],
        }
    }
}

/// `install_multus`: copies the flavor's binaries from `source_dir` into `dest_dir`.
pub fn install(flavor: Flavor, source_dir: &Path, dest_dir: &Path) -> Result<Vec<PathBuf>, Error> {
    flavor.binaries().iter().map(|name| Ok(copy_atomic(&source_dir.join(name), dest_dir, name)?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavors_name_upstream_binaries() {
        assert_eq!(Flavor::Thick.binaries(), ["multus-shim", "passthru"]);
        assert_eq!(Flavor::Thin.binaries(), ["multus", "passthru"]);
    }
}
