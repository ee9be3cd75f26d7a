//! `cargo xtask keygen`, `sign` and `verify`: cosign-compatible signatures without cosign.
//!
//! `sign` signs every image index and every platform manifest of the local layout (SimpleSigning
//! payloads, `sha256-<hex>.sig` signature manifests) and attaches to every platform manifest a
//! CycloneDX SBOM (`sbom`) as a signed in-toto attestation (`sha256-<hex>.att`). Signatures and
//! attestations become index.json entries named by those tags, so `publish` pushes them as the
//! tags cosign and skopeo look for. Signing again replaces the earlier signatures.
//!
//! `verify` reads an image back from the layout (`oci:DIR[:REF]`) or a registry
//! (`HOST[:PORT]/REPO:TAG|@DIGEST`), checks every manifest's digest, every signature (against the
//! public key, or keylessly, below) and its payload against the digest and identity, every
//! attestation's envelope and subject, and prints the `cosign verify` line a consumer runs.
//!
//! Beside the legacy tags, `sign` attaches Sigstore bundles v0.3 as OCI 1.1 referrers, as cosign v3
//! does: to every signed manifest its signature (a DSSE in-toto statement, predicate
//! `https://sigstore.dev/cosign/sign/v1`), to every platform manifest its SBOM attestation; they are
//! listed under the referrers tag-schema index `sha256-<hex>` (`--signature-format` chooses;
//! default both). `verify` checks
//! either with a key (`--key`) or keylessly (`--certificate-identity[-regexp]`,
//! `--certificate-oidc-issuer`, `--trusted-root`): chain, SCT, identity, issuer, Rekor SET and
//! inclusion proof, and the signed digest.
//!
//! Documents are built in `cosign` and `bundle` (pure), keys in `key`, keyless signing in
//! `keyless`, keyless verification (the sigstore crate) in `sigstore`.

pub mod bundle;
pub mod cosign;
pub mod key;
pub mod keyless;
pub mod sigstore;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine as _;

use crate::image::layout::{self, Layout};
use crate::image::oci::{self, Descriptor, MT_INDEX, MT_MANIFEST, MT_SIMPLESIGNING};
use crate::outcome::mismatch;
use crate::registry::access::{Access, AccessArgs};
use crate::registry::{self, Client};

/// The password of a cosign key, as cosign takes it: COSIGN_PASSWORD (which may be empty).
pub fn password() -> anyhow::Result<Vec<u8>> {
    match std::env::var_os("COSIGN_PASSWORD") {
        Some(p) => Ok(p.into_encoded_bytes()),
        None => bail!("COSIGN_PASSWORD is not set (set it to the key's password; empty for none)"),
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct KeygenArgs {
    /// Where cosign.key and cosign.pub go (default: the current directory).
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
}

pub fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    let dir = args.output_dir.unwrap_or_else(|| PathBuf::from("."));
    let (k, p) = key::generate_files(&dir, &password()?, key::SCRYPT_LOG_N)?;
    eprintln!("private key written to {} (encrypted with COSIGN_PASSWORD; never commit it)", k.display());
    eprintln!("public key written to {}", p.display());
    Ok(())
}

/// The development key under target/ (empty password), made on first use.
pub fn dev_key(root: &Path) -> anyhow::Result<PathBuf> {
    let dir = root.join("target/dev-keys");
    let k = dir.join("cosign.key");
    if !k.exists() {
        key::generate_files(&dir, b"", key::SCRYPT_LOG_N_LEGACY)?;
        eprintln!("generated the development key {} (empty password; not for publishing)", k.display());
    }
    Ok(k)
}

#[derive(clap::Args, Clone, Debug)]
pub struct SignArgs {
    /// The OCI layout to sign (default target/oci/layout).
    #[arg(long)]
    pub layout: Option<PathBuf>,
    /// cosign.key to sign with (password from COSIGN_PASSWORD); default: the development key
    /// target/dev-keys/cosign.key, made on first use.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Keyless: a Fulcio certificate for a GitHub Actions OIDC token, signatures logged in Rekor (CI).
    #[arg(long, conflicts_with = "key")]
    pub keyless: bool,
    /// The repository the images are published as, signed into every payload (HOST[:PORT]/REPO;
    /// default ghcr.io/OWNER/NAME from the workspace's repository URL).
    #[arg(long)]
    pub identity: Option<String>,
    /// Where the SBOMs are also written as files (default target/sbom).
    #[arg(long)]
    pub sbom_dir: Option<PathBuf>,
    /// Fulcio (keyless); a private Sigstore instance or the tests' local stack.
    #[arg(long, default_value = keyless::FULCIO)]
    pub fulcio_url: String,
    /// Rekor (keyless).
    #[arg(long, default_value = keyless::REKOR)]
    pub rekor_url: String,
    /// Which signature formats to attach: cosign's legacy `.sig`/`.att` tags, Sigstore bundles as
    /// OCI 1.1 referrers (cosign v3's default), or both.
    #[arg(long, value_enum, default_value_t = Format::Both)]
    pub signature_format: Format,
}

/// Which signature formats `sign` attaches.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Legacy,
    Bundle,
    Both,
}

impl Format {
    pub fn legacy(self) -> bool {
        self != Format::Bundle
    }
    pub fn bundle(self) -> bool {
        self != Format::Legacy
    }
}

/// What `sign` runs with (defaults resolved; `release` builds one field by field).
#[derive(Clone, Debug)]
pub struct SignOptions {
    pub layout: PathBuf,
    /// `None`: the development key under target/dev-keys (made on first use).
    pub key: Option<PathBuf>,
    pub keyless: bool,
    pub identity: String,
    pub sbom_dir: PathBuf,
    pub fulcio_url: String,
    pub rekor_url: String,
    pub format: Format,
}

