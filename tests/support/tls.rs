//! TLS on loopback in front of the fake API server (which speaks plain HTTP): a CA and
//! certificates made by the real `openssl` CLI, rustls as the server, the client certificate of
//! every connection and the requests that went through it recorded.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// One TLS connection the front accepted.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The client certificate (DER), when one was presented.
    pub cert: Option<Vec<u8>>,
    /// `METHOD /path?query` of every request sent over it.
    pub requests: Vec<String>,
}

pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("running openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA, a server certificate for 127.0.0.1 / `kubernetes.default.svc`, and a client certificate
/// `CN=<client_cn>, O=system:multus`, all signed by the CA (files in `dir`).
pub fn make_pki(dir: &Path, client_cn: &str) {
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
pub fn subject_cn(der: &[u8]) -> String {
    let oid = [0x06, 0x03, 0x55, 0x04, 0x03];
    let at = der.windows(oid.len()).rposition(|w| w == oid).expect("a CN in the certificate") + oid.len();
    let len = der[at + 1] as usize;
    String::from_utf8_lossy(&der[at + 2..at + 2 + len]).into_owned()
}

/// TLS on 127.0.0.1 in front of the fake API server: requests a client certificate (verified
/// against the CA when one is sent) and records the CN of each one it saw.
pub struct TlsFront {
    pub addr: std::net::SocketAddr,
    /// The subject CN of every client certificate presented, one per connection.
    pub client_cns: Arc<Mutex<Vec<String>>>,
    /// Every connection: (sha256 of the client certificate, or None) and the request lines
    /// (`GET /api/v1/pods?...`) that went through it.
    pub connections: Arc<Mutex<Vec<Connection>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsFront {
    pub fn start(dir: &Path, backend: std::net::SocketAddr) -> TlsFront {
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
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (cns, stopping, conns_log) = (client_cns.clone(), stop.clone(), connections.clone());
        let thread = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((tcp, _)) => {
                        let (config, cns, stopping, log) =
                            (config.clone(), cns.clone(), stopping.clone(), conns_log.clone());
                        conns.push(std::thread::spawn(move || relay(tcp, config, backend, &cns, &log, &stopping)));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        readable([std::os::fd::AsRawFd::as_raw_fd(&listener)]);
                    }
                    Err(_) => break,
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        TlsFront { addr, client_cns, connections, stop, thread: Some(thread) }
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

/// Waits until one of `fds` is readable (or hung up), at most 50 ms so a stop request is seen;
/// returns which are.
fn readable<const N: usize>(fds: [std::os::fd::RawFd; N]) -> [bool; N] {
    let mut p = fds.map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 });
    // SAFETY: `p` is a valid array of N pollfd structs for the duration of the call.
    let n = unsafe { libc::poll(p.as_mut_ptr(), N as libc::nfds_t, 50) };
    if n <= 0 {
        return [false; N];
    }
    p.map(|f| f.revents != 0)
}

/// One connection: the handshake, then bytes both ways until either side closes. One thread
/// waits on both sockets with poll(2) and forwards whatever is ready at once, so the front adds
/// no latency of its own (no polling sleeps) to what it relays.
fn relay(
    mut tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    backend: std::net::SocketAddr,
    cns: &Mutex<Vec<String>>,
    log: &Mutex<Vec<Connection>>,
    stop: &AtomicBool,
) {
    use std::os::fd::AsRawFd;
    let _ = tcp.set_nonblocking(false);
    let _ = tcp.set_nodelay(true);
    let mut conn = rustls::ServerConnection::new(config).unwrap();
    let mut buf = [0u8; 16384];
    // Moves every pending TLS record to the client.
    let flush = |conn: &mut rustls::ServerConnection, tcp: &mut TcpStream| -> bool {
        while conn.wants_write() {
            if conn.write_tls(tcp).is_err() {
                return false;
            }
        }
        true
    };
    while conn.is_handshaking() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if !flush(&mut conn, &mut tcp) {
            return;
        }
        if !conn.is_handshaking() {
            break;
        }
        if readable([tcp.as_raw_fd()])[0] {
            match conn.read_tls(&mut tcp) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if conn.process_new_packets().is_err() {
                        let _ = flush(&mut conn, &mut tcp);
                        return;
                    }
                }
            }
        }
    }
    if !flush(&mut conn, &mut tcp) {
        return;
    }
    let cert = conn.peer_certificates().map(|chain| chain[0].to_vec());
    if let Some(c) = &cert {
        cns.lock().unwrap().push(subject_cn(c));
    }
    let index = {
        let mut l = log.lock().unwrap();
        l.push(Connection { cert, requests: Vec::new() });
        l.len() - 1
    };
    let Ok(mut back) = TcpStream::connect(backend) else { return };
    let _ = back.set_nodelay(true);
    // Forwards the plaintext rustls holds (the first request may arrive with the handshake's
    // last flight); false when the client closed or the backend is gone.
    let mut forward = |conn: &mut rustls::ServerConnection, back: &mut TcpStream| -> bool {
        loop {
            match conn.reader().read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]);
                    for line in text.lines() {
                        let verb = line.split(' ').next().unwrap_or_default();
                        if ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&verb) && line.ends_with(" HTTP/1.1") {
                            log.lock().unwrap()[index].requests.push(line.trim_end_matches(" HTTP/1.1").to_string());
                        }
                    }
                    if back.write_all(&buf[..n]).is_err() {
                        return false;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        }
    };
    if !forward(&mut conn, &mut back) {
        return;
    }
    let mut reply = [0u8; 16384];
    while !stop.load(Ordering::SeqCst) {
        let [client, server] = readable([tcp.as_raw_fd(), back.as_raw_fd()]);
        if client {
            match conn.read_tls(&mut tcp) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if conn.process_new_packets().is_err() {
                let _ = flush(&mut conn, &mut tcp);
                return;
            }
            if !forward(&mut conn, &mut back) || !flush(&mut conn, &mut tcp) {
                return;
            }
        }
        if server {
            match back.read(&mut reply) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if conn.writer().write_all(&reply[..n]).is_err() || !flush(&mut conn, &mut tcp) {
                        return;
                    }
                }
            }
        }
    }
}

