//! `cargo xtask build`: every node binary for the chosen targets, statically linked (not PIE), stamped with
//! version and commit, reproducible (SOURCE_DATE_EPOCH from the commit, host paths remapped), with
//! the dependency list embedded (`.dep-v0`), verified (ELF machine/class/endianness, static, runs
//! under qemu-user and prints its version) and listed in a machine-readable manifest.
//!
//! Plan first (pure: targets, toolchains, paths), then execute.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use xshell::{Shell, cmd};

use crate::targets::{self, Target};
use crate::toolchain::{self, Toolchain};
use crate::{auditable, elf};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Build for this architecture (repeatable; default: every target in cross/targets.toml).
    #[arg(long = "arch")]
    pub arches: Vec<String>,
    /// Optimised release build (what images ship).
    #[arg(long)]
    pub release: bool,
    /// Only this binary (repeatable; default: every binary of the package).
    #[arg(long = "bin")]
    pub bins: Vec<String>,
    /// Where cargo builds (default target/xbuild).
    #[arg(long)]
    pub target_dir: Option<PathBuf>,
    /// Where the verified artifacts and manifest.json go (default target/release-artifacts).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

/// What `build` runs with (defaults resolved; `release` and `bench` build one field by field).
#[derive(Clone, Debug)]
pub struct Options {
    /// Empty: every target of cross/targets.toml.
    pub arches: Vec<String>,
    pub release: bool,
    /// Empty: every binary of the node package.
    pub bins: Vec<String>,
    pub target_dir: PathBuf,
    pub out_dir: PathBuf,
}

impl Args {
    pub fn resolve(self) -> Options {
        let root = crate::project::root();
        Options {
            arches: self.arches,
            release: self.release,
            bins: self.bins,
            target_dir: self.target_dir.unwrap_or_else(|| root.join("target/xbuild")),
            out_dir: self.out_dir.unwrap_or_else(|| root.join("target/release-artifacts")),
        }
    }
}

/// What was built: consumed by the image step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: String,
    pub commit: String,
    pub source_date_epoch: u64,
    pub profile: String,
    pub targets: Vec<TargetArtifacts>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetArtifacts {
    pub arch: String,
    pub platform: String,
    pub triple: String,
    pub toolchain: String,
    pub binaries: Vec<Artifact>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    pub name: String,
    /// Relative to the manifest's directory.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// Version identity of the checkout being built.
#[derive(Debug, Clone)]
pub struct Stamp {
    pub version: String,
    pub commit: String,
    pub source_date_epoch: u64,
}

impl Stamp {
    /// The build date the binaries print (`date:` of their version line): SOURCE_DATE_EPOCH.
    pub fn date(&self) -> String {
        crate::image::oci::rfc3339(self.source_date_epoch)
    }
}

pub fn stamp(sh: &Shell) -> anyhow::Result<Stamp> {
    let commit = cmd!(sh, "git rev-parse HEAD").read().context("git rev-parse HEAD")?;
    let describe = cmd!(sh, "git describe --tags --always --dirty --abbrev=12").read()?;
    let pkg = crate::project::node_version()?;
    // A tag vX.Y.Z on the commit is the version; otherwise the package version + the commit.
    let version = match describe.strip_prefix('v') {
        Some(tag) if !tag.contains("-g") && !tag.ends_with("-dirty") => tag.to_string(),
        _ => format!("{pkg}+g{describe}"),
    };
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.parse().context("SOURCE_DATE_EPOCH is not a number")?,
        Err(_) => cmd!(sh, "git log -1 --format=%ct").read()?.trim().parse()?,
    };
    Ok(Stamp { version, commit, source_date_epoch })
}

/// One cargo invocation: the targets that share a toolchain.
struct Group {
    toolchain: Toolchain,
    targets: Vec<Target>,
}

