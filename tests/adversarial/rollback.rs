//! A refused ADD must not destroy what it refused to touch, and a failed ADD must undo all it
//! did. Pod A has `eth0` in netns P; an ADD of pod B into P with `eth0` is refused ("already
//! exists") and its rollback used to DEL `eth0` — pod A's interface — leaving A's IP reserved.
//! A chain whose second plugin fails must be DELed too (a rollback that skipped the failing
//! delegate would leak the chain's interface and IP).

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::hostile::{bounded, conf_with};
use crate::support::Node;
use crate::support::thick::{Daemon, bridge, daemon_config, shim_bin, shim_conf, spawn_cni};

fn call(node: &Node, bin: &str, cmd: &str, conf: &Value, container: &str) -> crate::support::thick::Outcome {
    let child = node.node.enter(|| spawn_cni(Path::new(bin), node, cmd, conf, container, "eth0", &[]));
    bounded(child, Duration::from_secs(60)).0
}

/// Pod A then pod B into the same namespace; B is refused; A keeps eth0 and its IP; both DELs
/// free every IP.
fn second_pod_into_the_same_namespace(node: &Node, bin: &str, conf: &Value) {
    let a = call(node, bin, "ADD", conf, "poda");
    assert_eq!(a.code, 0, "{a:?}");
    assert_eq!(node.pod.addrs("eth0"), vec!["10.99.0.2/24"]);
    let b = call(node, bin, "ADD", conf, "podb");
    assert_eq!(b.code, 1, "{b:?}");
    assert!(b.stdout.contains("already exists"), "{b:?}");
    assert_eq!(node.pod.addrs("eth0"), vec!["10.99.0.2/24"], "pod A lost eth0 to pod B's rollback");
    assert_eq!(node.ipam_ips("cbr"), vec!["10.99.0.2"], "exactly pod A's IP is held");
    assert!(!node.path("multus").join("podb").exists(), "the failed ADD left its scratch file");
    assert_eq!(call(node, bin, "DEL", conf, "podb").code, 0);
    assert_eq!(node.pod.addrs("eth0"), vec!["10.99.0.2/24"], "pod B's DEL removed pod A's interface");
    assert_eq!(call(node, bin, "DEL", conf, "poda").code, 0);
    assert_eq!(node.pod.link_names(), vec!["lo"]);
    assert_eq!(node.ipam_ips("cbr"), Vec::<String>::new(), "an IP leaked");
}

#[test]
fn thin_refused_add_keeps_the_other_pods_interface() {
    let node = Node::new();
    let conf = conf_with(&node, vec![bridge(&node, "cbr", "tbr0", "10.99.0.0/24")], json!({}));
    second_pod_into_the_same_namespace(&node, env!("CARGO_BIN_EXE_multus"), &conf);
}

#[test]
fn thick_refused_add_keeps_the_other_pods_interface() {
    let node = Node::new();
    let _daemon = Daemon::start(&node, &daemon_config(&node, json!({})));
    let conf = crate::hostile::bridge_shim_conf(&node);
    second_pod_into_the_same_namespace(&node, shim_bin(), &conf);
}

/// The master succeeds; the second delegate is a chain whose bridge adds `net1` with an IP and
/// whose next plugin fails. Both delegates must be undone: no interface, no IP, no scratch.
fn failing_chain_is_undone(node: &Node, bin: &str, conf: &Value) {
    let out = call(node, bin, "ADD", conf, "podc");
    assert_eq!(out.code, 1, "{out:?}");
    let e: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(e["code"], 11, "the failing plugin's own code: {e}");
    assert_eq!(node.pod.link_names(), vec!["lo"], "an interface leaked");
    for net in ["cbr", "chain"] {
        assert_eq!(node.ipam_ips(net), Vec::<String>::new(), "{net} leaked an IP");
    }
    assert!(!node.path("multus").join("podc").exists(), "the failed ADD left its scratch file");
}

fn chain(node: &Node) -> Value {
    let mut br = bridge(node, "chain", "tbr1", "10.98.0.0/24");
    br.as_object_mut().unwrap().remove("cniVersion");
    br.as_object_mut().unwrap().remove("name");
    json!({"cniVersion": "1.0.0", "name": "chain", "plugins": [br, {"type": "fail"}]})
}

#[test]
fn thin_failing_chain_is_undone_whole() {
    let node = Node::new();
    // The bridge of each delegate made its IPAM directory: the leak check cannot pass vacuously.
    let conf = conf_with(&node, vec![bridge(&node, "cbr", "tbr0", "10.99.0.0/24"), chain(&node)], json!({}));
    failing_chain_is_undone(&node, env!("CARGO_BIN_EXE_multus"), &conf);
    for net in ["cbr", "chain"] {
        assert!(node.path("ipam").join(net).is_dir(), "{net} never allocated: the test proves nothing");
    }
}

#[test]
fn thick_failing_chain_is_undone_whole() {
    let node = Node::new();
    let _daemon = Daemon::start(&node, &daemon_config(&node, json!({})));
    let bin_dir = crate::hostile::plugins(&node);
    let conf = shim_conf(
        &node,
        "1.0.0",
        json!({"binDir": bin_dir, "delegates": [bridge(&node, "cbr", "tbr0", "10.99.0.0/24"), chain(&node)]}),
    );
    failing_chain_is_undone(&node, shim_bin(), &conf);
    for net in ["cbr", "chain"] {
        assert!(node.path("ipam").join(net).is_dir(), "{net} never allocated: the test proves nothing");
    }
}
