//! Facts about this repository that every command needs: where its root is and which binaries
//! the node package ships (from `cargo metadata`).

use std::path::{Path, PathBuf};

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is inside the workspace").to_path_buf()
}

/// The binaries of the root package (what ships to nodes), from `cargo metadata`.
pub fn node_binaries() -> anyhow::Result<Vec<String>> {
    let meta = cargo_metadata::MetadataCommand::new().current_dir(root()).no_deps().exec()?;
    let pkg = meta
        .packages
        .iter()
        .find(|p| p.name.as_str() == "multus")
        .ok_or_else(|| anyhow::anyhow!("no multus package"))?;
    let mut bins: Vec<String> =
        pkg.targets.iter().filter(|t| t.kind.iter().any(|k| k.to_string() == "bin")).map(|t| t.name.clone()).collect();
    bins.sort();
    Ok(bins)
}
