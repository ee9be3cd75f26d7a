//! The thick config manager on a temporary node tree: a primary that appears late, changes,
//! becomes unusable and recovers; the readiness indicator file removed; stop with and without
//! `keepConfigOnExit`; a pinned primary with `forceCNIVersion`; the non-`auto` copy; no primary.

use std::path::PathBuf;
use std::time::Duration;

use multus::thick::daemon_config::DaemonConfig;
use multus::thick::manager::{Fatal, Manager, ManagerConfig};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{eventually, mode, read};

/// `<tmp>/net.d` as both the autoconfig and the output dir (the deployment's layout), and a
/// separate directory for the readiness indicator file.
struct Node {
    tmp: TempDir,
}

impl Node {
    fn new() -> Node {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("net.d")).unwrap();
        std::fs::create_dir(tmp.path().join("run")).unwrap();
        Node { tmp }
    }

    fn net_d(&self) -> PathBuf {
        self.tmp.path().join("net.d")
    }

    fn conf(&self) -> PathBuf {
        self.net_d().join("00-multus.conf")
    }

    fn ready(&self) -> PathBuf {
        self.tmp.path().join("run/ready")
    }

    /// A manager config from a daemon config, with the node's directories.
    fn config(&self, extra: Value) -> ManagerConfig {
        let mut daemon =
            json!({"cniVersion": "0.4.0", "multusAutoconfigDir": self.net_d(), "cniConfigDir": self.net_d()});
        for (k, v) in extra.as_object().unwrap() {
            daemon[k] = v.clone();
        }
        ManagerConfig::from_daemon(&DaemonConfig::parse(daemon.to_string().as_bytes()).unwrap())
    }

    fn write_primary(&self, name: &str, text: &str) {
        // Non-atomic on purpose: a real CNI daemon rewriting its file in place.
        std::fs::write(self.net_d().join(name), text).unwrap();
    }
}

