//! Keyless signing (`--keyless`), over HTTP through the registry client's blocking `Transport`: a
//! GitHub Actions OIDC token (audience `sigstore`) → an ephemeral P-256 key → a Fulcio v2
//! `signingCert` for it (proof of possession: the token's `sub` signed) → each signature logged in
//! Rekor as a `hashedrekord`. The certificate, its chain and Rekor's answer (as cosign's bundle
//! annotation) go on every legacy signature layer, as `cosign sign` does; for a Sigstore bundle a
//! DSSE envelope is logged as a `dsse` entry and Rekor's whole answer (with its inclusion proof)
//! goes into the bundle (`bundle`).
//!
//! Our own requests rather than the sigstore crate's signing context: that one is async over
//! reqwest and fixed to its own OIDC flows, while this runs under a GitHub-Actions-style token
//! endpoint of any origin (the tests' local Sigstore stack, `tests/sigstore-stack`, and CI's).
//! Unit-tested against a scripted transport; the it tests sign against the local stack.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::Digest as _;

use super::cosign;
use super::key::Signer;
use crate::registry::http::{Request, Transport};

pub const FULCIO: &str = "https://fulcio.sigstore.dev";
pub const REKOR: &str = "https://rekor.sigstore.dev";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn post_json(t: &dyn Transport, url: &str, headers: Vec<(String, String)>, body: &Value) -> anyhow::Result<Value> {
    let bytes = serde_json::to_vec(body)?;
    let mut h = vec![("Content-Type".into(), "application/json".into()), ("Accept".into(), "application/json".into())];
    h.extend(headers);
    let r = t
        .send(&Request { method: "POST", url: url.into(), headers: h, body: &bytes })
        .map_err(|e| anyhow::anyhow!("POST {url}: {e}"))?;
    if !(200..300).contains(&r.status) {
        bail!("POST {url}: {} {}", r.status, r.text());
    }
    serde_json::from_slice(&r.body).with_context(|| format!("POST {url}: the answer is not JSON"))
}

/// Refuses a service URL that would carry a token or a signature in the clear: HTTPS, or plain
/// HTTP to a loopback host only (the registry's rule for `--insecure`).
pub fn check_service_url(what: &str, url: &str) -> anyhow::Result<()> {
    let rest = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(r), _) => r,
        (None, Some(r)) => r,
        _ => bail!("{what} {url:?}: want an https:// URL"),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    if host.is_empty() || authority.contains('@') {
        bail!("{what} {url:?}: want https://HOST[:PORT][/PATH] without credentials");
    }
    if url.starts_with("http://") && !crate::registry::is_loopback(host) {
        bail!("{what} {url:?}: plain HTTP is allowed for loopback hosts only");
    }
    Ok(())
}

/// The GitHub Actions OIDC token for Sigstore (needs `permissions: id-token: write`).
pub fn github_token(t: &dyn Transport, request_url: &str, request_token: &str) -> anyhow::Result<String> {
    check_service_url("the OIDC token URL", request_url)?;
    let sep = if request_url.contains('?') { '&' } else { '?' };
    let url = format!("{request_url}{sep}audience=sigstore");
    let r = t
        .send(&Request {
            method: "GET",
            url: url.clone(),
            headers: vec![("Authorization".into(), format!("bearer {request_token}"))],
            body: &[],
        })
        .map_err(|e| anyhow::anyhow!("GET the OIDC token: {e}"))?;
    if r.status != 200 {
        bail!("the GitHub OIDC endpoint answered {}: {} (does the job have id-token: write?)", r.status, r.text());
    }
    let v: Value = serde_json::from_slice(&r.body).context("the OIDC answer is not JSON")?;
    v["value"].as_str().map(String::from).context("the OIDC answer has no value")
}

/// The `sub` claim of a JWT (what Fulcio wants signed as proof of possession).
pub fn token_subject(jwt: &str) -> anyhow::Result<String> {
    let claims = jwt.split('.').nth(1).context("the OIDC token is not a JWT")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims.trim_end_matches('='))
        .context("the OIDC token's claims are not base64url")?;
    let v: Value = serde_json::from_slice(&bytes).context("the OIDC token's claims are not JSON")?;
    v["email"].as_str().or(v["sub"].as_str()).map(String::from).context("the OIDC token has no sub claim")
}

