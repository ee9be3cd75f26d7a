//! The OCI image layout on disk (`oci-layout`, `index.json`, `blobs/sha256/<hex>`), its
//! `oci-archive` tarball, and the verification that every command runs before it trusts a layout:
//! each blob reachable from `index.json` exists, has the size and sha256 its descriptor claims,
//! parses as its media type says, and every config's `diff_ids` equal the sha256 of the
//! uncompressed layers, with os/architecture matching the platform that points at it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sha2::Digest as _;

use super::oci::{self, Descriptor, ImageConfig, Index, MT_INDEX, MT_MANIFEST};

pub const OCI_LAYOUT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

/// A layout in memory: `index.json` and the blobs it reaches.
#[derive(Debug, Clone)]
pub struct Layout {
    pub index: Index,
    pub blobs: BTreeMap<String, Vec<u8>>,
}

impl Layout {
    pub fn index_json(&self) -> anyhow::Result<Vec<u8>> {
        Ok(serde_json::to_vec(&self.index)?)
    }
}

pub fn blob_path(dir: &Path, digest: &str) -> anyhow::Result<PathBuf> {
    Ok(dir.join("blobs/sha256").join(oci::digest_hex(digest)?))
}

/// Writes the layout to `dir`, replacing whatever was there (built beside it, then renamed).
pub fn write(layout: &Layout, dir: &Path) -> anyhow::Result<()> {
    let tmp = dir.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("blobs/sha256")).with_context(|| format!("creating {}", tmp.display()))?;
    std::fs::write(tmp.join("oci-layout"), OCI_LAYOUT)?;
    for (digest, bytes) in &layout.blobs {
        std::fs::write(blob_path(&tmp, digest)?, bytes)?;
    }
    std::fs::write(tmp.join("index.json"), layout.index_json()?)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing the old {}", dir.display()))?;
    }
    std::fs::rename(&tmp, dir).with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
    Ok(())
}

/// The layout as an `oci-archive` (an uncompressed tar of the layout directory), deterministic:
/// sorted entries, mtime = `mtime`, uid/gid 0, modes 0644/0755. Returns its size.
pub fn write_archive(layout: &Layout, out: &Path, mtime: u64) -> anyhow::Result<u64> {
    let index = layout.index_json()?;
    let mut entries: Vec<super::layer::Entry> = vec![
        super::layer::Entry {
            path: "/oci-layout".into(),
            mode: 0o644,
            content: super::layer::Content::File(OCI_LAYOUT.as_bytes()),
        },
        super::layer::Entry { path: "/index.json".into(), mode: 0o644, content: super::layer::Content::File(&index) },
    ];
    for (digest, bytes) in &layout.blobs {
        entries.push(super::layer::Entry {
            path: format!("/blobs/sha256/{}", oci::digest_hex(digest)?),
            mode: 0o644,
            content: super::layer::Content::File(bytes),
        });
    }
    let (tar, _) = super::layer::tar(&entries, mtime)?;
    let tmp = out.with_extension("tmp");
    std::fs::write(&tmp, &tar).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, out)?;
    Ok(tar.len() as u64)
}

/// What `verify` checked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verified {
    pub blobs: usize,
    pub bytes: u64,
    pub manifests: usize,
    pub layers: usize,
}

/// Reads a layout from disk and verifies everything reachable from `index.json` (see the module
/// doc). The returned layout holds exactly the verified blobs.
pub fn read_verified(dir: &Path) -> anyhow::Result<(Layout, Verified)> {
    let marker = std::fs::read(dir.join("oci-layout"))
        .with_context(|| format!("{} is not an OCI layout (no oci-layout file)", dir.display()))?;
    let marker: serde_json::Value = serde_json::from_slice(&marker).context("oci-layout is not JSON")?;
    if marker["imageLayoutVersion"] != "1.0.0" {
        bail!("{}: unsupported imageLayoutVersion {}", dir.display(), marker["imageLayoutVersion"]);
    }
    let path = dir.join("index.json");
    let index: Index =
        serde_json::from_slice(&std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?)
            .with_context(|| format!("parsing {}", path.display()))?;
    if index.schema_version != 2 {
        bail!("{}: schemaVersion {} (want 2)", path.display(), index.schema_version);
    }
    let mut v = Verifier {
        dir,
        blobs: BTreeMap::new(),
        seen: BTreeSet::new(),
        diff_ids: BTreeMap::new(),
        stats: Verified::default(),
    };
    for d in &index.manifests {
        v.descriptor(d, None).with_context(|| format!("verifying {} (from index.json)", d.digest))?;
    }
    Ok((Layout { index, blobs: v.blobs }, v.stats))
}

