//! ADD/CHECK/DEL, subdirectory chains (both forms), rollback, GC and STATUS through the binary.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::support::{Node, invoke, test_plugin_dir};

/// Runs the multus binary as a runtime would, inside the node namespace.
pub fn multus(node: &Node, cmd: &str, conf: &Value, container: &str, ifname: &str) -> (i32, String) {
    let args = format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={container}");
    invoke(node, env!("CARGO_BIN_EXE_multus"), cmd, conf, container, ifname, &args)
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

fn recorded(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Fix of upstream #1449: DEL of a conflist cluster network reaches every plugin with its own
/// keys (Calico's `datastore_type`, `kubernetes.kubeconfig`), and so do plugins from the subdirectory.
#[test]
fn del_reaches_conflist_plugins_with_their_specific_keys() {
    let node = Node::new();
    let record = node.path("record.jsonl");
    let dir = node.path("net.d");
    write(
        &dir.join("10-calico.conflist"),
        &json!({"cniVersion": "1.0.0", "name": "k8s-pod-network", "plugins": [
        {"type": "cni-recorder", "recordFile": record, "ip": "10.7.0.5/24", "datastore_type": "kubernetes",
         "kubernetes": {"kubeconfig": "/etc/cni/net.d/calico-kubeconfig"}}]}),
    );
    write(
        &dir.join("k8s-pod-network/50-extra.conf"),
        &json!({"type": "cni-recorder", "recordFile": record, "vendor_key": 42}),
    );
    let conf = multus_conf(
        &node,
        "1.0.0",
        json!({"clusterNetwork": dir.join("10-calico.conflist"), "binDir": test_plugin_dir()}),
    );
    assert_eq!(multus(&node, "ADD", &conf, "calico1", "eth0").0, 0);
    // The files change after ADD: DEL must still use what ADD used.
    std::fs::remove_dir_all(dir.join("k8s-pod-network")).unwrap();
    std::fs::remove_file(&record).unwrap();
    assert_eq!(multus(&node, "DEL", &conf, "calico1", "eth0").0, 0);
    let calls = recorded(&record);
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["config"]["vendor_key"], 42, "the subdirectory plugin, first in reverse order");
    assert_eq!(calls[1]["config"]["datastore_type"], "kubernetes");
    assert_eq!(calls[1]["config"]["kubernetes"]["kubeconfig"], "/etc/cni/net.d/calico-kubeconfig");
    assert_eq!(calls[1]["config"]["prevResult"]["ips"][0]["address"], "10.7.0.5/24");
}

/// Without the scratch cache (lost, or unreadable) a node without Kubernetes rebuilds the
/// delegates from its static configuration, so DEL still frees every IP; it says so in the log.
#[test]
fn del_without_a_usable_scratch_cache_still_frees_static_delegates() {
    let node = Node::new().with_veth_parent();
    let conf = multus_conf(
        &node,
        "1.0.0",
        json!({"delegates": [bridge(&node, "cbr", "tbr0", "10.99.0.0/24"), macvlan(&node, "mv")]}),
    );
    for (container, damage) in [("lost", None), ("corrupt", Some("[{\"Bytes\": 7}"))] {
        assert_eq!(multus(&node, "ADD", &conf, container, "eth0").0, 0);
        let scratch = node.path("multus").join(container);
        match damage {
            None => std::fs::remove_file(&scratch).unwrap(),
            Some(text) => std::fs::write(&scratch, text).unwrap(),
        }
        assert_eq!(multus(&node, "DEL", &conf, container, "eth0"), (0, String::new()));
        assert!(node.ipam_ips("cbr").is_empty() && node.ipam_ips("mv").is_empty(), "{container}: IPs leaked");
        assert_eq!(node.pod.link_names(), vec!["lo"]);
        assert!(!scratch.exists());
    }
    let log = std::fs::read_to_string(node.path("multus.log")).unwrap();
    assert!(log.contains("[error] no scratch cache for container lost"), "{log}");
    assert!(log.contains("[error] unusable scratch cache for container corrupt"), "{log}");
}

#[test]
fn retry_delete_on_error_keeps_the_scratch_cache_for_the_next_del() {
    let node = Node::new();
    let record = node.path("record.jsonl");
    let failing =
        json!({"cniVersion": "1.0.0", "name": "flaky", "type": "cni-recorder", "recordFile": record, "fail": "DEL"});
    for (retry, kept) in [(true, true), (false, false)] {
        let conf = multus_conf(
            &node,
            "1.0.0",
            json!({"delegates": [failing], "binDir": test_plugin_dir(), "retryDeleteOnError": retry}),
        );
        assert_eq!(multus(&node, "ADD", &conf, "flaky", "eth0").0, 0);
        let (rc, out) = multus(&node, "DEL", &conf, "flaky", "eth0");
        assert_eq!(rc, 1, "DEL errors reach the runtime");
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["code"], 111);
        assert_eq!(node.path("multus/flaky").exists(), kept, "retryDeleteOnError={retry}");
        let _ = std::fs::remove_file(node.path("multus/flaky"));
    }
}

