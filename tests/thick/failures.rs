//! The daemon absent, killed in the middle of an ADD, or stopped while requests are in flight:
//! what the runtime sees from the shim, and that a later DEL leaves nothing behind.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Daemon, bridge, daemon_config, files_in, finish, shim, shim_conf, spawn_shim};
use crate::support::Node;

/// A plugin that records each call and, on ADD, marks that it started and sleeps `secs`
/// before answering with an empty result. It creates nothing.
fn slow_plugin(node: &Node, secs: u32) -> (PathBuf, PathBuf, PathBuf) {
    let dir = node.path("slowbin");
    std::fs::create_dir_all(&dir).unwrap();
    let (record, started) = (node.path("slow.record"), node.path("slow.started"));
    let script = format!(
        "#!/bin/sh\necho \"$CNI_COMMAND $CNI_CONTAINERID\" >> {record}\nif [ \"$CNI_COMMAND\" = ADD ]; then\n  touch {started}\n  sleep {secs}\n  echo '{{\"cniVersion\":\"1.0.0\",\"dns\":{{}}}}'\nfi\n",
        record = record.display(),
        started = started.display()
    );
    let plugin = dir.join("slow");
    std::fs::write(&plugin, script).unwrap();
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, record, started)
}

fn wait_for(file: &Path) {
    let start = Instant::now();
    while !file.exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "{} never appeared", file.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_clean(node: &Node, container: &str) {
    assert_eq!(node.pod.link_names(), vec!["lo"], "the pod namespace must be empty again");
    assert!(node.ipam_ips("cbr").is_empty(), "leaked IPs: {:?}", node.ipam_ips("cbr"));
    assert!(!node.path("multus").join(container).exists(), "scratch cache left");
    assert_eq!(files_in(&node.path("multus/results")), Vec::<String>::new(), "libcni result cache left");
}

#[test]
fn daemon_down() {
    let node = Node::new();
    let conf = shim_conf(
        &node,
        "1.0.0",
        json!({"delegates": [bridge(&node, "cbr", "tbr0", "10.99.0.0/24")], "daemonReadinessTimeoutSeconds": 1}),
    );
    let socket = node.path("run/multus.sock");
    for cmd in ["ADD", "CHECK"] {
        let out = shim(&node, cmd, &conf, "down1");
        assert_eq!(out.code, 1, "{out:?}");
        let e = out.json();
        assert_eq!(e["code"], 11, "try again later: {e}");
        let msg = e["msg"].as_str().unwrap();
        assert!(msg.contains("timed out waiting for the condition: multus-daemon did not answer /healthz"), "{msg}");
        assert!(msg.contains(&socket.display().to_string()), "{msg}");
    }
    let del = shim(&node, "DEL", &conf, "down1");
    assert_eq!((del.code, del.stdout.as_str()), (0, ""), "upstream's policy: DEL succeeds: {del:?}");
    let mut strict = conf.clone();
    strict["shimReturnDelErrors"] = json!(true);
    let del = shim(&node, "DEL", &strict, "down1");
    assert_eq!(del.code, 1, "{del:?}");
    assert_eq!(del.json()["code"], 11);
}

/// The daemon (and the delegate it was running) is SIGKILLed half-way through an ADD; the ADD
/// fails; after a restart the runtime's DEL removes what the finished delegates created.
#[test]
fn sigkill_mid_add_then_del_after_restart() {
    let node = Node::new();
    let (slowbin, record, started) = slow_plugin(&node, 60);
    let mut daemon = Daemon::start(&node, &daemon_config(&node, json!({})));
    let conf = shim_conf(
        &node,
        "1.0.0",
        json!({"delegates": [bridge(&node, "cbr", "tbr0", "10.99.0.0/24"),
        {"cniVersion": "1.0.0", "name": "slow", "type": "slow"}], "binDir": slowbin}),
    );
    let add = spawn_shim(&node, "ADD", &conf, "crash1", "eth0");
    wait_for(&started);
    assert_eq!(node.pod.addrs("eth0"), vec!["10.99.0.2/24"], "the master was added before the slow delegate");
    daemon.kill();
    let add = finish(add);
    assert_eq!(add.code, 1, "{add:?}");
    let e = add.json();
    assert_eq!(e["code"], 11, "{e}");
    assert!(e["msg"].as_str().unwrap().starts_with("CmdAdd (shim): failed to send CNI request"), "{e}");

    daemon.restart(&node);
    let del = shim(&node, "DEL", &conf, "crash1");
    assert_eq!((del.code, del.stdout.as_str()), (0, ""), "{del:?}");
    assert_clean(&node, "crash1");
    let calls = std::fs::read_to_string(&record).unwrap();
    assert_eq!(calls, "ADD crash1\nDEL crash1\n");
}

/// SIGTERM: the daemon stops accepting, finishes the ADD in flight, removes its socket, exits 0.
#[test]
fn sigterm_finishes_requests_in_flight() {
    let node = Node::new();
    let (slowbin, _, started) = slow_plugin(&node, 2);
    let mut daemon = Daemon::start(&node, &daemon_config(&node, json!({})));
    let conf = shim_conf(
        &node,
        "0.4.0",
        json!({"delegates": [bridge(&node, "cbr", "tbr0", "10.99.0.0/24"),
        {"cniVersion": "1.0.0", "name": "slow", "type": "slow"}], "binDir": slowbin}),
    );
    let add = spawn_shim(&node, "ADD", &conf, "term1", "eth0");
    wait_for(&started);
    assert_eq!(daemon.stop(), 0, "{}", daemon.stderr());
    let add = finish(add);
    add.ok();
    let r: Value = add.json();
    assert_eq!((r["cniVersion"].as_str(), r["ips"][0]["address"].as_str()), (Some("0.4.0"), Some("10.99.0.2/24")));
    assert!(!daemon.socket().exists(), "the socket is removed on shutdown");

    daemon.restart(&node);
    shim(&node, "DEL", &conf, "term1").ok();
    assert_clean(&node, "term1");
}

/// The `multus_server_request_total` count of `POST /healthz` (the shim's readiness probe), read
/// from the daemon's metrics listener in the node namespace.
fn healthz_posts(node: &Node, port: u16) -> u64 {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let out = node.node.enter(|| std::process::Command::new("curl").args(["-s", &url]).output().unwrap());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("multus_server_request_total"), "no metrics at {url}: {text}");
    let key = "multus_server_request_total{code=\"200\",handler=\"/healthz\",method=\"post\"} ";
    text.lines().find_map(|l| l.strip_prefix(key)).map_or(0, |n| n.trim().parse().unwrap())
}

