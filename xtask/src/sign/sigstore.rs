//! Keyless verification: a Sigstore bundle (v0.3 from a referrer, or the v0.1 form of a legacy
//! signature layer) judged against a trust root (`trusted_root.json`) and an identity policy.
//!
//! The sigstore crate does what it has an API for: the Fulcio chain at signing time, the embedded
//! SCT against the CT logs, the identity/issuer policy, the signature over the artifact digest, the
//! consistency of the Rekor body with signature, certificate and digest, the certificate's validity
//! at the integrated time (`bundle::verify::blocking::Verifier`), and the Rekor inclusion proof with
//! its signed checkpoint (`rekor::models::InclusionProof`). Ours, because 0.15 leaves it as a TODO
//! (sigstore-rs#285): the signed entry timestamp (SET) over Rekor's canonical entry, checked with
//! the crate's key type; and the `--certificate-identity-regexp` policy.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::Digest as _;
use sigstore::bundle::verify::policy::{OIDCIssuer, PolicyError, PolicyResult, SingleX509ExtPolicy};
use sigstore::bundle::verify::{ArtifactDigest, VerificationPolicy, blocking::Verifier};
use sigstore::crypto::{CosignVerificationKey, Signature};
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

use crate::outcome::mismatch;

/// The Sigstore public-good instance's trust root (from sigstore-python 4.5.1's embedded TUF
/// snapshot, Apache-2.0): what `--trusted-root` defaults to, as cosign's does.
pub const PUBLIC_GOOD_TRUSTED_ROOT: &str = include_str!("public-good-trusted-root.json");

fn unb64(s: &str) -> anyhow::Result<Vec<u8>> {
    Ok(base64::engine::general_purpose::STANDARD.decode(s)?)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The keys and certificates of a `trusted_root.json`.
pub struct Trust {
    fulcio: Vec<Vec<u8>>,
    /// Rekor keys (SPKI DER) by log ID (hex).
    rekor: BTreeMap<String, Vec<u8>>,
    ctfe: BTreeMap<String, Vec<u8>>,
    verifier: Verifier,
}

impl Trust {
    pub fn parse(json: &str, origin: &str) -> anyhow::Result<Trust> {
        let v: Value = serde_json::from_str(json).with_context(|| format!("{origin}: not JSON"))?;
        if !v["mediaType"].as_str().is_some_and(|m| m.starts_with("application/vnd.dev.sigstore.trustedroot")) {
            bail!("{origin}: not a Sigstore trusted root (mediaType {})", v["mediaType"]);
        }
        let logs = |key: &str| -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
            let mut out = BTreeMap::new();
            for l in v[key].as_array().into_iter().flatten() {
                let (Some(id), Some(raw)) = (l["logId"]["keyId"].as_str(), l["publicKey"]["rawBytes"].as_str()) else {
                    continue;
                };
                out.insert(hex(&unb64(id)?), unb64(raw)?);
            }
            Ok(out)
        };
        let mut fulcio = Vec::new();
        for ca in v["certificateAuthorities"].as_array().into_iter().flatten() {
            for c in ca["certChain"]["certificates"].as_array().into_iter().flatten() {
                fulcio.push(unb64(c["rawBytes"].as_str().context("a CA certificate has no rawBytes")?)?);
            }
        }
        let (rekor, ctfe) = (logs("tlogs")?, logs("ctlogs")?);
        if fulcio.is_empty() || rekor.is_empty() {
            bail!("{origin}: the trusted root has no certificate authority or no transparency log");
        }
        let manual = sigstore::trust::ManualTrustRoot {
            fulcio_certs: fulcio.iter().map(|c| c.clone().into()).collect(),
            rekor_keys: rekor.clone(),
            ctfe_keys: ctfe.clone(),
        };
        let verifier = Verifier::new(Default::default(), manual)
            .map_err(|e| anyhow::anyhow!("{origin}: the sigstore crate refused the trust root: {e}"))?;
        Ok(Trust { fulcio, rekor, ctfe, verifier })
    }

    /// `--trusted-root FILE`, or the public-good root.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Trust> {
        match file {
            Some(f) => {
                let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
                Trust::parse(&text, &f.display().to_string())
            }
            None => Trust::parse(PUBLIC_GOOD_TRUSTED_ROOT, "the public-good trusted root"),
        }
    }

    pub fn summary(&self) -> String {
        format!("{} CA certificates, {} Rekor logs, {} CT logs", self.fulcio.len(), self.rekor.len(), self.ctfe.len())
    }
}

