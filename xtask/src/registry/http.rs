//! The HTTP edge of the registry client: `Transport` sends one request and returns the response
//! (any status) or a connection-level error. `Ureq` is the real one (rustls with ring; no
//! redirects followed, no retries of its own beyond a stale pooled connection); tests script a
//! fake one. With `--ca FILE` the registry's certificate must be issued by a CA in the file (a
//! bundle, as before) or be one of the file's certificates itself: a self-signed server
//! certificate, what most private registries have, is pinned (its name is still checked), as
//! docker, crane and skopeo accept it. Neither gives an error naming the certificate and the file.

use std::io::Read as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls_pki_types::CertificateDer;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.headers.iter().filter(move |(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as text for error messages (bounded).
    pub fn text(&self) -> String {
        let s = String::from_utf8_lossy(&self.body);
        let s = s.trim();
        match s.char_indices().nth(400) {
            Some((i, _)) => format!("{}…", &s[..i]),
            None => s.to_string(),
        }
    }
}

/// One HTTP exchange. `Err` is a connection-level failure (refused, reset, TLS, timeout) as text.
pub trait Transport {
    fn send(&self, req: &Request) -> Result<Response, String>;
}

/// Responses larger than this are not read (manifests are limited to 4 MB by registries).
const MAX_BODY: u64 = 16 << 20;

pub struct Ureq {
    agent: ureq::Agent,
}

impl Ureq {
    /// `ca`: a PEM bundle to trust instead of the built-in web roots.
    pub fn new(ca: Option<&Path>) -> anyhow::Result<Ureq> {
        let mut b = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout_connect(Duration::from_secs(10))
            .timeout_read(Duration::from_secs(120))
            .timeout_write(Duration::from_secs(120))
            .user_agent(concat!("multus-xtask/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = ca {
            use rustls_pki_types::pem::PemObject as _;
            let certs: Vec<CertificateDer<'static>> = rustls_pki_types::CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("reading CA bundle {}", ca.display()))?
                .collect::<Result<_, _>>()
                .with_context(|| format!("parsing CA bundle {}", ca.display()))?;
            if certs.is_empty() {
                anyhow::bail!("CA bundle {} has no certificate", ca.display());
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let verifier = CaOrPinned::new(ca, certs, provider.clone())?;
            let cfg = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth();
            b = b.tls_config(Arc::new(cfg));
        }
        Ok(Ureq { agent: b.build() })
    }
}

/// `--ca FILE`: the server's chain verified against the file's certificates as trust anchors
/// (rustls' WebPKI verifier), else the server's certificate must be one of the file's (pinned;
/// its subject names must still cover the host).
#[derive(Debug)]
struct CaOrPinned {
    file: std::path::PathBuf,
    /// `None` when no certificate of the file can be a trust anchor.
    ca: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    pinned: Vec<CertificateDer<'static>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl CaOrPinned {
    fn new(
        file: &Path,
        certs: Vec<CertificateDer<'static>>,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> anyhow::Result<CaOrPinned> {
        let mut roots = rustls::RootCertStore::empty();
        let (_, _) = roots.add_parsable_certificates(certs.iter().cloned());
        let ca = if roots.is_empty() {
            None
        } else {
            Some(
                rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .with_context(|| format!("CA bundle {}", file.display()))?,
            )
        };
        Ok(CaOrPinned { file: file.to_path_buf(), ca, pinned: certs, provider })
    }
}

impl rustls::client::danger::ServerCertVerifier for CaOrPinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let by_ca = match &self.ca {
            Some(v) => v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now),
            None => Err(rustls::Error::General("no certificate in it can be a trust anchor".into())),
        };
        let why = match by_ca {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        // Pinned only where the chain failed for want of a trusted issuer: unknown issuer, or
        // webpki's CaUsedAsEndEntity (reported as `Other`) for a self-signed certificate marked CA.
        // webpki checks the dates before both, so an expired or not yet valid certificate never
        // gets here, as with Go's verifier.
        let issuer_problem = matches!(
            why,
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer | rustls::CertificateError::Other(_)
            )
        );
        if issuer_problem && self.pinned.iter().any(|p| p.as_ref() == end_entity.as_ref()) {
            let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_name(&parsed, server_name)?;
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        }
        use sha2::Digest as _;
        Err(rustls::Error::General(format!(
            "the registry's certificate (sha256 {:x}) is neither issued by a CA in {} nor one of its certificates ({why})",
            sha2::Sha256::digest(end_entity.as_ref()),
            self.file.display()
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

impl Transport for Ureq {
    fn send(&self, req: &Request) -> Result<Response, String> {
        let mut r = self.agent.request(req.method, &req.url);
        for (k, v) in &req.headers {
            r = r.set(k, v);
        }
        let res = if req.body.is_empty() && matches!(req.method, "GET" | "HEAD" | "DELETE") {
            r.call()
        } else {
            r.send_bytes(req.body)
        };
        let resp = match res {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(e.to_string()),
        };
        let status = resp.status();
        let headers = resp
            .headers_names()
            .into_iter()
            .flat_map(|n| resp.all(&n).into_iter().map(|v| (n.clone(), v.to_string())).collect::<Vec<_>>())
            .collect();
        let mut body = Vec::new();
        if req.method != "HEAD" {
            resp.into_reader().take(MAX_BODY).read_to_end(&mut body).map_err(|e| format!("reading the body: {e}"))?;
        }
        Ok(Response { status, headers, body })
    }
}