/// A signing session: the ephemeral key, its Fulcio certificate chain, and Rekor.
pub struct Session<'t> {
    pub signer: Signer,
    /// PEM: the leaf, then the rest of the chain.
    pub certificate: String,
    pub chain: String,
    rekor: String,
    transport: &'t dyn Transport,
}

impl<'t> Session<'t> {
    pub fn start(t: &'t dyn Transport, fulcio: &str, rekor: &str, token: &str) -> anyhow::Result<Session<'t>> {
        check_service_url("Fulcio", fulcio)?;
        check_service_url("Rekor", rekor)?;
        let (signer, _) = Signer::generate()?;
        let proof = signer.sign(token_subject(token)?.as_bytes())?;
        let req = json!({
            "credentials": {"oidcIdentityToken": token},
            "publicKeyRequest": {
                "publicKey": {"algorithm": "ECDSA", "content": signer.public_pem()},
                "proofOfPossession": b64(&proof),
            },
        });
        let v = post_json(t, &format!("{fulcio}/api/v2/signingCert"), vec![], &req)?;
        let chain = v["signedCertificateEmbeddedSct"]["chain"]["certificates"]
            .as_array()
            .or(v["signedCertificateDetachedSct"]["chain"]["certificates"].as_array())
            .context("Fulcio's answer has no certificate chain")?;
        let pems: Vec<&str> = chain.iter().filter_map(|c| c.as_str()).collect();
        let (leaf, rest) = pems.split_first().context("Fulcio returned an empty chain")?;
        // Re-encoded as Go's encoding/pem writes it (64-column lines): the PEM text goes into the
        // Rekor entry, and verifiers rebuild the expected entry from the certificate's DER that way.
        let pem = |p: &str| -> anyhow::Result<String> {
            Ok(super::key::pem_encode("CERTIFICATE", &super::bundle::pem_to_der(p).context("Fulcio's certificate")?))
        };
        Ok(Session {
            signer,
            certificate: pem(leaf)?,
            chain: rest.iter().map(|p| pem(p)).collect::<anyhow::Result<Vec<_>>>()?.concat(),
            rekor: rekor.to_string(),
            transport: t,
        })
    }

    /// Signs `payload`, logs it in Rekor, and returns the signature and the annotations cosign puts
    /// beside it (certificate, chain, bundle).
    pub fn sign(&self, payload: &[u8]) -> anyhow::Result<(Vec<u8>, BTreeMap<String, String>)> {
        let sig = self.signer.sign(payload)?;
        let entry = json!({
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": format!("{:x}", sha2::Sha256::digest(payload))}},
                "signature": {"content": b64(&sig), "publicKey": {"content": b64(self.certificate.as_bytes())}},
            },
        });
        let v = post_json(self.transport, &format!("{}/api/v1/log/entries", self.rekor), vec![], &entry)?;
        let (_, e) = v.as_object().and_then(|o| o.iter().next()).context("Rekor's answer has no entry")?;
        let bundle = json!({
            "SignedEntryTimestamp": e["verification"]["signedEntryTimestamp"],
            "Payload": {"body": e["body"], "integratedTime": e["integratedTime"], "logIndex": e["logIndex"], "logID": e["logID"]},
        });
        let mut ann = BTreeMap::new();
        ann.insert(cosign::ANN_CERTIFICATE.into(), self.certificate.clone());
        ann.insert(cosign::ANN_CHAIN.into(), self.chain.clone());
        ann.insert(cosign::ANN_BUNDLE.into(), serde_json::to_string(&bundle)?);
        Ok((sig, ann))
    }
}

