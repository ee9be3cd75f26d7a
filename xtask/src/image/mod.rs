//! `cargo xtask image`: multi-arch OCI images without Docker, from the build manifest and the
//! descriptions in `images/`. Per image and platform: deterministic layers (`layer`), the config,
//! the manifest; per image: the index; then one OCI layout (`layout`) with a `ref.name` for every
//! image and every platform, its `oci-archive`, and a verification of what was written.
//!
//! The documents are built by plain functions over data (`config_for`, `manifest_for`,
//! `index_for`, `layout_for`); reading files and writing the layout happen in `assemble`/`run`.

pub mod layer;
pub mod layout;
pub mod oci;
pub mod pause;
pub mod spec;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use sha2::Digest as _;

use crate::build;
use oci::{Blob, Descriptor, ImageConfig, Index, Platform};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// The build manifest to package (default target/release-artifacts/manifest.json).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Where the layout (DIR/layout) and the oci-archive (DIR/oci-archive.tar) go (default target/oci).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// The image descriptions (default images/).
    #[arg(long)]
    pub images_dir: Option<PathBuf>,
    /// Only this image (repeatable; default every description in the images directory).
    #[arg(long = "image")]
    pub images: Vec<String>,
}

/// What `image` runs with (defaults resolved; `release` builds one field by field).
#[derive(Clone, Debug)]
pub struct Options {
    pub manifest: PathBuf,
    pub out_dir: PathBuf,
    pub images_dir: PathBuf,
    /// Empty: every description in `images_dir`.
    pub images: Vec<String>,
}

impl Args {
    pub fn resolve(self) -> Options {
        let root = crate::project::root();
        Options {
            manifest: self.manifest.unwrap_or_else(|| root.join("target/release-artifacts/manifest.json")),
            out_dir: self.out_dir.unwrap_or_else(|| root.join("target/oci")),
            images_dir: self.images_dir.unwrap_or_else(|| root.join("images")),
            images: self.images,
        }
    }
}

/// Identity shared by every image of one build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub version: String,
    pub commit: String,
    pub source_date_epoch: u64,
    /// `org.opencontainers.image.source` (the workspace's `repository`).
    pub source: String,
}

impl Meta {
    pub fn created(&self) -> String {
        oci::rfc3339(self.source_date_epoch)
    }
}

/// One platform of one image, assembled.
#[derive(Debug, Clone)]
pub struct BuiltPlatform {
    pub platform: Platform,
    pub ref_name: String,
    pub layers: Vec<layer::Layer>,
    pub config: Blob,
    pub manifest: Blob,
}

/// One image, assembled: its index and platforms.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub name: String,
    pub ref_name: String,
    pub index: Blob,
    pub platforms: Vec<BuiltPlatform>,
    /// Optional binaries that the build did not produce (any platform).
    pub skipped: BTreeSet<String>,
    pub entrypoint_missing: Option<String>,
    /// More ref names for the index: upstream's tag scheme ([`upstream_tags`]).
    pub upstream_tags: Vec<String>,
}

impl BuiltImage {
    /// Uncompressed tar bytes over every layer of every platform.
    pub fn tar_bytes(&self) -> u64 {
        self.platforms.iter().flat_map(|p| &p.layers).map(|l| l.tar_size).sum()
    }
}

/// What `run` produced.
#[derive(Debug)]
pub struct Output {
    pub layout_dir: PathBuf,
    pub archive: PathBuf,
    pub images: Vec<BuiltImage>,
}

/// `thick-<version>` / `thick-<version>-linux-arm64`, tag-safe (also the registry tags).
pub fn ref_name(image: &str, version: &str, platform: Option<&Platform>) -> String {
    match platform {
        Some(p) => oci::tag_safe(&format!("{image}-{version}-{}", p.slug())),
        None => oci::tag_safe(&format!("{image}-{version}")),
    }
}