/// Whom a signature must come from: cosign's `--certificate-identity[-regexp]` and
/// `--certificate-oidc-issuer`.
#[derive(Debug, Clone)]
pub struct Policy {
    pub identity: Identity,
    pub issuer: String,
}

#[derive(Debug, Clone)]
pub enum Identity {
    Exact(String),
    Regexp(regex::Regex),
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.identity {
            Identity::Exact(i) => write!(f, "identity {i} from issuer {}", self.issuer),
            Identity::Regexp(r) => write!(f, "identity matching {} from issuer {}", r.as_str(), self.issuer),
        }
    }
}

/// The SAN names of a certificate (email, URI, or Sigstore's other-name).
fn san_names(cert: &x509_cert::Certificate) -> Vec<String> {
    let Ok(Some((_, san))) = cert.tbs_certificate().get_extension::<SubjectAltName>() else {
        return vec![];
    };
    san.0
        .iter()
        .filter_map(|n| match n {
            GeneralName::Rfc822Name(s) => Some(s.to_string()),
            GeneralName::UniformResourceIdentifier(s) => Some(s.to_string()),
            GeneralName::OtherName(o) => std::str::from_utf8(o.value.value()).ok().map(String::from),
            _ => None,
        })
        .collect()
}

impl VerificationPolicy for Policy {
    fn verify(&self, cert: &x509_cert::Certificate) -> PolicyResult {
        OIDCIssuer::new(&self.issuer).verify(cert)?;
        let names = san_names(cert);
        let ok = match &self.identity {
            Identity::Exact(i) => names.iter().any(|n| n == i),
            Identity::Regexp(r) => names.iter().any(|n| r.is_match(n)),
        };
        if ok {
            return Ok(());
        }
        Err(PolicyError::ExtensionCheckFailed {
            extension: "SubjectAltName".into(),
            expected: match &self.identity {
                Identity::Exact(i) => i.clone(),
                Identity::Regexp(r) => format!("a match of {}", r.as_str()),
            },
            actual: names.join(", "),
        })
    }
}

/// (identity, issuer) a Fulcio certificate names: its first SAN and its OIDC issuer extension.
pub fn certificate_identity(cert_pem: &str) -> anyhow::Result<(String, String)> {
    use x509_cert::der::Decode as _;
    let der = super::bundle::pem_to_der(cert_pem)?;
    let cert = x509_cert::Certificate::from_der(&der).context("the certificate is not DER X.509")?;
    let identity = san_names(&cert).into_iter().next().context("the certificate has no SAN")?;
    let issuer = cert
        .tbs_certificate()
        .extensions()
        .into_iter()
        .flatten()
        .find(|e| e.extn_id.to_string() == "1.3.6.1.4.1.57264.1.1")
        .and_then(|e| std::str::from_utf8(e.extn_value.as_bytes()).ok().map(String::from))
        .context("the certificate names no OIDC issuer (1.3.6.1.4.1.57264.1.1)")?;
    Ok((identity, issuer))
}

/// What one verified bundle showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub log_index: i64,
    pub integrated_time: i64,
}

