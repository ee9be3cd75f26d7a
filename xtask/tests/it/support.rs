//! What the image and publish tests share: the binaries and layout they need (built once per
//! test run), temporary directories, Debian's `docker-registry` on a free loopback port, a fault
//! proxy, a token server and certificates. Everything that runs or is created here is removed by
//! a `Drop` guard, also when a test fails.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{root, xtask_json};

/// A directory under CARGO_TARGET_TMPDIR, removed on drop.
pub struct Tmp(pub PathBuf);

impl Tmp {
    pub fn new(tag: &str) -> Tmp {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let p = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("t-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }
    /// A directory with a short path directly under /tmp, for tools that limit path lengths
    /// (podman refuses a runroot longer than 50 characters; the clone's own path can be long).
    pub fn short(tag: &str) -> Tmp {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let p = PathBuf::from(format!("/tmp/mx-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
    pub fn s(&self, p: &str) -> String {
        self.0.join(p).display().to_string()
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every node binary, `passthru` first (the build test runs the first one with `--version`).
pub const NODE_BINARIES: [&str; 6] =
    ["passthru", "multus", "multus-shim", "multus-daemon", "install_multus", "thin_entrypoint"];

/// Builds release `bins` for `arches` with `base/target` as cargo's directory; returns the output
/// directory `base/out`. What `build --json` printed is kept in `base/out/build.json`.
pub fn build_into(base: &Path, arches: &[&str], bins: &[&str]) -> PathBuf {
    let (t, o) = (base.join("target"), base.join("out"));
    let mut args = vec!["build", "--release"];
    for a in arches {
        args.extend(["--arch", a]);
    }
    for b in bins {
        args.extend(["--bin", b]);
    }
    args.extend(["--target-dir", t.to_str().unwrap(), "--out-dir", o.to_str().unwrap()]);
    let json = xtask_json(&args);
    std::fs::write(o.join("build.json"), serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    base.join("out")
}

/// The architectures the image tests package: the host's, a 64-bit foreign one and the 32-bit one
/// (arm/v7, the only platform with an OCI variant).
pub const IMAGE_ARCHES: [&str; 3] = ["amd64", "arm64", "arm"];

/// The release binaries the tests package (every node binary for [`IMAGE_ARCHES`]), built once per
/// test run into a private directory that is kept as a build cache between runs.
pub fn built() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        build_into(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("ximage-build"), &IMAGE_ARCHES, &NODE_BINARIES)
    })
}

/// The build manifest of `built()`.
pub fn build_manifest() -> Value {
    serde_json::from_slice(&std::fs::read(built().join("manifest.json")).unwrap()).unwrap()
}

/// `xtask image --json` of `built()` into `out` (layout in out/layout, archive in
/// out/oci-archive.tar); returns what it printed.
pub fn image_into(out: &Path) -> Value {
    xtask_json(&[
        "image",
        "--manifest",
        built().join("manifest.json").to_str().unwrap(),
        "--out-dir",
        out.to_str().unwrap(),
    ])
}

/// One layout shared by the tests that only read it (made once per run).
pub fn layout() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ximage-oci");
        let json = image_into(&out);
        std::fs::write(out.join("image.json"), serde_json::to_vec_pretty(&json).unwrap()).unwrap();
        out.join("layout")
    })
}

/// index.json's ref names → descriptors.
pub fn refs(layout: &Path) -> BTreeMap<String, Value> {
    let idx: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["annotations"]["org.opencontainers.image.ref.name"].as_str().unwrap().to_string(), d.clone()))
        .collect()
}

/// The ref name of an image (`thick`) and optionally one platform slug (`linux-arm64`).
pub fn ref_of(layout: &Path, image: &str, platform: Option<&str>) -> String {
    let all = refs(layout);
    let found: Vec<&String> = all
        .keys()
        .filter(|r| {
            // `thick-<version>`, not `thick-debug-<version>`: the version starts with a digit.
            r.strip_prefix(&format!("{image}-")).is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()))
                && match platform {
                    Some(p) => r.ends_with(&format!("-{p}")),
                    None => !r.contains("-linux-"),
                }
        })
        .collect();
    assert_eq!(found.len(), 1, "{image} {platform:?} in {all:?}");
    found[0].clone()
}