/// Upstream Multus's tags for an image index of a release (`v4.2.1` and `stable` for thin, its
/// default image; `-thick`, `-debug`, `-thick-debug` for the others), so a cluster that follows
/// upstream's tags switches by changing the registry alone. A development build (`+g<commit>`)
/// gets none, a pre-release (`1.0.0-rc.1`) no `stable`.
pub fn upstream_tags(image: &str, version: &str) -> Vec<String> {
    if version.contains('+') || !version.starts_with(|c: char| c.is_ascii_digit()) {
        return vec![];
    }
    let suffix = match image.strip_prefix("thin") {
        Some(rest) if rest.is_empty() || rest.starts_with('-') => rest.to_string(),
        _ => format!("-{image}"),
    };
    let mut tags = vec![oci::tag_safe(&format!("v{version}{suffix}"))];
    if !version.contains('-') {
        tags.push(format!("stable{suffix}"));
    }
    tags
}

/// The config label that records the exact version of a Debian package an image holds files of.
pub const LABEL_DEBIAN_PACKAGE: &str = "io.github.multus-rs.debian-package.";

/// Where `scripts/fetch-debian-packages.sh` unpacks packages: `<dir>/<debian arch>/<package>/`.
pub fn debian_packages_dir(root: &Path) -> PathBuf {
    root.join("target/debian-packages")
}

/// The OCI annotations of an image's manifests and index.
pub fn annotations(spec: &spec::ImageSpec, meta: &Meta) -> BTreeMap<String, String> {
    BTreeMap::from([
        (oci::ANN_CREATED.into(), meta.created()),
        (oci::ANN_DESCRIPTION.into(), spec.description.clone()),
        (oci::ANN_LICENSES.into(), spec.licenses.clone()),
        (oci::ANN_REVISION.into(), meta.commit.clone()),
        (oci::ANN_SOURCE.into(), meta.source.clone()),
        (oci::ANN_TITLE.into(), spec.title.clone()),
        (oci::ANN_VERSION.into(), meta.version.clone()),
    ])
}

/// The config of one platform image; `layers` are (history name, diff_id) in order.
pub fn config_for(spec: &spec::ImageSpec, meta: &Meta, platform: &Platform, layers: &[(&str, &str)]) -> ImageConfig {
    let created = meta.created();
    let mut labels = annotations(spec, meta);
    labels.extend(spec.labels.clone());
    ImageConfig {
        created: created.clone(),
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        variant: platform.variant.clone(),
        config: oci::RuntimeConfig {
            user: spec.user.clone(),
            env: spec.env.clone(),
            entrypoint: spec.entrypoint.clone(),
            cmd: spec.cmd.clone(),
            working_dir: spec.workdir.clone(),
            labels,
        },
        rootfs: oci::RootFs { kind: "layers".into(), diff_ids: layers.iter().map(|(_, d)| d.to_string()).collect() },
        history: layers
            .iter()
            .map(|(name, _)| oci::History {
                created: created.clone(),
                created_by: format!("cargo xtask image: {name}"),
                comment: None,
            })
            .collect(),
    }
}

pub fn manifest_for(
    config: &Descriptor,
    layers: &[Descriptor],
    annotations: BTreeMap<String, String>,
) -> oci::Manifest {
    oci::Manifest {
        schema_version: 2,
        media_type: Some(oci::MT_MANIFEST.into()),
        artifact_type: None,
        config: config.clone(),
        layers: layers.to_vec(),
        subject: None,
        annotations,
    }
}

/// An image's index; `manifests` carry their platform.
pub fn index_for(manifests: &[Descriptor], annotations: BTreeMap<String, String>) -> Index {
    Index { schema_version: 2, media_type: Some(oci::MT_INDEX.into()), manifests: manifests.to_vec(), annotations }
}

/// The layout: every blob, and `index.json` naming each image index and each platform manifest.
pub fn layout_for(images: &[BuiltImage]) -> layout::Layout {
    let mut blobs = BTreeMap::new();
    let mut top = Vec::new();
    for img in images {
        for name in std::iter::once(img.ref_name.clone()).chain(img.upstream_tags.iter().cloned()) {
            let mut d = img.index.descriptor.clone();
            d.annotations.insert(oci::ANN_REF_NAME.into(), name);
            top.push(d);
        }
        blobs.insert(img.index.descriptor.digest.clone(), img.index.bytes.clone());
        for p in &img.platforms {
            let mut d = p.manifest.descriptor.clone();
            d.platform = Some(p.platform.clone());
            d.annotations.insert(oci::ANN_REF_NAME.into(), p.ref_name.clone());
            top.push(d);
            for b in std::iter::once(&p.manifest).chain([&p.config]).chain(p.layers.iter().map(|l| &l.blob)) {
                blobs.insert(b.descriptor.digest.clone(), b.bytes.clone());
            }
        }
    }
    layout::Layout { index: index_for(&top, BTreeMap::new()), blobs }
}

