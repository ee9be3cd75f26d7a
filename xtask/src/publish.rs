//! `cargo xtask publish --registry HOST[:PORT]/REPO`: pushes the OCI layout that `cargo xtask
//! image` wrote. The layout is verified first (every blob's digest and size, diff_ids); the push
//! plan (`plan`, pure) orders blobs, then child manifests before the indexes that list them, then
//! the tags (the layout's ref names) last; the registry client skips whatever is already there,
//! so re-running a publish that died half way finishes it without uploading anything twice.
//! Every tag is read back and compared byte for byte before the digest-pinned references are
//! printed (stdout, one per line).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::image::layout::{self, Layout};
use crate::image::oci::{self, Descriptor, MT_INDEX, MT_MANIFEST};
use crate::registry::access::{Access, AccessArgs};
use crate::registry::{self, BlobOutcome, Client, retry::Policy};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Where to push: HOST[:PORT]/REPO (HTTPS unless --insecure).
    #[arg(long)]
    pub registry: String,
    /// The OCI layout to push (default target/oci/layout).
    #[arg(long)]
    pub layout: Option<PathBuf>,
    #[command(flatten)]
    pub access: AccessArgs,
    /// Try a cross-repository mount from this repository of the same registry first (repeatable).
    #[arg(long = "mount-from")]
    pub mount_from: Vec<String>,
    /// Blobs larger than this are uploaded in chunks of this size; 0 = always in one PUT.
    #[arg(long, default_value_t = DEFAULT_CHUNK_SIZE)]
    pub chunk_size: usize,
    /// Tries per request and upload sessions per blob.
    #[arg(long, default_value_t = DEFAULT_ATTEMPTS)]
    pub attempts: u32,
    /// First backoff (doubles per retry, capped at 15 s, with jitter).
    #[arg(long, default_value_t = DEFAULT_BACKOFF_MS)]
    pub backoff_ms: u64,
}

pub const DEFAULT_CHUNK_SIZE: usize = 16 << 20;
pub const DEFAULT_ATTEMPTS: u32 = 6;
pub const DEFAULT_BACKOFF_MS: u64 = 500;

/// What `publish` runs with: every default resolved, every flag checked (`release` builds one
/// field by field, so a field added here must be decided there too).
#[derive(Clone, Debug)]
pub struct Options {
    pub registry: String,
    pub layout: PathBuf,
    pub access: Access,
    pub mount_from: Vec<String>,
    pub chunk_size: usize,
    pub attempts: u32,
    pub backoff_ms: u64,
}

impl Args {
    pub fn resolve(self) -> anyhow::Result<Options> {
        Ok(Options {
            registry: self.registry,
            layout: self.layout.unwrap_or_else(|| crate::project::root().join("target/oci/layout")),
            access: self.access.resolve()?,
            mount_from: self.mount_from,
            chunk_size: self.chunk_size,
            attempts: self.attempts,
            backoff_ms: self.backoff_ms,
        })
    }
}

/// What to push, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Configs and layers, each once.
    pub blobs: Vec<Descriptor>,
    /// Image manifests and indexes, each after everything it refers to.
    pub manifests: Vec<Descriptor>,
    /// Tags (the layout's ref names) with the manifest or index they name; pushed last.
    pub tags: Vec<(String, Descriptor)>,
}

/// The push order for a (verified) layout.
pub fn plan(layout: &Layout) -> anyhow::Result<Plan> {
    let mut p = Plan { blobs: vec![], manifests: vec![], tags: vec![] };
    let mut seen = BTreeSet::new();
    for d in &layout.index.manifests {
        visit(layout, d, &mut p, &mut seen)?;
        if let Some(tag) = d.annotations.get(oci::ANN_REF_NAME) {
            if oci::tag_safe(tag) != *tag || tag.starts_with(['.', '-']) {
                bail!("ref name {tag:?} in index.json cannot be a registry tag");
            }
            if p.tags.iter().any(|(t, _)| t == tag) {
                bail!("ref name {tag:?} appears twice in index.json");
            }
            p.tags.push((tag.clone(), bare(d)));
        }
    }
    Ok(p)
}

fn bare(d: &Descriptor) -> Descriptor {
    Descriptor { platform: None, annotations: Default::default(), ..d.clone() }
}

