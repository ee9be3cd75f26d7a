//! The one pinned compiler of each target (`rustc` in `cross/targets.toml`): rustup's toolchain of
//! exactly that version, or Debian's `rustc` 1.85 with the foreign std unpacked into a private
//! sysroot under `target/` (installed on demand by `scripts/install-cross-toolchains.sh`; never
//! through multiarch). Any other version is refused (exit 5), so a release is rebuilt with the
//! compiler it names.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

use crate::targets::Target;

/// The exact Debian compiler the cross std belongs to (also the MSRV).
pub const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
pub const DEBIAN_RUST_VERSION: &str = "1.85.";

/// A target's pinned compiler, as `cross/targets.toml` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    Rustup(String),
    Debian(String),
}

impl Pin {
    pub fn parse(s: &str) -> anyhow::Result<Pin> {
        let version_ok = |v: &str| v.split('.').count() == 3 && v.split('.').all(|p| p.parse::<u32>().is_ok());
        match s.split_once(':') {
            Some(("rustup", v)) if version_ok(v) => Ok(Pin::Rustup(v.into())),
            Some(("debian", v)) if version_ok(v) => Ok(Pin::Debian(v.into())),
            _ => bail!("rustc = {s:?}: want `rustup:X.Y.Z` or `debian:X.Y.Z`"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Toolchain {
    /// rustup's toolchain of the pinned version; `name` is what RUSTUP_TOOLCHAIN selects (`None`:
    /// rustup's default, which is that version).
    Rustup { version: String, name: Option<String> },
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
            Toolchain::Rustup { version, .. } => format!("rustup {version}"),
            Toolchain::Debian { version, .. } => format!("debian {version}"),
        }
    }
}

pub fn debian_sysroot(root: &Path) -> PathBuf {
    root.join("target/debian-rust-std-1.85")
}

/// `rustc --version`'s version and `--print sysroot` under `RUSTUP_TOOLCHAIN=name` (`None`: default).
fn rustup_rustc(name: Option<&str>) -> Option<(String, PathBuf)> {
    let run = |arg: &str| {
        let mut c = std::process::Command::new("rustc");
        c.arg(arg).env_remove("RUSTC");
        match name {
            Some(n) => c.env("RUSTUP_TOOLCHAIN", n),
            None => c.env_remove("RUSTUP_TOOLCHAIN"),
        };
        let out = c.stderr(std::process::Stdio::null()).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let version = run("--version")?.split_whitespace().nth(1)?.to_string();
    Some((version, PathBuf::from(run("--print=sysroot")?)))
}

/// rustup's toolchain of exactly `want`: the one named so, else the default when it is that version.
fn rustup_pinned(want: &str, triple: &str) -> anyhow::Result<Toolchain> {
    let (name, sysroot) = match rustup_rustc(Some(want)) {
        Some((v, sysroot)) if v == want => (Some(want.to_string()), sysroot),
        _ => match rustup_rustc(None) {
            Some((v, sysroot)) if v == want => (None, sysroot),
            found => {
                return Err(crate::outcome::refused(format!(
                    "{triple} is pinned to rustc {want} (cross/targets.toml), but rustup has {}: install it                      (`rustup toolchain install {want} --profile minimal --target {triple}`) or change the pin",
                    found.map_or("no working rustc".to_string(), |(v, _)| format!("rustc {v} as its default"))
                )));
            }
        },
    };
    let dir = sysroot.join("lib/rustlib").join(triple).join("lib");
    let has_std = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().starts_with("libstd-")))
        .unwrap_or(false);
    if !has_std {
        bail!("rustc {want} has no std for {triple} ({} is missing): rustup target add {triple}", dir.display());
    }
    Ok(Toolchain::Rustup { version: want.into(), name })
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

/// The pinned toolchain of `t`, installing Debian's cross toolchain when it is Debian's and missing.
pub fn for_target(sh: &Shell, root: &Path, t: &Target) -> anyhow::Result<Toolchain> {
    let want = match Pin::parse(&t.rustc).with_context(|| format!("cross/targets.toml, target {}", t.arch))? {
        Pin::Rustup(v) => return rustup_pinned(&v, &t.triple),
        Pin::Debian(v) => v,
    };
    if debian_ready(root, &t.triple).is_none() {
        let sysroot = debian_sysroot(root);
        eprintln!("xtask: no toolchain for {} yet; installing Debian's cross toolchain", t.triple);
        cmd!(sh, "bash scripts/install-cross-toolchains.sh {sysroot}")
            .run()
            .context("scripts/install-cross-toolchains.sh")?;
    }
    match debian_ready(root, &t.triple) {
        Some(version) if version == want => Ok(Toolchain::Debian { sysroot: debian_sysroot(root), version }),
        Some(version) => Err(crate::outcome::refused(format!(
            "{} is pinned to Debian's rustc {want} (cross/targets.toml), but {DEBIAN_RUSTC} is {version}",
            t.triple
        ))),
        None => bail!(
            "no toolchain for {}: rustup has no std for it and {DEBIAN_RUSTC} {DEBIAN_RUST_VERSION}x with {} is missing",
            t.triple,
            debian_sysroot(root).display()
        ),
    }
}

/// Installs every pinned compiler of `targets` (rustup's toolchains with the target's std,
/// Debian's cross toolchain), then resolves each as a build would; returns (arch, compiler).
pub fn install(sh: &Shell, root: &Path, targets: &[Target]) -> anyhow::Result<Vec<(String, String)>> {
    let mut debian = false;
    for t in targets {
        match Pin::parse(&t.rustc).with_context(|| format!("cross/targets.toml, target {}", t.arch))? {
            Pin::Rustup(v) => {
                let triple = &t.triple;
                cmd!(sh, "rustup toolchain install {v} --profile minimal --target {triple}")
                    .run()
                    .with_context(|| format!("installing rustc {v} for {triple}"))?;
            }
            Pin::Debian(_) => debian = true,
        }
    }
    if debian {
        let sysroot = debian_sysroot(root);
        cmd!(sh, "bash scripts/install-cross-toolchains.sh {sysroot}")
            .run()
            .context("scripts/install-cross-toolchains.sh")?;
    }
    ensure_binutils(sh, root, targets)?;
    targets.iter().map(|t| Ok((t.arch.clone(), for_target(sh, root, t)?.describe()))).collect()
}

/// What a dry run says about `t`'s compiler without installing anything: the pinned one when it
/// is there, what `cargo xtask targets --install-toolchains` (or the build, for Debian's) will
/// install when it is not, and a refusal when Debian's rustc is another version.
pub fn probe(root: &Path, t: &Target) -> anyhow::Result<String> {
    match Pin::parse(&t.rustc).with_context(|| format!("cross/targets.toml, target {}", t.arch))? {
        Pin::Rustup(v) => Ok(match rustup_pinned(&v, &t.triple) {
            Ok(tc) => tc.describe(),
            Err(e) => format!("rustup {v} NOT INSTALLED ({e:#}); cargo xtask targets --install-toolchains"),
        }),
        Pin::Debian(v) => match debian_ready(root, &t.triple) {
            Some(found) if found == v => Ok(format!("debian {found}")),
            Some(found) => Err(crate::outcome::refused(format!(
                "{} is pinned to Debian's rustc {v} (cross/targets.toml), but {DEBIAN_RUSTC} is {found}",
                t.triple
            ))),
            None => Ok(format!("debian {v} (to be installed by scripts/install-cross-toolchains.sh)")),
        },
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
