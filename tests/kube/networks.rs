//! The thin `multus` binary against the fake API server (see `support::apiserver`: no real
//! kube-apiserver can run here), delegating to Debian's reference plugins in namespaces the test
//! creates. The API server listens inside the test's node namespace, where multus runs, so every
//! request stays in namespaces the test made. Assertions read the pod namespace, the IPAM state
//! and the objects on the API server.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::support::apiserver::FakeApiServer;
use crate::support::{Node, invoke};

pub const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
pub const STATUS: &str = "k8s.v1.cni.cncf.io/network-status";

/// A node with an API server, a cluster network (bridge `cbr`, 10.99.0.0/24) and a conf dir.
pub struct Cluster {
    pub node: Node,
    pub api: FakeApiServer,
    pub kubeconfig: PathBuf,
}

impl Cluster {
    pub fn new() -> Cluster {
        let node = Node::new().with_veth_parent();
        let api = node.node.enter(FakeApiServer::start);
        let kubeconfig = api.write_kubeconfig(node.dir.path());
        let c = Cluster { node, api, kubeconfig };
        write(
            &c.node.path("net.d/10-cbr.conflist"),
            &json!({"cniVersion": "1.0.0", "name": "cbr",
            "plugins": [c.bridge("unused", "tbr0", "10.99.0.0/24")]}),
        );
        std::fs::create_dir_all(c.node.path("multus.d")).unwrap();
        c
    }

    pub fn bridge(&self, name: &str, br: &str, subnet: &str) -> Value {
        let mut b = json!({"type": "bridge", "bridge": br, "isGateway": true,
            "ipam": {"type": "host-local", "dataDir": self.node.path("ipam"), "ranges": [[{"subnet": subnet}]],
                     "routes": [{"dst": "0.0.0.0/0"}]}});
        if name != "unused" {
            b["cniVersion"] = json!("1.0.0");
            b["name"] = json!(name);
        }
        b
    }

    pub fn macvlan(&self, name: &str) -> Value {
        json!({"cniVersion": "1.0.0", "name": name, "type": "macvlan", "master": "hv0", "mode": "bridge",
            "ipam": {"type": "host-local", "dataDir": self.node.path("ipam"),
                     "ranges": [[{"subnet": "10.98.0.0/24", "rangeStart": "10.98.0.10", "rangeEnd": "10.98.0.20"}]]}})
    }

    /// The multus config: cluster network by path, our kubeconfig, the test's dirs.
    pub fn conf(&self, extra: Value) -> Value {
        let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_passthru")).parent().unwrap().display().to_string();
        let mut c = json!({"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus",
            "kubeconfig": self.kubeconfig, "clusterNetwork": self.node.path("net.d/10-cbr.conflist"),
            "confDir": self.node.path("multus.d"), "cniDir": self.node.path("multus"), "binDir": bin_dir,
            "logLevel": "debug", "logFile": self.node.path("multus.log"), "logToStderr": false});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    pub fn pod(&self, name: &str, annotations: Value) -> Value {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "annotations": annotations},
            "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "registry.example/c:1"}]}});
        self.api.create_pod(pod.clone());
        pod
    }

    pub fn nad(&self, namespace: &str, name: &str, config: &Value) {
        self.api.create_nad(namespace, name, Some(&config.to_string()), &[]);
    }