fn visit(layout: &Layout, d: &Descriptor, p: &mut Plan, seen: &mut BTreeSet<String>) -> anyhow::Result<()> {
    if !seen.insert(d.digest.clone()) {
        return Ok(());
    }
    let bytes = layout.blobs.get(&d.digest).with_context(|| format!("blob {} is not in the layout", d.digest))?;
    match d.media_type.as_str() {
        MT_INDEX => {
            let idx: oci::Index = serde_json::from_slice(bytes)?;
            for c in &idx.manifests {
                visit(layout, c, p, seen)?;
            }
            p.manifests.push(bare(d));
        }
        MT_MANIFEST => {
            let m: oci::Manifest = serde_json::from_slice(bytes)?;
            for b in std::iter::once(&m.config).chain(&m.layers) {
                if seen.insert(b.digest.clone()) {
                    p.blobs.push(bare(b));
                }
            }
            p.manifests.push(bare(d));
        }
        other => bail!("{}: cannot push media type {other} from index.json", d.digest),
    }
    Ok(())
}

/// What a publish left in the registry: every tag with its digest.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Published {
    /// `HOST/REPO`.
    pub registry: String,
    pub tags: Vec<PublishedTag>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PublishedTag {
    pub tag: String,
    pub digest: String,
    pub media_type: String,
    /// `HOST/REPO:TAG@DIGEST`.
    pub pinned: String,
}

pub fn run(args: &Options) -> anyhow::Result<Published> {
    let dir = &args.layout;
    let target = args.access.target(&args.registry)?;
    for m in &args.mount_from {
        registry::check_repo(m).with_context(|| format!("--mount-from {m}"))?;
    }
    if args.attempts == 0 {
        bail!("--attempts must be at least 1");
    }
    let start = Instant::now();
    eprintln!("==> verify {}", dir.display());
    let (layout, v) = layout::read_verified(dir).context("the layout failed verification; nothing was pushed")?;
    eprintln!("  ok {} blobs ({} bytes), {} manifests, {} layers", v.blobs, v.bytes, v.manifests, v.layers);
    let plan = plan(&layout)?;
    eprintln!(
        "publish plan: {} blobs, {} manifests/indexes, {} tags -> {}://{}",
        plan.blobs.len(),
        plan.manifests.len(),
        plan.tags.len(),
        target.scheme,
        target.name()
    );
    let transport = args.access.transport()?;
    let policy = Policy {
        attempts: args.attempts,
        base: Duration::from_millis(args.backoff_ms),
        max: Duration::from_secs(15).max(Duration::from_millis(args.backoff_ms)),
    };
    let creds = args.access.creds_for(&target.host)?;
    let mut c = Client::new(&transport, target.clone(), creds, policy);
    c.ping()?;

    eprintln!("==> blobs");
    let mut counts = [0usize; 3];
    for d in &plan.blobs {
        let outcome = c.push_blob(&d.digest, &layout.blobs[&d.digest], &args.mount_from, args.chunk_size)?;
        counts[outcome as usize] += 1;
        let said = match outcome {
            BlobOutcome::Present => "present",
            BlobOutcome::Mounted => "mounted",
            BlobOutcome::Uploaded => "uploaded",
        };
        eprintln!("  {said:<8} {} {:>10} bytes {}", d.digest, d.size, short_type(&d.media_type));
    }
    eprintln!("==> manifests and indexes");
    let (mut m_present, mut m_pushed) = (0, 0);
    for d in &plan.manifests {
        if c.manifest_digest(&d.digest)?.as_deref() == Some(d.digest.as_str()) {
            m_present += 1;
            eprintln!("  present  {} {}", d.digest, short_type(&d.media_type));
            continue;
        }
        c.put_manifest(&d.digest, &d.media_type, &layout.blobs[&d.digest], &d.digest)?;
        m_pushed += 1;
        eprintln!("  pushed   {} {}", d.digest, short_type(&d.media_type));
    }
    eprintln!("==> tags");
    let (mut t_same, mut t_set) = (0, 0);
    for (tag, d) in &plan.tags {
        if c.manifest_digest(tag)?.as_deref() == Some(d.digest.as_str()) {
            t_same += 1;
        } else {
            c.put_manifest(tag, &d.media_type, &layout.blobs[&d.digest], &d.digest)?;
            t_set += 1;
        }
    }
    eprintln!("==> read back");
    for (tag, d) in &plan.tags {
        let (ct, bytes) = c.get_manifest(tag)?;
        if bytes != layout.blobs[&d.digest] || ct != d.media_type {
            return Err(crate::outcome::mismatch(format!(
                "{}:{tag}: the registry returns other bytes ({ct}) than the layout's {}",
                target.name(),
                d.digest
            )));
        }
    }
    let s = &c.stats;
    eprintln!(
        "summary: {} in {:.1}s; blobs: {} uploaded ({} bytes), {} mounted, {} present; \
         manifests: {m_pushed} pushed, {m_present} present; tags: {t_set} set, {t_same} unchanged",
        target.name(),
        start.elapsed().as_secs_f64(),
        counts[BlobOutcome::Uploaded as usize],
        s.bytes_uploaded,
        counts[BlobOutcome::Mounted as usize],
        counts[BlobOutcome::Present as usize],
    );
    eprintln!(
        "  {} requests, {} retries, {} chunks resumed, {} upload sessions restarted, {} tokens fetched; every tag read back identical",
        s.requests, s.retries, s.chunk_resumes, s.session_restarts, s.tokens
    );
    Ok(Published {
        registry: target.name(),
        tags: plan
            .tags
            .iter()
            .map(|(tag, d)| PublishedTag {
                tag: tag.clone(),
                digest: d.digest.clone(),
                media_type: d.media_type.clone(),
                pinned: format!("{}:{tag}@{}", target.name(), d.digest),
            })
            .collect(),
    })
}

