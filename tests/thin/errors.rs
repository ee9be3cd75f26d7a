//! Bad input: a CNI error object with the right code on stdout, a non-zero exit, and nothing left
//! in the pod namespace.

use serde_json::{Value, json};

use crate::flows::{bridge, multus, multus_conf};
use crate::support::Node;

fn refused(node: &Node, conf: &Value, ifname: &str, code: u64, needle: &str) {
    let (rc, out) = multus(node, "ADD", conf, "bad", ifname);
    assert_eq!(rc, 1, "{out}");
    assert_eq!(out.lines().count(), 1, "stdout carries only the error object: {out}");
    let e: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("not JSON: {out}"));
    assert_eq!(e["code"], code, "{e}");
    assert!(e["msg"].as_str().unwrap().contains(needle), "{e} lacks {needle:?}");
    assert_eq!(node.pod.link_names(), vec!["lo"]);
}

#[test]
fn malformed_and_incomplete_configs() {
    let node = Node::new();
    let (rc, out) = node.node.enter(|| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_multus"))
            .env("CNI_COMMAND", "ADD")
            .env("CNI_CONTAINERID", "bad")
            .env("CNI_NETNS", node.pod.path())
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/usr/lib/cni")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap())
    });
    assert_eq!(rc, 1);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["code"], 6, "{out}");
    refused(&node, &json!({"cniVersion": "1.0.0", "name": "m", "type": "multus"}), "eth0", 7, "at least one delegate");
    refused(
        &node,
        &json!({"cniVersion": "1.0.0", "type": "multus", "delegates": "bridge"}),
        "eth0",
        6,
        "\"delegates\"",
    );
    refused(
        &node,
        &json!({"cniVersion": "1.0.0", "type": "multus", "delegates": [{"name": "x"}]}),
        "eth0",
        7,
        "missing 'type'",
    );
}

#[test]
fn unknown_delegate_type() {
    let node = Node::new();
    let conf = multus_conf(
        &node,
        "1.0.0",
        json!({"delegates": [bridge(&node, "cbr", "tbr0", "10.99.0.0/24"), {"cniVersion": "1.0.0", "name": "x", "type": "nosuchplugin"}]}),
    );
    refused(&node, &conf, "eth0", 7, "failed to find plugin \"nosuchplugin\"");
    assert!(node.ipam_ips("cbr").is_empty(), "the master was rolled back");
}

#[test]
fn over_long_interface_name() {
    let node = Node::new();
    let conf = multus_conf(&node, "1.0.0", json!({"delegates": [bridge(&node, "cbr", "tbr0", "10.99.0.0/24")]}));
    refused(&node, &conf, "averyveryverylongifname", 4, "interface name is too long");
}

#[test]
fn names_that_would_escape_the_conf_dir() {
    let node = Node::new();
    let dir = node.path("net.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("10-a.conflist"),
        json!({"cniVersion": "1.0.0", "name": "../../etc", "plugins": [bridge(&node, "x", "tbr0", "10.99.0.0/24")]})
            .to_string(),
    )
    .unwrap();
    let conf = multus_conf(&node, "1.0.0", json!({"clusterNetwork": dir.join("10-a.conflist")}));
    refused(&node, &conf, "eth0", 7, "invalid network name \"../../etc\"");

    std::fs::write(
        dir.join("10-a.conflist"),
        json!({"cniVersion": "1.0.0", "name": "a", "plugins": [bridge(&node, "a", "tbr0", "10.99.0.0/24")]})
            .to_string(),
    )
    .unwrap();
    let conf = multus_conf(
        &node,
        "1.0.0",
        json!({"clusterNetwork": dir.join("10-a.conflist"), "auxiliaryCNIChainName": ".."}),
    );
    refused(&node, &conf, "eth0", 7, "invalid auxiliaryCNIChainName");
    let conf = multus_conf(&node, "1.0.0", json!({"clusterNetwork": "a", "auxiliaryCNIChainName": "aux"}));
    refused(&node, &conf, "eth0", 7, "clusterNetwork must be a path");
}

#[test]
fn a_taken_interface_name_is_refused_before_the_delegate_runs() {
    let node = Node::new().with_veth_parent();
    node.pod.ip(&["link", "add", "net1", "type", "veth", "peer", "name", "other"]);
    let conf = multus_conf(
        &node,
        "1.0.0",
        json!({"delegates": [bridge(&node, "cbr", "tbr0", "10.99.0.0/24"), crate::flows::macvlan(&node, "mv")]}),
    );
    let (rc, out) = multus(&node, "ADD", &conf, "taken", "eth0");
    assert_eq!(rc, 1);
    assert!(out.contains("interface name net1 already exists"), "{out}");
    assert!(node.pod.link("eth0").is_none(), "the master was rolled back");
    assert!(node.ipam_ips("cbr").is_empty(), "the master's IP was freed");
    assert!(!node.path("ipam/mv").exists(), "macvlan never ran");
}
