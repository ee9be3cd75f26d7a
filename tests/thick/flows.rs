//! ADD/CHECK/DEL, GC and STATUS through the real shim and daemon, delegating to Debian's reference
//! plugins (and our recorder) in namespaces the tests create; results re-printed in the config's
//! version; error codes passed through; the DEL error policy.

use serde_json::{Value, json};

use crate::harness::{Daemon, bridge, daemon_config, files_in, finish, shim, shim_conf, spawn_shim_env, write};
use crate::support::{CNI_BIN, Node, test_plugin_dir};

fn macvlan(node: &Node, name: &str) -> Value {
    json!({"cniVersion": "1.0.0", "name": name, "type": "macvlan", "master": "hv0", "mode": "bridge",
        "ipam": {"type": "host-local", "dataDir": node.path("ipam"),
                 "ranges": [[{"subnet": "10.98.0.0/24", "rangeStart": "10.98.0.10", "rangeEnd": "10.98.0.20"}]]}})
}

fn assert_clean(node: &Node, container: &str, networks: &[&str]) {
    assert_eq!(node.pod.link_names(), vec!["lo"], "the pod namespace must be empty again");
    for net in networks {
        assert!(node.ipam_ips(net).is_empty(), "{net} leaked an IP: {:?}", node.ipam_ips(net));
    }
    assert!(!node.path("multus").join(container).exists(), "scratch cache of {container} left");
    assert_eq!(files_in(&node.path("multus/results")), Vec::<String>::new(), "libcni result cache left");
}

#[test]
fn cluster_network_and_default_network_through_the_shim() {
    let node = Node::new().with_veth_parent();
    let daemon = Daemon::start(&node, &daemon_config(&node, json!({})));
    let dir = node.path("net.d-src");
    write(
        &dir.join("10-cbr.conflist"),
        &json!({"cniVersion": "1.0.0", "name": "cbr", "plugins": [bridge(&node, "cbr", "tbr0", "10.99.0.0/24")]}),
    );
    write(&dir.join("20-mv.conf"), &macvlan(&node, "mv"));
    let extra = json!({"clusterNetwork": dir.join("10-cbr.conflist"), "defaultNetworks": [dir.join("20-mv.conf")]});

    let conf = shim_conf(&node, "1.0.0", extra.clone());
    let add = shim(&node, "ADD", &conf, "pod1");
    add.ok();
    assert_eq!(add.stdout.lines().count(), 1, "stdout carries only the result: {add:?}");
    let r = add.json();
    assert_eq!(r["cniVersion"], "1.0.0");
    assert_eq!(r["ips"], json!([{"interface": 2, "address": "10.99.0.2/24", "gateway": "10.99.0.1"}]));
    assert_eq!(
        (r["interfaces"][2]["name"].as_str(), r["interfaces"][2]["sandbox"].as_str()),
        (Some("eth0"), Some(node.pod.path().as_str()))
    );
    assert_eq!(node.pod.addrs("eth0"), vec!["10.99.0.2/24"]);
    assert_eq!(node.pod.addrs("net1"), vec!["10.98.0.10/24"]);
    assert_eq!(
        node.pod.routes(),
        vec!["default via 10.99.0.1 dev eth0", "10.98.0.0/24 dev net1", "10.99.0.0/24 dev eth0"]
    );
    assert!(node.node.link("tbr0").is_some(), "the bridge is where the daemon runs");

    assert_eq!(shim(&node, "CHECK", &conf, "pod1").ok().stdout, "");
    node.pod.ip(&["addr", "flush", "dev", "eth0"]);
    let broken = shim(&node, "CHECK", &conf, "pod1");
    assert_eq!(broken.code, 1, "{broken:?}");
    let e = broken.json();
    assert!(e["msg"].as_str().unwrap().starts_with("CmdCheck (shim): ContainerID:\"pod1\""), "{e}");
    assert!(e["msg"].as_str().unwrap().contains("10.99.0.2"), "{e}");

    assert_eq!(shim(&node, "DEL", &conf, "pod1").ok().stdout, "");
    assert_clean(&node, "pod1", &["cbr", "mv"]);

    // The same through a 0.3.1 config: the daemon sends 1.1.0, the shim prints 0.3.1.
    let conf = shim_conf(&node, "0.3.1", extra);
    let r = shim(&node, "ADD", &conf, "pod2").ok().json();
    assert_eq!(r["cniVersion"], "0.3.1");
    let address = r["ips"][0]["address"].as_str().unwrap();
    assert_eq!(r["ips"], json!([{"version": "4", "interface": 2, "address": address, "gateway": "10.99.0.1"}]));
    assert_eq!(node.pod.addrs("eth0"), vec![address]);
    assert_eq!(node.pod.link_names(), vec!["lo", "eth0", "net1"]);
    shim(&node, "DEL", &conf, "pod2").ok();
    assert_clean(&node, "pod2", &["cbr", "mv"]);
    // A second DEL (runtimes retry) is harmless.
    shim(&node, "DEL", &conf, "pod2").ok();
    drop(daemon);
}

