//! `cargo xtask scan`: the release gate over exactly the per-platform images of the local OCI
//! layout (before anything is pushed). Two scanners feed one policy (`policy`):
//!
//! - Trivy (`trivy`), run as `trivy image --input LAYOUT:REF` per platform image. It cannot be
//!   installed on every machine: when it is missing the gate says NOT SCANNED loudly and goes on,
//!   unless `--require-trivy` (what a publishing release passes) makes that a failure.
//! - RustSec (`rustsec`), which always runs: every ELF file in every platform image is opened, its
//!   embedded `.dep-v0` dependency list (`inventory`) matched against the advisory database.
//!
//! It writes the raw Trivy reports, `report.json` (every finding and decision), `gate.sarif`
//! (`sarif`) and `summary.md` (`summary`, also appended to `$GITHUB_STEP_SUMMARY`) to the output
//! directory, then fails when the verdict does.

pub mod advisory_db;
pub mod policy;
pub mod rustsec;
pub mod sarif;
pub mod summary;
pub mod trivy;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::image::{layout, oci};
use policy::{Decision, Finding, Policy, Verdict};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// The OCI layout to scan (default target/oci/layout).
    #[arg(long)]
    pub layout: Option<PathBuf>,
    /// Where the reports go (default target/scan).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// The policy (default trivy.yaml).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// The waivers (default .trivyignore.yaml).
    #[arg(long)]
    pub waivers: Option<PathBuf>,
    /// The RustSec advisory database, a checkout or snapshot of github.com/rustsec/advisory-db, used
    /// as it is (default $MULTUS_RUSTSEC_DB; else fetched with git into $CARGO_HOME/advisory-db,
    /// falling back offline to the last fetch or ../shared/data/rustsec-advisory-db).
    #[arg(long)]
    pub rustsec_db: Option<PathBuf>,
    /// The Trivy executable (default `trivy` on PATH).
    #[arg(long)]
    pub trivy: Option<PathBuf>,
    /// Extra arguments for every `trivy image` run (repeatable), e.g. --trivy-arg=--skip-db-update.
    #[arg(long = "trivy-arg", allow_hyphen_values = true)]
    pub trivy_args: Vec<String>,
    /// Fail when Trivy is not installed (publishing runs do this unless --allow-unscanned).
    #[arg(long)]
    pub require_trivy: bool,
    /// The date waivers are checked against, YYYY-MM-DD (default today, UTC).
    #[arg(long, hide = true)]
    pub today: Option<String>,
}

/// What `scan` runs with (defaults resolved; `release` builds one field by field).
#[derive(Clone, Debug)]
pub struct Options {
    pub layout: PathBuf,
    pub out_dir: PathBuf,
    pub policy: PathBuf,
    pub waivers: PathBuf,
    pub rustsec_db: advisory_db::Located,
    /// `None`: `trivy` on PATH.
    pub trivy: Option<PathBuf>,
    pub trivy_args: Vec<String>,
    pub require_trivy: bool,
    /// Append the summary to `$GITHUB_STEP_SUMMARY` (`release` writes one summary of its own instead).
    pub step_summary: bool,
    /// YYYY-MM-DD, what waivers are checked against.
    pub today: String,
}

