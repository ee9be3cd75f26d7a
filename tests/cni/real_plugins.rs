//! Our library as the runtime, Debian's reference plugins (bridge, host-local, tuning, portmap,
//! macvlan, ipvlan) as the plugins, in a fake node namespace and a pod namespace per test.
//! Assertions read the namespaces (links, addresses, routes, sysctls, iptables) and host-local's
//! state, not just return codes.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use multus::cni::cache;
use multus::cni::{CniConfig, Error, NetworkConfigList, PluginConfig, RawExec, RuntimeConf};
use serde_json::{Value, json};

use crate::support::{CNI_BIN, Node, test_plugin_dir};

fn runtime(node: &Node) -> CniConfig<RawExec> {
    CniConfig::new(vec![CNI_BIN.into(), test_plugin_dir()], node.path("cache"), RawExec::default())
}

fn rt(node: &Node, container: &str, ifname: &str) -> RuntimeConf {
    RuntimeConf {
        container_id: container.into(),
        netns: node.pod.path(),
        ifname: ifname.into(),
        args: vec![("IgnoreUnknown".into(), "1".into())],
        ..Default::default()
    }
}

fn bridge(node: &Node, bridge: &str, subnet: &str) -> Value {
    json!({"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false,
        "ipam": {"type": "host-local", "dataDir": node.path("ipam"), "ranges": [[{"subnet": subnet}]],
                 "routes": [{"dst": "0.0.0.0/0"}]}})
}

fn bridge_single_config(version: &str) {
    let node = Node::new();
    let cni = runtime(&node);
    let mut doc = bridge(&node, "tbr0", "10.99.0.0/24");
    doc["cniVersion"] = json!(version);
    doc["name"] = json!("tnet");
    let conf = PluginConfig::from_value(doc).unwrap();
    let rt = rt(&node, "c1", "eth0");

    let result = node.node.enter(|| cni.add_network(&conf, &rt)).unwrap();
    assert_eq!(result.cni_version, version);
    assert_eq!(result.ips.len(), 1);
    assert_eq!(result.ips[0].address.to_string(), "10.99.0.2/24");
    assert_eq!(result.ips[0].gateway.unwrap().to_string(), "10.99.0.1");
    assert_eq!(node.pod.addrs("eth0"), vec!["10.99.0.2/24"]);
    assert!(node.pod.routes().contains(&"default via 10.99.0.1 dev eth0".to_string()), "{:?}", node.pod.routes());
    assert_eq!(node.node.addrs("tbr0"), vec!["10.99.0.1/24"]);
    assert_eq!(node.ipam_ips("tnet"), vec!["10.99.0.2"]);
    let cache_file = cache::path(&node.path("cache"), "tnet", "c1", "eth0");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cache_file), 0o600, "cache file mode");
    assert_eq!(mode(cache_file.parent().unwrap()), 0o700, "cache dir mode");
    let cached: Value = serde_json::from_slice(&std::fs::read(&cache_file).unwrap()).unwrap();
    assert_eq!(cached["kind"], "cniCacheV1");
    assert_eq!(cached["result"]["cniVersion"], version);
    assert_eq!(cached["cniArgs"], json!([["IgnoreUnknown", "1"]]));

    let check = node.node.enter(|| cni.check_network(&conf, &rt));
    if version == "0.3.1" {
        let e = check.unwrap_err();
        assert!(e.to_string().contains("does not support the CHECK command"), "{e}");
        assert_eq!(e.code(), 1);
    } else {
        check.unwrap();
        // CHECK really uses the cached result: a doctored one makes the bridge plugin object.
        let original = std::fs::read(&cache_file).unwrap();
        let doctored = String::from_utf8(original.clone()).unwrap().replace("10.99.0.2/24", "10.99.0.77/24");
        std::fs::write(&cache_file, doctored).unwrap();
        let e = node.node.enter(|| cni.check_network(&conf, &rt)).unwrap_err();
        assert!(e.to_string().contains("10.99.0.77"), "{e}");
        std::fs::write(&cache_file, original).unwrap();
    }

    node.node.enter(|| cni.del_network(&conf, &rt)).unwrap();
    assert!(node.pod.link("eth0").is_none());
    assert!(node.ipam_ips("tnet").is_empty());
    assert!(!cache_file.exists());
    // DEL is idempotent.
    node.node.enter(|| cni.del_network(&conf, &rt)).unwrap();
}

#[test]
fn bridge_host_local_0_3_1() {
    bridge_single_config("0.3.1");
}

#[test]
fn bridge_host_local_0_4_0() {
    bridge_single_config("0.4.0");
}

#[test]
fn bridge_host_local_1_0_0() {
    bridge_single_config("1.0.0");
}

fn iptables_nat(node: &Node) -> String {
    node.node.enter(|| crate::support::run("iptables", &["-t", "nat", "-S"]))
}

