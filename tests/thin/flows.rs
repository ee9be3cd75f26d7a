//! ADD/CHECK/DEL, subdirectory chains (both forms), rollback, GC and STATUS through the binary.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::support::{CNI_BIN, Node, test_plugin_dir};

/// Runs the multus binary as a runtime would, inside the node namespace.
pub fn multus(node: &Node, cmd: &str, conf: &Value, container: &str, ifname: &str) -> (i32, String) {
    node.node.enter(|| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_multus"))
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", container)
            .env("CNI_NETNS", node.pod.path())
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", CNI_BIN)
            .env("CNI_ARGS", format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={container}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(conf.to_string().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !stderr.is_empty() {
            eprintln!("multus {cmd} stderr: {stderr}");
        }
        (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap())
    })
}

/// binDir for delegates: our own binaries (passthru) and the test plugins.
pub fn bin_dir() -> String {
    Path::new(env!("CARGO_BIN_EXE_passthru")).parent().unwrap().display().to_string()
}

pub fn multus_conf(node: &Node, version: &str, extra: Value) -> Value {
    let mut c = json!({"cniVersion": version, "name": "multus-cni-network", "type": "multus",
        "cniDir": node.path("multus"), "binDir": bin_dir(), "logLevel": "debug", "logFile": node.path("multus.log"),
        "logToStderr": false});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

pub fn bridge(node: &Node, name: &str, br: &str, subnet: &str) -> Value {
    json!({"cniVersion": "1.0.0", "name": name, "type": "bridge", "bridge": br, "isGateway": true,
        "ipam": {"type": "host-local", "dataDir": node.path("ipam"), "ranges": [[{"subnet": subnet}]],
                 "routes": [{"dst": "0.0.0.0/0"}]}})
}

pub fn macvlan(node: &Node, name: &str) -> Value {
    json!({"cniVersion": "1.0.0", "name": name, "type": "macvlan", "master": "hv0", "mode": "bridge",
        "ipam": {"type": "host-local", "dataDir": node.path("ipam"),
                 "ranges": [[{"subnet": "10.98.0.0/24", "rangeStart": "10.98.0.10", "rangeEnd": "10.98.0.20", "gateway": "10.98.0.1"}]]}})
}

fn write(path: &Path, v: &Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

fn only_lo(node: &Node) {
    assert_eq!(node.pod.link_names(), vec!["lo"], "the pod namespace must be empty again");
}

#[test]
fn bridge_master_and_macvlan_secondary() {
    let node = Node::new().with_veth_parent();
    let conf = multus_conf(
        &node,
        "1.0.0",
        json!({"delegates": [bridge(&node, "cbr", "tbr0", "10.99.0.0/24"), macvlan(&node, "mv")]}),
    );
    let (rc, out) = multus(&node, "ADD", &conf, "pod1", "eth0");
    assert_eq!(rc, 0, "{out}");
    let result: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(result["cniVersion"], "1.0.0");
    assert_eq!(
        result["ips"],
        json!([{"interface": 2, "address": "10.99.0.2/24", "gateway": "10.99.0.1"}]),
        "the master's result"
    );
    assert_eq!(node.pod.addrs("eth0"), vec!["10.99.0.2/24"]);
    assert_eq!(node.pod.addrs("net1"), vec!["10.98.0.10/24"]);
    assert_eq!(node.ipam_ips("cbr"), vec!["10.99.0.2"]);
    assert_eq!(node.ipam_ips("mv"), vec!["10.98.0.10"]);
    let scratch = node.path("multus").join("pod1");
    let saved: Value = serde_json::from_slice(&std::fs::read(&scratch).unwrap()).unwrap();
    assert_eq!(
        saved.as_array().unwrap().iter().map(|d| d["Name"].as_str().unwrap()).collect::<Vec<_>>(),
        ["cbr", "mv"]
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&scratch).unwrap().permissions().mode() & 0o777, 0o600);

    assert_eq!(multus(&node, "CHECK", &conf, "pod1", "eth0"), (0, String::new()));
    // CHECK reaches the secondary network too: break it and CHECK must fail.
    node.pod.ip(&["addr", "flush", "dev", "net1"]);
    let (rc, out) = multus(&node, "CHECK", &conf, "pod1", "eth0");
    assert_eq!(rc, 1);
    assert!(out.contains("mv") && out.contains("10.98.0.10"), "{out}");

    assert_eq!(multus(&node, "DEL", &conf, "pod1", "eth0"), (0, String::new()));
    only_lo(&node);
    assert!(node.ipam_ips("cbr").is_empty() && node.ipam_ips("mv").is_empty(), "host-local freed both IPs");
    assert!(!scratch.exists());
    assert_eq!(std::fs::read_dir(node.path("multus/results")).unwrap().count(), 0, "no libcni cache left");
    // A second DEL (the runtime retries) is harmless.
    assert_eq!(multus(&node, "DEL", &conf, "pod1", "eth0").0, 0);
}

#[test]
fn result_comes_in_the_multus_config_version() {
    let node = Node::new();
    let conf = multus_conf(&node, "0.3.1", json!({"delegates": [bridge(&node, "cbr", "tbr0", "10.99.0.0/24")]}));
    let (rc, out) = multus(&node, "ADD", &conf, "pod2", "eth0");
    assert_eq!(rc, 0, "{out}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["cniVersion"], "0.3.1");
    assert_eq!(r["ips"][0]["version"], "4");
    assert_eq!(multus(&node, "DEL", &conf, "pod2", "eth0").0, 0);
    only_lo(&node);
}

#[test]
fn subdirectory_chain_of_the_cluster_network() {
    let node = Node::new();
    let dir = node.path("net.d");
    let list = json!({"cniVersion": "1.0.0", "name": "kindnet", "plugins": [bridge(&node, "kindnet", "tbr0", "10.99.0.0/24")]});
    write(&dir.join("10-kindnet.conflist"), &list);
    write(
        &dir.join("kindnet/sysctltwiddle.conf"),
        &json!({"name": "sysctltwiddle", "type": "tuning", "sysctl": {"net.ipv4.conf.IFNAME.arp_filter": "1"}}),
    );
    let conf = multus_conf(&node, "1.0.0", json!({"clusterNetwork": dir.join("10-kindnet.conflist")}));
    let (rc, out) = multus(&node, "ADD", &conf, "pod3", "eth0");
    assert_eq!(rc, 0, "{out}");
    assert_eq!(node.pod.read_proc("/proc/sys/net/ipv4/conf/eth0/arp_filter"), "1");
    // The scratch cache keeps the whole chain, so DEL undoes the tuning plugin too.
    let saved: Value = serde_json::from_slice(&std::fs::read(node.path("multus").join("pod3")).unwrap()).unwrap();
    assert_eq!(saved[0]["ConfList"]["plugins"].as_array().unwrap().len(), 2);
    assert_eq!(multus(&node, "DEL", &conf, "pod3", "eth0").0, 0);
    only_lo(&node);
    assert!(node.ipam_ips("kindnet").is_empty());
}

#[test]
fn auxiliary_chain_runs_last_and_only_when_its_directory_has_plugins() {
    let node = Node::new();
    let dir = node.path("net.d");
    write(
        &dir.join("10-kindnet.conflist"),
        &json!({"cniVersion": "1.0.0", "name": "kindnet", "plugins": [bridge(&node, "kindnet", "tbr0", "10.99.0.0/24")]}),
    );
    let conf = multus_conf(
        &node,
        "1.0.0",
        json!({"clusterNetwork": dir.join("10-kindnet.conflist"), "auxiliaryCNIChainName": "vendor-cni-chain"}),
    );
    // No subdirectory yet: no auxiliary delegate.
    assert_eq!(multus(&node, "ADD", &conf, "pod4", "eth0").0, 0);
    let saved: Value = serde_json::from_slice(&std::fs::read(node.path("multus").join("pod4")).unwrap()).unwrap();
    assert_eq!(saved.as_array().unwrap().len(), 1);
    assert_eq!(node.pod.read_proc("/proc/sys/net/ipv4/conf/eth0/arp_filter"), "0");
    assert_eq!(multus(&node, "DEL", &conf, "pod4", "eth0").0, 0);

    write(
        &dir.join("vendor-cni-chain/sysctltwiddle.conf"),
        &json!({"name": "sysctltwiddle", "type": "tuning", "sysctl": {"net.ipv4.conf.eth0.arp_filter": "1"}}),
    );
    let (rc, out) = multus(&node, "ADD", &conf, "pod5", "eth0");
    assert_eq!(rc, 0, "{out}");
    assert_eq!(node.pod.read_proc("/proc/sys/net/ipv4/conf/eth0/arp_filter"), "1");
    let saved: Value = serde_json::from_slice(&std::fs::read(node.path("multus").join("pod5")).unwrap()).unwrap();
    assert_eq!(saved[1]["Name"], "vendor-cni-chain");
    assert_eq!(saved[1]["ConfList"]["plugins"][0]["type"], "passthru");
    assert_eq!(node.pod.link_names(), vec!["lo", "eth0"], "passthru creates no interface");
    assert_eq!(multus(&node, "DEL", &conf, "pod5", "eth0").0, 0);
    only_lo(&node);
}

#[test]
fn a_delegate_failing_half_way_leaves_nothing_behind() {
    let node = Node::new().with_veth_parent();
    let ipvlan = json!({"cniVersion": "1.0.0", "name": "ipv", "type": "ipvlan", "master": "hv0",
        "ipam": {"type": "host-local", "dataDir": node.path("ipam"), "ranges": [[{"subnet": "10.97.0.0/24"}]]}});
    let conf = multus_conf(
        &node,
        "1.0.0",
        json!({"delegates": [bridge(&node, "cbr", "tbr0", "10.99.0.0/24"), macvlan(&node, "mv"), ipvlan]}),
    );
    let (rc, out) = multus(&node, "ADD", &conf, "pod6", "eth0");
    assert_eq!(rc, 1);
    let e: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(e["code"], 999, "the delegate's own code: {e}");
    let msg = e["msg"].as_str().unwrap();
    assert!(
        msg.contains("error adding container to network \"ipv\"") && msg.contains("failed to create ipvlan"),
        "{msg}"
    );
    only_lo(&node);
    for net in ["cbr", "mv", "ipv"] {
        assert!(node.ipam_ips(net).is_empty(), "{net} leaked an IP");
    }
    // The runtime's DEL after the failed ADD is clean too.
    assert_eq!(multus(&node, "DEL", &conf, "pod6", "eth0").0, 0);
}

#[test]
fn gc_and_status_reach_the_cluster_network() {
    let node = Node::new();
    let record = node.path("record.jsonl");
    let plugin_dir = test_plugin_dir();
    let net = json!({"cniVersion": "1.1.0", "name": "recnet", "type": "cni-recorder", "recordFile": record, "ip": "10.5.0.5/24"});
    let file = node.path("net.d/10-rec.conf");
    write(&file, &net);
    let conf = |extra: Value| {
        let mut c = multus_conf(&node, "1.1.0", json!({"clusterNetwork": file, "binDir": plugin_dir}));
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    for c in ["a", "b"] {
        assert_eq!(multus(&node, "ADD", &conf(json!({})), c, "eth0").0, 0);
    }
    std::fs::remove_file(&record).unwrap();
    // The runtime says only "a" is valid: "b" is deleted, then GC reaches the plugin.
    let valid = json!({"cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}]});
    assert_eq!(multus(&node, "GC", &conf(valid), "", "").0, 0);
    let calls: Vec<Value> =
        std::fs::read_to_string(&record).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let seen: Vec<(String, String)> = calls
        .iter()
        .map(|c| (c["command"].as_str().unwrap().into(), c["containerID"].as_str().unwrap().into()))
        .collect();
    assert_eq!(seen, [("DEL".to_string(), "b".to_string()), ("GC".to_string(), String::new())]);
    assert_eq!(calls[1]["config"]["cni.dev/valid-attachments"], json!([{"containerID": "a", "ifname": "eth0"}]));

    assert_eq!(multus(&node, "STATUS", &conf(json!({})), "", "").0, 0);
    let mut down = net.clone();
    down["status"] = json!("unavailable");
    write(&file, &down);
    let (rc, out) = multus(&node, "STATUS", &conf(json!({})), "", "");
    assert_eq!(rc, 1);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["code"], 50);
}