impl SignArgs {
    pub fn resolve(self) -> anyhow::Result<SignOptions> {
        let root = crate::project::root();
        Ok(SignOptions {
            layout: self.layout.unwrap_or_else(|| root.join("target/oci/layout")),
            key: self.key,
            keyless: self.keyless,
            identity: match self.identity {
                Some(i) => i,
                None => default_identity(&root)?,
            },
            sbom_dir: self.sbom_dir.unwrap_or_else(|| root.join("target/sbom")),
            fulcio_url: self.fulcio_url,
            rekor_url: self.rekor_url,
            format: self.signature_format,
        })
    }
}

/// `ghcr.io/owner/name` from `https://github.com/owner/name`.
pub fn default_identity(root: &Path) -> anyhow::Result<String> {
    let repo = crate::image::workspace_repository(root)?;
    let path = repo.trim_end_matches('/').trim_end_matches(".git");
    let path = path
        .strip_prefix("https://github.com/")
        .with_context(|| format!("repository {repo} is not on GitHub: pass --identity"))?;
    Ok(format!("ghcr.io/{}", path.to_ascii_lowercase()))
}

/// How signatures are made.
pub enum Signing<'t> {
    Key(key::Signer),
    Keyless(keyless::Session<'t>),
}

/// One signature, with what cosign's formats carry beside it.
pub struct Made {
    pub sig: Vec<u8>,
    /// The legacy layer's annotations (keyless: certificate, chain, Rekor bundle).
    pub annotations: BTreeMap<String, String>,
}

impl Signing<'_> {
    pub fn sign(&self, payload: &[u8]) -> anyhow::Result<Made> {
        match self {
            Signing::Key(k) => Ok(Made { sig: k.sign(payload)?, annotations: BTreeMap::new() }),
            Signing::Keyless(s) => {
                let (sig, annotations) = s.sign(payload)?;
                Ok(Made { sig, annotations })
            }
        }
    }

    /// Signs an in-toto statement as a DSSE envelope and returns its Sigstore bundle.
    pub fn attest_bundle(&self, statement: &[u8]) -> anyhow::Result<Vec<u8>> {
        let pt = cosign::PAYLOAD_IN_TOTO;
        match self {
            Signing::Keyless(s) => {
                let (sig, rekor) = s.sign_dsse(pt, statement)?;
                bundle::dsse_bundle(
                    pt,
                    statement,
                    &sig,
                    &bundle::Material::Keyless { certificate: &s.certificate, rekor: &rekor },
                )
            }
            Signing::Key(k) => {
                let sig = k.sign(&cosign::pae(pt, statement))?;
                bundle::dsse_bundle(pt, statement, &sig, &bundle::Material::Key { spki: &k.spki() })
            }
        }
    }

    /// Keyless: (identity, issuer) of the signing certificate, what a consumer pins.
    pub fn certificate_identity(&self) -> Option<anyhow::Result<(String, String)>> {
        match self {
            Signing::Key(_) => None,
            Signing::Keyless(s) => Some(sigstore::certificate_identity(&s.certificate)),
        }
    }

    /// The public key that verifies (for keyless: the ephemeral key of the certificate).
    pub fn public_pem(&self) -> String {
        match self {
            Signing::Key(k) => k.public_pem(),
            Signing::Keyless(s) => s.signer.public_pem(),
        }
    }
}

/// What `sign_layout` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Signed {
    pub identity: String,
    /// (what, digest): every index and platform manifest signed.
    pub signed: Vec<(String, String)>,
    /// (platform ref, digest, SBOM file): every platform manifest attested.
    pub attested: Vec<(String, String, String)>,
    /// (signed digest, referrer digest): every Sigstore bundle attached as a referrer.
    pub referrers: Vec<(String, String)>,
}

/// Index and platform manifests of the layout, with a name for each (ref name or parent/platform).
fn sign_targets(l: &Layout) -> anyhow::Result<Vec<(String, Descriptor)>> {
    let mut out: Vec<(String, Descriptor)> = Vec::new();
    let mut push = |name: String, d: &Descriptor| {
        if !out.iter().any(|(_, o)| o.digest == d.digest) {
            out.push((name, Descriptor { platform: d.platform.clone(), annotations: BTreeMap::new(), ..d.clone() }));
        }
    };
    for d in &l.index.manifests {
        let name = d.annotations.get(oci::ANN_REF_NAME).cloned().unwrap_or_else(|| d.digest.clone());
        if cosign::is_attachment_tag(&name) {
            continue;
        }
        push(name.clone(), d);
        if d.media_type == MT_INDEX {
            let idx: oci::Index = serde_json::from_slice(&l.blobs[&d.digest])?;
            for c in &idx.manifests {
                push(format!("{name}/{}", c.platform.as_ref().map(|p| p.slug()).unwrap_or_default()), c);
            }
        }
    }
    Ok(out)
}

/// Adds (or replaces) an attachment manifest under `tag` in the layout.
fn attach(l: &mut Layout, tag: String, layers: &[cosign::Attached]) -> anyhow::Result<()> {
    let (manifest, config, blobs) = cosign::artifact_manifest(layers)?;
    for b in std::iter::once(&config).chain(&blobs).chain([&manifest]) {
        l.blobs.insert(b.descriptor.digest.clone(), b.bytes.clone());
    }
    l.index.manifests.retain(|d| d.annotations.get(oci::ANN_REF_NAME) != Some(&tag));
    let mut d = manifest.descriptor.clone();
    d.annotations.insert(oci::ANN_REF_NAME.into(), tag);
    l.index.manifests.push(d);
    Ok(())
}