#[test]
fn chain_bridge_tuning_portmap_forwards_tcp() {
    let node = Node::new();
    let cni = runtime(&node);
    let mut b = bridge(&node, "tbr1", "10.95.0.0/24");
    b["ipMasq"] = json!(true);
    let list = NetworkConfigList::from_value(json!({"cniVersion": "1.0.0", "name": "tchain", "plugins": [
        b,
        {"type": "tuning", "mtu": 1400, "sysctl": {"net.ipv4.conf.eth0.arp_filter": "1"}},
        {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
    ]}))
    .unwrap();
    let mut rt = rt(&node, "k1", "eth0");
    rt.capability_args
        .insert("portMappings".into(), json!([{"hostPort": 18080, "containerPort": 8080, "protocol": "tcp"}]));

    let result = node.node.enter(|| cni.add_network_list(&list, &rt)).unwrap();
    assert_eq!(result.ips[0].address.to_string(), "10.95.0.2/24");
    let eth0 = node.pod.link("eth0").expect("eth0 in the pod");
    assert_eq!(eth0["mtu"], 1400);
    assert_eq!(node.pod.read_proc("/proc/sys/net/ipv4/conf/eth0/arp_filter"), "1");
    assert!(iptables_nat(&node).contains("--dport 18080"), "{}", iptables_nat(&node));

    // A server in the pod, a client on the node talking to the host port.
    let listener = node.pod.enter(|| TcpListener::bind("10.95.0.2:8080")).unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        s.write_all(format!("hello {}", peer.ip()).as_bytes()).unwrap();
    });
    let reply = node.node.enter(|| {
        let mut c = TcpStream::connect("10.95.0.1:18080").unwrap();
        let mut buf = String::new();
        c.read_to_string(&mut buf).unwrap();
        buf
    });
    server.join().unwrap();
    assert!(reply.starts_with("hello "), "{reply}");

    node.node.enter(|| cni.del_network_list(&list, &rt)).unwrap();
    assert!(node.pod.link("eth0").is_none());
    assert!(node.ipam_ips("tchain").is_empty());
    let nat = iptables_nat(&node);
    assert!(!nat.contains("--dport 18080") && !nat.contains("CNI-DN-"), "{nat}");
    assert!(!cache::path(&node.path("cache"), "tchain", "k1", "eth0").exists());
}

#[test]
fn macvlan_on_a_veth_parent() {
    let node = Node::new().with_veth_parent();
    let cni = runtime(&node);
    let list = NetworkConfigList::from_value(json!({"cniVersion": "1.0.0", "name": "tmv", "plugins": [
        {"type": "macvlan", "master": "hv0", "mode": "bridge", "mtu": 1400,
         "ipam": {"type": "host-local", "dataDir": node.path("ipam"),
                  "ranges": [[{"subnet": "10.98.0.0/24", "rangeStart": "10.98.0.10", "rangeEnd": "10.98.0.20",
                               "gateway": "10.98.0.1"}]]}}
    ]}))
    .unwrap();
    let rt = rt(&node, "m1", "net1");
    let result = node.node.enter(|| cni.add_network_list(&list, &rt)).unwrap();
    assert_eq!(result.ips[0].address.to_string(), "10.98.0.10/24");
    let net1 = node.pod.link("net1").expect("net1 in the pod");
    assert_eq!(net1["linkinfo"]["info_kind"], "macvlan");
    assert_eq!(net1["linkinfo"]["info_data"]["mode"], "bridge");
    assert_eq!(net1["mtu"], 1400);
    assert_eq!(node.pod.addrs("net1"), vec!["10.98.0.10/24"]);
    node.node.enter(|| cni.check_network_list(&list, &rt)).unwrap();
    node.node.enter(|| cni.del_network_list(&list, &rt)).unwrap();
    assert!(node.pod.link("net1").is_none());
    assert!(node.ipam_ips("tmv").is_empty());
}

