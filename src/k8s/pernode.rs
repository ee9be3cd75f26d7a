//! The per-node client certificate (daemon-config `perNodeCertificate`, and `kubeconfig_generator`),
//! as upstream's certificate manager runs it: with the bootstrap kubeconfig's credentials the node
//! asks for a client certificate (a CertificateSigningRequest of signer
//! `kubernetes.io/kube-apiserver-client`, subject `O=system:multus, CN=system:multus:<node>`, usages
//! digital signature and client auth, `expirationSeconds` = `certDuration`), waits until it is
//! approved and issued, keeps key and certificate in `<certDir>/multus-client-current.pem` (0600,
//! written whole: temp + rename), and presents it on every new connection to the API server. A
//! renewal starts at a random point between 70 % and 90 % of the certificate's lifetime (client-go's
//! rule); the new certificate replaces the old one for new connections, so no request is dropped.
//! A pair already in `certDir` with more than 10 % of its lifetime left is used at start.
//!
//! Deciding (usable, when to renew) is plain functions; the API calls and files are the edges.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestSpec};
use kube::api::{Api, PostParams};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use super::Error;
use super::x509;

/// The signer upstream's CSRs name (client certificates for the API server).
pub const SIGNER: &str = "kubernetes.io/kube-apiserver-client";
/// The file of the pair in use (upstream's name).
pub const CURRENT_FILE: &str = "multus-client-current.pem";
/// How long a request may wait for approval and issuance.
pub const ISSUE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// How often a pending request is looked at.
const POLL: Duration = Duration::from_millis(500);
/// How long after a failed renewal the next try comes (while the current certificate is valid).
const RETRY: Duration = Duration::from_secs(10);

/// What the manager runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub node: String,
    pub cert_dir: PathBuf,
    /// The lifetime asked for (`certDuration`).
    pub duration: Duration,
}

/// A key with its issued certificate.
#[derive(Debug, Clone)]
pub struct Pair {
    pub certificate: Vec<u8>,
    pub key_pkcs8: Vec<u8>,
    pub issued: x509::Issued,
}

impl Pair {
    /// The pair as one PEM file (certificate, then key), what `certDir` holds.
    pub fn to_pem(&self) -> String {
        x509::pem("CERTIFICATE", &self.certificate) + &x509::pem("PRIVATE KEY", &self.key_pkcs8)
    }

    pub fn from_pem(text: &str) -> Result<Pair, Error> {
        let certificate =
            x509::pem_block(text, "CERTIFICATE").ok_or_else(|| Error::Malformed("no CERTIFICATE block".into()))?;
        let key_pkcs8 =
            x509::pem_block(text, "PRIVATE KEY").ok_or_else(|| Error::Malformed("no PRIVATE KEY block".into()))?;
        Pair::new(certificate, key_pkcs8)
    }

    /// Checks that the certificate is for this key.
    pub fn new(certificate: Vec<u8>, key_pkcs8: Vec<u8>) -> Result<Pair, Error> {
        let issued = x509::parse_certificate(&certificate)?;
        if issued.public_key_info != x509::public_key_info(&key_pkcs8)? {
            return Err(Error::Malformed("the issued certificate is not for the requested key".into()));
        }
        Ok(Pair { certificate, key_pkcs8, issued })
    }

    fn certified_key(&self) -> Result<Arc<CertifiedKey>, Error> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone()));
        let signer = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| Error::Config(format!("the per-node key cannot sign: {e}")))?;
        Ok(Arc::new(CertifiedKey::new(vec![CertificateDer::from(self.certificate.clone())], signer)))
    }
}

/// Usable at `now`: valid, and more than 10 % of its lifetime left (pure).
pub fn usable(issued: &x509::Issued, now: i64) -> bool {
    let life = (issued.not_after - issued.not_before).max(1);
    issued.not_before <= now + 300 && now < issued.not_after - life / 10
}

/// When to renew: `jitter` in [0, 1) picks a point between 70 % and 90 % of the lifetime (pure).
pub fn renew_at(issued: &x509::Issued, jitter: f64) -> i64 {
    let life = (issued.not_after - issued.not_before).max(1) as f64;
    issued.not_before + (life * (7.0 + 2.0 * jitter.clamp(0.0, 1.0)) / 10.0).floor() as i64
}