impl Args {
    pub fn resolve(self) -> anyhow::Result<Options> {
        let root = crate::project::root();
        Ok(Options {
            layout: self.layout.unwrap_or_else(|| root.join("target/oci/layout")),
            out_dir: self.out_dir.unwrap_or_else(|| root.join("target/scan")),
            policy: self.policy.unwrap_or_else(|| root.join("trivy.yaml")),
            waivers: self.waivers.unwrap_or_else(|| root.join(".trivyignore.yaml")),
            rustsec_db: locate_rustsec_db(self.rustsec_db)?,
            trivy: self.trivy,
            trivy_args: self.trivy_args,
            require_trivy: self.require_trivy,
            step_summary: true,
            today: match self.today {
                Some(t) => policy::date_of(&t).context("--today")?.to_string(),
                None => today(),
            },
        })
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum TrivyStatus {
    Scanned(trivy::Versions),
    NotScanned { reason: String },
}

impl TrivyStatus {
    pub fn version(&self) -> Option<&str> {
        match self {
            TrivyStatus::Scanned(v) => Some(&v.scanner),
            TrivyStatus::NotScanned { .. } => None,
        }
    }
}

/// One platform image that was scanned.
#[derive(Debug, Clone, Serialize)]
pub struct ScannedImage {
    pub platform: String,
    pub image: String,
    pub digest: String,
    pub binaries: usize,
    pub with_deps: usize,
}

/// Everything the reports say.
#[derive(Debug, Clone, Serialize)]
pub struct Gate {
    pub trivy: TrivyStatus,
    /// `PATH (commit C of DATE)`, for the reports.
    pub rustsec_db: String,
    pub rustsec_db_version: advisory_db::DbVersion,
    pub rustsec_advisories: usize,
    /// Advisory files the rustsec crate could not parse: reported, skipped.
    pub rustsec_skipped: Vec<String>,
    /// Advisories with fields the parser ignored: reported.
    pub rustsec_notes: Vec<String>,
    pub policy_file: String,
    pub policy: Policy,
    pub waivers_file: String,
    pub waivers: usize,
    pub images: Vec<ScannedImage>,
    pub verdict: Verdict,
}

/// The database directory given by flag or `MULTUS_RUSTSEC_DB`, if any.
pub fn given_rustsec_db(flag: Option<PathBuf>) -> Option<PathBuf> {
    flag.or_else(|| std::env::var_os("MULTUS_RUSTSEC_DB").filter(|v| !v.is_empty()).map(PathBuf::from))
}

/// Finds (and when not given, fetches) the advisory database; says so when a fallback stands in.
pub fn locate_rustsec_db(flag: Option<PathBuf>) -> anyhow::Result<advisory_db::Located> {
    let given = given_rustsec_db(flag);
    if given.is_none() {
        eprintln!(
            "==> RustSec: fetching {} into {}",
            advisory_db::url(),
            advisory_db::default_dir().map(|d| d.display().to_string()).unwrap_or_default()
        );
    }
    let l = advisory_db::locate(
        given.as_deref(),
        &advisory_db::url(),
        advisory_db::default_dir().as_deref(),
        advisory_db::shared_snapshot().as_deref(),
    )?;
    if let Some(note) = &l.note {
        eprintln!("warning: {note}; using {} ({:?})", l.dir.display(), l.origin);
    }
    Ok(l)
}

/// `PATH (commit C of DATE)`.
pub fn describe_db(v: &advisory_db::DbVersion) -> String {
    match (&v.commit, &v.date) {
        (Some(c), Some(d)) => format!("{} (commit {c} of {d})", v.path),
        (Some(c), None) => format!("{} (commit {c})", v.path),
        (None, Some(d)) => format!("{} (newest advisory {d})", v.path),
        (None, None) => v.path.clone(),
    }
}

/// Today's date in UTC, `YYYY-MM-DD`.
pub fn today() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    oci::rfc3339(now)[..10].to_string()
}

/// The per-platform images of a layout: image manifests named in index.json, with their platform
/// from the descriptor or, when it has none (skopeo's layouts), from the image config.
/// (platform, architecture, digest, ref name)
pub fn platform_images(l: &layout::Layout) -> Vec<(String, String, String, String)> {
    let mut out: Vec<(String, String, String, String)> = Vec::new();
    for d in &l.index.manifests {
        let Some(r) = d.annotations.get(oci::ANN_REF_NAME) else { continue };
        let from_config = || -> Option<oci::Platform> {
            let m: oci::Manifest = serde_json::from_slice(l.blobs.get(&d.digest)?).ok()?;
            let c: serde_json::Value = serde_json::from_slice(l.blobs.get(&m.config.digest)?).ok()?;
            let (os, arch) = (c["os"].as_str()?, c["architecture"].as_str()?);
            (!os.is_empty()).then(|| oci::Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: c["variant"].as_str().map(String::from),
            })
        };
        let Some(p) = d.platform.clone().or_else(from_config) else { continue };
        let p = &p;
        if d.media_type == oci::MT_MANIFEST && !out.iter().any(|o| o.2 == d.digest) {
            let platform = match &p.variant {
                Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                None => format!("{}/{}", p.os, p.architecture),
            };
            out.push((platform, p.architecture.clone(), d.digest.clone(), r.clone()));
        }
    }
    out
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).map(|r| r.display().to_string()).unwrap_or_else(|_| p.display().to_string())
}