/// The workspace's `repository` (Cargo.toml), the images' `org.opencontainers.image.source`.
pub fn workspace_repository(root: &Path) -> anyhow::Result<String> {
    let path = root.join("Cargo.toml");
    let v: toml::Value = toml::from_str(&std::fs::read_to_string(&path)?)?;
    v.get("workspace")
        .and_then(|w| w.get("package"))
        .and_then(|p| p.get("repository"))
        .and_then(|r| r.as_str())
        .map(String::from)
        .with_context(|| format!("{}: no workspace.package.repository", path.display()))
}

pub fn read_manifest(path: &Path) -> anyhow::Result<build::Manifest> {
    let bytes = std::fs::read(path).with_context(|| {
        format!("reading the build manifest {} (run `cargo xtask build --release` first)", path.display())
    })?;
    let m: build::Manifest =
        serde_json::from_slice(&bytes).with_context(|| format!("parsing the build manifest {}", path.display()))?;
    if m.targets.is_empty() {
        bail!("the build manifest {} lists no targets", path.display());
    }
    Ok(m)
}

/// Where the bytes of an image file are on disk, for one platform (`debian_arch`: from
/// [`debian_packages`]).
pub fn source_path(
    root: &Path,
    manifest_dir: &Path,
    debian_arch: &BTreeMap<String, String>,
    platform: &str,
    source: &spec::Source,
) -> PathBuf {
    match source {
        spec::Source::Binary { path, .. } => manifest_dir.join(path),
        spec::Source::Repo(p) => root.join(p),
        spec::Source::Debian { package, path } => {
            debian_packages_dir(root).join(&debian_arch[platform]).join(package).join(path)
        }
    }
}

/// A layer's tar before compression, and where its compressed blob will come from.
struct PendingLayer {
    name: String,
    tar_size: u64,
    diff_id: String,
    paths: Vec<String>,
}

/// An image platform whose layers are still to be compressed.
struct PendingPlatform {
    platform: Platform,
    layers: Vec<PendingLayer>,
    /// Labels of this platform only (the Debian packages' versions).
    labels: BTreeMap<String, String>,
}

/// The Debian architecture of each platform the specs need Debian packages for, with the
/// packages fetched (`scripts/fetch-debian-packages.sh`) when they are not unpacked yet.
pub fn debian_packages(
    root: &Path,
    manifest: &build::Manifest,
    specs: &[spec::ImageSpec],
) -> anyhow::Result<BTreeMap<String, String>> {
    let packages: BTreeSet<&str> = specs
        .iter()
        .flat_map(|s| &s.layers)
        .flat_map(|l| &l.files)
        .filter_map(|f| f.debian.as_deref())
        .map(|d| d.split(':').next().unwrap_or_default())
        .collect();
    let mut arch_of = BTreeMap::new();
    if packages.is_empty() {
        return Ok(arch_of);
    }
    let targets = crate::targets::load(root)?;
    let dir = debian_packages_dir(root);
    let mut missing = Vec::new();
    for t in &manifest.targets {
        let target = targets.iter().find(|x| x.platform == t.platform).with_context(|| {
            format!("platform {} is not in cross/targets.toml (its Debian architecture?)", t.platform)
        })?;
        for p in &packages {
            if !dir.join(&target.debian_arch).join(format!("{p}.version")).is_file() {
                missing.push(format!("{}:{p}", target.debian_arch));
            }
        }
        arch_of.insert(t.platform.clone(), target.debian_arch.clone());
    }
    if !missing.is_empty() {
        let sh = xshell::Shell::new()?;
        let script = root.join("scripts/fetch-debian-packages.sh");
        xshell::cmd!(sh, "bash {script} {dir} {missing...}").run().context("scripts/fetch-debian-packages.sh")?;
    }
    Ok(arch_of)
}

