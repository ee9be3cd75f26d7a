//! The daemon with a Kubernetes API server (the fake of `support::apiserver`: no real
//! kube-apiserver can run here; it listens inside the test's node namespace, where the daemon
//! runs) and the real shim, delegating to Debian's reference plugins: pods and
//! NetworkAttachmentDefinitions come from the daemon's watch caches, network-status lands on the
//! API server, subdirectory chains of both forms and empty-spec NADs work through the socket.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::harness::{Daemon, bridge, daemon_config, files_in, shim, shim_conf, write};
use crate::support::Node;
use crate::support::apiserver::FakeApiServer;

const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
const STATUS: &str = "k8s.v1.cni.cncf.io/network-status";

/// Dropped in field order: the daemon first, then the API server, then the namespaces.
struct Cluster {
    daemon: Option<Daemon>,
    api: FakeApiServer,
    kubeconfig: PathBuf,
    net_d: PathBuf,
    node: Node,
}

impl Cluster {
    /// A node with the API server, the cluster network conflist `cbr` and the multus conf dir;
    /// the daemon starts with [`Cluster::start_daemon`], once the test's objects exist.
    fn new() -> Cluster {
        let node = Node::new().with_veth_parent();
        let api = node.node.enter(FakeApiServer::start);
        let kubeconfig = api.write_kubeconfig(node.dir.path());
        let net_d = node.path("net.d-src");
        write(
            &net_d.join("10-cbr.conflist"),
            &json!({"cniVersion": "1.0.0", "name": "cbr", "plugins": [bridge(&node, "cbr", "tbr0", "10.99.0.0/24")]}),
        );
        std::fs::create_dir_all(node.path("multus.d")).unwrap();
        Cluster { node, api, kubeconfig, daemon: None, net_d }
    }

    /// Starts the daemon with the API server's kubeconfig (the `kubeconfig` key of daemon-config).
    /// It lists pods and NADs before it serves, so objects made before this are in its caches.
    fn start_daemon(&mut self) {
        self.start_daemon_with(json!({}));
    }

    /// [`Cluster::start_daemon`] with more daemon-config keys.
    fn start_daemon_with(&mut self, extra: Value) {
        let mut config = daemon_config(&self.node, json!({"kubeconfig": self.kubeconfig}));
        for (k, v) in extra.as_object().unwrap() {
            config[k] = v.clone();
        }
        self.daemon = Some(Daemon::start(&self.node, &config));
    }