#[test]
fn delegate_errors_keep_their_code() {
    let node = Node::new();
    let _daemon = Daemon::start(&node, &daemon_config(&node, json!({})));
    let conf = shim_conf(
        &node,
        "1.0.0",
        json!({"delegates": [bridge(&node, "cbr", "tbr0", "10.99.0.0/24"), {"cniVersion": "1.0.0", "name": "x", "type": "nosuchplugin"}]}),
    );
    let add = shim(&node, "ADD", &conf, "bad1");
    assert_eq!(add.code, 1, "{add:?}");
    assert_eq!(add.stdout.lines().count(), 1);
    let e = add.json();
    assert_eq!(e["code"], 7, "{e}");
    let msg = e["msg"].as_str().unwrap();
    assert!(msg.starts_with("CmdAdd (shim): ContainerID:\"bad1\" Netns:"), "{msg}");
    assert!(msg.contains("ERRORED: error configuring pod [default/bad1] networking"), "{msg}");
    assert!(msg.contains("failed to find plugin \"nosuchplugin\""), "{msg}");
    assert_eq!(node.pod.link_names(), vec!["lo"], "the master was rolled back");
    assert!(node.ipam_ips("cbr").is_empty());
}

/// Upstream's shim swallows every DEL error (PR #1084); `shimReturnDelErrors` returns them.
#[test]
fn del_errors_are_swallowed_unless_asked_for() {
    let node = Node::new();
    let _daemon = Daemon::start(&node, &daemon_config(&node, json!({})));
    let record = node.path("record.jsonl");
    let flaky =
        json!({"cniVersion": "1.0.0", "name": "flaky", "type": "cni-recorder", "recordFile": record, "fail": "DEL"});
    let base = json!({"delegates": [flaky], "binDir": test_plugin_dir(), "retryDeleteOnError": true});
    let conf = shim_conf(&node, "1.0.0", base.clone());
    shim(&node, "ADD", &conf, "flaky").ok();
    let del = shim(&node, "DEL", &conf, "flaky");
    assert_eq!((del.code, del.stdout.as_str()), (0, ""), "{del:?}");
    assert!(del.stderr.contains("recorder told to fail DEL"), "the failure is logged: {del:?}");

    let mut strict = base;
    strict["shimReturnDelErrors"] = json!(true);
    let del = shim(&node, "DEL", &shim_conf(&node, "1.0.0", strict), "flaky");
    assert_eq!(del.code, 1, "{del:?}");
    let e = del.json();
    assert_eq!(e["code"], 111, "the delegate's own code: {e}");
    assert!(e["msg"].as_str().unwrap().starts_with("CmdDel (shim): "), "{e}");
    let dels = std::fs::read_to_string(&record).unwrap().lines().filter(|l| l.contains("\"command\":\"DEL\"")).count();
    assert_eq!(dels, 2, "both DELs reached the delegate");
}

