//! A burst: a hundred pods ADDed at once through the shim, then DELed at once. Every call
//! succeeds (the daemon bounds how many run together; the rest wait), every pod gets its own
//! address, and nothing is left afterwards: interfaces, host-local IPs, caches.

use std::collections::BTreeSet;

use serde_json::json;

use crate::harness::{Daemon, bridge, daemon_config, files_in, finish, shim_conf, spawn_shim_env, write};
use crate::support::{Netns, Node};

const PODS: usize = 100;

#[test]
fn a_hundred_pods_at_once() {
    let node = Node::new();
    let pods: Vec<Netns> = (0..PODS).map(|_| Netns::new("q")).collect();
    let _daemon = Daemon::start(&node, &daemon_config(&node, json!({"maxConcurrentRequests": 16})));
    let list = node.path("net.d-src/10-cbr.conflist");
    write(
        &list,
        &json!({"cniVersion": "1.0.0", "name": "cbr", "plugins": [bridge(&node, "cbr", "tbr0", "10.99.0.0/24")]}),
    );
    let conf = shim_conf(&node, "1.0.0", json!({"clusterNetwork": list}));
    let run_all = |cmd: &str| {
        let children: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, p)| spawn_shim_env(&node, cmd, &conf, &format!("burst{i}"), "eth0", &[("CNI_NETNS", &p.path())]))
            .collect();
        children.into_iter().map(finish).collect::<Vec<_>>()
    };

    let added = run_all("ADD");
    let mut addresses = BTreeSet::new();
    for (i, out) in added.iter().enumerate() {
        out.ok();
        let r = out.json();
        let address = r["ips"][0]["address"].as_str().unwrap().to_string();
        assert_eq!(pods[i].addrs("eth0"), vec![address.clone()], "pod {i}");
        addresses.insert(address);
    }
    assert_eq!(addresses.len(), PODS, "every pod got its own address");
    assert_eq!(node.ipam_ips("cbr").len(), PODS);
    assert_eq!(files_in(&node.path("multus/results")).len(), PODS);

    for out in run_all("DEL") {
        assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:?}");
    }
    for (i, p) in pods.iter().enumerate() {
        assert_eq!(p.link_names(), vec!["lo"], "pod {i}");
    }
    assert!(node.ipam_ips("cbr").is_empty(), "leaked: {:?}", node.ipam_ips("cbr"));
    assert_eq!(files_in(&node.path("multus")), vec!["results"], "no scratch cache left");
    assert_eq!(files_in(&node.path("multus/results")), Vec::<String>::new());
    assert_eq!(node.node.link_names(), vec!["lo", "tbr0"], "no host-side veth left");
}

/// `maxConcurrentRequests` bounds how many requests run at once, not only whether they succeed:
/// eight pods at once against a limit of 2, each delegate recording how many delegates were
/// running when it started (a file per running delegate), and taking 300 ms. Exactly two may
/// overlap: more means the limit was ignored, fewer that the requests were serialised.
#[test]
fn max_concurrent_requests_bounds_the_overlap() {
    use std::os::unix::fs::PermissionsExt;
    let node = Node::new();
    let pods: Vec<Netns> = (0..8).map(|_| Netns::new("o")).collect();
    let bin = node.path("overlap-bin");
    let running = node.path("running");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&running).unwrap();
    let seen = node.path("seen");
    let script = format!(
        "#!/bin/sh\ncat >/dev/null\nif [ \"$CNI_COMMAND\" = ADD ]; then\n  touch {r}/$$\n  ls {r} | wc -l >> {s}\n  sleep 0.3\n  rm {r}/$$\nfi\necho '{{\"cniVersion\":\"1.0.0\"}}'\n",
        r = running.display(),
        s = seen.display()
    );
    std::fs::write(bin.join("overlap"), script).unwrap();
    std::fs::set_permissions(bin.join("overlap"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let _daemon = Daemon::start(&node, &daemon_config(&node, json!({"maxConcurrentRequests": 2})));
    let conf = shim_conf(
        &node,
        "1.0.0",
        json!({"binDir": bin, "delegates": [{"cniVersion": "1.0.0", "name": "overlap", "type": "overlap"}]}),
    );
    let children: Vec<_> = pods
        .iter()
        .enumerate()
        .map(|(i, p)| spawn_shim_env(&node, "ADD", &conf, &format!("o{i}"), "eth0", &[("CNI_NETNS", &p.path())]))
        .collect();
    for out in children.into_iter().map(finish) {
        out.ok();
    }
    let counts: Vec<usize> =
        std::fs::read_to_string(&seen).unwrap().lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(counts.len(), 8, "{counts:?}");
    assert_eq!(counts.iter().max(), Some(&2), "delegates running at once: {counts:?}");
}
