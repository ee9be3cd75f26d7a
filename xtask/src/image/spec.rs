//! The image descriptions in `images/*.toml`: which files go where (by binary name from the build
//! manifest, or a repository file), in which layers, with which modes, entrypoint, environment,
//! labels and licenses. This module parses and checks them and decides, per platform, which files
//! an image gets; it reads no file but the descriptions themselves.
//!
//! A file may be marked `optional = true` (a binary that is not built yet): when the build
//! manifest lacks it the image is assembled without it and the command says so loudly; a missing
//! file that is not optional is an error naming the image, the binary and the platform.
//!
//! A file may also come from a Debian package of the platform's architecture (`debian =
//! "package:path"`), and a layer may hold symbolic links. Variants (`images/variants/*.toml`, e.g.
//! `debug`) add layers, labels and a licence to every image: `thick` and `thick-debug`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::layer;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Short name: the file stem, the first part of every ref name and tag (`thick-<version>`).
    pub name: String,
    pub title: String,
    pub description: String,
    /// SPDX expression for `org.opencontainers.image.licenses`.
    pub licenses: String,
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub workdir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// Extra config labels (the OCI ones are added by the image step).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(rename = "layer")]
    pub layers: Vec<LayerSpec>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerSpec {
    /// Shown in the config history (`cargo xtask image: <name>`).
    pub name: String,
    #[serde(default, rename = "dir")]
    pub dirs: Vec<DirSpec>,
    #[serde(default, rename = "file")]
    pub files: Vec<FileSpec>,
    #[serde(default, rename = "link")]
    pub links: Vec<LinkSpec>,
}

/// Symbolic links in the image to one target (`/bin/sh`, `/bin/cp` → `busybox`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// What they point to, as stored (relative to each link's directory, or absolute).
    pub target: String,
    /// Absolute paths of the links.
    pub paths: Vec<String>,
}

/// A variant of every image (`images/variants/<suffix>.toml`): the image's layers plus these,
/// named `<image>-<suffix>`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantSpec {
    /// `debug`: the variant of `thick` is `thick-debug`.
    pub suffix: String,
    /// Appended to the image's description.
    pub description: String,
    /// SPDX expression of what the variant adds, joined to the image's with `AND`.
    pub licenses: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(rename = "layer")]
    pub layers: Vec<LayerSpec>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirSpec {
    pub path: String,
    pub mode: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// A node binary by name, taken from the build manifest of each platform.
    #[serde(default)]
    pub binary: Option<String>,
    /// A file of the repository (relative to the workspace root), the same on every platform.
    #[serde(default)]
    pub source: Option<String>,
    /// A file of a Debian package, for the platform's architecture: `busybox-static:bin/busybox`.
    #[serde(default)]
    pub debian: Option<String>,
    /// Absolute path in the image.
    pub path: String,
    pub mode: u32,
    /// Tolerate its absence from the build (reported loudly). Only for binaries not built yet.
    #[serde(default)]
    pub optional: bool,
}

/// Where the bytes of one image file come from, once resolved for a platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Path relative to the build manifest's directory, with the sha256 the manifest records.
    Binary { name: String, path: String, sha256: String },
    /// Path relative to the workspace root.
    Repo(String),
    /// A path inside a Debian package of the platform's architecture.
    Debian { package: String, path: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    pub path: String,
    pub mode: u32,
    pub source: Source,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedLayer {
    pub name: String,
    pub dirs: Vec<(String, u32)>,
    pub files: Vec<PlannedFile>,
    /// (path, target) of each symbolic link.
    pub links: Vec<(String, String)>,
}

/// An image's content for one platform: its layers (empty ones dropped) and what was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub layers: Vec<PlannedLayer>,
    /// Optional binaries absent from the build, by name.
    pub skipped: Vec<String>,
    /// Set when the entrypoint's file is one of the skipped ones.
    pub entrypoint_missing: Option<String>,
}

impl ImageSpec {
    pub fn parse(text: &str) -> anyhow::Result<ImageSpec> {
        let spec: ImageSpec = toml::from_str(text)?;
        spec.check()?;
        Ok(spec)
    }

