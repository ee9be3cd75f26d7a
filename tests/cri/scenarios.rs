//! Pod lifecycles through containerd's CRI with multus as the node's CNI, each in thin and thick
//! mode (a macro writes both tests from one scenario function):
//!
//! - a pod with the cluster network and two NADs gets `eth0`, `net1` with its static IP and the
//!   interface it named; network-status reaches the API server; multus's cache names
//!   containerd's sandbox ID; StopPodSandbox releases every IP and the cache;
//! - RemovePodSandbox (without a Stop first, as the kubelet's garbage collector may) after multus
//!   restarted still sends DEL through it and cleans up;
//! - a pod whose NAD is missing fails RunPodSandbox with multus's message inside containerd's
//!   error, and leaves no IP and no sandbox;
//! - containerd restarted between ADD and DEL: the sandbox is still known, Stop/Remove clean up;
//! - the subdirectory chain (`<confDir>/cbr/*.conf`, multus 4.2.1) runs in the pod;
//! - a pod deleted from the API before StopPodSandbox: DEL still releases everything;
//! - (thick only) the daemon idles at ~0 CPU while containerd reads the conf dir they share.

use serde_json::{Value, json};

use crate::cluster::{Cluster, Mode, NETWORKS};
use crate::support::containerd::{interfaces_at, sandbox_netns};
use crate::support::cri::{SANDBOX_NOTREADY, SANDBOX_READY};

