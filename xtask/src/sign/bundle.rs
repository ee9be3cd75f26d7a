//! Sigstore bundles (protobuf-specs v0.3 JSON, checked against the sigstore crate's `Bundle` type)
//! and how cosign v3 attaches them to an image, built and read as plain functions over data:
//!
//! - the bundle of a DSSE envelope around an in-toto Statement v1 about a manifest's digest: cosign
//!   v3's image signature (predicate `https://sigstore.dev/cosign/sign/v1`, empty) or an SBOM
//!   attestation, with the Fulcio leaf and Rekor's `dsse` entry (inclusion promise, inclusion proof
//!   with its checkpoint) for keyless signing, or a public-key hint for key-based signing;
//! - the bundle form of a legacy cosign signature layer (certificate and `dev.sigstore.cosign/bundle`
//!   annotations), so one verifier judges both formats;
//! - the OCI 1.1 referrer that carries a bundle (`artifactType` = the bundle media type, the empty
//!   config, one layer, `subject` = the signed manifest) and the referrers tag-schema index
//!   (`sha256-<hex>`) that lists a manifest's referrers on registries without the referrers API.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::image::oci::{self, Blob, Descriptor, MT_EMPTY, MT_INDEX, MT_MANIFEST, MT_SIGSTORE_BUNDLE_V03};

pub const MT_BUNDLE_V01: &str = "application/vnd.dev.sigstore.bundle+json;version=0.1";
pub const ANN_CONTENT: &str = "dev.sigstore.bundle.content";
pub const ANN_PREDICATE: &str = "dev.sigstore.bundle.predicateType";
/// The predicate type of cosign v3's image signature: a DSSE in-toto Statement v1 whose subject is
/// the signed manifest's digest, with an empty predicate.
pub const PREDICATE_SIGN: &str = "https://sigstore.dev/cosign/sign/v1";
pub const CONTENT_DSSE: &str = "dsse-envelope";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn unb64(s: &str, what: &str) -> anyhow::Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s.trim()).with_context(|| format!("{what} is not base64"))
}

fn unhex(s: &str, what: &str) -> anyhow::Result<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        bail!("{what} is not hex: {s:?}");
    }
    Ok((0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("checked hex")).collect())
}

/// The DER bytes of the first certificate in a PEM text.
pub fn pem_to_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    let begin = "-----BEGIN CERTIFICATE-----";
    let start = pem.find(begin).context("no PEM certificate")? + begin.len();
    let end = pem[start..].find("-----END CERTIFICATE-----").context("the PEM certificate is not terminated")?;
    let body: String = pem[start..start + end].chars().filter(|c| !c.is_whitespace()).collect();
    unb64(&body, "the PEM certificate")
}

/// How a bundle names its signer.
pub enum Material<'a> {
    /// Keyless: the Fulcio leaf (PEM) and Rekor's answer to the entry (its v1 API JSON,
    /// `{uuid: {body, integratedTime, logID, logIndex, verification}}`).
    Keyless { certificate: &'a str, rekor: &'a Value },
    /// Key-based: a hint naming the key (no transparency log).
    Key { spki: &'a [u8] },
}

