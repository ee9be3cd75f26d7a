//! `cargo xtask release`: build → image → scan → sign → (publish) → verify, planned first.
//!
//! The plan (`plan`, a plain function of the arguments and what is installed) is printed before
//! anything runs; `--dry-run` prints the plan as JSON, runs every refusal check and the registry
//! credential probe (which may run a docker credential helper), and stops. With no arguments everything goes
//! into the local layout (target/oci) signed with a development key under target/dev-keys, and
//! is verified there. With `--registry` the layout is published after the gate and verified from
//! the registry; a publishing run refuses to go on unscanned (no Trivy) unless `--allow-unscanned`,
//! and refuses the development key except for a loopback registry (`--insecure`).
//!
//! `--prebuilt DIR` replaces the build by the merge of per-platform builds (the CI matrix's
//! `cargo xtask build --arch A --out-dir DIR/A`), each binary re-checked against its manifest.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;
use sha2::Digest as _;
use xshell::Shell;

use crate::registry::access::{Access, AccessArgs};
use crate::report::Phases;
use crate::{build, image, publish, scan, sign, targets};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Print the plan as JSON, run every refusal check and the credential probe, and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Publish to HOST[:PORT]/REPO after the gate.
    #[arg(long)]
    pub registry: Option<String>,
    #[command(flatten)]
    pub access: AccessArgs,
    /// Sign with this cosign.key (password from COSIGN_PASSWORD; cosign.pub expected beside it).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Sign keylessly (GitHub Actions OIDC → Fulcio, Rekor); the release then verifies with the
    /// identity and issuer of the certificate it signed with, against --trusted-root.
    #[arg(long, conflicts_with = "key")]
    pub keyless: bool,
    /// Keyless: Fulcio (a private Sigstore instance, or the tests' local stack).
    #[arg(long, default_value = sign::keyless::FULCIO)]
    pub fulcio_url: String,
    /// Keyless: Rekor.
    #[arg(long, default_value = sign::keyless::REKOR)]
    pub rekor_url: String,
    /// Keyless: the trust root the release verifies against (default: the public-good instance's).
    #[arg(long)]
    pub trusted_root: Option<PathBuf>,
    /// Signature formats: cosign's legacy tags, Sigstore bundle referrers, or both.
    #[arg(long, value_enum, default_value_t = sign::Format::Both)]
    pub signature_format: sign::Format,
    /// The repository signed into the payloads (default: --registry, else ghcr.io/OWNER/NAME).
    #[arg(long)]
    pub identity: Option<String>,
    /// Only these architectures (repeatable; default every target of cross/targets.toml).
    #[arg(long = "arch")]
    pub arches: Vec<String>,
    /// Merge per-platform builds found under DIR (each DIR/*/manifest.json) instead of building.
    #[arg(long)]
    pub prebuilt: Option<PathBuf>,
    /// Publish even though Trivy is not installed (only the RustSec check gates then).
    #[arg(long)]
    pub allow_unscanned: bool,
    /// The RustSec advisory database, used as it is (default $MULTUS_RUSTSEC_DB; else fetched with
    /// git into $CARGO_HOME/advisory-db, offline the last fetch or ../shared/data/rustsec-advisory-db).
    #[arg(long)]
    pub rustsec_db: Option<PathBuf>,
    /// A publishing release refuses an advisory database older than this many days
    /// (default $MULTUS_RUSTSEC_DB_MAX_AGE, else 30).
    #[arg(long)]
    pub max_rustsec_db_age: Option<u32>,
    /// The Trivy executable (default `trivy` on PATH).
    #[arg(long)]
    pub trivy: Option<PathBuf>,
    /// Extra arguments for `trivy image` (repeatable).
    #[arg(long = "trivy-arg", allow_hyphen_values = true)]
    pub trivy_args: Vec<String>,
    /// Where release-artifacts/, oci/, scan/, sbom/ and dist/ go (default target).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Where cargo builds (default target/xbuild; `bench release` uses a fresh one for a cold run).
    #[arg(long)]
    pub target_dir: Option<PathBuf>,
}

/// How signatures will be made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum KeyChoice {
    Key { path: String },
    DevelopmentKey { path: String, exists: bool },
    Keyless { fulcio: String, rekor: String },
}

