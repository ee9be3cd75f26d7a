//! The HTTP edge of the registry client: `Transport` sends one request and returns the response
//! (any status) or a connection-level error. `Ureq` is the real one (rustls with ring; a custom CA
//! bundle when given; no redirects followed, no retries of its own beyond a stale pooled
//! connection); tests script a fake one.

use std::io::Read as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

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
            let mut roots = rustls::RootCertStore::empty();
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("reading CA bundle {}", ca.display()))?;
            for c in certs {
                let c = c.with_context(|| format!("parsing CA bundle {}", ca.display()))?;
                roots.add(c).with_context(|| format!("CA bundle {}: unusable certificate", ca.display()))?;
            }
            if roots.is_empty() {
                anyhow::bail!("CA bundle {} has no certificate", ca.display());
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let cfg = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            b = b.tls_config(Arc::new(cfg));
        }
        Ok(Ureq { agent: b.build() })
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