    pub fn multus(&self, cmd: &str, conf: &Value, pod: &str) -> (i32, String) {
        let args = format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod};K8S_POD_INFRA_CONTAINER_ID=c-{pod};K8S_POD_UID=uid-{pod}"
        );
        invoke(&self.node, env!("CARGO_BIN_EXE_multus"), cmd, conf, &format!("c-{pod}"), "eth0", &args)
    }

    /// The network-status annotation as the API server stores it.
    pub fn network_status(&self, pod: &str) -> Value {
        let p = self.api.pod("default", pod).expect("pod exists");
        let text = p["metadata"]["annotations"][STATUS].as_str().unwrap_or_else(|| panic!("no {STATUS} on {p}"));
        serde_json::from_str(text).unwrap()
    }

    /// What the pod namespace really has on `ifname`: its MAC and addresses (without prefix).
    pub fn reality(&self, ifname: &str) -> (String, Vec<String>) {
        let link = self.node.pod.link(ifname).unwrap_or_else(|| panic!("{ifname} missing in the pod"));
        let ips = self.node.pod.addrs(ifname).iter().map(|a| a.split('/').next().unwrap().to_string()).collect();
        (link["address"].as_str().unwrap().to_string(), ips)
    }

    pub fn events(&self, reason: &str) -> Vec<String> {
        self.api
            .events()
            .iter()
            .filter(|e| e["reason"] == reason)
            .map(|e| format!("{} {}", e["type"].as_str().unwrap_or(""), e["message"].as_str().unwrap_or("")))
            .collect()
    }

    pub fn only_lo(&self) {
        assert_eq!(self.node.pod.link_names(), vec!["lo"], "the pod namespace must be empty again");
    }
}

