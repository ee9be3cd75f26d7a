//! The `sigstore` crate (sigstore-rs, the Sigstore project's Rust implementation of cosign's
//! verification) as an independent judge of our signatures under cosign's legacy tags: it finds
//! the signature image by cosign's triangulation (`sha256-<hex>.sig`), reads and parses its
//! SimpleSigning layers itself and checks them against a public key with its `PublicKeyVerifier`.
//! None of our code is involved in the verdict.

use sigstore::cosign::verification_constraint::{PublicKeyVerifier, VerificationConstraintVec};
use sigstore::cosign::{ClientBuilder, CosignCapabilities, verify_constraints};
use sigstore::registry::{Auth, ClientConfig, ClientProtocol, OciReference};

/// Verifies `reference` (`HOST:PORT/REPO:TAG` or `...@sha256:...`, served over plain HTTP on
/// loopback) against the PEM public key; returns the verified manifest digest, or sigstore-rs's
/// reason for refusing it.
pub fn verify(reference: &str, public_pem: &[u8]) -> Result<String, String> {
    let key = PublicKeyVerifier::try_from(public_pem).map_err(|e| format!("public key: {e}"))?;
    judge(reference, None, Box::new(key), |layers| !layers.is_empty())
}

/// Finds the signature layers of `reference` (trusting `root`'s Fulcio certificates and Rekor keys,
/// when given), requires `enough` of them and checks `constraint` on them: the verified digest, or
/// sigstore-rs's reason for refusing.
fn judge(
    reference: &str,
    root: Option<&sigstore::trust::ManualTrustRoot>,
    constraint: Box<dyn sigstore::cosign::verification_constraint::VerificationConstraint>,
    enough: impl Fn(&[sigstore::cosign::SignatureLayer]) -> bool,
) -> Result<String, String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let config = ClientConfig { protocol: ClientProtocol::Http, ..Default::default() };
        let mut builder = ClientBuilder::default().with_oci_client_config(config);
        if let Some(root) = root {
            builder = builder.with_trust_repository(root).map_err(|e| format!("trust root: {e}"))?;
        }
        let mut client = builder.build().map_err(|e| format!("client: {e}"))?;
        let image: OciReference = reference.parse().map_err(|e| format!("{reference}: {e}"))?;
        let (_, digest) =
            client.triangulate(&image, &Auth::Anonymous).await.map_err(|e| format!("triangulate {reference}: {e}"))?;
        let layers = client
            .trusted_signature_layers(&Auth::Anonymous, &image)
            .await
            .map_err(|e| format!("signature layers of {reference}: {e}"))?;
        if !enough(&layers) {
            return Err(format!("{reference}: no signature layer for {digest}"));
        }
        let constraints: VerificationConstraintVec = vec![constraint];
        verify_constraints(&layers, constraints.iter()).map_err(|e| format!("{reference}: {e:?}"))?;
        Ok(digest)
    })
}

/// The same judge for keyless signatures: sigstore-rs trusts the Fulcio certificates and Rekor keys
/// of `trusted_root` (a `trusted_root.json`), keeps only the layers whose certificate chains to them
/// and whose Rekor bundle (SET) verifies, and requires the signing certificate to name `identity`
/// (a URI SAN) from `issuer`.
pub fn verify_keyless(reference: &str, trusted_root: &str, identity: &str, issuer: &str) -> Result<String, String> {
    use base64::Engine as _;
    use sigstore::cosign::verification_constraint::CertSubjectUrlVerifier;
    let v: serde_json::Value = serde_json::from_str(trusted_root).map_err(|e| e.to_string())?;
    let b64 = |s: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD.decode(s.as_str().unwrap_or_default()).unwrap()
    };
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let logs = |k: &str| {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|l| (hex(&b64(&l["logId"]["keyId"])), b64(&l["publicKey"]["rawBytes"])))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let certs: Vec<Vec<u8>> = v["certificateAuthorities"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|ca| ca["certChain"]["certificates"].as_array().unwrap().iter().map(|c| b64(&c["rawBytes"])))
        .collect();
    let root = sigstore::trust::ManualTrustRoot {
        fulcio_certs: certs.into_iter().map(Into::into).collect(),
        rekor_keys: logs("tlogs"),
        ctfe_keys: logs("ctlogs"),
    };
    let who = CertSubjectUrlVerifier { url: identity.to_string(), issuer: issuer.to_string() };
    // Only layers whose certificate chains to the root count (a key-signed layer has none).
    judge(reference, Some(&root), Box::new(who), |layers| layers.iter().any(|l| l.certificate_signature.is_some()))
}
