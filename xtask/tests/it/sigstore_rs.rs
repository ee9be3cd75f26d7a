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
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let config = ClientConfig { protocol: ClientProtocol::Http, ..Default::default() };
        let mut client =
            ClientBuilder::default().with_oci_client_config(config).build().map_err(|e| format!("client: {e}"))?;
        let image: OciReference = reference.parse().map_err(|e| format!("{reference}: {e}"))?;
        let (_, digest) =
            client.triangulate(&image, &Auth::Anonymous).await.map_err(|e| format!("triangulate {reference}: {e}"))?;
        let layers = client
            .trusted_signature_layers(&Auth::Anonymous, &image)
            .await
            .map_err(|e| format!("signature layers of {reference}: {e}"))?;
        if layers.is_empty() {
            return Err(format!("{reference}: no signature layer for {digest}"));
        }
        let key = PublicKeyVerifier::try_from(public_pem).map_err(|e| format!("public key: {e}"))?;
        let constraints: VerificationConstraintVec = vec![Box::new(key)];
        verify_constraints(&layers, constraints.iter()).map_err(|e| format!("{reference}: {e:?}"))?;
        Ok(digest)
    })
}
