//! The API-server client's transport, built from a [`kube::Config`]: TLS (the cluster's CA or the
//! system's roots, the client certificate, the server name), connect/read/write timeouts, and
//! authentication (bearer token, token file re-read every minute, basic, exec credential plugins,
//! the tokens kubectl's `auth-provider` entries hold).
//!
//! kube-rs builds the same stack in `Client::try_from(Config)`, but its authentication also links a
//! JSONPath engine (regex, pest) for one key of the long-removed gcp auth provider, about 0.4 MB
//! of every binary that talks to the API server. The parts kube-rs exports (its `Client`, base-URI
//! and header layers) are used as they are; what is ours is [`Auth`] and the TLS settings.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http::header::{AUTHORIZATION, HeaderValue};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::ConfigExt;
use kube::config::{AuthInfo, AuthProviderConfig, ExecConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use secrecy::ExposeSecret;
use tower::{BoxError, ServiceBuilder};

use super::Error;

/// How long a token read from `tokenFile` is used before the file is read again (client-go and
/// kube-rs: one minute; the kubelet rotates projected service-account tokens well before expiry).
pub const TOKEN_FILE_TTL: Duration = Duration::from_secs(60);
/// How long an exec credential plugin may run.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(30);
/// A token from an exec plugin is renewed this long before it expires.
const EXEC_RENEW_EARLY: Duration = Duration::from_secs(10);

/// A `kube::Client` for `config`, with our authentication and TLS settings (see the module doc).
pub fn client(config: &kube::Config) -> Result<kube::Client, Error> {
    client_with(config, None)
}

/// A client certificate that changes while the client lives (the per-node certificate): what
/// resolves it at each handshake, and the client's connections, closed when it changes.
#[derive(Clone)]
pub struct RotatingCert {
    pub resolver: Arc<dyn rustls::client::ResolvesClientCert>,
    pub connections: super::conns::Connections,
}

/// A client like [`client`] that presents the certificate `certs` resolves at every new TLS
/// connection (the per-node certificate, which rotates under it); `config`'s own credentials are
/// not used then, its connections are tracked and TLS session resumption is off (see `conns`).
pub fn client_with(config: &kube::Config, certs: Option<&RotatingCert>) -> Result<kube::Client, Error> {
    if let Some(proxy) = &config.proxy_url {
        return Err(Error::Config(format!("proxy-url {proxy} is not supported: reach the API server directly")));
    }
    let (auth, identity) = match certs {
        Some(_) => (Auth::from_info(&AuthInfo::default())?.0, None),
        None => {
            let (auth, exec_identity) = Auth::from_info(&config.auth_info)?;
            let identity = match exec_identity {
                Some(pem) => Some(pem),
                None => static_identity(&config.auth_info)?,
            };
            (auth, identity)
        }
    };
    let mut tls = tls_config(
        config.root_cert.as_deref(),
        identity.as_deref(),
        certs.map(|c| c.resolver.clone()),
        config.accept_invalid_certs,
    )?;
    if certs.is_some() {
        tls.resumption = rustls::client::Resumption::disabled();
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let tracking =
        super::conns::TrackingConnector { http, connections: certs.map(|c| c.connections.clone()).unwrap_or_default() };
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http();
    let builder = match &config.tls_server_name {
        Some(name) => {
            let name = ServerName::try_from(name.clone())
                .map_err(|e| Error::Config(format!("invalid tls-server-name {name:?}: {e}")))?;
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        None => builder,
    };
    let mut connector = hyper_timeout::TimeoutConnector::new(builder.enable_http1().wrap_connector(tracking));
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    let http_client: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
    let headers = config.extra_headers_layer().map_err(|e| Error::Config(format!("invalid impersonation: {e}")))?;
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .layer(tower::filter::AsyncFilterLayer::new(auth))
        .layer(headers)
        .map_err(BoxError::from)
        .service(http_client);
    Ok(kube::client::ClientBuilder::new(service, config.default_namespace.clone()).build())
}

/// The TLS settings: the cluster's CA certificates (else the system's roots), the client
/// identity (PEM: certificate chain and key), and kubeconfig's `insecure-skip-tls-verify`.
fn tls_config(
    roots: Option<&[Vec<u8>]>,
    identity: Option<&[u8]>,
    certs: Option<Arc<dyn rustls::client::ResolvesClientCert>>,
    insecure: bool,
) -> Result<rustls::ClientConfig, Error> {
    use hyper_rustls::ConfigBuilderExt;
    let bad = |what: &str, e: &dyn std::fmt::Display| Error::Config(format!("{what}: {e}"));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("cannot set up TLS", &e))?;
    let builder = match roots {
        Some(certs) => {
            let mut store = rustls::RootCertStore::empty();
            for der in certs {
                store.add(CertificateDer::from(der.clone())).map_err(|e| bad("invalid certificate authority", &e))?;
            }
            builder.with_root_certificates(store)
        }
        None => builder.with_native_roots().map_err(|e| bad("no usable system root certificates", &e))?,
    };
    let mut config = match (identity, certs) {
        (_, Some(resolver)) => builder.with_client_cert_resolver(resolver),
        (Some(pem), None) => {
            let (chain, key) = client_identity(pem)?;
            builder.with_client_auth_cert(chain, key).map_err(|e| bad("invalid client certificate or key", &e))?
        }
        (None, None) => builder.with_no_client_auth(),
    };
    if insecure {
        config.dangerous().set_certificate_verifier(Arc::new(NoVerifier(rustls::crypto::ring::default_provider())));
    }
    Ok(config)
}

/// Splits a PEM identity into its certificate chain and private key (PKCS#8, PKCS#1 or SEC1).
pub fn client_identity(pem: &[u8]) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Error> {
    use rustls::pki_types::pem::{PemObject, SectionKind};
    let mut chain = Vec::new();
    let mut key = None;
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
        let (kind, der) = section.map_err(|e| Error::Config(format!("invalid client certificate PEM: {e}")))?;
        match kind {
            // A kubeconfig may name one file holding both as client-certificate and client-key
            // (upstream's per-node kubeconfig does): the certificate is read twice then.
            SectionKind::Certificate if chain.iter().any(|c: &CertificateDer| c.as_ref() == der.as_slice()) => {}
            SectionKind::Certificate => chain.push(CertificateDer::from(der)),
            SectionKind::PrivateKey => key = Some(PrivateKeyDer::Pkcs8(der.into())),
            SectionKind::RsaPrivateKey => key = key.or(Some(PrivateKeyDer::Pkcs1(der.into()))),
            SectionKind::EcPrivateKey => key = key.or(Some(PrivateKeyDer::Sec1(der.into()))),
            _ => {}
        }
    }
    match (chain.is_empty(), key) {
        (false, Some(key)) => Ok((chain, key)),
        (true, _) => Err(Error::Config("the client certificate PEM holds no certificate".into())),
        (false, None) => Err(Error::Config("the client key PEM holds no private key".into())),
    }
}

/// The kubeconfig user's client certificate and key (inline data or files), as one PEM.
fn static_identity(info: &AuthInfo) -> Result<Option<Vec<u8>>, Error> {
    let cert =
        pem_from(info.client_certificate_data.as_deref(), info.client_certificate.as_deref(), "client-certificate")?;
    let key_data = info.client_key_data.as_ref().map(|s| s.expose_secret().to_string());
    let key = pem_from(key_data.as_deref(), info.client_key.as_deref(), "client-key")?;
    match (cert, key) {
        (Some(mut cert), Some(key)) => {
            cert.push(b'\n');
            cert.extend_from_slice(&key);
            Ok(Some(cert))
        }
        (None, None) => Ok(None),
        (Some(_), None) => Err(Error::Config("the kubeconfig user has a client-certificate but no client-key".into())),
        (None, Some(_)) => Err(Error::Config("the kubeconfig user has a client-key but no client-certificate".into())),
    }
}

/// Inline base64 `data` (wins) or the file at `path`.
fn pem_from(data: Option<&str>, path: Option<&str>, what: &str) -> Result<Option<Vec<u8>>, Error> {
    use base64::Engine;
    if let Some(data) = data {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| Error::Config(format!("invalid {what}-data: {e}")))?;
        return Ok(Some(bytes));
    }
    match path {
        Some(p) => read_small(Path::new(p), MAX_PEM_FILE, what).map(Some),
        None => Ok(None),
    }
}