/// Adds (or replaces) a manifest or index under `tag` in the layout.
fn attach_blob(l: &mut Layout, tag: String, blob: &oci::Blob) {
    l.blobs.insert(blob.descriptor.digest.clone(), blob.bytes.clone());
    l.index.manifests.retain(|d| d.annotations.get(oci::ANN_REF_NAME) != Some(&tag));
    let mut d = blob.descriptor.clone();
    d.annotations.insert(oci::ANN_REF_NAME.into(), tag);
    l.index.manifests.push(d);
}

/// The `created` of a platform manifest's config, or of an index's first child's.
fn created_of(l: &Layout, d: &Descriptor) -> anyhow::Result<String> {
    let mut d = d.clone();
    if d.media_type == MT_INDEX {
        let idx: oci::Index = serde_json::from_slice(&l.blobs[&d.digest])?;
        d = idx.manifests.first().cloned().with_context(|| format!("index {} is empty", d.digest))?;
    }
    let m: oci::Manifest = serde_json::from_slice(&l.blobs[&d.digest])?;
    let cfg: serde_json::Value = serde_json::from_slice(&l.blobs[&m.config.digest])?;
    Ok(cfg["created"].as_str().unwrap_or("1970-01-01T00:00:00Z").to_string())
}

/// Adds `bundle` about `d` to the layout as a referrer; returns it for the fallback index.
fn add_referrer(
    l: &mut Layout,
    d: &Descriptor,
    b: &[u8],
    content: &str,
    predicate: &str,
) -> anyhow::Result<(oci::Blob, oci::Manifest)> {
    let (manifest, layer) = bundle::referrer(b, d, &created_of(l, d)?, content, predicate)?;
    let empty = bundle::empty();
    for blob in [&manifest, &layer, &empty] {
        l.blobs.insert(blob.descriptor.digest.clone(), blob.bytes.clone());
    }
    let parsed: oci::Manifest = serde_json::from_slice(&manifest.bytes)?;
    Ok((manifest, parsed))
}

