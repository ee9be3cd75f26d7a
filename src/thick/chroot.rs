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
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use crate::cni::error::Error;
use crate::cni::exec::{Exec, RawExec, find_in_path};

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
        let root = self.root_c.clone();
        RawExec { timeout, ..self.raw.clone() }.run(plugin, stdin, env, &move |cmd| {
            let root = root.clone();
            // SAFETY: the hook only makes the async-signal-safe chroot and chdir syscalls on
            // memory allocated before the fork.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        })
    }

    /// Finds `name` in `paths` as they are inside the chroot; returns the path inside it.
    fn find_in_path(&self, name: &str, paths: &[PathBuf]) -> Result<PathBuf, Error> {
        let outside: Vec<PathBuf> = paths.iter().map(|p| self.outside(p)).collect();
        let found = find_in_path(name, &outside)?;
        let idx = outside.iter().position(|dir| found.parent() == Some(dir.as_path())).unwrap_or(0);
        Ok(Path::new("/").join(paths[idx].strip_prefix("/").unwrap_or(&paths[idx])).join(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A root with `/bin/sh` and the libraries it links (found with `ldd`), a marker file only
    /// the chroot has, and a plugin script that proves where it ran.
    fn tiny_root() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let sh = std::fs::canonicalize("/bin/sh").unwrap();
        let ldd = std::process::Command::new("ldd").arg(&sh).output().unwrap();
        let mut files = vec![sh.clone()];
        for word in String::from_utf8(ldd.stdout).unwrap().split_whitespace() {
            if word.starts_with('/') {
                files.push(PathBuf::from(word));
            }
        }
        for f in files {
            let dest = d.path().join(f.strip_prefix("/").unwrap());
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(&f, &dest).unwrap();
        }
        std::fs::create_dir_all(d.path().join("bin")).unwrap();
        let inner_sh = d.path().join(sh.strip_prefix("/").unwrap());
        if !d.path().join("bin/sh").exists() {
            std::fs::copy(&inner_sh, d.path().join("bin/sh")).unwrap();
        }
        std::fs::write(d.path().join("only-in-the-chroot"), "").unwrap();
        let bin = d.path().join("opt/cni/bin");
        std::fs::create_dir_all(&bin).unwrap();
        let plugin = bin.join("where");
        std::fs::write(
            &plugin,
            "#!/bin/sh\nread line\nif [ -e /only-in-the-chroot ]; then echo \"inside $PWD $CNI_COMMAND $line\"; else echo outside; fi\n",
        )
        .unwrap();
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    #[test]
    fn plugins_are_found_and_run_inside_the_chroot() {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(unsafe { libc::geteuid() }, 0, "chroot needs root");
        let root = tiny_root();
        let exec = ChrootExec::new(root.path()).unwrap();
        let paths = vec![PathBuf::from("/usr/lib/nothing"), PathBuf::from("/opt/cni/bin")];
        let plugin = exec.find_in_path("where", &paths).unwrap();
        assert_eq!(plugin, PathBuf::from("/opt/cni/bin/where"), "the path inside the chroot");
        let out = exec.exec_plugin(&plugin, b"{\"a\":1}\n", &[("CNI_COMMAND".into(), "ADD".into())]).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "inside / ADD {\"a\":1}\n");
        let e = exec.find_in_path("bridge", &[PathBuf::from("/opt/cni/bin")]).unwrap_err();
        assert!(e.to_string().contains(&root.path().join("opt/cni/bin").display().to_string()), "{e}");
        let e = exec.exec_plugin(Path::new("/opt/cni/bin/missing"), b"", &[]).unwrap_err();
        assert!(e.to_string().contains("failed to execute plugin /opt/cni/bin/missing"), "{e}");
    }
}
