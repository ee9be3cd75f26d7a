//! Finding a toolchain for each target: a rustup-installed target when present, else Debian's
//! `rustc-web` 1.85 with the foreign std unpacked into a private sysroot under `target/`
//! (installed on demand by `scripts/install-cross-toolchains.sh`; never through multiarch).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use crate::targets::Target;

/// The exact Debian compiler the cross std belongs to (also the MSRV).
pub const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
pub const DEBIAN_RUST_VERSION: &str = "1.85.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Toolchain {
    /// rustup's default toolchain has this target's std.
    Rustup { version: String },
    /// Debian's rustc with a private sysroot holding the target's std.
    Debian { sysroot: PathBuf, version: String },
}

impl Toolchain {
    /// A short stable name (build directory, manifest).
    pub fn id(&self) -> &'static str {
        match self {
            Toolchain::Rustup { .. } => "rustup",
            Toolchain::Debian { .. } => "debian-1.85",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Toolchain::Rustup { version } => format!("rustup {version}"),
            Toolchain::Debian { version, .. } => format!("debian {version}"),
        }
    }
}

pub fn debian_sysroot(root: &Path) -> PathBuf {
    root.join("target/debian-rust-std-1.85")
}

fn rustup_has(sh: &Shell, triple: &str) -> anyhow::Result<Option<String>> {
    let sysroot = cmd!(sh, "rustc --print sysroot").read().context("running rustc")?;
    let dir = Path::new(sysroot.trim()).join("lib/rustlib").join(triple).join("lib");
    let has_std = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().starts_with("libstd-")))
        .unwrap_or(false);
    if !has_std {
        return Ok(None);
    }
    Ok(Some(cmd!(sh, "rustc --version").read()?.split_whitespace().nth(1).unwrap_or("?").to_string()))
}

fn debian_ready(root: &Path, triple: &str) -> Option<String> {
    let out = std::process::Command::new(DEBIAN_RUSTC).arg("--version").output().ok()?;
    let version = String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1)?.to_string();
    if !version.starts_with(DEBIAN_RUST_VERSION) {
        return None;
    }
    let std_dir = debian_sysroot(root).join("usr/lib/rustlib").join(triple).join("lib");
    std_dir.is_dir().then_some(version)
}

/// The toolchain for `t`, installing Debian's cross toolchain when nothing can build it.
pub fn for_target(sh: &Shell, root: &Path, t: &Target) -> anyhow::Result<Toolchain> {
    if let Some(version) = rustup_has(sh, &t.triple)? {
        return Ok(Toolchain::Rustup { version });
    }
    if debian_ready(root, &t.triple).is_none() {
        let sysroot = debian_sysroot(root);
        eprintln!("xtask: no toolchain for {} yet; installing Debian's cross toolchain", t.triple);
        cmd!(sh, "bash scripts/install-cross-toolchains.sh {sysroot}")
            .run()
            .context("scripts/install-cross-toolchains.sh")?;
    }
    match debian_ready(root, &t.triple) {
        Some(version) => Ok(Toolchain::Debian { sysroot: debian_sysroot(root), version }),
        None => bail!(
            "no toolchain for {}: rustup has no std for it and {DEBIAN_RUSTC} {DEBIAN_RUST_VERSION}x with {} is missing",
            t.triple,
            debian_sysroot(root).display()
        ),
    }
}

/// Cross linkers and objcopy must exist even when rustup supplies the std.
pub fn ensure_binutils(sh: &Shell, root: &Path, targets: &[Target]) -> anyhow::Result<()> {
    let missing = targets.iter().any(|t| {
        let found = |b: String| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {b}"))
                .output()
                .is_ok_and(|o| o.status.success())
        };
        !found(t.linker()) || !found(t.objcopy()) || (!t.is_native() && !found(t.qemu.clone()))
    });
    if missing {
        let sysroot = debian_sysroot(root);
        cmd!(sh, "bash scripts/install-cross-toolchains.sh {sysroot}")
            .run()
            .context("scripts/install-cross-toolchains.sh")?;
    }
    Ok(())
}