fn bridge(version: &str, extra: &str) -> String {
    format!(r#"{{"cniVersion":"{version}","name":"cbr0","type":"bridge"{extra}}}"#)
}

fn expected(node: &Node, primary: &str, caps: &str) -> String {
    format!(
        r#"{{{caps}"cniVersion":"0.4.0","name":"multus-cni-network","clusterNetwork":"{}","type":"multus-shim"}}"#,
        node.net_d().join(primary).display()
    )
}

#[test]
fn primary_appears_late_changes_goes_bad_and_recovers() {
    let node = Node::new();
    let handle = Manager::start(node.config(json!({}))).unwrap();
    eventually("the manager to look for a primary", || handle.status().last_error.is_some());
    assert!(!node.conf().exists(), "nothing to wrap yet, nothing written");

    node.write_primary("10-bridge.conf", &bridge("0.4.0", ""));
    eventually("00-multus.conf", || read(&node.conf()) == Some(expected(&node, "10-bridge.conf", "")));
    assert_eq!(mode(&node.conf()), 0o600);
    assert_eq!(handle.status().primary, Some(node.net_d().join("10-bridge.conf")));

    // A later file that sorts after the primary is not a new primary.
    node.write_primary("20-other.conf", &bridge("0.4.0", r#","capabilities":{"ips":true}"#));
    node.write_primary("10-bridge.conf", &bridge("0.4.0", r#","capabilities":{"portMappings":true,"mac":false}"#));
    let with_caps = expected(&node, "10-bridge.conf", r#""capabilities":{"portMappings":true},"#);
    eventually("the regenerated 00-multus.conf", || read(&node.conf()) == Some(with_caps.clone()));

    for bad in ["", "{\"cniVersion\":", &bridge("0.3.1", "")] {
        let checks = handle.status().checks;
        node.write_primary("10-bridge.conf", bad);
        eventually("the manager to examine the bad primary", || {
            let s = handle.status();
            s.checks > checks && s.last_error.is_some()
        });
        assert_eq!(read(&node.conf()), Some(with_caps.clone()), "previous good file kept for {bad:?}");
    }

    node.write_primary("10-bridge.conf", &bridge("1.0.0", ""));
    eventually("the file regenerated from the recovered primary", || {
        read(&node.conf()) == Some(expected(&node, "10-bridge.conf", ""))
    });
    assert_eq!(handle.status().last_error, None);

    handle.stop().unwrap();
    assert!(!node.conf().exists(), "deleted on stop");
}

#[test]
fn removed_readiness_file_deletes_the_conf_and_is_fatal() {
    let node = Node::new();
    std::fs::write(node.ready(), "").unwrap();
    node.write_primary("10-bridge.conf", &bridge("0.4.0", ""));
    let handle =
        Manager::start(node.config(json!({"readinessindicatorfile": node.ready(), "keepConfigOnExit": true}))).unwrap();
    eventually("00-multus.conf", || node.conf().exists());

    std::fs::remove_file(node.ready()).unwrap();
    let fatal = handle.fatal().recv_timeout(Duration::from_secs(60)).expect("a fatal report");
    assert_eq!(fatal, Fatal::ReadinessRemoved(node.ready()));
    assert_eq!(fatal.exit_code(), 2);
    assert!(!node.conf().exists(), "deleted even with keepConfigOnExit: the primary network is not ready");
    handle.stop().unwrap();
}

#[test]
fn stop_keeps_the_conf_with_keep_config_on_exit() {
    let node = Node::new();
    node.write_primary("10-bridge.conf", &bridge("0.4.0", ""));
    let handle = Manager::start(node.config(json!({"keepConfigOnExit": true}))).unwrap();
    let want = expected(&node, "10-bridge.conf", "");
    eventually("00-multus.conf", || read(&node.conf()) == Some(want.clone()));
    handle.stop().unwrap();
    assert_eq!(read(&node.conf()), Some(want));
}

#[test]
fn pinned_primary_with_forced_version() {
    let node = Node::new();
    node.write_primary("10-first.conf", &bridge("0.4.0", ""));
    node.write_primary("20-pinned.conflist", r#"{"name":"pinned","cniVersion":"0.3.1","plugins":[{"type":"ptp"}]}"#);
    let handle = Manager::start(node.config(json!({
        "multusMasterCNI": "20-pinned.conflist", "forceCNIVersion": true, "overrideNetworkName": true,
        "binDir": "/opt/cni/bin", "logFile": "/var/log/multus.log"})))
    .unwrap();
    let want = format!(
        r#"{{"binDir":"/opt/cni/bin","cniVersion":"0.4.0","logFile":"/var/log/multus.log","name":"pinned","clusterNetwork":"{}","type":"multus-shim","overrideNetworkName":true}}"#,
        node.net_d().join("20-pinned.conflist").display()
    );
    eventually("00-multus.conf", || read(&node.conf()) == Some(want.clone()));
    assert_eq!(
        read(&node.net_d().join("20-pinned.conflist")).unwrap(),
        r#"{"name":"pinned","cniVersion":"0.4.0","plugins":[{"type":"ptp"}]}"#,
        "forceCNIVersion rewrites the primary on disk"
    );
    handle.stop().unwrap();
}

#[test]
fn non_auto_config_file_is_copied_and_the_manager_keeps_running() {
    let node = Node::new();
    let src_dir = node.tmp.path().join("multus-conf");
    std::fs::create_dir(&src_dir).unwrap();
    let src = src_dir.join("70-multus.conf");
    let text = r#"{"cniVersion":"0.3.1","name":"multus-cni-network","type":"multus-shim"}"#;
    std::fs::write(&src, text).unwrap();

    let handle = Manager::start(node.config(json!({"multusConfigFile": src}))).unwrap();
    let copy = node.net_d().join("70-multus.conf");
    assert_eq!(handle.conf_path(), copy.as_path());
    assert_eq!(read(&copy).as_deref(), Some(text));
    assert_eq!(mode(&copy), mode(&src));
    assert_eq!(
        handle.fatal().try_recv(),
        Err(std::sync::mpsc::TryRecvError::Empty),
        "still running: the daemon must not take this mode for an exit (#1366)"
    );
    handle.stop().unwrap();
    assert_eq!(read(&copy).as_deref(), Some(text), "a copied file is never deleted");

    let missing = node.config(json!({"multusConfigFile": src_dir.join("nope.conf")}));
    let err = Manager::start(missing).unwrap_err().to_string();
    assert!(err.contains("nope.conf"), "{err}");
}

#[test]
fn no_primary_in_time_is_fatal_and_bad_setups_fail_at_start() {
    let node = Node::new();
    let mut cfg = node.config(json!({}));
    cfg.primary_timeout = Duration::from_secs(1);
    let handle = Manager::start(cfg).unwrap();
    match handle.fatal().recv_timeout(Duration::from_secs(60)).expect("a fatal report") {
        Fatal::NoPrimary(why) => assert!(why.contains("no CNI config found in"), "{why}"),
        other => panic!("unexpected {other:?}"),
    }
    handle.stop().unwrap();
    assert!(!node.conf().exists());

    let missing_dir = node.config(json!({"multusAutoconfigDir": node.tmp.path().join("absent")}));
    assert!(Manager::start(missing_dir).unwrap_err().to_string().contains("absent"));
    let no_version = node.config(json!({"cniVersion": ""}));
    assert!(Manager::start(no_version).is_err());
}
