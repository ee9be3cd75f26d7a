//! Files a reader never sees half of: [`write_atomic`] (temp file + rename in the target's
//! directory, optionally fsynced) and [`copy_atomic`] (the same for a copy, with the source's
//! permissions). Every cache, scratch, config and installed binary is written through here.
//!
//! The rename replaces the directory entry, never the old file's contents, so a target that is
//! being executed (a shim the runtime is running: `cp: Text file busy`, issue #1221) or read is
//! never a problem: running processes keep the old inode, new executions get the new file.
//! Low level: uses nothing of the crate; [`FileError`] names the file and converts into each
//! layer's error.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A failed file operation: what was being done and to which file.
#[derive(Debug, thiserror::Error)]
#[error("{context} {}: {source}", path.display())]
pub struct FileError {
    pub context: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl FileError {
    pub fn new(context: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> FileError {
        FileError { context, path: path.into(), source }
    }
}

/// How hard [`write_atomic`] works to survive a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Temp file + rename: readers see the old or the new content, never a partial one.
    Rename,
    /// Also fsync the file before the rename and the directory after: the new content survives a
    /// power loss (for config files that a node must find intact after a reboot).
    Sync,
}

/// Writes a file by temp + rename in its own directory, so readers see the old or the new content.
pub fn write_atomic(
    file: &Path,
    bytes: &[u8],
    file_mode: u32,
    dir_mode: u32,
    durability: Durability,
) -> Result<(), FileError> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let open = || std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(file_mode).open(&tmp);
    // The directory is made on first use only: making sure of it before every write cost two
    // syscalls per cache file on every ADD.
    let mut f = match open() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(dir_mode)
                .create(dir)
                .map_err(|e| FileError::new("failed to create directory", dir, e))?;
            open()
        }
        opened => opened,
    }
    .map_err(|e| FileError::new("failed to write", file, e))?;
    let result = (|| {
        f.write_all(bytes)?;
        if durability == Durability::Sync {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, file)?;
        if durability == Durability::Sync {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    result.map_err(|e: std::io::Error| {
        let _ = std::fs::remove_file(&tmp);
        FileError::new("failed to write", file, e)
    })
}

/// Copies `src` to `<dest_dir>/<name>` atomically, with the source's permission bits.
pub fn copy_atomic(src: &Path, dest_dir: &Path, name: &str) -> Result<PathBuf, FileError> {
    let mut input = std::fs::File::open(src).map_err(|e| FileError::new("failed to open", src, e))?;
    let meta = input.metadata().map_err(|e| FileError::new("failed to stat", src, e))?;
    if !meta.is_file() {
        return Err(FileError::new("failed to copy", src, std::io::Error::other("not a regular file")));
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
        FileError::new("failed to install", &target, e)
    })?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn write_atomic_makes_missing_directories_and_leaves_no_temp_file() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("a/b/results/net-c1-eth0");
        write_atomic(&file, b"one", 0o600, 0o700, Durability::Rename).unwrap();
        write_atomic(&file, b"two", 0o600, 0o700, Durability::Rename).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"two");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&file), mode(file.parent().unwrap()), mode(&d.path().join("a"))), (0o600, 0o700, 0o700));
        assert_eq!(names(file.parent().unwrap()), vec!["net-c1-eth0"]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_removes_its_temp_file() {
        let d = tempfile::tempdir().unwrap();
        // A directory in the way: the rename fails after the temp file was written.
        let file = d.path().join("taken");
        std::fs::create_dir(&file).unwrap();
        std::fs::write(file.join("keep"), b"x").unwrap();
        let e = write_atomic(&file, b"new", 0o600, 0o700, Durability::Rename).unwrap_err();
        assert!(e.to_string().contains("taken"), "{e}");
        assert_eq!(names(d.path()), vec!["taken"]);
        assert_eq!(names(&file), vec!["keep"]);
    }

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
}