/// Reads every file the images need and builds layers, configs, manifests and indexes.
/// Binaries are checked against the sha256 the build manifest recorded for them.
///
/// Tars are built first; each distinct tar (by diff_id) is then compressed once, the distinct
/// ones in parallel on the available cores — the result does not depend on the order.
pub fn assemble(
    root: &Path,
    manifest: &build::Manifest,
    manifest_dir: &Path,
    specs: &[spec::ImageSpec],
    meta: &Meta,
    quiet: bool,
) -> anyhow::Result<Vec<BuiltImage>> {
    let debian_arch = debian_packages(root, manifest, specs)?;
    let debian_dir = debian_packages_dir(root);
    let mut cache: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
    let mut tars: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut pending: Vec<(Vec<PendingPlatform>, BTreeSet<String>, Option<String>)> = Vec::new();
    for s in specs {
        let mut platforms = Vec::new();
        let mut skipped = BTreeSet::new();
        let mut entrypoint_missing = None;
        for t in &manifest.targets {
            let platform = Platform::from_target(&t.platform)?;
            let built: BTreeMap<String, (String, String)> =
                t.binaries.iter().map(|b| (b.name.clone(), (b.path.clone(), b.sha256.clone()))).collect();
            let plan = s.plan(&t.platform, &built)?;
            skipped.extend(plan.skipped.iter().cloned());
            entrypoint_missing = entrypoint_missing.or(plan.entrypoint_missing.clone());
            let mut layers = Vec::new();
            let mut labels = BTreeMap::new();
            for pl in &plan.layers {
                let mut contents = Vec::new();
                for f in &pl.files {
                    let path = source_path(root, manifest_dir, &debian_arch, &t.platform, &f.source);
                    if let spec::Source::Debian { package, .. } = &f.source {
                        let file = debian_dir.join(&debian_arch[&t.platform]).join(format!("{package}.version"));
                        let version = std::fs::read_to_string(&file)
                            .with_context(|| format!("image {}: reading {}", s.name, file.display()))?;
                        labels.insert(format!("{LABEL_DEBIAN_PACKAGE}{package}"), version.trim().to_string());
                        // A package's symlink would be followed to a file of this machine: only its
                        // regular files go into an image.
                        let meta = std::fs::symlink_metadata(&path)
                            .with_context(|| format!("image {}: reading {}", s.name, path.display()))?;
                        if !meta.file_type().is_file() {
                            bail!("image {}: {} is not a regular file of its package", s.name, path.display());
                        }
                    }
                    if !cache.contains_key(&path) {
                        let bytes = std::fs::read(&path)
                            .with_context(|| format!("image {}: reading {}", s.name, path.display()))?;
                        if let spec::Source::Binary { name, sha256, .. } = &f.source {
                            let actual = format!("{:x}", sha2::Sha256::digest(&bytes));
                            if &actual != sha256 {
                                bail!(
                                    "image {}: {} ({name}, {}) has sha256 {actual}, the build manifest says {sha256}",
                                    s.name,
                                    path.display(),
                                    t.platform
                                );
                            }
                        }
                        cache.insert(path.clone(), bytes);
                    }
                    contents.push((f, path));
                }
                let mut entries: Vec<layer::Entry> = pl
                    .dirs
                    .iter()
                    .map(|(p, m)| layer::Entry { path: p.clone(), mode: *m, content: layer::Content::Dir })
                    .collect();
                for (f, path) in &contents {
                    entries.push(layer::Entry {
                        path: f.path.clone(),
                        mode: f.mode,
                        content: layer::Content::File(&cache[path]),
                    });
                }
                for (path, target) in &pl.links {
                    entries.push(layer::Entry {
                        path: path.clone(),
                        mode: 0o777,
                        content: layer::Content::Symlink(target),
                    });
                }
                let (tar, paths) = layer::tar(&entries, meta.source_date_epoch)
                    .with_context(|| format!("image {}, layer {:?}, {}", s.name, pl.name, t.platform))?;
                let diff_id = oci::sha256_digest(&tar);
                layers.push(PendingLayer {
                    name: pl.name.clone(),
                    tar_size: tar.len() as u64,
                    diff_id: diff_id.clone(),
                    paths,
                });
                tars.entry(diff_id).or_insert(tar);
            }
            platforms.push(PendingPlatform { platform, layers, labels });
        }
        pending.push((platforms, skipped, entrypoint_missing));
    }

    let blobs = compress_all(tars)?;

    let mut images = Vec::new();
    for (s, (platforms, skipped, entrypoint_missing)) in specs.iter().zip(pending) {
        let mut built = Vec::new();
        for pp in platforms {
            let layers: Vec<layer::Layer> = pp
                .layers
                .iter()
                .map(|l| layer::Layer {
                    blob: blobs[&l.diff_id].clone(),
                    diff_id: l.diff_id.clone(),
                    tar_size: l.tar_size,
                    paths: l.paths.clone(),
                })
                .collect();
            let diff: Vec<(&str, &str)> =
                pp.layers.iter().zip(&layers).map(|(p, l)| (p.name.as_str(), l.diff_id.as_str())).collect();
            let mut config_doc = config_for(s, meta, &pp.platform, &diff);
            config_doc.config.labels.extend(pp.labels.clone());
            let config = Blob::json(oci::MT_CONFIG, &config_doc)?;
            let layer_descs: Vec<Descriptor> = layers.iter().map(|l| l.blob.descriptor.clone()).collect();
            let manifest_doc = manifest_for(&config.descriptor, &layer_descs, annotations(s, meta));
            let manifest_blob = Blob::json(oci::MT_MANIFEST, &manifest_doc)?;
            if !quiet {
                let tar: u64 = layers.iter().map(|l| l.tar_size).sum();
                let gz: u64 = layers.iter().map(|l| l.blob.descriptor.size).sum();
                let entries: usize = layers.iter().map(|l| l.paths.len()).sum();
                eprintln!(
                    "  {:<6} {:<14} {} layers, {entries:>2} entries, {:>9} bytes tar, {:>9} bytes gzip  manifest {}",
                    s.name,
                    pp.platform.slug(),
                    layers.len(),
                    tar,
                    gz,
                    short(&manifest_blob.descriptor.digest)
                );
            }
            built.push(BuiltPlatform {
                ref_name: ref_name(&s.name, &meta.version, Some(&pp.platform)),
                platform: pp.platform,
                layers,
                config,
                manifest: manifest_blob,
            });
        }
        let children: Vec<Descriptor> = built
            .iter()
            .map(|p| {
                let mut d = p.manifest.descriptor.clone();
                d.platform = Some(p.platform.clone());
                d
            })
            .collect();
        let index = Blob::json(oci::MT_INDEX, &index_for(&children, annotations(s, meta)))?;
        images.push(BuiltImage {
            name: s.name.clone(),
            ref_name: ref_name(&s.name, &meta.version, None),
            index,
            platforms: built,
            skipped,
            entrypoint_missing,
            upstream_tags: upstream_tags(&s.name, &meta.version),
        });
    }
    Ok(images)
}

