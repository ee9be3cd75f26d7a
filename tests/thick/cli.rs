//! The binaries' own surface: daemon flags and exit codes, the daemon-config errors, the
//! user-provided multus config copy, the readiness indicator wait; the shim's VERSION.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Daemon, daemon_config, write};
use crate::support::Node;
use crate::support::thick::shim_bin;

fn daemon(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_multus-daemon")).args(args).stdin(Stdio::null()).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn daemon_flags_and_exit_codes() {
    for flag in ["-version", "--version"] {
        let (code, out, _) = daemon(&[flag]);
        assert_eq!(code, 0, "we exit 0 (upstream exits 4)");
        assert!(out.starts_with("multus-daemon: multus-cni version:"), "{out}");
    }
    let (code, _, err) = daemon(&["-nope"]);
    assert_eq!(code, 2);
    assert!(err.starts_with("flag provided but not defined: -nope\nUsage of multus-daemon:"), "{err}");

    let d = tempfile::tempdir().unwrap();
    let bad = d.path().join("daemon-config.json");
    std::fs::write(&bad, "{\"socketDir\": \"/run/x\",\n}").unwrap();
    let (code, _, err) = daemon(&["-config", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("daemon config {}: invalid JSON", bad.display())), "#1320: {err}");
    let (code, _, err) = daemon(&[&format!("--config={}", d.path().join("missing.json").display())]);
    assert_eq!(code, 1);
    assert!(err.contains("failed to read the daemon config") && err.contains("missing.json"), "{err}");
}

#[test]
fn user_config_is_installed_and_readiness_is_awaited() {
    let node = Node::new();
    let ready = node.path("ready/default-network-ready");
    let socket = node.path("run/multus.sock");
    let waited = {
        let (ready, socket) = (ready.clone(), socket.clone());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1500));
            let answered_early = socket.exists();
            std::fs::create_dir_all(ready.parent().unwrap()).unwrap();
            std::fs::write(&ready, "").unwrap();
            answered_early
        })
    };
    let _daemon = Daemon::start(&node, &daemon_config(&node, json!({"readinessindicatorfile": ready})));
    assert!(!waited.join().unwrap(), "the daemon listened before the readiness indicator existed");
    let installed = std::fs::read_to_string(node.path("net.d/70-multus.conf")).unwrap();
    assert_eq!(installed, std::fs::read_to_string(node.path("user/70-multus.conf")).unwrap());
}

#[test]
fn shim_version() {
    let out = Command::new(shim_bin()).env("CNI_COMMAND", "VERSION").stdin(Stdio::null()).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["supportedVersions"], json!(["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]));
    let out = Command::new(shim_bin()).arg("--version").output().unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().starts_with("multus-shim: multus-cni version:"));
}

/// A config beyond the shim's 16 MiB bound is refused whole with code 5, before any daemon is
/// asked (there is none here: a cut config sent on would fail with code 11 instead).
#[test]
fn shim_refuses_an_oversized_config() {
    use std::io::Write;
    let mut child = Command::new(shim_bin())
        .env_clear()
        .envs([("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "c1"), ("CNI_NETNS", "/proc/self/ns/net")])
        .envs([("CNI_IFNAME", "eth0"), ("CNI_PATH", "/opt/cni/bin")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b' '; 1 << 20];
        // The shim stops reading at its bound; the broken pipe after it is expected.
        for _ in 0..17 {
            if stdin.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["code"], 5, "{e}");
    assert_eq!(e["msg"], format!("the config on stdin is larger than {} bytes", 16 << 20), "{e}");
}

#[test]
fn auto_mode_generates_00_multus_conf_and_exits_2_when_readiness_goes() {
    let node = Node::new();
    let auto = node.path("host-net.d");
    write(
        &auto.join("10-cbr.conflist"),
        &json!({"cniVersion": "1.0.0", "name": "cbr", "plugins": [{"type": "bridge", "capabilities": {"portMappings": true}}]}),
    );
    let ready = node.path("ready");
    std::fs::write(&ready, "").unwrap();
    let config = daemon_config(
        &node,
        json!({"multusConfigFile": "auto", "multusAutoconfigDir": auto, "cniConfigDir": auto, "cniVersion": "1.0.0",
            "readinessindicatorfile": ready}),
    );
    let mut d = Daemon::start(&node, &config);
    let generated = auto.join("00-multus.conf");
    crate::support::eventually("00-multus.conf is generated", || generated.exists());
    let v: Value = serde_json::from_str(&crate::support::read(&generated).unwrap()).unwrap();
    assert_eq!(
        v,
        json!({"capabilities": {"portMappings": true}, "cniVersion": "1.0.0", "logFile": node.path("daemon.log"),
            "logLevel": "debug", "name": "multus-cni-network", "clusterNetwork": auto.join("10-cbr.conflist"),
            "type": "multus-shim"})
    );
    assert_eq!(crate::support::mode(&generated), 0o600);
    // The default network went away: the daemon withdraws multus's config and exits 2, as upstream.
    std::fs::remove_file(&ready).unwrap();
    assert_eq!(d.wait_exit(), 2, "{}", d.stderr());
    assert!(!generated.exists(), "00-multus.conf removed");
}

/// The default deployment's layout (`cniConfigDir` == `multusAutoconfigDir`, auto mode): once
/// 00-multus.conf is written, an idle daemon must not work. The config manager used to re-read
/// the primary on the inotify event its own read caused, burning most of a core forever.
#[test]
fn idle_daemon_in_auto_mode_uses_no_cpu() {
    let node = Node::new();
    let (config, generated) = crate::support::thick::auto_mode_config(&node, json!({}));
    let d = Daemon::start(&node, &config);
    crate::support::eventually("00-multus.conf is generated", || generated.exists());
    std::thread::sleep(Duration::from_secs(1));
    let before = d.cpu_time();
    std::thread::sleep(Duration::from_secs(10));
    let used = d.cpu_time() - before;
    assert!(used < Duration::from_millis(100), "the idle daemon used {used:?} of CPU in 10 s: {}", d.stderr());
    // Still watching: a changed primary is picked up.
    write(
        &generated.with_file_name("10-cbr.conflist"),
        &json!({"cniVersion": "1.0.0", "name": "cbr", "plugins": [{"type": "bridge", "capabilities": {"portMappings": true}}]}),
    );
    crate::support::eventually("00-multus.conf follows the primary", || {
        crate::support::read(&generated).is_some_and(|t| t.contains("portMappings"))
    });
}
