//! Thick mode, shared by the `thick` tests and the `thick` bench: the real `multus-daemon`
//! started inside a node namespace (delegates run where the daemon runs, so bridges land in that
//! namespace), in a process group of its own that a Drop guard kills; the real `multus-shim` (or
//! any CNI plugin) invoked as a runtime invokes it.
//!
//! The binaries are cargo's builds of this package (`CARGO_BIN_EXE_*`: debug for tests, release
//! for benches); [`Daemon::start_bin`] and [`spawn_cni`] take another path (the shipped build).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use multus::thick::client::Client;
use serde_json::{Value, json};

use super::{CNI_BIN, Node};

/// cargo's `multus-daemon` for this target.
pub const DAEMON_BIN: &str = env!("CARGO_BIN_EXE_multus-daemon");
/// The libc-free `multus-shim` (`shim/`, its own workspace): `MULTUS_TEST_SHIM` when set (what
/// `cargo xtask test` builds once before the suites), else built here once per test binary with
/// the flags `cargo xtask build` uses (static, not PIE).
pub fn shim_bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("MULTUS_TEST_SHIM") {
            return p;
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let target_dir = root.join("target/shim");
        let triple = host_triple();
        let status = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--offline", "--locked", "--release", "--bin", "multus-shim", "--target", &triple])
            .arg("--manifest-path")
            .arg(root.join("shim/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static\x1f-Crelocation-model=static")
            .env_remove("RUSTFLAGS")
            .status()
            .expect("running cargo to build shim/");
        assert!(status.success(), "cargo build of shim/ failed");
        target_dir.join(triple).join("release/multus-shim").display().to_string()
    })
}

/// The target triple the tests run on.
fn host_triple() -> String {
    let arch = std::env::consts::ARCH;
    match arch {
        "arm" => "armv7-unknown-linux-gnueabihf".to_string(),
        _ => format!("{arch}-unknown-linux-gnu"),
    }
}

/// A running daemon; killed with its whole process group (delegates included) on drop.
pub struct Daemon {
    child: Option<Child>,
    bin: PathBuf,
    pub config: PathBuf,
    pub socket_dir: PathBuf,
    pub log: PathBuf,
    netns: String,
}