    fn check(&self) -> anyhow::Result<()> {
        let n = &self.name;
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            bail!("image name {n:?} must be lower-case letters, digits and '-'");
        }
        if self.licenses.trim().is_empty() {
            bail!("image {n}: licenses must name an SPDX expression");
        }
        if self.layers.is_empty() {
            bail!("image {n}: no [[layer]]");
        }
        let mut paths = BTreeSet::new();
        for l in &self.layers {
            for d in &l.dirs {
                layer::components(&d.path).with_context(|| format!("image {n}, layer {}", l.name))?;
            }
            for f in &l.files {
                layer::components(&f.path).with_context(|| format!("image {n}, layer {}", l.name))?;
                if !paths.insert(f.path.as_str()) {
                    bail!("image {n}: {} is listed twice", f.path);
                }
                match (&f.binary, &f.source, &f.debian) {
                    (Some(_), None, None) => {}
                    (None, Some(s), None) => {
                        if f.optional {
                            bail!("image {n}: {} comes from the repository ({s}) and cannot be optional", f.path);
                        }
                        if Path::new(s).is_absolute() || s.split('/').any(|c| c == "..") {
                            bail!("image {n}: source {s:?} must be a path inside the repository");
                        }
                    }
                    (None, None, Some(d)) => {
                        if f.optional {
                            bail!("image {n}: {} comes from a Debian package ({d}) and cannot be optional", f.path);
                        }
                        debian_source(d).with_context(|| format!("image {n}: {}", f.path))?;
                    }
                    _ => bail!("image {n}: {} needs exactly one of binary =, source = or debian =", f.path),
                }
                if f.mode & !0o7777 != 0 {
                    bail!("image {n}: {} has mode {:o} (permission bits only)", f.path, f.mode);
                }
            }
            for k in &l.links {
                if k.target.is_empty() || k.target.len() > 100 || k.target.bytes().any(|b| b == 0) {
                    bail!("image {n}: links to {:?} need a target of 1 to 100 bytes without NUL", k.target);
                }
                for p in &k.paths {
                    layer::components(p).with_context(|| format!("image {n}, layer {}", l.name))?;
                    if !paths.insert(p.as_str()) {
                        bail!("image {n}: {p} is listed twice");
                    }
                }
            }
        }
        let entry = self.entrypoint.first().with_context(|| format!("image {n}: empty entrypoint"))?;
        if !paths.contains(entry.as_str()) {
            bail!("image {n}: entrypoint {entry} is not a file of the image");
        }
        Ok(())
    }

    /// The image's files for one platform, given the binaries the build produced for it
    /// (name → (path relative to the manifest, sha256)).
    pub fn plan(&self, platform: &str, built: &BTreeMap<String, (String, String)>) -> anyhow::Result<Plan> {
        let mut plan = Plan { layers: vec![], skipped: vec![], entrypoint_missing: None };
        for l in &self.layers {
            let mut files = Vec::new();
            for f in &l.files {
                let source = match (&f.binary, &f.source) {
                    (Some(b), _) => match built.get(b) {
                        Some((path, sha256)) => {
                            Source::Binary { name: b.clone(), path: path.clone(), sha256: sha256.clone() }
                        }
                        None if f.optional => {
                            if !plan.skipped.contains(b) {
                                plan.skipped.push(b.clone());
                            }
                            if self.entrypoint.first() == Some(&f.path) {
                                plan.entrypoint_missing = Some(f.path.clone());
                            }
                            continue;
                        }
                        None => bail!(
                            "image {}: binary {b} (for {}) is not in the build manifest for {platform}; \
                             build it (cargo xtask build --release) or mark it optional in images/{}.toml",
                            self.name,
                            f.path,
                            self.name
                        ),
                    },
                    (None, Some(s)) => Source::Repo(s.clone()),
                    (None, None) => {
                        let d = f.debian.as_deref().expect("checked when parsed");
                        let (package, path) = debian_source(d)?;
                        Source::Debian { package: package.into(), path: path.into() }
                    }
                };
                files.push(PlannedFile { path: f.path.clone(), mode: f.mode, source });
            }
            if !files.is_empty() || !l.links.is_empty() {
                let dirs = l.dirs.iter().map(|d| (d.path.clone(), d.mode)).collect();
                let links =
                    l.links.iter().flat_map(|k| k.paths.iter().map(|p| (p.clone(), k.target.clone()))).collect();
                plan.layers.push(PlannedLayer { name: l.name.clone(), dirs, files, links });
            }
        }
        if plan.layers.is_empty() {
            bail!("image {}: nothing to put in it for {platform}", self.name);
        }
        Ok(plan)
    }
}