pub fn run(args: &Options) -> anyhow::Result<Gate> {
    let (dir, out_dir, policy_path, waivers_path) = (&args.layout, &args.out_dir, &args.policy, &args.waivers);
    let (located, today) = (&args.rustsec_db, args.today.clone());

    let policy = policy::parse_policy(
        &std::fs::read_to_string(policy_path)
            .with_context(|| format!("reading the policy {}", policy_path.display()))?,
    )
    .with_context(|| format!("in {}", policy_path.display()))?;
    let waivers = match std::fs::read_to_string(waivers_path) {
        Ok(t) => policy::parse_waivers(&t).with_context(|| format!("in {}", waivers_path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(e) => return Err(e).with_context(|| format!("reading {}", waivers_path.display())),
    };
    eprintln!("==> verify {}", dir.display());
    let (l, _) = layout::read_verified(dir).context("the layout failed verification; nothing was scanned")?;
    let targets = platform_images(&l);
    if targets.is_empty() {
        bail!("{}: index.json names no per-platform image to scan", dir.display());
    }
    std::fs::create_dir_all(out_dir.join("trivy")).with_context(|| format!("creating {}", out_dir.display()))?;

    let db = rustsec::load(&located.dir)?;
    let db_version = advisory_db::version(located, db.newest.as_deref());
    eprintln!("==> RustSec: {} advisories from {}", db.count, describe_db(&db_version));
    for s in &db.skipped {
        eprintln!("warning: RustSec advisory skipped (the rustsec crate cannot read it): {s}");
    }
    for n in &db.notes {
        eprintln!("warning: RustSec advisory {n}");
    }
    let mut findings: Vec<Finding> = Vec::new();
    let mut errors = Vec::new();
    let mut images = Vec::new();
    for (platform, arch, digest, image) in &targets {
        let bins = crate::inventory::binaries(&l, digest).with_context(|| format!("reading {image}"))?;
        let (mut with_deps, mut debian) = (0, 0);
        for b in &bins {
            match &b.deps {
                Some(deps) => {
                    with_deps += 1;
                    let os = platform.split('/').next().unwrap_or("linux");
                    let site = rustsec::Site { platform, os, arch, image, target: &b.path };
                    findings.extend(rustsec::matches(&db, deps, &site)?);
                }
                // A Debian package's file (the debug variants' busybox): scanners know it by its
                // dpkg status; it has no crates.
                None if b.debian.is_some() => debian += 1,
                None => errors.push(format!(
                    "{image}: /{} is an ELF file without a .dep-v0 dependency list: no scanner can see its crates",
                    b.path
                )),
            }
        }
        eprintln!(
            "  {image}: {} binaries, {with_deps} with a dependency list, {debian} from Debian packages",
            bins.len()
        );
        images.push(ScannedImage {
            platform: platform.clone(),
            image: image.clone(),
            digest: digest.clone(),
            binaries: bins.len(),
            with_deps,
        });
    }

    let trivy_status = match trivy::locate(args.trivy.as_deref())? {
        None => TrivyStatus::NotScanned { reason: "trivy is not installed (not on PATH; give --trivy PATH)".into() },
        Some(exe) => {
            let versions = trivy::versions(&exe)?;
            eprintln!("==> Trivy {} (DB {}) at {}", versions.scanner, versions.db, exe.display());
            let layout_s = dir.display().to_string();
            if layout_s.contains([':', '@']) {
                bail!("{layout_s}: Trivy cannot take a layout path with ':' or '@' (it splits the reference there)");
            }
            let ignorefile = out_dir.join("trivy/no-waivers.yaml");
            std::fs::write(&ignorefile, "# xtask applies the waivers itself\n")?;
            for (platform, _, _, image) in &targets {
                let output = out_dir.join(format!("trivy/{image}.json"));
                let a = trivy::scan_args(
                    &policy,
                    policy_path,
                    &format!("{layout_s}:{image}"),
                    &output,
                    &ignorefile,
                    &args.trivy_args,
                );
                let report = trivy::scan(&exe, &a, &output).with_context(|| format!("trivy scan of {image}"))?;
                if let Some(v) =
                    report.trivy.as_ref().map(|t| &t.version).filter(|v| !v.is_empty() && **v != versions.scanner)
                {
                    bail!("{}: the report says Trivy {v}, `trivy version` said {}", output.display(), versions.scanner);
                }
                let f = trivy::findings(&report, platform, image)?;
                eprintln!("  {image}: {} findings, raw report {}", f.len(), output.display());
                findings.extend(f);
            }
            TrivyStatus::Scanned(versions)
        }
    };
    if let TrivyStatus::NotScanned { reason: why } = &trivy_status {
        eprintln!("!!");
        eprintln!("!! NOT SCANNED BY TRIVY: {why}.");
        eprintln!("!! Only the RustSec check of the embedded dependency lists ran.");
        eprintln!("!!");
    }

    let verdict = policy::evaluate(&findings, &policy, &waivers, &today, errors);
    let gate = Gate {
        trivy: trivy_status,
        rustsec_db: describe_db(&db_version),
        rustsec_db_version: db_version,
        rustsec_advisories: db.count,
        rustsec_skipped: db.skipped.clone(),
        rustsec_notes: db.notes.clone(),
        policy_file: rel(&crate::project::root(), policy_path),
        policy,
        waivers_file: rel(&crate::project::root(), waivers_path),
        waivers: waivers.len(),
        images,
        verdict,
    };
    let md = summary::render(&gate);
    std::fs::write(out_dir.join("report.json"), crate::report::canonical_json(serde_json::to_value(&gate)?))?;
    std::fs::write(out_dir.join("gate.sarif"), sarif::render(&gate))?;
    std::fs::write(out_dir.join("summary.md"), &md)?;
    if args.step_summary {
        crate::record::append_step_summary(&md)?;
    }
    eprint!("{md}");
    eprintln!("reports: {} (report.json, gate.sarif, summary.md, trivy/)", out_dir.display());

    let v = &gate.verdict;
    if !v.passed {
        let failing: Vec<String> = v
            .findings
            .iter()
            .filter(|e| e.decision == Decision::Fail)
            .map(|e| {
                format!(
                    "{} ({} {} in {} on {})",
                    e.finding.id, e.finding.package, e.finding.installed, e.finding.target, e.finding.platform
                )
            })
            .collect();
        let mut why = failing.clone();
        why.extend(v.waiver_errors.iter().cloned());
        why.extend(v.errors.iter().cloned());
        if v.enforced {
            return Err(crate::outcome::Failure::Gate(format!("the release gate failed: {}", why.join("; "))).into());
        }
        eprintln!("warning: the gate would fail ({}), but the policy's exit-code is 0", why.join("; "));
    }
    if matches!(gate.trivy, TrivyStatus::NotScanned { .. }) && args.require_trivy {
        return Err(crate::outcome::refused(
            "NOT SCANNED by Trivy, and this run publishes: failing closed (install Trivy, or pass \
             --allow-unscanned to publish what only the RustSec check has seen)",
        ));
    }
    Ok(gate)
}

#[cfg(test)]
mod tests {
    use super::policy::{self, Waiver};
    use super::*;

    /// A fixed gate with one finding of each decision: the SARIF and Markdown documents are
    /// compared whole with the golden files (UPDATE_GOLDEN=1 rewrites them).
    fn gate() -> Gate {
        let p = policy::parse_policy(include_str!("../../../trivy.yaml")).unwrap();
        let r = trivy::parse_report(include_bytes!("../../tests/fixtures/trivy/report-arm64.json")).unwrap();
        let mut f = trivy::findings(&r, "linux/arm64", "thick-1.0.0-linux-arm64").unwrap();
        // The RustSec findings come from the real matcher over two advisories of the shared
        // snapshot (one with a CVSS vector, one informational), so their severities are the crate's.
        let snap = advisory_db::shared_snapshot().unwrap();
        let advisories = ["smallvec/RUSTSEC-2021-0003.md", "instant/RUSTSEC-2024-0384.md"]
            .map(|f| ::rustsec::Advisory::load_file(snap.join("crates").join(f)).unwrap());
        let db = rustsec::Db::from_advisories(advisories.to_vec());
        let pkg = |name: &str, version: &str| crate::auditable::DepPackage {
            name: name.into(),
            version: version.into(),
            source: "crates.io".into(),
            kind: "runtime".into(),
            dependencies: vec![],
            root: false,
        };
        let deps = crate::auditable::DepList { packages: vec![pkg("smallvec", "1.6.0"), pkg("instant", "0.1.13")] };
        let site = rustsec::Site {
            platform: "linux/arm64",
            os: "linux",
            arch: "arm64",
            image: "thick-1.0.0-linux-arm64",
            target: "usr/src/multus-cni/bin/passthru",
        };
        let rs = rustsec::matches(&db, &deps, &site).unwrap();
        assert_eq!(rs.len(), 2);
        f.extend(rs);
        let waivers = vec![Waiver {
            id: "aws-access-key-id".into(),
            statement: Some("test fixture credentials, not a secret".into()),
            expired_at: Some("2026-06-30".into()),
            purls: vec![],
            paths: vec!["etc/*".into()],
        }];
        let verdict = policy::evaluate(&f, &p, &waivers, "2026-01-01", vec![]);
        Gate {
            trivy: TrivyStatus::Scanned(trivy::Versions {
                scanner: "0.62.1".into(),
                db: "v2 updated 2026-01-01T06:00:00Z".into(),
            }),
            rustsec_db:
                "../shared/data/rustsec-advisory-db (commit bf5c0d245a92671908518d7e765914d437954ed6 of 2026-08-21)"
                    .into(),
            rustsec_db_version: advisory_db::DbVersion {
                path: "../shared/data/rustsec-advisory-db".into(),
                origin: advisory_db::Origin::Given,
                commit: Some("bf5c0d245a92671908518d7e765914d437954ed6".into()),
                date: Some("2026-08-21".into()),
                date_from: "SNAPSHOT.md".into(),
            },
            rustsec_advisories: 1205,
            rustsec_skipped: vec!["crates/x/RUSTSEC-2099-0001.md: error parsing".into()],
            rustsec_notes: vec!["RUSTSEC-2099-0002: unknown fields [advisory] exploited (ignored)".into()],
            policy_file: "trivy.yaml".into(),
            policy: p,
            waivers_file: ".trivyignore.yaml".into(),
            waivers: 1,
            images: vec![ScannedImage {
                platform: "linux/arm64".into(),
                image: "thick-1.0.0-linux-arm64".into(),
                digest: format!("sha256:{}", "ab".repeat(32)),
                binaries: 3,
                with_deps: 3,
            }],
            verdict,
        }
    }

    #[test]
    fn sarif_and_markdown_are_golden() {
        let g = gate();
        assert!(!g.verdict.passed);
        crate::report::golden("gate.sarif", &sarif::render(&g));
        crate::report::golden("gate-report.json", &crate::report::canonical_json(serde_json::to_value(&g).unwrap()));
        crate::report::golden("summary.md", &summary::render(&g));
        let sarif: serde_json::Value = serde_json::from_str(&sarif::render(&g)).unwrap();
        assert_eq!(
            sarif["runs"][1]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "Cargo.lock"
        );
    }

    #[test]
    fn not_scanned_is_said_in_the_summary() {
        let mut g = gate();
        g.trivy = TrivyStatus::NotScanned { reason: "trivy is not installed".into() };
        assert!(summary::render(&g).contains("| Trivy | **NOT SCANNED**: trivy is not installed |"));
    }
}
