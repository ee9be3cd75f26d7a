//! One node for the CRI tests: the node and its veth (a macvlan parent) in namespaces of the
//! test, the fake API server, containerd with the test's CNI conf and bin dirs, and multus
//! installed and configured the way its DaemonSets do it, in one [`Mode`].
//!
//! Teardown runs in field order: containerd first (it stops and removes every sandbox left,
//! which sends DEL through multus while the daemon and the API server still run), then
//! `thin_entrypoint` or the daemon, then the API server, then the namespaces and files.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::apiserver::FakeApiServer;
use crate::support::containerd::Containerd;
use crate::support::cri::Cri;
use crate::support::thick::Daemon;
use crate::support::tls::{TlsFront, make_pki};
use crate::support::{CNI_BIN, Node, wait_for};

pub const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
pub const STATUS: &str = "k8s.v1.cni.cncf.io/network-status";
/// The cluster network's subnet (bridge `cbr0`, host-local).
pub const CLUSTER_SUBNET: &str = "10.88.0.0/24";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// containerd with only the cluster network (the baseline).
    Bare,
    /// `multus` as `thin_entrypoint` configures it.
    Thin,
    /// `multus-shim` + `multus-daemon` in auto mode.
    Thick,
}

/// `thin_entrypoint` running as the thin DaemonSet's container; killed on drop.
pub struct Entrypoint(Child);

impl Drop for Entrypoint {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Cluster {
    pub containerd: Option<Containerd>,
    pub entrypoint: Option<Entrypoint>,
    pub daemon: Option<Daemon>,
    pub front: Option<TlsFront>,
    pub api: FakeApiServer,
    pub mode: Mode,
    /// Thin mode in `thin_entrypoint`'s copy mode (`--multus-conf-file`): a multus config whose
    /// `clusterNetwork` is the path of the cluster network's conflist, as subdirectory chains
    /// need; auto mode inlines the delegate (as upstream's does), which loads no subdirectory.
    pub thin_copy: bool,
    /// multus's `logLevel`.
    pub log_level: &'static str,
    pub conf_dir: PathBuf,
    pub bin_dir: PathBuf,
    pub node: Node,
}

/// Where the node binaries come from (multus, passthru, multus-shim, multus-daemon,
/// install_multus, thin_entrypoint): cargo's builds for this run beside the libc-free shim, or the
/// directory `MULTUS_BENCH_BIN_DIR` names (the bench points it at the shipped static builds). It is
/// the directory `install_multus` copies from, as it copies from the image's /usr/src/multus-cni/bin.
pub fn image_bin_dir() -> PathBuf {
    match std::env::var_os("MULTUS_BENCH_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => cargo_image_dir(),
    }
}

/// cargo's binaries and the shim (built from `shim/`, its own workspace) linked into one
/// directory under the build's target dir, as the image has them side by side.
fn cargo_image_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let cargo = Path::new(env!("CARGO_BIN_EXE_multus")).parent().unwrap();
        let dir = cargo.join("cri-image-bin");
        std::fs::create_dir_all(&dir).unwrap();
        let shim = PathBuf::from(crate::support::thick::shim_bin());
        let names = ["multus", "passthru", "multus-daemon", "install_multus", "thin_entrypoint"];
        let links = names.iter().map(|n| (cargo.join(n), *n)).chain([(shim, "multus-shim")]);
        for (target, name) in links {
            // A fresh link renamed over the old one: a rerun never sees a half-made directory.
            let tmp = dir.join(format!(".{name}.tmp"));
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(&target, &tmp).unwrap();
            std::fs::rename(&tmp, dir.join(name)).unwrap();
        }
        dir
    })
    .clone()
}

