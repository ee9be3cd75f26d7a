//! Container IDs and pod identities that would become paths: `CNI_CONTAINERID=/abs/file` used to
//! replace that file with the scratch cache on ADD and delete it on DEL (`Path::join` with an
//! absolute ID replaces the base); `../` climbed out of `cniDir`. Thin, shim → `/cni`, and
//! `/delegate`: refused with code 4 before anything is read, written or deleted.

use std::time::Duration;

use http::Method;
use multus::thick::client::Client;
use serde_json::{Value, json};

use crate::hostile::{bounded, bridge_shim_conf, conf_with, daemon_request, tree};
use crate::support::Node;
use crate::support::thick::{Daemon, bridge, daemon_config, shim_bin, spawn_cni};

const ARGS: &str = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod;K8S_POD_INFRA_CONTAINER_ID=pod";
const MULTUS: &str = env!("CARGO_BIN_EXE_multus");

fn refused(out: &crate::support::thick::Outcome, value: &str) {
    assert_eq!(out.code, 1, "{out:?}");
    let e: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert_eq!(e["code"], 4, "{e}");
    assert!(e["msg"].as_str().unwrap().contains(&format!("{value:?}")), "the value is quoted: {e}");
    assert!(e["cniVersion"].is_string(), "{e}");
}

/// The victims: a file outside every cache directory, and the places `../` would reach.
struct Victims {
    file: std::path::PathBuf,
}

impl Victims {
    fn new(node: &Node) -> Victims {
        let file = node.path("victim");
        std::fs::write(&file, "precious").unwrap();
        Victims { file }
    }

    fn intact(&self, node: &Node, before: &[String]) {
        assert_eq!(std::fs::read_to_string(&self.file).unwrap(), "precious", "the victim file was touched");
        let after: Vec<String> = tree(node.dir.path()).into_iter().filter(|f| !f.ends_with(".log")).collect();
        assert_eq!(after, before, "files appeared or vanished outside the cache directories");
    }
}

fn snapshot(node: &Node) -> Vec<String> {
    tree(node.dir.path()).into_iter().filter(|f| !f.ends_with(".log")).collect()
}

#[test]
fn thin_refuses_container_ids_and_pod_names_that_are_paths() {
    let node = Node::new();
    let conf = conf_with(&node, vec![bridge(&node, "cbr", "tbr0", "10.99.0.0/24")], json!({}));
    let victims = Victims::new(&node);
    let before = snapshot(&node);
    let escape = format!("../{}", "victim");
    for id in [victims.file.to_str().unwrap(), escape.as_str(), "../../../../../../tmp/x", "a/../../victim"] {
        for cmd in ["ADD", "DEL", "CHECK"] {
            let child = node.node.enter(|| {
                spawn_cni(std::path::Path::new(MULTUS), &node, cmd, &conf, id, "eth0", &[("CNI_ARGS", ARGS)])
            });
            refused(&bounded(child, Duration::from_secs(30)).0, id);
            victims.intact(&node, &before);
        }
    }
    for (key, bad) in [("K8S_POD_NAME", "../../secrets"), ("K8S_POD_NAMESPACE", "a/b"), ("K8S_POD_UID", "x y")] {
        let args = format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod;{key}={bad}");
        let child = node.node.enter(|| {
            spawn_cni(std::path::Path::new(MULTUS), &node, "ADD", &conf, "pod", "eth0", &[("CNI_ARGS", &args)])
        });
        refused(&bounded(child, Duration::from_secs(30)).0, bad);
    }
    assert_eq!(node.pod.link_names(), vec!["lo"], "nothing was added");
}

#[test]
fn shim_and_daemon_refuse_them_too() {
    let node = Node::new();
    let daemon = Daemon::start(&node, &daemon_config(&node, json!({})));
    let conf = bridge_shim_conf(&node);
    let victims = Victims::new(&node);
    let before = snapshot(&node);
    let id = victims.file.to_str().unwrap();
    for cmd in ["ADD", "DEL", "CHECK"] {
        // Through the shim (which refuses it itself) ...
        let child = node.node.enter(|| {
            spawn_cni(std::path::Path::new(shim_bin()), &node, cmd, &conf, id, "eth0", &[("CNI_ARGS", ARGS)])
        });
        refused(&bounded(child, Duration::from_secs(30)).0, id);
        // ... and straight to the daemon, as a client that skips the shim would.
        for endpoint in ["/cni", "/delegate"] {
            let body = daemon_request(cmd, id, &node.pod.path(), ARGS, &conf);
            let reply =
                Client::new(daemon.socket()).send(Method::POST, endpoint, body, Some(Duration::from_secs(30))).unwrap();
            assert_eq!(reply.status, 400, "{endpoint} {cmd}");
            let e: Value = serde_json::from_slice(&reply.body).unwrap();
            assert_eq!(e["code"], 4, "{endpoint} {cmd}: {e}");
            assert!(e["msg"].as_str().unwrap().contains(&format!("{id:?}")), "{e}");
        }
        victims.intact(&node, &before);
    }
    assert_eq!(node.pod.link_names(), vec!["lo"], "nothing was added");
}