fn write(path: &Path, v: &Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

#[test]
fn subdirectory_plugins_are_appended_to_the_chain() {
    let node = Node::new();
    let cni = runtime(&node);
    let dir = node.path("net.d");
    write(
        &dir.join("10-sub.conflist"),
        &json!({"cniVersion": "1.0.0", "name": "subnet",
        "plugins": [bridge(&node, "tbr2", "10.94.0.0/24")]}),
    );
    write(
        &dir.join("subnet/20-tuning.conf"),
        &json!({"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.arp_filter": "1"}}),
    );
    // Neither a .json in the subdirectory nor a nested directory is loaded.
    write(&dir.join("subnet/30-ignored.json"), &json!({"type": "nosuch"}));
    write(&dir.join("subnet/nested/40-ignored.conf"), &json!({"type": "nosuch"}));

    let list = NetworkConfigList::load(&dir, "subnet").unwrap();
    let types: Vec<&str> = list.plugins.iter().map(|p| p.plugin_type()).collect();
    assert_eq!(types, ["bridge", "tuning"]);
    let rt = rt(&node, "s1", "eth0");
    node.node.enter(|| cni.add_network_list(&list, &rt)).unwrap();
    assert_eq!(node.pod.read_proc("/proc/sys/net/ipv4/conf/eth0/arp_filter"), "1");
    node.node.enter(|| cni.del_network_list(&list, &rt)).unwrap();
    assert!(node.pod.link("eth0").is_none());

    // loadOnlyInlinedPlugins switches the subdirectory off.
    write(
        &dir.join("10-sub.conflist"),
        &json!({"cniVersion": "1.0.0", "name": "subnet", "loadOnlyInlinedPlugins": "true",
        "plugins": [bridge(&node, "tbr2", "10.94.0.0/24")]}),
    );
    let list = NetworkConfigList::load(&dir, "subnet").unwrap();
    assert_eq!(list.plugins.len(), 1);
    node.node.enter(|| cni.add_network_list(&list, &rt)).unwrap();
    assert_eq!(node.pod.read_proc("/proc/sys/net/ipv4/conf/eth0/arp_filter"), "0");
    node.node.enter(|| cni.del_network_list(&list, &rt)).unwrap();

    // A subdirectory plugin without a type is refused with the file named.
    write(
        &dir.join("10-sub.conflist"),
        &json!({"cniVersion": "1.0.0", "name": "subnet",
        "plugins": [bridge(&node, "tbr2", "10.94.0.0/24")]}),
    );
    write(&dir.join("subnet/25-bad.conf"), &json!({"sysctl": {}}));
    let e = NetworkConfigList::load(&dir, "subnet").unwrap_err();
    assert!(e.to_string().contains("25-bad.conf") && e.to_string().contains("missing 'type'"), "{e}");
}

#[test]
fn a_list_name_cannot_escape_the_conf_dir() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("x.conflist"),
        r#"{"cniVersion":"1.0.0","name":"../etc","plugins":[{"type":"bridge"}]}"#,
    )
    .unwrap();
    let e = NetworkConfigList::from_file(&d.path().join("x.conflist")).unwrap_err();
    assert!(e.to_string().contains("invalid network name \"../etc\""), "{e}");
    assert_eq!(e.code(), 7);
}

#[test]
fn a_failing_delegate_surfaces_its_code_and_message() {
    let node = Node::new().with_veth_parent();
    let cni = runtime(&node);
    let list = NetworkConfigList::from_value(json!({"cniVersion": "1.0.0", "name": "tipv", "plugins": [
        {"type": "ipvlan", "master": "hv0",
         "ipam": {"type": "host-local", "dataDir": node.path("ipam"), "ranges": [[{"subnet": "10.97.0.0/24"}]]}}
    ]}))
    .unwrap();
    let rt = rt(&node, "f1", "net1");
    let e = node.node.enter(|| cni.add_network_list(&list, &rt)).unwrap_err();
    let obj = e.to_cni();
    assert_eq!(obj.code, 999, "{obj:?}");
    assert!(obj.msg.starts_with("plugin type=\"ipvlan\" failed (add): failed to create ipvlan"), "{obj:?}");
    assert!(!cache::path(&node.path("cache"), "tipv", "f1", "net1").exists());
    // The runtime's DEL after a failed ADD succeeds and leaves nothing.
    node.node.enter(|| cni.del_network_list(&list, &rt)).unwrap();
    assert!(node.pod.link("net1").is_none());
    assert!(node.ipam_ips("tipv").is_empty());
}

#[test]
fn an_unknown_plugin_type_is_a_config_error() {
    let node = Node::new();
    let cni = runtime(&node);
    let list =
        NetworkConfigList::from_value(json!({"cniVersion": "1.0.0", "name": "tnone", "plugins": [{"type": "nosuch"}]}))
            .unwrap();
    let e = cni.add_network_list(&list, &rt(&node, "u1", "eth0")).unwrap_err();
    assert!(matches!(&e, Error::Context { source, .. } if matches!(**source, Error::PluginNotFound { .. })), "{e:?}");
    assert_eq!(e.code(), 7);
    assert!(e.to_string().contains("failed to find plugin \"nosuch\""), "{e}");
}

#[test]
fn bad_runtime_identifiers_are_refused_before_any_plugin_runs() {
    let node = Node::new();
    let cni = runtime(&node);
    let record = node.path("record.jsonl");
    let list = NetworkConfigList::from_value(json!({"cniVersion": "1.0.0", "name": "tval", "plugins": [
        {"type": "cni-recorder", "recordFile": record}]}))
    .unwrap();
    for (container, ifname, code) in
        [("", "eth0", 3), ("bad id", "eth0", 4), ("c1", "averyveryverylongname", 4), ("c1", "a/b", 4)]
    {
        let e = cni.add_network_list(&list, &rt(&node, container, ifname)).unwrap_err();
        assert_eq!(e.code(), code, "{container:?} {ifname:?}: {e}");
    }
    assert!(!record.exists(), "the plugin must not have run");
}
