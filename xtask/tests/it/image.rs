//! `cargo xtask image`, judged by tools that are not ours: `umoci unpack` of every platform image
//! (it checks diff_ids and sizes), `skopeo inspect` of the layout and of the oci-archive, and
//! podman + runc running the image's binary — amd64 natively, arm64 and arm/v7 through qemu binfmt.
//! The run test starts each image with its own entrypoint (`multus-daemon --version` in the thick
//! image, `thin_entrypoint --version` in the thin one).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use crate::root;
use crate::support::{self, Binfmt, Tmp, build_manifest, layout, ref_of, refs, run, sha256};

/// (artifact slug, OCI architecture, variant), in the build manifest's order.
const PLATFORMS: [(&str, &str, Option<&str>); 3] =
    [("linux-amd64", "amd64", None), ("linux-arm64", "arm64", None), ("linux-arm-v7", "arm", Some("v7"))];

/// `umoci unpack` of one ref into a fresh bundle (its temp dir, and the bundle's path in it).
fn umoci_unpack(layout: &Path, r: &str) -> (Tmp, std::path::PathBuf) {
    let b = Tmp::new("bundle");
    let bundle = b.join("bundle");
    let (ok, _, err) =
        run("umoci", &["unpack", "--image", &format!("{}:{r}", layout.display()), bundle.to_str().unwrap()], &[]);
    assert!(ok, "umoci unpack {r}: {err}");
    (b, bundle)
}