/// The longest certificate or key file read (a chain of a few certificates is a few KiB).
const MAX_PEM_FILE: u64 = 1 << 20;

/// The bytes of the file at `path` (`what` names it in errors), refused beyond `max` bytes.
fn read_small(path: &Path, max: u64, what: &str) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(max + 1).read_to_end(&mut bytes))
        .map_err(|e| Error::Config(format!("cannot read {what} {}: {e}", path.display())))?;
    if bytes.len() as u64 > max {
        return Err(Error::Config(format!("{what} {} is larger than {max} bytes", path.display())));
    }
    Ok(bytes)
}

/// How requests are authenticated, in kube-rs's and client-go's order of precedence:
/// auth-provider token, basic, inline token, token file, exec plugin.
#[derive(Clone)]
pub struct Auth(Arc<Mode>);

enum Mode {
    None,
    Fixed(HeaderValue),
    TokenFile { path: PathBuf, cached: Mutex<Option<(HeaderValue, Instant)>> },
    Exec { config: Box<ExecConfig>, cached: Mutex<Option<(HeaderValue, Option<SystemTime>)>> },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &*self.0 {
            Mode::None => "none",
            Mode::Fixed(_) => "fixed",
            Mode::TokenFile { .. } => "token file",
            Mode::Exec { .. } => "exec",
        };
        f.debug_tuple("Auth").field(&kind).finish()
    }
}