pub fn write(path: &std::path::Path, v: &Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

fn error_of(out: &str) -> (u64, String) {
    let v: Value = serde_json::from_str(out).unwrap_or_else(|e| panic!("not a CNI error object ({e}): {out}"));
    (v["code"].as_u64().unwrap(), v["msg"].as_str().unwrap().to_string())
}

#[test]
fn comma_annotation_attaches_nads_and_writes_the_true_network_status() {
    let c = Cluster::new();
    c.nad("default", "macvlan-conf", &c.macvlan("macvlan-conf"));
    c.nad("other-ns", "bridge-conf", &c.bridge("bridge-conf", "tbr1", "10.97.0.0/24"));
    c.pod("p1", json!({NETWORKS: "macvlan-conf, other-ns/bridge-conf@data0"}));
    let conf = c.conf(json!({}));

    let (rc, out) = c.multus("ADD", &conf, "p1");
    assert_eq!(rc, 0, "{out}");
    let (eth0_mac, eth0_ips) = c.reality("eth0");
    let (net1_mac, net1_ips) = c.reality("net1");
    let (data0_mac, data0_ips) = c.reality("data0");
    assert_eq!(
        (eth0_ips.clone(), net1_ips.clone(), data0_ips.clone()),
        (vec!["10.99.0.2".to_string()], vec!["10.98.0.10".to_string()], vec!["10.97.0.2".to_string()])
    );
    assert_eq!(
        c.network_status("p1"),
        json!([
            {"name": "cbr", "interface": "eth0", "ips": eth0_ips, "mac": eth0_mac, "default": true, "dns": {}},
            {"name": "default/macvlan-conf", "interface": "net1", "ips": net1_ips, "mac": net1_mac, "dns": {}},
            {"name": "other-ns/bridge-conf", "interface": "data0", "ips": data0_ips, "mac": data0_mac, "dns": {}},
        ]),
        "the annotation says what is really in the pod"
    );
    assert_eq!(
        c.events("AddedInterface"),
        [
            "Normal Add eth0 [10.99.0.2/24] from cbr",
            "Normal Add net1 [10.98.0.10/24] from default/macvlan-conf",
            "Normal Add data0 [10.97.0.2/24] from other-ns/bridge-conf",
        ]
    );

    assert_eq!(c.multus("CHECK", &conf, "p1"), (0, String::new()));
    assert_eq!(c.multus("DEL", &conf, "p1"), (0, String::new()));
    c.only_lo();
    for net in ["cbr", "macvlan-conf", "bridge-conf"] {
        assert!(c.node.ipam_ips(net).is_empty(), "host-local freed the IP of {net}");
    }
}

#[test]
fn json_annotation_with_ips_mac_and_default_route() {
    let c = Cluster::new();
    c.nad(
        "default",
        "static-mv",
        &json!({"cniVersion": "1.0.0", "name": "static-mv", "type": "macvlan",
        "master": "hv0", "mode": "bridge", "capabilities": {"ips": true, "mac": true}, "ipam": {"type": "static"}}),
    );
    let annotation = json!([{"name": "static-mv", "interface": "sec0", "ips": ["10.98.0.50/24"],
        "mac": "02:11:22:33:44:55", "default-route": ["10.98.0.1"]}]);
    c.pod("p2", json!({NETWORKS: annotation.to_string()}));
    let conf = c.conf(json!({}));

    let (rc, out) = c.multus("ADD", &conf, "p2");
    assert_eq!(rc, 0, "{out}");
    assert_eq!(c.reality("sec0"), ("02:11:22:33:44:55".to_string(), vec!["10.98.0.50".to_string()]));
    let defaults: Vec<String> = c.node.pod.routes().into_iter().filter(|r| r.starts_with("default")).collect();
    assert_eq!(defaults, ["default via 10.98.0.1 dev sec0"], "the default route moved to the requested network");
    let status = c.network_status("p2");
    assert_eq!(
        status[1],
        json!({"name": "default/static-mv", "interface": "sec0", "ips": ["10.98.0.50"], "mac": "02:11:22:33:44:55", "dns": {}})
    );
    assert_eq!(c.multus("DEL", &conf, "p2"), (0, String::new()));
    c.only_lo();
}

#[test]
fn namespace_isolation_refuses_a_foreign_namespace() {
    let c = Cluster::new();
    c.nad("other-ns", "bridge-conf", &c.bridge("bridge-conf", "tbr1", "10.97.0.0/24"));
    c.nad("default", "bridge-conf", &c.bridge("bridge-conf", "tbr1", "10.97.0.0/24"));
    c.pod("p3", json!({NETWORKS: "other-ns/bridge-conf"}));
    let conf = c.conf(json!({"namespaceIsolation": true}));
    let (rc, out) = c.multus("ADD", &conf, "p3");
    assert_eq!(rc, 1);
    let (code, msg) = error_of(&out);
    assert_eq!(code, 7);
    assert!(
        msg.contains("pod is in namespace default but refers to target namespace other-ns"),
        "the refusal names both namespaces: {msg}"
    );
    c.only_lo();
    assert!(!c.node.path("ipam/cbr").exists(), "no delegate ran: host-local never allocated for cbr");

    // A global namespace ("default" unless globalNamespaces says otherwise) is allowed.
    let conf = c.conf(json!({"namespaceIsolation": true, "globalNamespaces": "other-ns"}));
    assert_eq!(c.multus("ADD", &conf, "p3").0, 0);
    assert_eq!(c.multus("DEL", &conf, "p3").0, 0);
    c.only_lo();
}

#[test]
fn a_missing_nad_is_an_error_and_a_warning_event() {
    let c = Cluster::new();
    c.pod("p4", json!({NETWORKS: "nowhere"}));
    let conf = c.conf(json!({}));
    let (rc, out) = c.multus("ADD", &conf, "p4");
    assert_eq!(rc, 1);
    let (_, msg) = error_of(&out);
    assert!(msg.contains("cannot find a network-attachment-definition (nowhere) in namespace (default)"), "{msg}");
    assert_eq!(
        c.events("NoNetworkFound"),
        [
            "Warning cannot find a network-attachment-definition (nowhere) in namespace (default): network-attachment-definitions.k8s.cni.cncf.io \"nowhere\" not found"
        ]
    );
    c.only_lo();
}

#[test]
fn an_empty_spec_nad_comes_from_the_conf_dir() {
    let c = Cluster::new();
    // The Istio-CNI pattern: an empty NAD, the real config dropped on disk (4.2.1 mounts this dir).
    c.api.create_nad("default", "istio-cni", None, &[]);
    write(&c.node.path("multus.d/istio.conf"), &c.bridge("istio-cni", "tbr2", "10.96.5.0/24"));
    c.pod("p5", json!({NETWORKS: "istio-cni"}));
    let conf = c.conf(json!({}));
    let (rc, out) = c.multus("ADD", &conf, "p5");
    assert_eq!(rc, 0, "{out}");
    assert_eq!(c.reality("net1").1, ["10.96.5.2"]);
    assert_eq!(c.multus("DEL", &conf, "p5").0, 0);
    c.only_lo();
}

#[test]
fn the_default_network_annotation_replaces_the_cluster_network() {
    let c = Cluster::new();
    c.nad("kube-system", "alt-default", &c.bridge("alt-default", "tbr3", "10.95.0.0/24"));
    c.pod("p6", json!({"v1.multus-cni.io/default-network": "alt-default"}));
    let conf = c.conf(json!({}));
    let (rc, out) = c.multus("ADD", &conf, "p6");
    assert_eq!(rc, 0, "{out}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["ips"][0]["address"], "10.95.0.2/24", "the result is the replacement master's");
    assert_eq!(c.reality("eth0").1, ["10.95.0.2"]);
    assert!(!c.node.path("ipam/cbr").exists(), "the cluster network did not run: nothing allocated for cbr");
    assert_eq!(c.network_status("p6")[0]["name"], "kube-system/alt-default");
    assert_eq!(c.multus("DEL", &conf, "p6").0, 0);
    c.only_lo();
}

#[test]
fn a_pod_deleted_during_add_gets_the_empty_result() {
    let c = Cluster::new();
    c.pod("p7", json!({}));
    // The pod is deleted the moment multus first asks for it (the GET then sees it gone).
    let handle = c.api.handle();
    c.api.on_request(Box::new(move |req| {
        if req.method == "GET" && req.path.ends_with("/pods/p7") {
            handle.delete_pod("default", "p7");
        }
        None
    }));
    for v in ["0.3.1", "0.4.0", "1.1.0"] {
        let conf = c.conf(json!({"cniVersion": v}));
        let (rc, out) = c.multus("ADD", &conf, "p7");
        assert_eq!(rc, 0, "{out}");
        let r: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(r["cniVersion"], v);
        assert_eq!(r["interfaces"], json!([{"name": "eth0", "sandbox": c.node.pod.path()}]));
        assert_eq!(r["ips"][0]["address"], "0.0.0.0/0");
    }
    c.only_lo();
}

#[test]
fn api_server_errors_are_retried_within_the_budget_then_reported() {
    let c = Cluster::new();
    c.pod("p8", json!({}));
    let times = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = times.clone();
    c.api.on_request(Box::new(move |req| {
        if req.method == "GET" && req.path.ends_with("/pods/p8") {
            seen.lock().unwrap().push(std::time::Instant::now());
        }
        None
    }));
    c.api.fail_next(1000, 503);
    let (rc, out) = c.multus("ADD", &c.conf(json!({})), "p8");
    assert_eq!(rc, 1);
    let (code, msg) = error_of(&out);
    assert_eq!(code, 11, "try again later: {msg}");
    assert!(msg.contains("cannot get pod default/p8"), "{msg}");
    let gets = c.api.requests().iter().filter(|(m, p)| m == "GET" && p.contains("/pods/p8")).count();
    // 2.5 s budget at 250 ms intervals: a GET at 0, 0.25, ..., 2.25 s (fewer only when the
    // server's answers themselves take time); the gaps below pin the interval.
    assert!((8..=10).contains(&gets), "{gets} GETs");
    let times = times.lock().unwrap().clone();
    assert_eq!(times.len(), gets);
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= std::time::Duration::from_millis(250) && gap < std::time::Duration::from_millis(1000),
            "retries every 250 ms: {times:?}"
        );
    }
    assert!(times[times.len() - 1] - times[0] < std::time::Duration::from_millis(2500), "{times:?}");
    c.only_lo();
}