fn short_type(mt: &str) -> &str {
    match mt {
        MT_INDEX => "index",
        MT_MANIFEST => "manifest",
        oci::MT_CONFIG => "config",
        oci::MT_LAYER_GZIP => "layer",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::image::oci::Blob;

    /// Two platform manifests sharing a layer, under one index; tags for the index and one child.
    #[test]
    fn blobs_then_children_then_indexes_then_tags() {
        let mut blobs = BTreeMap::new();
        let mut put = |b: Blob| {
            blobs.insert(b.descriptor.digest.clone(), b.bytes.clone());
            b.descriptor
        };
        let shared = put(Blob::new(oci::MT_LAYER_GZIP, b"shared".to_vec()));
        let mut children = vec![];
        for arch in ["amd64", "arm64"] {
            let cfg = put(Blob::new(oci::MT_CONFIG, format!("cfg-{arch}").into_bytes()));
            let own = put(Blob::new(oci::MT_LAYER_GZIP, format!("bin-{arch}").into_bytes()));
            let m = crate::image::manifest_for(&cfg, &[shared.clone(), own], BTreeMap::new());
            let mut d = put(Blob::json(MT_MANIFEST, &m).unwrap());
            d.platform = Some(oci::Platform { architecture: arch.into(), os: "linux".into(), variant: None });
            children.push(d);
        }
        let idx = put(Blob::json(MT_INDEX, &crate::image::index_for(&children, BTreeMap::new())).unwrap());
        let tagged = |d: &Descriptor, t: &str| {
            let mut d = d.clone();
            d.annotations.insert(oci::ANN_REF_NAME.into(), t.into());
            d
        };
        let layout = Layout {
            index: crate::image::index_for(
                &[tagged(&idx, "thick-1"), tagged(&children[1], "thick-1-linux-arm64")],
                BTreeMap::new(),
            ),
            blobs,
        };
        let p = plan(&layout).unwrap();
        let types: Vec<&str> = p.blobs.iter().map(|d| short_type(&d.media_type)).collect();
        assert_eq!(types, ["config", "layer", "layer", "config", "layer"]);
        assert_eq!(p.blobs.iter().filter(|d| d.digest == shared.digest).count(), 1);
        let order: Vec<&str> = p.manifests.iter().map(|d| d.digest.as_str()).collect();
        assert_eq!(order, [children[0].digest.as_str(), children[1].digest.as_str(), idx.digest.as_str()]);
        assert!(p.manifests.iter().all(|d| d.platform.is_none() && d.annotations.is_empty()));
        let tags: Vec<(&str, &str)> = p.tags.iter().map(|(t, d)| (t.as_str(), d.digest.as_str())).collect();
        assert_eq!(tags, [("thick-1", idx.digest.as_str()), ("thick-1-linux-arm64", children[1].digest.as_str())]);

        let mut bad = layout.clone();
        bad.index.manifests[1].annotations.insert(oci::ANN_REF_NAME.into(), "a+b".into());
        assert!(plan(&bad).unwrap_err().to_string().contains("cannot be a registry tag"));
        bad.blobs.remove(&idx.digest);
        assert!(plan(&bad).unwrap_err().to_string().contains("not in the layout"));
    }
}
