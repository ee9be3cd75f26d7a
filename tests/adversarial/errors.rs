//! The error objects: every one carries `cniVersion` (the config's, or the newest we speak when
//! the config is unreadable), and a failed ADD leaves no scratch file behind.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::hostile::{bounded, conf_with};
use crate::support::Node;
use crate::support::thick::spawn_cni;

fn error(node: &Node, conf: &[u8], env: &[(&str, &str)]) -> Value {
    let child = node.node.enter(|| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_multus"));
        c.env("CNI_COMMAND", "ADD")
            .env("CNI_CONTAINERID", "pod")
            .env("CNI_NETNS", node.pod.path())
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", crate::support::CNI_BIN)
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), conf).unwrap();
        child
    });
    let (out, _) = bounded(child, Duration::from_secs(30));
    assert_eq!(out.code, 1, "{out:?}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

#[test]
fn every_error_object_carries_cni_version() {
    let node = Node::new();
    let conf = conf_with(&node, vec![json!({"cniVersion": "0.4.0", "name": "f", "type": "fail"})], json!({}));
    let mut v040 = conf.clone();
    v040["cniVersion"] = json!("0.4.0");
    let text = v040.to_string();
    // Bad environment, a missing delegate list, an unreadable config, a delegate's own error.
    // (stdin, environment, the cniVersion expected, the code expected)
    type Case<'a> = (Vec<u8>, Vec<(&'a str, &'a str)>, &'a str, u64);
    let cases: Vec<Case> = vec![
        (text.clone().into_bytes(), vec![("CNI_IFNAME", "this-name-is-too-long")], "0.4.0", 4),
        (br#"{"cniVersion":"0.3.1","name":"m","type":"multus"}"#.to_vec(), vec![], "0.3.1", 7),
        (b"{not json".to_vec(), vec![], "1.1.0", 6),
        (text.into_bytes(), vec![], "0.4.0", 11),
    ];
    for (conf, env, version, code) in cases {
        let e = error(&node, &conf, &env);
        assert_eq!(e["cniVersion"], version, "{e}");
        assert_eq!(e["code"], code, "{e}");
    }
}

#[test]
fn a_failed_add_removes_its_scratch_file() {
    let node = Node::new();
    let conf = conf_with(&node, vec![json!({"cniVersion": "1.0.0", "name": "f", "type": "fail"})], json!({}));
    let child =
        node.node.enter(|| spawn_cni(Path::new(env!("CARGO_BIN_EXE_multus")), &node, "ADD", &conf, "pod", "eth0", &[]));
    let (out, _) = bounded(child, Duration::from_secs(30));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(node.path("multus").is_dir(), "the ADD got as far as writing its scratch file");
    assert_eq!(crate::hostile::tree(&node.path("multus")), Vec::<String>::new(), "files left by the failed ADD");
}