/// Attests the CycloneDX SBOM of the platform manifest `d` (legacy `.att` and/or a DSSE bundle
/// referrer pushed onto `referrers`); returns the SBOM file written.
#[allow(clippy::too_many_arguments)]
fn attest(
    l: &mut Layout,
    signing: &Signing,
    identity: &str,
    sbom_dir: &Path,
    licenses: &crate::sbom::Licenses,
    name: &str,
    d: &Descriptor,
    format: Format,
    referrers: &mut Vec<(oci::Blob, oci::Manifest)>,
) -> anyhow::Result<String> {
    let m: oci::Manifest = serde_json::from_slice(&l.blobs[&d.digest])?;
    let when = created_of(l, d)?;
    let platform = d.platform.as_ref().map(|p| format!("{}/{}", p.os, p.architecture)).unwrap_or_default();
    let version = m.annotations.get(oci::ANN_VERSION).cloned().unwrap_or_default();
    let bins = crate::inventory::binaries(l, &d.digest)?;
    let subject = crate::sbom::Subject {
        name: identity,
        version: &version,
        manifest_digest: &d.digest,
        platform: &platform,
        created: &when,
    };
    let mut bom = crate::sbom::bom(&subject, &bins, licenses);
    let file = sbom_dir.join(format!("{}.cdx.json", name.replace('/', "_")));
    std::fs::write(&file, crate::report::canonical_json(bom.clone()))
        .with_context(|| format!("writing {}", file.display()))?;
    bom.sort_all_objects();
    let predicate = serde_json::to_string(&bom)?;
    if format.legacy() {
        let st = cosign::statement(identity, &d.digest, cosign::PREDICATE_CYCLONEDX, &predicate)?;
        let made = signing.sign(&cosign::pae(cosign::PAYLOAD_IN_TOTO, &st))?;
        let layer =
            cosign::attestation_layer(cosign::envelope(&st, &made.sig), cosign::PREDICATE_CYCLONEDX, &made.annotations);
        attach(l, cosign::att_tag(&d.digest)?, &[layer])?;
    }
    if format.bundle() {
        let st = cosign::statement_v1(identity, &d.digest, cosign::PREDICATE_CYCLONEDX, &predicate)?;
        let b = signing.attest_bundle(&st)?;
        referrers.push(add_referrer(l, d, &b, bundle::CONTENT_DSSE, cosign::PREDICATE_CYCLONEDX)?);
    }
    eprintln!("  attested {} {name}: CycloneDX SBOM of {} binaries ({})", d.digest, bins.len(), file.display());
    Ok(file.display().to_string())
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SSZ` (the images' `created`).
pub fn epoch_of(rfc3339: &str) -> anyhow::Result<u64> {
    let n = |r: std::ops::Range<usize>| -> anyhow::Result<i64> {
        rfc3339.get(r).and_then(|s| s.parse().ok()).with_context(|| format!("{rfc3339:?} is not YYYY-MM-DDTHH:MM:SSZ"))
    };
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Ok((days * 86_400 + n(11..13)? * 3600 + n(14..16)? * 60 + n(17..19)?) as u64)
}

/// Signs every index and platform manifest of the layout in `dir` and attests an SBOM for each
/// platform manifest; rewrites the layout (and the oci-archive beside it, when there is one).
pub fn sign_layout(
    dir: &Path,
    signing: &Signing,
    identity: &str,
    sbom_dir: &Path,
    licenses: &crate::sbom::Licenses,
    format: Format,
) -> anyhow::Result<Signed> {
    registry::Target::parse(identity, false)
        .with_context(|| format!("identity {identity:?}: want HOST[:PORT]/REPO"))?;
    let (mut l, _) = layout::read_verified(dir).context("the layout failed verification; nothing was signed")?;
    let targets = sign_targets(&l)?;
    if targets.is_empty() {
        bail!("{}: nothing to sign", dir.display());
    }
    std::fs::create_dir_all(sbom_dir).with_context(|| format!("creating {}", sbom_dir.display()))?;
    let mut signed = Signed { identity: identity.into(), signed: vec![], attested: vec![], referrers: vec![] };
    let mut created = None;
    for (name, d) in &targets {
        // The referrers of `d` (its signature bundle, then its attestation bundle), listed together
        // under the fallback tag; signing again replaces them.
        let mut referrers = Vec::new();
        if format.legacy() {
            let payload = cosign::payload(identity, &d.digest);
            let made = signing.sign(&payload)?;
            attach(
                &mut l,
                cosign::sig_tag(&d.digest)?,
                &[cosign::signature_layer(payload, &made.sig, &made.annotations)],
            )?;
        }
        if format.bundle() {
            // cosign v3's image signature: an in-toto Statement v1 about the digest, empty predicate.
            let st = cosign::statement_v1(identity, &d.digest, bundle::PREDICATE_SIGN, "{}")?;
            let b = signing.attest_bundle(&st)?;
            referrers.push(add_referrer(&mut l, d, &b, bundle::CONTENT_DSSE, bundle::PREDICATE_SIGN)?);
        }
        eprintln!("  signed   {} {name}", d.digest);
        signed.signed.push((name.clone(), d.digest.clone()));
        if d.media_type == MT_MANIFEST && d.platform.is_some() {
            let file = attest(&mut l, signing, identity, sbom_dir, licenses, name, d, format, &mut referrers)?;
            created.get_or_insert(created_of(&l, d)?);
            signed.attested.push((name.clone(), d.digest.clone(), file));
        }
        if !referrers.is_empty() {
            let index = bundle::fallback_index(&referrers)?;
            attach_blob(&mut l, bundle::fallback_tag(&d.digest)?, &index);
            signed.referrers.extend(referrers.iter().map(|(b, _)| (d.digest.clone(), b.descriptor.digest.clone())));
        }
    }
    layout::retain_reachable(&mut l)?;
    layout::write(&l, dir)?;
    let (back, _) = layout::read_verified(dir).context("the signed layout failed verification")?;
    if back.index != l.index {
        bail!("{}: what was read back differs from what was written", dir.display());
    }
    let archive = dir.with_file_name("oci-archive.tar");
    if dir.file_name().is_some_and(|n| n == "layout") && archive.exists() {
        layout::write_archive(&l, &archive, epoch_of(created.as_deref().unwrap_or("1970-01-01T00:00:00Z"))?)?;
        eprintln!("  rewrote {} with the signatures", archive.display());
    }
    Ok(signed)
}

/// (identity, issuer) of a keyless signing certificate.
pub type SignedAs = (String, String);

/// `cargo xtask sign`: what was signed, the public key that verifies it, and (keyless) the
/// certificate's identity and issuer.
pub fn run_sign(args: &SignOptions) -> anyhow::Result<(Signed, String, Option<SignedAs>)> {
    let root = crate::project::root();
    let (dir, identity, sbom_dir) = (&args.layout, &args.identity, &args.sbom_dir);
    let meta = cargo_metadata::MetadataCommand::new()
        .current_dir(&root)
        .other_options(vec!["--locked".into()])
        .exec()
        .context("cargo metadata (licences for the SBOM)")?;
    let licenses = crate::sbom::Licenses::from_metadata(&meta);
    with_signing(args, |signing| {
        eprintln!("==> sign {} as {identity}", dir.display());
        let signed = sign_layout(dir, signing, identity, sbom_dir, &licenses, args.format)?;
        eprintln!(
            "summary: {} signatures, {} Sigstore bundle referrers, {} SBOM attestations in {}",
            if args.format.legacy() { signed.signed.len() } else { 0 },
            signed.referrers.len(),
            signed.attested.len(),
            dir.display()
        );
        let who = signing.certificate_identity().transpose()?;
        if let Some((identity, issuer)) = &who {
            eprintln!("  signed keylessly as {identity} (issuer {issuer})");
        }
        Ok((signed, signing.public_pem(), who))
    })
}

/// Runs `f` with the signer `args` asks for: a key, the development key, or a keyless session
/// (a GitHub Actions OIDC token exchanged for a Fulcio certificate).
fn with_signing<T>(args: &SignOptions, f: impl FnOnce(&Signing) -> anyhow::Result<T>) -> anyhow::Result<T> {
    let root = crate::project::root();
    let transport;
    let signing = if args.keyless {
        let url = std::env::var("ACTIONS_ID_TOKEN_REQUEST_URL").context(
            "--keyless needs a GitHub Actions OIDC token (ACTIONS_ID_TOKEN_REQUEST_URL; permissions: id-token: write)",
        )?;
        let tok =
            std::env::var("ACTIONS_ID_TOKEN_REQUEST_TOKEN").context("ACTIONS_ID_TOKEN_REQUEST_TOKEN is not set")?;
        transport = registry::http::Ureq::new(None)?;
        let token = keyless::github_token(&transport, &url, &tok)?;
        eprintln!("==> keyless: Fulcio {} / Rekor {}", args.fulcio_url, args.rekor_url);
        Signing::Keyless(keyless::Session::start(&transport, &args.fulcio_url, &args.rekor_url, &token)?)
    } else {
        let (path, pw) = match &args.key {
            Some(k) => (k.clone(), password()?),
            None => (dev_key(&root)?, Vec::new()),
        };
        eprintln!("==> sign with {}", path.display());
        Signing::Key(key::load(&path, &pw)?)
    };
    f(&signing)
}

/// `cosign sign-blob` for a file: `FILE.sig` (the base64 ECDSA P-256 signature over the file,
/// which `cosign verify-blob --key cosign.pub --signature FILE.sig FILE` and `openssl dgst -sha256
/// -verify` accept) and, keyless, `FILE.pem` (the Fulcio certificate). Written temp + rename.
pub fn sign_blob(args: &SignOptions, file: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    with_signing(args, |signing| {
        let Made { sig, annotations: ann, .. } = signing.sign(&bytes)?;
        let mut written = Vec::new();
        let mut out = |ext: &str, data: &[u8]| -> anyhow::Result<()> {
            let mut name = file.as_os_str().to_owned();
            name.push(ext);
            let path = PathBuf::from(name);
            crate::report::write_atomic(&path, data)?;
            written.push(path);
            Ok(())
        };
        use base64::Engine as _;
        out(".sig", base64::engine::general_purpose::STANDARD.encode(&sig).as_bytes())?;
        if let Some(cert) = ann.get(cosign::ANN_CERTIFICATE) {
            out(".pem", cert.as_bytes())?;
        }
        Ok(written)
    })
}

/// Where `verify` reads manifests and blobs.
pub trait Source {
    /// (media type, bytes) of a manifest by tag or digest; `None` when absent.
    fn manifest(&mut self, reference: &str) -> anyhow::Result<Option<(String, Vec<u8>)>>;
    /// A blob, checked against its digest.
    fn blob(&mut self, digest: &str) -> anyhow::Result<Vec<u8>>;
}

pub struct LayoutSource(pub Layout);

impl Source for LayoutSource {
    fn manifest(&mut self, reference: &str) -> anyhow::Result<Option<(String, Vec<u8>)>> {
        let d = if reference.starts_with("sha256:") {
            self.0.blobs.get(reference).map(|_| reference.to_string())
        } else {
            self.0
                .index
                .manifests
                .iter()
                .find(|d| d.annotations.get(oci::ANN_REF_NAME).map(String::as_str) == Some(reference))
                .map(|d| d.digest.clone())
        };
        Ok(d.map(|d| {
            let bytes = self.0.blobs[&d].clone();
            let mt = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["mediaType"].as_str().map(String::from));
            (mt.unwrap_or_default(), bytes)
        }))
    }

    fn blob(&mut self, digest: &str) -> anyhow::Result<Vec<u8>> {
        self.0.blobs.get(digest).cloned().with_context(|| format!("blob {digest} is not in the layout"))
    }
}