pub fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(layout.join("blobs/sha256").join(digest.strip_prefix("sha256:").unwrap())).unwrap()
}

pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{:x}", sha2::Sha256::digest(bytes))
}

/// Runs a command, returning (success, stdout, stderr) without asserting.
pub fn run(prog: &str, args: &[&str], envs: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(prog)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("{prog}: {e}"));
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// Runs `xtask ARGS` without asserting (for failures); stdout and stderr together. Its exit
/// code is kept for [`last_exit_code`].
pub fn xtask_result(args: &[&str], envs: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("xtask: {e}"));
    LAST_EXIT.with(|c| c.set(out.status.code().unwrap_or(-1)));
    let (o, e) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), format!("{o}{e}"))
}

thread_local! {
    static LAST_EXIT: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
}

/// The exit code of this thread's last [`xtask_result`] (the documented codes of `outcome`).
pub fn last_exit_code() -> i32 {
    LAST_EXIT.with(|c| c.get())
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_port(port: u16, child: &mut Child, log: &Path) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("docker-registry exited ({st}): {}", std::fs::read_to_string(log).unwrap_or_default());
        }
        assert!(start.elapsed() < Duration::from_secs(20), "docker-registry did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `(status, body)` of a plain-HTTP GET on 127.0.0.1 (for checks that must not use our client).
pub fn http_get(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let (head, body) = split_head(&buf).expect("an HTTP response");
    (status_of(&head), body.to_vec())
}

/// How the registry authenticates.
pub enum Auth {
    None,
    Htpasswd(PathBuf),
    Token { realm: String, cert: PathBuf },
}

/// Debian's `docker-registry` (distribution 2.8) on 127.0.0.1, with its own data directory.
pub struct Registry {
    pub port: u16,
    pub dir: Tmp,
    config: PathBuf,
    child: Option<Child>,
}

impl Registry {
    pub fn start(auth: Auth, tls: Option<(&Path, &Path)>) -> Registry {
        let dir = Tmp::new("registry");
        let port = free_port();
        let mut cfg = format!(
            "version: 0.1\nlog: {{level: warn, accesslog: {{disabled: true}}}}\n\
             storage: {{filesystem: {{rootdirectory: {}}}}}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.s("data")
        );
        if let Some((cert, key)) = tls {
            cfg.push_str(&format!("  tls: {{certificate: {}, key: {}}}\n", cert.display(), key.display()));
        }
        match auth {
            Auth::None => {}
            Auth::Htpasswd(p) => cfg.push_str(&format!("auth: {{htpasswd: {{realm: test-realm, path: {}}}}}\n", p.display())),
            Auth::Token { realm, cert } => cfg.push_str(&format!(
                "auth: {{token: {{realm: \"{realm}\", service: test-registry, issuer: test-issuer, rootcertbundle: {}}}}}\n",
                cert.display()
            )),
        }
        let config = dir.join("config.yml");
        std::fs::write(&config, cfg).unwrap();
        let mut r = Registry { port, dir, config, child: None };
        r.restart();
        r
    }

    /// Starts (again) on the same port and data.
    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::File::create(self.dir.join("registry.log")).unwrap();
        let mut child = Command::new("docker-registry")
            .args(["serve", self.config.to_str().unwrap()])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry (apt-get install docker-registry)");
        wait_port(self.port, &mut child, &self.dir.join("registry.log"));
        self.child = Some(child);
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A self-made CA and a server certificate it signed for 127.0.0.1 (openssl).
pub fn make_tls(dir: &Tmp) -> (PathBuf, PathBuf, PathBuf) {
    let (ca_key, ca, key, csr, cert, ext) =
        (dir.s("ca.key"), dir.s("ca.pem"), dir.s("server.key"), dir.s("server.csr"), dir.s("server.pem"), dir.s("ext"));
    let ok = |args: &[&str]| {
        let (ok, _, e) = run("openssl", args, &[]);
        assert!(ok, "openssl {args:?}: {e}");
    };
    ok(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=xtask test CA",
        "-keyout",
        &ca_key,
        "-out",
        &ca,
    ]);
    ok(&["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", &key, "-out", &csr]);
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n").unwrap();
    ok(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &ext,
        "-out",
        &cert,
    ]);
    (PathBuf::from(ca), PathBuf::from(cert), PathBuf::from(key))
}