/// `shim`: the libc-free shim's build, which takes neither the hot-text layout (a `multus`
/// affair) nor anything else beyond static, position-dependent code.
fn rustflags(root: &Path, target_dir: &Path, tc: &Toolchain, shim: bool) -> anyhow::Result<String> {
    let cargo_home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo"));
    // Static and position-dependent, like upstream's Go binaries and the reference plugins: a
    // static-pie binary relocates ~300 KB of pointers (copy-on-write faults) at every start,
    // 0.4 ms of a multus exec that the container runtime pays per pod and command
    // (`cargo xtask bench cni`, thin_multus_vs_passthru). ASLR still places stack, heap and
    // mappings; RELRO still applies.
    let mut flags = vec![
        "-C".to_string(),
        "target-feature=+crt-static".to_string(),
        "-C".to_string(),
        "relocation-model=static".to_string(),
    ];
    if !shim {
        // The code a thin ADD/DEL runs goes first in .text (cross/hot-text.ld, generated by
        // scripts/hot-text.py), so a fresh `multus` maps it with ~30 fewer page faults per run
        // (83 -> 53 per ADD): -0.27 ± 0.04 ms per ADD+DEL, 600 interleaved rounds of the shipped
        // amd64 binary against the one built without it.
        // v0 mangling puts generic arguments into symbol names, which lets the script name them.
        flags.extend([
            "-C".to_string(),
            "symbol-mangling-version=v0".to_string(),
            "-C".to_string(),
            format!("link-arg=-Wl,-T,{}", hot_text(root, target_dir)?.display()),
        ]);
    }
    if let Toolchain::Debian { sysroot, .. } = tc {
        flags.push("--sysroot".into());
        flags.push(sysroot.join("usr").display().to_string());
    }
    // Longest prefix first: the target dir may live inside the workspace.
    for (from, to) in [(target_dir, "/target"), (root, "/build"), (cargo_home.as_path(), "/cargo")] {
        flags.push(format!("--remap-path-prefix={}={to}", from.display()));
    }
    if flags.iter().any(|f| f.contains(' ')) {
        bail!("paths with spaces cannot be passed in RUSTFLAGS: {flags:?}");
    }
    Ok(flags.join(" "))
}

/// cross/hot-text.ld, copied into the target dir under a name that carries its digest: the path
/// is part of RUSTFLAGS, so a regenerated script makes cargo link again.
fn hot_text(root: &Path, target_dir: &Path) -> anyhow::Result<PathBuf> {
    let src = root.join("cross/hot-text.ld");
    let text = std::fs::read(&src).with_context(|| format!("reading {}", src.display()))?;
    let digest = format!("{:x}", sha2::Sha256::digest(&text));
    let dst = target_dir.join(format!("hot-text-{}.ld", &digest[..16]));
    if !dst.exists() {
        std::fs::create_dir_all(target_dir)?;
        let tmp = dst.with_extension("ld.tmp");
        std::fs::write(&tmp, &text)?;
        std::fs::rename(&tmp, &dst).with_context(|| format!("writing {}", dst.display()))?;
    }
    Ok(dst)
}