    fn conf(&self, extra: Value) -> Value {
        let mut c = shim_conf(
            &self.node,
            "1.0.0",
            json!({"clusterNetwork": self.net_d.join("10-cbr.conflist"), "confDir": self.node.path("multus.d")}),
        );
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    fn pod(&self, name: &str, annotations: Value) {
        self.api.create_pod(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "annotations": annotations},
            "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "registry.example/c:1"}]}}));
    }

    fn reality(&self, ifname: &str) -> (String, Vec<String>) {
        let link = self.node.pod.link(ifname).unwrap_or_else(|| panic!("{ifname} missing in the pod"));
        let ips = self.node.pod.addrs(ifname).iter().map(|a| a.split('/').next().unwrap().to_string()).collect();
        (link["address"].as_str().unwrap().to_string(), ips)
    }

    fn assert_clean(&self, container: &str) {
        assert_eq!(self.node.pod.link_names(), vec!["lo"], "the pod namespace must be empty again");
        assert!(!self.node.path("multus").join(container).exists(), "scratch cache of {container} left");
        assert_eq!(files_in(&self.node.path("multus/results")), Vec::<String>::new(), "libcni result cache left");
    }
}

#[test]
fn a_pod_with_a_cluster_network_and_nads_through_the_daemon() {
    let mut c = Cluster::new();
    c.api.create_nad(
        "default",
        "macvlan-conf",
        Some(
            &json!({"cniVersion": "1.0.0", "type": "macvlan", "master": "hv0", "mode": "bridge",
            "ipam": {"type": "host-local", "dataDir": c.node.path("ipam"),
                     "ranges": [[{"subnet": "10.98.0.0/24", "rangeStart": "10.98.0.10", "rangeEnd": "10.98.0.20"}]]}})
            .to_string(),
        ),
        &[],
    );
    c.api.create_nad(
        "other-ns",
        "bridge-conf",
        Some(&bridge(&c.node, "bridge-conf", "tbr1", "10.97.0.0/24").to_string()),
        &[],
    );
    // An empty NAD whose config sits in the multus conf dir (why 4.2.1 mounts /etc/cni/multus/net.d).
    c.api.create_nad("default", "istio-cni", None, &[]);
    write(&c.node.path("multus.d/istio.conf"), &bridge(&c.node, "istio-cni", "tbr2", "10.96.5.0/24"));
    c.start_daemon();
    // The pod comes after the daemon started (through its watch); the NADs were in its first list.
    c.pod("pod1", json!({NETWORKS: "macvlan-conf, other-ns/bridge-conf@data0, istio-cni"}));
    let conf = c.conf(json!({}));

    let add = shim(&c.node, "ADD", &conf, "pod1");
    add.ok();
    assert_eq!(add.json()["ips"][0]["address"], "10.99.0.2/24", "the cluster network's result");
    let (eth0, net1, data0, net3) = (c.reality("eth0"), c.reality("net1"), c.reality("data0"), c.reality("net3"));
    assert_eq!(
        [eth0.1.join(","), net1.1.join(","), data0.1.join(","), net3.1.join(",")],
        ["10.99.0.2", "10.98.0.10", "10.97.0.2", "10.96.5.2"]
    );
    let pod = c.api.pod("default", "pod1").unwrap();
    let status: Value = serde_json::from_str(pod["metadata"]["annotations"][STATUS].as_str().unwrap()).unwrap();
    assert_eq!(
        status,
        json!([
            {"name": "cbr", "interface": "eth0", "ips": eth0.1, "mac": eth0.0, "default": true, "dns": {}},
            {"name": "default/macvlan-conf", "interface": "net1", "ips": net1.1, "mac": net1.0, "dns": {}},
            {"name": "other-ns/bridge-conf", "interface": "data0", "ips": data0.1, "mac": data0.0, "dns": {}},
            {"name": "default/istio-cni", "interface": "net3", "ips": net3.1, "mac": net3.0, "dns": {}},
        ])
    );
    let nad_gets: Vec<String> = c
        .api
        .requests()
        .into_iter()
        .filter(|(m, p)| m == "GET" && p.contains("/network-attachment-definitions/"))
        .map(|(_, p)| p)
        .collect();
    assert_eq!(nad_gets, Vec::<String>::new(), "NADs come from the daemon's watch cache, not per-ADD GETs");
    assert!(
        c.api
            .requests()
            .iter()
            .any(|(m, p)| m == "GET" && p.starts_with("/api/v1/pods?") && p.contains("spec.nodeName%3Dnode1")),
        "the daemon watches only its node's pods: {:?}",
        c.api.requests()
    );
    // Events are posted off the ADD's path: wait for them.
    let added = || c.api.events().into_iter().filter(|e| e["reason"] == "AddedInterface").count();
    crate::support::eventually("four AddedInterface events", || added() >= 4);
    assert_eq!(added(), 4, "{:?}", c.api.events());

    assert_eq!(shim(&c.node, "CHECK", &conf, "pod1").ok().stdout, "");
    assert_eq!(shim(&c.node, "DEL", &conf, "pod1").ok().stdout, "");
    c.assert_clean("pod1");
    for net in ["cbr", "macvlan-conf", "bridge-conf", "istio-cni"] {
        assert!(c.node.ipam_ips(net).is_empty(), "{net} leaked an IP");
    }
    let daemon = c.daemon.as_ref().unwrap();
    assert!(!daemon.stderr().contains("panicked"), "{}", daemon.stderr());
}

#[test]
fn subdirectory_chains_of_both_forms_through_the_daemon() {
    let mut c = Cluster::new();
    c.start_daemon();
    let tuning = |ifname: &str| json!({"name": "sysctltwiddle", "type": "tuning", "sysctl": {format!("net.ipv4.conf.{ifname}.arp_filter"): "1"}});
    // Form (a): <dir>/<list name>/*.conf appended to the cluster network's chain.
    write(&c.net_d.join("cbr/sysctltwiddle.conf"), &tuning("IFNAME"));
    c.pod("pod2", json!({}));
    let conf = c.conf(json!({}));
    shim(&c.node, "ADD", &conf, "pod2").ok();
    assert_eq!(c.node.pod.read_proc("/proc/sys/net/ipv4/conf/eth0/arp_filter"), "1");
    shim(&c.node, "DEL", &conf, "pod2").ok();
    c.assert_clean("pod2");
    std::fs::remove_dir_all(c.net_d.join("cbr")).unwrap();

    // Form (b): auxiliaryCNIChainName adds passthru + <dir>/<name>/*.conf as the last delegate.
    write(&c.net_d.join("vendor-chain/sysctltwiddle.conf"), &tuning("eth0"));
    c.pod("pod3", json!({}));
    let conf = c.conf(json!({"auxiliaryCNIChainName": "vendor-chain"}));
    shim(&c.node, "ADD", &conf, "pod3").ok();
    assert_eq!(c.node.pod.read_proc("/proc/sys/net/ipv4/conf/eth0/arp_filter"), "1");
    assert_eq!(c.node.pod.link_names(), vec!["lo", "eth0"], "passthru creates no interface");
    shim(&c.node, "DEL", &conf, "pod3").ok();
    c.assert_clean("pod3");
}

#[test]
fn a_missing_nad_fails_the_add_through_the_shim_with_nothing_left() {
    let mut c = Cluster::new();
    c.start_daemon();
    c.pod("pod4", json!({NETWORKS: "nowhere"}));
    let add = shim(&c.node, "ADD", &c.conf(json!({})), "pod4");
    assert_eq!(add.code, 1, "{add:?}");
    let e = add.json();
    assert!(e["msg"].as_str().unwrap().contains("cannot find a network-attachment-definition (nowhere)"), "{e}");
    assert_eq!(c.node.pod.link_names(), vec!["lo"]);
    crate::support::eventually("the NoNetworkFound event", || {
        c.api.events().iter().any(|e| e["reason"] == "NoNetworkFound")
    });
}

/// A hot-plug `/delegate` ADD for a pod the API server knows records upstream's `AddedInterface`
/// event on that pod (upstream `DelegateAdd`), with the address the delegate reported.
#[test]
fn a_hot_plugged_interface_is_reported_as_an_event() {
    use base64::Engine;
    let mut c = Cluster::new();
    c.pod("hot1", json!({}));
    c.start_daemon_with(json!({"cniDir": c.node.path("multus"), "binDir": crate::harness::bin_dir()}));
    let hot = json!({"cniVersion": "1.0.0", "name": "hot", "type": "bridge", "bridge": "tbr1",
        "capabilities": {"ips": true}, "ipam": {"type": "static"}});
    let request = |cmd: &str| {
        json!({"env": {"CNI_COMMAND": cmd, "CNI_CONTAINERID": "hot1", "CNI_NETNS": c.node.pod.path(),
            "CNI_IFNAME": "net5", "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=hot1;K8S_POD_UID=uid-hot1"},
            "config": base64::engine::general_purpose::STANDARD.encode(hot.to_string()),
            "interfaceAttributes": {"ips": ["10.77.0.5/24"], "mac": "", "cni-args": null}})
        .to_string()
        .into_bytes()
    };
    let socket = c.daemon.as_ref().unwrap().socket();
    let r = crate::harness::curl(&socket, "POST", "/delegate", Some(&request("ADD")));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(c.node.pod.addrs("net5"), vec!["10.77.0.5/24"]);
    crate::support::eventually("the AddedInterface event", || !c.api.events().is_empty());
    let added: Vec<(Value, Value)> = c
        .api
        .events()
        .into_iter()
        .filter(|e| e["reason"] == "AddedInterface")
        .map(|e| (e["message"].clone(), e["involvedObject"]["name"].clone()))
        .collect();
    assert_eq!(added, vec![(json!("Add net5 [10.77.0.5/24] from hot"), json!("hot1"))]);
    let r = crate::harness::curl(&socket, "POST", "/delegate", Some(&request("DEL")));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(c.node.pod.link_names(), vec!["lo"]);
}

/// Through the daemon: a network-status write that fails for good (not a conflict) fails the ADD
/// and rolls it back; conflicts are retried on `pods/NAME/status`, never on the pod itself.
#[test]
fn network_status_write_conflicts_and_failures_through_the_daemon() {
    let mut c = Cluster::new();
    c.pod("s1", json!({}));
    c.pod("s2", json!({}));
    c.start_daemon();
    let conf = c.conf(json!({}));
    c.api.clear_requests();
    c.api.conflict_next_status_writes(2);
    let out = shim(&c.node, "ADD", &conf, "s1");
    assert_eq!(out.code, 0, "{out:?}");
    let requests = c.api.requests();
    let status_writes = |pod: &str| {
        requests
            .iter()
            .filter(|(m, p)| {
                matches!(m.as_str(), "PUT" | "PATCH")
                    && p.split('?').next().unwrap().ends_with(&format!("/pods/{pod}/status"))
            })
            .count()
    };
    assert_eq!(status_writes("s1"), 3, "two conflicts, then the write: {requests:?}");
    assert!(
        !requests
            .iter()
            .any(|(m, p)| matches!(m.as_str(), "PUT" | "PATCH") && p.split('?').next().unwrap().ends_with("/pods/s1")),
        "the pod itself was written: {requests:?}"
    );
    assert_eq!(shim(&c.node, "DEL", &conf, "s1").code, 0);
    c.assert_clean("s1");

    c.api.on_request(Box::new(|req| {
        (matches!(req.method.as_str(), "PUT" | "PATCH") && req.path.ends_with("/pods/s2/status"))
            .then(|| crate::support::apiserver::FakeResponse::status(403, "fake apiserver: forbidden"))
    }));
    let out = shim(&c.node, "ADD", &conf, "s2");
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("error setting the networks status"), "{out:?}");
    c.assert_clean("s2");
    assert!(c.node.path("ipam/cbr").is_dir(), "the ADD allocated before the status write");
    assert_eq!(c.node.ipam_ips("cbr"), Vec::<String>::new(), "the rolled-back ADD kept its IP");
}