/// What an exec plugin answered.
struct ExecCredential {
    token: Option<String>,
    identity: Option<Vec<u8>>,
    expires: Option<SystemTime>,
}

impl Auth {
    /// The authentication for `info`, and the client identity an exec plugin handed out (which
    /// then replaces the kubeconfig's certificate). Runs the exec plugin once, as kube-rs does.
    pub fn from_info(info: &AuthInfo) -> Result<(Auth, Option<Vec<u8>>), Error> {
        let fixed = |v: HeaderValue| Ok((Auth(Arc::new(Mode::Fixed(v))), None));
        if let Some(provider) = &info.auth_provider {
            return fixed(bearer(&provider_token(provider)?)?);
        }
        if let (Some(user), Some(pass)) = (&info.username, &info.password) {
            use base64::Engine;
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", pass.expose_secret()));
            return fixed(sensitive(&format!("Basic {basic}"))?);
        }
        if let Some(token) = &info.token {
            return fixed(bearer(token.expose_secret())?);
        }
        if let Some(path) = &info.token_file {
            let mode = Mode::TokenFile { path: PathBuf::from(path), cached: Mutex::new(None) };
            let auth = Auth(Arc::new(mode));
            auth.token_file_header()?;
            return Ok((auth, None));
        }
        if let Some(exec) = &info.exec {
            let cred = run_exec(exec)?;
            let cached = match &cred.token {
                Some(t) => Some((bearer(t)?, cred.expires)),
                None => None,
            };
            let mode = Mode::Exec { config: Box::new(exec.clone()), cached: Mutex::new(cached) };
            let auth = if cred.token.is_some() { Auth(Arc::new(mode)) } else { Auth(Arc::new(Mode::None)) };
            return Ok((auth, cred.identity));
        }
        Ok((Auth(Arc::new(Mode::None)), None))
    }

    /// The `Authorization` value for the next request (reads the token file or runs the exec
    /// plugin when its token is due; blocking, so call it off the async workers for exec).
    fn header(&self) -> Result<Option<HeaderValue>, Error> {
        match &*self.0 {
            Mode::None => Ok(None),
            Mode::Fixed(v) => Ok(Some(v.clone())),
            Mode::TokenFile { .. } => self.token_file_header().map(Some),
            Mode::Exec { config, cached } => {
                let due = |c: &Option<(HeaderValue, Option<SystemTime>)>| match c {
                    None => true,
                    Some((_, None)) => false,
                    Some((_, Some(at))) => SystemTime::now() + EXEC_RENEW_EARLY >= *at,
                };
                let mut slot = cached.lock().unwrap_or_else(|e| e.into_inner());
                if due(&slot) {
                    let cred = run_exec(config)?;
                    let token = cred
                        .token
                        .ok_or_else(|| Error::Config("the exec credential plugin returned no token".into()))?;
                    *slot = Some((bearer(&token)?, cred.expires));
                }
                Ok(slot.as_ref().map(|(v, _)| v.clone()))
            }
        }
    }

