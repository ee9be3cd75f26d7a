//! The scratch cache against Go multus's own definition of it (`tests/interop/scratch-judge`,
//! upstream 4.2.1's `DelegateNetConf` on Debian's libcni types, built here with Debian's Go): Go
//! multus reads the file our ADD wrote (no key it does not know, every delegate with its requests
//! and a `Bytes` it can load), and our DEL tears a pod down from the file Go multus's ADD writes.
//! Together: after a switch either way, each side can DEL the other's pods.

use std::process::Command;

use serde_json::{Value, json};

use crate::flows::{bridge, macvlan, multus, multus_conf};
use crate::support::Node;

fn judge() -> std::path::PathBuf {
    crate::support::go_program("scratch-judge")
}

fn run_judge(args: &[&str]) -> String {
    let out = Command::new(judge()).args(args).output().unwrap();
    assert!(out.status.success(), "scratch-judge {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A pod with a list delegate (bridge + tuning) and a single one (macvlan).
fn delegates(node: &Node) -> (Value, Value) {
    let tuning = json!({"type": "tuning"});
    let list = json!({"cniVersion": "1.0.0", "name": "cbr",
        "plugins": [bridge(node, "cbr", "tbr0", "10.99.0.0/24"), tuning]});
    (list, macvlan(node, "mv"))
}

fn only_lo(node: &Node) {
    assert_eq!(node.pod.link_names(), vec!["lo"], "the pod namespace must be empty again");
}

#[test]
fn go_multus_reads_the_scratch_cache_our_add_wrote() {
    let node = Node::new().with_veth_parent();
    let (list, single) = delegates(&node);
    let conf = multus_conf(&node, "1.0.0", json!({"delegates": [list, single]}));
    let (rc, out) = multus(&node, "ADD", &conf, "gopod1", "eth0");
    assert_eq!(rc, 0, "{out}");
    let seen: Value =
        serde_json::from_str(&run_judge(&["read", node.path("multus/gopod1").to_str().unwrap()])).unwrap();
    assert_eq!(
        seen,
        json!([
            {"name": "cbr", "ifname": "", "mac": "", "ips": null, "gateway": null, "isList": true,
             "types": ["bridge", "tuning"], "bytesTypes": ["bridge", "tuning"], "bytesName": "cbr"},
            {"name": "mv", "ifname": "", "mac": "", "ips": null, "gateway": null, "isList": false,
             "types": ["macvlan"], "bytesTypes": ["macvlan"], "bytesName": "mv"}
        ])
    );
    let (rc, out) = multus(&node, "DEL", &conf, "gopod1", "eth0");
    assert_eq!(rc, 0, "{out}");
    only_lo(&node);
}

#[test]
fn our_del_tears_down_from_the_scratch_cache_go_multus_wrote() {
    let node = Node::new().with_veth_parent();
    let (list, single) = delegates(&node);
    let conf = multus_conf(&node, "1.0.0", json!({"delegates": [list.clone(), single.clone()]}));
    let (rc, out) = multus(&node, "ADD", &conf, "gopod2", "eth0");
    assert_eq!(rc, 0, "{out}");
    assert_eq!(node.pod.link_names(), vec!["lo", "eth0", "net1"]);
    assert_eq!((node.ipam_ips("cbr").len(), node.ipam_ips("mv").len()), (1, 1));

    // The pod's record replaced by the one Go multus's ADD writes for the same delegates.
    let (l, s) = (node.path("go/cbr.conflist"), node.path("go/mv.conf"));
    std::fs::create_dir_all(l.parent().unwrap()).unwrap();
    std::fs::write(&l, list.to_string()).unwrap();
    std::fs::write(&s, single.to_string()).unwrap();
    let scratch = node.path("multus/gopod2");
    run_judge(&["write", scratch.to_str().unwrap(), l.to_str().unwrap(), s.to_str().unwrap()]);
    let go_doc: Value = serde_json::from_slice(&std::fs::read(&scratch).unwrap()).unwrap();
    assert!(go_doc[1].get("ifnameRequest").is_none() && go_doc[0]["ConfList"]["plugins"].is_array(), "{go_doc}");

    // DEL with a config that names no delegates: only the scratch cache says what to undo.
    let bare = multus_conf(&node, "1.0.0", json!({"clusterNetwork": "unused"}));
    let (rc, out) = multus(&node, "DEL", &bare, "gopod2", "eth0");
    assert_eq!(rc, 0, "{out}");
    only_lo(&node);
    assert_eq!(node.ipam_ips("cbr"), Vec::<String>::new(), "the list delegate's IP was not freed");
    assert_eq!(node.ipam_ips("mv"), Vec::<String>::new(), "the single delegate's IP was not freed");
    assert!(!scratch.exists(), "the scratch cache outlived the DEL");
}