struct Verifier<'a> {
    dir: &'a Path,
    blobs: BTreeMap<String, Vec<u8>>,
    seen: BTreeSet<(String, Option<String>)>,
    /// Layer digest → sha256 of its uncompressed bytes (each layer is gunzipped once).
    diff_ids: BTreeMap<String, String>,
    stats: Verified,
}

impl Verifier<'_> {
    /// A blob's bytes, checked against its descriptor's size and digest.
    fn blob(&mut self, d: &Descriptor) -> anyhow::Result<Vec<u8>> {
        if let Some(b) = self.blobs.get(&d.digest) {
            if b.len() as u64 != d.size {
                bail!("blob {}: descriptor says {} bytes, the blob has {}", d.digest, d.size, b.len());
            }
            return Ok(b.clone());
        }
        let path = blob_path(self.dir, &d.digest)?;
        let bytes = std::fs::read(&path).with_context(|| format!("blob {} missing ({})", d.digest, path.display()))?;
        if bytes.len() as u64 != d.size {
            return Err(crate::outcome::mismatch(format!(
                "blob {}: descriptor says {} bytes, {} has {}",
                d.digest,
                d.size,
                path.display(),
                bytes.len()
            )));
        }
        let actual = oci::sha256_digest(&bytes);
        if actual != d.digest {
            return Err(crate::outcome::mismatch(format!(
                "blob {}: content digest is {actual} ({} is corrupt)",
                d.digest,
                path.display()
            )));
        }
        self.stats.blobs += 1;
        self.stats.bytes += d.size;
        self.blobs.insert(d.digest.clone(), bytes.clone());
        Ok(bytes)
    }

    fn descriptor(&mut self, d: &Descriptor, parent_platform: Option<&oci::Platform>) -> anyhow::Result<()> {
        let platform = d.platform.as_ref().or(parent_platform);
        let key = (d.digest.clone(), platform.map(|p| p.slug()));
        if !self.seen.insert(key) {
            return Ok(());
        }
        let bytes = self.blob(d)?;
        match d.media_type.as_str() {
            MT_INDEX => {
                let idx: Index = serde_json::from_slice(&bytes).with_context(|| format!("index {}", d.digest))?;
                if idx.media_type.as_deref().is_some_and(|m| m != MT_INDEX) {
                    bail!("index {}: mediaType {:?} differs from its descriptor's", d.digest, idx.media_type);
                }
                for c in &idx.manifests {
                    self.descriptor(c, None).with_context(|| format!("child {} of index {}", c.digest, d.digest))?;
                }
            }
            MT_MANIFEST => self.manifest(d, &bytes, platform)?,
            _ => {} // unknown media types are tolerated (image-layout spec); the blob itself was checked
        }
        Ok(())
    }

    fn manifest(&mut self, d: &Descriptor, bytes: &[u8], platform: Option<&oci::Platform>) -> anyhow::Result<()> {
        let m: oci::Manifest = serde_json::from_slice(bytes).with_context(|| format!("manifest {}", d.digest))?;
        if m.schema_version != 2 || m.media_type.as_deref().is_some_and(|t| t != MT_MANIFEST) {
            bail!("manifest {}: schemaVersion/mediaType are not an OCI image manifest's", d.digest);
        }
        self.stats.manifests += 1;
        if m.artifact_type.is_some() || m.config.media_type == oci::MT_EMPTY {
            return self.artifact(d, &m);
        }
        if !m.layers.is_empty() && m.layers.iter().all(|l| oci::is_attached_payload(&l.media_type)) {
            return self.attachment(d, &m);
        }
        let cfg_bytes = self.blob(&m.config).with_context(|| format!("config of manifest {}", d.digest))?;
        let cfg: ImageConfig = serde_json::from_slice(&cfg_bytes)
            .with_context(|| format!("config {} of {}", m.config.digest, d.digest))?;
        if let Some(p) = platform
            && (p.os.as_str(), p.architecture.as_str(), p.variant.as_deref())
                != (cfg.os.as_str(), cfg.architecture.as_str(), cfg.variant.as_deref())
        {
            bail!(
                "manifest {}: its descriptor says platform {} but its config says {}/{}",
                d.digest,
                p.slug(),
                cfg.os,
                cfg.architecture
            );
        }
        if cfg.rootfs.diff_ids.len() != m.layers.len() {
            bail!(
                "manifest {}: {} layers but the config {} lists {} diff_ids",
                d.digest,
                m.layers.len(),
                m.config.digest,
                cfg.rootfs.diff_ids.len()
            );
        }
        for (l, diff_id) in m.layers.iter().zip(&cfg.rootfs.diff_ids) {
            let gz = self.blob(l).with_context(|| format!("layer of manifest {}", d.digest))?;
            if l.media_type != oci::MT_LAYER_GZIP {
                bail!("layer {}: unsupported media type {}", l.digest, l.media_type);
            }
            let actual = match self.diff_ids.get(&l.digest) {
                Some(a) => a.clone(),
                None => {
                    let a = uncompressed_digest(&gz).with_context(|| format!("layer {}: gunzip failed", l.digest))?;
                    self.diff_ids.insert(l.digest.clone(), a.clone());
                    a
                }
            };
            if &actual != diff_id {
                bail!("layer {}: uncompressed digest {actual} differs from the config's diff_id {diff_id}", l.digest);
            }
            self.stats.layers += 1;
        }
        Ok(())
    }
}

