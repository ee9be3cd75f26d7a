//! Delegates that hang, fork and flood. A hung delegate used to cost 300 s for the ADD and
//! another 300 s for the rollback DEL, and the kill reached only the plugin's pid (its children
//! lived on under PID 1); when the runtime SIGKILLed `multus`, the delegate kept running; a
//! failing delegate's 100 MB of stdout became a 100 MB error object.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::hostile::{bounded, conf_with, plugins, read_pid, wait_gone};
use crate::support::Node;
use crate::support::thick::{Daemon, daemon_config, shim_bin, shim_conf, spawn_cni};

const MULTUS: &str = env!("CARGO_BIN_EXE_multus");

fn hung(node: &Node) -> Value {
    let pids = node.path("pids");
    std::fs::create_dir_all(&pids).unwrap();
    json!({"cniVersion": "1.0.0", "name": "hung", "type": "hang", "pidDir": pids})
}

/// Kills what the hang script left running, whatever the outcome (a sleep that outlived the test).
struct Reap(std::path::PathBuf);

impl Drop for Reap {
    fn drop(&mut self) {
        for e in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            if let Some(pid) = std::fs::read_to_string(e.path()).ok().and_then(|s| s.trim().parse::<i32>().ok()) {
                // SAFETY: signalling a process this test's script started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// ADD of a hung delegate: refused with code 11 after delegateTimeoutSeconds, the plugin and the
/// child it forked killed, and the rollback DEL (which hangs too) bounded by rollbackTimeoutSeconds.
fn hung_delegate_is_killed_with_its_children(node: &Node, out: crate::support::thick::Outcome, took: Duration) {
    assert_eq!(out.code, 1, "{out:?}");
    let e: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(e["code"], 11, "{e}");
    assert!(e["msg"].as_str().unwrap().contains("did not finish within"), "{e}");
    // 3 s for the ADD, 3 s for the rollback DEL (time for a loaded machine to start the scripts);
    // the old code took 600 s.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let pids = node.path("pids");
    for cmd in ["ADD", "DEL"] {
        wait_gone(read_pid(&pids.join(format!("plugin.{cmd}"))), &format!("the {cmd} plugin"));
        wait_gone(read_pid(&pids.join(format!("child.{cmd}"))), &format!("the {cmd} plugin's child"));
    }
    // Its rollback DEL timed out too, so the scratch file keeps exactly that delegate: the
    // runtime's DEL finishes the job (a rollback that succeeds removes it: errors.rs).
    let saved: Value = serde_json::from_slice(&std::fs::read(node.path("multus").join("pod")).unwrap()).unwrap();
    let names: Vec<&str> = saved.as_array().unwrap().iter().map(|d| d["Name"].as_str().unwrap()).collect();
    assert_eq!(names, ["hung"]);
}

#[test]
fn thin_hung_delegate_is_killed_with_its_children() {
    let node = Node::new();
    let _reap = Reap(node.path("pids"));
    let conf = conf_with(&node, vec![hung(&node)], json!({"delegateTimeoutSeconds": 3, "rollbackTimeoutSeconds": 3}));
    let child = node.node.enter(|| spawn_cni(Path::new(MULTUS), &node, "ADD", &conf, "pod", "eth0", &[]));
    let (out, took) = bounded(child, Duration::from_secs(60));
    hung_delegate_is_killed_with_its_children(&node, out, took);
}

#[test]
fn thick_hung_delegate_is_killed_with_its_children() {
    let node = Node::new();
    let _reap = Reap(node.path("pids"));
    let _daemon =
        Daemon::start(&node, &daemon_config(&node, json!({"delegateTimeoutSeconds": 3, "rollbackTimeoutSeconds": 3})));
    let conf = shim_conf(&node, "1.0.0", json!({"binDir": plugins(&node), "delegates": [hung(&node)]}));
    let child = node.node.enter(|| spawn_cni(Path::new(shim_bin()), &node, "ADD", &conf, "pod", "eth0", &[]));
    let (out, took) = bounded(child, Duration::from_secs(60));
    hung_delegate_is_killed_with_its_children(&node, out, took);
}

#[test]
fn a_sigkilled_multus_takes_its_delegate_along() {
    let node = Node::new();
    let _reap = Reap(node.path("pids"));
    let conf = conf_with(&node, vec![hung(&node)], json!({}));
    let mut child = node.node.enter(|| spawn_cni(Path::new(MULTUS), &node, "ADD", &conf, "pod", "eth0", &[]));
    let plugin = read_pid(&node.path("pids/plugin.ADD"));
    // The runtime gives up on its own timeout.
    child.kill().unwrap();
    child.wait().unwrap();
    wait_gone(plugin, "the delegate of the killed multus");
}

#[test]
fn a_flood_of_output_gives_a_small_error() {
    let node = Node::new();
    let conf = conf_with(&node, vec![json!({"cniVersion": "1.0.0", "name": "flood", "type": "flood"})], json!({}));
    let child = node.node.enter(|| spawn_cni(Path::new(MULTUS), &node, "ADD", &conf, "pod", "eth0", &[]));
    let (out, _) = bounded(child, Duration::from_secs(60));
    assert_eq!(out.code, 1);
    assert!(out.stdout.len() < 1 << 20, "an error object of {} bytes", out.stdout.len());
    let e: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(e["code"], 999, "{e}");
    assert!(e["msg"].as_str().unwrap().contains("printed 20000000 bytes on stdout"), "the flood is reported: {e}");
}