pub struct RegistrySource<'t>(pub Client<'t>);

impl Source for RegistrySource<'_> {
    fn manifest(&mut self, reference: &str) -> anyhow::Result<Option<(String, Vec<u8>)>> {
        if self.0.manifest_digest(reference)?.is_none() {
            return Ok(None);
        }
        self.0.get_manifest(reference).map(Some)
    }

    fn blob(&mut self, digest: &str) -> anyhow::Result<Vec<u8>> {
        self.0.get_blob(digest)
    }
}

/// What one reference's verification found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Checked {
    /// The reference as given (tag, ref name or digest).
    pub reference: String,
    pub digest: String,
    /// (digest, media type) of the reference and every manifest under it.
    pub manifests: Vec<(String, String)>,
    /// Legacy `.sig` signatures that verified (one per manifest signed in that format).
    pub signatures: usize,
    /// Sigstore bundle referrers that verified.
    pub bundles: usize,
    pub attestations: usize,
    /// The repository the legacy payloads name (empty when only bundles were found).
    pub identity: String,
}

/// How signatures are judged: by a public key, or keylessly by a trust root and an identity policy.
pub enum Check {
    Key(Vec<u8>),
    Keyless { trust: Box<sigstore::Trust>, policy: sigstore::Policy },
}

impl Check {
    /// Judges `sig` over `payload`, with the layer annotations a keyless signature carries.
    fn signature(&self, payload: &[u8], sig: &[u8], ann: &BTreeMap<String, String>) -> anyhow::Result<()> {
        match self {
            Check::Key(spki) => key::verify(spki, payload, sig),
            Check::Keyless { trust, policy } => {
                let cert = ann.get(cosign::ANN_CERTIFICATE).filter(|c| !c.is_empty()).ok_or_else(|| {
                    mismatch(format!(
                        "no Fulcio certificate ({} annotation) beside the signature",
                        cosign::ANN_CERTIFICATE
                    ))
                })?;
                let rb = ann.get(cosign::ANN_BUNDLE).filter(|c| !c.is_empty()).ok_or_else(|| {
                    mismatch(format!("no Rekor entry ({} annotation) beside the signature", cosign::ANN_BUNDLE))
                })?;
                let b = bundle::legacy_bundle(payload, sig, cert, rb)?;
                sigstore::verify_bundle(trust, &b, sigstore::sha256(payload), policy).map(|_| ())
            }
        }
    }

    /// Judges a Sigstore bundle about the manifest `bytes` (digest `digest`); returns the
    /// predicate type of an attestation bundle, `None` for a signature bundle (cosign v3's
    /// `sign/v1` statement, or, keylessly, a message signature over the manifest).
    fn bundle(&self, b: &[u8], digest: &str, bytes: &[u8]) -> anyhow::Result<Option<String>> {
        let v: serde_json::Value = serde_json::from_slice(b).context("the bundle is not JSON")?;
        let b64 = |s: &serde_json::Value, what: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(s.as_str().unwrap_or_default())
                .map_err(|_| mismatch(format!("the bundle's {what} is not base64")))
        };
        let dsse = &v["dsseEnvelope"];
        let statement = if dsse.is_object() { Some(b64(&dsse["payload"], "DSSE payload")?) } else { None };
        match self {
            Check::Key(spki) => {
                // Key-based bundles are the DSSE statements `sign` writes; a key-signed message
                // signature (cosign sign-blob's form) is not an image signature we make or accept.
                let st = statement.as_ref().ok_or_else(|| mismatch("a key-based bundle without a DSSE envelope"))?;
                let sig = b64(&dsse["signatures"][0]["sig"], "DSSE signature")?;
                let pt = dsse["payloadType"].as_str().unwrap_or_default();
                key::verify(spki, &cosign::pae(pt, st), &sig)?;
            }
            Check::Keyless { trust, policy } => {
                sigstore::verify_bundle(trust, b, sigstore::sha256(bytes), policy)?;
            }
        }
        match statement {
            Some(st) => {
                let (subject, predicate) = cosign::parse_statement(&st)?;
                if subject != digest {
                    return Err(mismatch(format!("the statement is about {subject}, not {digest}")));
                }
                // cosign v3's image signature is a statement too.
                Ok(Some(predicate).filter(|p| p != bundle::PREDICATE_SIGN))
            }
            None => Ok(None),
        }
    }
}