#[test]
fn an_unreachable_api_server_is_a_clear_error() {
    let mut c = Cluster::new();
    c.api.stop();
    let (rc, out) = c.multus("ADD", &c.conf(json!({})), "p9");
    assert_eq!(rc, 1);
    let (code, msg) = error_of(&out);
    assert_eq!(code, 11);
    assert!(msg.contains("error getting pod") && msg.contains("default/p9"), "{msg}");
    c.only_lo();
}

#[test]
fn a_uid_mismatch_is_refused_unless_the_pod_is_static() {
    let c = Cluster::new();
    let mut pod = c.pod("p10", json!({}));
    c.api.delete_pod("default", "p10");
    pod["metadata"]["uid"] = json!("another-uid");
    c.api.create_pod(pod.clone());
    let conf = c.conf(json!({}));
    let (rc, out) = c.multus("ADD", &conf, "p10");
    assert_eq!(rc, 1);
    assert!(error_of(&out).1.contains("expected pod UID \"uid-p10\" but got \"another-uid\""), "{out}");
    c.only_lo();

    c.api.delete_pod("default", "p10");
    pod["metadata"]["annotations"] = json!({"kubernetes.io/config.source": "file"});
    c.api.create_pod(pod);
    assert_eq!(c.multus("ADD", &conf, "p10").0, 0, "a static pod's mirror has another UID");
    assert_eq!(c.multus("DEL", &conf, "p10").0, 0);
    c.only_lo();
}