/// A bundle `tlogEntries` element from Rekor's v1 answer to one entry.
pub fn tlog_entry(rekor: &Value) -> anyhow::Result<Value> {
    let (_, e) = rekor.as_object().and_then(|o| o.iter().next()).context("Rekor's answer has no entry")?;
    let body_b64 = e["body"].as_str().context("the Rekor entry has no body")?;
    let body: Value = serde_json::from_slice(&unb64(body_b64, "the Rekor entry body")?)
        .context("the Rekor entry body is not JSON")?;
    let int = |v: &Value, what: &str| v.as_i64().with_context(|| format!("the Rekor entry has no {what}"));
    let mut out = json!({
        "logIndex": int(&e["logIndex"], "logIndex")?.to_string(),
        "logId": {"keyId": b64(&unhex(e["logID"].as_str().context("the Rekor entry has no logID")?, "logID")?)},
        "kindVersion": {"kind": body["kind"], "version": body["apiVersion"]},
        "integratedTime": int(&e["integratedTime"], "integratedTime")?.to_string(),
        "canonicalizedBody": body_b64,
    });
    let v = &e["verification"];
    if let Some(set) = v["signedEntryTimestamp"].as_str() {
        out["inclusionPromise"] = json!({"signedEntryTimestamp": set});
    }
    if let Some(p) = v["inclusionProof"].as_object() {
        let hashes = p
            .get("hashes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|h| Ok(b64(&unhex(h.as_str().unwrap_or_default(), "a proof hash")?)))
            .collect::<anyhow::Result<Vec<String>>>()?;
        out["inclusionProof"] = json!({
            "logIndex": int(&p["logIndex"], "inclusion proof logIndex")?.to_string(),
            "rootHash": b64(&unhex(p["rootHash"].as_str().context("the inclusion proof has no rootHash")?, "rootHash")?),
            "treeSize": int(&p["treeSize"], "inclusion proof treeSize")?.to_string(),
            "hashes": hashes,
            "checkpoint": {"envelope": p["checkpoint"].as_str().context("the inclusion proof has no checkpoint")?},
        });
    }
    Ok(out)
}

/// The v0.3 bundle of a DSSE envelope (`payload` of `payload_type`, `sig` over DSSE's PAE), signed
/// by `material`.
pub fn dsse_bundle(payload_type: &str, payload: &[u8], sig: &[u8], material: &Material) -> anyhow::Result<Vec<u8>> {
    let vm = match material {
        Material::Keyless { certificate, rekor } => json!({
            "certificate": {"rawBytes": b64(&pem_to_der(certificate)?)},
            "tlogEntries": [tlog_entry(rekor)?],
            "timestampVerificationData": {},
        }),
        Material::Key { spki } => json!({
            "publicKey": {"hint": b64(&sha2::Sha256::digest(spki))},
            "tlogEntries": [],
            "timestampVerificationData": {},
        }),
    };
    encode(json!({
        "mediaType": MT_SIGSTORE_BUNDLE_V03,
        "verificationMaterial": vm,
        "dsseEnvelope": {
            "payload": b64(payload),
            "payloadType": payload_type,
            "signatures": [{"sig": b64(sig), "keyid": ""}],
        },
    }))
}

/// The DSSE envelope JSON as Sigstore's verifiers re-encode it (the protobuf-specs `Envelope`,
/// through the sigstore crate's types): the exact string logged in Rekor's `dsse` entry, whose
/// `envelopeHash` verifiers recompute from the bundle.
pub fn dsse_envelope_json(payload_type: &str, payload: &[u8], sig: &[u8]) -> anyhow::Result<String> {
    let doc = json!({
        "mediaType": MT_SIGSTORE_BUNDLE_V03,
        "dsseEnvelope": {"payload": b64(payload), "payloadType": payload_type, "signatures": [{"sig": b64(sig), "keyid": ""}]},
    });
    let b: sigstore::bundle::Bundle =
        serde_json::from_value(doc).context("the DSSE envelope does not fit the schema")?;
    match b.content {
        Some(sigstore_protobuf_specs::dev::sigstore::bundle::v1::bundle::Content::DsseEnvelope(e)) => {
            Ok(serde_json::to_string(&e)?)
        }
        _ => bail!("the DSSE envelope did not survive the protobuf-specs types"),
    }
}

/// The Rekor `dsse` v0.0.1 entry proposing `envelope` signed by the certificate `cert_pem`.
pub fn dsse_proposed_entry(envelope: &str, cert_pem: &str) -> Value {
    json!({
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {"proposedContent": {"envelope": envelope, "verifiers": [b64(cert_pem.as_bytes())]}},
    })
}

/// The bundle's bytes, after the sigstore crate's protobuf-specs `Bundle` type accepted the document
/// (it refuses anything the schema does not have). Written as built, with every field, not as the
/// crate re-encodes it: its proto3 JSON leaves zero and empty fields out (an inclusion proof's
/// `logIndex` 0, `hashes` []), which sigstore-python 4.5.1 refuses as malformed.
fn encode(doc: Value) -> anyhow::Result<Vec<u8>> {
    serde_json::from_value::<sigstore::bundle::Bundle>(doc.clone())
        .context("the bundle does not fit Sigstore's protobuf-specs schema")?;
    Ok(serde_json::to_vec(&doc)?)
}

/// The v0.1 bundle equivalent of a legacy keyless signature layer: `payload` signed as `sig` by the
/// certificate `cert_pem`, logged in Rekor as cosign's bundle annotation records (`rekor_bundle`:
/// `{"SignedEntryTimestamp", "Payload": {body, integratedTime, logIndex, logID}}`).
pub fn legacy_bundle(payload: &[u8], sig: &[u8], cert_pem: &str, rekor_bundle: &str) -> anyhow::Result<Vec<u8>> {
    let rb: Value = serde_json::from_str(rekor_bundle).context("the Rekor bundle annotation is not JSON")?;
    let p = &rb["Payload"];
    let as_rekor = json!({"entry": {
        "body": p["body"],
        "integratedTime": p["integratedTime"],
        "logID": p["logID"],
        "logIndex": p["logIndex"],
        "verification": {"signedEntryTimestamp": rb["SignedEntryTimestamp"]},
    }});
    encode(json!({
        "mediaType": MT_BUNDLE_V01,
        "verificationMaterial": {
            "x509CertificateChain": {"certificates": [{"rawBytes": b64(&pem_to_der(cert_pem)?)}]},
            "tlogEntries": [tlog_entry(&as_rekor)?],
        },
        "messageSignature": {
            "messageDigest": {"algorithm": "SHA2_256", "digest": b64(&sha2::Sha256::digest(payload))},
            "signature": b64(sig),
        },
    }))
}

/// The empty descriptor and its blob (`{}`).
pub fn empty() -> Blob {
    Blob::new(MT_EMPTY, b"{}".to_vec())
}

/// The OCI 1.1 referrer carrying `bundle` about `subject`: (manifest, bundle blob). `created` goes
/// into the annotations (the image's own time, so signing twice gives equal manifests);
/// `content` is cosign's `dev.sigstore.bundle.content` (`dsse-envelope`; `message-signature` for blobs),
/// `predicate` its `dev.sigstore.bundle.predicateType`.
pub fn referrer(
    bundle: &[u8],
    subject: &Descriptor,
    created: &str,
    content: &str,
    predicate: &str,
) -> anyhow::Result<(Blob, Blob)> {
    let layer = Blob::new(MT_SIGSTORE_BUNDLE_V03, bundle.to_vec());
    let mut annotations = BTreeMap::new();
    annotations.insert(ANN_CONTENT.to_string(), content.to_string());
    annotations.insert(ANN_PREDICATE.to_string(), predicate.to_string());
    annotations.insert(oci::ANN_CREATED.to_string(), created.to_string());
    let manifest = Blob::json(
        MT_MANIFEST,
        &oci::Manifest {
            schema_version: 2,
            media_type: Some(MT_MANIFEST.into()),
            artifact_type: Some(MT_SIGSTORE_BUNDLE_V03.into()),
            config: empty().descriptor,
            layers: vec![layer.descriptor.clone()],
            subject: Some(Descriptor {
                media_type: subject.media_type.clone(),
                digest: subject.digest.clone(),
                size: subject.size,
                artifact_type: None,
                platform: None,
                annotations: BTreeMap::new(),
            }),
            annotations,
        },
    )?;
    Ok((manifest, layer))
}

/// The referrers tag-schema index listing `referrers` (descriptors with `artifactType` and the
/// manifests' annotations lifted, as the distribution spec's fallback asks).
pub fn fallback_index(referrers: &[(Blob, oci::Manifest)]) -> anyhow::Result<Blob> {
    let manifests = referrers
        .iter()
        .map(|(b, m)| Descriptor {
            artifact_type: m.artifact_type.clone(),
            annotations: m.annotations.clone(),
            ..b.descriptor.clone()
        })
        .collect();
    Blob::json(
        MT_INDEX,
        &oci::Index { schema_version: 2, media_type: Some(MT_INDEX.into()), manifests, annotations: BTreeMap::new() },
    )
}

/// `sha256-<hex>`: the referrers fallback tag of `digest`.
pub fn fallback_tag(digest: &str) -> anyhow::Result<String> {
    Ok(format!("sha256-{}", oci::digest_hex(digest)?))
}

/// The referrers of a bundle type in a tag-schema (or referrers API) index.
pub fn bundle_referrers(index: &[u8]) -> anyhow::Result<Vec<Descriptor>> {
    let idx: oci::Index = serde_json::from_slice(index).context("the referrers index is not an OCI index")?;
    Ok(idx.manifests.into_iter().filter(|d| d.artifact_type.as_deref() == Some(MT_SIGSTORE_BUNDLE_V03)).collect())
}

/// The bundle layer of a referrer manifest that is about `subject`.
pub fn bundle_layer(manifest: &[u8], subject: &str) -> anyhow::Result<Descriptor> {
    let m: oci::Manifest = serde_json::from_slice(manifest).context("the referrer is not an OCI manifest")?;
    match &m.subject {
        Some(s) if s.digest == subject => {}
        Some(s) => bail!("the referrer is about {}, not {subject}", s.digest),
        None => bail!("the referrer has no subject"),
    }
    if m.artifact_type.as_deref() != Some(MT_SIGSTORE_BUNDLE_V03) {
        bail!("the referrer's artifactType is {:?}, not {MT_SIGSTORE_BUNDLE_V03}", m.artifact_type);
    }
    m.layers.into_iter().find(|l| l.media_type == MT_SIGSTORE_BUNDLE_V03).context("the referrer has no bundle layer")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d";
    const PAYLOAD: &str = "application/vnd.in-toto+json";

    /// Rekor's v1 answer as @sigstore/mock and rekor.sigstore.dev give it.
    fn rekor() -> Value {
        let body = b64(br#"{"apiVersion":"0.0.1","kind":"hashedrekord","spec":{}}"#);
        json!({"24296fb2": {
            "body": body, "integratedTime": 1796490651, "logID": "c0d2", "logIndex": 42,
            "verification": {
                "signedEntryTimestamp": "U0VU",
                "inclusionProof": {"checkpoint": "note\n", "hashes": ["00ff"], "logIndex": 0, "rootHash": "abcd", "treeSize": 1},
            },
        }})
    }

    #[test]
    fn the_bundle_the_referrer_and_the_fallback_index_are_golden() {
        let cert = format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", b64(b"DER"));
        let r = rekor();
        let st = crate::sign::cosign::statement_v1("ghcr.io/x/y", DIGEST, PREDICATE_SIGN, "{}").unwrap();
        let bundle = dsse_bundle(PAYLOAD, &st, b"sig", &Material::Keyless { certificate: &cert, rekor: &r }).unwrap();
        let pretty =
            |b: &[u8]| serde_json::to_string_pretty(&serde_json::from_slice::<Value>(b).unwrap()).unwrap() + "\n";
        crate::report::golden("sigstore-bundle-v0.3.json", &pretty(&bundle));
        let subject = Descriptor {
            media_type: MT_MANIFEST.into(),
            digest: DIGEST.into(),
            size: 7,
            artifact_type: None,
            platform: None,
            annotations: BTreeMap::new(),
        };
        let (m, layer) = referrer(&bundle, &subject, "2026-01-01T00:00:00Z", CONTENT_DSSE, PREDICATE_SIGN).unwrap();
        crate::report::golden("bundle-referrer-manifest.json", &(String::from_utf8(m.bytes.clone()).unwrap() + "\n"));
        assert_eq!(bundle_layer(&m.bytes, DIGEST).unwrap(), layer.descriptor);
        assert!(bundle_layer(&m.bytes, &DIGEST.replace('6', "7")).unwrap_err().to_string().contains("is about"));
        let parsed: oci::Manifest = serde_json::from_slice(&m.bytes).unwrap();
        let idx = fallback_index(&[(m.clone(), parsed)]).unwrap();
        crate::report::golden("referrers-fallback-index.json", &(String::from_utf8(idx.bytes.clone()).unwrap() + "\n"));
        assert_eq!(bundle_referrers(&idx.bytes).unwrap()[0].digest, m.descriptor.digest);
        assert_eq!(
            empty().descriptor.digest,
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(fallback_tag(DIGEST).unwrap(), format!("sha256-{}", &DIGEST[7..]));
    }

    #[test]
    fn dsse_bundles_carry_the_envelope_rekor_logged() {
        let env = dsse_envelope_json("application/vnd.in-toto+json", b"{}", b"sig").unwrap();
        assert_eq!(
            env,
            r#"{"payload":"e30=","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":"c2ln"}]}"#
        );
        let cert = format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", b64(b"DER"));
        let e = dsse_proposed_entry(&env, &cert);
        assert_eq!(e["spec"]["proposedContent"]["envelope"], env.as_str());
        let r = rekor();
        let b: Value = serde_json::from_slice(
            &dsse_bundle(PAYLOAD, b"{}", b"sig", &Material::Keyless { certificate: &cert, rekor: &r }).unwrap(),
        )
        .unwrap();
        assert_eq!(b["dsseEnvelope"]["payload"], "e30=");
        assert!(b.get("messageSignature").is_none());
    }

    #[test]
    fn key_bundles_hint_the_key_and_legacy_layers_become_v01_bundles() {
        let b: Value =
            serde_json::from_slice(&dsse_bundle(PAYLOAD, b"{}", b"s", &Material::Key { spki: b"k" }).unwrap()).unwrap();
        assert_eq!(b["verificationMaterial"]["tlogEntries"], json!([]));
        assert_eq!(b["verificationMaterial"]["publicKey"]["hint"], b64(&sha2::Sha256::digest(b"k")));
        let cert = format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", b64(b"DER"));
        let e = &rekor()["24296fb2"];
        let rb = json!({"SignedEntryTimestamp": "U0VU", "Payload": {"body": e["body"], "integratedTime": 1, "logIndex": 2, "logID": "c0d2"}});
        let l: Value =
            serde_json::from_slice(&legacy_bundle(b"payload", b"s", &cert, &rb.to_string()).unwrap()).unwrap();
        assert_eq!(l["mediaType"], MT_BUNDLE_V01);
        let t = &l["verificationMaterial"]["tlogEntries"][0];
        assert_eq!(
            (t["logIndex"].as_str(), t["inclusionPromise"]["signedEntryTimestamp"].as_str()),
            (Some("2"), Some("U0VU"))
        );
        assert_eq!(t["kindVersion"]["kind"], "hashedrekord");
        assert!(legacy_bundle(b"p", b"s", "not pem", &rb.to_string()).is_err());
    }
}
