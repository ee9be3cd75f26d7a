//! default-route handling in a real pod namespace, the ECMP refusal, and the empty result for a
//! vanished pod (through the `Cluster` seam: the Kubernetes client that gives that signal is the
//! API-server issue's; here a fake answers "not found").

use multus::multus::sandbox::Netns;
use serde_json::{Value, json};

use multus::cni::RawExec;
use multus::cni::error::Error;
use multus::multus::conf::NetConf;
use multus::multus::delegate::{Delegate, DelegateConfig};
use multus::multus::kube::{Cluster, K8sArgs, NoCluster, PodLookup};
use multus::multus::nad::NetworkAttachmentDefinition;
use multus::multus::ops::{self, Invocation};

use crate::flows::{bridge, macvlan, multus_conf};
use crate::support::{CNI_BIN, Node};

fn inv(node: &Node, container: &str) -> Invocation {
    Invocation {
        container_id: container.into(),
        netns: node.pod.path(),
        ifname: "eth0".into(),
        args: vec![("K8S_POD_NAMESPACE".into(), "default".into()), ("K8S_POD_NAME".into(), container.into())],
        path: CNI_BIN.into(),
    }
}

fn delegates(node: &Node, gw: Option<Vec<&str>>) -> Vec<Delegate> {
    let mut master =
        Delegate::new(DelegateConfig::from_value(bridge(node, "cbr", "tbr0", "10.99.0.0/24"), "1.0.0").unwrap());
    master.master = true;
    let mut second = Delegate::new(DelegateConfig::from_value(macvlan(node, "mv"), "1.0.0").unwrap());
    second.name = "default/mv".into();
    second.requests.gateway = gw.map(|g| g.iter().map(|s| s.parse().unwrap()).collect());
    vec![master, second]
}

fn cached_routes(node: &Node, net: &str, container: &str, ifname: &str) -> Value {
    let f = node.path("multus/results").join(format!("{net}-{container}-{ifname}"));
    let doc: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
    doc["result"]["routes"].clone()
}

#[test]
fn default_route_moves_to_the_requested_network() {
    let node = Node::new().with_veth_parent();
    let conf =
        NetConf::parse(multus_conf(&node, "1.0.0", json!({"delegates": [{"type": "x"}]})).to_string().as_bytes())
            .unwrap();
    let inv = inv(&node, "gw1");
    let before = delegates(&node, None);
    node.node.enter(|| ops::add_delegates(&conf, &inv, before, None, &NoCluster, &Netns, RawExec::default())).unwrap();
    assert!(node.pod.routes().contains(&"default via 10.99.0.1 dev eth0".to_string()));
    node.node.enter(|| ops::del(&conf, &inv, &multus::multus::kube::NoCluster, RawExec::default())).unwrap();

    let inv = crate::routes::inv(&node, "gw2");
    node.node
        .enter(|| {
            ops::add_delegates(
                &conf,
                &inv,
                delegates(&node, Some(vec!["10.98.0.1"])),
                None,
                &NoCluster,
                &Netns,
                RawExec::default(),
            )
        })
        .unwrap();
    let routes = node.pod.routes();
    assert!(routes.contains(&"default via 10.98.0.1 dev net1".to_string()), "{routes:?}");
    assert!(!routes.iter().any(|r| r.starts_with("default") && r.ends_with("dev eth0")), "{routes:?}");
    assert_eq!(cached_routes(&node, "cbr", "gw2", "eth0"), Value::Null, "the master's cached default route is gone");
    assert_eq!(cached_routes(&node, "mv", "gw2", "net1"), json!([{"dst": "0.0.0.0/0", "gw": "10.98.0.1"}]));
    node.node.enter(|| ops::del(&conf, &inv, &multus::multus::kube::NoCluster, RawExec::default())).unwrap();
    assert_eq!(node.pod.link_names(), vec!["lo"]);
}

#[test]
fn two_default_gateways_of_one_family_are_refused_before_anything_runs() {
    let node = Node::new().with_veth_parent();
    let conf =
        NetConf::parse(multus_conf(&node, "1.0.0", json!({"delegates": [{"type": "x"}]})).to_string().as_bytes())
            .unwrap();
    let mut ds = delegates(&node, Some(vec!["10.98.0.1"]));
    ds[0].requests.gateway = Some(vec!["10.99.0.1".parse().unwrap()]);
    let e = node
        .node
        .enter(|| ops::add_delegates(&conf, &inv(&node, "ecmp"), ds, None, &NoCluster, &Netns, RawExec::default()))
        .unwrap_err();
    assert_eq!(e.to_string(), "multus does not support ECMP for default-route");
    assert_eq!(node.pod.link_names(), vec!["lo"]);
    assert!(!node.path("multus/ecmp").exists(), "no scratch cache for a refused ADD");
}

struct PodGone;

impl Cluster for PodGone {
    fn pod(&self, _: &K8sArgs) -> Result<PodLookup, Error> {
        Ok(PodLookup::NotFound)
    }
    fn nad(&self, _: &str, _: &str) -> Result<Option<NetworkAttachmentDefinition>, Error> {
        Ok(None)
    }
    fn has_client(&self) -> bool {
        true
    }
}

#[test]
fn a_vanished_pod_gets_a_well_formed_empty_result_in_the_requested_version() {
    let node = Node::new();
    for v in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let conf = NetConf::parse(
            multus_conf(&node, v, json!({"delegates": [bridge(&node, "cbr", "tbr0", "10.99.0.0/24")]}))
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        let r = ops::add(&conf, &inv(&node, "gone"), &PodGone, &Netns, RawExec::default()).unwrap();
        assert_eq!(r["cniVersion"], v);
        assert_eq!(r["interfaces"], json!([{"name": "eth0", "sandbox": node.pod.path()}]));
        assert_eq!(r["ips"][0]["address"], "0.0.0.0/0");
        assert_eq!(r["ips"][0]["gateway"], "0.0.0.0");
        // Every layout parses back as a result of that version (what a 0.3.x runtime does).
        multus::cni::CniResult::from_value(r, v).unwrap();
    }
    assert_eq!(node.pod.link_names(), vec!["lo"], "no delegate ran");
    assert!(!node.path("multus/gone").exists(), "nothing cached");
}

/// `netns::run_in` (what the interface-name check and the default-route edits use) enters the
/// pod namespace on the calling thread and always brings it back, also after an error.
#[test]
fn run_in_enters_the_pod_namespace_and_always_comes_back() {
    use std::os::unix::fs::MetadataExt;
    let ns_of = |p: &str| std::fs::metadata(p).unwrap().ino();
    let here = || ns_of("/proc/thread-self/ns/net");
    let node = Node::new();
    let home = here();
    let pod = node.pod.path();
    assert_ne!(home, ns_of(&pod));
    let (inside, lo) = multus::netns::run_in(&pod, || Ok((here(), multus::netns::link_index("lo")))).unwrap();
    assert_eq!(inside, ns_of(&pod));
    assert!(lo.is_some(), "the pod namespace has lo");
    assert_eq!(here(), home);
    let e = multus::netns::run_in(&pod, || Err::<(), _>(Error::Internal("boom".into()))).unwrap_err();
    assert!(e.to_string().contains("boom"), "{e}");
    assert_eq!(here(), home);
    assert!(multus::netns::run_in("/nonexistent/netns", || Ok(())).is_err());
    assert!(multus::netns::run_in("/proc/self/status", || Ok(())).is_err());
    assert_eq!(here(), home);
}