fn bin(name: &str) -> PathBuf {
    let path = image_bin_dir().join(name);
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

fn install_multus(kind: &str, dest: &Path) {
    let out = Command::new(bin("install_multus"))
        .args(["-t", kind, "-d"])
        .arg(dest)
        .arg("--source-dir")
        .arg(image_bin_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "install_multus -t {kind}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Cluster {
    /// A node running containerd and multus in `mode`, ready for pods: containerd has loaded
    /// multus's `00-multus.conf` (or, bare, the cluster network).
    pub fn new(mode: Mode) -> Cluster {
        Cluster::with_subdirectory(mode, None)
    }

    /// [`Cluster::new`] with a plugin in the cluster network's subdirectory
    /// (`<confDir>/cbr/<file>`, multus 4.2.1's subdirectory chain), written before multus starts.
    pub fn with_subdirectory(mode: Mode, subdir_plugin: Option<(&str, Value)>) -> Cluster {
        Cluster::setup(mode, subdir_plugin, "debug")
    }

    /// The node with multus logging at `log_level` (the tests log everything; the bench logs as
    /// the deployments do, `verbose`).
    pub fn setup(mode: Mode, subdir_plugin: Option<(&str, Value)>, log_level: &'static str) -> Cluster {
        let node = Node::new().with_veth_parent();
        let api = node.node.enter(FakeApiServer::start);
        let conf_dir = node.path("etc/cni/net.d");
        let bin_dir = node.path("opt/cni/bin");
        std::fs::create_dir_all(&conf_dir).unwrap();
        std::fs::create_dir_all(&bin_dir).unwrap();
        for p in ["bridge", "host-local", "loopback", "macvlan", "static", "tuning"] {
            std::fs::copy(Path::new(CNI_BIN).join(p), bin_dir.join(p)).unwrap();
        }
        let cluster_net = json!({"cniVersion": "1.0.0", "name": "cbr", "plugins": [
            {"type": "bridge", "bridge": "cbr0", "isGateway": true,
             "ipam": {"type": "host-local", "dataDir": node.path("ipam"), "ranges": [[{"subnet": CLUSTER_SUBNET}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}}]});
        write_atomic(&conf_dir.join("10-cbr.conflist"), &cluster_net);
        let subdir_plugin_given = subdir_plugin.is_some();
        if let Some((file, plugin)) = subdir_plugin {
            write_atomic(&conf_dir.join("cbr").join(file), &plugin);
        }
        let thin_copy = subdir_plugin_given;
        let mut c = Cluster {
            log_level,
            thin_copy,
            containerd: None,
            entrypoint: None,
            daemon: None,
            front: None,
            api,
            mode,
            conf_dir,
            bin_dir,
            node,
        };
        c.nads();
        match mode {
            Mode::Bare => {}
            Mode::Thin => c.start_thin(),
            Mode::Thick => c.start_thick(),
        }
        let containerd = Containerd::start(&c.node, &c.conf_dir, &c.bin_dir);
        containerd.wait_network(if mode == Mode::Bare { "cbr" } else { "multus-cni-network" });
        c.containerd = Some(containerd);
        c
    }

    /// The NADs the scenarios use: `default/br-static` (bridge `sbr0`, static IPAM through the
    /// `ips` capability) and `other/mv` (macvlan on the node's `hv0`, host-local).
    fn nads(&self) {
        let ipam = self.node.path("ipam");
        self.api.create_nad(
            "default",
            "br-static",
            Some(
                &json!({"cniVersion": "1.0.0", "name": "br-static", "type": "bridge", "bridge": "sbr0",
                         "capabilities": {"ips": true}, "ipam": {"type": "static"}})
                .to_string(),
            ),
            &[],
        );
        self.api.create_nad(
            "other",
            "mv",
            Some(
                &json!({"cniVersion": "1.0.0", "name": "mv", "type": "macvlan", "master": "hv0", "mode": "bridge",
                         "ipam": {"type": "host-local", "dataDir": ipam, "ranges": [[{"subnet": "10.98.0.0/24"}]]}})
                .to_string(),
            ),
            &[],
        );
    }

    /// Thin: `install_multus -t thin`, then `thin_entrypoint` with a service account whose CA
    /// signed the TLS front of the API server, the kubeconfig and `00-multus.conf` it writes.
    fn start_thin(&mut self) {
        install_multus("thin", &self.bin_dir);
        let pki = self.node.path("pki");
        let sa = self.node.path("serviceaccount");
        std::fs::create_dir_all(&pki).unwrap();
        std::fs::create_dir_all(&sa).unwrap();
        make_pki(&pki, "multus");
        std::fs::copy(pki.join("ca.crt"), sa.join("ca.crt")).unwrap();
        std::fs::write(sa.join("token"), "test-token").unwrap();
        let front = self.node.node.enter(|| TlsFront::start(&pki, self.api.addr()));
        let kubeconfig = self.conf_dir.join("multus.d/multus.kubeconfig");
        let mut cmd = Command::new(bin("thin_entrypoint"));
        if self.thin_copy {
            let user_conf = self.node.path("multus-conf/00-multus.conf");
            write_atomic(
                &user_conf,
                &json!({"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus",
                        "kubeconfig": kubeconfig, "clusterNetwork": self.conf_dir.join("10-cbr.conflist"),
                        "logFile": self.node.path("multus.log"), "logLevel": self.log_level}),
            );
            cmd.arg(format!("--multus-conf-file={}", user_conf.display()));
            // Copy mode writes no kubeconfig (upstream's neither): the user's config names one.
            let plain = self.api.write_kubeconfig(self.node.dir.path());
            std::fs::create_dir_all(kubeconfig.parent().unwrap()).unwrap();
            std::fs::copy(plain, &kubeconfig).unwrap();
        }
        let child = cmd
            .arg(format!("--cni-bin-dir={}", self.bin_dir.display()))
            .arg(format!("--cni-conf-dir={}", self.conf_dir.display()))
            .arg(format!("--multus-autoconfig-dir={}", self.conf_dir.display()))
            .arg(format!("--multus-cni-conf-dir={}", self.node.path("etc/cni/multus/net.d").display()))
            .arg(format!("--service-account-dir={}", sa.display()))
            .arg(format!("--multus-kubeconfig-file-host={}", kubeconfig.display()))
            .arg(format!("--multus-log-file={}", self.node.path("multus.log").display()))
            .arg(format!("--multus-log-level={}", self.log_level))
            .arg("--multus-log-to-stderr=false")
            .arg("--skip-multus-binary-copy=true")
            .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
            .env("KUBERNETES_SERVICE_PORT", front.addr.port().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.node.path("thin_entrypoint.log")).unwrap())
            .spawn()
            .unwrap();
        self.entrypoint = Some(Entrypoint(child));
        self.front = Some(front);
        let conf_dir = self.conf_dir.clone();
        wait_for("thin_entrypoint to write 00-multus.conf(list)", Duration::from_secs(60), || {
            ["00-multus.conf", "00-multus.conflist"].iter().any(|f| conf_dir.join(f).exists()).then_some(())
        });
    }

    /// The daemon config of the thick DaemonSet in auto mode: the conf dir is both
    /// `multusAutoconfigDir` and `cniConfigDir`; the socket (and `daemonSocketDir`, which the
    /// generated config hands the shim) and the multus cache in the test's directory.
    pub fn daemon_config(&self) -> Value {
        json!({"socketDir": self.node.path("run/multus"), "daemonSocketDir": self.node.path("run/multus"), "logFile": self.node.path("daemon.log"),
               "logLevel": self.log_level, "multusConfigFile": "auto", "cniVersion": "0.3.1", "multusAutoconfigDir": self.conf_dir,
               "cniConfigDir": self.conf_dir, "cniDir": self.node.path("multus-cache"),
               "kubeconfig": self.api.write_kubeconfig(self.node.dir.path())})
    }

    /// Thick: `install_multus -t thick`, then the daemon, which generates `00-multus.conf`.
    fn start_thick(&mut self) {
        install_multus("thick", &self.bin_dir);
        let config = self.daemon_config();
        self.daemon = Some(Daemon::start_bin(&self.node, &config, &bin("multus-daemon")));
        let conf = self.conf_dir.join("00-multus.conf");
        wait_for("multus-daemon to write 00-multus.conf", Duration::from_secs(60), || conf.exists().then_some(()));
    }

    pub fn containerd(&self) -> &Containerd {
        self.containerd.as_ref().expect("containerd runs")
    }

    pub fn cri(&self) -> Cri {
        self.containerd().cri()
    }

    /// Creates pod `namespace/name` (UID `uid-<name>`, on node1) with these annotations.
    pub fn pod(&self, namespace: &str, name: &str, annotations: Value) {
        self.api.create_pod(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}"), "annotations": annotations},
            "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "registry.example/c:1"}]}}));
    }

    /// `RunPodSandbox` for pod `namespace/name` as the kubelet sends it.
    pub fn run(&self, namespace: &str, name: &str) -> Result<String, crate::support::cri::CriError> {
        let config = self.containerd().sandbox_config(namespace, name, &format!("uid-{name}"));
        self.cri().run_pod_sandbox(config)
    }

    /// The IPs host-local holds for `network` (empty when it never made its directory).
    pub fn ipam_ips(&self, network: &str) -> Vec<String> {
        crate::support::thick::files_in(&self.node.path("ipam").join(network))
            .into_iter()
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .collect()
    }

    /// The pod's network-status annotation, parsed (Null when there is none).
    pub fn network_status(&self, namespace: &str, name: &str) -> Value {
        self.api
            .pod(namespace, name)
            .and_then(|p| p["metadata"]["annotations"][STATUS].as_str().map(str::to_string))
            .map(|s| serde_json::from_str(&s).unwrap())
            .unwrap_or(Value::Null)
    }

    /// Where multus keeps its per-sandbox cache: the daemon's `cniDir` in thick mode, upstream's
    /// default `/var/lib/cni/multus` for the thin plugin (`thin_entrypoint` has no flag for it).
    pub fn multus_cache_dir(&self) -> PathBuf {
        match self.mode {
            Mode::Thick => self.node.path("multus-cache"),
            _ => PathBuf::from("/var/lib/cni/multus"),
        }
    }

    /// Files of multus's cache that name sandbox `id`.
    pub fn cache_files_of(&self, id: &str) -> Vec<String> {
        crate::support::thick::files_in(&self.multus_cache_dir()).into_iter().filter(|f| f.contains(id)).collect()
    }

    /// Everything multus logged (the thin plugin's log file or the daemon's).
    pub fn multus_log(&self) -> String {
        let file = if self.mode == Mode::Thick { "daemon.log" } else { "multus.log" };
        std::fs::read_to_string(self.node.path(file)).unwrap_or_default()
    }

    /// Ends a scenario: containerd removes whatever sandbox is left and stops, and nothing had to
    /// be removed by force — no sandbox or shim process, no mount (rootfs, shm, network
    /// namespace), no network namespace file, no cgroup was left behind.
    pub fn assert_clean_teardown(mut self) {
        let mut containerd = self.containerd.take().expect("containerd runs");
        let netns_dir = containerd.dir.join("state/io.containerd.grpc.v1.cri/netns");
        let forced = containerd.shutdown();
        assert!(forced.is_empty(), "teardown had to force: {forced:?}");
        let left = crate::support::thick::files_in(&netns_dir);
        assert!(left.is_empty(), "network namespaces left in {}: {left:?}", netns_dir.display());
    }

    /// Restarts what multus runs as on the node: the daemon (thick) or `thin_entrypoint` (thin),
    /// as a DaemonSet rollout does.
    pub fn restart_multus(&mut self) {
        match self.mode {
            Mode::Thick => {
                let daemon = self.daemon.as_mut().unwrap();
                daemon.kill();
                daemon.restart(&self.node);
            }
            Mode::Thin => {
                self.entrypoint = None;
                self.start_thin();
            }
            Mode::Bare => {}
        }
    }
}

/// Writes a JSON file by temp + rename (containerd watches the directory).
pub fn write_atomic(path: &Path, v: &Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(v).unwrap()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