/// The daemon config every test starts from: socket, log and the multus dirs in the node's
/// scratch directory; a user-provided multus config (non-auto mode) so no generator runs.
pub fn daemon_config(node: &Node, extra: Value) -> Value {
    let user_conf = node.path("user/70-multus.conf");
    std::fs::create_dir_all(user_conf.parent().unwrap()).unwrap();
    std::fs::write(&user_conf, r#"{"cniVersion":"1.0.0","name":"multus-cni-network","type":"multus-shim"}"#).unwrap();
    let mut c = json!({"socketDir": node.path("run"), "logFile": node.path("daemon.log"), "logLevel": "debug",
        "multusConfigFile": user_conf, "cniConfigDir": node.path("net.d")});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

/// The default deployment's layout in auto mode: a primary (`10-cbr.conflist`) in one directory
/// that is both `multusAutoconfigDir` and `cniConfigDir`, so the config manager watches the
/// directory it writes `00-multus.conf` into. Returns the daemon config and that file's path.
pub fn auto_mode_config(node: &Node, extra: Value) -> (Value, PathBuf) {
    let auto = node.path("host-net.d");
    write(
        &auto.join("10-cbr.conflist"),
        &json!({"cniVersion": "1.0.0", "name": "cbr", "plugins": [{"type": "bridge"}]}),
    );
    let mut config = daemon_config(
        node,
        json!({"multusConfigFile": "auto", "multusAutoconfigDir": auto, "cniConfigDir": auto, "cniVersion": "1.0.0"}),
    );
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    (config, auto.join("00-multus.conf"))
}

impl Daemon {
    /// Starts the daemon with `config` inside the node namespace and waits until it answers.
    pub fn start(node: &Node, config: &Value) -> Daemon {
        Daemon::start_bin(node, config, Path::new(DAEMON_BIN))
    }

    /// [`Daemon::start`] with another `multus-daemon` binary.
    pub fn start_bin(node: &Node, config: &Value, bin: &Path) -> Daemon {
        let path = node.path("daemon-config.json");
        std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
        let socket_dir = PathBuf::from(config["socketDir"].as_str().unwrap());
        let mut d = Daemon {
            child: None,
            bin: bin.to_path_buf(),
            config: path,
            socket_dir,
            log: node.path("daemon.stderr"),
            netns: node.node.name.clone(),
        };
        d.spawn(node);
        d
    }

    fn spawn(&mut self, node: &Node) {
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = node.node.enter(|| {
            Command::new(&self.bin)
                .args(["-config", self.config.to_str().unwrap()])
                .env("CNI_PATH", CNI_BIN)
                // The tests' pods run on "node1": the daemon watches only those (field selector).
                .env("MULTUS_NODE_NAME", "node1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .process_group(0)
                .spawn()
                .expect("starting multus-daemon")
        });
        self.child = Some(child);
        self.wait_ready();
    }

    /// The daemon's process id (it runs as our direct child).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// A `kB` field of the daemon's `/proc/<pid>/status` (`VmRSS`, `VmHWM`, ...), in KiB.
    pub fn status_kib(&self, field: &str) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        text.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {path}"))
    }

    /// The daemon's resident memory by what holds it, in KiB, from `/proc/<pid>/smaps`: its own
    /// binary's pages (code and data read from the file), the heap, and anonymous mappings (malloc
    /// arenas and thread stacks), as `[(kind, KiB)]`.
    pub fn rss_by_kind_kib(&self) -> Vec<(&'static str, u64)> {
        rss_by_kind_kib(self.pid()).unwrap_or_else(|e| panic!("reading the daemon's smaps: {e}"))
    }

    /// CPU time the daemon has used so far (user + system, all threads), from `/proc/<pid>/stat`.
    pub fn cpu_time(&self) -> Duration {
        let path = format!("/proc/{}/stat", self.pid());
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        // Fields after the command name (which may hold spaces) start at state (field 3);
        // utime and stime are fields 14 and 15, in clock ticks.
        let rest = &text[text.rfind(')').expect("stat has a command") + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_millis(ticks * 1000 / hz)
    }

    pub fn socket(&self) -> PathBuf {
        self.socket_dir.join("multus.sock")
    }

    fn wait_ready(&mut self) {
        let client = Client::new(self.socket());
        let start = Instant::now();
        while client.probe(Duration::from_secs(2)).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("multus-daemon exited with {status}: {}", self.stderr());
            }
            assert!(start.elapsed() < Duration::from_secs(30), "multus-daemon never answered: {}", self.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL to the daemon's process group (it and every delegate it runs), as a node crash or
    /// an OOM kill of the container would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill has no memory preconditions; the group is the one we created.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit code.
    pub fn stop(&mut self) -> i32 {
        let mut child = self.child.take().expect("running");
        // SAFETY: as above, our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().unwrap().code().unwrap_or(-1)
    }

    /// Waits for the daemon to exit on its own; returns the exit code. (The deadline only turns
    /// a daemon that never exits into a failure instead of a hang.)
    pub fn wait_exit(&mut self) -> i32 {
        let mut child = self.child.take().expect("running");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(std::time::Instant::now() < deadline, "the daemon did not exit");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Starts the daemon again with the same config (after `kill` or `stop`).
    pub fn restart(&mut self, node: &Node) {
        assert!(self.child.is_none(), "stop or kill the daemon first");
        assert_eq!(node.node.name, self.netns);
        self.spawn(node);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The multus config the runtime hands the shim (what `00-multus.conf` holds in thick mode).
pub fn shim_conf(node: &Node, version: &str, extra: Value) -> Value {
    let mut c = json!({"cniVersion": version, "name": "multus-cni-network", "type": "multus-shim",
        "daemonSocketDir": node.path("run"), "cniDir": node.path("multus"), "binDir": bin_dir(),
        "logToStderr": true, "logLevel": "error"});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

/// What a runtime sees from one plugin call.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// Asserts success and, for ADD, returns the printed result.
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }
}

/// binDir for delegates: our own binaries (passthru); the test plugins are in `test_plugin_dir()`.
pub fn bin_dir() -> String {
    Path::new(env!("CARGO_BIN_EXE_passthru")).parent().unwrap().display().to_string()
}

/// Starts `multus-shim` the way a runtime does: CNI_* variables, the config on stdin.
pub fn spawn_shim(node: &Node, cmd: &str, conf: &Value, container: &str, ifname: &str) -> Child {
    spawn_shim_env(node, cmd, conf, container, ifname, &[])
}

/// [`spawn_shim`] with variables added or replaced (`CNI_PATH`, ...).
pub fn spawn_shim_env(
    node: &Node,
    cmd: &str,
    conf: &Value,
    container: &str,
    ifname: &str,
    env: &[(&str, &str)],
) -> Child {
    spawn_cni(Path::new(shim_bin()), node, cmd, conf, container, ifname, env)
}

/// Starts the CNI plugin `bin` the way a runtime does: CNI_* variables (the pod namespace, the
/// reference plugins, the pod's identity in CNI_ARGS), `env` added or replaced, the config on
/// stdin. It runs in the calling thread's network namespace.
pub fn spawn_cni(
    bin: &Path,
    node: &Node,
    cmd: &str,
    conf: &Value,
    container: &str,
    ifname: &str,
    env: &[(&str, &str)],
) -> Child {
    let mut c = Command::new(bin);
    c.env("CNI_COMMAND", cmd).env("CNI_PATH", CNI_BIN);
    if !matches!(cmd, "GC" | "STATUS") {
        c.env("CNI_CONTAINERID", container)
            .env("CNI_NETNS", node.pod.path())
            .env("CNI_IFNAME", ifname)
            .env(
                "CNI_ARGS",
                format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={container};K8S_POD_INFRA_CONTAINER_ID={container}"),
            );
    }
    c.envs(env.iter().copied());
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
    child.stdin.take().unwrap().write_all(conf.to_string().as_bytes()).unwrap();
    child
}

pub fn finish(child: Child) -> Outcome {
    let out = child.wait_with_output().unwrap();
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn shim(node: &Node, cmd: &str, conf: &Value, container: &str) -> Outcome {
    finish(spawn_shim(node, cmd, conf, container, "eth0"))
}

pub fn bridge(node: &Node, name: &str, br: &str, subnet: &str) -> Value {
    json!({"cniVersion": "1.0.0", "name": name, "type": "bridge", "bridge": br, "isGateway": true,
        "ipam": {"type": "host-local", "dataDir": node.path("ipam"), "ranges": [[{"subnet": subnet}]],
                 "routes": [{"dst": "0.0.0.0/0"}]}})
}

/// Writes `v` as a file (a conflist the cluster network points at).
pub fn write(path: &Path, v: &Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

/// Files left in a directory (empty when it does not exist).
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The resident memory of process `pid` in KiB by what holds it (see
/// [`Daemon::rss_by_kind_kib`]); an error once the process is gone.
pub fn rss_by_kind_kib(pid: u32) -> std::io::Result<Vec<(&'static str, u64)>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    let mut kinds = [("binary", 0u64), ("heap", 0), ("anonymous", 0), ("other", 0)];
    let mut current = 3;
    for line in text.lines() {
        let first = line.split_whitespace().next().unwrap_or_default();
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let name = line.split_whitespace().nth(5).unwrap_or_default();
            current = match name {
                "" => 2,
                "[heap]" => 1,
                n if n.ends_with("multus-daemon") => 0,
                _ => 3,
            };
        } else if let Some(v) = line.strip_prefix("Rss:") {
            kinds[current].1 += v.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap_or(0);
        }
    }
    Ok(kinds.to_vec())
}
