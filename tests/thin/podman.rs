//! A real CNI runtime calls us: podman 4.3 with its CNI backend (libcni inside) runs a container
//! on a network whose conflist has our `multus` as the plugin, with a bridge and a macvlan
//! delegate. podman runs inside the test's node namespace (through `nsenter --net`, which keeps
//! /sys intact for runc), with its storage, config and plugin dir in the test's directory.

use std::process::Command;

use serde_json::json;

use crate::flows::{bridge, macvlan};
use crate::support::Node;

#[test]
fn podman_gets_eth0_and_net1_and_rm_cleans_everything() {
    let node = Node::new().with_veth_parent();
    let p = node.path("podman");
    for d in ["plugins", "net.d", "rootfs/bin"] {
        std::fs::create_dir_all(p.join(d)).unwrap();
    }
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_multus"), p.join("plugins/multus")).unwrap();
    std::fs::copy("/usr/bin/busybox", p.join("rootfs/bin/busybox"))
        .expect("busybox-static is installed by scripts/install-test-deps.sh");
    let conf = p.join("containers.conf");
    std::fs::write(
        &conf,
        format!(
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n[engine]\nruntime = \"runc\"\n\
             [network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{}\", \"/usr/lib/cni\"]\nnetwork_config_dir = \"{}\"\n",
            p.join("plugins").display(),
            p.join("net.d").display()
        ),
    )
    .unwrap();
    let multus_dir = node.path("multus");
    let list = json!({"cniVersion": "1.0.0", "name": "multusnet", "plugins": [{"type": "multus", "cniDir": multus_dir,
        "binDir": p.join("plugins"), "logFile": node.path("multus.log"), "logLevel": "debug", "logToStderr": false,
        "delegates": [bridge(&node, "pbr", "pbr0", "10.91.0.0/24"), macvlan(&node, "pmv")]}]});
    std::fs::write(p.join("net.d/multusnet.conflist"), list.to_string()).unwrap();

    let out = Command::new("nsenter")
        .arg(format!("--net={}", node.node.path()))
        .args(["podman", "--root"])
        .arg(p.join("storage"))
        .arg("--runroot")
        .arg(p.join("run"))
        .args(["run", "--rm", "--network", "multusnet", "--rootfs"])
        .arg(p.join("rootfs"))
        .args(["/bin/busybox", "ip", "-o", "-4", "addr"])
        .env("CONTAINERS_CONF", &conf)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "podman failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    let inet = |ifname: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(ifname))
            .and_then(|l| l.split_whitespace().nth(3))
            .map(str::to_string)
    };
    assert_eq!(inet("eth0").as_deref(), Some("10.91.0.2/24"), "{stdout}");
    assert_eq!(inet("net1").as_deref(), Some("10.98.0.10/24"), "{stdout}");

    // `--rm` made podman send DEL through libcni: every delegate is gone.
    assert!(node.ipam_ips("pbr").is_empty() && node.ipam_ips("pmv").is_empty(), "IPs still allocated");
    assert_eq!(
        std::fs::read_dir(&multus_dir).unwrap().filter(|e| e.as_ref().unwrap().path().is_file()).count(),
        0,
        "scratch cache left"
    );
    assert_eq!(std::fs::read_dir(multus_dir.join("results")).unwrap().count(), 0, "libcni cache left");
    let log = std::fs::read_to_string(node.path("multus.log")).unwrap();
    assert!(log.contains("Add net1 [10.98.0.10/24] from pmv"), "{log}");
}
