//! Running delegates chrooted into the host's root (`chrootDir`, `/hostroot` in the DaemonSet), so
//! plugins run with the host's binaries, libraries and files although the daemon is in a
//! container (upstream `ChrootExec`).
//!
//! Plugins are looked up inside the chroot (`<chrootDir>/<dir>/<type>` for each search dir) and
//! run by their path inside it; upstream looked them up in the daemon's own filesystem, which is
//! why its docs demand the CNI bin dir be mounted at the identical path. Spawning, the
//! "text file busy" retry, the timeout and error parsing are `RawExec`'s.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::cni::error::Error;
use crate::cni::exec::{Exec, RawExec, find_in_path};
use crate::cni::spawn;

#[derive(Debug, Clone)]
pub struct ChrootExec {
    root: PathBuf,
    root_c: CString,
    pub raw: RawExec,
}

impl ChrootExec {
    pub fn new(root: impl Into<PathBuf>) -> Result<ChrootExec, Error> {
        let root = root.into();
        let root_c = CString::new(root.as_os_str().as_bytes())
            .map_err(|_| Error::InvalidConfig(format!("chrootDir {} contains a NUL byte", root.display())))?;
        Ok(ChrootExec { root, root_c, raw: RawExec::default() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `dir` (a path inside the chroot) as seen from outside it.
    fn outside(&self, dir: &Path) -> PathBuf {
        self.root.join(dir.strip_prefix("/").unwrap_or(dir))
    }
}

impl Exec for ChrootExec {
    fn exec_plugin(&self, plugin: &Path, stdin: &[u8], env: &[(String, String)]) -> Result<Vec<u8>, Error> {
        self.exec_plugin_timeout(plugin, stdin, env, self.raw.timeout)
    }

    fn exec_plugin_timeout(
        &self,
        plugin: &Path,
        stdin: &[u8],
        env: &[(String, String)],
        timeout: std::time::Duration,
    ) -> Result<Vec<u8>, Error> {
        let opts = spawn::Options { chroot: Some(&self.root_c), ..spawn::Options::default() };
        RawExec { timeout, ..self.raw.clone() }.run(plugin, stdin, env, opts)
    }

    /// Finds `name` in `paths` as they are inside the chroot; returns the path inside it.
    fn find_in_path(&self, name: &str, paths: &[PathBuf]) -> Result<PathBuf, Error> {
        let outside: Vec<PathBuf> = paths.iter().map(|p| self.outside(p)).collect();
        let found = find_in_path(name, &outside)?;
        let idx = outside.iter().position(|dir| found.parent() == Some(dir.as_path())).unwrap_or(0);
        Ok(Path::new("/").join(paths[idx].strip_prefix("/").unwrap_or(&paths[idx])).join(name))
    }
}