/// Upstream 4.2.1 refused every GC and STATUS that came through the shim (§9.1).
#[test]
fn gc_and_status_reach_the_cluster_network() {
    let node = Node::new();
    let _daemon = Daemon::start(&node, &daemon_config(&node, json!({})));
    let record = node.path("record.jsonl");
    let net = json!({"cniVersion": "1.1.0", "name": "recnet", "type": "cni-recorder", "recordFile": record, "ip": "10.5.0.5/24"});
    let file = node.path("net.d-src/10-rec.conf");
    write(&file, &net);
    let conf = |extra: Value| {
        let mut c = shim_conf(&node, "1.1.0", json!({"clusterNetwork": file, "binDir": test_plugin_dir()}));
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    for c in ["a", "b"] {
        let r = shim(&node, "ADD", &conf(json!({})), c).ok().json();
        assert_eq!(r["ips"][0]["address"], "10.5.0.5/24");
    }
    std::fs::remove_file(&record).unwrap();
    let valid = json!({"cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}]});
    assert_eq!(shim(&node, "GC", &conf(valid), "").ok().stdout, "");
    let calls: Vec<Value> =
        std::fs::read_to_string(&record).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let seen: Vec<(&str, &str)> =
        calls.iter().map(|c| (c["command"].as_str().unwrap(), c["containerID"].as_str().unwrap())).collect();
    assert_eq!(seen, [("DEL", "b"), ("GC", "")]);

    shim(&node, "STATUS", &conf(json!({})), "").ok();
    let mut down = net.clone();
    down["status"] = json!("unavailable");
    write(&file, &down);
    let status = shim(&node, "STATUS", &conf(json!({})), "");
    assert_eq!(status.code, 1);
    let e = status.json();
    assert_eq!((e["code"].as_u64(), e["details"].as_str()), (Some(50), Some("told so by its config")), "{e}");
    // The shim's own skel still refuses GC for a config older than 1.1.0.
    let old = shim(&node, "GC", &shim_conf(&node, "1.0.0", json!({"clusterNetwork": file})), "");
    assert_eq!(old.json()["msg"], "config version does not allow GC");
    shim(&node, "DEL", &conf(json!({})), "a").ok();
}

/// The runtime's CNI_PATH reaches the daemon and is searched (upstream used only the daemon's, §9.11).
#[test]
fn the_request_cni_path_is_searched() {
    let node = Node::new();
    let _daemon = Daemon::start(&node, &daemon_config(&node, json!({})));
    let record = node.path("record.jsonl");
    let conf = shim_conf(
        &node,
        "1.0.0",
        json!({"delegates": [{"cniVersion": "1.0.0", "name": "rec", "type": "cni-recorder", "recordFile": record}]}),
    );
    let plugins = test_plugin_dir();
    let path = format!("{CNI_BIN}:{}", plugins.display());
    finish(spawn_shim_env(&node, "ADD", &conf, "path1", "eth0", &[("CNI_PATH", &path)])).ok();
    let call: Value = serde_json::from_str(std::fs::read_to_string(&record).unwrap().lines().next().unwrap()).unwrap();
    assert!(call["path"].as_str().unwrap().ends_with(&path), "{call}");
    assert!(
        call["args"].as_str().unwrap().contains("K8S_POD_INFRA_CONTAINER_ID=path1"),
        "the runtime's CNI_ARGS reach the delegate: {call}"
    );
    finish(spawn_shim_env(&node, "DEL", &conf, "path1", "eth0", &[("CNI_PATH", &path)])).ok();
    assert_eq!(std::fs::read_to_string(&record).unwrap().lines().count(), 2);
}

/// The daemon runs without glibc's per-thread malloc caches (its peak memory over a burst; see
/// `daemon::MALLOC_TUNABLES`): it re-executes itself with `GLIBC_TUNABLES` under the same pid, and
/// its delegates do not inherit the setting.
#[test]
fn the_daemon_tunes_its_own_malloc_and_not_its_delegates() {
    let node = Node::new();
    let daemon = Daemon::start(&node, &daemon_config(&node, json!({})));
    // The environment the running image was executed with (the re-exec's, with the tunables).
    let environ = std::fs::read(format!("/proc/{}/environ", daemon.pid())).unwrap();
    let vars: Vec<String> = environ.split(|b| *b == 0).map(|v| String::from_utf8_lossy(v).into_owned()).collect();
    let tunables = format!("GLIBC_TUNABLES={}", multus::thick::daemon::MALLOC_TUNABLES);
    assert!(vars.contains(&tunables), "the daemon runs with {tunables}: {vars:?}");
    let record = node.path("record.jsonl");
    let net = json!({"cniVersion": "1.0.0", "name": "recnet", "type": "cni-recorder", "recordFile": record, "ip": "10.5.0.6/24"});
    let file = node.path("net.d-src/10-rec.conf");
    write(&file, &net);
    let conf = shim_conf(&node, "1.0.0", json!({"clusterNetwork": file, "binDir": test_plugin_dir()}));
    shim(&node, "ADD", &conf, "t").ok();
    shim(&node, "DEL", &conf, "t").ok();
    let calls: Vec<Value> =
        std::fs::read_to_string(&record).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls.iter().all(|c| c["glibcTunables"].is_null()), "a delegate inherited the tunables: {calls:?}");
}