/// `package:path` of a `debian =` source, checked: a Debian package name and a relative path
/// inside the package without `..`.
pub fn debian_source(d: &str) -> anyhow::Result<(&str, &str)> {
    let (package, path) = d.split_once(':').with_context(|| format!("debian source {d:?} is not package:path"))?;
    let pkg_ok = package.len() >= 2
        && package.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && package.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
    if !pkg_ok {
        bail!("debian source {d:?}: {package:?} is not a Debian package name");
    }
    if path.is_empty() || path.starts_with('/') || path.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        bail!("debian source {d:?}: {path:?} must be a relative path inside the package");
    }
    Ok((package, path))
}

impl ImageSpec {
    /// This image with `v`'s layers on top: name `<name>-<suffix>`, the variant's labels and
    /// licence added. Checked like a description of its own.
    pub fn with_variant(&self, v: &VariantSpec) -> anyhow::Result<ImageSpec> {
        let mut s = self.clone();
        s.name = format!("{}-{}", self.name, v.suffix);
        s.title = format!("{} ({})", self.title, v.suffix);
        s.description = format!("{}{}", self.description, v.description);
        s.licenses = format!("{} AND {}", self.licenses, v.licenses);
        s.labels.extend(v.labels.clone());
        s.layers.extend(v.layers.iter().cloned());
        s.check().with_context(|| format!("variant {} of image {}", v.suffix, self.name))?;
        Ok(s)
    }
}

impl VariantSpec {
    pub fn parse(text: &str) -> anyhow::Result<VariantSpec> {
        let v: VariantSpec = toml::from_str(text)?;
        if v.suffix.is_empty() || !v.suffix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
            bail!("variant suffix {:?} must be lower-case letters and digits", v.suffix);
        }
        if v.licenses.trim().is_empty() {
            bail!("variant {}: licenses must name an SPDX expression", v.suffix);
        }
        Ok(v)
    }
}

/// Every `*.toml` of `dir/variants` (none when the directory is absent), sorted by suffix; each
/// file's stem must be its suffix.
pub fn load_variants(dir: &Path) -> anyhow::Result<Vec<VariantSpec>> {
    let dir = dir.join("variants");
    if !dir.is_dir() {
        return Ok(vec![]);
    }
    let mut out = load_tomls(&dir, VariantSpec::parse, |v| &v.suffix)?;
    out.sort_by(|a, b| a.suffix.cmp(&b.suffix));
    Ok(out)
}

/// Every `*.toml` of the images directory, sorted by name; each file's stem must be its name.
pub fn load_dir(dir: &Path) -> anyhow::Result<Vec<ImageSpec>> {
    let mut specs = load_tomls(dir, ImageSpec::parse, |s| &s.name)?;
    specs.sort_by(|a, b| a.name.cmp(&b.name));
    if specs.is_empty() {
        bail!("no image descriptions (*.toml) in {}", dir.display());
    }
    Ok(specs)
}

