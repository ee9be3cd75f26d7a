//! What is inside a platform image of the layout: its files (layers applied in order, from the
//! blobs in memory), and for every ELF file the dependency list embedded in its `.dep-v0` section,
//! or the Debian package it belongs to (the dpkg status in `/var/lib/dpkg/status.d/`, as the debug
//! variants carry busybox). The scan gate and the SBOM read this, so both describe exactly the
//! bytes that ship.

use std::collections::BTreeMap;
use std::io::Read as _;

use anyhow::{Context, bail};
use sha2::Digest as _;

use crate::auditable::{self, DepList};
use crate::image::layout::Layout;
use crate::image::oci;

/// One executable in an image.
#[derive(Debug, Clone, PartialEq)]
pub struct Binary {
    /// Path in the image, without the leading `/`.
    pub path: String,
    pub sha256: String,
    pub size: u64,
    /// `None`: an ELF file without a `.dep-v0` section (a scanner cannot see inside it).
    pub deps: Option<DepList>,
    /// The Debian package whose dpkg status in the image lists this file.
    pub debian: Option<DebianPackage>,
}

/// A Debian package as its dpkg status in the image names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianPackage {
    pub name: String,
    pub version: String,
    /// Debian's architecture name (`arm64`, `armhf`).
    pub architecture: String,
}

/// Where distroless-style images keep one dpkg status file per package (`<package>` is its
/// control paragraph, `<package>.md5sums` its files).
const DPKG_STATUS_D: &str = "var/lib/dpkg/status.d/";

/// The owner of each file listed by a package's `.md5sums` in the image (pure).
fn debian_owners(files: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, DebianPackage> {
    let mut owners = BTreeMap::new();
    for (path, sums) in files.range(DPKG_STATUS_D.to_string()..) {
        let Some(name) = path.strip_prefix(DPKG_STATUS_D) else { break };
        let Some(pkg) = name.strip_suffix(".md5sums") else { continue };
        let Some(control) = files.get(&format!("{DPKG_STATUS_D}{pkg}")) else { continue };
        let control = String::from_utf8_lossy(control);
        let field = |key: &str| {
            control.lines().find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string())).unwrap_or_default()
        };
        let package =
            DebianPackage { name: pkg.to_string(), version: field("Version:"), architecture: field("Architecture:") };
        for line in String::from_utf8_lossy(sums).lines() {
            if let Some((_, file)) = line.split_once("  ") {
                owners.insert(file.trim_start_matches('/').to_string(), package.clone());
            }
        }
    }
    owners
}

/// The regular files of a manifest's image, by path (later layers win; a hard link is a copy of
/// its target).
pub fn files(layout: &Layout, manifest_digest: &str) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let bytes =
        layout.blobs.get(manifest_digest).with_context(|| format!("manifest {manifest_digest} not in the layout"))?;
    let m: oci::Manifest = serde_json::from_slice(bytes).with_context(|| format!("manifest {manifest_digest}"))?;
    let mut out = BTreeMap::new();
    for l in &m.layers {
        if l.media_type != oci::MT_LAYER_GZIP {
            bail!("manifest {manifest_digest}: layer {} has media type {}", l.digest, l.media_type);
        }
        let gz = layout.blobs.get(&l.digest).with_context(|| format!("layer {} not in the layout", l.digest))?;
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(gz.as_slice()));
        for e in ar.entries().with_context(|| format!("layer {}", l.digest))? {
            let mut e = e.with_context(|| format!("layer {}", l.digest))?;
            let path = e.path()?.to_string_lossy().trim_start_matches("./").trim_start_matches('/').to_string();
            if e.header().entry_type().is_file() {
                let mut data = Vec::new();
                e.read_to_end(&mut data).with_context(|| format!("layer {}: {path}", l.digest))?;
                out.insert(path, data);
            } else if e.header().entry_type().is_hard_link() {
                let target = e.link_name()?.map(|t| t.to_string_lossy().trim_start_matches('/').to_string());
                let data = target.as_ref().and_then(|t| out.get(t)).cloned().with_context(|| {
                    format!("layer {}: {path} links to {target:?}, which no earlier entry holds", l.digest)
                })?;
                out.insert(path, data);
            } else {
                out.remove(&path);
            }
        }
    }
    Ok(out)
}

/// The ELF files of a manifest's image with their embedded dependency lists.
pub fn binaries(layout: &Layout, manifest_digest: &str) -> anyhow::Result<Vec<Binary>> {
    let mut out = Vec::new();
    let files = files(layout, manifest_digest)?;
    let owners = debian_owners(&files);
    for (path, bytes) in files {
        if !bytes.starts_with(b"\x7fELF") {
            continue;
        }
        let deps = match crate::elf::section(&bytes, auditable::SECTION).with_context(|| format!("{path}: ELF"))? {
            Some(s) => Some(auditable::decode(s).with_context(|| format!("{path}: {}", auditable::SECTION))?),
            None => None,
        };
        out.push(Binary {
            sha256: format!("{:x}", sha2::Sha256::digest(&bytes)),
            size: bytes.len() as u64,
            debian: owners.get(&path).cloned(),
            path,
            deps,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_listed_by_a_dpkg_status_belong_to_its_package() {
        let f = |p: &str, b: &str| (p.to_string(), b.as_bytes().to_vec());
        let files: BTreeMap<String, Vec<u8>> = [
            f("bin/busybox", "\x7fELF"),
            f("usr/src/multus-cni/bin/passthru", "\x7fELF"),
            f(
                "var/lib/dpkg/status.d/busybox-static",
                "Package: busybox-static\nVersion: 1:1.35.0-4\nArchitecture: armhf\n",
            ),
            f("var/lib/dpkg/status.d/busybox-static.md5sums", "1c78  bin/busybox\n0338  usr/share/doc/x\n"),
            f("var/lib/dpkg/status.d/orphan.md5sums", "00  bin/other\n"),
        ]
        .into_iter()
        .collect();
        let owners = debian_owners(&files);
        let want =
            DebianPackage { name: "busybox-static".into(), version: "1:1.35.0-4".into(), architecture: "armhf".into() };
        assert_eq!(owners.get("bin/busybox"), Some(&want));
        assert_eq!(owners.get("usr/share/doc/x"), Some(&want));
        assert_eq!(owners.get("usr/src/multus-cni/bin/passthru"), None);
        assert_eq!(owners.get("bin/other"), None, "a md5sums file without its control paragraph names no package");
    }
}