pub fn split_head(buf: &[u8]) -> Option<(String, &[u8])> {
    let i = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((String::from_utf8_lossy(&buf[..i]).into_owned(), &buf[i + 4..]))
}

pub fn status_of(head: &str) -> u16 {
    head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Reads one HTTP/1.1 request (head + Content-Length body); None on EOF or a broken one.
fn read_request(s: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end - 4]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(!head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "chunked requests are not expected");
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((head, body))
}

/// `head` with every `Connection` header replaced by `Connection: close`.
fn close_header(head: &str) -> String {
    let mut out: Vec<&str> =
        head.split("\r\n").filter(|l| !l.to_ascii_lowercase().starts_with("connection:")).collect();
    out.push("Connection: close");
    out.join("\r\n")
}

/// Percentages of requests the proxy fails, per kind.
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    pub status_500: u64,
    pub status_429: u64,
    /// Close the connection before the request reaches the registry.
    pub drop_before: u64,
    /// Forward, then close without the answer (the request took effect, the client can't know).
    pub drop_after: u64,
}

pub const NO_FAULTS: Faults = Faults { status_500: 0, status_429: 0, drop_before: 0, drop_after: 0 };

#[derive(Default)]
pub struct ProxyLog {
    /// (method, path, status forwarded back, or 0 when the client got no answer)
    pub requests: Vec<(String, String, u16)>,
    pub faults: BTreeMap<&'static str, u32>,
}

#[derive(Default)]
struct Gate {
    /// Hold every request once this many blob uploads have completed.
    after_uploads: Option<usize>,
    uploads: usize,
    holding: bool,
    signal: Option<mpsc::Sender<()>>,
}

struct ProxyState {
    upstream: u16,
    faults: Mutex<Faults>,
    rng: Mutex<u64>,
    log: Mutex<ProxyLog>,
    gate: Mutex<Gate>,
    cv: Condvar,
    stop: AtomicBool,
}

/// An HTTP proxy on 127.0.0.1 in front of a registry: one request per connection, failures
/// injected at random from a fixed seed, and a gate that can hold traffic mid-push.
pub struct Proxy {
    pub port: u16,
    state: Arc<ProxyState>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    pub fn start(upstream: u16, seed: u64, faults: Faults) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(ProxyState {
            upstream,
            faults: Mutex::new(faults),
            rng: Mutex::new(seed.max(1)),
            log: Mutex::default(),
            gate: Mutex::default(),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            while !st.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                        handle(&st, s);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Proxy { port, state, thread: Some(thread) }
    }

    /// Holds every request once `n` blob uploads have completed; `rx` fires then.
    pub fn hold_after_uploads(&self, n: usize) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel();
        let mut g = self.state.gate.lock().unwrap();
        *g = Gate { after_uploads: Some(n), uploads: 0, holding: false, signal: Some(tx) };
        rx
    }

    pub fn release(&self) {
        let mut g = self.state.gate.lock().unwrap();
        g.after_uploads = None;
        g.holding = false;
        self.state.cv.notify_all();
    }