fn skopeo_inspect(args: &[&str]) -> Value {
    let (ok, out, err) = run("skopeo", &[&["inspect"], args].concat(), &[]);
    assert!(ok, "skopeo inspect {args:?}: {err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn images_are_reproducible_unpack_with_umoci_and_carry_the_right_architecture() {
    let layout = layout();
    let again = Tmp::new("image-again");
    let out = support::image_into(&again.0);
    // `image --json` names every index and platform manifest with the digest index.json holds.
    let images = out["images"].as_array().unwrap();
    assert_eq!(images.len(), 4, "{out}");
    for img in images {
        for tag in img["tags"].as_array().unwrap() {
            assert_eq!(refs(layout)[tag.as_str().unwrap()]["digest"], img["digest"], "{tag}");
        }
        let platforms = img["platforms"].as_array().unwrap();
        assert_eq!(platforms.len(), 3, "{img}");
        for p in platforms {
            assert_eq!(refs(layout)[p["tag"].as_str().unwrap()]["digest"], p["digest"], "{p}");
        }
    }
    // The same inputs give the same bytes: index.json (so every digest) and the archive.
    let dir = layout.parent().unwrap();
    assert_eq!(
        std::fs::read(layout.join("index.json")).unwrap(),
        std::fs::read(again.join("layout/index.json")).unwrap()
    );
    assert_eq!(
        sha256(&std::fs::read(dir.join("oci-archive.tar")).unwrap()),
        sha256(&std::fs::read(again.join("oci-archive.tar")).unwrap())
    );

    let build = build_manifest();
    let commit = build["commit"].as_str().unwrap();
    let all = refs(layout);
    assert_eq!(
        all.len(),
        16,
        "thick, thin and their -debug variants: one index and three platforms each: {:?}",
        all.keys()
    );
    let license = std::fs::read(root().join("images/LICENSE")).unwrap();
    for image in ["thick", "thin"] {
        let index_ref = ref_of(layout, image, None);
        let index_desc = &all[&index_ref];
        assert_eq!(index_desc["mediaType"], "application/vnd.oci.image.index.v1+json");
        let raw = run("skopeo", &["inspect", "--raw", &format!("oci:{}:{index_ref}", layout.display())], &[]).1;
        assert_eq!(sha256(raw.as_bytes()), index_desc["digest"].as_str().unwrap());
        let index: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(index["annotations"]["org.opencontainers.image.revision"], commit);
        assert_eq!(index["annotations"]["org.opencontainers.image.source"], "https://github.com/multus-rs/multus-rs");
        assert_eq!(index["annotations"]["org.opencontainers.image.licenses"], "Apache-2.0");

        for (i, (slug, arch, variant)) in PLATFORMS.iter().enumerate() {
            let r = ref_of(layout, image, Some(slug));
            // skopeo: the per-platform ref, the index ref with an arch override, and the archive.
            let info = skopeo_inspect(&[&format!("oci:{}:{r}", layout.display())]);
            assert_eq!((info["Architecture"].as_str(), info["Os"].as_str()), (Some(*arch), Some("linux")), "{r}");
            // (skopeo 1.9 prints no Variant; the config has it)
            let config = skopeo_inspect(&["--config", &format!("oci:{}:{r}", layout.display())]);
            assert_eq!(config["variant"].as_str(), *variant, "{r}");
            assert_eq!(info["Labels"]["org.opencontainers.image.revision"], commit);
            let mut over = vec!["--override-arch", arch];
            if let Some(v) = variant {
                over.extend(["--override-variant", v]);
            }
            let index_arg = format!("oci:{}:{index_ref}", layout.display());
            let via_index = skopeo_inspect(&[&over[..], &[index_arg.as_str()]].concat());
            // (skopeo reports the index's digest here; the resolved image shows in its fields)
            assert_eq!(via_index["Architecture"], *arch, "{image} index → {arch}");
            assert_eq!(via_index["Layers"], info["Layers"], "{image} index → {arch}");
            let archived = skopeo_inspect(&[&format!("oci-archive:{}:{r}", dir.join("oci-archive.tar").display())]);
            assert_eq!(archived["Digest"], info["Digest"]);

            // umoci: unpack (verifies every layer against diff_ids and sizes), then look inside.
            let (_b, bundle) = umoci_unpack(layout, &r);
            let bin = bundle.join("rootfs/usr/src/multus-cni/bin/passthru");
            let want = &build["targets"][i]["binaries"][0];
            assert_eq!(want["name"], "passthru");
            assert_eq!(sha256(&std::fs::read(&bin).unwrap()), format!("sha256:{}", want["sha256"].as_str().unwrap()));
            assert_eq!(std::fs::metadata(&bin).unwrap().permissions().mode() & 0o7777, 0o755);
            assert_eq!(std::fs::read(bundle.join("rootfs/usr/src/multus-cni/LICENSE")).unwrap(), license);
            assert_eq!(std::fs::metadata(bundle.join("rootfs/tmp")).unwrap().permissions().mode() & 0o7777, 0o1777);
            let spec: Value = serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
            let entry = if image == "thick" { "/usr/src/multus-cni/bin/multus-daemon" } else { "/thin_entrypoint" };
            assert_eq!(spec["process"]["args"][0], entry);
            let mtime = std::fs::metadata(&bin).unwrap().modified().unwrap();
            let epoch = mtime.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
            assert_eq!(epoch, build["source_date_epoch"].as_u64().unwrap(), "file mtimes are SOURCE_DATE_EPOCH");
            assert!(std::fs::symlink_metadata(bundle.join("rootfs/bin/sh")).is_err(), "{r} has no shell");
        }
    }

    // The -debug variants: the same files plus Debian's busybox (the package's own bytes for that
    // architecture) as /bin/sh, its exact version in a config label, its dpkg status for scanners.
    let debian = root().join("target/debian-packages");
    for image in ["thick-debug", "thin-debug"] {
        for (slug, arch, _) in PLATFORMS {
            let r = ref_of(layout, image, Some(slug));
            let (_b, bundle) = umoci_unpack(layout, &r);
            let rootfs = bundle.join("rootfs");
            for applet in ["sh", "cp", "ls"] {
                assert_eq!(std::fs::read_link(rootfs.join("bin").join(applet)).unwrap(), Path::new("busybox"), "{r}");
            }
            let deb_arch = if arch == "arm" { "armhf" } else { arch };
            let unpacked = debian.join(deb_arch);
            let want = std::fs::read(unpacked.join("busybox-static/bin/busybox")).unwrap();
            assert_eq!(std::fs::read(rootfs.join("bin/busybox")).unwrap(), want, "{r}");
            assert!(rootfs.join("usr/share/doc/busybox-static/copyright").is_file(), "{r}: the licence");
            let status = std::fs::read_to_string(rootfs.join("var/lib/dpkg/status.d/busybox-static")).unwrap();
            assert!(status.contains(&format!("Architecture: {deb_arch}\n")), "{r}: {status}");
            let version = std::fs::read_to_string(unpacked.join("busybox-static.version")).unwrap();
            let info = skopeo_inspect(&[&format!("oci:{}:{r}", layout.display())]);
            assert_eq!(info["Labels"]["io.github.multus-rs.debian-package.busybox-static"], version.trim(), "{r}");
            assert_eq!(info["Labels"]["org.opencontainers.image.licenses"], "Apache-2.0 AND GPL-2.0-only", "{r}");
            let spec: Value = serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
            let entry =
                if image == "thick-debug" { "/usr/src/multus-cni/bin/multus-daemon" } else { "/thin_entrypoint" };
            assert_eq!(spec["process"]["args"][0], entry, "the variant starts like its image");
        }
    }
}

/// A private podman (its own storage under a temp dir, runc, vfs) that runs images of the layout.
struct Podman {
    tmp: Tmp,
    layout: std::path::PathBuf,
}

impl Podman {
    fn new(name: &str) -> Podman {
        let tmp = Tmp::short(name);
        // Debian's podman needs runc and lower ulimits on this kind of machine (see test-infra.md §4.1).
        std::fs::write(
            tmp.join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
             [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
        )
        .unwrap();
        // podman turns an `oci:` path into an image name, which must be lower case; the clone's own
        // path need not be (`mktemp -d` gives `tmp.AbC123`), so the layout is reached through a link.
        let linked = tmp.join("layout");
        std::os::unix::fs::symlink(layout(), &linked).unwrap();
        Podman { tmp, layout: linked }
    }

    /// `podman run --rm --network=none [run_args] oci:<layout>:<ref of image/slug> [args]`.
    fn run(&self, image: &str, slug: &str, run_args: &[&str], args: &[&str]) -> (bool, String, String) {
        let t = &self.tmp;
        let image_ref = format!("oci:{}:{}", self.layout.display(), ref_of(&self.layout, image, Some(slug)));
        let (root, runroot, tmpdir) = (t.s("root"), t.s("runroot"), t.s("tmp"));
        let mut all = vec![
            "--root",
            &root,
            "--runroot",
            &runroot,
            "--tmpdir",
            &tmpdir,
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            "run",
            "--rm",
            "--network=none",
        ];
        all.extend(run_args);
        all.push(&image_ref);
        all.extend(args);
        let conf = t.s("containers.conf");
        run("podman", &all, &[("CONTAINERS_CONF", &conf)])
    }
}

#[test]
fn the_binary_runs_from_the_image_under_podman_on_every_tested_platform() {
    let build = build_manifest();
    let want = |bin: &str| {
        format!(
            "{bin}: multus-cni version:{}, commit:{}",
            build["version"].as_str().unwrap(),
            build["commit"].as_str().unwrap()
        )
    };
    let podman = Podman::new("podman");
    // Two guards, dropped in reverse order (the first one found binfmt_misc as it was).
    let _arm64 = Binfmt::enable("qemu-aarch64");
    let _arm = Binfmt::enable("qemu-arm");
    for image in ["thick", "thin"] {
        for (slug, arch, _) in PLATFORMS {
            let (ok, out, err) = podman.run(image, slug, &[], &["--version"]);
            assert!(ok, "podman run {image} {arch}: {err}");
            let entrypoint = if image == "thick" { "multus-daemon" } else { "thin_entrypoint" };
            assert!(out.contains(&want(entrypoint)), "{image} {arch}: {out:?} {err}");
            // Upstream's per-node certificate tools at upstream's paths: links that run as themselves.
            for (path, tool) in [
                ("/cert-approver", "cert-approver"),
                ("/usr/src/multus-cni/bin/cert-approver", "cert-approver"),
                ("/usr/src/multus-cni/bin/kubeconfig_generator", "kubeconfig_generator"),
            ] {
                let (ok, out, err) = podman.run(image, slug, &["--entrypoint", path], &["-version"]);
                assert!(ok && out.contains(&want(tool)), "{image} {arch} {path}: {out:?} {err}");
            }
        }
    }
}

/// Upstream 4.2.1's thick DaemonSet with only the image swapped: its init container runs
/// `sh -c "cp … && cp …"` (upstream's thick image is debian:stable-slim). In our `-debug` thick
/// image that leaves both binaries, byte for byte, in the host directory; the default image has
/// no shell, so there the same container fails.
#[test]
fn upstreams_thick_init_container_runs_in_the_debug_image() {
    const INIT: &str = "cp /usr/src/multus-cni/bin/multus-shim /host/opt/cni/bin/multus-shim && \
                        cp /usr/src/multus-cni/bin/passthru /host/opt/cni/bin/passthru";
    let build = build_manifest();
    let podman = Podman::new("podman-init");
    let _arm64 = Binfmt::enable("qemu-aarch64");
    for (i, (slug, arch)) in [("linux-amd64", "amd64"), ("linux-arm64", "arm64")].into_iter().enumerate() {
        let host = Tmp::new("host-cni-bin");
        let volume = format!("{}:/host/opt/cni/bin", host.0.display());
        let run_args = ["--entrypoint", "sh", "-v", volume.as_str()];
        let (ok, _, err) = podman.run("thick-debug", slug, &run_args, &["-c", INIT]);
        assert!(ok, "the init container in thick-debug on {arch}: {err}");
        let target = &build["targets"][i];
        assert_eq!(target["platform"], format!("linux/{arch}"));
        for bin in ["multus-shim", "passthru"] {
            let want = target["binaries"].as_array().unwrap().iter().find(|b| b["name"] == bin).unwrap();
            let got = std::fs::read(host.join(bin)).unwrap_or_else(|e| panic!("{bin} on {arch}: {e}"));
            assert_eq!(sha256(&got), format!("sha256:{}", want["sha256"].as_str().unwrap()), "{bin} on {arch}");
        }
        let (ok, _, err) = podman.run("thick", slug, &run_args, &["-c", INIT]);
        assert!(!ok, "the default thick image has no shell ({arch})");
        assert!(
            err.contains("executable file not found") || err.contains("no such file or directory"),
            "{arch}: {err}"
        );
    }
}

#[test]
fn a_required_binary_that_was_not_built_is_an_error_naming_it() {
    let tmp = Tmp::new("required");
    // The shared build's manifest without multus-daemon, beside it (binary paths are relative).
    let built = support::built();
    let mut m: Value = serde_json::from_slice(&std::fs::read(built.join("manifest.json")).unwrap()).unwrap();
    for t in m["targets"].as_array_mut().unwrap() {
        t["binaries"].as_array_mut().unwrap().retain(|b| b["name"] != "multus-daemon");
    }
    let manifest = built.join("manifest-without-daemon.json");
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    let (ok, out) = support::xtask_result(
        &[
            "image",
            "--manifest",
            manifest.to_str().unwrap(),
            "--images-dir",
            &root().join("images").display().to_string(),
            "--out-dir",
            &tmp.s("out"),
        ],
        &[],
    );
    let _ = std::fs::remove_file(&manifest);
    assert!(!ok, "{out}");
    assert!(out.contains("image thick: binary multus-daemon") && out.contains("linux/amd64"), "{out}");
    assert!(!Path::new(&tmp.s("out/layout")).exists(), "nothing is written");
}
