//! cosign's signature and attestation documents (cosign 2.x, the tag scheme that Debian's
//! registry and skopeo's `use-sigstore-attachments` read), built and parsed as plain functions:
//!
//! - the SimpleSigning payload `{"critical":{"identity":{"docker-reference"},"image":
//!   {"docker-manifest-digest"},"type":"cosign container image signature"},"optional":null}`,
//!   byte for byte as cosign writes it;
//! - the signature manifest under the tag `sha256-<hex>.sig`: one layer per payload (media type
//!   `application/vnd.dev.cosign.simplesigning.v1+json`) with the base64 signature in the
//!   `dev.cosignproject.cosign/signature` annotation, and the image config cosign puts there;
//! - attestations under `sha256-<hex>.att`: a DSSE envelope around an in-toto Statement v0.1
//!   (`predicateType` https://cyclonedx.org/bom for the SBOM), signed over DSSE's PAE.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::image::oci::{self, Blob, Descriptor, MT_CONFIG, MT_DSSE, MT_MANIFEST, MT_SIMPLESIGNING};

pub const ANN_SIGNATURE: &str = "dev.cosignproject.cosign/signature";
pub const ANN_CERTIFICATE: &str = "dev.sigstore.cosign/certificate";
pub const ANN_CHAIN: &str = "dev.sigstore.cosign/chain";
pub const ANN_BUNDLE: &str = "dev.sigstore.cosign/bundle";
pub const ANN_PREDICATE_TYPE: &str = "predicateType";
pub const SIGNATURE_TYPE: &str = "cosign container image signature";
pub const PREDICATE_CYCLONEDX: &str = "https://cyclonedx.org/bom";
pub const PAYLOAD_IN_TOTO: &str = "application/vnd.in-toto+json";
pub const STATEMENT_V01: &str = "https://in-toto.io/Statement/v0.1";
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimpleSigning {
    critical: Critical,
    optional: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Critical {
    identity: Identity,
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// The SimpleSigning payload that a signature over `digest` signs; `identity` is the repository
/// (`HOST[:PORT]/REPO`, no tag: cosign's form, which skopeo's `matchRepository` checks).
pub fn payload(identity: &str, digest: &str) -> Vec<u8> {
    serde_json::to_vec(&SimpleSigning {
        critical: Critical {
            identity: Identity { docker_reference: identity.into() },
            image: Image { docker_manifest_digest: digest.into() },
            kind: SIGNATURE_TYPE.into(),
        },
        optional: None,
    })
    .expect("the payload serialises")
}

/// (identity, digest) claimed by a payload; anything but a cosign container image signature is refused.
pub fn parse_payload(bytes: &[u8]) -> anyhow::Result<(String, String)> {
    let p: SimpleSigning = serde_json::from_slice(bytes).context("not a SimpleSigning payload")?;
    if p.critical.kind != SIGNATURE_TYPE {
        bail!("payload type {:?} is not {SIGNATURE_TYPE:?}", p.critical.kind);
    }
    Ok((p.critical.identity.docker_reference, p.critical.image.docker_manifest_digest))
}

/// `sha256-<hex>.sig`, the tag cosign stores the signatures of `digest` under.
pub fn sig_tag(digest: &str) -> anyhow::Result<String> {
    Ok(format!("sha256-{}.sig", oci::digest_hex(digest)?))
}

/// `sha256-<hex>.att`, the tag of the attestations about `digest`.
pub fn att_tag(digest: &str) -> anyhow::Result<String> {
    Ok(format!("sha256-{}.att", oci::digest_hex(digest)?))
}

/// A signature tag, attestation tag or referrers fallback tag `sha256-<hex>` (not an image).
pub fn is_attachment_tag(tag: &str) -> bool {
    let Some(rest) = tag.strip_prefix("sha256-") else { return false };
    let hex = rest.strip_suffix(".sig").or(rest.strip_suffix(".att")).unwrap_or(rest);
    hex.len() == 64 && hex.bytes().all(|c| c.is_ascii_hexdigit())
}

/// One payload with its annotations (a layer of a signature or attestation manifest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub annotations: BTreeMap<String, String>,
}

/// The config cosign (go-containerregistry's empty image + one appended layer per payload) writes.
#[derive(Serialize)]
struct ArtifactConfig {
    architecture: &'static str,
    created: &'static str,
    history: Vec<Created>,
    os: &'static str,
    rootfs: oci::RootFs,
    config: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Created {
    created: &'static str,
}

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The signature (or attestation) manifest over `layers`: (manifest, config, payload blobs).
pub fn artifact_manifest(layers: &[Attached]) -> anyhow::Result<(Blob, Blob, Vec<Blob>)> {
    if layers.is_empty() {
        bail!("a signature manifest needs at least one payload");
    }
    let blobs: Vec<Blob> = layers.iter().map(|a| Blob::new(&a.media_type, a.bytes.clone())).collect();
    let config = Blob::json(
        MT_CONFIG,
        &ArtifactConfig {
            architecture: "",
            created: ZERO_TIME,
            history: layers.iter().map(|_| Created { created: ZERO_TIME }).collect(),
            os: "",
            rootfs: oci::RootFs {
                kind: "layers".into(),
                diff_ids: blobs.iter().map(|b| b.descriptor.digest.clone()).collect(),
            },
            config: BTreeMap::new(),
        },
    )?;
    let layer_descs: Vec<Descriptor> = blobs
        .iter()
        .zip(layers)
        .map(|(b, a)| Descriptor { annotations: a.annotations.clone(), ..b.descriptor.clone() })
        .collect();
    let manifest = Blob::json(
        MT_MANIFEST,
        &oci::Manifest {
            schema_version: 2,
            media_type: Some(MT_MANIFEST.into()),
            artifact_type: None,
            config: config.descriptor.clone(),
            layers: layer_descs,
            subject: None,
            annotations: BTreeMap::new(),
        },
    )?;
    Ok((manifest, config, blobs))
}

/// A signature layer: the payload signed for `digest`, with the signature (and, keyless, the
/// certificate, chain and Rekor bundle) in its annotations.
pub fn signature_layer(payload: Vec<u8>, sig: &[u8], extra: &BTreeMap<String, String>) -> Attached {
    let mut annotations = extra.clone();
    annotations.insert(ANN_SIGNATURE.into(), base64::engine::general_purpose::STANDARD.encode(sig));
    Attached { media_type: MT_SIMPLESIGNING.into(), bytes: payload, annotations }
}

/// DSSE's pre-authentication encoding: what a DSSE signature signs.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// An in-toto Statement v0.1 about `digest` (named `identity`), predicate given as compact JSON.
pub fn statement(identity: &str, digest: &str, predicate_type: &str, predicate_json: &str) -> anyhow::Result<Vec<u8>> {
    statement_of(STATEMENT_V01, identity, digest, predicate_type, predicate_json)
}

/// The same as an in-toto Statement v1 (what Sigstore bundles carry).
pub fn statement_v1(
    identity: &str,
    digest: &str,
    predicate_type: &str,
    predicate_json: &str,
) -> anyhow::Result<Vec<u8>> {
    statement_of(STATEMENT_V1, identity, digest, predicate_type, predicate_json)
}

fn statement_of(
    kind: &str,
    identity: &str,
    digest: &str,
    predicate_type: &str,
    predicate_json: &str,
) -> anyhow::Result<Vec<u8>> {
    let hex = oci::digest_hex(digest)?;
    let s = serde_json::to_string;
    Ok(format!(
        r#"{{"_type":{},"predicateType":{},"subject":[{{"name":{},"digest":{{"sha256":{}}}}}],"predicate":{predicate_json}}}"#,
        s(kind)?,
        s(predicate_type)?,
        s(identity)?,
        s(hex)?
    )
    .into_bytes())
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub payload: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    pub keyid: String,
    pub sig: String,
}

/// The DSSE envelope of an in-toto statement with its signature over `pae`.
pub fn envelope(statement: &[u8], sig: &[u8]) -> Vec<u8> {
    let b = |x: &[u8]| base64::engine::general_purpose::STANDARD.encode(x);
    serde_json::to_vec(&Envelope {
        payload_type: PAYLOAD_IN_TOTO.into(),
        payload: b(statement),
        signatures: vec![EnvelopeSignature { keyid: String::new(), sig: b(sig) }],
    })
    .expect("the envelope serialises")
}

/// An attestation layer (cosign leaves the signature annotation empty: it is in the envelope).
pub fn attestation_layer(envelope: Vec<u8>, predicate_type: &str, extra: &BTreeMap<String, String>) -> Attached {
    let mut annotations = extra.clone();
    annotations.insert(ANN_SIGNATURE.into(), String::new());
    annotations.insert(ANN_PREDICATE_TYPE.into(), predicate_type.into());
    Attached { media_type: MT_DSSE.into(), bytes: envelope, annotations }
}

/// (statement bytes, signatures) of an envelope.
pub fn parse_envelope(bytes: &[u8]) -> anyhow::Result<(Vec<u8>, Vec<Vec<u8>>)> {
    let e: Envelope = serde_json::from_slice(bytes).context("not a DSSE envelope")?;
    if e.payload_type != PAYLOAD_IN_TOTO {
        bail!("DSSE payloadType {:?} is not {PAYLOAD_IN_TOTO}", e.payload_type);
    }
    let d = |s: &str| base64::engine::general_purpose::STANDARD.decode(s).context("DSSE field is not base64");
    let sigs = e.signatures.iter().map(|s| d(&s.sig)).collect::<anyhow::Result<Vec<_>>>()?;
    Ok((d(&e.payload)?, sigs))
}

/// (subject digest, predicate type) of a statement.
pub fn parse_statement(bytes: &[u8]) -> anyhow::Result<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(bytes).context("the statement is not JSON")?;
    if v["_type"] != STATEMENT_V01 && v["_type"] != STATEMENT_V1 {
        bail!("not an in-toto statement: _type {}", v["_type"]);
    }
    let hex = v["subject"][0]["digest"]["sha256"].as_str().context("the statement has no sha256 subject")?;
    Ok((format!("sha256:{hex}"), v["predicateType"].as_str().unwrap_or_default().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d";

    #[test]
    fn the_payload_is_cosigns_byte_for_byte() {
        let p = payload("127.0.0.1:5000/multus", DIGEST);
        crate::report::golden("simplesigning-payload.json", &(String::from_utf8(p.clone()).unwrap() + "\n"));
        assert_eq!(parse_payload(&p).unwrap(), ("127.0.0.1:5000/multus".to_string(), DIGEST.to_string()));
        let other = String::from_utf8(p).unwrap().replace(SIGNATURE_TYPE, "atomic container signature");
        assert!(parse_payload(other.as_bytes()).is_err());
        assert!(parse_payload(br#"{"critical":{}}"#).is_err());
    }

    #[test]
    fn the_signature_manifest_and_its_config_are_golden() {
        let layer = signature_layer(payload("ghcr.io/multus-rs/multus-rs", DIGEST), b"0123456789", &BTreeMap::new());
        let (m, c, blobs) = artifact_manifest(&[layer]).unwrap();
        crate::report::golden("signature-manifest.json", &(String::from_utf8(m.bytes.clone()).unwrap() + "\n"));
        crate::report::golden("signature-config.json", &(String::from_utf8(c.bytes.clone()).unwrap() + "\n"));
        assert_eq!(blobs.len(), 1);
        assert_eq!(
            sig_tag(DIGEST).unwrap(),
            "sha256-6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d.sig"
        );
        assert!(is_attachment_tag(&att_tag(DIGEST).unwrap()) && !is_attachment_tag("thick-1.0.0"));
        assert!(is_attachment_tag(&format!("sha256-{}", &DIGEST[7..])) && !is_attachment_tag("sha256-abc.sig"));
    }

    #[test]
    fn dsse_pae_statement_and_envelope() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
        let st = statement("ghcr.io/x/y", DIGEST, PREDICATE_CYCLONEDX, r#"{"bomFormat":"CycloneDX"}"#).unwrap();
        crate::report::golden("in-toto-statement.json", &(String::from_utf8(st.clone()).unwrap() + "\n"));
        assert_eq!(parse_statement(&st).unwrap(), (DIGEST.to_string(), PREDICATE_CYCLONEDX.to_string()));
        let env = envelope(&st, b"sig");
        let (back, sigs) = parse_envelope(&env).unwrap();
        assert_eq!((back, sigs), (st, vec![b"sig".to_vec()]));
        let layer = attestation_layer(env, PREDICATE_CYCLONEDX, &BTreeMap::new());
        assert_eq!(layer.annotations[ANN_SIGNATURE], "");
    }
}
