//! The release's downloadable assets (`target/dist/`), what a GitHub Release carries beside the
//! images: one reproducible `multus-<version>-<os>-<arch>[-<variant>].tar.gz` of the node binaries
//! per platform, the rendered deployment manifests, the SBOMs, `release.json`, and `SHA256SUMS`
//! over all of them (signed by `release` with the release's key: `SHA256SUMS.sig`, keyless also
//! `SHA256SUMS.pem`).
//!
//! Planning the assets and the checksum file are plain functions; `assemble` writes the files
//! (temp + rename each, into a fresh directory).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;
use sha2::Digest as _;

use crate::build;

/// One file of the release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Asset {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// What goes into the directory, before it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A tarball of binaries: (name in the archive, file).
    Tarball { top: String, files: Vec<(String, PathBuf)> },
    /// A file copied as it is.
    Copy(PathBuf),
}

/// The asset names and their sources (pure): one tarball per platform, then the copies.
pub fn plan(
    manifest: &build::Manifest,
    manifest_dir: &Path,
    copies: &[PathBuf],
) -> anyhow::Result<Vec<(String, Source)>> {
    let mut out: Vec<(String, Source)> = Vec::new();
    for t in &manifest.targets {
        let top = format!("multus-{}-{}", manifest.version, t.platform.replace('/', "-"));
        let mut files: Vec<(String, PathBuf)> =
            t.binaries.iter().map(|b| (b.name.clone(), manifest_dir.join(&b.path))).collect();
        files.sort();
        out.push((format!("{top}.tar.gz"), Source::Tarball { top, files }));
    }
    for c in copies {
        let name =
            c.file_name().with_context(|| format!("{}: no file name", c.display()))?.to_string_lossy().to_string();
        out.push((name, Source::Copy(c.clone())));
    }
    let mut names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
    names.sort();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        bail!("two release assets would be named {}", w[0]);
    }
    if names.iter().any(|n| n.starts_with("SHA256SUMS")) {
        bail!("an asset may not be named SHA256SUMS*");
    }
    Ok(out)
}

/// `sha256sum`'s format, sorted by name: `<hex>  <name>` per line.
pub fn sha256sums(assets: &[Asset]) -> String {
    let mut lines: Vec<String> = assets.iter().map(|a| format!("{}  {}\n", a.sha256, a.name)).collect();
    lines.sort_by(|a, b| a[66..].cmp(&b[66..]));
    lines.concat()
}

/// A tar.gz that depends only on its inputs: sorted entries, mode 0755, owner 0, mtime `epoch`,
/// and a gzip header without time or name.
pub fn tarball(top: &str, files: &[(String, PathBuf)], epoch: u64) -> anyhow::Result<Vec<u8>> {
    let gz = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::best());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_mtime(epoch);
    dir.set_size(0);
    dir.set_uid(0);
    dir.set_gid(0);
    dir.set_username("root")?;
    dir.set_groupname("root")?;
    tar.append_data(&mut dir, format!("{top}/"), std::io::empty())?;
    for (name, path) in files {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o755);
        h.set_mtime(epoch);
        h.set_size(bytes.len() as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_username("root")?;
        h.set_groupname("root")?;
        tar.append_data(&mut h, format!("{top}/{name}"), bytes.as_slice())?;
    }
    Ok(tar.into_inner()?.finish()?)
}

/// Writes the planned assets and `SHA256SUMS` into `dir` (emptied first); returns the assets,
/// `SHA256SUMS` last.
pub fn assemble(dir: &Path, planned: &[(String, Source)], epoch: u64) -> anyhow::Result<Vec<Asset>> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut assets = Vec::new();
    for (name, source) in planned {
        let bytes = match source {
            Source::Tarball { top, files } => tarball(top, files, epoch)?,
            Source::Copy(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        };
        crate::report::write_atomic(&dir.join(name), &bytes)?;
        assets.push(Asset { name: name.clone(), size: bytes.len() as u64, sha256: hex(&bytes) });
    }
    let sums = sha256sums(&assets);
    crate::report::write_atomic(&dir.join("SHA256SUMS"), sums.as_bytes())?;
    assets.push(Asset { name: "SHA256SUMS".into(), size: sums.len() as u64, sha256: hex(sums.as_bytes()) });
    Ok(assets)
}

fn hex(bytes: &[u8]) -> String {
    format!("{:x}", sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(dir: &Path) -> build::Manifest {
        std::fs::create_dir_all(dir.join("linux-amd64")).unwrap();
        std::fs::write(dir.join("linux-amd64/multus"), b"\x7fELF multus").unwrap();
        std::fs::write(dir.join("linux-amd64/passthru"), b"\x7fELF passthru").unwrap();
        serde_json::from_value(serde_json::json!({
            "version": "1.2.3", "commit": "c", "source_date_epoch": 1_700_000_000u64, "profile": "release",
            "targets": [{"arch": "amd64", "platform": "linux/amd64", "triple": "x86_64-unknown-linux-gnu",
                "toolchain": "rustup 1.95.0", "binaries": [
                    {"name": "passthru", "path": "linux-amd64/passthru", "size": 13, "sha256": "x"},
                    {"name": "multus", "path": "linux-amd64/multus", "size": 11, "sha256": "y"}]}]
        }))
        .unwrap()
    }

    #[test]
    fn assets_are_reproducible_and_summed_like_sha256sum() {
        let t = tempfile::tempdir().unwrap();
        let m = manifest(&t.path().join("build"));
        std::fs::write(t.path().join("release.json"), "{}\n").unwrap();
        let planned = plan(&m, &t.path().join("build"), &[t.path().join("release.json")]).unwrap();
        assert_eq!(planned[0].0, "multus-1.2.3-linux-amd64.tar.gz");
        let a = assemble(&t.path().join("dist"), &planned, m.source_date_epoch).unwrap();
        let b = assemble(&t.path().join("dist2"), &planned, m.source_date_epoch).unwrap();
        assert_eq!(a, b, "the same inputs give the same bytes");
        let names: Vec<&str> = a.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["multus-1.2.3-linux-amd64.tar.gz", "release.json", "SHA256SUMS"]);
        // sha256sum itself accepts the file.
        let ok = std::process::Command::new("sha256sum")
            .args(["--check", "--strict", "SHA256SUMS"])
            .current_dir(t.path().join("dist"))
            .output()
            .unwrap();
        assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
        // tar lists the binaries under one top directory, sorted, executable.
        let list = std::process::Command::new("tar")
            .args(["-tvzf", "multus-1.2.3-linux-amd64.tar.gz"])
            .current_dir(t.path().join("dist"))
            .output()
            .unwrap();
        let list = String::from_utf8_lossy(&list.stdout);
        let entries: Vec<&str> = list.lines().map(|l| l.split_whitespace().last().unwrap()).collect();
        assert_eq!(
            entries,
            ["multus-1.2.3-linux-amd64/", "multus-1.2.3-linux-amd64/multus", "multus-1.2.3-linux-amd64/passthru"]
        );
        assert!(list.lines().nth(1).unwrap().starts_with("-rwxr-xr-x root/root"), "{list}");
        // Clashing names are refused.
        assert!(plan(&m, t.path(), &[t.path().join("a/x.yml"), t.path().join("b/x.yml")]).is_err());
    }
}
