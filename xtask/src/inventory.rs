//! What is inside a platform image of the layout: its files (layers applied in order, from the
//! blobs in memory), and for every ELF file the dependency list embedded in its `.dep-v0` section.
//! The scan gate and the SBOM read this, so both describe exactly the bytes that ship.

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
    for (path, bytes) in files(layout, manifest_digest)? {
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
            path,
            deps,
        });
    }
    Ok(out)
}
