//! `release.json`: the machine-readable record of one `cargo xtask release`, the way buildx's
//! `--metadata-file` or goreleaser's `artifacts.json` are: every binary with its sha256, every image
//! index and platform manifest with its digest, tags and SBOM, the signatures, the gate's verdict
//! with the scanner and database versions, and where it was published (digest-pinned references).
//! Its shape is `xtask/schemas/release.schema.json`. In GitHub Actions the same facts go to
//! `$GITHUB_OUTPUT` as `key=value` lines.
//!
//! `record` is a plain function over what the phases returned; writing is `write` (temp + rename).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::build;
use crate::image::BuiltImage;
use crate::scan::{Gate, TrivyStatus};
use crate::sign::Signed;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub schema_version: u32,
    pub version: String,
    pub commit: String,
    pub source_date_epoch: u64,
    pub binaries: Vec<Binary>,
    pub images: Vec<Image>,
    pub scan: Scan,
    pub signatures: Signatures,
    /// `HOST/REPO` when the release was published, else null (a local layout only).
    pub registry: Option<String>,
    /// What the verify step checked: (reference, digest).
    pub verified: Vec<Verified>,
    pub layout: String,
    pub archive: String,
    pub deployments: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Binary {
    pub platform: String,
    pub name: String,
    /// Relative to the release's output directory.
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub toolchain: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    pub name: String,
    pub digest: String,
    /// The layout's ref names of the index, which are its registry tags (ours, then upstream's).
    pub tags: Vec<String>,
    /// `HOST/REPO@sha256:…` when published.
    pub pinned: Option<String>,
    pub platforms: Vec<Platform>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Platform {
    pub platform: String,
    pub tag: String,
    pub digest: String,
    pub pinned: Option<String>,
    /// The CycloneDX SBOM attested for it (relative to the output directory when inside).
    pub sbom: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Scan {
    pub passed: bool,
    /// `{scanner, db}` versions, or null with `trivyNotScanned` saying why.
    pub trivy: Option<crate::scan::trivy::Versions>,
    pub trivy_not_scanned: Option<String>,
    pub rustsec_db: String,
    pub rustsec_db_commit: Option<String>,
    /// `YYYY-MM-DD`: the commit's date, a snapshot's, or the newest advisory's.
    pub rustsec_db_date: Option<String>,
    pub rustsec_advisories: usize,
    pub findings: usize,
    pub waivers: usize,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Signatures {
    pub identity: String,
    pub keyless: bool,
    /// Which formats were attached (`legacy`, `bundle`, `both`).
    pub format: crate::sign::Format,
    /// Keyless: the identity and issuer the Fulcio certificate names (what a consumer pins).
    pub certificate: Option<Certificate>,
    pub signed: Vec<Verified>,
    pub attested: usize,
    /// Every Sigstore bundle referrer: the manifest it is about and its own digest.
    pub bundles: Vec<Bundle>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Certificate {
    pub identity: String,
    pub issuer: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    pub subject: String,
    pub referrer: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verified {
    pub reference: String,
    pub digest: String,
}

/// What the phases of one release returned.
pub struct Inputs<'a> {
    pub out_dir: &'a Path,
    pub manifest: &'a build::Manifest,
    pub images: &'a [BuiltImage],
    pub gate: &'a Gate,
    pub signed: &'a Signed,
    pub keyless: bool,
    pub format: crate::sign::Format,
    pub signed_as: Option<&'a crate::sign::SignedAs>,
    pub registry: Option<&'a str>,
    pub verified: &'a [(String, String)],
    pub layout: &'a Path,
    pub archive: &'a Path,
    pub deployments: &'a [PathBuf],
}

/// Every binary of a build manifest, paths prefixed with `prefix` (what `build --json` prints).
pub fn binaries(manifest: &build::Manifest, prefix: &str) -> Vec<Binary> {
    manifest
        .targets
        .iter()
        .flat_map(|t| {
            t.binaries.iter().map(move |b| Binary {
                platform: t.platform.clone(),
                name: b.name.clone(),
                path: format!("{prefix}{}", b.path),
                size: b.size,
                sha256: b.sha256.clone(),
                toolchain: t.toolchain.clone(),
            })
        })
        .collect()
}

/// Every image index with its platform manifests (what `image --json` prints); `pin` makes the
/// digest-pinned reference of a digest when published, `sbom` names a digest's attested SBOM.
pub fn images(
    built: &[BuiltImage],
    pin: &dyn Fn(&str) -> Option<String>,
    sbom: &dyn Fn(&str) -> Option<String>,
) -> Vec<Image> {
    built
        .iter()
        .map(|img| Image {
            name: img.name.clone(),
            digest: img.index.descriptor.digest.clone(),
            tags: std::iter::once(img.ref_name.clone()).chain(img.upstream_tags.iter().cloned()).collect(),
            pinned: pin(&img.index.descriptor.digest),
            platforms: img
                .platforms
                .iter()
                .map(|p| {
                    let digest = p.manifest.descriptor.digest.clone();
                    Platform {
                        platform: p.platform.name(),
                        tag: p.ref_name.clone(),
                        pinned: pin(&digest),
                        sbom: sbom(&digest),
                        digest,
                    }
                })
                .collect(),
        })
        .collect()
}

/// The record (pure).
pub fn record(i: &Inputs) -> Record {
    let rel = |p: &Path| p.strip_prefix(i.out_dir).unwrap_or(p).display().to_string();
    let pin = |digest: &str| i.registry.map(|r| format!("{r}@{digest}"));
    let binaries = binaries(i.manifest, "release-artifacts/");
    let sbom_of =
        |digest: &str| i.signed.attested.iter().find(|(_, d, _)| d == digest).map(|(_, _, f)| rel(Path::new(f)));
    let images = images(i.images, &pin, &sbom_of);
    let (trivy, trivy_not_scanned) = match &i.gate.trivy {
        TrivyStatus::Scanned(v) => (Some(v.clone()), None),
        TrivyStatus::NotScanned { reason } => (None, Some(reason.clone())),
    };
    Record {
        schema_version: SCHEMA_VERSION,
        version: i.manifest.version.clone(),
        commit: i.manifest.commit.clone(),
        source_date_epoch: i.manifest.source_date_epoch,
        binaries,
        images,
        scan: Scan {
            passed: i.gate.verdict.passed,
            trivy,
            trivy_not_scanned,
            rustsec_db: i.gate.rustsec_db.clone(),
            rustsec_db_commit: i.gate.rustsec_db_version.commit.clone(),
            rustsec_db_date: i.gate.rustsec_db_version.date.clone(),
            rustsec_advisories: i.gate.rustsec_advisories,
            findings: i.gate.verdict.findings.len(),
            waivers: i.gate.waivers,
        },
        signatures: Signatures {
            identity: i.signed.identity.clone(),
            keyless: i.keyless,
            format: i.format,
            certificate: i
                .signed_as
                .map(|(identity, issuer)| Certificate { identity: identity.clone(), issuer: issuer.clone() }),
            signed: i.signed.signed.iter().map(|(r, d)| Verified { reference: r.clone(), digest: d.clone() }).collect(),
            attested: i.signed.attested.len(),
            bundles: i
                .signed
                .referrers
                .iter()
                .map(|(s, r)| Bundle { subject: s.clone(), referrer: r.clone() })
                .collect(),
        },
        registry: i.registry.map(String::from),
        verified: i.verified.iter().map(|(r, d)| Verified { reference: r.clone(), digest: d.clone() }).collect(),
        layout: rel(i.layout),
        archive: rel(i.archive),
        deployments: i.deployments.iter().map(|p| rel(p)).collect(),
    }
}

/// `$GITHUB_OUTPUT` lines: the record's path, version, commit, and each index's digest and
/// (when published) digest-pinned reference (pure).
pub fn github_outputs(r: &Record, path: &Path) -> String {
    let mut out = format!("release-json={}\nversion={}\ncommit={}\n", path.display(), r.version, r.commit);
    for img in &r.images {
        out.push_str(&format!("digest-{}={}\n", img.name, img.digest));
        if let Some(p) = &img.pinned {
            out.push_str(&format!("pinned-{}={p}\n", img.name));
        }
    }
    out
}

/// Writes `release.json` into `out_dir` (temp + rename) and, when `$GITHUB_OUTPUT` names a file,
/// appends [`github_outputs`] to it. Returns the record's path.
/// Appends `key=value` lines to `$GITHUB_OUTPUT` when GitHub Actions set it.
pub fn append_github_output(lines: &str) -> anyhow::Result<()> {
    append_to("GITHUB_OUTPUT", lines)
}

/// Appends Markdown to `$GITHUB_STEP_SUMMARY` when GitHub Actions set it.
pub fn append_step_summary(md: &str) -> anyhow::Result<()> {
    append_to("GITHUB_STEP_SUMMARY", md)
}

fn append_to(var: &str, text: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::io::Write as _;
    let Some(gh) = std::env::var_os(var).filter(|v| !v.is_empty()) else { return Ok(()) };
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&gh)
        .with_context(|| format!("opening ${var} {}", Path::new(&gh).display()))?;
    f.write_all(text.as_bytes()).with_context(|| format!("writing ${var} {}", Path::new(&gh).display()))
}

/// The one step summary of a release (pure): its outcome, the images by digest, the downloads,
/// then the gate's own summary. `record` is release.json (null when the release failed before it
/// was written), `failure` the error of a failed release, `gate_md` the gate's summary.md.
pub fn step_summary(
    version: &str,
    commit: &str,
    record: &serde_json::Value,
    failure: Option<&str>,
    gate_md: Option<&str>,
    assets: &[crate::dist::Asset],
) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    match failure {
        None => {
            let _ = writeln!(s, "# Release {version}: done\n");
        }
        Some(e) => {
            let _ = writeln!(s, "# Release {version}: FAILED\n\n```\n{}\n```\n", e.trim());
        }
    }
    let _ = writeln!(s, "Commit `{commit}`.\n");
    if let Some(images) = record["images"].as_array() {
        let _ = writeln!(s, "## Images\n\n| image | index | tags | platforms |\n|---|---|---|---|");
        for i in images {
            let tags: Vec<&str> = i["tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str()).collect();
            let platforms: Vec<&str> =
                i["platforms"].as_array().into_iter().flatten().filter_map(|p| p["platform"].as_str()).collect();
            let index = i["pinned"].as_str().or(i["digest"].as_str()).unwrap_or("");
            let _ = writeln!(
                s,
                "| {} | `{index}` | {} | {} |",
                i["name"].as_str().unwrap_or(""),
                tags.join(", "),
                platforms.join(", ")
            );
        }
        s.push('\n');
    }
    if !assets.is_empty() {
        let _ = writeln!(s, "## Downloads (`dist/`)\n\n| file | bytes | sha256 |\n|---|---|---|");
        for a in assets {
            let _ = writeln!(s, "| {} | {} | `{}` |", a.name, a.size, a.sha256);
        }
        s.push('\n');
    }
    if let Some(md) = gate_md {
        // The gate's headings one level down, under the release's.
        for line in md.lines() {
            if line.starts_with('#') {
                s.push('#');
            }
            s.push_str(line);
            s.push('\n');
        }
    }
    s
}

pub fn write(r: &Record, out_dir: &Path) -> anyhow::Result<PathBuf> {
    use anyhow::Context as _;
    let path = out_dir.join("release.json");
    let tmp = out_dir.join(".release.json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(r)? + "\n")
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    append_github_output(&github_outputs(r, &path))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_outputs_name_the_record_and_every_index() {
        let img = |name: &str, d: &str, pinned: Option<String>| Image {
            name: name.into(),
            digest: d.into(),
            tags: vec![format!("{name}-1.0.0")],
            pinned,
            platforms: vec![],
        };
        let r = Record {
            schema_version: SCHEMA_VERSION,
            version: "1.0.0".into(),
            commit: "c".repeat(40),
            source_date_epoch: 1,
            binaries: vec![],
            images: vec![img("thick", "sha256:aa", Some("r/m@sha256:aa".into())), img("thin", "sha256:bb", None)],
            scan: Scan {
                passed: true,
                trivy: None,
                trivy_not_scanned: Some("not installed".into()),
                rustsec_db: "db".into(),
                rustsec_db_commit: None,
                rustsec_db_date: Some("2026-08-21".into()),
                rustsec_advisories: 1,
                findings: 0,
                waivers: 0,
            },
            signatures: Signatures {
                identity: "r/m".into(),
                keyless: false,
                format: crate::sign::Format::Both,
                certificate: None,
                signed: vec![],
                attested: 0,
                bundles: vec![],
            },
            registry: None,
            verified: vec![],
            layout: "oci/layout".into(),
            archive: "oci/oci-archive.tar".into(),
            deployments: vec![],
        };
        let cccc = "c".repeat(40);
        assert_eq!(
            github_outputs(&r, Path::new("/o/release.json")),
            format!(
                "release-json=/o/release.json\nversion=1.0.0\ncommit={cccc}\n\
                 digest-thick=sha256:aa\npinned-thick=r/m@sha256:aa\ndigest-thin=sha256:bb\n"
            )
        );
    }

    #[test]
    fn the_step_summary_is_golden() {
        let record = serde_json::json!({
            "images": [{
                "name": "thick",
                "digest": "sha256:aa",
                "pinned": "ghcr.io/o/m@sha256:aa",
                "tags": ["thick-1.0.0", "v1.0.0-thick"],
                "platforms": [{"platform": "linux/amd64"}, {"platform": "linux/arm/v7"}],
            }],
        });
        let assets = vec![crate::dist::Asset {
            name: "multus-1.0.0-linux-amd64.tar.gz".into(),
            size: 3,
            sha256: "ab".repeat(32),
        }];
        let gate = "## Release gate: PASSED\n\n| scanner | status |\n|---|---|\n";
        let md = step_summary("1.0.0", &"c".repeat(40), &record, None, Some(gate), &assets);
        crate::report::golden("release-summary.md", &md);
        let failed =
            step_summary("1.0.0", "c", &serde_json::Value::Null, Some("the release gate failed: X\n"), Some(gate), &[]);
        assert!(failed.starts_with("# Release 1.0.0: FAILED\n\n```\nthe release gate failed: X\n```"), "{failed}");
        assert!(failed.contains("### Release gate: PASSED") && !failed.contains("## Images"), "{failed}");
    }
}