/// The pair in `dir`, when there is a readable one for `node`.
pub fn load(dir: &Path, node: &str) -> Option<Pair> {
    let pair = Pair::from_pem(&std::fs::read_to_string(dir.join(CURRENT_FILE)).ok()?).ok()?;
    let cn = format!("{}{node}", x509::COMMON_NAME_PREFIX);
    pair.issued.common_names.contains(&cn).then_some(pair)
}

/// Writes the pair to `dir` (created 0700) as `multus-client-current.pem`, mode 0600, whole.
pub fn store(dir: &Path, pair: &Pair) -> Result<(), Error> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let io = |what: &str, e: std::io::Error| Error::Config(format!("{what}: {e}"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io(&format!("creating {}", dir.display()), e))?;
    let tmp = dir.join(format!(".{CURRENT_FILE}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io(&format!("creating {}", tmp.display()), e))?;
    f.write_all(pair.to_pem().as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| io(&format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, dir.join(CURRENT_FILE)).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(&format!("renaming {} into place", tmp.display()), e)
    })
}

/// The CertificateSigningRequest object for `csr_pem` (pure).
pub fn request_object(csr_pem: &str, duration: Duration) -> CertificateSigningRequest {
    CertificateSigningRequest {
        metadata: kube::api::ObjectMeta { generate_name: Some("csr-".into()), ..Default::default() },
        spec: CertificateSigningRequestSpec {
            request: k8s_openapi::ByteString(csr_pem.as_bytes().to_vec()),
            signer_name: SIGNER.into(),
            usages: Some(vec!["digital signature".into(), "client auth".into()]),
            expiration_seconds: Some(duration.as_secs().clamp(600, i32::MAX as u64) as i32),
            ..Default::default()
        },
        status: None,
    }
}

/// What a request's status says: issued (the certificate DER), denied or failed (why), pending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Issued(Vec<u8>),
    Refused(String),
    Pending,
}

/// Reads a request's status (pure).
pub fn progress(csr: &CertificateSigningRequest) -> Progress {
    let Some(status) = &csr.status else { return Progress::Pending };
    for c in status.conditions.iter().flatten() {
        if (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True" {
            return Progress::Refused(format!(
                "{}: {}",
                c.type_,
                c.message.clone().or(c.reason.clone()).unwrap_or_default()
            ));
        }
    }
    let approved = status.conditions.iter().flatten().any(|c| c.type_ == "Approved" && c.status == "True");
    match &status.certificate {
        Some(pem) if approved && !pem.0.is_empty() => {
            match x509::pem_block(&String::from_utf8_lossy(&pem.0), "CERTIFICATE") {
                Some(der) => Progress::Issued(der),
                None => Progress::Refused("the issued certificate is not PEM".into()),
            }
        }
        _ => Progress::Pending,
    }
}

/// Asks for a new certificate with `client` (the bootstrap credentials) and waits until it is
/// issued, at most `timeout`.
pub async fn request(client: &kube::Client, s: &Settings, timeout: Duration) -> Result<Pair, Error> {
    let key = x509::new_key()?;
    let csr = x509::pem("CERTIFICATE REQUEST", &x509::node_request(&s.node, &key)?);
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let created = api
        .create(&PostParams::default(), &request_object(&csr, s.duration))
        .await
        .map_err(|e| Error::api("creating the per-node CertificateSigningRequest", e))?;
    let name = created.metadata.name.clone().unwrap_or_default();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let now =
            api.get(&name).await.map_err(|e| Error::api(format!("reading CertificateSigningRequest {name}"), e))?;
        match progress(&now) {
            Progress::Issued(der) => return Pair::new(der, key),
            Progress::Refused(why) => {
                return Err(Error::Config(format!("CertificateSigningRequest {name} was not granted: {why}")));
            }
            Progress::Pending if tokio::time::Instant::now() >= deadline => {
                return Err(Error::Config(format!(
                    "CertificateSigningRequest {name} was not approved and issued within {} s (is cert-approver running?)",
                    timeout.as_secs()
                )));
            }
            Progress::Pending => tokio::time::sleep(POLL).await,
        }
    }
}