impl Verifier<'_> {
    /// A cosign signature or attestation manifest: uncompressed payload layers, whose diff_ids are
    /// their own digests (the config is the image config cosign writes for them).
    /// An OCI 1.1 artifact (a Sigstore bundle referrer): its config and layers are checked as
    /// blobs; its subject need not be in the layout.
    fn artifact(&mut self, d: &Descriptor, m: &oci::Manifest) -> anyhow::Result<()> {
        self.blob(&m.config).with_context(|| format!("config of artifact {}", d.digest))?;
        for l in &m.layers {
            self.blob(l).with_context(|| format!("layer of artifact {}", d.digest))?;
            self.stats.layers += 1;
        }
        Ok(())
    }

    fn attachment(&mut self, d: &Descriptor, m: &oci::Manifest) -> anyhow::Result<()> {
        let cfg_bytes = self.blob(&m.config).with_context(|| format!("config of manifest {}", d.digest))?;
        let cfg: serde_json::Value = serde_json::from_slice(&cfg_bytes)
            .with_context(|| format!("config {} of {}", m.config.digest, d.digest))?;
        let diff_ids: Vec<&str> = cfg["rootfs"]["diff_ids"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let digests: Vec<&str> = m.layers.iter().map(|l| l.digest.as_str()).collect();
        if diff_ids != digests {
            bail!(
                "manifest {}: the config's diff_ids {diff_ids:?} differ from its payload layers {digests:?}",
                d.digest
            );
        }
        for l in &m.layers {
            self.blob(l).with_context(|| format!("payload of manifest {}", d.digest))?;
            self.stats.layers += 1;
        }
        Ok(())
    }
}

/// Drops the blobs that `index.json` no longer reaches (after entries were replaced).
pub fn retain_reachable(layout: &mut Layout) -> anyhow::Result<()> {
    let mut keep = BTreeSet::new();
    let mut todo: Vec<Descriptor> = layout.index.manifests.clone();
    while let Some(d) = todo.pop() {
        if !keep.insert(d.digest.clone()) {
            continue;
        }
        let bytes = layout.blobs.get(&d.digest).with_context(|| format!("blob {} is not in the layout", d.digest))?;
        match d.media_type.as_str() {
            MT_INDEX => todo.extend(serde_json::from_slice::<Index>(bytes)?.manifests),
            MT_MANIFEST => {
                let m: oci::Manifest = serde_json::from_slice(bytes)?;
                keep.insert(m.config.digest.clone());
                keep.extend(m.layers.iter().map(|l| l.digest.clone()));
            }
            _ => {}
        }
    }
    layout.blobs.retain(|k, _| keep.contains(k));
    Ok(())
}

/// sha256 of a gzip stream's uncompressed bytes (a layer's diff_id).
pub fn uncompressed_digest(gz: &[u8]) -> anyhow::Result<String> {
    let mut hasher = sha2::Sha256::new();
    let mut dec = flate2::read::GzDecoder::new(gz);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = dec.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("sha256:{:x}", hasher.finalize()))
}
