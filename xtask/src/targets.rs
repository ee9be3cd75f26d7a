//! `cross/targets.toml`: the platforms we build and ship. Everything that needs a triple, a linker,
//! a qemu binary or an OCI platform asks here; nothing else names a target.

use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub arch: String,
    pub triple: String,
    pub debian_arch: String,
    pub gnu_prefix: String,
    pub qemu: String,
    pub platform: String,
    pub elf_machine: u16,
    pub elf_class: u8,
    pub elf_endian: Endian,
    /// The pinned compiler (`rustup:X.Y.Z` or `debian:X.Y.Z`).
    pub rustc: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endian {
    Little,
    Big,
}

/// An OCI platform (`os/architecture[/variant]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Deserialize)]
struct File {
    target: Vec<Target>,
}

impl Target {
    /// `linux-arm64`: the directory name of this target's artifacts.
    pub fn slug(&self) -> String {
        self.platform.replace('/', "-")
    }

    /// The cross linker (Debian's gcc for the target).
    pub fn linker(&self) -> String {
        format!("{}-gcc", self.gnu_prefix)
    }

    pub fn objcopy(&self) -> String {
        format!("{}-objcopy", self.gnu_prefix)
    }

    /// Runs natively on the (amd64) build host.
    pub fn is_native(&self) -> bool {
        self.qemu.is_empty()
    }

    /// Cargo's environment-variable spelling of the triple (`AARCH64_UNKNOWN_LINUX_GNU`).
    pub fn env_key(&self) -> String {
        self.triple.to_uppercase().replace(['-', '.'], "_")
    }
}

pub fn parse_platform(s: &str) -> anyhow::Result<Platform> {
    let parts: Vec<&str> = s.split('/').collect();
    let (os, architecture, variant) = match parts.as_slice() {
        [os, arch] => (os, arch, None),
        [os, arch, v] => (os, arch, Some(v.to_string())),
        _ => bail!("invalid OCI platform {s:?}: want os/architecture[/variant]"),
    };
    if os.is_empty() || architecture.is_empty() || variant.as_deref() == Some("") {
        bail!("invalid OCI platform {s:?}: empty component");
    }
    Ok(Platform { os: os.to_string(), architecture: architecture.to_string(), variant })
}

pub fn parse(text: &str) -> anyhow::Result<Vec<Target>> {
    let file: File = toml::from_str(text).context("parsing targets")?;
    if file.target.is_empty() {
        bail!("no [[target]] entries");
    }
    for (i, t) in file.target.iter().enumerate() {
        parse_platform(&t.platform).with_context(|| format!("target {}", t.arch))?;
        crate::toolchain::Pin::parse(&t.rustc).with_context(|| format!("target {}", t.arch))?;
        if ![32, 64].contains(&t.elf_class) {
            bail!("target {}: elf_class must be 32 or 64, not {}", t.arch, t.elf_class);
        }
        if file.target[..i].iter().any(|o| o.arch == t.arch || o.triple == t.triple || o.platform == t.platform) {
            bail!("target {} is listed twice (arch, triple or platform repeats)", t.arch);
        }
    }
    Ok(file.target)
}

pub fn load(root: &Path) -> anyhow::Result<Vec<Target>> {
    let path = root.join("cross/targets.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text).with_context(|| format!("in {}", path.display()))
}

/// The targets named by `--arch` (all when none), in the file's order; unknown names are refused.
pub fn select(all: &[Target], arches: &[String]) -> anyhow::Result<Vec<Target>> {
    for a in arches {
        if !all.iter().any(|t| &t.arch == a) {
            let known: Vec<&str> = all.iter().map(|t| t.arch.as_str()).collect();
            bail!("unknown --arch {a:?}; cross/targets.toml has {known:?}");
        }
    }
    Ok(all.iter().filter(|t| arches.is_empty() || arches.contains(&t.arch)).cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_is_valid_and_maps_platforms() {
        let all = load(&crate::project::root()).unwrap();
        let plats: Vec<&str> = all.iter().map(|t| t.platform.as_str()).collect();
        assert_eq!(plats, ["linux/amd64", "linux/arm64", "linux/ppc64le", "linux/s390x", "linux/arm/v7"]);
        let arm = all.iter().find(|t| t.arch == "arm64").unwrap();
        assert_eq!(
            parse_platform(&arm.platform).unwrap(),
            Platform { os: "linux".into(), architecture: "arm64".into(), variant: None }
        );
        assert_eq!(arm.linker(), "aarch64-linux-gnu-gcc");
        assert_eq!(arm.env_key(), "AARCH64_UNKNOWN_LINUX_GNU");
        assert_eq!(arm.slug(), "linux-arm64");
        assert!(all[0].is_native() && !arm.is_native());
        assert_eq!(all.iter().find(|t| t.arch == "s390x").unwrap().elf_endian, Endian::Big);
        let v7 = all.iter().find(|t| t.arch == "arm").unwrap();
        assert_eq!(parse_platform(&v7.platform).unwrap().variant.as_deref(), Some("v7"));
        assert_eq!(
            (v7.elf_class, v7.slug().as_str(), v7.linker().as_str()),
            (32, "linux-arm-v7", "arm-linux-gnueabihf-gcc")
        );
    }

    #[test]
    fn platforms() {
        assert_eq!(parse_platform("linux/arm/v7").unwrap().variant.as_deref(), Some("v7"));
        assert!(parse_platform("linux").is_err());
        assert!(parse_platform("linux/").is_err());
        assert!(parse_platform("a/b/c/d").is_err());
    }

    #[test]
    fn rejects_duplicates_and_bad_entries() {
        let one = r#"[[target]]
arch = "amd64"
triple = "x86_64-unknown-linux-gnu"
debian_arch = "amd64"
gnu_prefix = "x86_64-linux-gnu"
qemu = ""
platform = "linux/amd64"
elf_machine = 62
elf_class = 64
elf_endian = "little"
rustc = "rustup:1.95.0"
"#;
        assert_eq!(parse(one).unwrap().len(), 1);
        assert!(
            parse(&one.replace("rustup:1.95.0", "stable"))
                .unwrap_err()
                .chain()
                .any(|e| e.to_string().contains("rustup:X.Y.Z"))
        );
        assert!(parse(&one.replace("rustup:1.95.0", "debian:1.85")).is_err());
        assert!(parse(&format!("{one}{one}")).unwrap_err().to_string().contains("listed twice"));
        assert!(parse(&one.replace("elf_class = 64", "elf_class = 16")).is_err());
        assert!(parse(&one.replace("little", "middle")).is_err());
        assert!(parse(&one.replace("linux/amd64", "amd64")).is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn selection() {
        let all = load(&crate::project::root()).unwrap();
        assert_eq!(select(&all, &[]).unwrap().len(), 5);
        let s = select(&all, &["s390x".into(), "amd64".into()]).unwrap();
        assert_eq!(s.iter().map(|t| t.arch.as_str()).collect::<Vec<_>>(), ["amd64", "s390x"]);
        assert!(select(&all, &["arm/v8".into()]).unwrap_err().to_string().contains("unknown --arch"));
    }
}