/// The certificate presented on every new TLS connection; the manager swaps it on renewal.
#[derive(Debug, Clone)]
pub struct Current(Arc<RwLock<Arc<CertifiedKey>>>);

impl rustls::client::ResolvesClientCert for Current {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn jitter() -> f64 {
    let mut b = [0u8; 2];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    f64::from(u16::from_le_bytes(b)) / 65536.0
}

/// Starts the manager: the pair in `certDir` when usable, else a new one (waiting for it), then a
/// task that renews it for as long as the runtime lives; after each renewal `connections` are
/// closed, so the client's next requests present the new certificate.
pub async fn start(
    bootstrap: kube::Client,
    s: Settings,
    connections: super::conns::Connections,
) -> Result<Current, Error> {
    let pair = match load(&s.cert_dir, &s.node).filter(|p| usable(&p.issued, now())) {
        Some(p) => {
            tracing_note(&format!("using the per-node certificate in {}", s.cert_dir.display()));
            p
        }
        None => {
            let p = request(&bootstrap, &s, ISSUE_TIMEOUT).await?;
            store(&s.cert_dir, &p)?;
            p
        }
    };
    let current = Current(Arc::new(RwLock::new(pair.certified_key()?)));
    let handle = current.clone();
    tokio::spawn(async move {
        let mut issued = pair.issued;
        loop {
            let wait = (renew_at(&issued, jitter()) - now()).max(0) as u64;
            tokio::time::sleep(Duration::from_secs(wait)).await;
            match request(&bootstrap, &s, ISSUE_TIMEOUT).await.and_then(|p| {
                store(&s.cert_dir, &p)?;
                Ok((p.certified_key()?, p.issued.clone()))
            }) {
                Ok((key, next)) => {
                    *handle.0.write().unwrap_or_else(|p| p.into_inner()) = key;
                    issued = next;
                    let closed = connections.close_all();
                    tracing_note(&format!(
                        "rotated the per-node certificate; closed {closed} connections made with the old one"
                    ));
                }
                Err(e) => {
                    tracing_note(&format!("renewing the per-node certificate failed (retrying): {e}"));
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    });
    Ok(current)
}

/// The daemon's two clients (requests, watches) with the per-node certificate: the bootstrap
/// kubeconfig's server and CA, its credentials only for the certificate requests.
pub async fn clients(bootstrap_kubeconfig: &Path, s: Settings) -> Result<(kube::Client, kube::Client), Error> {
    let source = super::client::Source::Kubeconfig(bootstrap_kubeconfig.to_path_buf());
    let config = super::client::config(&source)
        .await?
        .ok_or_else(|| Error::Config("perNodeCertificate: no bootstrap kubeconfig".into()))?;
    let bootstrap = super::transport::client(&config)?;
    let connections = super::conns::Connections::default();
    let cert = super::transport::RotatingCert {
        resolver: Arc::new(start(bootstrap, s, connections.clone()).await?),
        connections,
    };
    let mut watch = config.clone();
    watch.read_timeout = Some(super::client::WATCH_READ_TIMEOUT);
    Ok((super::transport::client_with(&config, Some(&cert))?, super::transport::client_with(&watch, Some(&cert))?))
}

/// The settings of daemon-config's `perNodeCertificate` (checked: every path given, a Go duration).
pub fn settings(node: &str, cert_dir: &str, duration: &str) -> Result<Settings, Error> {
    if node.is_empty() {
        return Err(Error::Config("perNodeCertificate needs MULTUS_NODE_NAME (the certificate names the node)".into()));
    }
    if !super::approver::valid_node_name(node) {
        return Err(Error::Config(format!("MULTUS_NODE_NAME {node:?} is not a node name (a DNS-1123 subdomain)")));
    }
    if cert_dir.is_empty() {
        return Err(Error::Config("perNodeCertificate.certDir is not set".into()));
    }
    let duration = crate::golang::parse_duration(duration)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| Error::Config(format!("perNodeCertificate.certDuration {duration:?} is not a Go duration")))?;
    Ok(Settings { node: node.into(), cert_dir: PathBuf::from(cert_dir), duration })
}

fn tracing_note(m: &str) {
    crate::logging::verbose(m);
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::certificates::v1::{CertificateSigningRequestCondition, CertificateSigningRequestStatus};

    fn issued(nb: i64, na: i64) -> x509::Issued {
        x509::Issued { not_before: nb, not_after: na, common_names: vec![], public_key_info: vec![] }
    }

    #[test]
    fn settings_are_checked() {
        assert!(settings("n1", "/d", "10m").is_ok());
        for (node, dir, d) in [("", "/d", "10m"), ("N_1", "/d", "10m"), ("n1", "", "10m"), ("n1", "/d", "ten")] {
            assert!(settings(node, dir, d).is_err(), "{node:?} {dir:?} {d:?}");
        }
    }

    #[test]
    fn usable_and_renewal_points() {
        let i = issued(1000, 2000);
        assert!(usable(&i, 1000) && usable(&i, 1899) && !usable(&i, 1900) && !usable(&i, 2100));
        assert_eq!((renew_at(&i, 0.0), renew_at(&i, 0.5), renew_at(&i, 0.999_99)), (1700, 1800, 1899));
    }

    #[test]
    fn the_request_object_and_its_progress() {
        let o = request_object("PEM", Duration::from_secs(3600));
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(v["spec"]["signerName"], SIGNER);
        assert_eq!(v["spec"]["usages"], serde_json::json!(["digital signature", "client auth"]));
        assert_eq!(v["spec"]["expirationSeconds"], 3600);
        assert_eq!(v["spec"]["request"], "UEVN");
        assert_eq!(v["metadata"]["generateName"], "csr-");
        let mut csr = o.clone();
        assert_eq!(progress(&csr), Progress::Pending);
        let cond = |t: &str| CertificateSigningRequestCondition {
            type_: t.into(),
            status: "True".into(),
            message: Some("m".into()),
            ..Default::default()
        };
        csr.status =
            Some(CertificateSigningRequestStatus { conditions: Some(vec![cond("Approved")]), certificate: None });
        assert_eq!(progress(&csr), Progress::Pending, "approved, not yet issued");
        let pem = x509::pem("CERTIFICATE", b"\x30\x00");
        csr.status.as_mut().unwrap().certificate = Some(k8s_openapi::ByteString(pem.into_bytes()));
        assert_eq!(progress(&csr), Progress::Issued(b"\x30\x00".to_vec()));
        csr.status =
            Some(CertificateSigningRequestStatus { conditions: Some(vec![cond("Denied")]), certificate: None });
        assert_eq!(progress(&csr), Progress::Refused("Denied: m".into()));
    }

    #[test]
    fn a_pair_must_match_and_is_stored_0600_whole() {
        let key = x509::new_key().unwrap();
        let spki = x509::public_key_info(&key).unwrap();
        let subject = x509::name(&[(x509::oid::COMMON_NAME, "system:multus:n1")]);
        // A minimal certificate (unsigned body is enough for what the daemon reads).
        let tbs = x509::seq(&[
            &x509::integer(&[1]),
            &x509::seq(&[&x509::tlv(0x06, x509::oid::ECDSA_SHA256)]),
            &subject,
            &x509::seq(&[&x509::utc_time(1000), &x509::utc_time(2000)]),
            &subject,
            &spki,
        ]);
        let cert =
            x509::seq(&[&tbs, &x509::seq(&[&x509::tlv(0x06, x509::oid::ECDSA_SHA256)]), &x509::bit_string(b"s")]);
        let pair = Pair::new(cert.clone(), key.clone()).unwrap();
        assert_eq!((pair.issued.not_before, pair.issued.not_after), (1000, 2000));
        assert!(Pair::new(cert, x509::new_key().unwrap()).is_err(), "another key");
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        store(&certs, &pair).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(certs.join(CURRENT_FILE)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::metadata(&certs).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(load(&certs, "n1").unwrap().key_pkcs8, key);
        assert!(load(&certs, "n2").is_none(), "another node's pair is not used");
        assert_eq!(std::fs::read_dir(&certs).unwrap().count(), 1, "no temporary file left");
    }
}
