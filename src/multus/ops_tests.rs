//! `ops` in-process, without root: a fake node that is both the plugin executor (`Exec`) and the
//! pod's namespace (`Sandbox`), as upstream's `multus_test.go` runs with a fake exec. Its plugins
//! add a link and an IP on ADD and take them away on DEL, fail where a test tells them to, and
//! record every call; a fake cluster holds the pod and can refuse the network-status write. The
//! root tests (tests/thin, tests/thick, tests/adversarial) keep the real-plugin end-to-end cases.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Value, json};

use super::*;
use crate::cni::error::CniError;
use crate::multus::delegate::Delegate;
use crate::multus::kube::{Pod, PodLookup};
use crate::multus::status::NetworkStatus;

/// The namespace of the container named "pod" (each container has its own: `inv`).
const NETNS: &str = "/var/run/netns/pod";

/// Links per namespace, IPs per (network, container, ifname), every call, and the failures to play.
#[derive(Default)]
struct FakeNode {
    links: Mutex<BTreeSet<(String, String)>>,
    ips: Mutex<BTreeMap<(String, String, String), String>>,
    calls: Mutex<Vec<String>>,
    /// `COMMAND network` pairs that fail; an ADD fails after adding (a chain failing half-way).
    fail: Mutex<BTreeSet<String>>,
    next_ip: Mutex<u8>,
}

impl FakeNode {
    fn fail(&self, what: &str) {
        self.fail.lock().unwrap().insert(what.to_string());
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn links(&self) -> Vec<String> {
        self.links.lock().unwrap().iter().map(|(_, l)| l.clone()).collect()
    }

    fn ips(&self) -> usize {
        self.ips.lock().unwrap().len()
    }
}

impl Sandbox for FakeNode {
    fn link_exists(&self, netns_path: &str, ifname: &str) -> Result<bool, Error> {
        Ok(self.links.lock().unwrap().contains(&(netns_path.to_string(), ifname.to_string())))
    }

    fn apply_gateway(&self, _: &str, _: &str, _: &Delegate) -> Result<Vec<String>, Error> {
        Ok(vec![])
    }
}

impl Exec for FakeNode {
    fn exec_plugin(&self, plugin: &Path, stdin: &[u8], env: &[(String, String)]) -> Result<Vec<u8>, Error> {
        let var = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap_or_default();
        let conf: Value = serde_json::from_slice(stdin).unwrap();
        let (cmd, network) = (var("CNI_COMMAND"), conf["name"].as_str().unwrap().to_string());
        let (netns, ifname, container) = (var("CNI_NETNS"), var("CNI_IFNAME"), var("CNI_CONTAINERID"));
        self.calls.lock().unwrap().push(format!("{cmd} {network} {ifname}"));
        assert_eq!(plugin, Path::new("fake"), "found through find_in_path");
        let failing = self.fail.lock().unwrap().contains(&format!("{cmd} {network}"));
        let refuse = || Err(Error::Cni(CniError::new(11, format!("{network} refuses {cmd}"), "")));
        let key = (network.clone(), container.clone(), ifname.clone());
        match cmd.as_str() {
            "ADD" => {
                self.links.lock().unwrap().insert((netns.clone(), ifname.clone()));
                let ip = {
                    let mut n = self.next_ip.lock().unwrap();
                    *n += 1;
                    format!("10.0.0.{n}/24")
                };
                self.ips.lock().unwrap().insert(key, ip.clone());
                if failing {
                    return refuse();
                }
                let result = json!({"cniVersion": conf["cniVersion"], "interfaces": [{"name": ifname, "sandbox": netns}],
                    "ips": [{"address": ip, "interface": 0}]});
                Ok(result.to_string().into_bytes())
            }
            "DEL" => {
                if failing {
                    return refuse();
                }
                self.links.lock().unwrap().remove(&(netns, ifname));
                self.ips.lock().unwrap().remove(&key);
                Ok(vec![])
            }
            "CHECK" => {
                if failing || !self.link_exists(&netns, &ifname)? {
                    return Err(Error::Cni(CniError::new(999, format!("{network}: {ifname} is missing"), "")));
                }
                Ok(vec![])
            }
            _ => Ok(vec![]),
        }
    }

    fn find_in_path(&self, name: &str, _: &[PathBuf]) -> Result<PathBuf, Error> {
        Ok(PathBuf::from(name))
    }
}

/// A cluster with one pod; its network-status write succeeds or fails.
struct FakeCluster {
    refuse_status: bool,
    status: Mutex<Vec<NetworkStatus>>,
}

impl FakeCluster {
    fn new(refuse_status: bool) -> FakeCluster {
        FakeCluster { refuse_status, status: Mutex::new(vec![]) }
    }
}

impl Cluster for FakeCluster {
    fn has_client(&self) -> bool {
        true
    }