    /// Takes the log collected so far.
    pub fn take_log(&self) -> ProxyLog {
        std::mem::take(&mut *self.state.log.lock().unwrap())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.release();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn handle(st: &ProxyState, mut client: TcpStream) {
    let Some((head, body)) = read_request(&mut client) else { return };
    let mut line = head.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (line.next().unwrap_or("").to_string(), line.next().unwrap_or("").to_string());
    // Hold while the gate is closed.
    {
        let mut g = st.gate.lock().unwrap();
        while g.holding && !st.stop.load(Ordering::SeqCst) {
            g = st.cv.wait_timeout(g, Duration::from_millis(50)).unwrap().0;
        }
    }
    let f = *st.faults.lock().unwrap();
    let roll = {
        let mut x = st.rng.lock().unwrap();
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x % 100
    };
    let log = |status: u16, fault: Option<&'static str>| {
        let mut l = st.log.lock().unwrap();
        l.requests.push((method.clone(), path.clone(), status));
        if let Some(k) = fault {
            *l.faults.entry(k).or_default() += 1;
        }
    };
    let mut edge = f.status_500;
    if roll < edge {
        let _ =
            client.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return log(500, Some("500"));
    }
    edge += f.status_429;
    if roll < edge {
        let _ = client.write_all(
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return log(429, Some("429"));
    }
    edge += f.drop_before;
    if roll < edge {
        let _ = client.shutdown(Shutdown::Both);
        return log(0, Some("drop before"));
    }
    let drop_after = roll < edge + f.drop_after;
    let Ok(mut up) = TcpStream::connect(("127.0.0.1", st.upstream)) else {
        let _ = client.shutdown(Shutdown::Both);
        return log(0, None);
    };
    up.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let sent = up.write_all(format!("{}\r\n\r\n", close_header(&head)).as_bytes()).and_then(|_| up.write_all(&body));
    let mut resp = Vec::new();
    if sent.is_err() || up.read_to_end(&mut resp).is_err() {
        let _ = client.shutdown(Shutdown::Both);
        return log(0, None);
    }
    let Some((rhead, rbody)) = split_head(&resp) else {
        let _ = client.shutdown(Shutdown::Both);
        return log(0, None);
    };
    let status = status_of(&rhead);
    if method == "PUT" && path.contains("/blobs/uploads/") && status == 201 {
        let mut g = st.gate.lock().unwrap();
        g.uploads += 1;
        if g.after_uploads == Some(g.uploads) {
            g.holding = true;
            if let Some(tx) = g.signal.take() {
                let _ = tx.send(());
            }
        }
    }
    if drop_after {
        let _ = client.shutdown(Shutdown::Both);
        return log(0, Some("drop after"));
    }
    let _ =
        client.write_all(format!("{}\r\n\r\n", close_header(&rhead)).as_bytes()).and_then(|_| client.write_all(rbody));
    log(status, None);
}

/// A Docker-token-spec endpoint on 127.0.0.1 issuing ES256 JWTs that Debian's registry accepts
/// (`x5c` with a self-signed certificate the registry trusts), for `tester:secret` only.
pub struct TokenServer {
    pub port: u16,
    /// The requests' query strings.
    pub queries: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TokenServer {
    /// Makes its key and certificate in `dir` (token.pem is the registry's rootcertbundle).
    pub fn start(dir: &Tmp) -> (TokenServer, PathBuf) {
        let (key, cert, p8, der) = (dir.s("token.key"), dir.s("token.pem"), dir.s("token.p8"), dir.s("token.der"));
        for args in [
            vec!["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"]
                .into_iter()
                .chain(["-subj", "/CN=test-issuer", "-keyout", &key, "-out", &cert])
                .collect::<Vec<&str>>(),
            vec!["pkcs8", "-topk8", "-nocrypt", "-in", &key, "-outform", "DER", "-out", &p8],
            vec!["x509", "-in", &cert, "-outform", "DER", "-out", &der],
        ] {
            let (ok, _, e) = run("openssl", &args, &[]);
            assert!(ok, "openssl {args:?}: {e}");
        }
        let rng = ring::rand::SystemRandom::new();
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &std::fs::read(&p8).unwrap(),
            &rng,
        )
        .unwrap();
        let x5c = b64(&std::fs::read(&der).unwrap(), false);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let queries = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (q, st) = (queries.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let Some((head, _)) = read_request(&mut s) else { continue };
                let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let query = target.split_once('?').map(|(_, q)| q.to_string()).unwrap_or_default();
                q.lock().unwrap().push(query.clone());
                let authorized = head.lines().any(|l| {
                    l.split_once(':').is_some_and(|(k, v)| {
                        k.eq_ignore_ascii_case("authorization")
                            && v.trim() == format!("Basic {}", b64(b"tester:secret", false))
                    })
                });
                let resp = if !authorized {
                    "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
                } else {
                    let token = jwt(&pair, &rng, &x5c, &query);
                    let body = format!(r#"{{"token":"{token}","access_token":"{token}","expires_in":300}}"#);
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                };
                let _ = s.write_all(resp.as_bytes());
            }
        });
        (TokenServer { port, queries, stop, thread: Some(thread) }, PathBuf::from(cert))
    }

    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn b64(bytes: &[u8], url: bool) -> String {
    use base64::Engine;
    if url {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    } else {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }
}

/// A query value decoded (`%XX` escapes, `+` as space).
pub fn unescape(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// A token granting what every `scope=repository:NAME:ACTIONS` parameter asks for.
fn jwt(pair: &ring::signature::EcdsaKeyPair, rng: &ring::rand::SystemRandom, x5c: &str, query: &str) -> String {
    let mut access = Vec::new();
    for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
        if k != "scope" {
            continue;
        }
        for scope in unescape(v).split(' ') {
            let parts: Vec<&str> = scope.split(':').collect();
            if parts.len() == 3 {
                let actions: Vec<&str> = parts[2].split(',').collect();
                access.push(serde_json::json!({"type": parts[0], "name": parts[1], "actions": actions}));
            }
        }
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": "test-issuer", "sub": "tester", "aud": "test-registry",
        "exp": now + 300, "nbf": now - 10, "iat": now - 10, "jti": format!("{now}-{}", access.len()),
        "access": access,
    });
    let signing_input =
        format!("{}.{}", b64(header.to_string().as_bytes(), true), b64(claims.to_string().as_bytes(), true));
    let sig = pair.sign(rng, signing_input.as_bytes()).unwrap();
    format!("{signing_input}.{}", b64(sig.as_ref(), true))
}

/// Registers a qemu-user interpreter (`qemu-aarch64`, `qemu-arm`) with binfmt_misc for the guard's
/// life and leaves binfmt as found.
pub struct Binfmt {
    name: &'static str,
    was_mounted: bool,
    entry_before: Option<bool>,
}

impl Binfmt {
    pub fn enable(name: &'static str) -> Binfmt {
        let dir = Path::new("/proc/sys/fs/binfmt_misc");
        let was_mounted = dir.join("status").exists();
        let entry_before = std::fs::read_to_string(dir.join(name)).ok().map(|s| s.starts_with("enabled"));
        let g = Binfmt { name, was_mounted, entry_before };
        let (ok, _, e) = run("update-binfmts", &["--enable", name], &[]);
        assert!(ok, "update-binfmts --enable {name}: {e}");
        g
    }
}

impl Drop for Binfmt {
    fn drop(&mut self) {
        match self.entry_before {
            Some(true) => {}
            Some(false) => {
                let _ = std::fs::write(format!("/proc/sys/fs/binfmt_misc/{}", self.name), "0");
            }
            None => {
                let _ = run("update-binfmts", &["--disable", self.name], &[]);
            }
        }
        if !self.was_mounted && Path::new("/proc/sys/fs/binfmt_misc/status").exists() {
            let _ = run("umount", &["/proc/sys/fs/binfmt_misc"], &[]);
        }
    }
}

/// Validates JSON files against the official schema of their format (`cyclonedx-1.5` or
/// `sarif-2.1.0`) with `scripts/validate-schema.py`: Debian's python3-jsonschema and the schema
/// files scripts/install-test-deps.sh fetched from npm, an independent judge of our renderers.
pub fn assert_schema_valid(kind: &str, files: &[&Path]) {
    let schemas = root().join("target/tools/schemas");
    assert!(schemas.is_dir(), "{} missing: run scripts/install-test-deps.sh", schemas.display());
    let mut args = vec!["scripts/validate-schema.py".to_string(), schemas.display().to_string(), kind.to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out, err) = run("/usr/bin/python3", &args, &[]);
    assert!(ok, "not valid {kind}:\n{out}{err}");
}