/// `thin_<name>` and `thick_<name>` tests running `fn <name>(Mode)`.
macro_rules! both_modes {
    ($($name:ident),* $(,)?) => {
        mod thin {
            $(#[test] fn $name() { super::$name(crate::cluster::Mode::Thin) })*
        }
        mod thick {
            $(#[test] fn $name() { super::$name(crate::cluster::Mode::Thick) })*
        }
    };
}

both_modes!(
    two_nads_get_their_interfaces_and_stop_releases_every_ip,
    remove_after_multus_restarted_still_cleans_up,
    missing_nad_fails_run_pod_sandbox_with_multus_message,
    containerd_restarted_between_add_and_del,
    subdirectory_chain_runs_in_the_pod,
    pod_deleted_from_the_api_before_stop,
);

/// The annotation of the two-NAD pod: a static IP on `default/br-static` (JSON form) and
/// `other/mv` as `ext0`.
fn two_nads() -> Value {
    json!({NETWORKS: json!([{"name": "br-static", "ips": ["10.97.0.50/24"]},
                            {"name": "mv", "namespace": "other", "interface": "ext0"}]).to_string()})
}

/// Every IP host-local holds on the node, per network.
fn held_ips(c: &Cluster) -> Vec<(String, Vec<String>)> {
    ["cbr", "mv"].iter().map(|n| (n.to_string(), c.ipam_ips(n))).filter(|(_, ips)| !ips.is_empty()).collect()
}

/// The sandbox `id` is gone from containerd, and nothing of it is left in IPAM or multus's cache.
fn assert_released(c: &Cluster, id: &str) {
    assert!(held_ips(c).is_empty(), "IPs still held: {:?}\n{}", held_ips(c), c.multus_log());
    assert!(c.cache_files_of(id).is_empty(), "multus cache left: {:?}", c.cache_files_of(id));
}

fn two_nads_get_their_interfaces_and_stop_releases_every_ip(mode: Mode) {
    let c = Cluster::new(mode);
    c.pod("default", "web", two_nads());
    let cri = c.cri();
    let id = c.run("default", "web").unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", c.multus_log()));

    // What the pod really has, in the namespace containerd made and passed to CNI.
    let status = cri.pod_sandbox_status(&id).unwrap().status.unwrap();
    assert_eq!(status.state, SANDBOX_READY);
    let pod_ip = status.network.unwrap().ip;
    let netns = sandbox_netns(&cri, &id);
    let ifs = interfaces_at(&netns);
    assert_eq!(ifs.get("eth0"), Some(&vec![format!("{pod_ip}/24")]), "{ifs:?}");
    assert_eq!(ifs.get("net1"), Some(&vec!["10.97.0.50/24".to_string()]), "{ifs:?}");
    let ext0 = ifs.get("ext0").unwrap_or_else(|| panic!("no ext0 in {ifs:?}"));
    assert_eq!(ext0.len(), 1);
    assert!(ext0[0].starts_with("10.98.0."), "{ifs:?}");
    assert_eq!(c.ipam_ips("cbr"), std::slice::from_ref(&pod_ip));

    // network-status on the API server: the cluster network first, then both NADs.
    let ns = c.network_status("default", "web");
    let entries: Vec<(String, String, Vec<String>)> = ns
        .as_array()
        .unwrap_or_else(|| panic!("no network-status: {ns}"))
        .iter()
        .map(|e| {
            let ips = e["ips"].as_array().unwrap().iter().map(|i| i.as_str().unwrap().to_string()).collect();
            (e["name"].as_str().unwrap().to_string(), e["interface"].as_str().unwrap().to_string(), ips)
        })
        .collect();
    let ext0_ip = ext0[0].split('/').next().unwrap().to_string();
    assert_eq!(
        entries,
        [
            ("cbr".to_string(), "eth0".to_string(), vec![pod_ip.clone()]),
            ("default/br-static".to_string(), "net1".to_string(), vec!["10.97.0.50".to_string()]),
            ("other/mv".to_string(), "ext0".to_string(), vec![ext0_ip]),
        ]
    );
    assert_eq!(ns[0]["default"], true);
    // multus keyed its cache by containerd's sandbox ID (K8S_POD_INFRA_CONTAINER_ID / CNI_CONTAINERID).
    assert!(!c.cache_files_of(&id).is_empty(), "no multus cache for sandbox {id}");

    cri.stop_pod_sandbox(&id).unwrap();
    assert_eq!(cri.pod_sandbox_status(&id).unwrap().status.unwrap().state, SANDBOX_NOTREADY);
    assert_released(&c, &id);
    cri.remove_pod_sandbox(&id).unwrap();
    assert!(cri.list_pod_sandbox().unwrap().is_empty());
    c.assert_clean_teardown();
}

fn remove_after_multus_restarted_still_cleans_up(mode: Mode) {
    let mut c = Cluster::new(mode);
    // The text form this time: `namespace/name@interface`.
    c.pod("default", "restarted", json!({NETWORKS: "other/mv@ext0"}));
    let id = c.run("default", "restarted").unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", c.multus_log()));
    let netns = sandbox_netns(&c.cri(), &id);
    assert!(interfaces_at(&netns).contains_key("ext0"));
    assert_eq!(held_ips(&c).len(), 2, "{:?}", held_ips(&c));

    c.restart_multus();
    c.containerd().wait_network("multus-cni-network");
    // RemovePodSandbox on a ready sandbox: containerd stops it first (CNI DEL), then removes it.
    c.cri().remove_pod_sandbox(&id).unwrap_or_else(|e| panic!("RemovePodSandbox: {e}\n{}", c.multus_log()));
    assert!(c.cri().list_pod_sandbox().unwrap().is_empty());
    assert_released(&c, &id);
    c.assert_clean_teardown();
}

fn missing_nad_fails_run_pod_sandbox_with_multus_message(mode: Mode) {
    let c = Cluster::new(mode);
    c.pod("default", "orphan", json!({NETWORKS: "default/absent"}));
    let err = c.run("default", "orphan").expect_err("a pod whose NAD is missing must not start");
    let message = err.to_string();
    eprintln!("RunPodSandbox of a pod with a missing NAD: {message}");
    assert!(message.contains("failed to setup network for sandbox"), "containerd's error: {message}");
    assert!(
        message.contains("cannot find a network-attachment-definition (absent) in namespace (default)"),
        "multus's message is not in containerd's error: {message}"
    );
    // Nothing stays held (multus looks the NADs up before it adds anything, and containerd's own
    // cleanup sends DEL), and containerd keeps no ready sandbox for the pod.
    assert!(held_ips(&c).is_empty(), "IPs leaked by a failed ADD: {:?}", held_ips(&c));
    let ready: Vec<_> = c.cri().list_pod_sandbox().unwrap().into_iter().filter(|s| s.state == SANDBOX_READY).collect();
    assert!(ready.is_empty(), "a failed RunPodSandbox left {ready:?}");
    c.assert_clean_teardown();
}

fn containerd_restarted_between_add_and_del(mode: Mode) {
    let mut c = Cluster::new(mode);
    c.pod("default", "survivor", two_nads());
    let id = c.run("default", "survivor").unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", c.multus_log()));
    let netns = sandbox_netns(&c.cri(), &id);
    assert_eq!(held_ips(&c).len(), 2);

    let containerd = c.containerd.as_mut().unwrap();
    containerd.kill();
    containerd.restart();
    containerd.wait_network("multus-cni-network");
    // The sandbox survived the restart (its shim kept it), with its network.
    let status = c.cri().pod_sandbox_status(&id).unwrap().status.unwrap();
    assert_eq!(status.state, SANDBOX_READY);
    assert!(interfaces_at(&netns).contains_key("net1"));

    c.cri().stop_pod_sandbox(&id).unwrap_or_else(|e| panic!("StopPodSandbox: {e}\n{}", c.multus_log()));
    assert_released(&c, &id);
    c.cri().remove_pod_sandbox(&id).unwrap();
    assert!(c.cri().list_pod_sandbox().unwrap().is_empty());
    c.assert_clean_teardown();
}

fn subdirectory_chain_runs_in_the_pod(mode: Mode) {
    // upstream's e2e test-subdirectory-chaining.sh: a tuning plugin in the cluster network's
    // subdirectory sets a sysctl on eth0 of every pod.
    let tuning = json!({"cniVersion": "1.0.0", "name": "sysctltwiddle", "type": "tuning",
                        "sysctl": {"net.ipv4.conf.eth0.arp_filter": "1"}});
    let c = Cluster::with_subdirectory(mode, Some(("sysctltwiddle.conf", tuning)));
    c.pod("default", "chained", json!({}));
    let id = c.run("default", "chained").unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", c.multus_log()));
    let netns = sandbox_netns(&c.cri(), &id);
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .args(["sysctl", "-n", "net.ipv4.conf.eth0.arp_filter"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "the subdirectory plugin did not run");
    c.cri().stop_pod_sandbox(&id).unwrap();
    assert_released(&c, &id);
    c.assert_clean_teardown();
}

fn pod_deleted_from_the_api_before_stop(mode: Mode) {
    let c = Cluster::new(mode);
    c.pod("default", "gone", two_nads());
    let id = c.run("default", "gone").unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", c.multus_log()));
    assert_eq!(held_ips(&c).len(), 2);
    c.api.delete_pod("default", "gone").expect("the pod existed");
    c.cri().stop_pod_sandbox(&id).unwrap_or_else(|e| panic!("StopPodSandbox: {e}\n{}", c.multus_log()));
    assert_released(&c, &id);
    c.cri().remove_pod_sandbox(&id).unwrap();
    c.assert_clean_teardown();
}

/// The daemon in auto mode shares its conf dir with containerd, which reads it (inotify
/// `IN_ACCESS`, `IN_CLOSE_NOWRITE`) whenever it reloads: the config manager must not answer
/// those reads with work. Over 10 s after a pod's ADD and DEL it uses (almost) no CPU.
#[test]
fn thick_daemon_idles_beside_containerd() {
    let c = Cluster::new(Mode::Thick);
    c.pod("default", "idle", json!({}));
    let id = c.run("default", "idle").unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", c.multus_log()));
    c.cri().stop_pod_sandbox(&id).unwrap();
    c.cri().remove_pod_sandbox(&id).unwrap();
    // containerd reads the conf dir again (Status reports what it loaded).
    c.containerd().wait_network("multus-cni-network");
    let daemon = c.daemon.as_ref().unwrap();
    let before = daemon.cpu_time();
    std::thread::sleep(std::time::Duration::from_secs(10));
    let used = daemon.cpu_time() - before;
    eprintln!(
        "daemon idle beside containerd: {:.3} CPU-s in 10 s, RSS {} KiB",
        used.as_secs_f64(),
        daemon.status_kib("VmRSS")
    );
    assert!(used.as_secs_f64() < 0.1, "the daemon used {used:?} of CPU in 10 s idle");
    c.assert_clean_teardown();
}
