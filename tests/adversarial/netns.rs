//! CNI_NETNS that is not a network namespace. A FIFO used to block the command forever (an open
//! without O_NONBLOCK); in the daemon each such request kept a blocking thread, and ~600 of them
//! starved every other pod while `/healthz` said 200. Now: a CNI error at once, thin and daemon,
//! and a thousand of them leave the daemon serving a normal ADD normally.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http::Method;
use multus::thick::client::Client;
use serde_json::{Value, json};

use crate::hostile::{bounded, bridge_shim_conf, conf_with, daemon_request};
use crate::support::Node;
use crate::support::thick::{Daemon, bridge, daemon_config, shim_bin, spawn_cni};

fn fifo(node: &Node) -> PathBuf {
    let p = node.path("fifo");
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    p
}

fn not_a_netns(stdout: &str) {
    let e: Value = serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(e["code"], 4, "{e}");
    assert!(e["msg"].as_str().unwrap().contains("is not a network namespace"), "{e}");
}

#[test]
fn thin_fails_at_once_on_a_fifo_or_a_file() {
    let node = Node::new();
    let conf = conf_with(&node, vec![bridge(&node, "cbr", "tbr0", "10.99.0.0/24")], json!({}));
    let plain = node.path("plain");
    std::fs::write(&plain, "").unwrap();
    for netns in [fifo(&node), plain] {
        for cmd in ["ADD", "CHECK", "DEL"] {
            let env = [("CNI_NETNS", netns.to_str().unwrap())];
            let child = node
                .node
                .enter(|| spawn_cni(Path::new(env!("CARGO_BIN_EXE_multus")), &node, cmd, &conf, "pod", "eth0", &env));
            let (out, took) = bounded(child, Duration::from_secs(10));
            assert_eq!(out.code, 1, "{out:?}");
            not_a_netns(&out.stdout);
            assert!(took < Duration::from_secs(1), "{cmd} took {took:?}");
        }
    }
    assert!(!node.path("multus").join("pod").exists(), "no scratch file for a refused ADD");
}

#[test]
fn daemon_fails_at_once_and_a_thousand_fifos_starve_nobody() {
    let node = Node::new();
    let daemon = Daemon::start(&node, &daemon_config(&node, json!({})));
    let conf = bridge_shim_conf(&node);
    let fifo = fifo(&node);
    // Through the shim, as a runtime would.
    let env = [("CNI_NETNS", fifo.to_str().unwrap())];
    let child = node.node.enter(|| spawn_cni(Path::new(shim_bin()), &node, "ADD", &conf, "pod", "eth0", &env));
    let (out, took) = bounded(child, Duration::from_secs(10));
    not_a_netns(&out.stdout);
    assert!(took < Duration::from_secs(1), "took {took:?}");
    // A thousand straight to the daemon, eight clients at once.
    let socket = daemon.socket();
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..8 {
            let (socket, conf, fifo) = (&socket, &conf, &fifo);
            s.spawn(move || {
                let client = Client::new(socket);
                for i in 0..125 {
                    let container = format!("fifo{t}-{i}");
                    let args = format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={container}");
                    let body = daemon_request("ADD", &container, fifo.to_str().unwrap(), &args, conf);
                    let reply = client.send(Method::POST, "/cni", body, Some(Duration::from_secs(10))).unwrap();
                    assert_eq!(reply.status, 400);
                    not_a_netns(std::str::from_utf8(&reply.body).unwrap());
                }
            });
        }
    });
    eprintln!("1000 FIFO requests answered in {:?}", start.elapsed());
    // A normal pod is served normally afterwards.
    let child = node.node.enter(|| spawn_cni(Path::new(shim_bin()), &node, "ADD", &conf, "good", "eth0", &[]));
    let (out, _) = bounded(child, Duration::from_secs(60));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(node.pod.addrs("eth0"), vec!["10.99.0.2/24"]);
    let child = node.node.enter(|| spawn_cni(Path::new(shim_bin()), &node, "DEL", &conf, "good", "eth0", &[]));
    assert_eq!(bounded(child, Duration::from_secs(60)).0.code, 0);
    assert_eq!(node.ipam_ips("cbr"), Vec::<String>::new());
}