/// The legacy signature of `digest`: `Ok(None)` when there is no `.sig` tag, the payload's identity
/// when one layer verifies.
fn verify_legacy(
    src: &mut dyn Source,
    check: &Check,
    digest: &str,
    identity: Option<&str>,
) -> anyhow::Result<Option<String>> {
    let tag = cosign::sig_tag(digest)?;
    let Some((_, bytes)) = src.manifest(&tag)? else { return Ok(None) };
    let m: oci::Manifest = serde_json::from_slice(&bytes).with_context(|| format!("{tag}: not a manifest"))?;
    let mut problems = Vec::new();
    for l in m.layers.iter().filter(|l| l.media_type == MT_SIMPLESIGNING) {
        let payload = src.blob(&l.digest)?;
        let sig = l.annotations.get(cosign::ANN_SIGNATURE).map(|s| base64::engine::general_purpose::STANDARD.decode(s));
        let Some(Ok(sig)) = sig else {
            problems.push(format!("layer {} has no base64 signature annotation", l.digest));
            continue;
        };
        if let Err(e) = check.signature(&payload, &sig, &l.annotations) {
            problems.push(format!("payload {}: {e}", l.digest));
            continue;
        }
        let (who, what) = cosign::parse_payload(&payload)?;
        if what != digest {
            problems.push(format!("payload {} is signed for {what}, not {digest}", l.digest));
        } else if identity.is_some_and(|i| i != who) {
            problems.push(format!("payload {} names {who}, not {}", l.digest, identity.unwrap_or_default()));
        } else {
            return Ok(Some(who));
        }
    }
    Err(mismatch(format!(
        "{digest}: no valid signature in {tag}: {}",
        if problems.is_empty() { "no signature layers".to_string() } else { problems.join("; ") }
    )))
}

/// What the bundles referring to a manifest showed.
#[derive(Default)]
struct Bundles {
    signatures: usize,
    /// Predicate types of the attestation bundles.
    attestations: Vec<String>,
}

/// The Sigstore bundles referring to `digest` (listed by the referrers fallback tag); every one must
/// verify.
fn verify_bundles(src: &mut dyn Source, check: &Check, digest: &str, bytes: &[u8]) -> anyhow::Result<Bundles> {
    let tag = bundle::fallback_tag(digest)?;
    let mut out = Bundles::default();
    let Some((_, index)) = src.manifest(&tag)? else { return Ok(out) };
    for r in bundle::bundle_referrers(&index).with_context(|| tag.clone())? {
        let (_, m) =
            src.manifest(&r.digest)?.ok_or_else(|| mismatch(format!("{tag}: referrer {} is missing", r.digest)))?;
        if oci::sha256_digest(&m) != r.digest {
            return Err(mismatch(format!("{tag}: referrer {} has other bytes", r.digest)));
        }
        let layer = bundle::bundle_layer(&m, digest).map_err(|e| mismatch(format!("referrer {}: {e}", r.digest)))?;
        let b = src.blob(&layer.digest)?;
        match check.bundle(&b, digest, bytes).map_err(|e| {
            mismatch(format!("{digest}: the Sigstore bundle in referrer {} does not verify: {e}", r.digest))
        })? {
            None => out.signatures += 1,
            Some(predicate) => out.attestations.push(predicate),
        }
    }
    Ok(out)
}

fn verify_attestation(src: &mut dyn Source, check: &Check, digest: &str) -> anyhow::Result<()> {
    let tag = cosign::att_tag(digest)?;
    let (_, bytes) = src.manifest(&tag)?.ok_or_else(|| mismatch(format!("{digest}: no SBOM attestation ({tag})")))?;
    let m: oci::Manifest = serde_json::from_slice(&bytes).with_context(|| format!("{tag}: not a manifest"))?;
    for l in m.layers.iter().filter(|l| l.media_type == oci::MT_DSSE) {
        let (st, sigs) = cosign::parse_envelope(&src.blob(&l.digest)?)?;
        let pae = cosign::pae(cosign::PAYLOAD_IN_TOTO, &st);
        // Each signature judged once: the first that verifies wins, else every reason is named.
        let mut why = Vec::new();
        if !sigs.iter().any(|s| check.signature(&pae, s, &l.annotations).map_err(|e| why.push(e.to_string())).is_ok()) {
            return Err(mismatch(format!("{tag}: the envelope {} does not verify: {}", l.digest, why.join("; "))));
        }
        let (subject, predicate) = cosign::parse_statement(&st)?;
        if subject != digest {
            return Err(mismatch(format!("{tag}: the statement is about {subject}, not {digest}")));
        }
        if predicate == cosign::PREDICATE_CYCLONEDX {
            return Ok(());
        }
    }
    Err(mismatch(format!("{tag}: no CycloneDX attestation")))
}