    fn token_file_header(&self) -> Result<HeaderValue, Error> {
        let Mode::TokenFile { path, cached } = &*self.0 else { unreachable!("only for a token file") };
        let mut slot = cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((v, read)) = &*slot {
            if read.elapsed() < TOKEN_FILE_TTL {
                return Ok(v.clone());
            }
        }
        let token = read_token(path)?;
        let v = bearer(&token)?;
        *slot = Some((v.clone(), Instant::now()));
        Ok(v)
    }

    fn runs_commands(&self) -> bool {
        matches!(&*self.0, Mode::Exec { .. })
    }
}

impl tower::filter::AsyncPredicate<http::Request<kube::client::Body>> for Auth {
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<http::Request<kube::client::Body>, BoxError>> + Send>,
    >;
    type Request = http::Request<kube::client::Body>;

    fn check(&mut self, mut request: http::Request<kube::client::Body>) -> Self::Future {
        let auth = self.clone();
        Box::pin(async move {
            let header = if auth.runs_commands() {
                tokio::task::spawn_blocking(move || auth.header()).await.map_err(BoxError::from)??
            } else {
                auth.header()?
            };
            if let Some(v) = header {
                request.headers_mut().insert(AUTHORIZATION, v);
            }
            Ok(request)
        })
    }
}

/// The longest token file read (projected service-account tokens are about 1 KiB).
const MAX_TOKEN_FILE: u64 = 64 * 1024;

fn read_token(path: &Path) -> Result<String, Error> {
    let bytes = read_small(path, MAX_TOKEN_FILE, "token file")?;
    let text = String::from_utf8_lossy(&bytes);
    let token = text.trim();
    if token.is_empty() {
        return Err(Error::Config(format!("token file {} is empty", path.display())));
    }
    Ok(token.to_string())
}

fn bearer(token: &str) -> Result<HeaderValue, Error> {
    sensitive(&format!("Bearer {}", token.trim()))
}

