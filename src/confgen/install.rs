//! Installing files onto the host: an atomic copy into a directory (temp file in the
//! destination directory, permissions of the source, fsync, rename over the target), and what
//! `install_multus` copies for each mode.
//!
//! The rename replaces the directory entry, never the old file's contents, so a target that is
//! being executed (a shim the runtime is running: `cp: Text file busy`, issue #1221) or read
//! is never a problem: running processes keep the old inode, new executions get the new file.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::cni::Error;

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

/// Copies `src` to `<dest_dir>/<name>` atomically, with the source's permission bits.
pub fn copy_atomic(src: &Path, dest_dir: &Path, name: &str) -> Result<PathBuf, Error> {
    let mut input = std::fs::File::open(src).map_err(|e| Error::io("failed to open", src, e))?;
    let meta = input.metadata().map_err(|e| Error::io("failed to stat", src, e))?;
    if !meta.is_file() {
        return Err(Error::InvalidConfig(format!("{} is not a regular file", src.display())));
    }
    let mode = meta.permissions().mode() & 0o7777;
    let target = dest_dir.join(name);
    let tmp = dest_dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        // A temp file left by a crashed run of the same pid would make create_new fail.
        let _ = std::fs::remove_file(&tmp);
        let mut out = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        std::io::copy(&mut input, &mut out)?;
        out.flush()?;
        // Set after writing so the umask cannot narrow it and the file is never executable half-written.
        out.set_permissions(std::fs::Permissions::from_mode(mode))?;
        out.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        std::fs::File::open(dest_dir)?.sync_all()
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("failed to install", &target, e)
    })?;
    Ok(target)
}

/// `install_multus`: copies the flavor's binaries from `source_dir` into `dest_dir`.
pub fn install(flavor: Flavor, source_dir: &Path, dest_dir: &Path) -> Result<Vec<PathBuf>, Error> {
    flavor.binaries().iter().map(|name| copy_atomic(&source_dir.join(name), dest_dir, name)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_keeps_content_and_mode_and_leaves_no_temp_file() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let f = src.path().join("multus");
        std::fs::write(&f, b"new binary").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o751)).unwrap();
        std::fs::write(dst.path().join("multus"), b"old").unwrap();

        let out = copy_atomic(&f, dst.path(), "multus").unwrap();
        assert_eq!(out, dst.path().join("multus"));
        assert_eq!(std::fs::read(&out).unwrap(), b"new binary");
        assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o7777, 0o751);
        let names: Vec<_> = std::fs::read_dir(dst.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("multus")]);
    }

    #[test]
    fn missing_source_or_destination_are_errors_naming_the_path() {
        let dst = tempfile::tempdir().unwrap();
        let err = copy_atomic(Path::new("/nonexistent/multus"), dst.path(), "multus").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/multus"), "{err}");
        let src = tempfile::NamedTempFile::new().unwrap();
        let err = copy_atomic(src.path(), &dst.path().join("missing"), "x").unwrap_err();
        assert!(err.to_string().contains("missing/x"), "{err}");
        assert!(copy_atomic(dst.path(), dst.path(), "dir").is_err());
    }

    #[test]
    fn flavors_name_upstream_binaries() {
        assert_eq!(Flavor::Thick.binaries(), ["multus-shim", "passthru"]);
        assert_eq!(Flavor::Thin.binaries(), ["multus", "passthru"]);
    }
}