/// What the plan is made from.
#[derive(Debug, Clone)]
pub struct PlanInput {
    pub version: String,
    pub commit: String,
    pub platforms: Vec<String>,
    pub binaries: Vec<String>,
    pub images: Vec<String>,
    pub prebuilt: Option<String>,
    pub trivy: Option<String>,
    pub allow_unscanned: bool,
    pub rustsec_db: String,
    pub key: KeyChoice,
    pub identity: String,
    pub registry: Option<(String, bool)>,
    /// The output directory (`target`).
    pub out: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    Build { platforms: Vec<String>, binaries: Vec<String>, out: String },
    Merge { from: String, platforms: Vec<String>, out: String },
    Image { images: Vec<String>, layout: String, archive: String },
    Scan { trivy: String, if_missing: String, rustsec_db: String, policy: String, waivers: String, reports: String },
    Sign { signer: KeyChoice, identity: String, signs: String, sboms: String },
    Publish { registry: String, transport: String },
    Verify { from: String, checks: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub version: String,
    pub commit: String,
    pub steps: Vec<Step>,
}

/// The release plan: a plain function of what it is given.
pub fn plan(i: &PlanInput) -> Plan {
    let mut steps = Vec::new();
    let o = &i.out;
    match &i.prebuilt {
        Some(from) => steps.push(Step::Merge {
            from: from.clone(),
            platforms: i.platforms.clone(),
            out: format!("{o}/release-artifacts"),
        }),
        None => steps.push(Step::Build {
            platforms: i.platforms.clone(),
            binaries: i.binaries.clone(),
            out: format!("{o}/release-artifacts"),
        }),
    }
    steps.push(Step::Image {
        images: i.images.clone(),
        layout: format!("{o}/oci/layout"),
        archive: format!("{o}/oci/oci-archive.tar"),
    });
    let publishing = i.registry.is_some();
    steps.push(Step::Scan {
        trivy: i.trivy.clone().unwrap_or_else(|| "not installed".into()),
        if_missing: match (publishing, i.allow_unscanned) {
            (false, _) => "report NOT SCANNED and go on (nothing is published)".into(),
            (true, false) => "fail: a publishing run needs Trivy (--allow-unscanned overrides)".into(),
            (true, true) => "go on unscanned (--allow-unscanned)".into(),
        },
        rustsec_db: i.rustsec_db.clone(),
        policy: "trivy.yaml".into(),
        waivers: ".trivyignore.yaml".into(),
        reports: format!("{o}/scan"),
    });
    steps.push(Step::Sign {
        signer: i.key.clone(),
        identity: i.identity.clone(),
        signs: "every image index and platform manifest (sha256-<hex>.sig)".into(),
        sboms: format!("a CycloneDX SBOM per platform manifest, attested (sha256-<hex>.att), files in {o}/sbom"),
    });
    match &i.registry {
        Some((r, insecure)) => {
            steps.push(Step::Publish {
                registry: r.clone(),
                transport: if *insecure { "http (loopback)".into() } else { "https".into() },
            });
            steps.push(Step::Verify {
                from: r.clone(),
                checks: "every tag: manifest digests, signatures, SBOM attestations, identity".into(),
            });
        }
        None => steps.push(Step::Verify {
            from: format!("{o}/oci/layout"),
            checks: "every image: manifest digests, signatures, SBOM attestations, identity".into(),
        }),
    }
    Plan { version: i.version.clone(), commit: i.commit.clone(), steps }
}

/// A printable line per step.
pub fn describe(p: &Plan) -> String {
    let mut s = format!("release plan: version {} commit {}\n", p.version, &p.commit[..12.min(p.commit.len())]);
    for (n, st) in p.steps.iter().enumerate() {
        let line = match st {
            Step::Build { platforms, binaries, out } => {
                format!("build    {} for {} -> {out}", binaries.join(", "), platforms.join(", "))
            }
            Step::Merge { from, platforms, out } => {
                format!("merge    the per-platform builds in {from} ({}) -> {out}", platforms.join(", "))
            }
            Step::Image { images, layout, archive } => {
                format!("image    {} -> {layout} + {archive}", images.join(", "))
            }
            Step::Scan { trivy, if_missing, rustsec_db, .. } => {
                format!("scan     Trivy: {trivy} (if missing: {if_missing}); RustSec: {rustsec_db}; policy trivy.yaml")
            }
            Step::Sign { signer, identity, .. } => {
                let with = match signer {
                    KeyChoice::Key { path } => path.clone(),
                    KeyChoice::DevelopmentKey { path, exists } => {
                        format!("the development key {path}{}", if *exists { "" } else { " (generated now)" })
                    }
                    KeyChoice::Keyless { fulcio, rekor } => format!("keyless ({fulcio}, {rekor})"),
                };
                format!("sign     with {with} as {identity}; SBOM attestations")
            }
            Step::Publish { registry, transport } => format!("publish  {registry} over {transport}"),
            Step::Verify { from, .. } => format!("verify   signatures, attestations and digests from {from}"),
        };
        s.push_str(&format!("  {}. {line}\n", n + 1));
    }
    s
}

/// Merges per-platform build manifests (each with its directory) into one, in `order` (the
/// chosen platforms of cross/targets.toml); paths become relative to the merged manifest's
/// directory. Platforms that were not chosen are left out (a `--prebuilt` directory with every
/// platform and `--arch amd64` releases amd64 only); with `required`, every chosen platform must
/// be there.
pub fn merge_manifests(
    parts: &[(PathBuf, build::Manifest)],
    order: &[String],
    required: bool,
) -> anyhow::Result<build::Manifest> {
    let (_, first) = parts.first().context("no per-platform build manifests to merge")?;
    let mut merged = build::Manifest { targets: vec![], ..first.clone() };
    for (dir, m) in parts {
        if (&m.version, &m.commit, m.source_date_epoch, &m.profile)
            != (&first.version, &first.commit, first.source_date_epoch, &first.profile)
        {
            bail!(
                "{}: built from {} {} ({}), the others from {} {} ({})",
                dir.display(),
                m.version,
                m.commit,
                m.profile,
                first.version,
                first.commit,
                first.profile
            );
        }
        for t in &m.targets {
            if merged.targets.iter().any(|o| o.platform == t.platform) {
                bail!("{}: {} is built twice", dir.display(), t.platform);
            }
            if order.contains(&t.platform) {
                merged.targets.push(t.clone());
            }
        }
    }
    let missing: Vec<&String> = order.iter().filter(|p| !merged.targets.iter().any(|t| &t.platform == *p)).collect();
    if merged.targets.is_empty() || (required && !missing.is_empty()) {
        bail!("no prebuilt binaries for {missing:?} (chosen: {order:?})");
    }
    merged.targets.sort_by_key(|t| order.iter().position(|p| *p == t.platform).unwrap_or(usize::MAX));
    Ok(merged)
}

fn merge_prebuilt(out: &Path, from: &Path, order: &[String], required: bool) -> anyhow::Result<build::Manifest> {
    let mut parts = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(from)
        .with_context(|| format!("reading {}", from.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    if from.join("manifest.json").is_file() {
        dirs.push(from.to_path_buf());
    }
    dirs.sort();
    for d in dirs {
        parts.push((d.clone(), image::read_manifest(&d.join("manifest.json"))?));
    }
    let merged = merge_manifests(&parts, order, required)?;
    for (dir, m) in &parts {
        for t in m.targets.iter().filter(|t| order.contains(&t.platform)) {
            std::fs::create_dir_all(out.join(t.platform.replace('/', "-")))?;
            for b in &t.binaries {
                let bytes =
                    std::fs::read(dir.join(&b.path)).with_context(|| format!("{}: {}", dir.display(), b.path))?;
                let actual = format!("{:x}", sha2::Sha256::digest(&bytes));
                if actual != b.sha256 {
                    bail!("{}: {} has sha256 {actual}, its manifest says {}", dir.display(), b.path, b.sha256);
                }
                std::fs::write(out.join(&b.path), bytes)?;
            }
        }
    }
    std::fs::write(out.join("manifest.json"), serde_json::to_vec_pretty(&merged)?)?;
    Ok(merged)
}

pub fn run(sh: &Shell, args: Args) -> anyhow::Result<()> {
    run_timed(sh, args).map(|_| ())
}

/// `run`, returning each phase's name and duration (what `bench release` reports).
pub fn run_timed(sh: &Shell, args: Args) -> anyhow::Result<Vec<(String, std::time::Duration)>> {
    let root = crate::project::root();
    let all = targets::load(&root)?;
    let chosen = targets::select(&all, &args.arches)?;
    let stamp = build::stamp(sh)?;
    let bins = crate::project::node_binaries()?;
    let images: Vec<String> = image::select_specs(&root.join("images"), &[])?.into_iter().map(|s| s.name).collect();
    let publishing = args.registry.is_some();
    let access = args.access.clone().resolve()?;
    if let Some(r) = &args.registry {
        access.target(r)?;
    }
    let identity = match (&args.identity, &args.registry) {
        (Some(i), _) => i.clone(),
        (None, Some(r)) => r.clone(),
        (None, None) => sign::default_identity(&root)?,
    };
    let rel =
        |p: &Path| p.strip_prefix(&root).map(|r| r.display().to_string()).unwrap_or_else(|_| p.display().to_string());
    let trivy = scan::trivy::locate(args.trivy.as_deref())?;
    let db_located = scan::locate_rustsec_db(args.rustsec_db.clone())?;
    let db = db_located.dir.clone();
    let dev = root.join("target/dev-keys/cosign.key");
    let out_dir = args.out_dir.clone().unwrap_or_else(|| root.join("target"));
    let key = match (&args.key, args.keyless) {
        (Some(k), _) => KeyChoice::Key { path: rel(k) },
        (None, true) => KeyChoice::Keyless { fulcio: args.fulcio_url.clone(), rekor: args.rekor_url.clone() },
        (None, false) => KeyChoice::DevelopmentKey { path: rel(&dev), exists: dev.exists() },
    };
    let p = plan(&PlanInput {
        version: stamp.version.clone(),
        commit: stamp.commit.clone(),
        platforms: chosen.iter().map(|t| t.platform.clone()).collect(),
        binaries: bins,
        images,
        prebuilt: args.prebuilt.as_deref().map(rel),
        trivy: trivy.as_deref().map(|t| t.display().to_string()),
        allow_unscanned: args.allow_unscanned,
        rustsec_db: rel(&db),
        key: key.clone(),
        identity: identity.clone(),
        registry: args.registry.clone().map(|r| (r, access.insecure)),
        out: rel(&out_dir),
    });
    if args.dry_run {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        eprint!("{}", describe(&p));
    }
    // Refuse early what would fail late; a dry run refuses alike (exit 5), and probes the
    // registry's credentials (a broken credential helper fails it).
    if publishing && trivy.is_none() && !args.allow_unscanned {
        return Err(crate::outcome::refused(
            "Trivy is not installed and this run publishes: refusing to publish unscanned images (install Trivy, or --allow-unscanned)",
        ));
    }
    if publishing && matches!(key, KeyChoice::DevelopmentKey { .. }) && !access.insecure {
        return Err(crate::outcome::refused(format!(
            "publishing to {identity} needs --key or --keyless (the development key is for local and loopback use)"
        )));
    }
    // The probe's answer is kept, so publish and verify do not ask a credential helper again.
    let mut access = access;
    if let Some(r) = &args.registry {
        access.creds = access.creds_for(&access.target(r)?.host).context("the registry's credentials")?;
    }
    // Every compiler the build will use is the pinned one (a dry run probes without installing).
    if args.prebuilt.is_none() {
        for t in &chosen {
            let compiler = crate::toolchain::probe(&root, t)?;
            eprintln!("  toolchain {:<8} {compiler}", t.arch);
        }
    }
    // The advisory database must load, and a publishing release refuses a stale one.
    let db_loaded = scan::rustsec::load(&db)?;
    let db_version = scan::advisory_db::version(&db_located, db_loaded.newest.as_deref());
    drop(db_loaded);
    if publishing {
        let max = match args.max_rustsec_db_age {
            Some(m) => m,
            None => match std::env::var("MULTUS_RUSTSEC_DB_MAX_AGE").ok().filter(|v| !v.is_empty()) {
                Some(v) => {
                    v.parse().with_context(|| format!("MULTUS_RUSTSEC_DB_MAX_AGE={v:?}: want a number of days"))?
                }
                None => scan::advisory_db::DEFAULT_MAX_AGE_DAYS,
            },
        };
        scan::advisory_db::check_age(&db_version, &scan::today(), max)?;
    }
    if args.dry_run {
        return Ok(vec![]);
    }

    let mut phases = Phases::default();
    let resolved =
        Resolved { root: &root, out_dir: &out_dir, access: &access, rustsec_db: &db_located, identity: &identity };
    let _ = std::fs::remove_file(out_dir.join("scan/summary.md"));
    let result = run_phases(sh, &args, &resolved, &chosen, &mut phases);
    eprint!("{}", phases.summary());
    // One step summary for the whole release, also when it failed (then with the gate's verdict
    // when the scan got that far).
    let gate_md = std::fs::read_to_string(out_dir.join("scan/summary.md")).ok();
    let (record_doc, failure, assets) = match &result {
        Ok(o) => (
            serde_json::from_slice(&std::fs::read(&o.record)?).context("reading back release.json")?,
            None,
            o.assets.clone(),
        ),
        Err(e) => (serde_json::Value::Null, Some(format!("{e:#}")), vec![]),
    };
    crate::record::append_step_summary(&crate::record::step_summary(
        &stamp.version,
        &stamp.commit,
        &record_doc,
        failure.as_deref(),
        gate_md.as_deref(),
        &assets,
    ))?;
    let s = result?;
    eprintln!("release summary:");
    eprintln!("  version {} commit {}", stamp.version, stamp.commit);
    eprintln!("  layout  {} ({} images, {} refs; archive {})", rel(&s.layout), s.images, s.refs, rel(&s.archive));
    eprintln!("  scan    {}", s.scan);
    eprintln!("  signed  {} manifests and indexes, {} SBOM attestations, as {identity}", s.signed, s.attested);
    if let Some(r) = &args.registry {
        eprintln!("  published to {r}");
    }
    eprintln!("  verified {} from {}", s.verified.len(), s.verified_from);
    for (r, d) in &s.verified {
        eprintln!("    {r} {d}");
    }
    eprintln!("  a consumer verifies with:");
    for line in &s.cosign {
        eprintln!("    {line}");
    }
    for d in &s.deployments {
        eprintln!("  deployment {}", rel(d));
    }
    eprintln!("  record  {} (digests, tags, SBOMs, verdict; schema xtask/schemas/release.schema.json)", rel(&s.record));
    eprintln!("  dist    {} ({} release assets; SHA256SUMS signed)", rel(&s.dist), s.assets.len() + s.signature_files);
    Ok(phases.timings())
}

struct Outcome {
    /// release.json
    record: PathBuf,
    /// The GitHub Release's assets (`dist/`), and the signature files of its SHA256SUMS.
    dist: PathBuf,
    assets: Vec<crate::dist::Asset>,
    signature_files: usize,
    layout: PathBuf,
    archive: PathBuf,
    images: usize,
    refs: usize,
    scan: String,
    signed: usize,
    attested: usize,
    verified: Vec<(String, String)>,
    verified_from: String,
    cosign: Vec<String>,
    deployments: Vec<PathBuf>,
}

/// The image references the manifests in `deployments/` carry: the published upstream-style tags
/// (`stable-thick`, `stable`), so the files apply as they are.
const DEPLOYMENT_THICK: &str = "ghcr.io/multus-rs/multus-rs:stable-thick";
const DEPLOYMENT_THIN: &str = "ghcr.io/multus-rs/multus-rs:stable";

/// A deployment manifest with its image references (`…:stable-thick` / `…:stable`) replaced by
/// `<repository>@<index digest>` of what this release produced (pure). Thick first: the thin tag is
/// a prefix of the thick one.
pub fn render_deployment(text: &str, repository: &str, thick: &str, thin: &str) -> String {
    text.replace(&format!("{DEPLOYMENT_THICK}\n"), &format!("{repository}@{thick}\n"))
        .replace(&format!("{DEPLOYMENT_THIN}\n"), &format!("{repository}@{thin}\n"))
}

/// Writes every `deployments/*.yml` rendered for this release into `out` (temp + rename).
fn write_deployments(
    root: &Path,
    out: &Path,
    repository: &str,
    thick: &str,
    thin: &str,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)?;
    let mut written = Vec::new();
    let mut sources: Vec<PathBuf> = std::fs::read_dir(root.join("deployments"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    sources.sort();
    for src in sources {
        let text = std::fs::read_to_string(&src).with_context(|| format!("reading {}", src.display()))?;
        let dest = out.join(src.file_name().unwrap());
        let tmp = dest.with_extension("yml.tmp");
        std::fs::write(&tmp, render_deployment(&text, repository, thick, thin))?;
        std::fs::rename(&tmp, &dest)?;
        written.push(dest);
    }
    Ok(written)
}

/// What `run` decided before any phase ran.
struct Resolved<'a> {
    root: &'a Path,
    out_dir: &'a Path,
    access: &'a Access,
    rustsec_db: &'a scan::advisory_db::Located,
    identity: &'a str,
}

fn run_phases(
    sh: &Shell,
    args: &Args,
    resolved: &Resolved,
    chosen: &[targets::Target],
    phases: &mut Phases,
) -> anyhow::Result<Outcome> {
    let Resolved { root, out_dir, access, rustsec_db, identity } = *resolved;
    match &args.prebuilt {
        Some(from) => {
            let order: Vec<String> = chosen.iter().map(|t| t.platform.clone()).collect();
            // `--arch` names what must be there; without it, every platform found is released.
            let required = !args.arches.is_empty();
            phases
                .run("merge prebuilt", || merge_prebuilt(&out_dir.join("release-artifacts"), from, &order, required))?;
        }
        None => {
            let b = build::Options {
                arches: args.arches.clone(),
                release: true,
                bins: vec![],
                target_dir: args.target_dir.clone().unwrap_or_else(|| root.join("target/xbuild")),
                out_dir: out_dir.join("release-artifacts"),
            };
            phases.run("build", || build::run(sh, &b))?;
        }
    }
    let out = phases.run("image", || {
        image::run(&image::Options {
            manifest: out_dir.join("release-artifacts/manifest.json"),
            out_dir: out_dir.join("oci"),
            images_dir: root.join("images"),
            images: vec![],
        })
    })?;
    let gate = phases.run("scan", || {
        scan::run(&scan::Options {
            layout: out.layout_dir.clone(),
            out_dir: out_dir.join("scan"),
            policy: root.join("trivy.yaml"),
            waivers: root.join(".trivyignore.yaml"),
            rustsec_db: rustsec_db.clone(),
            trivy: args.trivy.clone(),
            trivy_args: args.trivy_args.clone(),
            require_trivy: args.registry.is_some() && !args.allow_unscanned,
            step_summary: false,
            today: scan::today(),
        })
    })?;
    let scan_line = match &gate.trivy {
        scan::TrivyStatus::Scanned(v) => format!("passed: Trivy {} (DB {}) and RustSec", v.scanner, v.db),
        scan::TrivyStatus::NotScanned { .. } => {
            format!(
                "passed the RustSec check ({} advisories); NOT SCANNED by Trivy (not installed)",
                gate.rustsec_advisories
            )
        }
    };
    let sign_options = sign::SignOptions {
        layout: out.layout_dir.clone(),
        key: args.key.clone(),
        keyless: args.keyless,
        identity: identity.to_string(),
        sbom_dir: out_dir.join("sbom"),
        fulcio_url: args.fulcio_url.clone(),
        rekor_url: args.rekor_url.clone(),
        format: args.signature_format,
    };
    let (signed, public_pem, signed_as) = phases.run("sign", || sign::run_sign(&sign_options))?;
    // Keyless: verify as a consumer would, with the identity and issuer the certificate names
    // (never with the ephemeral key).
    let signer = match &signed_as {
        Some((id, issuer)) => sign::Signer::Keyless {
            policy: sign::sigstore::Policy {
                identity: sign::sigstore::Identity::Exact(id.clone()),
                issuer: issuer.clone(),
            },
            trusted_root: args.trusted_root.clone(),
        },
        None => sign::Signer::Key(out_dir.join("oci/cosign.pub")),
    };
    let pub_path = out_dir.join("oci/cosign.pub");
    std::fs::write(&pub_path, &public_pem)?;
    let key_arg = match &args.key {
        Some(k) if k.with_extension("pub").exists() => k.with_extension("pub"),
        _ => pub_path.clone(),
    };
    let top_refs: Vec<String> = {
        let (l, _) = crate::image::layout::read_verified(&out.layout_dir)?;
        l.index
            .manifests
            .iter()
            .filter(|d| d.media_type == crate::image::oci::MT_INDEX)
            .filter_map(|d| d.annotations.get(crate::image::oci::ANN_REF_NAME).cloned())
            .filter(|r| !sign::cosign::is_attachment_tag(r))
            .collect()
    };
    let refs_total = crate::image::layout::read_verified(&out.layout_dir)?.0.index.manifests.len();
    let mut cosign_lines = Vec::new();
    let (verified, verified_from) = match &args.registry {
        Some(r) => {
            phases.run("publish", || {
                publish::run(&publish::Options {
                    registry: r.clone(),
                    layout: out.layout_dir.clone(),
                    access: access.clone(),
                    mount_from: vec![],
                    chunk_size: publish::DEFAULT_CHUNK_SIZE,
                    attempts: publish::DEFAULT_ATTEMPTS,
                    backoff_ms: publish::DEFAULT_BACKOFF_MS,
                })
            })?;
            let v = phases.run("verify", || {
                let mut all = Vec::new();
                for t in &top_refs {
                    let c = sign::run_verify(&sign::VerifyOptions {
                        reference: format!("{r}:{t}"),
                        signer: signer.clone(),
                        identity: Some(identity.to_string()),
                        access: access.clone(),
                    })?;
                    all.extend(c.into_iter().map(|c| (format!("{r}:{t}"), c.digest)));
                }
                Ok(all)
            })?;
            (v, r.clone())
        }
        None => {
            let v = phases.run("verify", || {
                let c = sign::run_verify(&sign::VerifyOptions {
                    reference: format!("oci:{}", out.layout_dir.display()),
                    signer: signer.clone(),
                    identity: Some(identity.to_string()),
                    access: Access::default(),
                })?;
                Ok(c.into_iter().map(|c| (c.reference, c.digest)).collect::<Vec<_>>())
            })?;
            (v, out.layout_dir.display().to_string())
        }
    };
    let key_s =
        key_arg.strip_prefix(root).map(|p| p.display().to_string()).unwrap_or_else(|_| key_arg.display().to_string());
    let index_digests: Vec<&(String, String)> =
        signed.signed.iter().filter(|(name, _)| top_refs.contains(name)).collect();
    let digest_of = |image: &str| {
        out.images.iter().find(|i| i.name == image).map(|i| i.index.descriptor.digest.clone()).unwrap_or_default()
    };
    let (thick, thin) = (digest_of("thick"), digest_of("thin"));
    let deployments =
        phases.run("deployments", || write_deployments(root, &out_dir.join("deployments"), identity, &thick, &thin))?;
    for (name, digest) in index_digests {
        cosign_lines.push(if let Some((id, issuer)) = &signed_as {
            format!("{}   # {name}", sign::cosign_keyless_command(id, issuer, identity, digest))
        } else {
            format!("{}   # {name}", sign::cosign_command(&key_s, identity, digest))
        });
    }
    let record = phases.run("record", || {
        let manifest = image::read_manifest(&out_dir.join("release-artifacts/manifest.json"))?;
        let r = crate::record::record(&crate::record::Inputs {
            out_dir,
            manifest: &manifest,
            images: &out.images,
            gate: &gate,
            signed: &signed,
            keyless: args.keyless,
            format: args.signature_format,
            signed_as: signed_as.as_ref(),
            registry: args.registry.as_deref(),
            verified: &verified,
            layout: &out.layout_dir,
            archive: &out.archive,
            deployments: &deployments,
        });
        crate::record::write(&r, out_dir)
    })?;
    // The GitHub Release's assets: binaries per platform, manifests, SBOMs, release.json, and
    // SHA256SUMS over them, signed like the images.
    let (dist_dir, assets, sums_signature) = phases.run("dist", || {
        let manifest = image::read_manifest(&out_dir.join("release-artifacts/manifest.json"))?;
        let mut sboms: Vec<PathBuf> = signed.attested.iter().map(|(_, _, f)| PathBuf::from(f)).collect();
        sboms.sort();
        sboms.dedup();
        let copies: Vec<PathBuf> = deployments.iter().cloned().chain(sboms).chain([record.clone()]).collect();
        let planned = crate::dist::plan(&manifest, &out_dir.join("release-artifacts"), &copies)?;
        let dir = out_dir.join("dist");
        let assets = crate::dist::assemble(&dir, &planned, manifest.source_date_epoch)?;
        let sig = sign::sign_blob(&sign_options, &dir.join("SHA256SUMS"))?;
        crate::record::append_github_output(&format!("dist={}\n", dir.display()))?;
        Ok((dir, assets, sig))
    })?;
    Ok(Outcome {
        dist: dist_dir,
        signature_files: sums_signature.len(),
        assets,
        record,
        layout: out.layout_dir.clone(),
        archive: out.archive.clone(),
        images: out.images.len(),
        refs: refs_total,
        scan: scan_line,
        signed: signed.signed.len(),
        attested: signed.attested.len(),
        verified,
        verified_from,
        cosign: cosign_lines,
        deployments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> PlanInput {
        PlanInput {
            version: "1.0.0".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            platforms: ["linux/amd64", "linux/arm64", "linux/ppc64le", "linux/s390x", "linux/arm/v7"]
                .map(String::from)
                .to_vec(),
            binaries: vec!["multus".into(), "passthru".into()],
            images: vec!["thick".into(), "thin".into()],
            prebuilt: None,
            trivy: None,
            allow_unscanned: false,
            rustsec_db: "../shared/data/rustsec-advisory-db".into(),
            key: KeyChoice::DevelopmentKey { path: "target/dev-keys/cosign.key".into(), exists: false },
            identity: "ghcr.io/multus-rs/multus-rs".into(),
            registry: None,
            out: "target".into(),
        }
    }

    #[test]
    fn the_local_plan_is_golden() {
        let p = plan(&input());
        crate::report::golden("release-plan-local.json", &(serde_json::to_string_pretty(&p).unwrap() + "\n"));
        assert!(describe(&p).contains("5. verify   signatures, attestations and digests from target/oci/layout"));
    }

    #[test]
    fn deployments_reference_the_released_index_digests() {
        let text = "image: ghcr.io/multus-rs/multus-rs:stable-thick\nimage: ghcr.io/multus-rs/multus-rs:stable\n";
        assert_eq!(
            render_deployment(text, "127.0.0.1:5000/multus", "sha256:aa", "sha256:bb"),
            "image: 127.0.0.1:5000/multus@sha256:aa\nimage: 127.0.0.1:5000/multus@sha256:bb\n"
        );
        // Only whole references: another tag of the repository stays.
        let other = "image: ghcr.io/multus-rs/multus-rs:stable-debug\n";
        assert_eq!(render_deployment(other, "r", "sha256:aa", "sha256:bb"), other);
    }

    #[test]
    fn the_ci_plan_is_golden() {
        let p = plan(&PlanInput {
            prebuilt: Some("prebuilt".into()),
            trivy: Some("/usr/local/bin/trivy".into()),
            key: KeyChoice::Keyless { fulcio: sign::keyless::FULCIO.into(), rekor: sign::keyless::REKOR.into() },
            registry: Some(("ghcr.io/multus-rs/multus-rs".into(), false)),
            ..input()
        });
        crate::report::golden("release-plan-ci.json", &(serde_json::to_string_pretty(&p).unwrap() + "\n"));
    }

    #[test]
    fn per_platform_manifests_merge_in_table_order_and_must_agree() {
        let m = |platform: &str, commit: &str| build::Manifest {
            version: "1.0.0".into(),
            commit: commit.into(),
            source_date_epoch: 1,
            profile: "release".into(),
            targets: vec![build::TargetArtifacts {
                arch: platform.rsplit('/').next().unwrap().into(),
                platform: platform.into(),
                triple: "t".into(),
                toolchain: "x".into(),
                binaries: vec![],
            }],
        };
        let order = input().platforms;
        let both = [("a".into(), m("linux/s390x", "c")), ("b".into(), m("linux/amd64", "c"))];
        let merged = merge_manifests(&both, &order, false).unwrap();
        let got: Vec<&str> = merged.targets.iter().map(|t| t.platform.as_str()).collect();
        assert_eq!(got, ["linux/amd64", "linux/s390x"]);
        let e =
            merge_manifests(&[("a".into(), m("linux/s390x", "c")), ("b".into(), m("linux/amd64", "d"))], &order, false);
        assert!(e.unwrap_err().to_string().contains("b: built from"));
        let e =
            merge_manifests(&[("a".into(), m("linux/amd64", "c")), ("b".into(), m("linux/amd64", "c"))], &order, false);
        assert!(e.unwrap_err().to_string().contains("built twice"));
        // `--arch amd64` over a directory with more: amd64 only; a chosen platform missing fails.
        let amd64 = merge_manifests(&both, &["linux/amd64".to_string()], true).unwrap();
        assert_eq!(amd64.targets.len(), 1);
        assert_eq!(amd64.targets[0].platform, "linux/amd64");
        let e = merge_manifests(&both, &["linux/arm64".to_string()], true).unwrap_err().to_string();
        assert!(e.contains("no prebuilt binaries for [\"linux/arm64\"]"), "{e}");
    }
}
