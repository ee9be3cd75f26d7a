//! The `passthru` binary: by hand through the CNI protocol, and chained by our runtime.

use std::io::Write;
use std::process::{Command, Stdio};

use multus::cni::{CniConfig, NetworkConfigList, RawExec, RuntimeConf};
use serde_json::{Value, json};

use crate::support::test_plugin_dir;

fn passthru(cmd: &str, stdin: &str) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_passthru"))
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", "c1")
        .env("CNI_NETNS", "/run/netns/x")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/nonexistent")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap())
}

#[test]
fn add_prints_an_empty_result_in_the_config_version() {
    for v in ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let (rc, out) = passthru("ADD", &format!(r#"{{"cniVersion":"{v}","name":"aux","type":"passthru"}}"#));
        assert_eq!((rc, out.trim()), (0, format!(r#"{{"cniVersion":"{v}","dns":{{}}}}"#).as_str()), "{v}");
    }
}

#[test]
fn other_commands_succeed_and_bad_input_is_a_cni_error() {
    for cmd in ["DEL", "CHECK", "GC", "STATUS"] {
        assert_eq!(
            passthru(cmd, r#"{"cniVersion":"1.1.0","name":"aux","type":"passthru"}"#),
            (0, String::new()),
            "{cmd}"
        );
    }
    let (rc, out) = passthru("ADD", "{nope");
    assert_eq!(rc, 1);
    let e: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(e["code"], 6);
    let (rc, out) = passthru("VERSION", "");
    assert_eq!(rc, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["supportedVersions"].as_array().unwrap().len(), 7);
}

/// An auxiliary chain: passthru first, then a plugin that needs a prevResult.
#[test]
fn passthru_heads_a_chain() {
    let dir = tempfile::tempdir().unwrap();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_passthru")).parent().unwrap().to_path_buf();
    let cni = CniConfig::new(vec![bin, test_plugin_dir()], dir.path().join("cache"), RawExec::default());
    let record = dir.path().join("rec.jsonl");
    let list = NetworkConfigList::from_value(json!({"cniVersion": "1.0.0", "name": "aux", "plugins": [
        {"type": "passthru"}, {"type": "cni-recorder", "recordFile": record}]}))
    .unwrap();
    let rt = RuntimeConf {
        container_id: "c1".into(),
        netns: "/run/netns/x".into(),
        ifname: "eth0".into(),
        ..Default::default()
    };
    let r = cni.add_network_list(&list, &rt).unwrap();
    assert_eq!(r.to_json("1.0.0").unwrap(), r#"{"cniVersion":"1.0.0","dns":{}}"#);
    let call: Value = serde_json::from_str(std::fs::read_to_string(&record).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(call["config"]["prevResult"], json!({"cniVersion": "1.0.0", "dns": {}}));
    cni.del_network_list(&list, &rt).unwrap();
}