/// Verifies `reference` (and, for an index, every manifest in it): each must carry a valid legacy
/// signature or Sigstore bundle, and every bundle found must be valid.
pub fn verify_reference(
    src: &mut dyn Source,
    reference: &str,
    check: &Check,
    identity: Option<&str>,
) -> anyhow::Result<Checked> {
    let (mt, bytes) = src.manifest(reference)?.with_context(|| format!("{reference}: no such manifest"))?;
    let digest = oci::sha256_digest(&bytes);
    if reference.starts_with("sha256:") && reference != digest {
        return Err(mismatch(format!("{reference}: the manifest's bytes have digest {digest}")));
    }
    let mut c = Checked {
        reference: reference.to_string(),
        digest: digest.clone(),
        manifests: vec![(digest.clone(), mt.clone())],
        signatures: 0,
        bundles: 0,
        attestations: 0,
        identity: String::new(),
    };
    let mut todo = vec![(digest, mt, bytes)];
    while let Some((d, mt, bytes)) = todo.pop() {
        let legacy = verify_legacy(src, check, &d, identity)?;
        let bundles = verify_bundles(src, check, &d, &bytes)?;
        if legacy.is_none() && bundles.signatures == 0 {
            return Err(mismatch(format!(
                "{d}: not signed (no {} and no Sigstore bundle under {})",
                cosign::sig_tag(&d)?,
                bundle::fallback_tag(&d)?
            )));
        }
        c.bundles += bundles.signatures + bundles.attestations.len();
        if let Some(who) = legacy {
            c.signatures += 1;
            if c.identity.is_empty() {
                c.identity = who;
            }
        }
        match mt.as_str() {
            MT_INDEX => {
                let idx: oci::Index = serde_json::from_slice(&bytes).with_context(|| format!("index {d}"))?;
                for child in &idx.manifests {
                    let (cmt, cb) = src
                        .manifest(&child.digest)?
                        .with_context(|| format!("{d}: child {} is missing", child.digest))?;
                    if oci::sha256_digest(&cb) != child.digest {
                        return Err(mismatch(format!("{d}: child {} has other bytes", child.digest)));
                    }
                    c.manifests.push((child.digest.clone(), cmt.clone()));
                    todo.push((child.digest.clone(), cmt, cb));
                }
            }
            MT_MANIFEST => {
                // An SBOM attestation in either format; a legacy one that is there must verify.
                let legacy_att = src.manifest(&cosign::att_tag(&d)?)?.is_some();
                if legacy_att {
                    verify_attestation(src, check, &d)?;
                } else if !bundles.attestations.iter().any(|p| p == cosign::PREDICATE_CYCLONEDX) {
                    return Err(mismatch(format!(
                        "{d}: no SBOM attestation ({} or a CycloneDX bundle under {})",
                        cosign::att_tag(&d)?,
                        bundle::fallback_tag(&d)?
                    )));
                }
                c.attestations += 1;
            }
            other => bail!("{d}: cannot verify media type {other}"),
        }
    }
    Ok(c)
}

#[derive(clap::Args, Clone, Debug)]
pub struct VerifyArgs {
    /// oci:DIR[:REF] (the local layout; every image when REF is left out) or HOST[:PORT]/REPO:TAG|@DIGEST.
    pub reference: String,
    /// The public key (cosign.pub) of key-based signatures.
    #[arg(long, required_unless_present_any = ["certificate_identity", "certificate_identity_regexp"])]
    pub key: Option<PathBuf>,
    /// Keyless: the identity (SAN: the signing workflow's URI, or an email) signatures must carry.
    #[arg(long, conflicts_with = "key", requires = "certificate_oidc_issuer")]
    pub certificate_identity: Option<String>,
    /// Keyless: a regular expression the signing identity must match (anchor it: ^...$).
    #[arg(long, conflicts_with_all = ["key", "certificate_identity"], requires = "certificate_oidc_issuer")]
    pub certificate_identity_regexp: Option<String>,
    /// Keyless: the OIDC issuer of the identity (GitHub Actions: https://token.actions.githubusercontent.com).
    #[arg(long, conflicts_with = "key")]
    pub certificate_oidc_issuer: Option<String>,
    /// Keyless: the Sigstore trust root (trusted_root.json; default: the public-good instance's).
    #[arg(long, conflicts_with = "key")]
    pub trusted_root: Option<PathBuf>,
    /// The repository the legacy payloads must name (default: the registry's HOST/REPO; for a layout, any).
    #[arg(long)]
    pub identity: Option<String>,
    #[command(flatten)]
    pub access: AccessArgs,
}

/// Who must have signed.
#[derive(Clone, Debug)]
pub enum Signer {
    Key(PathBuf),
    Keyless { policy: sigstore::Policy, trusted_root: Option<PathBuf> },
}

/// What `verify` runs with.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    pub reference: String,
    pub signer: Signer,
    pub identity: Option<String>,
    pub access: Access,
}

impl VerifyArgs {
    pub fn resolve(self) -> anyhow::Result<VerifyOptions> {
        let signer = match (self.key, self.certificate_identity, self.certificate_identity_regexp) {
            (Some(k), None, None) => Signer::Key(k),
            (None, exact, regexp) => {
                let identity = match (exact, regexp) {
                    (Some(i), None) => sigstore::Identity::Exact(i),
                    (None, Some(r)) => sigstore::Identity::Regexp(
                        regex::Regex::new(&r).with_context(|| format!("--certificate-identity-regexp {r:?}"))?,
                    ),
                    _ => bail!("give --key, or --certificate-identity[-regexp] with --certificate-oidc-issuer"),
                };
                let issuer =
                    self.certificate_oidc_issuer.context("keyless verification needs --certificate-oidc-issuer")?;
                Signer::Keyless { policy: sigstore::Policy { identity, issuer }, trusted_root: self.trusted_root }
            }
            _ => bail!("give either --key or a certificate identity, not both"),
        };
        Ok(VerifyOptions { reference: self.reference, signer, identity: self.identity, access: self.access.resolve()? })
    }
}

