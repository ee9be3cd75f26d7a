//! `cargo xtask keygen`, `sign` and `verify`: cosign-compatible signatures without cosign.
//!
//! `sign` signs every image index and every platform manifest of the local layout (SimpleSigning
//! payloads, `sha256-<hex>.sig` signature manifests) and attaches to every platform manifest a
//! CycloneDX SBOM (`sbom`) as a signed in-toto attestation (`sha256-<hex>.att`). Signatures and
//! attestations become index.json entries named by those tags, so `publish` pushes them as the
//! tags cosign and skopeo look for. Signing again replaces the earlier signatures.
//!
//! `verify` reads an image back from the layout (`oci:DIR[:REF]`) or a registry
//! (`HOST[:PORT]/REPO:TAG|@DIGEST`), checks every manifest's digest, every signature against the
//! public key and its payload against the digest and identity, every attestation's envelope and
//! subject, and prints the `cosign verify` line a consumer runs.
//!
//! Documents are built in `cosign` (pure), keys in `key`, keyless CI signing in `keyless`.

pub mod cosign;
pub mod key;
pub mod keyless;

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
    #[arg(long, default_value = keyless::FULCIO, hide = true)]
    pub fulcio_url: String,
    #[arg(long, default_value = keyless::REKOR, hide = true)]
    pub rekor_url: String,
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