impl Session<'_> {
    /// Signs `payload` as a DSSE envelope (over DSSE's PAE) and logs the envelope in Rekor as a
    /// `dsse` entry: (signature, Rekor's answer).
    pub fn sign_dsse(&self, payload_type: &str, payload: &[u8]) -> anyhow::Result<(Vec<u8>, Value)> {
        let sig = self.signer.sign(&cosign::pae(payload_type, payload))?;
        let envelope = super::bundle::dsse_envelope_json(payload_type, payload, &sig)?;
        let entry = super::bundle::dsse_proposed_entry(&envelope, &self.certificate);
        let v = post_json(self.transport, &format!("{}/api/v1/log/entries", self.rekor), vec![], &entry)?;
        Ok((sig, v))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::registry::http::Response;

    /// Answers requests in order and records them.
    struct Script {
        answers: Mutex<Vec<Response>>,
        seen: Mutex<Vec<(String, Value)>>,
    }

    impl Transport for Script {
        fn send(&self, req: &Request) -> Result<Response, String> {
            let body = if req.body.is_empty() { Value::Null } else { serde_json::from_slice(req.body).unwrap() };
            self.seen.lock().unwrap().push((format!("{} {}", req.method, req.url), body));
            Ok(self.answers.lock().unwrap().remove(0))
        }
    }

    fn pem(der: &[u8]) -> String {
        super::super::key::pem_encode("CERTIFICATE", der)
    }

    fn ok(v: Value) -> Response {
        Response { status: 200, headers: vec![], body: serde_json::to_vec(&v).unwrap() }
    }

    #[test]
    fn service_urls_are_https_or_loopback_http() {
        for ok in [
            "https://fulcio.sigstore.dev",
            "https://h:8443/x?y",
            "http://127.0.0.1:5555",
            "http://localhost/a",
            "http://[::1]:80",
        ] {
            check_service_url("Fulcio", ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, why) in [
            ("http://fulcio.example", "loopback hosts only"),
            ("ftp://x", "want an https:// URL"),
            ("fulcio.sigstore.dev", "want an https:// URL"),
            ("https://user@h", "without credentials"),
            ("http://127.0.0.1@evil.example", "without credentials"),
            ("https:///x", "without credentials"),
        ] {
            let e = check_service_url("Fulcio", bad).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains("Fulcio"), "{bad}: {e}");
        }
    }

    #[test]
    fn token_certificate_and_rekor_entry_are_requested_as_sigstore_expects() {
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"repo:multus-rs/multus-rs:ref:refs/tags/v1.0.0","iss":"https://token.actions.githubusercontent.com"}"#);
        let jwt = format!("eyJhbGciOiJSUzI1NiJ9.{claims}.c2ln");
        let t = Script {
            answers: Mutex::new(vec![
                ok(json!({"value": jwt})),
                ok(json!({"signedCertificateEmbeddedSct": {"chain": {"certificates": [pem(b"LEAF"), pem(b"INTERMEDIATE"), pem(b"ROOT")]}}})),
                Response {
                    status: 201,
                    headers: vec![],
                    body: serde_json::to_vec(&json!({"24296fb2": {"body": "Ym9keQ==", "integratedTime": 1767225600, "logID": "c0d2", "logIndex": 42, "verification": {"signedEntryTimestamp": "U0VU"}}})).unwrap(),
                },
            ]),
            seen: Mutex::new(vec![]),
        };
        let token = github_token(&t, "https://token.example/req?api-version=2.0", "rt").unwrap();
        assert_eq!(token_subject(&token).unwrap(), "repo:multus-rs/multus-rs:ref:refs/tags/v1.0.0");
        let s = Session::start(&t, FULCIO, REKOR, &token).unwrap();
        assert_eq!((s.certificate.clone(), s.chain.clone()), (pem(b"LEAF"), pem(b"INTERMEDIATE") + &pem(b"ROOT")));
        let (sig, ann) = s.sign(b"payload").unwrap();
        super::super::key::verify(&s.signer.spki(), b"payload", &sig).unwrap();
        assert_eq!(ann[cosign::ANN_CERTIFICATE], pem(b"LEAF"));
        let bundle: Value = serde_json::from_str(&ann[cosign::ANN_BUNDLE]).unwrap();
        assert_eq!(bundle["Payload"]["logIndex"], 42);
        assert_eq!(bundle["SignedEntryTimestamp"], "U0VU");

        let seen = t.seen.lock().unwrap();
        assert_eq!(seen[0].0, "GET https://token.example/req?api-version=2.0&audience=sigstore");
        assert_eq!(seen[1].0, "POST https://fulcio.sigstore.dev/api/v2/signingCert");
        let pop = base64::engine::general_purpose::STANDARD
            .decode(seen[1].1["publicKeyRequest"]["proofOfPossession"].as_str().unwrap())
            .unwrap();
        super::super::key::verify(&s.signer.spki(), b"repo:multus-rs/multus-rs:ref:refs/tags/v1.0.0", &pop).unwrap();
        assert_eq!(seen[2].0, "POST https://rekor.sigstore.dev/api/v1/log/entries");
        assert_eq!(seen[2].1["kind"], "hashedrekord");
        assert_eq!(
            seen[2].1["spec"]["data"]["hash"]["value"],
            format!("{:x}", sha2::Sha256::digest(b"payload")).as_str()
        );
    }
}
