//! A private containerd for the tests: Debian's containerd 1.6 with its CRI plugin and runc, the
//! runtime that calls multus on a real node. Everything it owns is under the test's directory:
//! root, state, runc's state, the gRPC socket, the sandboxes' network namespaces
//! (`netns_mounts_under_state_dir`) and its config; the CNI conf and bin dirs are the test's.
//! It runs inside the test's node namespace (so bridges and the API server on 127.0.0.1 are
//! there), its sandboxes under a cgroup parent of their own.
//!
//! The sandbox image is the tests' pause image, built by `cargo xtask` (`xtask/src/image/pause.rs`:
//! a static pause program in an OCI archive) and imported with `ctr`, so nothing is pulled.
//!
//! Cleanup on drop, also when the test failed: every sandbox is stopped and removed through CRI,
//! containerd is stopped, and whatever is still left is removed by force: shim and sandbox
//! processes (by our directory in their command line, by our cgroups), mounts under our
//! directory, the cgroups.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Node;
use super::cri::{Cri, LinuxPodSandboxConfig, PodSandboxConfig, PodSandboxMetadata};

/// The name the pause image is imported under (containerd's `sandbox_image`).
pub const PAUSE_IMAGE: &str = "localhost/multus-test/pause:1";
/// The environment variable `cargo xtask test` sets to the pause image's oci-archive.
pub const PAUSE_IMAGE_ENV: &str = "MULTUS_TEST_PAUSE_IMAGE";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The pause image's oci-archive, as `cargo xtask test` built it.
pub fn pause_image() -> PathBuf {
    let path = std::env::var_os(PAUSE_IMAGE_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/cri/pause.oci.tar"));
    assert!(
        path.is_file(),
        "the pause image {} is missing: run `cargo xtask test` (or `cargo xtask pause-image`) to build it",
        path.display()
    );
    path
}

/// A running containerd.
pub struct Containerd {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub conf_dir: PathBuf,
    pub bin_dir: PathBuf,
    /// The cgroup parent of every sandbox this instance runs (`/multus-cri-<pid>-<n>`).
    pub cgroup_parent: String,
    netns: String,
    child: Option<Child>,
}

impl Containerd {
    /// Starts containerd in `node`'s network namespace with the CNI `conf_dir` and `bin_dir`,
    /// imports the pause image and waits until CRI answers.
    pub fn start(node: &Node, conf_dir: &Path, bin_dir: &Path) -> Containerd {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = node.path(&format!("containerd{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = Containerd {
            socket: dir.join("containerd.sock"),
            conf_dir: conf_dir.to_path_buf(),
            bin_dir: bin_dir.to_path_buf(),
            cgroup_parent: format!("/multus-cri-{}-{n}", std::process::id()),
            netns: node.node.path(),
            child: None,
            dir,
        };
        std::fs::write(c.dir.join("config.toml"), c.config()).unwrap();
        c.spawn();
        let out = Command::new("ctr")
            .args(["--address", c.socket.to_str().unwrap(), "--namespace", "k8s.io", "images", "import"])
            .arg(pause_image())
            .output()
            .expect("ctr is installed with containerd by scripts/install-test-deps.sh");
        assert!(out.status.success(), "ctr images import: {}", String::from_utf8_lossy(&out.stderr));
        c
    }

    fn config(&self) -> String {
        let d = self.dir.display();
        format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.opt"]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  disable_apparmor = true
  enable_selinux = false
  netns_mounts_under_state_dir = true
  # The test machines run in a container that may not lower oom_score_adj (the sandbox's -998).
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{d}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{}"
    conf_dir = "{}"
    max_conf_num = 1
"#,
            self.bin_dir.display(),
            self.conf_dir.display()
        )
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("containerd.log")).unwrap();
        let netns = std::fs::File::open(&self.netns).unwrap();
        let child = std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: a valid netns fd; setns only affects this thread, which the child inherits.
                let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&netns), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {}: {}", self.netns, std::io::Error::last_os_error());
                Command::new("containerd")
                    .arg("--config")
                    .arg(self.dir.join("config.toml"))
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().unwrap())
                    .stderr(log)
                    .process_group(0)
                    .spawn()
                    .expect("containerd is installed by scripts/install-test-deps.sh")
            })
            .join()
            .unwrap()
        });
        self.child = Some(child);
        let cri = self.cri();
        let start = Instant::now();
        while cri.version().is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("containerd exited with {status}: {}", self.log());
            }
            assert!(start.elapsed() < Duration::from_secs(60), "containerd never answered CRI: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn cri(&self) -> Cri {
        Cri::new(&self.socket)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// The name of the CNI network containerd has loaded (from CRI `Status`'s `cniconfig`), if any.
    pub fn loaded_network(&self) -> Option<String> {
        let status = self.cri().status().ok()?;
        let cni: Value = serde_json::from_str(status.info.get("cniconfig")?).ok()?;
        cni["Networks"]
            .as_array()?
            .iter()
            .filter_map(|n| n["Config"]["Name"].as_str())
            .find(|n| *n != "cni-loopback")
            .map(str::to_string)
    }

    /// Waits until containerd uses the CNI network `name` (it reloads its conf dir on change).
    pub fn wait_network(&self, name: &str) {
        super::wait_for(&format!("containerd to load CNI network {name}"), Duration::from_secs(60), || {
            (self.loaded_network().as_deref() == Some(name)).then_some(())
        });
    }

    /// The sandbox config the kubelet sends for pod `namespace/name` with `uid`.
    pub fn sandbox_config(&self, namespace: &str, name: &str, uid: &str) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: uid.into(),
                namespace: namespace.into(),
                attempt: 0,
            }),
            hostname: name.into(),
            labels: [("io.kubernetes.pod.name".to_string(), name.to_string())].into(),
            annotations: Default::default(),
            linux: Some(LinuxPodSandboxConfig { cgroup_parent: self.cgroup_parent.clone() }),
        }
    }

    /// SIGKILL to containerd alone: its shims and sandboxes live on, as on a node whose
    /// containerd crashed or was restarted.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts containerd again on the same root and state (after [`kill`](Self::kill)).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "kill containerd first");
        self.spawn();
    }

    /// The PIDs of processes still running that belong to this instance: its shims (our
    /// directory in their command line) and whatever is in its cgroups.
    pub fn leftover_pids(&self) -> Vec<i32> {
        let mine = self.dir.to_string_lossy().into_owned();
        let mut pids: Vec<i32> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).contains(&mine))
                    .unwrap_or(false)
            })
            .filter(|pid| Some(*pid as u32) != self.child.as_ref().map(Child::id))
            .collect();
        for dir in self.cgroup_dirs() {
            for entry in walk_dirs(&dir) {
                if let Ok(text) = std::fs::read_to_string(entry.join("cgroup.procs")) {
                    pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
                }
            }
        }
        pids.sort();
        pids.dedup();
        pids
    }

    /// Our cgroup parent in every mounted hierarchy that has it.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let rel = self.cgroup_parent.trim_start_matches('/');
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| e.path().join(rel))
            .filter(|p| p.is_dir())
            .collect();
        let unified = Path::new("/sys/fs/cgroup").join(rel);
        if unified.is_dir() {
            dirs.push(unified);
        }
        dirs
    }

    /// Mount points under this instance's directory (overlay rootfs, shm, network namespaces).
    pub fn mounts(&self) -> Vec<String> {
        let mine = self.dir.to_string_lossy().into_owned();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&mine))
            .collect()
    }

    /// Stops and removes every sandbox through CRI, then stops containerd; then removes by force
    /// whatever is left. Returns what had to be forced (empty when CRI cleaned up everything).
    pub fn shutdown(&mut self) -> Vec<String> {
        let mut forced = Vec::new();
        if self.child.is_some() {
            let cri = Cri { timeout: Duration::from_secs(30), ..self.cri() };
            for sandbox in cri.list_pod_sandbox().unwrap_or_default() {
                if let Err(e) = cri.stop_pod_sandbox(&sandbox.id).and_then(|_| cri.remove_pod_sandbox(&sandbox.id)) {
                    forced.push(format!("sandbox {}: {e}", sandbox.id));
                }
            }
            if let Some(mut child) = self.child.take() {
                // SAFETY: kill on our own child's pid.
                unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
                let deadline = Instant::now() + Duration::from_secs(10);
                while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        for pid in self.leftover_pids() {
            forced.push(format!("process {pid}"));
            // SAFETY: kill has no memory preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(100));
        let mut mounts = self.mounts();
        mounts.reverse();
        for m in mounts {
            forced.push(format!("mount {m}"));
            let c = std::ffi::CString::new(m).unwrap();
            // SAFETY: a NUL-terminated path; a lazy unmount has no other preconditions.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        for dir in self.cgroup_dirs() {
            let mut dirs = walk_dirs(&dir);
            dirs.reverse();
            for d in dirs {
                if std::fs::remove_dir(&d).is_err() {
                    forced.push(format!("cgroup {}", d.display()));
                }
            }
        }
        forced
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            eprintln!(
                "containerd log (last 60 lines):\n{}",
                log.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        let forced = self.shutdown();
        if !forced.is_empty() {
            eprintln!("containerd cleanup had to force: {forced:?}");
        }
    }
}

/// `dir` and every directory below it, parents first.
fn walk_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(rd) = std::fs::read_dir(&out[i]) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    out.push(e.path());
                }
            }
        }
        i += 1;
    }
    out
}