/// `HOST[:PORT]/REPO` and the tag or digest of a registry reference.
pub fn split_reference(r: &str) -> anyhow::Result<(String, String)> {
    if let Some((name, digest)) = r.split_once('@') {
        oci::digest_hex(digest)?;
        return Ok((name.into(), digest.into()));
    }
    let slash = r.find('/').with_context(|| format!("{r}: want HOST[:PORT]/REPO:TAG"))?;
    match r[slash..].rfind(':') {
        Some(i) => Ok((r[..slash + i].into(), r[slash + i + 1..].into())),
        None => bail!("{r}: give a tag or a digest (HOST[:PORT]/REPO:TAG or @sha256:...)"),
    }
}

/// The line a consumer runs to check the same thing with cosign (2.x, key-based, no tlog).
pub fn cosign_command(key: &str, name: &str, digest: &str) -> String {
    format!("cosign verify --key {key} --insecure-ignore-tlog=true {name}@{digest}")
}

/// The `cosign verify` line a consumer runs to check what `signer` checked.
fn consumer_line(signer: &Signer, name: &str, digest: &str) -> String {
    match signer {
        Signer::Key(k) => cosign_command(&k.display().to_string(), name, digest),
        Signer::Keyless { policy, .. } => match &policy.identity {
            sigstore::Identity::Exact(i) => cosign_keyless_command(i, &policy.issuer, name, digest),
            sigstore::Identity::Regexp(r) => format!(
                "cosign verify --certificate-identity-regexp '{}' --certificate-oidc-issuer {} {name}@{digest}",
                r.as_str(),
                policy.issuer
            ),
        },
    }
}

/// The keyless `cosign verify` line for (identity, issuer).
pub fn cosign_keyless_command(identity: &str, issuer: &str, name: &str, digest: &str) -> String {
    format!("cosign verify --certificate-identity {identity} --certificate-oidc-issuer {issuer} {name}@{digest}")
}

pub fn run_verify(args: &VerifyOptions) -> anyhow::Result<Vec<Checked>> {
    let check = match &args.signer {
        Signer::Key(path) => {
            let pem = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let spki = key::parse_public_pem(&pem).with_context(|| path.display().to_string())?;
            Check::Key(spki)
        }
        Signer::Keyless { policy, trusted_root } => {
            let trust = sigstore::Trust::load(trusted_root.as_deref())?;
            eprintln!("==> keyless: {policy}; trust root: {}", trust.summary());
            Check::Keyless { trust: Box::new(trust), policy: policy.clone() }
        }
    };
    let mut out = Vec::new();
    if let Some(rest) = args.reference.strip_prefix("oci:") {
        let (dir, one) = match rest.rsplit_once(':') {
            Some((d, r)) if !r.contains('/') => (PathBuf::from(d), Some(r.to_string())),
            _ => (PathBuf::from(rest), None),
        };
        let (l, _) = layout::read_verified(&dir).context("the layout failed verification")?;
        let refs: Vec<String> = match one {
            Some(r) => vec![r],
            None => l
                .index
                .manifests
                .iter()
                .filter_map(|d| d.annotations.get(oci::ANN_REF_NAME).cloned())
                .filter(|r| !cosign::is_attachment_tag(r))
                .collect(),
        };
        let mut src = LayoutSource(l);
        for r in refs {
            let c = verify_reference(&mut src, &r, &check, args.identity.as_deref())
                .with_context(|| format!("verifying {r}"))?;
            eprintln!(
                "  ok {r} {}: {} signatures, {} Sigstore bundles, {} SBOM attestations, identity {}",
                c.digest, c.signatures, c.bundles, c.attestations, c.identity
            );
            out.push(c);
        }
        if let Some(c) = out.first() {
            eprintln!(
                "once published, a consumer checks it with:\n  {}",
                consumer_line(&args.signer, &c.identity, &c.digest)
            );
        }
    } else {
        let (name, reference) = split_reference(&args.reference)?;
        let target = args.access.target(&name)?;
        let transport = args.access.transport()?;
        let creds = args.access.creds_for(&target.host)?;
        let client = Client::new(&transport, target.clone(), creds, registry::retry::Policy::default());
        let mut src = RegistrySource(client);
        let identity = args.identity.clone().unwrap_or_else(|| target.name());
        let c = verify_reference(&mut src, &reference, &check, Some(&identity))
            .with_context(|| format!("verifying {}", args.reference))?;
        eprintln!(
            "  ok {} {}: {} manifests, {} signatures, {} Sigstore bundles, {} SBOM attestations, identity {identity}",
            args.reference,
            c.digest,
            c.manifests.len(),
            c.signatures,
            c.bundles,
            c.attestations
        );
        eprintln!("  a consumer verifies with: {}", consumer_line(&args.signer, &target.name(), &c.digest));
        out.push(c);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_dates() {
        assert_eq!(split_reference("127.0.0.1:5000/a/b:t-1").unwrap(), ("127.0.0.1:5000/a/b".into(), "t-1".into()));
        let d = format!("sha256:{}", "0".repeat(64));
        assert_eq!(split_reference(&format!("h/r@{d}")).unwrap(), ("h/r".into(), d));
        assert!(split_reference("127.0.0.1:5000/a").is_err());
        assert_eq!(epoch_of("2023-11-14T22:13:20Z").unwrap(), 1_700_000_000);
        assert_eq!(epoch_of(&oci::rfc3339(951_782_400)).unwrap(), 951_782_400);
        assert_eq!(default_identity(&crate::project::root()).unwrap(), "ghcr.io/multus-rs/multus-rs");
    }
}
