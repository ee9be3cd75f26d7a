//! Our API-server client over TLS (`src/k8s/transport.rs`), as every real cluster is reached: a
//! TLS front (rustls, with a CA and certificates made by the `openssl` CLI in the test's temp dir)
//! before the fake API server checks the cluster CA, the server name and the client certificate.
//! (The fake stands in for kube-apiserver, which cannot run here; the TLS is real.)

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use multus::k8s::client::{Source, connect};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

use crate::support::apiserver::FakeApiServer;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("running openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA, a server certificate for 127.0.0.1 / `kubernetes.default.svc`, and a client certificate
/// `CN=<client_cn>, O=system:multus`, all signed by the CA (files in `dir`).
fn make_pki(dir: &Path, client_cn: &str) {
    // `head`, then a new P-256 key, unencrypted, written to the file named first in `tail`.
    fn with<'a>(head: &[&'a str], tail: &[&'a str]) -> Vec<&'a str> {
        let new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout"];
        [head, &new_key[..], tail].concat()
    }
    openssl(dir, &with(&["req", "-x509"], &["ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=test-ca"]));
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (name, subj) in
        [("server", "/CN=kube-apiserver".to_string()), ("client", format!("/O=system:multus/CN={client_cn}"))]
    {
        let (key, csr, crt, ext) =
            (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"), format!("{name}.ext"));
        openssl(dir, &with(&["req"], &[&key, "-out", &csr, "-subj", &subj]));
        let sign = ["x509", "-req", "-in", &csr, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial"];
        openssl(dir, &[&sign[..], &["-out", &crt, "-days", "1", "-extfile", &ext]].concat());
    }
}

/// The subject CN of a DER certificate (the last CN in it: the issuer's comes first).
fn subject_cn(der: &[u8]) -> String {
    let oid = [0x06, 0x03, 0x55, 0x04, 0x03];
    let at = der.windows(oid.len()).rposition(|w| w == oid).expect("a CN in the certificate") + oid.len();
    let len = der[at + 1] as usize;
    String::from_utf8_lossy(&der[at + 2..at + 2 + len]).into_owned()
}

/// TLS on 127.0.0.1 in front of the fake API server: requests a client certificate (verified
/// against the CA when one is sent) and records the CN of each one it saw.
struct TlsFront {
    addr: std::net::SocketAddr,
    client_cns: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsFront {
    fn start(dir: &Path, backend: std::net::SocketAddr) -> TlsFront {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ca = CertificateDer::from_pem_file(dir.join("ca.crt")).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .allow_unauthenticated()
            .build()
            .unwrap();
        let chain = vec![CertificateDer::from_pem_file(dir.join("server.crt")).unwrap()];
        let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (client_cns, stop) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
        let (cns, stopping) = (client_cns.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((tcp, _)) => {
                        let (config, cns, stopping) = (config.clone(), cns.clone(), stopping.clone());
                        conns.push(std::thread::spawn(move || relay(tcp, config, backend, &cns, &stopping)));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
                    Err(_) => break,
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        TlsFront { addr, client_cns, stop, thread: Some(thread) }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One connection: the handshake, then bytes both ways until either side closes (short read
/// timeouts let one thread serve both directions).
fn relay(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    backend: std::net::SocketAddr,
    cns: &Mutex<Vec<String>>,
    stop: &AtomicBool,
) {
    let _ = tcp.set_nonblocking(false);
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(5)));
    let mut tls = rustls::StreamOwned::new(rustls::ServerConnection::new(config).unwrap(), tcp);
    while tls.conn.is_handshaking() {
        match tls.conn.complete_io(&mut tls.sock) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
            }
            Err(_) => return,
        }
    }
    if let Some(chain) = tls.conn.peer_certificates() {
        cns.lock().unwrap().push(subject_cn(&chain[0]));
    }
    let Ok(mut back) = TcpStream::connect(backend) else { return };
    let _ = back.set_read_timeout(Some(Duration::from_millis(5)));
    let mut buf = [0u8; 16384];
    while !stop.load(Ordering::SeqCst) {
        match tls.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if back.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
        match back.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if tls.write_all(&buf[..n]).and_then(|()| tls.flush()).is_err() {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

/// A kubeconfig for `server` (https URL) with the CA file and user fields given.
fn kubeconfig(dir: &Path, server: &str, cluster_extra: &str, user: &str) -> PathBuf {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n{cluster_extra}\
         contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user: {user}\n"
    );
    let path = dir.join("kubeconfig");
    std::fs::write(&path, text).unwrap();
    path
}

fn get_pod(kubeconfig: &Path) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = connect(&Source::Kubeconfig(kubeconfig.to_path_buf())).await.map_err(|e| e.to_string())?;
        let pods: Api<Pod> = Api::namespaced(client.expect("a client"), "ns");
        pods.get("p").await.map(|_| ()).map_err(|e| format!("{e:?}"))
    })
}

#[test]
fn the_client_verifies_the_cluster_ca_and_presents_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_pki(d, "system:multus:node1");
    let api = FakeApiServer::start();
    api.create_pod(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": "ns", "name": "p"}}));
    let front = TlsFront::start(d, api.addr());
    let url = format!("https://{}", front.addr);
    let ca = format!("    certificate-authority: {}\n", d.join("ca.crt").display());
    let cert_files = format!(
        "{{client-certificate: {}, client-key: {}}}",
        d.join("client.crt").display(),
        d.join("client.key").display()
    );

    // The CA and the client certificate from files: the front sees the certificate's CN.
    get_pod(&kubeconfig(d, &url, &ca, &cert_files)).expect("a GET over TLS with a client certificate");
    assert_eq!(front.client_cns.lock().unwrap().as_slice(), ["system:multus:node1"]);
    assert!(
        api.requests().iter().any(|(m, p)| m == "GET" && p == "/api/v1/namespaces/ns/pods/p"),
        "{:?}",
        api.requests()
    );

    // The same inline (base64 data), with a token and no certificate, and with tls-server-name.
    use base64::Engine;
    let b64 = |f: &str| base64::engine::general_purpose::STANDARD.encode(std::fs::read(d.join(f)).unwrap());
    let ca_data = format!("    certificate-authority-data: {}\n", b64("ca.crt"));
    let inline = format!("{{client-certificate-data: {}, client-key-data: {}}}", b64("client.crt"), b64("client.key"));
    get_pod(&kubeconfig(d, &url, &ca_data, &inline)).expect("inline certificate data");
    get_pod(&kubeconfig(d, &url, &ca_data, "{token: t}")).expect("a token over TLS");
    let by_name = format!("{ca_data}    tls-server-name: kubernetes.default.svc\n");
    get_pod(&kubeconfig(d, &url, &by_name, "{token: t}")).expect("tls-server-name");
    assert_eq!(front.client_cns.lock().unwrap().len(), 2, "certificates are sent only when configured");

    // A server the CA did not sign for the name asked, and a different CA, are refused.
    let wrong_name = format!("{ca_data}    tls-server-name: other.example\n");
    let e = get_pod(&kubeconfig(d, &url, &wrong_name, "{token: t}")).unwrap_err();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    let other = tempfile::tempdir().unwrap();
    make_pki(other.path(), "x");
    let other_ca = format!("    certificate-authority: {}\n", other.path().join("ca.crt").display());
    let e = get_pod(&kubeconfig(d, &url, &other_ca, "{token: t}")).unwrap_err();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    // insecure-skip-tls-verify accepts it.
    get_pod(&kubeconfig(d, &url, "    insecure-skip-tls-verify: true\n", "{token: t}"))
        .expect("insecure-skip-tls-verify");
}