/// A pod deleted from the API server (force-deleted, evicted) before its sandbox goes: DEL and
/// CHECK do not poll the cache for it (the daemon used to wait 2.5 s, then GET it), they take the
/// synced cache's word that it is gone, and DEL still undoes everything from the scratch cache.
#[test]
fn del_of_a_deleted_pod_does_not_wait_for_it() {
    let mut c = Cluster::new();
    c.pod("gone1", json!({}));
    c.start_daemon();
    let conf = c.conf(json!({}));
    assert_eq!(shim(&c.node, "ADD", &conf, "gone1").code, 0);
    c.api.delete_pod("default", "gone1");
    // The daemon's watch sees the deletion within milliseconds; give it ample time.
    std::thread::sleep(std::time::Duration::from_secs(2));
    c.api.clear_requests();
    let start = std::time::Instant::now();
    let del = shim(&c.node, "DEL", &conf, "gone1");
    eprintln!("DEL of a deleted pod through shim and daemon: {:?}", start.elapsed());
    assert_eq!(del.code, 0, "{del:?}");
    let gets: Vec<(String, String)> =
        c.api.requests().into_iter().filter(|(m, p)| m == "GET" && p.contains("/pods/gone1")).collect();
    assert!(
        gets.is_empty(),
        "the daemon asked the API server for a pod its synced cache says is gone: {gets:?}\n{}",
        std::fs::read_to_string(c.node.path("daemon.log")).unwrap_or_default()
    );
    c.assert_clean("gone1");
    assert_eq!(c.node.ipam_ips("cbr"), Vec::<String>::new());
}

/// The daemon's watches stay open on a quiet node: a watch that hears nothing for longer than a
/// request's 10 s answer timeout is not cut and re-opened (it was, every 10 s, with one client for
/// both), so the API server sees one pod watch and one NAD watch over a quiet 12 s.
#[test]
fn quiet_watches_are_not_cut_by_the_request_timeout() {
    let mut c = Cluster::new();
    c.pod("quiet", json!({}));
    c.start_daemon();
    let watches = |c: &Cluster| {
        let requests = c.api.requests();
        let count = |what: &str| {
            requests.iter().filter(|(m, p)| m == "GET" && p.contains("watch=true") && p.contains(what)).count()
        };
        (count("/pods?"), count("/network-attachment-definitions?"))
    };
    crate::support::eventually("both watches", || watches(&c) == (1, 1));
    std::thread::sleep(std::time::Duration::from_secs(12));
    assert_eq!(watches(&c), (1, 1), "a quiet watch was re-opened: {:?}", c.api.requests());
}
