//! The dependency list embedded in every binary, in cargo-auditable's format: zlib-compressed
//! JSON `{"packages":[{name, version, source, kind?, dependencies?, root?}]}` in an ELF section
//! named `.dep-v0`. Trivy, syft and `cargo audit bin` read it; without it a Rust image scans
//! "clean" by mistake.
//!
//! The list is computed from `cargo metadata --filter-platform <triple>` like cargo-auditable's
//! format 0: everything reachable from the root package through normal and build edges (no dev
//! edges); a package reachable only through a build edge is `"kind":"build"`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{Read, Write};

use anyhow::Context;
use cargo_metadata::{DependencyKind, Metadata, PackageId};
use serde::{Deserialize, Serialize};

pub const SECTION: &str = ".dep-v0";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepList {
    pub packages: Vec<DepPackage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepPackage {
    pub name: String,
    pub version: String,
    pub source: String,
    #[serde(default = "runtime", skip_serializing_if = "is_runtime")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<usize>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub root: bool,
}

fn runtime() -> String {
    "runtime".into()
}

fn is_runtime(k: &str) -> bool {
    k == "runtime"
}

fn source_of(pkg: &cargo_metadata::Package) -> String {
    match &pkg.source {
        None => "local".into(),
        Some(s) => {
            let s = s.repr.as_str();
            if s == "registry+https://github.com/rust-lang/crates.io-index" || s == "sparse+https://index.crates.io/" {
                "crates.io".into()
            } else if s.starts_with("git+") {
                "git".into()
            } else {
                "registry".into()
            }
        }
    }
}

/// Walks the resolve graph from `root` over edges whose kind passes `follow`.
fn reachable(meta: &Metadata, root: &PackageId, follow: impl Fn(DependencyKind) -> bool) -> BTreeSet<PackageId> {
    let resolve = meta.resolve.as_ref().expect("metadata with resolve");
    let nodes: BTreeMap<&PackageId, &cargo_metadata::Node> = resolve.nodes.iter().map(|n| (&n.id, n)).collect();
    let mut seen = BTreeSet::from([root.clone()]);
    let mut queue = VecDeque::from([root.clone()]);
    while let Some(id) = queue.pop_front() {
        for dep in &nodes[&id].deps {
            if dep.dep_kinds.iter().any(|k| follow(k.kind)) && seen.insert(dep.pkg.clone()) {
                queue.push_back(dep.pkg.clone());
            }
        }
    }
    seen
}

/// The dependency list of package `root_name` as resolved in `meta`.
pub fn dep_list(meta: &Metadata, root_name: &str) -> anyhow::Result<DepList> {
    let root = meta
        .packages
        .iter()
        .find(|p| p.name.as_str() == root_name && p.source.is_none())
        .with_context(|| format!("no workspace package {root_name:?}"))?;
    let all = reachable(meta, &root.id, |k| matches!(k, DependencyKind::Normal | DependencyKind::Build));
    let runtime_set = reachable(meta, &root.id, |k| k == DependencyKind::Normal);
    let pkgs: BTreeMap<&PackageId, &cargo_metadata::Package> = meta.packages.iter().map(|p| (&p.id, p)).collect();
    let mut ids: Vec<&PackageId> = all.iter().collect();
    let key = |id: &PackageId| {
        let p = pkgs[id];
        (p.name.to_string(), p.version.clone(), source_of(p))
    };
    ids.sort_by_key(|id| key(id));
    let index: BTreeMap<&PackageId, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let resolve = meta.resolve.as_ref().expect("metadata with resolve");
    let nodes: BTreeMap<&PackageId, &cargo_metadata::Node> = resolve.nodes.iter().map(|n| (&n.id, n)).collect();
    let packages = ids
        .iter()
        .map(|id| {
            let p = pkgs[id];
            let mut dependencies: Vec<usize> = nodes[id]
                .deps
                .iter()
                .filter(|d| {
                    d.dep_kinds.iter().any(|k| matches!(k.kind, DependencyKind::Normal | DependencyKind::Build))
                })
                .filter_map(|d| index.get(&d.pkg).copied())
                .collect();
            dependencies.sort_unstable();
            dependencies.dedup();
            DepPackage {
                name: p.name.to_string(),
                version: p.version.to_string(),
                source: source_of(p),
                kind: if runtime_set.contains(*id) { "runtime".into() } else { "build".into() },
                dependencies,
                root: *id == &root.id,
            }
        })
        .collect();
    Ok(DepList { packages })
}

/// `cargo metadata` for one target platform (dependencies of other platforms dropped).
pub fn metadata_for(root: &std::path::Path, triple: &str) -> anyhow::Result<Metadata> {
    cargo_metadata::MetadataCommand::new()
        .current_dir(root)
        .other_options(vec!["--filter-platform".into(), triple.into(), "--locked".into()])
        .exec()
        .with_context(|| format!("cargo metadata --filter-platform {triple}"))
}

/// The section's bytes: compact JSON, zlib at a pinned level (so rebuilds are byte-identical).
pub fn encode(list: &DepList) -> anyhow::Result<Vec<u8>> {
    let json = serde_json::to_vec(list)?;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(7));
    z.write_all(&json)?;
    Ok(z.finish()?)
}

pub fn decode(section: &[u8]) -> anyhow::Result<DepList> {
    let mut json = Vec::new();
    flate2::read::ZlibDecoder::new(section).read_to_end(&mut json).context("inflating .dep-v0")?;
    serde_json::from_slice(&json).context("parsing .dep-v0 JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_package_list_matches_its_lockfile() {
        let meta = metadata_for(&crate::project::root(), "aarch64-unknown-linux-gnu").unwrap();
        let list = dep_list(&meta, "multus").unwrap();
        let roots: Vec<&DepPackage> = list.packages.iter().filter(|p| p.root).collect();
        assert_eq!(roots.len(), 1);
        assert_eq!((roots[0].name.as_str(), roots[0].source.as_str()), ("multus", "local"));
        let names: Vec<&str> = list.packages.iter().map(|p| p.name.as_str()).collect();
        for must in ["serde", "serde_json", "libc", "base64"] {
            assert!(names.contains(&must), "{must} missing from {names:?}");
        }
        // Dev-dependencies and the xtask's own dependencies are not in a node binary.
        for never in ["tempfile", "xshell", "cargo_metadata"] {
            assert!(!names.contains(&never), "{never} must not be listed");
        }
        // Proc-macros are compile-time: format 0 records them as cargo metadata says (runtime edge).
        assert!(list.packages.iter().all(|p| p.dependencies.iter().all(|&i| i < list.packages.len())));
        let mut sorted = list.packages.clone();
        sorted.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
        assert_eq!(sorted, list.packages, "sorted by name and version");
        // Round trip through the section encoding.
        assert_eq!(decode(&encode(&list).unwrap()).unwrap(), list);
    }

    #[test]
    fn optional_fields_are_omitted_as_cargo_auditable_does() {
        let p = DepPackage {
            name: "a".into(),
            version: "1.0.0".into(),
            source: "crates.io".into(),
            kind: "runtime".into(),
            dependencies: vec![],
            root: false,
        };
        assert_eq!(serde_json::to_string(&p).unwrap(), r#"{"name":"a","version":"1.0.0","source":"crates.io"}"#);
        let b = DepPackage { kind: "build".into(), dependencies: vec![0], root: true, ..p };
        assert_eq!(
            serde_json::to_string(&b).unwrap(),
            r#"{"name":"a","version":"1.0.0","source":"crates.io","kind":"build","dependencies":[0],"root":true}"#
        );
    }
}