/// A sandbox's facts from verbose `PodSandboxStatus`: containerd's `info` JSON.
pub fn sandbox_info(cri: &Cri, id: &str) -> Value {
    let status = cri.pod_sandbox_status(id).unwrap_or_else(|e| panic!("PodSandboxStatus {id}: {e}"));
    serde_json::from_str(status.info.get("info").expect("verbose status carries info")).unwrap()
}

/// The network namespace path containerd gave the sandbox (and passed to CNI as CNI_NETNS).
pub fn sandbox_netns(cri: &Cri, id: &str) -> String {
    let info = sandbox_info(cri, id);
    info["runtimeSpec"]["linux"]["namespaces"]
        .as_array()
        .and_then(|ns| ns.iter().find(|n| n["type"] == "network"))
        .and_then(|n| n["path"].as_str())
        .unwrap_or_else(|| panic!("no network namespace path in the sandbox info: {info}"))
        .to_string()
}

/// `ip -j ARGS` inside the namespace at `path` (through nsenter), parsed.
pub fn ip_json_at(path: &str, args: &[&str]) -> Value {
    let out = Command::new("nsenter")
        .arg(format!("--net={path}"))
        .arg("ip")
        .arg("-j")
        .args(args)
        .output()
        .expect("running nsenter");
    assert!(out.status.success(), "ip {args:?} in {path}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(if text.trim().is_empty() { "[]" } else { &text }).unwrap()
}

/// Interface name → its global addresses (`a.b.c.d/nn`) in the namespace at `path`.
pub fn interfaces_at(path: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    ip_json_at(path, &["addr", "show"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let addrs = l["addr_info"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|a| a["scope"] != "link" && a["scope"] != "host")
                        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
                        .collect()
                })
                .unwrap_or_default();
            (l["ifname"].as_str().unwrap().to_string(), addrs)
        })
        .collect()
}