#[test]
fn network_status_survives_write_conflicts() {
    let c = Cluster::new();
    c.pod("p11", json!({}));
    c.api.conflict_next_status_writes(2);
    let conf = c.conf(json!({}));
    let (rc, out) = c.multus("ADD", &conf, "p11");
    assert_eq!(rc, 0, "{out}");
    assert_eq!(c.network_status("p11")[0]["interface"], "eth0");
    assert_status_subresource_written(&c.api.requests(), "p11", 3);
    assert_eq!(c.multus("DEL", &conf, "p11").0, 0);
    c.only_lo();
}

#[test]
fn a_pod_named_like_a_system_namespace_still_gets_its_network_status() {
    // Upstream 4.2.1 compared the pod *name* with systemNamespaces and skipped the annotation.
    let c = Cluster::new();
    c.pod("kube-system", json!({}));
    let conf = c.conf(json!({}));
    assert_eq!(c.multus("ADD", &conf, "kube-system").0, 0);
    assert_eq!(c.network_status("kube-system")[0]["interface"], "eth0");
    assert_eq!(c.multus("DEL", &conf, "kube-system").0, 0);
    c.only_lo();
}

/// The network-status went through `pods/NAME/status` (upstream's `UpdateStatus`), `writes`
/// times (the conflicts were really served), and never through the pod itself.
pub fn assert_status_subresource_written(requests: &[(String, String)], pod: &str, writes: usize) {
    let is_write = |m: &str| m == "PUT" || m == "PATCH";
    let status = format!("/pods/{pod}/status");
    let to_status =
        requests.iter().filter(|(m, p)| is_write(m) && p.split('?').next().unwrap().ends_with(&status)).count();
    assert_eq!(to_status, writes, "writes of {status}: {requests:?}");
    let to_pod = format!("/pods/{pod}");
    assert!(
        !requests.iter().any(|(m, p)| is_write(m) && p.split('?').next().unwrap().ends_with(&to_pod)),
        "the pod itself was written: {requests:?}"
    );
}