/// Verifies `bundle` (JSON) for the artifact whose sha256 is `artifact` under `policy`: the
/// crate's checks, then the SET and the inclusion proof of its one Rekor entry (at least one of the
/// two must be there; every one that is there must verify).
pub fn verify_bundle(trust: &Trust, bundle: &[u8], artifact: [u8; 32], policy: &Policy) -> anyhow::Result<Verified> {
    let b: sigstore::bundle::Bundle =
        serde_json::from_slice(bundle).context("the bundle is not a Sigstore bundle (protobuf-specs JSON)")?;
    let raw: Value = serde_json::from_slice(bundle)?;
    let entries = raw["verificationMaterial"]["tlogEntries"].as_array().cloned().unwrap_or_default();
    let [entry] = entries.as_slice() else {
        return Err(mismatch(format!(
            "the bundle has {} Rekor entries, want 1 (a keyless signature must be in the transparency log)",
            entries.len()
        )));
    };
    trust
        .verifier
        .verify_digest_with(ArtifactDigest::from(artifact), b, policy, true)
        .map_err(|e| mismatch(format!("sigstore: {e}{}", source_chain(&e))))?;

    let key_id = hex(&unb64(entry["logId"]["keyId"].as_str().context("the Rekor entry has no logId")?)?);
    let spki = trust.rekor.get(&key_id).ok_or_else(|| {
        mismatch(format!("the Rekor entry is from log {key_id}, which the trusted root does not know"))
    })?;
    let key = CosignVerificationKey::try_from_der(spki).map_err(|e| anyhow::anyhow!("the Rekor key {key_id}: {e}"))?;
    // proto3 JSON: int64 as a string, and a zero left out.
    let num = |v: &Value, what: &str| -> anyhow::Result<i64> {
        if v.is_null() {
            return Ok(0);
        }
        v.as_str()
            .and_then(|s| s.parse().ok())
            .or(v.as_i64())
            .with_context(|| format!("the Rekor entry's {what} is not a number: {v}"))
    };
    let (log_index, integrated_time) =
        (num(&entry["logIndex"], "logIndex")?, num(&entry["integratedTime"], "integratedTime")?);
    let body_b64 = entry["canonicalizedBody"].as_str().context("the Rekor entry has no canonicalizedBody")?;
    let (set, proof) = (&entry["inclusionPromise"]["signedEntryTimestamp"], &entry["inclusionProof"]);
    if set.is_null() && proof.is_null() {
        return Err(mismatch("the Rekor entry has neither a signed entry timestamp nor an inclusion proof"));
    }
    if let Some(set) = set.as_str() {
        let signed = serde_json::to_vec(&json!({
            "body": body_b64, "integratedTime": integrated_time, "logID": key_id, "logIndex": log_index,
        }))?;
        key.verify_signature(Signature::Raw(&unb64(set)?), &signed).map_err(|e| {
            mismatch(format!("the Rekor signed entry timestamp does not verify with log {key_id}: {e}"))
        })?;
    }
    if proof.is_object() {
        let hashes = proof["hashes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| Ok(hex(&unb64(h.as_str().unwrap_or_default())?)))
            .collect::<anyhow::Result<Vec<String>>>()?;
        let api = sigstore::rekor::models::log_entry::RekorInclusionProof {
            hashes,
            log_index: num(&proof["logIndex"], "inclusion proof logIndex")?,
            root_hash: hex(&unb64(proof["rootHash"].as_str().unwrap_or_default())?),
            tree_size: num(&proof["treeSize"], "inclusion proof treeSize")? as _,
            checkpoint: proof["checkpoint"]["envelope"].as_str().unwrap_or_default().to_string(),
        };
        let p = sigstore::rekor::models::InclusionProof::try_from(&api)
            .map_err(|e| mismatch(format!("the Rekor inclusion proof is malformed: {e}")))?;
        p.verify(&unb64(body_b64)?, &key)
            .map_err(|e| mismatch(format!("the Rekor inclusion proof does not verify: {e}")))?;
    }
    Ok(Verified { log_index, integrated_time })
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = String::new();
    let mut s = e.source();
    while let Some(x) = s {
        out.push_str(&format!(": {x}"));
        s = x.source();
    }
    out
}

/// sha256 of bytes, as the verifier wants it.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(bytes).into()
}