/// gzip of each distinct tar (keyed by diff_id), spread over the available cores.
fn compress_all(tars: BTreeMap<String, Vec<u8>>) -> anyhow::Result<BTreeMap<String, Blob>> {
    let jobs: Vec<(String, Vec<u8>)> = tars.into_iter().collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(jobs.len()).max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<anyhow::Result<Vec<(String, Blob)>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((diff_id, tar)) = jobs.get(i) else { break };
                        done.push((diff_id.clone(), Blob::new(oci::MT_LAYER_GZIP, layer::gzip(tar)?)));
                    }
                    Ok(done)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("a compression thread panicked")).collect()
    });
    let mut out = BTreeMap::new();
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

/// The descriptions to build: all (every image and each of its variants, `thick` then
/// `thick-debug`), or those named (unknown names refused).
pub fn select_specs(dir: &Path, names: &[String]) -> anyhow::Result<Vec<spec::ImageSpec>> {
    let variants = spec::load_variants(dir)?;
    let mut all = Vec::new();
    for base in spec::load_dir(dir)? {
        let derived: Vec<spec::ImageSpec> =
            variants.iter().map(|v| base.with_variant(v)).collect::<anyhow::Result<_>>()?;
        all.push(base);
        all.extend(derived);
    }
    for n in names {
        if !all.iter().any(|s| &s.name == n) {
            let known: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
            bail!("unknown --image {n:?}; {} has {known:?}", dir.display());
        }
    }
    Ok(all.into_iter().filter(|s| names.is_empty() || names.contains(&s.name)).collect())
}