/// Each `*.toml` of `dir` parsed by `parse`; its stem must equal what `key` says the file names.
fn load_tomls<T>(dir: &Path, parse: fn(&str) -> anyhow::Result<T>, key: fn(&T) -> &String) -> anyhow::Result<Vec<T>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = e?.path();
        if path.extension().and_then(|x| x.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let item = parse(&text).with_context(|| format!("in {}", path.display()))?;
        if path.file_stem().and_then(|s| s.to_str()) != Some(key(&item).as_str()) {
            bail!("{}: {:?} must equal the file name", path.display(), key(&item));
        }
        out.push(item);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
name = "demo"
title = "demo"
description = "a test image"
licenses = "Apache-2.0"
entrypoint = ["/daemon"]

[[layer]]
name = "notice"
[[layer.file]]
source = "images/LICENSE"
path = "/LICENSE"
mode = 0o644

[[layer]]
name = "binaries"
[[layer.dir]]
path = "/tmp"
mode = 0o1777
[[layer.file]]
binary = "passthru"
path = "/bin/passthru"
mode = 0o755
[[layer.file]]
binary = "daemon"
path = "/daemon"
mode = 0o755
optional = true
"#;

    fn built(names: &[&str]) -> BTreeMap<String, (String, String)> {
        names.iter().map(|n| (n.to_string(), (format!("linux-amd64/{n}"), "00".into()))).collect()
    }

    #[test]
    fn the_shipped_descriptions_parse_and_put_passthru_where_upstream_has_it() {
        let specs = load_dir(&crate::project::root().join("images")).unwrap();
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["thick", "thin"]);
        let all = ["passthru", "multus", "multus-daemon", "multus-shim", "install_multus", "thin_entrypoint"];
        for s in &specs {
            let plan = s.plan("linux/amd64", &built(&all)).unwrap();
            let files: Vec<&PlannedFile> = plan.layers.iter().flat_map(|l| &l.files).collect();
            assert!(files.iter().any(|f| f.path == "/usr/src/multus-cni/bin/passthru" && f.mode == 0o755), "{s:?}");
            assert!(files.iter().any(|f| f.path == "/usr/src/multus-cni/bin/multus" && f.mode == 0o755), "{s:?}");
            let without_multus: Vec<&str> = all.iter().copied().filter(|n| *n != "multus").collect();
            assert!(s.plan("linux/amd64", &built(&without_multus)).is_err(), "every binary is required");
            assert!(files.iter().any(|f| f.path == "/usr/src/multus-cni/LICENSE"));
        }
        let thick = &specs[0];
        assert_eq!(thick.entrypoint, ["/usr/src/multus-cni/bin/multus-daemon"]);
        assert_eq!(specs[1].entrypoint, ["/thin_entrypoint"]);
    }

    #[test]
    fn the_debug_variant_adds_busybox_as_sh_to_every_image() {
        let dir = crate::project::root().join("images");
        let variants = load_variants(&dir).unwrap();
        assert_eq!(variants.iter().map(|v| v.suffix.as_str()).collect::<Vec<_>>(), ["debug"]);
        let all = ["passthru", "multus", "multus-daemon", "multus-shim", "install_multus", "thin_entrypoint"];
        for base in load_dir(&dir).unwrap() {
            let debug = base.with_variant(&variants[0]).unwrap();
            assert_eq!(debug.name, format!("{}-debug", base.name));
            assert_eq!(debug.licenses, "Apache-2.0 AND GPL-2.0-only");
            assert_eq!(debug.entrypoint, base.entrypoint, "the variant starts the same way");
            let plan = debug.plan("linux/arm/v7", &built(&all)).unwrap();
            let shell = plan.layers.last().unwrap();
            assert_eq!(
                shell.files[0],
                PlannedFile {
                    path: "/bin/busybox".into(),
                    mode: 0o755,
                    source: Source::Debian { package: "busybox-static".into(), path: "bin/busybox".into() }
                }
            );
            for applet in ["/bin/sh", "/bin/cp", "/bin/ls"] {
                assert!(shell.links.contains(&(applet.into(), "busybox".into())), "{applet}");
            }
            // The base image itself has no shell (its links are the multi-call tools').
            let base_plan = base.plan("linux/amd64", &built(&all)).unwrap();
            assert!(
                base_plan.layers.iter().all(|l| l.links.iter().all(|(p, _)| !p.starts_with("/bin/"))
                    && l.files.iter().all(|f| f.path != "/bin/sh"))
            );
            let tools: Vec<&str> =
                base_plan.layers.iter().flat_map(|l| l.links.iter().map(|(p, _)| p.as_str())).collect();
            assert!(
                tools.contains(&"/cert-approver") && tools.contains(&"/usr/src/multus-cni/bin/kubeconfig_generator")
            );
        }
    }

    #[test]
    fn debian_sources_and_links_are_checked() {
        assert_eq!(debian_source("busybox-static:bin/busybox").unwrap(), ("busybox-static", "bin/busybox"));
        for bad in
            ["busybox", "Busybox:bin/x", "b:bin/x", "busybox:/bin/busybox", "busybox:../etc/passwd", "busybox:bin//x"]
        {
            assert!(debian_source(bad).is_err(), "{bad}");
        }
        let with = |extra: &str| ImageSpec::parse(&format!("{SPEC}{extra}"));
        let link = "[[layer.link]]\ntarget = \"passthru\"\npaths = [\"/bin/pt\"]\n";
        assert!(with(link).is_ok());
        assert!(with(&link.replace("/bin/pt", "/bin/passthru")).unwrap_err().to_string().contains("listed twice"));
        assert!(with(&link.replace("\"passthru\"", "\"\"")).unwrap_err().to_string().contains("target of 1 to 100"));
        let deb = "[[layer.file]]\ndebian = \"busybox-static:bin/busybox\"\npath = \"/bin/busybox\"\nmode = 0o755\n";
        assert!(with(deb).is_ok());
        assert!(
            with(&deb.replace("mode", "optional = true\nmode")).unwrap_err().to_string().contains("cannot be optional")
        );
        let two = deb.replace("debian =", "binary = \"x\"\ndebian =");
        assert!(with(&two).unwrap_err().to_string().contains("exactly one"));
    }

    #[test]
    fn optional_binaries_are_skipped_and_reported() {
        let spec = ImageSpec::parse(SPEC).unwrap();
        let plan = spec.plan("linux/amd64", &built(&["passthru"])).unwrap();
        assert_eq!(plan.skipped, ["daemon"]);
        assert_eq!(plan.entrypoint_missing.as_deref(), Some("/daemon"));
        assert_eq!(plan.layers.len(), 2);
        assert_eq!(plan.layers[1].files.len(), 1);
        let full = spec.plan("linux/amd64", &built(&["passthru", "daemon"])).unwrap();
        assert!(full.skipped.is_empty() && full.entrypoint_missing.is_none());
        assert_eq!(
            full.layers[1].files[1].source,
            Source::Binary { name: "daemon".into(), path: "linux-amd64/daemon".into(), sha256: "00".into() }
        );
    }

    #[test]
    fn a_missing_required_binary_is_an_error_naming_it() {
        let spec = ImageSpec::parse(SPEC).unwrap();
        let err = spec.plan("linux/arm64", &built(&["daemon"])).unwrap_err().to_string();
        assert!(err.contains("image demo: binary passthru") && err.contains("linux/arm64"), "{err}");
    }

    #[test]
    fn bad_descriptions_are_refused() {
        let bad = |from: &str, to: &str| ImageSpec::parse(&SPEC.replacen(from, to, 1)).unwrap_err().to_string();
        assert!(bad("entrypoint = [\"/daemon\"]", "entrypoint = [\"/nope\"]").contains("not a file of the image"));
        assert!(bad("source = \"images/LICENSE\"", "source = \"../x\"").contains("inside the repository"));
        assert!(bad("path = \"/LICENSE\"", "path = \"/bin/passthru\"").contains("listed twice"));
        assert!(bad("name = \"demo\"", "name = \"Demo\"").contains("lower-case"));
        assert!(bad("mode = 0o644", "mode = 0o100644").contains("permission bits"));
        assert!(bad("binary = \"passthru\"", "source = \"a\"\nbinary = \"passthru\"").contains("exactly one"));
        assert!(bad("licenses", "license").contains("unknown field"));
    }
}