/// The runtime passes the pod's namespace; `defaultNetworks` are not attached in system namespaces.
#[test]
fn default_networks_except_in_system_namespaces_and_check_of_the_cluster_network() {
    let node = Node::new().with_veth_parent();
    let dir = node.path("net.d");
    write(
        &dir.join("10-main.conflist"),
        &json!({"cniVersion": "1.0.0", "name": "main", "plugins": [
        bridge(&node, "main", "tbr0", "10.99.0.0/24"),
        // A literal name: tuning 1.1.1 substitutes IFNAME on ADD but not on CHECK.
        {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.arp_filter": "1"}}]}),
    );
    write(&dir.join("20-extra.conf"), &macvlan(&node, "extra"));
    let conf = multus_conf(
        &node,
        "1.0.0",
        json!({"clusterNetwork": dir.join("10-main.conflist"),
        "defaultNetworks": [dir.join("20-extra.conf")], "systemNamespaces": ["kube-system"]}),
    );
    // K8S_POD_NAMESPACE=default (see `multus`): the default network is attached as net1.
    assert_eq!(multus(&node, "ADD", &conf, "ns1", "eth0").0, 0);
    assert_eq!(node.pod.link_names(), vec!["lo", "eth0", "net1"]);
    assert_eq!(multus(&node, "CHECK", &conf, "ns1", "eth0"), (0, String::new()), "CHECK covers the cluster network");
    node.pod.ip(&["addr", "flush", "dev", "eth0"]);
    let (rc, out) = multus(&node, "CHECK", &conf, "ns1", "eth0");
    assert_eq!(rc, 1, "a broken cluster network fails CHECK: {out}");
    assert_eq!(multus(&node, "DEL", &conf, "ns1", "eth0").0, 0);
    assert_eq!(node.pod.link_names(), vec!["lo"]);

    let mut sys = conf.clone();
    sys["systemNamespaces"] = json!(["default"]);
    assert_eq!(multus(&node, "ADD", &sys, "ns2", "eth0").0, 0);
    assert_eq!(node.pod.link_names(), vec!["lo", "eth0"], "no defaultNetworks in a system namespace");
    assert_eq!(multus(&node, "DEL", &sys, "ns2", "eth0").0, 0);
}

/// ADD waits for the readiness indicator file; DEL does not.
#[test]
fn add_waits_for_the_readiness_indicator_and_del_does_not() {
    let node = Node::new();
    let ready = node.path("ready/default-network-ready");
    let conf = multus_conf(
        &node,
        "1.0.0",
        json!({"delegates": [bridge(&node, "cbr", "tbr0", "10.99.0.0/24")],
        "readinessindicatorfile": ready}),
    );
    let maker = {
        let ready = ready.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(1500));
            std::fs::create_dir_all(ready.parent().unwrap()).unwrap();
            std::fs::write(&ready, "").unwrap();
        })
    };
    let start = std::time::Instant::now();
    let (rc, out) = multus(&node, "ADD", &conf, "ready1", "eth0");
    maker.join().unwrap();
    assert_eq!(rc, 0, "{out}");
    assert!(start.elapsed() >= std::time::Duration::from_millis(1500), "ADD ran before the network was ready");
    std::fs::remove_file(&ready).unwrap();
    let start = std::time::Instant::now();
    assert_eq!(multus(&node, "DEL", &conf, "ready1", "eth0").0, 0);
    assert!(start.elapsed() < std::time::Duration::from_secs(20), "DEL must not wait for readiness");
    assert!(node.ipam_ips("cbr").is_empty());
}

#[test]
fn version_flag_and_version_command() {
    let out = Command::new(env!("CARGO_BIN_EXE_multus")).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout).unwrap().starts_with("multus-cni version:"));
    for flag in ["-version", "-v", "--v=true"] {
        let out = Command::new(env!("CARGO_BIN_EXE_multus")).arg(flag).stdin(Stdio::null()).output().unwrap();
        assert!(out.status.success(), "{flag}");
        assert!(String::from_utf8(out.stdout).unwrap().starts_with("multus-cni version:"), "{flag}");
    }
    let out =
        Command::new(env!("CARGO_BIN_EXE_multus")).env("CNI_COMMAND", "VERSION").stdin(Stdio::null()).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["supportedVersions"], json!(["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]));
}