fn sensitive(value: &str) -> Result<HeaderValue, Error> {
    let mut v = HeaderValue::from_str(value)
        .map_err(|_| Error::Config("the credentials hold characters an HTTP header cannot carry".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

/// The token an `auth-provider` entry holds: oidc's `id-token`, or gcp's `access-token` (kube-rs
/// without its `oidc`/`oauth` features does the same; client-go dropped the gcp provider in 1.26).
fn provider_token(provider: &AuthProviderConfig) -> Result<String, Error> {
    let key = match provider.name.as_str() {
        "oidc" => "id-token",
        "gcp" | "azure" => "access-token",
        other => return Err(Error::Config(format!("auth-provider {other} is not supported"))),
    };
    provider.config.get(key).filter(|t| !t.is_empty()).cloned().ok_or_else(|| {
        Error::Config(format!(
            "auth-provider {} has no {key}: refresh it with kubectl, or use an exec credential plugin",
            provider.name
        ))
    })
}

/// Runs an exec credential plugin (client-go's protocol: `KUBERNETES_EXEC_INFO` in, an
/// `ExecCredential` on stdout), never interactively, bounded by [`EXEC_TIMEOUT`].
fn run_exec(exec: &ExecConfig) -> Result<ExecCredential, Error> {
    let command = exec
        .command
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| Error::Config("the kubeconfig's exec credential plugin has no command".into()))?;
    let api_version = exec.api_version.clone().unwrap_or_else(|| "client.authentication.k8s.io/v1".into());
    let mut spec = serde_json::json!({"interactive": false});
    if exec.provide_cluster_info {
        let cluster = exec.cluster.as_ref().ok_or_else(|| {
            Error::Config("the exec credential plugin wants cluster information the kubeconfig lacks".into())
        })?;
        spec["cluster"] = serde_json::to_value(cluster).map_err(|e| Error::Config(e.to_string()))?;
    }
    let info = serde_json::json!({"apiVersion": api_version, "kind": "ExecCredential", "spec": spec});
    let mut env: Vec<(String, String)> =
        exec.env.iter().flatten().filter_map(|e| Some((e.get("name")?.clone(), e.get("value")?.clone()))).collect();
    env.push(("KUBERNETES_EXEC_INFO".into(), info.to_string()));
    let args = exec.args.clone().unwrap_or_default();
    let drop_env = exec.drop_env.clone().unwrap_or_default();
    let runner = crate::cni::exec::RawExec { timeout: EXEC_TIMEOUT, forward_stderr: true };
    let out = runner
        .run(
            &look_path(command),
            b"",
            &env,
            crate::cni::spawn::Options { args: &args, env_remove: &drop_env, chroot: None },
        )
        .map_err(|e| Error::Config(format!("exec credential plugin {command} failed: {e}")))?;
    parse_exec_credential(&out).map_err(|e| Error::Config(format!("exec credential plugin {command}: {e}")))
}

/// `command` as client-go's `exec.LookPath` finds it: a name without a slash is searched in
/// `PATH` (libcni's `find_in_path`, the first regular file wins); anything else is used as it is.
fn look_path(command: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).filter(|d| !d.as_os_str().is_empty()).collect();
    crate::cni::exec::find_in_path(command, &dirs).unwrap_or_else(|_| PathBuf::from(command))
}

/// The `status` of an `ExecCredential` document (pure).
fn parse_exec_credential(out: &[u8]) -> Result<ExecCredential, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Status {
        token: Option<String>,
        client_certificate_data: Option<String>,
        client_key_data: Option<String>,
        expiration_timestamp: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Doc {
        status: Option<Status>,
    }
    let doc: Doc = serde_json::from_slice(out).map_err(|e| format!("its output is not an ExecCredential: {e}"))?;
    let status = doc.status.ok_or("its ExecCredential has no status")?;
    let expires = match &status.expiration_timestamp {
        Some(ts) => Some(
            chrono::DateTime::parse_from_rfc3339(ts)
                .map(SystemTime::from)
                .map_err(|e| format!("invalid expirationTimestamp {ts:?}: {e}"))?,
        ),
        None => None,
    };
    let identity = match (status.client_certificate_data, status.client_key_data) {
        (Some(cert), Some(key)) => Some(format!("{cert}\n{key}\n").into_bytes()),
        (None, None) => None,
        _ => return Err("its ExecCredential has only one of clientCertificateData and clientKeyData".into()),
    };
    let token = status.token.filter(|t| !t.is_empty());
    if token.is_none() && identity.is_none() {
        return Err("its ExecCredential holds neither a token nor a client certificate".into());
    }
    Ok(ExecCredential { token, identity, expires })
}

/// kubeconfig's `insecure-skip-tls-verify`: any server certificate is accepted; the handshake's
/// signatures are still checked.
#[derive(Debug)]
struct NoVerifier(rustls::crypto::CryptoProvider);

impl rustls::client::danger::ServerCertVerifier for NoVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_commands_without_a_slash_are_found_in_path() {
        let sh = look_path("sh");
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{}", sh.display());
        assert_eq!(look_path("./bin/plugin"), PathBuf::from("./bin/plugin"));
        assert_eq!(look_path("no-such-credential-plugin"), PathBuf::from("no-such-credential-plugin"));
    }

    #[test]
    fn exec_credential_token_identity_and_expiry() {
        let c = parse_exec_credential(
            br#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",
                "status":{"token":"abc","expirationTimestamp":"2030-01-02T03:04:05Z"}}"#,
        )
        .unwrap();
        assert_eq!(c.token.as_deref(), Some("abc"));
        assert!(c.identity.is_none());
        let at = c.expires.unwrap().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(at, 1_893_553_445);
        let c = parse_exec_credential(br#"{"status":{"clientCertificateData":"C","clientKeyData":"K"}}"#).unwrap();
        assert_eq!(c.identity.as_deref(), Some(&b"C\nK\n"[..]));
        assert!(c.token.is_none() && c.expires.is_none());
    }

    #[test]
    fn exec_credential_errors_say_what_is_missing() {
        for (doc, says) in [
            (&br#"{}"#[..], "no status"),
            (br#"{"status":{}}"#, "neither a token"),
            (br#"{"status":{"clientKeyData":"K"}}"#, "only one of"),
            (br#"{"status":{"token":"t","expirationTimestamp":"tomorrow"}}"#, "invalid expirationTimestamp"),
            (b"not json", "not an ExecCredential"),
        ] {
            let e = parse_exec_credential(doc).err().unwrap();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn precedence_is_provider_basic_token_file_exec() {
        let info = |yaml: &str| -> AuthInfo { serde_yaml::from_str(yaml).unwrap() };
        let header = |i: &AuthInfo| Auth::from_info(i).unwrap().0.header().unwrap().unwrap();
        let v = header(&info("{auth-provider: {name: oidc, config: {id-token: ID}}, token: T}"));
        assert_eq!(v.to_str().unwrap(), "Bearer ID");
        let v = header(&info("{username: u, password: p, token: T}"));
        assert_eq!(v.to_str().unwrap(), "Basic dTpw");
        assert!(v.is_sensitive());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "FILE\n").unwrap();
        let v = header(&info(&format!("{{token: T, tokenFile: {}}}", file.display())));
        assert_eq!(v.to_str().unwrap(), "Bearer T");
        let auth = Auth::from_info(&info(&format!("{{tokenFile: {}}}", file.display()))).unwrap().0;
        assert_eq!(auth.header().unwrap().unwrap().to_str().unwrap(), "Bearer FILE");
        assert!(Auth::from_info(&info("{}")).unwrap().0.header().unwrap().is_none());
    }

    #[test]
    fn a_token_file_is_read_again_after_a_minute() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "one").unwrap();
        let info: AuthInfo = serde_yaml::from_str(&format!("{{tokenFile: {}}}", file.display())).unwrap();
        let auth = Auth::from_info(&info).unwrap().0;
        std::fs::write(&file, "two").unwrap();
        assert_eq!(auth.header().unwrap().unwrap().to_str().unwrap(), "Bearer one", "cached within the minute");
        let Mode::TokenFile { cached, .. } = &*auth.0 else { unreachable!() };
        let stale = Instant::now().checked_sub(TOKEN_FILE_TTL).unwrap();
        cached.lock().unwrap().as_mut().unwrap().1 = stale;
        assert_eq!(auth.header().unwrap().unwrap().to_str().unwrap(), "Bearer two");
        std::fs::write(&file, "").unwrap();
        cached.lock().unwrap().as_mut().unwrap().1 = stale;
        let e = auth.header().unwrap_err().to_string();
        assert!(e.contains("is empty") && e.contains("token"), "{e}");
    }

    #[test]
    fn an_exec_plugin_runs_with_exec_info_and_is_rerun_when_its_token_expires() {
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("count");
        let script = dir.path().join("cred.sh");
        // Each run appends to `count` and answers a token that expires at once, with the
        // interactive flag it was given.
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho x >> {}\nn=$(wc -l < {})\ncase \"$KUBERNETES_EXEC_INFO\" in *'\"interactive\":false'*) i=no;; *) i=yes;; esac\n\
                 printf '{{\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"t%s-%s-%s\",\"expirationTimestamp\":\"2000-01-01T00:00:00Z\"}}}}' \"$n\" \"$i\" \"$EXTRA\"\n",
                count.display(),
                count.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let info: AuthInfo = serde_yaml::from_str(&format!(
            "{{exec: {{apiVersion: client.authentication.k8s.io/v1, command: {}, env: [{{name: EXTRA, value: e}}]}}}}",
            script.display()
        ))
        .unwrap();
        let auth = Auth::from_info(&info).unwrap().0;
        assert_eq!(auth.header().unwrap().unwrap().to_str().unwrap(), "Bearer t2-no-e", "expired: run again");
        assert_eq!(auth.header().unwrap().unwrap().to_str().unwrap(), "Bearer t3-no-e");
    }

    #[test]
    fn files_larger_than_their_bound_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("token");
        std::fs::write(&big, vec![b'a'; MAX_TOKEN_FILE as usize + 1]).unwrap();
        let e = read_token(&big).unwrap_err().to_string();
        assert!(e.contains("larger than 65536 bytes") && e.contains("token file"), "{e}");
        std::fs::write(&big, vec![b'a'; MAX_TOKEN_FILE as usize]).unwrap();
        assert_eq!(read_token(&big).unwrap().len(), MAX_TOKEN_FILE as usize);
    }

    #[test]
    fn client_identity_needs_a_certificate_and_a_key() {
        let e = client_identity(b"").unwrap_err().to_string();
        assert!(e.contains("no certificate"), "{e}");
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let e = client_identity(cert.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("no private key"), "{e}");
        let key = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
        let (chain, key) = client_identity(format!("{cert}{key}").as_bytes()).unwrap();
        assert_eq!(chain.len(), 1);
        assert!(matches!(key, PrivateKeyDer::Sec1(_)));
    }
}