pub fn run(sh: &Shell, args: &Options) -> anyhow::Result<Manifest> {
    let root = crate::project::root();
    let all = targets::load(&root)?;
    let chosen = targets::select(&all, &args.arches)?;
    let bins = if args.bins.is_empty() { crate::project::node_binaries()? } else { args.bins.clone() };
    let (target_dir, out_dir) = (&args.target_dir, &args.out_dir);
    let profile = if args.release { "release" } else { "debug" };
    let stamp = stamp(sh)?;

    toolchain::ensure_binutils(sh, &root, &chosen)?;
    let mut groups: Vec<Group> = Vec::new();
    for t in &chosen {
        let tc = toolchain::for_target(sh, &root, t)?;
        match groups.iter_mut().find(|g| g.toolchain == tc) {
            Some(g) => g.targets.push(t.clone()),
            None => groups.push(Group { toolchain: tc, targets: vec![t.clone()] }),
        }
    }

    eprintln!(
        "build plan: version {} commit {} ({profile})",
        stamp.version,
        &stamp.commit[..12.min(stamp.commit.len())]
    );
    for g in &groups {
        let arches: Vec<&str> = g.targets.iter().map(|t| t.arch.as_str()).collect();
        eprintln!("  {:<16} {:?} -> {}", g.toolchain.describe(), arches, bins.join(", "));
    }

    // The node package's binaries, then the libc-free shim from its own workspace (`shim/`).
    let (shim, node_bins): (Vec<String>, Vec<String>) =
        bins.iter().cloned().partition(|b| b == crate::project::SHIM_BIN);
    let mut built: BTreeMap<String, (Toolchain, PathBuf)> = BTreeMap::new();
    for g in &groups {
        let dir = target_dir.join(g.toolchain.id());
        if !node_bins.is_empty() {
            cargo_build(sh, &root, &dir, g, Build::Node(&node_bins), args.release, &stamp)?;
        }
        if !shim.is_empty() {
            cargo_build(sh, &root, &dir.join("shim"), g, Build::Shim, args.release, &stamp)?;
        }
        for t in &g.targets {
            built.insert(t.arch.clone(), (g.toolchain.clone(), dir.clone()));
        }
    }

    let mut manifest = Manifest {
        version: stamp.version.clone(),
        commit: stamp.commit.clone(),
        source_date_epoch: stamp.source_date_epoch,
        profile: profile.into(),
        targets: vec![],
    };
    for t in &chosen {
        let (tc, dir) = &built[&t.arch];
        eprintln!("==> verify {} ({})", t.arch, t.platform);
        let dest = out_dir.join(t.slug());
        std::fs::create_dir_all(&dest)?;
        let section_file = dest.join(".dep-v0.zlib");
        let mut binaries = Vec::new();
        for bin in &bins {
            // Each binary lists its own package's dependencies.
            let (workspace, package, cargo_dir) = if *bin == crate::project::SHIM_BIN {
                (root.join("shim"), crate::project::SHIM_BIN, dir.join("shim"))
            } else {
                (root.clone(), "multus", dir.clone())
            };
            let deps =
                auditable::encode(&auditable::dep_list(&auditable::metadata_for(&workspace, &t.triple)?, package)?)?;
            std::fs::write(&section_file, &deps)?;
            let built_bin = cargo_dir.join(&t.triple).join(profile).join(bin);
            let out = dest.join(bin);
            let tmp = dest.join(format!(".{bin}.tmp"));
            std::fs::copy(&built_bin, &tmp).with_context(|| format!("copying {}", built_bin.display()))?;
            let objcopy = t.objcopy();
            let section = format!("{}={}", auditable::SECTION, section_file.display());
            let flags = format!("{}=readonly", auditable::SECTION);
            cmd!(sh, "{objcopy} --add-section {section} --set-section-flags {flags} {tmp}").run()?;
            let bytes = std::fs::read(&tmp)?;
            let shown = format!("{}/{bin}", t.slug());
            verify_artifact(sh, &shown, &tmp, &bytes, t, &deps, &stamp)?;
            std::fs::rename(&tmp, &out)?;
            binaries.push(Artifact {
                name: bin.clone(),
                path: format!("{}/{bin}", t.slug()),
                size: bytes.len() as u64,
                sha256: format!("{:x}", sha2::Sha256::digest(&bytes)),
            });
        }
        std::fs::remove_file(&section_file)?;
        manifest.targets.push(TargetArtifacts {
            arch: t.arch.clone(),
            platform: t.platform.clone(),
            triple: t.triple.clone(),
            toolchain: tc.describe(),
            binaries,
        });
    }
    let path = out_dir.join("manifest.json");
    let tmp = out_dir.join(".manifest.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&manifest)?)?;
    std::fs::rename(&tmp, &path)?;
    print_summary(&manifest, &path);
    Ok(manifest)
}

/// What one cargo invocation builds.
#[derive(Clone, Copy)]
enum Build<'a> {
    /// These binaries of the node package.
    Node(&'a [String]),
    /// The libc-free `multus-shim` (`shim/`, its own workspace and lockfile).
    Shim,
}

fn cargo_build(
    sh: &Shell,
    root: &Path,
    dir: &Path,
    g: &Group,
    what: Build,
    release: bool,
    stamp: &Stamp,
) -> anyhow::Result<()> {
    let mut c = match what {
        Build::Node(bins) => {
            let mut c = cmd!(sh, "cargo build --locked --package multus");
            for b in bins {
                c = c.args(["--bin", b]);
            }
            c
        }
        Build::Shim => {
            let manifest = root.join("shim/Cargo.toml");
            cmd!(sh, "cargo build --locked --manifest-path {manifest} --bin multus-shim")
        }
    };
    c = c
        .env("CARGO_TARGET_DIR", dir)
        .env("SOURCE_DATE_EPOCH", stamp.source_date_epoch.to_string())
        .env("MULTUS_VERSION", &stamp.version)
        .env("MULTUS_COMMIT", &stamp.commit)
        .env("MULTUS_DATE", stamp.date())
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    if release {
        c = c.arg("--release");
    }
    c = match &g.toolchain {
        Toolchain::Debian { .. } => c.env("RUSTC", toolchain::DEBIAN_RUSTC).env("MULTUS_RUSTC", g.toolchain.describe()),
        Toolchain::Rustup { name, .. } => {
            let c = c.env_remove("RUSTC").env("MULTUS_RUSTC", g.toolchain.describe());
            match name {
                Some(n) => c.env("RUSTUP_TOOLCHAIN", n),
                None => c.env_remove("RUSTUP_TOOLCHAIN"),
            }
        }
    };
    for t in &g.targets {
        let key = t.env_key();
        c = c
            .args(["--target", &t.triple])
            .env(format!("CARGO_TARGET_{key}_LINKER"), t.linker())
            .env(
                format!("CARGO_TARGET_{key}_RUSTFLAGS"),
                rustflags(root, dir, &g.toolchain, matches!(what, Build::Shim))?,
            )
            .env(format!("CC_{}", t.triple.replace('-', "_")), t.linker());
    }
    eprintln!(
        "==> cargo build{} ({}) for {}",
        if matches!(what, Build::Shim) { " shim/" } else { "" },
        g.toolchain.describe(),
        g.targets.iter().map(|t| t.triple.as_str()).collect::<Vec<_>>().join(", ")
    );
    c.run().context("cargo build failed")?;
    Ok(())
}

/// The checks every artifact passes before anything packages it.
fn verify_artifact(
    sh: &Shell,
    shown: &str,
    path: &Path,
    bytes: &[u8],
    t: &Target,
    deps: &[u8],
    stamp: &Stamp,
) -> anyhow::Result<()> {
    elf::verify(shown, bytes, t)?;
    let section = elf::section(bytes, auditable::SECTION)?
        .with_context(|| format!("{shown}: no {} section", auditable::SECTION))?;
    if section != deps {
        bail!("{shown}: the embedded {} section differs from the dependency list", auditable::SECTION);
    }
    let list = auditable::decode(section).with_context(|| format!("{shown}: unreadable {}", auditable::SECTION))?;
    if list.packages.iter().filter(|p| p.root).count() != 1 {
        bail!("{shown}: the embedded dependency list must have exactly one root package");
    }
    let out = if t.is_native() {
        cmd!(sh, "{path} --version").read()
    } else {
        let qemu = &t.qemu;
        cmd!(sh, "{qemu} {path} --version").read()
    }
    .with_context(|| {
        format!(
            "{shown}: running --version{}",
            if t.is_native() { String::new() } else { format!(" under {}", t.qemu) }
        )
    })?;
    let want = format!("version:{}, commit:{}, date:{}", stamp.version, stamp.commit, stamp.date());
    if !out.contains(&want) {
        bail!("{shown}: --version printed {out:?}, expected it to contain {want:?}");
    }
    eprintln!(
        "  ok {shown}: {} static, {} bytes, runs{}",
        elf::machine_name(t.elf_machine),
        bytes.len(),
        if t.is_native() { "" } else { " under qemu" }
    );
    Ok(())
}

fn print_summary(m: &Manifest, path: &Path) {
    eprintln!("summary: {} {} ({})", m.version, m.profile, path.display());
    eprintln!("  {:<10} {:<16} {:>10}  {:<16} toolchain", "arch", "binary", "bytes", "sha256");
    for t in &m.targets {
        for b in &t.binaries {
            eprintln!("  {:<10} {:<16} {:>10}  {:<16} {}", t.arch, b.name, b.size, &b.sha256[..16], t.toolchain);
        }
    }
}
