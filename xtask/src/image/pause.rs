//! `cargo xtask pause-image`: the sandbox image of the CRI tests (tests/cri), built with the
//! release's own image code so nothing is pulled: `tests/cri/pause.c` compiled static for the
//! build host by gcc, one deterministic layer holding `/pause`, a config whose entrypoint it is,
//! and an oci-archive naming the manifest `localhost/multus-test/pause:1` (both as
//! `org.opencontainers.image.ref.name` and as containerd's `io.containerd.image.name`, which
//! `ctr images import` reads).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use xshell::{Shell, cmd};

use super::layer::{self, Content, Entry};
use super::layout::{self, Layout};
use super::oci::{self, Blob, ImageConfig, RootFs, RuntimeConfig};

/// The reference the tests' containerd runs sandboxes from.
pub const REFERENCE: &str = "localhost/multus-test/pause:1";
/// containerd's annotation for an imported image's name.
const ANN_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// The build host's OCI architecture (the tests run the image natively).
fn host_architecture() -> anyhow::Result<&'static str> {
    Ok(match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => anyhow::bail!("no OCI architecture known for build host {other}"),
    })
}

/// The image as a layout: config, manifest and the layer with `pause` (the program's bytes).
pub fn layout_for(pause: &[u8], architecture: &str) -> anyhow::Result<Layout> {
    let layer = layer::build(&[Entry { path: "/pause".into(), mode: 0o755, content: Content::File(pause) }], 0)?;
    let config = ImageConfig {
        created: oci::rfc3339(0),
        architecture: architecture.into(),
        os: "linux".into(),
        variant: None,
        config: RuntimeConfig { entrypoint: vec!["/pause".into()], ..RuntimeConfig::default() },
        rootfs: RootFs { kind: "layers".into(), diff_ids: vec![layer.diff_id.clone()] },
        history: vec![oci::History {
            created: oci::rfc3339(0),
            created_by: "cargo xtask pause-image".into(),
            comment: None,
        }],
    };
    let config = Blob::json(oci::MT_CONFIG, &config)?;
    let manifest = Blob::json(
        oci::MT_MANIFEST,
        &super::manifest_for(&config.descriptor, std::slice::from_ref(&layer.blob.descriptor), BTreeMap::new()),
    )?;
    let mut top = manifest.descriptor.clone();
    top.annotations.insert(oci::ANN_REF_NAME.into(), REFERENCE.into());
    top.annotations.insert(ANN_CONTAINERD_NAME.into(), REFERENCE.into());
    let blobs =
        [&config, &manifest, &layer.blob].into_iter().map(|b| (b.descriptor.digest.clone(), b.bytes.clone())).collect();
    Ok(Layout { index: super::index_for(&[top], BTreeMap::new()), blobs })
}

/// Compiles the pause program and writes `target/cri/pause.oci.tar`; returns its path.
pub fn build(sh: &Shell, root: &Path) -> anyhow::Result<PathBuf> {
    let dir = root.join("target/cri");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let source = root.join("tests/cri/pause.c");
    let binary = dir.join("pause");
    cmd!(sh, "gcc -static -Os -s -o {binary} {source}").run().with_context(|| {
        format!("compiling {} (gcc and the static libc come from build-essential)", source.display())
    })?;
    let bytes = std::fs::read(&binary).with_context(|| format!("reading {}", binary.display()))?;
    let layout = layout_for(&bytes, host_architecture()?)?;
    let out = dir.join("pause.oci.tar");
    let size = layout::write_archive(&layout, &out, 0)?;
    eprintln!("pause-image: {} ({size} bytes, {REFERENCE})", out.display());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_names_one_manifest_for_containerd_and_holds_pause() {
        let l = layout_for(b"\x7fELF pause", "amd64").unwrap();
        assert_eq!(l.index.manifests.len(), 1);
        let top = &l.index.manifests[0];
        assert_eq!(top.annotations[oci::ANN_REF_NAME], REFERENCE);
        assert_eq!(top.annotations[ANN_CONTAINERD_NAME], REFERENCE);
        let manifest: oci::Manifest = serde_json::from_slice(&l.blobs[&top.digest]).unwrap();
        let config: ImageConfig = serde_json::from_slice(&l.blobs[&manifest.config.digest]).unwrap();
        assert_eq!(config.config.entrypoint, ["/pause"]);
        assert_eq!(config.architecture, "amd64");
        let layer = layout::uncompressed_digest(&l.blobs[&manifest.layers[0].digest]).unwrap();
        assert_eq!(config.rootfs.diff_ids, [layer]);
        assert_eq!(l.blobs.len(), 3);
    }
}