pub fn run(args: &Options) -> anyhow::Result<Output> {
    let root = crate::project::root();
    let (manifest_path, out_dir, images_dir) = (&args.manifest, &args.out_dir, &args.images_dir);
    let manifest = read_manifest(manifest_path)?;
    let manifest_dir = manifest_path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let specs = select_specs(images_dir, &args.images)?;
    let meta = Meta {
        version: manifest.version.clone(),
        commit: manifest.commit.clone(),
        source_date_epoch: manifest.source_date_epoch,
        source: workspace_repository(&root)?,
    };
    let plats: Vec<&str> = manifest.targets.iter().map(|t| t.platform.as_str()).collect();
    eprintln!(
        "image plan: {} for {} (version {}, created {})",
        specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "),
        plats.join(", "),
        meta.version,
        meta.created()
    );
    let start = Instant::now();
    eprintln!("==> assemble layers, configs, manifests, indexes");
    let images = assemble(&root, &manifest, &manifest_dir, &specs, &meta, false)?;
    let layout = layout_for(&images);
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let layout_dir = out_dir.join("layout");
    let archive = out_dir.join("oci-archive.tar");
    eprintln!("==> write {} and {}", layout_dir.display(), archive.display());
    layout::write(&layout, &layout_dir)?;
    let archive_size = layout::write_archive(&layout, &archive, meta.source_date_epoch)?;
    eprintln!("==> verify {}", layout_dir.display());
    let (back, verified) = layout::read_verified(&layout_dir)?;
    if back.index != layout.index || back.blobs.len() != layout.blobs.len() {
        bail!("{}: what was read back differs from what was written", layout_dir.display());
    }
    eprintln!(
        "  ok {} blobs ({} bytes), {} manifests, {} layers: digests, sizes and diff_ids match",
        verified.blobs, verified.bytes, verified.manifests, verified.layers
    );
    for img in &images {
        for b in &img.skipped {
            eprintln!("warning: {} image: {b} not built yet, skipped (optional in images/{}.toml)", img.name, img.name);
        }
        if let Some(e) = &img.entrypoint_missing {
            eprintln!(
                "warning: {} image: its entrypoint {e} is not in this build; the image cannot start as is",
                img.name
            );
        }
    }
    print_summary(&images, &layout_dir, &archive, archive_size, start.elapsed().as_secs_f64());
    Ok(Output { layout_dir, archive, images })
}

pub fn short(digest: &str) -> &str {
    &digest[..digest.len().min(7 + 16)]
}

