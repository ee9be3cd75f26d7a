//! The modules shared with multus-core leave out what needs std when `multus_nostd` is set; the
//! binary has no C start files and no libc; on powerpc64 its entry and system call are assembly
//! (`src/arch/ppc64le.S`, assembled with the target's gcc), as Rust 1.85 has no stable `asm!` there.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(multus_nostd)");
    println!("cargo::rustc-cfg=multus_nostd");
    println!("cargo::rustc-link-arg-bins=-nostartfiles");
    println!("cargo::rustc-link-arg-bins=-nostdlib");
    println!("cargo::rerun-if-changed=src/arch/ppc64le.S");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if arch == "powerpc64" {
        let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("ppc64le.o");
        let target = std::env::var("TARGET").unwrap_or_default();
        let key = format!("CC_{}", target.replace('-', "_"));
        println!("cargo::rerun-if-env-changed={key}");
        let cc = std::env::var(&key).unwrap_or_else(|_| "powerpc64le-linux-gnu-gcc".into());
        let status = Command::new(&cc)
            .args(["-c", "src/arch/ppc64le.S", "-o"])
            .arg(&out)
            .status()
            .unwrap_or_else(|e| panic!("running {cc}: {e}"));
        assert!(status.success(), "{cc} could not assemble src/arch/ppc64le.S");
        println!("cargo::rustc-link-arg-bins={}", out.display());
    }
}
