//! `cargo xtask build` for amd64 (rustup), arm64 and arm/v7 (Debian's rustc 1.85 — the MSRV proof),
//! judged by tools that are not ours: `file` for the ELF type, qemu-user running the binary,
//! `rust-audit-info` (from the cargo-auditable project) reading the embedded dependency list, and
//! `cargo metadata` for what that list must contain, `readelf` for the code layout. Built twice in
//! different directories to prove the output is byte-identical and free of host paths: the first
//! build is the one the image tests share (`support::built`, made once per run), the second is cold
//! in a fresh directory.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use sha2::Digest;

use crate::{root, sh};

/// A cold build in a fresh directory (the second build of the reproducibility check): amd64
/// (rustup) and arm64 (Debian's rustc 1.85 and cross gcc), `passthru` and `multus` — the whole
/// dependency graph again with both toolchains, two binaries each to compare.
fn build_into(tag: &str) -> (std::path::PathBuf, Value) {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("xbuild-{tag}"));
    let _ = std::fs::remove_dir_all(&base);
    let out = crate::support::build_into(&base, &["amd64", "arm64"], &["passthru", "multus"]);
    let manifest: Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    (base, manifest)
}

/// The (name, version) pairs cargo metadata resolves for the package on a platform, dev edges excluded.
fn expected_crates(triple: &str) -> BTreeSet<(String, String)> {
    let meta: Value = serde_json::from_str(&sh(
        "cargo",
        &["metadata", "--format-version", "1", "--locked", "--filter-platform", triple],
    ))
    .unwrap();
    let pkgs = meta["packages"].as_array().unwrap();
    let nodes = meta["resolve"]["nodes"].as_array().unwrap();
    let root_id = pkgs.iter().find(|p| p["name"] == "multus").unwrap()["id"].as_str().unwrap().to_string();
    let mut seen = BTreeSet::from([root_id.clone()]);
    let mut todo = vec![root_id];
    while let Some(id) = todo.pop() {
        let node = nodes.iter().find(|n| n["id"] == id.as_str()).unwrap();
        for d in node["deps"].as_array().unwrap() {
            let non_dev = d["dep_kinds"].as_array().unwrap().iter().any(|k| k["kind"] != "dev");
            let pkg = d["pkg"].as_str().unwrap().to_string();
            if non_dev && seen.insert(pkg.clone()) {
                todo.push(pkg);
            }
        }
    }
    pkgs.iter()
        .filter(|p| seen.contains(p["id"].as_str().unwrap()))
        .map(|p| (p["name"].as_str().unwrap().to_string(), p["version"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn cross_build_is_verified_auditable_and_reproducible() {
    let first = crate::support::built().parent().unwrap().to_path_buf();
    let manifest = crate::support::build_manifest();
    let commit = sh("git", &["rev-parse", "HEAD"]).trim().to_string();
    assert_eq!(manifest["commit"], commit.as_str());
    assert_eq!(manifest["profile"], "release");
    let targets = manifest["targets"].as_array().unwrap();
    let plats: Vec<&str> = targets.iter().map(|t| t["platform"].as_str().unwrap()).collect();
    assert_eq!(plats, ["linux/amd64", "linux/arm64", "linux/arm/v7"]);
    for t in &targets[1..] {
        assert!(
            t["toolchain"].as_str().unwrap().starts_with("debian 1.85."),
            "{} is built by the MSRV toolchain",
            t["arch"]
        );
    }

    let targets_toml: toml::Value =
        toml::from_str(&std::fs::read_to_string(root().join("cross/targets.toml")).unwrap()).unwrap();
    let pins: std::collections::BTreeMap<&str, &str> = targets_toml["target"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["arch"].as_str().unwrap(), t["rustc"].as_str().unwrap()))
        .collect();
    let out = first.join("out");
    // `build --json` listed every binary of the manifest with the same sha256 and compiler.
    let printed: Value = serde_json::from_slice(&std::fs::read(out.join("build.json")).unwrap()).unwrap();
    let listed = printed["binaries"].as_array().unwrap();
    let in_manifest: usize = targets.iter().map(|t| t["binaries"].as_array().unwrap().len()).sum();
    assert_eq!(listed.len(), in_manifest);
    for b in listed {
        let bytes = std::fs::read(out.join(b["path"].as_str().unwrap())).unwrap();
        assert_eq!(b["sha256"], format!("{:x}", sha2::Sha256::digest(&bytes)).as_str(), "{b}");
        let t = targets.iter().find(|t| t["platform"] == b["platform"]).unwrap();
        assert_eq!(b["toolchain"], t["toolchain"]);
    }
    for (t, file_says, triple, qemu) in [
        (&targets[0], "x86-64", "x86_64-unknown-linux-gnu", None),
        (&targets[1], "ARM aarch64", "aarch64-unknown-linux-gnu", Some("qemu-aarch64-static")),
        (&targets[2], "32-bit LSB executable, ARM, EABI5", "armv7-unknown-linux-gnueabihf", Some("qemu-arm-static")),
    ] {
        let b = &t["binaries"][0];
        let path = out.join(b["path"].as_str().unwrap());
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(b["size"], bytes.len() as u64);
        assert_eq!(b["sha256"], format!("{:x}", sha2::Sha256::digest(&bytes)).as_str());
        let file = sh("file", &["-b", path.to_str().unwrap()]);
        assert!(file.contains(file_says) && file.contains("static"), "{file}");

        let version = match qemu {
            None => sh(path.to_str().unwrap(), &["--version"]),
            Some(q) => sh(q, &[path.to_str().unwrap(), "--version"]),
        };
        assert!(version.starts_with("passthru: multus-cni version:") && version.contains(&commit), "{version}");
        // The pinned compiler of cross/targets.toml built it, and the binary says which.
        let pin = pins.get(t["arch"].as_str().unwrap()).unwrap().replace(':', " ");
        assert_eq!(t["toolchain"], pin.as_str());
        assert!(version.trim_end().ends_with(&format!(", rustc:{pin}")), "{version}");

        let audit: Value = serde_json::from_str(&sh(
            &root().join("target/tools/bin/rust-audit-info").display().to_string(),
            &[path.to_str().unwrap()],
        ))
        .unwrap();
        let listed: BTreeSet<(String, String)> = audit["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap().to_string(), p["version"].as_str().unwrap().to_string()))
            .collect();
        assert_eq!(listed, expected_crates(triple), "{triple}: embedded list vs cargo metadata");

        // The code layout of cross/hot-text.ld took effect with both toolchains (rustup for amd64,
        // Debian's 1.85 for arm64; GNU ld links both): `multus` has the hot section, executable,
        // placed before the rest of .text.
        let multus = t["binaries"].as_array().unwrap().iter().find(|b| b["name"] == "multus").unwrap();
        let sections = sh("readelf", &["-SW", out.join(multus["path"].as_str().unwrap()).to_str().unwrap()]);
        let addr = |name: &str| {
            // "  [Nr] Name Type Address ..." (the index is space-padded: "[ 8]").
            let fields = |l: &str| -> Vec<String> {
                l.split_once(']').map_or(vec![], |(_, r)| r.split_whitespace().map(String::from).collect())
            };
            let line = sections.lines().find(|l| fields(l).first().map(String::as_str) == Some(name));
            let line = line.unwrap_or_else(|| panic!("{triple}: multus has no {name} section:\n{sections}"));
            let f = fields(line);
            assert!(f[1] == "PROGBITS" && line.contains(" AX "), "{triple}: {line}");
            u64::from_str_radix(&f[2], 16).unwrap()
        };
        assert!(addr(".text.hot") < addr(".text"), "{triple}: .text.hot is not in front of .text");

        // No host paths: neither the workspace nor the build directory appears in the binary.
        for host_path in [root().display().to_string(), first.display().to_string()] {
            assert!(
                !bytes.windows(host_path.len()).any(|w| w == host_path.as_bytes()),
                "{path:?} contains {host_path}"
            );
        }
    }

    let names: Vec<&str> =
        targets[0]["binaries"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, crate::support::NODE_BINARIES, "every node binary is built");

    // A second cold build elsewhere gives byte-identical binaries, with both toolchains.
    let (second, again) = build_into("b");
    for (i, arch) in ["amd64", "arm64"].into_iter().enumerate() {
        let rebuilt = &again["targets"][i];
        assert_eq!(rebuilt["arch"], arch);
        let rebuilt = rebuilt["binaries"].as_array().unwrap();
        assert_eq!(rebuilt.len(), 2);
        for y in rebuilt {
            let x = targets[i]["binaries"].as_array().unwrap().iter().find(|x| x["name"] == y["name"]).unwrap();
            assert_eq!(x["sha256"], y["sha256"], "{arch} {} not reproducible", x["name"]);
        }
    }
    let _ = std::fs::remove_dir_all(second);
}

#[test]
fn a_wrong_architecture_is_refused_by_name() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["build", "--arch", "arm/v8"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown --arch \"arm/v8\""), "{err}");
}