fn print_summary(images: &[BuiltImage], layout_dir: &Path, archive: &Path, archive_size: u64, secs: f64) {
    eprintln!("summary: {} ({archive_size} bytes: {}) in {secs:.1}s", layout_dir.display(), archive.display());
    eprintln!("  {:<44} {:<14} {:>10} {:>10}  digest", "ref name", "platform", "tar", "gzip");
    for img in images {
        for p in &img.platforms {
            let tar: u64 = p.layers.iter().map(|l| l.tar_size).sum();
            let gz: u64 = p.layers.iter().map(|l| l.blob.descriptor.size).sum();
            eprintln!(
                "  {:<44} {:<14} {:>10} {:>10}  {}",
                p.ref_name,
                p.platform.slug(),
                tar,
                gz,
                p.manifest.descriptor.digest
            );
        }
        eprintln!("  {:<44} {:<14} {:>10} {:>10}  {}", img.ref_name, "index", "", "", img.index.descriptor.digest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            version: "0.1.0+gabc".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            source_date_epoch: 1_700_000_000,
            source: "https://github.com/multus-rs/multus-rs".into(),
        }
    }

    fn spec() -> spec::ImageSpec {
        spec::ImageSpec::parse(
            r#"
name = "thick"
title = "t"
description = "d"
licenses = "Apache-2.0"
entrypoint = ["/bin/d"]
env = ["PATH=/bin"]
workdir = "/"
[labels]
"x.y" = "z"
[[layer]]
name = "binaries"
[[layer.file]]
binary = "d"
path = "/bin/d"
mode = 0o755
"#,
        )
        .unwrap()
    }

    const ANN: &str = r#""org.opencontainers.image.created":"2023-11-14T22:13:20Z","org.opencontainers.image.description":"d","org.opencontainers.image.licenses":"Apache-2.0","org.opencontainers.image.revision":"0123456789abcdef0123456789abcdef01234567","org.opencontainers.image.source":"https://github.com/multus-rs/multus-rs","org.opencontainers.image.title":"t","org.opencontainers.image.version":"0.1.0+gabc""#;

    #[test]
    fn config_document() {
        let p = Platform { architecture: "arm".into(), os: "linux".into(), variant: Some("v7".into()) };
        let cfg = config_for(&spec(), &meta(), &p, &[("binaries", "sha256:aa")]);
        let want = format!(
            r#"{{"created":"2023-11-14T22:13:20Z","architecture":"arm","os":"linux","variant":"v7","config":{{"Env":["PATH=/bin"],"Entrypoint":["/bin/d"],"WorkingDir":"/","Labels":{{{ANN},"x.y":"z"}}}},"rootfs":{{"type":"layers","diff_ids":["sha256:aa"]}},"history":[{{"created":"2023-11-14T22:13:20Z","created_by":"cargo xtask image: binaries"}}]}}"#
        );
        assert_eq!(String::from_utf8(serde_json::to_vec(&cfg).unwrap()).unwrap(), want);
    }

    #[test]
    fn manifest_and_index_documents() {
        let cfg = Blob::new(oci::MT_CONFIG, b"{}".to_vec());
        let layer = Blob::new(oci::MT_LAYER_GZIP, b"gz".to_vec());
        let m = Blob::json(
            oci::MT_MANIFEST,
            &manifest_for(&cfg.descriptor, std::slice::from_ref(&layer.descriptor), annotations(&spec(), &meta())),
        )
        .unwrap();
        let want = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":2}}],"annotations":{{{ANN}}}}}"#,
            cfg.descriptor.digest, layer.descriptor.digest
        );
        assert_eq!(String::from_utf8(m.bytes.clone()).unwrap(), want);
        let mut child = m.descriptor.clone();
        child.platform = Some(Platform::from_target("linux/arm64").unwrap());
        let idx = Blob::json(oci::MT_INDEX, &index_for(&[child], annotations(&spec(), &meta()))).unwrap();
        let want = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{},"platform":{{"architecture":"arm64","os":"linux"}}}}],"annotations":{{{ANN}}}}}"#,
            m.descriptor.digest, m.descriptor.size
        );
        assert_eq!(String::from_utf8(idx.bytes).unwrap(), want);
    }

    #[test]
    fn releases_also_get_upstreams_tags() {
        assert_eq!(upstream_tags("thin", "4.2.1"), ["v4.2.1", "stable"]);
        assert_eq!(upstream_tags("thick", "4.2.1"), ["v4.2.1-thick", "stable-thick"]);
        assert_eq!(upstream_tags("thin-debug", "4.2.1"), ["v4.2.1-debug", "stable-debug"]);
        assert_eq!(upstream_tags("thick-debug", "4.2.1"), ["v4.2.1-thick-debug", "stable-thick-debug"]);
        assert_eq!(upstream_tags("thinner", "4.2.1"), ["v4.2.1-thinner", "stable-thinner"]);
        assert_eq!(upstream_tags("thick", "1.0.0-rc.1"), ["v1.0.0-rc.1-thick"], "a pre-release is not stable");
        assert!(upstream_tags("thick", "0.1.0+gabc-dirty").is_empty(), "development builds keep our refs only");
    }

    #[test]
    fn ref_names_are_tags() {
        let p = Platform::from_target("linux/arm64").unwrap();
        assert_eq!(ref_name("thick", "0.1.0+gabc-dirty", None), "thick-0.1.0_gabc-dirty");
        assert_eq!(ref_name("thick", "0.1.0", Some(&p)), "thick-0.1.0-linux-arm64");
    }

    /// Two builds of the same inputs give the same bytes; the layout names images and platforms.
    #[test]
    fn assembly_is_deterministic_and_the_layout_verifies() {
        struct Cleanup(PathBuf);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let cleanup = Cleanup(std::env::temp_dir().join(format!("xtask-image-unit-{}", std::process::id())));
        let dir = cleanup.0.clone();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("linux-amd64")).unwrap();
        std::fs::create_dir_all(dir.join("linux-arm64")).unwrap();
        let mut targets = vec![];
        for (slug, plat, content) in [("linux-amd64", "linux/amd64", b"amd"), ("linux-arm64", "linux/arm64", b"arm")] {
            std::fs::write(dir.join(slug).join("d"), content).unwrap();
            targets.push(build::TargetArtifacts {
                arch: slug.into(),
                platform: plat.into(),
                triple: String::new(),
                toolchain: String::new(),
                binaries: vec![build::Artifact {
                    name: "d".into(),
                    path: format!("{slug}/d"),
                    size: 3,
                    sha256: format!("{:x}", sha2::Sha256::digest(content)),
                }],
            });
        }
        let m = build::Manifest {
            version: "0.1.0+gabc".into(),
            commit: "c".into(),
            source_date_epoch: 1_700_000_000,
            profile: "release".into(),
            targets,
        };
        let a = assemble(&dir, &m, &dir, &[spec()], &meta(), true).unwrap();
        let b = assemble(&dir, &m, &dir, &[spec()], &meta(), true).unwrap();
        assert_eq!(a[0].index, b[0].index);
        let lay = layout_for(&a);
        let refs: Vec<&str> = lay.index.manifests.iter().map(|d| d.annotations[oci::ANN_REF_NAME].as_str()).collect();
        assert_eq!(refs, ["thick-0.1.0_gabc", "thick-0.1.0_gabc-linux-amd64", "thick-0.1.0_gabc-linux-arm64"]);
        // A release's index is also named by upstream's tags, all for the same digest.
        let mut release = a.clone();
        release[0].upstream_tags = upstream_tags("thick", "4.2.1");
        let rl = layout_for(&release);
        let named: Vec<(&str, &str)> = rl
            .index
            .manifests
            .iter()
            .map(|d| (d.annotations[oci::ANN_REF_NAME].as_str(), d.digest.as_str()))
            .filter(|(_, d)| *d == a[0].index.descriptor.digest)
            .collect();
        let idx = a[0].index.descriptor.digest.as_str();
        assert_eq!(named, [("thick-0.1.0_gabc", idx), ("v4.2.1-thick", idx), ("stable-thick", idx)]);
        layout::write(&rl, &dir.join("layout-release")).unwrap();
        assert_eq!(layout::read_verified(&dir.join("layout-release")).unwrap().0.index, rl.index);
        layout::write(&lay, &dir.join("layout")).unwrap();
        let (back, v) = layout::read_verified(&dir.join("layout")).unwrap();
        assert_eq!(back.index, lay.index);
        assert_eq!((v.manifests, v.layers, v.blobs), (2, 2, 7));

        // A binary that is not what the build manifest recorded is refused.
        std::fs::write(dir.join("linux-arm64/d"), b"ARM").unwrap();
        let err = assemble(&dir, &m, &dir, &[spec()], &meta(), true).unwrap_err().to_string();
        assert!(err.contains("the build manifest says"), "{err}");

        // A corrupted layer blob is caught by the verification, naming the digest.
        let l = &a[0].platforms[1].layers[0].blob.descriptor.digest;
        let path = layout::blob_path(&dir.join("layout"), l).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let err = format!("{:#}", layout::read_verified(&dir.join("layout")).unwrap_err());
        assert!(err.contains(&format!("blob {l}: content digest")), "{err}");

        // A layer whose diff_id the config misstates is caught too.
        let mut wrong = a.clone();
        let p = &mut wrong[0].platforms[0];
        let mut cfg: ImageConfig = serde_json::from_slice(&p.config.bytes).unwrap();
        cfg.rootfs.diff_ids[0] = oci::sha256_digest(b"not the layer");
        p.config = Blob::json(oci::MT_CONFIG, &cfg).unwrap();
        let md = manifest_for(&p.config.descriptor, &[p.layers[0].blob.descriptor.clone()], BTreeMap::new());
        p.manifest = Blob::json(oci::MT_MANIFEST, &md).unwrap();
        let mut child = p.manifest.descriptor.clone();
        child.platform = Some(p.platform.clone());
        wrong[0].index = Blob::json(oci::MT_INDEX, &index_for(&[child], BTreeMap::new())).unwrap();
        wrong[0].platforms.truncate(1);
        layout::write(&layout_for(&wrong), &dir.join("layout2")).unwrap();
        let err = format!("{:#}", layout::read_verified(&dir.join("layout2")).unwrap_err());
        assert!(err.contains("differs from the config's diff_id"), "{err}");
    }
}