/// The signer of `kubernetes.io/kube-apiserver-client` requests, as kube-controller-manager runs
/// it: every approved CertificateSigningRequest without a certificate gets one, signed by the CA in
/// `dir` (`ca.crt`, `ca.key` of [`make_pki`]) with the real `openssl ca`, valid from 5 s ago
/// for `lifetime` (a real signer may also issue for less than `expirationSeconds` asks). Stops
/// on drop.
pub struct Signer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Names of the requests it issued, in order.
    pub issued: Arc<Mutex<Vec<String>>>,
}

impl Signer {
    pub fn start(dir: &Path, api: crate::support::apiserver::ApiHandle, lifetime: Duration) -> Signer {
        let work = dir.join("signer");
        std::fs::create_dir_all(work.join("issued")).unwrap();
        std::fs::write(work.join("index.txt"), "").unwrap();
        std::fs::write(work.join("serial"), "1000\n").unwrap();
        let config = format!(
            "[ca]\ndefault_ca = signer\n[signer]\ndatabase = {w}/index.txt\nnew_certs_dir = {w}/issued\n\
             serial = {w}/serial\ndefault_md = sha256\npolicy = any\nunique_subject = no\ncopy_extensions = none\n\
             x509_extensions = client\n[any]\ncommonName = supplied\norganizationName = optional\n\
             [client]\nbasicConstraints = CA:FALSE\nextendedKeyUsage = clientAuth\nkeyUsage = digitalSignature\n",
            w = work.display()
        );
        std::fs::write(work.join("ca.cnf"), config).unwrap();
        let (stop, issued) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
        let (stopping, log, dir) = (stop.clone(), issued.clone(), dir.to_path_buf());
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                for csr in api.csrs() {
                    let approved = csr["status"]["conditions"]
                        .as_array()
                        .is_some_and(|c| c.iter().any(|c| c["type"] == "Approved" && c["status"] == "True"));
                    if !approved || csr["status"]["certificate"].is_string() {
                        continue;
                    }
                    let name = csr["metadata"]["name"].as_str().unwrap().to_string();
                    use base64::Engine as _;
                    let pem = base64::engine::general_purpose::STANDARD
                        .decode(csr["spec"]["request"].as_str().unwrap())
                        .unwrap();
                    std::fs::write(work.join("request.pem"), pem).unwrap();
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
                    let start = utc(now - 5);
                    let end = utc(now + lifetime.as_secs());
                    let out = Command::new("openssl")
                        .args(["ca", "-batch", "-notext", "-preserveDN", "-config"])
                        .arg(work.join("ca.cnf"))
                        .arg("-cert")
                        .arg(dir.join("ca.crt"))
                        .arg("-keyfile")
                        .arg(dir.join("ca.key"))
                        .arg("-in")
                        .arg(work.join("request.pem"))
                        .arg("-out")
                        .arg(work.join("issued.pem"))
                        .args(["-startdate", &start, "-enddate", &end])
                        .output()
                        .unwrap();
                    assert!(out.status.success(), "openssl ca: {}", String::from_utf8_lossy(&out.stderr));
                    api.issue_csr(&name, &std::fs::read_to_string(work.join("issued.pem")).unwrap());
                    log.lock().unwrap().push(name);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Signer { stop, thread: Some(thread), issued }
    }
}

impl Drop for Signer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `YYMMDDHHMMSSZ` of seconds since the epoch (openssl's `-startdate`/`-enddate`).
pub fn utc(secs: u64) -> String {
    let t = multus::k8s::x509::utc_time(secs as i64);
    String::from_utf8(t[2..].to_vec()).unwrap()
}
