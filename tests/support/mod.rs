//! Test support shared by the integration-test binaries: network namespaces the test creates and
//! always removes (Drop runs on panic too), running code inside one on a dedicated thread, and
//! reading what is really in a namespace with `ip -j`; `kubelet` is a fake kubelet PodResources
//! server; `thick` runs the real daemon and shim (the `thick` tests and bench); `containerd` runs a
//! private containerd and `cri` is the kubelet's client of it (the `cri` tests and bench).
//!
//! These tests need root (they create namespaces); they fail loudly rather than skip without it.

#![allow(dead_code)]

pub mod kubelet;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod apiserver;
pub mod containerd;
pub mod cri;
pub mod thick;
pub mod tls;

/// Polls `f` every 50 ms until it gives a value; panics naming `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Where Debian's containernetworking-plugins installs the reference plugins.
pub const CNI_BIN: &str = "/usr/lib/cni";

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(uid, 0, "these tests create network namespaces and need root; run them with `cargo xtask test` as root");
    assert!(
        Path::new(CNI_BIN).join("bridge").exists(),
        "reference CNI plugins missing in {CNI_BIN}: run scripts/install-test-deps.sh"
    );
}

/// A network namespace named `mt<pid>-<n><tag>`, deleted on drop with everything in it.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        require_root();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("mt{}-{n}{tag}", std::process::id());
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// `ip -n <ns> ARGS`, panicking with its stderr on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// `ip -j -n <ns> ARGS` parsed.
    pub fn ip_json(&self, args: &[&str]) -> Value {
        let mut full = vec!["-j", "-n", &self.name];
        full.extend_from_slice(args);
        let out = run("ip", &full);
        serde_json::from_str(if out.trim().is_empty() { "[]" } else { &out }).expect("ip -j output")
    }

    /// The link named `ifname`, if it exists.
    pub fn link(&self, ifname: &str) -> Option<Value> {
        self.ip_json(&["-d", "link", "show"]).as_array().unwrap().iter().find(|l| l["ifname"] == ifname).cloned()
    }

    pub fn link_names(&self) -> Vec<String> {
        self.ip_json(&["link", "show"])
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["ifname"].as_str().unwrap().to_string())
            .collect()
    }

    /// Addresses (`a.b.c.d/nn`) of one interface, IPv4 and global IPv6.
    pub fn addrs(&self, ifname: &str) -> Vec<String> {
        let v = self.ip_json(&["addr", "show"]);
        let mut out = Vec::new();
        for l in v.as_array().unwrap().iter().filter(|l| l["ifname"] == ifname) {
            for a in l["addr_info"].as_array().unwrap() {
                if a["scope"] == "link" {
                    continue;
                }
                out.push(format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]));
            }
        }
        out
    }

    /// The IPv4 routes of the main table as `dst via gw dev`.
    pub fn routes(&self) -> Vec<String> {
        self.ip_json(&["route", "show"])
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let mut s = r["dst"].as_str().unwrap().to_string();
                if let Some(gw) = r["gateway"].as_str() {
                    s.push_str(&format!(" via {gw}"));
                }
                s.push_str(&format!(" dev {}", r["dev"].as_str().unwrap()));
                s
            })
            .collect()
    }

    /// Reads a file (e.g. a sysctl under /proc/sys/net) as seen from inside the namespace.
    pub fn read_proc(&self, path: &str) -> String {
        let p = path.to_string();
        self.enter(move || std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {p}: {e}")))
            .trim()
            .to_string()
    }

    /// Runs `f` on a fresh thread that has joined this namespace; processes it spawns live there too.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = self.path();
        std::thread::scope(|s| {
            s.spawn(move || {
                let fd = File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
                // SAFETY: a valid netns fd; setns only affects this thread.
                let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Runs a command, panicking with its stderr when it fails.
pub fn run(prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog).args(args).output().unwrap_or_else(|e| panic!("running {prog}: {e}"));
    assert!(
        out.status.success(),
        "{prog} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A fake node and a pod namespace plus a scratch directory (IPAM data, caches, conf dirs).
pub struct Node {
    pub node: Netns,
    pub pod: Netns,
    pub dir: tempfile::TempDir,
}

impl Node {
    pub fn new() -> Node {
        let node = Netns::new("n");
        let pod = Netns::new("p");
        Node { node, pod, dir: tempfile::tempdir().expect("tempdir") }
    }

    /// A veth pair `hv0`/`hv1` inside the node, both up: a parent for macvlan (no dummy here).
    pub fn with_veth_parent(self) -> Node {
        self.node.ip(&["link", "add", "hv0", "type", "veth", "peer", "name", "hv1"]);
        self.node.ip(&["link", "set", "hv0", "up"]);
        self.node.ip(&["link", "set", "hv1", "up"]);
        self
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The IPs host-local currently holds for `network` in this node's data dir.
    /// Panics when host-local never made the network's directory: nothing was ever allocated
    /// there, so an "every IP was freed" check would prove nothing.
    pub fn ipam_ips(&self, network: &str) -> Vec<String> {
        let dir = self.path("ipam").join(network);
        let mut v: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| {
                panic!("no IPAM directory {} ({e}): nothing was allocated, a leak check proves nothing", dir.display())
            })
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .collect();
        v.sort();
        v
    }
}

/// Runs a CNI plugin binary as a runtime would: inside the node namespace, CNI_* in the
/// environment (CNI_NETNS = the pod namespace, CNI_PATH = the reference plugins), the config on
/// stdin. Returns the exit code and stdout; stderr is echoed for the test log.
pub fn invoke(
    node: &Node,
    bin: &str,
    cmd: &str,
    conf: &Value,
    container: &str,
    ifname: &str,
    cni_args: &str,
) -> (i32, String) {
    let env = [("CNI_ARGS", cni_args)];
    let out =
        node.node.enter(|| thick::finish(thick::spawn_cni(Path::new(bin), node, cmd, conf, container, ifname, &env)));
    if !out.stderr.is_empty() {
        eprintln!("{bin} {cmd} stderr: {}", out.stderr);
    }
    (out.code, out.stdout)
}

/// The directory holding test-only plugins (cargo builds examples next to the test binaries).
pub fn test_plugin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    assert!(dir.join("cni-recorder").exists(), "test plugin missing at {}: build with `cargo test`", dir.display());
    dir
}

/// Waits until `cond` holds, polling; panics with `what` if it never does. A wait for an
/// outcome, not a timing assertion: the deadline is only there so a broken build fails instead
/// of hanging.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The file's content, or `None` when it does not exist.
pub fn read(path: &std::path::Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The file's permission bits.
pub fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Builds the Go program `tests/interop/<name>/main.go` once per test binary (GOPATH mode against
/// Debian's libcni sources, installed by scripts/install-test-deps.sh) and returns its path.
#[allow(dead_code)]
pub fn go_program(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = built.iter().find(|(n, _)| n == name) {
        return p.clone();
    }
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let out = tmp.join(name);
    let status = Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop").join(name).join("main.go"))
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env("GOCACHE", tmp.join("go-cache"))
        .status()
        .expect("go is installed by scripts/install-test-deps.sh");
    assert!(status.success(), "building tests/interop/{name} failed");
    built.push((name.to_string(), out.clone()));
    out
}