/// The shim goes straight to `/cni`; only a connect that fails (no daemon yet) makes it wait for
/// readiness, as upstream's shim waits before every command. An ADD started before the daemon
/// exists completes once the daemon listens; against a running daemon, ADD and DEL send no probe.
#[test]
fn an_add_waits_for_a_late_daemon_and_a_running_daemon_gets_no_probe() {
    let node = Node::new();
    let conf = shim_conf(
        &node,
        "1.0.0",
        json!({"delegates": [bridge(&node, "cbr", "tbr0", "10.99.0.0/24")], "daemonReadinessTimeoutSeconds": 30}),
    );
    let socket = node.path("run/multus.sock");
    let add = spawn_shim(&node, "ADD", &conf, "late1", "eth0");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!socket.exists(), "no daemon yet");
    let daemon =
        Daemon::start(&node, &daemon_config(&node, json!({"metricsPort": 9092, "metricsBindAddress": "127.0.0.1"})));
    let add = finish(add);
    add.ok();
    assert_eq!(node.pod.addrs("eth0"), vec!["10.99.0.2/24"], "the waiting ADD ran once the daemon listened");
    let probes = healthz_posts(&node, 9092);
    assert!(probes >= 1, "the waiting shim probed the daemon: {probes}");

    shim(&node, "DEL", &conf, "late1").ok();
    assert_clean(&node, "late1");
    shim(&node, "ADD", &conf, "now1").ok();
    assert!(node.pod.link_names().contains(&"eth0".to_string()), "the second ADD ran");
    shim(&node, "DEL", &conf, "now1").ok();
    assert_eq!(healthz_posts(&node, 9092), probes, "ADD and DEL against a running daemon probe nothing");
    assert_clean(&node, "now1");
    drop(daemon);
}
