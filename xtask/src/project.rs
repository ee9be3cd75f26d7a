//! Facts about this repository that every command needs: where its root is, the node package's
//! version and which binaries it ships (from `cargo metadata` of the root workspace; xtask is a
//! workspace of its own, so its own package facts say nothing about the product).

use std::path::{Path, PathBuf};

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is inside the workspace").to_path_buf()
}

/// The root workspace's `multus` package (`cargo metadata --no-deps`).
fn node_package() -> anyhow::Result<cargo_metadata::Package> {
    let meta = cargo_metadata::MetadataCommand::new()
        .manifest_path(root().join("Cargo.toml"))
        .current_dir(root())
        .no_deps()
        .exec()?;
    meta.packages
        .into_iter()
        .find(|p| p.name.as_str() == "multus")
        .ok_or_else(|| anyhow::anyhow!("no multus package in {}", root().join("Cargo.toml").display()))
}

/// The node package's version (Cargo.toml), the base of every release version.
pub fn node_version() -> anyhow::Result<String> {
    Ok(node_package()?.version.to_string())
}

/// The binaries of the root package (what ships to nodes), from `cargo metadata`.
/// The libc-free shim, built from its own workspace (`shim/`) beside the node package.
pub const SHIM_BIN: &str = "multus-shim";

/// Every binary a node runs: the node package's and the shim.
pub fn node_binaries() -> anyhow::Result<Vec<String>> {
    let pkg = node_package()?;
    let mut bins: Vec<String> =
        pkg.targets.iter().filter(|t| t.kind.iter().any(|k| k.to_string() == "bin")).map(|t| t.name.clone()).collect();
    bins.push(SHIM_BIN.to_string());
    bins.sort();
    Ok(bins)
}