    fn pod(&self, args: &K8sArgs) -> Result<PodLookup, Error> {
        Ok(PodLookup::Found(Pod {
            namespace: args.namespace.clone(),
            name: args.name.clone(),
            uid: "uid-1".into(),
            ..Pod::default()
        }))
    }

    fn nad(&self, _: &str, _: &str) -> Result<Option<crate::multus::nad::NetworkAttachmentDefinition>, Error> {
        Ok(None)
    }

    fn set_network_status(&self, _: &Pod, entries: &[NetworkStatus]) -> Result<(), Error> {
        if self.refuse_status {
            return Err(Error::Internal("the API server refused the status write".into()));
        }
        *self.status.lock().unwrap() = entries.to_vec();
        Ok(())
    }
}

/// Three delegates (`net0` the master, `net1`, `net2`) of the fake plugin.
fn multus_conf(dir: &Path, extra: Value) -> NetConf {
    let d = |n: &str| json!({"cniVersion": "1.1.0", "name": n, "type": "fake"});
    let mut c = json!({"cniVersion": "1.1.0", "name": "multus-cni-network", "type": "multus",
        "cniDir": dir.join("multus"), "binDir": dir.join("bin"), "logToStderr": false,
        "delegates": [d("net0"), d("net1"), d("net2")]});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    NetConf::parse(c.to_string().as_bytes()).unwrap()
}

fn inv(container: &str) -> Invocation {
    Invocation {
        container_id: container.into(),
        netns: format!("/var/run/netns/{container}"),
        ifname: "eth0".into(),
        args: vec![
            ("K8S_POD_NAMESPACE".into(), "default".into()),
            ("K8S_POD_NAME".into(), container.into()),
            ("K8S_POD_UID".into(), "uid-1".into()),
        ],
        path: "/opt/cni/bin".into(),
    }
}

fn scratch_exists(dir: &Path, container: &str) -> bool {
    dir.join("multus").join(container).exists()
}

#[test]
fn add_runs_every_delegate_and_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    let (node, cluster, conf) = (FakeNode::default(), FakeCluster::new(false), multus_conf(dir.path(), json!({})));
    let result = add(&conf, &inv("pod"), &cluster, &node, &node).unwrap();
    assert_eq!(node.calls(), ["ADD net0 eth0", "ADD net1 net1", "ADD net2 net2"]);
    assert_eq!(node.links(), ["eth0", "net1", "net2"]);
    assert_eq!(result["ips"][0]["address"], "10.0.0.1/24", "the master's result: {result}");
    assert_eq!(result["cniVersion"], "1.1.0");
    let status = cluster.status.lock().unwrap().clone();
    assert_eq!(status.iter().map(|s| s.interface.as_str()).collect::<Vec<_>>(), ["eth0", "net1", "net2"]);
    assert!(status[0].default && !status[1].default);
    assert!(scratch_exists(dir.path(), "pod"));
}

#[test]
fn a_failing_delegate_rolls_back_itself_and_those_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (node, cluster, conf) = (FakeNode::default(), FakeCluster::new(false), multus_conf(dir.path(), json!({})));
    node.fail("ADD net1");
    let e = add(&conf, &inv("pod"), &cluster, &node, &node).unwrap_err();
    assert_eq!(e.code(), 11, "the delegate's own code: {e}");
    assert!(e.to_string().contains("error adding container to network \"net1\""), "{e}");
    // net1 added its link before failing: it is DELed too, then net0; net2 never ran.
    assert_eq!(node.calls(), ["ADD net0 eth0", "ADD net1 net1", "DEL net1 net1", "DEL net0 eth0"]);
    assert_eq!((node.links(), node.ips()), (Vec::<String>::new(), 0));
    assert!(!scratch_exists(dir.path(), "pod"), "the failed ADD removes its scratch file");
    assert!(cluster.status.lock().unwrap().is_empty(), "no network-status for a failed ADD");
}

/// When a rollback DEL fails too, the scratch file keeps what this ADD ran (and only that), so the
/// runtime's DEL finishes the job.
#[test]
fn a_failed_rollback_leaves_the_record_for_the_runtimes_del() {
    let dir = tempfile::tempdir().unwrap();
    let (node, cluster, conf) = (FakeNode::default(), FakeCluster::new(false), multus_conf(dir.path(), json!({})));
    node.fail("ADD net1");
    node.fail("DEL net0");
    assert!(add(&conf, &inv("pod"), &cluster, &node, &node).is_err());
    assert_eq!(node.links(), ["eth0"], "net0's rollback failed");
    assert!(scratch_exists(dir.path(), "pod"), "the record of what is left");
    node.fail.lock().unwrap().clear();
    node.calls.lock().unwrap().clear();
    del(&conf, &inv("pod"), &cluster, &node).unwrap();
    assert_eq!(node.calls(), ["DEL net1 net1", "DEL net0 eth0"], "exactly what the ADD ran");
    assert_eq!((node.links(), node.ips()), (Vec::<String>::new(), 0));
    assert!(!scratch_exists(dir.path(), "pod"));
}