/// A pod deleted and recreated under the same name while its old sandbox's ADD runs: the
/// network-status write finds another UID, refuses (as upstream), and the ADD is rolled back; the
/// new pod never gets the old sandbox's status.
#[test]
fn a_pod_recreated_during_add_does_not_get_the_old_sandboxs_status() {
    let c = Cluster::new();
    let old = c.pod("p14", json!({}));
    let handle = c.api.handle();
    let gets = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    c.api.on_request(Box::new(move |req| {
        // The second GET is the status write's read: the pod is replaced just before it.
        if req.method == "GET"
            && req.path.ends_with("/pods/p14")
            && gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1
        {
            handle.delete_pod("default", "p14");
            let mut new = old.clone();
            new["metadata"]["uid"] = json!("uid-p14-new");
            handle.create_pod(new);
        }
        None
    }));
    let conf = c.conf(json!({}));
    let (rc, out) = c.multus("ADD", &conf, "p14");
    assert_eq!(rc, 1, "{out}");
    let (code, msg) = error_of(&out);
    assert!(msg.contains("expected pod UID \"uid-p14\" but got \"uid-p14-new\""), "{code}: {msg}");
    c.only_lo();
    assert_eq!(c.node.ipam_ips("cbr"), Vec::<String>::new(), "the refused ADD kept its IP");
    let now = c.api.pod("default", "p14").unwrap();
    assert_eq!(now["metadata"]["uid"], "uid-p14-new");
    assert!(now["metadata"]["annotations"].get(STATUS).is_none(), "the new pod got the old sandbox's status: {now}");
}

/// A network-status write that fails for good (not a conflict) fails the ADD, and the ADD undoes
/// every delegate: no interface, no IP.
#[test]
fn a_failed_network_status_write_rolls_the_add_back() {
    let c = Cluster::new();
    c.pod("p12", json!({}));
    c.api.on_request(Box::new(|req| {
        (matches!(req.method.as_str(), "PUT" | "PATCH") && req.path.ends_with("/pods/p12/status"))
            .then(|| crate::support::apiserver::FakeResponse::status(403, "fake apiserver: forbidden"))
    }));
    let conf = c.conf(json!({}));
    let (rc, out) = c.multus("ADD", &conf, "p12");
    assert_eq!(rc, 1, "{out}");
    let (_, msg) = error_of(&out);
    assert!(msg.contains("error setting the networks status"), "{msg}");
    c.only_lo();
    assert!(c.node.path("ipam/cbr").is_dir(), "the ADD allocated before the status write");
    assert_eq!(c.node.ipam_ips("cbr"), Vec::<String>::new(), "the rolled-back ADD kept its IP");
    assert!(!c.node.path("multus/c-p12").exists(), "scratch file left");
}

/// The network-status write is a read-modify-write of the whole pod, done untyped: fields the
/// client's API version does not know (a newer server's) go back as the server sent them. A typed
/// client (upstream's, or ours before) drops them from the status it writes back.
#[test]
fn the_status_write_keeps_pod_fields_newer_than_the_client() {
    use multus::k8s::cluster::ApiCluster;
    use multus::multus::kube::{Cluster, K8sArgs, PodLookup};
    let api = FakeApiServer::start();
    let dir = tempfile::tempdir().unwrap();
    api.create_pod(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "uid": "uid-p", "annotations": {"a": "b"}},
        "spec": {"containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": "Running", "futureStatusField": [1, 2], "podIP": "10.1.0.5"}}));
    let kubeconfig = api.write_kubeconfig(dir.path());
    let cluster = ApiCluster::from_kubeconfig(kubeconfig.to_str().unwrap()).unwrap().unwrap();
    let args = K8sArgs { namespace: "default".into(), name: "p".into(), uid: "uid-p".into(), ..Default::default() };
    let PodLookup::Found(pod) = cluster.pod(&args).unwrap() else { panic!("pod p not found") };
    assert_eq!((pod.uid.as_str(), pod.annotations["a"].as_str()), ("uid-p", "b"));
    cluster.set_network_status(&pod, &[]).unwrap();
    let stored = api.pod("default", "p").unwrap();
    assert_eq!(stored["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"], "[]");
    assert_eq!(stored["metadata"]["annotations"]["a"], "b");
    assert_eq!(stored["status"]["futureStatusField"], json!([1, 2]), "{stored}");
    assert_eq!(stored["status"]["podIP"], "10.1.0.5");
}
