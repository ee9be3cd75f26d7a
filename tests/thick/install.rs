//! `install_multus` as the real binary: replacing a shim that is being executed (the
//! `Text file busy` of issue #1221), both flavors, and its errors.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output};

use crate::support::{mode, read};

/// A process running the binary at a path; killed on drop.
struct Busy(Child);

impl Drop for Busy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn install_multus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_install_multus")).args(args).output().unwrap()
}

fn put(path: &Path, content: &str, mode: u32) {
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    v.sort();
    v
}

#[test]
fn replaces_a_shim_that_is_running() {
    let image = tempfile::tempdir().unwrap();
    let host_bin = tempfile::tempdir().unwrap();
    put(&image.path().join("multus-shim"), "new shim\n", 0o755);
    put(&image.path().join("passthru"), "passthru\n", 0o750);

    // The old shim is a real program the "runtime" is executing right now.
    let target = host_bin.path().join("multus-shim");
    std::fs::copy("/bin/sleep", &target).unwrap();
    let mut busy = Busy(Command::new(&target).arg("600").spawn().unwrap());
    let in_place = std::fs::OpenOptions::new().write(true).open(&target).unwrap_err();
    assert_eq!(in_place.raw_os_error(), Some(libc::ETXTBSY), "the target really is busy: {in_place}");

    let out = install_multus(&[
        "-t",
        "thick",
        "-d",
        host_bin.path().to_str().unwrap(),
        "--source-dir",
        image.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(read(&target).as_deref(), Some("new shim\n"));
    assert_eq!(mode(&target), 0o755);
    assert_eq!(read(&host_bin.path().join("passthru")).as_deref(), Some("passthru\n"));
    assert_eq!(mode(&host_bin.path().join("passthru")), 0o750);
    assert_eq!(names(host_bin.path()), ["multus-shim", "passthru"], "no temp files left behind");
    assert!(busy.0.try_wait().unwrap().is_none(), "the running shim was not disturbed");
}

#[test]
fn thin_installs_multus_and_passthru_with_long_flags() {
    let image = tempfile::tempdir().unwrap();
    let host_bin = tempfile::tempdir().unwrap();
    put(&image.path().join("multus"), "multus\n", 0o755);
    put(&image.path().join("passthru"), "passthru\n", 0o755);
    put(&image.path().join("multus-shim"), "not for thin\n", 0o755);
    let dest = format!("--dest-dir={}", host_bin.path().display());
    let src = format!("--source-dir={}", image.path().display());
    let out = install_multus(&["--type", "thin", &dest, &src]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(names(host_bin.path()), ["multus", "passthru"]);
    assert_eq!(read(&host_bin.path().join("multus")).as_deref(), Some("multus\n"));
}

#[test]
fn errors_are_non_zero_and_name_the_problem() {
    let image = tempfile::tempdir().unwrap();
    let host_bin = tempfile::tempdir().unwrap();
    let (dest, src) = (host_bin.path().to_str().unwrap(), image.path().to_str().unwrap());
    assert!(!install_multus(&["-d", dest, "--source-dir", src]).status.success(), "--type is required");
    assert!(!install_multus(&["-t", "thicc", "-d", dest, "--source-dir", src]).status.success());

    let out = install_multus(&["-t", "thick", "-d", dest, "--source-dir", src]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("multus-shim"), "{err}");
    assert!(names(host_bin.path()).is_empty());

    let out = install_multus(&["--version"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("install_multus: multus-cni version:"));
}