#[test]
fn a_taken_interface_name_is_refused_and_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (node, cluster, conf) = (FakeNode::default(), FakeCluster::new(false), multus_conf(dir.path(), json!({})));
    node.links.lock().unwrap().insert((NETNS.into(), "net1".into()));
    let e = add(&conf, &inv("pod"), &cluster, &node, &node).unwrap_err();
    assert!(e.to_string().contains("interface name net1 already exists"), "{e}");
    assert_eq!(node.calls(), ["ADD net0 eth0", "DEL net0 eth0"], "the other owner's net1 is never DELed");
    assert_eq!(node.links(), ["net1"]);
}

#[test]
fn a_refused_network_status_write_rolls_every_delegate_back() {
    let dir = tempfile::tempdir().unwrap();
    let (node, cluster, conf) = (FakeNode::default(), FakeCluster::new(true), multus_conf(dir.path(), json!({})));
    let e = add(&conf, &inv("pod"), &cluster, &node, &node).unwrap_err();
    assert!(e.to_string().contains("error setting the networks status"), "{e}");
    assert_eq!(
        node.calls()[3..],
        ["DEL net2 net2", "DEL net1 net1", "DEL net0 eth0"],
        "every delegate undone, last first"
    );
    assert_eq!((node.links(), node.ips()), (Vec::<String>::new(), 0));
    assert!(!scratch_exists(dir.path(), "pod"));
}

#[test]
fn del_tries_every_delegate_and_returns_the_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (node, cluster, conf) = (FakeNode::default(), FakeCluster::new(false), multus_conf(dir.path(), json!({})));
    add(&conf, &inv("pod"), &cluster, &node, &node).unwrap();
    node.fail("DEL net1");
    node.calls.lock().unwrap().clear();
    let e = del(&conf, &inv("pod"), &cluster, &node).unwrap_err();
    assert_eq!(e.code(), 11);
    assert!(e.to_string().contains("net1"), "{e}");
    assert_eq!(node.calls(), ["DEL net2 net2", "DEL net1 net1", "DEL net0 eth0"], "the others still ran");
    assert_eq!(node.links(), ["net1"], "only the failing delegate's link is left");
    assert!(!scratch_exists(dir.path(), "pod"), "without retryDeleteOnError the scratch file goes");

    // With retryDeleteOnError the scratch file stays for the runtime's retry, which then succeeds.
    let conf = multus_conf(dir.path(), json!({"retryDeleteOnError": true}));
    add(&conf, &inv("pod2"), &cluster, &node, &node).unwrap();
    node.fail("DEL net2");
    assert!(del(&conf, &inv("pod2"), &cluster, &node).is_err());
    assert!(scratch_exists(dir.path(), "pod2"));
    node.fail.lock().unwrap().clear();
    del(&conf, &inv("pod2"), &cluster, &node).unwrap();
    assert!(!scratch_exists(dir.path(), "pod2"));
}

#[test]
fn check_reaches_every_delegate() {
    let dir = tempfile::tempdir().unwrap();
    let (node, cluster, conf) = (FakeNode::default(), FakeCluster::new(false), multus_conf(dir.path(), json!({})));
    add(&conf, &inv("pod"), &cluster, &node, &node).unwrap();
    node.calls.lock().unwrap().clear();
    check(&conf, &inv("pod"), &cluster, &node).unwrap();
    assert_eq!(node.calls(), ["CHECK net0 eth0", "CHECK net1 net1", "CHECK net2 net2"]);
    node.links.lock().unwrap().remove(&(NETNS.to_string(), "net2".to_string()));
    let e = check(&conf, &inv("pod"), &cluster, &node).unwrap_err();
    assert!(e.to_string().contains("CHECK of network \"net2\"") && e.to_string().contains("net2 is missing"), "{e}");
}

#[test]
fn gc_deletes_what_is_not_valid_and_sends_gc() {
    let dir = tempfile::tempdir().unwrap();
    let (node, cluster) = (FakeNode::default(), FakeCluster::new(false));
    let base = multus_conf(dir.path(), json!({}));
    add(&base, &inv("keep"), &cluster, &node, &node).unwrap();
    add(&base, &inv("stale"), &cluster, &node, &node).unwrap();
    node.calls.lock().unwrap().clear();
    let gc_conf =
        multus_conf(dir.path(), json!({"cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]}));
    gc(&gc_conf, &Invocation::default(), &cluster, &node).unwrap();
    // The master's network (net0) is the cluster network: its stale attachment is DELed, then GC.
    assert_eq!(node.calls(), ["DEL net0 eth0", "GC net0 "]);
    assert!(node.ips.lock().unwrap().contains_key(&("net0".into(), "keep".into(), "eth0".into())));
    assert!(!node.ips.lock().unwrap().contains_key(&("net0".into(), "stale".into(), "eth0".into())));
}
