//! A CycloneDX 1.5 SBOM (JSON) per platform image: the image as the metadata component, each
//! binary in it (path, sha256; a Debian package's with its `pkg:deb` purl) as an application, and every crate of the binaries' embedded
//! dependency lists (`.dep-v0`, so exactly what was linked) as a library with its purl, licence
//! and description from `cargo metadata`, plus the dependency graph. Deterministic: the serial
//! number is derived from the manifest digest, the timestamp is the image's creation time.
//!
//! `bom` is a plain function over data; `Licenses::from_metadata` reads cargo metadata.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use sha2::Digest as _;

use crate::auditable::DepPackage;
use crate::inventory::Binary;

/// (licence, description) per (crate, version), from cargo metadata.
#[derive(Debug, Clone, Default)]
pub struct Licenses(pub BTreeMap<(String, String), (Option<String>, Option<String>)>);

impl Licenses {
    pub fn from_metadata(meta: &cargo_metadata::Metadata) -> Licenses {
        Licenses(
            meta.packages
                .iter()
                .map(|p| {
                    (
                        (p.name.to_string(), p.version.to_string()),
                        (p.license.clone().map(|l| spdx(&l)), p.description.clone().map(|d| d.trim().to_string())),
                    )
                })
                .collect(),
        )
    }
}

/// Cargo's old `MIT/Apache-2.0` spelling as an SPDX expression.
pub fn spdx(license: &str) -> String {
    license.split('/').map(str::trim).collect::<Vec<_>>().join(" OR ")
}

/// What the SBOM describes.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    /// Repository the image is published as (`ghcr.io/owner/repo`).
    pub name: &'a str,
    pub version: &'a str,
    pub manifest_digest: &'a str,
    pub platform: &'a str,
    /// RFC 3339 (the image's `created`).
    pub created: &'a str,
}

fn bom_ref(p: &DepPackage) -> String {
    if p.source == "crates.io" { purl(p) } else { format!("{}:{}@{}", p.source, p.name, p.version) }
}

fn purl(p: &DepPackage) -> String {
    format!("pkg:cargo/{}@{}", p.name, p.version)
}

/// A UUID (v4 layout) from a hash, so the same image always gets the same serial number.
fn uuid_from(seed: &[u8]) -> String {
    let h = sha2::Sha256::digest(seed);
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x: String = b.iter().map(|v| format!("{v:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &x[..8], &x[8..12], &x[12..16], &x[16..20], &x[20..])
}

/// The CycloneDX document for one platform image.
pub fn bom(s: &Subject, binaries: &[Binary], licenses: &Licenses) -> Value {
    let mut packages: BTreeMap<String, &DepPackage> = BTreeMap::new();
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut apps = Vec::new();
    let image_ref = format!("image:{}", s.manifest_digest);
    for b in binaries {
        let app_ref = format!("file:/{}", b.path);
        apps.push(json!({
            "type": "application",
            "bom-ref": app_ref,
            "name": b.path.rsplit('/').next().unwrap_or(&b.path),
            "hashes": [{"alg": "SHA-256", "content": b.sha256}],
            "properties": [{"name": "path", "value": format!("/{}", b.path)}],
        }));
        if let Some(d) = &b.debian {
            let app = apps.last_mut().expect("just pushed");
            app["version"] = json!(d.version);
            app["purl"] = json!(format!(
                "pkg:deb/debian/{}@{}?arch={}&distro=debian-12",
                d.name,
                d.version.replace(':', "%3A"),
                d.architecture
            ));
            app["properties"]
                .as_array_mut()
                .expect("an array")
                .push(json!({"name": "debian:package", "value": d.name}));
        }
        deps.entry(image_ref.clone()).or_default().insert(app_ref.clone());
        let Some(list) = &b.deps else { continue };
        for p in &list.packages {
            packages.entry(bom_ref(p)).or_insert(p);
            let edges = deps.entry(bom_ref(p)).or_default();
            for &i in &p.dependencies {
                if let Some(d) = list.packages.get(i) {
                    edges.insert(bom_ref(d));
                }
            }
            if p.root {
                deps.entry(app_ref.clone()).or_default().insert(bom_ref(p));
            }
        }
    }
    let mut components = apps;
    for (r, p) in &packages {
        let mut c = json!({"type": "library", "bom-ref": r, "name": p.name, "version": p.version, "scope": "required"});
        if p.source == "crates.io" {
            c["purl"] = json!(purl(p));
        }
        if let Some((lic, desc)) = licenses.0.get(&(p.name.clone(), p.version.clone())) {
            if let Some(l) = lic {
                c["licenses"] = json!([{"expression": l}]);
            }
            if let Some(d) = desc {
                c["description"] = json!(d);
            }
        }
        if p.kind == "build" {
            c["scope"] = json!("excluded");
        }
        components.push(c);
    }
    let (os, arch) = s.platform.split_once('/').unwrap_or(("linux", s.platform));
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": format!("urn:uuid:{}", uuid_from(s.manifest_digest.as_bytes())),
        "version": 1,
        "metadata": {
            "timestamp": s.created,
            "tools": {"components": [{"type": "application", "name": "cargo xtask sign", "version": env!("CARGO_PKG_VERSION")}]},
            "component": {
                "type": "container",
                "bom-ref": image_ref,
                "name": s.name,
                "version": s.version,
                "hashes": [{"alg": "SHA-256", "content": s.manifest_digest.trim_start_matches("sha256:")}],
                "properties": [{"name": "oci:platform", "value": s.platform}, {"name": "oci:os", "value": os}, {"name": "oci:architecture", "value": arch}],
            },
        },
        "components": components,
        "dependencies": deps.into_iter().map(|(r, on)| json!({"ref": r, "dependsOn": on})).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auditable::DepList;

    #[test]
    fn a_platform_sbom_is_golden() {
        let pkg = |name: &str, version: &str, source: &str, deps: Vec<usize>, root: bool| DepPackage {
            name: name.into(),
            version: version.into(),
            source: source.into(),
            kind: "runtime".into(),
            dependencies: deps,
            root,
        };
        let list = DepList {
            packages: vec![
                pkg("libc", "0.2.170", "crates.io", vec![], false),
                pkg("multus", "0.1.0", "local", vec![0], true),
            ],
        };
        let bins = vec![Binary {
            path: "usr/src/multus-cni/bin/passthru".into(),
            sha256: "ab".repeat(32),
            size: 10,
            deps: Some(list),
            debian: None,
        }];
        let mut lic = Licenses::default();
        lic.0
            .insert(("libc".into(), "0.2.170".into()), (Some(spdx("MIT/Apache-2.0")), Some("Raw FFI bindings".into())));
        lic.0.insert(("multus".into(), "0.1.0".into()), (Some("Apache-2.0".into()), None));
        let s = Subject {
            name: "ghcr.io/multus-rs/multus-rs",
            version: "1.0.0",
            manifest_digest: "sha256:6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            platform: "linux/arm64",
            created: "2026-01-01T00:00:00Z",
        };
        let doc = bom(&s, &bins, &lic);
        crate::report::golden("sbom.cdx.json", &crate::report::canonical_json(doc.clone()));
        assert_eq!(doc, bom(&s, &bins, &lic), "deterministic");
        assert_eq!(spdx("MIT/Apache-2.0"), "MIT OR Apache-2.0");
    }
}