impl Signing<'_> {
    pub fn sign(&self, payload: &[u8]) -> anyhow::Result<(Vec<u8>, BTreeMap<String, String>)> {
        match self {
            Signing::Key(k) => Ok((k.sign(payload)?, BTreeMap::new())),
            Signing::Keyless(s) => s.sign(payload),
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
) -> anyhow::Result<Signed> {
    registry::Target::parse(identity, false)
        .with_context(|| format!("identity {identity:?}: want HOST[:PORT]/REPO"))?;
    let (mut l, _) = layout::read_verified(dir).context("the layout failed verification; nothing was signed")?;
    let targets = sign_targets(&l)?;
    if targets.is_empty() {
        bail!("{}: nothing to sign", dir.display());
    }
    std::fs::create_dir_all(sbom_dir).with_context(|| format!("creating {}", sbom_dir.display()))?;
    let mut signed = Signed { identity: identity.into(), signed: vec![], attested: vec![] };
    let mut created = None;
    for (name, d) in &targets {
        let payload = cosign::payload(identity, &d.digest);
        let (sig, extra) = signing.sign(&payload)?;
        attach(&mut l, cosign::sig_tag(&d.digest)?, &[cosign::signature_layer(payload, &sig, &extra)])?;
        eprintln!("  signed   {} {name}", d.digest);
        signed.signed.push((name.clone(), d.digest.clone()));
        if d.media_type != MT_MANIFEST || d.platform.is_none() {
            continue;
        }
        let m: oci::Manifest = serde_json::from_slice(&l.blobs[&d.digest])?;
        let cfg: serde_json::Value = serde_json::from_slice(&l.blobs[&m.config.digest])?;
        let when = cfg["created"].as_str().unwrap_or("1970-01-01T00:00:00Z").to_string();
        created.get_or_insert(when.clone());
        let platform = d.platform.as_ref().map(|p| format!("{}/{}", p.os, p.architecture)).unwrap_or_default();
        let version = m.annotations.get(oci::ANN_VERSION).cloned().unwrap_or_default();
        let bins = crate::inventory::binaries(&l, &d.digest)?;
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
        let st = cosign::statement(identity, &d.digest, cosign::PREDICATE_CYCLONEDX, &serde_json::to_string(&bom)?)?;
        let (sig, extra) = signing.sign(&cosign::pae(cosign::PAYLOAD_IN_TOTO, &st))?;
        let layer = cosign::attestation_layer(cosign::envelope(&st, &sig), cosign::PREDICATE_CYCLONEDX, &extra);
        attach(&mut l, cosign::att_tag(&d.digest)?, &[layer])?;
        eprintln!("  attested {} {name}: CycloneDX SBOM of {} binaries ({})", d.digest, bins.len(), file.display());
        signed.attested.push((name.clone(), d.digest.clone(), file.display().to_string()));
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

/// `cargo xtask sign`.
pub fn run_sign(args: &SignOptions) -> anyhow::Result<(Signed, String)> {
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
        let signed = sign_layout(dir, signing, identity, sbom_dir, &licenses)?;
        eprintln!(
            "summary: {} signatures, {} SBOM attestations in {}",
            signed.signed.len(),
            signed.attested.len(),
            dir.display()
        );
        Ok((signed, signing.public_pem()))
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
        let (sig, ann) = signing.sign(&bytes)?;
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
    pub signatures: usize,
    pub attestations: usize,
    pub identity: String,
}

fn verify_signature(src: &mut dyn Source, spki: &[u8], digest: &str, identity: Option<&str>) -> anyhow::Result<String> {
    let tag = cosign::sig_tag(digest)?;
    let (_, bytes) = src.manifest(&tag)?.ok_or_else(|| mismatch(format!("{digest}: not signed (no {tag})")))?;
    let m: oci::Manifest = serde_json::from_slice(&bytes).with_context(|| format!("{tag}: not a manifest"))?;
    let mut problems = Vec::new();
    for l in m.layers.iter().filter(|l| l.media_type == MT_SIMPLESIGNING) {
        let payload = src.blob(&l.digest)?;
        let sig = l.annotations.get(cosign::ANN_SIGNATURE).map(|s| base64::engine::general_purpose::STANDARD.decode(s));
        let Some(Ok(sig)) = sig else {
            problems.push(format!("layer {} has no base64 signature annotation", l.digest));
            continue;
        };
        if let Err(e) = key::verify(spki, &payload, &sig) {
            problems.push(format!("payload {}: {e}", l.digest));
            continue;
        }
        let (who, what) = cosign::parse_payload(&payload)?;
        if what != digest {
            problems.push(format!("payload {} is signed for {what}, not {digest}", l.digest));
        } else if identity.is_some_and(|i| i != who) {
            problems.push(format!("payload {} names {who}, not {}", l.digest, identity.unwrap_or_default()));
        } else {
            return Ok(who);
        }
    }
    Err(mismatch(format!(
        "{digest}: no valid signature in {tag}: {}",
        if problems.is_empty() { "no signature layers".to_string() } else { problems.join("; ") }
    )))
}

fn verify_attestation(src: &mut dyn Source, spki: &[u8], digest: &str) -> anyhow::Result<()> {
    let tag = cosign::att_tag(digest)?;
    let (_, bytes) = src.manifest(&tag)?.ok_or_else(|| mismatch(format!("{digest}: no SBOM attestation ({tag})")))?;
    let m: oci::Manifest = serde_json::from_slice(&bytes).with_context(|| format!("{tag}: not a manifest"))?;
    for l in m.layers.iter().filter(|l| l.media_type == oci::MT_DSSE) {
        let (st, sigs) = cosign::parse_envelope(&src.blob(&l.digest)?)?;
        let pae = cosign::pae(cosign::PAYLOAD_IN_TOTO, &st);
        if !sigs.iter().any(|s| key::verify(spki, &pae, s).is_ok()) {
            return Err(mismatch(format!("{tag}: the envelope {} does not verify with the key", l.digest)));
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

/// Verifies `reference` (and, for an index, every manifest in it).
pub fn verify_reference(
    src: &mut dyn Source,
    reference: &str,
    spki: &[u8],
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
        attestations: 0,
        identity: String::new(),
    };
    let mut todo = vec![(digest, mt, bytes)];
    while let Some((d, mt, bytes)) = todo.pop() {
        let who = verify_signature(src, spki, &d, identity)?;
        c.signatures += 1;
        if c.identity.is_empty() {
            c.identity = who;
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
                verify_attestation(src, spki, &d)?;
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
    /// The public key (cosign.pub).
    #[arg(long)]
    pub key: PathBuf,
    /// The repository the signatures must name (default: the registry's HOST/REPO; for a layout, any).
    #[arg(long)]
    pub identity: Option<String>,
    #[command(flatten)]
    pub access: AccessArgs,
}

/// What `verify` runs with.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    pub reference: String,
    pub key: PathBuf,
    pub identity: Option<String>,
    pub access: Access,
}

impl VerifyArgs {
    pub fn resolve(self) -> anyhow::Result<VerifyOptions> {
        Ok(VerifyOptions {
            reference: self.reference,
            key: self.key,
            identity: self.identity,
            access: self.access.resolve()?,
        })
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

pub fn run_verify(args: &VerifyOptions) -> anyhow::Result<Vec<Checked>> {
    let pem = std::fs::read_to_string(&args.key).with_context(|| format!("reading {}", args.key.display()))?;
    let spki = key::parse_public_pem(&pem).with_context(|| args.key.display().to_string())?;
    let key_s = args.key.display().to_string();
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
            let c = verify_reference(&mut src, &r, &spki, args.identity.as_deref())
                .with_context(|| format!("verifying {r}"))?;
            eprintln!(
                "  ok {r} {}: {} signatures, {} SBOM attestations, identity {}",
                c.digest, c.signatures, c.attestations, c.identity
            );
            out.push(c);
        }
        if let Some(c) = out.first() {
            eprintln!(
                "once published, a consumer checks it with:\n  {}",
                cosign_command(&key_s, &c.identity, &c.digest)
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
        let c = verify_reference(&mut src, &reference, &spki, Some(&identity))
            .with_context(|| format!("verifying {}", args.reference))?;
        eprintln!(
            "  ok {} {}: {} manifests, {} signatures, {} SBOM attestations, identity {identity}",
            args.reference,
            c.digest,
            c.manifests.len(),
            c.signatures,
            c.attestations
        );
        eprintln!("  a consumer verifies with: {}", cosign_command(&key_s, &target.name(), &c.digest));
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
